/* test_bounds.c — vaegand's memory bounds end to end (ctest label
 * integration): history.max_users evicts the least recently active users
 * from memory only, a returning user is read back from Redis before it is
 * scored, model.min_item_users keeps an item out of the model until enough
 * users clicked it.  Real redis-server and broker (tests/support/daemon.h). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define TOP_N 10
#define N_ITEMS 300

static vgt_env_t E;

static void setup(void)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 4, .metrics = 1,
                        .settings = "[serve]\ntop_n = 10\nbatch = 64\nrefresh_s = 3\n"
                                    "[model]\nhidden = 32\nlatent = 16\nbatch = 64\nmin_item_users = 3\n"
                                    "[train]\ninterval_ms = 200\nsteps_per_round = 2\n"
                                    "[history]\nmax_users = 100\n"
                                    "[log]\nlevel = debug\n"};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "servers did not start");
}

static void teardown(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* Lists holding an item of their user's history, over users u0..u{n-1};
 * users without a list count as bad too. */
static int lists_bad(redisContext *c, const char *prefix, int n)
{
    int bad = 0;
    for (int k = 0; k < n; k++) {
        redisReply *r = redisCommand(c, "ZRANGE rec:%s%d 0 -1", prefix, k);
        int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        for (size_t j = 0; ok && j < r->elements; j++) {
            redisReply *s = redisCommand(c, "ZSCORE hist:%s%d %s", prefix, k, r->element[j]->str);
            ok = s && s->type == REDIS_REPLY_NIL;
            freeReplyObject(s);
        }
        bad += !ok;
        freeReplyObject(r);
    }
    return bad;
}

static int wait_lists(const char *prefix, int n, double timeout_s)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    double end = vg_mono_s() + timeout_s;
    int bad;
    while ((bad = lists_bad(c, prefix, n)) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(300);
    redisFree(c);
    if (bad)
        vgt_show_log(&E, "lists hold history items");
    return bad;
}

static double wait_metric(const char *name, double at_least, double timeout_s)
{
    return vgt_wait_metric(E.metrics_port, name, at_least, timeout_s);
}

Test(bounds, evicted_users_come_back_whole, .init = setup, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_expect_t x;
    vgt_stream_make(&s, "u", 300, N_ITEMS, 6000, 3);
    vgt_expect_make(&s, &x);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "Redis holds every event, evicted users' too");
    double evicted = wait_metric("vaegan_users_evicted_total", 200, 60);
    cr_assert_geq(evicted, 200, "300 users, 100 in memory: %g evicted, %g in memory", evicted,
                  vgt_metric(E.metrics_port, "vaegan_users"));
    double in_memory = vgt_metric(E.metrics_port, "vaegan_users");
    cr_assert(in_memory >= 1 && in_memory <= 100, "vaegan_users %g", in_memory);

    /* users u0..u59 come back with one more click; those not in memory are
     * read back whole before they are scored (fewer than the bound return,
     * so none is evicted again before its list is written) */
    vgt_stream_t back;
    vgt_stream_make(&back, "u", 300, N_ITEMS, 60, 4);
    for (size_t k = 0; k < back.n; k++) { /* user k once, in order */
        char val[128];
        free(back.key[k]);
        free(back.val[k]);
        back.key[k] = malloc(24);
        snprintf(back.key[k], 24, "u%zu", k);
        snprintf(val, sizeof val, "{\"user\":\"u%zu\",\"item\":\"i%zu\",\"ts\":1800000000}", k, (k * 7) % N_ITEMS);
        back.val[k] = strdup(val);
        back.len[k] = strlen(val);
    }
    redisContext *c = vgt_redis_connect(&E.redis);
    for (int k = 0; k < 60; k++) /* so that the lists checked below are the ones written after the return */
        freeReplyObject(redisCommand(c, "DEL rec:u%d", k));
    redisFree(c);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &back, 0, back.n), 0);
    cr_assert_geq(wait_metric("vaegan_users_reloaded_total", 20, 120), 20, "returning users are read back");
    cr_assert_eq(wait_lists("u", 60, 120), 0, "no list recommends an item its user clicked before eviction");
    cr_assert_leq(vgt_metric(E.metrics_port, "vaegan_users"), 100);
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    vgt_stream_free(&back);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* An item two users clicked stays out of the model (min_item_users = 3):
 * never recommended, waiting; a third user lets it in. */
Test(bounds, an_item_enters_after_enough_users, .init = setup, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_expect_t x;
    vgt_stream_make(&s, "v", 40, N_ITEMS, 3000, 5);
    vgt_expect_make(&s, &x);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0);
    const char *keys[3] = {"v1", "v2", "v3"};
    const char *vals[3] = {"{\"user\":\"v1\",\"item\":\"rare\",\"ts\":1800000000}",
                           "{\"user\":\"v2\",\"item\":\"rare\",\"ts\":1800000001}",
                           "{\"user\":\"v3\",\"item\":\"rare\",\"ts\":1800000002}"};
    double waiting = wait_metric("vaegan_items_waiting", 0, 30), items = vgt_metric(E.metrics_port, "vaegan_items");
    double stored = vgt_metric(E.metrics_port, "vaegan_events_stored_total");
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys, vals, NULL, 2), 0);
    /* both clicks stored (waiting moves at the first one already) */
    cr_assert_geq(wait_metric("vaegan_events_stored_total", stored + 2, 60), stored + 2);
    cr_assert_eq(wait_metric("vaegan_items_waiting", waiting + 1, 60), waiting + 1, "rare waits: two users");
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "ZSCORE hist:v2 rare");
    cr_assert(r && r->type == REDIS_REPLY_STRING, "Redis has the click all the same");
    freeReplyObject(r);
    cr_assert_eq(vgt_metric(E.metrics_port, "vaegan_items"), items, "not in the catalogue");
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys + 2, vals + 2, NULL, 1), 0);
    cr_assert_eq(wait_metric("vaegan_items", items + 1, 60), items + 1, "a third user lets rare in");
    cr_assert_eq(vgt_metric(E.metrics_port, "vaegan_items_waiting"), waiting);
    redisFree(c);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* history.max_items = 5 with items waiting for admission (min_item_users =
 * 3): the mirror holds none of a user's 12 rare clicks, Redis holds them
 * all but the cap, so the write path must still trim that user; users whose
 * histories the mirror knows to be within the cap get no trim at all. */
static void setup_trim(void)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 2, .metrics = 1,
                        .settings = "[serve]\ntop_n = 5\n"
                                    "[model]\nhidden = 16\nlatent = 8\nbatch = 32\nmin_item_users = 3\n"
                                    "[train]\nsteps_per_round = 0\n"
                                    "[history]\nmax_items = 5\n"};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "servers did not start");
}

static double trims(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    const char *at = strstr(r->str, "cmdstat_zremrangebyrank:calls=");
    double n = at ? strtod(at + strlen("cmdstat_zremrangebyrank:calls="), NULL) : 0;
    freeReplyObject(r);
    return n;
}

/* n events "{user}{k}" clicking item "{item}{k}" (k < n), produced one by one. */
static void clicks(const char *user, int users, const char *item, int n, int ts)
{
    for (int k = 0; k < n; k++) {
        char key[32], val[128];
        snprintf(key, sizeof key, "%s%d", user, users ? k % users : 0);
        snprintf(val, sizeof val, "{\"user\":\"%s\",\"item\":\"%s%d\",\"ts\":%d}", key, item, k, ts + k);
        const char *kp = key, *vp = val;
        cr_assert_eq(vgt_produce(E.addr, "clicks", &kp, &vp, NULL, 1), 0);
    }
}

Test(bounds, histories_are_trimmed_when_the_mirror_says_so, .init = setup_trim, .fini = teardown, .timeout = 300)
{
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_geq(wait_metric("vaegan_events_total", 0, 60), 0, "no answer on /metrics");
    redisContext *c = vgt_redis_connect(&E.redis);
    clicks("w", 0, "rare", 12, 1000); /* one user, 12 items nobody else clicked */
    cr_assert_geq(wait_metric("vaegan_events_stored_total", 12, 60), 12);
    redisReply *r = redisCommand(c, "ZCARD hist:w0");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_assert_eq(r->integer, 5, "hist:w0 holds %lld members, history.max_items is 5", r->integer);
    freeReplyObject(r);
    clicks("a", 20, "common", 20, 2000); /* 20 users, first sight: they are trimmed (unknown to the mirror) */
    cr_assert_geq(wait_metric("vaegan_events_stored_total", 32, 60), 32);
    double before = trims(c);
    clicks("a", 20, "more", 40, 3000); /* two more clicks each: 3 items, the mirror knows, within the cap */
    cr_assert_geq(wait_metric("vaegan_events_stored_total", 72, 60), 72);
    cr_assert_eq(trims(c), before, "users known to stay within the cap were trimmed");
    clicks("a", 20, "most", 60, 4000); /* three more each: 6 > 5, every one of them is trimmed */
    cr_assert_geq(wait_metric("vaegan_events_stored_total", 132, 60), 132);
    for (int k = 0; k < 20; k++) {
        r = redisCommand(c, "ZCARD hist:a%d", k);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        cr_assert_eq(r->integer, 5, "hist:a%d holds %lld members", k, r->integer);
        freeReplyObject(r);
    }
    cr_assert_gt(trims(c), before);
    redisFree(c);
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
}
