/* ingest.c — the ingest phase: vaegand consumes the backlog while /metrics
 * is scraped every 100 ms.  Ingest rate = vaegan_events_stored_total over
 * the time from the first scrape that saw a stored event to the first that
 * saw all N (the consumer group join is not counted); lists written/s over
 * the same span; the peak over 1 s windows; Redis' own INFO commandstats for
 * the phase. */
#include <math.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

typedef struct ingest {
    double t_first, t_all;
    bs_metrics_t first, all; /* the scrapes that saw the first and the last event stored */
    bs_cpu_t c0;             /* at the first (the last: R->cpu_ingest_end) */
} ingest_t;

/* Scrapes until every event is stored.  0, or -1 (the daemon exited, no
 * /metrics, no progress for 120 s, or a stop). */
static int wait_stored(bs_run_t *R, ingest_t *g)
{
    double last_progress = vg_mono_s(), last_stored = -1;
    bs_metrics_t *m = &R->m;
    g->t_first = g->t_all = 0;
    while (!bs_stop) {
        bs_sleep_s(0.1);
        if (!bs_daemon_alive(R, "during ingest"))
            return -1;
        if (bs_scrape(R->port, m) != 0) {
            if (vg_mono_s() - R->t_start > 60) {
                bs_complain("no /metrics from vaegand on port %d after 60 s", R->port);
                return -1;
            }
            continue;
        }
        bs_series_add(&R->ser, m);
        if (m->stored > 0 && g->t_first == 0) {
            g->t_first = m->t;
            g->first = *m;
            R->join_s = m->t - R->t_start;
            bs_cpu_take(&g->c0, &R->pids);
        }
        if (m->stored != last_stored) {
            last_stored = m->stored;
            last_progress = vg_mono_s();
        }
        if (m->stored >= (double)R->o.n_events) {
            g->t_all = m->t;
            g->all = *m;
            bs_cpu_take(&R->cpu_ingest_end, &R->pids);
            return 0;
        }
        if (vg_mono_s() - last_progress > 120) {
            bs_complain("no progress of vaegan_events_stored_total for 120 s (at %.0f of %ld)", m->stored,
                        R->o.n_events);
            return -1;
        }
    }
    return -1;
}

/* The highest stored/s between a scrape and the first one >= 1 s later. */
static double peak_rate(const bs_series_t *ser)
{
    double peak = 0;
    for (size_t i = 0; i < ser->n; i++)
        for (size_t j = i + 1; j < ser->n; j++)
            if (ser->m[j].t - ser->m[i].t >= 1.0) {
                double r = (ser->m[j].stored - ser->m[i].stored) / (ser->m[j].t - ser->m[i].t);
                if (r > peak)
                    peak = r;
                break;
            }
    return peak;
}

static void print_ingest(bs_run_t *R, const ingest_t *g)
{
    double max_pending = 0, paused = 0, nsc = 0;
    for (size_t i = 0; i < R->ser.n; i++)
        if (R->ser.m[i].t >= g->t_first && R->ser.m[i].t <= g->t_all) {
            max_pending = R->ser.m[i].pending > max_pending ? R->ser.m[i].pending : max_pending;
            paused += R->ser.m[i].paused;
            nsc++;
        }
    printf("-- ingest: %.0f events stored in %.2f s: %.0f events/s (peak 1 s: %.0f/s); %.0f lists written/s "
           "meanwhile; first event stored %.1f s after the start (group join); pending events max %.0f, "
           "consumption paused in %.0f of %.0f scrapes\n",
           g->all.stored - g->first.stored, R->ingest_span, R->ingest_rate, R->ingest_peak, R->ingest_lists,
           R->join_s, max_pending, paused, nsc);
    bs_cpu_print("ingest", &g->c0, &R->cpu_ingest_end, &R->ingest_cpu);
    bs_print_cmdstats(R->rc, "Redis commands from the start to the end of ingest");
}

int bs_phase_ingest(bs_run_t *R)
{
    ingest_t g;
    if (wait_stored(R, &g) != 0 || bs_stop)
        return -1;
    R->t_all = g.t_all;
    R->ingest_span = g.t_all - g.t_first;
    R->ingest_rate = R->ingest_span > 0 ? (g.all.stored - g.first.stored) / R->ingest_span : NAN;
    R->ingest_lists = R->ingest_span > 0 ? (g.all.lists - g.first.lists) / R->ingest_span : NAN;
    R->ingest_peak = peak_rate(&R->ser);
    print_ingest(R, &g);
    return 0;
}
