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
#include "tests/support/monitor.h"
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
    cr_assert_gt(vgt_log_number_after(&I[F], "its popularity of "), 0, "and ranks by the leader's popularity");
    cr_assert_geq(wait_metric(F, "vaegan_lists_written_total", 1), 1, "the follower writes its users' lists");
    double owned = wait_metric(F, "vaegan_users_owned", 1);
    cr_assert(owned >= 1 && owned < 150, "the follower owns its partitions' users only (%g)", owned);
    cr_assert_lt(metric(F, "vaegan_users"), 150, "and holds no more");
    cr_assert_geq(wait_metric(L, "vaegan_users", 150), 150, "the leader holds every user to train");
    cr_assert_eq(leader_now(), L, "still exactly one leader");
    cr_assert_eq(vgt_log_lines(&I[F], "trainer: round", NULL), 0, "the follower does not train");

    /* the leader dies; the follower takes over where its checkpoint left off */
    cr_assert_geq(vgt_wait_log(&I[L], "published as the checkpoint", NULL, 1, GUARD_S), 1);
    kill(I[L].daemon, SIGKILL);
    waitpid(I[L].daemon, NULL, 0);
    I[L].daemon = 0;
    cr_assert_eq(wait_metric(F, "vaegan_leader", 1), 1, "the follower takes over");
    cr_assert_geq(wait_metric(F, "vaegan_users_owned", 150), 150, "and owns every user: its partitions' and the "
                  "ones it warmed from the others' sets of recent users");
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

/* The largest set of recent users of the 4 partitions of clicks. */
static long long largest_part_set(void)
{
    long long most = 0;
    for (int p = 0; p < 4; p++) {
        char key[64];
        snprintf(key, sizeof key, "vaegan:part:clicks:%d", p);
        long long n = vgt_zcard(&E, key);
        most = n > most ? n : most;
    }
    return most;
}

/* A leader stopped past the session timeout (SIGSTOP) loses its place to
 * the other instance; resumed (SIGCONT), it learns it lost the partition
 * and steps down, and whatever it sends with its old epoch is refused: the
 * manifests and vaegan:model stay the new leader's.  With 100 users and
 * history.max_users = 20, the owner trims its partitions' sets of recent
 * users to 20 (one of the 4 has at least 25). */
Test(share, a_resumed_old_leader_is_fenced, .init = setup, .fini = teardown, .timeout = 600)
{
    char conf[128];
    snprintf(conf, sizeof conf, "%s[history]\nmax_users = 20\n", SHARE);
    for (int k = 0; k < 2; k++)
        cr_assert_eq(vgt_env_write_conf(&I[k], conf), 0);
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
    cr_assert_geq(wait_metric(L, "vaegan_users_dropped_total", 1), 1, "and drops the users it does not own");
    cr_assert_eq(leader_now(), F, "one leader: the new one");
    cr_assert_str_eq(manifest_epoch("snapshot"), want, "the snapshot is still the new leader's");
    cr_assert_eq(wait_model_epoch(now), now, "and so is vaegan:model");
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    cr_assert_eq(vgt_wait_hist(&E, &s, &x, GUARD_S), 0, "every event in its history");
    end = vg_mono_s() + GUARD_S;
    while (largest_part_set() > 20 && vg_mono_s() < end)
        vgt_sleep_ms(100);
    cr_assert_leq(largest_part_set(), 20, "the sets of recent users are trimmed to history.max_users");
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

/* ---- who wrote which list, from MONITOR on every master ----------------------- */

#define MAX_USERS 512

static vgt_monitor_t MON[3];

static void monitor_all(void)
{
    for (int k = 0; k < 3; k++)
        cr_assert_eq(vgt_monitor_start(&MON[k], vgt_rcluster_connect(&RC, k)), 0, "MONITOR on master %d", k);
}

/* The user of a "<kind>{<user>}" key inside line at key, into out. */
static int key_user(const char *key, char *out, size_t outlen)
{
    const char *a = strchr(key, '{'), *b = a ? strchr(a, '}') : NULL;
    if (!a || !b || (size_t)(b - a) >= outlen)
        return -1;
    memcpy(out, a + 1, (size_t)(b - a - 1));
    out[b - a - 1] = '\0';
    return 0;
}

static int user_index(char (*users)[64], int *n, const char *u)
{
    for (int k = 0; k < *n; k++)
        if (strcmp(users[k], u) == 0)
            return k;
    cr_assert_lt(*n, MAX_USERS);
    snprintf(users[*n], 64, "%s", u);
    return (*n)++;
}

/* Stops the monitors: each user's rec: list was written (EVAL of the list
 * script) by one running instance only, the owner of its partition.
 * Returns how many lists were seen. */
static int lists_by_owners_only(void)
{
    static char users[MAX_USERS][64];
    static pid_t writer[MAX_USERS];
    int n_users = 0, lists = 0;
    pid_t pids[MAX_INST];
    for (int k = 0; k < n_inst; k++)
        pids[k] = I[k].daemon;
    for (int m = 0; m < 3; m++) {
        vgt_monitor_stop(&MON[m]);
        for (char *line = MON[m].buf; line && *line;) {
            char *end = strchr(line, '\n');
            *end = '\0';
            const char *key = strstr(line, "\"EVAL\"") ? strstr(line, " \"rec:{") : NULL;
            const char *addr = strstr(line, " 127.0.0.1:");
            char u[64];
            if (key && addr && key_user(key, u, sizeof u) == 0) {
                pid_t who = vgt_tcp_peer_pid(atoi(addr + 11), pids, n_inst);
                cr_assert_gt(who, 0, "a list write from an instance: %.200s", line);
                int i = user_index(users, &n_users, u);
                cr_assert(writer[i] == 0 || writer[i] == who, "user %s: lists from two instances", u);
                writer[i] = who;
                lists++;
            }
            *end = '\n';
            line = end + 1;
        }
    }
    for (int m = 0; m < 3; m++)
        vgt_monitor_free(&MON[m]);
    cr_log_info("%d list writes of %d users, each user's from one instance", lists, n_users);
    return lists;
}

/* The recver:{<user>} values the list script set (under client "lua"), in
 * the order of the masters' clocks: they never go down for any user. */
typedef struct ver_set {
    double ts, version;
    int user;
} ver_set_t;

static int by_ts(const void *a, const void *b)
{
    const ver_set_t *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int versions_never_go_back(void)
{
    static char users[MAX_USERS][64];
    int n_users = 0;
    size_t n = 0, cap = 1024;
    ver_set_t *v = malloc(cap * sizeof *v);
    cr_assert_not_null(v);
    for (int m = 0; m < 3; m++) {
        vgt_monitor_stop(&MON[m]);
        for (char *line = MON[m].buf; line && *line;) {
            char *end = strchr(line, '\n');
            *end = '\0';
            const char *set = strstr(line, "[0 lua] \"SET\" \"recver:{");
            char u[64];
            if (set && key_user(set, u, sizeof u) == 0) {
                const char *val = strstr(strchr(set, '}'), "\" \"");
                cr_assert_not_null(val);
                if (n == cap)
                    cr_assert_not_null(v = realloc(v, (cap *= 2) * sizeof *v));
                v[n++] = (ver_set_t){strtod(line, NULL), strtod(val + 3, NULL), user_index(users, &n_users, u)};
            }
            *end = '\n';
            line = end + 1;
        }
    }
    qsort(v, n, sizeof *v, by_ts);
    double last[MAX_USERS];
    for (int k = 0; k < n_users; k++)
        last[k] = -1e300;
    for (size_t k = 0; k < n; k++) {
        cr_assert_geq(v[k].version, last[v[k].user], "user %s: a list of an older history written after a newer one",
                      users[v[k].user]);
        last[v[k].user] = v[k].version;
    }
    free(v);
    for (int m = 0; m < 3; m++)
        vgt_monitor_free(&MON[m]);
    cr_log_info("%zu recver: sets of %d users, none lower than the one before", n, n_users);
    return (int)n;
}

/* Three instances on a 3-master Redis Cluster: one leader, every event in
 * its history on the master of its slot although a user's slot moves
 * during ingest and redis-cli --cluster reshard then moves 1,000 more, all three serving the same snapshot step, and still after
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
    int joins = 0;
    for (int k = 0; k < n_inst; k++)
        joins += vgt_log_lines(&I[k], "consumer group joined", NULL);
    monitor_all();
    vgt_stream_t s;
    vgt_stream_make(&s, "u", 150, N_ITEMS, 3000, 13);
    size_t third = s.n / 3;
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, 0, third), 0);
    unsigned user_slot = vg_cluster_keyslot("u7", 2); /* hist:{u7} and its neighbours in the slot */
    int from = vgt_rcluster_owner(&RC, user_slot), to = (from + 1) % 3;
    cr_assert_eq(vgt_rcluster_migrate_begin(&RC, user_slot, from, to), 0);
    cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, third, 2 * third), 0);
    cr_assert_geq(vgt_rcluster_migrate_keys(&RC, user_slot, from, to, 1000), 0);
    cr_assert_eq(vgt_rcluster_migrate_end(&RC, user_slot, to), 0);
    /* then redis-cli reshards 1,000 slots while the last third comes, in steps of 50 events */
    pid_t rs = vgt_rcluster_reshard_start(&RC, to, (to + 1) % 3, 1000);
    cr_assert_gt(rs, 0);
    for (size_t at = 2 * third; at < s.n; at += 50)
        cr_assert_eq(vgt_stream_produce(&E, "clicks", &s, at, at + 50 < s.n ? at + 50 : s.n), 0);
    cr_assert_eq(vgt_rcluster_reshard_wait(&RC, rs, (int)GUARD_S), 0, "redis-cli --cluster reshard");
    vgt_expect_t x;
    vgt_expect_make(&s, &x);
    double end = vg_mono_s() + GUARD_S;
    while (cluster_entries(&x) < (long long)x.entries && vg_mono_s() < end)
        vgt_sleep_ms(200);
    cr_assert_eq(cluster_entries(&x), (long long)x.entries, "every (user, item) in hist:{<user>}");
    cr_assert(same_step(), "all three serve the same snapshot step");
    int joins_now = 0;
    for (int k = 0; k < n_inst; k++)
        joins_now += vgt_log_lines(&I[k], "consumer group joined", NULL);
    if (joins_now == joins) /* no rebalance meanwhile (a loaded machine may force one): one owner per user */
        cr_assert_gt(lists_by_owners_only(), 0, "lists were written");
    else {
        cr_log_warn("a rebalance during ingest: owners changed, so lists may come from two instances");
        for (int m = 0; m < 3; m++)
            vgt_monitor_free(&MON[m]);
    }
    for (int k = 0; k < n_inst; k++)
        cr_assert_geq(wait_metric(k, "vaegan_users_owned", 1), 1, "instance %d owns users", k);
    cr_assert_geq(wait_metric(L, "vaegan_users", 150), 150, "the leader holds every user (its tail of vaegan:users)");
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

    monitor_all(); /* the partitions of the killed leader move: no list goes back in time */
    double lists[MAX_INST];
    for (int k = 0; k < n_inst; k++)
        lists[k] = metric(k, "vaegan_lists_written_total");
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
    for (int k = 0; k < n_inst; k++)
        if (I[k].daemon > 0)
            cr_assert_gt(wait_metric(k, "vaegan_lists_written_total", lists[k] + 1), lists[k], "lists go on");
    double warmed = 0;
    for (double end = vg_mono_s() + GUARD_S; warmed == 0 && vg_mono_s() < end; vgt_sleep_ms(100))
        for (int k = 0; k < n_inst; k++)
            warmed += I[k].daemon > 0 ? metric(k, "vaegan_users_warmed_total") : 0;
    cr_assert_gt(warmed, 0, "the killed leader's partitions were warmed from their sets of recent users");
    cr_assert_gt(versions_never_go_back(), 0, "lists were written");
    vgt_expect_free(&x);
    vgt_stream_free(&s);
}
