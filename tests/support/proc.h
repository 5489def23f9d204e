/*
 * proc.h — child processes, their CPU time (/proc) and time for tests and
 * benchmarks (library vgtestsupport; the two inlines need no library).
 *
 *   const char *argv[] = {VG_VAEGAND_BIN, "-c", conf, NULL};
 *   pid_t pid = vgt_spawn(argv, log);     // stdout+stderr appended to log
 *   ...
 *   kill(pid, SIGTERM);
 *   int code = vgt_wait_exit(pid, 60);    // exit status, 128+signal, or -1
 *
 * Every child gets SIGKILL when the thread that started it dies first
 * (PR_SET_PDEATHSIG), as the servers of redis.h and kafka.h do.  The clock
 * is common/clock.h's; vgt_now_ms() is the same clock in milliseconds.
 */
#ifndef VG_TESTS_SUPPORT_PROC_H
#define VG_TESTS_SUPPORT_PROC_H

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "common/clock.h"

/* Sleeps ms milliseconds (resumed after a signal). */
static inline void vgt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* vg_mono_s() in whole milliseconds. */
static inline long vgt_now_ms(void) { return (long)(1e3 * vg_mono_s()); }

/* Starts argv[0] (a path; no PATH search) with argv, its stdout and stderr
 * appended to log (created 0644), or inherited when log is NULL.  Returns the
 * child's pid, or -1 when fork fails.  The caller reaps it (vgt_wait_exit or
 * waitpid). */
pid_t vgt_spawn(const char *const *argv, const char *log);

/* Waits up to timeout_s seconds (polling every 20 ms, at least once) for pid
 * to exit and reaps it.  Returns its exit status, 128 + the signal that
 * ended it, or -1 when it is still running. */
int vgt_wait_exit(pid_t pid, double timeout_s);

/* A /proc stat file (/proc/<pid>/stat, .../task/<tid>/stat): utime + stime
 * in clock ticks into *ticks, and the command name into comm (commlen
 * bytes; comm may be NULL).  Returns 0, or -1 when it cannot be read. */
int vgt_proc_stat(const char *path, char *comm, size_t commlen, unsigned long long *ticks);

#endif
