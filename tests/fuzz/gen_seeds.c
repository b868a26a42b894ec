/* gen_seeds.c - writes the binary seed corpora of the fuzz harnesses from
 * bytes the code itself produces (ledger records, encrypt tokens, erasure
 * requests, dead letters sealed by the DLQ codec), so the seeds
 * are exactly what Veil writes. Not a harness (the harnesses are
 * tests/fuzz/fuzz_*.c). Regenerate, from the repository root:
 *
 *   make fuzz-seeds
 *
 * The master key and key ids match the harnesses'. GCM tokens and sealed
 * erasure keys carry a random nonce, so a regeneration changes those files
 * (every version is as good a seed). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dlq.h"
#include "headers.h"
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

/* Version 2: one record per source key, beside version 1 ones. */
static void gen_ledger_v2(void)
{
        static const unsigned char id[VEIL_LEDGER_ID_LEN] = {
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00};
        struct veil_ledger_entry e[3] = {
                {"customers.analytics", 19,
                 (const unsigned char *)"k1:AbCdEfGhIjKlMnOpQrStUvWxYz", 29,
                 1767225600000, 1759449600000},
                {"customers.marketing", 19, (const unsigned char *)"c-1001", 6,
                 1764633600000, 1759449600000},
                {"customers.support", 17, (const unsigned char *)"c-1001", 6,
                 1759492800000, 1759449600000},
        };
        unsigned char buf[4096], key[128], val[255];
        size_t pos = 1, klen, vlen;
        char err[256];

        buf[0] = 0;
        CHECK(veil_ledger_key2_encode("customers", id, key, sizeof(key), &klen,
                                      err, sizeof(err)) == 0);
        CHECK(veil_ledger_value2_encode(3, e, 3, val, sizeof(val), &vlen, err,
                                        sizeof(err)) == 0);
        buf[pos++] = 0;
        buf[pos++] = (unsigned char)klen;
        buf[pos++] = (unsigned char)vlen;
        memcpy(buf + pos, key, klen);
        pos += klen;
        memcpy(buf + pos, val, vlen);
        pos += vlen;
        /* its tombstone */
        buf[pos++] = 0;
        buf[pos++] = (unsigned char)klen;
        buf[pos++] = 0;
        memcpy(buf + pos, key, klen);
        pos += klen;
        put("tests/fuzz/corpus_ledger", "v2", buf, pos);
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
        gen_ledger_v2();
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

/* ---- dead letters in fuzz_dlq.c's layout: n headers | (name index |
 * len | bytes)* | key len | key | value, sealed by the codec itself under
 * the harness's key, so the fuzzer starts from letters that open ---- */

/* fuzz_dlq.c's names[] order */
enum {
        H_ERROR,
        H_DETAIL,
        H_SOURCE,
        H_POLICY,
        H_PAYLOAD,
        H_CIPHER,
        H_KEY_ID,
        H_REPLAY_OF,
        H_REPLAY_DONE
};

static const char *const hnames[] = {
        VEIL_H_ERROR,  VEIL_H_ERROR_DETAIL, VEIL_H_SOURCE,
        VEIL_H_POLICY, VEIL_H_DLQ_PAYLOAD,  VEIL_H_DLQ_CIPHER,
        VEIL_H_KEY_ID, VEIL_H_REPLAY_OF,    VEIL_H_REPLAY_DONE};

static void gen_dlq_one(struct veil_dlq *d, const char *name,
                        const struct veil_dlq_letter *l)
{
        unsigned char buf[4096];
        rd_kafka_headers_t *hdrs;
        const void *key, *value, *hv;
        size_t key_len, value_len, hl, pos = 1, i;
        char err[256];
        int n = 0;

        CHECK(veil_dlq_build(d, l, &hdrs, &key, &key_len, &value, &value_len,
                             err, sizeof(err)) == 0);
        for (i = 0; i < sizeof(hnames) / sizeof(hnames[0]); i++) {
                if (rd_kafka_header_get_last(hdrs, hnames[i], &hv, &hl))
                        continue;
                CHECK(hl < 256 && pos + 2 + hl < sizeof(buf));
                buf[pos++] = (unsigned char)i;
                buf[pos++] = (unsigned char)hl;
                memcpy(buf + pos, hv, hl);
                pos += hl;
                n++;
        }
        buf[0] = (unsigned char)n;
        CHECK(key_len < 256 && pos + 1 + key_len + value_len < sizeof(buf));
        buf[pos++] = (unsigned char)key_len;
        memcpy(buf + pos, key, key_len);
        pos += key_len;
        memcpy(buf + pos, value, value_len);
        pos += value_len;
        put("tests/fuzz/corpus_dlq", name, buf, pos);
        rd_kafka_headers_destroy(hdrs);
}

static void gen_dlq(void)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        char path[]                  = "/tmp/veil-gen-dlq-XXXXXX", err[1024];
        struct veil_dlq_letter l;
        struct veil_config *config;
        struct veil_dlq *d;
        int fd = mkstemp(path);
        FILE *f;

        CHECK(fd >= 0 && (f = fdopen(fd, "w")));
        fprintf(f, "kafka: { bootstrap.servers: 127.0.0.1:1 }\n"
                   "registry: { url: file:///tmp }\n"
                   "keys: { key_id: k1 }\n"
                   "classes: { id: { tier: internal } }\n"
                   "purposes:\n  a:\n    license: { id: L, valid_until: "
                   "2099-12-31 }\n    retention: 1d\n"
                   "    transforms: { id: keep }\n"
                   "routes:\n  - source: s\n    key_class: id\n"
                   "    purposes: { a: s.a }\n");
        fclose(f);
        /* the key fuzz_dlq.c loads */
        setenv("VEIL_HMAC_KEY", "fuzz-dlq-master-key-0123456789abcdefghij", 1);
        config = veil_config_load(path, &opts, err, sizeof(err));
        unlink(path);
        CHECK(config);
        d = veil_dlq_new(config, err, sizeof(err));
        CHECK(d);
        memset(&l, 0, sizeof(l));
        snprintf(l.code, sizeof(l.code), "bad-magic");
        snprintf(l.detail, sizeof(l.detail), "byte 0 is 0x07");
        snprintf(l.source, sizeof(l.source), "customers/1/42");
        snprintf(l.policy, sizeof(l.policy), "0123abcd");
        l.key       = "C-1001";
        l.key_len   = 6;
        l.value     = "\x07\x00\x00\x00\x01\x02"
                      "abc";
        l.value_len = 9;
        gen_dlq_one(d, "sealed", &l);
        snprintf(l.replay_of, sizeof(l.replay_of), "veil.dlq/0/3");
        gen_dlq_one(d, "sealed_replay_of", &l);
        l.replay_of[0] = '\0';
        l.key          = NULL;
        l.key_len      = 0;
        gen_dlq_one(d, "sealed_null_key", &l);
        veil_dlq_destroy(d);
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
