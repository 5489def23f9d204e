/*
 * test_store.c — cache/store.c against a real redis-server started per test
 * (tests/support/redis.h): history writes (GT, cap, users), prefix/db/password,
 * atomic recommendation lists with TTL, model metadata, the start-up load
 * (also across a killed connection), delivery across a Redis restart,
 * error replies (permanent and server-state), backoff, close, and a
 * throughput measurement (printed, not asserted).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "cache/dump.h"
#include "cache/resp.h"
#include "cache/store.h"
#include "tests/support/loop.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

/* ---- harness ---------------------------------------------------------------------------- */

static uv_loop_t loop;
static vgt_redis_t R;
static vg_store_t *S;
static int ups, downs;
static int nlog[4];
static char logbuf[65536];
static size_t loglen;

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level >= 0 && level < 4)
        nlog[level]++;
    int n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "%d %s\n", level, msg);
    if (n > 0 && (size_t)n < sizeof logbuf - loglen)
        loglen += (size_t)n;
    if (getenv("VG_TEST_VERBOSE"))
        fprintf(stderr, "[store %d] %s\n", level, msg);
}

static void on_up(void *ud, int up)
{
    (void)ud;
    if (up)
        ups++;
    else
        downs++;
}

static void setup(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&R, 0, sizeof R);
}

static void teardown(void)
{
    vgt_redis_stop(&R);
    vg_tmpdir_remove();
}

static void start_redis(int aof) { cr_assert_eq(vgt_redis_start(&R, vg_tmpdir, aof), 0); }

static vg_store_cfg_t base_cfg(void)
{
    vg_store_cfg_t c;
    memset(&c, 0, sizeof c);
    c.socket = R.sock;
    c.history_max = 500;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 400;
    c.on_up = on_up;
    c.log = test_log;
    return c;
}

static vg_store_t *open_store(const vg_store_cfg_t *c)
{
    vg_store_t *s = NULL;
    char err[256];
    int rc = vg_store_init(&s, &loop, c, err, sizeof err);
    cr_assert_eq(rc, 0, "vg_store_init: %s", err);
    cr_assert_str_eq(err, "");
    return s;
}

/* Runs the loop until pred(arg) holds or ms pass; returns pred(arg). */
static int wait_for(int (*pred)(void *), void *arg, int ms) { return vgt_loop_until(&loop, pred, arg, ms, NULL); }

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void spin(int ms) { wait_for(never, NULL, ms); }

static int is_up(void *arg) { return vg_store_is_up(arg); }

static int is_idle(void *arg) { return vg_store_pending(arg) == 0; }

/* Closes the store and runs the loop to its end; asserts nothing is left. */
static void close_store(vg_store_t *s)
{
    vg_store_close(s);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}

typedef struct job {
    int calls;
    int status;
    int order;
    size_t n_ev;
    int ev_err_null;     /* a history job's ev_err was NULL */
    char ev_err[8][160]; /* its first per-event errors ("" = stored) */
} job_t;
static int job_seq;

static void job_cb(void *ud, int status)
{
    job_t *j = ud;
    j->calls++;
    j->status = status;
    j->order = job_seq++;
}

/* A history job's callback: job_cb, plus what it said of each event. */
static void ev_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    job_t *j = ud;
    job_cb(ud, status);
    j->n_ev = n;
    j->ev_err_null = ev_err == NULL;
    for (size_t k = 0; k < n && k < 8; k++)
        snprintf(j->ev_err[k], sizeof j->ev_err[k], "%s", ev_err && ev_err[k] ? ev_err[k] : "");
}

static int job_done(void *arg) { return ((job_t *)arg)->calls > 0; }

static vg_store_event_t EV(const char *u, const char *i, double ts)
{
    vg_store_event_t e = {.user = u, .user_len = strlen(u), .item = i, .item_len = strlen(i), .ts = ts};
    return e;
}

static vg_store_event_t RM(const char *u, const char *i, double ts)
{
    vg_store_event_t e = {.user = u, .user_len = strlen(u), .item = i, .item_len = strlen(i), .ts = ts, .removal = 1};
    return e;
}

/* ---- synchronous checks ------------------------------------------------------------------ */

static redisContext *cli(const char *pass, int db)
{
    redisContext *c = vgt_redis_connect(&R);
    cr_assert_not_null(c);
    redisReply *r;
    if (pass) {
        r = redisCommand(c, "AUTH %s", pass);
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(c, "SELECT %d", db);
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    return c;
}

static void cmd_ok(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s: %s", fmt, r->str);
    freeReplyObject(r);
}

static long long cmd_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s", fmt);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* A score as short text that reads back exactly ("0.1", "-1.25", "40"). */
static void fmt_score(char *out, size_t n, const char *redis_text)
{
    double v = strtod(redis_text, NULL);
    snprintf(out, n, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, n, "%.17g", v);
}

/* "member:score ..." of ZRANGE key 0 -1 WITHSCORES (ascending), into a static buffer. */
static const char *zset(redisContext *c, const char *key)
{
    static char out[8192];
    redisReply *r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "ZRANGE %s: %s", key, r ? r->str : "?");
    size_t w = 0;
    out[0] = '\0';
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        char sc[64];
        fmt_score(sc, sizeof sc, r->element[i + 1]->str);
        w += (size_t)snprintf(out + w, sizeof out - w, "%s%s:%s", i ? " " : "",
                              r->element[i]->str, sc);
    }
    freeReplyObject(r);
    return out;
}

/* ---- history writes ---------------------------------------------------------------------- */

Test(store, history_gt_cap_users_order, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.history_max = 3;
    S = open_store(&cfg);
    cr_assert_eq(vg_store_is_up(S), 0, "up before the loop ran");
    cr_assert(wait_for(is_up, S, 5000), "never up: %s", vg_store_errstr(S));
    cr_assert_eq(ups, 1);

    job_t j1 = {0}, j2 = {0}, j3 = {0}, j4 = {0};
    vg_store_event_t b1[] = {EV("u1", "a", 10), EV("u1", "b", 20), EV("u1", "a", 5),
                             EV("u2", "x", 7), EV("u3", "a", 10)};
    cr_assert_eq(vg_store_add_events(S, b1, 5, ev_cb, &j1), 0);
    cr_assert_eq(vg_store_pending(S), 1);
    cr_assert_eq(j1.calls, 0, "callback from inside the call");
    cr_assert(wait_for(job_done, &j1, 5000));
    cr_assert_eq(j1.status, 0);

    redisContext *c = cli(NULL, 0);
    cr_assert_str_eq(zset(c, "hist:u1"), "a:10 b:20", "GT within one batch");

    vg_store_event_t b2[] = {EV("u1", "a", 3),  EV("u1", "c", 30), EV("u1", "d", 40),
                             EV("u2", "y", 1),  EV("u3", "a", 50), EV("u3", "b", 2)};
    cr_assert_eq(vg_store_add_events(S, b2, 6, ev_cb, &j2), 0);
    /* binary-safe ids: CR, LF, space and '*' inside an item */
    const char weird[] = "i\r\n *3$";
    vg_store_event_t b3[] = {{.user = "u4", .user_len = 2, .item = weird, .item_len = sizeof weird - 1, .ts = 1.5}};
    cr_assert_eq(vg_store_add_events(S, b3, 1, ev_cb, &j3), 0);
    cr_assert_eq(vg_store_add_events(S, NULL, 0, ev_cb, &j4), 0); /* barrier */
    cr_assert(wait_for(job_done, &j4, 5000));
    cr_assert_eq(j2.calls, 1);
    cr_assert_eq(j3.calls, 1);
    cr_assert_eq(j4.calls, 1);
    cr_assert(j1.order < j2.order && j2.order < j3.order && j3.order < j4.order,
              "callbacks out of order");
    cr_assert_eq(j2.status + j3.status + j4.status, 0);

    cr_assert_str_eq(zset(c, "hist:u1"), "b:20 c:30 d:40", "cap keeps the 3 most recent");
    cr_assert_str_eq(zset(c, "hist:u2"), "y:1 x:7");
    cr_assert_str_eq(zset(c, "hist:u3"), "b:2 a:50", "GT raises, never lowers");
    cr_assert_str_eq(zset(c, "vaegan:users"), "u4:1.5 u2:7 u1:40 u3:50");
    redisReply *r = redisCommand(c, "ZSCORE hist:u4 %b", weird, sizeof weird - 1);
    cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1.5") == 0);
    freeReplyObject(r);

    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.jobs_done, 4);
    cr_assert_eq(st.pending, 0);
    cr_assert_eq(st.pending_bytes, 0);
    cr_assert_eq(st.errors, 0);
    cr_assert_eq(st.up, 1);
    cr_assert(st.replies >= 4 + 3 * 2 + 2 + 1, "replies %llu", (unsigned long long)st.replies);

    /* bad arguments are refused and nothing is queued */
    vg_store_event_t bad = EV("u", "i", NAN);
    cr_assert_eq(vg_store_add_events(S, &bad, 1, ev_cb, &j1), VG_EINVAL);
    cr_assert_eq(vg_store_add_events(S, NULL, 3, ev_cb, &j1), VG_EINVAL);
    cr_assert_eq(vg_store_set_model(S, 0, NULL, NULL, 0, NULL, NULL), VG_EINVAL);
    cr_assert_eq(vg_store_pending(S), 0);

    redisFree(c);
    close_store(S);
    cr_assert_eq(j1.calls, 1);
    cr_assert_eq(downs, 0, "on_up(0) at close");
}

/* no_trim: a user whose every event says so gets no ZREMRANGEBYRANK (the
 * daemon's mirror knows the history stays within the cap); one event
 * without it trims the user's whole batch. */
Test(store, no_trim_leaves_out_the_cap, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.history_max = 2;
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000), "never up: %s", vg_store_errstr(S));
    redisContext *c = cli(NULL, 0);
    freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
    job_t j1 = {0}, j2 = {0};
    vg_store_event_t b1[] = {EV("u1", "a", 1), EV("u1", "b", 2), EV("u1", "c", 3), EV("u2", "x", 1)};
    for (int k = 0; k < 4; k++)
        b1[k].no_trim = 1;
    cr_assert_eq(vg_store_add_events(S, b1, 4, ev_cb, &j1), 0);
    cr_assert(wait_for(job_done, &j1, 5000));
    cr_assert_eq(j1.status, 0);
    cr_assert_str_eq(zset(c, "hist:u1"), "a:1 b:2 c:3", "no cap applied");
    redisReply *r = redisCommand(c, "INFO commandstats");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert_null(strstr(r->str, "cmdstat_zremrangebyrank"), "a trim was sent:\n%s", r->str);
    freeReplyObject(r);
    vg_store_event_t b2[] = {EV("u1", "d", 4), EV("u1", "e", 5)};
    b2[0].no_trim = 1; /* the other one asks for the cap: the user is trimmed */
    cr_assert_eq(vg_store_add_events(S, b2, 2, ev_cb, &j2), 0);
    cr_assert(wait_for(job_done, &j2, 5000));
    cr_assert_eq(j2.status, 0);
    cr_assert_str_eq(zset(c, "hist:u1"), "d:4 e:5");
    cr_assert_str_eq(zset(c, "hist:u2"), "x:1");
    redisFree(c);
    close_store(S);
}

Test(store, prefix_db_password, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "CONFIG SET requirepass s3cret");
    redisFree(c);

    vg_store_cfg_t cfg = base_cfg();
    cfg.password = "s3cret";
    cfg.db = 5;
    cfg.prefix = "pf:";
    S = open_store(&cfg);
    job_t j1 = {0}, j2 = {0}, j3 = {0};
    vg_store_event_t ev[] = {EV("u1", "a", 1), EV("u1", "b", 2)};
    cr_assert_eq(vg_store_add_events(S, ev, 2, ev_cb, &j1), 0); /* queued before connecting */
    const char *items[] = {"x"};
    size_t lens[] = {1};
    double sc[] = {0.5};
    cr_assert_eq(vg_store_put_rec(S, "u1", 2, items, lens, sc, 1, 1.0, job_cb, &j2), 0);
    const char *f[] = {"step"}, *v[] = {"7"};
    cr_assert_eq(vg_store_set_model(S, 0, f, v, 1, job_cb, &j3), 0);
    cr_assert(wait_for(job_done, &j3, 5000), "%s", vg_store_errstr(S));
    cr_assert_eq(j1.status + j2.status + j3.status, 0);

    c = cli("s3cret", 5);
    cr_assert_str_eq(zset(c, "pf:hist:u1"), "a:1 b:2");
    cr_assert_str_eq(zset(c, "pf:vaegan:users"), "u1:2");
    cr_assert_str_eq(zset(c, "pf:rec:u1"), "x:0.5");
    redisReply *r = redisCommand(c, "HGET pf:vaegan:model step");
    cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "7") == 0);
    freeReplyObject(r);
    cr_assert_eq(cmd_int(c, "EXISTS pf:recver:u1"), 1);
    cr_assert_eq(cmd_int(c, "DBSIZE"), 5);
    cr_assert_eq(cmd_int(c, "EXISTS hist:u1"), 0);
    cmd_ok(c, "SELECT 0");
    cr_assert_eq(cmd_int(c, "DBSIZE"), 0, "written to db 0");
    redisFree(c);
    close_store(S);
}

Test(store, wrong_password_retries_until_fixed, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "CONFIG SET requirepass s3cret");
    vg_store_cfg_t cfg = base_cfg();
    cfg.password = "nope";
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 100;
    S = open_store(&cfg);
    job_t j = {0};
    vg_store_event_t ev[] = {EV("u", "i", 1)};
    cr_assert_eq(vg_store_add_events(S, ev, 1, ev_cb, &j), 0);
    spin(700);
    cr_assert_eq(vg_store_is_up(S), 0);
    cr_assert_eq(ups, 0);
    cr_assert_eq(j.calls, 0);
    cr_assert_eq(vg_store_pending(S), 1);
    cr_assert(strstr(vg_store_errstr(S), "AUTH") != NULL, "errstr: %s", vg_store_errstr(S));
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert(st.connect_failures >= 3, "failures %llu", (unsigned long long)st.connect_failures);
    cr_assert(nlog[VG_LOG_WARN] <= 2, "warnings not rate-limited: %d", nlog[VG_LOG_WARN]);

    /* the operator fixes the password: the queued job goes through */
    redisReply *r = redisCommand(c, "AUTH s3cret");
    freeReplyObject(r);
    cmd_ok(c, "CONFIG SET requirepass nope");
    cr_assert(wait_for(job_done, &j, 5000));
    cr_assert_eq(j.status, 0);
    cr_assert_eq(ups, 1);
    cr_assert_str_eq(zset(c, "hist:u"), "i:1");
    redisFree(c);
    close_store(S);
}

Test(store, unreachable_backs_off, .init = setup, .fini = teardown, .timeout = 30)
{
    vg_store_cfg_t cfg = base_cfg();
    cfg.socket = NULL;
    cfg.host = "127.0.0.1";
    cfg.port = 1; /* nothing listens there */
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 80;
    S = open_store(&cfg);
    spin(700);
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.up, 0);
    /* 20, 40, 80, 80, ... ms: about 10 attempts in 700 ms, not hundreds */
    cr_assert(st.connect_failures >= 4 && st.connect_failures <= 20, "attempts %llu",
              (unsigned long long)st.connect_failures);
    cr_assert(strlen(vg_store_errstr(S)) > 0);
    cr_assert(nlog[VG_LOG_WARN] >= 1 && nlog[VG_LOG_WARN] <= 2, "warnings %d", nlog[VG_LOG_WARN]);
    cr_assert(strstr(logbuf, "127.0.0.1:1") != NULL, "%s", logbuf);
    close_store(S);
}

Test(store, silent_server_times_out_the_handshake, .init = setup, .fini = teardown, .timeout = 30)
{
    /* a unix socket that accepts connections (backlog) and never answers */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/mute.sock", vg_tmpdir);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 16), 0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.socket = sa.sun_path;
    cfg.connect_timeout_ms = 150;
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 40;
    S = open_store(&cfg);
    spin(800);
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.up, 0);
    cr_assert(st.connect_failures >= 2 && st.connect_failures <= 8, "attempts %llu",
              (unsigned long long)st.connect_failures);
    cr_assert(strstr(vg_store_errstr(S), "timed out"), "errstr: %s", vg_store_errstr(S));
    close_store(S);
    close(fd);
}

/* ---- recommendation lists and model metadata ----------------------------------------------- */

Test(store, put_rec_replaces_atomically_with_ttl, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.rec_ttl_s = 100;
    S = open_store(&cfg);
    redisContext *c = cli(NULL, 0);

    job_t j1 = {0}, j2 = {0}, j3 = {0};
    const char *it5[] = {"i1", "i2", "i3", "i4", "i5"};
    size_t l5[] = {2, 2, 2, 2, 2};
    double s5[] = {5, 4, 3, 2.5, -1.25};
    cr_assert_eq(vg_store_put_rec(S, "u", 1, it5, l5, s5, 5, 1.0, job_cb, &j1), 0);
    cr_assert(wait_for(job_done, &j1, 5000));
    cr_assert_eq(j1.status, 0);
    cr_assert_str_eq(zset(c, "rec:u"), "i5:-1.25 i4:2.5 i3:3 i2:4 i1:5");
    long long ttl = cmd_int(c, "TTL rec:u");
    cr_assert(ttl > 0 && ttl <= 100, "ttl %lld", ttl);

    const char *it2[] = {"j1", "i1"};
    size_t l2[] = {2, 2};
    double s2[] = {0.1, 9};
    cr_assert_eq(vg_store_put_rec(S, "u", 1, it2, l2, s2, 2, 1.0, job_cb, &j2), 0);
    cr_assert(wait_for(job_done, &j2, 5000));
    cr_assert_eq(j2.status, 0);
    cr_assert_str_eq(zset(c, "rec:u"), "j1:0.1 i1:9", "stale members left");
    ttl = cmd_int(c, "TTL rec:u");
    cr_assert(ttl > 0 && ttl <= 100, "ttl %lld", ttl);

    cr_assert_eq(vg_store_put_rec(S, "u", 1, NULL, NULL, NULL, 0, 1.0, job_cb, &j3), 0);
    cr_assert(wait_for(job_done, &j3, 5000));
    cr_assert_eq(j3.status, 0);
    cr_assert_eq(cmd_int(c, "EXISTS rec:u"), 0, "n = 0 must delete");

    /* cb may be NULL */
    cr_assert_eq(vg_store_put_rec(S, "w", 1, it2, l2, s2, 2, 1.0, NULL, NULL), 0);
    cr_assert(wait_for(is_idle, S, 5000));
    cr_assert_str_eq(zset(c, "rec:w"), "j1:0.1 i1:9");
    close_store(S);

    /* without a TTL the list does not expire */
    cr_assert_eq(uv_loop_init(&loop), 0);
    cfg.rec_ttl_s = 0;
    S = open_store(&cfg);
    cr_assert_eq(vg_store_put_rec(S, "v", 1, it2, l2, s2, 2, 1.0, job_cb, &j1), 0);
    cr_assert(wait_for(is_idle, S, 5000));
    cr_assert_eq(cmd_int(c, "TTL rec:v"), -1);
    redisFree(c);
    close_store(S);
}

/* A list of an older history version is refused by Redis (VG_ESTALE, the
 * newer list stays), an equal or newer one replaces it, whichever store
 * sends it — here two stores on one server, as two instances would — in
 * both forms (RESTORE and DEL/ZADD); recver:<user> keeps the version with
 * the list's TTL, and the erasure takes both away. */
Test(store, put_rec_never_goes_back_in_time, .init = setup, .fini = teardown, .timeout = 60)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.rec_ttl_s = 100;
    for (int form = 0; form < 2; form++) {
        if (form)
            cr_assert_eq(uv_loop_init(&loop), 0);
        cfg.rec_zadd = form;
        vg_store_t *a = open_store(&cfg), *b = open_store(&cfg);
        cr_assert(wait_for(is_up, a, 5000) && wait_for(is_up, b, 5000));
        const char *it_new[] = {"n1", "n2"}, *it_old[] = {"o1"};
        size_t l2[] = {2, 2};
        double s2[] = {2, 1};
        const char *user = form ? "z" : "r";
        char rec[16], ver[16];
        snprintf(rec, sizeof rec, "rec:%s", user);
        snprintf(ver, sizeof ver, "recver:%s", user);
        job_t j1 = {0}, j2 = {0}, j3 = {0}, j4 = {0};
        cr_assert_eq(vg_store_put_rec(a, user, 1, it_new, l2, s2, 2, 1700000200.5, job_cb, &j1), 0);
        cr_assert(wait_for(job_done, &j1, 5000));
        cr_assert_eq(j1.status, 0);
        cr_assert_eq(vg_store_put_rec(b, user, 1, it_old, l2, s2, 1, 1700000100.0, job_cb, &j2), 0);
        cr_assert(wait_for(job_done, &j2, 5000));
        cr_assert_eq(j2.status, VG_ESTALE, "an older list was not refused: %d", j2.status);
        cr_assert_str_eq(zset(c, rec), "n2:1 n1:2", "the older list replaced the newer one");
        cr_assert_eq(vg_store_put_rec(b, user, 1, it_old, l2, s2, 1, 1700000200.5, job_cb, &j3), 0);
        cr_assert(wait_for(job_done, &j3, 5000));
        cr_assert_eq(j3.status, 0, "a list of the same version is refused");
        cr_assert_str_eq(zset(c, rec), "o1:2");
        long long ttl = cmd_int(c, "TTL %s", ver);
        cr_assert(ttl > 0 && ttl <= 100, "the version's ttl %lld", ttl);
        cr_assert_eq(vg_store_forget(a, user, 1, "m", 1, 5.0, -INFINITY, job_cb, &j4), 0);
        cr_assert(wait_for(job_done, &j4, 5000));
        cr_assert_eq(cmd_int(c, "EXISTS %s", ver), 0, "the erasure left the version");
        vg_store_close(b);
        close_store(a);
    }
    redisFree(c);
}

/* The reply of a command as one string (for comparing whole ZRANGE replies). */
static char *reply_text(redisContext *c, const char *fmt, const char *key)
{
    redisReply *r = redisCommand(c, fmt, key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "%s %s", fmt, key);
    size_t n = 1;
    for (size_t i = 0; i < r->elements; i++)
        n += r->element[i]->len + 1;
    char *out = malloc(n), *p = out;
    for (size_t i = 0; i < r->elements; i++) {
        memcpy(p, r->element[i]->str, r->element[i]->len);
        p += r->element[i]->len;
        *p++ = '|';
    }
    *p = '\0';
    freeReplyObject(r);
    return out;
}

static long long restores(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    const char *x = r && r->str ? strstr(r->str, "cmdstat_restore:calls=") : NULL;
    long long n = x ? atoll(x + strlen("cmdstat_restore:calls=")) : 0;
    freeReplyObject(r);
    return n;
}

/* A list written by RESTORE (Redis >= 7) reads exactly as the same list
 * written by the script's DEL/ZADD, scores to the bit, for lists with equal
 * scores, numeric and long members (every listpack string header), more
 * members than a listpack holds, under deep payload checks. */
Test(store, put_rec_restore_equals_zadd, .init = setup, .fini = teardown, .timeout = 60)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "CONFIG SET sanitize-dump-payload yes");
    vg_store_cfg_t cfg = base_cfg();
    cfg.rec_ttl_s = 50;
    vg_store_t *fast = open_store(&cfg);
    cfg.rec_zadd = 1;
    vg_store_t *zadd = open_store(&cfg);
    cr_assert(wait_for(is_up, fast, 5000) && wait_for(is_up, zadd, 5000));
    cr_assert(strstr(logbuf, "lists written as one RESTORE"), "log:\n%s", logbuf);
    cr_assert(strstr(logbuf, "DEL/ZADD (redis.rec_write = zadd)"), "log:\n%s", logbuf);
    static char names[300][5100];
    const char *items[300];
    size_t lens[300];
    double sc[300];
    int sizes[] = {1, 2, 100, 300};
    for (int t = 0; t < 4; t++) {
        int n = sizes[t];
        for (int i = 0; i < n; i++) {
            int len = i == 1 ? 70 : i == 2 ? 5000 : snprintf(names[i], sizeof names[i], i % 9 == 4 ? "%d" : "item%d", i);
            if (i == 1 || i == 2)
                memset(names[i], 'a' + i, (size_t)len);
            items[i] = names[i];
            lens[i] = (size_t)len;
            sc[i] = i % 10 == 5 || i % 10 == 6 ? 3.0 - i / 10 : 100.0 - i * 0.37 + 1e-9 * i; /* ties, fractions */
        }
        for (int i = 1; i < n; i++) /* a list is best first */
            for (int k = i; k > 0 && sc[k] > sc[k - 1]; k--) {
                double ts = sc[k];
                sc[k] = sc[k - 1];
                sc[k - 1] = ts;
                const char *ti = items[k];
                items[k] = items[k - 1];
                items[k - 1] = ti;
                size_t tl = lens[k];
                lens[k] = lens[k - 1];
                lens[k - 1] = tl;
            }
        long long before = restores(c);
        cr_assert_eq(vg_store_put_rec(fast, "a", 1, items, lens, sc, (size_t)n, 1.0, NULL, NULL), 0);
        cr_assert_eq(vg_store_put_rec(zadd, "b", 1, items, lens, sc, (size_t)n, 1.0, NULL, NULL), 0);
        cr_assert(wait_for(is_idle, fast, 5000) && wait_for(is_idle, zadd, 5000));
        cr_assert_eq(restores(c), before + 1, "one RESTORE per list");
        char *a = reply_text(c, "ZRANGE %s 0 -1 WITHSCORES", "rec:a"), *b = reply_text(c, "ZRANGE %s 0 -1 WITHSCORES", "rec:b");
        size_t d = 0;
        while (a[d] && a[d] == b[d])
            d++;
        cr_assert(a[d] == b[d], "%d members: differ at byte %zu: \"%.60s\" vs \"%.60s\"", n, d, a + d, b + d);
        free(a);
        free(b);
        long long ttl = cmd_int(c, "TTL rec:a");
        cr_assert(ttl > 0 && ttl <= 50, "ttl %lld", ttl);
    }
    vg_store_close(zadd);
    close_store(fast);
    redisFree(c);
}

/* The store connects, says why it writes lists by the script's DEL/ZADD
 * (`why` in its log), and a list so written reads back whole. */
static void lists_by_zadd(const char *why)
{
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000));
    cr_assert(strstr(logbuf, why), "log:\n%s", logbuf);
    const char *it[] = {"x", "y"};
    size_t l[] = {1, 1};
    double sc[] = {2, 1};
    job_t j = {0};
    cr_assert_eq(vg_store_put_rec(S, "u", 1, it, l, sc, 2, 1.0, job_cb, &j), 0);
    cr_assert(wait_for(job_done, &j, 5000));
    cr_assert_eq(j.status, 0);
    redisContext *c = cli(NULL, 0);
    cr_assert_str_eq(zset(c, "rec:u"), "y:1 x:2");
    cr_assert_eq(restores(c), 0);
    close_store(S);
    redisFree(c);
}

/* An ACL user who may not RESTORE (it is in @dangerous) gets its lists by
 * the script's DEL/ZADD: not a refusal. */
Test(store, put_rec_without_restore_permission, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "ACL SETUSER default -restore");
    redisFree(c);
    lists_by_zadd("(this user may not RESTORE)");
}

/* A server whose RESTORE was renamed away (rename-command, a common
 * hardening) gets its lists by the script's DEL/ZADD. */
Test(store, put_rec_without_a_restore_command, .init = setup, .fini = teardown, .timeout = 30)
{
    R.extra[0] = "--rename-command";
    R.extra[1] = "RESTORE";
    R.extra[2] = "";
    start_redis(0);
    lists_by_zadd("(this server has no RESTORE command)");
}

/* CRC-64/Jones: Redis' check value (crc64.c's test). */
/* A list score's text reads back as the same float, and the order of the
 * texts' values is the order of the floats (no new ties): over half a
 * million random bit patterns, half a million floats in [-50, 50], and every
 * power of two. */
Test(store, rec_scores_are_exact_for_floats_and_keep_their_order)
{
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 1200000; i++) {
        float f;
        if (i < 1000000) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint32_t bits = (uint32_t)x;
            memcpy(&f, &bits, sizeof f); /* every exponent alike, and odd i: where scores lie */
            if (i % 2)
                f = (float)((double)(x >> 40) / (double)(1ULL << 24) * 100.0 - 50.0);
            if (!isfinite(f))
                continue;
        } else {
            f = ldexpf(i % 2 ? -1.0f : 1.0f, (i - 1000000) % 277 - 149); /* 2^-149 (subnormal) to 2^127 */
        }
        char t[VG_RESP_NUM_MAX + 1];
        size_t n = vg_resp_fmt_score(t, (double)f);
        cr_assert(n > 0 && n < VG_RESP_NUM_MAX, "%a: %zu bytes", (double)f, n);
        t[n] = '\0';
        cr_assert_eq(strtof(t, NULL), f, "%a written as %s", (double)f, t);
        if (i >= 1000000)
            continue;
        /* the next float up reads back larger: no two floats share a text */
        float g = nextafterf(f, INFINITY);
        if (!isfinite(g))
            continue;
        char u[VG_RESP_NUM_MAX + 1];
        u[vg_resp_fmt_score(u, (double)g)] = '\0';
        cr_assert_lt(strtod(t, NULL), strtod(u, NULL), "%s and %s: neighbours %a < %a", t, u, (double)f, (double)g);
    }
    char t[VG_RESP_NUM_MAX];
    cr_assert_eq(vg_resp_fmt_score(t, 40), 2);
    cr_assert_eq(memcmp(t, "40", 2), 0);
    cr_assert_eq(vg_resp_fmt_score(t, -3.0f * 0.1f), strlen("-0.300000012"));
    cr_assert_eq(memcmp(t, "-0.300000012", strlen("-0.300000012")), 0);
}

Test(store, dump_crc64_check_value)
{
    cr_assert_eq(vg_dump_crc64((const unsigned char *)"123456789", 9), 0xe9c6d914c4b8d9caULL);
}

Test(store, set_model_fields, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    const char *f[] = {"step", "epoch", "alpha", "format"};
    const char *v[] = {"100", "2", "0.25", "1"};
    job_t j1 = {0}, j2 = {0};
    cr_assert_eq(vg_store_set_model(S, 0, f, v, 4, job_cb, &j1), 0);
    const char *f2[] = {"step"}, *v2[] = {"200"};
    cr_assert_eq(vg_store_set_model(S, 0, f2, v2, 1, job_cb, &j2), 0);
    cr_assert(wait_for(job_done, &j2, 5000));
    cr_assert_eq(j1.status + j2.status, 0);
    redisContext *c = cli(NULL, 0);
    redisReply *r = redisCommand(c, "HMGET vaegan:model step epoch alpha format");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    cr_assert_str_eq(r->element[0]->str, "200");
    cr_assert_str_eq(r->element[1]->str, "2");
    cr_assert_str_eq(r->element[2]->str, "0.25");
    cr_assert_str_eq(r->element[3]->str, "1");
    freeReplyObject(r);
    cr_assert_eq(cmd_int(c, "HLEN vaegan:model"), 4);
    redisFree(c);
    close_store(S);
}

/* A leader's fenced write: refused (VG_EFENCED, nothing written) once a
 * newer epoch wrote; the same or a newer epoch writes. */
Test(store, set_model_fenced_by_epoch, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    const char *f[] = {"step"}, *v2[] = {"20"}, *v1[] = {"10"}, *v3[] = {"30"};
    job_t j[4] = {{0}};
    cr_assert_eq(vg_store_set_model(S, 2, f, v2, 1, job_cb, &j[0]), 0);
    cr_assert_eq(vg_store_set_model(S, 1, f, v1, 1, job_cb, &j[1]), 0); /* an old leader, late */
    cr_assert_eq(vg_store_set_model(S, 2, f, v2, 1, job_cb, &j[2]), 0);
    cr_assert_eq(vg_store_set_model(S, 3, f, v3, 1, job_cb, &j[3]), 0);
    cr_assert(wait_for(job_done, &j[3], 5000));
    cr_assert_eq(j[0].status, 0, "%s", vg_strerror(j[0].status));
    cr_assert_eq(j[1].status, VG_EFENCED, "the older epoch is refused");
    cr_assert_eq(j[2].status, 0, "the same epoch writes again");
    cr_assert_eq(j[3].status, 0);
    cr_assert_eq(j[1].calls + j[3].calls, 2);
    redisContext *c = cli(NULL, 0);
    redisReply *r = redisCommand(c, "HMGET vaegan:model step leader_epoch");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    cr_assert_str_eq(r->element[0]->str, "30");
    cr_assert_str_eq(r->element[1]->str, "3");
    freeReplyObject(r);
    redisFree(c);
    cr_assert_eq(vg_store_set_model(S, (uint64_t)1 << 53, f, v1, 1, NULL, NULL), VG_EINVAL);
    close_store(S);
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(store, wrongtype_is_permanent_and_isolated, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "SET hist:bad x");
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    job_t a = {0}, b = {0};
    vg_store_event_t ea[] = {EV("good0", "i", 0.5), EV("bad", "i", 1), EV("good1", "i", 2), EV("bad", "j", 3)};
    vg_store_event_t eb[] = {EV("good2", "i", 3)};
    cr_assert_eq(vg_store_add_events(S, ea, 4, ev_cb, &a), 0);
    cr_assert_eq(vg_store_add_events(S, eb, 1, ev_cb, &b), 0);
    cr_assert(wait_for(job_done, &b, 5000));
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, VG_EREDIS);
    cr_assert_eq(a.n_ev, 4);
    cr_assert_eq(a.ev_err_null, 0, "a data error says which events it refused");
    cr_assert_str_eq(a.ev_err[0], "", "good0 was stored");
    cr_assert(strncmp(a.ev_err[1], "WRONGTYPE", 9) == 0, "%s", a.ev_err[1]);
    cr_assert_str_eq(a.ev_err[2], "", "good1 was stored");
    cr_assert(strncmp(a.ev_err[3], "WRONGTYPE", 9) == 0, "%s", a.ev_err[3]);
    cr_assert_eq(b.status, 0);
    cr_assert_eq(b.ev_err_null, 1);
    cr_assert_str_eq(zset(c, "hist:good0"), "i:0.5", "the job's other commands ran");
    cr_assert_str_eq(zset(c, "hist:good1"), "i:2");
    cr_assert_str_eq(zset(c, "hist:good2"), "i:3");
    cr_assert_str_eq(zset(c, "vaegan:users"), "good0:0.5 good1:2 bad:3 good2:3");
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.errors, 2); /* ZADD and ZREMRANGEBYRANK of hist:bad */
    cr_assert_eq(st.reconnects, 0, "a permanent error must not reconnect");
    cr_assert_eq(st.up, 1);
    cr_assert_eq(st.refused, 0);
    cr_assert(strstr(logbuf, "WRONGTYPE") && strstr(logbuf, "hist:bad"), "%s", logbuf);
    redisFree(c);
    close_store(S);
}

/* vaegan:users is needed by every event of a job: an error there refuses them all. */
Test(store, users_index_error_refuses_every_event, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "SET vaegan:users x");
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    job_t a = {0};
    vg_store_event_t ea[] = {EV("u1", "i", 1), EV("u2", "i", 2)};
    cr_assert_eq(vg_store_add_events(S, ea, 2, ev_cb, &a), 0);
    cr_assert(wait_for(job_done, &a, 5000));
    cr_assert_eq(a.status, VG_EREDIS);
    cr_assert(strncmp(a.ev_err[0], "WRONGTYPE", 9) == 0 && strncmp(a.ev_err[1], "WRONGTYPE", 9) == 0, "%s / %s",
              a.ev_err[0], a.ev_err[1]);
    redisFree(c);
    close_store(S);
}

/* A returning user's history read back: one FIFO job after the writes
 * before it, hist:<user> then rm:<user>. */
static char rd_out[2][256];
static void rd_rows(void *ud, int removals, const char *const *items, const size_t *lens, const double *ts, size_t n)
{
    (void)ud;
    size_t o = 0;
    for (size_t k = 0; k < n; k++)
        o += (size_t)snprintf(rd_out[removals] + o, 256 - o, "%s%.*s:%g", k ? " " : "", (int)lens[k], items[k], ts[k]);
}

Test(store, read_user_sees_the_writes_before_it, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.removals = 1;
    S = open_store(&cfg);
    job_t w = {0}, r = {0};
    vg_store_event_t ev[] = {EV("u", "a", 1), EV("u", "b", 2), RM("u", "c", 3)};
    cr_assert_eq(vg_store_add_events(S, ev, 3, ev_cb, &w), 0);
    cr_assert_eq(vg_store_read_user(S, "u", 1, rd_rows, job_cb, &r), 0); /* queued behind the write */
    cr_assert(wait_for(job_done, &r, 5000));
    cr_assert_eq(r.status, 0);
    cr_assert_lt(w.order, r.order);
    cr_assert_str_eq(rd_out[0], "a:1 b:2");
    cr_assert_str_eq(rd_out[1], "c:3");
    cr_assert_eq(vg_store_read_user(S, "u", 0, rd_rows, job_cb, &r), VG_EINVAL);
    close_store(S);
}

/* One store job on the test's job_t r, its answer in rd_out (cleared first). */
#define READ_INTO(call)                                                                                              \
    do {                                                                                                             \
        memset(rd_out, 0, sizeof rd_out);                                                                            \
        r = (job_t){0};                                                                                              \
        cr_assert_eq((call), 0);                                                                                     \
        cr_assert(wait_for(job_done, &r, 5000));                                                                     \
        cr_assert_eq(r.status, 0);                                                                                   \
    } while (0)

/* The sets of recent users per partition (vg_store_event_t.part): each
 * user once with its latest ts, the most recent read first-limited, a trim
 * keeping the most recent; vaegan:users read on from a cursor (ts, skip),
 * equal ts across a page boundary; ZREM of one user. */
Test(store, partition_sets_and_users_since, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    job_t w = {0}, r = {0};
    vg_store_event_t ev[] = {EV("u1", "a", 5), EV("u2", "a", 7), EV("u1", "b", 9),
                             EV("u3", "c", 3), EV("u4", "c", 4), EV("u5", "d", 7)};
    for (int k = 0; k < 3; k++)
        ev[k].part = "t:0", ev[k].part_len = 3;
    ev[3].part = "t:1", ev[3].part_len = 3; /* u4, u5: no set */
    cr_assert_eq(vg_store_add_events(S, ev, 6, ev_cb, &w), 0);
    READ_INTO(vg_store_read_part(S, "t:0", 3, 0, rd_rows, job_cb, &r));
    cr_assert_eq(w.status, 0);
    cr_assert_str_eq(rd_out[0], "u2:7 u1:9");
    READ_INTO(vg_store_read_part(S, "t:0", 3, 1, rd_rows, job_cb, &r)); /* the most recent one */
    cr_assert_str_eq(rd_out[0], "u1:9");
    READ_INTO(vg_store_read_part(S, "t:1", 3, 0, rd_rows, job_cb, &r));
    cr_assert_str_eq(rd_out[0], "u3:3");

    vg_store_since_t at[] = {{4, VG_SINCE_FROM}, {4, VG_SINCE_AFTER}, {7, VG_SINCE_AT}, {-INFINITY, VG_SINCE_FROM},
                             {NAN, VG_SINCE_FROM}, {-INFINITY, VG_SINCE_AT}};
    READ_INTO(vg_store_read_users_since(S, &at[0], 2, rd_rows, job_cb, &r)); /* from 4 on, two at most */
    cr_assert_str_eq(rd_out[0], "u4:4 u2:7");
    READ_INTO(vg_store_read_users_since(S, &at[1], 2, rd_rows, job_cb, &r)); /* above 4 */
    cr_assert_str_eq(rd_out[0], "u2:7 u5:7");
    READ_INTO(vg_store_read_users_since(S, &at[2], 1, rd_rows, job_cb, &r)); /* all at 7, whatever max */
    cr_assert_str_eq(rd_out[0], "u2:7 u5:7");
    cr_assert_eq(vg_store_read_users_since(S, &at[4], 1, rd_rows, job_cb, &r), VG_EINVAL);
    cr_assert_eq(vg_store_read_users_since(S, &at[5], 1, rd_rows, job_cb, &r), VG_EINVAL);
    cr_assert_eq(vg_store_read_users_since(S, &at[0], 0, rd_rows, job_cb, &r), VG_EINVAL);
    /* the cursor in pages of 2: a full page leaves its last ts to a whole read; each user taken once */
    vg_store_since_t f = at[3];
    const char *want[] = {"u3:3 u4:4", "u4:4", "u2:7 u5:7", "u2:7 u5:7", "u1:9"};
    const size_t take[] = {1, 1, 0, 2, 1};
    const int more[] = {1, 1, 1, 1, 0};
    for (int k = 0; k < 5; k++) {
        READ_INTO(vg_store_read_users_since(S, &f, 2, rd_rows, job_cb, &r));
        cr_assert_str_eq(rd_out[0], want[k], "read %d", k);
        double ts[2];
        size_t n = 0;
        for (const char *c = strchr(rd_out[0], ':'); c && n < 2; c = strchr(c + 1, ':'))
            ts[n++] = atof(c + 1);
        int m;
        cr_assert_eq(vg_store_since_past(&f, ts, n, 2, &m), take[k], "read %d", k);
        cr_assert_eq(m, more[k], "read %d", k);
    }
    cr_assert(f.ts == 9 && f.mode == VG_SINCE_FROM, "a short page: at its last ts, inclusive");

    READ_INTO(vg_store_part_trim(S, "t:0", 3, 1, job_cb, &r)); /* the most recent one stays */
    READ_INTO(vg_store_read_part(S, "t:0", 3, 0, rd_rows, job_cb, &r));
    cr_assert_str_eq(rd_out[0], "u1:9");
    cr_assert_eq(vg_store_part_trim(S, "t:0", 3, 0, job_cb, &r), VG_EINVAL);
    READ_INTO(vg_store_part_rem(S, "t:0", 3, "u1", 2, job_cb, &r));
    READ_INTO(vg_store_read_part(S, "t:0", 3, 0, rd_rows, job_cb, &r));
    cr_assert_str_eq(rd_out[0], "");
    cr_assert_eq(vg_store_read_part(S, "t:0", 0, 0, rd_rows, job_cb, &r), VG_EINVAL);
    close_store(S);
}

/* ---- refusals: the server is not ours to write ------------------------------------------ */

static int fatal_calls;
static char fatal_msg[1024];
static void on_fatal(void *ud, const char *msg)
{
    (void)ud;
    fatal_calls++;
    snprintf(fatal_msg, sizeof fatal_msg, "%s", msg);
}
static int refused(void *arg)
{
    (void)arg;
    return fatal_calls > 0;
}
static vg_store_cfg_t refusing_cfg(void)
{
    vg_store_cfg_t cfg = base_cfg();
    cfg.on_fatal = on_fatal;
    fatal_calls = 0;
    fatal_msg[0] = '\0';
    return cfg;
}

/* ACL DRYRUN at connect finds a command we may not send. */
Test(store, acl_refusal_found_at_connect, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "ACL SETUSER default resetkeys ~vaegan:* ~rec:* ~rm:*"); /* no hist:* */
    vg_store_cfg_t cfg = refusing_cfg();
    S = open_store(&cfg);
    job_t j = {0};
    vg_store_event_t ev[] = {EV("u", "i", 1)};
    cr_assert_eq(vg_store_add_events(S, ev, 1, ev_cb, &j), 0);
    cr_assert(wait_for(refused, NULL, 5000), "no refusal: %s", logbuf);
    cr_assert_eq(fatal_calls, 1);
    cr_assert(strstr(fatal_msg, "hist:vaegan-acl-check") && strstr(fatal_msg, "ZADD"), "%s", fatal_msg);
    spin(200);
    cr_assert_eq(j.calls, 0, "nothing completes after a refusal");
    cr_assert_eq(fatal_calls, 1, "called once");
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.refused, 1);
    cr_assert_eq(st.up, 0, "never declared up");
    redisFree(c);
    close_store(S);
}

/* Without ACL DRYRUN (the user may not run ACL) the first write tells: NOPERM. */
Test(store, noperm_at_write_is_a_refusal, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "ACL SETUSER default resetkeys ~vaegan:* ~rec:* ~rm:* -acl");
    vg_store_cfg_t cfg = refusing_cfg();
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000), "%s", logbuf);
    job_t j = {0};
    vg_store_event_t ev[] = {EV("u", "i", 1)};
    cr_assert_eq(vg_store_add_events(S, ev, 1, ev_cb, &j), 0);
    cr_assert(wait_for(refused, NULL, 5000));
    cr_assert(strstr(fatal_msg, "NOPERM") && strstr(fatal_msg, "ZADD hist:u"), "%s", fatal_msg);
    spin(200);
    cr_assert_eq(j.calls, 0, "the job is neither completed nor failed: its events are not acknowledged");
    redisFree(c);
    close_store(S);
}

/* A Redis Cluster node (cluster support comes later): refused at connect. */
Test(store, cluster_node_is_refused_at_connect, .init = setup, .fini = teardown, .timeout = 30)
{
    cr_assert_eq(vgt_redis_start_cluster_node(&R, vg_tmpdir, 0, 1), 0);
    vg_store_cfg_t cfg = refusing_cfg();
    S = open_store(&cfg);
    cr_assert(wait_for(refused, NULL, 5000), "no refusal: %s", logbuf);
    cr_assert(strstr(fatal_msg, "cluster_enabled:1"), "%s", fatal_msg);
    close_store(S);
}

/* READONLY that lasts past readonly_timeout_ms: a replica that stays one. */
Test(store, lasting_readonly_is_a_refusal, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    vg_store_cfg_t cfg = refusing_cfg();
    cfg.readonly_timeout_ms = 300;
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000));
    cmd_ok(c, "REPLICAOF 127.0.0.1 1");
    job_t j = {0};
    vg_store_event_t ev[] = {EV("u", "i", 1)};
    cr_assert_eq(vg_store_add_events(S, ev, 1, ev_cb, &j), 0);
    cr_assert(wait_for(refused, NULL, 10000), "%s", logbuf);
    cr_assert(strstr(fatal_msg, "READONLY") && strstr(fatal_msg, "ZADD hist:u"), "%s", fatal_msg);
    cr_assert_eq(j.calls, 0);
    cmd_ok(c, "REPLICAOF NO ONE");
    redisFree(c);
    close_store(S);
}

Test(store, readonly_server_is_retried_not_failed, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    redisContext *c = cli(NULL, 0);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000));
    cmd_ok(c, "REPLICAOF 127.0.0.1 1"); /* a replica of nothing: -READONLY to writes */
    job_t j = {0};
    vg_store_event_t ev[] = {EV("u", "i", 1)};
    cr_assert_eq(vg_store_add_events(S, ev, 1, ev_cb, &j), 0);
    spin(800);
    cr_assert_eq(j.calls, 0, "a server-state error must not fail the job");
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert(st.errors >= 1);
    cr_assert(st.errors <= 12, "no backoff: %llu errors", (unsigned long long)st.errors);
    cmd_ok(c, "REPLICAOF NO ONE");
    cr_assert(wait_for(job_done, &j, 5000));
    cr_assert_eq(j.status, 0);
    cr_assert_str_eq(zset(c, "hist:u"), "i:1");
    cr_assert(strstr(logbuf, "READONLY") != NULL, "%s", logbuf);
    redisFree(c);
    close_store(S);
}

/* ---- load --------------------------------------------------------------------------------- */

/* With removals the history writes go through the ordered script: the later
 * ts wins between an interaction and a removal, whatever the order of
 * arrival; rm:<user> keeps the removals, capped; the load reads them back. */
static char ord_hist[256], ord_rm[256];
static void ord_user(void *ud, const char *user, size_t ulen, int removals, const char *const *items,
                     const size_t *lens, const double *ts, size_t n)
{
    (void)ud;
    if (ulen != 1 || user[0] != 'u')
        return;
    char *out = removals ? ord_rm : ord_hist;
    size_t o = 0;
    for (size_t k = 0; k < n; k++)
        o += (size_t)snprintf(out + o, 256 - o, "%s%.*s:%g", k ? " " : "", (int)lens[k], items[k], ts[k]);
}

Test(store, removals_are_ordered_by_ts, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.history_max = 2;
    cfg.removals = 1;
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000), "never up: %s", vg_store_errstr(S));
    job_t j1 = {0}, j2 = {0}, j3 = {0};
    vg_store_event_t b1[] = {EV("u", "a", 90), RM("u", "a", 100), EV("u", "b", 50), EV("v", "x", 1)};
    cr_assert_eq(vg_store_add_events(S, b1, 4, ev_cb, &j1), 0);
    /* later arrivals: an older click (refused), a newer click of b's removal's item, removals */
    vg_store_event_t b2[] = {EV("u", "a", 95), RM("u", "b", 40), RM("u", "c", 10), RM("u", "d", 20)};
    cr_assert_eq(vg_store_add_events(S, b2, 4, ev_cb, &j2), 0);
    cr_assert(wait_for(job_done, &j2, 5000));
    cr_assert_eq(j1.status + j2.status, 0);
    redisContext *c = cli(NULL, 0);
    cr_assert_str_eq(zset(c, "hist:u"), "b:50", "a removed at 100, its click at 95 refused; b newer than its removal");
    cr_assert_str_eq(zset(c, "rm:u"), "b:40 a:100", "removals capped like the history (2): c and d went");
    cr_assert_str_eq(zset(c, "hist:v"), "x:1");
    vg_store_event_t b3[] = {EV("u", "a", 110), EV("u", "c", 60)};
    cr_assert_eq(vg_store_add_events(S, b3, 2, ev_cb, &j3), 0);
    cr_assert(wait_for(job_done, &j3, 5000));
    cr_assert_str_eq(zset(c, "hist:u"), "c:60 a:110", "a newer click wins over the removal; c's removal was capped away");
    job_t jl = {0};
    cr_assert_eq(vg_store_load(S, &(vg_store_loader_t){.on_user = ord_user, .on_done = job_cb, .ud = &jl}), 0);
    cr_assert(wait_for(job_done, &jl, 5000));
    cr_assert_eq(jl.status, 0);
    cr_assert_str_eq(ord_hist, "c:60 a:110");
    cr_assert_str_eq(ord_rm, "b:40 a:100");
    /* without removals configured a removal is refused */
    redisFree(c);
    close_store(S);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cfg.removals = 0;
    S = open_store(&cfg);
    vg_store_event_t r = RM("u", "a", 1);
    cr_assert_eq(vg_store_add_events(S, &r, 1, ev_cb, &j1), VG_EINVAL);
    close_store(S);
}

static int delivered; /* users handed to load_user */
static int counts, count_at = -1; /* on_count: calls, users delivered before it */
static uint64_t counted;

static void load_count(void *ud, uint64_t users)
{
    (void)ud;
    counts++;
    counted = users;
    count_at = delivered;
}

static char marks[256];
static void on_mark(void *ud, const char *mark, size_t len, double ts)
{
    (void)ud;
    size_t o = strlen(marks);
    snprintf(marks + o, sizeof marks - o, "%s%.*s:%g", o ? " " : "", (int)len, mark, ts);
}

/* A forget erases every key of the user, and leaves a mark that expires. */
Test(store, forget_erases_the_user, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    cfg.removals = 1;
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000), "never up: %s", vg_store_errstr(S));
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "ZADD vaegan:forgotten 40 old");
    job_t j1 = {0}, j2 = {0}, j3 = {0};
    vg_store_event_t b[] = {EV("u", "a", 90), RM("u", "b", 95), EV("v", "x", 1)};
    cr_assert_eq(vg_store_add_events(S, b, 3, ev_cb, &j1), 0);
    const char *items[] = {"c"};
    size_t lens[] = {1};
    double sc[] = {0.5};
    cr_assert_eq(vg_store_put_rec(S, "u", 1, items, lens, sc, 1, 1.0, job_cb, &j2), 0);
    cr_assert_eq(vg_store_forget(S, "u", 1, "mark-u", 6, 100, 50, job_cb, &j3), 0);
    cr_assert(wait_for(job_done, &j3, 5000));
    cr_assert_eq(j1.status + j2.status + j3.status, 0);
    cr_assert(j2.order < j3.order);
    cr_assert_eq(cmd_int(c, "EXISTS hist:u rm:u rec:u"), 0, "no key of the user is left");
    cr_assert_str_eq(zset(c, "vaegan:users"), "v:1");
    cr_assert_str_eq(zset(c, "vaegan:forgotten"), "mark-u:100", "the mark, and the expired one gone");
    job_t jl = {0};
    vg_store_loader_t ld = {.on_user = ord_user, .on_mark = on_mark, .marks_since = 99, .on_count = load_count,
                            .on_done = job_cb, .ud = &jl};
    cr_assert_eq(vg_store_load(S, &ld), 0);
    cr_assert(wait_for(job_done, &jl, 5000));
    cr_assert_eq(jl.status, 0);
    cr_assert_str_eq(marks, "mark-u:100");
    cr_assert_eq(counts, 1, "the users counted after the marks");
    cr_assert_eq(counted, 1, "v alone is left (%llu)", (unsigned long long)counted);
    marks[0] = '\0';
    job_t jm = {0};
    ld.marks_since = 100; /* exclusive */
    ld.ud = &jm;
    cr_assert_eq(vg_store_load(S, &ld), 0);
    cr_assert(wait_for(job_done, &jm, 5000));
    cr_assert_str_eq(marks, "");
    cr_assert_eq(vg_store_forget(S, "u", 1, "", 0, 100, 50, NULL, NULL), VG_EINVAL);
    redisFree(c);
    close_store(S);
}

#define LOAD_USERS 2345
static unsigned char seen[LOAD_USERS + 2];
static int load_status = 1, load_done, load_bad, killed;

static void load_user(void *ud, const char *user, size_t ulen, int removals, const char *const *items,
                      const size_t *lens, const double *ts, size_t n)
{
    (void)ud;
    if (removals) /* the store of this test has no removals */
        load_bad++;
    char u[64];
    cr_assert(ulen < sizeof u);
    memcpy(u, user, ulen);
    u[ulen] = '\0';
    delivered++;
    if (strcmp(u, "ghost") == 0) {
        if (n != 0 || seen[LOAD_USERS]++)
            load_bad++;
    } else if (strcmp(u, "broken") == 0) {
        load_bad++;
    } else {
        int k = atoi(u + 1);
        if (u[0] != 'u' || k < 0 || k >= LOAD_USERS || seen[k]++) {
            load_bad++;
            return;
        }
        if (n != (size_t)(k % 5 + 1)) {
            load_bad++;
            return;
        }
        for (size_t j = 0; j < n; j++) {
            char want[32];
            snprintf(want, sizeof want, "i%zu", j);
            if (lens[j] != strlen(want) || memcmp(items[j], want, lens[j]) != 0 ||
                ts[j] != (double)k * 10 + (double)j)
                load_bad++;
        }
    }
    if (delivered == 1500 && !killed) { /* drop the store's connection mid-load */
        redisContext *c = cli(NULL, 0);
        long long n_killed = cmd_int(c, "CLIENT KILL TYPE normal");
        killed = (int)n_killed;
        redisFree(c);
    }
}

static void load_end(void *ud, int status)
{
    (void)ud;
    load_status = status;
    load_done++;
}

static int load_finished(void *arg)
{
    (void)arg;
    return load_done > 0;
}

Test(store, load_returns_everything_across_a_killed_connection, .init = setup, .fini = teardown,
     .timeout = 60)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    static char ubuf[LOAD_USERS][16], ibuf[5][8];
    static vg_store_event_t ev[LOAD_USERS * 5];
    size_t n = 0;
    for (int j = 0; j < 5; j++)
        snprintf(ibuf[j], sizeof ibuf[j], "i%d", j);
    for (int k = 0; k < LOAD_USERS; k++) {
        snprintf(ubuf[k], sizeof ubuf[k], "u%d", k);
        for (int j = 0; j <= k % 5; j++)
            ev[n++] = EV(ubuf[k], ibuf[j], (double)k * 10 + j);
    }
    for (size_t off = 0; off < n; off += 1000)
        cr_assert_eq(vg_store_add_events(S, ev + off, n - off < 1000 ? n - off : 1000, NULL, NULL),
                     0);
    cr_assert(wait_for(is_idle, S, 20000));
    redisContext *c = cli(NULL, 0);
    cmd_ok(c, "ZADD vaegan:users 1 ghost 2 broken"); /* no history; history of the wrong type */
    cmd_ok(c, "SET hist:broken x");
    redisFree(c);
    close_store(S);

    cr_assert_eq(uv_loop_init(&loop), 0);
    ups = downs = 0;
    S = open_store(&cfg);
    cr_assert_eq(vg_store_load(S, &(vg_store_loader_t){.on_user = load_user, .on_count = load_count,
                                                        .on_done = load_end}),
                 0);
    cr_assert(wait_for(load_finished, NULL, 30000), "load never finished");
    cr_assert_eq(load_done, 1);
    cr_assert_eq(counts, 1, "on_count once (%d)", counts);
    cr_assert_eq(count_at, 0, "on_count before the first user");
    cr_assert_eq(counted, LOAD_USERS + 2, "the ZCARD of vaegan:users (%llu)", (unsigned long long)counted);
    cr_assert_eq(load_bad, 0, "wrong or duplicate deliveries");
    cr_assert_eq(delivered, LOAD_USERS + 1, "delivered %d", delivered);
    for (int k = 0; k <= LOAD_USERS; k++)
        cr_assert_eq(seen[k], 1, "user %d delivered %d times", k, seen[k]);
    cr_assert_eq(load_status, VG_EREDIS, "the unreadable history must be reported");
    cr_assert(killed >= 1, "CLIENT KILL found no client");
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert(st.reconnects >= 1, "the load did not go through a reconnect");
    cr_assert_eq(downs, 1);
    cr_assert(strstr(logbuf, "hist:broken") != NULL, "%s", logbuf);
    close_store(S);
}

/* ---- delivery across a Redis restart --------------------------------------------------- */

#define RS_BATCHES 40
#define RS_BATCH 1000
#define RS_USERS 500
static job_t rs_jobs[RS_BATCHES];
static int rs_done, rs_stopped_pending = -1, rs_restarted;
static uv_timer_t rs_timer;

static void rs_restart(uv_timer_t *t)
{
    (void)t;
    rs_restarted = vgt_redis_restart(&R) == 0 ? 1 : -1;
}

static void rs_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    (void)ev_err;
    (void)n;
    job_cb(ud, status);
    if (++rs_done == 5) {
        /* Redis goes away with most batches still queued or in flight */
        rs_stopped_pending = (int)vg_store_pending(S);
        vgt_redis_stop(&R);
        uv_timer_start(&rs_timer, rs_restart, 2000, 0);
    }
}

static int rs_all(void *arg)
{
    (void)arg;
    return rs_done >= RS_BATCHES;
}

Test(store, redis_restart_loses_nothing_and_calls_back_once, .init = setup, .fini = teardown,
     .timeout = 60)
{
    start_redis(1);
    vg_store_cfg_t cfg = base_cfg();
    cfg.history_max = 0;
    cfg.max_inflight = 256;
    S = open_store(&cfg);
    uv_timer_init(&loop, &rs_timer);
    cr_assert(wait_for(is_up, S, 5000));

    static char ubuf[RS_USERS][16], ibuf[RS_BATCH][16];
    vg_store_event_t ev[RS_BATCH];
    for (int u = 0; u < RS_USERS; u++)
        snprintf(ubuf[u], sizeof ubuf[u], "u%d", u);
    for (int b = 0; b < RS_BATCHES; b++) {
        for (int i = 0; i < RS_BATCH; i++) {
            int k = b * RS_BATCH + i;
            snprintf(ibuf[i], sizeof ibuf[i], "i%d", k);
            ev[i] = EV(ubuf[k % RS_USERS], ibuf[i], k + 1);
        }
        cr_assert_eq(vg_store_add_events(S, ev, RS_BATCH, rs_cb, &rs_jobs[b]), 0);
    }
    cr_assert(wait_for(rs_all, NULL, 40000), "only %d of %d callbacks", rs_done, RS_BATCHES);
    spin(200); /* a late duplicate callback would show now */
    cr_assert(rs_stopped_pending > 0, "nothing was pending when Redis stopped");
    cr_assert_eq(rs_restarted, 1);
    for (int b = 0; b < RS_BATCHES; b++) {
        cr_assert_eq(rs_jobs[b].calls, 1, "batch %d: %d callbacks", b, rs_jobs[b].calls);
        cr_assert_eq(rs_jobs[b].status, 0, "batch %d: status %d", b, rs_jobs[b].status);
        cr_assert_eq(rs_jobs[b].order, b, "callback order");
    }
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    cr_assert_eq(st.reconnects, 1);
    cr_assert(st.resent_jobs >= 1);
    cr_assert_eq(ups, 2);
    cr_assert_eq(downs, 1);
    cr_assert(strstr(logbuf, "connection lost") && strstr(logbuf, "reconnected"), "%s", logbuf);

    /* every event of every batch is in Redis */
    redisContext *c = cli(NULL, 0);
    cr_assert_eq(cmd_int(c, "ZCARD vaegan:users"), RS_USERS);
    int per_user = RS_BATCHES * RS_BATCH / RS_USERS;
    for (int u = 0; u < RS_USERS; u++) {
        redisReply *r = redisCommand(c, "ZRANGE hist:u%d 0 -1 WITHSCORES", u);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        cr_assert_eq(r->elements, 2 * (size_t)per_user, "user %d has %zu items", u,
                     r->elements / 2);
        for (int j = 0; j < per_user; j++) {
            int k = u + j * RS_USERS;
            char want[16];
            snprintf(want, sizeof want, "i%d", k);
            cr_assert_str_eq(r->element[2 * j]->str, want);
            cr_assert_eq(strtod(r->element[2 * j + 1]->str, NULL), (double)(k + 1));
        }
        freeReplyObject(r);
    }
    redisFree(c);
    uv_close((uv_handle_t *)&rs_timer, NULL);
    close_store(S);
}

/* ---- close ------------------------------------------------------------------------------- */

static int cl_calls;
static void cl_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    (void)ud;
    (void)status;
    (void)ev_err;
    (void)n;
    cl_calls++;
}

static void cl_done(void *ud, int status)
{
    cl_cb(ud, status, NULL, 0);
}

static void cl_cb_closing(void *ud, int status, const char *const *ev_err, size_t n)
{
    (void)status;
    (void)ev_err;
    (void)n;
    cl_calls++;
    vg_store_close(ud);
}

Test(store, close_drops_pending_without_callbacks, .init = setup, .fini = teardown, .timeout = 30)
{
    start_redis(0);
    vg_store_cfg_t cfg = base_cfg();
    static char ibuf[1000][16];
    vg_store_event_t ev[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(ibuf[i], sizeof ibuf[i], "i%d", i);
        ev[i] = EV(i % 2 ? "a" : "b", ibuf[i], i);
    }

    /* 1: closed with jobs in flight */
    S = open_store(&cfg);
    for (int b = 0; b < 200; b++)
        cr_assert_eq(vg_store_add_events(S, ev, 1000, cl_cb, NULL), 0);
    while (cl_calls < 1)
        uv_run(&loop, UV_RUN_ONCE);
    int at_close = cl_calls;
    cr_assert(vg_store_pending(S) > 0);
    close_store(S);
    cr_assert_eq(cl_calls, at_close, "callback after close");

    /* 2: closed from inside a job callback */
    cr_assert_eq(uv_loop_init(&loop), 0);
    cl_calls = 0;
    S = open_store(&cfg);
    for (int b = 0; b < 10; b++)
        cr_assert_eq(vg_store_add_events(S, ev, 1000, cl_cb_closing, S), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(cl_calls, 1, "callbacks after a close from a callback: %d", cl_calls);

    /* 3: closed while Redis is unreachable, with queued jobs and a load */
    cr_assert_eq(uv_loop_init(&loop), 0);
    cl_calls = 0;
    char nowhere[PATH_MAX + 16];
    snprintf(nowhere, sizeof nowhere, "%s/none.sock", vg_tmpdir);
    cfg.socket = nowhere;
    S = open_store(&cfg);
    cr_assert_eq(vg_store_add_events(S, ev, 1000, cl_cb, NULL), 0);
    cr_assert_eq(vg_store_load(S, &(vg_store_loader_t){.on_user = load_user, .on_done = cl_done}), 0);
    spin(200);
    cr_assert_eq(vg_store_pending(S), 2);
    close_store(S);
    cr_assert_eq(cl_calls, 0);
}

/* ---- throughput -------------------------------------------------------------------------- */

#define TP_EVENTS 100000
#define TP_BATCH 1000
#define TP_WINDOW 8
static int tp_submitted, tp_done, tp_bad;
static char tp_users[10000][12], tp_items[5000][12];
static uint64_t tp_rng = 88172645463325252ull;

static uint64_t tp_next(void)
{
    tp_rng ^= tp_rng << 13;
    tp_rng ^= tp_rng >> 7;
    tp_rng ^= tp_rng << 17;
    return tp_rng;
}

static void tp_cb(void *ud, int status, const char *const *ev_err, size_t n);

static void tp_submit(void)
{
    vg_store_event_t ev[TP_BATCH];
    for (int i = 0; i < TP_BATCH; i++) {
        int k = tp_submitted * TP_BATCH + i;
        ev[i] = EV(tp_users[tp_next() % 10000], tp_items[tp_next() % 5000], 1.7e9 + k);
    }
    cr_assert_eq(vg_store_add_events(S, ev, TP_BATCH, tp_cb, NULL), 0);
    tp_submitted++;
}

static void tp_cb(void *ud, int status, const char *const *ev_err, size_t n)
{
    (void)ud;
    (void)ev_err;
    (void)n;
    if (status)
        tp_bad++;
    tp_done++;
    if (tp_submitted < TP_EVENTS / TP_BATCH)
        tp_submit();
}

static int tp_all(void *arg)
{
    (void)arg;
    return tp_done >= TP_EVENTS / TP_BATCH;
}

Test(store, throughput_100k_events, .init = setup, .fini = teardown, .timeout = 60)
{
    start_redis(0);
    for (int i = 0; i < 10000; i++)
        snprintf(tp_users[i], sizeof tp_users[i], "u%d", i);
    for (int i = 0; i < 5000; i++)
        snprintf(tp_items[i], sizeof tp_items[i], "i%d", i);
    vg_store_cfg_t cfg = base_cfg();
    S = open_store(&cfg);
    cr_assert(wait_for(is_up, S, 5000));
    uint64_t t0 = uv_hrtime();
    for (int w = 0; w < TP_WINDOW; w++)
        tp_submit();
    cr_assert(wait_for(tp_all, NULL, 50000), "%d of %d batches", tp_done, TP_EVENTS / TP_BATCH);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    cr_assert_eq(tp_bad, 0);
    vg_store_stats_t st;
    vg_store_stats(S, &st);
    fprintf(stderr,
            "test_store: %d events in batches of %d (%d in flight): %.3f s, %.0f events/s, "
            "%.0f commands/s\n",
            TP_EVENTS, TP_BATCH, TP_WINDOW, secs, TP_EVENTS / secs, (double)st.commands / secs);
    redisContext *c = cli(NULL, 0);
    long long nu = cmd_int(c, "ZCARD vaegan:users");
    cr_assert(nu > 9900 && nu <= 10000, "users %lld", nu);
    redisFree(c);
    close_store(S);
}
