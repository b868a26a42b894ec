/* test_crypto.c - keyed-once HMAC against RFC 4231 and OpenSSL, HKDF against
 * RFC 5869, AES-SIV/GCM sealing, base64url. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "veil.h"

TestSuite(crypto);

/* "0a1b…" → bytes; returns the length. */
static size_t unhex(const char *hex, unsigned char *out, size_t cap)
{
        size_t n = strlen(hex) / 2, i;
        unsigned v;

        cr_assert_leq(n, cap);
        for (i = 0; i < n; i++) {
                cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
                out[i] = (unsigned char)v;
        }
        return n;
}

static void tohex(const unsigned char *p, size_t n, char *out)
{
        size_t i;

        for (i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", p[i]);
        out[2 * n] = '\0';
}

/* Fixed-seed generator so failures reproduce (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

static void rng_fill(unsigned char *p, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                p[i] = (unsigned char)(rng() >> 56);
}

/* The SHA-256 implementations this CPU can run. */
static int impls(enum veil_sha256_impl out[2])
{
        int n = 0;

        out[n++] = VEIL_SHA256_PORTABLE;
        if (veil_sha256_best() == VEIL_SHA256_SHANI)
                out[n++] = VEIL_SHA256_SHANI;
        return n;
}

/* ---- SHA-256 / HMAC ---------------------------------------------------------
 */

Test(crypto, sha256_fips_vectors)
{
        static const struct {
                const char *msg, *digest;
        } v[] = {
                {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
                     "7852b855"},
                {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410f"
                        "f61f20015ad"},
                {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419"
                 "db06c1"},
        };
        unsigned char d[VEIL_SHA256_LEN];
        char hex[65];
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(v); i++) {
                veil_sha256(v[i].msg, strlen(v[i].msg), d);
                tohex(d, sizeof(d), hex);
                cr_expect_str_eq(hex, v[i].digest, "vector %zu", i);
        }
}

Test(crypto, sha256_matches_openssl_at_block_boundaries)
{
        unsigned char data[300], a[VEIL_SHA256_LEN], b[VEIL_SHA256_LEN];
        size_t len;

        rng_fill(data, sizeof(data));
        for (len = 0; len <= sizeof(data); len++) {
                veil_sha256(data, len, a);
                cr_assert_eq(EVP_Digest(data, len, b, NULL, EVP_sha256(), NULL),
                             1);
                cr_assert_arr_eq(a, b, sizeof(a), "length %zu", len);
        }
}

/* Hex, inline: Criterion runs each case in a fresh process image, where a
 * pointer into the parent's data would dangle. mac may be truncated
 * (case 5). */
struct rfc4231_case {
        char key[300];
        char data[320];
        char mac[65];
};

/* 131 bytes of 0xaa (cases 6 and 7: a key longer than the block). */
#define AA_8B "aaaaaaaaaaaaaaaa"
#define KEY_AA_131                                                             \
        AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B AA_8B      \
                AA_8B AA_8B AA_8B AA_8B AA_8B "aaaaaa"

ParameterizedTestParameters(crypto, hmac_rfc4231)
{
        static struct rfc4231_case cases[] = {
                {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e"
                 "32cff7"},
                {"4a656665",
                 "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964"
                 "ec3843"},
                {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                 "dddddddddddddddddddddddddddddddddddddddddd",
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d963551"
                 "4ced565fe"},
                {"0102030405060708090a0b0c0d0e0f10111213141516171819",
                 "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
                 "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46"
                 "729665b"},
                {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
                 "546573742057697468205472756e636174696f6e",
                 "a3b6167473100ee06e0c796c2955552b"},
                {KEY_AA_131,
                 "54657374205573696e67204c6172676572205468616e20426c6f636b2d"
                 "53697a65204b6579202d2048617368204b6579204669727374",
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0e"
                 "e37f54"},
                {KEY_AA_131,
                 "5468697320697320612074657374207573696e672061206c61726765"
                 "72207468616e20626c6f636b2d73697a65206b657920616e642061206c"
                 "6172676572207468616e20626c6f636b2d73697a6520646174612e2054"
                 "6865206b6579206e6565647320746f20626520686173686564206265"
                 "666f7265206265696e6720757365642062792074686520484d414320"
                 "616c676f726974686d2e",
                 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c"
                 "3a35e2"},
        };
        return cr_make_param_array(struct rfc4231_case, cases,
                                   VEIL_ARRAY_SIZE(cases));
}

ParameterizedTest(struct rfc4231_case *c, crypto, hmac_rfc4231)
{
        unsigned char key[256], data[256], want[VEIL_SHA256_LEN],
                got[VEIL_SHA256_LEN];
        size_t klen = unhex(c->key, key, sizeof(key));
        size_t dlen = unhex(c->data, data, sizeof(data));
        size_t mlen = unhex(c->mac, want, sizeof(want));
        enum veil_sha256_impl impl[2];
        struct veil_hmac h;
        int i, n = impls(impl);

        for (i = 0; i < n; i++) {
                cr_assert_eq(veil_hmac_init_impl(&h, key, klen, impl[i]), 0);
                memset(got, 0, sizeof(got));
                veil_hmac_sha256(&h, data, dlen, got);
                cr_expect_arr_eq(got, want, mlen, "impl %s",
                                 veil_sha256_impl_name(impl[i]));
        }
}

/* Random keys (0..150 bytes: below, at and above the block size) and data
 * (0..300 bytes) against OpenSSL's one-shot HMAC, for every
 * implementation this CPU has, and the one picked automatically. */
Test(crypto, hmac_matches_openssl_on_random_inputs)
{
        unsigned char key[150], data[300], want[VEIL_SHA256_LEN],
                got[VEIL_SHA256_LEN];
        enum veil_sha256_impl impl[2];
        int n = impls(impl), i, it;
        unsigned wlen;
        struct veil_hmac h;

        for (it = 0; it < 3000; it++) {
                size_t klen = rng() % (sizeof(key) + 1);
                size_t dlen = rng() % (sizeof(data) + 1);

                rng_fill(key, klen);
                rng_fill(data, dlen);
                cr_assert_not_null(HMAC(EVP_sha256(), key, (int)klen, data,
                                        dlen, want, &wlen));
                for (i = 0; i < n; i++) {
                        cr_assert_eq(
                                veil_hmac_init_impl(&h, key, klen, impl[i]), 0);
                        veil_hmac_sha256(&h, data, dlen, got);
                        cr_assert_arr_eq(got, want, sizeof(got),
                                         "impl %s key %zu data %zu",
                                         veil_sha256_impl_name(impl[i]), klen,
                                         dlen);
                }
                veil_hmac_init(&h, key, klen);
                veil_hmac_sha256(&h, data, dlen, got);
                cr_assert_arr_eq(got, want, sizeof(got));
        }
}

/* Many values under one key (sixteen side by side on AVX-512 CPUs): each
 * MAC is OpenSSL's, for batch sizes below, at and above a vector's lanes
 * and values of one, two and more blocks (lanes of unequal length). */
Test(crypto, hmac_many_matches_openssl)
{
        static const size_t counts[] = {1, 7, 8, 15, 16, 17, 33};
        unsigned char key[40], data[40][300], got[40][VEIL_SHA256_LEN],
                want[VEIL_SHA256_LEN];
        const void *ptr[40];
        size_t len[40], c, i;
        unsigned wlen;
        struct veil_hmac h;
        int it;

        for (it = 0; it < 40; it++) {
                size_t klen = 1 + rng() % sizeof(key);

                rng_fill(key, klen);
                veil_hmac_init(&h, key, klen);
                for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                        for (i = 0; i < counts[c]; i++) {
                                len[i] = rng() % (it & 1 ? 120 : 300);
                                rng_fill(data[i], len[i]);
                                ptr[i] = len[i] ? data[i] : NULL;
                        }
                        veil_hmac_sha256_many(&h, counts[c], ptr, len, got);
                        for (i = 0; i < counts[c]; i++) {
                                cr_assert_not_null(HMAC(EVP_sha256(), key,
                                                        (int)klen, data[i],
                                                        len[i], want, &wlen));
                                cr_assert_arr_eq(got[i], want, sizeof(want),
                                                 "batch of %zu, value %zu "
                                                 "of %zu bytes",
                                                 counts[c], i, len[i]);
                        }
                }
        }
}

/* The audit event's digest and MAC in one pass equal OpenSSL's SHA-256 and
 * HMAC of the same bytes: every length across the first blocks (tails that
 * pad into one or two blocks, whole blocks and none), long events, and a
 * key set up on either compression (SHA-NI runs the blocks side by side
 * only when both hashes use it). */
Test(crypto, sha256_hmac_pair_matches_openssl)
{
        unsigned char key[80], data[1500], d[VEIL_SHA256_LEN],
                m[VEIL_SHA256_LEN], want[VEIL_SHA256_LEN];
        enum veil_sha256_impl impl[2];
        int n = impls(impl), i;
        unsigned wlen;
        size_t dlen, klen;
        struct veil_hmac h;

        rng_fill(data, sizeof(data));
        for (i = 0; i < n; i++) {
                for (dlen = 0; dlen <= sizeof(data);
                     dlen += dlen < 300 ? 1 : 1 + rng() % 97) {
                        klen = 1 + rng() % sizeof(key);
                        rng_fill(key, klen);
                        cr_assert_eq(
                                veil_hmac_init_impl(&h, key, klen, impl[i]), 0);
                        veil_sha256_hmac_pair(&h, dlen ? data : NULL, dlen, d,
                                              m);
                        cr_assert(EVP_Digest(data, dlen, want, &wlen,
                                             EVP_sha256(), NULL));
                        cr_assert_arr_eq(d, want, sizeof(want),
                                         "digest: key on %s, %zu bytes",
                                         veil_sha256_impl_name(impl[i]), dlen);
                        cr_assert_not_null(HMAC(EVP_sha256(), key, (int)klen,
                                                data, dlen, want, &wlen));
                        cr_assert_arr_eq(m, want, sizeof(want),
                                         "mac: key on %s, %zu bytes",
                                         veil_sha256_impl_name(impl[i]), dlen);
                }
        }
}

Test(crypto, hmac_state_is_reusable_and_null_data_is_empty)
{
        unsigned char a[VEIL_SHA256_LEN], b[VEIL_SHA256_LEN],
                c[VEIL_SHA256_LEN];
        struct veil_hmac h, copy;

        veil_hmac_init(&h, "key", 3);
        veil_hmac_sha256(&h, "value", 5, a);
        veil_hmac_sha256(&h, "other", 5, b);
        cr_assert(memcmp(a, b, sizeof(a)) != 0);
        copy = h; /* plain data: a copy MACs the same */
        veil_hmac_sha256(&copy, "value", 5, c);
        cr_assert_arr_eq(a, c, sizeof(a));
        veil_hmac_sha256(&h, NULL, 0, a);
        veil_hmac_sha256(&h, "", 0, b);
        cr_assert_arr_eq(a, b, sizeof(a));
}

Test(crypto, hmac_cleanse_wipes_states)
{
        static const struct veil_hmac zero;
        struct veil_hmac h;

        veil_hmac_init(&h, "key", 3);
        veil_hmac_cleanse(&h);
        cr_assert_arr_eq(&h, &zero, sizeof(h));
}

Test(crypto, impl_names)
{
        cr_assert_str_eq(veil_sha256_impl_name(VEIL_SHA256_PORTABLE),
                         "portable");
        cr_assert_str_eq(veil_sha256_impl_name(VEIL_SHA256_SHANI), "sha-ni");
        cr_assert_str_eq(veil_sha256_impl_name(VEIL_SHA256_AUTO),
                         veil_sha256_impl_name(veil_sha256_best()));
}

/* ---- HKDF --------------------------------------------------------------- */

Test(crypto, hkdf_rfc5869_case1)
{
        unsigned char ikm[22], salt[13], info[10], okm[42], want[42];
        char err[128];

        memset(ikm, 0x0b, sizeof(ikm));
        unhex("000102030405060708090a0b0c", salt, sizeof(salt));
        unhex("f0f1f2f3f4f5f6f7f8f9", info, sizeof(info));
        unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5"
              "bf34007208d5b887185865",
              want, sizeof(want));
        cr_assert_eq(veil_hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt),
                                      info, sizeof(info), okm, sizeof(okm), err,
                                      sizeof(err)),
                     0, "%s", err);
        cr_assert_arr_eq(okm, want, sizeof(okm));
}

/* RFC 5869 case 3: no salt, empty info (how Veil calls it, minus info). */
Test(crypto, hkdf_rfc5869_case3_no_salt)
{
        unsigned char ikm[22], okm[42], want[42];
        char err[128];

        memset(ikm, 0x0b, sizeof(ikm));
        unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d"
              "2d9d201395faa4b61a96c8",
              want, sizeof(want));
        cr_assert_eq(veil_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "", 0, okm,
                                      sizeof(okm), err, sizeof(err)),
                     0, "%s", err);
        cr_assert_arr_eq(okm, want, sizeof(okm));
}

Test(crypto, hkdf_rejects_bad_lengths)
{
        unsigned char okm[32];
        char err[128] = "";

        cr_assert_eq(veil_hkdf_sha256("k", 0, NULL, 0, "i", 1, okm, sizeof(okm),
                                      err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_neq(err[0], '\0');
        cr_assert_eq(veil_hkdf_sha256("k", 1, NULL, 0, "i", 1, okm,
                                      255 * 32 + 1, NULL, 0),
                     VEIL_EINVAL);
}

/* ---- AEAD --------------------------------------------------------------- */

static void aead_setup(struct veil_aead *a, enum veil_aead_mode mode,
                       unsigned char fill)
{
        unsigned char key[VEIL_AEAD_SIV_KEY_LEN];
        size_t klen   = mode == VEIL_AEAD_SIV ? VEIL_AEAD_SIV_KEY_LEN
                                              : VEIL_AEAD_GCM_KEY_LEN;
        char err[256] = "";

        memset(key, fill, sizeof(key));
        key[0] = 0x42;
        cr_assert_eq(veil_aead_init(a, mode, key, klen, err, sizeof(err)), 0,
                     "%s", err);
}

Test(crypto, aead_rejects_wrong_key_length)
{
        struct veil_aead a;
        unsigned char key[64] = {0};
        char err[256]         = "";

        cr_assert_eq(
                veil_aead_init(&a, VEIL_AEAD_SIV, key, 32, err, sizeof(err)),
                VEIL_EINVAL);
        cr_assert(strstr(err, "64") != NULL, "%s", err);
        cr_assert_eq(
                veil_aead_init(&a, VEIL_AEAD_GCM, key, 64, err, sizeof(err)),
                VEIL_EINVAL);
        veil_aead_destroy(&a); /* zeroed by the failed init: a no-op */
}

Test(crypto, siv_is_deterministic_and_round_trips)
{
        unsigned char pt[200], ct1[256], ct2[256], back[256];
        struct veil_aead a;
        size_t len, n1, n2, nb;

        aead_setup(&a, VEIL_AEAD_SIV, 7);
        rng_fill(pt, sizeof(pt));
        for (len = 0; len <= sizeof(pt); len += (len < 40 ? 1 : 13)) {
                cr_assert_eq(veil_aead_seal(&a, pt, len, ct1, sizeof(ct1), &n1),
                             0);
                cr_assert_eq(veil_aead_seal(&a, pt, len, ct2, sizeof(ct2), &n2),
                             0);
                cr_assert_eq(n1, len + VEIL_AEAD_TAG_LEN);
                cr_assert_arr_eq(ct1, ct2, n1, "length %zu", len);
                cr_assert_eq(
                        veil_aead_open(&a, ct1, n1, back, sizeof(back), &nb), 0,
                        "length %zu", len);
                cr_assert_eq(nb, len);
                cr_assert_arr_eq(back, pt, len);
        }
        /* Different plaintexts, different ciphertexts. */
        veil_aead_seal(&a, "a", 1, ct1, sizeof(ct1), &n1);
        veil_aead_seal(&a, "b", 1, ct2, sizeof(ct2), &n2);
        cr_assert(memcmp(ct1, ct2, n1) != 0);
        veil_aead_destroy(&a);
}

/* Veil's SIV (S2V + CTR over OpenSSL's CMAC and AES-CTR) against
 * OpenSSL's own "AES-256-SIV" on random keys and every length from 1 to
 * 300 (OpenSSL 3.0 refuses empty plaintexts, see siv_seals_empty_values).
 * Sealed layout V | C, as RFC 5297 writes it. */
Test(crypto, siv_matches_openssl_aes_256_siv)
{
        unsigned char key[64], pt[300], mine[316], ref[300], tag[16];
        EVP_CIPHER *cipher  = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        struct veil_aead a;
        size_t len, n;
        int l1, l2;

        cr_assert(cipher && ctx);
        for (len = 1; len <= sizeof(pt); len++) {
                rng_fill(key, sizeof(key));
                rng_fill(pt, len);
                cr_assert_eq(veil_aead_init(&a, VEIL_AEAD_SIV, key, sizeof(key),
                                            NULL, 0),
                             0);
                cr_assert_eq(
                        veil_aead_seal(&a, pt, len, mine, sizeof(mine), &n), 0);
                veil_aead_destroy(&a);

                l1 = l2 = 0;
                cr_assert_eq(EVP_EncryptInit_ex2(ctx, cipher, key, NULL, NULL),
                             1);
                cr_assert_eq(EVP_EncryptUpdate(ctx, ref, &l1, pt, (int)len), 1);
                cr_assert_eq(EVP_EncryptFinal_ex(ctx, ref + l1, &l2), 1);
                cr_assert_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
                                                 tag),
                             1);
                cr_assert_eq(n, 16 + len);
                cr_assert_arr_eq(mine, tag, 16, "V, length %zu", len);
                cr_assert_arr_eq(mine + 16, ref, len, "C, length %zu", len);
        }
        EVP_CIPHER_CTX_free(ctx);
        EVP_CIPHER_free(cipher);
}

/* The empty plaintext (RFC 5297: S2V of one empty string, V = CMAC(K1,
 * dbl(CMAC(K1, 0^128)) xor 10^127)) computed here with OpenSSL's CMAC
 * directly. */
Test(crypto, siv_seals_empty_values)
{
        unsigned char key[64], v[16], d[16], t[16], out[16], back[4];
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
        OSSL_PARAM params[2];
        struct veil_aead a;
        EVP_MAC_CTX *m;
        size_t n, i;

        rng_fill(key, sizeof(key));
        cr_assert_eq(veil_aead_init(&a, VEIL_AEAD_SIV, key, 64, NULL, 0), 0);
        cr_assert_eq(veil_aead_seal(&a, NULL, 0, out, sizeof(out), &n), 0);
        cr_assert_eq(n, 16);

        params[0] = OSSL_PARAM_construct_utf8_string("cipher",
                                                     (char *)"AES-256-CBC", 0);
        params[1] = OSSL_PARAM_construct_end();
        cr_assert_not_null(mac);
        m = EVP_MAC_CTX_new(mac);
        memset(t, 0, sizeof(t));
        cr_assert_eq(EVP_MAC_init(m, key, 32, params), 1);
        cr_assert_eq(EVP_MAC_update(m, t, 16), 1);
        cr_assert_eq(EVP_MAC_final(m, d, &n, 16), 1);
        for (i = 0; i < 16; i++) /* dbl(d) */
                t[i] = (unsigned char)(d[i] << 1 |
                                       (i < 15 ? d[i + 1] >> 7 : 0));
        if (d[0] & 0x80)
                t[15] ^= 0x87;
        t[0] ^= 0x80;
        cr_assert_eq(EVP_MAC_init(m, key, 32, params), 1);
        cr_assert_eq(EVP_MAC_update(m, t, 16), 1);
        cr_assert_eq(EVP_MAC_final(m, v, &n, 16), 1);
        cr_assert_arr_eq(out, v, 16);

        cr_assert_eq(veil_aead_open(&a, out, 16, back, 0, &n), 0);
        cr_assert_eq(n, 0);
        out[5] ^= 1;
        cr_assert_eq(veil_aead_open(&a, out, 16, back, 0, &n), VEIL_EDATA);
        EVP_MAC_CTX_free(m);
        EVP_MAC_free(mac);
        veil_aead_destroy(&a);
}

static void expect_tamper_detected(enum veil_aead_mode mode)
{
        unsigned char pt[40], ct[128], bad[128], back[128];
        struct veil_aead a, other;
        size_t n, nb, i;
        int bit;

        aead_setup(&a, mode, 1);
        aead_setup(&other, mode, 2);
        rng_fill(pt, sizeof(pt));
        cr_assert_eq(veil_aead_seal(&a, pt, sizeof(pt), ct, sizeof(ct), &n), 0);
        for (i = 0; i < n; i++) {
                for (bit = 0; bit < 8; bit += 3) {
                        memcpy(bad, ct, n);
                        bad[i] ^= (unsigned char)(1u << bit);
                        memset(back, 0xee, sizeof(back));
                        cr_assert_eq(veil_aead_open(&a, bad, n, back,
                                                    sizeof(back), &nb),
                                     VEIL_EDATA, "byte %zu bit %d", i, bit);
                        /* Nothing of a plaintext is left behind. */
                        cr_assert(memcmp(back, pt, 8) != 0);
                }
        }
        /* Truncated: shorter ciphertext with the same tag fails too. */
        cr_assert_neq(veil_aead_open(&a, ct, n - 1, back, sizeof(back), &nb),
                      0);
        /* Another key. */
        cr_assert_eq(veil_aead_open(&other, ct, n, back, sizeof(back), &nb),
                     VEIL_EDATA);
        /* The real one still opens after all those failures. */
        cr_assert_eq(veil_aead_open(&a, ct, n, back, sizeof(back), &nb), 0);
        cr_assert_arr_eq(back, pt, sizeof(pt));
        veil_aead_destroy(&a);
        veil_aead_destroy(&other);
}

Test(crypto, siv_detects_tampering)
{
        expect_tamper_detected(VEIL_AEAD_SIV);
}

Test(crypto, gcm_detects_tampering)
{
        expect_tamper_detected(VEIL_AEAD_GCM);
}

Test(crypto, gcm_round_trips_with_fresh_nonces)
{
        unsigned char pt[100], ct1[160], ct2[160], back[160];
        struct veil_aead a;
        size_t len, n1, n2, nb;

        aead_setup(&a, VEIL_AEAD_GCM, 9);
        rng_fill(pt, sizeof(pt));
        for (len = 0; len <= sizeof(pt); len += 7) {
                cr_assert_eq(veil_aead_seal(&a, pt, len, ct1, sizeof(ct1), &n1),
                             0);
                cr_assert_eq(veil_aead_seal(&a, pt, len, ct2, sizeof(ct2), &n2),
                             0);
                cr_assert_eq(n1, len + VEIL_AEAD_OVERHEAD);
                cr_assert(memcmp(ct1, ct2, VEIL_AEAD_GCM_NONCE_LEN) != 0,
                          "nonce repeated");
                cr_assert(memcmp(ct1, ct2, n1) != 0);
                cr_assert_eq(
                        veil_aead_open(&a, ct1, n1, back, sizeof(back), &nb),
                        0);
                cr_assert_eq(nb, len);
                cr_assert_arr_eq(back, pt, len);
                cr_assert_eq(
                        veil_aead_open(&a, ct2, n2, back, sizeof(back), &nb),
                        0);
                cr_assert_arr_eq(back, pt, len);
        }
        veil_aead_destroy(&a);
}

/* A forked child must not reuse nonces from the parent's pool. */
Test(crypto, gcm_nonces_differ_across_fork)
{
        unsigned char parent[64], child[64];
        struct veil_aead a;
        int fds[2], status;
        size_t n;
        pid_t pid;

        aead_setup(&a, VEIL_AEAD_GCM, 4);
        cr_assert_eq(veil_aead_seal(&a, "x", 1, parent, sizeof(parent), &n),
                     0); /* fills the pool */
        cr_assert_eq(pipe(fds), 0);
        pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
                veil_aead_seal(&a, "x", 1, child, sizeof(child), &n);
                _exit(write(fds[1], child, VEIL_AEAD_GCM_NONCE_LEN) ==
                                      VEIL_AEAD_GCM_NONCE_LEN
                              ? 0
                              : 1);
        }
        cr_assert_eq(read(fds[0], child, VEIL_AEAD_GCM_NONCE_LEN),
                     VEIL_AEAD_GCM_NONCE_LEN);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        cr_assert_eq(veil_aead_seal(&a, "x", 1, parent, sizeof(parent), &n), 0);
        cr_assert(memcmp(parent, child, VEIL_AEAD_GCM_NONCE_LEN) != 0,
                  "child reused the parent's next nonce");
        close(fds[0]);
        close(fds[1]);
        veil_aead_destroy(&a);
}

Test(crypto, gcm_nonces_do_not_repeat)
{
        enum { N = 1000 };
        static unsigned char seen[N][VEIL_AEAD_GCM_NONCE_LEN];
        unsigned char ct[64];
        struct veil_aead a;
        size_t n;
        int i, j;

        aead_setup(&a, VEIL_AEAD_GCM, 5);
        for (i = 0; i < N; i++) {
                cr_assert_eq(veil_aead_seal(&a, "v", 1, ct, sizeof(ct), &n), 0);
                memcpy(seen[i], ct, VEIL_AEAD_GCM_NONCE_LEN);
                for (j = 0; j < i; j++)
                        cr_assert(memcmp(seen[i], seen[j],
                                         VEIL_AEAD_GCM_NONCE_LEN) != 0);
        }
        veil_aead_destroy(&a);
}

Test(crypto, aead_opens_in_place_and_checks_sizes)
{
        enum veil_aead_mode modes[] = {VEIL_AEAD_SIV, VEIL_AEAD_GCM};
        unsigned char buf[128];
        struct veil_aead a;
        size_t n, nb, i;

        for (i = 0; i < VEIL_ARRAY_SIZE(modes); i++) {
                aead_setup(&a, modes[i], 3);
                cr_assert_eq(veil_aead_seal(&a, "secret", 6, buf, 6, &n),
                             VEIL_EINVAL); /* cap too small */
                cr_assert_eq(
                        veil_aead_seal(&a, "secret", 6, buf, sizeof(buf), &n),
                        0);
                cr_assert_eq(veil_aead_open(&a, buf, n, buf, n, &nb), 0);
                cr_assert_eq(nb, 6);
                cr_assert_arr_eq(buf, "secret", 6);
                cr_assert_eq(veil_aead_open(&a, buf, VEIL_AEAD_TAG_LEN - 1, buf,
                                            sizeof(buf), &nb),
                             VEIL_EINVAL);
                cr_assert_eq(veil_aead_seal(&a, "", VEIL_AEAD_MAX_LEN + 1, buf,
                                            sizeof(buf), &n),
                             VEIL_EINVAL);
                veil_aead_destroy(&a);
        }
}

/* ---- base64url ------------------------------------------------------------
 */

Test(crypto, b64url_rfc4648_vectors)
{
        static const char *const plain[] = {"",     "f",     "fo",    "foo",
                                            "foob", "fooba", "foobar"};
        static const char *const enc[]   = {
                  "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
        char out[16];
        unsigned char back[16];
        size_t i, n;

        for (i = 0; i < VEIL_ARRAY_SIZE(plain); i++) {
                cr_assert_eq(veil_b64url_encode(plain[i], strlen(plain[i]), out,
                                                sizeof(out), &n),
                             0);
                cr_assert_eq(n, strlen(enc[i]));
                cr_assert_eq(n, VEIL_B64URL_LEN(strlen(plain[i])));
                cr_assert_arr_eq(out, enc[i], n);
                cr_assert_eq(
                        veil_b64url_decode(enc[i], n, back, sizeof(back), &n),
                        0);
                cr_assert_eq(n, strlen(plain[i]));
                cr_assert_arr_eq(back, plain[i], n);
        }
}

Test(crypto, b64url_uses_the_url_alphabet)
{
        const unsigned char in[] = {0xfb, 0xff, 0xbf};
        char out[8];
        size_t n;

        cr_assert_eq(veil_b64url_encode(in, 3, out, sizeof(out), &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_arr_eq(out, "-_-_", 4);
}

Test(crypto, b64url_round_trips_random_bytes)
{
        unsigned char in[100], back[100];
        char enc[VEIL_B64URL_LEN(100)];
        size_t len, n, m;
        int it;

        for (it = 0; it < 500; it++) {
                len = rng() % (sizeof(in) + 1);
                rng_fill(in, len);
                cr_assert_eq(veil_b64url_encode(in, len, enc, sizeof(enc), &n),
                             0);
                cr_assert_eq(n, VEIL_B64URL_LEN(len));
                cr_assert_eq(veil_b64url_decode(enc, n, back, sizeof(back), &m),
                             0);
                cr_assert_eq(m, len);
                cr_assert_arr_eq(back, in, len);
        }
}

Test(crypto, b64url_encodes_in_place_from_the_end)
{
        unsigned char in[50], buf[VEIL_B64URL_LEN(50)];
        char ref[VEIL_B64URL_LEN(50)];
        size_t len, n, e;

        for (len = 0; len <= sizeof(in); len++) {
                rng_fill(in, len);
                e = VEIL_B64URL_LEN(len);
                cr_assert_eq(veil_b64url_encode(in, len, ref, sizeof(ref), &n),
                             0);
                memcpy(buf + e - len, in, len);
                cr_assert_eq(veil_b64url_encode(buf + e - len, len, (char *)buf,
                                                e, &n),
                             0);
                cr_assert_eq(n, e);
                cr_assert_arr_eq(buf, ref, e, "length %zu", len);
        }
}

Test(crypto, b64url_rejects_non_canonical_input)
{
        static const char *const bad[] = {
                "Zg==",                       /* padding */
                "Zm9v+A", "Zm9v/A",           /* standard alphabet */
                "Z",      "Zm9vY",            /* impossible lengths */
                "Zh",     "Zm9",    "Zm9vYh", /* non-zero unused bits */
                "Zm 9",   "Zm\n9",
        };
        unsigned char out[16];
        size_t i, n;

        for (i = 0; i < VEIL_ARRAY_SIZE(bad); i++)
                cr_expect_eq(veil_b64url_decode(bad[i], strlen(bad[i]), out,
                                                sizeof(out), &n),
                             VEIL_EINVAL, "'%s'", bad[i]);
        cr_assert_eq(veil_b64url_decode("Zm9vYmFy", 8, out, 5, &n),
                     VEIL_EINVAL);
        cr_assert_eq(veil_b64url_encode("foobar", 6, (char *)out, 7, &n),
                     VEIL_EINVAL);
}

Test(crypto, gcm_associated_data_must_match)
{
        struct veil_aead gcm, siv;
        unsigned char out[64], back[64];
        size_t n, m;

        aead_setup(&gcm, VEIL_AEAD_GCM, 7);
        aead_setup(&siv, VEIL_AEAD_SIV, 7);
        cr_assert_eq(veil_aead_seal_ad(&gcm, "t/0/42|bad-magic", 16, "value", 5,
                                       out, sizeof(out), &n),
                     0);
        cr_assert_eq(veil_aead_open_ad(&gcm, "t/0/42|bad-magic", 16, out, n,
                                       back, sizeof(back), &m),
                     0);
        cr_assert_eq(m, 5);
        cr_assert_arr_eq(back, "value", 5);
        /* Other associated data, or none: does not open. */
        cr_assert_eq(veil_aead_open_ad(&gcm, "t/0/43|bad-magic", 16, out, n,
                                       back, sizeof(back), &m),
                     VEIL_EDATA);
        cr_assert_eq(veil_aead_open(&gcm, out, n, back, sizeof(back), &m),
                     VEIL_EDATA);
        /* SIV here takes no associated data. */
        cr_assert_eq(veil_aead_seal_ad(&siv, "x", 1, "value", 5, out,
                                       sizeof(out), &n),
                     VEIL_EINVAL);
        veil_aead_destroy(&gcm);
        veil_aead_destroy(&siv);
}

Test(crypto, gcm_epochs_differ_per_instance_and_open_each_other)
{
        unsigned char base[32], other[32], a1[64], b1[64], back[64];
        struct veil_gcm_epochs a, b, c;
        size_t na, nb, m;

        rng_fill(base, sizeof(base));
        memcpy(other, base, sizeof(other));
        other[0] ^= 1;
        cr_assert_eq(veil_gcm_epochs_init(&a, base, NULL, 0), 0);
        cr_assert_eq(veil_gcm_epochs_init(&b, base, NULL, 0), 0);
        cr_assert_eq(veil_gcm_epochs_init(&c, other, NULL, 0), 0);
        cr_assert(memcmp(a.salt, b.salt, sizeof(a.salt)) != 0);
        cr_assert_eq(veil_gcm_epochs_seal(&a, NULL, 0, "hello", 5, a1,
                                          sizeof(a1), &na),
                     0);
        cr_assert_eq(na, 5 + VEIL_GCM_EPOCH_OVERHEAD);
        cr_assert_arr_eq(a1, a.salt, VEIL_GCM_EPOCH_SALT_LEN);
        cr_assert_eq(veil_gcm_epochs_seal(&b, "ad", 2, "hello", 5, b1,
                                          sizeof(b1), &nb),
                     0);
        /* Each opens the other's epoch; the wrong base key does not. */
        cr_assert_eq(veil_gcm_epochs_open(&b, NULL, 0, a1, na, back,
                                          sizeof(back), &m),
                     0);
        cr_assert_arr_eq(back, "hello", 5);
        cr_assert_eq(veil_gcm_epochs_open(&a, "ad", 2, b1, nb, back,
                                          sizeof(back), &m),
                     0);
        cr_assert_eq(veil_gcm_epochs_open(&a, "ae", 2, b1, nb, back,
                                          sizeof(back), &m),
                     VEIL_EDATA);
        cr_assert_eq(veil_gcm_epochs_open(&c, NULL, 0, a1, na, back,
                                          sizeof(back), &m),
                     VEIL_EDATA);
        /* The salt is bound: another salt derives another key. */
        a1[0] ^= 0x80;
        cr_assert_eq(veil_gcm_epochs_open(&a, NULL, 0, a1, na, back,
                                          sizeof(back), &m),
                     VEIL_EDATA);
        cr_assert_eq(veil_gcm_epochs_open(&a, NULL, 0, a1, 20, back,
                                          sizeof(back), &m),
                     VEIL_EINVAL);
        veil_gcm_epochs_destroy(&a);
        veil_gcm_epochs_destroy(&b);
        veil_gcm_epochs_destroy(&c);
        veil_gcm_epochs_destroy(&c);
}

/* ---- HKDF without allocation, AEAD re-keying ------------------------------
 */

Test(crypto, hkdf_noalloc_matches_openssl)
{
        static const size_t lens[] = {1, 31, 32, 33, 64, 96, 97, 255 * 32};
        static unsigned char a[255 * 32], b[255 * 32];
        unsigned char ikm[40], want[42];
        char info[300], err[128];
        size_t i, il;

        /* RFC 5869 case 3 (no salt, empty info) */
        memset(ikm, 0x0b, 22);
        unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d"
              "2d9d201395faa4b61a96c8",
              want, sizeof(want));
        cr_assert_eq(veil_hkdf_sha256_noalloc(ikm, 22, "", 0, a, 42), 0);
        cr_assert_arr_eq(a, want, 42);
        memset(info, 'i', sizeof(info));
        for (i = 0; i < sizeof(ikm); i++)
                ikm[i] = (unsigned char)(i * 7 + 1);
        for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
                for (il = 0; il <= 255; il += 51) {
                        cr_assert_eq(veil_hkdf_sha256(ikm, 32, NULL, 0, info,
                                                      il, a, lens[i], err,
                                                      sizeof(err)),
                                     0, "%s", err);
                        cr_assert_eq(veil_hkdf_sha256_noalloc(ikm, 32, info, il,
                                                              b, lens[i]),
                                     0);
                        cr_assert(!memcmp(a, b, lens[i]), "len %zu info %zu",
                                  lens[i], il);
                }
        cr_assert_eq(veil_hkdf_sha256_noalloc(ikm, 0, "i", 1, b, 32),
                     VEIL_EINVAL);
        cr_assert_eq(veil_hkdf_sha256_noalloc(ikm, 32, info, 256, b, 32),
                     VEIL_EINVAL);
        cr_assert_eq(veil_hkdf_sha256_noalloc(ikm, 32, "i", 1, b, 255 * 32 + 1),
                     VEIL_EINVAL);
}

/* A re-keyed context behaves exactly as one set up with the new key. */
Test(crypto, aead_rekey_equals_a_fresh_init)
{
        unsigned char k1[64], k2[64], c1[64], c2[64], back[64];
        struct veil_aead a, fresh;
        size_t n1, n2, nb;
        char err[128];
        int i;

        for (i = 0; i < 64; i++) {
                k1[i] = (unsigned char)i;
                k2[i] = (unsigned char)(255 - i);
        }
        /* SIV: deterministic, byte for byte */
        cr_assert_eq(
                veil_aead_init(&a, VEIL_AEAD_SIV, k1, 64, err, sizeof(err)), 0,
                "%s", err);
        cr_assert_eq(
                veil_aead_init(&fresh, VEIL_AEAD_SIV, k2, 64, err, sizeof(err)),
                0, "%s", err);
        cr_assert_eq(veil_aead_rekey(&a, k2, 64), 0);
        cr_assert_eq(veil_aead_seal(&a, "short", 5, c1, sizeof(c1), &n1), 0);
        cr_assert_eq(veil_aead_seal(&fresh, "short", 5, c2, sizeof(c2), &n2),
                     0);
        cr_assert(n1 == n2 && !memcmp(c1, c2, n1));
        cr_assert_eq(veil_aead_seal(&a, "a value of 24 bytes long", 24, c1,
                                    sizeof(c1), &n1),
                     0);
        cr_assert_eq(veil_aead_seal(&fresh, "a value of 24 bytes long", 24, c2,
                                    sizeof(c2), &n2),
                     0);
        cr_assert(n1 == n2 && !memcmp(c1, c2, n1));
        cr_assert_eq(veil_aead_rekey(&a, k2, 32), VEIL_EINVAL);
        veil_aead_destroy(&a);
        veil_aead_destroy(&fresh);
        /* GCM: sealed under the new key opens under it, not the old one */
        cr_assert_eq(
                veil_aead_init(&a, VEIL_AEAD_GCM, k1, 32, err, sizeof(err)), 0,
                "%s", err);
        cr_assert_eq(
                veil_aead_init(&fresh, VEIL_AEAD_GCM, k1, 32, err, sizeof(err)),
                0, "%s", err);
        cr_assert_eq(veil_aead_rekey(&a, k2, 32), 0);
        cr_assert_eq(veil_aead_seal(&a, "v", 1, c1, sizeof(c1), &n1), 0);
        cr_assert_eq(veil_aead_open(&fresh, c1, n1, back, sizeof(back), &nb),
                     VEIL_EDATA);
        cr_assert_eq(veil_aead_rekey(&fresh, k2, 32), 0);
        cr_assert_eq(veil_aead_open(&fresh, c1, n1, back, sizeof(back), &nb),
                     0);
        cr_assert(nb == 1 && back[0] == 'v');
        cr_assert_eq(veil_aead_rekey(&a, k2, 64), VEIL_EINVAL);
        veil_aead_destroy(&a);
        veil_aead_destroy(&fresh);
        memset(&a, 0, sizeof(a));
        cr_assert_eq(veil_aead_rekey(&a, k2, 32), VEIL_EINVAL); /* not set up */
}
