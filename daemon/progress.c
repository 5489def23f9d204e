/*
 * progress.c — progress lines, terminal redraws and sd_notify status of
 * long work (progress.h).
 *
 * An update is one clock read and two comparisons unless something is due,
 * so callers may call it per event.  The text is formatted only when it goes
 * somewhere; it is the same for the terminal, the log and STATUS=, so what
 * `systemctl status` shows is what the log says.
 *
 * Invariants: due and due_draw only move forward within a phase (each is
 * set to now + its interval when its message goes out); done_sent is the
 * done count of the last STATUS=, and an extension is asked for only when
 * done has passed it, so a phase that stalls stops extending systemd's
 * timeout after at most one extension.
 */
#include "daemon/progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/fmt.h"
#include "daemon/log.h"
#include "daemon/notify.h"

static double mono_clock(void) { return vg_mono_s(); }

void vg_progress_init(vg_progress_t *p, const char *what, double interval_s, int extend)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->interval_s = interval_s > 0 && isfinite(interval_s) ? interval_s : VG_PROGRESS_INTERVAL_S;
    p->tty_interval_s = VG_PROGRESS_TTY_S;
    p->tty = vg_log_is_tty();
    p->extend = extend != 0;
    p->clock = mono_clock;
}

uint64_t vg_progress_extend_usec(const vg_progress_t *p)
{
    double s = 3 * p->interval_s;
    if (!(s >= VG_PROGRESS_EXTEND_MIN_S))
        s = VG_PROGRESS_EXTEND_MIN_S;
    return (uint64_t)(s * 1e6);
}

/* ---- the text ------------------------------------------------------------------ */

typedef struct out {
    char *buf;
    size_t len, o; /* o: the length the text would have (as snprintf) */
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->o < t->len ? t->len - t->o : 0;
    int n = vsnprintf(room ? t->buf + t->o : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->o += (size_t)n;
}

/* The phase's fraction done, in [0, 1]; -1 without a total. */
static double fraction(const vg_progress_t *p)
{
    double f;
    if (p->total_bytes)
        f = (double)p->bytes / (double)p->total_bytes;
    else if (p->total)
        f = (double)p->done / (double)p->total;
    else
        return -1;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

size_t vg_progress_format(const vg_progress_t *p, double now, int final, char *buf, size_t len)
{
    out_t t = {buf, len, 0};
    char a[VG_FMT_MAX], b[VG_FMT_MAX];
    double el = now > p->t0 ? now - p->t0 : 0;
    if (len)
        buf[0] = '\0';
    if (p->what && *p->what)
        put(&t, "%s: ", p->what);
    put(&t, "%s %s", p->phase ? p->phase : "working", vg_fmt_count(a, sizeof a, p->done));
    if (p->total)
        put(&t, " of %s", vg_fmt_count(a, sizeof a, p->total));
    put(&t, " %s", p->unit ? p->unit : "done");
    if (el > 0) {
        double rate = (double)p->done / el;
        if (rate >= 100)
            put(&t, " (%s/s)", vg_fmt_count(a, sizeof a, (uint64_t)llround(rate)));
        else
            put(&t, " (%.1f/s)", rate);
    }
    double f = fraction(p);
    if (f >= 0) {
        put(&t, ", %d%%", (int)floor(f * 100));
        if (p->total_bytes)
            put(&t, " of %s", vg_fmt_bytes(a, sizeof a, p->total_bytes));
    }
    if (final)
        put(&t, ", done in %s", vg_fmt_duration(b, sizeof b, el));
    else if (f > 0 && el > 0)
        put(&t, ", ETA %s", vg_fmt_duration(b, sizeof b, el * (1 - f) / f));
    return t.o;
}

/* ---- the messages -------------------------------------------------------------- */

static void send_status(vg_progress_t *p, const char *text, int extend)
{
    if (extend)
        vg_notifyf("STATUS=%s\nEXTEND_TIMEOUT_USEC=%llu", text, (unsigned long long)vg_progress_extend_usec(p));
    else
        vg_notifyf("STATUS=%s", text);
    p->statuses++;
}

void vg_progress_start(vg_progress_t *p, const char *phase, const char *unit, uint64_t total,
                       uint64_t total_bytes)
{
    vg_progress_end(p);
    p->phase = phase;
    p->unit = unit;
    p->done = p->bytes = p->done_sent = 0;
    p->total = total;
    p->total_bytes = total_bytes;
    p->lines = p->draws = p->statuses = 0;
    p->t0 = p->clock();
    p->due = p->t0 + p->interval_s;
    p->due_draw = p->t0 + p->tty_interval_s;
    p->active = 1;
    p->drawn = 0;
}

void vg_progress_total(vg_progress_t *p, uint64_t total) { p->total = total; }

int vg_progress_update(vg_progress_t *p, uint64_t done, uint64_t bytes)
{
    if (!p->active)
        return 0;
    p->done = done;
    p->bytes = bytes;
    double now = p->clock();
    int draw = p->tty && now >= p->due_draw, status = now >= p->due;
    if (!draw && !status)
        return 0;
    char text[VG_PROGRESS_TEXT_MAX];
    vg_progress_format(p, now, 0, text, sizeof text);
    if (draw) {
        if (vg_log_enabled(VG_LOG_INFO)) {
            vg_log_status(text, 0);
            p->drawn = 1;
            p->draws++;
        }
        p->due_draw = now + p->tty_interval_s;
    }
    if (status) {
        if (!p->tty) {
            vg_log(VG_LOG_INFO, "%s", text);
            p->lines++;
        }
        send_status(p, text, p->extend && p->done > p->done_sent);
        p->done_sent = p->done;
        p->due = now + p->interval_s;
    }
    return 1;
}

void vg_progress_end(vg_progress_t *p)
{
    if (!p->active)
        return;
    char text[VG_PROGRESS_TEXT_MAX];
    vg_progress_format(p, p->clock(), 1, text, sizeof text);
    if (p->drawn)
        vg_log_status(text, 1);
    send_status(p, text, 0);
    p->active = 0;
    p->drawn = 0;
}
