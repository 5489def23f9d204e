/* rcluster.c — see rcluster.h.  Servers and redis-cli are children of this
 * process (execvp: found on PATH); readiness is polled with PING and
 * CLUSTER INFO, with deadlines only as guards. */
#include "tests/support/rcluster.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/daemon.h"
#include "tests/support/proc.h"

/* Forks argv[0] (found on PATH) with its output appended to log. */
static pid_t spawn_path(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (fd >= 0 && null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

redisContext *vgt_rcluster_connect(const vgt_rcluster_t *rc, int i)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rc->port[i], tv);
    if (c && !c->err && rc->password) {
        redisReply *r = redisCommand(c, "AUTH %s", rc->password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            c->err = REDIS_ERR_OTHER;
        if (r)
            freeReplyObject(r);
    }
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* The reply of cmd on node i (freed by the caller), or NULL. */
static redisReply *node_cmd(const vgt_rcluster_t *rc, int i, const char *cmd)
{
    redisContext *c = vgt_rcluster_connect(rc, i);
    redisReply *r = c ? redisCommand(c, cmd) : NULL;
    if (c)
        redisFree(c);
    return r;
}

redisReply *vgt_rcluster_cmd(const vgt_rcluster_t *rc, int i, const char *fmt, ...)
{
    redisContext *c = vgt_rcluster_connect(rc, i);
    if (!c)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static int start_node(vgt_rcluster_t *rc, int i)
{
    char dir[PATH_MAX + 16], conf[PATH_MAX + 32], logf[PATH_MAX + 32], port[16], bus[16];
    snprintf(dir, sizeof dir, "%s/node%d", rc->dir, i);
    snprintf(conf, sizeof conf, "%s/nodes.conf", dir);
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    snprintf(port, sizeof port, "%d", rc->port[i]);
    snprintf(bus, sizeof bus, "%d", rc->bus[i]);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    const char *argv[40] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                            "--cluster-port", bus, "--cluster-config-file", conf, "--cluster-node-timeout", "2000",
                            "--cluster-require-full-coverage", "no", "--appendonly", "no", "--save", "",
                            "--dir", dir, "--logfile", logf, "--daemonize", "no"};
    int n = 25;
    if (rc->password) {
        argv[n++] = "--requirepass";
        argv[n++] = rc->password;
        argv[n++] = "--masterauth";
        argv[n++] = rc->password;
    }
    argv[n] = NULL;
    rc->pid[i] = spawn_path(argv, logf);
    if (rc->pid[i] < 0)
        return rc->pid[i] = 0, -1;
    for (int t = 0; t < 1000; t++) {
        int st;
        if (waitpid(rc->pid[i], &st, WNOHANG) == rc->pid[i])
            return rc->pid[i] = 0, -1;
        redisReply *r = node_cmd(rc, i, "PING");
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (ok)
            return 0;
        vgt_sleep_ms(10);
    }
    return -1;
}

/* Two free loopback ports per node, all distinct. */
static int pick_ports(vgt_rcluster_t *rc)
{
    int got[2 * VGT_RCLUSTER_MAX], k = 0;
    for (int tries = 0; k < 2 * rc->n && tries < 1000; tries++) {
        int p = vgt_free_port(), dup = p <= 0;
        for (int j = 0; j < k; j++)
            dup |= got[j] == p;
        if (!dup)
            got[k++] = p;
    }
    for (int i = 0; i < rc->n; i++) {
        rc->port[i] = got[2 * i];
        rc->bus[i] = got[2 * i + 1];
    }
    return k == 2 * rc->n ? 0 : -1;
}

/* Waits up to timeout_s for a redis-cli child (killed after that): 0 when
 * it exited 0, else -1 with a line naming its log. */
static int wait_cli(pid_t pid, int timeout_s, const char *what, const char *logf)
{
    int code = pid > 0 ? vgt_wait_exit(pid, timeout_s) : -1;
    if (code == -1 && pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (code != 0)
        fprintf(stderr, "rcluster: redis-cli --cluster %s exited %d (see %s)\n", what, code, logf);
    return code == 0 ? 0 : -1;
}

/* redis-cli --cluster create over every node. */
static int create(vgt_rcluster_t *rc)
{
    char addrs[VGT_RCLUSTER_MAX][32], logf[PATH_MAX + 16];
    const char *argv[VGT_RCLUSTER_MAX + 12] = {"redis-cli", "--cluster", "create"};
    int n = 3;
    for (int i = 0; i < rc->n; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", rc->port[i]);
        argv[n++] = addrs[i];
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "0";
    argv[n++] = "--cluster-yes";
    if (rc->password) {
        argv[n++] = "-a";
        argv[n++] = rc->password;
    }
    argv[n] = NULL;
    snprintf(logf, sizeof logf, "%s/create.log", rc->dir);
    return wait_cli(spawn_path(argv, logf), 60, "create", logf);
}

int vgt_rcluster_wait_ok(const vgt_rcluster_t *rc, long ms)
{
    long end = vgt_now_ms() + ms;
    for (;;) {
        int ok = 1;
        for (int i = 0; i < rc->n && ok; i++) {
            if (!rc->pid[i])
                continue;
            redisReply *r = node_cmd(rc, i, "CLUSTER INFO");
            ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            if (r)
                freeReplyObject(r);
        }
        if (ok)
            return 0;
        if (vgt_now_ms() >= end)
            return -1;
        vgt_sleep_ms(20);
    }
}

int vgt_rcluster_start(vgt_rcluster_t *rc, const char *dir, int n)
{
    const char *pass = rc->password;
    memset(rc, 0, sizeof *rc);
    rc->password = pass;
    if (n < 1 || n > VGT_RCLUSTER_MAX || snprintf(rc->dir, sizeof rc->dir, "%s", dir) >= (int)sizeof rc->dir)
        return -1;
    rc->n = n;
    int ok = 0;
    for (int attempt = 0; !ok && attempt < 5; attempt++) { /* a picked port taken meanwhile: pick again */
        ok = pick_ports(rc) == 0;
        for (int i = 0; ok && i < n; i++)
            ok = start_node(rc, i) == 0;
        if (!ok) {
            vgt_rcluster_stop(rc);
            for (int i = 0; i < n; i++) { /* a fresh node next time, not one that knows the old ports */
                char conf[PATH_MAX + 32];
                snprintf(conf, sizeof conf, "%s/node%d/nodes.conf", rc->dir, i);
                unlink(conf);
            }
        }
    }
    for (int i = 0; ok && i < n; i++) {
        redisReply *r = node_cmd(rc, i, "CLUSTER MYID");
        ok = r && r->type == REDIS_REPLY_STRING && r->len < sizeof rc->id[i];
        if (ok)
            memcpy(rc->id[i], r->str, r->len + 1);
        if (r)
            freeReplyObject(r);
    }
    ok = ok && create(rc) == 0 && vgt_rcluster_wait_ok(rc, 30000) == 0;
    if (!ok) {
        fprintf(stderr, "rcluster: cannot start a %d-node cluster in %s\n", n, rc->dir);
        vgt_rcluster_stop(rc);
        return -1;
    }
    return 0;
}

void vgt_rcluster_stop(vgt_rcluster_t *rc)
{
    for (int i = 0; i < rc->n; i++)
        if (rc->pid[i] > 0)
            kill(rc->pid[i], SIGTERM);
    for (int i = 0; i < rc->n; i++) {
        if (rc->pid[i] <= 0)
            continue;
        if (vgt_wait_exit(rc->pid[i], 10) == -1) {
            kill(rc->pid[i], SIGKILL);
            waitpid(rc->pid[i], NULL, 0);
        }
        rc->pid[i] = 0;
    }
}

void vgt_rcluster_kill(vgt_rcluster_t *rc, int i)
{
    if (rc->pid[i] <= 0)
        return;
    kill(rc->pid[i], SIGKILL);
    waitpid(rc->pid[i], NULL, 0);
    rc->pid[i] = 0;
}

int vgt_rcluster_restart(vgt_rcluster_t *rc, int i)
{
    vgt_rcluster_kill(rc, i);
    return start_node(rc, i);
}

int vgt_rcluster_owner(const vgt_rcluster_t *rc, unsigned slot)
{
    int asked = 0;
    while (asked < rc->n && !rc->pid[asked])
        asked++;
    redisReply *r = asked < rc->n ? node_cmd(rc, asked, "CLUSTER SLOTS") : NULL;
    int owner = -1;
    for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
        redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        if ((unsigned)e->element[0]->integer <= slot && slot <= (unsigned)e->element[1]->integer)
            for (int i = 0; i < rc->n; i++)
                if (e->element[2]->element[1]->integer == rc->port[i])
                    owner = i;
    }
    if (r)
        freeReplyObject(r);
    return owner;
}

/* CLUSTER SETSLOT slot <how> <id> on node i: 0 or -1. */
static int setslot(const vgt_rcluster_t *rc, int i, unsigned slot, const char *how, const char *id)
{
    redisContext *c = vgt_rcluster_connect(rc, i);
    redisReply *r = c ? redisCommand(c, "CLUSTER SETSLOT %u %s %s", slot, how, id) : NULL;
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        fprintf(stderr, "rcluster: node %d: CLUSTER SETSLOT %u %s: %s\n", i, slot, how, r ? r->str : "no reply");
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return ok ? 0 : -1;
}

int vgt_rcluster_migrate_begin(const vgt_rcluster_t *rc, unsigned slot, int from, int to)
{
    if (setslot(rc, to, slot, "IMPORTING", rc->id[from]) != 0)
        return -1;
    return setslot(rc, from, slot, "MIGRATING", rc->id[to]);
}

int vgt_rcluster_migrate_keys(const vgt_rcluster_t *rc, unsigned slot, int from, int to, int max)
{
    redisContext *c = vgt_rcluster_connect(rc, from);
    redisReply *keys = c ? redisCommand(c, "CLUSTER GETKEYSINSLOT %u %d", slot, max) : NULL;
    int moved = keys && keys->type == REDIS_REPLY_ARRAY ? (int)keys->elements : -1;
    char port[16];
    snprintf(port, sizeof port, "%d", rc->port[to]);
    for (int k = 0; k < moved; k++) { /* MIGRATE host port key 0 timeout [AUTH password] */
        const char *argv[8] = {"MIGRATE", "127.0.0.1", port, keys->element[k]->str, "0", "5000", "AUTH",
                               rc->password};
        size_t lens[8] = {7, 9, strlen(port), keys->element[k]->len, 1, 4, 4, rc->password ? strlen(rc->password) : 0};
        int argc = rc->password ? 8 : 6;
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "rcluster: MIGRATE %s: %s\n", keys->element[k]->str, r ? r->str : "no reply");
            moved = -1;
        }
        if (r)
            freeReplyObject(r);
    }
    if (keys)
        freeReplyObject(keys);
    if (c)
        redisFree(c);
    return moved;
}

int vgt_rcluster_migrate_end(const vgt_rcluster_t *rc, unsigned slot, int to)
{
    int rc_ = setslot(rc, to, slot, "NODE", rc->id[to]);
    for (int i = 0; i < rc->n; i++)
        if (i != to && rc->pid[i] && setslot(rc, i, slot, "NODE", rc->id[to]) != 0)
            rc_ = -1;
    return rc_;
}

pid_t vgt_rcluster_reshard_start(const vgt_rcluster_t *rc, int from, int to, int slots)
{
    char addr[32], n[16], logf[PATH_MAX + 16];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rc->port[from]);
    snprintf(n, sizeof n, "%d", slots);
    const char *argv[16] = {"redis-cli",    "--cluster",     "reshard", addr,          "--cluster-from", rc->id[from],
                            "--cluster-to", rc->id[to],      "--cluster-slots", n, "--cluster-yes"};
    int k = 11;
    if (rc->password) {
        argv[k++] = "-a";
        argv[k++] = rc->password;
    }
    argv[k] = NULL;
    snprintf(logf, sizeof logf, "%s/reshard.log", rc->dir);
    return spawn_path(argv, logf);
}

int vgt_rcluster_reshard_wait(const vgt_rcluster_t *rc, pid_t pid, int timeout_s)
{
    char logf[PATH_MAX + 16];
    snprintf(logf, sizeof logf, "%s/reshard.log", rc->dir);
    return wait_cli(pid, timeout_s, "reshard", logf);
}
