/*
 * test_leader.c — the election of daemon/leader.h with three members on one
 * loop, a real Kafka-protocol broker (vaegan-mockbroker, a one-partition
 * control topic) and a real redis-server holding the epoch counter: exactly
 * one member leads, with the counter's epoch; when it leaves, one other
 * member leads with a higher epoch; a member told its epoch is fenced stops
 * leading at once and does not take a new epoch while it keeps the
 * partition.  Every wait is on a state change, with a deadline as a guard
 * only.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/store.h"
#include "daemon/leader.h"
#include "tests/support/kafka.h"
#include "tests/support/loop.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

#define NM 3

static uv_loop_t loop;
static vgt_redis_t R;
static vgt_broker_t B;

typedef struct member {
    vg_leader_t *l;
    int leads, stops; /* on_change(1) / on_change(0) calls */
    uint64_t epoch;
} member_t;
static member_t M[NM];

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (getenv("VG_TEST_VERBOSE"))
        fprintf(stderr, "[%d] %s\n", level, msg);
}

static void on_change(void *ud, int leading, uint64_t epoch)
{
    member_t *m = ud;
    if (leading) {
        m->leads++;
        cr_assert_gt(epoch, m->epoch, "a new lead must bring a higher epoch");
        m->epoch = epoch;
    } else {
        m->stops++;
        cr_assert_eq(epoch, m->epoch);
    }
}

static void setup(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&R, 0, sizeof R);
    memset(M, 0, sizeof M);
    cr_assert_eq(vgt_redis_start(&R, vg_tmpdir, 0), 0, "no redis-server");
    cr_assert_eq(vgt_broker_start(&B, VG_MOCKBROKER_BIN, "ctl", 1), 0, "no broker");
}

static void teardown(void)
{
    vgt_broker_stop(&B);
    vgt_redis_stop(&R);
    vg_tmpdir_remove();
}

static int is_up(void *arg) { return vg_store_is_up(arg); }
static int never(void *arg) { return (void)arg, 0; }

static int leaders(void)
{
    int n = 0;
    for (int i = 0; i < NM; i++)
        n += vg_leader_leading(M[i].l, NULL);
    return n;
}
static int one_leads(void *arg) { return (void)arg, leaders() == 1; }
static int one_leads_except(void *arg)
{
    int skip = (int)(intptr_t)arg;
    return leaders() == 1 && !vg_leader_leading(M[skip].l, NULL);
}
static int the_leader(void)
{
    for (int i = 0; i < NM; i++)
        if (vg_leader_leading(M[i].l, NULL))
            return i;
    return -1;
}

static long long stored_epoch(void)
{
    redisContext *c = vgt_redis_connect(&R);
    cr_assert(c);
    redisReply *r = redisCommand(c, "GET t:vaegan:{leader}:epoch");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    long long v = atoll(r->str);
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static const char *const opts[] = {"session.timeout.ms", "6000", "fetch.wait.max.ms", "10"};

Test(leader, one_leads_and_another_takes_over, .init = setup, .fini = teardown, .timeout = 180)
{
    vg_store_cfg_t sc;
    memset(&sc, 0, sizeof sc);
    sc.socket = R.sock;
    sc.prefix = "t:";
    sc.log = test_log;
    vg_store_t *s = NULL;
    char err[512];
    cr_assert_eq(vg_store_init(&s, &loop, &sc, err, sizeof err), 0, "%s", err);
    cr_assert(vgt_loop_until(&loop, is_up, s, 20000, NULL));

    for (int i = 0; i < NM; i++) {
        vg_leader_cfg_t c = {.brokers = B.addr, .group = "g", .control_topic = "ctl", .options = opts,
                             .n_options = 2, .store = s, .on_change = on_change, .log = test_log, .ud = &M[i]};
        cr_assert_eq(vg_leader_init(&M[i].l, &loop, &c, err, sizeof err), 0, "%s", err);
    }
    cr_assert(vgt_loop_until(&loop, one_leads, NULL, 60000, NULL), "%d leaders", leaders());
    int a = the_leader();
    int leads = 0;
    for (int i = 0; i < NM; i++)
        leads += M[i].leads;
    cr_assert_eq(leads, 1, "exactly one member may ever have led by now");
    cr_assert_eq((long long)M[a].epoch, stored_epoch(), "the leader's epoch is the counter's");

    /* the leader leaves: another one leads, with a higher epoch */
    uint64_t e1 = M[a].epoch;
    vg_leader_close(M[a].l);
    M[a].l = NULL;
    cr_assert(vgt_loop_until(&loop, one_leads_except, (void *)(intptr_t)a, 60000, NULL), "%d leaders", leaders());
    int b = the_leader();
    cr_assert_gt(M[b].epoch, e1);
    cr_assert_eq((long long)M[b].epoch, stored_epoch());

    /* told it is fenced, the leader stops at once and takes no new epoch while it keeps the partition */
    int stops = M[b].stops;
    vg_leader_fenced(M[b].l, M[b].epoch - 1); /* an older epoch: not ours, ignored */
    cr_assert(vg_leader_leading(M[b].l, NULL));
    vg_leader_fenced(M[b].l, M[b].epoch);
    cr_assert(!vg_leader_leading(M[b].l, NULL));
    cr_assert_eq(M[b].stops, stops + 1);
    vgt_loop_until(&loop, never, NULL, 500, NULL); /* what a rejoin or a retry would need */
    cr_assert_eq(leaders(), 0, "a fenced member must not lead again while it holds the partition");
    cr_assert_eq((long long)M[b].epoch, stored_epoch(), "a fenced member took a new epoch");

    for (int i = 0; i < NM; i++)
        vg_leader_close(M[i].l);
    vg_store_close_cancel(s);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}
