/*
 * vaegan-bench-stream — end-to-end speed of vaegand: events/s from the
 * broker to the Redis histories, and click -> rec:<user> latency at fixed
 * event rates, on a synthetic MovieLens-20M-shaped stream.
 *
 *   vaegan-bench-stream [--events N] [--partitions P] [--rates R1,R2,...]
 *                       [--rate-seconds S] [--drain-seconds D]
 *                       [--catchup-timeout T] [--train-steps K]
 *                       [--vaegand PATH] [--keep]
 *
 * Defaults: N = 2,000,000, P = 32, rates 1000,10000 events/s, S = 20 s,
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
 *     6 s, serve.top_n = 100, model and train defaults: avb+d+c, H = 600)
 *     and /metrics is scraped every 100 ms.  Ingest rate =
 *     vaegan_events_stored_total over the time from the first scrape that saw
 *     a stored event to the first that saw all N (the consumer group join is
 *     not counted); lists written/s over the same span; Redis' own
 *     INFO commandstats for the phase;
 *  4. once the lists caught up (vaegan_lists_written_total >= users and
 *     still for 2 s, vaegan_model_step > 0), 5 s without events show what an
 *     idle daemon does; then keyspace notifications are turned on
 *     (notify-keyspace-events Kz: the ZADD inside the daemon's
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
 *     list written) is reported beside it.  If no list is written for 15 s
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
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "tests/kafka_util.h"
#include "tests/redis_util.h"

#ifndef VG_VAEGAND_BIN
#error "VG_VAEGAND_BIN must be defined by the build"
#endif
#ifndef VG_MOCKBROKER_BIN
#error "VG_MOCKBROKER_BIN must be defined by the build"
#endif
#ifndef VG_GEN_BIN
#error "VG_GEN_BIN must be defined by the build"
#endif

#define GEN_USERS 138493 /* MovieLens-20M, raw */
#define GEN_ITEMS 27278
#define TOPIC "clicks"
#define REC_READ 10     /* rec items read per user before the latency phases */
#define MAX_BUCKETS 32
#define MAX_RATES 8
#define MAX_THREADS 256
#define STALL_S 15.0    /* no list written for this long with samples open: the daemon is stuck */

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !g_stop)
        ;
}

static void sleep_until(double t)
{
    double d = t - vg_mono_s();
    if (d > 0)
        sleep_s(d);
}

static void complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vaegan-bench-stream: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- /metrics ----------------------------------------------------------------------- */

typedef struct metrics {
    double t; /* CLOCK_MONOTONIC when scraped */
    double stored, events, invalid, lists, users, items, step, pending, paused;
    int nb;
    double le[MAX_BUCKETS], cum[MAX_BUCKETS]; /* latency histogram, cumulative; last = +Inf */
    double lat_count, lat_sum;
} metrics_t;

static char g_http[1 << 20];

/* GET /metrics from 127.0.0.1:port into m.  0 or -1. */
static int scrape(int port, metrics_t *m)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double t0 = vg_mono_s();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    ssize_t r;
    while (n < sizeof g_http - 1 && (r = read(fd, g_http + n, sizeof g_http - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    double t1 = vg_mono_s();
    g_http[n] = '\0';
    if (strncmp(g_http, "HTTP/1.", 7) != 0 || strncmp(g_http + 8, " 200", 4) != 0)
        return -1;
    char *body = strstr(g_http, "\r\n\r\n");
    if (!body)
        return -1;
    memset(m, 0, sizeof *m);
    m->t = 0.5 * (t0 + t1);
    struct {
        const char *name;
        double *v;
    } want[] = {
        {"vaegan_events_stored_total", &m->stored}, {"vaegan_events_total", &m->events},
        {"vaegan_events_invalid_total", &m->invalid}, {"vaegan_lists_written_total", &m->lists},
        {"vaegan_users", &m->users},                {"vaegan_items", &m->items},
        {"vaegan_model_step", &m->step},            {"vaegan_pending_events", &m->pending},
        {"vaegan_kafka_paused", &m->paused},        {"vaegan_list_latency_seconds_sum", &m->lat_sum},
        {"vaegan_list_latency_seconds_count", &m->lat_count},
    };
    for (char *line = body + 4, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (*line == '#' || !*line)
            continue;
        char *sp = strrchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        double v = strtod(sp + 1, NULL);
        static const char bk[] = "vaegan_list_latency_seconds_bucket{le=\"";
        if (strncmp(line, bk, sizeof bk - 1) == 0) {
            if (m->nb < MAX_BUCKETS) {
                const char *le = line + sizeof bk - 1;
                m->le[m->nb] = strncmp(le, "+Inf", 4) == 0 ? INFINITY : strtod(le, NULL);
                m->cum[m->nb++] = v;
            }
            continue;
        }
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
            if (strcmp(line, want[k].name) == 0)
                *want[k].v = v;
    }
    return 0;
}

/* Quantile q of the daemon's histogram between two scrapes (upper bucket
 * bound, as Prometheus' histogram_quantile would bound it), in seconds; NAN
 * when empty. */
static double hist_quantile(const metrics_t *a, const metrics_t *b, double q)
{
    if (a->nb != b->nb || b->nb == 0)
        return NAN;
    double total = b->cum[b->nb - 1] - a->cum[a->nb - 1];
    if (total <= 0)
        return NAN;
    double want = q * total;
    for (int i = 0; i < b->nb; i++)
        if (b->cum[i] - a->cum[i] >= want)
            return b->le[i];
    return INFINITY;
}

/* ---- CPU per thread from /proc ------------------------------------------------------ */

typedef struct tcpu {
    int tid;
    char comm[32];
    unsigned long long ticks;  /* utime + stime */
    double run_ns, wait_ns;    /* schedstat: on a CPU, runnable but waiting for one (ns) */
} tcpu_t;

typedef struct cpu_snap {
    int n;
    tcpu_t th[MAX_THREADS];
} cpu_snap_t;

static int read_stat(const char *path, char *comm, size_t commlen, unsigned long long *ticks)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *l = strchr(buf, '('), *r = strrchr(buf, ')');
    if (!l || !r || r < l)
        return -1;
    if (comm) {
        size_t cl = (size_t)(r - l - 1) < commlen - 1 ? (size_t)(r - l - 1) : commlen - 1;
        memcpy(comm, l + 1, cl);
        comm[cl] = '\0';
    }
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    char *p = r + 2;
    unsigned long long ut = 0, st = 0;
    for (int field = 3; field <= 15 && *p; field++) {
        if (field == 14)
            ut = strtoull(p, NULL, 10);
        if (field == 15)
            st = strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (!p)
            break;
        p++;
    }
    *ticks = ut + st;
    return 0;
}

static void read_schedstat(const char *path, double *run, double *wait)
{
    FILE *f = fopen(path, "r");
    *run = *wait = NAN;
    if (!f)
        return;
    if (fscanf(f, "%lf %lf", run, wait) != 2)
        *run = *wait = NAN;
    fclose(f);
}

static void cpu_snap(pid_t pid, cpu_snap_t *s)
{
    s->n = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = pid > 0 ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && s->n < MAX_THREADS) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[384];
        snprintf(path, sizeof path, "%s/%.256s/stat", dir, e->d_name);
        tcpu_t *t = &s->th[s->n];
        t->tid = atoi(e->d_name);
        if (read_stat(path, t->comm, sizeof t->comm, &t->ticks) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%.256s/schedstat", dir, e->d_name);
        read_schedstat(path, &t->run_ns, &t->wait_ns);
        s->n++;
    }
    closedir(d);
}

static double proc_ticks(pid_t pid)
{
    char path[64];
    unsigned long long t = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return pid > 0 && read_stat(path, NULL, 0, &t) == 0 ? (double)t : NAN;
}

/* ticks of pid (all threads), run-queue wait (ns) summed over its live threads */
static void proc_totals(pid_t pid, double *ticks, double *wait_ns)
{
    cpu_snap_t *s = malloc(sizeof *s);
    *ticks = *wait_ns = NAN;
    if (!s)
        return;
    cpu_snap(pid, s);
    if (s->n) {
        *wait_ns = 0;
        for (int i = 0; i < s->n; i++)
            *wait_ns += s->th[i].wait_ns;
        *ticks = proc_ticks(pid); /* the process' own count includes threads that ended */
    }
    free(s);
}

/* busy and total ticks of the whole machine (/proc/stat) */
static void machine_ticks(double *busy, double *total)
{
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = NAN;
    if (!f)
        return;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) == 8) {
        double tot = 0;
        for (int i = 0; i < 8; i++)
            tot += (double)v[i];
        *total = tot;
        *busy = tot - (double)v[3] - (double)v[4];
    }
    fclose(f);
}

typedef struct proc_cpu {
    pid_t daemon;
    cpu_snap_t d;
    double redis_t, broker_t, self_t, redis_w, broker_w, self_w, m_busy, m_total, t;
} proc_cpu_t;

static pid_t g_pid_daemon, g_pid_redis, g_pid_broker;

static void proc_cpu_take(proc_cpu_t *p)
{
    p->daemon = g_pid_daemon;
    cpu_snap(p->daemon, &p->d);
    proc_totals(g_pid_redis, &p->redis_t, &p->redis_w);
    proc_totals(g_pid_broker, &p->broker_t, &p->broker_w);
    proc_totals(getpid(), &p->self_t, &p->self_w);
    machine_ticks(&p->m_busy, &p->m_total);
    p->t = vg_mono_s();
}

static int cmp_tcpu_desc(const void *a, const void *b)
{
    const tcpu_t *x = a, *y = b;
    return (x->ticks < y->ticks) - (x->ticks > y->ticks);
}

/* Prints, between a and b, CPU use in % of one core per vaegand thread (with
 * its run-queue wait in % of the wall time: runnable, no CPU free) and per
 * process, plus the machine's busy share and what other processes took.
 * Returns the daemon's total in *total. */
static void proc_cpu_print(const char *phase, const proc_cpu_t *a, const proc_cpu_t *b, double *total)
{
    double hz = (double)sysconf(_SC_CLK_TCK), dt = b->t - a->t;
    if (dt <= 0)
        return;
    tcpu_t d[MAX_THREADS];
    int n = 0;
    double sum = 0;
    for (int i = 0; i < b->d.n; i++) {
        const tcpu_t *x = &b->d.th[i], *before = NULL;
        for (int j = 0; j < a->d.n; j++)
            if (a->d.th[j].tid == x->tid)
                before = &a->d.th[j];
        d[n] = *x;
        if (before) {
            d[n].ticks -= before->ticks;
            d[n].wait_ns -= before->wait_ns;
        }
        sum += (double)d[n].ticks;
        n++;
    }
    qsort(d, (size_t)n, sizeof *d, cmp_tcpu_desc);
    printf("  CPU during %s (%.1f s; %% of one core, run-queue wait in parentheses):\n    vaegand %.0f%% [", phase,
           dt, 100 * sum / hz / dt);
    int shown = 0;
    for (int i = 0; i < n; i++) {
        double pc = 100 * (double)d[i].ticks / hz / dt;
        if (pc < 1 && shown >= 3)
            continue;
        printf("%s%s%s/%d %.0f%% (%.0f%%)", shown ? ", " : "", d[i].comm, d[i].tid == b->daemon ? "(loop)" : "",
               d[i].tid, pc, 100 * d[i].wait_ns * 1e-9 / dt);
        shown++;
    }
    double ours = sum + (b->redis_t - a->redis_t) + (b->broker_t - a->broker_t) + (b->self_t - a->self_t);
    double mb = b->m_busy - a->m_busy, mt = b->m_total - a->m_total;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("]\n    redis-server %.0f%% (%.0f%%), mockbroker %.0f%% (%.0f%%), this program %.0f%% (%.0f%%); machine busy "
           "%.0f%% of %ld cores, other processes %.0f%% of one core\n",
           100 * (b->redis_t - a->redis_t) / hz / dt, 100 * (b->redis_w - a->redis_w) * 1e-9 / dt,
           100 * (b->broker_t - a->broker_t) / hz / dt, 100 * (b->broker_w - a->broker_w) * 1e-9 / dt,
           100 * (b->self_t - a->self_t) / hz / dt, 100 * (b->self_w - a->self_w) * 1e-9 / dt,
           mt > 0 ? 100 * mb / mt : NAN, ncpu, mt > 0 ? 100 * (mb - ours) / (mt / (double)ncpu) : NAN);
    if (total)
        *total = 100 * sum / hz / dt;
}

/* Prints every vaegand thread's state and kernel wait channel, and whether it
 * ran at all during one second (a stalled daemon: where is it stuck?). */
static void dump_threads(pid_t pid)
{
    cpu_snap_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    cpu_snap(pid, a);
    sleep_s(1.0);
    cpu_snap(pid, b);
    printf("   vaegand threads (state, kernel wait channel, CPU ns in the last second):\n");
    for (int i = 0; i < b->n; i++) {
        char path[96], st[1024] = "", wchan[128] = "?";
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, b->th[i].tid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(st, 1, sizeof st - 1, f);
            st[n] = '\0';
            fclose(f);
        }
        char *r = strrchr(st, ')');
        char state = r && r[1] && r[2] ? r[2] : '?';
        snprintf(path, sizeof path, "/proc/%d/task/%d/wchan", (int)pid, b->th[i].tid);
        f = fopen(path, "r");
        if (f) {
            size_t n = fread(wchan, 1, sizeof wchan - 1, f);
            wchan[n] = '\0';
            fclose(f);
        }
        double before = NAN;
        for (int j = 0; j < a->n; j++)
            if (a->th[j].tid == b->th[i].tid)
                before = a->th[j].run_ns;
        printf("     %d %-14s %c %-28s %.0f\n", b->th[i].tid, b->th[i].comm, state, wchan, b->th[i].run_ns - before);
    }
    free(a);
    free(b);
}

/* ---- producing the backlog ----------------------------------------------------------- */

static double g_tx_bytes = -1;
static int g_dr_failed;

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk, (void)len, (void)opaque;
    const char *p = strstr(json, "\"tx_bytes\":");
    if (p)
        g_tx_bytes = strtod(p + 11, NULL);
    return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err)
        g_dr_failed++;
}

static rd_kafka_t *make_producer(const char *addr, const char *const *kv)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof errstr)) {
            complain("producer option %s=%s: %s", kv[i], kv[i + 1], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        complain("producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

typedef struct produce_res {
    double seconds, raw_bytes, tx_bytes;
    long long stored_msgs, dropped_msgs;
} produce_res_t;

/* Produces n events of vaegan-gen with key = user.  0 or -1. */
static int preproduce(const char *addr, long n, int partitions, produce_res_t *res)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --users %d --items %d --events %ld --seed 1 --format json", VG_GEN_BIN,
             GEN_USERS, GEN_ITEMS, n);
    FILE *gen = popen(cmd, "r");
    if (!gen) {
        complain("cannot run %s", VG_GEN_BIN);
        return -1;
    }
    const char *kv[] = {"compression.type", "lz4", "linger.ms", "50", "batch.num.messages", "10000",
                        "queue.buffering.max.messages", "500000", "queue.buffering.max.kbytes", "1048576",
                        "statistics.interval.ms", "500", NULL};
    rd_kafka_t *rk = make_producer(addr, kv);
    if (!rk) {
        pclose(gen);
        return -1;
    }
    double t0 = vg_mono_s();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long sent = 0;
    double raw = 0;
    g_dr_failed = 0;
    while ((len = getline(&line, &cap, gen)) > 0 && !g_stop) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        const char *u = strstr(line, "\"user\":\"");
        if (!u)
            continue;
        u += 8;
        const char *ue = strchr(u, '"');
        if (!ue)
            continue;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(u, (size_t)(ue - u)), RD_KAFKA_V_VALUE(line, (size_t)len),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) {
            complain("produce: %s", rd_kafka_err2str(e));
            break;
        }
        raw += (double)len + (double)(ue - u);
        if (++sent % 10000 == 0)
            rd_kafka_poll(rk, 0);
    }
    free(line);
    int gst = pclose(gen);
    rd_kafka_flush(rk, 120000);
    int left = rd_kafka_outq_len(rk);
    res->seconds = vg_mono_s() - t0;
    /* one more statistics callback for the final tx_bytes */
    for (double te = vg_mono_s() + 1.2; vg_mono_s() < te;)
        rd_kafka_poll(rk, 100);
    res->raw_bytes = raw;
    res->tx_bytes = g_tx_bytes;
    res->stored_msgs = 0;
    res->dropped_msgs = 0;
    int rc = 0;
    if (sent != n || gst != 0 || left || g_dr_failed) {
        complain("produced %ld of %ld events (generator status %d, %d undelivered, %d failed)", sent, n, gst, left,
            g_dr_failed);
        rc = -1;
    }
    for (int p = 0; p < partitions && rc == 0; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, TOPIC, p, &lo, &hi, 10000);
        if (e) {
            complain("watermarks of partition %d: %s", p, rd_kafka_err2str(e));
            rc = -1;
            break;
        }
        res->stored_msgs += hi - lo;
        res->dropped_msgs += lo;
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- vaegand ------------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static const char *g_vaegand = VG_VAEGAND_BIN;

static pid_t spawn_daemon(const char *conf, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execl(g_vaegand, g_vaegand, "-c", conf, (char *)NULL);
    _exit(127);
}

/* Exit code of pid within timeout seconds: its status, 128+signal, or -1. */
static int wait_exit(pid_t pid, double timeout)
{
    double end = vg_mono_s() + timeout;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (vg_mono_s() > end)
            return -1;
        sleep_s(0.05);
    }
}

static int daemon_alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

static void tail_log(const char *log, int lines)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, log);
    if (system(cmd) != 0)
        fprintf(stderr, "(cannot show %s)\n", log);
}

/* ---- latency ------------------------------------------------------------------------- */

typedef struct lsample {
    int32_t user, item;
    double t_send, t_recv; /* t_recv 0 = no list yet */
} lsample_t;

typedef struct lat {
    pthread_mutex_t mu;
    const char *sock;
    int32_t *pending; /* per user: index of the sample in flight, or -1 */
    lsample_t *s;
    size_t n, cap;
    uint64_t unattributed, notes;
    double last_note;
    int ready, failed;
    /* candidates */
    int32_t *recs;    /* GEN_USERS x REC_READ item numbers, -1 = none */
    uint8_t *used;    /* per user: rec items used */
    int32_t *order;   /* users with a rec list, shuffled */
    int n_order;
    int32_t *ring;    /* users free for a new sample (no sample in flight, rec items left), FIFO */
    size_t rhead, rn;
} lat_t;

/* Caller holds L->mu. */
static void free_push(lat_t *L, int32_t u)
{
    if (L->used[u] < REC_READ && L->recs[(size_t)u * REC_READ + L->used[u]] >= 0 && L->rn < (size_t)GEN_USERS)
        L->ring[(L->rhead + L->rn++) % GEN_USERS] = u;
}

static int parse_num_id(const char *s, size_t len, char prefix)
{
    if (len < 2 || s[0] != prefix)
        return -1;
    long v = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 100000000)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return (int)v;
}

static void *sub_main(void *arg)
{
    lat_t *L = arg;
    redisContext *c = redisConnectUnix(L->sock);
    redisReply *r = c && !c->err ? redisCommand(c, "PSUBSCRIBE __keyspace@0__:rec:*") : NULL;
    pthread_mutex_lock(&L->mu);
    L->failed = !r || r->type != REDIS_REPLY_ARRAY;
    L->ready = 1;
    pthread_mutex_unlock(&L->mu);
    if (r)
        freeReplyObject(r);
    if (L->failed) {
        if (c)
            redisFree(c);
        return NULL;
    }
    void *vr;
    while (redisGetReply(c, &vr) == REDIS_OK) {
        double t = vg_mono_s();
        redisReply *m = vr;
        int stop = 0;
        if (m && m->type == REDIS_REPLY_ARRAY && m->elements == 4 && m->element[2]->type == REDIS_REPLY_STRING &&
            m->element[3]->type == REDIS_REPLY_STRING) {
            const char *ch = m->element[2]->str, *pay = m->element[3]->str;
            const char *rec = strstr(ch, ":rec:");
            if (strcmp(pay, "stop") == 0) {
                stop = 1;
            } else if (rec && strcmp(pay, "zadd") == 0) {
                rec += 5;
                int u = parse_num_id(rec, strlen(rec), 'u');
                pthread_mutex_lock(&L->mu);
                L->notes++;
                L->last_note = t;
                if (u >= 0 && u < GEN_USERS && L->pending[u] >= 0) {
                    L->s[L->pending[u]].t_recv = t;
                    L->pending[u] = -1;
                    free_push(L, u);
                } else {
                    L->unattributed++;
                }
                pthread_mutex_unlock(&L->mu);
            }
        }
        if (m)
            freeReplyObject(m);
        if (stop)
            break;
    }
    redisFree(c);
    return NULL;
}

/* Stops the subscriber thread (a message on a channel its pattern matches). */
static void stop_sub(const vgt_redis_t *redis, pthread_t *th, int *started)
{
    if (!*started)
        return;
    redisContext *pc = vgt_redis_connect(redis);
    if (pc) {
        redisReply *r = redisCommand(pc, "PUBLISH __keyspace@0__:rec:__stop__ stop");
        if (r)
            freeReplyObject(r);
        redisFree(pc);
        pthread_join(*th, NULL);
    } else {
        pthread_detach(*th);
    }
    *started = 0;
}

/* Reads the top REC_READ items of every user's rec list (pipelined).
 * Returns the number of users with a list. */
static int read_recs(redisContext *c, lat_t *L)
{
    L->recs = malloc((size_t)GEN_USERS * REC_READ * sizeof *L->recs);
    L->used = calloc(GEN_USERS, 1);
    L->order = malloc((size_t)GEN_USERS * sizeof *L->order);
    L->pending = malloc((size_t)GEN_USERS * sizeof *L->pending);
    L->ring = malloc((size_t)GEN_USERS * sizeof *L->ring);
    if (!L->recs || !L->used || !L->order || !L->pending || !L->ring)
        return -1;
    for (int u = 0; u < GEN_USERS; u++)
        L->pending[u] = -1;
    L->n_order = 0;
    const int chunk = 2000;
    for (int u0 = 0; u0 < GEN_USERS; u0 += chunk) {
        int u1 = u0 + chunk < GEN_USERS ? u0 + chunk : GEN_USERS;
        for (int u = u0; u < u1; u++)
            redisAppendCommand(c, "ZREVRANGE rec:u%d 0 %d", u, REC_READ - 1);
        for (int u = u0; u < u1; u++) {
            void *vr;
            if (redisGetReply(c, &vr) != REDIS_OK)
                return -1;
            redisReply *r = vr;
            int32_t *row = L->recs + (size_t)u * REC_READ;
            int got = 0;
            for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements && got < REC_READ; k++) {
                int it = parse_num_id(r->element[k]->str, r->element[k]->len, 'i');
                if (it >= 0)
                    row[got++] = it;
            }
            for (int k = got; k < REC_READ; k++)
                row[k] = -1;
            if (got)
                L->order[L->n_order++] = u;
            if (r)
                freeReplyObject(r);
        }
    }
    /* a fixed shuffle (xorshift), so runs are comparable */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = L->n_order - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        int32_t t = L->order[i];
        L->order[i] = L->order[j];
        L->order[j] = t;
    }
    L->rhead = L->rn = 0;
    for (int i = 0; i < L->n_order; i++)
        free_push(L, L->order[i]);
    return L->n_order;
}

typedef struct phase_res {
    int rate;
    double seconds;
    size_t first, sent; /* samples [first, first + sent) */
    long skipped;       /* no user free at the scheduled time */
    double t_first_send, t_last_send, t_end;
    uint64_t unattributed;
    size_t answered, missing, stale;
    double p50, p90, p99, max, mean_answered;
    double d_p50, d_p99, d_count, d_mean; /* the daemon's own histogram (mark -> list written) */
    double lists_per_s, bg_lists, steps;
    double cpu_daemon;
    int stalled; /* no list written for STALL_S while samples were open */
} phase_res_t;

typedef struct prod_arg {
    lat_t *L;
    const char *addr;
    int rate;
    double seconds;
    phase_res_t *res;
    int failed;
} prod_arg_t;

static void *prod_main(void *arg)
{
    prod_arg_t *a = arg;
    lat_t *L = a->L;
    const char *kv[] = {"linger.ms", "0", "acks", "1", "statistics.interval.ms", "0", NULL};
    rd_kafka_t *rk = make_producer(a->addr, kv);
    if (!rk) {
        a->failed = 1;
        return NULL;
    }
    /* warm the connection and metadata up before the clock starts */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    if (md)
        rd_kafka_metadata_destroy(md);
    long total = (long)llround(a->rate * a->seconds);
    double t0 = vg_mono_s() + 0.01, period = 1.0 / a->rate;
    a->res->first = L->n;
    a->res->t_first_send = 0;
    long k = 0;
    char val[160], key[24];
    while (k < total && !g_stop) {
        double due = t0 + (double)k * period;
        double t = vg_mono_s();
        if (t < due) {
            sleep_until(due);
            t = vg_mono_s();
        }
        /* everything due by now goes out */
        while (k < total && t0 + (double)k * period <= t) {
            pthread_mutex_lock(&L->mu);
            int u = -1, it = -1;
            if (L->rn) { /* the user free for the longest time */
                u = L->ring[L->rhead];
                L->rhead = (L->rhead + 1) % GEN_USERS;
                L->rn--;
                it = L->recs[(size_t)u * REC_READ + L->used[u]];
            }
            if (u < 0) {
                pthread_mutex_unlock(&L->mu);
                a->res->skipped++;
                k++;
                continue;
            }
            if (L->n == L->cap) {
                size_t cap = L->cap ? 2 * L->cap : 65536;
                lsample_t *s = realloc(L->s, cap * sizeof *s);
                if (!s) {
                    pthread_mutex_unlock(&L->mu);
                    a->failed = 1;
                    goto out;
                }
                L->s = s;
                L->cap = cap;
            }
            L->used[u]++;
            size_t idx = L->n++;
            double ts = vg_mono_s();
            L->s[idx] = (lsample_t){u, it, ts, 0};
            L->pending[u] = (int32_t)idx;
            pthread_mutex_unlock(&L->mu);
            int kl = snprintf(key, sizeof key, "u%d", u);
            int vl = snprintf(val, sizeof val, "{\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%.3f}", u, it, vg_wall_s());
            if (a->res->t_first_send == 0)
                a->res->t_first_send = ts;
            a->res->t_last_send = ts;
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_KEY(key, (size_t)kl), RD_KAFKA_V_VALUE(val, (size_t)vl),
                                          RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 1);
            if (e) {
                complain("produce: %s", rd_kafka_err2str(e));
                a->failed = 1;
                goto out;
            }
            k++;
        }
        rd_kafka_poll(rk, 0);
    }
out:
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    pthread_mutex_lock(&L->mu);
    a->res->sent = L->n - a->res->first;
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(q * (double)n);
    i = i ? i - 1 : 0;
    return sorted[i < n ? i : n - 1];
}

/* ---- output -------------------------------------------------------------------------- */

static void jnum(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, comma ? "," : "");
    else
        fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
}

static const char *ms(char *buf, size_t len, double s)
{
    if (isnan(s))
        snprintf(buf, len, "-");
    else if (isinf(s))
        snprintf(buf, len, "missing");
    else
        snprintf(buf, len, "%.1f", 1e3 * s);
    return buf;
}

static int redis_cmd_ok(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    return ok;
}

/* INFO commandstats: calls and microseconds per call of the busiest commands. */
static void print_cmdstats(redisContext *c, const char *what)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return;
    }
    printf("  %s (calls, usec/call, total s):", what);
    double total = 0;
    for (char *line = r->str, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char name[64];
        double calls = 0, usec = 0, per = 0;
        if (sscanf(line, "cmdstat_%63[^:]:calls=%lf,usec=%lf,usec_per_call=%lf", name, &calls, &usec, &per) == 4 &&
            usec > 1e5) {
            printf(" %s %.0f, %.2f, %.1f;", name, calls, per, usec * 1e-6);
            total += usec;
        }
    }
    printf(" (commands taking > 0.1 s: %.1f s in all)\n", total * 1e-6);
    freeReplyObject(r);
}

/* ---- main ---------------------------------------------------------------------------- */

typedef struct series {
    metrics_t *m;
    size_t n, cap;
} series_t;

static int series_add(series_t *s, const metrics_t *m)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        metrics_t *x = realloc(s->m, cap * sizeof *x);
        if (!x)
            return -1;
        s->m = x;
        s->cap = cap;
    }
    s->m[s->n++] = *m;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: vaegan-bench-stream [--events N] [--partitions P] [--rates R1,R2,...] [--rate-seconds S]\n"
          "                           [--drain-seconds D] [--catchup-timeout T] [--keep]\n"
          "  --events N           events produced before vaegand starts (default 2000000)\n"
          "  --partitions P       partitions of the topic (default 32; the mock keeps 5 MiB each)\n"
          "  --rates LIST         event rates of the latency phases (default 1000,10000)\n"
          "  --rate-seconds S     seconds of sending per rate (default 20)\n"
          "  --drain-seconds D    max wait for the last lists after each rate (default 60)\n"
          "  --catchup-timeout T  max wait for the lists to catch up after ingest (default 1200)\n"
          "  --train-steps K      train.steps_per_round for vaegand (default: its default; 0 = trainer off,\n"
          "                       lists then rank by popularity: a diagnostic of the ingest path)\n"
          "  --vaegand PATH       the daemon binary to run (default: the one of this build)\n"
          "  --keep               keep the temporary directory (logs)\n",
          f);
}

int main(int argc, char **argv)
{
    long n_events = 2000000;
    int partitions = 32, n_rates = 2, keep = 0, train_steps = -1;
    int rates[MAX_RATES] = {1000, 10000};
    double rate_seconds = 20, drain_seconds = 60, catchup_timeout = 1200;
    static const struct option lo[] = {
        {"events", 1, 0, 'n'},        {"partitions", 1, 0, 'p'},      {"rates", 1, 0, 'r'},
        {"rate-seconds", 1, 0, 's'},  {"drain-seconds", 1, 0, 'd'},   {"catchup-timeout", 1, 0, 'c'},
        {"keep", 0, 0, 'k'},          {"help", 0, 0, 'h'},            {"train-steps", 1, 0, 't'},   {"vaegand", 1, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n': n_events = atol(optarg); break;
        case 'p': partitions = atoi(optarg); break;
        case 's': rate_seconds = atof(optarg); break;
        case 'd': drain_seconds = atof(optarg); break;
        case 'c': catchup_timeout = atof(optarg); break;
        case 'k': keep = 1; break;
        case 't': train_steps = atoi(optarg); break;
        case 'V': g_vaegand = optarg; break;
        case 'r': {
            n_rates = 0;
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t && n_rates < MAX_RATES; t = strtok_r(NULL, ",", &save))
                rates[n_rates++] = atoi(t);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int bad = n_events < 1 || partitions < 1 || partitions > 10000 || rate_seconds <= 0 || drain_seconds < 0;
    for (int i = 0; i < n_rates; i++)
        bad |= rates[i] < 1 || rates[i] > 1000000;
    if (bad || optind < argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* the machine */
    char cpu[256] = "unknown", date[64];
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[512];
        while (fgets(line, sizeof line, ci))
            if (strncmp(line, "model name", 10) == 0) {
                char *v = strchr(line, ':');
                if (v) {
                    v += 1 + (v[1] == ' ');
                    v[strcspn(v, "\n")] = '\0';
                    snprintf(cpu, sizeof cpu, "%s", v);
                }
                break;
            }
        fclose(ci);
    }
    time_t tnow = time(NULL);
    struct tm tm;
    gmtime_r(&tnow, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double load[1] = {NAN};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load[0]) != 1)
            load[0] = NAN;
        fclose(la);
    }
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("== vaegan-bench-stream: %ld events (vaegan-gen, %d users x %d items), %d partitions, %s\n", n_events,
           GEN_USERS, GEN_ITEMS, partitions, date);
    printf("   machine: %ld CPUs, %s, load average %.2f at start, OPENBLAS_CORETYPE %s\n", ncpu, cpu, load[0],
           coretype ? coretype : "unset (vaegand picks)");
    printf("   daemon: %s\n", g_vaegand);

    char dir[64] = "/tmp/vg-bench-stream-XXXXXX";
    if (!mkdtemp(dir)) {
        complain("mkdtemp: %s", strerror(errno));
        return 1;
    }
    char conf[PATH_MAX], log[PATH_MAX], state[PATH_MAX];
    snprintf(conf, sizeof conf, "%s/vaegand.conf", dir);
    snprintf(log, sizeof log, "%s/vaegand.log", dir);
    snprintf(state, sizeof state, "%s/state", dir);

    int ok = 0, exit_code = -2;
    vgt_redis_t redis = {0};
    vgt_broker_t broker = {0};
    pid_t dpid = 0;
    redisContext *rc = NULL;
    series_t ser = {0};
    lat_t L;
    memset(&L, 0, sizeof L);
    pthread_mutex_init(&L.mu, NULL);
    pthread_t sub_th;
    int sub_started = 0;
    produce_res_t pr = {0};
    phase_res_t ph[MAX_RATES];
    memset(ph, 0, sizeof ph);
    int n_done = 0;
    double ingest_rate = NAN, ingest_lists = NAN, ingest_span = NAN, ingest_peak = NAN, join_s = NAN;
    double catchup_s = NAN, idle_steps_per_s = NAN, ingest_cpu = NAN;
    size_t stale_total = 0, checked = 0;
    int stalled = 0;
    metrics_t m;

    if (vgt_redis_start(&redis, dir, 0) != 0) {
        complain("cannot start redis-server in %s", dir);
        goto done;
    }
    if (vgt_broker_start(&broker, VG_MOCKBROKER_BIN, TOPIC, partitions) != 0) {
        complain("cannot start %s", VG_MOCKBROKER_BIN);
        goto done;
    }
    g_pid_redis = redis.pid;
    g_pid_broker = broker.pid;
    printf("   redis-server on %s, mock broker on %s (%d partitions), work dir %s\n", redis.sock, broker.addr,
           partitions, dir);

    /* 1. the backlog */
    if (preproduce(broker.addr, n_events, partitions, &pr) != 0)
        goto done;
    printf("-- produced %ld events in %.1f s (%.0f/s): %.1f MiB of keys+values, %.1f MiB sent after lz4 "
           "(%.2f MiB per partition, mock limit 5 MiB); broker holds %lld, dropped %lld\n",
           n_events, pr.seconds, n_events / pr.seconds, pr.raw_bytes / 1048576.0, pr.tx_bytes / 1048576.0,
           pr.tx_bytes / 1048576.0 / partitions, pr.stored_msgs, pr.dropped_msgs);
    if (pr.dropped_msgs || pr.stored_msgs != n_events) {
        complain("the mock broker dropped data (5 MiB per partition): use more --partitions or fewer --events");
        goto done;
    }

    /* 2. vaegand */
    int port = free_port();
    FILE *f = fopen(conf, "w");
    if (!f || port < 0) {
        complain("cannot write %s", conf);
        if (f)
            fclose(f);
        goto done;
    }
    fprintf(f,
            "[kafka]\nbrokers = %s\ntopic = %s\ngroup = bench\noption.fetch.wait.max.ms = 10\n"
            "option.session.timeout.ms = 6000\noption.auto.offset.reset = earliest\n"
            "[redis]\nsocket = %s\n[serve]\ntop_n = 100\n[state]\ndir = %s\n[log]\nlevel = info\n"
            "[metrics]\nlisten = 127.0.0.1:%d\n",
            broker.addr, TOPIC, redis.sock, state, port);
    if (train_steps >= 0)
        fprintf(f, "[train]\nsteps_per_round = %d\n", train_steps);
    fclose(f);
    rc = vgt_redis_connect(&redis);
    if (!rc) {
        complain("cannot connect to redis");
        goto done;
    }
    redis_cmd_ok(rc, "CONFIG RESETSTAT");
    double t_start = vg_mono_s();
    dpid = spawn_daemon(conf, log);
    if (dpid < 0) {
        complain("fork: %s", strerror(errno));
        dpid = 0;
        goto done;
    }
    g_pid_daemon = dpid;
    proc_cpu_t pc0, pc1;

    /* 3. ingest */
    double t_first = 0, t_all = 0, last_progress = vg_mono_s();
    metrics_t m_first = {0}, m_all = {0};
    double last_stored = -1;
    while (!g_stop) {
        sleep_s(0.1);
        if (!daemon_alive(dpid)) {
            complain("vaegand exited during ingest; its log:");
            tail_log(log, 30);
            dpid = 0;
            goto done;
        }
        if (scrape(port, &m) != 0) {
            if (vg_mono_s() - t_start > 60) {
                complain("no /metrics from vaegand on port %d after 60 s", port);
                goto done;
            }
            continue;
        }
        series_add(&ser, &m);
        if (m.stored > 0 && t_first == 0) {
            t_first = m.t;
            m_first = m;
            join_s = m.t - t_start;
            proc_cpu_take(&pc0);
        }
        if (m.stored != last_stored) {
            last_stored = m.stored;
            last_progress = vg_mono_s();
        }
        if (m.stored >= (double)n_events) {
            t_all = m.t;
            m_all = m;
            proc_cpu_take(&pc1);
            break;
        }
        if (vg_mono_s() - last_progress > 120) {
            complain("no progress of vaegan_events_stored_total for 120 s (at %.0f of %ld)", m.stored, n_events);
            goto done;
        }
    }
    if (g_stop)
        goto done;
    ingest_span = t_all - t_first;
    ingest_rate = ingest_span > 0 ? (m_all.stored - m_first.stored) / ingest_span : NAN;
    ingest_lists = ingest_span > 0 ? (m_all.lists - m_first.lists) / ingest_span : NAN;
    /* peak over 1 s windows */
    ingest_peak = 0;
    for (size_t i = 0; i < ser.n; i++)
        for (size_t j = i + 1; j < ser.n; j++)
            if (ser.m[j].t - ser.m[i].t >= 1.0) {
                double r = (ser.m[j].stored - ser.m[i].stored) / (ser.m[j].t - ser.m[i].t);
                if (r > ingest_peak)
                    ingest_peak = r;
                break;
            }
    double max_pending = 0, paused = 0, nsc = 0;
    for (size_t i = 0; i < ser.n; i++)
        if (ser.m[i].t >= t_first && ser.m[i].t <= t_all) {
            max_pending = ser.m[i].pending > max_pending ? ser.m[i].pending : max_pending;
            paused += ser.m[i].paused;
            nsc++;
        }
    printf("-- ingest: %.0f events stored in %.2f s: %.0f events/s (peak 1 s: %.0f/s); %.0f lists written/s "
           "meanwhile; first event stored %.1f s after the start (group join); pending events max %.0f, "
           "consumption paused in %.0f of %.0f scrapes\n",
           m_all.stored - m_first.stored, ingest_span, ingest_rate, ingest_peak, ingest_lists, join_s, max_pending,
           paused, nsc);
    proc_cpu_print("ingest", &pc0, &pc1, &ingest_cpu);
    print_cmdstats(rc, "Redis commands from the start to the end of ingest");

    /* 4. lists catch up */
    {
        double t_quiet = vg_mono_s(), last_lists = -1, t0 = vg_mono_s();
        proc_cpu_t q0 = pc1, q1;
        while (!g_stop) {
            sleep_s(0.1);
            if (!daemon_alive(dpid)) {
                complain("vaegand exited while the lists caught up; its log:");
                tail_log(log, 30);
                dpid = 0;
                goto done;
            }
            if (scrape(port, &m) != 0)
                continue;
            series_add(&ser, &m);
            if (m.lists != last_lists) {
                last_lists = m.lists;
                t_quiet = vg_mono_s();
            }
            if ((m.step > 0 || train_steps == 0) && m.lists >= m.users && vg_mono_s() - t_quiet >= 2.0)
                break;
            if (vg_mono_s() - t0 > catchup_timeout) {
                printf("   (lists did not settle within %.0f s: %.0f written for %.0f users, step %.0f; going on)\n",
                       catchup_timeout, m.lists, m.users, m.step);
                break;
            }
        }
        if (g_stop)
            goto done;
        catchup_s = t_quiet - t_all;
        proc_cpu_take(&q1);
        printf("-- lists caught up %.1f s after the last event was stored: %.0f lists written for %.0f users, "
               "%.0f items, model step %.0f\n",
               catchup_s, m.lists, m.users, m.items, m.step);
        proc_cpu_print("catch-up", &q0, &q1, NULL);
        /* the idle daemon (nothing arrives): what does it do? */
        metrics_t a = m, b;
        proc_cpu_t i0, i1;
        proc_cpu_take(&i0);
        sleep_s(5.0);
        proc_cpu_take(&i1);
        if (scrape(port, &b) == 0) {
            idle_steps_per_s = (b.step - a.step) / (b.t - a.t);
            printf("-- idle for %.1f s (no events): model step %.0f -> %.0f, lists %.0f -> %.0f\n", b.t - a.t, a.step,
                   b.step, a.lists, b.lists);
        }
        proc_cpu_print("idle", &i0, &i1, NULL);
    }

    /* 5. latency */
    {
        redisReply *r = redisCommand(rc, "CONFIG SET notify-keyspace-events Kz");
        int okc = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!okc) {
            complain("CONFIG SET notify-keyspace-events failed");
            goto done;
        }
    }
    double t_r0 = vg_mono_s();
    int with_list = read_recs(rc, &L);
    if (with_list <= 0) {
        complain("no rec:<user> lists to start from");
        goto done;
    }
    printf("-- latency set-up: rec lists of %d users read in %.1f s\n", with_list, vg_mono_s() - t_r0);
    L.sock = redis.sock;
    if (pthread_create(&sub_th, NULL, sub_main, &L) != 0)
        goto done;
    sub_started = 1;
    for (;;) {
        pthread_mutex_lock(&L.mu);
        int ready = L.ready, failed = L.failed;
        pthread_mutex_unlock(&L.mu);
        if (failed) {
            complain("PSUBSCRIBE failed");
            goto done;
        }
        if (ready)
            break;
        sleep_s(0.01);
    }
    for (int ri = 0; ri < n_rates && !g_stop; ri++) {
        phase_res_t *P = &ph[ri];
        P->rate = rates[ri];
        P->seconds = rate_seconds;
        metrics_t ma, mb;
        while (scrape(port, &ma) != 0 && !g_stop)
            sleep_s(0.1);
        pthread_mutex_lock(&L.mu);
        uint64_t un0 = L.unattributed;
        pthread_mutex_unlock(&L.mu);
        proc_cpu_t c0, c1;
        proc_cpu_take(&c0);
        prod_arg_t pa = {&L, broker.addr, rates[ri], rate_seconds, P, 0};
        pthread_t pt;
        if (pthread_create(&pt, NULL, prod_main, &pa) != 0)
            goto done;
        double t_end_send = vg_mono_s() + rate_seconds + 1, last_lists = ma.lists, t_lists = vg_mono_s();
        while (vg_mono_s() < t_end_send && !g_stop) {
            sleep_s(0.1);
            if (scrape(port, &m) == 0) {
                series_add(&ser, &m);
                if (m.lists != last_lists) {
                    last_lists = m.lists;
                    t_lists = vg_mono_s();
                }
            }
        }
        pthread_join(pt, NULL);
        if (pa.failed)
            goto done;
        /* drain: until every sample of the phase has its list, or D s */
        double t_drain = vg_mono_s();
        while (!g_stop && vg_mono_s() - t_drain < drain_seconds) {
            pthread_mutex_lock(&L.mu);
            size_t open = 0;
            for (size_t i = P->first; i < P->first + P->sent; i++)
                open += L.s[i].t_recv == 0;
            pthread_mutex_unlock(&L.mu);
            if (open == 0)
                break;
            sleep_s(0.1);
            if (scrape(port, &m) == 0) {
                series_add(&ser, &m);
                if (m.lists != last_lists) {
                    last_lists = m.lists;
                    t_lists = vg_mono_s();
                }
            }
            if (vg_mono_s() - t_lists >= STALL_S) {
                printf("!! vaegand wrote no list for %.0f s while %zu samples wait: it is stuck\n", vg_mono_s() - t_lists,
                       open);
                dump_threads(dpid);
                P->stalled = 1;
                break;
            }
            if (!daemon_alive(dpid)) {
                complain("vaegand exited during the latency phase; its log:");
                tail_log(log, 30);
                dpid = 0;
                goto done;
            }
        }
        P->t_end = vg_mono_s();
        proc_cpu_take(&c1);
        while (scrape(port, &mb) != 0 && !g_stop)
            sleep_s(0.1);
        /* figures */
        pthread_mutex_lock(&L.mu);
        P->unattributed = L.unattributed - un0;
        double *v = malloc((P->sent ? P->sent : 1) * sizeof *v);
        double sum = 0;
        for (size_t i = 0; i < P->sent; i++) {
            const lsample_t *s = &L.s[P->first + i];
            if (s->t_recv > 0) {
                v[i] = s->t_recv - s->t_send;
                sum += v[i];
                P->answered++;
            } else {
                v[i] = INFINITY;
                P->missing++;
            }
        }
        pthread_mutex_unlock(&L.mu);
        qsort(v, P->sent, sizeof *v, cmp_d);
        P->p50 = pct(v, P->sent, 0.50);
        P->p90 = pct(v, P->sent, 0.90);
        P->p99 = pct(v, P->sent, 0.99);
        P->max = P->sent ? v[P->sent - 1] : NAN;
        P->mean_answered = P->answered ? sum / (double)P->answered : NAN;
        free(v);
        P->d_p50 = hist_quantile(&ma, &mb, 0.50);
        P->d_p99 = hist_quantile(&ma, &mb, 0.99);
        P->d_count = mb.lat_count - ma.lat_count;
        P->d_mean = P->d_count > 0 ? (mb.lat_sum - ma.lat_sum) / P->d_count : NAN;
        P->lists_per_s = (mb.lists - ma.lists) / (mb.t - ma.t);
        P->bg_lists = (mb.lists - ma.lists) - P->d_count;
        P->steps = mb.step - ma.step;
        double span = P->t_last_send - P->t_first_send;
        char b1[32], b2[32], b3[32], b4[32];
        printf("-- %d events/s for %.0f s: %zu sent (%.0f/s achieved, %ld skipped: no free user), %zu lists seen, "
               "%zu missing after %.0f s of drain, %llu unattributed notifications\n",
               P->rate, P->seconds, P->sent, span > 0 ? (double)(P->sent - 1) / span : NAN, P->skipped, P->answered,
               P->missing, P->t_end - t_drain, (unsigned long long)P->unattributed);
        printf("   click -> rec:<user> latency p50 %s ms, p90 %s ms, p99 %s ms, max %s ms (mean of the seen %.1f ms)\n",
               ms(b1, sizeof b1, P->p50), ms(b2, sizeof b2, P->p90), ms(b3, sizeof b3, P->p99),
               ms(b4, sizeof b4, P->max), 1e3 * P->mean_answered);
        printf("   daemon's own histogram (Redis ack of the history -> list written): %.0f lists, mean %.1f ms, "
               "p50 <= %s ms, p99 <= %s ms; %.0f lists/s written, %.0f background lists, %.0f training steps\n",
               P->d_count, 1e3 * P->d_mean, ms(b1, sizeof b1, P->d_p50), ms(b2, sizeof b2, P->d_p99),
               P->lists_per_s, P->bg_lists, P->steps);
        proc_cpu_print("the phase", &c0, &c1, &P->cpu_daemon);
        n_done++;
        if (P->stalled) {
            stalled = 1;
            printf("!! the remaining rates are skipped (vaegand is stuck)\n");
            break;
        }
    }
    if (g_stop)
        goto done;

    /* 6. every answered sample: the clicked item must have left rec:<user> */
    stop_sub(&redis, &sub_th, &sub_started);
    {
        pthread_mutex_lock(&L.mu);
        size_t n = L.n;
        pthread_mutex_unlock(&L.mu);
        for (size_t i0 = 0; i0 < n; i0 += 2000) {
            size_t i1 = i0 + 2000 < n ? i0 + 2000 : n;
            for (size_t i = i0; i < i1; i++)
                redisAppendCommand(rc, "ZSCORE rec:u%d i%d", L.s[i].user, L.s[i].item);
            for (size_t i = i0; i < i1; i++) {
                void *vr;
                if (redisGetReply(rc, &vr) != REDIS_OK)
                    goto done;
                redisReply *r = vr;
                if (L.s[i].t_recv > 0) {
                    checked++;
                    if (r && r->type != REDIS_REPLY_NIL) {
                        stale_total++;
                        for (int ri = 0; ri < n_done; ri++)
                            if (i >= ph[ri].first && i < ph[ri].first + ph[ri].sent)
                                ph[ri].stale++;
                    }
                }
                if (r)
                    freeReplyObject(r);
            }
        }
        printf("-- check: %zu of %zu answered samples still list the clicked item in rec:<user>\n", stale_total,
               checked);
    }
    ok = 1;

done:
    stop_sub(&redis, &sub_th, &sub_started);
    if (dpid > 0) {
        kill(dpid, SIGTERM);
        double t0 = vg_mono_s();
        exit_code = wait_exit(dpid, stalled ? 15 : 120);
        if (exit_code == -1) {
            kill(dpid, SIGKILL);
            waitpid(dpid, NULL, 0);
        }
        printf("-- vaegand: SIGTERM -> %s %d after %.1f s%s\n", exit_code == -1 ? "no exit, SIGKILL; code" : "exit",
               exit_code, vg_mono_s() - t0, exit_code == 0 ? "" : " (NOT 0; log tail below)");
        if (exit_code != 0)
            tail_log(log, 30);
    }
    if (rc)
        redisFree(rc);
    vgt_broker_stop(&broker);
    vgt_redis_stop(&redis);

    if (ok) {
        char b[4][32];
        printf("\n== summary (%s, %ld CPUs, %s)\n", cpu, ncpu, date);
        printf("   ingest: %.0f events/s from the broker to Redis histories (aim >= 100000), %.0f lists/s meanwhile\n",
               ingest_rate, ingest_lists);
        printf("   | rate/s | sent | p50 ms | p90 ms | p99 ms | max ms | missing | unattributed | stale |\n");
        for (int i = 0; i < n_done; i++)
            printf("   | %d | %zu | %s | %s | %s | %s | %zu | %llu | %zu |\n", ph[i].rate, ph[i].sent,
                   ms(b[0], 32, ph[i].p50), ms(b[1], 32, ph[i].p90), ms(b[2], 32, ph[i].p99),
                   ms(b[3], 32, ph[i].max), ph[i].missing, (unsigned long long)ph[i].unattributed, ph[i].stale);
        if (stalled)
            printf("   !! vaegand got stuck (no list written for %.0f s with samples waiting): see the thread dump above\n",
                   STALL_S);
        printf("   (aim: p99 <= 50 ms at 1000 events/s; \"missing\" = no list within the drain time, counted as "
               "+inf)\n");
        /* one JSON line */
        printf("{\"bench\":\"stream\",\"date\":\"%s\",\"nproc\":%ld,\"cpu\":\"%s\",", date, ncpu, cpu);
        printf("\"openblas_coretype_env\":%s%s%s,", coretype ? "\"" : "", coretype ? coretype : "null",
               coretype ? "\"" : "");
        printf("\"vaegand\":\"%s\",\"train_steps_per_round\":%d,", g_vaegand, train_steps);
        printf("\"events\":%ld,\"partitions\":%d,\"users\":%d,\"items\":%d,", n_events, partitions, GEN_USERS,
               GEN_ITEMS);
        jnum(stdout, "produce_s", pr.seconds, 1);
        jnum(stdout, "lz4_mib_per_partition", pr.tx_bytes / 1048576.0 / partitions, 1);
        jnum(stdout, "group_join_s", join_s, 1);
        jnum(stdout, "ingest_events_per_s", ingest_rate, 1);
        jnum(stdout, "ingest_peak_events_per_s", ingest_peak, 1);
        jnum(stdout, "ingest_s", ingest_span, 1);
        jnum(stdout, "ingest_lists_per_s", ingest_lists, 1);
        jnum(stdout, "ingest_daemon_cpu_pct", ingest_cpu, 1);
        jnum(stdout, "catchup_s", catchup_s, 1);
        jnum(stdout, "idle_steps_per_s", idle_steps_per_s, 1);
        printf("\"latency\":[");
        for (int i = 0; i < n_done; i++) {
            const phase_res_t *P = &ph[i];
            double span = P->t_last_send - P->t_first_send;
            printf("%s{\"rate\":%d,\"seconds\":%g,\"sent\":%zu,", i ? "," : "", P->rate, P->seconds, P->sent);
            jnum(stdout, "achieved_rate", span > 0 ? (double)(P->sent - 1) / span : NAN, 1);
            printf("\"skipped\":%ld,\"answered\":%zu,\"missing\":%zu,\"unattributed\":%llu,\"stale\":%zu,",
                   P->skipped, P->answered, P->missing, (unsigned long long)P->unattributed, P->stale);
            jnum(stdout, "p50_ms", 1e3 * P->p50, 1);
            jnum(stdout, "p90_ms", 1e3 * P->p90, 1);
            jnum(stdout, "p99_ms", 1e3 * P->p99, 1);
            jnum(stdout, "max_ms", 1e3 * P->max, 1);
            jnum(stdout, "mean_answered_ms", 1e3 * P->mean_answered, 1);
            jnum(stdout, "daemon_p50_le_ms", 1e3 * P->d_p50, 1);
            jnum(stdout, "daemon_p99_le_ms", 1e3 * P->d_p99, 1);
            jnum(stdout, "daemon_mean_ms", 1e3 * P->d_mean, 1);
            jnum(stdout, "lists_per_s", P->lists_per_s, 1);
            jnum(stdout, "background_lists", P->bg_lists, 1);
            jnum(stdout, "training_steps", P->steps, 1);
            printf("\"stalled\":%d,", P->stalled);
            jnum(stdout, "daemon_cpu_pct", P->cpu_daemon, 0);
            printf("}");
        }
        printf("],\"stale\":%zu,\"checked\":%zu,\"stalled\":%d,\"vaegand_exit\":%d}\n", stale_total, checked,
               stalled, exit_code);
    }
    if (keep || !ok)
        fprintf(stderr, "vaegan-bench-stream: work directory kept: %s\n", dir);
    else {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "vaegan-bench-stream: cannot remove %s\n", dir);
    }
    free(ser.m);
    free(L.s);
    free(L.recs);
    free(L.used);
    free(L.order);
    free(L.pending);
    free(L.ring);
    return ok && exit_code == 0 ? 0 : 1;
}
