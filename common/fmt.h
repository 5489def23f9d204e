/*
 * fmt.h — numbers for people: counts with thousands separators, byte sizes
 * and durations, for progress lines (daemon/progress.h) and the tools'
 * stderr.  Locale-free (always ',' and '.'), so logs read the same
 * everywhere and tests can compare them.
 *
 * Each writes a NUL-terminated text into buf[0..len) (cut to fit; len >= 1)
 * and returns buf, so a call can sit in a printf argument list:
 *     char a[VG_FMT_MAX], b[VG_FMT_MAX];
 *     printf("%s events in %s\n", vg_fmt_count(a, sizeof a, n), vg_fmt_duration(b, sizeof b, s));
 */
#ifndef VG_FMT_H
#define VG_FMT_H

#include <stddef.h>
#include <stdint.h>

#define VG_FMT_MAX 32 /* room for any value of the functions below */

/* 1234567 -> "1,234,567". */
char *vg_fmt_count(char *buf, size_t len, uint64_t n);

/* Decimal units: 999 -> "999 B", 2100000 -> "2.1 MB", 210000000 -> "210 MB"
 * (kB, MB, GB, TB, PB; one decimal below 10 of a unit). */
char *vg_fmt_bytes(char *buf, size_t len, uint64_t n);

/* Seconds: 0.42 -> "0.4 s", 12.3 -> "12 s", 250 -> "4 min 10 s",
 * 7500 -> "2 h 05 min", 273600 -> "3 d 04 h"; negative or not finite -> "?". */
char *vg_fmt_duration(char *buf, size_t len, double s);

#endif
