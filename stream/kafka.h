/*
 * kafka.h — the Kafka consumer of vaegand, bound into a libuv loop.
 *
 * A librdkafka high-level consumer (consumer group, one rd_kafka_subscribe to
 * several topics: each a literal name or, starting with ^, a regex that also
 * matches topics created later) whose queue wakes the loop through an
 * eventfd watched by a uv_poll.  Every call here, and every callback, runs on
 * the loop's thread; nothing blocks the loop except vg_kafka_close().
 *
 * Topics: each topic name the consumer sees gets a small dense id
 * (vg_kafka_msg_t.topic_id, stable for the consumer's lifetime): the literal
 * entries of cfg->topics get 0, 1, ... in their order (a repeated name keeps
 * its first id), a topic matched by a regex gets the next free id when a
 * partition of it is first assigned.  vg_kafka_topic_name() maps an id back.
 * Everything below that is "per partition" is per (topic, partition).
 *
 * At-least-once: `enable.auto.offset.store=false`.  Each delivered message is
 * tracked until the app calls vg_kafka_done() for it (when its effect is
 * durable, e.g. Redis acknowledged the history write).  Dones may come in any
 * order; per (topic, partition) the offset stored with
 * rd_kafka_offsets_store() is the contiguous low-water mark: (last offset
 * such that it and every earlier delivered offset are done) + 1.  So a
 * committed offset never passes an undone message.
 *
 * Commits: our own uv timer every commit_interval_ms stores the new low-water
 * marks and commits them asynchronously (rd_kafka_commit(rk, NULL, async));
 * librdkafka's auto-commit is turned off (enable.auto.commit=false).  The
 * revoked partitions are committed on revoke, everything on close.  While a
 * group rebalance is under way (a commit answered REBALANCE_IN_PROGRESS, or
 * we are giving partitions up) periodic commits wait for the rebalance to
 * complete (at most 30 s): librdkafka 2.0.2 treats a commit that lands with
 * the old generation id as a lost assignment.
 *
 * Rebalancing: cooperative-sticky by default (an eager strategy given in the
 * options also works).  On revoke the revoked partitions are paused at once
 * (no further delivery from them), then the unassign is deferred until the
 * app has marked their outstanding messages done (or 10 s passed), their
 * offsets are stored and committed (the unassign waits for the commit
 * result, within the same 10 s), and only then are they unassigned — so the
 * next owner starts exactly after the last message this member finished.
 * Lost partitions (session timeout) and the final revoke inside close are
 * unassigned at once.  (With an eager strategy the revoke comes before the
 * rejoin, so a long wait can exceed the coordinator's rebalance timeout —
 * max.poll.interval.ms on Kafka, but only about session.timeout.ms on
 * librdkafka's mock, which then hands the partitions on without us.)
 *
 * Pause: vg_kafka_pause() pauses every assigned partition with
 * rd_kafka_pause_partitions() (and any partition assigned while paused).
 * librdkafka discards the messages it had already fetched for a paused
 * partition (its version barrier) and re-fetches them from the next
 * undelivered offset on resume, so nothing is buffered here while paused;
 * should a message of a paused partition still come out of the queue it is
 * held (counted in stats.held) and delivered first on resume.  No on_message
 * call happens while paused — including the rest of a batch when the app
 * pauses from inside on_message.
 *
 * Errors: a fatal error (RD_KAFKA_RESP_ERR__FATAL or an error librdkafka
 * calls fatal) is reported once through on_fatal, outside any librdkafka
 * callback, and delivery stops.  Transient errors (broker down, ...) and
 * librdkafka's own warnings are logged at warn level, at most 5 lines per
 * 10 s (then a count of the suppressed ones).
 *
 * Dead-letter topic: when dlq_topic is set a librdkafka producer (same
 * brokers and options) copies bad messages there, served by a 100 ms loop
 * timer.  Dead letters are at-least-once too: a message handed to
 * vg_kafka_dlq() is marked done by the consumer itself when the broker
 * acknowledged its copy; a failed delivery is counted, logged and re-sent.
 * They count in vg_kafka_outstanding() until then (so a revoke waits for
 * them), and vg_kafka_close() gives them VG_KAFKA_FLUSH_MS before its final
 * commit; those still unacknowledged are not committed.
 *
 * Typical use:
 *   vg_kafka_init(&k, loop, &cfg, err, sizeof err);
 *   ... uv_run(loop) — on_message(): hand the event on; later
 *       vg_kafka_done(k, m->topic_id, m->partition, m->offset) ...
 *   shutdown: vg_kafka_stop(k); wait until vg_kafka_outstanding(k) == 0
 *   (or give up); vg_kafka_close(k, err, sizeof err); uv_run(loop) to the end.
 */
#ifndef VG_KAFKA_H
#define VG_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/errors.h"
#include "common/log.h"

typedef struct vg_kafka vg_kafka_t;

/* One consumed message; every pointer is valid only during the call that
 * hands it over. */
typedef struct vg_kafka_msg {
    const char *topic;   /* its name (as vg_kafka_topic_name(k, topic_id)) */
    int32_t topic_id;    /* dense id of the topic name: 0, 1, ... (see above) */
    int32_t partition;
    int64_t offset;
    const char *key;     /* may be NULL */
    size_t key_len;
    const char *value;   /* may be NULL (empty) */
    size_t value_len;
} vg_kafka_msg_t;

typedef struct vg_kafka_cfg {
    const char *brokers, *group; /* required, non-empty */
    /* n_topics >= 1 entries, each non-empty: a literal topic name, or a
     * regex when it starts with ^ (librdkafka's syntax, e.g. "^clicks-.*");
     * all subscribed together.  The array and strings are copied. */
    const char *const *topics;
    size_t n_topics;
    const char *dlq_topic; /* NULL or "" = no dead-letter topic */
    /* n_options name/value pairs: options[2k] = librdkafka property name,
     * options[2k+1] = value; applied after our defaults, so they win
     * (except enable.auto.offset.store, which must stay false). */
    const char *const *options;
    size_t n_options;
    int commit_interval_ms; /* periodic commit of stored offsets; <= 0 = 1000 */
    /* Every message, in order within its (topic, partition).  The app calls
     * vg_kafka_done(k, m->topic_id, m->partition, m->offset) exactly once
     * for it later, when its effect is durable (it may do so inside the
     * callback).  The callback may call vg_kafka_done/pause/resume/dlq/stop
     * and vg_kafka_topic_name, never close. */
    void (*on_message)(void *ud, const vg_kafka_msg_t *m);
    /* After each assignment change (the group is joined): the number of
     * (topic, partition) pairs now assigned.  May be NULL. */
    void (*on_assigned)(void *ud, int n_partitions);
    /* A fatal consumer error: the app should exit non-zero (after
     * vg_kafka_close).  Called at most once.  May be NULL. */
    void (*on_fatal)(void *ud, const char *reason);
    /* Consumer lag (vg_kafka_lag) is measured every stats_interval_ms from
     * librdkafka's statistics (statistics.interval.ms); <= 0 = not measured.
     * on_stats (may be NULL) is called after each measurement. */
    int stats_interval_ms;
    void (*on_stats)(void *ud);
    vg_log_fn log; /* NULL = silent */
    void *ud;      /* passed to every callback and to log */
} vg_kafka_cfg_t;

typedef struct vg_kafka_stats {
    uint64_t consumed;       /* messages handed to on_message */
    uint64_t offsets_stored; /* (topic, partition) offsets stored (rd_kafka_offsets_store) */
    uint64_t commits;        /* successful commits */
    uint64_t commit_errors;  /* failed commits */
    uint64_t commit_retries; /* revoke commits refused for a passing reason and tried again */
    uint64_t rebalances;     /* rebalance events (assign, revoke, error) */
    uint64_t dlq_produced;   /* DLQ messages the broker acknowledged */
    uint64_t dlq_errors;     /* failed DLQ deliveries (each is re-sent) */
    size_t dlq_pending;      /* dead letters not yet acknowledged (also in outstanding) */
    uint64_t errors;         /* transient client errors (broker down, ...) */
    uint64_t held;           /* messages of a paused partition held for resume */
    uint64_t retried;        /* messages given back with vg_kafka_retry */
    int assigned;            /* (topic, partition) pairs assigned now (incl. ones being revoked) */
    size_t outstanding;      /* delivered, not yet done */
} vg_kafka_stats_t;

/* Creates the consumer (and the DLQ producer), subscribes to cfg->topics and
 * starts its uv handles on loop.  cfg and its strings are copied; the caller
 * keeps ownership of cfg.  On success *out belongs to the caller until
 * vg_kafka_close().  Returns 0, VG_EINVAL (a required field missing, no
 * topic or an empty one), or VG_ECONFIG for a bad option with err like
 *   kafka.option.fetch.wait.max.msx: No such configuration property: "fetch.wait.max.msx"
 * (or a combination librdkafka refuses, or a regex of cfg->topics it
 * cannot compile: "kafka: subscribe to clicks,^[: ..."), or VG_EKAFKA /
 * VG_ENOMEM; err says why.  On error nothing is left on the loop and *out
 * is untouched. */
int vg_kafka_init(vg_kafka_t **out, uv_loop_t *loop, const vg_kafka_cfg_t *cfg, char *err,
                  size_t errlen);

/* Checks cfg's librdkafka options as vg_kafka_init() would set them on the
 * consumer and on the DLQ producer (property names and values; not the
 * cross-property checks librdkafka makes when a client starts), without
 * creating a client.  Returns 0, or VG_ECONFIG with err naming the option. */
int vg_kafka_check_options(const vg_kafka_cfg_t *cfg, char *err, size_t errlen);

/* Marks the delivered message (topic_id, partition, offset) done: its
 * effect is durable.  Call exactly once per delivered message, in any order
 * (across topics too).  A done for a message this consumer does not track
 * (e.g. of a partition revoked after the 10 s timeout, or an unknown
 * topic_id) is ignored. */
void vg_kafka_done(vg_kafka_t *k, int32_t topic_id, int32_t partition, int64_t offset);

/* The name of the topic with this id (see vg_kafka_msg_t.topic_id), valid
 * until vg_kafka_close(); NULL for an id not (yet) given out. */
const char *vg_kafka_topic_name(const vg_kafka_t *k, int32_t topic_id);

/* Stops delivering: pauses every assigned partition, and any assigned later.
 * Idempotent. */
void vg_kafka_pause(vg_kafka_t *k);

/* Resumes delivery (unless stopped); messages held while paused are
 * delivered at once (on the next loop iteration).  Idempotent. */
void vg_kafka_resume(vg_kafka_t *k);

/* 1 while paused, else 0. */
int vg_kafka_paused(const vg_kafka_t *k);

/* From on_message only: gives the message being handed over back — not
 * done, never to be marked done by the app — and pauses.  It is the first
 * message delivered again after vg_kafka_resume() (the app resumes when it
 * can take it: e.g. after out of memory, with a backoff).  Counted in
 * stats.retried. */
void vg_kafka_retry(vg_kafka_t *k);

/* Copies m (key, value) into the dead-letter topic with the headers
 * vaegan-error = reason, vaegan-topic, vaegan-partition, vaegan-offset
 * (decimal text), and takes over m's vg_kafka_done(): it is marked done when
 * the broker acknowledged the copy (re-sent until then).  m (topic, topic_id,
 * partition, offset, key, value; it need not be a message on_message handed
 * over, e.g. a rebuilt event) is copied; the caller keeps it.  Returns 0
 * (taken over), VG_ENOTFOUND when no DLQ is configured or VG_ENOMEM (then
 * the caller still owns the done). */
int vg_kafka_dlq(vg_kafka_t *k, const vg_kafka_msg_t *m, const char *reason);

/* Messages delivered and not yet done. */
size_t vg_kafka_outstanding(const vg_kafka_t *k);

/* The lag of one assigned (topic, partition) at the last statistics: the
 * messages from its stored offset to its high-water mark.  The offset is
 * the one the next store hands over (the low-water mark of vg_kafka_done:
 * after the last message whose effect, and every earlier one's, is
 * durable), so it does not trail by the commit interval; before anything
 * was done, the committed offset, else the log start.  For a
 * partition not being fetched (paused, stopped, being revoked) the mark
 * comes from the leader (rd_kafka_query_watermark_offsets, on a thread of
 * its own), so the lag keeps growing while a backlog builds up.  lag = -1:
 * not known yet. */
typedef struct vg_kafka_lag {
    int32_t topic_id, partition;
    int64_t lag;
} vg_kafka_lag_t;

/* Fills out[0..min(n, max)) with the assigned partitions' lags, in topic id
 * and partition order, and returns their number n. */
int vg_kafka_lag(const vg_kafka_t *k, vg_kafka_lag_t *out, int max);

/* Copies the counters into *s. */
void vg_kafka_stats(const vg_kafka_t *k, vg_kafka_stats_t *s);

/* Shutdown step 1: never deliver another message (pauses all partitions);
 * vg_kafka_done() keeps working.  Idempotent. */
void vg_kafka_stop(vg_kafka_t *k);

/* Shutdown step 2, after the app saw vg_kafka_outstanding() reach 0 or gave
 * up: stops delivery, stores the offsets done so far, commits them
 * synchronously (at most 10 s), leaves the group (rd_kafka_consumer_close),
 * flushes the DLQ producer (at most 5 s) and closes the uv handles.  Blocks
 * the loop's thread for these steps.  Never call it from inside a callback
 * of this module.  The handles close asynchronously: the caller runs the
 * loop afterwards until it ends; k is freed in the last close callback and
 * must not be used after this call.  Returns 0, or VG_EKAFKA with the
 * reason in err (the commit failed or timed out, DLQ messages were left
 * undelivered); k is released in every case. */
int vg_kafka_close(vg_kafka_t *k, char *err, size_t errlen);

#endif
