/*
 * vaegan.c — the VAEGAN / Mult-VAE model object: configuration and its
 * defaults, the parameter tensors (shapes, Xavier initialisation, growth of
 * the catalogue), the training workspace, snapshots for readers on other
 * threads, the annealing schedule, FLOP counts, and noise-free scoring.
 * One training step (forward pass, hand-derived backward pass, Adam) is in
 * train.c; docs/model.md describes both.
 *
 * Invariants: a tensor a variant does not use has 0 rows; item-major tensors
 * have rows == n_items <= cap_rows; the workspace matches the model's
 * configuration, n_items and max_batch (it is rebuilt when the catalogue
 * grows), and a snapshot has none (it cannot be trained).  Growth is all or
 * nothing: it makes every allocation first (realloc of the tensors, which
 * keeps their rows, then the new workspace) and only then commits rows, RNG
 * draws and workspace, so a failed growth leaves a model that saves, loads
 * and trains exactly as before.  vg_model_t.fail_alloc, a test hook, makes
 * the k-th of those allocations fail.
 */
#include "model/vaegan.h"
#include "model/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---------------------------------------------------- */

static const char *const variant_names[] = {"mult-vae", "avb", "avb+d", "avb+d+c"};
static const char *const lik_names[] = {"multinomial", "logistic"};

void vg_model_cfg_default(vg_model_cfg_t *c, vg_variant_t v)
{
    memset(c, 0, sizeof *c);
    c->variant = v;
    c->hidden = 600;
    c->disc_hidden = 200;
    c->anneal_steps = 200000;
    c->lr = 1e-3;
    c->input_norm = 0.5;
    c->seed = 1;
    if (v == VG_VARIANT_MULT_VAE) { /* Liang et al.'s settings */
        c->likelihood = VG_LIK_MULTINOMIAL;
        c->latent = 200;
        c->alpha_cap = 0.2;
        c->dropout = 0.5;
        return;
    }
    /* the avb variants: what tools/study.py chose on validation (docs/model.md, "Defaults") */
    c->likelihood = VG_LIK_LOGISTIC;
    c->latent = 64;
    c->alpha_cap = 1.0;
    c->beta = v >= VG_VARIANT_AVB_D ? 0.05 : 0.0;
    c->lambda = v == VG_VARIANT_AVB_D_C ? 3e-3 : 0.0;
    c->dropout = 0.2;
    c->noise_input = 0;
    c->noise_hidden = 0.1;
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

/* ---- the workspace ------------------------------------------------------- */

/* The test hook vg_model_t.fail_alloc: 1 when the allocation about to be
 * made is the one armed to fail (countdown NULL or 0 = off). */
static int injected_failure(int *countdown)
{
    return countdown && *countdown > 0 && --*countdown == 0;
}

/* The workspace being built and whether an allocation failed. */
typedef struct {
    vg_work_t *w;
    int fail;
    int *countdown; /* injected_failure's */
} walloc_t;

static vg_real *walloc(walloc_t *a, size_t n)
{
    if (n == 0)
        n = 1;
    vg_real *p = injected_failure(a->countdown) ? NULL : calloc(n, sizeof *p);
    if (!p)
        a->fail = 1;
    else
        a->w->blocks[a->w->n_blocks++] = p;
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

/* The workspace for configuration c, n_items items and batches of B users,
 * or NULL when out of memory (countdown: injected_failure's, may be NULL). */
static vg_work_t *work_new(const vg_model_cfg_t *c, int n_items, int B, int *countdown)
{
    vg_work_t *w = injected_failure(countdown) ? NULL : calloc(1, sizeof *w);
    if (!w)
        return NULL;
    size_t N = (size_t)n_items, H = (size_t)c->hidden, K = (size_t)c->latent, Hd = (size_t)c->disc_hidden;
    size_t Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    size_t Bs = (size_t)B, HH = (size_t)(H > K ? H : K);
    walloc_t a = {w, 0, countdown};
    int avb = c->variant != VG_VARIANT_MULT_VAE, use_d = c->variant >= VG_VARIANT_AVB_D,
        use_c = c->variant == VG_VARIANT_AVB_D_C;
    w->B = B;
    w->N = n_items;
    w->inv = walloc(&a, Bs);
    w->eps1 = avb && c->noise_input > 0 ? walloc(&a, Bs * N) : NULL;
    w->eps2 = walloc(&a, Bs * HH);
    w->zp = walloc(&a, Bs * K);
    w->pre0 = walloc(&a, Bs * H);
    w->h = walloc(&a, Bs * H);
    w->hn = walloc(&a, Bs * H);
    w->out = walloc(&a, Bs * Kout);
    w->z = walloc(&a, Bs * K);
    w->g = walloc(&a, Bs * H);
    w->logits = walloc(&a, Bs * N);
    w->dl = walloc(&a, Bs * N);
    w->dg = walloc(&a, Bs * H);
    w->dz = walloc(&a, Bs * K);
    w->dh = walloc(&a, Bs * H);
    w->dout = walloc(&a, Bs * Kout);
    w->t1 = walloc(&a, Bs * (H > Hd ? H : Hd));
    w->t2 = walloc(&a, Bs * (H > Hd ? H : Hd));
    w->t3 = walloc(&a, Bs * (H > Hd ? H : Hd));
    if (avb) {
        w->ex = walloc(&a, Bs * Hd);
        w->uq = walloc(&a, Bs * Hd);
        w->up = walloc(&a, Bs * Hd);
        w->tq = walloc(&a, Bs);
        w->tp = walloc(&a, Bs);
    }
    if (use_d) {
        w->zc = walloc(&a, Bs * K);
        w->dzc = walloc(&a, Bs * K);
        w->eq = walloc(&a, Bs * Hd);
        w->hr = walloc(&a, Bs * Hd);
        w->hf = walloc(&a, Bs * Hd);
        w->dr = walloc(&a, Bs);
        w->df = walloc(&a, Bs);
    }
    if (use_c) {
        w->h0 = walloc(&a, Bs * H);
        w->Y = walloc(&a, Bs * H);
        w->M = walloc(&a, H * H);
        w->S = walloc(&a, H * H);
        w->MS = walloc(&a, H * H);
        w->Gam = walloc(&a, H * H);
    }
    if (a.fail) {
        work_free(w);
        return NULL;
    }
    return w;
}

int vg_work_reserve_nnz_(vg_work_t *w, size_t nnz)
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

/* Zero arrays for p: its weights, and with training its gradient and moments. */
static int param_alloc(vg_param_t *p, size_t rows, size_t cols, size_t cap_rows, int training)
{
    size_t n = cap_rows * cols;
    p->w = calloc(n ? n : 1, sizeof(vg_real));
    if (training) {
        p->g = calloc(n ? n : 1, sizeof(vg_real));
        p->m = calloc(n ? n : 1, sizeof(vg_real));
        p->v = calloc(n ? n : 1, sizeof(vg_real));
    }
    p->rows = rows;
    p->cols = cols;
    p->cap_rows = cap_rows;
    return p->w && (!training || (p->g && p->m && p->v)) ? 0 : VG_ENOMEM;
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

void vg_param_shapes_(const vg_model_t *m, size_t shape[VG_P_COUNT][4])
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
        !(c->lambda >= 0) || !(c->noise_hidden >= 0) || !(c->anneal_steps >= 0) || isnan(c->noise_input) ||
        !(c->input_norm >= 0 && c->input_norm <= 1))
        return VG_EINVAL;
    return 0;
}

/* vg_model_alloc_ (training) or vg_model_alloc_weights_. */
static int model_alloc(vg_model_t *m, int max_batch, int training)
{
    int rc = check_cfg(&m->cfg, m->n_items, max_batch);
    if (rc)
        return rc;
    size_t shape[VG_P_COUNT][4];
    vg_param_shapes_(m, shape);
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        if (!training && shape[i][3] != VG_PLAYER_G)
            continue;
        p->name = param_names[i];
        p->item_rows = (int)shape[i][2];
        p->player = (int)shape[i][3];
        if (param_alloc(p, shape[i][0], shape[i][1], shape[i][0], training) < 0)
            return VG_ENOMEM;
    }
    if (!training)
        return 0;
    m->max_batch = max_batch;
    m->work = work_new(&m->cfg, m->n_items, max_batch, NULL);
    return m->work ? 0 : VG_ENOMEM;
}

int vg_model_alloc_(vg_model_t *m, int max_batch) { return model_alloc(m, max_batch, 1); }
int vg_model_alloc_weights_(vg_model_t *m) { return model_alloc(m, 1, 0); }

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
    memset(dst, 0, sizeof *dst);
    return vg_model_resnapshot(dst, src);
}

int vg_model_resnapshot(vg_model_t *dst, const vg_model_t *src)
{
    static const int gen[] = {VG_P_E1, VG_P_B1, VG_P_W2, VG_P_B2, VG_P_W3, VG_P_B3, VG_P_W4, VG_P_B4};
    vg_real *keep[VG_P_COUNT] = {0};
    size_t kept[VG_P_COUNT] = {0}; /* elements each kept array holds */
    for (size_t k = 0; k < sizeof gen / sizeof gen[0]; k++) {
        keep[gen[k]] = dst->p[gen[k]].w;
        kept[gen[k]] = dst->p[gen[k]].cap_rows * dst->p[gen[k]].cols;
    }
    work_free(dst->work); /* a snapshot has none, and an empty vocabulary: nothing else to keep */
    vg_vocab_free(&dst->vocab);
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->n_items = src->n_items;
    dst->step = src->step;
    dst->rng = src->rng;
    dst->gen_terms = src->gen_terms;
    vg_vocab_init(&dst->vocab);
    int rc = 0;
    for (size_t k = 0; k < sizeof gen / sizeof gen[0]; k++) {
        const vg_param_t *p = &src->p[gen[k]];
        vg_param_t *q = &dst->p[gen[k]];
        size_t n = p->rows * p->cols;
        *q = *p;
        q->g = q->m = q->v = NULL;
        q->w = keep[gen[k]]; /* taken over even after a failure, so that vg_model_close frees it */
        q->cap_rows = p->cols && q->w ? kept[gen[k]] / p->cols : 0;
        if (!rc && (!q->w || q->cap_rows < p->rows)) {
            free(q->w);
            q->cap_rows = p->rows;
            if (!(q->w = malloc((n ? n : 1) * sizeof(vg_real))))
                rc = VG_ENOMEM;
        }
        if (!rc)
            memcpy(q->w, p->w, n * sizeof(vg_real));
    }
    if (rc)
        vg_model_close(dst);
    return rc;
}

int vg_model_snapshot_items(vg_model_t *dst, const vg_model_t *src, const int32_t *from, int n_items)
{
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->n_items = n_items;
    dst->step = src->step;
    dst->rng = src->rng;
    dst->gen_terms = src->gen_terms;
    vg_vocab_init(&dst->vocab);
    int rc = vg_model_alloc_weights_(dst);
    for (int i = 0; !rc && i < VG_P_COUNT; i++) {
        const vg_param_t *p = &src->p[i];
        vg_param_t *q = &dst->p[i];
        if (!q->w || !q->rows)
            continue;
        if (!q->item_rows) {
            memcpy(q->w, p->w, p->rows * p->cols * sizeof(vg_real));
            continue;
        }
        for (int r = 0; r < n_items; r++) { /* an absent row stays zero; its bias NaN: never ranked */
            vg_real *row = q->w + (size_t)r * q->cols;
            if (from[r] >= 0 && from[r] < src->n_items)
                memcpy(row, p->w + (size_t)from[r] * p->cols, p->cols * sizeof(vg_real));
            else if (i == VG_P_B4)
                row[0] = (vg_real)NAN;
        }
    }
    if (rc)
        vg_model_close(dst);
    return rc;
}

int vg_model_reorder_items(vg_model_t *dst, const vg_model_t *src, const int32_t *from, int n_items, int max_batch)
{
    if (!src->work)
        return VG_EINVAL; /* a snapshot has no moments to carry over */
    int rc = vg_model_init(dst, &src->cfg, n_items, max_batch); /* absent rows: fresh, zero moments */
    if (rc)
        return rc;
    dst->step = src->step;
    dst->rng = src->rng;
    dst->gen_terms = src->gen_terms;
    for (int i = 0; i < VG_P_COUNT; i++) {
        const vg_param_t *p = &src->p[i];
        vg_param_t *q = &dst->p[i];
        const vg_real *in[3] = {p->w, p->m, p->v};
        vg_real *out[3] = {q->w, q->m, q->v};
        for (int a = 0; a < 3 && q->rows; a++) {
            if (!q->item_rows) {
                memcpy(out[a], in[a], p->rows * p->cols * sizeof(vg_real));
                continue;
            }
            for (int r = 0; r < n_items; r++)
                if (from[r] >= 0 && from[r] < src->n_items)
                    memcpy(out[a] + (size_t)r * q->cols, in[a] + (size_t)from[r] * p->cols, p->cols * sizeof(vg_real));
        }
    }
    return 0;
}

/* Makes room for n_items rows in every item-major tensor (realloc keeps the
 * rows in use; a tensor's cap_rows is raised once all four of its arrays
 * hold it).  Changes no row and no value: on failure a tensor may only keep
 * some spare capacity.  Returns 0 or VG_ENOMEM. */
static int reserve_item_rows(vg_model_t *m, size_t n_items, int *countdown)
{
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        if (!p->item_rows || !p->rows || n_items <= p->cap_rows)
            continue;
        size_t cap = p->cap_rows * 2 > n_items ? p->cap_rows * 2 : n_items;
        vg_real **arrs[4] = {&p->w, &p->g, &p->m, &p->v};
        for (int a = 0; a < 4; a++) {
            vg_real *q = injected_failure(countdown) ? NULL : realloc(*arrs[a], cap * p->cols * sizeof(vg_real));
            if (!q)
                return VG_ENOMEM;
            *arrs[a] = q;
        }
        p->cap_rows = cap;
    }
    return 0;
}

int vg_model_grow(vg_model_t *m, int n_items)
{
    if (n_items <= m->n_items)
        return 0;
    /* 1. every allocation, before anything of the model changes */
    int *countdown = m->fail_alloc > 0 ? &m->fail_alloc : NULL;
    if (reserve_item_rows(m, (size_t)n_items, countdown))
        return VG_ENOMEM;
    vg_work_t *w = work_new(&m->cfg, n_items, m->max_batch, countdown);
    if (!w)
        return VG_ENOMEM;
    /* 2. the commit, which cannot fail: new rows (fresh weights drawn with the
     * new N's Xavier bound, zero moments and gradients) and the workspace */
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

/* ---- scoring ----------------------------------------------------------------- */

size_t vg_model_score_work_size(const vg_model_t *m, int rows)
{
    size_t H = (size_t)m->cfg.hidden, K = (size_t)m->cfg.latent;
    size_t Kout = m->cfg.variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    return (size_t)rows * (2 * H + Kout);
}

const vg_real *vg_model_hidden(const vg_model_t *m, const vg_csr_t *X, vg_real *work)
{
    const vg_model_cfg_t *c = &m->cfg;
    const int B = X->rows, H = c->hidden, K = c->latent;
    const int Kout = c->variant == VG_VARIANT_MULT_VAE ? 2 * K : K;
    if (X->cols != m->n_items || B < 0)
        return NULL;
    const vg_param_t *P = m->p;
    vg_real *h = work, *out = h + (size_t)B * H, *g = out + (size_t)B * Kout;
    if (B == 0)
        return g;
    vg_set_rows_(h, P[VG_P_B1].w, B, H);
    for (int b = 0; b < B; b++) {
        int nb = vg_csr_row_len(X, b);
        if (!nb)
            continue;
        vg_real inv = vg_input_scale_(nb, c->input_norm);
        vg_real *y = h + (size_t)b * H;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            const vg_real *wr = P[VG_P_E1].w + (size_t)X->indices[k] * H;
            for (int j = 0; j < H; j++)
                y[j] += inv * wr[j];
        }
    }
    vg_tanh_inplace_(h, (size_t)B * H);
    vg_set_rows_(out, P[VG_P_B2].w, B, Kout);
    vg_gemm_(0, 0, B, Kout, H, 1, h, H, P[VG_P_W2].w, Kout, 1, out, Kout);
    vg_set_rows_(g, P[VG_P_B3].w, B, H);
    vg_gemm_(0, 0, B, H, K, 1, out, Kout, P[VG_P_W3].w, H, 1, g, H); /* z = μ: the first K columns */
    vg_tanh_inplace_(g, (size_t)B * H);
    return g;
}

int vg_model_score(const vg_model_t *m, const vg_csr_t *X, vg_real *scores, vg_real *work)
{
    const int B = X->rows, N = m->n_items, H = m->cfg.hidden;
    const vg_real *g = vg_model_hidden(m, X, work);
    if (!g)
        return VG_EINVAL;
    if (B == 0)
        return 0;
    const vg_param_t *P = m->p;
    for (int b = 0; b < B; b++)
        memcpy(scores + (size_t)b * N, P[VG_P_B4].w, (size_t)N * sizeof(vg_real));
    vg_gemm_(0, 1, B, N, H, 1, g, H, P[VG_P_W4].w, H, 1, scores, N);
    return 0;
}
