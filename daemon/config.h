/*
 * config.h — vaegand's configuration: the INI file (docs/architecture.md)
 * (config/vaegand.conf documents every key with its default).
 *
 * Use:
 *     vg_config_t c;
 *     char err[512];
 *     int rc = vg_config_load(&c, "/etc/vaegand/vaegand.conf", err, sizeof err);
 *     if (rc < 0) { fprintf(stderr, "%s\n", err); vg_config_free(&c); exit(1); }
 *     vg_config_dump(&c, stdout);            // --check-config, start-up log
 *     ...
 *     vg_config_free(&c);
 *
 * The file is parsed by inih (Debian's libinih 55: `;` and `#` start a comment
 * line; after a value only a `;` preceded by whitespace starts a comment; an
 * indented line would continue the previous value and is refused; lines are
 * at most 199 characters).  Each key is `section.key`; unknown sections and
 * keys, keys set twice, empty numbers, trailing garbage ("12abc") and values
 * out of range are errors that name FILE:LINE and the key — never the value
 * or the line's text, which may be a password.  Only the first problem is
 * reported.
 *
 * Secrets may live in files of their own: redis.password_file and
 * kafka.sasl_password_file name one (a relative name is looked up in
 * $CREDENTIALS_DIRECTORY, which systemd's LoadCredential= sets; an absolute
 * one is read as is); its content less one trailing newline becomes
 * redis.password, or the librdkafka property sasl.password (appended to
 * kafka.options).  A missing, unreadable or empty file, or a secret set both
 * inline and by file, is an error.  A secret written in the file itself is
 * accepted with a warning (c->warnings, printed by --check-config).
 *
 * The model.* keys whose default depends on model.variant (beta, lambda,
 * noise_*) take the default of the variant the file chooses unless the file
 * sets them itself: `model.variant = avb` alone gives beta = lambda = 0.
 *
 * Not thread-safe; a loaded configuration is read-only afterwards and may be
 * read from any thread.
 */
#ifndef VG_DAEMON_CONFIG_H
#define VG_DAEMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "common/log.h"
#include "model/ranker.h"
#include "model/vaegan.h"

#define VG_SCORER_THREADS_MAX 64
#define VG_SCORER_THREADS_AUTO_MAX 4

/* The longest list serve.top_n allows (list writes size their arrays by it). */
#define VG_TOP_N_MAX 10000

/* A comma-separated list of names, as read (entries trimmed, never empty). */
typedef struct vg_strlist {
    char **v;
    size_t n;
} vg_strlist_t;

/* 1 when name[0..len) is one of l's entries. */
int vg_strlist_has(const vg_strlist_t *l, const char *name, size_t len);

typedef struct vg_config {
    struct {
        char *brokers;   /* kafka.brokers: bootstrap list or "embedded"; never empty */
        char *topic;     /* kafka.topic: the one-topic spelling; never empty */
        /* kafka.topics: names and ^regex patterns; after loading never empty
         * (when the file sets only kafka.topic it holds that one name) */
        vg_strlist_t topics;
        char *group;     /* kafka.group; never empty */
        char *dlq_topic; /* kafka.dlq_topic; "" = no dead-letter topic; never one of topics */
        char *control_topic; /* kafka.control_topic: the leader election's (daemon/share.h); "" = one instance */
        char *sasl_password_file; /* kafka.sasl_password_file: "" = none; its content is in options as sasl.password */
        char **options;  /* options[2k] name, [2k+1] value, from kafka.option.<name> keys, in file order
                            (then sasl.password from sasl_password_file) */
        size_t n_options;
        int commit_interval_ms; /* kafka.commit_interval_ms, default 1000 */
        int max_pending;        /* kafka.max_pending: events read but not yet in Redis before consumption pauses, default 100000 */
    } kafka;
    struct {
        char *host;     /* redis.host (may be "" only when socket is set) */
        int port;       /* redis.port, 1..65535 */
        char *socket;   /* redis.socket: a unix socket path; "" = use host/port; wins over host/port */
        char *password; /* redis.password, or the content of password_file; "" = no AUTH */
        char *password_file; /* redis.password_file: "" = none (see the top of this file) */
        int db;         /* redis.db, >= 0 */
        char *prefix;   /* redis.prefix of every key, may be "" */
        int rec_zadd;   /* redis.rec_write: 0 "auto" (RESTORE when Redis >= 7 allows), 1 "zadd" */
        int cluster;    /* redis.cluster: 1 "yes" (host:port is a node of a Redis Cluster), 0 "no" */
    } redis;
    struct {
        int max_items; /* history.max_items, 1..1000000 */
        int max_users; /* history.max_users: users kept in memory (the rest stay in Redis); 0 = all */
    } history;
    struct {
        vg_strlist_t types;         /* events.types: the interaction types, default "click" (never empty) */
        vg_strlist_t removal_types; /* events.removal_types: types that take the item out of the
                                       history, default none; no entry is also in types */
        int forget_retention_s;     /* events.forget_retention_s: how long an erasure mark
                                       refuses the user's older events, default 30 days */
    } events;
    struct {
        int top_n;     /* serve.top_n, 1..VG_TOP_N_MAX */
        int rec_ttl_s; /* serve.rec_ttl_s, 0 = no TTL */
        int refresh_s; /* serve.refresh_s: max model age of a list, >= 1 */
        int batch;     /* serve.batch: users per scoring GEMM, default 256, <= VG_RANK_MAX_BATCH */
        vg_kernel_t kernel; /* serve.kernel: the scorer's kernel (model/ranker.h), default auto */
        int threads;   /* serve.threads: scorer threads, 0 = one per CPU up to 4 (vg_config_scorer_threads) */
    } serve;
    struct {
        char *dir;                 /* state.dir; never empty */
        int checkpoint_interval_s; /* >= 1 */
    } state;
    struct {
        int interval_ms;        /* train.interval_ms, default 1000 */
        int min_new_events;     /* train.min_new_events, default 1000 (0 allowed) */
        int steps_per_round;    /* train.steps_per_round, default 10; 0 turns the trainer off */
        double recent_fraction; /* train.recent_fraction in [0,1], default 0.5 */
        int threads;            /* train.threads: OpenBLAS threads (trainer and scorer share them), default 1 */
        int backlog_lag;        /* train.backlog_lag, default 20000 (0: never step back) */
        int backlog_interval_ms; /* train.backlog_interval_ms, default 5000 */
        int publish_interval_s; /* train.publish_interval_s: the leader's snapshots to the others, default 10 */
    } train;
    struct {
        vg_model_cfg_t cfg; /* model.*; cfg.noise_input < 0 means "auto" (1/sqrt(N)) */
        int batch;          /* model.batch, default 500 */
        int max_items;      /* model.max_items: the catalogue's cap (later items wait); 0 = none */
        int min_item_users; /* model.min_item_users: distinct users before an item enters, 1..16 */
        int max_pending_items; /* model.max_pending_items: items waiting to enter, at most */
    } model;
    struct {
        int level;  /* log.level: VG_LOG_* of common/log.h, default VG_LOG_INFO */
        char *file; /* log.file, "" = stderr */
        double progress_interval_s; /* log.progress_interval_s: progress lines and STATUS= of long work
                                       (daemon/progress.h), default 5 */
    } log;
    struct {
        char *listen; /* metrics.listen: "" = off, otherwise HOST:PORT (common/addr.h) */
        int kafka_stats_interval_ms; /* consumer lag measured this often (librdkafka statistics); 0 = not */
        double quality_sample;       /* fraction of users whose events measure the live hit rate */
        int quality_window;          /* sampled events the hit-rate gauges cover */
    } metrics;
    char *path; /* the file it came from (NULL for a configuration made by vg_config_default) */
    /* Advice about settings that work but should change — a secret written in
     * the file — as lines "FILE:LINE: key: text\n"; "" = none (never NULL
     * after vg_config_default or vg_config_load).  For --check-config. */
    char *warnings;
} vg_config_t;

/* Fills c with every default (config/vaegand.conf lists them; docs/model.md
 * explains the model.* ones; model.variant avb+d+c).  c need not be
 * initialised; its strings are owned by c (free them with vg_config_free).  Aborts if the few small allocations fail. */
void vg_config_default(vg_config_t *c);

/* Fills c with the defaults (vg_config_default — do NOT call it yourself
 * first, that would leak) and loads the file at path over them.
 * Returns 0; VG_EIO when the file cannot be read (err: "cannot read FILE:
 * <errno text>"); VG_ENOMEM; or VG_ECONFIG with
 * err = "FILE:LINE: section.key: reason" (the value is never shown), e.g.
 *   `vaegand.conf:14: serve.top_n: not an integer`,
 *   `vaegand.conf:15: serve.topn: unknown key (did you mean serve.top_n?)`,
 *   `vaegand.conf:3: redis.port: must be between 1 and 65535`,
 *   `vaegand.conf:9: syntax error in [redis]: expected "[section]", ...`,
 *   `vaegand.conf:6: redis.password_file: cannot read /run/credentials/vaegand.service/redis: No such file or directory`,
 * or, for a check across keys where no single line is to blame,
 *   `vaegand.conf: redis.host: must not be empty when redis.socket is empty`.
 * Only the first problem is reported.  Whatever the result, c is valid
 * afterwards and must be released with vg_config_free. */
int vg_config_load(vg_config_t *c, const char *path, char *err, size_t errlen);

/* Frees every string of c and zeroes it; safe to call twice. */
void vg_config_free(vg_config_t *c);

/* Writes every effective setting as "section.key = value" lines, in the
 * order of config/vaegand.conf, kafka.option.* in file order.  Passwords are
 * shown as "***" (redis.password when set, and kafka.option.* whose name
 * contains "password", "secret" or ".pem"); a secret read from a *_file key
 * is shown as that key alone (redis.password empty, no sasl.password line),
 * so the dump, made an INI file again, loads to the same dump.  model.noise_input < 0 is shown
 * as "auto".  For --check-config and the start-up log. */
void vg_config_dump(const vg_config_t *c, FILE *f);

/* The keys the loader knows, as "section.key", for i = 0, 1, ...; NULL past
 * the end.  The pass-through family is listed once as "kafka.option.*".
 * (Used by the test that config/vaegand.conf documents every key.) */
const char *vg_config_key(size_t i);

/* serve.threads, or for 0 one scorer thread per online CPU, at most
 * VG_SCORER_THREADS_AUTO_MAX. */
int vg_config_scorer_threads(const vg_config_t *c);

#endif
