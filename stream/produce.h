/*
 * produce.h — one message to a Kafka topic, synchronously: what the command
 * line needs (`vaegand --forget USER`), not a streaming producer.
 */
#ifndef VG_STREAM_PRODUCE_H
#define VG_STREAM_PRODUCE_H

#include <stddef.h>

/* Produces (key, value) to topic with a librdkafka producer on brokers and
 * the pass-through options (n_options name/value pairs, as the consumer
 * takes them), and waits for its delivery report (at most timeout_ms).
 * Returns 0 when the broker acknowledged it, VG_ECONFIG (a bad option) or
 * VG_EKAFKA with err saying why. */
int vg_kafka_produce_one(const char *brokers, const char *const *options, size_t n_options, const char *topic,
                         const char *key, size_t key_len, const char *value, size_t value_len, int timeout_ms,
                         char *err, size_t errlen);

#endif
