/*
 * store_cluster.c — the store's cluster mode (store.h, "Redis Cluster"):
 * the commands of the store's jobs go to the cluster layer of cluster.h as
 * units, each routed by the key it names (the layer waits out server-state
 * errors itself, holding the unit's slot, so a user's writes keep their
 * order); a timer tick watches the slot map's health, which is what "up"
 * means here, and asks the first healthy map's node what the list writes
 * may use (version, RESTORE).
 *
 * store.c keeps the jobs, their order and what every reply means; this file
 * only moves units.  Invariant: a unit is submitted to s->cl until its
 * callback; nothing here outlives s->cl: vg_store_cl_close_ drops the
 * callbacks with it.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cache/cluster.h"
#include "cache/internal.h"

#define CL_TICK_MS 50

/* Reads the RESP bulk string at *p (before end): its bytes into *a, *n, and
 * *p past it.  Returns 0, or -1 when it is no such string. */
static int bulk(const char **p, const char *end, const char **a, size_t *n)
{
    const char *q = *p;
    if (q >= end || *q != '$')
        return -1;
    char *e;
    unsigned long long len = strtoull(q + 1, &e, 10);
    if (e + 2 > end || e[0] != '\r' || len > (unsigned long long)(end - e - 2))
        return -1;
    *a = e + 2;
    *n = (size_t)len;
    *p = e + 2 + len + 2;
    return *p <= end ? 0 : -1;
}

/* The key of the command buf[0..len) as the store writes them: argument 1,
 * or 3 of EVAL (EVAL script numkeys key ...); PING has none ("", slot 0). */
static int unit_key(const char *buf, size_t len, const char **key, size_t *klen)
{
    const char *p = buf, *end = buf + len;
    if (p >= end || *p != '*')
        return -1;
    char *e;
    long argc = strtol(p + 1, &e, 10);
    if (argc < 1 || e + 2 > end)
        return -1;
    p = e + 2;
    const char *name;
    size_t nlen;
    if (bulk(&p, end, &name, &nlen))
        return -1;
    int want = nlen == 4 && memcmp(name, "EVAL", 4) == 0 ? 3 : 1;
    *key = "";
    *klen = 0;
    for (int i = 1; i <= want && i < argc; i++)
        if (bulk(&p, end, key, klen))
            return -1;
    return 0;
}

static void on_unit(void *ud, int status, const redisReply *reply, const char *err)
{
    vg_store_unit_t *u = ud;
    if (status == 0) {
        u->s->cl_reply(u, reply);
        return;
    }
    /* the layer gave up on it (too many redirects): an error of this command, with the reason */
    redisReply fake = {.type = REDIS_REPLY_ERROR, .str = (char *)err, .len = strlen(err)};
    u->s->cl_reply(u, &fake);
}

int vg_store_cl_send_(vg_store_t *s, vg_store_unit_t *u)
{
    const char *key;
    size_t klen;
    if (unit_key(u->buf, u->len, &key, &klen))
        vg_assert(0 && "the store formats every command it sends");
    return vg_cluster_formatted(s->cl, key, klen, u->buf, u->len, on_unit, u);
}

/* The checks of what list writes may use, on the node of slot 0 (store.h,
 * "Redis Cluster"): the version (INFO server), whether RESTORE exists
 * (COMMAND INFO RESTORE) and whether we may run it (ACL WHOAMI, then ACL
 * DRYRUN of the RESTORE probe of reply.c).  Each reply sets what it says
 * in s->hs_major / s->hs_restore_denied as the one-server handshake does;
 * an error reply says nothing (no such check here).  s->cl_info counts the
 * replies still due. */
enum { CHK_SERVER = 0, CHK_RESTORE_CMD = 1, CHK_WHOAMI = 2, CHK_RESTORE = 3 };
typedef struct vg_store_chk_ chk_t;
static void on_check(void *ud, int status, const redisReply *r, const char *err);

static void check(vg_store_t *s, int what, int argc, const char *const *argv)
{
    chk_t *c = &s->cl_chk[what];
    c->s = s;
    c->what = what;
    if (vg_cluster_command(s->cl, "", 0, argc, argv, NULL, on_check, c) == 0)
        s->cl_info++;
    else
        s->cl_checked = 0; /* out of memory: all checks again at a later tick */
}

static void on_check(void *ud, int status, const redisReply *r, const char *err)
{
    chk_t *c = ud;
    vg_store_t *s = c->s;
    (void)err;
    if (s->closing)
        return;
    s->cl_info--;
    if (status || r->type == REDIS_REPLY_ERROR)
        return;
    if (c->what == CHK_SERVER && r->type == REDIS_REPLY_STRING) {
        const char *v = strstr(r->str, "redis_version:");
        s->hs_major = v ? atoi(v + 14) : 0;
    } else if (c->what == CHK_RESTORE_CMD && r->type == REDIS_REPLY_ARRAY &&
               (r->elements == 0 || r->element[0]->type == REDIS_REPLY_NIL)) {
        s->hs_restore_denied = 2;
    } else if (c->what == CHK_WHOAMI && r->type == REDIS_REPLY_STRING) {
        vg_store_probe_t pr;
        if (vg_store_probe_(s, vg_store_probe_count_(), r->str, &pr))
            check(s, CHK_RESTORE, pr.argc, pr.argv);
    } else if (c->what == CHK_RESTORE && r->type == REDIS_REPLY_STRING && strcmp(r->str, "OK") != 0 &&
               !s->hs_restore_denied) {
        s->hs_restore_denied = 1;
    }
}

static void start_checks(vg_store_t *s)
{
    const char *info[2] = {"INFO", "server"}, *cmdinfo[3] = {"COMMAND", "INFO", "RESTORE"},
               *whoami[2] = {"ACL", "WHOAMI"};
    s->hs_major = 0;
    s->hs_restore_denied = 0;
    s->cl_checked = 1;
    check(s, CHK_SERVER, 2, info);
    check(s, CHK_RESTORE_CMD, 3, cmdinfo);
    check(s, CHK_WHOAMI, 2, whoami);
}

static void on_tick(uv_timer_t *t)
{
    vg_store_t *s = t->data;
    if (s->closing || s->fatal)
        return;
    int up = vg_cluster_healthy(s->cl);
    if (up && !s->cl_checked && s->cl_info == 0)
        start_checks(s);
    s->cl_up(s, up && s->cl_checked && s->cl_info == 0);
}

int vg_store_cl_init_(vg_store_t *s, const vg_store_cfg_t *cfg, vg_store_unit_reply_fn on_reply, vg_store_cl_up_fn on_up,
                      char *err, size_t errlen)
{
    s->cl_reply = on_reply;
    s->cl_up = on_up;
    char seed[300];
    snprintf(seed, sizeof seed, "%s:%d", s->host, s->port);
    const char *seeds[1] = {seed};
    vg_cluster_cfg_t cc = {.seeds = seeds,
                           .nseeds = 1,
                           .password = cfg->password,
                           .timeout_ms = cfg->connect_timeout_ms,
                           .reconnect_min_ms = s->rmin,
                           .reconnect_max_ms = s->rmax,
                           .retry_min_ms = s->rmin,
                           .retry_server_state = 1,
                           .log = cfg->log,
                           .ud = cfg->ud};
    int rc = vg_cluster_init(&s->cl, s->loop, &cc, err, errlen);
    if (rc)
        return rc;
    uv_timer_start(&s->timer, on_tick, 0, CL_TICK_MS);
    return 0;
}

void vg_store_cl_close_(vg_store_t *s)
{
    vg_cluster_close(s->cl);
    s->cl = NULL;
}
