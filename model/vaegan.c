/*
 * vaegan.c — forward pass, hand-derived backward pass and Adam for VAEGAN
 * (MODEL.md) and Mult-VAE.
 *
 * One call of vg_model_grad() runs the whole batch once forward and then
 * back, producing the gradient of each player's own loss w.r.t. its own
 * parameters (simultaneous update).  Shapes, with B users, N items:
 *
 *   x̄ = dropout(x/|x|)          sparse, values xv[k] per stored entry
 *   pre0 = x̄ E1 + b1            B×H   sparse gather, O(nnz·H)
 *   pre  = pre0 + s1 ε1 E1       B×H   dense GEMM B×N×H (AVB variants)
 *   h = tanh(pre); z = (h + s2 ε2) W2 + b2          (mult-vae: μ, logσ² = h W2 + b2)
 *   g = tanh(z W3 + b3); l = g W4ᵀ + b4             B×N
 *   T = Ta·tanh(x̄ TA + TC + z TB) + TD              (z_q and prior z_p)
 *   z_c = tanh(x̄ QC + QE); D(v) = DW·tanh(v DP + DR + z_c DQ) + DS
 *   contractive: Σ_b d_bᵀ[(E1ᵀE1) ∘ (W2 W2ᵀ)] d_b / B, d = 1 − tanh(pre0)²
 *
 * The contractive term uses the noise-free Jacobian (pre0, without ε1/ε2) of
 * the dropout input, as MODEL.md specifies; its Gram matrices cost O(H²·N)
 * per batch, not per user.  Everything is preallocated in the workspace for
 * max_batch users: a training step allocates nothing unless a batch has more
 * stored entries than any before it.
 */
#include "model/vaegan.h"
#include "model/internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- configuration ---------------------------------------------------- */

static const char *const variant_names[] = {"mult-vae", "avb", "avb+d", "avb+d+c"};
static const char *const lik_names[] = {"multinomial", "logistic"};

void vg_model_cfg_default(vg_model_cfg_t *c, vg_variant_t v)
{
    memset(c, 0, sizeof *c);
    c->variant = v;
    c->likelihood = VG_LIK_MULTINOMIAL;
    c->hidden = 600;
    c->latent = 200;
    c->disc_hidden = 200;
    c->alpha_cap = 0.2;
    c->anneal_steps = 200000;
    c->beta = v >= VG_VARIANT_AVB_D ? 0.2 : 0.0;
    c->lambda = v == VG_VARIANT_AVB_D_C ? 3e-4 : 0.0;
    c->dropout = 0.5;
    c->lr = 1e-3;
    c->noise_input = v == VG_VARIANT_MULT_VAE ? 0.0 : -1.0;
    c->noise_hidden = v == VG_VARIANT_MULT_VAE ? 0.0 : 0.1;
    c->seed = 1;
}

int vg_variant_parse(const char *name, vg_variant_t *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, variant_names[i]) == 0) {
            *out = (vg_variant_t)i;
            return 0;
        }
    return VG_EINVAL;
}

const char *vg_variant_name(vg_variant_t v) { return (unsigned)v < 4 ? variant_names[v] : "?"; }

int vg_likelihood_parse(const char *name, vg_likelihood_t *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, lik_names[i]) == 0) {
            *out = (vg_likelihood_t)i;
            return 0;
        }
    return VG_EINVAL;
}

const char *vg_likelihood_name(vg_likelihood_t l) { return (unsigned)l < 2 ? lik_names[l] : "?"; }

/* ---- small dense helpers ------------------------------------------------ */

/* Element-wise loops go parallel (OpenMP) only above this many elements:
 * below it, waking the threads costs more than it saves, and OpenMP's
 * spinning workers would slow the BLAS threads that run next. */
#define VG_PAR_MIN (1L << 22)

static inline void gemm(int ta, int tb, int M, int N, int K, vg_real alpha, const vg_real *A, int lda,
                        const vg_real *B, int ldb, vg_real beta, vg_real *C, int ldc)
{
    GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
         lda, B, ldb, beta, C, ldc);
}

static inline vg_real sigm(vg_real x) { return (vg_real)1 / ((vg_real)1 + R_EXP(-x)); }

/* log(1 + e^x) without overflow */
static inline vg_real softplus(vg_real x) { return (x > 0 ? x : 0) + R_LOG1P(R_EXP(-(x > 0 ? x : -x))); }

/* Y[b,:] = bias (rows B, width n) */
static void set_rows(vg_real *Y, const vg_real *bias, int B, int n)
{
    for (int b = 0; b < B; b++)
        memcpy(Y + (size_t)b * n, bias, (size_t)n * sizeof *Y);
}

/* db[j] += Σ_b dY[b, j] */
static void add_colsum(vg_real *db, const vg_real *dY, int B, int n)
{
    for (int b = 0; b < B; b++) {
        const vg_real *r = dY + (size_t)b * n;
        for (int j = 0; j < n; j++)
            db[j] += r[j];
    }
}

/* Y[b,:] += Σ_{k in row b} val[k] W[idx[k], :]   (val NULL: 1) */
static void sp_gather(const vg_csr_t *X, const vg_real *val, const vg_real *W, int n, vg_real *Y)
{
    for (int b = 0; b < X->rows; b++) {
        vg_real *y = Y + (size_t)b * n;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            const vg_real *w = W + (size_t)X->indices[k] * n;
            vg_real a = val ? val[k] : (vg_real)1;
            if (a == 0)
                continue;
            for (int j = 0; j < n; j++)
                y[j] += a * w[j];
        }
    }
}

/* dW[idx[k], :] += val[k] dY[b, :]   (val NULL: 1) */
static void sp_scatter(const vg_csr_t *X, const vg_real *val, const vg_real *dY, int n, vg_real *dW)
{
    for (int b = 0; b < X->rows; b++) {
        const vg_real *dy = dY + (size_t)b * n;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            vg_real a = val ? val[k] : (vg_real)1;
            if (a == 0)
                continue;
            vg_real *dw = dW + (size_t)X->indices[k] * n;
            for (int j = 0; j < n; j++)
                dw[j] += a * dy[j];
        }
    }
}

static void tanh_inplace(vg_real *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = R_TANH(x[i]);
}

/* ---- the workspace ------------------------------------------------------- */

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

static vg_real *walloc(vg_work_t *w, size_t n, int *fail)
{
    if (n == 0)
        n = 1;
    vg_real *p = calloc(n, sizeof *p);
    if (!p)
        *fail = 1;
    else
        w->blocks[w->n_blocks++] = p;
    return p;
}

static void work_free(vg_work_t *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_blocks; i++)
        free(w->blocks[i]);
    free(w->keep);
    free(w->xv);
    free(w->sl);
    free(w);
}

static vg_work_t *work_new(const vg_model_t *m, int B)
{
    vg_work_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    const vg_model_cfg_t *c = &m->cfg;
    size_t N = (size_t)m->n_items, H = (size_t)c->hidden, K = (size_t)c->latent, Hd = (size_t)c->disc_hidden;
    size_t Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    size_t Bs = (size_t)B, HH = (size_t)(H > K ? H : K);
    int fail = 0;
    int avb = c->variant != VG_VARIANT_MULT_VAE, use_d = c->variant >= VG_VARIANT_AVB_D,
        use_c = c->variant == VG_VARIANT_AVB_D_C;
    w->B = B;
    w->N = m->n_items;
    w->inv = walloc(w, Bs, &fail);
    w->eps1 = avb && c->noise_input > 0 ? walloc(w, Bs * N, &fail) : NULL;
    w->eps2 = walloc(w, Bs * HH, &fail);
    w->zp = walloc(w, Bs * K, &fail);
    w->pre0 = walloc(w, Bs * H, &fail);
    w->h = walloc(w, Bs * H, &fail);
    w->hn = walloc(w, Bs * H, &fail);
    w->out = walloc(w, Bs * Kout, &fail);
    w->z = walloc(w, Bs * K, &fail);
    w->g = walloc(w, Bs * H, &fail);
    w->logits = walloc(w, Bs * N, &fail);
    w->dl = walloc(w, Bs * N, &fail);
    w->dg = walloc(w, Bs * H, &fail);
    w->dz = walloc(w, Bs * K, &fail);
    w->dh = walloc(w, Bs * H, &fail);
    w->dout = walloc(w, Bs * Kout, &fail);
    w->t1 = walloc(w, Bs * (H > Hd ? H : Hd), &fail);
    w->t2 = walloc(w, Bs * (H > Hd ? H : Hd), &fail);
    w->t3 = walloc(w, Bs * (H > Hd ? H : Hd), &fail);
    if (avb) {
        w->ex = walloc(w, Bs * Hd, &fail);
        w->uq = walloc(w, Bs * Hd, &fail);
        w->up = walloc(w, Bs * Hd, &fail);
        w->tq = walloc(w, Bs, &fail);
        w->tp = walloc(w, Bs, &fail);
    }
    if (use_d) {
        w->zc = walloc(w, Bs * K, &fail);
        w->dzc = walloc(w, Bs * K, &fail);
        w->eq = walloc(w, Bs * Hd, &fail);
        w->hr = walloc(w, Bs * Hd, &fail);
        w->hf = walloc(w, Bs * Hd, &fail);
        w->dr = walloc(w, Bs, &fail);
        w->df = walloc(w, Bs, &fail);
    }
    if (use_c) {
        w->h0 = walloc(w, Bs * H, &fail);
        w->Y = walloc(w, Bs * H, &fail);
        w->M = walloc(w, H * H, &fail);
        w->S = walloc(w, H * H, &fail);
        w->MS = walloc(w, H * H, &fail);
        w->Gam = walloc(w, H * H, &fail);
    }
    if (fail) {
        work_free(w);
        return NULL;
    }
    return w;
}

static int work_reserve_nnz(vg_work_t *w, size_t nnz)
{
    if (nnz <= w->cap_nnz && w->keep)
        return 0;
    size_t cap = nnz > 2 * w->cap_nnz ? nnz : 2 * w->cap_nnz;
    vg_real *a = realloc(w->keep, cap * sizeof *a);
    if (a)
        w->keep = a;
    vg_real *b = realloc(w->xv, cap * sizeof *b);
    if (b)
        w->xv = b;
    vg_real *s = realloc(w->sl, cap * sizeof *s);
    if (s)
        w->sl = s;
    if (!a || !b || !s)
        return VG_ENOMEM;
    w->cap_nnz = cap;
    return 0;
}

/* ---- parameters ----------------------------------------------------------- */

static const char *const param_names[VG_P_COUNT] = {
    "enc1.w", "enc1.b", "enc2.w", "enc2.b", "dec1.w", "dec1.b", "dec2.w", "dec2.b", "T.A", "T.c",
    "T.B", "T.a", "T.d", "Q.C", "Q.e", "D.P", "D.r", "D.Q", "D.p", "D.s"};

static int param_alloc(vg_param_t *p, size_t rows, size_t cols, size_t cap_rows)
{
    size_t n = cap_rows * cols;
    p->w = calloc(n ? n : 1, sizeof(vg_real));
    p->g = calloc(n ? n : 1, sizeof(vg_real));
    p->m = calloc(n ? n : 1, sizeof(vg_real));
    p->v = calloc(n ? n : 1, sizeof(vg_real));
    p->rows = rows;
    p->cols = cols;
    p->cap_rows = cap_rows;
    return p->w && p->g && p->m && p->v ? 0 : VG_ENOMEM;
}

static void param_free(vg_param_t *p)
{
    free(p->w);
    free(p->g);
    free(p->m);
    free(p->v);
    p->w = p->g = p->m = p->v = NULL;
}

/* Xavier-uniform bound of a weight tensor, by slot (fans as PyTorch takes them). */
static double xavier_bound(const vg_model_t *m, int slot)
{
    const vg_param_t *p = &m->p[slot];
    double fan_in = (double)p->rows, fan_out = (double)p->cols;
    if (p->item_rows)
        fan_in = m->n_items;
    return sqrt(6.0 / (fan_in + fan_out));
}

static int is_bias(int slot)
{
    return slot == VG_P_B1 || slot == VG_P_B2 || slot == VG_P_B3 || slot == VG_P_B4 || slot == VG_P_TC ||
           slot == VG_P_TD || slot == VG_P_QE || slot == VG_P_DR || slot == VG_P_DS;
}

/* Initialises rows [r0, rows) of a tensor. */
static void param_init_rows(vg_model_t *m, int slot, size_t r0)
{
    vg_param_t *p = &m->p[slot];
    vg_real *w = p->w + r0 * p->cols;
    size_t n = (p->rows - r0) * p->cols;
    if (is_bias(slot))
        vg_rng_normal(&m->rng, w, n, (vg_real)0.001);
    else
        vg_rng_uniform_fill(&m->rng, w, n, (vg_real)xavier_bound(m, slot));
}

/* Shapes: rows, cols, whether rows are items, player. */
static void param_shapes(const vg_model_t *m, size_t shape[VG_P_COUNT][4])
{
    const vg_model_cfg_t *c = &m->cfg;
    size_t N = (size_t)m->n_items, H = (size_t)c->hidden, K = (size_t)c->latent, Hd = (size_t)c->disc_hidden;
    size_t Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    int avb = c->variant != VG_VARIANT_MULT_VAE, use_d = c->variant >= VG_VARIANT_AVB_D;
    size_t s[VG_P_COUNT][4] = {
        [VG_P_E1] = {N, H, 1, VG_PLAYER_G},      [VG_P_B1] = {1, H, 0, VG_PLAYER_G},
        [VG_P_W2] = {H, Kout, 0, VG_PLAYER_G},   [VG_P_B2] = {1, Kout, 0, VG_PLAYER_G},
        [VG_P_W3] = {K, H, 0, VG_PLAYER_G},      [VG_P_B3] = {1, H, 0, VG_PLAYER_G},
        [VG_P_W4] = {N, H, 1, VG_PLAYER_G},      [VG_P_B4] = {N, 1, 1, VG_PLAYER_G},
        [VG_P_TA] = {avb * N, Hd, 1, VG_PLAYER_T}, [VG_P_TC] = {avb, Hd, 0, VG_PLAYER_T},
        [VG_P_TB] = {avb * K, Hd, 0, VG_PLAYER_T}, [VG_P_TW] = {avb, Hd, 0, VG_PLAYER_T},
        [VG_P_TD] = {avb, 1, 0, VG_PLAYER_T},
        [VG_P_QC] = {use_d * N, K, 1, VG_PLAYER_D}, [VG_P_QE] = {use_d, K, 0, VG_PLAYER_D},
        [VG_P_DP] = {use_d * N, Hd, 1, VG_PLAYER_D}, [VG_P_DR] = {use_d, Hd, 0, VG_PLAYER_D},
        [VG_P_DQ] = {use_d * K, Hd, 0, VG_PLAYER_D}, [VG_P_DW] = {use_d, Hd, 0, VG_PLAYER_D},
        [VG_P_DS] = {use_d, 1, 0, VG_PLAYER_D},
    };
    memcpy(shape, s, sizeof s);
}

static int check_cfg(const vg_model_cfg_t *c, int n_items, int max_batch)
{
    if ((unsigned)c->variant > VG_VARIANT_AVB_D_C || (unsigned)c->likelihood > VG_LIK_LOGISTIC)
        return VG_EINVAL;
    if (c->hidden < 1 || c->latent < 1 || c->disc_hidden < 1 || n_items < 1 || max_batch < 1)
        return VG_EINVAL;
    if (!(c->dropout >= 0 && c->dropout < 1) || !(c->lr > 0) || !(c->alpha_cap >= 0) || !(c->beta >= 0) ||
        !(c->lambda >= 0) || !(c->noise_hidden >= 0) || !(c->anneal_steps >= 0) || isnan(c->noise_input))
        return VG_EINVAL;
    return 0;
}

int vg_model_alloc_(vg_model_t *m, int max_batch)
{
    int rc = check_cfg(&m->cfg, m->n_items, max_batch);
    if (rc)
        return rc;
    size_t shape[VG_P_COUNT][4];
    param_shapes(m, shape);
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        p->name = param_names[i];
        p->item_rows = (int)shape[i][2];
        p->player = (int)shape[i][3];
        if (param_alloc(p, shape[i][0], shape[i][1], shape[i][0]) < 0)
            return VG_ENOMEM;
    }
    m->max_batch = max_batch;
    m->work = work_new(m, max_batch);
    return m->work ? 0 : VG_ENOMEM;
}

int vg_model_init(vg_model_t *m, const vg_model_cfg_t *cfg, int n_items, int max_batch)
{
    memset(m, 0, sizeof *m);
    int rc = check_cfg(cfg, n_items, max_batch);
    if (rc)
        return rc;
    m->cfg = *cfg;
    if (m->cfg.noise_input < 0)
        m->cfg.noise_input = 1.0 / sqrt((double)n_items);
    if (m->cfg.variant == VG_VARIANT_MULT_VAE)
        m->cfg.noise_input = m->cfg.noise_hidden = 0;
    m->n_items = n_items;
    m->gen_terms = VG_TERM_ALL;
    vg_rng_seed(&m->rng, cfg->seed);
    vg_vocab_init(&m->vocab);
    rc = vg_model_alloc_(m, max_batch);
    if (rc) {
        vg_model_close(m);
        return rc;
    }
    for (int i = 0; i < VG_P_COUNT; i++)
        if (m->p[i].rows)
            param_init_rows(m, i, 0);
    return 0;
}

void vg_model_close(vg_model_t *m)
{
    for (int i = 0; i < VG_P_COUNT; i++)
        param_free(&m->p[i]);
    work_free(m->work);
    m->work = NULL;
    vg_vocab_free(&m->vocab);
}

int vg_model_snapshot(vg_model_t *dst, const vg_model_t *src)
{
    static const int gen[] = {VG_P_E1, VG_P_B1, VG_P_W2, VG_P_B2, VG_P_W3, VG_P_B3, VG_P_W4, VG_P_B4};
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->n_items = src->n_items;
    dst->step = src->step;
    dst->rng = src->rng;
    dst->gen_terms = src->gen_terms;
    vg_vocab_init(&dst->vocab);
    for (size_t k = 0; k < sizeof gen / sizeof gen[0]; k++) {
        const vg_param_t *p = &src->p[gen[k]];
        vg_param_t *q = &dst->p[gen[k]];
        *q = *p;
        q->g = q->m = q->v = NULL;
        q->cap_rows = p->rows;
        size_t n = p->rows * p->cols;
        q->w = malloc((n ? n : 1) * sizeof(vg_real));
        if (!q->w) {
            vg_model_close(dst);
            return VG_ENOMEM;
        }
        memcpy(q->w, p->w, n * sizeof(vg_real));
    }
    return 0;
}

int vg_model_grow(vg_model_t *m, int n_items)
{
    if (n_items <= m->n_items)
        return 0;
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        if (!p->item_rows || !p->rows)
            continue;
        if ((size_t)n_items > p->cap_rows) {
            size_t cap = p->cap_rows * 2 > (size_t)n_items ? p->cap_rows * 2 : (size_t)n_items;
            vg_real **arrs[4] = {&p->w, &p->g, &p->m, &p->v};
            for (int a = 0; a < 4; a++) {
                vg_real *q = realloc(*arrs[a], cap * p->cols * sizeof(vg_real));
                if (!q)
                    return VG_ENOMEM;
                *arrs[a] = q;
            }
            p->cap_rows = cap;
        }
    }
    int old = m->n_items;
    m->n_items = n_items;
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        if (!p->item_rows || !p->rows)
            continue;
        size_t r0 = p->rows, add = ((size_t)n_items - r0) * p->cols;
        p->rows = (size_t)n_items;
        memset(p->m + r0 * p->cols, 0, add * sizeof(vg_real));
        memset(p->v + r0 * p->cols, 0, add * sizeof(vg_real));
        memset(p->g + r0 * p->cols, 0, add * sizeof(vg_real));
        param_init_rows(m, i, r0);
    }
    vg_work_t *w = work_new(m, m->max_batch);
    if (!w) {
        m->n_items = old;
        return VG_ENOMEM;
    }
    work_free(m->work);
    m->work = w;
    return 0;
}

double vg_model_alpha(const vg_model_t *m)
{
    const vg_model_cfg_t *c = &m->cfg;
    double t = (double)m->step;
    if (c->variant == VG_VARIANT_MULT_VAE) /* Liang et al.: min(cap, t / total) */
        return c->anneal_steps > 0 ? fmin(c->alpha_cap, t / c->anneal_steps) : c->alpha_cap;
    return c->anneal_steps > 0 ? c->alpha_cap * fmin(1.0, t / c->anneal_steps) : c->alpha_cap;
}

double vg_model_step_flops(const vg_model_t *m, int B)
{
    const vg_model_cfg_t *c = &m->cfg;
    double N = m->n_items, H = c->hidden, K = c->latent, b = B;
    double Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    double f = 3 * 2 * b * H * N;     /* logits, dW4, dg */
    f += 3 * 2 * b * H * Kout;        /* enc2 */
    f += 3 * 2 * b * K * H;           /* dec1 */
    if (c->variant != VG_VARIANT_MULT_VAE && c->noise_input > 0)
        f += 2 * 2 * b * N * H;       /* input noise forward + its W1 gradient */
    if (c->variant == VG_VARIANT_AVB_D_C)
        f += H * H * N + 2 * H * H * N + 2 * b * H * H * 2; /* Gram (syrk), dE1, Y and Gamma */
    return f;
}

/* ---- forward and backward ------------------------------------------------- */

int vg_model_grad(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *st)
{
    const vg_model_cfg_t *c = &m->cfg;
    vg_work_t *w = m->work;
    const int B = X->rows, N = m->n_items, H = c->hidden, K = c->latent, Hd = c->disc_hidden;
    if (!w)
        return VG_EINVAL; /* a scoring snapshot cannot be trained */
    const int mv = c->variant == VG_VARIANT_MULT_VAE;
    const int avb = !mv, use_d = c->variant >= VG_VARIANT_AVB_D, use_c = c->variant == VG_VARIANT_AVB_D_C;
    const int Kout = mv ? 2 * K : K;
    const int64_t nnz = vg_csr_nnz(X);
    vg_step_stats_t s;
    memset(&s, 0, sizeof s);
    if (B < 1 || B > m->max_batch || X->cols != N)
        return VG_EINVAL;
    if (work_reserve_nnz(w, (size_t)nnz) < 0)
        return VG_ENOMEM;
    const unsigned terms = m->gen_terms;
    const vg_real invB = (vg_real)1 / (vg_real)B;
    const double alpha = vg_model_alpha(m);
    s.alpha = alpha;
    vg_param_t *P = m->p;
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_real *g = P[i].g;
        long n = (long)(P[i].rows * P[i].cols);
#pragma omp parallel for simd schedule(static) if (n > VG_PAR_MIN)
        for (long k = 0; k < n; k++)
            g[k] = 0;
    }

    /* inputs: 1/sqrt(n_b), dropout, x̄ */
    const vg_real keepv = (vg_real)(1.0 / (1.0 - c->dropout));
    for (int b = 0; b < B; b++) {
        int nb = vg_csr_row_len(X, b);
        w->inv[b] = nb ? (vg_real)(1.0 / sqrt((double)nb)) : 0;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            if (!m->frozen_noise)
                w->keep[k] = c->dropout > 0 && vg_rng_uniform(&m->rng) < c->dropout ? 0 : keepv;
            w->xv[k] = w->inv[b] * w->keep[k];
        }
    }

    /* encoder */
    set_rows(w->pre0, P[VG_P_B1].w, B, H);
    sp_gather(X, w->xv, P[VG_P_E1].w, H, w->pre0);
    memcpy(w->h, w->pre0, (size_t)B * H * sizeof(vg_real));
    if (w->eps1) {
        if (!m->frozen_noise)
            vg_rng_normal_par(&m->rng, w->eps1, (size_t)B * N, 1);
        gemm(0, 0, B, H, N, (vg_real)c->noise_input, w->eps1, N, P[VG_P_E1].w, H, 1, w->h, H);
    }
    tanh_inplace(w->h, (size_t)B * H);
    set_rows(w->out, P[VG_P_B2].w, B, Kout);
    if (mv) {
        gemm(0, 0, B, Kout, H, 1, w->h, H, P[VG_P_W2].w, Kout, 1, w->out, Kout);
        if (!m->frozen_noise)
            vg_rng_normal(&m->rng, w->eps2, (size_t)B * K, 1);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < K; j++) {
                vg_real mu = w->out[(size_t)b * Kout + j], lv = w->out[(size_t)b * Kout + K + j];
                w->z[(size_t)b * K + j] = mu + R_EXP((vg_real)0.5 * lv) * w->eps2[(size_t)b * K + j];
            }
    } else {
        if (!m->frozen_noise)
            vg_rng_normal(&m->rng, w->eps2, (size_t)B * H, 1);
        for (size_t i = 0; i < (size_t)B * H; i++)
            w->hn[i] = w->h[i] + (vg_real)c->noise_hidden * w->eps2[i];
        gemm(0, 0, B, K, H, 1, w->hn, H, P[VG_P_W2].w, K, 1, w->out, K);
        memcpy(w->z, w->out, (size_t)B * K * sizeof(vg_real));
    }

    /* decoder */
    set_rows(w->g, P[VG_P_B3].w, B, H);
    gemm(0, 0, B, H, K, 1, w->z, K, P[VG_P_W3].w, H, 1, w->g, H);
    tanh_inplace(w->g, (size_t)B * H);
    for (int b = 0; b < B; b++)
        memcpy(w->logits + (size_t)b * N, P[VG_P_B4].w, (size_t)N * sizeof(vg_real));
    gemm(0, 1, B, N, H, 1, w->g, H, P[VG_P_W4].w, H, 1, w->logits, N);

    /* reconstruction likelihood: nll and dl = d(-mean log p)/dl */
    double nll = 0;
    const vg_real lik_w = (terms & VG_TERM_LIK) ? invB : 0;
#pragma omp parallel for schedule(static) reduction(+ : nll) if ((long)B * N > VG_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const vg_real *l = w->logits + (size_t)b * N;
        vg_real *dl = w->dl + (size_t)b * N;
        int nb = vg_csr_row_len(X, b);
        double ll = 0;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++)
            ll += l[X->indices[k]];
        if (c->likelihood == VG_LIK_MULTINOMIAL) {
            vg_real mx = l[0];
            for (int i = 1; i < N; i++)
                mx = l[i] > mx ? l[i] : mx;
            double sum = 0;
            for (int i = 0; i < N; i++) {
                dl[i] = R_EXP(l[i] - mx);
                sum += dl[i];
            }
            double lse = mx + log(sum);
            ll -= nb * lse;
            vg_real sc = (vg_real)(nb / sum) * lik_w;
            for (int i = 0; i < N; i++)
                dl[i] *= sc;
        } else {
            double sp = 0;
            for (int i = 0; i < N; i++) {
                sp += softplus(l[i]);
                dl[i] = sigm(l[i]) * lik_w;
            }
            ll -= sp;
        }
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++)
            dl[X->indices[k]] -= lik_w;
        nll -= ll;
    }
    s.nll = nll / B;
    s.loss_g = (terms & VG_TERM_LIK) ? s.nll : 0;

    /* dz accumulates the generator's gradient w.r.t. z from T; zero it */
    memset(w->dz, 0, (size_t)B * K * sizeof(vg_real));

    /* ---- T: latent discriminator ---- */
    if (avb) {
        if (!m->frozen_noise)
            vg_rng_normal(&m->rng, w->zp, (size_t)B * K, 1);
        set_rows(w->ex, P[VG_P_TC].w, B, Hd);
        sp_gather(X, w->xv, P[VG_P_TA].w, Hd, w->ex);
        memcpy(w->uq, w->ex, (size_t)B * Hd * sizeof(vg_real));
        memcpy(w->up, w->ex, (size_t)B * Hd * sizeof(vg_real));
        gemm(0, 0, B, Hd, K, 1, w->z, K, P[VG_P_TB].w, Hd, 1, w->uq, Hd);
        gemm(0, 0, B, Hd, K, 1, w->zp, K, P[VG_P_TB].w, Hd, 1, w->up, Hd);
        tanh_inplace(w->uq, (size_t)B * Hd);
        tanh_inplace(w->up, (size_t)B * Hd);
        const vg_real *a = P[VG_P_TW].w;
        double lt = 0, tqm = 0;
        for (int b = 0; b < B; b++) {
            vg_real q = P[VG_P_TD].w[0], pz = P[VG_P_TD].w[0];
            for (int j = 0; j < Hd; j++) {
                q += a[j] * w->uq[(size_t)b * Hd + j];
                pz += a[j] * w->up[(size_t)b * Hd + j];
            }
            w->tq[b] = q;
            w->tp[b] = pz;
            lt += softplus(-q) + softplus(pz);
            tqm += q;
        }
        s.loss_t = lt / B;
        s.t_q = tqm / B;
        const vg_real at = (terms & VG_TERM_T) ? (vg_real)alpha * invB : 0;
        if (terms & VG_TERM_T)
            s.loss_g += alpha * s.t_q;
        /* T's own gradient: t1 = d/d(pre-tanh) for z_q pairs, t2 for prior pairs;
         * t3 = the generator's d(alpha·mean T)/d(pre-tanh) for z_q pairs */
        for (int b = 0; b < B; b++) {
            vg_real gq = -sigm(-w->tq[b]) * invB, gp = sigm(w->tp[b]) * invB;
            P[VG_P_TD].g[0] += gq + gp;
            for (int j = 0; j < Hd; j++) {
                size_t i = (size_t)b * Hd + j;
                vg_real dq = 1 - w->uq[i] * w->uq[i], dp = 1 - w->up[i] * w->up[i];
                P[VG_P_TW].g[j] += gq * w->uq[i] + gp * w->up[i];
                w->t1[i] = gq * a[j] * dq;
                w->t2[i] = gp * a[j] * dp;
                w->t3[i] = at * a[j] * dq;
            }
        }
        gemm(1, 0, K, Hd, B, 1, w->z, K, w->t1, Hd, 1, P[VG_P_TB].g, Hd);
        gemm(1, 0, K, Hd, B, 1, w->zp, K, w->t2, Hd, 1, P[VG_P_TB].g, Hd);
        for (size_t i = 0; i < (size_t)B * Hd; i++)
            w->t1[i] += w->t2[i];
        add_colsum(P[VG_P_TC].g, w->t1, B, Hd);
        sp_scatter(X, w->xv, w->t1, Hd, P[VG_P_TA].g);
        if (terms & VG_TERM_T)
            gemm(0, 1, B, K, Hd, 1, w->t3, Hd, P[VG_P_TB].w, Hd, 1, w->dz, K);
    }

    /* ---- D: user conditioner and reconstruction discriminator ---- */
    if (use_d) {
        set_rows(w->zc, P[VG_P_QE].w, B, K);
        sp_gather(X, w->xv, P[VG_P_QC].w, K, w->zc);
        tanh_inplace(w->zc, (size_t)B * K);
        gemm(0, 0, B, Hd, K, 1, w->zc, K, P[VG_P_DQ].w, Hd, 0, w->eq, Hd);
        for (int b = 0; b < B; b++)
            for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++)
                w->sl[k] = sigm(w->logits[(size_t)b * N + X->indices[k]]);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < Hd; j++) {
                size_t i = (size_t)b * Hd + j;
                w->hr[i] = w->hf[i] = w->eq[i] + P[VG_P_DR].w[j];
            }
        sp_gather(X, NULL, P[VG_P_DP].w, Hd, w->hr);
        sp_gather(X, w->sl, P[VG_P_DP].w, Hd, w->hf);
        tanh_inplace(w->hr, (size_t)B * Hd);
        tanh_inplace(w->hf, (size_t)B * Hd);
        const vg_real *pw = P[VG_P_DW].w;
        double ld = 0, dre = 0, dfa = 0, gterm = 0;
        for (int b = 0; b < B; b++) {
            vg_real r = P[VG_P_DS].w[0], f = P[VG_P_DS].w[0];
            for (int j = 0; j < Hd; j++) {
                r += pw[j] * w->hr[(size_t)b * Hd + j];
                f += pw[j] * w->hf[(size_t)b * Hd + j];
            }
            w->dr[b] = r;
            w->df[b] = f;
            ld += softplus(-r) + softplus(f);
            dre += sigm(r);
            dfa += sigm(f);
            gterm += softplus(-f);
        }
        s.loss_d = ld / B;
        s.d_real = dre / B;
        s.d_fake = dfa / B;
        const int dterm = (terms & VG_TERM_D) && c->beta > 0;
        if (dterm)
            s.loss_g += c->beta * gterm / B;
        /* D's own gradient: t1 real, t2 fake (pre-tanh); t3 generator's, fake */
        for (int b = 0; b < B; b++) {
            vg_real gr = -sigm(-w->dr[b]) * invB, gf = sigm(w->df[b]) * invB;
            vg_real gg = dterm ? -(vg_real)c->beta * sigm(-w->df[b]) * invB : 0;
            P[VG_P_DS].g[0] += gr + gf;
            for (int j = 0; j < Hd; j++) {
                size_t i = (size_t)b * Hd + j;
                vg_real dr_ = 1 - w->hr[i] * w->hr[i], df_ = 1 - w->hf[i] * w->hf[i];
                P[VG_P_DW].g[j] += gr * w->hr[i] + gf * w->hf[i];
                w->t1[i] = gr * pw[j] * dr_;
                w->t2[i] = gf * pw[j] * df_;
                w->t3[i] = gg * pw[j] * df_;
            }
        }
        sp_scatter(X, NULL, w->t1, Hd, P[VG_P_DP].g);
        sp_scatter(X, w->sl, w->t2, Hd, P[VG_P_DP].g);
        for (size_t i = 0; i < (size_t)B * Hd; i++)
            w->t1[i] += w->t2[i];
        add_colsum(P[VG_P_DR].g, w->t1, B, Hd);
        gemm(1, 0, K, Hd, B, 1, w->zc, K, w->t1, Hd, 1, P[VG_P_DQ].g, Hd);
        gemm(0, 1, B, K, Hd, 1, w->t1, Hd, P[VG_P_DQ].w, Hd, 0, w->dzc, K);
        for (size_t i = 0; i < (size_t)B * K; i++)
            w->dzc[i] *= 1 - w->zc[i] * w->zc[i];
        add_colsum(P[VG_P_QE].g, w->dzc, B, K);
        sp_scatter(X, w->xv, w->dzc, K, P[VG_P_QC].g);
        /* generator: d/dv_k = t3_b · DP[i], then through sigma into the logits */
        if (dterm)
            for (int b = 0; b < B; b++)
                for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
                    const vg_real *prow = P[VG_P_DP].w + (size_t)X->indices[k] * Hd;
                    vg_real dv = 0;
                    for (int j = 0; j < Hd; j++)
                        dv += w->t3[(size_t)b * Hd + j] * prow[j];
                    w->dl[(size_t)b * N + X->indices[k]] += dv * w->sl[k] * (1 - w->sl[k]);
                }
    }

    /* ---- generator backward ---- */
    gemm(1, 0, N, H, B, 1, w->dl, N, w->g, H, 1, P[VG_P_W4].g, H);
    add_colsum(P[VG_P_B4].g, w->dl, B, N);
    gemm(0, 0, B, H, N, 1, w->dl, N, P[VG_P_W4].w, H, 0, w->dg, H);
    for (size_t i = 0; i < (size_t)B * H; i++)
        w->dg[i] *= 1 - w->g[i] * w->g[i];
    gemm(1, 0, K, H, B, 1, w->z, K, w->dg, H, 1, P[VG_P_W3].g, H);
    add_colsum(P[VG_P_B3].g, w->dg, B, H);
    gemm(0, 1, B, K, H, 1, w->dg, H, P[VG_P_W3].w, H, 1, w->dz, K);

    if (mv) {
        const vg_real kw = (terms & VG_TERM_KL) ? (vg_real)alpha * invB : 0;
        double kl = 0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < K; j++) {
                size_t o = (size_t)b * Kout;
                vg_real mu = w->out[o + j], lv = w->out[o + K + j], e = R_EXP(lv);
                vg_real dz = w->dz[(size_t)b * K + j];
                kl += 0.5 * (-lv + e + mu * mu - 1);
                w->dout[o + j] = dz + kw * mu;
                w->dout[o + K + j] = dz * w->eps2[(size_t)b * K + j] * (vg_real)0.5 * R_EXP((vg_real)0.5 * lv) +
                                     kw * (vg_real)0.5 * (e - 1);
            }
        s.kl = kl / B;
        if (terms & VG_TERM_KL)
            s.loss_g += alpha * s.kl;
        gemm(1, 0, H, Kout, B, 1, w->h, H, w->dout, Kout, 1, P[VG_P_W2].g, Kout);
        add_colsum(P[VG_P_B2].g, w->dout, B, Kout);
        gemm(0, 1, B, H, Kout, 1, w->dout, Kout, P[VG_P_W2].w, Kout, 0, w->dh, H);
    } else {
        gemm(1, 0, H, K, B, 1, w->hn, H, w->dz, K, 1, P[VG_P_W2].g, K);
        add_colsum(P[VG_P_B2].g, w->dz, B, K);
        gemm(0, 1, B, H, K, 1, w->dz, K, P[VG_P_W2].w, K, 0, w->dh, H);
    }
    for (size_t i = 0; i < (size_t)B * H; i++)
        w->dh[i] *= 1 - w->h[i] * w->h[i];
    if (w->eps1) /* the input noise path: pre += s1 ε1 E1 */
        gemm(1, 0, N, H, B, (vg_real)c->noise_input, w->eps1, N, w->dh, H, 1, P[VG_P_E1].g, H);

    /* ---- contractive penalty (noise-free Jacobian at pre0) ---- */
    if (use_c && (terms & VG_TERM_C) && c->lambda > 0) {
        const vg_real *E1 = P[VG_P_E1].w, *W2 = P[VG_P_W2].w;
        for (size_t i = 0; i < (size_t)B * H; i++) {
            vg_real t = R_TANH(w->pre0[i]);
            w->h0[i] = t;
            w->t1[i] = 1 - t * t; /* d */
        }
        SYRK(CblasRowMajor, CblasUpper, CblasTrans, H, N, 1, E1, H, 0, w->M, H);
        gemm(0, 1, H, H, K, 1, W2, K, W2, K, 0, w->S, H);
        for (int i = 0; i < H; i++)
            for (int j = i; j < H; j++) {
                vg_real v = w->M[(size_t)i * H + j];
                w->M[(size_t)j * H + i] = v;
                w->MS[(size_t)i * H + j] = w->MS[(size_t)j * H + i] = v * w->S[(size_t)i * H + j];
            }
        gemm(0, 0, B, H, H, 1, w->t1, H, w->MS, H, 0, w->Y, H);
        double pen = 0;
        for (size_t i = 0; i < (size_t)B * H; i++)
            pen += w->Y[i] * w->t1[i];
        s.contr = pen / B;
        s.loss_g += c->lambda * s.contr;
        const vg_real cl = (vg_real)c->lambda * invB;
        SYRK(CblasRowMajor, CblasUpper, CblasTrans, H, B, 1, w->t1, H, 0, w->Gam, H);
        for (int i = 0; i < H; i++)
            for (int j = i; j < H; j++) {
                vg_real gm = w->Gam[(size_t)i * H + j];
                /* Gam∘S into Gam (upper and lower), Gam∘M into MS */
                w->Gam[(size_t)i * H + j] = w->Gam[(size_t)j * H + i] = gm * w->S[(size_t)i * H + j];
                w->MS[(size_t)i * H + j] = w->MS[(size_t)j * H + i] = gm * w->M[(size_t)i * H + j];
            }
        gemm(0, 0, N, H, H, 2 * cl, E1, H, w->Gam, H, 1, P[VG_P_E1].g, H);
        gemm(0, 0, H, K, H, 2 * cl, w->MS, H, W2, K, 1, P[VG_P_W2].g, K);
        /* d pen / d pre0 = 2 Y ∘ (-2 h0 d) ; added to dh (the pre0 and pre paths share E1's sparse
         * part and b1, but not the noise path, which was applied above) */
        for (size_t i = 0; i < (size_t)B * H; i++)
            w->dh[i] += 2 * cl * w->Y[i] * (-2 * w->h0[i] * w->t1[i]);
    }
    add_colsum(P[VG_P_B1].g, w->dh, B, H);
    sp_scatter(X, w->xv, w->dh, H, P[VG_P_E1].g);

    if (st)
        *st = s;
    return 0;
}

void vg_model_adam(vg_model_t *m)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double t = (double)(m->step + 1);
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    vg_real lr_t = (vg_real)(m->cfg.lr / bc1), sbc2 = (vg_real)sqrt(bc2);
    vg_real B1 = (vg_real)b1, B2 = (vg_real)b2, E = (vg_real)eps;
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        size_t n = p->rows * p->cols;
        vg_real *w = p->w, *g = p->g, *mo = p->m, *v = p->v;
#pragma omp parallel for simd schedule(static) if (n > VG_PAR_MIN)
        for (size_t k = 0; k < n; k++) {
            vg_real gk = g[k];
            mo[k] = B1 * mo[k] + (1 - B1) * gk;
            v[k] = B2 * v[k] + (1 - B2) * gk * gk;
            w[k] -= lr_t * mo[k] / (R_SQRT(v[k]) / sbc2 + E);
        }
    }
    m->step++;
}

int vg_model_train_step(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *stats)
{
    int rc = vg_model_grad(m, X, stats);
    if (rc)
        return rc;
    vg_model_adam(m);
    return 0;
}

/* ---- scoring ----------------------------------------------------------------- */

size_t vg_model_score_work_size(const vg_model_t *m, int rows)
{
    size_t H = (size_t)m->cfg.hidden, K = (size_t)m->cfg.latent;
    size_t Kout = m->cfg.variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    return (size_t)rows * (2 * H + Kout);
}

int vg_model_score(const vg_model_t *m, const vg_csr_t *X, vg_real *scores, vg_real *work)
{
    const vg_model_cfg_t *c = &m->cfg;
    const int B = X->rows, N = m->n_items, H = c->hidden, K = c->latent;
    const int Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    if (X->cols != N || B < 0)
        return VG_EINVAL;
    if (B == 0)
        return 0;
    const vg_param_t *P = m->p;
    vg_real *h = work, *out = h + (size_t)B * H, *g = out + (size_t)B * Kout;
    set_rows(h, P[VG_P_B1].w, B, H);
    for (int b = 0; b < B; b++) {
        int nb = vg_csr_row_len(X, b);
        if (!nb)
            continue;
        vg_real inv = (vg_real)(1.0 / sqrt((double)nb));
        vg_real *y = h + (size_t)b * H;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            const vg_real *wr = P[VG_P_E1].w + (size_t)X->indices[k] * H;
            for (int j = 0; j < H; j++)
                y[j] += inv * wr[j];
        }
    }
    tanh_inplace(h, (size_t)B * H);
    set_rows(out, P[VG_P_B2].w, B, Kout);
    gemm(0, 0, B, Kout, H, 1, h, H, P[VG_P_W2].w, Kout, 1, out, Kout);
    set_rows(g, P[VG_P_B3].w, B, H);
    gemm(0, 0, B, H, K, 1, out, Kout, P[VG_P_W3].w, H, 1, g, H); /* z = μ: the first K columns */
    tanh_inplace(g, (size_t)B * H);
    for (int b = 0; b < B; b++)
        memcpy(scores + (size_t)b * N, P[VG_P_B4].w, (size_t)N * sizeof(vg_real));
    gemm(0, 1, B, N, H, 1, g, H, P[VG_P_W4].w, H, 1, scores, N);
    return 0;
}
