/*
 * internal.h — what the files of model/ share and nobody outside model/ may
 * use: the precision switch of the numerical code (float or, with VG_DOUBLE,
 * double BLAS and libm names), four small helpers, the training
 * workspace (vg_work_t: owned by its model, allocated and freed by vaegan.c,
 * filled by each training step in train.c), and the shapes and the
 * allocation entry point the state-file loader (state.c) uses.  Names here end in '_' (they are not
 * part of the public API).
 */
#ifndef VG_MODEL_INTERNAL_H
#define VG_MODEL_INTERNAL_H

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "model/vaegan.h"

#ifdef VG_DOUBLE
#define GEMM cblas_dgemm
#define SYRK cblas_dsyrk
#define R_EXP exp
#define R_LOG log
#define R_TANH tanh
#define R_SQRT sqrt
#define R_LOG1P log1p
#else
#define GEMM cblas_sgemm
#define SYRK cblas_ssyrk
#define R_EXP expf
#define R_LOG logf
#define R_TANH tanhf
#define R_SQRT sqrtf
#define R_LOG1P log1pf
#endif

/* Σ_i softplus(l_i), and dl_i = sigmoid(l_i)·w, over one row of n logits
 * (vecmath.c: vectorised through libmvec). */
double vg_logistic_row_(const vg_real *l, vg_real *dl, int n, vg_real w);
/* Σ_i e^(l_i − max) with dl_i = e^(l_i − max) and *max = max_i l_i, over
 * one row of n logits (vecmath.c). */
double vg_softmax_row_(const vg_real *l, vg_real *dl, int n, vg_real *max);

/* C = alpha op(A) op(B) + beta C, row-major (op = transpose when ta / tb). */
static inline void vg_gemm_(int ta, int tb, int M, int N, int K, vg_real alpha, const vg_real *A, int lda,
                            const vg_real *B, int ldb, vg_real beta, vg_real *C, int ldc)
{
    GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
         lda, B, ldb, beta, C, ldc);
}

/* Y[b,:] = bias (rows B, width n) */
static inline void vg_set_rows_(vg_real *Y, const vg_real *bias, int B, int n)
{
    for (int b = 0; b < B; b++)
        memcpy(Y + (size_t)b * n, bias, (size_t)n * sizeof *Y);
}

static inline void vg_tanh_inplace_(vg_real *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = R_TANH(x[i]);
}

/* The scale of a user's input entries, n_b^-γ (docs/model.md "Input and
 * noise"); 0 for an empty user.  γ = 0.5 is computed as 1/sqrt(n_b). */
static inline vg_real vg_input_scale_(int nb, double gamma)
{
    if (!nb)
        return 0;
    return (vg_real)(gamma == 0.5 ? 1.0 / sqrt((double)nb) : pow((double)nb, -gamma));
}

/* The training workspace for max_batch users (see train.c for what each
 * buffer holds during a step). */
typedef struct vg_work {
    int B, N;
    size_t cap_nnz;
    vg_real *inv;   /* B: 1/sqrt(n_b) */
    vg_real *keep;  /* nnz: dropout factor 0 or 1/(1-p) */
    vg_real *xv;    /* nnz: x̄ values */
    vg_real *sl;    /* nnz: sigma(l) at stored entries (fake sample) */
    vg_real *eps1;  /* B×N input noise */
    vg_real *eps2;  /* B×H hidden noise (mult-vae: B×K reparameterisation noise) */
    vg_real *zp;    /* B×K prior sample */
    vg_real *pre0, *h, *hn, *out, *z, *g, *logits, *dl;
    vg_real *ex, *uq, *up, *tq, *tp;
    vg_real *zc, *eq, *hr, *hf, *dr, *df;
    vg_real *h0, *M, *S, *MS, *Y, *Gam;
    vg_real *dg, *dz, *dh, *dout, *t1, *t2, *t3, *dzc;
    void *blocks[64];
    int n_blocks;
} vg_work_t;

/* Every tensor's shape for m->cfg and m->n_items: rows, cols, whether the
 * rows are items (1/0), player (VG_PLAYER_*).  The loader (state.c) sizes a
 * file from it before allocating. */
void vg_param_shapes_(const vg_model_t *m, size_t shape[VG_P_COUNT][4]);

/* Checks m->cfg against n_items/max_batch, then allocates every tensor (zero
 * weights and moments) and the workspace for m->cfg and m->n_items.
 * Returns 0, VG_EINVAL or VG_ENOMEM. */
int vg_model_alloc_(vg_model_t *m, int max_batch);

/* The same for a snapshot (vaegan.h, vg_model_snapshot): the generator's
 * weights only (zero), no gradients, moments or workspace.  Returns 0,
 * VG_EINVAL or VG_ENOMEM. */
int vg_model_alloc_weights_(vg_model_t *m);

/* Makes room for nnz stored entries in the workspace's per-entry buffers
 * (capacity at least doubles).  Returns 0 or VG_ENOMEM. */
int vg_work_reserve_nnz_(vg_work_t *w, size_t nnz);

#endif
