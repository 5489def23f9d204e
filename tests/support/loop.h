/*
 * loop.h — running a libuv loop until an event (library vgtestsupport), for
 * the tests that drive cache/ on their own loop.
 *
 *   int ok = vgt_loop_until(&loop, job_done, &j, 5000, NULL);
 *
 * A 5 ms tick keeps the loop turning while nothing else is due, so pred is
 * looked at often; the deadline is a guard, the wait ends on pred.
 */
#ifndef VG_TESTS_SUPPORT_LOOP_H
#define VG_TESTS_SUPPORT_LOOP_H

#include <uv.h>

/* Runs loop until pred(arg) holds or ms pass, calling step (if not NULL)
 * before each round; returns pred(arg).  Leaves no handle of its own. */
int vgt_loop_until(uv_loop_t *loop, int (*pred)(void *), void *arg, int ms, void (*step)(void));

#endif
