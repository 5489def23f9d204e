/*
 * crc16.c — the Redis Cluster key slot (cluster.h): CRC16-XMODEM (CCITT
 * polynomial 0x1021, initial value 0, no reflection, no final xor; check
 * value 0x31C3 for "123456789"), as Redis' own crc16.c, bit by bit rather
 * than by table — keys are short and this is clearer.  The hash tag rule is
 * Redis' keyHashSlot(): the bytes between the first '{' and the first '}'
 * after it, if there are any, else the whole key.
 */
#include <string.h>

#include "cache/cluster.h"

uint16_t vg_cluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned vg_cluster_keyslot(const char *key, size_t len)
{
    const char *open = len ? memchr(key, '{', len) : NULL;
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from)
            return vg_cluster_crc16(key + from, (size_t)(close - key) - from) & (VG_CLUSTER_SLOTS - 1);
    }
    return vg_cluster_crc16(key, len) & (VG_CLUSTER_SLOTS - 1);
}
