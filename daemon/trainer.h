/*
 * trainer.h — the background trainer: keeps the VAEGAN model learning from
 * the mirrored histories while the daemon serves.
 *
 * Every interval_ms, or sooner once min_new_events new events arrived, the
 * trainer thread runs steps_per_round updates (vg_model_train_step) on
 * mini-batches drawn from recently active users (recent_fraction of each
 * batch) mixed with uniform draws over all users.  Before a round the model
 * grows to the current catalogue (new items get fresh rows and join the
 * saved vocabulary).  After a round it publishes an immutable snapshot
 * through on_round and, every checkpoint_interval_s, saves the state file
 * (atomically, model/state.c); vg_trainer_stop() saves once more.
 *
 * A failed save (disk full, read-only file system, ...) is logged at ERROR
 * and counted in vaegan_checkpoint_failures_total; the previous state file
 * stays as it was, training and serving go on, and the save is retried
 * sooner than the interval: after min(10 s, interval), then twice as long
 * each time up to the interval.  The first save that succeeds after failures
 * is logged at INFO.  A failed save at stop is counted too and returned.
 *
 * While the consumer has a backlog (vg_trainer_lag: its lag reached
 * backlog_lag, until it is below half of that) the trainer steps back so that
 * ingest gets both cores: a round of one step at most every
 * backlog_interval_ms, the new-events trigger ignored, a running round cut
 * after its current step.  Normal rounds resume as soon as the lag falls.
 * Both changes are logged at INFO; vaegan_train_backlog reads 1 meanwhile.
 *
 * On an idle stream it keeps refining the model on all users.  The thread
 * runs at the lowest CPU priority (nice 19) so that the loop and the scorer,
 * which keep lists fresh, always come first on a busy machine.
 *
 * Several daemons sharing one model (daemon/share.h): only the leader's
 * trainer runs; it hands its weights and state to on_blob; the others' are
 * held (vg_trainer_hold); a new leader's adopts the last checkpoint
 * (vg_trainer_adopt) before it trains.
 *
 * The trainer owns the training model; nobody else touches it.  It reads the
 * mirror under its read lock only while copying a batch's rows.
 */
#ifndef VG_TRAINER_H
#define VG_TRAINER_H

#include <stdint.h>

#include "daemon/hist.h"
#include "daemon/metrics.h"
#include "daemon/rank.h"
#include "model/vaegan.h"

typedef struct vg_train_info {
    int64_t step;
    double alpha, epoch; /* epoch = users trained on / users known */
    int items, users;
    double trained_at;   /* Unix seconds of the round's end */
    int steps;           /* training steps in the round (0: none, e.g. a loaded model) */
    uint64_t round;      /* rounds this trainer completed, this one included (0: not a round) */
    int published;       /* 1: the round's snapshot went to on_blob too */
    vg_step_stats_t loss; /* the loss terms, means over the round's steps */
} vg_train_info_t;

enum { VG_TRAIN_SNAPSHOT = 0, VG_TRAIN_STATE = 1, VG_TRAIN_BLOBS = 2 }; /* what on_blob hands out */

typedef struct vg_trainer_cfg {
    vg_hist_t *hist;
    vg_model_cfg_t model;
    int batch, steps_per_round, interval_ms, min_new_events;
    int backlog_lag;            /* consumer lag that makes it step back (0: never) */
    int backlog_interval_ms;    /* the rounds' interval meanwhile */
    int threads;                /* OpenMP threads of the model's element-wise loops */
    double recent_fraction;
    vg_kernel_t kernel;         /* the snapshots' scoring kernel (model/ranker.h) */
    const char *state_path;     /* where the state file goes */
    int checkpoint_interval_s;  /* <= 0: saved at stop only */
    vg_metrics_t *metrics;      /* registry for vaegan_checkpoint_failures_total and
                                   vaegan_train_backlog; NULL = not counted */
    /* Trainer thread, after each round: snap carries one reference that the
     * callee takes over; info describes the round. */
    void (*on_round)(void *ud, vg_snap_t *snap, const vg_train_info_t *info);
    /* Trainer thread: the model serialised for other daemons, len bytes in
     * buf (malloc'ed, cap bytes), which the callee takes over until it
     * gives it back (vg_trainer_blob_done); one of each kind at a time.
     * VG_TRAIN_SNAPSHOT: the weights-only form (model/vaegan.h
     * vg_model_save_weights_mem) after a round, at most every
     * publish_interval_s (on_round follows with info->published);
     * VG_TRAIN_STATE: the full state (vg_model_save_mem) at each
     * checkpoint.  NULL: none. */
    void (*on_blob)(void *ud, int kind, void *buf, size_t cap, size_t len, const vg_train_info_t *info);
    int publish_interval_s;
    int start_held;             /* 1: held from the start (vg_trainer_hold) */
    void *ud;
} vg_trainer_cfg_t;

typedef struct vg_trainer vg_trainer_t;

/* Starts the thread (and registers its metric in cfg->metrics).  `model`
 * (may be NULL: one is created once the first items exist) is a loaded or
 * fresh model whose vocabulary equals the mirror's first items; the trainer takes it over (the struct is copied, the
 * caller's copy must not be used afterwards).  Returns 0 or VG_ENOMEM. */
int vg_trainer_start(vg_trainer_t **out, const vg_trainer_cfg_t *cfg, vg_model_t *model);
/* n new events are in the mirror (any thread; never blocks on training). */
void vg_trainer_events(vg_trainer_t *t, int n);
/* The consumer's total lag in messages, after each reading of it (the
 * loop thread): starts or ends the backlog mode. */
void vg_trainer_lag(vg_trainer_t *t, double lag);
/* Gives on_blob's buffer of that kind back (any thread; it is reused for
 * the next ones, so that no fresh pages are faulted in each time); the
 * next of that kind waits for it.  A callee that outlives the trainer frees
 * it instead. */
void vg_trainer_blob_done(vg_trainer_t *t, int kind, void *buf, size_t cap);
/* Takes over m (a training model whose item i is the mirror's item i: a
 * checkpoint another daemon wrote, reordered; any thread): the trainer
 * continues from it if it is ahead of its own model (a higher step), else
 * closes it; either is logged.  Swapped between rounds. */
void vg_trainer_adopt(vg_trainer_t *t, vg_model_t *m);
/* hold 1: no rounds and no periodic saves from now on (a follower serving
 * another daemon's model: the current round ends after its step); 0:
 * training resumes.  Any thread. */
void vg_trainer_hold(vg_trainer_t *t, int hold);
/* Stops after the current step, joins, saves the state (when there is a
 * model), frees.  Returns 0 or the save's error with err filled. */
int vg_trainer_stop(vg_trainer_t *t, char *err, size_t errlen);

#endif
