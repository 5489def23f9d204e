/* redis.c — see redis.h.  The server is a child of this process, started
 * with execlp and polled with PING until it answers; stopping reaps it (with
 * SIGKILL after the grace time), so no test leaves a server behind. */
#include "tests/support/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/proc.h"

redisContext *vgt_redis_connect(const vgt_redis_t *r)
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
static int reap(vgt_redis_t *r, long ms)
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

/* The child: output to /dev/null, then redis-server (never returns). */
static void exec_server(const vgt_redis_t *r, const char *logf)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
    }
    char nodes[PATH_MAX + 16];
    snprintf(nodes, sizeof nodes, "%s/nodes.conf", r->dir);
    const char *argv[32] = {"redis-server", "--port", "0", "--unixsocket", r->sock, "--unixsocketperm", "700",
                            "--dir", r->dir, "--save", "", "--appendonly", r->aof ? "yes" : "no", "--appendfsync",
                            "always", "--logfile", logf, "--daemonize", "no", "--cluster-enabled",
                            r->cluster ? "yes" : "no", "--cluster-config-file", nodes};
    int n = 23;
    for (int k = 0; k < VGT_REDIS_EXTRA && r->extra[k]; k++)
        argv[n++] = r->extra[k];
    argv[n] = NULL;
    execvp("redis-server", (char *const *)argv);
    _exit(127);
}

/* 1 when the server answers PING with PONG. */
static int answers_ping(const vgt_redis_t *r)
{
    redisContext *c = vgt_redis_connect(r);
    if (!c)
        return 0;
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return ok;
}

int vgt_redis_start(vgt_redis_t *r, const char *dir, int aof)
{
    return vgt_redis_start_cluster_node(r, dir, aof, 0);
}

int vgt_redis_start_cluster_node(vgt_redis_t *r, const char *dir, int aof, int cluster)
{
    char d[PATH_MAX];
    if (snprintf(d, sizeof d, "%s", dir) >= (int)sizeof d)
        return -1;
    const char *extra[VGT_REDIS_EXTRA];
    memcpy(extra, r->extra, sizeof extra); /* set by the caller before the start */
    memset(r, 0, sizeof *r);
    memcpy(r->extra, extra, sizeof extra);
    memcpy(r->dir, d, sizeof d);
    r->aof = aof;
    r->cluster = cluster;
    if (snprintf(r->sock, sizeof r->sock, "%s/redis.sock", d) >= (int)sizeof r->sock)
        return -1;
    char logf[PATH_MAX + 16];
    snprintf(logf, sizeof logf, "%s/redis.log", d);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        exec_server(r, logf);
    r->pid = pid;
    for (int t = 0; t < 1000; t++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        if (answers_ping(r))
            return 0;
        vgt_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    reap(r, 1000);
    return -1;
}

void vgt_redis_stop(vgt_redis_t *r)
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
    reap(r, 10000);
}

int vgt_redis_restart(vgt_redis_t *r)
{
    vgt_redis_stop(r);
    char d[PATH_MAX];
    memcpy(d, r->dir, sizeof d);
    return vgt_redis_start(r, d, r->aof);
}
