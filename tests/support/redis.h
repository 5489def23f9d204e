/*
 * redis.h — a private redis-server for integration tests and benchmarks
 * (library vgtestsupport).
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
 * SIGKILL if the starting thread dies first (PR_SET_PDEATHSIG).
 * Needs redis-server on PATH and hiredis; blocking calls, test code only.
 */
#ifndef VG_TESTS_SUPPORT_REDIS_H
#define VG_TESTS_SUPPORT_REDIS_H

#include <limits.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#define VGT_REDIS_EXTRA 8

typedef struct vgt_redis {
    pid_t pid; /* 0 when not running */
    char dir[PATH_MAX];
    char sock[PATH_MAX];
    int aof;
    int cluster; /* started with --cluster-enabled yes (a node of no cluster yet) */
    const char *extra[VGT_REDIS_EXTRA]; /* more redis-server arguments (NULL-ended), e.g. --rename-command */
} vgt_redis_t;

/* A synchronous hiredis client on r's socket for assertions (the caller
 * frees it with redisFree), or NULL. */
redisContext *vgt_redis_connect(const vgt_redis_t *r);

/* Starts redis-server on dir (which must exist) and waits until it answers
 * PING (not -LOADING), up to 10 s.  r is reset but for r->extra (zero it, or
 * set the extra arguments, before the first start).  Returns 0 or -1
 * (nothing left running). */
int vgt_redis_start(vgt_redis_t *r, const char *dir, int aof);

/* The same with cluster = 1: a Redis Cluster node (--cluster-enabled yes,
 * its nodes.conf in dir), which answers INFO cluster with cluster_enabled:1. */
int vgt_redis_start_cluster_node(vgt_redis_t *r, const char *dir, int aof, int cluster);

/* Stops the server: SHUTDOWN NOSAVE (the AOF is flushed), or SIGTERM if that
 * cannot be sent (e.g. requirepass is set), and waits for it.  Safe on a
 * stopped or never started server. */
void vgt_redis_stop(vgt_redis_t *r);

/* Starts the server again on the same dir and socket (AOF data survives).
 * 0 or -1, as vgt_redis_start. */
int vgt_redis_restart(vgt_redis_t *r);

#endif
