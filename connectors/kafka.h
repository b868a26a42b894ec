/* kafka.h - librdkafka plumbing shared by the worker, its retention side
 * and the commands: the config's `kafka:` settings onto a client config,
 * and a produce that waits out a full local queue. */
#ifndef VEIL_CONNECTORS_KAFKA_H
#define VEIL_CONNECTORS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Sets every `kafka:` entry of config on conf, in order, then
 * bootstrap.servers to `bootstrap` when not NULL (a command's --bootstrap
 * wins over the file). 0, or VEIL_ECONFIG with errstr ("kafka.KEY: why");
 * conf is left to the caller either way. */
int veil_kafka_conf_apply(rd_kafka_conf_t *conf,
                          const struct veil_config *config,
                          const char *bootstrap, char *errstr,
                          size_t errstr_size);

/* Veil's defaults on a consumer (producer = false) or producer config, for
 * each one the `kafka:` section does not set itself: bounded queues
 * (librdkafka's 64 MB per consumer and 1 GB of produce buffer are sized for
 * large machines, and a worker runs several clients per pipeline) and a
 * short linger for the transactional producer. Call after
 * veil_kafka_conf_apply. 0 or VEIL_ECONFIG with errstr. */
int veil_kafka_conf_bound(rd_kafka_conf_t *conf,
                          const struct veil_config *config, bool producer,
                          char *errstr, size_t errstr_size);

/* Produces one message (key and value copied) to topic/partition, polling
 * while the local queue is full: a full queue is back-pressure, not an
 * error. timestamp <= 0 lets librdkafka stamp it now. Takes ownership of
 * hdrs (may be NULL): on failure they are destroyed here. Returns
 * librdkafka's error code (0 on success). */

rd_kafka_resp_err_t veil_kafka_produce(rd_kafka_t *rk, const char *topic,
                                       int32_t partition, const void *key,
                                       size_t key_len, const void *value,
                                       size_t value_len,
                                       rd_kafka_headers_t *hdrs,
                                       int64_t timestamp);

/* Leaves the group of subscribed consumer rk and closes it, without
 * librdkafka's close hang (2.0.2; upstream issue #4884, open): a
 * rebalance that arrives while rd_kafka_consumer_close runs is answered
 * by librdkafka's own assign, which can wait forever. So: unsubscribe
 * first and serve the queue — the application's rebalance callback runs
 * inside rd_kafka_consumer_poll as on any poll, so a revocation still
 * commits or aborts what it must — until nothing is assigned and the
 * queue has been quiet for a moment (10 s at most), then close.
 * Messages polled meanwhile are dropped: nothing of them was processed,
 * their offsets were never committed, the next owner reads them. The
 * caller still destroys rk. */
void veil_kafka_consumer_leave(rd_kafka_t *rk);

#endif
