/*
 * resp.c — what of RESP handling is not inline in resp.h: the text of a
 * list's score (hot: 100 per list), and naming a formatted command in a log
 * line (cold: only when Redis answered it with an error).
 */
#include "cache/resp.h"

#include <float.h>
#include <math.h>

/*
 * A float's score text without printf (whose %.9g costs ~0.25-0.5 us, a
 * quarter of the loop's time while lists are written at full rate): the 9
 * significant digits are llround(|v| * 10^(8-e)) in double arithmetic,
 * where e is v's decimal exponent.  The product's error is far below the
 * 9th digit, so the digits are the correctly rounded ones or one unit off
 * in the 9th when |v| lies within ~1e-16 of a rounding boundary; either way
 * the text is within 1e-8 relative of v while neighbouring floats are at
 * least 5.9e-8 apart: it reads back as v (strtof), and distinct floats keep
 * distinct, ordered texts.  test_store checks both over a million floats.
 */
static double pow10i(int k)
{
    static const double p[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double r = 1;
    for (; k > 22; k -= 22)
        r *= p[22];
    for (; k < -22; k += 22)
        r /= p[22];
    return k >= 0 ? r * p[k] : r / p[-k];
}

size_t vg_resp_fmt_score(char out[VG_RESP_NUM_MAX], double v)
{
    size_t n = vg_resp_fmt_integral_(out, v);
    if (n)
        return n;
    double a = fabs(v);
    if ((double)(float)v != v || a < FLT_MIN) /* not a float, or subnormal: the general way */
        return vg_resp_fmt_num(out, v);
    int e = (int)floor(log10(a));
    uint64_t d = (uint64_t)llround(a * pow10i(8 - e));
    if (d >= 1000000000u) { /* log10 rounded up to a power of ten, or the product did */
        e++;
        d = (uint64_t)llround(a * pow10i(8 - e));
    } else if (d < 100000000u) {
        e--;
        d = (uint64_t)llround(a * pow10i(8 - e));
    }
    if (d >= 1000000000u) { /* 9.999999995...: rounded up to ten digits */
        e++;
        d /= 10;
    }
    char dig[10];
    int nd = 9;
    for (int k = 8; k >= 0; k--, d /= 10)
        dig[k] = (char)('0' + d % 10);
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    char *p = out;
    if (v < 0)
        *p++ = '-';
    if (e >= -5 && e < 9) { /* plain: 0.000ddd, d.ddd, ddd.d */
        if (e < 0) {
            *p++ = '0';
            *p++ = '.';
            for (int k = -1; k > e; k--)
                *p++ = '0';
            memcpy(p, dig, (size_t)nd);
            p += nd;
        } else {
            for (int k = 0; k <= e; k++)
                *p++ = k < nd ? dig[k] : '0';
            if (nd > e + 1) {
                *p++ = '.';
                memcpy(p, dig + e + 1, (size_t)(nd - e - 1));
                p += nd - e - 1;
            }
        }
    } else { /* d.ddde-XX */
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, dig + 1, (size_t)(nd - 1));
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = e < 0 ? '-' : '+';
        p = vg_resp_u64(p, (uint64_t)(e < 0 ? -e : e));
    }
    return (size_t)(p - out);
}

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
