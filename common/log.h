/*
 * log.h — the logging hook shared by stream/ and cache/.
 *
 * Library modules never print: they report through a vg_log_fn given in
 * their configuration (NULL = silent).  The daemon's implementation
 * (daemon/log.h) writes journald-friendly lines to stderr or a log file.
 * The message is one line without a trailing newline, valid only during the
 * call.
 */
#ifndef VG_LOG_H
#define VG_LOG_H

enum { VG_LOG_DEBUG = 0, VG_LOG_INFO = 1, VG_LOG_WARN = 2, VG_LOG_ERROR = 3 };

typedef void (*vg_log_fn)(void *ud, int level, const char *msg);

#include <stdarg.h>

/* Formats one message (at most 1023 bytes) and hands it to fn (nothing when
 * fn is NULL): the modules' printf-style log helpers call this. */
void vg_logv(vg_log_fn fn, void *ud, int level, const char *fmt, va_list ap);

#endif
