/*
 * vaegan-bench-stream — end-to-end speed of vaegand: events/s from the
 * broker to the Redis histories, and click -> rec:<user> latency at fixed
 * event rates, on a synthetic MovieLens-20M-shaped stream.
 *
 *   vaegan-bench-stream [--events N] [--partitions P] [--rates R1,R2,...]
 *                       [--rate-seconds S] [--drain-seconds D]
 *                       [--catchup-timeout T] [--train-steps K]
 *                       [--set SECTION.KEY=VALUE]... [--vaegand PATH] [--keep]
 *
 * Defaults: N = 2,000,000, P = 32, rates 1000,10000,20000 events/s, S = 60 s,
 * D = 60 s, T = 1200 s, the vaegand of this build with its default training.
 * Everything runs in a fresh temporary directory:
 *
 *  1. a private redis-server (unix socket, no persistence) and
 *     vaegan-mockbroker (topic "clicks", P partitions);
 *  2. N events of `vaegan-gen --users 138493 --items 27278` (the raw
 *     MovieLens-20M catalogue size: the model has 27,278 items x H = 600, so
 *     scoring one user is ~33 MFLOP) are produced before the daemon starts
 *     (key = user, lz4, linger.ms = 50).  The mock broker keeps only 5 MiB
 *     per partition and drops older data silently: the bytes sent per
 *     partition are printed (2M events: ~1.7 MiB after lz4 over 32) and the
 *     partitions' low watermarks checked; the run stops if anything was
 *     dropped;
 *  3. vaegand starts (kafka.option.fetch.wait.max.ms = 10, session timeout
 *     6 s, serve.top_n = 100, model.hidden = 600, the other model and train
 *     defaults: avb+d+c)
 *     and /metrics is scraped every 100 ms.  Ingest rate =
 *     vaegan_events_stored_total over the time from the first scrape that saw
 *     a stored event to the first that saw all N (the consumer group join is
 *     not counted); lists written/s over the same span; Redis' own
 *     INFO commandstats for the phase;
 *  4. once the lists caught up (vaegan_lists_written_total >= users and
 *     still for 2 s, vaegan_model_step > 0), 5 s without events show what an
 *     idle daemon does; then keyspace notifications are turned on
 *     (notify-keyspace-events Kgz: the list's RESTORE, or the ZADD inside
 *     MULTI/DEL/ZADD/EXEC) and a thread PSUBSCRIBEs __keyspace@0__:rec:*.
 *     For each rate R a producer thread sends R events/s for S seconds
 *     (linger.ms = 0), each for a user with no sample in flight (the user
 *     free for the longest time), whose item is the next unused one of that
 *     user's rec list read before the phases (so it is not in the history
 *     and the list must change).  Latency = notification received - just
 *     before rd_kafka_producev.  After S s the phase waits up to D s for the
 *     stragglers; samples still without a list then are "missing" (counted as
 *     +inf in the percentiles).  When no user is free at a send time the
 *     event is "skipped".  Notifications for users without a sample in flight
 *     are "unattributed" (background refreshes, duplicates).  The daemon's
 *     own vaegan_list_latency_seconds histogram (Redis ack of the history ->
 *     list written) is reported beside it, with the scorer's users/s (all
 *     and per busy thread-second), its kernel path and the rate of the
 *     output layer's product from the daemon's vaegan_scorer_* counters,
 *     and Redis' own microseconds per RESTORE of a list (commandstats).  If no list is written for 15 s
 *     while samples wait, the daemon is declared stuck: its threads' states
 *     and kernel wait channels are printed and the remaining rates skipped.
 *     At the end every answered sample is checked: the clicked item must no
 *     longer be in rec:<user>;
 *  5. vaegand gets SIGTERM and must exit 0 (else SIGKILL, reported).
 *
 * For every phase the CPU of each vaegand thread (with its run-queue wait:
 * runnable but no core free), of redis-server, the broker and this program,
 * and the share other processes took of the machine are printed from /proc:
 * the figures are only meaningful when that share is small.
 * Figures are printed, never asserted; the last line of stdout is one JSON
 * object with all of them.  Exit status 0 when the run completed and vaegand
 * exited 0 (whatever the figures), 1 otherwise.
 *
 * The code: main() below is the list of phases; internal.h says which file
 * holds what.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stream/internal.h"

#ifndef VG_VAEGAND_BIN
#error "VG_VAEGAND_BIN must be defined by the build"
#endif

static void usage(FILE *f)
{
    fputs("usage: vaegan-bench-stream [--events N] [--partitions P] [--rates R1,R2,...] [--rate-seconds S]\n"
          "                           [--drain-seconds D] [--catchup-timeout T] [--keep]\n"
          "  --events N           events produced before vaegand starts (default 2000000)\n"
          "  --partitions P       partitions of the topic (default 32; the mock keeps 5 MiB each)\n"
          "  --rates LIST         event rates of the latency phases (default 1000,10000,20000)\n"
          "  --rate-seconds S     seconds of sending per rate (default 60)\n"
          "  --drain-seconds D    max wait for the last lists after each rate (default 60)\n"
          "  --catchup-timeout T  max wait for the lists to catch up after ingest (default 1200)\n"
          "  --train-steps K      train.steps_per_round for vaegand (default: its default; 0 = trainer off,\n"
          "                       lists then rank by popularity: a diagnostic of the ingest path)\n"
          "  --set S.K=V          one more option of vaegand's configuration, e.g. train.backlog_lag=0\n"
          "                       (repeatable; after the benchmark's own settings)\n"
          "  --vaegand PATH       the daemon binary to run (default: the one of this build)\n"
          "  --keep               keep the temporary directory (logs)\n",
          f);
}

/* The command line into o.  Returns -1 to run, else the exit status (0 after
 * --help, 2 after a usage error). */
static int parse_opts(bs_opts_t *o, int argc, char **argv)
{
    *o = (bs_opts_t){.n_events = 2000000, .partitions = 32, .n_rates = 3, .train_steps = -1,
                     .rates = {1000, 10000, 20000}, .rate_seconds = 60, .drain_seconds = 60, .catchup_timeout = 1200,
                     .vaegand = VG_VAEGAND_BIN};
    static const struct option lo[] = {
        {"events", 1, 0, 'n'},        {"partitions", 1, 0, 'p'},      {"rates", 1, 0, 'r'},
        {"rate-seconds", 1, 0, 's'},  {"drain-seconds", 1, 0, 'd'},   {"catchup-timeout", 1, 0, 'c'},
        {"keep", 0, 0, 'k'},          {"help", 0, 0, 'h'},            {"train-steps", 1, 0, 't'},   {"vaegand", 1, 0, 'V'},
        {"set", 1, 0, 'S'},           {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n': o->n_events = atol(optarg); break;
        case 'p': o->partitions = atoi(optarg); break;
        case 's': o->rate_seconds = atof(optarg); break;
        case 'd': o->drain_seconds = atof(optarg); break;
        case 'c': o->catchup_timeout = atof(optarg); break;
        case 'k': o->keep = 1; break;
        case 't': o->train_steps = atoi(optarg); break;
        case 'V': o->vaegand = optarg; break;
        case 'S': {
            const char *dot = strchr(optarg, '.'), *eq = strchr(optarg, '=');
            if (!dot || !eq || dot > eq || dot == optarg || strpbrk(optarg, "\"\\\n") || o->n_set == BS_MAX_SET) {
                fprintf(stderr, "vaegan-bench-stream: --set %s: want SECTION.KEY=VALUE (at most %d)\n", optarg,
                        BS_MAX_SET);
                return 2;
            }
            o->set[o->n_set++] = optarg;
            break;
        }
        case 'r': {
            o->n_rates = 0;
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t && o->n_rates < BS_MAX_RATES; t = strtok_r(NULL, ",", &save))
                o->rates[o->n_rates++] = atoi(t);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int bad = o->n_events < 1 || o->partitions < 1 || o->partitions > 10000 || o->rate_seconds <= 0 ||
              o->drain_seconds < 0;
    for (int i = 0; i < o->n_rates; i++)
        bad |= o->rates[i] < 1 || o->rates[i] > 1000000;
    if (bad || optind < argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

static void run_init(bs_run_t *R)
{
    memset(R, 0, sizeof *R);
    pthread_mutex_init(&R->L.mu, NULL);
    R->exit_code = -2;
    R->ingest_rate = R->ingest_lists = R->ingest_span = R->ingest_peak = R->join_s = NAN;
    R->catchup_s = R->idle_steps_per_s = R->ingest_cpu = NAN;
}

/* In order; the first that fails ends the run. */
static int (*const k_phases[])(bs_run_t *) = {
    bs_env_start,        /* redis-server and vaegan-mockbroker */
    bs_phase_backlog,    /* N events produced before vaegand starts */
    bs_env_start_daemon, /* vaegand, with /metrics on a free port */
    bs_phase_ingest,     /* events/s from the broker to the histories */
    bs_phase_catchup,    /* until the lists settle */
    bs_phase_idle,       /* 5 s without events */
    bs_phase_latency,    /* click -> rec:<user> at each rate */
    bs_phase_check,      /* the clicked items left the lists */
};

int main(int argc, char **argv)
{
    static bs_run_t R;
    run_init(&R);
    int rc = parse_opts(&R.o, argc, argv);
    if (rc >= 0)
        return rc;
    signal(SIGINT, bs_on_signal);
    signal(SIGTERM, bs_on_signal);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    bs_machine_read(&R.mach);
    bs_report_header(&R);
    if (bs_env_mkdir(&R) != 0)
        return 1;

    size_t done = 0, n = sizeof k_phases / sizeof k_phases[0];
    while (done < n && k_phases[done](&R) == 0)
        done++;
    R.ok = done == n;

    bs_env_stop(&R);
    if (R.ok)
        bs_report_summary(&R);
    bs_env_remove(&R);
    free(R.ser.m);
    bs_lat_free(&R.L);
    return R.ok && R.exit_code == 0 ? 0 : 1;
}
