/*
 * main.c — vaegand's command line (docs/architecture.md, "Command line"):
 *
 *   vaegand -c FILE                      run the daemon
 *   vaegand -c FILE --replay FILE [--format F] [--min-rating R] [--epochs N]
 *   vaegand --check-config -c FILE       validate, print the effective settings
 *   vaegand --version | --help
 *
 * Exit codes: 0 after a clean stop, 1 on a runtime failure, 2 on a usage
 * error, 78 (EX_CONFIG) on a bad configuration file.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/replay.h"
#include "model/blas.h"

#define EX_USAGE_ 2
#define EX_CONFIG_ 78

static void usage(FILE *f)
{
    fputs("usage: vaegand -c FILE [--reset-model]\n"
          "       vaegand -c FILE --replay FILE [--format json|csv|ml100k|ml1m|mlcsv] [--min-rating R]"
          " [--epochs N]\n"
          "       vaegand --check-config -c FILE\n"
          "       vaegand --version | --help\n"
          "\n"
          "An online recommender: consumes click events from Kafka, keeps histories in Redis,\n"
          "trains a VAEGAN model in the background and writes rec:<user> lists to Redis.\n"
          "The configuration keys are documented in vaegand.conf.\n",
          f);
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
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
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
    if (check) {
        printf("# %s: configuration ok\n", path);
        vg_config_dump(&cfg, stdout);
        vg_config_free(&cfg);
        return 0;
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
