/*
 * leader.c — the election of leader.h: a vg_kafka consumer of the control
 * topic whose assignment says whether this member leads, and the epoch
 * taken from Redis on each win.
 *
 * Invariants: l->incr is 1 while an INCR is unanswered (at most one); l is
 * freed only when its timer has closed and no INCR is unanswered (the
 * store calls back even when it is closed with vg_store_close_cancel).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/shared.h"
#include "common/errors.h"
#include "daemon/leader.h"
#include "stream/kafka.h"

#define LD_RETRY_MS 1000

enum { LD_FOLLOWING = 0, LD_TAKING = 1, LD_LEADING = 2 };

struct vg_leader {
    uv_loop_t *loop;
    vg_kafka_t *k;
    vg_store_t *store;
    uv_timer_t retry;
    int state;
    int assigned;     /* the control partition is ours now */
    int incr;         /* an INCR is unanswered */
    int closing, timer_closed;
    uint64_t epoch;
    void (*on_change)(void *ud, int leading, uint64_t epoch);
    vg_log_fn log;
    void *ud;
};

static void ld_log(vg_leader_t *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ld_log(vg_leader_t *l, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_logv(l->log, l->ud, level, fmt, ap);
    va_end(ap);
}

static void maybe_free(vg_leader_t *l)
{
    if (l->closing && l->timer_closed && !l->incr)
        free(l);
}

static void step_down(vg_leader_t *l, const char *why)
{
    if (l->state == LD_LEADING) {
        ld_log(l, VG_LOG_WARN, "leader: stepping down from epoch %llu: %s", (unsigned long long)l->epoch, why);
        l->state = LD_FOLLOWING;
        if (l->on_change)
            l->on_change(l->ud, 0, l->epoch);
    }
    l->state = LD_FOLLOWING;
}

static void take_epoch(vg_leader_t *l);
static void on_retry(uv_timer_t *t) { take_epoch(t->data); }

static void on_epoch(void *ud, int status, uint64_t epoch)
{
    vg_leader_t *l = ud;
    l->incr = 0;
    if (l->closing) {
        maybe_free(l);
        return;
    }
    if (l->state != LD_TAKING) /* the partition went meanwhile */
        return;
    if (status) {
        ld_log(l, VG_LOG_WARN, "leader: taking an epoch from Redis failed (%s); retrying in %d ms",
               vg_strerror(status), LD_RETRY_MS);
        if (status != VG_EAGAIN)
            uv_timer_start(&l->retry, on_retry, LD_RETRY_MS, 0);
        return;
    }
    l->state = LD_LEADING;
    l->epoch = epoch;
    ld_log(l, VG_LOG_INFO, "leader: this instance leads now, epoch %llu", (unsigned long long)epoch);
    if (l->on_change)
        l->on_change(l->ud, 1, epoch);
}

static void take_epoch(vg_leader_t *l)
{
    if (l->closing || l->state != LD_TAKING || l->incr)
        return;
    int rc = vg_shared_take_epoch(l->store, on_epoch, l);
    if (rc == 0) {
        l->incr = 1;
        return;
    }
    ld_log(l, VG_LOG_WARN, "leader: cannot ask Redis for an epoch (%s); retrying in %d ms", vg_strerror(rc),
           LD_RETRY_MS);
    uv_timer_start(&l->retry, on_retry, LD_RETRY_MS, 0);
}

static void on_assigned(void *ud, int n)
{
    vg_leader_t *l = ud;
    vg_kafka_lag_t first; /* the assigned partitions come in partition order: is 0 among them? */
    int now = n > 0 && l->k && vg_kafka_lag(l->k, &first, 1) > 0 && first.partition == 0;
    if (now == l->assigned)
        return;
    l->assigned = now;
    if (!now) {
        uv_timer_stop(&l->retry);
        step_down(l, "the control partition was revoked or lost");
        return;
    }
    l->state = LD_TAKING;
    take_epoch(l);
}

/* The control topic carries nothing; whatever someone wrote to it is done at once. */
static void on_message(void *ud, const vg_kafka_msg_t *m)
{
    vg_leader_t *l = ud;
    vg_kafka_done(l->k, m->topic_id, m->partition, m->offset);
}

static void on_fatal(void *ud, const char *reason)
{
    vg_leader_t *l = ud;
    ld_log(l, VG_LOG_ERROR, "leader: the election's consumer failed: %s", reason);
    l->assigned = 0;
    step_down(l, "the election's consumer failed");
}

int vg_leader_init(vg_leader_t **out, uv_loop_t *loop, const vg_leader_cfg_t *cfg, char *err, size_t errlen)
{
    if (!cfg->brokers || !cfg->group || !cfg->control_topic || !*cfg->control_topic || !cfg->store)
        return vg_errf(err, errlen, VG_EINVAL, "leader: brokers, group, control topic and store are required");
    vg_leader_t *l = calloc(1, sizeof *l);
    if (!l)
        return vg_errf(err, errlen, VG_ENOMEM, "leader: out of memory");
    l->loop = loop;
    l->store = cfg->store;
    l->on_change = cfg->on_change;
    l->log = cfg->log;
    l->ud = cfg->ud;
    char group[512];
    if ((size_t)snprintf(group, sizeof group, "%s.leader", cfg->group) >= sizeof group) {
        free(l);
        return vg_errf(err, errlen, VG_EINVAL, "leader: group name too long");
    }
    const char *topics[1] = {cfg->control_topic};
    vg_kafka_cfg_t kc = {.brokers = cfg->brokers,
                         .group = group,
                         .topics = topics,
                         .n_topics = 1,
                         .options = cfg->options,
                         .n_options = cfg->n_options,
                         .on_message = on_message,
                         .on_assigned = on_assigned,
                         .on_fatal = on_fatal,
                         .log = cfg->log,
                         .ud = l};
    uv_timer_init(loop, &l->retry);
    l->retry.data = l;
    int rc = vg_kafka_init(&l->k, loop, &kc, err, errlen);
    if (rc) {
        l->closing = 1;
        vg_leader_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

int vg_leader_leading(const vg_leader_t *l, uint64_t *epoch)
{
    if (!l || l->state != LD_LEADING)
        return 0;
    if (epoch)
        *epoch = l->epoch;
    return 1;
}

void vg_leader_fenced(vg_leader_t *l, uint64_t epoch)
{
    if (!l || l->state != LD_LEADING || epoch != l->epoch)
        return;
    step_down(l, "Redis refused the epoch: another instance took a newer one");
}

static void on_timer_closed(uv_handle_t *h)
{
    vg_leader_t *l = h->data;
    l->timer_closed = 1;
    maybe_free(l);
}

void vg_leader_close(vg_leader_t *l)
{
    if (!l)
        return;
    l->closing = 1;
    if (l->k) {
        char err[256];
        vg_kafka_stop(l->k);
        if (vg_kafka_close(l->k, err, sizeof err))
            ld_log(l, VG_LOG_WARN, "leader: closing the election's consumer: %s", err);
        l->k = NULL;
    }
    uv_close((uv_handle_t *)&l->retry, on_timer_closed);
}
