/*
 * fuzz_reader.c — libFuzzer harness of the replay-file readers
 * (stream/reader.h), through a real file: the input minus its first byte is
 * written to the scratch file (fuzz.h) and read with vg_reader_read.
 *
 * The first byte chooses how:
 *   bits 0-2  the format, modulo 5: json, csv, ml100k, ml1m, mlcsv
 *   bit 3     strict mode (stop at the first bad line)
 *   bit 4     a rating filter (min_rating 3) instead of none (NAN)
 *   bits 5-7  k: the event callback stops the read (returns 7) at event k;
 *             0 = never
 * An empty input is skipped.
 *
 * What it asserts: every event delivered keeps event.h's promises (a
 * rating exactly for the MovieLens formats, at least min_rating when
 * filtered); the return code, the stats, the callbacks and the message agree
 * with reader.h (0 iff events were delivered and nothing stopped the read,
 * VG_EEMPTY iff none, VG_EFORMAT only in strict mode and with no invalid
 * line counted, invalid lines only in lenient mode, the stop code of the
 * callback, lines never more than the input's newlines + 1, err "" iff 0).
 * State: only the scratch file survives an input.
 */
#include <math.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "stream/reader.h"

typedef struct sink {
    vg_format_t format;
    double min_rating;
    uint64_t stop_at; /* 0 = never */
    uint64_t events, invalid;
} sink_t;

static int on_event(const vg_event_t *ev, void *ud)
{
    sink_t *s = ud;
    int ml = s->format != VG_FMT_JSON && s->format != VG_FMT_CSV;
    vg_fuzz_check_event(ev, ml);
    if (ml && !isnan(s->min_rating))
        vg_assert(ev->rating >= s->min_rating);
    s->events++;
    return s->stop_at && s->events == s->stop_at ? 7 : 0;
}

static void on_invalid(uint64_t line, const char *reason, void *ud)
{
    sink_t *s = ud;
    vg_assert(line >= 1 && reason[0] != '\0');
    s->invalid++;
}

/* The return code against the stats and the sink. */
static void check_result(int rc, const vg_reader_opts_t *o, const vg_reader_stats_t *st, const sink_t *s,
                         const char *err)
{
    vg_assert(st->events == s->events && st->invalid == s->invalid);
    vg_assert(st->events + st->invalid + st->filtered <= st->lines);
    if (o->strict)
        vg_assert(st->invalid == 0);
    if (rc == 0) {
        vg_assert(err[0] == '\0' && st->events > 0);
        return;
    }
    vg_assert(err[0] != '\0');
    if (rc == 7)
        vg_assert(s->stop_at && st->events == s->stop_at);
    else if (rc == VG_EEMPTY)
        vg_assert(st->events == 0);
    else if (rc == VG_EFORMAT)
        vg_assert(o->strict);
    else
        vg_assert(rc == VG_ENOMEM);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t ctl = data[0];
    sink_t s = {(vg_format_t)((ctl & 7) % 5), (ctl & 16) ? 3.0 : NAN, (uint64_t)(ctl >> 5), 0, 0};
    vg_reader_opts_t o = {s.format, s.min_rating, (ctl >> 3) & 1, on_event, on_invalid, &s};
    const char *path = vg_fuzz_file(data + 1, size - 1);

    vg_reader_stats_t st;
    char err[512];
    int rc = vg_reader_read(path, &o, &st, err, sizeof err);
    check_result(rc, &o, &st, &s, err);

    uint64_t newlines = 0;
    for (size_t i = 1; i < size; i++)
        newlines += data[i] == '\n';
    vg_assert(st.lines <= newlines + 1);
    return 0;
}
