/*
 * vaegan-bench-scale — several vaegand sharing one model (kafka.control_topic)
 * on one machine: what each more instance costs, and how fast the leader's
 * snapshot reaches the others.
 *
 *   vaegan-bench-scale [--instances N] [--events E] [--users U] [--items I]
 *                      [--hidden H] [--partitions P] [--keep]
 *
 * Defaults: N = 3, E = 500,000, U = 20,000, I = 5,000, H = 200, P = 12.
 * For each run — one instance alone (no control topic), then 1..N
 * instances sharing one model — in a fresh temporary directory: a private
 * redis-server (unix socket) and vaegan-mockbroker (topics "clicks" and
 * "ctl", P partitions each; partition 0 of "ctl" elects the leader); the
 * instances start and join (each its own state.dir, metrics port and log),
 * then E synthetic events of U users over I items (tests/support's
 * stream) are produced and consumed.  Printed per run:
 *
 *   ingest      events/s from the first scrape that saw a stored event to
 *               the one that saw all E (summed over the instances);
 *   cpu/ev      CPU microseconds of all vaegand processes per event over
 *               that span (from /proc: scoring and training included);
 *   idle        then, 10 s without events: the CPU share of the leader (or
 *               the lone instance: it keeps refining the model) and the
 *               mean of the followers';
 *   rss, users  resident memory and users in memory (vaegan_users) at the
 *               end, of the leader and the mean of the followers';
 *   snapshot    its bytes, the leader's last publication time and the
 *               followers' slowest fetch-and-load time (vaegan_snapshot_*);
 *   same model  seconds until every instance served the leader's step
 *               after the last event was stored.
 *
 * The machine is shared by everything (broker, Redis, every instance): on
 * a 2-core machine more instances cannot ingest faster; the figures say
 * what one more instance costs.  Figures are printed, never asserted.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"

#define MAX_INST 8
#define GUARD_S 600.0

typedef struct opts {
    int instances, users, items, hidden, partitions, keep;
    size_t events;
} scale_opts_t;

typedef struct run {
    vgt_env_t env;
    vgt_env_t in[MAX_INST];
    int n, shared;
} run_t;

/* utime + stime of pid, in seconds. */
static double cpu_s(pid_t pid)
{
    char path[64];
    unsigned long long ticks = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return vgt_proc_stat(path, NULL, 0, &ticks) ? 0 : (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of pid in MB. */
static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lf", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

static double sum_metric(const run_t *r, const char *name)
{
    double s = 0;
    for (int k = 0; k < r->n; k++) {
        double v = vgt_metric(r->in[k].metrics_port, name);
        s += v > 0 ? v : 0;
    }
    return s;
}

static int start(run_t *r, const scale_opts_t *o, int n, int shared)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->shared = shared;
    char dir[] = "/tmp/vaegan-bench-scale-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    static const char *const topics[] = {"clicks", "ctl"};
    static char settings[512];
    snprintf(settings, sizeof settings,
             "[serve]\ntop_n = 100\n[model]\nhidden = %d\n[train]\npublish_interval_s = 5\n"
             "[state]\ncheckpoint_interval_s = 30\n[log]\nlevel = debug\n",
             o->hidden);
    vgt_env_opts_t eo = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .topics = topics,
                         .n_topics = 2, .partitions = o->partitions, .settings = settings};
    if (vgt_env_start(&r->env, dir, &eo))
        return -1;
    for (int k = 0; k < n; k++) {
        vgt_env_t *e = &r->in[k];
        *e = r->env;
        snprintf(e->conf, sizeof e->conf, "%s/vaegand%d.conf", dir, k);
        snprintf(e->log, sizeof e->log, "%s/vaegand%d.log", dir, k);
        snprintf(e->state, sizeof e->state, "%s/state%d", dir, k);
        e->metrics_port = vgt_free_port();
        if (e->metrics_port <= 0 || vgt_env_write_conf(e, shared ? "[kafka]\ncontrol_topic = ctl\n" : ""))
            return -1;
        e->daemon = vgt_env_spawn(e, NULL);
    }
    char joined[64];
    for (int k = 0; k < n; k++) { /* every instance holds its share of the partitions */
        snprintf(joined, sizeof joined, "consumer group joined: %d partitions", o->partitions / n);
        if (vgt_wait_log(&r->in[k], joined, NULL, 1, GUARD_S) < 1) {
            vgt_show_log(&r->in[k], "did not join");
            return -1;
        }
    }
    double end = vg_mono_s() + GUARD_S;
    while (shared && sum_metric(r, "vaegan_leader") != 1 && vg_mono_s() < end)
        vgt_sleep_ms(100);
    return 0;
}

static void stop(run_t *r, int keep)
{
    for (int k = 0; k < r->n; k++)
        if (r->in[k].daemon > 0) {
            kill(r->in[k].daemon, SIGTERM);
            waitpid(r->in[k].daemon, NULL, 0);
        }
    vgt_env_stop(&r->env);
    if (keep) {
        printf("  kept %s\n", r->env.dir);
        return;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->env.dir);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", r->env.dir);
}

/* Seconds until every instance serves the leader's snapshot step (-1: not
 * within the guard). */
static double same_model_s(const run_t *r)
{
    double t0 = vg_mono_s();
    while (vg_mono_s() - t0 < GUARD_S) {
        double lo = 1e300, hi = -1;
        for (int k = 0; k < r->n; k++) {
            double v = vgt_metric(r->in[k].metrics_port, "vaegan_snapshot_step");
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (hi > 0 && lo == hi)
            return vg_mono_s() - t0;
        vgt_sleep_ms(100);
    }
    return -1;
}

static int one_run(const scale_opts_t *o, const vgt_stream_t *s, int n, int shared)
{
    run_t r;
    if (start(&r, o, n, shared)) {
        fprintf(stderr, "run of %d instance(s): the servers or the instances did not start\n", n);
        stop(&r, 1);
        return -1;
    }
    if (vgt_stream_produce(&r.env, "clicks", s, 0, s->n)) {
        fprintf(stderr, "producing failed\n");
        stop(&r, o->keep);
        return -1;
    }
    double t0 = 0, t1 = 0, c0 = 0, c1 = 0, end = vg_mono_s() + GUARD_S;
    while (vg_mono_s() < end) {
        double stored = sum_metric(&r, "vaegan_events_stored_total"), now = vg_mono_s(), c = 0;
        for (int k = 0; k < n; k++)
            c += cpu_s(r.in[k].daemon);
        if (stored > 0 && t0 == 0) {
            t0 = now;
            c0 = c;
        }
        if (stored >= (double)s->n) {
            t1 = now;
            c1 = c;
            break;
        }
        vgt_sleep_ms(100);
    }
    if (t1 == 0) {
        fprintf(stderr, "not every event was stored within %.0f s\n", GUARD_S);
        stop(&r, 1);
        return -1;
    }
    double same = shared ? same_model_s(&r) : 0, pub = 0, load = 0, bytes = 0;
    double idle_a[MAX_INST], lead[3] = {0}, follow[3] = {0}; /* idle CPU %, RSS MB, users in memory */
    for (int k = 0; k < n; k++)
        idle_a[k] = cpu_s(r.in[k].daemon);
    vgt_sleep_ms(10000);
    for (int k = 0; k < n; k++) {
        double v[3] = {(cpu_s(r.in[k].daemon) - idle_a[k]) / 10 * 100, rss_mb(r.in[k].daemon),
                       vgt_metric(r.in[k].metrics_port, "vaegan_users")};
        int leads = !shared || vgt_metric(r.in[k].metrics_port, "vaegan_leader") == 1;
        for (int j = 0; j < 3; j++)
            if (leads)
                lead[j] = v[j];
            else
                follow[j] += v[j] / (n - 1);
        double l = vgt_metric(r.in[k].metrics_port, "vaegan_snapshot_load_seconds");
        double p = vgt_metric(r.in[k].metrics_port, "vaegan_snapshot_publish_seconds");
        double b = vgt_metric(r.in[k].metrics_port, "vaegan_snapshot_bytes");
        load = l > load ? l : load;
        pub = p > pub ? p : pub;
        bytes = b > bytes ? b : bytes;
    }
    char col[3][32];
    for (int j = 0; j < 3; j++)
        snprintf(col[j], sizeof col[j], n > 1 ? (j ? "%.0f/%.0f" : "%.0f%%/%.0f%%") : (j ? "%.0f" : "%.0f%%"),
                 lead[j], follow[j]);
    printf("%-7s %2d  %9.0f  %7.1f  %10s  %9s  %11s", shared ? "shared" : "alone", n, (double)s->n / (t1 - t0),
           (c1 - c0) / (double)s->n * 1e6, col[0], col[1], col[2]);
    if (shared)
        printf("  %8.2f  %9.3f  %7.3f  %6.1f\n", bytes / 1e6, pub, n > 1 ? load : 0.0, same);
    else
        printf("         -          -        -       -\n");
    fflush(stdout);
    stop(&r, o->keep);
    return 0;
}

int main(int argc, char **argv)
{
    scale_opts_t o = {.instances = 3, .events = 500000, .users = 20000, .items = 5000, .hidden = 200, .partitions = 12};
    static const struct option lo[] = {
        {"instances", 1, 0, 'n'}, {"events", 1, 0, 'e'}, {"users", 1, 0, 'u'}, {"items", 1, 0, 'i'},
        {"hidden", 1, 0, 'h'},    {"partitions", 1, 0, 'p'}, {"keep", 0, 0, 'k'}, {0, 0, 0, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 'n': o.instances = atoi(optarg); break;
        case 'e': o.events = strtoull(optarg, NULL, 10); break;
        case 'u': o.users = atoi(optarg); break;
        case 'i': o.items = atoi(optarg); break;
        case 'h': o.hidden = atoi(optarg); break;
        case 'p': o.partitions = atoi(optarg); break;
        case 'k': o.keep = 1; break;
        default:
            fprintf(stderr, "usage: %s [--instances N] [--events E] [--users U] [--items I] [--hidden H] "
                    "[--partitions P] [--keep]\n", argv[0]);
            return 2;
        }
    }
    if (o.instances < 1 || o.instances > MAX_INST || o.events < 1 || o.users < 1 || o.items < 10 || o.hidden < 1 ||
        o.partitions < o.instances) {
        fprintf(stderr, "%s: --instances 1..%d, at most --partitions; --items >= 10\n", argv[0], MAX_INST);
        return 2;
    }
    vgt_stream_t s;
    vgt_stream_make(&s, "u", o.users, o.items, o.events, 1);
    printf("vaegan-bench-scale: %zu events, %d users, %d items, hidden %d, %d partitions; %ld CPUs online\n",
           o.events, o.users, o.items, o.hidden, o.partitions, sysconf(_SC_NPROCESSORS_ONLN));
    printf("run   inst  ingest/s  cpu µs/ev    idle l/f   rss MB l/f    users l/f   snap MB  publish s   load s  same s\n");
    int rc = one_run(&o, &s, 1, 0);
    for (int n = 1; rc == 0 && n <= o.instances; n++)
        rc = one_run(&o, &s, n, 1);
    vgt_stream_free(&s);
    return rc ? 1 : 0;
}
