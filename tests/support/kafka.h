/*
 * kafka.h — helpers for integration tests and benchmarks that need a
 * Kafka-protocol broker (library vgtestsupport): start/stop
 * vaegan-mockbroker, produce messages, read a group's committed offset.
 * Everything here blocks; call it outside the uv loop's callbacks.
 *
 * The mockbroker binary's path comes from the build, e.g.
 *   target_compile_definitions(t PRIVATE VG_MOCKBROKER_BIN="$<TARGET_FILE:vaegan-mockbroker>")
 *   add_dependencies(t vaegan-mockbroker)
 * Against the mock use `session.timeout.ms=6000` and `fetch.wait.max.ms=10`
 * in the consumers under test: the mock answers a waiting Fetch only after
 * fetch.wait.max.ms, and a rejoin waits for the session timeout.
 */
#ifndef VG_TESTS_SUPPORT_KAFKA_H
#define VG_TESTS_SUPPORT_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

typedef struct vgt_broker {
    pid_t pid;      /* 0 = not running */
    char addr[128]; /* bootstrap "host:port" */
} vgt_broker_t;

/* Spawns `mockbroker_bin --topic T --partitions K` (stderr inherited; the
 * child gets SIGKILL if the starting thread dies), reads the address line
 * from its stdout (<= 15 s) and waits until it accepts TCP.  Returns 0 or -1
 * (the child is then stopped). */
int vgt_broker_start(vgt_broker_t *b, const char *mockbroker_bin, const char *topic, int partitions);

/* The same with `--topic T` for each of topics[0..n_topics) (at most 16),
 * each created with `partitions` partitions; n_topics 0 passes no --topic
 * (the tool then creates clicks). */
int vgt_broker_start_topics(vgt_broker_t *b, const char *mockbroker_bin, const char *const *topics,
                            size_t n_topics, int partitions);

/* SIGTERM + waitpid.  Safe on a stopped or never started broker. */
void vgt_broker_stop(vgt_broker_t *b);

/* 0 when a TCP connection to the IPv4 "host:port" succeeds, else -1. */
int vgt_tcp_open(const char *addr);

/* A librdkafka log callback that drops every line (rd_kafka_conf_set_log_cb). */
void vgt_quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Produces n messages (keys[i] may be NULL, keys itself may be NULL; value i
 * is values[i] with value_lens[i] bytes, or strlen when value_lens is NULL)
 * with a librdkafka producer (default partitioner: by key), waits for every
 * delivery report (<= 30 s).  Returns the number of failed deliveries
 * (0 = all delivered); -1 when no producer could be made. */
int vgt_produce(const char *addr, const char *topic, const char *const *keys, const char *const *values,
                const size_t *value_lens, size_t n);

/* Committed offset of (group, topic, partition) read with a fresh consumer
 * handle (rd_kafka_committed, <= 10 s), or -1001 (RD_KAFKA_OFFSET_INVALID)
 * when none (or on error). */
int64_t vgt_committed(const char *addr, const char *group, const char *topic, int32_t partition);

/* One message read back by vgt_consume(): key, value and the vaegan-error
 * header ("" when absent), truncated to the buffers. */
typedef struct vgt_msg {
    char key[256], value[4096], error[512];
} vgt_msg_t;

/* Reads topic from its start with a fresh group into out[0..max) until max
 * messages arrived or timeout_s passed; returns how many arrived. */
size_t vgt_consume(const char *addr, const char *topic, vgt_msg_t *out, size_t max, double timeout_s);

#endif
