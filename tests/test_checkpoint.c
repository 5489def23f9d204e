/*
 * test_checkpoint.c — vaegand's checkpoints when the disk fails (ctest label
 * integration): a real redis-server, vaegan-mockbroker and the built
 * vaegand with a 1 s checkpoint interval; the state-file writer's test hook
 * (VAEGAN_FAULT_FILE, model/vaegan.h) fills the disk (ENOSPC) or makes it
 * read-only (EROFS) while the daemon runs.  Each fault must be logged at
 * error, counted in vaegan_checkpoint_failures_total (scraped from
 * /metrics), retried, and leave the last good model.ckpt byte for byte as it
 * was and no temporary file, while new clicks still get their lists; once
 * the fault is gone the next checkpoint is written and logged.  A fault at
 * SIGTERM fails the stop (exit 1) and the last good file still loads at the
 * next start.  Waits poll the metric, the log, Redis or files, with deadlines
 * only as a guard.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/kafka.h"
#include "tests/support/proc.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

#define GUARD_S 90.0 /* deadline of every wait: only for a broken build, never reached when it works */

static struct {
    vgt_redis_t redis;
    vgt_broker_t broker;
    char conf[256], log[256], dir[256], ckpt[300], fault[256];
    int metrics_port;
    pid_t daemon;
} T;

/* A TCP port nobody listens on now (the kernel's pick for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void start_servers(void)
{
    vg_tmpdir_make();
    memset(&T, 0, sizeof T);
    char rdir[200];
    snprintf(rdir, sizeof rdir, "%s/redis", vg_tmpdir);
    mkdir(rdir, 0755);
    cr_assert_eq(vgt_redis_start(&T.redis, rdir, 0), 0, "redis-server did not start");
    cr_assert_eq(vgt_broker_start(&T.broker, VG_MOCKBROKER_BIN, "clicks", 4), 0, "no broker");
    snprintf(T.conf, sizeof T.conf, "%s/vaegand.conf", vg_tmpdir);
    snprintf(T.log, sizeof T.log, "%s/vaegand.log", vg_tmpdir);
    snprintf(T.dir, sizeof T.dir, "%s/state", vg_tmpdir);
    snprintf(T.ckpt, sizeof T.ckpt, "%s/model.ckpt", T.dir);
    snprintf(T.fault, sizeof T.fault, "%s/fault", vg_tmpdir);
    T.metrics_port = free_port();
    FILE *f = fopen(T.conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[kafka]\nbrokers = %s\ntopic = clicks\ngroup = ck\noption.session.timeout.ms = 6000\n"
            "option.fetch.wait.max.ms = 10\noption.auto.offset.reset = earliest\n"
            "[redis]\nsocket = %s\n[serve]\ntop_n = 5\n"
            "[state]\ndir = %s\ncheckpoint_interval_s = 1\n"
            "[model]\nhidden = 16\nlatent = 8\ndisc_hidden = 8\nbatch = 32\n"
            "[train]\ninterval_ms = 100\nsteps_per_round = 1\n"
            "[log]\nlevel = info\n[metrics]\nlisten = 127.0.0.1:%d\n",
            T.broker.addr, T.redis.sock, T.dir, T.metrics_port);
    fclose(f);
    cr_assert_eq(setenv("VAEGAN_FAULT_FILE", T.fault, 1), 0); /* inherited by vaegand; armed by creating it */
}

static void stop_servers(void)
{
    if (T.daemon > 0) {
        kill(T.daemon, SIGKILL);
        waitpid(T.daemon, NULL, 0);
    }
    vgt_broker_stop(&T.broker);
    vgt_redis_stop(&T.redis);
    if (getenv("KEEP_TMP"))
        fprintf(stderr, "kept %s\n", vg_tmpdir);
    else
        vg_tmpdir_remove();
}

static pid_t start_daemon(void)
{
    const char *argv[] = {VG_VAEGAND_BIN, "-c", T.conf, NULL};
    pid_t pid = vgt_spawn(argv, T.log);
    cr_assert_geq(pid, 0);
    return pid;
}

/* ---- what the test watches ---------------------------------------------------------- */

/* vaegan_checkpoint_failures_total from GET /metrics, -1 when the endpoint
 * does not answer (yet), -2 when it answers without that metric. */
static double failures_metric(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.metrics_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static char buf[1 << 16];
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
        cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
        ssize_t k;
        while (n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
            n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    const char *line = strstr(buf, "\nvaegan_checkpoint_failures_total ");
    if (!line)
        return n ? -2 : -1;
    return atof(line + strlen("\nvaegan_checkpoint_failures_total "));
}

static double wait_failures(double at_least)
{
    double end = vg_mono_s() + GUARD_S, v;
    while ((v = failures_metric()) < at_least && v != -2 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    return v;
}

/* Lines of the daemon's log holding a and (unless NULL) b. */
static int log_lines(const char *a, const char *b)
{
    FILE *f = fopen(T.log, "r");
    if (!f)
        return 0;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

static int wait_log_lines(const char *a, const char *b, int at_least)
{
    double end = vg_mono_s() + GUARD_S;
    while (log_lines(a, b) < at_least && vg_mono_s() < end)
        vgt_sleep_ms(50);
    return log_lines(a, b);
}

static char *read_ckpt(size_t *n)
{
    FILE *f = fopen(T.ckpt, "rb");
    cr_assert_not_null(f, "%s exists", T.ckpt);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static int ckpt_is(const char *bytes, size_t n)
{
    size_t m;
    char *b = read_ckpt(&m);
    int same = m == n && memcmp(b, bytes, n) == 0;
    free(b);
    return same;
}

static int temp_files(void)
{
    DIR *d = opendir(T.dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, "model.ckpt.tmp", 14) == 0;
    closedir(d);
    return n;
}

/* user clicks item (one event); returns once rec:<user> exists, or 0 after
 * the guard. */
static int click_gets_a_list(const char *user, const char *item)
{
    char v[160];
    snprintf(v, sizeof v, "{\"user\":\"%s\",\"item\":\"%s\",\"ts\":1700000500}", user, item);
    const char *keys[] = {user}, *vals[] = {v};
    cr_assert_eq(vgt_produce(T.broker.addr, "clicks", keys, vals, NULL, 1), 0);
    redisContext *c = vgt_redis_connect(&T.redis);
    double end = vg_mono_s() + GUARD_S;
    long long exists = 0;
    while (!exists && vg_mono_s() < end) {
        redisReply *r = redisCommand(c, "EXISTS rec:%s", user);
        exists = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
        if (!exists)
            vgt_sleep_ms(50);
    }
    redisFree(c);
    return exists == 1;
}

static void arm(const char *errno_name)
{
    FILE *f = fopen(T.fault, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", errno_name);
    fclose(f);
}

/* 200 users clicking 60 items: enough for a model and lists. */
static void produce_clicks(void)
{
    static char key[1000][16], val[1000][128];
    const char *keys[1000], *vals[1000];
    for (int k = 0; k < 1000; k++) {
        snprintf(key[k], sizeof key[k], "u%d", k % 200);
        snprintf(val[k], sizeof val[k], "{\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}", k % 200,
                 (k * 7 + k / 200) % 60, 1700000000 + k);
        keys[k] = key[k];
        vals[k] = val[k];
    }
    cr_assert_eq(vgt_produce(T.broker.addr, "clicks", keys, vals, NULL, 1000), 0);
}

/* ---- the test ------------------------------------------------------------------------ */

/* One fault: armed until the counter rose by three (the first failure and
 * two retries), then removed until the next checkpoint is written. */
static void fault_then_recovery(const char *errno_name, const char *strerror_text, int round)
{
    double f0 = failures_metric();
    cr_assert_geq(f0, 0, "the metric is exported");
    arm(errno_name);
    cr_assert_geq(wait_failures(f0 + 1), f0 + 1, "%s: a failed checkpoint is counted", errno_name);
    size_t n;
    char *good = read_ckpt(&n); /* the last checkpoint before the fault: saves are sequential */
    cr_assert_geq(wait_failures(f0 + 3), f0 + 3, "%s: it is retried (backoff of 1 s here)", errno_name);
    cr_assert_geq(log_lines("checkpoint failed", strerror_text), 3, "%s: each failure is logged", errno_name);
    cr_assert_geq(log_lines(" error ", strerror_text), 3, "%s: at level error", errno_name);
    cr_assert(ckpt_is(good, n), "%s: the last good model.ckpt is untouched", errno_name);
    cr_assert_eq(temp_files(), 0, "%s: no temporary file is left behind", errno_name);
    char user[32];
    snprintf(user, sizeof user, "during-%s", errno_name);
    cr_assert(click_gets_a_list(user, "i3"), "%s: serving goes on (rec:%s written)", errno_name, user);
    cr_assert(ckpt_is(good, n), "%s: still untouched", errno_name);
    cr_assert_eq(unlink(T.fault), 0);
    cr_assert_eq(wait_log_lines("saved to", "failed attempts", round), round, "%s: the next success is logged",
                 errno_name);
    cr_assert_not(ckpt_is(good, n), "%s: a new checkpoint is written after the fault", errno_name);
    double f1 = failures_metric();
    cr_assert_geq(f1, f0 + 3);
    free(good);
}

Test(checkpoint, disk_full_and_read_only_keep_the_last_good_state, .init = start_servers, .fini = stop_servers,
     .timeout = 600)
{
    produce_clicks();
    T.daemon = start_daemon();
    double end = vg_mono_s() + GUARD_S;
    while (access(T.ckpt, F_OK) != 0 && vg_mono_s() < end) /* the first checkpoint */
        vgt_sleep_ms(50);
    cr_assert_eq(access(T.ckpt, F_OK), 0, "a first checkpoint is written");
    cr_assert_eq(wait_failures(0), 0, "vaegan_checkpoint_failures_total is exported, at 0");

    fault_then_recovery("ENOSPC", "No space left on device", 1);
    fault_then_recovery("EROFS", "Read-only file system", 2);

    /* a fault at SIGTERM: the stop fails and says so, the last good file stays and loads */
    arm("ENOSPC");
    double f = failures_metric();
    cr_assert_geq(wait_failures(f + 1), f + 1);
    size_t n;
    char *good = read_ckpt(&n);
    kill(T.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(T.daemon, GUARD_S), 1, "a stop whose save failed exits 1");
    T.daemon = 0;
    cr_assert_geq(log_lines("saving the model state", "No space left on device"), 1);
    cr_assert(ckpt_is(good, n), "the last good model.ckpt survives the failed stop");
    cr_assert_eq(unlink(T.fault), 0);
    T.daemon = start_daemon();
    cr_assert_eq(wait_log_lines("model state loaded from", T.ckpt, 1), 1, "and it loads at the next start");
    cr_assert(click_gets_a_list("after-restart", "i5"));
    kill(T.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(T.daemon, GUARD_S), 0);
    T.daemon = 0;
    free(good);
}
