/*
 * hist.h — the daemon's in-memory mirror of the Redis histories.
 *
 * The mirror holds, for every user, the same (item, ts) set as hist:<user>
 * in Redis, the user and item vocabularies (id text <-> dense index, in
 * order of first sight), how many users hold each item (the popularity
 * ranking served before a model exists; a follower of a leader ranks by
 * the leader's counts, gpop) and a ring of recently active users (the
 * trainer's "recent" draws).
 *
 * With several daemons (shared, daemon/own.h) the mirror holds a subset of
 * the users: those of the partitions assigned here (and, on the leader,
 * every user the tail brought); every user new to it is read back whole
 * from Redis before its events apply, and every history write trims.
 *
 * Why it is consistent with Redis: it is filled from Redis at start
 * (vg_store_load) and afterwards changed only by vg_hist_add() calls made when
 * Redis acknowledged the very same writes, in the order they were sent.
 * vg_hist_add() applies Redis' own rules: ZADD GT keeps the latest ts of an
 * item, and the cap removes the lowest-ranked members (lowest ts, ties by
 * binary member order) exactly as ZREMRANGEBYRANK 0 -(max+1) does.  When
 * removal types exist it also mirrors rm:<user> and applies the ordered
 * script's rules (vg_hist_apply).
 *
 * Threads: one writer (the loop thread) and any number of readers (scorer,
 * trainer).  Writers call vg_hist_add() between vg_hist_wrlock() and
 * vg_hist_unlock(); readers use vg_hist_rdlock() and copy what they need
 * (vg_hist_rows), holding the lock for microseconds.  The writer may read
 * without the lock (it is the only one changing anything).
 */
#ifndef VG_HIST_H
#define VG_HIST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "model/csr.h"
#include "model/vocab.h"

typedef struct vg_hist_entry {
    int32_t item;
    double ts;
} vg_hist_entry_t;

typedef struct vg_hist_user {
    vg_hist_entry_t *e;  /* unordered */
    int n, cap;
    vg_hist_entry_t *rm; /* rm:<user>: removed items with their removal ts (unordered) */
    int rm_n, rm_cap;
    int32_t older, newer; /* the activity list (least recently active at h->oldest); -1 = its end */
    uint32_t gen;         /* changes whenever the index passes to another user (eviction, erasure) */
    uint8_t live;         /* the index holds a user now */
    uint8_t loading;      /* being read back from Redis (vg_hist_reload): not to be scored yet */
    /* the trim bound (vg_hist_send): ZCARD hist:<user> <= n + extra + inflight while the batches sent before
     * the index held this user (up to trust_seq) are all acknowledged */
    int extra;            /* members of hist:<user> the mirror does not hold (items waiting for admission) */
    int inflight;         /* events counted by vg_hist_send, not yet acknowledged */
    uint64_t trust_seq;   /* h->sent_seq when the index took this user */
    uint16_t part;        /* several daemons (h->shared): 1 + the partition slot of the user's latest applied
                             event (daemon/own.h), 0 = none */
} vg_hist_user_t;

#define VG_HIST_RECENT 65536 /* ring of recently active users */
#define VG_HIST_ADMIT_MAX 16  /* the largest model.min_item_users */
#define VG_HIST_PARTS 1024    /* partition slots (vg_hist_user_t.part) */

/* An item seen by fewer than min_item_users distinct users (or waiting for
 * room in the catalogue): not in the mirror's vocabulary, only in Redis;
 * who clicked it when, to add it to their mirrored histories on admission. */
typedef struct vg_hist_pending {
    int n;
    uint32_t self_gen; /* changes whenever the pending index passes to another item */
    int32_t user[VG_HIST_ADMIT_MAX]; /* the user's index and generation at its latest sighting */
    uint32_t gen[VG_HIST_ADMIT_MAX];
    uint64_t who[VG_HIST_ADMIT_MAX]; /* a hash of the user's id: distinct users are distinct ids */
    double ts[VG_HIST_ADMIT_MAX];
} vg_hist_pending_t;

/* The bounds of the mirror (vg_hist_init).  0 = no bound. */
typedef struct vg_hist_limits {
    int max_items;      /* history.max_items: items kept per user (>= 1) */
    int max_users;      /* history.max_users: users kept in memory; the least recently active go */
    int catalogue_max;  /* model.max_items: items admitted at most; later ones wait */
    int min_item_users; /* model.min_item_users: distinct users before an item is admitted (1..16) */
    int max_pending;    /* items waiting for admission; the oldest are dropped beyond it */
} vg_hist_limits_t;

typedef struct vg_hist {
    pthread_rwlock_t lock;
    vg_hist_limits_t lim;
    int max_items;          /* = lim.max_items */
    vg_vocab_t users, items;
    vg_hist_user_t *u;      /* users.n of them (capacity u_cap) */
    int u_cap;
    int64_t *pop;           /* pop[i] = users holding item i (capacity pop_cap) */
    int pop_cap;
    int64_t *gpop;          /* several daemons, on a follower: the leader's counts of items 0..gpop_n-1 from
                               its last snapshot (-1 = the leader has none), which vg_hist_pop prefers */
    int gpop_n;
    uint64_t entries;       /* total (user, item) entries */
    int32_t recent[VG_HIST_RECENT]; /* user indices; -1 = a forgotten user */
    uint64_t recent_total;  /* users appended to the ring so far */
    /* users in memory: the activity list and what left it */
    int live_users;
    int32_t oldest, newest;
    uint64_t evicted;       /* users evicted from memory so far (their Redis data stays) */
    uint64_t unsure;        /* events of users not in memory that Redis refused yet may hold: as after
                               evictions, a user new to memory is read back */
    int bulk;               /* 1 while the start-up load fills the mirror: no read-backs */
    int shared;             /* 1: other daemons write the histories too (kafka.control_topic): every user new
                               to memory is read back, and a user is owned only while the slot of its
                               partition is assigned here (part_on) */
    uint8_t part_on[VG_HIST_PARTS]; /* 1 = the partition of the slot is assigned to this daemon */
    /* items not admitted yet */
    vg_vocab_t pend;        /* reuse = 1 */
    vg_hist_pending_t *pd;  /* pend.n of them */
    int pd_cap;
    int32_t *pend_fifo;     /* pending indices in order of arrival (ring of lim.max_pending) */
    uint32_t *pend_fifo_gen;
    int pend_head, pend_len;
    uint64_t pend_dropped;  /* pending items dropped for room */
    uint64_t sent_seq, acked_seq; /* history batches sent, and acknowledged (FIFO), so far (vg_hist_send) */
} vg_hist_t;

/* What vg_hist_apply says of an event beside "changed" (1) / "not" (0). */
#define VG_HIST_RELOAD 2 /* the user was not in memory: read the history back (vg_hist_reload) */

/* A mirror with the given bounds (0 fields: none; min_item_users clamped to
 * 1..VG_HIST_ADMIT_MAX; max_pending 0 = 100000).  Returns 0 or VG_ENOMEM. */
int vg_hist_init_limits(vg_hist_t *h, const vg_hist_limits_t *lim);
/* The same with history.max_items only (no other bound). */
int vg_hist_init(vg_hist_t *h, int max_items);
void vg_hist_free(vg_hist_t *h);

/* FNV-1a of an id's bytes: the same user whatever index it holds (a user
 * read back, a sighting of a pending item, the live-quality sample). */
uint64_t vg_hist_id_hash(const char *id, size_t len);

static inline void vg_hist_rdlock(vg_hist_t *h) { pthread_rwlock_rdlock(&h->lock); }
static inline void vg_hist_wrlock(vg_hist_t *h) { pthread_rwlock_wrlock(&h->lock); }
static inline void vg_hist_unlock(vg_hist_t *h) { pthread_rwlock_unlock(&h->lock); }

/* The write path's trim decision (loop thread; no lock needed: readers
 * never look at these fields).  Redis trims hist:<user> to history.max_items
 * after each write (ZREMRANGEBYRANK); the mirror can tell when that is
 * needless: for a user it holds, ZCARD <= n + extra + inflight, with
 * `extra` counting sightings of items waiting for admission (Redis has
 * them, the mirror does not) and `inflight` the user's events sent and not
 * yet acknowledged.  The bound is unknown for a user not in memory, being
 * read back, or whose index was taken while batches sent before were in
 * flight (until they are acknowledged).
 *
 * Whatever leaves the count uncertain (an event Redis may hold although
 * the store reported it failed, a read-back that failed, out of memory while
 * applying) sets `extra` to max_items (vg_hist_unsure): the next write
 * trims, and a trimmed write acknowledged makes the bound exact again
 * (extra = at most max_items - n).  Assumed: Redis holds no history of a
 * user the mirror does not know of unless users were evicted (then returning
 * users are read back) — true while this daemon is the only writer and the
 * start-up load read every user of vaegan:users.
 *
 * vg_hist_send(): one event about to be sent; returns 1 when its batch must
 * trim the user's history (over the bound, or the bound unknown), else 0;
 * *ui, *gen (the incarnation) and *counted (1 = counted in `inflight`) go
 * with the event to its acknowledgement.  vg_hist_sent_batch() after each
 * batch is submitted.  vg_hist_acked() per event of an acknowledged batch
 * (write lock, after vg_hist_apply of the batch's events): ok = Redis
 * stored it, trimmed = its batch trimmed the user.  vg_hist_acked_batch()
 * once per batch, in order. */
int vg_hist_send(vg_hist_t *h, const char *user, size_t user_len, int32_t *ui, uint32_t *gen, uint8_t *counted);
void vg_hist_sent_batch(vg_hist_t *h);
void vg_hist_acked(vg_hist_t *h, const char *user, size_t user_len, int32_t ui, uint32_t gen, int counted, int ok,
                   int trimmed);
void vg_hist_acked_batch(vg_hist_t *h);
/* The user's Redis count is not known any more (see above); -1 ok (no-op). */
void vg_hist_unsure(vg_hist_t *h, int32_t ui);

/* Applies one acknowledged event (caller holds the write lock).  Ids must be
 * valid (1..128 bytes).  *user_idx (may be NULL) gets the user's index.
 * Returns 1 if the user's item set changed (a new item, or one evicted),
 * 0 if only a ts moved or nothing changed (or the item is not admitted
 * yet), VG_HIST_RELOAD when the user is new to memory after users were
 * evicted (the caller reads hist:<user> back and hands it to
 * vg_hist_reload; until then the user is `loading` and its events are not
 * applied: Redis has them), or VG_ENOMEM. */
int vg_hist_add(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                double ts, int32_t *user_idx);

/* Applies one acknowledged event of the ordered write (cache/store.h,
 * vg_store_add_events with removals): an interaction is vg_hist_add unless
 * the user's removal of the item is at least as recent; a removal records
 * (item, ts) among the user's removals (GT, capped like the history) and
 * takes the item out of the history if its ts there is <= ts.  Caller
 * holds the write lock.  Returns 1 if the user's item set changed, 0 if not,
 * or VG_ENOMEM. */
int vg_hist_apply(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                  double ts, int removal, int32_t *user_idx);

/* Records a removal read back from rm:<user> at start (the history is not
 * touched).  Caller holds the write lock.  Returns 0 or VG_ENOMEM. */
int vg_hist_load_removal(vg_hist_t *h, const char *user, size_t user_len, const char *item, size_t item_len,
                         double ts);

/* Forgets a user (erasure): the history, the removals and the popularity
 * they held go, the user's id leaves the vocabulary (its index stays, named
 * "", and is left out of the recent-users ring: -1 there), so the same id
 * coming back starts afresh at a new index.  Caller holds the write lock.
 * Returns the forgotten index, -1 when the user is not in the mirror, or
 * VG_ENOMEM. */
int32_t vg_hist_forget(vg_hist_t *h, const char *user, size_t user_len);

/* Memory bound: while more than lim.max_users users are in memory, the
 * least recently active ones leave it (their Redis data stays; a later event
 * of one is VG_HIST_RELOAD).  Their indices go to out[0..) (at most max_out;
 * the caller drops queued work for them).  Caller holds the write lock.
 * Returns how many left. */
int vg_hist_evict(vg_hist_t *h, int32_t *out, int max_out);

/* The history of a `loading` user read back from Redis: replaces whatever
 * the index holds with items[0..n) (ts[k]; removals = 1: rm:<user>).  Call
 * with removals = 0 first, then (with events.removal_types) 1, then
 * vg_hist_reload_done.  Caller holds the write lock.  Returns 0 or
 * VG_ENOMEM. */
int vg_hist_reload(vg_hist_t *h, int32_t ui, int removals, const char *const *items, const size_t *lens,
                   const double *ts, size_t n);
void vg_hist_reload_done(vg_hist_t *h, int32_t ui);

/* The popularity of item i: the leader's count when this daemon follows
 * one that counted it (gpop), else this mirror's own.  Caller holds a
 * lock. */
static inline int64_t vg_hist_pop(const vg_hist_t *h, int32_t i)
{
    return i < h->gpop_n && h->gpop[i] >= 0 ? h->gpop[i] : h->pop[i];
}

/* Popularity travels with a leader's snapshot as a trailer after the
 * model's bytes: n little-endian int64 counts (items 0..n-1 of the
 * leader's mirror = its model's rows), n as int64, then "VGPOPUL1".
 * vg_hist_pop_append adds it for items 0..n-1 (n <= items.n; caller holds
 * a lock) to the buffer (*buf, *cap grown as needed, *len the bytes in
 * use).  vg_hist_pop_split finds it at the end of data[0..*len): *len
 * becomes the model's part and *counts (malloc'ed, *n of them) the
 * counts; without a trailer *counts is NULL and *len unchanged.  Both
 * return 0, VG_ENOMEM or (split) VG_EINVAL for a malformed trailer.
 * vg_hist_set_leader_pop takes counts (n, in this mirror's item order;
 * may be NULL) as gpop, freeing the one before (write lock held). */
int vg_hist_pop_append(const vg_hist_t *h, int n, void **buf, size_t *cap, size_t *len);
int vg_hist_pop_split(const void *data, size_t *len, int64_t **counts, int *n);
void vg_hist_set_leader_pop(vg_hist_t *h, int64_t *counts, int n);

/* Whether this daemon owns user ui (its partition is assigned here; any
 * user when not shared): the scorer's background refresh covers only
 * those.  Caller holds a lock. */
static inline int vg_hist_owned(const vg_hist_t *h, int32_t ui)
{
    return !h->shared || (h->u[ui].part && h->part_on[h->u[ui].part - 1]);
}

/* A user to bring (back) into memory from Redis, whose latest event there
 * has ts (-INFINITY: unknown): VG_HIST_RELOAD when it must be read back (it
 * is new to memory, or newer there than everything the mirror holds of it
 * and, with trust_owned, not owned: an owned user's events come here), with
 * the user `loading` (as vg_hist_add's VG_HIST_RELOAD) and its mirror
 * emptied, so that the read-back replaces it whole (items removed
 * elsewhere go); 0 when the mirror is as recent, or trusted as owned, or
 * being read back already; VG_ENOMEM.  *ui gets the index.  Caller holds
 * the write lock. */
int vg_hist_pull(vg_hist_t *h, const char *user, size_t user_len, double ts, int trust_owned, int32_t *ui);

/* User ui leaves memory (its partition went to another daemon); a user
 * being read back stays.  Returns 1 when it left, 0, or VG_ENOMEM.  Caller
 * holds the write lock. */
int vg_hist_drop(vg_hist_t *h, int32_t ui);

/* Adds an item to the vocabulary without any history (the model's saved
 * vocabulary is loaded this way so that indices stay aligned with its rows).
 * Caller holds the write lock.  Returns the index or VG_ENOMEM/VG_EINVAL. */
int32_t vg_hist_item(vg_hist_t *h, const char *item, size_t item_len);

/* An item another daemon's model knows (the leader's snapshot: the
 * vocabulary is global): its index, admitted now if it was waiting for
 * admission (its sightings become history entries, as when enough users
 * saw it), or -1 when the catalogue is full (model.max_items).  Caller
 * holds the write lock.  Returns the index, -1, or VG_ENOMEM/VG_EINVAL. */
int32_t vg_hist_adopt_item(vg_hist_t *h, const char *item, size_t item_len);

/* Copies the histories of users sel[0..n-1] into X (caller-owned, reused and
 * grown like vg_csr_gather): row k = items of sel[k] with index < cols,
 * sorted ascending.  When all_items is not NULL it receives the complete
 * rows (every item, cols = items.n) for exclusions.  Caller holds a lock.
 * Returns 0 or VG_ENOMEM. */
int vg_hist_rows(const vg_hist_t *h, const int32_t *sel, int n, int cols, vg_csr_t *X, vg_csr_t *all_items);

#endif
