/*
 * test_metrics_http.c — daemon/metrics.c: the exposition text (HELP, TYPE,
 * cumulative buckets, _sum, _count), the HTTP endpoint spoken to over a
 * plain socket (200 with the values, 404, 405), address errors naming the
 * address, and exact sums under concurrent updates.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/errors.h"
#include "daemon/metrics.h"

static vg_metrics_t *new_registry(void)
{
    vg_metrics_t *m = NULL;
    cr_assert_eq(vg_metrics_init(&m), 0);
    cr_assert_not_null(m);
    return m;
}

Test(metrics, render_exposition)
{
    vg_metrics_t *m = new_registry();
    vg_metric_t *c = vg_metrics_add(m, "vaegan_events_total", "Events read.", VG_METRIC_COUNTER, NULL, 0);
    vg_metric_t *g = vg_metrics_add(m, "vaegan_users", "Users known.\nSecond \\ line", VG_METRIC_GAUGE, NULL, 0);
    const double b[] = {0.5, 1};
    vg_metric_t *h = vg_metrics_add(m, "vaegan_step_seconds", "Step time.", VG_METRIC_HISTOGRAM, b, 2);
    cr_assert(c && g && h);

    vg_metric_inc(c, 3);
    vg_metric_inc(c, 2.5);
    vg_metric_inc(c, -1); /* a counter never goes down */
    vg_metric_set(g, 42);
    vg_metric_inc(g, -2);
    vg_metric_observe(h, 0.25);
    vg_metric_observe(h, 0.5); /* le is inclusive */
    vg_metric_observe(h, 4);
    cr_assert_float_eq(vg_metric_value(c), 5.5, 0);
    cr_assert_float_eq(vg_metric_value(g), 40, 0);
    cr_assert_float_eq(vg_metric_value(h), 3, 0);

    char *text = vg_metrics_render(m);
    cr_assert_not_null(text);
    cr_assert_str_eq(text,
                     "# HELP vaegan_events_total Events read.\n"
                     "# TYPE vaegan_events_total counter\n"
                     "vaegan_events_total 5.5\n"
                     "# HELP vaegan_users Users known.\\nSecond \\\\ line\n"
                     "# TYPE vaegan_users gauge\n"
                     "vaegan_users 40\n"
                     "# HELP vaegan_step_seconds Step time.\n"
                     "# TYPE vaegan_step_seconds histogram\n"
                     "vaegan_step_seconds_bucket{le=\"0.5\"} 2\n"
                     "vaegan_step_seconds_bucket{le=\"1\"} 2\n"
                     "vaegan_step_seconds_bucket{le=\"+Inf\"} 3\n"
                     "vaegan_step_seconds_sum 4.75\n"
                     "vaegan_step_seconds_count 3\n");
    free(text);
    vg_metrics_free(m);
}

/* Labelled series of one family share one HELP/TYPE, rendered together
 * even when added apart; label values are escaped. */
Test(metrics, labelled_family)
{
    vg_metrics_t *m = new_registry();
    vg_metric_t *a = vg_metrics_add_labeled(m, "vaegan_events_ignored_total", "Events of other types",
                                            VG_METRIC_COUNTER, "type", "view");
    vg_metric_t *other = vg_metrics_add(m, "vaegan_other", "x", VG_METRIC_GAUGE, NULL, 0);
    vg_metric_t *b = vg_metrics_add_labeled(m, "vaegan_events_ignored_total", "ignored", VG_METRIC_COUNTER, "type",
                                            "a\"b\\c");
    cr_assert(a && other && b);
    vg_metric_inc(a, 2);
    vg_metric_inc(b, 1);
    char *text = vg_metrics_render(m);
    cr_assert_not_null(text);
    const char *want = "# HELP vaegan_events_ignored_total Events of other types\n"
                       "# TYPE vaegan_events_ignored_total counter\n"
                       "vaegan_events_ignored_total{type=\"view\"} 2\n"
                       "vaegan_events_ignored_total{type=\"a\\\"b\\\\c\"} 1\n"
                       "# HELP vaegan_other x\n";
    cr_assert_not_null(strstr(text, want), "got:\n%s", text);
    const char *second = strstr(text, "# HELP vaegan_events_ignored_total");
    cr_assert_null(strstr(second + 1, "# HELP vaegan_events_ignored_total"), "one header per family");
    free(text);
    vg_metrics_free(m);
}

/* Series with two labels come and go (a partition's lag): the family
 * keeps its help while any series is left, and a removed series is gone
 * from the text. */
Test(metrics, series_with_two_labels_are_removed)
{
    vg_metrics_t *m = new_registry();
    const char *labels[2] = {"topic", "partition"}, *v0[2] = {"clicks", "0"}, *v1[2] = {"clicks", "1"};
    vg_metric_t *p0 = vg_metrics_add_labels(m, "vaegan_lag", "Lag", VG_METRIC_GAUGE, labels, v0, 2);
    vg_metric_t *tail = vg_metrics_add(m, "vaegan_after", "after", VG_METRIC_GAUGE, NULL, 0);
    vg_metric_t *p1 = vg_metrics_add_labels(m, "vaegan_lag", "Lag", VG_METRIC_GAUGE, labels, v1, 2);
    cr_assert(p0 && tail && p1);
    vg_metric_set(p0, 5);
    vg_metric_set(p1, 7);
    char *text = vg_metrics_render(m);
    cr_assert_not_null(strstr(text, "# HELP vaegan_lag Lag\n# TYPE vaegan_lag gauge\n"
                                    "vaegan_lag{topic=\"clicks\",partition=\"0\"} 5\n"
                                    "vaegan_lag{topic=\"clicks\",partition=\"1\"} 7\n"), "got:\n%s", text);
    free(text);
    vg_metrics_remove(m, p0);
    text = vg_metrics_render(m);
    cr_assert_null(strstr(text, "partition=\"0\""), "got:\n%s", text);
    cr_assert_not_null(strstr(text, "# HELP vaegan_lag Lag\n# TYPE vaegan_lag gauge\n"
                                    "vaegan_lag{topic=\"clicks\",partition=\"1\"} 7\n"), "got:\n%s", text);
    free(text);
    vg_metrics_remove(m, p1);
    vg_metrics_remove(m, tail); /* the last one: the list's tail moves back */
    vg_metric_t *again = vg_metrics_add(m, "vaegan_again", "again", VG_METRIC_GAUGE, NULL, 0);
    text = vg_metrics_render(m);
    cr_assert_str_eq(text, "# HELP vaegan_again again\n# TYPE vaegan_again gauge\nvaegan_again 0\n");
    cr_assert_not_null(again);
    free(text);
    vg_metrics_free(m);
}

Test(metrics, default_buckets_and_values)
{
    vg_metrics_t *m = new_registry();
    vg_metric_t *h = vg_metrics_add(m, "lat_seconds", "Latency.", VG_METRIC_HISTOGRAM, NULL, 0);
    vg_metric_t *g = vg_metrics_add(m, "ratio", "", VG_METRIC_GAUGE, NULL, 0);
    vg_metric_observe(h, 0.003);
    vg_metric_observe(h, 20);
    vg_metric_set(g, 0.1);
    char *text = vg_metrics_render(m);
    cr_assert_not_null(text);
    const char *want[] = {
        "lat_seconds_bucket{le=\"0.001\"} 0\n", "lat_seconds_bucket{le=\"0.0025\"} 0\n",
        "lat_seconds_bucket{le=\"0.005\"} 1\n", "lat_seconds_bucket{le=\"0.25\"} 1\n",
        "lat_seconds_bucket{le=\"10\"} 1\n",    "lat_seconds_bucket{le=\"+Inf\"} 2\n",
        "lat_seconds_sum 20.003\n",             "lat_seconds_count 2\n",
        "# HELP ratio \n# TYPE ratio gauge\nratio 0.1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(text, want[i]), "missing %s in:\n%s", want[i], text);
    int buckets = 0;
    for (const char *p = text; (p = strstr(p, "_bucket{")); p++)
        buckets++;
    cr_assert_eq(buckets, 14, "13 default bounds + Inf");
    free(text);
    /* no server: port 0, empty address is "off" */
    cr_assert_eq(vg_metrics_port(m), 0);
    cr_assert_eq(vg_metrics_listen(m, "", NULL, 0), 0);
    cr_assert_eq(vg_metrics_port(m), 0);
    vg_metrics_free(m);
}

/* ---- HTTP over a plain socket -------------------------------------------- */

/* Sends `request` to host:port and returns the whole reply (malloc'd). */
static char *http(int family, const char *host, int port, const char *request)
{
    int fd = socket(family, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        cr_assert_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        cr_assert_eq(inet_pton(AF_INET6, host, &sa.sin6_addr), 1);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    cr_assert_eq(rc, 0, "connect %s:%d: %s", host, port, strerror(errno));
    size_t len = strlen(request);
    cr_assert_eq(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        cr_assert_geq(r, 0, "recv: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static void assert_status(const char *reply, int status)
{
    char want[32];
    snprintf(want, sizeof want, " %d ", status);
    const char *eol = strstr(reply, "\r\n");
    cr_assert(strncmp(reply, "HTTP/1.", 7) == 0 && eol, "not an HTTP reply: %s", reply);
    const char *s = strstr(reply, want);
    cr_assert(s && s < eol, "want status %d, got: %.*s", status, (int)(eol - reply), reply);
}

Test(metrics, http_endpoint)
{
    vg_metrics_t *m = new_registry();
    vg_metric_t *c = vg_metrics_add(m, "vaegan_events_total", "Events read.", VG_METRIC_COUNTER, NULL, 0);
    vg_metric_t *h = vg_metrics_add(m, "vaegan_lat_seconds", "Latency.", VG_METRIC_HISTOGRAM, NULL, 0);
    char err[256] = "untouched";
    cr_assert_eq(vg_metrics_listen(m, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(err, "");
    int port = vg_metrics_port(m);
    cr_assert(port > 0 && port < 65536);
    vg_metric_inc(c, 7);
    vg_metric_observe(h, 0.02);

    char *r = http(AF_INET, "127.0.0.1", port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_status(r, 200);
    cr_assert_not_null(strstr(r, "text/plain; version=0.0.4"), "%s", r);
    cr_assert_not_null(strstr(r, "\r\n\r\n# HELP vaegan_events_total Events read.\n"), "%s", r);
    cr_assert_not_null(strstr(r, "\nvaegan_events_total 7\n"), "%s", r);
    cr_assert_not_null(strstr(r, "\nvaegan_lat_seconds_bucket{le=\"0.025\"} 1\n"), "%s", r);
    cr_assert_not_null(strstr(r, "\nvaegan_lat_seconds_count 1\n"), "%s", r);
    free(r);

    /* values move between scrapes */
    vg_metric_inc(c, 1);
    r = http(AF_INET, "127.0.0.1", port, "GET /metrics HTTP/1.0\r\n\r\n");
    assert_status(r, 200);
    cr_assert_not_null(strstr(r, "\nvaegan_events_total 8\n"), "%s", r);
    free(r);

    r = http(AF_INET, "127.0.0.1", port, "GET /other HTTP/1.0\r\n\r\n");
    assert_status(r, 404);
    free(r);
    r = http(AF_INET, "127.0.0.1", port, "GET / HTTP/1.0\r\n\r\n");
    assert_status(r, 404);
    free(r);
    r = http(AF_INET, "127.0.0.1", port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert_status(r, 405);
    free(r);
    r = http(AF_INET, "127.0.0.1", port, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_status(r, 200);
    cr_assert_null(strstr(r, "# HELP"), "HEAD has no body");
    free(r);

    /* a second listen is refused */
    cr_assert_eq(vg_metrics_listen(m, "127.0.0.1:0", err, sizeof err), VG_EINVAL);
    cr_assert_not_null(strstr(err, "127.0.0.1:0"), "%s", err);
    vg_metrics_free(m);
}

Test(metrics, host_names_and_ipv6)
{
    vg_metrics_t *m = new_registry();
    char err[256];
    cr_assert_eq(vg_metrics_listen(m, "localhost:0", err, sizeof err), 0, "%s", err);
    cr_assert_gt(vg_metrics_port(m), 0);
    vg_metrics_free(m);

    m = new_registry();
    vg_metrics_add(m, "up", "Up.", VG_METRIC_GAUGE, NULL, 0);
    int rc = vg_metrics_listen(m, "[::1]:0", err, sizeof err);
    if (rc == VG_EIO) {
        cr_log_warn("no IPv6 loopback here: %s", err);
    } else {
        cr_assert_eq(rc, 0, "%s", err);
        char *r = http(AF_INET6, "::1", vg_metrics_port(m), "GET /metrics HTTP/1.0\r\n\r\n");
        assert_status(r, 200);
        cr_assert_not_null(strstr(r, "\nup 0\n"), "%s", r);
        free(r);
    }
    vg_metrics_free(m);

    /* every address: reachable over IPv4 loopback */
    m = new_registry();
    cr_assert_eq(vg_metrics_listen(m, ":0", err, sizeof err), 0, "%s", err);
    char *r = http(AF_INET, "127.0.0.1", vg_metrics_port(m), "GET /metrics HTTP/1.0\r\n\r\n");
    assert_status(r, 200);
    free(r);
    vg_metrics_free(m);
}

Test(metrics, bad_addresses)
{
    static const struct {
        const char *addr;
        int rc;
    } cases[] = {
        {"127.0.0.1:99999", VG_EINVAL}, {"127.0.0.1", VG_EINVAL},   {"127.0.0.1:", VG_EINVAL},
        {"127.0.0.1:9x", VG_EINVAL},    {"::1:9464", VG_EINVAL},    {"[::1:9464", VG_EINVAL},
        {"[]:9464", VG_EINVAL},         {"127.0.0.1:-1", VG_EINVAL}, {"300.1.2.3:0", VG_EIO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_metrics_t *m = new_registry();
        char err[256] = "";
        int rc = vg_metrics_listen(m, cases[i].addr, err, sizeof err);
        cr_assert_eq(rc, cases[i].rc, "%s: rc %d (%s)", cases[i].addr, rc, err);
        cr_assert_not_null(strstr(err, cases[i].addr), "error names the address: %s", err);
        cr_assert_eq(vg_metrics_port(m), 0);
        vg_metrics_free(m);
    }

    /* a port in use: the reason is the system's */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char addr[64], err[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    vg_metrics_t *m = new_registry();
    cr_assert_eq(vg_metrics_listen(m, addr, err, sizeof err), VG_EIO);
    cr_assert_not_null(strstr(err, addr), "%s", err);
    cr_assert_not_null(strstr(err, strerror(EADDRINUSE)), "%s", err);
    vg_metrics_free(m);
    close(fd);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* vg_metrics_free stops the server and closes the listening socket. */
Test(metrics, free_closes_everything)
{
    int before = count_fds();
    for (int i = 0; i < 3; i++) {
        vg_metrics_t *m = new_registry();
        vg_metrics_add(m, "up", "Up.", VG_METRIC_GAUGE, NULL, 0);
        char err[256];
        cr_assert_eq(vg_metrics_listen(m, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
        char *r = http(AF_INET, "127.0.0.1", vg_metrics_port(m), "GET /metrics HTTP/1.0\r\n\r\n");
        free(r);
        vg_metrics_free(m);
    }
    cr_assert_eq(count_fds(), before, "file descriptors leaked");
}

/* ---- concurrency -------------------------------------------------------- */

#define N_INC 500000

struct worker {
    vg_metric_t *c, *g, *h;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < N_INC; i++) {
        vg_metric_inc(w->c, 1);
        vg_metric_inc(w->g, 0.5);
        vg_metric_observe(w->h, (i & 1) ? 0.002 : 2.0);
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_exact, .timeout = 60)
{
    vg_metrics_t *m = new_registry();
    struct worker w = {
        vg_metrics_add(m, "c_total", "C.", VG_METRIC_COUNTER, NULL, 0),
        vg_metrics_add(m, "g", "G.", VG_METRIC_GAUGE, NULL, 0),
        vg_metrics_add(m, "h_seconds", "H.", VG_METRIC_HISTOGRAM, NULL, 0),
    };
    char err[256];
    cr_assert_eq(vg_metrics_listen(m, "127.0.0.1:0", err, sizeof err), 0, "%s", err);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &w), 0);
    for (int i = 0; i < 5; i++) { /* scrapes while they run */
        char *r = http(AF_INET, "127.0.0.1", vg_metrics_port(m), "GET /metrics HTTP/1.0\r\n\r\n");
        assert_status(r, 200);
        free(r);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_float_eq(vg_metric_value(w.c), 2.0 * N_INC, 0);
    cr_assert_float_eq(vg_metric_value(w.g), 0.5 * 2 * N_INC, 0);
    cr_assert_float_eq(vg_metric_value(w.h), 2.0 * N_INC, 0);
    char *text = vg_metrics_render(m);
    char want[128];
    snprintf(want, sizeof want, "h_seconds_bucket{le=\"0.0025\"} %d\n", N_INC);
    cr_assert_not_null(strstr(text, want), "%s", text);
    snprintf(want, sizeof want, "h_seconds_bucket{le=\"2.5\"} %d\n", 2 * N_INC);
    cr_assert_not_null(strstr(text, want), "%s", text);
    snprintf(want, sizeof want, "c_total %d\n", 2 * N_INC);
    cr_assert_not_null(strstr(text, want), "%s", text);
    free(text);
    vg_metrics_free(m);
}
