/*
 * reply.c — what a Redis reply means to the store (store.h, "Errors Redis
 * answers"): ok, a data error of one command, a server-state error to wait
 * out, READONLY (waited out for a while), or a refusal — the server is not
 * ours to write.
 *
 * The class is read from the error's first word (Redis' error code), so a
 * message text that changes between Redis versions does not change it.  An
 * unknown code is a data error: the command is refused, the others run —
 * the safe reading for a code this file has never seen, since it neither
 * stalls the stream nor stops the daemon.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cache/internal.h"

static int code_is(const char *msg, size_t len, const char *const *codes, size_t n)
{
    size_t w = 0;
    while (w < len && msg[w] != ' ')
        w++;
    for (size_t i = 0; i < n; i++)
        if (strlen(codes[i]) == w && memcmp(codes[i], msg, w) == 0)
            return 1;
    return 0;
}

static int error_class(const char *msg, size_t len, int has_password)
{
    static const char *const transient[] = {"LOADING",    "BUSY",     "MISCONF",    "OOM",
                                            "MASTERDOWN", "TRYAGAIN", "NOREPLICAS", "CLUSTERDOWN"};
    static const char *const refused[] = {"MOVED", "ASK", "CROSSSLOT", "NOPERM"};
    static const char *const noauth[] = {"NOAUTH"}, *const readonly[] = {"READONLY"};
    if (code_is(msg, len, transient, sizeof transient / sizeof transient[0]))
        return VG_RC_TRANSIENT;
    if (code_is(msg, len, readonly, 1))
        return VG_RC_READONLY;
    if (code_is(msg, len, noauth, 1))
        return has_password ? VG_RC_TRANSIENT : VG_RC_REFUSED;
    if (code_is(msg, len, refused, sizeof refused / sizeof refused[0]))
        return VG_RC_REFUSED;
    return VG_RC_DATA;
}

int vg_store_classify_(const redisReply *r, int has_password, const char **msg)
{
    if (r->type == REDIS_REPLY_ERROR) {
        *msg = r->str;
        return error_class(r->str, r->len, has_password);
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return VG_RC_OK;
    /* EXEC: an error inside the transaction is an element; the gravest wins */
    int worst = VG_RC_OK;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_ERROR)
            continue;
        int c = error_class(e->str, e->len, has_password);
        if (c > worst) {
            worst = c;
            *msg = e->str;
        }
    }
    return worst;
}

/* ---- the connect-time checks (store.h: INFO cluster, ACL DRYRUN) --------------------------- */

/* Each kind of command the store sends, as ACL DRYRUN checks it: the
 * command, the key (after the prefix; a user id is appended to per-user
 * ones) and the other arguments. */
static const struct {
    const char *cmd, *key;
    int per_user, ordered_only, nargs;
    const char *args[3];
} PROBES[] = {
    {"ZADD", "hist:", 1, 0, 3, {"GT", "1", "x"}},
    {"ZREMRANGEBYRANK", "hist:", 1, 0, 2, {"0", "-2"}},
    {"ZRANGE", "hist:", 1, 0, 3, {"0", "-1", "WITHSCORES"}},
    {"ZADD", "vaegan:users", 0, 0, 3, {"GT", "1", "x"}},
    {"ZRANGE", "vaegan:users", 0, 0, 2, {"0", "-1"}},
    {"EVAL", "rec:", 1, 0, 0, {0}},
    {"DEL", "rec:", 1, 0, 0, {0}},
    {"ZADD", "rec:", 1, 0, 2, {"1", "x"}},
    {"PEXPIRE", "rec:", 1, 0, 1, {"1"}},
    {"GET", "recver:", 1, 0, 0, {0}},
    {"SET", "recver:", 1, 0, 1, {"1"}},
    {"HSET", "vaegan:model", 0, 0, 2, {"f", "v"}},
    {"ZADD", "vaegan:forgotten", 0, 0, 3, {"GT", "1", "x"}},
    {"ZRANGE", "rm:", 1, 1, 2, {"0", "-1"}},
    {"EVAL", "hist:", 1, 1, 0, {0}},
    {"RESTORE", "rec:", 1, 0, 3, {"0", "x", "REPLACE"}}, /* last: not fatal (vg_store_probe_count_) */
};
#define PROBE_USER "vaegan-acl-check"

size_t vg_store_probe_count_(void) { return sizeof PROBES / sizeof PROBES[0] - 1; }

int vg_store_probe_(const vg_store_t *s, size_t i, const char *user, vg_store_probe_t *out)
{
    if (i > vg_store_probe_count_() || (PROBES[i].ordered_only && !s->ordered))
        return 0;
    snprintf(out->key, sizeof out->key, "%s%s%s", s->prefix ? s->prefix : "", PROBES[i].key,
             PROBES[i].per_user ? PROBE_USER : "");
    int n = 0;
    out->argv[n++] = "ACL";
    out->argv[n++] = "DRYRUN";
    out->argv[n++] = user;
    out->argv[n++] = PROBES[i].cmd;
    if (strcmp(PROBES[i].cmd, "EVAL") == 0) { /* EVAL script 2 hist:<u> rm:<u>, or rec:<u> recver:<u> */
        snprintf(out->key2, sizeof out->key2, "%s%s" PROBE_USER, s->prefix ? s->prefix : "",
                 strcmp(PROBES[i].key, "rec:") == 0 ? "recver:" : "rm:");
        out->argv[n++] = "return 0";
        out->argv[n++] = "2";
        out->argv[n++] = out->key;
        out->argv[n++] = out->key2;
    } else {
        out->argv[n++] = out->key;
        for (int a = 0; a < PROBES[i].nargs; a++)
            out->argv[n++] = PROBES[i].args[a];
    }
    for (int a = 0; a < n; a++)
        out->lens[a] = strlen(out->argv[a]);
    out->argc = n;
    snprintf(out->what, sizeof out->what, "%s %s", PROBES[i].cmd, out->key);
    return 1;
}

const char *vg_store_probe_refusal_(const redisReply *r, int is_info)
{
    if (is_info) /* INFO cluster */
        return r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1")
                   ? "cluster_enabled:1: this is a Redis Cluster node; set redis.cluster = yes to write to "
                     "the cluster"
                   : NULL;
    /* ACL DRYRUN: +OK, or a text saying why not; an error = no such check here */
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}
