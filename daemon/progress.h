/*
 * progress.h — progress of long work (`vaegand --replay`'s phases, the
 * start-up load of every history) for people and for systemd: how far a
 * phase is, how fast it goes, how long it has left.
 *
 *     vg_progress_t pr;
 *     vg_progress_init(&pr, "replay", cfg->log.progress_interval_s, 1);
 *     vg_progress_start(&pr, "reading", "events", 0, file_size);   // totals 0 = unknown
 *     for (...) vg_progress_update(&pr, events, bytes);            // cheap: a clock read
 *     vg_progress_end(&pr);
 *
 * One text, e.g.
 *     replay: reading 1,234,567 events (412,000/s), 37% of 210 MB, ETA 12 s
 *     start-up: loading histories 12,000 of 100,000 users (80,000/s), 12%, ETA 1 s
 * (the percentage from the bytes when their total is known, else from the
 * units; no percentage or ETA without a total; the ETA assumes the phase's
 * average rate so far) goes to up to three places at every update that is
 * due:
 *   - a terminal (vg_log_is_tty(): the log is stderr and stderr a
 *     terminal): one line redrawn in place (log.h vg_log_status), at most
 *     every tty_interval_s (VG_PROGRESS_TTY_S), ended with a newline by
 *     vg_progress_end so the last state stays on screen;
 *   - otherwise the log: one info line every interval_s
 *     (log.progress_interval_s, default 5 s);
 *   - systemd, every interval_s as well: "STATUS=<text>" (notify.h;
 *     nothing without NOTIFY_SOCKET), and, when extend is set and the phase advanced since the previous
 *     message, "EXTEND_TIMEOUT_USEC=<vg_progress_extend_usec()>" in the same
 *     datagram — so a start-up that makes progress is not killed at
 *     TimeoutStartSec, and one that stalls is (systemd only acts on the
 *     extension past the unit's own timeout; see systemd.service(5)).
 * The first update is due one interval after the start, so a phase shorter
 * than that prints nothing; vg_progress_end sends a final STATUS= (the
 * text with "done in <time>" for the ETA) whatever happened before.
 *
 * Invariants: log lines and STATUS= messages of a phase are at least
 * interval_s apart, terminal redraws tty_interval_s (by the monotonic
 * clock, or the injected one); EXTEND_TIMEOUT_USEC goes out only
 * with a done count above the one of the previous message; the extension
 * covers three intervals and never less than VG_PROGRESS_EXTEND_MIN_S, so a
 * message is due well before it runs out while the phase moves.
 *
 * Not thread-safe: one owner thread per vg_progress_t (the loop thread for
 * the load, replay's thread for replay).
 */
#ifndef VG_DAEMON_PROGRESS_H
#define VG_DAEMON_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define VG_PROGRESS_INTERVAL_S 5.0    /* log lines: the default of log.progress_interval_s */
#define VG_PROGRESS_TTY_S 0.2         /* terminal redraws, at most five a second */
#define VG_PROGRESS_EXTEND_MIN_S 30.0 /* the smallest EXTEND_TIMEOUT_USEC, in seconds */
#define VG_PROGRESS_TEXT_MAX 256

typedef struct vg_progress {
    /* set by vg_progress_init; a test may change them before vg_progress_start */
    const char *what;      /* the text's prefix ("replay", "start-up"), static */
    double interval_s;     /* seconds between log lines and STATUS= messages (> 0) */
    double tty_interval_s; /* seconds between terminal redraws (> 0) */
    int tty;               /* 1: draw on the terminal, 0: log lines */
    int extend;            /* 1: send EXTEND_TIMEOUT_USEC with progress */
    double (*clock)(void); /* monotonic seconds; vg_mono_s unless a test injects one */

    /* the current phase: vg_progress_start, vg_progress_total, vg_progress_update */
    const char *phase, *unit; /* "reading", "events"; static */
    uint64_t done, total;     /* units; total 0 = unknown */
    uint64_t bytes, total_bytes; /* bytes read of the input; total 0 = unknown (no bytes shown) */
    double t0;                /* the phase's start */
    double due, due_draw;     /* when the next log line + STATUS=, the next redraw are due */
    uint64_t done_sent;       /* done at the previous STATUS= */
    int active, drawn;        /* a phase runs; a terminal line of it is on screen */
    uint64_t lines, draws, statuses; /* messages of this phase: log lines, redraws, STATUS= (final included) */
} vg_progress_t;

/* Sets p up for phases of `what` (a static string): log lines every
 * interval_s (<= 0 or not finite: VG_PROGRESS_INTERVAL_S), the terminal if
 * vg_log_is_tty(), EXTEND_TIMEOUT_USEC if extend. */
void vg_progress_init(vg_progress_t *p, const char *what, double interval_s, int extend);

/* Starts a phase (ending one still running first, as vg_progress_end):
 * phase and unit are static strings, total the units expected and
 * total_bytes the input's size (0 = unknown). */
void vg_progress_start(vg_progress_t *p, const char *phase, const char *unit, uint64_t total,
                       uint64_t total_bytes);

/* The total of the phase, learnt after its start (the load's user count). */
void vg_progress_total(vg_progress_t *p, uint64_t total);

/* done units so far and bytes of the input so far (ignored when its total
 * is unknown).  Sends what is due; returns 1 when it sent something, else 0.
 * A no-op outside a phase. */
int vg_progress_update(vg_progress_t *p, uint64_t done, uint64_t bytes);

/* Ends the phase: the terminal line (if drawn) redrawn with its final state
 * and a newline, a final STATUS= sent.  No log line: the caller logs its own
 * summary.  A no-op outside a phase. */
void vg_progress_end(vg_progress_t *p);

/* The text of p's phase at time now (final: "done in" instead of the ETA)
 * into buf[0..len); returns its length (cut to fit, as snprintf). */
size_t vg_progress_format(const vg_progress_t *p, double now, int final, char *buf, size_t len);

/* The EXTEND_TIMEOUT_USEC value p sends: 3 intervals, at least
 * VG_PROGRESS_EXTEND_MIN_S, in microseconds. */
uint64_t vg_progress_extend_usec(const vg_progress_t *p);

#endif
