/*
 * metrics.c — Prometheus registry and its HTTP endpoint (libmicrohttpd).
 *
 * The registry is a singly linked list of metrics in registration order,
 * guarded by a mutex only for its shape (add, render, free); values never
 * take the lock.  A counter/gauge value and a histogram sum are doubles kept
 * as bit patterns in _Atomic uint64_t: stores are plain atomic stores and
 * additions a relaxed compare-and-swap loop, so increments from many threads
 * add up exactly with no lock on the hot path.  Histogram buckets are
 * per-bucket (non-cumulative) atomic counts, accumulated at render time;
 * `_count` is their total, so it always equals the +Inf bucket.
 *
 * The listening socket is created here (getaddrinfo + bind + listen) rather
 * than by libmicrohttpd so that an error can name the address and the
 * errno, and port 0 can be read back with getsockname(); the socket is
 * handed to MHD with MHD_OPTION_LISTEN_SOCKET and MHD closes it in
 * MHD_stop_daemon().  MHD runs one internal polling thread; each scrape
 * renders a fresh string that MHD frees after sending (MHD_RESPMEM_MUST_FREE).
 */
#include "daemon/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/addr.h"
#include "common/errors.h"

#if MHD_VERSION >= 0x00097002
#define VG_MHD_RESULT enum MHD_Result
#else
#define VG_MHD_RESULT int
#endif

static const double vg_default_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};

struct vg_metric {
    vg_metric_t *next;
    char *name;
    char *help;
    int type;
    char *labels;           /* rendered label set, e.g. type="view" (escaped), or NULL */
    _Atomic uint64_t value; /* counter/gauge: the value; histogram: the sum (double bits) */
    size_t n_buckets;        /* histogram: finite bounds; counts has n_buckets + 1 slots */
    double *bounds;
    _Atomic uint64_t *counts;
};

struct vg_metrics {
    pthread_mutex_t lock; /* guards the list's shape, not the values */
    vg_metric_t *head;
    vg_metric_t **tail;
    struct MHD_Daemon *daemon;
    int port;
};

/* ---- doubles as atomic bit patterns ------------------------------------ */

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static double atomic_get_double(const _Atomic uint64_t *p)
{
    return bits_to_double(atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed));
}

/* ---- registry ----------------------------------------------------------- */

int vg_metrics_init(vg_metrics_t **out)
{
    vg_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return VG_ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return VG_ENOMEM;
    }
    m->tail = &m->head;
    *out = m;
    return 0;
}

static int valid_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void metric_free(vg_metric_t *x)
{
    free(x->name);
    free(x->help);
    free(x->labels);
    free(x->bounds);
    free((void *)x->counts);
    free(x);
}

/* Appends value to *p as the exposition format quotes it: backslash, double
 * quote and newline escaped. */
static char *put_label_value(char *p, const char *value)
{
    for (const char *v = value; *v; v++) {
        if (*v == '\\' || *v == '"')
            *p++ = '\\';
        if (*v == '\n') {
            *p++ = '\\';
            *p++ = 'n';
            continue;
        }
        *p++ = *v;
    }
    return p;
}

/* A label set as the exposition format writes it: a="x",b="y".  NULL when
 * out of memory. */
static char *label_text(const char *const *labels, const char *const *values, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(labels[i]) + 2 * strlen(values[i]) + 4;
    char *t = malloc(len), *p = t;
    if (!t)
        return NULL;
    for (int i = 0; i < n; i++) {
        p += sprintf(p, "%s%s=\"", i ? "," : "", labels[i]);
        p = put_label_value(p, values[i]);
        *p++ = '"';
    }
    *p = '\0';
    return t;
}

static vg_metric_t *add_series(vg_metrics_t *m, const char *name, const char *help, int type, const double *buckets,
                               size_t n_buckets, const char *const *labels, const char *const *values, int n_labels)
{
    vg_assert(m && valid_name(name));
    vg_assert(type == VG_METRIC_COUNTER || type == VG_METRIC_GAUGE || type == VG_METRIC_HISTOGRAM);
    if (type == VG_METRIC_HISTOGRAM) {
        vg_assert(!ends_with(name, "_bucket") && !ends_with(name, "_sum") &&
                  !ends_with(name, "_count"));
        if (!buckets) {
            buckets = vg_default_buckets;
            n_buckets = sizeof vg_default_buckets / sizeof vg_default_buckets[0];
        }
        for (size_t i = 0; i < n_buckets; i++) {
            vg_assert(isfinite(buckets[i]));
            vg_assert(i == 0 || buckets[i] > buckets[i - 1]);
        }
    }

    vg_metric_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->type = type;
    x->name = strdup(name);
    x->help = strdup(help ? help : "");
    if (n_labels && !(x->labels = label_text(labels, values, n_labels)))
        goto nomem;
    if (!x->name || !x->help)
        goto nomem;
    atomic_init(&x->value, double_to_bits(0.0));
    if (type == VG_METRIC_HISTOGRAM) {
        x->n_buckets = n_buckets;
        x->bounds = malloc((n_buckets ? n_buckets : 1) * sizeof *x->bounds);
        x->counts = malloc((n_buckets + 1) * sizeof *x->counts);
        if (!x->bounds || !x->counts)
            goto nomem;
        for (size_t i = 0; i < n_buckets; i++)
            x->bounds[i] = buckets[i];
        for (size_t i = 0; i <= n_buckets; i++)
            atomic_init(&x->counts[i], 0);
    }

    pthread_mutex_lock(&m->lock);
    for (const vg_metric_t *y = m->head; y; y = y->next) /* one series per name and label set */
        vg_assert(strcmp(y->name, name) != 0 || (x->labels && y->labels && strcmp(x->labels, y->labels) != 0));
    *m->tail = x;
    m->tail = &x->next;
    pthread_mutex_unlock(&m->lock);
    return x;

nomem:
    metric_free(x);
    return NULL;
}

vg_metric_t *vg_metrics_add(vg_metrics_t *m, const char *name, const char *help, int type,
                            const double *buckets, size_t n_buckets)
{
    return add_series(m, name, help, type, buckets, n_buckets, NULL, NULL, 0);
}

vg_metric_t *vg_metrics_add_labeled(vg_metrics_t *m, const char *name, const char *help, int type, const char *label,
                                    const char *value)
{
    return vg_metrics_add_labels(m, name, help, type, &label, &value, 1);
}

vg_metric_t *vg_metrics_add_labels(vg_metrics_t *m, const char *name, const char *help, int type,
                                   const char *const *labels, const char *const *values, int n)
{
    vg_assert(type != VG_METRIC_HISTOGRAM && n >= 1);
    for (int i = 0; i < n; i++)
        vg_assert(valid_name(labels[i]) && values[i]);
    return add_series(m, name, help, type, NULL, 0, labels, values, n);
}

void vg_metrics_remove(vg_metrics_t *m, vg_metric_t *x)
{
    pthread_mutex_lock(&m->lock);
    vg_metric_t **pp = &m->head;
    while (*pp && *pp != x)
        pp = &(*pp)->next;
    vg_assert(*pp);
    *pp = x->next;
    if (m->tail == &x->next)
        m->tail = pp;
    pthread_mutex_unlock(&m->lock);
    metric_free(x);
}

void vg_metric_family_inc(vg_metric_family_t *f, const char *value, double v)
{
    size_t len = strlen(value);
    int k = 0;
    while (k < f->n && strcmp(f->value[k], value) != 0)
        k++;
    if (k == f->n && (f->n == VG_FAMILY_MAX || len > VG_FAMILY_VALUE_MAX))
        k = VG_FAMILY_MAX;
    if (!f->series[k]) {
        const char *v_text = k == VG_FAMILY_MAX ? "other" : value;
        /* help only with the family's first series */
        int first = f->n == 0 && !f->series[VG_FAMILY_MAX];
        if (!(f->series[k] = vg_metrics_add_labeled(f->reg, f->name, first ? f->help : "", VG_METRIC_COUNTER,
                                                    f->label, v_text)))
            return;
        if (k < VG_FAMILY_MAX) {
            memcpy(f->value[k], value, len + 1);
            f->n++;
        }
    }
    vg_metric_inc(f->series[k], v);
}

void vg_metric_inc(vg_metric_t *x, double v)
{
    if (x->type == VG_METRIC_HISTOGRAM)
        return;
    if (x->type == VG_METRIC_COUNTER && !(v >= 0))
        return;
    atomic_add_double(&x->value, v);
}

void vg_metric_set(vg_metric_t *x, double v)
{
    if (x->type != VG_METRIC_GAUGE)
        return;
    atomic_store_explicit(&x->value, double_to_bits(v), memory_order_relaxed);
}

void vg_metric_observe(vg_metric_t *x, double v)
{
    if (x->type != VG_METRIC_HISTOGRAM)
        return;
    size_t i = 0;
    while (i < x->n_buckets && !(v <= x->bounds[i]))
        i++;
    atomic_fetch_add_explicit(&x->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&x->value, v);
}

static uint64_t histogram_total(const vg_metric_t *x)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= x->n_buckets; i++)
        n += atomic_load_explicit(&x->counts[i], memory_order_relaxed);
    return n;
}

double vg_metric_value(const vg_metric_t *x)
{
    if (x->type == VG_METRIC_HISTOGRAM)
        return (double)histogram_total(x);
    return atomic_get_double(&x->value);
}

/* ---- exposition text ---------------------------------------------------- */

/* The shortest of %.15g / %.17g that reads back exactly; Prometheus'
 * spellings for the non-finite values. */
static void format_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(buf, len, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, len, "%.17g", v);
    }
}

/* HELP text: backslash and newline escaped, as the format requires. */
static void put_help(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static const char *type_name(int type)
{
    switch (type) {
    case VG_METRIC_COUNTER:
        return "counter";
    case VG_METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

static void render_metric(FILE *f, const vg_metric_t *x)
{
    char num[64];
    if (x->type != VG_METRIC_HISTOGRAM) {
        format_double(num, sizeof num, atomic_get_double(&x->value));
        fprintf(f, "%s%s%s%s %s\n", x->name, x->labels ? "{" : "", x->labels ? x->labels : "", x->labels ? "}" : "",
                num);
        return;
    }
    /* read the sum first: with observes racing, the counts then tend to
     * include at least what the sum includes */
    double sum = atomic_get_double(&x->value);
    uint64_t cum = 0;
    for (size_t i = 0; i < x->n_buckets; i++) {
        cum += atomic_load_explicit(&x->counts[i], memory_order_relaxed);
        format_double(num, sizeof num, x->bounds[i]);
        fprintf(f, "%s_bucket{le=\"%s\"} %llu\n", x->name, num, (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&x->counts[x->n_buckets], memory_order_relaxed);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", x->name, (unsigned long long)cum);
    format_double(num, sizeof num, sum);
    fprintf(f, "%s_sum %s\n", x->name, num);
    fprintf(f, "%s_count %llu\n", x->name, (unsigned long long)cum);
}

char *vg_metrics_render(vg_metrics_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m->lock);
    /* a family (one name) is rendered once, at its first series: HELP (the
     * first non-empty one) and TYPE, then every series of that name */
    for (const vg_metric_t *x = m->head; x; x = x->next) {
        const vg_metric_t *y = m->head;
        while (y != x && strcmp(y->name, x->name) != 0)
            y = y->next;
        if (y != x)
            continue;
        const char *help = x->help; /* the family's first non-empty help */
        for (y = x; y && !*help; y = y->next)
            if (strcmp(y->name, x->name) == 0)
                help = y->help;
        fprintf(f, "# HELP %s ", x->name);
        put_help(f, help);
        fprintf(f, "\n# TYPE %s %s\n", x->name, type_name(x->type));
        for (y = x; y; y = y->next)
            if (strcmp(y->name, x->name) == 0)
                render_metric(f, y);
    }
    pthread_mutex_unlock(&m->lock);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- HTTP server -------------------------------------------------------- */

static VG_MHD_RESULT reply_static(struct MHD_Connection *c, unsigned int status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    VG_MHD_RESULT ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static VG_MHD_RESULT on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **req_cls)
{
    vg_metrics_t *m = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;

    if (strcmp(url, "/metrics") != 0)
        return reply_static(c, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

    char *text = vg_metrics_render(m);
    if (!text)
        return MHD_NO; /* out of memory: MHD drops the connection */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    VG_MHD_RESULT ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static int set_err(char *err, size_t errlen, int code, const char *listen, const char *reason)
{
    return vg_errf(err, errlen, code, "cannot listen on \"%s\": %s", listen, reason);
}

/* Binds and listens on the first usable address of host:port.  Returns the
 * socket, or -1 with *gai (resolution error) or *err_no (last bind error). */
static int bind_listen(const char *host, const char *port, int *gai, int *err_no)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    *gai = getaddrinfo(host, port, &hints, &res);
    if (*gai != 0)
        return -1;
    int fd = -1;
    *err_no = EADDRNOTAVAIL;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            *err_no = errno;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            *err_no = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int vg_metrics_listen(vg_metrics_t *m, const char *listen, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!listen || !*listen)
        return 0;
    if (m->daemon)
        return set_err(err, errlen, VG_EINVAL, listen, "the metrics server is already listening");
    char host[256], port[8];
    int p;
    const char *reason = NULL;
    if (vg_listen_parse(listen, host, sizeof host, &p, &reason) != 0)
        return set_err(err, errlen, VG_EINVAL, listen, reason);
    snprintf(port, sizeof port, "%d", p);

    int gai = 0, err_no = 0, fd;
    if (host[0]) {
        fd = bind_listen(host, port, &gai, &err_no);
    } else {
        /* every address: IPv6 "::" is dual-stack on Linux; IPv4 when that fails */
        fd = bind_listen("::", port, &gai, &err_no);
        if (fd < 0)
            fd = bind_listen("0.0.0.0", port, &gai, &err_no);
    }
    if (fd < 0)
        return set_err(err, errlen, VG_EIO, listen, gai ? gai_strerror(gai) : strerror(err_no));
    int bound = socket_port(fd);

    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
                                 on_request, m, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (!m->daemon) {
        close(fd);
        return set_err(err, errlen, VG_EIO, listen, "libmicrohttpd could not start its server thread");
    }
    m->port = bound;
    return 0;
}

int vg_metrics_port(const vg_metrics_t *m)
{
    return m->daemon ? m->port : 0;
}

void vg_metrics_free(vg_metrics_t *m)
{
    if (!m)
        return;
    if (m->daemon)
        MHD_stop_daemon(m->daemon); /* joins the thread and closes the listening socket */
    vg_metric_t *x = m->head;
    while (x) {
        vg_metric_t *next = x->next;
        metric_free(x);
        x = next;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}
