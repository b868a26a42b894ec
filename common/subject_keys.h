/* subject_keys.h - crypto-shredding: per-subject data keys, their wrapping
 * under the master key, per-subject tokens, and the worker's bounded store
 * of keys (an index of wrapped keys plus an LRU of unwrapped ones). */
#ifndef VEIL_COMMON_SUBJECT_KEYS_H
#define VEIL_COMMON_SUBJECT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "policy.h"

struct veil_config;

/* A subject's reference: the first 16 bytes of
 * HMAC-SHA256(HKDF(master[kid], "veil:subject-ref"), source | 0x00 |
 * subject). It is the key-topic record key and travels in every
 * per-subject token; without the master key it says nothing about the
 * subject. */
#define VEIL_SUBJECT_REF_LEN 16
/* A data key: 32 random bytes (RAND_bytes). Per purpose, the token keys
 * are HKDF(data key, "veil:subject:<purpose>") = SIV key (64) | GCM key
 * (32), so tokens of two purposes never join. */
#define VEIL_SUBJECT_KEY_LEN 32
#define VEIL_SUBJECT_TOKEN_KEYS_LEN                                            \
        (VEIL_AEAD_SIV_KEY_LEN + VEIL_AEAD_GCM_KEY_LEN)

/* A wrapped data key (the key-topic record value):
 *   0x01 | kid_len | kid | nonce(12) | AES-256-GCM(data key)(32) | tag(16)
 * under HKDF(master[kid], "veil:subject-wrap") with the associated data
 * "veil:subject-key" | ref, so a blob opens only at its own record key. */
#define VEIL_SUBJECT_WRAP_VERSION 0x01
#define VEIL_SUBJECT_SEALED_LEN                                                \
        (VEIL_AEAD_GCM_NONCE_LEN + VEIL_SUBJECT_KEY_LEN + VEIL_AEAD_TAG_LEN)
#define VEIL_SUBJECT_WRAPPED_MAX (2 + 32 + VEIL_SUBJECT_SEALED_LEN)

/* Per-subject tokens (string form):
 *   SIV: "<kid>:S:" + base64url(ref(16) | V(16) | ciphertext)
 *   GCM: "<kid>:G:" + base64url(ref(16) | nonce(12) | ciphertext | tag(16))
 * <kid> is the master key id the ref was computed under. Bytes form:
 *   mode byte (VEIL_SUBJECT_BYTES_SIV / _GCM) | kid_len | kid | ref |
 *   sealed. Upper-case letters and the mode bytes 0x04/0x05 tell them from
 * the purpose-keyed tokens ('s', 'e', 'g'; 0x01..0x03). */
#define VEIL_SUBJECT_BYTES_SIV 0x04
#define VEIL_SUBJECT_BYTES_GCM 0x05

/* The token keys of `purpose` for a data key (HKDF-SHA256, no
 * allocation). 0 or VEIL_EINVAL (purpose name too long). */
int veil_subject_token_keys(const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                            const char *purpose,
                            unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN]);

/* One purpose's ciphers for one subject, keyed per record by
 * veil_subject_cipher_key. The contexts are set up once and re-keyed
 * after (key schedules only), each mode only when a token of that mode is
 * made. Not thread-safe. */
struct veil_subject_cipher {
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        char kid[33];
        size_t kid_len;
        struct veil_aead siv;
        struct veil_aead gcm;
        unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN]; /* the keys set */
        bool keyed;
        bool siv_keyed, gcm_keyed; /* the context holds tk's key */
};

/* Is `c` keyed for exactly these token keys, ref and key id (the previous
 * record's subject again: nothing to do)? */
bool veil_subject_cipher_is(const struct veil_subject_cipher *c,
                            const unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN],
                            const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                            const char *kid);

/* Keys `c` with a subject's token keys for one purpose (ref and kid are
 * copied into the tokens). The contexts follow lazily, at the next token
 * of each mode. 0 or VEIL_EINVAL (key id too long). */
int veil_subject_cipher_key(struct veil_subject_cipher *c,
                            const unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN],
                            const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                            const char *kid, char *errstr, size_t errstr_size);
void veil_subject_cipher_clear(struct veil_subject_cipher *c);

/* Exact token length for this cipher, mode and output form. */
size_t veil_subject_encrypt_len(const struct veil_subject_cipher *c,
                                enum veil_encrypt_mode mode,
                                enum veil_encrypt_output output, size_t len);
/* A per-subject token of `in` (see above). 0, VEIL_EINVAL (cap, not
 * keyed) or VEIL_EIO. */
int veil_subject_encrypt(struct veil_subject_cipher *c,
                         enum veil_encrypt_mode mode,
                         enum veil_encrypt_output output, const void *in,
                         size_t len, void *out, size_t cap, size_t *outlen);

/* A per-subject token's parts: kid (points into token), ref, mode and the
 * sealed bytes (into buf, cap ≥ len). VEIL_ENOTFOUND when the token is not
 * a per-subject token at all (another kind), VEIL_EINVAL when it claims to
 * be one but is malformed. */
struct veil_subject_token {
        const char *kid;
        size_t kid_len;
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        enum veil_encrypt_mode mode;
        const unsigned char *sealed;
        size_t sealed_len;
};
int veil_subject_token_parse(const void *token, size_t len, unsigned char *buf,
                             size_t cap, struct veil_subject_token *t);
/* Opens a parsed token with the subject's data key for `purpose` into out
 * (cap ≥ sealed_len). 0, VEIL_EDATA (does not authenticate: another
 * purpose, another key) or VEIL_EIO. */
int veil_subject_open(const struct veil_subject_token *t,
                      const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                      const char *purpose, void *out, size_t cap,
                      size_t *outlen, char *errstr, size_t errstr_size);

/* The ref of (source, subject) under ring key `kid` of config. 0 or
 * VEIL_EINVAL (no such key) / VEIL_EIO. Allocates (HKDF): not per record;
 * the store keeps keyed HMACs. */
int veil_subject_ref(const struct veil_config *config, const char *kid,
                     const char *source, const void *subject, size_t len,
                     unsigned char ref[VEIL_SUBJECT_REF_LEN], char *errstr,
                     size_t errstr_size);
/* Wraps `key` for `ref` under the ring key `kid` (the active key for new
 * blobs). 0 or an error with errstr. */
int veil_subject_wrap(const struct veil_config *config, const char *kid,
                      const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                      const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                      unsigned char *out, size_t cap, size_t *outlen,
                      char *errstr, size_t errstr_size);
/* Unwraps a blob found at `ref` with the ring key it names. 0,
 * VEIL_EINVAL (malformed), VEIL_ENOTFOUND (its key id is not in the ring)
 * or VEIL_EDATA (does not open: tampered, moved, another master key). */
int veil_subject_unwrap(const struct veil_config *config,
                        const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                        const void *blob, size_t len,
                        unsigned char key[VEIL_SUBJECT_KEY_LEN], char *errstr,
                        size_t errstr_size);

/* Does any purpose of the policy use `encrypt: { per_subject: true }`? */
bool veil_policy_per_subject(const struct veil_config *config);

/* ---- the worker's store ----------------------------------------------------
 * An index of every known subject's wrapped key (ref → blob and its
 * key-topic position, 96 bytes an entry plus 4 for its bucket; bounded by
 * veil_subject_keys_bound), filled from the key topic, and an LRU of
 * at most `cache_max` subjects' token keys: per subject its ref, links and
 * bucket (32 bytes) and, for each purpose of the config that uses
 * per_subject, its token keys (96 bytes), derived once when the subject
 * enters the LRU. The data key itself is not kept. Changes made inside a
 * Kafka transaction (keys created, re-wrapped, destroyed) are logged and
 * undone by rollback; commit makes them final. Single-threaded. */
struct veil_subject_keys;

/* config must outlive the store. Its per_subject purposes name the token
 * key slots (none: one slot, for tools and tests, named by the first
 * veil_subject_keys_slot asked). */
struct veil_subject_keys *
veil_subject_keys_new(const struct veil_config *config, size_t cache_max,
                      char *errstr, size_t errstr_size);
void veil_subject_keys_destroy(struct veil_subject_keys *sk);

/* Reads the key-topic record at (part, off) whose record key must be ref:
 * its value into blob. 0, or an error with errstr (VEIL_ENET: the worker
 * retries the batch; a record not there, or another ref, is an error too,
 * never "no key"). */
typedef int (*veil_subject_keys_fetch_fn)(void *arg, int32_t part, int64_t off,
                                          const unsigned char *ref,
                                          unsigned char *blob, size_t cap,
                                          size_t *len, char *errstr,
                                          size_t errstr_size);
/* Bounds the index: at most index_max entries resident (84 bytes of
 * wrapped key and 12 of position each); past it, at each commit, entries
 * not used lately whose record position is known (read back from the
 * topic) are spilled to a table of ref and position (24 bytes, 32 with
 * its load) and fetched back with `fetch` on their next use (a broker
 * round trip). 0: no bound. */
void veil_subject_keys_bound(struct veil_subject_keys *sk, size_t index_max,
                             veil_subject_keys_fetch_fn fetch, void *arg);

/* The slot of `purpose`'s token keys in what veil_subject_keys_get
 * returns, or -1 when the purpose has none here. */
int veil_subject_keys_slot(struct veil_subject_keys *sk, const char *purpose);

/* The token keys of (source, subject), one VEIL_SUBJECT_TOKEN_KEYS_LEN
 * block per slot, at *tks (owned by the store, valid until its next
 * call): from the LRU, else the data key unwrapped from the index
 * (re-wrapped under the active key when another key wrapped it: a pending
 * write), else made (RAND_bytes) and wrapped (a pending write). *ref and
 * *kid name where it lives. 0 or an error with errstr (the record then
 * fails closed). */
int veil_subject_keys_get(struct veil_subject_keys *sk, const char *source,
                          const void *subject, size_t len,
                          const unsigned char **tks,
                          unsigned char ref[VEIL_SUBJECT_REF_LEN],
                          const char **kid, char *errstr, size_t errstr_size);

/* A key-topic record read back (value NULL: a tombstone) at (part, off)
 * of the key topic (-1: not known; the entry then stays resident).
 * Records with a malformed key or value are ignored (counted). Outside a
 * transaction. */
void veil_subject_keys_apply_at(struct veil_subject_keys *sk, int32_t part,
                                int64_t off, const void *key, size_t key_len,
                                const void *value, size_t value_len);
void veil_subject_keys_apply(struct veil_subject_keys *sk, const void *key,
                             size_t key_len, const void *value,
                             size_t value_len);

/* Erasure inside the open transaction: the refs of (source, subject)
 * under every ring key, written into refs (n_ring of them, cap ≥
 * veil_subject_keys_ring_size), each forgotten here (undone by
 * rollback). Returns how many refs were written, or an error. */
size_t veil_subject_keys_ring_size(const struct veil_subject_keys *sk);
int veil_subject_keys_erase(struct veil_subject_keys *sk, const char *source,
                            const void *subject, size_t len,
                            unsigned char (*refs)[VEIL_SUBJECT_REF_LEN],
                            size_t cap, size_t *n, char *errstr,
                            size_t errstr_size);

/* The writes of the open transaction: calls fn for each key made or
 * re-wrapped since begin (ref, blob). Stops at the first non-zero return
 * and returns it. */
typedef int (*veil_subject_keys_write_fn)(void *arg, const unsigned char *ref,
                                          const unsigned char *blob,
                                          size_t blob_len);
int veil_subject_keys_pending(struct veil_subject_keys *sk,
                              veil_subject_keys_write_fn fn, void *arg);
void veil_subject_keys_commit(struct veil_subject_keys *sk);
void veil_subject_keys_rollback(struct veil_subject_keys *sk);

/* created, destroyed and rewrapped count committed changes (a rollback
 * takes back its own); hits and misses count LRU look-ups. */
struct veil_subject_keys_stats {
        uint64_t created, destroyed, hits, misses, rewrapped, bad_records;
        uint64_t fetched;   /* spilled subjects fetched back */
        size_t known;       /* subjects in the index (spilled ones too) */
        size_t spilled;     /* of which spilled (ref and position only) */
        size_t cached;      /* keys in the LRU */
        size_t cache_bytes; /* LRU memory */
        size_t index_bytes; /* index memory */
};
void veil_subject_keys_stats(const struct veil_subject_keys *sk,
                             struct veil_subject_keys_stats *st);
/* Bytes the LRU spends per cached subject (entry, token keys, bucket). */
size_t veil_subject_keys_cache_entry_bytes(const struct veil_subject_keys *sk);

#endif
