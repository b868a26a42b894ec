/* transform.c - hash, mask, generalize and encrypt one value into a caller's
 * buffer; reveal encrypt tokens. Hot path: no allocation, no logging. */
#include "transform.h"
#include "veil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define TX_HASH_KEY_LEN 32
#define TX_ENCRYPT_KEY_LEN (VEIL_AEAD_SIV_KEY_LEN + VEIL_AEAD_GCM_KEY_LEN)
#define TX_MASTER_MIN 32

static int tx_key_id_char(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Length of the run of key id characters at the start of s, or 0 when it
 * is longer than VEIL_TX_KEY_ID_MAX. The caller checks what follows. */
static size_t tx_key_id_span(const char *s, size_t len)
{
        size_t i;

        for (i = 0; i < len && tx_key_id_char((unsigned char)s[i]); i++)
                if (i == VEIL_TX_KEY_ID_MAX)
                        return 0;
        return i;
}

/* HKDF info: "veil:<what>:<purpose>", or "veil:<what>" when shared. */
static int tx_derive(const unsigned char *master, size_t master_len,
                     const char *what, const char *purpose, bool shared,
                     unsigned char *out, size_t out_len, char *errstr,
                     size_t errstr_size)
{
        char info[512];
        int n;

        if (shared)
                n = snprintf(info, sizeof(info), "veil:%s", what);
        else
                n = snprintf(info, sizeof(info), "veil:%s:%s", what, purpose);
        if (n < 0 || (size_t)n >= sizeof(info))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "keys: purpose name too long");
        return veil_hkdf_sha256(master, master_len, NULL, 0, info, (size_t)n,
                                out, out_len, errstr, errstr_size);
}

int veil_tx_keys_init(struct veil_tx_keys *keys, const unsigned char *master,
                      size_t master_len, const char *key_id,
                      const char *purpose, bool shared, char *errstr,
                      size_t errstr_size)
{
        unsigned char hk[TX_HASH_KEY_LEN], ek[TX_ENCRYPT_KEY_LEN];
        size_t idlen = key_id ? strlen(key_id) : 0;
        int rc;

        memset(keys, 0, sizeof(*keys));
        if (!idlen || tx_key_id_span(key_id, idlen) != idlen)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "keys.key_id: must be 1 to %d characters "
                                 "of A-Z a-z 0-9 . _ -",
                                 VEIL_TX_KEY_ID_MAX);
        if (!master || master_len < TX_MASTER_MIN)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "keys: the master key must be at least %d "
                                 "bytes",
                                 TX_MASTER_MIN);
        if (!shared && (!purpose || !*purpose))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "keys: a purpose name is needed unless keys "
                                 "are shared across purposes");
        memcpy(keys->key_id, key_id, idlen + 1);
        keys->key_id_len = idlen;

        rc = tx_derive(master, master_len, "hash", purpose, shared, hk,
                       sizeof(hk), errstr, errstr_size);
        if (rc)
                goto err;
        rc = tx_derive(master, master_len, "encrypt", purpose, shared, ek,
                       sizeof(ek), errstr, errstr_size);
        if (rc)
                goto err;
        veil_hmac_init(&keys->hash, hk, sizeof(hk));
        rc = veil_aead_init(&keys->siv, VEIL_AEAD_SIV, ek,
                            VEIL_AEAD_SIV_KEY_LEN, errstr, errstr_size);
        if (rc)
                goto err;
        rc = veil_aead_init(&keys->gcm, VEIL_AEAD_GCM,
                            ek + VEIL_AEAD_SIV_KEY_LEN, VEIL_AEAD_GCM_KEY_LEN,
                            errstr, errstr_size);
        if (rc)
                goto err;
        rc = veil_gcm_epochs_init(&keys->gcm_ep, ek + VEIL_AEAD_SIV_KEY_LEN,
                                  errstr, errstr_size);
        if (rc)
                goto err;
        veil_cleanse(hk, sizeof(hk));
        veil_cleanse(ek, sizeof(ek));
        return 0;
err:
        veil_cleanse(hk, sizeof(hk));
        veil_cleanse(ek, sizeof(ek));
        veil_tx_keys_destroy(keys);
        return rc;
}

void veil_tx_keys_destroy(struct veil_tx_keys *keys)
{
        if (!keys)
                return;
        veil_gcm_epochs_destroy(&keys->gcm_ep);
        veil_aead_destroy(&keys->gcm);
        veil_aead_destroy(&keys->siv);
        veil_hmac_cleanse(&keys->hash);
        memset(keys->key_id, 0, sizeof(keys->key_id));
        keys->key_id_len = 0;
}

int veil_tx_check(const struct veil_transform *tx, char *errstr,
                  size_t errstr_size)
{
        switch (tx->kind) {
        case VEIL_TX_MASK:
                if (tx->mask.keep_first < 0 || tx->mask.keep_last < 0)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "mask: keep_first and keep_last "
                                         "must be >= 0");
                if (tx->mask.mask_char < 0x20 || tx->mask.mask_char > 0x7e)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "mask: the mask character must be "
                                         "one printable ASCII character");
                return 0;
        case VEIL_TX_GENERALIZE:
                if (tx->generalize.width <= 0)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "generalize: width must be > 0");
                if (tx->generalize.prefix < 0)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "generalize: prefix must be >= 0");
                return 0;
        case VEIL_TX_ENCRYPT:
                if (tx->encrypt.mode != VEIL_ENCRYPT_SIV &&
                    tx->encrypt.mode != VEIL_ENCRYPT_GCM)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "encrypt: unknown mode");
                if (tx->encrypt.output != VEIL_ENCRYPT_OUT_STRING &&
                    tx->encrypt.output != VEIL_ENCRYPT_OUT_BYTES)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "encrypt: unknown output");
                return 0;
        default:
                return 0;
        }
}

/* ---- hash --------------------------------------------------------------- */

size_t veil_tx_hash_len(const struct veil_tx_keys *keys)
{
        return keys->key_id_len + 1 + VEIL_TX_HASH_B64_LEN;
}

int veil_tx_hash(const struct veil_tx_keys *keys, const void *in, size_t len,
                 char *out, size_t cap, size_t *outlen)
{
        unsigned char mac[VEIL_SHA256_LEN];
        size_t n;

        if (cap < veil_tx_hash_len(keys))
                return VEIL_EINVAL;
        veil_hmac_sha256(&keys->hash, in, len, mac);
        memcpy(out, keys->key_id, keys->key_id_len);
        out[keys->key_id_len] = ':';
        /* Cannot fail: the cap was checked for the fixed length above. */
        veil_b64url_encode(mac, sizeof(mac), out + keys->key_id_len + 1,
                           VEIL_TX_HASH_B64_LEN, &n);
        *outlen = keys->key_id_len + 1 + n;
        return 0;
}

/* ---- UTF-8 ----------------------------------------------------------------
 */

/* Bytes in the character starting at s[0] (len ≥ 1): the length of a
 * well-formed-looking sequence (lead byte plus the continuation bytes it
 * announces), else 1. Only boundaries matter here, not validity. */
static inline size_t utf8_char_len(const unsigned char *s, size_t len)
{
        size_t n, i;

        if (s[0] < 0xc0)
                return 1;
        if (s[0] < 0xe0)
                n = 2;
        else if (s[0] < 0xf0)
                n = 3;
        else if (s[0] < 0xf8)
                n = 4;
        else
                return 1;
        if (n > len)
                return 1;
        for (i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 1;
        return n;
}

static size_t utf8_count(const unsigned char *s, size_t len)
{
        size_t i = 0, n = 0;

        while (i < len) {
                i += s[i] < 0x80 ? 1 : utf8_char_len(s + i, len - i);
                n++;
        }
        return n;
}

/* ---- mask --------------------------------------------------------------- */

static inline int is_digit(unsigned char c)
{
        return c >= '0' && c <= '9';
}

static void mask_digits(const unsigned char *s, size_t len, size_t first,
                        size_t last, char mc, char *out)
{
        size_t i, d = 0, nd = 0;

        for (i = 0; i < len; i++)
                nd += is_digit(s[i]);
        for (i = 0; i < len; i++) {
                if (!is_digit(s[i])) {
                        out[i] = (char)s[i];
                        continue;
                }
                out[i] = d < first || d + last >= nd ? (char)s[i] : mc;
                d++;
        }
}

int veil_tx_mask(const struct veil_transform *tx, const char *in, size_t len,
                 char *out, size_t cap, size_t *outlen)
{
        const unsigned char *s = (const unsigned char *)in;
        size_t first, last, nc, c, i, o, n;
        char mc = tx->mask.mask_char;

        if (tx->mask.keep_first < 0 || tx->mask.keep_last < 0 || mc < 0x20 ||
            mc > 0x7e || cap < len)
                return VEIL_EINVAL;
        first = (size_t)tx->mask.keep_first;
        last  = (size_t)tx->mask.keep_last;
        if (tx->mask.digits_only) {
                mask_digits(s, len, first, last, mc, out);
                *outlen = len;
                return 0;
        }
        nc = utf8_count(s, len);
        if (first >= nc || last >= nc - first) {
                if (len)
                        memcpy(out, in, len);
                *outlen = len;
                return 0;
        }
        if (nc == len) { /* no continuation byte: one byte a character */
                memcpy(out, in, first);
                memset(out + first, mc, len - first - last);
                memcpy(out + len - last, in + len - last, last);
                *outlen = len;
                return 0;
        }
        for (i = 0, o = 0, c = 0; i < len; c++) {
                n = s[i] < 0x80 ? 1 : utf8_char_len(s + i, len - i);
                if (c < first || c + last >= nc) {
                        memcpy(out + o, s + i, n);
                        o += n;
                } else {
                        out[o++] = mc;
                }
                i += n;
        }
        *outlen = o;
        return 0;
}

/* ---- generalize ---------------------------------------------------------- */

int veil_tx_bucket_long(int64_t v, int64_t width, int64_t *out)
{
        int64_t q;

        if (width <= 0)
                return VEIL_EINVAL;
        q = v / width;
        if (v % width < 0) /* C truncates toward zero; we floor */
                q--;
        /* q * width ≥ INT64_MIN ⟺ q ≥ INT64_MIN / width (which truncates
         * toward zero, i.e. rounds up for a negative quotient). */
        if (q < INT64_MIN / width)
                return VEIL_EDATA;
        *out = q * width;
        return 0;
}

int veil_tx_bucket_int(int32_t v, int64_t width, int32_t *out)
{
        int64_t r;
        int rc = veil_tx_bucket_long(v, width, &r);

        if (rc)
                return rc;
        if (r < INT32_MIN)
                return VEIL_EDATA;
        *out = (int32_t)r;
        return 0;
}

int veil_tx_bucket_double(double v, int64_t width, double *out)
{
        double w = (double)width, r;

        if (width <= 0)
                return VEIL_EINVAL;
        if (!isfinite(v)) {
                *out = v;
                return 0;
        }
        r = floor(v / w) * w;
        /* The division rounds: never let the floor land above the value. */
        if (r > v)
                r -= w;
        if (!isfinite(r))
                return VEIL_EDATA;
        *out = r;
        return 0;
}

int veil_tx_bucket_float(float v, int64_t width, float *out)
{
        double r;
        int rc = veil_tx_bucket_double(v, width, &r);

        if (rc)
                return rc;
        /* Widths that are not floats exactly can round the bucket up past
         * the value; step down one bucket then. */
        if ((float)r > v && isfinite(v))
                r -= (double)width;
        if (isfinite(v) && !isfinite((float)r))
                return VEIL_EDATA;
        *out = (float)r;
        return 0;
}

/* Days since 1970-01-01 → proleptic Gregorian year, by counting 400-year
 * eras (146097 days each) from 0000-03-01, so leap days fall at the end of
 * each shifted year. Exact for any |days| < 2^62 / 5. */
static int64_t year_from_days64(int64_t days)
{
        int64_t z   = days + 719468; /* days since 0000-03-01 */
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097; /* [0, 146096] */
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365] */
        int64_t mp  = (5 * doy + 2) / 153; /* 0 = March … 11 = February */

        return yoe + era * 400 + (mp >= 10); /* Jan, Feb: next year */
}

int32_t veil_tx_year_from_days(int32_t days)
{
        return (int32_t)year_from_days64(days);
}

int32_t veil_tx_year_from_timestamp(int64_t v, int64_t units_per_day)
{
        int64_t d;

        if (units_per_day < VEIL_TX_MILLIS_PER_DAY)
                units_per_day = VEIL_TX_MILLIS_PER_DAY;
        d = v / units_per_day;
        if (v % units_per_day < 0)
                d--;
        return (int32_t)year_from_days64(d);
}

size_t veil_tx_prefix_len(const char *in, size_t len, int prefix)
{
        const unsigned char *s = (const unsigned char *)in;
        size_t i               = 0;
        int c;

        for (c = 0; c < prefix && i < len; c++)
                i += s[i] < 0x80 ? 1 : utf8_char_len(s + i, len - i);
        return i;
}

int veil_tx_prefix(const char *in, size_t len, int prefix, char *out,
                   size_t cap, size_t *outlen)
{
        size_t n;

        if (prefix < 0)
                return VEIL_EINVAL;
        n = veil_tx_prefix_len(in, len, prefix);
        if (cap < n)
                return VEIL_EINVAL;
        if (n)
                memcpy(out, in, n);
        *outlen = n;
        return 0;
}

/* ---- encrypt / reveal -----------------------------------------------------
 */

static size_t tx_sealed_len(enum veil_encrypt_mode mode, size_t len)
{
        return len + (mode == VEIL_ENCRYPT_SIV ? VEIL_AEAD_TAG_LEN
                                               : VEIL_GCM_EPOCH_OVERHEAD);
}

/* Seals with the mode's key: SIV, or GCM under this epoch's key. */
static int tx_seal(struct veil_tx_keys *keys, enum veil_encrypt_mode mode,
                   const void *in, size_t len, unsigned char *out, size_t cap,
                   size_t *outlen)
{
        if (mode == VEIL_ENCRYPT_SIV)
                return veil_aead_seal(&keys->siv, in, len, out, cap, outlen);
        return veil_gcm_epochs_seal(&keys->gcm_ep, NULL, 0, in, len, out, cap,
                                    outlen);
}

size_t veil_tx_encrypt_len(const struct veil_tx_keys *keys,
                           enum veil_encrypt_mode mode,
                           enum veil_encrypt_output output, size_t len)
{
        size_t sealed = tx_sealed_len(mode, len);

        if (output == VEIL_ENCRYPT_OUT_BYTES)
                return 2 + keys->key_id_len + sealed;
        return keys->key_id_len + 3 + VEIL_B64URL_LEN(sealed);
}

int veil_tx_encrypt(struct veil_tx_keys *keys, enum veil_encrypt_mode mode,
                    enum veil_encrypt_output output, const void *in, size_t len,
                    void *out, size_t cap, size_t *outlen)
{
        unsigned char *o = out;
        size_t total, sealed, head, n;
        int rc;

        if (len > VEIL_AEAD_MAX_LEN ||
            (mode != VEIL_ENCRYPT_SIV && mode != VEIL_ENCRYPT_GCM))
                return VEIL_EINVAL;
        total = veil_tx_encrypt_len(keys, mode, output, len);
        if (cap < total)
                return VEIL_EINVAL;
        sealed = tx_sealed_len(mode, len);

        if (output == VEIL_ENCRYPT_OUT_BYTES) {
                o[0] = mode == VEIL_ENCRYPT_SIV ? VEIL_TX_ENC_BYTES_SIV
                                                : VEIL_TX_ENC_BYTES_GCM_EPOCH;
                o[1] = (unsigned char)keys->key_id_len;
                memcpy(o + 2, keys->key_id, keys->key_id_len);
                head = 2 + keys->key_id_len;
                rc   = tx_seal(keys, mode, in, len, o + head, cap - head, &n);
                if (rc)
                        return rc;
                *outlen = head + n;
                return 0;
        }

        head = keys->key_id_len + 3;
        memcpy(o, keys->key_id, keys->key_id_len);
        o[keys->key_id_len]     = ':';
        o[keys->key_id_len + 1] = mode == VEIL_ENCRYPT_SIV ? 's' : 'e';
        o[keys->key_id_len + 2] = ':';
        /* Seal at the very end of the token and base64 it in place, so no
         * scratch buffer is needed (see veil_b64url_encode). */
        rc = tx_seal(keys, mode, in, len, o + total - sealed, sealed, &n);
        if (rc)
                return rc;
        rc = veil_b64url_encode(o + total - sealed, sealed, (char *)o + head,
                                total - head, &n);
        if (rc)
                return rc;
        *outlen = head + n;
        return 0;
}

int veil_tx_token_key_id(const void *token, size_t len, const char **kid,
                         size_t *kid_len)
{
        const unsigned char *t = token;
        size_t n;

        if (len >= 2 &&
            (t[0] == VEIL_TX_ENC_BYTES_SIV || t[0] == VEIL_TX_ENC_BYTES_GCM ||
             t[0] == VEIL_TX_ENC_BYTES_GCM_EPOCH)) {
                n = t[1];
                if (n == 0 || 2 + n > len ||
                    tx_key_id_span((const char *)t + 2, n) != n)
                        return VEIL_EINVAL;
                *kid     = (const char *)t + 2;
                *kid_len = n;
                return 0;
        }
        n = tx_key_id_span((const char *)t, len);
        if (n == 0 || n >= len || t[n] != ':')
                return VEIL_EINVAL;
        *kid     = (const char *)t;
        *kid_len = n;
        return 0;
}

/* Parsed token: form ('s', 'g' version 1 GCM, 'e' epoch GCM), key id and
 * the sealed bytes (decoded into `out`). */
static int tx_token_parse(const unsigned char *t, size_t len, char *form,
                          const char **kid, size_t *kid_len, unsigned char *out,
                          size_t cap, size_t *sealed_len, char *errstr,
                          size_t errstr_size)
{
        size_t n;

        if (len >= 2 &&
            (t[0] == VEIL_TX_ENC_BYTES_SIV || t[0] == VEIL_TX_ENC_BYTES_GCM ||
             t[0] == VEIL_TX_ENC_BYTES_GCM_EPOCH)) {
                *form = t[0] == VEIL_TX_ENC_BYTES_SIV   ? 's'
                        : t[0] == VEIL_TX_ENC_BYTES_GCM ? 'g'
                                                        : 'e';
                n     = t[1];
                if (n == 0 || 2 + n > len ||
                    tx_key_id_span((const char *)t + 2, n) != n)
                        goto bad;
                *kid     = (const char *)t + 2;
                *kid_len = n;
                n        = len - 2 - n;
                if (cap < n)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "reveal: output buffer too small");
                memcpy(out, t + 2 + *kid_len, n);
                *sealed_len = n;
                return 0;
        }

        n = tx_key_id_span((const char *)t, len);
        if (n == 0 || n + 3 > len || t[n] != ':' || t[n + 2] != ':' ||
            (t[n + 1] != 's' && t[n + 1] != 'g' && t[n + 1] != 'e'))
                goto bad;
        *kid     = (const char *)t;
        *kid_len = n;
        *form    = (char)t[n + 1];
        if (veil_b64url_decode((const char *)t + n + 3, len - n - 3, out, cap,
                               sealed_len))
                goto bad;
        return 0;
bad:
        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                         "reveal: not a Veil encrypt token (expected "
                         "KEYID:s:, KEYID:e: or KEYID:g: and BASE64URL)");
}

int veil_tx_reveal(struct veil_tx_keys *keys, const void *token, size_t len,
                   void *out, size_t cap, size_t *outlen, char *errstr,
                   size_t errstr_size)
{
        const char *kid = NULL;
        size_t kid_len = 0, sealed = 0, n;
        unsigned char *o = out;
        char form        = 's';
        int rc;

        rc = tx_token_parse(token, len, &form, &kid, &kid_len, o, cap, &sealed,
                            errstr, errstr_size);
        if (rc)
                return rc;
        if (kid_len != keys->key_id_len ||
            memcmp(kid, keys->key_id, kid_len) != 0) {
                veil_cleanse(o, sealed);
                return veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                 "reveal: the token was made with key id "
                                 "'%.*s' but the configured key id is '%s'",
                                 (int)kid_len, kid, keys->key_id);
        }
        if (form == 'e')
                rc = veil_gcm_epochs_open(&keys->gcm_ep, NULL, 0, o, sealed, o,
                                          cap, &n);
        else
                rc = veil_aead_open(form == 's' ? &keys->siv : &keys->gcm, o,
                                    sealed, o, cap, &n);
        if (rc == VEIL_EDATA)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "reveal: the token does not authenticate "
                                 "(tampered, or made for another purpose or "
                                 "with another key under id '%s')",
                                 keys->key_id);
        if (rc == VEIL_EINVAL)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "reveal: token too short");
        if (rc)
                return veil_errf(errstr, errstr_size, rc,
                                 "reveal: OpenSSL failed to decrypt");
        *outlen = n;
        return 0;
}

/* ---- string/bytes dispatch ------------------------------------------------
 */

size_t veil_tx_string_max(const struct veil_tx_keys *keys,
                          const struct veil_transform *tx, size_t len)
{
        switch (tx->kind) {
        case VEIL_TX_HASH:
                return veil_tx_hash_len(keys);
        case VEIL_TX_ENCRYPT:
                return veil_tx_encrypt_len(keys, tx->encrypt.mode,
                                           tx->encrypt.output, len);
        default:
                return len;
        }
}

int veil_tx_string(struct veil_tx_keys *keys, const struct veil_transform *tx,
                   const void *in, size_t len, void *out, size_t cap,
                   size_t *outlen)
{
        switch (tx->kind) {
        case VEIL_TX_HASH:
                return veil_tx_hash(keys, in, len, out, cap, outlen);
        case VEIL_TX_MASK:
                return veil_tx_mask(tx, in, len, out, cap, outlen);
        case VEIL_TX_GENERALIZE:
                return veil_tx_prefix(in, len, tx->generalize.prefix, out, cap,
                                      outlen);
        case VEIL_TX_ENCRYPT:
                /* per_subject needs the record's subject: the plan's
                 * business (keys never take it) */
                if (tx->encrypt.per_subject)
                        return VEIL_ETYPE;
                return veil_tx_encrypt(keys, tx->encrypt.mode,
                                       tx->encrypt.output, in, len, out, cap,
                                       outlen);
        default:
                return VEIL_ETYPE;
        }
}
