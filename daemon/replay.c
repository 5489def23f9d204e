/*
 * replay.c — `vaegand --replay FILE` (the phases are replay.h's).
 *
 * Ids get their vocabulary index as the file is read (the mirror's
 * vocabularies; this thread is the only writer), so the file's events are
 * kept as compact (user, item, ts) indices; histories enter the mirror only
 * on Redis' acknowledgement, through the pipeline.  Every phase reports its
 * progress (progress.h: a terminal line, or a log line and STATUS= every
 * log.progress_interval_s).
 */
#include "daemon/replay.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/ratelimit.h"
#include "daemon/checkpoint.h"
#include "daemon/log.h"
#include "daemon/pipeline.h"
#include "daemon/progress.h"
#include "model/blas.h"
#include "stream/reader.h"

#define MAX_BATCHES_IN_FLIGHT 64

typedef struct rev {
    int32_t user;
    int32_t item : 31;     /* item indices stay below 2^30 */
    unsigned removal : 1; /* of a removal type */
    double ts;
} rev_t;

typedef struct replay {
    vg_pipe_t *p;
    const vg_replay_opts_t *o;
    rev_t *ev;
    size_t n, cap, sent;
    uint64_t ignored; /* events of other types, forgets, and events of forgotten users */
    vg_ratelimit_t rl;
    vg_reader_stats_t rs;    /* kept current by the reader: the read's progress */
    vg_progress_t pr;
    double t0, train_s;
} replay_t;

static int on_event(const vg_event_t *e, void *ud)
{
    replay_t *r = ud;
    vg_hist_t *h = &r->p->hist;
    int kind = vg_pipe_event_kind(r->p, e->type), removal = kind == VG_KIND_REMOVAL;
    if (kind == VG_KIND_OTHER || /* forgets too: stream them */
        vg_pipe_refuses(r->p, e->user, e->user_len, e->ts)) {
        r->ignored++;
        return 0;
    }
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
    if (u < 0 || i < 0 || i >= (1 << 30))
        return VG_ENOMEM;
    r->ev[r->n++] = (rev_t){u, i, (unsigned)removal, e->ts};
    r->pr.total_bytes = r->rs.size; /* known once the reader has opened the file */
    vg_progress_update(&r->pr, r->rs.events, r->rs.bytes);
    return 0;
}

static void on_invalid(uint64_t line, const char *reason, void *ud)
{
    replay_t *r = ud;
    uint64_t suppressed;
    if (vg_ratelimit_ok(&r->rl, &suppressed))
        vg_log(VG_LOG_WARN, "%s:%llu: skipped: %s", r->o->file, (unsigned long long)line, reason);
}

/* Sends the next events, keeping at most MAX_BATCHES_IN_FLIGHT batches
 * unacknowledged. */
static void send_more(replay_t *r)
{
    vg_pipe_t *p = r->p;
    while (r->sent < r->n && p->pending_events < (size_t)MAX_BATCHES_IN_FLIGHT * VG_BATCH_MAX) {
        vg_batch_t *b = malloc(sizeof *b);
        if (!b)
            return;
        b->n = 0;
        for (; r->sent < r->n && b->n < VG_BATCH_MAX; r->sent++) {
            const rev_t *e = &r->ev[r->sent];
            const char *u = vg_vocab_id(&p->hist.users, e->user), *i = vg_vocab_id(&p->hist.items, e->item);
            vg_batch_push(b, u, strlen(u), i, strlen(i), e->ts, NULL, e->removal,
                          (vg_event_origin_t){-1, -1, (int64_t)r->sent});
        }
        vg_pipe_send(p, b);
    }
}

static int train_epochs(vg_pipe_t *p, vg_model_t *m, int epochs, vg_progress_t *pr)
{
    const vg_config_t *c = p->cfg;
    int users = p->hist.users.n, B = c->model.batch;
    uint64_t done = 0;
    vg_progress_start(pr, "training", "batches", (uint64_t)epochs * (uint64_t)((users + B - 1) / B), 0);
    int *order = malloc((size_t)users * sizeof *order);
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    vg_csr_t X = {0};
    int rc = order && sel ? 0 : VG_ENOMEM;
    for (int u = 0; u < users; u++)
        order[u] = u;
    for (int ep = 0; ep < epochs && rc == 0 && !p->stopping; ep++) {
        double t0 = vg_mono_s(), nll = 0;
        int batches = 0;
        vg_rng_shuffle(&m->rng, order, users);
        for (int s = 0; s < users && rc == 0; s += B) {
            int n = users - s < B ? users - s : B;
            for (int k = 0; k < n; k++)
                sel[k] = order[s + k];
            vg_step_stats_t st = {0};
            rc = vg_hist_rows(&p->hist, sel, n, m->n_items, &X, NULL);
            if (rc == 0)
                rc = vg_model_train_step(m, &X, &st);
            nll += st.nll;
            batches++;
            vg_progress_update(pr, ++done, 0);
            uv_run(&p->loop, UV_RUN_NOWAIT); /* signals */
        }
        vg_log(VG_LOG_INFO, "replay: epoch %d/%d: nll %.3f, alpha %.4f, %.2f s", ep + 1, epochs,
               batches ? nll / batches : 0, vg_model_alpha(m), vg_mono_s() - t0);
    }
    if (rc == 0 && !p->stopping)
        vg_progress_end(pr);
    vg_csr_free(&X);
    free(order);
    free(sel);
    return rc;
}

/* 1. the file into r->ev */
static int read_file(replay_t *r)
{
    vg_reader_opts_t ro = {.min_rating = r->o->min_rating, .on_event = on_event, .on_invalid = on_invalid, .ud = r};
    if (vg_format_from_name(r->o->format, &ro.format)) {
        vg_log(VG_LOG_ERROR, "--format %s: unknown (json, csv, ml100k, ml1m, mlcsv)", r->o->format);
        return VG_EINVAL;
    }
    char err[512];
    vg_progress_start(&r->pr, "reading", "events", 0, 0);
    int rc = vg_reader_read(r->o->file, &ro, &r->rs, err, sizeof err);
    if (rc) {
        vg_log(VG_LOG_ERROR, "replay: %s", err);
        return rc;
    }
    vg_progress_end(&r->pr);
    vg_log(VG_LOG_INFO, "replay: read %llu events (%llu invalid, %llu below --min-rating, %llu of other types) in %.1f s",
           (unsigned long long)r->rs.events, (unsigned long long)r->rs.invalid, (unsigned long long)r->rs.filtered,
           (unsigned long long)r->ignored, vg_mono_s() - r->t0);
    return 0;
}

/* 2. histories into Redis and the mirror */
static int write_histories(replay_t *r)
{
    vg_pipe_t *p = r->p;
    double t1 = vg_mono_s();
    vg_progress_start(&r->pr, "writing histories", "events", r->n, 0);
    send_more(r);
    while ((r->sent < r->n || p->pending_events) && !p->stopping) {
        uv_run(&p->loop, UV_RUN_ONCE);
        send_more(r);
        vg_progress_update(&r->pr, r->sent - p->pending_events, 0);
    }
    if (p->stopping)
        return VG_EAGAIN;
    vg_progress_end(&r->pr);
    vg_log(VG_LOG_INFO, "replay: histories written to Redis in %.1f s (%d users, %d items)", vg_mono_s() - t1,
           p->hist.users.n, p->hist.items.n);
    return 0;
}

/* 3. training, then the state file */
static int train(replay_t *r)
{
    vg_pipe_t *p = r->p;
    const vg_config_t *c = p->cfg;
    vg_model_t *m = &p->model;
    int rc;
    if (!p->have_model) {
        if ((rc = vg_model_init(m, &c->model.cfg, p->hist.items.n, c->model.batch))) {
            vg_log(VG_LOG_ERROR, "replay: cannot create the model: %s", vg_strerror(rc));
            return rc;
        }
        p->have_model = 1;
    }
    if ((rc = vg_ckpt_grow(m, &p->hist)))
        return rc;
    vg_blas_set_threads(c->train.threads);
    double t2 = vg_mono_s();
    if ((rc = train_epochs(p, m, r->o->epochs, &r->pr)))
        return rc;
    r->train_s = vg_mono_s() - t2;
    char err[512];
    if ((rc = vg_ckpt_save(m, &p->hist, p->state_path, err, sizeof err)))
        vg_log(VG_LOG_ERROR, "replay: saving the model state: %s", err);
    return rc;
}

/* 4. lists for everyone, then vaegan:model */
static int write_lists(replay_t *r)
{
    vg_pipe_t *p = r->p;
    const vg_config_t *c = p->cfg;
    vg_model_t *m = &p->model;
    vg_snap_t *snap = vg_snap_new(m, c->serve.kernel);
    vg_ranker_t *ranker = vg_ranker_new();
    int users = p->hist.users.n, B = c->serve.batch;
    int32_t *sel = malloc((size_t)B * sizeof *sel);
    vg_list_t *lists = malloc((size_t)B * sizeof *lists);
    int rc = snap && ranker && sel && lists ? 0 : VG_ENOMEM;
    char kern[192];
    if (snap)
        vg_log(VG_LOG_INFO, "replay: scoring with %s", vg_snap_kernel(snap, kern, sizeof kern));
    vg_progress_start(&r->pr, "writing lists", "users", (uint64_t)users, 0);
    for (int s = 0; s < users && rc == 0 && !p->stopping; s += B) {
        int n = users - s < B ? users - s : B;
        for (int k = 0; k < n; k++)
            sel[k] = s + k;
        if ((rc = vg_rank_users(&p->hist, snap, ranker, sel, n, c->serve.top_n, lists)))
            break;
        vg_pipe_put_lists(p, lists, n, 0);
        for (int k = 0; k < n; k++)
            vg_list_free(&lists[k]);
        while (p->pending_lists > 16 * (size_t)B && !p->stopping)
            uv_run(&p->loop, UV_RUN_ONCE);
        vg_progress_update(&r->pr, (uint64_t)(s + n), 0);
    }
    if (rc == 0 && !p->stopping)
        vg_progress_end(&r->pr);
    vg_snap_unref(snap);
    vg_ranker_free(ranker);
    free(sel);
    free(lists);
    if (rc)
        return rc;
    vg_train_info_t info = {.step = m->step, .alpha = vg_model_alpha(m), .epoch = r->o->epochs,
                            .items = m->n_items, .users = users, .trained_at = (double)time(NULL)};
    vg_pipe_publish_model(p, &info, 0);
    while ((p->pending_lists || vg_store_pending(p->store)) && !p->stopping)
        uv_run(&p->loop, UV_RUN_ONCE);
    return p->stopping ? VG_EAGAIN : 0;
}

static void print_summary(const replay_t *r)
{
    const vg_pipe_t *p = r->p;
    int users = p->hist.users.n;
    printf("{\"events\":%llu,\"invalid\":%llu,\"filtered\":%llu,\"ignored\":%llu,\"failed\":%llu,\"users\":%d,"
           "\"items\":%d,\"epochs\":%d,"
           "\"step\":%lld,\"lists\":%llu,\"train_s\":%.2f,\"seconds\":%.2f}\n",
           (unsigned long long)r->rs.events, (unsigned long long)r->rs.invalid, (unsigned long long)r->rs.filtered,
           (unsigned long long)r->ignored, (unsigned long long)p->failed_events, users, p->hist.items.n, r->o->epochs, (long long)p->model.step, (unsigned long long)p->lists, r->train_s,
           vg_mono_s() - r->t0);
    fflush(stdout);
    vg_log(VG_LOG_INFO, "replay: done: %d users, %d items, %d epochs, %.1f s", users, p->hist.items.n, r->o->epochs,
           vg_mono_s() - r->t0);
}

static int run(replay_t *r)
{
    r->t0 = vg_mono_s();
    int rc = read_file(r);
    if (rc == 0)
        rc = write_histories(r);
    free(r->ev);
    r->ev = NULL;
    if (rc == 0)
        rc = train(r);
    if (rc == 0)
        rc = write_lists(r);
    if (rc == 0)
        print_summary(r);
    return rc;
}

int vg_replay_run(const vg_config_t *cfg, const vg_replay_opts_t *o)
{
    vg_pipe_t *p = calloc(1, sizeof *p);
    if (!p) {
        vg_log(VG_LOG_ERROR, "out of memory");
        return 1;
    }
    replay_t r = {.p = p, .o = o, .rl = {.interval_s = 10, .burst = 20}};
    vg_progress_init(&r.pr, "replay", cfg->log.progress_interval_s, 1);
    int rc = vg_pipe_open(p, cfg, o->reset_model);
    p->hist.lim.max_users = 0; /* replay trains on every user of the file: all stay in memory */
    if (rc == 0)
        rc = vg_pipe_wait_loaded(p, 1);
    if (rc == 0)
        rc = run(&r);
    if (rc == VG_EAGAIN) /* stopped by a signal */
        rc = 0;
    int code = p->exit_code ? p->exit_code : rc ? 1 : 0;
    vg_pipe_close(p);
    free(p);
    if (code == 0)
        vg_log(VG_LOG_INFO, "stopped");
    return code;
}
