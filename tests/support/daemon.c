/* daemon.c — see daemon.h.  The servers come from redis.h and kafka.h (or
 * stream/mock.h in this process), the child from proc.h; the log is re-read
 * from the start at every question (it is small, and a restarted daemon
 * appends to it); /metrics is read with a plain HTTP/1.0 GET. */
#include "tests/support/daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/proc.h"

/* ---- the servers and the daemon ------------------------------------------------ */

static int start_broker(vgt_env_t *e, const vgt_env_opts_t *o)
{
    static const char *const clicks[] = {"clicks"};
    const char *const *topics = o->topics ? o->topics : clicks;
    size_t n = o->topics ? o->n_topics : 1;
    if (o->mockbroker) {
        if (vgt_broker_start_topics(&e->broker, o->mockbroker, topics, n, o->partitions) != 0)
            return -1;
        snprintf(e->addr, sizeof e->addr, "%s", e->broker.addr);
        return 0;
    }
    char err[256];
    if (vg_mock_start(&e->mock, topics, n, o->partitions, e->addr, sizeof e->addr, err, sizeof err) != 0) {
        fprintf(stderr, "vgt_env_start: no in-process broker: %s\n", err);
        e->mock = NULL;
        return -1;
    }
    return 0;
}

int vgt_env_start(vgt_env_t *e, const char *dir, const vgt_env_opts_t *o)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    snprintf(e->conf, sizeof e->conf, "%s/vaegand.conf", e->dir);
    snprintf(e->log, sizeof e->log, "%s/vaegand.log", e->dir);
    snprintf(e->state, sizeof e->state, "%s/state", e->dir);
    e->vaegand = o->vaegand;
    e->partitions = o->partitions;
    e->group = o->group;
    e->settings = o->settings;
    char rdir[320];
    snprintf(rdir, sizeof rdir, "%s/redis", e->dir);
    mkdir(rdir, 0755);
    if (vgt_redis_start(&e->redis, rdir, o->aof) != 0) {
        fprintf(stderr, "vgt_env_start: redis-server did not start\n");
        return -1;
    }
    if (start_broker(e, o) != 0 || (o->metrics && (e->metrics_port = vgt_free_port()) < 0) ||
        vgt_env_write_conf(e, NULL) != 0) {
        vgt_env_stop(e);
        return -1;
    }
    return 0;
}

void vgt_env_stop(vgt_env_t *e)
{
    if (e->daemon > 0) {
        kill(e->daemon, SIGKILL);
        waitpid(e->daemon, NULL, 0);
        e->daemon = 0;
    }
    vgt_broker_stop(&e->broker);
    vg_mock_stop(e->mock);
    e->mock = NULL;
    vgt_redis_stop(&e->redis);
}

int vgt_env_finish(vgt_env_t *e)
{
    vgt_env_stop(e);
    if (!getenv("KEEP_TMP"))
        return 0;
    fprintf(stderr, "kept %s\n", e->dir);
    return 1;
}

int vgt_env_write_conf(const vgt_env_t *e, const char *extra)
{
    FILE *f = fopen(e->conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "[kafka]\nbrokers = %s\n%s\ngroup = %s\noption.session.timeout.ms = 6000\n"
            "option.fetch.wait.max.ms = 10\noption.auto.offset.reset = earliest\n"
            "[redis]\n%s%s\n[state]\ndir = %s\n%s",
            e->addr, e->topics ? e->topics : "topic = clicks", e->group ? e->group : "it",
            e->redis_conf ? "" : "socket = ", e->redis_conf ? e->redis_conf : e->redis.sock,
            e->state, e->settings ? e->settings : "");
    if (e->metrics_port > 0)
        fprintf(f, "[metrics]\nlisten = 127.0.0.1:%d\n", e->metrics_port);
    else
        fprintf(f, "[metrics]\nlisten =\n");
    fputs(extra ? extra : "", f);
    return fclose(f) == 0 ? 0 : -1;
}

pid_t vgt_env_spawn(const vgt_env_t *e, const char *arg, ...)
{
    const char *argv[16] = {e->vaegand, "-c", e->conf};
    int n = 3;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 15; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = vgt_spawn(argv, e->log);
    if (pid <= 0)
        abort();
    return pid;
}

int64_t vgt_env_committed(const vgt_env_t *e, const char *topic)
{
    int64_t sum = 0;
    for (int p = 0; p < e->partitions; p++) {
        int64_t o = vgt_committed(e->addr, e->group ? e->group : "it", topic, p);
        sum += o > 0 ? o : 0;
    }
    return sum;
}

/* ---- the daemon's log ------------------------------------------------------------ */

int vgt_log_lines(const vgt_env_t *e, const char *a, const char *b)
{
    FILE *f = fopen(e->log, "r");
    if (!f)
        return 0;
    static char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

int vgt_log_has(const vgt_env_t *e, const char *text) { return vgt_log_lines(e, text, NULL) > 0; }

int vgt_wait_log(const vgt_env_t *e, const char *a, const char *b, int at_least, double timeout_s)
{
    double end = vg_mono_s() + timeout_s;
    while (vgt_log_lines(e, a, b) < at_least && vg_mono_s() < end)
        vgt_sleep_ms(50);
    return vgt_log_lines(e, a, b);
}

double vgt_log_number_after(const vgt_env_t *e, const char *text)
{
    FILE *f = fopen(e->log, "r");
    if (!f)
        return -1;
    static char line[8192];
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *at = strstr(line, text);
        if (at)
            v = strtod(at + strlen(text), NULL);
    }
    fclose(f);
    return v;
}

void vgt_show_log(const vgt_env_t *e, const char *why)
{
    FILE *f = fopen(e->log, "r");
    if (!f)
        return;
    static char buf[1 << 16];
    fseek(f, 0, SEEK_END);
    long n = ftell(f), from = n > (long)sizeof buf - 1 ? n - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    fprintf(stderr, "---- %s: the end of %s ----\n%s\n----\n", why, e->log, buf);
}

/* ---- Redis -------------------------------------------------------------------------- */

long long vgt_zcard(const vgt_env_t *e, const char *key)
{
    redisContext *c = vgt_redis_connect(&e->redis);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "ZCARD %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* ---- /metrics and sd_notify ------------------------------------------------------ */

int vgt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? ntohs(a.sin_port) : -1;
}

char *vgt_metrics_text(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    if (buf && fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
        ssize_t k = write(fd, req, sizeof req - 1);
        while (k > 0) {
            if (cap - n < 4096) {
                char *more = realloc(buf, cap *= 2);
                if (!more)
                    break;
                buf = more;
            }
            if ((k = read(fd, buf + n, cap - 1 - n)) > 0)
                n += (size_t)k;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!buf || !n) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

double vgt_metric(int port, const char *name)
{
    char *text = vgt_metrics_text(port);
    if (!text)
        return -1;
    char want[256];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *line = strstr(text, want);
    double v = line ? atof(line + strlen(want)) : -2;
    free(text);
    return v;
}

/* A unix datagram socket bound at path, reads time out after 200 ms; -1 on failure. */
static int notify_open(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return -1;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) {
        close(fd);
        return -1;
    }
    return fd;
}

int vgt_env_spawn_notify(vgt_env_t *e)
{
    char path[340];
    snprintf(path, sizeof path, "%s/notify.sock", e->dir);
    int fd = notify_open(path);
    if (fd < 0)
        return -1;
    setenv("NOTIFY_SOCKET", path, 1); /* inherited by the child; gone again in this process at once */
    e->daemon = vgt_env_spawn(e, NULL);
    unsetenv("NOTIFY_SOCKET");
    return fd;
}

int vgt_notify_wait(int fd, const char *text, double timeout_s)
{
    double end = vg_mono_s() + timeout_s;
    char buf[4096];
    while (vg_mono_s() < end) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            if (strstr(buf, text))
                return 1;
        }
    }
    return 0;
}

/* ---- event streams and the histories they should leave ----------------------- */

void vgt_stream_make(vgt_stream_t *s, const char *prefix, int users, int items, size_t n, unsigned seed)
{
    s->n = n;
    s->key = calloc(n, sizeof *s->key);
    s->val = calloc(n, sizeof *s->val);
    s->len = calloc(n, sizeof *s->len);
    srand(seed);
    for (size_t k = 0; k < n; k++) {
        int u = rand() % users, g = u % 10;
        int item = rand() % 4 ? g * (items / 10) + rand() % (items / 10) : rand() % items;
        char key[64], val[256];
        snprintf(key, sizeof key, "%s%d", prefix, u);
        snprintf(val, sizeof val, "{\"user\":\"%s\",\"item\":\"i%d\",\"ts\":%zu}", key, item, 1700000000 + k);
        s->key[k] = strdup(key);
        s->val[k] = strdup(val);
        s->len[k] = strlen(val);
    }
}

void vgt_stream_free(vgt_stream_t *s)
{
    for (size_t k = 0; k < s->n; k++) {
        free(s->key[k]);
        free(s->val[k]);
    }
    free(s->key);
    free(s->val);
    free(s->len);
}

int vgt_stream_produce(const vgt_env_t *e, const char *topic, const vgt_stream_t *s, size_t from, size_t to)
{
    return vgt_produce(e->addr, topic, (const char *const *)s->key + from, (const char *const *)s->val + from,
                       s->len + from, to - from);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The item of event value v (a stream's JSON: "item" is a string) and its length. */
static const char *item_of(const char *v, int *len)
{
    const char *item = strstr(v, "\"item\":\"") + 8;
    *len = (int)(strchr(item, '"') - item);
    return item;
}

void vgt_expect_make(const vgt_stream_t *s, vgt_expect_t *x)
{
    char **pairs = malloc(s->n * sizeof *pairs); /* "user\titem", sorted: one run per user */
    for (size_t k = 0; k < s->n; k++) {
        int il;
        const char *item = item_of(s->val[k], &il);
        pairs[k] = malloc(strlen(s->key[k]) + (size_t)il + 2);
        sprintf(pairs[k], "%s\t%.*s", s->key[k], il, item);
    }
    qsort(pairs, s->n, sizeof *pairs, cmp_str);
    x->users = malloc((s->n ? s->n : 1) * sizeof *x->users);
    x->n_users = 0;
    x->entries = 0;
    for (size_t k = 0; k < s->n; k++) {
        if (k && strcmp(pairs[k], pairs[k - 1]) == 0)
            continue;
        x->entries++;
        size_t ul = (size_t)(strchr(pairs[k], '\t') - pairs[k]);
        if (!x->n_users || strncmp(x->users[x->n_users - 1], pairs[k], ul) || x->users[x->n_users - 1][ul])
            x->users[x->n_users++] = strndup(pairs[k], ul);
    }
    for (size_t k = 0; k < s->n; k++)
        free(pairs[k]);
    free(pairs);
}

void vgt_expect_free(vgt_expect_t *x)
{
    for (int k = 0; k < x->n_users; k++)
        free(x->users[k]);
    free(x->users);
}

int vgt_hist_wrong(redisContext *c, const vgt_stream_t *s, const vgt_expect_t *x)
{
    size_t total = 0;
    for (int k = 0; k < x->n_users; k++)
        redisAppendCommand(c, "ZCARD hist:%s", x->users[k]);
    for (int k = 0; k < x->n_users; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return x->n_users;
        total += r->type == REDIS_REPLY_INTEGER ? (size_t)r->integer : 0;
        freeReplyObject(r);
    }
    if (total != x->entries)
        return (int)(total > x->entries ? total - x->entries : x->entries - total);
    int wrong = 0; /* same count: every event's item must be there */
    for (size_t k = 0; k < s->n; k++) {
        int il;
        const char *item = item_of(s->val[k], &il);
        redisAppendCommand(c, "ZSCORE hist:%s %b", s->key[k], item, (size_t)il);
    }
    for (size_t k = 0; k < s->n; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return -1;
        wrong += r->type != REDIS_REPLY_STRING;
        freeReplyObject(r);
    }
    return wrong;
}

int vgt_wait_hist(const vgt_env_t *e, const vgt_stream_t *s, const vgt_expect_t *x, double timeout_s)
{
    redisContext *c = vgt_redis_connect(&e->redis);
    double end = vg_mono_s() + timeout_s;
    int wrong;
    while ((wrong = c ? vgt_hist_wrong(c, s, x) : x->n_users) != 0 && vg_mono_s() < end) {
        vgt_sleep_ms(200);
        if (!c || c->err) { /* Redis restarted under us */
            redisFree(c);
            c = vgt_redis_connect(&e->redis);
        }
    }
    redisFree(c);
    if (wrong)
        vgt_show_log(e, "histories incomplete");
    return wrong;
}

int vgt_preload_histories(const vgt_env_t *e, const char *prefix, int users, int n_items)
{
    redisContext *c = vgt_redis_connect(&e->redis);
    if (!c)
        return -1;
    int bad = 0;
    for (int from = 0; from < users && !bad; from += 10000) {
        int to = from + 10000 < users ? from + 10000 : users;
        for (int k = from; k < to; k++) {
            redisAppendCommand(c, "ZADD hist:%s%d 1700000000 i%d", prefix, k, k % n_items);
            redisAppendCommand(c, "ZADD vaegan:users 1700000000 %s%d", prefix, k);
        }
        for (int k = 0; k < 2 * (to - from); k++) {
            redisReply *r = NULL;
            bad |= redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type != REDIS_REPLY_INTEGER;
            freeReplyObject(r);
        }
    }
    redisFree(c);
    return bad ? -1 : 0;
}

double vgt_wait_metric(int port, const char *name, double at_least, double timeout_s)
{
    double end = vg_mono_s() + timeout_s, v;
    while (!((v = vgt_metric(port, name)) >= at_least) && vg_mono_s() < end)
        vgt_sleep_ms(100);
    return v;
}
