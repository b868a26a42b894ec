/* audit.h - the audit room: what the worker and `veil audit verify` agree
 * on about audit events (where a chain lives, how an event is hashed into
 * the next one's `prev`, the MAC that makes a forged event show), and the
 * one emitter that builds, chains and produces them for the worker and its
 * retention side. */
#ifndef VEIL_CONNECTORS_AUDIT_H
#define VEIL_CONNECTORS_AUDIT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "crypto.h"
#include "headers.h"
#include "plan.h"

/* An audit chain is the events of one source partition, keyed
 * "TOPIC/PARTITION". Each event's `prev` is the lowercase hex SHA-256 of
 * the previous event's bytes (the Kafka message value); the first event
 * of a chain, or of a new segment of it, has 64 zeros and says
 * "segment_start": true with a "segment_reason". Header veil.mac carries
 * "KEY_ID:HEX" with HEX = HMAC-SHA256(audit key, value), the audit key
 * derived from the master key (HKDF-SHA256, info "veil:audit"). */
#define VEIL_AUDIT_ZERO                                                        \
        "0000000000000000000000000000000000000000000000000000000000000000"
#define VEIL_AUDIT_MAC_HEADER VEIL_H_MAC
/* Longest veil.mac value, with its NUL. */
#define VEIL_AUDIT_MAC_MAX 256

/* Why a segment starts (the event's segment_reason). */
#define VEIL_AUDIT_SEGMENT_NEW "new"                   /* no earlier event */
#define VEIL_AUDIT_SEGMENT_EXPIRED "head-not-retained" /* history expired */
#define VEIL_AUDIT_SEGMENT_NOT_FOUND "head-not-found"  /* search gave up */

/* Why a field was dropped (an event's "dropped": {path: why}): the
 * licence's own drop for the field's label, or fail closed because the
 * field has no label, its label is not in the purpose's licence, or its
 * label is neither a class nor a tier. Events written before "dropped"
 * existed simply lack it: `audit verify` checks bytes, not keys. */
#define VEIL_AUDIT_DROP_POLICY "policy"
#define VEIL_AUDIT_DROP_UNCLASSIFIED "unclassified"
#define VEIL_AUDIT_DROP_UNLICENSED "unlicensed"
#define VEIL_AUDIT_DROP_UNDEFINED "undefined"

/* Keys `h` with the audit key of config's master key. 0 or VEIL_E* with
 * errstr. */
int veil_audit_hmac_init(struct veil_hmac *h, const struct veil_config *config,
                         char *errstr, size_t errstr_size);

/* The same with one key of the ring (`veil audit verify` checks each
 * event with the key its veil.mac names). */
int veil_audit_hmac_init_key(struct veil_hmac *h, const struct veil_key *key,
                             char *errstr, size_t errstr_size);

/* "KEY_ID:HEX" into out (size ≥ VEIL_AUDIT_MAC_MAX). */
void veil_audit_mac(const struct veil_hmac *h, const char *key_id,
                    const void *event, size_t len, char *out, size_t size);

/* Hex SHA-256 of an event: the next event's `prev`. */
void veil_audit_digest(const void *event, size_t len, char out[65]);

/* The audit partition of source partition `partition` when the audit
 * topic has `n` partitions: fixed by the partition number alone, so the
 * worker that takes a source partition over knows where its chain is. */
int32_t veil_audit_partition(int32_t partition, int32_t n);

/* ---- the emitter ---------------------------------------------------------
 *
 * One per transactional producer (a worker pipeline). Chains of source
 * partitions continue across restarts and rebalances: on assignment their
 * heads are read back from the audit topic. Events produced inside the
 * open transaction move a chain's pending head; commit makes it the head,
 * rollback forgets it. Single-threaded, like the pipeline that owns it. */

struct veil_audit;

/* Produces one message into the open transaction; hdrs is taken. 0, or
 * a VEIL_E* code with errstr (the caller treats it as fatal). */
typedef int (*veil_audit_produce_fn)(void *opaque, const char *topic,
                                     int32_t partition, const void *key,
                                     size_t key_len, const void *value,
                                     size_t value_len, rd_kafka_headers_t *hdrs,
                                     char *errstr, size_t errstr_size);

/* The emitter of config's audit topic. `chain_id` names the retention
 * chain ("retention/ID"); `reader` (borrowed; a read_committed consumer
 * without a group, see reader.h) reads chain heads back. `n_partitions` is
 * the audit topic's partition count. config is borrowed until
 * veil_audit_set_config. NULL with errstr (no key). When config has no
 * audit topic every call below is a no-op. */
struct veil_audit *veil_audit_new(const struct veil_config *config,
                                  const char *chain_id, rd_kafka_t *reader,
                                  int32_t n_partitions,
                                  veil_audit_produce_fn produce, void *opaque,
                                  char *errstr, size_t errstr_size);
void veil_audit_destroy(struct veil_audit *a);

/* A reloaded config, between transactions. */
void veil_audit_set_config(struct veil_audit *a,
                           const struct veil_config *config);

/* Source partitions assigned (outside a transaction: our own open one
 * would hide the heads) / revoked. */
void veil_audit_assign(struct veil_audit *a,
                       const rd_kafka_topic_partition_list_t *parts);
void veil_audit_revoke(struct veil_audit *a,
                       const rd_kafka_topic_partition_list_t *parts);

/* One record's outcome for route purpose `purpose` (index in
 * route->purposes): `plan` the plan it went through (NULL: none, e.g. a
 * tombstone), `skip` licence expired, `tombstone` a null value. With
 * audit level `record` the event is produced now; with `batch` it is
 * summed into the batch's event for (partition, purpose). */
int veil_audit_record(struct veil_audit *a, const struct veil_route *route,
                      size_t purpose, int32_t partition, int64_t offset,
                      const struct veil_plan *plan, int schema_in, bool skip,
                      bool tombstone, char *errstr, size_t errstr_size);

/* A record that route purpose `purpose` did not receive because its
 * consent gate failed: one event (at levels record and batch alike) with
 * the gate's `reason` (a veil_consent_name), the condition's field path
 * (never its value) and `tombstone` (the veil.reason of the tombstone the
 * purpose got for a key it held, or NULL). */
int veil_audit_consent(struct veil_audit *a, const struct veil_route *route,
                       size_t purpose, int32_t partition, int64_t offset,
                       int schema_in, const char *reason, const char *tombstone,
                       char *errstr, size_t errstr_size);
/* A leak the guard found in route purpose `purpose`'s output of a record:
 * one event per (field path, detector) with the span count and the action
 * (redact, quarantine). Names only, never the text. */
int veil_audit_leak(struct veil_audit *a, const struct veil_route *route,
                    size_t purpose, int32_t partition, int64_t offset,
                    int schema_in, const char *path, const char *detector,
                    uint32_t count, const char *action, char *errstr,
                    size_t errstr_size);
/* The retention side's events: `ev` (taken) gets v, chain, policy, prev
 * and ts and goes on the retention chain. */
int veil_audit_retention(struct veil_audit *a, json_t *ev, char *errstr,
                         size_t errstr_size);

/* Transaction boundaries: flush before the offsets are sent (the batch
 * events), then commit or rollback. */
int veil_audit_flush(struct veil_audit *a, char *errstr, size_t errstr_size);
void veil_audit_commit(struct veil_audit *a);
void veil_audit_rollback(struct veil_audit *a);

/* Events produced into committed transactions so far. */
uint64_t veil_audit_committed(const struct veil_audit *a);

#endif
