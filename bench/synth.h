/*
 * synth.h — a deterministic synthetic click matrix shaped like preprocessed
 * MovieLens-20M (136,677 users x 20,108 items, ~10M interactions), after
 * shared/reference/synth.py: heavy-tailed user activity (log-normal, clipped
 * to [5, 4000]), power-law item popularity, and a 16-factor latent affinity;
 * each user's items are drawn without replacement by the Gumbel-top-k trick.
 *
 * Every user's row depends only on (seed, user), so any subset of users can
 * be generated alone — a benchmark makes just the rows it times.  Not
 * bit-identical to the numpy script (another RNG), same distribution family.
 */
#ifndef VG_BENCH_SYNTH_H
#define VG_BENCH_SYNTH_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/csr.h"
#include "model/rng.h"
#include "model/topn.h"

#define SYNTH_USERS 136677
#define SYNTH_ITEMS 20108
#define SYNTH_NNZ 10000000.0
#define SYNTH_K 16

typedef struct {
    int users, items;
    uint64_t seed;
    float *logpop; /* items */
    float *V;      /* items x K */
    double act_mu; /* log-normal location giving the target mean activity */
} synth_t;

static inline double synth_normal(vg_rng_t *r)
{
    double u1 = vg_rng_uniform(r), u2 = vg_rng_uniform(r);
    return sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
}

static inline void synth_init(synth_t *s, int users, int items, uint64_t seed)
{
    s->users = users;
    s->items = items;
    s->seed = seed;
    s->logpop = malloc((size_t)items * sizeof *s->logpop);
    s->V = malloc((size_t)items * SYNTH_K * sizeof *s->V);
    vg_rng_t r;
    vg_rng_seed(&r, seed);
    int *rank = malloc((size_t)items * sizeof *rank);
    for (int i = 0; i < items; i++)
        rank[i] = i;
    vg_rng_shuffle(&r, rank, items);
    for (int i = 0; i < items; i++)
        s->logpop[i] = (float)(-1.1 * log(rank[i] + 10.0));
    for (size_t k = 0; k < (size_t)items * SYNTH_K; k++)
        s->V[k] = (float)(synth_normal(&r) * 2.5 / sqrt((double)SYNTH_K));
    free(rank);
    /* E[lognormal(mu, 1)] = exp(mu + 1/2) = target mean activity */
    s->act_mu = log(SYNTH_NNZ / SYNTH_USERS) - 0.5;
}

static inline void synth_free(synth_t *s)
{
    free(s->logpop);
    free(s->V);
}

/* Writes user u's items (sorted) into out (capacity 4000); returns the count. */
static inline int synth_user(const synth_t *s, int u, int32_t *out, vg_real *scratch /* items + 4000 */)
{
    vg_rng_t r;
    vg_rng_seed(&r, s->seed * 1000003ULL + (uint64_t)u + 1);
    int n = (int)lround(exp(s->act_mu + synth_normal(&r)));
    n = n < 5 ? 5 : n > 4000 ? 4000 : n;
    if (n > s->items)
        n = s->items;
    float U[SYNTH_K];
    for (int k = 0; k < SYNTH_K; k++)
        U[k] = (float)(synth_normal(&r) * 2.5 / sqrt((double)SYNTH_K));
    for (int i = 0; i < s->items; i++) {
        float a = s->logpop[i];
        for (int k = 0; k < SYNTH_K; k++)
            a += U[k] * s->V[(size_t)i * SYNTH_K + k];
        double g = vg_rng_uniform(&r);
        a -= (float)log(-log(g < 1e-12 ? 1e-12 : g)); /* + Gumbel noise */
        scratch[i] = a;
    }
    vg_topn(scratch, s->items, NULL, 0, n, out, scratch + s->items);
    for (int a = 1; a < n; a++) /* insertion sort of the chosen ids */
        for (int b = a; b > 0 && out[b - 1] > out[b]; b--) {
            int32_t t = out[b];
            out[b] = out[b - 1];
            out[b - 1] = t;
        }
    return n;
}

/* CSR of the users users[0..n-1] (in that order). */
static inline int synth_rows(const synth_t *s, const int *users, int n, vg_csr_t *X)
{
    int32_t *buf = malloc(4000 * sizeof *buf), *rows = NULL, *cols = NULL;
    vg_real *scratch = malloc(((size_t)s->items + 4000) * sizeof *scratch);
    size_t cnt = 0, cap = 0;
    for (int k = 0; k < n; k++) {
        int m = synth_user(s, users[k], buf, scratch);
        if (cnt + (size_t)m > cap) {
            cap = 2 * (cnt + (size_t)m);
            rows = realloc(rows, cap * sizeof *rows);
            cols = realloc(cols, cap * sizeof *cols);
        }
        for (int j = 0; j < m; j++) {
            rows[cnt] = k;
            cols[cnt++] = buf[j];
        }
    }
    int rc = vg_csr_from_pairs(X, n, s->items, cnt, rows, cols);
    free(buf);
    free(scratch);
    free(rows);
    free(cols);
    return rc;
}

#endif
