/*
 * vaegan-bench-train — training and scoring throughput of the model library
 * on the synthetic MovieLens-20M-shaped data (bench/synth.h).
 *
 *   vaegan-bench-train [--variant V] [--threads T] [--batches K] [--warmup W]
 *                      [--batch B] [--infer-users U]
 *
 * Times K mini-batch updates (after W untimed ones) of B users drawn from a
 * fixed random permutation, and prints the median seconds per batch, the
 * extrapolated epoch time for 136,677 users (all) and 116,677 (Mult-VAE's
 * strong split), and the GFLOP/s of the step's dense products
 * (vg_model_step_flops).  Then scores U users (noise-free, top-100, history
 * excluded) in chunks of 1,000.  One JSON line on stdout.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/synth.h"
#include "common/clock.h"
#include "model/blas.h"
#include "model/topn.h"
#include "model/vaegan.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    char msg[512];
    if (vg_blas_setup(argc, argv, msg, sizeof msg) < 0) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    fprintf(stderr, "%s\n", msg);
    const char *variant = "avb+d+c";
    int threads = 2, batches = 10, warmup = 2, B = 500, infer_users = 10000;
    static const struct option lo[] = {{"variant", 1, 0, 'v'}, {"threads", 1, 0, 't'}, {"batches", 1, 0, 'k'},
                                       {"warmup", 1, 0, 'w'},  {"batch", 1, 0, 'b'},   {"infer-users", 1, 0, 'u'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'v': variant = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'k': batches = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'b': B = atoi(optarg); break;
        case 'u': infer_users = atoi(optarg); break;
        default: fprintf(stderr, "usage: see the file header\n"); return 2;
        }
    }
    vg_variant_t v;
    if (vg_variant_parse(variant, &v) < 0 || threads < 1 || batches < 1 || B < 1 || warmup < 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    vg_blas_set_threads(threads);

    synth_t S;
    synth_init(&S, SYNTH_USERS, SYNTH_ITEMS, 20108);
    int total = warmup + batches;
    int *perm = malloc(SYNTH_USERS * sizeof *perm);
    for (int u = 0; u < SYNTH_USERS; u++)
        perm[u] = u;
    vg_rng_t r;
    vg_rng_seed(&r, 0);
    vg_rng_shuffle(&r, perm, SYNTH_USERS);
    vg_csr_t *X = calloc((size_t)total, sizeof *X);
    double t0 = vg_mono_s();
    long nnz = 0;
    for (int b = 0; b < total; b++) {
        synth_rows(&S, perm + (size_t)b * B, B, &X[b]);
        nnz += (long)vg_csr_nnz(&X[b]);
    }
    fprintf(stderr, "generated %d batches of %d users (%.1f items/user) in %.1fs\n", total, B,
            (double)nnz / (total * B), vg_mono_s() - t0);

    vg_model_cfg_t cfg;
    vg_model_cfg_default(&cfg, v);
    vg_model_t m;
    if (vg_model_init(&m, &cfg, SYNTH_ITEMS, B) < 0) {
        fprintf(stderr, "cannot allocate the model\n");
        return 1;
    }
    double *t = malloc((size_t)batches * sizeof *t);
    for (int b = 0; b < total; b++) {
        double s = vg_mono_s();
        vg_model_train_step(&m, &X[b], NULL);
        if (b >= warmup)
            t[b - warmup] = vg_mono_s() - s;
    }
    qsort(t, (size_t)batches, sizeof *t, cmp_d);
    double med = t[batches / 2], flops = vg_model_step_flops(&m, B);

    /* scoring */
    const int chunk = 1000;
    vg_real *scores = malloc((size_t)chunk * SYNTH_ITEMS * sizeof *scores);
    vg_real *work = malloc(vg_model_score_work_size(&m, chunk) * sizeof *work);
    int32_t top[100];
    double ts = 0;
    int scored = 0;
    for (int s = 0; s < infer_users; s += chunk) {
        int n = infer_users - s < chunk ? infer_users - s : chunk;
        vg_csr_t U = {0};
        synth_rows(&S, perm + SYNTH_USERS - infer_users + s, n, &U);
        double a = vg_mono_s();
        vg_model_score(&m, &U, scores, work);
        for (int k = 0; k < n; k++)
            vg_topn(scores + (size_t)k * SYNTH_ITEMS, SYNTH_ITEMS, U.indices + U.indptr[k], vg_csr_row_len(&U, k),
                    100, top, NULL);
        ts += vg_mono_s() - a;
        scored += n;
        vg_csr_free(&U);
    }
    printf("{\"variant\":\"%s\",\"threads\":%d,\"core\":\"%s\",\"batch\":%d,\"timed_batches\":%d,"
           "\"s_per_batch\":%.4f,\"s_per_batch_min\":%.4f,\"gflop_per_batch\":%.1f,\"gflops\":%.1f,"
           "\"epoch_s_136677\":%.1f,\"epoch_s_116677\":%.1f,\"infer_users\":%d,\"infer_s\":%.3f,"
           "\"infer_users_per_s\":%.0f}\n",
           variant, threads, vg_blas_core(), B, batches, med, t[0], flops / 1e9, flops / med / 1e9,
           SYNTH_USERS / (double)B * med, 116677 / (double)B * med, scored, ts, scored / ts);
    for (int b = 0; b < total; b++)
        vg_csr_free(&X[b]);
    free(X);
    free(t);
    free(perm);
    free(scores);
    free(work);
    vg_model_close(&m);
    synth_free(&S);
    return 0;
}
