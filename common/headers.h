/* headers.h - every `veil.*` Kafka header name Veil writes or reads, and
 * their fixed values, in one place (DESIGN.md §5 "What lands on Kafka"). */
#ifndef VEIL_COMMON_HEADERS_H
#define VEIL_COMMON_HEADERS_H

/* On every purpose-topic record. */
#define VEIL_H_PURPOSE "veil.purpose" /* the purpose's name */
#define VEIL_H_LICENSE "veil.license" /* the licence id */
#define VEIL_H_POLICY "veil.policy"   /* digest of the policy in force */
#define VEIL_H_SOURCE "veil.source"   /* "TOPIC/PARTITION/OFFSET" */

/* On tombstones: why the key is deleted. */
#define VEIL_H_REASON "veil.reason"
#define VEIL_REASON_RETENTION "retention"
#define VEIL_REASON_ERASURE "erasure"
#define VEIL_REASON_LICENSE_EXPIRED "license-expired"
#define VEIL_REASON_UPSTREAM_DELETE "upstream-delete"
#define VEIL_REASON_CONSENT_WITHDRAWN "consent-withdrawn"

/* On dead letters (dlq.h owns their format). */
#define VEIL_H_ERROR "veil.error"               /* a stable code */
#define VEIL_H_ERROR_DETAIL "veil.error.detail" /* positions, never values */
#define VEIL_H_DLQ_PAYLOAD "veil.dlq.payload"   /* the two values below */
#define VEIL_DLQ_PAYLOAD_ENCRYPTED "encrypted"
#define VEIL_DLQ_PAYLOAD_RAW "raw"
#define VEIL_H_DLQ_CIPHER "veil.dlq.cipher"
#define VEIL_DLQ_CIPHER_GCM "aes-256-gcm"          /* v1: not bound */
#define VEIL_DLQ_CIPHER_GCM_BOUND "aes-256-gcm+ad" /* v2: headers bound */
#define VEIL_H_KEY_ID "veil.key_id"                /* key that sealed it */
/* A record fed back by `veil dlq replay`, and the marker that says so. */
#define VEIL_H_REPLAY_OF "veil.replay.of"
#define VEIL_H_REPLAY_DONE "veil.replay.done"
/* On a record `veil dlq replay` fed back from a letter of one purpose
 * (purpose-halted): the worker routes it to that purpose only. */
#define VEIL_H_REPLAY_PURPOSE "veil.replay.purpose"

/* On audit events: "KEY_ID:HEX" HMAC of the event (audit.h). */
#define VEIL_H_MAC "veil.mac"

/* Room left under message.max.bytes for one output's headers and record
 * framing: an output larger than the limit less this is refused as
 * too-large before any output of its record is produced. */
#define VEIL_MESSAGE_HEADROOM 2048

/* On erasure requests: the request id. */
#define VEIL_H_REQUEST "veil.request"

#endif
