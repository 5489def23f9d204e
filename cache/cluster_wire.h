/*
 * cluster_wire.h — what the cluster layer (cache/cluster.c) reads and writes
 * on the wire, as pure functions without state: the slot-map replies
 * (CLUSTER SHARDS and CLUSTER SLOTS), the framing of RESP commands and the
 * formatting of an argv.  Internal to cache/ (trailing underscores);
 * cluster.c calls in, never the other way.
 */
#ifndef VG_CACHE_CLUSTER_WIRE_H
#define VG_CACHE_CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cluster.h"

struct redisReply;

/* What a reply means to the routing (vg_cluster_reply_class_). */
enum { VG_CL_OK_ = 0, VG_CL_MOVED_ = 1, VG_CL_ASK_ = 2, VG_CL_RETRY_ = 3 };

/* One slot range [a, b] of a map and its master's address: host[0..hostlen)
 * (not NUL-terminated; "" or "?" when the server does not know it: the
 * address of the node asked) and port.  Returns 0 to go on, else the parse
 * stops with -1. */
typedef int (*vg_cluster_range_fn_)(void *ud, long long a, long long b, const char *host, size_t hostlen,
                                    long long port);

/* Calls fn for each slot range of r, the reply of CLUSTER SHARDS (shards = 1;
 * the master of each shard by its "role", its "ip" or else "endpoint", and
 * "port") or of CLUSTER SLOTS (shards = 0; [a, b, [ip, port, ...], ...]; a
 * NULL ip, Redis 7's unknown endpoint, is given as "").  A shard or range
 * that is well-formed but unusable — no master, a master without an
 * integer "port" (a TLS-only node), a node entry without an integer port —
 * is skipped: its slots stay without owner.  Returns 0, or -1 when r is not
 * such a reply or fn stopped it (ranges before that were delivered). */
int vg_cluster_map_parse_(const struct redisReply *r, int shards, vg_cluster_range_fn_ fn, void *ud);

/* The RESP command (an array of one or more bulk strings) at buf[*pos..len):
 * moves *pos past it and points *name at its first argument (namelen
 * bytes).  Returns 0, or -1 (not such a command; *pos unchanged). */
int vg_cluster_resp_next_(const char *buf, size_t len, size_t *pos, const char **name, size_t *namelen);

/* 1 when name[0..len) is the command want (ASCII, any case). */
int vg_cluster_resp_is_(const char *name, size_t len, const char *want);

/* 1 when name[0..len) is a command that changes the state of the
 * connection it runs on (MULTI, EXEC, DISCARD, WATCH, SELECT, the
 * SUBSCRIBE family, MONITOR, RESET, AUTH, HELLO, ASKING, READONLY, ...):
 * such a command cannot be a unit of a shared connection. */
int vg_cluster_resp_stateful_(const char *name, size_t len);

/* 1 (and the reason in why[0..whylen)) when argv[0] (argvlen NULL =
 * NUL-terminated) is such a command. */
int vg_cluster_argv_stateful_(const char *const *argv, const size_t *argvlen, char *why, size_t whylen);

/* Checks the commands of a MULTI ... EXEC unit: every key in one slot,
 * argvs well-formed, none stateful.  Returns an upper bound of the unit's
 * RESP bytes (MULTI and EXEC included), or 0 with the reason in why. */
size_t vg_cluster_multi_bytes_(const vg_cluster_cmd_t *cmds, size_t n, char *why, size_t whylen);

/* Writes MULTI, cmds[0..n), EXEC at buf (room: vg_cluster_multi_bytes_)
 * and the start of each of these n + 2 commands in off[0..n+2), the end in
 * off[n+2]. */
void vg_cluster_multi_write_(char *buf, uint32_t *off, const vg_cluster_cmd_t *cmds, size_t n);

/* Checks that buf[0..len) is one unit: one command that is not stateful, or
 * MULTI, commands that are not stateful, EXEC.  Returns the number of
 * commands and, when off is not NULL, their start offsets in off[0..n) and
 * len in off[n]; or 0 with the reason in why[0..whylen). */
size_t vg_cluster_resp_unit_(const char *buf, size_t len, uint32_t *off, char *why, size_t whylen);

/* The routing class of a reply: VG_CL_MOVED_, VG_CL_ASK_, VG_CL_RETRY_
 * (TRYAGAIN, CLUSTERDOWN, LOADING; with server_state also BUSY, OOM,
 * MISCONF, MASTERDOWN, NOREPLICAS, READONLY) or VG_CL_OK_ (anything else,
 * the command's own errors included). */
int vg_cluster_reply_class_(const struct redisReply *r, int server_state);

/* "MOVED <slot> <host>:<port>" or "ASK ..." in why: 0 with *slot, *host
 * (hostlen bytes inside why; may be 0 bytes, or "?": the server does not
 * know the endpoint) and *port; or -1 (malformed). */
int vg_cluster_redirect_parse_(const char *why, unsigned *slot, const char **host, size_t *hostlen, int *port);

/* 1 when err, an error reply to CLUSTER SHARDS, says the server does not
 * know the subcommand (Redis < 7: use CLUSTER SLOTS); 0 for any other error
 * (LOADING, NOAUTH, ...: ask again later). */
int vg_cluster_no_shards_(const char *err);

/* The local address of the connected socket fd as Redis names a client
 * (CLIENT LIST addr, CLIENT KILL ADDR): "ip:port", IPv6 unbracketed, into
 * out.  Returns 0 or -1. */
int vg_cluster_sock_name_(int fd, char *out, size_t outlen);

/* "SET k" or "MULTI/EXEC (SET k ...)": what the unit of ncmds commands at
 * buf (offsets off[0..ncmds]) is, for messages, into out. */
void vg_cluster_unit_describe_(const char *buf, const uint32_t *off, uint32_t ncmds, char *out, size_t outlen);

/* The first 60 bytes of key[0..len), non-printable bytes as '?', into out. */
void vg_cluster_key_text_(const char *key, size_t len, char *out, size_t outlen);

/* 1 when argv holds argc >= 1 non-NULL arguments. */
int vg_cluster_argv_ok_(int argc, const char *const *argv);

/* An upper bound of the RESP bytes of argv[0..argc) (argvlen NULL =
 * NUL-terminated strings), and the writer of those bytes at p (returns the
 * end), with cache/resp.h's writers. */
size_t vg_cluster_argv_bytes_(int argc, const char *const *argv, const size_t *argvlen);
char *vg_cluster_argv_write_(char *p, int argc, const char *const *argv, const size_t *argvlen);

#endif
