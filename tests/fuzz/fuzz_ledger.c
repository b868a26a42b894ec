/* fuzz_ledger.c - libFuzzer harness over ledger records as a restoring
 * worker reads them from topics.ledger: decode, re-encode, restore into a
 * retention index. Built by scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_ledger        (FUZZ_SECONDS, default 20)
 *
 * Input: byte 0 = flags (bit 0: restore inside a transaction that is rolled
 * back at the end), then records, each
 *   key length (2 bytes, big-endian) | value length (1 byte) | key | value
 * (value length 0 is a tombstone). Every key and value is copied into a
 * buffer of exactly its size, so a read past either end is an ASan error.
 * A key starting with 0x00 is a version 2 record (one per source key).
 * Checked: a record that decodes re-encodes to the same bytes; after a
 * restore the index holds what the record said; a rolled-back restore
 * leaves the index empty; popping everything empties it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "retention.h"
#include "util.h"
#include "veil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_ledger: %s:%d: %s\n", __FILE__,  \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static const char *const topics[] = {"customers.analytics",
                                     "customers.marketing", "a", "t-1_x.y"};
#define N_TOPICS (sizeof(topics) / sizeof(topics[0]))

static void *dup_exact(const uint8_t *p, size_t n)
{
        void *q;

        if (!n)
                return NULL;
        q = veil_malloc(n);
        memcpy(q, p, n);
        return q;
}

static void check_roundtrip(const struct veil_ledger_record *rec,
                            const unsigned char *key, size_t key_len,
                            const unsigned char *value)
{
        unsigned char *k, v[VEIL_LEDGER_VALUE_LEN];
        char topic[VEIL_LEDGER_TOPIC_MAX + 1], err[256];
        size_t klen = 0, need;

        CHECK(rec->topic_len >= 1 && rec->topic_len <= VEIL_LEDGER_TOPIC_MAX);
        memcpy(topic, rec->topic, rec->topic_len);
        topic[rec->topic_len] = '\0';
        need = veil_ledger_key_len(rec->topic_len, rec->key_len);
        CHECK(need == key_len);
        k = veil_malloc(need);
        CHECK(veil_ledger_key_encode(topic, rec->key, rec->key_len, k, need,
                                     &klen, err, sizeof(err)) == 0);
        CHECK(klen == key_len && !memcmp(k, key, key_len));
        free(k);
        if (rec->tombstone)
                return;
        CHECK(veil_ledger_value_encode(&rec->value, v, err, sizeof(err)) == 0);
        CHECK(!memcmp(v, value, VEIL_LEDGER_VALUE_LEN));
}

/* A version 2 record: decode, and one that decodes re-encodes to the
 * same bytes. */
static void check_v2(const unsigned char *key, size_t key_len,
                     const unsigned char *value, size_t value_len)
{
        static struct veil_ledger_group g;
        char source[VEIL_LEDGER_TOPIC_MAX + 1], err[512] = "";
        unsigned char *k, *v;
        size_t klen, vlen, i;
        int rc;

        rc = veil_ledger_decode2(key, key_len, value, value_len, &g, err,
                                 sizeof(err));
        if (rc) {
                CHECK(rc == VEIL_EDATA && err[0] && g.n == 0);
                return;
        }
        CHECK(g.source_len >= 1 && g.source_len <= VEIL_LEDGER_TOPIC_MAX);
        memcpy(source, g.source, g.source_len);
        source[g.source_len] = '\0';
        k                    = veil_malloc(veil_ledger_key2_len(g.source_len));
        CHECK(veil_ledger_key2_encode(source, g.id, k,
                                      veil_ledger_key2_len(g.source_len), &klen,
                                      err, sizeof(err)) == 0);
        CHECK(klen == key_len && !memcmp(k, key, key_len));
        free(k);
        if (g.tombstone) {
                CHECK(g.n == 0 && (!value || !value_len));
                return;
        }
        CHECK(g.n >= 1 && g.n <= VEIL_LEDGER_MAX_ENTRIES);
        for (i = 0; i < g.n; i++)
                CHECK(g.entries[i].deadline_ms >= 0);
        vlen = veil_ledger_value2_len(g.entries, g.n);
        CHECK(vlen == value_len);
        v = veil_malloc(vlen);
        CHECK(veil_ledger_value2_encode(g.partition, g.entries, g.n, v, vlen,
                                        &vlen, err, sizeof(err)) == 0);
        CHECK(vlen == value_len && !memcmp(v, value, value_len));
        free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_retention *ri = veil_retention_new();
        struct veil_retention_entry got, popped[64];
        struct veil_ledger_record rec;
        bool txn;
        char err[512];
        size_t pos = 1, n;
        int rc;

        if (size < 1) {
                veil_retention_destroy(ri);
                return 0;
        }
        txn = data[0] & 1;
        if (txn)
                veil_retention_begin(ri);
        while (size - pos >= 3) {
                size_t klen = (size_t)data[pos] << 8 | data[pos + 1];
                size_t vlen = data[pos + 2];
                unsigned char *key, *value;

                pos += 3;
                if (klen > size - pos)
                        klen = size - pos;
                key = dup_exact(data + pos, klen);
                pos += klen;
                if (vlen > size - pos)
                        vlen = size - pos;
                value = dup_exact(data + pos, vlen);
                pos += vlen;

                if (veil_ledger_key_version(key, klen) == 2) {
                        check_v2(key, klen, value, vlen);
                        free(key);
                        free(value);
                        continue;
                }
                err[0] = '\0';
                rc     = veil_ledger_decode(key, klen, value, vlen, &rec, err,
                                            sizeof(err));
                if (rc) {
                        CHECK(rc == VEIL_EDATA && err[0]);
                } else {
                        check_roundtrip(&rec, key, klen, value);
                        rc = veil_ledger_restore(ri, topics, N_TOPICS, key,
                                                 klen, value, vlen, err,
                                                 sizeof(err));
                        CHECK(rc == 0 || rc == VEIL_ENOTFOUND);
                        if (rc == 0) {
                                size_t t;

                                for (t = 0; t < N_TOPICS; t++)
                                        if (strlen(topics[t]) ==
                                                    rec.topic_len &&
                                            !memcmp(topics[t], rec.topic,
                                                    rec.topic_len))
                                                break;
                                CHECK(t < N_TOPICS);
                                rc = veil_retention_get(ri, (uint16_t)t,
                                                        rec.key, rec.key_len,
                                                        &got);
                                if (rec.tombstone) {
                                        CHECK(rc == VEIL_ENOTFOUND);
                                } else {
                                        CHECK(rc == 0);
                                        CHECK(got.deadline_ms ==
                                              rec.value.deadline_ms);
                                        CHECK(got.partition ==
                                              rec.value.partition);
                                }
                        }
                }
                free(key);
                free(value);
        }
        if (txn) {
                veil_retention_rollback(ri);
                CHECK(veil_retention_count(ri) == 0);
        }
        do {
                n = veil_retention_pop_expired(ri, INT64_MAX, popped, 64);
        } while (n == 64);
        CHECK(veil_retention_count(ri) == 0);
        CHECK(veil_retention_next_deadline(ri) == INT64_MAX);
        veil_retention_destroy(ri);
        return 0;
}
