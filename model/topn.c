/*
 * topn.c — bounded min-heap selection.  The heap's root is the weakest of the
 * current best n; a new item enters only when it beats the root, so on most
 * items the cost is one comparison.  The final heap is sorted in place
 * (heap-sort of n entries), best first.  For a small n of a long vector,
 * a threshold estimated from a sample first keeps ~2n items in one
 * comparison each, and only those enter the heap; the result is the same
 * (the shortcut is taken only when it is exact: see prefiltered()).
 */
#include "model/topn.h"

#include <math.h>
#include <stdlib.h>

/* a ranks below b: lower score, or equal score and higher index */
static inline int below(vg_real sa, int32_t ia, vg_real sb, int32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void sift_down(vg_real *s, int32_t *ix, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, min = i;
        if (l < n && below(s[l], ix[l], s[min], ix[min]))
            min = l;
        if (r < n && below(s[r], ix[r], s[min], ix[min]))
            min = r;
        if (min == i)
            return;
        vg_real ts = s[i];
        s[i] = s[min];
        s[min] = ts;
        int32_t ti = ix[i];
        ix[i] = ix[min];
        ix[min] = ti;
        i = min;
    }
}

/* The heap selection over ids[0..count) (NULL: every index below count),
 * ascending, skipping exclude[] and NaN; hs holds n scores.  Best first. */
static int heap_select(const vg_real *scores, const int32_t *ids, int count, const int32_t *exclude, int n_ex,
                       int n, int32_t *out_idx, vg_real *hs)
{
    int size = 0, e = 0;
    for (int k = 0; k < count; k++) {
        int i = ids ? ids[k] : k;
        while (e < n_ex && exclude[e] < i)
            e++;
        if (e < n_ex && exclude[e] == i)
            continue;
        vg_real v = scores[i];
        if (isnan(v))
            continue;
        if (size < n) {
            /* sift up */
            int j = size++;
            hs[j] = v;
            out_idx[j] = i;
            while (j > 0) {
                int p = (j - 1) / 2;
                if (!below(hs[j], out_idx[j], hs[p], out_idx[p]))
                    break;
                vg_real ts = hs[j];
                hs[j] = hs[p];
                hs[p] = ts;
                int32_t ti = out_idx[j];
                out_idx[j] = out_idx[p];
                out_idx[p] = ti;
                j = p;
            }
        } else if (below(hs[0], out_idx[0], v, i)) {
            hs[0] = v;
            out_idx[0] = i;
            sift_down(hs, out_idx, size, 0);
        }
    }
    /* heap-sort: repeatedly move the weakest to the end -> best first */
    for (int k = size - 1; k > 0; k--) {
        vg_real ts = hs[0];
        hs[0] = hs[k];
        hs[k] = ts;
        int32_t ti = out_idx[0];
        out_idx[0] = out_idx[k];
        out_idx[k] = ti;
        sift_down(hs, out_idx, k, 0);
    }
    return size;
}

/* The k-th largest (0-based) of v[0..n) (reordered), by quickselect. */
static vg_real kth_largest(vg_real *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        vg_real pivot = v[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i <= j) {
                vg_real t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

enum { SAMPLE = 512, PREFILTER_MAX_N = 512, PREFILTER_KEEP = 8, BLOCK = 16 };

/* Keeps the items (not excluded, not NaN) at or above a threshold estimated
 * from a sample, in ascending order: about 2n of them, at least n, at most
 * PREFILTER_KEEP·n.  With at least n kept, every item of the top n is kept
 * (the n-th best is at or above the threshold).  Returns how many, or -1 when
 * the shortcut does not apply (too few sampled values, fewer than n or more
 * than PREFILTER_KEEP·n kept): the caller then scans everything. */
static int prefilter(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *keep)
{
    if (n > PREFILTER_MAX_N || N < 16 * (n + n_ex) || N < 4 * SAMPLE)
        return -1;
    vg_real sample[SAMPLE];
    int ns = 0, stride = N / SAMPLE;
    for (int k = 0; k < SAMPLE; k++) {
        vg_real v = scores[(size_t)k * stride];
        if (!isnan(v))
            sample[ns++] = v;
    }
    int want = (int)((double)ns * 2.0 * (n + n_ex) / N) + 4; /* about 2n items above it */
    if (ns < SAMPLE / 2 || want >= ns)
        return -1;
    vg_real thr = kth_largest(sample, ns, want);
    int nk = 0, cap = PREFILTER_KEEP * n, e = 0;
    for (int i0 = 0; i0 < N; i0 += BLOCK) {
        int end = i0 + BLOCK < N ? i0 + BLOCK : N, any = 0;
        if (end - i0 == BLOCK) /* one vector compare for most blocks (NaN fails too) */
            for (int k = 0; k < BLOCK; k++)
                any |= scores[i0 + k] >= thr;
        else
            any = 1;
        for (int i = i0; any && i < end; i++) {
            if (!(scores[i] >= thr))
                continue;
            while (e < n_ex && exclude[e] < i)
                e++;
            if (e < n_ex && exclude[e] == i)
                continue;
            if (nk == cap)
                return -1;
            keep[nk++] = i;
        }
    }
    return nk >= n ? nk : -1;
}

int vg_topn(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *out_idx,
            vg_real *out_score)
{
    if (n <= 0)
        return 0;
    vg_real local[PREFILTER_MAX_N];
    vg_real *hs = out_score ? out_score : (n <= PREFILTER_MAX_N ? local : NULL);
    if (!hs) { /* no score buffer given for a large n: use the caller's index buffer only */
        hs = malloc((size_t)n * sizeof *hs);
        if (!hs)
            return 0;
    }
    int32_t keep[PREFILTER_KEEP * PREFILTER_MAX_N];
    int nk = prefilter(scores, N, exclude, n_ex, n, keep);
    int got = nk >= 0 ? heap_select(scores, keep, nk, NULL, 0, n, out_idx, hs)
                      : heap_select(scores, NULL, N, exclude, n_ex, n, out_idx, hs);
    if (hs != out_score && hs != local)
        free(hs);
    return got;
}

static int cmp_idx(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int vg_topn_set(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *out_idx)
{
    if (n <= 0)
        return 0;
    int32_t keep[PREFILTER_KEEP * PREFILTER_MAX_N];
    int nk = prefilter(scores, N, exclude, n_ex, n, keep);
    if (nk < 0) { /* the full selection, then in index order */
        int got = vg_topn(scores, N, exclude, n_ex, n, out_idx, NULL);
        qsort(out_idx, (size_t)got, sizeof *out_idx, cmp_idx);
        return got;
    }
    vg_real v[PREFILTER_KEEP * PREFILTER_MAX_N];
    for (int k = 0; k < nk; k++)
        v[k] = scores[keep[k]];
    vg_real t = kth_largest(v, nk, n - 1); /* the n-th best kept score */
    int above = 0;
    for (int k = 0; k < nk; k++)
        above += scores[keep[k]] > t;
    int got = 0, ties = n - above; /* items scoring t: the lower indices win */
    for (int k = 0; k < nk; k++) {
        vg_real s = scores[keep[k]];
        if (s > t || (s == t && ties-- > 0))
            out_idx[got++] = keep[k];
    }
    return got;
}
