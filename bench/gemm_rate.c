/*
 * gemm_rate.c — vaegan-bench-gemm: OpenBLAS sgemm/ssyrk GFLOP/s on the
 * matrix shapes of one VAEGAN training step at the MovieLens-20M size
 * (B = 500 users per batch, N = 20108 items, H = 600 hidden, K = 200 latent).
 * Item weights are item-major, W[N,H], all matrices row-major.
 *
 *     vaegan-bench-gemm [threads (1)] [repeats (5)]
 *
 * Calls vg_blas_setup() first (so it runs on the kernels our binaries use and
 * prints that report), then for each shape: one warm-up call, `repeats` timed
 * calls, and prints the median time and rate.  GFLOP/s counts 2mnk for sgemm
 * and N*H*(H+1) for ssyrk (the half it computes).  The machine is shared:
 * quote medians of several runs on a quiet machine.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "model/blas.h"
#include "model/common.h"

enum { B = 500, N = 20108, H = 600, K = 200 };

static float *alloc_fill(size_t n, unsigned seed)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "vaegan-bench-gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct shape {
    const char *name;
    int syrk;             /* 0: sgemm, 1: ssyrk (upper, C = A^T A) */
    int ta, tb, m, n, k;  /* sgemm: C[m,n] = op(A) op(B); ssyrk: n x n from k x n */
    float **a, **b, **c;  /* operands; leading dims are the stored widths */
    double flops;
} shape_t;

static void run_once(const shape_t *s)
{
    if (s->syrk) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, s->n, s->k, 1.0f, *s->a, s->n, 0.0f, *s->c, s->n);
        return;
    }
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m, s->n,
                s->k, 1.0f, *s->a, lda, *s->b, ldb, 0.0f, *s->c, s->n);
}

int main(int argc, char **argv)
{
    char msg[512];
    int rc = vg_blas_setup(argc, argv, msg, sizeof msg);
    printf("# %s\n", msg);
    if (rc < 0) {
        fprintf(stderr, "vaegan-bench-gemm: %s\n", vg_strerror(rc));
        return 1;
    }
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: vaegan-bench-gemm [threads >= 1] [repeats 1..100]\n");
        return 2;
    }
    vg_blas_set_threads(threads);

    /* forward: G hidden [B,H], W item weights [N,H]; backward: dL [B,N]
     * (gradient w.r.t. logits); E [N,H], S [H,H]; Z latent weights [2K,H] */
    float *G = alloc_fill((size_t)B * H, 1), *W = alloc_fill((size_t)N * H, 2);
    float *dL = alloc_fill((size_t)B * N, 3), *E = alloc_fill((size_t)N * H, 4);
    float *S = alloc_fill((size_t)H * H, 5), *Z = alloc_fill((size_t)2 * K * H, 6);
    float *logits = alloc_fill((size_t)B * N, 7), *dW = alloc_fill((size_t)N * H, 8);
    float *dG = alloc_fill((size_t)B * H, 9), *gram = alloc_fill((size_t)H * H, 10);
    float *ES = alloc_fill((size_t)N * H, 11), *mu = alloc_fill((size_t)B * 2 * K, 12);

    const shape_t shapes[] = {
        {"logits C[B,N]=G[B,H].W[N,H]^T", 0, 0, 1, B, N, H, &G, &W, &logits, 2.0 * B * N * H},
        {"dW[N,H]=dL[B,N]^T.G[B,H]", 0, 1, 0, N, H, B, &dL, &G, &dW, 2.0 * N * H * B},
        {"dG[B,H]=dL[B,N].W[N,H]", 0, 0, 0, B, H, N, &dL, &W, &dG, 2.0 * B * H * N},
        {"gram W^T.W[H,H] ssyrk", 1, 0, 0, 0, H, N, &W, NULL, &gram, (double)N * H * (H + 1)},
        {"gram W^T.W[H,H] sgemm", 0, 1, 0, H, H, N, &W, &W, &gram, 2.0 * H * H * N},
        {"E[N,H].S[H,H]", 0, 0, 0, N, H, H, &E, &S, &ES, 2.0 * N * H * H},
        {"latent mu|lv[B,2K]=G[B,H].Z[2K,H]^T", 0, 0, 1, B, 2 * K, H, &G, &Z, &mu, 2.0 * B * 2 * K * H},
    };

    printf("# B=%d N=%d H=%d K=%d, %d thread(s), median of %d after 1 warm-up\n", B, N, H, K, threads, reps);
    double t[100];
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape_t *s = &shapes[i];
        run_once(s);
        for (int r = 0; r < reps; r++) {
            double t0 = vg_mono_s();
            run_once(s);
            t[r] = vg_mono_s() - t0;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        printf("%-38s %8.2f ms %7.1f GFLOP/s  core %s, %d thread(s)\n", s->name, 1e3 * med, s->flops / med * 1e-9,
               vg_blas_core(), threads);
    }
    free(G), free(W), free(dL), free(E), free(S), free(Z);
    free(logits), free(dW), free(dG), free(gram), free(ES), free(mu);
    return 0;
}
