/*
 * mock.h — an in-process Kafka-protocol broker: librdkafka's mock cluster
 * (rdkafka_mock.h) with one broker on a random loopback port.
 *
 * Used by `kafka.brokers = embedded`, by vaegan-mockbroker and by tests.
 * Real clients (kcat, other processes) can reach it: produce, consume,
 * consumer groups and committed offsets work.  Limits of librdkafka 2.0.2's
 * mock: it cannot be given a port (callers read the address), it keeps at
 * most 5 MiB per partition (older data is dropped silently) and nothing
 * survives vg_mock_stop().  Topics a producer writes to that do not exist
 * are created on first use.
 */
#ifndef VG_MOCK_H
#define VG_MOCK_H

#include <stddef.h>

#include "common/errors.h"

typedef struct vg_mock vg_mock_t;

/* Starts a one-broker mock cluster on a random loopback port; creates each
 * literal topic of topics[0..n_topics) with `partitions` partitions (>= 1
 * when a topic is created).  Entries starting with ^ (a consumer's regex
 * subscription, kafka.h) name no topic and are skipped, as are NULL or
 * empty ones and repeats; n_topics 0 (topics may then be NULL) creates
 * none.  Writes the bootstrap address "host:port" (NUL-terminated,
 * truncated to addrlen) into addr.  The broker runs on librdkafka's own
 * threads until vg_mock_stop().  *out belongs to the caller; topics stays
 * the caller's.  Returns 0, or VG_EINVAL (partitions < 1 with a topic to
 * create), VG_ENOMEM or VG_EKAFKA with the reason in err. */
int vg_mock_start(vg_mock_t **out, const char *const *topics, size_t n_topics, int partitions,
                  char *addr, size_t addrlen, char *err, size_t errlen);

/* Fault injection, for tests that own the broker in their own process.
 * Takes the one broker down (down = 1: connections are closed and refused)
 * or up again (0).  Returns 0 or VG_EKAFKA. */
int vg_mock_set_down(vg_mock_t *m, int down);

/* Makes the broker answer the next n requests of the Kafka API api_key
 * (e.g. 8 = OffsetCommit, 11 = JoinGroup, 12 = Heartbeat) with errors[0..n)
 * (Kafka error codes, e.g. 27 = REBALANCE_IN_PROGRESS, 15 =
 * COORDINATOR_NOT_AVAILABLE), one each, in order. */
void vg_mock_push_errors(vg_mock_t *m, int api_key, size_t n, const int *errors);

/* Stops the broker (clients connected to it see it go away) and frees m.
 * NULL is ok. */
void vg_mock_stop(vg_mock_t *m);

#endif
