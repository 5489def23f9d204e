/*
 * daemon.h — vaegand's streaming mode: one libuv loop thread that owns the
 * Kafka consumer (stream/kafka.h) and the Redis store (cache/store.h), plus
 * the scorer and trainer threads (daemon/scorer.h, daemon/trainer.h) that
 * meet the loop through the history mirror (daemon/hist.h) and uv_async
 * wake-ups.  The write path an event takes is pipeline.h's.
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

/* Runs the daemon until it stops; reset_model = --reset-model (ignore an
 * existing state file).  Returns the process exit code: 0 after a clean
 * stop, 1 after a fatal error (logged). */
int vg_daemon_run(const vg_config_t *cfg, int reset_model);

#endif
