/*
 * fmt.c — numbers for people (fmt.h).  Plain snprintf arithmetic, no
 * locale: the thousands separator is always ',' and the decimal point '.'.
 * Rounding happens once, at the unit a value is shown in (so 9.96 MB is
 * "10 MB", not "10.0 MB", and 59.6 s is "1 min 00 s").
 */
#include "common/fmt.h"

#include <math.h>
#include <stdio.h>

char *vg_fmt_count(char *buf, size_t len, uint64_t n)
{
    char digits[24];
    int nd = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    char out[32];
    size_t o = 0;
    for (int i = 0; i < nd; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    snprintf(buf, len, "%s", out);
    return buf;
}

char *vg_fmt_bytes(char *buf, size_t len, uint64_t n)
{
    static const char *const units[] = {"kB", "MB", "GB", "TB", "PB"};
    if (n < 1000) {
        snprintf(buf, len, "%llu B", (unsigned long long)n);
        return buf;
    }
    double v = (double)n / 1000;
    int u = 0;
    while (u < 4 && round(v) >= 1000) {
        v /= 1000;
        u++;
    }
    if (round(v * 10) < 100)
        snprintf(buf, len, "%.1f %s", v, units[u]);
    else
        snprintf(buf, len, "%.0f %s", v, units[u]);
    return buf;
}

char *vg_fmt_duration(char *buf, size_t len, double s)
{
    if (!(s >= 0) || !isfinite(s)) {
        snprintf(buf, len, "?");
        return buf;
    }
    if (round(s * 10) < 100) {
        snprintf(buf, len, "%.1f s", s);
        return buf;
    }
    double r = round(s);
    if (r < 60) {
        snprintf(buf, len, "%.0f s", r);
    } else if (r < 3600) {
        snprintf(buf, len, "%.0f min %02.0f s", floor(r / 60), fmod(r, 60));
    } else if ((r = round(s / 60)) < 24 * 60) { /* minutes */
        snprintf(buf, len, "%.0f h %02.0f min", floor(r / 60), fmod(r, 60));
    } else {
        r = round(s / 3600); /* hours */
        snprintf(buf, len, "%.0f d %02.0f h", floor(r / 24), fmod(r, 24));
    }
    return buf;
}
