/*
 * daemon.c — vaegand's streaming mode: the loop thread's side of every
 * module (see daemon.h for the life of an event and the start/stop order).
 *
 * Everything here runs on the loop thread except on_round() (trainer
 * thread), which only hands a snapshot to the scorer and the round's figures
 * to the loop through model_async.
 */
#include "daemon/internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon/notify.h"

#define STATE_FILE "model.ckpt"
#define STOP_DRAIN_S 30.0 /* how long a stop waits for Redis to take the in-flight writes */

/* ---- flow control ------------------------------------------------------------ */

static void update_flow(vg_daemon_t *d)
{
    if (!d->kafka || d->stopping)
        return;
    size_t max = (size_t)d->cfg->kafka.max_pending;
    int want = !d->redis_up || d->pending_events >= max;
    if (want && !d->paused) {
        vg_kafka_pause(d->kafka);
        d->paused = 1;
        vg_log(VG_LOG_INFO, "consumption paused (%s)", d->redis_up ? "Redis is behind" : "Redis is away");
    } else if (!want && d->paused && d->pending_events <= max / 2) {
        vg_kafka_resume(d->kafka);
        d->paused = 0;
        vg_log(VG_LOG_INFO, "consumption resumed");
    }
    vg_metric_set(d->m_paused, d->paused);
    vg_metric_set(d->m_pending, (double)d->pending_events);
}

/* ---- events: Kafka -> batch -> Redis -> mirror ---------------------------------- */

static void on_batch_done(void *ud, int status)
{
    vg_batch_t *b = ud;
    vg_daemon_t *d = b->d;
    if (status)
        vg_log(VG_LOG_ERROR, "Redis refused a history batch of %zu events (%s); they are skipped", b->n,
               vg_strerror(status));
    int changed = 0, n_marks = 0, rc = 0;
    int32_t marks[VG_BATCH_MAX];
    vg_hist_wrlock(&d->hist);
    for (size_t k = 0; k < b->n && status == 0; k++) {
        const vg_pev_t *e = &b->ev[k];
        int32_t u;
        int r = vg_hist_add(&d->hist, e->user, e->user_len, e->item, e->item_len, e->ts, &u);
        if (r < 0)
            rc = r;
        else if (r > 0)
            marks[n_marks++] = u;
        changed += r >= 0;
    }
    int users = d->hist.users.n, items = d->hist.items.n;
    vg_hist_unlock(&d->hist);
    if (rc)
        vg_log(VG_LOG_ERROR, "history mirror: %s", vg_strerror(rc));
    /* after the unlock: the scorer takes its own lock before the mirror's */
    for (int k = 0; k < n_marks && d->scorer; k++)
        vg_scorer_mark(d->scorer, marks[k]);
    if (d->kafka)
        for (size_t k = 0; k < b->n; k++)
            vg_kafka_done(d->kafka, b->ev[k].partition, b->ev[k].offset);
    if (d->trainer && changed)
        vg_trainer_events(d->trainer, changed);
    d->pending_events -= b->n;
    if (status == 0)
        vg_metric_inc(d->m_stored, (double)b->n);
    vg_metric_set(d->m_users, users);
    vg_metric_set(d->m_items, items);
    free(b);
    update_flow(d);
}

void vg_d_send_batch(vg_daemon_t *d)
{
    vg_batch_t *b = d->cur;
    if (!b || b->n == 0)
        return;
    d->cur = NULL;
    vg_store_event_t ev[VG_BATCH_MAX];
    for (size_t k = 0; k < b->n; k++)
        ev[k] = (vg_store_event_t){b->ev[k].user, b->ev[k].user_len, b->ev[k].item, b->ev[k].item_len, b->ev[k].ts};
    d->pending_events += b->n;
    int rc = vg_store_add_events(d->store, ev, b->n, on_batch_done, b);
    if (rc) { /* out of memory: the events stay unacknowledged and come back after a restart */
        vg_log(VG_LOG_ERROR, "cannot queue a history batch: %s", vg_strerror(rc));
        d->pending_events -= b->n;
        free(b);
    }
    update_flow(d);
}

static vg_pev_t *batch_slot(vg_daemon_t *d)
{
    if (!d->cur) {
        d->cur = malloc(sizeof *d->cur);
        if (!d->cur)
            return NULL;
        d->cur->d = d;
        d->cur->n = 0;
    }
    return &d->cur->ev[d->cur->n];
}

static void on_message(void *ud, const vg_kafka_msg_t *m)
{
    vg_daemon_t *d = ud;
    vg_event_t ev;
    char reason[256];
    int rc = m->value ? vg_event_parse(m->value, m->value_len, &ev, reason, sizeof reason) : VG_EFORMAT;
    if (!m->value)
        snprintf(reason, sizeof reason, "empty message");
    vg_pev_t *e = rc == 0 ? batch_slot(d) : NULL;
    if (rc == 0 && !e) {
        rc = VG_ENOMEM;
        snprintf(reason, sizeof reason, "out of memory");
    }
    if (rc) {
        d->invalid++;
        vg_metric_inc(d->m_invalid, 1);
        uint64_t suppressed = 0;
        if (vg_ratelimit_ok(&d->invalid_rl, &suppressed))
            vg_log(VG_LOG_WARN, "invalid event skipped at %s/%d@%lld: %s%s", m->topic, (int)m->partition,
                   (long long)m->offset, reason, suppressed ? " (and earlier ones not logged)" : "");
        if (vg_kafka_dlq(d->kafka, m, reason) == 0 && d->cfg->kafka.dlq_topic[0])
            vg_metric_inc(d->m_dlq, 1);
        vg_kafka_done(d->kafka, m->partition, m->offset);
        return;
    }
    e->partition = m->partition;
    e->offset = m->offset;
    e->ts = ev.ts;
    e->user_len = (uint8_t)ev.user_len;
    e->item_len = (uint8_t)ev.item_len;
    memcpy(e->user, ev.user, ev.user_len + 1);
    memcpy(e->item, ev.item, ev.item_len + 1);
    d->events++;
    vg_metric_inc(d->m_events, 1);
    if (++d->cur->n == VG_BATCH_MAX)
        vg_d_send_batch(d);
}

/* After every loop iteration: whatever the consumer delivered goes out. */
static void on_flush(uv_check_t *c)
{
    vg_daemon_t *d = c->data;
    if (d->cur && d->cur->n)
        vg_d_send_batch(d);
}

/* ---- lists: scorer -> Redis ------------------------------------------------ */

typedef struct put_ctx {
    vg_daemon_t *d;
    double t_mark;
    int release;
} put_ctx_t;

static void on_list_done(void *ud, int status)
{
    put_ctx_t *p = ud;
    vg_daemon_t *d = p->d;
    if (status)
        vg_log(VG_LOG_ERROR, "Redis refused a rec list write: %s", vg_strerror(status));
    d->pending_lists--;
    d->lists++;
    vg_metric_inc(d->m_lists, 1);
    if (p->t_mark > 0)
        vg_metric_observe(d->m_latency, vg_mono_s() - p->t_mark);
    if (p->release && d->scorer)
        vg_scorer_release(d->scorer, 1);
    free(p);
}

void vg_d_put_lists(vg_daemon_t *d, const vg_list_t *lists, int n, int release)
{
    const char *items[10000 + 1];
    size_t lens[10000 + 1];
    for (int k = 0; k < n; k++) {
        const vg_list_t *l = &lists[k];
        const char *user = vg_vocab_id(&d->hist.users, l->user); /* loop thread: no lock needed */
        int m = l->n < 10000 ? l->n : 10000;
        for (int j = 0; j < m; j++) {
            items[j] = vg_vocab_id(&d->hist.items, l->items[j]);
            lens[j] = strlen(items[j]);
        }
        put_ctx_t *p = malloc(sizeof *p);
        int rc = p ? 0 : VG_ENOMEM;
        if (p) {
            *p = (put_ctx_t){d, l->t_mark, release};
            rc = vg_store_put_rec(d->store, user, strlen(user), items, lens, l->scores, (size_t)m, on_list_done, p);
        }
        if (rc) {
            vg_log(VG_LOG_ERROR, "cannot queue rec:%s: %s", user, vg_strerror(rc));
            free(p);
            if (release && d->scorer)
                vg_scorer_release(d->scorer, 1);
            continue;
        }
        d->pending_lists++;
    }
}

static void on_lists(void *ud, const vg_list_t *lists, int n)
{
    vg_d_put_lists(ud, lists, n, 1);
}

/* ---- the model: trainer -> scorer, vaegan:model ------------------------------- */

void vg_d_publish_model(vg_daemon_t *d, const vg_train_info_t *info)
{
    char v[7][64];
    snprintf(v[0], sizeof v[0], "%lld", (long long)info->step);
    snprintf(v[1], sizeof v[1], "%.4f", info->epoch);
    snprintf(v[2], sizeof v[2], "%.17g", info->alpha);
    snprintf(v[3], sizeof v[3], "%d", info->items);
    snprintf(v[4], sizeof v[4], "%d", info->users);
    snprintf(v[5], sizeof v[5], "%.3f", info->trained_at);
    snprintf(v[6], sizeof v[6], "VAEGANST/1 %s", vg_variant_name(d->cfg->model.cfg.variant));
    const char *fields[7] = {"step", "epoch", "alpha", "items", "users_seen", "trained_at", "format"};
    const char *values[7] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    int rc = vg_store_set_model(d->store, fields, values, 7, NULL, NULL);
    if (rc)
        vg_log(VG_LOG_ERROR, "cannot queue the vaegan:model update: %s", vg_strerror(rc));
    vg_metric_set(d->m_step, (double)info->step);
    vg_metric_set(d->m_alpha, info->alpha);
}

static void on_round(void *ud, vg_snap_t *snap, const vg_train_info_t *info)
{
    vg_daemon_t *d = ud;
    if (snap)
        vg_scorer_set_model(d->scorer, snap);
    pthread_mutex_lock(&d->info_mu);
    d->info = *info;
    d->info_new = 1;
    pthread_mutex_unlock(&d->info_mu);
    uv_async_send(&d->model_async);
}

static void on_model_async(uv_async_t *a)
{
    vg_daemon_t *d = a->data;
    pthread_mutex_lock(&d->info_mu);
    vg_train_info_t info = d->info;
    int fresh = d->info_new;
    d->info_new = 0;
    pthread_mutex_unlock(&d->info_mu);
    if (fresh)
        vg_d_publish_model(d, &info);
}

/* ---- start ----------------------------------------------------------------- */

static void on_store_up(void *ud, int up)
{
    vg_daemon_t *d = ud;
    d->redis_up = up;
    vg_metric_set(d->m_redis_up, up);
    if (!up)
        vg_notify("STATUS=Redis is away; consumption paused, reconnecting");
    update_flow(d);
}

static void on_user_loaded(void *ud, const char *user, size_t ulen, const char *const *items, const size_t *lens,
                           const double *ts, size_t n)
{
    vg_daemon_t *d = ud;
    vg_hist_wrlock(&d->hist);
    for (size_t k = 0; k < n; k++)
        if (vg_hist_add(&d->hist, user, ulen, items[k], lens[k], ts[k], NULL) < 0)
            vg_log(VG_LOG_ERROR, "history mirror: out of memory");
    vg_hist_unlock(&d->hist);
}

static void on_loaded(void *ud, int status)
{
    vg_daemon_t *d = ud;
    if (status) {
        vg_log(VG_LOG_ERROR, "cannot load the histories from Redis: %s", vg_strerror(status));
        d->exit_code = 1;
    }
    d->loaded = 1;
    uv_stop(&d->loop);
}

static void on_signal(uv_signal_t *s, int sig);

static void make_dirs(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

static int load_state(vg_daemon_t *d)
{
    const vg_config_t *c = d->cfg;
    make_dirs(c->state.dir);
    struct stat st;
    if (stat(c->state.dir, &st) || !S_ISDIR(st.st_mode)) {
        vg_log(VG_LOG_ERROR, "state.dir = \"%s\": cannot create the directory: %s", c->state.dir, strerror(errno));
        return VG_EIO;
    }
    snprintf(d->state_path, sizeof d->state_path, "%s/%s", c->state.dir, STATE_FILE);
    if (access(d->state_path, F_OK) != 0) {
        vg_log(VG_LOG_INFO, "no model state in %s yet: serving by popularity until the first training round",
               c->state.dir);
        return 0;
    }
    if (d->opts->reset_model) {
        vg_log(VG_LOG_WARN, "--reset-model: ignoring %s (it is overwritten at the next checkpoint)", d->state_path);
        return 0;
    }
    char err[512];
    int rc = vg_model_load(&d->model, d->state_path, &c->model.cfg, c->model.batch, err, sizeof err);
    if (rc) {
        vg_log(VG_LOG_ERROR, "refusing to start: %s (move it away or start with --reset-model to begin afresh)",
               err);
        return rc;
    }
    d->have_model = 1;
    vg_hist_wrlock(&d->hist);
    for (int i = 0; i < d->model.vocab.n && rc >= 0; i++) {
        const char *id = vg_vocab_id(&d->model.vocab, i);
        rc = vg_hist_item(&d->hist, id, strlen(id));
    }
    vg_hist_unlock(&d->hist);
    if (rc < 0 || d->model.vocab.n != d->model.n_items) {
        vg_log(VG_LOG_ERROR, "refusing to start: %s: the item vocabulary does not match the model", d->state_path);
        return VG_ECORRUPT;
    }
    vg_log(VG_LOG_INFO, "model state loaded from %s: step %lld, alpha %.4f, %d items", d->state_path,
           (long long)d->model.step, vg_model_alpha(&d->model), d->model.n_items);
    return 0;
}

static vg_metric_t *metric(vg_daemon_t *d, const char *name, const char *help, int type)
{
    return vg_metrics_add(d->metrics, name, help, type, NULL, 0);
}

int vg_d_setup(vg_daemon_t *d)
{
    const vg_config_t *c = d->cfg;
    d->invalid_rl = (vg_ratelimit_t){.interval_s = 10, .burst = 20};
    pthread_mutex_init(&d->info_mu, NULL);
    if (vg_hist_init(&d->hist, c->history.max_items))
        return VG_ENOMEM;
    int rc = load_state(d);
    if (rc)
        return rc;
    if (vg_metrics_init(&d->metrics))
        return VG_ENOMEM;
    d->m_events = metric(d, "vaegan_events_total", "Valid events read", VG_METRIC_COUNTER);
    d->m_stored = metric(d, "vaegan_events_stored_total", "Events whose history write Redis acknowledged",
                         VG_METRIC_COUNTER);
    d->m_invalid = metric(d, "vaegan_events_invalid_total", "Invalid events skipped", VG_METRIC_COUNTER);
    d->m_dlq = metric(d, "vaegan_events_dead_lettered_total", "Invalid events copied to the DLQ", VG_METRIC_COUNTER);
    d->m_lists = metric(d, "vaegan_lists_written_total", "rec:<user> lists written", VG_METRIC_COUNTER);
    d->m_pending = metric(d, "vaegan_pending_events", "Events read, not yet acknowledged by Redis", VG_METRIC_GAUGE);
    d->m_users = metric(d, "vaegan_users", "Users known", VG_METRIC_GAUGE);
    d->m_items = metric(d, "vaegan_items", "Items known", VG_METRIC_GAUGE);
    d->m_step = metric(d, "vaegan_model_step", "Training steps of the served model", VG_METRIC_GAUGE);
    d->m_alpha = metric(d, "vaegan_model_alpha", "Annealing weight alpha", VG_METRIC_GAUGE);
    d->m_redis_up = metric(d, "vaegan_redis_up", "1 when Redis is connected", VG_METRIC_GAUGE);
    d->m_paused = metric(d, "vaegan_kafka_paused", "1 while consumption is paused", VG_METRIC_GAUGE);
    d->m_latency = metric(d, "vaegan_list_latency_seconds", "History acknowledged to rec:<user> written",
                          VG_METRIC_HISTOGRAM);
    char err[512];
    if ((rc = vg_metrics_listen(d->metrics, c->metrics.listen, err, sizeof err))) {
        vg_log(VG_LOG_ERROR, "metrics.listen: %s", err);
        return rc;
    }
    if (c->metrics.listen[0])
        vg_log(VG_LOG_INFO, "metrics on http://%s/metrics", c->metrics.listen);

    uv_loop_init(&d->loop);
    uv_async_init(&d->loop, &d->model_async, on_model_async);
    d->model_async.data = d;
    vg_store_cfg_t sc = {
        .host = c->redis.host, .port = c->redis.port, .socket = c->redis.socket, .password = c->redis.password,
        .db = c->redis.db, .prefix = c->redis.prefix, .history_max = c->history.max_items,
        .rec_ttl_s = c->serve.rec_ttl_s, .max_inflight = 4096, .on_up = on_store_up, .log = vg_log_cb, .ud = d,
    };
    if ((rc = vg_store_init(&d->store, &d->loop, &sc, err, sizeof err))) {
        vg_log(VG_LOG_ERROR, "redis: %s", err);
        return rc;
    }
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    uv_check_init(&d->loop, &d->flush);
    d->flush.data = d;
    uv_check_start(&d->flush, on_flush);
    uv_timer_init(&d->loop, &d->tick);
    uv_timer_init(&d->loop, &d->stop_timer);
    d->tick.data = d->stop_timer.data = d;
    return 0;
}

int vg_d_wait_loaded(vg_daemon_t *d)
{
    vg_notify("STATUS=connecting to Redis");
    while (!d->redis_up && !d->stopping)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (d->stopping)
        return VG_EAGAIN;
    vg_notify("STATUS=loading histories from Redis");
    double t0 = vg_mono_s();
    int rc = vg_store_load(d->store, on_user_loaded, on_loaded, d);
    if (rc)
        return rc;
    while (!d->loaded && !d->stopping)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (d->exit_code || d->stopping)
        return d->exit_code ? VG_EREDIS : VG_EAGAIN;
    vg_log(VG_LOG_INFO, "loaded %d users, %d items, %llu history entries from Redis in %.1f s", d->hist.users.n,
           d->hist.items.n, (unsigned long long)d->hist.entries, vg_mono_s() - t0);
    return 0;
}

/* ---- running --------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    vg_daemon_t *d = t->data;
    if (vg_notify_watchdog_usec())
        vg_notify("WATCHDOG=1");
    if (vg_log_enabled(VG_LOG_DEBUG) && d->kafka) {
        vg_kafka_stats_t ks;
        vg_kafka_stats(d->kafka, &ks);
        vg_log(VG_LOG_DEBUG, "progress: %llu events read, %llu invalid, %zu pending (store %zu jobs), "
               "%llu lists written, %zu lists pending; kafka: %llu consumed, %zu outstanding, %d assigned%s%s",
               (unsigned long long)d->events, (unsigned long long)d->invalid, d->pending_events,
               vg_store_pending(d->store), (unsigned long long)d->lists, d->pending_lists,
               (unsigned long long)ks.consumed, ks.outstanding, ks.assigned, d->paused ? ", paused" : "",
               d->redis_up ? "" : ", Redis away");
    }
    if (d->ready && !d->stopping)
        vg_notifyf("STATUS=%llu events (%llu invalid), %d users, %d items, %zu pending%s",
                   (unsigned long long)d->events, (unsigned long long)d->invalid, d->hist.users.n, d->hist.items.n,
                   d->pending_events, d->paused ? ", paused" : "");
}

static void on_assigned(void *ud, int n)
{
    vg_daemon_t *d = ud;
    vg_log(VG_LOG_INFO, "consumer group joined: %d partitions assigned", n);
    if (!d->ready) {
        d->ready = 1;
        vg_notify("READY=1");
    }
}

static void on_fatal(void *ud, const char *reason)
{
    vg_daemon_t *d = ud;
    vg_log(VG_LOG_ERROR, "fatal Kafka error: %s; stopping", reason);
    d->exit_code = 1;
    on_signal(&d->sig_term, 0);
}

static void finish_stop(vg_daemon_t *d);

static void on_stop_timer(uv_timer_t *t)
{
    vg_daemon_t *d = t->data;
    int drained = d->pending_events == 0 && (!d->kafka || vg_kafka_outstanding(d->kafka) == 0);
    if (!drained && vg_mono_s() - d->stop_started < STOP_DRAIN_S)
        return;
    if (!drained)
        vg_log(VG_LOG_WARN, "stop: %zu events still unacknowledged by Redis after %.0f s; they will be read again "
               "after the restart", d->pending_events, STOP_DRAIN_S);
    uv_timer_stop(t);
    finish_stop(d);
}

static void on_signal(uv_signal_t *s, int sig)
{
    vg_daemon_t *d = s->data;
    if (sig == SIGHUP) {
        vg_log_reopen();
        vg_log(VG_LOG_INFO, "SIGHUP: log reopened");
        return;
    }
    if (d->stopping)
        return;
    if (sig)
        vg_log(VG_LOG_INFO, "%s: stopping (draining in-flight writes)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    d->stopping = 1;
    d->stop_started = vg_mono_s();
    vg_notify("STOPPING=1");
    if (d->kafka) {
        vg_kafka_stop(d->kafka);
        if (d->cur && d->cur->n)
            vg_d_send_batch(d);
        uv_timer_start(&d->stop_timer, on_stop_timer, 0, 50);
    } else {
        uv_stop(&d->loop);
    }
}

static void close_cb(uv_handle_t *h) { (void)h; }

/* Commit, stop the threads (the trainer saves), write what the scorer has,
 * close everything. */
static void finish_stop(vg_daemon_t *d)
{
    char err[512];
    if (d->kafka && vg_kafka_close(d->kafka, err, sizeof err)) {
        vg_log(VG_LOG_ERROR, "kafka: %s", err);
        d->exit_code = 1;
    }
    d->kafka = NULL;
    if (d->trainer) {
        if (vg_trainer_stop(d->trainer, err, sizeof err)) {
            vg_log(VG_LOG_ERROR, "saving the model state: %s", err);
            d->exit_code = 1;
        } else {
            vg_log(VG_LOG_INFO, "model state saved to %s", d->state_path);
        }
        d->trainer = NULL;
    }
    uv_stop(&d->loop);
}

void vg_d_teardown(vg_daemon_t *d)
{
    /* lists already handed over get a moment to reach Redis */
    double t0 = vg_mono_s();
    while (d->store && d->pending_lists && vg_store_is_up(d->store) && vg_mono_s() - t0 < 5)
        uv_run(&d->loop, UV_RUN_ONCE);
    if (d->scorer)
        vg_scorer_stop(d->scorer);
    d->scorer = NULL;
    if (d->trainer) {
        char err[512];
        if (vg_trainer_stop(d->trainer, err, sizeof err))
            vg_log(VG_LOG_ERROR, "saving the model state: %s", err);
        d->trainer = NULL;
    }
    free(d->cur);
    d->cur = NULL;
    if (d->store)
        vg_store_close(d->store);
    d->store = NULL;
    uv_handle_t *hs[] = {(uv_handle_t *)&d->sig_term, (uv_handle_t *)&d->sig_int, (uv_handle_t *)&d->sig_hup,
                         (uv_handle_t *)&d->flush, (uv_handle_t *)&d->tick, (uv_handle_t *)&d->stop_timer,
                         (uv_handle_t *)&d->model_async};
    for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++)
        if (hs[k]->loop && !uv_is_closing(hs[k]))
            uv_close(hs[k], close_cb);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&d->loop))
        vg_log(VG_LOG_WARN, "loop closed with handles still open");
    vg_mock_stop(d->mock);
    if (d->have_model)
        vg_model_close(&d->model);
    vg_metrics_free(d->metrics);
    vg_hist_free(&d->hist);
    pthread_mutex_destroy(&d->info_mu);
}

static int start_streaming(vg_daemon_t *d)
{
    const vg_config_t *c = d->cfg;
    vg_snap_t *snap = NULL;
    if (d->have_model) {
        if (!(snap = vg_snap_new(&d->model)))
            return VG_ENOMEM;
        vg_train_info_t info = {.step = d->model.step, .alpha = snap->alpha, .items = d->model.n_items,
                                .users = d->hist.users.n, .trained_at = (double)time(NULL)};
        vg_d_publish_model(d, &info);
    }
    vg_scorer_cfg_t scfg = {
        .hist = &d->hist, .top_n = c->serve.top_n, .batch = c->serve.batch, .refresh_s = c->serve.refresh_s,
        .max_outstanding = 8 * c->serve.batch + 1024, .initial = snap, .on_lists = on_lists, .ud = d,
    };
    int rc = vg_scorer_start(&d->scorer, &d->loop, &scfg);
    if (rc) {
        vg_snap_unref(snap);
        return rc;
    }
    vg_scorer_mark_all(d->scorer);
    if (c->train.steps_per_round > 0) {
        vg_trainer_cfg_t tcfg = {
            .hist = &d->hist, .model = c->model.cfg, .batch = c->model.batch,
            .steps_per_round = c->train.steps_per_round, .interval_ms = c->train.interval_ms,
            .min_new_events = c->train.min_new_events, .recent_fraction = c->train.recent_fraction,
            .threads = c->train.threads,
            .state_path = d->state_path, .checkpoint_interval_s = c->state.checkpoint_interval_s,
            .on_round = on_round, .ud = d,
        };
        rc = vg_trainer_start(&d->trainer, &tcfg, d->have_model ? &d->model : NULL);
        if (rc)
            return rc;
        d->have_model = 0; /* the trainer owns it now */
    }

    char err[512], addr[256];
    const char *brokers = c->kafka.brokers;
    if (strcmp(brokers, "embedded") == 0) {
        if ((rc = vg_mock_start(&d->mock, c->kafka.topic, 16, addr, sizeof addr, err, sizeof err))) {
            vg_log(VG_LOG_ERROR, "embedded broker: %s", err);
            return rc;
        }
        vg_log(VG_LOG_INFO, "embedded Kafka-protocol broker listening on %s (topic %s, 16 partitions)", addr,
               c->kafka.topic);
        brokers = addr;
    }
    vg_kafka_cfg_t kc = {
        .brokers = brokers, .topic = c->kafka.topic, .group = c->kafka.group, .dlq_topic = c->kafka.dlq_topic,
        .options = (const char *const *)c->kafka.options, .n_options = c->kafka.n_options,
        .commit_interval_ms = c->kafka.commit_interval_ms, .on_message = on_message, .on_assigned = on_assigned,
        .on_fatal = on_fatal, .log = vg_log_cb, .ud = d,
    };
    if ((rc = vg_kafka_init(&d->kafka, &d->loop, &kc, err, sizeof err))) {
        vg_log(VG_LOG_ERROR, "%s", err);
        return rc;
    }
    vg_log(VG_LOG_INFO, "consuming %s from %s as group %s", c->kafka.topic, brokers, c->kafka.group);
    vg_notify("STATUS=joining the consumer group");
    uint64_t wd = vg_notify_watchdog_usec();
    uint64_t every = wd ? wd / 2000 : 1000; /* ms: watchdog pings at half its period */
    if (every > 1000)
        every = 1000;
    uv_timer_start(&d->tick, on_tick, every, every);
    update_flow(d);
    return 0;
}

int vg_daemon_run(const vg_config_t *cfg, const vg_run_opts_t *opts)
{
    vg_daemon_t *d = calloc(1, sizeof *d);
    if (!d) {
        vg_log(VG_LOG_ERROR, "out of memory");
        return 1;
    }
    d->cfg = cfg;
    d->opts = opts;
    int rc = vg_d_setup(d);
    if (rc == 0)
        rc = vg_d_wait_loaded(d);
    if (rc == 0)
        rc = opts->replay ? vg_replay_run(d) : start_streaming(d);
    if (rc == 0 && !opts->replay && !d->stopping)
        uv_run(&d->loop, UV_RUN_DEFAULT);
    else if (rc == VG_EAGAIN) /* stopped by a signal while starting */
        rc = 0;
    if (d->kafka) { /* a start that failed half-way */
        char err[512];
        vg_kafka_stop(d->kafka);
        vg_kafka_close(d->kafka, err, sizeof err);
        d->kafka = NULL;
    }
    int code = rc ? 1 : d->exit_code;
    vg_d_teardown(d);
    free(d);
    if (code == 0)
        vg_log(VG_LOG_INFO, "stopped");
    return code;
}
