/*
 * split.c — weak and strong evaluation splits, bit-exact with
 * shared/reference/data.py.
 *
 * The reference's matrices are canonical CSR (rows sorted, duplicates
 * summed), so only the *set* of (user, item) pairs matters, not the file
 * order: we sort the pairs by (user key, item key), drop repeats, count each
 * user's run and keep runs of >= 5.  Dense indices are ranks among the kept
 * keys, as np.unique assigns them.  The only other thing that must match is
 * the random stream: numpy's legacy MT19937, consumed by rng.permutation in
 * exactly the reference's order (one permutation per row with >= 5 items, row
 * by row; in the strong split first one over all users).
 */
#include "model/split.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "model/common.h"

/* ---- numpy legacy RandomState -------------------------------------------- */

#define MT_N 624
#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfU
#define MT_UPPER 0x80000000U
#define MT_LOWER 0x7fffffffU

void vg_nprng_seed(vg_nprng_t *g, uint32_t seed)
{
    /* numpy's mt19937_seed (= init_genrand), used by _legacy_seeding(int) */
    for (int i = 0; i < MT_N; i++) {
        g->key[i] = seed;
        seed = 1812433253U * (seed ^ (seed >> 30)) + (uint32_t)i + 1U;
    }
    g->pos = MT_N;
}

static void mt_gen(vg_nprng_t *g)
{
    uint32_t *k = g->key, y;
    int i;
    for (i = 0; i < MT_N - MT_M; i++) {
        y = (k[i] & MT_UPPER) | (k[i + 1] & MT_LOWER);
        k[i] = k[i + MT_M] ^ (y >> 1) ^ (-(y & 1U) & MT_MATRIX_A);
    }
    for (; i < MT_N - 1; i++) {
        y = (k[i] & MT_UPPER) | (k[i + 1] & MT_LOWER);
        k[i] = k[i + (MT_M - MT_N)] ^ (y >> 1) ^ (-(y & 1U) & MT_MATRIX_A);
    }
    y = (k[MT_N - 1] & MT_UPPER) | (k[0] & MT_LOWER);
    k[MT_N - 1] = k[MT_M - 1] ^ (y >> 1) ^ (-(y & 1U) & MT_MATRIX_A);
    g->pos = 0;
}

uint32_t vg_nprng_u32(vg_nprng_t *g)
{
    if (g->pos == MT_N)
        mt_gen(g);
    uint32_t y = g->key[g->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

uint64_t vg_nprng_interval(vg_nprng_t *g, uint64_t max)
{
    if (max == 0)
        return 0;
    uint64_t mask = max, v;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffULL) {
        while ((v = (vg_nprng_u32(g) & mask)) > max)
            ;
    } else {
        /* numpy's next_uint64 for MT19937: two 32-bit draws, high first */
        do {
            uint64_t hi = vg_nprng_u32(g);
            v = ((hi << 32) | vg_nprng_u32(g)) & mask;
        } while (v > max);
    }
    return v;
}

void vg_nprng_permutation(vg_nprng_t *g, int32_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = i;
    /* legacy shuffle: for i in reversed(range(1, n)): j = random_interval(i) */
    for (int i = n - 1; i >= 1; i--) {
        int j = (int)vg_nprng_interval(g, (uint64_t)i);
        int32_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

/* ---- helpers -------------------------------------------------------------- */

typedef struct {
    int64_t user, item;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->user != y->user)
        return (x->user > y->user) - (x->user < y->user);
    return (x->item > y->item) - (x->item < y->item);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int frac_ok(double f) { return f >= 0.0 && f <= 1.0; }

/* The interactions (ratings >= thr when use_thr) as sorted, distinct pairs of
 * users with >= 5 items.  *out is malloc'ed (caller frees), *m its length. */
static int collect(const vg_rating_t *r, size_t n, int use_thr, float thr, pair_t **out, size_t *m)
{
    *out = NULL;
    *m = 0;
    pair_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        return VG_ENOMEM;
    size_t k = 0;
    for (size_t t = 0; t < n; t++) {
        if (use_thr && !(r[t].rating >= thr))
            continue;
        p[k].user = r[t].user;
        p[k].item = r[t].item;
        k++;
    }
    qsort(p, k, sizeof *p, cmp_pair);
    size_t w = 0;
    for (size_t t = 0; t < k; t++)
        if (t == 0 || cmp_pair(&p[t], &p[t - 1]) != 0)
            p[w++] = p[t];
    k = w;
    /* keep users with >= 5 distinct items */
    w = 0;
    for (size_t a = 0; a < k;) {
        size_t b = a;
        while (b < k && p[b].user == p[a].user)
            b++;
        if (b - a >= 5)
            for (size_t t = a; t < b; t++)
                p[w++] = p[t];
        a = b;
    }
    *out = p;
    *m = w;
    return 0;
}

/* Sorted distinct item keys of the pairs with sel[t] != 0 (all when sel is
 * NULL).  *keys malloc'ed. */
static int unique_items(const pair_t *p, size_t m, const unsigned char *sel, int64_t **keys, int *n_keys)
{
    int64_t *k = malloc((m ? m : 1) * sizeof *k);
    if (!k)
        return VG_ENOMEM;
    size_t c = 0;
    for (size_t t = 0; t < m; t++)
        if (!sel || sel[t])
            k[c++] = p[t].item;
    qsort(k, c, sizeof *k, cmp_i64);
    size_t w = 0;
    for (size_t t = 0; t < c; t++)
        if (t == 0 || k[t] != k[t - 1])
            k[w++] = k[t];
    if (w > INT_MAX) {
        free(k);
        return VG_ERANGE;
    }
    *keys = k;
    *n_keys = (int)w;
    return 0;
}

/* Index of key in sorted keys[0..n-1], or -1. */
static int find_key(const int64_t *keys, int n, int64_t key)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && keys[lo] == key ? lo : -1;
}

/* data.py _split_rows: per row with n >= 5 items, k = max(1, int(frac * n))
 * items at perm[:k] go to B, the rest to A; shorter rows go to A whole.  A
 * and B are built from scratch (caller frees them on success). */
static int split_rows(const vg_csr_t *X, double frac, vg_nprng_t *g, vg_csr_t *A, vg_csr_t *B)
{
    memset(A, 0, sizeof *A);
    memset(B, 0, sizeof *B);
    size_t nnz = (size_t)vg_csr_nnz(X);
    int maxlen = 0;
    for (int r = 0; r < X->rows; r++)
        if (vg_csr_row_len(X, r) > maxlen)
            maxlen = vg_csr_row_len(X, r);
    int32_t *ar = malloc((nnz ? nnz : 1) * sizeof *ar);
    int32_t *ac = malloc((nnz ? nnz : 1) * sizeof *ac);
    int32_t *br = malloc((nnz ? nnz : 1) * sizeof *br);
    int32_t *bc = malloc((nnz ? nnz : 1) * sizeof *bc);
    int32_t *perm = malloc((maxlen ? (size_t)maxlen : 1) * sizeof *perm);
    int rc = VG_ENOMEM;
    if (!ar || !ac || !br || !bc || !perm)
        goto done;
    size_t na = 0, nb = 0;
    for (int r = 0; r < X->rows; r++) {
        const int32_t *items = X->indices + X->indptr[r];
        int n = vg_csr_row_len(X, r);
        if (n >= 5) {
            int k = (int)(frac * (double)n);
            if (k < 1)
                k = 1;
            vg_nprng_permutation(g, perm, n);
            for (int t = 0; t < n; t++) {
                if (t < k) {
                    br[nb] = r;
                    bc[nb++] = items[perm[t]];
                } else {
                    ar[na] = r;
                    ac[na++] = items[perm[t]];
                }
            }
        } else {
            for (int t = 0; t < n; t++) {
                ar[na] = r;
                ac[na++] = items[t];
            }
        }
    }
    rc = vg_csr_from_pairs(A, X->rows, X->cols, na, ar, ac);
    if (!rc) {
        rc = vg_csr_from_pairs(B, X->rows, X->cols, nb, br, bc);
        if (rc)
            vg_csr_free(A);
    }
done:
    free(ar);
    free(ac);
    free(br);
    free(bc);
    free(perm);
    return rc;
}

/* ---- weak ----------------------------------------------------------------- */

void vg_split_weak_free(vg_weak_split_t *s)
{
    vg_csr_free(&s->train_fit);
    vg_csr_free(&s->val);
    vg_csr_free(&s->train_full);
    vg_csr_free(&s->test);
    free(s->user_key);
    free(s->item_key);
    memset(s, 0, sizeof *s);
}

int vg_split_weak(const vg_rating_t *r, size_t n, uint32_t seed, double test_frac, double val_frac,
                  vg_weak_split_t *out)
{
    memset(out, 0, sizeof *out);
    if ((!r && n) || !frac_ok(test_frac) || !frac_ok(val_frac))
        return VG_EINVAL;
    pair_t *p;
    size_t m;
    int32_t *rows = NULL, *cols = NULL;
    vg_csr_t X = {0};
    int rc = collect(r, n, 0, 0.0f, &p, &m);
    if (rc)
        return rc;
    if (m == 0) {
        rc = VG_EEMPTY;
        goto fail;
    }
    rc = unique_items(p, m, NULL, &out->item_key, &out->n_items);
    if (rc)
        goto fail;
    rows = malloc(m * sizeof *rows);
    cols = malloc(m * sizeof *cols);
    out->user_key = malloc(m * sizeof *out->user_key); /* shrunk below */
    rc = VG_ENOMEM;
    if (!rows || !cols || !out->user_key)
        goto fail;
    int64_t nu = 0;
    for (size_t t = 0; t < m; t++) {
        if (t == 0 || p[t].user != p[t - 1].user) {
            if (nu == INT_MAX) {
                rc = VG_ERANGE;
                goto fail;
            }
            out->user_key[nu++] = p[t].user;
        }
        rows[t] = (int32_t)(nu - 1);
        cols[t] = find_key(out->item_key, out->n_items, p[t].item);
        vg_assert(cols[t] >= 0);
    }
    out->n_users = (int)nu;
    int64_t *uk = realloc(out->user_key, (size_t)nu * sizeof *uk);
    if (uk)
        out->user_key = uk;
    free(p);
    p = NULL;
    rc = vg_csr_from_pairs(&X, out->n_users, out->n_items, m, rows, cols);
    free(rows);
    free(cols);
    rows = cols = NULL;
    if (rc)
        goto fail;

    vg_nprng_t g;
    vg_nprng_seed(&g, seed);
    rc = split_rows(&X, test_frac, &g, &out->train_full, &out->test);
    vg_csr_free(&X);
    if (rc)
        goto fail;
    rc = split_rows(&out->train_full, val_frac, &g, &out->train_fit, &out->val);
    if (rc)
        goto fail;
    return 0;
fail:
    free(p);
    free(rows);
    free(cols);
    vg_csr_free(&X);
    vg_split_weak_free(out);
    return rc;
}

/* ---- strong --------------------------------------------------------------- */

void vg_split_strong_free(vg_strong_split_t *s)
{
    vg_csr_free(&s->train);
    vg_csr_free(&s->val_in);
    vg_csr_free(&s->val_out);
    vg_csr_free(&s->test_in);
    vg_csr_free(&s->test_out);
    free(s->item_key);
    free(s->train_user_key);
    free(s->val_user_key);
    free(s->test_user_key);
    memset(s, 0, sizeof *s);
}

/* The distinct users of the sorted pairs, ascending (*users, *nu of them),
 * and each pair's user index (*urow).  Both arrays malloc'ed, also on
 * failure (the caller frees them). */
static int index_users(const pair_t *p, size_t m, int64_t **users, int32_t **urow, int64_t *nu)
{
    *users = malloc((m ? m : 1) * sizeof **users);
    *urow = malloc((m ? m : 1) * sizeof **urow);
    if (!*users || !*urow)
        return VG_ENOMEM;
    int64_t n = 0;
    for (size_t t = 0; t < m; t++) {
        if (t == 0 || p[t].user != p[t - 1].user) {
            if (n == INT_MAX)
                return VG_ERANGE;
            (*users)[n++] = p[t].user;
        }
        (*urow)[t] = (int32_t)(n - 1);
    }
    *nu = n;
    return 0;
}

/* rng.permutation over the nu users: the first ntr positions train, the next
 * h validate, the last h test.  Fills the split's user keys and *pos (the
 * position of each user; malloc'ed, also on failure). */
static int place_users(vg_nprng_t *g, const int64_t *users, int nu, int h, vg_strong_split_t *out, int32_t **pos)
{
    const int ntr = nu - 2 * h;
    int32_t *perm = malloc((size_t)nu * sizeof *perm);
    *pos = malloc((size_t)nu * sizeof **pos);
    out->train_user_key = malloc((size_t)(ntr ? ntr : 1) * sizeof(int64_t));
    out->val_user_key = malloc((size_t)(h ? h : 1) * sizeof(int64_t));
    out->test_user_key = malloc((size_t)(h ? h : 1) * sizeof(int64_t));
    if (!perm || !*pos || !out->train_user_key || !out->val_user_key || !out->test_user_key) {
        free(perm);
        return VG_ENOMEM;
    }
    vg_nprng_permutation(g, perm, nu);
    for (int k = 0; k < nu; k++) {
        (*pos)[perm[k]] = k;
        if (k < ntr)
            out->train_user_key[k] = users[perm[k]];
        else if (k < ntr + h)
            out->val_user_key[k - ntr] = users[perm[k]];
        else
            out->test_user_key[k - ntr - h] = users[perm[k]];
    }
    out->n_train_users = ntr;
    out->n_heldout = h;
    free(perm);
    return 0;
}

/* The item vocabulary: the items of training users (position < ntr). */
static int training_items(const pair_t *p, size_t m, const int32_t *urow, const int32_t *pos, int ntr,
                          vg_strong_split_t *out)
{
    unsigned char *is_train = malloc(m ? m : 1);
    if (!is_train)
        return VG_ENOMEM;
    for (size_t t = 0; t < m; t++)
        is_train[t] = pos[urow[t]] < ntr;
    int rc = unique_items(p, m, is_train, &out->item_key, &out->n_items);
    free(is_train);
    return rc;
}

/* The three blocks (train into out->train, validation and test into *blk),
 * rows in permuted order, vocabulary items only. */
static int build_blocks(const pair_t *p, size_t m, const int32_t *urow, const int32_t *pos, vg_strong_split_t *out,
                        vg_csr_t blk[2])
{
    const int ntr = out->n_train_users, h = out->n_heldout;
    int32_t *row[3] = {NULL, NULL, NULL}, *col[3] = {NULL, NULL, NULL};
    size_t cnt[3] = {0, 0, 0};
    int rc = VG_ENOMEM;
    for (int b = 0; b < 3; b++) {
        row[b] = malloc((m ? m : 1) * sizeof(int32_t));
        col[b] = malloc((m ? m : 1) * sizeof(int32_t));
        if (!row[b] || !col[b])
            goto done;
    }
    for (size_t t = 0; t < m; t++) {
        int c = find_key(out->item_key, out->n_items, p[t].item);
        if (c < 0)
            continue;
        int k = pos[urow[t]], b = k < ntr ? 0 : k < ntr + h ? 1 : 2;
        row[b][cnt[b]] = k - (b == 0 ? 0 : b == 1 ? ntr : ntr + h);
        col[b][cnt[b]++] = c;
    }
    rc = vg_csr_from_pairs(&out->train, ntr, out->n_items, cnt[0], row[0], col[0]);
    if (!rc)
        rc = vg_csr_from_pairs(&blk[0], h, out->n_items, cnt[1], row[1], col[1]);
    if (!rc)
        rc = vg_csr_from_pairs(&blk[1], h, out->n_items, cnt[2], row[2], col[2]);
done:
    for (int b = 0; b < 3; b++) {
        free(row[b]);
        free(col[b]);
    }
    return rc;
}

int vg_split_strong(const vg_rating_t *r, size_t n, uint32_t seed, float threshold, int n_heldout,
                    double test_frac, vg_strong_split_t *out)
{
    memset(out, 0, sizeof *out);
    if ((!r && n) || n_heldout < 0 || !frac_ok(test_frac))
        return VG_EINVAL;
    pair_t *p;
    size_t m;
    int rc = collect(r, n, 1, threshold, &p, &m);
    if (rc)
        return rc;
    int64_t *users = NULL, nu = 0;
    int32_t *pos = NULL, *urow = NULL;
    vg_csr_t blk[2] = {{0}, {0}}; /* validation, test */
    vg_nprng_t g;
    vg_nprng_seed(&g, seed);
    if ((rc = index_users(p, m, &users, &urow, &nu)))
        goto done;
    if (nu <= 2 * (int64_t)n_heldout) {
        rc = VG_EEMPTY;
        goto done;
    }
    const int h = n_heldout, ntr = (int)nu - 2 * h;
    if ((rc = place_users(&g, users, (int)nu, h, out, &pos)) || (rc = training_items(p, m, urow, pos, ntr, out)) ||
        (rc = build_blocks(p, m, urow, pos, out, blk)))
        goto done;
    /* fold-in and scored items of the validation users, then of the test users (the same rng) */
    rc = split_rows(&blk[0], test_frac, &g, &out->val_in, &out->val_out);
    if (!rc)
        rc = split_rows(&blk[1], test_frac, &g, &out->test_in, &out->test_out);
done: /* success comes here too: the scratch goes either way */
    free(p);
    free(users);
    free(urow);
    free(pos);
    vg_csr_free(&blk[0]);
    vg_csr_free(&blk[1]);
    if (rc)
        vg_split_strong_free(out);
    return rc;
}
