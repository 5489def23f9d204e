/*
 * test_model.c — the model library as its users see it: it learns, it is
 * reproducible, its state file round-trips and refuses damage, the catalogue
 * grows, top-N selection and the vocabulary behave.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/topn.h"
#include "tests/support/tmpdir.h"
#include "model/vaegan.h"
#include "model/vocab.h"

/* 200 users in two taste groups: group 0 likes items 0..19, group 1 items
 * 20..39; each user has 8 random items of their group. 10 noise items. */
static vg_csr_t two_groups(uint64_t seed, int users)
{
    vg_rng_t r;
    vg_rng_seed(&r, seed);
    int32_t *rows = malloc((size_t)users * 8 * sizeof *rows), *cols = malloc((size_t)users * 8 * sizeof *cols);
    size_t n = 0;
    for (int u = 0; u < users; u++)
        for (int k = 0; k < 8; k++) {
            rows[n] = u;
            cols[n++] = (int32_t)((u % 2) * 20 + (int)vg_rng_below(&r, 20));
        }
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, users, 50, n, rows, cols), 0);
    free(rows);
    free(cols);
    return X;
}

static void small_cfg(vg_model_cfg_t *c, vg_variant_t v)
{
    vg_model_cfg_default(c, v);
    c->hidden = 32;
    c->latent = 8;
    c->disc_hidden = 16;
    c->anneal_steps = 100;
    c->lr = 3e-3;
    c->seed = 3;
}

static void train(vg_model_t *m, const vg_csr_t *X, int steps, int batch, vg_step_stats_t *last)
{
    vg_csr_t b = {0};
    int *sel = malloc((size_t)batch * sizeof *sel);
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < batch; k++)
            sel[k] = (s * batch + k) % X->rows;
        cr_assert_eq(vg_csr_gather(&b, X, sel, batch), 0);
        cr_assert_eq(vg_model_train_step(m, &b, last), 0);
    }
    free(sel);
    vg_csr_free(&b);
}

static void learns(vg_variant_t v)
{
    vg_model_cfg_t c;
    small_cfg(&c, v);
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, 50, 40), 0);
    vg_csr_t X = two_groups(1, 200);
    vg_step_stats_t first, last;
    train(&m, &X, 1, 40, &first);
    train(&m, &X, 300, 40, &last);
    cr_assert_lt(last.nll, first.nll - 1.0, "%s: nll %f -> %f", vg_variant_name(v), first.nll, last.nll);
    cr_assert(isfinite(last.loss_g) && isfinite(last.loss_t) && isfinite(last.loss_d));
    /* a new user who liked three group-1 items gets group-1 items first */
    int32_t r[3] = {0, 0, 0}, cols[3] = {21, 25, 33};
    vg_csr_t U;
    cr_assert_eq(vg_csr_from_pairs(&U, 1, 50, 3, r, cols), 0);
    vg_real scores[50], *work = malloc(vg_model_score_work_size(&m, 1) * sizeof *work);
    cr_assert_eq(vg_model_score(&m, &U, scores, work), 0);
    int32_t top[10];
    cr_assert_eq(vg_topn(scores, 50, cols, 3, 10, top, NULL), 10);
    int in_group = 0;
    for (int k = 0; k < 10; k++) {
        cr_assert(top[k] != 21 && top[k] != 25 && top[k] != 33, "history item recommended");
        in_group += top[k] >= 20 && top[k] < 40;
    }
    cr_assert_geq(in_group, 9, "%s: only %d of the top 10 are of the user's group", vg_variant_name(v), in_group);
    free(work);
    vg_csr_free(&U);
    vg_csr_free(&X);
    vg_model_close(&m);
}

Test(model, multvae_learns) { learns(VG_VARIANT_MULT_VAE); }
Test(model, avb_d_c_learns) { learns(VG_VARIANT_AVB_D_C); }

static int same_weights(const vg_model_t *a, const vg_model_t *b)
{
    for (int p = 0; p < VG_P_COUNT; p++) {
        size_t n = a->p[p].rows * a->p[p].cols;
        if (n != b->p[p].rows * b->p[p].cols || memcmp(a->p[p].w, b->p[p].w, n * sizeof(vg_real)) ||
            memcmp(a->p[p].m, b->p[p].m, n * sizeof(vg_real)) || memcmp(a->p[p].v, b->p[p].v, n * sizeof(vg_real)))
            return 0;
    }
    return a->step == b->step && !memcmp(&a->rng, &b->rng, sizeof a->rng);
}

Test(model, reproducible_and_independent)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    vg_model_t a, b, d;
    cr_assert_eq(vg_model_init(&a, &c, 50, 20), 0);
    cr_assert_eq(vg_model_init(&b, &c, 50, 20), 0);
    c.seed = 4;
    cr_assert_eq(vg_model_init(&d, &c, 50, 20), 0);
    vg_csr_t X = two_groups(2, 100);
    for (int s = 0; s < 5; s++) { /* interleaved: no shared state between models */
        train(&a, &X, 1, 20, NULL);
        train(&d, &X, 1, 20, NULL);
        train(&b, &X, 1, 20, NULL);
    }
    cr_assert(same_weights(&a, &b), "same seed, same data: same model");
    cr_assert(!same_weights(&a, &d), "another seed: another model");
    vg_csr_free(&X);
    vg_model_close(&a);
    vg_model_close(&b);
    vg_model_close(&d);
}

Test(model, scoring_is_noise_free_and_batch_invariant)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D);
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    vg_csr_t X = two_groups(3, 20);
    train(&m, &X, 10, 20, NULL);
    vg_real *all = malloc(20 * 50 * sizeof *all), one[50], again[50];
    vg_real *work = malloc(vg_model_score_work_size(&m, 20) * sizeof *work);
    cr_assert_eq(vg_model_score(&m, &X, all, work), 0);
    int sel = 7;
    vg_csr_t U = {0};
    cr_assert_eq(vg_csr_gather(&U, &X, &sel, 1), 0);
    cr_assert_eq(vg_model_score(&m, &U, one, work), 0);
    cr_assert_eq(vg_model_score(&m, &U, again, work), 0);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(one[i], again[i]);
        cr_assert_float_eq(one[i], all[7 * 50 + i], 1e-4);
    }
    free(all);
    free(work);
    vg_csr_free(&U);
    vg_csr_free(&X);
    vg_model_close(&m);
}

Test(model, snapshot_scores_like_the_original_and_stays_put)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    vg_model_t m, snap;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    vg_csr_t X = two_groups(4, 20);
    train(&m, &X, 5, 20, NULL);
    cr_assert_eq(vg_model_snapshot(&snap, &m), 0);
    cr_assert_eq(snap.step, m.step);
    vg_real *a = malloc(20 * 50 * sizeof *a), *b = malloc(20 * 50 * sizeof *b);
    vg_real *work = malloc(vg_model_score_work_size(&m, 20) * sizeof *work);
    cr_assert_eq(vg_model_score(&m, &X, a, work), 0);
    train(&m, &X, 3, 20, NULL); /* the original moves on; the snapshot must not */
    cr_assert_eq(vg_model_score(&snap, &X, b, work), 0);
    for (int i = 0; i < 20 * 50; i++)
        cr_assert_eq(a[i], b[i]);
    cr_assert_eq(vg_model_train_step(&snap, &X, NULL), VG_EINVAL);
    free(a);
    free(b);
    free(work);
    vg_csr_free(&X);
    vg_model_close(&snap);
    vg_model_close(&m);
}

/* X with item i renamed to[i], in a matrix of `cols` items. */
static vg_csr_t renumbered(const vg_csr_t *X, const int32_t *to, int cols)
{
    size_t nnz = (size_t)vg_csr_nnz(X);
    int32_t *row = malloc(nnz * sizeof *row), *col = malloc(nnz * sizeof *col);
    for (int u = 0; u < X->rows; u++)
        for (int64_t k = X->indptr[u]; k < X->indptr[u + 1]; k++) {
            row[k] = u;
            col[k] = to[X->indices[k]];
        }
    vg_csr_t Y = {0};
    cr_assert_eq(vg_csr_from_pairs(&Y, X->rows, cols, nnz, row, col), 0);
    free(row);
    free(col);
    return Y;
}

/* A snapshot in another item order scores each item as the original does
 * for the same user; absent items score NaN (skipped by the rankers). */
Test(model, snapshot_items_reorders_rows_and_marks_absent_ones)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    vg_model_t m, snap;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    vg_csr_t X = two_groups(9, 20);
    train(&m, &X, 4, 20, NULL);
    enum { N = 53 };
    int32_t from[N], to[50];
    for (int i = 0; i < N; i++) /* reversed, with absent items at 0, 25 and 52 */
        from[i] = i == 0 || i == 25 || i == 52 ? -1 : 49 - (i - 1 - (i > 25));
    for (int i = 0; i < N; i++)
        if (from[i] >= 0)
            to[from[i]] = i;
    cr_assert_eq(vg_model_snapshot_items(&snap, &m, from, N), 0);
    cr_assert_eq(snap.n_items, N);
    cr_assert_eq(snap.step, m.step);
    vg_csr_t Y = renumbered(&X, to, N);
    vg_real *a = malloc(20 * 50 * sizeof *a), *b = malloc(20 * N * sizeof *b);
    vg_real *work = malloc(vg_model_score_work_size(&m, 20) * sizeof *work);
    vg_real *work2 = malloc(vg_model_score_work_size(&snap, 20) * sizeof *work2);
    cr_assert_eq(vg_model_score(&m, &X, a, work), 0);
    cr_assert_eq(vg_model_score(&snap, &Y, b, work2), 0);
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < N; i++) {
            vg_real v = b[r * N + i];
            if (from[i] < 0)
                cr_assert(isnan(v), "absent item %d scored %g", i, (double)v);
            else
                cr_assert_float_eq(v, a[r * 50 + from[i]], 1e-4, "user %d item %d", r, i);
        }
    vg_model_close(&snap);
    cr_assert_eq(vg_model_snapshot_items(&snap, &m, from, 0), VG_EINVAL);
    free(a);
    free(b);
    free(work);
    free(work2);
    vg_csr_free(&X);
    vg_csr_free(&Y);
    vg_model_close(&m);
}

/* A reordered training model scores each item as the original does for the
 * same user, and every item-major tensor's Adam moments followed their
 * items (the others are copied whole). */
Test(model, reorder_items_carries_weights_and_moments)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    vg_model_t m, r;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    vg_csr_t X = two_groups(5, 20);
    train(&m, &X, 3, 20, NULL);
    int32_t from[50], to[50];
    for (int i = 0; i < 50; i++) {
        from[i] = (i * 7) % 50; /* a permutation: 7 is prime to 50 */
        to[from[i]] = i;
    }
    cr_assert_eq(vg_model_reorder_items(&r, &m, from, 50, 20), 0);
    cr_assert_eq(r.step, m.step);
    vg_csr_t Y = renumbered(&X, to, 50);
    for (int t = 0; t < VG_P_COUNT; t++) {
        const vg_param_t *p = &m.p[t], *q = &r.p[t];
        cr_assert_eq(q->rows, p->rows);
        for (size_t row = 0; row < q->rows; row++)
            for (size_t k = 0; k < q->cols; k++) {
                size_t src = (q->item_rows ? (size_t)from[row] : row) * p->cols + k, dst = row * q->cols + k;
                cr_assert(q->m[dst] == p->m[src] && q->v[dst] == p->v[src], "%s[%zu][%zu]", p->name, row, k);
            }
    }
    vg_real *a = malloc(20 * 50 * sizeof *a), *b = malloc(20 * 50 * sizeof *b);
    vg_real *work = malloc(vg_model_score_work_size(&m, 20) * sizeof *work);
    cr_assert_eq(vg_model_score(&m, &X, a, work), 0);
    cr_assert_eq(vg_model_score(&r, &Y, b, work), 0);
    for (int u = 0; u < 20; u++)
        for (int i = 0; i < 50; i++)
            cr_assert_float_eq(b[u * 50 + i], a[u * 50 + from[i]], 1e-4, "before a step: user %d item %d", u, i);
    vg_model_t snap;
    cr_assert_eq(vg_model_snapshot(&snap, &m), 0);
    vg_model_t bad;
    cr_assert_eq(vg_model_reorder_items(&bad, &snap, from, 50, 20), VG_EINVAL, "a snapshot has no moments");
    vg_model_close(&snap);
    free(a);
    free(b);
    free(work);
    vg_csr_free(&X);
    vg_csr_free(&Y);
    vg_model_close(&m);
    vg_model_close(&r);
}

Test(model, alpha_anneals_linearly_to_cap)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB);
    c.anneal_steps = 10;
    c.alpha_cap = 0.2;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    cr_assert_float_eq(vg_model_alpha(&m), 0.0, 1e-12);
    m.step = 5;
    cr_assert_float_eq(vg_model_alpha(&m), 0.1, 1e-12);
    m.step = 50;
    cr_assert_float_eq(vg_model_alpha(&m), 0.2, 1e-12);
    vg_model_close(&m);
}

/* γ = 1 on E1 equals γ = 0.5 on E1 / 2 for users of exactly 4 items (the
 * scales 1/4 and 1/2 · 1/2 are exact): the same scores, and the same first
 * training step (no input noise: it reads E1 without the user's scale). */
Test(model, input_norm_scales_the_input_in_scoring_and_training)
{
    int32_t rows[40], cols[40];
    for (int k = 0; k < 40; k++)
        rows[k] = k / 4, cols[k] = (k / 4) + 10 * (k % 4);
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 10, 50, 40, rows, cols), 0);
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    c.noise_input = 0;
    vg_model_t a, b;
    cr_assert_eq(vg_model_init(&a, &c, 50, 10), 0);
    c.input_norm = 1;
    cr_assert_eq(vg_model_init(&b, &c, 50, 10), 0);
    vg_param_t *e1 = &a.p[VG_P_E1];
    for (size_t i = 0; i < e1->rows * e1->cols; i++)
        e1->w[i] *= 0.5f;
    vg_real sa[500], sb[500], *work = malloc(vg_model_score_work_size(&a, 10) * sizeof *work);
    cr_assert_eq(vg_model_score(&a, &X, sa, work), 0);
    cr_assert_eq(vg_model_score(&b, &X, sb, work), 0);
    for (int i = 0; i < 500; i++)
        cr_assert_float_eq(sa[i], sb[i], 1e-5, "score %d: %g vs %g", i, sa[i], sb[i]);
    vg_step_stats_t ta, tb;
    cr_assert_eq(vg_model_train_step(&a, &X, &ta), 0);
    cr_assert_eq(vg_model_train_step(&b, &X, &tb), 0);
    cr_assert_float_eq(ta.nll, tb.nll, 1e-4 * fabs(ta.nll), "nll %g vs %g", ta.nll, tb.nll);
    c.input_norm = 0; /* no scaling at all: another model */
    vg_model_t d;
    cr_assert_eq(vg_model_init(&d, &c, 50, 10), 0);
    cr_assert_eq(vg_model_score(&d, &X, sb, work), 0);
    cr_assert(memcmp(sa, sb, sizeof sa) != 0);
    free(work);
    vg_csr_free(&X);
    vg_model_close(&a);
    vg_model_close(&b);
    vg_model_close(&d);
}

Test(model, rejects_bad_configuration)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB);
    vg_model_t m;
    c.dropout = 1.0;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), VG_EINVAL);
    small_cfg(&c, VG_VARIANT_AVB);
    c.hidden = 0;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), VG_EINVAL);
    small_cfg(&c, VG_VARIANT_AVB);
    c.input_norm = 1.5;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), VG_EINVAL);
    c.input_norm = NAN;
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), VG_EINVAL);
    small_cfg(&c, VG_VARIANT_AVB);
    cr_assert_eq(vg_model_init(&m, &c, 0, 20), VG_EINVAL);
    cr_assert_eq(vg_model_init(&m, &c, 50, 20), 0);
    vg_csr_t X = two_groups(1, 30);
    cr_assert_eq(vg_model_train_step(&m, &X, NULL), VG_EINVAL, "batch over max_batch");
    vg_csr_free(&X);
    vg_model_close(&m);
}

/* ---- the state file ---- */

static void trained_model(vg_model_t *m)
{
    vg_model_cfg_t c;
    small_cfg(&c, VG_VARIANT_AVB_D_C);
    cr_assert_eq(vg_model_init(m, &c, 50, 20), 0);
    char id[16];
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "item-%d", i);
        cr_assert_eq(vg_vocab_add(&m->vocab, id, strlen(id), NULL), i);
    }
    vg_csr_t X = two_groups(5, 40);
    train(m, &X, 7, 20, NULL);
    vg_csr_free(&X);
}

Test(state, roundtrip_and_resume_equals_uninterrupted, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t a, b;
    trained_model(&a);
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/model.ckpt", vg_tmpdir);
    cr_assert_eq(vg_model_save(&a, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(access(path, F_OK), 0); /* temporary files and failures: test_state.c */
    cr_assert_eq(vg_model_load(&b, path, &a.cfg, 20, err, sizeof err), 0, "%s", err);
    cr_assert(same_weights(&a, &b));
    cr_assert_eq(b.step, 7);
    cr_assert_float_eq(vg_model_alpha(&b), vg_model_alpha(&a), 1e-12);
    cr_assert_eq(b.vocab.n, 50);
    cr_assert_str_eq(vg_vocab_id(&b.vocab, 42), "item-42");
    cr_assert_eq(vg_vocab_find(&b.vocab, "item-13", 7), 13);
    /* training on from the file draws what the uninterrupted model draws */
    vg_csr_t X = two_groups(6, 40);
    train(&a, &X, 3, 20, NULL);
    train(&b, &X, 3, 20, NULL);
    cr_assert(same_weights(&a, &b), "resumed run diverged from the uninterrupted one");
    vg_csr_free(&X);
    vg_model_close(&a);
    vg_model_close(&b);
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void patch(const char *path, long off, unsigned char x)
{
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ x, f);
    fclose(f);
}

Test(state, refuses_damage_with_a_reason, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_model_t a, b;
    trained_model(&a);
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/model.ckpt", vg_tmpdir);
    cr_assert_eq(vg_model_save(&a, path, err, sizeof err), 0, "%s", err);
    long size = file_size(path);

    patch(path, size / 2, 0x10); /* a flipped bit in the weights */
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), VG_ECORRUPT);
    cr_assert(strstr(err, "checksum") && strstr(err, path), "%s", err);
    patch(path, size / 2, 0x10);
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), 0, "%s", err);
    vg_model_close(&b);

    cr_assert_eq(truncate(path, size - 1000), 0);
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), VG_ECORRUPT);
    cr_assert(strstr(err, "truncated"), "%s", err);

    cr_assert_eq(vg_model_save(&a, path, err, sizeof err), 0, "%s", err);
    patch(path, 8, 0x07); /* format version */
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), VG_EVERSION);
    cr_assert(strstr(err, "version"), "%s", err);
    patch(path, 0, 0x20); /* magic */
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), VG_EFORMAT);
    cr_assert(strstr(err, "not a vaegan"), "%s", err);

    cr_assert_eq(vg_model_save(&a, path, err, sizeof err), 0, "%s", err);
    vg_model_cfg_t other = a.cfg;
    other.hidden = 64;
    cr_assert_eq(vg_model_load(&b, path, &other, 20, err, sizeof err), VG_EMISMATCH);
    cr_assert(strstr(err, "hidden is 32 in the file, 64 configured"), "%s", err);
    other = a.cfg;
    other.variant = VG_VARIANT_AVB;
    cr_assert_eq(vg_model_load(&b, path, &other, 20, err, sizeof err), VG_EMISMATCH);
    cr_assert(strstr(err, "avb+d+c"), "%s", err);

    snprintf(path, sizeof path, "%s/none.ckpt", vg_tmpdir);
    cr_assert_eq(vg_model_load(&b, path, NULL, 20, err, sizeof err), VG_EIO);
    cr_assert(strstr(err, "No such file"), "%s", err);
    vg_model_close(&a);
}

Test(model, catalogue_grows)
{
    vg_model_t m;
    trained_model(&m);
    vg_real e1_17 = m.p[VG_P_E1].w[17 * 32 + 3], b4_49 = m.p[VG_P_B4].w[49];
    for (int n = 51; n <= 120; n++) /* one by one: amortised by capacity doubling */
        cr_assert_eq(vg_model_grow(&m, n), 0);
    cr_assert_eq(m.n_items, 120);
    cr_assert_geq(m.p[VG_P_W4].cap_rows, 120);
    cr_assert_lt(m.p[VG_P_W4].cap_rows, 240);
    cr_assert_eq(m.p[VG_P_E1].w[17 * 32 + 3], e1_17, "old rows kept");
    cr_assert_eq(m.p[VG_P_B4].w[49], b4_49);
    double s = 0;
    for (int j = 0; j < 32; j++)
        s += fabs(m.p[VG_P_W4].w[110 * 32 + j]);
    cr_assert_gt(s, 0, "new rows initialised");
    /* a user of new items trains and scores */
    int32_t r[4] = {0, 0, 1, 1}, c[4] = {3, 119, 60, 100};
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, 2, 120, 4, r, c), 0);
    vg_step_stats_t st;
    cr_assert_eq(vg_model_train_step(&m, &X, &st), 0);
    cr_assert(isfinite(st.loss_g));
    vg_real scores[240], *work = malloc(vg_model_score_work_size(&m, 2) * sizeof *work);
    cr_assert_eq(vg_model_score(&m, &X, scores, work), 0);
    for (int i = 0; i < 240; i++)
        cr_assert(isfinite(scores[i]));
    free(work);
    vg_csr_free(&X);
    vg_model_close(&m);
}

/* ---- top-N ---- */

static const vg_real *sort_scores;
static int by_score_desc(const void *a, const void *b)
{
    const vg_real *sc = sort_scores;
    int i = *(const int *)a, j = *(const int *)b;
    if (sc[i] != sc[j])
        return sc[i] < sc[j] ? 1 : -1;
    return i - j;
}

Test(topn, equals_full_sort_with_exclusions_and_ties)
{
    vg_rng_t r;
    vg_rng_seed(&r, 11);
    enum { N = 1000 };
    vg_real s[N];
    for (int i = 0; i < N; i++)
        s[i] = (vg_real)(vg_rng_below(&r, 200)) / 10; /* many ties */
    int32_t ex[50];
    int n_ex = 0;
    for (int i = 0; i < N; i += 20)
        ex[n_ex++] = i;
    int ord[N], n_ord = 0;
    for (int i = 0; i < N; i++)
        if (i % 20)
            ord[n_ord++] = i;
    sort_scores = s;
    qsort(ord, (size_t)n_ord, sizeof *ord, by_score_desc);
    int32_t top[100];
    vg_real ts[100];
    cr_assert_eq(vg_topn(s, N, ex, n_ex, 100, top, ts), 100);
    for (int k = 0; k < 100; k++) {
        cr_assert_eq(top[k], ord[k], "rank %d", k);
        cr_assert_eq(ts[k], s[ord[k]]);
    }
    /* fewer candidates than asked */
    cr_assert_eq(vg_topn(s, 10, ex, 1, 100, top, NULL), 9);
    cr_assert_eq(vg_topn(s, N, ex, n_ex, 0, top, NULL), 0);
}

Test(vocab, add_find_and_reject)
{
    vg_vocab_t v;
    vg_vocab_init(&v);
    char id[32];
    int added;
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "i%d", i);
        cr_assert_eq(vg_vocab_add(&v, id, strlen(id), &added), i);
        cr_assert_eq(added, 1);
    }
    cr_assert_eq(vg_vocab_add(&v, "i77", 3, &added), 77);
    cr_assert_eq(added, 0);
    cr_assert_eq(vg_vocab_find(&v, "i4999", 5), 4999);
    cr_assert_eq(vg_vocab_find(&v, "i5000", 5), -1);
    cr_assert_eq(vg_vocab_add(&v, "", 0, NULL), VG_EINVAL);
    char longid[200];
    memset(longid, 'x', sizeof longid);
    cr_assert_eq(vg_vocab_add(&v, longid, 129, NULL), VG_EINVAL);
    cr_assert_eq(vg_vocab_add(&v, longid, 128, NULL), 5000);
    vg_vocab_free(&v);
}

/* Erasing keeps every other id findable (backward-shift deletion in the
 * probe runs), frees the text, and the same id added again gets a new index. */
Test(vocab, erase)
{
    vg_vocab_t v;
    vg_vocab_init(&v);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "id%d", i);
        cr_assert_eq(vg_vocab_add(&v, id, strlen(id), NULL), i);
    }
    for (int i = 0; i < 1000; i += 3)
        cr_assert_eq(vg_vocab_erase(&v, i), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "id%d", i);
        int32_t want = i % 3 == 0 ? -1 : i;
        cr_assert_eq(vg_vocab_find(&v, id, strlen(id)), want, "%s", id);
        if (i % 3 == 0)
            cr_assert_str_eq(vg_vocab_id(&v, i), "");
    }
    int added = 0;
    cr_assert_eq(vg_vocab_add(&v, "id3", 3, &added), 1000, "a new index");
    cr_assert(added);
    for (int i = 1000; i < 3000; i++) { /* rehashes with erased ids inside */
        snprintf(id, sizeof id, "more%d", i);
        cr_assert_geq(vg_vocab_add(&v, id, strlen(id), NULL), 0);
    }
    cr_assert_eq(vg_vocab_find(&v, "id3", 3), 1000);
    cr_assert_eq(vg_vocab_find(&v, "id4", 3), 4);
    cr_assert_eq(vg_vocab_find(&v, "id6", 3), -1);
    vg_vocab_free(&v);
}

/* The prefiltered selection of long vectors (model/topn.c) gives exactly
 * what a full sort gives: ties by index, NaNs and exclusions skipped, for
 * short and long lists; vg_topn_set the same items in index order. */
static const vg_real *sort_scores;
static int by_score_then_index(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    vg_real sx = sort_scores[x], sy = sort_scores[y];
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return (x > y) - (x < y);
}

static int by_index(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

Test(topn, long_vectors_match_a_full_sort)
{
    enum { N = 20000 };
    vg_real *s = malloc(N * sizeof *s);
    int32_t *all = malloc(N * sizeof *all), ex[300], out[512], set[512];
    vg_rng_t r;
    vg_rng_seed(&r, 9);
    for (int round = 0; round < 40; round++) {
        int coarse = round % 2; /* many ties */
        for (int i = 0; i < N; i++) {
            double v = vg_rng_uniform(&r) * 10 - 5;
            s[i] = (vg_real)(coarse ? floor(v * 20) / 20 : v);
            if (vg_rng_below(&r, 100) == 0)
                s[i] = (vg_real)NAN;
        }
        if (round % 5 == 0) /* a skewed head: the threshold sample misses it */
            for (int i = 0; i < 50; i++)
                s[i] = 100 + i % 3;
        int n_ex = (int)vg_rng_below(&r, 300);
        for (int k = 0; k < n_ex; k++)
            ex[k] = (int32_t)vg_rng_below(&r, N);
        qsort(ex, (size_t)n_ex, sizeof *ex, by_index);
        int m = 0;
        for (int k = 0; k < n_ex; k++) /* distinct */
            if (!m || ex[m - 1] != ex[k])
                ex[m++] = ex[k];
        n_ex = m;
        int na = 0, e = 0;
        for (int i = 0; i < N; i++) {
            while (e < n_ex && ex[e] < i)
                e++;
            if ((e < n_ex && ex[e] == i) || isnan(s[i]))
                continue;
            all[na++] = i;
        }
        sort_scores = s;
        qsort(all, (size_t)na, sizeof *all, by_score_then_index);
        const int ns[] = {1, 10, 100, 400, 512};
        for (int t = 0; t < 5; t++) {
            int n = ns[t], got = vg_topn(s, N, ex, n_ex, n, out, NULL);
            cr_assert_eq(got, n < na ? n : na);
            cr_assert_arr_eq(out, all, (size_t)got * sizeof *out, "round %d n %d", round, n);
            int gs = vg_topn_set(s, N, ex, n_ex, n, set);
            cr_assert_eq(gs, got);
            memcpy(out, all, (size_t)got * sizeof *out);
            qsort(out, (size_t)got, sizeof *out, by_index);
            cr_assert_arr_eq(set, out, (size_t)got * sizeof *out, "set: round %d n %d", round, n);
        }
    }
    free(s);
    free(all);
}