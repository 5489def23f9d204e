/*
 * fuzz.h — what the fuzz harnesses of fuzz/ share.
 *
 * Each harness (fuzz_event.c, fuzz_reader.c, fuzz_config.c, fuzz_state.c)
 * defines LLVMFuzzerTestOneInput, libFuzzer's entry point.  The same object
 * is linked two ways (fuzz/CMakeLists.txt): with -fsanitize=fuzzer into a
 * libFuzzer binary (scripts/fuzz.sh, clang), and with regress_main.c into a
 * plain driver that runs the committed corpus and the fixed crash inputs
 * (ctest fuzz_regress_*, any compiler).
 *
 * Invariants a harness keeps: it never keeps state between inputs except
 * the scratch file below and read-only tables; it frees all it allocates
 * (LeakSanitizer runs in both builds); a broken promise of the code under
 * test is a vg_assert (abort), never a return value.
 */
#ifndef VG_FUZZ_H
#define VG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "stream/event.h"

/* libFuzzer's entry point: one input, returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replaces the content of the process's scratch file (a memfd, created on
 * first use; aborts when that fails) with data[0..size) and returns a path
 * that opens it afresh ("/proc/self/fd/N", static storage), for loaders
 * that take a path. */
const char *vg_fuzz_file(const void *data, size_t size);

/* Aborts unless *ev keeps event.h's promises for a parsed event: ids valid
 * and NUL-terminated at their length (item empty only for a "forget"), type
 * 1..VG_TYPE_MAX valid bytes, ts finite, and has_rating / rating as
 * with_rating says (1: a finite MovieLens rating; 0: no rating, rating 1). */
void vg_fuzz_check_event(const vg_event_t *ev, int with_rating);

/* Aborts unless an error rc and its reason text agree: rc is VG_EFORMAT with
 * a non-empty reason, or VG_ENOMEM (reason not looked at). */
void vg_fuzz_check_reason(int rc, const char *reason);

#endif
