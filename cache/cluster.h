/*
 * cluster.h — the Redis Cluster protocol of vaegan (issue 14, item 5): key
 * slots, the slot map, one asynchronous hiredis connection per master, and
 * commands routed by their key's slot with MOVED, ASK, TRYAGAIN and
 * CLUSTERDOWN handled.  hiredis 0.14 has no cluster support and Debian
 * packages no cluster client, hence this small layer; the store
 * (cache/store.h) is meant to route through it.
 *
 *   vg_cluster_t *c;
 *   const char *seeds[] = {"127.0.0.1:7000"};
 *   vg_cluster_init(&c, loop, &(vg_cluster_cfg_t){.seeds = seeds, .nseeds = 1}, err, sizeof err);
 *   const char *argv[] = {"RPUSH", "q:1", "x"};
 *   vg_cluster_command(c, argv[1], 3, 3, argv, NULL, on_reply, ud);
 *   ...
 *   vg_cluster_close(c);   // then run the loop to its end
 *
 * Units.  Each accepted call becomes a *unit*: one command, or one MULTI ...
 * EXEC transaction, formatted once as RESP and kept until it completes.  Its
 * key (given by the caller: the layer does not parse commands) picks the
 * slot, CRC16 mod 16384 of the key or of its hash tag.
 *
 * Order.  Each slot has a FIFO of units and at most one of them in flight:
 * the next unit of a slot is written only once the one before it has
 * completed.  So units of one slot (and hence of one key) complete in
 * submission order, and, while their connections live, are applied in that
 * order, whatever redirects and retries happen in between.  Units of
 * different slots are pipelined on their node's connection.  The price: a
 * single hot key gets one unit per round trip.
 *   A connection the layer drops itself (the watchdog below, a refused
 * write) may still have commands the server has not read or run yet.  So
 * its CLIENT ID and local address are kept, and the next connection to that
 * node sends CLIENT KILL ID <id> ADDR <addr> before any unit: a unit re-sent
 * to the same node therefore runs after everything the dropped connection
 * ran, and nothing of the dropped connection runs after it.  Order is not
 * promised across such a drop (a unit may run after a later one of its
 * slot) when: the node refuses CLIENT ID or CLIENT KILL (ACLs, a renamed
 * command; logged); or the map moves the slot to another node before the
 * old one is reconnected (the old node then answers what it still reads
 * with MOVED, unless it owns the slot again).  A connection the server
 * closed, or that failed, ran nothing more.
 *
 * Replies.  A unit's callback fires exactly once, on the loop thread, unless
 * the cluster is closed first:
 *   - status 0: the server's reply to the command, or EXEC's reply (which may
 *     itself be an error reply of the command: WRONGTYPE, CROSSSLOT,
 *     EXECABORT, ...; not retried);
 *   - VG_EREDIS: the layer gave up after cfg->max_redirects MOVED/ASK
 *     redirects, with a message naming the command, the key, its slot and
 *     the last reply;
 *   - VG_EAGAIN: vg_cluster_close_cancel() ended it before it completed.
 * MOVED: the slot's owner is set from the reply at once, the unit is re-sent
 * there, and the whole map is refreshed (at most once per
 * cfg->refresh_min_ms).  ASK: ASKING then the unit go to the named node,
 * and the map is left alone.  TRYAGAIN, CLUSTERDOWN, LOADING (and with
 * cfg->retry_server_state BUSY, OOM, MISCONF, MASTERDOWN, NOREPLICAS,
 * READONLY, which hold the unit's slot likewise): the unit is
 * re-sent after a delay (cfg->retry_min_ms doubled per retry of the unit,
 * capped at cfg->reconnect_max_ms), without limit and without counting as
 * a redirect: such a cluster may take writes soon, and a write must not be
 * dropped for it.  Every such wait but TRYAGAIN is logged (a rate-limited
 * warning naming the node, its reply and the key: a stalled store is never
 * silent), and CLUSTERDOWN, READONLY and MASTERDOWN (a failover) refresh
 * the map.  When the node that said so was an ASK target, the
 * re-send goes to it again, with ASKING (a multi-key unit whose keys a
 * migration splits).  A redirect's address may lack its host (":port",
 * cluster-preferred-endpoint-type unknown-endpoint): it is the host of the
 * node that answered.  A host of "?" (the node knows no endpoint): the map
 * is refreshed and the unit re-sent after a delay, as for TRYAGAIN.  A unit
 * waiting for an ASK target goes back to the slot's owner (which ASKs again
 * if the migration goes on: one more redirect) when that target is lost,
 * fails to connect, or is down when a map arrives; so an unreachable target
 * fails the unit after about max_redirects reconnect attempts, and never
 * holds its slot for good.
 *
 * Lost nodes.  A node whose connection fails, or which leaves commands
 * unanswered for cfg->timeout_ms (hiredis 0.14 has no command timeouts, so
 * the layer keeps its own timer), is dropped: its unanswered units go back to
 * the heads of their slots, the map is refreshed from any live node, and the
 * node is reconnected with backoff.  A unit whose slot the map still gives
 * to a lost node waits for it (a cluster without replicas has nobody else to
 * ask); the other slots go on.  A unit whose slot the map gives nobody
 * (cluster-require-full-coverage no, a map caught mid-change, a shard
 * without a usable master) waits too: the first such wait after a full map
 * is logged once, and the map is asked for again after refresh_min_ms,
 * then twice that, ... up to reconnect_max_ms, until a map has the slot.  Re-sent units may run twice on the server:
 * what is sent through this layer must be idempotent (the daemon's writes
 * are).  Memory is bounded only by the caller: vg_cluster_pending() says how
 * much waits.
 *
 * Connections.  Each master of the map gets one connection, AUTH'ed with
 * cfg->password when given, never SELECTed (a cluster has db 0 only).
 * Host names are resolved with a blocking getaddrinfo() at each connect, so
 * give addresses.  hiredis is bound to libuv by cache/hiredis_uv.h (why not
 * hiredis' adapter: see there).  The slot map comes from CLUSTER SHARDS
 * (Redis >= 7), or from CLUSTER SLOTS once a node answered SHARDS with
 * "unknown subcommand" (any other error, e.g. LOADING, asks again later).
 * A shard with no master, or whose master has no plain "port" (TLS only),
 * leaves its slots without owner; the rest of the map is used.
 *
 * Threads and reentrancy.  Loop thread only.  From a unit callback the caller
 * may submit (the unit goes to the end of its slot's FIFO) and may call
 * vg_cluster_close (no callback follows) or vg_cluster_close_cancel.  Nothing but log is called from
 * inside vg_cluster_init or a submitting call.  The log callback must not
 * call the cluster.  vg_cluster_init sets SIGPIPE to SIG_IGN if it is at its
 * default, as vg_store_init does.
 */
#ifndef VG_CACHE_CLUSTER_H
#define VG_CACHE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/errors.h"
#include "common/log.h"

#define VG_CLUSTER_SLOTS 16384

typedef struct vg_cluster vg_cluster_t;
struct redisReply;

typedef struct vg_cluster_cfg {
    const char *const *seeds; /* nseeds "host:port" of nodes to ask for the map (>= 1) */
    size_t nseeds;
    const char *password;  /* NULL/"" = no AUTH */
    int timeout_ms;        /* connect + AUTH, and any command unanswered that long: node lost; 0 = 5000 */
    int reconnect_min_ms;  /* first reconnect delay of a node, doubled per failure; 0 = 100 */
    int reconnect_max_ms;  /* cap of that delay and of the retry delay; 0 = 5000 */
    int retry_min_ms;      /* first TRYAGAIN/CLUSTERDOWN/LOADING delay of a unit; 0 = 20 */
    int retry_server_state; /* 1: BUSY, OOM, MISCONF, MASTERDOWN, NOREPLICAS and READONLY are waited out
                               the same way, the slot held meanwhile (the store: its writes keep their order) */
    int max_redirects;     /* MOVED + ASK per unit before it fails; 0 = 16 (any int: the count does not wrap) */
    int refresh_min_ms;    /* least time between two map refreshes; 0 = 100 */
    vg_log_fn log;         /* NULL = silent */
    void *ud;              /* passed to log */
} vg_cluster_cfg_t;

/* A unit's completion (above, "Replies"): status 0 and reply (owned by
 * hiredis, valid during the call), err NULL; or VG_EREDIS or VG_EAGAIN,
 * reply NULL and err the reason (valid during the call). */
typedef void (*vg_cluster_cb)(void *ud, int status, const struct redisReply *reply, const char *err);

/* One command of a transaction: its key and its arguments (argv[0] is the
 * command's name; argvlen NULL = NUL-terminated strings). */
typedef struct vg_cluster_cmd {
    const char *key;
    size_t keylen;
    int argc;
    const char *const *argv;
    const size_t *argvlen;
} vg_cluster_cmd_t;

/* CRC16-XMODEM (CCITT polynomial 0x1021, initial value 0, no reflection) of
 * buf[0..len); "123456789" gives 0x31C3. */
uint16_t vg_cluster_crc16(const char *buf, size_t len);

/* The cluster slot of a key: CRC16 of the hash tag — the bytes between the
 * first '{' and the first '}' after it, when there are any — else of the
 * whole key, mod 16384. */
unsigned vg_cluster_keyslot(const char *key, size_t len);

/* Creates a cluster client on loop from cfg (strings copied; cfg is free
 * after the call) and starts connecting to the seeds from the loop.
 * Returns 0 and *out, VG_EINVAL (bad cfg: message in err) or VG_ENOMEM;
 * err[0..errlen) gets "" on success.  The caller ends it with
 * vg_cluster_close(). */
int vg_cluster_init(vg_cluster_t **out, uv_loop_t *loop, const vg_cluster_cfg_t *cfg, char *err,
                    size_t errlen);

/* Submits argv[0..argc) (argvlen NULL = NUL-terminated strings) routed by
 * key[0..keylen), which should be the command's key.  Everything is copied.
 * cb may be NULL.  Returns 0, VG_EINVAL (argc < 1, NULL pointers, closing,
 * or a command that changes the connection's state — MULTI, EXEC, WATCH,
 * SELECT, SUBSCRIBE, MONITOR, AUTH, ...: the connection is shared; message
 * in vg_cluster_errstr) or VG_ENOMEM. */
int vg_cluster_command(vg_cluster_t *c, const char *key, size_t keylen, int argc, const char *const *argv,
                       const size_t *argvlen, vg_cluster_cb cb, void *ud);

/* As vg_cluster_command for a preformatted RESP buffer buf[0..len): one
 * command, or one MULTI ... EXEC block (then cb gets EXEC's reply); the
 * caller vouches that every key in it hashes to key's slot.  Copied.
 * Returns 0, VG_EINVAL (not such RESP, a lone or unclosed MULTI, or a
 * command that changes the connection's state, as for vg_cluster_command,
 * alone or inside the block: message in vg_cluster_errstr) or VG_ENOMEM. */
int vg_cluster_formatted(vg_cluster_t *c, const char *key, size_t keylen, const char *buf, size_t len,
                         vg_cluster_cb cb, void *ud);

/* MULTI, cmds[0..n), EXEC as one unit; cb gets EXEC's reply.  Every key must
 * hash to one slot (use a hash tag): else VG_EINVAL, nothing is sent, and
 * vg_cluster_errstr names two keys of different slots.  A command that
 * changes the connection's state (as for vg_cluster_command) is refused.
 * Returns 0, VG_EINVAL or VG_ENOMEM. */
int vg_cluster_multi(vg_cluster_t *c, const vg_cluster_cmd_t *cmds, size_t n, vg_cluster_cb cb, void *ud);

/* Units accepted and not yet completed. */
size_t vg_cluster_pending(const vg_cluster_t *c);

typedef struct vg_cluster_stats {
    uint64_t moved;       /* MOVED replies */
    uint64_t ask;         /* ASK replies (those with a "?" host included) */
    uint64_t retries;     /* TRYAGAIN / CLUSTERDOWN / LOADING (and server-state) replies, each a delayed re-send */
    uint64_t refreshes;   /* slot-map requests sent (CLUSTER SHARDS or SLOTS) */
    uint64_t resent;      /* units re-queued because their node was lost */
    uint64_t lost;        /* ready connections lost (closed, failed, or timed out) */
    uint64_t timeouts;    /* of which: commands unanswered for timeout_ms */
    uint64_t connect_failures; /* connection attempts that did not get ready */
    uint64_t done;        /* units completed with status 0 */
    uint64_t failed;      /* units failed (redirect limit; not those cancelled at close) */
    size_t pending;       /* = vg_cluster_pending() */
    size_t nodes;         /* nodes known (seeds and every address the map or a redirect named) */
    size_t slots_mapped;  /* slots the map gives a node */
} vg_cluster_stats_t;

/* Fills *st with the counters since vg_cluster_init(). */
void vg_cluster_stats(const vg_cluster_t *c, vg_cluster_stats_t *st);

typedef struct vg_cluster_node_stats {
    char addr[80];   /* "host:port" */
    int up;          /* connected, AUTH done */
    size_t inflight; /* commands written and unanswered now (map requests and AUTH included) */
    size_t slots;    /* slots the map gives it */
    size_t waiting;  /* units queued on its slots, in flight included */
} vg_cluster_node_stats_t;

/* 1 when the map gives every slot to a node and every such node is
 * connected; O(nodes), cheap enough to poll. */
int vg_cluster_healthy(const vg_cluster_t *c);

/* Node i (0 <= i < stats.nodes) into *out; O(pending units + slots), for
 * reports, not for polling.  Returns 0 or VG_ERANGE. */
int vg_cluster_node_stats(const vg_cluster_t *c, size_t i, vg_cluster_node_stats_t *out);

/* The last error text ("" if none): a refused submission, a lost node, a
 * failed map refresh.  Owned by c; valid until the next call into c or the
 * next loop iteration. */
const char *vg_cluster_errstr(const vg_cluster_t *c);

/* Disconnects and ends the client.  Pending units are dropped without their
 * callbacks; no callback follows.  Handles close asynchronously: the caller
 * runs the loop to its end, and the memory goes in the close callbacks.  May
 * be called from a unit callback.  c may be NULL.  Once (either this or
 * vg_cluster_close_cancel). */
void vg_cluster_close(vg_cluster_t *c);

/* As vg_cluster_close, but first each pending unit's callback fires once
 * with VG_EAGAIN ("not done": it may or may not have run on the server),
 * slot by slot and in each slot in submission order, so that callers free
 * what they attached to their units.  c is already closing during these
 * callbacks: submitting calls fail with VG_EINVAL, closing calls do
 * nothing.  When called from a unit callback, that unit (which is
 * completing) is not among them.  c may be NULL.  Once. */
void vg_cluster_close_cancel(vg_cluster_t *c);

#endif
