/* test_consent.c - licence conditions: the `requires:` and `accept:` keys
 * (every error with FILE:LINE:COL and the key path) and the consent probe
 * over Avro binary (common/consent.c). */
#define _GNU_SOURCE
#include <avro.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "consent.h"
#include "schema.h"
#include "tmpfile.h"
#include "veil.h"

/* ---- config -------------------------------------------------------------- */

static const struct veil_config_opts no_key = {.skip_key = true};

#define BASE                                                                   \
        "classes:\n"                                                           \
        "  customer_id: { tier: internal }\n"                                  \
        "purposes:\n"                                                          \
        "  marketing:\n"                                                       \
        "    transforms: { public: keep }\n"

struct bad_case {
        char yaml[256];
        char msg[200]; /* after "FILE:" */
};

ParameterizedTestParameters(consent, bad_config)
{
        static struct bad_case cases[] = {
                {BASE "    requires: { field: consents.marketing }\n",
                 "6:15: purposes.marketing.requires: missing required key "
                 "'equals'"},
                {BASE "    requires: { equals: true }\n",
                 "6:15: purposes.marketing.requires: missing required key "
                 "'field'"},
                {BASE "    requires: { field: \"a..b\", equals: true }\n",
                 "6:24: purposes.marketing.requires.field: 'a..b' is not a "
                 "field path (record field names joined by '.', e.g. "
                 "consents.marketing)"},
                {BASE "    requires: { field: 1a, equals: true }\n",
                 "6:24: purposes.marketing.requires.field: '1a' is not a "
                 "field path (record field names joined by '.', e.g. "
                 "consents.marketing)"},
                {BASE "    requires: { field: a, equals: [true] }\n",
                 "6:35: purposes.marketing.requires.equals: expected true, "
                 "false or a string, got a list"},
                {BASE "    requires: { field: a, equals: \"\" }\n",
                 "6:35: purposes.marketing.requires.equals: expected true, "
                 "false or a non-empty string"},
                {BASE "    requires: { field: a, equal: true }\n",
                 "6:27: purposes.marketing.requires.equal: unknown key (did "
                 "you mean 'equals'?)"},
                {BASE "    requires:\n",
                 "6:14: purposes.marketing.requires: expected a map with "
                 "'field' and 'equals', got nothing"},
                {BASE "    guard: { on_leak: quarantin }\n",
                 "6:23: purposes.marketing.guard.on_leak: expected one of "
                 "redact, quarantine, halt, got 'quarantin' (did you mean "
                 "'quarantine'?)"},
                {BASE "    guard: { on_leek: redact }\n",
                 "6:14: purposes.marketing.guard.on_leek: unknown key (did "
                 "you mean 'on_leak'?)"},
                {BASE "    guard: [redact]\n",
                 "6:12: purposes.marketing.guard: expected a map, got a "
                 "list"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept: { records: [] }\n",
                 "8:24: routes[0].accept.records: name at least one record, "
                 "or leave 'accept' out to accept every schema"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept: { records: com.x.A }\n",
                 "8:24: routes[0].accept.records: expected a list of record "
                 "full names, got a scalar"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept: { records: [com.x.A, \"com.x-y.B\"] }\n",
                 "8:34: routes[0].accept.records[1]: 'com.x-y.B' is not an "
                 "Avro full name (e.g. com.example.crm.Customer)"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept: { records: [com.x.A, com.x.A] }\n",
                 "8:34: routes[0].accept.records[1]: 'com.x.A' is listed "
                 "twice"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept: { record: [com.x.A] }\n",
                 "8:15: routes[0].accept.record: unknown key (did you mean "
                 "'records'?)"},
                {BASE "routes:\n  - source: customers\n"
                      "    accept:\n",
                 "8:12: routes[0].accept: expected a map with 'records', got "
                 "nothing"},
        };

        return cr_make_param_array(struct bad_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct bad_case *c, consent, bad_config)
{
        char *path = test_write_tmp(c->yaml), err[1024] = "", want[1024];
        struct veil_config *config =
                veil_config_load(path, &no_key, err, sizeof(err));

        cr_assert_null(config, "loaded: %s", c->yaml);
        snprintf(want, sizeof(want), "%s:%s", path, c->msg);
        cr_expect_str_eq(err, want);
        unlink(path);
        free(path);
}

Test(consent, config_values)
{
        char *path = test_write_tmp(
                BASE "    requires: { field: consents.marketing, equals: "
                     "true }\n"
                     "  support:\n"
                     "    requires: { field: status, equals: ACTIVE }\n"
                     "    transforms: { public: keep }\n"
                     "    guard: {}\n"
                     "  sales:\n"
                     "    guard: { on_leak: quarantine }\n"
                     "    requires: { field: a.b, equals: \"false\" }\n"
                     "    transforms: { public: keep }\n"
                     "routes:\n  - source: customers\n"
                     "    accept: { records: [com.x.A, B] }\n");
        char err[1024] = "";
        struct veil_config *config =
                veil_config_load(path, &no_key, err, sizeof(err));
        const struct veil_purpose *pu;
        const struct veil_route *route;
        char digest[65];

        cr_assert_not_null(config, "%s", err);
        pu = veil_policy_purpose(&config->policy, "marketing");
        cr_assert_eq(pu->requires.kind, VEIL_REQUIRES_BOOL);
        cr_assert_str_eq(pu->requires.field, "consents.marketing");
        cr_assert(pu->requires.boolean);
        cr_assert_not(pu->guard.enabled);
        pu = veil_policy_purpose(&config->policy, "support");
        cr_assert(pu->guard.enabled);
        cr_assert_eq(pu->guard.on_leak, VEIL_LEAK_REDACT);
        cr_assert_eq(pu->requires.kind, VEIL_REQUIRES_STRING);
        cr_assert_str_eq(pu->requires.string, "ACTIVE");
        /* quoted: text, not a boolean */
        pu = veil_policy_purpose(&config->policy, "sales");
        cr_assert_eq(pu->requires.kind, VEIL_REQUIRES_STRING);
        cr_assert_str_eq(pu->requires.string, "false");
        cr_assert_eq(pu->guard.on_leak, VEIL_LEAK_QUARANTINE);
        route = veil_policy_route(&config->policy, "customers");
        cr_assert_eq(route->n_accept_records, 2);
        cr_assert_str_eq(route->accept_records[0], "com.x.A");
        cr_assert_str_eq(route->accept_records[1], "B");
        /* Both are part of the policy's digest. */
        memcpy(digest, config->policy.digest, sizeof(digest));
        free(route->accept_records[1]);
        ((struct veil_route *)route)->accept_records[1] = strdup("C");
        cr_assert_eq(veil_policy_digest(&config->policy, err, sizeof(err)), 0);
        cr_assert_str_neq(digest, config->policy.digest);
        memcpy(digest, config->policy.digest, sizeof(digest));
        ((struct veil_purpose *)pu)->requires.kind = VEIL_REQUIRES_NONE;
        cr_assert_eq(veil_policy_digest(&config->policy, err, sizeof(err)), 0);
        cr_assert_str_neq(digest, config->policy.digest);
        veil_config_destroy(config);
        unlink(path);
        free(path);
}

/* ---- the probe ------------------------------------------------------------
 */

static const char *const SCHEMA =
        "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"t\",\"fields\":["
        "{\"name\":\"id\",\"type\":\"string\"},"
        "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":"
        "\"string\"}},"
        "{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":"
        "\"long\"}},"
        "{\"name\":\"fp\",\"type\":{\"type\":\"fixed\",\"name\":\"F\","
        "\"size\":4}},"
        "{\"name\":\"score\",\"type\":[\"null\",\"double\"]},"
        "{\"name\":\"flag\",\"type\":\"boolean\"},"
        "{\"name\":\"consents\",\"type\":[\"null\",{\"type\":\"record\","
        "\"name\":\"C\",\"fields\":["
        "{\"name\":\"note\",\"type\":\"string\"},"
        "{\"name\":\"marketing\",\"type\":[\"null\",\"boolean\"]},"
        "{\"name\":\"channel\",\"type\":{\"type\":\"enum\",\"name\":\"Ch\","
        "\"symbols\":[\"EMAIL\",\"SMS\"]}},"
        "{\"name\":\"region\",\"type\":\"string\"}]}]},"
        "{\"name\":\"count\",\"type\":\"int\"},"
        "{\"name\":\"alt\",\"type\":[\"null\",\"string\",\"int\"]}]}";

/* One record's fields as the tests vary them. */
struct rec {
        int n_tags;
        bool has_consents;
        int marketing; /* -1 null, 0, 1 */
        int channel;
        char region[8]; /* inline: parameters cross processes */
        bool flag;
};

/* The record's Avro binary, written by avro-c (not by the code under
 * test). */
static size_t encode(const struct veil_schema *schema, const struct rec *r,
                     char *buf, size_t size)
{
        avro_value_iface_t *iface =
                avro_generic_class_from_schema(schema->avro);
        avro_value_t v, f, item, br, sub;
        avro_writer_t w = avro_writer_memory(buf, (int64_t)size);
        size_t i, len;

        cr_assert_not_null(iface);
        cr_assert_eq(avro_generic_value_new(iface, &v), 0);
        avro_value_get_by_name(&v, "id", &f, NULL);
        avro_value_set_string(&f, "C-42");
        avro_value_get_by_name(&v, "tags", &f, NULL);
        for (i = 0; i < (size_t)r->n_tags; i++) {
                avro_value_append(&f, &item, NULL);
                avro_value_set_string(&item, "tag");
        }
        avro_value_get_by_name(&v, "attrs", &f, NULL);
        avro_value_add(&f, "k1", &item, NULL, NULL);
        avro_value_set_long(&item, -7);
        avro_value_add(&f, "k2", &item, NULL, NULL);
        avro_value_set_long(&item, 1LL << 40);
        avro_value_get_by_name(&v, "fp", &f, NULL);
        avro_value_set_fixed(&f, (void *)"abcd", 4);
        avro_value_get_by_name(&v, "score", &f, NULL);
        avro_value_set_branch(&f, 1, &br);
        avro_value_set_double(&br, 0.5);
        avro_value_get_by_name(&v, "flag", &f, NULL);
        avro_value_set_boolean(&f, r->flag);
        avro_value_get_by_name(&v, "consents", &f, NULL);
        if (!r->has_consents) {
                avro_value_set_branch(&f, 0, &br);
                avro_value_set_null(&br);
        } else {
                avro_value_set_branch(&f, 1, &br);
                avro_value_get_by_name(&br, "note", &sub, NULL);
                avro_value_set_string(&sub, "n");
                avro_value_get_by_name(&br, "marketing", &sub, NULL);
                if (r->marketing < 0) {
                        avro_value_set_branch(&sub, 0, &item);
                        avro_value_set_null(&item);
                } else {
                        avro_value_set_branch(&sub, 1, &item);
                        avro_value_set_boolean(&item, r->marketing);
                }
                avro_value_get_by_name(&br, "channel", &sub, NULL);
                avro_value_set_enum(&sub, r->channel);
                avro_value_get_by_name(&br, "region", &sub, NULL);
                avro_value_set_string(&sub, r->region);
        }
        avro_value_get_by_name(&v, "count", &f, NULL);
        avro_value_set_int(&f, 3);
        avro_value_get_by_name(&v, "alt", &f, NULL);
        avro_value_set_branch(&f, 0, &br);
        avro_value_set_null(&br);
        cr_assert_eq(avro_value_write(w, &v), 0, "%s", avro_strerror());
        len = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        return len;
}

static struct veil_schema *schema_new(void)
{
        char err[256];
        struct veil_schema *schema = veil_schema_parse(
                SCHEMA, strlen(SCHEMA), NULL, 7, err, sizeof(err));

        cr_assert_not_null(schema, "%s", err);
        return schema;
}

static struct veil_consent_probe *probe_new(const struct veil_schema *schema,
                                            const char *field, bool is_bool,
                                            bool b, const char *s)
{
        struct veil_requires req = {is_bool ? VEIL_REQUIRES_BOOL
                                            : VEIL_REQUIRES_STRING,
                                    (char *)field, b, (char *)s};
        char err[256];
        struct veil_consent_probe *probe =
                veil_consent_probe_new(schema, &req, NULL, err, sizeof(err));

        cr_assert_not_null(probe, "%s: %s", field, err);
        return probe;
}

struct eval_case {
        char field[32];
        bool is_bool;
        bool b;
        char s[16];
        struct rec r;
        enum veil_consent want;
};

ParameterizedTestParameters(consent, eval)
{
        static struct eval_case cases[] = {
                /* nested boolean behind two unions with null */
                {"consents.marketing",
                 true,
                 true,
                 "",
                 {3, true, 1, 0, "EU", false},
                 VEIL_CONSENT_PASS},
                {"consents.marketing",
                 true,
                 true,
                 "",
                 {3, true, 0, 0, "EU", false},
                 VEIL_CONSENT_FAIL},
                {"consents.marketing",
                 true,
                 false,
                 "",
                 {0, true, 0, 0, "EU", false},
                 VEIL_CONSENT_PASS},
                {"consents.marketing",
                 true,
                 true,
                 "",
                 {3, true, -1, 0, "EU", false},
                 VEIL_CONSENT_NULL},
                {"consents.marketing",
                 true,
                 true,
                 "",
                 {3, false, 1, 0, "EU", false},
                 VEIL_CONSENT_NULL},
                /* top-level boolean after arrays, maps, fixed, unions */
                {"flag",
                 true,
                 true,
                 "",
                 {5, true, 1, 0, "EU", true},
                 VEIL_CONSENT_PASS},
                {"flag",
                 true,
                 true,
                 "",
                 {5, true, 1, 0, "EU", false},
                 VEIL_CONSENT_FAIL},
                /* enum symbol and string, behind the record's union */
                {"consents.channel",
                 false,
                 false,
                 "SMS",
                 {1, true, 1, 1, "EU", false},
                 VEIL_CONSENT_PASS},
                {"consents.channel",
                 false,
                 false,
                 "SMS",
                 {1, true, -1, 0, "EU", false},
                 VEIL_CONSENT_FAIL},
                {"consents.region",
                 false,
                 false,
                 "EU",
                 {2, true, 0, 0, "EU", false},
                 VEIL_CONSENT_PASS},
                {"consents.region",
                 false,
                 false,
                 "EU",
                 {2, true, 0, 0, "EUR", false},
                 VEIL_CONSENT_FAIL},
                {"consents.region",
                 false,
                 false,
                 "EU",
                 {2, true, 0, 0, "", false},
                 VEIL_CONSENT_FAIL},
                {"consents.region",
                 false,
                 false,
                 "EU",
                 {2, false, 0, 0, "EU", false},
                 VEIL_CONSENT_NULL},
        };

        return cr_make_param_array(struct eval_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct eval_case *c, consent, eval)
{
        struct veil_schema *schema = schema_new();
        struct veil_consent_probe *probe =
                probe_new(schema, c->field, c->is_bool, c->b, c->s);
        char buf[4096];
        size_t len = encode(schema, &c->r, buf, sizeof(buf));

        cr_expect_eq(veil_consent_eval(probe, (const uint8_t *)buf, len),
                     c->want, "%s: got %s", c->field,
                     veil_consent_name(veil_consent_eval(
                             probe, (const uint8_t *)buf, len)));
        veil_consent_probe_destroy(probe);
        veil_schema_destroy(schema);
}

/* Every cut of a record's bytes before the field is malformed, never a
 * read past the end (ASan watches). */
Test(consent, truncated_bodies_are_malformed)
{
        struct veil_schema *schema = schema_new();
        struct veil_consent_probe *probe =
                probe_new(schema, "consents.region", false, false, "EU");
        struct rec r = {4, true, 1, 1, "EU", true};
        char buf[4096];
        size_t len = encode(schema, &r, buf, sizeof(buf)), cut;

        cr_assert_eq(veil_consent_eval(probe, (const uint8_t *)buf, len),
                     VEIL_CONSENT_PASS);
        /* the field ends 2 + 5 bytes (count, alt) before the end */
        for (cut = 0; cut < len - 4; cut++) {
                uint8_t *copy = malloc(cut ? cut : 1);

                memcpy(copy, buf, cut);
                cr_expect_eq(veil_consent_eval(probe, copy, cut),
                             VEIL_CONSENT_MALFORMED, "cut at %zu of %zu", cut,
                             len);
                free(copy);
        }
        veil_consent_probe_destroy(probe);
        veil_schema_destroy(schema);
}

/* Arrays written in blocks with byte sizes (negative counts) are skipped
 * by size. Hand-written: avro-c writes plain blocks. */
Test(consent, sized_blocks_are_skipped)
{
        static const char *const S =
                "{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                "{\"name\":\"xs\",\"type\":{\"type\":\"array\",\"items\":"
                "\"long\"}},{\"name\":\"ok\",\"type\":\"boolean\"}]}";
        char err[256];
        struct veil_schema *schema =
                veil_schema_parse(S, strlen(S), NULL, 1, err, sizeof(err));
        struct veil_consent_probe *probe;
        /* block of -2 items in 2 bytes (1, 2), block of 1 item (3), end,
         * then ok = true */
        const uint8_t body[] = {0x03, 0x04, 0x02, 0x04, 0x02, 0x06, 0x00, 0x01};
        const uint8_t bad[]  = {0x03, 0x40, 0x02, 0x04, 0x00, 0x01};

        cr_assert_not_null(schema, "%s", err);
        probe = probe_new(schema, "ok", true, true, NULL);
        cr_expect_eq(veil_consent_eval(probe, body, sizeof(body)),
                     VEIL_CONSENT_PASS);
        /* a block size past the end */
        cr_expect_eq(veil_consent_eval(probe, bad, sizeof(bad)),
                     VEIL_CONSENT_MALFORMED);
        veil_consent_probe_destroy(probe);
        veil_schema_destroy(schema);
}

struct refuse_case {
        char field[32];
        bool is_bool;
        char s[16];
        int rc;
        char msg[160];
};

ParameterizedTestParameters(consent, refused)
{
        static struct refuse_case cases[] = {
                {"consents.nope", true, "", VEIL_ENOTFOUND,
                 "requires.field consents.nope: the record C has no field "
                 "'nope'"},
                {"nope", true, "", VEIL_ENOTFOUND,
                 "requires.field nope: the record R has no field 'nope'"},
                {"count", true, "", VEIL_ETYPE,
                 "requires.field count is an int; equals: true needs a "
                 "boolean"},
                {"flag", false, "yes", VEIL_ETYPE,
                 "requires.field flag is a boolean; equals: \"yes\" needs a "
                 "string or an enum"},
                {"consents.channel", false, "FAX", VEIL_ETYPE,
                 "requires.field consents.channel is the enum Ch, which has "
                 "no symbol 'FAX'"},
                {"id.x", true, "", VEIL_ETYPE,
                 "requires.field id.x: id is a string, not a record"},
                {"alt", false, "x", VEIL_ETYPE,
                 "requires.field alt: alt is a union of several types; only "
                 "null and one type can be tested"},
        };

        return cr_make_param_array(struct refuse_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct refuse_case *c, consent, refused)
{
        struct veil_schema *schema = schema_new();
        struct veil_requires req   = {c->is_bool ? VEIL_REQUIRES_BOOL
                                                 : VEIL_REQUIRES_STRING,
                                    c->field, true, c->s};
        char err[256] = "";
        int rc        = 0;

        cr_assert_null(
                veil_consent_probe_new(schema, &req, &rc, err, sizeof(err)));
        cr_expect_eq(rc, c->rc);
        cr_expect_str_eq(err, c->msg);
        veil_schema_destroy(schema);
}
