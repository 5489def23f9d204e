/*
 * replay.h — `vaegand --replay FILE`: offline backfill through the same
 * write path as streaming (pipeline.h).
 *
 * 1. Read the file (stream/reader.h; lenient: bad lines are counted and
 *    logged, rate-limited).
 * 2. Write the histories to Redis; every acknowledged batch enters the
 *    mirror, exactly as in streaming mode.
 * 3. Train `epochs` passes over all users (shuffled mini-batches of
 *    model.batch) on this thread, continuing the saved state if there is one.
 * 4. Save the state, write rec:<user> for every known user and vaegan:model,
 *    print a one-line JSON summary on stdout.
 */
#ifndef VG_DAEMON_REPLAY_H
#define VG_DAEMON_REPLAY_H

#include "daemon/config.h"

typedef struct vg_replay_opts {
    const char *file;         /* --replay FILE ("-" = stdin) */
    const char *format;       /* --format, default json */
    double min_rating;        /* --min-rating, NAN = none */
    int epochs;               /* --epochs */
    int reset_model;          /* --reset-model: ignore an existing state file */
} vg_replay_opts_t;

/* Returns the process exit code: 0 when everything was written, 1 after an
 * error (logged). */
int vg_replay_run(const vg_config_t *cfg, const vg_replay_opts_t *o);

#endif
