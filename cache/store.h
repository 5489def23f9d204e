/*
 * store.h — the Redis store of vaegan: history writes, recommendation lists,
 * model metadata and the start-up load of every history, over one
 * asynchronous hiredis connection driven by the caller's libuv loop.
 *
 * Keys (docs/architecture.md "Redis schema"; <p> = cfg->prefix, empty by default):
 *   <p>hist:<user>   ZSET item -> latest event ts, capped to history_max
 *   <p>rec:<user>    ZSET item -> model score, replaced atomically
 *   <p>recver:<user> STRING the history version rec:<user> was computed from
 *   <p>vaegan:users  ZSET user -> latest event ts
 *   <p>vaegan:part:<part> ZSET user -> latest event ts on Kafka partition <part>
 *                    (only for events that name one: vg_store_event_t.part)
 *   <p>vaegan:model  HASH field -> value
 *
 * Delivery.  Every call that writes (add_events, put_rec, set_model) or reads
 * (load) becomes a *job*: a list of Redis commands, formatted once and kept by
 * the store until Redis has answered every one of them.  Jobs form one FIFO;
 * at most cfg->max_inflight commands are written and unanswered at a time,
 * the rest wait in the queue.  When the connection drops, every job not yet
 * fully answered is re-sent from its first command, in the original order,
 * after reconnecting (exponential backoff, re-AUTH, re-SELECT).  All writes
 * are idempotent (ZADD GT, ZREMRANGEBYRANK, the list script, HSET), so a
 * re-sent job changes nothing that already happened.  Hence each job's
 * callback fires exactly once, in submission order, and no accepted write is
 * lost across a Redis restart (as far as Redis itself persisted it).  A job
 * callback with status 0 is Redis's acknowledgement of the whole job: the
 * point where the daemon may store the Kafka offsets of its events.
 * Memory is bounded only by the caller: vg_store_pending() and
 * vg_store_stats().pending_bytes tell how much waits, so the daemon can pause
 * its input (docs/architecture.md "Back-pressure").
 *
 * Errors Redis answers fall in three classes.
 *   - A *data error* belongs to one command on one key (WRONGTYPE because
 *     another app wrote hist:<user>, a value out of range, ...): logged
 *     (rate-limited), not retried; the job's other commands still ran, and
 *     its callback says which events (vg_store_events_cb) or that something
 *     (vg_store_cb: VG_EREDIS) was refused.
 *   - A *server-state error* (LOADING, BUSY, MISCONF, OOM, MASTERDOWN,
 *     TRYAGAIN, NOREPLICAS, CLUSTERDOWN; NOAUTH when a password is set) is
 *     treated like a lost connection: drop it, back off, re-send — such a
 *     server cannot take writes now but may soon, and a job must not be
 *     dropped for it.  READONLY too, until it has lasted
 *     cfg->readonly_timeout_ms without a good reply in between (a failover
 *     takes seconds; a replica that stays one is the next class).
 *   - A *refusal*: the server is not ours to write (MOVED, ASK, CROSSSLOT:
 *     a Redis Cluster; NOPERM, or NOAUTH with no password: its ACLs;
 *     READONLY that lasts).  The store stops writing for good: no job
 *     completes any more, the error (command, key, reply) is logged and
 *     cfg->on_fatal gets it once; the owner should stop without committing
 *     what is still pending.  Detected at connect where the server tells:
 *     INFO cluster (cluster_enabled:1), and ACL WHOAMI + ACL DRYRUN of each
 *     kind of command the store sends (a server without ACL DRYRUN, or a
 *     user who may not run it, skips that check: the first write tells).
 * The connection is declared up only after AUTH, SELECT, PING and these
 * checks (a Redis loading its AOF answers -LOADING and is retried).
 *
 * Threads and reentrancy.  Everything runs on the loop thread given to
 * vg_store_init(); no function may be called from another thread.  Callbacks
 * run on the loop thread from inside the store.  From a job callback, on_user,
 * on_done or on_up the caller MAY call vg_store_add_events/put_rec/set_model/
 * load (the new job goes to the end of the queue) and vg_store_close (no
 * further callback of any kind follows, including the remaining on_user calls
 * of a load).  The log callback must not call the store at all.  Nothing but
 * log is called back from inside vg_store_init or a submitting call: the
 * first job callback, on_user or on_up comes from the loop.
 *
 * Process-wide effect: hiredis 0.14 writes with write(2), so a write to a
 * connection Redis closed raises SIGPIPE; vg_store_init() sets SIGPIPE to
 * SIG_IGN if it is at its default (SIG_DFL), and leaves any other disposition
 * alone (a program that installs its own handler keeps it).
 *
 * Redis Cluster (cfg->cluster).  Every command then goes through the
 * cluster layer of cache/cluster.h (cfg host:port is the seed; the slot map,
 * MOVED, ASK, TRYAGAIN and lost nodes are its business), one unit per
 * command, or per MULTI ... EXEC block.  The per-user keys carry the user
 * as hash tag, so that a user's keys share a slot (the ordered script and
 * the erasure touch several): <p>hist:{<user>}, <p>rm:{<user>},
 * <p>rec:{<user>}; and vaegan:users, which every history job writes, is
 * sharded into <p>vaegan:users:{<k>}, k = vg_store_user_shard_(user), 0 <=
 * k < VG_STORE_USER_SHARDS, so that it is not one node's hot spot.
 * vaegan:model and vaegan:forgotten stay single keys (rare writes).  What
 * changes against one server:
 *   - jobs still complete (callback) in submission order, but the commands
 *     of different slots run in any order; those of one key run in
 *     submission order (the layer's per-slot FIFO);
 *   - a server-state error (OOM, BUSY, MISCONF, READONLY, MASTERDOWN,
 *     NOREPLICAS, as TRYAGAIN and LOADING) is waited out by the layer,
 *     which sends the unit again after the back-off and holds its slot
 *     meanwhile, so a user's writes keep their order; READONLY is waited out
 *     without the readonly_timeout limit (the layer only talks to masters);
 *   - CROSSSLOT is a data error of that command (a user id starting with
 *     '}' has no hash tag), not a refusal; a unit the layer gives up on
 *     (too many redirects) is one too, with its reason;
 *   - the load reads the shards of vaegan:users one after the other: users
 *     come in ascending order of latest ts within each shard, and within
 *     one chunk of 1,000 in the order their histories arrive;
 *   - "up" means the map gives every slot to a connected node; of the
 *     connect-time checks only those of the list writes are made, once, on
 *     one node (INFO server, COMMAND INFO RESTORE, ACL DRYRUN of RESTORE):
 *     the first write tells of any other refusal.
 *
 * Limits of hiredis 0.14: it has no async command timeouts.  The store bounds
 * connect + handshake itself (cfg->connect_timeout_ms), but a server that
 * stops answering on a ready connection stalls the queue until TCP gives up
 * (vg_store_stats().inflight stays > 0 with no progress in replies); a TCP
 * host name is resolved with a blocking getaddrinfo() on each (re)connect, so
 * prefer an address or a unix socket.  The store binds hiredis to libuv
 * itself, not with <hiredis/adapters/libuv.h>, whose 0.14.1 version ignores
 * libuv's error status and so hangs forever on a refused or reset
 * connection.
 */
#ifndef VG_STORE_H
#define VG_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/errors.h"
#include "common/log.h"

typedef struct vg_store vg_store_t;

/* Cluster mode: the shards of <p>vaegan:users. */
#define VG_STORE_USER_SHARDS 16

typedef struct vg_store_cfg {
    const char *host;     /* NULL/"" = "127.0.0.1" */
    int port;             /* 0 = 6379 */
    const char *socket;   /* unix socket path; non-empty wins over host/port */
    const char *password; /* NULL/"" = no AUTH */
    int db;               /* SELECTed after connecting unless 0; 0..INT_MAX */
    const char *prefix;   /* key prefix; NULL/"" = none */
    int history_max;      /* cap of hist:<user> and rm:<user> (most recent by ts); <= 0 = no cap */
    int removals;         /* 1: events may be removals; every history write then goes
                             through the ordered script and the load reads rm:<user> too */
    int rec_ttl_s;        /* TTL of rec:<user> in seconds; 0 = none; < 0 invalid */
    int max_inflight;     /* commands written and unanswered before further ones
                             wait in the store's queue; 0 = 4096 */
    int reconnect_min_ms; /* first reconnect delay, doubled per failure; 0 = 100 */
    int reconnect_max_ms; /* cap of the delay; 0 = 5000 */
    int connect_timeout_ms; /* deadline of connect + AUTH/SELECT/PING; 0 = 10000 */
    /* 1: connected and ready (AUTH/SELECT/PING done); 0: the ready connection
     * was lost.  Calls alternate, starting with 1.  May be NULL. */
    void (*on_up)(void *ud, int up);
    /* The server refused us (a refusal, above): msg names the command, the
     * key and the reply.  Called once; nothing completes afterwards.  May be
     * NULL (then the store just stops). */
    void (*on_fatal)(void *ud, const char *msg);
    int readonly_timeout_ms; /* how long READONLY may last; 0 = 30000 */
    int rec_zadd;         /* 1: the list script always writes by DEL/ZADD/PEXPIRE; 0: by one RESTORE
                             of a ready-made listpack when the server (Redis >= 7.0) lets us */
    int cluster;          /* 1: host:port is a node of a Redis Cluster ("Redis Cluster" above);
                             socket and db must then be unset, and prefix free of '{' */
    vg_log_fn log; /* NULL = silent */
    void *ud;      /* passed to on_up, on_fatal and log */
} vg_store_cfg_t;

/* A job's completion: status 0 = every command succeeded; VG_EREDIS = Redis
 * answered a data error to at least one of them (logged; the others ran).
 * Called exactly once per accepted job, in submission order, unless the
 * store is closed or refused first. */
typedef void (*vg_store_cb)(void *ud, int status);

/* A history job's completion, per event: status 0 = every event stored
 * (ev_err NULL); VG_EREDIS = a data error refused some: ev_err[i] (i < n,
 * the job's events in the caller's order) is NULL when event i was stored,
 * else the error reply of a command that wrote it (the user's history, or
 * vaegan:users, which every event of the job needs); valid during the call
 * only.  An error on a vaegan:part: set refuses no event (the set is an
 * index for vg_store_read_part).  Called exactly once per accepted job, in
 * submission order, unless the store is closed or refused first. */
typedef void (*vg_store_events_cb)(void *ud, int status, const char *const *ev_err, size_t n);

typedef struct vg_store_event {
    const char *user; /* user_len bytes, need not be NUL-terminated */
    size_t user_len;
    const char *item; /* item_len bytes */
    size_t item_len;
    double ts; /* finite */
    int removal; /* 1: takes the item out of the history (needs cfg->removals) */
    int no_trim; /* 1: the caller knows hist:<user> stays within history_max: no ZREMRANGEBYRANK for it (a
                    user's history is trimmed unless every one of its events of the job says so; the ordered
                    script of cfg->removals always applies the cap) */
    const char *part; /* NULL, or part_len bytes naming the set of recent users its user joins (vaegan:part:) */
    size_t part_len;
} vg_store_event_t;

/* Creates a store on loop from cfg (strings are copied; cfg is free after the
 * call).  Returns at once: the connection is made in the background from the
 * loop and kept (reconnecting with backoff) until vg_store_close().
 * Returns 0 and *out, or VG_EINVAL (bad cfg: message in err) or VG_ENOMEM;
 * err[0..errlen) (may be NULL if errlen is 0) gets "" on success.
 * The store belongs to the caller, who ends it with vg_store_close(). */
int vg_store_init(vg_store_t **out, uv_loop_t *loop, const vg_store_cfg_t *cfg, char *err,
                  size_t errlen);

/* History writes for a batch of n events, one job:
 *   for each user in the batch (in no particular order)
 *     ZADD <p>hist:<user> GT ts item [ts item ...]   (all of its events)
 *     ZREMRANGEBYRANK <p>hist:<user> 0 -(history_max+1)   (if history_max > 0,
 *                                                          unless all say no_trim)
 *   ZADD <p>vaegan:users GT ts user [ts user ...]  (each user once, its latest ts)
 *   ZADD <p>vaegan:part:<part> GT ts user [ts user ...]  (per set named by
 *                                 events: the users of a Kafka partition)
 * all pipelined.  GT keeps the latest ts of an item whatever the order of
 * events.  With cfg->removals the per-user commands are one EVAL of the
 * ordered script instead, which applies the user's events in batch order:
 *   interaction (item, ts): added (ZADD GT, then the cap) unless
 *     rm:<user> holds the item with a ts >= ts;
 *   removal (item, ts): ZADD GT rm:<user> ts item (capped like the
 *     history), and the item leaves hist:<user> if its ts there is <= ts;
 * so between an interaction and a removal of one item the later ts wins
 * (the removal on a tie), whatever the arrival order.  n = 0 is a barrier: one PING, so cb fires once every job accepted
 * before it is done (n = 0, ev_err NULL).  cb (may be NULL) fires once, when every reply of the
 * job has arrived.  The store copies what it needs: ev and the strings it
 * points to are the caller's again after the call.
 * Returns 0 (accepted), VG_EINVAL (s NULL, ev NULL with n > 0, a NULL id, a
 * non-finite ts; nothing accepted) or VG_ENOMEM. */
int vg_store_add_events(vg_store_t *s, const vg_store_event_t *ev, size_t n, vg_store_events_cb cb,
                        void *ud);

/* Replaces <p>rec:<user> atomically with the n pairs (items[i], scores[i];
 * items distinct), unless Redis holds a list of a newer history: version is
 * the history version the list was computed from (the daemon's: the latest
 * ts among the user's events and removals), and one EVAL of the list
 * script (write.c) compares it with <p>recver:<user> in Redis itself —
 * older: nothing is written and cb gets VG_ESTALE; equal or newer (or none
 * stored): the list is replaced, by RESTORE <key> <ttl> <listpack> REPLACE
 * (cache/dump.h) when the connected server allows it (rec_zadd), else DEL,
 * ZADD score item ..., PEXPIRE (if rec_ttl_s > 0), and recver:<user> takes
 * the version (with the same TTL).  So a list never goes back in time,
 * whichever writer sends it (another instance, an old owner of a
 * partition).  n = 0 deletes the list.  A reader never sees a partial
 * list.  Arrays and strings are copied; they are the caller's again after
 * the call.  cb may be NULL.  Returns 0, VG_EINVAL (NULL user, NULL arrays
 * with n > 0, a NULL item, a non-finite score or version) or VG_ENOMEM. */
int vg_store_put_rec(vg_store_t *s, const char *user, size_t user_len, const char *const *items,
                     const size_t *item_lens, const double *scores, size_t n, double version, vg_store_cb cb,
                     void *ud);

/* HSET <p>vaegan:model fields[0] values[0] ... (NUL-terminated strings,
 * copied).  With epoch > 0 (a leader's, cache/shared.h) the write is
 * fenced: one script writes the fields and leader_epoch = epoch unless the
 * hash holds a higher leader_epoch (then nothing is written and cb gets
 * VG_EFENCED), so a leader that lost its place cannot overwrite the new
 * one's.  cb may be NULL.  Returns 0, VG_EINVAL (n = 0, a NULL string, an
 * epoch >= 2^53) or VG_ENOMEM. */
int vg_store_set_model(vg_store_t *s, uint64_t epoch, const char *const *fields, const char *const *values,
                       size_t n, vg_store_cb cb, void *ud);

/* With ld->on_mark, first reads the erasure marks of <p>vaegan:forgotten
 * newer than ld->marks_since (one ZRANGEBYSCORE) and hands each to on_mark.
 * With ld->on_count, then counts the users (one ZCARD) for on_count.  Then
 * reads every member of <p>vaegan:users (ascending by latest ts) and its
 * <p>hist:<user> with scores, 1,000 users per round (ZRANGE of the users,
 * then their ZRANGE ... 0 -1 WITHSCORES pipelined), so memory stays bounded.
 * on_user(ud, user, ..., removals = 0, ..., n) is called once per user (n = 0
 * if the history is empty or missing; items in ascending ts order), and with
 * cfg->removals once more right after it with removals = 1 and the user's
 * rm:<user>; every pointer is valid
 * during that call only.  Then on_done(ud, status) once: 0, or VG_EREDIS if
 * vaegan:users could not be read (stops the load) or some hist:<user> could
 * not be read (that user is skipped, logged; the others are delivered), or
 * VG_ENOMEM.  on_done may be NULL.
 *
 * The load is one job of the FIFO: jobs submitted after it wait until it is
 * done, jobs before it are written first.  Meant to run at start before any
 * writes.  It survives a reconnect: the current round resumes where its
 * replies stopped (ranks, not cursors), so no user is delivered twice as long
 * as nobody else changes vaegan:users meanwhile.
 * Returns 0, VG_EINVAL (s NULL, or neither on_user nor on_mark) or VG_ENOMEM. */
typedef void (*vg_store_user_cb)(void *ud, const char *user, size_t user_len, int removals,
                                 const char *const *items, const size_t *item_lens, const double *ts,
                                 size_t n);
/* One erasure mark of <p>vaegan:forgotten (vg_store_forget) and its ts. */
typedef void (*vg_store_mark_cb)(void *ud, const char *mark, size_t len, double ts);

/* The number of users the load is about to read (ZCARD of <p>vaegan:users),
 * for progress. */
typedef void (*vg_store_count_cb)(void *ud, uint64_t users);

typedef struct vg_store_loader {
    vg_store_user_cb on_user;  /* NULL = only the marks are read (then on_mark is required) */
    vg_store_mark_cb on_mark;  /* NULL = vaegan:forgotten is not read; else it is read first */
    double marks_since;        /* only marks with a ts above this (-INFINITY = all) */
    vg_store_count_cb on_count; /* NULL = not counted; else called once, after the marks and before
                                   the first on_user (not at all if the ZCARD fails: the load goes on) */
    vg_store_cb on_done;       /* may be NULL */
    void *ud;
} vg_store_loader_t;
int vg_store_load(vg_store_t *s, const vg_store_loader_t *ld);

/* One user's history read back from Redis (a user the daemon had evicted
 * from memory): ZRANGE <p>hist:<user> 0 -1 WITHSCORES and, with
 * cfg->removals, the same of <p>rm:<user>.  One job of the FIFO, so it sees
 * every write accepted before it.  rows(ud, removals, items, lens, ts, n)
 * once per key (removals 0, then 1; pointers valid during the call), then
 * done(ud, status): 0, VG_EREDIS (an error reply or an unexpected one;
 * rows was not called for that key) or VG_ENOMEM.  Returns 0, VG_EINVAL or
 * VG_ENOMEM. */
typedef void (*vg_store_rows_cb)(void *ud, int removals, const char *const *items, const size_t *lens,
                                 const double *ts, size_t n);
int vg_store_read_user(vg_store_t *s, const char *user, size_t user_len, vg_store_rows_cb rows, vg_store_cb done,
                       void *ud);

/* The users of a set of recent users (vg_store_event_t.part): ZRANGE
 * <p>vaegan:part:<part> -max -1 WITHSCORES (0 -1 when max = 0: every one),
 * the most recent max, in ascending order of their latest ts.  rows(ud, 0,
 * users, lens, ts, n) once (n = 0: none; pointers valid during the call),
 * then done(ud, status) as vg_store_read_user.  Returns 0, VG_EINVAL or
 * VG_ENOMEM. */
int vg_store_read_part(vg_store_t *s, const char *part, size_t part_len, size_t max, vg_store_rows_cb rows,
                       vg_store_cb done, void *ud);

/* Where the read of one shard of <p>vaegan:users goes on. */
enum {
    VG_SINCE_FROM,  /* the users whose latest ts is ts or above, a page */
    VG_SINCE_AFTER, /* above ts, a page */
    VG_SINCE_AT     /* every user at ts, in one read (a page ended among them) */
};
typedef struct vg_store_since {
    double ts; /* -inf: from the start */
    int mode;  /* VG_SINCE_* */
} vg_store_since_t;

/* The users of <p>vaegan:users from a point on, ascending by latest ts, at
 * most max of each shard (a page): ZRANGEBYSCORE <key> [(]ts +inf
 * WITHSCORES LIMIT 0 max, or ZRANGEBYSCORE <key> ts ts WITHSCORES for
 * VG_SINCE_AT, with from[k] for shard k (VG_STORE_USER_SHARDS of them in
 * cluster mode, from[0] only on one node).  rows(ud, k, users, lens, ts, n)
 * once per shard k, then done(ud, status) as vg_store_read_user.  Returns 0,
 * VG_EINVAL or VG_ENOMEM. */
int vg_store_read_users_since(vg_store_t *s, const vg_store_since_t *from, size_t max, vg_store_rows_cb rows,
                              vg_store_cb done, void *ud);
/* Moves a shard's cursor past the n rows (ascending ts) that a read of at
 * most max gave; returns how many of them, the first ones, the reader
 * takes.  After a full page the users at its last ts are left out, to be
 * read whole in one command next (so none moving meanwhile can shift
 * another out of the read), then it goes on above that ts; after a short
 * page it stays at the last ts, inclusive (a user may still join it: the
 * next read gives those users again).  *more: 1 when the shard has more to
 * read at once. */
size_t vg_store_since_past(vg_store_since_t *f, const double *ts, size_t n, size_t max, int *more);

/* ZREM <p>vaegan:part:<part> <user>: an erased user leaves the set of the
 * partition its erasure came on (cb may be NULL).  Returns 0, VG_EINVAL or
 * VG_ENOMEM. */
int vg_store_part_rem(vg_store_t *s, const char *part, size_t part_len, const char *user, size_t user_len,
                      vg_store_cb cb, void *ud);
/* ZREMRANGEBYRANK <p>vaegan:part:<part> 0 -(keep+1): the set keeps its keep
 * most recent users, all a warm-up reads (cb may be NULL).  Returns 0,
 * VG_EINVAL or VG_ENOMEM. */
int vg_store_part_trim(vg_store_t *s, const char *part, size_t part_len, size_t keep, vg_store_cb cb, void *ud);

/* Erases a user, one job (FIFO like every job, so after the user's earlier
 * writes):
 *   DEL <p>hist:<user> <p>rm:<user> <p>rec:<user>
 *   ZREM <p>vaegan:users <user>
 *   ZADD <p>vaegan:forgotten GT ts <mark>        (mark: a keyed hash of the id)
 *   ZREMRANGEBYSCORE <p>vaegan:forgotten -inf keep_after   (older marks expire)
 * Idempotent.  Returns 0, VG_EINVAL or VG_ENOMEM. */
int vg_store_forget(vg_store_t *s, const char *user, size_t user_len, const char *mark, size_t mark_len,
                    double ts, double keep_after, vg_store_cb cb, void *ud);

/* 1 if the connection is up and ready (handshake done), else 0. */
int vg_store_is_up(const vg_store_t *s);

/* Jobs accepted and not yet completed (queued + in flight). */
size_t vg_store_pending(const vg_store_t *s);

typedef struct vg_store_stats {
    uint64_t commands;         /* commands written to Redis (re-sends and handshake included) */
    uint64_t replies;          /* replies received to job commands */
    uint64_t errors;           /* error replies (permanent and transient, handshake included) */
    uint64_t reconnects;       /* times the store became ready again after having been up */
    uint64_t connect_failures; /* connection attempts that failed (incl. handshake errors) */
    uint64_t resent_jobs;      /* jobs re-queued because their connection was lost */
    uint64_t jobs_done;        /* jobs completed (callback fired) */
    size_t pending;            /* = vg_store_pending() */
    size_t pending_bytes;      /* command bytes held by pending jobs */
    size_t inflight;           /* commands written and unanswered now */
    int up;                    /* = vg_store_is_up() */
    int refused;               /* 1 once the server refused us (on_fatal) */
    uint64_t redirects;        /* cluster mode: MOVED and ASK replies (cluster.h) */
    uint64_t nodes_lost;       /* cluster mode: node connections lost (closed, failed or timed out) */
    uint64_t retries;          /* cluster mode: server-state replies waited out (TRYAGAIN, OOM, ...) */
} vg_store_stats_t;

/* Fills *st with the counters since vg_store_init(). */
void vg_store_stats(const vg_store_t *s, vg_store_stats_t *st);

/* The last connection error text ("" if none yet), e.g. "Connection refused"
 * or "AUTH: WRONGPASS invalid username-password pair ...".  Owned by the
 * store; valid until the next loop iteration. */
const char *vg_store_errstr(const vg_store_t *s);

/* Disconnects and ends the store.  Pending jobs are dropped without their
 * callbacks; no callback of any kind fires after this call.  Handles close
 * asynchronously: the caller runs the loop until it ends (uv_run) and the
 * memory is freed in the close callbacks.  May be called from inside a
 * store callback.  s may be NULL.  Call it once. */
void vg_store_close(vg_store_t *s);

/* As vg_store_close, but first each pending job's callback fires once,
 * oldest first, with status VG_EAGAIN ("not done": nothing of it may be
 * taken as stored), so that callers free what they attached to the jobs.
 * The store is already closing during these callbacks: submitting calls
 * fail with VG_EINVAL.  Not from inside a store callback. */
void vg_store_close_cancel(vg_store_t *s);

#endif
