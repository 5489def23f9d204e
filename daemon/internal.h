/* internal.h — the daemon's state shared by daemon.c (streaming) and
 * replay.c (backfill).  Not a public interface. */
#ifndef VG_DAEMON_INTERNAL_H
#define VG_DAEMON_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <uv.h>

#include "cache/store.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/hist.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/scorer.h"
#include "daemon/trainer.h"
#include "stream/event.h"
#include "stream/kafka.h"
#include "stream/mock.h"

#define VG_BATCH_MAX 1024 /* events per Redis batch */

/* One valid event on its way to Redis. */
typedef struct vg_pev {
    int32_t partition;
    int64_t offset;
    double ts;
    uint8_t user_len, item_len;
    char user[VG_ID_MAX + 1], item[VG_ID_MAX + 1];
} vg_pev_t;

typedef struct vg_batch {
    struct vg_daemon *d;
    size_t n;
    vg_pev_t ev[VG_BATCH_MAX];
} vg_batch_t;

typedef struct vg_daemon {
    const vg_config_t *cfg;
    const vg_run_opts_t *opts;
    uv_loop_t loop;
    vg_hist_t hist;
    vg_store_t *store;
    vg_kafka_t *kafka;
    vg_mock_t *mock;
    vg_scorer_t *scorer;
    vg_trainer_t *trainer;
    vg_model_t model;          /* the loaded state, until the trainer takes it */
    int have_model;
    char state_path[PATH_MAX];

    vg_batch_t *cur;           /* batch being filled */
    size_t pending_events;     /* handed to the store, not yet acknowledged */
    size_t pending_lists;      /* rec:<user> writes not yet acknowledged */
    int redis_up, loaded, paused, stopping, ready, exit_code;
    double stop_started;

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t tick, stop_timer;
    uv_check_t flush;
    uv_async_t model_async;
    pthread_mutex_t info_mu;
    vg_train_info_t info;      /* latest round (under info_mu) */
    int info_new;

    vg_ratelimit_t invalid_rl;
    uint64_t events, invalid, lists;
    vg_metrics_t *metrics;
    vg_metric_t *m_events, *m_stored, *m_invalid, *m_lists, *m_pending, *m_users, *m_items, *m_step, *m_alpha,
        *m_redis_up, *m_paused, *m_latency, *m_dlq;
} vg_daemon_t;

/* daemon.c, used by replay.c */
int vg_d_setup(vg_daemon_t *d);            /* logging of the start, model load, loop, metrics, store */
int vg_d_wait_loaded(vg_daemon_t *d);      /* runs the loop until Redis is up and the mirror loaded */
void vg_d_send_batch(vg_daemon_t *d);      /* hands d->cur to the store */
void vg_d_put_lists(vg_daemon_t *d, const vg_list_t *lists, int n, int release_to_scorer);
void vg_d_publish_model(vg_daemon_t *d, const vg_train_info_t *info);
void vg_d_teardown(vg_daemon_t *d);        /* closes everything and runs the loop to its end */

/* replay.c */
int vg_replay_run(vg_daemon_t *d);

#endif
