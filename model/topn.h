/*
 * topn.h — the top-N items of a score vector by partial selection (a
 * bounded min-heap: O(N log n), never a full sort of the N items), skipping
 * the items the user already has.
 */
#ifndef VG_TOPN_H
#define VG_TOPN_H

#include <stdint.h>

#include "model/common.h"

/* Writes the indices (and, when out_score is not NULL, the scores) of the
 * n highest of scores[0..N-1] into out_idx, best first; ties go to the lower
 * index.  exclude[0..n_ex-1] (sorted ascending; may be NULL when n_ex = 0)
 * are skipped.  NaN scores are skipped.  Returns how many were written:
 * min(n, N - excluded - NaN). */
int vg_topn(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *out_idx,
            vg_real *out_score);

/* The same n items as vg_topn() selects, in ascending index order (not by
 * score), without sorting them: for a candidate set.  Returns how many. */
int vg_topn_set(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *out_idx);

#endif
