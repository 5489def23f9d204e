/* metrics.c — what the daemon and Redis say about themselves: vaegand's
 * Prometheus /metrics (a plain HTTP/1.0 GET on loopback, parsed for the
 * counters the phases use and the list latency histogram) and Redis' INFO
 * commandstats.  Called from the main thread only (one static buffer). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

static char g_http[1 << 20];

/* The whole response to GET /metrics in g_http (NUL-terminated), *t the
 * midpoint of the exchange.  0 or -1. */
static int http_get(int port, double *t)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double t0 = vg_mono_s();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    ssize_t r;
    while (n < sizeof g_http - 1 && (r = read(fd, g_http + n, sizeof g_http - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    double t1 = vg_mono_s();
    g_http[n] = '\0';
    *t = 0.5 * (t0 + t1);
    return 0;
}

/* One "name value" line of the exposition into m. */
static void parse_line(char *line, bs_metrics_t *m)
{
    struct {
        const char *name;
        double *v;
    } want[] = {
        {"vaegan_events_stored_total", &m->stored}, {"vaegan_events_total", &m->events},
        {"vaegan_events_invalid_total", &m->invalid}, {"vaegan_lists_written_total", &m->lists},
        {"vaegan_users", &m->users},                {"vaegan_items", &m->items},
        {"vaegan_model_step", &m->step},            {"vaegan_pending_events", &m->pending},
        {"vaegan_kafka_paused", &m->paused},        {"vaegan_list_latency_seconds_sum", &m->lat_sum},
        {"vaegan_list_latency_seconds_count", &m->lat_count},
        {"vaegan_scorer_users_total", &m->scored},
        {"vaegan_scorer_seconds_total{part=\"product\"}", &m->sc_product_s},
        {"vaegan_scorer_seconds_total{part=\"select\"}", &m->sc_select_s},
    };
    char *sp = strrchr(line, ' ');
    if (!sp)
        return;
    *sp = '\0';
    double v = strtod(sp + 1, NULL);
    static const char ki[] = "vaegan_scorer_kernel_info{path=\"";
    if (strncmp(line, ki, sizeof ki - 1) == 0 && v == 1) {
        snprintf(m->kernel, sizeof m->kernel, "%.*s", (int)strcspn(line + sizeof ki - 1, "\""), line + sizeof ki - 1);
        return;
    }
    static const char bk[] = "vaegan_list_latency_seconds_bucket{le=\"";
    if (strncmp(line, bk, sizeof bk - 1) == 0) {
        if (m->nb < BS_MAX_BUCKETS) {
            const char *le = line + sizeof bk - 1;
            m->le[m->nb] = strncmp(le, "+Inf", 4) == 0 ? INFINITY : strtod(le, NULL);
            m->cum[m->nb++] = v;
        }
        return;
    }
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        if (strcmp(line, want[k].name) == 0)
            *want[k].v = v;
}

int bs_scrape(int port, bs_metrics_t *m)
{
    double t;
    if (http_get(port, &t) != 0)
        return -1;
    if (strncmp(g_http, "HTTP/1.", 7) != 0 || strncmp(g_http + 8, " 200", 4) != 0)
        return -1;
    char *body = strstr(g_http, "\r\n\r\n");
    if (!body)
        return -1;
    memset(m, 0, sizeof *m);
    m->t = t;
    for (char *line = body + 4, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (*line == '#' || !*line)
            continue;
        parse_line(line, m);
    }
    return 0;
}

int bs_series_add(bs_series_t *s, const bs_metrics_t *m)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4096;
        bs_metrics_t *x = realloc(s->m, cap * sizeof *x);
        if (!x)
            return -1;
        s->m = x;
        s->cap = cap;
    }
    s->m[s->n++] = *m;
    return 0;
}

/* As Prometheus' histogram_quantile would bound it. */
double bs_hist_quantile(const bs_metrics_t *a, const bs_metrics_t *b, double q)
{
    if (a->nb != b->nb || b->nb == 0)
        return NAN;
    double total = b->cum[b->nb - 1] - a->cum[a->nb - 1];
    if (total <= 0)
        return NAN;
    double want = q * total;
    for (int i = 0; i < b->nb; i++)
        if (b->cum[i] - a->cum[i] >= want)
            return b->le[i];
    return INFINITY;
}

int bs_cmdstat(redisContext *c, const char *cmd, double *calls, double *usec)
{
    *calls = *usec = 0;
    redisReply *r = redisCommand(c, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    char want[80];
    snprintf(want, sizeof want, "cmdstat_%s:calls=%%lf,usec=%%lf", cmd);
    for (const char *line = r->str; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (sscanf(line, want, calls, usec) == 2)
            break;
    freeReplyObject(r);
    return 0;
}

/* Calls and microseconds per call of the busiest commands. */
void bs_print_cmdstats(redisContext *c, const char *what)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return;
    }
    printf("  %s (calls, usec/call, total s):", what);
    double total = 0;
    for (char *line = r->str, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char name[64];
        double calls = 0, usec = 0, per = 0;
        if (sscanf(line, "cmdstat_%63[^:]:calls=%lf,usec=%lf,usec_per_call=%lf", name, &calls, &usec, &per) == 4 &&
            usec > 1e5) {
            printf(" %s %.0f, %.2f, %.1f;", name, calls, per, usec * 1e-6);
            total += usec;
        }
    }
    printf(" (commands taking > 0.1 s: %.1f s in all)\n", total * 1e-6);
    freeReplyObject(r);
}
