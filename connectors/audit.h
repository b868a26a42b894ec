/* audit.h - what the worker and `veil audit verify` agree on about audit
 * events: where a chain lives, how an event is hashed into the next one's
 * `prev`, and the MAC that makes a forged event show. */
#ifndef VEIL_CONNECTORS_AUDIT_H
#define VEIL_CONNECTORS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "crypto.h"

/* An audit chain is the events of one source partition, keyed
 * "TOPIC/PARTITION". Each event's `prev` is the lowercase hex SHA-256 of
 * the previous event's bytes (the Kafka message value); the first event
 * of a chain, or of a new segment of it, has 64 zeros and says
 * "segment_start": true with a "segment_reason". Header veil.mac carries
 * "KEY_ID:HEX" with HEX = HMAC-SHA256(audit key, value), the audit key
 * derived from the master key (HKDF-SHA256, info "veil:audit"). */
#define VEIL_AUDIT_ZERO                                                        \
        "0000000000000000000000000000000000000000000000000000000000000000"
#define VEIL_AUDIT_MAC_HEADER "veil.mac"
/* Longest veil.mac value, with its NUL. */
#define VEIL_AUDIT_MAC_MAX 256

/* Why a segment starts (the event's segment_reason). */
#define VEIL_AUDIT_SEGMENT_NEW "new"                   /* no earlier event */
#define VEIL_AUDIT_SEGMENT_EXPIRED "head-not-retained" /* history expired */
#define VEIL_AUDIT_SEGMENT_NOT_FOUND "head-not-found"  /* search gave up */

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

#endif
