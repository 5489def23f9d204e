/* latency.c — the latency phase: click -> rec:<user> latency at fixed rates.
 * Keyspace notifications are turned on (notify-keyspace-events Kgz: the
 * list's RESTORE is a generic event, its ZADD a sorted-set one) and the
 * subscriber thread PSUBSCRIBEs __keyspace@0__:rec:*; then for each rate R
 * the sender thread sends R events/s for S seconds (linger.ms = 0), and the
 * phase waits up to D s for the stragglers: samples still without a list
 * are "missing" (+inf in the percentiles); when no user is free at a send
 * time the event is "skipped".  The daemon's own
 * vaegan_list_latency_seconds histogram (Redis ack of the history -> list
 * written) is reported beside it.  If no list is written for BS_STALL_S
 * while samples wait, the daemon is declared stuck: its threads are printed
 * and the remaining rates skipped. */
#include <math.h>
#include <stdlib.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

/* when vaegan_lists_written_total last changed (stall detection) */
typedef struct watch {
    double last_lists, t_lists;
} watch_t;

/* One scrape into R->m and the series, noting a change of the lists count. */
static void scrape_watch(bs_run_t *R, watch_t *w)
{
    if (bs_scrape(R->port, &R->m) != 0)
        return;
    bs_series_add(&R->ser, &R->m);
    if (R->m.lists != w->last_lists) {
        w->last_lists = R->m.lists;
        w->t_lists = vg_mono_s();
    }
}

/* Notifications on, the candidates read, the subscriber listening. */
static int setup(bs_run_t *R)
{
    redisReply *r = redisCommand(R->rc, "CONFIG SET notify-keyspace-events Kgz");
    int okc = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (!okc) {
        bs_complain("CONFIG SET notify-keyspace-events failed");
        return -1;
    }
    double t_r0 = vg_mono_s();
    int with_list = bs_lat_read_recs(R->rc, &R->L);
    if (with_list <= 0) {
        bs_complain("no rec:<user> lists to start from");
        return -1;
    }
    printf("-- latency set-up: rec lists of %d users read in %.1f s\n", with_list, vg_mono_s() - t_r0);
    R->L.sock = R->redis.sock;
    if (pthread_create(&R->sub_th, NULL, bs_subscriber_main, &R->L) != 0)
        return -1;
    R->sub_started = 1;
    for (;;) {
        pthread_mutex_lock(&R->L.mu);
        int ready = R->L.ready, failed = R->L.failed;
        pthread_mutex_unlock(&R->L.mu);
        if (failed) {
            bs_complain("PSUBSCRIBE failed");
            return -1;
        }
        if (ready)
            return 0;
        bs_sleep_s(0.01);
    }
}

/* The sender thread for S s (+1), scraping meanwhile.  0 or -1. */
static int send_rate(bs_run_t *R, bs_rate_t *P, watch_t *w)
{
    bs_sender_t sa = {&R->L, R->broker.addr, P->rate, R->o.rate_seconds, P, 0};
    pthread_t pt;
    if (pthread_create(&pt, NULL, bs_sender_main, &sa) != 0)
        return -1;
    double t_end_send = vg_mono_s() + R->o.rate_seconds + 1;
    while (vg_mono_s() < t_end_send && !bs_stop) {
        bs_sleep_s(0.1);
        scrape_watch(R, w);
    }
    pthread_join(pt, NULL);
    return sa.failed ? -1 : 0;
}

/* Until every sample of the phase has its list, D s, or a stall (P->stalled).
 * -1 when the daemon exited. */
static int drain(bs_run_t *R, bs_rate_t *P, watch_t *w)
{
    double t_drain = vg_mono_s();
    while (!bs_stop && vg_mono_s() - t_drain < R->o.drain_seconds) {
        pthread_mutex_lock(&R->L.mu);
        size_t open = 0;
        for (size_t i = P->first; i < P->first + P->sent; i++)
            open += R->L.s[i].t_recv == 0;
        pthread_mutex_unlock(&R->L.mu);
        if (open == 0)
            break;
        bs_sleep_s(0.1);
        scrape_watch(R, w);
        if (vg_mono_s() - w->t_lists >= BS_STALL_S) {
            printf("!! vaegand wrote no list for %.0f s while %zu samples wait: it is stuck\n",
                   vg_mono_s() - w->t_lists, open);
            bs_dump_threads(R->dpid);
            P->stalled = 1;
            break;
        }
        if (!bs_daemon_alive(R, "during the latency phase"))
            return -1;
    }
    return 0;
}

/* Percentiles of the phase's samples (under L->mu) and the daemon's own
 * histogram and counters between the scrapes ma and mb. */
static void figures(bs_run_t *R, bs_rate_t *P, const bs_metrics_t *ma, const bs_metrics_t *mb, uint64_t un0)
{
    bs_lat_t *L = &R->L;
    pthread_mutex_lock(&L->mu);
    P->unattributed = L->unattributed - un0;
    double *v = malloc((P->sent ? P->sent : 1) * sizeof *v);
    double sum = 0;
    for (size_t i = 0; i < P->sent; i++) {
        const bs_sample_t *s = &L->s[P->first + i];
        if (s->t_recv > 0) {
            v[i] = s->t_recv - s->t_send;
            sum += v[i];
            P->answered++;
        } else {
            v[i] = INFINITY;
            P->missing++;
        }
    }
    pthread_mutex_unlock(&L->mu);
    qsort(v, P->sent, sizeof *v, bs_cmp_double);
    P->p50 = bs_pct(v, P->sent, 0.50);
    P->p90 = bs_pct(v, P->sent, 0.90);
    P->p99 = bs_pct(v, P->sent, 0.99);
    P->max = P->sent ? v[P->sent - 1] : NAN;
    P->mean_answered = P->answered ? sum / (double)P->answered : NAN;
    free(v);
    P->d_p50 = bs_hist_quantile(ma, mb, 0.50);
    P->d_p99 = bs_hist_quantile(ma, mb, 0.99);
    P->d_count = mb->lat_count - ma->lat_count;
    P->d_mean = P->d_count > 0 ? (mb->lat_sum - ma->lat_sum) / P->d_count : NAN;
    P->lists_per_s = (mb->lists - ma->lists) / (mb->t - ma->t);
    P->bg_lists = (mb->lists - ma->lists) - P->d_count;
    P->steps = mb->step - ma->step;
    double users = mb->scored - ma->scored, prod = mb->sc_product_s - ma->sc_product_s;
    double busy = prod + mb->sc_select_s - ma->sc_select_s;
    P->scorer_users_per_s = users / (mb->t - ma->t);
    P->scorer_busy_users_per_s = busy > 0 ? users / busy : NAN;
    /* the output layer's 2·N·H per user (the hidden layers, in the product's time, not counted) */
    P->kernel_gflops = prod > 0 ? users * 2.0 * mb->items * BS_HIDDEN / prod * 1e-9 : NAN;
    snprintf(P->kernel, sizeof P->kernel, "%s", mb->kernel);
}

static void print_rate(const bs_rate_t *P, double drained_s)
{
    double span = P->t_last_send - P->t_first_send;
    char b1[32], b2[32], b3[32], b4[32];
    printf("-- %d events/s for %.0f s: %zu sent (%.0f/s achieved, %ld skipped: no free user), %zu lists seen, "
           "%zu missing after %.0f s of drain, %llu unattributed notifications\n",
           P->rate, P->seconds, P->sent, span > 0 ? (double)(P->sent - 1) / span : NAN, P->skipped, P->answered,
           P->missing, drained_s, (unsigned long long)P->unattributed);
    printf("   click -> rec:<user> latency p50 %s ms, p90 %s ms, p99 %s ms, max %s ms (mean of the seen %.1f ms)\n",
           bs_ms(b1, sizeof b1, P->p50), bs_ms(b2, sizeof b2, P->p90), bs_ms(b3, sizeof b3, P->p99),
           bs_ms(b4, sizeof b4, P->max), 1e3 * P->mean_answered);
    printf("   daemon's own histogram (Redis ack of the history -> list written): %.0f lists, mean %.1f ms, "
           "p50 <= %s ms, p99 <= %s ms; %.0f lists/s written, %.0f background lists, %.0f training steps\n",
           P->d_count, 1e3 * P->d_mean, bs_ms(b1, sizeof b1, P->d_p50), bs_ms(b2, sizeof b2, P->d_p99),
           P->lists_per_s, P->bg_lists, P->steps);
    printf("   scorer: %.0f users/s ranked, %.0f per busy thread-second; kernel %s at %.0f GFLOP/s (output layer); "
           "Redis %.1f us per list (RESTORE)\n",
           P->scorer_users_per_s, P->scorer_busy_users_per_s, *P->kernel ? P->kernel : "(no model)", P->kernel_gflops,
           P->redis_us_per_list);
}

/* One rate: send, drain, figures.  0 or -1 (stop the run). */
static int run_rate(bs_run_t *R, bs_rate_t *P)
{
    bs_metrics_t ma, mb;
    while (bs_scrape(R->port, &ma) != 0 && !bs_stop)
        bs_sleep_s(0.1);
    pthread_mutex_lock(&R->L.mu);
    uint64_t un0 = R->L.unattributed;
    pthread_mutex_unlock(&R->L.mu);
    bs_cpu_t c0, c1;
    double calls0, usec0, calls1, usec1;
    int cs = bs_cmdstat(R->rc, "eval", &calls0, &usec0);
    bs_cpu_take(&c0, &R->pids);
    watch_t w = {ma.lists, vg_mono_s()};
    if (send_rate(R, P, &w) != 0)
        return -1;
    double t_drain = vg_mono_s();
    if (drain(R, P, &w) != 0)
        return -1;
    P->t_end = vg_mono_s();
    bs_cpu_take(&c1, &R->pids);
    while (bs_scrape(R->port, &mb) != 0 && !bs_stop)
        bs_sleep_s(0.1);
    figures(R, P, &ma, &mb, un0);
    cs |= bs_cmdstat(R->rc, "eval", &calls1, &usec1);
    P->redis_us_per_list = cs == 0 && calls1 > calls0 ? (usec1 - usec0) / (calls1 - calls0) : NAN;
    print_rate(P, P->t_end - t_drain);
    bs_cpu_print("the phase", &c0, &c1, &P->cpu_daemon);
    return 0;
}

int bs_phase_latency(bs_run_t *R)
{
    if (setup(R) != 0)
        return -1;
    for (int ri = 0; ri < R->o.n_rates && !bs_stop; ri++) {
        bs_rate_t *P = &R->ph[ri];
        P->rate = R->o.rates[ri];
        P->seconds = R->o.rate_seconds;
        if (run_rate(R, P) != 0)
            return -1;
        R->n_done++;
        if (P->stalled) {
            R->stalled = 1;
            printf("!! the remaining rates are skipped (vaegand is stuck)\n");
            break;
        }
    }
    return bs_stop ? -1 : 0;
}
