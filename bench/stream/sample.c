/* sample.c — latency samples.  A sample is one click for a user with no
 * sample in flight (the user free for the longest time: a FIFO ring), on the
 * next unused item of that user's rec list as read before the phases, so it
 * is not in the history and the list must change.  Two threads share
 * bs_lat_t under L->mu: the sender (bs_sender_main) times each click just
 * before rd_kafka_producev, the subscriber (bs_subscriber_main) takes the
 * keyspace notification of rec:<user> (the ZADD inside the daemon's
 * MULTI/DEL/ZADD/EXEC) as the answer and frees the user again.
 * Notifications for users without a sample in flight are "unattributed". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

/* Queues u as free when it has rec items left.  Caller holds L->mu. */
static void free_push(bs_lat_t *L, int32_t u)
{
    if (L->used[u] < BS_REC_READ && L->recs[(size_t)u * BS_REC_READ + L->used[u]] >= 0 &&
        L->rn < (size_t)BS_GEN_USERS)
        L->ring[(L->rhead + L->rn++) % BS_GEN_USERS] = u;
}

/* "u123" / "i123" (prefix, digits) -> 123, or -1. */
static int parse_num_id(const char *s, size_t len, char prefix)
{
    if (len < 2 || s[0] != prefix)
        return -1;
    long v = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 100000000)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return (int)v;
}

/* ---- candidates -------------------------------------------------------------------------- */

static int lat_alloc(bs_lat_t *L)
{
    L->recs = malloc((size_t)BS_GEN_USERS * BS_REC_READ * sizeof *L->recs);
    L->used = calloc(BS_GEN_USERS, 1);
    L->order = malloc((size_t)BS_GEN_USERS * sizeof *L->order);
    L->pending = malloc((size_t)BS_GEN_USERS * sizeof *L->pending);
    L->ring = malloc((size_t)BS_GEN_USERS * sizeof *L->ring);
    if (!L->recs || !L->used || !L->order || !L->pending || !L->ring)
        return -1;
    for (int u = 0; u < BS_GEN_USERS; u++)
        L->pending[u] = -1;
    L->n_order = 0;
    return 0;
}

/* The rec lists of users [u0, u1), pipelined.  0 or -1. */
static int read_chunk(redisContext *c, bs_lat_t *L, int u0, int u1)
{
    for (int u = u0; u < u1; u++)
        redisAppendCommand(c, "ZREVRANGE rec:u%d 0 %d", u, BS_REC_READ - 1);
    for (int u = u0; u < u1; u++) {
        void *vr;
        if (redisGetReply(c, &vr) != REDIS_OK)
            return -1;
        redisReply *r = vr;
        int32_t *row = L->recs + (size_t)u * BS_REC_READ;
        int got = 0;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements && got < BS_REC_READ; k++) {
            int it = parse_num_id(r->element[k]->str, r->element[k]->len, 'i');
            if (it >= 0)
                row[got++] = it;
        }
        for (int k = got; k < BS_REC_READ; k++)
            row[k] = -1;
        if (got)
            L->order[L->n_order++] = u;
        if (r)
            freeReplyObject(r);
    }
    return 0;
}

int bs_lat_read_recs(redisContext *c, bs_lat_t *L)
{
    if (lat_alloc(L) != 0)
        return -1;
    const int chunk = 2000;
    for (int u0 = 0; u0 < BS_GEN_USERS; u0 += chunk)
        if (read_chunk(c, L, u0, u0 + chunk < BS_GEN_USERS ? u0 + chunk : BS_GEN_USERS) != 0)
            return -1;
    /* a fixed shuffle (xorshift), so runs are comparable */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = L->n_order - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        int32_t t = L->order[i];
        L->order[i] = L->order[j];
        L->order[j] = t;
    }
    L->rhead = L->rn = 0;
    for (int i = 0; i < L->n_order; i++)
        free_push(L, L->order[i]);
    return L->n_order;
}

void bs_lat_free(bs_lat_t *L)
{
    free(L->s);
    free(L->recs);
    free(L->used);
    free(L->order);
    free(L->pending);
    free(L->ring);
}

/* ---- the subscriber ---------------------------------------------------------------------- */

/* One pub/sub message received at t.  Returns 1 for the stop message. */
static int on_message(bs_lat_t *L, const redisReply *m, double t)
{
    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements != 4 || m->element[2]->type != REDIS_REPLY_STRING ||
        m->element[3]->type != REDIS_REPLY_STRING)
        return 0;
    const char *ch = m->element[2]->str, *pay = m->element[3]->str;
    const char *rec = strstr(ch, ":rec:");
    if (strcmp(pay, "stop") == 0)
        return 1;
    if (!rec || (strcmp(pay, "zadd") != 0 && strcmp(pay, "restore") != 0)) /* the list's write, either way */
        return 0;
    rec += 5;
    int u = parse_num_id(rec, strlen(rec), 'u');
    pthread_mutex_lock(&L->mu);
    L->notes++;
    L->last_note = t;
    if (u >= 0 && u < BS_GEN_USERS && L->pending[u] >= 0) {
        L->s[L->pending[u]].t_recv = t;
        L->pending[u] = -1;
        free_push(L, u);
    } else {
        L->unattributed++;
    }
    pthread_mutex_unlock(&L->mu);
    return 0;
}

void *bs_subscriber_main(void *arg)
{
    bs_lat_t *L = arg;
    redisContext *c = redisConnectUnix(L->sock);
    redisReply *r = c && !c->err ? redisCommand(c, "PSUBSCRIBE __keyspace@0__:rec:*") : NULL;
    pthread_mutex_lock(&L->mu);
    L->failed = !r || r->type != REDIS_REPLY_ARRAY;
    L->ready = 1;
    pthread_mutex_unlock(&L->mu);
    if (r)
        freeReplyObject(r);
    if (L->failed) {
        if (c)
            redisFree(c);
        return NULL;
    }
    void *vr;
    while (redisGetReply(c, &vr) == REDIS_OK) {
        double t = vg_mono_s();
        int stop = on_message(L, vr, t);
        if (vr)
            freeReplyObject(vr);
        if (stop)
            break;
    }
    redisFree(c);
    return NULL;
}

/* A message on a channel the subscriber's pattern matches stops it. */
void bs_subscriber_stop(const vgt_redis_t *redis, pthread_t *th, int *started)
{
    if (!*started)
        return;
    redisContext *pc = vgt_redis_connect(redis);
    if (pc) {
        redisReply *r = redisCommand(pc, "PUBLISH __keyspace@0__:rec:__stop__ stop");
        if (r)
            freeReplyObject(r);
        redisFree(pc);
        pthread_join(*th, NULL);
    } else {
        pthread_detach(*th);
    }
    *started = 0;
}

/* ---- the sender -------------------------------------------------------------------------- */

/* Opens a sample for the user free for the longest time.  1 with *u, *it,
 * *ts set; 0 when no user is free; -1 when out of memory. */
static int sample_open(bs_lat_t *L, int *u, int *it, double *ts)
{
    pthread_mutex_lock(&L->mu);
    if (!L->rn) {
        pthread_mutex_unlock(&L->mu);
        return 0;
    }
    *u = L->ring[L->rhead];
    L->rhead = (L->rhead + 1) % BS_GEN_USERS;
    L->rn--;
    *it = L->recs[(size_t)*u * BS_REC_READ + L->used[*u]];
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 65536;
        bs_sample_t *s = realloc(L->s, cap * sizeof *s);
        if (!s) {
            pthread_mutex_unlock(&L->mu);
            return -1;
        }
        L->s = s;
        L->cap = cap;
    }
    L->used[*u]++;
    size_t idx = L->n++;
    *ts = vg_mono_s();
    L->s[idx] = (bs_sample_t){*u, *it, *ts, 0};
    L->pending[*u] = (int32_t)idx;
    pthread_mutex_unlock(&L->mu);
    return 1;
}

/* The click of user u on item it, keyed by user.  0 or -1. */
static int send_click(rd_kafka_t *rk, int u, int it)
{
    char val[160], key[24];
    int kl = snprintf(key, sizeof key, "u%d", u);
    int vl = snprintf(val, sizeof val, "{\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%.3f}", u, it, vg_wall_s());
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(BS_TOPIC), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, (size_t)kl), RD_KAFKA_V_VALUE(val, (size_t)vl),
                                  RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 1);
    if (e) {
        bs_complain("produce: %s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* Sends every click due by t (click k is due at t0 + k * period).  0 or -1. */
static int send_due(bs_sender_t *a, rd_kafka_t *rk, long *k, long total, double t0, double period, double t)
{
    while (*k < total && t0 + (double)*k * period <= t) {
        int u, it;
        double ts;
        int got = sample_open(a->L, &u, &it, &ts);
        if (got < 0)
            return -1;
        if (got == 0) {
            a->res->skipped++;
            ++*k;
            continue;
        }
        if (a->res->t_first_send == 0)
            a->res->t_first_send = ts;
        a->res->t_last_send = ts;
        if (send_click(rk, u, it) != 0)
            return -1;
        ++*k;
    }
    return 0;
}

void *bs_sender_main(void *arg)
{
    bs_sender_t *a = arg;
    bs_lat_t *L = a->L;
    const char *kv[] = {"linger.ms", "0", "acks", "1", "statistics.interval.ms", "0", NULL};
    bs_prod_stats_t stats = {-1, 0};
    rd_kafka_t *rk = bs_make_producer(a->addr, kv, &stats);
    if (!rk) {
        a->failed = 1;
        return NULL;
    }
    /* warm the connection and metadata up before the clock starts */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    if (md)
        rd_kafka_metadata_destroy(md);
    long total = (long)llround(a->rate * a->seconds);
    double t0 = vg_mono_s() + 0.01, period = 1.0 / a->rate;
    a->res->first = L->n;
    a->res->t_first_send = 0;
    long k = 0;
    while (k < total && !bs_stop) {
        double due = t0 + (double)k * period;
        double t = vg_mono_s();
        if (t < due) {
            bs_sleep_until(due);
            t = vg_mono_s();
        }
        /* everything due by now goes out */
        if (send_due(a, rk, &k, total, t0, period, t) != 0) {
            a->failed = 1;
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    pthread_mutex_lock(&L->mu);
    a->res->sent = L->n - a->res->first;
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- percentiles ------------------------------------------------------------------------- */

int bs_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bs_pct(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(q * (double)n);
    i = i ? i - 1 : 0;
    return sorted[i < n ? i : n - 1];
}
