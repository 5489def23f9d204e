/*
 * bench_memory.c — vaegan-bench-memory: what a user and an item cost, in
 * the daemon and in Redis, and what the caps bound (issue "nothing
 * unbounded"; a benchmark, not a test: it prints figures).
 *
 *   vaegan-bench-memory [users] [items] [hidden]
 *     defaults 10000000 one-click users, 1000000 distinct items, H = 600
 *
 * 1. The mirror (daemon/hist.c) fed `users` one-click users, unbounded and
 *    with history.max_users = 2,000,000 (the default): RSS growth, bytes per
 *    user.
 * 2. The mirror fed `items` distinct items (one user each, then two users
 *    each), with model.min_item_users = 2, model.max_items = 100,000 and
 *    model.max_pending_items = 100,000 (the defaults): items admitted,
 *    waiting, RSS growth.
 * 3. The model (avb+d+c, H hidden) grown by 2,000 items: bytes per item with
 *    gradients, Adam moments and the workspace (the scorer's snapshot adds
 *    its copy of the item-sized weights).
 * 4. Redis (a private redis-server): bytes per user of hist:<user> with one
 *    item + its vaegan:users entry, and of a rec:<user> list of 100 (with
 *    and without a TTL), from INFO memory.
 * RSS is read from /proc/self/statm; each phase frees what it built.
 */
#include <hiredis/hiredis.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/hist.h"
#include "model/vaegan.h"
#include "tests/support/redis.h"

static double rss_mb(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / 1e6;
}

static void users_phase(long users, int max_users)
{
    malloc_trim(0);
    double r0 = rss_mb();
    vg_hist_t h;
    vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 500, .max_users = max_users, .min_item_users = 1});
    char u[48], it[48];
    int32_t gone[1024];
    for (long k = 0; k < users; k++) {
        snprintf(u, sizeof u, "user-%ld", k);
        snprintf(it, sizeof it, "item-%ld", k % 20000);
        int32_t ui;
        if (vg_hist_add(&h, u, strlen(u), it, strlen(it), (double)k, &ui) == VG_HIST_RELOAD) {
            /* what the daemon's read-back from Redis brings: the event itself */
            const char *items[1] = {it};
            size_t lens[1] = {strlen(it)};
            double ts[1] = {(double)k};
            vg_hist_reload(&h, ui, 0, items, lens, ts, 1);
            vg_hist_reload_done(&h, ui);
        }
        if ((k & 1023) == 1023)
            while (vg_hist_evict(&h, gone, 1024) == 1024)
                ;
    }
    double r1 = rss_mb();
    printf("mirror, %ld one-click users, history.max_users = %d: %d in memory, %llu evicted, RSS +%.0f MB "
           "(%.0f bytes per user in memory)\n",
           users, max_users, h.live_users, (unsigned long long)h.evicted, r1 - r0,
           (r1 - r0) * 1e6 / (h.live_users ? h.live_users : 1));
    vg_hist_free(&h);
}

static void items_phase(long items, int per_item)
{
    malloc_trim(0);
    double r0 = rss_mb();
    vg_hist_t h;
    vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 500, .max_users = 2000000, .catalogue_max = 100000,
                                                .min_item_users = 2, .max_pending = 100000});
    char u[48], it[48];
    for (long k = 0; k < items; k++)
        for (int j = 0; j < per_item; j++) {
            snprintf(u, sizeof u, "u-%ld", (k * per_item + j) % 100000);
            snprintf(it, sizeof it, "hostile-item-%ld", k);
            vg_hist_add(&h, u, strlen(u), it, strlen(it), (double)k, NULL);
        }
    double r1 = rss_mb();
    printf("mirror, %ld distinct items seen by %d user(s) each (min_item_users 2, max_items 100000, "
           "max_pending_items 100000): %d admitted, %d waiting, %llu dropped, RSS +%.0f MB\n",
           items, per_item, h.items.n, h.pend.n - h.pend.n_free, (unsigned long long)h.pend_dropped, r1 - r0);
    vg_hist_free(&h);
}

static void model_phase(int hidden)
{
    vg_model_cfg_t cfg;
    vg_model_cfg_default(&cfg, VG_VARIANT_AVB_D_C);
    cfg.hidden = hidden;
    vg_model_t m;
    if (vg_model_init(&m, &cfg, 1000, 500)) {
        printf("model: cannot create\n");
        return;
    }
    malloc_trim(0);
    double r0 = rss_mb();
    if (vg_model_grow(&m, 3000) == 0) {
        /* touch the new rows as training would (calloc'd pages count only once written) */
        for (int t = 0; t < VG_P_COUNT; t++) {
            vg_param_t *p = &m.p[t];
            if (p->rows && p->item_rows) {
                memset(p->m, 1, p->rows * p->cols * sizeof *p->m);
                memset(p->v, 1, p->rows * p->cols * sizeof *p->v);
                memset(p->g, 1, p->rows * p->cols * sizeof *p->g);
            }
        }
        double r1 = rss_mb();
        printf("model avb+d+c, H = %d: %.0f bytes per item (weights, gradients, Adam moments, workspace)\n", hidden,
               (r1 - r0) * 1e6 / 2000);
    }
    vg_model_close(&m);
}

static long long used_memory(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO memory");
    long long v = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = atoll(p + 12);
    freeReplyObject(r);
    return v;
}

static void redis_phase(int n)
{
    char dir[] = "/tmp/vaegan-bench-memory-XXXXXX";
    vgt_redis_t R = {0};
    if (!mkdtemp(dir) || vgt_redis_start(&R, dir, 0)) {
        printf("redis: cannot start redis-server\n");
        return;
    }
    redisContext *c = vgt_redis_connect(&R);
    long long m0 = used_memory(c);
    for (int k = 0; k < n; k++) {
        redisAppendCommand(c, "ZADD hist:user-%d 1700000000 item-%d", k, k % 20000);
        redisAppendCommand(c, "ZADD vaegan:users 1700000000 user-%d", k);
    }
    for (int k = 0; k < 2 * n; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) == REDIS_OK)
            freeReplyObject(r);
    }
    long long m1 = used_memory(c);
    const char *argv[2 + 200];
    size_t lens[2 + 200];
    char key[64], items[100][24], scores[100][24];
    for (int ttl = 0; ttl < 2; ttl++) {
        long long a = used_memory(c);
        for (int k = 0; k < n; k++) {
            snprintf(key, sizeof key, "rec%s:user-%d", ttl ? "t" : "", k);
            argv[0] = "ZADD";
            argv[1] = key;
            for (int j = 0; j < 100; j++) {
                snprintf(scores[j], sizeof scores[j], "%.6f", 1.0 - j * 1e-3);
                snprintf(items[j], sizeof items[j], "item-%d", (k + j * 37) % 20000);
                argv[2 + 2 * j] = scores[j];
                argv[3 + 2 * j] = items[j];
            }
            for (int j = 0; j < 202; j++)
                lens[j] = strlen(argv[j]);
            redisAppendCommandArgv(c, 202, argv, lens);
            if (ttl)
                redisAppendCommand(c, "EXPIRE %s 86400", key);
        }
        for (int k = 0; k < n * (1 + ttl); k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) == REDIS_OK)
                freeReplyObject(r);
        }
        long long b = used_memory(c);
        printf("redis: rec:<user> of 100 items%s: %.0f bytes per user\n", ttl ? " with a TTL" : "",
               (double)(b - a) / n);
    }
    printf("redis: hist:<user> with one item + its vaegan:users entry: %.0f bytes per user\n",
           (double)(m1 - m0) / n);
    redisFree(c);
    vgt_redis_stop(&R);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    long users = argc > 1 ? atol(argv[1]) : 10000000;
    long items = argc > 2 ? atol(argv[2]) : 1000000;
    int hidden = argc > 3 ? atoi(argv[3]) : 600;
    users_phase(users, 0);
    users_phase(users, 2000000);
    items_phase(items, 1);
    items_phase(items, 2);
    model_phase(hidden);
    redis_phase(100000);
    return 0;
}
