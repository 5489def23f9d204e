/*
 * pipeline.c — the write path both modes share (see pipeline.h).
 *
 * Invariants: the mirror changes only when Redis acknowledged the write it
 * mirrors, in send order (on_batch_done); an offset is marked done only
 * after that; users are marked for scoring after the mirror's lock is
 * released (the scorer takes its own lock before the mirror's).
 */
#include "daemon/pipeline.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "daemon/checkpoint.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/progress.h"

#define LISTS_DRAIN_S 5.0 /* how long a close waits for handed-over lists to reach Redis */

int vg_batch_push(vg_batch_t *b, const char *user, size_t user_len, const char *item, size_t item_len, double ts,
                  const char *type, int removal, vg_event_origin_t from)
{
    vg_assert(b->n < VG_BATCH_MAX && user_len <= VG_ID_MAX && item_len <= VG_ID_MAX);
    vg_pipe_event_t *e = &b->ev[b->n++];
    e->topic = from.topic;
    e->partition = from.partition;
    e->offset = from.offset;
    e->ts = ts;
    e->removal = removal != 0;
    e->user_len = (uint8_t)user_len;
    e->item_len = (uint8_t)item_len;
    memcpy(e->user, user, user_len);
    e->user[user_len] = '\0';
    memcpy(e->item, item, item_len);
    e->item[item_len] = '\0';
    snprintf(e->type, sizeof e->type, "%s", type ? type : "");
    return b->n == VG_BATCH_MAX;
}

/* ---- flow control ------------------------------------------------------------ */

void vg_pipe_update_flow(vg_pipe_t *p)
{
    if (!p->kafka || p->stopping)
        return;
    size_t max = (size_t)p->cfg->kafka.max_pending;
    vg_kafka_stats_t ks;
    vg_kafka_stats(p->kafka, &ks);
    size_t pending = p->pending_events + ks.dlq_pending; /* dead letters wait for the broker */
    int want = !p->redis_up || pending >= max;
    if (want && !p->paused) {
        vg_kafka_pause(p->kafka);
        p->paused = 1;
        vg_log(VG_LOG_INFO, "consumption paused (%s)", p->redis_up ? "Redis is behind" : "Redis is away");
    } else if (!want && p->paused && pending <= max / 2) {
        vg_kafka_resume(p->kafka);
        p->paused = 0;
        vg_log(VG_LOG_INFO, "consumption resumed");
    }
    vg_metric_set(p->m_paused, p->paused);
    vg_metric_set(p->m_pending, (double)p->pending_events);
}

/* ---- events: batch -> Redis -> mirror ------------------------------------------ */

/* ---- events Redis refused ------------------------------------------------------ */

/* The label of a Redis error reply: its code in lower case ("wrongtype"),
 * "out_of_range" for a value Redis cannot take, "error" for anything else. */
static void failure_label(const char *reply, char *out, size_t outlen)
{
    if (strstr(reply, "out of range") || strstr(reply, "not a valid float")) {
        snprintf(out, outlen, "out_of_range");
        return;
    }
    size_t n = 0;
    while (reply[n] >= 'A' && reply[n] <= 'Z' && n + 1 < outlen)
        n++;
    if (n == 0 || (reply[n] != ' ' && reply[n] != '\0')) {
        snprintf(out, outlen, "error");
        return;
    }
    for (size_t k = 0; k < n; k++)
        out[k] = (char)(reply[k] - 'A' + 'a');
    out[n] = '\0';
}

/* An event Redis refused with reply: dead-lettered (rebuilt as JSON; done
 * when the broker acknowledged the copy) or, without a DLQ, logged and
 * skipped (done now); counted either way.  Never silent. */
static void event_failed(vg_pipe_t *p, const vg_pipe_event_t *e, const char *reply)
{
    char label[24];
    failure_label(reply, label, sizeof label);
    vg_metric_family_inc(&p->failed, label, 1);
    p->failed_events++;
    int dead = 0;
    const char *topic = p->kafka ? vg_kafka_topic_name(p->kafka, e->topic) : NULL;
    if (p->kafka && p->cfg->kafka.dlq_topic[0]) {
        char *json = vg_event_to_json(e->user, e->user_len, e->item, e->item_len, e->ts, e->type[0] ? e->type : NULL);
        char reason[320];
        snprintf(reason, sizeof reason, "redis: %s", reply);
        vg_kafka_msg_t m = {.topic = topic, .topic_id = e->topic, .partition = e->partition, .offset = e->offset,
                            .key = e->user, .key_len = e->user_len, .value = json, .value_len = json ? strlen(json) : 0};
        dead = json && vg_kafka_dlq(p->kafka, &m, reason) == 0;
        free(json);
        if (dead)
            vg_metric_inc(p->m_dlq, 1);
    }
    uint64_t supp = 0;
    if (vg_ratelimit_ok(&p->failed_rl, &supp))
        vg_log(VG_LOG_ERROR, "Redis refused the event at %s/%d@%lld (user %s): %s; %s%s", topic ? topic : "replay",
               (int)e->partition, (long long)e->offset, e->user, reply,
               dead ? "dead-lettered" : "skipped and counted in vaegan_events_failed_total",
               supp ? " (and earlier ones not logged)" : "");
    if (p->kafka && !dead && e->partition >= 0)
        vg_kafka_done(p->kafka, e->topic, e->partition, e->offset);
}

/* The store's answer to a batch (store.h, vg_store_events_cb): the events it
 * stored go to the mirror and are done; the refused ones fail one by one. */
static void on_batch_done(void *ud, int status, const char *const *ev_err, size_t n_ev)
{
    vg_batch_t *b = ud;
    vg_pipe_t *p = b->p;
    vg_assert(n_ev == b->n);
    if (status == VG_EAGAIN) { /* cancelled at close: not done, read again after the restart */
        p->pending_events -= b->n;
        free(b);
        return;
    }
    int changed = 0, n_marks = 0, n_reload = 0, n_gone = 0, rc = 0;
    size_t stored = 0;
    int32_t marks[VG_BATCH_MAX], reload[VG_BATCH_MAX], gone[VG_BATCH_MAX];
    double now = vg_wall_s();
    vg_hist_wrlock(&p->hist);
    for (size_t k = 0; k < b->n; k++) {
        if (status && (!ev_err || ev_err[k]))
            continue;
        const vg_pipe_event_t *e = &b->ev[k];
        int32_t u = -1;
        if (p->monitor && !e->removal) /* judged before the mirror has it */
            vg_monitor_event(p->monitor, &p->hist, e->user, e->user_len, e->item, e->item_len, e->ts, now);
        int r = vg_hist_apply(&p->hist, e->user, e->user_len, e->item, e->item_len, e->ts, e->removal, &u);
        if (r >= 0 && e->slot >= 0) /* owned while the partition of its latest event is (own.h) */
            p->hist.u[u].part = (uint16_t)(e->slot + 1);
        if (r < 0) {
            rc = r;
            vg_hist_unsure(&p->hist, u); /* Redis has the event, the mirror may not */
        }
        else if (r == VG_HIST_RELOAD)
            reload[n_reload++] = u;
        else if (r > 0)
            marks[n_marks++] = u;
        changed += r == 0 || r == 1;
        stored++;
    }
    for (size_t k = 0; k < b->n; k++) { /* the trim bound follows (hist.h, vg_hist_send) */
        const vg_pipe_event_t *e = &b->ev[k];
        vg_hist_acked(&p->hist, e->user, e->user_len, e->hidx, e->hgen, e->counted,
                      !(status && (!ev_err || ev_err[k])), e->trim);
    }
    vg_hist_acked_batch(&p->hist);
    n_gone = vg_hist_evict(&p->hist, gone, VG_BATCH_MAX);
    int users = p->hist.live_users, items = p->hist.items.n;
    vg_hist_unlock(&p->hist);
    if (rc)
        vg_log(VG_LOG_ERROR, "history mirror: %s", vg_strerror(rc));
    vg_own_gone(p, gone, n_gone); /* after the unlock: the scorer takes its own lock before the mirror's */
    for (int k = 0; k < n_marks && p->scorer; k++)
        vg_scorer_mark(p->scorer, marks[k]);
    for (int k = 0; k < n_reload; k++)
        vg_own_reload(p, reload[k]);
    vg_metric_inc(p->m_evicted, n_gone);
    for (size_t k = 0; k < b->n; k++) {
        if (status && (!ev_err || ev_err[k]))
            event_failed(p, &b->ev[k], ev_err ? ev_err[k] : "refused (which events of the batch is not known)");
        else if (p->kafka)
            vg_kafka_done(p->kafka, b->ev[k].topic, b->ev[k].partition, b->ev[k].offset);
    }
    if (p->trainer && changed)
        vg_trainer_events(p->trainer, changed);
    p->pending_events -= b->n;
    vg_metric_inc(p->m_stored, (double)stored);
    vg_metric_set(p->m_users, users);
    vg_metric_set(p->m_items, items);
    vg_metric_set(p->m_waiting, p->hist.pend.n - p->hist.pend.n_free);
    free(b);
    vg_pipe_update_flow(p);
}

void vg_pipe_send(vg_pipe_t *p, vg_batch_t *b)
{
    if (b->n == 0) {
        free(b);
        return;
    }
    b->p = p;
    vg_store_event_t ev[VG_BATCH_MAX];
    for (size_t k = 0; k < b->n; k++) {
        vg_pipe_event_t *e = &b->ev[k];
        e->trim = (uint8_t)vg_hist_send(&p->hist, e->user, e->user_len, &e->hidx, &e->hgen, &e->counted);
        e->trim |= p->hist.shared; /* others write histories too: the mirror's bound is not Redis' count */
        e->slot = p->own.on && e->partition >= 0 ? (int16_t)vg_own_slot(&p->own, e->topic, e->partition) : -1;
        vg_own_slot_t *s = e->slot >= 0 ? &p->own.slot[e->slot] : NULL;
        if (s)
            s->added++;
        ev[k] = (vg_store_event_t){e->user,     e->user_len,           e->item, e->item_len, e->ts, e->removal,
                                   !e->trim,    s ? s->name : NULL,    s ? s->name_len : 0};
    }
    p->pending_events += b->n;
    int rc = vg_store_add_events(p->store, ev, b->n, on_batch_done, b);
    if (rc == 0)
        vg_hist_sent_batch(&p->hist);
    if (rc) { /* out of memory: the events stay unacknowledged and come back after a restart */
        vg_log(VG_LOG_ERROR, "cannot queue a history batch: %s", vg_strerror(rc));
        p->pending_events -= b->n;
        free(b);
    }
    vg_pipe_update_flow(p);
}

int vg_pipe_event_kind(const vg_pipe_t *p, const char *type)
{
    size_t n = strlen(type);
    if (vg_strlist_has(&p->cfg->events.removal_types, type, n))
        return VG_KIND_REMOVAL;
    return vg_strlist_has(&p->cfg->events.types, type, n) ? VG_KIND_INTERACTION : VG_KIND_OTHER;
}

/* ---- erasure ------------------------------------------------------------------- */

typedef struct forget_ctx {
    vg_pipe_t *p;
    vg_event_origin_t from;
    char mark[VG_FORGET_MARK_LEN + 1];
    size_t user_len;
    char user[]; /* zeroed before it is freed */
} forget_ctx_t;

static void on_forget_done(void *ud, int status)
{
    forget_ctx_t *c = ud;
    vg_pipe_t *p = c->p;
    if (status == VG_EAGAIN) { /* cancelled at close: not done, read again after the restart */
        p->pending_events--;
        sodium_memzero(c->user, c->user_len);
        free(c);
        return;
    }
    if (status) { /* logged by the store with Redis' reply; never silent */
        vg_log(VG_LOG_ERROR, "Redis refused the erasure of a user (mark %s) at %d@%lld: %s; counted in "
               "vaegan_events_failed_total{reason=\"forget\"}", c->mark, (int)c->from.partition,
               (long long)c->from.offset, vg_strerror(status));
        vg_metric_family_inc(&p->failed, "forget", 1);
        p->failed_events++;
    } else {
        vg_hist_wrlock(&p->hist);
        int32_t ui = vg_hist_forget(&p->hist, c->user, c->user_len);
        int users = p->hist.live_users;
        vg_hist_unlock(&p->hist);
        if (ui >= 0) /* after the unlock, as for marks */
            vg_own_gone(p, &ui, 1);
        int slot = p->own.on && c->from.partition >= 0 ? vg_own_slot(&p->own, c->from.topic, c->from.partition) : -1;
        if (slot >= 0 && vg_store_part_rem(p->store, p->own.slot[slot].name, p->own.slot[slot].name_len, c->user,
                                           c->user_len, NULL, NULL))
            vg_log(VG_LOG_ERROR, "cannot queue the removal of a forgotten user from partition %s's recent users "
                   "(warming skips it: its mark stays)", p->own.slot[slot].name);
        vg_metric_inc(p->m_forgets, 1);
        vg_metric_set(p->m_users, users);
        vg_log(VG_LOG_INFO, "a user was forgotten (erasure mark %s)", c->mark);
    }
    if (p->kafka && c->from.partition >= 0)
        vg_kafka_done(p->kafka, c->from.topic, c->from.partition, c->from.offset);
    p->pending_events--;
    sodium_memzero(c->user, c->user_len);
    free(c);
    vg_pipe_update_flow(p);
}

void vg_pipe_forget(vg_pipe_t *p, const char *user, size_t user_len, double ts, vg_event_origin_t from)
{
    forget_ctx_t *c = malloc(sizeof *c + user_len + 1);
    int rc = c ? 0 : VG_ENOMEM;
    if (c) {
        *c = (forget_ctx_t){.p = p, .from = from, .user_len = user_len};
        memcpy(c->user, user, user_len);
        c->user[user_len] = '\0';
        vg_forget_mark(&p->forget, user, user_len, c->mark);
        rc = vg_forget_add(&p->forget, c->mark, VG_FORGET_MARK_LEN, ts);
    }
    if (rc == 0) {
        double keep_after = ts - p->cfg->events.forget_retention_s; /* in the events' own time */
        rc = vg_store_forget(p->store, user, user_len, c->mark, VG_FORGET_MARK_LEN, ts, keep_after, on_forget_done, c);
    }
    if (rc) { /* not done: the forget comes back after a restart */
        vg_log(VG_LOG_ERROR, "cannot queue the erasure of a user: %s", vg_strerror(rc));
        free(c);
        return;
    }
    p->pending_events++;
    vg_pipe_update_flow(p);
}

int vg_pipe_refuses(vg_pipe_t *p, const char *user, size_t user_len, double ts)
{
    if (!vg_forget_refuses(&p->forget, user, user_len, ts))
        return 0;
    vg_metric_inc(p->m_refused, 1);
    return 1;
}

/* ---- lists: ranking -> Redis ------------------------------------------------- */

typedef struct put_ctx {
    vg_pipe_t *p;
    double t_mark;
    int release;
    int32_t user;   /* for the live quality (sampled users only, n_top > 0): */
    uint32_t gen;
    int n_top;
    int32_t top[];  /* the list's first n_top items */
} put_ctx_t;

static void on_list_done(void *ud, int status)
{
    put_ctx_t *c = ud;
    vg_pipe_t *p = c->p;
    p->pending_lists--;
    if (status == VG_EAGAIN) { /* cancelled at close (vg_store_close_cancel) */
        free(c);
        return;
    }
    if (status == VG_ESTALE) { /* Redis holds a list of a newer history (another writer's) */
        vg_metric_inc(p->m_lists_stale, 1);
    } else {
        if (status)
            vg_log(VG_LOG_ERROR, "Redis refused a rec list write: %s", vg_strerror(status));
        p->lists++;
        vg_metric_inc(p->m_lists, 1);
        if (c->t_mark > 0)
            vg_metric_observe(p->m_latency, vg_mono_s() - c->t_mark);
    }
    if (c->release && p->scorer)
        vg_scorer_release(p->scorer, 1);
    if (status == 0 && c->n_top && p->hist.u[c->user].gen == c->gen)
        vg_monitor_list(p->monitor, c->user, c->gen, c->top, c->n_top);
    free(c);
}

void vg_pipe_put_lists(vg_pipe_t *p, const vg_list_t *lists, int n, int release)
{
    const char *items[VG_TOP_N_MAX];
    size_t lens[VG_TOP_N_MAX];
    for (int k = 0; k < n; k++) {
        const vg_list_t *l = &lists[k];
        const char *user = vg_vocab_id(&p->hist.users, l->user); /* loop thread: no lock needed */
        if (!user[0] || l->stale || p->hist.u[l->user].gen != l->gen) { /* gone, or not whole, when ranked */
            if (release && p->scorer)
                vg_scorer_release(p->scorer, 1);
            continue;
        }
        int m = l->n < VG_TOP_N_MAX ? l->n : VG_TOP_N_MAX;
        for (int j = 0; j < m; j++) {
            items[j] = vg_vocab_id(&p->hist.items, l->items[j]);
            lens[j] = strlen(items[j]);
        }
        int n_top = vg_monitor_wants(p->monitor, user, strlen(user)) ? (m < VG_QUALITY_K ? m : VG_QUALITY_K) : 0;
        put_ctx_t *c = malloc(sizeof *c + (size_t)n_top * sizeof c->top[0]);
        int rc = c ? 0 : VG_ENOMEM;
        if (c) {
            *c = (put_ctx_t){p, l->t_mark, release, l->user, l->gen, n_top};
            memcpy(c->top, l->items, (size_t)n_top * sizeof c->top[0]);
            rc = vg_store_put_rec(p->store, user, strlen(user), items, lens, l->scores, (size_t)m, l->hts,
                                  on_list_done, c);
        }
        if (rc) {
            vg_log(VG_LOG_ERROR, "cannot queue rec:%s: %s", user, vg_strerror(rc));
            free(c);
            if (release && p->scorer)
                vg_scorer_release(p->scorer, 1);
            continue;
        }
        p->pending_lists++;
    }
}

/* ---- the model: vaegan:model --------------------------------------------------- */

static void on_model_written(void *ud, int status)
{
    (void)ud;
    if (status == VG_EFENCED)
        vg_log(VG_LOG_WARN, "vaegan:model not written: a newer leader wrote it");
}

void vg_pipe_publish_model(vg_pipe_t *p, const vg_train_info_t *info, uint64_t epoch)
{
    char v[7][64];
    snprintf(v[0], sizeof v[0], "%lld", (long long)info->step);
    snprintf(v[1], sizeof v[1], "%.4f", info->epoch);
    snprintf(v[2], sizeof v[2], "%.17g", info->alpha);
    snprintf(v[3], sizeof v[3], "%d", info->items);
    snprintf(v[4], sizeof v[4], "%d", info->users);
    snprintf(v[5], sizeof v[5], "%.3f", info->trained_at);
    snprintf(v[6], sizeof v[6], "VAEGANST/1 %s", vg_variant_name(p->cfg->model.cfg.variant));
    const char *fields[7] = {"step", "epoch", "alpha", "items", "users_seen", "trained_at", "format"};
    const char *values[7] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    int rc = vg_store_set_model(p->store, epoch, fields, values, 7, on_model_written, NULL);
    if (rc)
        vg_log(VG_LOG_ERROR, "cannot queue the vaegan:model update: %s", vg_strerror(rc));
    vg_metric_set(p->m_step, (double)info->step);
    vg_metric_set(p->m_alpha, info->alpha);
}

/* ---- start: Redis, the histories ------------------------------------------------ */

static void on_store_up(void *ud, int up)
{
    vg_pipe_t *p = ud;
    p->redis_up = up;
    vg_metric_set(p->m_redis_up, up);
    if (!up)
        vg_notify("STATUS=Redis is away; consumption paused, reconnecting");
    vg_pipe_update_flow(p);
}

/* The store was refused for good (store.h): stop at once, nothing more is
 * marked done, exit VG_EXIT_REDIS_REFUSED. */
static void on_store_fatal(void *ud, const char *msg)
{
    vg_pipe_t *p = ud;
    vg_log(VG_LOG_ERROR, "stopping: %s; the events not yet stored stay uncommitted (exit %d)", msg,
           VG_EXIT_REDIS_REFUSED);
    p->redis_refused = 1;
    p->exit_code = VG_EXIT_REDIS_REFUSED;
    p->loaded = 1; /* ends a start-up load that waits */
    vg_pipe_stop(p, 0);
}

static void on_user_loaded(void *ud, const char *user, size_t ulen, int removals, const char *const *items,
                           const size_t *lens, const double *ts, size_t n)
{
    vg_pipe_t *p = ud;
    int32_t gone[64];
    vg_hist_wrlock(&p->hist);
    for (size_t k = 0; k < n; k++)
        if ((removals ? vg_hist_load_removal(&p->hist, user, ulen, items[k], lens[k], ts[k])
                      : vg_hist_add(&p->hist, user, ulen, items[k], lens[k], ts[k], NULL)) < 0)
            vg_log(VG_LOG_ERROR, "history mirror: out of memory");
    /* users come in ascending order of their latest event: the oldest leave memory first */
    while (vg_hist_evict(&p->hist, gone, 64) == 64)
        ;
    vg_hist_unlock(&p->hist);
    vg_progress_t *pr = p->load_progress;
    if (pr && !removals) /* with removals each user comes twice: its history, then its rm:<user> */
        vg_progress_update(pr, pr->done + 1, 0);
}

static void on_users_counted(void *ud, uint64_t users)
{
    vg_pipe_t *p = ud;
    if (p->load_progress)
        vg_progress_total(p->load_progress, users);
}

static void on_mark_loaded(void *ud, const char *mark, size_t len, double ts)
{
    vg_pipe_t *p = ud;
    if (vg_forget_add(&p->forget, mark, len, ts))
        vg_log(VG_LOG_ERROR, "erasure marks: out of memory");
}

static void on_loaded(void *ud, int status)
{
    vg_pipe_t *p = ud;
    p->loaded = 1;
    if (status == VG_EAGAIN) /* cancelled at close */
        return;
    if (status) {
        vg_log(VG_LOG_ERROR, "cannot load the histories from Redis: %s", vg_strerror(status));
        p->exit_code = 1;
    }
    uv_stop(&p->loop);
}

int vg_pipe_wait_loaded(vg_pipe_t *p, int histories)
{
    vg_notify("STATUS=connecting to Redis");
    while (!p->redis_up && !p->stopping)
        uv_run(&p->loop, UV_RUN_ONCE);
    if (p->stopping)
        return VG_EAGAIN;
    vg_notify("STATUS=loading histories from Redis");
    double t0 = vg_mono_s();
    vg_store_loader_t ld = {.on_user = histories ? on_user_loaded : NULL, .on_mark = on_mark_loaded, .on_count = on_users_counted,
                            .on_done = on_loaded, .ud = p,
                            .marks_since = -INFINITY}; /* expired marks went at the last forget */
    p->hist.bulk = 1; /* users evicted during the load are not read back: they are not asked for */
    int rc = vg_store_load(p->store, &ld);
    if (rc)
        return rc;
    /* progress lines, STATUS= and EXTEND_TIMEOUT_USEC while users arrive (progress.h) */
    vg_progress_t pr;
    vg_progress_init(&pr, "start-up", p->cfg->log.progress_interval_s, 1);
    vg_progress_start(&pr, histories ? "loading histories" : "loading erasure marks", "users", 0, 0);
    p->load_progress = &pr;
    while (!p->loaded && !p->stopping) {
        uv_run(&p->loop, UV_RUN_ONCE);
        vg_progress_update(&pr, pr.done, 0);
    }
    if (p->loaded && !p->exit_code)
        vg_progress_end(&pr);
    p->load_progress = NULL; /* later callbacks of a stopped load find no progress */
    p->hist.bulk = 0;
    if (p->exit_code || p->stopping)
        return p->exit_code ? VG_EREDIS : VG_EAGAIN;
    vg_log(VG_LOG_INFO, "loaded %d users, %d items, %llu history entries, %d erasure marks from Redis in %.1f s",
           p->hist.users.n, p->hist.items.n, (unsigned long long)p->hist.entries, p->forget.marks.n, vg_mono_s() - t0);
    return 0;
}

/* ---- signals ---------------------------------------------------------------------- */

void vg_pipe_stop(vg_pipe_t *p, int sig)
{
    if (p->stopping)
        return;
    if (sig)
        vg_log(VG_LOG_INFO, "%s: stopping (draining in-flight writes)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    p->stopping = 1;
    p->stop_started = vg_mono_s();
    vg_notify("STOPPING=1");
    if (p->on_stop)
        p->on_stop(p);
    else
        uv_stop(&p->loop);
}

static void on_signal(uv_signal_t *s, int sig)
{
    vg_pipe_t *p = s->data;
    if (sig == SIGHUP) {
        vg_log_reopen();
        vg_log(VG_LOG_INFO, "SIGHUP: log reopened");
        return;
    }
    vg_pipe_stop(p, sig);
}

/* ---- set-up and tear-down ------------------------------------------------------- */

static vg_metric_t *metric(vg_pipe_t *p, const char *name, const char *help, int type)
{
    return vg_metrics_add(p->metrics, name, help, type, NULL, 0);
}

static int open_metrics(vg_pipe_t *p)
{
    if (vg_metrics_init(&p->metrics))
        return VG_ENOMEM;
    p->m_events = metric(p, "vaegan_events_total", "Valid events read", VG_METRIC_COUNTER);
    p->m_key_mismatch = metric(p, "vaegan_events_key_not_user_total",
                               "Valid events whose Kafka key is not their user (none, or another): a user's events "
                               "may then arrive on several partitions, and several instances",
                               VG_METRIC_COUNTER);
    p->m_stored = metric(p, "vaegan_events_stored_total", "Events whose history write Redis acknowledged",
                         VG_METRIC_COUNTER);
    p->m_invalid = metric(p, "vaegan_events_invalid_total", "Invalid events skipped", VG_METRIC_COUNTER);
    p->m_dlq = metric(p, "vaegan_events_dead_lettered_total",
                      "Events copied to the DLQ (invalid, or refused by Redis)", VG_METRIC_COUNTER);
    p->failed = (vg_metric_family_t){.reg = p->metrics, .name = "vaegan_events_failed_total",
                                     .help = "Events Redis refused (dead-lettered, or skipped without a DLQ), by "
                                             "the Redis error",
                                     .label = "reason"};
    p->failed_rl = (vg_ratelimit_t)VG_RATELIMIT_INIT(10, 20);
    p->m_removals = metric(p, "vaegan_events_removals_total", "Events of a removal type (events.removal_types) read",
                           VG_METRIC_COUNTER);
    p->m_forgets = metric(p, "vaegan_users_forgotten_total", "Users erased by a forget event", VG_METRIC_COUNTER);
    p->m_refused = metric(p, "vaegan_events_forgotten_total",
                          "Events refused because their user was forgotten at a later ts", VG_METRIC_COUNTER);
    p->m_lists = metric(p, "vaegan_lists_written_total", "rec:<user> lists written", VG_METRIC_COUNTER);
    p->m_lists_stale = metric(p, "vaegan_lists_superseded_total",
                              "rec:<user> lists Redis refused because it holds one of a newer history (another "
                              "writer's)",
                              VG_METRIC_COUNTER);
    p->m_pending = metric(p, "vaegan_pending_events", "Events read, not yet acknowledged by Redis", VG_METRIC_GAUGE);
    p->m_users = metric(p, "vaegan_users", "Users whose history is in memory", VG_METRIC_GAUGE);
    p->m_evicted = metric(p, "vaegan_users_evicted_total",
                          "Users evicted from memory (history.max_users; their Redis data stays)", VG_METRIC_COUNTER);
    p->m_reloaded = metric(p, "vaegan_users_reloaded_total",
                           "Users whose history was read back from Redis (returning after an eviction; "
                           "with several instances also new, warmed and tailed ones)",
                           VG_METRIC_COUNTER);
    p->m_waiting = metric(p, "vaegan_items_waiting",
                          "Items not in the model yet (model.min_item_users, model.max_items)", VG_METRIC_GAUGE);
    p->m_items = metric(p, "vaegan_items", "Items known", VG_METRIC_GAUGE);
    p->m_step = metric(p, "vaegan_model_step", "Training steps of the served model", VG_METRIC_GAUGE);
    p->m_alpha = metric(p, "vaegan_model_alpha", "Annealing weight alpha", VG_METRIC_GAUGE);
    p->m_redis_up = metric(p, "vaegan_redis_up", "1 when Redis is connected", VG_METRIC_GAUGE);
    p->m_paused = metric(p, "vaegan_kafka_paused", "1 while consumption is paused", VG_METRIC_GAUGE);
    p->m_latency = metric(p, "vaegan_list_latency_seconds", "History acknowledged to rec:<user> written",
                          VG_METRIC_HISTOGRAM);
    char err[512];
    const char *listen = p->cfg->metrics.listen;
    int rc = vg_metrics_listen(p->metrics, listen, err, sizeof err);
    if (rc)
        vg_log(VG_LOG_ERROR, "metrics.listen: %s", err);
    else if (listen[0])
        vg_log(VG_LOG_INFO, "metrics on http://%s/metrics", listen);
    return rc;
}

static int open_store(vg_pipe_t *p)
{
    const vg_config_t *c = p->cfg;
    vg_store_cfg_t sc = {
        .host = c->redis.host, .port = c->redis.port, .socket = c->redis.socket, .password = c->redis.password,
        .db = c->redis.db, .prefix = c->redis.prefix, .history_max = c->history.max_items,
        .removals = c->events.removal_types.n > 0,
        .rec_ttl_s = c->serve.rec_ttl_s, .rec_zadd = c->redis.rec_zadd, .cluster = c->redis.cluster, .max_inflight = 4096, .on_up = on_store_up, .on_fatal = on_store_fatal, .log = vg_log_cb, .ud = p,
    };
    char err[512];
    int rc = vg_store_init(&p->store, &p->loop, &sc, err, sizeof err);
    if (rc)
        vg_log(VG_LOG_ERROR, "redis: %s", err);
    return rc;
}

int vg_pipe_open(vg_pipe_t *p, const vg_config_t *cfg, int reset)
{
    p->cfg = cfg;
    p->lock_fd = -1;
    vg_hist_limits_t lim = {.max_items = cfg->history.max_items, .max_users = cfg->history.max_users,
                            .catalogue_max = cfg->model.max_items, .min_item_users = cfg->model.min_item_users,
                            .max_pending = cfg->model.max_pending_items};
    if (vg_hist_init_limits(&p->hist, &lim))
        return VG_ENOMEM;
    int rc = vg_ckpt_lock(cfg->state.dir, &p->lock_fd);
    if (rc)
        return rc == VG_EAGAIN ? VG_EIO : rc; /* not "stopped by a signal" */
    rc = vg_ckpt_load(&p->model, &p->hist, cfg->state.dir, reset, &cfg->model.cfg, cfg->model.batch,
                          p->state_path, sizeof p->state_path);
    if (rc < 0)
        return rc;
    p->have_model = rc == 1;
    if ((rc = vg_forget_open(&p->forget, cfg->state.dir)))
        return rc;
    p->forget_open = 1;
    if ((rc = open_metrics(p)))
        return rc;
    uv_loop_init(&p->loop);
    p->loop_open = 1;
    if ((rc = open_store(p)))
        return rc;
    uv_signal_t *sigs[] = {&p->sig_term, &p->sig_int, &p->sig_hup};
    const int nums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int k = 0; k < 3; k++) {
        uv_signal_init(&p->loop, sigs[k]);
        sigs[k]->data = p;
        uv_signal_start(sigs[k], on_signal, nums[k]);
    }
    return 0;
}

static void close_cb(uv_handle_t *h) { (void)h; }

int vg_pipe_stop_trainer(vg_pipe_t *p)
{
    if (!p->trainer)
        return 0;
    char err[512];
    int rc = vg_trainer_stop(p->trainer, err, sizeof err);
    if (rc)
        vg_log(VG_LOG_ERROR, "saving the model state: %s", err);
    else
        vg_log(VG_LOG_INFO, "model state saved to %s", p->state_path);
    p->trainer = NULL;
    return rc;
}

void vg_pipe_close(vg_pipe_t *p)
{
    /* lists already handed over get a moment to reach Redis */
    double t0 = vg_mono_s();
    while (p->store && p->pending_lists && vg_store_is_up(p->store) && vg_mono_s() - t0 < LISTS_DRAIN_S)
        uv_run(&p->loop, UV_RUN_ONCE);
    vg_pipe_stop_trainer(p); /* first: its rounds hand snapshots to the scorer */
    if (p->scorer)
        vg_scorer_stop(p->scorer);
    p->scorer = NULL;
    if (p->store) /* what is still pending is not done: its callbacks free their contexts */
        vg_store_close_cancel(p->store);
    p->store = NULL;
    if (p->loop_open) {
        uv_handle_t *hs[] = {(uv_handle_t *)&p->sig_term, (uv_handle_t *)&p->sig_int, (uv_handle_t *)&p->sig_hup};
        for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++)
            if (hs[k]->loop && !uv_is_closing(hs[k]))
                uv_close(hs[k], close_cb);
        uv_run(&p->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&p->loop))
            vg_log(VG_LOG_WARN, "loop closed with handles still open");
    }
    if (p->have_model)
        vg_model_close(&p->model);
    p->have_model = 0;
    vg_metrics_free(p->metrics);
    p->metrics = NULL;
    if (p->forget_open)
        vg_forget_close(&p->forget);
    p->forget_open = 0;
    if (p->lock_fd >= 0)
        close(p->lock_fd); /* last: the state file was saved under the lock */
    p->lock_fd = -1;
    vg_hist_free(&p->hist);
}
