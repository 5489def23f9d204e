/*
 * rcluster.h — a private N-master Redis Cluster for integration tests
 * (library vgtestsupport).
 *
 *   vgt_rcluster_t rc = {0};
 *   cr_assert_eq(vgt_rcluster_start(&rc, vg_tmpdir, 3), 0);
 *   ... the code under test connects to 127.0.0.1:rc.port[0] ...
 *   vgt_rcluster_stop(&rc);
 *
 * Each node is a redis-server on 127.0.0.1 with two free ports (clients, and
 * the cluster bus), its files in <dir>/node<i>/ (nodes.conf, redis.log), no
 * AOF and no RDB; cluster-node-timeout 2000 ms and
 * cluster-require-full-coverage no, so the other nodes keep serving their
 * slots when one is down.  The nodes are joined by `redis-cli --cluster
 * create ... --cluster-replicas 0 --cluster-yes` (16384 slots spread over
 * the masters), and start returns once every node's CLUSTER INFO says
 * cluster_state:ok.  Every server gets SIGKILL if the starting thread dies
 * first (PR_SET_PDEATHSIG), as in redis.h.  Needs redis-server and
 * redis-cli on PATH; blocking calls, test code only.
 */
#ifndef VG_TESTS_SUPPORT_RCLUSTER_H
#define VG_TESTS_SUPPORT_RCLUSTER_H

#include <limits.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#define VGT_RCLUSTER_MAX 8

typedef struct vgt_rcluster {
    int n;
    int port[VGT_RCLUSTER_MAX];     /* client port of node i */
    int bus[VGT_RCLUSTER_MAX];      /* its cluster bus port */
    pid_t pid[VGT_RCLUSTER_MAX];    /* 0 when not running */
    char id[VGT_RCLUSTER_MAX][48];  /* its node id (CLUSTER MYID) */
    char dir[PATH_MAX];
    const char *password;           /* set before start: requirepass + masterauth on every node */
} vgt_rcluster_t;

/* Starts n (1..VGT_RCLUSTER_MAX) nodes below dir (which must exist), joins
 * them and waits (up to 30 s) until the cluster is ok on every node.
 * rc->password is kept; the rest of rc is reset.  A node that cannot start
 * (a picked port taken meanwhile) makes it stop them all and pick new ports,
 * up to 5 times.  Returns 0 or -1 (nothing left running; the reason on
 * stderr). */
int vgt_rcluster_start(vgt_rcluster_t *rc, const char *dir, int n);

/* SIGTERM to every running node, then SIGKILL after 10 s; reaps them.  Safe
 * on a stopped or never started cluster. */
void vgt_rcluster_stop(vgt_rcluster_t *rc);

/* A blocking client on node i (AUTH'ed when rc->password is set), or NULL.
 * The caller frees it with redisFree. */
redisContext *vgt_rcluster_connect(const vgt_rcluster_t *rc, int i);

/* The reply (freed by the caller with freeReplyObject) of the command
 * redisCommand formats from fmt, on a new connection to node i; NULL when
 * the node cannot be reached. */
redisReply *vgt_rcluster_cmd(const vgt_rcluster_t *rc, int i, const char *fmt, ...);

/* SIGKILL to node i, reaped. */
void vgt_rcluster_kill(vgt_rcluster_t *rc, int i);

/* Starts node i again on its ports and files (its nodes.conf: same id and
 * slots; no data) and waits until it answers PING.  0 or -1. */
int vgt_rcluster_restart(vgt_rcluster_t *rc, int i);

/* Waits (up to ms) until every running node says cluster_state:ok.  0 or -1. */
int vgt_rcluster_wait_ok(const vgt_rcluster_t *rc, long ms);

/* The node that owns slot, as node 0 (or the first running node) sees it, or -1. */
int vgt_rcluster_owner(const vgt_rcluster_t *rc, unsigned slot);

/* Moving slot from node `from` to node `to` by hand, in three steps, so a
 * test can write meanwhile: begin (CLUSTER SETSLOT IMPORTING on to,
 * MIGRATING on from), then keys (MIGRATE of up to max keys of the slot,
 * returns how many were moved, or -1), then end (SETSLOT NODE on every
 * node).  begin and end return 0 or -1. */
int vgt_rcluster_migrate_begin(const vgt_rcluster_t *rc, unsigned slot, int from, int to);
int vgt_rcluster_migrate_keys(const vgt_rcluster_t *rc, unsigned slot, int from, int to, int max);
int vgt_rcluster_migrate_end(const vgt_rcluster_t *rc, unsigned slot, int to);

/* `redis-cli --cluster reshard` of slots slots from node `from` to node
 * `to` (--cluster-yes; its output in <dir>/reshard.log), started in the
 * background so that a test can write meanwhile: start returns its pid (or
 * -1), wait its exit (up to timeout_s): 0 when it succeeded, else -1. */
pid_t vgt_rcluster_reshard_start(const vgt_rcluster_t *rc, int from, int to, int slots);
int vgt_rcluster_reshard_wait(const vgt_rcluster_t *rc, pid_t pid, int timeout_s);

#endif
