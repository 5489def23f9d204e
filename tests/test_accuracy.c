/*
 * test_accuracy.c — vaegan-eval on MovieLens-100K (label "accuracy", slow).
 *
 * Needs VAEGAN_ML100K=<path to u.data>; skipped (and says so) without it.
 * One seed per run, floors looser than the README's 3-seed means so that the
 * test cannot flake; the README table has the real figures.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *eval(const char *protocol, const char *variant)
{
    const char *data = getenv("VAEGAN_ML100K");
    if (!data || !*data)
        cr_skip_test("VAEGAN_ML100K is not set (path to MovieLens-100K u.data)");
    char cmd[2048], line[8192], last[8192] = "";
    snprintf(cmd, sizeof cmd, "'%s' --data '%s' --format ml100k --protocol %s --variant %s --seed 1 2>/dev/null",
             VG_EVAL_BIN, data, protocol, variant);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    while (fgets(line, sizeof line, p))
        strcpy(last, line);
    cr_assert_eq(pclose(p), 0, "vaegan-eval failed: %s", cmd);
    json_error_t e;
    json_t *j = json_loads(last, 0, &e);
    cr_assert_not_null(j, "last line is not JSON: %s", last);
    return j;
}

static double get(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    cr_assert(json_is_number(v), "missing %s", k);
    return json_number_value(v);
}

Test(accuracy, weak_avb_d_c_beats_floor_and_mult_vae, .timeout = 1200)
{
    json_t *a = eval("weak", "avb+d+c"), *m = eval("weak", "mult-vae");
    cr_log_info("weak avb+d+c R@20 %.3f G@20 %.3f M@20 %.3f; mult-vae G@20 %.3f", get(a, "R@20"),
                get(a, "G@20"), get(a, "M@20"), get(m, "G@20"));
    cr_expect_geq(get(a, "R@20"), 0.345); /* the study's defaults: .356 / .426 / .681 (seeds 1-3) */
    cr_expect_geq(get(a, "G@20"), 0.412);
    cr_expect_geq(get(a, "M@20"), 0.66);
    cr_expect_gt(get(a, "G@20"), get(m, "G@20"));
    cr_expect_geq(get(m, "G@20"), 0.36);
    cr_expect_leq(get(a, "best_epoch"), get(a, "epochs"));
    json_decref(a);
    json_decref(m);
}

Test(accuracy, strong_avb_d_c, .timeout = 1200)
{
    json_t *a = eval("strong", "avb+d+c");
    cr_log_info("strong avb+d+c R@20 %.3f R@50 %.3f G@100 %.3f", get(a, "R@20"), get(a, "R@50"), get(a, "G@100"));
    cr_expect_geq(get(a, "G@100"), 0.40);
    cr_expect_geq(get(a, "R@20"), 0.33);
    json_decref(a);
}

/* EASE (λ chosen on validation: 300 on split seed 0) against the independent
 * PyTorch implementation's figures for the same split: strong G@100 .4722,
 * weak G@20 .4394 (they agree to 4 digits; the floors leave room for BLAS
 * rounding only). */
Test(accuracy, ease_matches_the_peer, .timeout = 300)
{
    json_t *s = eval("strong", "ease"), *w = eval("weak", "ease");
    cr_log_info("ease: strong G@100 %.4f (lambda %g), weak G@20 %.4f (lambda %g)", get(s, "G@100"),
                get(s, "lambda"), get(w, "G@20"), get(w, "lambda"));
    cr_expect_float_eq(get(s, "G@100"), 0.4722, 0.003);
    cr_expect_float_eq(get(w, "G@20"), 0.4394, 0.003);
    json_decref(s);
    json_decref(w);
}
