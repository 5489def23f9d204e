/*
 * rank.c — model snapshots and the ranking of users into lists (rank.h).
 *
 * vg_rank_users() copies what it needs from the mirror under its read lock
 * (the users' rows and the popularity of items the model has no row for),
 * then ranks without any lock: one vg_ranker_topn() for the batch (on the
 * snapshot's fast kernel when it has one), the user's history excluded.
 */
#include "daemon/rank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "model/topn.h"

vg_snap_t *vg_snap_new(const vg_model_t *src, vg_kernel_t kernel) { return vg_snap_remake(NULL, src, kernel); }

/* s->m made from src: the fast kernel's weights, alpha, one reference (or
 * s freed and NULL). */
static vg_snap_t *snap_finish(vg_snap_t *s, const vg_model_t *src, vg_kernel_t kernel)
{
    if (vg_fastw_rebuild(&s->fast, &s->m, kernel, s->why, sizeof s->why)) {
        vg_model_close(&s->m); /* s->fast is NULL then */
        free(s);
        return NULL;
    }
    s->alpha = vg_model_alpha(src);
    atomic_init(&s->refs, 1);
    return s;
}

vg_snap_t *vg_snap_remake(vg_snap_t *spare, const vg_model_t *src, vg_kernel_t kernel)
{
    vg_snap_t *s = spare ? spare : calloc(1, sizeof *s);
    if (!s)
        return NULL;
    vg_assert(!spare || vg_snap_alone(spare));
    if (vg_model_resnapshot(&s->m, src)) { /* s->m closed */
        vg_fastw_free(s->fast);
        free(s);
        return NULL;
    }
    return snap_finish(s, src, kernel);
}

int vg_snap_map(vg_hist_t *h, const vg_model_t *leader, int32_t **from, int *n)
{
    int32_t *own = malloc(((size_t)leader->vocab.n + 1) * sizeof *own); /* leader row -> mirror index */
    if (!own)
        return VG_ENOMEM;
    int rc = 0, missing = 0;
    for (int j = 0; j < leader->vocab.n; j++) { /* the writer reads without the lock */
        const char *id = vg_vocab_id(&leader->vocab, j);
        missing += (own[j] = vg_vocab_find(&h->items, id, strlen(id))) < 0;
    }
    if (missing) { /* the write lock only while items enter */
        vg_hist_wrlock(h);
        for (int j = 0; j < leader->vocab.n && rc == 0; j++) {
            const char *id = vg_vocab_id(&leader->vocab, j);
            if (own[j] < 0)
                own[j] = vg_hist_adopt_item(h, id, strlen(id));
            rc = own[j] < -1 ? own[j] : 0;
        }
        vg_hist_unlock(h);
    }
    int N = h->items.n;
    int32_t *f = rc ? NULL : malloc(((size_t)N + 1) * sizeof *f);
    if (!rc && !f)
        rc = VG_ENOMEM;
    for (int i = 0; !rc && i < N; i++)
        f[i] = -1;
    for (int j = 0; !rc && j < leader->vocab.n && j < leader->n_items; j++)
        if (own[j] >= 0)
            f[own[j]] = j;
    free(own);
    *from = f;
    *n = N;
    return rc;
}

vg_snap_t *vg_snap_mapped(const vg_model_t *leader, const int32_t *from, int n, vg_kernel_t kernel)
{
    vg_snap_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (vg_model_snapshot_items(&s->m, leader, from, n)) {
        free(s);
        return NULL;
    }
    return snap_finish(s, leader, kernel);
}

int vg_snap_alone(vg_snap_t *s) { return atomic_load(&s->refs) == 1; }

const char *vg_snap_kernel(const vg_snap_t *s, char *buf, size_t n)
{
    snprintf(buf, n, "kernel %s%s", s->fast ? "" : "fp32 openblas: ", s->why);
    return buf;
}

vg_snap_t *vg_snap_ref(vg_snap_t *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void vg_snap_unref(vg_snap_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        vg_fastw_free(s->fast);
        vg_model_close(&s->m);
        free(s);
    }
}

void vg_list_free(vg_list_t *l)
{
    free(l->items);
    free(l->scores);
    l->items = NULL;
    l->scores = NULL;
}

/* How many of the sorted row[0..n) are below lim. */
static int count_below(const int32_t *row, int n, int32_t lim)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (row[mid] < lim)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vg_rank_users(vg_hist_t *h, const vg_snap_t *snap, vg_ranker_t *r, const int32_t *sel, int n, int top_n,
                  vg_list_t *out)
{
    vg_csr_t X = {0}, A = {0};
    int rc = VG_ENOMEM;
    vg_real *pop = NULL, *msc = NULL, *sc = NULL;
    int32_t *idx = NULL, *midx = NULL;
    const int32_t **ex = NULL;
    int *n_ex = NULL, *cnt = NULL;
    memset(out, 0, (size_t)n * sizeof *out);

    vg_hist_rdlock(h);
    const int N = h->items.n, Nm = snap ? snap->m.n_items : 0;
    vg_assert(Nm <= N);
    pop = malloc(((size_t)N + 1) * sizeof *pop);
    if (pop) {
        const vg_real *bias = Nm ? snap->m.p[VG_P_B4].w : NULL;
        for (int i = 0; i < N; i++) /* the model ranks the items it has (NaN = skipped by vg_topn), */
            pop[i] = i < Nm && !isnan(bias[i]) ? (vg_real)NAN : (vg_real)vg_hist_pop(h, i); /* popularity the rest */
        rc = vg_hist_rows(h, sel, n, Nm, &X, &A);
    }
    for (int k = 0; k < n; k++) { /* what the list belongs to (rank.h) */
        const vg_hist_user_t *u = &h->u[sel[k]];
        out[k].gen = u->gen;
        out[k].stale = u->loading || !u->live;
        double t = 0;
        for (int j = 0; j < u->n; j++)
            t = u->e[j].ts > t ? u->e[j].ts : t;
        for (int j = 0; j < u->rm_n; j++)
            t = u->rm[j].ts > t ? u->rm[j].ts : t;
        out[k].hts = t;
    }
    vg_hist_unlock(h);
    if (rc)
        goto out;

    rc = VG_ENOMEM;
    idx = malloc(((size_t)top_n + 1) * sizeof *idx);
    sc = malloc(((size_t)top_n + 1) * sizeof *sc);
    if (!idx || !sc)
        goto out;
    if (Nm > 0) {
        midx = malloc((size_t)n * top_n * sizeof *midx);
        msc = malloc((size_t)n * top_n * sizeof *msc);
        ex = malloc((size_t)n * sizeof *ex);
        n_ex = malloc((size_t)n * sizeof *n_ex);
        cnt = malloc((size_t)n * sizeof *cnt);
        if (!midx || !msc || !ex || !n_ex || !cnt)
            goto out;
        for (int k = 0; k < n; k++) { /* the model ranks its own items: exclude the history below Nm */
            ex[k] = A.indices + A.indptr[k];
            n_ex[k] = count_below(ex[k], vg_csr_row_len(&A, k), Nm);
        }
        if ((rc = vg_ranker_topn(r, &snap->m, snap->fast, &X, ex, n_ex, top_n, midx, msc, cnt)))
            goto out;
        rc = VG_ENOMEM;
    }
    for (int k = 0; k < n; k++) {
        const int32_t *row = A.indices + A.indptr[k];
        int len = vg_csr_row_len(&A, k);
        vg_list_t *l = &out[k];
        l->user = sel[k];
        l->items = malloc(((size_t)top_n + 1) * sizeof *l->items);
        l->scores = malloc(((size_t)top_n + 1) * sizeof *l->scores);
        if (!l->items || !l->scores)
            goto out;
        double floor = 0;
        if (Nm > 0) {
            l->n = cnt[k];
            for (int j = 0; j < l->n; j++) {
                l->items[j] = midx[(size_t)k * top_n + j];
                l->scores[j] = msc[(size_t)k * top_n + j];
            }
            floor = l->n ? l->scores[l->n - 1] - 1 : 0;
        }
        if (l->n < top_n) { /* items the model has not seen: by popularity */
            int got = vg_topn(pop, N, row, len, top_n - l->n, idx, sc);
            for (int j = 0; j < got; j++) {
                l->items[l->n] = idx[j];
                l->scores[l->n] = Nm > 0 ? floor - j * 1e-3 : sc[j];
                l->n++;
            }
        }
    }
    rc = 0;
out:
    if (rc)
        for (int k = 0; k < n; k++)
            vg_list_free(&out[k]);
    vg_csr_free(&X);
    vg_csr_free(&A);
    free(pop);
    free(midx);
    free(msc);
    free(ex);
    free(n_ex);
    free(cnt);
    free(idx);
    free(sc);
    return rc;
}
