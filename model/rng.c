/*
 * rng.c — xoshiro256** and the draws built on it.  Normals use the
 * Box–Muller transform on pairs of uniforms (both outputs used), computed in
 * float for the float build: the training noise needs millions of normals per
 * batch at the MovieLens-20M shape, and float math keeps that cheap.
 */
#include "model/rng.h"

#include <math.h>

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void vg_rng_seed(vg_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t vg_rng_next(vg_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double vg_rng_uniform(vg_rng_t *r) { return (double)(vg_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t vg_rng_below(vg_rng_t *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = vg_rng_next(r);
    while (x >= lim);
    return x % n;
}

void vg_rng_normal(vg_rng_t *r, vg_real *x, size_t n, vg_real scale)
{
    const double two_pi = 6.283185307179586;
    size_t i = 0;
    for (; i < n; i += 2) {
        uint64_t w = vg_rng_next(r);
#ifdef VG_DOUBLE
        double u1 = ((double)(w >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
        double u2 = (double)(vg_rng_next(r) >> 11) * 0x1.0p-53;
        double rad = sqrt(-2.0 * log(u1)) * scale;
        double a = two_pi * u2;
        x[i] = rad * cos(a);
        if (i + 1 < n)
            x[i + 1] = rad * sin(a);
#else
        /* two 24-bit uniforms from one 64-bit draw */
        float u1 = ((float)(w >> 40) + 1.0f) * 0x1.0p-24f; /* (0, 1] */
        float u2 = (float)((w >> 8) & 0xffffff) * 0x1.0p-24f;
        float rad = sqrtf(-2.0f * logf(u1)) * scale;
        float a = (float)two_pi * u2;
        x[i] = rad * cosf(a);
        if (i + 1 < n)
            x[i + 1] = rad * sinf(a);
#endif
    }
}

void vg_rng_normal_par(vg_rng_t *r, vg_real *x, size_t n, vg_real scale)
{
    const size_t chunk = 1 << 16;
    const uint64_t base = vg_rng_next(r);
    const long n_chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > ((size_t)1 << 22))
    for (long c = 0; c < n_chunks; c++) {
        vg_rng_t rc;
        vg_rng_seed(&rc, base ^ ((uint64_t)c * 0xd1342543de82ef95ULL));
        size_t off = (size_t)c * chunk, len = n - off < chunk ? n - off : chunk;
        vg_rng_normal(&rc, x + off, len, scale);
    }
}

void vg_rng_uniform_fill(vg_rng_t *r, vg_real *x, size_t n, vg_real a)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (vg_real)((2.0 * vg_rng_uniform(r) - 1.0) * a);
}

void vg_rng_shuffle(vg_rng_t *r, int *p, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)vg_rng_below(r, (uint64_t)i + 1);
        int t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}
