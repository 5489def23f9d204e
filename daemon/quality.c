/*
 * quality.c — the live hit rate (see quality.h).
 *
 * Kept lists: an open-addressing table keyed by user index (linear probing
 * from a multiplicative hash, at most half full, deletion by backward
 * shift, so a probe never needs tombstones).  Popularity: a min-heap of the
 * VG_QUALITY_POP best items over one pass of hist.pop, then sorted best
 * first.  The judged user's own items are found by stamping them in an
 * array indexed by item (one stamp value per judged event), so the walk
 * down the popular items costs one load per item.
 */
#include "daemon/quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"

int vg_quality_init(vg_quality_t *q, double sample, int window)
{
    memset(q, 0, sizeof *q);
    q->all = sample >= 1;
    q->threshold = sample <= 0 ? 0 : q->all ? UINT64_MAX : (uint64_t)ldexp(sample, 64);
    q->window = window > 0 ? window : 1;
    if (!(q->ring = calloc((size_t)q->window, 1)))
        return VG_ENOMEM;
    return 0;
}

void vg_quality_free(vg_quality_t *q)
{
    free(q->t);
    free(q->stamp);
    free(q->ring);
    memset(q, 0, sizeof *q);
}

/* FNV-1a's high bits follow the ids' common prefixes ("user-1", "user-2",
 * ...); splitmix64's finaliser spreads them over the whole range. */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int vg_quality_sampled(const vg_quality_t *q, const char *user, size_t len)
{
    return q->all || (q->threshold && mix(vg_hist_id_hash(user, len)) < q->threshold);
}

/* ---- kept lists ---------------------------------------------------------------- */

static size_t home(const vg_quality_t *q, int32_t u)
{
    return (size_t)(((uint64_t)(uint32_t)u * 0x9E3779B97F4A7C15ull) >> 32) & (q->cap - 1);
}

static vg_quality_slot_t *find(const vg_quality_t *q, int32_t u)
{
    if (!q->cap)
        return NULL;
    for (size_t k = home(q, u);; k = (k + 1) & (q->cap - 1)) {
        if (q->t[k].user == u)
            return &q->t[k];
        if (q->t[k].user < 0)
            return NULL;
    }
}

static vg_quality_slot_t *insert_slot(vg_quality_t *q, int32_t u)
{
    size_t k = home(q, u);
    while (q->t[k].user >= 0 && q->t[k].user != u)
        k = (k + 1) & (q->cap - 1);
    if (q->t[k].user < 0) {
        q->t[k].user = u;
        q->n++;
    }
    return &q->t[k];
}

static int grow(vg_quality_t *q)
{
    size_t cap = q->cap ? 2 * q->cap : 1024;
    vg_quality_slot_t *old = q->t, *t = malloc(cap * sizeof *t);
    if (!t)
        return VG_ENOMEM;
    for (size_t k = 0; k < cap; k++)
        t[k].user = -1;
    size_t old_cap = q->cap;
    q->t = t;
    q->cap = cap;
    q->n = 0;
    for (size_t k = 0; k < old_cap; k++)
        if (old[k].user >= 0)
            *insert_slot(q, old[k].user) = old[k];
    free(old);
    return 0;
}

int vg_quality_keep(vg_quality_t *q, int32_t u, uint32_t gen, const int32_t *items, int n)
{
    if (!find(q, u) && 2 * (q->n + 1) > q->cap && grow(q)) {
        vg_quality_drop(q, u);
        return VG_ENOMEM;
    }
    vg_quality_slot_t *s = insert_slot(q, u);
    s->gen = gen;
    s->n = n < VG_QUALITY_K ? n : VG_QUALITY_K;
    memcpy(s->items, items, (size_t)s->n * sizeof *items);
    return 0;
}

void vg_quality_drop(vg_quality_t *q, int32_t u)
{
    vg_quality_slot_t *s = find(q, u);
    if (!s)
        return;
    size_t hole = (size_t)(s - q->t), mask = q->cap - 1;
    q->t[hole].user = -1;
    q->n--;
    /* backward shift: move up every later entry of the run whose home is
     * not between the hole and it */
    for (size_t k = (hole + 1) & mask; q->t[k].user >= 0; k = (k + 1) & mask) {
        size_t h = home(q, q->t[k].user);
        if (((k - h) & mask) >= ((k - hole) & mask)) {
            q->t[hole] = q->t[k];
            q->t[k].user = -1;
            hole = k;
        }
    }
}

/* ---- popularity ------------------------------------------------------------------ */

/* Item a ranks before item b: more users, then the older item. */
static int better(const vg_hist_t *h, int32_t a, int32_t b)
{
    int64_t x = vg_hist_pop(h, a), y = vg_hist_pop(h, b);
    return x > y || (x == y && a < b);
}

/* Restores the min-heap (the worst item at the root) below position k. */
static void sift_down(const vg_hist_t *h, int32_t *heap, int n, int k)
{
    for (;;) {
        int w = k, l = 2 * k + 1, r = l + 1;
        if (l < n && better(h, heap[w], heap[l]))
            w = l;
        if (r < n && better(h, heap[w], heap[r]))
            w = r;
        if (w == k)
            return;
        int32_t x = heap[k];
        heap[k] = heap[w];
        heap[w] = x;
        k = w;
    }
}

void vg_quality_popularity(vg_quality_t *q, const vg_hist_t *h)
{
    int n = 0;
    for (int32_t i = 0; i < h->items.n; i++) {
        if (n < VG_QUALITY_POP) {
            q->pop[n++] = i;
            if (n == VG_QUALITY_POP)
                for (int k = n / 2 - 1; k >= 0; k--)
                    sift_down(h, q->pop, n, k);
        } else if (better(h, i, q->pop[0])) {
            q->pop[0] = i;
            sift_down(h, q->pop, n, 0);
        }
    }
    if (n < VG_QUALITY_POP)
        for (int k = n / 2 - 1; k >= 0; k--)
            sift_down(h, q->pop, n, k);
    /* heap order -> best first: pop the worst to the end, repeatedly */
    for (int m = n; m > 1; m--) {
        int32_t x = q->pop[0];
        q->pop[0] = q->pop[m - 1];
        q->pop[m - 1] = x;
        sift_down(h, q->pop, m - 1, 0);
    }
    q->n_pop = n;
}

static int stamped(const vg_quality_t *q, int32_t x)
{
    return x >= 0 && x < q->stamp_cap && q->stamp[x] == q->stamp_now;
}

/* The rank (0-based) of item i among items[0..n) not stamped, or
 * VG_QUALITY_K when it is not in their top VG_QUALITY_K; -1 when fewer
 * than VG_QUALITY_K of them are left and there are more (the ranking is
 * not known that deep). */
static int rank_in(const vg_quality_t *q, const int32_t *items, int n, int more, int32_t i)
{
    int r = 0;
    for (int k = 0; k < n && r < VG_QUALITY_K; k++) {
        if (stamped(q, items[k]))
            continue;
        if (items[k] == i)
            return r;
        r++;
    }
    return r < VG_QUALITY_K && more ? -1 : VG_QUALITY_K;
}

/* ---- judging ----------------------------------------------------------------------- */

/* Stamps user u's items; returns 1 when item i is one of them, -1 when out
 * of memory. */
static int stamp_user(vg_quality_t *q, const vg_hist_t *h, int32_t u, int32_t i)
{
    if (q->stamp_cap < h->items.n) {
        int cap = h->items.n + h->items.n / 2 + 64;
        uint32_t *s = realloc(q->stamp, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        memset(s + q->stamp_cap, 0, (size_t)(cap - q->stamp_cap) * sizeof *s);
        q->stamp = s;
        q->stamp_cap = cap;
    }
    if (++q->stamp_now == 0) { /* wrapped: old stamps could match again */
        memset(q->stamp, 0, (size_t)q->stamp_cap * sizeof *q->stamp);
        q->stamp_now = 1;
    }
    int has = 0;
    const vg_hist_user_t *hu = &h->u[u];
    for (int k = 0; k < hu->n; k++) {
        int32_t x = hu->e[k].item;
        q->stamp[x] = q->stamp_now;
        has |= x == i;
    }
    return has;
}

static void count(vg_quality_t *q, int bits)
{
    if (q->filled == q->window) { /* the oldest leaves the window */
        int old = q->ring[q->head];
        for (int b = 0; b < 4; b++)
            q->in_window[b] -= (old >> b) & 1;
    } else {
        q->filled++;
    }
    q->ring[q->head] = (uint8_t)bits;
    q->head = (q->head + 1) % q->window;
    for (int b = 0; b < 4; b++) {
        q->in_window[b] += (bits >> b) & 1;
        q->hits[b] += (uint64_t)((bits >> b) & 1);
    }
    q->judged++;
}

int vg_quality_judge(vg_quality_t *q, const vg_hist_t *h, int32_t u, int32_t i)
{
    const vg_quality_slot_t *s = u >= 0 ? find(q, u) : NULL;
    if (!s || u >= h->users.n || !h->u[u].live || h->u[u].gen != s->gen)
        return -1;
    int has = stamp_user(q, h, u, i);
    if (has) /* a repeat (or no memory to tell): not judged */
        return -1;
    /* both rankings without the items the user has by now (a list may
     * predate some of them) */
    int rm = rank_in(q, s->items, s->n, 0, i), rp = rank_in(q, q->pop, q->n_pop, q->n_pop == VG_QUALITY_POP, i);
    if (rp < 0) /* the user holds most of the cached popular items: not judged (no O(items) scan) */
        return -1;
    int bits = 0;
    if (i >= 0)
        bits = (rm < 10 ? VG_Q_MODEL10 : 0) | (rm < 20 ? VG_Q_MODEL20 : 0) | (rp < 10 ? VG_Q_POP10 : 0) |
               (rp < 20 ? VG_Q_POP20 : 0);
    count(q, bits);
    return bits;
}

double vg_quality_rate(const vg_quality_t *q, int bit)
{
    int b = bit == VG_Q_MODEL10 ? 0 : bit == VG_Q_MODEL20 ? 1 : bit == VG_Q_POP10 ? 2 : 3;
    return q->filled ? (double)q->in_window[b] / q->filled : NAN;
}
