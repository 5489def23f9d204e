/*
 * kafka_lag.h — what the consumer's lag needs beyond its own state
 * (stream/kafka.c): librdkafka's statistics read per (topic, partition),
 * and a thread that asks the brokers for the high-water marks of partitions
 * the consumer does not fetch.
 *
 * Why a thread: librdkafka learns a partition's high-water mark from its
 * fetch responses, so the statistics of a paused partition keep the mark of
 * its last fetch, and lag would look flat while the backlog grows.
 * rd_kafka_query_watermark_offsets() asks the leader, but it blocks; the
 * loop thread only posts requests and reads answers, under a mutex.
 */
#ifndef VG_STREAM_KAFKA_LAG_H
#define VG_STREAM_KAFKA_LAG_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* One partition's entry of the statistics; a negative value is unknown
 * (librdkafka writes -1 or -1001). */
typedef struct vg_kstat_part {
    int64_t hi, lo, ls;      /* high-water mark, log start, last stable offset (read_committed) */
    int64_t stored, committed;
} vg_kstat_part_t;

/* Calls cb once per (topic, partition >= 0) in librdkafka's statistics
 * JSON (statistics.interval.ms; the "topics" object).  Returns 0, or
 * VG_EINVAL when the text is not such JSON (nothing called). */
typedef void (*vg_kstat_cb)(void *ud, const char *topic, int32_t partition, const vg_kstat_part_t *s);
int vg_kafka_stats_parse(const char *json, size_t len, vg_kstat_cb cb, void *ud);

/* The high-water mark thread. */
typedef struct vg_kwm vg_kwm_t;

/* Starts the thread on rk (any client handle; rk outlives vg_kwm_stop).
 * Returns 0 or VG_ENOMEM. */
int vg_kwm_start(vg_kwm_t **out, rd_kafka_t *rk);
/* Asks for the marks of the partitions in l (copied; replaces a request
 * not yet taken up).  Never blocks on the brokers.  Returns 0 or
 * VG_ENOMEM. */
int vg_kwm_request(vg_kwm_t *w, const rd_kafka_topic_partition_list_t *l);
/* The latest mark answered for (topic, partition), or -1. */
int64_t vg_kwm_hi(vg_kwm_t *w, const char *topic, int32_t partition);
/* Stops and joins the thread (waiting for the query under way, at most
 * VG_KWM_TIMEOUT_MS) and frees w.  NULL is a no-op. */
#define VG_KWM_TIMEOUT_MS 1000
void vg_kwm_stop(vg_kwm_t *w);

#endif
