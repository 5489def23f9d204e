/*
 * bench_lists.c — vaegan-bench-lists: Redis' own CPU time per rec:<user>
 * list write, for each way a list can be written, on a private redis-server
 * (unix socket).  Printed, never asserted.
 *
 *   vaegan-bench-lists [--lists N] [--keys K] [--members M]
 *
 * For each form, N lists of M members go to K keys that already hold a list
 * (what the daemon's refreshes do), pipelined, and the figure is the
 * server's used_cpu_user + used_cpu_sys (INFO cpu) over the run divided by
 * N.  The forms: the store's list script (cache/write.c, one EVAL that
 * compares recver:<user> and runs RESTORE, or DEL/ZADD with
 * redis.rec_write = zadd), the same script refusing an older version, and
 * the bare commands without a version (RESTORE alone; MULTI/DEL/ZADD/EXEC),
 * to show what the version check costs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "cache/dump.h"
#include "cache/store.h"
#include "tests/support/redis.h"

static int n_lists = 20000, n_keys = 5000, n_members = 100;
static char (*names)[16];
static const char **items;
static size_t *lens;
static double *scores;

static double redis_cpu(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cpu");
    double u = 0, s = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_cpu_user:") : NULL;
    const char *q = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_cpu_sys:") : NULL;
    if (p)
        u = strtod(p + 14, NULL);
    if (q)
        s = strtod(q + 13, NULL);
    freeReplyObject(r);
    return u + s;
}

static void noop(uv_timer_t *t) { (void)t; }

/* N lists through a store (zadd: redis.rec_write = zadd), each of this version. */
static double through_store(const vgt_redis_t *R, redisContext *c, int zadd, double version)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    vg_store_cfg_t cfg = {.socket = R->sock, .rec_zadd = zadd, .rec_ttl_s = 3600};
    vg_store_t *s = NULL;
    char err[256];
    if (vg_store_init(&s, &loop, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "vg_store_init: %s\n", err);
        exit(1);
    }
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, noop, 5, 5);
    while (!vg_store_is_up(s))
        uv_run(&loop, UV_RUN_ONCE);
    double t0 = redis_cpu(c);
    for (int k = 0; k < n_lists; k++) {
        char user[16];
        int ul = snprintf(user, sizeof user, "u%d", k % n_keys);
        vg_store_put_rec(s, user, (size_t)ul, items, lens, scores, (size_t)n_members, version, NULL, NULL);
        if (vg_store_pending(s) > 2000)
            while (vg_store_pending(s) > 1000)
                uv_run(&loop, UV_RUN_ONCE);
    }
    while (vg_store_pending(s))
        uv_run(&loop, UV_RUN_ONCE);
    double t1 = redis_cpu(c);
    uv_close((uv_handle_t *)&tick, NULL);
    vg_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return (t1 - t0) / n_lists * 1e6;
}

/* N lists as bare commands (no version): RESTORE, or MULTI/DEL/ZADD/EXEC. */
static double bare(redisContext *c, int restore)
{
    vg_dump_tmp_t *tmp = malloc((size_t)n_members * sizeof *tmp);
    char *payload = malloc(vg_dump_zset_bound((size_t)n_members, lens));
    size_t pn = vg_dump_zset(payload, items, lens, scores, (size_t)n_members, tmp);
    const char **argv = malloc((2 + 2 * (size_t)n_members) * sizeof *argv);
    size_t *argl = malloc((2 + 2 * (size_t)n_members) * sizeof *argl);
    char (*sc)[32] = malloc((size_t)n_members * sizeof *sc);
    for (int i = 0; i < n_members; i++)
        snprintf(sc[i], sizeof sc[i], "%.9g", scores[i]);
    double t0 = redis_cpu(c);
    int queued = 0;
    for (int k = 0; k < n_lists; k++) {
        char key[24];
        snprintf(key, sizeof key, "rec:u%d", k % n_keys);
        if (restore) {
            redisAppendCommand(c, "RESTORE %s 3600000 %b REPLACE", key, payload, pn);
            queued++;
        } else {
            redisAppendCommand(c, "MULTI");
            redisAppendCommand(c, "DEL %s", key);
            argv[0] = "ZADD";
            argv[1] = key;
            argl[0] = 4;
            argl[1] = strlen(key);
            for (int i = 0; i < n_members; i++) {
                argv[2 + 2 * i] = sc[i];
                argl[2 + 2 * i] = strlen(sc[i]);
                argv[3 + 2 * i] = items[i];
                argl[3 + 2 * i] = lens[i];
            }
            redisAppendCommandArgv(c, 2 + 2 * n_members, argv, argl);
            redisAppendCommand(c, "EXPIRE %s 3600", key);
            redisAppendCommand(c, "EXEC");
            queued += 5;
        }
        if (queued >= 2000 || k == n_lists - 1)
            for (; queued > 0; queued--) {
                redisReply *r;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                    fprintf(stderr, "redis: %s\n", c->errstr);
                    exit(1);
                }
                freeReplyObject(r);
            }
    }
    double t1 = redis_cpu(c);
    free(tmp);
    free(payload);
    free(argv);
    free(argl);
    free(sc);
    return (t1 - t0) / n_lists * 1e6;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--lists"))
            n_lists = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--keys"))
            n_keys = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--members"))
            n_members = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--lists N] [--keys K] [--members M]\n", argv[0]);
            return 2;
        }
    }
    if (n_lists < 1 || n_keys < 1 || n_members < 1 || n_members > 100000)
        return 2;
    names = malloc((size_t)n_members * sizeof *names);
    items = malloc((size_t)n_members * sizeof *items);
    lens = malloc((size_t)n_members * sizeof *lens);
    scores = malloc((size_t)n_members * sizeof *scores);
    for (int i = 0; i < n_members; i++) {
        lens[i] = (size_t)snprintf(names[i], sizeof names[i], "item%d", i * 37 % 27278);
        items[i] = names[i];
        scores[i] = 10.0 - i * 0.0173; /* best first, as a list is */
    }
    char dir[] = "/tmp/vaegan-bench-lists-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    vgt_redis_t R = {0};
    if (vgt_redis_start(&R, dir, 0) != 0)
        return 1;
    redisContext *c = vgt_redis_connect(&R);
    redisReply *v = redisCommand(c, "INFO server");
    const char *ver = v && v->str ? strstr(v->str, "redis_version:") : NULL;
    printf("Redis CPU (used_cpu_user + sys) per list of %d members, %d lists over %d keys, unix socket, "
           "redis %.*s\n",
           n_members, n_lists, n_keys, ver ? (int)strcspn(ver + 14, "\r\n") : 1, ver ? ver + 14 : "?");
    freeReplyObject(v);
    bare(c, 1); /* every key holds a list before the first figure */
    printf("  %-58s %7.1f us\n", "RESTORE ... REPLACE alone (no version)", bare(c, 1));
    printf("  %-58s %7.1f us\n", "MULTI/DEL/ZADD/EXPIRE/EXEC (no version)", bare(c, 0));
    printf("  %-58s %7.1f us\n", "list script: version check + RESTORE (the default)", through_store(&R, c, 0, 2.0));
    printf("  %-58s %7.1f us\n", "list script: version check + DEL/ZADD/PEXPIRE (zadd)", through_store(&R, c, 1, 2.0));
    printf("  %-58s %7.1f us\n", "list script: an older version, refused", through_store(&R, c, 0, 1.0));
    redisFree(c);
    vgt_redis_stop(&R);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
