/*
 * scorer.c — the scorer thread (see scorer.h).
 *
 * Invariants: a user is in the mark queue at most once (marked[u]); the flag
 * is cleared when the scorer takes the user, so an event acknowledged while
 * the user is being scored marks it again and the later list wins (one
 * scorer thread, lists delivered in order).  Everything under `mu` is
 * touched for microseconds; scoring runs without any lock but the mirror's
 * read lock while its rows are copied.  Lock order: the mirror's lock is
 * never taken while holding `mu`, and vg_scorer_mark() must not be called
 * while holding the mirror's lock.
 */
#include "daemon/scorer.h"

#define NO_MODEL (-2) /* last_step of a list ranked by popularity */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errors.h"
#include "model/blas.h"

/* ---- the thread ------------------------------------------------------------ */

struct vg_scorer {
    vg_scorer_cfg_t cfg;
    uv_async_t async;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    int stop;                   /* under mu */
    /* marks (under mu) */
    int32_t *queue;
    size_t qhead, qn, qcap;     /* ring buffer */
    uint8_t *marked;
    double *t_mark;
    int mark_cap;
    vg_snap_t *snap;            /* current model (under mu) */
    /* results (under mu) */
    vg_list_t *ready;
    size_t n_ready, cap_ready;
    long outstanding;           /* handed over, not released (under mu) */
    /* scorer thread only */
    int64_t *last_step;
    double *last_time;
    int last_cap, cursor;
};

static int ensure_marks(vg_scorer_t *sc, int users)
{
    if (users <= sc->mark_cap)
        return 0;
    int cap = sc->mark_cap ? sc->mark_cap : 1024;
    while (cap < users)
        cap *= 2;
    uint8_t *m = realloc(sc->marked, (size_t)cap);
    if (!m)
        return VG_ENOMEM;
    sc->marked = m;
    double *t = realloc(sc->t_mark, (size_t)cap * sizeof *t);
    if (!t)
        return VG_ENOMEM;
    sc->t_mark = t;
    memset(sc->marked + sc->mark_cap, 0, (size_t)(cap - sc->mark_cap));
    sc->mark_cap = cap;
    return 0;
}

void vg_scorer_mark(vg_scorer_t *sc, int32_t user)
{
    pthread_mutex_lock(&sc->mu);
    if (ensure_marks(sc, user + 1) == 0 && !sc->marked[user]) {
        if (sc->qn == sc->qcap) { /* grow the ring, unrolling it */
            size_t cap = sc->qcap ? sc->qcap * 2 : 1024;
            int32_t *q = malloc(cap * sizeof *q);
            if (!q)
                goto out;
            for (size_t k = 0; k < sc->qn; k++)
                q[k] = sc->queue[(sc->qhead + k) % sc->qcap];
            free(sc->queue);
            sc->queue = q;
            sc->qcap = cap;
            sc->qhead = 0;
        }
        sc->queue[(sc->qhead + sc->qn++) % sc->qcap] = user;
        sc->marked[user] = 1;
        sc->t_mark[user] = vg_mono_s();
        pthread_cond_signal(&sc->cv);
    }
out:
    pthread_mutex_unlock(&sc->mu);
}

void vg_scorer_forget(vg_scorer_t *sc, int32_t user)
{
    pthread_mutex_lock(&sc->mu);
    if (user < sc->mark_cap && sc->marked[user]) { /* take it out of the ring, keeping the order */
        size_t w = 0;
        for (size_t k = 0; k < sc->qn; k++) {
            int32_t u = sc->queue[(sc->qhead + k) % sc->qcap];
            if (u != user)
                sc->queue[(sc->qhead + w++) % sc->qcap] = u;
        }
        sc->qn = w;
        sc->marked[user] = 0;
    }
    pthread_mutex_unlock(&sc->mu);
}

void vg_scorer_mark_all(vg_scorer_t *sc)
{
    /* the background sweep rebuilds every user whose list this process has
     * not written yet: reset what the sweep remembers */
    pthread_mutex_lock(&sc->mu);
    sc->cursor = -1; /* read by the thread under mu: start over */
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

void vg_scorer_set_model(vg_scorer_t *sc, vg_snap_t *snap)
{
    pthread_mutex_lock(&sc->mu);
    vg_snap_t *old = sc->snap;
    sc->snap = snap;
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    vg_snap_unref(old);
}

void vg_scorer_release(vg_scorer_t *sc, int n)
{
    pthread_mutex_lock(&sc->mu);
    sc->outstanding -= n;
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

static int ensure_last(vg_scorer_t *sc, int users)
{
    if (users <= sc->last_cap)
        return 0;
    int cap = sc->last_cap ? sc->last_cap : 1024;
    while (cap < users)
        cap *= 2;
    int64_t *s = realloc(sc->last_step, (size_t)cap * sizeof *s);
    if (!s)
        return VG_ENOMEM;
    sc->last_step = s;
    double *t = realloc(sc->last_time, (size_t)cap * sizeof *t);
    if (!t)
        return VG_ENOMEM;
    sc->last_time = t;
    for (int u = sc->last_cap; u < cap; u++) {
        sc->last_step[u] = -1;
        sc->last_time[u] = -1e300;
    }
    sc->last_cap = cap;
    return 0;
}

/* Background candidates (scorer thread, mu held): users never written by this
 * process, or written from an older model more than refresh_s ago. */
static int pick_stale(vg_scorer_t *sc, int users, int64_t step, double now, int32_t *sel, int max)
{
    if (ensure_last(sc, users) || users == 0)
        return 0;
    if (sc->cursor < 0) { /* mark_all: forget what was written */
        for (int u = 0; u < sc->last_cap; u++) {
            sc->last_step[u] = -1;
            sc->last_time[u] = -1e300;
        }
        sc->cursor = 0;
    }
    int n = 0;
    for (int k = 0; k < users && n < max; k++) {
        int u = (sc->cursor + k) % users;
        int never = sc->last_step[u] == -1 && sc->last_time[u] < -1e299;
        int popular = sc->last_step[u] == NO_MODEL && step != NO_MODEL; /* the first model reaches every list */
        if (never || popular || (sc->last_step[u] != step && now - sc->last_time[u] >= sc->cfg.refresh_s))
            if (!sc->marked || u >= sc->mark_cap || !sc->marked[u])
                sel[n++] = u;
        if (n == max)
            sc->cursor = (u + 1) % users;
    }
    return n;
}

static void *scorer_main(void *arg)
{
    vg_scorer_t *sc = arg;
    int B = sc->cfg.batch;
    vg_omp_set_threads(1);
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    double *tm = malloc((size_t)B * sizeof *tm);
    vg_list_t *lists = malloc((size_t)B * sizeof *lists);
    vg_ranker_t *ranker = vg_ranker_new();
    if (!sel || !tm || !lists || !ranker)
        abort(); /* at start, a few KiB: nothing sensible to do */
    pthread_mutex_lock(&sc->mu);
    while (!sc->stop) {
        if (sc->outstanding > sc->cfg.max_outstanding) {
            pthread_cond_wait(&sc->cv, &sc->mu);
            continue;
        }
        int n = 0;
        while (n < B && sc->qn) {
            int32_t u = sc->queue[sc->qhead];
            sc->qhead = (sc->qhead + 1) % sc->qcap;
            sc->qn--;
            sc->marked[u] = 0;
            tm[n] = sc->t_mark[u];
            sel[n++] = u;
        }
        int64_t step = sc->snap ? sc->snap->m.step : NO_MODEL;
        double now = vg_mono_s();
        if (n == 0) {
            /* lock order: never the mirror's lock while holding mu (the loop
             * thread marks users under neither, see daemon.c) */
            pthread_mutex_unlock(&sc->mu);
            vg_hist_rdlock(sc->cfg.hist);
            int users = sc->cfg.hist->users.n;
            vg_hist_unlock(sc->cfg.hist);
            pthread_mutex_lock(&sc->mu);
            if (sc->qn) /* marks arrived meanwhile: they go first */
                continue;
            n = pick_stale(sc, users, step, now, sel, B);
            for (int k = 0; k < n; k++)
                tm[k] = 0;
        }
        if (n == 0) {
            struct timespec until = vg_deadline(1);
            pthread_cond_timedwait(&sc->cv, &sc->mu, &until);
            continue;
        }
        vg_snap_t *snap = vg_snap_ref(sc->snap);
        pthread_mutex_unlock(&sc->mu);

        int rc = vg_rank_users(sc->cfg.hist, snap, ranker, sel, n, sc->cfg.top_n, lists);
        vg_snap_unref(snap);
        pthread_mutex_lock(&sc->mu);
        if (rc) /* out of memory: try these users again later */
            continue;
        if (ensure_last(sc, sel[n - 1] + 1) == 0)
            for (int k = 0; k < n; k++)
                if (sel[k] < sc->last_cap) {
                    sc->last_step[sel[k]] = step;
                    sc->last_time[sel[k]] = now;
                }
        if (sc->n_ready + (size_t)n > sc->cap_ready) {
            size_t cap = (sc->n_ready + (size_t)n) * 2;
            vg_list_t *r = realloc(sc->ready, cap * sizeof *r);
            if (!r) {
                for (int k = 0; k < n; k++)
                    vg_list_free(&lists[k]);
                continue;
            }
            sc->ready = r;
            sc->cap_ready = cap;
        }
        for (int k = 0; k < n; k++) {
            lists[k].t_mark = tm[k];
            sc->ready[sc->n_ready++] = lists[k];
        }
        sc->outstanding += n;
        uv_async_send(&sc->async);
    }
    pthread_mutex_unlock(&sc->mu);
    vg_ranker_free(ranker);
    free(sel);
    free(tm);
    free(lists);
    return NULL;
}

/* Loop thread: hand the finished lists to the writer. */
static void on_async(uv_async_t *a)
{
    vg_scorer_t *sc = a->data;
    pthread_mutex_lock(&sc->mu);
    vg_list_t *r = sc->ready;
    size_t n = sc->n_ready;
    sc->ready = NULL;
    sc->n_ready = sc->cap_ready = 0;
    pthread_mutex_unlock(&sc->mu);
    if (n)
        sc->cfg.on_lists(sc->cfg.ud, r, (int)n);
    for (size_t k = 0; k < n; k++)
        vg_list_free(&r[k]);
    free(r);
}

static void on_closed(uv_handle_t *h);

int vg_scorer_start(vg_scorer_t **out, uv_loop_t *loop, const vg_scorer_cfg_t *cfg)
{
    vg_scorer_t *sc = calloc(1, sizeof *sc);
    if (!sc)
        return VG_ENOMEM;
    sc->cfg = *cfg;
    sc->snap = cfg->initial; /* before the thread starts: no list is ranked without it */
    if (sc->cfg.batch < 1)
        sc->cfg.batch = 1;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cv, NULL);
    uv_async_init(loop, &sc->async, on_async);
    sc->async.data = sc;
    if (pthread_create(&sc->th, NULL, scorer_main, sc)) {
        sc->snap = NULL; /* the caller keeps its reference on failure */
        uv_close((uv_handle_t *)&sc->async, on_closed);
        return VG_ENOMEM;
    }
    sc->running = 1;
    *out = sc;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    vg_scorer_t *sc = h->data;
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->cv);
    free(sc);
}

void vg_scorer_stop(vg_scorer_t *sc)
{
    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    sc->stop = 1;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    if (sc->running)
        pthread_join(sc->th, NULL);
    for (size_t k = 0; k < sc->n_ready; k++)
        vg_list_free(&sc->ready[k]);
    free(sc->ready);
    free(sc->queue);
    free(sc->marked);
    free(sc->t_mark);
    free(sc->last_step);
    free(sc->last_time);
    vg_snap_unref(sc->snap);
    uv_close((uv_handle_t *)&sc->async, on_closed);
}
