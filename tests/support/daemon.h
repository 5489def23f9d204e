/*
 * daemon.h — a vaegand under test (library vgtestsupport): a private
 * redis-server, a Kafka-protocol broker, the configuration file, the built
 * vaegand as a child process, and what a test reads back — the histories in
 * Redis compared with the events it produced, the daemon's log, its
 * /metrics, sd_notify messages, the group's committed offsets.
 *
 *   vgt_env_t e;
 *   vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 16};
 *   if (vgt_env_start(&e, vg_tmpdir, &o) != 0) ...;     // servers up, e.conf written
 *   e.daemon = vgt_env_spawn(&e, NULL);                  // vaegand -c e.conf
 *   vgt_stream_t s;  vgt_expect_t x;
 *   vgt_stream_make(&s, "u", 500, 300, 10000, 1);        // 10,000 clicks of 500 users
 *   vgt_expect_make(&s, &x);
 *   vgt_stream_produce(&e, "clicks", &s, 0, s.n);
 *   assert(vgt_wait_hist(&e, &s, &x, 120) == 0);         // every (user, item) in hist:<user>
 *   vgt_env_stop(&e);                                    // kills what is left, stops the servers
 *
 * The broker is either the vaegan-mockbroker process (opts.mockbroker set:
 * kafka.h vgt_broker_start) or, with opts.mockbroker NULL, librdkafka's mock
 * cluster inside the test's own process (stream/mock.h vg_mock_start), whose
 * fault controls (vg_mock_set_down, vg_mock_push_errors on e.mock) the test
 * then drives while vaegand, a child process, consumes from it.
 *
 * The configuration (vgt_env_write_conf) is the fixed part every test needs
 * — brokers, topic(s), group, the consumer options the mock wants (kafka.h),
 * redis.socket (or e->redis_conf), state.dir, metrics.listen — plus e.settings (the test file's
 * own [serve]/[model]/[train]/[log] lines) and an extra text; [metrics]
 * comes last, so an extra text without a section header lands in it.
 *
 * Nothing here uses Criterion: functions return 0 / a count / -1 and the
 * test asserts.  Everything blocks; test code only.
 */
#ifndef VG_TESTS_SUPPORT_DAEMON_H
#define VG_TESTS_SUPPORT_DAEMON_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "stream/mock.h"
#include "tests/support/kafka.h"
#include "tests/support/redis.h"

typedef struct vgt_env_opts {
    const char *vaegand;       /* the daemon's binary (VG_VAEGAND_BIN) */
    const char *mockbroker;    /* vaegan-mockbroker's binary; NULL = the broker in this process */
    const char *const *topics; /* topics created on the broker; NULL = {"clicks"} */
    size_t n_topics;
    int partitions;            /* per topic, >= 1 */
    int aof;                   /* redis-server with its AOF fsynced per write (redis.h) */
    int metrics;               /* 1: metrics.listen = 127.0.0.1:<a free port>, else empty (off) */
    const char *group;         /* kafka.group; NULL = "it" (copied to e->group) */
    const char *settings;      /* the test file's configuration lines (e->settings), or NULL */
} vgt_env_opts_t;

typedef struct vgt_env {
    vgt_redis_t redis;
    vgt_broker_t broker; /* the vaegan-mockbroker process (pid 0 when in-process) */
    vg_mock_t *mock;     /* the in-process broker, or NULL */
    char addr[128];      /* the broker's bootstrap "host:port", whichever it is */
    char dir[256];                       /* the test's directory */
    char conf[320], log[320], state[320]; /* <dir>/vaegand.conf, <dir>/vaegand.log, <dir>/state */
    const char *vaegand;
    const char *topics;   /* the [kafka] line(s) naming the topics; NULL = "topic = clicks" */
    const char *group;    /* kafka.group; NULL = "it" */
    const char *settings; /* the test file's own configuration lines, or NULL */
    const char *redis_conf; /* the [redis] section's lines; NULL = "socket = " e->redis' socket */
    int partitions;
    int metrics_port; /* 0 when metrics are off */
    pid_t daemon;     /* the running vaegand, 0 when none (vgt_env_stop kills it) */
} vgt_env_t;

/* Zeroes e, starts redis-server on <dir>/redis (created) and the broker,
 * sets e's paths below dir (which must exist: vaegand.conf, vaegand.log,
 * state/) and writes e->conf (vgt_env_write_conf, no extra).  o's strings
 * must outlive e.  Returns 0, or -1 with nothing left running (the reason on
 * stderr). */
int vgt_env_start(vgt_env_t *e, const char *dir, const vgt_env_opts_t *o);

/* Kills (SIGKILL) and reaps e->daemon when set, stops the broker and Redis.
 * Safe after a failed or partial start. */
void vgt_env_stop(vgt_env_t *e);

/* vgt_env_stop, then 1 when the environment variable KEEP_TMP is set (the
 * test keeps its directory: "kept <dir>" is printed on stderr), else 0 (the
 * caller removes it):  `if (!vgt_env_finish(&e)) vg_tmpdir_remove();` */
int vgt_env_finish(vgt_env_t *e);

/* Writes e->conf as described at the top, with extra (may be NULL) last.
 * Returns 0 or -1. */
int vgt_env_write_conf(const vgt_env_t *e, const char *extra);

/* Starts `vaegand -c e->conf [args...]` (NULL-terminated, at most 12) with
 * its output appended to e->log; returns the pid (> 0), which the caller
 * reaps (vgt_wait_exit) or stores in e->daemon.  Aborts when fork fails: no
 * test can go on then. */
pid_t vgt_env_spawn(const vgt_env_t *e, const char *arg, ...);

/* The sum over partitions 0..e->partitions-1 of e->group's committed offset
 * of topic (kafka.h vgt_committed; a partition without one counts 0). */
int64_t vgt_env_committed(const vgt_env_t *e, const char *topic);

/* ---- the daemon's log ------------------------------------------------------------ */

/* The lines of e->log holding a and, unless b is NULL, b. */
int vgt_log_lines(const vgt_env_t *e, const char *a, const char *b);

/* vgt_log_lines(e, text, NULL) > 0. */
int vgt_log_has(const vgt_env_t *e, const char *text);

/* Polls (every 50 ms) until vgt_log_lines(e, a, b) >= at_least or timeout_s
 * passed; returns the last count. */
int vgt_wait_log(const vgt_env_t *e, const char *a, const char *b, int at_least, double timeout_s);

/* The number (strtod) right after the last occurrence of text in e->log,
 * e.g. text "checkpoint: step " -> the step of the last checkpoint logged;
 * -1 when text is not there. */
double vgt_log_number_after(const vgt_env_t *e, const char *text);

/* Prints the last 64 KiB of e->log on stderr under a header naming why (for
 * a failing assertion: ctest shows it). */
void vgt_show_log(const vgt_env_t *e, const char *why);

/* ---- Redis -------------------------------------------------------------------------- */

/* ZCARD key on e's Redis, -1 on an error. */
long long vgt_zcard(const vgt_env_t *e, const char *key);

/* Writes `users` one-item histories <prefix>0.. (item i<k % n_items>, ts
 * 1700000000) and their vaegan:users entries into e's Redis, pipelined in
 * rounds of 10,000 users.  Returns 0, or -1 when a reply is not the
 * integer ZADD answers. */
int vgt_preload_histories(const vgt_env_t *e, const char *prefix, int users, int n_items);

/* ---- /metrics and sd_notify ------------------------------------------------------ */

/* A loopback TCP port nobody listens on now (the kernel's pick for port 0),
 * or -1. */
int vgt_free_port(void);

/* The whole answer to GET /metrics on 127.0.0.1:port (HTTP/1.0: the status
 * line and headers, then the exposition text), NUL-terminated, malloc'd
 * (the caller frees it); NULL when the endpoint does not answer (yet). */
char *vgt_metrics_text(int port);

/* The value of the sample `name` (with its labels, if any, as exported:
 * `vaegan_events_failed_total{reason="oom"}`) from GET /metrics on
 * 127.0.0.1:port; -1 when the endpoint does not answer (yet), -2 when it
 * answers without that sample. */
double vgt_metric(int port, const char *name);

/* Polls vgt_metric (every 100 ms) until the sample reads at least
 * at_least (NaN or absent: not yet) or timeout_s passed; returns the last
 * value. */
double vgt_wait_metric(int port, const char *name, double at_least, double timeout_s);

/* Binds a unix datagram socket at <e->dir>/notify.sock for sd_notify
 * messages and starts `vaegand -c e->conf` with NOTIFY_SOCKET naming it (in
 * the child's environment only); the pid goes to e->daemon.  Returns the
 * socket's fd (the caller closes it), or -1 with nothing started. */
int vgt_env_spawn_notify(vgt_env_t *e);

/* Reads datagrams from fd until one holds text (1) or timeout_s passed (0). */
int vgt_notify_wait(int fd, const char *text, double timeout_s);

/* ---- event streams and the histories they should leave ----------------------- */

/* n JSON click events of users <prefix>0..<prefix>{users-1} over items
 * i0..i{items-1}: user k clicks mostly items of its own group (k % 10), ts
 * 1700000000 + index; key = user.  Deterministic for a seed (srand). */
typedef struct vgt_stream {
    size_t n;
    char **key, **val;
    size_t *len;
} vgt_stream_t;

void vgt_stream_make(vgt_stream_t *s, const char *prefix, int users, int items, size_t n, unsigned seed);
void vgt_stream_free(vgt_stream_t *s);

/* Produces events [from, to) of s to topic on e's broker (kafka.h
 * vgt_produce); returns the failed deliveries (0 = all delivered). */
int vgt_stream_produce(const vgt_env_t *e, const char *topic, const vgt_stream_t *s, size_t from, size_t to);

/* The histories a stream should leave: its distinct users and the number of
 * distinct (user, item) pairs. */
typedef struct vgt_expect {
    char **users;
    int n_users;
    size_t entries;
} vgt_expect_t;

void vgt_expect_make(const vgt_stream_t *s, vgt_expect_t *x);
void vgt_expect_free(vgt_expect_t *x);

/* How far Redis' hist:<user> of x's users are from s: the difference in the
 * number of entries, or when that matches, the events of s whose item is not
 * in its user's history; 0 = exactly the stream's (user, item) pairs. */
int vgt_hist_wrong(redisContext *c, const vgt_stream_t *s, const vgt_expect_t *x);

/* Polls vgt_hist_wrong (every 200 ms, reconnecting when Redis restarted)
 * until 0 or timeout_s passed; shows the log on a failure; returns the last
 * value. */
int vgt_wait_hist(const vgt_env_t *e, const vgt_stream_t *s, const vgt_expect_t *x, double timeout_s);

#endif
