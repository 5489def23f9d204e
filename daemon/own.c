/*
 * own.c — users read back, warmed, dropped and owned (see own.h).
 *
 * Invariants: the mirror is changed here only on the loop thread, under
 * its write lock; a read-back's answer is applied only while the index
 * still holds the user it was asked for (its generation); users leaving
 * memory are handed to vg_own_gone after the lock is released.
 */
#include "daemon/own.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/pipeline.h"

#define TAIL_MS 2000
#define TAIL_PAGE 5000  /* users per shard and page of the leader's tail */
#define SWEEP_TICKS 300 /* TAIL_MS ticks between the leader's reads of every user (10 min) */
#define DROP_CHUNK 1024

/* ---- read-backs ------------------------------------------------------------------ */

typedef struct reload_ctx {
    vg_pipe_t *p;
    int32_t user;
    uint32_t gen; /* the index's generation when asked: it may pass to another user meanwhile */
} reload_ctx_t;

static void on_reload_rows(void *ud, int removals, const char *const *items, const size_t *lens, const double *ts,
                           size_t n)
{
    reload_ctx_t *c = ud;
    vg_hist_t *h = &c->p->hist;
    vg_hist_wrlock(h);
    int rc = h->u[c->user].gen == c->gen ? vg_hist_reload(h, c->user, removals, items, lens, ts, n) : 0;
    if (rc)
        vg_hist_unsure(h, c->user);
    vg_hist_unlock(h);
    if (rc)
        vg_log(VG_LOG_ERROR, "history mirror: %s", vg_strerror(rc));
}

void vg_own_gone(vg_pipe_t *p, const int32_t *gone, int n)
{
    for (int k = 0; k < n; k++) {
        if (p->scorer)
            vg_scorer_forget(p->scorer, gone[k]);
        vg_monitor_drop(p->monitor, gone[k]);
    }
}

static void on_reload_done(void *ud, int status)
{
    reload_ctx_t *c = ud;
    vg_pipe_t *p = c->p;
    if (status == VG_EAGAIN) { /* cancelled at close */
        free(c);
        return;
    }
    if (status)
        vg_log(VG_LOG_ERROR, "reading a user's history back from Redis: %s; the user is scored from what was read",
               vg_strerror(status));
    int32_t gone[64];
    vg_hist_wrlock(&p->hist);
    int same = p->hist.u[c->user].gen == c->gen, mark = same && vg_hist_owned(&p->hist, c->user);
    if (same)
        vg_hist_reload_done(&p->hist, c->user);
    if (same && status) /* what Redis holds beyond what was read is not known */
        vg_hist_unsure(&p->hist, c->user);
    int dropped = same && p->own.on && !p->own.leading && p->hist.u[c->user].part && !mark &&
                  vg_hist_drop(&p->hist, c->user) == 1; /* its partition was revoked while it was read */
    if (dropped)
        gone[0] = c->user;
    int n_evicted = vg_hist_evict(&p->hist, gone + dropped, 63); /* the bound holds without new batches */
    int n_gone = dropped + n_evicted;
    int users = p->hist.live_users;
    vg_hist_unlock(&p->hist);
    vg_own_gone(p, gone, n_gone);
    if (mark && p->scorer) /* another daemon's user (the leader's tail) is not ranked here */
        vg_scorer_mark(p->scorer, c->user);
    vg_metric_inc(p->m_reloaded, 1);
    vg_metric_inc(p->m_evicted, n_evicted);
    if (dropped) /* only when sharing: the metric exists then */
        vg_metric_inc(p->own.m_dropped, 1);
    vg_metric_set(p->m_users, users);
    free(c);
}

void vg_own_reload(vg_pipe_t *p, int32_t ui)
{
    reload_ctx_t *c = malloc(sizeof *c);
    const char *user = vg_vocab_id(&p->hist.users, ui); /* loop thread: no lock needed */
    int rc = c ? 0 : VG_ENOMEM;
    if (c) {
        *c = (reload_ctx_t){p, ui, p->hist.u[ui].gen};
        rc = vg_store_read_user(p->store, user, strlen(user), on_reload_rows, on_reload_done, c);
    }
    if (rc) { /* scored from its new events alone rather than never */
        vg_log(VG_LOG_ERROR, "cannot read user %s back from Redis: %s", user, vg_strerror(rc));
        free(c);
        vg_hist_wrlock(&p->hist);
        vg_hist_reload_done(&p->hist, ui);
        vg_hist_unsure(&p->hist, ui);
        vg_hist_unlock(&p->hist);
    }
}

/* Users (from a partition's set or vaegan:users) pulled into the mirror,
 * slot >= 0: counted as that partition's.  Users erased since are left
 * out.  Returns how many are read back. */
static size_t pull_users(vg_pipe_t *p, int slot, const char *const *users, const size_t *lens, const double *ts,
                         size_t n)
{
    int32_t *reload = malloc((n ? n : 1) * sizeof *reload);
    size_t nr = 0;
    int rc = reload ? 0 : VG_ENOMEM;
    vg_hist_wrlock(&p->hist);
    for (size_t k = 0; k < n && rc == 0; k++) {
        int32_t ui;
        if (lens[k] == 0 || lens[k] > VG_ID_MAX || vg_forget_refuses(&p->forget, users[k], lens[k], ts[k]))
            continue;
        int r = vg_hist_pull(&p->hist, users[k], lens[k], ts[k], slot < 0, &ui); /* a warm-up trusts no one */
        if (r < 0)
            rc = r;
        else if (slot >= 0 && !vg_hist_owned(&p->hist, ui))
            p->hist.u[ui].part = (uint16_t)(slot + 1);
        if (r == VG_HIST_RELOAD)
            reload[nr++] = ui;
    }
    vg_hist_unlock(&p->hist);
    if (rc)
        vg_log(VG_LOG_ERROR, "history mirror: %s", vg_strerror(rc));
    for (size_t k = 0; k < nr; k++)
        vg_own_reload(p, reload[k]);
    free(reload);
    return nr;
}

/* ---- partitions ------------------------------------------------------------------ */

int vg_own_slot(vg_own_t *o, int32_t topic, int32_t partition)
{
    if (o->last < o->n_slots && o->slot[o->last].topic == topic && o->slot[o->last].partition == partition)
        return o->last;
    for (int k = 0; k < o->n_slots; k++)
        if (o->slot[k].topic == topic && o->slot[k].partition == partition)
            return o->last = k;
    const char *name = o->p->kafka ? vg_kafka_topic_name(o->p->kafka, topic) : NULL;
    if (!name)
        return -1;
    if (o->n_slots == VG_HIST_PARTS) {
        if (!o->slots_full_logged)
            vg_log(VG_LOG_ERROR, "more than %d partitions: the users of %s:%d and further ones are owned by no one "
                   "here", VG_HIST_PARTS, name, (int)partition);
        o->slots_full_logged = 1;
        return -1;
    }
    vg_own_slot_t *s = &o->slot[o->n_slots];
    int len = snprintf(s->name, sizeof s->name, "%s:%d", name, (int)partition);
    if (len < 0 || (size_t)len >= sizeof s->name)
        return -1;
    s->topic = topic;
    s->partition = partition;
    s->name_len = (size_t)len;
    return o->last = o->n_slots++;
}

typedef struct warm_ctx {
    vg_own_t *o;
    int slot;
} warm_ctx_t;

static void on_warm_rows(void *ud, int k, const char *const *users, const size_t *lens, const double *ts, size_t n)
{
    (void)k;
    warm_ctx_t *c = ud;
    if (!c->o->p->hist.part_on[c->slot]) /* revoked meanwhile */
        return;
    size_t nr = pull_users(c->o->p, c->slot, users, lens, ts, n);
    vg_metric_inc(c->o->m_warmed, (double)nr);
    vg_log(VG_LOG_INFO, "partition %s: %zu recent users, %zu read back from Redis", c->o->slot[c->slot].name, n, nr);
}

static void on_warm_done(void *ud, int status)
{
    warm_ctx_t *c = ud;
    if (status && status != VG_EAGAIN)
        vg_log(VG_LOG_ERROR, "reading the recent users of partition %s: %s; they are read back as their events "
               "come", c->o->slot[c->slot].name, vg_strerror(status));
    free(c);
}

/* Reads back the users of slot's set, at most max (0: all). */
static void warm(vg_own_t *o, int slot, size_t max)
{
    warm_ctx_t *c = malloc(sizeof *c);
    vg_own_slot_t *s = &o->slot[slot];
    int rc = c ? 0 : VG_ENOMEM;
    if (c) {
        *c = (warm_ctx_t){o, slot};
        rc = vg_store_read_part(o->p->store, s->name, s->name_len, max, on_warm_rows, on_warm_done, c);
    }
    if (rc) {
        vg_log(VG_LOG_ERROR, "cannot read the recent users of partition %s: %s", s->name, vg_strerror(rc));
        free(c);
    }
}

/* Drops the live users that are not owned (slot -1) or of that slot, in
 * chunks; returns how many left memory. */
static uint64_t drop_users(vg_own_t *o, int slot)
{
    vg_pipe_t *p = o->p;
    vg_hist_t *h = &p->hist;
    int32_t gone[DROP_CHUNK];
    uint64_t total = 0;
    for (int32_t from = 0; from < h->users.n;) {
        int n = 0, rc = 0;
        vg_hist_wrlock(h);
        for (; from < h->users.n && n < DROP_CHUNK && rc >= 0; from++) {
            if (from >= h->u_cap || !h->u[from].live ||
                (slot >= 0 ? h->u[from].part != slot + 1 : vg_hist_owned(h, from)))
                continue;
            rc = vg_hist_drop(h, from);
            if (rc == 1)
                gone[n++] = from;
        }
        int users = h->live_users;
        vg_hist_unlock(h);
        vg_own_gone(p, gone, n);
        vg_metric_set(p->m_users, users);
        total += (uint64_t)n;
        if (rc < 0) {
            vg_log(VG_LOG_ERROR, "history mirror: %s", vg_strerror(rc));
            break;
        }
    }
    vg_metric_inc(o->m_dropped, (double)total);
    return total;
}

void vg_own_assigned(vg_own_t *o, const vg_kafka_lag_t *a, int n)
{
    if (!o->on)
        return;
    uint8_t now[VG_HIST_PARTS] = {0};
    for (int k = 0; k < n; k++) {
        int s = vg_own_slot(o, a[k].topic_id, a[k].partition);
        if (s >= 0)
            now[s] = 1;
    }
    vg_hist_t *h = &o->p->hist;
    int assigned = 0;
    for (int s = 0; s < o->n_slots; s++)
        assigned += now[s];
    /* each assigned partition's share of the memory bound: they fill it together */
    size_t share = h->lim.max_users > 0 && assigned ? ((size_t)h->lim.max_users + assigned - 1) / assigned : 0;
    for (int s = 0; s < o->n_slots; s++) {
        if (now[s] == h->part_on[s])
            continue;
        vg_hist_wrlock(h); /* the scorer reads part_on under the lock */
        h->part_on[s] = now[s];
        vg_hist_unlock(h);
        if (now[s]) {
            warm(o, s, share);
        } else {
            uint64_t gone = o->leading ? 0 : drop_users(o, s);
            vg_log(VG_LOG_INFO, "partition %s went to another instance: %llu of its users left memory%s",
                   o->slot[s].name, (unsigned long long)gone, o->leading ? " (the leader keeps them to train)" : "");
        }
    }
}

/* ---- the leader's tail ---------------------------------------------------------- */

typedef struct tail_ctx {
    vg_own_t *o;
    unsigned gen; /* o->tail_gen when asked: the cursors were reset since when it differs */
    int more;     /* a shard has more to read at once */
    size_t read;
} tail_ctx_t;

static void on_tail_rows(void *ud, int k, const char *const *users, const size_t *lens, const double *ts, size_t n)
{
    tail_ctx_t *c = ud;
    vg_own_t *o = c->o;
    if (k < 0 || k >= VG_STORE_USER_SHARDS || c->gen != o->tail_gen)
        return;
    int more;
    size_t take = vg_store_since_past(&o->since[k], ts, n, TAIL_PAGE, &more);
    c->more |= more;
    if (o->leading)
        c->read += pull_users(o->p, -1, users, lens, ts, take);
}

static void tail(vg_own_t *o);

static void on_tail_done(void *ud, int status)
{
    tail_ctx_t *c = ud;
    vg_own_t *o = c->o;
    o->tailing = 0;
    if (status == VG_EAGAIN) {
        free(c);
        return;
    }
    if (status)
        vg_log(VG_LOG_WARN, "the leader's tail of vaegan:users: %s; tried again", vg_strerror(status));
    vg_metric_inc(o->m_tailed, (double)c->read);
    int more = (status == 0 && c->more) || c->gen != o->tail_gen; /* reset meanwhile: from the start at once */
    free(c);
    if (more && o->leading)
        tail(o);
}

static void tail(vg_own_t *o)
{
    tail_ctx_t *c = malloc(sizeof *c);
    if (!c)
        return;
    *c = (tail_ctx_t){o, o->tail_gen, 0, 0};
    if (vg_store_read_users_since(o->p->store, o->since, TAIL_PAGE, on_tail_rows, on_tail_done, c)) {
        free(c);
        return;
    }
    o->tailing = 1;
}

/* The tail reads every user again from the start (at election, and every
 * SWEEP_TICKS: histories written with events older than the cursor). */
static void tail_from_start(vg_own_t *o)
{
    o->tail_gen++;
    for (int k = 0; k < VG_STORE_USER_SHARDS; k++)
        o->since[k] = (vg_store_since_t){-INFINITY, VG_SINCE_FROM};
    if (!o->tailing)
        tail(o);
}

/* The sets of this daemon's partitions that grew keep their most recent
 * history.max_users users, all that any warm-up reads: they stay bounded
 * while users come and go (vaegan:users itself is DESIGN.md's, uncapped). */
static void trim_parts(vg_own_t *o)
{
    const vg_hist_t *h = &o->p->hist;
    for (int s = 0; s < o->n_slots; s++) {
        if (!h->part_on[s] || !o->slot[s].added || h->lim.max_users <= 0) /* 0: no bound, every user is warmed */
            continue;
        int rc = vg_store_part_trim(o->p->store, o->slot[s].name, o->slot[s].name_len, (size_t)h->lim.max_users,
                                    NULL, NULL);
        if (rc)
            vg_log(VG_LOG_ERROR, "cannot trim the recent users of partition %s: %s; tried again", o->slot[s].name,
                   vg_strerror(rc));
        else
            o->slot[s].added = 0;
    }
}

static void on_timer(uv_timer_t *t)
{
    vg_own_t *o = t->data;
    vg_hist_t *h = &o->p->hist;
    int owned = 0;
    for (int32_t u = 0; u < h->users.n && u < h->u_cap; u++) /* the loop thread is the writer: no lock */
        owned += h->u[u].live && vg_hist_owned(h, u);
    vg_metric_set(o->m_owned, owned);
    if (o->p->stopping || !o->p->redis_up)
        return;
    if (o->leading && ++o->ticks % SWEEP_TICKS == 0)
        tail_from_start(o);
    else if (o->leading && !o->tailing)
        tail(o);
    trim_parts(o);
}

void vg_own_lead(vg_own_t *o, int leading)
{
    if (!o->on || leading == o->leading)
        return;
    o->leading = leading;
    if (leading) {
        vg_hist_wrlock(&o->p->hist); /* its own counts are every user's now (the tail) */
        vg_hist_set_leader_pop(&o->p->hist, NULL, 0);
        vg_hist_unlock(&o->p->hist);
        o->ticks = 0;
        tail_from_start(o); /* every user once: the histories it did not see move on */
        return;
    }
    uint64_t gone = drop_users(o, -1);
    vg_log(VG_LOG_INFO, "no longer leading: %llu users this instance does not own left memory",
           (unsigned long long)gone);
}

/* ---- set-up ---------------------------------------------------------------------- */

int vg_own_share(vg_own_t *o, vg_pipe_t *p)
{
    o->p = p;
    o->on = 1;
    vg_hist_wrlock(&p->hist); /* the scorer runs already */
    p->hist.shared = 1;
    vg_hist_unlock(&p->hist);
    static const struct {
        const char *name, *help;
        int type;
    } M[] = {
        {"vaegan_users_owned", "Users in memory whose partition is assigned here (the background refresh's)",
         VG_METRIC_GAUGE},
        {"vaegan_users_warmed_total", "Users read back from Redis when their partition was assigned here",
         VG_METRIC_COUNTER},
        {"vaegan_users_dropped_total",
         "Users that left memory because this instance no longer owns them (their partition went to another "
         "instance, or it stopped leading)",
         VG_METRIC_COUNTER},
        {"vaegan_users_tailed_total", "Users the leader read back because their history moved on elsewhere",
         VG_METRIC_COUNTER},
    };
    vg_metric_t **out[] = {&o->m_owned, &o->m_warmed, &o->m_dropped, &o->m_tailed};
    for (size_t k = 0; k < sizeof M / sizeof *M; k++)
        if (!(*out[k] = vg_metrics_add(p->metrics, M[k].name, M[k].help, M[k].type, NULL, 0)))
            return VG_ENOMEM;
    uv_timer_init(&p->loop, &o->timer);
    o->timer.data = o;
    o->timer_open = 1;
    uv_timer_start(&o->timer, on_timer, TAIL_MS, TAIL_MS);
    return 0;
}

void vg_own_close(vg_own_t *o)
{
    if (o->timer_open)
        uv_close((uv_handle_t *)&o->timer, NULL);
    o->timer_open = 0;
    o->leading = 0;
}
