/*
 * reader.h — replay-file readers for `vaegand --replay` and `vaegan-eval`.
 *
 * A file is read line by line (getline; nothing but the current line is in
 * memory, so files may be of any size) and every event is handed to a
 * callback.  Formats (vg_format_from_name names in quotes):
 *
 *   "json"    JSON lines: each line one JSON event as in event.h.
 *   "csv"     each line `user,item,ts` as in event.h.  If the first line is
 *             exactly the header `user,item,ts` it is skipped.
 *   "ml100k"  MovieLens-100K u.data: user<TAB>item<TAB>rating<TAB>timestamp
 *   "ml1m"    MovieLens-1M ratings.dat: UserID::MovieID::Rating::Timestamp
 *   "mlcsv"   MovieLens ratings.csv: the header line
 *             `userId,movieId,rating,timestamp` (required, first line), then
 *             rows parsed with libcsv.
 *
 * For the MovieLens formats the ids are kept as their text (and must be valid
 * ids, see event.h), rating and timestamp must be whole finite numbers, and
 * the event has has_rating = 1; for json/csv has_rating = 0 and rating = 1.
 * Events get type "click" unless the JSON says otherwise.
 *
 * Lines end in LF or CRLF; a UTF-8 byte-order mark at the start of the file is
 * skipped; blank lines (only spaces, tabs, CR) are skipped.  A CSV field may
 * not span lines.
 *
 * Filtering: events with a rating (has_rating) below min_rating are skipped
 * and counted in `filtered`; NAN or -INFINITY means no filter.  Events
 * without a rating (json, csv) are never filtered.
 *
 * Modes: strict (vaegan-eval) — the first bad line stops the read with
 * VG_EFORMAT and err = "FILE:LINE: reason".  Lenient (replay) — a bad line is
 * counted in `invalid`, passed to on_invalid if set, and skipped.
 */
#ifndef VG_READER_H
#define VG_READER_H

#include <stdint.h>

#include "stream/event.h"

typedef enum { VG_FMT_JSON, VG_FMT_CSV, VG_FMT_ML100K, VG_FMT_ML1M, VG_FMT_MLCSV } vg_format_t;

/* "json", "csv", "ml100k", "ml1m", "mlcsv" -> *out.  Returns 0 or VG_EINVAL
 * (unknown name; *out untouched). */
int vg_format_from_name(const char *name, vg_format_t *out);

/* The name of a format (static string), "?" for an unknown value. */
const char *vg_format_name(vg_format_t f);

/* The counts of a read.  vg_reader_read keeps them current as it goes (each
 * line counted before its event is handed over), so a callback may read the
 * caller's copy for progress: bytes of size. */
typedef struct vg_reader_stats {
    uint64_t lines;    /* physical lines read, blank and header lines included */
    uint64_t events;   /* events handed to on_event */
    uint64_t invalid;  /* bad lines skipped (lenient mode) */
    uint64_t filtered; /* events below min_rating */
    uint64_t bytes;    /* bytes read, line ends included */
    uint64_t size;     /* the file's size when it is a regular file (fstat), else 0 (a pipe) */
} vg_reader_stats_t;

/* Called for each event.  *ev is valid only during the call (copy what you
 * keep).  A non-zero return stops the read; vg_reader_read returns it. */
typedef int (*vg_event_cb)(const vg_event_t *ev, void *ud);

/* Called for each bad line in lenient mode; reason is valid during the call. */
typedef void (*vg_invalid_cb)(uint64_t line, const char *reason, void *ud);

typedef struct vg_reader_opts {
    vg_format_t format;
    double min_rating;        /* NAN or -INFINITY: no filter */
    int strict;               /* 1: stop at the first bad line */
    vg_event_cb on_event;     /* may be NULL (count only) */
    vg_invalid_cb on_invalid; /* may be NULL */
    void *ud;                 /* passed to both callbacks */
} vg_reader_opts_t;

/* Reads path ("-" = stdin, which is not closed) and calls o->on_event for
 * every event, in file order.  st (may be NULL) is zeroed first and holds the
 * counts on return, also on error.  err[0..errlen) (may be NULL if errlen is
 * 0) receives a message on error, "" on success.  Returns:
 *   0            at least one event was delivered;
 *   VG_EIO       "cannot open FILE: <strerror>", or "FILE: read error: ...";
 *   VG_EFORMAT   strict mode only: "FILE:LINE: reason";
 *   VG_EEMPTY    "FILE: no events" (nothing left after skipping and
 *                filtering);
 *   VG_ENOMEM    out of memory;
 *   VG_EINVAL    bad arguments (NULL path or opts, unknown format);
 *   any non-zero value returned by on_event (err = "FILE:LINE: stopped by
 *                the event callback").
 * Stdin is named "<stdin>" in messages. */
int vg_reader_read(const char *path, const vg_reader_opts_t *o, vg_reader_stats_t *st, char *err,
                   size_t errlen);

#endif
