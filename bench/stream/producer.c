/* producer.c — the benchmark's librdkafka producers: the backlog's (lz4,
 * big batches, statistics for the bytes on the wire) and each rate's
 * (linger.ms = 0).  The callbacks run inside rd_kafka_poll/flush on the
 * producing thread and count into the bs_prod_stats_t the caller owns. */
#include <stdlib.h>
#include <string.h>

#include "bench/stream/internal.h"

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk, (void)len;
    bs_prod_stats_t *st = opaque;
    const char *p = strstr(json, "\"tx_bytes\":");
    if (p)
        st->tx_bytes = strtod(p + 11, NULL);
    return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    bs_prod_stats_t *st = opaque;
    if (m->err)
        st->dr_failed++;
}

rd_kafka_t *bs_make_producer(const char *addr, const char *const *kv, bs_prod_stats_t *stats)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof errstr)) {
            bs_complain("producer option %s=%s: %s", kv[i], kv[i + 1], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, stats);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        bs_complain("producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}
