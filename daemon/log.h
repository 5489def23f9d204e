/*
 * log.h — vaegand's log: one line per message to stderr or a file, safe to
 * call from any thread (the loop, the trainer and the scorers all log).
 *
 * Use:
 *     vg_log_open(cfg.log.file, cfg.log.level);   // "" = stderr
 *     vg_log(VG_LOG_INFO, "consuming %s", topic);
 *     stream_cfg.log = vg_log_cb;                   // the vg_log_fn of common/log.h
 *     on SIGHUP:  vg_log_reopen();                  // after logrotate moved the file
 *     vg_log_close();
 *
 * Line format.  To the systemd journal (stderr is the stream named by
 * $JOURNAL_STREAM): "<P>message" with the syslog priority P = 3 error,
 * 4 warn, 6 info, 7 debug, and no timestamp (journald adds its own).
 * Otherwise: "2026-11-26T15:04:05.123Z warn  message" (UTC, millisecond, the
 * level padded to 5 characters).  Newlines and other control characters in a
 * message become spaces, so a message is always one line; a line is cut at
 * VG_LOG_LINE_MAX bytes.  Each line is written with one write(2) on an
 * O_APPEND descriptor, so lines of different threads never interleave.
 *
 * Cost: a message below the level costs one relaxed atomic load and a
 * comparison (the arguments are still evaluated: guard expensive ones with
 * vg_log_enabled()).
 *
 * vg_log, vg_log_cb, vg_log_enabled, vg_log_set_level and vg_log_reopen may
 * be called from any thread at any time; vg_log_open and vg_log_close only
 * while no other thread logs (start-up, shutdown).  Before vg_log_open,
 * messages go to stderr at level info.
 */
#ifndef VG_DAEMON_LOG_H
#define VG_DAEMON_LOG_H

#include <stdint.h>

#include "common/log.h"
#include "common/ratelimit.h" /* vg_ratelimit_t, kept here for the daemon's callers */

/* Longest line written, newline included (PIPE_BUF: atomic on a pipe too). */
#define VG_LOG_LINE_MAX 4096

/* Sends the log to file (appending, created 0640 if missing), or to stderr
 * when file is NULL or "", and sets the level.  A file opened before is
 * closed.  Returns 0, or VG_EIO when the file cannot be opened (the log then
 * stays where it was). */
int vg_log_open(const char *file, int level);

/* Reopens the log file by its name (for logrotate, on SIGHUP): new lines go
 * to the file now at that path; the descriptor number does not change, so
 * threads logging meanwhile write to the old or the new file, never to a
 * closed one.  No-op for stderr.  Async-signal-safe.  Returns 0 or VG_EIO
 * (the old file is kept; the caller should log why). */
int vg_log_reopen(void);

/* Messages below level (VG_LOG_*) are dropped from now on. */
void vg_log_set_level(int level);

/* 1 if a message of this level would be written. */
int vg_log_enabled(int level);

/* Writes one line (format as printf; no trailing newline needed). */
void vg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The vg_log_fn of common/log.h for stream/ and cache/ (ud unused). */
void vg_log_cb(void *ud, int level, const char *msg);

/* "debug", "info", "warn", "error" -> VG_LOG_*; returns 0 or VG_EINVAL. */
int vg_log_level_parse(const char *s, int *level);

/* The name of a VG_LOG_* level ("?" for anything else); static storage. */
const char *vg_log_level_name(int level);

/* Closes a log file and goes back to stderr (the level stays). */
void vg_log_close(void);

/* A status line on a terminal (daemon/progress.h draws its progress with
 * it).  vg_log_is_tty() is 1 when lines go to stderr, stderr is a terminal
 * and not the journal; only then does vg_log_status() write anything:
 * "\r" text (cut to the terminal's width) and an erase to the end of the
 * line, in one write(2), over the previous status line; with end, a
 * newline after it, so the line stays and the next output starts below.
 * While a status line is shown (not ended), the next vg_log line first
 * erases it (the next vg_log_status draws it again).  Any thread. */
int vg_log_is_tty(void);
void vg_log_status(const char *text, int end);

#endif
