/* dlq.h - the dead letter, both directions: the worker builds and seals
 * one, `veil dlq replay` opens and checks it. One codec, one key. */
#ifndef VEIL_CONNECTORS_DLQ_H
#define VEIL_CONNECTORS_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "headers.h"

/* A dead letter (headers.h names the headers):
 *   veil.error         a stable code (bad-magic, too-large, ...)
 *   veil.error.detail  positions and codes, never values
 *   veil.source        "TOPIC/PARTITION/OFFSET" of the original record
 *   veil.policy        digest of the policy that refused it
 *   veil.dlq.payload   "encrypted" (default) or "raw"
 *   veil.replay.of     when the record was itself fed back by a replay
 *   veil.purpose       when the letter is one purpose's (purpose-halted:
 *                      a replay delivers it to that purpose only)
 * and when encrypted also veil.dlq.cipher and veil.key_id.
 *
 * Sealing ("aes-256-gcm+ad"): key and value are each sealed with
 * AES-256-GCM under a key derived from the master key (HKDF-SHA256, info
 * "veil:dlq"); the sealed plaintext starts with the letter's binding —
 * "veil-dlq-2", source, code, key id, for a letter of one purpose
 * "purpose:NAME", and which part ("key"/"value"), each NUL-terminated — so a
 * letter whose veil.source, veil.error or key id was changed does not open, and
 * a key cannot pass for a value. Letters sealed before the binding existed
 * ("aes-256-gcm") still open: their payload is the bare original. A NULL key or
 * value stays NULL. */

/* Longest code, detail and position the codec keeps (with the NUL). */
#define VEIL_DLQ_CODE_MAX 64
#define VEIL_DLQ_DETAIL_MAX 256
#define VEIL_DLQ_POS_MAX 512

/* A letter's fields. For build, the caller fills it (key and value are the
 * original record's bytes); for open, the codec fills it and key/value
 * point into the codec's buffers (valid until the next call). */
struct veil_dlq_letter {
        char code[VEIL_DLQ_CODE_MAX];
        char detail[VEIL_DLQ_DETAIL_MAX];
        char source[VEIL_DLQ_POS_MAX];
        char policy[80];
        char replay_of[VEIL_DLQ_POS_MAX];    /* "" when not a replay */
        char purpose[VEIL_DLQ_CODE_MAX * 2]; /* "" when for every purpose */
        char key_id[64];                     /* "" when raw */
        bool encrypted;
        bool bound; /* sealed with the header binding */
        const void *key;
        size_t key_len;
        const void *value;
        size_t value_len;
};

struct veil_dlq;

/* A codec for config's DLQ settings (payload mode and the active key).
 * config is borrowed and must outlive the result. NULL with errstr when
 * the key is missing. */
struct veil_dlq *veil_dlq_new(const struct veil_config *config, char *errstr,
                              size_t errstr_size);
void veil_dlq_destroy(struct veil_dlq *d);

/* Builds the headers (owned by the caller: hand them to the producer) and
 * the payload to produce (key and value point into the codec's buffers until
 * the next call; NULL when the original was NULL). `encrypted` follows the
 * config's `dlq: { payload: }`. 0 or VEIL_E* with errstr. */
int veil_dlq_build(struct veil_dlq *d, const struct veil_dlq_letter *letter,
                   rd_kafka_headers_t **hdrsp, const void **key,
                   size_t *key_len, const void **value, size_t *value_len,
                   char *errstr, size_t errstr_size);

/* Reads a consumed letter: headers, key and value as on the topic (any
 * bytes: topics others can write are untrusted). Fills `out`, opening a
 * sealed payload. Returns 0; VEIL_EINVAL when it is not a well-formed dead
 * letter (a replay marker included); VEIL_ENOTFOUND when it was sealed
 * with a key id this config does not hold; VEIL_EAUTH when it does not
 * open (tampered headers or payload, or another key); VEIL_ECONFIG when
 * the config asks for encrypted payloads and the letter is raw (a raw
 * letter in an encrypted DLQ was not written by Veil). errstr names
 * headers and codes, never payload bytes. */
int veil_dlq_open(struct veil_dlq *d, const rd_kafka_headers_t *hdrs,
                  const void *key, size_t key_len, const void *value,
                  size_t value_len, struct veil_dlq_letter *out, char *errstr,
                  size_t errstr_size);

/* "TOPIC/PARTITION/OFFSET" split in place into its parts (TOPIC may
 * contain '/'). 0 or VEIL_EINVAL. */
int veil_dlq_position_parse(char *pos, const char **topic, int32_t *partition,
                            int64_t *offset);

#endif
