/*
 * offsets.h — the low-water mark of one partition's delivered offsets, for
 * the at-least-once consumer (stream/kafka.c).
 *
 * The consumer pushes every offset it delivers, in increasing order, and
 * marks each done once, in any order, when the app says its effect is
 * durable.  next_store is then the offset to store with
 * rd_kafka_offsets_store(): (last offset such that it and every earlier
 * pushed offset are done) + 1, or -1 while nothing is done at the front.
 * So a committed offset never passes an undone message.
 *
 * Memory: a ring of the pushed offsets not yet popped, doubled when full and
 * kept across resets; vg_offsets_free() releases it.  Not thread-safe (the
 * consumer uses it on the loop thread only).
 */
#ifndef VG_STREAM_OFFSETS_H
#define VG_STREAM_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_offsets_slot {
    int64_t off;
    int done;
} vg_offsets_slot_t;

typedef struct vg_offsets {
    vg_offsets_slot_t *ring; /* pushed, not yet popped; increasing offsets */
    size_t cap, head, len;
    size_t n_out;           /* undone entries in ring */
    int64_t last_delivered; /* last offset pushed, -1 = none since the reset */
    int64_t next_store;     /* low-water mark to store, -1 = none */
} vg_offsets_t;

/* An empty tracker (no ring yet, last_delivered = next_store = -1). */
void vg_offsets_init(vg_offsets_t *o);

/* Forgets every offset (n_out becomes 0, marks -1); keeps the ring's
 * memory for the next assignment. */
void vg_offsets_reset(vg_offsets_t *o);

/* Tracks the delivered offset off as not done; the caller guarantees
 * off > o->last_delivered.  Returns 0, or VG_ENOMEM (nothing changed). */
int vg_offsets_push(vg_offsets_t *o, int64_t off);

/* Takes back the last push (its offset not done), as if it never happened:
 * last_delivered becomes prev_last, its value before that push.  For a
 * message the app gave back to be delivered again (vg_kafka_retry). */
void vg_offsets_unpush(vg_offsets_t *o, int64_t prev_last);

/* Marks off done and pops the done entries at the front, moving next_store.
 * Returns 1 if off was tracked and not yet done, 0 otherwise (nothing
 * changed: an offset never pushed, already popped or already done). */
int vg_offsets_done(vg_offsets_t *o, int64_t off);

/* Releases the ring; o is empty (as after vg_offsets_init) afterwards. */
void vg_offsets_free(vg_offsets_t *o);

#endif
