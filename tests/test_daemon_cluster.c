/*
 * test_daemon_cluster.c — vaegand with redis.cluster = yes on a real
 * 3-master Redis Cluster (tests/support/rcluster.h) and the mock broker:
 * every produced (user, item) in hist:{<user>} on the master its slot names,
 * every user's rec:{<user>} list written (top_n long, no item of the
 * history), and after a restart the histories loaded back from every shard
 * of vaegan:users; events keyed by another id than their user counted.  Waits are on keys and log lines, deadlines are guards.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/rcluster.h"
#include "tests/support/tmpdir.h"

#define N_ITEMS 300
#define N_USERS 300
#define TOP_N 10
#define GUARD_S 240.0

static vgt_env_t E;
static vgt_rcluster_t RC;
static char redis_conf[128];

static const char SETTINGS[] = "[serve]\ntop_n = 10\nbatch = 64\n"
                               "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"
                               "[train]\ninterval_ms = 200\nsteps_per_round = 2\n"
                               "[log]\nlevel = debug\n";

static void setup(void)
{
    vg_tmpdir_make();
    memset(&RC, 0, sizeof RC);
    cr_assert_eq(vgt_rcluster_start(&RC, vg_tmpdir, 3), 0, "no cluster");
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 8,
                        .metrics = 1, .settings = SETTINGS};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "the broker did not start");
    snprintf(redis_conf, sizeof redis_conf, "host = 127.0.0.1\nport = %d\ncluster = yes", RC.port[2]);
    E.redis_conf = redis_conf;
    cr_assert_eq(vgt_env_write_conf(&E, NULL), 0);
}

static void teardown(void)
{
    int keep = vgt_env_finish(&E);
    vgt_rcluster_stop(&RC);
    if (!keep)
        vg_tmpdir_remove();
}

/* One blocking connection per master; commands go to the owner of their key's slot. */
static redisContext *conn[VGT_RCLUSTER_MAX];

static redisReply *cmd(const char *key, const char *fmt, const char *a, const char *b)
{
    int node = vgt_rcluster_owner(&RC, vg_cluster_keyslot(key, strlen(key)));
    cr_assert_geq(node, 0);
    if (!conn[node])
        conn[node] = vgt_rcluster_connect(&RC, node);
    cr_assert_not_null(conn[node]);
    redisReply *r = redisCommand(conn[node], fmt, a, b);
    cr_assert_not_null(r, "%s", key);
    return r;
}

static void disconnect(void)
{
    for (int i = 0; i < VGT_RCLUSTER_MAX; i++) {
        redisFree(conn[i]);
        conn[i] = NULL;
    }
}

/* The events of s whose item is not in hist:{user}, plus the entries too many. */
static int hist_wrong(const vgt_stream_t *s, const vgt_expect_t *x)
{
    long long total = 0;
    char key[160];
    for (int k = 0; k < x->n_users; k++) {
        snprintf(key, sizeof key, "hist:{%s}", x->users[k]);
        redisReply *r = cmd(key, "ZCARD %s", key, NULL);
        total += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
    }
    if (total != (long long)x->entries)
        return (int)(total > (long long)x->entries ? total - (long long)x->entries : (long long)x->entries - total);
    int wrong = 0;
    for (size_t k = 0; k < s->n; k++) {
        const char *item = strstr(s->val[k], "\"item\":\"");
        cr_assert_not_null(item);
        char it[64];
        snprintf(it, sizeof it, "%.*s", (int)strcspn(item + 8, "\""), item + 8);
        snprintf(key, sizeof key, "hist:{%s}", s->key[k]);
        redisReply *r = cmd(key, "ZSCORE %s %s", key, it);
        wrong += r->type != REDIS_REPLY_STRING;
        freeReplyObject(r);
    }
    return wrong;
}

/* Users whose rec:{user} is missing, of the wrong length, or holds an item of the history. */
static int recs_bad(const vgt_expect_t *x)
{
    int bad = 0;
    char rkey[160], hkey[160];
    for (int k = 0; k < x->n_users; k++) {
        snprintf(rkey, sizeof rkey, "rec:{%s}", x->users[k]);
        snprintf(hkey, sizeof hkey, "hist:{%s}", x->users[k]);
        redisReply *r = cmd(rkey, "ZRANGE %s 0 -1", rkey, NULL);
        redisReply *h = cmd(hkey, "ZCARD %s", hkey, NULL);
        int want = TOP_N < N_ITEMS - (int)h->integer ? TOP_N : N_ITEMS - (int)h->integer;
        int ok = r->type == REDIS_REPLY_ARRAY && (int)r->elements == want;
        for (size_t j = 0; ok && j < r->elements; j++) {
            redisReply *z = cmd(hkey, "ZSCORE %s %s", hkey, r->element[j]->str);
            ok = z->type == REDIS_REPLY_NIL;
            freeReplyObject(z);
        }
        bad += !ok;
        freeReplyObject(r);
        freeReplyObject(h);
    }
    return bad;
}

static int wait_zero(int (*f)(const vgt_stream_t *, const vgt_expect_t *), const vgt_stream_t *s,
                     const vgt_expect_t *x, double timeout)
{
    double end = vg_mono_s() + timeout;
    int bad;
    while ((bad = f(s, x)) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(300);
    if (bad)
        vgt_show_log(&E, "cluster keys incomplete");
    return bad;
}

static int recs_bad_of(const vgt_stream_t *s, const vgt_expect_t *x) { return (void)s, recs_bad(x); }

Test(daemon_cluster, histories_lists_and_a_restart_on_three_masters, .init = setup, .fini = teardown,
     .timeout = 600)
{
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_gt(E.daemon, 0);
    cr_assert(vgt_wait_log(&E, "lists written as", NULL, 1, 60), "the store never came up on the cluster");
    vgt_stream_t s;
    vgt_expect_t x;
    vgt_stream_make(&s, "u", N_USERS, N_ITEMS, 6000, 7);
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    cr_assert_eq(wait_zero(hist_wrong, &s, &x, GUARD_S), 0, "histories on the cluster differ from the stream");
    cr_assert_eq(wait_zero(recs_bad_of, &s, &x, GUARD_S), 0, "lists missing or wrong");
    long long users = 0;
    for (int k = 0; k < 16; k++) { /* VG_STORE_USER_SHARDS */
        char key[32];
        snprintf(key, sizeof key, "vaegan:users:{%d}", k);
        redisReply *r = cmd(key, "ZCARD %s", key, NULL);
        users += r->integer;
        freeReplyObject(r);
    }
    cr_assert_eq(users, x.n_users);

    /* events keyed by another id than their user are counted */
    const char *keys[3] = {"someone-else", "u1", NULL};
    const char *vals[3] = {"{\"user\":\"u7\",\"item\":\"i1\",\"ts\":1800000000}",
                           "{\"user\":\"u8\",\"item\":\"i2\",\"ts\":1800000001}",
                           "{\"user\":\"u9\",\"item\":\"i3\",\"ts\":1800000002}"};
    size_t lens[3] = {strlen(vals[0]), strlen(vals[1]), strlen(vals[2])};
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys, vals, lens, 3), 0);
    double mis = vgt_wait_metric(E.metrics_port, "vaegan_events_key_not_user_total", 3, GUARD_S);
    cr_assert_eq(mis, 3, "vaegan_events_key_not_user_total %g", mis);

    /* a restart loads every history back from the shards */
    kill(E.daemon, SIGTERM);
    int st;
    cr_assert_eq(waitpid(E.daemon, &st, 0), E.daemon);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vaegand did not stop cleanly");
    E.daemon = vgt_env_spawn(&E, NULL);
    char want[64];
    snprintf(want, sizeof want, "loaded %d users", x.n_users);
    cr_assert(vgt_wait_log(&E, want, NULL, 1, GUARD_S), "the restart did not load %d users", x.n_users);
    disconnect();
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}
