/* test_daemon.c — vaegand end to end (ctest label integration): a real
 * redis-server and a real Kafka-protocol broker (vaegan-mockbroker) started
 * here, the built vaegand run as a child process, the outcome read back from
 * Redis.  Every test owns its servers, so they run in any order. */
#include <criterion/criterion.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/kafka.h"
#include "tests/support/proc.h"
#include "tests/support/redis.h"
#include "tests/support/tmpdir.h"

#define TOP_N 10
#define N_ITEMS 300

typedef struct env {
    vgt_redis_t redis;
    vgt_broker_t broker;
    char conf[4200], log[4200], state[4200];
    const char *topics; /* the [kafka] line naming the topics */
    pid_t daemon;
    int partitions;
} env_t;

static env_t E;

static void write_conf(const char *path, const char *extra)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[kafka]\nbrokers = %s\n%s\ngroup = it\noption.session.timeout.ms = 6000\n"
            "option.fetch.wait.max.ms = 10\noption.auto.offset.reset = earliest\n"
            "[redis]\nsocket = %s\n"
            "[serve]\ntop_n = %d\nbatch = 64\n"
            "[state]\ndir = %s\ncheckpoint_interval_s = 2\n"
            "[model]\nhidden = 32\nlatent = 16\nbatch = 64\n"
            "[train]\ninterval_ms = 200\nsteps_per_round = 2\n"
            "[log]\nlevel = debug\n"
            "[metrics]\nlisten =\n%s",
            E.broker.addr, E.topics ? E.topics : "topic = clicks", E.redis.sock, TOP_N, E.state, extra ? extra : "");
    fclose(f);
}

static void setup(int partitions)
{
    vg_tmpdir_make();
    memset(&E, 0, sizeof E);
    E.partitions = partitions;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/redis", vg_tmpdir);
    mkdir(dir, 0755);
    cr_assert_eq(vgt_redis_start(&E.redis, dir, 1), 0, "redis-server did not start");
    cr_assert_eq(vgt_broker_start(&E.broker, VG_MOCKBROKER_BIN, "clicks", partitions), 0, "no broker");
    snprintf(E.conf, sizeof E.conf, "%s/vaegand.conf", vg_tmpdir);
    snprintf(E.log, sizeof E.log, "%s/vaegand.log", vg_tmpdir);
    snprintf(E.state, sizeof E.state, "%s/state", vg_tmpdir);
    write_conf(E.conf, NULL);
}

static void setup16(void) { setup(16); }

static void teardown(void)
{
    if (E.daemon > 0) {
        kill(E.daemon, SIGKILL);
        waitpid(E.daemon, NULL, 0);
    }
    vgt_broker_stop(&E.broker);
    vgt_redis_stop(&E.redis);
    if (getenv("KEEP_TMP"))
        fprintf(stderr, "kept %s\n", vg_tmpdir);
    else
        vg_tmpdir_remove();
}

/* Starts vaegand -c conf [args...] with its output appended to E.log. */
static pid_t spawn(const char *arg, ...)
{
    const char *argv[16] = {VG_VAEGAND_BIN, "-c", E.conf};
    int n = 3;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 15; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = vgt_spawn(argv, E.log);
    cr_assert_geq(pid, 0);
    return pid;
}

/* ---- events ------------------------------------------------------------------- */

typedef struct stream {
    size_t n;
    char **key, **val;
    size_t *len;
} stream_t;

/* users u0..u{U-1}; user k clicks items of its own group (k % 10) mostly. */
static void make_stream(stream_t *s, const char *prefix, int users, size_t n, unsigned seed)
{
    s->n = n;
    s->key = calloc(n, sizeof *s->key);
    s->val = calloc(n, sizeof *s->val);
    s->len = calloc(n, sizeof *s->len);
    srand(seed);
    for (size_t k = 0; k < n; k++) {
        int u = rand() % users, g = u % 10;
        int item = rand() % 4 ? g * (N_ITEMS / 10) + rand() % (N_ITEMS / 10) : rand() % N_ITEMS;
        char key[64], val[256];
        snprintf(key, sizeof key, "%s%d", prefix, u);
        snprintf(val, sizeof val, "{\"user\":\"%s\",\"item\":\"i%d\",\"ts\":%zu}", key, item, 1700000000 + k);
        s->key[k] = strdup(key);
        s->val[k] = strdup(val);
        s->len[k] = strlen(val);
    }
}

static void free_stream(stream_t *s)
{
    for (size_t k = 0; k < s->n; k++) {
        free(s->key[k]);
        free(s->val[k]);
    }
    free(s->key);
    free(s->val);
    free(s->len);
}

static void produce(const stream_t *s, size_t from, size_t to)
{
    int failed = vgt_produce(E.broker.addr, "clicks", (const char *const *)s->key + from,
                             (const char *const *)s->val + from, s->len + from, to - from);
    cr_assert_eq(failed, 0, "%d deliveries failed", failed);
}

/* Expected histories: user -> set of items, as a sorted "u\ti" list. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct expect {
    char **users;
    int n_users;
    size_t entries;
} expect_t;

static void expected(const stream_t *s, expect_t *x)
{
    char **pairs = malloc(s->n * sizeof *pairs);
    for (size_t k = 0; k < s->n; k++) {
        char *item = strstr(s->val[k], "\"item\":\"") + 8;
        size_t il = (size_t)(strchr(item, '"') - item);
        pairs[k] = malloc(strlen(s->key[k]) + il + 2);
        sprintf(pairs[k], "%s\t%.*s", s->key[k], (int)il, item);
    }
    qsort(pairs, s->n, sizeof *pairs, cmp_str);
    x->users = malloc(s->n * sizeof *x->users);
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

static void free_expect(expect_t *x)
{
    for (int k = 0; k < x->n_users; k++)
        free(x->users[k]);
    free(x->users);
}

/* Histories in Redis equal to the stream's: returns how many users differ
 * (missing or extra items), checking membership against the stream. */
static int hist_wrong(redisContext *c, const stream_t *s, const expect_t *x)
{
    size_t total = 0;
    for (int k = 0; k < x->n_users; k++)
        redisAppendCommand(c, "ZCARD hist:%s", x->users[k]);
    for (int k = 0; k < x->n_users; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return x->n_users;
        total += (size_t)r->integer;
        freeReplyObject(r);
    }
    if (total != x->entries)
        return (int)(total > x->entries ? total - x->entries : x->entries - total);
    int wrong = 0; /* same count: every event's item must be there */
    for (size_t k = 0; k < s->n; k++) {
        char *item = strstr(s->val[k], "\"item\":\"") + 8;
        int il = (int)(strchr(item, '"') - item);
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

/* On a failure: the daemon's last log lines on stderr (ctest shows them). */
static void show_log(const char *why)
{
    FILE *f = fopen(E.log, "r");
    if (!f)
        return;
    static char buf[1 << 16];
    fseek(f, 0, SEEK_END);
    long n = ftell(f), from = n > (long)sizeof buf - 1 ? n - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    fprintf(stderr, "---- %s: the end of %s ----\n%s\n----\n", why, E.log, buf);
}

static int wait_hist(const stream_t *s, const expect_t *x, double timeout)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    double end = vg_mono_s() + timeout;
    int wrong;
    while ((wrong = hist_wrong(c, s, x)) != 0 && vg_mono_s() < end) {
        vgt_sleep_ms(200);
        if (c->err) { /* Redis restarted under us */
            redisFree(c);
            c = vgt_redis_connect(&E.redis);
        }
    }
    redisFree(c);
    if (wrong)
        show_log("histories incomplete");
    return wrong;
}

/* Every user's rec list: present, top_n long (or items - history), no
 * history item.  Returns the number of bad lists. */
static int recs_bad(const expect_t *x, int n_items)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    int bad = 0;
    for (int k = 0; k < x->n_users; k++) {
        redisReply *r = redisCommand(c, "ZRANGE rec:%s 0 -1", x->users[k]);
        redisReply *h = redisCommand(c, "ZCARD hist:%s", x->users[k]);
        int want = TOP_N < n_items - (int)h->integer ? TOP_N : n_items - (int)h->integer;
        int ok = r->type == REDIS_REPLY_ARRAY && (int)r->elements == want;
        for (size_t j = 0; ok && j < r->elements; j++) {
            redisReply *s = redisCommand(c, "ZSCORE hist:%s %s", x->users[k], r->element[j]->str);
            ok = s->type == REDIS_REPLY_NIL;
            freeReplyObject(s);
        }
        bad += !ok;
        freeReplyObject(r);
        freeReplyObject(h);
    }
    redisFree(c);
    return bad;
}

static int wait_recs(const expect_t *x, double timeout)
{
    double end = vg_mono_s() + timeout;
    int bad;
    while ((bad = recs_bad(x, N_ITEMS)) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(300);
    if (bad)
        show_log("lists incomplete");
    return bad;
}

static long long zcard(const char *key)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "ZCARD %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static int log_has(const char *text)
{
    FILE *f = fopen(E.log, "r");
    if (!f)
        return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, text) != NULL;
}

/* ---- tests ------------------------------------------------------------------------ */

Test(daemon, fifty_thousand_events_from_several_producers, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "u", 2000, 50000, 1);
    expect_t x;
    expected(&s, &x);
    E.daemon = spawn(NULL);
    /* four producers at once */
    pid_t kids[4];
    for (int p = 0; p < 4; p++) {
        kids[p] = fork();
        if (kids[p] == 0)
            _exit(vgt_produce(E.broker.addr, "clicks", (const char *const *)s.key + p * 12500,
                              (const char *const *)s.val + p * 12500, s.len + p * 12500, 12500) ? 1 : 0);
    }
    for (int p = 0; p < 4; p++) {
        int st;
        waitpid(kids[p], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer %d failed", p);
    }
    cr_assert_eq(wait_hist(&s, &x, 120), 0, "histories differ from the stream");
    cr_assert_eq(zcard("vaegan:users"), x.n_users);
    cr_assert_eq(wait_recs(&x, 120), 0, "some rec:<user> lists are missing, short or hold history");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0, "SIGTERM exits 0");
    E.daemon = 0;
    cr_assert_eq(access(E.state, F_OK), 0);
    char ckpt[4300];
    snprintf(ckpt, sizeof ckpt, "%s/model.ckpt", E.state);
    cr_assert_eq(access(ckpt, F_OK), 0, "the model state is saved on SIGTERM");
    /* every offset committed: the group's committed offsets add up to the stream */
    int64_t committed = 0;
    for (int p = 0; p < E.partitions; p++) {
        int64_t o = vgt_committed(E.broker.addr, "it", "clicks", p);
        committed += o > 0 ? o : 0;
    }
    cr_assert_eq(committed, 50000, "committed offsets cover every event (%lld)", (long long)committed);
    free_expect(&x);
    free_stream(&s);
}

Test(daemon, kill_9_mid_stream_loses_nothing, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "k", 1000, 30000, 2);
    expect_t x;
    expected(&s, &x);
    produce(&s, 0, 15000);
    E.daemon = spawn(NULL);
    double end = vg_mono_s() + 60;
    while (zcard("vaegan:users") < 300 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    produce(&s, 15000, 30000);
    E.daemon = spawn(NULL);
    cr_assert_eq(wait_hist(&s, &x, 180), 0, "histories differ from the stream after kill -9");
    cr_assert_eq(zcard("vaegan:users"), x.n_users, "no stray or missing users");
    cr_assert_eq(wait_recs(&x, 120), 0, "lists rebuilt for every user after the restart");
    free_expect(&x);
    free_stream(&s);
}

Test(daemon, redis_away_for_five_seconds_loses_nothing, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "r", 500, 20000, 3);
    expect_t x;
    expected(&s, &x);
    E.daemon = spawn(NULL);
    produce(&s, 0, 5000);
    double end = vg_mono_s() + 60;
    while (zcard("vaegan:users") < 100 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    vgt_redis_stop(&E.redis);
    produce(&s, 5000, 20000);
    sleep(5);
    cr_assert_eq(vgt_redis_restart(&E.redis), 0);
    cr_assert_eq(wait_hist(&s, &x, 120), 0, "events produced while Redis was away all arrive");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0.1), -1, "the daemon is still running");
    free_expect(&x);
    free_stream(&s);
}

Test(daemon, invalid_events_are_skipped_and_counted, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "v", 200, 3000, 4);
    expect_t x;
    expected(&s, &x);
    static char big[(1 << 20) + 64];
    memset(big, 0, sizeof big);
    strcpy(big, "{\"user\":\"bad-9\",\"item\":\"");
    memset(big + strlen(big), 'y', 1 << 20);
    strcat(big, "\",\"ts\":1}");
    const char *bad[] = {
        "{not json", "{\"user\":\"bad-2\"}", "{\"user\":\"\",\"item\":\"i1\",\"ts\":1}",
        "{\"user\":\"bad-5\",\"item\":\"i\\u0001x\",\"ts\":1}", "{\"user\":\"bad-6\",\"item\":\"i1\",\"ts\":\"now\"}",
        "bad-7,i1", "\x01\x02\x03", big,
        "{\"user\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"item\":\"i1\",\"ts\":1}",
    };
    const int n_bad = sizeof bad / sizeof bad[0];
    size_t lens[16];
    for (int k = 0; k < n_bad; k++)
        lens[k] = strlen(bad[k]);
    write_conf(E.conf, "listen = 127.0.0.1:0\n"); /* a second listen line: must be refused */
    int rc = vgt_wait_exit(spawn("--check-config", NULL), 30);
    cr_assert_neq(rc, 0, "a key set twice is refused");
    write_conf(E.conf, NULL);
    E.daemon = spawn(NULL);
    produce(&s, 0, 1500);
    cr_assert_eq(vgt_produce(E.broker.addr, "clicks", NULL, bad, lens, (size_t)n_bad), 0);
    produce(&s, 1500, 3000);
    cr_assert_eq(wait_hist(&s, &x, 120), 0, "every valid event processed");
    cr_assert_eq(vgt_wait_exit(E.daemon, 0.1), -1, "the daemon is still running");
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "KEYS hist:bad*");
    cr_assert_eq(r->elements, 0, "no history for invalid events");
    freeReplyObject(r);
    redisFree(c);
    cr_assert_eq(zcard("vaegan:users"), x.n_users);
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    /* the log counted them */
    FILE *f = fopen(E.log, "r");
    char line[4096];
    int logged = 0;
    while (fgets(line, sizeof line, f))
        logged += strstr(line, "invalid event skipped") != NULL;
    fclose(f);
    cr_assert_eq(logged, n_bad, "each invalid event logged once (%d)", logged);
    free_expect(&x);
    free_stream(&s);
}

/* The events of stream s whose user is not skip (a copy the caller frees). */
static void without_user(const stream_t *s, const char *skip, stream_t *out)
{
    memset(out, 0, sizeof *out);
    out->key = calloc(s->n, sizeof *out->key);
    out->val = calloc(s->n, sizeof *out->val);
    out->len = calloc(s->n, sizeof *out->len);
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->key[k], skip) != 0) {
            out->key[out->n] = strdup(s->key[k]);
            out->val[out->n] = strdup(s->val[k]);
            out->len[out->n++] = s->len[k];
        }
}

static int64_t committed_total(void)
{
    int64_t sum = 0;
    for (int p = 0; p < E.partitions; p++) {
        int64_t o = vgt_committed(E.broker.addr, "it", "clicks", p);
        sum += o > 0 ? o : 0;
    }
    return sum;
}

/* Another app wrote hist:w5 as a string: Redis answers WRONGTYPE to that
 * user's writes.  Only w5's events are dead-lettered (with Redis' error as
 * reason); the rest of every batch is stored; every offset is committed. */
Test(daemon, a_redis_data_error_dead_letters_only_that_event, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s, good;
    make_stream(&s, "w", 200, 3000, 6);
    without_user(&s, "w5", &good);
    size_t n_bad = s.n - good.n;
    cr_assert_gt(n_bad, 0);
    expect_t x;
    expected(&good, &x);
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "SET hist:w5 not-a-zset"));
    redisFree(c);
    E.topics = "topic = clicks\ndlq_topic = clicks-dlq";
    write_conf(E.conf, NULL);
    E.daemon = spawn(NULL);
    produce(&s, 0, s.n);
    cr_assert_eq(wait_hist(&good, &x, 120), 0, "the other events of the batches are stored");
    static vgt_msg_t dead[64];
    size_t got = vgt_consume(E.broker.addr, "clicks-dlq", dead, n_bad, 60);
    cr_assert_eq(got, n_bad, "%zu of %zu events of w5 dead-lettered", got, n_bad);
    for (size_t k = 0; k < got; k++) {
        cr_assert_str_eq(dead[k].key, "w5");
        cr_assert(strstr(dead[k].value, "\"user\":\"w5\"") && strstr(dead[k].value, "\"item\":\"i"), "%s",
                  dead[k].value);
        cr_assert(strstr(dead[k].error, "WRONGTYPE"), "the reason is Redis' error: %s", dead[k].error);
    }
    cr_assert(log_has("Redis refused the event") && log_has("user w5"), "logged with the user");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    cr_assert_eq(committed_total(), (int64_t)s.n, "every offset committed: stored or dead-lettered");
    free_expect(&x);
    free_stream(&good);
    free_stream(&s);
}

/* Redis' ACLs forbid our history writes: the daemon stops with exit 77 and
 * a message naming the command, the key and the reply, commits nothing it
 * did not store, and once the ACL is fixed a restart stores everything. */
Test(daemon, a_redis_refusal_stops_without_committing, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "r", 100, 1000, 7);
    expect_t x;
    expected(&s, &x);
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "ACL SETUSER admin on nopass ~* &* +@all"));
    freeReplyObject(redisCommand(c, "ACL SETUSER default resetkeys ~vaegan:* ~rec:* ~rm:* -acl"));
    redisFree(c);
    E.daemon = spawn(NULL);
    produce(&s, 0, s.n);
    int rc = vgt_wait_exit(E.daemon, 120);
    E.daemon = 0;
    if (rc != 77)
        show_log("exit status");
    cr_assert_eq(rc, 77, "exit status %d", rc);
    cr_assert(log_has("NOPERM") && log_has("ZADD hist:r") && log_has("not ours to write"), "the message says why");
    cr_assert_eq(committed_total(), 0, "nothing committed");
    c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "AUTH admin x"));
    freeReplyObject(redisCommand(c, "ACL SETUSER default allkeys +@all"));
    redisFree(c);
    E.daemon = spawn(NULL);
    cr_assert_eq(wait_hist(&s, &x, 120), 0, "after the fix, every event is stored");
    free_expect(&x);
    free_stream(&s);
}

Test(daemon, bad_configuration_names_the_key, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_conf(E.conf, "[serve]\ntopn = 5\n");
    char out[4300];
    snprintf(out, sizeof out, "%s.out", E.conf);
    int rc = vgt_wait_exit(spawn("--check-config", NULL), 30);
    cr_assert_neq(rc, 0);
    FILE *f = fopen(E.log, "r");
    char buf[8192] = {0};
    fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert(strstr(buf, "serve.topn"), "the message names the key: %s", buf);
    /* and the daemon itself refuses to start */
    rc = vgt_wait_exit(spawn(NULL), 30);
    cr_assert_neq(rc, 0);
}

/* READY=1 once the group is joined, STOPPING=1 on SIGTERM, on a socket bound here. */
Test(daemon, notifies_systemd, .init = setup16, .fini = teardown, .timeout = 120)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/notify.sock", vg_tmpdir);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(path), sizeof a.sun_path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    E.daemon = spawn(NULL);
    unsetenv("NOTIFY_SOCKET");
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int ready = 0, stopping = 0;
    double end = vg_mono_s() + 60;
    char buf[4096];
    while (!ready && vg_mono_s() < end) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            ready = strstr(buf, "READY=1") != NULL;
        }
    }
    cr_assert(ready, "READY=1 arrives");
    kill(E.daemon, SIGTERM);
    end = vg_mono_s() + 60;
    while (!stopping && vg_mono_s() < end) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            stopping = strstr(buf, "STOPPING=1") != NULL;
        }
    }
    cr_assert(stopping, "STOPPING=1 arrives");
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = 0;
    close(fd);
}

Test(daemon, replay_backfills_histories_and_lists, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "p", 300, 6000, 5);
    expect_t x;
    expected(&s, &x);
    char data[4300];
    snprintf(data, sizeof data, "%s/events.json", vg_tmpdir);
    FILE *f = fopen(data, "w");
    for (size_t k = 0; k < s.n; k++)
        fprintf(f, "%s\n", s.val[k]);
    fprintf(f, "{broken\n");
    fclose(f);
    int rc = vgt_wait_exit(spawn("--replay", data, "--epochs", "2", NULL), 240);
    cr_assert_eq(rc, 0, "--replay exits 0");
    cr_assert_eq(wait_hist(&s, &x, 1), 0, "histories written");
    cr_assert_eq(recs_bad(&x, N_ITEMS), 0, "a list for every user, excluding history");
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "HGET vaegan:model step");
    cr_assert(r->type == REDIS_REPLY_STRING && atoll(r->str) > 0, "vaegan:model step written");
    freeReplyObject(r);
    redisFree(c);
    free_expect(&x);
    free_stream(&s);
}

/* ---- continuous training (issue: online training) ------------------------------ */

static int model_field(const char *field, double *v)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "HGET vaegan:model %s", field);
    int ok = r && r->type == REDIS_REPLY_STRING;
    if (ok)
        *v = atof(r->str);
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

static double wait_step_above(double above, double timeout)
{
    double end = vg_mono_s() + timeout, step = -1;
    while (vg_mono_s() < end && !(model_field("step", &step) && step > above))
        vgt_sleep_ms(50);
    return step;
}

static void del_model(void)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    freeReplyObject(redisCommand(c, "DEL vaegan:model"));
    redisFree(c);
}

Test(training, state_survives_sigterm_and_kill_9, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "t", 300, 6000, 6);
    produce(&s, 0, 3000);
    E.daemon = spawn(NULL);
    cr_assert_gt(wait_step_above(20, 120), 20, "the trainer advances vaegan:model step");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    double t1, a1;
    cr_assert(model_field("step", &t1) && model_field("alpha", &a1));
    cr_assert_gt(a1, 0, "alpha anneals upward from 0");
    del_model();

    E.daemon = spawn(NULL);
    double first = wait_step_above(-1, 120), fa;
    cr_assert_geq(first, t1, "the first step written after a restart continues (%g after %g)", first, t1);
    cr_assert(model_field("alpha", &fa) && fa >= a1, "alpha is not reset (%g after %g)", fa, a1);
    produce(&s, 3000, 6000);
    double t2 = wait_step_above(t1 + 10, 120);
    cr_assert_gt(t2, t1 + 10);
    vgt_sleep_ms(3000); /* a checkpoint (every 2 s) after t2 */
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    del_model();
    E.daemon = spawn(NULL);
    double t3 = wait_step_above(-1, 120);
    cr_assert_geq(t3, t2, "after kill -9 the step resumes from the last checkpoint (%g, %g before)", t3, t2);
    free_stream(&s);
}

Test(training, a_new_item_becomes_recommendable, .init = setup16, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "n", 300, 6000, 7);
    write_conf(E.conf, "[serve]\nrefresh_s = 5\n[train]\nmin_new_events = 1\n");
    produce(&s, 0, 6000);
    E.daemon = spawn(NULL);
    cr_assert_gt(wait_step_above(10, 120), 10);
    /* 100 users click an item nobody has seen; the others must get it from the daemon's refresh */
    char *keys[100], *vals[100];
    size_t lens[100];
    for (int k = 0; k < 100; k++) {
        char v[128];
        keys[k] = s.key[k];
        snprintf(v, sizeof v, "{\"user\":\"%s\",\"item\":\"brand-new\",\"ts\":1800000000}", s.key[k]);
        vals[k] = strdup(v);
        lens[k] = strlen(v);
    }
    cr_assert_eq(vgt_produce(E.broker.addr, "clicks", (const char *const *)keys, (const char *const *)vals, lens, 100), 0);
    redisContext *c = vgt_redis_connect(&E.redis);
    double end = vg_mono_s() + 180;
    int seen = 0;
    while (!seen && vg_mono_s() < end) {
        for (int u = 0; u < 300 && !seen; u++) {
            redisReply *r = redisCommand(c, "ZSCORE rec:n%d brand-new", u);
            seen = r && r->type == REDIS_REPLY_STRING;
            freeReplyObject(r);
        }
        vgt_sleep_ms(500);
    }
    redisFree(c);
    cr_assert(seen, "brand-new appears in some rec:<user> list without a restart");
    for (int k = 0; k < 100; k++)
        free(vals[k]);
    free_stream(&s);
}

/* Writes text to state.dir/name (before the daemon's first start). */
static void write_state_file(const char *name, const char *text)
{
    char path[4400];
    mkdir(E.state, 0755);
    snprintf(path, sizeof path, "%s/%s", E.state, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(training, a_corrupt_state_file_is_refused, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_state_file("model.ckpt", "VAEGANST but not really a state file");
    int rc = vgt_wait_exit(spawn(NULL), 30);
    cr_assert_neq(rc, 0, "a corrupt state file stops the start");
    cr_assert(log_has("model.ckpt") && log_has("--reset-model"), "the message names the file");
    /* --reset-model starts afresh on purpose */
    E.daemon = spawn("--reset-model", NULL);
    cr_assert_eq(vgt_wait_exit(E.daemon, 8), -1, "running with --reset-model");
}

/* ---- topics, event types, erasure ------------------------------------------------ */

static void setup_topics(void)
{
    setup(4);
    vgt_broker_stop(&E.broker);
    const char *topics[] = {"views", "buys"};
    cr_assert_eq(vgt_broker_start_topics(&E.broker, VG_MOCKBROKER_BIN, topics, 2, 8), 0, "no broker");
    E.topics = "topics = views, buys";
    write_conf(E.conf, NULL);
}

static void produce_to(const char *topic, const stream_t *s, size_t from, size_t to)
{
    int failed = vgt_produce(E.broker.addr, topic, (const char *const *)s->key + from,
                             (const char *const *)s->val + from, s->len + from, to - from);
    cr_assert_eq(failed, 0, "%d deliveries failed", failed);
}

/* Events from two topics, kill -9 mid-stream: every (user, item) of both
 * topics ends up in hist:<user> (offsets are kept per topic and partition). */
Test(events, two_topics_kill_9_loses_nothing, .init = setup_topics, .fini = teardown, .timeout = 300)
{
    stream_t s;
    make_stream(&s, "t", 800, 20000, 5);
    expect_t x;
    expected(&s, &x);
    produce_to("views", &s, 0, 5000);
    produce_to("buys", &s, 5000, 10000);
    E.daemon = spawn(NULL);
    double end = vg_mono_s() + 60;
    while (zcard("vaegan:users") < 200 && vg_mono_s() < end)
        vgt_sleep_ms(20);
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    produce_to("buys", &s, 10000, 15000);
    produce_to("views", &s, 15000, 20000);
    E.daemon = spawn(NULL);
    cr_assert_eq(wait_hist(&s, &x, 180), 0, "histories differ from the two topics after kill -9");
    cr_assert_eq(zcard("vaegan:users"), x.n_users);
    free_expect(&x);
    free_stream(&s);
}

static void send_events(const char *const *vals, size_t n)
{
    const char *keys[16];
    for (size_t k = 0; k < n; k++) {
        const char *u = strstr(vals[k], "\"user\":\"") + 8;
        static char buf[16][64];
        snprintf(buf[k], sizeof buf[k], "%.*s", (int)(strchr(u, '"') - u), u);
        keys[k] = buf[k];
    }
    cr_assert_eq(vgt_produce(E.broker.addr, "clicks", keys, vals, NULL, n), 0);
}

static char *zset_text(const char *key)
{
    static char out[1024];
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    size_t o = 0;
    out[0] = '\0';
    for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2)
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%s:%s", o ? " " : "", r->element[k]->str,
                              r->element[k + 1]->str);
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* Waits until key's ZRANGE WITHSCORES text is want. */
static int wait_zset(const char *key, const char *want, double timeout)
{
    double end = vg_mono_s() + timeout;
    while (strcmp(zset_text(key), want) != 0 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    if (strcmp(zset_text(key), want) != 0) {
        show_log(key);
        fprintf(stderr, "%s is \"%s\", want \"%s\"\n", key, zset_text(key), want);
        return 0;
    }
    return 1;
}

/* Interactions of every configured type enter the history, other types are
 * skipped, and between an interaction and a removal of one item the later
 * ts wins whatever the arrival order. */
Test(events, types_and_removals_ordered_by_ts, .init = setup16, .fini = teardown, .timeout = 120)
{
    write_conf(E.conf, "[events]\ntypes = click, purchase\nremoval_types = remove, dislike\n");
    E.daemon = spawn(NULL);
    const char *first[] = {
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":90}",
        "{\"user\":\"r\",\"item\":\"b\",\"ts\":95,\"type\":\"purchase\"}",
        "{\"user\":\"r\",\"item\":\"c\",\"ts\":96,\"type\":\"view\"}",
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":100,\"type\":\"remove\"}",
        "{\"user\":\"r\",\"item\":\"x\",\"ts\":50}",
        "{\"user\":\"o\",\"item\":\"p\",\"ts\":1}", /* items to recommend */
        "{\"user\":\"o\",\"item\":\"q\",\"ts\":2}",
    };
    send_events(first, 7);
    cr_assert(wait_zset("hist:r", "x:50 b:95", 60), "click, purchase kept; view skipped; a removed");
    const char *later[] = {
        "{\"user\":\"r\",\"item\":\"a\",\"ts\":95}",                          /* older than its removal */
        "{\"user\":\"r\",\"item\":\"x\",\"ts\":40,\"type\":\"dislike\"}",   /* older than the click */
        "{\"user\":\"r\",\"item\":\"y\",\"ts\":60}",
    };
    send_events(later, 3);
    cr_assert(wait_zset("hist:r", "x:50 y:60 b:95", 60), "the later ts wins");
    cr_assert_str_eq(zset_text("rm:r"), "x:40 a:100");
    const char *newer[] = {"{\"user\":\"r\",\"item\":\"a\",\"ts\":110}"};
    send_events(newer, 1);
    cr_assert(wait_zset("hist:r", "x:50 y:60 b:95 a:110", 60), "a click newer than the removal wins");
    /* the list is re-ranked and never holds a history item */
    double end = vg_mono_s() + 60;
    int ok = 0;
    while (!ok && vg_mono_s() < end) {
        redisContext *c = vgt_redis_connect(&E.redis);
        redisReply *r = redisCommand(c, "ZRANGE rec:r 0 -1");
        ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        for (size_t k = 0; ok && k < r->elements; k++)
            ok = strchr("xyba", r->element[k]->str[0]) == NULL || r->element[k]->str[1];
        freeReplyObject(r);
        redisFree(c);
        if (!ok)
            vgt_sleep_ms(100);
    }
    cr_assert(ok, "rec:r holds no item of the final history");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0);
    E.daemon = spawn(NULL); /* the removals are read back: an old click stays refused */
    const char *old[] = {"{\"user\":\"r\",\"item\":\"x\",\"ts\":30,\"type\":\"remove\"}",
                         "{\"user\":\"r\",\"item\":\"z\",\"ts\":1,\"type\":\"remove\"}",
                         "{\"user\":\"r\",\"item\":\"z\",\"ts\":0.5}",
                         "{\"user\":\"r\",\"item\":\"w\",\"ts\":61}"};
    send_events(old, 4);
    cr_assert(wait_zset("hist:r", "x:50 y:60 w:61 b:95 a:110", 60), "after a restart the removals still order");
}

static int exists(const char *key)
{
    redisContext *c = vgt_redis_connect(&E.redis);
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    int n = r && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* A forget erases everything about the user; the user's older events —
 * after a kill -9 too — do not bring it back; a newer click starts afresh. */
Test(events, forget_erases_the_user, .init = setup16, .fini = teardown, .timeout = 180)
{
    E.daemon = spawn(NULL);
    const char *items[] = {"{\"user\":\"o\",\"item\":\"p\",\"ts\":1}", /* items to recommend, first */
                           "{\"user\":\"o\",\"item\":\"q\",\"ts\":2}"};
    send_events(items, 2);
    cr_assert(wait_zset("hist:o", "p:1 q:2", 60));
    const char *before[] = {"{\"user\":\"secret-42\",\"item\":\"a\",\"ts\":100}",
                            "{\"user\":\"secret-42\",\"item\":\"b\",\"ts\":110}",
                            "{\"user\":\"g\",\"item\":\"a\",\"ts\":100}"};
    send_events(before, 3);
    double end = vg_mono_s() + 60;
    while ((exists("rec:secret-42") != 1 || exists("rec:g") != 1) && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(exists("rec:secret-42"), 1);
    pid_t f = spawn("--forget", "secret-42", NULL); /* produces {"user":..,"type":"forget","ts":now} */
    cr_assert_eq(vgt_wait_exit(f, 60), 0, "vaegand --forget exits 0");
    end = vg_mono_s() + 60;
    while (zcard("vaegan:forgotten") != 1 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(zcard("vaegan:forgotten"), 1, "one erasure mark");
    cr_assert_eq(exists("hist:secret-42") + exists("rec:secret-42") + exists("rm:secret-42"), 0, "no key left");
    cr_assert_str_eq(zset_text("vaegan:users"), "o:2 g:100");
    cr_assert_null(strstr(zset_text("vaegan:forgotten"), "secret"), "the mark does not hold the id");
    /* later work of the loop and the scorer (a click of g, re-ranked) does not bring the user back */
    const char *g2[] = {"{\"user\":\"g\",\"item\":\"b\",\"ts\":120}"};
    send_events(g2, 1);
    cr_assert(wait_zset("hist:g", "a:100 b:120", 60));
    end = vg_mono_s() + 60;
    while (strstr(zset_text("rec:g"), "b:") && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_null(strstr(zset_text("rec:g"), "b:"), "g re-ranked");
    cr_assert_eq(exists("rec:secret-42"), 0, "no list written for the forgotten user");
    /* kill -9, then the user's earlier events again (as a redelivery would) */
    kill(E.daemon, SIGKILL);
    waitpid(E.daemon, NULL, 0);
    E.daemon = spawn(NULL);
    const char *again[] = {"{\"user\":\"secret-42\",\"item\":\"a\",\"ts\":100}",
                           "{\"user\":\"secret-42\",\"item\":\"c\",\"ts\":200}",
                           "{\"user\":\"g\",\"item\":\"c\",\"ts\":130}"};
    send_events(again, 3);
    cr_assert(wait_zset("hist:g", "a:100 b:120 c:130", 60), "events after them were applied");
    cr_assert_eq(exists("hist:secret-42") + exists("rec:secret-42"), 0, "the user stays forgotten");
    /* a click newer than the forget starts a fresh history */
    const char *fresh[] = {"{\"user\":\"secret-42\",\"item\":\"d\",\"ts\":4000000000}"};
    send_events(fresh, 1);
    cr_assert(wait_zset("hist:secret-42", "d:4000000000", 60), "a fresh history");
    end = vg_mono_s() + 60;
    while (exists("rec:secret-42") != 1 && vg_mono_s() < end)
        vgt_sleep_ms(50);
    cr_assert_eq(exists("rec:secret-42"), 1, "and a list again");
}

/* A damaged erasure key stops the start (forgotten users would come back). */
Test(events, a_damaged_erasure_key_is_refused, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_state_file("forget.key", "short");
    cr_assert_neq(vgt_wait_exit(spawn(NULL), 30), 0, "a damaged key stops the start");
    cr_assert(log_has("forget.key") && log_has("32 bytes"), "the message names the file");
}

/* ---- start-up refusals ------------------------------------------------------------- */


/* A second vaegand, or --replay, on the state directory of a running one is
 * refused instead of overwriting its model. */
Test(daemon, a_state_dir_in_use_is_refused, .init = setup16, .fini = teardown, .timeout = 120)
{
    E.daemon = spawn(NULL);
    double end = vg_mono_s() + 60;
    while (!log_has("history entries") && vg_mono_s() < end) /* past the lock: the histories are loaded */
        vgt_sleep_ms(20);
    cr_assert(log_has("history entries"), "the first daemon started");
    cr_assert_neq(vgt_wait_exit(spawn(NULL), 30), 0, "a second daemon on the same state.dir stops");
    cr_assert(log_has("is in use by another vaegand"), "and says why");
    char data[4300];
    snprintf(data, sizeof data, "%s/events.json", vg_tmpdir);
    FILE *f = fopen(data, "w");
    fputs("{\"user\":\"u\",\"item\":\"i\",\"ts\":1}\n", f);
    fclose(f);
    cr_assert_neq(vgt_wait_exit(spawn("--replay", data, NULL), 30), 0, "so does --replay");
    kill(E.daemon, SIGTERM);
    cr_assert_eq(vgt_wait_exit(E.daemon, 60), 0, "the running one is untouched and stops cleanly");
    E.daemon = 0;
    cr_assert_eq(vgt_wait_exit(spawn("--replay", data, "--epochs", "1", NULL), 120), 0, "free again after its stop");
}

/* A librdkafka option typo is a configuration error (exit 78), for
 * --check-config and at start, before anything else starts. */
Test(daemon, a_kafka_option_typo_is_a_config_error, .init = setup16, .fini = teardown, .timeout = 60)
{
    write_conf(E.conf, "[kafka]\noption.fetch.wait.max.msx = 10\n");
    cr_assert_eq(vgt_wait_exit(spawn("--check-config", NULL), 30), 78);
    cr_assert(log_has("kafka.option.fetch.wait.max.msx"), "the message names the option");
    cr_assert_eq(vgt_wait_exit(spawn(NULL), 30), 78, "the daemon refuses to start the same way");
}
