/*
 * test_store_cluster.c — the store in cluster mode (cache/store.h, "Redis
 * Cluster") against a real 3-master Redis Cluster started per test
 * (tests/support/rcluster.h): histories, lists, the model hash, erasure and
 * the start-up load over hash-tagged keys spread on every master; the
 * ordered script's two keys in one slot, and a user id without a hash tag
 * refused alone (CROSSSLOT) while the rest of its batch is stored; a slot
 * migrated by hand while batches keep coming (ASK, MOVED), with every event
 * stored and callbacks in submission order.  Every wait is on an event (a
 * callback, a counter) with a deadline as a guard only.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "cache/store.h"
#include "tests/support/loop.h"
#include "tests/support/rcluster.h"
#include "tests/support/tmpdir.h"

/* ---- harness ---------------------------------------------------------------------------- */

static uv_loop_t loop;
static vgt_rcluster_t RC;
static char seed_host[] = "127.0.0.1";

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (getenv("VG_TEST_VERBOSE"))
        fprintf(stderr, "[store %d] %s\n", level, msg);
}

static void setup(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&RC, 0, sizeof RC);
    cr_assert_eq(vgt_rcluster_start(&RC, vg_tmpdir, 3), 0, "no cluster");
}

static void teardown(void)
{
    vgt_rcluster_stop(&RC);
    vg_tmpdir_remove();
}

static vg_store_cfg_t base_cfg(void)
{
    vg_store_cfg_t c;
    memset(&c, 0, sizeof c);
    c.host = seed_host;
    c.port = RC.port[1]; /* any node will do: not the first, for once */
    c.cluster = 1;
    c.history_max = 50;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 400;
    c.log = test_log;
    return c;
}

static vg_store_t *open_store(const vg_store_cfg_t *c)
{
    vg_store_t *s = NULL;
    char err[256];
    cr_assert_eq(vg_store_init(&s, &loop, c, err, sizeof err), 0, "vg_store_init: %s", err);
    return s;
}

/* Runs the loop until pred(arg) holds or ms pass; returns pred(arg). */
static int wait_for(int (*pred)(void *), void *arg, int ms) { return vgt_loop_until(&loop, pred, arg, ms, NULL); }

static int is_up(void *arg) { return vg_store_is_up(arg); }
static int is_idle(void *arg) { return vg_store_pending(arg) == 0; }

static void close_store(vg_store_t *s)
{
    vg_store_close(s);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}

/* Callbacks of history jobs: each must come once, in submission order. */
static int done_seq, done_bad, refused_events;
static char refused_msg[300];

static void events_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    int want = (int)(intptr_t)ud;
    if (want != done_seq)
        done_bad++;
    done_seq++;
    if (status) {
        for (size_t i = 0; ev_err && i < n; i++)
            if (ev_err[i]) {
                refused_events++;
                snprintf(refused_msg, sizeof refused_msg, "%s", ev_err[i]);
            }
    }
}

static int list_status = -1, lists_done;
static void store_cb(void *ud, int status)
{
    (void)ud;
    lists_done++;
    if (status)
        list_status = status;
}

static void status_cb(void *ud, int status) { *(int *)ud = status; }

/* The reply of a command on the node that owns key's slot (freed by the caller). */
static redisReply *on_owner(const char *key, const char *fmt, const char *arg)
{
    int node = vgt_rcluster_owner(&RC, vg_cluster_keyslot(key, strlen(key)));
    cr_assert_geq(node, 0);
    return vgt_rcluster_cmd(&RC, node, fmt, key, arg);
}

static long long zcard(const char *key)
{
    redisReply *r = on_owner(key, "ZCARD %s", NULL);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "ZCARD %s", key);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

#define NU 600
#define PER 3

/* Submits batch b (0..PER-1): one event of each of users 0..NU-1, item i<b>. */
static void submit_batch(vg_store_t *s, int b, int seq)
{
    static char users[NU][16], items[NU][16];
    vg_store_event_t ev[NU];
    for (int u = 0; u < NU; u++) {
        snprintf(users[u], sizeof users[u], "u%d", u);
        snprintf(items[u], sizeof items[u], "i%d", b);
        ev[u] = (vg_store_event_t){.user = users[u], .user_len = strlen(users[u]), .item = items[u],
                                   .item_len = strlen(items[u]), .ts = 1000.0 + b};
    }
    cr_assert_eq(vg_store_add_events(s, ev, NU, events_cb, (void *)(intptr_t)seq), 0);
}

/* ---- the tail of vaegan:users ------------------------------------------------------------ */

static vg_store_since_t tail_at[VG_STORE_USER_SHARDS];
static int tail_seen[NU], tail_full, tail_status = -2, tail_bad;

static void tail_rows(void *ud, int k, const char *const *users, const size_t *lens, const double *ts, size_t n)
{
    if (k < 0 || k >= VG_STORE_USER_SHARDS) {
        tail_bad++;
        return;
    }
    int more;
    n = vg_store_since_past(&tail_at[k], ts, n, (size_t)(intptr_t)ud, &more);
    tail_full |= more;
    for (size_t i = 0; i < n; i++) {
        char id[16] = "";
        int u = -1;
        if (lens[i] < sizeof id)
            memcpy(id, users[i], lens[i]);
        if (sscanf(id, "u%d", &u) != 1 || u < 0 || u >= NU)
            tail_bad++;
        else
            tail_seen[u]++;
    }
}

static void tail_done(void *ud, int status) { (void)ud, tail_status = status; }
static int tail_answered(void *arg) { return (void)arg, tail_status != -2; }

/* Reads every shard of vaegan:users from the start in pages of page users
 * (the daemon's leader does so): each user seen once. */
static void tail_everyone(vg_store_t *s, size_t page)
{
    for (int k = 0; k < VG_STORE_USER_SHARDS; k++)
        tail_at[k] = (vg_store_since_t){-INFINITY, VG_SINCE_FROM};
    memset(tail_seen, 0, sizeof tail_seen);
    int rounds = 0;
    do {
        tail_full = 0;
        tail_status = -2;
        cr_assert_eq(vg_store_read_users_since(s, tail_at, page, tail_rows, tail_done, (void *)(intptr_t)page), 0);
        cr_assert(wait_for(tail_answered, NULL, 10000));
        cr_assert_eq(tail_status, 0);
        cr_assert_lt(++rounds, NU, "the tail goes round in circles");
    } while (tail_full);
    cr_assert_eq(tail_bad, 0);
    for (int u = 0; u < NU; u++)
        cr_assert_eq(tail_seen[u], u == 5 ? 0 : 1, "u%d seen %d times", u, tail_seen[u]);
}

/* ---- load ------------------------------------------------------------------------------- */

static int loaded_users, loaded_items, load_status = -2, load_bad_order;
static uint64_t counted;
static void on_user(void *ud, const char *user, size_t ulen, int removals, const char *const *items,
                    const size_t *lens, const double *ts, size_t n)
{
    (void)ud, (void)user, (void)ulen, (void)items, (void)lens;
    if (removals)
        return;
    loaded_users++;
    loaded_items += (int)n;
    for (size_t i = 1; i < n; i++)
        if (ts[i] < ts[i - 1])
            load_bad_order++;
}
static void on_count(void *ud, uint64_t users) { (void)ud, counted = users; }
static void on_loaded(void *ud, int status) { (void)ud, load_status = status; }
static int load_finished(void *arg) { return (void)arg, load_status != -2; }

/* ---- tests ------------------------------------------------------------------------------ */

Test(store_cluster, writes_spread_and_load_reads_them_back, .init = setup, .fini = teardown, .timeout = 180)
{
    vg_store_cfg_t cfg = base_cfg();
    vg_store_t *s = open_store(&cfg);
    cr_assert(wait_for(is_up, s, 20000), "store not up on the cluster");
    for (int b = 0; b < PER; b++)
        submit_batch(s, b, b);
    /* lists: RESTORE (Redis >= 7) or MULTI/DEL/ZADD/EXEC, each within its user's slot */
    const char *items[3] = {"a", "b", "c"};
    size_t lens[3] = {1, 1, 1};
    double scores[3] = {3, 2, 1};
    for (int u = 0; u < 50; u++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", u);
        cr_assert_eq(vg_store_put_rec(s, user, strlen(user), items, lens, scores, 3, 1.0, store_cb, NULL), 0);
    }
    const char *f[1] = {"step"}, *v[1] = {"7"};
    cr_assert_eq(vg_store_set_model(s, 0, f, v, 1, store_cb, NULL), 0);
    cr_assert_eq(vg_store_forget(s, "u5", 2, "mark5", 5, 2000.0, 0.0, store_cb, NULL), 0);
    cr_assert(wait_for(is_idle, s, 30000), "jobs left: %zu", vg_store_pending(s));
    cr_assert_eq(done_seq, PER);
    cr_assert_eq(done_bad, 0, "history callbacks out of order");
    cr_assert_eq(refused_events, 0, "refused: %s", refused_msg);
    cr_assert_eq(list_status, -1, "a list, the model or the erasure failed: %d", list_status);

    /* every key where its slot says, on every master */
    int per_node[3] = {0, 0, 0};
    for (int u = 0; u < NU; u++) {
        char key[32];
        snprintf(key, sizeof key, "hist:{u%d}", u);
        cr_assert_eq(zcard(key), u == 5 ? 0 : PER, "%s", key);
        per_node[vgt_rcluster_owner(&RC, vg_cluster_keyslot(key, strlen(key)))]++;
    }
    for (int i = 0; i < 3; i++)
        cr_assert_gt(per_node[i], NU / 10, "node %d holds only %d histories", i, per_node[i]);
    cr_assert_eq(zcard("rec:{u7}"), 3);
    cr_assert_eq(zcard("rec:{u5}"), 0, "the erasure left the list");
    long long users = 0;
    for (int k = 0; k < VG_STORE_USER_SHARDS; k++) {
        char key[32];
        snprintf(key, sizeof key, "vaegan:users:{%d}", k);
        users += zcard(key);
    }
    cr_assert_eq(users, NU - 1, "the shards of vaegan:users hold %lld users", users);
    tail_everyone(s, 7); /* every user has the same latest ts: every page ends among equal ts */
    /* a list of an older history is refused by the user's master itself */
    int old = 1;
    cr_assert_eq(vg_store_put_rec(s, "u7", 2, items, lens, scores, 1, 0.5, status_cb, &old), 0);
    cr_assert(wait_for(is_idle, s, 10000));
    cr_assert_eq(old, VG_ESTALE, "status %d", old);
    cr_assert_eq(zcard("rec:{u7}"), 3, "the older list replaced the newer one");
    redisReply *r = on_owner("vaegan:model", "HGET %s %s", "step");
    cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "7") == 0);
    freeReplyObject(r);
    close_store(s);

    /* a fresh store loads every history back from every shard */
    cr_assert_eq(uv_loop_init(&loop), 0);
    s = open_store(&cfg);
    vg_store_loader_t ld = {.on_user = on_user, .on_count = on_count, .on_done = on_loaded};
    cr_assert_eq(vg_store_load(s, &ld), 0);
    cr_assert(wait_for(load_finished, NULL, 30000), "load did not finish");
    cr_assert_eq(load_status, 0);
    cr_assert_eq(counted, (uint64_t)(NU - 1));
    cr_assert_eq(loaded_users, NU - 1);
    cr_assert_eq(loaded_items, (NU - 1) * PER);
    cr_assert_eq(load_bad_order, 0);
    close_store(s);
}

Test(store_cluster, ordered_script_in_one_slot_and_an_untagged_user_refused_alone, .init = setup,
     .fini = teardown, .timeout = 120)
{
    vg_store_cfg_t cfg = base_cfg();
    cfg.removals = 1;
    vg_store_t *s = open_store(&cfg);
    cr_assert(wait_for(is_up, s, 20000), "store not up on the cluster");
    /* "}x": hist:{}x} has an empty tag, so its two keys hash apart -> CROSSSLOT */
    vg_store_event_t ev[4] = {
        {.user = "alice", .user_len = 5, .item = "a", .item_len = 1, .ts = 10},
        {.user = "}x", .user_len = 2, .item = "a", .item_len = 1, .ts = 10},
        {.user = "alice", .user_len = 5, .item = "b", .item_len = 1, .ts = 11},
        {.user = "alice", .user_len = 5, .item = "a", .item_len = 1, .ts = 12, .removal = 1},
    };
    cr_assert_eq(vg_store_add_events(s, ev, 4, events_cb, (void *)(intptr_t)0), 0);
    cr_assert(wait_for(is_idle, s, 20000));
    cr_assert_eq(done_seq, 1);
    cr_assert_eq(refused_events, 1, "only the untagged user's event is refused");
    cr_assert(strstr(refused_msg, "CROSSSLOT"), "reason: %s", refused_msg);
    cr_assert(vg_store_is_up(s), "a data error must not stop the store");
    cr_assert_eq(zcard("hist:{alice}"), 1, "b stays, a was removed");
    cr_assert_eq(zcard("rm:{alice}"), 1);
    close_store(s);
}

/* ---- a server-state error waited out in order -------------------------------------------- */

static void config_all(const char *value)
{
    for (int i = 0; i < RC.n; i++) {
        redisReply *r = vgt_rcluster_cmd(&RC, i, "CONFIG SET maxmemory %s", value);
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "CONFIG SET maxmemory on node %d", i);
        freeReplyObject(r);
    }
}

static int retried(void *arg)
{
    vg_store_stats_t st;
    vg_store_stats(arg, &st);
    return st.retries > 0;
}

/* OOM on a history write: the layer waits it out holding the user's slot,
 * so an erasure submitted after it (DEL works under OOM) still runs after
 * it and leaves nothing behind; both callbacks fire, in order. */
Test(store_cluster, oom_is_waited_out_in_order, .init = setup, .fini = teardown, .timeout = 120)
{
    vg_store_cfg_t cfg = base_cfg();
    vg_store_t *s = open_store(&cfg);
    cr_assert(wait_for(is_up, s, 20000), "store not up on the cluster");
    config_all("1");
    vg_store_event_t ev = {.user = "u1", .user_len = 2, .item = "a", .item_len = 1, .ts = 5};
    cr_assert_eq(vg_store_add_events(s, &ev, 1, events_cb, (void *)(intptr_t)0), 0);
    int forgot = 1;
    cr_assert_eq(vg_store_forget(s, "u1", 2, "m1", 2, 6.0, -INFINITY, status_cb, &forgot), 0);
    cr_assert(wait_for(retried, s, 20000), "no OOM was seen");
    cr_assert_eq(done_seq, 0, "the write completed under OOM");
    config_all("0");
    cr_assert(wait_for(is_idle, s, 30000), "jobs left: %zu", vg_store_pending(s));
    cr_assert_eq(done_seq, 1);
    cr_assert_eq(refused_events, 0, "refused: %s", refused_msg);
    cr_assert_eq(forgot, 0);
    cr_assert_eq(zcard("hist:{u1}"), 0, "the history write ran after the erasure");
    close_store(s);
}

/* ---- a slot migrated while batches keep coming ------------------------------------------- */

#define MG_USERS 6    /* users whose keys live in the migrated slot */
#define MG_BATCHES 40

Test(store_cluster, slot_migrated_during_ingest_loses_nothing, .init = setup, .fini = teardown, .timeout = 240)
{
    vg_store_cfg_t cfg = base_cfg();
    vg_store_t *s = open_store(&cfg);
    cr_assert(wait_for(is_up, s, 20000), "store not up on the cluster");
    /* users sharing one slot: the tag is the user, so hist:{u<k>} lands where "u<k>" does */
    static char mg[MG_USERS][16];
    unsigned slot = vg_cluster_keyslot("u0", 2);
    snprintf(mg[0], sizeof mg[0], "u0");
    for (int k = 1, n = 1; n < MG_USERS; k++) {
        char u[16];
        snprintf(u, sizeof u, "u%d", k);
        if (vg_cluster_keyslot(u, strlen(u)) == slot)
            snprintf(mg[n++], sizeof mg[0], "%s", u);
    }
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    static char items[MG_BATCHES][16], others[50][16];
    for (int b = 0; b < MG_BATCHES; b++) {
        vg_store_event_t ev[MG_USERS + 50];
        size_t n = 0;
        snprintf(items[b], sizeof items[b], "i%d", b);
        for (int k = 0; k < MG_USERS; k++)
            ev[n++] = (vg_store_event_t){.user = mg[k], .user_len = strlen(mg[k]), .item = items[b],
                                         .item_len = strlen(items[b]), .ts = 100.0 + b};
        for (int k = 0; k < 50; k++) {
            snprintf(others[k], sizeof others[k], "o%d", k);
            ev[n++] = (vg_store_event_t){.user = others[k], .user_len = strlen(others[k]), .item = items[b],
                                         .item_len = strlen(items[b]), .ts = 100.0 + b};
        }
        cr_assert_eq(vg_store_add_events(s, ev, n, events_cb, (void *)(intptr_t)b), 0);
        /* the migration, step by step between batches: begin, one key at a time, end */
        if (b == 5)
            cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
        else if (b > 5 && b < 30)
            cr_assert_geq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 1), 0);
        else if (b == 30) {
            cr_assert_geq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 100), 0);
            cr_assert_eq(vgt_rcluster_migrate_end(&RC, slot, to), 0);
        }
        wait_for(is_idle, s, 0); /* one turn of the loop, so batches interleave with the steps */
    }
    cr_assert(wait_for(is_idle, s, 60000), "jobs left: %zu", vg_store_pending(s));
    cr_assert_eq(done_seq, MG_BATCHES);
    cr_assert_eq(done_bad, 0, "callbacks out of order");
    cr_assert_eq(refused_events, 0, "refused: %s", refused_msg);
    vg_store_stats_t st;
    vg_store_stats(s, &st);
    cr_assert_gt(st.redirects, 0, "no MOVED or ASK: the migration was not seen");
    cr_assert_eq(vgt_rcluster_owner(&RC, slot), to);
    for (int k = 0; k < MG_USERS; k++) {
        char key[128];
        snprintf(key, sizeof key, "hist:{%s}", mg[k]);
        cr_assert_eq(zcard(key), MG_BATCHES < 50 ? MG_BATCHES : 50, "%s lost events", key);
    }
    for (int k = 0; k < 50; k++) {
        char key[32];
        snprintf(key, sizeof key, "hist:{o%d}", k);
        cr_assert_eq(zcard(key), MG_BATCHES, "%s lost events", key);
    }
    close_store(s);
}

Test(store_cluster, refuses_socket_db_and_a_braced_prefix, .timeout = 30)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    vg_store_cfg_t c;
    memset(&c, 0, sizeof c);
    c.cluster = 1;
    char err[256];
    vg_store_t *s = NULL;
    c.db = 2;
    cr_assert_eq(vg_store_init(&s, &loop, &c, err, sizeof err), VG_EINVAL);
    cr_assert(strstr(err, "redis.db"), "%s", err);
    c.db = 0;
    c.prefix = "app{1}:";
    cr_assert_eq(vg_store_init(&s, &loop, &c, err, sizeof err), VG_EINVAL);
    cr_assert(strstr(err, "redis.prefix"), "%s", err);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- throughput (printed, not asserted) -------------------------------------------------- */

#define TP_EVENTS 100000
#define TP_BATCH 1000
#define TP_WINDOW 8
static char tp_users[10000][8], tp_items[5000][8];
static int tp_submitted, tp_done, tp_bad;
static uint64_t tp_rng = 88172645463325252ULL;
static vg_store_t *TP;

static uint64_t tp_next(void)
{
    tp_rng ^= tp_rng << 13, tp_rng ^= tp_rng >> 7, tp_rng ^= tp_rng << 17;
    return tp_rng;
}

static void tp_cb(void *ud, int status, const char *const *ev_err, size_t n);

static void tp_submit(void)
{
    vg_store_event_t ev[TP_BATCH];
    for (int i = 0; i < TP_BATCH; i++) {
        const char *u = tp_users[tp_next() % 10000], *it = tp_items[tp_next() % 5000];
        ev[i] = (vg_store_event_t){.user = u, .user_len = strlen(u), .item = it, .item_len = strlen(it),
                                   .ts = 1.7e9 + tp_submitted * TP_BATCH + i};
    }
    cr_assert_eq(vg_store_add_events(TP, ev, TP_BATCH, tp_cb, NULL), 0);
    tp_submitted++;
}

static void tp_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    (void)ud, (void)ev_err, (void)n;
    tp_bad += status != 0;
    tp_done++;
    if (tp_submitted < TP_EVENTS / TP_BATCH)
        tp_submit();
}

static int tp_all(void *arg) { return (void)arg, tp_done >= TP_EVENTS / TP_BATCH; }

/* As test_store's throughput_100k_events, on three masters (all on this machine's two cores). */
Test(store_cluster, throughput_100k_events, .init = setup, .fini = teardown, .timeout = 120)
{
    for (int i = 0; i < 10000; i++)
        snprintf(tp_users[i], sizeof tp_users[i], "u%d", i);
    for (int i = 0; i < 5000; i++)
        snprintf(tp_items[i], sizeof tp_items[i], "i%d", i);
    vg_store_cfg_t cfg = base_cfg();
    cfg.history_max = 500;
    TP = open_store(&cfg);
    cr_assert(wait_for(is_up, TP, 20000));
    uint64_t t0 = uv_hrtime();
    for (int w = 0; w < TP_WINDOW; w++)
        tp_submit();
    cr_assert(wait_for(tp_all, NULL, 100000), "%d of %d batches", tp_done, TP_EVENTS / TP_BATCH);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    cr_assert_eq(tp_bad, 0);
    vg_store_stats_t st;
    vg_store_stats(TP, &st);
    fprintf(stderr, "test_store_cluster: %d events in batches of %d (%d in flight) on 3 masters: %.3f s, "
            "%.0f events/s, %.0f commands/s\n",
            TP_EVENTS, TP_BATCH, TP_WINDOW, secs, TP_EVENTS / secs, (double)st.commands / secs);
    close_store(TP);
}
