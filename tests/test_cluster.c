/*
 * test_cluster.c — cache/cluster.c against a real 3-master Redis Cluster
 * started per test (tests/support/rcluster.h): the key slot against
 * CLUSTER KEYSLOT, writes spread over every node, a slot migrated by hand
 * during a stream of writes (ASK, MOVED, per-key order), MULTI/EXEC within
 * a slot and refused across slots, TRYAGAIN retried while a migration
 * splits a multi-key command's keys (at the source, and after an ASK at
 * the target), a redirect loop failing clearly, a killed node and its
 * restart, a node that stops answering, AUTH, redirects without host
 * (":port") or with "?", a dead ASK target, a slot without owner, cancel
 * on close; and, without a server, the map parser on odd shapes and the
 * unit checks.
 * Every wait is on an event (a callback, a counter) with a deadline as a
 * guard only.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "cache/cluster_wire.h"
#include "cache/resp.h"
#include "tests/support/loop.h"
#include "tests/support/rcluster.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

/* ---- harness ---------------------------------------------------------------------------- */

static uv_loop_t loop;
static vgt_rcluster_t RC;
static vg_cluster_t *C;

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (getenv("VG_TEST_VERBOSE"))
        fprintf(stderr, "[cluster %d] %s\n", level, msg);
}

static void setup(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&RC, 0, sizeof RC);
}

static void teardown(void)
{
    vgt_rcluster_stop(&RC);
    vg_tmpdir_remove();
}

static void start_cluster(void) { cr_assert_eq(vgt_rcluster_start(&RC, vg_tmpdir, 3), 0, "no cluster"); }

static char seed[32];

static vg_cluster_cfg_t base_cfg(void)
{
    static const char *seeds[1];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", RC.port[0]);
    seeds[0] = seed;
    vg_cluster_cfg_t c;
    memset(&c, 0, sizeof c);
    c.seeds = seeds;
    c.nseeds = 1;
    c.timeout_ms = 2000;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 400;
    c.log = test_log;
    return c;
}

static vg_cluster_t *open_cluster(const vg_cluster_cfg_t *cfg)
{
    vg_cluster_t *c = NULL;
    char err[256];
    cr_assert_eq(vg_cluster_init(&c, &loop, cfg, err, sizeof err), 0, "vg_cluster_init: %s", err);
    cr_assert_str_eq(err, "");
    return c;
}

static void close_cluster(vg_cluster_t *c)
{
    vg_cluster_close(c);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}

/* Runs the loop until pred(arg) holds or ms pass, calling step (if not
 * NULL) before each round; returns pred(arg). */
static int run_until(int (*pred)(void *), void *arg, int ms, void (*step)(void))
{
    return vgt_loop_until(&loop, pred, arg, ms, step);
}

static int wait_for(int (*pred)(void *), void *arg, int ms) { return run_until(pred, arg, ms, NULL); }

static int idle(void *arg) { return vg_cluster_pending(arg) == 0; }

static vg_cluster_stats_t stats(void)
{
    vg_cluster_stats_t st;
    vg_cluster_stats(C, &st);
    return st;
}

/* One unit's outcome. */
typedef struct res {
    int calls, status;
    int type;            /* reply type */
    long long integer;
    char str[256];       /* string, status or error text, or err */
} res_t;

static void res_cb(void *ud, int status, const redisReply *r, const char *err)
{
    res_t *x = ud;
    x->calls++;
    x->status = status;
    x->type = r ? r->type : -1;
    x->integer = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    snprintf(x->str, sizeof x->str, "%s", r && r->str ? r->str : err ? err : "");
}

static int res_done(void *arg) { return ((res_t *)arg)->calls > 0; }

/* Submits a command of NUL-terminated words whose key is argv[1]. */
static void submit(res_t *x, int argc, const char *const *argv)
{
    cr_assert_eq(vg_cluster_command(C, argv[1], strlen(argv[1]), argc, argv, NULL, res_cb, x), 0);
}

/* The node index owning each slot, from CLUSTER SLOTS. */
static void owners(int *own)
{
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        own[s] = -1;
    redisContext *c = vgt_rcluster_connect(&RC, 0);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    for (size_t k = 0; k < r->elements; k++)
        for (int i = 0; i < RC.n; i++)
            if (r->element[k]->element[2]->element[1]->integer == RC.port[i])
                for (long long s = r->element[k]->element[0]->integer; s <= r->element[k]->element[1]->integer; s++)
                    own[s] = i;
    freeReplyObject(r);
    redisFree(c);
}

/* ---- the key slot -------------------------------------------------------------------------- */

Test(cluster, keyslot_matches_cluster_keyslot, .init = setup, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(vg_cluster_crc16("123456789", 9), 0x31C3);
    cr_assert_eq(vg_cluster_crc16("", 0), 0);
    vgt_redis_t R;
    memset(&R, 0, sizeof R);
    cr_assert_eq(vgt_redis_start_cluster_node(&R, vg_tmpdir, 0, 1), 0);
    redisContext *c = vgt_redis_connect(&R);
    cr_assert_not_null(c);
    static const char *fixed[] = {"",        "{}",      "{a",     "a{}{b}",  "{a}b",   "a{b}c{d}", "}{a}",
                                  "{{a}}",   "{}{a}",   "a{",     "a}",      "}",      "{",        "foo",
                                  "{user1000}.following", "{user1000}.followers", "hist:u1", "123456789",
                                  "a{b", "{b}"};
    unsigned char key[40];
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 3000; k++) {
        size_t len;
        if (k < (int)(sizeof fixed / sizeof fixed[0])) {
            len = strlen(fixed[k]);
            memcpy(key, fixed[k], len);
        } else {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            len = rng % 24;
            for (size_t i = 0; i < len; i++) { /* braces often, any byte sometimes */
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                unsigned v = (unsigned)(rng >> 32);
                key[i] = v % 4 == 0 ? '{' : v % 4 == 1 ? '}' : v % 7 == 2 ? (unsigned char)(v >> 8) : "abc"[v % 3];
            }
        }
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %b", key, len);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        cr_assert_eq(vg_cluster_keyslot((const char *)key, len), (unsigned)r->integer, "key %d (%.*s)", k,
                     (int)len, key);
        freeReplyObject(r);
    }
    redisFree(c);
    vgt_redis_stop(&R);
}

/* ---- writes over every node ---------------------------------------------------------------- */

#define SP_KEYS 3000
static res_t sp_res[SP_KEYS];

static int cl_calls;
static void close_cb(void *ud, int status, const redisReply *r, const char *err)
{
    (void)status, (void)r, (void)err;
    cl_calls++;
    vg_cluster_close(ud);
}

Test(cluster, writes_spread_over_every_node, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    C = open_cluster(&cfg);
    /* submitted before any map is known: they wait for it */
    for (int k = 0; k < SP_KEYS; k++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "k%d", k);
        snprintf(val, sizeof val, "v%d", k);
        const char *argv[3] = {"SET", key, val};
        submit(&sp_res[k], 3, argv);
    }
    cr_assert_eq(sp_res[0].calls, 0, "callback from inside a submit");
    cr_assert(wait_for(idle, C, 20000), "%zu pending: %s", vg_cluster_pending(C), vg_cluster_errstr(C));
    for (int k = 0; k < SP_KEYS; k++) {
        cr_assert_eq(sp_res[k].calls, 1);
        cr_assert_eq(sp_res[k].status, 0);
        cr_assert_str_eq(sp_res[k].str, "OK", "k%d: %s", k, sp_res[k].str);
    }
    vg_cluster_stats_t st = stats();
    cr_assert_eq(st.done, SP_KEYS);
    cr_assert_eq(st.moved + st.ask + st.failed, 0);
    cr_assert_eq(st.nodes, 3);
    cr_assert_eq(st.slots_mapped, VG_CLUSTER_SLOTS);
    cr_assert(st.refreshes >= 1);
    size_t slots = 0;
    for (size_t i = 0; i < st.nodes; i++) {
        vg_cluster_node_stats_t ns;
        cr_assert_eq(vg_cluster_node_stats(C, i, &ns), 0);
        cr_assert(ns.up && ns.inflight == 0 && ns.waiting == 0, "%s", ns.addr);
        slots += ns.slots;
    }
    cr_assert_eq(slots, VG_CLUSTER_SLOTS);
    cr_assert_eq(vg_cluster_node_stats(C, st.nodes, &(vg_cluster_node_stats_t){0}), VG_ERANGE);

    /* every key is on the node that owns its slot, and every node has some */
    static int own[VG_CLUSTER_SLOTS];
    owners(own);
    redisContext *nc[3];
    for (int i = 0; i < 3; i++) {
        nc[i] = vgt_rcluster_connect(&RC, i);
        cr_assert_not_null(nc[i]);
        redisReply *r = redisCommand(nc[i], "DBSIZE");
        cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer > SP_KEYS / 6, "node %d: %lld keys", i,
                  r ? r->integer : -1);
        freeReplyObject(r);
    }
    for (int k = 0; k < SP_KEYS; k++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "k%d", k);
        snprintf(val, sizeof val, "v%d", k);
        int i = own[vg_cluster_keyslot(key, strlen(key))];
        redisReply *r = redisCommand(nc[i], "GET %s", key);
        cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, val) == 0, "%s on node %d", key, i);
        freeReplyObject(r);
    }
    for (int i = 0; i < 3; i++)
        redisFree(nc[i]);
    close_cluster(C);

    /* closed from inside a callback with units in flight on every node: no callback follows */
    cr_assert_eq(uv_loop_init(&loop), 0);
    C = open_cluster(&cfg);
    cl_calls = 0;
    for (int k = 0; k < 300; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", k);
        const char *argv[2] = {"GET", key};
        cr_assert_eq(vg_cluster_command(C, key, strlen(key), 2, argv, NULL, close_cb, C), 0);
    }
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(cl_calls, 1, "%d callbacks after a close from a callback", cl_calls);
}

/* ---- a slot migrated during a stream of writes --------------------------------------------- */

#define MG_KEYS 8     /* in the migrated slot ({mig}:<k>) */
#define MG_OTHER 8    /* elsewhere (o:<k>) */
#define MG_PER_KEY 300
#define MG_WINDOW 160 /* units pending at most */
static int mg_next[MG_KEYS + MG_OTHER]; /* the next sequence number per key */
static int mg_got[MG_KEYS + MG_OTHER];  /* replies so far per key */
static int mg_bad, mg_done;
static char mg_why[256];

static void mg_key(int k, char *out, size_t n)
{
    if (k < MG_KEYS)
        snprintf(out, n, "{mig}:%d", k);
    else
        snprintf(out, n, "o:%d", k);
}

/* RPUSH's reply is the list's length: in order and once each, it is the sequence number. */
static void mg_cb(void *ud, int status, const redisReply *r, const char *err)
{
    intptr_t tag = (intptr_t)ud;
    int k = (int)(tag / 100000), seq = (int)(tag % 100000);
    mg_done++;
    mg_got[k]++;
    if (status || !r || r->type != REDIS_REPLY_INTEGER || r->integer != seq) {
        if (!mg_bad++)
            snprintf(mg_why, sizeof mg_why, "key %d seq %d: status %d, %s %lld", k, seq, status,
                     err ? err : r && r->str ? r->str : "", r ? r->integer : -1);
    }
}

/* Keeps up to MG_WINDOW units pending, round-robin over the keys. */
static void mg_fill(void)
{
    for (int k = 0; vg_cluster_pending(C) < MG_WINDOW; k = (k + 1) % (MG_KEYS + MG_OTHER)) {
        int all = 1;
        for (int j = 0; j < MG_KEYS + MG_OTHER; j++)
            all &= mg_next[j] > MG_PER_KEY;
        if (all)
            return;
        if (mg_next[k] > MG_PER_KEY)
            continue;
        char key[32], val[16];
        mg_key(k, key, sizeof key);
        snprintf(val, sizeof val, "%d", mg_next[k]);
        const char *argv[3] = {"RPUSH", key, val};
        intptr_t tag = (intptr_t)k * 100000 + mg_next[k]++;
        cr_assert_eq(vg_cluster_command(C, key, strlen(key), 3, argv, NULL, mg_cb, (void *)tag), 0);
    }
}

/* Runs the stream (refilling the window) until pred holds. */
static int mg_run_until(int (*pred)(void *), int ms) { return run_until(pred, NULL, ms, mg_fill); }

static int mg_quarter(void *arg) { return (void)arg, mg_done >= (MG_KEYS + MG_OTHER) * MG_PER_KEY / 4; }
static int mg_asked(void *arg) { return (void)arg, stats().ask > 0; }
static int mg_moved(void *arg) { return (void)arg, stats().moved > 0; }
static int mg_all(void *arg) { return (void)arg, mg_done == (MG_KEYS + MG_OTHER) * MG_PER_KEY; }

Test(cluster, slot_migrated_mid_stream, .init = setup, .fini = teardown, .timeout = 180)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    C = open_cluster(&cfg);
    for (int k = 0; k < MG_KEYS + MG_OTHER; k++)
        mg_next[k] = 1;
    unsigned slot = vg_cluster_keyslot("{mig}", 5);
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    cr_assert(from >= 0);

    cr_assert(mg_run_until(mg_quarter, 30000), "stream stalled: %s", vg_cluster_errstr(C));
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
    int moved;
    do { /* a key at a time, the stream running in between */
        moved = vgt_rcluster_migrate_keys(&RC, slot, from, to, 1);
        cr_assert(moved >= 0);
        for (int i = 0; i < 20; i++) {
            mg_fill();
            uv_run(&loop, UV_RUN_NOWAIT);
        }
    } while (moved > 0);
    cr_assert(mg_run_until(mg_asked, 30000), "no ASK while the slot migrated");
    cr_assert_eq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 100), 0, "keys left behind on the source");
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, slot, to), 0);
    cr_assert(mg_run_until(mg_moved, 30000), "no MOVED after the slot moved");
    cr_assert(mg_run_until(mg_all, 60000), "%d of %d done: %s", mg_done, (MG_KEYS + MG_OTHER) * MG_PER_KEY,
              vg_cluster_errstr(C));
    cr_assert_eq(mg_bad, 0, "%d out of order or failed; first: %s", mg_bad, mg_why);

    vg_cluster_stats_t st = stats();
    cr_assert(st.ask > 0 && st.moved > 0);
    cr_assert_eq(st.failed, 0);
    fprintf(stderr, "test_cluster: migration: %llu ASK, %llu MOVED, %llu retries, %llu refreshes\n",
            (unsigned long long)st.ask, (unsigned long long)st.moved, (unsigned long long)st.retries,
            (unsigned long long)st.refreshes);

    /* every list is 1..MG_PER_KEY in order, the migrated ones on their new node */
    static int own[VG_CLUSTER_SLOTS];
    owners(own);
    cr_assert_eq(own[slot], to);
    for (int k = 0; k < MG_KEYS + MG_OTHER; k++) {
        char key[32];
        mg_key(k, key, sizeof key);
        redisContext *c = vgt_rcluster_connect(&RC, own[vg_cluster_keyslot(key, strlen(key))]);
        redisReply *r = redisCommand(c, "LRANGE %s 0 -1", key);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == MG_PER_KEY, "%s: %zu elements", key,
                  r ? r->elements : 0);
        for (size_t i = 0; i < r->elements; i++)
            cr_assert_eq(atoi(r->element[i]->str), (int)i + 1, "%s[%zu]", key, i);
        freeReplyObject(r);
        redisFree(c);
    }
    close_cluster(C);
}

/* ---- transactions, formatted commands, server errors --------------------------------------- */

Test(cluster, multi_exec_within_a_slot_and_refused_across, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    C = open_cluster(&cfg);
    const char *set[] = {"SET", "{u1}a", "1"}, *incr[] = {"INCRBY", "{u1}b", "5"}, *get[] = {"GET", "{u1}a"};
    vg_cluster_cmd_t tx[] = {{"{u1}a", 5, 3, set, NULL}, {"{u1}b", 5, 3, incr, NULL}, {"{u1}a", 5, 2, get, NULL}};
    res_t r1 = {0};
    cr_assert_eq(vg_cluster_multi(C, tx, 3, res_cb, &r1), 0);

    /* across slots: refused, naming both keys, nothing sent */
    const char *sa[] = {"SET", "a", "1"}, *sb[] = {"SET", "b", "1"};
    vg_cluster_cmd_t cross[] = {{"a", 1, 3, sa, NULL}, {"b", 1, 3, sb, NULL}};
    cr_assert_eq(vg_cluster_multi(C, cross, 2, res_cb, &r1), VG_EINVAL);
    cr_assert(strstr(vg_cluster_errstr(C), "'a'") && strstr(vg_cluster_errstr(C), "'b'"), "%s",
              vg_cluster_errstr(C));
    cr_assert_eq(vg_cluster_multi(C, cross, 0, res_cb, &r1), VG_EINVAL);
    cr_assert_eq(vg_cluster_pending(C), 1);

    /* a preformatted MULTI ... EXEC and a single command; malformed RESP refused */
    static const char fmt_tx[] = "*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$5\r\n{u2}x\r\n$2\r\nhi\r\n*1\r\n$4\r\nEXEC\r\n";
    static const char fmt_get[] = "*2\r\n$3\r\nGET\r\n$5\r\n{u2}x\r\n";
    res_t r2 = {0}, r3 = {0}, r4 = {0};
    cr_assert_eq(vg_cluster_formatted(C, "{u2}x", 5, fmt_tx, sizeof fmt_tx - 1, res_cb, &r2), 0);
    cr_assert_eq(vg_cluster_formatted(C, "{u2}x", 5, fmt_get, sizeof fmt_get - 1, res_cb, &r3), 0);
    cr_assert_eq(vg_cluster_formatted(C, "k", 1, "*2\r\n$3\r\nGET\r\n$9\r\nk\r\n", 21, res_cb, &r4), VG_EINVAL);
    static const char two[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    cr_assert_eq(vg_cluster_formatted(C, "k", 1, two, sizeof two - 1, res_cb, &r4), VG_EINVAL);

    /* the command's own error reaches the caller as a reply: not retried */
    const char *mset[] = {"MSET", "a", "1", "b", "2"};
    res_t r5 = {0};
    cr_assert_eq(vg_cluster_command(C, "a", 1, 5, mset, NULL, res_cb, &r5), 0);

    cr_assert(wait_for(idle, C, 20000), "%s", vg_cluster_errstr(C));
    cr_assert_eq(r1.calls, 1);
    cr_assert_eq(r1.status, 0);
    cr_assert_eq(r1.type, REDIS_REPLY_ARRAY, "EXEC: %d %s", r1.type, r1.str);
    cr_assert_eq(r2.status, 0);
    cr_assert_eq(r2.type, REDIS_REPLY_ARRAY);
    cr_assert_str_eq(r3.str, "hi", "FIFO of the slot: the GET after the transaction");
    cr_assert_eq(r4.calls, 0);
    cr_assert_eq(r5.status, 0);
    cr_assert_eq(r5.type, REDIS_REPLY_ERROR);
    cr_assert(strncmp(r5.str, "CROSSSLOT", 9) == 0, "%s", r5.str);

    static int own[VG_CLUSTER_SLOTS];
    owners(own);
    redisContext *c = vgt_rcluster_connect(&RC, own[vg_cluster_keyslot("{u1}", 4)]);
    redisReply *r = redisCommand(c, "MGET {u1}a {u1}b");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    cr_assert_str_eq(r->element[0]->str, "1");
    cr_assert_str_eq(r->element[1]->str, "5");
    freeReplyObject(r);
    redisFree(c);
    close_cluster(C);
}

/* ---- TRYAGAIN: a multi-key command while its keys are split by a migration ------------------ */

static void node_ok(int i, const char *fmt, const char *arg)
{
    redisReply *r = vgt_rcluster_cmd(&RC, i, fmt, arg);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "node %d: %s: %s", i, fmt, r && r->str ? r->str : "?");
    freeReplyObject(r);
}

/* SET key value through C, waited for. */
static void seed_key(const char *key, const char *value)
{
    res_t x = {0};
    const char *argv[] = {"SET", key, value};
    submit(&x, 3, argv);
    cr_assert(wait_for(res_done, &x, 20000), "%s", vg_cluster_errstr(C));
    cr_assert(x.status == 0 && strcmp(x.str, "OK") == 0, "SET %s: %s", key, x.str);
}

static uint64_t ask_at;
static int asked_more(void *arg) { return (void)arg, stats().ask >= ask_at + 2; }

static void endpoint_type(const char *type)
{
    for (int i = 0; i < RC.n; i++)
        if (RC.pid[i])
            node_ok(i, "CONFIG SET cluster-preferred-endpoint-type %s", type);
}

/* GET key through C (waited for): its value, which must be want (NULL: a nil). */
static void get_is(const char *key, const char *want)
{
    res_t x = {0};
    const char *argv[] = {"GET", key};
    submit(&x, 2, argv);
    cr_assert(wait_for(res_done, &x, 20000), "GET %s stuck: %s", key, vg_cluster_errstr(C));
    cr_assert_eq(x.status, 0, "%s", x.str);
    if (want)
        cr_assert_str_eq(x.str, want);
    else
        cr_assert_eq(x.type, REDIS_REPLY_NIL);
}

/* MGET of k1 and k2 on node i is v1, v2. */
static void mget_is(int i, const char *k1, const char *k2, const char *v1, const char *v2)
{
    redisReply *r = vgt_rcluster_cmd(&RC, i, "MGET %s %s", k1, k2);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->str && r->element[1]->str);
    cr_assert(strcmp(r->element[0]->str, v1) == 0 && strcmp(r->element[1]->str, v2) == 0, "%s %s", v1, v2);
    freeReplyObject(r);
}

static uint64_t retries_at;
static int retried_8(void *arg) { return (void)arg, stats().retries >= retries_at + 8; }

static int retried_twice(void *arg) { return (void)arg, stats().retries >= 2; }

/* MIGRATE of one key from node `from` to node `to`. */
static void migrate_one(int from, int to, const char *key)
{
    redisReply *r = vgt_rcluster_cmd(&RC, from, "MIGRATE 127.0.0.1 %d %s 0 5000", RC.port[to], key);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "MIGRATE %s: %s", key, r ? r->str : "no reply");
    freeReplyObject(r);
}

Test(cluster, tryagain_is_retried_until_the_keys_meet, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.max_redirects = 3; /* fewer than the retries of the second part */
    cfg.retry_min_ms = 5;
    C = open_cluster(&cfg);
    seed_key("{t}a", "0");
    seed_key("{t}b", "0");
    unsigned slot = vg_cluster_keyslot("{t}", 3);
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
    migrate_one(from, to, "{t}a"); /* {t}b stays behind: MSET of both gets TRYAGAIN */
    res_t m = {0};
    const char *mset[] = {"MSET", "{t}a", "1", "{t}b", "2"};
    submit(&m, 5, mset);
    cr_assert(wait_for(retried_twice, NULL, 20000), "no retries: %s", m.str);
    cr_assert_eq(m.calls, 0);
    migrate_one(from, to, "{t}b"); /* together again, on the target: ASK, then done */
    cr_assert(wait_for(res_done, &m, 20000));
    cr_assert_eq(m.status, 0);
    cr_assert_str_eq(m.str, "OK");
    cr_assert(stats().ask >= 1);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, slot, to), 0);
    mget_is(to, "{t}a", "{t}b", "1", "2");

    /* C-1: ASK at the source, TRYAGAIN at the target ({u}b exists nowhere): the retries go back to the
     * target with ASKING, without limit and without counting as redirects (max_redirects is 3) */
    seed_key("{u}a", "0");
    slot = vg_cluster_keyslot("{u}", 3);
    from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
    migrate_one(from, to, "{u}a");
    res_t u = {0};
    const char *mset2[] = {"MSET", "{u}a", "1", "{u}b", "2"};
    uint64_t ask0 = stats().ask;
    retries_at = stats().retries;
    submit(&u, 5, mset2);
    cr_assert(wait_for(retried_8, NULL, 30000), "%llu retries: %s", (unsigned long long)(stats().retries - retries_at),
              vg_cluster_errstr(C));
    cr_assert_eq(u.calls, 0, "gave up: %s", u.str);
    cr_assert_eq(stats().ask, ask0 + 1, "the retries went back to the source");
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, slot, to), 0);
    cr_assert(wait_for(res_done, &u, 20000));
    cr_assert(u.status == 0 && strcmp(u.str, "OK") == 0, "%d %s", u.status, u.str);
    cr_assert_eq(stats().failed, 0);
    mget_is(to, "{u}a", "{u}b", "1", "2");
    close_cluster(C);
}

/* ---- a redirect loop fails with a clear error ---------------------------------------------- */

Test(cluster, redirect_loop_fails_clearly, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.max_redirects = 5;
    C = open_cluster(&cfg);
    unsigned slot = vg_cluster_keyslot("loop", 4);
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    /* MIGRATING on the owner without IMPORTING on the target: ASK there, MOVED back, ... */
    redisContext *c = vgt_rcluster_connect(&RC, from);
    redisReply *r = redisCommand(c, "CLUSTER SETSLOT %u MIGRATING %s", slot, RC.id[to]);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    res_t x = {0};
    const char *argv[] = {"SET", "loop", "1"};
    submit(&x, 3, argv);
    cr_assert(wait_for(res_done, &x, 20000));
    cr_assert_eq(x.status, VG_EREDIS);
    cr_assert(strstr(x.str, "SET loop") && strstr(x.str, "'loop'") && strstr(x.str, "redirects") &&
                  (strstr(x.str, "MOVED") || strstr(x.str, "ASK")),
              "%s", x.str);
    vg_cluster_stats_t st = stats();
    cr_assert_eq(st.failed, 1);
    cr_assert(st.ask >= 2 && st.moved >= 2 && st.ask + st.moved == 6, "ask %llu moved %llu",
              (unsigned long long)st.ask, (unsigned long long)st.moved);

    /* the slot made stable again: the same command goes through */
    r = redisCommand(c, "CLUSTER SETSLOT %u STABLE", slot);
    freeReplyObject(r);
    redisFree(c);
    res_t y = {0};
    submit(&y, 3, argv);
    cr_assert(wait_for(res_done, &y, 20000));
    cr_assert_eq(y.status, 0, "%s", y.str);
    close_cluster(C);
}

/* ---- a node killed, then restarted --------------------------------------------------------- */

#define KN_KEYS 600
static res_t kn_res[KN_KEYS];
static int kn_on_dead[KN_KEYS];
static unsigned long long kn_failures_at;

static int kn_others_done(void *arg)
{
    (void)arg;
    for (int k = 0; k < KN_KEYS; k++)
        if (!kn_on_dead[k] && kn_res[k].calls == 0)
            return 0;
    return 1;
}

/* Two more failed attempts to reach the dead node than when the others were done. */
static int kn_tried_twice(void *arg)
{
    (void)arg;
    return stats().connect_failures >= kn_failures_at + 2;
}

Test(cluster, node_killed_then_restarted, .init = setup, .fini = teardown, .timeout = 180)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.timeout_ms = 1000;
    C = open_cluster(&cfg);
    res_t warm = {0};
    const char *w[] = {"SET", "warm", "1"};
    submit(&warm, 3, w);
    cr_assert(wait_for(res_done, &warm, 20000));
    static int own[VG_CLUSTER_SLOTS];
    owners(own);
    int dead = 1;
    vgt_rcluster_kill(&RC, dead);

    static char keys[KN_KEYS][16];
    int n_dead = 0;
    for (int k = 0; k < KN_KEYS; k++) {
        snprintf(keys[k], sizeof keys[k], "kn%d", k);
        kn_on_dead[k] = own[vg_cluster_keyslot(keys[k], strlen(keys[k]))] == dead;
        n_dead += kn_on_dead[k];
        const char *argv[3] = {"SET", keys[k], keys[k]};
        submit(&kn_res[k], 3, argv);
    }
    cr_assert(n_dead > 0 && n_dead < KN_KEYS);
    cr_assert(wait_for(kn_others_done, NULL, 30000), "the live nodes' slots stalled: %s", vg_cluster_errstr(C));
    kn_failures_at = stats().connect_failures;
    cr_assert(wait_for(kn_tried_twice, NULL, 30000), "no reconnect attempts");
    for (int k = 0; k < KN_KEYS; k++) {
        if (kn_on_dead[k])
            cr_assert_eq(kn_res[k].calls, 0, "%s completed on a dead node: %s", keys[k], kn_res[k].str);
        else
            cr_assert(kn_res[k].status == 0 && strcmp(kn_res[k].str, "OK") == 0, "%s: %s", keys[k], kn_res[k].str);
    }
    cr_assert_eq(vg_cluster_pending(C), (size_t)n_dead);
    vg_cluster_stats_t st = stats();
    cr_assert(st.lost >= 1);
    size_t waiting = 0;
    for (size_t i = 0; i < st.nodes; i++) {
        vg_cluster_node_stats_t ns;
        vg_cluster_node_stats(C, i, &ns);
        if (!ns.up)
            waiting += ns.waiting;
    }
    cr_assert_eq(waiting, (size_t)n_dead);

    /* back: its commands go through (its data is gone: no persistence here) */
    cr_assert_eq(vgt_rcluster_restart(&RC, dead), 0);
    cr_assert(wait_for(idle, C, 60000), "%zu still pending: %s", vg_cluster_pending(C), vg_cluster_errstr(C));
    redisContext *c = vgt_rcluster_connect(&RC, dead);
    cr_assert_not_null(c);
    for (int k = 0; k < KN_KEYS; k++) {
        cr_assert_eq(kn_res[k].calls, 1);
        cr_assert_eq(kn_res[k].status, 0, "%s: %s", keys[k], kn_res[k].str);
        if (!kn_on_dead[k])
            continue;
        redisReply *r = redisCommand(c, "GET %s", keys[k]);
        cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, keys[k]) == 0, "%s not on the restarted node",
                  keys[k]);
        freeReplyObject(r);
    }
    redisFree(c);
    st = stats();
    cr_assert(st.failed == 0 && st.done == KN_KEYS + 1);
    close_cluster(C);
}

/* ---- a node that stops answering ----------------------------------------------------------- */

static int timed_out(void *arg) { return (void)arg, stats().timeouts > 0; }

Test(cluster, silent_node_times_out_and_resends, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.timeout_ms = 300;
    C = open_cluster(&cfg);
    res_t warm = {0};
    const char *w[] = {"SET", "warm", "1"};
    submit(&warm, 3, w);
    cr_assert(wait_for(res_done, &warm, 20000));
    int node = vgt_rcluster_owner(&RC, vg_cluster_keyslot("quiet", 5));
    kill(RC.pid[node], SIGSTOP);
    res_t x = {0};
    const char *argv[] = {"SET", "quiet", "1"};
    submit(&x, 3, argv);
    int ok = wait_for(timed_out, NULL, 20000);
    int calls = x.calls;
    kill(RC.pid[node], SIGCONT);
    cr_assert(ok, "no timeout");
    cr_assert_eq(calls, 0);
    cr_assert(wait_for(res_done, &x, 30000), "%s", vg_cluster_errstr(C));
    cr_assert_eq(x.status, 0);
    cr_assert_str_eq(x.str, "OK");
    vg_cluster_stats_t st = stats();
    cr_assert(st.resent >= 1 && st.lost >= 1);
    close_cluster(C);
}

/* ---- AUTH ---------------------------------------------------------------------------------- */

static int failed_twice(void *arg) { return (void)arg, stats().connect_failures >= 2; }

Test(cluster, password, .init = setup, .fini = teardown, .timeout = 120)
{
    RC.password = "s3cret";
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.password = "s3cret";
    C = open_cluster(&cfg);
    res_t x = {0}, y = {0};
    const char *set[] = {"SET", "pw", "1"}, *get[] = {"GET", "pw"};
    submit(&x, 3, set);
    submit(&y, 2, get);
    cr_assert(wait_for(res_done, &y, 20000), "%s", vg_cluster_errstr(C));
    cr_assert_str_eq(x.str, "OK");
    cr_assert_str_eq(y.str, "1");
    close_cluster(C);

    /* a wrong one: never up, the reason kept */
    cr_assert_eq(uv_loop_init(&loop), 0);
    cfg.password = "nope";
    C = open_cluster(&cfg);
    res_t z = {0};
    submit(&z, 3, set);
    cr_assert(wait_for(failed_twice, NULL, 20000));
    cr_assert_eq(z.calls, 0);
    cr_assert(strstr(vg_cluster_errstr(C), "AUTH"), "%s", vg_cluster_errstr(C));
    close_cluster(C);
}

/* ---- the map parser and other wire helpers on odd shapes (no server) ----------------------- */

/* Replies built by hand, freed by freeReplyObject. */
static redisReply *mk(int type, long long v, const char *str)
{
    redisReply *r = calloc(1, sizeof *r);
    *r = (redisReply){.type = type, .integer = v, .str = str ? strdup(str) : NULL, .len = str ? strlen(str) : 0};
    return r;
}
static redisReply *I(long long v) { return mk(REDIS_REPLY_INTEGER, v, NULL); }
static redisReply *S(const char *s) { return mk(REDIS_REPLY_STRING, 0, s); }
static redisReply *A(size_t n, ...) /* an array of n replies */
{
    redisReply *r = mk(REDIS_REPLY_ARRAY, 0, NULL);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

typedef struct ranges {
    int n;
    long long a[8], b[8], port[8];
    char host[8][32];
} ranges_t;

static int range_cb(void *ud, long long a, long long b, const char *host, size_t hostlen, long long port)
{
    ranges_t *g = ud;
    cr_assert(g->n < 8);
    g->a[g->n] = a, g->b[g->n] = b, g->port[g->n] = port;
    snprintf(g->host[g->n++], sizeof g->host[0], "%.*s", (int)hostlen, host);
    return 0;
}

/* A CLUSTER SHARDS shard: slots [a, b] (none when a < 0) and one node. */
static redisReply *shard(long long a, long long b, redisReply *node)
{
    return A(4, S("slots"), a < 0 ? A(0) : A(2, I(a), I(b)), S("nodes"), A(1, node));
}

Test(cluster, map_parse_of_odd_shapes)
{
    /* CLUSTER SLOTS: a NULL ip (unknown endpoint) is "", "?" passes, a node without port is skipped */
    redisReply *slots = A(5, A(3, I(0), I(99), A(3, mk(REDIS_REPLY_NIL, 0, NULL), I(7001), S("id1"))),
                          A(3, I(100), I(199), A(2, S("?"), I(7002))), A(3, I(200), I(299), A(2, S("10.0.0.1"), I(7003))),
                          A(3, I(300), I(399), A(2, S("x"), S("no"))), A(3, I(400), I(499), A(0)));
    ranges_t g = {0};
    cr_assert_eq(vg_cluster_map_parse_(slots, 0, range_cb, &g), 0);
    cr_assert_eq(g.n, 3);
    cr_assert(g.a[0] == 0 && g.b[0] == 99 && g.port[0] == 7001 && strcmp(g.host[0], "") == 0);
    cr_assert(g.a[1] == 100 && strcmp(g.host[1], "?") == 0 && g.port[1] == 7002);
    cr_assert(g.a[2] == 200 && strcmp(g.host[2], "10.0.0.1") == 0);
    freeReplyObject(slots);
    redisReply *bad = A(1, I(3));
    cr_assert_eq(vg_cluster_map_parse_(bad, 0, range_cb, &g), -1, "an entry that is not an array");
    cr_assert_eq(vg_cluster_map_parse_(bad->element[0], 1, range_cb, &g), -1, "not an array at all");
    freeReplyObject(bad);

    /* CLUSTER SHARDS: a shard without master, or whose master has only a tls-port, is skipped */
    redisReply *shards = A(4, shard(0, 99, A(6, S("role"), S("master"), S("ip"), S("1.1.1.1"), S("port"), I(7001))),
                           shard(100, 199, A(6, S("role"), S("replica"), S("ip"), S("2.2.2.2"), S("port"), I(7002))),
                           shard(200, 299, A(6, S("role"), S("master"), S("ip"), S("3.3.3.3"), S("tls-port"), I(7443))),
                           shard(-1, 0, A(2, S("role"), S("master"))));
    memset(&g, 0, sizeof g);
    cr_assert_eq(vg_cluster_map_parse_(shards, 1, range_cb, &g), 0);
    cr_assert_eq(g.n, 1);
    cr_assert(g.a[0] == 0 && g.b[0] == 99 && strcmp(g.host[0], "1.1.1.1") == 0 && g.port[0] == 7001);
    freeReplyObject(shards);
    redisReply *odd = A(1, A(2, S("slots"), A(1, I(5))));
    cr_assert_eq(vg_cluster_map_parse_(odd, 1, range_cb, &g), -1, "an odd slots list");
    freeReplyObject(odd);

    /* only "unknown subcommand" means a server without SHARDS */
    cr_assert(vg_cluster_no_shards_("ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP."));
    cr_assert(vg_cluster_no_shards_("ERR Unknown subcommand or wrong number of arguments for 'SHARDS'."));
    cr_assert(!vg_cluster_no_shards_("LOADING Redis is loading the dataset in memory"));
    cr_assert(!vg_cluster_no_shards_("NOAUTH Authentication required."));

    /* redirects: ":port" and "?:port" parse, with their empty or "?" host */
    unsigned slot;
    const char *host;
    size_t hostlen;
    int port;
    cr_assert_eq(vg_cluster_redirect_parse_("MOVED 3999 :6381", &slot, &host, &hostlen, &port), 0);
    cr_assert(slot == 3999 && hostlen == 0 && port == 6381);
    cr_assert_eq(vg_cluster_redirect_parse_("ASK 7 ?:7000", &slot, &host, &hostlen, &port), 0);
    cr_assert(hostlen == 1 && host[0] == '?' && port == 7000);
    cr_assert_eq(vg_cluster_redirect_parse_("MOVED 16384 a:1", &slot, &host, &hostlen, &port), -1);
    cr_assert_eq(vg_cluster_redirect_parse_("MOVED 1 a", &slot, &host, &hostlen, &port), -1);

    /* reply classes: server-state errors are waits only for the units that ask for it */
    static const struct { const char *err; int plain, state; } classes[] = {
        {"MOVED 1 a:1", VG_CL_MOVED_, VG_CL_MOVED_},   {"ASK 1 a:1", VG_CL_ASK_, VG_CL_ASK_},
        {"TRYAGAIN Multiple keys", VG_CL_RETRY_, VG_CL_RETRY_}, {"CLUSTERDOWN x", VG_CL_RETRY_, VG_CL_RETRY_},
        {"LOADING x", VG_CL_RETRY_, VG_CL_RETRY_},     {"OOM command not allowed", VG_CL_OK_, VG_CL_RETRY_},
        {"READONLY You can't write", VG_CL_OK_, VG_CL_RETRY_}, {"MASTERDOWN x", VG_CL_OK_, VG_CL_RETRY_},
        {"BUSY", VG_CL_OK_, VG_CL_RETRY_},             {"BUSYKEY Target key name exists", VG_CL_OK_, VG_CL_OK_},
        {"ERR wrong number of arguments", VG_CL_OK_, VG_CL_OK_}, {"NOREPLICASX", VG_CL_OK_, VG_CL_OK_},
    };
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        redisReply *e = mk(REDIS_REPLY_ERROR, 0, classes[i].err);
        cr_assert_eq(vg_cluster_reply_class_(e, 0), classes[i].plain, "'%s' without server state", classes[i].err);
        cr_assert_eq(vg_cluster_reply_class_(e, 1), classes[i].state, "'%s' with server state", classes[i].err);
        freeReplyObject(e);
    }
    redisReply *okr = S("OOM");
    cr_assert_eq(vg_cluster_reply_class_(okr, 1), VG_CL_OK_, "a bulk string is never an error");
    freeReplyObject(okr);

    /* units: one plain command, or a balanced MULTI ... EXEC without connection-state commands */
    static const char *const units[][2] = {
        {"*1\r\n$5\r\nMULTI\r\n", NULL},
        {"*1\r\n$5\r\nMULTI\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", NULL},
        {"*1\r\n$4\r\nEXEC\r\n", NULL},
        {"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n", NULL},
        {"*1\r\n$5\r\nMULTI\r\n*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nEXEC\r\n", NULL},
        {"*1\r\n$5\r\nMULTI\r\n*2\r\n$5\r\nWATCH\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n", NULL},
        {"*1\r\n$5\r\nmulti\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nexec\r\n", "3"},
        {"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "1"},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        char why[200] = "";
        uint32_t off[4];
        size_t n = vg_cluster_resp_unit_(units[i][0], strlen(units[i][0]), off, why, sizeof why);
        cr_assert_eq(n, units[i][1] ? (size_t)atoi(units[i][1]) : 0, "unit %zu: %zu (%s)", i, n, why);
        cr_assert(n || why[0], "unit %zu refused without a reason", i);
    }
}

/* ---- C-2: redirects without a host, with "?", and to a dead ASK target ---------------------- */

Test(cluster, redirects_without_host_or_with_unknown_one, .init = setup, .fini = teardown, .timeout = 180)
{
    start_cluster();
    endpoint_type("unknown-endpoint"); /* MOVED/ASK say ":port" */
    vg_cluster_cfg_t cfg = base_cfg();
    C = open_cluster(&cfg);
    seed_key("mv", "1");
    seed_key("ak", "2");
    seed_key("qk", "3");
    /* MOVED :port: the slot moved behind the client's back */
    unsigned s1 = vg_cluster_keyslot("mv", 2);
    int from = vgt_rcluster_owner(&RC, s1), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, s1, from, to), 0);
    cr_assert_eq(vgt_rcluster_migrate_keys(&RC, s1, from, to, 100), 1);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, s1, to), 0);
    get_is("mv", "1");
    cr_assert(stats().moved >= 1);
    /* ASK :port */
    unsigned s2 = vg_cluster_keyslot("ak", 2);
    from = vgt_rcluster_owner(&RC, s2), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, s2, from, to), 0);
    cr_assert_eq(vgt_rcluster_migrate_keys(&RC, s2, from, to, 100), 1);
    get_is("ak", "2");
    cr_assert(stats().ask >= 1);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, s2, to), 0);
    cr_assert_eq(stats().nodes, 3, "a node was made of a host-less address");

    /* "?" (hostname preferred, none set): retried, never a node; done once the slot settles */
    endpoint_type("hostname");
    unsigned s3 = vg_cluster_keyslot("qk", 2);
    from = vgt_rcluster_owner(&RC, s3), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, s3, from, to), 0);
    cr_assert_eq(vgt_rcluster_migrate_keys(&RC, s3, from, to, 100), 1);
    res_t q = {0};
    const char *get[] = {"GET", "qk"};
    ask_at = stats().ask;
    submit(&q, 2, get);
    cr_assert(wait_for(asked_more, NULL, 20000), "no ASK ?: %s", vg_cluster_errstr(C));
    cr_assert_eq(q.calls, 0, "%s", q.str);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, s3, to), 0);
    cr_assert(wait_for(res_done, &q, 20000), "stuck after the migration ended: %s", vg_cluster_errstr(C));
    cr_assert(q.status == 0 && strcmp(q.str, "3") == 0, "%d %s", q.status, q.str);
    cr_assert_eq(stats().nodes, 3, "a node was made of \"?\"");
    cr_assert_eq(stats().failed, 0);
    close_cluster(C);
}

Test(cluster, dead_ask_target_does_not_hold_its_slot, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.max_redirects = 1000;
    C = open_cluster(&cfg);
    seed_key("dk", "1");
    unsigned slot = vg_cluster_keyslot("dk", 2);
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
    cr_assert_eq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 100), 1);
    vgt_rcluster_kill(&RC, to);
    res_t x = {0};
    const char *get[] = {"GET", "dk"};
    ask_at = 0;
    submit(&x, 2, get);
    cr_assert(wait_for(asked_more, NULL, 20000), "the unit waits for the dead ASK target: %s", vg_cluster_errstr(C));
    cr_assert_eq(x.calls, 0);
    char sl[16];
    snprintf(sl, sizeof sl, "%u", slot);
    node_ok(from, "CLUSTER SETSLOT %s STABLE", sl); /* the source keeps the slot: done there */
    cr_assert(wait_for(res_done, &x, 20000), "%s", vg_cluster_errstr(C));
    cr_assert_eq(x.status, 0, "%s", x.str);
    cr_assert_eq(x.type, REDIS_REPLY_NIL, "the key went down with the target");
    close_cluster(C);
}

/* ---- C-3: a slot the map gives nobody ------------------------------------------------------ */

static int hole_logs;
static void hole_log(void *ud, int level, const char *msg)
{
    test_log(ud, level, msg);
    hole_logs += strstr(msg, "no owner") != NULL;
}

static uint64_t refreshes_at;
static int refreshed_3(void *arg) { return (void)arg, hole_logs > 0 && stats().refreshes >= refreshes_at + 3; }
static int unowned(void *arg) { return vgt_rcluster_owner(&RC, *(unsigned *)arg) < 0; }

/* Polls pred (a blocking check of the servers) every 20 ms until it holds or ms pass. */
static int poll_until(int (*pred)(void *), void *arg, int ms)
{
    for (int t = 0; t < ms / 20 && !pred(arg); t++)
        uv_sleep(20);
    return pred(arg);
}

Test(cluster, slot_without_owner_is_asked_for_again, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    unsigned slot = vg_cluster_keyslot("hole", 4);
    int owner = vgt_rcluster_owner(&RC, slot);
    char sl[16];
    snprintf(sl, sizeof sl, "%u", slot);
    node_ok(owner, "CLUSTER DELSLOTS %s", sl);
    for (int i = 0; i < 3; i++)
        if (i != owner)
            node_ok(i, "CLUSTER DELSLOTS %s", sl);
    cr_assert(poll_until(unowned, &slot, 10000), "slot %u still owned", slot);
    vg_cluster_cfg_t cfg = base_cfg();
    cfg.log = hole_log;
    hole_logs = 0;
    C = open_cluster(&cfg);
    seed_key("warm", "1"); /* the map is in: slot is not in it */
    cr_assert_eq(stats().slots_mapped, VG_CLUSTER_SLOTS - 1);
    res_t x = {0};
    const char *set[] = {"SET", "hole", "1"};
    refreshes_at = stats().refreshes;
    submit(&x, 3, set);
    cr_assert(wait_for(refreshed_3, NULL, 20000), "%d logs, %llu refreshes", hole_logs,
              (unsigned long long)(stats().refreshes - refreshes_at));
    cr_assert_eq(x.calls, 0);
    cr_assert_eq(hole_logs, 1, "said more than once");
    node_ok(owner, "CLUSTER ADDSLOTS %s", sl);
    cr_assert(wait_for(res_done, &x, 20000), "%s", vg_cluster_errstr(C));
    cr_assert(x.status == 0 && strcmp(x.str, "OK") == 0, "%s", x.str);
    cr_assert_eq(stats().slots_mapped, VG_CLUSTER_SLOTS);
    cr_assert_eq(hole_logs, 1);
    close_cluster(C);
}

/* ---- cancel on close ----------------------------------------------------------------------- */

static int cc_calls, cc_ok, cc_again, cc_bad;
static void cancel_cb(void *ud, int status, const redisReply *r, const char *err)
{
    const char *argv[] = {"SET", "late", "1"};
    cc_calls++;
    if (status == 0 && cc_ok++ == 0)
        vg_cluster_close_cancel(ud); /* the first to complete cancels the rest, from inside its callback */
    else if (status == VG_EAGAIN && !r && err && err[0])
        cc_again++;
    else
        cc_bad++;
    if (vg_cluster_command(ud, "late", 4, 3, argv, NULL, NULL, NULL) != VG_EINVAL)
        cc_bad++;
}

Test(cluster, close_cancel_calls_back_every_pending_unit, .init = setup, .fini = teardown, .timeout = 120)
{
    start_cluster();
    vg_cluster_cfg_t cfg = base_cfg();
    C = open_cluster(&cfg);
    /* connection-state commands are refused as units */
    const char *multi[] = {"MULTI"}, *sel[] = {"SELECT", "1"};
    cr_assert_eq(vg_cluster_command(C, "k", 1, 1, multi, NULL, NULL, NULL), VG_EINVAL);
    cr_assert(strstr(vg_cluster_errstr(C), "MULTI"), "%s", vg_cluster_errstr(C));
    vg_cluster_cmd_t tx[] = {{"k", 1, 2, sel, NULL}};
    cr_assert_eq(vg_cluster_multi(C, tx, 1, NULL, NULL), VG_EINVAL);
    cr_assert_eq(vg_cluster_formatted(C, "k", 1, "*1\r\n$5\r\nMULTI\r\n", 15, NULL, NULL), VG_EINVAL);
    /* before any map: nothing completed, every unit called back with VG_EAGAIN */
    cc_calls = cc_ok = cc_again = cc_bad = 0;
    for (int k = 0; k < 200; k++) {
        char key[16];
        snprintf(key, sizeof key, "cc%d", k);
        const char *argv[] = {"SET", key, "1"};
        cr_assert_eq(vg_cluster_command(C, key, strlen(key), 3, argv, NULL, cancel_cb, C), 0);
    }
    cc_ok = 1; /* no callback closes again */
    vg_cluster_close_cancel(C);
    cr_assert(cc_calls == 200 && cc_again == 200 && cc_bad == 0, "%d calls, %d EAGAIN, %d bad", cc_calls, cc_again,
              cc_bad);
    cr_assert_eq(vg_cluster_pending(C), 0);
    close_cluster(NULL);

    /* from inside a callback, with units in flight */
    cr_assert_eq(uv_loop_init(&loop), 0);
    C = open_cluster(&cfg);
    seed_key("warm", "1");
    cc_calls = cc_ok = cc_again = cc_bad = 0;
    for (int k = 0; k < 300; k++) {
        char key[16];
        snprintf(key, sizeof key, "cc%d", k);
        const char *argv[] = {"SET", key, "1"};
        cr_assert_eq(vg_cluster_command(C, key, strlen(key), 3, argv, NULL, cancel_cb, C), 0);
    }
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert(cc_calls == 300 && cc_ok == 1 && cc_again == 299 && cc_bad == 0, "%d calls, %d ok, %d EAGAIN, %d bad",
              cc_calls, cc_ok, cc_again, cc_bad);
}
