/*
 * write.c — the store's write calls (store.h): how vg_store_add_events,
 * vg_store_put_rec and vg_store_set_model turn into Redis commands.
 *
 * Each call checks its arguments, computes an upper bound of the job's
 * bytes, formats every command of the job into the store's scratch with the
 * RESP writers of resp.h (no allocation once the scratch is large enough)
 * and hands it to the queue with vg_store_submit_(), which copies it at its
 * exact size.  Nothing here knows about the connection: whether the job is
 * written now, later or again after a reconnect is store.c's business.  The
 * commands are idempotent (ZADD GT, ZREMRANGEBYRANK, the ordered script,
 * MULTI/DEL/ZADD/EXEC, RESTORE … REPLACE, HSET), which is what makes
 * store.c's re-sends safe.
 *
 * Invariant: every job's bytes stay within the bound computed before
 * formatting (asserted), so the writers never need to check for space.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/dump.h"
#include "cache/internal.h"
#include "cache/resp.h"
#include "cache/store.h"

/* The ordered history write of one user (store.h, vg_store_add_events):
 * KEYS[1] = hist:<user>, KEYS[2] = rm:<user>, ARGV[1] = the cap (0 = none),
 * then (kind, item, ts) per event, kind "i" (interaction) or "r" (removal).
 * The cap follows each insertion, as the daemon's mirror applies it. */
static const char ORDERED_SCRIPT[] =
    "local max = tonumber(ARGV[1])\n"
    "local function cap(k)\n"
    "  if max > 0 and redis.call('ZCARD', k) > max then\n"
    "    redis.call('ZREMRANGEBYRANK', k, 0, -(max + 1))\n"
    "  end\n"
    "end\n"
    "for i = 2, #ARGV, 3 do\n"
    "  local item, ts = ARGV[i + 1], tonumber(ARGV[i + 2])\n"
    "  if ARGV[i] == 'r' then\n"
    "    redis.call('ZADD', KEYS[2], 'GT', ts, item)\n"
    "    cap(KEYS[2])\n"
    "    local h = redis.call('ZSCORE', KEYS[1], item)\n"
    "    if h and tonumber(h) <= ts then redis.call('ZREM', KEYS[1], item) end\n"
    "  else\n"
    "    local r = redis.call('ZSCORE', KEYS[2], item)\n"
    "    if not r or tonumber(r) < ts then\n"
    "      redis.call('ZADD', KEYS[1], 'GT', ts, item)\n"
    "      cap(KEYS[1])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* EVAL ORDERED_SCRIPT for the events s->sev[a..b) of one user. */
static char *put_ordered(vg_store_t *s, char *p, const vg_store_event_t *ev, size_t a, size_t b)
{
    const st_ev_t *g = &s->sev[a];
    char cap[24];
    snprintf(cap, sizeof cap, "%d", s->history_max);
    p = vg_resp_hdr(p, 6 + 3 * (b - a));
    p = vg_resp_arg(p, "EVAL", 4);
    p = vg_resp_arg(p, ORDERED_SCRIPT, sizeof ORDERED_SCRIPT - 1);
    p = vg_resp_arg(p, "2", 1);
    p = vg_store_ukey_(s, p, "hist:", 5, g->user, g->ulen);
    p = vg_store_ukey_(s, p, "rm:", 3, g->user, g->ulen);
    p = vg_resp_str(p, cap);
    for (size_t k = a; k < b; k++) {
        const vg_store_event_t *e = &ev[s->sev[k].i];
        p = vg_resp_arg(p, e->removal ? "r" : "i", 1);
        p = vg_resp_arg(p, e->item, e->item_len);
        p = vg_resp_num(p, e->ts);
    }
    return p;
}

/* ZADD GT + the cap (one more command, counted in *nc; left out when every
 * event says no_trim) for the events s->sev[a..b) of one user. */
static char *put_plain(vg_store_t *s, char *p, const vg_store_event_t *ev, size_t a, size_t b, uint32_t *nc)
{
    const st_ev_t *g = &s->sev[a];
    p = vg_resp_hdr(p, 3 + 2 * (b - a));
    p = vg_resp_arg(p, "ZADD", 4);
    p = vg_store_ukey_(s, p, "hist:", 5, g->user, g->ulen);
    p = vg_resp_arg(p, "GT", 2);
    for (size_t k = a; k < b; k++) {
        const vg_store_event_t *e = &ev[s->sev[k].i];
        p = vg_resp_num(p, e->ts);
        p = vg_resp_arg(p, e->item, e->item_len);
    }
    int trim = 0;
    for (size_t k = a; k < b && !trim; k++)
        trim = !ev[s->sev[k].i].no_trim;
    if (s->history_max > 0 && trim) {
        s->smap[2 * *nc] = (uint32_t)a;
        s->smap[2 * *nc + 1] = (uint32_t)b;
        s->soff[(*nc)++] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, 4);
        p = vg_resp_arg(p, "ZREMRANGEBYRANK", 15);
        p = vg_store_ukey_(s, p, "hist:", 5, g->user, g->ulen);
        p = vg_resp_arg(p, "0", 1);
        p = vg_resp_str(p, s->rank_stop);
    }
    return p;
}

/* By shard of vaegan:users (cluster mode; else all 0), user, then index. */
static int st_ev_cmp(const void *a, const void *b)
{
    const st_ev_t *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    size_t m = x->ulen < y->ulen ? x->ulen : y->ulen;
    int c = m ? memcmp(x->user, y->user, m) : 0;
    if (c)
        return c;
    if (x->ulen != y->ulen)
        return x->ulen < y->ulen ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int st_same_user(const st_ev_t *a, const st_ev_t *b)
{
    return a->ulen == b->ulen && (a->ulen == 0 || memcmp(a->user, b->user, a->ulen) == 0);
}

/* ZADD <p>vaegan:users (or its shard) GT ts user ... for the users of the
 * events s->sev[a..b) (nusers of them, one shard), each with its latest ts. */
static char *put_users(vg_store_t *s, char *p, const vg_store_event_t *ev, size_t a, size_t b, size_t nusers)
{
    p = vg_resp_hdr(p, 3 + 2 * nusers);
    p = vg_resp_arg(p, "ZADD", 4);
    p = vg_store_users_key_(s, p, s->sev[a].shard);
    p = vg_resp_arg(p, "GT", 2);
    for (size_t u = a, v; u < b; u = v) {
        const st_ev_t *g = &s->sev[u];
        double ts = ev[g->i].ts;
        for (v = u + 1; v < b && st_same_user(g, &s->sev[v]); v++)
            if (ev[s->sev[v].i].ts > ts)
                ts = ev[s->sev[v].i].ts;
        p = vg_resp_num(p, ts);
        p = vg_resp_arg(p, g->user, g->ulen);
    }
    return p;
}

static int st_pe_same(const st_pe_t *a, const st_pe_t *b, int user)
{
    if (a->plen != b->plen || memcmp(a->part, b->part, a->plen) != 0)
        return 0;
    return !user || (a->ulen == b->ulen && (a->ulen == 0 || memcmp(a->user, b->user, a->ulen) == 0));
}

/* By set, user, then ts. */
static int st_pe_cmp(const void *a, const void *b)
{
    const st_pe_t *x = a, *y = b;
    size_t m = x->plen < y->plen ? x->plen : y->plen;
    int c = memcmp(x->part, y->part, m);
    if (c || x->plen != y->plen)
        return c ? c : x->plen < y->plen ? -1 : 1;
    m = x->ulen < y->ulen ? x->ulen : y->ulen;
    c = m ? memcmp(x->user, y->user, m) : 0;
    if (c || x->ulen != y->ulen)
        return c ? c : x->ulen < y->ulen ? -1 : 1;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

/* ZADD <p>vaegan:part:<part> GT ts user ... per set named by the events
 * (s->pev[0..np), sorted by st_pe_cmp: a user's last entry holds its
 * latest ts).  Each command maps to no event (an empty range): an error
 * there refuses none (store.h). */
static char *put_parts(vg_store_t *s, char *p, size_t np, uint32_t *nc)
{
    for (size_t a = 0, b; a < np; a = b) {
        const st_pe_t *g = &s->pev[a];
        size_t nusers = 1;
        for (b = a + 1; b < np && st_pe_same(g, &s->pev[b], 0); b++)
            nusers += !st_pe_same(&s->pev[b - 1], &s->pev[b], 1);
        s->smap[2 * *nc] = s->smap[2 * *nc + 1] = 0;
        s->soff[(*nc)++] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, 3 + 2 * nusers);
        p = vg_resp_arg(p, "ZADD", 4);
        p = vg_store_ukey_(s, p, "vaegan:part:", 12, g->part, g->plen);
        p = vg_resp_arg(p, "GT", 2);
        for (size_t k = a; k < b; k++)
            if (k + 1 == b || !st_pe_same(&s->pev[k], &s->pev[k + 1], 1)) {
                p = vg_resp_num(p, s->pev[k].ts);
                p = vg_resp_arg(p, s->pev[k].user, s->pev[k].ulen);
            }
    }
    return p;
}

int vg_store_add_events(vg_store_t *s, const vg_store_event_t *ev, size_t n, vg_store_events_cb cb,
                        void *ud)
{
    if (!s || s->closing || (n && !ev))
        return VG_EINVAL;
    if (n == 0) {
        if (vg_store_scratch_(s, 64, 1))
            return VG_ENOMEM;
        char *p = vg_resp_hdr(s->sbuf, 1);
        p = vg_resp_str(p, "PING");
        s->soff[0] = 0;
        return vg_store_submit_events_(s, (size_t)(p - s->sbuf), 1, 0, cb, ud);
    }
    if (n > UINT32_MAX / 2 - 1)
        return VG_EINVAL;
    if (vg_store_grow_((void **)&s->sev, &s->sevcap, n, sizeof *s->sev))
        return VG_ENOMEM;
    size_t bound = 256 + 2 * s->plen + (s->cluster ? VG_STORE_USER_SHARDS * (VG_RESP_HDR_OVH + 3 * VG_RESP_ARG_OVH + s->plen + 24) : 0);
    for (size_t i = 0; i < n; i++) {
        const vg_store_event_t *e = &ev[i];
        if (!e->user || !e->item || !isfinite(e->ts) || (e->removal && !s->ordered))
            return VG_EINVAL;
        s->sev[i].user = e->user;
        s->sev[i].ulen = e->user_len;
        s->sev[i].i = i;
        s->sev[i].shard = s->cluster ? vg_store_user_shard_(e->user, e->user_len) : 0;
        bound += 600 + 2 * s->plen + 3 * e->user_len + e->item_len + (s->ordered ? sizeof ORDERED_SCRIPT + 64 : 0);
    }
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (ev[i].part) {
            if (vg_store_grow_((void **)&s->pev, &s->pevcap, np + 1, sizeof *s->pev))
                return VG_ENOMEM;
            s->pev[np++] = (st_pe_t){ev[i].part, ev[i].user, ev[i].part_len, ev[i].user_len, ev[i].ts};
            bound += VG_RESP_HDR_OVH + 5 * VG_RESP_ARG_OVH + 20 + s->plen + ev[i].part_len + ev[i].user_len +
                     VG_RESP_NUM_MAX; /* ZADD, the key (braced), GT, ts, user: at worst a command of its own */
        }
    int rc = vg_store_scratch_(s, bound, 4 * n); /* per user <= 2, per shard 1, per set 1 */
    if (rc)
        return rc;
    if (vg_store_grow_((void **)&s->smap, &s->smapcap, 2 * 4 * n, sizeof *s->smap))
        return VG_ENOMEM;

    /* group the events by user (keeping their order): one ZADD (+ ZREMRANGEBYRANK),
     * or one EVAL of the ordered script, per user */
    qsort(s->sev, n, sizeof *s->sev, st_ev_cmp);
    char *p = s->sbuf;
    uint32_t nc = 0;
    for (size_t a = 0, b; a < n; a = b) {
        const st_ev_t *g = &s->sev[a];
        for (b = a + 1; b < n && st_same_user(g, &s->sev[b]); b++)
            ;
        s->smap[2 * nc] = (uint32_t)a;
        s->smap[2 * nc + 1] = (uint32_t)b;
        s->soff[nc++] = (uint32_t)(p - s->sbuf);
        p = s->ordered ? put_ordered(s, p, ev, a, b) : put_plain(s, p, ev, a, b, &nc);
    }
    /* vaegan:users (or each of its shards): every event needs its user's entry */
    for (size_t a = 0, b; a < n; a = b) {
        size_t nusers = 1;
        for (b = a + 1; b < n && s->sev[b].shard == s->sev[a].shard; b++)
            nusers += !st_same_user(&s->sev[b - 1], &s->sev[b]);
        s->smap[2 * nc] = (uint32_t)a;
        s->smap[2 * nc + 1] = (uint32_t)b;
        s->soff[nc++] = (uint32_t)(p - s->sbuf);
        p = put_users(s, p, ev, a, b, nusers);
    }
    if (np) /* qsort(NULL, 0, ...) is undefined */
        qsort(s->pev, np, sizeof *s->pev, st_pe_cmp);
    p = put_parts(s, p, np, &nc);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_events_(s, (size_t)(p - s->sbuf), nc, n, cb, ud);
}

/* The list write (store.h, vg_store_put_rec): KEYS[1] = rec:<user>,
 * KEYS[2] = recver:<user>, ARGV[1] = the list's history version, ARGV[2] =
 * the TTL in ms (0 = none), then "r" and a RESTORE payload, or "z" and the
 * (score, item) pairs (none: the list is deleted).  Refused (0) when the
 * stored version is newer; else the list and its version are replaced
 * (1).  ZADD takes the pairs 1,000 at a time (Lua's unpack has a stack
 * limit of some thousands). */
static const char LIST_SCRIPT[] =
    "local v = redis.call('GET', KEYS[2])\n"
    "if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end\n"
    "local ttl = tonumber(ARGV[2])\n"
    "if ARGV[3] == 'r' then\n"
    "  redis.call('RESTORE', KEYS[1], ttl, ARGV[4], 'REPLACE')\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  for i = 4, #ARGV, 2000 do\n"
    "    redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 1999, #ARGV)))\n"
    "  end\n"
    "  if ttl > 0 and #ARGV > 3 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "end\n"
    "if ttl > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl) else redis.call('SET', KEYS[2], ARGV[1]) end\n"
    "return 1\n";

int vg_store_put_rec(vg_store_t *s, const char *user, size_t user_len, const char *const *items,
                     const size_t *item_lens, const double *scores, size_t n, double version, vg_store_cb cb,
                     void *ud)
{
    if (!s || s->closing || !user || (n && (!items || !item_lens || !scores)) || !isfinite(version))
        return VG_EINVAL;
    if (n > UINT32_MAX / 2 - 8)
        return VG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!items[i] || !isfinite(scores[i]))
            return VG_EINVAL;
    int restore = n && s->rec_restore;
    size_t zn = 0, bound = VG_RESP_HDR_OVH + 9 * VG_RESP_ARG_OVH + sizeof LIST_SCRIPT + 2 * (s->plen + user_len + 9) +
                           2 * VG_RESP_NUM_MAX + 8;
    int rc = 0;
    if (restore) {
        rc = vg_store_grow_((void **)&s->zbuf, &s->zbuf_cap, vg_dump_zset_bound(n, item_lens), 1);
        if (!rc)
            rc = vg_store_grow_((void **)&s->zorder, &s->zorder_cap, n, sizeof *s->zorder);
        if (rc)
            return rc;
        zn = vg_dump_zset(s->zbuf, items, item_lens, scores, n, s->zorder);
        bound += VG_RESP_ARG_OVH + zn;
    } else {
        for (size_t i = 0; i < n; i++)
            bound += 2 * VG_RESP_ARG_OVH + VG_RESP_NUM_MAX + item_lens[i];
    }
    if ((rc = vg_store_scratch_(s, bound, 1)))
        return rc;
    char ttl[24];
    int tn = snprintf(ttl, sizeof ttl, "%lld", (long long)s->rec_ttl_s * 1000);
    char *p = vg_resp_hdr(s->sbuf, 8 + (restore ? 1 : 2 * n));
    s->soff[0] = 0;
    p = vg_resp_arg(p, "EVAL", 4);
    p = vg_resp_arg(p, LIST_SCRIPT, sizeof LIST_SCRIPT - 1);
    p = vg_resp_arg(p, "2", 1);
    p = vg_store_ukey_(s, p, "rec:", 4, user, user_len);
    p = vg_store_ukey_(s, p, "recver:", 7, user, user_len);
    p = vg_resp_num(p, version);
    p = vg_resp_arg(p, ttl, (size_t)tn);
    if (restore) {
        p = vg_resp_arg(p, "r", 1);
        p = vg_resp_arg(p, s->zbuf, zn);
    } else {
        p = vg_resp_arg(p, "z", 1);
        for (size_t i = 0; i < n; i++) {
            char t[VG_RESP_NUM_MAX];
            p = vg_resp_arg(p, t, vg_resp_fmt_score(t, scores[i]));
            p = vg_resp_arg(p, items[i], item_lens[i]);
        }
    }
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_list_(s, (size_t)(p - s->sbuf), cb, ud);
}

/* KEYS[1] = vaegan:model, ARGV[1] = the writer's leader epoch, then field,
 * value pairs: written with the epoch unless the hash holds a newer one. */
static const char MODEL_SCRIPT[] =
    "local e = tonumber(redis.call('HGET', KEYS[1], 'leader_epoch') or '0')\n"
    "if tonumber(ARGV[1]) < e then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'leader_epoch', unpack(ARGV))\n"
    "return 1\n";

typedef struct model_op {
    vg_store_cb cb;
    void *ud;
    int fenced;
} model_op_t;

static void model_reply(void *ud, uint32_t idx, const redisReply *r)
{
    (void)idx;
    model_op_t *op = ud;
    op->fenced = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
}

static void model_done(void *ud, int status)
{
    model_op_t *op = ud;
    if (op->cb)
        op->cb(op->ud, status ? status : op->fenced ? VG_EFENCED : 0);
    free(op);
}

int vg_store_set_model(vg_store_t *s, uint64_t epoch, const char *const *fields, const char *const *values,
                       size_t n, vg_store_cb cb, void *ud)
{
    if (!s || s->closing || n == 0 || !fields || !values || n > UINT32_MAX / 4 || epoch >= ((uint64_t)1 << 53))
        return VG_EINVAL;
    size_t bound = VG_RESP_HDR_OVH + 5 * VG_RESP_ARG_OVH + 4 + s->plen + 12 + sizeof MODEL_SCRIPT + 24;
    for (size_t i = 0; i < n; i++) {
        if (!fields[i] || !values[i])
            return VG_EINVAL;
        bound += 2 * VG_RESP_ARG_OVH + strlen(fields[i]) + strlen(values[i]);
    }
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    char *p = vg_resp_hdr(s->sbuf, (epoch ? 5 : 2) + 2 * n); /* EVAL script 1 key epoch, or HSET key */
    if (epoch) {
        p = vg_resp_arg(p, "EVAL", 4);
        p = vg_resp_arg(p, MODEL_SCRIPT, sizeof MODEL_SCRIPT - 1);
        p = vg_resp_arg(p, "1", 1);
    } else {
        p = vg_resp_arg(p, "HSET", 4);
    }
    p = vg_resp_arg3(p, s->prefix, s->plen, "vaegan:model", 12, NULL, 0);
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)epoch);
    if (epoch)
        p = vg_resp_str(p, num);
    for (size_t i = 0; i < n; i++) {
        p = vg_resp_str(p, fields[i]);
        p = vg_resp_str(p, values[i]);
    }
    s->soff[0] = 0;
    vg_assert((size_t)(p - s->sbuf) <= bound);
    if (!epoch)
        return vg_store_submit_(s, (size_t)(p - s->sbuf), 1, cb, ud);
    model_op_t *op = malloc(sizeof *op);
    if (!op)
        return VG_ENOMEM;
    *op = (model_op_t){cb, ud, 0};
    rc = vg_store_submit_replies_(s, (size_t)(p - s->sbuf), 1, model_reply, model_done, op);
    if (rc)
        free(op);
    return rc;
}

int vg_store_forget(vg_store_t *s, const char *user, size_t user_len, const char *mark, size_t mark_len,
                    double ts, double keep_after, vg_store_cb cb, void *ud)
{
    if (!s || s->closing || !user || !user_len || !mark || !mark_len || !isfinite(ts) || isnan(keep_after))
        return VG_EINVAL;
    size_t bound = 600 + 7 * s->plen + 5 * user_len + mark_len + 32;
    int rc = vg_store_scratch_(s, bound, 4);
    if (rc)
        return rc;
    char *p = s->sbuf;
    uint32_t nc = 0;
    s->soff[nc++] = 0;
    p = vg_resp_hdr(p, 5);
    p = vg_resp_arg(p, "DEL", 3);
    p = vg_store_ukey_(s, p, "hist:", 5, user, user_len);
    p = vg_store_ukey_(s, p, "rm:", 3, user, user_len);
    p = vg_store_ukey_(s, p, "rec:", 4, user, user_len);
    p = vg_store_ukey_(s, p, "recver:", 7, user, user_len);
    s->soff[nc++] = (uint32_t)(p - s->sbuf);
    p = vg_resp_hdr(p, 3);
    p = vg_resp_arg(p, "ZREM", 4);
    p = vg_store_users_key_(s, p, s->cluster ? vg_store_user_shard_(user, user_len) : 0);
    p = vg_resp_arg(p, user, user_len);
    s->soff[nc++] = (uint32_t)(p - s->sbuf);
    p = vg_resp_hdr(p, 5);
    p = vg_resp_arg(p, "ZADD", 4);
    p = vg_resp_arg3(p, s->prefix, s->plen, "vaegan:forgotten", 16, NULL, 0);
    p = vg_resp_arg(p, "GT", 2);
    p = vg_resp_num(p, ts);
    p = vg_resp_arg(p, mark, mark_len);
    if (isfinite(keep_after)) {
        s->soff[nc++] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, 4);
        p = vg_resp_arg(p, "ZREMRANGEBYSCORE", 16);
        p = vg_resp_arg3(p, s->prefix, s->plen, "vaegan:forgotten", 16, NULL, 0);
        p = vg_resp_arg(p, "-inf", 4);
        p = vg_resp_num(p, keep_after);
    }
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_(s, (size_t)(p - s->sbuf), nc, cb, ud);
}

int vg_store_read_user(vg_store_t *s, const char *user, size_t user_len, vg_store_rows_cb rows, vg_store_cb done,
                       void *ud)
{
    if (!s || s->closing || !user || !user_len || !rows)
        return VG_EINVAL;
    size_t bound = 256 + 2 * (s->plen + user_len + 2);
    int rc = vg_store_scratch_(s, bound, 2);
    if (rc)
        return rc;
    char *p = s->sbuf;
    uint32_t nc = 0;
    const char *keys[2] = {"hist:", "rm:"};
    for (int k = 0; k < 1 + (s->ordered != 0); k++) {
        s->soff[nc++] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, 5);
        p = vg_resp_arg(p, "ZRANGE", 6);
        p = vg_store_ukey_(s, p, keys[k], strlen(keys[k]), user, user_len);
        p = vg_resp_arg(p, "0", 1);
        p = vg_resp_arg(p, "-1", 2);
        p = vg_resp_arg(p, "WITHSCORES", 10);
    }
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_read_(s, (size_t)(p - s->sbuf), nc, rows, done, ud);
}

int vg_store_read_part(vg_store_t *s, const char *part, size_t part_len, size_t max, vg_store_rows_cb rows,
                       vg_store_cb done, void *ud)
{
    if (!s || s->closing || !part || !part_len || !rows)
        return VG_EINVAL;
    size_t bound = 256 + s->plen + part_len;
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    char from[32];
    snprintf(from, sizeof from, "-%zu", max);
    s->soff[0] = 0;
    char *p = vg_resp_hdr(s->sbuf, 5);
    p = vg_resp_arg(p, "ZRANGE", 6);
    p = vg_store_ukey_(s, p, "vaegan:part:", 12, part, part_len);
    p = vg_resp_str(p, max ? from : "0");
    p = vg_resp_arg(p, "-1", 2);
    p = vg_resp_arg(p, "WITHSCORES", 10);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_read_(s, (size_t)(p - s->sbuf), 1, rows, done, ud);
}

int vg_store_read_users_since(vg_store_t *s, const vg_store_since_t *from, size_t max, vg_store_rows_cb rows,
                              vg_store_cb done, void *ud)
{
    if (!s || s->closing || !from || !max || !rows)
        return VG_EINVAL;
    unsigned shards = s->cluster ? VG_STORE_USER_SHARDS : 1;
    for (unsigned k = 0; k < shards; k++)
        if (isnan(from[k].ts) || from[k].ts == INFINITY || (from[k].mode == VG_SINCE_AT && !isfinite(from[k].ts)) ||
            from[k].mode < VG_SINCE_FROM || from[k].mode > VG_SINCE_AT)
            return VG_EINVAL;
    size_t bound = shards * (VG_RESP_HDR_OVH + 8 * VG_RESP_ARG_OVH + s->plen + 64 + 3 * VG_RESP_NUM_MAX);
    int rc = vg_store_scratch_(s, bound, shards);
    if (rc)
        return rc;
    char *p = s->sbuf;
    for (unsigned k = 0; k < shards; k++) {
        const vg_store_since_t *f = &from[k];
        char lo[VG_RESP_NUM_MAX + 1] = "(";
        size_t n = isfinite(f->ts) ? vg_resp_fmt_num(lo + 1, f->ts) : (size_t)snprintf(lo + 1, sizeof lo - 1, "-inf");
        int after = f->mode == VG_SINCE_AFTER;
        s->soff[k] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, f->mode == VG_SINCE_AT ? 5 : 8);
        p = vg_resp_arg(p, "ZRANGEBYSCORE", 13);
        p = vg_store_users_key_(s, p, k);
        p = vg_resp_arg(p, lo + !after, n + after);
        if (f->mode == VG_SINCE_AT) {
            p = vg_resp_arg(p, lo + 1, n);
            p = vg_resp_arg(p, "WITHSCORES", 10);
            continue;
        }
        p = vg_resp_arg(p, "+inf", 4);
        p = vg_resp_arg(p, "WITHSCORES", 10);
        p = vg_resp_arg(p, "LIMIT", 5);
        p = vg_resp_arg(p, "0", 1);
        p = vg_resp_num(p, (double)max);
    }
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_read_(s, (size_t)(p - s->sbuf), shards, rows, done, ud);
}

size_t vg_store_since_past(vg_store_since_t *f, const double *ts, size_t n, size_t max, int *more)
{
    *more = 0;
    if (f->mode == VG_SINCE_AT) { /* the users at f->ts, read whole: above it next */
        f->mode = VG_SINCE_AFTER;
        *more = 1;
        return n;
    }
    if (n == 0)
        return 0;
    f->ts = ts[n - 1];
    if (n < max) {
        f->mode = VG_SINCE_FROM;
        return n;
    }
    f->mode = VG_SINCE_AT;
    *more = 1;
    size_t take = n;
    while (take > 0 && ts[take - 1] == f->ts)
        take--;
    return take;
}

/* One command on a set of recent users: <cmd> <p>vaegan:part:<part> a [b]. */
static int part_cmd(vg_store_t *s, const char *cmd, const char *part, size_t part_len, const char *a, size_t alen,
                    const char *b, size_t blen, vg_store_cb cb, void *ud)
{
    if (!s || s->closing || !part || !part_len || !alen)
        return VG_EINVAL;
    size_t bound = VG_RESP_HDR_OVH + 4 * VG_RESP_ARG_OVH + 32 + s->plen + part_len + alen + blen;
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    s->soff[0] = 0;
    char *p = vg_resp_hdr(s->sbuf, b ? 4 : 3);
    p = vg_resp_str(p, cmd);
    p = vg_store_ukey_(s, p, "vaegan:part:", 12, part, part_len);
    p = vg_resp_arg(p, a, alen);
    if (b)
        p = vg_resp_arg(p, b, blen);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    return vg_store_submit_(s, (size_t)(p - s->sbuf), 1, cb, ud);
}

int vg_store_part_rem(vg_store_t *s, const char *part, size_t part_len, const char *user, size_t user_len,
                      vg_store_cb cb, void *ud)
{
    return user ? part_cmd(s, "ZREM", part, part_len, user, user_len, NULL, 0, cb, ud) : VG_EINVAL;
}

int vg_store_part_trim(vg_store_t *s, const char *part, size_t part_len, size_t keep, vg_store_cb cb, void *ud)
{
    char to[32];
    int n = snprintf(to, sizeof to, "-%zu", keep + 1);
    return keep ? part_cmd(s, "ZREMRANGEBYRANK", part, part_len, "0", 1, to, (size_t)n, cb, ud) : VG_EINVAL;
}
