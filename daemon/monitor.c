/*
 * monitor.c — the operator's gauges (see monitor.h).
 *
 * Lag series: mo->lag holds one series per (topic id, partition) assigned
 * at the last statistics; a partition that is no longer listed loses its
 * series (vg_metrics_remove: this thread is the series' only user), so the
 * cardinality is the assignment's.  Rates: a ring of the last
 * VG_MONITOR_RATE_S + 1 ticks' running totals; the rate is the difference
 * between its newest and oldest entries over their time apart.
 */
#include "daemon/monitor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errors.h"

static const char *const loss_terms[VG_MONITOR_LOSS_TERMS] = {"generator", "nll", "kl", "t", "d", "contractive"};
static const char *const q_ranking[4] = {"model", "model", "popularity", "popularity"};
static const char *const q_k[4] = {"10", "20", "10", "20"};

static vg_metric_t *gauge(vg_monitor_t *mo, const char *name, const char *help)
{
    vg_metric_t *m = vg_metrics_add(mo->reg, name, help, VG_METRIC_GAUGE, NULL, 0);
    if (m)
        vg_metric_set(m, NAN);
    return m;
}

static int add_quality(vg_monitor_t *mo)
{
    mo->m_samples = vg_metrics_add(mo->reg, "vaegan_quality_samples_total",
                                   "Events of sampled users judged against their last list (metrics.quality_sample; "
                                   "items new to the user, users with a list written since the start)",
                                   VG_METRIC_COUNTER, NULL, 0);
    mo->m_users = vg_metrics_add(mo->reg, "vaegan_quality_users", "Sampled users whose last list is kept",
                                 VG_METRIC_GAUGE, NULL, 0);
    const char *labels[2] = {"ranking", "k"};
    int ok = mo->m_samples && mo->m_users;
    for (int b = 0; b < 4 && ok; b++) {
        const char *values[2] = {q_ranking[b], q_k[b]};
        mo->m_hits[b] = vg_metrics_add_labels(mo->reg, "vaegan_quality_hits_total",
                                              "Judged events whose item was in the top k of the ranking (model: "
                                              "the user's last list; popularity: items by users holding them)",
                                              VG_METRIC_COUNTER, labels, values, 2);
        mo->m_rate[b] = vg_metrics_add_labels(mo->reg, "vaegan_quality_hit_rate",
                                              "Hit rate at k over the last metrics.quality_window judged events",
                                              VG_METRIC_GAUGE, labels, values, 2);
        ok = mo->m_hits[b] && mo->m_rate[b];
        if (ok)
            vg_metric_set(mo->m_rate[b], NAN);
    }
    return ok ? 0 : VG_ENOMEM;
}

static int add_training(vg_monitor_t *mo)
{
    const char *label = "term";
    for (int t = 0; t < VG_MONITOR_LOSS_TERMS; t++) {
        if (!(mo->m_loss[t] = vg_metrics_add_labels(mo->reg, "vaegan_train_loss",
                                                    "Loss terms of the last training round, means over its steps "
                                                    "(generator objective, nll, kl, the T and D players, contractive)",
                                                    VG_METRIC_GAUGE, &label, &loss_terms[t], 1)))
            return VG_ENOMEM;
        vg_metric_set(mo->m_loss[t], NAN);
    }
    mo->m_rounds = vg_metrics_add(mo->reg, "vaegan_train_rounds_total", "Training rounds completed",
                                  VG_METRIC_COUNTER, NULL, 0);
    mo->m_snap_age = gauge(mo, "vaegan_snapshot_age_seconds",
                           "Seconds since the round that made the served model snapshot ended");
    return mo->m_rounds && mo->m_snap_age ? 0 : VG_ENOMEM;
}

static int add_scoring(vg_monitor_t *mo)
{
    mo->m_scored = vg_metrics_add(mo->reg, "vaegan_scorer_users_total", "Users ranked by a model",
                                  VG_METRIC_COUNTER, NULL, 0);
    const char *label = "part", *parts[2] = {"product", "select"};
    for (int k = 0; k < 2; k++)
        if (!(mo->m_scorer_s[k] = vg_metrics_add_labels(
                  mo->reg, "vaegan_scorer_seconds_total",
                  "Seconds the scorer threads spent ranking, summed over threads: the all-items product (hidden "
                  "layers included) and the selection (candidates, exact re-scoring, top-n)",
                  VG_METRIC_COUNTER, &label, &parts[k], 1)))
            return VG_ENOMEM;
    return mo->m_scored ? 0 : VG_ENOMEM;
}

int vg_monitor_init(vg_monitor_t *mo, vg_metrics_t *reg, double quality_sample, int quality_window, int refresh_s)
{
    memset(mo, 0, sizeof *mo);
    mo->reg = reg;
    mo->newest_ts = -INFINITY;
    mo->quality_on = quality_sample > 0;
    if (vg_quality_init(&mo->q, quality_sample, quality_window))
        return VG_ENOMEM;
    mo->m_lag = gauge(mo, "vaegan_kafka_lag_messages",
                      "Messages from the stored offsets to the high-water marks, all assigned partitions");
    mo->m_newest = gauge(mo, "vaegan_newest_event_age_seconds",
                         "Now minus the ts of the newest event Redis acknowledged");
    mo->m_events_rate = vg_metrics_add(reg, "vaegan_events_per_second",
                                       "Events stored per second over the last 10 s", VG_METRIC_GAUGE, NULL, 0);
    mo->m_lists_rate = vg_metrics_add(reg, "vaegan_lists_per_second",
                                      "rec:<user> lists written per second over the last 10 s", VG_METRIC_GAUGE,
                                      NULL, 0);
    mo->m_stale = vg_metrics_add(reg, "vaegan_stale_list_age_seconds",
                                 "Age of the oldest list the background refresh took in its last pick (0: no "
                                 "list waits for a newer model; while clicks keep every scorer busy there is no "
                                 "pick and it keeps its value)", VG_METRIC_GAUGE, NULL, 0);
    mo->m_refresh = vg_metrics_add(reg, "vaegan_serve_refresh_seconds",
                                   "serve.refresh_s: a list older than this is re-ranked when a newer model exists",
                                   VG_METRIC_GAUGE, NULL, 0);
    if (!mo->m_lag || !mo->m_newest || !mo->m_events_rate || !mo->m_lists_rate || !mo->m_stale || !mo->m_refresh ||
        add_quality(mo) || add_training(mo) || add_scoring(mo))
        return VG_ENOMEM;
    vg_metric_set(mo->m_refresh, refresh_s);
    return 0;
}

void vg_monitor_free(vg_monitor_t *mo)
{
    vg_quality_free(&mo->q);
    free(mo->lag); /* the series belong to the registry */
    mo->lag = NULL;
    mo->n_lag = 0;
}

/* ---- lag ----------------------------------------------------------------------------- */

static vg_metric_t *lag_series(vg_monitor_t *mo, const vg_kafka_t *k, int32_t topic, int32_t partition)
{
    const char *name = vg_kafka_topic_name(k, topic);
    char part[16];
    snprintf(part, sizeof part, "%d", (int)partition);
    const char *labels[2] = {"topic", "partition"}, *values[2] = {name ? name : "?", part};
    return vg_metrics_add_labels(mo->reg, "vaegan_kafka_partition_lag_messages",
                                 "Messages from the partition's stored offset (stored once Redis acknowledged the "
                                 "events) to its high-water mark", VG_METRIC_GAUGE, labels, values, 2);
}

double vg_monitor_lag(vg_monitor_t *mo, const vg_kafka_t *k)
{
    int n = vg_kafka_lag(k, NULL, 0);
    vg_kafka_lag_t *l = malloc((size_t)(n ? n : 1) * sizeof *l);
    vg_monitor_lag_t *keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
    if (!l || !keep) {
        free(l);
        free(keep);
        return vg_metric_value(mo->m_lag); /* out of memory: the gauges keep their values */
    }
    n = vg_kafka_lag(k, l, n);
    double total = 0;
    int kept = 0;
    for (int j = 0; j < n; j++) {
        vg_metric_t *m = NULL;
        for (int i = 0; i < mo->n_lag && !m; i++)
            if (mo->lag[i].m && mo->lag[i].topic == l[j].topic_id && mo->lag[i].partition == l[j].partition) {
                m = mo->lag[i].m;
                mo->lag[i].m = NULL; /* taken over */
            }
        if (!m && (m = lag_series(mo, k, l[j].topic_id, l[j].partition)))
            vg_metric_set(m, NAN); /* until its lag is known */
        if (!m)
            continue;
        if (l[j].lag >= 0) /* unknown for a moment (a new assignment): the last value stays */
            vg_metric_set(m, (double)l[j].lag);
        double v = vg_metric_value(m);
        total += isnan(v) ? 0 : v;
        keep[kept++] = (vg_monitor_lag_t){l[j].topic_id, l[j].partition, m};
    }
    for (int i = 0; i < mo->n_lag; i++) /* partitions gone since */
        if (mo->lag[i].m)
            vg_metrics_remove(mo->reg, mo->lag[i].m);
    free(mo->lag);
    mo->lag = keep;
    mo->n_lag = kept;
    vg_metric_set(mo->m_lag, total); /* nothing assigned: 0, so that a sum over instances stays a number */
    free(l);
    return total;
}

/* ---- once a second ------------------------------------------------------------------- */

/* The scorer's counters, and its kernel's info series (replaced when the
 * served snapshot's kernel changes). */
static void tick_scorer(vg_monitor_t *mo, vg_scorer_t *sc)
{
    vg_ranker_stats_t w;
    char path[sizeof mo->kernel];
    vg_scorer_work(sc, &w, path, sizeof path);
    vg_metric_inc(mo->m_scored, (double)(w.users - mo->scored.users));
    vg_metric_inc(mo->m_scorer_s[0], w.product_s - mo->scored.product_s);
    vg_metric_inc(mo->m_scorer_s[1], w.select_s - mo->scored.select_s);
    mo->scored = w;
    if (!*path || (mo->m_kernel && strcmp(path, mo->kernel) == 0))
        return;
    if (mo->m_kernel)
        vg_metrics_remove(mo->reg, mo->m_kernel);
    const char *label = "path", *value = path;
    mo->m_kernel = vg_metrics_add_labels(mo->reg, "vaegan_scorer_kernel_info",
                                         "The served model's scoring kernel (serve.kernel): its path, e.g. "
                                         "\"int8 brg:avx512_core_vnni\" or \"fp32 openblas\"",
                                         VG_METRIC_GAUGE, &label, &value, 1);
    if (mo->m_kernel) {
        vg_metric_set(mo->m_kernel, 1);
        snprintf(mo->kernel, sizeof mo->kernel, "%s", path);
    }
}

void vg_monitor_tick(vg_monitor_t *mo, const vg_hist_t *h, uint64_t events_stored, uint64_t lists_written,
                     vg_scorer_t *sc)
{
    double now = vg_mono_s(), wall = vg_wall_s();
    int cap = VG_MONITOR_RATE_S + 1;
    mo->ring[mo->ring_head] = (vg_monitor_totals_t){now, (double)events_stored, (double)lists_written};
    mo->ring_head = (mo->ring_head + 1) % cap;
    if (mo->ring_n < cap)
        mo->ring_n++;
    int oldest = (mo->ring_head - mo->ring_n + cap) % cap, newest = (mo->ring_head - 1 + cap) % cap;
    double dt = mo->ring[newest].t - mo->ring[oldest].t;
    vg_metric_set(mo->m_events_rate, dt > 0 ? (mo->ring[newest].events - mo->ring[oldest].events) / dt : 0);
    vg_metric_set(mo->m_lists_rate, dt > 0 ? (mo->ring[newest].lists - mo->ring[oldest].lists) / dt : 0);
    vg_metric_set(mo->m_newest, isfinite(mo->newest_ts) ? wall - mo->newest_ts : NAN);
    vg_metric_set(mo->m_snap_age, mo->trained_at > 0 ? wall - mo->trained_at : NAN);
    if (sc) {
        vg_metric_set(mo->m_stale, vg_scorer_stale_age_s(sc));
        tick_scorer(mo, sc);
    } else {
        vg_metric_set(mo->m_stale, 0);
    }
    if (!mo->quality_on)
        return;
    if (mo->q.judged != mo->judged_at_pop || mo->q.n_pop == 0) { /* nothing judged since: no new pass */
        vg_quality_popularity(&mo->q, h);
        mo->judged_at_pop = mo->q.judged;
    }
    vg_metric_set(mo->m_users, (double)mo->q.n);
    for (int b = 0; b < 4; b++)
        vg_metric_set(mo->m_rate[b], vg_quality_rate(&mo->q, 1 << b));
}

/* ---- events, lists, rounds ------------------------------------------------------------ */

void vg_monitor_event(vg_monitor_t *mo, const vg_hist_t *h, const char *user, size_t ulen, const char *item,
                      size_t ilen, double ts, double now)
{
    if (ts > now) /* stamped in the future (or in ms): it must not hide a stall */
        ts = now;
    if (ts > mo->newest_ts)
        mo->newest_ts = ts;
    if (!vg_monitor_wants(mo, user, ulen))
        return;
    int32_t u = vg_vocab_find(&h->users, user, ulen);
    int bits = u >= 0 ? vg_quality_judge(&mo->q, h, u, vg_vocab_find(&h->items, item, ilen)) : -1;
    if (bits < 0)
        return;
    vg_metric_inc(mo->m_samples, 1);
    for (int b = 0; b < 4; b++)
        if (bits & (1 << b))
            vg_metric_inc(mo->m_hits[b], 1);
}

void vg_monitor_list(vg_monitor_t *mo, int32_t u, uint32_t gen, const int32_t *items, int n)
{
    (void)vg_quality_keep(&mo->q, u, gen, items, n); /* out of memory: the user is not judged */
}

void vg_monitor_drop(vg_monitor_t *mo, int32_t u)
{
    if (mo && mo->quality_on)
        vg_quality_drop(&mo->q, u);
}

void vg_monitor_round(vg_monitor_t *mo, const vg_train_info_t *info)
{
    mo->trained_at = info->trained_at;
    if (info->round > mo->rounds) { /* rounds that finished between two wake-ups of the loop count too */
        vg_metric_inc(mo->m_rounds, (double)(info->round - mo->rounds));
        mo->rounds = info->round;
    }
    if (info->steps <= 0)
        return;
    const vg_step_stats_t *s = &info->loss;
    const double v[VG_MONITOR_LOSS_TERMS] = {s->loss_g, s->nll, s->kl, s->loss_t, s->loss_d, s->contr};
    for (int t = 0; t < VG_MONITOR_LOSS_TERMS; t++)
        vg_metric_set(mo->m_loss[t], v[t]);
}
