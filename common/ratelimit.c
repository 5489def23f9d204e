/* ratelimit.c — see ratelimit.h. */
#include "common/ratelimit.h"

#include "common/clock.h"

int vg_ratelimit_ok_at(vg_ratelimit_t *rl, double now, uint64_t *suppressed)
{
    if (rl->window_start == 0 || now < rl->window_start || now - rl->window_start >= rl->interval_s) {
        rl->window_start = now;
        rl->count = 0;
    }
    if (rl->count < rl->burst) {
        rl->count++;
        if (suppressed)
            *suppressed = rl->suppressed;
        rl->suppressed = 0;
        return 1;
    }
    rl->suppressed++;
    return 0;
}

int vg_ratelimit_ok(vg_ratelimit_t *rl, uint64_t *suppressed)
{
    return vg_ratelimit_ok_at(rl, vg_mono_s(), suppressed);
}
