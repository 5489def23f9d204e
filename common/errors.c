/* errors.c — names of the VG_E* codes (the X-macro table in errors.h) and
 * the one error-into-buffer formatter. */
#include "common/errors.h"


const char *vg_strerror(int err)
{
    switch (err) {
    case VG_OK:
        return "ok";
#define VG_X_CASE(name, msg)                                                 \
    case VG_E##name:                                                         \
        return msg;
        VG_ERRNO_MAP(VG_X_CASE)
#undef VG_X_CASE
    default:
        return "unknown error";
    }
}

int vg_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    return code;
}

int vg_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_verrf(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}
