/*
 * kafka_util.h — helpers for integration tests that need a Kafka-protocol
 * broker: start/stop vaegan-mockbroker, produce messages, read a group's
 * committed offset.  Header-only (static inline; include it in one test
 * file).  Everything here blocks; call it outside the uv loop's callbacks.
 *
 * The mockbroker binary's path comes from the build, e.g.
 *   target_compile_definitions(t PRIVATE VG_MOCKBROKER_BIN="$<TARGET_FILE:vaegan-mockbroker>")
 *   add_dependencies(t vaegan-mockbroker)
 * Against the mock use `session.timeout.ms=6000` and `fetch.wait.max.ms=10`
 * in the consumers under test (see NOTES.md).
 */
#ifndef VG_TESTS_KAFKA_UTIL_H
#define VG_TESTS_KAFKA_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct vgt_broker {
    pid_t pid;      /* 0 = not running */
    char addr[128]; /* bootstrap "host:port" */
} vgt_broker_t;

#ifndef VGT_SLEEP_MS /* shared by the test helper headers */
#define VGT_SLEEP_MS
static inline void vgt_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
#endif

static inline long vgt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* "host:port" -> host (NUL-terminated, at most hostlen) and port.  0 or -1. */
static inline int vgt_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= hostlen)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p <= 0 || p > 65535)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (int)p;
    return 0;
}

/* 0 when a TCP connection to the IPv4 "host:port" succeeds. */
static inline int vgt_tcp_open(const char *addr)
{
    char host[64];
    int port;
    if (vgt_split_addr(addr, host, sizeof host, &port) != 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    return rc == 0 ? 0 : -1;
}

/* Spawns `mockbroker_bin --topic T --partitions K` (stderr inherited; the
 * child gets SIGKILL if this process dies), reads the address line from its
 * stdout (<= 15 s) and waits until it accepts TCP.  Returns 0 or -1 (the
 * child is then stopped). */
static inline int vgt_broker_start(vgt_broker_t *b, const char *mockbroker_bin,
                                   const char *topic, int partitions)
{
    memset(b, 0, sizeof *b);
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    char parts[16];
    snprintf(parts, sizeof parts, "%d", partitions);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(mockbroker_bin, mockbroker_bin, "--topic", topic, "--partitions", parts,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    b->pid = pid;
    size_t n = 0;
    long end = vgt_now_ms() + 15000;
    int ok = 0;
    while (!ok && n < sizeof b->addr - 1) {
        long left = end - vgt_now_ms();
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = read(fds[0], b->addr + n, 1);
        if (r <= 0)
            break;
        if (b->addr[n] == '\n') {
            b->addr[n] = '\0';
            ok = n > 0;
            break;
        }
        n++;
    }
    close(fds[0]);
    char host[64];
    int port;
    if (!ok || vgt_split_addr(b->addr, host, sizeof host, &port) != 0) {
        fprintf(stderr, "vgt_broker_start: no address from %s (got \"%.*s\")\n", mockbroker_bin,
                (int)n, b->addr);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        b->pid = 0;
        return -1;
    }
    while (vgt_tcp_open(b->addr) != 0) {
        if (vgt_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            b->pid = 0;
            return -1;
        }
        vgt_sleep_ms(20);
    }
    return 0;
}

/* SIGTERM + waitpid.  Safe on a stopped or never started broker. */
static inline void vgt_broker_stop(vgt_broker_t *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGTERM);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

static inline void vgt_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err)
        ++*(int *)opaque;
}

static inline void vgt_quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                                 const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* Produces n messages (keys[i] may be NULL, keys itself may be NULL; value i
 * is values[i] with value_lens[i] bytes, or strlen when value_lens is NULL)
 * with a librdkafka producer (default partitioner: by key), waits for every
 * delivery report (<= 30 s).  Returns the number of failed deliveries
 * (0 = all delivered); -1 when no producer could be made. */
static inline int vgt_produce(const char *addr, const char *topic, const char *const *keys,
                              const char *const *values, const size_t *value_lens, size_t n)
{
    char errstr[256];
    int failed = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "message.max.bytes", "10000000", errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, vgt_dr_cb);
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *key = keys ? keys[i] : NULL;
        size_t vlen = value_lens ? value_lens[i] : strlen(values[i]);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                      RD_KAFKA_V_VALUE((void *)values[i], vlen),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e)
            failed++;
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 30000);
    failed += rd_kafka_outq_len(rk);
    rd_kafka_destroy(rk);
    return failed;
}

/* Committed offset of (group, topic, partition) read with a fresh consumer
 * handle (rd_kafka_committed, <= 10 s), or -1001 (RD_KAFKA_OFFSET_INVALID)
 * when none (or on error). */
static inline int64_t vgt_committed(const char *addr, const char *group, const char *topic,
                                    int32_t partition)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_OFFSET_INVALID;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_OFFSET_INVALID;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    int64_t off = RD_KAFKA_OFFSET_INVALID;
    if (rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && !l->elems[0].err)
        off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

#endif
