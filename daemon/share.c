/*
 * share.c — the leader's publications and the followers' loads of share.h.
 *
 * Leader: vg_share_blob (trainer thread) parks a buffer in `in[kind]` and
 * wakes the loop (async); publish_next() sends it with the current epoch
 * or gives it back.  Reading (a follower's snapshot; a new leader's
 * checkpoint, once per election, before on_lead(1)): the poll timer starts
 * a fetch into the buffer `fbuf` (reused for snapshots); a new version is
 * loaded in two passes of the libuv thread pool around the adoption of its
 * items on the loop thread (the mirror has one writer): load -> map ->
 * snapshot or reordered training model -> on_snapshot or on_lead.
 *
 * Invariants: `busy` counts what is in flight (a publication, a fetch, a
 * pool job); s is freed once it is closing, its two handles are closed and
 * busy is 0.  `in` is guarded by mu; everything else is the loop thread's.
 */
#include "daemon/share.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/shared.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/ratelimit.h"
#include "daemon/leader.h"
#include "daemon/log.h"

#define POLL_MS 1000

static const char *const blob_names[VG_TRAIN_BLOBS] = {"snapshot", "checkpoint"};

typedef struct parked {
    void *buf;
    size_t cap, len;
    vg_train_info_t info;
} parked_t;

struct vg_share {
    vg_share_cfg_t cfg;
    uv_loop_t *loop;
    vg_leader_t *leader;
    uv_timer_t poll;
    uv_async_t async;
    int handles, closing, busy;
    pthread_mutex_t mu;
    parked_t in[VG_TRAIN_BLOBS];  /* under mu: from the trainer, waiting for the loop (buf NULL: none) */
    parked_t out[VG_TRAIN_BLOBS]; /* being published */
    uint64_t out_epoch[VG_TRAIN_BLOBS], published[VG_TRAIN_BLOBS]; /* its epoch; the last step published in it */
    double out_t0[VG_TRAIN_BLOBS];
    int resuming;         /* leading, and the checkpoint not read yet: on_lead(1) waits */
    /* reading: a fetch and its load, of kind rkind */
    int reading, rkind;
    void *fbuf;
    size_t fcap;
    vg_shared_blob_t have, got; /* the snapshot served (have.epoch 0: none), the version being read */
    double got_t0;
    uv_work_t work;
    int stage;            /* the pool job's: 0 load, 1 reorder */
    int rc;
    char err[256];
    vg_model_t loaded;    /* stage 0's result, in the leader's item order */
    int model_loaded;
    int32_t *from;        /* the mirror's items -> the loaded model's rows (rank.h vg_snap_map) */
    int64_t *lpop;        /* the snapshot's popularity, by the leader's rows (hist.h); NULL = none */
    int lpop_n;
    int from_n;
    vg_snap_t *snap;      /* stage 1's result for a snapshot */
    vg_model_t *resume;   /* stage 1's result for a checkpoint */
    vg_ratelimit_t warn_rl;
    vg_metric_t *m_leader, *m_epoch, *m_version, *m_publish_s, *m_load_s, *m_bytes, *m_failures;
};

static void maybe_free(vg_share_t *s)
{
    if (!s->closing || s->handles || s->busy)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s->fbuf);
    free(s);
}

static void warn(vg_share_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(vg_share_t *s, const char *fmt, ...)
{
    vg_metric_inc(s->m_failures, 1);
    uint64_t suppressed = 0;
    if (!vg_ratelimit_ok(&s->warn_rl, &suppressed))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vg_log(VG_LOG_WARN, "share: %s%s", msg, suppressed ? " (and earlier ones not logged)" : "");
}

/* ---- leader: publishing ---------------------------------------------------------- */

static void give_back(vg_share_t *s, int kind, parked_t *b)
{
    if (b->buf)
        s->cfg.give_back(s->cfg.ud, kind, b->buf, b->cap);
    b->buf = NULL;
}

static void publish_next(vg_share_t *s, int kind);

static void on_published(vg_share_t *s, int kind, int status)
{
    s->busy--;
    parked_t *o = &s->out[kind];
    if (status == 0) {
        double dt = vg_mono_s() - s->out_t0[kind];
        s->published[kind] = (uint64_t)o->info.step;
        if (kind == VG_TRAIN_SNAPSHOT) {
            vg_metric_set(s->m_publish_s, dt);
            vg_metric_set(s->m_bytes, (double)o->len);
            vg_metric_set(s->m_version, (double)o->info.step);
        }
        vg_log(VG_LOG_DEBUG, "share: step %lld published as the %s (%.1f MB in %.3f s, epoch %llu)",
               (long long)o->info.step, blob_names[kind], o->len / 1e6, dt, (unsigned long long)s->out_epoch[kind]);
    } else if (status != VG_EAGAIN) {
        warn(s, "the %s of step %lld was not published: %s", blob_names[kind], (long long)o->info.step,
             status == VG_EFENCED ? "a newer leader took over"
             : status == VG_ESTALE ? "the manifest names a newer version"
                                   : vg_strerror(status));
    }
    if (status == VG_EFENCED)
        vg_leader_fenced(s->leader, s->out_epoch[kind]);
    give_back(s, kind, o);
    if (!s->closing)
        publish_next(s, kind);
    maybe_free(s);
}

static void on_published_snapshot(void *ud, int status) { on_published(ud, VG_TRAIN_SNAPSHOT, status); }
static void on_published_state(void *ud, int status) { on_published(ud, VG_TRAIN_STATE, status); }

/* The parked blob of the kind goes out if this instance leads, else back. */
static void publish_next(vg_share_t *s, int kind)
{
    parked_t *o = &s->out[kind];
    if (o->buf)
        return; /* one at a time: the next waits in `in` */
    pthread_mutex_lock(&s->mu);
    *o = s->in[kind];
    s->in[kind].buf = NULL;
    pthread_mutex_unlock(&s->mu);
    uint64_t epoch;
    if (!o->buf)
        return;
    if (s->closing || !vg_leader_leading(s->leader, &epoch) || s->resuming ||
        (epoch == s->out_epoch[kind] && (uint64_t)o->info.step <= s->published[kind])) {
        give_back(s, kind, o); /* not leading (yet), or nothing new */
        return;
    }
    if (epoch != s->out_epoch[kind])
        s->published[kind] = 0;
    s->out_epoch[kind] = epoch;
    s->out_t0[kind] = vg_mono_s();
    vg_shared_put_t put = {.name = blob_names[kind], .epoch = epoch, .version = (uint64_t)o->info.step,
                           .data = o->buf, .len = o->len};
    int rc = vg_shared_publish(s->cfg.store, &put, kind == VG_TRAIN_SNAPSHOT ? on_published_snapshot : on_published_state,
                               s);
    if (rc) {
        warn(s, "the %s of step %lld was not published: %s", blob_names[kind], (long long)o->info.step,
             vg_strerror(rc));
        give_back(s, kind, o);
        return;
    }
    s->busy++;
}

static void on_async(uv_async_t *a)
{
    for (int k = 0; k < VG_TRAIN_BLOBS; k++)
        publish_next(a->data, k);
}

void vg_share_blob(vg_share_t *s, int kind, void *buf, size_t cap, size_t len, const vg_train_info_t *info)
{
    pthread_mutex_lock(&s->mu);
    vg_assert(!s->in[kind].buf); /* the trainer waits for its buffer */
    s->in[kind] = (parked_t){buf, cap, len, *info};
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
}

int vg_share_leading(const vg_share_t *s, uint64_t *epoch) { return vg_leader_leading(s->leader, epoch); }

/* ---- reading: a follower's snapshots, a new leader's checkpoint ------------------ */

static void next_read(vg_share_t *s);

/* A new leader's checkpoint was read (m: a model to continue from, or NULL). */
static void resumed(vg_share_t *s, vg_model_t *m)
{
    s->resuming = 0;
    vg_log(VG_LOG_INFO, "share: leading: %s", m ? "training on from the shared checkpoint"
                                                : "training on from this instance's own model");
    s->cfg.on_lead(s->cfg.ud, 1, m);
}

static void on_change(void *ud, int leading, uint64_t epoch)
{
    vg_share_t *s = ud;
    vg_metric_set(s->m_leader, leading);
    s->resuming = leading;
    if (leading) {
        vg_metric_set(s->m_epoch, (double)epoch);
        vg_log(VG_LOG_INFO, "share: leading with epoch %llu: reading the shared checkpoint, then training and "
               "publishing the model", (unsigned long long)epoch);
        next_read(s);
    } else {
        vg_log(VG_LOG_INFO, "share: following: serving the leader's snapshots");
        s->cfg.on_lead(s->cfg.ud, 0, NULL);
    }
}

/* What is read is still wanted: a snapshot by a follower, the checkpoint by
 * a leader that waits for it. */
static int wanted(const vg_share_t *s, int kind)
{
    int leading = vg_share_leading(s, NULL);
    return !s->closing && (kind == VG_TRAIN_SNAPSHOT ? !leading : leading && s->resuming);
}

static void load_work(uv_work_t *w)
{
    vg_share_t *s = w->data;
    const char *name = s->rkind == VG_TRAIN_SNAPSHOT ? "the leader's snapshot" : "the shared checkpoint";
    if (s->stage == 0 && s->rkind == VG_TRAIN_SNAPSHOT) {
        size_t len = (size_t)s->got.bytes; /* the model, then the leader's popularity (hist.h) */
        free(s->lpop);
        s->rc = vg_hist_pop_split(s->fbuf, &len, &s->lpop, &s->lpop_n);
        if (s->rc)
            snprintf(s->err, sizeof s->err, "its popularity: %s", vg_strerror(s->rc));
        else
            s->rc = vg_model_load_weights_mem(&s->loaded, s->fbuf, len, name, s->cfg.model, s->err, sizeof s->err);
    } else if (s->stage == 0) {
        s->rc = vg_model_load_mem(&s->loaded, s->fbuf, (size_t)s->got.bytes, name, s->cfg.model, s->cfg.max_batch,
                                  s->err, sizeof s->err);
    } else if (s->rkind == VG_TRAIN_SNAPSHOT) {
        s->snap = vg_snap_mapped(&s->loaded, s->from, s->from_n, s->cfg.kernel);
        s->rc = s->snap ? 0 : VG_ENOMEM;
    } else if (!(s->resume = malloc(sizeof *s->resume))) {
        s->rc = VG_ENOMEM;
    } else if ((s->rc = vg_model_reorder_items(s->resume, &s->loaded, s->from, s->from_n, s->cfg.max_batch))) {
        free(s->resume);
        s->resume = NULL;
    }
}

/* The read is over (why: NULL, or what went wrong). */
static void read_end(vg_share_t *s, const char *why)
{
    if (why)
        warn(s, "cannot use the %s: %s", blob_names[s->rkind], why);
    if (s->model_loaded)
        vg_model_close(&s->loaded);
    s->model_loaded = 0;
    free(s->from);
    s->from = NULL;
    free(s->lpop);
    s->lpop = NULL;
    vg_snap_unref(s->snap);
    s->snap = NULL;
    if (s->resume) {
        vg_model_close(s->resume);
        free(s->resume);
        s->resume = NULL;
    }
    if (s->rkind == VG_TRAIN_STATE) { /* once per election: its buffer goes */
        free(s->fbuf);
        s->fbuf = NULL;
        s->fcap = 0;
    }
    s->reading = 0;
    s->busy--;
    if (s->rkind == VG_TRAIN_STATE && wanted(s, VG_TRAIN_STATE))
        resumed(s, NULL);
    else if (s->rkind == VG_TRAIN_SNAPSHOT && wanted(s, VG_TRAIN_STATE))
        next_read(s); /* elected while a snapshot was read */
    maybe_free(s);
}

/* The snapshot's popularity, put in the mirror's item order (s->from), is
 * what the mirror ranks by from now on (hist.h vg_hist_pop). */
static void leader_pop(vg_share_t *s)
{
    int64_t *g = s->lpop ? malloc(((size_t)s->from_n + 1) * sizeof *g) : NULL;
    for (int i = 0; g && i < s->from_n; i++)
        g[i] = s->from[i] >= 0 && s->from[i] < s->lpop_n ? s->lpop[s->from[i]] : -1;
    if (s->lpop && !g)
        vg_log(VG_LOG_ERROR, "share: no memory for the leader's popularity: this instance's own stays");
    vg_hist_wrlock(s->cfg.hist);
    vg_hist_set_leader_pop(s->cfg.hist, g, s->from_n);
    vg_hist_unlock(s->cfg.hist);
}

static void serve(vg_share_t *s)
{
    vg_train_info_t info = {.step = s->loaded.step, .alpha = s->snap->alpha, .items = s->loaded.n_items,
                            .trained_at = vg_wall_s()};
    double dt = vg_mono_s() - s->got_t0;
    vg_log(s->have.epoch ? VG_LOG_DEBUG : VG_LOG_INFO,
           "share: serving the leader's step %lld (epoch %llu, %d items, its popularity of %d, %.1f MB, fetched "
           "and loaded in %.3f s)", (long long)info.step, (unsigned long long)s->got.epoch, info.items,
           s->lpop ? s->lpop_n : 0, s->got.bytes / 1e6, dt);
    s->have = s->got;
    leader_pop(s);
    vg_metric_set(s->m_version, (double)info.step);
    vg_metric_set(s->m_load_s, dt);
    vg_metric_set(s->m_bytes, (double)s->got.bytes);
    s->cfg.on_snapshot(s->cfg.ud, s->snap, &info);
    s->snap = NULL;
}

static void load_done(uv_work_t *w, int status)
{
    vg_share_t *s = w->data;
    if (s->stage == 0 && status == 0 && s->rc == 0)
        s->model_loaded = 1;
    if (status || s->rc || !wanted(s, s->rkind)) {
        read_end(s, status ? "cancelled" : !s->rc ? NULL : s->stage == 0 ? s->err : vg_strerror(s->rc));
        return;
    }
    if (s->stage == 1) {
        if (s->rkind == VG_TRAIN_SNAPSHOT) {
            serve(s);
        } else {
            vg_log(VG_LOG_INFO, "share: the shared checkpoint of step %lld (epoch %llu, %.1f MB) read in %.3f s",
                   (long long)s->loaded.step, (unsigned long long)s->got.epoch, s->got.bytes / 1e6,
                   vg_mono_s() - s->got_t0);
            vg_model_t *m = s->resume;
            s->resume = NULL;
            resumed(s, m); /* so read_end does not resume again */
        }
        read_end(s, NULL);
        return;
    }
    /* the loaded model's items become the mirror's (its one writer: this thread), then its rows follow the mirror's order */
    int rc = vg_snap_map(s->cfg.hist, &s->loaded, &s->from, &s->from_n);
    s->stage = 1;
    if (rc || (rc = uv_queue_work(s->loop, &s->work, load_work, load_done) ? VG_ENOMEM : 0))
        read_end(s, vg_strerror(rc));
}

static void on_fetched(void *ud, int status, const vg_shared_blob_t *blob, void *data)
{
    vg_share_t *s = ud;
    if (status == 0 && data && s->rkind == VG_TRAIN_SNAPSHOT && s->have.epoch &&
        (blob->epoch < s->have.epoch || (blob->epoch == s->have.epoch && blob->version <= s->have.version)))
        data = NULL; /* the previous version (the current one unreadable): no step back */
    if (status == 0 && data && wanted(s, s->rkind)) {
        s->got = *blob;
        s->stage = 0;
        s->work.data = s;
        if (uv_queue_work(s->loop, &s->work, load_work, load_done) == 0)
            return; /* busy and reading go on with the load */
        status = VG_ENOMEM;
    }
    if (status == VG_ENOTFOUND && s->rkind == VG_TRAIN_STATE)
        vg_log(VG_LOG_INFO, "share: no shared checkpoint in Redis yet");
    read_end(s, status && status != VG_ENOTFOUND && status != VG_EAGAIN ? vg_strerror(status) : NULL);
}

/* A follower asks for a newer snapshot; a new leader for the checkpoint. */
static void next_read(vg_share_t *s)
{
    int leading = vg_share_leading(s, NULL), kind = leading ? VG_TRAIN_STATE : VG_TRAIN_SNAPSHOT;
    if (s->reading || s->closing || (leading && !s->resuming))
        return; /* a read runs (the checkpoint follows it); a leader serves its own */
    s->rkind = kind;
    s->got_t0 = vg_mono_s();
    const vg_shared_blob_t *have = kind == VG_TRAIN_SNAPSHOT && s->have.epoch ? &s->have : NULL;
    if (vg_shared_fetch(s->cfg.store, blob_names[kind], have, &s->fbuf, &s->fcap, on_fetched, s) == 0) {
        s->reading = 1;
        s->busy++;
    }
}

static void on_poll(uv_timer_t *t) { next_read(t->data); }

/* ---- life ---------------------------------------------------------------------- */

static void add_metrics(vg_share_t *s)
{
    vg_metrics_t *m = s->cfg.metrics;
    s->m_leader = vg_metrics_add(m, "vaegan_leader", "1 while this instance leads (trains and publishes the model)",
                                 VG_METRIC_GAUGE, NULL, 0);
    s->m_epoch = vg_metrics_add(m, "vaegan_leader_epoch", "The fencing epoch this instance last led with",
                                VG_METRIC_GAUGE, NULL, 0);
    s->m_version = vg_metrics_add(m, "vaegan_snapshot_step",
                                  "Training step of the shared snapshot this instance last published or loaded",
                                  VG_METRIC_GAUGE, NULL, 0);
    s->m_publish_s = vg_metrics_add(m, "vaegan_snapshot_publish_seconds",
                                    "Time the last publication of a snapshot to Redis took", VG_METRIC_GAUGE, NULL, 0);
    s->m_load_s = vg_metrics_add(m, "vaegan_snapshot_load_seconds",
                                 "Time from asking Redis to serving the last snapshot loaded", VG_METRIC_GAUGE, NULL,
                                 0);
    s->m_bytes = vg_metrics_add(m, "vaegan_snapshot_bytes", "Size of the last snapshot published or loaded",
                                VG_METRIC_GAUGE, NULL, 0);
    s->m_failures = vg_metrics_add(m, "vaegan_snapshot_failures_total",
                                   "Snapshot publications, reads and loads that failed", VG_METRIC_COUNTER, NULL, 0);
    vg_metric_set(s->m_leader, 0);
}

int vg_share_init(vg_share_t **out, uv_loop_t *loop, const vg_share_cfg_t *cfg, char *err, size_t errlen)
{
    vg_share_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return VG_ENOMEM;
    }
    s->cfg = *cfg;
    s->loop = loop;
    s->warn_rl = (vg_ratelimit_t){.interval_s = 10, .burst = 5};
    pthread_mutex_init(&s->mu, NULL);
    add_metrics(s);
    vg_leader_cfg_t lc = {.brokers = cfg->brokers, .group = cfg->group, .control_topic = cfg->control_topic,
                          .options = cfg->options, .n_options = cfg->n_options, .store = cfg->store,
                          .on_change = on_change, .log = vg_log_cb, .ud = s};
    int rc = vg_leader_init(&s->leader, loop, &lc, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    uv_async_init(loop, &s->async, on_async);
    uv_timer_init(loop, &s->poll);
    s->async.data = s->poll.data = s;
    s->handles = 2;
    uv_timer_start(&s->poll, on_poll, 0, POLL_MS);
    *out = s;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    vg_share_t *s = h->data;
    s->handles--;
    maybe_free(s);
}

void vg_share_close(vg_share_t *s)
{
    if (!s)
        return;
    s->closing = 1;
    vg_leader_close(s->leader);
    s->leader = NULL;
    for (int k = 0; k < VG_TRAIN_BLOBS; k++) {
        pthread_mutex_lock(&s->mu);
        parked_t in = s->in[k];
        s->in[k].buf = NULL;
        pthread_mutex_unlock(&s->mu);
        give_back(s, k, &in);
    }
    uv_close((uv_handle_t *)&s->async, on_closed);
    uv_close((uv_handle_t *)&s->poll, on_closed);
}
