/* test_daemon.c — vaegand end to end (ctest label integration): a real
 * redis-server and a real Kafka-protocol broker (vaegan-mockbroker) started
 * here, the built vaegand run as a child process, the outcome read back from
 * Redis (tests/support/daemon.h: the servers, the daemon, the streams and
 * the histories they should leave).  Every test owns its servers, so they
 * run in any order.  Waits poll Redis, the log or sd_notify, with deadlines
 * only as a guard; the faults (broker down, coordinator errors, Redis out of
 * memory or refusing) are test_faults.c's. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define TOP_N 10
#define N_ITEMS 300
/* The deadline of a wait on the trainer (a round, a checkpoint): it runs at
 * nice 19 and gets little CPU on a loaded machine; only a guard. */
#define GUARD_S 240.0

static vgt_env_t E;

/* The configuration of every test here, after daemon.h's fixed part. */
static const char SETTINGS[] = "[serve]\ntop_n = 10\nbatch = 64\n"
                               "[state]\ncheckpoint_interval_s = 2\n"
                               "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"
                               "[train]\ninterval_ms = 200\nsteps_per_round = 2\n"
                               "[log]\nlevel = debug\n";

static void write_conf(const char *extra) { cr_assert_eq(vgt_env_write_conf(&E, extra), 0); }

static void setup_topics_of(const char *const *topics, size_t n_topics, int partitions)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .topics = topics,
                        .n_topics = n_topics, .partitions = partitions, .aof = 1, .settings = SETTINGS};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "redis-server or the broker did not start");
}

static void setup16(void) { setup_topics_of(NULL, 0, 16); }

static void teardown(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* ---- events ------------------------------------------------------------------- */

static void produce_to(const char *topic, const vgt_stream_t *s, size_t from, size_t to)
{
    int failed = vgt_stream_produce(&E, topic, s, from, to);
    cr_assert_eq(failed, 0, "%d deliveries failed", failed);
}

static void produce(const vgt_stream_t *s, size_t from, size_t to) { produce_to("clicks", s, from, to); }

static void make_stream(vgt_stream_t *s, const char *prefix, int users, size_t n, unsigned seed)
{
    vgt_stream_make(s, prefix, users, N_ITEMS, n, seed);
}

/* Every user's rec list: present, top_n long (or items - history), no
 * history item.  Returns the number of bad lists. */
static int recs_bad(const vgt_expect_t *x, int n_items)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    int bad = 0;
    for (int k = 0; k < x->n_users; k++) {
        redisReply *r = redisCommand(c, "ZRANGE rec:%s 0 -1", x->users[k]);
        redisReply *h = redisCommand(c, "ZCARD hist:%s", x->users[k]);
        int want = TOP_N < n_items - (int)h->integer ? TOP_N : n_items - (int)h->integer;
        int ok = r->type == REDIS_REPLY_ARRAY && (int)r->elements == want;
        for (size_t j = 0; ok && j < r->elements; j++) {
            redisReply *s = redisCommand(c, "ZSCORE hist:%s %s", x->users[k], r->element[j]->str);
            ok = s->type == REDIS_REPLY_NIL;
            freeReplyObject(s);
        }
        bad += !ok;
        freeReplyObject(r);
        freeReplyObject(h);
    }
    redisFree(c);
    return bad;
}

static int wait_recs(const vgt_expect_t *x, double timeout)
{
    double end = vg_mono_s() + timeout;
    int bad;
    while ((bad = recs_bad(x, N_ITEMS)) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(300);
    if (bad)
        vgt_show_log(&E, "lists incomplete");
    return bad;
}

/* ---- tests ------------------------------------------------------------------------ */

Test(daemon, fifty_thousand_events_from_several_producers, .init = setup16, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "u", 2000, 50000, 1);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    E.daemon = vgt_env_spawn(&E, NULL);
    /* four producers at once */
    pid_t kids[4];
    for (int p = 0; p < 4; p++) {
        kids[p] = fork();
        if (kids[p] == 0)
            _exit(vgt_produce(E.addr, "clicks", (const char *const *)s.key + p * 12500,
                              (const char *const *)s.val + p * 12500, s.len + p * 12500, 12500) ? 1 : 0);
    }
    for (int p = 0; p < 4; p++) {
        int st;
        waitpid(kids[p], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer %d failed", p);
    }
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "histories differ from the stream");
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), x.n_users);
    cr_assert_eq(wait_recs(&x, 120), 0, "some rec:<user> lists are missing, short or hold history");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0, "SIGTERM exits 0");
    E.daemon = 0;
    cr_assert_eq(access(E.state, F_OK), 0);
    char ckpt[4300];
    snprintf(ckpt, sizeof ckpt, "%s/model.ckpt", E.state);
    cr_assert_eq(access(ckpt, F_OK), 0, "the model state is saved on SIGTERM");
    /* every offset committed: the group's committed offsets add up to the stream */
    int64_t committed = vgt_env_committed(&E, "clicks");
    cr_assert_eq(committed, 50000, "committed offsets cover every event (%lld)", (long long)committed);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

Test(daemon, kill_9_mid_stream_loses_nothing, .init = setup16, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "k", 1000, 30000, 2);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    produce(&s, 0, 15000);
    E.daemon = vgt_env_spawn(&E, NULL);
    double end = vg_mono_s() + 60;
    while (vgt_zcard(&E, "vaegan:users") < 300 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    produce(&s, 15000, 30000);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 180), 0, "histories differ from the stream after kill -9");
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), x.n_users, "no stray or missing users");
    cr_assert_eq(wait_recs(&x, 120), 0, "lists rebuilt for every user after the restart");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

Test(daemon, redis_away_for_five_seconds_loses_nothing, .init = setup16, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "r", 500, 20000, 3);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, 5000);
    double end = vg_mono_s() + 60;
    while (vgt_zcard(&E, "vaegan:users") < 100 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    vgt_redis_stop(&E.redis);
    produce(&s, 5000, 20000);
    sleep(5);
    cr_assert_eq(vgt_redis_restart(&E.redis), 0);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "events produced while Redis was away all arrive");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0.1), -1, "the daemon is still running");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

Test(daemon, invalid_events_are_skipped_and_counted, .init = setup16, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "v", 200, 3000, 4);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    static char big[(1 << 20) + 64];
    memset(big, 0, sizeof big);
    strcpy(big, "{\"user\":\"bad-9\",\"item\":\"");
    memset(big + strlen(big), 'y', 1 << 20);
    strcat(big, "\",\"ts\":1}");
    const char *bad[] = {
        "{not json", "{\"user\":\"bad-2\"}", "{\"user\":\"\",\"item\":\"i1\",\"ts\":1}",
        "{\"user\":\"bad-5\",\"item\":\"i\\u0001x\",\"ts\":1}", "{\"user\":\"bad-6\",\"item\":\"i1\",\"ts\":\"now\"}",
        "bad-7,i1", "\x01\x02\x03", big,
        "{\"user\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"item\":\"i1\",\"ts\":1}",
    };
    const int n_bad = sizeof bad / sizeof bad[0];
    size_t lens[16];
    for (int k = 0; k < n_bad; k++)
        lens[k] = strlen(bad[k]);
    write_conf("listen = 127.0.0.1:0\n"); /* a second listen line: must be refused */
    int rc = vgt_wait_exit(vgt_env_spawn(&E, "--check-config", NULL), 30);
    cr_assert_neq(rc, 0, "a key set twice is refused");
    write_conf(NULL);
    E.daemon = vgt_env_spawn(&E, NULL);
    produce(&s, 0, 1500);
    cr_assert_eq(vgt_produce(E.addr, "clicks", NULL, bad, lens, (size_t)n_bad), 0);
    produce(&s, 1500, 3000);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 120), 0, "every valid event processed");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0.1), -1, "the daemon is still running");
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "KEYS hist:bad*");
    cr_assert_eq(r->elements, 0, "no history for invalid events");
    freeReplyObject(r);
    redisFree(c);
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), x.n_users);
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    /* the log counted them */
    FILE *f = fopen(E.log, "r");
    char line[4096];
    int logged = 0;
    while (fgets(line, sizeof line, f))
        logged += strstr(line, "invalid event skipped") != NULL;
    fclose(f);
    cr_assert_eq(logged, n_bad, "each invalid event logged once (%d)", logged);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

Test(daemon, bad_configuration_names_the_key, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_conf("[serve]\ntopn = 5\n");
    char out[4300];
    snprintf(out, sizeof out, "%s.out", E.conf);
    int rc = vgt_wait_exit(vgt_env_spawn(&E, "--check-config", NULL), 30);
    cr_assert_neq(rc, 0);
    FILE *f = fopen(E.log, "r");
    char buf[8192] = {0};
    fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert(strstr(buf, "serve.topn"), "the message names the key: %s", buf);
    /* and the daemon itself refuses to start */
    rc = vgt_wait_exit(vgt_env_spawn(&E, NULL), 30);
    cr_assert_neq(rc, 0);
}

/* READY=1 once the group is joined, STOPPING=1 on SIGTERM, on a socket bound here. */
Test(daemon, notifies_systemd, .init = setup16, .fini = teardown, .timeout = 120)
{
    int fd = vgt_env_spawn_notify(&E);
    cr_assert_geq(fd, 0, "a notify socket and the daemon");
    cr_assert(vgt_notify_wait(fd, "READY=1", 60), "READY=1 arrives");
    kill(E.daemon, SIGTERM);
    cr_assert(vgt_notify_wait(fd, "STOPPING=1", 60), "STOPPING=1 arrives");
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    close(fd);
}

Test(daemon, replay_backfills_histories_and_lists, .init = setup16, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "p", 300, 6000, 5);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    char data[4300];
    snprintf(data, sizeof data, "%s/events.json", vg_tmpdir);
    FILE *f = fopen(data, "w");
    for (size_t k = 0; k < s.n; k++)
        fprintf(f, "%s\n", s.val[k]);
    fprintf(f, "{broken\n");
    fclose(f);
    int rc = vgt_wait_exit(vgt_env_spawn(&E, "--replay", data, "--epochs", "2", NULL), 240);
    cr_assert_eq(rc, 0, "--replay exits 0");
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 1), 0, "histories written");
    cr_assert_eq(recs_bad(&x, N_ITEMS), 0, "a list for every user, excluding history");
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "HGET vaegan:model step");
    cr_assert(r->type == REDIS_REPLY_STRING && atoll(r->str) > 0, "vaegan:model step written");
    freeReplyObject(r);
    redisFree(c);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* ---- continuous training (issue: online training) ------------------------------ */

static int model_field(const char *field, double *v)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "HGET vaegan:model %s", field);
    int ok = r && r->type == REDIS_REPLY_STRING;
    if (ok)
        *v = atof(r->str);
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

static double wait_step_above(double above, double timeout)
{
    double end = vg_mono_s() + timeout, step = -1;
    while (vg_mono_s() < end && !(model_field("step", &step) && step > above))
        vgt_sleep_ms(50);
    return step;
}

static void del_model(void)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "DEL vaegan:model"));
    redisFree(c);
}

Test(training, state_survives_sigterm_and_kill_9, .init = setup16, .fini = teardown, .timeout = 900)
{
    vgt_stream_t s;
    make_stream(&s, "t", 300, 6000, 6);
    produce(&s, 0, 3000);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_gt(wait_step_above(20, GUARD_S), 20, "the trainer advances vaegan:model step");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    double t1, a1;
    cr_assert(model_field("step", &t1) && model_field("alpha", &a1));
    cr_assert_gt(a1, 0, "alpha anneals upward from 0");
    del_model();

    E.daemon = vgt_env_spawn(&E, NULL);
    double first = wait_step_above(-1, GUARD_S), fa;
    cr_assert_geq(first, t1, "the first step written after a restart continues (%g after %g)", first, t1);
    cr_assert(model_field("alpha", &fa) && fa >= a1, "alpha is not reset (%g after %g)", fa, a1);
    produce(&s, 3000, 6000);
    double t2 = wait_step_above(t1 + 10, GUARD_S);
    cr_assert_gt(t2, t1 + 10);
    /* a checkpoint (every 2 s) of a step >= t2: the log says so (level debug) */
    double saved = -1;
    double end = vg_mono_s() + GUARD_S;
    while ((saved = vgt_log_number_after(&E, "checkpoint: step ")) < t2 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_geq(saved, t2, "a checkpoint after step %g is written (last: %g)", t2, saved);
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    del_model();
    E.daemon = vgt_env_spawn(&E, NULL);
    double t3 = wait_step_above(-1, GUARD_S);
    cr_assert_geq(t3, t2, "after kill -9 the step resumes from the last checkpoint (%g, %g before)", t3, t2);
    vgt_stream_free(&s);
}

Test(training, a_new_item_becomes_recommendable, .init = setup16, .fini = teardown, .timeout = 600)
{
    vgt_stream_t s;
    make_stream(&s, "n", 300, 6000, 7);
    write_conf("[serve]\nrefresh_s = 5\n[train]\nmin_new_events = 1\n");
    produce(&s, 0, 6000);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_gt(wait_step_above(10, GUARD_S), 10);
    /* 100 users click an item nobody has seen; the others must get it from the daemon's refresh */
    char *keys[100], *vals[100];
    size_t lens[100];
    for (int k = 0; k < 100; k++) {
        char v[128];
        keys[k] = s.key[k];
        snprintf(v, sizeof v, "{\"user\":\"%s\",\"item\":\"brand-new\",\"ts\":1800000000}", s.key[k]);
        vals[k] = strdup(v);
        lens[k] = strlen(v);
    }
    cr_assert_eq(vgt_produce(E.addr, "clicks", (const char *const *)keys, (const char *const *)vals, lens, 100), 0);
    redisContext *c = vgt_redis_connect(&E.redis);
    double end = vg_mono_s() + GUARD_S;
    int seen = 0;
    while (!seen && vg_mono_s() < end) {
        for (int u = 0; u < 300 && !seen; u++) {
            redisReply *r = redisCommand(c, "ZSCORE rec:n%d brand-new", u);
            seen = r && r->type == REDIS_REPLY_STRING;
            freeReplyObject(r);
        }
        vgt_sleep_ms(500);
    }
    redisFree(c);
    cr_assert(seen, "brand-new appears in some rec:<user> list without a restart");
    for (int k = 0; k < 100; k++)
        free(vals[k]);
    vgt_stream_free(&s);
}

/* Writes text to state.dir/name (before the daemon's first start). */
static void write_state_file(const char *name, const char *text)
{
    char path[4400];
    mkdir(E.state, 0755);
    snprintf(path, sizeof path, "%s/%s", E.state, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(training, a_corrupt_state_file_is_refused, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_state_file("model.ckpt", "VAEGANST but not really a state file");
    int rc = vgt_wait_exit(vgt_env_spawn(&E, NULL), 30);
    cr_assert_neq(rc, 0, "a corrupt state file stops the start");
    cr_assert(vgt_log_has(&E, "model.ckpt") && vgt_log_has(&E, "--reset-model"), "the message names the file");
    /* --reset-model starts afresh on purpose */
    E.daemon = vgt_env_spawn(&E, "--reset-model", NULL);
    cr_assert_eq(vgt_wait_log(&E, "consumer group joined", NULL, 1, 60), 1, "started with --reset-model");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0), -1, "and running");
}

/* ---- topics, event types, erasure ------------------------------------------------ */

static void setup_topics(void)
{
    static const char *const topics[] = {"views", "buys"};
    setup_topics_of(topics, 2, 8);
    E.topics = "topics = views, buys";
    write_conf(NULL);
}

/* Events from two topics, kill -9 mid-stream: every (user, item) of both
 * topics ends up in hist:<user> (offsets are kept per topic and partition). */
Test(events, two_topics_kill_9_loses_nothing, .init = setup_topics, .fini = teardown, .timeout = 300)
{
    vgt_stream_t s;
    make_stream(&s, "t", 800, 20000, 5);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    produce_to("views", &s, 0, 5000);
    produce_to("buys", &s, 5000, 10000);
    E.daemon = vgt_env_spawn(&E, NULL);
    double end = vg_mono_s() + 60;
    while (vgt_zcard(&E, "vaegan:users") < 200 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    produce_to("buys", &s, 10000, 15000);
    produce_to("views", &s, 15000, 20000);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, 180), 0, "histories differ from the two topics after kill -9");
    cr_assert_eq(vgt_zcard(&E, "vaegan:users"), x.n_users);
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

static void send_events(const char *const *vals, size_t n)
{
    const char *keys[16];
    for (size_t k = 0; k < n; k++) {
        const char *u = strstr(vals[k], "\"user\":\"") + 8;
        static char buf[16][64];
        snprintf(buf[k], sizeof buf[k], "%.*s", (int)(strchr(u, '"') - u), u);
        keys[k] = buf[k];
    }
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys, vals, NULL, n), 0);
}

static char *zset_text(const char *key)
{
    static char out[1024];
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    size_t o = 0;
    out[0] = '\0';
    for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2)
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%s:%s", o ? " " : "", r->element[k]->str,
                              r->element[k + 1]->str);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* Waits until key's ZRANGE WITHSCORES text is want. */
static int wait_zset(const char *key, const char *want, double timeout)
{
    double end = vg_mono_s() + timeout;
    while (strcmp(zset_text(key), want) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    if (strcmp(zset_text(key), want) != 0) {
        vgt_show_log(&E, key);
        fprintf(stderr, "%s is \"%s\", want \"%s\"\n", key, zset_text(key), want);
        return 0;
    }
    return 1;
}

/* Interactions of every configured type enter the history, other types are
 * skipped, and between an interaction and a removal of one item the later
 * ts wins whatever the arrival order. */
Test(events, types_and_removals_ordered_by_ts, .init = setup16, .fini = teardown, .timeout = 120)
{
    /* min_item_users = 1: the items of one user (o) are recommendable */
    write_conf("[events]\ntypes = click, purchase\nremoval_types = remove, dislike\n[model]\nmin_item_users = 1\n");
    E.daemon = vgt_env_spawn(&E, NULL);
    const char *first[] = {
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":90}",
        "{\"user\":\"r\",\"item\":\"b\",\"ts\":95,\"type\":\"purchase\"}",
        "{\"user\":\"r\",\"item\":\"c\",\"ts\":96,\"type\":\"view\"}",
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":100,\"type\":\"remove\"}",
        "{\"user\":\"r\",\"item\":\"x\",\"ts\":50}",
        "{\"user\":\"o\",\"item\":\"p\",\"ts\":1}", /* items to recommend */
        "{\"user\":\"o\",\"item\":\"q\",\"ts\":2}",
    };
    send_events(first, 7);
    cr_assert(wait_zset("hist:r", "x:50 b:95", 60), "click, purchase kept; view skipped; a removed");
    const char *later[] = {
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":95}",                          /* older than its removal */
        "{\"user\":\"r\",\"item\":\"x\",\"ts\":40,\"type\":\"dislike\"}",   /* older than the click */
        "{\"user\":\"r\",\"item\":\"y\",\"ts\":60}",
    };
    send_events(later, 3);
    cr_assert(wait_zset("hist:r", "x:50 y:60 b:95", 60), "the later ts wins");
    cr_assert_str_eq(zset_text("rm:r"), "x:40 a:100");
    const char *newer[] = {"{\"user\":\"r\",\"item\":\"a\",\"ts\":110}"};
    send_events(newer, 1);
    cr_assert(wait_zset("hist:r", "x:50 y:60 b:95 a:110", 60), "a click newer than the removal wins");
    /* the list is re-ranked and never holds a history item */
    double end = vg_mono_s() + 60;
    int ok = 0;
    while (!ok && vg_mono_s() < end) {
        redisContext *c = vgt_redis_connect(&E.redis);
        redisReply *r = redisCommand(c, "ZRANGE rec:r 0 -1");
        ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        for (size_t k = 0; ok && k < r->elements; k++)
            ok = strchr("xyba", r->element[k]->str[0]) == NULL || r->element[k]->str[1];
        freeReplyObject(r);
        redisFree(c);
        if (!ok)
            vgt_sleep_ms(100);
    }
    cr_assert(ok, "rec:r holds no item of the final history");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = vgt_env_spawn(&E, NULL); /* the removals are read back: an old click stays refused */
    const char *old[] = {"{\"user\":\"r\",\"item\":\"x\",\"ts\":30,\"type\":\"remove\"}",
                         "{\"user\":\"r\",\"item\":\"z\",\"ts\":1,\"type\":\"remove\"}",
                         "{\"user\":\"r\",\"item\":\"z\",\"ts\":0.5}",
                         "{\"user\":\"r\",\"item\":\"w\",\"ts\":61}"};
    send_events(old, 4);
    cr_assert(wait_zset("hist:r", "x:50 y:60 w:61 b:95 a:110", 60), "after a restart the removals still order");
}

static int exists(const char *key)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    int n = r && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* A forget erases everything about the user; the user's older events —
 * after a kill -9 too — do not bring it back; a newer click starts afresh. */
Test(events, forget_erases_the_user, .init = setup16, .fini = teardown, .timeout = 180)
{
    write_conf("[model]\nmin_item_users = 1\n"); /* the items of one user (o) are recommendable */
    E.daemon = vgt_env_spawn(&E, NULL);
    const char *items[] = {"{\"user\":\"o\",\"item\":\"p\",\"ts\":1}", /* items to recommend, first */
                           "{\"user\":\"o\",\"item\":\"q\",\"ts\":2}"};
    send_events(items, 2);
    cr_assert(wait_zset("hist:o", "p:1 q:2", 60));
    const char *before[] = {"{\"user\":\"secret-42\",\"item\":\"a\",\"ts\":100}",
                            "{\"user\":\"secret-42\",\"item\":\"b\",\"ts\":110}",
                            "{\"user\":\"g\",\"item\":\"a\",\"ts\":100}"};
    send_events(before, 3);
    double end = vg_mono_s() + 60;
    while ((exists("rec:secret-42") != 1 || exists("rec:g") != 1) && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(exists("rec:secret-42"), 1);
    pid_t f = vgt_env_spawn(&E, "--forget", "secret-42", NULL); /* produces {"user":..,"type":"forget","ts":now} */
    cr_assert_eq(vgt_wait_exit(f, 60), 0, "vaegand --forget exits 0");
    end = vg_mono_s() + 60;
    while (vgt_zcard(&E, "vaegan:forgotten") != 1 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(vgt_zcard(&E, "vaegan:forgotten"), 1, "one erasure mark");
    cr_assert_eq(exists("hist:secret-42") + exists("rec:secret-42") + exists("rm:secret-42"), 0, "no key left");
    cr_assert_str_eq(zset_text("vaegan:users"), "o:2 g:100");
    cr_assert_null(strstr(zset_text("vaegan:forgotten"), "secret"), "the mark does not hold the id");
    /* later work of the loop and the scorer (a click of g, re-ranked) does not bring the user back */
    const char *g2[] = {"{\"user\":\"g\",\"item\":\"b\",\"ts\":120}"};
    send_events(g2, 1);
    cr_assert(wait_zset("hist:g", "a:100 b:120", 60));
    end = vg_mono_s() + 60;
    while (strstr(zset_text("rec:g"), "b:") && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_null(strstr(zset_text("rec:g"), "b:"), "g re-ranked");
    cr_assert_eq(exists("rec:secret-42"), 0, "no list written for the forgotten user");
    /* kill -9, then the user's earlier events again (as a redelivery would) */
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    E.daemon = vgt_env_spawn(&E, NULL);
    const char *again[] = {"{\"user\":\"secret-42\",\"item\":\"a\",\"ts\":100}",
                           "{\"user\":\"secret-42\",\"item\":\"c\",\"ts\":200}",
                           "{\"user\":\"g\",\"item\":\"c\",\"ts\":130}"};
    send_events(again, 3);
    cr_assert(wait_zset("hist:g", "a:100 b:120 c:130", 60), "events after them were applied");
    cr_assert_eq(exists("hist:secret-42") + exists("rec:secret-42"), 0, "the user stays forgotten");
    /* a click newer than the forget starts a fresh history */
    const char *fresh[] = {"{\"user\":\"secret-42\",\"item\":\"d\",\"ts\":4000000000}"};
    send_events(fresh, 1);
    cr_assert(wait_zset("hist:secret-42", "d:4000000000", 60), "a fresh history");
    end = vg_mono_s() + 60;
    while (exists("rec:secret-42") != 1 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(exists("rec:secret-42"), 1, "and a list again");
}

/* A damaged erasure key stops the start (forgotten users would come back). */
Test(events, a_damaged_erasure_key_is_refused, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_state_file("forget.key", "short");
    cr_assert_neq(vgt_wait_exit(vgt_env_spawn(&E, NULL), 30), 0, "a damaged key stops the start");
    cr_assert(vgt_log_has(&E, "forget.key") && vgt_log_has(&E, "32 bytes"), "the message names the file");
}

/* ---- start-up refusals ------------------------------------------------------------- */


/* A second vaegand, or --replay, on the state directory of a running one is
 * refused instead of overwriting its model. */
Test(daemon, a_state_dir_in_use_is_refused, .init = setup16, .fini = teardown, .timeout = 120)
{
    E.daemon = vgt_env_spawn(&E, NULL);
    double end = vg_mono_s() + 60;
    while (!vgt_log_has(&E, "history entries") && vg_mono_s() < end) /* past the lock: the histories are loaded */
        vgt_sleep_ms(20);
    cr_assert(vgt_log_has(&E, "history entries"), "the first daemon started");
    cr_assert_neq(vgt_wait_exit(vgt_env_spawn(&E, NULL), 30), 0, "a second daemon on the same state.dir stops");
    cr_assert(vgt_log_has(&E, "is in use by another vaegand"), "and says why");
    char data[4300];
    snprintf(data, sizeof data, "%s/events.json", vg_tmpdir);
    FILE *f = fopen(data, "w");
    fputs("{\"user\":\"u\",\"item\":\"i\",\"ts\":1}\n", f);
    fclose(f);
    cr_assert_neq(vgt_wait_exit(vgt_env_spawn(&E, "--replay", data, NULL), 30), 0, "so does --replay");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0, "the running one is untouched and stops cleanly");
    E.daemon = 0;
    cr_assert_eq(vgt_wait_exit(vgt_env_spawn(&E, "--replay", data, "--epochs", "1", NULL), 120), 0,
                 "free again after its stop");
}

/* A librdkafka option typo is a configuration error (exit 78), for
 * --check-config and at start, before anything else starts. */
Test(daemon, a_kafka_option_typo_is_a_config_error, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_conf("[kafka]\noption.fetch.wait.max.msx = 10\n");
    cr_assert_eq(vgt_wait_exit(vgt_env_spawn(&E, "--check-config", NULL), 30), 78);
    cr_assert(vgt_log_has(&E, "kafka.option.fetch.wait.max.msx"), "the message names the option");
    cr_assert_eq(vgt_wait_exit(vgt_env_spawn(&E, NULL), 30), 78, "the daemon refuses to start the same way");
}
