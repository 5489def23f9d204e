/*
 * test_grad.c — every objective term's analytic gradient against central
 * finite differences, for every parameter tensor of the player it trains.
 *
 * Built against vgmodel_f64: the model library's own sources compiled with
 * vg_real = double, so h = 1e-6 differences are accurate to ~1e-9 and the
 * tolerance can be tight (relative 1e-5, absolute 1e-8).  A tiny model
 * (N = 30, H = 8, K = 4, H_d = 5, B = 6) keeps the check exhaustive: every
 * entry of every tensor is perturbed.  Noise (dropout masks, ε1, ε2, prior
 * samples) is drawn once and then frozen (m->frozen_noise).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "model/vaegan.h"

#ifndef VG_DOUBLE
#error "test_grad must be built against the double-precision model library"
#endif

enum { N = 30, H = 8, K = 4, HD = 5, B = 6 };

static vg_csr_t batch(void)
{
    /* users of 1 to 9 items; one empty user checks that path too */
    int32_t rows[128], cols[128];
    size_t n = 0;
    vg_rng_t r;
    vg_rng_seed(&r, 99);
    for (int b = 0; b < B - 1; b++) {
        int len = 1 + (int)vg_rng_below(&r, 9);
        for (int k = 0; k < len; k++) {
            rows[n] = b;
            cols[n++] = (int32_t)vg_rng_below(&r, N);
        }
    }
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, B, N, n, rows, cols), 0);
    return X;
}

static double player_loss(const vg_step_stats_t *s, int player)
{
    return player == VG_PLAYER_G ? s->loss_g : player == VG_PLAYER_T ? s->loss_t : s->loss_d;
}

/* Compares analytic and numeric gradients of `player`'s loss for every
 * tensor of that player; returns the number of tensors checked. */
static int check(vg_variant_t variant, vg_likelihood_t lik, unsigned terms, int player, double noise_in)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, variant);
    c.likelihood = lik;
    c.hidden = H;
    c.latent = K;
    c.disc_hidden = HD;
    c.anneal_steps = 0; /* alpha = cap from step 0 */
    c.alpha_cap = 0.7;
    c.beta = variant >= VG_VARIANT_AVB_D ? 0.9 : 0;
    c.lambda = variant == VG_VARIANT_AVB_D_C ? 0.5 : 0;
    c.dropout = 0.3;
    if (variant != VG_VARIANT_MULT_VAE) {
        c.noise_input = noise_in;
        c.noise_hidden = 0.2;
    }
    c.seed = 7;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, N, B), 0);
    m.gen_terms = terms;
    vg_csr_t X = batch();
    vg_step_stats_t s;
    cr_assert_eq(vg_model_grad(&m, &X, &s), 0); /* draws the noise */
    m.frozen_noise = 1;
    cr_assert_eq(vg_model_grad(&m, &X, &s), 0);
    double base = player_loss(&s, player);
    cr_assert(isfinite(base));

    int checked = 0;
    for (int t = 0; t < VG_P_COUNT; t++) {
        vg_param_t *p = &m.p[t];
        if (!p->rows || p->player != player)
            continue;
        size_t n = p->rows * p->cols;
        double *ana = malloc(n * sizeof *ana);
        vg_model_grad(&m, &X, &s); /* the previous tensor's last probe left its gradient */
        memcpy(ana, p->g, n * sizeof *ana);
        double max_abs = 0, worst = 0;
        size_t worst_i = 0;
        double worst_a = 0, worst_n = 0;
        for (size_t i = 0; i < n; i++) {
            const double hstep = 1e-6;
            double w0 = p->w[i];
            p->w[i] = w0 + hstep;
            vg_model_grad(&m, &X, &s);
            double lp = player_loss(&s, player);
            p->w[i] = w0 - hstep;
            vg_model_grad(&m, &X, &s);
            double lm = player_loss(&s, player);
            p->w[i] = w0;
            double num = (lp - lm) / (2 * hstep);
            double err = fabs(num - ana[i]) / (1e-8 + 1e-5 * fmax(fabs(num), fabs(ana[i])));
            if (fabs(ana[i]) > max_abs)
                max_abs = fabs(ana[i]);
            if (err > worst) {
                worst = err;
                worst_i = i;
                worst_a = ana[i];
                worst_n = num;
            }
        }
        cr_expect(worst <= 1.0, "%s/%s terms %u: %s[%zu] analytic %.10g numeric %.10g",
                  vg_variant_name(variant), vg_likelihood_name(lik), terms, p->name, worst_i, worst_a, worst_n);
        free(ana);
        checked++;
    }
    vg_csr_free(&X);
    vg_model_close(&m);
    return checked;
}

/* The gradient must not be trivially zero either: a sanity check that the
 * term is switched on, so a "passing" check cannot be a vacuous one. */
static double grad_norm(vg_variant_t variant, vg_likelihood_t lik, unsigned terms, int player)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, variant);
    c.likelihood = lik;
    c.hidden = H;
    c.latent = K;
    c.disc_hidden = HD;
    c.anneal_steps = 0;
    c.alpha_cap = 0.7;
    c.beta = 0.9;
    c.lambda = 0.5;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, N, B), 0);
    m.gen_terms = terms;
    vg_csr_t X = batch();
    cr_assert_eq(vg_model_grad(&m, &X, NULL), 0);
    double s = 0;
    for (int t = 0; t < VG_P_COUNT; t++)
        if (m.p[t].player == player)
            for (size_t i = 0; i < m.p[t].rows * m.p[t].cols; i++)
                s += m.p[t].g[i] * m.p[t].g[i];
    vg_csr_free(&X);
    vg_model_close(&m);
    return sqrt(s);
}

Test(grad, multinomial_reconstruction)
{
    cr_assert_eq(check(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_LIK, VG_PLAYER_G, 0.15), 8);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_LIK, VG_PLAYER_G), 1e-3);
}

Test(grad, logistic_reconstruction)
{
    cr_assert_eq(check(VG_VARIANT_AVB, VG_LIK_LOGISTIC, VG_TERM_LIK, VG_PLAYER_G, 0.15), 8);
}

Test(grad, multvae_kl)
{
    cr_assert_eq(check(VG_VARIANT_MULT_VAE, VG_LIK_MULTINOMIAL, VG_TERM_KL, VG_PLAYER_G, 0), 8);
    cr_assert_gt(grad_norm(VG_VARIANT_MULT_VAE, VG_LIK_MULTINOMIAL, VG_TERM_KL, VG_PLAYER_G), 1e-4);
}

Test(grad, multvae_full)
{
    cr_assert_eq(check(VG_VARIANT_MULT_VAE, VG_LIK_MULTINOMIAL, VG_TERM_LIK | VG_TERM_KL, VG_PLAYER_G, 0), 8);
}

Test(grad, t_loss)
{
    cr_assert_eq(check(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_T, 0.15), 5);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_T), 1e-4);
}

Test(grad, generator_alpha_t_term)
{
    cr_assert_eq(check(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_T, VG_PLAYER_G, 0.15), 8);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB, VG_LIK_MULTINOMIAL, VG_TERM_T, VG_PLAYER_G), 1e-4);
}

Test(grad, d_loss)
{
    cr_assert_eq(check(VG_VARIANT_AVB_D, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_D, 0.15), 7);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB_D, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_D), 1e-4);
}

Test(grad, generator_beta_d_term)
{
    cr_assert_eq(check(VG_VARIANT_AVB_D, VG_LIK_MULTINOMIAL, VG_TERM_D, VG_PLAYER_G, 0.15), 8);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB_D, VG_LIK_MULTINOMIAL, VG_TERM_D, VG_PLAYER_G), 1e-4);
}

Test(grad, contractive_term)
{
    cr_assert_eq(check(VG_VARIANT_AVB_D_C, VG_LIK_MULTINOMIAL, VG_TERM_C, VG_PLAYER_G, 0.15), 8);
    cr_assert_gt(grad_norm(VG_VARIANT_AVB_D_C, VG_LIK_MULTINOMIAL, VG_TERM_C, VG_PLAYER_G), 1e-4);
}

Test(grad, avb_d_c_all_terms_all_players)
{
    cr_assert_eq(check(VG_VARIANT_AVB_D_C, VG_LIK_LOGISTIC, VG_TERM_ALL, VG_PLAYER_G, 0.15), 8);
    cr_assert_eq(check(VG_VARIANT_AVB_D_C, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_G, 0.15), 8);
    cr_assert_eq(check(VG_VARIANT_AVB_D_C, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_T, 0.15), 5);
    cr_assert_eq(check(VG_VARIANT_AVB_D_C, VG_LIK_MULTINOMIAL, VG_TERM_ALL, VG_PLAYER_D, 0.15), 7);
}

/* the contractive value itself: ||J||_F^2 by finite differences of z w.r.t. x̄ */
Test(grad, contractive_value_is_jacobian_norm)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = H;
    c.latent = K;
    c.disc_hidden = HD;
    c.dropout = 0;
    c.noise_input = 0;
    c.noise_hidden = 0;
    c.lambda = 1;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, N, 1), 0);
    int32_t r[3] = {0, 0, 0}, cols[3] = {2, 11, 25};
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 1, N, 3, r, cols), 0);
    vg_step_stats_t s;
    cr_assert_eq(vg_model_grad(&m, &X, &s), 0);
    /* J = W2ᵀ diag(1 - h²) E1ᵀ with h = tanh(x̄ E1 + b1), x̄ = x/sqrt(3) */
    double h[H], fro = 0;
    for (int j = 0; j < H; j++) {
        double a = m.p[VG_P_B1].w[j];
        for (int k = 0; k < 3; k++)
            a += m.p[VG_P_E1].w[cols[k] * H + j] / sqrt(3.0);
        h[j] = tanh(a);
    }
    for (int o = 0; o < K; o++)
        for (int i = 0; i < N; i++) {
            double jv = 0;
            for (int j = 0; j < H; j++)
                jv += m.p[VG_P_W2].w[j * K + o] * (1 - h[j] * h[j]) * m.p[VG_P_E1].w[i * H + j];
            fro += jv * jv;
        }
    cr_assert_float_eq(s.contr, fro, 1e-9 * fmax(1, fro));
    vg_csr_free(&X);
    vg_model_close(&m);
}
