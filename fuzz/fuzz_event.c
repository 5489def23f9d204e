/*
 * fuzz_event.c — libFuzzer harness of the event parser (stream/event.h):
 * vg_event_parse on the raw input (a Kafka message value), the two forced
 * syntaxes, and the building blocks (CSV record split, id check, number).
 *
 * What it asserts beyond "no crash, no leak, no undefined behaviour":
 *   - a parsed event keeps event.h's promises (vg_fuzz_check_event), a
 *     refusal is VG_EFORMAT with a reason or VG_ENOMEM;
 *   - vg_event_parse gives the verdict of the syntax its detection picks
 *     (first byte after ASCII blanks `{`: JSON, else CSV);
 *   - the verdict does not depend on the reason buffer (full, 8 bytes, none),
 *     and a cut reason is still NUL-terminated;
 *   - the building blocks agree with their headers (field counts and
 *     lengths, finite numbers, a valid id has no byte below 0x21 or DEL).
 * Stateless: nothing survives an input.
 */
#include <math.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "stream/event.h"

/* Parses with one of the three entry points and checks the outcome;
 * returns the code. */
static int parse_checked(int which, const char *buf, size_t len)
{
    vg_event_t ev;
    char reason[256];
    int rc = which == 0   ? vg_event_parse(buf, len, &ev, reason, sizeof reason)
             : which == 1 ? vg_event_parse_json(buf, len, &ev, reason, sizeof reason)
                          : vg_event_parse_csv(buf, len, &ev, reason, sizeof reason);
    if (rc == 0) {
        vg_assert(reason[0] == '\0');
        vg_fuzz_check_event(&ev, 0);
    } else {
        vg_fuzz_check_reason(rc, reason);
    }
    return rc;
}

/* The verdict of vg_event_parse with a short and with no reason buffer. */
static void check_reason_buffers(const char *buf, size_t len, int rc)
{
    vg_event_t ev;
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    vg_assert(vg_event_parse(buf, len, &ev, tiny, sizeof tiny) == rc);
    vg_assert(memchr(tiny, '\0', sizeof tiny) != NULL);
    vg_assert(vg_event_parse(buf, len, &ev, NULL, 0) == rc);
}

static void check_blocks(const char *buf, size_t len)
{
    vg_csv_record_t r;
    char reason[128];
    int rc = vg_csv_record_parse(buf, len, &r, reason, sizeof reason);
    if (rc == 0) {
        for (size_t k = 0; k < r.nfields && k < VG_CSV_MAX_FIELDS; k++)
            vg_assert(r.len[k] <= len);
    } else {
        vg_fuzz_check_reason(rc, reason);
    }

    const char *why = "unset";
    if (vg_event_id_valid(buf, len, &why) == 0) {
        vg_assert(why == NULL && len >= 1 && len <= VG_ID_MAX);
        for (size_t i = 0; i < len; i++)
            vg_assert((unsigned char)buf[i] > ' ' && buf[i] != 0x7F);
    } else {
        vg_assert(why != NULL && why[0] != '\0');
    }

    double d = NAN;
    if (vg_event_number(buf, len, &d) == 0)
        vg_assert(isfinite(d) && len >= 1 && len < 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t i = 0;
    while (i < size && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;

    int rc = parse_checked(0, buf, size);
    int json = parse_checked(1, buf, size);
    int csv = parse_checked(2, buf, size);
    if (i < size)
        vg_assert(rc == (buf[i] == '{' ? json : csv));
    else
        vg_assert(rc == VG_EFORMAT);
    check_reason_buffers(buf, size, rc);
    check_blocks(buf, size);
    return 0;
}
