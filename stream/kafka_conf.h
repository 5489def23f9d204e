/*
 * kafka_conf.h — the librdkafka configuration of the Kafka consumer
 * (stream/kafka.c) and of its dead-letter producer: our defaults, the
 * user's options on top, and the one option a user may not change.
 *
 * Only properties are set here; the consumer adds its opaque and callbacks
 * to the returned configuration itself.  Nothing here keeps state.
 */
#ifndef VG_STREAM_KAFKA_CONF_H
#define VG_STREAM_KAFKA_CONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "stream/kafka.h"

/* A new configuration for the consumer (consumer = 1: group, manual offset
 * store and commit, cooperative-sticky, ...) or for the DLQ producer
 * (consumer = 0): our defaults (with cfg->brokers, and cfg->group for the
 * consumer), then cfg->options in order, which win over the defaults.  For the consumer,
 * enable.auto.offset.store must stay false.  log.queue is on in both: logs
 * are served by the owner's polls.  Returns 0 and *out (the caller's, until
 * rd_kafka_new takes it), or VG_ECONFIG with err like
 *   kafka.option.fetch.wait.max.msx: No such configuration property: ...
 * (nothing is left allocated). */
int vg_kafka_conf_build(const vg_kafka_cfg_t *cfg, int consumer, rd_kafka_conf_t **out,
                        char *err, size_t errlen);

/* rd_kafka_new(type, conf) with the log queue routed to the handle's main
 * queue (served by the owner's polls, on its loop).  conf is consumed in
 * every case (librdkafka's on success, destroyed on failure).  Returns the
 * handle, or NULL with *rc = VG_ECONFIG and err: librdkafka's
 * cross-property checks fail here. */
rd_kafka_t *vg_kafka_conf_new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err,
                                     size_t errlen, int *rc);

#endif
