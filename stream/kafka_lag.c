/*
 * kafka_lag.c — librdkafka's statistics per partition, and the high-water
 * mark thread (see kafka_lag.h).
 *
 * The thread sleeps on a condition variable until a request comes, then
 * queries each partition of it in turn (each query at most
 * VG_KWM_TIMEOUT_MS; a stop is seen between two) and writes the answers into `answers` (a partition
 * list whose .offset is the mark).  Invariants: `want` is the request not
 * yet taken up (NULL: none); `answers` only grows (one entry per partition
 * ever asked about); both are guarded by mu, never held during a query.
 */
#include "stream/kafka_lag.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"

static int64_t field(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

int vg_kafka_stats_parse(const char *json, size_t len, vg_kstat_cb cb, void *ud)
{
    json_error_t e;
    json_t *root = json_loadb(json, len, 0, &e);
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_object(topics)) {
        json_decref(root);
        return VG_EINVAL;
    }
    const char *name;
    json_t *t;
    json_object_foreach(topics, name, t) {
        json_t *parts = json_object_get(t, "partitions");
        const char *pk;
        json_t *p;
        json_object_foreach(parts, pk, p) {
            json_t *id = json_object_get(p, "partition");
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
                continue; /* -1: librdkafka's internal "unassigned" partition */
            vg_kstat_part_t s = {.hi = field(p, "hi_offset"), .lo = field(p, "lo_offset"), .ls = field(p, "ls_offset"),
                                 .stored = field(p, "stored_offset"), .committed = field(p, "committed_offset")};
            cb(ud, name, (int32_t)json_integer_value(id), &s);
        }
    }
    json_decref(root);
    return 0;
}

struct vg_kwm {
    rd_kafka_t *rk;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    rd_kafka_topic_partition_list_t *want, *answers;
};

static void answer(vg_kwm_t *w, const char *topic, int32_t partition, int64_t hi)
{
    pthread_mutex_lock(&w->mu);
    rd_kafka_topic_partition_t *a = rd_kafka_topic_partition_list_find(w->answers, topic, partition);
    if (!a)
        a = rd_kafka_topic_partition_list_add(w->answers, topic, partition);
    a->offset = hi;
    pthread_mutex_unlock(&w->mu);
}

static void *wm_main(void *arg)
{
    vg_kwm_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && !w->want)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        rd_kafka_topic_partition_list_t *l = w->want;
        w->want = NULL;
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < l->cnt; i++) {
            pthread_mutex_lock(&w->mu);
            int stop = w->stop;
            pthread_mutex_unlock(&w->mu);
            if (stop)
                break;
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(w->rk, l->elems[i].topic, l->elems[i].partition, &lo, &hi,
                                                 VG_KWM_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
                answer(w, l->elems[i].topic, l->elems[i].partition, hi);
        }
        rd_kafka_topic_partition_list_destroy(l);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int vg_kwm_start(vg_kwm_t **out, rd_kafka_t *rk)
{
    vg_kwm_t *w = calloc(1, sizeof *w);
    if (!w)
        return VG_ENOMEM;
    w->rk = rk;
    w->answers = rd_kafka_topic_partition_list_new(8);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, wm_main, w) != 0) {
        rd_kafka_topic_partition_list_destroy(w->answers);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return VG_ENOMEM;
    }
    *out = w;
    return 0;
}

int vg_kwm_request(vg_kwm_t *w, const rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(l);
    if (!c)
        return VG_ENOMEM;
    pthread_mutex_lock(&w->mu);
    if (w->want)
        rd_kafka_topic_partition_list_destroy(w->want);
    w->want = c;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int64_t vg_kwm_hi(vg_kwm_t *w, const char *topic, int32_t partition)
{
    pthread_mutex_lock(&w->mu);
    rd_kafka_topic_partition_t *a = rd_kafka_topic_partition_list_find(w->answers, topic, partition);
    int64_t hi = a ? a->offset : -1;
    pthread_mutex_unlock(&w->mu);
    return hi;
}

void vg_kwm_stop(vg_kwm_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    if (w->want)
        rd_kafka_topic_partition_list_destroy(w->want);
    rd_kafka_topic_partition_list_destroy(w->answers);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
