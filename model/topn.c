/*
 * topn.c — bounded min-heap selection.  The heap's root is the weakest of the
 * current best n; a new item enters only when it beats the root, so on most
 * items the cost is one comparison.  The final heap is sorted in place
 * (heap-sort of n entries), best first.
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

int vg_topn(const vg_real *scores, int N, const int32_t *exclude, int n_ex, int n, int32_t *out_idx,
            vg_real *out_score)
{
    if (n <= 0)
        return 0;
    vg_real local[256];
    vg_real *hs = out_score ? out_score : (n <= 256 ? local : NULL);
    if (!hs) { /* no score buffer given for a large n: use the caller's index buffer only */
        hs = malloc((size_t)n * sizeof *hs);
        if (!hs)
            return 0;
    }
    int size = 0, e = 0;
    for (int i = 0; i < N; i++) {
        while (e < n_ex && exclude[e] < i)
            e++;
        if (e < n_ex && exclude[e] == i)
            continue;
        vg_real v = scores[i];
        if (isnan(v))
            continue;
        if (size < n) {
            /* sift up */
            int k = size++;
            hs[k] = v;
            out_idx[k] = i;
            while (k > 0) {
                int p = (k - 1) / 2;
                if (!below(hs[k], out_idx[k], hs[p], out_idx[p]))
                    break;
                vg_real ts = hs[k];
                hs[k] = hs[p];
                hs[p] = ts;
                int32_t ti = out_idx[k];
                out_idx[k] = out_idx[p];
                out_idx[p] = ti;
                k = p;
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
    if (hs != out_score && hs != local)
        free(hs);
    return size;
}
