/*
 * split.h — the evaluation splits (weak and strong generalization), bit-exact
 * with the reference implementation (shared/reference/data.py) for the same
 * integer seed.
 *
 * Usage:
 *
 *     vg_weak_split_t s;
 *     int rc = vg_split_weak(ratings, n, seed, 0.2, 0.1, &s);
 *     if (rc) { fprintf(stderr, "%s\n", vg_strerror(rc)); ... }
 *     ... s.train_fit, s.val, s.train_full, s.test ...
 *     vg_split_weak_free(&s);
 *
 * Input is an array of ratings in file order.  `user` and `item` are ordering
 * keys: the caller maps its ids to integers whose numeric order is the order
 * np.unique would give the raw ids (for MovieLens, the numeric ids
 * themselves).  Dense indices are then assigned in key order, exactly as
 * np.unique(..., return_inverse=True) does, so row r / column c of every
 * matrix here is row r / column c of the reference's scipy matrices.
 *
 * Randomness is numpy's legacy RandomState(seed) (MT19937 seeded with
 * init_genrand, permutation = Fisher-Yates from the end with masked rejection
 * sampling), reproduced below as vg_nprng_*: the same sequence of
 * rng.permutation(n) calls yields the same permutations.
 *
 * Ownership: on success the split owns every matrix and key array it
 * contains; release them with the matching *_free() (which also accepts a
 * zeroed struct, and a struct left by a failed call).  On failure the output
 * is zeroed and nothing needs freeing.
 */
#ifndef VG_SPLIT_H
#define VG_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "model/csr.h"

/* ---- numpy legacy RandomState (integer seed) ----------------------------- */

typedef struct vg_nprng {
    uint32_t key[624];
    int pos;
} vg_nprng_t;

/* np.random.RandomState(seed): MT19937 init_genrand(seed). */
void vg_nprng_seed(vg_nprng_t *g, uint32_t seed);

/* The next raw 32-bit MT19937 output (RandomState.randint(2**32) order). */
uint32_t vg_nprng_u32(vg_nprng_t *g);

/* numpy's random_interval(max): uniform in [0, max] by masked rejection. */
uint64_t vg_nprng_interval(vg_nprng_t *g, uint64_t max);

/* out[0..n-1] = rng.permutation(n) (n >= 0; out caller-owned, n entries). */
void vg_nprng_permutation(vg_nprng_t *g, int32_t *out, int n);

/* ---- splits --------------------------------------------------------------- */

typedef struct vg_rating {
    int64_t user, item; /* ordering keys (see above) */
    float rating;
} vg_rating_t;

/* Weak generalization (data.py weak_split): every rating is an interaction,
 * duplicates (user, item) collapse, users with >= 5 items are kept; per user
 * (with >= 5 items) a random int(test_frac * n) (at least 1) of the items is
 * `test`, the rest `train_full`; then the same is done to train_full with
 * val_frac, giving `val` and `train_fit`.  Users with < 5 items in the matrix
 * being split keep them all on the first side.  All four matrices are
 * n_users x n_items; user_key[r] / item_key[c] are the keys of row r /
 * column c (ascending). */
typedef struct vg_weak_split {
    int n_users, n_items;
    vg_csr_t train_fit, val, train_full, test;
    int64_t *user_key; /* n_users entries */
    int64_t *item_key; /* n_items entries */
} vg_weak_split_t;

/* Returns 0, VG_EINVAL (r NULL with n > 0, a fraction outside [0, 1]),
 * VG_EEMPTY (no user with >= 5 items), VG_ERANGE (more than INT_MAX users
 * or items) or VG_ENOMEM.  data.py's defaults: test_frac .2, val_frac .1. */
int vg_split_weak(const vg_rating_t *r, size_t n, uint32_t seed, double test_frac, double val_frac,
                  vg_weak_split_t *out);
void vg_split_weak_free(vg_weak_split_t *s);

/* Strong generalization (data.py strong_split, Mult-VAE's protocol): ratings
 * >= threshold are interactions, duplicates collapse, users with >= 5 kept;
 * the users (ascending keys) are permuted with rng.permutation; the last
 * 2 * n_heldout of the permuted order are held out: validation =
 * positions [n - 2h, n - h), test = [n - h, n).  The item vocabulary is the
 * items seen among training users; held-out users keep only vocabulary
 * items.  Then the validation block and the test block (in that order, the
 * same rng) are split per user into fold-in (`*_in`) and scored (`*_out`,
 * int(test_frac * n), at least 1, for users with >= 5 items; users with fewer
 * keep everything as fold-in).
 *
 * Rows are in the permuted user order: row r of `train` is user
 * train_user_key[r], row r of val_in/val_out is val_user_key[r], of
 * test_in/test_out test_user_key[r].  Columns are vocabulary items,
 * item_key[c] ascending. */
typedef struct vg_strong_split {
    int n_items, n_train_users, n_heldout;
    vg_csr_t train;            /* n_train_users x n_items */
    vg_csr_t val_in, val_out;  /* n_heldout x n_items */
    vg_csr_t test_in, test_out;
    int64_t *item_key;       /* n_items entries */
    int64_t *train_user_key; /* n_train_users entries */
    int64_t *val_user_key;   /* n_heldout entries */
    int64_t *test_user_key;  /* n_heldout entries */
} vg_strong_split_t;

/* Returns 0, VG_EINVAL (r NULL with n > 0, n_heldout < 0, test_frac outside
 * [0, 1]), VG_EEMPTY (no more than 2 * n_heldout users with >= 5 positive
 * items, so no training user would remain), VG_ERANGE or VG_ENOMEM.
 * data.py's defaults: threshold 4 (3.5 on half-star data), n_heldout 100 on
 * ML-100K, test_frac .2. */
int vg_split_strong(const vg_rating_t *r, size_t n, uint32_t seed, float threshold, int n_heldout,
                    double test_frac, vg_strong_split_t *out);
void vg_split_strong_free(vg_strong_split_t *s);

#endif
