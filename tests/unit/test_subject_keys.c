/* test_subject_keys.c - crypto-shredding: wrap/unwrap, per-subject token
 * format, SIV equality per subject, the store's LRU bound and rollback. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "keyring.h"
#include "subject_keys.h"
#include "veil.h"

static unsigned char k1[] = "unit-test-master-key-one-0123456789abcdef";
static unsigned char k2[] = "unit-test-master-key-two-0123456789abcdef";
static struct veil_key ring[2];
static struct veil_config config;

static void setup(void)
{
        memset(&config, 0, sizeof(config));
        ring[0].id         = "k1";
        ring[0].key        = k1;
        ring[0].len        = sizeof(k1) - 1;
        ring[1].id         = "k2";
        ring[1].key        = k2;
        ring[1].len        = sizeof(k2) - 1;
        config.keys.ring   = ring;
        config.keys.n_ring = 2;
        config.keys.key_id = "k1";
        config.keys.key    = k1;
}

TestSuite(subject_keys, .init = setup);

Test(subject_keys, wrap_unwraps_only_at_its_own_ref)
{
        unsigned char ref[16] = {1}, other[16] = {2}, key[32], back[32];
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        size_t n;
        char err[256];

        memset(key, 0x5a, sizeof(key));
        cr_assert_eq(veil_subject_wrap(&config, "k2", ref, key, blob,
                                       sizeof(blob), &n, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(n, 2 + 2 + VEIL_SUBJECT_SEALED_LEN);
        cr_assert_eq(blob[0], VEIL_SUBJECT_WRAP_VERSION);
        cr_assert(!memcmp(blob + 2, "k2", 2));
        cr_assert_eq(veil_subject_unwrap(&config, ref, blob, n, back, err,
                                         sizeof(err)),
                     0, "%s", err);
        cr_assert(!memcmp(back, key, 32));
        /* moved to another record key */
        cr_assert_eq(veil_subject_unwrap(&config, other, blob, n, back, err,
                                         sizeof(err)),
                     VEIL_EDATA);
        /* tampered */
        blob[n - 1] ^= 1;
        cr_assert_eq(veil_subject_unwrap(&config, ref, blob, n, back, err,
                                         sizeof(err)),
                     VEIL_EDATA);
        blob[n - 1] ^= 1;
        /* truncated, and a key id the ring lacks */
        cr_assert_eq(veil_subject_unwrap(&config, ref, blob, n - 1, back, err,
                                         sizeof(err)),
                     VEIL_EINVAL);
        ring[1].id = "k9";
        cr_assert_eq(veil_subject_unwrap(&config, ref, blob, n, back, err,
                                         sizeof(err)),
                     VEIL_ENOTFOUND);
}

/* A token of `value` for subject `subj` through the store. */
static size_t token(struct veil_subject_keys *sk, const char *subj,
                    const char *value, enum veil_encrypt_mode mode,
                    enum veil_encrypt_output output, char *out, size_t cap)
{
        unsigned char key[32], ref[16];
        struct veil_subject_cipher c;
        const char *kid;
        size_t n;
        char err[256];

        memset(&c, 0, sizeof(c));
        cr_assert_eq(veil_subject_keys_get(sk, "customers", subj, strlen(subj),
                                           key, ref, &kid, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_subject_cipher_key(&c, key, ref, kid, "marketing",
                                             err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_subject_encrypt(&c, mode, output, value,
                                          strlen(value), out, cap, &n),
                     0);
        cr_assert_eq(n,
                     veil_subject_encrypt_len(&c, mode, output, strlen(value)));
        veil_subject_cipher_clear(&c);
        return n;
}

Test(subject_keys, siv_tokens_equal_within_a_subject_only_and_open)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 8, NULL, 0);
        char a1[256], a2[256], b[256], out[256];
        unsigned char buf[256], key[32], ref[16];
        size_t na1, na2, nb, n;
        struct veil_subject_token t;
        const char *kid;
        char err[256];

        cr_assert(sk);
        na1 = token(sk, "alice", "x@example.com", VEIL_ENCRYPT_SIV,
                    VEIL_ENCRYPT_OUT_STRING, a1, sizeof(a1));
        na2 = token(sk, "alice", "x@example.com", VEIL_ENCRYPT_SIV,
                    VEIL_ENCRYPT_OUT_STRING, a2, sizeof(a2));
        nb  = token(sk, "bob", "x@example.com", VEIL_ENCRYPT_SIV,
                    VEIL_ENCRYPT_OUT_STRING, b, sizeof(b));
        cr_assert(na1 == na2 && !memcmp(a1, a2, na1));
        cr_assert(na1 != nb || memcmp(a1, b, na1));
        cr_assert(!memcmp(a1, "k1:S:", 5));
        cr_assert_null(memmem(a1, na1, "alice", 5));
        cr_assert_eq(veil_subject_token_parse(a1, na1, buf, sizeof(buf), &t),
                     0);
        cr_assert_eq(t.mode, VEIL_ENCRYPT_SIV);
        cr_assert_eq(t.kid_len, 2);
        cr_assert_eq(veil_subject_keys_get(sk, "customers", "alice", 5, key,
                                           ref, &kid, err, sizeof(err)),
                     0);
        cr_assert(!memcmp(ref, t.ref, 16));
        cr_assert_eq(veil_subject_open(&t, key, "marketing", out, sizeof(out),
                                       &n, err, sizeof(err)),
                     0, "%s", err);
        cr_assert(n == 13 && !memcmp(out, "x@example.com", 13));
        /* another purpose's key does not open it */
        cr_assert_eq(veil_subject_open(&t, key, "analytics", out, sizeof(out),
                                       &n, err, sizeof(err)),
                     VEIL_EDATA);
        /* purpose-keyed tokens are not per-subject ones */
        cr_assert_eq(
                veil_subject_token_parse("k1:s:AAAA", 9, buf, sizeof(buf), &t),
                VEIL_ENOTFOUND);
        cr_assert_eq(
                veil_subject_token_parse("k1:S:!!", 7, buf, sizeof(buf), &t),
                VEIL_EINVAL);
        veil_subject_keys_destroy(sk);
}

Test(subject_keys, gcm_and_bytes_forms)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 8, NULL, 0);
        char g1[256], g2[256], by[256];
        unsigned char buf[256];
        struct veil_subject_token t;
        size_t n1, n2, nb;

        n1 = token(sk, "alice", "v", VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                   g1, sizeof(g1));
        n2 = token(sk, "alice", "v", VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                   g2, sizeof(g2));
        cr_assert(!memcmp(g1, "k1:G:", 5));
        cr_assert(n1 == n2 && memcmp(g1, g2, n1)); /* random nonces */
        nb = token(sk, "alice", "v", VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_BYTES,
                   by, sizeof(by));
        cr_assert_eq((unsigned char)by[0], VEIL_SUBJECT_BYTES_SIV);
        cr_assert_eq(veil_subject_token_parse(by, nb, buf, sizeof(buf), &t), 0);
        cr_assert_eq(t.mode, VEIL_ENCRYPT_SIV);
        veil_subject_keys_destroy(sk);
}

static int count_cb(void *arg, const unsigned char *ref,
                    const unsigned char *blob, size_t len)
{
        (void)ref;
        (void)blob;
        cr_assert_eq(len, 2 + 2 + VEIL_SUBJECT_SEALED_LEN);
        (*(int *)arg)++;
        return 0;
}

Test(subject_keys, lru_stays_bounded_and_keys_stay_stable)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 4, NULL, 0);
        struct veil_subject_keys_stats st;
        unsigned char key[32], first[32], ref[16];
        const char *kid;
        char subj[32];
        int i, writes = 0;

        cr_assert_eq(veil_subject_keys_get(sk, "s", "subject-0", 9, first, ref,
                                           &kid, NULL, 0),
                     0);
        for (i = 0; i < 100; i++) {
                snprintf(subj, sizeof(subj), "subject-%d", i);
                cr_assert_eq(veil_subject_keys_get(sk, "s", subj, strlen(subj),
                                                   key, ref, &kid, NULL, 0),
                             0);
        }
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.cached, 4);
        cr_assert_eq(st.known, 100);
        cr_assert_eq(st.created, 100);
        cr_assert_leq(veil_subject_keys_cache_entry_bytes(), 96);
        /* evicted, then unwrapped from the index: the same key */
        cr_assert_eq(veil_subject_keys_get(sk, "s", "subject-0", 9, key, ref,
                                           &kid, NULL, 0),
                     0);
        cr_assert(!memcmp(key, first, 32));
        cr_assert_eq(veil_subject_keys_pending(sk, count_cb, &writes), 0);
        cr_assert_eq(writes, 100);
        veil_subject_keys_commit(sk);
        writes = 0;
        cr_assert_eq(veil_subject_keys_pending(sk, count_cb, &writes), 0);
        cr_assert_eq(writes, 0);
        veil_subject_keys_destroy(sk);
}

Test(subject_keys, rollback_forgets_new_keys_and_restores_erased_ones)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 4, NULL, 0);
        unsigned char key[32], k0[32], ref[16], refs[2][16];
        struct veil_subject_keys_stats st;
        const char *kid;
        size_t n;

        cr_assert_eq(veil_subject_keys_get(sk, "s", "kept", 4, k0, ref, &kid,
                                           NULL, 0),
                     0);
        veil_subject_keys_commit(sk);
        cr_assert_eq(veil_subject_keys_get(sk, "s", "aborted", 7, key, ref,
                                           &kid, NULL, 0),
                     0);
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "kept", 4, refs, 2, &n,
                                             NULL, 0),
                     0);
        cr_assert_eq(n, 2); /* one ref per ring key */
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 1);
        veil_subject_keys_rollback(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 1);
        cr_assert_eq(veil_subject_keys_get(sk, "s", "kept", 4, key, ref, &kid,
                                           NULL, 0),
                     0);
        cr_assert(!memcmp(key, k0, 32), "an aborted erasure keeps the key");
        /* a committed erasure: the next record starts a new key */
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "kept", 4, refs, 2, &n,
                                             NULL, 0),
                     0);
        veil_subject_keys_commit(sk);
        cr_assert_eq(veil_subject_keys_get(sk, "s", "kept", 4, key, ref, &kid,
                                           NULL, 0),
                     0);
        cr_assert(memcmp(key, k0, 32));
        veil_subject_keys_destroy(sk);
}

Test(subject_keys, rotation_finds_old_subjects_and_rewraps_lazily)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 4, NULL, 0);
        struct veil_subject_keys *sk2;
        unsigned char key[32], k0[32], ref[16], ref0[16];
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        struct veil_subject_keys_stats st;
        const char *kid;
        size_t n;

        cr_assert_eq(veil_subject_keys_get(sk, "s", "alice", 5, k0, ref0, &kid,
                                           NULL, 0),
                     0);
        cr_assert_eq(veil_subject_wrap(&config, "k1", ref0, k0, blob,
                                       sizeof(blob), &n, NULL, 0),
                     0);
        veil_subject_keys_destroy(sk);
        /* k2 becomes active; the record read back from the topic */
        config.keys.key_id = "k2";
        sk2                = veil_subject_keys_new(&config, 4, NULL, 0);
        veil_subject_keys_apply(sk2, ref0, 16, blob, n);
        cr_assert_eq(veil_subject_keys_get(sk2, "s", "alice", 5, key, ref, &kid,
                                           NULL, 0),
                     0);
        cr_assert(!memcmp(key, k0, 32));
        cr_assert(!memcmp(ref, ref0, 16));
        cr_assert_str_eq(kid, "k1");
        veil_subject_keys_stats(sk2, &st);
        cr_assert_eq(st.rewrapped, 1);
        cr_assert_eq(st.created, 0);
        veil_subject_keys_destroy(sk2);
}
