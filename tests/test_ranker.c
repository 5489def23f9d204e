/*
 * test_ranker.c — top-N ranking on fp32 and on the fast kernels (ranker.h):
 * the fp32 ranker is vg_model_score + vg_topn exactly; the fast paths agree
 * with it on a trained model (bounds looser than the benchmark's, so they
 * cannot flake), return exact fp32 scores, honour exclusions and counts, do
 * not depend on how users are batched (int8 sums are exact), follow a
 * growing catalogue, and give way to fp32 where kernels cannot be compiled.
 */
#include <criterion/criterion.h>
#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/ranker.h"
#include "model/topn.h"
#include "model/vaegan.h"

enum { ITEMS = 3000, GROUPS = 30, USERS = 1200, PER_USER = 20, TOP = 20 };

/* Users with PER_USER items of one taste group (100 items each), plus 2 random items. */
static vg_csr_t grouped(uint64_t seed, int users, int items)
{
    vg_rng_t r;
    vg_rng_seed(&r, seed);
    size_t cap = (size_t)users * (PER_USER + 2), n = 0;
    int32_t *rows = malloc(cap * sizeof *rows), *cols = malloc(cap * sizeof *cols);
    for (int u = 0; u < users; u++) {
        int g = u % GROUPS;
        for (int k = 0; k < PER_USER + 2; k++) {
            rows[n] = u;
            cols[n++] = k < PER_USER ? (int32_t)(g * 100 + (int)vg_rng_below(&r, 100))
                                     : (int32_t)vg_rng_below(&r, (uint64_t)items);
        }
    }
    vg_csr_t X;
    cr_assert_eq(vg_csr_from_pairs(&X, users, items, n, rows, cols), 0);
    free(rows);
    free(cols);
    return X;
}

static void trained(vg_model_t *m, const vg_csr_t *X, int steps)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = 96;
    c.latent = 24;
    c.disc_hidden = 32;
    c.lr = 3e-3;
    c.seed = 5;
    cr_assert_eq(vg_model_init(m, &c, X->cols, 100), 0);
    vg_csr_t b = {0};
    int sel[100];
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < 100; k++)
            sel[k] = (s * 100 + k) % X->rows;
        cr_assert_eq(vg_csr_gather(&b, X, sel, 100), 0);
        cr_assert_eq(vg_model_train_step(m, &b, NULL), 0);
    }
    vg_csr_free(&b);
}

/* Rankings of all users of X, in batches of `batch`, their histories excluded. */
static void rank_all(vg_ranker_t *r, const vg_model_t *m, const vg_fastw_t *fw, const vg_csr_t *X, int batch,
                     int n, int32_t *idx, vg_real *sc, int *cnt)
{
    vg_csr_t b = {0};
    int *sel = malloc((size_t)batch * sizeof *sel);
    const int32_t **ex = malloc((size_t)batch * sizeof *ex);
    int *n_ex = malloc((size_t)batch * sizeof *n_ex);
    for (int s = 0; s < X->rows; s += batch) {
        int k = X->rows - s < batch ? X->rows - s : batch;
        for (int j = 0; j < k; j++) {
            sel[j] = s + j;
            ex[j] = X->indices + X->indptr[s + j];
            n_ex[j] = vg_csr_row_len(X, s + j);
        }
        cr_assert_eq(vg_csr_gather(&b, X, sel, k), 0);
        cr_assert_eq(vg_ranker_topn(r, m, fw, &b, ex, n_ex, n, idx + (size_t)s * n, sc ? sc + (size_t)s * n : NULL,
                                    cnt + s),
                     0);
    }
    vg_csr_free(&b);
    free(sel);
    free(ex);
    free(n_ex);
}

Test(ranker, kernel_names)
{
    vg_kernel_t k;
    cr_assert_eq(vg_kernel_parse("int8", &k), 0);
    cr_assert_eq(k, VG_KERNEL_INT8);
    cr_assert_eq(vg_kernel_parse("bf16", &k), 0);
    cr_assert_eq(k, VG_KERNEL_BF16);
    cr_assert_eq(vg_kernel_parse("fp16", &k), VG_EINVAL);
    cr_assert_str_eq(vg_kernel_name(VG_KERNEL_AUTO), "auto");
    cr_assert_str_eq(vg_fastw_path(NULL), "fp32 openblas");
}

Test(ranker, fp32_is_score_and_topn)
{
    vg_csr_t X = grouped(1, 300, ITEMS);
    vg_model_t m;
    trained(&m, &X, 20);
    vg_ranker_t *r = vg_ranker_new();
    cr_assert_not_null(r);
    int32_t *idx = malloc((size_t)X.rows * TOP * sizeof *idx);
    vg_real *sc = malloc((size_t)X.rows * TOP * sizeof *sc);
    int *cnt = malloc((size_t)X.rows * sizeof *cnt);
    rank_all(r, &m, NULL, &X, 64, TOP, idx, sc, cnt);
    vg_real *scores = malloc((size_t)ITEMS * sizeof *scores);
    vg_real *work = malloc(vg_model_score_work_size(&m, 1) * sizeof *work);
    vg_csr_t one = {0};
    for (int u = 0; u < X.rows; u++) {
        cr_assert_eq(vg_csr_gather(&one, &X, &u, 1), 0);
        cr_assert_eq(vg_model_score(&m, &one, scores, work), 0);
        int32_t want[TOP];
        int n = vg_topn(scores, ITEMS, X.indices + X.indptr[u], vg_csr_row_len(&X, u), TOP, want, NULL);
        cr_assert_eq(cnt[u], n);
        for (int j = 0; j < n; j++) {
            cr_assert_eq(idx[u * TOP + j], want[j], "user %d rank %d", u, j);
            cr_assert_float_eq(sc[u * TOP + j], scores[want[j]], 1e-4);
        }
    }
    vg_csr_free(&one);
    free(scores);
    free(work);
    free(idx);
    free(sc);
    free(cnt);
    vg_ranker_free(r);
    vg_model_close(&m);
    vg_csr_free(&X);
}

/* The fast kernel k against fp32 on a trained model. */
static void agrees(vg_kernel_t k)
{
    vg_csr_t X = grouped(2, USERS, ITEMS);
    vg_model_t m;
    trained(&m, &X, 150);
    char why[160];
    vg_fastw_t *fw = NULL;
    cr_assert_eq(vg_fastw_build(&fw, &m, k, why, sizeof why), 0);
    if (!fw) { /* a skip, not a warning: Criterion exits non-zero on a warning */
        vg_model_close(&m);
        vg_csr_free(&X);
        cr_skip_test("no %s kernel on this CPU (%s): fast path not tested", vg_kernel_name(k), why);
    }
    cr_assert_eq(vg_fastw_kernel(fw), k);
    cr_log_info("%s: %s", vg_kernel_name(k), vg_fastw_path(fw));
    vg_ranker_t *r = vg_ranker_new();
    size_t n = (size_t)X.rows * TOP;
    int32_t *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got), *got1 = malloc(n * sizeof *got1);
    vg_real *rs = malloc(n * sizeof *rs), *gs = malloc(n * sizeof *gs);
    int *rc = malloc((size_t)X.rows * sizeof *rc), *gc = malloc((size_t)X.rows * sizeof *gc),
        *gc1 = malloc((size_t)X.rows * sizeof *gc1);
    rank_all(r, &m, NULL, &X, 256, TOP, ref, rs, rc);
    rank_all(r, &m, fw, &X, 256, TOP, got, gs, gc);
    rank_all(r, &m, fw, &X, 7, TOP, got1, NULL, gc1);
    double overlap = 0;
    int same10 = 0;
    for (int u = 0; u < X.rows; u++) {
        cr_assert_eq(gc[u], rc[u]);
        int hit = 0;
        for (int j = 0; j < TOP; j++)
            for (int i = 0; i < TOP; i++)
                hit += got[u * TOP + j] == ref[u * TOP + i];
        overlap += (double)hit / TOP;
        same10 += !memcmp(got + u * TOP, ref + u * TOP, 10 * sizeof *got);
        for (int j = 0; j < gc[u]; j++) { /* exact scores, and never an excluded item */
            int32_t it = got[u * TOP + j];
            cr_assert_eq(vg_csr_has(&X, u, it), 0);
            for (int i = 0; i < TOP; i++)
                if (ref[u * TOP + i] == it)
                    cr_assert_float_eq(gs[u * TOP + j], rs[u * TOP + i], 1e-4);
        }
        if (k == VG_KERNEL_INT8) /* integer sums: batching cannot matter */
            cr_assert_arr_eq(got + u * TOP, got1 + u * TOP, TOP * sizeof *got, "user %d", u);
    }
    overlap /= X.rows;
    cr_log_info("%s: top-%d overlap %.4f, identical top-10 %.1f%%", vg_kernel_name(k), TOP, overlap,
                100.0 * same10 / X.rows);
    cr_expect_geq(overlap, 0.97, "overlap %.4f", overlap);
    cr_expect_geq(same10, X.rows * 9 / 10, "identical top-10 for %d of %d users", same10, X.rows);
    free(ref);
    free(got);
    free(got1);
    free(rs);
    free(gs);
    free(rc);
    free(gc);
    free(gc1);
    vg_ranker_free(r);
    vg_fastw_free(fw);
    vg_model_close(&m);
    vg_csr_free(&X);
}

Test(ranker, int8_agrees_with_fp32) { agrees(VG_KERNEL_INT8); }
Test(ranker, bf16_agrees_with_fp32) { agrees(VG_KERNEL_BF16); }

/* A snapshot and its fast weights remade in the buffers of older ones
 * (vg_model_resnapshot, vg_fastw_rebuild) rank exactly as ones made
 * afresh: after more training, after the catalogue grew past the old
 * buffers, and with the buffers of a larger catalogue. */
Test(ranker, remade_in_old_buffers_ranks_as_made_afresh)
{
    vg_csr_t X = grouped(4, 200, ITEMS);
    vg_model_t m, old, fresh;
    trained(&m, &X, 5);
    cr_assert_eq(vg_model_snapshot(&old, &m), 0);
    vg_fastw_t *ofw = NULL;
    cr_assert_eq(vg_fastw_build(&ofw, &old, VG_KERNEL_AUTO, NULL, 0), 0);
    vg_ranker_t *r = vg_ranker_new();
    size_t n = (size_t)X.rows * TOP;
    int32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    vg_real *as = malloc(n * sizeof *as), *bs = malloc(n * sizeof *bs);
    int *ac = malloc((size_t)X.rows * sizeof *ac), *bc = malloc((size_t)X.rows * sizeof *bc);
    for (int change = 0; change < 3; change++) {
        if (change == 0) { /* more training */
            vg_csr_t bt = {0};
            int sel[100];
            for (int k = 0; k < 100; k++)
                sel[k] = k;
            cr_assert_eq(vg_csr_gather(&bt, &X, sel, 100), 0);
            cr_assert_eq(vg_model_train_step(&m, &bt, NULL), 0);
            vg_csr_free(&bt);
        } else if (change == 1) {
            cr_assert_eq(vg_model_grow(&m, ITEMS + 1500), 0); /* past the old buffers */
        }
        /* change 2: the old buffers (of the grown catalogue) reused at the same size */
        cr_assert_eq(vg_model_resnapshot(&old, &m), 0);
        cr_assert_eq(vg_fastw_rebuild(&ofw, &old, VG_KERNEL_AUTO, NULL, 0), 0);
        cr_assert_eq(vg_model_snapshot(&fresh, &m), 0);
        vg_fastw_t *ffw = NULL;
        cr_assert_eq(vg_fastw_build(&ffw, &fresh, VG_KERNEL_AUTO, NULL, 0), 0);
        cr_assert_eq(vg_fastw_kernel(ofw), vg_fastw_kernel(ffw));
        vg_csr_t Y = X;
        Y.cols = m.n_items;
        rank_all(r, &old, ofw, &Y, 64, TOP, a, as, ac);
        rank_all(r, &fresh, ffw, &Y, 64, TOP, b, bs, bc);
        cr_assert_arr_eq(ac, bc, (size_t)X.rows * sizeof *ac, "change %d: counts", change);
        cr_assert_arr_eq(a, b, n * sizeof *a, "change %d: items", change);
        cr_assert_arr_eq(as, bs, n * sizeof *as, "change %d: scores", change);
        vg_fastw_free(ffw);
        vg_model_close(&fresh);
    }
    free(a);
    free(b);
    free(as);
    free(bs);
    free(ac);
    free(bc);
    vg_ranker_free(r);
    vg_fastw_free(ofw);
    vg_model_close(&old);
    vg_model_close(&m);
    vg_csr_free(&X);
}

/* A catalogue smaller than the list: every item not excluded, once. */
Test(ranker, short_catalogue_and_growth)
{
    vg_csr_t X = grouped(3, 60, ITEMS);
    vg_model_t m;
    trained(&m, &X, 5);
    vg_ranker_t *r = vg_ranker_new();
    for (int round = 0; round < 2; round++) {
        vg_fastw_t *fw = NULL;
        cr_assert_eq(vg_fastw_build(&fw, &m, VG_KERNEL_AUTO, NULL, 0), 0);
        int n = m.n_items + 10;
        int32_t *idx = malloc((size_t)X.rows * n * sizeof *idx);
        int *cnt = malloc((size_t)X.rows * sizeof *cnt);
        vg_csr_t Y = X;
        Y.cols = m.n_items;
        rank_all(r, &m, fw, &Y, 16, n, idx, NULL, cnt);
        for (int u = 0; u < X.rows; u++) {
            cr_assert_eq(cnt[u], m.n_items - vg_csr_row_len(&X, u));
            char *seen = calloc((size_t)m.n_items, 1);
            for (int j = 0; j < cnt[u]; j++) {
                int32_t it = idx[(size_t)u * n + j];
                cr_assert(it >= 0 && it < m.n_items && !seen[it] && !vg_csr_has(&X, u, it));
                seen[it] = 1;
            }
            free(seen);
        }
        free(idx);
        free(cnt);
        vg_fastw_free(fw);
        cr_assert_eq(vg_model_grow(&m, ITEMS + 1500), 0); /* past a VG_FASTW_ALIGN boundary */
    }
    vg_ranker_free(r);
    vg_model_close(&m);
    vg_csr_free(&X);
}

/* Under MemoryDenyWriteExecute (the kernel's PR_SET_MDWE, what systemd's
 * setting turns on) oneDNN cannot compile its kernels: the build says so and
 * ranking runs in fp32.  In a child process: MDWE cannot be turned off. */
Test(ranker, no_jit_falls_back_to_fp32)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        vg_csr_t X = grouped(4, 40, ITEMS);
        vg_model_t m;
        trained(&m, &X, 2);
        char why[160] = "";
        vg_fastw_t *fw = NULL;
        if (vg_fastw_build(&fw, &m, VG_KERNEL_AUTO, why, sizeof why) != 0 || !fw)
            _exit(4); /* no fast kernel here even without MDWE: nothing to fall back from */
        vg_fastw_free(fw);
        if (prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0) != 0)
            _exit(3);
        dnnl_set_primitive_cache_capacity(0); /* the kernels compiled above must not be reused */
        fw = (vg_fastw_t *)1;
        int rc = vg_fastw_build(&fw, &m, VG_KERNEL_AUTO, why, sizeof why);
        fprintf(stderr, "under MDWE: %s\n", why);
        _exit(rc == 0 && fw == NULL && strstr(why, "cannot compile") ? 0 : 1);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
        cr_skip_test("this kernel has no PR_SET_MDWE (Linux < 6.3)");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 4)
        cr_skip_test("no fast kernel on this CPU: the fp32 path is all there is");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d", st);
}
