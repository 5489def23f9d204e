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
#include <stdlib.h>

#include <hiredis/async.h>
#include <uv.h>

#include "cache/store.h"
#include "common/errors.h"
#include "common/ratelimit.h"

/* One event of a vg_store_add_events() batch, for grouping by user. */
typedef struct st_ev {
    const char *user;
    size_t ulen;
    size_t i; /* its index in the caller's array */
} st_ev_t;

struct st_job; /* a job of the queue: private to store.c */

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
    char rank_stop[24]; /* "-(history_max+1)" */
    char ttl[24];
    char where[300];    /* for messages */
    void (*on_up)(void *ud, int up);
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
    const char **litems;
    size_t *llens;
    double *lts;
    size_t lcap;

    vg_ratelimit_t rl_conn, rl_cmd, rl_load; /* one message per ST_RL_MS and kind */
    uint64_t commands, replies, errors, reconnects, connect_failures, resent_jobs, jobs_done;
    char errstr[256];
};

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

#endif
