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
    for (int i = 0; i < h->users.n; i++) {
        free(h->u[i].e);
        free(h->u[i].rm);
    }
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

/* The index of the lowest (ts, member) of e[0..n), as ZREMRANGEBYRANK 0 0
 * takes it. */
static int lowest(const vg_hist_t *h, const vg_hist_entry_t *e, int n)
{
    int lo = 0;
    for (int k = 1; k < n; k++)
        if (e[k].ts < e[lo].ts ||
            (e[k].ts == e[lo].ts &&
             member_cmp(vg_vocab_id(&h->items, e[k].item), vg_vocab_id(&h->items, e[lo].item)) < 0))
            lo = k;
    return lo;
}

static int find(const vg_hist_entry_t *e, int n, int32_t item)
{
    for (int k = 0; k < n; k++)
        if (e[k].item == item)
            return k;
    return -1;
}

/* The user's and the item's indices (registering both), the user noted as
 * recently active.  Returns the user index or VG_ENOMEM. */
static int32_t user_item(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                         int32_t *it)
{
    int32_t ui = vg_vocab_add(&h->users, user, user_len, NULL);
    if (ui < 0)
        return ui;
    if (grow((void **)&h->u, &h->u_cap, h->users.n, sizeof *h->u))
        return VG_ENOMEM;
    if ((*it = vg_hist_item(h, item, item_len)) < 0)
        return *it;
    return ui;
}

/* ZADD GT of (it, ts) into e[0..*n), then the cap; 1 if a member was added. */
static int zadd_gt_capped(vg_hist_t *h, vg_hist_entry_t **e, int *n, int *cap, int32_t it, double ts,
                          int32_t *evicted)
{
    *evicted = -1;
    int k = find(*e, *n, it);
    if (k >= 0) {
        if (ts > (*e)[k].ts)
            (*e)[k].ts = ts;
        return 0;
    }
    if (grow((void **)e, cap, *n + 1, sizeof **e))
        return VG_ENOMEM;
    (*e)[(*n)++] = (vg_hist_entry_t){it, ts};
    if (*n > h->max_items) {
        int lo = lowest(h, *e, *n);
        *evicted = (*e)[lo].item;
        (*e)[lo] = (*e)[--*n];
    }
    return 1;
}

static int add_entry(vg_hist_t *h, vg_hist_user_t *u, int32_t it, double ts)
{
    int32_t evicted;
    int r = zadd_gt_capped(h, &u->e, &u->n, &u->cap, it, ts, &evicted);
    if (r == 1) {
        h->pop[it]++;
        h->entries++;
        if (evicted >= 0) {
            h->pop[evicted]--;
            h->entries--;
        }
    }
    return r;
}

int vg_hist_add(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                double ts, int32_t *user_idx)
{
    return vg_hist_apply(h, user, user_len, item, item_len, ts, 0, user_idx);
}

int vg_hist_apply(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                  double ts, int removal, int32_t *user_idx)
{
    int32_t it, ui = user_item(h, user, user_len, item, item_len, &it);
    if (ui < 0)
        return ui;
    if (user_idx)
        *user_idx = ui;
    h->recent[h->recent_total++ % VG_HIST_RECENT] = ui;
    vg_hist_user_t *u = &h->u[ui];
    int r = find(u->rm, u->rm_n, it);
    if (!removal)
        return r >= 0 && u->rm[r].ts >= ts ? 0 : add_entry(h, u, it, ts);
    int32_t evicted;
    if (zadd_gt_capped(h, &u->rm, &u->rm_n, &u->rm_cap, it, ts, &evicted) < 0)
        return VG_ENOMEM;
    int k = find(u->e, u->n, it);
    if (k < 0 || u->e[k].ts > ts)
        return 0;
    u->e[k] = u->e[--u->n];
    h->pop[it]--;
    h->entries--;
    return 1;
}

int vg_hist_load_removal(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                         double ts)
{
    int32_t it, ui = user_item(h, user, user_len, item, item_len, &it);
    if (ui < 0)
        return ui;
    vg_hist_user_t *u = &h->u[ui];
    int32_t evicted;
    return zadd_gt_capped(h, &u->rm, &u->rm_n, &u->rm_cap, it, ts, &evicted) < 0 ? VG_ENOMEM : 0;
}

int32_t vg_hist_forget(vg_hist_t *h, const char *user, size_t user_len)
{
    int32_t ui = vg_vocab_find(&h->users, user, user_len);
    if (ui < 0)
        return -1;
    if (vg_vocab_erase(&h->users, ui))
        return VG_ENOMEM;
    if (ui < h->u_cap) {
        vg_hist_user_t *u = &h->u[ui];
        for (int k = 0; k < u->n; k++)
            h->pop[u->e[k].item]--;
        h->entries -= (uint64_t)u->n;
        free(u->e);
        free(u->rm);
        memset(u, 0, sizeof *u);
    }
    uint64_t ring = h->recent_total < VG_HIST_RECENT ? h->recent_total : VG_HIST_RECENT;
    for (uint64_t k = 0; k < ring; k++)
        if (h->recent[k] == ui)
            h->recent[k] = -1;
    return ui;
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
