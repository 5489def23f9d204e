/*
 * daemon.h — vaegand's wiring: one libuv loop thread that owns the Kafka
 * consumer (stream/kafka.h) and the Redis store (cache/store.h), plus the
 * scorer and trainer threads (daemon/scorer.h, daemon/trainer.h) that meet
 * the loop through the history mirror (daemon/hist.h) and uv_async wake-ups.
 *
 * Life of an event (the delivery guarantee of DESIGN.md):
 *   Kafka message -> parsed (invalid: counted, logged, DLQ, marked done)
 *   -> appended to the current batch -> vg_store_add_events (hist:<user>,
 *   vaegan:users) -> Redis acknowledged the batch -> applied to the mirror,
 *   the user marked for scoring, the trainer told, the offsets marked done
 *   (vg_kafka_done stores them up to the contiguous low-water mark).
 * Events read and not yet acknowledged are bounded by kafka.max_pending:
 * above it, and whenever Redis is away, the partitions are paused.
 *
 * Start: load (or refuse) the state file, connect to Redis, load every
 * history into the mirror, start the scorer (every user's list is rebuilt in
 * the background) and the trainer, then join the consumer group.
 * READY=1 goes to systemd once the group is joined.
 * SIGTERM/SIGINT: stop consuming, wait for the in-flight writes, commit,
 * stop the trainer (it saves the state), write the pending lists, exit 0.
 * SIGHUP: reopen the log file.
 */
#ifndef VG_DAEMON_H
#define VG_DAEMON_H

#include "daemon/config.h"

typedef struct vg_run_opts {
    int reset_model;          /* --reset-model: ignore an existing state file */
    const char *replay;       /* --replay FILE (NULL = run the daemon) */
    const char *format;       /* --format (replay), default json */
    double min_rating;        /* --min-rating (replay), NAN = none */
    int epochs;               /* --epochs (replay) */
} vg_run_opts_t;

/* Runs the daemon (or the replay) until it stops.  Returns the process exit
 * code: 0 after a clean stop, 1 after a fatal error (logged). */
int vg_daemon_run(const vg_config_t *cfg, const vg_run_opts_t *opts);

#endif
