/*
 * test_quality.c — the live hit rate (daemon/quality.c) on a real mirror
 * (daemon/hist.c): who is sampled, the kept lists' table under growth and
 * deletion, hits of the model's list and of popularity (the user's own
 * items left out) against a brute-force ranking, repeats and users whose
 * index passed on not judged, and the sliding window.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/hist.h"
#include "daemon/quality.h"

static void add(vg_hist_t *h, const char *user, const char *item, double ts)
{
    cr_assert_geq(vg_hist_add(h, user, strlen(user), item, strlen(item), ts, NULL), 0);
}

static int32_t user_idx(const vg_hist_t *h, const char *user)
{
    return vg_vocab_find(&h->users, user, strlen(user));
}

static int32_t item_idx(const vg_hist_t *h, const char *item)
{
    return vg_vocab_find(&h->items, item, strlen(item));
}

Test(quality, sampled_users_are_a_stable_fraction)
{
    vg_quality_t none, half, all;
    cr_assert_eq(vg_quality_init(&none, 0, 10), 0);
    cr_assert_eq(vg_quality_init(&half, 0.5, 10), 0);
    cr_assert_eq(vg_quality_init(&all, 1, 10), 0);
    int n = 0;
    for (int k = 0; k < 10000; k++) {
        char id[32];
        int len = snprintf(id, sizeof id, "user-%d", k);
        cr_assert_eq(vg_quality_sampled(&none, id, (size_t)len), 0);
        cr_assert_eq(vg_quality_sampled(&all, id, (size_t)len), 1);
        int s = vg_quality_sampled(&half, id, (size_t)len);
        cr_assert_eq(s, vg_quality_sampled(&half, id, (size_t)len), "the same user, the same answer");
        n += s;
    }
    cr_assert(n > 4700 && n < 5300, "%d of 10000 sampled at 0.5", n);
    vg_quality_free(&none);
    vg_quality_free(&half);
    vg_quality_free(&all);
}

/* The table keeps what was kept last, through growth and backward-shift
 * deletions, against a plain array. */
Test(quality, kept_lists_survive_growth_and_deletion)
{
    vg_quality_t q;
    cr_assert_eq(vg_quality_init(&q, 1, 10), 0);
    enum { U = 20000 };
    static int32_t want[U]; /* 0 = not kept, else the list's first item + 1 */
    srand(7);
    for (int round = 0; round < 100000; round++) {
        int32_t u = rand() % U;
        if (rand() % 3) {
            int32_t items[VG_QUALITY_K];
            for (int k = 0; k < VG_QUALITY_K; k++)
                items[k] = round + k;
            cr_assert_eq(vg_quality_keep(&q, u, 1, items, VG_QUALITY_K), 0);
            want[u] = round + 1;
        } else {
            vg_quality_drop(&q, u);
            want[u] = 0;
        }
    }
    size_t kept = 0;
    for (int32_t u = 0; u < U; u++)
        kept += want[u] != 0;
    cr_assert_eq(q.n, kept);
    size_t seen = 0;
    for (size_t k = 0; k < q.cap; k++) {
        const vg_quality_slot_t *s = &q.t[k];
        if (s->user < 0)
            continue;
        seen++;
        cr_assert_eq(s->items[0] + 1, want[s->user], "user %d", s->user);
    }
    cr_assert_eq(seen, kept);
    cr_assert_leq(2 * q.n, q.cap, "at most half full");
    vg_quality_free(&q);
}

static int owns(const vg_hist_t *h, int32_t u, int32_t x)
{
    for (int k = 0; k < h->u[u].n; k++)
        if (h->u[u].e[k].item == x)
            return 1;
    return 0;
}

static int more_popular(const vg_hist_t *h, int32_t x, int32_t i)
{
    return h->pop[x] > h->pop[i] || (h->pop[x] == h->pop[i] && x < i);
}

/* The rank of x among all items by popularity. */
static int global_rank(const vg_hist_t *h, int32_t x)
{
    int rank = 0;
    for (int32_t y = 0; y < h->items.n; y++)
        rank += y != x && more_popular(h, y, x);
    return rank;
}

/* Popularity rank of item i for user u by brute force: items the user does
 * not hold, by users holding them, ties by the older item; -1 (not judged)
 * when fewer than 20 of the VG_QUALITY_POP most popular items are not the
 * user's and i is not among them (its rank is not known that deep). */
static int brute_pop_rank(const vg_hist_t *h, int32_t u, int32_t i)
{
    int free_top = 0;
    for (int32_t x = 0; x < h->items.n; x++)
        free_top += !owns(h, u, x) && global_rank(h, x) < VG_QUALITY_POP;
    if (h->items.n > VG_QUALITY_POP && free_top < VG_QUALITY_K && global_rank(h, i) >= VG_QUALITY_POP)
        return -1;
    int r = 0;
    for (int32_t x = 0; x < h->items.n; x++)
        r += !owns(h, u, x) && x != i && more_popular(h, x, i);
    return r;
}

static void judge_random_mirror(int n_items, int n_users, int per_user)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 10000), 0);
    char u[32], it[32];
    srand(11);
    for (int k = 0; k < n_users; k++)
        for (int j = 0; j < per_user; j++) {
            snprintf(u, sizeof u, "u%d", k);
            /* skewed: low item numbers are popular */
            int x = (int)(n_items * pow((double)rand() / RAND_MAX, 3));
            snprintf(it, sizeof it, "i%d", x < n_items ? x : n_items - 1);
            add(&h, u, it, j);
        }
    vg_quality_t q;
    cr_assert_eq(vg_quality_init(&q, 1, 1000000), 0);
    vg_quality_popularity(&q, &h);
    int judged = 0, not_judged = 0, hits[4] = {0};
    for (int k = 0; k < n_users; k++) {
        snprintf(u, sizeof u, "u%d", k);
        int32_t ui = user_idx(&h, u);
        int32_t list[VG_QUALITY_K];
        for (int j = 0; j < VG_QUALITY_K; j++)
            list[j] = (k + 3 * j) % h.items.n;
        cr_assert_eq(vg_quality_keep(&q, ui, h.u[ui].gen, list, VG_QUALITY_K), 0);
        for (int32_t x = 0; x < h.items.n; x += 1 + k % 7) {
            int bits = vg_quality_judge(&q, &h, ui, x);
            if (owns(&h, ui, x)) {
                cr_assert_eq(bits, -1, "a repeat is not judged");
                continue;
            }
            int pos = -1, r = brute_pop_rank(&h, ui, x);
            if (r == -1) {
                cr_assert_eq(bits, -1, "user %d holds most popular items: not judged", k);
                not_judged++;
                continue;
            }
            for (int j = 0, free = 0; j < VG_QUALITY_K && pos < 0; j++) { /* the list without the user's items */
                if (list[j] == x)
                    pos = free;
                free += !owns(&h, ui, list[j]);
            }
            int want = (pos >= 0 && pos < 10 ? VG_Q_MODEL10 : 0) | (pos >= 0 ? VG_Q_MODEL20 : 0) |
                       (r < 10 ? VG_Q_POP10 : 0) | (r < 20 ? VG_Q_POP20 : 0);
            cr_assert_eq(bits, want, "user %d item %d: bits %d, want %d (popularity rank %d)", k, x, bits, want, r);
            judged++;
            for (int b = 0; b < 4; b++)
                hits[b] += (want >> b) & 1;
        }
    }
    cr_assert_eq(q.judged, (uint64_t)judged);
    for (int b = 0; b < 4; b++) {
        cr_assert_eq(q.hits[b], (uint64_t)hits[b]);
        cr_assert_float_eq(vg_quality_rate(&q, 1 << b), (double)hits[b] / judged, 1e-12);
    }
    cr_assert_gt(hits[3], 0, "popularity hits at all");
    if (n_items > VG_QUALITY_POP)
        cr_assert_gt(not_judged, 0, "users holding the popular items are not judged");
    else
        cr_assert_eq(not_judged, 0);
    vg_quality_free(&q);
    vg_hist_free(&h);
}

Test(quality, hits_match_a_brute_force_ranking)
{
    judge_random_mirror(300, 60, 30);
}

/* Users holding most of the cached popular items are not judged; the
 * others are judged exactly. */
Test(quality, hits_when_the_user_holds_the_popular_items)
{
    judge_random_mirror(VG_QUALITY_POP + 200, 12, 3000);
}

Test(quality, unknown_users_and_passed_on_indices_are_not_judged)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 100), 0);
    add(&h, "a", "x", 1);
    add(&h, "b", "y", 1);
    vg_quality_t q;
    cr_assert_eq(vg_quality_init(&q, 1, 10), 0);
    vg_quality_popularity(&q, &h);
    int32_t a = user_idx(&h, "a"), b = user_idx(&h, "b"), y = item_idx(&h, "y");
    cr_assert_eq(vg_quality_judge(&q, &h, a, y), -1, "no list kept: not judged");
    cr_assert_eq(vg_quality_keep(&q, a, h.u[a].gen, &y, 1), 0);
    cr_assert_eq(vg_quality_judge(&q, &h, a, y), VG_Q_MODEL10 | VG_Q_MODEL20 | VG_Q_POP10 | VG_Q_POP20);
    cr_assert_eq(vg_quality_judge(&q, &h, a, -1), 0, "an item not admitted yet is a miss for both");
    cr_assert_eq(vg_quality_keep(&q, b, h.u[b].gen + 1, &y, 1), 0);
    cr_assert_eq(vg_quality_judge(&q, &h, b, y), -1, "a list of another generation is not used");
    vg_quality_drop(&q, a);
    cr_assert_eq(vg_quality_judge(&q, &h, a, y), -1, "dropped");
    vg_quality_free(&q);
    vg_hist_free(&h);
}

Test(quality, the_window_covers_the_last_events)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 100), 0);
    add(&h, "a", "x", 1);
    add(&h, "b", "y", 1);
    add(&h, "b", "z", 1);
    vg_quality_t q;
    cr_assert_eq(vg_quality_init(&q, 1, 4), 0);
    vg_quality_popularity(&q, &h);
    int32_t a = user_idx(&h, "a"), y = item_idx(&h, "y"), z = item_idx(&h, "z");
    cr_assert(isnan(vg_quality_rate(&q, VG_Q_MODEL10)));
    cr_assert_eq(vg_quality_keep(&q, a, h.u[a].gen, &y, 1), 0);
    for (int k = 0; k < 4; k++)
        vg_quality_judge(&q, &h, a, y); /* hits */
    cr_assert_float_eq(vg_quality_rate(&q, VG_Q_MODEL10), 1.0, 1e-12);
    for (int k = 0; k < 3; k++)
        vg_quality_judge(&q, &h, a, z); /* misses for the model */
    cr_assert_float_eq(vg_quality_rate(&q, VG_Q_MODEL10), 0.25, 1e-12);
    cr_assert_eq(q.judged, 7);
    cr_assert_eq(q.hits[0], 4);
    vg_quality_free(&q);
    vg_hist_free(&h);
}
