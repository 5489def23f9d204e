/*
 * rng.h — the model's seeded random numbers: xoshiro256** (Blackman & Vigna)
 * seeded through splitmix64, with uniform and standard normal draws.
 *
 * The whole state is the four words of vg_rng_t, so saving them in the model
 * state file makes a resumed run draw exactly what an uninterrupted one would.
 * Each model owns its generator: there is no global state.
 */
#ifndef VG_RNG_H
#define VG_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "model/common.h"

typedef struct vg_rng {
    uint64_t s[4];
} vg_rng_t;

void vg_rng_seed(vg_rng_t *r, uint64_t seed);
uint64_t vg_rng_next(vg_rng_t *r);
/* Uniform in [0, 1) with 53 random bits. */
double vg_rng_uniform(vg_rng_t *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t vg_rng_below(vg_rng_t *r, uint64_t n);
/* Fills x[0..n-1] with independent N(0, scale^2) draws (Box–Muller). */
void vg_rng_normal(vg_rng_t *r, vg_real *x, size_t n, vg_real scale);
/* The same for large n, on all OpenMP threads: one draw of r seeds a
 * stream per 65,536-value chunk, so the values do not depend on the
 * number of threads. */
void vg_rng_normal_par(vg_rng_t *r, vg_real *x, size_t n, vg_real scale);
/* Fills x[0..n-1] with independent U(-a, a) draws. */
void vg_rng_uniform_fill(vg_rng_t *r, vg_real *x, size_t n, vg_real a);
/* Fisher–Yates shuffle of p[0..n-1]. */
void vg_rng_shuffle(vg_rng_t *r, int *p, int n);

#endif
