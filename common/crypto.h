/* crypto.h - keyed-once HMAC-SHA256, HKDF, AES-SIV/AES-GCM and base64url. */
#ifndef VEIL_COMMON_CRYPTO_H
#define VEIL_COMMON_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_SHA256_LEN 32
#define VEIL_SHA256_BLOCK_LEN 64

/* SHA-256 compression: a portable C version everywhere and, on x86 CPUs
 * with the SHA extensions, one on the SHA-NI instructions. OpenSSL 3.0 has
 * no non-deprecated SHA-256 whose state can be cloned without a heap
 * allocation (EVP_MD_CTX_copy_ex and EVP_DigestInit_ex both allocate), and
 * keyed-once HMAC needs exactly that clone per value. */
enum veil_sha256_impl {
        VEIL_SHA256_AUTO = 0, /* the fastest this CPU supports */
        VEIL_SHA256_PORTABLE,
        VEIL_SHA256_SHANI,
};

/* The implementation VEIL_SHA256_AUTO picks on this CPU. */
enum veil_sha256_impl veil_sha256_best(void);
/* "portable", "sha-ni" (for benchmarks and logs). */
const char *veil_sha256_impl_name(enum veil_sha256_impl impl);

/* HMAC-SHA256 keyed once: the SHA-256 states after absorbing key^ipad and
 * key^opad. A value's MAC starts from copies of them, so it costs two
 * compressions for short inputs instead of four, and never allocates.
 * Plain data: copy it freely, share it read-only between threads. */
struct veil_hmac {
        uint32_t inner[8];
        uint32_t outer[8];
        void (*blocks)(uint32_t state[8], const unsigned char *p,
                       size_t nblocks);
};

/* Keys longer than the block size are hashed first (RFC 2104).
 * veil_hmac_init uses VEIL_SHA256_AUTO and cannot fail; veil_hmac_init_impl
 * returns VEIL_EINVAL when this CPU lacks `impl`. */
void veil_hmac_init(struct veil_hmac *h, const void *key, size_t len);
int veil_hmac_init_impl(struct veil_hmac *h, const void *key, size_t len,
                        enum veil_sha256_impl impl);
/* out = HMAC-SHA256(key, data). Reads `h` only: thread-safe. */
void veil_hmac_sha256(const struct veil_hmac *h, const void *data, size_t len,
                      unsigned char out[VEIL_SHA256_LEN]);
/* digest = SHA-256(data) and mac = HMAC-SHA256(key, data) in one pass
 * over the data (on SHA-NI the two hashes share each block's message
 * schedule and run side by side); the same bytes as veil_sha256 and
 * veil_hmac_sha256 give. Reads `h` only: thread-safe. */
void veil_sha256_hmac_pair(const struct veil_hmac *h, const void *data,
                           size_t len, unsigned char digest[VEIL_SHA256_LEN],
                           unsigned char mac[VEIL_SHA256_LEN]);
/* out[i] = HMAC-SHA256(key, data[i][0, len[i])) for i < n: on CPUs with
 * AVX-512 sixteen values are hashed side by side (several times the rate
 * of one call each on short values), else one call each. */
void veil_hmac_sha256_many(const struct veil_hmac *h, size_t n,
                           const void *const *data, const size_t *len,
                           unsigned char (*out)[VEIL_SHA256_LEN]);
/* Wipes the keyed states. */
void veil_hmac_cleanse(struct veil_hmac *h);

/* Plain SHA-256 over the same compression (tests, small digests). */
void veil_sha256(const void *data, size_t len,
                 unsigned char out[VEIL_SHA256_LEN]);

/* HKDF-SHA256 (RFC 5869) through OpenSSL's EVP_KDF "HKDF". `salt` may be
 * NULL (a string of zeros, as the RFC says). Returns 0, or VEIL_EINVAL /
 * VEIL_EIO with errstr when OpenSSL refuses. Allocates: call at setup. */
int veil_hkdf_sha256(const void *key, size_t key_len, const void *salt,
                     size_t salt_len, const void *info, size_t info_len,
                     unsigned char *out, size_t out_len, char *errstr,
                     size_t errstr_size);
/* The same without a salt (zeros), over veil_hmac: no allocation, no
 * OpenSSL dispatch (a few hundred ns where the EVP_KDF path costs
 * microseconds), for derivations made per record. info_len ≤ 255,
 * out_len ≤ 255 * 32, key_len ≥ 1; else VEIL_EINVAL. */
int veil_hkdf_sha256_noalloc(const void *key, size_t key_len, const void *info,
                             size_t info_len, unsigned char *out,
                             size_t out_len);

/* Authenticated encryption with a key fixed at init.
 * SIV: AES-256-SIV (RFC 5297, no associated data), deterministic: equal
 *      plaintexts give equal ciphertexts. Sealed layout: V(16) | ciphertext.
 *      64-byte key: CMAC key | CTR key, as OpenSSL's "AES-256-SIV" takes it.
 * GCM: AES-256-GCM with a random 12-byte nonce per message.
 *      Sealed layout: nonce(12) | ciphertext | tag(16). 32-byte key. */
enum veil_aead_mode { VEIL_AEAD_SIV = 0, VEIL_AEAD_GCM };

#define VEIL_AEAD_TAG_LEN 16
#define VEIL_AEAD_GCM_NONCE_LEN 12
#define VEIL_AEAD_SIV_KEY_LEN 64
#define VEIL_AEAD_GCM_KEY_LEN 32
/* Bytes a sealed message adds to the plaintext (largest of both modes). */
#define VEIL_AEAD_OVERHEAD (VEIL_AEAD_GCM_NONCE_LEN + VEIL_AEAD_TAG_LEN)
/* Longest plaintext accepted (OpenSSL's update takes an int length). */
#define VEIL_AEAD_MAX_LEN ((size_t)1 << 30)
/* GCM nonces drawn per RAND_bytes call (one call costs ~0.6 us). */
#define VEIL_AEAD_NONCE_POOL 64

struct evp_cipher_st;
struct evp_cipher_ctx_st;
struct evp_mac_st;
struct evp_mac_ctx_st;

/* Keyed once at init; no message allocates.
 * SIV is S2V and CTR composed from OpenSSL's CMAC and AES-256-CTR, both
 * keyed once and re-initialised per message: OpenSSL 3.0's own AES-SIV
 * can do one message per keying (re-keying costs ~2.5 us and ~20 heap
 * allocations) and fails on an empty plaintext. Tests check it against
 * OpenSSL's AES-256-SIV byte for byte.
 * GCM keeps both contexts keyed and only sets a nonce per message; nonces
 * come from a pool refilled with RAND_bytes, discarded in a forked child.
 * Not thread-safe: one per thread. */
struct veil_aead {
        enum veil_aead_mode mode;
        struct evp_cipher_st *cipher;  /* SIV: AES-256-CTR; GCM: -GCM */
        struct evp_cipher_ctx_st *enc; /* SIV: the CTR context */
        struct evp_cipher_ctx_st *dec; /* GCM only */
        struct evp_mac_st *mac;        /* SIV only: CMAC */
        struct evp_mac_ctx_st *cmac;   /* SIV only: keyed with K1 */
        unsigned char d[16];           /* SIV: CMAC(K1, 0^128) */
        unsigned char d2[16];          /* SIV: dbl(d) */
        unsigned char nonces[VEIL_AEAD_NONCE_POOL * VEIL_AEAD_GCM_NONCE_LEN];
        unsigned nonce_next; /* GCM: next unused pool slot */
        unsigned fork_gen;   /* GCM: fork generation of pool */
};

/* Fetches the algorithms and keys the contexts. key_len must be the
 * mode's (64 for SIV, 32 for GCM). Returns 0 or VEIL_EINVAL / VEIL_EIO
 * with errstr; on error `a` needs no destroy. */
int veil_aead_init(struct veil_aead *a, enum veil_aead_mode mode,
                   const unsigned char *key, size_t key_len, char *errstr,
                   size_t errstr_size);
/* Keys an initialised `a` anew (same mode, key_len the mode's): the
 * contexts are kept, so this costs the key schedules, not a setup (no
 * fetch, no allocation). A GCM nonce pool is kept: its nonces are fresh
 * random ones under any key. 0, VEIL_EINVAL (not initialised, wrong
 * length) or VEIL_EIO; on VEIL_EIO `a` must be destroyed. */
int veil_aead_rekey(struct veil_aead *a, const unsigned char *key,
                    size_t key_len);
/* Frees the contexts and wipes the key material. Safe on a zeroed
 * struct. */
void veil_aead_destroy(struct veil_aead *a);

/* Seals `len` bytes (≤ VEIL_AEAD_MAX_LEN) into out (cap ≥ len +
 * VEIL_AEAD_OVERHEAD is always enough). Returns 0, VEIL_EINVAL (too long,
 * cap too small) or VEIL_EIO (OpenSSL failure). `in` and `out` must not
 * overlap. */
int veil_aead_seal(struct veil_aead *a, const void *in, size_t len,
                   unsigned char *out, size_t cap, size_t *outlen);
/* Opens a sealed message into out (cap ≥ len is enough). Returns 0,
 * VEIL_EINVAL (too short, cap too small), VEIL_EDATA (does not
 * authenticate: tampered, or sealed with another key) or VEIL_EIO. On
 * failure nothing of the plaintext is left in out. `out` may be `in`
 * (decrypt in place); otherwise they must not overlap. */
int veil_aead_open(struct veil_aead *a, const unsigned char *in, size_t len,
                   unsigned char *out, size_t cap, size_t *outlen);

/* The same with associated data (`ad`, GCM only: VEIL_EINVAL for SIV
 * when ad_len > 0): the data is authenticated, not sealed, so a sealed
 * message opens only beside the same `ad` (e.g. a dead letter's headers).
 * veil_aead_seal / _open are these with no associated data. */
int veil_aead_seal_ad(struct veil_aead *a, const void *ad, size_t ad_len,
                      const void *in, size_t len, unsigned char *out,
                      size_t cap, size_t *outlen);
int veil_aead_open_ad(struct veil_aead *a, const void *ad, size_t ad_len,
                      const unsigned char *in, size_t len, unsigned char *out,
                      size_t cap, size_t *outlen);

/* AES-256-GCM under epoch keys: the lifetime bound of a GCM key.
 * With random 96-bit nonces, NIST SP 800-38D allows at most 2^32
 * messages under one key (the chance that two nonces collide, which
 * loses the authentication key, must stay below 2^-32): at 100k
 * encryptions/s that is half a day for one key shared by every worker and
 * every restart. So a base key is never used directly: each epoch
 * draws a random 16-byte salt and seals under HKDF-SHA256(base, salt,
 * "veil:gcm-epoch"). An epoch ends when its owner is created (every
 * worker, thread, restart and reload starts its own) and after
 * VEIL_GCM_EPOCH_MAX messages (2^28: the collision chance per epoch is
 * then about 2^56 / 2^97 = 2^-41). The salt travels in front of the sealed
 * message, so any holder of the base key opens any epoch's messages.
 * Sealed layout: salt(16) | nonce(12) | ciphertext | tag(16).
 * Not thread-safe: one per thread. */
#define VEIL_GCM_EPOCH_SALT_LEN 16
#define VEIL_GCM_EPOCH_MAX ((uint64_t)1 << 28)
#define VEIL_GCM_EPOCH_OVERHEAD (VEIL_GCM_EPOCH_SALT_LEN + VEIL_AEAD_OVERHEAD)

struct veil_gcm_epochs {
        unsigned char base[VEIL_AEAD_GCM_KEY_LEN];
        unsigned char salt[VEIL_GCM_EPOCH_SALT_LEN];
        struct veil_aead aead; /* this epoch's key */
        uint64_t sealed;       /* messages sealed in this epoch */
        bool keyed;
};

/* Copies `base` and starts an epoch. 0, or VEIL_EIO with errstr; on
 * error `g` needs no destroy. Allocates. */
int veil_gcm_epochs_init(struct veil_gcm_epochs *g,
                         const unsigned char base[VEIL_AEAD_GCM_KEY_LEN],
                         char *errstr, size_t errstr_size);
/* Wipes the keys. Safe on a zeroed struct. */
void veil_gcm_epochs_destroy(struct veil_gcm_epochs *g);
/* Seals into out (cap ≥ len + VEIL_GCM_EPOCH_OVERHEAD). Errors as
 * veil_aead_seal_ad. Allocation-free except when an epoch ends. */
int veil_gcm_epochs_seal(struct veil_gcm_epochs *g, const void *ad,
                         size_t ad_len, const void *in, size_t len,
                         unsigned char *out, size_t cap, size_t *outlen);
/* Opens a message of any epoch (another epoch's key is derived for the
 * call: allocates). Errors as veil_aead_open_ad; `out` may be `in`
 * (decrypt in place), else they must not overlap. */
int veil_gcm_epochs_open(struct veil_gcm_epochs *g, const void *ad,
                         size_t ad_len, const unsigned char *in, size_t len,
                         unsigned char *out, size_t cap, size_t *outlen);

/* Keys `h` / `a` with HKDF-SHA256(master, no salt, info) (a 32-byte HMAC
 * key; the mode's key length for AEAD), wiping the derived key after use:
 * every subkey Veil derives from the master key for one purpose ("veil:dlq",
 * "veil:audit", ...) is keyed this way. Return 0, or an error with errstr
 * as veil_hkdf_sha256 / veil_aead_init; on error nothing needs destroying.
 * Allocate: call at setup. */
int veil_hmac_init_derived(struct veil_hmac *h, const void *master,
                           size_t master_len, const char *info, char *errstr,
                           size_t errstr_size);
int veil_aead_init_derived(struct veil_aead *a, enum veil_aead_mode mode,
                           const void *master, size_t master_len,
                           const char *info, char *errstr, size_t errstr_size);

/* base64url (RFC 4648 §5) without padding. */
#define VEIL_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
/* Encodes into out (cap ≥ VEIL_B64URL_LEN(len)); no NUL is written.
 * Returns 0 or VEIL_EINVAL when cap is too small. `in` may overlap `out`
 * only when it ends where the encoding ends (in == out +
 * VEIL_B64URL_LEN(len) - len): each group is read before it is written,
 * so a value sealed at the end of an output buffer encodes in place. */
int veil_b64url_encode(const void *in, size_t len, char *out, size_t cap,
                       size_t *outlen);
/* Decodes canonical unpadded base64url (cap ≥ len * 3 / 4 is enough).
 * Returns 0 or VEIL_EINVAL on a character outside the alphabet, '=', an
 * impossible length, non-zero unused trailing bits, or a short cap. */
int veil_b64url_decode(const char *in, size_t len, unsigned char *out,
                       size_t cap, size_t *outlen);

/* Wipes secrets (OPENSSL_cleanse: not optimised away). */
void veil_cleanse(void *p, size_t len);

#endif
