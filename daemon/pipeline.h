/*
 * pipeline.h — the write path that streaming (daemon.c) and backfill
 * (replay.c) share: a batch of events -> Redis histories -> the mirror ->
 * scorer marks and trainer news -> Kafka offsets; list writes; the
 * publication of a model; and the set-up and tear-down of what both modes
 * run on (the loop, the mirror, the model state, the store, signals,
 * metrics).
 *
 * Life of an event (the delivery guarantee, docs/architecture.md):
 *   a mode fills a vg_batch_t and hands it over with vg_pipe_send() ->
 *   vg_store_add_events (hist:<user>, vaegan:users) -> Redis acknowledged the
 *   batch -> each event applied to the mirror, changed users marked for
 *   scoring, the trainer told, the offsets marked done (vg_kafka_done stores
 *   them up to the contiguous low-water mark).
 * An event Redis refused with a data error (WRONGTYPE on its user's
 * history, ...; store.h) is dead-lettered with the error as reason when
 * kafka.dlq_topic is set — done when the broker acknowledged the copy —
 * else logged (rate-limited) and skipped; counted either way in
 * vaegan_events_failed_total{reason}.  The batch's other events go on as
 * above.  A refusal of the whole server stops the mode (exit
 * VG_EXIT_REDIS_REFUSED) with nothing more marked done.
 * Events handed over and not yet acknowledged are bounded by
 * kafka.max_pending: above it, and whenever Redis is away, the consumer (if
 * any) is paused.
 *
 * Everything here runs on the loop thread.  The optional parts — kafka,
 * scorer, trainer — are set by streaming mode and stay NULL in replay.
 */
#ifndef VG_DAEMON_PIPELINE_H
#define VG_DAEMON_PIPELINE_H

#include <limits.h>
#include <uv.h>

#include "cache/store.h"
#include "daemon/config.h"
#include "daemon/forget.h"
#include "daemon/hist.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/monitor.h"
#include "daemon/own.h"
#include "daemon/rank.h"
#include "daemon/scorer.h"
#include "daemon/trainer.h"
#include "stream/event.h"
#include "stream/kafka.h"

#define VG_BATCH_MAX 1024 /* events per Redis batch */

/* One valid event on its way to Redis, and where it came from (topic and
 * partition -1 for replay, whose offset is the event's index in the file). */
typedef struct vg_pipe_event {
    int32_t topic, partition; /* topic: the consumer's topic id (vg_kafka_msg_t.topic_id) */
    int64_t offset;
    double ts;
    uint8_t user_len, item_len;
    uint8_t removal;          /* a removal type (events.removal_types), else an interaction */
    uint8_t counted, trim;    /* the trim decision at send (vg_hist_send) and the user's incarnation then */
    int32_t hidx;
    uint32_t hgen;
    int16_t slot;             /* its partition's slot when several daemons share the work (own.h), else -1 */
    char user[VG_ID_MAX + 1], item[VG_ID_MAX + 1];
    char type[VG_TYPE_MAX + 1]; /* as read ("" when the mode does not keep it: replay) */
} vg_pipe_event_t;

typedef struct vg_batch {
    struct vg_pipe *p; /* set by vg_pipe_send */
    size_t n;
    vg_pipe_event_t ev[VG_BATCH_MAX];
} vg_batch_t;

/* Where an event came from. */
typedef struct vg_event_origin {
    int32_t topic, partition;
    int64_t offset;
} vg_event_origin_t;

/* Appends one event to b (b->n < VG_BATCH_MAX; ids are valid: 1..VG_ID_MAX
 * bytes; type NULL or at most VG_TYPE_MAX bytes).  Returns 1 when the batch
 * is now full. */
int vg_batch_push(vg_batch_t *b, const char *user, size_t user_len, const char *item, size_t item_len, double ts,
                  const char *type, int removal, vg_event_origin_t from);

/* The exit status when Redis refuses us for good (store.h, "a refusal":
 * not ours to write — a Redis Cluster, ACLs, a replica that stays one):
 * EX_NOPERM.  Nothing after the refusal is committed. */
#define VG_EXIT_REDIS_REFUSED 77

typedef struct vg_pipe {
    const vg_config_t *cfg;
    uv_loop_t loop;
    vg_hist_t hist;
    vg_store_t *store;
    vg_kafka_t *kafka;       /* streaming: offsets marked done, paused under back-pressure */
    vg_scorer_t *scorer;     /* streaming: users marked after each batch, lists released */
    vg_trainer_t *trainer;   /* streaming: told of new events */
    vg_forget_t forget;      /* erasure marks (forget.h) */
    int forget_open;
    vg_model_t model;        /* the loaded state, until the trainer (or replay) takes it */
    int have_model;
    char state_path[PATH_MAX];
    int lock_fd;             /* state.dir's lock (checkpoint.h), -1 = none */

    size_t pending_events;   /* handed to the store, not yet acknowledged */
    size_t pending_lists;    /* rec:<user> writes not yet acknowledged */
    uint64_t lists;          /* rec:<user> writes done */
    int loop_open, redis_up, loaded, paused, stopping, exit_code;
    int redis_refused;       /* the store refused us for good (on_fatal): nothing more completes */
    uint64_t failed_events;  /* events Redis refused (dead-lettered or skipped) */
    vg_ratelimit_t failed_rl;
    vg_metric_family_t failed; /* vaegan_events_failed_total{reason} */
    double stop_started;
    /* The mode's reaction to SIGTERM/SIGINT, called once after stopping is
     * set (NULL: the loop is stopped). */
    void (*on_stop)(struct vg_pipe *p);

    vg_monitor_t *monitor;   /* streaming: lag, ages, live quality (monitor.h); NULL = none */
    vg_own_t own;            /* read-backs; with several daemons, the users owned here (own.h) */

    uv_signal_t sig_term, sig_int, sig_hup;
    vg_metrics_t *metrics;
    vg_metric_t *m_events, *m_stored, *m_invalid, *m_lists, *m_lists_stale, *m_key_mismatch, *m_pending, *m_users, *m_items, *m_step, *m_alpha,
        *m_redis_up, *m_paused, *m_latency, *m_dlq, *m_removals, *m_forgets, *m_refused, *m_evicted, *m_reloaded,
        *m_waiting;
    /* The start-up load's progress (daemon/progress.h), set only while
     * vg_pipe_wait_loaded runs it (it lives on that call's stack). */
    struct vg_progress *load_progress;
} vg_pipe_t;

/* Sets up p (zeroed by the caller): the mirror, the model state
 * (checkpoint.h; reset = --reset-model), metrics and their endpoint, the
 * loop, the Redis store and the signal handlers.  Returns 0 or a VG_E* code
 * (logged); call vg_pipe_close() either way. */
int vg_pipe_open(vg_pipe_t *p, const vg_config_t *cfg, int reset);
/* Runs the loop until Redis is up and every history is in the mirror
 * (histories 0: only the erasure marks are read — with several daemons,
 * own.h warms the mirror instead).  Returns 0, VG_EAGAIN when a signal
 * stopped it, or VG_EREDIS. */
int vg_pipe_wait_loaded(vg_pipe_t *p, int histories);
/* Hands b (malloc'd; the pipeline frees it) to the store. */
void vg_pipe_send(vg_pipe_t *p, vg_batch_t *b);
/* What an event's type means (events.types, events.removal_types). */
enum { VG_KIND_OTHER = -1, VG_KIND_INTERACTION = 0, VG_KIND_REMOVAL = 1 };
int vg_pipe_event_kind(const vg_pipe_t *p, const char *type);

/* The erasure of a user (an event of type "forget" at ts, forget.h): the
 * mark is remembered at once (so later events of the user up to ts are
 * refused, vg_pipe_refuses), the store erases the user's keys after every
 * earlier write (FIFO), and on Redis' acknowledgement the mirror forgets the
 * user, the scorer drops its queued work and the offset is marked done. */
void vg_pipe_forget(vg_pipe_t *p, const char *user, size_t user_len, double ts, vg_event_origin_t from);
/* 1 when an event (user, ts) is older than the user's erasure: counted in
 * vaegan_events_forgotten_total; the caller marks it done and drops it. */
int vg_pipe_refuses(vg_pipe_t *p, const char *user, size_t user_len, double ts);

/* Queues rec:<user> writes for lists[0..n); with release, each finished
 * write releases one list to the scorer. */
void vg_pipe_put_lists(vg_pipe_t *p, const vg_list_t *lists, int n, int release);
/* Writes vaegan:model (fenced by epoch when > 0: cache/store.h) and the
 * model gauges. */
void vg_pipe_publish_model(vg_pipe_t *p, const vg_train_info_t *info, uint64_t epoch);
/* Pauses or resumes the consumer for Redis' state and the pending events. */
void vg_pipe_update_flow(vg_pipe_t *p);
/* Starts a stop, as SIGTERM does (sig 0: logged by the caller). */
void vg_pipe_stop(vg_pipe_t *p, int sig);
/* Stops the trainer (it saves the state; logged either way), if one runs.
 * Returns 0 or the save's error. */
int vg_pipe_stop_trainer(vg_pipe_t *p);
/* Gives written lists a moment, stops the trainer and the scorer, closes the
 * store and the pipeline's handles and runs the loop to its end, frees
 * everything.  The mode closes its own handles first. */
void vg_pipe_close(vg_pipe_t *p);

#endif
