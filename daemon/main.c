/*
 * main.c — vaegand's command line (docs/architecture.md, "Command line"):
 *
 *   vaegand -c FILE                      run the daemon
 *   vaegand -c FILE --replay FILE [--format F] [--min-rating R] [--epochs N]
 *   vaegand -c FILE --forget USER [--brokers B]   erase a user: produce a forget event
 *   vaegand --check-config -c FILE       validate, print the effective settings
 *   vaegand --version | --help
 *
 * Exit codes: 0 after a clean stop, 1 on a runtime failure, 2 on a usage
 * error, 78 (EX_CONFIG) on a bad configuration file.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/replay.h"
#include "model/blas.h"
#include "stream/event.h"
#include "stream/kafka.h"
#include "stream/produce.h"

#define EX_USAGE_ 2
#define EX_CONFIG_ 78

static void usage(FILE *f)
{
    fputs("usage: vaegand -c FILE [--reset-model]\n"
          "       vaegand -c FILE --replay FILE [--format json|csv|ml100k|ml1m|mlcsv] [--min-rating R]"
          " [--epochs N]\n"
          "       vaegand -c FILE --forget USER [--brokers HOST:PORT]\n"
          "       vaegand --check-config -c FILE\n"
          "       vaegand --version | --help\n"
          "\n"
          "An online recommender: consumes click events from Kafka, keeps histories in Redis,\n"
          "trains a VAEGAN model in the background and writes rec:<user> lists to Redis.\n"
          "The configuration keys are documented in vaegand.conf.\n",
          f);
}

/* --forget USER: a forget event, keyed by the user, to the first topic that
 * is not a pattern, so a running daemon applies it in order with the
 * user's other events (docs/architecture.md, "Erasure"). */
static int forget(const vg_config_t *cfg, const char *user, const char *brokers)
{
    const char *why;
    if (vg_event_id_valid(user, strlen(user), &why)) {
        fprintf(stderr, "vaegand: --forget: the user id %s\n", why);
        return EX_USAGE_;
    }
    const char *topic = NULL;
    for (size_t i = 0; i < cfg->kafka.topics.n && !topic; i++)
        if (cfg->kafka.topics.v[i][0] != '^')
            topic = cfg->kafka.topics.v[i];
    if (!brokers)
        brokers = cfg->kafka.brokers;
    if (!topic || strcmp(brokers, "embedded") == 0) {
        fprintf(stderr, "vaegand: --forget: %s\n",
                topic ? "kafka.brokers is embedded: give the daemon's broker with --brokers HOST:PORT (it logs it)"
                      : "kafka.topics names no topic, only patterns");
        return EX_USAGE_;
    }
    double ts = vg_wall_s();
    json_t *ev = json_pack("{s:s, s:s, s:f}", "user", user, "type", VG_FORGET_TYPE, "ts", ts);
    char *value = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    char err[512];
    int rc = value ? vg_kafka_produce_one(brokers, (const char *const *)cfg->kafka.options, cfg->kafka.n_options,
                                          topic, user, strlen(user), value, strlen(value), 30000, err, sizeof err)
                   : vg_errf(err, sizeof err, VG_ENOMEM, "out of memory");
    if (rc == 0)
        printf("forget requested: %s (topic %s on %s, ts %.3f): the daemon erases the user's histories, lists and "
               "state when it reaches this event\n", value, topic, brokers, ts);
    else
        fprintf(stderr, "vaegand: --forget: %s\n", err);
    free(value);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    char msg[256];
    int brc = vg_blas_setup(argc, argv, msg, sizeof msg); /* may re-exec with the right OpenBLAS kernels */

    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"check-config", no_argument, NULL, 'k'},
        {"replay", required_argument, NULL, 'r'},  {"format", required_argument, NULL, 'f'},
        {"min-rating", required_argument, NULL, 'm'}, {"epochs", required_argument, NULL, 'e'},
        {"reset-model", no_argument, NULL, 'R'},   {"version", no_argument, NULL, 'V'},
        {"forget", required_argument, NULL, 'F'},  {"brokers", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *forget_user = NULL, *brokers = NULL;
    int check = 0;
    vg_replay_opts_t o = {.format = "json", .min_rating = NAN, .epochs = 10};
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'r': o.file = optarg; break;
        case 'f': o.format = optarg; break;
        case 'R': o.reset_model = 1; break;
        case 'F': forget_user = optarg; break;
        case 'B': brokers = optarg; break;
        case 'm':
            o.min_rating = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(o.min_rating)) {
                fprintf(stderr, "vaegand: --min-rating %s: not a number\n", optarg);
                return EX_USAGE_;
            }
            break;
        case 'e': {
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 0 || v > 1000000) {
                fprintf(stderr, "vaegand: --epochs %s: not a whole number between 0 and 1000000\n", optarg);
                return EX_USAGE_;
            }
            o.epochs = (int)v;
            break;
        }
        case 'V': printf("vaegand %s\n", VG_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EX_USAGE_;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vaegand: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EX_USAGE_;
    }
    if (!path) {
        fprintf(stderr, "vaegand: no configuration file: give -c FILE\n");
        usage(stderr);
        return EX_USAGE_;
    }

    vg_config_t cfg;
    char err[1024];
    if (vg_config_load(&cfg, path, err, sizeof err)) {
        fprintf(stderr, "vaegand: %s\n", err);
        vg_config_free(&cfg);
        return EX_CONFIG_;
    }
    vg_kafka_cfg_t kc = {.brokers = cfg.kafka.brokers, .group = cfg.kafka.group,
                         .topics = (const char *const *)cfg.kafka.topics.v, .n_topics = cfg.kafka.topics.n,
                         .options = (const char *const *)cfg.kafka.options, .n_options = cfg.kafka.n_options};
    if (vg_kafka_check_options(&kc, err, sizeof err)) { /* a librdkafka option typo is a configuration error too */
        fprintf(stderr, "vaegand: %s: %s\n", path, err);
        vg_config_free(&cfg);
        return EX_CONFIG_;
    }
    if (check) {
        /* advice, not errors: e.g. a password written in the file (exit 0 all the same) */
        for (const char *w = cfg.warnings, *e; w && *w; w = e + 1) {
            e = strchr(w, '\n');
            fprintf(stderr, "vaegand: warning: %.*s\n", (int)(e - w), w);
        }
        printf("# %s: configuration ok\n", path);
        vg_config_dump(&cfg, stdout);
        vg_config_free(&cfg);
        return 0;
    }
    if (forget_user) {
        int rc = forget(&cfg, forget_user, brokers);
        vg_config_free(&cfg);
        return rc;
    }
    if (vg_log_open(cfg.log.file, cfg.log.level)) {
        fprintf(stderr, "vaegand: log.file = \"%s\": cannot open it\n", cfg.log.file);
        vg_config_free(&cfg);
        return EX_CONFIG_;
    }
    vg_log(VG_LOG_INFO, "vaegand %s starting with %s", VG_VERSION, path);
    vg_log(brc < 0 ? VG_LOG_ERROR : VG_LOG_INFO, "BLAS: %s", msg);
    int code = 1;
    if (brc >= 0) {
        vg_blas_set_threads(cfg.train.threads);
        code = o.file ? vg_replay_run(&cfg, &o) : vg_daemon_run(&cfg, o.reset_model);
    }
    vg_config_free(&cfg);
    vg_log_close();
    return code;
}
