/*
 * event_check.c — the checks fuzz_event.c and fuzz_reader.c make on what the
 * event parser hands out (fuzz.h): a parsed event keeps every promise of
 * stream/event.h, and a refusal always says why.
 *
 * Invariant: these functions only read; they abort (vg_assert) on the first
 * broken promise, so libFuzzer records the input as a crash.
 */
#include <math.h>
#include <string.h>

#include "fuzz/fuzz.h"

/* An id field: len bytes of valid id text, NUL right after, nothing shorter. */
static void check_id(const char *s, size_t len)
{
    vg_assert(len >= 1 && len <= VG_ID_MAX);
    vg_assert(s[len] == '\0' && strlen(s) == len);
    vg_assert(vg_event_id_valid(s, len, NULL) == 0);
}

void vg_fuzz_check_event(const vg_event_t *ev, int with_rating)
{
    check_id(ev->user, ev->user_len);
    size_t tl = strnlen(ev->type, sizeof ev->type);
    vg_assert(tl >= 1 && tl <= VG_TYPE_MAX);
    vg_assert(vg_event_id_valid(ev->type, tl, NULL) == 0);
    if (ev->item_len == 0)
        vg_assert(strcmp(ev->type, VG_FORGET_TYPE) == 0 && ev->item[0] == '\0');
    else
        check_id(ev->item, ev->item_len);
    vg_assert(isfinite(ev->ts));
    if (with_rating)
        vg_assert(ev->has_rating == 1 && isfinite(ev->rating));
    else
        vg_assert(ev->has_rating == 0 && ev->rating == 1);
}

void vg_fuzz_check_reason(int rc, const char *reason)
{
    vg_assert(rc == VG_EFORMAT || rc == VG_ENOMEM);
    if (rc == VG_EFORMAT)
        vg_assert(reason[0] != '\0');
}
