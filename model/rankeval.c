/*
 * rankeval.c — R@N, RC@N, NDCG@N and MRR@N per user, summed, then averaged
 * (shared/reference/metrics.py).  Membership of a ranked item in the test set
 * is a binary search in the sorted test list, so a user costs
 * O(n_cut * N * log |test|) with no allocation: it runs inside the scoring
 * loop.
 */
#include "model/rankeval.h"

#include <math.h>
#include <string.h>

#include "model/common.h"

int vg_rankeval_init(vg_rankeval_t *m, const int *cutoffs, int n)
{
    memset(m, 0, sizeof *m);
    if (n < 1 || n > VG_RANKEVAL_MAX_CUTOFFS || !cutoffs)
        return VG_EINVAL;
    for (int c = 0; c < n; c++) {
        if (cutoffs[c] < 1)
            return VG_EINVAL;
        m->cut[c] = cutoffs[c];
    }
    m->n_cut = n;
    return 0;
}

static int in_sorted(const int32_t *a, int n, int32_t x)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == x;
}

void vg_rankeval_add_user(vg_rankeval_t *m, const int32_t *top, int n_top, const int32_t *test, int n_test)
{
    vg_assert(!m->finished && n_top >= 0 && n_test >= 0);
    if (n_test == 0)
        return;
    for (int k = 1; k < n_test; k++)
        vg_assert(test[k - 1] < test[k]);
    for (int c = 0; c < m->n_cut; c++) {
        int N = m->cut[c];
        int L = N < n_top ? N : n_top;
        int hits = 0, first = -1;
        double dcg = 0.0, idcg = 0.0;
        for (int r = 0; r < L; r++) {
            if (in_sorted(test, n_test, top[r])) {
                hits++;
                dcg += 1.0 / log2((double)r + 2.0);
                if (first < 0)
                    first = r;
            }
        }
        int ideal = N < n_test ? N : n_test;
        for (int r = 0; r < ideal; r++)
            idcg += 1.0 / log2((double)r + 2.0);
        m->recall[c] += (double)hits / (double)ideal;
        m->recall_plain[c] += (double)hits / (double)n_test;
        m->ndcg[c] += dcg / idcg;
        m->mrr[c] += first >= 0 ? 1.0 / (double)(first + 1) : 0.0;
    }
    m->users++;
}

void vg_rankeval_merge(vg_rankeval_t *dst, const vg_rankeval_t *src)
{
    vg_assert(!dst->finished && !src->finished && dst->n_cut == src->n_cut);
    for (int c = 0; c < dst->n_cut; c++) {
        vg_assert(dst->cut[c] == src->cut[c]);
        dst->recall[c] += src->recall[c];
        dst->recall_plain[c] += src->recall_plain[c];
        dst->ndcg[c] += src->ndcg[c];
        dst->mrr[c] += src->mrr[c];
    }
    dst->users += src->users;
}

void vg_rankeval_finish(vg_rankeval_t *m)
{
    if (m->finished)
        return;
    m->finished = 1;
    if (m->users == 0)
        return;
    double u = (double)m->users;
    for (int c = 0; c < m->n_cut; c++) {
        m->recall[c] /= u;
        m->recall_plain[c] /= u;
        m->ndcg[c] /= u;
        m->mrr[c] /= u;
    }
}

int vg_rankeval_find(const vg_rankeval_t *m, int cutoff)
{
    for (int c = 0; c < m->n_cut; c++)
        if (m->cut[c] == cutoff)
            return c;
    return -1;
}
