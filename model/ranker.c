/*
 * ranker.c — fp32 and fast (oneDNN int8/bf16) top-N ranking (ranker.h).
 *
 * The fast product is acc = q(g)·q(W4)ᵀ without bias or scales in the
 * primitive (int8: s8·s8 → s32; bf16: bf16·bf16 → f32), so a compiled
 * primitive depends only on the kernel, the batch rows, H and the padded
 * column count, never on a snapshot's values: rankers keep theirs across
 * snapshots.  The approximate score of item i is acc·scale[i] + bias[i],
 * formed row by row while the row is in cache, just before the candidate
 * selection.  int8: g = tanh(·) lies in (-1, 1), quantised as round(127·g);
 * row i of W4 as round(127·w / max|w_i|), so scale[i] = max|w_i| / 127².
 *
 * Invariants: a vg_fastw_t is immutable after build; a ranker's primitives
 * all share one (kernel, H, cols) and are dropped when that changes; batch
 * rows are bucketed (exact up to 16, then multiples of 16) so a ranker
 * compiles a bounded number of primitives.
 */
#include "model/ranker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "model/topn.h"

#ifndef VG_DOUBLE
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#endif

/* fast_topn(): the primitive could not run (no kernel for this batch size):
 * rank this batch in fp32 instead. */
#define NO_KERNEL 1

static const char *const kernel_names[] = {"auto", "fp32", "bf16", "int8"};

int vg_kernel_parse(const char *name, vg_kernel_t *out)
{
    for (int k = 0; k < 4; k++)
        if (!strcmp(name, kernel_names[k])) {
            *out = (vg_kernel_t)k;
            return 0;
        }
    return VG_EINVAL;
}

const char *vg_kernel_name(vg_kernel_t k) { return (unsigned)k < 4 ? kernel_names[k] : "?"; }

/* Grows a buffer to at least `need` bytes (contents not kept). */
static int grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    free(*p);
    *p = malloc(need);
    *cap = *p ? need : 0;
    return *p ? 0 : VG_ENOMEM;
}

#ifndef VG_DOUBLE

struct vg_fastw {
    vg_kernel_t kernel;
    int n_items, cols, hidden; /* N, N rounded up to VG_FASTW_ALIGN, H */
    dnnl_memory_desc_t wmd;    /* the weights' blocked layout, {H, cols} */
    void *w;                   /* its bytes */
    float *scale, *bias;       /* per column */
    void *plain;               /* the weights before the reorder (kept for the next rebuild) */
    size_t w_cap, scale_cap, bias_cap, plain_cap; /* the buffers' bytes */
    char path[128]; /* kernel name, a space, oneDNN's implementation (impl, < 112) */
};

struct prim {
    int rows;
    dnnl_primitive_t p;
    size_t scratch;
};

struct vg_ranker {
    vg_ranker_stats_t stats;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    vg_kernel_t kernel; /* what prims[] were compiled for */
    int hidden, cols;
    struct prim *prims;
    int n_prims;
    void *work, *src, *acc, *row, *cand, *exact, *pos, *scratch;
    size_t work_n, src_n, acc_n, row_n, cand_n, exact_n, pos_n, scratch_n;
};

static int bucket(int rows) { return rows <= 16 ? rows : (rows + 15) / 16 * 16; }

/* The matmul rows × H by H × cols of kernel k; weights `w` (NULL: the layout
 * the primitive prefers). */
static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, dnnl_engine_t eng, vg_kernel_t k, int rows, int H,
                               int cols, const dnnl_memory_desc_t *w)
{
    dnnl_data_type_t dt = k == VG_KERNEL_INT8 ? dnnl_s8 : dnnl_bf16;
    dnnl_dims_t sd = {rows, H}, wd = {H, cols}, dd = {rows, cols};
    dnnl_memory_desc_t smd, wmd, dmd;
    dnnl_matmul_desc_t d;
    dnnl_primitive_attr_t attr;
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_tag(&smd, 2, sd, dt, dnnl_ab)) ||
        (s = dnnl_memory_desc_init_by_tag(&dmd, 2, dd, k == VG_KERNEL_INT8 ? dnnl_s32 : dnnl_f32, dnnl_ab)))
        return s;
    if (w)
        wmd = *w;
    else if ((s = dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dt, dnnl_format_tag_any)))
        return s;
    if ((s = dnnl_matmul_desc_init(&d, &smd, &wmd, NULL, &dmd)) || (s = dnnl_primitive_attr_create(&attr)))
        return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (!s)
        s = dnnl_primitive_desc_create(pd, &d, attr, eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

enum { KERNEL_OK = 0, KERNEL_NONE = 1, KERNEL_NO_JIT = 2 };

/* Is kernel k compiled (not a reference loop) and, for auto, native to the
 * CPU?  int8 must always be native (VNNI or AMX): oneDNN's AVX2 int8 path
 * (gemm:jit) sums pairs of u8*s8 products in saturating 16-bit lanes, which
 * our full-range quantisation overflows (measured on an AVX2-only EPYC:
 * top-100 overlap with fp32 0.49).  Fills impl and, when it is, wmd.
 * Compiling one primitive proves JIT works here. */
static int kernel_ok(dnnl_engine_t eng, vg_kernel_t k, int H, int cols, int native, dnnl_memory_desc_t *wmd,
                     char *impl, size_t implen)
{
    dnnl_primitive_desc_t pd;
    const char *name = NULL;
    int rc = KERNEL_NONE;
    snprintf(impl, implen, "none");
    if (matmul_pd(&pd, eng, k, 64, H, cols, NULL))
        return KERNEL_NONE;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name) {
        snprintf(impl, implen, "%s", name);
        int ok = strncmp(name, "ref", 3) != 0;
        if (native || k == VG_KERNEL_INT8)
            ok = ok && (strstr(name, "amx") || strstr(name, k == VG_KERNEL_INT8 ? "vnni" : "bf16"));
        rc = ok ? KERNEL_OK : KERNEL_NONE;
    }
    dnnl_primitive_t p;
    if (rc == KERNEL_OK && dnnl_primitive_create(&p, pd) == dnnl_success)
        dnnl_primitive_destroy(p);
    else if (rc == KERNEL_OK)
        rc = KERNEL_NO_JIT;
    if (rc == KERNEL_OK)
        *wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* *b with at least n bytes: kept when it has them (*cap), else replaced.
 * Returns 0 or VG_ENOMEM. */
static int reuse(void **b, size_t *cap, size_t n)
{
    if (*b && *cap >= n)
        return 0;
    free(*b);
    *b = aligned_alloc(64, (n + 63) / 64 * 64);
    *cap = *b ? n : 0;
    return *b ? 0 : VG_ENOMEM;
}

/* Plain item-major weights into fw->plain (cols × H, the rows past the
 * catalogue zero) for the reorder: int8 quantised per row, bf16 as fp32 (the
 * reorder rounds); the per-column scale and bias beside them. */
static void plain_weights(vg_fastw_t *fw, const vg_model_t *m)
{
    const int N = fw->n_items, H = fw->hidden;
    const vg_real *W = m->p[VG_P_W4].w, *b = m->p[VG_P_B4].w;
    size_t esz = fw->kernel == VG_KERNEL_INT8 ? 1 : sizeof(float), pad = (size_t)(fw->cols - N);
    void *plain = fw->plain;
    memset((char *)plain + (size_t)N * H * esz, 0, pad * H * esz);
    memset(fw->scale + N, 0, pad * sizeof *fw->scale);
    memset(fw->bias + N, 0, pad * sizeof *fw->bias);
    for (int i = 0; i < N; i++) {
        const vg_real *wr = W + (size_t)i * H;
        fw->bias[i] = (float)b[i];
        if (fw->kernel == VG_KERNEL_BF16) {
            memcpy((float *)plain + (size_t)i * H, wr, (size_t)H * sizeof(float));
            fw->scale[i] = 1;
            continue;
        }
        float amax = 0;
        for (int h = 0; h < H; h++)
            amax = fmaxf(amax, fabsf(wr[h]));
        float q = amax > 0 ? 127.0f / amax : 0;
        int8_t *out = (int8_t *)plain + (size_t)i * H;
        for (int h = 0; h < H; h++)
            out[h] = (int8_t)lrintf(wr[h] * q);
        fw->scale[i] = amax / (127.0f * 127.0f);
    }
}

/* Reorders the plain weights into fw->wmd's layout. */
static int reorder_weights(vg_fastw_t *fw, dnnl_engine_t eng, const void *plain)
{
    dnnl_dims_t wd = {fw->hidden, fw->cols};
    dnnl_memory_desc_t pmd;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    dnnl_stream_t st = NULL;
    int ok = !dnnl_memory_desc_init_by_tag(&pmd, 2, wd, fw->kernel == VG_KERNEL_INT8 ? dnnl_s8 : dnnl_f32, dnnl_ba) &&
             !dnnl_memory_create(&from, &pmd, eng, (void *)plain) &&
             !dnnl_memory_create(&to, &fw->wmd, eng, fw->w) &&
             !dnnl_reorder_primitive_desc_create(&rpd, &pmd, eng, &fw->wmd, eng, NULL) &&
             !dnnl_primitive_create(&rp, rpd) && !dnnl_stream_create(&st, eng, dnnl_stream_default_flags);
    if (ok) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        ok = !dnnl_primitive_execute(rp, st, 2, args) && !dnnl_stream_wait(st);
    }
    if (st)
        dnnl_stream_destroy(st);
    if (rp)
        dnnl_primitive_destroy(rp);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (to)
        dnnl_memory_destroy(to);
    if (from)
        dnnl_memory_destroy(from);
    return ok;
}

int vg_fastw_build(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen)
{
    *out = NULL;
    return vg_fastw_rebuild(out, m, want, why, whylen);
}

int vg_fastw_rebuild(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen)
{
    char tmp[160];
    if (!why) {
        why = tmp;
        whylen = sizeof tmp;
    }
    vg_fastw_t *fw = *out;
    *out = NULL;
    snprintf(why, whylen, "fp32 asked for");
    if (want == VG_KERNEL_FP32 || m->n_items == 0) {
        if (m->n_items == 0)
            snprintf(why, whylen, "an empty catalogue");
        vg_fastw_free(fw);
        return 0;
    }
    if (fw) { /* its buffers stay; everything else is made again */
        vg_fastw_t keep = *fw;
        *fw = (vg_fastw_t){.w = keep.w, .scale = keep.scale, .bias = keep.bias, .plain = keep.plain,
                           .w_cap = keep.w_cap, .scale_cap = keep.scale_cap, .bias_cap = keep.bias_cap,
                           .plain_cap = keep.plain_cap};
    } else if (!(fw = calloc(1, sizeof *fw))) {
        return VG_ENOMEM;
    }
    dnnl_engine_t eng = NULL;
    fw->n_items = m->n_items;
    fw->hidden = m->cfg.hidden;
    fw->cols = (m->n_items + VG_FASTW_ALIGN - 1) / VG_FASTW_ALIGN * VG_FASTW_ALIGN;
    snprintf(why, whylen, "oneDNN has no CPU engine");
    if (dnnl_engine_create(&eng, dnnl_cpu, 0))
        goto fp32;
    char impl[2][112];
    vg_kernel_t tries[2] = {want == VG_KERNEL_AUTO ? VG_KERNEL_INT8 : want, VG_KERNEL_BF16};
    int n_try = want == VG_KERNEL_AUTO ? 2 : 1, no_jit = 0;
    for (int t = 0; t < n_try && !fw->kernel; t++) {
        int rc = kernel_ok(eng, tries[t], fw->hidden, fw->cols, want == VG_KERNEL_AUTO, &fw->wmd, impl[t],
                           sizeof impl[t]);
        no_jit |= rc == KERNEL_NO_JIT;
        if (rc == KERNEL_OK)
            fw->kernel = tries[t];
    }
    if (!fw->kernel) {
        if (no_jit)
            snprintf(why, whylen, "oneDNN cannot compile its kernels here (writable+executable memory refused: "
                                  "MemoryDenyWriteExecute?)");
        else if (n_try == 2)
            snprintf(why, whylen, "no native int8 kernel (%s) nor bf16 kernel (%s)", impl[0], impl[1]);
        else if (want == VG_KERNEL_INT8 && strcmp(impl[0], "none") != 0)
            snprintf(why, whylen, "no native int8 kernel (%s: without VNNI or AMX its 16-bit sums saturate)",
                     impl[0]);
        else
            snprintf(why, whylen, "no %s kernel (%s)", vg_kernel_name(want), impl[0]);
        goto fp32;
    }
    const char *chosen = impl[fw->kernel == tries[0] ? 0 : 1];
    snprintf(fw->path, sizeof fw->path, "%s %s", vg_kernel_name(fw->kernel), chosen);
    size_t esz = fw->kernel == VG_KERNEL_INT8 ? 1 : sizeof(float), cols = (size_t)fw->cols;
    if (reuse(&fw->w, &fw->w_cap, dnnl_memory_desc_get_size(&fw->wmd)) ||
        reuse((void **)&fw->scale, &fw->scale_cap, cols * sizeof *fw->scale) ||
        reuse((void **)&fw->bias, &fw->bias_cap, cols * sizeof *fw->bias) ||
        reuse(&fw->plain, &fw->plain_cap, cols * (size_t)fw->hidden * esz)) {
        dnnl_engine_destroy(eng);
        vg_fastw_free(fw);
        return VG_ENOMEM;
    }
    plain_weights(fw, m);
    int ok = reorder_weights(fw, eng, fw->plain);
    snprintf(why, whylen, "oneDNN could not reorder the weights for %s", fw->path);
    if (!ok)
        goto fp32;
    dnnl_engine_destroy(eng);
    snprintf(why, whylen, "%s", fw->path);
    *out = fw;
    return 0;
fp32:
    if (eng)
        dnnl_engine_destroy(eng);
    vg_fastw_free(fw);
    return 0;
}

void vg_fastw_free(vg_fastw_t *fw)
{
    if (!fw)
        return;
    free(fw->w);
    free(fw->scale);
    free(fw->bias);
    free(fw->plain);
    free(fw);
}

vg_kernel_t vg_fastw_kernel(const vg_fastw_t *fw) { return fw ? fw->kernel : VG_KERNEL_FP32; }
const char *vg_fastw_path(const vg_fastw_t *fw) { return fw ? fw->path : "fp32 openblas"; }

static void drop_prims(vg_ranker_t *r)
{
    for (int k = 0; k < r->n_prims; k++)
        dnnl_primitive_destroy(r->prims[k].p);
    r->n_prims = 0;
}

vg_ranker_t *vg_ranker_new(void)
{
    vg_ranker_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->prims = calloc(VG_RANK_MAX_BATCH / 16 + 16, sizeof *r->prims);
    if (!r->prims || dnnl_engine_create(&r->eng, dnnl_cpu, 0)) {
        free(r->prims);
        free(r);
        return NULL;
    }
    if (dnnl_stream_create(&r->st, r->eng, dnnl_stream_default_flags)) {
        dnnl_engine_destroy(r->eng);
        free(r->prims);
        free(r);
        return NULL;
    }
    return r;
}

void vg_ranker_free(vg_ranker_t *r)
{
    if (!r)
        return;
    drop_prims(r);
    free(r->prims);
    dnnl_stream_destroy(r->st);
    dnnl_engine_destroy(r->eng);
    free(r->work);
    free(r->src);
    free(r->acc);
    free(r->row);
    free(r->cand);
    free(r->exact);
    free(r->pos);
    free(r->scratch);
    free(r);
}

/* The ranker's primitive for `rows` (a bucket) on fw's shape, compiled on
 * first use. */
static struct prim *get_prim(vg_ranker_t *r, const vg_fastw_t *fw, int rows)
{
    if (r->kernel != fw->kernel || r->hidden != fw->hidden || r->cols != fw->cols) {
        drop_prims(r);
        r->kernel = fw->kernel;
        r->hidden = fw->hidden;
        r->cols = fw->cols;
    }
    for (int k = 0; k < r->n_prims; k++)
        if (r->prims[k].rows == rows)
            return &r->prims[k];
    dnnl_primitive_desc_t pd;
    if (matmul_pd(&pd, r->eng, fw->kernel, rows, fw->hidden, fw->cols, &fw->wmd))
        return NULL;
    struct prim *p = &r->prims[r->n_prims];
    p->rows = rows;
    p->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    dnnl_status_t s = dnnl_primitive_create(&p->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s)
        return NULL;
    r->n_prims++;
    return p;
}

/* Runs acc = q(g)·q(W)ᵀ for `rows` users (bucketed) into r->acc. */
static int fast_product(vg_ranker_t *r, const vg_fastw_t *fw, const vg_real *g, int rows)
{
    const int H = fw->hidden, M = bucket(rows);
    const int int8 = fw->kernel == VG_KERNEL_INT8;
    struct prim *p = get_prim(r, fw, M);
    if (!p)
        return NO_KERNEL; /* oneDNN has no kernel for this batch size after all: the caller goes fp32 */
    if (grow(&r->src, &r->src_n, (size_t)M * H * 2) || grow(&r->acc, &r->acc_n, (size_t)M * fw->cols * 4) ||
        grow(&r->scratch, &r->scratch_n, p->scratch + 1))
        return VG_ENOMEM;
    memset(r->src, 0, (size_t)M * H * 2);
    for (size_t k = 0; k < (size_t)rows * H; k++) {
        if (int8) {
            ((int8_t *)r->src)[k] = (int8_t)lrintf(g[k] * 127.0f);
        } else { /* bf16: round to nearest even (|g| < 1: no NaN or overflow) */
            uint32_t u;
            float f = (float)g[k];
            memcpy(&u, &f, sizeof u);
            ((uint16_t *)r->src)[k] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
    dnnl_dims_t sd = {M, H}, dd = {M, fw->cols}, xd = {(dnnl_dim_t)p->scratch};
    dnnl_memory_desc_t smd, dmd, xmd;
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mx = NULL;
    int ok = !dnnl_memory_desc_init_by_tag(&smd, 2, sd, int8 ? dnnl_s8 : dnnl_bf16, dnnl_ab) &&
             !dnnl_memory_desc_init_by_tag(&dmd, 2, dd, int8 ? dnnl_s32 : dnnl_f32, dnnl_ab) &&
             !dnnl_memory_desc_init_by_tag(&xmd, 1, xd, dnnl_u8, dnnl_a) &&
             !dnnl_memory_create(&ms, &smd, r->eng, r->src) && !dnnl_memory_create(&mw, &fw->wmd, r->eng, fw->w) &&
             !dnnl_memory_create(&md, &dmd, r->eng, r->acc) && !dnnl_memory_create(&mx, &xmd, r->eng, r->scratch);
    if (ok) {
        dnnl_exec_arg_t args[4] = {
            {DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mx}};
        ok = !dnnl_primitive_execute(p->p, r->st, 4, args) && !dnnl_stream_wait(r->st);
    }
    dnnl_memory_t all[4] = {ms, mw, md, mx};
    for (int k = 0; k < 4; k++)
        if (all[k])
            dnnl_memory_destroy(all[k]);
    return ok ? 0 : NO_KERNEL;
}

/* User b's list from the fast product: candidates by approximate score,
 * then the exact fp32 ranking of the candidates. */
static int fast_user(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_real *g, int b,
                     const int32_t *ex, int n_ex, int n, int32_t *idx, vg_real *sc)
{
    const int N = fw->n_items, H = fw->hidden, C = VG_RANK_CANDIDATES * n < N ? VG_RANK_CANDIDATES * n : N;
    vg_real *row = r->row, *exact = r->exact;
    int32_t *cand = r->cand, *pos = r->pos;
    if (fw->kernel == VG_KERNEL_INT8) {
        const int32_t *acc = (const int32_t *)r->acc + (size_t)b * fw->cols;
        for (int i = 0; i < N; i++)
            row[i] = (vg_real)acc[i] * fw->scale[i] + fw->bias[i];
    } else {
        const float *acc = (const float *)r->acc + (size_t)b * fw->cols;
        for (int i = 0; i < N; i++)
            row[i] = acc[i] + fw->bias[i];
    }
    int nc = vg_topn_set(row, N, ex, n_ex, C, cand); /* in index order: exact ties go to the lower index */
    const vg_real *W = m->p[VG_P_W4].w, *bias = m->p[VG_P_B4].w, *gb = g + (size_t)b * H;
    for (int j = 0; j < nc; j++)
        exact[j] = cblas_sdot(H, gb, 1, W + (size_t)cand[j] * H, 1) + bias[cand[j]];
    int got = vg_topn(exact, nc, NULL, 0, n, pos, sc);
    for (int j = 0; j < got; j++)
        idx[j] = cand[pos[j]];
    return got;
}

static int fast_topn(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *X,
                     const int32_t *const *ex, const int *n_ex, int n, int32_t *idx, vg_real *sc, int *cnt)
{
    const int C = VG_RANK_CANDIDATES * n;
    if (fw->n_items != m->n_items || fw->hidden != m->cfg.hidden)
        return VG_EINVAL;
    if (grow(&r->work, &r->work_n, vg_model_score_work_size(m, X->rows) * sizeof(vg_real)) ||
        grow(&r->row, &r->row_n, (size_t)fw->n_items * sizeof(vg_real)) ||
        grow(&r->cand, &r->cand_n, (size_t)C * sizeof(int32_t)) ||
        grow(&r->exact, &r->exact_n, (size_t)C * sizeof(vg_real)) || grow(&r->pos, &r->pos_n, (size_t)n * 4))
        return VG_ENOMEM;
    double t0 = vg_mono_s();
    const vg_real *g = vg_model_hidden(m, X, r->work);
    int rc = g ? fast_product(r, fw, g, X->rows) : VG_EINVAL;
    double t1 = vg_mono_s();
    r->stats.product_s += t1 - t0;
    for (int b = 0; !rc && b < X->rows; b++)
        cnt[b] = fast_user(r, m, fw, g, b, ex ? ex[b] : NULL, ex ? n_ex[b] : 0, n, idx + (size_t)b * n,
                           sc ? sc + (size_t)b * n : NULL);
    r->stats.select_s += vg_mono_s() - t1;
    return rc;
}

#else /* VG_DOUBLE: fp32 only */

struct vg_fastw {
    int unused;
};
struct vg_ranker {
    vg_ranker_stats_t stats;
    void *work;
    size_t work_n;
};

int vg_fastw_rebuild(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen)
{
    free(*out);
    return vg_fastw_build(out, m, want, why, whylen);
}
int vg_fastw_build(vg_fastw_t **out, const vg_model_t *m, vg_kernel_t want, char *why, size_t whylen)
{
    (void)m;
    (void)want;
    *out = NULL;
    if (why)
        snprintf(why, whylen, "a double-precision build");
    return 0;
}
void vg_fastw_free(vg_fastw_t *fw) { free(fw); }
vg_kernel_t vg_fastw_kernel(const vg_fastw_t *fw) { return fw ? VG_KERNEL_AUTO : VG_KERNEL_FP32; }
const char *vg_fastw_path(const vg_fastw_t *fw) { return fw ? "?" : "fp32 openblas"; }
vg_ranker_t *vg_ranker_new(void) { return calloc(1, sizeof(vg_ranker_t)); }
void vg_ranker_free(vg_ranker_t *r)
{
    if (r)
        free(r->work);
    free(r);
}
static int fast_topn(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *X,
                     const int32_t *const *ex, const int *n_ex, int n, int32_t *idx, vg_real *sc, int *cnt)
{
    (void)r, (void)m, (void)fw, (void)X, (void)ex, (void)n_ex, (void)n, (void)idx, (void)sc, (void)cnt;
    return VG_EINVAL;
}
#endif

/* fp32: every item's exact score, then the top n. */
static int fp32_topn(vg_ranker_t *r, const vg_model_t *m, const vg_csr_t *X, const int32_t *const *ex,
                     const int *n_ex, int n, int32_t *idx, vg_real *sc, int *cnt)
{
    const size_t N = (size_t)m->n_items, wn = vg_model_score_work_size(m, X->rows);
    if (grow(&r->work, &r->work_n, (wn + (size_t)X->rows * N) * sizeof(vg_real)))
        return VG_ENOMEM;
    vg_real *scores = (vg_real *)r->work + wn;
    double t0 = vg_mono_s();
    int rc = vg_model_score(m, X, scores, r->work);
    double t1 = vg_mono_s();
    r->stats.product_s += t1 - t0;
    for (int b = 0; !rc && b < X->rows; b++)
        cnt[b] = vg_topn(scores + b * N, (int)N, ex ? ex[b] : NULL, ex ? n_ex[b] : 0, n, idx + (size_t)b * n,
                         sc ? sc + (size_t)b * n : NULL);
    r->stats.select_s += vg_mono_s() - t1;
    return rc;
}

int vg_ranker_topn(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *X,
                   const int32_t *const *ex, const int *n_ex, int n, int32_t *idx, vg_real *sc, int *cnt)
{
    if (X->rows < 0 || X->rows > VG_RANK_MAX_BATCH || X->cols != m->n_items || n < 0)
        return VG_EINVAL;
    if (X->rows == 0 || n == 0) {
        for (int b = 0; b < X->rows; b++)
            cnt[b] = 0;
        return 0;
    }
    r->stats.users += X->rows;
    r->stats.calls++;
    int rc = fw ? fast_topn(r, m, fw, X, ex, n_ex, n, idx, sc, cnt) : NO_KERNEL;
    return rc == NO_KERNEL ? fp32_topn(r, m, X, ex, n_ex, n, idx, sc, cnt) : rc; /* fp32 when the fast path cannot */
}

void vg_ranker_stats(const vg_ranker_t *r, vg_ranker_stats_t *out) { *out = r->stats; }
