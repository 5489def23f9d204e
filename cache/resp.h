/*
 * resp.h — writing Redis commands as RESP bytes, for the store (cache/).
 *
 * A command is an array header ("*<argc>\r\n") followed by argc bulk strings
 * ("$<len>\r\n<bytes>\r\n"); every argument carries its length, so the
 * writers are binary-safe.  The store formats a job once into one buffer
 * and hands the bytes to hiredis with redisAsyncFormattedCommand.
 *
 * The writers do not check space: the caller reserves enough bytes first,
 * with the bounds below (VG_RESP_HDR_OVH per header, VG_RESP_ARG_OVH per
 * argument plus its bytes, VG_RESP_NUM_MAX for a formatted number), and each
 * writer returns the position after what it wrote.  They are on the hot path
 * (one call per argument of every history write), hence static inline here.
 */
#ifndef VG_CACHE_RESP_H
#define VG_CACHE_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VG_RESP_ARG_OVH 25 /* '$', <= 20 digits, CRLF, CRLF */
#define VG_RESP_HDR_OVH 23 /* '*', <= 20 digits, CRLF */
#define VG_RESP_NUM_MAX 32 /* longest formatted double */

/* v in decimal, no terminator. */
static inline char *vg_resp_u64(char *p, uint64_t v)
{
    char t[20];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

/* The header of a command of argc arguments. */
static inline char *vg_resp_hdr(char *p, size_t argc)
{
    *p++ = '*';
    p = vg_resp_u64(p, argc);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* One argument made of up to three parts (prefix, "hist:", user); a part
 * of length 0 may be NULL. */
static inline char *vg_resp_arg3(char *p, const char *a, size_t an, const char *b, size_t bn,
                                 const char *c, size_t cn)
{
    *p++ = '$';
    p = vg_resp_u64(p, an + bn + cn);
    *p++ = '\r';
    *p++ = '\n';
    if (an)
        memcpy(p, a, an);
    p += an;
    if (bn)
        memcpy(p, b, bn);
    p += bn;
    if (cn)
        memcpy(p, c, cn);
    p += cn;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* One argument of n bytes. */
static inline char *vg_resp_arg(char *p, const char *a, size_t n)
{
    return vg_resp_arg3(p, a, n, NULL, 0, NULL, 0);
}

/* One argument from a NUL-terminated string. */
static inline char *vg_resp_str(char *p, const char *a) { return vg_resp_arg(p, a, strlen(a)); }

/* An integral v within +-2^53 as plain digits (its length), else 0. */
static inline size_t vg_resp_fmt_integral_(char out[VG_RESP_NUM_MAX], double v)
{
    if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(long long)v))
        return 0;
    char *p = out;
    long long k = (long long)v;
    uint64_t u = (uint64_t)k;
    if (k < 0) {
        *p++ = '-';
        u = (uint64_t)0 - u;
    }
    return (size_t)(vg_resp_u64(p, u) - out);
}

/* A finite double as short text that strtod() reads back exactly (an
 * integral value within +-2^53 as plain digits); returns its length.  out is
 * not necessarily NUL-terminated. */
static inline size_t vg_resp_fmt_num(char out[VG_RESP_NUM_MAX], double v)
{
    size_t k = vg_resp_fmt_integral_(out, v);
    if (k)
        return k;
    int n = snprintf(out, VG_RESP_NUM_MAX, "%.15g", v);
    if (strtod(out, NULL) != v)
        n = snprintf(out, VG_RESP_NUM_MAX, "%.17g", v);
    return (size_t)n;
}

/* A rec:<user> list's score as text (resp.c): an integral value as plain
 * digits; a float (an fp32 score) with at most 9 significant digits, which
 * reads back as the same float and keeps distinct floats apart and in
 * order; any other double as vg_resp_fmt_num writes it. */
size_t vg_resp_fmt_score(char out[VG_RESP_NUM_MAX], double v);

/* One argument: the finite double v as vg_resp_fmt_num() writes it. */
static inline char *vg_resp_num(char *p, double v)
{
    char t[VG_RESP_NUM_MAX];
    return vg_resp_arg(p, t, vg_resp_fmt_num(t, v));
}

/* "NAME KEY" of the RESP command cmd[0..len) for log lines (each argument
 * cut to 80 bytes, control bytes shown as '?'), into out[0..outlen); "" if
 * cmd is not a command.  Always NUL-terminates out (outlen >= 1). */
void vg_resp_describe(const char *cmd, size_t len, char *out, size_t outlen);

#endif
