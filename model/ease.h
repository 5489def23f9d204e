/*
 * ease.h — EASE (Steck, 2019), the closed-form linear item-item baseline:
 *
 *     P = (XᵀX + λI)⁻¹,   B = I − P·diag(P)⁻¹  (B_jj = 0),   scores = X·B
 *
 * for a 0/1 user × item matrix X.  One N × N Gram matrix and its inverse
 * through LAPACK's Cholesky routines (potrf/potri, exported by OpenBLAS):
 * N² reals of memory and ~N³/3 + N³/3 FLOPs, so it suits catalogues up to a
 * few ten thousand items.  vaegan-eval --variant ease uses it so a user can
 * see on their own data whether the VAE earns its cost.
 */
#ifndef VG_EASE_H
#define VG_EASE_H

#include "model/common.h"
#include "model/csr.h"

/* B (X->cols² reals, row-major, caller-owned) = EASE's weights for X at
 * regularisation lambda > 0.  Returns 0, VG_EINVAL (lambda <= 0, or the
 * factorisation failed: not positive definite) or VG_ENOMEM. */
int vg_ease_fit(const vg_csr_t *X, double lambda, vg_real *B);

/* scores[X->rows × N] = X·B (X->cols == N). */
void vg_ease_score(const vg_real *B, int N, const vg_csr_t *X, vg_real *scores);

#endif
