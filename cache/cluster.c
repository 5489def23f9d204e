/*
 * cluster.c — the Redis Cluster layer (see cluster.h): slots, the slot map,
 * one hiredis connection per node, per-slot FIFOs of units, redirects,
 * retries and lost nodes.
 *
 * Invariants:
 *   - every pending unit is in exactly one slot FIFO (c->shead/stail), the
 *     one of its key's slot; only the head of a FIFO is ever written, so at
 *     most one unit per slot is in flight (u->node != NULL) or waiting out a
 *     retry delay (u->delayed, on c->delayed);
 *   - a unit in flight is in its node's FIFO (n->head/tail, through fnext);
 *     all its commands were written together, so its replies arrive together
 *     and in node-FIFO order: the unit a reply belongs to is always n->head.
 *     n->verdict/n->why keep the first redirect or retry among the head's
 *     replies until its last reply settles it;
 *   - n->ac is the node's live context or NULL; a node is dropped by setting
 *     n->ac = NULL before anything else (cl_lost), so callbacks hiredis makes
 *     for a dead context (reply NULL, or ac != n->ac) are ignored without
 *     touching their unit;
 *   - nodes are never freed before vg_cluster_close: a node the map no longer
 *     names just stays (hiredis may call back into it at any time);
 *   - c->owner[slot] is an index into c->nodes or CL_NONE; nslots of each
 *     node counts its entries; a unit of a slot without owner keeps a map
 *     refresh scheduled (cl_hole);
 *   - u->ask, when set on a unit not in flight, names a node that is not
 *     down, or is cleared at the next cl_lost/map (cl_unask);
 *   - a connection the layer dropped while ready is CLIENT KILLed in the
 *     next handshake of its node, before any unit is written there;
 *   - memory goes only in the close callback of the last handle (node
 *     timers and the two cluster timers), after every context was freed.
 * Writes to a node happen only from cl_kick (units), cl_send_map and the
 * handshake; nothing here recurses from a lost node into writing, so a
 * write failing (cl_abort) never re-enters a loop over the slots.  What is
 * pure wire format (map replies, RESP framing and formatting) is in
 * cluster_wire.c, the key slot in crc16.c.
 *
 * Why one file: the slot FIFOs, the nodes' connections and FIFOs, the map
 * and the retry timers are one state machine over one set of private
 * fields (the invariants above tie them together: a lost node re-queues
 * its units into their slots, a map moves slots between nodes, a redirect
 * does both); splitting it would expose those fields to a second file.
 */
#include "cache/cluster.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache/cluster_wire.h"
#include "cache/hiredis_uv.h"
#include "common/addr.h"
#include "common/ratelimit.h"

#define CL_NONE 0xFFFFu
#define CL_MAX_NODES 4096
enum { CL_DOWN = 0, CL_CONNECTING = 1, CL_READY = 2 };
/* What a reply means to the routing (the verdict of a unit's replies). */
enum { CL_OK = VG_CL_OK_, CL_MOVED = VG_CL_MOVED_, CL_ASK = VG_CL_ASK_, CL_RETRY = VG_CL_RETRY_ };

typedef struct cl_node cl_node_t;

typedef struct cl_unit {
    struct cl_unit *next;  /* slot FIFO */
    struct cl_unit *fnext; /* node FIFO while in flight, c->delayed while delayed */
    cl_node_t *node;       /* in flight there, else NULL */
    cl_node_t *ask;        /* ASK target of the next write (kept across TRYAGAIN there), else NULL */
    uint64_t due;          /* loop ms the retry delay ends */
    vg_cluster_cb cb;
    void *ud;
    uint32_t ncmds, nreplies, nexpect;
    uint16_t slot, retries;
    uint32_t redirects; /* max_redirects is an int: no wrap */
    uint8_t delayed;
    size_t keylen;
    const char *key; /* keylen bytes, after buf */
    uint32_t *off;   /* ncmds + 1 offsets into buf */
    char *buf;
} cl_unit_t;

struct cl_node {
    vg_cluster_t *c;
    char host[64];
    int port;
    uint16_t idx; /* in c->nodes */
    char addr[80];
    redisAsyncContext *ac;
    int state;
    uv_timer_t timer; /* reconnect delay (down), connect deadline, reply watchdog (ready) */
    cl_unit_t *head, *tail;
    size_t inflight;   /* commands written and unanswered on ac */
    uint64_t progress; /* loop ms of the last reply, or of the write that found inflight 0 */
    unsigned attempts; /* failed connects since it was last ready */
    int hs_left, ever_up;
    long long client_id; /* CLIENT ID of ac once ready, else 0 */
    long long kill_id;   /* a connection we dropped that the server may still read: CLIENT KILL'ed first */
    char kill_addr[64];  /* and its local address (ADDR filter: never another client after a restart) */
    size_t nslots;
    int verdict; /* of the head unit's replies so far */
    char why[160];
};

struct vg_cluster {
    uv_loop_t *loop;
    uv_timer_t refresh_timer, retry_timer;
    int closing, handles;
    char *pass;
    int timeout, rmin, rmax, retry_min, max_redirects, refresh_min;
    int server_state; /* cfg->retry_server_state */
    vg_log_fn log;
    void *ud;
    cl_node_t **nodes;
    size_t nnodes;
    uint16_t owner[VG_CLUSTER_SLOTS];
    uint16_t scratch[VG_CLUSTER_SLOTS]; /* the map being parsed */
    cl_unit_t *shead[VG_CLUSTER_SLOTS], *stail[VG_CLUSTER_SLOTS];
    cl_unit_t *delayed;
    size_t pending;
    cl_node_t *refreshing; /* the node a map request is in flight on */
    cl_node_t *prefer;     /* the node to ask next (a MOVED target) */
    int refresh_again, refresh_wanted, no_shards, have_map;
    uint64_t last_refresh;
    uint64_t retry_due; /* loop ms the retry timer is armed for */
    unsigned hole_tries; /* refreshes asked for units on slots without owner, since the last full map */
    int hole_logged;     /* said so since the last full map */
    size_t rr;
    vg_cluster_stats_t st;
    vg_ratelimit_t rl;
    char errstr[512];
};

/* ---- small helpers -------------------------------------------------------------------------- */

static void cl_log(vg_cluster_t *c, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_logv(c->log, c->ud, level, fmt, ap);
    va_end(ap);
}

/* A warning about the outside world, rate-limited, also kept in errstr. */
static void cl_warn(vg_cluster_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
    uint64_t supp = 0;
    if (vg_ratelimit_ok(&c->rl, &supp))
        cl_log(c, VG_LOG_WARN, "redis cluster: %s%s", c->errstr,
               supp ? " (similar messages were suppressed)" : "");
}

static uint64_t cl_now(const vg_cluster_t *c) { return uv_now(c->loop); }

/* base ms doubled for each of tries - 1, capped at max. */
static uint64_t cl_backoff(int base, int max, unsigned tries)
{
    uint64_t d = (uint64_t)base;
    for (unsigned i = 1; i < tries && d < (uint64_t)max; i++)
        d *= 2;
    return d < (uint64_t)max ? d : (uint64_t)max;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static void cl_abort(cl_node_t *n, const char *why);
static void cl_on_reply(redisAsyncContext *ac, void *r, void *priv);
static void cl_on_node_timer(uv_timer_t *t);

/* n is about to get k more commands: start the reply watchdog if idle. */
static void cl_written(cl_node_t *n, size_t k)
{
    if (n->inflight == 0) {
        n->progress = cl_now(n->c);
        if (!uv_is_active((uv_handle_t *)&n->timer))
            uv_timer_start(&n->timer, cl_on_node_timer, (uint64_t)n->c->timeout, 0);
    }
    n->inflight += k;
}

/* A reply to one of n's commands arrived. */
static void cl_answered(cl_node_t *n)
{
    n->inflight--;
    n->progress = cl_now(n->c);
}

static cl_node_t *cl_target(const vg_cluster_t *c, const cl_unit_t *u)
{
    if (u->ask)
        return u->ask;
    return c->owner[u->slot] == CL_NONE ? NULL : c->nodes[c->owner[u->slot]];
}

static void cl_on_refresh_timer(uv_timer_t *t);

/* A unit waits on slot, which the map gives nobody: say so once per map
 * that is not full, and ask for the map again after refresh_min ms, then
 * twice that, ... up to reconnect_max ms (reset by a full map). */
static void cl_hole(vg_cluster_t *c, unsigned slot)
{
    if (!c->have_map)
        return; /* the first map is on its way, or asked of the first node up */
    if (!c->hole_logged) {
        c->hole_logged = 1;
        snprintf(c->errstr, sizeof c->errstr, "slot %u has no owner in the slot map: its commands wait", slot);
        cl_log(c, VG_LOG_WARN, "redis cluster: %s; asking for the map again", c->errstr);
    }
    if (!c->refreshing && !uv_is_active((uv_handle_t *)&c->refresh_timer))
        uv_timer_start(&c->refresh_timer, cl_on_refresh_timer, cl_backoff(c->refresh_min, c->rmax, ++c->hole_tries), 0);
}

/* Writes the head of slot's FIFO if it waits and its node is ready. */
static void cl_kick(vg_cluster_t *c, unsigned slot)
{
    cl_unit_t *u = c->shead[slot];
    if (!u || u->node || u->delayed)
        return;
    cl_node_t *n = cl_target(c, u);
    if (!n)
        cl_hole(c, slot);
    if (!n || n->state != CL_READY)
        return;
    u->node = n;
    u->fnext = NULL;
    if (n->tail)
        n->tail->fnext = u;
    else
        n->head = u;
    n->tail = u;
    u->nreplies = 0;
    u->nexpect = u->ncmds + (u->ask ? 1 : 0);
    cl_written(n, u->nexpect);
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    int ok = !u->ask || redisAsyncFormattedCommand(n->ac, cl_on_reply, u, asking, sizeof asking - 1) == REDIS_OK;
    for (uint32_t i = 0; ok && i < u->ncmds; i++)
        ok = redisAsyncFormattedCommand(n->ac, cl_on_reply, u, u->buf + u->off[i], u->off[i + 1] - u->off[i]) ==
             REDIS_OK;
    if (!ok)
        cl_abort(n, "hiredis refused a write");
}

static void cl_kick_all(vg_cluster_t *c)
{
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS && !c->closing; s++)
        if (c->shead[s])
            cl_kick(c, s);
}

/* ---- nodes ---------------------------------------------------------------------------------- */

static void cl_refresh(vg_cluster_t *c, cl_node_t *prefer);
static void cl_connect(cl_node_t *n);

/* The node at host:port, created (and connected from the loop) if new; NULL
 * when out of memory or there are too many. */
static cl_node_t *cl_node(vg_cluster_t *c, const char *host, size_t hostlen, int port)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->port == port && strlen(c->nodes[i]->host) == hostlen &&
            memcmp(c->nodes[i]->host, host, hostlen) == 0)
            return c->nodes[i];
    if (c->nnodes >= CL_MAX_NODES || hostlen >= sizeof c->nodes[0]->host || port <= 0 || port > 65535)
        return NULL;
    cl_node_t **grown = realloc(c->nodes, (c->nnodes + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->nodes = grown;
    cl_node_t *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->c = c;
    n->idx = (uint16_t)c->nnodes;
    memcpy(n->host, host, hostlen);
    n->port = port;
    snprintf(n->addr, sizeof n->addr, "%s:%d", n->host, port);
    uv_timer_init(c->loop, &n->timer);
    n->timer.data = n;
    c->handles++;
    c->nodes[c->nnodes++] = n;
    uv_timer_start(&n->timer, cl_on_node_timer, 0, 0); /* connect from the loop */
    return n;
}

/* Slot heads waiting for an ASK target — n, or (n NULL) any node down — go
 * back to the owner, which ASKs again if the slot still migrates (one more
 * redirect): an unreachable ASK target never holds a slot.  Writes nothing. */
static void cl_unask(vg_cluster_t *c, const cl_node_t *n)
{
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++) {
        cl_unit_t *u = c->shead[s];
        if (u && !u->node && u->ask && (n ? u->ask == n : u->ask->state == CL_DOWN))
            u->ask = NULL;
    }
}

/* n's connection is gone or being dropped (the caller frees it if hiredis
 * will not): forget it, put its units back at the heads of their slots,
 * schedule a reconnect, refresh the map from another node. */
static void cl_lost(cl_node_t *n, const char *why)
{
    vg_cluster_t *c = n->c;
    int was_up = n->state == CL_READY;
    n->ac = NULL;
    n->state = CL_DOWN;
    n->client_id = 0;
    n->inflight = 0;
    n->hs_left = 0;
    n->verdict = CL_OK;
    size_t requeued = 0;
    for (cl_unit_t *u = n->head; u; u = u->fnext, requeued++) {
        u->node = NULL;
        u->ask = NULL;
    }
    n->head = n->tail = NULL;
    cl_unask(c, n);
    c->st.resent += requeued;
    if (was_up) {
        c->st.lost++;
        n->attempts = 0;
        cl_warn(c, "%s: connection lost: %s; %zu commands to re-send, reconnecting", n->addr, why, requeued);
    } else {
        c->st.connect_failures++;
        n->attempts++;
        cl_warn(c, "%s: cannot connect: %s (attempt %u)", n->addr, why, n->attempts);
    }
    uv_timer_start(&n->timer, cl_on_node_timer, cl_backoff(c->rmin, c->rmax, n->attempts), 0);
    if (c->refreshing == n) {
        c->refreshing = NULL;
        c->refresh_again = 1;
    }
    cl_refresh(c, NULL);
}

/* Drops n's connection from our side.  The server may still hold commands
 * of it not yet read or run (hiredis' unsent buffer goes with the context,
 * but the socket's may not): the next handshake CLIENT KILLs it before any
 * unit is written to n again (see cl_connect). */
static void cl_abort(cl_node_t *n, const char *why)
{
    redisAsyncContext *ac = n->ac;
    if (n->state == CL_READY && n->client_id > 0 && vg_cluster_sock_name_(ac->c.fd, n->kill_addr, sizeof n->kill_addr) == 0)
        n->kill_id = n->client_id;
    cl_lost(n, why);
    redisAsyncFree(ac); /* deferred by hiredis inside its own callback */
}

static void cl_ready(cl_node_t *n)
{
    vg_cluster_t *c = n->c;
    n->state = CL_READY;
    cl_log(c, VG_LOG_INFO, "redis cluster: %s: %s (%u failed attempts before)", n->addr,
           n->ever_up ? "reconnected" : "connected", n->attempts);
    n->ever_up = 1;
    n->attempts = 0;
    uv_timer_stop(&n->timer); /* the connect deadline */
    if (!c->have_map || c->refresh_wanted)
        cl_refresh(c, n);
    cl_kick_all(c);
}

/* A handshake reply: AUTH and PING must succeed; CLIENT ID and CLIENT KILL
 * may fail (ACLs), which only loses the ordering after a timeout. */
static void cl_on_hs(redisAsyncContext *ac, void *r, void *priv)
{
    cl_node_t *n = ac->data;
    redisReply *reply = r;
    const char *what = priv;
    if (!reply || n->c->closing || ac != n->ac)
        return;
    cl_answered(n);
    int err = reply->type == REDIS_REPLY_ERROR;
    if (strcmp(what, "CLIENT ID") == 0) {
        n->client_id = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    } else if (strcmp(what, "CLIENT KILL") == 0) {
        if (err)
            cl_warn(n->c, "%s: CLIENT KILL of the connection dropped before: %s (its commands may run late)", n->addr,
                    reply->str);
        n->kill_id = 0;
    } else if (err) {
        char why[200];
        snprintf(why, sizeof why, "%s: %s", what, reply->str);
        cl_abort(n, why);
        return;
    }
    if (--n->hs_left == 0)
        cl_ready(n);
}

static void cl_on_connect(const redisAsyncContext *ac, int status)
{
    cl_node_t *n = ac->data;
    if (n->c->closing || ac != n->ac || status == REDIS_OK)
        return;
    cl_lost(n, ac->c.errstr[0] ? ac->c.errstr : "connect failed"); /* hiredis frees ac */
}

static void cl_on_disconnect(const redisAsyncContext *ac, int status)
{
    cl_node_t *n = ac->data;
    (void)status;
    if (n->c->closing || ac != n->ac)
        return;
    cl_lost(n, ac->c.errstr[0] ? ac->c.errstr : "connection closed");
}

/* Connects n and sends AUTH (with a password), CLIENT KILL of the
 * connection dropped before (if any), CLIENT ID and PING; ready when they
 * answer, so every unit is written after the kill. */
static void cl_connect(cl_node_t *n)
{
    vg_cluster_t *c = n->c;
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    n->state = CL_CONNECTING;
    if (!ac || ac->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        cl_lost(n, why);
        return;
    }
    ac->data = n;
    if (vg_hiredis_uv_attach(ac, c->loop) != 0) {
        redisAsyncFree(ac);
        cl_lost(n, "cannot attach to the loop");
        return;
    }
    n->ac = ac;
    redisAsyncSetConnectCallback(ac, cl_on_connect);
    redisAsyncSetDisconnectCallback(ac, cl_on_disconnect);
    n->hs_left = 0;
    if (c->pass) {
        const char *argv[2] = {"AUTH", c->pass};
        size_t lens[2] = {4, strlen(c->pass)};
        n->hs_left += redisAsyncCommandArgv(ac, cl_on_hs, (void *)"AUTH", 2, argv, lens) == REDIS_OK;
    }
    if (n->kill_id > 0) {
        char id[24];
        snprintf(id, sizeof id, "%lld", n->kill_id);
        const char *argv[6] = {"CLIENT", "KILL", "ID", id, "ADDR", n->kill_addr};
        size_t lens[6] = {6, 4, 2, strlen(id), 4, strlen(n->kill_addr)};
        n->hs_left += redisAsyncCommandArgv(ac, cl_on_hs, (void *)"CLIENT KILL", 6, argv, lens) == REDIS_OK;
    }
    const char *argv[3] = {"CLIENT", "ID", "PING"};
    size_t lens[3] = {6, 2, 4};
    n->hs_left += redisAsyncCommandArgv(ac, cl_on_hs, (void *)"CLIENT ID", 2, argv, lens) == REDIS_OK;
    n->hs_left += redisAsyncCommandArgv(ac, cl_on_hs, (void *)"PING", 1, argv + 2, lens + 2) == REDIS_OK;
    n->inflight = (size_t)n->hs_left;
    uv_timer_start(&n->timer, cl_on_node_timer, (uint64_t)c->timeout, 0);
}

/* Down: reconnect.  Connecting: the deadline passed.  Ready: the watchdog —
 * drop n if it left commands unanswered for timeout ms. */
static void cl_on_node_timer(uv_timer_t *t)
{
    cl_node_t *n = t->data;
    vg_cluster_t *c = n->c;
    if (c->closing)
        return;
    if (n->state == CL_DOWN) {
        cl_connect(n);
    } else if (n->state == CL_CONNECTING) {
        cl_abort(n, "connect/AUTH timed out");
    } else if (n->inflight) {
        uint64_t idle = cl_now(c) - n->progress;
        if (idle >= (uint64_t)c->timeout) {
            char why[80];
            snprintf(why, sizeof why, "no reply for %d ms", c->timeout);
            c->st.timeouts++;
            cl_abort(n, why);
        } else {
            uv_timer_start(&n->timer, cl_on_node_timer, (uint64_t)c->timeout - idle, 0);
        }
    }
}

/* ---- the slot map --------------------------------------------------------------------------- */

/* One range of a map reply from node `from` (vg_cluster_range_fn_): slots
 * [a, b] to the node at host:port in c->scratch (an unknown host: from's). */
typedef struct cl_parse {
    vg_cluster_t *c;
    const cl_node_t *from;
} cl_parse_t;

static int cl_assign(void *ud, long long a, long long b, const char *host, size_t hostlen, long long port)
{
    cl_parse_t *p = ud;
    vg_cluster_t *c = p->c;
    if (a < 0 || b < a || b >= VG_CLUSTER_SLOTS)
        return -1;
    if (port <= 0 || port > 65535)
        return 0; /* no usable port: the range stays without owner */
    if (hostlen == 0 || (hostlen == 1 && host[0] == '?'))
        host = p->from->host, hostlen = strlen(p->from->host);
    cl_node_t *n = cl_node(c, host, hostlen, (int)port);
    if (!n)
        return -1;
    for (long long s = a; s <= b; s++)
        c->scratch[s] = n->idx;
    return 0;
}

/* The parsed map becomes the map. */
static void cl_apply_map(vg_cluster_t *c)
{
    memcpy(c->owner, c->scratch, sizeof c->owner);
    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->nslots = 0;
    size_t mapped = 0;
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        if (c->owner[s] != CL_NONE) {
            c->nodes[c->owner[s]]->nslots++;
            mapped++;
        }
    if (!c->have_map || mapped != c->st.slots_mapped)
        cl_log(c, VG_LOG_INFO, "redis cluster: slot map: %zu of %d slots on %zu nodes", mapped, VG_CLUSTER_SLOTS,
               c->nnodes);
    c->st.slots_mapped = mapped;
    c->have_map = 1;
    if (mapped == VG_CLUSTER_SLOTS)
        c->hole_tries = 0, c->hole_logged = 0;
    cl_unask(c, NULL);
}

static void cl_send_map(vg_cluster_t *c, cl_node_t *n);

static void cl_on_map(redisAsyncContext *ac, void *r, void *priv)
{
    cl_node_t *n = ac->data;
    vg_cluster_t *c = n->c;
    const redisReply *reply = r;
    (void)priv;
    if (!reply || c->closing || ac != n->ac)
        return;
    cl_answered(n);
    c->refreshing = NULL;
    if (reply->type == REDIS_REPLY_ERROR && !c->no_shards && vg_cluster_no_shards_(reply->str)) {
        cl_log(c, VG_LOG_INFO, "redis cluster: %s: CLUSTER SHARDS: %s; using CLUSTER SLOTS", n->addr, reply->str);
        c->no_shards = 1;
        cl_send_map(c, n);
        return;
    }
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        c->scratch[s] = CL_NONE;
    cl_parse_t parse = {c, n};
    if (vg_cluster_map_parse_(reply, !c->no_shards, cl_assign, &parse) == 0) {
        cl_apply_map(c);
    } else {
        cl_warn(c, "%s: unusable slot map (%s); asking again", n->addr,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        c->refresh_again = 1;
    }
    if (c->refresh_again) {
        c->refresh_again = 0;
        cl_refresh(c, NULL);
    }
    cl_kick_all(c);
}

static void cl_send_map(vg_cluster_t *c, cl_node_t *n)
{
    const char *argv[2] = {"CLUSTER", c->no_shards ? "SLOTS" : "SHARDS"};
    size_t lens[2] = {7, strlen(argv[1])};
    c->refreshing = n;
    c->last_refresh = cl_now(c);
    c->st.refreshes++;
    cl_written(n, 1);
    if (redisAsyncCommandArgv(n->ac, cl_on_map, NULL, 2, argv, lens) != REDIS_OK)
        cl_abort(n, "hiredis refused a write");
}

static void cl_on_refresh_timer(uv_timer_t *t)
{
    vg_cluster_t *c = t->data;
    if (!c->closing)
        cl_refresh(c, NULL);
}

/* Asks for the whole map: of prefer (or the last node preferred) if ready,
 * else of the next ready node; at most once per refresh_min ms and one
 * request at a time (a request meanwhile is remembered). */
static void cl_refresh(vg_cluster_t *c, cl_node_t *prefer)
{
    if (prefer)
        c->prefer = prefer;
    if (c->closing)
        return;
    if (c->refreshing) {
        c->refresh_again = 1;
        return;
    }
    uint64_t now = cl_now(c);
    if (c->st.refreshes && now < c->last_refresh + (uint64_t)c->refresh_min) {
        if (!uv_is_active((uv_handle_t *)&c->refresh_timer))
            uv_timer_start(&c->refresh_timer, cl_on_refresh_timer, c->last_refresh + (uint64_t)c->refresh_min - now, 0);
        return;
    }
    cl_node_t *n = c->prefer && c->prefer->state == CL_READY ? c->prefer : NULL;
    for (size_t k = 0; !n && k < c->nnodes; k++) {
        cl_node_t *m = c->nodes[(c->rr + k) % c->nnodes];
        if (m->state == CL_READY) {
            n = m;
            c->rr = (c->rr + k + 1) % c->nnodes;
        }
    }
    c->prefer = NULL;
    c->refresh_wanted = n == NULL; /* the next node that gets ready asks */
    if (n)
        cl_send_map(c, n);
}

/* ---- replies -------------------------------------------------------------------------------- */

/* Takes u, the head of its slot, out of the cluster, calls back, frees it
 * and writes the slot's next unit. */
static void cl_finish(vg_cluster_t *c, cl_unit_t *u, int status, const redisReply *reply, const char *err)
{
    unsigned slot = u->slot;
    vg_assert(c->shead[slot] == u);
    c->shead[slot] = u->next;
    if (!u->next)
        c->stail[slot] = NULL;
    c->pending--;
    if (status)
        c->st.failed++;
    else
        c->st.done++;
    if (u->cb)
        u->cb(u->ud, status, reply, err);
    free(u);
    if (!c->closing)
        cl_kick(c, slot);
}

static void cl_on_retry_timer(uv_timer_t *t);

/* u waits out a retry delay, then goes again. */
static void cl_delay(vg_cluster_t *c, cl_unit_t *u)
{
    uint64_t d = cl_backoff(c->retry_min, c->rmax, u->retries);
    u->due = cl_now(c) + d;
    u->delayed = 1;
    u->fnext = c->delayed;
    c->delayed = u;
    if (!uv_is_active((uv_handle_t *)&c->retry_timer) || u->due < c->retry_due) {
        uv_timer_start(&c->retry_timer, cl_on_retry_timer, d, 0);
        c->retry_due = u->due;
    }
}

static void cl_on_retry_timer(uv_timer_t *t)
{
    vg_cluster_t *c = t->data;
    if (c->closing)
        return;
    uint64_t now = cl_now(c), next = UINT64_MAX;
    cl_unit_t *ready = NULL;
    for (cl_unit_t **p = &c->delayed; *p;) {
        cl_unit_t *u = *p;
        if (u->due <= now) {
            *p = u->fnext;
            u->delayed = 0;
            u->fnext = ready;
            ready = u;
        } else {
            next = u->due < next ? u->due : next;
            p = &u->fnext;
        }
    }
    if (next != UINT64_MAX) {
        uv_timer_start(&c->retry_timer, cl_on_retry_timer, next - now, 0);
        c->retry_due = next;
    }
    while (ready && !c->closing) {
        cl_unit_t *u = ready;
        ready = u->fnext;
        cl_kick(c, u->slot);
    }
}

/* u's replies, from node `from`, are all in: complete it, or redirect,
 * delay or fail it.  A redirect's empty host is from's; a "?" host (the
 * server does not know the endpoint) refreshes the map and delays u like
 * TRYAGAIN.  After TRYAGAIN from an ASK target u->ask is kept: the retry
 * goes there again with ASKING.  Only MOVED and ASK with a target count
 * toward max_redirects. */
static void cl_settle(vg_cluster_t *c, const cl_node_t *from, cl_unit_t *u, int verdict, const char *why,
                      const redisReply *last)
{
    if (verdict == CL_OK) {
        cl_finish(c, u, 0, last, NULL);
        return;
    }
    if (verdict != CL_RETRY)
        verdict == CL_MOVED ? c->st.moved++ : c->st.ask++;
    unsigned slot = 0;
    const char *host = NULL;
    size_t hostlen = 0;
    int port = 0, ok = verdict != CL_RETRY && vg_cluster_redirect_parse_(why, &slot, &host, &hostlen, &port) == 0;
    if (verdict == CL_RETRY || (ok && hostlen == 1 && host[0] == '?')) {
        /* The map may be stale: a "?" host, CLUSTERDOWN, or a node that is a replica now (READONLY) or
         * whose master is gone (MASTERDOWN) after a failover. */
        if (verdict != CL_RETRY || strncmp(why, "CLUSTERDOWN", 11) == 0 || strncmp(why, "READONLY", 8) == 0 ||
            strncmp(why, "MASTERDOWN", 10) == 0)
            cl_refresh(c, NULL);
        if (verdict == CL_RETRY && strncmp(why, "TRYAGAIN", 8) != 0) { /* a wait an operator must see */
            char key[64];
            vg_cluster_key_text_(u->key, u->keylen, key, sizeof key);
            cl_warn(c, "%s:%d answers '%.120s': key '%s' (slot %u) waits, retry %u", from->host, from->port, why,
                    key, u->slot, (unsigned)u->retries + 1);
        }
        if (verdict != CL_RETRY)
            u->ask = NULL;
        c->st.retries += verdict == CL_RETRY;
        u->retries += u->retries < UINT16_MAX;
        cl_delay(c, u);
        return;
    }
    if (ok && hostlen == 0) /* ":port" (unknown-endpoint): the host of the node that answered */
        host = from->host, hostlen = strlen(from->host);
    cl_node_t *to = ok ? cl_node(c, host, hostlen, port) : NULL;
    if (to && verdict == CL_MOVED) {
        if (c->owner[slot] != CL_NONE)
            c->nodes[c->owner[slot]]->nslots--;
        c->owner[slot] = to->idx;
        to->nslots++;
        cl_refresh(c, to);
    }
    if (!to || ++u->redirects > (uint32_t)c->max_redirects) {
        char what[240], key[64], msg[640];
        vg_cluster_unit_describe_(u->buf, u->off, u->ncmds, what, sizeof what);
        vg_cluster_key_text_(u->key, u->keylen, key, sizeof key);
        snprintf(msg, sizeof msg, "%s: key '%s' (slot %u): %s after %lu redirects: %s", what, key, u->slot,
                 to ? "gave up" : "unusable redirect", (unsigned long)u->redirects, why);
        cl_warn(c, "%s", msg);
        cl_finish(c, u, VG_EREDIS, NULL, msg);
        return;
    }
    u->ask = verdict == CL_ASK ? to : NULL;
    cl_kick(c, u->slot);
}

static void cl_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    cl_node_t *n = ac->data;
    vg_cluster_t *c = n->c;
    const redisReply *reply = r;
    if (!reply || c->closing || ac != n->ac)
        return;
    cl_unit_t *u = priv;
    vg_assert(u == n->head);
    cl_answered(n);
    int cl = vg_cluster_reply_class_(reply, c->server_state);
    if (cl != CL_OK && n->verdict == CL_OK) {
        n->verdict = cl;
        snprintf(n->why, sizeof n->why, "%s", reply->str);
    }
    if (++u->nreplies < u->nexpect)
        return;
    n->head = u->fnext;
    if (!n->head)
        n->tail = NULL;
    u->node = NULL;
    char why[sizeof n->why];
    int verdict = n->verdict;
    memcpy(why, n->why, sizeof why);
    n->verdict = CL_OK;
    cl_settle(c, n, u, verdict, why, reply);
}

/* ---- submitting ----------------------------------------------------------------------------- */

/* A unit of ncmds commands in at most bytes bytes, with a copy of the key. */
static cl_unit_t *cl_unit_new(const char *key, size_t keylen, uint32_t ncmds, size_t bytes)
{
    cl_unit_t *u = calloc(1, sizeof *u + (ncmds + 1) * sizeof(uint32_t) + bytes + keylen + 1);
    if (!u)
        return NULL;
    u->off = (uint32_t *)(u + 1);
    u->buf = (char *)(u->off + ncmds + 1);
    u->ncmds = ncmds;
    u->keylen = keylen;
    u->key = u->buf + bytes;
    if (keylen)
        memcpy(u->buf + bytes, key, keylen);
    u->slot = (uint16_t)vg_cluster_keyslot(key, keylen);
    return u;
}

/* u, complete, goes to the end of its slot's FIFO (written at once if it is
 * the head and its node is ready). */
static int cl_accept(vg_cluster_t *c, cl_unit_t *u, vg_cluster_cb cb, void *ud)
{
    u->cb = cb;
    u->ud = ud;
    if (c->stail[u->slot])
        c->stail[u->slot]->next = u;
    else
        c->shead[u->slot] = u;
    c->stail[u->slot] = u;
    c->pending++;
    cl_kick(c, u->slot);
    return 0;
}

int vg_cluster_command(vg_cluster_t *c, const char *key, size_t keylen, int argc, const char *const *argv,
                       const size_t *argvlen, vg_cluster_cb cb, void *ud)
{
    if (!c || c->closing || (!key && keylen) || !vg_cluster_argv_ok_(argc, argv) ||
        vg_cluster_argv_stateful_(argv, argvlen, c->errstr, sizeof c->errstr))
        return VG_EINVAL;
    size_t bytes = vg_cluster_argv_bytes_(argc, argv, argvlen);
    if (bytes > UINT32_MAX)
        return VG_EINVAL;
    cl_unit_t *u = cl_unit_new(key, keylen, 1, bytes);
    if (!u)
        return VG_ENOMEM;
    u->off[1] = (uint32_t)(vg_cluster_argv_write_(u->buf, argc, argv, argvlen) - u->buf);
    return cl_accept(c, u, cb, ud);
}

int vg_cluster_multi(vg_cluster_t *c, const vg_cluster_cmd_t *cmds, size_t n, vg_cluster_cb cb, void *ud)
{
    if (!c || c->closing || !cmds || n == 0 || n > UINT32_MAX - 3)
        return VG_EINVAL;
    size_t bytes = vg_cluster_multi_bytes_(cmds, n, c->errstr, sizeof c->errstr);
    if (bytes == 0 || bytes > UINT32_MAX)
        return VG_EINVAL;
    cl_unit_t *u = cl_unit_new(cmds[0].key, cmds[0].keylen, (uint32_t)n + 2, bytes);
    if (!u)
        return VG_ENOMEM;
    vg_cluster_multi_write_(u->buf, u->off, cmds, n);
    return cl_accept(c, u, cb, ud);
}

int vg_cluster_formatted(vg_cluster_t *c, const char *key, size_t keylen, const char *buf, size_t len,
                         vg_cluster_cb cb, void *ud)
{
    if (!c || c->closing || (!key && keylen) || !buf || len > UINT32_MAX)
        return VG_EINVAL;
    size_t ncmds = vg_cluster_resp_unit_(buf, len, NULL, c->errstr, sizeof c->errstr);
    if (ncmds == 0)
        return VG_EINVAL;
    cl_unit_t *u = cl_unit_new(key, keylen, (uint32_t)ncmds, len);
    if (!u)
        return VG_ENOMEM;
    memcpy(u->buf, buf, len);
    vg_cluster_resp_unit_(buf, len, u->off, c->errstr, sizeof c->errstr);
    return cl_accept(c, u, cb, ud);
}

/* ---- life cycle and stats ------------------------------------------------------------------- */

static int cl_cfg_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, arg);
    return VG_EINVAL;
}

/* Seed i of cfg parsed into host and *port; 0 or VG_EINVAL (message in err). */
static int cl_seed(const vg_cluster_cfg_t *cfg, size_t i, char host[64], int *port, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!cfg->seeds[i] || vg_hostport_parse_why(cfg->seeds[i], host, 64, port, &why) != 0)
        return cl_cfg_err(err, errlen, "cluster seed: %s", cfg->seeds[i] ? why : "NULL");
    return 0;
}

static void cl_free(vg_cluster_t *c)
{
    for (size_t i = 0; i < c->nnodes; i++)
        free(c->nodes[i]);
    free(c->nodes);
    free(c->pass);
    free(c);
}

static void cl_handle_closed(vg_cluster_t *c)
{
    if (--c->handles == 0)
        cl_free(c);
}

static void cl_on_closed(uv_handle_t *h) { cl_handle_closed(h->data); }
static void cl_on_node_closed(uv_handle_t *h) { cl_handle_closed(((cl_node_t *)h->data)->c); }

int vg_cluster_init(vg_cluster_t **out, uv_loop_t *loop, const vg_cluster_cfg_t *cfg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !loop || !cfg || !cfg->seeds || cfg->nseeds == 0)
        return cl_cfg_err(err, errlen, "cluster: %s", "no seed address");
    if (cfg->timeout_ms < 0 || cfg->reconnect_min_ms < 0 || cfg->reconnect_max_ms < 0 || cfg->retry_min_ms < 0 ||
        cfg->max_redirects < 0 || cfg->refresh_min_ms < 0)
        return cl_cfg_err(err, errlen, "cluster: %s", "negative time or count");
    char host[64];
    int port;
    for (size_t i = 0; i < cfg->nseeds; i++)
        if (cl_seed(cfg, i, host, &port, err, errlen) != 0)
            return VG_EINVAL;
    vg_cluster_t *c = calloc(1, sizeof *c);
    if (!c)
        return VG_ENOMEM;
    c->loop = loop;
    c->timeout = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    c->rmin = cfg->reconnect_min_ms ? cfg->reconnect_min_ms : 100;
    c->rmax = cfg->reconnect_max_ms ? cfg->reconnect_max_ms : 5000;
    c->retry_min = cfg->retry_min_ms ? cfg->retry_min_ms : 20;
    c->server_state = cfg->retry_server_state != 0;
    c->max_redirects = cfg->max_redirects ? cfg->max_redirects : 16;
    c->refresh_min = cfg->refresh_min_ms ? cfg->refresh_min_ms : 100;
    c->log = cfg->log;
    c->ud = cfg->ud;
    c->rl = (vg_ratelimit_t)VG_RATELIMIT_INIT(10.0, 3);
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        c->owner[s] = CL_NONE;
    c->pass = cfg->password && *cfg->password ? strdup(cfg->password) : NULL;
    uv_timer_init(loop, &c->refresh_timer);
    uv_timer_init(loop, &c->retry_timer);
    c->refresh_timer.data = c->retry_timer.data = c;
    c->handles = 2;
    int rc = cfg->password && *cfg->password && !c->pass ? VG_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < cfg->nseeds; i++) {
        cl_seed(cfg, i, host, &port, NULL, 0);
        rc = cl_node(c, host, strlen(host), port) ? 0 : VG_ENOMEM;
    }
    if (rc) { /* the handles made so far close on the caller's loop */
        vg_cluster_close(c);
        return rc;
    }
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    *out = c;
    return 0;
}

size_t vg_cluster_pending(const vg_cluster_t *c) { return c->pending; }

void vg_cluster_stats(const vg_cluster_t *c, vg_cluster_stats_t *st)
{
    *st = c->st;
    st->pending = c->pending;
    st->nodes = c->nnodes;
}

int vg_cluster_healthy(const vg_cluster_t *c)
{
    if (c->st.slots_mapped != VG_CLUSTER_SLOTS)
        return 0;
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->nslots && c->nodes[i]->state != CL_READY)
            return 0;
    return 1;
}

int vg_cluster_node_stats(const vg_cluster_t *c, size_t i, vg_cluster_node_stats_t *out)
{
    if (i >= c->nnodes)
        return VG_ERANGE;
    const cl_node_t *n = c->nodes[i];
    snprintf(out->addr, sizeof out->addr, "%s", n->addr);
    out->up = n->state == CL_READY;
    out->inflight = n->inflight;
    out->slots = n->nslots;
    out->waiting = 0;
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        for (const cl_unit_t *u = c->shead[s]; u; u = u->next)
            out->waiting += cl_target(c, u) == n;
    return 0;
}

const char *vg_cluster_errstr(const vg_cluster_t *c) { return c->errstr; }

/* Every pending unit is freed; with cancel, first its callback fires with
 * VG_EAGAIN, slot by slot and in each slot in submission order (c is
 * closing: callbacks cannot submit). */
static void cl_drop_units(vg_cluster_t *c, int cancel)
{
    for (unsigned s = 0; s < VG_CLUSTER_SLOTS; s++)
        while (c->shead[s]) {
            cl_unit_t *u = c->shead[s];
            c->shead[s] = u->next;
            c->pending--;
            if (cancel && u->cb)
                u->cb(u->ud, VG_EAGAIN, NULL, "the cluster client was closed before the command completed");
            free(u);
        }
    memset(c->stail, 0, sizeof c->stail);
    c->delayed = NULL;
    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->head = c->nodes[i]->tail = NULL;
}

static void cl_close(vg_cluster_t *c, int cancel)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    for (size_t i = 0; i < c->nnodes; i++) {
        cl_node_t *n = c->nodes[i];
        redisAsyncContext *ac = n->ac;
        n->ac = NULL;
        if (ac)
            redisAsyncFree(ac); /* its callbacks see c->closing and return */
    }
    cl_drop_units(c, cancel);
    for (size_t i = 0; i < c->nnodes; i++)
        uv_close((uv_handle_t *)&c->nodes[i]->timer, cl_on_node_closed);
    uv_close((uv_handle_t *)&c->refresh_timer, cl_on_closed);
    uv_close((uv_handle_t *)&c->retry_timer, cl_on_closed);
}

void vg_cluster_close(vg_cluster_t *c) { cl_close(c, 0); }

void vg_cluster_close_cancel(vg_cluster_t *c) { cl_close(c, 1); }
