/*
 * rank.h — what the scorer, the trainer and replay share about ranking:
 * immutable model snapshots and the ranking of users into top-N lists.
 *
 * A snapshot (vg_snap_t) is a scoring-only copy of the training model,
 * reference-counted so that the trainer can publish a new one while scorer
 * threads still rank with the old one; it is never changed after
 * vg_snap_new() but by vg_snap_remake(), which only its last holder may call.
 *
 * vg_rank_users() ranks the items of a user's history-less candidates: with a
 * snapshot, by the model's scores (one GEMM for the batch); without one, by
 * popularity (users holding the item).  Items the snapshot has no row for
 * (newer than its catalogue, or absent from a leader's: NaN bias) are
 * ranked after the model's items, by popularity, so every list has
 * min(top_n, items - history) entries.
 */
#ifndef VG_RANK_H
#define VG_RANK_H

#include <stdatomic.h>
#include <stdint.h>

#include "daemon/hist.h"
#include "model/ranker.h"
#include "model/vaegan.h"

typedef struct vg_snap {
    vg_model_t m;     /* scoring-only copy (vg_model_snapshot) */
    vg_fastw_t *fast; /* its output layer for the fast kernel, or NULL: fp32 (ranker.h) */
    char why[160];    /* the kernel taken, or why none */
    double alpha;     /* alpha of the training model when taken */
    atomic_int refs;
} vg_snap_t;

/* A snapshot of src with one reference, its output layer converted for
 * `kernel` (vg_fastw_build), or NULL (out of memory). */
vg_snap_t *vg_snap_new(const vg_model_t *src, vg_kernel_t kernel);
/* The same made in the memory of `spare` (NULL: vg_snap_new), a snapshot of
 * which the caller holds the only reference (given up; freed on failure):
 * at an unchanged catalogue no fresh pages are faulted in and none returned
 * (at 27k items and H = 600 during a backlog here: 0.10-0.13 s of CPU per
 * snapshot instead of 0.55-0.9 s). */
vg_snap_t *vg_snap_remake(vg_snap_t *spare, const vg_model_t *src, vg_kernel_t kernel);
/* Another daemon's model (the leader's: a scoring-only model with its
 * vocabulary, model/vaegan.h vg_model_load_weights_mem) served here, in two
 * steps.  vg_snap_map (the mirror's writer thread, not holding its lock: it
 * takes the write lock only while items enter) adopts the leader's items
 * into the mirror (vg_hist_adopt_item: the vocabulary is
 * the leader's) and gives *from (malloc'ed, *n = the mirror's items):
 * from[i] is the leader's row of mirror item i, or -1.  Returns 0 or
 * VG_ENOMEM (*from NULL).  vg_snap_mapped (any thread) makes the snapshot
 * with one reference, or NULL (out of memory); items of the mirror the
 * leader has no row for are ranked by popularity after the model's. */
int vg_snap_map(vg_hist_t *h, const vg_model_t *leader, int32_t **from, int *n);
vg_snap_t *vg_snap_mapped(const vg_model_t *leader, const int32_t *from, int n, vg_kernel_t kernel);
/* 1 when the caller's reference to s is its only one. */
int vg_snap_alone(vg_snap_t *s);
/* "kernel int8 brg:…", or "kernel fp32 openblas: <why no fast kernel>", in buf. */
const char *vg_snap_kernel(const vg_snap_t *s, char *buf, size_t n);
/* One more reference (NULL ok); returns s. */
vg_snap_t *vg_snap_ref(vg_snap_t *s);
void vg_snap_unref(vg_snap_t *s); /* NULL ok; frees at zero */

/* One finished list.  items/scores have n entries; t_mark is when the user
 * was marked for scoring (CLOCK_MONOTONIC seconds; 0 for background
 * refreshes). */
typedef struct vg_list {
    int32_t user;
    uint32_t gen;  /* the user's generation when ranked (hist.h): a list for an index that
                      passed to another user since is not written */
    int stale;     /* 1: the user was being read back or gone when ranked: not to be written */
    uint64_t ver;  /* the user's history version it was ranked from (the scorer's marks) */
    double hts;    /* the latest ts among the user's events and removals when ranked: the list's
                      version in Redis, comparable across instances (cache/store.h, vg_store_put_rec) */
    int64_t step;  /* the model's step (-2: popularity) */
    int n;
    int32_t *items;
    double *scores;
    double t_mark;
} vg_list_t;

/* Lists for users sel[0..n) (n <= VG_RANK_MAX_BATCH) with `snap` (NULL =
 * popularity) ranked by r (the calling thread's own), written to
 * out[0..n) (items/scores malloc'd per list; free with vg_list_free).  Takes
 * the mirror's read lock while copying.  Returns 0 or VG_ENOMEM (out[] then
 * holds nothing to free). */
int vg_rank_users(vg_hist_t *h, const vg_snap_t *snap, vg_ranker_t *r, const int32_t *sel, int n, int top_n,
                  vg_list_t *out);
void vg_list_free(vg_list_t *l);

#endif
