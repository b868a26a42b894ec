/* subject_keys.c - per-subject data keys (crypto-shredding): refs, wrapping,
 * tokens, and the worker's store (an index of wrapped keys, an LRU of
 * subjects' token keys, an undo log for the open transaction).
 *
 * Why an index of wrapped keys and a bounded LRU of token keys: the index
 * (96 bytes a subject) is what tells "this subject already has a key"
 * without a broker round trip on every new subject; it is filled from the
 * compacted key topic and kept current by reading that topic between
 * transactions. Past its bound, subjects not used lately keep only their
 * ref and record position (24 bytes) and are fetched back on use: the
 * knowledge that a subject has a key is never dropped (dropping it would
 * make a second key and orphan the first one's tokens), only its bytes. The
 * secrets in memory are bounded by the LRU, and it holds what a record needs
 * rather than the data key: each per_subject purpose's token keys (96 bytes:
 * the HKDF output), so a record of a cached subject costs a ref (one HMAC), a
 * look-up and the re-keying of one AES context, never an HKDF or a context
 * set-up (bench/bench_shred.c: 9.4 us a record before, 1.6 us after, the plain
 * SIV encrypt 0.3-0.5 us in the same run). 32 bytes of ref, links and bucket
 * beside the keys (veil_subject_keys_cache_entry_bytes). Caching the AES key
 * schedules too (240 bytes each, two for SIV) would save the re-keying but
 * triple the bytes per subject. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "keyring.h"
#include "subject_keys.h"
#include "util.h"
#include "veil.h"

#define REF_INFO "veil:subject-ref"
#define WRAP_INFO "veil:subject-wrap"
#define WRAP_AD "veil:subject-key"
#define NIL UINT32_MAX

/* ---- ciphers and tokens ---------------------------------------------------
 */

void veil_subject_cipher_clear(struct veil_subject_cipher *c)
{
        if (!c)
                return;
        veil_aead_destroy(&c->siv);
        veil_aead_destroy(&c->gcm);
        veil_cleanse(c, sizeof(*c));
}

int veil_subject_token_keys(const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                            const char *purpose,
                            unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN])
{
        char info[256];

        /* A purpose name is far shorter than the buffer; were it not, the
         * cut is the same for the worker and for veil reveal. */
        snprintf(info, sizeof(info), "veil:subject:%s", purpose);
        return veil_hkdf_sha256_noalloc(key, VEIL_SUBJECT_KEY_LEN, info,
                                        strlen(info), tk,
                                        VEIL_SUBJECT_TOKEN_KEYS_LEN);
}

int veil_subject_cipher_key(struct veil_subject_cipher *c,
                            const unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN],
                            const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                            const char *kid, char *errstr, size_t errstr_size)
{
        size_t kl = strlen(kid);

        c->keyed = false;
        if (kl >= sizeof(c->kid))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "subject key: key id too long");
        memcpy(c->tk, tk, VEIL_SUBJECT_TOKEN_KEYS_LEN);
        memcpy(c->ref, ref, VEIL_SUBJECT_REF_LEN);
        memcpy(c->kid, kid, kl + 1);
        c->kid_len   = kl;
        c->siv_keyed = false;
        c->gcm_keyed = false;
        c->keyed     = true;
        return 0;
}

bool veil_subject_cipher_is(const struct veil_subject_cipher *c,
                            const unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN],
                            const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                            const char *kid)
{
        return c->keyed && !memcmp(c->ref, ref, VEIL_SUBJECT_REF_LEN) &&
               !memcmp(c->tk, tk, VEIL_SUBJECT_TOKEN_KEYS_LEN) &&
               !strcmp(c->kid, kid);
}

/* The context of `mode` keyed with c's token keys: set up on first use,
 * re-keyed (key schedules only, no allocation) when the subject changed.
 * NULL when OpenSSL fails. */
static struct veil_aead *cipher_mode(struct veil_subject_cipher *c,
                                     enum veil_encrypt_mode mode)
{
        bool siv               = mode == VEIL_ENCRYPT_SIV;
        struct veil_aead *a    = siv ? &c->siv : &c->gcm;
        bool *keyed            = siv ? &c->siv_keyed : &c->gcm_keyed;
        const unsigned char *k = siv ? c->tk : c->tk + VEIL_AEAD_SIV_KEY_LEN;
        size_t kl = siv ? VEIL_AEAD_SIV_KEY_LEN : VEIL_AEAD_GCM_KEY_LEN;

        if (*keyed)
                return a;
        if (a->enc) {
                if (veil_aead_rekey(a, k, kl)) {
                        veil_aead_destroy(a);
                        return NULL;
                }
        } else if (veil_aead_init(a, siv ? VEIL_AEAD_SIV : VEIL_AEAD_GCM, k, kl,
                                  NULL, 0)) {
                return NULL;
        }
        *keyed = true;
        return a;
}

static size_t sealed_len(enum veil_encrypt_mode mode, size_t len)
{
        return len + (mode == VEIL_ENCRYPT_SIV ? VEIL_AEAD_TAG_LEN
                                               : VEIL_AEAD_OVERHEAD);
}

size_t veil_subject_encrypt_len(const struct veil_subject_cipher *c,
                                enum veil_encrypt_mode mode,
                                enum veil_encrypt_output output, size_t len)
{
        size_t raw = VEIL_SUBJECT_REF_LEN + sealed_len(mode, len);

        if (output == VEIL_ENCRYPT_OUT_BYTES)
                return 2 + c->kid_len + raw;
        return c->kid_len + 3 + VEIL_B64URL_LEN(raw);
}

int veil_subject_encrypt(struct veil_subject_cipher *c,
                         enum veil_encrypt_mode mode,
                         enum veil_encrypt_output output, const void *in,
                         size_t len, void *out, size_t cap, size_t *outlen)
{
        unsigned char *o = out, *raw;
        size_t total, raw_len, n, head;
        struct veil_aead *a;

        if (!c->keyed || len > VEIL_AEAD_MAX_LEN ||
            (mode != VEIL_ENCRYPT_SIV && mode != VEIL_ENCRYPT_GCM))
                return VEIL_EINVAL;
        total = veil_subject_encrypt_len(c, mode, output, len);
        if (cap < total)
                return VEIL_EINVAL;
        a = cipher_mode(c, mode);
        if (!a)
                return VEIL_EIO;
        raw_len = VEIL_SUBJECT_REF_LEN + sealed_len(mode, len);
        if (output == VEIL_ENCRYPT_OUT_BYTES) {
                o[0] = mode == VEIL_ENCRYPT_SIV ? VEIL_SUBJECT_BYTES_SIV
                                                : VEIL_SUBJECT_BYTES_GCM;
                o[1] = (unsigned char)c->kid_len;
                memcpy(o + 2, c->kid, c->kid_len);
                head = 2 + c->kid_len;
                memcpy(o + head, c->ref, VEIL_SUBJECT_REF_LEN);
                if (veil_aead_seal(a, in, len, o + head + VEIL_SUBJECT_REF_LEN,
                                   cap - head - VEIL_SUBJECT_REF_LEN, &n))
                        return VEIL_EIO;
                *outlen = head + VEIL_SUBJECT_REF_LEN + n;
                return 0;
        }
        memcpy(o, c->kid, c->kid_len);
        o[c->kid_len]     = ':';
        o[c->kid_len + 1] = mode == VEIL_ENCRYPT_SIV ? 'S' : 'G';
        o[c->kid_len + 2] = ':';
        head              = c->kid_len + 3;
        /* Seal at the end of the buffer and encode in place (the encoder
         * allows exactly this overlap). */
        raw = o + total - raw_len;
        memcpy(raw, c->ref, VEIL_SUBJECT_REF_LEN);
        if (veil_aead_seal(a, in, len, raw + VEIL_SUBJECT_REF_LEN,
                           raw_len - VEIL_SUBJECT_REF_LEN, &n))
                return VEIL_EIO;
        if (veil_b64url_encode(raw, raw_len, (char *)o + head, total - head,
                               &n))
                return VEIL_EIO;
        *outlen = head + n;
        return 0;
}

int veil_subject_token_parse(const void *token, size_t len, unsigned char *buf,
                             size_t cap, struct veil_subject_token *t)
{
        const unsigned char *p = token;
        const unsigned char *raw;
        size_t raw_len, i;

        memset(t, 0, sizeof(*t));
        if (len >= 2 && (p[0] == VEIL_SUBJECT_BYTES_SIV ||
                         p[0] == VEIL_SUBJECT_BYTES_GCM)) {
                t->mode    = p[0] == VEIL_SUBJECT_BYTES_SIV ? VEIL_ENCRYPT_SIV
                                                            : VEIL_ENCRYPT_GCM;
                t->kid_len = p[1];
                if (len < 2 + t->kid_len + VEIL_SUBJECT_REF_LEN ||
                    !veil_key_id_valid((const char *)p + 2, t->kid_len))
                        return VEIL_EINVAL;
                t->kid  = (const char *)p + 2;
                raw     = p + 2 + t->kid_len;
                raw_len = len - 2 - t->kid_len;
                if (raw_len > cap)
                        return VEIL_EINVAL;
                memcpy(buf, raw, raw_len);
        } else {
                for (i = 0; i < len && p[i] != ':'; i++)
                        ;
                if (i == len || i + 2 >= len || p[i + 2] != ':' ||
                    (p[i + 1] != 'S' && p[i + 1] != 'G'))
                        return VEIL_ENOTFOUND;
                if (!veil_key_id_valid((const char *)p, i))
                        return VEIL_EINVAL;
                t->kid     = (const char *)p;
                t->kid_len = i;
                t->mode = p[i + 1] == 'S' ? VEIL_ENCRYPT_SIV : VEIL_ENCRYPT_GCM;
                if (veil_b64url_decode((const char *)p + i + 3, len - i - 3,
                                       buf, cap, &raw_len))
                        return VEIL_EINVAL;
        }
        if (raw_len < VEIL_SUBJECT_REF_LEN + sealed_len(t->mode, 0))
                return VEIL_EINVAL;
        memcpy(t->ref, buf, VEIL_SUBJECT_REF_LEN);
        t->sealed     = buf + VEIL_SUBJECT_REF_LEN;
        t->sealed_len = raw_len - VEIL_SUBJECT_REF_LEN;
        return 0;
}

int veil_subject_open(const struct veil_subject_token *t,
                      const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                      const char *purpose, void *out, size_t cap,
                      size_t *outlen, char *errstr, size_t errstr_size)
{
        static const unsigned char zero[VEIL_SUBJECT_REF_LEN];
        unsigned char tk[VEIL_SUBJECT_TOKEN_KEYS_LEN];
        struct veil_subject_cipher c;
        struct veil_aead *a = NULL;
        int rc;

        memset(&c, 0, sizeof(c));
        rc = veil_subject_token_keys(key, purpose, tk);
        if (!rc)
                rc = veil_subject_cipher_key(&c, tk, zero, "x", errstr,
                                             errstr_size);
        veil_cleanse(tk, sizeof(tk));
        if (!rc && !(a = cipher_mode(&c, t->mode)))
                rc = VEIL_EIO;
        if (!rc)
                rc = veil_aead_open(a, t->sealed, t->sealed_len, out, cap,
                                    outlen);
        veil_subject_cipher_clear(&c);
        if (rc == VEIL_EDATA)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "the token does not open with its "
                                 "subject's key for purpose %s",
                                 purpose);
        if (rc)
                return veil_errf(errstr, errstr_size, rc,
                                 "opening the token failed");
        return 0;
}

/* ---- refs and wrapping ------------------------------------------------------
 */

static const struct veil_key *ring_key(const struct veil_config *config,
                                       const char *kid, size_t kid_len,
                                       char *errstr, size_t errstr_size)
{
        const struct veil_key *k = veil_keyring_find(config, kid, kid_len);

        if (!k || !k->key) {
                veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                          "key id '%.*s' is not in the keyring",
                          (int)(kid_len > 32 ? 32 : kid_len), kid);
                return NULL;
        }
        return k;
}

static void ref_of(const struct veil_hmac *h, const char *source,
                   const void *subject, size_t len,
                   unsigned char ref[VEIL_SUBJECT_REF_LEN])
{
        unsigned char mac[VEIL_SHA256_LEN], stack[512], *b = stack;
        size_t sl = strlen(source), n = sl + 1 + len;

        /* source | 0x00 | subject: a source name has no NUL. */
        if (n > sizeof(stack))
                b = veil_malloc(n);
        memcpy(b, source, sl);
        b[sl] = 0;
        if (len)
                memcpy(b + sl + 1, subject, len);
        veil_hmac_sha256(h, b, n, mac);
        veil_cleanse(b, n);
        if (b != stack)
                free(b);
        memcpy(ref, mac, VEIL_SUBJECT_REF_LEN);
        veil_cleanse(mac, sizeof(mac));
}

int veil_subject_ref(const struct veil_config *config, const char *kid,
                     const char *source, const void *subject, size_t len,
                     unsigned char ref[VEIL_SUBJECT_REF_LEN], char *errstr,
                     size_t errstr_size)
{
        const struct veil_key *k =
                ring_key(config, kid, strlen(kid), errstr, errstr_size);
        struct veil_hmac h;
        int rc;

        if (!k)
                return VEIL_ENOTFOUND;
        rc = veil_hmac_init_derived(&h, k->key, k->len, REF_INFO, errstr,
                                    errstr_size);
        if (rc)
                return rc;
        ref_of(&h, source, subject, len, ref);
        veil_hmac_cleanse(&h);
        return 0;
}

static int wrap_with(struct veil_aead *a, const char *kid,
                     const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                     const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                     unsigned char *out, size_t cap, size_t *outlen)
{
        unsigned char ad[sizeof(WRAP_AD) - 1 + VEIL_SUBJECT_REF_LEN];
        size_t kl = strlen(kid), n;

        if (kl > 32 || cap < 2 + kl + VEIL_SUBJECT_SEALED_LEN)
                return VEIL_EINVAL;
        memcpy(ad, WRAP_AD, sizeof(WRAP_AD) - 1);
        memcpy(ad + sizeof(WRAP_AD) - 1, ref, VEIL_SUBJECT_REF_LEN);
        out[0] = VEIL_SUBJECT_WRAP_VERSION;
        out[1] = (unsigned char)kl;
        memcpy(out + 2, kid, kl);
        if (veil_aead_seal_ad(a, ad, sizeof(ad), key, VEIL_SUBJECT_KEY_LEN,
                              out + 2 + kl, cap - 2 - kl, &n))
                return VEIL_EIO;
        *outlen = 2 + kl + n;
        return 0;
}

/* Checks a blob's shape; *kid / *kid_len point into it. */
static int blob_parse(const unsigned char *b, size_t len, const char **kid,
                      size_t *kid_len)
{
        if (len < 2 || b[0] != VEIL_SUBJECT_WRAP_VERSION ||
            len != 2u + b[1] + VEIL_SUBJECT_SEALED_LEN ||
            !veil_key_id_valid((const char *)b + 2, b[1]))
                return VEIL_EINVAL;
        *kid     = (const char *)b + 2;
        *kid_len = b[1];
        return 0;
}

static int unwrap_with(struct veil_aead *a,
                       const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                       const unsigned char *sealed,
                       unsigned char key[VEIL_SUBJECT_KEY_LEN])
{
        unsigned char ad[sizeof(WRAP_AD) - 1 + VEIL_SUBJECT_REF_LEN];
        unsigned char tmp[VEIL_SUBJECT_SEALED_LEN];
        size_t n;
        int rc;

        memcpy(ad, WRAP_AD, sizeof(WRAP_AD) - 1);
        memcpy(ad + sizeof(WRAP_AD) - 1, ref, VEIL_SUBJECT_REF_LEN);
        rc = veil_aead_open_ad(a, ad, sizeof(ad), sealed,
                               VEIL_SUBJECT_SEALED_LEN, tmp, sizeof(tmp), &n);
        if (!rc && n != VEIL_SUBJECT_KEY_LEN)
                rc = VEIL_EDATA;
        if (!rc)
                memcpy(key, tmp, VEIL_SUBJECT_KEY_LEN);
        veil_cleanse(tmp, sizeof(tmp));
        return rc;
}

int veil_subject_wrap(const struct veil_config *config, const char *kid,
                      const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                      const unsigned char key[VEIL_SUBJECT_KEY_LEN],
                      unsigned char *out, size_t cap, size_t *outlen,
                      char *errstr, size_t errstr_size)
{
        const struct veil_key *k =
                ring_key(config, kid, strlen(kid), errstr, errstr_size);
        struct veil_aead a;
        int rc;

        if (!k)
                return VEIL_ENOTFOUND;
        rc = veil_aead_init_derived(&a, VEIL_AEAD_GCM, k->key, k->len,
                                    WRAP_INFO, errstr, errstr_size);
        if (rc)
                return rc;
        rc = wrap_with(&a, kid, ref, key, out, cap, outlen);
        veil_aead_destroy(&a);
        if (rc)
                return veil_errf(errstr, errstr_size, rc,
                                 "wrapping a subject key failed");
        return 0;
}

int veil_subject_unwrap(const struct veil_config *config,
                        const unsigned char ref[VEIL_SUBJECT_REF_LEN],
                        const void *blob, size_t len,
                        unsigned char key[VEIL_SUBJECT_KEY_LEN], char *errstr,
                        size_t errstr_size)
{
        const struct veil_key *k;
        const char *kid;
        size_t kid_len;
        struct veil_aead a;
        int rc;

        if (blob_parse(blob, len, &kid, &kid_len))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "malformed subject-key record");
        k = ring_key(config, kid, kid_len, errstr, errstr_size);
        if (!k)
                return VEIL_ENOTFOUND;
        rc = veil_aead_init_derived(&a, VEIL_AEAD_GCM, k->key, k->len,
                                    WRAP_INFO, errstr, errstr_size);
        if (rc)
                return rc;
        rc = unwrap_with(&a, ref, (const unsigned char *)blob + 2 + kid_len,
                         key);
        veil_aead_destroy(&a);
        if (rc)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "the subject-key record does not open "
                                 "(tampered, moved, or another master key)");
        return 0;
}

bool veil_policy_per_subject(const struct veil_config *config)
{
        const struct veil_policy *policy = &config->policy;
        size_t i, j;

        for (i = 0; i < policy->n_purposes; i++)
                for (j = 0; j < policy->purposes[i].n_rules; j++) {
                        const struct veil_transform *tx =
                                &policy->purposes[i].rules[j].tx;

                        if (tx->kind == VEIL_TX_ENCRYPT &&
                            tx->encrypt.per_subject)
                                return true;
                }
        return false;
}

/* ---- the store
 * ---------------------------------------------------------------
 */

/* One ring key as the store uses it. */
struct ring_slot {
        const char *kid; /* borrowed from config */
        struct veil_hmac ref;
        struct veil_aead wrap; /* GCM under HKDF(master, WRAP_INFO) */
};

/* An index entry: the wrapped key of one subject and where its record
 * is on the key topic. 96 bytes. */
struct ientry {
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        unsigned char sealed[VEIL_SUBJECT_SEALED_LEN];
        uint8_t slot; /* ring slot of the wrapping key */
        uint8_t used;
        uint8_t dirty; /* made or re-wrapped in the open transaction */
        uint8_t hot;   /* used since the spilling hand last passed */
        uint32_t next; /* bucket chain / free list */
        int32_t part;  /* its key-topic record: -1 until read back */
        int64_t off;
};

/* A spilled subject: its ref and where its record is (the wrapped key is
 * fetched from there on its next use). 24 bytes. */
struct spill {
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        uint64_t pos; /* (part << 48 | off) + 1; 0: an empty slot */
};

/* An LRU entry: one subject. 28 bytes; its token keys (n_tk blocks of
 * VEIL_SUBJECT_TOKEN_KEYS_LEN) sit at the same index of sk->tk. */
struct centry {
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        uint32_t prev, next; /* LRU order, most recent at head */
        uint32_t hnext;      /* bucket chain */
};

/* One change made in the open transaction, for rollback. */
struct undo {
        struct ientry old; /* old.used == 0: there was no entry */
};

struct veil_subject_keys {
        const struct veil_config *config;
        struct ring_slot *slots;
        size_t n_slots;
        size_t active; /* slot of keys.active */
        /* index */
        struct ientry *ie;
        uint32_t *ib; /* buckets */
        size_t ie_n, ie_cap, ib_n, known;
        uint32_t ie_free;
        /* LRU */
        struct centry *ce;
        uint32_t *cb;
        size_t ce_n, ce_max, cb_n;
        uint32_t head, tail;
        /* token keys: ce_max + 1 rows of n_tk blocks (the last row holds
         * a subject's keys when the LRU keeps none), one block per
         * per_subject purpose, named by tk_names */
        unsigned char *tk;
        size_t n_tk;
        const char **tk_names; /* borrowed from config, or tk_own */
        char *tk_own;
        bool tk_unnamed; /* no per_subject purpose: one slot, named later */
        /* undo log of the open transaction */
        struct undo *undo;
        size_t n_undo, cap_undo;
        struct veil_subject_keys_stats st;
        /* created / destroyed / rewrapped at the last commit: a rollback
         * goes back to them (the keys it undid were never made) */
        uint64_t created_c, destroyed_c, rewrapped_c;
        /* the bound: at most index_max entries resident (0: no bound);
         * beyond it, entries whose record position is known are spilled
         * (ref and position only) and fetched back on use */
        size_t index_max;
        struct spill *sp; /* open addressing, linear probing */
        size_t sp_cap, sp_n;
        size_t hand; /* the spilling clock's position in ie */
        veil_subject_keys_fetch_fn fetch;
        void *fetch_arg;
};

static uint64_t ref_hash(const unsigned char *ref)
{
        uint64_t h;

        memcpy(&h, ref, sizeof(h)); /* an HMAC: already uniform */
        return h;
}

static struct ientry *index_find(struct veil_subject_keys *sk,
                                 const unsigned char *ref)
{
        uint32_t i = sk->ib[ref_hash(ref) % sk->ib_n];

        for (; i != NIL; i = sk->ie[i].next)
                if (!memcmp(sk->ie[i].ref, ref, VEIL_SUBJECT_REF_LEN))
                        return &sk->ie[i];
        return NULL;
}

static void index_rehash(struct veil_subject_keys *sk, size_t nb)
{
        size_t i;

        free(sk->ib);
        sk->ib   = veil_malloc(nb * sizeof(*sk->ib));
        sk->ib_n = nb;
        for (i = 0; i < nb; i++)
                sk->ib[i] = NIL;
        for (i = 0; i < sk->ie_n; i++) {
                uint64_t b;

                if (!sk->ie[i].used)
                        continue;
                b              = ref_hash(sk->ie[i].ref) % nb;
                sk->ie[i].next = sk->ib[b];
                sk->ib[b]      = (uint32_t)i;
        }
}

/* Inserts or replaces the entry of e->ref. */
static void index_put(struct veil_subject_keys *sk, const struct ientry *e)
{
        struct ientry *cur = index_find(sk, e->ref);
        uint32_t i;
        uint64_t b;

        if (cur) {
                uint32_t next = cur->next;

                *cur      = *e;
                cur->used = 1;
                cur->next = next;
                return;
        }
        if (sk->ie_free != NIL) {
                i           = sk->ie_free;
                sk->ie_free = sk->ie[i].next;
        } else {
                if (sk->ie_n == sk->ie_cap) {
                        sk->ie_cap = sk->ie_cap ? sk->ie_cap * 2 : 1024;
                        sk->ie     = veil_realloc(sk->ie,
                                                  sk->ie_cap * sizeof(*sk->ie));
                }
                i = (uint32_t)sk->ie_n++;
        }
        sk->ie[i]      = *e;
        sk->ie[i].used = 1;
        b              = ref_hash(e->ref) % sk->ib_n;
        sk->ie[i].next = sk->ib[b];
        sk->ib[b]      = i;
        sk->known++;
        if (sk->known > sk->ib_n)
                index_rehash(sk, sk->ib_n * 2);
}

static void index_del(struct veil_subject_keys *sk, const unsigned char *ref)
{
        uint32_t *pp = &sk->ib[ref_hash(ref) % sk->ib_n];

        for (; *pp != NIL; pp = &sk->ie[*pp].next) {
                uint32_t i = *pp;

                if (memcmp(sk->ie[i].ref, ref, VEIL_SUBJECT_REF_LEN))
                        continue;
                *pp = sk->ie[i].next;
                veil_cleanse(&sk->ie[i], sizeof(sk->ie[i]));
                sk->ie[i].next = sk->ie_free;
                sk->ie_free    = i;
                sk->known--;
                return;
        }
}

/* ---- spilled subjects ---- */

static size_t sp_find(const struct veil_subject_keys *sk,
                      const unsigned char *ref)
{
        size_t i;

        if (!sk->sp_n)
                return SIZE_MAX;
        for (i = ref_hash(ref) & (sk->sp_cap - 1); sk->sp[i].pos;
             i = (i + 1) & (sk->sp_cap - 1))
                if (!memcmp(sk->sp[i].ref, ref, VEIL_SUBJECT_REF_LEN))
                        return i;
        return SIZE_MAX;
}

static void sp_put(struct veil_subject_keys *sk, const unsigned char *ref,
                   int32_t part, int64_t off)
{
        uint64_t pos = ((uint64_t)part << 48 | (uint64_t)off) + 1;
        size_t i;

        if ((sk->sp_n + 1) * 4 > sk->sp_cap * 3) {
                struct spill *old = sk->sp;
                size_t cap        = sk->sp_cap, j;

                sk->sp_cap = cap ? cap * 2 : 1024;
                sk->sp     = veil_calloc(sk->sp_cap, sizeof(*sk->sp));
                for (j = 0; j < cap; j++) {
                        if (!old[j].pos)
                                continue;
                        for (i = ref_hash(old[j].ref) & (sk->sp_cap - 1);
                             sk->sp[i].pos; i = (i + 1) & (sk->sp_cap - 1))
                                ;
                        sk->sp[i] = old[j];
                }
                free(old);
        }
        for (i = ref_hash(ref) & (sk->sp_cap - 1); sk->sp[i].pos;
             i = (i + 1) & (sk->sp_cap - 1))
                if (!memcmp(sk->sp[i].ref, ref, VEIL_SUBJECT_REF_LEN))
                        break;
        if (!sk->sp[i].pos)
                sk->sp_n++;
        memcpy(sk->sp[i].ref, ref, VEIL_SUBJECT_REF_LEN);
        sk->sp[i].pos = pos;
}

/* Removes slot i, shifting back the entries of its probe run. */
static void sp_del(struct veil_subject_keys *sk, size_t i)
{
        size_t mask = sk->sp_cap - 1, j = i, h;

        for (;;) {
                j = (j + 1) & mask;
                if (!sk->sp[j].pos)
                        break;
                h = ref_hash(sk->sp[j].ref) & mask;
                /* j's entry may move to i when its home is not in (i, j] */
                if ((i <= j) ? (h <= i || h > j) : (h <= i && h > j)) {
                        sk->sp[i] = sk->sp[j];
                        i         = j;
                }
        }
        memset(&sk->sp[i], 0, sizeof(sk->sp[i]));
        sk->sp_n--;
}

/* Spills resident entries past the bound: a clock over the index, sparing
 * entries used since its last pass and those whose record position is not
 * known yet. Never inside a transaction: a rollback would put back
 * entries beside their spilled copies. */
static void spill_past_bound(struct veil_subject_keys *sk)
{
        size_t steps = 2 * sk->ie_n + 2;

        if (!sk->index_max || !sk->fetch || sk->n_undo)
                return;
        while (sk->known > sk->index_max && steps-- > 0 && sk->ie_n) {
                struct ientry *e;

                sk->hand = (sk->hand + 1) % sk->ie_n;
                e        = &sk->ie[sk->hand];
                if (!e->used || e->dirty || e->part < 0)
                        continue;
                if (e->hot) {
                        e->hot = 0;
                        continue;
                }
                sp_put(sk, e->ref, e->part, e->off);
                index_del(sk, e->ref);
        }
}

/* The resident entry of a spilled ref, fetched from the key topic; NULL
 * with *rc 0 when ref is not spilled, or an error in *rc (VEIL_ENET: the
 * fetch failed, try again; never "no key": that would make a second one). */
static struct ientry *unspill(struct veil_subject_keys *sk,
                              const unsigned char *ref, int *rc, char *errstr,
                              size_t errstr_size)
{
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        size_t i = sp_find(sk, ref), n, kid_len, k;
        const char *kid;
        struct ientry e;
        uint64_t pos;

        *rc = 0;
        if (i == SIZE_MAX)
                return NULL;
        pos = sk->sp[i].pos - 1;
        memset(&e, 0, sizeof(e));
        memcpy(e.ref, ref, VEIL_SUBJECT_REF_LEN);
        e.part = (int32_t)(pos >> 48);
        e.off  = (int64_t)(pos & ((1ull << 48) - 1));
        *rc = sk->fetch(sk->fetch_arg, e.part, e.off, ref, blob, sizeof(blob),
                        &n, errstr, errstr_size);
        if (*rc)
                return NULL;
        if (blob_parse(blob, n, &kid, &kid_len)) {
                *rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                                "a fetched subject-key record is malformed");
                return NULL;
        }
        for (k = 0; k < sk->n_slots; k++)
                if (strlen(sk->slots[k].kid) == kid_len &&
                    !memcmp(sk->slots[k].kid, kid, kid_len))
                        break;
        if (k == sk->n_slots) {
                *rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                                "a fetched subject key names a key id "
                                "not in the ring");
                return NULL;
        }
        memcpy(e.sealed, blob + 2 + kid_len, VEIL_SUBJECT_SEALED_LEN);
        e.slot = (uint8_t)k;
        e.hot  = 1;
        veil_cleanse(blob, sizeof(blob));
        sp_del(sk, i);
        sk->st.fetched++;
        index_put(sk, &e);
        return index_find(sk, ref);
}

void veil_subject_keys_bound(struct veil_subject_keys *sk, size_t index_max,
                             veil_subject_keys_fetch_fn fetch, void *arg)
{
        sk->index_max = index_max;
        sk->fetch     = fetch;
        sk->fetch_arg = arg;
}

static void lru_unlink(struct veil_subject_keys *sk, uint32_t i)
{
        struct centry *c = &sk->ce[i];

        if (c->prev != NIL)
                sk->ce[c->prev].next = c->next;
        else
                sk->head = c->next;
        if (c->next != NIL)
                sk->ce[c->next].prev = c->prev;
        else
                sk->tail = c->prev;
}

static void lru_front(struct veil_subject_keys *sk, uint32_t i)
{
        sk->ce[i].prev = NIL;
        sk->ce[i].next = sk->head;
        if (sk->head != NIL)
                sk->ce[sk->head].prev = i;
        sk->head = i;
        if (sk->tail == NIL)
                sk->tail = i;
}

static uint32_t *lru_slot(struct veil_subject_keys *sk,
                          const unsigned char *ref)
{
        uint32_t *pp = &sk->cb[ref_hash(ref) % sk->cb_n];

        for (; *pp != NIL; pp = &sk->ce[*pp].hnext)
                if (!memcmp(sk->ce[*pp].ref, ref, VEIL_SUBJECT_REF_LEN))
                        return pp;
        return pp;
}

static size_t tk_row(const struct veil_subject_keys *sk)
{
        return sk->n_tk * VEIL_SUBJECT_TOKEN_KEYS_LEN;
}

static unsigned char *tk_of(struct veil_subject_keys *sk, uint32_t i)
{
        return sk->tk + (size_t)i * tk_row(sk);
}

/* The entry of ref (made most recent), or NIL. */
static uint32_t lru_get(struct veil_subject_keys *sk, const unsigned char *ref)
{
        uint32_t i = *lru_slot(sk, ref);

        if (i == NIL)
                return NIL;
        lru_unlink(sk, i);
        lru_front(sk, i);
        return i;
}

static void lru_del(struct veil_subject_keys *sk, const unsigned char *ref)
{
        uint32_t *pp = lru_slot(sk, ref), i = *pp;

        if (i == NIL)
                return;
        *pp = sk->ce[i].hnext;
        lru_unlink(sk, i);
        veil_cleanse(&sk->ce[i], sizeof(sk->ce[i]));
        veil_cleanse(tk_of(sk, i), tk_row(sk));
        /* Keep the array dense: move the last entry into the hole. */
        if (i != sk->ce_n - 1) {
                uint32_t last = (uint32_t)sk->ce_n - 1, *lp;

                lp  = lru_slot(sk, sk->ce[last].ref);
                *lp = i;
                if (sk->ce[last].prev != NIL)
                        sk->ce[sk->ce[last].prev].next = i;
                else
                        sk->head = i;
                if (sk->ce[last].next != NIL)
                        sk->ce[sk->ce[last].next].prev = i;
                else
                        sk->tail = i;
                sk->ce[i] = sk->ce[last];
                veil_cleanse(&sk->ce[last], sizeof(sk->ce[last]));
                memcpy(tk_of(sk, i), tk_of(sk, last), tk_row(sk));
                veil_cleanse(tk_of(sk, last), tk_row(sk));
        }
        sk->ce_n--;
}

/* Derives ref's token keys from the data key into an entry (made most
 * recent; the tail is evicted when full) and returns its index; with no
 * LRU, into the spare row. */
static uint32_t lru_put(struct veil_subject_keys *sk, const unsigned char *ref,
                        const unsigned char *key)
{
        uint32_t *pp, i;
        size_t t;

        if (sk->ce_max == 0) {
                i = 0;
        } else {
                if (sk->ce_n == sk->ce_max && *lru_slot(sk, ref) == NIL)
                        lru_del(sk, sk->ce[sk->tail].ref);
                pp = lru_slot(sk, ref);
                if (*pp != NIL) {
                        i = *pp;
                } else {
                        i = (uint32_t)sk->ce_n++;
                        memcpy(sk->ce[i].ref, ref, VEIL_SUBJECT_REF_LEN);
                        sk->ce[i].hnext = NIL;
                        *pp             = i;
                        lru_front(sk, i);
                }
        }
        for (t = 0; t < sk->n_tk; t++)
                veil_subject_token_keys(
                        key, sk->tk_names[t],
                        tk_of(sk, i) + t * VEIL_SUBJECT_TOKEN_KEYS_LEN);
        return i;
}

size_t veil_subject_keys_cache_entry_bytes(const struct veil_subject_keys *sk)
{
        return sizeof(struct centry) + sizeof(uint32_t) + tk_row(sk);
}

int veil_subject_keys_slot(struct veil_subject_keys *sk, const char *purpose)
{
        size_t t;

        for (t = 0; t < sk->n_tk; t++)
                if (sk->tk_names[t] && !strcmp(sk->tk_names[t], purpose))
                        return (int)t;
        /* No per_subject purpose in the config (tools, tests): the one
         * slot takes the first purpose asked, before any subject. */
        if (sk->tk_unnamed && !sk->tk_names[0] && sk->ce_n == 0) {
                sk->tk_own      = veil_strdup(purpose);
                sk->tk_names[0] = sk->tk_own;
                return 0;
        }
        return -1;
}

/* One token-key slot per purpose that uses per_subject, in policy order. */
static void tk_slots_init(struct veil_subject_keys *sk)
{
        const struct veil_policy *policy = &sk->config->policy;
        size_t i, j;

        sk->tk_names =
                veil_calloc(policy->n_purposes + 1, sizeof(*sk->tk_names));
        for (i = 0; i < policy->n_purposes; i++)
                for (j = 0; j < policy->purposes[i].n_rules; j++) {
                        const struct veil_transform *tx =
                                &policy->purposes[i].rules[j].tx;

                        if (tx->kind == VEIL_TX_ENCRYPT &&
                            tx->encrypt.per_subject) {
                                sk->tk_names[sk->n_tk++] =
                                        policy->purposes[i].name;
                                break;
                        }
                }
        if (sk->n_tk == 0) {
                sk->n_tk       = 1;
                sk->tk_unnamed = true;
        }
}

struct veil_subject_keys *
veil_subject_keys_new(const struct veil_config *config, size_t cache_max,
                      char *errstr, size_t errstr_size)
{
        struct veil_subject_keys *sk = veil_calloc(1, sizeof(*sk));
        size_t i;
        int rc;

        sk->config  = config;
        sk->n_slots = config->keys.n_ring;
        if (sk->n_slots == 0 || sk->n_slots > 255) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "subject keys need a keyring of 1 to 255 keys");
                goto err;
        }
        sk->slots = veil_calloc(sk->n_slots, sizeof(*sk->slots));
        for (i = 0; i < sk->n_slots; i++) {
                const struct veil_key *k = &config->keys.ring[i];

                sk->slots[i].kid = k->id;
                if (!strcmp(k->id, config->keys.key_id))
                        sk->active = i;
                if (!k->key)
                        continue; /* not loaded: its subjects do not open */
                rc = veil_hmac_init_derived(&sk->slots[i].ref, k->key, k->len,
                                            REF_INFO, errstr, errstr_size);
                if (!rc)
                        rc = veil_aead_init_derived(
                                &sk->slots[i].wrap, VEIL_AEAD_GCM, k->key,
                                k->len, WRAP_INFO, errstr, errstr_size);
                if (rc)
                        goto err;
        }
        if (!config->keys.ring[sk->active].key) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "subject keys: the active key is not loaded");
                goto err;
        }
        tk_slots_init(sk);
        sk->ie_free = NIL;
        index_rehash(sk, 1024);
        sk->ce_max = cache_max;
        sk->tk     = veil_calloc(cache_max + 1, tk_row(sk));
        sk->ce     = veil_calloc(cache_max + 1, sizeof(*sk->ce));
        sk->cb_n   = cache_max ? cache_max : 1;
        sk->cb     = veil_malloc(sk->cb_n * sizeof(*sk->cb));
        for (i = 0; i < sk->cb_n; i++)
                sk->cb[i] = NIL;
        sk->head = sk->tail = NIL;
        return sk;
err:
        veil_subject_keys_destroy(sk);
        return NULL;
}

void veil_subject_keys_destroy(struct veil_subject_keys *sk)
{
        size_t i;

        if (!sk)
                return;
        for (i = 0; sk->slots && i < sk->n_slots; i++) {
                veil_hmac_cleanse(&sk->slots[i].ref);
                veil_aead_destroy(&sk->slots[i].wrap);
        }
        free(sk->slots);
        if (sk->ie)
                veil_cleanse(sk->ie, sk->ie_cap * sizeof(*sk->ie));
        free(sk->ie);
        free(sk->ib);
        if (sk->ce)
                veil_cleanse(sk->ce, (sk->ce_max + 1) * sizeof(*sk->ce));
        free(sk->ce);
        free(sk->cb);
        if (sk->tk)
                veil_cleanse(sk->tk, (sk->ce_max + 1) * tk_row(sk));
        free(sk->tk);
        free(sk->tk_names);
        free(sk->tk_own);
        free(sk->sp);
        if (sk->undo)
                veil_cleanse(sk->undo, sk->cap_undo * sizeof(*sk->undo));
        free(sk->undo);
        free(sk);
}

static void undo_log(struct veil_subject_keys *sk, const unsigned char *ref)
{
        struct ientry *cur = index_find(sk, ref);
        struct undo *u;

        if (sk->n_undo == sk->cap_undo) {
                sk->cap_undo = sk->cap_undo ? sk->cap_undo * 2 : 16;
                sk->undo     = veil_realloc(sk->undo,
                                            sk->cap_undo * sizeof(*sk->undo));
        }
        u = &sk->undo[sk->n_undo++];
        memset(u, 0, sizeof(*u));
        if (cur)
                u->old = *cur;
        else
                memcpy(u->old.ref, ref, VEIL_SUBJECT_REF_LEN);
}

/* Wraps `key` at `ref` under the active key into the index (dirty). */
static int store_new(struct veil_subject_keys *sk, const unsigned char *ref,
                     const unsigned char *key, char *errstr, size_t errstr_size)
{
        struct ring_slot *slot = &sk->slots[sk->active];
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        struct ientry e;
        size_t n;

        if (wrap_with(&slot->wrap, slot->kid, ref, key, blob, sizeof(blob), &n))
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "wrapping a subject key failed");
        undo_log(sk, ref);
        memset(&e, 0, sizeof(e));
        memcpy(e.ref, ref, VEIL_SUBJECT_REF_LEN);
        memcpy(e.sealed, blob + n - VEIL_SUBJECT_SEALED_LEN,
               VEIL_SUBJECT_SEALED_LEN);
        e.slot  = (uint8_t)sk->active;
        e.dirty = 1;
        e.hot   = 1;
        e.part  = -1;
        index_put(sk, &e);
        veil_cleanse(blob, sizeof(blob));
        return 0;
}

/* The ring slot tried n-th: the active key first, then the others in
 * ring order. */
static size_t slot_nth(const struct veil_subject_keys *sk, size_t n)
{
        if (n == 0)
                return sk->active;
        return n - 1 < sk->active ? n - 1 : n;
}

int veil_subject_keys_get(struct veil_subject_keys *sk, const char *source,
                          const void *subject, size_t len,
                          const unsigned char **tks,
                          unsigned char ref[VEIL_SUBJECT_REF_LEN],
                          const char **kid, char *errstr, size_t errstr_size)
{
        unsigned char r[VEIL_SUBJECT_REF_LEN], key[VEIL_SUBJECT_KEY_LEN];
        size_t n, s = sk->active;
        uint32_t i;
        int rc;

        if (!sk->tk_names[0])
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "subject keys: no purpose uses per_subject");
        /* The active key's ref first: after a rotation, subjects met before
         * it are found under the ref of the key that was active then. */
        for (n = 0; n < sk->n_slots; n++) {
                struct ientry *e;

                s = slot_nth(sk, n);
                if (!sk->config->keys.ring[s].key)
                        continue;
                ref_of(&sk->slots[s].ref, source, subject, len, r);
                if ((i = lru_get(sk, r)) != NIL) {
                        sk->st.hits++;
                        goto found;
                }
                e = index_find(sk, r);
                if (!e) {
                        e = unspill(sk, r, &rc, errstr, errstr_size);
                        if (rc)
                                return rc;
                }
                if (!e)
                        continue;
                e->hot = 1;
                sk->st.misses++;
                if (!sk->config->keys.ring[e->slot].key ||
                    unwrap_with(&sk->slots[e->slot].wrap, r, e->sealed, key))
                        return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                         "a subject key does not unwrap "
                                         "(its master key id %s)",
                                         sk->slots[e->slot].kid);
                if (e->slot != sk->active) {
                        /* Lazy re-wrap under the active key. */
                        rc = store_new(sk, r, key, errstr, errstr_size);
                        if (rc) {
                                veil_cleanse(key, sizeof(key));
                                return rc;
                        }
                        sk->st.rewrapped++;
                }
                i = lru_put(sk, r, key);
                goto found;
        }
        /* A new subject (or a new lifecycle after an erasure). */
        sk->st.misses++;
        s = sk->active;
        ref_of(&sk->slots[s].ref, source, subject, len, r);
        if (RAND_bytes(key, VEIL_SUBJECT_KEY_LEN) != 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "RAND_bytes failed for a subject key");
        rc = store_new(sk, r, key, errstr, errstr_size);
        if (rc) {
                veil_cleanse(key, sizeof(key));
                return rc;
        }
        sk->st.created++;
        i = lru_put(sk, r, key);
found:
        veil_cleanse(key, sizeof(key));
        *tks = tk_of(sk, i);
        memcpy(ref, r, VEIL_SUBJECT_REF_LEN);
        *kid = sk->slots[s].kid;
        return 0;
}

void veil_subject_keys_apply_at(struct veil_subject_keys *sk, int32_t part,
                                int64_t off, const void *key, size_t key_len,
                                const void *value, size_t value_len)
{
        const unsigned char *ref = key, *sealed;
        struct ientry *cur;
        const char *kid;
        size_t kid_len, i, sp;
        struct ientry e;

        if (!key || key_len != VEIL_SUBJECT_REF_LEN) {
                sk->st.bad_records++;
                return;
        }
        if (part < 0 || part > 0xffff || off < 0 || off >= (1ll << 48))
                part = -1; /* a position the spill cannot hold: resident */
        if ((sp = sp_find(sk, ref)) != SIZE_MAX)
                sp_del(sk, sp); /* the record read now supersedes it */
        if (!value) {
                lru_del(sk, ref);
                index_del(sk, ref);
                return;
        }
        if (blob_parse(value, value_len, &kid, &kid_len)) {
                lru_del(sk, ref);
                sk->st.bad_records++;
                return;
        }
        for (i = 0; i < sk->n_slots; i++)
                if (strlen(sk->slots[i].kid) == kid_len &&
                    !memcmp(sk->slots[i].kid, kid, kid_len))
                        break;
        if (i == sk->n_slots) {
                lru_del(sk, ref);
                sk->st.bad_records++; /* a key id no longer in the ring */
                return;
        }
        sealed = (const unsigned char *)value + 2 + kid_len;
        /* What the index holds already (this worker's own write read
         * back): the cached token keys stay; the record's position is
         * learnt. */
        cur = index_find(sk, ref);
        if (cur && cur->slot == i &&
            !memcmp(cur->sealed, sealed, VEIL_SUBJECT_SEALED_LEN)) {
                if (!cur->dirty) {
                        cur->part = part;
                        cur->off  = off;
                }
                return;
        }
        lru_del(sk, ref);
        memset(&e, 0, sizeof(e));
        memcpy(e.ref, ref, VEIL_SUBJECT_REF_LEN);
        memcpy(e.sealed, sealed, VEIL_SUBJECT_SEALED_LEN);
        e.slot = (uint8_t)i;
        e.part = part;
        e.off  = off;
        index_put(sk, &e);
        /* Reading the whole topic (a start) stays within the bound too. */
        if (sk->known > sk->index_max)
                spill_past_bound(sk);
}

void veil_subject_keys_apply(struct veil_subject_keys *sk, const void *key,
                             size_t key_len, const void *value,
                             size_t value_len)
{
        veil_subject_keys_apply_at(sk, -1, -1, key, key_len, value, value_len);
}

size_t veil_subject_keys_ring_size(const struct veil_subject_keys *sk)
{
        return sk->n_slots;
}

int veil_subject_keys_erase(struct veil_subject_keys *sk, const char *source,
                            const void *subject, size_t len,
                            unsigned char (*refs)[VEIL_SUBJECT_REF_LEN],
                            size_t cap, size_t *n, char *errstr,
                            size_t errstr_size)
{
        size_t i;
        int rc = 0;

        *n = 0;
        for (i = 0; i < sk->n_slots; i++) {
                if (!sk->config->keys.ring[i].key)
                        continue;
                if (*n == cap)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "erase: too many refs");
                ref_of(&sk->slots[i].ref, source, subject, len, refs[*n]);
                lru_del(sk, refs[*n]);
                /* A spilled subject comes back first: the undo log needs
                 * its entry. */
                if (!index_find(sk, refs[*n]) &&
                    (unspill(sk, refs[*n], &rc, errstr, errstr_size), rc))
                        return rc;
                if (index_find(sk, refs[*n])) {
                        undo_log(sk, refs[*n]);
                        index_del(sk, refs[*n]);
                        sk->st.destroyed++;
                }
                (*n)++;
        }
        return 0;
}

int veil_subject_keys_pending(struct veil_subject_keys *sk,
                              veil_subject_keys_write_fn fn, void *arg)
{
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        size_t i;
        int rc = 0;

        for (i = 0; i < sk->n_undo && !rc; i++) {
                struct ientry *e = index_find(sk, sk->undo[i].old.ref);
                const char *kid;
                size_t kl;

                if (!e || !e->dirty)
                        continue;
                e->dirty = 0; /* written once even when logged twice */
                kid      = sk->slots[e->slot].kid;
                kl       = strlen(kid);
                blob[0]  = VEIL_SUBJECT_WRAP_VERSION;
                blob[1]  = (unsigned char)kl;
                memcpy(blob + 2, kid, kl);
                memcpy(blob + 2 + kl, e->sealed, VEIL_SUBJECT_SEALED_LEN);
                rc = fn(arg, e->ref, blob, 2 + kl + VEIL_SUBJECT_SEALED_LEN);
        }
        return rc;
}

void veil_subject_keys_commit(struct veil_subject_keys *sk)
{
        size_t i;

        for (i = 0; i < sk->n_undo; i++) {
                struct ientry *e = index_find(sk, sk->undo[i].old.ref);

                if (e)
                        e->dirty = 0;
        }
        veil_cleanse(sk->undo, sk->n_undo * sizeof(*sk->undo));
        sk->n_undo      = 0;
        sk->created_c   = sk->st.created;
        sk->destroyed_c = sk->st.destroyed;
        sk->rewrapped_c = sk->st.rewrapped;
        spill_past_bound(sk);
}

void veil_subject_keys_rollback(struct veil_subject_keys *sk)
{
        size_t i = sk->n_undo;

        while (i-- > 0) {
                struct ientry *old = &sk->undo[i].old;

                lru_del(sk, old->ref);
                if (old->used) {
                        old->dirty = 0;
                        index_put(sk, old);
                } else {
                        index_del(sk, old->ref);
                }
        }
        veil_cleanse(sk->undo, sk->n_undo * sizeof(*sk->undo));
        sk->n_undo       = 0;
        sk->st.created   = sk->created_c;
        sk->st.destroyed = sk->destroyed_c;
        sk->st.rewrapped = sk->rewrapped_c;
}

void veil_subject_keys_stats(const struct veil_subject_keys *sk,
                             struct veil_subject_keys_stats *st)
{
        *st             = sk->st;
        st->known       = sk->known + sk->sp_n;
        st->spilled     = sk->sp_n;
        st->cached      = sk->ce_n;
        st->cache_bytes = (sk->ce_max + 1) * (sizeof(*sk->ce) + tk_row(sk)) +
                          sk->cb_n * sizeof(*sk->cb);
        st->index_bytes = sk->ie_cap * sizeof(*sk->ie) +
                          sk->ib_n * sizeof(*sk->ib) +
                          sk->sp_cap * sizeof(*sk->sp);
}
