/*
 * config_parse.c — reading one configuration value's text (config_parse.h):
 * numbers with their ranges, model.noise_input and model.seed, the
 * comma-separated lists, and the edit distance of the key suggestions.
 *
 * Pure functions of their arguments: no table, no file, no global state, so
 * daemon/config.c (the key table, the INI reading and the checks across
 * keys) calls them and they call nothing of it.  Invariants: a refused text
 * leaves the slot as it was; a reason never contains the text (a value may
 * be a password, and reasons end up in logs); vg_strlist_t entries are
 * trimmed, non-empty, free of blanks and control characters, and distinct.
 */
#include "daemon/config_parse.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers --------------------------------------------------------------- */

/* Why v, just read by strto(u)ll up to end (errno 0 before), is not a whole
 * integer in range (`range`: the reason for ERANGE), or NULL. */
static const char *whole_integer(const char *v, const char *end, const char *range)
{
    if (!*v)
        return "empty value: an integer is required";
    if (end == v)
        return "not an integer";
    if (*end)
        return "not an integer (trailing characters)";
    return errno == ERANGE ? range : NULL;
}

/* Parses a whole decimal integer; returns NULL or the reason it is not one. */
static const char *parse_ll(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    const char *why = whole_integer(v, end, "out of range");
    if (!why)
        *out = n;
    return why;
}

static const char *parse_double(const char *v, double *out)
{
    if (!*v)
        return "empty value: a number is required";
    char *end;
    double d = strtod(v, &end);
    if (end == v)
        return "not a number";
    if (*end)
        return "not a number (trailing characters)";
    if (!isfinite(d)) /* "inf", "nan", or an overflow */
        return "not a finite number";
    *out = d;
    return NULL;
}

const char *vg_cfg_parse_int_(const char *v, long long lo, long long hi, int *slot, char *range)
{
    long long n = 0;
    const char *why = parse_ll(v, &n);
    if (why && strcmp(why, "out of range") != 0)
        return why;
    if (why || n < lo || n > hi) {
        if (hi == INT_MAX)
            snprintf(range, VG_CFG_RANGE_LEN, "must be at least %lld", lo);
        else
            snprintf(range, VG_CFG_RANGE_LEN, "must be between %lld and %lld", lo, hi);
        return range;
    }
    *slot = (int)n;
    return NULL;
}

/* Describes a double range as "must be ..." into range. */
static void dbl_range_text(double lo, double hi, int open, char *range)
{
    int lo_open = open & VG_CFG_OPEN_MIN, hi_open = open & VG_CFG_OPEN_MAX;
    if (isinf(hi))
        snprintf(range, VG_CFG_RANGE_LEN, lo_open ? "must be greater than %g" : "must be at least %g", lo);
    else if (!lo_open && !hi_open)
        snprintf(range, VG_CFG_RANGE_LEN, "must be between %g and %g", lo, hi);
    else
        snprintf(range, VG_CFG_RANGE_LEN, "must be %s %g and %s %g", lo_open ? "greater than" : "at least", lo,
                 hi_open ? "less than" : "at most", hi);
}

const char *vg_cfg_parse_double_(const char *v, double lo, double hi, int open, double *slot, char *range)
{
    double d = 0;
    const char *why = parse_double(v, &d);
    if (why)
        return why;
    if (d < lo || d > hi || (d == lo && (open & VG_CFG_OPEN_MIN)) || (d == hi && (open & VG_CFG_OPEN_MAX))) {
        dbl_range_text(lo, hi, open, range);
        return range;
    }
    *slot = d;
    return NULL;
}

const char *vg_cfg_parse_noise_(const char *v, double *slot)
{
    if (strcmp(v, "auto") == 0) {
        *slot = -1.0;
        return NULL;
    }
    double d = 0;
    const char *why = parse_double(v, &d);
    if (!why && d < 0)
        why = "must be \"auto\" or a number of at least 0";
    if (!why)
        *slot = d;
    return why;
}

const char *vg_cfg_parse_u64_(const char *v, uint64_t *slot)
{
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*v && *p == '-')
        return "must be at least 0";
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    const char *why = whole_integer(v, end, "must be between 0 and 18446744073709551615");
    if (!why)
        *slot = (uint64_t)n;
    return why;
}

/* ---- lists ------------------------------------------------------------- */

void vg_cfg_list_free_(vg_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const char *vg_cfg_list_parse_(vg_strlist_t *l, const char *text)
{
    vg_cfg_list_free_(l);
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p)
        return NULL; /* the empty list */
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) {
                vg_cfg_list_free_(l);
                return "an entry has a blank or a control character inside (entries are separated by commas)";
            }
        if (n == 0 || vg_strlist_has(l, p, n)) {
            vg_cfg_list_free_(l);
            return n ? "an entry is given twice" : "an entry is empty (entries are separated by commas)";
        }
        char **v = realloc(l->v, (l->n + 1) * sizeof *v);
        char *d = malloc(n + 1);
        if (!v || !d) {
            free(d);
            if (v)
                l->v = v;
            vg_cfg_list_free_(l);
            return "out of memory";
        }
        memcpy(d, p, n);
        d[n] = '\0';
        l->v = v;
        l->v[l->n++] = d;
        if (!e)
            return NULL;
        p = e + 1;
        while (*p == ' ' || *p == '\t')
            p++;
    }
}

int vg_strlist_has(const vg_strlist_t *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && memcmp(l->v[i], name, len) == 0)
            return 1;
    return 0;
}

/* ---- suggestions ------------------------------------------------------------ */

size_t vg_cfg_edit_distance_(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void vg_cfg_fmt_double_(double d, char *buf, size_t len)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}
