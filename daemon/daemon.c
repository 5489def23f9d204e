/*
 * daemon.c — vaegand's streaming mode: the Kafka consumer, the scorer and
 * the trainer on top of the shared write path (pipeline.h); daemon.h has the
 * start/stop order.
 *
 * Everything here runs on the loop thread except on_round() (trainer
 * thread), which only hands a snapshot to the scorer and the round's figures
 * to the loop through model_async.
 */
#include "daemon/daemon.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/ratelimit.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/pipeline.h"
#include "daemon/share.h"
#include "stream/mock.h"

#define STOP_DRAIN_S 30.0     /* how long a stop waits for Redis to take the in-flight writes */
#define RETRY_MIN_MS 100      /* first wait after out of memory while reading an event */
#define RETRY_MAX_MS 5000
#define EMBEDDED_PARTITIONS 16 /* of each topic of kafka.brokers = embedded */

typedef struct vg_daemon {
    vg_pipe_t p;               /* first: the pipeline's callbacks get &d->p */
    vg_monitor_t mon;          /* p.monitor */
    vg_mock_t *mock;
    vg_share_t *share;         /* kafka.control_topic set: several instances share one model */
    vg_batch_t *cur;           /* batch being filled */
    int ready;
    uint64_t events, invalid, ignored_events;
    /* the consumer's counters exported as metrics (on_tick adds what is new) */
    vg_metric_t *m_commit_failures, *m_commit_retries, *m_dlq_pending, *m_oldest_wait;
    vg_kafka_stats_t ks_last;
    /* the store's: reconnects, and in cluster mode redirects, waits and node connections lost */
    vg_metric_t *m_redis_reconnects, *m_redis_redirects, *m_redis_retries, *m_redis_nodes_lost;
    vg_store_stats_t ss_last;
    vg_ratelimit_t invalid_rl;
    vg_metric_family_t ignored; /* vaegan_events_ignored_total{type} */

    uv_timer_t tick, stop_timer, retry_timer;
    int retry_ms;              /* the current out-of-memory backoff, 0 = none */
    uv_check_t flush;
    uv_async_t model_async;
    pthread_mutex_t info_mu;
    vg_train_info_t info;      /* latest round (under info_mu) */
    int info_new;
} vg_daemon_t;

/* ---- events: Kafka -> batch -> pipeline ----------------------------------------- */

static void send_current(vg_daemon_t *d)
{
    vg_batch_t *b = d->cur;
    d->cur = NULL;
    if (b)
        vg_pipe_send(&d->p, b);
}

static void skip_invalid(vg_daemon_t *d, const vg_kafka_msg_t *m, const char *reason)
{
    d->invalid++;
    vg_metric_inc(d->p.m_invalid, 1);
    uint64_t suppressed = 0;
    if (vg_ratelimit_ok(&d->invalid_rl, &suppressed))
        vg_log(VG_LOG_WARN, "invalid event skipped at %s/%d@%lld: %s%s", m->topic, (int)m->partition,
               (long long)m->offset, reason, suppressed ? " (and earlier ones not logged)" : "");
    if (vg_kafka_dlq(d->p.kafka, m, reason) == 0) /* done when the broker acknowledged the copy */
        vg_metric_inc(d->p.m_dlq, 1);
    else
        vg_kafka_done(d->p.kafka, m->topic_id, m->partition, m->offset);
}

static void on_retry_timer(uv_timer_t *t)
{
    vg_daemon_t *d = t->data;
    if (!d->p.paused && !d->p.stopping) /* a flow-control pause resumes by itself */
        vg_kafka_resume(d->p.kafka);
}

/* Out of memory while reading m: the consumer keeps m, pauses, and
 * delivers it again when the retry timer resumes (backoff doubling from
 * RETRY_MIN_MS to RETRY_MAX_MS while it keeps failing). */
static void retry_later(vg_daemon_t *d, const vg_kafka_msg_t *m)
{
    vg_kafka_retry(d->p.kafka);
    d->retry_ms = d->retry_ms ? (d->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : d->retry_ms * 2) : RETRY_MIN_MS;
    vg_log(VG_LOG_WARN, "out of memory reading %s/%d@%lld: consumption paused, retrying in %d ms", m->topic,
           (int)m->partition, (long long)m->offset, d->retry_ms);
    uv_timer_start(&d->retry_timer, on_retry_timer, (uint64_t)d->retry_ms, 0);
}

static void count_ignored(vg_daemon_t *d, const char *type)
{
    d->ignored_events++;
    vg_metric_family_inc(&d->ignored, type, 1);
}

static void on_message(void *ud, const vg_kafka_msg_t *m)
{
    vg_daemon_t *d = ud;
    vg_event_t ev;
    char reason[256];
    int rc = m->value ? vg_event_parse(m->value, m->value_len, &ev, reason, sizeof reason) : VG_EFORMAT;
    if (!m->value)
        snprintf(reason, sizeof reason, "empty message");
    if (rc == 0 && !d->cur) {
        if ((d->cur = malloc(sizeof *d->cur)))
            d->cur->n = 0;
        else
            rc = VG_ENOMEM;
    }
    if (rc == VG_ENOMEM) { /* not bad input: read it again when memory allows */
        retry_later(d, m);
        return;
    }
    if (rc) {
        skip_invalid(d, m, reason);
        return;
    }
    if (!m->key || m->key_len != ev.user_len || memcmp(m->key, ev.user, ev.user_len) != 0)
        vg_metric_inc(d->p.m_key_mismatch, 1); /* the user's events may then come on several partitions */
    vg_event_origin_t from = {m->topic_id, m->partition, m->offset};
    if (strcmp(ev.type, VG_FORGET_TYPE) == 0) { /* after everything read before it */
        send_current(d);
        vg_pipe_forget(&d->p, ev.user, ev.user_len, ev.ts, from);
        return;
    }
    if (vg_pipe_refuses(&d->p, ev.user, ev.user_len, ev.ts)) {
        vg_kafka_done(d->p.kafka, m->topic_id, m->partition, m->offset);
        return;
    }
    int kind = vg_pipe_event_kind(&d->p, ev.type), removal = kind == VG_KIND_REMOVAL;
    if (kind == VG_KIND_OTHER) {
        count_ignored(d, ev.type);
        vg_kafka_done(d->p.kafka, m->topic_id, m->partition, m->offset);
        return;
    }
    d->events++;
    vg_metric_inc(removal ? d->p.m_removals : d->p.m_events, 1);
    d->retry_ms = 0; /* memory is back */
    if (vg_batch_push(d->cur, ev.user, ev.user_len, ev.item, ev.item_len, ev.ts, ev.type, removal, from))
        send_current(d);
}

/* After every loop iteration: whatever the consumer delivered goes out. */
static void on_flush(uv_check_t *c)
{
    send_current(c->data);
}

static void on_lists(void *ud, const vg_list_t *lists, int n)
{
    vg_daemon_t *d = ud;
    vg_pipe_put_lists(&d->p, lists, n, 1);
}

/* ---- the model: trainer -> scorer, vaegan:model ------------------------------- */

static void on_round(void *ud, vg_snap_t *snap, const vg_train_info_t *info)
{
    vg_daemon_t *d = ud;
    if (snap && d->share && !info->published) /* the leader serves what the others serve */
        vg_snap_unref(snap);
    else if (snap)
        vg_scorer_set_model(d->p.scorer, snap);
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
    uint64_t epoch = 0;
    if (fresh && (!d->share || (info.published && vg_share_leading(d->share, &epoch)))) /* the leader's, shared */
        vg_pipe_publish_model(&d->p, &info, epoch);
    if (fresh)
        vg_monitor_round(&d->mon, &info);
}

/* ---- several instances, one model (share.h) ---------------------------------- */

static void on_blob(void *ud, int kind, void *buf, size_t cap, size_t len, const vg_train_info_t *info)
{
    vg_daemon_t *d = ud;
    vg_share_blob(d->share, kind, buf, cap, len, info);
}

static void on_lead(void *ud, int leading, vg_model_t *resume)
{
    vg_daemon_t *d = ud;
    if (!d->p.trainer) {
        if (resume)
            vg_model_close(resume);
        free(resume);
        return;
    }
    if (resume)
        vg_trainer_adopt(d->p.trainer, resume);
    vg_trainer_hold(d->p.trainer, !leading);
    vg_own_lead(&d->p.own, leading);
}

/* A follower's model from the leader: served, and its step and alpha
 * exported (vaegan:model is the leader's to write). */
static void on_snapshot(void *ud, vg_snap_t *snap, const vg_train_info_t *info)
{
    vg_daemon_t *d = ud;
    vg_scorer_set_model(d->p.scorer, snap);
    vg_metric_set(d->p.m_step, (double)info->step);
    vg_metric_set(d->p.m_alpha, info->alpha);
    vg_monitor_round(&d->mon, info);
}

static void give_back(void *ud, int kind, void *buf, size_t cap)
{
    vg_daemon_t *d = ud;
    if (d->p.trainer)
        vg_trainer_blob_done(d->p.trainer, kind, buf, cap);
    else
        free(buf); /* the trainer stopped meanwhile */
}

static int start_share(vg_daemon_t *d, const char *brokers)
{
    vg_pipe_t *p = &d->p;
    const vg_config_t *c = p->cfg;
    if (!c->kafka.control_topic[0])
        return 0;
    if (vg_own_share(&p->own, p))
        return VG_ENOMEM;
    char err[512];
    vg_share_cfg_t sc = {
        .brokers = brokers, .group = c->kafka.group, .control_topic = c->kafka.control_topic,
        .options = (const char *const *)c->kafka.options, .n_options = c->kafka.n_options, .store = p->store,
        .hist = &p->hist, .model = &c->model.cfg, .max_batch = c->model.batch, .kernel = c->serve.kernel, .metrics = p->metrics,
        .on_lead = on_lead, .on_snapshot = on_snapshot, .give_back = give_back, .ud = d,
    };
    int rc = vg_share_init(&d->share, &p->loop, &sc, err, sizeof err);
    if (rc)
        vg_log(VG_LOG_ERROR, "leader election: %s", err);
    else
        vg_log(VG_LOG_INFO, "sharing one model with the other instances of group %s (election on %s); following "
               "until elected", c->kafka.group, c->kafka.control_topic);
    return rc;
}

/* ---- running --------------------------------------------------------------- */

static void log_progress(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    vg_kafka_stats_t ks;
    vg_kafka_stats(p->kafka, &ks);
    vg_log(VG_LOG_DEBUG, "progress: %llu events read, %llu invalid, %llu ignored, %zu pending (store %zu jobs), "
           "%llu lists written, %zu lists pending; kafka: %llu consumed, %zu outstanding, %d assigned%s%s",
           (unsigned long long)d->events, (unsigned long long)d->invalid, (unsigned long long)d->ignored_events,
           p->pending_events, vg_store_pending(p->store), (unsigned long long)p->lists, p->pending_lists,
           (unsigned long long)ks.consumed, ks.outstanding, ks.assigned, p->paused ? ", paused" : "",
           p->redis_up ? "" : ", Redis away");
}

static void on_tick(uv_timer_t *t)
{
    vg_daemon_t *d = t->data;
    vg_pipe_t *p = &d->p;
    if (vg_notify_watchdog_usec())
        vg_notify("WATCHDOG=1");
    if (vg_log_enabled(VG_LOG_DEBUG) && p->kafka)
        log_progress(d);
    vg_pipe_update_flow(p); /* dead letters acknowledged since the last batch count here */
    if (p->kafka) {
        vg_kafka_stats_t ks;
        vg_kafka_stats(p->kafka, &ks);
        vg_metric_inc(d->m_commit_failures, (double)(ks.commit_errors - d->ks_last.commit_errors));
        vg_metric_inc(d->m_commit_retries, (double)(ks.commit_retries - d->ks_last.commit_retries));
        vg_metric_set(d->m_dlq_pending, (double)ks.dlq_pending);
        d->ks_last = ks;
    }
    vg_store_stats_t ss;
    vg_store_stats(p->store, &ss);
    vg_metric_inc(d->m_redis_reconnects, (double)(ss.reconnects - d->ss_last.reconnects));
    vg_metric_inc(d->m_redis_redirects, (double)(ss.redirects - d->ss_last.redirects));
    vg_metric_inc(d->m_redis_retries, (double)(ss.retries - d->ss_last.retries));
    vg_metric_inc(d->m_redis_nodes_lost, (double)(ss.nodes_lost - d->ss_last.nodes_lost));
    d->ss_last = ss;
    if (p->scorer)
        vg_metric_set(d->m_oldest_wait, vg_scorer_oldest_wait_s(p->scorer));
    vg_monitor_tick(&d->mon, &p->hist, (uint64_t)vg_metric_value(p->m_stored), p->lists, p->scorer);
    if (d->ready && !p->stopping)
        vg_notifyf("STATUS=%llu events (%llu invalid), %d users, %d items, %zu pending%s",
                   (unsigned long long)d->events, (unsigned long long)d->invalid, p->hist.live_users, p->hist.items.n,
                   p->pending_events, p->paused ? ", paused" : "");
}

static void on_assigned(void *ud, int n)
{
    vg_daemon_t *d = ud;
    vg_log(VG_LOG_INFO, "consumer group joined: %d partitions assigned", n);
    if (d->p.own.on) { /* with several instances: warm the new partitions' users, drop the gone ones' */
        vg_kafka_lag_t a[VG_HIST_PARTS];
        int got = vg_kafka_lag(d->p.kafka, a, VG_HIST_PARTS);
        vg_own_assigned(&d->p.own, a, got < VG_HIST_PARTS ? got : VG_HIST_PARTS);
    }
    if (!d->ready) {
        d->ready = 1;
        vg_notify("READY=1");
    }
}

static void on_kafka_stats(void *ud)
{
    vg_daemon_t *d = ud;
    if (!d->p.kafka)
        return;
    double lag = vg_monitor_lag(&d->mon, d->p.kafka);
    if (d->p.trainer)
        vg_trainer_lag(d->p.trainer, lag);
}

static void on_fatal(void *ud, const char *reason)
{
    vg_daemon_t *d = ud;
    vg_log(VG_LOG_ERROR, "fatal Kafka error: %s; stopping", reason);
    d->p.exit_code = 1;
    vg_pipe_stop(&d->p, 0);
}

/* ---- stop: drain, commit, save ----------------------------------------------- */

/* Commit, stop the trainer (it saves), leave the loop. */
static void finish_stop(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    char err[512];
    if (p->kafka && vg_kafka_close(p->kafka, err, sizeof err)) {
        vg_log(VG_LOG_ERROR, "kafka: %s", err);
        p->exit_code = 1;
    }
    p->kafka = NULL;
    if (vg_pipe_stop_trainer(p))
        p->exit_code = 1;
    uv_stop(&p->loop);
}

static void on_stop_timer(uv_timer_t *t)
{
    vg_daemon_t *d = t->data;
    vg_pipe_t *p = &d->p;
    int drained = p->redis_refused || /* nothing more completes: stop now */
                  (p->pending_events == 0 && (!p->kafka || vg_kafka_outstanding(p->kafka) == 0));
    if (!drained && vg_mono_s() - p->stop_started < STOP_DRAIN_S)
        return;
    if (!drained)
        vg_log(VG_LOG_WARN, "stop: %zu events still unacknowledged by Redis after %.0f s; they will be read again "
               "after the restart", p->pending_events, STOP_DRAIN_S);
    uv_timer_stop(t);
    finish_stop(d);
}

/* SIGTERM/SIGINT (pipeline.h on_stop): stop consuming, send what was read,
 * wait for the store (on_stop_timer). */
static void on_stop(vg_pipe_t *p)
{
    vg_daemon_t *d = (vg_daemon_t *)p;
    if (!p->kafka) {
        uv_stop(&p->loop);
        return;
    }
    vg_kafka_stop(p->kafka);
    send_current(d);
    uv_timer_start(&d->stop_timer, on_stop_timer, 0, 50);
}

/* ---- start ----------------------------------------------------------------- */

static int start_scorer(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    const vg_config_t *c = p->cfg;
    vg_snap_t *snap = NULL;
    if (p->have_model) {
        if (!(snap = vg_snap_new(&p->model, c->serve.kernel)))
            return VG_ENOMEM;
        char k[192];
        vg_log(VG_LOG_INFO, "scorer: %s", vg_snap_kernel(snap, k, sizeof k));
        vg_train_info_t info = {.step = p->model.step, .alpha = snap->alpha, .items = p->model.n_items,
                                .users = p->hist.users.n, .trained_at = (double)time(NULL)};
        struct stat st; /* the loaded model is as old as its file */
        if (stat(p->state_path, &st) == 0)
            info.trained_at = (double)st.st_mtime;
        if (!c->kafka.control_topic[0]) /* with several instances, vaegan:model is the leader's */
            vg_pipe_publish_model(p, &info, 0);
        vg_monitor_round(&d->mon, &info);
    }
    vg_scorer_cfg_t scfg = {
        .hist = &p->hist, .top_n = c->serve.top_n, .batch = c->serve.batch, .refresh_s = c->serve.refresh_s,
        .max_outstanding = 8 * c->serve.batch + 1024, .initial = snap, .on_lists = on_lists, .ud = d,
        .threads = vg_config_scorer_threads(c),
    };
    int rc = vg_scorer_start(&p->scorer, &p->loop, &scfg);
    if (rc) {
        vg_snap_unref(snap);
        return rc;
    }
    vg_scorer_mark_all(p->scorer);
    return 0;
}

static int start_trainer(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    const vg_config_t *c = p->cfg;
    if (c->train.steps_per_round <= 0)
        return 0;
    vg_trainer_cfg_t tcfg = {
        .hist = &p->hist, .model = c->model.cfg, .batch = c->model.batch,
        .steps_per_round = c->train.steps_per_round, .interval_ms = c->train.interval_ms,
        .min_new_events = c->train.min_new_events, .recent_fraction = c->train.recent_fraction,
        .backlog_lag = c->train.backlog_lag, .backlog_interval_ms = c->train.backlog_interval_ms,
        .threads = c->train.threads, .kernel = c->serve.kernel, .state_path = p->state_path, .metrics = p->metrics,
        .checkpoint_interval_s = c->state.checkpoint_interval_s, .on_round = on_round, .ud = d,
        .on_blob = c->kafka.control_topic[0] ? on_blob : NULL, .publish_interval_s = c->train.publish_interval_s,
        .start_held = c->kafka.control_topic[0] != 0, /* until elected */
    };
    int rc = vg_trainer_start(&p->trainer, &tcfg, p->have_model ? &p->model : NULL);
    if (rc == 0)
        p->have_model = 0; /* the trainer owns it now */
    return rc;
}

static int start_consumer(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    const vg_config_t *c = p->cfg;
    char err[512], addr[256];
    const char *brokers = c->kafka.brokers;
    int rc;
    const char *const *topics = (const char *const *)c->kafka.topics.v;
    if (strcmp(brokers, "embedded") == 0) {
        const char *all[c->kafka.topics.n + 1]; /* the election's topic too (its partition 0 decides) */
        memcpy(all, topics, c->kafka.topics.n * sizeof *all);
        all[c->kafka.topics.n] = c->kafka.control_topic;
        if ((rc = vg_mock_start(&d->mock, all, c->kafka.topics.n + (c->kafka.control_topic[0] != 0),
                                EMBEDDED_PARTITIONS, addr, sizeof addr, err, sizeof err))) {
            vg_log(VG_LOG_ERROR, "embedded broker: %s", err);
            return rc;
        }
        vg_log(VG_LOG_INFO, "embedded Kafka-protocol broker listening on %s (%zu topic%s, %d partitions each)", addr,
               c->kafka.topics.n, c->kafka.topics.n > 1 ? "s" : "", EMBEDDED_PARTITIONS);
        brokers = addr;
    }
    vg_kafka_cfg_t kc = {
        .brokers = brokers, .topics = topics, .n_topics = c->kafka.topics.n, .group = c->kafka.group,
        .dlq_topic = c->kafka.dlq_topic,
        .options = (const char *const *)c->kafka.options, .n_options = c->kafka.n_options,
        .commit_interval_ms = c->kafka.commit_interval_ms, .on_message = on_message, .on_assigned = on_assigned,
        .on_fatal = on_fatal, .log = vg_log_cb, .ud = d,
        .stats_interval_ms = c->metrics.kafka_stats_interval_ms > 0 && c->metrics.kafka_stats_interval_ms < 100
                                 ? 100 /* each one is a JSON parse on the loop thread */
                                 : c->metrics.kafka_stats_interval_ms,
        .on_stats = on_kafka_stats,
    };
    if ((rc = vg_kafka_init(&p->kafka, &p->loop, &kc, err, sizeof err))) {
        vg_log(VG_LOG_ERROR, "%s", err);
        return rc;
    }
    if ((rc = start_share(d, brokers)))
        return rc;
    char names[512] = "";
    for (size_t i = 0, o = 0; i < c->kafka.topics.n && o < sizeof names; i++)
        o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", c->kafka.topics.v[i]);
    vg_log(VG_LOG_INFO, "consuming %s from %s as group %s", names, brokers, c->kafka.group);
    vg_notify("STATUS=joining the consumer group");
    return 0;
}

/* The streaming handles beside the pipeline's. */
static void init_handles(vg_daemon_t *d)
{
    uv_loop_t *loop = &d->p.loop;
    uv_async_init(loop, &d->model_async, on_model_async);
    uv_check_init(loop, &d->flush);
    uv_check_start(&d->flush, on_flush);
    uv_timer_init(loop, &d->tick);
    uv_timer_init(loop, &d->stop_timer);
    uv_timer_init(loop, &d->retry_timer);
    d->model_async.data = d->flush.data = d->tick.data = d->stop_timer.data = d->retry_timer.data = d;
}

static int start_streaming(vg_daemon_t *d)
{
    int rc = start_scorer(d);
    if (rc == 0)
        rc = start_trainer(d);
    if (rc == 0)
        rc = start_consumer(d);
    if (rc)
        return rc;
    uint64_t wd = vg_notify_watchdog_usec();
    uint64_t every = wd ? wd / 2000 : 1000; /* ms: watchdog pings at half its period */
    if (every > 1000)
        every = 1000;
    uv_timer_start(&d->tick, on_tick, every, every);
    vg_pipe_update_flow(&d->p);
    return 0;
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void close_daemon(vg_daemon_t *d)
{
    vg_pipe_t *p = &d->p;
    if (p->kafka) { /* a start that failed half-way */
        char err[512];
        vg_kafka_stop(p->kafka);
        vg_kafka_close(p->kafka, err, sizeof err);
        p->kafka = NULL;
    }
    vg_pipe_stop_trainer(p); /* before the share goes: its rounds hand it weights */
    vg_share_close(d->share); /* freed while vg_pipe_close runs the loop */
    vg_own_close(&p->own);
    d->share = NULL;
    if (p->loop_open) {
        uv_handle_t *hs[] = {(uv_handle_t *)&d->flush, (uv_handle_t *)&d->tick, (uv_handle_t *)&d->stop_timer,
                             (uv_handle_t *)&d->retry_timer,
                             (uv_handle_t *)&d->model_async};
        for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++)
            if (hs[k]->loop && !uv_is_closing(hs[k]))
                uv_close(hs[k], close_cb);
    }
    free(d->cur);
    d->cur = NULL;
    vg_pipe_close(p);
    vg_monitor_free(&d->mon);
    vg_mock_stop(d->mock);
    pthread_mutex_destroy(&d->info_mu);
}

/* The consumer's and the store's counters that on_tick exports. */
static void add_metrics(vg_daemon_t *d)
{
    const struct {
        vg_metric_t **m;
        const char *name, *help;
        int type;
    } t[] = {
        {&d->m_commit_failures, "vaegan_kafka_commit_failures_total",
         "Offset commits that failed (a revoke's after its retries: the next owner reads again from the last commit)",
         VG_METRIC_COUNTER},
        {&d->m_commit_retries, "vaegan_kafka_commit_retries_total",
         "Revoke and final commits refused for a passing reason and sent again", VG_METRIC_COUNTER},
        {&d->m_dlq_pending, "vaegan_dead_letters_pending", "Dead letters not yet acknowledged by the broker",
         VG_METRIC_GAUGE},
        {&d->m_redis_reconnects, "vaegan_redis_reconnects_total",
         "Times the Redis store became ready again after it was lost", VG_METRIC_COUNTER},
        {&d->m_redis_redirects, "vaegan_redis_cluster_redirects_total",
         "MOVED and ASK replies followed (redis.cluster = yes)", VG_METRIC_COUNTER},
        {&d->m_redis_retries, "vaegan_redis_cluster_retries_total",
         "Commands re-sent after a wait (TRYAGAIN, CLUSTERDOWN, LOADING, OOM, READONLY, ...; redis.cluster = yes)",
         VG_METRIC_COUNTER},
        {&d->m_redis_nodes_lost, "vaegan_redis_cluster_nodes_lost_total",
         "Connections to cluster nodes lost (closed, failed or timed out)", VG_METRIC_COUNTER},
        {&d->m_oldest_wait, "vaegan_scorer_oldest_wait_seconds",
         "How long the oldest user waiting for a fresh list has waited", VG_METRIC_GAUGE},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        *t[i].m = vg_metrics_add(d->p.metrics, t[i].name, t[i].help, t[i].type, NULL, 0);
}

int vg_daemon_run(const vg_config_t *cfg, int reset_model)
{
    vg_daemon_t *d = calloc(1, sizeof *d);
    if (!d) {
        vg_log(VG_LOG_ERROR, "out of memory");
        return 1;
    }
    d->invalid_rl = (vg_ratelimit_t){.interval_s = 10, .burst = 20};
    d->p.on_stop = on_stop;
    pthread_mutex_init(&d->info_mu, NULL);
    int rc = vg_pipe_open(&d->p, cfg, reset_model);
    d->ignored = (vg_metric_family_t){.reg = d->p.metrics, .name = "vaegan_events_ignored_total",
                                      .help = "Events skipped for their type (neither in events.types nor in "
                                              "events.removal_types), by type",
                                      .label = "type"};
    if (rc == 0) {
        add_metrics(d);
        rc = vg_monitor_init(&d->mon, d->p.metrics, cfg->metrics.quality_sample, cfg->metrics.quality_window,
                             cfg->serve.refresh_s);
        d->p.monitor = &d->mon;
    }
    if (rc == 0) {
        init_handles(d);
        rc = vg_pipe_wait_loaded(&d->p, !d->p.cfg->kafka.control_topic[0]) /* shared: own.h warms */;
    }
    if (rc == 0)
        rc = start_streaming(d);
    if (rc == 0 && !d->p.stopping)
        uv_run(&d->p.loop, UV_RUN_DEFAULT);
    else if (rc == VG_EAGAIN) /* stopped by a signal while starting */
        rc = 0;
    int code = d->p.exit_code ? d->p.exit_code : rc ? 1 : 0;
    close_daemon(d);
    free(d);
    if (code == 0)
        vg_log(VG_LOG_INFO, "stopped");
    return code;
}
