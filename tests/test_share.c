/* test_share.c — several vaegand in one group sharing one model
 * (kafka.control_topic; daemon/share.h), end to end (ctest label
 * integration): a real redis-server (or a real 3-master Redis Cluster), a
 * real Kafka-protocol broker (vaegan-mockbroker) and two or three built
 * vaegand as child processes, each with its own configuration, state
 * directory, log and metrics port.  Waits poll the metrics endpoints, Redis
 * or the logs, with deadlines only as guards. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cache/cluster.h"
#include "common/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/proc.h"
#include "tests/support/rcluster.h"
#include "tests/support/tmpdir.h"

#define N_ITEMS 200
#define GUARD_S 240.0 /* the trainer runs at nice 19: a guard, not a budget */

static const char SETTINGS[] = "[serve]\ntop_n = 10\nbatch = 64\nrefresh_s = 1\n"
                               "[state]\ncheckpoint_interval_s = 2\n"
                               "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"
                               "[train]\ninterval_ms = 200\nsteps_per_round = 2\npublish_interval_s = 1\n"
                               "[log]\nlevel = debug\n";
static const char SHARE[] = "[kafka]\ncontrol_topic = ctl\n";

#define MAX_INST 3

static vgt_env_t E;
static vgt_env_t I[MAX_INST]; /* the instances: E with their own files and metrics port */
static int n_inst;
static vgt_rcluster_t RC; /* the cluster's test only */
static char redis_conf[128];

/* n instances, 2 partitions each, on E's redis-server or (cluster) on a
 * 3-master Redis Cluster. */
static void setup_n(int n, int cluster)
{
    vg_tmpdir_make();
    memset(&RC, 0, sizeof RC);
    if (cluster)
        cr_assert_eq(vgt_rcluster_start(&RC, vg_tmpdir, 3), 0, "no cluster");
    static const char *const topics[] = {"clicks", "ctl"};
    vgt_env_opts_t o = {.vaegand = VG_VAEGAND_BIN, .mockbroker = VG_MOCKBROKER_BIN, .topics = topics, .n_topics = 2,
                        .partitions = 2 * n, .settings = SETTINGS};
    cr_assert_eq(vgt_env_start(&E, vg_tmpdir, &o), 0, "redis-server or the broker did not start");
    if (cluster) {
        snprintf(redis_conf, sizeof redis_conf, "host = 127.0.0.1\nport = %d\ncluster = yes", RC.port[1]);
        E.redis_conf = redis_conf;
    }
    n_inst = n;
    for (int k = 0; k < n; k++) {
        I[k] = E;
        snprintf(I[k].conf, sizeof I[k].conf, "%s/vaegand%d.conf", E.dir, k);
        snprintf(I[k].log, sizeof I[k].log, "%s/vaegand%d.log", E.dir, k);
        snprintf(I[k].state, sizeof I[k].state, "%s/state%d", E.dir, k);
        I[k].metrics_port = vgt_free_port();
        cr_assert_gt(I[k].metrics_port, 0);
        cr_assert_eq(vgt_env_write_conf(&I[k], SHARE), 0);
    }
}

static void setup(void) { setup_n(2, 0); }
static void setup_cluster(void) { setup_n(3, 1); }

static void teardown(void)
{
    for (int k = 0; k < n_inst; k++)
        if (I[k].daemon > 0) {
            kill(I[k].daemon, SIGKILL);
            waitpid(I[k].daemon, NULL, 0);
        }
    int keep = vgt_env_finish(&E);
    vgt_rcluster_stop(&RC);
    if (!keep)
        vg_tmpdir_remove();
}

/* Starts every instance and waits until each holds its 2 partitions. */
static void start_all(void)
{
    for (int k = 0; k < n_inst; k++)
        I[k].daemon = vgt_env_spawn(&I[k], NULL);
    for (int k = 0; k < n_inst; k++)
        cr_assert_geq(vgt_wait_log(&I[k], "consumer group joined: 2 partitions", NULL, 1, GUARD_S), 1, "instance %d", k);
}

static double metric(int k, const char *name) { return vgt_metric(I[k].metrics_port, name); }

/* vaegan:model's leader_epoch, once it is at least `want` (0 when it never is). */
static double wait_model_epoch(double want)
{
    double end = vg_mono_s() + GUARD_S;
    for (;;) {
        double got = 0;
        redisContext *c = vgt_redis_connect(&E.redis);
        redisReply *r = c ? redisCommand(c, "HGET vaegan:model leader_epoch") : NULL;
        if (r && r->type == REDIS_REPLY_STRING)
            got = atof(r->str);
        freeReplyObject(r);
        redisFree(c);
        if (got >= want || vg_mono_s() > end)
            return got;
        vgt_sleep_ms(100);
    }
}

/* Waits until instance k's metric is at least v; returns it. */
static double wait_metric(int k, const char *name, double v)
{
    double got = vgt_wait_metric(I[k].metrics_port, name, v, GUARD_S);
    if (!(got >= v))
        vgt_show_log(&I[k], name);
    return got;
}

/* The instance leading now among the running ones (waits while the
 * election settles: none leads during its rebalance); -1 when two lead or
 * none does. */
static int leader_now(void)
{
    double end = vg_mono_s() + GUARD_S;
    for (;;) {
        int leaders = 0, who = -1;
        for (int k = 0; k < n_inst; k++)
            if (I[k].daemon > 0 && metric(k, "vaegan_leader") == 1) {
                leaders++;
                who = k;
            }
        if (leaders == 1)
            return who;
        if (leaders > 1 || vg_mono_s() > end)
            return -1;
        vgt_sleep_ms(100);
    }
}

/* Two instances: exactly one leads and trains; the other holds its trainer
 * and serves the leader's snapshots; every history lands and every user
 * gets a list.  When the leader is killed (-9), the other takes over with
 * a higher epoch, continues from the leader's last shared checkpoint (its
 * step goes on from there) and publishes. */
Test(share, one_trainer_one_model_and_a_takeover, .init = setup, .fini = teardown, .timeout = 600)
{
    I[0].daemon = vgt_env_spawn(&I[0], NULL);
    cr_assert_eq(wait_metric(0, "vaegan_leader", 1), 1, "the first instance leads");
    double epoch0 = metric(0, "vaegan_leader_epoch");
    cr_assert_geq(epoch0, 1);
    I[1].daemon = vgt_env_spawn(&I[1], NULL);
    for (int k = 0; k < 2; k++) /* both in the group, so that both hold users */
        cr_assert_geq(vgt_wait_log(&I[k], "consumer group joined: 2 partitions", NULL, 1, GUARD_S), 1);
    int L = leader_now(), F = 1 - L;
    cr_assert_geq(L, 0, "exactly one leader");

    vgt_stream_t s;
    vgt_stream_make(&s, "u", 150, N_ITEMS, 3000, 7);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, GUARD_S), 0, "every event in its history");

    /* the follower serves what the leader published, and does not train */
    double step = wait_metric(L, "vaegan_snapshot_step", 1);
    cr_assert_geq(wait_metric(F, "vaegan_snapshot_step", step), step, "the follower loads the leader's snapshot");
    cr_assert_geq(vgt_wait_log(&I[F], "serving the leader's step", NULL, 1, GUARD_S), 1);
    cr_assert_geq(wait_metric(F, "vaegan_lists_written_total", 1), 1, "the follower writes its users' lists");
    cr_assert_eq(leader_now(), L, "still exactly one leader");
    cr_assert_eq(vgt_log_lines(&I[F], "trainer: round", NULL), 0, "the follower does not train");

    /* the leader dies; the follower takes over where its checkpoint left off */
    cr_assert_geq(vgt_wait_log(&I[L], "published as the checkpoint", NULL, 1, GUARD_S), 1);
    kill(I[L].daemon, SIGKILL);
    waitpid(I[L].daemon, NULL, 0);
    I[L].daemon = 0;
    cr_assert_eq(wait_metric(F, "vaegan_leader", 1), 1, "the follower takes over");
    cr_assert_gt(metric(F, "vaegan_leader_epoch"), epoch0, "with a newer epoch");
    cr_assert_geq(vgt_wait_log(&I[F], "continuing from the shared checkpoint", NULL, 1, GUARD_S), 1,
                  "from the leader's checkpoint");
    double ckpt = vgt_log_number_after(&I[F], "continuing from the shared checkpoint: step ");
    cr_assert_geq(ckpt, 2);
    cr_assert_geq(vgt_wait_log(&I[F], "trainer: round", NULL, 1, GUARD_S), 1, "and trains");
    cr_assert_gt(wait_metric(F, "vaegan_snapshot_step", ckpt + 1), ckpt, "its step goes on from the checkpoint's");
    double epoch1 = metric(F, "vaegan_leader_epoch");
    cr_assert_eq(wait_model_epoch(epoch1), epoch1, "vaegan:model is the new leader's, fenced by its epoch");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* The manifest's epoch of blob name ("" when none; static storage). */
static const char *manifest_epoch(const char *name)
{
    static char out[32];
    out[0] = '\0';
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = c ? redisCommand(c, "HGET vaegan:{leader}:manifest:%s epoch", name) : NULL;
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(out, sizeof out, "%s", r->str);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* A leader stopped past the session timeout (SIGSTOP) loses its place to
 * the other instance; resumed (SIGCONT), it learns it lost the partition
 * and steps down, and whatever it sends with its old epoch is refused: the
 * manifests and vaegan:model stay the new leader's. */
Test(share, a_resumed_old_leader_is_fenced, .init = setup, .fini = teardown, .timeout = 600)
{
    I[0].daemon = vgt_env_spawn(&I[0], NULL);
    cr_assert_eq(wait_metric(0, "vaegan_leader", 1), 1);
    I[1].daemon = vgt_env_spawn(&I[1], NULL);
    for (int k = 0; k < 2; k++)
        cr_assert_geq(vgt_wait_log(&I[k], "consumer group joined: 2 partitions", NULL, 1, GUARD_S), 1);
    vgt_stream_t s;
    vgt_stream_make(&s, "u", 100, N_ITEMS, 2000, 11);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n), 0);
    int L = leader_now(), F = 1 - L;
    cr_assert_geq(L, 0);
    cr_assert_geq(wait_metric(L, "vaegan_snapshot_step", 1), 1, "the leader publishes");
    double old = metric(L, "vaegan_leader_epoch");

    kill(I[L].daemon, SIGSTOP); /* its metrics are not read until SIGCONT */
    cr_assert_eq(wait_metric(F, "vaegan_leader", 1), 1, "the other instance takes over");
    double now = metric(F, "vaegan_leader_epoch");
    cr_assert_gt(now, old);
    char want[32];
    snprintf(want, sizeof want, "%.0f", now);
    double end = vg_mono_s() + GUARD_S;
    while (strcmp(manifest_epoch("snapshot"), want) && vg_mono_s() < end)
        vgt_sleep_ms(100);
    cr_assert_str_eq(manifest_epoch("snapshot"), want, "the new leader publishes");

    kill(I[L].daemon, SIGCONT);
    cr_assert_geq(vgt_wait_log(&I[L], "leader: stepping down", NULL, 1, GUARD_S), 1, "the old leader steps down");
    cr_assert_eq(leader_now(), F, "one leader: the new one");
    cr_assert_str_eq(manifest_epoch("snapshot"), want, "the snapshot is still the new leader's");
    cr_assert_eq(wait_model_epoch(now), now, "and so is vaegan:model");
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, GUARD_S), 0, "every event in its history");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}

/* ZCARD of hist:{<user>} summed over x's users, each read on its master. */
static long long cluster_entries(const vgt_expect_t *x)
{
    redisContext *c[VGT_RCLUSTER_MAX] = {0};
    long long sum = 0;
    char key[160];
    for (int k = 0; k < x->n_users; k++) {
        snprintf(key, sizeof key, "hist:{%s}", x->users[k]);
        int node = vgt_rcluster_owner(&RC, vg_cluster_keyslot(key, strlen(key)));
        cr_assert_geq(node, 0);
        if (!c[node])
            c[node] = vgt_rcluster_connect(&RC, node);
        redisReply *r = c[node] ? redisCommand(c[node], "ZCARD %s", key) : NULL;
        sum += r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
    }
    for (int i = 0; i < VGT_RCLUSTER_MAX; i++)
        redisFree(c[i]);
    return sum;
}

/* 1 once every running instance serves one snapshot step > 0. */
static int same_step(void)
{
    double end = vg_mono_s() + GUARD_S;
    while (vg_mono_s() < end) {
        double lo = 1e300, hi = -1;
        for (int k = 0; k < n_inst; k++)
            if (I[k].daemon > 0) {
                double v = metric(k, "vaegan_snapshot_step");
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
        if (hi > 0 && lo == hi)
            return 1;
        vgt_sleep_ms(100);
    }
    return 0;
}

/* Moves slot to another master step by step (begin, a key every 200 ms,
 * end) while the instances go on. */
static void migrate_slowly(unsigned slot)
{
    int from = vgt_rcluster_owner(&RC, slot), to = (from + 1) % 3;
    cr_assert_geq(from, 0);
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, slot, from, to), 0);
    for (int k = 0; k < 15; k++) {
        cr_assert_geq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 1), 0);
        vgt_sleep_ms(200);
    }
    cr_assert_geq(vgt_rcluster_migrate_keys(&RC, slot, from, to, 1000), 0);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, slot, to), 0);
    cr_assert_eq(vgt_rcluster_owner(&RC, slot), to);
}

/* Three instances on a 3-master Redis Cluster: one leader, every event in
 * its history on the master of its slot although a user's slot moves
 * during ingest, all three serving the same snapshot step, and still after
 * the slot of the epoch counter and the manifests ({leader}) moved while
 * the leader publishes; kill -9 of the leader: one of the others leads
 * with a higher epoch from the shared checkpoint (chunks and manifests
 * across the masters), and both survivors serve its snapshots. */
Test(share_cluster, three_instances_one_model_and_a_takeover, .init = setup_cluster, .fini = teardown,
     .timeout = 900)
{
    start_all();
    int L = leader_now();
    cr_assert_geq(L, 0, "exactly one leader");
    double epoch0 = metric(L, "vaegan_leader_epoch");
    vgt_stream_t s;
    vgt_stream_make(&s, "u", 150, N_ITEMS, 3000, 13);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, s.n / 2), 0);
    unsigned user_slot = vg_cluster_keyslot("u7", 2); /* hist:{u7} and its neighbours in the slot */
    int from = vgt_rcluster_owner(&RC, user_slot), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, user_slot, from, to), 0);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, s.n / 2, s.n), 0);
    cr_assert_geq(vgt_rcluster_migrate_keys(&RC, user_slot, from, to, 1000), 0);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, user_slot, to), 0);
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    double end = vg_mono_s() + GUARD_S;
    while (cluster_entries(&x) < (long long)x.entries && vg_mono_s() < end)
        vgt_sleep_ms(200);
    cr_assert_eq(cluster_entries(&x), (long long)x.entries, "every (user, item) in hist:{<user>}");
    cr_assert(same_step(), "all three serve the same snapshot step");
    double before = metric(L, "vaegan_snapshot_step");
    migrate_slowly(vg_cluster_keyslot("leader", 6));
    cr_assert_gt(wait_metric(L, "vaegan_snapshot_step", before + 1), before, "the leader publishes on");
    cr_assert(same_step(), "all three still serve one step");
    cr_assert_eq(leader_now(), L);
    double redirects = 0;
    for (int k = 0; k < n_inst; k++)
        redirects += metric(k, "vaegan_redis_cluster_redirects_total");
    cr_assert_gt(redirects, 0, "the moves were seen (MOVED/ASK)");
    cr_assert_geq(vgt_wait_log(&I[L], "published as the checkpoint", NULL, 1, GUARD_S), 1);

    kill(I[L].daemon, SIGKILL);
    waitpid(I[L].daemon, NULL, 0);
    I[L].daemon = 0;
    int N = leader_now();
    cr_assert_geq(N, 0, "one new leader");
    cr_assert_neq(N, L);
    cr_assert_gt(metric(N, "vaegan_leader_epoch"), epoch0);
    cr_assert_geq(vgt_wait_log(&I[N], "continuing from the shared checkpoint", NULL, 1, GUARD_S), 1);
    double ckpt = vgt_log_number_after(&I[N], "continuing from the shared checkpoint: step ");
    cr_assert_gt(wait_metric(N, "vaegan_snapshot_step", ckpt + 1), ckpt, "the step goes on");
    cr_assert(same_step(), "both survivors serve the new leader's snapshots");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}
