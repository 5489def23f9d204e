/* catchup.c — the catch-up and idle phases: the lists catch up after
 * ingest (until vaegan_lists_written_total >= users and still for 2 s, with
 * vaegan_model_step > 0 unless training is off, or the catch-up timeout),
 * then 5 s without events show what an idle daemon does. */
#include "bench/stream/internal.h"
#include "common/clock.h"

/* Scrapes until the lists settle; *t_quiet = when they last changed.
 * 0, or -1 (the daemon exited, or a stop). */
static int wait_settled(bs_run_t *R, double *t_quiet)
{
    double last_lists = -1, t0 = vg_mono_s();
    bs_metrics_t *m = &R->m;
    *t_quiet = vg_mono_s();
    while (!bs_stop) {
        bs_sleep_s(0.1);
        if (!bs_daemon_alive(R, "while the lists caught up"))
            return -1;
        if (bs_scrape(R->port, m) != 0)
            continue;
        bs_series_add(&R->ser, m);
        if (m->lists != last_lists) {
            last_lists = m->lists;
            *t_quiet = vg_mono_s();
        }
        if ((m->step > 0 || R->o.train_steps == 0) && m->lists >= m->users && vg_mono_s() - *t_quiet >= 2.0)
            return 0;
        if (vg_mono_s() - t0 > R->o.catchup_timeout) {
            printf("   (lists did not settle within %.0f s: %.0f written for %.0f users, step %.0f; going on)\n",
                   R->o.catchup_timeout, m->lists, m->users, m->step);
            return 0;
        }
    }
    return -1;
}

int bs_phase_catchup(bs_run_t *R)
{
    double t_quiet;
    bs_cpu_t q1;
    if (wait_settled(R, &t_quiet) != 0 || bs_stop)
        return -1;
    R->catchup_s = t_quiet - R->t_all;
    bs_cpu_take(&q1, &R->pids);
    printf("-- lists caught up %.1f s after the last event was stored: %.0f lists written for %.0f users, "
           "%.0f items, model step %.0f\n",
           R->catchup_s, R->m.lists, R->m.users, R->m.items, R->m.step);
    bs_cpu_print("catch-up", &R->cpu_ingest_end, &q1, NULL);
    return 0;
}

/* Nothing arrives: what does the daemon do?  Never stops the run. */
int bs_phase_idle(bs_run_t *R)
{
    bs_metrics_t a = R->m, b;
    bs_cpu_t i0, i1;
    bs_cpu_take(&i0, &R->pids);
    bs_sleep_s(5.0);
    bs_cpu_take(&i1, &R->pids);
    if (bs_scrape(R->port, &b) == 0) {
        R->idle_steps_per_s = (b.step - a.step) / (b.t - a.t);
        printf("-- idle for %.1f s (no events): model step %.0f -> %.0f, lists %.0f -> %.0f\n", b.t - a.t, a.step,
               b.step, a.lists, b.lists);
    }
    bs_cpu_print("idle", &i0, &i1, NULL);
    return 0;
}
