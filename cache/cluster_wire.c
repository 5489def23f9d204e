/*
 * cluster_wire.c — see cluster_wire.h.  The map replies are RESP2: a map
 * (CLUSTER SHARDS' shards and nodes) is a flat array of name, value.  Every
 * element is type-checked before use, so a reply of an unexpected shape is
 * refused, never read out of bounds.  The RESP framing reads only inside
 * the buffer it is given (lengths are parsed by hand, not with strtoul,
 * which would skip whitespace and need a terminator).
 */
#include "cache/cluster_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "cache/resp.h"

/* The value of field name in the map m, or NULL. */
static const redisReply *field(const redisReply *m, const char *name)
{
    if (!m || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING && strcmp(m->element[i]->str, name) == 0)
            return m->element[i + 1];
    return NULL;
}

static int is_int(const redisReply *r) { return r && r->type == REDIS_REPLY_INTEGER; }
static int is_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

/* The master of a shard's "nodes", or NULL. */
static const redisReply *shard_master(const redisReply *nodes)
{
    for (size_t k = 0; nodes && nodes->type == REDIS_REPLY_ARRAY && k < nodes->elements; k++) {
        const redisReply *role = field(nodes->element[k], "role");
        if (is_str(role) && strcmp(role->str, "master") == 0)
            return nodes->element[k];
    }
    return NULL;
}

static int parse_shards(const redisReply *r, vg_cluster_range_fn_ fn, void *ud)
{
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *slots = field(r->element[i], "slots");
        if (!slots || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2)
            return -1;
        const redisReply *m = shard_master(field(r->element[i], "nodes"));
        const redisReply *port = field(m, "port"), *ip = field(m, "ip");
        if (!is_str(ip))
            ip = field(m, "endpoint");
        if (!is_int(port) || !is_str(ip))
            continue; /* no slots, no master or no plain port: its slots stay without owner */
        for (size_t k = 0; k < slots->elements; k += 2)
            if (!is_int(slots->element[k]) || !is_int(slots->element[k + 1]) ||
                fn(ud, slots->element[k]->integer, slots->element[k + 1]->integer, ip->str, ip->len,
                   port->integer) != 0)
                return -1;
    }
    return 0;
}

static int parse_slots(const redisReply *r, vg_cluster_range_fn_ fn, void *ud)
{
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !is_int(e->element[0]) || !is_int(e->element[1]) ||
            e->element[2]->type != REDIS_REPLY_ARRAY)
            return -1;
        const redisReply *nd = e->element[2];
        const redisReply *ip = nd->elements >= 2 ? nd->element[0] : NULL;
        const redisReply *port = nd->elements >= 2 ? nd->element[1] : NULL;
        int nil = ip && ip->type == REDIS_REPLY_NIL; /* unknown endpoint: the node asked */
        if (!is_int(port) || !(is_str(ip) || nil))
            continue; /* its slots stay without owner */
        if (fn(ud, e->element[0]->integer, e->element[1]->integer, nil ? "" : ip->str, nil ? 0 : ip->len,
               port->integer) != 0)
            return -1;
    }
    return 0;
}

int vg_cluster_map_parse_(const redisReply *r, int shards, vg_cluster_range_fn_ fn, void *ud)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    return shards ? parse_shards(r, fn, ud) : parse_slots(r, fn, ud);
}

/* A decimal length after the type byte at p, then CRLF, inside [p, end):
 * returns the position after the CRLF and *v, or NULL. */
static const char *length(const char *p, const char *end, char type, size_t *v)
{
    if (p >= end || *p++ != type)
        return NULL;
    size_t n = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 9; p++, digits++) /* < 1e9: no overflow anywhere */
        n = n * 10 + (size_t)(*p - '0');
    if (!digits || end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return NULL;
    *v = n;
    return p + 2;
}

int vg_cluster_resp_next_(const char *buf, size_t len, size_t *pos, const char **name, size_t *namelen)
{
    const char *end = buf + len;
    size_t argc, n;
    const char *p = length(buf + *pos, end, '*', &argc);
    if (!p || argc == 0)
        return -1;
    for (size_t a = 0; a < argc; a++) {
        p = length(p, end, '$', &n);
        if (!p || (size_t)(end - p) < n + 2 || p[n] != '\r' || p[n + 1] != '\n')
            return -1;
        if (a == 0) {
            *name = p;
            *namelen = n;
        }
        p += n + 2;
    }
    *pos = (size_t)(p - buf);
    return 0;
}

int vg_cluster_resp_is_(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

int vg_cluster_resp_stateful_(const char *name, size_t len)
{
    static const char *const names[] = {"MULTI",       "EXEC",         "DISCARD",      "WATCH",     "UNWATCH",
                                        "SELECT",      "SUBSCRIBE",    "PSUBSCRIBE",   "SSUBSCRIBE", "UNSUBSCRIBE",
                                        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",      "RESET",     "QUIT",
                                        "AUTH",        "HELLO",        "ASKING",       "READONLY",  "READWRITE",
                                        "SYNC",        "PSYNC",        "REPLCONF"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (vg_cluster_resp_is_(name, len, names[i]))
            return 1;
    return 0;
}

int vg_cluster_argv_stateful_(const char *const *argv, const size_t *argvlen, char *why, size_t whylen)
{
    size_t len = argvlen ? argvlen[0] : strlen(argv[0]);
    if (!vg_cluster_resp_stateful_(argv[0], len))
        return 0;
    snprintf(why, whylen, "'%.*s' changes the state of the connection: refused as a command",
             (int)(len < 32 ? len : 32), argv[0]);
    return 1;
}

size_t vg_cluster_multi_bytes_(const vg_cluster_cmd_t *cmds, size_t n, char *why, size_t whylen)
{
    unsigned slot0 = vg_cluster_keyslot(cmds[0].key, cmds[0].keylen);
    size_t bytes = 2 * vg_cluster_argv_bytes_(1, (const char *const[]){"MULTI"}, NULL);
    for (size_t i = 0; i < n; i++) {
        if ((!cmds[i].key && cmds[i].keylen) || !vg_cluster_argv_ok_(cmds[i].argc, cmds[i].argv)) {
            snprintf(why, whylen, "MULTI/EXEC: command %zu: no arguments or a NULL pointer", i);
            return 0;
        }
        if (vg_cluster_argv_stateful_(cmds[i].argv, cmds[i].argvlen, why, whylen))
            return 0;
        unsigned s = vg_cluster_keyslot(cmds[i].key, cmds[i].keylen);
        if (s != slot0) {
            char k0[64], k1[64];
            vg_cluster_key_text_(cmds[0].key, cmds[0].keylen, k0, sizeof k0);
            vg_cluster_key_text_(cmds[i].key, cmds[i].keylen, k1, sizeof k1);
            snprintf(why, whylen,
                     "MULTI/EXEC across slots refused: key '%s' is in slot %u, key '%s' in slot %u "
                     "(a transaction must stay in one slot: use a hash tag)",
                     k0, slot0, k1, s);
            return 0;
        }
        bytes += vg_cluster_argv_bytes_(cmds[i].argc, cmds[i].argv, cmds[i].argvlen);
    }
    return bytes;
}

void vg_cluster_multi_write_(char *buf, uint32_t *off, const vg_cluster_cmd_t *cmds, size_t n)
{
    off[0] = 0;
    char *p = vg_cluster_argv_write_(buf, 1, (const char *const[]){"MULTI"}, NULL);
    for (size_t i = 0; i < n; i++) {
        off[i + 1] = (uint32_t)(p - buf);
        p = vg_cluster_argv_write_(p, cmds[i].argc, cmds[i].argv, cmds[i].argvlen);
    }
    off[n + 1] = (uint32_t)(p - buf);
    p = vg_cluster_argv_write_(p, 1, (const char *const[]){"EXEC"}, NULL);
    off[n + 2] = (uint32_t)(p - buf);
}

size_t vg_cluster_resp_unit_(const char *buf, size_t len, uint32_t *off, char *why, size_t whylen)
{
    size_t pos = 0, n = 0, namelen = 0;
    const char *name = NULL;
    int multi = 0, closed = 0;
    while (pos < len) {
        size_t at = pos;
        if (vg_cluster_resp_next_(buf, len, &pos, &name, &namelen) != 0) {
            snprintf(why, whylen, "not a RESP command at byte %zu", pos);
            return 0;
        }
        if (off)
            off[n] = (uint32_t)at;
        int first = n++ == 0;
        if (first && (multi = vg_cluster_resp_is_(name, namelen, "MULTI")))
            continue;
        if (multi && pos == len && vg_cluster_resp_is_(name, namelen, "EXEC")) {
            closed = 1;
            continue;
        }
        if (!first && !multi) {
            snprintf(why, whylen, "expected one command or one MULTI ... EXEC, got more than one command");
            return 0;
        }
        if (vg_cluster_resp_stateful_(name, namelen)) {
            snprintf(why, whylen, "'%.*s' changes the state of the connection: refused %s", (int)(namelen < 32 ? namelen : 32),
                     name, multi ? "inside MULTI ... EXEC" : "as a unit");
            return 0;
        }
    }
    if (n == 0 || (multi && !closed)) {
        snprintf(why, whylen, n ? "MULTI without its EXEC" : "no command");
        return 0;
    }
    if (off)
        off[n] = (uint32_t)len;
    return n;
}

int vg_cluster_reply_class_(const redisReply *r, int server_state)
{
    static const char *const state[] = {"BUSY", "OOM", "MISCONF", "MASTERDOWN", "NOREPLICAS", "READONLY"};
    if (r->type != REDIS_REPLY_ERROR)
        return VG_CL_OK_;
    for (size_t i = 0; server_state && i < sizeof state / sizeof state[0]; i++) {
        size_t n = strlen(state[i]);
        if (strncmp(r->str, state[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0'))
            return VG_CL_RETRY_;
    }
    if (strncmp(r->str, "MOVED ", 6) == 0)
        return VG_CL_MOVED_;
    if (strncmp(r->str, "ASK ", 4) == 0)
        return VG_CL_ASK_;
    if (strncmp(r->str, "TRYAGAIN", 8) == 0 || strncmp(r->str, "CLUSTERDOWN", 11) == 0 ||
        strncmp(r->str, "LOADING", 7) == 0)
        return VG_CL_RETRY_;
    return VG_CL_OK_; /* the command's own error: the caller's */
}

int vg_cluster_redirect_parse_(const char *why, unsigned *slot, const char **host, size_t *hostlen, int *port)
{
    const char *sp = strchr(why, ' ');
    if (!sp || sp[1] < '0' || sp[1] > '9')
        return -1;
    char *end;
    unsigned long s = strtoul(sp + 1, &end, 10);
    if (s >= 16384 || *end != ' ')
        return -1;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon || colon[1] < '0' || colon[1] > '9')
        return -1;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return -1;
    *slot = (unsigned)s;
    *host = addr;
    *hostlen = (size_t)(colon - addr);
    *port = (int)p;
    return 0;
}

int vg_cluster_no_shards_(const char *err)
{
    for (const char *p = err; *p; p++)
        if (strncasecmp(p, "unknown subcommand", 18) == 0 || strncasecmp(p, "wrong cluster subcommand", 24) == 0)
            return 1;
    return 0;
}

int vg_cluster_sock_name_(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    char ip[INET6_ADDRSTRLEN];
    int port;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    if (a.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a;
        if (!inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip))
            return -1;
        port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a;
        if (!inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip))
            return -1;
        port = ntohs(v6->sin6_port);
    } else {
        return -1; /* a unix socket: no address to filter on */
    }
    int n = snprintf(out, outlen, "%s:%d", ip, port);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

void vg_cluster_unit_describe_(const char *buf, const uint32_t *off, uint32_t ncmds, char *out, size_t outlen)
{
    uint32_t i = ncmds > 1 ? 1 : 0;
    char what[200];
    vg_resp_describe(buf + off[i], off[i + 1] - off[i], what, sizeof what);
    snprintf(out, outlen, ncmds > 1 ? "MULTI/EXEC (%s ...)" : "%s", what);
}

void vg_cluster_key_text_(const char *key, size_t len, char *out, size_t outlen)
{
    size_t n = len < 60 ? len : 60;
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e ? '?' : key[i];
    out[n] = '\0';
}

int vg_cluster_argv_ok_(int argc, const char *const *argv)
{
    if (argc < 1 || !argv)
        return 0;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return 0;
    return 1;
}

size_t vg_cluster_argv_bytes_(int argc, const char *const *argv, const size_t *argvlen)
{
    size_t b = VG_RESP_HDR_OVH;
    for (int i = 0; i < argc; i++)
        b += VG_RESP_ARG_OVH + (argvlen ? argvlen[i] : strlen(argv[i]));
    return b;
}

char *vg_cluster_argv_write_(char *p, int argc, const char *const *argv, const size_t *argvlen)
{
    p = vg_resp_hdr(p, (size_t)argc);
    for (int i = 0; i < argc; i++)
        p = vg_resp_arg(p, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    return p;
}
