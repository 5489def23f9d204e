/*
 * scorer.h — builds rec:<user> lists off the loop thread.
 *
 * The loop thread marks users whose history changed (vg_scorer_mark); each
 * of `threads` scorer threads takes up to `batch` marked users at a time (a
 * burst of one user's events is scored once; a lone click at once, a burst
 * in large batches), copies their histories from the mirror,
 * ranks them on the current model snapshot (vg_rank_users, rank.h), and
 * hands the lists back to the loop thread (on_lists, called there through uv_async)
 * for writing to Redis.  Users with no mark are refreshed in the background
 * when their list is older than refresh_s and a newer model exists, at once
 * when their list was ranked by popularity and a model exists now (the first
 * model reaches every list within seconds), and once after start (so a crash
 * between a history write and its list write heals).  Marked users always
 * go first.  Lists of one user reach on_lists in the order of the user's
 * history versions (an older list that finishes late is dropped).
 *
 * Snapshots: vg_scorer_set_model() takes a reference-counted, immutable
 * vg_snap_t from any thread (the trainer); the scorer swaps to it between
 * batches and frees old ones when no batch uses them.
 */
#ifndef VG_SCORER_H
#define VG_SCORER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/hist.h"
#include "daemon/rank.h"

typedef struct vg_scorer_cfg {
    vg_hist_t *hist;
    int top_n, batch, refresh_s;
    int threads;          /* scorer threads (>= 1), each with its own ranker */
    int max_outstanding;  /* lists handed over and not yet released: the scorer waits above this */
    vg_snap_t *initial;   /* the model to start with (its reference is taken over), or NULL */
    /* Loop thread: lists[0..n) are valid during the call; call
     * vg_scorer_release(sc, k) once per list when its write is done. */
    void (*on_lists)(void *ud, const vg_list_t *lists, int n);
    void *ud;
} vg_scorer_cfg_t;

typedef struct vg_scorer vg_scorer_t;

/* Starts the scorer thread; lists arrive on `loop`.  Returns 0 or VG_ENOMEM. */
int vg_scorer_start(vg_scorer_t **out, uv_loop_t *loop, const vg_scorer_cfg_t *cfg);
/* Marks a user (loop thread; not while holding the mirror's lock). */
void vg_scorer_mark(vg_scorer_t *sc, int32_t user);
/* Drops a forgotten user's waiting mark (loop thread; not while holding the
 * mirror's lock).  A batch already being ranked may still produce its list:
 * the writer skips users whose id was erased. */
void vg_scorer_forget(vg_scorer_t *sc, int32_t user);
/* Schedules every known user for a background rebuild (after start). */
void vg_scorer_mark_all(vg_scorer_t *sc);
/* Takes over one reference of snap (any thread). */
void vg_scorer_set_model(vg_scorer_t *sc, vg_snap_t *snap);
/* The user's history version: the sequence of its latest mark (0: never
 * marked); lists carry the version they were ranked from.  Any thread. */
uint64_t vg_scorer_version(vg_scorer_t *sc, int32_t user);
/* Seconds the oldest waiting mark has waited (0: none waits); any thread. */
double vg_scorer_oldest_wait_s(vg_scorer_t *sc);
/* The age of the oldest list the last background pick took for a refresh
 * (a newer model, older than refresh_s); 0 when that pick found none due.
 * Near refresh_s while the refresh keeps up.  Any thread. */
double vg_scorer_stale_age_s(vg_scorer_t *sc);
/* What the threads' rankers did since the start, summed (users ranked by
 * a model, seconds in the product and in the selection: ranker.h) into
 * *out, and the served snapshot's kernel path (vg_fastw_path; "" before a
 * model) into path[0..n).  Any thread. */
void vg_scorer_work(vg_scorer_t *sc, vg_ranker_stats_t *out, char *path, size_t n);
/* One list written (loop thread). */
void vg_scorer_release(vg_scorer_t *sc, int n);
/* Stops and joins the thread, drops undelivered lists, closes the uv handle
 * (freed in its close callback: run the loop afterwards). */
void vg_scorer_stop(vg_scorer_t *sc);

#endif
