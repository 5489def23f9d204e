/*
 * dump.c — a sorted set as a DUMP payload (dump.h).
 *
 * Byte layouts (Redis 7.0 sources: listpack.c, rdb.c, cluster.c's
 * createDumpPayload):
 *   payload  = type 17 (RDB_TYPE_ZSET_LISTPACK), rdb-string(listpack),
 *              RDB version 10 (2 bytes little-endian), CRC-64 (8 bytes LE)
 *   rdb-string = length (00xxxxxx | 01xxxxxx xxxxxxxx | 0x80 + 4 bytes BE),
 *              then the bytes
 *   listpack = total bytes (4 LE), entry count (2 LE; 65535 = unknown),
 *              entries, 0xFF
 *   entry    = string header (0x80|len for < 64 bytes; 0xE0|len>>8, len for
 *              < 4096; 0xF0 + 4 bytes LE), the bytes, then the entry's
 *              length again as a backward varint (7 bits per byte, most
 *              significant first, every byte but the first with 0x80)
 * CRC-64: no Debian library computes Redis' variant (zlib has CRC-32,
 * liblzma the ECMA-182 polynomial), so it is the usual table-driven
 * reflected CRC of polynomial 0xad93d23594c935a9, checked against Redis'
 * own check value and against RESTORE in test_store.
 */
#include "cache/dump.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache/resp.h"
#include "common/errors.h"

#define RDB_TYPE_ZSET_LISTPACK 17
#define RDB_VERSION 10

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    const uint64_t poly = 0x95ac9329ac4bc9b5ULL; /* 0xad93d23594c935a9 bit-reversed */
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ poly : c >> 1;
        crc_table[i] = c;
    }
}

uint64_t vg_dump_crc64(const unsigned char *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    uint64_t crc = 0;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(uint8_t)crc ^ p[i]] ^ (crc >> 8);
    return crc;
}

/* A listpack string entry's header length for `len` bytes. */
static size_t str_hdr(size_t len) { return len < 64 ? 1 : len < 4096 ? 2 : 5; }
/* The backward length's bytes for an entry of l bytes. */
static size_t backlen_size(size_t l) { return l <= 127 ? 1 : l < 16383 ? 2 : l < 2097151 ? 3 : l < 268435455 ? 4 : 5; }

static unsigned char *put_entry(unsigned char *p, const char *s, size_t len)
{
    unsigned char *start = p;
    if (len < 64) {
        *p++ = (unsigned char)(0x80 | len);
    } else if (len < 4096) {
        *p++ = (unsigned char)(0xe0 | (len >> 8));
        *p++ = (unsigned char)(len & 0xff);
    } else {
        *p++ = 0xf0;
        for (int k = 0; k < 4; k++)
            *p++ = (unsigned char)(len >> (8 * k));
    }
    memcpy(p, s, len);
    p += len;
    size_t l = (size_t)(p - start), nb = backlen_size(l);
    for (size_t k = 0; k < nb; k++) /* most significant 7 bits first; all but the first byte flagged */
        *p++ = (unsigned char)(((l >> (7 * (nb - 1 - k))) & 127) | (k ? 128 : 0));
    return p;
}

static size_t entry_size(size_t len)
{
    size_t l = str_hdr(len) + len;
    return l + backlen_size(l);
}

size_t vg_dump_zset_bound(size_t n, const size_t *lens)
{
    size_t b = 1 + 5 + 7 + 2 + 8; /* type, rdb length, listpack header and end, version, CRC */
    for (size_t i = 0; i < n; i++)
        b += entry_size(lens[i]) + entry_size(VG_RESP_NUM_MAX);
    return b;
}

/* (score, member) of a below b's, as Redis orders a sorted set. */
static int zbelow(const char *const *m, const size_t *lens, const double *sc, size_t a, size_t b)
{
    if (sc[a] != sc[b])
        return sc[a] < sc[b];
    size_t n = lens[a] < lens[b] ? lens[a] : lens[b];
    int c = memcmp(m[a], m[b], n);
    return c ? c < 0 : lens[a] < lens[b];
}

_Static_assert(sizeof ((vg_dump_tmp_t *)0)->num == VG_RESP_NUM_MAX, "vg_dump_tmp_t.num holds a formatted score");

size_t vg_dump_zset(char *out, const char *const *members, const size_t *lens, const double *scores, size_t n,
                    vg_dump_tmp_t *tmp)
{
    /* ascending (score, member): a best-first list reversed is sorted but
     * for runs of equal scores, so insertion sort costs ~n */
    for (size_t i = 0; i < n; i++) {
        size_t x = n - 1 - i, j = i;
        while (j > 0 && zbelow(members, lens, scores, x, tmp[j - 1].order)) {
            tmp[j].order = tmp[j - 1].order;
            j--;
        }
        tmp[j].order = x;
    }
    size_t lp_bytes = 7;
    for (size_t i = 0; i < n; i++) {
        tmp[i].num_len = vg_resp_fmt_score(tmp[i].num, scores[i]);
        lp_bytes += entry_size(lens[i]) + entry_size(tmp[i].num_len);
    }
    unsigned char *p = (unsigned char *)out;
    *p++ = RDB_TYPE_ZSET_LISTPACK;
    if (lp_bytes < 64) {
        *p++ = (unsigned char)lp_bytes;
    } else if (lp_bytes < 16384) {
        *p++ = (unsigned char)(0x40 | (lp_bytes >> 8));
        *p++ = (unsigned char)(lp_bytes & 0xff);
    } else {
        *p++ = 0x80;
        for (int k = 3; k >= 0; k--)
            *p++ = (unsigned char)(lp_bytes >> (8 * k));
    }
    unsigned char *lp = p;
    size_t count = 2 * n < 65535 ? 2 * n : 65535;
    for (int k = 0; k < 4; k++)
        *p++ = (unsigned char)(lp_bytes >> (8 * k));
    *p++ = (unsigned char)(count & 0xff);
    *p++ = (unsigned char)(count >> 8);
    for (size_t i = 0; i < n; i++) {
        size_t x = tmp[i].order;
        p = put_entry(p, members[x], lens[x]);
        p = put_entry(p, tmp[x].num, tmp[x].num_len);
    }
    *p++ = 0xff;
    vg_assert((size_t)(p - lp) == lp_bytes);
    *p++ = RDB_VERSION & 0xff;
    *p++ = RDB_VERSION >> 8;
    uint64_t crc = vg_dump_crc64((const unsigned char *)out, (size_t)(p - (unsigned char *)out));
    for (int k = 0; k < 8; k++)
        *p++ = (unsigned char)(crc >> (8 * k));
    return (size_t)(p - (unsigned char *)out);
}
