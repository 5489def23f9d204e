/*
 * checkpoint.h — the daemon's model state file (state.dir/model.ckpt) and
 * the alignment of the model's item rows with the history mirror.
 *
 * Invariant: the model's item i is the mirror's item i.  The mirror hands out
 * item indices in order of first sight; loading a state file enters its
 * vocabulary into the mirror first (so its items keep their indices), and
 * the model grows by appending rows for the mirror's newer items.  Before a
 * save, the model's vocabulary is completed from the mirror's ids, so the
 * file names every row it holds.
 *
 * The file format itself (header, CRC, atomic rename) is model/state.c's.
 * These functions take a model and the mirror, never a trainer: the trainer
 * thread and replay both use them.
 */
#ifndef VG_DAEMON_CHECKPOINT_H
#define VG_DAEMON_CHECKPOINT_H

#include <stddef.h>

#include "daemon/hist.h"
#include "model/vaegan.h"

#define VG_STATE_FILE "model.ckpt" /* inside state.dir */

/* Takes the lock of dir (an fcntl write lock on dir/lock, held while *fd
 * stays open), so that two daemons, or --replay beside a running daemon,
 * never write one state directory.  Returns 0, or VG_EAGAIN when another
 * process holds it, or VG_EIO (both logged). */
int vg_ckpt_lock(const char *dir, int *fd);

/* Creates dir (and its parents), removes the temporary files of saves that
 * did not finish (call it holding dir's lock) and writes dir/model.ckpt into
 * path.  When
 * that file exists and reset is 0, loads it into *m (checked against cfg)
 * and enters its vocabulary into the (empty) mirror h.  Every outcome is
 * logged.  Returns 1 when a model was loaded (the caller owns *m), 0 when
 * there is none (or reset asked to ignore it), or a negative VG_E* code when
 * the daemon must refuse to start (unusable directory, corrupt or foreign
 * file). */
int vg_ckpt_load(vg_model_t *m, vg_hist_t *h, const char *dir, int reset, const vg_model_cfg_t *cfg, int batch,
                 char *path, size_t pathlen);

/* Copies into m->vocab the mirror's ids of the items m has rows for and
 * does not name yet (a model adopted from another daemon names none), so
 * that whatever is saved of m names every row.  Takes the mirror's read
 * lock.  Returns 0 or VG_ENOMEM. */
int vg_ckpt_name_rows(vg_model_t *m, vg_hist_t *h);

/* Saves m's state to path (atomically), first naming its rows
 * (vg_ckpt_name_rows).  Takes the
 * mirror's read lock.  Returns 0 or a VG_E* code with err filled. */
int vg_ckpt_save(vg_model_t *m, vg_hist_t *h, const char *path, char *err, size_t errlen);

/* Grows m to the mirror's catalogue: rows first (all or nothing), then the
 * vocabulary.  On VG_ENOMEM m still saves and loads as before (its
 * vocabulary may have taken some of the new ids, never more than its rows).
 * Takes the mirror's read lock.  Returns 0 or VG_ENOMEM. */
int vg_ckpt_grow(vg_model_t *m, vg_hist_t *h);

#endif
