/*
 * config_parse.h — the configuration loader's readers of one value's text
 * (daemon/config_parse.c), for daemon/config.c and nobody else: whole
 * integers and finite doubles within a range, model.noise_input,
 * model.seed, comma-separated lists (vg_strlist_t of config.h), the edit
 * distance behind "did you mean ...?", and the text of a double in the dump.
 *
 * Each vg_cfg_parse_*_ reads text into *slot and returns NULL, or the reason
 * the text is refused — a static string, or `range` (VG_CFG_RANGE_LEN bytes,
 * the caller's) when a range is described — leaving *slot untouched.  A
 * reason never quotes the text: a value may be a secret.
 */
#ifndef VG_DAEMON_CONFIG_PARSE_H
#define VG_DAEMON_CONFIG_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"

#define VG_CFG_RANGE_LEN 128

/* Flags of vg_cfg_parse_double_: the bound itself is excluded. */
enum { VG_CFG_OPEN_MIN = 1, VG_CFG_OPEN_MAX = 2 };

/* A whole decimal integer in [lo, hi] (hi <= INT_MAX). */
const char *vg_cfg_parse_int_(const char *v, long long lo, long long hi, int *slot, char *range);

/* A finite double in [lo, hi] (hi may be INFINITY), ends excluded per `open`. */
const char *vg_cfg_parse_double_(const char *v, double lo, double hi, int open, double *slot, char *range);

/* "auto" (stored as -1) or a number >= 0: model.noise_input. */
const char *vg_cfg_parse_noise_(const char *v, double *slot);

/* A whole decimal number 0 .. UINT64_MAX: model.seed. */
const char *vg_cfg_parse_u64_(const char *v, uint64_t *slot);

/* Splits text at commas, trimming blanks, into l (freeing what it held).
 * Returns NULL, or why the text is refused (l is then empty).  The entries
 * belong to l: release them with vg_cfg_list_free_. */
const char *vg_cfg_list_parse_(vg_strlist_t *l, const char *text);

/* Frees l's entries and empties it; safe on an empty list. */
void vg_cfg_list_free_(vg_strlist_t *l);

/* The shortest "%g" text of d that reads back as d (the configuration dump). */
void vg_cfg_fmt_double_(double d, char *buf, size_t len);

/* Levenshtein distance of two short strings; SIZE_MAX when either is
 * longer than 63 characters. */
size_t vg_cfg_edit_distance_(const char *a, const char *b);

#endif
