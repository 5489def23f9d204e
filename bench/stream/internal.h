/*
 * internal.h — the pieces of vaegan-bench-stream (main.c has the method and
 * the list of phases) and the run they share.
 *
 * One bs_run_t lives in main(); each phase reads what the earlier ones left
 * in it and adds its own figures.  A phase returns 0 to go on, -1 to stop
 * the run (it has said why on stderr); main then stops the daemon and the
 * servers (env.c) and prints the summary only when every phase went through.
 * Everything runs on the main thread except the two latency threads of
 * sample.c, which share bs_lat_t under its mutex.
 *
 *   stop.c      SIGINT/SIGTERM flag, sleeps that end on it, complain()
 *   metrics.c   /metrics scrapes, the daemon's histogram, Redis commandstats
 *   cpu.c       per-thread and per-process CPU from /proc
 *   producer.c  librdkafka producers (delivery and byte counts)
 *   sample.c    latency samples: candidates, the sender and the subscriber
 *   env.c       work dir, redis-server, mockbroker, vaegand: start and stop
 *   backlog.c, ingest.c, catchup.c, latency.c, check.c   the phases
 *   report.c    machine line, millisecond cells, the summary and JSON line
 */
#ifndef VG_BENCH_STREAM_INTERNAL_H
#define VG_BENCH_STREAM_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "tests/support/kafka.h"
#include "tests/support/redis.h"

#define BS_GEN_USERS 138493 /* MovieLens-20M, raw */
#define BS_GEN_ITEMS 27278
#define BS_TOPIC "clicks"
#define BS_REC_READ 10 /* rec items read per user before the latency phases */
#define BS_HIDDEN 600  /* model.hidden: H of the decoder, ~2·N·H FLOPs per list */
#define BS_MAX_BUCKETS 32
#define BS_MAX_RATES 8
#define BS_MAX_THREADS 256
#define BS_STALL_S 15.0 /* no list written for this long with samples open: the daemon is stuck */

/* ---- stop.c ---------------------------------------------------------------------------- */

extern volatile sig_atomic_t bs_stop; /* set by SIGINT/SIGTERM */
void bs_on_signal(int sig);
void bs_sleep_s(double s);     /* returns early once bs_stop is set */
void bs_sleep_until(double t); /* t on vg_mono_s() */
void bs_complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- metrics.c -------------------------------------------------------------------------- */

typedef struct bs_metrics {
    double t; /* vg_mono_s() when scraped */
    double stored, events, invalid, lists, users, items, step, pending, paused;
    int nb;
    double le[BS_MAX_BUCKETS], cum[BS_MAX_BUCKETS]; /* latency histogram, cumulative; last = +Inf */
    double lat_count, lat_sum;
    double scored, sc_product_s, sc_select_s; /* vaegan_scorer_users_total, _seconds_total{part} */
    char kernel[64];                          /* vaegan_scorer_kernel_info's path ("" before a model) */
} bs_metrics_t;

typedef struct bs_series {
    bs_metrics_t *m; /* owned; free() */
    size_t n, cap;
} bs_series_t;

/* GET /metrics from 127.0.0.1:port into m.  0, or -1 with m untouched. */
int bs_scrape(int port, bs_metrics_t *m);
int bs_series_add(bs_series_t *s, const bs_metrics_t *m); /* 0 or -1 (no memory) */
/* Quantile q of the daemon's list latency histogram between two scrapes
 * (the upper bucket bound), in seconds; NAN when empty. */
double bs_hist_quantile(const bs_metrics_t *a, const bs_metrics_t *b, double q);
/* Prints Redis' INFO commandstats: the commands that took > 0.1 s. */
void bs_print_cmdstats(redisContext *c, const char *what);
/* Redis' own count and microseconds of one command (INFO commandstats;
 * 0 and 0 when it never ran).  0 or -1. */
int bs_cmdstat(redisContext *c, const char *cmd, double *calls, double *usec);

/* ---- cpu.c ------------------------------------------------------------------------------ */

typedef struct bs_tcpu {
    int tid;
    char comm[32];
    unsigned long long ticks; /* utime + stime */
    double run_ns, wait_ns;   /* schedstat: on a CPU, runnable but waiting for one (ns) */
} bs_tcpu_t;

typedef struct bs_threads {
    int n;
    bs_tcpu_t th[BS_MAX_THREADS];
} bs_threads_t;

typedef struct bs_pids {
    pid_t daemon, redis, broker; /* 0 = not (yet) running */
} bs_pids_t;

/* One reading of the CPU counters of vaegand's threads, redis-server, the
 * broker, this program and the machine. */
typedef struct bs_cpu {
    pid_t daemon;
    bs_threads_t d;
    double redis_t, broker_t, self_t, redis_w, broker_w, self_w, m_busy, m_total, t;
} bs_cpu_t;

void bs_cpu_take(bs_cpu_t *p, const bs_pids_t *pids);
/* Prints CPU use between a and b (per vaegand thread, per process, the
 * machine); *daemon_pct (may be NULL) gets vaegand's total in % of a core. */
void bs_cpu_print(const char *phase, const bs_cpu_t *a, const bs_cpu_t *b, double *daemon_pct);
/* Prints every vaegand thread's state, wait channel and CPU over one second. */
void bs_dump_threads(pid_t pid);

/* ---- producer.c ------------------------------------------------------------------------- */

typedef struct bs_prod_stats {
    double tx_bytes; /* from the statistics callback; -1 = none yet */
    int dr_failed;   /* failed delivery reports */
} bs_prod_stats_t;

/* A producer on addr with the options kv (name, value, ..., NULL), its
 * delivery and statistics callbacks counting into *stats (which must outlive
 * it).  NULL after a complaint. */
rd_kafka_t *bs_make_producer(const char *addr, const char *const *kv, bs_prod_stats_t *stats);

/* ---- sample.c --------------------------------------------------------------------------- */

typedef struct bs_sample {
    int32_t user, item;
    double t_send, t_recv; /* t_recv 0 = no list yet */
} bs_sample_t;

/* The latency samples and the users free to carry a new one; mu guards
 * everything below it once the threads run. */
typedef struct bs_lat {
    pthread_mutex_t mu;
    const char *sock;
    int32_t *pending; /* per user: index of the sample in flight, or -1 */
    bs_sample_t *s;
    size_t n, cap;
    uint64_t unattributed, notes;
    double last_note;
    int ready, failed;
    /* candidates */
    int32_t *recs;  /* BS_GEN_USERS x BS_REC_READ item numbers, -1 = none */
    uint8_t *used;  /* per user: rec items used */
    int32_t *order; /* users with a rec list, shuffled */
    int n_order;
    int32_t *ring; /* users free for a new sample (no sample in flight, rec items left), FIFO */
    size_t rhead, rn;
} bs_lat_t;

/* What one rate of the latency phase sent and measured. */
typedef struct bs_rate {
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
    double scorer_users_per_s, scorer_busy_users_per_s, kernel_gflops; /* from the daemon's scorer counters */
    double redis_us_per_list; /* Redis' usec per list write (one EVAL of the list script, all it runs) */
    char kernel[64];
    double cpu_daemon;
    int stalled; /* no list written for BS_STALL_S while samples were open */
} bs_rate_t;

/* The sender thread's job: rate events/s for seconds to addr. */
typedef struct bs_sender {
    bs_lat_t *L;
    const char *addr;
    int rate;
    double seconds;
    bs_rate_t *res;
    int failed;
} bs_sender_t;

/* Reads the top BS_REC_READ items of every user's rec list and queues the
 * users that have one.  Returns that number of users, or -1. */
int bs_lat_read_recs(redisContext *c, bs_lat_t *L);
void *bs_subscriber_main(void *lat);  /* PSUBSCRIBE rec:*, marks samples answered */
void bs_subscriber_stop(const vgt_redis_t *redis, pthread_t *th, int *started);
void *bs_sender_main(void *sender);   /* one rate's clicks */
void bs_lat_free(bs_lat_t *L);
/* Percentile q of n sorted values (nearest rank); NAN when n = 0. */
double bs_pct(const double *sorted, size_t n, double q);
int bs_cmp_double(const void *a, const void *b);

/* ---- the run ---------------------------------------------------------------------------- */

#define BS_MAX_SET 16

typedef struct bs_opts {
    long n_events;
    int partitions, n_rates, keep, train_steps; /* train_steps -1 = the daemon's default */
    int rates[BS_MAX_RATES];
    double rate_seconds, drain_seconds, catchup_timeout;
    const char *vaegand;
    const char *set[BS_MAX_SET]; /* --set section.key=value, in order */
    int n_set;
} bs_opts_t;

typedef struct bs_machine {
    char cpu[256], date[64];
    long ncpu;
    double load; /* 1-minute load average at the start */
    const char *coretype; /* OPENBLAS_CORETYPE, or NULL */
} bs_machine_t;

typedef struct bs_backlog {
    double seconds, raw_bytes, tx_bytes;
    long long stored_msgs, dropped_msgs;
} bs_backlog_t;

typedef struct bs_run {
    bs_opts_t o;
    bs_machine_t mach;
    /* env.c */
    char dir[64], conf[PATH_MAX], log[PATH_MAX], state[PATH_MAX];
    vgt_redis_t redis;
    vgt_broker_t broker;
    bs_pids_t pids;
    pid_t dpid; /* vaegand while it runs and is not reaped, else 0 */
    int port;   /* its /metrics */
    redisContext *rc; /* for the set-up and the checks */
    double t_start;   /* vaegand spawned */
    int exit_code;    /* vaegand's after SIGTERM; -2 = not stopped by us */
    /* the phases */
    bs_series_t ser;
    bs_metrics_t m; /* the last scrape */
    bs_backlog_t backlog;
    double join_s, ingest_rate, ingest_lists, ingest_span, ingest_peak, ingest_cpu, t_all;
    bs_cpu_t cpu_ingest_end;
    double catchup_s, idle_steps_per_s;
    bs_lat_t L;
    pthread_t sub_th;
    int sub_started;
    bs_rate_t ph[BS_MAX_RATES];
    int n_done, stalled;
    size_t stale_total, checked;
    int ok; /* every phase went through */
} bs_run_t;

/* env.c */
int bs_env_mkdir(bs_run_t *R);
int bs_env_start(bs_run_t *R);
int bs_env_start_daemon(bs_run_t *R);
int bs_daemon_alive(bs_run_t *R, const char *during); /* 0 (reaped, log shown) when it exited */
void bs_env_stop(bs_run_t *R);
void bs_env_remove(const bs_run_t *R);

/* the phases */
int bs_phase_backlog(bs_run_t *R);
int bs_phase_ingest(bs_run_t *R);
int bs_phase_catchup(bs_run_t *R);
int bs_phase_idle(bs_run_t *R);
int bs_phase_latency(bs_run_t *R);
int bs_phase_check(bs_run_t *R);

/* report.c */
void bs_machine_read(bs_machine_t *m);
void bs_report_header(const bs_run_t *R);
void bs_report_summary(const bs_run_t *R);
/* s in milliseconds with one decimal, "-" for NAN, "missing" for +inf. */
const char *bs_ms(char *buf, size_t len, double s);

#endif
