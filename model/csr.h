/*
 * csr.h — compressed sparse row matrices of 0/1 interactions.
 *
 * A vg_csr_t holds `rows` users over `cols` items; row r's item indices are
 * indices[indptr[r] .. indptr[r+1]-1], sorted ascending, without duplicates.
 * Values are implicit (every stored entry is 1).  The struct owns its two
 * arrays; vg_csr_free() releases them.  Mini-batches are built by
 * vg_csr_gather() into a caller-owned CSR whose capacity grows as needed, so a
 * training loop allocates only while batches grow.
 */
#ifndef VG_CSR_H
#define VG_CSR_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_csr {
    int rows, cols;
    int64_t *indptr;  /* rows + 1 entries */
    int32_t *indices; /* indptr[rows] entries */
    size_t cap_rows, cap_nnz; /* allocated sizes (for reuse by gather) */
} vg_csr_t;

static inline int64_t vg_csr_nnz(const vg_csr_t *m) { return m->indptr ? m->indptr[m->rows] : 0; }
static inline int vg_csr_row_len(const vg_csr_t *m, int r) { return (int)(m->indptr[r + 1] - m->indptr[r]); }

/* Builds a CSR from (row, col) pairs (any order, duplicates merged).
 * Returns 0 or VG_ENOMEM / VG_EINVAL (an index out of range). */
int vg_csr_from_pairs(vg_csr_t *out, int rows, int cols, size_t n, const int32_t *row, const int32_t *col);

/* out = the rows `sel[0..n-1]` of `src` (in that order).  `out` may hold a
 * previous batch: its arrays are reused and grown.  Returns 0 or VG_ENOMEM. */
int vg_csr_gather(vg_csr_t *out, const vg_csr_t *src, const int *sel, int n);

/* 1 if row r contains column c (binary search), else 0. */
int vg_csr_has(const vg_csr_t *m, int r, int32_t c);

void vg_csr_free(vg_csr_t *m);

#endif
