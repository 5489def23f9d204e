/*
 * kafka.c — the librdkafka consumer driven by a libuv loop (see kafka.h).
 *
 * Wake-up: the consumer queue (which, after rd_kafka_poll_set_consumer and
 * rd_kafka_set_log_queue, also carries rebalance, error, log and commit
 * callbacks) signals an eventfd with an 8-byte payload whenever an op lands
 * on an empty queue; a uv_poll reads the eventfd and drains the queue with
 * rd_kafka_consumer_poll(rk, 0).  At most VG_KAFKA_BATCH messages are handled
 * per wake-up; if the queue is not empty then, a uv_idle continues on the
 * next loop iteration (librdkafka writes to the eventfd again only once the
 * queue was emptied, so the idle must run until it is).  The commit timer
 * drains too: a safety net, and it keeps max.poll.interval.ms happy while
 * paused (nothing arrives then, so no wake-ups).
 *
 * Topics: k->tt (kafka_topics.h) is the table of every topic name seen —
 * the literal entries of the subscription from init on, in their order, and
 * each topic a regex matched when a partition of it is first assigned.  A
 * topic's id is its index there and never changes; ids and names stay valid
 * until the consumer is freed.  Each topic holds its vg_kpart_t array by
 * partition id.  Names come from a rebalance list's .topic and from
 * rd_kafka_topic_name(msg->rkt).
 *
 * Offset tracking: per (topic, partition) a vg_offsets_t (offsets.h: a ring
 * of the delivered offsets with a done flag, popped from the front into the
 * low-water mark `next_store`).  Invariants: k->st.outstanding = sum of
 * n_out over every (topic, partition); k->n_assigned = the number of
 * (topic, partition) with `assigned` set; a message whose offset is <=
 * last_delivered of its (topic, partition) is dropped (delivery happens at
 * most once per offset per assignment); `stored` <= next_store is what
 * rd_kafka_offsets_store() last accepted.  Pause, held messages, stored
 * offsets, commits, revokes and lost partitions all go by (topic,
 * partition) pairs; no state is kept per topic alone, so a topic's
 * partitions may be assigned, revoked and committed independently of
 * another topic's.
 *
 * Revoke: a small state machine (none -> waiting for outstanding ->
 * committing -> unassigned) over one list of revoking (topic, partition)
 * pairs, of one or several topics; one uv_timer serves both as the 10 s
 * deadline and, restarted with 0 ms, as "continue on the next loop
 * iteration" so that vg_kafka_done() never re-enters librdkafka from inside
 * an app callback's stack.
 *
 * Lag: with stats_interval_ms, librdkafka's statistics (statistics.interval.ms,
 * served by our polls like every other callback) give each partition's
 * high-water mark; the lag is counted from our own low-water mark of the
 * messages done (vg_kpart_t.o.next_store: what the next store hands over).  Partitions not being fetched get their marks from
 * the thread of kafka_lag.c, asked at one statistics and read at the next.
 *
 * Fatal errors are recorded inside librdkafka's callbacks and reported by
 * report_fatal() after the poll returned, so on_fatal never runs inside
 * librdkafka.
 *
 * Why one file: the librdkafka properties are in kafka_conf.c, the offset
 * ring in offsets.c, the topic and partition table in kafka_topics.c (none
 * of them knows struct vg_kafka); the rest stays here, over 1,000 lines, on
 * purpose: assignment, held messages, the revoke machine, the commit hold
 * and the fatal state are one state machine, changed from librdkafka's
 * callbacks, the uv callbacks and the public calls alike, and each section
 * below calls the others (a revoke stores offsets and filters held
 * messages; a done kicks the revoke).  Splitting it would put struct
 * vg_kafka in a shared header and make files call each other both ways.
 */
#include "stream/kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/ratelimit.h"
#include "stream/kafka_conf.h"
#include "stream/kafka_lag.h"
#include "stream/kafka_topics.h"
#include "stream/offsets.h"

#define VG_KAFKA_BATCH 10000        /* messages per wake-up */
#define VG_KAFKA_REVOKE_MS 10000    /* max wait for revoked partitions */
#define VG_KAFKA_CLOSE_COMMIT_MS 10000
#define VG_KAFKA_FLUSH_MS 5000
#define VG_KAFKA_DLQ_POLL_MS 100
#define VG_KAFKA_REVOKE_RETRY_MS 200 /* between tries of a refused revoke commit */
#define VG_KAFKA_HOLD_MS 30000      /* max hold of periodic commits in a rebalance */
#define VG_KAFKA_RL_WINDOW_MS 10000 /* rate limit of warnings: */
#define VG_KAFKA_RL_MAX 5           /* at most 5 lines per window */

enum { REVOKE_NONE, REVOKE_WAIT, REVOKE_COMMIT };

/* A dead letter from vg_kafka_dlq() until the broker acknowledged it: its
 * own copy of what it sends (the producer references it, flags 0), kept for
 * a re-send after a failed delivery, and the message it stands for, marked
 * done on the acknowledgement. */
typedef struct dlq_rec {
    struct dlq_rec *next; /* in k->dlq_retry while waiting for a re-send */
    int32_t topic_id, partition;
    int64_t offset;
    size_t key_len, value_len;
    const char *key; /* NULL = no key */
    const char *value, *reason, *topic;
    char part[16], off[24];
    char data[]; /* key, value, reason, topic */
} dlq_rec_t;

struct vg_kafka {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *cq; /* the consumer queue */
    rd_kafka_t *prod;     /* DLQ producer or NULL */
    int efd;
    uv_poll_t poll;
    uv_idle_t idle;
    uv_timer_t commit_timer, revoke_timer, dlq_timer;
    int handles_open;

    char *dlq_topic;
    dlq_rec_t *dlq_retry;  /* dead letters whose delivery failed: re-sent by the DLQ timer */
    int dlq_final;         /* closing: a failed or purged dead letter is dropped, not re-sent */
    int commit_interval_ms;
    void (*on_message)(void *ud, const vg_kafka_msg_t *m);
    void (*on_assigned)(void *ud, int n);
    void (*on_fatal)(void *ud, const char *reason);
    void (*on_stats)(void *ud);
    vg_log_fn log;
    void *ud;
    vg_kwm_t *wm; /* high-water marks of partitions not fetched (kafka_lag.h); NULL without statistics */

    vg_kafka_topics_t tt; /* every topic seen and its partitions (kafka_topics.h) */
    int n_assigned;       /* (topic, partition) pairs assigned */

    int paused, stopped, closing, in_drain;
    int retry_current;          /* vg_kafka_retry() was called from on_message */
    int fatal, fatal_reported;
    char fatal_reason[512];

    rd_kafka_message_t **held; /* held[held_head..held_len): fetched while paused */
    size_t held_head, held_len, held_cap;

    int revoke_state;
    int revoke_eager;           /* finish with rd_kafka_assign(NULL) */
    int revoke_answered;        /* the revoke commit's result came */
    int revoke_retry;           /* the revoke timer sends the revoke commit again */
    uint64_t revoke_deadline;   /* uv_now() limit of the whole revoke */
    rd_kafka_topic_partition_list_t *revoking;

    int dirty_commit;      /* stored something since the last commit */
    int commits_inflight;  /* periodic commits sent, not yet answered */
    uint64_t commit_hold;  /* no periodic commit before this uv_now() (rebalancing) */
    int hold_assigns;      /* assign callbacks that end the hold */
    vg_ratelimit_t rl;     /* warnings: VG_KAFKA_RL_MAX per window */

    vg_kafka_stats_t st;
};

/* ---- logging -------------------------------------------------------------- */

static void klog(vg_kafka_t *k, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_logv(k->log, k->ud, level, fmt, ap);
    va_end(ap);
}

/* Warnings about the outside world: at most VG_KAFKA_RL_MAX per window. */
static void kwarn_rl(vg_kafka_t *k, const char *fmt, ...)
{
    uint64_t suppressed;
    if (!k->log || !vg_ratelimit_ok(&k->rl, &suppressed))
        return;
    if (suppressed)
        klog(k, VG_LOG_WARN, "kafka: %llu similar warnings suppressed", (unsigned long long)suppressed);
    va_list ap;
    va_start(ap, fmt);
    vg_logv(k->log, k->ud, VG_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* "buys[0,2],views[1]" for a partition list, sorted by topic and partition
 * (truncated with "..."). */
static const char *plist(const rd_kafka_topic_partition_list_t *l, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    rd_kafka_topic_partition_list_t *s = l && l->cnt ? rd_kafka_topic_partition_list_copy(l) : NULL;
    if (!s)
        return buf;
    rd_kafka_topic_partition_list_sort(s, NULL, NULL);
    for (int i = 0; i <= s->cnt; i++) {
        const rd_kafka_topic_partition_t *e = i < s->cnt ? &s->elems[i] : NULL;
        int w;
        if (!e)
            w = snprintf(buf + n, len - n, "]");
        else if (i > 0 && !strcmp(s->elems[i - 1].topic, e->topic))
            w = snprintf(buf + n, len - n, ",%" PRId32, e->partition);
        else
            w = snprintf(buf + n, len - n, "%s%s[%" PRId32, i ? "]," : "", e->topic, e->partition);
        if (w < 0 || (size_t)w >= len - n) {
            if (len > 4)
                memcpy(buf + len - 4, "...", 4);
            break;
        }
        n += (size_t)w;
    }
    rd_kafka_topic_partition_list_destroy(s);
    return buf;
}

static void set_fatal(vg_kafka_t *k, const char *fmt, ...)
{
    if (k->fatal)
        return;
    k->fatal = 1;
    va_list ap;
    va_start(ap, fmt);
    vg_verrf(k->fatal_reason, sizeof k->fatal_reason, 0, fmt, ap);
    va_end(ap);
    klog(k, VG_LOG_ERROR, "kafka: fatal: %s", k->fatal_reason);
}

/* Called outside librdkafka's callbacks. */
static void report_fatal(vg_kafka_t *k)
{
    if (!k->fatal || k->fatal_reported || k->closing)
        return;
    k->fatal_reported = 1;
    if (k->on_fatal)
        k->on_fatal(k->ud, k->fatal_reason);
}

static void check_error_obj(vg_kafka_t *k, rd_kafka_error_t *e, const char *what)
{
    if (!e)
        return;
    if (rd_kafka_error_is_fatal(e))
        set_fatal(k, "%s: %s", what, rd_kafka_error_string(e));
    else
        klog(k, VG_LOG_ERROR, "kafka: %s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

/* ---- librdkafka callbacks (run inside a poll on the loop thread) --------- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    vg_kafka_t *k = rd_kafka_opaque(rk);
    if (!k)
        return;
    const char *who = rk == k->prod ? "kafka dlq" : "kafka";
    if (level <= 4) {
        if ((rk == k->prod && !strcmp(fac, "CONFWARN")) /* consumer-only options */
            || !strcmp(fac, "FAIL")) /* the same comes to error_cb */
            klog(k, VG_LOG_DEBUG, "%s: [%s] %s", who, fac, buf);
        else
            kwarn_rl(k, "%s: [%s] %s", who, fac, buf);
    } else {
        klog(k, level <= 6 ? VG_LOG_INFO : VG_LOG_DEBUG, "%s: [%s] %s", who, fac, buf);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    vg_kafka_t *k = opaque;
    const char *who = rk == k->prod ? "kafka dlq producer" : "kafka";
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        set_fatal(k, "%s: %s: %s", who, rd_kafka_err2name(orig), buf);
        return;
    }
    k->st.errors++;
    kwarn_rl(k, "%s: %s: %s", who, rd_kafka_err2name(err), reason);
}

/* A group rebalance is under way: a commit now could carry the old
 * generation id and make librdkafka 2.0.2 drop the whole assignment as lost
 * (ILLEGAL_GENERATION: it commits even while waiting for its JoinGroup), so
 * periodic commits wait until `assigns` assign callbacks came (the rebalance
 * completed), at most VG_KAFKA_HOLD_MS; offsets are still stored.  After our
 * own cooperative unassign librdkafka calls assign (empty) and only then
 * rejoins, so a revoke waits for two assign callbacks. */
static void hold_commits(vg_kafka_t *k, int assigns)
{
    k->commit_hold = uv_now(k->loop) + VG_KAFKA_HOLD_MS;
    if (k->hold_assigns < assigns)
        k->hold_assigns = assigns;
}

/* A commit's error: its own, or the first of a partition. */
static rd_kafka_resp_err_t commit_error(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t *offsets)
{
    for (int i = 0; !err && offsets && i < offsets->cnt; i++)
        err = offsets->elems[i].err;
    return err;
}

static void commit_result(vg_kafka_t *k, rd_kafka_resp_err_t err,
                          const rd_kafka_topic_partition_list_t *offsets, const char *what)
{
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    err = commit_error(err, offsets);
    if (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
        err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION || err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
        hold_commits(k, 1); /* until the rebalance brings its assignment */
    if (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS) { /* retried after it; no error */
        klog(k, VG_LOG_INFO, "kafka: %s commit deferred: the group is rebalancing", what);
    } else if (err) {
        k->st.commit_errors++;
        kwarn_rl(k, "kafka: %s commit failed: %s", what, rd_kafka_err2str(err));
    } else {
        k->st.commits++;
    }
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    vg_kafka_t *k = opaque;
    if (k->commits_inflight)
        k->commits_inflight--;
    commit_result(k, err, offsets, "periodic");
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        k->dirty_commit = 1; /* retry on the next tick */
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    vg_kafka_t *k = opaque;
    dlq_rec_t *r = m->_private;
    if (!m->err) {
        k->st.dlq_produced++;
        k->st.dlq_pending--;
        vg_kafka_done(k, r->topic_id, r->partition, r->offset); /* at-least-once: only now */
        free(r);
    } else if (k->dlq_final) {
        k->st.dlq_pending--; /* not done: its message is read again after the restart */
        free(r);
    } else {
        k->st.dlq_errors++;
        kwarn_rl(k, "kafka: dead-letter delivery to %s of %s[%" PRId32 "]@%" PRId64 " failed: %s; will retry",
                 k->dlq_topic, r->topic, r->partition, r->offset, rd_kafka_err2str(m->err));
        r->next = k->dlq_retry;
        k->dlq_retry = r;
    }
}

/* ---- partitions ----------------------------------------------------------- */

/* Forgets the partition's tracking (revoke, assign). */
static void part_reset(vg_kafka_t *k, vg_kpart_t *pt)
{
    vg_assert(k->st.outstanding >= pt->o.n_out);
    k->st.outstanding -= pt->o.n_out;
    vg_offsets_reset(&pt->o);
    pt->revoking = 0;
    pt->stored = pt->lag = pt->wm_hi = -1;
}

static void pause_list(vg_kafka_t *k, rd_kafka_topic_partition_list_t *l, int pause)
{
    if (!l || l->cnt == 0)
        return;
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(k->rk, l) : rd_kafka_resume_partitions(k->rk, l);
    if (e)
        klog(k, VG_LOG_WARN, "kafka: %s partitions: %s", pause ? "pausing" : "resuming",
             rd_kafka_err2str(e));
}

/* All assigned (topic, partition) pairs; with_revoking = 0 leaves out those
 * being revoked.  NULL on allocation failure. */
static rd_kafka_topic_partition_list_t *assigned_list(vg_kafka_t *k, int with_revoking)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(k->n_assigned + 1);
    for (int32_t t = 0; l && t < k->tt.n; t++)
        for (int32_t p = 0; p < k->tt.t[t].nparts; p++) {
            const vg_kpart_t *pt = &k->tt.t[t].parts[p];
            if (pt->assigned && (with_revoking || !pt->revoking))
                rd_kafka_topic_partition_list_add(l, k->tt.t[t].name, p);
        }
    return l;
}

static void pause_all(vg_kafka_t *k, int pause)
{
    rd_kafka_topic_partition_list_t *l = assigned_list(k, !pause ? 0 : 1);
    pause_list(k, l, pause);
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
}

/* Stores the low-water marks that moved, for the assigned (topic, partition)
 * pairs (only those in `only` when not NULL).  Returns the number stored. */
static int store_offsets(vg_kafka_t *k, const rd_kafka_topic_partition_list_t *only)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t t = 0; t < k->tt.n; t++)
        for (int32_t p = 0; p < k->tt.t[t].nparts; p++) {
            vg_kpart_t *pt = &k->tt.t[t].parts[p];
            const char *name = k->tt.t[t].name;
            if (!pt->assigned || pt->o.next_store < 0 || pt->o.next_store <= pt->stored)
                continue;
            if (only && !rd_kafka_topic_partition_list_find(only, name, p))
                continue;
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(l, name, p);
            e->offset = pt->o.next_store;
            e->opaque = pt; /* kept by rd_kafka_offsets_store, which sets .err in place */
        }
    int n = 0;
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(k->rk, l);
        if (e && e != RD_KAFKA_RESP_ERR__STATE && e != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
            klog(k, VG_LOG_ERROR, "kafka: storing offsets: %s", rd_kafka_err2str(e));
        for (int i = 0; i < l->cnt; i++) {
            rd_kafka_topic_partition_t *e1 = &l->elems[i];
            if (e1->err) {
                kwarn_rl(k, "kafka: storing offset %s[%" PRId32 "]@%" PRId64 ": %s", e1->topic,
                         e1->partition, e1->offset, rd_kafka_err2str(e1->err));
                continue;
            }
            ((vg_kpart_t *)e1->opaque)->stored = e1->offset;
            k->st.offsets_stored++;
            n++;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (n)
        k->dirty_commit = 1;
    return n;
}

/* ---- revoke state machine ------------------------------------------------- */

static void notify_assigned(vg_kafka_t *k)
{
    k->st.assigned = k->n_assigned;
    if (k->on_assigned && !k->closing)
        k->on_assigned(k->ud, k->n_assigned);
}

/* Drops held messages of partitions no longer deliverable. */
static void held_filter(vg_kafka_t *k)
{
    size_t j = 0;
    for (size_t i = k->held_head; i < k->held_len; i++) {
        rd_kafka_message_t *m = k->held[i];
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, rd_kafka_topic_name(m->rkt), m->partition, 0);
        if (pt && pt->assigned && !pt->revoking)
            k->held[j++] = m;
        else
            rd_kafka_message_destroy(m);
    }
    k->held_head = 0;
    k->held_len = j;
}

/* Removes the partitions in l from librdkafka's assignment and our state. */
static void unassign_now(vg_kafka_t *k, rd_kafka_topic_partition_list_t *l, int eager)
{
    char buf[512];
    if (eager) {
        rd_kafka_resp_err_t e = rd_kafka_assign(k->rk, NULL);
        if (e == RD_KAFKA_RESP_ERR__FATAL)
            set_fatal(k, "unassign: %s", rd_kafka_err2str(e));
        else if (e)
            klog(k, VG_LOG_ERROR, "kafka: unassign: %s", rd_kafka_err2str(e));
    } else {
        check_error_obj(k, rd_kafka_incremental_unassign(k->rk, l), "incremental unassign");
    }
    for (int i = 0; i < l->cnt; i++) {
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, l->elems[i].topic, l->elems[i].partition, 0);
        if (!pt || !pt->assigned)
            continue;
        if (pt->o.n_out)
            klog(k, VG_LOG_WARN,
                 "kafka: partition %s[%" PRId32 "] revoked with %zu messages not done; "
                 "the next owner redelivers them",
                 l->elems[i].topic, l->elems[i].partition, pt->o.n_out);
        part_reset(k, pt);
        pt->assigned = 0;
        k->n_assigned--;
    }
    held_filter(k);
    klog(k, VG_LOG_INFO, "kafka: revoked %d partitions [%s], %d assigned now", l->cnt,
         plist(l, buf, sizeof buf), k->n_assigned);
    notify_assigned(k);
}

static void revoke_finish(vg_kafka_t *k)
{
    rd_kafka_topic_partition_list_t *l = k->revoking;
    k->revoking = NULL;
    k->revoke_state = REVOKE_NONE;
    k->revoke_retry = 0;
    uv_timer_stop(&k->revoke_timer);
    if (l) {
        unassign_now(k, l, k->revoke_eager);
        rd_kafka_topic_partition_list_destroy(l);
    }
}


static void revoke_timer_cb(uv_timer_t *t);

/* Re-check the revoke on the next loop iteration. */
static void revoke_kick(vg_kafka_t *k)
{
    if (!k->closing)
        uv_timer_start(&k->revoke_timer, revoke_timer_cb, 0, 0);
}

/* Errors after which the revoke commit is tried again (the group or its
 * coordinator is busy or moving); any other ends it. */
static int commit_retriable(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || e == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE ||
           e == RD_KAFKA_RESP_ERR_NOT_COORDINATOR || e == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           e == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR__TRANSPORT;
}

/* The revoke commit's answer.  Refused for a passing reason, it is tried
 * again every VG_KAFKA_REVOKE_RETRY_MS until the revoke's deadline (WARN,
 * counted in commit_retries): a lost revoke commit makes the next owner
 * read again what was already done. */
static void revoke_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    vg_kafka_t *k = opaque;
    rd_kafka_resp_err_t e = commit_error(err, offsets);
    if (k->revoke_state != REVOKE_COMMIT) {
        commit_result(k, err, offsets, "revoke");
        return;
    }
    if (commit_retriable(e) && uv_now(k->loop) + VG_KAFKA_REVOKE_RETRY_MS < k->revoke_deadline) {
        k->st.commit_retries++;
        kwarn_rl(k, "kafka: revoke commit refused: %s; retrying until the revoke's deadline", rd_kafka_err2str(e));
        k->revoke_retry = 1;
        uv_timer_start(&k->revoke_timer, revoke_timer_cb, VG_KAFKA_REVOKE_RETRY_MS, 0);
        return;
    }
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        k->st.commit_errors++;
        klog(k, VG_LOG_WARN, "kafka: revoke commit failed: %s; the next owner of the partitions reads again "
             "from their last commit", rd_kafka_err2str(e));
    } else {
        commit_result(k, err, offsets, "revoke");
    }
    k->revoke_answered = 1;
    revoke_kick(k);
}

static size_t revoking_outstanding(vg_kafka_t *k)
{
    size_t n = 0;
    for (int i = 0; k->revoking && i < k->revoking->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &k->revoking->elems[i];
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, e->topic, e->partition, 0);
        if (pt && pt->assigned)
            n += pt->o.n_out;
    }
    return n;
}

/* The revoked partitions are finished (or the deadline passed): store and
 * commit their offsets; the unassign follows when the commit answered. */
static void revoke_commit(vg_kafka_t *k, int retry)
{
    store_offsets(k, k->revoking);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(k->revoking->cnt);
    for (int i = 0; i < k->revoking->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &k->revoking->elems[i];
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, e->topic, e->partition, 0);
        if (pt && pt->assigned && pt->stored >= 0)
            rd_kafka_topic_partition_list_add(l, e->topic, e->partition)->offset = pt->stored;
    }
    if (l->cnt == 0) { /* nothing consumed: nothing to commit */
        rd_kafka_topic_partition_list_destroy(l);
        revoke_finish(k);
        return;
    }
    k->revoke_state = REVOKE_COMMIT;
    k->revoke_answered = 0;
    rd_kafka_resp_err_t e = rd_kafka_commit_queue(k->rk, l, k->cq, revoke_commit_cb, k);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        k->st.commit_errors++;
        kwarn_rl(k, "kafka: revoke commit failed: %s", rd_kafka_err2str(e));
        revoke_finish(k);
        return;
    }
    uint64_t now = uv_now(k->loop);
    if (!retry && k->revoke_deadline < now + 2000) /* give the commit a moment even after the deadline */
        k->revoke_deadline = now + 2000;
    if (now >= k->revoke_deadline) {
        revoke_finish(k);
        return;
    }
    uv_timer_start(&k->revoke_timer, revoke_timer_cb, k->revoke_deadline - now, 0);
}

/* Fires when re-checking (0 ms) or at a deadline. */
static void revoke_timer_cb(uv_timer_t *t)
{
    vg_kafka_t *k = t->data;
    if (k->closing)
        return;
    uint64_t now = uv_now(k->loop);
    int expired = now >= k->revoke_deadline;
    if (k->revoke_state == REVOKE_COMMIT && k->revoke_retry) {
        k->revoke_retry = 0;
        revoke_commit(k, 1);
        return;
    }
    if (k->revoke_state == REVOKE_COMMIT) {
        if (k->revoke_answered || expired) {
            if (!k->revoke_answered)
                klog(k, VG_LOG_WARN, "kafka: revoke: no answer to the commit; unassigning");
            revoke_finish(k);
        } else { /* a kick replaced the deadline: set it again */
            uv_timer_start(&k->revoke_timer, revoke_timer_cb, k->revoke_deadline - now, 0);
        }
        return;
    }
    if (k->revoke_state != REVOKE_WAIT)
        return;
    size_t n = revoking_outstanding(k);
    if (n > 0 && !expired) {
        uv_timer_start(&k->revoke_timer, revoke_timer_cb, k->revoke_deadline - now, 0);
        return;
    }
    if (n > 0)
        klog(k, VG_LOG_WARN,
             "kafka: revoke: %zu messages still not done after %d s; committing what is done",
             n, VG_KAFKA_REVOKE_MS / 1000);
    revoke_commit(k, 0);
}

/* ---- rebalance ------------------------------------------------------------ */

static void on_assign(vg_kafka_t *k, rd_kafka_topic_partition_list_t *parts, int eager)
{
    char buf[512];
    if (eager) {
        rd_kafka_resp_err_t e = rd_kafka_assign(k->rk, parts);
        if (e == RD_KAFKA_RESP_ERR__FATAL)
            set_fatal(k, "assign: %s", rd_kafka_err2str(e));
        else if (e)
            klog(k, VG_LOG_ERROR, "kafka: assign: %s", rd_kafka_err2str(e));
    } else {
        check_error_obj(k, rd_kafka_incremental_assign(k->rk, parts), "incremental assign");
    }
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        /* a topic seen for the first time (matched by a regex) gets its id here */
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, e->topic, e->partition, 1);
        if (!pt) {
            set_fatal(k, "out of memory tracking partition %s[%" PRId32 "]", e->topic,
                      e->partition);
            continue;
        }
        part_reset(k, pt);
        if (!pt->assigned)
            k->n_assigned++;
        pt->assigned = 1;
    }
    if (k->paused || k->stopped || k->fatal)
        pause_list(k, parts, 1);
    if (k->hold_assigns > 0 && --k->hold_assigns == 0)
        k->commit_hold = 0; /* the rebalance is complete */
    klog(k, VG_LOG_INFO, "kafka: assigned %d partitions [%s]%s, %d assigned now", parts->cnt,
         plist(parts, buf, sizeof buf), k->paused ? " (paused)" : "", k->n_assigned);
    notify_assigned(k);
}

static void on_revoke(vg_kafka_t *k, rd_kafka_topic_partition_list_t *parts, int eager)
{
    char buf[512];
    int lost = rd_kafka_assignment_lost(k->rk);
    if (k->revoking) { /* should not happen: librdkafka waits for our unassign */
        klog(k, VG_LOG_WARN, "kafka: revoke while a revoke is pending; finishing that first");
        revoke_finish(k);
    }
    if (lost || k->closing || k->fatal) {
        if (lost)
            klog(k, VG_LOG_WARN, "kafka: partitions [%s] lost (session timed out?); "
                 "not committing", plist(parts, buf, sizeof buf));
        else if (!k->fatal)
            store_offsets(k, parts); /* close has committed already */
        unassign_now(k, parts, eager);
        return;
    }
    hold_commits(k, eager ? 1 : 2); /* our unassign makes us rejoin: a new generation */
    k->revoking = rd_kafka_topic_partition_list_copy(parts);
    k->revoke_eager = eager;
    k->revoke_state = REVOKE_WAIT;
    k->revoke_deadline = uv_now(k->loop) + VG_KAFKA_REVOKE_MS;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, e->topic, e->partition, 0);
        if (pt && pt->assigned)
            pt->revoking = 1;
    }
    pause_list(k, parts, 1); /* nothing more from them; queued messages are discarded */
    held_filter(k);
    size_t n = revoking_outstanding(k);
    klog(k, VG_LOG_INFO, "kafka: revoking %d partitions [%s]; %zu messages to finish first",
         parts->cnt, plist(parts, buf, sizeof buf), n);
    revoke_kick(k);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    vg_kafka_t *k = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int eager = !proto || strcmp(proto, "COOPERATIVE") != 0;
    k->st.rebalances++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(k, parts, eager);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(k, parts, eager);
    } else {
        klog(k, VG_LOG_ERROR, "kafka: rebalance failed: %s; dropping the assignment",
             rd_kafka_err2str(err));
        if (k->revoking)
            revoke_finish(k);
        rd_kafka_assign(rk, NULL);
        for (int32_t t = 0; t < k->tt.n; t++)
            for (int32_t p = 0; p < k->tt.t[t].nparts; p++) {
                vg_kpart_t *pt = &k->tt.t[t].parts[p];
                if (pt->assigned) {
                    part_reset(k, pt);
                    pt->assigned = 0;
                }
            }
        k->n_assigned = 0;
        held_filter(k);
        notify_assigned(k);
    }
}

/* ---- delivery ------------------------------------------------------------- */

static int held_push(vg_kafka_t *k, rd_kafka_message_t *m)
{
    if (k->held_len == k->held_cap && k->held_head > 0) {
        memmove(k->held, k->held + k->held_head, (k->held_len - k->held_head) * sizeof *k->held);
        k->held_len -= k->held_head;
        k->held_head = 0;
    }
    if (k->held_len == k->held_cap) {
        size_t ncap = k->held_cap ? k->held_cap * 2 : 64;
        rd_kafka_message_t **nh = realloc(k->held, ncap * sizeof *nh);
        if (!nh)
            return VG_ENOMEM;
        k->held = nh;
        k->held_cap = ncap;
    }
    k->held[k->held_len++] = m;
    k->st.held++;
    return 0;
}

/* Puts m back at the front of the held messages: delivered first on resume. */
static int held_front(vg_kafka_t *k, rd_kafka_message_t *m)
{
    if (k->held_head == 0) {
        if (held_push(k, m))
            return VG_ENOMEM;
        k->st.held--; /* not a message of a paused partition */
        memmove(k->held + 1, k->held, (k->held_len - 1) * sizeof *k->held);
        k->held[0] = m;
        return 0;
    }
    k->held[--k->held_head] = m;
    return 0;
}

/* Hands one message to the app; takes ownership of m. */
static void deliver(vg_kafka_t *k, rd_kafka_message_t *m)
{
    const char *name = rd_kafka_topic_name(m->rkt);
    int32_t tid = vg_kafka_topics_id(&k->tt, name, 0);
    vg_kpart_t *pt = vg_kafka_topics_part(&k->tt, tid, m->partition, 0);
    if (!pt || !pt->assigned || pt->revoking || m->offset <= pt->o.last_delivered) {
        klog(k, VG_LOG_DEBUG, "kafka: message %s[%" PRId32 "]@%" PRId64 " not delivered (%s)",
             name, m->partition, m->offset,
             !pt || !pt->assigned ? "not assigned" : pt->revoking ? "revoking" : "seen before");
        rd_kafka_message_destroy(m);
        return;
    }
    int64_t prev_last = pt->o.last_delivered;
    if (vg_offsets_push(&pt->o, m->offset) != 0) {
        set_fatal(k, "out of memory tracking offsets");
        rd_kafka_message_destroy(m);
        return;
    }
    k->st.outstanding++;
    k->st.consumed++;
    vg_kafka_msg_t msg = {
        .topic = k->tt.t[tid].name,
        .topic_id = tid,
        .partition = m->partition,
        .offset = m->offset,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->payload,
        .value_len = m->len,
    };
    k->retry_current = 0;
    k->on_message(k->ud, &msg);
    if (k->retry_current && held_front(k, m) == 0) { /* vg_kafka_retry: as if never delivered */
        vg_offsets_unpush(&pt->o, prev_last);
        k->st.outstanding--;
        k->st.consumed--;
        k->st.retried++;
        return;
    }
    if (k->retry_current) /* cannot keep it: it comes back after a restart (never done) */
        kwarn_rl(k, "kafka: cannot keep %s[%" PRId32 "]@%" PRId64 " for a retry (out of memory)", name,
                 m->partition, m->offset);
    rd_kafka_message_destroy(m);
}

static void handle(vg_kafka_t *k, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            char buf[256];
            if (rd_kafka_fatal_error(k->rk, buf, sizeof buf)) {
                set_fatal(k, "%s", buf);
            } else {
                k->st.errors++;
                kwarn_rl(k, "kafka: consumer: %s", rd_kafka_message_errstr(m));
            }
        }
        rd_kafka_message_destroy(m);
        return;
    }
    if (k->stopped || k->fatal) {
        rd_kafka_message_destroy(m);
        return;
    }
    if (k->paused) {
        vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, rd_kafka_topic_name(m->rkt), m->partition, 0);
        if (pt && pt->assigned && !pt->revoking && held_push(k, m) == 0)
            return;
        rd_kafka_message_destroy(m);
        return;
    }
    deliver(k, m);
}

static void idle_cb(uv_idle_t *h);

static void drain(vg_kafka_t *k)
{
    if (k->closing || k->in_drain)
        return;
    k->in_drain = 1;
    size_t n = 0;
    /* held messages first, each taken out before on_message may pause/stop */
    while (k->held_head < k->held_len && !k->paused && !k->stopped && !k->fatal &&
           n < VG_KAFKA_BATCH) {
        rd_kafka_message_t *m = k->held[k->held_head++];
        if (k->held_head == k->held_len)
            k->held_head = k->held_len = 0;
        deliver(k, m);
        n++;
    }
    int more = 0;
    while (n < VG_KAFKA_BATCH) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
        if (!m)
            break;
        n++;
        handle(k, m);
        if (n == VG_KAFKA_BATCH)
            more = 1;
    }
    if (k->held_head < k->held_len && !k->paused && !k->stopped && !k->fatal)
        more = 1;
    k->in_drain = 0;
    if (more)
        uv_idle_start(&k->idle, idle_cb);
    else
        uv_idle_stop(&k->idle);
    report_fatal(k);
}

/* ---- uv callbacks ---------------------------------------------------------- */

static void idle_cb(uv_idle_t *h)
{
    drain(h->data);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    vg_kafka_t *k = h->data;
    (void)events;
    if (status < 0) {
        kwarn_rl(k, "kafka: poll on the wake-up fd: %s", uv_strerror(status));
        return;
    }
    uint64_t v;
    while (read(k->efd, &v, sizeof v) == (ssize_t)sizeof v) /* reset the eventfd */
        ;
    drain(k);
}

static void commit_timer_cb(uv_timer_t *t)
{
    vg_kafka_t *k = t->data;
    if (k->closing)
        return;
    drain(k); /* safety net; keeps max.poll.interval.ms satisfied while paused */
    store_offsets(k, NULL);
    if (k->commit_hold && uv_now(k->loop) >= k->commit_hold) { /* hold expired */
        k->commit_hold = 0;
        k->hold_assigns = 0;
    }
    if (k->dirty_commit && !k->fatal && uv_now(k->loop) >= k->commit_hold) {
        k->dirty_commit = 0;
        k->commits_inflight++; /* until offset_commit_cb: the close commits again meanwhile */
        rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, NULL, 1);
        if (e)
            k->commits_inflight--;
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            k->st.commit_errors++;
            kwarn_rl(k, "kafka: commit: %s", rd_kafka_err2str(e));
        }
    }
}

/* Hands r to the producer; 0, or the producer's error (r not taken). */
static rd_kafka_resp_err_t dlq_produce(vg_kafka_t *k, dlq_rec_t *r)
{
    return rd_kafka_producev(k->prod, RD_KAFKA_V_TOPIC(k->dlq_topic), RD_KAFKA_V_MSGFLAGS(0),
                             RD_KAFKA_V_KEY(r->key, r->key ? r->key_len : 0),
                             RD_KAFKA_V_VALUE((void *)r->value, r->value_len), RD_KAFKA_V_OPAQUE(r),
                             RD_KAFKA_V_HEADER("vaegan-error", r->reason, -1),
                             RD_KAFKA_V_HEADER("vaegan-topic", r->topic, -1),
                             RD_KAFKA_V_HEADER("vaegan-partition", r->part, -1),
                             RD_KAFKA_V_HEADER("vaegan-offset", r->off, -1), RD_KAFKA_V_END);
}

/* Re-sends the dead letters whose delivery failed (those the producer
 * refuses again wait for the next call). */
static void dlq_resend(vg_kafka_t *k)
{
    dlq_rec_t *r = k->dlq_retry, *keep = NULL;
    k->dlq_retry = NULL;
    while (r) {
        dlq_rec_t *next = r->next;
        if (dlq_produce(k, r)) {
            r->next = keep;
            keep = r;
        }
        r = next;
    }
    k->dlq_retry = keep;
}

static void dlq_timer_cb(uv_timer_t *t)
{
    vg_kafka_t *k = t->data;
    if (k->prod && !k->closing) {
        rd_kafka_poll(k->prod, 0);
        dlq_resend(k);
        report_fatal(k);
    }
}

/* Close, before the final commit: the dead letters get until
 * VG_KAFKA_FLUSH_MS to be acknowledged (and so their messages done); the
 * rest are dropped undone, to be read again after the restart.  Returns
 * how many were dropped. */
static size_t dlq_flush(vg_kafka_t *k)
{
    uint64_t end = uv_hrtime() / 1000000u + VG_KAFKA_FLUSH_MS;
    while (k->st.dlq_pending && uv_hrtime() / 1000000u < end) {
        dlq_resend(k);
        rd_kafka_flush(k->prod, 100);
    }
    size_t left = k->st.dlq_pending;
    k->dlq_final = 1;
    rd_kafka_purge(k->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(k->prod, 0); /* the purged ones' reports free them */
    for (dlq_rec_t *r = k->dlq_retry, *next; r; r = next) {
        next = r->next;
        k->st.dlq_pending--;
        free(r);
    }
    k->dlq_retry = NULL;
    return left;
}

/* ---- public API ------------------------------------------------------------ */

void vg_kafka_done(vg_kafka_t *k, int32_t topic_id, int32_t partition, int64_t offset)
{
    vg_kpart_t *pt = vg_kafka_topics_part(&k->tt, topic_id, partition, 0);
    if (!pt || !pt->assigned || !vg_offsets_done(&pt->o, offset)) {
        const char *name = vg_kafka_topic_name(k, topic_id);
        klog(k, VG_LOG_DEBUG, "kafka: done for untracked %s[%" PRId32 "]@%" PRId64 " ignored",
             name ? name : "?", partition, offset);
        return;
    }
    k->st.outstanding--;
    if (pt->revoking && pt->o.n_out == 0)
        revoke_kick(k);
}

const char *vg_kafka_topic_name(const vg_kafka_t *k, int32_t topic_id)
{
    return vg_kafka_topics_name(&k->tt, topic_id);
}

void vg_kafka_pause(vg_kafka_t *k)
{
    if (k->paused)
        return;
    k->paused = 1;
    if (!k->closing && !k->stopped)
        pause_all(k, 1);
}

void vg_kafka_resume(vg_kafka_t *k)
{
    if (!k->paused)
        return;
    k->paused = 0;
    if (k->closing || k->stopped || k->fatal)
        return;
    pause_all(k, 0);
    uv_idle_start(&k->idle, idle_cb); /* deliver what is held now */
}

int vg_kafka_paused(const vg_kafka_t *k)
{
    return k->paused;
}

void vg_kafka_retry(vg_kafka_t *k)
{
    vg_assert(k->in_drain);
    k->retry_current = 1;
    vg_kafka_pause(k);
}

int vg_kafka_dlq(vg_kafka_t *k, const vg_kafka_msg_t *m, const char *reason)
{
    if (!k->prod)
        return VG_ENOTFOUND;
    const char *topic = m->topic ? m->topic : "";
    reason = reason ? reason : "";
    size_t klen = m->key ? m->key_len : 0, vlen = m->value ? m->value_len : 0;
    size_t rlen = strlen(reason), tlen = strlen(topic);
    dlq_rec_t *r = malloc(sizeof *r + klen + vlen + rlen + tlen + 2);
    if (!r)
        return VG_ENOMEM;
    char *d = r->data;
    r->next = NULL;
    r->topic_id = m->topic_id;
    r->partition = m->partition;
    r->offset = m->offset;
    r->key_len = klen;
    r->value_len = vlen;
    r->key = m->key ? memcpy(d, m->key, klen) : NULL;
    d += klen;
    r->value = vlen ? memcpy(d, m->value, vlen) : d;
    d += vlen;
    r->reason = memcpy(d, reason, rlen + 1);
    d += rlen + 1;
    r->topic = memcpy(d, topic, tlen + 1);
    snprintf(r->part, sizeof r->part, "%" PRId32, m->partition);
    snprintf(r->off, sizeof r->off, "%" PRId64, m->offset);
    k->st.dlq_pending++;
    rd_kafka_resp_err_t e = dlq_produce(k, r);
    if (e) { /* e.g. the producer's queue is full: the DLQ timer re-sends it */
        kwarn_rl(k, "kafka: dead-letter copy of %s[%" PRId32 "]@%" PRId64 " not queued yet: %s", topic,
                 m->partition, m->offset, rd_kafka_err2str(e));
        r->next = k->dlq_retry;
        k->dlq_retry = r;
    }
    return 0;
}

size_t vg_kafka_outstanding(const vg_kafka_t *k)
{
    return k->st.outstanding;
}

void vg_kafka_stats(const vg_kafka_t *k, vg_kafka_stats_t *s)
{
    *s = k->st;
    s->assigned = k->n_assigned;
}

void vg_kafka_stop(vg_kafka_t *k)
{
    if (k->stopped)
        return;
    k->stopped = 1;
    if (!k->closing && !k->paused)
        pause_all(k, 1);
    for (size_t i = k->held_head; i < k->held_len; i++)
        rd_kafka_message_destroy(k->held[i]);
    k->held_head = k->held_len = 0;
}

/* ---- init / close ----------------------------------------------------------- */

static void kfree(vg_kafka_t *k)
{
    vg_kafka_topics_free(&k->tt);
    free(k->held);
    free(k->dlq_topic);
    free(k);
}

static void close_cb(uv_handle_t *h)
{
    vg_kafka_t *k = h->data;
    if (h == (uv_handle_t *)&k->poll && k->efd >= 0) {
        close(k->efd);
        k->efd = -1;
    }
    if (--k->handles_open == 0)
        kfree(k);
}

/* ---- lag ------------------------------------------------------------------ */

/* Assigned, but not being fetched: its statistics' marks are stale, or
 * there are none yet. */
static int not_fetched(const vg_kafka_t *k, const vg_kpart_t *pt)
{
    return k->paused || k->stopped || pt->revoking || pt->lag < 0;
}

/* One partition of the statistics: its lag from our stored offset (else the
 * committed one, else the log start: auto.offset.reset=earliest) to the
 * high-water mark, the fresher of the statistics' and the thread's. */
static void on_part_stats(void *ud, const char *topic, int32_t partition, const vg_kstat_part_t *s)
{
    vg_kafka_t *k = ud;
    vg_kpart_t *pt = vg_kafka_topics_find(&k->tt, topic, partition, 0);
    if (!pt || !pt->assigned)
        return;
    /* read_committed (librdkafka's default) reads up to the last stable
     * offset: the same as the high-water mark without open transactions */
    int64_t hi = s->ls >= 0 ? s->ls : s->hi;
    if (not_fetched(k, pt)) { /* its statistics stopped at the last fetch */
        int64_t wm = vg_kwm_hi(k->wm, topic, partition);
        pt->wm_hi = wm > pt->wm_hi ? wm : pt->wm_hi;
    }
    /* kept after a resume too, until the fetches' marks pass it (they lag
     * behind at first); forgotten with the assignment */
    hi = pt->wm_hi > hi ? pt->wm_hi : hi;
    /* the low-water mark of what is durable, i.e. what the next store
     * hands over: librdkafka's own stored offset trails it by up to the
     * commit interval */
    int64_t mark = pt->o.next_store > pt->stored ? pt->o.next_store : pt->stored;
    int64_t pos = mark >= 0 ? mark : s->committed >= 0 ? s->committed : s->lo;
    pt->lag = hi >= 0 && pos >= 0 ? (hi > pos ? hi - pos : 0) : -1;
}

/* Every statistics.interval.ms, on the loop thread (served by our polls):
 * the lags, then fresh marks asked for the partitions not being fetched
 * (paused, or no mark yet), for the next round. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    vg_kafka_t *k = opaque;
    (void)rk;
    if (!k->wm || k->closing)
        return 0;
    if (vg_kafka_stats_parse(json, len, on_part_stats, k))
        kwarn_rl(k, "kafka: statistics: not the JSON expected");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t t = 0; t < k->tt.n; t++)
        for (int32_t p = 0; p < k->tt.t[t].nparts; p++) {
            vg_kpart_t *pt = &k->tt.t[t].parts[p];
            if (pt->assigned && not_fetched(k, pt))
                rd_kafka_topic_partition_list_add(l, k->tt.t[t].name, p);
        }
    if (l->cnt && vg_kwm_request(k->wm, l))
        kwarn_rl(k, "kafka: high-water marks: out of memory");
    rd_kafka_topic_partition_list_destroy(l);
    if (k->on_stats)
        k->on_stats(k->ud);
    return 0; /* librdkafka frees json */
}

int vg_kafka_lag(const vg_kafka_t *k, vg_kafka_lag_t *out, int max)
{
    int n = 0;
    for (int32_t t = 0; t < k->tt.n; t++)
        for (int32_t p = 0; p < k->tt.t[t].nparts; p++) {
            const vg_kpart_t *pt = &k->tt.t[t].parts[p];
            if (!pt->assigned)
                continue;
            if (n < max)
                out[n] = (vg_kafka_lag_t){t, p, pt->lag};
            n++;
        }
    return n;
}

/* The configuration of the consumer (consumer = 1) or of the DLQ producer
 * (kafka_conf.h), with k as opaque and our callbacks. */
static int build_conf(const vg_kafka_cfg_t *cfg, vg_kafka_t *k, int consumer,
                      rd_kafka_conf_t **out, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;
    int rc = vg_kafka_conf_build(cfg, consumer, &conf, err, errlen);
    if (rc)
        return rc;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (consumer) {
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
        if (cfg->stats_interval_ms > 0)
            rd_kafka_conf_set_stats_cb(conf, stats_cb);
    } else {
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    }
    *out = conf;
    return 0;
}

/* cfg has what init requires: brokers, group, on_message, at least one
 * topic and no empty one. */
static int cfg_ok(const vg_kafka_cfg_t *cfg)
{
    if (!cfg || !cfg->brokers || !*cfg->brokers || !cfg->group || !*cfg->group ||
        !cfg->on_message || (cfg->n_options && !cfg->options) || !cfg->topics ||
        cfg->n_topics == 0 || cfg->n_topics > INT32_MAX)
        return 0;
    for (size_t i = 0; i < cfg->n_topics; i++)
        if (!cfg->topics[i] || !*cfg->topics[i])
            return 0;
    return 1;
}

/* A new consumer object with cfg's settings, its own copies of the strings
 * and the literal topics of cfg->topics registered in their order (ids 0,
 * 1, ...; a regex names no topic yet).  NULL when out of memory. */
static vg_kafka_t *knew(uv_loop_t *loop, const vg_kafka_cfg_t *cfg)
{
    vg_kafka_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->rl = (vg_ratelimit_t)VG_RATELIMIT_INIT(VG_KAFKA_RL_WINDOW_MS / 1000.0, VG_KAFKA_RL_MAX);
    k->loop = loop;
    k->efd = -1;
    k->commit_interval_ms = cfg->commit_interval_ms > 0 ? cfg->commit_interval_ms : 1000;
    k->on_message = cfg->on_message;
    k->on_assigned = cfg->on_assigned;
    k->on_fatal = cfg->on_fatal;
    k->on_stats = cfg->on_stats;
    k->log = cfg->log;
    k->ud = cfg->ud;
    int ok = 1;
    if (cfg->dlq_topic && *cfg->dlq_topic)
        ok = (k->dlq_topic = strdup(cfg->dlq_topic)) != NULL;
    for (size_t i = 0; ok && i < cfg->n_topics; i++)
        if (cfg->topics[i][0] != '^')
            ok = vg_kafka_topics_id(&k->tt, cfg->topics[i], 1) >= 0;
    if (!ok) {
        kfree(k);
        return NULL;
    }
    return k;
}

/* One rd_kafka_subscribe to every entry of cfg->topics (a repeated entry
 * once); names gets them as "a,b,^c.*" for the log (truncated). */
static int subscribe(vg_kafka_t *k, const vg_kafka_cfg_t *cfg, char *names, size_t nameslen,
                     char *err, size_t errlen)
{
    size_t n = 0;
    names[0] = '\0';
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)cfg->n_topics);
    for (size_t i = 0; i < cfg->n_topics; i++) {
        const char *t = cfg->topics[i];
        if (rd_kafka_topic_partition_list_find(sub, t, RD_KAFKA_PARTITION_UA))
            continue; /* librdkafka refuses a subscription with duplicates */
        rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
        if (n < nameslen) {
            int w = snprintf(names + n, nameslen - n, "%s%s", n ? "," : "", t);
            n = w < 0 ? nameslen : n + (size_t)w;
        }
    }
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) { /* INVALID_ARG: a regex librdkafka cannot compile */
        snprintf(err, errlen, "kafka: subscribe to %s: %s", names, rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__INVALID_ARG ? VG_ECONFIG : VG_EKAFKA;
    }
    return 0;
}

int vg_kafka_init(vg_kafka_t **out, uv_loop_t *loop, const vg_kafka_cfg_t *cfg, char *err,
                  size_t errlen)
{
    if (!cfg_ok(cfg)) {
        snprintf(err, errlen,
                 "kafka: brokers, topics (at least one, none empty), group and on_message are "
                 "required");
        return VG_EINVAL;
    }
    vg_kafka_t *k = knew(loop, cfg);
    if (!k) {
        snprintf(err, errlen, "kafka: out of memory");
        return VG_ENOMEM;
    }

    rd_kafka_conf_t *conf;
    int rc = build_conf(cfg, k, 1, &conf, err, errlen);
    if (rc) {
        kfree(k);
        return rc;
    }
    rd_kafka_conf_t *pconf = NULL;
    if (k->dlq_topic && (rc = build_conf(cfg, k, 0, &pconf, err, errlen)) != 0) {
        rd_kafka_conf_destroy(conf);
        kfree(k);
        return rc;
    }
    k->rk = vg_kafka_conf_new_handle(RD_KAFKA_CONSUMER, conf, err, errlen, &rc);
    if (!k->rk) {
        if (pconf)
            rd_kafka_conf_destroy(pconf);
        kfree(k);
        return rc;
    }
    if (pconf && !(k->prod = vg_kafka_conf_new_handle(RD_KAFKA_PRODUCER, pconf, err, errlen, &rc)))
        goto fail;
    if (cfg->stats_interval_ms > 0 && vg_kwm_start(&k->wm, k->rk)) {
        snprintf(err, errlen, "kafka: out of memory");
        rc = VG_ENOMEM;
        goto fail;
    }

    rd_kafka_poll_set_consumer(k->rk); /* main queue (logs, errors) -> consumer queue */
    k->cq = rd_kafka_queue_get_consumer(k->rk);
    k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!k->cq || k->efd < 0) {
        snprintf(err, errlen, "kafka: eventfd: %s", k->cq ? strerror(errno) : "no consumer queue");
        rc = VG_EKAFKA;
        goto fail;
    }
    static const uint64_t one = 1; /* 8 bytes: an eventfd refuses anything else */
    rd_kafka_queue_io_event_enable(k->cq, k->efd, &one, sizeof one);

    char names[512];
    if ((rc = subscribe(k, cfg, names, sizeof names, err, errlen)) != 0)
        goto fail;
    int uvrc = uv_poll_init(loop, &k->poll, k->efd);
    if (uvrc < 0) {
        snprintf(err, errlen, "kafka: uv_poll_init: %s", uv_strerror(uvrc));
        rc = VG_EKAFKA;
        goto fail;
    }

    k->poll.data = k->idle.data = k->commit_timer.data = k->revoke_timer.data =
        k->dlq_timer.data = k;
    uv_idle_init(loop, &k->idle);
    uv_timer_init(loop, &k->commit_timer);
    uv_timer_init(loop, &k->revoke_timer);
    uv_timer_init(loop, &k->dlq_timer);
    k->handles_open = 5;
    uv_poll_start(&k->poll, UV_READABLE, poll_cb);
    uv_idle_start(&k->idle, idle_cb); /* anything queued before the eventfd was set */
    uv_timer_start(&k->commit_timer, commit_timer_cb, (uint64_t)k->commit_interval_ms,
                   (uint64_t)k->commit_interval_ms);
    if (k->prod)
        uv_timer_start(&k->dlq_timer, dlq_timer_cb, VG_KAFKA_DLQ_POLL_MS, VG_KAFKA_DLQ_POLL_MS);
    klog(k, VG_LOG_INFO, "kafka: consuming %s as group %s from %s%s%s", names, cfg->group,
         cfg->brokers, k->dlq_topic ? ", dead letters to " : "",
         k->dlq_topic ? k->dlq_topic : "");
    *out = k;
    return 0;

fail:
    k->closing = 1;
    if (k->cq) {
        rd_kafka_queue_io_event_enable(k->cq, -1, NULL, 0);
        rd_kafka_queue_destroy(k->cq);
    }
    if (k->efd >= 0)
        close(k->efd);
    vg_kwm_stop(k->wm);
    rd_kafka_destroy(k->rk);
    if (k->prod)
        rd_kafka_destroy(k->prod);
    kfree(k);
    return rc;
}

/* Commits the stored offsets, waiting at most ms for the answer. */
/* One synchronous commit of the stored offsets: its error, or
 * RD_KAFKA_RESP_ERR__TIMED_OUT at end (ms, uv_hrtime's clock). */
static rd_kafka_resp_err_t commit_once(vg_kafka_t *k, uint64_t end)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_resp_err_t e = rd_kafka_commit_queue(k->rk, NULL, q, NULL, NULL);
    while (!e) {
        uint64_t now = uv_hrtime() / 1000000;
        if (now >= end) {
            e = RD_KAFKA_RESP_ERR__TIMED_OUT;
            break;
        }
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)(end - now));
        if (!ev)
            continue;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            e = commit_error(rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev));
            rd_kafka_event_destroy(ev);
            break;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    return e;
}

/* The final commit: refused for a passing reason (commit_retriable), it is
 * tried again every VG_KAFKA_REVOKE_RETRY_MS within ms (WARN, counted). */
static rd_kafka_resp_err_t commit_sync(vg_kafka_t *k, int ms)
{
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;
    rd_kafka_resp_err_t e;
    while ((e = commit_once(k, end)) && commit_retriable(e) && e != RD_KAFKA_RESP_ERR__TIMED_OUT &&
           uv_hrtime() / 1000000 + VG_KAFKA_REVOKE_RETRY_MS < end) {
        k->st.commit_retries++;
        kwarn_rl(k, "kafka: final commit refused: %s; retrying", rd_kafka_err2str(e));
        struct timespec ts = {0, VG_KAFKA_REVOKE_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return e;
}

int vg_kafka_close(vg_kafka_t *k, char *err, size_t errlen)
{
    vg_assert(!k->in_drain); /* never from inside on_message & co */
    int rc = 0;
    char why[512] = "";
    vg_kafka_stop(k);
    k->closing = 1;
    uv_poll_stop(&k->poll);
    uv_idle_stop(&k->idle);
    uv_timer_stop(&k->commit_timer);
    uv_timer_stop(&k->revoke_timer);
    uv_timer_stop(&k->dlq_timer);

    /* dead letters first: an acknowledged one marks its message done */
    size_t undelivered = k->prod ? dlq_flush(k) : 0;
    if (undelivered)
        klog(k, VG_LOG_WARN, "kafka: %zu dead letters not acknowledged within %d s; their messages are not "
             "committed and will be read again after the restart", undelivered, VG_KAFKA_FLUSH_MS / 1000);
    /* offsets done so far, committed synchronously */
    store_offsets(k, NULL);
    if (!k->fatal && (k->dirty_commit || k->commits_inflight)) { /* else nothing new since the last commit */
        rd_kafka_resp_err_t e = commit_sync(k, VG_KAFKA_CLOSE_COMMIT_MS);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            k->st.commit_errors++;
            snprintf(why, sizeof why, "final commit: %s", rd_kafka_err2str(e));
            rc = VG_EKAFKA;
        } else if (!e) {
            k->st.commits++;
        }
    }
    if (k->revoking) { /* a deferred revoke is overtaken by the close */
        rd_kafka_topic_partition_list_destroy(k->revoking);
        k->revoking = NULL;
        k->revoke_state = REVOKE_NONE;
    }
    rd_kafka_queue_io_event_enable(k->cq, -1, NULL, 0);
    vg_kwm_stop(k->wm); /* before the consumer closes: no query on a handle going away */
    k->wm = NULL;
    /* leave the group; its final revoke comes to rebalance_cb, unassigned at once */
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(k->rk);
    if (e && !rc) {
        snprintf(why, sizeof why, "leaving the group: %s", rd_kafka_err2str(e));
        rc = VG_EKAFKA;
    }
    rd_kafka_queue_destroy(k->cq);
    k->cq = NULL;
    rd_kafka_destroy(k->rk);
    k->rk = NULL;

    if (k->prod) {
        rd_kafka_destroy(k->prod);
        k->prod = NULL;
    }
    klog(k, rc ? VG_LOG_WARN : VG_LOG_INFO, "kafka: closed (%" PRIu64 " consumed, %" PRIu64
         " commits)%s%s", k->st.consumed, k->st.commits, rc ? ": " : "", why);
    if (rc)
        snprintf(err, errlen, "kafka: %s", why);
    uv_close((uv_handle_t *)&k->poll, close_cb);
    uv_close((uv_handle_t *)&k->idle, close_cb);
    uv_close((uv_handle_t *)&k->commit_timer, close_cb);
    uv_close((uv_handle_t *)&k->revoke_timer, close_cb);
    uv_close((uv_handle_t *)&k->dlq_timer, close_cb);
    return rc;
}
