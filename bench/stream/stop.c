/* stop.c — how a run ends early: SIGINT/SIGTERM set bs_stop, and every wait
 * of the benchmark sleeps through bs_sleep_s so it notices within one sleep;
 * complain() is the one way to say why a run stops. */
#include <errno.h>
#include <stdarg.h>
#include <time.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

volatile sig_atomic_t bs_stop;

void bs_on_signal(int sig)
{
    (void)sig;
    bs_stop = 1;
}

void bs_sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !bs_stop)
        ;
}

void bs_sleep_until(double t)
{
    double d = t - vg_mono_s();
    if (d > 0)
        bs_sleep_s(d);
}

void bs_complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vaegan-bench-stream: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
