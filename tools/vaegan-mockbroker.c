/*
 * vaegan-mockbroker — a local Kafka-protocol broker for tests and demos
 * (librdkafka's mock cluster, see stream/mock.h).
 *
 *   vaegan-mockbroker [--topic T] [--partitions K]     (defaults clicks, 16)
 *
 * Prints the bootstrap address `host:port` alone on a line of stdout,
 * flushed at once (librdkafka 2.0.2's mock cannot be given a port, so
 * callers read it), logs to stderr, and runs until SIGTERM or SIGINT, then
 * exits 0.  A bad option prints the usage on stderr and exits 2.
 *
 * The signals are blocked before the mock's threads start (they inherit the
 * mask) and taken with sigwait(), so no librdkafka thread ever runs a
 * handler and the main thread needs no polling.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/mock.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vaegan-mockbroker [--topic T] [--partitions K]\n"
            "  A local Kafka-protocol broker (librdkafka's mock cluster) on a random\n"
            "  loopback port.  Prints its bootstrap address host:port on stdout and runs\n"
            "  until SIGTERM or SIGINT.  Nothing is kept after it exits; each partition\n"
            "  keeps at most 5 MiB.\n"
            "  --topic T        topic to create (default clicks)\n"
            "  --partitions K   its partition count, 1..100000 (default 16)\n"
            "  --help           this text\n");
}

int main(int argc, char **argv)
{
    const char *topic = "clicks";
    long partitions = 16;
    static const struct option opts[] = {
        {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "t:p:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 't':
            topic = optarg;
            if (!*topic) {
                fprintf(stderr, "vaegan-mockbroker: --topic must not be empty\n");
                usage(stderr);
                return 2;
            }
            break;
        case 'p':
            errno = 0;
            partitions = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || partitions < 1 || partitions > 100000) {
                fprintf(stderr, "vaegan-mockbroker: bad --partitions '%s'\n", optarg);
                usage(stderr);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vaegan-mockbroker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "vaegan-mockbroker: cannot block signals\n");
        return 1;
    }

    vg_mock_t *m;
    char addr[256], err[512];
    if (vg_mock_start(&m, topic, (int)partitions, addr, sizeof addr, err, sizeof err) != 0) {
        fprintf(stderr, "vaegan-mockbroker: %s\n", err);
        return 1;
    }
    printf("%s\n", addr);
    fflush(stdout);
    fprintf(stderr, "vaegan-mockbroker: topic %s with %ld partitions on %s\n", topic, partitions,
            addr);

    sigdelset(&set, SIGPIPE);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    fprintf(stderr, "vaegan-mockbroker: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    vg_mock_stop(m);
    return 0;
}
