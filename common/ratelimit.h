/*
 * ratelimit.h — at most `burst` messages per window, for every module that
 * logs about the outside world (daemon/, stream/, cache/).
 */
#ifndef VG_RATELIMIT_H
#define VG_RATELIMIT_H

#include <stdint.h>

/* Rate limiting for noisy messages (invalid events, connection trouble): at most `burst`
 * messages per `interval_s` seconds.  Initialise with VG_RATELIMIT_INIT
 * (or zero the rest by hand).  Not thread-safe: one per thread and call site.
 *
 *     static vg_ratelimit_t rl = VG_RATELIMIT_INIT(10.0, 5);
 *     uint64_t dropped;
 *     if (vg_ratelimit_ok(&rl, &dropped))
 *         log(VG_LOG_WARN, "invalid event at %d/%lld: %s (%llu similar suppressed)", ...);
 */
typedef struct vg_ratelimit {
    double interval_s;   /* length of a window */
    int burst;           /* messages allowed per window */
    double window_start; /* monotonic seconds; 0 = no window yet */
    int count;           /* messages allowed in the current window */
    uint64_t suppressed; /* messages refused since the last allowed one */
} vg_ratelimit_t;

#define VG_RATELIMIT_INIT(interval, burst_)                                                        \
    {                                                                                              \
        .interval_s = (interval), .burst = (burst_), .window_start = 0, .count = 0, .suppressed = 0 \
    }

/* 1 if a message may be written now, else 0 (and it is counted as
 * suppressed).  When it returns 1, *suppressed (if not NULL) is the number of
 * messages refused since the previous allowed one, and that count restarts;
 * when it returns 0, *suppressed is not touched. */
int vg_ratelimit_ok(vg_ratelimit_t *rl, uint64_t *suppressed);

/* The same at an explicit time `now` in seconds (monotonic, > 0); for tests. */
int vg_ratelimit_ok_at(vg_ratelimit_t *rl, double now, uint64_t *suppressed);

#endif
