/*
 * leader.h — which of the vaegand sharing one consumer group trains: the
 * election of the leader by Kafka's group coordinator, and its fencing
 * epoch from Redis (cache/shared.h).
 *
 * The leader is the member that holds partition 0 of a one-partition
 * control topic in a consumer group of its own (<group>.leader): librdkafka
 * has no pluggable assignor, so the coordinator's assignment of that one
 * partition is the election.  Nothing is produced to the control topic;
 * the election consumer reads nothing from it but its assignment.
 *
 * States: following -> (partition 0 assigned) taking -> (INCR of the epoch
 * counter answered) leading(epoch) -> (revoked, lost, or vg_leader_fenced)
 * following.  on_change fires on each entry into and exit from leading.  A
 * failed INCR is retried every second while the partition stays assigned.
 * A member told it is fenced (Redis refused its epoch: another member took
 * a newer one) stops leading at once and does not take a new epoch until
 * its partition is assigned anew — a member that was stopped past its
 * session timeout learns so from librdkafka (lost) and rejoins as a
 * follower, and must not fence the member that now holds the partition.
 *
 * Everything runs on the loop's thread.
 */
#ifndef VG_DAEMON_LEADER_H
#define VG_DAEMON_LEADER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache/store.h"
#include "common/log.h"

typedef struct vg_leader vg_leader_t;

typedef struct vg_leader_cfg {
    const char *brokers;        /* required */
    const char *group;          /* the daemons' group: the election's is <group>.leader */
    const char *control_topic;  /* required: one partition (more: partition 0 decides) */
    const char *const *options; /* n_options librdkafka name/value pairs, as vg_kafka_cfg_t's */
    size_t n_options;
    vg_store_t *store;          /* where the epoch counter lives; outlives the leader */
    /* leading 1: this member now leads with epoch (a new one each time);
     * leading 0: it stopped (epoch: the one it had).  May be NULL. */
    void (*on_change)(void *ud, int leading, uint64_t epoch);
    vg_log_fn log;
    void *ud;
} vg_leader_cfg_t;

/* Joins the election (cfg's strings are copied).  Returns 0, or the
 * VG_E* of vg_kafka_init with err saying why. */
int vg_leader_init(vg_leader_t **out, uv_loop_t *loop, const vg_leader_cfg_t *cfg, char *err, size_t errlen);

/* 1 and *epoch (may be NULL) while leading, else 0. */
int vg_leader_leading(const vg_leader_t *l, uint64_t *epoch);

/* Redis refused epoch (VG_EFENCED from cache/shared.h): if it is the
 * current one, stop leading (above). */
void vg_leader_fenced(vg_leader_t *l, uint64_t epoch);

/* Leaves the election (the partition goes to another member at once) and
 * frees l once its handles closed (the caller runs the loop).  No
 * on_change follows.  NULL is ok. */
void vg_leader_close(vg_leader_t *l);

#endif
