/*
 * reader.c — replay-file readers (see reader.h).
 *
 * One loop over getline() lines for every format; a per-format function turns
 * a line into an event or a reason.  Events and CSV records go through the
 * same code as Kafka messages (event.c), so a replayed file and a live stream
 * accept exactly the same values.  The MovieLens formats are split on their
 * separator here (tab, "::") or by libcsv (ratings.csv); their numbers are
 * checked with vg_event_number (strtod with full consumption).
 *
 * Invariants: only the current line is held in memory (the getline buffer,
 * reused); the stats always describe what was read, also on error; the file
 * is closed on every path (stdin is left open).
 */
#include "stream/reader.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

static const char *const format_names[] = {"json", "csv", "ml100k", "ml1m", "mlcsv"};
#define N_FORMATS (sizeof format_names / sizeof format_names[0])

int vg_format_from_name(const char *name, vg_format_t *out)
{
    if (!name)
        return VG_EINVAL;
    for (size_t i = 0; i < N_FORMATS; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (vg_format_t)i;
            return 0;
        }
    }
    return VG_EINVAL;
}

const char *vg_format_name(vg_format_t f)
{
    return (unsigned)f < N_FORMATS ? format_names[f] : "?";
}

/* s[0..len) as a short C-like quoted string for messages: at most 32 bytes,
 * non-printable bytes as \xNN, "..." when cut. */
static void quote(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0, shown = len < 32 ? len : 32;
    vg_assert(cap >= 8);
    dst[o++] = '"';
    for (size_t i = 0; i < shown && o + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\')
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    if (shown < len && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

/* ---- MovieLens rows ---------------------------------------------------------- */

typedef struct ml_fields {
    size_t n; /* all fields seen */
    const char *p[4];
    size_t len[4];
} ml_fields_t;

static const char *const ml_names[4] = {"user", "item", "rating", "timestamp"};

/* Splits line[0..len) on sep (1 or 2 bytes). */
static void ml_split(const char *line, size_t len, const char *sep, size_t seplen, ml_fields_t *f)
{
    size_t start = 0, i = 0;
    f->n = 0;
    while (i + seplen <= len) {
        if (memcmp(line + i, sep, seplen) == 0) {
            if (f->n < 4) {
                f->p[f->n] = line + start;
                f->len[f->n] = i - start;
            }
            f->n++;
            i += seplen;
            start = i;
        } else {
            i++;
        }
    }
    if (f->n < 4) {
        f->p[f->n] = line + start;
        f->len[f->n] = len - start;
    }
    f->n++;
}

/* Four fields -> an event with a rating. */
static int ml_event(const ml_fields_t *f, vg_event_t *ev, char *reason, size_t rl)
{
    const char *why;
    char q[48];
    for (int k = 0; k < 2; k++) {
        if (vg_event_id_valid(f->p[k], f->len[k], &why) != 0)
            return vg_errf(reason, rl, VG_EFORMAT, "field %d (%s) %s", k + 1, ml_names[k], why);
    }
    double num[2];
    for (int k = 2; k < 4; k++) {
        if (vg_event_number(f->p[k], f->len[k], &num[k - 2]) != 0) {
            quote(q, sizeof q, f->p[k], f->len[k]);
            return vg_errf(reason, rl, VG_EFORMAT, "field %d (%s) is not a number: %s", k + 1, ml_names[k], q);
        }
    }
    memcpy(ev->user, f->p[0], f->len[0]);
    ev->user[f->len[0]] = '\0';
    ev->user_len = f->len[0];
    memcpy(ev->item, f->p[1], f->len[1]);
    ev->item[f->len[1]] = '\0';
    ev->item_len = f->len[1];
    memcpy(ev->type, "click", sizeof "click");
    ev->rating = num[0];
    ev->ts = num[1];
    ev->has_rating = 1;
    return 0;
}

static const char MLCSV_HEADER[] = "userId,movieId,rating,timestamp";
static const char CSV_HEADER[] = "user,item,ts";

static int line_is(const char *line, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(line, lit, len) == 0;
}

/* Returns 0 (event in *ev), 1 (a header line: skip), VG_EFORMAT (reason
 * set) or VG_ENOMEM. */
static int parse_line(vg_format_t fmt, int first, const char *line, size_t len, vg_event_t *ev,
                      char *reason, size_t rl)
{
    ml_fields_t f;
    int rc;
    switch (fmt) {
    case VG_FMT_JSON:
        return vg_event_parse_json(line, len, ev, reason, rl);
    case VG_FMT_CSV:
        if (first && line_is(line, len, CSV_HEADER))
            return 1;
        return vg_event_parse_csv(line, len, ev, reason, rl);
    case VG_FMT_ML100K:
        ml_split(line, len, "\t", 1, &f);
        if (f.n != 4)
            return vg_errf(reason, rl, VG_EFORMAT,
                       "expected 4 tab-separated fields (user, item, rating, timestamp), got %zu",
                       f.n);
        return ml_event(&f, ev, reason, rl);
    case VG_FMT_ML1M:
        ml_split(line, len, "::", 2, &f);
        if (f.n != 4)
            return vg_errf(reason, rl, VG_EFORMAT,
                       "expected 4 '::'-separated fields (UserID::MovieID::Rating::Timestamp), got "
                       "%zu",
                       f.n);
        return ml_event(&f, ev, reason, rl);
    case VG_FMT_MLCSV: {
        if (first) {
            if (line_is(line, len, MLCSV_HEADER))
                return 1;
            return vg_errf(reason, rl, VG_EFORMAT, "expected the header line \"%s\"", MLCSV_HEADER);
        }
        vg_csv_record_t r;
        if ((rc = vg_csv_record_parse(line, len, &r, reason, rl)) != 0)
            return rc;
        if (r.nfields != 4)
            return vg_errf(reason, rl, VG_EFORMAT, "expected 4 CSV fields (userId,movieId,rating,timestamp), got %zu",
                       r.nfields);
        /* Text beyond VG_ID_MAX + 1 bytes was not kept: vg_event_id_valid and
         * vg_event_number reject such a field by its length before reading
         * it, and quote() shows at most 32 bytes. */
        f.n = 4;
        for (int k = 0; k < 4; k++) {
            f.p[k] = r.text[k];
            f.len[k] = r.len[k];
        }
        return ml_event(&f, ev, reason, rl);
    }
    }
    return vg_errf(reason, rl, VG_EFORMAT, "unknown format");
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

int vg_reader_read(const char *path, const vg_reader_opts_t *o, vg_reader_stats_t *st, char *err,
                   size_t errlen)
{
    vg_reader_stats_t local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (err && errlen > 0)
        err[0] = '\0';
    if (!path || !o || (unsigned)o->format >= N_FORMATS) {
        vg_errf(err, errlen, VG_EFORMAT, "vg_reader_read: bad arguments");
        return VG_EINVAL;
    }

    int use_stdin = strcmp(path, "-") == 0;
    const char *name = use_stdin ? "<stdin>" : path;
    FILE *fp = use_stdin ? stdin : fopen(path, "r");
    if (!fp) {
        vg_errf(err, errlen, VG_EFORMAT, "cannot open %s: %s", name, strerror(errno));
        return VG_EIO;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode))
        st->size = (uint64_t)sb.st_size;

    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0, first = 1;
    char reason[256];
    vg_event_t ev;
    const int filter = !isnan(o->min_rating);

    for (;;) {
        errno = 0;
        got = getline(&line, &cap, fp);
        if (got < 0)
            break;
        st->lines++;
        st->bytes += (uint64_t)got;
        const char *s = line;
        size_t len = (size_t)got;
        if (len > 0 && s[len - 1] == '\n')
            len--;
        if (len > 0 && s[len - 1] == '\r')
            len--;
        if (st->lines == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            len -= 3;
        }
        if (is_blank(s, len))
            continue;

        int prc = parse_line(o->format, first, s, len, &ev, reason, sizeof reason);
        first = 0;
        if (prc == 1)
            continue;
        if (prc == VG_ENOMEM) {
            rc = VG_ENOMEM;
            vg_errf(err, errlen, VG_EFORMAT, "%s:%llu: out of memory", name, (unsigned long long)st->lines);
            break;
        }
        if (prc != 0) {
            if (o->strict) {
                rc = VG_EFORMAT;
                vg_errf(err, errlen, VG_EFORMAT, "%s:%llu: %s", name, (unsigned long long)st->lines, reason);
                break;
            }
            st->invalid++;
            if (o->on_invalid)
                o->on_invalid(st->lines, reason, o->ud);
            continue;
        }
        if (filter && ev.has_rating && !(ev.rating >= o->min_rating)) {
            st->filtered++;
            continue;
        }
        st->events++;
        if (o->on_event) {
            int cb = o->on_event(&ev, o->ud);
            if (cb != 0) {
                rc = cb;
                vg_errf(err, errlen, VG_EFORMAT, "%s:%llu: stopped by the event callback", name,
                    (unsigned long long)st->lines);
                break;
            }
        }
    }

    if (rc == 0 && got < 0 && !feof(fp)) {
        if (errno == ENOMEM) {
            rc = VG_ENOMEM;
            vg_errf(err, errlen, VG_EFORMAT, "%s: out of memory reading line %llu", name,
                (unsigned long long)st->lines + 1);
        } else {
            rc = VG_EIO;
            vg_errf(err, errlen, VG_EFORMAT, "%s: read error: %s", name, strerror(errno ? errno : EIO));
        }
    }
    free(line);
    if (!use_stdin)
        fclose(fp);

    if (rc == 0 && st->events == 0) {
        rc = VG_EEMPTY;
        if (st->filtered || st->invalid)
            vg_errf(err, errlen, VG_EFORMAT, "%s: no events (%llu filtered by rating, %llu invalid lines)", name,
                (unsigned long long)st->filtered, (unsigned long long)st->invalid);
        else
            vg_errf(err, errlen, VG_EFORMAT, "%s: no events", name);
    }
    return rc;
}
