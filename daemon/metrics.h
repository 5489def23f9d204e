/*
 * metrics.h — the daemon's Prometheus metrics: a registry of counters,
 * gauges and histograms, rendered in the text exposition format 0.0.4 and
 * served over HTTP (libmicrohttpd) at GET /metrics.
 *
 * Use: create the registry with vg_metrics_init(), register every metric
 * with vg_metrics_add() while wiring the daemon (keep the returned pointers
 * in your structs), then vg_metrics_listen() on the configured
 * `metrics.listen` address.  Updates (vg_metric_inc/set/observe) are
 * lock-free C11 atomics and may come from any thread at any time, including
 * while the server renders.  vg_metrics_free() stops the server and frees
 * the registry and every metric in it; no vg_metric_t may be used after.
 *
 * Representation: a counter or gauge value is a double stored as its 64 bit
 * pattern in an _Atomic uint64_t; set is an atomic store, inc a
 * compare-and-swap loop (exact: concurrent increments never get lost).  A
 * histogram keeps one atomic event count per bucket (plus +Inf) and the sum
 * as atomic double bits; `_count` is rendered as the total of the bucket
 * counts so that it always equals the `+Inf` bucket.  A scrape is not a
 * snapshot across metrics (nor between a histogram's counts and its sum),
 * which Prometheus tolerates.
 *
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]*; a histogram's name must not
 * end in _bucket, _sum or _count.  Bad or duplicate names are programming
 * errors (vg_assert).
 */
#ifndef VG_METRICS_H
#define VG_METRICS_H

#include <stddef.h>

typedef struct vg_metrics vg_metrics_t;
typedef struct vg_metric vg_metric_t;

enum { VG_METRIC_COUNTER, VG_METRIC_GAUGE, VG_METRIC_HISTOGRAM };

/* Creates an empty registry in *out (free with vg_metrics_free).  Works
 * without a server: metrics can be updated and rendered with no listener.
 * Returns 0 or VG_ENOMEM. */
int vg_metrics_init(vg_metrics_t **out);

/* Registers a metric: name (e.g. "vaegan_events_total"), one-line help
 * text, type VG_METRIC_*.  For a histogram, buckets[0..n_buckets-1] are the
 * strictly increasing upper bounds (copied; +Inf is implicit); buckets ==
 * NULL takes the default latency buckets in seconds: 0.001 0.0025 0.005
 * 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10.  Ignored for other types.
 * Returns the metric, owned by the registry and valid until
 * vg_metrics_free(), or NULL when out of memory.  Metrics are rendered in
 * the order they were added.  Meant to be called before vg_metrics_listen;
 * adding later is safe (the list is guarded by a mutex) but a scraper then
 * sees a metric appear. */
vg_metric_t *vg_metrics_add(vg_metrics_t *m, const char *name, const char *help, int type,
                            const double *buckets, size_t n_buckets);

/* A series of a labelled counter or gauge family: name{label="value"}
 * (value escaped as the exposition format wants).  Series of one name share
 * the first non-empty help and the type of its series and are rendered together.  The caller
 * bounds how many it adds.  Returns the series or NULL (out of memory). */
vg_metric_t *vg_metrics_add_labeled(vg_metrics_t *m, const char *name, const char *help, int type, const char *label,
                                    const char *value);

/* A series with several labels: name{labels[0]="values[0]",...} (n >= 1).
 * Same rules as vg_metrics_add_labeled. */
vg_metric_t *vg_metrics_add_labels(vg_metrics_t *m, const char *name, const char *help, int type,
                                   const char *const *labels, const char *const *values, int n);

/* Removes one series (of vg_metrics_add*) from the registry and frees it:
 * e.g. the lag of a partition no longer assigned.  The caller guarantees
 * that no other thread uses x any more.  A family's HELP is the first
 * non-empty help among its series. */
void vg_metrics_remove(vg_metrics_t *m, vg_metric_t *x);

/* A labelled counter family whose label values come from the input (event
 * types, error codes): the first VG_FAMILY_MAX distinct values get a series
 * each, later ones share the series "other", so the cardinality stays
 * bounded whatever the input.  Fill name/help/label (static strings) and
 * reg, zero the rest; loop thread only (the series themselves are atomic). */
#define VG_FAMILY_MAX 16
#define VG_FAMILY_VALUE_MAX 32
typedef struct vg_metric_family {
    vg_metrics_t *reg;
    const char *name, *help, *label;
    int n;
    char value[VG_FAMILY_MAX][VG_FAMILY_VALUE_MAX + 1];
    vg_metric_t *series[VG_FAMILY_MAX + 1]; /* [VG_FAMILY_MAX]: "other" */
} vg_metric_family_t;

/* The series of value (registered on first use; a value longer than
 * VG_FAMILY_VALUE_MAX counts as "other"); += v.  Out of memory: not
 * counted. */
void vg_metric_family_inc(vg_metric_family_t *f, const char *value, double v);

/* Counter or gauge: value += v.  Atomic, any thread.  A counter only goes
 * up: a negative v on a counter is ignored.  No-op on a histogram. */
void vg_metric_inc(vg_metric_t *x, double v);

/* Gauge: value = v.  Atomic, any thread.  No-op on other types. */
void vg_metric_set(vg_metric_t *x, double v);

/* Histogram: counts v in the first bucket whose bound is >= v (else +Inf)
 * and adds v to the sum.  Atomic, any thread.  No-op on other types. */
void vg_metric_observe(vg_metric_t *x, double v);

/* The current value of a counter or gauge; for a histogram, its number of
 * observations.  For tests and logs. */
double vg_metric_value(const vg_metric_t *x);

/* Starts the HTTP server on its own thread (libmicrohttpd's internal
 * polling thread) listening on `listen`: "host:port" with an IPv4 address
 * or a host name, "[IPv6]:port", or ":port" / "*:port" for every address;
 * port 0 picks a free port (see vg_metrics_port).  listen == "" (or NULL)
 * means metrics are off: does nothing and returns 0.  GET or HEAD /metrics
 * answers 200 with the exposition text (Content-Type text/plain;
 * version=0.0.4); another method on /metrics answers 405, any other path
 * 404.  Returns 0; VG_EINVAL for a malformed address or a second call;
 * VG_EIO when the name does not resolve or no address can be bound
 * (e.g. in use); VG_ENOMEM.  On error, err (when non-NULL) receives a
 * message naming the address and the reason, e.g.
 * `cannot listen on "127.0.0.1:80": Permission denied`. */
int vg_metrics_listen(vg_metrics_t *m, const char *listen, char *err, size_t errlen);

/* The port the server is bound to (the chosen one after port 0), or 0 when
 * it is not listening. */
int vg_metrics_port(const vg_metrics_t *m);

/* Renders every metric in the text exposition format into a NUL-terminated
 * malloc'd string; the caller frees it.  NULL when out of memory.  Used by
 * the server and by tests; safe from any thread. */
char *vg_metrics_render(vg_metrics_t *m);

/* Stops the server (waiting for its thread) and frees the registry and all
 * its metrics.  NULL is a no-op. */
void vg_metrics_free(vg_metrics_t *m);

#endif
