/*
 * event.c — parsing and validation of one event value (see event.h).
 *
 * JSON goes through jansson (json_loadb with the length, so the value need
 * not be NUL-terminated and an embedded NUL is an error), CSV through libcsv
 * (csv_parse with callbacks, strict quoting, no trimming).  Both paths end in
 * the same field checks, so a JSON event and a CSV event breaking the same
 * rule get the same reason text.
 *
 * Ids are validated against the well-formed UTF-8 table of Unicode (Table
 * 3-7, also RFC 3629 section 4), decoded while validating so that control and
 * white-space code points outside ASCII are caught too.  The tests check this
 * validator against jansson's own UTF-8 check on random bytes.
 *
 * Invariant: on success every field of the event is set (ids NUL-terminated,
 * ts finite, type non-empty); nothing here keeps state or allocates memory
 * that outlives a call.
 */
#include "stream/event.h"

#include <csv.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static void ok_reason(char *reason, size_t reason_len)
{
    if (reason && reason_len > 0)
        reason[0] = '\0';
}

/* ---- ids ------------------------------------------------------------------ */

/* Unicode White_Space code points (the ASCII ones and U+0085 are handled as
 * space/control before this is asked). */
static int is_unicode_space(uint32_t cp)
{
    return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int vg_event_id_valid(const char *s, size_t len, const char **why)
{
    const char *w = NULL;
    if (len == 0) {
        w = "is empty";
        goto bad;
    }
    if (len > VG_ID_MAX) {
        w = "is longer than 128 bytes";
        goto bad;
    }
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F) {
                w = "has a control byte";
                goto bad;
            }
            if (c == ' ') {
                w = "has a space";
                goto bad;
            }
            p++;
            continue;
        }
        /* Lead byte: sequence length and the allowed range of the 2nd byte. */
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
            if (c == 0xF0)
                lo = 0x90; /* no overlongs */
            else if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            w = "is not valid UTF-8"; /* continuation byte, C0/C1 or F5..FF */
            goto bad;
        }
        if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) {
            w = "is not valid UTF-8";
            goto bad;
        }
        for (size_t k = 1; k < n; k++) {
            if ((p[k] & 0xC0) != 0x80) {
                w = "is not valid UTF-8";
                goto bad;
            }
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if (cp <= 0x9F) {
            w = "has a control character"; /* C1 controls U+0080..U+009F */
            goto bad;
        }
        if (is_unicode_space(cp)) {
            w = "has a space";
            goto bad;
        }
        p += n;
    }
    if (why)
        *why = NULL;
    return 0;
bad:
    if (why)
        *why = w;
    return VG_EFORMAT;
}

int vg_event_set_id(char *dst, size_t *dst_len, const char *name, const char *s, size_t len,
                    char *reason, size_t reason_len)
{
    const char *why;
    if (vg_event_id_valid(s, len, &why) != 0)
        return vg_errf(reason, reason_len, VG_EFORMAT, "%s id %s", name, why);
    memcpy(dst, s, len);
    dst[len] = '\0';
    *dst_len = len;
    return 0;
}

/* ---- numbers -------------------------------------------------------------- */

int vg_event_number(const char *s, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return VG_EFORMAT;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    /* strtod skips leading blanks; we do not accept them. */
    if (!((tmp[0] >= '0' && tmp[0] <= '9') || tmp[0] == '-' || tmp[0] == '+' || tmp[0] == '.'))
        return VG_EFORMAT;
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + len || !isfinite(v))
        return VG_EFORMAT;
    *out = v;
    return 0;
}

static void event_defaults(vg_event_t *ev)
{
    ev->user[0] = ev->item[0] = '\0';
    ev->user_len = ev->item_len = 0;
    memcpy(ev->type, "click", sizeof "click");
    ev->ts = 0;
    ev->rating = 1;
    ev->has_rating = 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static int json_id(json_t *root, const char *name, char *dst, size_t *dst_len, char *reason,
                   size_t reason_len)
{
    json_t *v = json_object_get(root, name);
    char tmp[32];
    const char *s;
    size_t n;
    if (!v)
        return vg_errf(reason, reason_len, VG_EFORMAT, "missing field \"%s\"", name);
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    } else if (json_is_integer(v)) {
        int k = snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        vg_assert(k > 0 && (size_t)k < sizeof tmp);
        s = tmp;
        n = (size_t)k;
    } else {
        return vg_errf(reason, reason_len, VG_EFORMAT, "%s id is neither a string nor an integer", name);
    }
    return vg_event_set_id(dst, dst_len, name, s, n, reason, reason_len);
}

static int json_fields(json_t *root, vg_event_t *ev, char *reason, size_t reason_len)
{
    int rc;
    if (!json_is_object(root))
        return vg_errf(reason, reason_len, VG_EFORMAT, "JSON value is not an object");
    if ((rc = json_id(root, "user", ev->user, &ev->user_len, reason, reason_len)) != 0)
        return rc;
    json_t *type = json_object_get(root, "type");
    int forget = json_is_string(type) && strcmp(json_string_value(type), VG_FORGET_TYPE) == 0;
    if ((!forget || json_object_get(root, "item")) &&
        (rc = json_id(root, "item", ev->item, &ev->item_len, reason, reason_len)) != 0)
        return rc;

    json_t *ts = json_object_get(root, "ts");
    if (!ts)
        return vg_errf(reason, reason_len, VG_EFORMAT, "missing field \"ts\"");
    if (json_is_integer(ts))
        ev->ts = (double)json_integer_value(ts);
    else if (json_is_real(ts))
        ev->ts = json_real_value(ts);
    else
        return vg_errf(reason, reason_len, VG_EFORMAT, "ts is not a number");
    if (!isfinite(ev->ts))
        return vg_errf(reason, reason_len, VG_EFORMAT, "ts is not a finite number");

    if (type) {
        const char *why;
        if (!json_is_string(type))
            return vg_errf(reason, reason_len, VG_EFORMAT, "type is not a string");
        size_t n = json_string_length(type);
        if (n > VG_TYPE_MAX)
            return vg_errf(reason, reason_len, VG_EFORMAT, "type is longer than %d bytes", VG_TYPE_MAX);
        if (vg_event_id_valid(json_string_value(type), n, &why) != 0)
            return vg_errf(reason, reason_len, VG_EFORMAT, "type %s", why);
        memcpy(ev->type, json_string_value(type), n);
        ev->type[n] = '\0';
    }
    return 0;
}

int vg_event_parse_json(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len)
{
    json_error_t jerr;
    event_defaults(ev);
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return VG_ENOMEM;
        return vg_errf(reason, reason_len, VG_EFORMAT, "not JSON: %s", jerr.text);
    }
    int rc = json_fields(root, ev, reason, reason_len);
    json_decref(root);
    if (rc == 0)
        ok_reason(reason, reason_len);
    return rc;
}

/* ---- CSV ------------------------------------------------------------------ */

/* The libcsv callbacks fill a vg_csv_record_t; records counts the record
 * terminators seen (cb2), so a second record is noticed. */
typedef struct csv_acc {
    vg_csv_record_t *r;
    size_t records;
} csv_acc_t;

static void csv_on_field(void *f, size_t n, void *ud)
{
    csv_acc_t *a = ud;
    vg_csv_record_t *r = a->r;
    if (a->records == 0 && r->nfields < VG_CSV_MAX_FIELDS) {
        r->len[r->nfields] = n;
        size_t keep = n < sizeof r->text[0] ? n : sizeof r->text[0];
        if (keep > 0)
            memcpy(r->text[r->nfields], f, keep);
    }
    r->nfields++;
}

static void csv_on_record(int c, void *ud)
{
    (void)c;
    ((csv_acc_t *)ud)->records++;
}

static int csv_no_space(unsigned char c)
{
    (void)c;
    return 0;
}

int vg_csv_record_parse(const char *buf, size_t len, vg_csv_record_t *r, char *reason,
                        size_t reason_len)
{
    struct csv_parser p;
    csv_acc_t a = {r, 0};
    r->nfields = 0;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return VG_ENOMEM;
    csv_set_space_func(&p, csv_no_space);
    size_t used = csv_parse(&p, buf, len, csv_on_field, csv_on_record, &a);
    int perr = used != len ? csv_error(&p) : 0;
    if (perr == 0 && csv_fini(&p, csv_on_field, csv_on_record, &a) != 0)
        perr = csv_error(&p);
    csv_free(&p);
    if (perr == CSV_ENOMEM)
        return VG_ENOMEM;
    if (perr != 0)
        return vg_errf(reason, reason_len, VG_EFORMAT, "bad CSV: %s", csv_strerror(perr));
    if (a.records > 1)
        return vg_errf(reason, reason_len, VG_EFORMAT, "more than one CSV record");
    return 0;
}

int vg_event_parse_csv(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len)
{
    vg_csv_record_t r;
    int rc;
    event_defaults(ev);
    if ((rc = vg_csv_record_parse(buf, len, &r, reason, reason_len)) != 0)
        return rc;
    if (r.nfields != 3)
        return vg_errf(reason, reason_len, VG_EFORMAT, "expected 3 CSV fields (user,item,ts), got %zu", r.nfields);
    if ((rc = vg_event_set_id(ev->user, &ev->user_len, "user", r.text[0], r.len[0], reason,
                              reason_len)) != 0)
        return rc;
    if ((rc = vg_event_set_id(ev->item, &ev->item_len, "item", r.text[1], r.len[1], reason,
                              reason_len)) != 0)
        return rc;
    if (vg_event_number(r.text[2], r.len[2], &ev->ts) != 0)
        return vg_errf(reason, reason_len, VG_EFORMAT, "ts is not a number");
    ok_reason(reason, reason_len);
    return 0;
}

/* ---- detection ------------------------------------------------------------ */

int vg_event_parse(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len)
{
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;
    if (i == len) {
        event_defaults(ev);
        return vg_errf(reason, reason_len, VG_EFORMAT, "empty event");
    }
    if (buf[i] == '{')
        return vg_event_parse_json(buf, len, ev, reason, reason_len);
    return vg_event_parse_csv(buf, len, ev, reason, reason_len);
}

char *vg_event_to_json(const char *user, size_t user_len, const char *item, size_t item_len, double ts,
                       const char *type)
{
    json_t *o = json_object();
    int bad = !o || json_object_set_new(o, "user", json_stringn(user, user_len)) ||
              (item_len && json_object_set_new(o, "item", json_stringn(item, item_len))) ||
              json_object_set_new(o, "ts", json_real(ts)) ||
              (type && json_object_set_new(o, "type", json_string(type)));
    char *out = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    return out;
}
