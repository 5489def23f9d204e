/*
 * kafka_conf.c — librdkafka properties of the consumer and of the DLQ
 * producer (see kafka_conf.h).
 *
 * The defaults encode kafka.h's design: offsets are stored by hand once the
 * events are durable (enable.auto.offset.store=false — the one property a
 * user may not override, checked after the user's options) and committed by
 * the consumer's own timer (enable.auto.commit=false); cooperative-sticky
 * rebalancing; logs go to a queue (log.queue) so they are served on the
 * loop thread; statistics.interval.ms from cfg->stats_interval_ms (the lag).  A bad user option is named in the error as it appears in the
 * configuration file (kafka.option.<name>).
 */
#include "stream/kafka_conf.h"

#include <stdio.h>
#include <string.h>

#include "common/errors.h"

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, int user,
                    char *err, size_t errlen)
{
    char errstr[512];
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr);
    if (r == RD_KAFKA_CONF_OK)
        return 0;
    if (user)
        snprintf(err, errlen, "kafka.option.%s: %s", name, errstr);
    else
        snprintf(err, errlen, "kafka: setting %s=%s: %s", name, value, errstr);
    return VG_ECONFIG;
}

int vg_kafka_conf_build(const vg_kafka_cfg_t *cfg, int consumer, rd_kafka_conf_t **out,
                        char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *defaults_c[] = {
        "bootstrap.servers", cfg->brokers,
        "group.id", cfg->group,
        "enable.auto.offset.store", "false",
        "enable.auto.commit", "false",
        "partition.assignment.strategy", "cooperative-sticky",
        "enable.partition.eof", "false",
        "auto.offset.reset", "earliest",
        "log.connection.close", "false",
        "log.queue", "true",
        "client.id", "vaegand",
        NULL,
    };
    const char *defaults_p[] = {
        "bootstrap.servers", cfg->brokers,
        "client.id", "vaegand-dlq",
        "log.connection.close", "false",
        "log.queue", "true",
        NULL,
    };
    const char **d = consumer ? defaults_c : defaults_p;
    int rc = 0;
    for (size_t i = 0; d[i] && rc == 0; i += 2)
        rc = conf_set(conf, d[i], d[i + 1], 0, err, errlen);
    char interval[16];
    snprintf(interval, sizeof interval, "%d", cfg->stats_interval_ms);
    if (rc == 0 && consumer && cfg->stats_interval_ms > 0)
        rc = conf_set(conf, "statistics.interval.ms", interval, 0, err, errlen);
    for (size_t i = 0; i < cfg->n_options && rc == 0; i++) {
        const char *name = cfg->options[2 * i], *value = cfg->options[2 * i + 1];
        if (!name || !value) {
            snprintf(err, errlen, "kafka.option #%zu: name or value missing", i);
            rc = VG_ECONFIG;
        } else {
            rc = conf_set(conf, name, value, 1, err, errlen);
        }
    }
    char v[16];
    size_t vlen = sizeof v;
    if (rc == 0 && consumer &&
        rd_kafka_conf_get(conf, "enable.auto.offset.store", v, &vlen) == RD_KAFKA_CONF_OK &&
        strcmp(v, "false") != 0) {
        snprintf(err, errlen,
                 "kafka.option.enable.auto.offset.store: must stay false (offsets are stored "
                 "only once the events are durable)");
        rc = VG_ECONFIG;
    }
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    *out = conf;
    return 0;
}

rd_kafka_t *vg_kafka_conf_new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err,
                                     size_t errlen, int *rc)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        /* cross-property checks land here: a configuration matter */
        snprintf(err, errlen, "kafka: %s", errstr);
        *rc = VG_ECONFIG;
        return NULL;
    }
    rd_kafka_set_log_queue(rk, NULL); /* logs are served by our polls, on the loop */
    return rk;
}

int vg_kafka_check_options(const vg_kafka_cfg_t *cfg, char *err, size_t errlen)
{
    for (int consumer = 1; consumer >= 0; consumer--) {
        rd_kafka_conf_t *conf;
        int rc = vg_kafka_conf_build(cfg, consumer, &conf, err, errlen);
        if (rc)
            return rc;
        rd_kafka_conf_destroy(conf);
    }
    return 0;
}
