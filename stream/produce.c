/* produce.c — see produce.h.  The configuration is the DLQ producer's
 * (kafka_conf.c), so the operator's options (security, ...) apply alike. */
#include "stream/produce.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

#include "common/errors.h"
#include "stream/kafka_conf.h"

/* Errors only: the operator's consumer options draw a warning each here. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "kafka: %s: %s\n", fac, buf);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    *(rd_kafka_resp_err_t *)opaque = m->err;
}

int vg_kafka_produce_one(const char *brokers, const char *const *options, size_t n_options, const char *topic,
                         const char *key, size_t key_len, const char *value, size_t value_len, int timeout_ms,
                         char *err, size_t errlen)
{
    const char *topics[] = {topic};
    vg_kafka_cfg_t kc = {.brokers = brokers, .group = "-", .topics = topics, .n_topics = 1, .options = options,
                         .n_options = n_options};
    rd_kafka_conf_t *conf;
    int rc = vg_kafka_conf_build(&kc, 0, &conf, err, errlen);
    if (rc)
        return rc;
    rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_opaque(conf, &result);
    rd_kafka_t *rk = vg_kafka_conf_new_handle(RD_KAFKA_PRODUCER, conf, err, errlen, &rc);
    if (!rk)
        return rc;
    rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                                              RD_KAFKA_V_VALUE((void *)value, value_len),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_flush(rk, timeout_ms);
    else
        result = e;
    rd_kafka_destroy(rk);
    if (result == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return vg_errf(err, errlen, VG_EKAFKA, "producing to %s on %s: %s", topic, brokers,
                   result == RD_KAFKA_RESP_ERR__IN_PROGRESS ? "no delivery report in time" : rd_kafka_err2str(result));
}
