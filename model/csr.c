/*
 * csr.c — building and slicing 0/1 CSR matrices.  Rows are kept sorted and
 * free of duplicates: the model's sparse layers and the metrics rely on it.
 */
#include "model/csr.h"

#include <stdlib.h>
#include <string.h>

#include "model/common.h"

static int reserve(vg_csr_t *m, size_t rows, size_t nnz)
{
    if (!m->indptr || m->cap_rows < rows) {
        int64_t *p = realloc(m->indptr, (rows + 1) * sizeof *p);
        if (!p)
            return VG_ENOMEM;
        m->indptr = p;
        m->cap_rows = rows;
    }
    if (!m->indices || m->cap_nnz < nnz) {
        size_t cap = nnz > 2 * m->cap_nnz ? nnz : 2 * m->cap_nnz;
        int32_t *q = realloc(m->indices, (cap ? cap : 1) * sizeof *q);
        if (!q)
            return VG_ENOMEM;
        m->indices = q;
        m->cap_nnz = cap;
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int vg_csr_from_pairs(vg_csr_t *out, int rows, int cols, size_t n, const int32_t *row, const int32_t *col)
{
    memset(out, 0, sizeof *out);
    if (rows < 0 || cols < 0)
        return VG_EINVAL;
    for (size_t k = 0; k < n; k++)
        if (row[k] < 0 || row[k] >= rows || col[k] < 0 || col[k] >= cols)
            return VG_EINVAL;
    int rc = reserve(out, (size_t)rows, n);
    if (rc)
        return rc;
    out->rows = rows;
    out->cols = cols;
    memset(out->indptr, 0, ((size_t)rows + 1) * sizeof *out->indptr);
    for (size_t k = 0; k < n; k++)
        out->indptr[row[k] + 1]++;
    for (int r = 0; r < rows; r++)
        out->indptr[r + 1] += out->indptr[r];
    int64_t *fill = malloc(((size_t)rows + 1) * sizeof *fill);
    if (!fill) {
        vg_csr_free(out);
        return VG_ENOMEM;
    }
    memcpy(fill, out->indptr, ((size_t)rows + 1) * sizeof *fill);
    for (size_t k = 0; k < n; k++)
        out->indices[fill[row[k]]++] = col[k];
    free(fill);
    /* sort each row and squeeze out duplicates */
    int64_t w = 0;
    for (int r = 0; r < rows; r++) {
        int64_t a = out->indptr[r], b = out->indptr[r + 1];
        qsort(out->indices + a, (size_t)(b - a), sizeof(int32_t), cmp_i32);
        out->indptr[r] = w;
        for (int64_t k = a; k < b; k++)
            if (k == a || out->indices[k] != out->indices[k - 1])
                out->indices[w++] = out->indices[k];
    }
    out->indptr[rows] = w;
    return 0;
}

int vg_csr_gather(vg_csr_t *out, const vg_csr_t *src, const int *sel, int n)
{
    size_t nnz = 0;
    for (int k = 0; k < n; k++)
        nnz += (size_t)vg_csr_row_len(src, sel[k]);
    int rc = reserve(out, (size_t)n, nnz);
    if (rc)
        return rc;
    out->rows = n;
    out->cols = src->cols;
    out->indptr[0] = 0;
    for (int k = 0; k < n; k++) {
        int64_t a = src->indptr[sel[k]], len = src->indptr[sel[k] + 1] - a;
        memcpy(out->indices + out->indptr[k], src->indices + a, (size_t)len * sizeof(int32_t));
        out->indptr[k + 1] = out->indptr[k] + len;
    }
    return 0;
}

int vg_csr_has(const vg_csr_t *m, int r, int32_t c)
{
    int64_t lo = m->indptr[r], hi = m->indptr[r + 1];
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (m->indices[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->indptr[r + 1] && m->indices[lo] == c;
}

void vg_csr_free(vg_csr_t *m)
{
    free(m->indptr);
    free(m->indices);
    memset(m, 0, sizeof *m);
}
