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

#define TKL VEIL_SUBJECT_TOKEN_KEYS_LEN

/* A store of `cap` subjects whose one token-key slot is "marketing" (the
 * test config has no policy). */
static struct veil_subject_keys *store(size_t cap)
{
        struct veil_subject_keys *sk;
        char err[256] = "";

        sk = veil_subject_keys_new(&config, cap, err, sizeof(err));
        cr_assert_not_null(sk, "%s", err);
        cr_assert_eq(veil_subject_keys_slot(sk, "marketing"), 0);
        cr_assert_eq(veil_subject_keys_slot(sk, "analytics"), -1);
        return sk;
}

/* The token keys of (s, subj) copied out of the store. */
static void tks_of(struct veil_subject_keys *sk, const char *subj,
                   unsigned char tk[TKL], unsigned char ref[16])
{
        const unsigned char *tks;
        const char *kid;
        char err[256];

        cr_assert_eq(veil_subject_keys_get(sk, "s", subj, strlen(subj), &tks,
                                           ref, &kid, err, sizeof(err)),
                     0, "%s", err);
        memcpy(tk, tks, TKL);
}

/* The pending key write of one ref, captured (blob and its data key). */
struct captured {
        unsigned char ref[16];
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        size_t len;
        bool found;
};

static int capture_cb(void *arg, const unsigned char *ref,
                      const unsigned char *blob, size_t len)
{
        struct captured *c = arg;

        if (!memcmp(ref, c->ref, 16)) {
                memcpy(c->blob, blob, len);
                c->len   = len;
                c->found = true;
        }
        return 0;
}

/* The data key of ref, from its pending write (uses the pending list up:
 * call before anything else needs it). */
static void data_key_of(struct veil_subject_keys *sk, const unsigned char *ref,
                        unsigned char key[32], struct captured *c)
{
        char err[256];

        memset(c, 0, sizeof(*c));
        memcpy(c->ref, ref, 16);
        cr_assert_eq(veil_subject_keys_pending(sk, capture_cb, c), 0);
        cr_assert(c->found);
        cr_assert_eq(veil_subject_unwrap(&config, ref, c->blob, c->len, key,
                                         err, sizeof(err)),
                     0, "%s", err);
}

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
        const unsigned char *tks;
        unsigned char ref[16];
        struct veil_subject_cipher c;
        const char *kid;
        size_t n;
        char err[256];

        memset(&c, 0, sizeof(c));
        cr_assert_eq(veil_subject_keys_get(sk, "customers", subj, strlen(subj),
                                           &tks, ref, &kid, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(
                veil_subject_cipher_key(&c, tks, ref, kid, err, sizeof(err)), 0,
                "%s", err);
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
        struct veil_subject_keys *sk = store(8);
        char a1[256], a2[256], b[256], out[256];
        unsigned char buf[256], key[32];
        size_t na1, na2, nb, n;
        struct veil_subject_token t;
        struct captured cap;
        char err[256];

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
        /* the token names its key record, whose key opens it */
        data_key_of(sk, t.ref, key, &cap);
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
        struct veil_subject_keys *sk = store(8);
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
        struct veil_subject_keys *sk = store(4);
        struct veil_subject_keys_stats st;
        unsigned char tk[TKL], first[TKL], ref[16];
        char subj[32];
        int i, writes = 0;

        tks_of(sk, "subject-0", first, ref);
        for (i = 0; i < 100; i++) {
                snprintf(subj, sizeof(subj), "subject-%d", i);
                tks_of(sk, subj, tk, ref);
        }
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.cached, 4);
        cr_assert_eq(st.known, 100);
        cr_assert_eq(st.created, 100);
        /* one purpose: its token keys and 32 bytes (the goal: 96 bytes
         * plus the keys) */
        cr_assert_eq(veil_subject_keys_cache_entry_bytes(sk), TKL + 32);
        cr_assert_leq(st.cache_bytes, 5 * (TKL + 32));
        /* evicted, then unwrapped from the index: the same keys */
        tks_of(sk, "subject-0", tk, ref);
        cr_assert(!memcmp(tk, first, TKL));
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
        struct veil_subject_keys *sk = store(4);
        unsigned char key[TKL], k0[TKL], ref[16], refs[2][16];
        struct veil_subject_keys_stats st;
        size_t n;

        tks_of(sk, "kept", k0, ref);
        veil_subject_keys_commit(sk);
        tks_of(sk, "aborted", key, ref);
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "kept", 4, refs, 2, &n,
                                             NULL, 0),
                     0);
        cr_assert_eq(n, 2); /* one ref per ring key */
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 1);
        veil_subject_keys_rollback(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 1);
        tks_of(sk, "kept", key, ref);
        cr_assert(!memcmp(key, k0, TKL), "an aborted erasure keeps the key");
        /* a committed erasure: the next record starts a new key */
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "kept", 4, refs, 2, &n,
                                             NULL, 0),
                     0);
        veil_subject_keys_commit(sk);
        tks_of(sk, "kept", key, ref);
        cr_assert(memcmp(key, k0, TKL));
        veil_subject_keys_destroy(sk);
}

Test(subject_keys, rotation_finds_old_subjects_and_rewraps_lazily)
{
        struct veil_subject_keys *sk = store(4);
        struct veil_subject_keys *sk2;
        unsigned char k0[32], tk[TKL], tk0[TKL], ref[16], ref0[16];
        struct veil_subject_keys_stats st;
        struct captured cap, again;
        const unsigned char *tks;
        const char *kid;

        tks_of(sk, "alice", tk, ref0);
        data_key_of(sk, ref0, k0, &cap); /* the record the topic holds */
        cr_assert_eq(veil_subject_token_keys(k0, "marketing", tk0), 0);
        cr_assert(!memcmp(tk, tk0, TKL));
        veil_subject_keys_destroy(sk);
        /* k2 becomes active; the record read back from the topic */
        config.keys.key_id = "k2";
        sk2                = store(4);
        veil_subject_keys_apply(sk2, ref0, 16, cap.blob, cap.len);
        cr_assert_eq(veil_subject_keys_get(sk2, "s", "alice", 5, &tks, ref,
                                           &kid, NULL, 0),
                     0);
        cr_assert(!memcmp(tks, tk0, TKL), "the same data key");
        cr_assert(!memcmp(ref, ref0, 16));
        cr_assert_str_eq(kid, "k1");
        veil_subject_keys_stats(sk2, &st);
        cr_assert_eq(st.rewrapped, 1);
        cr_assert_eq(st.created, 0);
        /* the lazy re-wrap: a pending write at the same ref, under k2 now,
         * holding the same data key */
        data_key_of(sk2, ref0, tk, &again);
        cr_assert_eq(again.blob[1], 2);
        cr_assert(!memcmp(again.blob + 2, "k2", 2));
        cr_assert(!memcmp(tk, k0, 32));
        veil_subject_keys_destroy(sk2);
}

/* The per-subject purposes of the config name the token-key slots; each
 * block holds exactly the HKDF of the subject's data key for its purpose
 * (the same as OpenSSL's HKDF: tokens made before this cache still open). */
Test(subject_keys, slots_follow_the_per_subject_purposes)
{
        struct veil_tx_rule rules[2];
        struct veil_purpose purposes[3];
        struct veil_subject_keys *sk;
        unsigned char key[32], want[TKL], ref[16];
        const unsigned char *tks;
        struct captured cap;
        const char *kid;
        char err[256];

        memset(rules, 0, sizeof(rules));
        memset(purposes, 0, sizeof(purposes));
        rules[0].tx.kind                = VEIL_TX_ENCRYPT;
        rules[0].tx.encrypt.per_subject = true;
        rules[1].tx.kind                = VEIL_TX_ENCRYPT; /* purpose-keyed */
        purposes[0].name                = "marketing";
        purposes[0].rules               = &rules[0];
        purposes[0].n_rules             = 1;
        purposes[1].name                = "analytics";
        purposes[1].rules               = &rules[1];
        purposes[1].n_rules             = 1;
        purposes[2].name                = "support";
        purposes[2].rules               = &rules[0];
        purposes[2].n_rules             = 1;
        config.policy.purposes          = purposes;
        config.policy.n_purposes        = 3;

        sk = veil_subject_keys_new(&config, 4, err, sizeof(err));
        cr_assert_not_null(sk, "%s", err);
        cr_assert_eq(veil_subject_keys_slot(sk, "marketing"), 0);
        cr_assert_eq(veil_subject_keys_slot(sk, "support"), 1);
        cr_assert_eq(veil_subject_keys_slot(sk, "analytics"), -1);
        cr_assert_eq(veil_subject_keys_slot(sk, "other"), -1);
        cr_assert_eq(veil_subject_keys_cache_entry_bytes(sk), 2 * TKL + 32);
        cr_assert_eq(veil_subject_keys_get(sk, "s", "alice", 5, &tks, ref, &kid,
                                           err, sizeof(err)),
                     0, "%s", err);
        memcpy(want, tks, TKL); /* reused below */
        data_key_of(sk, ref, key, &cap);
        cr_assert_eq(veil_hkdf_sha256(key, 32, NULL, 0,
                                      "veil:subject:marketing", 22, want, TKL,
                                      err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_subject_keys_get(sk, "s", "alice", 5, &tks, ref, &kid,
                                           err, sizeof(err)),
                     0);
        cr_assert(!memcmp(tks, want, TKL));
        cr_assert_eq(veil_hkdf_sha256(key, 32, NULL, 0, "veil:subject:support",
                                      20, want, TKL, err, sizeof(err)),
                     0, "%s", err);
        cr_assert(!memcmp(tks + TKL, want, TKL));
        veil_subject_keys_destroy(sk);
}

/* One cipher re-keyed from subject to subject (how the worker runs) makes
 * the tokens a fresh cipher makes for each subject, in both modes. */
Test(subject_keys, a_rekeyed_cipher_matches_a_fresh_one)
{
        static const char *subjects[] = {"alice", "bob", "alice", "carol",
                                         "bob"};
        struct veil_subject_keys *sk  = store(2); /* evictions too */
        struct veil_subject_cipher reused, fresh;
        unsigned char ref[16], tk[TKL], buf[256];
        char t1[256], t2[256], out[64], err[256];
        struct veil_subject_token t;
        const unsigned char *tks;
        const char *kid;
        size_t i, n1, n2, n;

        memset(&reused, 0, sizeof(reused));
        for (i = 0; i < 5; i++) {
                cr_assert_eq(veil_subject_keys_get(sk, "s", subjects[i],
                                                   strlen(subjects[i]), &tks,
                                                   ref, &kid, err, sizeof(err)),
                             0, "%s", err);
                memcpy(tk, tks, TKL);
                memset(&fresh, 0, sizeof(fresh));
                cr_assert_eq(veil_subject_cipher_key(&reused, tk, ref, kid, err,
                                                     sizeof(err)),
                             0);
                cr_assert(veil_subject_cipher_is(&reused, tk, ref, kid));
                cr_assert_eq(veil_subject_cipher_key(&fresh, tk, ref, kid, err,
                                                     sizeof(err)),
                             0);
                cr_assert_eq(veil_subject_encrypt(&reused, VEIL_ENCRYPT_SIV,
                                                  VEIL_ENCRYPT_OUT_STRING,
                                                  "v@example.com", 13, t1,
                                                  sizeof(t1), &n1),
                             0);
                cr_assert_eq(veil_subject_encrypt(&fresh, VEIL_ENCRYPT_SIV,
                                                  VEIL_ENCRYPT_OUT_STRING,
                                                  "v@example.com", 13, t2,
                                                  sizeof(t2), &n2),
                             0);
                cr_assert(n1 == n2 && !memcmp(t1, t2, n1), "subject %zu", i);
                /* GCM (random nonces): the re-keyed one's token opens
                 * with the fresh one's context */
                cr_assert_eq(veil_subject_encrypt(&reused, VEIL_ENCRYPT_GCM,
                                                  VEIL_ENCRYPT_OUT_STRING, "v",
                                                  1, t1, sizeof(t1), &n1),
                             0);
                cr_assert_eq(
                        veil_subject_token_parse(t1, n1, buf, sizeof(buf), &t),
                        0);
                cr_assert_eq(veil_subject_encrypt(&fresh, VEIL_ENCRYPT_GCM,
                                                  VEIL_ENCRYPT_OUT_STRING, "w",
                                                  1, t2, sizeof(t2), &n2),
                             0);
                cr_assert_eq(veil_aead_open(&fresh.gcm, t.sealed, t.sealed_len,
                                            (unsigned char *)out, sizeof(out),
                                            &n),
                             0, "subject %zu", i);
                cr_assert(n == 1 && out[0] == 'v');
                veil_subject_cipher_clear(&fresh);
        }
        /* another subject's keys: not the same cipher any more */
        tk[0] ^= 1;
        cr_assert(!veil_subject_cipher_is(&reused, tk, ref, kid));
        veil_subject_cipher_clear(&reused);
        veil_subject_keys_destroy(sk);
}

Test(subject_keys, a_store_without_a_named_purpose_fails_closed)
{
        struct veil_subject_keys *sk =
                veil_subject_keys_new(&config, 4, NULL, 0);
        const unsigned char *tks;
        unsigned char ref[16];
        const char *kid;
        char err[256] = "";

        cr_assert_eq(veil_subject_keys_get(sk, "s", "alice", 5, &tks, ref, &kid,
                                           err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_neq(err[0], '\0');
        veil_subject_keys_destroy(sk);
}

/* The key topic read back: a worker's own write keeps its cached keys (no
 * unwrap again); another blob at the ref (another worker's new lifecycle)
 * drops them, and a tombstone forgets the subject. */
Test(subject_keys, reading_back_own_writes_keeps_the_cache)
{
        struct veil_subject_keys *sk = store(4);
        struct veil_subject_keys_stats st;
        unsigned char tk[TKL], tk2[TKL], ref[16], other[32];
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        struct captured cap;
        unsigned char key[32];
        size_t n;

        tks_of(sk, "alice", tk, ref);
        data_key_of(sk, ref, key, &cap);
        veil_subject_keys_commit(sk);
        veil_subject_keys_apply(sk, ref, 16, cap.blob, cap.len);
        tks_of(sk, "alice", tk2, ref);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.hits, 1, "own write read back: still cached");
        cr_assert_eq(st.misses, 1);
        cr_assert(!memcmp(tk, tk2, TKL));
        /* another key at the same ref */
        memset(other, 0x33, sizeof(other));
        cr_assert_eq(veil_subject_wrap(&config, "k1", ref, other, blob,
                                       sizeof(blob), &n, NULL, 0),
                     0);
        veil_subject_keys_apply(sk, ref, 16, blob, n);
        tks_of(sk, "alice", tk2, ref);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.misses, 2);
        cr_assert_eq(st.created, 1);
        cr_assert_eq(veil_subject_token_keys(other, "marketing", tk), 0);
        cr_assert(!memcmp(tk, tk2, TKL), "the other worker's key is used");
        /* a tombstone: the next record starts a new key */
        veil_subject_keys_apply(sk, ref, 16, NULL, 0);
        tks_of(sk, "alice", tk2, ref);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 2);
        cr_assert(memcmp(tk, tk2, TKL));
        veil_subject_keys_destroy(sk);
}

/* The counters /metrics shows: a rollback takes back what it undid. */
Test(subject_keys, counters_count_committed_changes)
{
        struct veil_subject_keys *sk = store(4);
        struct veil_subject_keys_stats st;
        unsigned char tk[TKL], ref[16], refs[2][16];
        size_t n;

        tks_of(sk, "a", tk, ref);
        tks_of(sk, "b", tk, ref);
        veil_subject_keys_commit(sk);
        tks_of(sk, "c", tk, ref);
        cr_assert_eq(
                veil_subject_keys_erase(sk, "s", "a", 1, refs, 2, &n, NULL, 0),
                0);
        veil_subject_keys_rollback(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 2);
        cr_assert_eq(st.destroyed, 0);
        cr_assert_eq(st.misses, 3);
        tks_of(sk, "b", tk, ref);
        cr_assert_eq(
                veil_subject_keys_erase(sk, "s", "a", 1, refs, 2, &n, NULL, 0),
                0);
        veil_subject_keys_commit(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 2);
        cr_assert_eq(st.destroyed, 1);
        cr_assert_eq(st.hits, 1);
        veil_subject_keys_destroy(sk);
}

/* ---- the bounded index: spilled subjects, fetched back on use ---------- */

/* The key topic as the fetch sees it: the records read back, by position. */
struct topic {
        struct {
                unsigned char ref[16];
                unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
                size_t len;
        } rec[64];
        int n, fetches;
        bool down;
};

static int topic_add(void *arg, const unsigned char *ref,
                     const unsigned char *blob, size_t len)
{
        struct topic *t = arg;

        memcpy(t->rec[t->n].ref, ref, 16);
        memcpy(t->rec[t->n].blob, blob, len);
        t->rec[t->n].len = len;
        t->n++;
        return 0;
}

static int topic_fetch(void *arg, int32_t part, int64_t off,
                       const unsigned char *ref, unsigned char *blob,
                       size_t cap, size_t *len, char *errstr,
                       size_t errstr_size)
{
        struct topic *t = arg;

        t->fetches++;
        cr_assert_eq(part, 3);
        if (t->down || off < 0 || off >= t->n ||
            memcmp(t->rec[off].ref, ref, 16) || t->rec[off].len > cap)
                return snprintf(errstr, errstr_size, "unavailable"), VEIL_ENET;
        memcpy(blob, t->rec[off].blob, t->rec[off].len);
        *len = t->rec[off].len;
        return 0;
}

/* n subjects made and committed, then their records read back (partition
 * 3, offsets in the order written), and one more commit (which spills). */
static void make_subjects(struct veil_subject_keys *sk, struct topic *t, int n,
                          unsigned char (*tks)[TKL])
{
        unsigned char ref[16];
        char subj[32];
        int i, from = t->n;

        for (i = 0; i < n; i++) {
                snprintf(subj, sizeof(subj), "subject-%d", i);
                tks_of(sk, subj, tks[i], ref);
        }
        cr_assert_eq(veil_subject_keys_pending(sk, topic_add, t), 0);
        veil_subject_keys_commit(sk);
        for (i = from; i < t->n; i++)
                veil_subject_keys_apply_at(sk, 3, i, t->rec[i].ref, 16,
                                           t->rec[i].blob, t->rec[i].len);
        veil_subject_keys_commit(sk);
}

Test(subject_keys, the_index_spills_past_its_bound_and_fetches_back)
{
        struct veil_subject_keys *sk = store(0); /* no LRU: the index */
        static struct topic t;
        struct veil_subject_keys_stats st;
        unsigned char tks[8][TKL], tk[TKL], ref[16];
        int i;

        veil_subject_keys_bound(sk, 3, topic_fetch, &t);
        make_subjects(sk, &t, 8, tks);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 8);
        cr_assert_eq(st.spilled, 5, "8 subjects, 3 resident");
        cr_assert_eq(st.created, 8);
        /* every subject opens with its own key, spilled or not; none is
         * made twice */
        for (i = 7; i >= 0; i--) {
                char subj[32];

                snprintf(subj, sizeof(subj), "subject-%d", i);
                tks_of(sk, subj, tk, ref);
                cr_assert(!memcmp(tk, tks[i], TKL), "subject %d", i);
        }
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 8);
        cr_assert_eq(st.fetched, 5);
        cr_assert_eq(t.fetches, 5);
        cr_assert_eq(st.spilled, 0, "fetched back: resident until a commit");
        veil_subject_keys_commit(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.spilled, 5);
        cr_assert_eq(st.known, 8);
        veil_subject_keys_destroy(sk);
}

/* A fetch that fails is an error to retry, never "no key": no second key
 * is made for a spilled subject. */
Test(subject_keys, a_failed_fetch_never_makes_a_second_key)
{
        struct veil_subject_keys *sk = store(1);
        static struct topic t;
        struct veil_subject_keys_stats st;
        unsigned char tks[4][TKL], tk[TKL], ref[16];
        const unsigned char *p;
        const char *kid;
        char err[256] = "";
        int i, failed = 0;

        veil_subject_keys_bound(sk, 1, topic_fetch, &t);
        make_subjects(sk, &t, 4, tks);
        t.down = true;
        for (i = 0; i < 4; i++) {
                char subj[32];

                snprintf(subj, sizeof(subj), "subject-%d", i);
                if (veil_subject_keys_get(sk, "s", subj, strlen(subj), &p, ref,
                                          &kid, err, sizeof(err)) == VEIL_ENET)
                        failed++;
        }
        cr_assert_eq(failed, 3, "three spilled, one resident");
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 4);
        t.down = false;
        tks_of(sk, "subject-0", tk, ref);
        cr_assert(!memcmp(tk, tks[0], TKL));
        veil_subject_keys_destroy(sk);
}

/* Erasing a spilled subject: it comes back, is destroyed (undone by a
 * rollback), and the next record after a committed erasure starts anew. */
Test(subject_keys, erasing_a_spilled_subject)
{
        struct veil_subject_keys *sk = store(1);
        static struct topic t;
        struct veil_subject_keys_stats st;
        unsigned char tks[4][TKL], tk[TKL], ref[16], refs[2][16];
        size_t n;

        veil_subject_keys_bound(sk, 1, topic_fetch, &t);
        make_subjects(sk, &t, 4, tks);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.spilled, 3);
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "subject-0", 9, refs, 2,
                                             &n, NULL, 0),
                     0);
        veil_subject_keys_rollback(sk);
        tks_of(sk, "subject-0", tk, ref);
        cr_assert(!memcmp(tk, tks[0], TKL), "an aborted erasure keeps it");
        veil_subject_keys_commit(sk);
        cr_assert_eq(veil_subject_keys_erase(sk, "s", "subject-1", 9, refs, 2,
                                             &n, NULL, 0),
                     0);
        veil_subject_keys_commit(sk);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.destroyed, 1);
        cr_assert_eq(st.known, 3);
        tks_of(sk, "subject-1", tk, ref);
        cr_assert(memcmp(tk, tks[1], TKL), "a new lifecycle");
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 5);
        /* a tombstone read back forgets a spilled subject too */
        cr_assert_eq(st.spilled > 0, 1);
        veil_subject_keys_destroy(sk);
}

/* Reading the key topic from its start (a worker starting) stays within
 * the bound, and every subject read still opens with its key. */
Test(subject_keys, reading_the_topic_stays_within_the_bound)
{
        struct veil_subject_keys *maker = store(0), *sk = store(0);
        static struct topic t;
        struct veil_subject_keys_stats st;
        unsigned char tks[8][TKL], tk[TKL], ref[16];
        int i;

        make_subjects(maker, &t, 8, tks);
        veil_subject_keys_bound(sk, 2, topic_fetch, &t);
        for (i = 0; i < t.n; i++)
                veil_subject_keys_apply_at(sk, 3, i, t.rec[i].ref, 16,
                                           t.rec[i].blob, t.rec[i].len);
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.known, 8);
        cr_assert_eq(st.spilled, 6);
        for (i = 0; i < 8; i++) {
                char subj[32];

                snprintf(subj, sizeof(subj), "subject-%d", i);
                tks_of(sk, subj, tk, ref);
                cr_assert(!memcmp(tk, tks[i], TKL), "subject %d", i);
        }
        veil_subject_keys_stats(sk, &st);
        cr_assert_eq(st.created, 0);
        veil_subject_keys_destroy(maker);
        veil_subject_keys_destroy(sk);
}
