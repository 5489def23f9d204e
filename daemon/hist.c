/*
 * hist.c — the in-memory mirror of hist:<user> (see hist.h for why it stays
 * equal to Redis).  Per-user entries are kept unordered: lookups are linear
 * in the history length (capped by history.max_items), eviction searches the
 * minimum only when the cap is exceeded.
 */
#include "daemon/hist.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"

int vg_hist_init(vg_hist_t *h, int max_items)
{
    memset(h, 0, sizeof *h);
    h->max_items = max_items > 0 ? max_items : 1;
    vg_vocab_init(&h->users);
    vg_vocab_init(&h->items);
    if (pthread_rwlock_init(&h->lock, NULL))
        return VG_ENOMEM;
    return 0;
}

void vg_hist_free(vg_hist_t *h)
{
    for (int i = 0; i < h->users.n; i++)
        free(h->u[i].e);
    free(h->u);
    free(h->pop);
    vg_vocab_free(&h->users);
    vg_vocab_free(&h->items);
    pthread_rwlock_destroy(&h->lock);
}

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return VG_ENOMEM;
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(c - *cap) * elem);
    *p = q;
    *cap = c;
    return 0;
}

int32_t vg_hist_item(vg_hist_t *h, const char *item, size_t item_len)
{
    int32_t i = vg_vocab_add(&h->items, item, item_len, NULL);
    if (i < 0)
        return i;
    if (grow((void **)&h->pop, &h->pop_cap, h->items.n, sizeof *h->pop))
        return VG_ENOMEM;
    return i;
}

/* Redis' member order for equal scores: binary comparison, shorter first. */
static int member_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

int vg_hist_add(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                double ts, int32_t *user_idx)
{
    int32_t ui = vg_vocab_add(&h->users, user, user_len, NULL);
    if (ui < 0)
        return ui;
    if (grow((void **)&h->u, &h->u_cap, h->users.n, sizeof *h->u))
        return VG_ENOMEM;
    int32_t it = vg_hist_item(h, item, item_len);
    if (it < 0)
        return it;
    if (user_idx)
        *user_idx = ui;
    h->recent[h->recent_total++ % VG_HIST_RECENT] = ui;

    vg_hist_user_t *u = &h->u[ui];
    for (int k = 0; k < u->n; k++)
        if (u->e[k].item == it) {
            if (ts > u->e[k].ts) /* ZADD GT */
                u->e[k].ts = ts;
            return 0;
        }
    if (grow((void **)&u->e, &u->cap, u->n + 1, sizeof *u->e))
        return VG_ENOMEM;
    u->e[u->n++] = (vg_hist_entry_t){it, ts};
    h->pop[it]++;
    h->entries++;
    if (u->n > h->max_items) { /* ZREMRANGEBYRANK 0 0: the lowest (ts, member) */
        int lo = 0;
        for (int k = 1; k < u->n; k++) {
            const vg_hist_entry_t *a = &u->e[k], *b = &u->e[lo];
            if (a->ts < b->ts ||
                (a->ts == b->ts && member_cmp(vg_vocab_id(&h->items, a->item), vg_vocab_id(&h->items, b->item)) < 0))
                lo = k;
        }
        h->pop[u->e[lo].item]--;
        h->entries--;
        u->e[lo] = u->e[--u->n];
    }
    return 1;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int csr_reserve(vg_csr_t *X, int rows, int64_t nnz)
{
    if ((size_t)rows + 1 > X->cap_rows) {
        int64_t *p = realloc(X->indptr, ((size_t)rows + 1) * sizeof *p);
        if (!p)
            return VG_ENOMEM;
        X->indptr = p;
        X->cap_rows = (size_t)rows + 1;
    }
    if ((size_t)nnz > X->cap_nnz) {
        size_t c = X->cap_nnz ? X->cap_nnz : 1024;
        while (c < (size_t)nnz)
            c *= 2;
        int32_t *p = realloc(X->indices, c * sizeof *p);
        if (!p)
            return VG_ENOMEM;
        X->indices = p;
        X->cap_nnz = c;
    }
    return 0;
}

/* Row k of A = all items of sel[k], sorted; then X = A restricted to < cols. */
int vg_hist_rows(const vg_hist_t *h, const int32_t *sel, int n, int cols, vg_csr_t *X, vg_csr_t *all_items)
{
    int64_t nnz = 0;
    for (int k = 0; k < n; k++)
        nnz += h->u[sel[k]].n;
    vg_csr_t tmp = {0}, *A = all_items ? all_items : &tmp;
    if (csr_reserve(A, n, nnz) || csr_reserve(X, n, nnz)) {
        vg_csr_free(&tmp);
        return VG_ENOMEM;
    }
    A->rows = X->rows = n;
    A->cols = h->items.n;
    X->cols = cols;
    A->indptr[0] = X->indptr[0] = 0;
    for (int k = 0; k < n; k++) {
        const vg_hist_user_t *u = &h->u[sel[k]];
        int32_t *row = A->indices + A->indptr[k];
        for (int j = 0; j < u->n; j++)
            row[j] = u->e[j].item;
        qsort(row, (size_t)u->n, sizeof *row, cmp_i32);
        A->indptr[k + 1] = A->indptr[k] + u->n;
        int64_t o = X->indptr[k];
        for (int j = 0; j < u->n && row[j] < cols; j++)
            X->indices[o++] = row[j];
        X->indptr[k + 1] = o;
    }
    vg_csr_free(&tmp);
    return 0;
}
