/*
 * quality.h — the live hit rate: for a sample of users, was the item of
 * each new event in the user's current list before the event was applied?
 * And would it have been in a popularity ranking's?  (The prequential
 * measure of scripts/prequential.sh, kept by the daemon as it serves.)
 *
 * Which users: those whose id hashes (vg_hist_id_hash, mixed) below
 * sample * 2^64, so a user is in or out for good, whatever its index.
 * Their lists: the top VG_QUALITY_K items of the last rec:<user> list
 * Redis acknowledged, kept here by user index with the index's generation
 * (hist.h); dropped when the user is evicted or erased (vg_quality_drop),
 * and never used for an index that passed to another user since.
 *
 * What is judged: an event of a sampled user with a kept list, whose item
 * the user does not already have (neither ranking may recommend it);
 * counted as a hit at k (10 and 20) for the model when the item is in the
 * list's top k, for popularity when it is in the top k of the items by the
 * users holding them (hist.h's pop) — that ranking as of the last
 * vg_quality_popularity() call (the daemon makes it once a second); in both
 * the items the user has by the event are left out (a list may be older
 * than some of them).  An item not admitted to the catalogue yet is a miss
 * for both.  Users without a list written since the start are not judged,
 * nor events of users holding so many of the VG_QUALITY_POP most popular
 * items that popularity's top 20 lies beyond them.
 *
 * Sliding window: the hit rates cover the last `window` judged events;
 * samples and hits also count over the whole run.
 *
 * Memory: a kept list costs a slot of VG_QUALITY_K + 2 int32 in a table
 * at most half full; the popularity cache VG_QUALITY_POP item indices and a
 * uint32 stamp per item; the window one byte per judged event.
 * Loop thread only (reads the mirror without its lock: the loop thread is
 * its only writer).
 */
#ifndef VG_DAEMON_QUALITY_H
#define VG_DAEMON_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/hist.h"

#define VG_QUALITY_K 20    /* the deepest k judged */
#define VG_QUALITY_POP 512 /* popular items cached */

/* The four hit counts, as bits of vg_quality_judge's result. */
enum { VG_Q_MODEL10 = 1, VG_Q_MODEL20 = 2, VG_Q_POP10 = 4, VG_Q_POP20 = 8 };

typedef struct vg_quality_slot {
    int32_t user; /* -1 = empty */
    uint32_t gen;
    int32_t n;
    int32_t items[VG_QUALITY_K];
} vg_quality_slot_t;

typedef struct vg_quality {
    uint64_t threshold; /* hash < threshold: sampled (0: nobody) */
    int all;            /* sample = 1: everybody */
    vg_quality_slot_t *t;
    size_t cap, n;      /* slots (a power of two, or 0), kept lists */
    int32_t pop[VG_QUALITY_POP];
    int n_pop;
    uint32_t *stamp;    /* stamp[i] == stamp_now: item i is the judged user's */
    int stamp_cap;
    uint32_t stamp_now;
    uint8_t *ring;      /* the window's judged events (VG_Q_* bits) */
    int window, head, filled;
    int in_window[4];   /* hits per bit in the window */
    uint64_t judged, hits[4];
} vg_quality_t;

/* sample in [0, 1] (0 = off), window >= 1.  Returns 0 or VG_ENOMEM. */
int vg_quality_init(vg_quality_t *q, double sample, int window);
void vg_quality_free(vg_quality_t *q);

/* 1 when the user (id bytes) is in the sample. */
int vg_quality_sampled(const vg_quality_t *q, const char *user, size_t len);

/* Keeps the top of a list Redis acknowledged for user index u of
 * generation gen (items[0..n), best first).  Returns 0 or VG_ENOMEM (the
 * user's previous list is dropped then). */
int vg_quality_keep(vg_quality_t *q, int32_t u, uint32_t gen, const int32_t *items, int n);

/* Forgets user index u's list (evicted, erased). */
void vg_quality_drop(vg_quality_t *q, int32_t u);

/* Caches the VG_QUALITY_POP most popular items of h (ties: the older item
 * first), an O(items) pass. */
void vg_quality_popularity(vg_quality_t *q, const vg_hist_t *h);

/* Judges an event (user index u, item index i, -1 = not in the catalogue)
 * before the mirror applies it.  Returns -1 when it is not judged, else the
 * VG_Q_* bits of its hits (also counted). */
int vg_quality_judge(vg_quality_t *q, const vg_hist_t *h, int32_t u, int32_t i);

/* The window's hit rate of one bit (VG_Q_*), NaN while nothing was judged. */
double vg_quality_rate(const vg_quality_t *q, int bit);

#endif
