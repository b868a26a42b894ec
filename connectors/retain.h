/* retain.h - the worker's retention side: the deadline index of the source
 * partitions it owns, restored from the ledger on assignment, ledger writes
 * per transaction, due tombstones, erasure requests and the licence-expiry
 * purge. The worker owns the Kafka transaction; this module only produces
 * into it. */
#ifndef VEIL_CONNECTORS_RETAIN_H
#define VEIL_CONNECTORS_RETAIN_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "config.h"

struct veil_retain;
struct veil_subject_keys;

/* Everything is per worker and single-threaded (the worker's loop and its
 * rebalance callback). Functions returning int give 0 or a VEIL_E* code
 * with errstr; a failure while a transaction is open means the worker must
 * treat it as fatal (something it produced may be missing). */

/* The retention side of a worker whose transactional sink is `sink`
 * (borrowed; it must outlive the result: ledger records, tombstones and
 * the erasure reader's offsets go through it) and whose audit
 * emitter is `audit` (borrowed: retention events go on its retention
 * chain, "retention/TRANSACTIONAL_ID"). config is borrowed
 * until veil_retain_set_config replaces it. Creates the erasure consumer
 * (group "<group>-erasure", read_committed) when topics.erasure is set.
 * NULL with errstr on failure. */
struct veil_sink;
struct veil_retain *veil_retain_new(const struct veil_config *config,
                                    struct veil_sink *sink,
                                    struct veil_audit *audit, char *errstr,
                                    size_t errstr_size);
void veil_retain_destroy(struct veil_retain *r);
/* The per-subject key store (crypto-shredding) the license filter takes
 * data keys from, or NULL when no purpose uses per_subject. It changes
 * with veil_retain_set_config. */
struct veil_subject_keys *veil_retain_subject_keys(struct veil_retain *r);

/* A reloaded config (between transactions): new purposes, key transforms
 * and licences from now on; tracked keys keep their deadlines. 0 or an
 * error (the old config stays in use). */
int veil_retain_set_config(struct veil_retain *r,
                           const struct veil_config *config, char *errstr,
                           size_t errstr_size);

/* Kafka transaction boundaries: call begin right after
 * rd_kafka_begin_transaction, flush just before the consumer's offsets are
 * sent (it produces the coalesced ledger records and sends the erasure
 * consumer's offsets into the transaction), commit after
 * rd_kafka_commit_transaction succeeded and rollback after an abort (the
 * index comes back to where begin left it and the erasure consumer is
 * rewound to the requests the transaction consumed). */
void veil_retain_begin(struct veil_retain *r);
/* veil_retain_flush's answer when an erasure partition the open
 * transaction consumed from was revoked in a rebalance: abort the
 * transaction and rewind (its requests belong to the next owner now);
 * not an error of the worker. */
#define VEIL_RETAIN_REDO (-100)
int veil_retain_flush(struct veil_retain *r, char *errstr, size_t errstr_size);
void veil_retain_commit(struct veil_retain *r);
void veil_retain_rollback(struct veil_retain *r);

/* One output the worker produced inside the open transaction: record
 * `key` (already transformed for the purpose of rp) of source partition
 * `partition`, stamped ts_ms, for purpose topic rp of route; skey is the
 * source record's key, which names the key's ledger record (one per
 * source key and transaction, whatever the number of purposes: ledger.h,
 * version 2) and is never kept. A tombstone (value_null) stops tracking
 * the key; a record renews its deadline. A NULL key or skey is not
 * tracked (it cannot be tombstoned). */
int veil_retain_note(struct veil_retain *r, const struct veil_route *route,
                     const struct veil_route_purpose *rp, int32_t partition,
                     const void *skey, size_t skey_len, const void *key,
                     size_t key_len, bool value_null, int64_t ts_ms,
                     char *errstr, size_t errstr_size);

/* Does purpose topic rp of route hold `key` (transformed for it) of source
 * key skey? 1 when the index tracks it, 0 when not, -1 when the purpose's
 * keys are not tracked at all (neither retention nor a licence end): the
 * caller cannot know. */
int veil_retain_holds(struct veil_retain *r, const struct veil_route *route,
                      const struct veil_route_purpose *rp, const void *skey,
                      size_t skey_len, const void *key, size_t key_len);

/* Is there work for a transaction: a deadline passed or an erasure request
 * waiting? Polls the erasure consumer without blocking. */
bool veil_retain_due(struct veil_retain *r, int64_t now_ms);

/* Inside the open transaction: handles the waiting erasure requests and up
 * to a bounded number of passed deadlines (tombstones, ledger tombstones,
 * audit events). Returns how many records it produced (for the worker's
 * batch size), or a negative VEIL_E* code with errstr. */
int64_t veil_retain_tick(struct veil_retain *r, int64_t now_ms, char *errstr,
                         size_t errstr_size);

/* Source partitions assigned: restores their state from the ledger
 * (blocks until each ledger partition is read to its end). Call outside a
 * transaction. */
int veil_retain_assign(struct veil_retain *r,
                       const rd_kafka_topic_partition_list_t *parts,
                       char *errstr, size_t errstr_size);

/* Source partitions revoked or lost: forgets their state (another worker
 * restores it from the ledger). Call outside a transaction. */
void veil_retain_revoke(struct veil_retain *r,
                        const rd_kafka_topic_partition_list_t *parts);

/* The pipeline's tally (borrowed, may be NULL): every tombstone this side
 * produces (retention, license-expired, erasure) is counted there in
 * veil_tombstones_out_total{route,purpose,reason}, settled with the
 * transaction like the worker's own. */
struct veil_tally;
void veil_retain_set_tally(struct veil_retain *r, struct veil_tally *tally);

/* Source keys tracked now (each with one entry per purpose that holds
 * it). */
size_t veil_retain_count(const struct veil_retain *r);

/* Counters for logs and metrics. Tombstones count those produced into
 * transactions (an aborted one's are counted again when redone). */
struct veil_retain_stats {
        size_t tracked;     /* keys in the index */
        size_t memory;      /* bytes the index allocated */
        int64_t tombstones; /* retention, licence expiry and erasure */
        int64_t erasures;   /* requests completed */
};
void veil_retain_stats(const struct veil_retain *r,
                       struct veil_retain_stats *st);

#endif
