/*
 * shared.c — the leader's epoch and the fenced, chunked blobs of shared.h
 * over the store's queue.
 *
 * Each call is an operation on the heap that goes through a few store jobs
 * one after another (vg_store_submit_replies_: this file reads the
 * replies): publishing = the chunks' SETs (at most SH_WINDOW jobs in
 * flight), the manifest script, the tidy job (PERSIST / DEL); fetching =
 * HMGET of the manifest, then one job of GETs per version tried.  An
 * operation ends — its callback fires, it is freed — when its last job is
 * done and nothing more is to be sent; a job cancelled by
 * vg_store_close_cancel() (VG_EAGAIN) sends nothing more.
 *
 * Invariants: op->out counts the operation's jobs not yet done; only a
 * callback with op->out == 0 ends an operation; formatted commands stay
 * within the bound computed before formatting (asserted).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdarg.h>

#include <hiredis/hiredis.h>
#include <zlib.h>

#include "cache/internal.h"
#include "cache/shared.h"
#include "common/clock.h"
#include "common/log.h"

#define SH_WINDOW 4                  /* chunk writes in flight */
#define SH_CHUNK_MAX ((size_t)512 << 20) /* Redis' largest string */
/* A version's chunks at most (1 TiB at the default chunk size); the tidy
 * step's one job, which names up to three versions' keys, must also stay
 * below the store's 32-bit job offsets (checked when publishing). */
#define SH_CHUNKS_MAX ((uint64_t)1 << 20)
#define SH_TTL_DEF 600
#define SH_STEM_MAX (VG_SHARED_NAME_MAX + 3 * 21) /* <name>:<epoch>:<version>:<nonce> */
#define SH_NUM_MAX ((uint64_t)1 << 53) /* epochs and versions stay below (Lua's doubles) */
#define SH_CRC_STEP ((size_t)1 << 30)            /* zlib's crc32 takes a uInt length */

/* KEYS[1] = the epoch counter, KEYS[2] = the manifest; ARGV = epoch,
 * version, bytes, chunks, chunk_size, crc, stem of the new version.
 * Returns {0, held epoch} (fenced), {1, epoch, version} (not newer than
 * the current one) or {2, stem, chunks of the now previous version, stem,
 * chunks of the evicted one} ("" and "0" where there was none).  The
 * fence compares the epochs as text (exact beyond 2^53).  Idempotent: the
 * store re-sends a command whose reply a lost connection swallowed, and a
 * second run for the stem already current (stems are unique per
 * publication) answers as the first did, from the evicted.* fields. */
static const char MANIFEST_SCRIPT[] =
    "local held = redis.call('GET', KEYS[1])\n"
    "if held ~= ARGV[1] then return {0, tostring(held)} end\n"
    "local f = {'epoch', 'version', 'bytes', 'chunks', 'chunk_size', 'crc', 'stem'}\n"
    "local cur = redis.call('HMGET', KEYS[2], unpack(f))\n"
    "local old = redis.call('HMGET', KEYS[2], 'prev.stem', 'prev.chunks', 'evicted.stem', 'evicted.chunks')\n"
    "if cur[7] == ARGV[7] then\n"
    "  return {2, old[1] or '', old[2] or '0', old[3] or '', old[4] or '0'}\n"
    "end\n"
    "if cur[1] then\n"
    "  local e, v = tonumber(cur[1]), tonumber(cur[2])\n"
    "  local ne, nv = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "  if e and v and (e > ne or (e == ne and v >= nv)) then return {1, cur[1], cur[2]} end\n"
    "  for i = 1, #f do redis.call('HSET', KEYS[2], 'prev.' .. f[i], cur[i] or '') end\n"
    "end\n"
    "for i = 1, #f do redis.call('HSET', KEYS[2], f[i], ARGV[i]) end\n"
    "redis.call('HSET', KEYS[2], 'evicted.stem', old[1] or '', 'evicted.chunks', old[2] or '0')\n"
    "return {2, cur[7] or '', cur[4] or '0', old[1] or '', old[2] or '0'}\n";

static const char *const FIELDS[] = {"epoch",      "version",      "bytes",      "chunks",      "chunk_size",
                                     "crc",        "stem",         "prev.epoch", "prev.version", "prev.bytes",
                                     "prev.chunks", "prev.chunk_size", "prev.crc", "prev.stem"};
enum { NFIELDS = 7 };

/* A version of a blob: what the manifest says, and the stem of its chunks' keys. */
typedef struct sh_ver {
    vg_shared_blob_t b;
    uint64_t chunks, chunk_size;
    char stem[SH_STEM_MAX + 1];
    int present; /* the manifest names it */
    int bad;     /* ... with a malformed field */
} sh_ver_t;

static void sh_log(vg_store_t *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_logv(s->log, s->ud, level, fmt, ap);
    va_end(ap);
}

static int sh_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > VG_SHARED_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static uint32_t sh_crc(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t at = 0; at < n; at += SH_CRC_STEP)
        c = crc32(c, p + at, (uInt)(n - at < SH_CRC_STEP ? n - at : SH_CRC_STEP));
    return (uint32_t)c;
}

/* A number no other publication of this epoch uses, so that a refused one
 * (say the same version twice) never writes over the chunks of one the
 * manifest names: the time, the process and a count. */
static uint64_t sh_nonce(void)
{
    static _Atomic uint64_t count;
    return (uv_hrtime() ^ ((uint64_t)getpid() << 40)) + atomic_fetch_add(&count, 1);
}

/* ---- formatting --------------------------------------------------------------------------- */

/* The RESP argument <p>vaegan:{leader}:<what> (what: "epoch" or "manifest:<name>"). */
static size_t sh_leader_key_bound(const vg_store_t *s) { return VG_RESP_ARG_OVH + s->plen + 24 + 9 + VG_SHARED_NAME_MAX; }
static char *sh_leader_key(const vg_store_t *s, char *p, const char *what)
{
    return vg_resp_arg3(p, s->prefix, s->plen, "vaegan:{leader}:", 16, what, strlen(what));
}

/* The RESP argument naming chunk i of the version with this stem:
 * <p>vaegan:blob:{<stem>:<i>}. */
static size_t sh_chunk_key_bound(const vg_store_t *s) { return VG_RESP_ARG_OVH + s->plen + 13 + SH_STEM_MAX + 23; }
static char *sh_chunk_key(const vg_store_t *s, char *p, const char *stem, uint64_t i)
{
    char tail[24];
    size_t sl = strlen(stem);
    int tn = snprintf(tail, sizeof tail, ":%" PRIu64 "}", i);
    *p++ = '$';
    p = vg_resp_u64(p, s->plen + 13 + sl + (size_t)tn);
    *p++ = '\r';
    *p++ = '\n';
    if (s->plen)
        memcpy(p, s->prefix, s->plen);
    p += s->plen;
    memcpy(p, "vaegan:blob:{", 13);
    p += 13;
    memcpy(p, stem, sl);
    p += sl;
    memcpy(p, tail, (size_t)tn);
    p += tn;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Appends "<cmd> <chunk key>" for chunks [0, n) of stem to the scratch at
 * *len, command *ncmds onwards (the scratch holds them: see sh_keys_bound). */
static void sh_keys_cmds(vg_store_t *s, size_t *len, uint32_t *ncmds, const char *cmd, const char *stem, uint64_t n)
{
    char *p = s->sbuf + *len;
    for (uint64_t i = 0; i < n; i++) {
        s->soff[(*ncmds)++] = (uint32_t)(p - s->sbuf);
        p = vg_resp_hdr(p, 2);
        p = vg_resp_str(p, cmd);
        p = sh_chunk_key(s, p, stem, i);
    }
    *len = (size_t)(p - s->sbuf);
}
static size_t sh_keys_bound(const vg_store_t *s, uint64_t n)
{
    return (size_t)n * (VG_RESP_HDR_OVH + VG_RESP_ARG_OVH + 8 + sh_chunk_key_bound(s));
}

/* A manifest's numeric field: plain decimal digits, at most max. */
static int sh_num(const redisReply *r, uint64_t max, uint64_t *out)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---- epoch -------------------------------------------------------------------------------- */

typedef struct sh_epoch_op {
    uint64_t epoch;
    vg_shared_epoch_cb cb;
    void *ud;
} sh_epoch_op_t;

static void epoch_reply(void *ud, uint32_t idx, const redisReply *r)
{
    (void)idx;
    sh_epoch_op_t *op = ud;
    if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        op->epoch = (uint64_t)r->integer;
}

static void epoch_done(void *ud, int status)
{
    sh_epoch_op_t *op = ud;
    if (status == 0 && !op->epoch)
        status = VG_EREDIS;
    op->cb(op->ud, status, status ? 0 : op->epoch);
    free(op);
}

int vg_shared_take_epoch(vg_store_t *s, vg_shared_epoch_cb cb, void *ud)
{
    if (!s || s->closing || !cb)
        return VG_EINVAL;
    size_t bound = VG_RESP_HDR_OVH + VG_RESP_ARG_OVH + 4 + sh_leader_key_bound(s);
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    sh_epoch_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return VG_ENOMEM;
    op->cb = cb;
    op->ud = ud;
    char *p = s->sbuf;
    s->soff[0] = 0;
    p = vg_resp_hdr(p, 2);
    p = vg_resp_str(p, "INCR");
    p = sh_leader_key(s, p, "epoch");
    vg_assert((size_t)(p - s->sbuf) <= bound);
    rc = vg_store_submit_replies_(s, (size_t)(p - s->sbuf), 1, epoch_reply, epoch_done, op);
    if (rc)
        free(op);
    return rc;
}

/* ---- publish ------------------------------------------------------------------------------ */

enum { PUT_CHUNKS = 0, PUT_SCRIPT = 1, PUT_TIDY = 2 };

typedef struct sh_put_op {
    vg_store_t *s;
    vg_shared_put_t put;
    char name[VG_SHARED_NAME_MAX + 1];
    sh_ver_t v;       /* the new version */
    uint64_t next;    /* the next chunk to SET */
    int out;          /* jobs not done */
    int status;       /* the first failure */
    int phase;
    int code;         /* the script's answer (-1: none yet or malformed) */
    double t0;        /* vg_mono_s() at the start: the chunks' TTL runs from about then */
    sh_ver_t prev, evicted; /* stem and chunks from the script's answer */
    vg_store_cb cb;
    void *ud;
} sh_put_op_t;

static void put_pump(sh_put_op_t *op);

static void put_end(sh_put_op_t *op)
{
    op->cb(op->ud, op->status);
    free(op);
}

/* The manifest names the new version, but its chunks may keep their TTL or
 * the evicted ones stay: logged; the publication itself succeeded. */
static void put_tidy_failed(sh_put_op_t *op, int rc)
{
    sh_log(op->s, VG_LOG_WARN,
           "shared %s: version %" PRIu64 ":%" PRIu64 " published, but persisting its chunks or deleting the evicted "
           "ones failed (%s): they may expire or stay until the next publication",
           op->name, op->put.epoch, op->put.version, vg_strerror(rc));
}

static void put_job_done(void *ud, int status)
{
    sh_put_op_t *op = ud;
    op->out--;
    if (status && op->phase == PUT_TIDY && op->code == 2)
        put_tidy_failed(op, status);
    else if (status && !op->status)
        op->status = status;
    put_pump(op);
}

/* SET <chunk key> <bytes> PX <ttl ms> for chunk op->next. */
static int put_chunk(sh_put_op_t *op)
{
    vg_store_t *s = op->s;
    uint64_t i = op->next;
    size_t at = (size_t)i * op->v.chunk_size;
    size_t n = op->put.len - at < op->v.chunk_size ? op->put.len - at : op->v.chunk_size;
    size_t bound = VG_RESP_HDR_OVH + 5 * VG_RESP_ARG_OVH + 8 + VG_RESP_NUM_MAX + sh_chunk_key_bound(s) + n;
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)op->put.ttl_s * 1000);
    char *p = s->sbuf;
    s->soff[0] = 0;
    p = vg_resp_hdr(p, 5);
    p = vg_resp_str(p, "SET");
    p = sh_chunk_key(s, p, op->v.stem, i);
    p = vg_resp_arg(p, (const char *)op->put.data + at, n);
    p = vg_resp_str(p, "PX");
    p = vg_resp_str(p, ttl);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    rc = vg_store_submit_(s, (size_t)(p - s->sbuf), 1, put_job_done, op);
    if (rc == 0) {
        op->next++;
        op->out++;
    }
    return rc;
}

/* The stem and chunk count of a version from the script's answer
 * (elements k, k+1); one that is malformed is left absent. */
static void put_reply_ver(const redisReply *r, size_t k, sh_ver_t *v)
{
    const redisReply *st = r->element[k], *ch = r->element[k + 1];
    if (st->type != REDIS_REPLY_STRING || st->len == 0 || st->len > SH_STEM_MAX || sh_num(ch, SH_CHUNKS_MAX, &v->chunks))
        return;
    memcpy(v->stem, st->str, st->len);
    v->stem[st->len] = '\0';
    v->present = 1;
}

static void put_script_reply(void *ud, uint32_t idx, const redisReply *r)
{
    (void)idx;
    sh_put_op_t *op = ud;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    long long code = r->element[0]->integer;
    if (code == 0 || code == 1) {
        op->code = (int)code;
        sh_log(op->s, VG_LOG_WARN, "shared %s: version %" PRIu64 ":%" PRIu64 " refused: %s", op->name,
               op->put.epoch, op->put.version,
               code == 0 ? "a newer leader holds the epoch" : "the manifest holds a version as new");
    } else if (code == 2 && r->elements == 5) {
        op->code = 2;
        put_reply_ver(r, 1, &op->prev);
        put_reply_ver(r, 3, &op->evicted);
        if (op->evicted.present && (!strcmp(op->evicted.stem, op->v.stem) ||
                                    (op->prev.present && !strcmp(op->evicted.stem, op->prev.stem))))
            op->evicted.present = 0;
    }
}

/* The manifest script for the new version. */
static int put_script(sh_put_op_t *op)
{
    vg_store_t *s = op->s;
    char num[6][24];
    uint64_t vals[6] = {op->put.epoch, op->put.version, op->v.b.bytes, op->v.chunks, op->v.chunk_size, op->v.b.crc};
    for (int i = 0; i < 6; i++)
        snprintf(num[i], sizeof num[i], "%" PRIu64, vals[i]);
    char mkey[9 + VG_SHARED_NAME_MAX + 1];
    snprintf(mkey, sizeof mkey, "manifest:%s", op->name);
    size_t bound = VG_RESP_HDR_OVH + 4 * VG_RESP_ARG_OVH + sizeof MANIFEST_SCRIPT + 2 * sh_leader_key_bound(s) +
                   7 * (VG_RESP_ARG_OVH + 24) + SH_STEM_MAX;
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    char *p = s->sbuf;
    s->soff[0] = 0;
    p = vg_resp_hdr(p, 12);
    p = vg_resp_str(p, "EVAL");
    p = vg_resp_arg(p, MANIFEST_SCRIPT, sizeof MANIFEST_SCRIPT - 1);
    p = vg_resp_str(p, "2");
    p = sh_leader_key(s, p, "epoch");
    p = sh_leader_key(s, p, mkey);
    for (int i = 0; i < 6; i++)
        p = vg_resp_str(p, num[i]);
    p = vg_resp_str(p, op->v.stem);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    op->code = -1;
    rc = vg_store_submit_replies_(s, (size_t)(p - s->sbuf), 1, put_script_reply, put_job_done, op);
    if (rc == 0)
        op->out++;
    return rc;
}

/* After the script: PERSIST the new and the previous version's chunks and
 * DEL the evicted one's (accepted), or DEL the new ones (refused). */
static int put_tidy(sh_put_op_t *op)
{
    vg_store_t *s = op->s;
    int ok = op->code == 2;
    uint64_t np = ok && op->prev.present ? op->prev.chunks : 0;
    uint64_t ne = ok && op->evicted.present ? op->evicted.chunks : 0;
    uint64_t n = op->v.chunks + np + ne;
    size_t bound = sh_keys_bound(s, n);
    int rc = vg_store_scratch_(s, bound, (size_t)n);
    if (rc)
        return rc;
    size_t len = 0;
    uint32_t ncmds = 0;
    sh_keys_cmds(s, &len, &ncmds, ok ? "PERSIST" : "DEL", op->v.stem, op->v.chunks);
    if (np)
        sh_keys_cmds(s, &len, &ncmds, "PERSIST", op->prev.stem, np);
    if (ne)
        sh_keys_cmds(s, &len, &ncmds, "DEL", op->evicted.stem, ne);
    vg_assert(len <= bound);
    rc = vg_store_submit_(s, len, ncmds, put_job_done, op);
    if (rc == 0)
        op->out++;
    return rc;
}

/* The next step once a job is done (or at the start). */
static void put_pump(sh_put_op_t *op)
{
    if (op->status == VG_EAGAIN) { /* the store is closing: nothing more may be sent */
        if (op->out == 0)
            put_end(op);
        return;
    }
    if (op->phase == PUT_CHUNKS) {
        while (!op->status && op->next < op->v.chunks && op->out < SH_WINDOW) {
            int rc = put_chunk(op);
            if (rc)
                op->status = rc;
        }
        if (op->out)
            return;
        double took = vg_mono_s() - op->t0;
        if (!op->status && took > op->put.ttl_s / 2.0) { /* the first chunks may expire before PERSIST: no */
            sh_log(op->s, VG_LOG_WARN,
                   "shared %s: version %" PRIu64 ":%" PRIu64 " not published: writing its chunks took %.0f s, over "
                   "half their TTL (%d s); its chunks are deleted", op->name, op->put.epoch, op->put.version, took,
                   op->put.ttl_s);
            op->status = VG_EREDIS;
            op->code = -1;
            op->phase = PUT_TIDY;
            put_tidy(op); /* DEL of its own chunks; if it cannot be sent, they expire */
        } else if (!op->status) {
            op->phase = PUT_SCRIPT;
            op->status = put_script(op);
        }
    } else if (op->out == 0 && op->phase == PUT_SCRIPT) {
        op->phase = PUT_TIDY;
        if (op->status == 0 && op->code < 0)
            op->status = VG_EREDIS; /* an answer the script cannot give */
        if (op->status == 0) {
            op->status = op->code == 0 ? VG_EFENCED : op->code == 1 ? VG_ESTALE : 0;
            int rc = put_tidy(op);
            if (rc && op->code == 2)
                put_tidy_failed(op, rc);
            else if (rc && !op->status)
                op->status = rc;
        }
    }
    if (op->out == 0)
        put_end(op);
}

int vg_shared_publish(vg_store_t *s, const vg_shared_put_t *put, vg_store_cb cb, void *ud)
{
    if (!s || s->closing || !put || !cb || !sh_name_ok(put->name) || !put->data || !put->len || !put->epoch ||
        put->epoch >= SH_NUM_MAX || put->version >= SH_NUM_MAX || put->ttl_s < 0 || put->chunk_bytes > SH_CHUNK_MAX)
        return VG_EINVAL;
    sh_put_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return VG_ENOMEM;
    op->s = s;
    op->t0 = vg_mono_s();
    op->put = *put;
    strcpy(op->name, put->name);
    op->put.name = op->name;
    if (!op->put.chunk_bytes)
        op->put.chunk_bytes = VG_SHARED_CHUNK_DEFAULT;
    if (!op->put.ttl_s)
        op->put.ttl_s = SH_TTL_DEF;
    op->v.b = (vg_shared_blob_t){.epoch = put->epoch, .version = put->version, .bytes = put->len,
                                 .crc = sh_crc(put->data, put->len)};
    op->v.chunk_size = op->put.chunk_bytes;
    op->v.chunks = (put->len + op->v.chunk_size - 1) / op->v.chunk_size;
    if (op->v.chunks > SH_CHUNKS_MAX || sh_keys_bound(s, 3 * op->v.chunks) > ((size_t)1 << 31)) {
        free(op);
        return VG_EINVAL;
    }
    snprintf(op->v.stem, sizeof op->v.stem, "%s:%" PRIu64 ":%" PRIu64 ":%" PRIx64, op->name, put->epoch,
             put->version, sh_nonce());
    op->cb = cb;
    op->ud = ud;
    int rc = put_chunk(op); /* the first job: a failure here is the caller's to see */
    if (rc) {
        free(op);
        return rc;
    }
    put_pump(op);
    return 0;
}

/* ---- fetch -------------------------------------------------------------------------------- */

typedef struct sh_get_op {
    vg_store_t *s;
    char name[VG_SHARED_NAME_MAX + 1];
    vg_shared_blob_t have;
    int has_have;
    sh_ver_t v[2]; /* the manifest's current and previous version */
    int at;        /* the version being read */
    int got;       /* the manifest's reply was an array */
    int fail;      /* the first version's reason for not being the answer */
    void **buf;   /* the caller's buffer: *buf of *cap bytes, grown when a version needs more */
    size_t *cap;
    unsigned char *data; /* *buf while a version is read */
    uint64_t missing, wrong; /* chunks of the version being read: absent, of the wrong size */
    vg_shared_get_cb cb;
    void *ud;
} sh_get_op_t;

static void get_end(sh_get_op_t *op, int status, const vg_shared_blob_t *b, void *data)
{
    op->cb(op->ud, status, status ? NULL : b, data);
    free(op);
}

/* Fields k .. k+6 of the HMGET reply: one version. */
static void get_parse_ver(const redisReply *r, size_t k, const char *name, sh_ver_t *v)
{
    if (r->element[k]->type == REDIS_REPLY_NIL || (r->element[k]->type == REDIS_REPLY_STRING && !r->element[k]->len))
        return; /* none ("" when the script had no previous version) */
    v->present = 1;
    uint64_t crc;
    const redisReply *st = r->element[k + 6];
    if (sh_num(r->element[k], UINT64_MAX, &v->b.epoch) || sh_num(r->element[k + 1], UINT64_MAX, &v->b.version) ||
        sh_num(r->element[k + 2], UINT64_MAX, &v->b.bytes) || sh_num(r->element[k + 3], SH_CHUNKS_MAX, &v->chunks) ||
        sh_num(r->element[k + 4], SH_CHUNK_MAX, &v->chunk_size) || sh_num(r->element[k + 5], UINT32_MAX, &crc) ||
        st->type != REDIS_REPLY_STRING || st->len > SH_STEM_MAX) {
        v->bad = 1;
        return;
    }
    v->b.crc = (uint32_t)crc;
    memcpy(v->stem, st->str, st->len);
    v->stem[st->len] = '\0';
    char want[SH_STEM_MAX + 1];
    int wn = snprintf(want, sizeof want, "%s:%" PRIu64 ":%" PRIu64 ":", name, v->b.epoch, v->b.version);
    if (!v->chunk_size || !v->b.bytes || !v->chunks || v->chunks - 1 != (v->b.bytes - 1) / v->chunk_size ||
        strncmp(want, v->stem, (size_t)wn) || !v->stem[wn])
        v->bad = 1;
}

static void get_manifest_reply(void *ud, uint32_t idx, const redisReply *r)
{
    (void)idx;
    sh_get_op_t *op = ud;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * NFIELDS)
        return;
    op->got = 1;
    get_parse_ver(r, 0, op->name, &op->v[0]);
    get_parse_ver(r, NFIELDS, op->name, &op->v[1]);
}

static void get_chunk_reply(void *ud, uint32_t idx, const redisReply *r)
{
    sh_get_op_t *op = ud;
    const sh_ver_t *v = &op->v[op->at];
    uint64_t at = (uint64_t)idx * v->chunk_size;
    uint64_t n = v->b.bytes - at < v->chunk_size ? v->b.bytes - at : v->chunk_size;
    if (r->type == REDIS_REPLY_NIL)
        op->missing++;
    else if (r->type != REDIS_REPLY_STRING || r->len != n)
        op->wrong++;
    else
        memcpy(op->data + at, r->str, (size_t)n);
}

static void get_chunks_done(void *ud, int status);

/* Reads the version op->at or the next one that can be the answer; ends
 * the operation when none is left. */
static void get_next(sh_get_op_t *op)
{
    vg_store_t *s = op->s;
    for (; op->at < 2; op->at++) {
        sh_ver_t *v = &op->v[op->at];
        if (!v->present)
            continue;
        if (v->bad) {
            op->fail = op->fail ? op->fail : VG_ECORRUPT;
            sh_log(s, VG_LOG_WARN, "shared %s: the manifest's %s version is malformed", op->name,
                   op->at ? "previous" : "current");
            continue;
        }
        if (op->has_have && v->b.epoch == op->have.epoch && v->b.version == op->have.version) {
            get_end(op, 0, &op->have, NULL);
            return;
        }
        size_t bound = sh_keys_bound(s, v->chunks);
        int rc = vg_store_scratch_(s, bound, (size_t)v->chunks);
        if (rc == 0 && (uint64_t)(size_t)v->b.bytes != v->b.bytes)
            rc = VG_ENOMEM;
        if (rc == 0 && (!*op->buf || *op->cap < v->b.bytes)) { /* grown, not realloc'ed: nothing to keep */
            free(*op->buf);
            *op->cap = 0;
            if (!(*op->buf = malloc((size_t)v->b.bytes)))
                rc = VG_ENOMEM;
            else
                *op->cap = (size_t)v->b.bytes;
        }
        op->data = *op->buf;
        if (rc == 0) {
            size_t len = 0;
            uint32_t ncmds = 0;
            sh_keys_cmds(s, &len, &ncmds, "GET", v->stem, v->chunks);
            vg_assert(len <= bound);
            op->missing = op->wrong = 0;
            rc = vg_store_submit_replies_(s, len, ncmds, get_chunk_reply, get_chunks_done, op);
        }
        if (rc)
            get_end(op, rc, NULL, NULL);
        return;
    }
    get_end(op, op->fail ? op->fail : VG_ENOTFOUND, NULL, NULL);
}

static void get_chunks_done(void *ud, int status)
{
    sh_get_op_t *op = ud;
    const sh_ver_t *v = &op->v[op->at];
    if (status == VG_EAGAIN) {
        get_end(op, status, NULL, NULL);
        return;
    }
    int why = status ? status : op->missing ? VG_ENOTFOUND : op->wrong ? VG_ECORRUPT : 0;
    if (!why && sh_crc(op->data, (size_t)v->b.bytes) != v->b.crc)
        why = VG_ECORRUPT;
    if (!why) {
        void *data = op->data;
        get_end(op, 0, &v->b, data);
        return;
    }
    sh_log(op->s, VG_LOG_WARN,
           "shared %s: version %" PRIu64 ":%" PRIu64 " unreadable (%" PRIu64 " of %" PRIu64
           " chunks missing, %" PRIu64 " of the wrong size%s)%s",
           op->name, v->b.epoch, v->b.version, op->missing, v->chunks, op->wrong,
           why == VG_ECORRUPT && !op->wrong ? ", CRC mismatch" : status ? ", an error reply" : "",
           op->at == 0 ? "; trying the previous version" : "");
    if (!op->fail)
        op->fail = why;
    op->at++;
    get_next(op);
}

static void get_manifest_done(void *ud, int status)
{
    sh_get_op_t *op = ud;
    if (status == 0 && !op->got)
        status = VG_EREDIS;
    if (status) {
        get_end(op, status, NULL, NULL);
        return;
    }
    get_next(op);
}

int vg_shared_fetch(vg_store_t *s, const char *name, const vg_shared_blob_t *have, void **buf, size_t *cap,
                    vg_shared_get_cb cb, void *ud)
{
    if (!s || s->closing || !cb || !buf || !cap || !sh_name_ok(name))
        return VG_EINVAL;
    size_t bound = VG_RESP_HDR_OVH + (1 + 2 * NFIELDS) * (VG_RESP_ARG_OVH + 16) + sh_leader_key_bound(s);
    int rc = vg_store_scratch_(s, bound, 1);
    if (rc)
        return rc;
    sh_get_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return VG_ENOMEM;
    op->s = s;
    op->buf = buf;
    op->cap = cap;
    strcpy(op->name, name);
    if (have) {
        op->have = *have;
        op->has_have = 1;
    }
    op->cb = cb;
    op->ud = ud;
    char mkey[9 + VG_SHARED_NAME_MAX + 1];
    snprintf(mkey, sizeof mkey, "manifest:%s", name);
    char *p = s->sbuf;
    s->soff[0] = 0;
    p = vg_resp_hdr(p, 2 + 2 * NFIELDS);
    p = vg_resp_str(p, "HMGET");
    p = sh_leader_key(s, p, mkey);
    for (int i = 0; i < 2 * NFIELDS; i++)
        p = vg_resp_str(p, FIELDS[i]);
    vg_assert((size_t)(p - s->sbuf) <= bound);
    rc = vg_store_submit_replies_(s, (size_t)(p - s->sbuf), 1, get_manifest_reply, get_manifest_done, op);
    if (rc)
        free(op);
    return rc;
}
