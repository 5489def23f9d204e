/*
 * ease.c — EASE's weights and scores (ease.h).
 *
 * The Gram matrix of a 0/1 matrix counts co-occurrences: for each user, +1
 * at every pair of its items (Σ_u n_u² additions, no dense X).  The inverse
 * comes from LAPACK (potrf, then potri) on the lower triangle in LAPACK's
 * column-major view, which is the upper one in ours; the other triangle is
 * filled by symmetry before B is formed in place.
 */
#include "model/ease.h"

#include <stddef.h>
#include <string.h>

/* LAPACK (OpenBLAS exports it; Debian ships no LAPACKE header with it).
 * The trailing length is gfortran's hidden argument of a CHARACTER. */
#ifdef VG_DOUBLE
#define POTRF dpotrf_
#define POTRI dpotri_
#else
#define POTRF spotrf_
#define POTRI spotri_
#endif
void POTRF(const char *uplo, const int *n, vg_real *a, const int *lda, int *info, size_t uplo_len);
void POTRI(const char *uplo, const int *n, vg_real *a, const int *lda, int *info, size_t uplo_len);

int vg_ease_fit(const vg_csr_t *X, double lambda, vg_real *B)
{
    const int N = X->cols;
    if (!(lambda > 0) || N <= 0)
        return VG_EINVAL;
    const size_t n = (size_t)N;
    memset(B, 0, n * n * sizeof *B);
    for (int u = 0; u < X->rows; u++) {
        const int32_t *it = X->indices + X->indptr[u];
        int len = vg_csr_row_len(X, u);
        for (int a = 0; a < len; a++)
            for (int b = 0; b < len; b++)
                B[(size_t)it[a] * n + it[b]] += 1;
    }
    for (size_t i = 0; i < n; i++)
        B[i * n + i] += (vg_real)lambda;
    int info = 0;
    POTRF("L", &N, B, &N, &info, 1);
    if (info == 0)
        POTRI("L", &N, B, &N, &info, 1);
    if (info != 0)
        return VG_EINVAL;
    /* LAPACK's lower triangle (row >= column, column-major) is element
     * [c * n + r] with r >= c here: copy it to [r * n + c] */
    for (size_t c = 0; c < n; c++)
        for (size_t r = c + 1; r < n; r++)
            B[r * n + c] = B[c * n + r];
    /* B = -P / diag(P) column-wise, zero diagonal: B_ij = -P_ij / P_jj */
    for (size_t j = 0; j < n; j++) {
        vg_real d = B[j * n + j];
        for (size_t i = 0; i < n; i++)
            if (i != j)
                B[i * n + j] = -B[i * n + j] / d;
    }
    for (size_t j = 0; j < n; j++)
        B[j * n + j] = 0;
    return 0;
}

void vg_ease_score(const vg_real *B, int N, const vg_csr_t *X, vg_real *scores)
{
    const size_t n = (size_t)N;
    for (int u = 0; u < X->rows; u++) {
        vg_real *s = scores + (size_t)u * n;
        memset(s, 0, n * sizeof *s);
        for (int64_t k = X->indptr[u]; k < X->indptr[u + 1]; k++) {
            const vg_real *row = B + (size_t)X->indices[k] * n;
            for (size_t j = 0; j < n; j++)
                s[j] += row[j];
        }
    }
}
