/*
 * scorer.c — the scorer threads (see scorer.h).
 *
 * Invariants: a user is in the mark queue at most once (marked[u]), so the
 * queue is bounded by the users, whatever the click rate; the flag is
 * cleared when a thread takes the user, so an event acknowledged while the
 * user is being ranked marks it again.  Every mark moves the user's version
 * (ver[u] = ++seq); a list carries the version its thread took, and the
 * loop thread delivers a list only if no list of a newer version (or of the
 * same version and a newer model) was delivered before it: with several
 * threads a later list may finish first, and an older one never replaces
 * it.  A background pick is recorded when taken, so threads do not pick
 * the same users; a failed ranking gives its users back.  Everything under `mu` is
 * touched for microseconds; scoring runs without any lock but the mirror's
 * read lock while its rows are copied.  Lock order: the mirror's lock is
 * never taken while holding `mu`, and vg_scorer_mark() must not be called
 * while holding the mirror's lock.
 */
#include "daemon/scorer.h"

#define NO_MODEL (-2) /* last_step of a list ranked by popularity */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errors.h"
#include "model/blas.h"

/* ---- the threads ----------------------------------------------------------- */

struct vg_scorer {
    vg_scorer_cfg_t cfg;
    uv_async_t async;
    pthread_t *th;
    int n_th;                   /* threads running */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                   /* under mu */
    /* marks (under mu) */
    int32_t *queue;
    size_t qhead, qn, qcap;     /* ring buffer */
    uint8_t *marked;
    double *t_mark;
    uint64_t *ver;              /* per user: the sequence of its latest mark */
    int mark_cap;
    uint64_t seq;
    vg_snap_t *snap;            /* current model (under mu) */
    /* results (under mu) */
    vg_list_t *ready;
    size_t n_ready, cap_ready;
    long outstanding;           /* handed over, not released (under mu) */
    /* the background sweep (under mu): what was taken for a list, when */
    int64_t *last_step;
    double *last_time;
    int last_cap, cursor;
    double stale_age;           /* the oldest refresh (not first) list of the last pick, 0 = none due */
    vg_ranker_stats_t work;     /* the rankers' stats summed over the threads (under mu) */
    /* loop thread only: the newest (ver, step) delivered per user, under its gen */
    uint64_t *d_ver;
    int64_t *d_step;
    uint32_t *d_gen;
    int d_cap;
};

/* Grows the arrays of *n elements (sizes[k] bytes each) in ptrs[] to hold
 * `need`, doubling from 1024; new bytes are zero.  Returns 0 or VG_ENOMEM
 * (the arrays that did grow stay valid; *n is unchanged). */
static int grow_arrays(void **ptrs[], const size_t *sizes, int n_arr, int *n, int need)
{
    if (need <= *n)
        return 0;
    int cap = *n ? *n : 1024;
    while (cap < need)
        cap *= 2;
    for (int k = 0; k < n_arr; k++) {
        char *p = realloc(*ptrs[k], (size_t)cap * sizes[k]);
        if (!p)
            return VG_ENOMEM;
        memset(p + (size_t)*n * sizes[k], 0, (size_t)(cap - *n) * sizes[k]);
        *ptrs[k] = p;
    }
    *n = cap;
    return 0;
}

static int ensure_marks(vg_scorer_t *sc, int users)
{
    void **p[] = {(void **)&sc->marked, (void **)&sc->t_mark, (void **)&sc->ver};
    const size_t z[] = {sizeof *sc->marked, sizeof *sc->t_mark, sizeof *sc->ver};
    return grow_arrays(p, z, 3, &sc->mark_cap, users);
}

/* Appends a user to the mark queue (mu held; the user is not in it). */
static void enqueue(vg_scorer_t *sc, int32_t user, double t)
{
    if (sc->qn == sc->qcap) { /* grow the ring, unrolling it */
        size_t cap = sc->qcap ? sc->qcap * 2 : 1024;
        int32_t *q = malloc(cap * sizeof *q);
        if (!q)
            return;
        for (size_t k = 0; k < sc->qn; k++)
            q[k] = sc->queue[(sc->qhead + k) % sc->qcap];
        free(sc->queue);
        sc->queue = q;
        sc->qcap = cap;
        sc->qhead = 0;
    }
    sc->queue[(sc->qhead + sc->qn++) % sc->qcap] = user;
    sc->marked[user] = 1;
    sc->t_mark[user] = t;
    pthread_cond_signal(&sc->cv);
}

void vg_scorer_mark(vg_scorer_t *sc, int32_t user)
{
    pthread_mutex_lock(&sc->mu);
    if (ensure_marks(sc, user + 1) == 0) {
        sc->ver[user] = ++sc->seq; /* the history moved: a list from before is superseded */
        if (!sc->marked[user])
            enqueue(sc, user, vg_mono_s());
    }
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
    sc->cursor = -1; /* read by the threads under mu: start over */
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

void vg_scorer_set_model(vg_scorer_t *sc, vg_snap_t *snap)
{
    pthread_mutex_lock(&sc->mu);
    vg_snap_t *old = sc->snap;
    sc->snap = snap;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    vg_snap_unref(old);
}

void vg_scorer_release(vg_scorer_t *sc, int n)
{
    pthread_mutex_lock(&sc->mu);
    sc->outstanding -= n;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

uint64_t vg_scorer_version(vg_scorer_t *sc, int32_t user)
{
    pthread_mutex_lock(&sc->mu);
    uint64_t v = user < sc->mark_cap ? sc->ver[user] : 0;
    pthread_mutex_unlock(&sc->mu);
    return v;
}

double vg_scorer_oldest_wait_s(vg_scorer_t *sc)
{
    pthread_mutex_lock(&sc->mu);
    double age = sc->qn ? vg_mono_s() - sc->t_mark[sc->queue[sc->qhead]] : 0;
    pthread_mutex_unlock(&sc->mu);
    return age;
}

void vg_scorer_work(vg_scorer_t *sc, vg_ranker_stats_t *out, char *path, size_t n)
{
    pthread_mutex_lock(&sc->mu);
    *out = sc->work;
    snprintf(path, n, "%s", sc->snap ? vg_fastw_path(sc->snap->fast) : "");
    pthread_mutex_unlock(&sc->mu);
}

double vg_scorer_stale_age_s(vg_scorer_t *sc)
{
    pthread_mutex_lock(&sc->mu);
    double age = sc->stale_age;
    pthread_mutex_unlock(&sc->mu);
    return age;
}

static int ensure_last(vg_scorer_t *sc, int users)
{
    int old = sc->last_cap;
    void **p[] = {(void **)&sc->last_step, (void **)&sc->last_time};
    const size_t z[] = {sizeof *sc->last_step, sizeof *sc->last_time};
    if (grow_arrays(p, z, 2, &sc->last_cap, users))
        return VG_ENOMEM;
    for (int u = old; u < sc->last_cap; u++) {
        sc->last_step[u] = -1;
        sc->last_time[u] = -1e300;
    }
    return 0;
}

/* Background candidates (mu held): users never taken by this process, or
 * taken with an older model more than refresh_s ago.  Recorded as taken at
 * once, so that other threads pass them by. */
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
    double age = 0;
    for (int k = 0; k < users && n < max; k++) {
        int u = (sc->cursor + k) % users;
        int never = sc->last_step[u] == -1 && sc->last_time[u] < -1e299;
        int popular = sc->last_step[u] == NO_MODEL && step != NO_MODEL; /* the first model reaches every list */
        int due = sc->last_step[u] != step && now - sc->last_time[u] >= sc->cfg.refresh_s;
        if ((never || popular || due) && (!sc->marked || u >= sc->mark_cap || !sc->marked[u])) {
            sel[n++] = u;
            if (due && !never && now - sc->last_time[u] > age)
                age = now - sc->last_time[u];
        }
        if (n == max)
            sc->cursor = (u + 1) % users;
    }
    sc->stale_age = age;
    return n;
}

/* Takes up to max users to rank (mu held; may drop and retake it): marked
 * users first, in order, else background refreshes.  tm[k] is the mark's
 * time (0: background), ver[k] the user's version. */
static int take_users(vg_scorer_t *sc, int32_t *sel, double *tm, uint64_t *ver, int max)
{
    int n = 0;
    while (n < max && sc->qn) {
        int32_t u = sc->queue[sc->qhead];
        sc->qhead = (sc->qhead + 1) % sc->qcap;
        sc->qn--;
        sc->marked[u] = 0;
        tm[n] = sc->t_mark[u];
        sel[n++] = u;
    }
    if (n == 0) {
        /* lock order: never the mirror's lock while holding mu (the loop
         * thread marks users under neither, see daemon.c) */
        pthread_mutex_unlock(&sc->mu);
        vg_hist_rdlock(sc->cfg.hist);
        int users = sc->cfg.hist->users.n;
        vg_hist_unlock(sc->cfg.hist);
        pthread_mutex_lock(&sc->mu);
        if (sc->stop)
            return 0;
        if (sc->qn) /* marks arrived meanwhile: they go first */
            return take_users(sc, sel, tm, ver, max);
        n = pick_stale(sc, users, sc->snap ? sc->snap->m.step : NO_MODEL, vg_mono_s(), sel, max);
        for (int k = 0; k < n; k++)
            tm[k] = 0;
    }
    int64_t step = sc->snap ? sc->snap->m.step : NO_MODEL;
    double now = vg_mono_s();
    int top = 0;
    for (int k = 0; k < n; k++)
        top = sel[k] > top ? sel[k] : top;
    if (n && ensure_last(sc, top + 1) == 0)
        for (int k = 0; k < n; k++)
            if (sel[k] < sc->last_cap) {
                sc->last_step[sel[k]] = step;
                sc->last_time[sel[k]] = now;
            }
    for (int k = 0; k < n; k++)
        ver[k] = sel[k] < sc->mark_cap ? sc->ver[sel[k]] : 0;
    return n;
}

/* Leaves out the background refreshes (tm 0) of users another daemon owns
 * (hist.h, vg_hist_owned; mu not held): only their own events re-rank them
 * here.  Returns how many stay. */
static int keep_owned(vg_hist_t *h, int32_t *sel, double *tm, uint64_t *ver, int n)
{
    int m = 0;
    vg_hist_rdlock(h);
    for (int k = 0; k < n; k++)
        if (!h->shared || tm[k] > 0 || (sel[k] < h->u_cap && vg_hist_owned(h, sel[k]))) {
            sel[m] = sel[k];
            tm[m] = tm[k];
            ver[m++] = ver[k];
        }
    vg_hist_unlock(h);
    return m;
}

/* Ranking failed (out of memory): marked users wait again, background ones
 * count as never taken (mu held). */
static void give_back(vg_scorer_t *sc, const int32_t *sel, const double *tm, int n)
{
    for (int k = 0; k < n; k++) {
        if (tm[k] > 0 && !sc->marked[sel[k]])
            enqueue(sc, sel[k], tm[k]);
        if (tm[k] == 0 && sel[k] < sc->last_cap) {
            sc->last_step[sel[k]] = -1;
            sc->last_time[sel[k]] = -1e300;
        }
    }
}

/* Hands finished lists to the loop thread (mu held).  Returns 0 or VG_ENOMEM. */
static int hand_over(vg_scorer_t *sc, vg_list_t *lists, const double *tm, const uint64_t *ver, int64_t step, int n)
{
    if (sc->n_ready + (size_t)n > sc->cap_ready) {
        size_t cap = (sc->n_ready + (size_t)n) * 2;
        vg_list_t *r = realloc(sc->ready, cap * sizeof *r);
        if (!r)
            return VG_ENOMEM;
        sc->ready = r;
        sc->cap_ready = cap;
    }
    for (int k = 0; k < n; k++) {
        lists[k].t_mark = tm[k];
        lists[k].ver = ver[k];
        lists[k].step = step;
        sc->ready[sc->n_ready++] = lists[k];
    }
    sc->outstanding += n;
    uv_async_send(&sc->async);
    return 0;
}

static void *scorer_main(void *arg)
{
    vg_scorer_t *sc = arg;
    int B = sc->cfg.batch;
    vg_omp_set_threads(1);
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    double *tm = malloc((size_t)B * sizeof *tm);
    uint64_t *ver = malloc((size_t)B * sizeof *ver);
    vg_list_t *lists = malloc((size_t)B * sizeof *lists);
    vg_ranker_t *ranker = vg_ranker_new();
    vg_ranker_stats_t seen = {0}, now; /* this thread's ranker: what is summed into sc->work so far */
    if (!sel || !tm || !ver || !lists || !ranker)
        abort(); /* at start, a few KiB: nothing sensible to do */
    pthread_mutex_lock(&sc->mu);
    while (!sc->stop) {
        if (sc->outstanding > sc->cfg.max_outstanding) {
            pthread_cond_wait(&sc->cv, &sc->mu);
            continue;
        }
        int n = take_users(sc, sel, tm, ver, B);
        if (n == 0 || sc->stop) {
            if (n)
                give_back(sc, sel, tm, n);
            struct timespec until = vg_deadline(1);
            if (!sc->stop)
                pthread_cond_timedwait(&sc->cv, &sc->mu, &until);
            continue;
        }
        vg_snap_t *snap = vg_snap_ref(sc->snap);
        int64_t step = snap ? snap->m.step : NO_MODEL;
        pthread_mutex_unlock(&sc->mu);
        if ((n = keep_owned(sc->cfg.hist, sel, tm, ver, n)) == 0) {
            vg_snap_unref(snap);
            pthread_mutex_lock(&sc->mu);
            continue;
        }

        int rc = vg_rank_users(sc->cfg.hist, snap, ranker, sel, n, sc->cfg.top_n, lists);
        vg_snap_unref(snap);
        vg_ranker_stats(ranker, &now);
        pthread_mutex_lock(&sc->mu);
        sc->work.product_s += now.product_s - seen.product_s;
        sc->work.select_s += now.select_s - seen.select_s;
        sc->work.users += now.users - seen.users;
        sc->work.calls += now.calls - seen.calls;
        seen = now;
        if (rc == 0 && (rc = hand_over(sc, lists, tm, ver, step, n)))
            for (int k = 0; k < n; k++)
                vg_list_free(&lists[k]);
        if (rc) /* out of memory: these users again later */
            give_back(sc, sel, tm, n);
    }
    pthread_mutex_unlock(&sc->mu);
    vg_ranker_free(ranker);
    free(sel);
    free(tm);
    free(ver);
    free(lists);
    return NULL;
}

/* Loop thread: is l older than a list already delivered for its user (an
 * older history version, or the same with an older model)?  Records l as the
 * newest when it is not. */
static int superseded(vg_scorer_t *sc, const vg_list_t *l)
{
    int old = sc->d_cap;
    void **p[] = {(void **)&sc->d_ver, (void **)&sc->d_step, (void **)&sc->d_gen};
    const size_t z[] = {sizeof *sc->d_ver, sizeof *sc->d_step, sizeof *sc->d_gen};
    if (grow_arrays(p, z, 3, &sc->d_cap, l->user + 1))
        return 0; /* out of memory: deliver (the writer keeps Redis' order) */
    for (int u = old; u < sc->d_cap; u++)
        sc->d_step[u] = INT64_MIN;
    int32_t u = l->user;
    if (sc->d_gen[u] != l->gen) { /* the index passed to another user: start over */
        sc->d_gen[u] = l->gen;
        sc->d_ver[u] = 0;
        sc->d_step[u] = INT64_MIN;
    }
    if (l->ver < sc->d_ver[u] || (l->ver == sc->d_ver[u] && l->step < sc->d_step[u]))
        return 1;
    sc->d_ver[u] = l->ver;
    sc->d_step[u] = l->step;
    return 0;
}

/* Loop thread: hand the finished lists to the writer, but for those a newer
 * list of the same user overtook (several threads rank at once). */
static void on_async(uv_async_t *a)
{
    vg_scorer_t *sc = a->data;
    pthread_mutex_lock(&sc->mu);
    vg_list_t *r = sc->ready;
    size_t n = sc->n_ready;
    sc->ready = NULL;
    sc->n_ready = sc->cap_ready = 0;
    pthread_mutex_unlock(&sc->mu);
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        if (superseded(sc, &r[k]))
            vg_list_free(&r[k]);
        else
            r[kept++] = r[k];
    }
    if (kept < n)
        vg_scorer_release(sc, (int)(n - kept));
    if (kept)
        sc->cfg.on_lists(sc->cfg.ud, r, (int)kept);
    for (size_t k = 0; k < kept; k++)
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
    if (sc->cfg.batch < 1)
        sc->cfg.batch = 1;
    if (sc->cfg.threads < 1)
        sc->cfg.threads = 1;
    if (!(sc->th = calloc((size_t)sc->cfg.threads, sizeof *sc->th))) {
        free(sc);
        return VG_ENOMEM;
    }
    sc->snap = cfg->initial; /* before the threads start: no list is ranked without it */
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cv, NULL);
    uv_async_init(loop, &sc->async, on_async);
    sc->async.data = sc;
    for (int t = 0; t < sc->cfg.threads; t++)
        if (pthread_create(&sc->th[t], NULL, scorer_main, sc) == 0)
            sc->n_th++;
    if (sc->n_th == 0) {
        sc->snap = NULL; /* the caller keeps its reference on failure */
        uv_close((uv_handle_t *)&sc->async, on_closed);
        return VG_ENOMEM;
    }
    *out = sc;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    vg_scorer_t *sc = h->data;
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->cv);
    free(sc->th);
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
    for (int t = 0; t < sc->n_th; t++)
        pthread_join(sc->th[t], NULL);
    for (size_t k = 0; k < sc->n_ready; k++)
        vg_list_free(&sc->ready[k]);
    free(sc->ready);
    free(sc->queue);
    free(sc->marked);
    free(sc->t_mark);
    free(sc->ver);
    free(sc->last_step);
    free(sc->last_time);
    free(sc->d_ver);
    free(sc->d_step);
    free(sc->d_gen);
    vg_snap_unref(sc->snap);
    uv_close((uv_handle_t *)&sc->async, on_closed);
}
