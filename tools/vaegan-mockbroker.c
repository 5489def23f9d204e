/*
 * vaegan-mockbroker — a local Kafka-protocol broker for tests and demos
 * (librdkafka's mock cluster, see stream/mock.h).
 *
 *   vaegan-mockbroker [--topic T]... [--partitions K]   (defaults clicks, 16)
 *
 * --topic may be given several times (up to 64): each topic is created with
 * K partitions; without any --topic, `clicks` is.  A regex (a name starting
 * with ^) names no topic and is refused.  Prints the bootstrap address
 * `host:port` alone on a line of stdout, flushed at once (librdkafka 2.0.2's
 * mock cannot be given a port, so callers read it), logs to stderr, and runs
 * until SIGTERM or SIGINT, then exits 0.  A bad option prints the usage on stderr and exits 2.
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

#define MAX_TOPICS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vaegan-mockbroker [--topic T]... [--partitions K]\n"
            "  A local Kafka-protocol broker (librdkafka's mock cluster) on a random\n"
            "  loopback port.  Prints its bootstrap address host:port on stdout and runs\n"
            "  until SIGTERM or SIGINT.  Nothing is kept after it exits; each partition\n"
            "  keeps at most 5 MiB.\n"
            "  --topic T        a topic to create; may be repeated, up to 64 times\n"
            "                   (default: clicks)\n"
            "  --partitions K   partitions of each topic, 1..100000 (default 16)\n"
            "  --help           this text\n");
}

/* "a, b, c" of the topics, for the log line (truncated). */
static const char *topic_list(const char *const *topics, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", topics[i]);
        used = w < 0 ? len : used + (size_t)w;
    }
    return buf;
}

int main(int argc, char **argv)
{
    const char *topics[MAX_TOPICS];
    size_t n_topics = 0;
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
            if (!*optarg || *optarg == '^' || n_topics == MAX_TOPICS) {
                fprintf(stderr, "vaegan-mockbroker: --topic '%s': %s\n", optarg,
                        !*optarg ? "must not be empty"
                        : *optarg == '^' ? "a regex names no topic to create"
                                         : "too many topics (at most 64)");
                usage(stderr);
                return 2;
            }
            topics[n_topics++] = optarg;
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
    if (n_topics == 0)
        topics[n_topics++] = "clicks";

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
    char addr[256], err[512], names[512];
    if (vg_mock_start(&m, topics, n_topics, (int)partitions, addr, sizeof addr, err, sizeof err) !=
        0) {
        fprintf(stderr, "vaegan-mockbroker: %s\n", err);
        return 1;
    }
    printf("%s\n", addr);
    fflush(stdout);
    fprintf(stderr, "vaegan-mockbroker: %s %s with %ld partitions%s on %s\n",
            n_topics > 1 ? "topics" : "topic", topic_list(topics, n_topics, names, sizeof names),
            partitions, n_topics > 1 ? " each" : "", addr);

    sigdelset(&set, SIGPIPE);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    fprintf(stderr, "vaegan-mockbroker: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    vg_mock_stop(m);
    return 0;
}
