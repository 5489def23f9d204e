/* clock.h — seconds as doubles: vg_mono_s() for intervals (CLOCK_MONOTONIC),
 * vg_wall_s() for timestamps (CLOCK_REALTIME, Unix seconds). */
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

#endif
