/* test_dlq.c - the dead letter codec: round trips, headers bound to the
 * sealed payload (a changed veil.source or veil.error does not open), old
 * unbound letters, raw letters in an encrypted DLQ, hostile headers. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "dlq.h"
#include "veil.h"

TestSuite(dlq);

static char dir[64];

static struct veil_config *config_new(const char *payload, const char *kid)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        struct veil_config *config;
        char path[128], err[1024];
        FILE *f;

        if (!dir[0]) {
                snprintf(dir, sizeof(dir), "/tmp/veil-dlq-XXXXXX");
                cr_assert(mkdtemp(dir));
        }
        snprintf(path, sizeof(path), "%s/veil-%s-%s.yaml", dir, payload, kid);
        f = fopen(path, "w");
        cr_assert(f);
        fprintf(f,
                "kafka:\n  bootstrap.servers: 127.0.0.1:1\n"
                "registry: { url: file://%s }\n"
                "keys: { key_id: %s }\n"
                "classes:\n  customer_id: { tier: internal }\n"
                "purposes:\n"
                "  a:\n    license: { id: L-A, valid_until: 2099-12-31 }\n"
                "    retention: 1d\n"
                "    transforms: { customer_id: keep }\n"
                "routes:\n  - source: src\n    key_class: customer_id\n"
                "    purposes: { a: src.a }\n"
                "dlq: { payload: %s }\n",
                dir, kid, payload);
        fclose(f);
        setenv("VEIL_HMAC_KEY", "dlq-unit-test-master-key-0123456789abcdefgh",
               1);
        config = veil_config_load(path, &opts, err, sizeof(err));
        cr_assert(config, "%s", err);
        return config;
}

static void letter_fill(struct veil_dlq_letter *l)
{
        memset(l, 0, sizeof(*l));
        snprintf(l->code, sizeof(l->code), "bad-magic");
        snprintf(l->detail, sizeof(l->detail), "byte 0 is 0x07, not 0x00");
        snprintf(l->source, sizeof(l->source), "src/3/1234");
        snprintf(l->policy, sizeof(l->policy), "abc123");
        l->key       = "C-1";
        l->key_len   = 3;
        l->value     = "\x07secret value alice@example.com";
        l->value_len = 31;
}

struct built {
        rd_kafka_headers_t *hdrs;
        unsigned char key[512], value[512];
        size_t key_len, value_len;
};

static void build(struct veil_dlq *d, const struct veil_dlq_letter *l,
                  struct built *b)
{
        const void *k, *v;
        char err[256];

        cr_assert_eq(veil_dlq_build(d, l, &b->hdrs, &k, &b->key_len, &v,
                                    &b->value_len, err, sizeof(err)),
                     0, "%s", err);
        cr_assert(b->key_len <= sizeof(b->key) &&
                  b->value_len <= sizeof(b->value));
        memcpy(b->key, k, b->key_len);
        memcpy(b->value, v, b->value_len);
}

static void set_header(rd_kafka_headers_t *hdrs, const char *name,
                       const char *value)
{
        rd_kafka_header_remove(hdrs, name);
        rd_kafka_header_add(hdrs, name, -1, value, -1);
}

static int open_built(struct veil_dlq *d, const struct built *b,
                      struct veil_dlq_letter *out)
{
        char err[512];

        return veil_dlq_open(d, b->hdrs, b->key, b->key_len, b->value,
                             b->value_len, out, err, sizeof(err));
}

Test(dlq, sealed_round_trip_keeps_every_field)
{
        struct veil_config *config = config_new("encrypted", "k1");
        struct veil_dlq *d         = veil_dlq_new(config, NULL, 0);
        struct veil_dlq_letter l, got;
        struct built b;

        cr_assert(d);
        letter_fill(&l);
        build(d, &l, &b);
        /* sealed: nonce + tag + the binding, never the plaintext */
        cr_assert_gt(b.value_len, l.value_len + 28);
        cr_assert_null(memmem(b.value, b.value_len, "alice", 5));
        cr_assert_eq(open_built(d, &b, &got), 0);
        cr_assert(got.encrypted && got.bound);
        cr_assert_str_eq(got.code, "bad-magic");
        cr_assert_str_eq(got.source, "src/3/1234");
        cr_assert_str_eq(got.key_id, "k1");
        cr_assert_eq(got.value_len, l.value_len);
        cr_assert_eq(memcmp(got.value, l.value, l.value_len), 0);
        cr_assert_eq(got.key_len, 3);
        cr_assert_eq(memcmp(got.key, "C-1", 3), 0);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(d);
        veil_config_destroy(config);
}

/* A letter held for one purpose (purpose-halted) names it in veil.purpose,
 * bound to the seal: moved to another purpose, or stripped (which would
 * replay it to every purpose), it does not open. */
Test(dlq, purpose_of_a_held_letter_is_bound)
{
        struct veil_config *config = config_new("encrypted", "k1");
        struct veil_dlq *d         = veil_dlq_new(config, NULL, 0);
        struct veil_dlq_letter l, got;
        struct built b;

        letter_fill(&l);
        snprintf(l.code, sizeof(l.code), "purpose-halted");
        snprintf(l.purpose, sizeof(l.purpose), "analytics");
        build(d, &l, &b);
        cr_assert_eq(open_built(d, &b, &got), 0);
        cr_assert_str_eq(got.purpose, "analytics");
        set_header(b.hdrs, VEIL_H_PURPOSE, "marketing");
        cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH);
        rd_kafka_header_remove(b.hdrs, VEIL_H_PURPOSE);
        cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH);
        rd_kafka_headers_destroy(b.hdrs);
        /* and one of every purpose cannot be narrowed to one */
        letter_fill(&l);
        build(d, &l, &b);
        set_header(b.hdrs, VEIL_H_PURPOSE, "analytics");
        cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(d);
        veil_config_destroy(config);
}

/* Each header the seal is bound to, changed: the letter does not open. */
Test(dlq, changed_headers_do_not_open)
{
        static const char *const changes[][2] = {
                {VEIL_H_SOURCE, "src/3/1235"},
                {VEIL_H_SOURCE, "other/3/1234"},
                {VEIL_H_ERROR, "truncated"},
        };
        struct veil_config *config = config_new("encrypted", "k1");
        struct veil_dlq *d         = veil_dlq_new(config, NULL, 0);
        struct veil_dlq_letter l, got;
        struct built b;
        size_t i;

        letter_fill(&l);
        for (i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
                build(d, &l, &b);
                set_header(b.hdrs, changes[i][0], changes[i][1]);
                cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH, "changed %s",
                             changes[i][0]);
                rd_kafka_headers_destroy(b.hdrs);
        }
        /* the sealed key passed off as the value */
        build(d, &l, &b);
        memcpy(b.value, b.key, b.key_len);
        b.value_len = b.key_len;
        cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH);
        rd_kafka_headers_destroy(b.hdrs);
        /* a flipped payload bit */
        build(d, &l, &b);
        b.value[b.value_len / 2] ^= 1;
        cr_assert_eq(open_built(d, &b, &got), VEIL_EAUTH);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(d);
        veil_config_destroy(config);
}

Test(dlq, key_id_not_held_is_not_found)
{
        struct veil_config *c1 = config_new("encrypted", "k1");
        struct veil_config *c2 = config_new("encrypted", "k2");
        struct veil_dlq *d1    = veil_dlq_new(c1, NULL, 0);
        struct veil_dlq *d2    = veil_dlq_new(c2, NULL, 0);
        struct veil_dlq_letter l, got;
        struct built b;

        letter_fill(&l);
        build(d1, &l, &b);
        cr_assert_eq(open_built(d2, &b, &got), VEIL_ENOTFOUND);
        /* relabelled to the id this config holds: bound, so it fails */
        set_header(b.hdrs, VEIL_H_KEY_ID, "k2");
        cr_assert_eq(open_built(d2, &b, &got), VEIL_EAUTH);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(d1);
        veil_dlq_destroy(d2);
        veil_config_destroy(c1);
        veil_config_destroy(c2);
}

Test(dlq, raw_letters_open_only_where_the_config_says_raw)
{
        struct veil_config *raw = config_new("raw", "k1");
        struct veil_config *enc = config_new("encrypted", "k1");
        struct veil_dlq *dr     = veil_dlq_new(raw, NULL, 0);
        struct veil_dlq *de     = veil_dlq_new(enc, NULL, 0);
        struct veil_dlq_letter l, got;
        struct built b;

        letter_fill(&l);
        build(dr, &l, &b);
        cr_assert_eq(b.value_len, l.value_len);
        cr_assert_eq(open_built(dr, &b, &got), 0);
        cr_assert_not(got.encrypted);
        cr_assert_eq(memcmp(got.value, l.value, l.value_len), 0);
        /* a raw letter planted in an encrypted DLQ is refused */
        cr_assert_eq(open_built(de, &b, &got), VEIL_ECONFIG);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(dr);
        veil_dlq_destroy(de);
        veil_config_destroy(raw);
        veil_config_destroy(enc);
}

/* Letters written before the binding (cipher "aes-256-gcm") still open. */
Test(dlq, unbound_letters_of_earlier_versions_open)
{
        struct veil_config *config = config_new("encrypted", "k1");
        struct veil_dlq *d         = veil_dlq_new(config, NULL, 0);
        struct veil_dlq_letter got;
        struct veil_aead aead;
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        unsigned char sealed[128];
        size_t n = 0;
        char err[256];

        cr_assert_eq(veil_aead_init_derived(&aead, VEIL_AEAD_GCM,
                                            config->keys.key,
                                            config->keys.key_len, "veil:dlq",
                                            err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(
                veil_aead_seal(&aead, "old", 3, sealed, sizeof(sealed), &n), 0);
        rd_kafka_header_add(hdrs, VEIL_H_ERROR, -1, "truncated", -1);
        rd_kafka_header_add(hdrs, VEIL_H_SOURCE, -1, "src/0/7", -1);
        rd_kafka_header_add(hdrs, VEIL_H_DLQ_PAYLOAD, -1, "encrypted", -1);
        rd_kafka_header_add(hdrs, VEIL_H_DLQ_CIPHER, -1, "aes-256-gcm", -1);
        rd_kafka_header_add(hdrs, VEIL_H_KEY_ID, -1, "k1", -1);
        cr_assert_eq(veil_dlq_open(d, hdrs, NULL, 0, sealed, n, &got, err,
                                   sizeof(err)),
                     0, "%s", err);
        cr_assert_not(got.bound);
        cr_assert_eq(got.value_len, 3);
        cr_assert_eq(memcmp(got.value, "old", 3), 0);
        rd_kafka_headers_destroy(hdrs);
        veil_aead_destroy(&aead);
        veil_dlq_destroy(d);
        veil_config_destroy(config);
}

Test(dlq, hostile_headers_are_errors_not_crashes)
{
        struct veil_config *config = config_new("encrypted", "k1");
        struct veil_dlq *d         = veil_dlq_new(config, NULL, 0);
        struct veil_dlq_letter got;
        rd_kafka_headers_t *hdrs;
        char err[256], big[1024];

        /* no headers at all */
        cr_assert_eq(
                veil_dlq_open(d, NULL, "k", 1, "v", 1, &got, err, sizeof(err)),
                VEIL_EINVAL);
        /* a replay marker is not a letter */
        hdrs = rd_kafka_headers_new(4);
        rd_kafka_header_add(hdrs, VEIL_H_REPLAY_DONE, -1, "dlq/0/1", -1);
        rd_kafka_header_add(hdrs, VEIL_H_ERROR, -1, "bad-magic", -1);
        cr_assert_eq(veil_dlq_open(d, hdrs, NULL, 0, NULL, 0, &got, err,
                                   sizeof(err)),
                     VEIL_EINVAL);
        rd_kafka_headers_destroy(hdrs);
        /* an over-long source, a NUL inside the code */
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        hdrs                 = rd_kafka_headers_new(4);
        rd_kafka_header_add(hdrs, VEIL_H_ERROR, -1, "x", -1);
        rd_kafka_header_add(hdrs, VEIL_H_SOURCE, -1, big, -1);
        cr_assert_eq(veil_dlq_open(d, hdrs, NULL, 0, NULL, 0, &got, err,
                                   sizeof(err)),
                     VEIL_EINVAL);
        rd_kafka_headers_destroy(hdrs);
        hdrs = rd_kafka_headers_new(4);
        rd_kafka_header_add(hdrs, VEIL_H_ERROR, -1, "a\0b", 3);
        cr_assert_eq(veil_dlq_open(d, hdrs, NULL, 0, NULL, 0, &got, err,
                                   sizeof(err)),
                     VEIL_EINVAL);
        rd_kafka_headers_destroy(hdrs);
        /* sealed payload shorter than nonce + tag */
        hdrs = rd_kafka_headers_new(8);
        rd_kafka_header_add(hdrs, VEIL_H_ERROR, -1, "x", -1);
        rd_kafka_header_add(hdrs, VEIL_H_SOURCE, -1, "s/0/0", -1);
        rd_kafka_header_add(hdrs, VEIL_H_DLQ_PAYLOAD, -1, "encrypted", -1);
        rd_kafka_header_add(hdrs, VEIL_H_DLQ_CIPHER, -1, "aes-256-gcm+ad", -1);
        rd_kafka_header_add(hdrs, VEIL_H_KEY_ID, -1, "k1", -1);
        cr_assert_eq(veil_dlq_open(d, hdrs, NULL, 0, "short", 5, &got, err,
                                   sizeof(err)),
                     VEIL_EAUTH);
        cr_assert_null(strstr(err, "short"));
        rd_kafka_headers_destroy(hdrs);
        veil_dlq_destroy(d);
        veil_config_destroy(config);
}

Test(dlq, positions_parse_with_slashes_in_topics)
{
        char a[] = "my/topic/12/345", b[] = "t/x/1", c[] = "t/1/-2",
             e[] = "/1/2";
        const char *topic;
        int32_t p;
        int64_t o;

        cr_assert_eq(veil_dlq_position_parse(a, &topic, &p, &o), 0);
        cr_assert_str_eq(topic, "my/topic");
        cr_assert_eq(p, 12);
        cr_assert_eq(o, 345);
        cr_assert_eq(veil_dlq_position_parse(b, &topic, &p, &o), VEIL_EINVAL);
        cr_assert_eq(veil_dlq_position_parse(c, &topic, &p, &o), VEIL_EINVAL);
        cr_assert_eq(veil_dlq_position_parse(e, &topic, &p, &o), VEIL_EINVAL);
}

static void key_file(const char *name, const char *text)
{
        char p[160];
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dir, name);
        f = fopen(p, "w");
        cr_assert(f);
        fputs(text, f);
        fclose(f);
        cr_assert_eq(chmod(p, 0600), 0);
}

/* After rotation (k2 active, k1 still in the ring) letters sealed under k1
 * open; new letters are sealed under k2. */
Test(dlq, rotation_keeps_old_letters_open)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        struct veil_config *c1       = config_new("encrypted", "k1"), *c2;
        struct veil_dlq *d1          = veil_dlq_new(c1, NULL, 0), *d2;
        struct veil_dlq_letter l, got;
        struct built b;
        char path[160], err[1024];
        FILE *f;

        /* k1's material is the one config_new put in VEIL_HMAC_KEY */
        key_file("k1.key", "dlq-unit-test-master-key-0123456789abcdefgh");
        key_file("k2.key", "a-second-master-key-for-rotation-0123456789");
        snprintf(path, sizeof(path), "%s/ring.yaml", dir);
        f = fopen(path, "w");
        cr_assert(f);
        fprintf(f,
                "kafka:\n  bootstrap.servers: 127.0.0.1:1\n"
                "registry: { url: file://%s }\n"
                "keys: { active: k2, ring: { k1: { file: k1.key }, "
                "k2: { file: k2.key } } }\n"
                "classes:\n  customer_id: { tier: internal }\n"
                "purposes:\n"
                "  a:\n    license: { id: L-A, valid_until: 2099-12-31 }\n"
                "    retention: 1d\n"
                "    transforms: { customer_id: keep }\n"
                "routes:\n  - source: src\n    key_class: customer_id\n"
                "    purposes: { a: src.a }\n",
                dir);
        fclose(f);
        unsetenv("VEIL_HMAC_KEY");
        c2 = veil_config_load(path, &opts, err, sizeof(err));
        cr_assert(c2, "%s", err);
        d2 = veil_dlq_new(c2, NULL, 0);
        cr_assert(d2);
        letter_fill(&l);
        build(d1, &l, &b);
        cr_assert_eq(open_built(d2, &b, &got), 0);
        cr_assert_str_eq(got.key_id, "k1");
        cr_assert_eq(memcmp(got.value, l.value, l.value_len), 0);
        rd_kafka_headers_destroy(b.hdrs);
        build(d2, &l, &b);
        cr_assert_eq(open_built(d2, &b, &got), 0);
        cr_assert_str_eq(got.key_id, "k2");
        /* the old config cannot open what the new key sealed */
        cr_assert_eq(open_built(d1, &b, &got), VEIL_ENOTFOUND);
        rd_kafka_headers_destroy(b.hdrs);
        veil_dlq_destroy(d1);
        veil_dlq_destroy(d2);
        veil_config_destroy(c1);
        veil_config_destroy(c2);
}
