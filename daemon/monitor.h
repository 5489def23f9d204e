/*
 * monitor.h — what an operator watches beyond the counters of the write
 * path: consumer lag per partition, the age of the newest stored event,
 * events and lists per second, how far the background refresh lags, the
 * live hit rate against popularity (quality.h), the training loss terms and
 * the snapshot's age.  Streaming mode only; every call on the loop thread.
 *
 * Metrics (help texts in monitor.c):
 *   vaegan_kafka_partition_lag_messages{topic,partition}  one series per
 *       assigned partition, removed when the partition goes
 *   vaegan_kafka_lag_messages, vaegan_newest_event_age_seconds,
 *   vaegan_events_per_second, vaegan_lists_per_second (over the last
 *   VG_MONITOR_RATE_S seconds), vaegan_stale_list_age_seconds,
 *   vaegan_serve_refresh_seconds,
 *   vaegan_quality_samples_total, vaegan_quality_hits_total{ranking,k},
 *   vaegan_quality_hit_rate{ranking,k}, vaegan_quality_users,
 *   vaegan_train_loss{term}, vaegan_train_rounds_total,
 *   vaegan_snapshot_age_seconds,
 *   vaegan_scorer_users_total, vaegan_scorer_seconds_total{part} (the
 *   rankers' product and selection: users/s of a busy scorer, and the
 *   kernel's own rate), vaegan_scorer_kernel_info{path} (1; one series, the
 *   served snapshot's kernel).
 * A gauge with nothing to say yet (no event stored, no snapshot, nothing
 * judged, a partition whose lag was never known) reads NaN; a partition's
 * lag unknown for a moment (a new assignment) keeps its last value, and the
 * total is 0 when nothing is assigned.
 */
#ifndef VG_DAEMON_MONITOR_H
#define VG_DAEMON_MONITOR_H

#include <stdint.h>

#include "daemon/hist.h"
#include "daemon/metrics.h"
#include "daemon/quality.h"
#include "daemon/scorer.h"
#include "daemon/trainer.h"
#include "stream/kafka.h"

#define VG_MONITOR_RATE_S 10 /* the rates' window */
#define VG_MONITOR_LOSS_TERMS 6

typedef struct vg_monitor_lag {
    int32_t topic, partition;
    vg_metric_t *m;
} vg_monitor_lag_t;

typedef struct vg_monitor_totals {
    double t, events, lists; /* a tick's time (monotonic) and running totals */
} vg_monitor_totals_t;

typedef struct vg_monitor {
    vg_metrics_t *reg;
    vg_quality_t q;
    int quality_on;
    vg_monitor_lag_t *lag; /* the series of the partitions assigned at the last statistics */
    int n_lag;
    double newest_ts;      /* the newest stored event's ts (-INFINITY: none yet) */
    double trained_at;     /* the served snapshot's round end (0: none) */
    uint64_t rounds;       /* the trainer's round sequence counted so far */
    uint64_t judged_at_pop; /* q.judged at the last popularity pass */
    vg_monitor_totals_t ring[VG_MONITOR_RATE_S + 1];
    int ring_n, ring_head;
    vg_metric_t *m_lag, *m_newest, *m_events_rate, *m_lists_rate, *m_stale, *m_refresh, *m_samples, *m_users,
        *m_rounds, *m_snap_age;
    vg_metric_t *m_hits[4], *m_rate[4]; /* by VG_Q_* bit order: model@10, model@20, popularity@10, @20 */
    vg_metric_t *m_loss[VG_MONITOR_LOSS_TERMS];
    vg_metric_t *m_scored, *m_scorer_s[2], *m_kernel; /* m_kernel: NULL until a model is served */
    vg_ranker_stats_t scored;                         /* the scorer's work counted so far */
    char kernel[64];                                  /* m_kernel's path */
} vg_monitor_t;

/* Registers the metrics in reg; quality_sample / quality_window as
 * metrics.* say (sample 0: no judging), refresh_s is serve.refresh_s.
 * Returns 0 or VG_ENOMEM. */
int vg_monitor_init(vg_monitor_t *mo, vg_metrics_t *reg, double quality_sample, int quality_window, int refresh_s);
void vg_monitor_free(vg_monitor_t *mo);

/* After each statistics of the consumer: the lag series.  Returns the total
 * (vaegan_kafka_lag_messages). */
double vg_monitor_lag(vg_monitor_t *mo, const vg_kafka_t *k);

/* Once a second: the rates from the running totals, the ages, the quality
 * gauges and the popularity ranking judged against, the scorer's work and
 * kernel (sc NULL: no scorer). */
void vg_monitor_tick(vg_monitor_t *mo, const vg_hist_t *h, uint64_t events_stored, uint64_t lists_written,
                     vg_scorer_t *sc);

/* An event Redis acknowledged, before the mirror applies it (the mirror's
 * writer, i.e. the loop thread): its ts (at most now, Unix seconds), and
 * the event judged when its user is sampled. */
void vg_monitor_event(vg_monitor_t *mo, const vg_hist_t *h, const char *user, size_t ulen, const char *item,
                      size_t ilen, double ts, double now);

/* 1 when lists of this user are kept (vg_monitor_list). */
static inline int vg_monitor_wants(const vg_monitor_t *mo, const char *user, size_t len)
{
    return mo && mo->quality_on && vg_quality_sampled(&mo->q, user, len);
}

/* A list Redis acknowledged for user index u (generation gen). */
void vg_monitor_list(vg_monitor_t *mo, int32_t u, uint32_t gen, const int32_t *items, int n);

/* User index u left memory or was erased. */
void vg_monitor_drop(vg_monitor_t *mo, int32_t u);

/* A training round: its loss terms, and the snapshot it made. */
void vg_monitor_round(vg_monitor_t *mo, const vg_train_info_t *info);

#endif
