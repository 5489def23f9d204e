/*
 * test_split.c — the evaluation splits against numpy/the reference.
 *
 * Expected permutations and checksums were produced by numpy 1.24
 * (np.random.RandomState) and by tools/check_split.py (shared/reference/
 * data.py); the checksum below is the one that script computes.  The
 * ML-100K checks run when VAEGAN_ML100K=<path to u.data> is set.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/common.h"
#include "model/split.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* tools/check_split.py checksum(): sum of splitmix64((r << 32) | c). */
static uint64_t csr_checksum(const vg_csr_t *m)
{
    uint64_t h = 0;
    for (int r = 0; r < m->rows; r++)
        for (int64_t k = m->indptr[r]; k < m->indptr[r + 1]; k++)
            h += splitmix64(((uint64_t)r << 32) | (uint32_t)m->indices[k]);
    return h;
}

/* tools/check_split.py synthetic(): 64-bit LCG, skewed users, duplicates. */
static uint64_t lcg_x;
static uint64_t lcg_next(void)
{
    lcg_x = lcg_x * 6364136223846793005ULL + 1442695040888963407ULL;
    return lcg_x >> 33;
}

static vg_rating_t *synthetic(size_t n)
{
    vg_rating_t *r = malloc(n * sizeof *r);
    cr_assert_not_null(r);
    lcg_x = 12345;
    for (size_t k = 0; k < n; k++) {
        uint64_t a = lcg_next() % 60, b = lcg_next() % 60;
        r[k].user = 100 + 3 * (int64_t)(a < b ? a : b);
        r[k].item = 7 + 2 * (int64_t)(lcg_next() % 90);
        r[k].rating = (float)(1 + lcg_next() % 5);
    }
    return r;
}

typedef struct {
    int seed;
    const char *proto, *name;
    int rows, cols;
    long nnz;
    uint64_t sum;
} expect_t;

static const vg_csr_t *weak_mat(const vg_weak_split_t *s, const char *name)
{
    if (!strcmp(name, "train_fit"))
        return &s->train_fit;
    if (!strcmp(name, "val"))
        return &s->val;
    if (!strcmp(name, "train_full"))
        return &s->train_full;
    if (!strcmp(name, "test"))
        return &s->test;
    cr_assert_fail("unknown weak matrix %s", name);
    return NULL;
}

static const vg_csr_t *strong_mat(const vg_strong_split_t *s, const char *name)
{
    if (!strcmp(name, "train"))
        return &s->train;
    if (!strcmp(name, "val_in"))
        return &s->val_in;
    if (!strcmp(name, "val_out"))
        return &s->val_out;
    if (!strcmp(name, "test_in"))
        return &s->test_in;
    if (!strcmp(name, "test_out"))
        return &s->test_out;
    cr_assert_fail("unknown strong matrix %s", name);
    return NULL;
}

static void check_mat(const vg_csr_t *m, const expect_t *e)
{
    cr_expect_eq(m->rows, e->rows, "seed %d %s %s rows %d != %d", e->seed, e->proto, e->name, m->rows, e->rows);
    cr_expect_eq(m->cols, e->cols, "seed %d %s %s cols %d != %d", e->seed, e->proto, e->name, m->cols, e->cols);
    cr_expect_eq(vg_csr_nnz(m), e->nnz, "seed %d %s %s nnz %ld != %ld", e->seed, e->proto, e->name,
                 (long)vg_csr_nnz(m), e->nnz);
    uint64_t h = csr_checksum(m);
    cr_expect_eq(h, e->sum, "seed %d %s %s checksum %016llx != numpy %016llx", e->seed, e->proto, e->name,
                 (unsigned long long)h, (unsigned long long)e->sum);
}

/* Runs both protocols for every seed in the table (grouped by seed, weak rows
 * before strong rows) and compares each matrix. */
static void check_table(const vg_rating_t *r, size_t n, int n_heldout, const expect_t *tab, size_t ntab)
{
    for (size_t t = 0; t < ntab;) {
        int seed = tab[t].seed;
        vg_weak_split_t w;
        vg_strong_split_t s;
        cr_assert_eq(vg_split_weak(r, n, (uint32_t)seed, 0.2, 0.1, &w), 0);
        cr_assert_eq(vg_split_strong(r, n, (uint32_t)seed, 4.0f, n_heldout, 0.2, &s), 0);
        for (; t < ntab && tab[t].seed == seed; t++)
            check_mat(!strcmp(tab[t].proto, "weak") ? weak_mat(&w, tab[t].name) : strong_mat(&s, tab[t].name),
                      &tab[t]);
        vg_split_weak_free(&w);
        vg_split_strong_free(&s);
    }
}

/* ---- the generator -------------------------------------------------------- */

Test(nprng, raw_mt19937_matches_numpy)
{
    /* np.random.RandomState(5489).randint(0, 2**32, 3, dtype=np.uint64) */
    vg_nprng_t g;
    vg_nprng_seed(&g, 5489);
    cr_expect_eq(vg_nprng_u32(&g), 3499211612U);
    cr_expect_eq(vg_nprng_u32(&g), 581869302U);
    cr_expect_eq(vg_nprng_u32(&g), 3890346734U);
}

static void expect_perm(vg_nprng_t *g, int n, const int32_t *want)
{
    int32_t got[16];
    cr_assert(n <= 16);
    vg_nprng_permutation(g, got, n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "n=%d: perm[%d] = %d, numpy %d", n, i, got[i], want[i]);
}

Test(nprng, permutation_matches_numpy)
{
    vg_nprng_t g;
    vg_nprng_seed(&g, 0); /* RandomState(0).permutation(10) */
    expect_perm(&g, 10, (const int32_t[]){2, 8, 4, 9, 1, 6, 7, 3, 0, 5});
    vg_nprng_seed(&g, 4294967295U);
    expect_perm(&g, 6, (const int32_t[]){1, 4, 5, 0, 2, 3});
}

Test(nprng, consecutive_permutations_share_the_state)
{
    vg_nprng_t g;
    vg_nprng_seed(&g, 42); /* r = RandomState(42); r.permutation(7), (5), (12) */
    expect_perm(&g, 7, (const int32_t[]){0, 1, 5, 2, 4, 3, 6});
    expect_perm(&g, 5, (const int32_t[]){3, 1, 2, 0, 4});
    expect_perm(&g, 12, (const int32_t[]){0, 10, 9, 1, 8, 5, 11, 3, 4, 7, 6, 2});
    vg_nprng_seed(&g, 3); /* permutation(1) and (0) draw nothing */
    expect_perm(&g, 1, (const int32_t[]){0});
    expect_perm(&g, 0, NULL);
    expect_perm(&g, 9, (const int32_t[]){6, 2, 7, 4, 5, 0, 3, 1, 8});
}

Test(nprng, interval_stays_in_range)
{
    vg_nprng_t g;
    vg_nprng_seed(&g, 9);
    int seen[6] = {0};
    for (int k = 0; k < 600; k++) {
        uint64_t v = vg_nprng_interval(&g, 5);
        cr_assert_leq(v, 5);
        seen[v]++;
    }
    for (int v = 0; v < 6; v++)
        cr_expect_gt(seen[v], 50, "value %d drawn %d times of 600", v, seen[v]);
    cr_expect_eq(vg_nprng_interval(&g, 0), 0);
    uint64_t big = 0x1ffffffffULL; /* the 64-bit draw path */
    for (int k = 0; k < 100; k++)
        cr_assert_leq(vg_nprng_interval(&g, big), big);
}

/* ---- splits on synthetic data --------------------------------------------- */

/* /usr/bin/python3 tools/check_split.py --c --synthetic 0 7 */
static const expect_t SYN[] = {
    {0, "weak", "train_fit", 55, 90, 1189, 0x35e29ec02123acedULL},
    {0, "weak", "val", 55, 90, 108, 0xd1a3d3c1cbbaa10dULL},
    {0, "weak", "train_full", 55, 90, 1297, 0x07867281ecde4dfaULL},
    {0, "weak", "test", 55, 90, 297, 0xb4e4b79393326525ULL},
    {0, "strong", "train", 40, 90, 590, 0x4586541b46cdba64ULL},
    {0, "strong", "val_in", 5, 90, 68, 0xc7512272ed5c6386ULL},
    {0, "strong", "val_out", 5, 90, 15, 0x35506238fcbe84baULL},
    {0, "strong", "test_in", 5, 90, 50, 0x57241c73ada571a3ULL},
    {0, "strong", "test_out", 5, 90, 11, 0x1d36fd5ebff3e1e8ULL},
    {7, "weak", "train_fit", 55, 90, 1189, 0x0dc6e4431c3a982dULL},
    {7, "weak", "val", 55, 90, 108, 0xd90f49acd0a6a4c4ULL},
    {7, "weak", "train_full", 55, 90, 1297, 0xe6d62defece13cf1ULL},
    {7, "weak", "test", 55, 90, 297, 0xd594fc25932f762eULL},
    {7, "strong", "train", 40, 90, 584, 0x38e4a8c6f4e249dfULL},
    {7, "strong", "val_in", 5, 90, 46, 0xe700cbdf86b48dd8ULL},
    {7, "strong", "val_out", 5, 90, 10, 0x26deeab8b6e0db17ULL},
    {7, "strong", "test_in", 5, 90, 77, 0x7acb81d78dd78377ULL},
    {7, "strong", "test_out", 5, 90, 17, 0x3028be7027d4183fULL},
};

Test(split, synthetic_matches_reference)
{
    vg_rating_t *r = synthetic(2000);
    check_table(r, 2000, 5, SYN, sizeof SYN / sizeof SYN[0]);
    free(r);
}

Test(split, file_order_and_duplicates_do_not_matter)
{
    /* the reference's CSR is canonical: reversing the file and repeating
     * every rating must give the same split */
    vg_rating_t *r = synthetic(2000), *r2 = malloc(4000 * sizeof *r2);
    cr_assert_not_null(r2);
    for (int k = 0; k < 2000; k++)
        r2[k] = r2[2000 + k] = r[1999 - k];
    check_table(r2, 4000, 5, SYN, 9);
    free(r);
    free(r2);
}

/* Distinct pairs of users with >= 5 items, as a dense 0/1 table over the
 * split's keys (test-side re-derivation of the >= 5 rule). */
static unsigned char *dense_interactions(const vg_rating_t *r, size_t n, float thr, const int64_t *ukey, int nu,
                                         const int64_t *ikey, int ni)
{
    unsigned char *d = calloc((size_t)nu * (size_t)ni, 1);
    cr_assert_not_null(d);
    for (size_t k = 0; k < n; k++) {
        if (r[k].rating < thr)
            continue;
        int u = -1, i = -1;
        for (int a = 0; a < nu; a++)
            if (ukey[a] == r[k].user)
                u = a;
        for (int a = 0; a < ni; a++)
            if (ikey[a] == r[k].item)
                i = a;
        if (u >= 0 && i >= 0)
            d[(size_t)u * (size_t)ni + (size_t)i] = 1;
    }
    return d;
}

Test(split, weak_invariants)
{
    vg_rating_t *r = synthetic(2000);
    vg_weak_split_t s;
    cr_assert_eq(vg_split_weak(r, 2000, 11, 0.2, 0.1, &s), 0);
    /* keys ascending; users are exactly those with >= 5 distinct items */
    for (int a = 1; a < s.n_users; a++)
        cr_assert_lt(s.user_key[a - 1], s.user_key[a]);
    for (int a = 1; a < s.n_items; a++)
        cr_assert_lt(s.item_key[a - 1], s.item_key[a]);
    for (int64_t key = 100; key < 100 + 3 * 60; key += 3) {
        unsigned char seen[400] = {0};
        int distinct = 0;
        for (int k = 0; k < 2000; k++)
            if (r[k].user == key && !seen[r[k].item]++)
                distinct++;
        int present = 0;
        for (int a = 0; a < s.n_users; a++)
            present |= s.user_key[a] == key;
        cr_expect_eq(present, distinct >= 5, "user %ld has %d items", (long)key, distinct);
    }
    unsigned char *X = dense_interactions(r, 2000, -1.0f, s.user_key, s.n_users, s.item_key, s.n_items);
    for (int u = 0; u < s.n_users; u++) {
        int n = 0, nfull = vg_csr_row_len(&s.train_full, u);
        for (int i = 0; i < s.n_items; i++) {
            int full = vg_csr_has(&s.train_full, u, i), te = vg_csr_has(&s.test, u, i);
            int fit = vg_csr_has(&s.train_fit, u, i), va = vg_csr_has(&s.val, u, i);
            cr_assert(!(full && te), "train_full and test overlap");
            cr_assert(!(fit && va), "train_fit and val overlap");
            cr_assert_eq(full || te, X[(size_t)u * (size_t)s.n_items + (size_t)i], "train_full + test != input");
            cr_assert_eq(fit || va, full, "train_fit + val != train_full");
            n += X[(size_t)u * (size_t)s.n_items + (size_t)i];
        }
        int want = n >= 5 ? ((int)(0.2 * n) > 1 ? (int)(0.2 * n) : 1) : 0;
        cr_expect_eq(vg_csr_row_len(&s.test, u), want, "user %d: %d items", u, n);
        int wantv = nfull >= 5 ? ((int)(0.1 * nfull) > 1 ? (int)(0.1 * nfull) : 1) : 0;
        cr_expect_eq(vg_csr_row_len(&s.val, u), wantv, "user %d: %d train items", u, nfull);
    }
    free(X);
    vg_split_weak_free(&s);
    free(r);
}

Test(split, weak_short_rows_stay_in_train)
{
    /* user 1: 5 items, 1 goes to test, the 4 left in train_full are < 5 so
     * none goes to validation; user 2: 4 distinct items (a duplicate), so
     * dropped; user 3: 6 items, 1 to test, 1 of the 5 left to validation */
    vg_rating_t r[] = {
        {1, 10, 1}, {1, 11, 1}, {1, 12, 1}, {1, 13, 1}, {1, 14, 1},
        {2, 10, 1}, {2, 11, 1}, {2, 11, 1}, {2, 12, 1}, {2, 13, 1},
        {3, 10, 1}, {3, 11, 1}, {3, 12, 1}, {3, 13, 1}, {3, 14, 1}, {3, 15, 1},
    };
    vg_weak_split_t s;
    cr_assert_eq(vg_split_weak(r, sizeof r / sizeof r[0], 0, 0.2, 0.1, &s), 0);
    cr_assert_eq(s.n_users, 2);
    cr_expect_eq(s.user_key[0], 1);
    cr_expect_eq(s.user_key[1], 3);
    cr_assert_eq(s.n_items, 6);
    cr_expect_eq(vg_csr_row_len(&s.test, 0), 1);
    cr_expect_eq(vg_csr_row_len(&s.test, 1), 1);
    cr_expect_eq(vg_csr_row_len(&s.train_full, 0), 4);
    cr_expect_eq(vg_csr_row_len(&s.val, 0), 0);
    cr_expect_eq(vg_csr_row_len(&s.train_fit, 0), 4);
    cr_expect_eq(vg_csr_row_len(&s.train_full, 1), 5);
    cr_expect_eq(vg_csr_row_len(&s.val, 1), 1);
    vg_split_weak_free(&s);
}

Test(split, strong_invariants)
{
    vg_rating_t *r = synthetic(2000);
    vg_strong_split_t s;
    cr_assert_eq(vg_split_strong(r, 2000, 5, 4.0f, 5, 0.2, &s), 0);
    cr_assert_eq(s.n_heldout, 5);
    cr_assert_eq(s.train.rows, s.n_train_users);
    cr_assert_eq(s.val_in.rows, 5);
    cr_assert_eq(s.test_out.rows, 5);
    /* the three user sets are disjoint */
    int nu = s.n_train_users + 10;
    int64_t *all = malloc((size_t)nu * sizeof *all);
    cr_assert_not_null(all);
    memcpy(all, s.train_user_key, (size_t)s.n_train_users * sizeof *all);
    memcpy(all + s.n_train_users, s.val_user_key, 5 * sizeof *all);
    memcpy(all + s.n_train_users + 5, s.test_user_key, 5 * sizeof *all);
    for (int a = 0; a < nu; a++)
        for (int b = a + 1; b < nu; b++)
            cr_assert_neq(all[a], all[b]);
    /* vocabulary = items of training users: every column is used by train */
    int *used = calloc((size_t)s.n_items, sizeof *used);
    cr_assert_not_null(used);
    for (int64_t k = 0; k < vg_csr_nnz(&s.train); k++)
        used[s.train.indices[k]] = 1;
    for (int i = 0; i < s.n_items; i++)
        cr_expect(used[i], "item column %d unused by training users", i);
    /* every row equals the user's positives within the vocabulary; in/out
     * disjoint; out size = max(1, int(.2 n)) for n >= 5 else 0 */
    unsigned char *X = dense_interactions(r, 2000, 4.0f, all, nu, s.item_key, s.n_items);
    for (int u = 0; u < nu; u++) {
        const vg_csr_t *in = u < s.n_train_users ? &s.train : u < s.n_train_users + 5 ? &s.val_in : &s.test_in;
        const vg_csr_t *out = u < s.n_train_users ? NULL : u < s.n_train_users + 5 ? &s.val_out : &s.test_out;
        int row = u < s.n_train_users ? u : (u - s.n_train_users) % 5, n = 0;
        for (int i = 0; i < s.n_items; i++) {
            int a = vg_csr_has(in, row, i), b = out ? vg_csr_has(out, row, i) : 0;
            cr_assert(!(a && b));
            cr_assert_eq(a || b, X[(size_t)u * (size_t)s.n_items + (size_t)i], "user %d item %d", u, i);
            n += a || b;
        }
        if (out) {
            int want = n >= 5 ? ((int)(0.2 * n) > 1 ? (int)(0.2 * n) : 1) : 0;
            cr_expect_eq(vg_csr_row_len(out, row), want);
        } else {
            cr_expect_geq(n, 5, "training user with %d positives", n);
        }
    }
    free(X);
    free(used);
    free(all);
    vg_split_strong_free(&s);
    free(r);
}

Test(split, errors)
{
    vg_rating_t *r = synthetic(2000);
    vg_weak_split_t w;
    vg_strong_split_t s;
    cr_expect_eq(vg_split_weak(NULL, 0, 0, 0.2, 0.1, &w), VG_EEMPTY);
    cr_expect_eq(vg_split_weak(NULL, 5, 0, 0.2, 0.1, &w), VG_EINVAL);
    cr_expect_eq(vg_split_weak(r, 2000, 0, 1.5, 0.1, &w), VG_EINVAL);
    cr_expect_eq(vg_split_weak(r, 2000, 0, 0.2, -0.1, &w), VG_EINVAL);
    cr_expect_eq(vg_split_weak(r, 4, 0, 0.2, 0.1, &w), VG_EEMPTY); /* nobody has 5 */
    cr_expect_null(w.user_key);
    vg_split_weak_free(&w); /* zeroed by the failed call: harmless */
    cr_expect_eq(vg_split_strong(r, 2000, 0, 4.0f, -1, 0.2, &s), VG_EINVAL);
    cr_expect_eq(vg_split_strong(r, 2000, 0, 4.0f, 25, 0.2, &s), VG_EEMPTY); /* 50 users */
    cr_expect_eq(vg_split_strong(r, 2000, 0, 4.0f, 24, 0.2, &s), 0);
    cr_expect_eq(s.n_train_users, 2);
    vg_split_strong_free(&s);
    cr_expect_eq(vg_split_strong(r, 2000, 0, 6.0f, 0, 0.2, &s), VG_EEMPTY); /* no positives */
    cr_expect_eq(vg_split_strong(r, 2000, 0, 4.0f, 0, 0.2, &s), 0);
    cr_expect_eq(s.val_in.rows, 0);
    cr_expect_eq(s.n_train_users, 50);
    vg_split_strong_free(&s);
    free(r);
}

/* ---- ML-100K against numpy ------------------------------------------------ */

/* /usr/bin/python3 tools/check_split.py --c 0 1 2 3 */
static const expect_t ML100K[] = {
    {0, "weak", "train_fit", 943, 1682, 72755, 0x194557ac76c22a20ULL},
    {0, "weak", "val", 943, 1682, 7612, 0xba0dcfed6f688505ULL},
    {0, "weak", "train_full", 943, 1682, 80367, 0xd3532799e62aaf25ULL},
    {0, "weak", "test", 943, 1682, 19633, 0x2f99ee5a364aeedfULL},
    {0, "strong", "train", 738, 1404, 44138, 0x1148ba7c7a43e459ULL},
    {0, "strong", "val_in", 100, 1404, 4649, 0xc386af963ed17fc5ULL},
    {0, "strong", "val_out", 100, 1404, 1116, 0xc762d6411461df8eULL},
    {0, "strong", "test_in", 100, 1404, 4367, 0xd7b739819442415fULL},
    {0, "strong", "test_out", 100, 1404, 1044, 0x71c860b20534032bULL},
    {1, "weak", "train_fit", 943, 1682, 72755, 0x19ae04055b5d4c00ULL},
    {1, "weak", "val", 943, 1682, 7612, 0xa40e0ea5bd58de3cULL},
    {1, "weak", "train_full", 943, 1682, 80367, 0xbdbc12ab18b62a3cULL},
    {1, "weak", "test", 943, 1682, 19633, 0x4531034903bf73c8ULL},
    {1, "strong", "train", 738, 1417, 42923, 0xfd4f76d6fd4ff5b5ULL},
    {1, "strong", "val_in", 100, 1417, 5016, 0x1c6254c50ebefdabULL},
    {1, "strong", "val_out", 100, 1417, 1205, 0x5a75fbfd03d170bdULL},
    {1, "strong", "test_in", 100, 1417, 4983, 0x1dbc2c60a2043378ULL},
    {1, "strong", "test_out", 100, 1417, 1197, 0xfc5d823494219dceULL},
    {2, "weak", "train_fit", 943, 1682, 72755, 0xac5ea17c5b6d19bbULL},
    {2, "weak", "val", 943, 1682, 7612, 0xa035710dbcae07cfULL},
    {2, "weak", "train_full", 943, 1682, 80367, 0x4c94128a181b218aULL},
    {2, "weak", "test", 943, 1682, 19633, 0xb659036a045a7c7aULL},
    {2, "strong", "train", 738, 1422, 44589, 0xde0c369ddd5df7c1ULL},
    {2, "strong", "val_in", 100, 1422, 4541, 0x84a7fb87527cb27fULL},
    {2, "strong", "val_out", 100, 1422, 1086, 0xab86a02e8417fbf1ULL},
    {2, "strong", "test_in", 100, 1422, 4132, 0x1302338c208020bbULL},
    {2, "strong", "test_out", 100, 1422, 986, 0xe88800fa34eda610ULL},
    {3, "weak", "train_fit", 943, 1682, 72755, 0xbdfcd50366ff4befULL},
    {3, "weak", "val", 943, 1682, 7612, 0xb8d7c7fa26745cbdULL},
    {3, "weak", "train_full", 943, 1682, 80367, 0x76d49cfd8d73a8acULL},
    {3, "weak", "test", 943, 1682, 19633, 0x8c1878f68f01f558ULL},
    {3, "strong", "train", 738, 1388, 42505, 0xc0ce1470a310c2c5ULL},
    {3, "strong", "val_in", 100, 1388, 4711, 0x1916e0296b0384a1ULL},
    {3, "strong", "val_out", 100, 1388, 1130, 0xd6d87ceca9e40cb9ULL},
    {3, "strong", "test_in", 100, 1388, 5589, 0xba09c1d45fe279c3ULL},
    {3, "strong", "test_out", 100, 1388, 1352, 0x09a87783007789b1ULL},
};

Test(split, ml100k_matches_numpy)
{
    const char *path = getenv("VAEGAN_ML100K");
    if (!path || !*path)
        cr_skip_test("VAEGAN_ML100K not set");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = 0, cap = 1 << 17;
    vg_rating_t *r = malloc(cap * sizeof *r);
    cr_assert_not_null(r);
    long long u, i, ts;
    float rt;
    while (fscanf(f, "%lld %lld %f %lld", &u, &i, &rt, &ts) == 4) {
        if (n == cap) {
            cap *= 2;
            r = realloc(r, cap * sizeof *r);
            cr_assert_not_null(r);
        }
        r[n++] = (vg_rating_t){u, i, rt};
    }
    fclose(f);
    cr_assert_eq(n, 100000, "read %zu ratings", n);
    check_table(r, n, 100, ML100K, sizeof ML100K / sizeof ML100K[0]);
    free(r);
}
