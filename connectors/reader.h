/* reader.h - reads a topic's partitions from chosen offsets up to the end
 * offsets they had when the read started (read_committed), for the tools
 * that look back at Veil's own topics: `dlq replay`, `audit verify`, and
 * the worker recovering an audit chain's head. */
#ifndef VEIL_CONNECTORS_READER_H
#define VEIL_CONNECTORS_READER_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* librdkafka's log callback type. */
typedef void (*veil_reader_log_fn)(const rd_kafka_t *rk, int level,
                                   const char *fac, const char *buf);

/* A consumer for assign()-only reads: the config's `kafka:` settings,
 * read_committed, no offset commits. `purpose` names it in logs; log_cb
 * (may be NULL: librdkafka's own) gets its log lines. NULL with errstr (a
 * VEIL_ECONFIG message). The caller destroys it (rd_kafka_destroy). */
rd_kafka_t *veil_reader_consumer(const struct veil_config *config,
                                 const char *purpose, veil_reader_log_fn log_cb,
                                 char *errstr, size_t errstr_size);

/* One partition to read: [from, to). veil_reader_ends() fills `lo` and
 * `to` (low and high watermarks). */
struct veil_reader_part {
        int32_t partition;
        int64_t lo, from, to;
};

/* The partitions of `topic` with their low and high watermarks; `from` is
 * set to `lo`. *partsp is allocated (free()). 0, VEIL_ENOTFOUND (no such
 * topic) or VEIL_ENET with errstr. */
int veil_reader_ends(rd_kafka_t *rk, const char *topic,
                     struct veil_reader_part **partsp, size_t *np,
                     int timeout_ms, char *errstr, size_t errstr_size);

/* Called for each message in range, in offset order per partition. A
 * non-zero return stops the read and is returned by veil_reader_run. */
typedef int (*veil_reader_fn)(void *opaque, const rd_kafka_message_t *rkm);

/* Reads each part's [from, to) under read_committed: aborted records and
 * transaction markers are skipped, and a part is done when the consumer
 * reaches `to` (it waits for transactions still open below `to`).
 * 0, the callback's non-zero value, or VEIL_ENET with errstr (Kafka error,
 * or `timeout_ms` passed: the message says where it stopped). */
int veil_reader_run(rd_kafka_t *rk, const char *topic,
                    const struct veil_reader_part *parts, size_t n,
                    int timeout_ms, veil_reader_fn fn, void *opaque,
                    char *errstr, size_t errstr_size);

/* The value of the last header `name` as a NUL-terminated copy in buf
 * (cut to size), or NULL when the message has no such header. */
const char *veil_reader_header(const rd_kafka_message_t *rkm, const char *name,
                               char *buf, size_t size);

#endif
