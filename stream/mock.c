/*
 * mock.c — the in-process Kafka-protocol broker (see mock.h).
 *
 * librdkafka's mock cluster hangs off a client handle: we create a bare
 * producer (no bootstrap servers, it never connects anywhere) just to own
 * the cluster, with a silent log callback (library modules never print;
 * the handle would only complain that it has no brokers).  The cluster's
 * broker threads live until rd_kafka_mock_cluster_destroy().
 */
#include "stream/mock.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vg_mock {
    rd_kafka_t *rk;                /* owns nothing but the cluster */
    rd_kafka_mock_cluster_t *mc;
};

static void silent_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* topics[i] names a topic to create: literal, non-empty, not a repeat. */
static int creates(const char *const *topics, size_t i)
{
    if (!topics[i] || !topics[i][0] || topics[i][0] == '^')
        return 0;
    for (size_t j = 0; j < i; j++)
        if (topics[j] && !strcmp(topics[j], topics[i]))
            return 0;
    return 1;
}

int vg_mock_start(vg_mock_t **out, const char *const *topics, size_t n_topics, int partitions,
                  char *addr, size_t addrlen, char *err, size_t errlen)
{
    char errstr[512];
    size_t n_create = 0;
    for (size_t i = 0; i < n_topics; i++)
        n_create += (size_t)creates(topics, i);
    if (n_create && partitions < 1) {
        snprintf(err, errlen, "mock broker: partitions must be >= 1 (got %d)", partitions);
        return VG_EINVAL;
    }
    vg_mock_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "mock broker: out of memory");
        return VG_ENOMEM;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, silent_log);
    if (rd_kafka_conf_set(conf, "client.id", "vaegan-mock", errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        free(m);
        snprintf(err, errlen, "mock broker: %s", errstr);
        return VG_EKAFKA;
    }
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!m->rk) { /* conf is still ours on failure */
        rd_kafka_conf_destroy(conf);
        free(m);
        snprintf(err, errlen, "mock broker: %s", errstr);
        return VG_EKAFKA;
    }
    m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
    if (!m->mc) {
        rd_kafka_destroy(m->rk);
        free(m);
        snprintf(err, errlen, "mock broker: could not start the mock cluster");
        return VG_EKAFKA;
    }
    for (size_t i = 0; i < n_topics; i++) {
        if (!creates(topics, i))
            continue;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, topics[i], partitions, 1);
        if (e) {
            snprintf(err, errlen, "mock broker: creating topic %s: %s", topics[i],
                     rd_kafka_err2str(e));
            vg_mock_stop(m);
            return VG_EKAFKA;
        }
    }
    snprintf(addr, addrlen, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    *out = m;
    return 0;
}

void vg_mock_stop(vg_mock_t *m)
{
    if (!m)
        return;
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->rk);
    free(m);
}

int vg_mock_set_down(vg_mock_t *m, int down)
{
    /* the cluster's one broker has id 1 */
    rd_kafka_resp_err_t e = down ? rd_kafka_mock_broker_set_down(m->mc, 1) : rd_kafka_mock_broker_set_up(m->mc, 1);
    return e ? VG_EKAFKA : 0;
}

void vg_mock_push_errors(vg_mock_t *m, int api_key, size_t n, const int *errors)
{
    rd_kafka_resp_err_t errs[64];
    size_t k = n < 64 ? n : 64;
    for (size_t i = 0; i < k; i++)
        errs[i] = (rd_kafka_resp_err_t)errors[i];
    rd_kafka_mock_push_request_errors_array(m->mc, (int16_t)api_key, k, errs);
}
