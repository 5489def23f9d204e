/* clock.h — the one clock of vaegan: seconds as doubles, vg_mono_s() for
 * intervals (CLOCK_MONOTONIC), vg_wall_s() for timestamps (CLOCK_REALTIME,
 * Unix seconds), and vg_deadline() for pthread_cond_timedwait (whose
 * default clock is CLOCK_REALTIME). */
#ifndef VG_CLOCK_H
#define VG_CLOCK_H

#include <time.h>

static inline double vg_clock_s_(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline double vg_mono_s(void) { return vg_clock_s_(CLOCK_MONOTONIC); }
static inline double vg_wall_s(void) { return vg_clock_s_(CLOCK_REALTIME); }

/* CLOCK_REALTIME now + s seconds (s >= 0), as pthread_cond_timedwait wants. */
static inline struct timespec vg_deadline(double s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long ns = t.tv_nsec + (long)((s - (double)(long)s) * 1e9);
    t.tv_sec += (time_t)s + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

#endif
