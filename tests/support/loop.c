/* loop.c — see loop.h. */
#include "tests/support/loop.h"

#include <stdint.h>

static void noop_timer(uv_timer_t *t) { (void)t; }

int vgt_loop_until(uv_loop_t *loop, int (*pred)(void *), void *arg, int ms, void (*step)(void))
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, noop_timer, 5, 5);
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (!pred(arg) && uv_hrtime() < end) {
        if (step)
            step();
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred(arg);
}
