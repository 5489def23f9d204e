/*
 * redis_util.h — a private redis-server for integration tests (header-only).
 *
 *   vgt_redis_t r;
 *   cr_assert_eq(vgt_redis_start(&r, vg_tmpdir, 1), 0);   // AOF on
 *   redisContext *c = vgt_redis_connect(&r);             // assertions
 *   ... the code under test connects to r.sock ...
 *   vgt_redis_stop(&r);
 *
 * The server listens on the unix socket <dir>/redis.sock only (--port 0),
 * keeps its files (AOF, log redis.log) in dir and saves no RDB.  With aof,
 * every write is fsynced before it is answered (--appendfsync always), so a
 * vgt_redis_restart() finds every acknowledged write.  The server gets
 * SIGKILL if the test process dies first (PR_SET_PDEATHSIG).
 * Needs redis-server on PATH and hiredis; blocking calls, test code only.
 * (static inline: a test may use only some of them without warnings.)
 */
#ifndef VG_TESTS_REDIS_UTIL_H
#define VG_TESTS_REDIS_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct vgt_redis {
    pid_t pid; /* 0 when not running */
    char dir[PATH_MAX];
    char sock[PATH_MAX];
    int aof;
} vgt_redis_t;

#ifndef VGT_SLEEP_MS /* shared by the test helper headers */
#define VGT_SLEEP_MS
static inline void vgt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}
#endif

/* A synchronous hiredis client on r's socket for assertions (the caller
 * frees it with redisFree), or NULL. */
static inline redisContext *vgt_redis_connect(const vgt_redis_t *r)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* Waits until waitpid reaps r->pid (up to ms), else SIGKILLs it.  0 if it
 * exited by itself. */
static inline int vgt_redis_reap(vgt_redis_t *r, long ms)
{
    int st;
    for (long t = 0; t < ms; t += 10) {
        pid_t p = waitpid(r->pid, &st, WNOHANG);
        if (p == r->pid || (p == -1 && errno == ECHILD)) {
            r->pid = 0;
            return 0;
        }
        vgt_sleep_ms(10);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, &st, 0);
    r->pid = 0;
    return -1;
}

/* Starts redis-server on dir (which must exist) and waits until it answers
 * PING (not -LOADING), up to 10 s.  Returns 0 or -1 (nothing left running). */
static inline int vgt_redis_start(vgt_redis_t *r, const char *dir, int aof)
{
    char d[PATH_MAX];
    if (snprintf(d, sizeof d, "%s", dir) >= (int)sizeof d)
        return -1;
    memset(r, 0, sizeof *r);
    memcpy(r->dir, d, sizeof d);
    r->aof = aof;
    if (snprintf(r->sock, sizeof r->sock, "%s/redis.sock", d) >= (int)sizeof r->sock)
        return -1;
    char logf[PATH_MAX + 16];
    snprintf(logf, sizeof logf, "%s/redis.log", d);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", r->sock,
               "--unixsocketperm", "700", "--dir", d, "--save", "", "--appendonly",
               aof ? "yes" : "no", "--appendfsync", "always", "--logfile", logf, "--daemonize",
               "no", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int t = 0; t < 1000; t++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        redisContext *c = vgt_redis_connect(r);
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        vgt_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    vgt_redis_reap(r, 1000);
    return -1;
}

/* Stops the server: SHUTDOWN NOSAVE (the AOF is flushed), or SIGTERM if that
 * cannot be sent (e.g. requirepass is set), and waits for it. */
static inline void vgt_redis_stop(vgt_redis_t *r)
{
    if (r->pid <= 0)
        return;
    int sent = 0;
    redisContext *c = vgt_redis_connect(r);
    if (c) {
        redisReply *rep = redisCommand(c, "SHUTDOWN NOSAVE");
        /* success = the server closed the connection (no reply) */
        sent = rep == NULL;
        if (rep)
            freeReplyObject(rep);
        redisFree(c);
    }
    if (!sent)
        kill(r->pid, SIGTERM);
    vgt_redis_reap(r, 10000);
}

/* Starts the server again on the same dir and socket (AOF data survives). */
static inline int vgt_redis_restart(vgt_redis_t *r)
{
    vgt_redis_stop(r);
    char d[PATH_MAX];
    memcpy(d, r->dir, sizeof d);
    return vgt_redis_start(r, d, r->aof);
}

#endif
