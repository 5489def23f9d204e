/*
 * resp.c — the cold part of RESP handling for the store (see resp.h): naming
 * a formatted command in a log line.  The writers are static inline in
 * resp.h (hot path); this reads back a command they wrote, off the hot path
 * (only when Redis answered it with an error), and stops at the first byte
 * that does not fit the format or the output.
 */
#include "cache/resp.h"

void vg_resp_describe(const char *cmd, size_t len, char *out, size_t outlen)
{
    const char *p = cmd, *end = cmd + len;
    size_t w = 0;
    out[0] = '\0';
    if (p >= end || *p != '*')
        return;
    p = memchr(p, '\n', (size_t)(end - p));
    for (int arg = 0; p && arg < 2; arg++) {
        p++;
        if (p >= end || *p != '$')
            break;
        char *e;
        unsigned long n = strtoul(p + 1, &e, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p || (size_t)(end - p - 1) < n)
            break;
        p++;
        size_t take = n > 80 ? 80 : n;
        if (w + take + 2 >= outlen)
            break;
        if (arg)
            out[w++] = ' ';
        memcpy(out + w, p, take);
        w += take;
        out[w] = '\0';
        p += n + 1; /* at '\n' of the CRLF */
    }
    for (size_t i = 0; i < w; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = '?';
}
