/*
 * ranker.h — top-N lists from a model on the fastest kernel the CPU offers.
 *
 * Scoring a user against the whole catalogue is one product of the user's
 * decoder hidden layer (H values) with the output layer W4 (N×H): ~2·N·H
 * FLOPs, the cost of serving.  In fp32 (OpenBLAS) it runs at the sgemm rate.
 * A fast path runs it in int8 or bf16 through oneDNN's matmul primitive
 * (which dispatches AMX, AVX512-VNNI, AVX512-BF16 by itself), picks a
 * candidate set of VG_RANK_CANDIDATES × n items by those approximate scores,
 * and re-scores the candidates exactly in fp32: the published top-n is the
 * fp32 ranking unless an item of the exact top-n fell out of the candidates.
 *
 * Use:
 *     vg_fastw_t *fw = NULL;                        // once per model snapshot
 *     vg_fastw_build(&fw, &model, VG_KERNEL_AUTO, why, sizeof why);  // fw NULL: fp32
 *     vg_ranker_t *r = vg_ranker_new();             // once per thread
 *     vg_ranker_topn(r, &model, fw, &X, ex, n_ex, n, idx, sc, cnt);
 *     vg_ranker_free(r); vg_fastw_free(fw);
 *
 * vg_fastw_t: the output layer converted for the fast kernel (quantised or
 * rounded weights in the primitive's blocked layout, per-item scales and
 * biases), made once per snapshot (in the trainer's thread: not on the
 * scoring path), immutable afterwards and read by any number of threads.
 * It belongs to the model it was built from and is valid while that model's
 * weights are unchanged.  Its column count is the catalogue rounded up to a
 * multiple of VG_FASTW_ALIGN, so the rankers' compiled primitives stay valid
 * while the catalogue grows within it.
 *
 * vg_ranker_t: one thread's state (oneDNN engine, stream, compiled
 * primitives by batch size, buffers): one per scoring thread, never shared.
 *
 * oneDNN compiles its kernels at run time (JIT).  When it cannot (no
 * writable+executable memory, e.g. systemd's MemoryDenyWriteExecute=yes) or
 * offers only a reference kernel, vg_fastw_build() says so and returns no
 * fast weights: ranking then runs in fp32.  Builds with VG_DOUBLE have no
 * fast path.
 */
#ifndef VG_RANKER_H
#define VG_RANKER_H

#include <stddef.h>
#include <stdint.h>

#include "model/vaegan.h"

typedef enum { VG_KERNEL_AUTO = 0, VG_KERNEL_FP32, VG_KERNEL_BF16, VG_KERNEL_INT8 } vg_kernel_t;

/* "auto", "fp32", "bf16", "int8"; returns 0 or VG_EINVAL. */
int vg_kernel_parse(const char *name, vg_kernel_t *out);
const char *vg_kernel_name(vg_kernel_t k);

enum {
    VG_RANK_CANDIDATES = 2, /* the fast path re-scores this many × n items exactly */
    VG_FASTW_ALIGN = 1024,  /* fast weights' columns: the catalogue rounded up to this */
    VG_RANK_MAX_BATCH = 1024
};

typedef struct vg_fastw vg_fastw_t;

/* Converts m's output layer for the kernel `want`.  VG_KERNEL_AUTO takes
 * int8 where oneDNN has a native int8 kernel (VNNI or AMX), else bf16 where
 * it has a native bf16 one, else fp32; an explicit bf16 or int8 is taken
 * whenever oneDNN has a compiled kernel for it.  On return *out is the fast
 * weights, or NULL for fp32 (asked for, or no fast kernel: `why` says which;
 * it may be NULL).  Returns 0, or VG_ENOMEM (*out NULL). */
int vg_fastw_build(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen);
/* The same, taking over *out (NULL, or weights built earlier that nobody
 * reads any more): its buffers are reused where large enough, so a
 * snapshot of an unchanged catalogue faults in no fresh pages. */
int vg_fastw_rebuild(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen);
void vg_fastw_free(vg_fastw_t *fw); /* NULL ok */
/* The kernel of fw (VG_KERNEL_FP32 for NULL). */
vg_kernel_t vg_fastw_kernel(const vg_fastw_t *fw);
/* What runs: e.g. "int8 brg:avx512_core_vnni", "fp32 openblas". */
const char *vg_fastw_path(const vg_fastw_t *fw);

typedef struct vg_ranker vg_ranker_t;

/* Where a ranker's time went (CLOCK_MONOTONIC seconds since it was made):
 * the all-items product (hidden layers included) and the selection
 * (approximate scores, candidates, exact re-scoring, top-n). */
typedef struct vg_ranker_stats {
    double product_s, select_s;
    long users, calls;
} vg_ranker_stats_t;

vg_ranker_t *vg_ranker_new(void); /* NULL: out of memory */
void vg_ranker_stats(const vg_ranker_t *r, vg_ranker_stats_t *out);
void vg_ranker_free(vg_ranker_t *r); /* NULL ok */

/* The top n items of each user b of X (X->rows <= VG_RANK_MAX_BATCH,
 * X->cols == m->n_items), excluding the sorted item indices ex[b][0..n_ex[b])
 * (ex may be NULL: nothing excluded), best first: idx[b*n ..] and, when sc is
 * not NULL, their fp32 scores sc[b*n ..]; cnt[b] entries each
 * (min(n, N - excluded)).  fw NULL ranks on fp32 scores of every item; else
 * fw must have been built from m (a batch oneDNN cannot run is ranked in
 * fp32).  Ties go to the lower index.
 * Returns 0, VG_EINVAL or VG_ENOMEM. */
int vg_ranker_topn(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *X,
                   const int32_t *const *ex, const int *n_ex, int n, int32_t *idx, vg_real *sc, int *cnt);

#endif
