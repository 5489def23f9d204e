/*
 * test_rankeval.c — the ranking metrics of model/rankeval.c against
 * shared/reference/metrics.py and hand-computed values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "model/common.h"
#include "model/rankeval.h"

#define EPS 1e-12

static double d(int rank) { return 1.0 / log2((double)rank + 1.0); } /* 1-based rank */

Test(rankeval, reference_self_check)
{
    /* metrics.py __main__: items 0..9 ranked in order, test = {1, 3}, Ns = (2, 5) */
    const int cuts[] = {2, 5};
    const int32_t top[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, test[] = {1, 3};
    vg_rankeval_t m;
    cr_assert_eq(vg_rankeval_init(&m, cuts, 2), 0);
    vg_rankeval_add_user(&m, top, 10, test, 2);
    vg_rankeval_finish(&m);
    cr_assert_eq(m.users, 1);
    cr_expect_float_eq(m.recall[0], 0.5, EPS);
    cr_expect_float_eq(m.mrr[0], 0.5, EPS);
    cr_expect_float_eq(m.ndcg[0], d(2) / (1 + d(2)), EPS);
    cr_expect_float_eq(m.recall[1], 1.0, EPS);
    /* the values the script printed */
    cr_expect_float_eq(m.recall_plain[0], 0.5, EPS);
    cr_expect_float_eq(m.ndcg[0], 0.38685280723454163, EPS);
    cr_expect_float_eq(m.ndcg[1], 0.6509209298071326, EPS);
    cr_expect_float_eq(m.mrr[1], 0.5, EPS);
}

Test(rankeval, no_hits)
{
    const int cuts[] = {3};
    const int32_t top[] = {0, 1, 2}, test[] = {5, 7};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 1);
    vg_rankeval_add_user(&m, top, 3, test, 2);
    vg_rankeval_finish(&m);
    cr_expect_eq(m.users, 1);
    cr_expect_float_eq(m.recall[0], 0.0, EPS);
    cr_expect_float_eq(m.recall_plain[0], 0.0, EPS);
    cr_expect_float_eq(m.ndcg[0], 0.0, EPS);
    cr_expect_float_eq(m.mrr[0], 0.0, EPS);
}

Test(rankeval, all_hits)
{
    const int cuts[] = {3, 4};
    const int32_t top[] = {9, 4, 6, 1}, test[] = {1, 4, 6, 9};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 2);
    vg_rankeval_add_user(&m, top, 4, test, 4);
    vg_rankeval_finish(&m);
    cr_expect_float_eq(m.recall[0], 1.0, EPS);       /* 3 / min(3, 4) */
    cr_expect_float_eq(m.recall_plain[0], 0.75, EPS); /* 3 / 4 */
    cr_expect_float_eq(m.ndcg[0], 1.0, EPS);
    cr_expect_float_eq(m.recall[1], 1.0, EPS);
    cr_expect_float_eq(m.recall_plain[1], 1.0, EPS);
    cr_expect_float_eq(m.ndcg[1], 1.0, EPS);
    cr_expect_float_eq(m.mrr[1], 1.0, EPS);
}

Test(rankeval, fewer_test_items_than_cutoff)
{
    /* |test| = 2 < N = 5, hits at ranks 2 and 5 */
    const int cuts[] = {5};
    const int32_t top[] = {0, 2, 4, 6, 8}, test[] = {2, 8};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 1);
    vg_rankeval_add_user(&m, top, 5, test, 2);
    vg_rankeval_finish(&m);
    cr_expect_float_eq(m.recall[0], 1.0, EPS); /* 2 / min(5, 2) */
    cr_expect_float_eq(m.recall_plain[0], 1.0, EPS);
    cr_expect_float_eq(m.ndcg[0], (d(2) + d(5)) / (d(1) + d(2)), EPS);
    cr_expect_float_eq(m.mrr[0], 0.5, EPS);
}

Test(rankeval, first_hit_rank_decides_mrr)
{
    const int cuts[] = {1, 4};
    const int32_t test[] = {7};
    const int32_t first[] = {7, 1, 2, 3}, later[] = {1, 2, 7, 3};
    vg_rankeval_t a, b;
    vg_rankeval_init(&a, cuts, 2);
    vg_rankeval_init(&b, cuts, 2);
    vg_rankeval_add_user(&a, first, 4, test, 1);
    vg_rankeval_add_user(&b, later, 4, test, 1);
    vg_rankeval_finish(&a);
    vg_rankeval_finish(&b);
    cr_expect_float_eq(a.mrr[0], 1.0, EPS);
    cr_expect_float_eq(a.ndcg[0], 1.0, EPS);
    cr_expect_float_eq(a.mrr[1], 1.0, EPS);
    cr_expect_float_eq(b.mrr[0], 0.0, EPS); /* rank 3 is outside N = 1 */
    cr_expect_float_eq(b.recall[0], 0.0, EPS);
    cr_expect_float_eq(b.mrr[1], 1.0 / 3.0, EPS);
    cr_expect_float_eq(b.ndcg[1], d(3), EPS);
    cr_expect_float_eq(b.recall[1], 1.0, EPS);
}

Test(rankeval, short_top_list_counts_misses)
{
    const int cuts[] = {10};
    const int32_t top[] = {3, 4}, test[] = {4, 5, 6};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 1);
    vg_rankeval_add_user(&m, top, 2, test, 3);
    vg_rankeval_finish(&m);
    cr_expect_float_eq(m.recall[0], 1.0 / 3.0, EPS);
    cr_expect_float_eq(m.ndcg[0], d(2) / (d(1) + d(2) + d(3)), EPS);
    cr_expect_float_eq(m.mrr[0], 0.5, EPS);
}

Test(rankeval, users_without_test_items_are_skipped)
{
    const int cuts[] = {2};
    const int32_t top[] = {0, 1};
    const int32_t test[] = {0};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 1);
    vg_rankeval_add_user(&m, top, 2, test, 0);
    cr_expect_eq(m.users, 0);
    vg_rankeval_add_user(&m, top, 2, test, 1);
    vg_rankeval_finish(&m);
    cr_expect_eq(m.users, 1);
    cr_expect_float_eq(m.recall[0], 1.0, EPS);
    vg_rankeval_finish(&m); /* idempotent */
    cr_expect_float_eq(m.recall[0], 1.0, EPS);

    vg_rankeval_t e;
    vg_rankeval_init(&e, cuts, 1);
    vg_rankeval_finish(&e);
    cr_expect_eq(e.users, 0);
    cr_expect_float_eq(e.ndcg[0], 0.0, EPS);
}

Test(rankeval, init_validates_and_find)
{
    vg_rankeval_t m;
    const int bad[] = {5, 0};
    const int many[VG_RANKEVAL_MAX_CUTOFFS + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    cr_expect_eq(vg_rankeval_init(&m, bad, 2), VG_EINVAL);
    cr_expect_eq(vg_rankeval_init(&m, many, VG_RANKEVAL_MAX_CUTOFFS + 1), VG_EINVAL);
    cr_expect_eq(vg_rankeval_init(&m, many, 0), VG_EINVAL);
    const int cuts[] = {20, 5, 100};
    cr_assert_eq(vg_rankeval_init(&m, cuts, 3), 0);
    cr_expect_eq(vg_rankeval_find(&m, 5), 1);
    cr_expect_eq(vg_rankeval_find(&m, 100), 2);
    cr_expect_eq(vg_rankeval_find(&m, 50), -1);
}

/* Random case: 7 users x 40 items, 4 "training" items masked per user; the
 * top lists, test sets and means are from metrics.py's topn_metrics with
 * Ns = (1, 3, 5, 20) (numpy; generated by a seeded script). */
static const int32_t TOP[7][20] = {
    {23, 28, 24, 34, 8, 0, 1, 20, 15, 33, 2, 21, 5, 10, 19, 26, 31, 27, 35, 3},
    {14, 39, 3, 15, 21, 19, 20, 37, 5, 26, 4, 29, 0, 33, 6, 30, 25, 22, 36, 9},
    {18, 16, 35, 14, 23, 21, 10, 27, 15, 32, 19, 3, 5, 25, 13, 4, 24, 12, 37, 2},
    {25, 24, 9, 15, 28, 30, 3, 13, 21, 37, 12, 27, 32, 6, 0, 26, 5, 39, 18, 23},
    {0, 6, 33, 3, 23, 5, 7, 4, 21, 31, 39, 18, 10, 9, 15, 25, 29, 14, 11, 16},
    {20, 11, 31, 15, 39, 5, 28, 7, 24, 0, 13, 9, 4, 34, 21, 36, 17, 23, 3, 38},
    {3, 17, 8, 5, 29, 35, 11, 12, 38, 15, 21, 16, 33, 19, 1, 39, 28, 20, 7, 18},
};
static const int NTEST[7] = {3, 0, 1, 12, 25, 6, 2};
static const int32_t TEST[7][25] = {
    {10, 30, 34},
    {0},
    {39},
    {5, 6, 9, 11, 12, 13, 14, 21, 22, 31, 36, 39},
    {0, 1, 3, 5, 6, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 25, 26, 27, 30, 31, 32, 34, 37, 39},
    {5, 12, 15, 18, 20, 34},
    {7, 39},
};
static const double WANT_R[4] = {0.33333333333333331, 0.22222222222222221, 0.25555555555555554, 0.58611111111111114};
static const double WANT_RC[4] = {0.034444444444444444, 0.054999999999999993, 0.14499999999999999,
                                  0.56611111111111112};
static const double WANT_G[4] = {0.33333333333333331, 0.24487978767045937, 0.25935513735075472,
                                 0.38185513380578251};
static const double WANT_M[4] = {0.33333333333333331, 0.38888888888888884, 0.43055555555555552,
                                 0.44097222222222215};

static void check_random(const vg_rankeval_t *m)
{
    cr_assert_eq(m->users, 6); /* user 1 has no test item */
    for (int c = 0; c < 4; c++) {
        cr_expect_float_eq(m->recall[c], WANT_R[c], EPS, "R@%d", m->cut[c]);
        cr_expect_float_eq(m->recall_plain[c], WANT_RC[c], EPS, "RC@%d", m->cut[c]);
        cr_expect_float_eq(m->ndcg[c], WANT_G[c], EPS, "G@%d", m->cut[c]);
        cr_expect_float_eq(m->mrr[c], WANT_M[c], EPS, "M@%d", m->cut[c]);
    }
}

Test(rankeval, random_case_matches_reference)
{
    const int cuts[] = {1, 3, 5, 20};
    vg_rankeval_t m;
    vg_rankeval_init(&m, cuts, 4);
    for (int u = 0; u < 7; u++)
        vg_rankeval_add_user(&m, TOP[u], 20, TEST[u], NTEST[u]);
    vg_rankeval_finish(&m);
    check_random(&m);
}

Test(rankeval, merge_equals_single_pass)
{
    const int cuts[] = {1, 3, 5, 20};
    vg_rankeval_t a, b;
    vg_rankeval_init(&a, cuts, 4);
    vg_rankeval_init(&b, cuts, 4);
    for (int u = 0; u < 7; u++)
        vg_rankeval_add_user(u < 3 ? &a : &b, TOP[u], 20, TEST[u], NTEST[u]);
    vg_rankeval_merge(&a, &b);
    vg_rankeval_finish(&a);
    check_random(&a);
}
