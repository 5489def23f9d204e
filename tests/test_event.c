/* test_event.c — event parsing and id validation (stream/event.c). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "stream/event.h"

static vg_event_t ev;
static char why[256];

static int parse(const char *s)
{
    memset(&ev, 0x5A, sizeof ev);
    strcpy(why, "untouched");
    return vg_event_parse(s, strlen(s), &ev, why, sizeof why);
}

/* Asserts that s is invalid and that the reason contains want. */
static void expect_bad(const char *s, size_t len, const char *want)
{
    memset(&ev, 0, sizeof ev);
    why[0] = '\0';
    int rc = vg_event_parse(s, len, &ev, why, sizeof why);
    cr_assert_eq(rc, VG_EFORMAT, "accepted %.60s", s);
    cr_assert(strstr(why, want) != NULL, "reason \"%s\" lacks \"%s\"", why, want);
}
#define BAD(lit, want) expect_bad(lit, sizeof(lit) - 1, want)

/* ---- valid JSON ------------------------------------------------------------- */

Test(event_json, string_ids_int_ts_default_type)
{
    cr_assert_eq(parse("{\"user\":\"u42\",\"item\":\"i7\",\"ts\":1700000000}"), 0, "%s", why);
    cr_assert_str_eq(ev.user, "u42");
    cr_assert_eq(ev.user_len, 3);
    cr_assert_str_eq(ev.item, "i7");
    cr_assert_eq(ev.item_len, 2);
    cr_assert_eq(ev.ts, 1700000000.0);
    cr_assert_str_eq(ev.type, "click");
    cr_assert_eq(ev.has_rating, 0);
    cr_assert_eq(ev.rating, 1.0);
    cr_assert_str_eq(why, "");
}

Test(event_json, integer_ids_are_decimal_text)
{
    cr_assert_eq(parse("{\"user\":42,\"item\":-7,\"ts\":1}"), 0, "%s", why);
    cr_assert_str_eq(ev.user, "42");
    cr_assert_str_eq(ev.item, "-7");
    cr_assert_eq(ev.item_len, 2);
}

Test(event_json, fractional_ts_explicit_type_unknown_fields_whitespace)
{
    cr_assert_eq(parse("  \n{\"extra\":[1,{\"a\":null}],\"item\":\"i\\u00e9\",\"type\":\"view\","
                       "\"ts\":1700000000.25,\"user\":\"u\",\"rating\":\"x\"}\n"),
                 0, "%s", why);
    cr_assert_eq(ev.ts, 1700000000.25);
    cr_assert_str_eq(ev.type, "view");
    cr_assert_str_eq(ev.item, "i\xc3\xa9");
    cr_assert_eq(ev.item_len, 3);
}

Test(event_json, id_of_128_bytes_accepted_129_rejected)
{
    char buf[400], id[130];
    memset(id, 'x', 129);
    id[128] = '\0';
    snprintf(buf, sizeof buf, "{\"user\":\"u\",\"item\":\"%s\",\"ts\":1}", id);
    cr_assert_eq(parse(buf), 0, "%s", why);
    cr_assert_eq(ev.item_len, 128);
    cr_assert_eq(strlen(ev.item), 128);
    id[128] = 'x';
    id[129] = '\0';
    snprintf(buf, sizeof buf, "{\"user\":\"u\",\"item\":\"%s\",\"ts\":1}", id);
    expect_bad(buf, strlen(buf), "item id is longer than 128 bytes");
}

Test(event_csv, multibyte_utf8_ids_accepted)
{
    /* 2-, 3- and 4-byte sequences at the edges of the valid ranges. */
    cr_assert_eq(parse("u\xc2\xa1,\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf,5"),
                 0, "%s", why);
    cr_assert_eq(ev.user_len, 3);
    cr_assert_eq(ev.item_len, 3 + 3 + 3 + 4 + 4);
}

/* ---- invalid JSON ----------------------------------------------------------- */

Test(event_json, invalid)
{
    BAD("{not json", "not JSON: ");
    BAD("{\"user\":\"u1\",\"ts\":5}", "missing field \"item\"");
    BAD("{\"item\":\"i1\",\"ts\":5}", "missing field \"user\"");
    BAD("{\"user\":\"u1\",\"item\":\"i1\"}", "missing field \"ts\"");
    BAD("{\"user\":\"\",\"item\":\"i1\",\"ts\":5}", "user id is empty");
    BAD("{\"user\":\"u1\",\"item\":\"i\\u0001x\",\"ts\":5}", "item id has a control byte");
    BAD("{\"user\":\"u1\",\"item\":\"i\\u007fx\",\"ts\":5}", "item id has a control byte");
    BAD("{\"user\":\"u1\",\"item\":\"i\\u0085x\",\"ts\":5}", "item id has a control character");
    BAD("{\"user\":\"u 1\",\"item\":\"i1\",\"ts\":5}", "user id has a space");
    BAD("{\"user\":\"u\\u3000\",\"item\":\"i1\",\"ts\":5}", "user id has a space");
    BAD("{\"user\":\"u\\u00a0\",\"item\":\"i1\",\"ts\":5}", "user id has a space");
    BAD("{\"user\":\"u1\",\"item\":\"i\xff\",\"ts\":5}", "not JSON: ");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"yesterday\"}", "ts is not a number");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"1700000000\"}", "ts is not a number");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":null}", "ts is not a number");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1e999}", "not JSON: ");
    BAD("{\"user\":1.5,\"item\":\"i1\",\"ts\":5}", "user id is neither a string nor an integer");
    BAD("{\"user\":\"u1\",\"item\":true,\"ts\":5}", "item id is neither");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":5,\"type\":7}", "type is not a string");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":5,\"type\":\"\"}", "type is empty");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":5,\"type\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        "type is longer than 32 bytes");
    BAD("{\"user\":\"u1\",\"user\":\"u2\",\"item\":\"i1\",\"ts\":5}", "not JSON: duplicate");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":5} x", "not JSON: ");
    BAD("{\"user\":\"u\\u0000\",\"item\":\"i1\",\"ts\":5}", "not JSON: ");
    BAD("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":5}\0junk", "not JSON: ");
    BAD("{\"user\":99999999999999999999,\"item\":\"i1\",\"ts\":5}", "not JSON: ");
    BAD("", "empty event");
    BAD(" \r\n", "empty event");
}

Test(event_json, not_an_object)
{
    /* vg_event_parse would read these as CSV; the JSON entry refuses them. */
    cr_assert_eq(vg_event_parse_json("[1,2]", 5, &ev, why, sizeof why), VG_EFORMAT);
    cr_assert_str_eq(why, "JSON value is not an object");
    /* Without JSON_DECODE_ANY, jansson itself refuses scalars. */
    cr_assert_eq(vg_event_parse_json("\"s\"", 3, &ev, why, sizeof why), VG_EFORMAT);
    cr_assert(strncmp(why, "not JSON: ", 10) == 0, "%s", why);
}

Test(event_json, one_mib_item_id)
{
    size_t n = 1u << 20;
    char *buf = malloc(n + 64);
    cr_assert_not_null(buf);
    size_t o = (size_t)sprintf(buf, "{\"user\":\"u\",\"item\":\"");
    memset(buf + o, 'a', n);
    o += n;
    o += (size_t)sprintf(buf + o, "\",\"ts\":1}");
    expect_bad(buf, o, "item id is longer than 128 bytes");
    /* The same as CSV. */
    o = (size_t)sprintf(buf, "u,");
    memset(buf + o, 'a', n);
    o += n;
    o += (size_t)sprintf(buf + o, ",1");
    expect_bad(buf, o, "item id is longer than 128 bytes");
    free(buf);
}

Test(event, reason_buffer_optional_and_truncated)
{
    const char *s = "{\"user\":\"u1\",\"ts\":5}";
    cr_assert_eq(vg_event_parse(s, strlen(s), &ev, NULL, 0), VG_EFORMAT);
    char tiny[8];
    memset(tiny, 'z', sizeof tiny);
    cr_assert_eq(vg_event_parse(s, strlen(s), &ev, tiny, sizeof tiny), VG_EFORMAT);
    cr_assert_eq(strlen(tiny), 7);
    cr_assert_eq(strncmp(tiny, "missing", 7), 0);
}

/* ---- CSV ------------------------------------------------------------------- */

Test(event_csv, valid_plain_and_quoted)
{
    cr_assert_eq(parse("u42,i7,1700000000"), 0, "%s", why);
    cr_assert_str_eq(ev.user, "u42");
    cr_assert_str_eq(ev.item, "i7");
    cr_assert_eq(ev.ts, 1700000000.0);
    cr_assert_str_eq(ev.type, "click");
    cr_assert_eq(ev.has_rating, 0);

    cr_assert_eq(parse("\"u,1\",\"i\"\"7\",\"1.5\"\r\n"), 0, "%s", why);
    cr_assert_str_eq(ev.user, "u,1");
    cr_assert_str_eq(ev.item, "i\"7");
    cr_assert_eq(ev.ts, 1.5);
}

Test(event_csv, invalid)
{
    BAD("bad-7,i1", "expected 3 CSV fields (user,item,ts), got 2");
    BAD("u,i,1,extra", "got 4");
    BAD("\x01\x02\x03", "got 1");
    BAD("u1,i1,yesterday", "ts is not a number");
    BAD("u1,i1,", "ts is not a number");
    BAD("u1,i1, 5", "ts is not a number");
    BAD("u1,i1,5 ", "ts is not a number");
    BAD("u1,i1,nan", "ts is not a number");
    BAD("u1,i1,-inf", "ts is not a number");
    BAD("u1,i1,1e999", "ts is not a number");
    BAD("u1,i1,5abc", "ts is not a number");
    BAD("u1,i1,5\0", "ts is not a number");
    BAD(",i1,5", "user id is empty");
    BAD("u1 ,i1,5", "user id has a space");
    BAD("u1,i\tx,5", "item id has a control byte");
    BAD("u1,i\x7f,5", "item id has a control byte");
    BAD("u1,\"i\nx\",5", "item id has a control byte");
    BAD("u1,i1,5\nu2,i2,6", "more than one CSV record");
    BAD("\"u1,i1,5", "bad CSV: ");
    BAD("u\"1,i1,5", "bad CSV: ");
    /* Invalid UTF-8: stray continuation, overlong, surrogate, > U+10FFFF,
     * truncated sequence, F5+ lead. */
    BAD("u\x80,i1,5", "user id is not valid UTF-8");
    BAD("u\xc0\xaf,i1,5", "user id is not valid UTF-8");
    BAD("u\xe0\x80\xaf,i1,5", "user id is not valid UTF-8");
    BAD("u\xf0\x80\x80\xaf,i1,5", "user id is not valid UTF-8");
    BAD("u\xed\xa0\x80,i1,5", "user id is not valid UTF-8");
    BAD("u\xf4\x90\x80\x80,i1,5", "user id is not valid UTF-8");
    BAD("u\xe2\x82,i1,5", "user id is not valid UTF-8");
    BAD("u\xf5\x80\x80\x80,i1,5", "user id is not valid UTF-8");
    BAD("u\xc2\x85,i1,5", "user id has a control character");
    BAD("u\xe2\x80\x83,i1,5", "user id has a space");
}

/* ---- vg_event_id_valid and vg_event_number -------------------------------------- */

Test(id, why_phrases)
{
    const char *w = "x";
    cr_assert_eq(vg_event_id_valid("ok", 2, &w), 0);
    cr_assert_null(w);
    cr_assert_eq(vg_event_id_valid("", 0, &w), VG_EFORMAT);
    cr_assert_str_eq(w, "is empty");
    cr_assert_eq(vg_event_id_valid("a b", 3, &w), VG_EFORMAT);
    cr_assert_str_eq(w, "has a space");
    cr_assert_eq(vg_event_id_valid("a\0b", 3, &w), VG_EFORMAT);
    cr_assert_str_eq(w, "has a control byte");
    cr_assert_eq(vg_event_id_valid("\xe2\x82\xac", 3, NULL), 0); /* EURO SIGN */
}

/* Differential check: on random short byte strings without ASCII controls or
 * spaces (and outside the C1/space code points), our validator agrees with
 * jansson's UTF-8 check (json_stringn returns NULL on invalid UTF-8). */
Test(id, utf8_agrees_with_jansson)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int valid = 0;
    for (int t = 0; t < 200000; t++) {
        unsigned char s[6];
        size_t n = 1 + (size_t)(t % 6);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Bias towards bytes >= 0x80 and the special lead bytes. */
            unsigned b = (unsigned)(x >> 32) & 0xFF;
            s[i] = (unsigned char)((b & 1) ? (0x80 | (b >> 1)) : (0x21 + (b >> 2) % 90));
        }
        const char *w;
        int ours = vg_event_id_valid((const char *)s, n, &w);
        json_t *j = json_stringn((const char *)s, n);
        int theirs = j != NULL;
        json_decref(j);
        if (ours == 0) {
            valid++;
            cr_assert(theirs, "we accept what jansson rejects (t=%d)", t);
        } else if (strcmp(w, "is not valid UTF-8") == 0) {
            cr_assert(!theirs, "we reject valid UTF-8 (t=%d)", t);
        }
        /* Rejected for a control or space code point: the rest of the
         * string was not looked at, so there is nothing to compare. */
    }
    cr_assert_gt(valid, 1000, "too few valid samples: %d", valid);
}

Test(number, parse)
{
    double v = 0;
    cr_assert_eq(vg_event_number("12", 2, &v), 0);
    cr_assert_eq(v, 12.0);
    cr_assert_eq(vg_event_number("-1.5e3", 6, &v), 0);
    cr_assert_eq(v, -1500.0);
    cr_assert_eq(vg_event_number("12x", 2, &v), 0); /* only len bytes count */
    cr_assert_eq(vg_event_number("12x", 3, &v), VG_EFORMAT);
    cr_assert_eq(vg_event_number("", 0, &v), VG_EFORMAT);
    cr_assert_eq(vg_event_number(" 1", 2, &v), VG_EFORMAT);
    cr_assert_eq(vg_event_number("inf", 3, &v), VG_EFORMAT);
    cr_assert_eq(vg_event_number("+inf", 4, &v), VG_EFORMAT);
    char longnum[80];
    memset(longnum, '1', sizeof longnum);
    cr_assert_eq(vg_event_number(longnum, sizeof longnum, &v), VG_EFORMAT);
}

/* A forget names only the user; every other type still needs an item. */
Test(event_json, forget_needs_no_item)
{
    vg_event_t ev;
    char reason[128];
    const char *f = "{\"user\":\"u1\",\"type\":\"forget\",\"ts\":5}";
    cr_assert_eq(vg_event_parse(f, strlen(f), &ev, reason, sizeof reason), 0, "%s", reason);
    cr_assert_str_eq(ev.type, "forget");
    cr_assert_eq(ev.item_len, 0);
    cr_assert_str_eq(ev.user, "u1");
    const char *g = "{\"user\":\"u1\",\"item\":\"i\",\"type\":\"forget\",\"ts\":5}";
    cr_assert_eq(vg_event_parse(g, strlen(g), &ev, reason, sizeof reason), 0, "%s", reason);
    cr_assert_str_eq(ev.item, "i");
    const char *r = "{\"user\":\"u1\",\"type\":\"remove\",\"ts\":5}";
    cr_assert_eq(vg_event_parse(r, strlen(r), &ev, reason, sizeof reason), VG_EFORMAT);
    cr_assert_str_eq(reason, "missing field \"item\"");
}
