/*
 * dump.h — a sorted set in Redis' DUMP format, for RESTORE.
 *
 * A rec:<user> list written as MULTI/DEL/ZADD/EXEC costs Redis ~100 µs of
 * CPU for 100 members: a ZADD into the compact encoding (listpack) scans
 * the whole listpack for every member it adds, n²/2 comparisons.  RESTORE
 * of a ready-made listpack replaces the key in one atomic command for the
 * price of a checksum and a copy (README, "Redis time per list").
 *
 * The payload is what DUMP of such a key returns on Redis 7.0 and later:
 * the object type (RDB_TYPE_ZSET_LISTPACK), the listpack as an RDB string,
 * the RDB version (10, which every server from 7.0 on accepts), and a
 * CRC-64 (Jones polynomial, reflected, as Redis' crc64.c) of all of it.
 * The listpack holds member, score pairs in ascending (score, member) order,
 * the order Redis keeps; scores as resp.h's vg_resp_fmt_score writes them
 * (what the MULTI/ZADD path sends too, so that both make the same scores).
 */
#ifndef VG_CACHE_DUMP_H
#define VG_CACHE_DUMP_H

#include <stddef.h>
#include <stdint.h>

/* vg_dump_zset's scratch, one per member: its place in the order, its score's text. */
typedef struct vg_dump_tmp {
    size_t order;
    size_t num_len;
    char num[32]; /* VG_RESP_NUM_MAX */
} vg_dump_tmp_t;

/* The largest payload vg_dump_zset() writes for members of these lengths. */
size_t vg_dump_zset_bound(size_t n, const size_t *lens);

/* Writes the payload of the sorted set {(members[i], scores[i])} (members
 * distinct, scores finite, listed best first as in a rec:<user> list; any
 * order works) into out (vg_dump_zset_bound bytes).  `tmp` is scratch of n
 * entries.  Returns the payload's length. */
size_t vg_dump_zset(char *out, const char *const *members, const size_t *lens, const double *scores, size_t n,
                    vg_dump_tmp_t *tmp);

/* CRC-64/Jones as Redis computes it (crc64(0, p, n)); exposed for tests. */
uint64_t vg_dump_crc64(const unsigned char *p, size_t n);

#endif
