/*
 * test_kafka.c — the consumer (stream/kafka.c) and the mock broker
 * (stream/mock.c, vaegan-mockbroker) against a real Kafka-protocol broker.
 *
 * Each test drives vg_kafka on its own uv loop and checks what a broker
 * says from the outside: committed offsets read with a fresh consumer
 * (vgt_committed), redelivery to a second consumer of the same group, the
 * dead-letter topic read back with a plain librdkafka consumer.  Both the
 * vaegan-mockbroker binary (tests/support/kafka.h) and the in-process
 * vg_mock_start() are used.  VGT_LOG=1 in the environment prints every log
 * line, VGT_DEBUG=1 adds librdkafka's consumer-group debugging (debug=cgrp)
 * to them.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/addr.h"
#include "stream/kafka.h"
#include "stream/mock.h"
#include "tests/support/kafka.h"
#include "tests/support/proc.h"

#define MAXP 8

typedef struct rec {
    int32_t tid; /* topic id */
    char topic[16];
    int32_t p;
    int64_t off;
    char key[32];
    char val[32];
} rec_t;

typedef struct tctx {
    uv_loop_t loop;
    uv_timer_t check;
    vg_kafka_t *k;
    const char *name;
    const char *topic; /* cfg_for's one topic (cfg.topics points here) */
    rec_t recs[512];
    size_t n;
    int assigned, assigned_calls;
    int done_inline;     /* vg_kafka_done inside on_message */
    size_t pause_at;     /* pause inside on_message when n reaches it (0 = never) */
    size_t retry_at;     /* vg_kafka_retry the message when n reaches it (0 = never), once */
    int dlq_rc, dlq_calls;
    int fatal;
} tctx_t;

static void tlog(void *ud, int level, const char *msg)
{
    tctx_t *t = ud;
    if (level >= VG_LOG_WARN || getenv("VGT_LOG"))
        fprintf(stderr, "[%s %d] %s\n", t ? t->name : "?", level, msg);
}

static void on_message(void *ud, const vg_kafka_msg_t *m)
{
    tctx_t *t = ud;
    cr_assert_lt(t->n, sizeof t->recs / sizeof t->recs[0]);
    rec_t *r = &t->recs[t->n++];
    cr_assert_not_null(m->topic);
    cr_assert_geq(m->topic_id, 0);
    const char *name = vg_kafka_topic_name(t->k, m->topic_id);
    cr_assert(name && !strcmp(name, m->topic), "topic id %d names %s, the message's topic is %s",
              (int)m->topic_id, name ? name : "NULL", m->topic);
    r->tid = m->topic_id;
    snprintf(r->topic, sizeof r->topic, "%s", m->topic);
    r->p = m->partition;
    r->off = m->offset;
    snprintf(r->key, sizeof r->key, "%.*s", (int)m->key_len, m->key ? m->key : "");
    snprintf(r->val, sizeof r->val, "%.*s", (int)m->value_len, m->value ? m->value : "");
    int dead = 0;
    if (!strcmp(r->val, "bad")) {
        t->dlq_calls++;
        t->dlq_rc = vg_kafka_dlq(t->k, m, "not JSON");
        dead = t->dlq_rc == 0; /* the consumer marks it done on the broker's acknowledgement */
    }
    if (t->done_inline && !dead && !(t->retry_at && t->n == t->retry_at))
        vg_kafka_done(t->k, m->topic_id, m->partition, m->offset);
    if (t->pause_at && t->n == t->pause_at)
        vg_kafka_pause(t->k);
    if (t->retry_at && t->n == t->retry_at) {
        t->retry_at = 0;
        t->n--; /* given back: not received */
        vg_kafka_retry(t->k);
        return;
    }
}

static void on_assigned(void *ud, int n)
{
    tctx_t *t = ud;
    t->assigned = n;
    t->assigned_calls++;
}

static void on_fatal(void *ud, const char *reason)
{
    tctx_t *t = ud;
    t->fatal = 1;
    fprintf(stderr, "[%s] fatal: %s\n", t->name, reason);
}

/* The mock elects a group's generation session.timeout.ms - 1 s after a
 * rebalance starts, with whoever has rejoined by then; a member that learns
 * of the rebalance late (from a heartbeat, every 3 s by default) misses it,
 * and its next commit, sent with the old generation, makes librdkafka call
 * its partitions lost.  Heartbeats every 0.5 s keep every rejoin well inside
 * the window on a loaded machine. */
static const char *const mock_opts[] = {"session.timeout.ms", "6000", "heartbeat.interval.ms", "500",
                                        "fetch.wait.max.ms", "10", "debug", "cgrp"};

/* A configuration for the topics (copied by vg_kafka_init: they need to
 * live only until then). */
static vg_kafka_cfg_t cfg_topics(tctx_t *t, const char *addr, const char *const *topics,
                                 size_t n_topics, const char *group)
{
    vg_kafka_cfg_t c = {
        .brokers = addr,
        .topics = topics,
        .n_topics = n_topics,
        .group = group,
        .options = mock_opts,
        .n_options = getenv("VGT_DEBUG") ? 4 : 3,
        .commit_interval_ms = 100,
        .on_message = on_message,
        .on_assigned = on_assigned,
        .on_fatal = on_fatal,
        .log = tlog,
        .ud = t,
    };
    return c;
}

/* The same for one topic. */
static vg_kafka_cfg_t cfg_for(tctx_t *t, const char *addr, const char *topic, const char *group)
{
    t->topic = topic;
    return cfg_topics(t, addr, &t->topic, 1, group);
}

/* The id t->k gave the topic name, -1 if none. */
static int32_t tid_of(const tctx_t *t, const char *name)
{
    for (int32_t i = 0; vg_kafka_topic_name(t->k, i); i++)
        if (!strcmp(vg_kafka_topic_name(t->k, i), name))
            return i;
    return -1;
}

static void tctx_init(tctx_t *t, const char *name)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    cr_assert_eq(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->check);
    t->check.data = t;
}

typedef int (*pred_fn)(tctx_t *t, void *arg);
static pred_fn cur_pred;
static void *cur_arg;
static int pred_hit;

static void check_cb(uv_timer_t *h)
{
    tctx_t *t = h->data;
    if (cur_pred && cur_pred(t, cur_arg)) {
        pred_hit = 1;
        uv_stop(&t->loop);
    }
}

static void deadline_cb(uv_timer_t *h)
{
    uv_stop(h->loop);
}

/* Runs the loop until pred holds (checked every 5 ms) or ms passed.
 * pred NULL = just run for ms.  Returns whether pred held. */
static int run_until(tctx_t *t, pred_fn pred, void *arg, int ms)
{
    uv_timer_t deadline;
    uv_timer_init(&t->loop, &deadline);
    cur_pred = pred;
    cur_arg = arg;
    pred_hit = 0;
    uv_timer_start(&deadline, deadline_cb, (uint64_t)ms, 0);
    if (pred)
        uv_timer_start(&t->check, check_cb, 0, 5);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&t->check);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&t->loop, UV_RUN_NOWAIT);
    cur_pred = NULL;
    return pred_hit;
}

static int have_n(tctx_t *t, void *arg)
{
    return t->n >= *(size_t *)arg;
}

static int is_assigned(tctx_t *t, void *arg)
{
    (void)arg;
    return t->assigned > 0;
}

/* Closes t->k and runs the loop until every handle is closed. */
static void close_consumer(tctx_t *t)
{
    char err[256] = "";
    vg_kafka_stop(t->k);
    int rc = vg_kafka_close(t->k, err, sizeof err);
    cr_assert_eq(rc, 0, "close: %s", err);
    t->k = NULL;
}

static void tctx_fini(tctx_t *t)
{
    uv_close((uv_handle_t *)&t->check, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT); /* ends once the consumer's handles are closed */
    cr_assert_eq(uv_loop_close(&t->loop), 0, "handles left on the loop");
}

static void produce_n(const char *addr, const char *topic, size_t from, size_t n)
{
    char kb[64][16], vb[64][16];
    const char *keys[64], *vals[64];
    for (size_t done = 0; done < n;) {
        size_t m = n - done < 64 ? n - done : 64;
        for (size_t i = 0; i < m; i++) {
            snprintf(kb[i], sizeof kb[i], "u%zu", from + done + i);
            snprintf(vb[i], sizeof vb[i], "v%zu", from + done + i);
            keys[i] = kb[i];
            vals[i] = vb[i];
        }
        cr_assert_eq(vgt_produce(addr, topic, keys, vals, NULL, m), 0, "produce failed");
        done += m;
    }
}

/* Per partition of `topic`: the offsets received, in order; asserts they
 * are strictly increasing and contiguous from `first[p]`; returns the
 * counts.  Records of other topics are skipped. */
static void by_partition_of(const tctx_t *t, const char *topic, const int64_t *first, size_t *count)
{
    int64_t next[MAXP];
    for (int p = 0; p < MAXP; p++) {
        next[p] = first ? first[p] : 0;
        count[p] = 0;
    }
    for (size_t i = 0; i < t->n; i++) {
        const rec_t *r = &t->recs[i];
        if (strcmp(r->topic, topic))
            continue;
        cr_assert(r->p >= 0 && r->p < MAXP);
        cr_assert_eq(r->off, next[r->p], "%s: %s[%d]: got offset %" PRId64 ", expected %" PRId64,
                     t->name, topic, r->p, r->off, next[r->p]);
        next[r->p]++;
        count[r->p]++;
    }
}

/* The same for a consumer of one topic; asserts every record is of it. */
static void by_partition(const tctx_t *t, const int64_t *first, size_t *count)
{
    for (size_t i = 0; i < t->n; i++)
        cr_assert_str_eq(t->recs[i].topic, t->topic, "%s: a message of %s", t->name,
                         t->recs[i].topic);
    by_partition_of(t, t->topic, first, count);
}

/* order[0..n) = 0..n-1 in a fixed pseudo-random order. */
static void shuffled(size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    uint32_t rng = 12345;
    for (size_t i = n - 1; n > 0 && i > 0; i--) {
        rng = rng * 1103515245u + 12345u;
        size_t j = (rng >> 8) % (i + 1);
        size_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

/* Partition count of topic in the broker's metadata (all topics listed, so
 * asking creates nothing), or -1 when the broker has no such topic. */
static int topic_parts(const char *addr, const char *topic)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "%s", errstr);
    const rd_kafka_metadata_t *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 1, NULL, &md, 10000), 0, "no metadata from %s", addr);
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return n;
}

/* ---- the mock itself ------------------------------------------------------ */

Test(mock, address_parses_and_accepts, .timeout = 30)
{
    vg_mock_t *m;
    char addr[128], err[256], host[64];
    int port = 0;
    const char *clicks[] = {"clicks"};
    cr_assert_eq(vg_mock_start(&m, clicks, 1, 3, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    cr_assert_eq(vg_hostport_parse(addr, host, sizeof host, &port), 0, "address '%s'", addr);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_gt(port, 0);
    cr_assert_eq(vgt_tcp_open(addr), 0);
    const char *v[] = {"x"};
    cr_assert_eq(vgt_produce(addr, "clicks", NULL, v, NULL, 1), 0);
    vg_mock_stop(m);
    vg_mock_stop(NULL);
    cr_assert_eq(vg_mock_start(&m, clicks, 1, 0, addr, sizeof addr, err, sizeof err), VG_EINVAL);
}

Test(mock, tool_prints_address, .timeout = 30)
{
    vgt_broker_t b;
    cr_assert_eq(vgt_broker_start(&b, VG_MOCKBROKER_BIN, "clicks", 2), 0);
    cr_assert_gt(b.pid, 0);
    const char *v[] = {"a", "b"};
    cr_assert_eq(vgt_produce(b.addr, "clicks", NULL, v, NULL, 2), 0);
    vgt_broker_stop(&b);
    cr_assert_eq(b.pid, 0);
    cr_assert_neq(vgt_tcp_open(b.addr), 0, "broker still accepts after SIGTERM");
}

Test(mock, creates_the_literal_topics, .timeout = 30)
{
    vg_mock_t *m;
    char addr[128], err[256];
    const char *const topics[] = {"a1", "^a.*", "b1", "a1"}; /* a regex, a repeat */
    cr_assert_eq(vg_mock_start(&m, topics, 4, 2, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    cr_assert_eq(topic_parts(addr, "a1"), 2);
    cr_assert_eq(topic_parts(addr, "b1"), 2);
    cr_assert_eq(topic_parts(addr, "^a.*"), -1, "a regex was created as a topic");
    vg_mock_stop(m);
    /* no topics: the partition count is not looked at */
    cr_assert_eq(vg_mock_start(&m, NULL, 0, 0, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    cr_assert_eq(topic_parts(addr, "a1"), -1);
    vg_mock_stop(m);
    const char *const only_regex[] = {"^a.*"};
    cr_assert_eq(vg_mock_start(&m, only_regex, 1, 0, addr, sizeof addr, err, sizeof err), 0, "%s",
                 err);
    vg_mock_stop(m);
}

Test(mock, tool_creates_every_topic, .timeout = 30)
{
    vgt_broker_t b;
    const char *const topics[] = {"views", "buys"};
    cr_assert_eq(vgt_broker_start_topics(&b, VG_MOCKBROKER_BIN, topics, 2, 3), 0);
    cr_assert_eq(topic_parts(b.addr, "views"), 3);
    cr_assert_eq(topic_parts(b.addr, "buys"), 3);
    cr_assert_eq(topic_parts(b.addr, "clicks"), -1, "the default topic made despite --topic");
    vgt_broker_stop(&b);

    /* no --topic: clicks */
    cr_assert_eq(vgt_broker_start_topics(&b, VG_MOCKBROKER_BIN, NULL, 0, 2), 0);
    cr_assert_eq(topic_parts(b.addr, "clicks"), 2);
    vgt_broker_stop(&b);

    /* a regex names no topic: a usage error */
    const char *const argv[] = {VG_MOCKBROKER_BIN, "--topic", "views", "--topic", "^v.*", NULL};
    pid_t pid = vgt_spawn(argv, "/dev/null");
    cr_assert_gt(pid, 0);
    cr_assert_eq(vgt_wait_exit(pid, 10), 2);
}

/* ---- configuration -------------------------------------------------------- */

static int init_with(tctx_t *t, const char *const *opts, size_t n, char *err, size_t errlen)
{
    vg_kafka_cfg_t c = cfg_for(t, "127.0.0.1:1", "clicks", "g");
    c.options = opts;
    c.n_options = n;
    return vg_kafka_init(&t->k, &t->loop, &c, err, errlen);
}

Test(kafka, bad_options_are_config_errors, .timeout = 30)
{
    tctx_t t;
    char err[512];
    tctx_init(&t, "cfg");

    const char *const bad_name[] = {"fetch.wait.max.ms", "10", "fetch.wait.max.msx", "10"};
    cr_assert_eq(init_with(&t, bad_name, 2, err, sizeof err), VG_ECONFIG);
    cr_assert_str_eq(err, "kafka.option.fetch.wait.max.msx: No such configuration property: "
                          "\"fetch.wait.max.msx\"");

    const char *const bad_value[] = {"fetch.wait.max.ms", "soon"};
    cr_assert_eq(init_with(&t, bad_value, 1, err, sizeof err), VG_ECONFIG);
    cr_assert(strstr(err, "kafka.option.fetch.wait.max.ms: Invalid value") == err, "err: %s", err);

    const char *const bad_enum[] = {"partition.assignment.strategy", "nonsense"};
    cr_assert_eq(init_with(&t, bad_enum, 1, err, sizeof err), VG_ECONFIG, "err: %s", err);
    cr_assert(strstr(err, "partition.assignment.strategy"), "err: %s", err);

    const char *const autostore[] = {"enable.auto.offset.store", "true"};
    cr_assert_eq(init_with(&t, autostore, 1, err, sizeof err), VG_ECONFIG);
    cr_assert(strstr(err, "kafka.option.enable.auto.offset.store"), "err: %s", err);

    vg_kafka_cfg_t c = cfg_for(&t, "127.0.0.1:1", "", "g");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_EINVAL);
    const char *const one_empty[] = {"clicks", ""}, *const one_null[] = {"clicks", NULL};
    c = cfg_topics(&t, "127.0.0.1:1", one_empty, 2, "g");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_EINVAL);
    c = cfg_topics(&t, "127.0.0.1:1", one_null, 2, "g");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_EINVAL);
    c = cfg_topics(&t, "127.0.0.1:1", one_empty, 0, "g"); /* no topic */
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_EINVAL);
    c = cfg_topics(&t, "127.0.0.1:1", NULL, 1, "g");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_EINVAL);
    cr_assert(strstr(err, "topics"), "err: %s", err);
    const char *const bad_regex[] = {"clicks", "^["};
    c = cfg_topics(&t, "127.0.0.1:1", bad_regex, 2, "g");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), VG_ECONFIG, "err: %s", err);
    cr_assert(strstr(err, "subscribe to clicks,^["), "err: %s", err);

    cr_assert_eq(uv_loop_alive(&t.loop), 0, "a failed init left handles on the loop");
    tctx_fini(&t);
}

/* ---- low-water marks, commit, resume -------------------------------------- */

typedef struct stats_goal {
    uint64_t commits;
} stats_goal_t;

static int commits_reached(tctx_t *t, void *arg)
{
    vg_kafka_stats_t s;
    vg_kafka_stats(t->k, &s);
    return s.commits >= ((stats_goal_t *)arg)->commits;
}

Test(kafka, lowwater_commit_and_resume, .timeout = 90)
{
    enum { N = 120, P = 4 };
    vgt_broker_t b;
    cr_assert_eq(vgt_broker_start(&b, VG_MOCKBROKER_BIN, "t3", P), 0);
    produce_n(b.addr, "t3", 0, N);

    tctx_t a;
    char err[512];
    tctx_init(&a, "A");
    vg_kafka_cfg_t c = cfg_for(&a, b.addr, "t3", "g3");
    cr_assert_eq(vg_kafka_init(&a.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    size_t want = N;
    long t0 = vgt_now_ms();
    cr_assert(run_until(&a, have_n, &want, 30000), "A got %zu of %d", a.n, N);
    fprintf(stderr, "lowwater: A consumed %d in %ld ms (join included)\n", N, vgt_now_ms() - t0);
    run_until(&a, NULL, NULL, 300); /* nothing more arrives */
    cr_assert_eq(a.n, (size_t)N);

    size_t cnt[MAXP];
    by_partition(&a, NULL, cnt); /* every message once, in partition order */
    vg_kafka_stats_t s;
    vg_kafka_stats(a.k, &s);
    cr_assert_eq(s.consumed, (uint64_t)N);
    cr_assert_eq(s.outstanding, (size_t)N);
    cr_assert_eq(s.assigned, P);
    cr_assert_eq(a.assigned, P);
    int32_t tid = tid_of(&a, "t3");
    cr_assert_eq(tid, 0, "the one literal topic has id 0");
    cr_assert_str_eq(vg_kafka_topic_name(a.k, 0), "t3");
    cr_assert_null(vg_kafka_topic_name(a.k, 1));
    cr_assert_null(vg_kafka_topic_name(a.k, -1));
    for (size_t i = 0; i < a.n; i++)
        cr_assert_eq(a.recs[i].tid, tid);

    /* The plan: partition 0 all done; partition 1 everything but its first
     * message; the others everything but their middle one.  Expected
     * committed offset = the hole (none for a hole at 0). */
    int64_t hole[MAXP], expect[MAXP];
    for (int p = 0; p < P; p++) {
        cr_assert_geq(cnt[p], 3, "partition %d got only %zu messages", p, cnt[p]);
        hole[p] = p == 0 ? -1 : p == 1 ? 0 : (int64_t)cnt[p] / 2;
        expect[p] = p == 0 ? (int64_t)cnt[p] : p == 1 ? RD_KAFKA_OFFSET_INVALID : hole[p];
    }
    /* dones out of order within and across partitions: a fixed shuffle */
    size_t order[N];
    shuffled(order, N);
    size_t holes = 0;
    for (size_t i = 0; i < N; i++) {
        rec_t *r = &a.recs[order[i]];
        if (r->off == hole[r->p]) {
            holes++;
            continue;
        }
        vg_kafka_done(a.k, r->tid, r->p, r->off);
        vg_kafka_done(a.k, r->tid, r->p, r->off); /* a second done is ignored */
    }
    vg_kafka_done(a.k, tid, 0, 1000000); /* unknown offsets are ignored */
    vg_kafka_done(a.k, tid, 77, 0);
    vg_kafka_done(a.k, 5, 1, hole[1]); /* an unknown topic id too */
    vg_kafka_done(a.k, -1, 1, hole[1]);
    cr_assert_eq(holes, (size_t)(P - 1));
    cr_assert_eq(vg_kafka_outstanding(a.k), holes);

    vg_kafka_stats(a.k, &s);
    stats_goal_t goal = {s.commits + 1};
    cr_assert(run_until(&a, commits_reached, &goal, 5000), "no commit after the dones");
    run_until(&a, NULL, NULL, 300);
    vg_kafka_stats(a.k, &s);
    cr_assert_eq(s.offsets_stored, (uint64_t)(P - 1), "stored %" PRIu64, s.offsets_stored);
    cr_assert_eq(s.commit_errors, 0);
    for (int p = 0; p < P; p++)
        cr_assert_eq(vgt_committed(b.addr, "g3", "t3", p), expect[p],
                     "partition %d: committed %" PRId64 ", expected %" PRId64, p,
                     vgt_committed(b.addr, "g3", "t3", p), expect[p]);

    /* close with the holes still open: nothing beyond them is committed */
    t0 = vgt_now_ms();
    close_consumer(&a);
    tctx_fini(&a);
    fprintf(stderr, "lowwater: close took %ld ms\n", vgt_now_ms() - t0);
    for (int p = 0; p < P; p++)
        cr_assert_eq(vgt_committed(b.addr, "g3", "t3", p), expect[p]);

    /* a new member of the group resumes exactly at the committed offsets */
    tctx_t bb;
    tctx_init(&bb, "B");
    bb.done_inline = 1;
    c = cfg_for(&bb, b.addr, "t3", "g3");
    cr_assert_eq(vg_kafka_init(&bb.k, &bb.loop, &c, err, sizeof err), 0, "%s", err);
    int64_t first[MAXP] = {0};
    size_t redeliver = 0;
    for (int p = 0; p < P; p++) {
        first[p] = expect[p] < 0 ? 0 : expect[p];
        redeliver += cnt[p] - (size_t)first[p];
    }
    t0 = vgt_now_ms();
    cr_assert(run_until(&bb, have_n, &redeliver, 30000), "B got %zu of %zu", bb.n, redeliver);
    fprintf(stderr, "lowwater: B got its %zu in %ld ms (rejoin included)\n", redeliver,
            vgt_now_ms() - t0);
    run_until(&bb, NULL, NULL, 500);
    cr_assert_eq(bb.n, redeliver, "B got %zu, expected %zu", bb.n, redeliver);
    size_t cnt2[MAXP];
    by_partition(&bb, first, cnt2); /* starts at the committed offset, contiguous */
    cr_assert_eq(cnt2[0], 0, "a fully done partition was redelivered");
    stats_goal_t g2 = {1};
    cr_assert(run_until(&bb, commits_reached, &g2, 5000));
    close_consumer(&bb);
    tctx_fini(&bb);
    for (int p = 0; p < P; p++)
        cr_assert_eq(vgt_committed(b.addr, "g3", "t3", p), (int64_t)cnt[p]);
    vgt_broker_stop(&b);
}

/* ---- several topics ------------------------------------------------------- */

enum { TT = 2 };
static const char *const two_topics[TT] = {"views", "buys"};

/* Every value "v<i>" of topic t (produced with from = t * 1000) was received
 * exactly once, i < n. */
static void all_values_once(const tctx_t *t, size_t n)
{
    static unsigned char seen[TT][1000];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < t->n; i++) {
        const rec_t *r = &t->recs[i];
        int ti = !strcmp(r->topic, two_topics[0]) ? 0 : !strcmp(r->topic, two_topics[1]) ? 1 : -1;
        unsigned v = 0;
        cr_assert(ti >= 0, "a message of topic %s", r->topic);
        cr_assert_eq(sscanf(r->val, "v%u", &v), 1, "value %s", r->val);
        cr_assert(v >= (unsigned)ti * 1000 && v < (unsigned)ti * 1000 + n, "%s: value %s", r->topic,
                  r->val);
        cr_assert_eq(seen[ti][v - (unsigned)ti * 1000]++, 0, "%s: %s twice", r->topic, r->val);
    }
    cr_assert_eq(t->n, TT * n);
}

Test(kafka, two_topics_lowwater, .timeout = 90)
{
    enum { N = 60, P = 3 };
    vgt_broker_t b;
    cr_assert_eq(vgt_broker_start_topics(&b, VG_MOCKBROKER_BIN, two_topics, TT, P), 0);
    for (int ti = 0; ti < TT; ti++)
        produce_n(b.addr, two_topics[ti], (size_t)ti * 1000, N);

    tctx_t a;
    char err[512];
    tctx_init(&a, "A");
    vg_kafka_cfg_t c = cfg_topics(&a, b.addr, two_topics, TT, "g7");
    cr_assert_eq(vg_kafka_init(&a.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    size_t want = TT * N;
    cr_assert(run_until(&a, have_n, &want, 30000), "A got %zu of %d", a.n, TT * N);
    run_until(&a, NULL, NULL, 300); /* nothing more arrives */
    all_values_once(&a, N);         /* nothing lost, nothing twice */
    vg_kafka_stats_t s;
    vg_kafka_stats(a.k, &s);
    cr_assert_eq(s.assigned, TT * P, "assigned counts (topic, partition) pairs: %d", s.assigned);
    cr_assert_eq(a.assigned, TT * P);
    cr_assert_eq(s.outstanding, (size_t)(TT * N));
    for (int ti = 0; ti < TT; ti++) /* the literal topics' ids: their order */
        cr_assert_eq(tid_of(&a, two_topics[ti]), ti);
    cr_assert_null(vg_kafka_topic_name(a.k, TT));

    /* The plan per (topic, partition), different for the same partition of
     * the two topics: 0 all done, 1 all but the first, 2 all but the
     * middle one, 3 all but the last.  Expected committed offset = the hole
     * (none for a hole at 0). */
    size_t cnt[TT][MAXP];
    int64_t hole[TT][MAXP], expect[TT][MAXP];
    size_t holes = 0, stores = 0;
    for (int ti = 0; ti < TT; ti++) {
        by_partition_of(&a, two_topics[ti], NULL, cnt[ti]); /* in order per (topic, partition) */
        for (int p = 0; p < P; p++) {
            int plan = (ti * P + p) % 4;
            int64_t n = (int64_t)cnt[ti][p];
            cr_assert_geq(n, 3, "%s[%d] got only %" PRId64 " messages", two_topics[ti], p, n);
            hole[ti][p] = plan == 0 ? -1 : plan == 1 ? 0 : plan == 2 ? n / 2 : n - 1;
            expect[ti][p] = plan == 0 ? n : plan == 1 ? RD_KAFKA_OFFSET_INVALID : hole[ti][p];
            holes += plan != 0;
            stores += plan != 1;
        }
    }
    /* dones out of order within and across topics and partitions */
    size_t order[TT * N];
    shuffled(order, TT * N);
    for (size_t i = 0; i < TT * N; i++) {
        const rec_t *r = &a.recs[order[i]];
        if (r->off != hole[r->tid][r->p])
            vg_kafka_done(a.k, r->tid, r->p, r->off);
    }
    cr_assert_eq(vg_kafka_outstanding(a.k), holes);

    vg_kafka_stats(a.k, &s);
    stats_goal_t goal = {s.commits + 1};
    cr_assert(run_until(&a, commits_reached, &goal, 5000), "no commit after the dones");
    run_until(&a, NULL, NULL, 300);
    vg_kafka_stats(a.k, &s);
    cr_assert_eq(s.offsets_stored, (uint64_t)stores, "stored %" PRIu64, s.offsets_stored);
    cr_assert_eq(s.commit_errors, 0);
    for (int ti = 0; ti < TT; ti++)
        for (int p = 0; p < P; p++)
            cr_assert_eq(vgt_committed(b.addr, "g7", two_topics[ti], p), expect[ti][p],
                         "%s[%d]: committed %" PRId64 ", expected %" PRId64, two_topics[ti], p,
                         vgt_committed(b.addr, "g7", two_topics[ti], p), expect[ti][p]);
    close_consumer(&a);
    tctx_fini(&a);
    for (int ti = 0; ti < TT; ti++)
        for (int p = 0; p < P; p++)
            cr_assert_eq(vgt_committed(b.addr, "g7", two_topics[ti], p), expect[ti][p]);

    /* a restarted consumer resumes exactly at the committed offsets of both */
    tctx_t bb;
    tctx_init(&bb, "B");
    bb.done_inline = 1;
    c = cfg_topics(&bb, b.addr, two_topics, TT, "g7");
    cr_assert_eq(vg_kafka_init(&bb.k, &bb.loop, &c, err, sizeof err), 0, "%s", err);
    int64_t first[TT][MAXP] = {{0}};
    size_t redeliver = 0;
    for (int ti = 0; ti < TT; ti++)
        for (int p = 0; p < P; p++) {
            first[ti][p] = expect[ti][p] < 0 ? 0 : expect[ti][p];
            redeliver += cnt[ti][p] - (size_t)first[ti][p];
        }
    cr_assert(run_until(&bb, have_n, &redeliver, 30000), "B got %zu of %zu", bb.n, redeliver);
    run_until(&bb, NULL, NULL, 500);
    cr_assert_eq(bb.n, redeliver, "B got %zu, expected %zu", bb.n, redeliver);
    for (int ti = 0; ti < TT; ti++) {
        size_t cnt2[MAXP];
        cr_assert_eq(tid_of(&bb, two_topics[ti]), ti);
        by_partition_of(&bb, two_topics[ti], first[ti], cnt2); /* from the committed offset */
        for (int p = 0; p < P; p++)
            cr_assert_eq(cnt2[p], cnt[ti][p] - (size_t)first[ti][p], "%s[%d]: B got %zu",
                         two_topics[ti], p, cnt2[p]);
    }
    stats_goal_t g2 = {1};
    cr_assert(run_until(&bb, commits_reached, &g2, 5000));
    close_consumer(&bb);
    tctx_fini(&bb);
    for (int ti = 0; ti < TT; ti++)
        for (int p = 0; p < P; p++)
            cr_assert_eq(vgt_committed(b.addr, "g7", two_topics[ti], p), (int64_t)cnt[ti][p]);
    vgt_broker_stop(&b);
}

Test(kafka, regex_subscription, .timeout = 60)
{
    enum { M = 20, P = 2, NT = 4 };
    vg_mock_t *m;
    char addr[128], err[512];
    const char *const created[NT] = {"clicks", "clacks", "buys", "views"};
    cr_assert_eq(vg_mock_start(&m, created, NT, P, addr, sizeof addr, err, sizeof err), 0, "%s",
                 err);
    for (int i = 0; i < NT; i++)
        produce_n(addr, created[i], (size_t)i * 100, M);

    /* the regex first, a literal topic after it, and a repeat */
    const char *const sub[] = {"^cl.*", "buys", "buys"};
    tctx_t t;
    tctx_init(&t, "R");
    t.done_inline = 1;
    vg_kafka_cfg_t c = cfg_topics(&t, addr, sub, 3, "g8");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tid_of(&t, "buys"), 0, "a literal topic has its id from the start");
    cr_assert_null(vg_kafka_topic_name(t.k, 1), "a regex names no topic before an assignment");
    size_t want = 3 * M;
    cr_assert(run_until(&t, have_n, &want, 30000), "got %zu of %d", t.n, 3 * M);
    run_until(&t, NULL, NULL, 500); /* nothing of views arrives */
    cr_assert_eq(t.n, want);
    vg_kafka_stats_t s;
    vg_kafka_stats(t.k, &s);
    cr_assert_eq(s.assigned, 3 * P);
    cr_assert_eq(t.assigned, 3 * P);
    cr_assert_eq(s.outstanding, 0);
    /* the matched topics got the next ids, 1 and 2, in the order first seen */
    int32_t ci = tid_of(&t, "clicks"), ca = tid_of(&t, "clacks");
    cr_assert((ci == 1 && ca == 2) || (ci == 2 && ca == 1), "clicks %d, clacks %d", ci, ca);
    cr_assert_null(vg_kafka_topic_name(t.k, 3));
    cr_assert_eq(tid_of(&t, "views"), -1);
    size_t cnt[NT][MAXP];
    for (int i = 0; i < NT; i++) {
        by_partition_of(&t, created[i], NULL, cnt[i]);
        size_t sum = 0;
        for (int p = 0; p < P; p++)
            sum += cnt[i][p];
        cr_assert_eq(sum, i < 3 ? (size_t)M : 0, "%s: %zu messages", created[i], sum);
    }
    stats_goal_t g = {1};
    cr_assert(run_until(&t, commits_reached, &g, 5000), "no commit");
    close_consumer(&t);
    tctx_fini(&t);
    for (int i = 0; i < NT; i++)
        for (int p = 0; p < P; p++)
            cr_assert_eq(vgt_committed(addr, "g8", created[i], p),
                         i < 3 ? (int64_t)cnt[i][p] : RD_KAFKA_OFFSET_INVALID, "%s[%d]",
                         created[i], p);
    vg_mock_stop(m);
}

/* ---- pause / resume ------------------------------------------------------- */

Test(kafka, pause_and_resume, .timeout = 60)
{
    vg_mock_t *m;
    char addr[128], err[512];
    const char *t4[] = {"t4"};
    cr_assert_eq(vg_mock_start(&m, t4, 1, 2, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    produce_n(addr, "t4", 0, 60);

    tctx_t t;
    tctx_init(&t, "P");
    t.done_inline = 1;
    vg_kafka_cfg_t c = cfg_for(&t, addr, "t4", "g4");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);

    /* paused before the group is joined: the assignment arrives paused */
    vg_kafka_pause(t.k);
    cr_assert_eq(vg_kafka_paused(t.k), 1);
    cr_assert(run_until(&t, is_assigned, NULL, 20000), "never assigned");
    run_until(&t, NULL, NULL, 1000);
    cr_assert_eq(t.n, 0, "%zu messages delivered while paused", t.n);

    /* resume; pause again from inside on_message at the 10th message */
    t.pause_at = 10;
    vg_kafka_resume(t.k);
    cr_assert_eq(vg_kafka_paused(t.k), 0);
    size_t ten = 10;
    cr_assert(run_until(&t, have_n, &ten, 10000));
    cr_assert_eq(vg_kafka_paused(t.k), 1);
    run_until(&t, NULL, NULL, 1000);
    cr_assert_eq(t.n, 10, "%zu messages delivered, the pause came at 10", t.n);
    produce_n(addr, "t4", 60, 20); /* new data while paused stays put */
    run_until(&t, NULL, NULL, 500);
    cr_assert_eq(t.n, 10);

    /* a message without a DLQ configured: vg_kafka_dlq says so, the caller keeps the done */
    vg_kafka_msg_t fake = {
        .topic = "t4", .topic_id = 0, .partition = 0, .offset = 0, .value = "x", .value_len = 1};
    cr_assert_eq(vg_kafka_dlq(t.k, &fake, "test"), VG_ENOTFOUND);

    vg_kafka_resume(t.k);
    size_t all = 80;
    cr_assert(run_until(&t, have_n, &all, 10000), "after resume: %zu of 80", t.n);
    run_until(&t, NULL, NULL, 300);
    cr_assert_eq(t.n, 80);
    size_t cnt[MAXP];
    by_partition(&t, NULL, cnt); /* nothing lost, nothing twice, in order */
    cr_assert_eq(cnt[0] + cnt[1], 80);
    vg_kafka_stats_t s;
    vg_kafka_stats(t.k, &s);
    cr_assert_eq(s.consumed, 80);
    cr_assert_eq(s.outstanding, 0);
    cr_assert_eq(s.dlq_produced + s.dlq_errors, 0);
    fprintf(stderr, "pause: %" PRIu64 " messages were held across the pause (librdkafka "
            "discards and re-fetches the rest)\n", s.held);
    close_consumer(&t);
    tctx_fini(&t);
    vg_mock_stop(m);
}

/* A message given back with vg_kafka_retry (out of memory in the app) is
 * the first one delivered again after the resume: nothing lost, nothing
 * twice, in order. */
Test(kafka, retry_gives_a_message_back, .timeout = 60)
{
    vg_mock_t *m;
    char addr[128], err[512];
    const char *t7[] = {"t7"};
    cr_assert_eq(vg_mock_start(&m, t7, 1, 1, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    produce_n(addr, "t7", 0, 40);
    tctx_t t;
    tctx_init(&t, "R");
    t.done_inline = 1;
    t.retry_at = 7;
    vg_kafka_cfg_t c = cfg_for(&t, addr, "t7", "g7");
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);
    size_t six = 6;
    cr_assert(run_until(&t, have_n, &six, 20000));
    run_until(&t, NULL, NULL, 300);
    cr_assert_eq(t.n, 6, "paused by the retry: %zu delivered", t.n);
    cr_assert_eq(vg_kafka_paused(t.k), 1);
    vg_kafka_stats_t s;
    vg_kafka_stats(t.k, &s);
    cr_assert_eq(s.retried, 1);
    cr_assert_eq(s.outstanding, 0, "the given-back message is not outstanding");
    vg_kafka_resume(t.k);
    size_t all = 40;
    cr_assert(run_until(&t, have_n, &all, 10000), "after resume: %zu of 40", t.n);
    run_until(&t, NULL, NULL, 300);
    cr_assert_eq(t.n, 40);
    for (size_t i = 0; i < t.n; i++)
        cr_assert_eq(t.recs[i].off, (int64_t)i, "message %zu has offset %lld", i, (long long)t.recs[i].off);
    close_consumer(&t);
    cr_assert_eq(vgt_committed(addr, "g7", "t7", 0), 40);
    tctx_fini(&t);
    vg_mock_stop(m);
}

/* ---- dead-letter topic ---------------------------------------------------- */

static int dlq_acked(tctx_t *t, void *arg)
{
    (void)arg;
    vg_kafka_stats_t s;
    vg_kafka_stats(t->k, &s);
    return s.dlq_produced + s.dlq_errors >= 1;
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t len)
{
    const void *v;
    size_t n;
    if (rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    snprintf(buf, len, "%.*s", (int)n, (const char *)v);
    return buf;
}

Test(kafka, dead_letter_copy, .timeout = 60)
{
    vg_mock_t *m;
    char addr[128], err[512];
    const char *t5[] = {"t5"};
    cr_assert_eq(vg_mock_start(&m, t5, 1, 1, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    const char *keys[] = {"u1", "u2", "u3"}, *vals[] = {"good", "bad", "good"};
    cr_assert_eq(vgt_produce(addr, "t5", keys, vals, NULL, 3), 0);

    tctx_t t;
    tctx_init(&t, "D");
    t.done_inline = 1;
    vg_kafka_cfg_t c = cfg_for(&t, addr, "t5", "g5");
    c.dlq_topic = "t5-dlq";
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);
    size_t three = 3;
    cr_assert(run_until(&t, have_n, &three, 20000));
    cr_assert_eq(t.dlq_calls, 1);
    cr_assert_eq(t.dlq_rc, 0);
    cr_assert(run_until(&t, dlq_acked, NULL, 10000), "no delivery report for the DLQ copy");
    vg_kafka_stats_t s;
    vg_kafka_stats(t.k, &s);
    cr_assert_eq(s.dlq_produced, 1);
    cr_assert_eq(s.dlq_errors, 0);
    cr_assert_eq(s.dlq_pending, 0);
    cr_assert_eq(s.outstanding, 0, "the acknowledged dead letter marks its message done (the app did not)");
    close_consumer(&t);
    tctx_fini(&t);

    /* read it back with a plain consumer */
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr), 0);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", "g5-reader", errstr, sizeof errstr), 0);
    cr_assert_eq(rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr), 0);
    cr_assert_eq(rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof errstr), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, "t5-dlq", RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(rk, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    rd_kafka_message_t *msg = NULL;
    long end = vgt_now_ms() + 20000;
    while (!msg && vgt_now_ms() < end) {
        msg = rd_kafka_consumer_poll(rk, 200);
        if (msg && msg->err) {
            rd_kafka_message_destroy(msg);
            msg = NULL;
        }
    }
    cr_assert_not_null(msg, "nothing in the DLQ topic");
    cr_assert_eq(msg->key_len, 2);
    cr_assert_eq(memcmp(msg->key, "u2", 2), 0);
    cr_assert_eq(msg->len, 3);
    cr_assert_eq(memcmp(msg->payload, "bad", 3), 0);
    rd_kafka_headers_t *h = NULL;
    cr_assert_eq(rd_kafka_message_headers(msg, &h), 0);
    char buf[64];
    cr_assert_str_eq(header(h, "vaegan-error", buf, sizeof buf), "not JSON");
    cr_assert_str_eq(header(h, "vaegan-topic", buf, sizeof buf), "t5");
    cr_assert_str_eq(header(h, "vaegan-partition", buf, sizeof buf), "0");
    cr_assert_str_eq(header(h, "vaegan-offset", buf, sizeof buf), "1");
    rd_kafka_message_destroy(msg);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    vg_mock_stop(m);
}

/* A dead letter whose delivery failed is sent again; its message is done
 * only once the broker has acknowledged a copy, and committed then. */
Test(kafka, dead_letter_resent_after_a_failed_delivery, .timeout = 60)
{
    vg_mock_t *m;
    char addr[128], err[512];
    const char *t10[] = {"t10", "t10-dlq"};
    cr_assert_eq(vg_mock_start(&m, t10, 2, 1, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    const char *keys[] = {"u1", "u2", "u3"}, *vals[] = {"good", "bad", "good"};
    cr_assert_eq(vgt_produce(addr, "t10", keys, vals, NULL, 3), 0);
    const int too_large[] = {10}; /* MESSAGE_TOO_LARGE: not retried by librdkafka itself */
    vg_mock_push_errors(m, 0 /* Produce */, 1, too_large);
    tctx_t t;
    tctx_init(&t, "Q");
    t.done_inline = 1;
    vg_kafka_cfg_t c = cfg_for(&t, addr, "t10", "g10");
    c.dlq_topic = "t10-dlq";
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);
    size_t three = 3;
    cr_assert(run_until(&t, have_n, &three, 20000));
    vg_kafka_stats_t s;
    for (int i = 0; i < 200; i++) { /* until the copy is acknowledged */
        run_until(&t, NULL, NULL, 50);
        vg_kafka_stats(t.k, &s);
        if (s.dlq_produced)
            break;
    }
    cr_assert_eq(s.dlq_produced, 1, "the copy was sent again and acknowledged");
    cr_assert_geq(s.dlq_errors, 1, "the failed delivery was counted");
    cr_assert_eq(s.outstanding, 0);
    close_consumer(&t);
    cr_assert_eq(vgt_committed(addr, "g10", "t10", 0), 3);
    tctx_fini(&t);
    vg_mock_stop(m);
}

/* ---- cooperative revoke waits for outstanding messages -------------------- */

typedef struct two {
    tctx_t *a, *b;
} two_t;

static int split_done(tctx_t *t, void *arg)
{
    (void)t;
    two_t *w = arg;
    return w->a->assigned > 0 && w->b->assigned > 0 &&
           w->a->assigned + w->b->assigned == 4;
}

static int b_has(tctx_t *t, void *arg)
{
    (void)t;
    two_t *w = arg;
    return w->a->n + w->b->n >= 40 + 20;
}

Test(kafka, revoke_waits_for_outstanding, .timeout = 90)
{
    enum { P = 4, N = 40 };
    vgt_broker_t br;
    cr_assert_eq(vgt_broker_start(&br, VG_MOCKBROKER_BIN, "t6", P), 0);
    produce_n(br.addr, "t6", 0, N);

    /* A and B share one loop (t's loop); A consumes everything first */
    tctx_t a, b;
    char err[512];
    tctx_init(&a, "A");
    memset(&b, 0, sizeof b);
    b.name = "B";
    b.done_inline = 1;
    vg_kafka_cfg_t c = cfg_for(&a, br.addr, "t6", "g6");
    cr_assert_eq(vg_kafka_init(&a.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    size_t want = N;
    cr_assert(run_until(&a, have_n, &want, 30000), "A got %zu", a.n);
    size_t cnt[MAXP];
    by_partition(&a, NULL, cnt);

    /* everything done except the last message of each partition */
    int64_t lastoff[MAXP];
    for (int p = 0; p < P; p++)
        lastoff[p] = (int64_t)cnt[p] - 1;
    for (size_t i = 0; i < a.n; i++)
        if (a.recs[i].off != lastoff[a.recs[i].p])
            vg_kafka_done(a.k, a.recs[i].tid, a.recs[i].p, a.recs[i].off);
    cr_assert_eq(vg_kafka_outstanding(a.k), (size_t)P);

    /* B joins: A is asked to give up partitions but holds them until done */
    c = cfg_for(&b, br.addr, "t6", "g6");
    cr_assert_eq(vg_kafka_init(&b.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    long t0 = vgt_now_ms();
    vg_kafka_stats_t s;
    for (int i = 0; i < 80; i++) { /* up to 8 s for the revoke to start */
        run_until(&a, NULL, NULL, 100);
        vg_kafka_stats(a.k, &s);
        if (s.rebalances >= 2)
            break;
    }
    cr_assert_geq(s.rebalances, 2, "A saw no revoke");
    fprintf(stderr, "revoke: A got the revoke %ld ms after B started\n", vgt_now_ms() - t0);
    run_until(&a, NULL, NULL, 2000);
    cr_assert_eq(b.assigned, 0, "B got partitions while A still had them outstanding");
    cr_assert_eq(a.assigned, P, "A let partitions go with messages outstanding");

    /* A finishes: the revoked partitions are committed, then handed over */
    int32_t tid = tid_of(&a, "t6");
    cr_assert_geq(tid, 0);
    for (int p = 0; p < P; p++)
        vg_kafka_done(a.k, tid, p, lastoff[p]);
    two_t w = {&a, &b};
    t0 = vgt_now_ms();
    cr_assert(run_until(&a, split_done, &w, 30000), "no split: A %d, B %d", a.assigned,
              b.assigned);
    fprintf(stderr, "revoke: split %d/%d %ld ms after the dones\n", a.assigned, b.assigned,
            vgt_now_ms() - t0);
    run_until(&a, NULL, NULL, 500); /* A's periodic commit of the partitions it kept */
    vg_kafka_stats(a.k, &s);
    /* assign, revoke, assign after revoke, assign — a loaded machine may add another round */
    cr_assert_geq(s.rebalances, 4, "A: assign, revoke, assign after revoke, assign; got %" PRIu64,
                  s.rebalances);
    for (int p = 0; p < P; p++)
        cr_assert_eq(vgt_committed(br.addr, "g6", "t6", p), (int64_t)cnt[p],
                     "partition %d not committed at its end", p);

    /* nothing is redelivered to B; new messages reach one of the two */
    produce_n(br.addr, "t6", N, 20);
    cr_assert(run_until(&a, b_has, &w, 15000), "A %zu + B %zu", a.n, b.n);
    for (size_t i = N; i < a.n; i++) /* A's new ones are done too */
        vg_kafka_done(a.k, a.recs[i].tid, a.recs[i].p, a.recs[i].off);
    run_until(&a, NULL, NULL, 300);
    /* the contract: nothing lost; nothing twice unless a handover anomaly (a
     * revoke commit that failed after its retries) was counted */
    cr_assert_geq(a.n + b.n, (size_t)(N + 20), "new messages lost: A %zu + B %zu", a.n, b.n);
    vg_kafka_stats(a.k, &s);
    if (s.commit_errors == 0) {
        cr_assert_eq(a.n + b.n, (size_t)(N + 20));
        for (size_t i = 0; i < b.n; i++)
            cr_assert_geq(b.recs[i].off, (int64_t)cnt[b.recs[i].p], "B got an old message");
    } else {
        fprintf(stderr, "revoke: %" PRIu64 " commit errors counted: redelivery allowed (A %zu + B %zu)\n",
                s.commit_errors, a.n, b.n);
    }
    cr_assert_eq(a.fatal + b.fatal, 0);

    close_consumer(&b);
    close_consumer(&a);
    tctx_fini(&a);
    vgt_broker_stop(&br);
}

/* The revoke commit refused three times with Kafka error `code` (by the
 * broker this test owns) is tried again until its deadline, at WARN and
 * counted.  Returns A's stats; *at_end = every partition committed at its
 * end (the partitions were handed over without a redelivery). */
static vg_kafka_stats_t refused_revoke_commit(const char *topic, int code, int *at_end)
{
    enum { P = 4, N = 20 }; /* split_done wants 4 */
    vg_mock_t *m;
    char addr[128], err[512];
    cr_assert_eq(vg_mock_start(&m, &topic, 1, P, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    produce_n(addr, topic, 0, N);
    tctx_t a, b;
    tctx_init(&a, "A");
    memset(&b, 0, sizeof b);
    b.name = "B";
    b.done_inline = 1;
    vg_kafka_cfg_t c = cfg_for(&a, addr, topic, "g8");
    cr_assert_eq(vg_kafka_init(&a.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    size_t want = N;
    cr_assert(run_until(&a, have_n, &want, 30000), "A got %zu", a.n);
    size_t cnt[MAXP];
    by_partition(&a, NULL, cnt);
    for (size_t i = 0; i < a.n; i++) /* all done but the last of each partition */
        if (a.recs[i].off != (int64_t)cnt[a.recs[i].p] - 1)
            vg_kafka_done(a.k, a.recs[i].tid, a.recs[i].p, a.recs[i].off);
    c = cfg_for(&b, addr, topic, "g8");
    cr_assert_eq(vg_kafka_init(&b.k, &a.loop, &c, err, sizeof err), 0, "%s", err);
    vg_kafka_stats_t s;
    do { /* until A is asked to give partitions up */
        run_until(&a, NULL, NULL, 100);
        vg_kafka_stats(a.k, &s);
    } while (s.rebalances < 2);
    const int codes[] = {code, code, code};
    vg_mock_push_errors(m, 8 /* OffsetCommit */, 3, codes);
    int32_t tid = tid_of(&a, topic);
    for (int p = 0; p < P; p++)
        vg_kafka_done(a.k, tid, p, (int64_t)cnt[p] - 1);
    two_t w = {&a, &b};
    cr_assert(run_until(&a, split_done, &w, 30000), "no split: A %d, B %d", a.assigned, b.assigned);
    run_until(&a, NULL, NULL, 1500); /* the periodic commits after the split */
    vg_kafka_stats(a.k, &s);
    *at_end = 1;
    for (int p = 0; p < P; p++)
        *at_end &= vgt_committed(addr, "g8", topic, p) == (int64_t)cnt[p];
    close_consumer(&a);
    close_consumer(&b);
    tctx_fini(&a);
    vg_mock_stop(m);
    return s;
}

/* The coordinator is away (librdkafka finds it again and re-sends the
 * commit itself): the handover is committed at the end — unless the
 * group's own rebalance also refused it past its retries, which is then
 * counted (a loaded machine can stretch the revoke into the next round). */
Test(kafka, revoke_commit_survives_coordinator_errors, .timeout = 90)
{
    int at_end;
    vg_kafka_stats_t s = refused_revoke_commit("t8", 15 /* COORDINATOR_NOT_AVAILABLE */, &at_end);
    cr_assert(at_end || s.commit_errors > 0, "a lost revoke commit is counted");
    fprintf(stderr, "revoke under COORDINATOR_NOT_AVAILABLE: committed at the end: %s\n",
            at_end ? "yes" : "no (counted)");
}

/* REBALANCE_IN_PROGRESS: librdkafka rejoins, so the retry may meet a new
 * generation: retried, and either committed or counted as a failed commit
 * (the next owner reads again: at-least-once), never silent. */
Test(kafka, rebalancing_revoke_commit_is_retried_or_counted, .timeout = 90)
{
    int at_end;
    vg_kafka_stats_t s = refused_revoke_commit("t9", 27 /* REBALANCE_IN_PROGRESS */, &at_end);
    cr_assert_geq(s.commit_retries, 1, "the refusal was retried and counted");
    cr_assert(at_end || s.commit_errors > 0, "a lost revoke commit is counted");
    fprintf(stderr, "revoke under REBALANCE_IN_PROGRESS: %" PRIu64 " retries, committed at the end: %s\n",
            s.commit_retries, at_end ? "yes" : "no (counted)");
}

/* ---- lag -------------------------------------------------------------------- */

typedef struct lag_want {
    int64_t p[2]; /* per partition (-1: any known value) */
    int stats;    /* on_stats calls seen at least */
} lag_want_t;

static int stats_calls;
static void count_stats(void *ud)
{
    (void)ud;
    stats_calls++;
}

static int lag_is(tctx_t *t, void *arg)
{
    const lag_want_t *w = arg;
    vg_kafka_lag_t l[2];
    if (stats_calls < w->stats || vg_kafka_lag(t->k, l, 2) != 2)
        return 0;
    for (int i = 0; i < 2; i++)
        if (l[i].lag < 0 || (w->p[l[i].partition] >= 0 && l[i].lag != w->p[l[i].partition]))
            return 0;
    return 1;
}

static void lag_now(tctx_t *t, int64_t *out)
{
    vg_kafka_lag_t l[2];
    cr_assert_eq(vg_kafka_lag(t->k, l, 2), 2);
    for (int i = 0; i < 2; i++)
        out[l[i].partition] = l[i].lag;
}

/* Lag counts from the stored offset (what Redis acknowledged), per
 * partition; it keeps growing while consumption is paused (the leader is
 * asked for the high-water mark) and reaches 0 once everything is done. */
Test(kafka, lag_from_the_stored_offset, .timeout = 120)
{
    vg_mock_t *m;
    char addr[128], err[512];
    const char *tl[] = {"tl"};
    cr_assert_eq(vg_mock_start(&m, tl, 1, 2, addr, sizeof addr, err, sizeof err), 0, "%s", err);
    produce_n(addr, "tl", 0, 100);

    tctx_t t;
    tctx_init(&t, "L");
    vg_kafka_cfg_t c = cfg_for(&t, addr, "tl", "gl");
    c.stats_interval_ms = 100;
    c.on_stats = count_stats;
    cr_assert_eq(vg_kafka_init(&t.k, &t.loop, &c, err, sizeof err), 0, "%s", err);
    size_t all = 100;
    cr_assert(run_until(&t, have_n, &all, 20000), "%zu of 100 delivered", t.n);
    size_t cnt[MAXP];
    by_partition(&t, NULL, cnt);
    cr_assert(cnt[0] > 0 && cnt[1] > 0, "the keys spread over both partitions");

    /* delivered, nothing done: the whole backlog is lag */
    lag_want_t w = {{(int64_t)cnt[0], (int64_t)cnt[1]}, 0};
    cr_assert(run_until(&t, lag_is, &w, 20000), "lag of nothing done");

    /* partition 0 done: its lag goes to 0 once stored, partition 1's stays */
    for (size_t i = 0; i < t.n; i++)
        if (t.recs[i].p == 0)
            vg_kafka_done(t.k, t.recs[i].tid, 0, t.recs[i].off);
    w = (lag_want_t){{0, (int64_t)cnt[1]}, 0};
    cr_assert(run_until(&t, lag_is, &w, 20000), "lag after partition 0 was done");

    /* paused: new messages raise the lag all the same */
    vg_kafka_pause(t.k);
    stats_calls = 0;
    produce_n(addr, "tl", 100, 40);
    w = (lag_want_t){{-1, -1}, 3};
    int64_t before[2];
    cr_assert(run_until(&t, lag_is, &w, 20000));
    lag_now(&t, before);
    int64_t grown[2] = {-1, -1};
    for (int tries = 0; tries < 200 && grown[0] + grown[1] != (int64_t)cnt[1] + 40; tries++) {
        w.stats = stats_calls + 1;
        cr_assert(run_until(&t, lag_is, &w, 20000));
        lag_now(&t, grown);
    }
    cr_assert_eq(grown[0] + grown[1], (int64_t)cnt[1] + 40, "paused: lag %" PRId64 " + %" PRId64
                 " (before %" PRId64 " + %" PRId64 "), want %zu + 40", grown[0], grown[1], before[0],
                 before[1], cnt[1]);
    cr_assert_eq(t.n, 100, "nothing delivered while paused");

    /* resumed, everything done: no lag */
    t.done_inline = 1;
    for (size_t i = 0; i < t.n; i++)
        if (t.recs[i].p == 1)
            vg_kafka_done(t.k, t.recs[i].tid, 1, t.recs[i].off);
    vg_kafka_resume(t.k);
    w = (lag_want_t){{0, 0}, 0};
    cr_assert(run_until(&t, lag_is, &w, 20000), "lag after everything was done");
    cr_assert_eq(t.n, 140, "lag 0 with %zu of 140 delivered: a stale high-water mark after the resume", t.n);
    close_consumer(&t);
    tctx_fini(&t);
    vg_mock_stop(m);
}
