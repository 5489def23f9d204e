/* test_core.c — the daemon's history mirror, ranking and trainer thread
 * (no Kafka, no Redis: those are in the integration tests). */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/hist.h"
#include "model/rng.h"
#include "daemon/log.h"
#include "daemon/scorer.h"
#include "daemon/trainer.h"
#include "tests/support/tmpdir.h"

static void add(vg_hist_t *h, const char *u, const char *i, double ts, int expect)
{
    vg_hist_wrlock(h);
    int rc = vg_hist_add(h, u, strlen(u), i, strlen(i), ts, NULL);
    vg_hist_unlock(h);
    cr_assert_eq(rc, expect, "add(%s, %s, %g) = %d", u, i, ts, rc);
}

static int has(vg_hist_t *h, const char *u, const char *i, double *ts)
{
    int32_t ui = vg_vocab_find(&h->users, u, strlen(u)), ii = vg_vocab_find(&h->items, i, strlen(i));
    if (ui < 0 || ii < 0)
        return 0;
    for (int k = 0; k < h->u[ui].n; k++)
        if (h->u[ui].e[k].item == ii) {
            if (ts)
                *ts = h->u[ui].e[k].ts;
            return 1;
        }
    return 0;
}

Test(hist, keeps_the_latest_ts_and_caps_like_redis)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 3), 0);
    add(&h, "u", "b", 10, 1);
    add(&h, "u", "b", 5, 0); /* ZADD GT: an older ts changes nothing */
    double ts;
    cr_assert(has(&h, "u", "b", &ts) && ts == 10);
    add(&h, "u", "b", 12, 0);
    cr_assert(has(&h, "u", "b", &ts) && ts == 12);
    add(&h, "u", "c", 7, 1);
    add(&h, "u", "a", 7, 1);
    /* a fourth item evicts the lowest (ts, member): "a" at 7 before "c" at 7 */
    add(&h, "u", "d", 20, 1);
    cr_assert(!has(&h, "u", "a", NULL));
    cr_assert(has(&h, "u", "c", NULL) && has(&h, "u", "b", NULL) && has(&h, "u", "d", NULL));
    cr_assert_eq(h.pop[vg_vocab_find(&h.items, "a", 1)], 0);
    cr_assert_eq(h.entries, 3);
    /* an item older than everything kept goes in and out at once */
    add(&h, "u", "e", 1, 1);
    cr_assert(!has(&h, "u", "e", NULL));
    cr_assert_eq(h.u[0].n, 3);
    vg_hist_free(&h);
}

static int apply(vg_hist_t *h, const char *item, double ts, int removal)
{
    return vg_hist_apply(h, "u", 1, item, strlen(item), ts, removal, NULL);
}

/* The ordered script's rules (cache/write.c): between an interaction and a
 * removal of one item the later ts wins, whatever the order of arrival. */
Test(hist, removals_are_ordered_by_ts)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 3), 0);
    cr_assert_eq(apply(&h, "a", 90, 0), 1);
    cr_assert_eq(apply(&h, "a", 100, 1), 1, "a removal newer than the click takes the item out");
    cr_assert(!has(&h, "u", "a", NULL));
    cr_assert_eq(h.pop[vg_vocab_find(&h.items, "a", 1)], 0);
    cr_assert_eq(h.entries, 0);
    cr_assert_eq(apply(&h, "a", 95, 0), 0, "a click older than the removal, arriving later, is refused");
    cr_assert_eq(apply(&h, "a", 100, 0), 0, "on a tie the removal wins");
    cr_assert(!has(&h, "u", "a", NULL));
    cr_assert_eq(apply(&h, "a", 110, 0), 1, "a newer click brings it back");
    double ts;
    cr_assert(has(&h, "u", "a", &ts) && ts == 110);
    cr_assert_eq(apply(&h, "a", 105, 1), 0, "an older removal changes nothing in the history");
    cr_assert(has(&h, "u", "a", NULL));
    cr_assert_eq(apply(&h, "b", 50, 1), 0, "removing an item never held");
    cr_assert_eq(apply(&h, "b", 40, 0), 0);
    cr_assert_eq(h.u[0].rm_n, 2);
    /* removals are capped like the history: the lowest (ts, member) goes */
    apply(&h, "c", 60, 1);
    apply(&h, "d", 70, 1);
    cr_assert_eq(h.u[0].rm_n, 3);
    cr_assert_eq(apply(&h, "b", 45, 0), 1, "b's removal (the oldest) was evicted by the cap");
    /* start-up: removals read back from Redis */
    vg_hist_t g;
    cr_assert_eq(vg_hist_init(&g, 3), 0);
    cr_assert_eq(vg_hist_load_removal(&g, "u", 1, "a", 1, 100), 0);
    cr_assert_eq(vg_hist_apply(&g, "u", 1, "a", 1, 99, 0, NULL), 0);
    cr_assert_eq(vg_hist_apply(&g, "u", 1, "a", 1, 101, 0, NULL), 1);
    vg_hist_free(&g);
    vg_hist_free(&h);
}

/* A forgotten user leaves nothing: history, removals, popularity, the id in
 * the vocabulary and the recent ring; the id coming back starts afresh. */
Test(hist, forget_leaves_nothing)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 10), 0);
    add(&h, "gone", "a", 1, 1);
    add(&h, "gone", "b", 2, 1);
    add(&h, "stay", "a", 3, 1);
    cr_assert_eq(vg_hist_apply(&h, "gone", 4, "c", 1, 5, 1, NULL), 0);
    cr_assert_eq(vg_hist_forget(&h, "gone", 4), 0);
    cr_assert_eq(vg_hist_forget(&h, "gone", 4), -1, "unknown now");
    cr_assert_eq(vg_vocab_find(&h.users, "gone", 4), -1);
    cr_assert_str_eq(vg_vocab_id(&h.users, 0), "");
    cr_assert_eq(h.u[0].n + h.u[0].rm_n, 0);
    cr_assert_eq(h.pop[vg_vocab_find(&h.items, "a", 1)], 1);
    cr_assert_eq(h.pop[vg_vocab_find(&h.items, "b", 1)], 0);
    cr_assert_eq(h.entries, 1);
    for (uint64_t k = 0; k < h.recent_total; k++)
        cr_assert_neq(h.recent[k], 0, "the ring does not name the user");
    int32_t u;
    uint32_t gen = h.u[0].gen;
    cr_assert_eq(vg_hist_apply(&h, "gone", 4, "c", 1, 1, 0, &u), 1, "its removals went too");
    cr_assert_eq(u, 0, "the freed index is reused");
    cr_assert_neq(h.u[u].gen, gen, "under another generation");
    cr_assert_eq(h.u[u].n, 1, "afresh");
    vg_hist_free(&h);
}

/* history.max_users: the least recently active users leave memory, their
 * indices are reused under a new generation, and a user new to memory after
 * that is read back (VG_HIST_RELOAD; its events wait for the read-back). */
Test(hist, the_least_recently_active_users_leave_memory)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 10, .max_users = 3}), 0);
    add(&h, "a", "i1", 1, 1);
    add(&h, "b", "i1", 2, 1);
    add(&h, "c", "i2", 3, 1);
    add(&h, "a", "i2", 4, 1); /* a is active again: b is now the oldest */
    add(&h, "d", "i3", 5, 1); /* no eviction happened before: a new user is simply new */
    int32_t gone[8];
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_evict(&h, gone, 8), 1);
    vg_hist_unlock(&h);
    cr_assert_eq(gone[0], vg_vocab_find(&h.users, "a", 1) + 1, "b (index 1) left");
    cr_assert_eq(vg_vocab_find(&h.users, "b", 1), -1);
    cr_assert_eq(h.live_users, 3);
    cr_assert_eq(h.pop[vg_vocab_find(&h.items, "i1", 2)], 1, "its popularity went with it");
    cr_assert_eq(h.entries, 4);
    uint32_t gen = h.u[1].gen;
    /* b returns: it must be read back from Redis, and takes a free index */
    int32_t ui;
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_apply(&h, "b", 1, "i4", 2, 6, 0, &ui), VG_HIST_RELOAD);
    cr_assert_eq(ui, 1, "the freed index is reused");
    cr_assert_neq(h.u[ui].gen, gen);
    cr_assert(h.u[ui].loading);
    cr_assert_eq(vg_hist_apply(&h, "b", 1, "i5", 2, 7, 0, NULL), 0, "events wait for the read-back");
    cr_assert_eq(h.u[ui].n, 0);
    const char *items[] = {"i1", "i4", "i5"};
    size_t lens[] = {2, 2, 2};
    double ts[] = {2, 6, 7};
    cr_assert_eq(vg_hist_reload(&h, ui, 0, items, lens, ts, 3), 0);
    vg_hist_reload_done(&h, ui);
    cr_assert_eq(vg_hist_evict(&h, gone, 8), 1, "c, the oldest, makes room");
    vg_hist_unlock(&h);
    cr_assert(!h.u[ui].loading);
    cr_assert_eq(h.u[ui].n, 3, "the whole history is back");
    cr_assert(has(&h, "b", "i1", NULL) && has(&h, "b", "i5", NULL));
    cr_assert_eq(vg_vocab_find(&h.users, "c", 1), -1);
    cr_assert_eq(h.users.n, 4, "indices: as many as users held at once, plus one");
    vg_hist_free(&h);
}

/* The leader's vocabulary is global: an item its snapshot names enters the
 * mirror at once, a waiting one with its sightings; a full catalogue
 * refuses with -1. */
Test(hist, items_a_leader_knows_are_adopted)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 10, .min_item_users = 3,
                                                              .catalogue_max = 3}),
                 0);
    add(&h, "a", "x", 1, 0);
    add(&h, "b", "x", 2, 0);
    cr_assert_eq(h.items.n, 0, "x waits for a third user");
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_adopt_item(&h, "x", 1), 0);
    cr_assert_eq(vg_hist_adopt_item(&h, "x", 1), 0, "known: the same index");
    cr_assert_eq(vg_hist_adopt_item(&h, "new", 3), 1, "nobody saw it here: enters without history");
    vg_hist_unlock(&h);
    cr_assert(has(&h, "a", "x", NULL) && has(&h, "b", "x", NULL), "the sightings became entries");
    cr_assert_eq(h.pop[0], 2);
    cr_assert_eq(h.pop[1], 0);
    cr_assert_eq(vg_vocab_find(&h.pend, "x", 1), -1, "x waits no more");
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_adopt_item(&h, "y", 1), 2);
    cr_assert_eq(vg_hist_adopt_item(&h, "z", 1), -1, "the catalogue is full");
    vg_hist_unlock(&h);
    vg_hist_free(&h);
}

/* model.min_item_users and model.max_items: an item enters after enough
 * distinct users saw it (their sightings become entries), while there is
 * room; the waiting list is bounded. */
Test(hist, items_enter_after_enough_users_and_while_there_is_room)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 10, .min_item_users = 2,
                                                              .catalogue_max = 2, .max_pending = 3}),
                 0);
    add(&h, "a", "x", 1, 0);
    add(&h, "a", "x", 2, 0); /* the same user twice is one sighting */
    cr_assert_eq(h.items.n, 0, "one user: x waits");
    cr_assert_eq(h.entries, 0);
    add(&h, "b", "x", 3, 1);
    cr_assert_eq(h.items.n, 1, "two users: x enters");
    double ts;
    cr_assert(has(&h, "a", "x", &ts) && ts == 2, "a's sighting became an entry (latest ts)");
    cr_assert(has(&h, "b", "x", NULL));
    cr_assert_eq(h.pop[0], 2);
    /* a removal takes a sighting back */
    add(&h, "a", "y", 4, 0);
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_apply(&h, "a", 1, "y", 1, 5, 1, NULL), 0);
    vg_hist_unlock(&h);
    add(&h, "b", "y", 6, 0);
    cr_assert_eq(h.items.n, 1, "a took its click on y back: one user left");
    add(&h, "c", "y", 7, 1);
    cr_assert_eq(h.items.n, 2);
    cr_assert(!has(&h, "a", "y", NULL) && has(&h, "b", "y", NULL));
    /* the catalogue is full: z waits however many users see it */
    add(&h, "a", "z", 8, 0);
    add(&h, "b", "z", 9, 0);
    add(&h, "c", "z", 10, 0);
    cr_assert_eq(h.items.n, 2, "full: nothing enters, nothing is evicted");
    /* at most 3 items wait: the oldest waiting one makes room */
    add(&h, "a", "w1", 11, 0);
    add(&h, "a", "w2", 12, 0);
    add(&h, "a", "w3", 13, 0);
    cr_assert_eq(h.pend.n - h.pend.n_free, 3);
    cr_assert_eq(vg_vocab_find(&h.pend, "z", 1), -1, "z, the oldest, was dropped");
    cr_assert_eq(h.pend_dropped, 1);
    vg_hist_free(&h);
}

/* The waiting list's bound counts items that wait, not slots of items long
 * admitted; one user counts once whatever index it holds; a removal older
 * than the click it would take back leaves it (the ordered script's rule). */
Test(hist, waiting_items_are_counted_right)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = 10, .max_users = 2, .min_item_users = 2,
                                                              .max_pending = 2}),
                 0);
    add(&h, "a", "x", 1, 0); /* x waits at the head */
    for (int k = 0; k < 6; k++) { /* items that enter at once keep no waiting slot */
        char it[8];
        snprintf(it, sizeof it, "y%d", k);
        add(&h, "a", it, 2, 0);
        add(&h, "b", it, 3, 1);
    }
    cr_assert_neq(vg_vocab_find(&h.pend, "x", 1), -1, "x still waits: only one item waited at a time");
    cr_assert_eq(h.pend_dropped, 0);
    /* "a" leaves memory and comes back under another index: still one user for x */
    add(&h, "c", "z1", 4, 0);
    int32_t gone[4];
    vg_hist_wrlock(&h);
    while (vg_hist_evict(&h, gone, 4))
        ;
    int32_t ui;
    cr_assert_eq(vg_hist_apply(&h, "a", 1, "x", 1, 5, 0, &ui), VG_HIST_RELOAD);
    const char *items[] = {"x"};
    size_t lens[] = {1};
    double ts[] = {5};
    cr_assert_eq(vg_hist_reload(&h, ui, 0, items, lens, ts, 1), 0);
    vg_hist_reload_done(&h, ui);
    vg_hist_unlock(&h);
    cr_assert_eq(vg_vocab_find(&h.items, "x", 1), -1, "a read back is not a second user");
    /* an older removal does not take back a later click */
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_apply(&h, "a", 1, "x", 1, 4.5, 1, NULL), 0);
    vg_hist_unlock(&h);
    add(&h, "b", "x", 6, 1);
    cr_assert_neq(vg_vocab_find(&h.items, "x", 1), -1, "a's click still counts: x enters with b");
    cr_assert(has(&h, "a", "x", NULL));
    vg_hist_free(&h);
}

/* Items i0..i9 with popularity 10..1; user "x" holds i0 and i3. */
static void popular(vg_hist_t *h)
{
    cr_assert_eq(vg_hist_init(h, 100), 0);
    char u[16], it[16];
    for (int i = 0; i < 10; i++)
        for (int k = 0; k < 10 - i; k++) {
            snprintf(u, sizeof u, "p%d", k);
            snprintf(it, sizeof it, "i%d", i);
            add(h, u, it, 1, 1);
        }
    add(h, "x", "i0", 1, 1);
    add(h, "x", "i3", 1, 1);
}

/* ---- the trim bound (hist.h, vg_hist_send) against a model of Redis ---- */

#define TB_MAX 10    /* history.max_items */
#define TB_USERS 6   /* ids t0..t5, at most 3 in memory */
#define TB_ITEMS 40  /* half of them rare: one user each, so they wait for admission */
#define TB_JOBS 4    /* jobs in flight at most */

typedef struct tb_ev {
    int user, item;
    double ts;
    int32_t hidx;
    uint32_t hgen;
    uint8_t counted, trim, ok;
} tb_ev_t;

typedef struct tb_job { /* a batch of events, or a read-back of user `ruser` at index reload (>= 0) */
    int n, reload, ruser;
    uint32_t rgen;
    tb_ev_t ev[5];
    int rn, ritem[64]; /* the read-back's answer, taken when Redis ran it */
    double rts[64];
} tb_job_t;

static int tb_n[TB_USERS], tb_item[TB_USERS][64];
static double tb_ts[TB_USERS][64];

static void tb_zadd(int u, int item, double ts) /* ZADD GT */
{
    for (int k = 0; k < tb_n[u]; k++)
        if (tb_item[u][k] == item) {
            if (ts > tb_ts[u][k])
                tb_ts[u][k] = ts;
            return;
        }
    tb_item[u][tb_n[u]] = item;
    tb_ts[u][tb_n[u]++] = ts;
}

static void tb_trim(int u) /* ZREMRANGEBYRANK 0 -(max+1): the lowest ts go (all ts differ) */
{
    while (tb_n[u] > TB_MAX) {
        int lo = 0;
        for (int k = 1; k < tb_n[u]; k++)
            lo = tb_ts[u][k] < tb_ts[u][lo] ? k : lo;
        tb_n[u]--;
        tb_item[u][lo] = tb_item[u][tb_n[u]];
        tb_ts[u][lo] = tb_ts[u][tb_n[u]];
    }
}

static void tb_name(char *b, size_t n, const char *pre, int k) { snprintf(b, n, "%s%d", pre, k); }

/* Redis runs a job when it is sent (it runs them in order; the answer
 * comes later): ZADDs, then each user trimmed when any event said so. */
static void tb_run(tb_job_t *j)
{
    if (j->reload >= 0) {
        j->rn = tb_n[j->ruser];
        memcpy(j->ritem, tb_item[j->ruser], sizeof j->ritem);
        memcpy(j->rts, tb_ts[j->ruser], sizeof j->rts);
        return;
    }
    for (int k = 0; k < j->n; k++)
        tb_zadd(j->ev[k].user, j->ev[k].item, j->ev[k].ts);
    for (int k = 0; k < j->n; k++)
        if (j->ev[k].trim)
            tb_trim(j->ev[k].user);
    for (int k = 0; k < j->n; k++)
        cr_assert_leq(tb_n[j->ev[k].user], TB_MAX, "t%d holds %d members in Redis", j->ev[k].user,
                      tb_n[j->ev[k].user]);
}

/* The pipeline's on_batch_done / on_reload_done for the job at the head. */
static void tb_ack(vg_hist_t *h, tb_job_t *j, tb_job_t *queue, int *nq)
{
    char u[16], it[16];
    vg_hist_wrlock(h);
    if (j->reload >= 0) {
        if (h->u[j->reload].gen == j->rgen) {
            const char *items[64];
            size_t lens[64];
            char names[64][16];
            for (int k = 0; k < j->rn; k++) {
                tb_name(names[k], sizeof names[k], "i", j->ritem[k]);
                items[k] = names[k];
                lens[k] = strlen(names[k]);
            }
            cr_assert_eq(vg_hist_reload(h, j->reload, 0, items, lens, j->rts, (size_t)j->rn), 0);
            vg_hist_reload_done(h, j->reload);
        }
        vg_hist_unlock(h);
        return;
    }
    for (int k = 0; k < j->n; k++) {
        tb_ev_t *e = &j->ev[k];
        tb_name(u, sizeof u, "t", e->user);
        tb_name(it, sizeof it, "i", e->item);
        int32_t ui = -1;
        int r = e->ok ? vg_hist_apply(h, u, strlen(u), it, strlen(it), e->ts, 0, &ui) : 0;
        cr_assert_geq(r, 0);
        if (r == VG_HIST_RELOAD) { /* the read-back goes to the end of the queue */
            queue[*nq] = (tb_job_t){.reload = ui, .ruser = e->user, .rgen = h->u[ui].gen};
            tb_run(&queue[(*nq)++]);
        }
    }
    for (int k = 0; k < j->n; k++) {
        tb_name(u, sizeof u, "t", j->ev[k].user);
        vg_hist_acked(h, u, strlen(u), j->ev[k].hidx, j->ev[k].hgen, j->ev[k].counted, j->ev[k].ok, j->ev[k].trim);
    }
    vg_hist_acked_batch(h);
    int32_t gone[8];
    vg_hist_evict(h, gone, 8);
    vg_hist_unlock(h);
}

/* Random batches of 1-5 events with up to 4 jobs in flight, users evicted
 * and read back, rare items waiting for admission, events the store calls
 * failed although Redis has them: after every job Redis holds at most
 * max_items per user, and the trims are not all sent.  TB_SEED=n in the
 * environment runs another seed (500 were run by hand). */
Test(hist, the_trim_bound_holds_against_redis)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init_limits(&h, &(vg_hist_limits_t){.max_items = TB_MAX, .max_users = 3, .min_item_users = 2}),
                 0);
    vg_rng_t r;
    vg_rng_seed(&r, getenv("TB_SEED") ? strtoull(getenv("TB_SEED"), NULL, 10) : 7);
    static tb_job_t queue[20000];
    int head = 0, nq = 0, trims = 0, sends = 0;
    double ts = 1;
    for (int round = 0; round < 3000; round++) {
        if (nq - head < TB_JOBS && vg_rng_below(&r, 3)) {
            tb_job_t *j = &queue[nq++];
            *j = (tb_job_t){.n = 1 + (int)vg_rng_below(&r, 5), .reload = -1};
            for (int k = 0; k < j->n; k++) {
                tb_ev_t *e = &j->ev[k];
                int user = (int)vg_rng_below(&r, TB_USERS), rare = vg_rng_below(&r, 4) == 0;
                *e = (tb_ev_t){.user = user, .ts = ts++, .ok = vg_rng_below(&r, 50) != 0,
                               .item = rare ? TB_ITEMS / 2 + user * 100 + (int)vg_rng_below(&r, TB_ITEMS / 2)
                                            : (int)vg_rng_below(&r, TB_ITEMS / 2)};
                char u[16];
                tb_name(u, sizeof u, "t", user);
                e->trim = (uint8_t)vg_hist_send(&h, u, strlen(u), &e->hidx, &e->hgen, &e->counted);
                trims += e->trim;
                sends++;
            }
            vg_hist_sent_batch(&h);
            tb_run(j);
        } else if (head < nq) {
            tb_ack(&h, &queue[head++], queue, &nq);
        }
        cr_assert_lt(nq, 20000);
    }
    while (head < nq)
        tb_ack(&h, &queue[head++], queue, &nq);
    cr_log_info("trim bound: %d of %d events trimmed", trims, sends);
    cr_assert_lt(trims, sends, "every event was trimmed: the bound never helps");
    for (int u = 0; u < h.users.n; u++)
        if (u < h.u_cap && h.u[u].live)
            cr_assert_eq(h.u[u].inflight, 0, "user %d: %d events still counted in flight", u, h.u[u].inflight);
    vg_hist_free(&h);
}

Test(rank, popularity_without_a_model_excludes_history)
{
    vg_hist_t h;
    popular(&h);
    int32_t x = vg_vocab_find(&h.users, "x", 1);
    vg_list_t l;
    cr_assert_eq(vg_rank_users(&h, NULL, NULL, &x, 1, 5, &l), 0);
    cr_assert_eq(l.n, 5);
    const char *want[] = {"i1", "i2", "i4", "i5", "i6"};
    for (int k = 0; k < 5; k++)
        cr_assert_str_eq(vg_vocab_id(&h.items, l.items[k]), want[k]);
    vg_list_free(&l);
    /* asking for more than there is: items - history */
    cr_assert_eq(vg_rank_users(&h, NULL, NULL, &x, 1, 100, &l), 0);
    cr_assert_eq(l.n, 8);
    vg_list_free(&l);
    vg_hist_free(&h);
}

/* A follower ranks by the leader's popularity (the trailer of its
 * snapshot, hist.h) where the leader counted an item, by its own where
 * not; the trailer comes off the model's bytes whole. */
Test(rank, a_followers_popularity_is_the_leaders)
{
    vg_hist_t h;
    popular(&h);
    size_t cap = 5, len = 5;
    void *buf = malloc(cap);
    memcpy(buf, "model", 5);
    cr_assert_eq(vg_hist_pop_append(&h, h.items.n, &buf, &cap, &len), 0);
    cr_assert_eq(len, 5 + 8 * (size_t)(h.items.n + 2));
    int64_t *counts;
    int n;
    size_t model = len;
    cr_assert_eq(vg_hist_pop_split(buf, &model, &counts, &n), 0);
    cr_assert_eq(model, 5, "the model's bytes");
    cr_assert_eq(n, h.items.n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(counts[i], h.pop[i]);
    free(counts);
    model = 5;
    cr_assert_eq(vg_hist_pop_split(buf, &model, &counts, &n), 0);
    cr_assert_null(counts, "no trailer: none");
    cr_assert_eq(model, 5);
    ((unsigned char *)buf)[len - 16] = 0xff; /* a count beyond the buffer */
    model = len;
    cr_assert_eq(vg_hist_pop_split(buf, &model, &counts, &n), VG_EINVAL);
    free(buf);

    int64_t *g = malloc(10 * sizeof *g); /* the leader: item i<k> held by k users, i8 unknown there */
    for (int i = 0; i < 10; i++)
        g[vg_vocab_find(&h.items, (char[]){'i', (char)('0' + i), 0}, 2)] = i == 8 ? -1 : i;
    vg_hist_wrlock(&h);
    vg_hist_set_leader_pop(&h, g, 10);
    vg_hist_unlock(&h);
    int32_t x = vg_vocab_find(&h.users, "x", 1);
    vg_list_t l;
    cr_assert_eq(vg_rank_users(&h, NULL, NULL, &x, 1, 5, &l), 0);
    const char *want[] = {"i9", "i7", "i6", "i5", "i4"};
    for (int k = 0; k < 5; k++)
        cr_assert_str_eq(vg_vocab_id(&h.items, l.items[k]), want[k]);
    vg_list_free(&l);
    vg_hist_free(&h);
}

/* Several daemons (hist.shared): a user is owned while its partition's
 * slot is on; vg_hist_pull reads back a user new to memory, or one whose
 * latest event is newer than the mirror's (emptied first, so that Redis'
 * history replaces it), unless owned and trusted (the tail; a warm-up
 * trusts no one); vg_hist_drop lets a user go. */
Test(hist, pull_and_drop_for_several_daemons)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 10), 0);
    add(&h, "a", "x", 5, 1);
    h.shared = 1;
    int32_t ui;
    vg_hist_wrlock(&h);
    cr_assert_eq(vg_hist_pull(&h, "a", 1, 5, 1, &ui), 0, "as recent as Redis");
    cr_assert_eq(vg_hist_pull(&h, "a", 1, 9, 1, &ui), VG_HIST_RELOAD, "moved on elsewhere");
    cr_assert(h.u[ui].loading);
    cr_assert_eq(h.u[ui].n, 0, "emptied: the read-back replaces it whole");
    cr_assert_eq(h.pop[0], 0);
    cr_assert_eq(h.entries, 0);
    const char *its[] = {"x"};
    size_t lens[] = {1};
    double ts[] = {5};
    cr_assert_eq(vg_hist_reload(&h, ui, 0, its, lens, ts, 1), 0); /* Redis' history: x only */
    cr_assert_eq(h.u[ui].n, 1);
    cr_assert_eq(h.pop[0], 1);
    vg_hist_reload_done(&h, ui);
    h.u[ui].part = 3;
    cr_assert_not(vg_hist_owned(&h, ui), "slot 2 is not assigned here");
    h.part_on[2] = 1;
    cr_assert(vg_hist_owned(&h, ui));
    cr_assert_eq(vg_hist_pull(&h, "a", 1, 99, 1, &ui), 0, "owned: its events come here");
    cr_assert_eq(vg_hist_pull(&h, "a", 1, 5, 0, &ui), 0, "a warm-up: as recent as Redis");
    cr_assert_eq(vg_hist_pull(&h, "a", 1, 99, 0, &ui), VG_HIST_RELOAD, "a warm-up trusts no one");
    vg_hist_reload(&h, ui, 0, its, lens, ts, 1);
    vg_hist_reload_done(&h, ui);
    int32_t b;
    cr_assert_eq(vg_hist_pull(&h, "b", 1, 1, 1, &b), VG_HIST_RELOAD, "new to memory");
    cr_assert_eq(vg_hist_drop(&h, b), 0, "being read back: stays");
    vg_hist_reload_done(&h, b);
    cr_assert_eq(vg_hist_drop(&h, b), 1);
    cr_assert_eq(vg_hist_drop(&h, ui), 1);
    cr_assert_eq(h.live_users, 0);
    cr_assert_eq(h.pop[0], 0, "its popularity went with it");
    cr_assert_eq(h.evicted, 0, "dropped, not evicted");
    vg_hist_unlock(&h);
    add(&h, "a", "y", 7, VG_HIST_RELOAD); /* shared: back from Redis first */
    vg_hist_free(&h);
}

/* A fresh avb+d+c model of n items, H = 8. */
static void tiny_model(vg_model_t *m, int n)
{
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = 8;
    c.latent = 4;
    c.disc_hidden = 4;
    cr_assert_eq(vg_model_init(m, &c, n, 4), 0);
}

Test(rank, model_items_first_then_newer_items_by_popularity)
{
    vg_hist_t h;
    popular(&h);
    vg_model_t m;
    tiny_model(&m, 6); /* the model knows i0..i5 only */
    vg_snap_t *s = vg_snap_new(&m, VG_KERNEL_AUTO);
    cr_assert_not_null(s);
    int32_t x = vg_vocab_find(&h.users, "x", 1);
    vg_list_t l;
    vg_ranker_t *r = vg_ranker_new();
    cr_assert_eq(vg_rank_users(&h, s, r, &x, 1, 7, &l), 0);
    vg_ranker_free(r);
    cr_assert_eq(l.n, 7);
    for (int k = 0; k < 4; k++) /* the model's 4 non-history items first */
        cr_assert(l.items[k] < 6 && l.items[k] != 0 && l.items[k] != 3);
    cr_assert_str_eq(vg_vocab_id(&h.items, l.items[4]), "i6");
    cr_assert_str_eq(vg_vocab_id(&h.items, l.items[5]), "i7");
    cr_assert_str_eq(vg_vocab_id(&h.items, l.items[6]), "i8");
    for (int k = 1; k < 7; k++)
        cr_assert(l.scores[k] <= l.scores[k - 1], "scores descend");
    vg_list_free(&l);
    vg_snap_unref(s);
    vg_model_close(&m);
    vg_hist_free(&h);
}

/* A leader's model numbers items its own way: its items enter the mirror
 * (a new one too), its rows are put in the mirror's order, and the lists
 * rank its items first, the mirror's other items after them by popularity,
 * the history excluded. */
Test(rank, a_leader_model_in_the_mirror_order)
{
    vg_hist_t h;
    popular(&h);
    vg_model_t m;
    tiny_model(&m, 4);
    const char *ids[] = {"i9", "new", "i2", "i0"};
    for (int j = 0; j < 4; j++)
        cr_assert_eq(vg_vocab_add(&m.vocab, ids[j], strlen(ids[j]), NULL), j);
    int32_t *from;
    int n;
    cr_assert_eq(vg_snap_map(&h, &m, &from, &n), 0);
    cr_assert_eq(n, 11, "'new' entered the mirror");
    int32_t fresh = vg_vocab_find(&h.items, "new", 3);
    cr_assert_eq(fresh, 10);
    for (int i = 0; i < n; i++) {
        int want = i == 9 ? 0 : i == 10 ? 1 : i == 2 ? 2 : i == 0 ? 3 : -1;
        cr_assert_eq(from[i], want, "mirror item %d", i);
    }
    vg_snap_t *s = vg_snap_mapped(&m, from, n, VG_KERNEL_AUTO);
    cr_assert_not_null(s);
    free(from);
    int32_t x = vg_vocab_find(&h.users, "x", 1);
    vg_list_t l;
    vg_ranker_t *r = vg_ranker_new();
    cr_assert_eq(vg_rank_users(&h, s, r, &x, 1, 8, &l), 0);
    vg_ranker_free(r);
    cr_assert_eq(l.n, 8);
    for (int k = 0; k < 3; k++) /* the model's items but the history's i0 */
        cr_assert(l.items[k] == 9 || l.items[k] == 10 || l.items[k] == 2, "item %d", l.items[k]);
    const char *then[] = {"i1", "i4", "i5", "i6", "i7"};
    for (int k = 0; k < 5; k++)
        cr_assert_str_eq(vg_vocab_id(&h.items, l.items[3 + k]), then[k]);
    vg_list_free(&l);
    vg_snap_unref(s);
    vg_model_close(&m);
    vg_hist_free(&h);
}

typedef struct rounds {
    atomic_int n;
    atomic_llong step;
    _Atomic double alpha;
} rounds_t;

static void on_round(void *ud, vg_snap_t *snap, const vg_train_info_t *info)
{
    rounds_t *r = ud;
    cr_assert_not_null(snap);
    cr_assert_eq(snap->m.step, info->step);
    cr_assert_eq(snap->m.n_items, info->items);
    atomic_store(&r->step, info->step);
    atomic_store(&r->alpha, info->alpha);
    atomic_fetch_add(&r->n, 1);
    vg_snap_unref(snap);
}

static void run_trainer(vg_hist_t *h, vg_model_t *start, const char *path, rounds_t *r, int until_rounds)
{
    vg_trainer_cfg_t tc = {
        .hist = h, .batch = 16, .steps_per_round = 3, .interval_ms = 10, .min_new_events = 1,
        .recent_fraction = 0.5, .state_path = path, .checkpoint_interval_s = 3600, .on_round = on_round, .ud = r,
    };
    vg_model_cfg_default(&tc.model, VG_VARIANT_AVB_D_C);
    tc.model.hidden = 16;
    tc.model.latent = 8;
    tc.model.disc_hidden = 8;
    tc.model.anneal_steps = 100;
    vg_trainer_t *t;
    cr_assert_eq(vg_trainer_start(&t, &tc, start), 0);
    for (int k = 0; k < 500 && atomic_load(&r->n) < until_rounds; k++) {
        vg_trainer_events(t, 1);
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    char err[256];
    cr_assert_eq(vg_trainer_stop(t, err, sizeof err), 0, "%s", err);
    cr_assert_geq(atomic_load(&r->n), until_rounds);
}

Test(trainer, rounds_grow_the_catalogue_and_the_state_resumes, .init = vg_tmpdir_make, .fini = vg_tmpdir_remove)
{
    vg_log_open(NULL, VG_LOG_WARN);
    vg_hist_t h;
    popular(&h);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.ckpt", vg_tmpdir);
    rounds_t r = {0};
    run_trainer(&h, NULL, path, &r, 3);
    long long t1 = atomic_load(&r.step);
    double a1 = atomic_load(&r.alpha);
    cr_assert_gt(t1, 0);
    cr_assert_gt(a1, 0);

    /* a new item appears; the restarted trainer continues from the saved step and grows */
    add(&h, "x", "brand-new", 2, 1);
    vg_model_t m;
    char err[256];
    cr_assert_eq(vg_model_load(&m, path, NULL, 16, err, sizeof err), 0, "%s", err);
    cr_assert_geq(m.step, t1);
    cr_assert_eq(m.vocab.n, 10);
    rounds_t r2 = {0};
    run_trainer(&h, &m, path, &r2, 2);
    cr_assert_gt(atomic_load(&r2.step), t1);
    cr_assert_geq(atomic_load(&r2.alpha), a1);
    cr_assert_eq(vg_model_load(&m, path, NULL, 16, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.n_items, 11);
    cr_assert_str_eq(vg_vocab_id(&m.vocab, 10), "brand-new");
    vg_model_close(&m);
    vg_hist_free(&h);
}

/* ---- the scorer: the first model reaches every list ---------------------------- */

typedef struct seen_lists {
    int n_pop, n_model; /* users with a list by popularity / with the model */
    uint8_t pop[64];    /* per user: a popularity list arrived */
    uint8_t model[64];  /* per user: a list with the model arrived */
    vg_scorer_t *sc;
} seen_lists_t;

static void count_lists(void *ud, const vg_list_t *lists, int n)
{
    seen_lists_t *s = ud;
    for (int k = 0; k < n; k++) {
        if (lists[k].n == 0) /* nothing to recommend: says nothing */
            continue;
        /* popularity scores are user counts (integers); the model's are not */
        int pop = lists[k].scores[0] == (double)(long long)lists[k].scores[0];
        if (pop && lists[k].user < 64 && !s->pop[lists[k].user]) { /* a user may be ranked twice meanwhile */
            s->pop[lists[k].user] = 1;
            s->n_pop++;
        }
        if (!pop && lists[k].user < 64 && !s->model[lists[k].user]) {
            s->model[lists[k].user] = 1;
            s->n_model++;
        }
    }
    vg_scorer_release(s->sc, n);
}

static void run_until_lists(uv_loop_t *loop, const int *counter, int want)
{
    /* the scorer thread's lists arrive through uv_async; the cap is only a
     * safety net far above the few milliseconds this takes */
    for (int i = 0; i < 30000 && *counter < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
}

Test(scorer, the_first_model_replaces_popularity_lists_at_once)
{
    vg_hist_t h;
    popular(&h);
    int users = 0; /* users with something to recommend (p0 holds every item) */
    for (int u = 0; u < h.users.n; u++)
        users += h.u[u].n < h.items.n;
    uv_loop_t loop;
    uv_loop_init(&loop);
    seen_lists_t s = {0};
    vg_scorer_cfg_t cfg = {.hist = &h, .top_n = 3, .batch = 4, .refresh_s = 3600, .max_outstanding = 1000,
                           .on_lists = count_lists, .ud = &s};
    cr_assert_eq(vg_scorer_start(&s.sc, &loop, &cfg), 0);
    vg_scorer_mark_all(s.sc);
    run_until_lists(&loop, &s.n_pop, users);
    cr_assert_eq(s.n_pop, users, "every user gets a popularity list first: %d of %d", s.n_pop, users);
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = 8, c.latent = 4, c.disc_hidden = 4;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, h.items.n, 4), 0);
    m.step = 1;
    vg_scorer_set_model(s.sc, vg_snap_new(&m, VG_KERNEL_AUTO));
    run_until_lists(&loop, &s.n_model, users);
    cr_assert_eq(s.n_model, users, "refresh_s (1 h) does not hold back lists built without a model");
    vg_scorer_stop(s.sc);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    vg_model_close(&m);
    vg_hist_free(&h);
}

/* ---- the scorer: several threads, lists in order ------------------------------- */

enum { BURST_USERS = 5000 };

typedef struct burst {
    vg_scorer_t *sc;
    uint64_t last[BURST_USERS]; /* the version of the user's newest delivered list */
    int backwards, delivered;
} burst_t;

static void burst_lists(void *ud, const vg_list_t *lists, int n)
{
    burst_t *b = ud;
    for (int k = 0; k < n; k++) {
        const vg_list_t *l = &lists[k];
        if (l->ver < b->last[l->user])
            b->backwards++;
        b->last[l->user] = l->ver;
        b->delivered++;
    }
    vg_scorer_release(b->sc, n);
}

/* Every user is up to date: its newest delivered list has its latest version. */
static int all_current(burst_t *b)
{
    for (int u = 0; u < BURST_USERS; u++)
        if (b->last[u] != vg_scorer_version(b->sc, u))
            return 0;
    return 1;
}

/* 5,000 users click, then 1,000 of them click again while the first lists
 * are being ranked on two threads: no user's lists go backwards, and every
 * user ends with a list of its latest history. */
Test(scorer, parallel_lists_never_go_backwards, .timeout = 300)
{
    vg_hist_t h;
    cr_assert_eq(vg_hist_init(&h, 100), 0);
    char u[16], it[16];
    for (int k = 0; k < BURST_USERS; k++) {
        snprintf(u, sizeof u, "u%d", k);
        snprintf(it, sizeof it, "i%d", k % 300);
        add(&h, u, it, 1, 1);
    }
    vg_model_cfg_t c;
    vg_model_cfg_default(&c, VG_VARIANT_AVB_D_C);
    c.hidden = 32, c.latent = 8, c.disc_hidden = 8;
    vg_model_t m;
    cr_assert_eq(vg_model_init(&m, &c, h.items.n, 4), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    burst_t *b = calloc(1, sizeof *b);
    vg_scorer_cfg_t cfg = {.hist = &h, .top_n = 10, .batch = 64, .refresh_s = 3600, .max_outstanding = 100000,
                           .threads = 2, .initial = vg_snap_new(&m, VG_KERNEL_AUTO), .on_lists = burst_lists, .ud = b};
    cr_assert_eq(vg_scorer_start(&b->sc, &loop, &cfg), 0);
    for (int k = 0; k < BURST_USERS; k++)
        vg_scorer_mark(b->sc, k);
    for (int k = 0; k < BURST_USERS; k += 5) { /* the second clicks, while the first lists come */
        snprintf(u, sizeof u, "u%d", k);
        snprintf(it, sizeof it, "i%d", (k + 7) % 300);
        add(&h, u, it, 2, 1);
        vg_scorer_mark(b->sc, k);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    while (!all_current(b)) /* the lists arrive through uv_async: wait for them, however long it takes */
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(b->backwards, 0, "%d lists older than one delivered before", b->backwards);
    cr_assert_geq(b->delivered, BURST_USERS);
    vg_scorer_stop(b->sc);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    vg_model_close(&m);
    vg_hist_free(&h);
    free(b);
}
