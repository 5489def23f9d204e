/* test_monitoring.c — the monitoring files against a real vaegand (ctest
 * label integration): every vaegan_* metric that
 * monitoring/grafana-dashboard.json and monitoring/vaegan-alerts.yml name
 * is exported (a `# TYPE` line of a scrape of a daemon that has consumed,
 * trained, ranked, sampled and refused an event), and the consumer lag of
 * a backlog produced before the daemon starts goes to 0 once every event is
 * stored.  Real redis-server, vaegan-mockbroker with topics of 2
 * partitions, the built vaegand (tests/support/daemon.h), with a control
 * topic, so that it leads alone and exports the sharing metrics too.  The files' path
 * is the compile definition VG_MONITORING_DIR; that they are well formed
 * (promtool) is test_monitoring_files' job. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define PARTITIONS 2
#define BACKLOG 5000
#define MAX_NAMES 256

/* librdkafka's statistics (hence the lag gauges) every 200 ms, every
 * sampled click checked against the lists (the [metrics] section comes
 * last in the configuration: vgt_env_write_conf's extra lands in it) */
static const char METRICS_CONF[] = "kafka_stats_interval_ms = 200\nquality_sample = 1\n"
                                   "[kafka]\ncontrol_topic = ctl\n"; /* the sharing metrics too: it leads alone */

static vgt_env_t E;

#define SETTINGS                                          \
    "[serve]\ntop_n = 20\nbatch = 64\nrefresh_s = 3\n"     \
    "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"      \
    "[train]\ninterval_ms = 200\nsteps_per_round = 2\nmin_new_events = 200\n"

static void setup_with(const char *settings)
{
    vg_tmpdir_make();
    static const char *const topics[] = {"clicks", "ctl"};
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .topics = topics, .n_topics = 2,
                        .partitions = PARTITIONS, .metrics = 1, .settings = settings};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "servers did not start");
    cr_assert_eq(vgt_env_write_conf(&E, METRICS_CONF), 0);
}

static void setup(void) { setup_with(SETTINGS); }

/* A backlog is 1,000 messages of lag; while it lasts, a round at most every
 * hour: rounds stop until it has drained. */
static void setup_backlog(void) { setup_with(SETTINGS "backlog_lag = 1000\nbacklog_interval_ms = 3600000\n"); }

static void teardown(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* ---- the names the files mention ------------------------------------------------- */

typedef struct names {
    int n;
    char *name[MAX_NAMES];
} names_t;

static int is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

/* Adds every distinct vaegan_[a-z0-9_]+ of the file at path to ns. */
static void names_of_file(names_t *ns, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    cr_assert_lt(len, sizeof text - 1, "%s is larger than this test reads", path);
    text[len] = '\0';
    for (const char *p = text; (p = strstr(p, "vaegan_")) != NULL; p++) {
        if (p > text && is_name_char(p[-1]))
            continue;
        size_t n = strlen("vaegan_");
        while (is_name_char(p[n]))
            n++;
        if (n == strlen("vaegan_"))
            continue;
        int seen = 0;
        for (int k = 0; k < ns->n && !seen; k++)
            seen = strlen(ns->name[k]) == n && strncmp(ns->name[k], p, n) == 0;
        if (!seen) {
            cr_assert_lt(ns->n, MAX_NAMES);
            ns->name[ns->n++] = strndup(p, n);
        }
    }
}

static void names_free(names_t *ns)
{
    for (int k = 0; k < ns->n; k++)
        free(ns->name[k]);
}

/* 1 when text has the line "# TYPE <name> <type>" (type NULL: any). */
static int has_type(const char *text, const char *name, size_t len, const char *type)
{
    char want[256];
    snprintf(want, sizeof want, "\n# TYPE %.*s %s", (int)len, name, type ? type : "");
    return strstr(text, want) != NULL;
}

/* 1 when the scrape exports name: as a metric of its own, or as a
 * histogram's _bucket, _sum or _count series. */
static int exported(const char *text, const char *name)
{
    if (has_type(text, name, strlen(name), NULL))
        return 1;
    static const char *const suffix[] = {"_bucket", "_sum", "_count"};
    size_t n = strlen(name);
    for (size_t k = 0; k < sizeof suffix / sizeof *suffix; k++) {
        size_t s = strlen(suffix[k]);
        if (n > s && strcmp(name + n - s, suffix[k]) == 0 && has_type(text, name, n - s, "histogram"))
            return 1;
    }
    return 0;
}

/* ---- reading a scrape ------------------------------------------------------------ */

/* Over the samples of name in text (with labels or without): how many, and
 * their sum. */
static int samples(const char *text, const char *name, double *sum)
{
    size_t n = strlen(name);
    int count = 0;
    *sum = 0;
    for (const char *line = text; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        if (strncmp(line, name, n) != 0 || (line[n] != '{' && line[n] != ' '))
            continue;
        const char *v = line[n] == '{' ? strstr(line, "} ") : line + n;
        if (!v)
            continue;
        *sum += atof(v + (line[n] == '{' ? 2 : 1));
        count++;
    }
    return count;
}

/* Polls /metrics (every 200 ms) until name has at least want samples or
 * timeout_s passed; returns the last count. */
static int wait_series(const char *name, int want, double timeout_s)
{
    double end = vg_mono_s() + timeout_s, sum;
    int n = 0;
    for (;;) {
        char *text = vgt_metrics_text(E.metrics_port);
        n = text ? samples(text, name, &sum) : 0;
        free(text);
        if (n >= want || vg_mono_s() >= end)
            return n;
        vgt_sleep_ms(200);
    }
}

static double wait_metric(const char *name, double at_least, double timeout_s)
{
    return vgt_wait_metric(E.metrics_port, name, at_least, timeout_s);
}

/* Starts vaegand and waits until /metrics answers; fails with its log when
 * it exits first (e.g. refusing the configuration). */
static void spawn(void)
{
    E.daemon = vgt_env_spawn(&E, NULL);
    double end = vg_mono_s() + 60;
    int code = -1;
    while (vgt_metric(E.metrics_port, "vaegan_events_total") == -1 && vg_mono_s() < end &&
           (code = vgt_wait_exit(E.daemon, 0)) == -1)
        vgt_sleep_ms(50);
    if (code != -1) {
        E.daemon = 0;
        vgt_show_log(&E, "vaegand exited");
        cr_assert_fail("vaegand exited with %d before answering on /metrics (its log is above)", code);
    }
    cr_assert_neq(vgt_metric(E.metrics_port, "vaegan_events_total"), -1, "no answer on /metrics in 60 s");
}

/* ---- the tests ------------------------------------------------------------------- */

/* Everything the dashboard and the alerts show is there once the daemon has
 * done each thing once: consumed both partitions, trained, written lists,
 * sampled clicks of users who have one, had Redis refuse an event. */
Test(monitoring, every_metric_named_is_exported, .init = setup, .fini = teardown, .timeout = 400)
{
    names_t ns = {0};
    names_of_file(&ns, VG_MONITORING_DIR "/grafana-dashboard.json");
    names_of_file(&ns, VG_MONITORING_DIR "/vaegan-alerts.yml");
    cr_assert_geq(ns.n, 20, "only %d vaegan_* names found in " VG_MONITORING_DIR, ns.n);

    /* another app's string at hist:w0: Redis answers WRONGTYPE, so that
     * vaegan_events_failed_total{reason} has a series */
    redisContext *c = vgt_redis_connect(&E.redis);
    cr_assert_not_null(c);
    freeReplyObject(redisCommand(c, "SET hist:w0 x"));
    redisFree(c);

    spawn();
    vgt_stream_t s, again;
    vgt_expect_t x;
    vgt_stream_make(&s, "u", 100, 200, 2000, 11);
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "the histories are in Redis");
    const char *key = "w0", *val = "{\"user\":\"w0\",\"item\":\"i1\",\"ts\":1800000000}";
    cr_assert_eq(vgt_produce(E.addr, "clicks", &key, &val, NULL, 1), 0);
    cr_assert_geq(wait_metric("vaegan_events_failed_total{reason=\"wrongtype\"}", 1, 60), 1,
                  "Redis refused the event of w0");
    cr_assert_geq(wait_metric("vaegan_model_step", 1, 120), 1, "the model trained");
    cr_assert_geq(wait_metric("vaegan_scorer_users_total", 1, 120), 1, "users were ranked by the model");
    /* the same users again: they have lists now, so their clicks are sampled */
    vgt_stream_make(&again, "u", 100, 200, 1000, 12);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &again, 0, again.n), 0);
    double want = (double)(s.n + again.n);
    cr_assert_geq(wait_metric("vaegan_events_stored_total", want, 120), want);
    wait_metric("vaegan_quality_samples_total", 1, 60); /* a guard: the names are what is checked */
    /* the lag of each partition appears with the statistics after the assignment */
    int parts = wait_series("vaegan_kafka_partition_lag_messages", PARTITIONS, 60);

    char *text = vgt_metrics_text(E.metrics_port);
    cr_assert_not_null(text, "no answer on /metrics");
    char missing[4096] = "";
    int n_missing = 0;
    for (int k = 0; k < ns.n; k++) {
        if (exported(text, ns.name[k]))
            continue;
        n_missing++;
        size_t used = strlen(missing);
        snprintf(missing + used, sizeof missing - used, "%s%s", used ? ", " : "", ns.name[k]);
    }
    if (n_missing) {
        fprintf(stderr, "---- the scrape ----\n%s\n----\n", text);
        vgt_show_log(&E, "metrics missing");
    }
    cr_expect_eq(n_missing, 0, "%d of the %d vaegan_* names of the dashboard and the alerts are not exported: %s",
                 n_missing, ns.n, missing);
    cr_expect_eq(parts, PARTITIONS, "vaegan_kafka_partition_lag_messages: %d series, one per partition wanted",
                 parts);
    free(text);

    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    names_free(&ns);
    vgt_stream_free(&again);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* 5,000 events wait on the topic before vaegand starts: once it has stored
 * them all, the lag reads 0, in total and in each partition's series. */
Test(monitoring, a_backlog_drains_to_zero_lag, .init = setup, .fini = teardown, .timeout = 400)
{
    vgt_stream_t s;
    vgt_expect_t x;
    vgt_stream_make(&s, "b", 500, 300, BACKLOG, 7);
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    spawn();

    double stored = wait_metric("vaegan_events_stored_total", BACKLOG, 180);
    cr_assert_eq(stored, BACKLOG, "vaegan_events_stored_total %g, %d produced", stored, BACKLOG);
    /* the statistics come every 200 ms: wait for a reading taken after the
     * last store, every partition's series at 0 and their sum */
    double end = vg_mono_s() + 60, total = -1, sum = -1;
    int parts = 0;
    for (;;) {
        char *text = vgt_metrics_text(E.metrics_port);
        if (text) {
            parts = samples(text, "vaegan_kafka_partition_lag_messages", &sum);
            double t;
            total = samples(text, "vaegan_kafka_lag_messages", &t) == 1 ? t : -1;
            free(text);
        }
        if ((total == 0 && parts == PARTITIONS && sum == 0) || vg_mono_s() >= end)
            break;
        vgt_sleep_ms(200);
    }
    if (total != 0 || parts != PARTITIONS || sum != 0)
        vgt_show_log(&E, "the lag did not reach 0");
    cr_assert_eq(total, 0, "vaegan_kafka_lag_messages %g after the backlog was stored (-1: no such sample)", total);
    cr_assert_eq(parts, PARTITIONS, "vaegan_kafka_partition_lag_messages: %d series", parts);
    cr_assert_eq(sum, 0, "the partitions' lag adds up to %g", sum);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 60), 0, "every event of the backlog is in Redis");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* Polls /metrics until name reads at most at_most or timeout_s passed;
 * returns the last value (-1: no such sample). */
static double wait_metric_down(const char *name, double at_most, double timeout_s)
{
    double end = vg_mono_s() + timeout_s, v;
    while ((v = vgt_metric(E.metrics_port, name)) > at_most && vg_mono_s() < end)
        vgt_sleep_ms(200);
    return v;
}

static void redis_do(const char *cmd)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, cmd);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "%s: %s", cmd, r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    redisFree(c);
}

/* Redis stops taking writes (CLIENT PAUSE … WRITE), so 3,000 events wait:
 * the trainer steps back (vaegan_train_backlog 1, no new round while the
 * lag is read again and again), and once Redis takes them and the lag falls
 * it goes back to its rounds every 200 ms. */
Test(monitoring, the_trainer_steps_back_while_a_backlog_drains, .init = setup_backlog, .fini = teardown,
     .timeout = 400)
{
    spawn();
    vgt_stream_t s, more;
    vgt_stream_make(&s, "t", 100, 200, 300, 5);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    cr_assert_geq(wait_metric("vaegan_train_rounds_total", 2, 120), 2, "the trainer runs its rounds");
    cr_assert_eq(vgt_metric(E.metrics_port, "vaegan_train_backlog"), 0, "no backlog yet");

    redis_do("CLIENT PAUSE 600000 WRITE");
    vgt_stream_make(&more, "t", 100, 200, 3000, 6);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &more, 0, more.n), 0);
    double on = wait_metric("vaegan_train_backlog", 1, 120);
    if (on < 1)
        vgt_show_log(&E, "no backlog seen");
    cr_assert_eq(on, 1, "vaegan_train_backlog %g with 3,000 events waiting", on);
    cr_assert(vgt_log_has(&E, "trainer: stepping back while a backlog of"));
    /* a round under way when the backlog began may still end; none starts */
    double rounds = vgt_metric(E.metrics_port, "vaegan_train_rounds_total");
    cr_assert_geq(wait_metric("vaegan_kafka_lag_messages", (double)more.n, 60), (double)more.n,
                  "every waiting event counts in the lag");
    double during = vgt_metric(E.metrics_port, "vaegan_train_rounds_total");
    cr_assert_leq(during, rounds + 1, "%g rounds during the backlog (%g before it)", during - rounds, rounds);

    redis_do("CLIENT UNPAUSE");
    double want = (double)(s.n + more.n);
    cr_assert_geq(wait_metric("vaegan_events_stored_total", want, 120), want);
    double off = wait_metric_down("vaegan_train_backlog", 0, 60);
    cr_assert_eq(off, 0, "vaegan_train_backlog %g after the backlog was stored", off);
    cr_assert(vgt_log_has(&E, "trainer: backlog drained in"));
    double after = vgt_metric(E.metrics_port, "vaegan_train_rounds_total");
    cr_assert_geq(wait_metric("vaegan_train_rounds_total", after + 3, 120), after + 3,
                  "the rounds every 200 ms came back");
    vgt_stream_free(&more);
    vgt_stream_free(&s);
}
