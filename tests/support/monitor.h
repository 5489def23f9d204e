/*
 * monitor.h — what Redis servers were sent, as MONITOR shows it, and which
 * process sent it (library vgtestsupport).
 *
 *   vgt_monitor_t m;
 *   vgt_monitor_start(&m, redisConnect("127.0.0.1", port));  // a thread reads its lines
 *   ...
 *   vgt_monitor_stop(&m);      // m.buf holds the lines ("\n" after each)
 *   pid_t who = vgt_tcp_peer_pid(54321, pids, n);
 *   vgt_monitor_free(&m);
 *
 * A MONITOR line is "<unix ts> [<db> <client addr>] "<cmd>" "<arg>" ...",
 * with commands a Lua script runs under client "lua".
 */
#ifndef VG_TESTS_SUPPORT_MONITOR_H
#define VG_TESTS_SUPPORT_MONITOR_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

typedef struct vgt_monitor {
    redisContext *c;
    pthread_t thread;
    pthread_mutex_t mu;
    int running;
    char *buf; /* every line so far, NUL-ended */
    size_t len, cap;
} vgt_monitor_t;

/* Sends MONITOR on c (taken over: freed by vgt_monitor_free) and starts
 * the thread that appends its lines to m->buf.  Returns 0 once the server
 * confirmed it, -1 otherwise (c freed). */
int vgt_monitor_start(vgt_monitor_t *m, redisContext *c);
/* Stops the thread (after it appended what arrived so far). */
void vgt_monitor_stop(vgt_monitor_t *m);
void vgt_monitor_free(vgt_monitor_t *m);

/* Which of pids[0..n) holds the loopback TCP socket whose local port is
 * port (a client's end of a connection, from /proc/net/tcp and
 * /proc/<pid>/fd); -1 when none does. */
pid_t vgt_tcp_peer_pid(int port, const pid_t *pids, int n);

#endif
