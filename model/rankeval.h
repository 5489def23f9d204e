/*
 * rankeval.h — ranking evaluation: top-N ranking metrics with binary
 * relevance, as shared/reference/metrics.py computes them, accumulated over
 * users (vaegan-eval's figures; docs/model.md, "Metrics").  Not the daemon's
 * Prometheus registry, which is daemon/metrics.h (vg_metrics_*).
 *
 * For one user, `top` is the ranked list of recommended item indices (best
 * first) from which the caller has already removed the user's training (and,
 * in the weak protocol, validation) items; `test` is the user's held-out
 * items, sorted ascending without duplicates.  At each cutoff N, with
 * hits = |top[0..N-1] ∩ test|:
 *
 *   recall[N]       = hits / min(N, |test|)      (R@N, Mult-VAE's recall)
 *   recall_plain[N] = hits / |test|              (RC@N, CFGAN's recall)
 *   ndcg[N]         = DCG / IDCG, DCG = sum over hit ranks r (1-based) of
 *                     1 / log2(r + 1), IDCG = the same over min(N, |test|)
 *                     ranks                      (G@N)
 *   mrr[N]          = 1 / rank of the first hit within N, 0 if none  (M@N)
 *
 * Users with no test items are skipped (not counted).  A `top` shorter than
 * N counts its missing ranks as misses.
 *
 * Usage:
 *
 *     static const int cuts[] = {5, 20};
 *     vg_rankeval_t m;
 *     vg_rankeval_init(&m, cuts, 2);
 *     for each user: vg_rankeval_add_user(&m, top, n_top, test, n_test);
 *     vg_rankeval_finish(&m);    // sums -> means over m.users
 *     printf("R@20 %.4f\n", m.recall[vg_rankeval_find(&m, 20)]);
 *
 * The struct is plain data owned by the caller (no heap); per-thread
 * accumulators can be combined with vg_rankeval_merge() before finishing.
 */
#ifndef VG_RANKEVAL_H
#define VG_RANKEVAL_H

#include <stdint.h>

#define VG_RANKEVAL_MAX_CUTOFFS 8

typedef struct vg_rankeval {
    int n_cut;
    int cut[VG_RANKEVAL_MAX_CUTOFFS]; /* the cutoffs, in the order given */
    /* per cutoff: sums over users until finish, then means */
    double recall[VG_RANKEVAL_MAX_CUTOFFS];
    double recall_plain[VG_RANKEVAL_MAX_CUTOFFS];
    double ndcg[VG_RANKEVAL_MAX_CUTOFFS];
    double mrr[VG_RANKEVAL_MAX_CUTOFFS];
    long users;   /* users with >= 1 test item added so far */
    int finished; /* set by vg_rankeval_finish */
} vg_rankeval_t;

/* Zeroes m and records the cutoffs.  Returns 0, or VG_EINVAL when n is not
 * in 1..VG_RANKEVAL_MAX_CUTOFFS or a cutoff is < 1. */
int vg_rankeval_init(vg_rankeval_t *m, const int *cutoffs, int n);

/* Adds one user (skipped when n_test == 0).  `top` (n_top >= 0 entries) and
 * `test` (sorted ascending, distinct) stay the caller's.  Must not be called
 * after vg_rankeval_finish (asserted), nor with an unsorted test list
 * (asserted). */
void vg_rankeval_add_user(vg_rankeval_t *m, const int32_t *top, int n_top, const int32_t *test, int n_test);

/* dst += src (same cutoffs, neither finished: asserted). */
void vg_rankeval_merge(vg_rankeval_t *dst, const vg_rankeval_t *src);

/* Turns the sums into means over m->users (all 0 when no user was added).
 * Idempotent. */
void vg_rankeval_finish(vg_rankeval_t *m);

/* Slot of cutoff N in the arrays, or -1 if N is not one of the cutoffs. */
int vg_rankeval_find(const vg_rankeval_t *m, int cutoff);

#endif
