/*
 * train.c — one training step of VAEGAN and Mult-VAE: the forward pass, the
 * hand-derived backward pass and Adam (docs/model.md derives every gradient
 * used here).  The model object itself (configuration, tensors, workspace,
 * scoring) is vaegan.c.
 *
 * One call of vg_model_grad() runs the whole batch once forward and then
 * back, producing the gradient of each player's own loss w.r.t. its own
 * parameters (simultaneous update).  It is the list of its phases, one
 * static function each, in this order: input (dropout), encoder, decoder,
 * likelihood, T forward/backward, D forward/backward, decoder backward,
 * encoder backward, contractive forward/backward, first layer backward.
 * The phases share a pass_t and the workspace; their order is also the
 * order of the random draws and of the floating-point sums, so it must not
 * change (results are bit-for-bit reproducible).  Shapes, with B users, N
 * items:
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
 * the dropout input (docs/model.md, "The contractive term"); its Gram
 * matrices cost O(H²·N) per batch, not per user.  Everything is preallocated
 * in the workspace for max_batch users: a training step allocates nothing
 * unless a batch has more stored entries than any before it.
 *
 * vg_model_adam() then updates every tensor from its gradient (each with its
 * own moments; docs/model.md, "Adam") and advances the step counter;
 * vg_model_train_step() is the two in sequence.
 */
#include "model/vaegan.h"
#include "model/internal.h"

#include <math.h>
#include <string.h>
#include <time.h>

const char *const vg_prof_names[VG_PROF_COUNT] = {"zero", "input", "encoder", "decoder", "likelihood", "T", "D",
                                                   "decoder_back", "encoder_back", "contractive", "first_back",
                                                   "adam"};

static double prof_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs `call`, adding its time to m->prof[slot] when profiling. */
#define PHASE(m, slot, call)                                  \
    do {                                                      \
        double t0_ = (m)->prof ? prof_now() : 0;              \
        call;                                                 \
        if ((m)->prof)                                        \
            (m)->prof[slot] += prof_now() - t0_;              \
    } while (0)

/* ---- small dense and sparse helpers ------------------------------------- */

/* Element-wise loops go parallel (OpenMP) only above this many elements:
 * below it, waking the threads costs more than it saves, and OpenMP's
 * spinning workers would slow the BLAS threads that run next. */
#define VG_PAR_MIN (1L << 22)

static inline vg_real sigm(vg_real x) { return (vg_real)1 / ((vg_real)1 + R_EXP(-x)); }

/* log(1 + e^x) without overflow */
static inline vg_real softplus(vg_real x) { return (x > 0 ? x : 0) + R_LOG1P(R_EXP(-(x > 0 ? x : -x))); }

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

/* ---- forward and backward ------------------------------------------------- */

/* One forward and backward pass over a batch (vg_model_grad): what every
 * phase reads, and the statistics the phases fill in.  The phases run in the
 * order vg_model_grad lists them; each consumes what the previous ones left
 * in the workspace (docs/model.md, "One training step"). */
typedef struct {
    vg_model_t *m;
    const vg_model_cfg_t *c;
    vg_work_t *w;
    vg_param_t *P;
    const vg_csr_t *X;
    int B, N, H, K, Hd, Kout; /* batch, items, hidden, latent, discriminator hidden, encoder outputs */
    unsigned terms;           /* m->gen_terms */
    vg_real invB;             /* 1 / B */
    double alpha;             /* vg_model_alpha() at this step */
    vg_step_stats_t s;
} pass_t;

static void zero_grads(vg_param_t *P)
{
    for (int i = 0; i < VG_P_COUNT; i++) {
        if (i == VG_P_W4)
            continue; /* backward_decoder's product is its one term: it overwrites (beta 0) */
        vg_real *g = P[i].g;
        long n = (long)(P[i].rows * P[i].cols);
#pragma omp parallel for simd schedule(static) if (n > VG_PAR_MIN)
        for (long k = 0; k < n; k++)
            g[k] = 0;
    }
}

/* inputs: n_b^-γ, dropout (drawn unless frozen), x̄ */
static void forward_input(pass_t *ps)
{
    vg_model_t *m = ps->m;
    const vg_model_cfg_t *c = ps->c;
    const vg_csr_t *X = ps->X;
    vg_work_t *w = ps->w;
    const vg_real keepv = (vg_real)(1.0 / (1.0 - c->dropout));
    for (int b = 0; b < ps->B; b++) {
        int nb = vg_csr_row_len(X, b);
        w->inv[b] = vg_input_scale_(nb, c->input_norm);
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++) {
            if (!m->frozen_noise)
                w->keep[k] = c->dropout > 0 && vg_rng_uniform(&m->rng) < c->dropout ? 0 : keepv;
            w->xv[k] = w->inv[b] * w->keep[k];
        }
    }
}

/* encoder: pre0 (noise-free), h = tanh(pre0 + s1 ε1 E1), then z — AVB:
 * (h + s2 ε2) W2 + b2; mult-vae: μ + exp(logσ²/2) ε2 */
static void forward_encoder(pass_t *ps)
{
    vg_model_t *m = ps->m;
    const vg_model_cfg_t *c = ps->c;
    const vg_csr_t *X = ps->X;
    vg_work_t *w = ps->w;
    const vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K, Kout = ps->Kout;
    vg_set_rows_(w->pre0, P[VG_P_B1].w, B, H);
    sp_gather(X, w->xv, P[VG_P_E1].w, H, w->pre0);
    memcpy(w->h, w->pre0, (size_t)B * H * sizeof(vg_real));
    if (w->eps1) {
        if (!m->frozen_noise)
            vg_rng_normal_par(&m->rng, w->eps1, (size_t)B * N, 1);
        vg_gemm_(0, 0, B, H, N, (vg_real)c->noise_input, w->eps1, N, P[VG_P_E1].w, H, 1, w->h, H);
    }
    vg_tanh_inplace_(w->h, (size_t)B * H);
    vg_set_rows_(w->out, P[VG_P_B2].w, B, Kout);
    if (c->variant == VG_VARIANT_MULT_VAE) {
        vg_gemm_(0, 0, B, Kout, H, 1, w->h, H, P[VG_P_W2].w, Kout, 1, w->out, Kout);
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
        vg_gemm_(0, 0, B, K, H, 1, w->hn, H, P[VG_P_W2].w, K, 1, w->out, K);
        memcpy(w->z, w->out, (size_t)B * K * sizeof(vg_real));
    }
}

/* decoder: g = tanh(z W3 + b3), logits = g W4ᵀ + b4 */
static void forward_decoder(pass_t *ps)
{
    vg_work_t *w = ps->w;
    const vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K;
    vg_set_rows_(w->g, P[VG_P_B3].w, B, H);
    vg_gemm_(0, 0, B, H, K, 1, w->z, K, P[VG_P_W3].w, H, 1, w->g, H);
    vg_tanh_inplace_(w->g, (size_t)B * H);
    for (int b = 0; b < B; b++)
        memcpy(w->logits + (size_t)b * N, P[VG_P_B4].w, (size_t)N * sizeof(vg_real));
    vg_gemm_(0, 1, B, N, H, 1, w->g, H, P[VG_P_W4].w, H, 1, w->logits, N);
}

/* reconstruction likelihood: nll and dl = d(-mean log p)/dl; starts loss_g */
static void likelihood(pass_t *ps)
{
    const vg_model_cfg_t *c = ps->c;
    const vg_csr_t *X = ps->X;
    vg_work_t *w = ps->w;
    const int B = ps->B, N = ps->N;
    double nll = 0;
    const vg_real lik_w = (ps->terms & VG_TERM_LIK) ? ps->invB : 0;
#pragma omp parallel for schedule(static) reduction(+ : nll) if ((long)B * N > VG_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const vg_real *l = w->logits + (size_t)b * N;
        vg_real *dl = w->dl + (size_t)b * N;
        int nb = vg_csr_row_len(X, b);
        double ll = 0;
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++)
            ll += l[X->indices[k]];
        if (c->likelihood == VG_LIK_MULTINOMIAL) {
            vg_real mx;
            double sum = vg_softmax_row_(l, dl, N, &mx), lse = mx + log(sum);
            ll -= nb * lse;
            vg_real sc = (vg_real)(nb / sum) * lik_w;
            for (int i = 0; i < N; i++)
                dl[i] *= sc;
        } else {
            ll -= vg_logistic_row_(l, dl, N, lik_w);
        }
        for (int64_t k = X->indptr[b]; k < X->indptr[b + 1]; k++)
            dl[X->indices[k]] -= lik_w;
        nll -= ll;
    }
    ps->s.nll = nll / B;
    ps->s.loss_g = (ps->terms & VG_TERM_LIK) ? ps->s.nll : 0;
}

/* T, the latent discriminator, forward: T(x̄, z_q) into tq, T(x̄, z_p) with a
 * fresh prior sample z_p into tp (uq, up: their hidden layers); T's loss and
 * the generator's alpha·mean T term */
static void adversary_forward(pass_t *ps)
{
    vg_model_t *m = ps->m;
    vg_work_t *w = ps->w;
    const vg_param_t *P = ps->P;
    vg_step_stats_t *s = &ps->s;
    const int B = ps->B, K = ps->K, Hd = ps->Hd;
    if (!m->frozen_noise)
        vg_rng_normal(&m->rng, w->zp, (size_t)B * K, 1);
    vg_set_rows_(w->ex, P[VG_P_TC].w, B, Hd);
    sp_gather(ps->X, w->xv, P[VG_P_TA].w, Hd, w->ex);
    memcpy(w->uq, w->ex, (size_t)B * Hd * sizeof(vg_real));
    memcpy(w->up, w->ex, (size_t)B * Hd * sizeof(vg_real));
    vg_gemm_(0, 0, B, Hd, K, 1, w->z, K, P[VG_P_TB].w, Hd, 1, w->uq, Hd);
    vg_gemm_(0, 0, B, Hd, K, 1, w->zp, K, P[VG_P_TB].w, Hd, 1, w->up, Hd);
    vg_tanh_inplace_(w->uq, (size_t)B * Hd);
    vg_tanh_inplace_(w->up, (size_t)B * Hd);
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
    s->loss_t = lt / B;
    s->t_q = tqm / B;
    if (ps->terms & VG_TERM_T)
        s->loss_g += ps->alpha * s->t_q;
}

/* T backward: T's own gradient, and the generator's through z_q into dz */
static void adversary_backward(pass_t *ps)
{
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    const int B = ps->B, K = ps->K, Hd = ps->Hd;
    const vg_real invB = ps->invB;
    const vg_real *a = P[VG_P_TW].w;
    const vg_real at = (ps->terms & VG_TERM_T) ? (vg_real)ps->alpha * invB : 0;
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
    vg_gemm_(1, 0, K, Hd, B, 1, w->z, K, w->t1, Hd, 1, P[VG_P_TB].g, Hd);
    vg_gemm_(1, 0, K, Hd, B, 1, w->zp, K, w->t2, Hd, 1, P[VG_P_TB].g, Hd);
    for (size_t i = 0; i < (size_t)B * Hd; i++)
        w->t1[i] += w->t2[i];
    add_colsum(P[VG_P_TC].g, w->t1, B, Hd);
    sp_scatter(ps->X, w->xv, w->t1, Hd, P[VG_P_TA].g);
    if (ps->terms & VG_TERM_T)
        vg_gemm_(0, 1, B, K, Hd, 1, w->t3, Hd, P[VG_P_TB].w, Hd, 1, w->dz, K);
}

/* Whether the generator's objective has the D term. */
static int d_term_on(const pass_t *ps) { return (ps->terms & VG_TERM_D) && ps->c->beta > 0; }

/* D forward: the user conditioner z_c = tanh(x̄ QC + QE), then D on the real
 * sample x (hr, dr) and on the fake σ(l) ⊙ x (sl, hf, df); D's loss and the
 * generator's -beta·log σ(D(fake)) term */
static void discriminator_forward(pass_t *ps)
{
    const vg_model_cfg_t *c = ps->c;
    const vg_csr_t *X = ps->X;
    vg_work_t *w = ps->w;
    const vg_param_t *P = ps->P;
    vg_step_stats_t *s = &ps->s;
    const int B = ps->B, N = ps->N, K = ps->K, Hd = ps->Hd;
    vg_set_rows_(w->zc, P[VG_P_QE].w, B, K);
    sp_gather(X, w->xv, P[VG_P_QC].w, K, w->zc);
    vg_tanh_inplace_(w->zc, (size_t)B * K);
    vg_gemm_(0, 0, B, Hd, K, 1, w->zc, K, P[VG_P_DQ].w, Hd, 0, w->eq, Hd);
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
    vg_tanh_inplace_(w->hr, (size_t)B * Hd);
    vg_tanh_inplace_(w->hf, (size_t)B * Hd);
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
    s->loss_d = ld / B;
    s->d_real = dre / B;
    s->d_fake = dfa / B;
    if (d_term_on(ps))
        s->loss_g += c->beta * gterm / B;
}

/* D backward: the gradient of D and q_ξ, then the generator's through the
 * fake sample σ(l) ⊙ x into dl */
static void discriminator_backward(pass_t *ps)
{
    const vg_model_cfg_t *c = ps->c;
    const vg_csr_t *X = ps->X;
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, K = ps->K, Hd = ps->Hd;
    const vg_real invB = ps->invB;
    const int dterm = d_term_on(ps);
    const vg_real *pw = P[VG_P_DW].w;
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
    vg_gemm_(1, 0, K, Hd, B, 1, w->zc, K, w->t1, Hd, 1, P[VG_P_DQ].g, Hd);
    vg_gemm_(0, 1, B, K, Hd, 1, w->t1, Hd, P[VG_P_DQ].w, Hd, 0, w->dzc, K);
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

/* generator backward, decoder: dl -> W4, b4, g -> W3, b3, and into dz */
static void backward_decoder(pass_t *ps)
{
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K;
    vg_gemm_(1, 0, N, H, B, 1, w->dl, N, w->g, H, 0, P[VG_P_W4].g, H); /* not zeroed before */
    add_colsum(P[VG_P_B4].g, w->dl, B, N);
    vg_gemm_(0, 0, B, H, N, 1, w->dl, N, P[VG_P_W4].w, H, 0, w->dg, H);
    for (size_t i = 0; i < (size_t)B * H; i++)
        w->dg[i] *= 1 - w->g[i] * w->g[i];
    vg_gemm_(1, 0, K, H, B, 1, w->z, K, w->dg, H, 1, P[VG_P_W3].g, H);
    add_colsum(P[VG_P_B3].g, w->dg, B, H);
    vg_gemm_(0, 1, B, K, H, 1, w->dg, H, P[VG_P_W3].w, H, 1, w->dz, K);
}

/* generator backward, encoder down to the first layer's pre-activation: dz
 * (and mult-vae's KL, added to loss_g here) -> W2, b2, h -> dh; the input
 * noise path's share of E1's gradient */
static void backward_encoder(pass_t *ps)
{
    const vg_model_cfg_t *c = ps->c;
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K, Kout = ps->Kout;
    if (c->variant == VG_VARIANT_MULT_VAE) {
        const vg_real kw = (ps->terms & VG_TERM_KL) ? (vg_real)ps->alpha * ps->invB : 0;
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
        ps->s.kl = kl / B;
        if (ps->terms & VG_TERM_KL)
            ps->s.loss_g += ps->alpha * ps->s.kl;
        vg_gemm_(1, 0, H, Kout, B, 1, w->h, H, w->dout, Kout, 1, P[VG_P_W2].g, Kout);
        add_colsum(P[VG_P_B2].g, w->dout, B, Kout);
        vg_gemm_(0, 1, B, H, Kout, 1, w->dout, Kout, P[VG_P_W2].w, Kout, 0, w->dh, H);
    } else {
        vg_gemm_(1, 0, H, K, B, 1, w->hn, H, w->dz, K, 1, P[VG_P_W2].g, K);
        add_colsum(P[VG_P_B2].g, w->dz, B, K);
        vg_gemm_(0, 1, B, H, K, 1, w->dz, K, P[VG_P_W2].w, K, 0, w->dh, H);
    }
    for (size_t i = 0; i < (size_t)B * H; i++)
        w->dh[i] *= 1 - w->h[i] * w->h[i];
    if (w->eps1) /* the input noise path: pre += s1 ε1 E1 */
        vg_gemm_(1, 0, N, H, B, (vg_real)c->noise_input, w->eps1, N, w->dh, H, 1, P[VG_P_E1].g, H);
}

/* contractive penalty, value (noise-free Jacobian at pre0): d = 1 − tanh(pre0)²
 * into t1, h0 = tanh(pre0), the Gram matrices M = E1ᵀE1 and S = W2 W2ᵀ,
 * MS = M ∘ S, Y = d MS; penalty = Σ_b d_bᵀ MS d_b / B, lambda·penalty into
 * loss_g */
static void contractive_forward(pass_t *ps)
{
    vg_work_t *w = ps->w;
    const vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K;
    const vg_real *E1 = P[VG_P_E1].w, *W2 = P[VG_P_W2].w;
    for (size_t i = 0; i < (size_t)B * H; i++) {
        vg_real t = R_TANH(w->pre0[i]);
        w->h0[i] = t;
        w->t1[i] = 1 - t * t; /* d */
    }
    SYRK(CblasRowMajor, CblasUpper, CblasTrans, H, N, 1, E1, H, 0, w->M, H);
    vg_gemm_(0, 1, H, H, K, 1, W2, K, W2, K, 0, w->S, H);
    for (int i = 0; i < H; i++)
        for (int j = i; j < H; j++) {
            vg_real v = w->M[(size_t)i * H + j];
            w->M[(size_t)j * H + i] = v;
            w->MS[(size_t)i * H + j] = w->MS[(size_t)j * H + i] = v * w->S[(size_t)i * H + j];
        }
    vg_gemm_(0, 0, B, H, H, 1, w->t1, H, w->MS, H, 0, w->Y, H);
    double pen = 0;
    for (size_t i = 0; i < (size_t)B * H; i++)
        pen += w->Y[i] * w->t1[i];
    ps->s.contr = pen / B;
    ps->s.loss_g += ps->c->lambda * ps->s.contr;
}

/* contractive penalty, gradient: with Γ = dᵀd over the batch, E1 gets
 * 2λ/B · E1 (Γ ∘ S), W2 gets 2λ/B · (Γ ∘ M) W2, and pre0 (through d) gets
 * λ/B · 2Y ∘ (−2 h0 d), added to dh */
static void contractive_backward(pass_t *ps)
{
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    const int B = ps->B, N = ps->N, H = ps->H, K = ps->K;
    const vg_real *E1 = P[VG_P_E1].w, *W2 = P[VG_P_W2].w;
    const vg_real cl = (vg_real)ps->c->lambda * ps->invB;
    SYRK(CblasRowMajor, CblasUpper, CblasTrans, H, B, 1, w->t1, H, 0, w->Gam, H);
    for (int i = 0; i < H; i++)
        for (int j = i; j < H; j++) {
            vg_real gm = w->Gam[(size_t)i * H + j];
            /* Gam∘S into Gam (upper and lower), Gam∘M into MS */
            w->Gam[(size_t)i * H + j] = w->Gam[(size_t)j * H + i] = gm * w->S[(size_t)i * H + j];
            w->MS[(size_t)i * H + j] = w->MS[(size_t)j * H + i] = gm * w->M[(size_t)i * H + j];
        }
    vg_gemm_(0, 0, N, H, H, 2 * cl, E1, H, w->Gam, H, 1, P[VG_P_E1].g, H);
    vg_gemm_(0, 0, H, K, H, 2 * cl, w->MS, H, W2, K, 1, P[VG_P_W2].g, K);
    /* d pen / d pre0 = 2 Y ∘ (-2 h0 d) ; added to dh (the pre0 and pre paths share E1's sparse
     * part and b1, but not the noise path, which was applied above) */
    for (size_t i = 0; i < (size_t)B * H; i++)
        w->dh[i] += 2 * cl * w->Y[i] * (-2 * w->h0[i] * w->t1[i]);
}

/* generator backward, first layer: dh -> b1 and E1's rows of the batch's items */
static void backward_first_layer(pass_t *ps)
{
    vg_work_t *w = ps->w;
    vg_param_t *P = ps->P;
    add_colsum(P[VG_P_B1].g, w->dh, ps->B, ps->H);
    sp_scatter(ps->X, w->xv, w->dh, ps->H, P[VG_P_E1].g);
}

int vg_model_grad(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *st)
{
    const vg_model_cfg_t *c = &m->cfg;
    vg_work_t *w = m->work;
    if (!w)
        return VG_EINVAL; /* a scoring snapshot cannot be trained */
    const int mv = c->variant == VG_VARIANT_MULT_VAE;
    const int avb = !mv, use_d = c->variant >= VG_VARIANT_AVB_D, use_c = c->variant == VG_VARIANT_AVB_D_C;
    const int64_t nnz = vg_csr_nnz(X);
    if (X->rows < 1 || X->rows > m->max_batch || X->cols != m->n_items)
        return VG_EINVAL;
    if (vg_work_reserve_nnz_(w, (size_t)nnz) < 0)
        return VG_ENOMEM;
    pass_t ps = {.m = m, .c = c, .w = w, .P = m->p, .X = X, .B = X->rows, .N = m->n_items, .H = c->hidden,
                 .K = c->latent, .Hd = c->disc_hidden, .Kout = mv ? 2 * c->latent : c->latent,
                 .terms = m->gen_terms, .invB = (vg_real)1 / (vg_real)X->rows, .alpha = vg_model_alpha(m)};
    ps.s.alpha = ps.alpha;

    PHASE(m, VG_PROF_ZERO, zero_grads(m->p));
    PHASE(m, VG_PROF_INPUT, forward_input(&ps));
    PHASE(m, VG_PROF_ENCODER, forward_encoder(&ps));
    PHASE(m, VG_PROF_DECODER, forward_decoder(&ps));
    PHASE(m, VG_PROF_LIKELIHOOD, likelihood(&ps));
    /* dz accumulates the generator's gradient w.r.t. z (from T, then the decoder) */
    memset(w->dz, 0, (size_t)ps.B * ps.K * sizeof(vg_real));
    if (avb)
        PHASE(m, VG_PROF_T, adversary_forward(&ps); adversary_backward(&ps));
    if (use_d)
        PHASE(m, VG_PROF_D, discriminator_forward(&ps); discriminator_backward(&ps));
    PHASE(m, VG_PROF_BACK_DEC, backward_decoder(&ps));
    PHASE(m, VG_PROF_BACK_ENC, backward_encoder(&ps));
    if (use_c && (ps.terms & VG_TERM_C) && c->lambda > 0)
        PHASE(m, VG_PROF_CONTR, contractive_forward(&ps); contractive_backward(&ps));
    PHASE(m, VG_PROF_FIRST, backward_first_layer(&ps));

    if (st)
        *st = ps.s;
    return 0;
}

/* Adam over w[0..n) (docs/model.md, "Adam").  Compiled for AVX-512, AVX2
 * and plain x86-64, the widest the CPU has chosen when the program loads:
 * the results are the same at any width (sqrt, division and the rest round
 * exactly per element, and -std=c11 keeps the compiler from contracting
 * them into FMAs); at SSE width the square roots and divisions made the
 * loop compute-bound, three times its memory floor. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
adam_span(vg_real *w, const vg_real *g, vg_real *mo, vg_real *v, size_t n, vg_real B1, vg_real B2, vg_real lr_t,
          vg_real sbc2, vg_real E)
{
    for (size_t k = 0; k < n; k++) {
        vg_real gk = g[k];
        mo[k] = B1 * mo[k] + (1 - B1) * gk;
        v[k] = B2 * v[k] + (1 - B2) * gk * gk;
        w[k] -= lr_t * mo[k] / (R_SQRT(v[k]) / sbc2 + E);
    }
}

#define ADAM_CHUNK ((size_t)1 << 16) /* elements per OpenMP work item */

void vg_model_adam(vg_model_t *m)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double t = (double)(m->step + 1);
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    vg_real lr_t = (vg_real)(m->cfg.lr / bc1), sbc2 = (vg_real)sqrt(bc2);
    vg_real B1 = (vg_real)b1, B2 = (vg_real)b2, E = (vg_real)eps;
    for (int i = 0; i < VG_P_COUNT; i++) {
        vg_param_t *p = &m->p[i];
        size_t n = p->rows * p->cols, chunks = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
        vg_real *w = p->w, *g = p->g, *mo = p->m, *v = p->v;
#pragma omp parallel for schedule(static) if (n > VG_PAR_MIN)
        for (size_t c = 0; c < chunks; c++) {
            size_t a = c * ADAM_CHUNK, len = n - a < ADAM_CHUNK ? n - a : ADAM_CHUNK;
            adam_span(w + a, g + a, mo + a, v + a, len, B1, B2, lr_t, sbc2, E);
        }
    }
    m->step++;
}

int vg_model_train_step(vg_model_t *m, const vg_csr_t *X, vg_step_stats_t *stats)
{
    int rc = vg_model_grad(m, X, stats);
    if (rc)
        return rc;
    PHASE(m, VG_PROF_ADAM, vg_model_adam(m));
    return 0;
}
