/*
 * hist.c — the in-memory mirror of hist:<user> (see hist.h for why it stays
 * equal to Redis).  Per-user entries are kept unordered: lookups are linear
 * in the history length (capped by history.max_items), eviction searches the
 * minimum only when the cap is exceeded.  Per-user arrays start at
 * ENTRIES_FIRST entries and double.
 *
 * Bounds (hist.h, vg_hist_limits_t).  Users: a doubly linked activity list
 * through u[].older/newer, touched by every event; vg_hist_evict() cuts its
 * old end.  User indices are reused (users.reuse), so the index space is as
 * large as the most users held at once; u[i].gen tells a reused index from
 * the user it held before.  Items: an item not in `items` is pending — its
 * (user, gen, ts) sightings are kept in pd[] under the `pend` vocabulary
 * (indices reused too) until min_item_users distinct users saw it and the
 * catalogue has room; then it is admitted (an index in `items`, the model's
 * row order) and the sightings become entries of those users' histories.
 * At most max_pending items wait; the oldest waiting one (pend_fifo) makes
 * room.  Invariant: every entry of every history is an admitted item.
 */
#include "daemon/hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"

#define ENTRIES_FIRST 4        /* first capacity of a user's history */
#define PENDING_DEFAULT 100000 /* lim.max_pending when 0 */

int vg_hist_init_limits(vg_hist_t *h, const vg_hist_limits_t *lim)
{
    memset(h, 0, sizeof *h);
    h->lim = *lim;
    h->lim.max_items = lim->max_items > 0 ? lim->max_items : 1;
    h->max_items = h->lim.max_items;
    if (h->lim.min_item_users < 1)
        h->lim.min_item_users = 1;
    if (h->lim.min_item_users > VG_HIST_ADMIT_MAX)
        h->lim.min_item_users = VG_HIST_ADMIT_MAX;
    if (h->lim.max_pending <= 0)
        h->lim.max_pending = PENDING_DEFAULT;
    vg_vocab_init(&h->users);
    vg_vocab_init(&h->items);
    vg_vocab_init(&h->pend);
    h->users.reuse = h->pend.reuse = 1;
    h->oldest = h->newest = -1;
    if (pthread_rwlock_init(&h->lock, NULL))
        return VG_ENOMEM;
    return 0;
}

int vg_hist_init(vg_hist_t *h, int max_items)
{
    return vg_hist_init_limits(h, &(vg_hist_limits_t){.max_items = max_items});
}

void vg_hist_free(vg_hist_t *h)
{
    for (int i = 0; i < h->users.n; i++) {
        free(h->u[i].e);
        free(h->u[i].rm);
    }
    free(h->u);
    free(h->pop);
    free(h->gpop);
    free(h->pd);
    free(h->pend_fifo);
    free(h->pend_fifo_gen);
    vg_vocab_free(&h->users);
    vg_vocab_free(&h->items);
    vg_vocab_free(&h->pend);
    pthread_rwlock_destroy(&h->lock);
}

static int grow_from(void **p, int *cap, int need, size_t elem, int first)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : first;
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

static int grow(void **p, int *cap, int need, size_t elem) { return grow_from(p, cap, need, elem, 64); }

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

/* ---- users: the activity list ---------------------------------------------------- */

static void lru_unlink(vg_hist_t *h, int32_t ui)
{
    vg_hist_user_t *u = &h->u[ui];
    if (u->older >= 0)
        h->u[u->older].newer = u->newer;
    else
        h->oldest = u->newer;
    if (u->newer >= 0)
        h->u[u->newer].older = u->older;
    else
        h->newest = u->older;
}

static void lru_push(vg_hist_t *h, int32_t ui)
{
    vg_hist_user_t *u = &h->u[ui];
    u->older = h->newest;
    u->newer = -1;
    if (h->newest >= 0)
        h->u[h->newest].newer = ui;
    else
        h->oldest = ui;
    h->newest = ui;
}

/* The user's index (registering a new one, *created = 1), noted as the
 * most recently active.  Returns the index or VG_ENOMEM. */
static int32_t user_slot(vg_hist_t *h, const char *user, size_t user_len, int *created)
{
    int32_t ui = vg_vocab_add(&h->users, user, user_len, created);
    if (ui < 0)
        return ui;
    if (grow((void **)&h->u, &h->u_cap, h->users.n, sizeof *h->u))
        return VG_ENOMEM; /* the id stays known with an empty history: harmless */
    vg_hist_user_t *u = &h->u[ui];
    if (!u->live) { /* new to memory (or only named in the vocabulary so far, as --replay does) */
        uint32_t gen = u->gen + 1;
        memset(u, 0, sizeof *u);
        u->gen = gen;
        u->live = 1;
        u->trust_seq = h->sent_seq;
        h->live_users++;
        *created = 1;
    } else if (ui == h->newest) {
        return ui;
    } else {
        lru_unlink(h, ui);
    }
    lru_push(h, ui);
    return ui;
}

/* The index leaves memory: its history and removals go, popularity with
 * them, the id leaves the vocabulary (the index is reused later). */
static int drop_user(vg_hist_t *h, int32_t ui)
{
    if (vg_vocab_erase(&h->users, ui))
        return VG_ENOMEM;
    if (ui >= h->u_cap || !h->u[ui].live) /* named only (its slot could not be made): nothing else to drop */
        return 0;
    vg_hist_user_t *u = &h->u[ui];
    for (int k = 0; k < u->n; k++)
        h->pop[u->e[k].item]--;
    h->entries -= (uint64_t)u->n;
    free(u->e);
    free(u->rm);
    lru_unlink(h, ui);
    uint32_t gen = u->gen + 1;
    memset(u, 0, sizeof *u);
    u->gen = gen;
    h->live_users--;
    return 0;
}

int vg_hist_evict(vg_hist_t *h, int32_t *out, int max_out)
{
    int n = 0;
    int32_t ui = h->oldest;
    while (h->lim.max_users > 0 && h->live_users > h->lim.max_users && ui >= 0 && n < max_out) {
        int32_t next = h->u[ui].newer;
        if (!h->u[ui].loading) { /* a user being read back stays until it is whole */
            if (drop_user(h, ui))
                break;
            h->evicted++;
            out[n++] = ui;
        }
        ui = next;
    }
    return n;
}

/* ---- items: admission ------------------------------------------------------------ */

uint64_t vg_hist_id_hash(const char *id, size_t len)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t k = 0; k < len; k++)
        x = (x ^ (unsigned char)id[k]) * 1099511628211ull;
    return x;
}

static uint64_t id_hash(const char *id)
{
    return vg_hist_id_hash(id, strlen(id));
}

/* Drops pending item pi (admitted, or for room). */
static void pend_drop(vg_hist_t *h, int32_t pi)
{
    if (vg_vocab_erase(&h->pend, pi) == 0)
        h->pd[pi].self_gen++;
}

/* A new pending item: its record, and its place at the end of the FIFO
 * (the oldest waiting item goes when it is full).  Returns 0 or VG_ENOMEM. */
/* 1 when FIFO slot `at` still names a waiting item (not admitted or
 * dropped since, its index not passed on). */
static int fifo_live(const vg_hist_t *h, int at, int32_t except)
{
    int32_t pi = h->pend_fifo[at];
    return pi != except && h->pd[pi].self_gen == h->pend_fifo_gen[at] && h->pend.ids[pi][0];
}

/* Room for one more slot in the FIFO of waiting items: dead slots at the
 * head go; a full ring of mostly dead slots is compacted; only when
 * max_pending items really wait does the oldest of them go. */
static void fifo_room(vg_hist_t *h, int32_t pi)
{
    int max = h->lim.max_pending;
    while (h->pend_len && !fifo_live(h, h->pend_head, pi)) {
        h->pend_head = (h->pend_head + 1) % max;
        h->pend_len--;
    }
    if (h->pend_len < max)
        return;
    int w = 0; /* compact: the live slots, in order, from 0 */
    for (int k = 0; k < h->pend_len; k++) {
        int at = (h->pend_head + k) % max;
        if (fifo_live(h, at, pi)) {
            int32_t v = h->pend_fifo[at];
            uint32_t g = h->pend_fifo_gen[at];
            h->pend_fifo[w] = v;
            h->pend_fifo_gen[w++] = g;
        }
    }
    h->pend_head = 0;
    h->pend_len = w;
    if (w == max) { /* as many wait as may: the oldest makes room */
        pend_drop(h, h->pend_fifo[0]);
        h->pend_dropped++;
        h->pend_head = 1;
        h->pend_len--;
    }
}

/* A new pending item: its record, and its place at the end of the FIFO
 * (fifo_room).  Returns 0 or VG_ENOMEM. */
static int pend_new(vg_hist_t *h, int32_t pi)
{
    if (grow((void **)&h->pd, &h->pd_cap, h->pend.n, sizeof *h->pd))
        return VG_ENOMEM;
    h->pd[pi].n = 0;
    int max = h->lim.max_pending;
    if (!h->pend_fifo) {
        h->pend_fifo = malloc((size_t)max * sizeof *h->pend_fifo);
        h->pend_fifo_gen = malloc((size_t)max * sizeof *h->pend_fifo_gen);
        if (!h->pend_fifo || !h->pend_fifo_gen) {
            free(h->pend_fifo);
            free(h->pend_fifo_gen);
            h->pend_fifo = NULL;
            h->pend_fifo_gen = NULL;
            return VG_ENOMEM;
        }
    }
    fifo_room(h, pi);
    int at = (h->pend_head + h->pend_len++) % max;
    h->pend_fifo[at] = pi;
    h->pend_fifo_gen[at] = h->pd[pi].self_gen;
    return 0;
}

static int add_entry(vg_hist_t *h, vg_hist_user_t *u, int32_t it, double ts);

/* Admits pending item pi as `item`: an index in `items`; every sighting
 * whose user still holds its index becomes an entry of that history — the
 * one of user `self` only when later than self_ts, the ts of the event the
 * caller applies next. */
static int32_t admit(vg_hist_t *h, int32_t pi, const char *item, size_t item_len, int32_t self, double self_ts)
{
    int32_t it = vg_hist_item(h, item, item_len);
    if (it < 0)
        return it;
    const vg_hist_pending_t *pd = &h->pd[pi];
    for (int k = 0; k < pd->n; k++) {
        vg_hist_user_t *u = &h->u[pd->user[k]];
        if ((pd->user[k] != self || pd->ts[k] > self_ts) && u->live && u->gen == pd->gen[k] && !u->loading) {
            if (add_entry(h, u, it, pd->ts[k]) < 0)
                return VG_ENOMEM;
            u->extra -= u->extra > 0; /* the sighting is a mirrored member now */
        }
    }
    pend_drop(h, pi);
    return it;
}

/* The item's index for an event of user ui: admitted (0; *it), or -1 when
 * it waits (the sighting recorded, or taken back for a removal), or
 * VG_ENOMEM.  When this event admits it, the other users' sightings become
 * entries here and the caller adds ui's own like any event's (ui's earlier
 * sighting too when its ts is later, as ZADD GT keeps the latest). */
static int item_of(vg_hist_t *h, int32_t ui, const char *item, size_t item_len, double ts, int removal, int32_t *it)
{
    if ((*it = vg_vocab_find(&h->items, item, item_len)) >= 0)
        return 0;
    int room = h->lim.catalogue_max <= 0 || h->items.n < h->lim.catalogue_max;
    if (room && h->lim.min_item_users <= 1) /* no admission rule: straight in (a removal too, as Redis keeps it) */
        return (*it = vg_hist_item(h, item, item_len)) < 0 ? *it : 0;
    int created;
    int32_t pi = removal ? vg_vocab_find(&h->pend, item, item_len) : vg_vocab_add(&h->pend, item, item_len, &created);
    if (pi < 0) /* -1: a removal of an item nobody waits for */
        return pi < -1 ? pi : -1;
    if (!removal && created && pend_new(h, pi)) {
        vg_vocab_erase(&h->pend, pi); /* no record to go with it */
        return VG_ENOMEM;
    }
    vg_hist_pending_t *pd = &h->pd[pi];
    uint64_t who = id_hash(vg_vocab_id(&h->users, ui)); /* the id, not the index: a user read back is the same */
    int k = 0;
    while (k < pd->n && pd->who[k] != who)
        k++;
    if (removal) { /* the user's sighting is taken back, unless it is later (the script's rule) */
        if (k < pd->n && pd->ts[k] <= ts) {
            pd->n--;
            pd->user[k] = pd->user[pd->n];
            pd->gen[k] = pd->gen[pd->n];
            pd->who[k] = pd->who[pd->n];
            pd->ts[k] = pd->ts[pd->n];
        }
        return -1;
    }
    if (k == pd->n) {
        if (pd->n == VG_HIST_ADMIT_MAX)
            return -1; /* admitted already if it could be: the catalogue is full */
        pd->n++;
        pd->who[k] = who;
        pd->ts[k] = ts;
    } else if (ts > pd->ts[k]) {
        pd->ts[k] = ts;
    }
    pd->user[k] = ui; /* where the user is now */
    pd->gen[k] = h->u[ui].gen;
    if (pd->n < h->lim.min_item_users || !room)
        return -1;
    return (*it = admit(h, pi, item, item_len, ui, ts)) < 0 ? *it : 0;
}

int32_t vg_hist_adopt_item(vg_hist_t *h, const char *item, size_t item_len)
{
    int32_t it = vg_vocab_find(&h->items, item, item_len);
    if (it >= 0)
        return it;
    if (h->lim.catalogue_max > 0 && h->items.n >= h->lim.catalogue_max)
        return -1;
    int32_t pi = vg_vocab_find(&h->pend, item, item_len);
    return pi >= 0 ? admit(h, pi, item, item_len, -1, 0) : vg_hist_item(h, item, item_len);
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
    if (grow_from((void **)e, cap, *n + 1, sizeof **e, ENTRIES_FIRST))
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

/* An event of user ui on item it (admitted), by the ordered script's rules. */
static int apply_admitted(vg_hist_t *h, vg_hist_user_t *u, int32_t it, double ts, int removal)
{
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

int vg_hist_apply(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                  double ts, int removal, int32_t *user_idx)
{
    int created;
    int32_t it, ui = user_slot(h, user, user_len, &created);
    if (ui < 0)
        return ui;
    if (user_idx)
        *user_idx = ui;
    h->recent[h->recent_total++ % VG_HIST_RECENT] = ui;
    vg_hist_user_t *u = &h->u[ui];
    if (u->loading) /* the read-back will bring it: Redis has it */
        return 0;
    if (created && (h->evicted || h->unsure || h->shared) && !h->bulk) { /* maybe in Redis already: read it back whole */
        u->loading = 1;
        return VG_HIST_RELOAD;
    }
    int r = item_of(h, ui, item, item_len, ts, removal, &it);
    if (r == -1 && !removal)
        u->extra++; /* in Redis, not in the mirror */
    if (r)
        return r < 0 && r != -1 ? r : 0;
    return apply_admitted(h, u, it, ts, removal);
}

/* Empties a user's mirror (not its place, LRU or counters of what is in
 * flight): a read-back then brings the whole history again. */
static void clear_user(vg_hist_t *h, vg_hist_user_t *u)
{
    for (int k = 0; k < u->n; k++)
        h->pop[u->e[k].item]--;
    h->entries -= (uint64_t)u->n;
    u->n = 0;
    u->rm_n = 0;
    u->extra = 0;
}

int vg_hist_pull(vg_hist_t *h, const char *user, size_t user_len, double ts, int trust_owned, int32_t *ui)
{
    int created;
    *ui = user_slot(h, user, user_len, &created);
    if (*ui < 0)
        return *ui;
    vg_hist_user_t *u = &h->u[*ui];
    if (u->loading || (!created && trust_owned && vg_hist_owned(h, *ui)))
        return 0;
    double latest = -INFINITY;
    for (int k = 0; k < u->n; k++)
        latest = u->e[k].ts > latest ? u->e[k].ts : latest;
    for (int k = 0; k < u->rm_n; k++)
        latest = u->rm[k].ts > latest ? u->rm[k].ts : latest;
    if (!created && latest >= ts)
        return 0;
    clear_user(h, u); /* Redis' history replaces it: removals made elsewhere apply */
    u->loading = 1;
    h->recent[h->recent_total++ % VG_HIST_RECENT] = *ui; /* active elsewhere: for the trainer's recent draws */
    return VG_HIST_RELOAD;
}

int vg_hist_drop(vg_hist_t *h, int32_t ui)
{
    if (ui < 0 || ui >= h->u_cap || !h->u[ui].live || h->u[ui].loading)
        return 0;
    int rc = drop_user(h, ui);
    return rc ? rc : 1;
}

int vg_hist_send(vg_hist_t *h, const char *user, size_t user_len, int32_t *ui, uint32_t *gen, uint8_t *counted)
{
    *counted = 0;
    *gen = 0;
    *ui = vg_vocab_find(&h->users, user, user_len);
    if (*ui < 0 || *ui >= h->u_cap || !h->u[*ui].live)
        return 1;
    vg_hist_user_t *u = &h->u[*ui];
    u->inflight++;
    *counted = 1;
    *gen = u->gen;
    if (u->loading || h->acked_seq < u->trust_seq)
        return 1;
    return (int64_t)u->n + u->extra + u->inflight > h->max_items;
}

void vg_hist_sent_batch(vg_hist_t *h) { h->sent_seq++; }

void vg_hist_unsure(vg_hist_t *h, int32_t ui)
{
    if (ui >= 0 && ui < h->u_cap && h->u[ui].live)
        h->u[ui].extra = h->max_items;
}

void vg_hist_acked(vg_hist_t *h, const char *user, size_t user_len, int32_t ui, uint32_t gen, int counted, int ok,
                   int trimmed)
{
    if (counted && ui < h->u_cap && h->u[ui].live && h->u[ui].gen == gen) /* the incarnation that counted it */
        h->u[ui].inflight--;
    int32_t now = vg_vocab_find(&h->users, user, user_len); /* whoever holds the id now: Redis' key is the id's */
    if (now < 0 || now >= h->u_cap || !h->u[now].live) {
        h->unsure += !ok;
        return;
    }
    vg_hist_user_t *u = &h->u[now];
    int room = h->max_items > u->n ? h->max_items - u->n : 0;
    if (!ok) /* refused, yet its ZADD may have gone through */
        u->extra = h->max_items;
    else if (trimmed && u->extra > room) /* hist:<user> holds at most max_items now */
        u->extra = room;
}

void vg_hist_acked_batch(vg_hist_t *h) { h->acked_seq++; }

int vg_hist_load_removal(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                         double ts)
{
    int created;
    int32_t it, ui = user_slot(h, user, user_len, &created);
    if (ui < 0)
        return ui;
    int r = item_of(h, ui, item, item_len, ts, 1, &it);
    if (r) /* not admitted: nothing of it is mirrored */
        return r < -1 ? r : 0;
    vg_hist_user_t *u = &h->u[ui];
    int32_t evicted;
    return zadd_gt_capped(h, &u->rm, &u->rm_n, &u->rm_cap, it, ts, &evicted) < 0 ? VG_ENOMEM : 0;
}

int vg_hist_reload(vg_hist_t *h, int32_t ui, int removals, const char *const *items, const size_t *lens,
                   const double *ts, size_t n)
{
    vg_hist_user_t *u = &h->u[ui];
    if (!u->live)
        return 0;
    for (size_t k = 0; k < n; k++) {
        int32_t it;
        int r = item_of(h, ui, items[k], lens[k], ts[k], removals, &it), evicted;
        if (r < -1)
            return r;
        u->extra += r == -1 && !removals;
        if (r == 0 && (removals ? zadd_gt_capped(h, &u->rm, &u->rm_n, &u->rm_cap, it, ts[k], &evicted)
                                : add_entry(h, u, it, ts[k])) < 0)
            return VG_ENOMEM;
    }
    return 0;
}

void vg_hist_reload_done(vg_hist_t *h, int32_t ui) { h->u[ui].loading = 0; }

int32_t vg_hist_forget(vg_hist_t *h, const char *user, size_t user_len)
{
    int32_t ui = vg_vocab_find(&h->users, user, user_len);
    if (ui < 0)
        return -1;
    if (drop_user(h, ui))
        return VG_ENOMEM;
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
    if ((size_t)nnz > X->cap_nnz || !X->indices) { /* never NULL: rows may all be empty */
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

/* ---- the leader's popularity ---------------------------------------------------- */

static const char POP_MAGIC[8] = {'V', 'G', 'P', 'O', 'P', 'U', 'L', '1'};

static void put_i64(unsigned char *p, int64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)((uint64_t)v >> (8 * k));
}

static int64_t get_i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return (int64_t)v;
}

int vg_hist_pop_append(const vg_hist_t *h, int n, void **buf, size_t *cap, size_t *len)
{
    if (n < 0 || n > h->items.n)
        return VG_EINVAL;
    size_t need = *len + 8 * ((size_t)n + 2);
    if (need > *cap) {
        void *b = realloc(*buf, need);
        if (!b)
            return VG_ENOMEM;
        *buf = b;
        *cap = need;
    }
    unsigned char *p = (unsigned char *)*buf + *len;
    for (int i = 0; i < n; i++, p += 8)
        put_i64(p, h->pop[i]);
    put_i64(p, n);
    memcpy(p + 8, POP_MAGIC, 8);
    *len = need;
    return 0;
}

int vg_hist_pop_split(const void *data, size_t *len, int64_t **counts, int *n)
{
    const unsigned char *d = data;
    *counts = NULL;
    *n = 0;
    if (*len < 16 || memcmp(d + *len - 8, POP_MAGIC, 8) != 0)
        return 0;
    int64_t m = get_i64(d + *len - 16);
    if (m < 0 || m > INT32_MAX || (uint64_t)m > (*len - 16) / 8)
        return VG_EINVAL;
    const unsigned char *p = d + *len - 16 - 8 * (size_t)m;
    if (!(*counts = malloc(((size_t)m + 1) * sizeof **counts)))
        return VG_ENOMEM;
    for (int64_t i = 0; i < m; i++)
        (*counts)[i] = get_i64(p + 8 * i);
    *n = (int)m;
    *len -= 16 + 8 * (size_t)m;
    return 0;
}

void vg_hist_set_leader_pop(vg_hist_t *h, int64_t *counts, int n)
{
    free(h->gpop);
    h->gpop = counts;
    h->gpop_n = counts ? n : 0;
}
