/* env.c — the environment of a run, started and stopped here only: a fresh
 * work directory, a private redis-server (unix socket, no persistence),
 * vaegan-mockbroker (topic "clicks", P partitions) and vaegand with its
 * configuration and /metrics on a free loopback port.  bs_env_stop is safe
 * after any failed step: it stops what runs, in the reverse order. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/stream/internal.h"
#include "common/clock.h"
#include "tests/support/proc.h"

#ifndef VG_MOCKBROKER_BIN
#error "VG_MOCKBROKER_BIN must be defined by the build"
#endif

static void tail_log(const char *log, int lines)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, log);
    if (system(cmd) != 0)
        fprintf(stderr, "(cannot show %s)\n", log);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int redis_cmd_ok(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    return ok;
}

int bs_env_mkdir(bs_run_t *R)
{
    snprintf(R->dir, sizeof R->dir, "/tmp/vg-bench-stream-XXXXXX");
    if (!mkdtemp(R->dir)) {
        bs_complain("mkdtemp: %s", strerror(errno));
        return -1;
    }
    snprintf(R->conf, sizeof R->conf, "%s/vaegand.conf", R->dir);
    snprintf(R->log, sizeof R->log, "%s/vaegand.log", R->dir);
    snprintf(R->state, sizeof R->state, "%s/state", R->dir);
    return 0;
}

int bs_env_start(bs_run_t *R)
{
    if (vgt_redis_start(&R->redis, R->dir, 0) != 0) {
        bs_complain("cannot start redis-server in %s", R->dir);
        return -1;
    }
    if (vgt_broker_start(&R->broker, VG_MOCKBROKER_BIN, BS_TOPIC, R->o.partitions) != 0) {
        bs_complain("cannot start %s", VG_MOCKBROKER_BIN);
        return -1;
    }
    R->pids.redis = R->redis.pid;
    R->pids.broker = R->broker.pid;
    printf("   redis-server on %s, mock broker on %s (%d partitions), work dir %s\n", R->redis.sock, R->broker.addr,
           R->o.partitions, R->dir);
    return 0;
}

/* kafka.option.fetch.wait.max.ms = 10, session timeout 6 s, top_n = 100,
 * model.hidden = BS_HIDDEN, the other model and train defaults (but
 * --train-steps); a --set of the same SECTION.KEY replaces one of these,
 * others are added.  The configuration refuses a key set twice. */
static int write_conf(bs_run_t *R)
{
    char v[6][PATH_MAX + 64];
    snprintf(v[0], sizeof v[0], "kafka.brokers=%s", R->broker.addr);
    snprintf(v[1], sizeof v[1], "redis.socket=%s", R->redis.sock);
    snprintf(v[2], sizeof v[2], "state.dir=%s", R->state);
    snprintf(v[3], sizeof v[3], "metrics.listen=127.0.0.1:%d", R->port);
    snprintf(v[4], sizeof v[4], "model.hidden=%d", BS_HIDDEN);
    snprintf(v[5], sizeof v[5], "train.steps_per_round=%d", R->o.train_steps);
    const char *opt[16 + BS_MAX_SET] = {
        v[0], "kafka.topic=" BS_TOPIC, "kafka.group=bench", "kafka.option.fetch.wait.max.ms=10",
        "kafka.option.session.timeout.ms=6000", "kafka.option.auto.offset.reset=earliest", v[1],
        "serve.top_n=100", v[2], "log.level=info", v[3], v[4], R->o.train_steps >= 0 ? v[5] : NULL,
    };
    int n = 13;
    for (int i = 0; i < R->o.n_set; i++) { /* SECTION.KEY=VALUE, checked by the option parser */
        size_t klen = (size_t)(strchr(R->o.set[i], '=') - R->o.set[i]) + 1;
        int k = 0;
        while (k < n && !(opt[k] && strncmp(opt[k], R->o.set[i], klen) == 0))
            k++;
        opt[k == n ? n++ : k] = R->o.set[i];
    }
    FILE *f = fopen(R->conf, "w");
    if (!f || R->port < 0) {
        bs_complain("cannot write %s", R->conf);
        if (f)
            fclose(f);
        return -1;
    }
    for (int k = 0; k < n; k++) { /* a section header per option: the loader merges them */
        const char *s = opt[k], *dot = s ? strchr(s, '.') : NULL, *eq = s ? strchr(s, '=') : NULL;
        if (s)
            fprintf(f, "[%.*s]\n%.*s = %s\n", (int)(dot - s), s, (int)(eq - dot - 1), dot + 1, eq + 1);
    }
    fclose(f);
    return 0;
}

int bs_env_start_daemon(bs_run_t *R)
{
    R->port = free_port();
    if (write_conf(R) != 0)
        return -1;
    R->rc = vgt_redis_connect(&R->redis);
    if (!R->rc) {
        bs_complain("cannot connect to redis");
        return -1;
    }
    redis_cmd_ok(R->rc, "CONFIG RESETSTAT");
    R->t_start = vg_mono_s();
    const char *argv[] = {R->o.vaegand, "-c", R->conf, NULL};
    R->dpid = vgt_spawn(argv, R->log);
    if (R->dpid < 0) {
        bs_complain("fork: %s", strerror(errno));
        R->dpid = 0;
        return -1;
    }
    R->pids.daemon = R->dpid;
    return 0;
}

int bs_daemon_alive(bs_run_t *R, const char *during)
{
    int st;
    if (waitpid(R->dpid, &st, WNOHANG) == 0)
        return 1;
    bs_complain("vaegand exited %s; its log:", during);
    tail_log(R->log, 30);
    R->dpid = 0;
    return 0;
}

/* SIGTERM; vaegand must exit 0 (else SIGKILL, reported with its log). */
static void stop_daemon(bs_run_t *R)
{
    kill(R->dpid, SIGTERM);
    double t0 = vg_mono_s();
    R->exit_code = vgt_wait_exit(R->dpid, R->stalled ? 15 : 120);
    if (R->exit_code == -1) {
        kill(R->dpid, SIGKILL);
        waitpid(R->dpid, NULL, 0);
    }
    printf("-- vaegand: SIGTERM -> %s %d after %.1f s%s\n", R->exit_code == -1 ? "no exit, SIGKILL; code" : "exit",
           R->exit_code, vg_mono_s() - t0, R->exit_code == 0 ? "" : " (NOT 0; log tail below)");
    if (R->exit_code != 0)
        tail_log(R->log, 30);
}

void bs_env_stop(bs_run_t *R)
{
    bs_subscriber_stop(&R->redis, &R->sub_th, &R->sub_started);
    if (R->dpid > 0)
        stop_daemon(R);
    if (R->rc)
        redisFree(R->rc);
    R->rc = NULL;
    vgt_broker_stop(&R->broker);
    vgt_redis_stop(&R->redis);
}

void bs_env_remove(const bs_run_t *R)
{
    if (R->o.keep || !R->ok) {
        fprintf(stderr, "vaegan-bench-stream: work directory kept: %s\n", R->dir);
        return;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", R->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "vaegan-bench-stream: cannot remove %s\n", R->dir);
}
