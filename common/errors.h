/*
 * errors.h — error codes and assertions shared by every module of vaegan
 * (model/, stream/, cache/, daemon/, tools/).
 *
 * Errors: every fallible function returns 0 on success or a negative VG_E*
 * code; vg_strerror() names it.  Objects that talk to the outside keep their
 * last error text themselves (see the modules' headers).  The table is
 * append-only: codes keep their values.
 *
 * Asserts are for bugs only: vg_assert() aborts with file and line on a broken
 * invariant.  Bad input from the world is an error return, never an assert.
 */
#ifndef VG_ERRORS_H
#define VG_ERRORS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define VG_ERRNO_MAP(X)                                                     \
    X(NOMEM, "out of memory")                                               \
    X(INVAL, "invalid argument")                                            \
    X(IO, "input/output error")                                             \
    X(FORMAT, "malformed input")                                            \
    X(CORRUPT, "corrupt file")                                              \
    X(MISMATCH, "file does not match the model's architecture")             \
    X(VERSION, "unsupported file format version")                           \
    X(RANGE, "value out of range")                                          \
    X(NOTFOUND, "not found")                                                \
    X(BLAS, "BLAS self-check failed")                                       \
    X(EMPTY, "no data")                                                     \
    X(CONFIG, "bad configuration")                                          \
    X(KAFKA, "Kafka client error")                                          \
    X(REDIS, "Redis error")                                                 \
    X(AGAIN, "not ready, try again")                                        \
    X(STALE, "superseded by a newer version")                              \
    X(FENCED, "refused: a newer leader holds the epoch")

enum {
    VG_OK = 0,
#define VG_X_ENUM(name, msg) VG_E##name,
    VG_E_FIRST_ = -1000,
    VG_ERRNO_MAP(VG_X_ENUM)
#undef VG_X_ENUM
};

/* Text for a VG_E* code (or "ok" for 0).  Never NULL; static storage. */
const char *vg_strerror(int err);

/* Formats a message into err[0..errlen) (nothing when err is NULL or errlen
 * is 0; cut to fit) and returns `code`, so that a failing function can say
 * `return vg_errf(err, errlen, VG_EIO, "%s: %s", path, strerror(errno));`. */
__attribute__((format(printf, 4, 5))) int vg_errf(char *err, size_t errlen, int code, const char *fmt, ...);
/* The same with a va_list, for printf-like wrappers. */
int vg_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap);

#define vg_assert(cond)                                                      \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

#endif
