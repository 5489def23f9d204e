/*
 * event.h — one click event: parsing and validation of a Kafka message value
 * (or of one line of a replay file).
 *
 * Wire format (docs/architecture.md "Events"):
 *
 *   JSON  {"user":"u42","item":"i7","ts":1700000000,"type":"click"}
 *         `user`, `item`, `ts` required.  Ids are JSON strings, or JSON
 *         integers read as their decimal text ("42", "-3").  `ts` is a JSON
 *         integer or real (Unix seconds); a JSON *string* for ts is rejected,
 *         even if it looks numeric ("1700000000").  Optional `type`: a string
 *         of 1-32 printable non-space bytes, default "click"; an event of type
 *         "forget" (the erasure of the user) may leave `item` out.  Unknown fields
 *         are ignored; duplicate keys are rejected (which one would win is
 *         parser-specific); trailing bytes after the object are rejected.
 *   CSV   u42,i7,1700000000
 *         Exactly three fields user,item,ts in one record, parsed by libcsv
 *         (RFC 4180 quoting: "u,1" is the id u,1).  Fields are not trimmed:
 *         a space around a field is part of it and so makes it invalid.
 *
 * Detection: leading ASCII whitespace (space, tab, CR, LF) is skipped; if the
 * next byte is `{` the value is JSON, otherwise it is CSV.
 *
 * Ids: 1..VG_ID_MAX bytes of well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF), with no control character (C0, DEL, C1) and no
 * white space (ASCII space and the Unicode White_Space characters).
 *
 * ts: a finite number.  In CSV the text must be a whole strtod() number with
 * no surrounding blanks; "yesterday", "nan" and "inf" are invalid.
 *
 * Everything here is allocation-free for the caller: the event is a
 * caller-owned value with the ids copied into it (NUL-terminated), and the
 * reason text goes into a caller buffer.  Internally jansson and libcsv
 * allocate and free per call.  The functions keep no state and are
 * thread-safe.
 */
#ifndef VG_EVENT_H
#define VG_EVENT_H

#include <stddef.h>

#include "common/errors.h"

#define VG_ID_MAX 128  /* longest id, bytes */
#define VG_TYPE_MAX 32 /* longest event type, bytes */
#define VG_FORGET_TYPE "forget" /* the erasure of a user: `item` may be left out (item_len 0) */

typedef struct vg_event {
    char user[VG_ID_MAX + 1];   /* NUL-terminated; user_len bytes */
    char item[VG_ID_MAX + 1];   /* NUL-terminated; item_len bytes */
    char type[VG_TYPE_MAX + 1]; /* "click" unless the JSON says otherwise */
    double ts;                  /* Unix seconds, finite */
    double rating;              /* explicit rating if has_rating, else 1 */
    int has_rating;             /* 1 for MovieLens formats, 0 for events */
    size_t user_len, item_len;
} vg_event_t;

/* Parses one message value buf[0..len) (need not be NUL-terminated; may hold
 * NUL bytes, which make it invalid) into *ev.
 * Returns 0, or VG_EFORMAT with a short human reason (e.g. `missing field
 * "item"`, "item id is longer than 128 bytes", "user id has a control byte",
 * "ts is not a number", "not JSON: <jansson's text>") written into
 * reason[0..reason_len) (truncated, always NUL-terminated; reason may be NULL
 * when reason_len is 0), or VG_ENOMEM.  On error *ev is unspecified. */
int vg_event_parse(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len);

/* The same, forcing one syntax (the replay readers know the file format).
 * vg_event_parse_json() accepts leading/trailing JSON white space. */
int vg_event_parse_json(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len);
int vg_event_parse_csv(const char *buf, size_t len, vg_event_t *ev, char *reason, size_t reason_len);

/* The JSON form of an event, as vg_event_parse() reads it back:
 * {"user":...,"item":...,"ts":...,"type":...} ("item" left out when
 * item_len is 0, "type" when type is NULL).  Ids must be valid (above).
 * Returns a malloc'd NUL-terminated string (the caller frees it) or NULL
 * when out of memory. */
char *vg_event_to_json(const char *user, size_t user_len, const char *item, size_t item_len, double ts,
                       const char *type);

/* Checks an id s[0..len) against the rules above.  Returns 0 or VG_EFORMAT
 * and, if why is not NULL, points *why at a static phrase to put after the
 * field name ("is empty", "is longer than 128 bytes", "has a control byte",
 * "has a space", "is not valid UTF-8"). */
int vg_event_id_valid(const char *s, size_t len, const char **why);

/* Stores the id s[0..len) into dst (VG_ID_MAX + 1 bytes) after vg_event_id_valid();
 * on error writes "<name> id <why>" into reason.  Returns 0 or VG_EFORMAT.
 * Used by the readers for MovieLens fields. */
int vg_event_set_id(char *dst, size_t *dst_len, const char *name, const char *s, size_t len,
                    char *reason, size_t reason_len);

/* One CSV record split by libcsv (strict RFC 4180 quoting, no trimming).
 * Field k's full length is len[k]; its text is copied only up to
 * VG_ID_MAX + 1 bytes (enough to reject anything longer by length) and is
 * not NUL-terminated.  Only the first VG_CSV_MAX_FIELDS fields are kept;
 * nfields counts them all. */
#define VG_CSV_MAX_FIELDS 4
typedef struct vg_csv_record {
    size_t nfields;
    size_t len[VG_CSV_MAX_FIELDS];
    char text[VG_CSV_MAX_FIELDS][VG_ID_MAX + 1];
} vg_csv_record_t;

/* Splits buf[0..len) (one record; a trailing CR/LF is fine) into *r.
 * Returns 0, VG_EFORMAT with a reason ("bad CSV: ...", "more than one CSV
 * record") or VG_ENOMEM. */
int vg_csv_record_parse(const char *buf, size_t len, vg_csv_record_t *r, char *reason,
                        size_t reason_len);

/* Parses s[0..len) as a whole finite number: strtod() syntax starting with a
 * digit, sign or '.', no blanks, at most 63 bytes ("nan", "inf", "1e999" and
 * "12abc" are rejected).  Returns 0 or VG_EFORMAT. */
int vg_event_number(const char *s, size_t len, double *out);

#endif
