/* backlog.c — the backlog phase: N events of `vaegan-gen --users 138493
 * --items 27278` produced before the daemon starts (key = user, lz4,
 * linger.ms = 50).  The mock broker keeps only 5 MiB per partition and drops
 * older data silently: the bytes sent per partition are printed and the
 * partitions' low watermarks checked; the run stops if anything was dropped. */
#include <stdlib.h>
#include <string.h>

#include "bench/stream/internal.h"
#include "common/clock.h"

#ifndef VG_GEN_BIN
#error "VG_GEN_BIN must be defined by the build"
#endif

/* Sends every line of gen with key = its user.  Returns the events sent,
 * *raw the bytes of keys and values. */
static long send_lines(FILE *gen, rd_kafka_t *rk, double *raw)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long sent = 0;
    *raw = 0;
    while ((len = getline(&line, &cap, gen)) > 0 && !bs_stop) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        const char *u = strstr(line, "\"user\":\"");
        if (!u)
            continue;
        u += 8;
        const char *ue = strchr(u, '"');
        if (!ue)
            continue;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(BS_TOPIC), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(u, (size_t)(ue - u)), RD_KAFKA_V_VALUE(line, (size_t)len),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) {
            bs_complain("produce: %s", rd_kafka_err2str(e));
            break;
        }
        *raw += (double)len + (double)(ue - u);
        if (++sent % 10000 == 0)
            rd_kafka_poll(rk, 0);
    }
    free(line);
    return sent;
}

/* What the broker holds and dropped, from the partitions' watermarks. */
static int count_stored(rd_kafka_t *rk, int partitions, bs_backlog_t *res)
{
    for (int p = 0; p < partitions; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, BS_TOPIC, p, &lo, &hi, 10000);
        if (e) {
            bs_complain("watermarks of partition %d: %s", p, rd_kafka_err2str(e));
            return -1;
        }
        res->stored_msgs += hi - lo;
        res->dropped_msgs += lo;
    }
    return 0;
}

/* Produces n events of vaegan-gen with key = user.  0 or -1. */
static int preproduce(const char *addr, long n, int partitions, bs_backlog_t *res)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --users %d --items %d --events %ld --seed 1 --format json", VG_GEN_BIN,
             BS_GEN_USERS, BS_GEN_ITEMS, n);
    FILE *gen = popen(cmd, "r");
    if (!gen) {
        bs_complain("cannot run %s", VG_GEN_BIN);
        return -1;
    }
    const char *kv[] = {"compression.type", "lz4", "linger.ms", "50", "batch.num.messages", "10000",
                        "queue.buffering.max.messages", "500000", "queue.buffering.max.kbytes", "1048576",
                        "statistics.interval.ms", "500", NULL};
    bs_prod_stats_t stats = {-1, 0};
    rd_kafka_t *rk = bs_make_producer(addr, kv, &stats);
    if (!rk) {
        pclose(gen);
        return -1;
    }
    double t0 = vg_mono_s(), raw;
    long sent = send_lines(gen, rk, &raw);
    int gst = pclose(gen);
    rd_kafka_flush(rk, 120000);
    int left = rd_kafka_outq_len(rk);
    res->seconds = vg_mono_s() - t0;
    /* one more statistics callback for the final tx_bytes */
    for (double te = vg_mono_s() + 1.2; vg_mono_s() < te;)
        rd_kafka_poll(rk, 100);
    res->raw_bytes = raw;
    res->tx_bytes = stats.tx_bytes;
    res->stored_msgs = 0;
    res->dropped_msgs = 0;
    int rc = 0;
    if (sent != n || gst != 0 || left || stats.dr_failed) {
        bs_complain("produced %ld of %ld events (generator status %d, %d undelivered, %d failed)", sent, n, gst,
                    left, stats.dr_failed);
        rc = -1;
    }
    if (rc == 0)
        rc = count_stored(rk, partitions, res);
    rd_kafka_destroy(rk);
    return rc;
}

int bs_phase_backlog(bs_run_t *R)
{
    const bs_backlog_t *pr = &R->backlog;
    long n_events = R->o.n_events;
    int partitions = R->o.partitions;
    if (preproduce(R->broker.addr, n_events, partitions, &R->backlog) != 0)
        return -1;
    printf("-- produced %ld events in %.1f s (%.0f/s): %.1f MiB of keys+values, %.1f MiB sent after lz4 "
           "(%.2f MiB per partition, mock limit 5 MiB); broker holds %lld, dropped %lld\n",
           n_events, pr->seconds, n_events / pr->seconds, pr->raw_bytes / 1048576.0, pr->tx_bytes / 1048576.0,
           pr->tx_bytes / 1048576.0 / partitions, pr->stored_msgs, pr->dropped_msgs);
    if (pr->dropped_msgs || pr->stored_msgs != n_events) {
        bs_complain("the mock broker dropped data (5 MiB per partition): use more --partitions or fewer --events");
        return -1;
    }
    return 0;
}
