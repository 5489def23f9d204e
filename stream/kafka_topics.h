/*
 * kafka_topics.h — the Kafka consumer's table of topics and of their
 * partitions' state (stream/kafka.c).
 *
 * Every topic name the consumer sees gets a small dense id, its index in the
 * table (0, 1, 2, ...); entries are never removed or renamed, so an id and
 * its name stay valid until vg_kafka_topics_free().  Each topic holds its
 * partitions indexed by partition id, grown on demand.  A name is looked up
 * with a linear search behind a one-entry cache of the last hit: a consumer
 * has a handful of topics, and consecutive messages mostly share one.
 *
 * Memory: the table owns copies of the names and the partition arrays.  A
 * vg_kpart_t pointer stays valid until a call with create = 1 grows that
 * topic's partitions (realloc).  An all-zero vg_kafka_topics_t is an empty
 * table.  Not thread-safe (the consumer uses it on the loop thread only).
 */
#ifndef VG_STREAM_KAFKA_TOPICS_H
#define VG_STREAM_KAFKA_TOPICS_H

#include <stdint.h>

#include "stream/offsets.h"

/* The consumer's state of one (topic, partition). */
typedef struct vg_kpart {
    int assigned, revoking;
    vg_offsets_t o;  /* delivered offsets and their low-water mark (offsets.h) */
    int64_t stored;  /* last value stored, -1 = none */
    int64_t lag;     /* messages from the stored offset to the high-water mark at the last statistics, -1 = not known yet */
    int64_t wm_hi;   /* the highest mark the leader gave while the partition was not fetched (this assignment), -1 = none */
} vg_kpart_t;

/* One topic seen; its id is its index in vg_kafka_topics_t.t. */
typedef struct vg_ktopic {
    char *name;
    vg_kpart_t *parts; /* indexed by partition id */
    int32_t nparts;    /* size of parts (max partition id + 1 seen) */
} vg_ktopic_t;

typedef struct vg_kafka_topics {
    vg_ktopic_t *t; /* t[0..n): every topic seen, by id */
    int32_t n, cap;
    int32_t last;   /* the last lookup's hit (a cache) */
} vg_kafka_topics_t;

/* The id of topic `name`; with create, a new id (the next one) for a name
 * not seen yet.  Returns -1 for NULL, for an unknown name without create, or
 * when out of memory (nothing changed). */
int32_t vg_kafka_topics_id(vg_kafka_topics_t *tt, const char *name, int create);

/* Partition p of topic id; with create, grows the topic's array to hold it
 * (new entries: not assigned, no offsets, stored = -1).  NULL for an
 * unknown id, p < 0, a partition not seen yet without create, or out of
 * memory. */
vg_kpart_t *vg_kafka_topics_part(vg_kafka_topics_t *tt, int32_t id, int32_t p, int create);

/* vg_kafka_topics_part() of the topic named `name` (with create, the topic
 * gets an id first if new). */
vg_kpart_t *vg_kafka_topics_find(vg_kafka_topics_t *tt, const char *name, int32_t p, int create);

/* The name of topic id (the table's copy), NULL for an id not given out. */
const char *vg_kafka_topics_name(const vg_kafka_topics_t *tt, int32_t id);

/* Releases the names, the partitions (and their offset rings) and the table;
 * tt is empty afterwards. */
void vg_kafka_topics_free(vg_kafka_topics_t *tt);

#endif
