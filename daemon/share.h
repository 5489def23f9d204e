/*
 * share.h — several vaegand sharing one model (kafka.control_topic; README
 * "Running several vaegand"): which instance trains, and the model it
 * hands the others through Redis.
 *
 * The leader (daemon/leader.h: the holder of partition 0 of the control
 * topic in group <group>.leader, with a fencing epoch from Redis) trains;
 * its trainer hands vg_share_blob the weights-only form of the model
 * (model/vaegan.h) after a round, at most every train.publish_interval_s,
 * and the full state at each checkpoint; the loop thread publishes them as
 * blobs "snapshot" and "checkpoint" (cache/shared.h: chunks behind a
 * manifest that refuses an older epoch), version = the model's step.  A
 * refused epoch makes it step down.
 *
 * A new leader first reads the "checkpoint" blob: loaded and put in the
 * mirror's order off the loop thread, it goes with on_lead to the trainer,
 * which continues from it if it is ahead of its own model (so the step,
 * alpha and Adam's moments go on across leader changes); without one (or
 * when it cannot be read) on_lead comes with NULL and the trainer goes on
 * from its own.
 *
 * Every other instance is a follower: its trainer is held (on_lead 0), and
 * every POLL_MS it asks Redis for a newer version of the blob; a new one is
 * loaded off the loop thread, its items are adopted into the mirror and its
 * rows put in the mirror's order (daemon/rank.h vg_snap_map/_mapped), and
 * the snapshot goes to on_snapshot, which swaps the scorer to it.  The
 * leader's items are thus this instance's too; items only this instance
 * saw meanwhile are ranked by popularity until the leader has them.
 *
 * Invariants: at most one publication of each blob, and one read (fetch
 * and load) at a time; a publication runs only with the epoch it was
 * started under (a step down meanwhile lets the manifest refuse it); the
 * trainer's buffers are always given back through give_back, also when
 * publishing is skipped or fails; on_lead(1) comes once per election,
 * after the checkpoint was read.
 * Everything runs on the loop thread except vg_share_blob.
 */
#ifndef VG_DAEMON_SHARE_H
#define VG_DAEMON_SHARE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache/store.h"
#include "daemon/hist.h"
#include "daemon/metrics.h"
#include "daemon/rank.h"
#include "daemon/trainer.h"

typedef struct vg_share vg_share_t;

typedef struct vg_share_cfg {
    const char *brokers, *group, *control_topic; /* the election's (leader.h) */
    const char *const *options;                  /* librdkafka name/value pairs */
    size_t n_options;
    vg_store_t *store;       /* outlives the share (closed with vg_store_close_cancel) */
    vg_hist_t *hist;         /* the mirror the leader's items are adopted into */
    const vg_model_cfg_t *model; /* the architecture a snapshot must have */
    int max_batch;           /* a resumed model's training batch (model.batch) */
    vg_kernel_t kernel;      /* the snapshots' scoring kernel */
    vg_metrics_t *metrics;
    /* Loop thread: this instance now leads (1: train; resume NULL, or a
     * model to continue from, taken over: trainer.h vg_trainer_adopt) or
     * follows (0: hold). */
    void (*on_lead)(void *ud, int leading, vg_model_t *resume);
    /* Loop thread: a snapshot of the leader's model (one reference, taken
     * over), info: its step, alpha, items and when it was published. */
    void (*on_snapshot)(void *ud, vg_snap_t *snap, const vg_train_info_t *info);
    /* Loop thread: the buffer of vg_share_blob is free again. */
    void (*give_back)(void *ud, int kind, void *buf, size_t cap);
    void *ud;
} vg_share_cfg_t;

/* Joins the election and starts polling (as a follower).  Returns 0, or a
 * VG_E* code with err saying why. */
int vg_share_init(vg_share_t **out, uv_loop_t *loop, const vg_share_cfg_t *cfg, char *err, size_t errlen);
/* The trainer's on_blob (trainer thread; kind VG_TRAIN_*): buf (len bytes
 * of cap) is published if this instance still leads, then given back. */
void vg_share_blob(vg_share_t *s, int kind, void *buf, size_t cap, size_t len, const vg_train_info_t *info);
/* 1 and *epoch (may be NULL) while this instance leads, else 0. */
int vg_share_leading(const vg_share_t *s, uint64_t *epoch);
/* Leaves the election, stops polling and publishing; freed once what is in
 * flight ended (the caller runs the loop, and closes the store with
 * vg_store_close_cancel).  A buffer still held is given back first.  NULL
 * is ok. */
void vg_share_close(vg_share_t *s);

#endif
