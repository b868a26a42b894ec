/* sink.h - the transactional sink: one producer, one Kafka transaction per
 * batch, and the one place that decides what an error does — retriable
 * errors retry (to a deadline, and not past a shutdown), abortable ones
 * abort so the caller rewinds and redoes the batch, fatal ones abort and
 * stop for good: nothing is committed after a fatal error. */
#ifndef VEIL_CONNECTORS_SINK_H
#define VEIL_CONNECTORS_SINK_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_sink_status {
        VEIL_SINK_OK = 0,
        VEIL_SINK_RECORD,  /* this message cannot be produced (too large):
                            * the record's fault, the transaction is intact */
        VEIL_SINK_ABORTED, /* the transaction was aborted: rewind, redo */
        VEIL_SINK_FATAL,   /* stop; nothing more will be committed */
};

struct veil_sink;

/* A sink producing with conf (taken, also on failure), whose
 * transactional.id must be set. Initialises transactions, which fences a
 * predecessor with the same id, retrying retriable errors until *stop.
 * NULL with errstr. */
struct veil_sink *veil_sink_new(rd_kafka_conf_t *conf,
                                volatile sig_atomic_t *stop, char *errstr,
                                size_t errstr_size);
/* Aborts an open transaction, flushes, destroys the producer. */
void veil_sink_destroy(struct veil_sink *s);

rd_kafka_t *veil_sink_producer(struct veil_sink *s);

/* The largest message the producer accepts (message.max.bytes). */
size_t veil_sink_max_message(const struct veil_sink *s);

/* Opens a transaction if none is open. OK or FATAL. */
enum veil_sink_status veil_sink_begin(struct veil_sink *s);
bool veil_sink_in_txn(const struct veil_sink *s);

/* One message into the open transaction (key and value copied; hdrs taken).
 * OK, RECORD (message too large: nothing was produced) or FATAL. When
 * the transaction has failed with an abortable error (a broker refused a
 * partition or the coordinator lost it), OK: the batch goes on to its
 * commit, which aborts it instead (ABORTED), and the caller redoes it. */
enum veil_sink_status veil_sink_produce(struct veil_sink *s, const char *topic,
                                        int32_t partition, const void *key,
                                        size_t key_len, const void *value,
                                        size_t value_len,
                                        rd_kafka_headers_t *hdrs,
                                        int64_t timestamp);

/* veil_sink_produce for the sink's other writers (ledger records, their
 * tombstones, subject keys), whose callers take errors as text: 0, or
 * VEIL_ENET with errstr (too large for the producer; the sink is fatal). */
int veil_sink_write(struct veil_sink *s, const char *topic, int32_t partition,
                    const void *key, size_t key_len, const void *value,
                    size_t value_len, rd_kafka_headers_t *hdrs, char *errstr,
                    size_t errstr_size);

/* Sends `offsets` (the consumer's next positions) with the consumer's
 * group metadata, then commits. OK; ABORTED (an abortable error: the
 * transaction was aborted, the caller rewinds); FATAL. */
enum veil_sink_status
veil_sink_commit(struct veil_sink *s, rd_kafka_t *consumer,
                 const rd_kafka_topic_partition_list_t *offsets);

/* Adds the positions of another consumer (the erasure reader's group) to
 * the open transaction, committed with it. OK — also when an abortable
 * error failed the transaction: its commit then aborts (ABORTED) and the
 * caller redoes the batch — or FATAL. */
enum veil_sink_status
veil_sink_add_offsets(struct veil_sink *s, rd_kafka_t *consumer,
                      const rd_kafka_topic_partition_list_t *offsets);

/* Aborts the open transaction (if any). OK, or FATAL when even that
 * failed. */
enum veil_sink_status veil_sink_abort(struct veil_sink *s);

/* Marks the sink fatal with a reason (an error elsewhere in the batch):
 * nothing is committed again; the caller then aborts the open transaction
 * (veil_sink_abort, or veil_sink_destroy). Safe from librdkafka callbacks,
 * which may run inside a transactional call. */
void veil_sink_fail(struct veil_sink *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Why the sink stopped (fatal), or NULL. */
const char *veil_sink_fatal(const struct veil_sink *s);

/* Transactions committed and aborted so far. */
void veil_sink_counts(const struct veil_sink *s, int64_t *committed,
                      int64_t *aborted);

#endif
