/*
 * bench_shared.c — vaegan-bench-shared: what a snapshot costs to send from
 * the leader to its followers through Redis (cache/shared.h), and a
 * checkpoint for failover, on a private redis-server (unix socket).
 * Printed, never asserted.
 *
 *   vaegan-bench-shared [--items N] [--hidden H] [--repeats R] [--chunk BYTES]
 *     defaults: 27278 items (ML-20M), H = 600 (K: the default), 3 repeats,
 *     VG_SHARED_CHUNK_DEFAULT
 *
 * For the weights-only form (what followers score with) and the full state
 * (weights and moments: the checkpoint), each repeat times: serialising the
 * model into memory (vg_model_save_weights_mem / vg_model_save_mem),
 * publishing it (the chunks' SETs, the manifest script, PERSIST/DEL of the
 * versions), fetching it back (manifest, GETs, size and CRC checks) and
 * loading it (vg_model_load_weights_mem / vg_model_load_mem).  Figures are
 * medians over the repeats (the serialising and the fetching buffers are
 * kept across them, as a leader and a follower keep theirs: the first
 * repeat faults their pages in), with the bytes on the wire and what Redis holds
 * more afterwards (INFO used_memory: two versions kept).  The model is freshly
 * initialised (its values do not change the sizes or the times).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/shared.h"
#include "cache/store.h"
#include "model/vaegan.h"
#include "tests/support/redis.h"

#define MAX_REPEATS 50

static int n_items = 27278, hidden = 600, repeats = 3;
static size_t chunk = VG_SHARED_CHUNK_DEFAULT;
static uv_loop_t loop;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "vaegan-bench-shared: %s: %s\n", what, why);
    exit(1);
}

static long long used_memory(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO memory");
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    long long v = p ? atoll(p + 12) : -1;
    freeReplyObject(r);
    return v;
}

typedef struct result {
    int done, status;
    uint64_t epoch;
    void *data;
    vg_shared_blob_t blob;
} result_t;
static int is_done(void *arg) { return ((result_t *)arg)->done; }
static void run_until(result_t *r)
{
    while (!is_done(r))
        uv_run(&loop, UV_RUN_ONCE);
}
static void epoch_cb(void *ud, int status, uint64_t epoch)
{
    result_t *r = ud;
    r->done = 1, r->status = status, r->epoch = epoch;
}
static void put_cb(void *ud, int status)
{
    result_t *r = ud;
    r->done = 1, r->status = status;
}
static void get_cb(void *ud, int status, const vg_shared_blob_t *blob, void *data)
{
    result_t *r = ud;
    r->done = 1, r->status = status, r->data = data;
    if (blob)
        r->blob = *blob;
}

/* Times one form (weights: the weights-only form, else the full state)
 * over the repeats and prints a line. */
static void bench_form(vg_store_t *s, const vg_model_t *m, uint64_t epoch, int weights, redisContext *c)
{
    const char *name = weights ? "snapshot" : "checkpoint";
    double t_ser[MAX_REPEATS], t_pub[MAX_REPEATS], t_get[MAX_REPEATS], t_load[MAX_REPEATS];
    size_t bytes = 0;
    char err[512];
    long long mem0 = used_memory(c);
    void *buf = NULL, *got = NULL; /* kept across the repeats, as a leader and a follower keep them */
    size_t cap = 0, got_cap = 0;
    for (int k = 0; k < repeats; k++) {
        double t0 = now_s();
        int rc = weights ? vg_model_save_weights_mem(m, &buf, &cap, &bytes, err, sizeof err)
                         : vg_model_save_mem(m, &buf, &cap, &bytes, err, sizeof err);
        if (rc)
            die("serialising", err);
        double t1 = now_s();
        vg_shared_put_t p = {.name = name, .epoch = epoch, .version = (uint64_t)k + 1, .data = buf, .len = bytes,
                             .chunk_bytes = chunk};
        result_t r = {0};
        if (vg_shared_publish(s, &p, put_cb, &r))
            die("publishing", "refused");
        run_until(&r);
        if (r.status)
            die("publishing", vg_strerror(r.status));
        double t2 = now_s();
        result_t g = {0};
        if (vg_shared_fetch(s, name, NULL, &got, &got_cap, get_cb, &g))
            die("fetching", "refused");
        run_until(&g);
        if (g.status || !g.data)
            die("fetching", vg_strerror(g.status));
        double t3 = now_s();
        vg_model_t back;
        rc = weights ? vg_model_load_weights_mem(&back, g.data, (size_t)g.blob.bytes, name, &m->cfg, err, sizeof err)
                     : vg_model_load_mem(&back, g.data, (size_t)g.blob.bytes, name, &m->cfg, 1, err, sizeof err);
        if (rc)
            die("loading", err);
        double t4 = now_s();
        vg_model_close(&back);
        t_ser[k] = t1 - t0, t_pub[k] = t2 - t1, t_get[k] = t3 - t2, t_load[k] = t4 - t3;
    }
    free(buf);
    free(got);
    double mb = (double)bytes / 1e6, pub = median(t_pub, repeats), get = median(t_get, repeats);
    printf("  %-10s %8.1f MB  serialise %6.0f ms  publish %6.0f ms (%5.0f MB/s)  fetch %6.0f ms (%5.0f MB/s)  "
           "load %6.0f ms   Redis +%.1f MB\n",
           name, mb, 1e3 * median(t_ser, repeats), 1e3 * pub, mb / pub, 1e3 * get, mb / get,
           1e3 * median(t_load, repeats), (double)(used_memory(c) - mem0) / 1e6);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--items"))
            n_items = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--hidden"))
            hidden = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--repeats"))
            repeats = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--chunk"))
            chunk = (size_t)atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--items N] [--hidden H] [--repeats R] [--chunk BYTES]\n", argv[0]);
            return 2;
        }
    }
    if (n_items < 1 || hidden < 1 || repeats < 1 || repeats > MAX_REPEATS || chunk < 1)
        die("arguments", "out of range");

    vg_model_cfg_t mc;
    vg_model_cfg_default(&mc, VG_VARIANT_AVB_D_C);
    mc.hidden = hidden;
    vg_model_t m;
    if (vg_model_init(&m, &mc, n_items, 1))
        die("the model", "cannot allocate");
    for (int i = 0; i < n_items; i++) {
        char id[24];
        int n = snprintf(id, sizeof id, "item%d", i);
        vg_vocab_add(&m.vocab, id, (size_t)n, NULL);
    }

    char dir[] = "/tmp/vaegan-bench-shared-XXXXXX";
    vgt_redis_t R;
    memset(&R, 0, sizeof R);
    if (!mkdtemp(dir) || vgt_redis_start(&R, dir, 0))
        die("redis-server", "cannot start");
    redisContext *c = vgt_redis_connect(&R);
    uv_loop_init(&loop);
    vg_store_cfg_t sc = {.socket = R.sock};
    vg_store_t *s = NULL;
    char err[256];
    if (vg_store_init(&s, &loop, &sc, err, sizeof err))
        die("the store", err);
    while (!vg_store_is_up(s))
        uv_run(&loop, UV_RUN_ONCE);
    result_t e = {0};
    vg_shared_take_epoch(s, epoch_cb, &e);
    run_until(&e);
    if (e.status)
        die("the epoch", vg_strerror(e.status));

    printf("snapshot and checkpoint through Redis (unix socket, chunks of %zu bytes): %d items, H %d, K %d, "
           "avb+d+c; medians of %d\n",
           chunk, n_items, hidden, mc.latent, repeats);
    bench_form(s, &m, e.epoch, 1, c);
    bench_form(s, &m, e.epoch, 0, c);

    vg_store_close_cancel(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    redisFree(c);
    vgt_redis_stop(&R);
    vg_model_close(&m);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
