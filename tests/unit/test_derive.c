/* test_derive.c - derived schemas: transformed types, nullable and merged
 * unions, defaults, named types settled once, per-purpose schemas of the
 * customer record. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "avro_ref.h"
#include "derive.h"
#include "plan.h"
#include "plan_fixture.h"
#include "schema.h"
#include "util.h"
#include "veil.h"

TestSuite(derive);

static char *dump(json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY |
                                        JSON_PRESERVE_ORDER);

        cr_assert_not_null(s);
        return s;
}

static void assert_json(json_t *j, const char *want)
{
        char *s = dump(j);

        cr_assert_str_eq(s, want);
        free(s);
}

Test(derive, leaf_types_per_transform)
{
        struct veil_transform tx = {0};
        json_t *t;

#define LEAF(k, prim, logical, want)                                           \
        do {                                                                   \
                tx.kind = k;                                                   \
                t       = veil_derive_leaf_type(&tx, prim, logical);           \
                assert_json(t, want);                                          \
                json_decref(t);                                                \
        } while (0)
        LEAF(VEIL_TX_HASH, "long", NULL, "\"string\"");
        LEAF(VEIL_TX_HASH, "bytes", "decimal", "\"string\"");
        LEAF(VEIL_TX_MASK, "string", NULL, "\"string\"");
        LEAF(VEIL_TX_REDACT_TEXT, "string", NULL, "\"string\"");
        LEAF(VEIL_TX_ENCRYPT, "string", NULL, "\"string\"");
        tx.encrypt.output = VEIL_ENCRYPT_OUT_BYTES;
        LEAF(VEIL_TX_ENCRYPT, "string", NULL, "\"bytes\"");
        LEAF(VEIL_TX_GENERALIZE, "int", "date", "\"int\"");
        LEAF(VEIL_TX_GENERALIZE, "long", "timestamp-millis", "\"int\"");
        LEAF(VEIL_TX_GENERALIZE, "long", "local-timestamp-micros", "\"int\"");
        LEAF(VEIL_TX_GENERALIZE, "long", NULL, "\"long\"");
        LEAF(VEIL_TX_GENERALIZE, "double", NULL, "\"double\"");
        LEAF(VEIL_TX_GENERALIZE, "string", NULL, "\"string\"");
#undef LEAF
}

Test(derive, nullable_puts_null_first)
{
        json_t *t;

        t = veil_derive_nullable(json_string("string"));
        assert_json(t, "[\"null\",\"string\"]");
        json_decref(t);
        t = veil_derive_nullable(json_pack("[s,s,s]", "string", "null", "int"));
        assert_json(t, "[\"null\",\"string\",\"int\"]");
        json_decref(t);
        t = veil_derive_nullable(json_string("null"));
        assert_json(t, "[\"null\"]");
        json_decref(t);
        t = veil_derive_nullable(
                json_pack("{s:s,s:s}", "type", "long", "logicalType", "date"));
        assert_json(t, "[\"null\",{\"type\":\"long\",\"logicalType\":"
                       "\"date\"}]");
        json_decref(t);
}

Test(derive, union_merges_branches_of_one_type)
{
        json_t *b[5];
        uint32_t map[5];
        json_t *u;
        int i;

        b[0] = json_string("null");
        b[1] = json_string("string");
        b[2] = json_pack("{s:s,s:s,s:[]}", "type", "record", "name", "A",
                         "fields");
        b[3] = json_string("string");
        b[4] = json_pack("{s:s,s:s,s:s,s:[]}", "type", "record", "name", "A",
                         "namespace", "other", "fields");
        u    = veil_derive_union(b, 5, map);
        cr_assert_eq(json_array_size(u), 4);
        cr_assert_eq(map[0], 0);
        cr_assert_eq(map[1], 1);
        cr_assert_eq(map[2], 2);
        cr_assert_eq(map[3], 1);
        cr_assert_eq(map[4], 3, "a record of another namespace is distinct");
        json_decref(u);
        for (i = 0; i < 5; i++)
                json_decref(b[i]);
}

Test(derive, field_defaults_survive_only_when_they_still_fit)
{
        json_t *src = json_pack("{s:s,s:s,s:i,s:s}", "name", "n", "type", "int",
                                "default", 7, "doc", "a number");
        json_t *nsrc = json_pack("{s:s,s:[s,s],s:n}", "name", "e", "type",
                                 "null", "string", "default");
        json_t *f;

        f = veil_derive_field(src, "n", json_string("int"), true, false);
        assert_json(f, "{\"name\":\"n\",\"type\":\"int\",\"doc\":\"a "
                       "number\",\"default\":7}");
        json_decref(f);
        f = veil_derive_field(src, "n", json_string("string"), false, false);
        assert_json(f, "{\"name\":\"n\",\"type\":\"string\",\"doc\":\"a "
                       "number\"}");
        json_decref(f);
        f = veil_derive_field(src, "n",
                              veil_derive_nullable(json_string("int")), false,
                              true);
        assert_json(f, "{\"name\":\"n\",\"type\":[\"null\",\"int\"],\"doc\":"
                       "\"a number\",\"default\":null}");
        json_decref(f);
        f = veil_derive_field(nsrc, "e", json_pack("[s,s]", "null", "string"),
                              false, false);
        assert_json(f, "{\"name\":\"e\",\"type\":[\"null\",\"string\"],"
                       "\"default\":null}");
        json_decref(f);
        json_decref(src);
        json_decref(nsrc);
}

Test(derive, named_types_are_defined_once)
{
        json_t *t = json_loads(
                "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"n\","
                "\"fields\":["
                "{\"name\":\"a\",\"type\":{\"type\":\"record\",\"name\":\"A\","
                "\"namespace\":\"n\",\"fields\":[{\"name\":\"k\",\"type\":{"
                "\"type\":\"enum\",\"name\":\"K\",\"namespace\":\"n\","
                "\"symbols\":[\"X\"]}}]}},"
                "{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"A\","
                "\"namespace\":\"n\",\"fields\":[{\"name\":\"k\",\"type\":{"
                "\"type\":\"enum\",\"name\":\"K\",\"namespace\":\"n\","
                "\"symbols\":[\"X\"]}}]}},"
                "{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":\"A\","
                "\"namespace\":\"n\",\"fields\":[]}},"
                "{\"name\":\"d\",\"type\":{\"type\":\"record\",\"name\":\"A\","
                "\"namespace\":\"n\",\"fields\":[]}},"
                "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":"
                "\"A\",\"namespace\":\"n\",\"fields\":[{\"name\":\"me\","
                "\"type\":[\"null\",\"n.A\"]},{\"name\":\"x\",\"type\":"
                "\"int\"}]}}"
                "]}",
                0, NULL);
        avro_schema_t s;
        char *text;

        cr_assert_not_null(t);
        t    = veil_derive_finish(t);
        text = dump(t);
        cr_assert_str_eq(
                text,
                "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"n\","
                "\"fields\":["
                "{\"name\":\"a\",\"type\":{\"type\":\"record\",\"name\":\"A\","
                "\"namespace\":\"n\",\"fields\":[{\"name\":\"k\",\"type\":{"
                "\"type\":\"enum\",\"name\":\"K\",\"namespace\":\"n\","
                "\"symbols\":[\"X\"]}}]}},"
                "{\"name\":\"b\",\"type\":\"n.A\"},"
                "{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":"
                "\"A_2\",\"namespace\":\"n\",\"fields\":[]}},"
                "{\"name\":\"d\",\"type\":\"n.A_2\"},"
                "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":"
                "\"A_3\",\"namespace\":\"n\",\"fields\":[{\"name\":\"me\","
                "\"type\":[\"null\",\"n.A_3\"]},{\"name\":\"x\",\"type\":"
                "\"int\"}]}}"
                "]}");
        cr_assert_eq(avro_schema_from_json_length(text, strlen(text), &s), 0,
                     "%s", avro_strerror());
        avro_schema_decref(s);
        free(text);
        json_decref(t);
}

/* A recursive record derived once more inside itself (its own field
 * labelled: the compiler opens it again under that label) settles into one
 * self-referencing definition, never into a bare reference to nothing. */
Test(derive, recursive_record_derived_twice_keeps_its_definition)
{
        json_t *t = json_loads(
                "{\"type\":\"record\",\"name\":\"Node\",\"namespace\":\"n\","
                "\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"
                "{\"name\":\"next\",\"type\":[\"null\",{\"type\":\"record\","
                "\"name\":\"Node\",\"namespace\":\"n\",\"fields\":["
                "{\"name\":\"v\",\"type\":\"long\"},{\"name\":\"next\","
                "\"type\":[\"null\",\"n.Node\"]}]}]}]}",
                0, NULL);
        avro_schema_t s;
        char *text;

        cr_assert_not_null(t);
        t    = veil_derive_finish(t);
        text = dump(t);
        cr_assert_str_eq(
                text,
                "{\"type\":\"record\",\"name\":\"Node\",\"namespace\":\"n\","
                "\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"
                "{\"name\":\"next\",\"type\":[\"null\",\"n.Node\"]}]}");
        cr_assert_eq(avro_schema_from_json_length(text, strlen(text), &s), 0,
                     "%s", avro_strerror());
        avro_schema_decref(s);
        free(text);
        json_decref(t);
}

/* The DESIGN.md §5 policy without ssn; the card mask keeps its default. */
static void design_policy(struct veil_policy *policy)
{
        static const struct plan_fx_class classes[] = {
                {"customer_id", VEIL_TIER_INTERNAL},
                {"email", VEIL_TIER_CONFIDENTIAL},
                {"phone", VEIL_TIER_CONFIDENTIAL},
                {"card", VEIL_TIER_RESTRICTED},
                {"notes", VEIL_TIER_INTERNAL},
                {"birth_date", VEIL_TIER_CONFIDENTIAL},
                {NULL, VEIL_TIER_NONE},
        };
        static const struct plan_fx_rule rules[] = {
                {"analytics", "public", VEIL_TX_KEEP, false},
                {"analytics", "internal", VEIL_TX_KEEP, false},
                {"analytics", "customer_id", VEIL_TX_HASH, false},
                {"analytics", "email", VEIL_TX_HASH, false},
                {"analytics", "card", VEIL_TX_MASK, false},
                {"analytics", "notes", VEIL_TX_REDACT_TEXT, false},
                {"analytics", "birth_date", VEIL_TX_GENERALIZE, false},
                {"analytics", "phone", VEIL_TX_NULL, false},
                {"marketing", "public", VEIL_TX_KEEP, false},
                {"marketing", "customer_id", VEIL_TX_KEEP, false},
                {"marketing", "email", VEIL_TX_KEEP, false},
                {NULL, NULL, VEIL_TX_KEEP, false},
        };
        const struct plan_fx_policy spec = {
                classes,       rules,         "customers",
                "customer_id", "address.zip", "internal",
        };

        plan_fx_policy_build(policy, &spec);
}

static json_t *field_named(json_t *record, const char *name)
{
        json_t *f;
        size_t i;

        json_array_foreach(json_object_get(record, "fields"), i, f)
        {
                if (!strcmp(json_string_value(json_object_get(f, "name")),
                            name))
                        return f;
        }
        return NULL;
}

Test(derive, customer_schema_per_purpose)
{
        struct veil_policy policy;
        struct veil_schema *schema;
        struct veil_plan_opts opts = {0};
        char err[256]              = "", *text, *mtext;
        size_t len;
        json_t *d, *f, *addr;
        avro_schema_t s;

        design_policy(&policy);
        text = veil_file_read("schemas/customers-value.avsc", &len, err,
                              sizeof(err));
        cr_assert_not_null(text, "%s", err);
        schema = veil_schema_parse(text, len, NULL, 1, err, sizeof(err));
        cr_assert_not_null(schema, "%s", err);
        free(text);
        plan_fx_opts(&opts, &policy, "customers", "analytics");
        text = veil_derive_schema(schema, &opts, err, sizeof(err));
        cr_assert_not_null(text, "%s", err);
        cr_assert_eq(avro_schema_from_json_length(text, strlen(text), &s), 0,
                     "%s", avro_strerror());
        avro_schema_decref(s);
        d = json_loads(text, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(d, "name")),
                         "Customer");
        cr_assert_str_eq(json_string_value(json_object_get(d, "namespace")),
                         "com.example.crm");
        assert_json(json_object_get(field_named(d, "customer_id"), "type"),
                    "\"string\"");
        f = field_named(d, "phone");
        assert_json(json_object_get(f, "type"), "[\"null\",\"string\"]");
        cr_assert(json_is_null(json_object_get(f, "default")));
        assert_json(json_object_get(field_named(d, "birth_date"), "type"),
                    "\"int\"");
        assert_json(json_object_get(field_named(d, "created_at"), "type"),
                    "{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}");
        assert_json(json_object_get(field_named(d, "balance"), "type"),
                    "{\"type\":\"bytes\",\"logicalType\":\"decimal\","
                    "\"precision\":12,\"scale\":2}");
        cr_assert_null(field_named(d, "ssn"));
        cr_assert_null(field_named(d, "full_name"));
        cr_assert_null(field_named(d, "referrer"));
        addr = json_object_get(field_named(d, "address"), "type");
        cr_assert_str_eq(json_string_value(json_object_get(addr, "name")),
                         "Address");
        cr_assert_not_null(field_named(addr, "zip"));
        cr_assert_null(field_named(addr, "street"));
        json_decref(d);

        /* marketing sees less, and a different schema */
        opts.purpose = veil_policy_purpose(&policy, "marketing");
        mtext        = veil_derive_schema(schema, &opts, err, sizeof(err));
        cr_assert_not_null(mtext, "%s", err);
        cr_assert_str_neq(text, mtext);
        d = json_loads(mtext, 0, NULL);
        cr_assert_null(field_named(d, "phone"));
        cr_assert_null(field_named(d, "attributes"));
        cr_assert_null(field_named(
                json_object_get(field_named(d, "address"), "type"), "zip"));
        json_decref(d);
        /* stable: the same inputs give the same text (registry ids cache) */
        {
                char *again =
                        veil_derive_schema(schema, &opts, err, sizeof(err));

                cr_assert_str_eq(again, mtext);
                free(again);
        }
        free(mtext);
        free(text);
        veil_schema_destroy(schema);
        veil_policy_destroy(&policy);
}

/* Map keys are data: what the derived schema says of maps whose keys are
 * hashed, nulled with their map (in a union: one ["null", map], never a
 * union in a union), unclassified (dropped) or classified by PATH{key};
 * avro-c reads every one. */
Test(derive, maps_with_transformed_nulled_and_unclassified_keys)
{
        static const char text[] =
                "{\"type\":\"record\",\"name\":\"M\",\"namespace\":\"n\","
                "\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"},"
                "{\"name\":\"ids\",\"type\":{\"type\":\"map\",\"values\":"
                "\"long\"},\"pii\":\"customer_id\"},"
                "{\"name\":\"tags\",\"type\":[\"null\",{\"type\":\"map\","
                "\"values\":\"string\"}],\"default\":null,\"pii\":\"public\"},"
                "{\"name\":\"bare\",\"type\":{\"type\":\"map\",\"values\":"
                "\"string\"}},"
                "{\"name\":\"keyed\",\"type\":{\"type\":\"array\",\"items\":"
                "{\"type\":\"map\",\"values\":\"int\"}}}]}";
        struct veil_policy policy;
        struct veil_plan_opts opts = {0};
        struct veil_schema *schema;
        char err[512] = "", *out;
        avro_schema_t s;
        json_t *d, *f;

        design_policy(&policy);
        avro_ref_override(&policy.routes[0], "tags{key}", "phone");
        avro_ref_override(&policy.routes[0], "bare{}", "public");
        avro_ref_override(&policy.routes[0], "keyed[]{key}", "email");
        avro_ref_override(&policy.routes[0], "keyed[]{}", "internal");
        schema = veil_schema_parse(text, strlen(text), NULL, 1, err,
                                   sizeof(err));
        cr_assert_not_null(schema, "%s", err);
        plan_fx_opts(&opts, &policy, "customers", "analytics");
        out = veil_derive_schema(schema, &opts, err, sizeof(err));
        cr_assert_not_null(out, "%s", err);
        cr_assert_eq(avro_schema_from_json_length(out, strlen(out), &s), 0,
                     "%s: %s", avro_strerror(), out);
        avro_schema_decref(s);
        d = json_loads(out, 0, NULL);
        /* hashed keys, long values hashed too: a map of strings */
        assert_json(json_object_get(field_named(d, "ids"), "type"),
                    "{\"type\":\"map\",\"values\":\"string\"}");
        /* the keys' class (phone) is nulled for analytics: the map too */
        f = field_named(d, "tags");
        assert_json(json_object_get(f, "type"),
                    "[\"null\",{\"type\":\"map\",\"values\":\"string\"}]");
        cr_assert(json_is_null(json_object_get(f, "default")));
        /* values labelled, keys not: dropped */
        cr_assert_null(field_named(d, "bare"));
        /* keys and values classified by the route: kept */
        assert_json(json_object_get(field_named(d, "keyed"), "type"),
                    "{\"type\":\"array\",\"items\":{\"type\":\"map\","
                    "\"values\":\"int\"}}");
        json_decref(d);
        free(out);
        veil_schema_destroy(schema);
        veil_policy_destroy(&policy);
}

/* A derived field says what the purpose gets; a token keeps no source
 * annotation that would call it an e-mail. */
Test(derive, mark_states_class_and_transform_and_drops_source_tags)
{
        json_t *f = json_pack("{s:s, s:s, s:s, s:[s], s:s}", "name", "email",
                              "type", "string", "pii", "email",
                              "confluent:tags", "PII", "doc", "contact");

        veil_derive_mark(f, "email", VEIL_TX_HASH);
        assert_json(f, "{\"name\":\"email\",\"type\":\"string\","
                       "\"doc\":\"contact\",\"veil.class\":\"email\","
                       "\"veil.transform\":\"hash\"}");
        json_decref(f);

        /* keep: the value is still what the source said it is */
        f = json_pack("{s:s, s:s, s:s, s:[s]}", "name", "email", "type",
                      "string", "pii", "email", "confluent:tags", "PII");
        veil_derive_mark(f, "email", VEIL_TX_KEEP);
        assert_json(f, "{\"name\":\"email\",\"type\":\"string\","
                       "\"pii\":\"email\",\"confluent:tags\":[\"PII\"],"
                       "\"veil.class\":\"email\",\"veil.transform\":\"keep\"}");
        json_decref(f);

        /* null: nothing of the source's value is left */
        f = json_pack("{s:s, s:[s,s], s:s}", "name", "phone", "type", "null",
                      "string", "pii", "phone");
        veil_derive_mark(f, "phone", VEIL_TX_NULL);
        cr_assert_null(json_object_get(f, "pii"));
        cr_assert_str_eq(
                json_string_value(json_object_get(f, "veil.transform")),
                "null");
        json_decref(f);
}

Test(derive, field_entry_prefers_the_path_then_items_then_values)
{
        const struct veil_plan_field f[] = {
                {"tags[]", "public", VEIL_LABEL_NONE, VEIL_PLAN_LICENSED,
                 VEIL_TX_KEEP},
                {"attrs{key}", "internal", VEIL_LABEL_NONE, VEIL_PLAN_LICENSED,
                 VEIL_TX_HASH},
                {"attrs{}", "internal", VEIL_LABEL_NONE, VEIL_PLAN_LICENSED,
                 VEIL_TX_KEEP},
                {"attrs", "internal", VEIL_LABEL_NONE, VEIL_PLAN_LICENSED,
                 VEIL_TX_KEEP},
                {"email2", "email", VEIL_LABEL_NONE, VEIL_PLAN_LICENSED,
                 VEIL_TX_HASH},
        };
        size_t n = VEIL_ARRAY_SIZE(f);

        cr_assert_eq(veil_derive_field_entry(f, n, "attrs"), &f[3]);
        cr_assert_eq(veil_derive_field_entry(f, n, "tags"), &f[0]);
        cr_assert_eq(veil_derive_field_entry(f, 3, "attrs"), &f[2]);
        /* a prefix of another field's name is not that field */
        cr_assert_null(veil_derive_field_entry(f, n, "email"));
        cr_assert_null(veil_derive_field_entry(f, n, "address"));
}

/* The customer schema for analytics: each field the purpose receives says
 * its class and transform, and tokens lose the source's "pii". */
Test(derive, customer_schema_fields_are_marked)
{
        struct veil_policy policy;
        struct veil_schema *schema;
        struct veil_plan_opts opts = {0};
        char err[256]              = "", *text;
        size_t len;
        json_t *d, *f, *addr, *contact;
        avro_schema_t s;

        design_policy(&policy);
        text = veil_file_read("schemas/customers-value.avsc", &len, err,
                              sizeof(err));
        cr_assert_not_null(text, "%s", err);
        schema = veil_schema_parse(text, len, NULL, 1, err, sizeof(err));
        cr_assert_not_null(schema, "%s", err);
        free(text);
        plan_fx_opts(&opts, &policy, "customers", "analytics");
        text = veil_derive_schema(schema, &opts, err, sizeof(err));
        cr_assert_not_null(text, "%s", err);
        /* still a schema every Avro reader takes */
        cr_assert_eq(avro_schema_from_json_length(text, strlen(text), &s), 0,
                     "%s", avro_strerror());
        avro_schema_decref(s);
        d = json_loads(text, 0, NULL);
#define MARK(field, cls, tx, has_pii)                                          \
        do {                                                                   \
                cr_assert_not_null(field);                                     \
                cr_assert_str_eq(json_string_value(json_object_get(            \
                                         field, "veil.class")),                \
                                 cls);                                         \
                cr_assert_str_eq(json_string_value(json_object_get(            \
                                         field, "veil.transform")),            \
                                 tx);                                          \
                cr_assert_eq(json_object_get(field, "pii") != NULL, has_pii);  \
        } while (0)
        MARK(field_named(d, "customer_id"), "customer_id", "hash", false);
        MARK(field_named(d, "email"), "email", "hash", false);
        MARK(field_named(d, "phone"), "phone", "null", false);
        MARK(field_named(d, "card_number"), "card", "mask", false);
        MARK(field_named(d, "birth_date"), "birth_date", "generalize", false);
        MARK(field_named(d, "notes"), "notes", "redact_text", false);
        MARK(field_named(d, "status"), "public", "keep", true);
        addr = json_object_get(field_named(d, "address"), "type");
        /* a classify override names the class the same way */
        MARK(field_named(addr, "zip"), "internal", "keep", false);
        /* an unlabelled container says nothing; its leaves do */
        cr_assert_null(
                json_object_get(field_named(d, "address"), "veil.transform"));
        f       = json_object_get(field_named(d, "contacts"), "type");
        contact = json_object_get(f, "items");
        if (json_is_object(contact))
                MARK(field_named(contact, "email"), "email", "hash", false);
#undef MARK
        json_decref(d);
        free(text);
        veil_schema_destroy(schema);
        veil_policy_destroy(&policy);
}
