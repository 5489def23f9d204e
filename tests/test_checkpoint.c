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
 * only as a guard.  The servers, the daemon, its log and /metrics come from
 * tests/support/daemon.h.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define GUARD_S 90.0 /* deadline of every wait: only for a broken build, never reached when it works */

static vgt_env_t E;
static char ckpt[340], fault[300];

static void start_servers(void)
{
    vg_tmpdir_make();
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .partitions = 4, .metrics = 1,
                        .group = "ck",
                        .settings = "[serve]\ntop_n = 5\n[state]\ncheckpoint_interval_s = 1\n"
                                    "[model]\nhidden = 16\nlatent = 8\ndisc_hidden = 8\nbatch = 32\n"
                                    "[train]\ninterval_ms = 100\nsteps_per_round = 1\n[log]\nlevel = info\n"};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "redis-server or the broker did not start");
    snprintf(ckpt, sizeof ckpt, "%s/model.ckpt", E.state);
    snprintf(fault, sizeof fault, "%s/fault", vg_tmpdir);
    cr_assert_eq(setenv("VAEGAN_FAULT_FILE", fault, 1), 0); /* inherited by vaegand; armed by creating it */
}

static void stop_servers(void)
{
    if (!vgt_env_finish(&E))
        vg_tmpdir_remove();
}

/* ---- what the test watches ---------------------------------------------------------- */

/* vaegan_checkpoint_failures_total from GET /metrics (daemon.h vgt_metric:
 * -1 when the endpoint does not answer yet, -2 without that metric). */
static double failures_metric(void) { return vgt_metric(E.metrics_port, "vaegan_checkpoint_failures_total"); }

static double wait_failures(double at_least)
{
    double end = vg_mono_s() + GUARD_S, v;
    while ((v = failures_metric()) < at_least && v != -2 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    return v;
}

static char *read_ckpt(size_t *n)
{
    FILE *f = fopen(ckpt, "rb");
    cr_assert_not_null(f, "%s exists", ckpt);
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
    DIR *d = opendir(E.state);
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
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys, vals, NULL, 1), 0);
    redisContext *c = vgt_redis_connect(&E.redis);
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
    FILE *f = fopen(fault, "w");
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
    cr_assert_eq(vgt_produce(E.addr, "clicks", keys, vals, NULL, 1000), 0);
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
    /* the counter moves just before the line is written: wait for the line */
    cr_assert_geq(vgt_wait_log(&E, "checkpoint failed", strerror_text, 3, GUARD_S), 3, "%s: each failure is logged",
                  errno_name);
    cr_assert_geq(vgt_log_lines(&E, " error ", strerror_text), 3, "%s: at level error", errno_name);
    cr_assert(ckpt_is(good, n), "%s: the last good model.ckpt is untouched", errno_name);
    cr_assert_eq(temp_files(), 0, "%s: no temporary file is left behind", errno_name);
    char user[32];
    snprintf(user, sizeof user, "during-%s", errno_name);
    cr_assert(click_gets_a_list(user, "i3"), "%s: serving goes on (rec:%s written)", errno_name, user);
    cr_assert(ckpt_is(good, n), "%s: still untouched", errno_name);
    cr_assert_eq(unlink(fault), 0);
    cr_assert_eq(vgt_wait_log(&E, "saved to", "failed attempts", round, GUARD_S), round,
                 "%s: the next success is logged", errno_name);
    cr_assert_not(ckpt_is(good, n), "%s: a new checkpoint is written after the fault", errno_name);
    double f1 = failures_metric();
    cr_assert_geq(f1, f0 + 3);
    free(good);
}

Test(checkpoint, disk_full_and_read_only_keep_the_last_good_state, .init = start_servers, .fini = stop_servers,
     .timeout = 600)
{
    produce_clicks();
    E.daemon = vgt_env_spawn(&E, NULL);
    double end = vg_mono_s() + GUARD_S;
    while (access(ckpt, F_OK) != 0 && vg_mono_s() < end) /* the first checkpoint */
        vgt_sleep_ms(50);
    cr_assert_eq(access(ckpt, F_OK), 0, "a first checkpoint is written");
    cr_assert_eq(wait_failures(0), 0, "vaegan_checkpoint_failures_total is exported, at 0");

    fault_then_recovery("ENOSPC", "No space left on device", 1);
    fault_then_recovery("EROFS", "Read-only file system", 2);

    /* a fault at SIGTERM: the stop fails and says so, the last good file stays and loads */
    arm("ENOSPC");
    double f = failures_metric();
    cr_assert_geq(wait_failures(f + 1), f + 1);
    size_t n;
    char *good = read_ckpt(&n);
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, GUARD_S), 1, "a stop whose save failed exits 1");
    E.daemon = 0;
    cr_assert_geq(vgt_log_lines(&E, "saving the model state", "No space left on device"), 1);
    cr_assert(ckpt_is(good, n), "the last good model.ckpt survives the failed stop");
    cr_assert_eq(unlink(fault), 0);
    E.daemon = vgt_env_spawn(&E, NULL);
    cr_assert_eq(vgt_wait_log(&E, "model state loaded from", ckpt, 1, GUARD_S), 1, "and it loads at the next start");
    cr_assert(click_gets_a_list("after-restart", "i5"));
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, GUARD_S), 0);
    E.daemon = 0;
    free(good);
}
