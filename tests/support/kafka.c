/* kafka.c — see kafka.h.  The broker is a child process that prints its
 * bootstrap address on stdout once it listens; producing and reading
 * committed offsets use short-lived librdkafka handles with logging off. */
#include "tests/support/kafka.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/addr.h"
#include "tests/support/proc.h"

int vgt_tcp_open(const char *addr)
{
    char host[64];
    int port;
    if (vg_hostport_parse(addr, host, sizeof host, &port) != 0)
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

/* Reads one line from fd into b->addr until end_ms (the '\n' dropped).
 * Returns the bytes read; *ok is 1 when a non-empty line ended in time. */
static size_t read_addr_line(int fd, vgt_broker_t *b, long end_ms, int *ok)
{
    size_t n = 0;
    *ok = 0;
    while (n < sizeof b->addr - 1) {
        long left = end_ms - vgt_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = read(fd, b->addr + n, 1);
        if (r <= 0)
            break;
        if (b->addr[n] == '\n') {
            b->addr[n] = '\0';
            *ok = n > 0;
            break;
        }
        n++;
    }
    return n;
}

static void kill_broker(vgt_broker_t *b)
{
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

int vgt_broker_start(vgt_broker_t *b, const char *mockbroker_bin, const char *topic, int partitions)
{
    return vgt_broker_start_topics(b, mockbroker_bin, &topic, 1, partitions);
}

int vgt_broker_start_topics(vgt_broker_t *b, const char *mockbroker_bin, const char *const *topics,
                            size_t n_topics, int partitions)
{
    enum { MAXT = 16 };
    memset(b, 0, sizeof *b);
    if (n_topics > MAXT)
        return -1;
    char parts[16];
    snprintf(parts, sizeof parts, "%d", partitions);
    const char *argv[2 * MAXT + 4];
    size_t argc = 0;
    argv[argc++] = mockbroker_bin;
    for (size_t i = 0; i < n_topics; i++) {
        argv[argc++] = "--topic";
        argv[argc++] = topics[i];
    }
    argv[argc++] = "--partitions";
    argv[argc++] = parts;
    argv[argc] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
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
        execv(mockbroker_bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    b->pid = pid;
    long end = vgt_now_ms() + 15000;
    int ok;
    size_t n = read_addr_line(fds[0], b, end, &ok);
    close(fds[0]);
    char host[64];
    int port;
    if (!ok || vg_hostport_parse(b->addr, host, sizeof host, &port) != 0) {
        fprintf(stderr, "vgt_broker_start: no address from %s (got \"%.*s\")\n", mockbroker_bin, (int)n, b->addr);
        kill_broker(b);
        return -1;
    }
    while (vgt_tcp_open(b->addr) != 0) {
        if (vgt_now_ms() > end) {
            kill_broker(b);
            return -1;
        }
        vgt_sleep_ms(20);
    }
    return 0;
}

void vgt_broker_stop(vgt_broker_t *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGTERM);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

static void count_failed(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err)
        ++*(int *)opaque;
}

void vgt_quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

int vgt_produce(const char *addr, const char *topic, const char *const *keys, const char *const *values,
                const size_t *value_lens, size_t n)
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
    rd_kafka_conf_set_dr_msg_cb(conf, count_failed);
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
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
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

int64_t vgt_committed(const char *addr, const char *group, const char *topic, int32_t partition)
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

size_t vgt_consume(const char *addr, const char *topic, vgt_msg_t *out, size_t max, double timeout_s)
{
    char errstr[256], group[64];
    snprintf(group, sizeof group, "vgt-reader-%d", (int)getpid());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, vgt_quiet_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", addr, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return 0;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return 0;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    size_t n = 0;
    long end = vgt_now_ms() + (long)(timeout_s * 1000);
    while (n < max && vgt_now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            vgt_msg_t *o = &out[n++];
            snprintf(o->key, sizeof o->key, "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
            snprintf(o->value, sizeof o->value, "%.*s", (int)m->len, m->payload ? (const char *)m->payload : "");
            o->error[0] = '\0';
            rd_kafka_headers_t *h = NULL;
            const void *v;
            size_t vl;
            if (rd_kafka_message_headers(m, &h) == 0 &&
                rd_kafka_header_get_last(h, "vaegan-error", &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR)
                snprintf(o->error, sizeof o->error, "%.*s", (int)vl, (const char *)v);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}
