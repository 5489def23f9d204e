/* errors.c — names of the VG_E* codes (the X-macro table in errors.h). */
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
