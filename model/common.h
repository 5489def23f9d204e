/*
 * common.h — the scalar type of the numerical code, plus the shared error
 * codes and assertions (common/errors.h).
 *
 * vg_real is float normally, double when the model library is built with
 * VG_DOUBLE (the gradient checks use that build, so that the very same source
 * is verified against finite differences).
 */
#ifndef VG_COMMON_H
#define VG_COMMON_H

#include "common/errors.h"

#ifdef VG_DOUBLE
typedef double vg_real;
#else
typedef float vg_real;
#endif

#endif
