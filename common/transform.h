/* transform.h - the value transforms of a licence (hash, mask, generalize,
 * encrypt) on one field's bytes, and `reveal` of encrypt tokens. */
#ifndef VEIL_COMMON_TRANSFORM_H
#define VEIL_COMMON_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "policy.h"

/* Conventions: every function writes into a caller's buffer and never
 * allocates; outputs are not NUL-terminated; a buffer sized by the
 * documented maximum is always enough. Functions return 0 or a negative
 * VEIL_E* code. They never log, and no message carries a value. */

/* Key ids: 1..VEIL_TX_KEY_ID_MAX characters of [A-Za-z0-9._-], so a token's
 * prefix up to the first ':' is always the key id. */
#define VEIL_TX_KEY_ID_MAX 32

/* The keys of one purpose (or of all purposes when they share keys),
 * derived from the master key with HKDF-SHA256 (no salt):
 *   hash:    32 bytes, info "veil:hash:<purpose>"
 *   encrypt: 96 bytes, info "veil:encrypt:<purpose>" = SIV key (64) |
 *            GCM key (32)
 * With shared_across_purposes the infos are "veil:hash" and
 * "veil:encrypt", which no purpose name can produce.
 * veil_tx_hash reads the keys only (thread-safe); encrypt and reveal use
 * the cipher contexts inside (one veil_tx_keys per thread for those). */
struct veil_tx_keys {
        char key_id[VEIL_TX_KEY_ID_MAX + 1];
        size_t key_id_len;
        struct veil_hmac hash;
        struct veil_aead siv;
        struct veil_aead gcm;          /* opens version-1 'g' tokens only */
        struct veil_gcm_epochs gcm_ep; /* seals GCM tokens ('e') */
};

/* Derives a purpose's keys. `master` (≥ 32 bytes) and the strings are only
 * read. `purpose` may be NULL when `shared` is true. Returns 0, or
 * VEIL_EINVAL (bad key id, short master key, no purpose) / VEIL_EIO
 * (OpenSSL) with errstr; on error `keys` needs no destroy. Allocates. */
int veil_tx_keys_init(struct veil_tx_keys *keys, const unsigned char *master,
                      size_t master_len, const char *key_id,
                      const char *purpose, bool shared, char *errstr,
                      size_t errstr_size);
/* Frees the cipher contexts and wipes every key. Safe on a zeroed struct. */
void veil_tx_keys_destroy(struct veil_tx_keys *keys);

/* Checks a transform's parameters (mask counts ≥ 0 and a printable ASCII
 * mask character, generalize width > 0 and prefix ≥ 0, known encrypt
 * mode/output). For plan compilation and `veil check`. */
int veil_tx_check(const struct veil_transform *tx, char *errstr,
                  size_t errstr_size);

/* ---- hash --------------------------------------------------------------- */

/* Token: "<key_id>:" + base64url(HMAC-SHA256(hash key, value)), 43
 * characters after the colon. Same value and key → same token. */
#define VEIL_TX_HASH_B64_LEN 43
#define VEIL_TX_HASH_TOKEN_MAX (VEIL_TX_KEY_ID_MAX + 1 + VEIL_TX_HASH_B64_LEN)

/* The exact length of this purpose's hash tokens. */
size_t veil_tx_hash_len(const struct veil_tx_keys *keys);
/* Returns 0 or VEIL_EINVAL when cap < veil_tx_hash_len(keys). */
int veil_tx_hash(const struct veil_tx_keys *keys, const void *in, size_t len,
                 char *out, size_t cap, size_t *outlen);

/* ---- mask --------------------------------------------------------------- */

/* Masks a UTF-8 string, counting code points, not bytes (a byte that does
 * not start a well-formed sequence counts as one character):
 * - plain: the first keep_first and the last keep_last characters stay,
 *   every other character becomes one mask_char byte;
 * - digits_only: only ASCII digits are masked and counted (keep_first /
 *   keep_last count digits), everything else stays: "4111 1111 1111 1111"
 *   with keep_last 4 → "**** **** **** 1111".
 * When keep_first + keep_last covers every counted character nothing is
 * masked. Output length ≤ len (= len for ASCII input and for digits_only),
 * so cap ≥ len is always enough. Returns 0 or VEIL_EINVAL (bad parameters,
 * see veil_tx_check, or cap too small). */
#define VEIL_TX_MASK_MAX(len) (len)
int veil_tx_mask(const struct veil_transform *tx, const char *in, size_t len,
                 char *out, size_t cap, size_t *outlen);

/* ---- generalize ---------------------------------------------------------- */

/* Numbers: floor to the bucket of `width` (> 0): 17 → 10, -1 → -10.
 * Returns VEIL_EINVAL when width ≤ 0, VEIL_EDATA when the bucket's floor is
 * not representable in the type (within `width` of the type's minimum). */
int veil_tx_bucket_long(int64_t v, int64_t width, int64_t *out);
int veil_tx_bucket_int(int32_t v, int64_t width, int32_t *out);
/* Floating point: floor(v / width) * width; NaN and ±inf pass unchanged. */
int veil_tx_bucket_double(double v, int64_t width, double *out);
int veil_tx_bucket_float(float v, int64_t width, float *out);

/* Dates and timestamps → the UTC (proleptic Gregorian) year:
 * `date` (days since 1970-01-01) and timestamp-millis/micros/nanos
 * (also local-timestamp-*), negatives before 1970: -1 → 1969. */
#define VEIL_TX_MILLIS_PER_DAY INT64_C(86400000)
#define VEIL_TX_MICROS_PER_DAY INT64_C(86400000000)
#define VEIL_TX_NANOS_PER_DAY INT64_C(86400000000000)
int32_t veil_tx_year_from_days(int32_t days);
/* units_per_day: one of the VEIL_TX_*_PER_DAY above. Every int64 value
 * has a year that fits int32 for those units. */
int32_t veil_tx_year_from_timestamp(int64_t v, int64_t units_per_day);

/* Strings: the first `prefix` UTF-8 code points. The result is always a
 * prefix of the input, so veil_tx_prefix_len gives its byte length and
 * a plan can copy the range itself. */
size_t veil_tx_prefix_len(const char *in, size_t len, int prefix);
int veil_tx_prefix(const char *in, size_t len, int prefix, char *out,
                   size_t cap, size_t *outlen);

/* ---- encrypt / reveal -----------------------------------------------------
 */

/* String tokens:
 *   SIV: "<key_id>:s:" + base64url(tag(16) | ciphertext), deterministic
 *   GCM: "<key_id>:e:" + base64url(salt(16) | nonce(12) | ciphertext |
 *        tag(16)), sealed under the epoch key of salt (struct
 *        veil_gcm_epochs: each worker, thread and restart seals under its
 *        own key, so random nonces stay far below GCM's 2^32 bound).
 *   Version 1 GCM tokens, "<key_id>:g:" + base64url(nonce(12) |
 *   ciphertext | tag(16)) under the purpose's GCM key itself, are no
 *   longer made but still reveal.
 * Bytes form (`output: bytes`), the same sealed bytes without base64:
 *   mode byte (VEIL_TX_ENC_BYTES_SIV / _GCM_EPOCH, or _GCM for version 1),
 *   key id length byte, key id, sealed bytes.
 * The mode byte is a control character, which never starts a key id, so
 * reveal tells the forms apart. */
#define VEIL_TX_ENC_BYTES_SIV 0x01
#define VEIL_TX_ENC_BYTES_GCM 0x02
#define VEIL_TX_ENC_BYTES_GCM_EPOCH 0x03
/* Enough for either form of a `len`-byte value. */
#define VEIL_TX_ENCRYPT_MAX(len)                                               \
        (VEIL_TX_KEY_ID_MAX + 3 +                                              \
         VEIL_B64URL_LEN((len) + VEIL_GCM_EPOCH_OVERHEAD))

/* The key id a token names (string or bytes form of an encrypt token, or
 * a hash token): *kid points into `token`. 0, or VEIL_EINVAL when the
 * token has no well-formed key id. For `veil reveal` to pick the ring key
 * before it derives anything. */
int veil_tx_token_key_id(const void *token, size_t len, const char **kid,
                         size_t *kid_len);

/* The exact output length for this key, mode and output form. */
size_t veil_tx_encrypt_len(const struct veil_tx_keys *keys,
                           enum veil_encrypt_mode mode,
                           enum veil_encrypt_output output, size_t len);
/* Returns 0, VEIL_EINVAL (cap too small, len > VEIL_AEAD_MAX_LEN) or
 * VEIL_EIO (OpenSSL failure). Allocation-free: the cipher contexts
 * inside `keys` are keyed once (see struct veil_aead). */
int veil_tx_encrypt(struct veil_tx_keys *keys, enum veil_encrypt_mode mode,
                    enum veil_encrypt_output output, const void *in, size_t len,
                    void *out, size_t cap, size_t *outlen);

/* Decrypts a token in either form into out (cap ≥ len is always
 * enough). Errors, with a message that never contains plaintext:
 * VEIL_EINVAL  not a Veil encrypt token (shape, base64, mode);
 * VEIL_EAUTH   the token names another key id (the message names both);
 * VEIL_EDATA   it does not authenticate: tampered, or sealed for another
 *              purpose or with another master key under the same id. */
int veil_tx_reveal(struct veil_tx_keys *keys, const void *token, size_t len,
                   void *out, size_t cap, size_t *outlen, char *errstr,
                   size_t errstr_size);

/* ---- one entry point for string/bytes values ----------------------------- */

/* Applies hash, mask, generalize (string prefix) or encrypt to a string or
 * bytes value. VEIL_ETYPE for other kinds (keep, drop, null, redact_text
 * are the plan's business). veil_tx_string_max gives a sufficient cap. */
size_t veil_tx_string_max(const struct veil_tx_keys *keys,
                          const struct veil_transform *tx, size_t len);
int veil_tx_string(struct veil_tx_keys *keys, const struct veil_transform *tx,
                   const void *in, size_t len, void *out, size_t cap,
                   size_t *outlen);

#endif
