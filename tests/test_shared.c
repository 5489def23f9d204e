/*
 * test_shared.c — the leader's epoch and the fenced, chunked blobs of
 * cache/shared.h, on a real redis-server (unix socket) and on a real
 * 3-master Redis Cluster (chunks spread over every master, the epoch and the
 * manifests in the slot of {leader}): the epoch only grows; a multi-chunk
 * blob reads back byte for byte and a reader holding it learns "nothing
 * new"; a publication with an epoch older than the counter's is fenced and
 * its chunks deleted; a version not newer than the manifest's is refused;
 * two versions are kept and the third evicts the first's chunks; a missing
 * or corrupted chunk makes the previous version the answer (warned), and
 * none readable is an error; a publication cut by vg_store_close_cancel
 * reports VG_EAGAIN.  Every wait is on a callback, with a deadline as a
 * guard only.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "cache/shared.h"
#include "cache/store.h"
#include "common/errors.h"
#include "tests/support/loop.h"
#include "tests/support/rcluster.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

static uv_loop_t loop;
static vgt_redis_t R;
static vgt_rcluster_t RC;
static int on_cluster;
static char seed_host[] = "127.0.0.1";
static char prefix[] = "t:";
static char last_warn[512];
static void *fbuf; /* the fetches' buffer (vg_shared_fetch) */
static size_t fcap;

static void test_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level == VG_LOG_WARN)
        snprintf(last_warn, sizeof last_warn, "%s", msg);
    if (getenv("VG_TEST_VERBOSE"))
        fprintf(stderr, "[store %d] %s\n", level, msg);
}

static void setup_one(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&R, 0, sizeof R);
    cr_assert_eq(vgt_redis_start(&R, vg_tmpdir, 0), 0, "no redis-server");
    on_cluster = 0;
}

static void setup_cluster(void)
{
    vg_tmpdir_make();
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&RC, 0, sizeof RC);
    cr_assert_eq(vgt_rcluster_start(&RC, vg_tmpdir, 3), 0, "no cluster");
    on_cluster = 1;
}

static void teardown(void)
{
    free(fbuf);
    fbuf = NULL;
    fcap = 0;
    vgt_redis_stop(&R);
    vgt_rcluster_stop(&RC);
    vg_tmpdir_remove();
}

static int is_up(void *arg) { return vg_store_is_up(arg); }

static vg_store_t *open_store(void)
{
    vg_store_cfg_t c;
    memset(&c, 0, sizeof c);
    if (on_cluster) {
        c.host = seed_host;
        c.port = RC.port[0];
        c.cluster = 1;
    } else {
        c.socket = R.sock;
    }
    c.prefix = prefix;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 400;
    c.log = test_log;
    vg_store_t *s = NULL;
    char err[256];
    cr_assert_eq(vg_store_init(&s, &loop, &c, err, sizeof err), 0, "vg_store_init: %s", err);
    cr_assert(vgt_loop_until(&loop, is_up, s, 20000, NULL), "store not up");
    return s;
}

static void close_store(vg_store_t *s)
{
    vg_store_close_cancel(s);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}

/* A command on the server that holds key (freed by the caller). */
static redisReply *raw(const char *fmt, const char *key, const char *arg, size_t alen)
{
    redisReply *r;
    if (on_cluster) {
        int node = vgt_rcluster_owner(&RC, vg_cluster_keyslot(key, strlen(key)));
        cr_assert_geq(node, 0);
        redisContext *c = vgt_rcluster_connect(&RC, node);
        cr_assert(c);
        r = redisCommand(c, fmt, key, arg, alen);
        redisFree(c);
    } else {
        redisContext *c = vgt_redis_connect(&R);
        cr_assert(c);
        r = redisCommand(c, fmt, key, arg, alen);
        redisFree(c);
    }
    cr_assert(r, "no reply to %s on %s", fmt, key);
    return r;
}

static long long raw_int(const char *fmt, const char *key)
{
    redisReply *r = raw(fmt, key, NULL, 0);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s %s: %s", fmt, key, r->type == REDIS_REPLY_ERROR ? r->str : "?");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The stem of the current (or, prev, the previous) version of blob name,
 * from its manifest (static storage). */
static const char *stem_of(const char *name, int prev)
{
    static char st[2][200];
    char key[100];
    snprintf(key, sizeof key, "%svaegan:{leader}:manifest:%s", prefix, name);
    redisReply *r = raw(prev ? "HGET %s prev.stem" : "HGET %s stem", key, NULL, 0);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "no stem in %s", key);
    snprintf(st[prev], sizeof st[prev], "%s", r->str);
    freeReplyObject(r);
    return st[prev];
}

/* The key of chunk i of the version with this stem. */
static const char *chunk_key(const char *stem, int i)
{
    static char k[300];
    snprintf(k, sizeof k, "%svaegan:blob:{%s:%d}", prefix, stem, i);
    return k;
}

/* Keys matching pattern on every node. */
static long long count_keys(const char *pattern)
{
    long long n = 0;
    for (int i = 0; i < (on_cluster ? RC.n : 1); i++) {
        redisContext *c = on_cluster ? vgt_rcluster_connect(&RC, i) : vgt_redis_connect(&R);
        cr_assert(c);
        redisReply *r = redisCommand(c, "KEYS %s", pattern);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        n += (long long)r->elements;
        freeReplyObject(r);
        redisFree(c);
    }
    return n;
}

/* ---- calls, waited for ------------------------------------------------------------------ */

typedef struct result {
    int done, status;
    uint64_t epoch;
    vg_shared_blob_t blob;
    void *data;
} result_t;

static int is_done(void *arg) { return ((result_t *)arg)->done; }

static void wait_result(result_t *r, const char *what)
{
    cr_assert(vgt_loop_until(&loop, is_done, r, 60000, NULL), "%s: no callback", what);
}

static void epoch_cb(void *ud, int status, uint64_t epoch)
{
    result_t *r = ud;
    r->done++;
    r->status = status;
    r->epoch = epoch;
}

static uint64_t take_epoch(vg_store_t *s)
{
    result_t r = {0};
    cr_assert_eq(vg_shared_take_epoch(s, epoch_cb, &r), 0);
    wait_result(&r, "take_epoch");
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, 0, "take_epoch: %s", vg_strerror(r.status));
    return r.epoch;
}

static void put_cb(void *ud, int status)
{
    result_t *r = ud;
    r->done++;
    r->status = status;
}

#define CHUNK 4096

static int publish(vg_store_t *s, const char *name, uint64_t epoch, uint64_t version, const void *data, size_t len)
{
    vg_shared_put_t p = {.name = name, .epoch = epoch, .version = version, .data = data, .len = len,
                         .chunk_bytes = CHUNK, .ttl_s = 300};
    result_t r = {0};
    cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), 0);
    wait_result(&r, "publish");
    cr_assert_eq(r.done, 1);
    return r.status;
}

static void get_cb(void *ud, int status, const vg_shared_blob_t *blob, void *data)
{
    result_t *r = ud;
    r->done++;
    r->status = status;
    if (blob)
        r->blob = *blob;
    r->data = data;
}

static result_t fetch(vg_store_t *s, const char *name, const vg_shared_blob_t *have)
{
    result_t r = {0};
    cr_assert_eq(vg_shared_fetch(s, name, have, &fbuf, &fcap, get_cb, &r), 0);
    wait_result(&r, "fetch");
    cr_assert_eq(r.done, 1);
    return r;
}

/* n bytes that differ with seed. */
static unsigned char *blob_bytes(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    cr_assert(p);
    uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

static void assert_fetched(const result_t *r, uint64_t epoch, uint64_t version, const unsigned char *want, size_t n)
{
    cr_assert_eq(r->status, 0, "fetch: %s (%s)", vg_strerror(r->status), last_warn);
    cr_assert(r->data, "fetch: nothing new, want %llu:%llu", (unsigned long long)epoch, (unsigned long long)version);
    cr_assert(r->data == fbuf, "the blob is not in the caller's buffer");
    cr_assert_eq(r->blob.epoch, epoch);
    cr_assert_eq(r->blob.version, version);
    cr_assert_eq(r->blob.bytes, n);
    cr_assert(memcmp(r->data, want, n) == 0, "fetched bytes differ");
}

/* ---- the cases, on either kind of Redis ------------------------------------------------- */

#define N1 (25 * CHUNK + 123) /* 26 chunks, the last one short */

static void case_round_trip(void)
{
    vg_store_t *s = open_store();
    uint64_t e1 = take_epoch(s), e2 = take_epoch(s);
    cr_assert_geq(e1, 1);
    cr_assert_eq(e2, e1 + 1, "the epoch must grow by one per leader");
    cr_assert_eq(fetch(s, "snap", NULL).status, VG_ENOTFOUND, "no manifest yet");

    unsigned char *d = blob_bytes(N1, 1);
    cr_assert_eq(publish(s, "snap", e2, 10, d, N1), 0, "%s", last_warn);
    result_t r = fetch(s, "snap", NULL);
    assert_fetched(&r, e2, 10, d, N1);
    const char *stem = stem_of("snap", 0);
    for (int i = 0; i < 26; i++)
        cr_assert_eq(raw_int("TTL %s", chunk_key(stem, i)), -1, "chunk %d of a published version expires", i);
    cr_assert_eq(count_keys("t:vaegan:blob:*"), 26, "chunks beyond the blob's 26");

    vg_shared_blob_t have = r.blob;
    r = fetch(s, "snap", &have);
    cr_assert_eq(r.status, 0);
    cr_assert_null(r.data, "a reader holding the current version gets nothing new");
    cr_assert_eq(r.blob.version, 10);
    free(d);
    close_store(s);
}

static void case_fenced_and_stale(void)
{
    vg_store_t *s = open_store();
    uint64_t old = take_epoch(s);
    unsigned char *a = blob_bytes(3 * CHUNK, 2), *b = blob_bytes(3 * CHUNK, 3);
    cr_assert_eq(publish(s, "ckpt", old, 5, a, 3 * CHUNK), 0);
    cr_assert_eq(publish(s, "ckpt", old, 5, b, 3 * CHUNK), VG_ESTALE, "the same version twice");
    cr_assert_eq(publish(s, "ckpt", old, 4, b, 3 * CHUNK), VG_ESTALE, "an older version");
    cr_assert(strstr(last_warn, "as new"), "refusal not named: %s", last_warn);

    uint64_t now = take_epoch(s); /* a new leader */
    cr_assert_eq(publish(s, "ckpt", old, 6, b, 3 * CHUNK), VG_EFENCED, "the old leader must be fenced");
    cr_assert(strstr(last_warn, "newer leader"), "fencing not named: %s", last_warn);
    char pat[100];
    snprintf(pat, sizeof pat, "t:vaegan:blob:{ckpt:%llu:6:*", (unsigned long long)old);
    cr_assert_eq(count_keys(pat), 0, "a refused version's chunks are left");
    cr_assert_eq(count_keys("t:vaegan:blob:*"), 3, "only the published version's chunks may be left");
    result_t r = fetch(s, "ckpt", NULL);
    assert_fetched(&r, old, 5, a, 3 * CHUNK);

    /* the new leader's first version is newer whatever its number */
    cr_assert_eq(publish(s, "ckpt", now, 1, b, 3 * CHUNK), 0);
    r = fetch(s, "ckpt", NULL);
    assert_fetched(&r, now, 1, b, 3 * CHUNK);
    free(a);
    free(b);
    close_store(s);
}

static void case_two_versions_and_fallback(void)
{
    vg_store_t *s = open_store();
    uint64_t e = take_epoch(s);
    size_t n = 4 * CHUNK + 7;
    unsigned char *v[3];
    char first[200];
    for (int k = 0; k < 3; k++) {
        v[k] = blob_bytes(n, 10 + (unsigned)k);
        cr_assert_eq(publish(s, "snap", e, (uint64_t)k + 1, v[k], n), 0);
        if (k == 0)
            snprintf(first, sizeof first, "%s", stem_of("snap", 0));
    }
    const char *cur = stem_of("snap", 0), *prev = stem_of("snap", 1);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(raw_int("EXISTS %s", chunk_key(first, i)), 0, "evicted chunk %d kept", i);
        cr_assert_eq(raw_int("TTL %s", chunk_key(prev, i)), -1, "previous chunk %d gone or expiring", i);
    }
    cr_assert_eq(count_keys("t:vaegan:blob:*"), 10, "two versions of 5 chunks are kept");

    /* the current version loses a chunk: the previous one is the answer, with a warning */
    redisReply *d = raw("DEL %s", chunk_key(cur, 2), NULL, 0);
    freeReplyObject(d);
    result_t r = fetch(s, "snap", NULL);
    assert_fetched(&r, e, 2, v[1], n);
    cr_assert(strstr(last_warn, "1 of 5 chunks missing") && strstr(last_warn, "trying the previous"), "warning: %s",
              last_warn);
    vg_shared_blob_t have = r.blob;
    r = fetch(s, "snap", &have);
    cr_assert(r.status == 0 && !r.data, "a reader holding the fallback gets nothing new");

    /* the previous one corrupted too (same length, other bytes): nothing readable */
    char junk[CHUNK];
    memset(junk, 'x', sizeof junk);
    redisReply *w = raw("SET %s %b", chunk_key(prev, 0), junk, sizeof junk);
    freeReplyObject(w);
    r = fetch(s, "snap", NULL);
    cr_assert_neq(r.status, 0, "a corrupt blob was accepted");
    cr_assert_null(r.data);
    cr_assert(strstr(last_warn, "CRC mismatch"), "warning: %s", last_warn);
    for (int k = 0; k < 3; k++)
        free(v[k]);
    close_store(s);
}

static void case_cancelled(void)
{
    vg_store_t *s = open_store();
    uint64_t e = take_epoch(s);
    size_t n = 64 * CHUNK;
    unsigned char *d = blob_bytes(n, 4);
    vg_shared_put_t p = {.name = "snap", .epoch = e, .version = 1, .data = d, .len = n, .chunk_bytes = CHUNK};
    result_t r = {0};
    cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), 0);
    vg_store_close_cancel(s);
    cr_assert_eq(r.done, 1, "the publication's callback must fire once at cancel");
    cr_assert_eq(r.status, VG_EAGAIN);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    free(d);
}

/* A publication whose chunks took over half their TTL to write (here: the
 * server paused writes for 2 s, TTL 1 s) is refused before the manifest
 * names it — its first chunks could expire before PERSIST — and its chunks
 * are deleted. */
static void case_slower_than_its_ttl(void)
{
    vg_store_t *s = open_store();
    uint64_t e = take_epoch(s);
    size_t n = 8 * CHUNK;
    unsigned char *d = blob_bytes(n, 5);
    redisContext *c = vgt_redis_connect(&R);
    redisReply *pr = redisCommand(c, "CLIENT PAUSE 2000 WRITE");
    cr_assert(pr && pr->type == REDIS_REPLY_STATUS, "CLIENT PAUSE refused");
    freeReplyObject(pr);
    redisFree(c);
    vg_shared_put_t p = {.name = "snap", .epoch = e, .version = 1, .data = d, .len = n, .chunk_bytes = CHUNK,
                         .ttl_s = 1};
    result_t r = {0};
    cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), 0);
    wait_result(&r, "publish");
    cr_assert_eq(r.status, VG_EREDIS, "refused: %s", vg_strerror(r.status));
    cr_assert(strstr(last_warn, "over half their TTL"), "logged: %s", last_warn);
    cr_assert_eq(count_keys("t:vaegan:{leader}:manifest:*"), 0, "no manifest names it");
    cr_assert_eq(count_keys("t:vaegan:blob:*"), 0, "its chunks are deleted");
    close_store(s);
    free(d);
}

Test(shared, slower_than_its_ttl, .init = setup_one, .fini = teardown, .timeout = 120) { case_slower_than_its_ttl(); }
Test(shared, round_trip, .init = setup_one, .fini = teardown, .timeout = 120) { case_round_trip(); }
Test(shared, fenced_and_stale, .init = setup_one, .fini = teardown, .timeout = 120) { case_fenced_and_stale(); }
Test(shared, two_versions_and_fallback, .init = setup_one, .fini = teardown, .timeout = 120)
{
    case_two_versions_and_fallback();
}
Test(shared, cancelled, .init = setup_one, .fini = teardown, .timeout = 120) { case_cancelled(); }

Test(shared_cluster, round_trip, .init = setup_cluster, .fini = teardown, .timeout = 180) { case_round_trip(); }
Test(shared_cluster, fenced_and_stale, .init = setup_cluster, .fini = teardown, .timeout = 180)
{
    case_fenced_and_stale();
}
Test(shared_cluster, two_versions_and_fallback, .init = setup_cluster, .fini = teardown, .timeout = 180)
{
    case_two_versions_and_fallback();
}

Test(shared, bad_arguments, .init = setup_one, .fini = teardown, .timeout = 60)
{
    vg_store_t *s = open_store();
    unsigned char b[4] = {1, 2, 3, 4};
    vg_shared_put_t p = {.name = "snap", .epoch = 1, .version = 1, .data = b, .len = sizeof b};
    result_t r = {0};
    const char *bad_names[] = {"", "a b", "a{b}", "a:b",
                               "a2345678901234567890123456789012345678901234567890123456789012345"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        p.name = bad_names[i];
        cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), VG_EINVAL, "name '%s' accepted", bad_names[i]);
        cr_assert_eq(vg_shared_fetch(s, bad_names[i], NULL, &fbuf, &fcap, get_cb, &r), VG_EINVAL);
    }
    p.name = "snap";
    p.epoch = 0;
    cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), VG_EINVAL, "epoch 0 accepted");
    p.epoch = 1;
    p.len = 0;
    cr_assert_eq(vg_shared_publish(s, &p, put_cb, &r), VG_EINVAL, "an empty blob accepted");
    cr_assert_eq(r.done, 0, "a refused call has no callback");
    /* a manifest written by someone else, malformed: refused by name, not trusted */
    redisReply *w = raw("HSET %s epoch 1 version x bytes 4 chunks 1 chunk_size 4 crc 0 stem snap:1:1:0",
                        "t:vaegan:{leader}:manifest:snap", NULL, 0);
    freeReplyObject(w);
    r = fetch(s, "snap", NULL);
    cr_assert_eq(r.status, VG_ECORRUPT);
    cr_assert(strstr(last_warn, "malformed"), "warning: %s", last_warn);
    close_store(s);
}
