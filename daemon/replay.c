/*
 * replay.c — `vaegand --replay FILE`: offline backfill.
 *
 * 1. Read the file (stream/reader.c; lenient: bad lines are counted and
 *    logged, rate-limited) into a compact array of (user, item, ts) indices.
 * 2. Write the histories to Redis through the same store as the daemon,
 *    VG_BATCH_MAX events per batch with a bounded number in flight; every
 *    acknowledged batch enters the mirror, exactly as in streaming mode.
 * 3. Train --epochs passes over all users (shuffled mini-batches of
 *    model.batch) on this thread, continuing the saved state if there is one.
 * 4. Save the state, write rec:<user> for every known user and vaegan:model,
 *    print a summary on stdout, exit 0.
 */
#include "daemon/internal.h"

#include "common/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/blas.h"
#include "stream/reader.h"

#define MAX_BATCHES_IN_FLIGHT 64

typedef struct rev {
    int32_t user, item;
    double ts;
} rev_t;

typedef struct replay {
    vg_daemon_t *d;
    rev_t *ev;
    size_t n, cap, sent;
    vg_ratelimit_t rl;
} replay_t;

/* Ids get their vocabulary index at once (the mirror's vocabularies; this
 * thread is the only writer); histories enter the mirror only on Redis'
 * acknowledgement. */
static int on_event(const vg_event_t *e, void *ud)
{
    replay_t *r = ud;
    vg_hist_t *h = &r->d->hist;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1 << 16;
        rev_t *p = realloc(r->ev, cap * sizeof *p);
        if (!p)
            return VG_ENOMEM;
        r->ev = p;
        r->cap = cap;
    }
    vg_hist_wrlock(h);
    int32_t u = vg_vocab_add(&h->users, e->user, e->user_len, NULL);
    int32_t i = vg_hist_item(h, e->item, e->item_len);
    vg_hist_unlock(h);
    if (u < 0 || i < 0)
        return VG_ENOMEM;
    r->ev[r->n++] = (rev_t){u, i, e->ts};
    return 0;
}

static void on_invalid(uint64_t line, const char *reason, void *ud)
{
    replay_t *r = ud;
    uint64_t suppressed;
    if (vg_ratelimit_ok(&r->rl, &suppressed))
        vg_log(VG_LOG_WARN, "%s:%llu: skipped: %s", r->d->opts->replay, (unsigned long long)line, reason);
}

/* Fills d->cur from the next events and sends it; vg_d_send_batch's
 * acknowledgement path applies it to the mirror. */
static void send_more(replay_t *r)
{
    vg_daemon_t *d = r->d;
    while (r->sent < r->n && d->pending_events < (size_t)MAX_BATCHES_IN_FLIGHT * VG_BATCH_MAX) {
        vg_batch_t *b = malloc(sizeof *b);
        if (!b)
            return;
        b->d = d;
        b->n = 0;
        for (; r->sent < r->n && b->n < VG_BATCH_MAX; r->sent++) {
            const rev_t *e = &r->ev[r->sent];
            vg_pev_t *p = &b->ev[b->n++];
            const char *u = vg_vocab_id(&d->hist.users, e->user), *i = vg_vocab_id(&d->hist.items, e->item);
            p->partition = -1;
            p->offset = (int64_t)r->sent;
            p->ts = e->ts;
            p->user_len = (uint8_t)strlen(u);
            p->item_len = (uint8_t)strlen(i);
            memcpy(p->user, u, p->user_len + 1u);
            memcpy(p->item, i, p->item_len + 1u);
        }
        d->cur = b;
        vg_d_send_batch(d);
    }
}

static int train(vg_daemon_t *d, vg_model_t *m, int epochs)
{
    const vg_config_t *c = d->cfg;
    int users = d->hist.users.n, B = c->model.batch;
    int *order = malloc((size_t)users * sizeof *order);
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    vg_csr_t X = {0};
    int rc = order && sel ? 0 : VG_ENOMEM;
    for (int u = 0; u < users; u++)
        order[u] = u;
    for (int ep = 0; ep < epochs && rc == 0 && !d->stopping; ep++) {
        double t0 = vg_mono_s(), nll = 0;
        int batches = 0;
        vg_rng_shuffle(&m->rng, order, users);
        for (int s = 0; s < users && rc == 0; s += B) {
            int n = users - s < B ? users - s : B;
            for (int k = 0; k < n; k++)
                sel[k] = order[s + k];
            vg_step_stats_t st = {0};
            rc = vg_hist_rows(&d->hist, sel, n, m->n_items, &X, NULL);
            if (rc == 0)
                rc = vg_model_train_step(m, &X, &st);
            nll += st.nll;
            batches++;
            uv_run(&d->loop, UV_RUN_NOWAIT); /* signals */
        }
        vg_log(VG_LOG_INFO, "replay: epoch %d/%d: nll %.3f, alpha %.4f, %.2f s", ep + 1, epochs,
               batches ? nll / batches : 0, vg_model_alpha(m), vg_mono_s() - t0);
    }
    vg_csr_free(&X);
    free(order);
    free(sel);
    return rc;
}

int vg_replay_run(vg_daemon_t *d)
{
    const vg_config_t *c = d->cfg;
    const vg_run_opts_t *o = d->opts;
    double t0 = vg_mono_s();
    replay_t r = {.d = d, .rl = {.interval_s = 10, .burst = 20}};
    vg_reader_opts_t ro = {.min_rating = o->min_rating, .on_event = on_event, .on_invalid = on_invalid, .ud = &r};
    if (vg_format_from_name(o->format, &ro.format)) {
        vg_log(VG_LOG_ERROR, "--format %s: unknown (json, csv, ml100k, ml1m, mlcsv)", o->format);
        return VG_EINVAL;
    }
    vg_reader_stats_t rs;
    char err[512];
    int rc = vg_reader_read(o->replay, &ro, &rs, err, sizeof err);
    if (rc) {
        vg_log(VG_LOG_ERROR, "replay: %s", err);
        free(r.ev);
        return rc;
    }
    vg_log(VG_LOG_INFO, "replay: read %llu events (%llu invalid, %llu below --min-rating) in %.1f s",
           (unsigned long long)rs.events, (unsigned long long)rs.invalid, (unsigned long long)rs.filtered,
           vg_mono_s() - t0);

    /* 2. histories into Redis and the mirror */
    double t1 = vg_mono_s();
    send_more(&r);
    while ((r.sent < r.n || d->pending_events) && !d->stopping) {
        uv_run(&d->loop, UV_RUN_ONCE);
        send_more(&r);
    }
    free(r.ev);
    if (d->stopping)
        return VG_EAGAIN;
    vg_log(VG_LOG_INFO, "replay: histories written to Redis in %.1f s (%d users, %d items)", vg_mono_s() - t1,
           d->hist.users.n, d->hist.items.n);

    /* 3. training */
    vg_model_t *m = &d->model;
    if (!d->have_model) {
        if ((rc = vg_model_init(m, &c->model.cfg, d->hist.items.n, c->model.batch))) {
            vg_log(VG_LOG_ERROR, "replay: cannot create the model: %s", vg_strerror(rc));
            return rc;
        }
        d->have_model = 1;
    }
    if ((rc = vg_trainer_grow(m, &d->hist)))
        return rc;
    vg_blas_set_threads(c->train.threads);
    double t2 = vg_mono_s();
    if ((rc = train(d, m, o->epochs)))
        return rc;
    double train_s = vg_mono_s() - t2;
    if ((rc = vg_trainer_save(m, &d->hist, d->state_path, err, sizeof err))) {
        vg_log(VG_LOG_ERROR, "replay: saving the model state: %s", err);
        return rc;
    }

    /* 4. lists for everyone, then vaegan:model */
    vg_snap_t *snap = vg_snap_new(m);
    int users = d->hist.users.n, B = c->serve.batch;
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    vg_list_t *lists = malloc((size_t)B * sizeof *lists);
    rc = snap && sel && lists ? 0 : VG_ENOMEM;
    for (int s = 0; s < users && rc == 0 && !d->stopping; s += B) {
        int n = users - s < B ? users - s : B;
        for (int k = 0; k < n; k++)
            sel[k] = s + k;
        if ((rc = vg_rank_users(&d->hist, snap, sel, n, c->serve.top_n, lists)))
            break;
        vg_d_put_lists(d, lists, n, 0);
        for (int k = 0; k < n; k++)
            vg_list_free(&lists[k]);
        while (d->pending_lists > 16 * (size_t)B && !d->stopping)
            uv_run(&d->loop, UV_RUN_ONCE);
    }
    vg_snap_unref(snap);
    free(sel);
    free(lists);
    if (rc)
        return rc;
    vg_train_info_t info = {.step = m->step, .alpha = vg_model_alpha(m), .epoch = o->epochs,
                            .items = m->n_items, .users = users, .trained_at = (double)time(NULL)};
    vg_d_publish_model(d, &info);
    while ((d->pending_lists || vg_store_pending(d->store)) && !d->stopping)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (d->stopping)
        return VG_EAGAIN;
    printf("{\"events\":%llu,\"invalid\":%llu,\"filtered\":%llu,\"users\":%d,\"items\":%d,\"epochs\":%d,"
           "\"step\":%lld,\"lists\":%llu,\"train_s\":%.2f,\"seconds\":%.2f}\n",
           (unsigned long long)rs.events, (unsigned long long)rs.invalid, (unsigned long long)rs.filtered, users,
           d->hist.items.n, o->epochs, (long long)m->step, (unsigned long long)d->lists, train_s, vg_mono_s() - t0);
    fflush(stdout);
    vg_log(VG_LOG_INFO, "replay: done: %d users, %d items, %d epochs, %.1f s", users, d->hist.items.n, o->epochs,
           vg_mono_s() - t0);
    return 0;
}
