/*
 * forget.h — erasure of users (events of type "forget"): the marks that keep
 * a forgotten user's older events from bringing the user back.
 *
 * A forget deletes everything the daemon keeps about the user (Redis keys,
 * the mirror's row, queued scoring work; pipeline.c does that).  What stays
 * is one *mark*: a keyed hash of the user id — BLAKE2b-128 (libsodium's
 * crypto_generichash) under a 32-byte secret key kept in state.dir/forget.key
 * (created at the first start, mode 0600) — with the forget's ts, in
 * <p>vaegan:forgotten and in memory here.  An event of a marked user whose
 * ts is not newer than the mark is refused; a newer one starts a fresh
 * history.  Without the key a mark cannot be tied to an id (no dictionary
 * test).  Retention is counted in the events' own time: a forget at ts drops
 * the marks older than ts - events.forget_retention_s from Redis.
 *
 * Loop thread only.
 */
#ifndef VG_DAEMON_FORGET_H
#define VG_DAEMON_FORGET_H

#include <stddef.h>

#include "model/vocab.h"

#define VG_FORGET_MARK_LEN 32 /* hex digits of a mark */

typedef struct vg_forget {
    unsigned char key[32];
    vg_vocab_t marks; /* mark text -> index */
    double *ts;       /* ts[index]: the newest forget of that mark */
    size_t ts_cap;
} vg_forget_t;

/* Reads dir/forget.key, creating it (random, 0600) when missing.  Returns 0
 * or VG_EIO / VG_ENOMEM (logged). */
int vg_forget_open(vg_forget_t *f, const char *dir);
void vg_forget_close(vg_forget_t *f);

/* The mark of a user id: VG_FORGET_MARK_LEN hex digits and a NUL. */
void vg_forget_mark(const vg_forget_t *f, const char *user, size_t user_len, char out[VG_FORGET_MARK_LEN + 1]);

/* Remembers a mark (from a forget, or read back at start); the newer ts
 * wins.  Returns 0 or VG_ENOMEM. */
int vg_forget_add(vg_forget_t *f, const char *mark, size_t len, double ts);

/* 1 when an event (user, ts) must be refused: the user was forgotten at a
 * ts >= ts.  Costs one keyed hash per call once any mark exists. */
int vg_forget_refuses(const vg_forget_t *f, const char *user, size_t user_len, double ts);

#endif
