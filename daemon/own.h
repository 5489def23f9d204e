/*
 * own.h — the users this daemon holds in memory and looks after: read back
 * from Redis when they return, and, when several daemons share the work
 * (kafka.control_topic; README "Running several vaegand"), owned by the
 * partitions assigned here.
 *
 * Ownership.  Every event names its Kafka partition's set of recent users,
 * <p>vaegan:part:<topic>:<partition> (cache/store.h; a slot here, 1 +
 * slot in vg_hist_user_t.part).  A user is owned while the partition of its
 * latest applied event is assigned to this daemon (vg_hist_owned): the
 * scorer's background refresh covers only owned users, and re-ranks any
 * user whose events it applied.  On assign, the partition's share of the
 * memory bound, its history.max_users / (partitions assigned) most recent
 * users, are read back from Redis unless the mirror is as recent (the
 * store is FIFO, so the read queues ahead of the partition's first batch;
 * a user whose events arrive meanwhile is `loading` and its read-back holds
 * them).  On revoke or loss a follower drops the partition's users (and a
 * user whose read-back was under way, once it is done), and every user it
 * does not own when it stops leading; the leader keeps them for training.
 * Every TAIL_MS the owner trims the sets of its partitions that had events
 * to their history.max_users most recent users, so they stay bounded while
 * vaegan:users grows.
 *
 * The leader's view.  The leader trains on every user's history: every
 * TAIL_MS it reads vaegan:users on from where it left off, by latest ts
 * (ZRANGEBYSCORE, pages of TAIL_PAGE per shard; after a full page the users
 * at its last ts are read whole in one command, so equal ts across a page
 * boundary lose none; vg_store_since_past), and reads back the users whose
 * history moved on beyond the mirror's (vg_hist_pull; owned ones are
 * trusted).  The cursor follows event time: a history written with events
 * older than the cursor (a replayed backlog, a partition behind the others)
 * is seen at the next read of every user, at election and every
 * SWEEP_TICKS (10 min); an event older than its own user's latest moves no
 * score and is seen with the user's next newer one.  Only what the leader
 * trains on lags so; lists are not affected.  Reading from Redis, rather
 * than tailing every partition without a group: the histories are there
 * already, capped, with removals and erasures applied; memory is bounded
 * by history.max_users either way.
 *
 * Whatever lists another daemon writes from an older history, Redis
 * refuses (the versioned rec: write of cache/write.c); ownership is how
 * the work is shared, not what keeps the lists right.
 *
 * Everything runs on the loop thread (the mirror's one writer).
 */
#ifndef VG_DAEMON_OWN_H
#define VG_DAEMON_OWN_H

#include <stdint.h>
#include <uv.h>

#include "cache/store.h"
#include "daemon/hist.h"
#include "daemon/metrics.h"
#include "stream/kafka.h"

struct vg_pipe;

typedef struct vg_own_slot {
    int32_t topic, partition; /* the consumer's topic id and the partition */
    char name[272];           /* "<topic>:<partition>" (Kafka topic names have at most 249 bytes) */
    size_t name_len;
    uint64_t added;           /* events sent to its set since its last trim */
} vg_own_slot_t;

typedef struct vg_own {
    struct vg_pipe *p;
    int on;                    /* several daemons share the work (vg_own_share) */
    int leading;
    int n_slots, last;         /* slots made so far; the last one found */
    int slots_full_logged;
    vg_own_slot_t slot[VG_HIST_PARTS];
    uv_timer_t timer;          /* TAIL_MS: the owned gauge; the leader's tail; trims of the sets */
    int timer_open, tailing;
    unsigned ticks, tail_gen;  /* timer ticks while leading; cursor resets */
    vg_store_since_t since[VG_STORE_USER_SHARDS]; /* where the tail goes on, per shard of vaegan:users */
    vg_metric_t *m_owned, *m_warmed, *m_dropped, *m_tailed;
} vg_own_t;

/* Starts sharing (after the start-up load, before consuming): the mirror
 * reads back every user new to it (others write histories too), the timer
 * runs.  Returns 0 or VG_ENOMEM. */
int vg_own_share(vg_own_t *o, struct vg_pipe *p);
/* The slot of (topic id, partition), made at first sight; -1 when all
 * VG_HIST_PARTS are taken (logged once; its users are then never owned:
 * no background refresh, and with several daemons not even their first
 * events' lists, which wait for the read-back). */
int vg_own_slot(vg_own_t *o, int32_t topic, int32_t partition);
/* The partitions assigned now (vg_kafka_lag's list, after each change):
 * new ones are warmed, gone ones dropped. */
void vg_own_assigned(vg_own_t *o, const vg_kafka_lag_t *a, int n);
/* This daemon leads (trains) or not: the tail starts, or the users it does
 * not own leave memory. */
void vg_own_lead(vg_own_t *o, int leading);
/* Closes the timer (before the loop's last run). */
void vg_own_close(vg_own_t *o);

/* A `loading` user (vg_hist_add or vg_hist_pull said VG_HIST_RELOAD): its
 * whole history is read back (after every write queued before, FIFO), then
 * it is marked for scoring if it is owned here. */
void vg_own_reload(struct vg_pipe *p, int32_t ui);
/* Users gone from memory (evicted, erased, dropped): their waiting marks and
 * kept lists go too.  Not under the mirror's lock (the scorer takes its own
 * lock before the mirror's). */
void vg_own_gone(struct vg_pipe *p, const int32_t *gone, int n);

#endif
