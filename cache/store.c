/*
 * store.c — the Redis store: one hiredis async connection on the caller's
 * libuv loop, a FIFO of jobs, reconnect with backoff, and the start-up load.
 *
 * A job owns its commands as RESP bytes formatted once (binary-safe: every
 * argument carries its length) plus the offsets of its commands; they are
 * written with redisAsyncFormattedCommand, so a re-send after a reconnect
 * costs no formatting.  A write job is one allocation (header, offsets,
 * bytes), built in a reusable scratch buffer by write.c (the write calls of
 * store.h) and copied at its exact size by vg_store_submit_().
 *
 * Invariants (s->send is the first job not completely written on the current
 * connection):
 *   - jobs before s->send are completely written, s->send is partially
 *     written or not at all, jobs after it are not written;
 *   - replies arrive in order on one connection, so jobs complete in FIFO
 *     order: a job whose last reply arrives is always s->head (in cluster
 *     mode it may be any job: it is marked complete, and callbacks fire
 *     from the head while the head is complete, st_complete);
 *   - s->inflight = commands written and unanswered on the current connection;
 *   - when the connection is lost (any path) s->ac is set to NULL first, then
 *     every written job is reset (write jobs from their first command, the
 *     load from its first unanswered one) and s->send = s->head.  Reply
 *     callbacks of a dead context (hiredis calls them with NULL when it frees
 *     it) are recognised by reply == NULL or ac != s->ac and ignored.
 *   - the store's memory is freed only in the close callback of its timer,
 *     i.e. after any hiredis callback of the current loop iteration returned,
 *     so hiredis may still call back into a closing store safely.
 *
 * hiredis is bound to libuv by hiredis_uv.c, not by its 0.14.1 adapter,
 * which hangs on libuv's error status (see hiredis_uv.h).  The RESP writers
 * are in resp.h; struct vg_store is in internal.h, shared with write.c.
 *
 * Cluster mode (store.h, "Redis Cluster"): s->ac stays NULL and the pump
 * hands each command to store_cluster.c as a unit
 * of cache/cluster.h; the reply comes back through st_unit_reply with the
 * command's index (replies of different slots arrive in any order), and
 * "up" follows the slot map's health (st_cl_up) instead of a handshake.
 * The cluster layer resends across lost nodes and redirects, and waits out
 * server-state errors holding the unit's slot, itself; so the reconnect
 * path (st_lost) is not used.
 *
 * A load job differs from write jobs: its buffer is rebuilt per round (the
 * marks and the ZCARD of vaegan:users first when asked for, then the ZRANGE
 * of a chunk of vaegan:users, then one ZRANGE WITHSCORES per user of the
 * chunk) and the pump does not pass it until its round is answered.
 *
 * Why one file: the connection, the queue, the replies and the load are
 * one state machine over one set of private fields — the pump, the
 * reconnect path (a load resumes from its first unanswered reply), the
 * handshake and the reply handling all know each job's phase.  What does
 * not touch that state lives beside it: the command formatting (write.c),
 * what a reply means (reply.c), RESP (resp.c), the libuv binding
 * (hiredis_uv.c).
 */
#include "cache/store.h"

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "cache/hiredis_uv.h"
#include "cache/internal.h"
#include "cache/resp.h"
#include "common/ratelimit.h"

#define ST_DEF_INFLIGHT 4096
#define ST_DEF_RMIN 100
#define ST_DEF_RMAX 5000
#define ST_DEF_CONNECT_TIMEOUT 10000
#define ST_RL_MS 10000  /* one warning per window and kind (rl_* of struct vg_store) */
#define ST_LOAD_CHUNK 1000

enum { ST_DOWN = 0, ST_HANDSHAKE = 1, ST_READY = 2 };
enum { JOB_WRITE = 0, JOB_LOAD = 1 };
enum { LOAD_USERS = 0, LOAD_HISTS = 1, LOAD_MARKS = 2, LOAD_COUNT = 3 };
#define ST_DEF_READONLY_MS 30000

typedef struct st_job {
    struct st_job *next;
    int kind;
    int status;         /* VG_EREDIS once a data error arrived in this pass */
    vg_store_cb cb;     /* on_done for a load */
    vg_store_events_cb ecb; /* a history job's callback instead of cb */
    vg_store_rows_cb rows;  /* a read-back job (vg_store_read_user): each reply's pairs */
    vg_store_reply_fn replies; /* a job of raw replies (vg_store_submit_replies_): each reply */
    int list;           /* a list write (vg_store_put_rec): its script answers 0 when refused as older */
    uint32_t n_ev;      /* a history job's events */
    uint32_t *map;      /* ... per command [first, end) into evi (vg_store_submit_events_) */
    uint32_t *evi;      /* ... the events' indices in the caller's array, grouped by user */
    char **cerr;        /* per command, the data error's text in this pass; NULL until one */
    int cerr_lost;      /* out of memory keeping them: every event counts as refused */
    void *ud;
    uint32_t ncmds;     /* commands in buf */
    uint32_t nsent;     /* commands written on the current connection */
    uint32_t nanswered; /* replies received for them */
    uint32_t *off;      /* ncmds + 1 offsets into buf */
    char *buf;
    size_t bytes;       /* accounted in s->pending_bytes */
    int complete;       /* every reply is in: its callback fires once the jobs before it completed */
    vg_store_unit_t *units; /* cluster mode: units[i] for the unit starting at command i */
    uint32_t ucap;
} st_job_t;

typedef struct st_load {
    st_job_t job; /* first member: a st_job_t * is a st_load_t * when kind is JOB_LOAD */
    vg_store_user_cb on_user;
    vg_store_mark_cb on_mark; /* NULL: vaegan:forgotten is not read */
    vg_store_count_cb on_count; /* NULL: vaegan:users is not counted */
    double marks_since;
    int phase;
    int failed;           /* some hist:<user> could not be read */
    int rc;               /* VG_ENOMEM once a history could not be delivered */
    size_t rank;          /* rank of the first user of the current chunk */
    size_t chunk_n;       /* users the current chunk's ZRANGE returned */
    unsigned shard;       /* cluster mode: the shard of vaegan:users being read */
    uint64_t count;       /* the COUNT round's sum so far */
    uint32_t *uoff, *ulen; /* per HISTS command: the user inside buf */
    size_t bufcap, cmdcap;
} st_load_t;

/* ---- small helpers ------------------------------------------------------------------------ */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void st_log(vg_store_t *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_logv(s->log, s->ud, level, fmt, ap);
    va_end(ap);
}

static char *st_strdup(const char *p)
{
    if (!p || !*p)
        return NULL;
    size_t n = strlen(p) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, p, n);
    return d;
}


/* ---- the queue ---------------------------------------------------------------------------- */

/* Forgets the data errors of j's pass (a re-send starts a new one). */
static void st_job_clear_errors(st_job_t *j)
{
    j->status = 0;
    j->cerr_lost = 0;
    if (!j->cerr)
        return;
    for (uint32_t c = 0; c < j->ncmds; c++)
        free(j->cerr[c]);
    free(j->cerr);
    j->cerr = NULL;
}

static void st_job_free(st_job_t *j)
{
    st_job_clear_errors(j);
    free(j->units);
    if (j->kind == JOB_LOAD) {
        st_load_t *L = (st_load_t *)j;
        free(j->buf);
        free(j->off);
        free(L->uoff);
        free(L->ulen);
    }
    free(j);
}

static void st_pump(vg_store_t *s);
static void st_on_reply(redisAsyncContext *ac, void *r, void *priv);
static void st_on_load_reply(redisAsyncContext *ac, void *r, void *priv);

static void st_enqueue(vg_store_t *s, st_job_t *j)
{
    j->next = NULL;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    if (!s->send)
        s->send = j;
    s->njobs++;
    s->pending_bytes += j->bytes;
    st_pump(s);
}

/* A history job's callback: which events a data error refused (store.h,
 * vg_store_events_cb). */
static void st_events_done(st_job_t *j)
{
    const char **ev_err = j->status && j->cerr && j->n_ev ? calloc(j->n_ev, sizeof *ev_err) : NULL;
    if (ev_err)
        for (uint32_t c = 0; c < j->ncmds; c++)
            for (uint32_t k = j->map[2 * c]; j->cerr[c] && k < j->map[2 * c + 1]; k++)
                if (!ev_err[j->evi[k]])
                    ev_err[j->evi[k]] = j->cerr[c];
    j->ecb(j->ud, j->status, ev_err, j->n_ev); /* VG_EREDIS with NULL: could not tell which, so all */
    free(ev_err);
}

/* Pops the head (which must be j), calls its callback and frees it. */
static void st_finish_head(vg_store_t *s, st_job_t *j)
{
    vg_assert(j == s->head && j->complete);
    s->head = j->next;
    if (!s->head)
        s->tail = NULL;
    if (s->send == j)
        s->send = j->next;
    s->njobs--;
    s->pending_bytes -= j->bytes;
    s->jobs_done++;
    if (j->ecb)
        st_events_done(j);
    else if (j->cb)
        j->cb(j->ud, j->status);
    st_job_free(j);
}

/* Every reply of j is in.  On one connection that makes it the head; in
 * cluster mode jobs complete in any order, and their callbacks wait until
 * the jobs before them completed. */
static void st_complete(vg_store_t *s, st_job_t *j)
{
    j->complete = 1;
    if (s->send == j)
        s->send = j->next;
    while (s->head && s->head->complete && !s->closing)
        st_finish_head(s, s->head);
}

/* A write job built in the scratch (len bytes, ncmds commands whose offsets
 * are in s->soff; with n_ev > 0 the event map of a history job in s->smap
 * and s->sev) -> a heap job of exact size, enqueued. */
static int st_submit(vg_store_t *s, size_t len, uint32_t ncmds, size_t n_ev, vg_store_cb cb,
                     vg_store_events_cb ecb, void *ud)
{
    size_t offb = (size_t)(ncmds + 1) * sizeof(uint32_t);
    size_t mapb = n_ev ? ((size_t)2 * ncmds + n_ev) * sizeof(uint32_t) : 0;
    st_job_t *j = malloc(sizeof *j + offb + mapb + len);
    if (!j)
        return VG_ENOMEM;
    memset(j, 0, sizeof *j);
    j->kind = JOB_WRITE;
    j->cb = cb;
    j->ecb = ecb;
    j->ud = ud;
    j->ncmds = ncmds;
    j->n_ev = (uint32_t)n_ev;
    j->off = (uint32_t *)(j + 1);
    s->soff[ncmds] = (uint32_t)len;
    memcpy(j->off, s->soff, offb);
    if (n_ev) {
        j->map = j->off + ncmds + 1;
        j->evi = j->map + 2 * ncmds;
        memcpy(j->map, s->smap, (size_t)2 * ncmds * sizeof(uint32_t));
        for (size_t k = 0; k < n_ev; k++)
            j->evi[k] = (uint32_t)s->sev[k].i;
    }
    j->buf = (char *)j->off + offb + mapb;
    memcpy(j->buf, s->sbuf, len);
    j->bytes = sizeof *j + offb + mapb + len;
    st_enqueue(s, j);
    return 0;
}

int vg_store_submit_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_cb cb, void *ud)
{
    return st_submit(s, len, ncmds, 0, cb, NULL, ud);
}

int vg_store_submit_events_(vg_store_t *s, size_t len, uint32_t ncmds, size_t n, vg_store_events_cb ecb, void *ud)
{
    return st_submit(s, len, ncmds, n, NULL, ecb, ud);
}

int vg_store_submit_list_(vg_store_t *s, size_t len, vg_store_cb cb, void *ud)
{
    int rc = st_submit(s, len, 1, 0, cb, NULL, ud);
    if (rc == 0)
        s->tail->list = 1;
    return rc;
}

int vg_store_submit_read_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_rows_cb rows, vg_store_cb cb, void *ud)
{
    int rc = st_submit(s, len, ncmds, 0, cb, NULL, ud);
    if (rc == 0)
        s->tail->rows = rows;
    return rc;
}

int vg_store_submit_replies_(vg_store_t *s, size_t len, uint32_t ncmds, vg_store_reply_fn fn, vg_store_cb cb,
                             void *ud)
{
    int rc = st_submit(s, len, ncmds, 0, cb, NULL, ud);
    if (rc == 0)
        s->tail->replies = fn;
    return rc;
}

/* Cluster mode: command i of j as one unit of the cluster layer.  Returns
 * 0, or VG_ENOMEM (the pump tries again on the next reply or tick). */
static int st_send_unit(vg_store_t *s, st_job_t *j, uint32_t i)
{
    if (j->ucap < j->ncmds) {
        vg_store_unit_t *u = realloc(j->units, j->ncmds * sizeof *u);
        if (!u)
            return VG_ENOMEM;
        j->units = u;
        j->ucap = j->ncmds;
    }
    vg_store_unit_t *u = &j->units[i];
    *u = (vg_store_unit_t){.s = s, .j = j, .idx = i, .buf = j->buf + j->off[i], .len = j->off[i + 1] - j->off[i]};
    return vg_store_cl_send_(s, u);
}

/* Writes commands while the connection is ready and the window allows. */
static void st_pump(vg_store_t *s)
{
    if (s->state != ST_READY || s->closing || s->fatal)
        return;
    while (s->send && s->inflight < (size_t)s->max_inflight) {
        st_job_t *j = s->send;
        if (j->nsent == j->ncmds) {
            if (j->kind == JOB_LOAD)
                break; /* its round is out; the next one is built from the replies */
            s->send = j->next;
            continue;
        }
        uint32_t i = j->nsent;
        if (s->cl) {
            if (st_send_unit(s, j, i))
                break;
        } else if (redisAsyncFormattedCommand(s->ac, j->kind == JOB_LOAD ? st_on_load_reply : st_on_reply, j,
                                              j->buf + j->off[i], j->off[i + 1] - j->off[i]) != REDIS_OK) {
            break; /* the context is going down; the disconnect path re-queues */
        }
        j->nsent++;
        s->inflight++;
        s->commands++;
        if (j->nsent == j->ncmds && j->kind == JOB_WRITE)
            s->send = j->next;
    }
}

/* ---- connection --------------------------------------------------------------------------- */

static void st_connect(vg_store_t *s);
static void st_abort(vg_store_t *s, const char *why);
static void st_refuse(vg_store_t *s, const char *what, const char *msg);
static int st_pairs(vg_store_t *s, const redisReply *h, size_t *m);

/* One timer: the reconnect delay while down, the connect + handshake
 * deadline while connecting (hiredis 0.14 has no timeouts of its own). */
static void st_on_timer(uv_timer_t *t)
{
    vg_store_t *s = t->data;
    if (s->closing || s->fatal)
        return;
    if (s->state == ST_DOWN && !s->ac)
        st_connect(s);
    else if (s->state == ST_HANDSHAKE && s->ac)
        st_abort(s, "connect/handshake timed out");
}

/* Next attempt: at once for the very first, rmin after losing a ready
 * connection, rmin * 2^(k-1) capped at rmax after k failures (failed
 * attempts plus drops for server-state errors). */
static void st_schedule(vg_store_t *s)
{
    uint64_t d = (uint64_t)s->rmin;
    unsigned k = s->attempts + s->streak;
    for (unsigned i = 1; i < k && d < (uint64_t)s->rmax; i++)
        d *= 2;
    if (d > (uint64_t)s->rmax)
        d = (uint64_t)s->rmax;
    if (k == 0 && !s->ever_up)
        d = 0;
    uv_timer_start(&s->timer, st_on_timer, d, 0);
}

/* The connection s->ac is gone or being dropped (the caller frees it if
 * hiredis will not): forget it, re-queue what was written on it, schedule a
 * reconnect, tell the owner. */
static void st_lost(vg_store_t *s, const char *why)
{
    int was_up = s->state == ST_READY;
    s->ac = NULL;
    s->state = ST_DOWN;
    s->inflight = 0;
    s->hs_left = 0;
    snprintf(s->errstr, sizeof s->errstr, "%s", why && *why ? why : "unknown error");

    st_job_t *end = s->send ? s->send->next : NULL;
    size_t requeued = 0;
    for (st_job_t *j = s->head; j != end; j = j->next) {
        if (j->nsent == 0 && j->nanswered == 0)
            continue;
        if (j->kind == JOB_LOAD) {
            j->nsent = j->nanswered; /* its answered replies were consumed */
        } else {
            j->nsent = j->nanswered = 0;
            st_job_clear_errors(j);
        }
        requeued++;
    }
    s->send = s->head;
    s->resent_jobs += requeued;

    uint64_t supp = 0;
    if (was_up) {
        s->attempts = 0;
        s->down_since = uv_now(s->loop);
        if (vg_ratelimit_ok(&s->rl_conn, &supp))
            st_log(s, VG_LOG_WARN,
                   "redis %s: connection lost: %s; %zu jobs pending (%zu re-queued), "
                   "reconnecting%s",
                   s->where, s->errstr, s->njobs, requeued,
                   supp ? " (similar messages were suppressed)" : "");
    } else {
        s->attempts++;
        s->connect_failures++;
        if (vg_ratelimit_ok(&s->rl_conn, &supp))
            st_log(s, VG_LOG_WARN, "redis %s: cannot connect: %s (attempt %u, %zu jobs pending%s)",
                   s->where, s->errstr, s->attempts, s->njobs,
                   supp ? "; similar messages were suppressed" : "");
    }
    st_schedule(s);
    if (was_up && s->on_up)
        s->on_up(s->ud, 0);
}

/* Drops the live connection ourselves (error reply that needs a reconnect). */
static void st_abort(vg_store_t *s, const char *why)
{
    redisAsyncContext *ac = s->ac;
    st_lost(s, why);
    redisAsyncFree(ac); /* deferred by hiredis when called from its callback */
}

static void st_ready(vg_store_t *s)
{
    s->state = ST_READY;
    int restore = !s->rec_zadd && s->hs_major >= 7 && !s->hs_restore_denied;
    if (restore != s->rec_restore || !s->ever_up)
        st_log(s, VG_LOG_INFO, "redis %s: lists written as %s", s->where,
               restore ? "one RESTORE of a listpack each (Redis >= 7)"
               : s->rec_zadd ? "DEL/ZADD (redis.rec_write = zadd)"
               : s->hs_restore_denied == 2 ? "DEL/ZADD (this server has no RESTORE command)"
               : s->hs_restore_denied ? "DEL/ZADD (this user may not RESTORE)"
                                      : "DEL/ZADD (Redis < 7)");
    s->rec_restore = restore;
    if (s->streak) {
        st_log(s, VG_LOG_DEBUG, "redis %s: reconnected; server was not writable (%u times)",
               s->where, s->streak);
    } else if (s->ever_up) {
        s->reconnects++;
        st_log(s, VG_LOG_INFO,
               "redis %s: reconnected (down %.1f s, %u failed attempts); re-sending %zu pending "
               "jobs",
               s->where, (double)(uv_now(s->loop) - s->down_since) / 1000.0, s->attempts,
               s->njobs);
    } else {
        st_log(s, VG_LOG_INFO, "redis %s: connected (db %d, %u failed attempts before)", s->where,
               s->db, s->attempts);
    }
    if (s->ever_up && !s->streak)
        s->rl_conn.window_start = 0; /* recovered: the next trouble is reported at once */
    s->ever_up = 1;
    s->attempts = 0;
    if (!s->cl)
        uv_timer_stop(&s->timer); /* the handshake deadline (in cluster mode: the tick, which goes on) */
    if (s->on_up)
        s->on_up(s->ud, 1);
    if (!s->closing)
        st_pump(s);
}

static void st_on_hs(redisAsyncContext *ac, void *r, void *priv)
{
    vg_store_t *s = ac->data;
    redisReply *reply = r;
    if (!reply || s->closing || s->fatal || ac != s->ac || s->state != ST_HANDSHAKE)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof why, "%s: %s", (const char *)priv, reply->str);
        s->errors++;
        st_abort(s, why);
        return;
    }
    if (--s->hs_left == 0)
        st_ready(s);
}

/* Tags of the checks' replies: INFO cluster, ACL WHOAMI, INFO server (the
 * version), ACL DRYRUN of RESTORE (may lists be restored?), COMMAND INFO
 * RESTORE (is it there: rename-command may have taken it away), or
 * PROBE_ACL + i for ACL DRYRUN check i. */
#define PROBE_INFO ((uintptr_t)0)
#define PROBE_WHOAMI ((uintptr_t)1)
#define PROBE_SERVER ((uintptr_t)2)
#define PROBE_RESTORE ((uintptr_t)3)
#define PROBE_RESTORE_CMD ((uintptr_t)4)
#define PROBE_ACL ((uintptr_t)5)

/* What the version and the RESTORE check say of the list writes. */
static void st_probe_lists(vg_store_t *s, uintptr_t tag, const redisReply *reply)
{
    if (tag == PROBE_SERVER && reply->type == REDIS_REPLY_STRING) {
        const char *v = strstr(reply->str, "redis_version:");
        s->hs_major = v ? atoi(v + 14) : 0;
    } else if (tag == PROBE_RESTORE && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "OK") != 0) {
        s->hs_restore_denied = 1;
    } else if (tag == PROBE_RESTORE_CMD && reply->type == REDIS_REPLY_ARRAY &&
               (reply->elements == 0 || reply->element[0]->type == REDIS_REPLY_NIL)) {
        s->hs_restore_denied = 2;
    }
}

/* A reply to one of the connect-time checks (store.h): an error means the
 * server has no such check or we may not run it — nothing to learn; a
 * refusal it states stops the store.  WHOAMI's user name starts the ACL
 * DRYRUN checks, which join the handshake. */
static void st_on_probe(redisAsyncContext *ac, void *r, void *priv)
{
    vg_store_t *s = ac->data;
    redisReply *reply = r;
    uintptr_t tag = (uintptr_t)priv;
    if (!reply || s->closing || s->fatal || ac != s->ac || s->state != ST_HANDSHAKE)
        return;
    if (tag == PROBE_SERVER || tag == PROBE_RESTORE || tag == PROBE_RESTORE_CMD) {
        st_probe_lists(s, tag, reply);
    } else if (tag == PROBE_WHOAMI && reply->type == REDIS_REPLY_STRING) {
        vg_store_probe_t pr;
        for (size_t i = 0; i <= vg_store_probe_count_(); i++) { /* the last: RESTORE, not fatal */
            uintptr_t t = i < vg_store_probe_count_() ? PROBE_ACL + i : PROBE_RESTORE;
            if (vg_store_probe_(s, i, reply->str, &pr) &&
                redisAsyncCommandArgv(ac, st_on_probe, (void *)t, pr.argc, pr.argv, pr.lens) == REDIS_OK) {
                s->hs_left++;
                s->commands++;
            }
        }
    } else if (tag != PROBE_WHOAMI) {
        const char *why = vg_store_probe_refusal_(reply, tag == PROBE_INFO);
        if (why) {
            vg_store_probe_t pr;
            if (tag != PROBE_INFO && vg_store_probe_(s, tag - PROBE_ACL, "", &pr))
                st_refuse(s, pr.what, why);
            else
                st_refuse(s, "the connection", why);
            return;
        }
    }
    if (--s->hs_left == 0)
        st_ready(s);
}

static void st_on_connect(const redisAsyncContext *ac, int status)
{
    vg_store_t *s = ac->data;
    if (s->closing || ac != s->ac || status == REDIS_OK)
        return;
    /* hiredis frees the context after this callback. */
    st_lost(s, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
}

static void st_on_disconnect(const redisAsyncContext *ac, int status)
{
    vg_store_t *s = ac->data;
    (void)status;
    if (s->closing || ac != s->ac)
        return;
    st_lost(s, ac->c.errstr[0] ? ac->c.errstr : "connection closed");
}

static void st_connect(vg_store_t *s)
{
    redisAsyncContext *ac =
        s->sock ? redisAsyncConnectUnix(s->sock) : redisAsyncConnect(s->host, s->port);
    s->state = ST_HANDSHAKE; /* so that a failure below counts as a connect failure */
    if (!ac) {
        st_lost(s, "out of memory");
        return;
    }
    if (ac->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        st_lost(s, why);
        return;
    }
    ac->data = s;
    if (vg_hiredis_uv_attach(ac, s->loop) != 0) {
        redisAsyncFree(ac);
        st_lost(s, "cannot attach to the loop");
        return;
    }
    s->ac = ac;
    redisAsyncSetConnectCallback(ac, st_on_connect);
    redisAsyncSetDisconnectCallback(ac, st_on_disconnect);

    s->hs_left = 0;
    if (s->pass) {
        const char *argv[2] = {"AUTH", s->pass};
        size_t lens[2] = {4, strlen(s->pass)};
        if (redisAsyncCommandArgv(ac, st_on_hs, (void *)"AUTH", 2, argv, lens) == REDIS_OK)
            s->hs_left++;
    }
    if (s->db) {
        char db[16];
        int n = snprintf(db, sizeof db, "%d", s->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        if (redisAsyncCommandArgv(ac, st_on_hs, (void *)"SELECT", 2, argv, lens) == REDIS_OK)
            s->hs_left++;
    }
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (redisAsyncCommandArgv(ac, st_on_hs, (void *)"PING", 1, argv, lens) == REDIS_OK)
        s->hs_left++;
    /* the checks (store.h): their replies are read by st_on_probe */
    const char *info[2] = {"INFO", "cluster"}, *whoami[2] = {"ACL", "WHOAMI"}, *server[2] = {"INFO", "server"};
    size_t info_l[2] = {4, 7}, whoami_l[2] = {3, 6}, server_l[2] = {4, 6};
    s->hs_major = 0;
    s->hs_restore_denied = 0;
    if (redisAsyncCommandArgv(ac, st_on_probe, (void *)PROBE_INFO, 2, info, info_l) == REDIS_OK)
        s->hs_left++;
    if (redisAsyncCommandArgv(ac, st_on_probe, (void *)PROBE_SERVER, 2, server, server_l) == REDIS_OK)
        s->hs_left++;
    const char *cmdinfo[3] = {"COMMAND", "INFO", "RESTORE"};
    size_t cmdinfo_l[3] = {7, 4, 7};
    if (redisAsyncCommandArgv(ac, st_on_probe, (void *)PROBE_RESTORE_CMD, 3, cmdinfo, cmdinfo_l) == REDIS_OK)
        s->hs_left++;
    if (redisAsyncCommandArgv(ac, st_on_probe, (void *)PROBE_WHOAMI, 2, whoami, whoami_l) == REDIS_OK)
        s->hs_left++;
    s->commands += (uint64_t)s->hs_left;
    uv_timer_start(&s->timer, st_on_timer, (uint64_t)s->connect_timeout, 0);
}

/* ---- replies ------------------------------------------------------------------------------ */

/* "ZADD hist:u1": what command idx of j was. */
static void st_describe(const st_job_t *j, uint32_t idx, char *out, size_t outlen)
{
    vg_resp_describe(j->buf + j->off[idx], j->off[idx + 1] - j->off[idx], out, outlen);
}

/* A data error of command idx of j: remembered for the per-event results
 * of a history job, logged (rate-limited). */
static void st_cmd_error(vg_store_t *s, st_job_t *j, uint32_t idx, const char *msg)
{
    s->errors++;
    if (j->ecb && !j->cerr_lost) {
        if (!j->cerr)
            j->cerr = calloc(j->ncmds, sizeof *j->cerr);
        if (j->cerr)
            j->cerr[idx] = st_strdup(msg);
        if (!j->cerr || !j->cerr[idx]) { /* out of memory: every event of the job counts as refused */
            st_job_clear_errors(j);
            j->cerr_lost = 1;
        }
    }
    j->status = VG_EREDIS;
    uint64_t supp = 0;
    if (!vg_ratelimit_ok(&s->rl_cmd, &supp))
        return;
    char what[420];
    st_describe(j, idx, what, sizeof what);
    st_log(s, VG_LOG_ERROR, "redis %s: error on %s: %s (not retried%s)", s->where, what, msg,
           supp ? "; similar errors were suppressed" : "");
}

/* Reply idx of a read-back job: hist:<user> (0) or rm:<user> (1). */
static void st_rows(vg_store_t *s, st_job_t *j, uint32_t idx, const redisReply *r)
{
    size_t m;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        j->status = VG_EREDIS;
    else if (st_pairs(s, r, &m))
        j->status = VG_ENOMEM;
    else
        j->rows(j->ud, (int)idx, s->litems, s->llens, s->lts, m);
}

/* The server is not ours to write (store.h, "a refusal"): stop for good and
 * tell the owner, once.  what = the command (and key) it refused. */
static void st_refuse(vg_store_t *s, const char *what, const char *msg)
{
    if (s->fatal)
        return;
    s->fatal = 1;
    char text[1024];
    snprintf(text, sizeof text,
             "redis %s refused %.340s: %.300s; the server is not ours to write, so nothing more is written",
             s->where, what, msg);
    size_t n = strlen(text) < sizeof s->errstr ? strlen(text) : sizeof s->errstr - 1;
    memcpy(s->errstr, text, n);
    s->errstr[n] = '\0';
    st_log(s, VG_LOG_ERROR, "%s", text);
    uv_timer_stop(&s->timer);
    if (s->on_fatal)
        s->on_fatal(s->ud, text);
}

/* The class of reply r (reply.c), as this store reads it: in cluster mode
 * CROSSSLOT is one command's error (a user id without a usable hash tag),
 * not a refusal of the whole server. */
static int st_classify(const vg_store_t *s, const redisReply *r, const char **msg)
{
    int cl = vg_store_classify_(r, s->pass != NULL, msg);
    if (cl == VG_RC_REFUSED && s->cluster && strncmp(*msg, "CROSSSLOT", 9) == 0)
        cl = VG_RC_DATA;
    return cl;
}

/* READONLY is transient until it has lasted readonly_timeout since the last
 * good reply, then a refusal; any other class is returned as it is. */
static int st_readonly(vg_store_t *s, int cl)
{
    if (cl != VG_RC_READONLY)
        return cl;
    uint64_t now = uv_now(s->loop) + 1; /* + 1: 0 means "none" */
    if (!s->ro_since)
        s->ro_since = now;
    return now - s->ro_since >= (uint64_t)s->readonly_timeout ? VG_RC_REFUSED : VG_RC_TRANSIENT;
}

/* The part of a reply's handling that server-state errors and refusals
 * share between write and load replies.  Returns 1 when it ends the reply's
 * handling (the connection was dropped, or the store refused), else 0.  (In
 * cluster mode the cluster layer waits out server-state errors itself.) */
static int st_server_error(vg_store_t *s, const st_job_t *j, uint32_t idx, int cl, const char *msg)
{
    cl = st_readonly(s, cl);
    if (cl == VG_RC_TRANSIENT && s->cl) /* the layer waited out the others: NOAUTH though we AUTH'ed */
        cl = VG_RC_REFUSED;
    if (cl == VG_RC_TRANSIENT) {
        char why[256];
        s->errors++;
        snprintf(why, sizeof why, "server not writable: %s", msg);
        s->streak++;
        st_abort(s, why);
        return 1;
    }
    if (cl == VG_RC_REFUSED) {
        char what[420];
        s->errors++;
        st_describe(j, idx, what, sizeof what);
        st_refuse(s, what, msg);
        return 1;
    }
    return 0;
}

/* A reply that was not a server-state error: the server takes commands. */
static void st_good_reply(vg_store_t *s)
{
    s->ro_since = 0;
    if (!s->streak)
        return;
    st_log(s, VG_LOG_INFO, "redis %s: server takes writes again after %u retries", s->where,
           s->streak);
    s->streak = 0;
    s->rl_conn.window_start = 0;
}

/* The reply to command idx of write job j. */
static void st_write_reply(vg_store_t *s, st_job_t *j, uint32_t idx, const redisReply *reply)
{
    s->replies++;
    s->inflight--;
    j->nanswered++;
    const char *msg = NULL;
    int cl = st_classify(s, reply, &msg);
    if (st_server_error(s, j, idx, cl, msg))
        return;
    if (j->replies)
        j->replies(j->ud, idx, reply);
    if (cl == VG_RC_DATA)
        st_cmd_error(s, j, idx, msg);
    else if (j->rows)
        st_rows(s, j, idx, reply);
    else if (j->list && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        j->status = VG_ESTALE; /* Redis holds a list of a newer history */
    if (j->nanswered == j->ncmds) {
        st_good_reply(s); /* a whole job went through */
        st_complete(s, j);
        if (s->closing)
            return;
    }
    st_pump(s);
}

static void st_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    vg_store_t *s = ac->data;
    redisReply *reply = r;
    if (!reply || s->closing || s->fatal || ac != s->ac)
        return;
    st_job_t *j = priv;
    st_write_reply(s, j, j->nanswered, reply);
}

/* ---- load --------------------------------------------------------------------------------- */

static int st_load_users_round(vg_store_t *s, st_load_t *L);

/* The MARKS round: ZRANGEBYSCORE <p>vaegan:forgotten (since +inf WITHSCORES. */
static int st_load_marks_round(vg_store_t *s, st_load_t *L)
{
    st_job_t *j = &L->job;
    size_t need = VG_RESP_HDR_OVH + 5 * (VG_RESP_ARG_OVH + VG_RESP_NUM_MAX) + s->plen + 40;
    if (vg_store_grow_((void **)&j->buf, &L->bufcap, need, 1) ||
        vg_store_grow_((void **)&j->off, &L->cmdcap, 2, sizeof(uint32_t)))
        return VG_ENOMEM;
    char since[VG_RESP_NUM_MAX + 2] = "-inf";
    if (isfinite(L->marks_since)) { /* exclusive: "(" ts */
        since[0] = '(';
        since[1 + vg_resp_fmt_num(since + 1, L->marks_since)] = '\0';
    }
    char *p = j->buf;
    p = vg_resp_hdr(p, 5);
    p = vg_resp_str(p, "ZRANGEBYSCORE");
    p = vg_resp_arg3(p, s->prefix, s->plen, "vaegan:forgotten", 16, NULL, 0);
    p = vg_resp_str(p, since);
    p = vg_resp_str(p, "+inf");
    p = vg_resp_str(p, "WITHSCORES");
    j->off[0] = 0;
    j->off[1] = (uint32_t)(p - j->buf);
    j->ncmds = 1;
    j->nsent = j->nanswered = 0;
    L->phase = LOAD_MARKS;
    return 0;
}

/* The COUNT round: ZCARD <p>vaegan:users (of each shard in cluster mode). */
static int st_load_count_round(vg_store_t *s, st_load_t *L)
{
    st_job_t *j = &L->job;
    uint32_t n = s->cluster ? VG_STORE_USER_SHARDS : 1;
    size_t need = n * (VG_RESP_HDR_OVH + 2 * VG_RESP_ARG_OVH + s->plen + 40);
    if (vg_store_grow_((void **)&j->buf, &L->bufcap, need, 1) ||
        vg_store_grow_((void **)&j->off, &L->cmdcap, n + 1, sizeof(uint32_t)))
        return VG_ENOMEM;
    char *p = j->buf;
    for (uint32_t k = 0; k < n; k++) {
        j->off[k] = (uint32_t)(p - j->buf);
        p = vg_resp_hdr(p, 2);
        p = vg_resp_str(p, "ZCARD");
        p = vg_store_users_key_(s, p, k);
    }
    j->off[n] = (uint32_t)(p - j->buf);
    j->ncmds = n;
    j->nsent = j->nanswered = 0;
    L->count = 0;
    L->phase = LOAD_COUNT;
    return 0;
}

/* The round after the marks (or the first without them): the count if asked for, else the users. */
static int st_load_next_round(vg_store_t *s, st_load_t *L)
{
    return L->on_count ? st_load_count_round(s, L) : st_load_users_round(s, L);
}

/* The USERS round: ZRANGE <p>vaegan:users rank rank+CHUNK-1. */
static int st_load_users_round(vg_store_t *s, st_load_t *L)
{
    st_job_t *j = &L->job;
    size_t need = 4 * VG_RESP_HDR_OVH + 4 * (VG_RESP_ARG_OVH + VG_RESP_NUM_MAX) + s->plen + 40;
    if (vg_store_grow_((void **)&j->buf, &L->bufcap, need, 1) ||
        vg_store_grow_((void **)&j->off, &L->cmdcap, 2, sizeof(uint32_t)))
        return VG_ENOMEM;
    char *p = j->buf;
    p = vg_resp_hdr(p, 4);
    p = vg_resp_str(p, "ZRANGE");
    p = vg_store_users_key_(s, p, L->shard);
    p = vg_resp_num(p, (double)L->rank);
    p = vg_resp_num(p, (double)(L->rank + ST_LOAD_CHUNK - 1));
    j->off[0] = 0;
    j->off[1] = (uint32_t)(p - j->buf);
    j->ncmds = 1;
    j->nsent = j->nanswered = 0;
    L->phase = LOAD_USERS;
    return 0;
}

/* Builds the HISTS round from the users reply. */
static int st_load_hists_round(vg_store_t *s, st_load_t *L, const redisReply *users)
{
    st_job_t *j = &L->job;
    size_t need = 0, nu = 0;
    const size_t per_user = s->ordered ? 2 : 1; /* hist:<user>, and rm:<user> when removals exist */
    for (size_t i = 0; i < users->elements; i++) {
        const redisReply *u = users->element[i];
        if (u->type != REDIS_REPLY_STRING)
            continue;
        need += per_user * (VG_RESP_HDR_OVH + 3 * VG_RESP_ARG_OVH + 6 + 2 + 10 + s->plen + 5 + u->len + 2);
        nu++;
    }
    if (need > UINT32_MAX)
        return VG_ENOMEM;
    if (vg_store_grow_((void **)&j->buf, &L->bufcap, need + 1, 1) ||
        vg_store_grow_((void **)&j->off, &L->cmdcap, per_user * nu + 1, sizeof(uint32_t)))
        return VG_ENOMEM;
    free(L->uoff);
    free(L->ulen);
    L->uoff = malloc((nu + 1) * sizeof(uint32_t));
    L->ulen = malloc((nu + 1) * sizeof(uint32_t));
    if (!L->uoff || !L->ulen)
        return VG_ENOMEM;
    char *p = j->buf;
    uint32_t k = 0, c = 0;
    for (size_t i = 0; i < users->elements; i++) {
        const redisReply *u = users->element[i];
        if (u->type != REDIS_REPLY_STRING)
            continue;
        for (size_t r = 0; r < per_user; r++) {
            j->off[c++] = (uint32_t)(p - j->buf);
            p = vg_resp_hdr(p, 5);
            p = vg_resp_str(p, "ZRANGE");
            char *key = vg_store_ukey_(s, p, r ? "rm:" : "hist:", r ? 3 : 5, u->str, u->len);
            if (r == 0) /* the user is the key's tail (before "}" in cluster mode) */
                L->uoff[k] = (uint32_t)(key - 2 - (s->cluster != 0) - u->len - j->buf);
            p = vg_resp_str(key, "0");
            p = vg_resp_str(p, "-1");
            p = vg_resp_str(p, "WITHSCORES");
        }
        L->ulen[k] = (uint32_t)u->len;
        k++;
    }
    j->off[c] = (uint32_t)(p - j->buf);
    j->ncmds = c;
    j->nsent = j->nanswered = 0;
    L->phase = LOAD_HISTS;
    return 0;
}

static void st_load_finish(vg_store_t *s, st_load_t *L, int status)
{
    if (status == 0 && L->failed)
        status = VG_EREDIS;
    L->job.status = status;
    st_complete(s, &L->job);
}

/* The (member, score) pairs of a ZRANGE ... WITHSCORES reply h (an array
 * of even length) into s->litems/llens/lts[0..*m), pointing into h.
 * Returns 0 or VG_ENOMEM. */
static int st_pairs(vg_store_t *s, const redisReply *h, size_t *m)
{
    size_t n = h->elements / 2;
    if (n > s->lcap) {
        size_t c = s->lcap;
        if (vg_store_grow_((void **)&s->litems, &c, n, sizeof *s->litems))
            return VG_ENOMEM;
        c = s->lcap;
        if (vg_store_grow_((void **)&s->llens, &c, n, sizeof *s->llens))
            return VG_ENOMEM;
        c = s->lcap;
        if (vg_store_grow_((void **)&s->lts, &c, n, sizeof *s->lts))
            return VG_ENOMEM;
        s->lcap = c;
    }
    *m = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *it = h->element[2 * i], *sc = h->element[2 * i + 1];
        if (it->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING)
            continue;
        s->litems[*m] = it->str;
        s->llens[*m] = it->len;
        s->lts[*m] = strtod(sc->str, NULL);
        (*m)++;
    }
    return 0;
}

/* Delivers reply idx of a HISTS round: a user's hist:<user>, or its
 * rm:<user> right after it when removals exist.  Returns 0 or VG_ENOMEM. */
static int st_load_deliver(vg_store_t *s, st_load_t *L, uint32_t idx, const redisReply *h)
{
    int removals = s->ordered && idx % 2;
    if (s->ordered)
        idx /= 2;
    const char *user = L->job.buf + L->uoff[idx];
    size_t ulen = L->ulen[idx];
    const char *msg = NULL;
    if (vg_store_classify_(h, s->pass != NULL, &msg) != VG_RC_OK || h->type != REDIS_REPLY_ARRAY ||
        h->elements % 2) {
        uint64_t supp = 0;
        L->failed = 1;
        if (h->type == REDIS_REPLY_ERROR)
            s->errors++;
        if (vg_ratelimit_ok(&s->rl_load, &supp))
            st_log(s, VG_LOG_ERROR, "redis %s: load: cannot read %s%s:%.*s: %s (user skipped%s)",
                   s->where, s->prefix ? s->prefix : "", removals ? "rm" : "hist", (int)(ulen > 128 ? 128 : ulen), user,
                   msg ? msg : "unexpected reply",
                   supp ? "; similar errors were suppressed" : "");
        return 0;
    }
    size_t m;
    if (st_pairs(s, h, &m))
        return VG_ENOMEM;
    L->on_user(L->job.ud, user, ulen, removals, s->litems, s->llens, s->lts, m);
    return 0;
}

/* After a chunk of users (more: it was a full one): the next chunk, the
 * next shard's first (cluster mode), or the end of the load. */
static void st_load_next_chunk(vg_store_t *s, st_load_t *L, int more)
{
    if (more) {
        L->rank += ST_LOAD_CHUNK;
    } else if (s->cluster && L->shard + 1 < VG_STORE_USER_SHARDS) {
        L->shard++;
        L->rank = 0;
    } else {
        st_load_finish(s, L, 0);
        return;
    }
    int rc = st_load_users_round(s, L);
    if (rc)
        st_load_finish(s, L, rc);
}

/* The reply to command idx of the load's round (nanswered counts it already). */
static void st_load_reply(vg_store_t *s, st_load_t *L, uint32_t idx, const redisReply *reply)
{
    const char *msg = NULL;
    int cl = st_classify(s, reply, &msg);
    if (st_server_error(s, &L->job, idx, cl, msg))
        return;
    st_good_reply(s);
    if (L->phase == LOAD_MARKS) {
        if (cl != VG_RC_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
            if (cl != VG_RC_OK)
                s->errors++;
            st_log(s, VG_LOG_ERROR, "redis %s: load: cannot read %svaegan:forgotten: %s", s->where,
                   s->prefix ? s->prefix : "", msg ? msg : "unexpected reply");
            st_load_finish(s, L, VG_EREDIS);
        } else {
            for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                const redisReply *m = reply->element[i], *sc = reply->element[i + 1];
                if (m->type == REDIS_REPLY_STRING && sc->type == REDIS_REPLY_STRING)
                    L->on_mark(L->job.ud, m->str, m->len, strtod(sc->str, NULL));
            }
            int rc = s->closing || !L->on_user ? 0 : st_load_next_round(s, L);
            if (rc || (!L->on_user && !s->closing))
                st_load_finish(s, L, rc);
        }
    } else if (L->phase == LOAD_COUNT) {
        /* an error here is the users round's to report (it reads the same keys) */
        if (cl == VG_RC_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0)
            L->count += (uint64_t)reply->integer;
        else if (cl != VG_RC_OK)
            s->errors++;
        if (L->job.nanswered == L->job.ncmds) {
            L->on_count(L->job.ud, L->count);
            int rc = s->closing ? 0 : st_load_users_round(s, L);
            if (rc)
                st_load_finish(s, L, rc);
        }
    } else if (L->phase == LOAD_USERS) {
        if (cl != VG_RC_OK || reply->type != REDIS_REPLY_ARRAY) {
            if (cl != VG_RC_OK)
                s->errors++;
            st_log(s, VG_LOG_ERROR, "redis %s: load: cannot read %svaegan:users: %s", s->where,
                   s->prefix ? s->prefix : "", msg ? msg : "unexpected reply");
            st_load_finish(s, L, VG_EREDIS);
        } else if (reply->elements == 0) {
            st_load_next_chunk(s, L, 0);
        } else {
            L->chunk_n = reply->elements;
            int rc = st_load_hists_round(s, L, reply);
            if (rc)
                st_load_finish(s, L, rc);
            else if (L->job.ncmds == 0) /* no string member: nothing to read */
                st_load_next_chunk(s, L, L->chunk_n == ST_LOAD_CHUNK);
        }
    } else {
        int rc = st_load_deliver(s, L, idx, reply);
        if (s->closing)
            return;
        if (rc && !L->rc)
            L->rc = rc; /* the rest of the round is still answered; finish after it */
        if (L->job.nanswered == L->job.ncmds) {
            if (L->rc)
                st_load_finish(s, L, L->rc);
            else
                st_load_next_chunk(s, L, L->chunk_n == ST_LOAD_CHUNK);
        }
    }
    if (!s->closing)
        st_pump(s);
}

static void st_on_load_reply(redisAsyncContext *ac, void *r, void *priv)
{
    vg_store_t *s = ac->data;
    redisReply *reply = r;
    if (!reply || s->closing || s->fatal || ac != s->ac)
        return;
    st_load_t *L = priv;
    s->replies++;
    s->inflight--;
    uint32_t idx = L->job.nanswered++;
    st_load_reply(s, L, idx, reply);
}

/* ---- cluster mode (store_cluster.c calls these) -------------------------------------------- */

static void st_unit_reply(vg_store_unit_t *u, const redisReply *r)
{
    vg_store_t *s = u->s;
    if (s->closing || s->fatal)
        return;
    st_job_t *j = u->j;
    if (j->kind == JOB_LOAD) {
        s->replies++;
        s->inflight--;
        j->nanswered++;
        st_load_reply(s, (st_load_t *)j, u->idx, r);
    } else {
        st_write_reply(s, j, u->idx, r);
    }
}

static void st_cl_up(vg_store_t *s, int up)
{
    if (s->closing || s->fatal)
        return;
    if (up == (s->state == ST_READY)) {
        st_pump(s); /* what a failed submission left behind */
        return;
    }
    if (!up) {
        s->state = ST_DOWN;
        s->down_since = uv_now(s->loop);
        uint64_t supp = 0;
        if (vg_ratelimit_ok(&s->rl_conn, &supp)) /* a flapping cluster must not flood the log */
            st_log(s, VG_LOG_WARN, "redis %s: some slots have no reachable master; %zu jobs pending%s", s->where,
                   s->njobs, supp ? " (similar messages were suppressed)" : "");
        if (s->on_up)
            s->on_up(s->ud, 0);
        return;
    }
    st_ready(s);
}

/* ---- public API --------------------------------------------------------------------------- */

static void st_on_closed(uv_handle_t *h);

static int st_cfg_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return VG_EINVAL;
}

static void st_free_mem(vg_store_t *s)
{
    free(s->host);
    free(s->sock);
    free(s->pass);
    free(s->prefix);
    free(s->sbuf);
    free(s->zorder);
    free(s->zbuf);
    free(s->soff);
    free(s->sev);
    free(s->smap);
    free(s->pev);
    free(s->litems);
    free(s->llens);
    free(s->lts);
    free(s);
}

int vg_store_init(vg_store_t **out, uv_loop_t *loop, const vg_store_cfg_t *cfg, char *err,
                  size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !loop || !cfg)
        return st_cfg_err(err, errlen, "store: NULL argument");
    *out = NULL;
    int sock = cfg->socket && *cfg->socket;
    if (!sock && (cfg->port < 0 || cfg->port > 65535))
        return st_cfg_err(err, errlen, "redis.port must be 0..65535");
    if (cfg->db < 0)
        return st_cfg_err(err, errlen, "redis.db must be >= 0");
    if (cfg->rec_ttl_s < 0)
        return st_cfg_err(err, errlen, "serve.rec_ttl_s must be >= 0");
    if (cfg->max_inflight < 0)
        return st_cfg_err(err, errlen, "store: max_inflight must be >= 0");
    if (cfg->connect_timeout_ms < 0)
        return st_cfg_err(err, errlen, "store: connect_timeout_ms must be >= 0");
    if (cfg->cluster && (sock || cfg->db))
        return st_cfg_err(err, errlen, "redis.cluster = yes takes redis.host and redis.port (a node of the cluster); "
                                       "redis.socket and redis.db are not for a cluster");
    if (cfg->cluster && cfg->prefix && strchr(cfg->prefix, '{'))
        return st_cfg_err(err, errlen, "redis.prefix may not hold '{' with redis.cluster = yes (the keys' hash "
                                       "tags are the users)");
    int rmin = cfg->reconnect_min_ms ? cfg->reconnect_min_ms : ST_DEF_RMIN;
    int rmax = cfg->reconnect_max_ms ? cfg->reconnect_max_ms : ST_DEF_RMAX;
    if (rmin < 1 || rmax < rmin)
        return st_cfg_err(err, errlen, "store: need 1 <= reconnect_min_ms <= reconnect_max_ms");

    vg_store_t *s = calloc(1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->rl_conn = s->rl_cmd = s->rl_load = (vg_ratelimit_t)VG_RATELIMIT_INIT(ST_RL_MS / 1000.0, 1);
    s->loop = loop;
    s->port = cfg->port ? cfg->port : 6379;
    s->db = cfg->db;
    s->history_max = cfg->history_max > 0 ? cfg->history_max : 0;
    s->ordered = cfg->removals != 0;
    s->rec_zadd = cfg->rec_zadd != 0;
    s->cluster = cfg->cluster != 0;
    s->rec_ttl_s = cfg->rec_ttl_s;
    s->max_inflight = cfg->max_inflight ? cfg->max_inflight : ST_DEF_INFLIGHT;
    s->rmin = rmin;
    s->rmax = rmax;
    s->connect_timeout = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : ST_DEF_CONNECT_TIMEOUT;
    s->on_up = cfg->on_up;
    s->on_fatal = cfg->on_fatal;
    s->readonly_timeout = cfg->readonly_timeout_ms > 0 ? cfg->readonly_timeout_ms : ST_DEF_READONLY_MS;
    s->log = cfg->log;
    s->ud = cfg->ud;
    if (sock) {
        s->sock = st_strdup(cfg->socket);
    } else {
        s->host = st_strdup(cfg->host && *cfg->host ? cfg->host : "127.0.0.1");
    }
    s->pass = st_strdup(cfg->password);
    s->prefix = st_strdup(cfg->prefix);
    if ((sock && !s->sock) || (!sock && !s->host) ||
        (cfg->password && *cfg->password && !s->pass) ||
        (cfg->prefix && *cfg->prefix && !s->prefix)) {
        st_free_mem(s);
        return VG_ENOMEM;
    }
    s->plen = s->prefix ? strlen(s->prefix) : 0;
    snprintf(s->rank_stop, sizeof s->rank_stop, "-%lld", (long long)s->history_max + 1);
    snprintf(s->ttl, sizeof s->ttl, "%d", s->rec_ttl_s);
    if (sock)
        snprintf(s->where, sizeof s->where, "unix:%s", s->sock);
    else
        snprintf(s->where, sizeof s->where, "%s%s:%d", s->cluster ? "cluster " : "", s->host, s->port);

    /* hiredis 0.14 writes with write(2): a peer that closed would kill the
     * process with SIGPIPE on the next write. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGPIPE, &sa, NULL) == 0)
            st_log(s, VG_LOG_DEBUG, "store: SIGPIPE was at its default; now ignored");
    }

    int rc = uv_timer_init(loop, &s->timer);
    if (rc) {
        st_free_mem(s);
        if (err && errlen)
            snprintf(err, errlen, "uv_timer_init: %s", uv_strerror(rc));
        return VG_EIO;
    }
    s->timer.data = s;
    if (s->cluster) {
        if ((rc = vg_store_cl_init_(s, cfg, st_unit_reply, st_cl_up, err, errlen))) {
            uv_close((uv_handle_t *)&s->timer, st_on_closed); /* the caller's loop frees s */
            return rc;
        }
    } else {
        st_schedule(s); /* connects from the loop at once */
    }
    *out = s;
    return 0;
}


int vg_store_load(vg_store_t *s, const vg_store_loader_t *ld)
{
    if (!s || s->closing || !ld || (!ld->on_user && !ld->on_mark))
        return VG_EINVAL;
    st_load_t *L = calloc(1, sizeof *L);
    if (!L)
        return VG_ENOMEM;
    L->job.kind = JOB_LOAD;
    L->job.cb = ld->on_done;
    L->job.ud = ld->ud;
    L->on_user = ld->on_user;
    L->on_mark = ld->on_mark;
    L->on_count = ld->on_count;
    L->marks_since = ld->marks_since;
    if (L->on_mark ? st_load_marks_round(s, L) : st_load_next_round(s, L)) {
        st_job_free(&L->job);
        return VG_ENOMEM;
    }
    L->job.bytes = sizeof *L;
    st_enqueue(s, &L->job);
    return 0;
}

int vg_store_is_up(const vg_store_t *s) { return s && s->state == ST_READY && !s->closing; }

size_t vg_store_pending(const vg_store_t *s) { return s ? s->njobs : 0; }

void vg_store_stats(const vg_store_t *s, vg_store_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (!s)
        return;
    st->commands = s->commands;
    st->replies = s->replies;
    st->errors = s->errors;
    st->reconnects = s->reconnects;
    st->connect_failures = s->connect_failures;
    st->resent_jobs = s->resent_jobs;
    st->jobs_done = s->jobs_done;
    st->pending = s->njobs;
    st->pending_bytes = s->pending_bytes;
    st->inflight = s->inflight;
    st->up = vg_store_is_up(s);
    st->refused = s->fatal;
    if (s->cl) {
        vg_cluster_stats_t cs;
        vg_cluster_stats(s->cl, &cs);
        st->redirects = cs.moved + cs.ask;
        st->nodes_lost = cs.lost;
        st->retries = cs.retries;
    }
}

const char *vg_store_errstr(const vg_store_t *s) { return s ? s->errstr : ""; }

static void st_on_closed(uv_handle_t *h) { st_free_mem(h->data); }

unsigned vg_store_user_shard_(const char *user, size_t len)
{
    return vg_cluster_crc16(user, len) % VG_STORE_USER_SHARDS;
}

static void st_close(vg_store_t *s, int cancel)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    s->state = ST_DOWN;
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        redisAsyncFree(ac); /* its callbacks see s->closing and return */
    }
    if (s->cl)
        vg_store_cl_close_(s); /* no unit callback follows */
    while (s->head) {
        st_job_t *j = s->head;
        s->head = j->next;
        if (cancel && j->ecb)
            j->ecb(j->ud, VG_EAGAIN, NULL, j->n_ev);
        else if (cancel && j->cb)
            j->cb(j->ud, VG_EAGAIN);
        st_job_free(j);
    }
    s->tail = s->send = NULL;
    s->njobs = 0;
    s->pending_bytes = 0;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, st_on_closed);
}

void vg_store_close(vg_store_t *s) { st_close(s, 0); }

void vg_store_close_cancel(vg_store_t *s) { st_close(s, 1); }
