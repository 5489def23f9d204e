/*
 * test_faults.c — vaegand under faults (ctest label integration): the
 * Kafka-protocol broker down for 10 s mid-stream, coordinator errors
 * (OffsetCommit, Heartbeat, JoinGroup, SyncGroup) mid-stream and around a
 * restart, Redis out of memory (maxmemory, noeviction), SIGTERM in the
 * middle of a large start-up load, a Redis data error on one user's key, and
 * Redis refusing our writes (ACL).  Each test produces a known stream and
 * asserts that nothing is lost: every produced (user, item) is in
 * hist:<user> (daemon.h vgt_wait_hist), and where the test says so, the
 * group's committed offsets reach the end of the stream.
 *
 * The broker runs in this process (stream/mock.h, through daemon.h with
 * opts.mockbroker NULL), so the test drives its faults (vg_mock_set_down,
 * vg_mock_push_errors) while vaegand, a child process, consumes from it; the
 * two moved Redis tests keep vaegan-mockbroker.  Waits poll Redis, the log,
 * /metrics or sd_notify; the only fixed sleep is a fault's own duration.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "stream/mock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define N_ITEMS 300
#define GUARD_S 120.0 /* deadline of a wait for an event: only a guard */

/* Kafka API keys and error codes the coordinator tests inject. */
enum { API_OFFSET_COMMIT = 8, API_JOIN_GROUP = 11, API_HEARTBEAT = 12, API_SYNC_GROUP = 14 };
enum { COORDINATOR_NOT_AVAILABLE = 15, NOT_COORDINATOR = 16, REBALANCE_IN_PROGRESS = 27 };

static vgt_env_t E;

/* Little training (it is not under test here), debug log (progress lines). */
static const char SETTINGS[] = "[serve]\ntop_n = 10\nbatch = 64\n"
                               "[state]\ncheckpoint_interval_s = 2\n"
                               "[model]\nhidden = 16\nlatent = 8\nbatch = 32\n"
                               "[train]\ninterval_ms = 500\nsteps_per_round = 1\n"
                               "[log]\nlevel = debug\n";

static void setup_with(const char *mockbroker, int partitions, int aof)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = mockbroker, .partitions = partitions,
                        .aof = aof, .metrics = 1, .settings = SETTINGS};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "redis-server or the broker did not start");
}

/* The broker in this process (fault controls on E.mock), 4 partitions. */
static void setup_owned(void) { setup_with(NULL, 4, 0); }

/* vaegan-mockbroker, 16 partitions, Redis with its AOF (as test_daemon.c). */
static void setup_process(void) { setup_with(VG_MOCKBROKER_BIN, 16, 1); }

static void teardown(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* ---- helpers ---------------------------------------------------------------------- */

static void produce(const vgt_stream_t *s, size_t from, size_t to)
{
    int failed = vgt_stream_produce(&E, "clicks", s, from, to);
    cr_assert_eq(failed, 0, "%d deliveries failed", failed);
}

/* The first n events of s, sharing s's strings (not freed on their own). */
static vgt_stream_t head_of(const vgt_stream_t *s, size_t n)
{
    return (vgt_stream_t){.n = n, .key = s->key, .val = s->val, .len = s->len};
}

/* Waits until hist:<user> holds exactly the first n events of s. */
static int wait_head(const vgt_stream_t *s, size_t n, double timeout_s)
{
    vgt_stream_t h = head_of(s, n);
    vgt_expect_t x;
    vgt_expect_make(&h, &x);
    int wrong = vgt_wait_hist(&E, &h, &x, timeout_s);
    vgt_expect_free(&x);
    return wrong;
}

/* Waits until at least n users are in vaegan:users (consumption is under way). */
static void wait_users(long long n)
{
    double end = vg_mono_s() + GUARD_S;
    while (vgt_zcard(&E, "vaegan:users") < n && vg_mono_s() < end)
        vgt_sleep_ms(20);
    cr_assert_geq(vgt_zcard(&E, "vaegan:users"), n, "consumption started");
}

/* Waits until the group's committed offsets of clicks add up to n. */
static int64_t wait_committed(int64_t n)
{
    double end = vg_mono_s() + GUARD_S;
    int64_t c;
    while ((c = vgt_env_committed(&E, "clicks")) < n && vg_mono_s() < end)
        vgt_sleep_ms(200);
    return c;
}

static void stop_daemon(const char *why)
{
    kill(E.daemon, SIGTERM);
    int rc = vgt_wait_exit(E.daemon, 60);
    E.daemon = 0;
    if (rc != 0)
        vgt_show_log(&E, why);
    cr_assert_eq(rc, 0, "%s: SIGTERM exits 0 (%d)", why, rc);
}

static void push_errors(int api, size_t n, const int *errors) { vg_mock_push_errors(E.mock, api, n, errors); }

/* ---- the broker ---------------------------------------------------------------------- */

/* The broker goes down for 10 s while the daemon consumes: the daemon keeps
 * running, reconnects, and every event of before and after is stored and
 * committed. */
Test(faults, broker_down_ten_seconds_loses_nothing, .init = setup_owned, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_stream_make(&s, "b", 600, N_ITEMS, 12000, 21);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, 6000);
    wait_users(100); /* mid-stream */
    cr_assert_eq(vg_mock_set_down(E.mock, 1), 0);
    vgt_sleep_ms(10000); /* the fault's own duration */
    cr_assert_eq(vg_mock_set_down(E.mock, 0), 0);
    cr_assert_eq(vgt_wait_exit(E.daemon, 0), -1, "the daemon outlived the broker's absence");
    produce(&s, 6000, 12000);
    cr_assert_eq(wait_head(&s, s.n, GUARD_S), 0, "every event of before and after the outage is stored");
    int64_t c = wait_committed((int64_t)s.n);
    cr_assert_eq(c, (int64_t)s.n, "consumption resumed: the committed offsets reach the end (%lld)", (long long)c);
    stop_daemon("after the outage");
    vgt_stream_free(&s);
}

/* Coordinator errors while consuming (the coordinator moving and a
 * rebalance on commits and heartbeats), on joining and syncing at a restart,
 * and on the final commit of a stop: nothing lost, and the committed offsets
 * reach the end of the stream, while consuming and at the stop. */
Test(faults, coordinator_errors_lose_nothing, .init = setup_owned, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_stream_make(&s, "c", 600, N_ITEMS, 12000, 22);
    cr_assert_eq(vgt_env_write_conf(&E, "[kafka]\noption.heartbeat.interval.ms = 300\n"), 0); /* meets them soon */
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, 4000);
    wait_users(100);
    const int commit_errs[] = {COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, REBALANCE_IN_PROGRESS};
    const int hb_errs[] = {NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE};
    push_errors(API_OFFSET_COMMIT, 3, commit_errs);
    push_errors(API_HEARTBEAT, 2, hb_errs);
    produce(&s, 4000, 8000);
    cr_assert_eq(wait_head(&s, 8000, GUARD_S), 0, "stored through commit and heartbeat errors");
    cr_assert_geq(vgt_wait_log(&E, "periodic commit deferred", NULL, 1, GUARD_S), 1, "the commit errors were met");
    /* the rebalance the commit's REBALANCE_IN_PROGRESS announced (the
     * daemon holds periodic commits until it completes) */
    const int rebalance[] = {REBALANCE_IN_PROGRESS};
    push_errors(API_HEARTBEAT, 1, rebalance);
    int64_t c = wait_committed(8000);
    cr_assert_eq(c, 8000, "committed through the errors while consuming (%lld)", (long long)c);
    stop_daemon("the first stop");

    /* a restart that joins through errors; only its stop commits, and that
     * commit meets errors too */
    const int join_errs[] = {COORDINATOR_NOT_AVAILABLE};
    const int sync_errs[] = {REBALANCE_IN_PROGRESS};
    push_errors(API_JOIN_GROUP, 1, join_errs);
    push_errors(API_SYNC_GROUP, 1, sync_errs);
    cr_assert_eq(vgt_env_write_conf(&E, "[kafka]\ncommit_interval_ms = 600000\n"), 0);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 8000, 12000);
    cr_assert_eq(wait_head(&s, s.n, GUARD_S), 0, "every event stored after a restart through join errors");
    const int stop_errs[] = {REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE};
    push_errors(API_OFFSET_COMMIT, 2, stop_errs);
    stop_daemon("a stop with commit errors");
    c = vgt_env_committed(&E, "clicks");
    cr_assert_eq(c, (int64_t)s.n, "the stop committed every stored event through the errors (%lld)", (long long)c);
    vgt_stream_free(&s);
}

/* ---- Redis ---------------------------------------------------------------------------- */

/* Redis reaches maxmemory (noeviction: writes answer -OOM) mid-stream: the
 * daemon pauses consumption and re-sends, skips nothing; once memory is
 * freed it resumes and everything is stored and committed. */
Test(faults, redis_maxmemory_pauses_and_loses_nothing, .init = setup_owned, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_stream_make(&s, "m", 2000, N_ITEMS, 12000, 23);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, 3000);
    cr_assert_eq(wait_head(&s, 3000, GUARD_S), 0);
    int paused0 = vgt_log_lines(&E, "consumption paused", NULL);

    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "INFO memory");
    const char *u = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    cr_assert_not_null(u, "INFO memory has used_memory");
    long long used = atoll(u + strlen("used_memory:"));
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "CONFIG SET maxmemory-policy noeviction"));
    r = redisCommand(c, "CONFIG SET maxmemory %lld", used + 64 * 1024);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "maxmemory set");
    freeReplyObject(r);

    produce(&s, 3000, s.n);
    cr_assert_gt(vgt_wait_log(&E, "consumption paused", NULL, paused0 + 1, GUARD_S), paused0,
                 "the daemon pauses when Redis answers OOM");
    cr_assert_geq(vgt_wait_log(&E, "server not writable", "OOM", 2, GUARD_S), 2, "and retries (OOM twice)");
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    cr_assert_neq(vgt_hist_wrong(c, &s, &x), 0, "the fault bit: the stream is not all stored yet");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0), -1, "the daemon is still running");

    r = redisCommand(c, "CONFIG SET maxmemory 0");
    freeReplyObject(r);
    redisFree(c);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, GUARD_S), 0, "nothing lost once Redis takes writes again");
    cr_assert_geq(vgt_wait_log(&E, "server takes writes again", NULL, 1, GUARD_S), 1);
    cr_assert_gt(vgt_log_lines(&E, "consumption resumed", NULL), 0);
    int64_t done = wait_committed((int64_t)s.n);
    cr_assert_eq(done, (int64_t)s.n, "the committed offsets reach the end (%lld)", (long long)done);
    double failed = vgt_metric(E.metrics_port, "vaegan_events_failed_total{reason=\"oom\"}");
    cr_assert(failed == -2 || failed == 0, "no event counted as failed for OOM (%g)", failed);
    cr_assert_eq(vgt_metric(E.metrics_port, "vaegan_kafka_paused"), 0, "consuming again");
    stop_daemon("after OOM");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* How many ZRANGE commands Redis has served (INFO commandstats): the load
 * reads every history with one. */
static long long zrange_calls(void)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "INFO commandstats");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    const char *at = strstr(r->str, "cmdstat_zrange:calls=");
    long long n = at ? atoll(at + strlen("cmdstat_zrange:calls=")) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* SIGTERM while vaegand loads 200,000 histories at start: it stops at once,
 * exits 0 and says so, and changes nothing; the next start loads every
 * history and consumes a new stream. */
Test(faults, sigterm_during_a_large_history_load, .init = setup_owned, .fini = teardown, .timeout = 300)
{
    enum { USERS = 200000 };
    cr_assert_eq(vgt_preload_histories(&E, "L", USERS, N_ITEMS), 0, "preloading Redis");
    int fd = vgt_env_spawn_notify(&E);
    cr_assert_geq(fd, 0, "a notify socket and the daemon");
    cr_assert(vgt_notify_wait(fd, "STATUS=loading histories from Redis", GUARD_S), "the load starts");
    close(fd);
    kill(E.daemon, SIGTERM);
    int rc = vgt_wait_exit(E.daemon, 60);
    E.daemon = 0;
    if (rc != 0)
        vgt_show_log(&E, "SIGTERM during the load");
    cr_assert_eq(rc, 0, "SIGTERM during the load exits 0 (%d)", rc);
    cr_assert(vgt_log_has(&E, "SIGTERM: stopping") && vgt_log_has(&E, "stopped"), "and says so");
    long long reads = zrange_calls();
    cr_assert_lt(reads, USERS, "the stop came during the load, not after it (%lld histories read)", reads);
    cr_assert_not(vgt_log_has(&E, "history entries"));
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), USERS, "the interrupted load changed nothing");

    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_log(&E, "loaded 200000 users", NULL, 1, GUARD_S), 1, "the next start loads every user");
    vgt_stream_t s;
    vgt_stream_make(&s, "n", 300, N_ITEMS, 3000, 24);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    produce(&s, 0, s.n);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, GUARD_S), 0, "and consumes a new stream");
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), USERS + x.n_users);
    stop_daemon("after the load");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* ---- Redis data errors and refusals (moved from test_daemon.c) ----------------- */

/* The events of stream s whose user is not skip (a copy the caller frees). */
static void without_user(const vgt_stream_t *s, const char *skip, vgt_stream_t *out)
{
    memset(out, 0, sizeof *out);
    out->key = calloc(s->n, sizeof *out->key);
    out->val = calloc(s->n, sizeof *out->val);
    out->len = calloc(s->n, sizeof *out->len);
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->key[k], skip) != 0) {
            out->key[out->n] = strdup(s->key[k]);
            out->val[out->n] = strdup(s->val[k]);
            out->len[out->n++] = s->len[k];
        }
}

/* Another app wrote hist:w5 as a string: Redis answers WRONGTYPE to that
 * user's writes.  Only w5's events are dead-lettered (with Redis' error as
 * reason); the rest of every batch is stored; every offset is committed. */
Test(faults, a_redis_data_error_dead_letters_only_that_event, .init = setup_process, .fini = teardown,
     .timeout = 300)
{
    vgt_stream_t s, good;
    vgt_stream_make(&s, "w", 200, N_ITEMS, 3000, 6);
    without_user(&s, "w5", &good);
    size_t n_bad = s.n - good.n;
    cr_assert_gt(n_bad, 0);
    vgt_expect_t x;
    vgt_expect_make(&good, &x);
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "SET hist:w5 not-a-zset"));
    redisFree(c);
    E.topics = "topic = clicks\ndlq_topic = clicks-dlq";
    cr_assert_eq(vgt_env_write_conf(&E, NULL), 0);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, s.n);
    cr_assert_eq(vgt_wait_hist(&E, &good, &x, 120), 0, "the other events of the batches are stored");
    static vgt_msg_t dead[64];
    size_t got = vgt_consume(E.addr, "clicks-dlq", dead, n_bad, 60);
    cr_assert_eq(got, n_bad, "%zu of %zu events of w5 dead-lettered", got, n_bad);
    for (size_t k = 0; k < got; k++) {
        cr_assert_str_eq(dead[k].key, "w5");
        cr_assert(strstr(dead[k].value, "\"user\":\"w5\"") && strstr(dead[k].value, "\"item\":\"i"), "%s",
                  dead[k].value);
        cr_assert(strstr(dead[k].error, "WRONGTYPE"), "the reason is Redis' error: %s", dead[k].error);
    }
    cr_assert(vgt_log_has(&E, "Redis refused the event") && vgt_log_has(&E, "user w5"), "logged with the user");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    cr_assert_eq(vgt_env_committed(&E, "clicks"), (int64_t)s.n, "every offset committed: stored or dead-lettered");
    vgt_expect_free(&x);
    vgt_stream_free(&good);
    vgt_stream_free(&s);
}

/* Redis' ACLs forbid our history writes: the daemon stops with exit 77 and
 * a message naming the command, the key and the reply, commits nothing it
 * did not store, and once the ACL is fixed a restart stores everything. */
Test(faults, a_redis_refusal_stops_without_committing, .init = setup_process, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    vgt_stream_make(&s, "r", 100, N_ITEMS, 1000, 7);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "ACL SETUSER admin on nopass ~* &* +@all"));
    freeReplyObject(redisCommand(c, "ACL SETUSER default resetkeys ~vaegan:* ~rec:* ~rm:* -acl"));
    redisFree(c);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, s.n);
    int rc = vgt_wait_exit(E.daemon, 120);
    E.daemon = 0;
    if (rc != 77)
        vgt_show_log(&E, "exit status");
    cr_assert_eq(rc, 77, "exit status %d", rc);
    cr_assert(vgt_log_has(&E, "NOPERM") && vgt_log_has(&E, "ZADD hist:r") && vgt_log_has(&E, "not ours to write"),
              "the message says why");
    cr_assert_eq(vgt_env_committed(&E, "clicks"), 0, "nothing committed");
    c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "AUTH admin x"));
    freeReplyObject(redisCommand(c, "ACL SETUSER default allkeys +@all"));
    redisFree(c);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "after the fix, every event is stored");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}
