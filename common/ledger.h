/* ledger.h - the retention ledger's record format (topics.ledger), restoring
 * the deadline index from it, per-transaction write coalescing, and the
 * erasure request format (topics.erasure). */
#ifndef VEIL_COMMON_LEDGER_H
#define VEIL_COMMON_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "retention.h"
#include "transform.h"

/* ---- ledger records
 * ----------------------------------------------------------
 *
 * One record per tracked (purpose topic, transformed key), on the ledger
 * partition equal to the key's source partition (the ledger is partitioned
 * like the sources, so a partition's state moves with it on rebalance).
 * The topic is compacted: the latest record of a key is its state.
 *
 *   key   = purpose topic name | 0x00 | transformed key bytes
 *           (a Kafka topic name is 1-249 of [A-Za-z0-9._-], so the first
 *           0x00 always ends it; kcat shows the topic in clear)
 *   value = 21 bytes, integers big-endian:
 *           [0]      format version, 1
 *           [1..8]   deadline, ms since the epoch (int64, >= 0)
 *           [9..16]  timestamp of the newest record of the key (int64), so
 *                    a worker restoring under a changed retention can
 *                    recompute the deadline
 *           [17..20] source partition (int32, >= 0)
 *         or null (a tombstone): the key is no longer tracked.
 * The purpose is the key's topic; binary rather than JSON because a
 * restore decodes millions of them (bench/README.md, Retention).
 * With several routes, ledger partition p holds partition p of every
 * source: a worker restoring only some (source, partition) pairs decodes,
 * keeps the records whose purpose topic belongs to a source partition it
 * was assigned, and applies those. */

#define VEIL_LEDGER_VERSION 1
#define VEIL_LEDGER_VALUE_LEN 21
/* Kafka's limit on topic names. */
#define VEIL_LEDGER_TOPIC_MAX 249

struct veil_ledger_value {
        int64_t deadline_ms;
        int64_t record_ts_ms;
        int32_t partition;
};

/* A decoded ledger record. topic and key point into the record's key
 * bytes (valid while they are). */
struct veil_ledger_record {
        const char *topic; /* not NUL-terminated */
        size_t topic_len;
        const unsigned char *key;
        size_t key_len;
        bool tombstone; /* value is then zeroed */
        struct veil_ledger_value value;
};

/* Bytes the key of (topic, key_len) takes. */
size_t veil_ledger_key_len(size_t topic_len, size_t key_len);

/* Writes the record key into out. Returns 0, or VEIL_EINVAL (topic not a
 * valid Kafka topic name, key longer than VEIL_RETENTION_MAX_KEY, cap too
 * small) with errstr. */
int veil_ledger_key_encode(const char *topic, const void *key, size_t key_len,
                           unsigned char *out, size_t cap, size_t *outlen,
                           char *errstr, size_t errstr_size);

/* Writes the 21-byte value. Returns 0, or VEIL_EINVAL (negative deadline
 * or partition). */
int veil_ledger_value_encode(const struct veil_ledger_value *v,
                             unsigned char out[VEIL_LEDGER_VALUE_LEN],
                             char *errstr, size_t errstr_size);

/* Decodes a record as consumed. value == NULL or value_len == 0 is a
 * tombstone. Returns 0, or VEIL_EDATA when any byte is off (no 0x00, bad
 * topic name, key too long, wrong value length or version, negative
 * numbers) with errstr naming the position, never the bytes. */
int veil_ledger_decode(const void *key, size_t key_len, const void *value,
                       size_t value_len, struct veil_ledger_record *rec,
                       char *errstr, size_t errstr_size);

/* Applies one decoded record to the index as purpose number `purpose`:
 * a tombstone removes the key, a value sets it (the later record wins,
 * even with an earlier deadline). */
int veil_ledger_apply(struct veil_retention *ri, uint16_t purpose,
                      const struct veil_ledger_record *rec, char *errstr,
                      size_t errstr_size);

/* Restoring: decode + find the purpose number (topics[i] is purpose i) +
 * apply, for records fed in log order. Returns 0, VEIL_ENOTFOUND (a topic
 * not in topics[]: a purpose no longer configured; skip the record) or
 * VEIL_EDATA (malformed; skip and count it). A caller that restores only
 * some source partitions decodes and filters first, then applies. */
int veil_ledger_restore(struct veil_retention *ri, const char *const *topics,
                        size_t n_topics, const void *key, size_t key_len,
                        const void *value, size_t value_len, char *errstr,
                        size_t errstr_size);

/* ---- ledger records, version 2
 * ---------------------------------------------------------
 *
 * One record per (route source, source key): every purpose's entry for the
 * key in one value, so that a record written to N purposes costs one ledger
 * write, not N. Same partitioning (the key's source partition) and
 * compaction as version 1; a worker restores both and writes only this.
 *
 *   key   = 0x00 0x02 | source topic name | 0x00 | id (16 bytes)
 *           id = the first 16 bytes of HMAC-SHA256(K_ledger, source topic
 *           | 0x00 | source key), K_ledger = HKDF-SHA256(master key, no
 *           salt, info "veil:ledger:id"): the key itself never reaches the
 *           ledger, and a low-entropy key cannot be found by guessing.
 *           (A version 1 key starts with a topic character, never 0x00.)
 *   value = integers big-endian:
 *           [0]      format version, 2
 *           [1..4]   source partition (int32, >= 0)
 *           [5]      n, entries (1..VEIL_LEDGER_MAX_ENTRIES)
 *           n times: topic length (1 byte, 1..249) | purpose topic |
 *                    key length (2 bytes) | key as written to the purpose
 *                    topic (transformed) | deadline (int64, >= 0) |
 *                    timestamp of the newest record (int64)
 *           No two entries name the same (topic, key) (a rotated key
 *           transform may give one topic two keys); nothing follows the last.
 *         or null (a tombstone): no purpose holds the key any more.
 * When one purpose's deadline passes, the record is rewritten without it;
 * when the last goes, the tombstone. */

#define VEIL_LEDGER_VERSION2 2
#define VEIL_LEDGER_ID_LEN 16
#define VEIL_LEDGER_MAX_ENTRIES 255
#define VEIL_LEDGER_ID_INFO "veil:ledger:id"

/* One purpose's entry. topic and key point into the value bytes. */
struct veil_ledger_entry {
        const char *topic; /* not NUL-terminated */
        size_t topic_len;
        const unsigned char *key;
        size_t key_len;
        int64_t deadline_ms;
        int64_t record_ts_ms;
};

/* A decoded version 2 record (source points into the key bytes). */
struct veil_ledger_group {
        const char *source; /* not NUL-terminated */
        size_t source_len;
        unsigned char id[VEIL_LEDGER_ID_LEN];
        bool tombstone; /* then partition is 0 and n is 0 */
        int32_t partition;
        size_t n;
        struct veil_ledger_entry entries[VEIL_LEDGER_MAX_ENTRIES];
};

/* The format version a record key is in: 2 when it starts with 0x00, else
 * 1 (whether it is valid is the decoder's business). */
int veil_ledger_key_version(const void *key, size_t key_len);

/* The id of (source, source key) under k (keyed with veil_hmac_init_derived
 * and VEIL_LEDGER_ID_INFO). */
void veil_ledger_id(const struct veil_hmac *k, const char *source,
                    const void *key, size_t key_len,
                    unsigned char id[VEIL_LEDGER_ID_LEN]);

/* Bytes the version 2 key of source takes. */
size_t veil_ledger_key2_len(size_t source_len);
/* Writes the key. Returns 0 or VEIL_EINVAL (source not a valid topic name,
 * cap too small) with errstr. */
int veil_ledger_key2_encode(const char *source,
                            const unsigned char id[VEIL_LEDGER_ID_LEN],
                            unsigned char *out, size_t cap, size_t *outlen,
                            char *errstr, size_t errstr_size);

/* Bytes the value of entries[0..n) takes. */
size_t veil_ledger_value2_len(const struct veil_ledger_entry *entries,
                              size_t n);
/* Writes the value. Returns 0, or VEIL_EINVAL (no or too many entries, a
 * bad or repeated topic, a key over VEIL_RETENTION_MAX_KEY, a negative
 * deadline or partition, cap too small) with errstr naming the entry. */
int veil_ledger_value2_encode(int32_t partition,
                              const struct veil_ledger_entry *entries, size_t n,
                              unsigned char *out, size_t cap, size_t *outlen,
                              char *errstr, size_t errstr_size);

/* Decodes a version 2 record as consumed. value == NULL or value_len == 0
 * is a tombstone. Returns 0, or VEIL_EDATA when any byte is off with
 * errstr naming the position, never the bytes. */
int veil_ledger_decode2(const void *key, size_t key_len, const void *value,
                        size_t value_len, struct veil_ledger_group *g,
                        char *errstr, size_t errstr_size);

/* ---- write coalescing
 * ---------------------------------------------------------
 *
 * A worker writes at most one ledger record per key per transaction: it
 * puts every ledger change into the batch as it happens (a later put for
 * the same topic and key replaces the earlier one) and produces the
 * batch's records just before committing. */

struct veil_ledger_batch;

/* A pending record, ready for rd_kafka_producev: key/value into the batch
 * (valid until the next put or clear), value NULL for a tombstone,
 * partition = the ledger partition (the source partition). */
struct veil_ledger_pending {
        const unsigned char *key;
        size_t key_len;
        const unsigned char *value;
        size_t value_len;
        int32_t partition;
};

struct veil_ledger_batch *veil_ledger_batch_new(void);
void veil_ledger_batch_destroy(struct veil_ledger_batch *b);

/* Records the ledger state of (topic, key): value, or NULL for a
 * tombstone, on ledger partition `partition`. Bytes are copied. Returns 0,
 * or VEIL_EINVAL (see veil_ledger_key_encode / _value_encode). */
int veil_ledger_batch_put(struct veil_ledger_batch *b, const char *topic,
                          const void *key, size_t key_len, int32_t partition,
                          const struct veil_ledger_value *value, char *errstr,
                          size_t errstr_size);

/* Records the ledger state of a version 2 record: key as
 * veil_ledger_key2_encode wrote it, value (value_len bytes) or NULL for a
 * tombstone. Bytes are copied. Returns 0 or VEIL_EINVAL. */
int veil_ledger_batch_put2(struct veil_ledger_batch *b, const void *key,
                           size_t key_len, int32_t partition, const void *value,
                           size_t value_len, char *errstr, size_t errstr_size);

/* Distinct keys pending (records the commit will write). */
size_t veil_ledger_batch_count(const struct veil_ledger_batch *b);
/* Puts since the last clear (>= count; the difference was coalesced). */
size_t veil_ledger_batch_puts(const struct veil_ledger_batch *b);
/* The i-th pending record (i < count), in the order keys were first put. */
void veil_ledger_batch_get(const struct veil_ledger_batch *b, size_t i,
                           struct veil_ledger_pending *out);
/* Forgets everything pending (after the commit, or an abort). */
void veil_ledger_batch_clear(struct veil_ledger_batch *b);

/* ---- erasure requests
 * ----------------------------------------------------------
 *
 * `veil erase` writes one record per subject key to topics.erasure:
 *   record key = "<key_id>:" + base64url(HMAC-SHA256(K_id, subject key))
 *     stable for a key, so repeated requests land on one partition and a
 *     worker (and the audit) can name a key without holding it; keyed, so
 *     a low-entropy id (a customer number) cannot be found by guessing.
 *   value = JSON {"v": 2, "key_sealed": "<key_id>:g:" + base64url(nonce |
 *     AES-256-GCM(K_seal, subject key) | tag), "requested_at": ms,
 *     "request_id": "<uuid v4>", "mac": "<key_id>:" + base64url(
 *     HMAC-SHA256(K_mac, "veil-erasure-v2\n" request_id "\n" requested_at
 *     "\n" key_sealed))}
 *     The subject key must reach the worker, which transforms it as each
 *     purpose does, but whoever can read the erasure topic should not learn
 *     who asked to be forgotten: it travels sealed with a key derived from
 *     Veil's master key. The MAC binds the request id and time to it, so
 *     that only a holder of the master key can ask for an erasure: anyone
 *     who may write to the topic could otherwise tombstone any subject.
 *     A request without a valid MAC is refused (VEIL_EAUTH).
 *     Requests from other tools may carry the key in clear as
 *     {"key": "..."} (a UTF-8 string, no MAC needed): refused unless the
 *     keys say allow_plaintext (config `erasure: { allow_plaintext: true }`),
 *     because such a request is not authenticated at all.
 * K_id, K_seal and K_mac: HKDF-SHA256 of the master key (no salt), infos
 * "veil:erasure:id", "veil:erasure:seal" and "veil:erasure:mac", which no
 * purpose's key infos ("veil:hash:…", "veil:encrypt:…") can equal. */

#define VEIL_ERASURE_KEY_HASH_MAX                                              \
        (VEIL_TX_KEY_ID_MAX + 1 + VEIL_TX_HASH_B64_LEN)
#define VEIL_ERASURE_REQUEST_ID_MAX 64
/* Longest request value decode accepts. */
#define VEIL_ERASURE_VALUE_MAX (256u * 1024u)

struct veil_config;

struct veil_erasure_keys {
        char key_id[VEIL_TX_KEY_ID_MAX + 1];
        size_t key_id_len;
        struct veil_hmac id;
        struct veil_hmac mac;
        struct veil_aead seal; /* GCM: one per thread */
        bool allow_plaintext;  /* accept {"key": …} requests */
        /* With veil_erasure_keys_init_config: the config whose keyring
         * opens requests sealed under a key that is no longer active. */
        const struct veil_config *config;
};

/* Derives the keys from the master key (>= 32 bytes). Returns 0 or
 * VEIL_EINVAL / VEIL_EIO with errstr; on error ek needs no destroy. */
int veil_erasure_keys_init(struct veil_erasure_keys *ek,
                           const unsigned char *master, size_t master_len,
                           const char *key_id, char *errstr,
                           size_t errstr_size);
/* The same with config's active key, its keyring for requests sealed
 * under older keys, and erasure.allow_plaintext. config must outlive ek. */
int veil_erasure_keys_init_config(struct veil_erasure_keys *ek,
                                  const struct veil_config *config,
                                  char *errstr, size_t errstr_size);
void veil_erasure_keys_destroy(struct veil_erasure_keys *ek);

/* The record key of a subject key (NUL-terminated, < cap). Returns 0 or
 * VEIL_EINVAL when cap < VEIL_ERASURE_KEY_HASH_MAX + 1. */
int veil_erasure_key_hash(const struct veil_erasure_keys *ek, const void *key,
                          size_t key_len, char *out, size_t cap);

/* A fresh random request id: a UUID v4, 36 characters + NUL. */
int veil_erasure_request_id(char out[37], char *errstr, size_t errstr_size);

/* The JSON value of a request (NUL-terminated, caller frees). Returns 0
 * or VEIL_EINVAL (empty or over-long key, bad request id) / VEIL_EIO with
 * errstr; the message never contains the key. */
int veil_erasure_request_encode(struct veil_erasure_keys *ek, const void *key,
                                size_t key_len, int64_t requested_at_ms,
                                const char *request_id, char **json,
                                size_t *json_len, char *errstr,
                                size_t errstr_size);

struct veil_erasure_request {
        unsigned char *key; /* the subject key, owned: clear it */
        size_t key_len;
        int64_t requested_at_ms;
        char request_id[VEIL_ERASURE_REQUEST_ID_MAX + 1];
        bool sealed; /* came as key_sealed */
};

/* Decodes a request value. Returns 0, or VEIL_EDATA (not the format),
 * VEIL_EAUTH (sealed under a key id this ring lacks, does not
 * authenticate, no or a wrong MAC, or in clear while plaintext requests
 * are not allowed) with errstr naming fields, never values. */
int veil_erasure_request_decode(struct veil_erasure_keys *ek, const void *value,
                                size_t value_len,
                                struct veil_erasure_request *req, char *errstr,
                                size_t errstr_size);
/* Wipes and frees the key. Safe on a zeroed struct. */
void veil_erasure_request_clear(struct veil_erasure_request *req);

#endif
