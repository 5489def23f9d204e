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
 * (vg_model_step_flops).  In the same run it measures the sgemm rate on the
 * step's largest shape (logits: B×H times H×N) and prints the step's FLOP
 * bound (its dense products at that rate) and how far above it the step
 * runs; the mean seconds of each phase of the step (vg_model_t.prof); and
 * Adam's memory floor: 28 bytes per parameter (read w, g, m, v; write w, m,
 * v) at the bandwidth of a loop of that pattern over arrays as large as the
 * model's.  Then scores U users (noise-free, top-100, history excluded) in
 * chunks of 1,000.  One JSON line on stdout, the phases on stderr.
 */
#include <cblas.h>
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

/* sgemm GFLOP/s on C[B,N] = A[B,H] W[N,H]^T (the logits), median of 5. */
static double sgemm_rate(int B, int N, int H)
{
    float *a = malloc((size_t)B * H * sizeof *a), *w = malloc((size_t)N * H * sizeof *w);
    float *c = malloc((size_t)B * N * sizeof *c);
    for (size_t k = 0; k < (size_t)B * H; k++)
        a[k] = (float)(k % 7) * 0.01f;
    for (size_t k = 0; k < (size_t)N * H; k++)
        w[k] = (float)(k % 5) * 0.01f;
    double t[6];
    for (int r = 0; r < 6; r++) {
        double s = vg_mono_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, H, 1, a, H, w, H, 0, c, N);
        t[r] = vg_mono_s() - s;
    }
    qsort(t + 1, 5, sizeof *t, cmp_d);
    free(a);
    free(w);
    free(c);
    return 2.0 * B * N * H / t[3] / 1e9;
}

/* Bytes/s of Adam's access pattern (read 4 arrays, write 3) over n floats
 * each, best of 3. */
static double adam_bandwidth(size_t n)
{
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    double best = 1e30;
    for (size_t k = 0; k < n && w && g && m && v; k++) { /* every page its own (not the shared zero page) */
        w[k] = 0.5f;
        g[k] = (float)(k % 13) * 1e-3f;
        m[k] = v[k] = 0;
    }
    for (int r = 0; r < 3 && w && g && m && v; r++) {
        double s = vg_mono_s();
#pragma omp parallel for simd schedule(static)
        for (size_t k = 0; k < n; k++) {
            m[k] = 0.9f * m[k] + 0.1f * g[k];
            v[k] = 0.999f * v[k] + 0.001f * g[k] * g[k];
            w[k] -= 1e-3f * m[k] / (v[k] + 1e-8f);
        }
        double e = vg_mono_s() - s;
        best = e < best ? e : best;
    }
    free(w);
    free(g);
    free(m);
    free(v);
    return 28.0 * (double)n / best;
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
    double prof[VG_PROF_COUNT] = {0};
    for (int b = 0; b < total; b++) {
        m.prof = b >= warmup ? prof : NULL;
        double s = vg_mono_s();
        vg_model_train_step(&m, &X[b], NULL);
        if (b >= warmup)
            t[b - warmup] = vg_mono_s() - s;
    }
    m.prof = NULL;
    qsort(t, (size_t)batches, sizeof *t, cmp_d);
    double med = t[batches / 2], flops = vg_model_step_flops(&m, B);
    double rate = sgemm_rate(B, SYNTH_ITEMS, cfg.hidden), bound = flops / (rate * 1e9);
    size_t params = 0;
    for (int i = 0; i < VG_P_COUNT; i++)
        params += m.p[i].rows * m.p[i].cols;
    double bw = adam_bandwidth(params), adam_floor = 28.0 * (double)params / bw;
    fprintf(stderr, "step %.3f s = %.2f x its FLOP bound %.3f s (%.1f GFLOP at the sgemm rate %.0f GFLOP/s); "
            "Adam %.1fM parameters, floor %.3f s (%.1f GB/s)\nphases (mean s per step):",
            med, med / bound, bound, flops / 1e9, rate, params / 1e6, adam_floor, bw / 1e9);
    for (int k = 0; k < VG_PROF_COUNT; k++)
        fprintf(stderr, " %s %.4f", vg_prof_names[k], prof[k] / batches);
    fprintf(stderr, "\n");

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
           "\"infer_users_per_s\":%.0f,\"sgemm_gflops\":%.1f,\"bound_s\":%.4f,\"x_bound\":%.2f,"
           "\"params\":%zu,\"adam_s\":%.4f,\"adam_floor_s\":%.4f}\n",
           variant, threads, vg_blas_core(), B, batches, med, t[0], flops / 1e9, flops / med / 1e9,
           SYNTH_USERS / (double)B * med, 116677 / (double)B * med, scored, ts, scored ? scored / ts : 0, rate, bound,
           med / bound, params, prof[VG_PROF_ADAM] / batches, adam_floor);
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
