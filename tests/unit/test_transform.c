/* test_transform.c - value transforms: hash tokens and per-purpose keys,
 * mask, generalize, encrypt and reveal. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/redirect.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "commands.h"
#include "config.h"
#include "crypto.h"
#include "transform.h"
#include "veil.h"

TestSuite(transform);

/* A fixed 40-byte master key: tests pin tokens to it. */
static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-master";

static void keys_for(struct veil_tx_keys *keys, const char *key_id,
                     const char *purpose, bool shared)
{
        char err[256] = "";

        cr_assert_eq(veil_tx_keys_init(keys, master, sizeof(master), key_id,
                                       purpose, shared, err, sizeof(err)),
                     0, "%s", err);
}

static void hash_str(const struct veil_tx_keys *keys, const char *v,
                     char out[VEIL_TX_HASH_TOKEN_MAX + 1])
{
        size_t n;

        cr_assert_eq(veil_tx_hash(keys, v, strlen(v), out,
                                  VEIL_TX_HASH_TOKEN_MAX, &n),
                     0);
        out[n] = '\0';
}

/* ---- keys ---------------------------------------------------------------- */

Test(transform, keys_reject_bad_key_ids_short_keys_and_no_purpose)
{
        static const char *const bad_ids[] = {
                "",    "k:1", "k 1",
                "kéy", "k/1", "abcdefghijklmnopqrstuvwxyz0123456", /* 33 */
        };
        struct veil_tx_keys keys;
        char err[256];
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(bad_ids); i++) {
                err[0] = '\0';
                cr_expect_eq(veil_tx_keys_init(&keys, master, sizeof(master),
                                               bad_ids[i], "p", false, err,
                                               sizeof(err)),
                             VEIL_EINVAL, "'%s'", bad_ids[i]);
                cr_expect(strstr(err, "key_id") != NULL, "%s", err);
        }
        cr_assert_eq(veil_tx_keys_init(&keys, master, sizeof(master), NULL, "p",
                                       false, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_tx_keys_init(&keys, master, 31, "k1", "p", false, err,
                                       sizeof(err)),
                     VEIL_EINVAL);
        cr_assert(strstr(err, "32") != NULL, "%s", err);
        cr_assert_eq(veil_tx_keys_init(&keys, master, sizeof(master), "k1",
                                       NULL, false, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_tx_keys_init(&keys, master, sizeof(master), "k1", "",
                                       false, err, sizeof(err)),
                     VEIL_EINVAL);
        /* 32 characters is the maximum, and fine. */
        keys_for(&keys, "abcdefghijklmnopqrstuvwxyz.-_012", "p", false);
        veil_tx_keys_destroy(&keys);
        keys_for(&keys, "k1", NULL, true);
        veil_tx_keys_destroy(&keys);
}

Test(transform, keys_destroy_wipes_and_is_idempotent)
{
        static const struct veil_hmac zero;
        struct veil_tx_keys keys;

        keys_for(&keys, "k1", "analytics", false);
        veil_tx_keys_destroy(&keys);
        cr_assert_arr_eq(&keys.hash, &zero, sizeof(zero));
        cr_assert_eq(keys.key_id_len, 0);
        cr_assert_null(keys.siv.cmac);
        cr_assert_null(keys.gcm.enc);
        veil_tx_keys_destroy(&keys);
        veil_tx_keys_destroy(NULL);
}

/* ---- hash ------------------------------------------------------------------
 */

static int b64url_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '-' || c == '_';
}

Test(transform, hash_token_shape)
{
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        struct veil_tx_keys keys;
        size_t i;

        keys_for(&keys, "k1", "analytics", false);
        hash_str(&keys, "alice@example.com", tok);
        cr_assert_eq(strlen(tok), 3 + 43);
        cr_assert_eq(veil_tx_hash_len(&keys), 3 + 43);
        cr_assert_eq(strncmp(tok, "k1:", 3), 0, "%s", tok);
        for (i = 3; tok[i]; i++)
                cr_assert(b64url_char(tok[i]), "char %zu of %s", i, tok);
        veil_tx_keys_destroy(&keys);

        keys_for(&keys, "abcdefghijklmnopqrstuvwxyz.-_012", "analytics", false);
        hash_str(&keys, "x", tok);
        cr_assert_eq(strlen(tok), VEIL_TX_HASH_TOKEN_MAX);
        veil_tx_keys_destroy(&keys);
}

/* The derivation is a contract (tokens must stay stable across releases):
 * HMAC-SHA256 keyed with HKDF-SHA256(master, no salt,
 * "veil:hash:<purpose>", 32 bytes), computed here with OpenSSL only. */
Test(transform, hash_token_is_hmac_under_the_hkdf_purpose_key)
{
        static const char info[] = "veil:hash:analytics";
        unsigned char hk[32], mac[32], prk[32];
        unsigned char t[33];
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1], want[80], b64[64];
        unsigned char zero[32] = {0};
        struct veil_tx_keys keys;
        unsigned len;
        size_t i, n;

        /* HKDF by hand (RFC 5869): PRK = HMAC(0^32, IKM); T1 = HMAC(PRK,
         * info | 0x01). One block is enough for 32 bytes. */
        cr_assert_not_null(HMAC(EVP_sha256(), zero, 32, master, sizeof(master),
                                prk, &len));
        memcpy(t, info, strlen(info));
        t[strlen(info)] = 0x01;
        cr_assert_not_null(
                HMAC(EVP_sha256(), prk, 32, t, strlen(info) + 1, hk, &len));
        cr_assert_not_null(HMAC(EVP_sha256(), hk, 32,
                                (const unsigned char *)"alice@example.com", 17,
                                mac, &len));
        /* Standard base64 → url alphabet without padding. */
        n = (size_t)EVP_EncodeBlock((unsigned char *)b64, mac, 32);
        while (n && b64[n - 1] == '=')
                n--;
        for (i = 0; i < n; i++)
                b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
        b64[n] = '\0';
        snprintf(want, sizeof(want), "k1:%s", b64);

        keys_for(&keys, "k1", "analytics", false);
        hash_str(&keys, "alice@example.com", tok);
        cr_assert_str_eq(tok, want);
        veil_tx_keys_destroy(&keys);
}

Test(transform, hash_is_deterministic_and_per_purpose)
{
        char a1[VEIL_TX_HASH_TOKEN_MAX + 1], a2[VEIL_TX_HASH_TOKEN_MAX + 1],
                b[VEIL_TX_HASH_TOKEN_MAX + 1], m[VEIL_TX_HASH_TOKEN_MAX + 1];
        struct veil_tx_keys an, an2, mk;

        keys_for(&an, "k1", "analytics", false);
        keys_for(&an2, "k1", "analytics", false); /* another worker */
        keys_for(&mk, "k1", "marketing", false);
        hash_str(&an, "alice@example.com", a1);
        hash_str(&an2, "alice@example.com", a2);
        hash_str(&an, "bob@example.com", b);
        hash_str(&mk, "alice@example.com", m);
        cr_assert_str_eq(a1, a2);
        cr_assert_str_neq(a1, b);
        cr_assert_str_neq(a1, m, "purposes must not be joinable");
        veil_tx_keys_destroy(&an);
        veil_tx_keys_destroy(&an2);
        veil_tx_keys_destroy(&mk);
}

Test(transform, shared_keys_join_across_purposes)
{
        char a[VEIL_TX_HASH_TOKEN_MAX + 1], m[VEIL_TX_HASH_TOKEN_MAX + 1],
                own[VEIL_TX_HASH_TOKEN_MAX + 1];
        struct veil_tx_keys an, mk, sep;

        keys_for(&an, "k1", "analytics", true);
        keys_for(&mk, "k1", "marketing", true);
        keys_for(&sep, "k1", "analytics", false);
        hash_str(&an, "alice@example.com", a);
        hash_str(&mk, "alice@example.com", m);
        hash_str(&sep, "alice@example.com", own);
        cr_assert_str_eq(a, m);
        cr_assert_str_neq(a, own);
        veil_tx_keys_destroy(&an);
        veil_tx_keys_destroy(&mk);
        veil_tx_keys_destroy(&sep);
}

Test(transform, hash_covers_bytes_and_checks_cap)
{
        char t1[VEIL_TX_HASH_TOKEN_MAX], t2[VEIL_TX_HASH_TOKEN_MAX];
        struct veil_tx_keys keys;
        size_t n1, n2;

        keys_for(&keys, "k1", "p", false);
        /* Embedded NULs count: hashing is over bytes. */
        cr_assert_eq(veil_tx_hash(&keys, "a\0b", 3, t1, sizeof(t1), &n1), 0);
        cr_assert_eq(veil_tx_hash(&keys, "a\0c", 3, t2, sizeof(t2), &n2), 0);
        cr_assert(memcmp(t1, t2, n1) != 0);
        cr_assert_eq(veil_tx_hash(&keys, "", 0, t1, sizeof(t1), &n1), 0);
        cr_assert_eq(veil_tx_hash(&keys, "x", 1, t1, 3 + 42, &n1), VEIL_EINVAL);
        veil_tx_keys_destroy(&keys);
}

/* ---- mask ------------------------------------------------------------------
 */

struct mask_case {
        int keep_first, keep_last;
        char mask_char;
        bool digits_only;
        char in[48];
        char out[48];
};

ParameterizedTestParameters(transform, mask)
{
        static struct mask_case cases[] = {
                {0, 4, '*', true, "4111 1111 1111 1111", "**** **** **** 1111"},
                {0, 4, '*', true, "4111-1111-1111-1111", "****-****-****-1111"},
                {6, 4, '*', true, "4111 1111 1111 1111", "4111 11** **** 1111"},
                {0, 4, '*', true, "+1 (555) 123-4567", "+* (***) ***-4567"},
                /* Non-digits, even multi-byte ones, stay. */
                {0, 2, '*', true, "tél: 06 12 34 56 78", "tél: ** ** ** ** 78"},
                {0, 4, '*', true, "no digits", "no digits"},
                {0, 4, '*', true, "123", "123"},
                {0, 4, '*', false, "4111111111111111", "************1111"},
                {1, 0, '*', false, "alice@example.com", "a****************"},
                {0, 4, '#', false, "secret", "##cret"},
                {2, 3, '*', false, "+1 (415) 555-0100", "+1************100"},
                /* Code points, not bytes. */
                {0, 1, '*', false, "Zoë", "**ë"},
                {0, 2, '*', false, "日本語テキスト", "*****スト"},
                {2, 2, '*', false, "Ünïcødé", "Ün***dé"},
                {0, 1, '*', false, "a😀b😀c", "****c"},
                {1, 0, '*', false, "😀😀😀", "😀**"},
                /* Short values: nothing to mask. */
                {0, 4, '*', false, "abc", "abc"},
                {3, 3, '*', false, "abcdef", "abcdef"},
                {4, 4, '*', false, "abcdef", "abcdef"},
                {0, 0, '*', false, "abcdef", "******"},
                {0, 0, '*', false, "", ""},
                {0, 4, '*', true, "", ""},
                /* Bytes that start no well-formed sequence count alone. */
                {0, 1, '*', false,
                 "\xff\xfe"
                 "ab",
                 "***b"},
                {1, 0, '*', false, "ab\xe6\x97", "a***"},
        };
        return cr_make_param_array(struct mask_case, cases,
                                   VEIL_ARRAY_SIZE(cases));
}

ParameterizedTest(struct mask_case *c, transform, mask)
{
        struct veil_transform tx = {.kind = VEIL_TX_MASK};
        char out[64];
        size_t len = strlen(c->in), n = 0;

        tx.mask.keep_first  = c->keep_first;
        tx.mask.keep_last   = c->keep_last;
        tx.mask.mask_char   = c->mask_char;
        tx.mask.digits_only = c->digits_only;
        cr_assert_eq(veil_tx_check(&tx, NULL, 0), 0);
        memset(out, 'Z', sizeof(out));
        cr_assert_eq(
                veil_tx_mask(&tx, c->in, len, out, VEIL_TX_MASK_MAX(len), &n),
                0);
        cr_assert_leq(n, len);
        cr_assert_eq(n, strlen(c->out), "'%s' → '%.*s'", c->in, (int)n, out);
        cr_assert_arr_eq(out, c->out, n, "'%s' → '%.*s'", c->in, (int)n, out);
        if (c->digits_only)
                cr_assert_eq(n, len);
}

Test(transform, mask_rejects_bad_parameters)
{
        struct veil_transform tx = {.kind = VEIL_TX_MASK};
        char out[16], err[128] = "";
        size_t n;

        tx.mask.keep_last = 4;
        tx.mask.mask_char = '\0';
        cr_assert_eq(veil_tx_check(&tx, err, sizeof(err)), VEIL_EINVAL);
        cr_assert(strstr(err, "mask") != NULL);
        cr_assert_eq(veil_tx_mask(&tx, "abcdef", 6, out, sizeof(out), &n),
                     VEIL_EINVAL);
        tx.mask.mask_char = (char)0xc3; /* half a UTF-8 sequence */
        cr_assert_eq(veil_tx_mask(&tx, "abcdef", 6, out, sizeof(out), &n),
                     VEIL_EINVAL);
        tx.mask.mask_char = '*';
        tx.mask.keep_last = -1;
        cr_assert_eq(veil_tx_check(&tx, NULL, 0), VEIL_EINVAL);
        cr_assert_eq(veil_tx_mask(&tx, "abcdef", 6, out, sizeof(out), &n),
                     VEIL_EINVAL);
        tx.mask.keep_last = 4;
        cr_assert_eq(veil_tx_mask(&tx, "abcdef", 6, out, 5, &n), VEIL_EINVAL);
}

/* ---- generalize ------------------------------------------------------------
 */

struct bucket_case {
        int64_t v, width, want;
        int rc;
};

ParameterizedTestParameters(transform, bucket_long)
{
        static struct bucket_case cases[] = {
                {17, 10, 10, 0},
                {10, 10, 10, 0},
                {9, 10, 0, 0},
                {0, 10, 0, 0},
                {-1, 10, -10, 0},
                {-10, 10, -10, 0},
                {-11, 10, -20, 0},
                {123456789, 1000, 123456000, 0},
                {-123456789, 1000, -123457000, 0},
                {42, 1, 42, 0},
                {42, INT64_MAX, 0, 0},
                {-42, INT64_MAX, -INT64_MAX, 0},
                {INT64_MAX, 10, INT64_C(9223372036854775800), 0},
                {INT64_MIN, 1, INT64_MIN, 0},
                {INT64_MIN, 8, INT64_MIN, 0},
                /* The floor lies below INT64_MIN. */
                {INT64_MIN, 10, 0, VEIL_EDATA},
                {INT64_MIN + 5, 10, 0, VEIL_EDATA},
                {INT64_MIN + 8, 10, INT64_C(-9223372036854775800), 0},
                {-42, INT64_MAX, -INT64_MAX, 0},
                {INT64_MIN, INT64_MAX, 0, VEIL_EDATA},
                {5, 0, 0, VEIL_EINVAL},
                {5, -3, 0, VEIL_EINVAL},
        };
        return cr_make_param_array(struct bucket_case, cases,
                                   VEIL_ARRAY_SIZE(cases));
}

ParameterizedTest(struct bucket_case *c, transform, bucket_long)
{
        int64_t out = 12345;
        int rc      = veil_tx_bucket_long(c->v, c->width, &out);

        cr_assert_eq(rc, c->rc, "%lld / %lld", (long long)c->v,
                     (long long)c->width);
        if (!rc)
                cr_assert_eq(out, c->want, "%lld / %lld → %lld",
                             (long long)c->v, (long long)c->width,
                             (long long)out);
}

/* Property: the bucket is the largest multiple of width ≤ v. */
Test(transform, bucket_long_is_the_floor_multiple)
{
        static const int64_t widths[] = {1, 2, 3, 7, 10, 100, 1000, 86400};
        int64_t v, out;
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(widths); i++) {
                for (v = -2000; v <= 2000; v++) {
                        cr_assert_eq(veil_tx_bucket_long(v, widths[i], &out),
                                     0);
                        cr_assert_eq(out % widths[i], 0);
                        cr_assert(out <= v && v < out + widths[i],
                                  "%lld w %lld → %lld", (long long)v,
                                  (long long)widths[i], (long long)out);
                }
        }
}

Test(transform, bucket_int)
{
        int32_t out = 0;

        cr_assert_eq(veil_tx_bucket_int(-1, 10, &out), 0);
        cr_assert_eq(out, -10);
        cr_assert_eq(veil_tx_bucket_int(37, 5, &out), 0);
        cr_assert_eq(out, 35);
        cr_assert_eq(veil_tx_bucket_int(INT32_MAX, 10, &out), 0);
        cr_assert_eq(out, 2147483640);
        cr_assert_eq(veil_tx_bucket_int(INT32_MIN, 2, &out), 0);
        cr_assert_eq(out, INT32_MIN);
        cr_assert_eq(veil_tx_bucket_int(INT32_MIN, 10, &out), VEIL_EDATA);
        cr_assert_eq(veil_tx_bucket_int(42, INT64_C(1) << 40, &out), 0);
        cr_assert_eq(out, 0);
        cr_assert_eq(veil_tx_bucket_int(-42, INT64_C(1) << 40, &out),
                     VEIL_EDATA);
        cr_assert_eq(veil_tx_bucket_int(1, 0, &out), VEIL_EINVAL);
}

Test(transform, bucket_double_and_float)
{
        double d = 0;
        float f  = 0;

        cr_assert_eq(veil_tx_bucket_double(17.5, 10, &d), 0);
        cr_assert_eq(d, 10.0);
        cr_assert_eq(veil_tx_bucket_double(-0.5, 10, &d), 0);
        cr_assert_eq(d, -10.0);
        cr_assert_eq(veil_tx_bucket_double(-10.0, 10, &d), 0);
        cr_assert_eq(d, -10.0);
        cr_assert_eq(veil_tx_bucket_double(0.0, 10, &d), 0);
        cr_assert_eq(d, 0.0);
        cr_assert_eq(veil_tx_bucket_double(1234.5678, 1000, &d), 0);
        cr_assert_eq(d, 1000.0);
        cr_assert_eq(veil_tx_bucket_double(1e300, 10, &d), 0);
        cr_assert(d <= 1e300 && d > 0.99e300);
        cr_assert_eq(veil_tx_bucket_double(NAN, 10, &d), 0);
        cr_assert(isnan(d));
        cr_assert_eq(veil_tx_bucket_double(-INFINITY, 10, &d), 0);
        cr_assert(isinf(d) && d < 0);
        cr_assert_eq(veil_tx_bucket_double(1.0, 0, &d), VEIL_EINVAL);

        cr_assert_eq(veil_tx_bucket_float(17.5f, 10, &f), 0);
        cr_assert_eq(f, 10.0f);
        cr_assert_eq(veil_tx_bucket_float(-0.5f, 10, &f), 0);
        cr_assert_eq(f, -10.0f);
        cr_assert_eq(veil_tx_bucket_float(INFINITY, 10, &f), 0);
        cr_assert(isinf(f));
        cr_assert_eq(veil_tx_bucket_float(1.0f, -1, &f), VEIL_EINVAL);
}

/* Property over doubles: out ≤ v < out + width, out a multiple of width. */
Test(transform, bucket_double_is_the_floor_multiple)
{
        double v, out;
        int i;

        for (i = -5000; i <= 5000; i++) {
                v = i * 0.37;
                cr_assert_eq(veil_tx_bucket_double(v, 10, &out), 0);
                cr_assert(out <= v && v < out + 10, "%g → %g", v, out);
                cr_assert_eq(fmod(out, 10), 0.0);
        }
}

struct date_case {
        int32_t days;
        int32_t year;
};

ParameterizedTestParameters(transform, year_from_days)
{
        static struct date_case cases[] = {
                {0, 1970},        /* 1970-01-01 */
                {-1, 1969},       /* 1969-12-31 */
                {11016, 2000},    /* 2000-02-29 */
                {11017, 2000},    /* 2000-03-01 */
                {10956, 1999},    /* 1999-12-31 */
                {10957, 2000},    /* 2000-01-01 */
                {-365, 1969},     /* 1969-01-01 */
                {-366, 1968},     /* 1968-12-31 */
                {-25509, 1900},   /* 1900-02-28 */
                {-25508, 1900},   /* 1900-03-01 (1900 is no leap year) */
                {-719162, 1},     /* 0001-01-01 */
                {-719163, 0},     /* 0000-12-31 (1 BC) */
                {2932896, 9999},  /* 9999-12-31 */
                {2932897, 10000}, /* 10000-01-01 */
                {INT32_MAX, 5881580},
                {INT32_MIN, -5877641},
        };
        return cr_make_param_array(struct date_case, cases,
                                   VEIL_ARRAY_SIZE(cases));
}

ParameterizedTest(struct date_case *c, transform, year_from_days)
{
        cr_assert_eq(veil_tx_year_from_days(c->days), c->year, "day %d → %d",
                     c->days, veil_tx_year_from_days(c->days));
}

/* Every 3rd day from year -200 to 12000 against the C library. */
Test(transform, year_from_days_matches_gmtime)
{
        struct tm tm;
        time_t t;
        int32_t d;

        for (d = -800000; d <= 3700000; d += 3) {
                t = (time_t)d * 86400;
                cr_assert_not_null(gmtime_r(&t, &tm));
                cr_assert_eq(veil_tx_year_from_days(d), tm.tm_year + 1900,
                             "day %d", d);
        }
}

Test(transform, year_from_timestamps)
{
        /* 2000-02-29T23:59:59.999 and one millisecond later. */
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(951868799999),
                                                 VEIL_TX_MILLIS_PER_DAY),
                     2000);
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(946684799999),
                                                 VEIL_TX_MILLIS_PER_DAY),
                     1999);
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(946684800000),
                                                 VEIL_TX_MILLIS_PER_DAY),
                     2000);
        cr_assert_eq(veil_tx_year_from_timestamp(0, VEIL_TX_MILLIS_PER_DAY),
                     1970);
        cr_assert_eq(veil_tx_year_from_timestamp(-1, VEIL_TX_MILLIS_PER_DAY),
                     1969);
        cr_assert_eq(veil_tx_year_from_timestamp(-1, VEIL_TX_MICROS_PER_DAY),
                     1969);
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(946684800000000),
                                                 VEIL_TX_MICROS_PER_DAY),
                     2000);
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(946684799999999),
                                                 VEIL_TX_MICROS_PER_DAY),
                     1999);
        cr_assert_eq(veil_tx_year_from_timestamp(INT64_C(946684800000000000),
                                                 VEIL_TX_NANOS_PER_DAY),
                     2000);
        /* The extremes (java.time agrees: -292275055-05-16 and
         * +292278994-08-17 for millis). */
        cr_assert_eq(
                veil_tx_year_from_timestamp(INT64_MIN, VEIL_TX_MILLIS_PER_DAY),
                -292275055);
        cr_assert_eq(
                veil_tx_year_from_timestamp(INT64_MAX, VEIL_TX_MILLIS_PER_DAY),
                292278994);
        cr_assert_eq(
                veil_tx_year_from_timestamp(INT64_MIN, VEIL_TX_MICROS_PER_DAY),
                -290308);
        cr_assert_eq(
                veil_tx_year_from_timestamp(INT64_MAX, VEIL_TX_MICROS_PER_DAY),
                294247);
}

struct prefix_case {
        int prefix;
        char in[32];
        char out[32];
};

ParameterizedTestParameters(transform, prefix)
{
        static struct prefix_case cases[] = {
                {1, "Zürich", "Z"},
                {2, "Zürich", "Zü"},
                {3, "Zürich", "Zür"},
                {10, "abc", "abc"},
                {1, "", ""},
                {1, "日本語", "日"},
                {2, "a😀b", "a😀"},
                {2,
                 "\xff\xfe"
                 "ab",
                 "\xff\xfe"},
                {0, "abc", ""},
        };
        return cr_make_param_array(struct prefix_case, cases,
                                   VEIL_ARRAY_SIZE(cases));
}

ParameterizedTest(struct prefix_case *c, transform, prefix)
{
        char out[32];
        size_t len = strlen(c->in), n = 99;

        cr_assert_eq(veil_tx_prefix_len(c->in, len, c->prefix), strlen(c->out));
        cr_assert_eq(
                veil_tx_prefix(c->in, len, c->prefix, out, sizeof(out), &n), 0);
        cr_assert_eq(n, strlen(c->out));
        cr_assert_arr_eq(out, c->out, n);
}

Test(transform, check_generalize_and_encrypt_parameters)
{
        struct veil_transform tx = {.kind = VEIL_TX_GENERALIZE};
        char err[128]            = "";

        tx.generalize.width  = 10;
        tx.generalize.prefix = 1;
        cr_assert_eq(veil_tx_check(&tx, err, sizeof(err)), 0);
        tx.generalize.width = 0;
        cr_assert_eq(veil_tx_check(&tx, err, sizeof(err)), VEIL_EINVAL);
        cr_assert(strstr(err, "width") != NULL);
        tx.generalize.width  = 10;
        tx.generalize.prefix = 0; /* legal: an empty string */
        cr_assert_eq(veil_tx_check(&tx, err, sizeof(err)), 0);
        tx.generalize.prefix = -1;
        cr_assert_eq(veil_tx_check(&tx, err, sizeof(err)), VEIL_EINVAL);
        cr_assert(strstr(err, "prefix") != NULL);

        tx.kind = VEIL_TX_ENCRYPT;
        cr_assert_eq(veil_tx_check(&tx, NULL, 0), 0);
        tx.encrypt.mode = (enum veil_encrypt_mode)7;
        cr_assert_eq(veil_tx_check(&tx, NULL, 0), VEIL_EINVAL);
        tx.kind = VEIL_TX_KEEP;
        cr_assert_eq(veil_tx_check(&tx, NULL, 0), 0);
}

/* ---- encrypt / reveal ------------------------------------------------------
 */

static size_t encrypt(struct veil_tx_keys *keys, enum veil_encrypt_mode mode,
                      enum veil_encrypt_output output, const void *v,
                      size_t len, unsigned char *out, size_t cap)
{
        size_t n = 0;

        cr_assert_geq(cap, VEIL_TX_ENCRYPT_MAX(len));
        cr_assert_eq(veil_tx_encrypt(keys, mode, output, v, len, out, cap, &n),
                     0);
        cr_assert_eq(n, veil_tx_encrypt_len(keys, mode, output, len));
        cr_assert_leq(n, VEIL_TX_ENCRYPT_MAX(len));
        return n;
}

static void expect_reveal(struct veil_tx_keys *keys, const unsigned char *tok,
                          size_t n, const void *want, size_t want_len)
{
        unsigned char out[512];
        char err[256] = "";
        size_t m      = 0;

        cr_assert_leq(n, sizeof(out));
        cr_assert_eq(veil_tx_reveal(keys, tok, n, out, n, &m, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(m, want_len);
        cr_assert_arr_eq(out, want, m);
}

Test(transform, siv_tokens_are_deterministic_and_reveal)
{
        unsigned char t1[256], t2[256], t3[256];
        struct veil_tx_keys keys;
        size_t n1, n2, n3, i;

        keys_for(&keys, "k1", "support", false);
        n1 = encrypt(&keys, VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                     "alice@example.com", 17, t1, sizeof(t1));
        n2 = encrypt(&keys, VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                     "alice@example.com", 17, t2, sizeof(t2));
        n3 = encrypt(&keys, VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                     "bob@example.com", 15, t3, sizeof(t3));
        cr_assert_eq(n1, n2);
        cr_assert_arr_eq(t1, t2, n1, "equal values stay joinable");
        cr_assert(n1 != n3 || memcmp(t1, t3, n1) != 0);
        cr_assert_arr_eq(t1, "k1:s:", 5);
        cr_assert_eq(n1, 5 + VEIL_B64URL_LEN(16 + 17));
        for (i = 5; i < n1; i++)
                cr_assert(b64url_char((char)t1[i]));
        expect_reveal(&keys, t1, n1, "alice@example.com", 17);
        expect_reveal(&keys, t3, n3, "bob@example.com", 15);
        veil_tx_keys_destroy(&keys);
}

Test(transform, gcm_tokens_are_random_and_reveal)
{
        unsigned char t1[256], t2[256];
        struct veil_tx_keys keys;
        size_t n1, n2;

        keys_for(&keys, "k1", "support", false);
        n1 = encrypt(&keys, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                     "4111 1111 1111 1111", 19, t1, sizeof(t1));
        n2 = encrypt(&keys, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                     "4111 1111 1111 1111", 19, t2, sizeof(t2));
        cr_assert_eq(n1, n2);
        cr_assert(memcmp(t1, t2, n1) != 0);
        cr_assert_arr_eq(t1, "k1:e:", 5);
        cr_assert_eq(n1, 5 + VEIL_B64URL_LEN(16 + 12 + 19 + 16));
        expect_reveal(&keys, t1, n1, "4111 1111 1111 1111", 19);
        expect_reveal(&keys, t2, n2, "4111 1111 1111 1111", 19);
        veil_tx_keys_destroy(&keys);
}

/* The salt of an 'e' token (its first 16 sealed bytes). */
static void token_salt(const unsigned char *tok, size_t n,
                       unsigned char salt[16])
{
        unsigned char raw[256];
        size_t len;

        cr_assert_eq(veil_b64url_decode((const char *)tok + 5, n - 5, raw,
                                        sizeof(raw), &len),
                     0);
        memcpy(salt, raw, 16);
}

Test(transform, gcm_keys_differ_per_worker_and_epoch_but_all_reveal)
{
        unsigned char t1[256], t2[256], t3[256], s1[16], s2[16], s3[16];
        struct veil_tx_keys a, b;
        size_t n1, n2, n3;

        /* Two workers (or one restarted) with the same master key. */
        keys_for(&a, "k1", "support", false);
        keys_for(&b, "k1", "support", false);
        n1 = encrypt(&a, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING, "v", 1, t1,
                     sizeof(t1));
        n2 = encrypt(&b, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING, "v", 1, t2,
                     sizeof(t2));
        token_salt(t1, n1, s1);
        token_salt(t2, n2, s2);
        cr_assert(memcmp(s1, s2, 16) != 0, "two workers share a GCM key");
        expect_reveal(&a, t2, n2, "v", 1);
        expect_reveal(&b, t1, n1, "v", 1);
        /* An epoch ends after VEIL_GCM_EPOCH_MAX messages. */
        a.gcm_ep.sealed = VEIL_GCM_EPOCH_MAX - 1;
        n3 = encrypt(&a, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING, "w", 1, t3,
                     sizeof(t3));
        token_salt(t3, n3, s3);
        cr_assert(memcmp(s1, s3, 16) == 0, "the epoch ended early");
        n3 = encrypt(&a, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING, "w", 1, t3,
                     sizeof(t3));
        token_salt(t3, n3, s3);
        cr_assert(memcmp(s1, s3, 16) != 0, "no new epoch at the bound");
        cr_assert_eq(a.gcm_ep.sealed, 1);
        expect_reveal(&a, t1, n1, "v", 1);
        expect_reveal(&b, t3, n3, "w", 1);
        veil_tx_keys_destroy(&a);
        veil_tx_keys_destroy(&b);
}

Test(transform, version_1_gcm_tokens_still_reveal)
{
        unsigned char sealed[64], tok[128], bytes[128];
        struct veil_tx_keys keys;
        size_t n, b;

        /* A 'g' token as Veil made them before epochs: the purpose's GCM
         * key itself. */
        keys_for(&keys, "k1", "support", false);
        cr_assert_eq(
                veil_aead_seal(&keys.gcm, "old", 3, sealed, sizeof(sealed), &n),
                0);
        memcpy(tok, "k1:g:", 5);
        cr_assert_eq(veil_b64url_encode(sealed, n, (char *)tok + 5,
                                        sizeof(tok) - 5, &b),
                     0);
        expect_reveal(&keys, tok, 5 + b, "old", 3);
        bytes[0] = VEIL_TX_ENC_BYTES_GCM;
        bytes[1] = 2;
        memcpy(bytes + 2, "k1", 2);
        memcpy(bytes + 4, sealed, n);
        expect_reveal(&keys, bytes, 4 + n, "old", 3);
        veil_tx_keys_destroy(&keys);
}

Test(transform, bytes_tokens_round_trip)
{
        static const unsigned char value[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
        enum veil_encrypt_mode modes[] = {VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_GCM};
        unsigned char tok[128];
        struct veil_tx_keys keys;
        size_t n, i;

        keys_for(&keys, "key-2024", "ml", false);
        for (i = 0; i < VEIL_ARRAY_SIZE(modes); i++) {
                n = encrypt(&keys, modes[i], VEIL_ENCRYPT_OUT_BYTES, value,
                            sizeof(value), tok, sizeof(tok));
                cr_assert_eq(tok[0], modes[i] == VEIL_ENCRYPT_SIV
                                             ? VEIL_TX_ENC_BYTES_SIV
                                             : VEIL_TX_ENC_BYTES_GCM_EPOCH);
                cr_assert_eq(tok[1], 8);
                cr_assert_arr_eq(tok + 2, "key-2024", 8);
                expect_reveal(&keys, tok, n, value, sizeof(value));
        }
        veil_tx_keys_destroy(&keys);
}

Test(transform, every_length_round_trips_in_both_forms)
{
        enum veil_encrypt_mode modes[]  = {VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_GCM};
        enum veil_encrypt_output outs[] = {VEIL_ENCRYPT_OUT_STRING,
                                           VEIL_ENCRYPT_OUT_BYTES};
        unsigned char value[200], tok[VEIL_TX_ENCRYPT_MAX(200)];
        struct veil_tx_keys keys;
        size_t len, n, i, j;

        for (len = 0; len < sizeof(value); len++)
                value[len] = (unsigned char)(len * 37 + 11);
        keys_for(&keys, "k1", "p", false);
        for (len = 0; len <= sizeof(value); len += 1 + len / 8)
                for (i = 0; i < 2; i++)
                        for (j = 0; j < 2; j++) {
                                n = encrypt(&keys, modes[i], outs[j], value,
                                            len, tok, sizeof(tok));
                                expect_reveal(&keys, tok, n, value, len);
                        }
        veil_tx_keys_destroy(&keys);
}

Test(transform, reveal_names_a_key_id_mismatch)
{
        unsigned char tok[256], out[256];
        struct veil_tx_keys old, cur;
        char err[256] = "";
        size_t n, m;

        keys_for(&old, "k0", "support", false);
        keys_for(&cur, "k1", "support", false);
        n = encrypt(&old, VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING, "v", 1,
                    tok, sizeof(tok));
        cr_assert_eq(veil_tx_reveal(&cur, tok, n, out, sizeof(out), &m, err,
                                    sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "'k0'") && strstr(err, "'k1'"), "%s", err);
        cr_assert(strstr(err, "key id") != NULL, "%s", err);

        n = encrypt(&old, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_BYTES, "v", 1, tok,
                    sizeof(tok));
        cr_assert_eq(veil_tx_reveal(&cur, tok, n, out, sizeof(out), &m, err,
                                    sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "'k0'") != NULL, "%s", err);
        veil_tx_keys_destroy(&old);
        veil_tx_keys_destroy(&cur);
}

Test(transform, reveal_refuses_other_purposes_and_tampering)
{
        enum veil_encrypt_mode modes[] = {VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_GCM};
        unsigned char tok[256], bad[256], out[256];
        struct veil_tx_keys mine, other;
        char err[256];
        size_t n, m, i, k;
        int rc;

        keys_for(&mine, "k1", "support", false);
        keys_for(&other, "k1", "analytics", false);
        for (k = 0; k < VEIL_ARRAY_SIZE(modes); k++) {
                n      = encrypt(&mine, modes[k], VEIL_ENCRYPT_OUT_STRING,
                                 "alice@example.com", 17, tok, sizeof(tok));
                err[0] = '\0';
                cr_assert_eq(veil_tx_reveal(&other, tok, n, out, sizeof(out),
                                            &m, err, sizeof(err)),
                             VEIL_EDATA);
                cr_assert(strstr(err, "authenticate") != NULL, "%s", err);
                cr_assert(strstr(err, "alice") == NULL);
                /* Every character of the base64 part changed to another
                 * alphabet character: refused, as malformed or forged. */
                for (i = 5; i < n; i++) {
                        memcpy(bad, tok, n);
                        bad[i] = bad[i] == 'A' ? 'B' : 'A';
                        memset(out, 0, sizeof(out));
                        rc = veil_tx_reveal(&mine, bad, n, out, sizeof(out), &m,
                                            err, sizeof(err));
                        cr_assert(rc == VEIL_EDATA || rc == VEIL_EINVAL,
                                  "position %zu: rc %d", i, rc);
                        cr_assert(memmem(out, sizeof(out), "alice", 5) == NULL);
                }
        }
        veil_tx_keys_destroy(&mine);
        veil_tx_keys_destroy(&other);
}

Test(transform, reveal_rejects_garbage)
{
        static const struct {
                const char *tok;
                size_t len;
        } bad[] = {
                {"", 0},
                {"k1", 2},
                {"k1:", 3},
                {"k1:s", 4},
                {"k1:s:", 5}, /* no sealed bytes at all */
                {"k1:x:AAAA", 9},
                {":s:AAAA", 7},
                {"k1:s:A", 6},
                {"k1:s:AA=", 8},
                {"k1:s:AAAAAAAAAAAAAAAAAAAA", 25}, /* 15 bytes < V */
                {"k1:g:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 41}, /* 27 */
                {"\x01", 1},
                {"\x01\x05k1", 4},
                {"\x01\x00", 2},
                {"\x02\x02k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 35},
        };
        struct veil_tx_keys keys;
        unsigned char out[64];
        char err[256];
        size_t m, i;

        keys_for(&keys, "k1", "p", false);
        for (i = 0; i < VEIL_ARRAY_SIZE(bad); i++) {
                err[0] = '\0';
                cr_expect_eq(veil_tx_reveal(&keys, bad[i].tok, bad[i].len, out,
                                            sizeof(out), &m, err, sizeof(err)),
                             VEIL_EINVAL, "case %zu", i);
                cr_expect_neq(err[0], '\0', "case %zu", i);
        }
        veil_tx_keys_destroy(&keys);
}

Test(transform, encrypt_checks_cap)
{
        struct veil_tx_keys keys;
        unsigned char tok[64];
        size_t n, need;

        keys_for(&keys, "k1", "p", false);
        need = veil_tx_encrypt_len(&keys, VEIL_ENCRYPT_SIV,
                                   VEIL_ENCRYPT_OUT_STRING, 10);
        cr_assert_eq(veil_tx_encrypt(&keys, VEIL_ENCRYPT_SIV,
                                     VEIL_ENCRYPT_OUT_STRING, "0123456789", 10,
                                     tok, need - 1, &n),
                     VEIL_EINVAL);
        cr_assert_eq(veil_tx_encrypt(&keys, VEIL_ENCRYPT_SIV,
                                     VEIL_ENCRYPT_OUT_STRING, "0123456789", 10,
                                     tok, need, &n),
                     0);
        cr_assert_eq(n, need);
        veil_tx_keys_destroy(&keys);
}

/* ---- dispatch
 * ----------------------------------------------------------------- */

Test(transform, string_dispatch)
{
        struct veil_transform tx = {.kind = VEIL_TX_HASH};
        unsigned char out[256];
        struct veil_tx_keys keys;
        size_t n;

        keys_for(&keys, "k1", "p", false);
        cr_assert_eq(veil_tx_string(&keys, &tx, "v", 1, out,
                                    veil_tx_string_max(&keys, &tx, 1), &n),
                     0);
        cr_assert_eq(n, veil_tx_hash_len(&keys));

        tx.kind           = VEIL_TX_MASK;
        tx.mask.keep_last = 2;
        tx.mask.mask_char = '*';
        cr_assert_eq(veil_tx_string(&keys, &tx, "secret", 6, out,
                                    veil_tx_string_max(&keys, &tx, 6), &n),
                     0);
        cr_assert_arr_eq(out, "****et", 6);

        tx.kind              = VEIL_TX_GENERALIZE;
        tx.generalize.prefix = 3;
        cr_assert_eq(veil_tx_string(&keys, &tx, "75001", 5, out,
                                    veil_tx_string_max(&keys, &tx, 5), &n),
                     0);
        cr_assert_eq(n, 3);
        cr_assert_arr_eq(out, "750", 3);

        tx.kind           = VEIL_TX_ENCRYPT;
        tx.encrypt.mode   = VEIL_ENCRYPT_SIV;
        tx.encrypt.output = VEIL_ENCRYPT_OUT_STRING;
        cr_assert_eq(veil_tx_string(&keys, &tx, "v", 1, out,
                                    veil_tx_string_max(&keys, &tx, 1), &n),
                     0);
        expect_reveal(&keys, out, n, "v", 1);

        tx.kind = VEIL_TX_KEEP;
        cr_assert_eq(veil_tx_string(&keys, &tx, "v", 1, out, sizeof(out), &n),
                     VEIL_ETYPE);
        tx.kind = VEIL_TX_REDACT_TEXT;
        cr_assert_eq(veil_tx_string(&keys, &tx, "v", 1, out, sizeof(out), &n),
                     VEIL_ETYPE);
        veil_tx_keys_destroy(&keys);
}

/* ---- veil reveal ----------------------------------------------------------
 */

/* A pipeline in a fresh directory: two purposes, key id k7, a 40-byte key
 * file. Tokens are made with the keys the loaded config derives. */
static char reveal_dir[64];
static char reveal_cfg[128];
static struct veil_config *reveal_config;

static void write_file(const char *path, const char *text)
{
        FILE *fp = fopen(path, "w");

        cr_assert_not_null(fp, "%s", path);
        cr_assert_eq(fputs(text, fp) >= 0, 1);
        cr_assert_eq(fclose(fp), 0);
}

static void reveal_setup(void)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        char path[160], err[1024] = "";

        unsetenv("VEIL_HMAC_KEY");
        strcpy(reveal_dir, "/tmp/veil-reveal-XXXXXX");
        cr_assert_not_null(mkdtemp(reveal_dir));
        snprintf(path, sizeof(path), "%s/k.key", reveal_dir);
        write_file(path, "reveal-test-master-key-0123456789abcdef\n");
        cr_assert_eq(chmod(path, 0600), 0);
        snprintf(reveal_cfg, sizeof(reveal_cfg), "%s/veil.yaml", reveal_dir);
        write_file(reveal_cfg,
                   "kafka: { bootstrap.servers: 127.0.0.1:9092 }\n"
                   "registry: { url: file://. }\n"
                   "keys: { hmac_key_file: k.key, key_id: k7 }\n"
                   "classes: { email: { tier: confidential } }\n"
                   "purposes:\n"
                   "  support:\n"
                   "    license: { id: L1, valid_until: 2099-12-31 }\n"
                   "    retention: 1d\n"
                   "    transforms: { email: encrypt }\n"
                   "  analytics:\n"
                   "    license: { id: L2, valid_until: 2099-12-31 }\n"
                   "    retention: 1d\n"
                   "    transforms: { email: hash }\n"
                   "routes:\n"
                   "  - source: customers\n"
                   "    purposes: { support: customers.support,\n"
                   "                analytics: customers.analytics }\n");
        reveal_config = veil_config_load(reveal_cfg, &opts, err, sizeof(err));
        cr_assert_not_null(reveal_config, "%s", err);
        cr_redirect_stdout();
        cr_redirect_stderr();
}

static void reveal_teardown(void)
{
        char path[160];

        veil_config_destroy(reveal_config);
        snprintf(path, sizeof(path), "%s/k.key", reveal_dir);
        unlink(path);
        unlink(reveal_cfg);
        rmdir(reveal_dir);
}

TestSuite(reveal, .init = reveal_setup, .fini = reveal_teardown);

/* A NUL-terminated string token (or hex of the bytes form). */
static void make_token(const char *purpose, const char *key_id,
                       enum veil_encrypt_mode mode,
                       enum veil_encrypt_output output, const char *value,
                       char *tok, size_t cap)
{
        unsigned char raw[256];
        struct veil_tx_keys keys;
        char err[256] = "";
        size_t n, i;

        cr_assert_eq(veil_tx_keys_init(&keys, reveal_config->keys.key,
                                       reveal_config->keys.key_len, key_id,
                                       purpose, false, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_tx_encrypt(&keys, mode, output, value, strlen(value),
                                     raw, sizeof(raw), &n),
                     0);
        if (output == VEIL_ENCRYPT_OUT_BYTES) {
                cr_assert_lt(2 * n, cap);
                for (i = 0; i < n; i++)
                        sprintf(tok + 2 * i, "%02x", raw[i]);
        } else {
                cr_assert_lt(n, cap);
                memcpy(tok, raw, n);
                tok[n] = '\0';
        }
        veil_tx_keys_destroy(&keys);
}

static int run_reveal(int argc, char **argv)
{
        int rc = veil_cmd_reveal(argc, argv);

        fflush(stdout);
        fflush(stderr);
        return rc;
}

/* stderr so far, for message checks. */
static void stderr_text(char *buf, size_t cap)
{
        FILE *fp = cr_get_redirected_stderr();
        size_t n;

        fflush(stderr);
        n      = fread(buf, 1, cap - 1, fp);
        buf[n] = '\0';
}

Test(reveal, prints_the_value_of_any_purposes_token)
{
        char tok[256];
        char *argv[] = {"reveal", "-c", reveal_cfg, tok, NULL};

        make_token("analytics", "k7", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                   "alice@example.com", tok, sizeof(tok));
        cr_assert_eq(run_reveal(4, argv), 0);
        cr_assert_stdout_eq_str("alice@example.com\n");
}

Test(reveal, purpose_option_and_gcm)
{
        char tok[256];
        char *argv[] = {"reveal",   "--purpose", "support", "-c",
                        reveal_cfg, tok,         NULL};

        make_token("support", "k7", VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                   "4111 1111 1111 1111", tok, sizeof(tok));
        cr_assert_eq(run_reveal(6, argv), 0);
        cr_assert_stdout_eq_str("4111 1111 1111 1111\n");
}

Test(reveal, bytes_form_in_hex)
{
        char tok[512];
        char *argv[] = {"reveal", "-c", reveal_cfg, "--hex", tok, NULL};

        make_token("support", "k7", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_BYTES,
                   "raw", tok, sizeof(tok));
        cr_assert_eq(run_reveal(5, argv), 0);
        cr_assert_stdout_eq_str("raw\n");
}

Test(reveal, wrong_purpose_fails_with_exit_1)
{
        char tok[256], err[1024];
        char *argv[] = {"reveal",    "-c", reveal_cfg, "-p",
                        "analytics", tok,  NULL};

        make_token("support", "k7", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                   "alice@example.com", tok, sizeof(tok));
        cr_assert_eq(run_reveal(6, argv), 1);
        stderr_text(err, sizeof(err));
        cr_assert(strstr(err, "does not authenticate") != NULL, "%s", err);
        cr_assert(strstr(err, "alice") == NULL);
}

Test(reveal, key_id_mismatch_fails_with_exit_1)
{
        char tok[256], err[1024];
        char *argv[] = {"reveal", "-c", reveal_cfg, tok, NULL};

        make_token("support", "k6", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                   "v", tok, sizeof(tok));
        cr_assert_eq(run_reveal(4, argv), 1);
        stderr_text(err, sizeof(err));
        cr_assert(strstr(err, "key id 'k6'") && strstr(err, "'k7'"), "%s", err);
}

Test(reveal, garbled_token_fails_with_exit_1)
{
        char tok[256], err[1024];
        char *argv[] = {"reveal", "-c", reveal_cfg, tok, NULL};

        make_token("support", "k7", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                   "v", tok, sizeof(tok));
        tok[8] = tok[8] == 'x' ? 'y' : 'x';
        cr_assert_eq(run_reveal(4, argv), 1);
        strcpy(tok, "not-a-token");
        cr_assert_eq(run_reveal(4, argv), 1);
        stderr_text(err, sizeof(err));
        cr_assert(strstr(err, "not a Veil encrypt token") != NULL, "%s", err);
}

Test(reveal, usage_errors_exit_2)
{
        char *no_config[]  = {"reveal", "k7:s:AAAA", NULL};
        char *no_token[]   = {"reveal", "-c", reveal_cfg, NULL};
        char *two_tokens[] = {"reveal", "-c", reveal_cfg, "a", "b", NULL};
        char *bad_opt[]    = {"reveal", "--nope", NULL};
        char *bad_hex[]    = {"reveal", "-c", reveal_cfg, "--hex", "abc", NULL};
        char *bad_purpose[] = {"reveal", "-c",        reveal_cfg, "-p",
                               "suport", "k7:s:AAAA", NULL};
        char *no_file[] = {"reveal", "-c", "/nonexistent/veil.yaml", "x", NULL};
        char err[2048];

        cr_assert_eq(run_reveal(2, no_config), 2);
        cr_assert_eq(run_reveal(3, no_token), 2);
        cr_assert_eq(run_reveal(5, two_tokens), 2);
        cr_assert_eq(run_reveal(2, bad_opt), 2);
        cr_assert_eq(run_reveal(5, bad_hex), 2);
        cr_assert_eq(run_reveal(6, bad_purpose), 2);
        cr_assert_eq(run_reveal(4, no_file), 2);
        stderr_text(err, sizeof(err));
        cr_assert(strstr(err, "did you mean 'support'") != NULL, "%s", err);
        cr_assert(strstr(err, "usage: veil reveal") != NULL, "%s", err);
}

Test(reveal, help_exits_0)
{
        char *argv[] = {"reveal", "--help", NULL};

        cr_assert_eq(run_reveal(2, argv), 0);
        fflush(stdout);
        cr_assert_stdout_neq_str("");
}
