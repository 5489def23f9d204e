/*
 * trainer.c — the background trainer thread (see trainer.h).  The model's
 * rows follow the mirror's items as checkpoint.h describes.
 *
 * The thread sleeps until the next round (interval from the last round's
 * start, or enough new events) or the next save attempt (save_due),
 * whichever comes first; in backlog mode (the flag `backlog`, written by the
 * loop thread only) the interval is backlog_interval_ms and a round one
 * step.  A failed save moves save_due by the backoff `retry_s` only, a
 * successful one by the full checkpoint interval.
 *
 * Snapshots: the trainer keeps a reference to the last two it published, so
 * that the older one, once no scorer reads it any more, is remade into the
 * next (rank.h vg_snap_remake) instead of freed and allocated again.
 */
#define _GNU_SOURCE /* syscall(SYS_gettid): per-thread nice on Linux */
#include "daemon/trainer.h"

#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errors.h"
#include "daemon/checkpoint.h"
#include "daemon/log.h"
#include "model/blas.h"

struct vg_trainer {
    vg_trainer_cfg_t cfg;
    vg_model_t model;
    int have_model;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                /* under mu */
    atomic_long new_events;
    atomic_int backlog;      /* 1 while stepping back (vg_trainer_lag) */
    atomic_int held;         /* 1: no rounds, no periodic saves (vg_trainer_hold) */
    atomic_int blob_busy[VG_TRAIN_BLOBS]; /* 1: on_blob's buffer of the kind is the callee's */
    void *blob[VG_TRAIN_BLOBS];           /* the buffers while not busy (reused) */
    size_t blob_cap[VG_TRAIN_BLOBS];
    double publish_due;      /* vg_mono_s() of the next snapshot to on_blob */
    vg_model_t *adopt;       /* under mu: a model to continue from (vg_trainer_adopt) */
    double backlog_since;    /* loop thread: vg_mono_s() when the backlog mode began */
    uint64_t users_trained;
    uint64_t rounds;            /* rounds completed (vg_train_info_t.round) */
    double save_due;         /* vg_mono_s() of the next save attempt (INFINITY: none) */
    double retry_s;          /* the last backoff after a failed save, 0 after a success */
    int save_failures;       /* failed saves since the last success */
    char kernel_why[160];    /* the last snapshot's kernel (logged when it changes) */
    vg_metric_t *m_ckpt_failures; /* vaegan_checkpoint_failures_total, or NULL */
    vg_metric_t *m_backlog;       /* vaegan_train_backlog, or NULL */
    vg_snap_t *prev, *spare;      /* the trainer's own references to the last two snapshots it
                                     published: spare is remade into the next once nobody else
                                     holds it (vg_snap_remake), prev becomes the spare then */
};

#define CKPT_RETRY_FIRST_S 10.0 /* first retry after a failed save (at most the interval) */

void vg_trainer_events(vg_trainer_t *t, int n)
{
    long min = t->cfg.min_new_events, was = atomic_fetch_add(&t->new_events, n);
    if (min > 0 && was < min && was + n >= min) { /* once per crossing: the thread checks the count itself */
        pthread_mutex_lock(&t->mu);
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
}

void vg_trainer_blob_done(vg_trainer_t *t, int kind, void *buf, size_t cap)
{
    t->blob[kind] = buf; /* the thread reads them only once it sees blob_busy 0 */
    t->blob_cap[kind] = cap;
    atomic_store(&t->blob_busy[kind], 0);
}

void vg_trainer_adopt(vg_trainer_t *t, vg_model_t *m)
{
    pthread_mutex_lock(&t->mu);
    if (t->adopt) { /* a newer one replaces one not yet taken */
        vg_model_close(t->adopt);
        free(t->adopt);
    }
    t->adopt = m;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* The trainer thread, between rounds: continue from an adopted model if it
 * is ahead. */
static void take_adopted(vg_trainer_t *t)
{
    pthread_mutex_lock(&t->mu);
    vg_model_t *m = t->adopt;
    t->adopt = NULL;
    pthread_mutex_unlock(&t->mu);
    if (!m)
        return;
    if (t->have_model && t->model.step >= m->step) {
        vg_log(VG_LOG_INFO, "trainer: the shared checkpoint (step %lld) is not ahead of this model (step %lld); "
               "continuing with this one", (long long)m->step, (long long)t->model.step);
        vg_model_close(m);
    } else {
        vg_log(VG_LOG_INFO, "trainer: continuing from the shared checkpoint: step %lld, %d items", (long long)m->step,
               m->n_items);
        if (t->have_model)
            vg_model_close(&t->model);
        t->model = *m;
        t->have_model = 1;
    }
    free(m);
}

void vg_trainer_hold(vg_trainer_t *t, int hold)
{
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->held, hold);
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* The model of the given kind to on_blob, unless its last buffer is still
 * out.  Returns 1 when handed out. */
static int hand_out(vg_trainer_t *t, int kind, vg_train_info_t *info)
{
    if (!t->cfg.on_blob || atomic_load(&t->blob_busy[kind]))
        return 0;
    char err[256];
    size_t len;
    int rc = vg_ckpt_name_rows(&t->model, t->cfg.hist); /* another daemon maps the rows by their ids */
    if (rc) {
        vg_log(VG_LOG_ERROR, "trainer: cannot name the model's items for the other instances: %s", vg_strerror(rc));
        return 0;
    }
    rc = kind == VG_TRAIN_SNAPSHOT
                 ? vg_model_save_weights_mem(&t->model, &t->blob[kind], &t->blob_cap[kind], &len, err, sizeof err)
                 : vg_model_save_mem(&t->model, &t->blob[kind], &t->blob_cap[kind], &len, err, sizeof err);
    if (rc == 0 && kind == VG_TRAIN_SNAPSHOT) { /* the followers rank by the leader's popularity (hist.h) */
        vg_hist_rdlock(t->cfg.hist);
        rc = vg_hist_pop_append(t->cfg.hist, t->model.n_items, &t->blob[kind], &t->blob_cap[kind], &len);
        vg_hist_unlock(t->cfg.hist);
        if (rc)
            snprintf(err, sizeof err, "popularity: %s", vg_strerror(rc));
    }
    if (rc) {
        vg_log(VG_LOG_ERROR, "trainer: cannot serialise the model for the other instances: %s", err);
        return 0;
    }
    info->published = kind == VG_TRAIN_SNAPSHOT;
    atomic_store(&t->blob_busy[kind], 1);
    void *buf = t->blob[kind];
    t->blob[kind] = NULL;
    t->cfg.on_blob(t->cfg.ud, kind, buf, t->blob_cap[kind], len, info);
    return 1;
}

void vg_trainer_lag(vg_trainer_t *t, double lag)
{
    int was = atomic_load(&t->backlog), lim = t->cfg.backlog_lag;
    int now = lim > 0 && (was ? lag >= lim / 2.0 : lag >= lim);
    if (now == was)
        return;
    if (now) {
        t->backlog_since = vg_mono_s();
        vg_log(VG_LOG_INFO, "trainer: stepping back while a backlog of %.0f messages drains (one step at most every "
               "%d ms)", lag, t->cfg.backlog_interval_ms);
    } else {
        vg_log(VG_LOG_INFO, "trainer: backlog drained in %.0f s (lag %.0f); normal rounds again",
               vg_mono_s() - t->backlog_since, lag);
    }
    if (t->m_backlog)
        vg_metric_set(t->m_backlog, now);
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->backlog, now);
    pthread_cond_signal(&t->cv); /* the next round's time has changed */
    pthread_mutex_unlock(&t->mu);
}

/* Draws a batch: recent_fraction from the ring of recent users, the rest
 * uniformly over everyone.  Caller holds the read lock. */
static int draw(vg_trainer_t *t, vg_rng_t *rng, int32_t *sel)
{
    const vg_hist_t *h = t->cfg.hist;
    int users = h->users.n, B = t->cfg.batch < users ? t->cfg.batch : users;
    uint64_t ring = h->recent_total < VG_HIST_RECENT ? h->recent_total : VG_HIST_RECENT;
    int n_recent = ring ? (int)(t->cfg.recent_fraction * B + 0.5) : 0;
    for (int k = 0; k < B; k++) {
        if (k < n_recent) {
            uint64_t back = vg_rng_below(rng, ring); /* one of the last `ring` appended */
            sel[k] = h->recent[(h->recent_total - 1 - back) % VG_HIST_RECENT];
            if (sel[k] < 0) /* a forgotten user */
                sel[k] = (int32_t)vg_rng_below(rng, (uint64_t)users);
        } else {
            sel[k] = (int32_t)vg_rng_below(rng, (uint64_t)users);
        }
    }
    return B;
}

/* *to += w * *x, term by term. */
static void add_stats(vg_step_stats_t *to, const vg_step_stats_t *x, double w)
{
    to->loss_g += w * x->loss_g;
    to->nll += w * x->nll;
    to->kl += w * x->kl;
    to->t_q += w * x->t_q;
    to->loss_t += w * x->loss_t;
    to->loss_d += w * x->loss_d;
    to->d_real += w * x->d_real;
    to->d_fake += w * x->d_fake;
    to->contr += w * x->contr;
    to->alpha += w * x->alpha;
}

/* The thread's CPU seconds (the round's parts in its DEBUG line). */
static double cpu_s(void) { return vg_clock_s_(CLOCK_THREAD_CPUTIME_ID); }

/* cpu[0..2]: the thread's CPU clock before the growth, the steps and the
 * snapshot. */
static void round_done(vg_trainer_t *t, int users, const vg_step_stats_t *loss, int steps, const double cpu[3])
{
    vg_snap_t *spare = t->spare && vg_snap_alone(t->spare) ? t->spare : NULL;
    if (!spare) /* still read (a scorer's batch): its last reader frees it */
        vg_snap_unref(t->spare);
    t->spare = t->prev;
    vg_snap_t *snap = vg_snap_remake(spare, &t->model, t->cfg.kernel);
    t->prev = vg_snap_ref(snap);
    if (vg_log_enabled(VG_LOG_DEBUG))
        vg_log(VG_LOG_DEBUG, "trainer: round %llu, %d items: growth %.3f s, %d steps %.3f s, snapshot %.3f s of CPU",
               (unsigned long long)t->rounds + 1, t->model.n_items, cpu[1] - cpu[0], steps, cpu[2] - cpu[1],
               cpu_s() - cpu[2]);
    if (snap && strcmp(snap->why, t->kernel_why)) { /* the first snapshot, or the kernel changed */
        char k[192];
        vg_log(VG_LOG_INFO, "scorer: %s", vg_snap_kernel(snap, k, sizeof k));
        snprintf(t->kernel_why, sizeof t->kernel_why, "%s", snap->why);
    }
    vg_train_info_t info = {
        .step = t->model.step,
        .alpha = vg_model_alpha(&t->model),
        .epoch = users ? (double)t->users_trained / users : 0,
        .items = t->model.n_items,
        .users = users,
        .trained_at = vg_wall_s(),
        .steps = steps,
        .round = ++t->rounds,
    };
    if (steps > 0)
        add_stats(&info.loss, loss, 1.0 / steps);
    if (!snap)
        vg_log(VG_LOG_WARN, "trainer: no memory for a model snapshot; serving the previous one");
    if (vg_mono_s() >= t->publish_due && hand_out(t, VG_TRAIN_SNAPSHOT, &info))
        t->publish_due = vg_mono_s() + t->cfg.publish_interval_s;
    t->cfg.on_round(t->cfg.ud, snap, &info);
}

/* A failed save: counted, logged, retried after the backoff (min(10 s,
 * interval), doubling up to the interval). */
static void save_failed(vg_trainer_t *t, const char *err, double now)
{
    double interval = t->cfg.checkpoint_interval_s;
    t->retry_s = t->retry_s > 0 ? fmin(2 * t->retry_s, interval) : fmin(CKPT_RETRY_FIRST_S, interval);
    t->save_failures++;
    if (t->m_ckpt_failures)
        vg_metric_inc(t->m_ckpt_failures, 1);
    vg_log(VG_LOG_ERROR, "checkpoint failed (%d in a row; the previous state file is kept, retrying in %.0f s): %s",
           t->save_failures, t->retry_s, err);
    t->save_due = now + t->retry_s;
}

/* The periodic save (trainer thread), when save_due has come. */
static void checkpoint(vg_trainer_t *t)
{
    char err[512];
    vg_train_info_t info = {.step = t->model.step, .alpha = vg_model_alpha(&t->model), .items = t->model.n_items,
                            .trained_at = vg_wall_s()};
    hand_out(t, VG_TRAIN_STATE, &info); /* for another daemon to resume from (share.h) */
    if (vg_ckpt_save(&t->model, t->cfg.hist, t->cfg.state_path, err, sizeof err)) {
        save_failed(t, err, vg_mono_s());
        return;
    }
    if (t->save_failures)
        vg_log(VG_LOG_INFO, "checkpoint: step %lld saved to %s after %d failed attempts", (long long)t->model.step,
               t->cfg.state_path, t->save_failures);
    else
        vg_log(VG_LOG_DEBUG, "checkpoint: step %lld saved to %s", (long long)t->model.step, t->cfg.state_path);
    t->save_failures = 0;
    t->retry_s = 0;
    t->save_due = vg_mono_s() + t->cfg.checkpoint_interval_s;
}

/* One round: the model created or grown to the catalogue, `steps` updates
 * (fewer when a backlog begins meanwhile), the snapshot published. */
static void train_round(vg_trainer_t *t, vg_rng_t *rng, int32_t *sel, vg_csr_t *X, int steps_wanted)
{
    vg_hist_rdlock(t->cfg.hist);
    int users = t->cfg.hist->users.n, items = t->cfg.hist->items.n;
    vg_hist_unlock(t->cfg.hist);
    int rc = 0;
    if (users > 0 && items > 0 && !t->have_model) {
        rc = vg_model_init(&t->model, &t->cfg.model, items, t->cfg.batch);
        t->have_model = rc == 0;
        if (rc)
            vg_log(VG_LOG_ERROR, "trainer: cannot create the model: %s", vg_strerror(rc));
        else
            vg_log(VG_LOG_INFO, "trainer: new model (%s, %d items)", vg_variant_name(t->cfg.model.variant), items);
    }
    if (!t->have_model || users == 0)
        return;
    double cpu[3] = {cpu_s()};
    if ((rc = vg_ckpt_grow(&t->model, t->cfg.hist))) { /* the model stays as it was (checkpoint.h) */
        vg_log(VG_LOG_ERROR, "trainer: cannot grow the model from %d to %d items: %s; round skipped",
               t->model.n_items, items, vg_strerror(rc));
        return;
    }
    vg_step_stats_t sum = {0}, st;
    int steps = 0;
    cpu[1] = cpu_s();
    for (int s = 0; s < steps_wanted && rc == 0; s++) {
        vg_hist_rdlock(t->cfg.hist);
        int B = draw(t, rng, sel);
        rc = vg_hist_rows(t->cfg.hist, sel, B, t->model.n_items, X, NULL);
        vg_hist_unlock(t->cfg.hist);
        if (rc == 0 && (rc = vg_model_train_step(&t->model, X, &st)) == 0) {
            add_stats(&sum, &st, 1.0);
            steps++;
        }
        t->users_trained += (uint64_t)B;
        pthread_mutex_lock(&t->mu);
        int stop = t->stop;
        pthread_mutex_unlock(&t->mu);
        if (stop || atomic_load(&t->backlog) || atomic_load(&t->held))
            break;
    }
    cpu[2] = cpu_s();
    if (rc)
        vg_log(VG_LOG_ERROR, "trainer: round failed: %s", vg_strerror(rc));
    else
        round_done(t, users, &sum, steps, cpu);
}

static void *trainer_main(void *arg)
{
    vg_trainer_t *t = arg;
    vg_csr_t X = {0};
    int32_t *sel = malloc((size_t)t->cfg.batch * sizeof *sel);
    vg_rng_t rng;
    vg_rng_seed(&rng, t->cfg.model.seed ^ 0x7261696e6572ULL);
    vg_omp_set_threads(t->cfg.threads > 0 ? t->cfg.threads : 1);
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19))
        vg_log(VG_LOG_DEBUG, "trainer: cannot lower its priority; it competes with scoring");
    t->save_due = t->cfg.checkpoint_interval_s > 0 ? vg_mono_s() + t->cfg.checkpoint_interval_s : INFINITY;
    double last = -INFINITY; /* the last round's start */
    pthread_mutex_lock(&t->mu);
    while (!t->stop && sel) {
        double now = vg_mono_s();
        int backlog = atomic_load(&t->backlog);
        double next = last + (backlog ? t->cfg.backlog_interval_ms : t->cfg.interval_ms) / 1000.0;
        int enough = !backlog && t->cfg.min_new_events > 0 &&
                     atomic_load(&t->new_events) >= t->cfg.min_new_events;
        int held = atomic_load(&t->held);
        int round = !held && (now >= next || enough), save = !held && t->have_model && now >= t->save_due;
        if (!round && !save) {
            double wake = t->have_model && t->save_due < next ? t->save_due : next;
            struct timespec until = vg_deadline(held ? 3600 : wake - now); /* vg_trainer_hold signals */
            pthread_cond_timedwait(&t->cv, &t->mu, &until);
            continue;
        }
        pthread_mutex_unlock(&t->mu);
        take_adopted(t);
        if (round) {
            last = vg_mono_s();
            atomic_store(&t->new_events, 0);
            train_round(t, &rng, sel, &X, backlog ? 1 : t->cfg.steps_per_round);
        }
        if (t->have_model && vg_mono_s() >= t->save_due && !atomic_load(&t->held))
            checkpoint(t);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    vg_csr_free(&X);
    free(sel);
    return NULL;
}

int vg_trainer_start(vg_trainer_t **out, const vg_trainer_cfg_t *cfg, vg_model_t *model)
{
    vg_trainer_t *t = calloc(1, sizeof *t);
    if (!t)
        return VG_ENOMEM;
    t->cfg = *cfg;
    if (cfg->metrics)
        t->m_ckpt_failures = vg_metrics_add(cfg->metrics, "vaegan_checkpoint_failures_total",
                                            "Saves of the model state file that failed (periodic and at stop)",
                                            VG_METRIC_COUNTER, NULL, 0);
    if (cfg->metrics && (t->m_backlog = vg_metrics_add(cfg->metrics, "vaegan_train_backlog",
                                                       "1 while the trainer steps back for a consumer backlog "
                                                       "(train.backlog_lag), else 0", VG_METRIC_GAUGE, NULL, 0)))
        vg_metric_set(t->m_backlog, 0);
    if (model) {
        t->model = *model;
        t->have_model = 1;
    }
    atomic_init(&t->new_events, 0);
    atomic_init(&t->backlog, 0);
    atomic_init(&t->held, cfg->start_held);
    for (int k = 0; k < VG_TRAIN_BLOBS; k++)
        atomic_init(&t->blob_busy[k], 0);
    t->publish_due = -INFINITY;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->th, NULL, trainer_main, t)) {
        if (t->have_model)
            vg_model_close(&t->model);
        free(t);
        return VG_ENOMEM;
    }
    *out = t;
    return 0;
}

int vg_trainer_stop(vg_trainer_t *t, char *err, size_t errlen)
{
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
    int rc = 0;
    if (t->have_model) {
        rc = vg_ckpt_save(&t->model, t->cfg.hist, t->cfg.state_path, err, errlen);
        if (rc && t->m_ckpt_failures)
            vg_metric_inc(t->m_ckpt_failures, 1);
        vg_model_close(&t->model);
    }
    vg_snap_unref(t->prev);
    vg_snap_unref(t->spare);
    for (int k = 0; k < VG_TRAIN_BLOBS; k++)
        free(t->blob[k]);
    if (t->adopt) {
        vg_model_close(t->adopt);
        free(t->adopt);
    }
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
    return rc;
}
