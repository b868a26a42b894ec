/* test_ledger.c - ledger record round trips and hostile bytes, restore
 * semantics, write coalescing, and erasure requests. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ledger.h"
#include "retention.h"
#include "veil.h"

TestSuite(ledger);

static uint64_t rng_state = 0x1edc0ffee0ddf00dULL;

static uint64_t rng(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Encodes (topic, key) → (value or tombstone) into caller buffers. */
static size_t enc_key(const char *topic, const void *key, size_t klen,
                      unsigned char *out, size_t cap)
{
        char err[256] = "";
        size_t n      = 0;

        cr_assert_eq(veil_ledger_key_encode(topic, key, klen, out, cap, &n, err,
                                            sizeof(err)),
                     0, "%s", err);
        return n;
}

static void enc_val(int64_t dl, int64_t ts, int32_t part,
                    unsigned char out[VEIL_LEDGER_VALUE_LEN])
{
        struct veil_ledger_value v = {dl, ts, part};

        cr_assert_eq(veil_ledger_value_encode(&v, out, NULL, 0), 0);
}

Test(ledger, key_and_value_round_trip)
{
        unsigned char k[512], v[VEIL_LEDGER_VALUE_LEN];
        struct veil_ledger_record rec;
        char err[256] = "";
        size_t kn;

        kn = enc_key("customers.analytics", "k1:\0AB", 6, k, sizeof(k));
        cr_assert_eq(kn, strlen("customers.analytics") + 1 + 6);
        cr_assert_eq(memcmp(k, "customers.analytics\0k1:\0AB", kn), 0);
        enc_val(1767225600123LL, 1767225500000LL, 7, v);
        cr_assert_eq(v[0], VEIL_LEDGER_VERSION);
        /* big-endian on the wire */
        cr_assert_eq(v[17], 0);
        cr_assert_eq(v[20], 7);

        cr_assert_eq(
                veil_ledger_decode(k, kn, v, sizeof(v), &rec, err, sizeof(err)),
                0, "%s", err);
        cr_assert_not(rec.tombstone);
        cr_assert_eq(rec.topic_len, strlen("customers.analytics"));
        cr_assert_eq(memcmp(rec.topic, "customers.analytics", rec.topic_len),
                     0);
        cr_assert_eq(rec.key_len, 6);
        cr_assert_eq(memcmp(rec.key, "k1:\0AB", 6), 0);
        cr_assert_eq(rec.value.deadline_ms, 1767225600123LL);
        cr_assert_eq(rec.value.record_ts_ms, 1767225500000LL);
        cr_assert_eq(rec.value.partition, 7);
}

Test(ledger, null_or_empty_value_is_a_tombstone)
{
        unsigned char k[64];
        struct veil_ledger_record rec;
        size_t kn = enc_key("t", "key", 3, k, sizeof(k));

        cr_assert_eq(veil_ledger_decode(k, kn, NULL, 0, &rec, NULL, 0), 0);
        cr_assert(rec.tombstone);
        cr_assert_eq(rec.key_len, 3);
        cr_assert_eq(veil_ledger_decode(k, kn, "", 0, &rec, NULL, 0), 0);
        cr_assert(rec.tombstone);
        /* the empty transformed key is a key */
        kn = enc_key("t", NULL, 0, k, sizeof(k));
        cr_assert_eq(veil_ledger_decode(k, kn, NULL, 0, &rec, NULL, 0), 0);
        cr_assert_eq(rec.key_len, 0);
}

Test(ledger, encode_rejects_bad_topics_keys_and_values)
{
        unsigned char k[600], v[VEIL_LEDGER_VALUE_LEN];
        struct veil_ledger_value bad = {-1, 0, 0}, badp = {1, 0, -3};
        char topic[300], err[256]                       = "";
        size_t n;

        cr_assert_eq(veil_ledger_key_encode("", "k", 1, k, sizeof(k), &n, err,
                                            sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_key_encode("a b", "k", 1, k, sizeof(k), &n,
                                            err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_key_encode("..", "k", 1, k, sizeof(k), &n, err,
                                            sizeof(err)),
                     VEIL_EINVAL);
        memset(topic, 'a', 250);
        topic[250] = 0;
        cr_assert_eq(veil_ledger_key_encode(topic, "k", 1, k, sizeof(k), &n,
                                            err, sizeof(err)),
                     VEIL_EINVAL);
        topic[249] = 0;
        cr_assert_eq(veil_ledger_key_encode(topic, "k", 1, k, sizeof(k), &n,
                                            err, sizeof(err)),
                     0);
        cr_assert_eq(veil_ledger_key_encode("t", "key", 3, k, 4, &n, err,
                                            sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_value_encode(&bad, v, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_value_encode(&badp, v, err, sizeof(err)),
                     VEIL_EINVAL);
}

struct hostile {
        char name[24];
        unsigned char key[40];
        size_t key_len;
        unsigned char value[40];
        size_t value_len;
};

ParameterizedTestParameters(ledger, hostile_records_are_clean_errors)
{
        static struct hostile cases[] = {
                {"no key", {0}, 0, {1}, 1},
                {"no separator", "topic-without-sep", 17, {0}, 0},
                {"empty topic", "\0key", 4, {0}, 0},
                {"bad topic char", "to/pic\0k", 8, {0}, 0},
                {"dot topic", ".\0k", 3, {0}, 0},
                {"short value", "t\0k", 3, {1, 0, 0}, 3},
                {"long value", "t\0k", 3, {1}, 22},
                {"version 2",
                 "t\0k",
                 3,
                 {2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                 21},
                {"negative deadline",
                 "t\0k",
                 3,
                 {1, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0,
                  0, 0,    0, 0, 0, 0, 0, 0, 0, 0},
                 21},
                {"negative partition",
                 "t\0k",
                 3,
                 {1, 0, 0, 0, 0, 0, 0,    0,    1,    0,   0,
                  0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
                 21},
        };
        return cr_make_param_array(struct hostile, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hostile *h, ledger, hostile_records_are_clean_errors)
{
        struct veil_ledger_record rec;
        char err[256] = "";

        cr_assert_eq(veil_ledger_decode(h->key_len ? h->key : NULL, h->key_len,
                                        h->value_len ? h->value : NULL,
                                        h->value_len, &rec, err, sizeof(err)),
                     VEIL_EDATA, "%s", h->name);
        cr_assert(strncmp(err, "ledger: ", 8) == 0, "%s: %s", h->name, err);
}

Test(ledger, random_bytes_decode_or_fail_cleanly)
{
        unsigned char k[300], v[32], k2[600], v2[VEIL_LEDGER_VALUE_LEN];
        struct veil_ledger_record rec;
        size_t kn, vn, i, n2, ok = 0;
        int iter;

        for (iter = 0; iter < 20000; iter++) {
                kn = rng() % sizeof(k);
                vn = rng() % 3 == 0 ? VEIL_LEDGER_VALUE_LEN : rng() % sizeof(v);
                for (i = 0; i < kn; i++) {
                        /* mostly topic characters so some keys parse */
                        uint64_t r = rng();

                        k[i] = r % 8 == 0 ? 0
                                          : (unsigned char)(r % 4 ? 'a' + r % 26
                                                                  : r >> 8);
                }
                for (i = 0; i < vn; i++)
                        v[i] = (unsigned char)rng();
                if (vn && rng() % 2)
                        v[0] = 1;
                int rc = veil_ledger_decode(kn ? k : NULL, kn, v, vn, &rec,
                                            NULL, 0);
                cr_assert(rc == 0 || rc == VEIL_EDATA);
                if (rc)
                        continue;
                ok++;
                /* what decodes re-encodes to the same bytes */
                char topic[VEIL_LEDGER_TOPIC_MAX + 1];

                memcpy(topic, rec.topic, rec.topic_len);
                topic[rec.topic_len] = 0;
                n2 = enc_key(topic, rec.key, rec.key_len, k2, sizeof(k2));
                cr_assert_eq(n2, kn);
                cr_assert_eq(memcmp(k2, k, kn), 0);
                if (!rec.tombstone) {
                        enc_val(rec.value.deadline_ms, rec.value.record_ts_ms,
                                rec.value.partition, v2);
                        cr_assert_eq(memcmp(v2, v, VEIL_LEDGER_VALUE_LEN), 0);
                }
        }
        cr_assert_gt(ok, 100, "only %zu decoded: the generator is off", ok);
}

/* ---- restore --------------------------------------------------------------
 */

static const char *const TOPICS[] = {"customers.analytics",
                                     "customers.marketing"};

static int restore(struct veil_retention *ri, const char *topic,
                   const char *key, int64_t dl, int32_t part, bool tomb)
{
        unsigned char k[256], v[VEIL_LEDGER_VALUE_LEN];
        size_t kn = enc_key(topic, key, strlen(key), k, sizeof(k));

        if (!tomb)
                enc_val(dl, dl - 100, part, v);
        return veil_ledger_restore(ri, TOPICS, 2, k, kn, tomb ? NULL : v,
                                   tomb ? 0 : sizeof(v), NULL, 0);
}

Test(ledger, restore_later_record_wins_and_tombstone_removes)
{
        struct veil_retention *ri = veil_retention_new();
        struct veil_retention_entry e;

        cr_assert_eq(restore(ri, "customers.analytics", "a", 5000, 1, false),
                     0);
        cr_assert_eq(restore(ri, "customers.marketing", "a", 6000, 1, false),
                     0);
        cr_assert_eq(restore(ri, "customers.analytics", "b", 7000, 2, false),
                     0);
        /* a later record with an earlier deadline still wins */
        cr_assert_eq(restore(ri, "customers.analytics", "a", 3000, 4, false),
                     0);
        /* a tombstone removes, another record brings it back */
        cr_assert_eq(restore(ri, "customers.analytics", "b", 0, 0, true), 0);
        cr_assert_eq(restore(ri, "customers.analytics", "c", 0, 0, true), 0);
        cr_assert_eq(restore(ri, "customers.marketing", "c", 100, 0, false), 0);
        cr_assert_eq(restore(ri, "customers.marketing", "c", 0, 0, true), 0);
        cr_assert_eq(restore(ri, "customers.marketing", "c", 200, 3, false), 0);
        /* a purpose no longer configured */
        cr_assert_eq(restore(ri, "customers.gone", "a", 1, 0, false),
                     VEIL_ENOTFOUND);

        cr_assert_eq(veil_retention_count(ri), 3);
        cr_assert_eq(veil_retention_get(ri, 0, "a", 1, &e), 0);
        cr_assert_eq(e.deadline_ms, 3000);
        cr_assert_eq(e.partition, 4);
        cr_assert_eq(veil_retention_get(ri, 1, "a", 1, &e), 0);
        cr_assert_eq(e.deadline_ms, 6000);
        cr_assert_eq(veil_retention_get(ri, 0, "b", 1, &e), VEIL_ENOTFOUND);
        cr_assert_eq(veil_retention_get(ri, 1, "c", 1, &e), 0);
        cr_assert_eq(e.deadline_ms, 200);
        cr_assert_eq(e.partition, 3);

        /* malformed: an error, and the state is untouched */
        cr_assert_eq(
                veil_ledger_restore(ri, TOPICS, 2, "junk", 4, "x", 1, NULL, 0),
                VEIL_EDATA);
        cr_assert_eq(veil_retention_count(ri), 3);
        veil_retention_destroy(ri);
}

/* What the worker writes (through the batch) restores to what it had. */
Test(ledger, batch_output_restores_the_index)
{
        struct veil_retention *live = veil_retention_new(), *back;
        struct veil_retention_entry out[16];
        struct veil_ledger_batch *b = veil_ledger_batch_new();
        struct veil_ledger_pending pd;
        enum veil_retention_change ch;
        unsigned char **keys, **vals;
        size_t *klens, *vlens, nlog = 0, caplog = 4096, i, n;
        char key[32];
        int round, j;

        keys  = calloc(caplog, sizeof(*keys));
        vals  = calloc(caplog, sizeof(*vals));
        klens = calloc(caplog, sizeof(*klens));
        vlens = calloc(caplog, sizeof(*vlens));
        for (round = 0; round < 10; round++) {
                for (j = 0; j < 50; j++) {
                        uint16_t p = (uint16_t)(rng() % 2);
                        int64_t dl = round * 100 + (int64_t)(rng() % 300);
                        struct veil_ledger_value v = {dl, dl - 10, j % 3};

                        snprintf(key, sizeof(key), "k%d", (int)(rng() % 60));
                        cr_assert_eq(veil_retention_upsert(live, p, key,
                                                           strlen(key), dl,
                                                           j % 3, &ch, NULL, 0),
                                     0);
                        if (ch != VEIL_RETENTION_UNCHANGED)
                                cr_assert_eq(veil_ledger_batch_put(
                                                     b, TOPICS[p], key,
                                                     strlen(key), j % 3, &v,
                                                     NULL, 0),
                                             0);
                }
                while ((n = veil_retention_pop_expired(live, round * 100 + 50,
                                                       out, 16)) > 0)
                        for (i = 0; i < n; i++)
                                cr_assert_eq(veil_ledger_batch_put(
                                                     b, TOPICS[out[i].purpose],
                                                     out[i].key, out[i].key_len,
                                                     out[i].partition, NULL,
                                                     NULL, 0),
                                             0);
                /* "commit": append the batch to the log */
                for (i = 0; i < veil_ledger_batch_count(b); i++) {
                        veil_ledger_batch_get(b, i, &pd);
                        cr_assert_lt(nlog, caplog);
                        keys[nlog] = malloc(pd.key_len);
                        memcpy(keys[nlog], pd.key, pd.key_len);
                        klens[nlog] = pd.key_len;
                        vals[nlog]  = pd.value ? malloc(pd.value_len) : NULL;
                        if (pd.value)
                                memcpy(vals[nlog], pd.value, pd.value_len);
                        vlens[nlog++] = pd.value_len;
                }
                cr_assert_leq(veil_ledger_batch_count(b),
                              veil_ledger_batch_puts(b));
                veil_ledger_batch_clear(b);
        }
        back = veil_retention_new();
        for (i = 0; i < nlog; i++)
                cr_assert_eq(veil_ledger_restore(back, TOPICS, 2, keys[i],
                                                 klens[i], vals[i], vlens[i],
                                                 NULL, 0),
                             0);
        cr_assert_eq(veil_retention_count(back), veil_retention_count(live));
        cr_assert_gt(veil_retention_count(back), 10);
        for (j = 0; j < 60; j++) {
                uint16_t p;

                snprintf(key, sizeof(key), "k%d", j);
                for (p = 0; p < 2; p++) {
                        struct veil_retention_entry a, c;
                        int ra = veil_retention_get(live, p, key, strlen(key),
                                                    &a);
                        int rb = veil_retention_get(back, p, key, strlen(key),
                                                    &c);

                        cr_assert_eq(ra, rb, "%s/%d", key, p);
                        if (!ra) {
                                cr_assert_eq(a.deadline_ms, c.deadline_ms);
                                cr_assert_eq(a.partition, c.partition);
                        }
                }
        }
        for (i = 0; i < nlog; i++) {
                free(keys[i]);
                free(vals[i]);
        }
        free(keys);
        free(vals);
        free(klens);
        free(vlens);
        veil_ledger_batch_destroy(b);
        veil_retention_destroy(back);
        veil_retention_destroy(live);
}

/* ---- coalescing -------------------------------------------------------------
 */

Test(ledger, batch_keeps_one_record_per_key_last_put_wins)
{
        struct veil_ledger_batch *b = veil_ledger_batch_new();
        struct veil_ledger_value v1 = {100, 1, 2}, v2 = {200, 2, 2};
        struct veil_ledger_pending pd;
        struct veil_ledger_record rec;

        cr_assert_eq(veil_ledger_batch_put(b, "t.a", "k1", 2, 2, &v1, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_put(b, "t.b", "k1", 2, 2, &v1, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_put(b, "t.a", "k2", 2, 0, &v1, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_put(b, "t.a", "k1", 2, 2, &v2, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_put(b, "t.a", "k2", 2, 0, NULL, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_count(b), 3);
        cr_assert_eq(veil_ledger_batch_puts(b), 5);

        /* first-put order, last state */
        veil_ledger_batch_get(b, 0, &pd);
        cr_assert_eq(veil_ledger_decode(pd.key, pd.key_len, pd.value,
                                        pd.value_len, &rec, NULL, 0),
                     0);
        cr_assert_eq(memcmp(rec.topic, "t.a", 3), 0);
        cr_assert_eq(memcmp(rec.key, "k1", 2), 0);
        cr_assert_eq(rec.value.deadline_ms, 200);
        cr_assert_eq(pd.partition, 2);
        veil_ledger_batch_get(b, 1, &pd);
        cr_assert_eq(memcmp(pd.key, "t.b\0k1", 6), 0);
        veil_ledger_batch_get(b, 2, &pd);
        cr_assert_eq(memcmp(pd.key, "t.a\0k2", 6), 0);
        cr_assert_null(pd.value);
        cr_assert_eq(pd.value_len, 0);
        cr_assert_eq(pd.partition, 0);

        veil_ledger_batch_clear(b);
        cr_assert_eq(veil_ledger_batch_count(b), 0);
        cr_assert_eq(veil_ledger_batch_puts(b), 0);
        cr_assert_eq(veil_ledger_batch_put(b, "t.a", "k1", 2, 2, NULL, NULL, 0),
                     0);
        cr_assert_eq(veil_ledger_batch_count(b), 1);
        /* bad input is refused and not counted */
        cr_assert_eq(
                veil_ledger_batch_put(b, "bad topic", "k", 1, 0, NULL, NULL, 0),
                VEIL_EINVAL);
        cr_assert_eq(veil_ledger_batch_put(b, "t", "k", 1, -1, NULL, NULL, 0),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_batch_count(b), 1);
        veil_ledger_batch_destroy(b);
}

Test(ledger, batch_coalesces_many_keys)
{
        struct veil_ledger_batch *b = veil_ledger_batch_new();
        struct veil_ledger_pending pd;
        struct veil_ledger_record rec;
        char key[32];
        int i, round;

        for (round = 0; round < 3; round++)
                for (i = 0; i < 20000; i++) {
                        struct veil_ledger_value v = {round * 100000 + i, 0,
                                                      i % 8};

                        snprintf(key, sizeof(key), "key-%d", i);
                        cr_assert_eq(veil_ledger_batch_put(b, "t", key,
                                                           strlen(key), i % 8,
                                                           &v, NULL, 0),
                                     0);
                }
        cr_assert_eq(veil_ledger_batch_count(b), 20000);
        cr_assert_eq(veil_ledger_batch_puts(b), 60000);
        for (i = 0; i < 20000; i++) {
                veil_ledger_batch_get(b, (size_t)i, &pd);
                cr_assert_eq(veil_ledger_decode(pd.key, pd.key_len, pd.value,
                                                pd.value_len, &rec, NULL, 0),
                             0);
                snprintf(key, sizeof(key), "key-%d", i);
                cr_assert_eq(rec.key_len, strlen(key));
                cr_assert_eq(memcmp(rec.key, key, rec.key_len), 0);
                cr_assert_eq(rec.value.deadline_ms, 200000 + i);
        }
        veil_ledger_batch_destroy(b);
}

/* ---- erasure requests -------------------------------------------------------
 */

static unsigned char MASTER[32] = "0123456789abcdef0123456789abcdef";

static void keys_init(struct veil_erasure_keys *ek, const char *id,
                      unsigned char fill)
{
        unsigned char m[32];
        char err[256] = "";

        memcpy(m, MASTER, 32);
        if (fill)
                memset(m, fill, sizeof(m));
        cr_assert_eq(
                veil_erasure_keys_init(ek, m, sizeof(m), id, err, sizeof(err)),
                0, "%s", err);
}

static char *encode(struct veil_erasure_keys *ek, const char *key,
                    const char *id)
{
        char err[256] = "", *json = NULL;
        size_t n = 0;

        cr_assert_eq(veil_erasure_request_encode(ek, key, strlen(key),
                                                 1700000000000LL, id, &json, &n,
                                                 err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(n, strlen(json));
        return json;
}

Test(ledger, erasure_request_round_trip_with_the_key_sealed)
{
        struct veil_erasure_keys ek;
        struct veil_erasure_request req;
        char id[37], err[256] = "", *json;
        json_t *doc;

        keys_init(&ek, "k1", 0);
        cr_assert_eq(veil_erasure_request_id(id, NULL, 0), 0);
        cr_assert_eq(strlen(id), 36);
        cr_assert_eq(id[14], '4');
        json = encode(&ek, "customer-000042", id);
        /* the key never appears in clear */
        cr_assert_null(strstr(json, "customer-000042"));
        doc = json_loads(json, 0, NULL);
        cr_assert_not_null(doc);
        cr_assert_str_eq(json_string_value(json_object_get(doc, "request_id")),
                         id);
        cr_assert_eq(json_integer_value(json_object_get(doc, "requested_at")),
                     1700000000000LL);
        cr_assert_eq(
                strncmp(json_string_value(json_object_get(doc, "key_sealed")),
                        "k1:g:", 5),
                0);
        json_decref(doc);

        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     0, "%s", err);
        cr_assert(req.sealed);
        cr_assert_eq(req.key_len, strlen("customer-000042"));
        cr_assert_eq(memcmp(req.key, "customer-000042", req.key_len), 0);
        cr_assert_eq(req.requested_at_ms, 1700000000000LL);
        cr_assert_str_eq(req.request_id, id);
        veil_erasure_request_clear(&req);
        cr_assert_null(req.key);
        free(json);
        veil_erasure_keys_destroy(&ek);
}

Test(ledger, erasure_key_hash_is_stable_keyed_and_distinct)
{
        struct veil_erasure_keys a, b;
        char h1[VEIL_ERASURE_KEY_HASH_MAX + 1], h2[sizeof(h1)], h3[sizeof(h1)],
                h4[sizeof(h1)];

        keys_init(&a, "k1", 0);
        keys_init(&b, "k1", 0x5a);
        cr_assert_eq(veil_erasure_key_hash(&a, "c-1", 3, h1, sizeof(h1)), 0);
        cr_assert_eq(veil_erasure_key_hash(&a, "c-1", 3, h2, sizeof(h2)), 0);
        cr_assert_eq(veil_erasure_key_hash(&a, "c-2", 3, h3, sizeof(h3)), 0);
        cr_assert_eq(veil_erasure_key_hash(&b, "c-1", 3, h4, sizeof(h4)), 0);
        cr_assert_str_eq(h1, h2);
        cr_assert_str_neq(h1, h3);
        cr_assert_str_neq(h1, h4);
        cr_assert_eq(strncmp(h1, "k1:", 3), 0);
        cr_assert_eq(strlen(h1), 3 + 43);
        cr_assert_eq(veil_erasure_key_hash(&a, "c-1", 3, h1, 10), VEIL_EINVAL);
        veil_erasure_keys_destroy(&a);
        veil_erasure_keys_destroy(&b);
}

Test(ledger, erasure_request_under_another_key_does_not_open)
{
        struct veil_erasure_keys a, other_id, other_master;
        struct veil_erasure_request req;
        char err[256] = "", *json, *p;

        keys_init(&a, "k1", 0);
        keys_init(&other_id, "k2", 0);
        keys_init(&other_master, "k1", 0x33);
        json = encode(&a, "subject", "req-1");
        cr_assert_eq(veil_erasure_request_decode(&other_id, json, strlen(json),
                                                 &req, err, sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "'k1'"), "%s", err);
        cr_assert_eq(veil_erasure_request_decode(&other_master, json,
                                                 strlen(json), &req, err,
                                                 sizeof(err)),
                     VEIL_EAUTH);
        cr_assert_null(req.key);
        /* flip one character of the sealed token */
        p  = strstr(json, "k1:g:") + 10;
        *p = *p == 'A' ? 'B' : 'A';
        cr_assert_eq(veil_erasure_request_decode(&a, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     VEIL_EAUTH);
        free(json);
        veil_erasure_keys_destroy(&a);
        veil_erasure_keys_destroy(&other_id);
        veil_erasure_keys_destroy(&other_master);
}

Test(ledger, erasure_request_in_clear_from_other_tools)
{
        struct veil_erasure_keys ek;
        struct veil_erasure_request req;
        const char *json = "{\"key\": \"c-9\", \"requested_at\": 5, "
                           "\"request_id\": \"abc-1\", \"extra\": true}";
        char err[256]    = "";

        keys_init(&ek, "k1", 0);
        /* Not authenticated: refused unless the config opts in. */
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "allow_plaintext"), "%s", err);
        cr_assert_null(strstr(err, "c-9"), "%s", err);
        cr_assert_null(req.key);
        ek.allow_plaintext = true;
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     0, "%s", err);
        cr_assert_not(req.sealed);
        cr_assert_eq(req.key_len, 3);
        cr_assert_eq(memcmp(req.key, "c-9", 3), 0);
        cr_assert_str_eq(req.request_id, "abc-1");
        veil_erasure_request_clear(&req);
        veil_erasure_keys_destroy(&ek);
}

/* Replaces the first `from` in json (malloc'd) by `to`. */
static char *replace(char *json, const char *from, const char *to)
{
        char *p = strstr(json, from), *out;
        size_t n;

        cr_assert_not_null(p, "%s not in %s", from, json);
        n   = strlen(json) - strlen(from) + strlen(to) + 1;
        out = malloc(n);
        snprintf(out, n, "%.*s%s%s", (int)(p - json), json, to,
                 p + strlen(from));
        free(json);
        return out;
}

Test(ledger, erasure_request_mac_binds_id_time_and_key)
{
        struct veil_erasure_keys ek;
        struct veil_erasure_request req;
        char err[256] = "", *json;
        json_t *doc;

        keys_init(&ek, "k1", 0);
        json = encode(&ek, "subject", "req-1");
        doc  = json_loads(json, 0, NULL);
        cr_assert_eq(json_integer_value(json_object_get(doc, "v")), 2);
        cr_assert_eq(strncmp(json_string_value(json_object_get(doc, "mac")),
                             "k1:", 3),
                     0);
        json_decref(doc);
        /* another request id, another time, no MAC, a MAC from v1 days */
        json = replace(json, "\"req-1\"", "\"req-2\"");
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "'mac' does not authenticate"), "%s", err);
        cr_assert_null(req.key);
        json = replace(json, "\"req-2\"", "\"req-1\"");
        json = replace(json, "1700000000000", "1700000000001");
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     VEIL_EAUTH);
        json = replace(json, "1700000000001", "1700000000000");
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     0, "%s", err);
        veil_erasure_request_clear(&req);
        json = replace(json, "\"mac\"", "\"mac_was\"");
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     VEIL_EAUTH);
        cr_assert(strstr(err, "carries no 'mac'"), "%s", err);
        free(json);
        veil_erasure_keys_destroy(&ek);
}

/* Inline strings: Criterion hands parameters to the test process by value. */
struct hostile_json {
        char json[128];
};

ParameterizedTestParameters(ledger, hostile_erasure_requests)
{
        static struct hostile_json cases[] = {
                {""},
                {"not json"},
                {"[1,2]"},
                {"{}"},
                {"{\"key\":\"a\",\"requested_at\":1}"},
                {"{\"key\":\"a\",\"request_id\":\"r\"}"},
                {"{\"key\":\"a\",\"requested_at\":-1,\"request_id\":\"r\"}"},
                {"{\"key\":\"a\",\"requested_at\":\"1\",\"request_id\":\"r\"}"},
                {"{\"key\":\"\",\"requested_at\":1,\"request_id\":\"r\"}"},
                {"{\"key\":7,\"requested_at\":1,\"request_id\":\"r\"}"},
                {"{\"key\":\"a\",\"requested_at\":1,\"request_id\":\"\"}"},
                {"{\"key\":\"a\",\"requested_at\":1,\"request_id\":\"a b\"}"},
                {"{\"key\":\"a\",\"key\":\"b\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
                {"{\"key\":\"a\",\"key_sealed\":\"k1:g:AAAA\","
                 "\"requested_at\":1,\"request_id\":\"r\"}"},
                {"{\"key_sealed\":\"k1:s:AAAA\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
                {"{\"key_sealed\":\"nocolon\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
                {"{\"key_sealed\":\"k1:g:!!!!\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
                {"{\"key_sealed\":\"k1:g:\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
                {"{\"key_sealed\":\"k1:g:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                 "AAAAAA\",\"requested_at\":1,\"request_id\":\"r\"}"},
                {"{\"v\":2,\"key\":\"a\",\"requested_at\":1,"
                 "\"request_id\":\"r\"}"},
        };
        return cr_make_param_array(struct hostile_json, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hostile_json *h, ledger, hostile_erasure_requests)
{
        struct veil_erasure_keys ek;
        struct veil_erasure_request req;
        char err[256] = "";
        int rc;

        keys_init(&ek, "k1", 0);
        rc = veil_erasure_request_decode(&ek, h->json, strlen(h->json), &req,
                                         err, sizeof(err));
        cr_assert(rc == VEIL_EDATA || rc == VEIL_EAUTH, "%s: %d", h->json, rc);
        cr_assert(strncmp(err, "erasure: ", 9) == 0, "%s", err);
        cr_assert_null(req.key);
        veil_erasure_keys_destroy(&ek);
}

Test(ledger, erasure_encode_refuses_bad_input)
{
        struct veil_erasure_keys ek;
        char *json = NULL, err[256];
        size_t n;

        keys_init(&ek, "k1", 0);
        cr_assert_eq(veil_erasure_request_encode(&ek, "", 0, 1, "r", &json, &n,
                                                 err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_erasure_request_encode(&ek, "k", 1, 1, "a b", &json,
                                                 &n, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_erasure_request_encode(&ek, "k", 1, -1, "r", &json,
                                                 &n, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_null(json);
        veil_erasure_keys_destroy(&ek);
        cr_assert_eq(
                veil_erasure_keys_init(&ek, MASTER, 16, "k1", err, sizeof(err)),
                VEIL_EINVAL);
        cr_assert_eq(veil_erasure_keys_init(&ek, MASTER, 32, "bad id", err,
                                            sizeof(err)),
                     VEIL_EINVAL);
}

/* ---- version 2 ------------------------------------------------------------
 */

static const unsigned char ID[VEIL_LEDGER_ID_LEN] = {
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* Two purposes' entries of one source key. */
static size_t enc2(unsigned char *key, size_t *klen, unsigned char *val,
                   size_t cap)
{
        struct veil_ledger_entry e[2] = {
                {"customers.analytics", 19, (const unsigned char *)"k1:hash", 7,
                 1000, 10},
                {"customers.marketing", 19, (const unsigned char *)"C42", 3,
                 INT64_MAX, -5},
        };
        char err[256] = "";
        size_t vlen   = 0;

        cr_assert_eq(veil_ledger_key2_encode("customers", ID, key, 64, klen,
                                             err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_ledger_value2_len(e, 2),
                     6 + 2 * (1 + 19 + 2 + 16) + 7 + 3);
        cr_assert_eq(veil_ledger_value2_encode(7, e, 2, val, cap, &vlen, err,
                                               sizeof(err)),
                     0, "%s", err);
        return vlen;
}

Test(ledger, v2_round_trip_holds_every_purpose)
{
        static struct veil_ledger_group g;
        unsigned char key[64], val[256];
        char err[256] = "";
        size_t klen, vlen = enc2(key, &klen, val, sizeof(val));

        cr_assert_eq(klen, veil_ledger_key2_len(9));
        cr_assert_eq(veil_ledger_key_version(key, klen), 2);
        cr_assert_eq(
                veil_ledger_decode2(key, klen, val, vlen, &g, err, sizeof(err)),
                0, "%s", err);
        cr_assert_eq(g.source_len, 9);
        cr_assert_eq(memcmp(g.source, "customers", 9), 0);
        cr_assert_eq(memcmp(g.id, ID, sizeof(ID)), 0);
        cr_assert_not(g.tombstone);
        cr_assert_eq(g.partition, 7);
        cr_assert_eq(g.n, 2);
        cr_assert_eq(g.entries[0].key_len, 7);
        cr_assert_eq(memcmp(g.entries[0].key, "k1:hash", 7), 0);
        cr_assert_eq(g.entries[0].deadline_ms, 1000);
        cr_assert_eq(g.entries[0].record_ts_ms, 10);
        cr_assert_eq(memcmp(g.entries[1].topic, "customers.marketing", 19), 0);
        cr_assert_eq(g.entries[1].deadline_ms, INT64_MAX);
        cr_assert_eq(g.entries[1].record_ts_ms, -5);
        /* A version 1 decoder refuses a version 2 key, and the other way. */
        {
                struct veil_ledger_record rec;
                unsigned char k1[64];
                size_t n =
                        enc_key("customers.analytics", "k", 1, k1, sizeof(k1));

                cr_assert_eq(veil_ledger_decode(key, klen, val, vlen, &rec, err,
                                                sizeof(err)),
                             VEIL_EDATA);
                cr_assert_eq(veil_ledger_key_version(k1, n), 1);
                cr_assert_eq(veil_ledger_decode2(k1, n, NULL, 0, &g, err,
                                                 sizeof(err)),
                             VEIL_EDATA);
        }
        /* The tombstone. */
        cr_assert_eq(
                veil_ledger_decode2(key, klen, NULL, 0, &g, err, sizeof(err)),
                0, "%s", err);
        cr_assert(g.tombstone);
        cr_assert_eq(g.n, 0);
}

Test(ledger, v2_every_truncation_and_bad_byte_is_rejected)
{
        static struct veil_ledger_group g;
        unsigned char key[64], val[256], bad[256];
        char err[256] = "";
        size_t klen, vlen = enc2(key, &klen, val, sizeof(val)), n;

        /* Any shorter value ends inside an entry or the header. */
        for (n = 1; n < vlen; n++) {
                memcpy(bad, val, n);
                cr_assert_eq(veil_ledger_decode2(key, klen, bad, n, &g, err,
                                                 sizeof(err)),
                             VEIL_EDATA, "%zu bytes decoded", n);
                cr_assert_eq(g.n, 0);
        }
        /* A byte more. */
        memcpy(bad, val, vlen);
        bad[vlen] = 0;
        cr_assert_eq(veil_ledger_decode2(key, klen, bad, vlen + 1, &g, err,
                                         sizeof(err)),
                     VEIL_EDATA);
        cr_assert(strstr(err, "after entry"), "%s", err);
        /* Version, partition, entry count, topic, deadline. */
        struct {
                size_t at;
                unsigned char v;
        } flips[] = {{0, 1}, {1, 0x80}, {5, 0}, {5, 3}, {7, '/'}, {35, 0x80}};
        for (n = 0; n < sizeof(flips) / sizeof(*flips); n++) {
                memcpy(bad, val, vlen);
                bad[flips[n].at] = flips[n].v;
                cr_assert_eq(veil_ledger_decode2(key, klen, bad, vlen, &g, err,
                                                 sizeof(err)),
                             VEIL_EDATA, "flip at %zu decoded", flips[n].at);
        }
        /* Keys: too short, wrong marker, bad source, no separator. */
        cr_assert_eq(
                veil_ledger_decode2(key, 18, val, vlen, &g, err, sizeof(err)),
                VEIL_EDATA);
        memcpy(bad, key, klen);
        bad[1] = 3;
        cr_assert_eq(
                veil_ledger_decode2(bad, klen, val, vlen, &g, err, sizeof(err)),
                VEIL_EDATA);
        memcpy(bad, key, klen);
        bad[3] = ' ';
        cr_assert_eq(
                veil_ledger_decode2(bad, klen, val, vlen, &g, err, sizeof(err)),
                VEIL_EDATA);
        memcpy(bad, key, klen);
        bad[2 + 9] = 'x';
        cr_assert_eq(
                veil_ledger_decode2(bad, klen, val, vlen, &g, err, sizeof(err)),
                VEIL_EDATA);
        /* Errors name positions, never bytes. */
        cr_assert_null(strstr(err, "customers"), "%s", err);
}

Test(ledger, v2_repeated_entries_are_refused_both_ways)
{
        static struct veil_ledger_group g;
        struct veil_ledger_entry e[2] = {
                {"t", 1, (const unsigned char *)"k", 1, 1, 1},
                {"t", 1, (const unsigned char *)"k", 1, 2, 2},
        };
        unsigned char key[64], val[128];
        char err[256] = "";
        size_t klen, vlen;

        cr_assert_eq(veil_ledger_value2_encode(0, e, 2, val, sizeof(val), &vlen,
                                               err, sizeof(err)),
                     VEIL_EINVAL);
        /* The same topic under another key (a rotated transform) is fine. */
        e[1].key = (const unsigned char *)"j";
        cr_assert_eq(veil_ledger_value2_encode(0, e, 2, val, sizeof(val), &vlen,
                                               err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_ledger_key2_encode("s", ID, key, sizeof(key), &klen,
                                             err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(
                veil_ledger_decode2(key, klen, val, vlen, &g, err, sizeof(err)),
                0, "%s", err);
        /* Hand-made: the second entry's key byte made equal. */
        val[6 + 1 + 1 + 2 + 1 + 16 + 1 + 1 + 2] = 'k';
        cr_assert_eq(
                veil_ledger_decode2(key, klen, val, vlen, &g, err, sizeof(err)),
                VEIL_EDATA);
        cr_assert(strstr(err, "repeats"), "%s", err);
        /* No entries, negative numbers, bad topics. */
        cr_assert_eq(veil_ledger_value2_encode(0, e, 0, val, sizeof(val), &vlen,
                                               err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_ledger_value2_encode(-1, e, 1, val, sizeof(val),
                                               &vlen, err, sizeof(err)),
                     VEIL_EINVAL);
        e[0].deadline_ms = -1;
        cr_assert_eq(veil_ledger_value2_encode(0, e, 1, val, sizeof(val), &vlen,
                                               err, sizeof(err)),
                     VEIL_EINVAL);
        e[0].deadline_ms = 1;
        e[0].topic       = "..";
        e[0].topic_len   = 2;
        cr_assert_eq(veil_ledger_value2_encode(0, e, 1, val, sizeof(val), &vlen,
                                               err, sizeof(err)),
                     VEIL_EINVAL);
        e[0].topic     = "t";
        e[0].topic_len = 1;
        cr_assert_eq(veil_ledger_value2_encode(0, e, 1, val, 10, &vlen, err,
                                               sizeof(err)),
                     VEIL_EINVAL); /* cap */
        cr_assert_eq(veil_ledger_key2_encode("a b", ID, key, sizeof(key), &klen,
                                             err, sizeof(err)),
                     VEIL_EINVAL);
}

Test(ledger, v2_random_bytes_decode_or_fail_cleanly)
{
        static struct veil_ledger_group g;
        unsigned char key[64], val[256];
        char err[256];
        size_t klen, vlen = enc2(key, &klen, val, sizeof(val)), i, n;
        int ok = 0;

        for (i = 0; i < 20000; i++) {
                unsigned char *v;

                n = (size_t)(rng() % (vlen + 4));
                v = malloc(n ? n : 1);
                memcpy(v, val, n < vlen ? n : vlen);
                if (n)
                        v[rng() % n] ^= (unsigned char)(1u << (rng() % 8));
                if (!veil_ledger_decode2(key, klen, v, n, &g, err, sizeof(err)))
                        ok++;
                free(v);
        }
        cr_assert_gt(ok, 0); /* some flips land in keys or timestamps */
}

Test(ledger, v2_id_is_keyed_and_never_the_key)
{
        struct veil_hmac a, b;
        unsigned char x[VEIL_LEDGER_ID_LEN], y[VEIL_LEDGER_ID_LEN],
                z[VEIL_LEDGER_ID_LEN];
        char big[2000];

        veil_hmac_init(&a, "master-one-0123456789abcdef0123456789", 36);
        veil_hmac_init(&b, "master-two-0123456789abcdef0123456789", 36);
        veil_ledger_id(&a, "customers", "C42", 3, x);
        veil_ledger_id(&a, "customers", "C42", 3, y);
        cr_assert_eq(memcmp(x, y, sizeof(x)), 0); /* stable */
        veil_ledger_id(&b, "customers", "C42", 3, z);
        cr_assert_neq(memcmp(x, z, sizeof(x)), 0); /* keyed */
        veil_ledger_id(&a, "orders", "C42", 3, z);
        cr_assert_neq(memcmp(x, z, sizeof(x)), 0); /* per source */
        veil_ledger_id(&a, "customers", "C43", 3, z);
        cr_assert_neq(memcmp(x, z, sizeof(x)), 0);
        cr_assert_null(memmem(x, sizeof(x), "C42", 3));
        memset(big, 'k', sizeof(big)); /* a key longer than the stack copy */
        veil_ledger_id(&a, "customers", big, sizeof(big), z);
        veil_ledger_id(&a, "customers", big, sizeof(big) - 1, y);
        cr_assert_neq(memcmp(y, z, sizeof(y)), 0);
}

Test(ledger, batch_coalesces_v2_records_with_v1_beside)
{
        struct veil_ledger_batch *b = veil_ledger_batch_new();
        struct veil_ledger_value lv = {5, 6, 1};
        struct veil_ledger_pending p;
        unsigned char key[64], val[256];
        char err[256] = "";
        size_t klen, vlen = enc2(key, &klen, val, sizeof(val));

        cr_assert_eq(veil_ledger_batch_put2(b, key, klen, 3, val, 10, err,
                                            sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(
                veil_ledger_batch_put(b, "t", "k", 1, 1, &lv, err, sizeof(err)),
                0, "%s", err);
        cr_assert_eq(veil_ledger_batch_put2(b, key, klen, 3, val, vlen, err,
                                            sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_ledger_batch_count(b), 2);
        cr_assert_eq(veil_ledger_batch_puts(b), 3);
        veil_ledger_batch_get(b, 0, &p);
        cr_assert_eq(p.key_len, klen);
        cr_assert_eq(p.value_len, vlen); /* the last put */
        cr_assert_eq(memcmp(p.value, val, vlen), 0);
        cr_assert_eq(p.partition, 3);
        veil_ledger_batch_get(b, 1, &p);
        cr_assert_eq(p.value_len, VEIL_LEDGER_VALUE_LEN);
        cr_assert_eq(veil_ledger_batch_put2(b, key, klen, 3, NULL, 0, err,
                                            sizeof(err)),
                     0, "%s", err);
        veil_ledger_batch_get(b, 0, &p);
        cr_assert_null(p.value);
        cr_assert_eq(veil_ledger_batch_put2(b, key, klen, -1, NULL, 0, err,
                                            sizeof(err)),
                     VEIL_EINVAL);
        veil_ledger_batch_destroy(b);
}
