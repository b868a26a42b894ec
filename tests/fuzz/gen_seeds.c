/* gen_seeds.c - writes the binary seed corpora of the fuzz harnesses from
 * bytes the code itself produces (ledger records, encrypt tokens, erasure
 * requests, dead letters sealed with config/veil.yaml's DLQ key), so the seeds
 * are exactly what Veil writes. Not a harness (the harnesses are
 * tests/fuzz/fuzz_*.c). Regenerate, from the repository root:
 *
 *   make fuzz-seeds
 *
 * The master key and key ids match the harnesses'. GCM tokens and sealed
 * erasure keys carry a random nonce, so a regeneration changes those files
 * (every version is as good a seed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "dlq.h"
#include "ledger.h"
#include "transform.h"
#include "util.h"

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "gen_seeds: %s:%d: %s\n", __FILE__,    \
                                __LINE__, #cond);                              \
                        exit(1);                                               \
                }                                                              \
        } while (0)

static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-fuzzer";

static void put(const char *dir, const char *name, const void *data, size_t len)
{
        char path[512];
        FILE *f;

        mkdir(dir, 0755);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wb");
        CHECK(f);
        CHECK(len == 0 || fwrite(data, 1, len, f) == len);
        CHECK(fclose(f) == 0);
}

/* ---- ledger: flags | (klen:2 | vlen:1 | key | value)* ---- */

struct rec_spec {
        const char *topic;
        const char *key;
        int64_t deadline, ts;
        int32_t partition;
        int tombstone;
};

static size_t ledger_append(unsigned char *buf, size_t pos,
                            const struct rec_spec *r)
{
        unsigned char key[1024], val[VEIL_LEDGER_VALUE_LEN];
        struct veil_ledger_value v = {r->deadline, r->ts, r->partition};
        size_t klen;
        char err[256];

        CHECK(veil_ledger_key_encode(r->topic, r->key, strlen(r->key), key,
                                     sizeof(key), &klen, err,
                                     sizeof(err)) == 0);
        buf[pos++] = (unsigned char)(klen >> 8);
        buf[pos++] = (unsigned char)klen;
        buf[pos++] = r->tombstone ? 0 : VEIL_LEDGER_VALUE_LEN;
        memcpy(buf + pos, key, klen);
        pos += klen;
        if (!r->tombstone) {
                CHECK(veil_ledger_value_encode(&v, val, err, sizeof(err)) == 0);
                memcpy(buf + pos, val, sizeof(val));
                pos += sizeof(val);
        }
        return pos;
}

static void gen_ledger(void)
{
        static const struct rec_spec one[] = {
                {"customers.analytics",
                 "k1:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd", 1767225600000,
                 1759449600000, 0, 0}};
        static const struct rec_spec several[] = {
                {"customers.analytics", "c-1001", 1767225600000, 1759449600000,
                 3, 0},
                {"customers.marketing", "c-1001", 1764633600000, 1759449600000,
                 3, 0},
                {"customers.analytics", "c-1002", 1767225600001, 1759449600001,
                 1, 0},
                {"customers.analytics", "c-1001", 0, 0, 0, 1},
                {"customers.analytics", "c-1002", 1, 2, 0, 0},
                {"unknown.topic", "x", 5, 5, 0, 0},
                {"a", "", INT64_MAX, INT64_MAX, INT32_MAX, 0},
                {"t-1_x.y", "\x01\x02", 0, 0, 0, 1}};
        unsigned char buf[4096];
        size_t pos, i;

        buf[0] = 0;
        pos    = ledger_append(buf, 1, &one[0]);
        put("tests/fuzz/corpus_ledger", "one", buf, pos);
        pos = 1;
        for (i = 0; i < sizeof(several) / sizeof(several[0]); i++)
                pos = ledger_append(buf, pos, &several[i]);
        put("tests/fuzz/corpus_ledger", "several", buf, pos);
        buf[0] = 1; /* the same, inside a rolled-back transaction */
        put("tests/fuzz/corpus_ledger", "several_txn", buf, pos);
}

/* ---- tokens: selector | token, or 0x80|keys | plaintext ---- */

static void gen_tokens(void)
{
        static const char *const plains[] = {
                "alice@example.com", "4111 1111 1111 1111", "",
                "Ünïcödé straße 7, 1010 Wien",
                "a longer note that spans more than one AES block of text..."};
        static const char *const mname[] = {"siv", "gcm"};
        static const char *const oname[] = {"str", "bytes"};
        struct veil_tx_keys keys[3];
        unsigned char tok[1024];
        char err[256], name[64];
        size_t p, m, o, k, len;

        CHECK(veil_tx_keys_init(&keys[0], master, sizeof(master), "k1",
                                "analytics", false, err, sizeof(err)) == 0);
        CHECK(veil_tx_keys_init(&keys[1], master, sizeof(master), "k1",
                                "marketing", false, err, sizeof(err)) == 0);
        CHECK(veil_tx_keys_init(&keys[2], master, sizeof(master), "key.2-x",
                                NULL, true, err, sizeof(err)) == 0);
        for (k = 0; k < 3; k++)
                for (p = 0; p < sizeof(plains) / sizeof(plains[0]); p++)
                        for (m = 0; m < 2; m++)
                                for (o = 0; o < 2; o++) {
                                        if (p > 1 && k > 0)
                                                continue;
                                        tok[0] = (unsigned char)k;
                                        CHECK(veil_tx_encrypt(
                                                      &keys[k],
                                                      (enum veil_encrypt_mode)m,
                                                      (enum veil_encrypt_output)
                                                              o,
                                                      plains[p],
                                                      strlen(plains[p]),
                                                      tok + 1, sizeof(tok) - 1,
                                                      &len) == 0);
                                        snprintf(name, sizeof(name),
                                                 "k%zu_p%zu_%s_%s", k, p,
                                                 mname[m], oname[o]);
                                        put("tests/fuzz/corpus_token", name,
                                            tok, len + 1);
                                }
        for (p = 0; p < 2; p++) {
                tok[0] = 0x80 | (unsigned char)p;
                len    = strlen(plains[p]);
                memcpy(tok + 1, plains[p], len);
                snprintf(name, sizeof(name), "roundtrip_%zu", p);
                put("tests/fuzz/corpus_token", name, tok, len + 1);
        }
        for (k = 0; k < 3; k++)
                veil_tx_keys_destroy(&keys[k]);
}

/* ---- erasure request values ---- */

static void gen_erasure(void)
{
        static const char *const subjects[] = {"c-1001", "alice@example.com",
                                               "Ünïcödé"};
        struct veil_erasure_keys ek;
        char err[256], name[64], *json;
        size_t i, len;

        CHECK(veil_erasure_keys_init(&ek, master, sizeof(master), "k1", err,
                                     sizeof(err)) == 0);
        for (i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
                CHECK(veil_erasure_request_encode(
                              &ek, subjects[i], strlen(subjects[i]),
                              1764633600000 + (int64_t)i,
                              "0b9c6c52-3f5e-4d0e-9a7e-2f4b8e1c5d6a", &json,
                              &len, err, sizeof(err)) == 0);
                snprintf(name, sizeof(name), "sealed_%zu", i);
                put("tests/fuzz/corpus_erasure", name, json, len);
                free(json);
        }
        /* Other tools may send the key in clear. */
        {
                static const char clear[] =
                        "{\"v\": 1, \"key\": \"c-1001\", \"requested_at\": "
                        "1764633600000, \"request_id\": \"req-1\"}";
                static const char clear_nov[] =
                        "{\"key\":\"\\u00fcml\\u00e4ut\",\"requested_at\":0,"
                        "\"request_id\":\"a:b.c_d-e\"}";

                put("tests/fuzz/corpus_erasure", "clear", clear,
                    sizeof(clear) - 1);
                put("tests/fuzz/corpus_erasure", "clear_no_version", clear_nov,
                    sizeof(clear_nov) - 1);
        }
        veil_erasure_keys_destroy(&ek);
}

/* ---- dead letters: flags | n headers | (name idx | len | bytes)* |
 * key len (2) | key | value (fuzz_dlq.c's names[]) ---- */

struct letter {
        const char *name;
        int flags;
        const char *hdrs[8][2]; /* name index as a digit string, value */
        const char *key, *value;
        int seal;
};

static void gen_dlq(void)
{
        static const struct letter letters[] = {
                {"sealed",
                 3,
                 {{"0", "SCHEMA_NOT_FOUND"},
                  {"5", "schema id 99 not in the registry"},
                  {"1", "customers/1/42"},
                  {"2", "encrypted"},
                  {"6", "aes-256-gcm"},
                  {"3", "k1"}},
                 "c-1001",
                 "\x00\x00\x00\x00\x63\x02\x06"
                 "abc",
                 1},
                {"raw",
                 3,
                 {{"0", "DECODE"}, {"1", "customers/0/7"}, {"2", "raw"}},
                 "c-1002",
                 "raw value bytes",
                 0},
                {"raw_null_key",
                 2,
                 {{"0", "DECODE"}, {"1", "customers/2/9"}},
                 NULL,
                 "x",
                 0},
                {"replayed_before",
                 7,
                 {{"0", "DECODE"}, {"1", "customers/0/1"}, {"2", "raw"}},
                 "k",
                 "v",
                 0},
                {"marker", 0, {{"4", "veil.dlq/0/3"}}, NULL, NULL, 0},
                {"replay_of",
                 3,
                 {{"0", "DECODE"},
                  {"1", "customers/1/2"},
                  {"7", "veil.dlq/0/1"},
                  {"2", "encrypted"},
                  {"3", "k1"}},
                 "k",
                 "v",
                 1},
                {"other_key_id",
                 3,
                 {{"0", "DECODE"},
                  {"1", "customers/1/2"},
                  {"2", "encrypted"},
                  {"3", "k9"}},
                 "k",
                 "v",
                 1},
        };
        struct veil_config_opts opts = {.skip_kafka_check = true};
        struct veil_config *config;
        struct veil_aead aead;
        unsigned char buf[2048], sealed[512];
        char err[512];
        size_t i, h, pos, n, len, nh_at;

        config = veil_config_load("config/veil.yaml", &opts, err, sizeof(err));
        CHECK(config);
        CHECK(veil_dlq_aead_init(&aead, config, err, sizeof(err)) == 0);
        for (i = 0; i < sizeof(letters) / sizeof(letters[0]); i++) {
                const struct letter *l = &letters[i];
                const char *kv[2]      = {l->key, l->value};
                size_t kvlen[2]        = {l->key ? strlen(l->key) : 0,
                                   l->value ? strlen(l->value) : 0};
                unsigned char *kvout[2];
                size_t kvout_len[2];
                unsigned char kbuf[256], vbuf[256];

                kvout[0] = kbuf;
                kvout[1] = vbuf;
                if (l->value && !strcmp(l->name, "sealed"))
                        kvlen[1] = 10; /* the Avro-ish bytes hold a NUL */
                for (n = 0; n < 2; n++) {
                        if (!kv[n]) {
                                kvout_len[n] = 0;
                                continue;
                        }
                        if (l->seal) {
                                CHECK(veil_aead_seal(&aead, kv[n], kvlen[n],
                                                     sealed, sizeof(sealed),
                                                     &len) == 0);
                                memcpy(kvout[n], sealed, len);
                                kvout_len[n] = len;
                        } else {
                                memcpy(kvout[n], kv[n], kvlen[n]);
                                kvout_len[n] = kvlen[n];
                        }
                }
                buf[0] = (unsigned char)l->flags;
                nh_at  = 1;
                pos    = 2;
                for (h = 0; h < 8 && l->hdrs[h][0]; h++) {
                        len        = strlen(l->hdrs[h][1]);
                        buf[pos++] = (unsigned char)atoi(l->hdrs[h][0]);
                        buf[pos++] = (unsigned char)len;
                        memcpy(buf + pos, l->hdrs[h][1], len);
                        pos += len;
                }
                buf[nh_at] = (unsigned char)h;
                buf[pos++] = (unsigned char)(kvout_len[0] >> 8);
                buf[pos++] = (unsigned char)kvout_len[0];
                memcpy(buf + pos, kvout[0], kvout_len[0]);
                pos += kvout_len[0];
                memcpy(buf + pos, kvout[1], kvout_len[1]);
                pos += kvout_len[1];
                put("tests/fuzz/corpus_dlq", l->name, buf, pos);
        }
        veil_aead_destroy(&aead);
        veil_config_destroy(config);
}

int main(void)
{
        gen_ledger();
        gen_tokens();
        gen_erasure();
        gen_dlq();
        return 0;
}
