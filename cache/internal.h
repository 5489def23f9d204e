/*
 * internal.h — what the files of cache/ share and nobody else may use: the
 * store's state (struct vg_store) and the hand-over of a formatted write job
 * from cache/write.c to the queue of cache/store.c.
 *
 * Direction: write.c formats commands into the scratch below and calls
 * vg_store_submit_(); store.c never calls into write.c.  Only store.c
 * touches the connection and queue fields (its invariants are at the top of
 * store.c); write.c reads the configuration copies and uses the scratch.
 */
#ifndef VG_CACHE_INTERNAL_H
#define VG_CACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <uv.h>

#include "cache/dump.h"
#include "cache/resp.h"
#include "cache/store.h"
#include "common/errors.h"
#include "common/ratelimit.h"

/* One event of a vg_store_add_events() batch, for grouping by user. */
typedef struct st_ev {
    const char *user;
    size_t ulen;
    size_t i;       /* its index in the caller's array */
    unsigned shard; /* cluster mode: the user's shard of vaegan:users (vg_store_user_shard_); else 0 */
} st_ev_t;

/* One event with a partition set (vg_store_event_t.part), for grouping by
 * set and user. */
typedef struct st_pe {
    const char *part, *user;
    size_t plen, ulen;
    double ts;
} st_pe_t;

struct st_job; /* a job of the queue: private to store.c */
struct vg_cluster;
struct redisReply;

/* Cluster mode (store.h, "Redis Cluster"): one unit of the cluster layer —
 * command idx of job j — while it is unanswered.  Kept in its job
 * (j->units[idx]). */
typedef struct vg_store_unit_ {
    vg_store_t *s;
    struct st_job *j;
    uint32_t idx;
    const char *buf; /* its RESP bytes, in the job's buffer */
    size_t len;
} vg_store_unit_t;

/* The vaegan:users shard of a user in cluster mode: CRC16 of its id mod
 * VG_STORE_USER_SHARDS. */
unsigned vg_store_user_shard_(const char *user, size_t len);

/* cache/store_cluster.c, for store.c (which it never calls but through
 * these pointers).  cl_init_: creates s->cl from cfg's host:port (the seed)
 * and starts s->timer ticking; each answer to a unit goes to on_reply, each
 * change of the map's health (up: every slot has a connected master, and
 * the checks of what lists may use are answered, hs_major and
 * hs_restore_denied set) to on_up.  cl_send_: submits u->buf[0..len)
 * as a unit, routed by the key it names.  cl_close_: ends s->cl, no
 * callback follows. */
typedef void (*vg_store_unit_reply_fn)(vg_store_unit_t *u, const struct redisReply *r);
typedef void (*vg_store_cl_up_fn)(vg_store_t *s, int up);
int vg_store_cl_init_(vg_store_t *s, const vg_store_cfg_t *cfg, vg_store_unit_reply_fn on_reply, vg_store_cl_up_fn on_up,
                      char *err, size_t errlen);
int vg_store_cl_send_(vg_store_t *s, vg_store_unit_t *u);
void vg_store_cl_close_(vg_store_t *s);

/* What a reply means to the store (reply.c). */
enum {
    VG_RC_OK = 0,
    VG_RC_DATA = 1,      /* an error of this command on its key (WRONGTYPE, a bad value): not retried */
    VG_RC_TRANSIENT = 2, /* the server's passing state (LOADING, BUSY, OOM, ...): reconnect, re-send */
    VG_RC_READONLY = 3,  /* READONLY: transient until it lasts readonly_timeout_ms, then refused */
    VG_RC_REFUSED = 4    /* the server is not ours to write (MOVED, ASK, CROSSSLOT, NOPERM, NOAUTH
                            without a password): the store stops, on_fatal */
};
struct redisReply;
/* The class of r; *msg = the error text when not VG_RC_OK.  An array (EXEC's
 * reply) is looked into one level deep.  has_password: NOAUTH is transient
 * (the reconnect re-AUTHs) rather than refused. */
int vg_store_classify_(const struct redisReply *r, int has_password, const char **msg);

struct vg_store {
    uv_loop_t *loop;
    uv_timer_t timer;
    redisAsyncContext *ac;
    int state;
    int closing;
    int ever_up;
    int hs_left;        /* handshake replies still expected */
    unsigned attempts;  /* failed attempts since the last ready connection */
    unsigned streak;    /* connections dropped for a server-state error since the
                           last good reply (READONLY, OOM, ...): backs off too */
    uint64_t down_since;

    /* configuration (copies) */
    char *host, *sock, *pass, *prefix;
    size_t plen;
    int port, db;
    int history_max, rec_ttl_s, max_inflight, rmin, rmax, connect_timeout;
    int ordered;        /* cfg->removals: history writes through the ordered script */
    int rec_zadd;       /* cfg->rec_zadd: lists always by the script's DEL/ZADD */
    int rec_restore;    /* lists as RESTORE of a listpack (dump.h): the server is >= 7 and lets us
                           (decided at each connect; jobs formatted before keep their form) */
    int hs_major, hs_restore_denied; /* what this connect's checks found */
    int cluster;           /* cfg->cluster */
    struct vg_cluster *cl; /* cluster mode (cfg->cluster): every command goes through it; ac stays NULL */
    int cl_checked;            /* cluster mode: the list checks were sent (store_cluster.c) */
    int cl_info;               /* ... replies to them still due */
    struct vg_store_chk_ {
        vg_store_t *s;
        int what;
    } cl_chk[4];               /* ... one per check, the callbacks' ud */
    vg_store_unit_reply_fn cl_reply; /* vg_store_cl_init_'s on_reply and on_up */
    vg_store_cl_up_fn cl_up;
    vg_dump_tmp_t *zorder; /* vg_dump_zset's scratch */
    size_t zorder_cap;
    char *zbuf;         /* a list's RESTORE payload */
    size_t zbuf_cap;
    int readonly_timeout;  /* ms a READONLY may last before it is refused */
    uint64_t ro_since;  /* loop time of the first READONLY since the last good reply, 0 = none */
    int fatal;          /* the server refused us (VG_RC_REFUSED): nothing more is written */
    char rank_stop[24]; /* "-(history_max+1)" */
    char ttl[24];
    char where[300];    /* for messages */
    void (*on_up)(void *ud, int up);
    void (*on_fatal)(void *ud, const char *msg);
    vg_log_fn log;
    void *ud;

    /* the queue */
    struct st_job *head, *tail, *send;
    size_t njobs, pending_bytes, inflight;

    /* scratch, reused across calls */
    char *sbuf;
    size_t scap;
    uint32_t *soff;
    size_t socap;
    st_ev_t *sev;
    size_t sevcap;
    uint32_t *smap; /* per command of a history job: [first, end) of the sev entries it writes */
    size_t smapcap;
    st_pe_t *pev;
    size_t pevcap;
    const char **litems;
    size_t *llens;
    double *lts;
    size_t lcap;

    vg_ratelimit_t rl_conn, rl_cmd, rl_load; /* one message per ST_RL_MS and kind */
    uint64_t commands, replies, errors, reconnects, connect_failures, resent_jobs, jobs_done;
    char errstr[256];
};

/* The RESP argument naming a user's key: <p><kind><user>, or in cluster
 * mode <p><kind>{<user>} (kind "hist:", "rm:" or "rec:"); at most
 * VG_RESP_ARG_OVH + plen + klen + ulen + 2 bytes. */
static inline char *vg_store_ukey_(const vg_store_t *s, char *p, const char *kind, size_t klen, const char *user,
                                   size_t ulen)
{
    if (!s->cluster)
        return vg_resp_arg3(p, s->prefix, s->plen, kind, klen, user, ulen);
    *p++ = '$';
    p = vg_resp_u64(p, s->plen + klen + ulen + 2);
    *p++ = '\r';
    *p++ = '\n';
    if (s->plen)
        memcpy(p, s->prefix, s->plen);
    p += s->plen;
    memcpy(p, kind, klen);
    p += klen;
    *p++ = '{';
    if (ulen)
        memcpy(p, user, ulen);
    p += ulen;
    *p++ = '}';
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* The RESP argument naming <p>vaegan:users, or in cluster mode its shard
 * <p>vaegan:users:{<shard>}; at most VG_RESP_ARG_OVH + plen + 24 bytes. */
static inline char *vg_store_users_key_(const vg_store_t *s, char *p, unsigned shard)
{
    if (!s->cluster)
        return vg_resp_arg3(p, s->prefix, s->plen, "vaegan:users", 12, NULL, 0);
    char tag[16];
    int n = snprintf(tag, sizeof tag, ":{%u}", shard);
    return vg_resp_arg3(p, s->prefix, s->plen, "vaegan:users", 12, tag, (size_t)n);
}

/* Grows *p (of *cap elements of elem bytes) to at least need elements,
 * doubling from 64.  Returns 0 or VG_ENOMEM (*p and *cap unchanged). */
static inline int vg_store_grow_(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return VG_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* Makes sure the scratch holds bytes and ncmds + 1 offsets.  Returns 0,
 * VG_EINVAL (too large for a job's 32-bit offsets) or VG_ENOMEM. */
static inline int vg_store_scratch_(vg_store_t *s, size_t bytes, size_t ncmds)
{
    if (bytes > UINT32_MAX || ncmds >= UINT32_MAX)
        return VG_EINVAL;
    if (vg_store_grow_((void **)&s->sbuf, &s->scap, bytes, 1) ||
        vg_store_grow_((void **)&s->soff, &s->socap, ncmds + 1, sizeof(uint32_t)))
        return VG_ENOMEM;
    return 0;
}

/* The write job in the scratch — len bytes of ncmds commands, command i
 * starting at s->soff[i] — becomes a heap job of exact size at the end of
 * the queue (written at once if the window allows); the scratch is free
 * again after the call.  cb (may be NULL) fires once when every reply is in.
 * Returns 0 or VG_ENOMEM (nothing queued). */
int vg_store_submit_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_cb cb, void *ud);

/* As vg_store_submit_ for a history job of n events: command c writes the
 * events s->sev[s->smap[2c] .. s->smap[2c+1]).i; the job keeps that map so
 * that ecb learns which events a data error refused. */
int vg_store_submit_events_(vg_store_t *s, size_t len, uint32_t ncmds, size_t n, vg_store_events_cb ecb, void *ud);

/* As vg_store_submit_ for a list write: one command, the list script
 * (write.c), whose reply 0 (refused: Redis holds a newer version) makes the
 * job's status VG_ESTALE. */
int vg_store_submit_list_(vg_store_t *s, size_t len, vg_store_cb cb, void *ud);

/* As vg_store_submit_ for a read-back (vg_store_read_user): rows gets each
 * reply's (member, score) pairs. */
int vg_store_submit_read_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_rows_cb rows, vg_store_cb cb, void *ud);

/* As vg_store_submit_ for a job whose caller reads the replies itself
 * (cache/shared.c): fn gets reply idx of each command as it arrives, data
 * errors included (those are logged too and make the status VG_EREDIS);
 * the reply is valid during the call only. */
typedef void (*vg_store_reply_fn)(void *ud, uint32_t idx, const struct redisReply *r);
int vg_store_submit_replies_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_reply_fn fn, vg_store_cb cb,
                             void *ud);

/* One ACL DRYRUN check of the connect-time probe (reply.c): the command
 * "ACL DRYRUN <user> <command> <key> ..." and what it checks, for messages. */
typedef struct vg_store_probe {
    const char *argv[10];
    size_t lens[10];
    int argc;
    char key[300], key2[300], what[340];
} vg_store_probe_t;
/* How many checks there are; check i for this store and user into *out:
 * returns 1, or 0 when check i does not apply (or i is past the end). */
/* The checks whose refusal stops the store; check vg_store_probe_count_()
 * itself (RESTORE of a list) only says whether lists may be restored. */
size_t vg_store_probe_count_(void);
int vg_store_probe_(const vg_store_t *s, size_t i, const char *user, vg_store_probe_t *out);
/* The reply of INFO cluster (is_info) or of an ACL DRYRUN: the refusal it
 * states (owned by r), or NULL when it states none or could not check. */
const char *vg_store_probe_refusal_(const struct redisReply *r, int is_info);

#endif
