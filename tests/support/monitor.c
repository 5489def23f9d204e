/*
 * monitor.c — MONITOR lines collected by a thread, and the process of a
 * TCP port (see monitor.h).
 *
 * Invariant: m->buf changes only under m->mu, always NUL-ended.
 */
#include "tests/support/monitor.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void append(vgt_monitor_t *m, const char *s, size_t n)
{
    pthread_mutex_lock(&m->mu);
    if (m->len + n + 2 > m->cap) {
        size_t cap = (m->len + n + 2) * 2;
        char *b = realloc(m->buf, cap);
        if (!b) {
            pthread_mutex_unlock(&m->mu);
            return;
        }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len++] = '\n';
    m->buf[m->len] = '\0';
    pthread_mutex_unlock(&m->mu);
}

static void *reader(void *arg)
{
    vgt_monitor_t *m = arg;
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReply(m->c, (void **)&r) != REDIS_OK || !r)
            return NULL; /* the socket was shut down (vgt_monitor_stop) */
        if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING)
            append(m, r->str, r->len);
        freeReplyObject(r);
    }
}

int vgt_monitor_start(vgt_monitor_t *m, redisContext *c)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    redisReply *r = c && !c->err ? redisCommand(c, "MONITOR") : NULL;
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    freeReplyObject(r);
    if (!ok) {
        if (c)
            redisFree(c);
        return -1;
    }
    m->c = c;
    if (pthread_create(&m->thread, NULL, reader, m)) {
        redisFree(c);
        m->c = NULL;
        return -1;
    }
    m->running = 1;
    return 0;
}

void vgt_monitor_stop(vgt_monitor_t *m)
{
    if (!m->running)
        return;
    shutdown(m->c->fd, SHUT_RDWR);
    pthread_join(m->thread, NULL);
    m->running = 0;
}

void vgt_monitor_free(vgt_monitor_t *m)
{
    vgt_monitor_stop(m);
    if (m->c)
        redisFree(m->c);
    free(m->buf);
    pthread_mutex_destroy(&m->mu);
    memset(m, 0, sizeof *m);
}

/* The inode of the IPv4 socket with local port `port`, 0 when none. */
static unsigned long port_inode(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned lport, rport, st;
        unsigned long inode;
        char laddr[16], raddr[16];
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %8[0-9A-F]:%x %8[0-9A-F]:%x %x %*s %*s %*s %*u %*u %lu", laddr, &lport, raddr, &rport,
                   &st, &inode) == 6 &&
            (int)lport == port && inode)
            found = inode;
    }
    fclose(f);
    return found;
}

pid_t vgt_tcp_peer_pid(int port, const pid_t *pids, int n)
{
    unsigned long inode = port_inode(port);
    if (!inode)
        return -1;
    char want[64], path[64], link[64];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    for (int k = 0; k < n; k++) {
        snprintf(path, sizeof path, "/proc/%d/fd", (int)pids[k]);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            ssize_t got = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
            if (got > 0) {
                link[got] = '\0';
                if (strcmp(link, want) == 0) {
                    closedir(d);
                    return pids[k];
                }
            }
        }
        if (d)
            closedir(d);
    }
    return -1;
}
