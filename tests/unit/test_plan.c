/* test_plan.c - record plans: every Avro type through the plan, transforms on
 * the customer schema, nested paths, unions, negative block counts, hostile
 * input, compile-time refusals, recursion, keys and the plan cache. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_ref.h"
#include "derive.h"
#include "detect.h"
#include "plan.h"
#include "plan_fixture.h"
#include "schema.h"
#include "transform.h"
#include "util.h"
#include "veil.h"
#include "wire.h"

TestSuite(plan);

static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-master";

/* The DESIGN.md §5 policy, in code. */
static const struct plan_fx_class design_classes[] = {
        {"customer_id", VEIL_TIER_INTERNAL},
        {"email", VEIL_TIER_CONFIDENTIAL},
        {"phone", VEIL_TIER_CONFIDENTIAL},
        {"ssn", VEIL_TIER_RESTRICTED},
        {"card", VEIL_TIER_RESTRICTED},
        {"notes", VEIL_TIER_INTERNAL},
        {"birth_date", VEIL_TIER_CONFIDENTIAL},
        {NULL, VEIL_TIER_NONE},
};

static const struct plan_fx_rule design_rules[] = {
        {"analytics", "public", VEIL_TX_KEEP, false},
        {"analytics", "internal", VEIL_TX_KEEP, false},
        {"analytics", "customer_id", VEIL_TX_HASH, false},
        {"analytics", "email", VEIL_TX_HASH, false},
        {"analytics", "card", VEIL_TX_MASK, true}, /* keep_last 4 */
        {"analytics", "birth_date", VEIL_TX_GENERALIZE, false},
        {"analytics", "phone", VEIL_TX_NULL, false},
        {"analytics", "ssn", VEIL_TX_DROP, false},
        {"analytics", "notes", VEIL_TX_REDACT_TEXT, false},
        {"marketing", "public", VEIL_TX_KEEP, false},
        {"marketing", "customer_id", VEIL_TX_KEEP, false},
        {"marketing", "email", VEIL_TX_KEEP, false},
        {NULL, NULL, VEIL_TX_KEEP, false},
};

static void design_policy(struct veil_policy *policy)
{
        const struct plan_fx_policy spec = {
                design_classes, design_rules,  "customers",
                "customer_id",  "address.zip", "internal",
        };

        plan_fx_policy_build(policy, &spec);
}

static struct veil_schema *load_schema(const char *path, int id)
{
        char err[256] = "";
        size_t len;
        char *text = veil_file_read(path, &len, err, sizeof(err));
        struct veil_schema *s;

        cr_assert_not_null(text, "%s", err);
        s = veil_schema_parse(text, len, NULL, id, err, sizeof(err));
        free(text);
        cr_assert_not_null(s, "%s", err);
        return s;
}

static struct veil_schema *parse_schema(const char *text)
{
        char err[256]         = "";
        struct veil_schema *s = veil_schema_parse(text, strlen(text), NULL, 1,
                                                  err, sizeof(err));

        cr_assert_not_null(s, "%s", err);
        return s;
}

/* Encode a value with avro-c. */
static void encode(avro_value_t *v, struct veil_buf *out)
{
        size_t size = 0;
        avro_writer_t w;

        cr_assert_eq(avro_value_sizeof(v, &size), 0, "%s", avro_strerror());
        out->len = 0;
        cr_assert(veil_buf_reserve(out, size + 1));
        w = avro_writer_memory((char *)out->data, (int64_t)size);
        cr_assert_eq(avro_value_write(w, v), 0, "%s", avro_strerror());
        out->len = size;
        avro_writer_free(w);
}

/* Decode `len` bytes with the derived schema; the caller decrefs. */
static void decode(const char *schema_json, const uint8_t *p, size_t len,
                   avro_schema_t *sp, avro_value_iface_t **ip, avro_value_t *v)
{
        avro_reader_t rd;

        cr_assert_eq(avro_schema_from_json_length(schema_json,
                                                  strlen(schema_json), sp),
                     0, "derived schema rejected by avro-c: %s (%s)",
                     avro_strerror(), schema_json);
        *ip = avro_generic_class_from_schema(*sp);
        cr_assert_not_null(*ip);
        cr_assert_eq(avro_generic_value_new(*ip, v), 0);
        rd = avro_reader_memory((const char *)p, (int64_t)len);
        cr_assert_eq(avro_value_read(rd, v), 0, "decode: %s", avro_strerror());
        {
                char extra;

                cr_assert_neq(avro_read(rd, &extra, 1), 0,
                              "bytes left after decode");
        }
        avro_reader_free(rd);
}

static void set_str(avro_value_t *rec, const char *field, const char *s)
{
        avro_value_t f, b;

        cr_assert_eq(avro_value_get_by_name(rec, field, &f, NULL), 0, "%s",
                     field);
        if (avro_value_get_type(&f) == AVRO_UNION) {
                cr_assert_eq(avro_value_set_branch(&f, s ? 1 : 0, &b), 0);
                if (!s) {
                        avro_value_set_null(&b);
                        return;
                }
                f = b;
        }
        cr_assert_eq(avro_value_set_string(&f, s), 0);
}

static const char *get_str(avro_value_t *rec, const char *field)
{
        avro_value_t f, b;
        const char *s;
        size_t n;

        cr_assert_eq(avro_value_get_by_name(rec, field, &f, NULL), 0,
                     "missing field %s", field);
        if (avro_value_get_type(&f) == AVRO_UNION) {
                cr_assert_eq(avro_value_get_current_branch(&f, &b), 0);
                if (avro_value_get_type(&b) == AVRO_NULL)
                        return NULL;
                f = b;
        }
        cr_assert_eq(avro_value_get_string(&f, &s, &n), 0);
        return s;
}

static bool has_field(avro_value_t *rec, const char *field)
{
        avro_value_t f;

        return avro_value_get_by_name(rec, field, &f, NULL) == 0;
}

/* A customer record (the bench and several tests use this shape). */
static void fill_customer(avro_value_t *c)
{
        avro_value_t f, b, item, sub;

        set_str(c, "customer_id", "C-000123");
        set_str(c, "email", "ada@example.com");
        set_str(c, "phone", "+1 415 555 0100");
        set_str(c, "full_name", "Ada Lovelace");
        set_str(c, "ssn", "123-45-6789");
        set_str(c, "card_number", "4111 1111 1111 1111");
        avro_value_get_by_name(c, "birth_date", &f, NULL);
        avro_value_set_int(&f, 3652); /* 1980-01-01 */
        avro_value_get_by_name(c, "created_at", &f, NULL);
        avro_value_set_long(&f, INT64_C(1700000000000));
        avro_value_get_by_name(c, "updated_at", &f, NULL);
        avro_value_set_long(&f, INT64_C(1700000000000000));
        avro_value_get_by_name(c, "status", &f, NULL);
        avro_value_set_enum(&f, 1);
        set_str(c, "tier", "gold");
        avro_value_get_by_name(c, "loyalty_points", &f, NULL);
        avro_value_set_int(&f, 1234);
        avro_value_get_by_name(c, "lifetime_value", &f, NULL);
        avro_value_set_double(&f, 9876.5);
        avro_value_get_by_name(c, "credit_score", &f, NULL);
        avro_value_set_branch(&f, 1, &b);
        avro_value_set_int(&b, 720);
        avro_value_get_by_name(c, "marketing_opt_in", &f, NULL);
        avro_value_set_boolean(&f, 1);
        set_str(c, "account_uuid", "7d444840-9dc0-11d1-b245-5ffdce74fad2");
        avro_value_get_by_name(c, "balance", &f, NULL);
        avro_value_set_bytes(&f, "\x01\x86\xa0", 3);
        avro_value_get_by_name(c, "address", &f, NULL);
        set_str(&f, "street", "12 St James's Square");
        set_str(&f, "city", "London");
        set_str(&f, "zip", "SW1Y 4JH");
        set_str(&f, "country", "GB");
        avro_value_get_by_name(c, "contacts", &f, NULL);
        avro_value_append(&f, &item, NULL);
        set_str(&item, "kind", "work");
        set_str(&item, "email", "ada@work.example");
        set_str(&item, "phone", NULL);
        avro_value_append(&f, &item, NULL);
        set_str(&item, "kind", "home");
        set_str(&item, "email", NULL);
        set_str(&item, "phone", "+44 20 7946 0000");
        avro_value_get_by_name(c, "attributes", &f, NULL);
        avro_value_add(&f, "segment", &sub, NULL, NULL);
        avro_value_set_string(&sub, "smb");
        avro_value_add(&f, "channel", &sub, NULL, NULL);
        avro_value_set_string(&sub, "web");
        avro_value_get_by_name(c, "device_fingerprint", &f, NULL);
        avro_value_set_fixed(&f, "0123456789abcdef", 16);
        set_str(c, "notes", "called from 415-555-0199, mail bob@example.org");
        set_str(c, "last_login_ip", "10.1.2.3");
        set_str(c, "referrer", "newsletter");
}

struct fixture {
        struct veil_policy policy;
        struct veil_schema *schema;
        struct veil_tx_keys keys;
        struct veil_detect_engine *engine;
        struct veil_plan_env env;
        struct veil_buf in, out;
};

static void fixture_init(struct fixture *fx, const char *purpose)
{
        char err[256] = "";

        (void)purpose;
        memset(fx, 0, sizeof(*fx));
        design_policy(&fx->policy);
        fx->schema = load_schema("schemas/customers-value.avsc", 42);
        cr_assert_eq(veil_tx_keys_init(&fx->keys, master, sizeof(master), "k1",
                                       purpose, false, err, sizeof(err)),
                     0, "%s", err);
        fx->engine = veil_detect_engine_new(NULL, 0, err, sizeof(err));
        cr_assert_not_null(fx->engine, "%s", err);
        fx->env.keys   = &fx->keys;
        fx->env.detect = fx->engine;
        fx->env.detect_scratch =
                veil_detect_scratch_new(fx->engine, err, sizeof(err));
        cr_assert_not_null(fx->env.detect_scratch, "%s", err);
        veil_buf_init(&fx->in, 0);
        veil_buf_init(&fx->out, 0);
}

static void fixture_fini(struct fixture *fx)
{
        veil_buf_free(&fx->in);
        veil_buf_free(&fx->out);
        veil_plan_env_free(&fx->env);
        veil_detect_scratch_destroy(fx->env.detect_scratch);
        veil_detect_engine_destroy(fx->engine);
        veil_tx_keys_destroy(&fx->keys);
        veil_schema_destroy(fx->schema);
        veil_policy_destroy(&fx->policy);
}

static struct veil_plan *compile(struct fixture *fx, const char *purpose,
                                 const char *root_label)
{
        struct veil_plan_opts opts = {0};
        char err[512]              = "";
        struct veil_plan *plan;

        plan_fx_opts(&opts, &fx->policy, "customers", purpose);
        opts.root_label = root_label;
        plan = veil_plan_compile(fx->schema, &opts, err, sizeof(err));
        cr_assert_not_null(plan, "%s", err);
        return plan;
}

static void customer_bytes(struct fixture *fx)
{
        avro_value_iface_t *iface =
                avro_generic_class_from_schema(fx->schema->avro);
        avro_value_t v;

        avro_generic_value_new(iface, &v);
        fill_customer(&v);
        encode(&v, &fx->in);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
}

static void token_of(struct fixture *fx, const char *s, char *out)
{
        size_t n;

        cr_assert_eq(veil_tx_hash(&fx->keys, s, strlen(s), out,
                                  VEIL_TX_HASH_TOKEN_MAX, &n),
                     0);
        out[n] = 0;
}

Test(plan, customer_analytics_end_to_end)
{
        struct fixture fx;
        struct veil_plan *plan;
        struct veil_plan_error perr;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, f, b, item;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        int32_t i32 = 0;
        size_t n    = 0;

        fixture_init(&fx, "analytics");
        plan = compile(&fx, "analytics", NULL);
        customer_bytes(&fx);
        cr_assert_gt(fx.in.len, 300);
        cr_assert_eq(veil_plan_exec(plan, &fx.env, fx.in.data, fx.in.len,
                                    &fx.out, &perr),
                     VEIL_WIRE_OK, "%s at %zu (%s)",
                     veil_wire_error_code(perr.code), perr.offset,
                     perr.path ? perr.path : "-");
        decode(veil_plan_derived_text(plan), fx.out.data, fx.out.len, &ds, &di,
               &out);

        /* hash: the token of the value under this purpose's key */
        token_of(&fx, "C-000123", tok);
        cr_assert_str_eq(get_str(&out, "customer_id"), tok);
        cr_assert_eq(strncmp(tok, "k1:", 3), 0);
        token_of(&fx, "ada@example.com", tok);
        cr_assert_str_eq(get_str(&out, "email"), tok);
        /* null transform: field present, value null */
        cr_assert(has_field(&out, "phone"));
        cr_assert_null(get_str(&out, "phone"));
        /* name: undefined class → dropped (fail closed); ssn: drop */
        cr_assert_not(has_field(&out, "full_name"));
        cr_assert_not(has_field(&out, "ssn"));
        cr_assert_str_eq(get_str(&out, "card_number"), "**** **** **** 1111");
        /* generalize: date → year */
        avro_value_get_by_name(&out, "birth_date", &f, NULL);
        cr_assert_eq(avro_value_get_type(&f), AVRO_INT32);
        avro_value_get_int(&f, &i32);
        cr_assert_eq(i32, 1980);
        cr_assert_str_eq(get_str(&out, "tier"), "gold");
        avro_value_get_by_name(&out, "loyalty_points", &f, NULL);
        avro_value_get_int(&f, &i32);
        cr_assert_eq(i32, 1234);
        /* credit_score: undefined class → dropped */
        cr_assert_not(has_field(&out, "credit_score"));
        /* nested: street (undefined) dropped, zip kept by override */
        avro_value_get_by_name(&out, "address", &f, NULL);
        cr_assert_not(has_field(&f, "street"));
        cr_assert_str_eq(get_str(&f, "zip"), "SW1Y 4JH");
        cr_assert_str_eq(get_str(&f, "city"), "London");
        /* contacts[].email hashed, contacts[].phone nulled */
        avro_value_get_by_name(&out, "contacts", &f, NULL);
        avro_value_get_size(&f, &n);
        cr_assert_eq(n, 2);
        avro_value_get_by_index(&f, 0, &item, NULL);
        token_of(&fx, "ada@work.example", tok);
        cr_assert_str_eq(get_str(&item, "email"), tok);
        cr_assert_str_eq(get_str(&item, "kind"), "work");
        cr_assert_null(get_str(&item, "phone"));
        avro_value_get_by_index(&f, 1, &item, NULL);
        cr_assert_null(get_str(&item, "email"));
        cr_assert_null(get_str(&item, "phone"));
        /* map kept (internal) */
        avro_value_get_by_name(&out, "attributes", &f, NULL);
        cr_assert_eq(avro_value_get_by_name(&f, "segment", &b, NULL), 0);
        /* redact_text */
        cr_assert_not_null(strstr(get_str(&out, "notes"), "["));
        cr_assert_null(strstr(get_str(&out, "notes"), "bob@example.org"));
        /* unclassified referrer, unlicensed ip: dropped */
        cr_assert_not(has_field(&out, "referrer"));
        cr_assert_not(has_field(&out, "last_login_ip"));
        cr_assert_gt(veil_plan_failclosed_count(plan), 3);

        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        veil_plan_destroy(plan);
        fixture_fini(&fx);
}

/* ---- small schemas
 * ----------------------------------------------------------- */

static void put_long(struct veil_buf *b, int64_t v)
{
        cr_assert(veil_buf_reserve(b, VEIL_VARINT_MAX));
        b->len += veil_varint_write(b->data + b->len, v);
}

static void put_raw(struct veil_buf *b, const void *p, size_t n)
{
        cr_assert(veil_buf_append(b, p, n));
}

static void put_str(struct veil_buf *b, const char *s)
{
        put_long(b, (int64_t)strlen(s));
        put_raw(b, s, strlen(s));
}

/* A policy whose purpose "p" keeps public and internal, hashes email,
 * masks card, generalizes when, nulls phone, drops secret. */
static void small_policy(struct veil_policy *policy)
{
        static const struct plan_fx_class classes[] = {
                {"email", VEIL_TIER_CONFIDENTIAL},
                {"card", VEIL_TIER_RESTRICTED},
                {"when", VEIL_TIER_CONFIDENTIAL},
                {"phone", VEIL_TIER_CONFIDENTIAL},
                {"secret", VEIL_TIER_RESTRICTED},
                {NULL, VEIL_TIER_NONE},
        };
        static const struct plan_fx_rule rules[] = {
                {"p", "public", VEIL_TX_KEEP, false},
                {"p", "internal", VEIL_TX_KEEP, false},
                {"p", "email", VEIL_TX_HASH, false},
                {"p", "card", VEIL_TX_MASK, false},
                {"p", "when", VEIL_TX_GENERALIZE, false},
                {"p", "phone", VEIL_TX_NULL, false},
                {"p", "secret", VEIL_TX_DROP, false},
                {NULL, NULL, VEIL_TX_KEEP, false},
        };
        const struct plan_fx_policy spec = {classes, rules, "t",
                                            "email", NULL,  NULL};

        plan_fx_policy_build(policy, &spec);
}

struct small {
        struct veil_policy policy;
        struct veil_schema *schema;
        struct veil_plan *plan;
        struct veil_tx_keys keys;
        struct veil_plan_env env;
        struct veil_buf in, out;
        struct veil_plan_error err;
};

static struct veil_plan *small_compile(struct small *sm, const char *schema,
                                       char *err, size_t errsz)
{
        struct veil_plan_opts opts = {0};

        memset(sm, 0, sizeof(*sm));
        small_policy(&sm->policy);
        sm->schema = parse_schema(schema);
        cr_assert_eq(veil_tx_keys_init(&sm->keys, master, sizeof(master), "k1",
                                       "p", false, err, errsz),
                     0);
        sm->env.keys = &sm->keys;
        veil_buf_init(&sm->in, 0);
        veil_buf_init(&sm->out, 0);
        opts.policy  = &sm->policy;
        opts.route   = &sm->policy.routes[0];
        opts.purpose = &sm->policy.purposes[0];
        sm->plan     = veil_plan_compile(sm->schema, &opts, err, errsz);
        return sm->plan;
}

static void small_open(struct small *sm, const char *schema)
{
        char err[512] = "";

        cr_assert_not_null(small_compile(sm, schema, err, sizeof(err)), "%s",
                           err);
}

static void small_fini(struct small *sm)
{
        veil_plan_destroy(sm->plan);
        veil_buf_free(&sm->in);
        veil_buf_free(&sm->out);
        veil_plan_env_free(&sm->env);
        veil_tx_keys_destroy(&sm->keys);
        veil_schema_destroy(sm->schema);
        veil_policy_destroy(&sm->policy);
}

static enum veil_wire_err small_run(struct small *sm)
{
        sm->out.len = 0;
        return veil_plan_exec(sm->plan, &sm->env, sm->in.data, sm->in.len,
                              &sm->out, &sm->err);
}

static const char all_types_schema[] =
        "{\"type\":\"record\",\"name\":\"All\",\"namespace\":\"t\","
        "\"fields\":["
        "{\"name\":\"n\",\"type\":\"null\",\"pii\":\"public\"},"
        "{\"name\":\"b\",\"type\":\"boolean\",\"pii\":\"public\"},"
        "{\"name\":\"i\",\"type\":\"int\",\"pii\":\"public\"},"
        "{\"name\":\"l\",\"type\":\"long\",\"pii\":\"public\"},"
        "{\"name\":\"f\",\"type\":\"float\",\"pii\":\"public\"},"
        "{\"name\":\"d\",\"type\":\"double\",\"pii\":\"public\"},"
        "{\"name\":\"by\",\"type\":\"bytes\",\"pii\":\"public\"},"
        "{\"name\":\"s\",\"type\":\"string\",\"pii\":\"public\"},"
        "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":\"R\","
        "\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]},\"pii\":\"public\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
        "\"symbols\":[\"A\",\"B\",\"C\"]},\"pii\":\"public\"},"
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"string\"},"
        "\"pii\":\"public\"},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"long\"},"
        "\"pii\":\"public\"},"
        "{\"name\":\"u\",\"type\":[\"null\",\"string\",\"R\"],"
        "\"pii\":\"public\"},"
        "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\","
        "\"size\":4},\"pii\":\"public\"},"
        "{\"name\":\"dt\",\"type\":{\"type\":\"int\",\"logicalType\":"
        "\"date\"},\"pii\":\"public\"},"
        "{\"name\":\"tm\",\"type\":{\"type\":\"int\",\"logicalType\":"
        "\"time-millis\"},\"pii\":\"public\"},"
        "{\"name\":\"tu\",\"type\":{\"type\":\"long\",\"logicalType\":"
        "\"time-micros\"},\"pii\":\"public\"},"
        "{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":"
        "\"timestamp-millis\"},\"pii\":\"public\"},"
        "{\"name\":\"tsu\",\"type\":{\"type\":\"long\",\"logicalType\":"
        "\"timestamp-micros\"},\"pii\":\"public\"},"
        "{\"name\":\"dec\",\"type\":{\"type\":\"bytes\",\"logicalType\":"
        "\"decimal\",\"precision\":9,\"scale\":2},\"pii\":\"public\"},"
        "{\"name\":\"uid\",\"type\":{\"type\":\"string\",\"logicalType\":"
        "\"uuid\"},\"pii\":\"public\"}"
        "]}";

static void all_types_bytes(struct veil_buf *b)
{
        static const uint8_t f[4] = {0, 0, 0x80, 0x3f},
                             d[8] = {0, 0, 0, 0, 0, 0, 0xf0, 0x3f};

        b->len = 0;
        put_raw(b, "\x01", 1);         /* b */
        put_long(b, -123456);          /* i */
        put_long(b, INT64_C(1) << 60); /* l */
        put_raw(b, f, 4);              /* f */
        put_raw(b, d, 8);              /* d */
        put_str(b, "\x00\xff");        /* by: 0 bytes (strlen) */
        put_str(b, "héllo");           /* s */
        put_long(b, 7);                /* r.x */
        put_long(b, 2);                /* e */
        put_long(b, 2);                /* a: 2 items */
        put_str(b, "x");
        put_str(b, "yz");
        put_long(b, 0);
        put_long(b, 1); /* m: 1 entry */
        put_str(b, "k");
        put_long(b, -9);
        put_long(b, 0);
        put_long(b, 2); /* u: branch R */
        put_long(b, 99);
        put_raw(b, "abcd", 4);                              /* fx */
        put_long(b, 19000);                                 /* dt */
        put_long(b, 3600000);                               /* tm */
        put_long(b, INT64_C(3600000000));                   /* tu */
        put_long(b, INT64_C(1700000000000));                /* ts */
        put_long(b, INT64_C(1700000000000000));             /* tsu */
        put_str(b, "\x01\x02");                             /* dec */
        put_str(b, "7d444840-9dc0-11d1-b245-5ffdce74fad2"); /* uid */
}

Test(plan, every_type_kept_is_copied_byte_for_byte)
{
        struct small sm;

        small_open(&sm, all_types_schema);
        all_types_bytes(&sm.in);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s",
                     veil_wire_error_code(sm.err.code));
        cr_assert_eq(sm.out.len, sm.in.len);
        cr_assert_eq(memcmp(sm.out.data, sm.in.data, sm.in.len), 0);
        /* The derived schema of an all-kept record is the source's. */
        {
                avro_schema_t ds;

                cr_assert_eq(avro_schema_from_json_length(
                                     veil_plan_derived_text(sm.plan),
                                     strlen(veil_plan_derived_text(sm.plan)),
                                     &ds),
                             0);
                cr_assert(avro_schema_equal(ds, sm.schema->avro));
                avro_schema_decref(ds);
        }
        /* Every strict prefix fails cleanly (never reads past the end). */
        {
                size_t full = sm.in.len, cut;

                for (cut = 0; cut < full; cut++) {
                        sm.in.len = cut;
                        cr_assert_neq(small_run(&sm), VEIL_WIRE_OK,
                                      "prefix %zu accepted", cut);
                        cr_assert_eq(sm.out.len, 0, "output not rolled back");
                }
        }
        small_fini(&sm);
}

Test(plan, transforms_on_every_applicable_type)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, f;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        size_t n;
        int32_t i32 = 0;
        int64_t i64 = 0;
        double dv   = 0;
        float fv    = 0;

        small_open(&sm,
                   "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                   "{\"name\":\"hi\",\"type\":\"int\",\"pii\":\"email\"},"
                   "{\"name\":\"hl\",\"type\":\"long\",\"pii\":\"email\"},"
                   "{\"name\":\"hb\",\"type\":\"bytes\",\"pii\":\"email\"},"
                   "{\"name\":\"he\",\"type\":{\"type\":\"enum\",\"name\":"
                   "\"E\",\"symbols\":[\"A\",\"BEE\"]},\"pii\":\"email\"},"
                   "{\"name\":\"hf\",\"type\":{\"type\":\"fixed\",\"name\":"
                   "\"F\",\"size\":2},\"pii\":\"email\"},"
                   "{\"name\":\"gi\",\"type\":\"int\",\"pii\":\"when\"},"
                   "{\"name\":\"gl\",\"type\":\"long\",\"pii\":\"when\"},"
                   "{\"name\":\"gf\",\"type\":\"float\",\"pii\":\"when\"},"
                   "{\"name\":\"gd\",\"type\":\"double\",\"pii\":\"when\"},"
                   "{\"name\":\"gs\",\"type\":\"string\",\"pii\":\"when\"},"
                   "{\"name\":\"gts\",\"type\":{\"type\":\"long\","
                   "\"logicalType\":\"timestamp-micros\"},\"pii\":\"when\"},"
                   "{\"name\":\"ms\",\"type\":\"string\",\"pii\":\"card\"},"
                   "{\"name\":\"nu\",\"type\":\"long\",\"pii\":\"phone\"},"
                   "{\"name\":\"dr\",\"type\":\"string\",\"pii\":\"secret\"}"
                   "]}");
        sm.in.len = 0;
        put_long(&sm.in, -42);
        put_long(&sm.in, INT64_C(9007199254740993));
        put_str(&sm.in, "raw");
        put_long(&sm.in, 1);
        put_raw(&sm.in, "zz", 2);
        put_long(&sm.in, -17);
        put_long(&sm.in, 123);
        put_raw(&sm.in, "\x00\x00\x28\x42", 4);                 /* 42.0f */
        put_raw(&sm.in, "\x00\x00\x00\x00\x00\x80\x5e\xc0", 8); /* -122.0 */
        put_str(&sm.in, "Ünïcode");
        put_long(&sm.in, INT64_C(-1)); /* 1969-12-31T23:59:59.999999 */
        put_str(&sm.in, "5555444433331111");
        put_long(&sm.in, 5);
        put_str(&sm.in, "gone");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s at %s",
                     veil_wire_error_code(sm.err.code),
                     sm.err.path ? sm.err.path : "-");
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
#define HASHED(field, text)                                                    \
        do {                                                                   \
                cr_assert_eq(veil_tx_hash(&sm.keys, text, strlen(text), tok,   \
                                          sizeof(tok) - 1, &n),                \
                             0);                                               \
                tok[n] = 0;                                                    \
                cr_assert_str_eq(get_str(&out, field), tok, "%s", field);      \
        } while (0)
        HASHED("hi", "-42");
        HASHED("hl", "9007199254740993");
        HASHED("hb", "raw");
        HASHED("he", "BEE");
        HASHED("hf", "zz");
#undef HASHED
        avro_value_get_by_name(&out, "gi", &f, NULL);
        avro_value_get_int(&f, &i32);
        cr_assert_eq(i32, -20);
        avro_value_get_by_name(&out, "gl", &f, NULL);
        avro_value_get_long(&f, &i64);
        cr_assert_eq(i64, 120);
        avro_value_get_by_name(&out, "gf", &f, NULL);
        avro_value_get_float(&f, &fv);
        cr_assert_float_eq(fv, 40.0f, 0.0001);
        avro_value_get_by_name(&out, "gd", &f, NULL);
        avro_value_get_double(&f, &dv);
        cr_assert_float_eq(dv, -130.0, 0.0001);
        cr_assert_str_eq(get_str(&out, "gs"), "Ü");
        avro_value_get_by_name(&out, "gts", &f, NULL);
        cr_assert_eq(avro_value_get_type(&f), AVRO_INT32);
        avro_value_get_int(&f, &i32);
        cr_assert_eq(i32, 1969);
        cr_assert_str_eq(get_str(&out, "ms"), "************1111");
        avro_value_get_by_name(&out, "nu", &f, NULL);
        cr_assert_eq(avro_value_get_type(&f), AVRO_UNION);
        cr_assert_not(has_field(&out, "dr"));
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

Test(plan, negative_block_counts_copied_or_reframed)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, f, item;
        const char *s = NULL;
        size_t n      = 0, block;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];

        small_open(&sm, "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                        "{\"name\":\"keep\",\"type\":{\"type\":\"array\","
                        "\"items\":\"string\"},\"pii\":\"public\"},"
                        "{\"name\":\"m\",\"type\":{\"type\":\"map\","
                        "\"values\":\"string\"},\"pii\":\"email\"},"
                        "{\"name\":\"h\",\"type\":{\"type\":\"array\","
                        "\"items\":\"string\"},\"pii\":\"email\"}]}");
        sm.in.len = 0;
        /* keep: block of -2 items, 4 bytes; then a block of 1; then 0 */
        put_long(&sm.in, -2);
        put_long(&sm.in, 4);
        put_str(&sm.in, "a");
        put_str(&sm.in, "b");
        put_long(&sm.in, 1);
        put_str(&sm.in, "c");
        put_long(&sm.in, 0);
        /* m: block of -1 entry, 6 bytes ("k" + "v12") */
        put_long(&sm.in, -1);
        put_long(&sm.in, 6);
        put_str(&sm.in, "k");
        put_str(&sm.in, "v12");
        put_long(&sm.in, 0);
        /* h: -2 items, 5 bytes */
        put_long(&sm.in, -2);
        put_long(&sm.in, 5);
        put_str(&sm.in, "xy");
        put_str(&sm.in, "z");
        put_long(&sm.in, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s",
                     veil_wire_error_code(sm.err.code));
        /* the kept array is copied as it came, block sizes included */
        cr_assert_eq(memcmp(sm.out.data, sm.in.data, 9), 0);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        avro_value_get_by_name(&out, "keep", &f, NULL);
        avro_value_get_size(&f, &n);
        cr_assert_eq(n, 3);
        avro_value_get_by_index(&f, 2, &item, NULL);
        avro_value_get_string(&item, &s, &n);
        cr_assert_str_eq(s, "c");
        avro_value_get_by_name(&out, "m", &f, NULL);
        /* the map is labelled email: its key is hashed too */
        cr_assert_eq(
                veil_tx_hash(&sm.keys, "k", 1, tok, sizeof(tok) - 1, &block),
                0);
        tok[block] = 0;
        cr_assert_eq(avro_value_get_by_name(&f, tok, &item, NULL), 0);
        avro_value_get_string(&item, &s, &n);
        cr_assert_eq(
                veil_tx_hash(&sm.keys, "v12", 3, tok, sizeof(tok) - 1, &block),
                0);
        tok[block] = 0;
        cr_assert_str_eq(s, tok);
        avro_value_get_by_name(&out, "h", &f, NULL);
        avro_value_get_size(&f, &n);
        cr_assert_eq(n, 2);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);

        /* A block size that does not match its items: bad-length, whether
         * the array is copied or rewritten. */
        sm.in.data[1] = 2 * 5; /* keep's block size 4 → 5 */
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        cr_assert_str_eq(sm.err.path, "keep");
        sm.in.data[1]             = 2 * 4;
        sm.in.data[sm.in.len - 7] = 2 * 6; /* h's block size 5 → 6 */
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        small_fini(&sm);
}

static const char hostile_schema[] =
        "{\"type\":\"record\",\"name\":\"H\",\"fields\":["
        "{\"name\":\"b\",\"type\":\"boolean\",\"pii\":\"public\"},"
        "{\"name\":\"i\",\"type\":\"int\",\"pii\":\"public\"},"
        "{\"name\":\"s\",\"type\":\"string\",\"pii\":\"email\"},"
        "{\"name\":\"u\",\"type\":[\"null\",\"string\"],\"pii\":\"public\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
        "\"symbols\":[\"A\",\"B\",\"C\"]},\"pii\":\"public\"},"
        "{\"name\":\"z\",\"type\":{\"type\":\"array\",\"items\":\"null\"},"
        "\"pii\":\"public\"},"
        "{\"name\":\"w\",\"type\":{\"type\":\"array\",\"items\":\"string\"},"
        "\"pii\":\"public\"}]}";

/* A valid H with the parts given; -1 leaves the default. */
static void hostile(struct veil_buf *b, int boolean, const uint8_t *i,
                    size_t ni, int64_t slen, int64_t branch, int64_t sym,
                    int64_t nulls, int64_t strings)
{
        b->len = 0;
        put_raw(b,
                boolean >= 0 ? (uint8_t[]){(uint8_t)boolean}
                             : (const uint8_t *)"\x01",
                1);
        if (i)
                put_raw(b, i, ni);
        else
                put_long(b, 5);
        put_long(b, slen);
        if (slen > 0)
                put_raw(b, "abcdefgh", (size_t)(slen < 8 ? slen : 8));
        put_long(b, branch);
        if (branch == 1)
                put_str(b, "x");
        put_long(b, sym);
        put_long(b, nulls);
        if (nulls)
                put_long(b, 0);
        put_long(b, strings);
        if (strings)
                put_long(b, 0);
}

Test(plan, hostile_input_gets_stable_codes)
{
        static const uint8_t long_varint[] = {0x80, 0x80, 0x80, 0x80,
                                              0x80, 0x80, 0x80, 0x80,
                                              0x80, 0x80, 0x01};
        static const uint8_t wide_int[]    = {0xfe, 0xff, 0xff, 0xff, 0x1f};
        struct small sm;

        small_open(&sm, hostile_schema);
        hostile(&sm.in, -1, NULL, 0, 3, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        put_raw(&sm.in, "\x00", 1);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_TRAILING_BYTES);

        hostile(&sm.in, 2, NULL, 0, 3, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_VALUE);
        cr_assert_str_eq(sm.err.path, "b");
        cr_assert_eq(sm.err.offset, 0);
        hostile(&sm.in, -1, long_varint, sizeof(long_varint), 3, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_VARINT);
        cr_assert_str_eq(sm.err.path, "i");
        hostile(&sm.in, -1, wide_int, sizeof(wide_int), 3, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_VARINT);
        hostile(&sm.in, -1, NULL, 0, -3, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        cr_assert_str_eq(sm.err.path, "s");
        hostile(&sm.in, -1, NULL, 0, INT64_C(1) << 40, 1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_TRUNCATED);
        hostile(&sm.in, -1, NULL, 0, 3, 2, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_UNION_INDEX);
        cr_assert_str_eq(sm.err.path, "u");
        hostile(&sm.in, -1, NULL, 0, 3, -1, 2, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_UNION_INDEX);
        hostile(&sm.in, -1, NULL, 0, 3, 1, 3, 0, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_VALUE);
        cr_assert_str_eq(sm.err.path, "e");
        /* 2^40 nulls take no bytes: only the count limit stops them */
        hostile(&sm.in, -1, NULL, 0, 3, 1, 2, INT64_C(1) << 40, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        cr_assert_str_eq(sm.err.path, "z");
        hostile(&sm.in, -1, NULL, 0, 3, 1, 2, 1000, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        hostile(&sm.in, -1, NULL, 0, 3, 1, 2, INT64_MIN, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        /* 2^40 strings cannot fit in what is left */
        hostile(&sm.in, -1, NULL, 0, 3, 1, 2, 0, INT64_C(1) << 40);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_TRUNCATED);
        cr_assert_eq(sm.out.len, 0);
        small_fini(&sm);
}

/* An H whose s, u and one item of w are the given strings. */
static void hostile_strings(struct veil_buf *b, const char *s, const char *u,
                            const char *w)
{
        b->len = 0;
        put_raw(b, "\x01", 1);
        put_long(b, 5);
        put_str(b, s);
        put_long(b, 1);
        put_str(b, u);
        put_long(b, 2);
        put_long(b, 0);
        put_long(b, 1);
        put_str(b, w);
        put_long(b, 0);
}

/* Avro strings are UTF-8: one that is not fails the record as bad-utf8,
 * whether its field is transformed (s), copied (u) or an array item (w). */
Test(plan, strings_that_are_not_utf8_are_bad_utf8)
{
        struct small sm;

        small_open(&sm, hostile_schema);
        hostile_strings(&sm.in, "caf\xc3\xa9", "\xe2\x82\xac",
                        "\xf0\x9f\x98\x80");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        hostile_strings(&sm.in, "ab\xff", "x", "y");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_UTF8);
        cr_assert_str_eq(sm.err.path, "s");
        hostile_strings(&sm.in, "ab", "\xc3\x28", "y");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_UTF8);
        cr_assert_str_eq(sm.err.path, "u");
        hostile_strings(&sm.in, "ab", "x", "\xed\xa0\x80");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_UTF8);
        cr_assert_eq(sm.out.len, 0);
        cr_assert_str_eq(veil_wire_error_code(VEIL_WIRE_BAD_UTF8), "bad-utf8");
        small_fini(&sm);
}

Test(plan, output_limit_is_too_large)
{
        struct small sm;
        struct veil_plan_opts opts = {0};
        char err[256];
        int k;

        small_open(&sm, "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                        "{\"name\":\"a\",\"type\":{\"type\":\"array\","
                        "\"items\":\"string\"},\"pii\":\"email\"}]}");
        veil_plan_destroy(sm.plan);
        opts.policy     = &sm.policy;
        opts.purpose    = &sm.policy.purposes[0];
        opts.max_output = 1000;
        sm.plan         = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm.plan, "%s", err);
        /* 100 empty strings hash into 100 tokens of 46 bytes */
        sm.in.len = 0;
        put_long(&sm.in, 100);
        for (k = 0; k < 100; k++)
                put_str(&sm.in, "");
        put_long(&sm.in, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_TOO_LARGE);
        sm.in.len = 0;
        put_long(&sm.in, 10);
        for (k = 0; k < 10; k++)
                put_str(&sm.in, "");
        put_long(&sm.in, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        small_fini(&sm);
}

struct refusals {
        int n;
        char msgs[8][256];
};

static void on_refuse(void *opaque, const char *path, const char *label,
                      const struct veil_transform *tx, const char *message)
{
        struct refusals *r = opaque;

        (void)path;
        (void)label;
        (void)tx;
        if (r->n < 8)
                snprintf(r->msgs[r->n], sizeof(r->msgs[0]), "%s", message);
        r->n++;
}

Test(plan, refuses_transforms_that_cannot_apply)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"ok\",\"type\":\"string\",\"pii\":\"card\"},"
                "{\"name\":\"n\",\"type\":\"int\",\"pii\":\"card\"},"
                "{\"name\":\"flag\",\"type\":\"boolean\",\"pii\":\"email\"},"
                "{\"name\":\"t\",\"type\":{\"type\":\"int\",\"logicalType\":"
                "\"time-millis\"},\"pii\":\"when\"},"
                "{\"name\":\"c\",\"type\":{\"type\":\"array\",\"items\":{"
                "\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":"
                "\"x\",\"type\":[\"null\",\"double\"]}]}},\"pii\":\"card\"}"
                "]}";
        struct small sm;
        struct veil_plan_opts opts = {0};
        struct refusals r          = {0};
        char err[512]              = "";

        cr_assert_null(small_compile(&sm, schema, err, sizeof(err)));
        cr_assert_str_eq(err, "field 'n': transform 'mask' cannot apply to "
                              "type 'int'");
        opts.policy    = &sm.policy;
        opts.purpose   = &sm.policy.purposes[0];
        opts.on_refuse = on_refuse;
        opts.opaque    = &r;
        sm.plan        = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm.plan, "%s", err);
        cr_assert_eq(r.n, 4);
        cr_assert_str_eq(r.msgs[1], "field 'flag': transform 'hash' cannot "
                                    "apply to type 'boolean'");
        cr_assert_str_eq(r.msgs[2], "field 't': transform 'generalize' "
                                    "cannot apply to type 'int "
                                    "(time-millis)'");
        cr_assert_str_eq(r.msgs[3], "field 'c[].x': transform 'mask' cannot "
                                    "apply to type 'double'");
        /* refused positions are dropped; the rest still runs */
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\""
                "ok\",\"type\":\"string\",\"veil.class\":\"card\",\"veil.tran"
                "sform\":\"mask\"}]}");
        small_fini(&sm);
}

Test(plan, check_field_uses_the_compiler_rule)
{
        struct fixture fx;
        struct veil_transform tx = {0};
        char err[256]            = "";

        fixture_init(&fx, "analytics");
        tx.generalize.width  = 10;
        tx.generalize.prefix = 1;
        tx.mask.mask_char    = '*';
        tx.kind              = VEIL_TX_HASH;
        cr_assert_eq(veil_plan_check_field(
                             fx.schema, veil_schema_field(fx.schema, "email"),
                             &tx, err, sizeof(err)),
                     0);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema, veil_schema_field(fx.schema, "address"),
                             &tx, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "marketing_opt_in"),
                             &tx, err, sizeof(err)),
                     VEIL_ETYPE);
        cr_assert_str_eq(err, "transform 'hash' cannot apply to type "
                              "'boolean'");
        tx.kind = VEIL_TX_MASK;
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "birth_date"), &tx,
                             err, sizeof(err)),
                     VEIL_ETYPE);
        cr_assert_str_eq(err, "transform 'mask' cannot apply to type 'int "
                              "(date)'");
        cr_assert_eq(
                veil_plan_check_field(fx.schema,
                                      veil_schema_field(fx.schema, "contacts"),
                                      &tx, err, sizeof(err)),
                0, "%s", err);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema, veil_schema_field(fx.schema, "phone"),
                             &tx, err, sizeof(err)),
                     0, "%s", err);
        tx.kind = VEIL_TX_GENERALIZE;
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "account_uuid"), &tx,
                             err, sizeof(err)),
                     VEIL_ETYPE);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "created_at"), &tx,
                             err, sizeof(err)),
                     0);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "device_fingerprint"),
                             &tx, err, sizeof(err)),
                     VEIL_ETYPE);
        tx.kind = VEIL_TX_ENCRYPT;
        cr_assert_eq(veil_plan_check_field(
                             fx.schema,
                             veil_schema_field(fx.schema, "attributes"), &tx,
                             err, sizeof(err)),
                     0);
        cr_assert_eq(veil_plan_check_field(
                             fx.schema, veil_schema_field(fx.schema, "status"),
                             &tx, err, sizeof(err)),
                     VEIL_ETYPE);
        cr_assert_str_eq(err, "transform 'encrypt' cannot apply to type "
                              "'enum Status'");
        fixture_fini(&fx);
}

Test(plan, union_branches_merge_and_reindex)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        size_t n;

        small_open(&sm, "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                        "{\"name\":\"v\",\"type\":[\"null\",\"int\",\"string\","
                        "\"long\"],\"pii\":\"email\"},"
                        "{\"name\":\"p\",\"type\":[\"string\",\"null\"],"
                        "\"default\":\"x\",\"pii\":\"phone\"}]}");
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\""
                "v\",\"type\":[\"null\",\"string\"],\"veil.class\":\"email\","
                "\"veil.transform\":\"hash\"},{\"name\":\"p\",\"type\":[\"nul"
                "l\",\"string\"],\"default\":null,\"veil.class\":\"phone\",\""
                "veil.transform\":\"null\"}]}");
        /* branch 3 (long) → branch 1 (string) */
        sm.in.len = 0;
        put_long(&sm.in, 3);
        put_long(&sm.in, -77);
        put_long(&sm.in, 0);
        put_str(&sm.in, "secret phone");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        veil_tx_hash(&sm.keys, "-77", 3, tok, sizeof(tok) - 1, &n);
        tok[n] = 0;
        cr_assert_str_eq(get_str(&out, "v"), tok);
        cr_assert_null(get_str(&out, "p"));
        avro_value_decref(&out);
        /* branch 0 stays null, branch 2 moves to 1 */
        sm.in.len = 0;
        put_long(&sm.in, 0);
        put_long(&sm.in, 1);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_eq(sm.out.len, 2);
        cr_assert_eq(sm.out.data[0], 0);
        cr_assert_eq(sm.out.data[1], 0);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

static const char list_schema[] =
        "{\"type\":\"record\",\"name\":\"Node\",\"fields\":["
        "{\"name\":\"v\",\"type\":\"string\",\"pii\":\"email\"},"
        "{\"name\":\"k\",\"type\":\"int\",\"pii\":\"public\"},"
        "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}";

Test(plan, recursive_types_follow_their_definition_until_too_deep)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, cur, nx, br;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        int depth, k;
        size_t n;

        small_open(&sm, list_schema);
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"Node\",\"fields\":[{\"name\""
                ":\"v\",\"type\":\"string\",\"veil.class\":\"email\",\"veil.t"
                "ransform\":\"hash\"},{\"name\":\"k\",\"type\":\"int\",\"pii"
                "\":\"public\",\"veil.class\":\"public\",\"veil.transform\":\""
                "keep\"},{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}");
        for (depth = 1; depth <= 70; depth += 69) {
                sm.in.len = 0;
                for (k = 0; k < depth; k++) {
                        put_str(&sm.in, "a@b.c");
                        put_long(&sm.in, k);
                        put_long(&sm.in, k + 1 < depth ? 1 : 0);
                }
                if (depth == 70) {
                        cr_assert_eq(small_run(&sm), VEIL_WIRE_TOO_DEEP);
                        break;
                }
                cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        }
        sm.in.len = 0;
        for (k = 0; k < 20; k++) {
                put_str(&sm.in, "a@b.c");
                put_long(&sm.in, k);
                put_long(&sm.in, k + 1 < 20 ? 1 : 0);
        }
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        veil_tx_hash(&sm.keys, "a@b.c", 5, tok, sizeof(tok) - 1, &n);
        tok[n] = 0;
        cur    = out;
        for (k = 0; k < 20; k++) {
                cr_assert_str_eq(get_str(&cur, "v"), tok, "level %d", k);
                avro_value_get_by_name(&cur, "next", &nx, NULL);
                avro_value_get_current_branch(&nx, &br);
                if (k < 19)
                        cur = br;
                else
                        cr_assert_eq(avro_value_get_type(&br), AVRO_NULL);
        }
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

Test(plan, unclassified_and_empty_containers_drop_their_field)
{
        struct small sm;

        small_open(&sm,
                   "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                   "{\"name\":\"tags\",\"type\":{\"type\":\"array\","
                   "\"items\":\"string\"}},"
                   "{\"name\":\"inner\",\"type\":{\"type\":\"record\","
                   "\"name\":\"I\",\"fields\":[{\"name\":\"a\",\"type\":"
                   "\"string\"},{\"name\":\"b\",\"type\":\"int\",\"pii\":"
                   "\"secret\"}]}},"
                   "{\"name\":\"maybe\",\"type\":[\"null\",\"I\"]},"
                   "{\"name\":\"kept\",\"type\":{\"type\":\"record\",\"name\":"
                   "\"K\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]},"
                   "\"pii\":\"internal\"},"
                   "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"}"
                   "]}");
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\""
                "kept\",\"type\":{\"type\":\"record\",\"name\":\"K\",\"fields"
                "\":[{\"name\":\"x\",\"type\":\"int\",\"veil.class\":\"intern"
                "al\",\"veil.transform\":\"keep\"}]},\"pii\":\"internal\",\"v"
                "eil.class\":\"internal\",\"veil.transform\":\"keep\"},{\"nam"
                "e\":\"id\",\"type\":\"string\",\"pii\":\"public\",\"veil.cla"
                "ss\":\"public\",\"veil.transform\":\"keep\"}]}");
        sm.in.len = 0;
        put_long(&sm.in, 1);
        put_str(&sm.in, "tag");
        put_long(&sm.in, 0);
        put_str(&sm.in, "a");
        put_long(&sm.in, 5);
        put_long(&sm.in, 1);
        put_str(&sm.in, "a2");
        put_long(&sm.in, 6);
        put_long(&sm.in, 9);
        put_str(&sm.in, "ID");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_eq(sm.out.len, 4);
        cr_assert_eq(memcmp(sm.out.data, "\x12\x04ID", 4), 0);
        small_fini(&sm);
}

Test(plan, a_type_derived_two_ways_is_renamed)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out;
        struct veil_plan_opts opts = {0};
        char err[256];

        small_open(&sm,
                   "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"n\","
                   "\"fields\":["
                   "{\"name\":\"home\",\"type\":{\"type\":\"record\",\"name\":"
                   "\"Addr\",\"fields\":[{\"name\":\"zip\",\"type\":\"string\","
                   "\"pii\":\"public\"},{\"name\":\"kind\",\"type\":{\"type\":"
                   "\"enum\",\"name\":\"Kind\",\"symbols\":[\"A\",\"B\"]},"
                   "\"pii\":\"public\"}]}},"
                   "{\"name\":\"work\",\"type\":\"Addr\"},"
                   "{\"name\":\"same\",\"type\":\"n.Addr\"}]}");
        veil_plan_destroy(sm.plan);
        /* hashing work.zip would give the same type (string); dropping it
         * does not */
        avro_ref_override(&sm.policy.routes[0], "work.zip", "secret");
        opts.policy  = &sm.policy;
        opts.route   = &sm.policy.routes[0];
        opts.purpose = &sm.policy.purposes[0];
        sm.plan      = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm.plan, "%s", err);
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"n\",\"fi"
                "elds\":[{\"name\":\"home\",\"type\":{\"type\":\"record\",\"n"
                "ame\":\"Addr\",\"namespace\":\"n\",\"fields\":[{\"name\":\"z"
                "ip\",\"type\":\"string\",\"pii\":\"public\",\"veil.class\":"
                "\"public\",\"veil.transform\":\"keep\"},{\"name\":\"kind\",\""
                "type\":{\"type\":\"enum\",\"name\":\"Kind\",\"namespace\":\""
                "n\",\"symbols\":[\"A\",\"B\"]},\"pii\":\"public\",\"veil.cla"
                "ss\":\"public\",\"veil.transform\":\"keep\"}]}},{\"name\":\""
                "work\",\"type\":{\"type\":\"record\",\"name\":\"Addr_2\",\"n"
                "amespace\":\"n\",\"fields\":[{\"name\":\"kind\",\"type\":\"n"
                ".Kind\",\"pii\":\"public\",\"veil.class\":\"public\",\"veil."
                "transform\":\"keep\"}]}},{\"name\":\"same\",\"type\":\"n.Add"
                "r\"}]}");
        sm.in.len = 0;
        put_str(&sm.in, "h");
        put_long(&sm.in, 1);
        put_str(&sm.in, "w");
        put_long(&sm.in, 0);
        put_str(&sm.in, "s");
        put_long(&sm.in, 1);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

Test(plan, encrypt_siv_is_deterministic_and_gcm_reveals)
{
        struct small sm;
        struct veil_transform *tx;
        struct veil_plan_opts opts = {0};
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, f;
        const void *b;
        const char *s1;
        char err[256], *first, plain[64];
        size_t n = 0, pn;

        small_open(&sm, "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                        "{\"name\":\"s\",\"type\":\"string\",\"pii\":\"x\"},"
                        "{\"name\":\"g\",\"type\":\"bytes\",\"pii\":\"y\"}]}");
        veil_plan_destroy(sm.plan);
        avro_ref_class(&sm.policy, "x", VEIL_TIER_RESTRICTED);
        avro_ref_class(&sm.policy, "y", VEIL_TIER_RESTRICTED);
        avro_ref_rule(&sm.policy.purposes[0], "x", VEIL_TX_ENCRYPT);
        tx = avro_ref_rule(&sm.policy.purposes[0], "y", VEIL_TX_ENCRYPT);
        tx->encrypt.mode   = VEIL_ENCRYPT_GCM;
        tx->encrypt.output = VEIL_ENCRYPT_OUT_BYTES;
        opts.policy        = &sm.policy;
        opts.purpose       = &sm.policy.purposes[0];
        sm.plan = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm.plan, "%s", err);
        cr_assert_str_eq(
                veil_plan_derived_text(sm.plan),
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\""
                "s\",\"type\":\"string\",\"veil.class\":\"x\",\"veil.transfor"
                "m\":\"encrypt\"},{\"name\":\"g\",\"type\":\"bytes\",\"veil.c"
                "lass\":\"y\",\"veil.transform\":\"encrypt\"}]}");
        sm.in.len = 0;
        put_str(&sm.in, "top secret");
        put_str(&sm.in, "gcm plaintext");
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        first = veil_strdup(get_str(&out, "s"));
        cr_assert_null(strstr(first, "top secret"));
        avro_value_get_by_name(&out, "g", &f, NULL);
        avro_value_get_bytes(&f, &b, &n);
        cr_assert_eq(veil_tx_reveal(&sm.keys, b, n, plain, sizeof(plain), &pn,
                                    err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(pn, 13);
        cr_assert_eq(memcmp(plain, "gcm plaintext", 13), 0);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        s1 = get_str(&out, "s");
        cr_assert_str_eq(s1, first, "SIV is deterministic");
        cr_assert_eq(veil_tx_reveal(&sm.keys, s1, strlen(s1), plain,
                                    sizeof(plain), &pn, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(memcmp(plain, "top secret", 10), 0);
        free(first);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

Test(plan, keys_plain_and_framed_are_joinable_with_values)
{
        struct fixture fx;
        const struct veil_transform *tx;
        struct veil_buf key;
        struct veil_schema *ks;
        struct veil_plan *kp;
        struct veil_plan_opts opts = {0};
        struct veil_plan_error perr;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1], err[256];
        uint8_t framed[64];
        bool isnull;

        fixture_init(&fx, "analytics");
        veil_buf_init(&key, 0);
        token_of(&fx, "C-000123", tok);
        tx = veil_key_tx(&fx.policy, veil_policy_route(&fx.policy, "customers"),
                         veil_policy_purpose(&fx.policy, "analytics"), err,
                         sizeof(err));
        cr_assert_not_null(tx, "%s", err);
        cr_assert_not(veil_key_is_framed("C-000123", 8));
        cr_assert_eq(
                veil_key_transform(tx, &fx.env, "C-000123", 8, &key, &isnull),
                VEIL_WIRE_OK);
        cr_assert_not(isnull);
        cr_assert_eq(key.len, strlen(tok));
        cr_assert_eq(memcmp(key.data, tok, key.len), 0);
        /* marketing keeps the key as it is */
        tx = veil_key_tx(&fx.policy, veil_policy_route(&fx.policy, "customers"),
                         veil_policy_purpose(&fx.policy, "marketing"), err,
                         sizeof(err));
        cr_assert_eq(tx->kind, VEIL_TX_KEEP);
        /* a key class the purpose does not license: no key, no record */
        {
                struct veil_route r = {.key_class = "ssn"};

                cr_assert_null(veil_key_tx(
                        &fx.policy, &r,
                        veil_policy_purpose(&fx.policy, "marketing"), err,
                        sizeof(err)));
                cr_assert_str_eq(err, "key class 'ssn' is not licensed for "
                                      "purpose 'marketing'");
        }
        /* an Avro-framed string key: the same token, framed */
        /* (built by hand: veil_schema_parse wants a JSON object) */
        ks              = veil_calloc(1, sizeof(*ks));
        ks->id          = 5;
        ks->avro        = avro_schema_string();
        ks->json        = json_string("string");
        ks->named       = json_object();
        opts.policy     = &fx.policy;
        opts.purpose    = veil_policy_purpose(&fx.policy, "analytics");
        opts.root_label = "customer_id";
        kp              = veil_plan_compile(ks, &opts, err, sizeof(err));
        cr_assert_not_null(kp, "%s", err);
        cr_assert_str_eq(veil_plan_derived_text(kp), "\"string\"");
        veil_plan_set_output_id(kp, 77);
        veil_wire_header_write(framed, 5);
        framed[5] = 16;
        memcpy(framed + 6, "C-000123", 8);
        cr_assert(veil_key_is_framed(framed, 14));
        cr_assert_eq(
                veil_plan_exec_framed(kp, &fx.env, framed, 14, &key, &perr),
                VEIL_WIRE_OK);
        cr_assert_eq(key.len, 5 + 1 + strlen(tok));
        cr_assert_eq(memcmp(key.data, "\x00\x00\x00\x00\x4d", 5), 0);
        cr_assert_eq(key.data[5], 2 * strlen(tok));
        cr_assert_eq(memcmp(key.data + 6, tok, strlen(tok)), 0);
        cr_assert_eq(
                veil_plan_exec_framed(kp, &fx.env, "C-000123", 8, &key, &perr),
                VEIL_WIRE_BAD_MAGIC);
        cr_assert_eq(veil_plan_exec_framed(kp, &fx.env, framed, 3, &key, &perr),
                     VEIL_WIRE_TOO_SHORT);
        veil_plan_destroy(kp);
        /* a key class that is not licensed: the plan refuses */
        opts.root_label = "ssn";
        opts.purpose    = veil_policy_purpose(&fx.policy, "marketing");
        cr_assert_null(veil_plan_compile(ks, &opts, err, sizeof(err)));
        veil_schema_destroy(ks);
        veil_buf_free(&key);
        fixture_fini(&fx);
}

Test(plan, cache_is_bounded_and_least_recently_used_goes)
{
        struct veil_plan_cache *cache = veil_plan_cache_new(2);
        struct small sm;
        struct veil_plan *a, *b, *c;
        struct veil_plan_opts opts = {0};
        char err[256];

        small_open(&sm, hostile_schema);
        opts.policy  = &sm.policy;
        opts.purpose = &sm.policy.purposes[0];
        a            = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        b            = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        c            = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert(a && b && c);
        cr_assert_null(veil_plan_cache_get(cache, 1, "p", "d1", false));
        veil_plan_cache_put(cache, 1, "p", "d1", false, a);
        veil_plan_cache_put(cache, 1, "p", "d1", true, b);
        cr_assert_eq(veil_plan_cache_get(cache, 1, "p", "d1", false), a);
        cr_assert_eq(veil_plan_cache_get(cache, 1, "p", "d1", true), b);
        cr_assert_null(veil_plan_cache_get(cache, 1, "p", "d2", false));
        cr_assert_null(veil_plan_cache_get(cache, 2, "p", "d1", false));
        cr_assert_null(veil_plan_cache_get(cache, 1, "q", "d1", false));
        /* a was used before b: c evicts a */
        veil_plan_cache_get(cache, 1, "p", "d1", false);
        veil_plan_cache_get(cache, 1, "p", "d1", true);
        veil_plan_cache_put(cache, 2, "p", "d1", false, c);
        cr_assert_eq(veil_plan_cache_size(cache), 2);
        cr_assert_null(veil_plan_cache_get(cache, 1, "p", "d1", false));
        cr_assert_eq(veil_plan_cache_get(cache, 1, "p", "d1", true), b);
        cr_assert_eq(veil_plan_cache_get(cache, 2, "p", "d1", false), c);
        veil_plan_cache_destroy(cache);
        small_fini(&sm);
}

Test(plan, field_summary_names_labels_and_reasons)
{
        struct fixture fx;
        struct veil_plan *plan;
        const struct veil_plan_field *f;
        size_t n, i;
        int seen = 0;

        fixture_init(&fx, "analytics");
        plan = compile(&fx, "analytics", NULL);
        f    = veil_plan_fields(plan, &n);
        for (i = 0; i < n; i++) {
                if (!strcmp(f[i].path, "referrer")) {
                        cr_assert_eq(f[i].reason, VEIL_PLAN_UNCLASSIFIED);
                        seen |= 1;
                } else if (!strcmp(f[i].path, "full_name")) {
                        cr_assert_eq(f[i].reason, VEIL_PLAN_UNDEFINED);
                        seen |= 2;
                } else if (!strcmp(f[i].path, "address.zip")) {
                        cr_assert_eq(f[i].source, VEIL_LABEL_OVERRIDE);
                        cr_assert_eq(f[i].tx, VEIL_TX_KEEP);
                        seen |= 4;
                } else if (!strcmp(f[i].path, "contacts[].email")) {
                        cr_assert_eq(f[i].tx, VEIL_TX_HASH);
                        seen |= 8;
                }
        }
        cr_assert_eq(seen, 15);
        cr_assert(veil_plan_needs_keys(plan));
        cr_assert(veil_plan_needs_detect(plan));
        veil_plan_destroy(plan);
        plan = compile(&fx, "marketing", NULL);
        cr_assert_not(veil_plan_needs_keys(plan));
        veil_plan_destroy(plan);
        fixture_fini(&fx);
}

Test(plan, missing_keys_or_env_fail_cleanly)
{
        struct small sm;
        struct veil_plan_opts opts = {0};
        char err[256];

        small_open(&sm, "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                        "{\"name\":\"e\",\"type\":\"string\",\"pii\":"
                        "\"email\"},{\"name\":\"c\",\"type\":\"string\","
                        "\"pii\":\"card\"}]}");
        sm.in.len = 0;
        put_str(&sm.in, "a@b.c");
        put_str(&sm.in, "4111111111111111");
        /* hash needs keys */
        sm.env.keys = NULL;
        cr_assert_eq(small_run(&sm), VEIL_WIRE_TRANSFORM_FAILED);
        cr_assert_eq(veil_plan_exec(sm.plan, NULL, sm.in.data, sm.in.len,
                                    &sm.out, NULL),
                     VEIL_WIRE_TRANSFORM_FAILED);
        /* a plan that only masks runs without an env */
        veil_plan_destroy(sm.plan);
        avro_ref_override(&sm.policy.routes[0], "e", "public");
        opts.policy  = &sm.policy;
        opts.route   = &sm.policy.routes[0];
        opts.purpose = &sm.policy.purposes[0];
        sm.plan      = veil_plan_compile(sm.schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm.plan, "%s", err);
        cr_assert_not(veil_plan_needs_keys(sm.plan));
        sm.out.len = 0;
        cr_assert_eq(veil_plan_exec(sm.plan, NULL, sm.in.data, sm.in.len,
                                    &sm.out, NULL),
                     VEIL_WIRE_OK);
        cr_assert_eq(sm.out.len, 6 + 17);
        cr_assert_eq(memcmp(sm.out.data + 6, "\x20************1111", 17), 0);
        small_fini(&sm);
}

Test(plan, confluent_tags_and_metadata_classify_through_tag_classes)
{
        static const char text[] =
                "{\"type\":\"record\",\"name\":\"U\",\"namespace\":\"n\","
                "\"fields\":["
                "{\"name\":\"a\",\"type\":\"string\",\"confluent:tags\":"
                "[\"OTHER\",\"PII\"]},"
                "{\"name\":\"b\",\"type\":\"string\"},"
                "{\"name\":\"c\",\"type\":\"string\",\"pii\":\"public\","
                "\"confluent:tags\":[\"PII\"]},"
                "{\"name\":\"d\",\"type\":\"string\"}]}";
        struct veil_policy policy;
        struct veil_purpose *p;
        struct veil_plan_opts opts = {0};
        struct veil_schema *schema;
        struct veil_plan *plan;
        json_t *meta = json_pack("{s:{s:[s]}}", "tags", "U.b", "PII");
        char err[256];

        memset(&policy, 0, sizeof(policy));
        avro_ref_class(&policy, "email", VEIL_TIER_CONFIDENTIAL);
        avro_ref_tag_class(&policy, "PII", "email");
        p = avro_ref_purpose(&policy, "p");
        avro_ref_rule(p, "email", VEIL_TX_HASH);
        avro_ref_rule(p, "public", VEIL_TX_KEEP);
        schema = veil_schema_parse(text, strlen(text), meta, 3, err,
                                   sizeof(err));
        json_decref(meta);
        cr_assert_not_null(schema, "%s", err);
        opts.policy  = &policy;
        opts.purpose = p;
        plan         = veil_plan_compile(schema, &opts, err, sizeof(err));
        cr_assert_not_null(plan, "%s", err);
        {
                const struct veil_plan_field *f;
                size_t n, i;
                int seen = 0;

                f = veil_plan_fields(plan, &n);
                for (i = 0; i < n; i++) {
                        if (!strcmp(f[i].path, "a")) {
                                cr_assert_eq(f[i].source, VEIL_LABEL_TAG);
                                cr_assert_eq(f[i].tx, VEIL_TX_HASH);
                                seen |= 1;
                        } else if (!strcmp(f[i].path, "b")) {
                                cr_assert_eq(f[i].source, VEIL_LABEL_TAG,
                                             "metadata.tags by path");
                                cr_assert_eq(f[i].tx, VEIL_TX_HASH);
                                seen |= 2;
                        } else if (!strcmp(f[i].path, "c")) {
                                cr_assert_eq(f[i].source, VEIL_LABEL_PII,
                                             "pii wins over tags");
                                cr_assert_eq(f[i].tx, VEIL_TX_KEEP);
                                seen |= 4;
                        } else if (!strcmp(f[i].path, "d")) {
                                cr_assert_eq(f[i].reason,
                                             VEIL_PLAN_UNCLASSIFIED);
                                seen |= 8;
                        }
                }
                cr_assert_eq(seen, 15);
        }
        cr_assert_eq(veil_plan_source_id(plan), 3);
        cr_assert_eq(veil_plan_output_id(plan), -1);
        veil_plan_destroy(plan);
        veil_schema_destroy(schema);
        veil_policy_destroy(&policy);
}

/* ---- map keys are data (DESIGN.md §5) ----------------------------------- */

static void small_recompile(struct small *sm)
{
        struct veil_plan_opts opts = {0};
        char err[512]              = "";

        veil_plan_destroy(sm->plan);
        opts.policy  = &sm->policy;
        opts.route   = &sm->policy.routes[0];
        opts.purpose = &sm->policy.purposes[0];
        sm->plan     = veil_plan_compile(sm->schema, &opts, err, sizeof(err));
        cr_assert_not_null(sm->plan, "%s", err);
}

/* The hash token of `s` under the small policy's keys (NUL-terminated). */
static void hash_token(struct small *sm, const char *s, char *tok, size_t cap)
{
        size_t n = 0;

        cr_assert_eq(veil_tx_hash(&sm->keys, s, strlen(s), tok, cap - 1, &n),
                     0);
        tok[n] = 0;
}

static bool bytes_contain(const struct veil_buf *b, const char *s)
{
        return memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* The plan field entry of `path`, or NULL. */
static const struct veil_plan_field *plan_field(const struct veil_plan *plan,
                                                const char *path)
{
        const struct veil_plan_field *f;
        size_t n, i;

        f = veil_plan_fields(plan, &n);
        for (i = 0; i < n; i++)
                if (!strcmp(f[i].path, path))
                        return &f[i];
        return NULL;
}

static const char map_schema[] =
        "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
        "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
        "\"pii\":\"email\"}]}";

/* The case: a map<string> labelled email under a purpose that hashes
 * email carried its keys (email addresses) in clear beside hashed values. */
Test(plan, map_keys_under_hash_never_pass_in_clear)
{
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, m, v;
        const char *key, *s;
        char ktok[VEIL_TX_HASH_TOKEN_MAX + 1], vtok[VEIL_TX_HASH_TOKEN_MAX + 1];
        const struct veil_plan_field *f;
        size_t n = 0;

        small_open(&sm, map_schema);
        sm.in.len = 0;
        put_str(&sm.in, "r1");
        put_long(&sm.in, 1);
        put_str(&sm.in, "alias@example.net");
        put_str(&sm.in, "work");
        put_long(&sm.in, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s",
                     veil_wire_error_code(sm.err.code));
        cr_assert_not(bytes_contain(&sm.out, "alias@example.net"),
                      "a map key reached the purpose in clear");
        cr_assert_not(bytes_contain(&sm.out, "example"));
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        cr_assert_eq(avro_value_get_by_name(&out, "m", &m, NULL), 0);
        cr_assert_eq(avro_value_get_size(&m, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(avro_value_get_by_index(&m, 0, &v, &key), 0);
        hash_token(&sm, "alias@example.net", ktok, sizeof(ktok));
        hash_token(&sm, "work", vtok, sizeof(vtok));
        cr_assert_str_eq(key, ktok, "the key is the email's hash token");
        cr_assert_eq(avro_value_get_string(&v, &s, &n), 0);
        cr_assert_str_eq(s, vtok);
        /* the same address as a value hashes the same: joinable */
        f = plan_field(sm.plan, "m{key}");
        cr_assert_not_null(f, "the keys have an entry in the field summary");
        cr_assert_eq(f->tx, VEIL_TX_HASH);
        cr_assert_eq(f->reason, VEIL_PLAN_INHERITED);
        cr_assert_str_eq(f->label, "email");
        cr_assert(veil_plan_needs_keys(sm.plan));
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

/* Keys take every transform that applies to a string; encrypt's bytes
 * form would not be a string, so keys get the string token. */
Test(plan, map_keys_take_mask_generalize_redact_and_string_encrypt)
{
        static const struct {
                const char *label;
                const char *key;
                const char *want; /* NULL: check the prefix */
                const char *prefix;
        } cases[] = {
                {"card", "4111111111111111", "************1111", NULL},
                {"when", "Zo\xc3\xab", "Z", NULL},
                {"notes", "mail bob@example.org now", "mail [email] now", NULL},
                {"enc", "alias@example.net", NULL, "k1:s:"},
        };
        struct veil_detect_engine *engine;
        char schema[512], err[256] = "";
        size_t i;

        engine = veil_detect_engine_new(NULL, 0, err, sizeof(err));
        cr_assert_not_null(engine, "%s", err);
        for (i = 0; i < VEIL_ARRAY_SIZE(cases); i++) {
                struct small sm;
                struct veil_transform *tx;
                avro_schema_t ds;
                avro_value_iface_t *di;
                avro_value_t out, m, v;
                const char *key;
                size_t n = 0;

                snprintf(schema, sizeof(schema),
                         "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                         "{\"name\":\"m\",\"type\":{\"type\":\"map\","
                         "\"values\":\"string\"},\"pii\":\"%s\"}]}",
                         cases[i].label);
                small_open(&sm, schema);
                avro_ref_class(&sm.policy, "notes", VEIL_TIER_INTERNAL);
                avro_ref_class(&sm.policy, "enc", VEIL_TIER_RESTRICTED);
                avro_ref_rule(&sm.policy.purposes[0], "notes",
                              VEIL_TX_REDACT_TEXT);
                tx = avro_ref_rule(&sm.policy.purposes[0], "enc",
                                   VEIL_TX_ENCRYPT);
                tx->encrypt.output = VEIL_ENCRYPT_OUT_BYTES;
                sm.env.detect      = engine;
                sm.env.detect_scratch =
                        veil_detect_scratch_new(engine, err, sizeof(err));
                cr_assert_not_null(sm.env.detect_scratch, "%s", err);
                small_recompile(&sm);
                sm.in.len = 0;
                put_long(&sm.in, 1);
                put_str(&sm.in, cases[i].key);
                put_str(&sm.in, "4111111111111111");
                put_long(&sm.in, 0);
                cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s: %s",
                             cases[i].label, veil_wire_error_code(sm.err.code));
                decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len,
                       &ds, &di, &out);
                cr_assert_eq(avro_value_get_by_name(&out, "m", &m, NULL), 0);
                cr_assert_eq(avro_value_get_size(&m, &n), 0);
                cr_assert_eq(n, 1, "%s", cases[i].label);
                cr_assert_eq(avro_value_get_by_index(&m, 0, &v, &key), 0);
                if (cases[i].want)
                        cr_assert_str_eq(key, cases[i].want, "%s",
                                         cases[i].label);
                else
                        cr_assert(!strncmp(key, cases[i].prefix,
                                           strlen(cases[i].prefix)),
                                  "%s: key %s", cases[i].label, key);
                cr_assert_eq(plan_field(sm.plan, "m{key}")->tx,
                             veil_policy_transform(&sm.policy.purposes[0],
                                                   &sm.policy, cases[i].label)
                                     ->kind);
                avro_value_decref(&out);
                avro_value_iface_decref(di);
                avro_schema_decref(ds);
                veil_detect_scratch_destroy(sm.env.detect_scratch);
                small_fini(&sm);
        }
        veil_detect_engine_destroy(engine);
}

/* Drop and null cannot apply to a key alone: the whole map goes. */
Test(plan, map_keys_dropped_or_nulled_take_the_whole_map)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"},"
                "{\"name\":\"m\",\"type\":[\"null\",{\"type\":\"map\","
                "\"values\":\"string\"}],\"pii\":\"public\"}]}";
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, f, b;
        const struct veil_plan_field *pf;

        small_open(&sm, schema);
        sm.in.len = 0;
        put_str(&sm.in, "r1");
        put_long(&sm.in, 1); /* branch: map */
        put_long(&sm.in, 1);
        put_str(&sm.in, "alias@example.net");
        put_str(&sm.in, "v");
        put_long(&sm.in, 0);
        /* the keys' override says null: m becomes ["null", map], null */
        avro_ref_override(&sm.policy.routes[0], "m{key}", "phone");
        small_recompile(&sm);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_not(bytes_contain(&sm.out, "alias"));
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        cr_assert_eq(avro_value_get_by_name(&out, "m", &f, NULL), 0);
        cr_assert_eq(avro_value_get_current_branch(&f, &b), 0);
        cr_assert_eq(avro_value_get_type(&b), AVRO_NULL);
        pf = plan_field(sm.plan, "m{key}");
        cr_assert_not_null(pf);
        cr_assert_eq(pf->tx, VEIL_TX_NULL);
        cr_assert_eq(pf->source, VEIL_LABEL_OVERRIDE);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        /* ... says drop: m leaves the derived schema */
        free(sm.policy.routes[0].classify[0].label);
        sm.policy.routes[0].classify[0].label = veil_strdup("secret");
        small_recompile(&sm);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_not(bytes_contain(&sm.out, "alias"));
        cr_assert_null(strstr(veil_plan_derived_text(sm.plan), "\"m\""));
        cr_assert_eq(plan_field(sm.plan, "m{key}")->tx, VEIL_TX_DROP);
        /* ... names a class the licence does not list: dropped, counted */
        free(sm.policy.routes[0].classify[0].label);
        sm.policy.routes[0].classify[0].label = veil_strdup("nosuch");
        small_recompile(&sm);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_null(strstr(veil_plan_derived_text(sm.plan), "\"m\""));
        cr_assert_eq(plan_field(sm.plan, "m{key}")->reason,
                     VEIL_PLAN_UNDEFINED);
        cr_assert_eq(veil_plan_failclosed_count(sm.plan), 1);
        small_fini(&sm);
}

/* Keys of an unlabelled map are unclassified: the map is dropped (fail
 * closed, counted) even when its values are labelled, unless classify:
 * names PATH{key}. */
Test(plan, unlabelled_map_keys_fail_closed_unless_classified)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"},"
                "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":"
                "{\"type\":\"map\",\"values\":\"string\"}}}]}";
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        const struct veil_plan_field *pf;
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, a, m, v;
        const char *key, *s;
        size_t n = 0;

        small_open(&sm, schema);
        sm.in.len = 0;
        put_str(&sm.in, "r1");
        put_long(&sm.in, 1); /* one array item: a map */
        put_long(&sm.in, 1);
        put_str(&sm.in, "alias@example.net");
        put_str(&sm.in, "v");
        put_long(&sm.in, 0);
        put_long(&sm.in, 0);
        /* the values alone are labelled: still dropped */
        avro_ref_override(&sm.policy.routes[0], "a[]{}", "public");
        small_recompile(&sm);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_not(bytes_contain(&sm.out, "alias"));
        cr_assert_null(strstr(veil_plan_derived_text(sm.plan), "\"a\""));
        pf = plan_field(sm.plan, "a[]{key}");
        cr_assert_not_null(pf);
        cr_assert_eq(pf->reason, VEIL_PLAN_UNCLASSIFIED);
        cr_assert_eq(pf->tx, VEIL_TX_DROP);
        cr_assert_null(pf->label);
        cr_assert_eq(veil_plan_failclosed_count(sm.plan), 1);
        /* classify: { "a[]{key}": email } lets it through, keys hashed */
        avro_ref_override(&sm.policy.routes[0], "a[]{key}", "email");
        small_recompile(&sm);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_not(bytes_contain(&sm.out, "alias"));
        cr_assert_eq(veil_plan_failclosed_count(sm.plan), 0);
        pf = plan_field(sm.plan, "a[]{key}");
        cr_assert_eq(pf->reason, VEIL_PLAN_LICENSED);
        cr_assert_eq(pf->source, VEIL_LABEL_OVERRIDE);
        cr_assert_eq(pf->tx, VEIL_TX_HASH);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        cr_assert_eq(avro_value_get_by_name(&out, "a", &a, NULL), 0);
        cr_assert_eq(avro_value_get_by_index(&a, 0, &m, NULL), 0);
        cr_assert_eq(avro_value_get_by_index(&m, 0, &v, &key), 0);
        hash_token(&sm, "alias@example.net", tok, sizeof(tok));
        cr_assert_str_eq(key, tok);
        cr_assert_eq(avro_value_get_string(&v, &s, &n), 0);
        cr_assert_str_eq(s, "v", "the values keep their own label");
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

/* A map of maps: the label covers the keys at every level. */
Test(plan, nested_map_keys_all_transformed)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"mm\",\"type\":{\"type\":\"map\",\"values\":"
                "{\"type\":\"map\",\"values\":\"string\"}},"
                "\"pii\":\"email\"}]}";
        struct small sm;

        struct veil_buf blk;

        small_open(&sm, schema);
        veil_buf_init(&blk, 0);
        put_str(&blk, "outer@x.org");
        put_long(&blk, 1);
        put_str(&blk, "inner@y.org");
        put_str(&blk, "v");
        put_long(&blk, 0);
        sm.in.len = 0;
        put_long(&sm.in, -1); /* a block with its byte size */
        put_long(&sm.in, (int64_t)blk.len);
        put_raw(&sm.in, blk.data, blk.len);
        put_long(&sm.in, 0);
        veil_buf_free(&blk);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s at %s",
                     veil_wire_error_code(sm.err.code),
                     sm.err.path ? sm.err.path : "-");
        cr_assert_not(bytes_contain(&sm.out, "outer"));
        cr_assert_not(bytes_contain(&sm.out, "inner"));
        cr_assert_eq(plan_field(sm.plan, "mm{key}")->tx, VEIL_TX_HASH);
        cr_assert_eq(plan_field(sm.plan, "mm{}{key}")->tx, VEIL_TX_HASH);
        small_fini(&sm);
}

/* Generalize, mask and redact_text can make two keys of one map equal;
 * readers disagree over such a map (avro-c merges nested values, others keep
 * the last), so the first entry stays and later ones are left out. */
Test(plan, map_keys_made_equal_keep_the_first_entry)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
                "{\"type\":\"array\",\"items\":\"string\"}},"
                "\"pii\":\"when\"},"
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"public\"}]}";
        static const char *const keys[] = {"alpha", "beta", "avocado", "bob",
                                           "carol"};
        struct small sm;
        struct veil_buf blk;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, m, v, item;
        const char *key, *s;
        size_t n = 0, i, cap, three = 0;
        int round;

        small_open(&sm, schema);
        veil_buf_init(&blk, 0);
        for (i = 0; i < VEIL_ARRAY_SIZE(keys); i++) {
                char val[8];

                /* the value names its entry (generalize keeps one char) */
                snprintf(val, sizeof(val), "%zu", i);
                put_str(&blk, keys[i]);
                put_long(&blk, 1);
                put_str(&blk, val);
                put_long(&blk, 0);
                if (i == 2)
                        three = blk.len;
        }
        sm.in.len = 0;
        put_long(&sm.in, -3); /* 3 entries with their byte size, then 2 */
        put_long(&sm.in, (int64_t)three);
        put_raw(&sm.in, blk.data, three);
        put_long(&sm.in, 2);
        put_raw(&sm.in, blk.data + three, blk.len - three);
        put_long(&sm.in, 0);
        put_str(&sm.in, "r1");
        veil_buf_free(&blk);
        for (round = 0; round < 3; round++) {
                cap = sm.env.seen.cap;
                cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s at %s",
                             veil_wire_error_code(sm.err.code),
                             sm.err.path ? sm.err.path : "-");
                if (round)
                        cr_assert_eq(sm.env.seen.cap, cap,
                                     "steady state allocates nothing");
        }
        cr_assert_gt(sm.env.seen.cap, 0);
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        cr_assert_eq(avro_value_get_by_name(&out, "m", &m, NULL), 0);
        cr_assert_eq(avro_value_get_size(&m, &n), 0);
        cr_assert_eq(n, 3, "a, b and c: one entry each");
        cr_assert_eq(avro_value_get_by_index(&m, 0, &v, &key), 0);
        cr_assert_str_eq(key, "a");
        cr_assert_eq(avro_value_get_size(&v, &n), 0);
        cr_assert_eq(n, 1, "avocado's value was not merged in");
        cr_assert_eq(avro_value_get_by_index(&v, 0, &item, NULL), 0);
        cr_assert_eq(avro_value_get_string(&item, &s, &n), 0);
        cr_assert_str_eq(s, "0", "the first entry wins");
        cr_assert_eq(avro_value_get_by_index(&m, 1, &v, &key), 0);
        cr_assert_str_eq(key, "b");
        cr_assert_eq(avro_value_get_by_index(&v, 0, &item, NULL), 0);
        cr_assert_eq(avro_value_get_string(&item, &s, &n), 0);
        cr_assert_str_eq(s, "1");
        cr_assert_eq(avro_value_get_by_index(&m, 2, &v, &key), 0);
        cr_assert_str_eq(key, "c");
        cr_assert_str_eq(get_str(&out, "id"), "r1");
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        small_fini(&sm);
}

/* Many distinct keys grow the table of keys met; a hostile block count
 * still fails cleanly. */
Test(plan, unique_keys_table_grows_and_bad_input_fails_cleanly)
{
        static const char schema[] =
                "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
                "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
                "\"string\"},\"pii\":\"card\"}]}";
        struct small sm;
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out, m;
        char key[32];
        size_t n = 0;
        int i;

        small_open(&sm, schema);
        sm.in.len = 0;
        put_long(&sm.in, 1000);
        for (i = 0; i < 1000; i++) {
                /* keep_last 4: "k0007" and "x0007" both mask to "*0007" */
                snprintf(key, sizeof(key), "%c%04d", i % 2 ? 'k' : 'x', i / 2);
                put_str(&sm.in, key);
                put_str(&sm.in, "v");
        }
        put_long(&sm.in, 0);
        cr_assert_eq(small_run(&sm), VEIL_WIRE_OK, "%s",
                     veil_wire_error_code(sm.err.code));
        decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len, &ds,
               &di, &out);
        cr_assert_eq(avro_value_get_by_name(&out, "m", &m, NULL), 0);
        cr_assert_eq(avro_value_get_size(&m, &n), 0);
        cr_assert_eq(n, 500);
        avro_value_decref(&out);
        avro_value_iface_decref(di);
        avro_schema_decref(ds);
        /* truncated inside the map: an error, output rolled back */
        sm.in.len -= 3;
        sm.out.len = 0;
        cr_assert_neq(small_run(&sm), VEIL_WIRE_OK);
        cr_assert_eq(sm.out.len, 0);
        small_fini(&sm);
}

/* A value hashed again in the same record reuses its token (no second
 * HMAC); every token is still the value's own, past the memo's size too,
 * and nothing carries over to the next record. */
Test(plan, repeated_values_hash_alike_past_the_memo)
{
        char schema[2048], name[16], tok[VEIL_TX_HASH_TOKEN_MAX + 1];
        static const char *const vals[] = {
                "a@x.org", "b@x.org", "a@x.org", "c@x.org", "d@x.org",
                "e@x.org", "f@x.org", "g@x.org", "h@x.org", "i@x.org",
                "a@x.org", "i@x.org", "j@x.org", "b@x.org"};
        const size_t nv = VEIL_ARRAY_SIZE(vals);
        avro_schema_t ds;
        avro_value_iface_t *di;
        avro_value_t out;
        struct small sm;
        size_t i, o = 0;
        int round;

        cr_assert_gt(nv, VEIL_PLAN_MEMO + 2);
        o += (size_t)snprintf(schema + o, sizeof(schema) - o,
                              "{\"type\":\"record\",\"name\":\"T\","
                              "\"fields\":[");
        for (i = 0; i < nv; i++)
                o += (size_t)snprintf(schema + o, sizeof(schema) - o,
                                      "%s{\"name\":\"f%zu\",\"type\":"
                                      "\"string\",\"pii\":\"email\"}",
                                      i ? "," : "", i);
        snprintf(schema + o, sizeof(schema) - o, "]}");
        small_open(&sm, schema);
        for (round = 0; round < 2; round++) {
                sm.in.len = 0;
                for (i = 0; i < nv; i++)
                        /* the second record shifts the values */
                        put_str(&sm.in, vals[(i + (size_t)round) % nv]);
                cr_assert_eq(small_run(&sm), VEIL_WIRE_OK);
                decode(veil_plan_derived_text(sm.plan), sm.out.data, sm.out.len,
                       &ds, &di, &out);
                for (i = 0; i < nv; i++) {
                        snprintf(name, sizeof(name), "f%zu", i);
                        hash_token(&sm, vals[(i + (size_t)round) % nv], tok,
                                   sizeof(tok));
                        cr_assert_str_eq(get_str(&out, name), tok, "%s", name);
                }
                avro_value_decref(&out);
                avro_value_iface_decref(di);
                avro_schema_decref(ds);
        }
        small_fini(&sm);
}

/* One pass for every purpose (struct veil_plan_set): each output is what
 * the purpose's own pass writes; a purpose whose own writing fails (its
 * output limit here) fails alone; bad input fails every one; plans of
 * other schemas are refused. */
Test(plan, plan_set_one_pass_matches_each_purpose)
{
        struct fixture fx;
        struct veil_plan *pl[2], *other;
        struct veil_plan_set *set;
        struct veil_plan_env env[2] = {{0}}, *envs[2] = {&env[0], &env[1]};
        struct veil_tx_keys keys[2];
        struct veil_buf own[2], one[2], *outs[2] = {&one[0], &one[1]};
        struct veil_plan_error errs[2];
        struct veil_plan_opts opts = {0};
        struct veil_detect_engine *engine;
        const char *names[2] = {"analytics", "marketing"};
        char err[256]        = "";
        int i;

        fixture_init(&fx, "analytics");
        customer_bytes(&fx);
        engine = veil_detect_engine_new(NULL, 0, err, sizeof(err));
        cr_assert_not_null(engine, "%s", err);
        for (i = 0; i < 2; i++) {
                pl[i] = compile(&fx, names[i], NULL);
                cr_assert_eq(veil_tx_keys_init(&keys[i], master, sizeof(master),
                                               "k1", names[i], false, err,
                                               sizeof(err)),
                             0);
                env[i].keys   = &keys[i];
                env[i].detect = engine;
                env[i].detect_scratch =
                        veil_detect_scratch_new(engine, err, sizeof(err));
                veil_buf_init(&own[i], 0);
                veil_buf_init(&one[i], 0);
        }
        set = veil_plan_set_new((const struct veil_plan *const *)pl, 2, err,
                                sizeof(err));
        cr_assert_not_null(set, "%s", err);
        for (i = 0; i < 2; i++)
                cr_assert_eq(veil_plan_exec(pl[i], &env[i], fx.in.data,
                                            fx.in.len, &own[i], NULL),
                             VEIL_WIRE_OK);
        cr_assert_eq(veil_plan_set_exec(set, envs, fx.in.data, fx.in.len, outs,
                                        errs),
                     VEIL_WIRE_OK);
        for (i = 0; i < 2; i++) {
                cr_assert_eq(errs[i].code, VEIL_WIRE_OK);
                cr_assert_eq(one[i].len, own[i].len);
                cr_assert_eq(memcmp(one[i].data, own[i].data, own[i].len), 0,
                             "%s", names[i]);
        }
        /* steady state: the buffers do not grow */
        {
                size_t cap0 = one[0].cap, cap1 = one[1].cap;

                one[0].len = one[1].len = 0;
                cr_assert_eq(veil_plan_set_exec(set, envs, fx.in.data,
                                                fx.in.len, outs, errs),
                             VEIL_WIRE_OK);
                cr_assert_eq(one[0].cap, cap0);
                cr_assert_eq(one[1].cap, cap1);
        }
        /* analytics without its keys fails alone */
        env[0].keys = NULL;
        one[0].len = one[1].len = 0;
        cr_assert_eq(veil_plan_set_exec(set, envs, fx.in.data, fx.in.len, outs,
                                        errs),
                     VEIL_WIRE_TRANSFORM_FAILED);
        cr_assert_eq(errs[0].code, VEIL_WIRE_TRANSFORM_FAILED);
        cr_assert_eq(one[0].len, 0);
        cr_assert_eq(errs[1].code, VEIL_WIRE_OK);
        cr_assert_eq(one[1].len, own[1].len);
        cr_assert_eq(memcmp(one[1].data, own[1].data, own[1].len), 0);
        env[0].keys = &keys[0];
        /* truncated input fails both, outputs restored */
        one[0].len = one[1].len = 0;
        cr_assert_neq(veil_plan_set_exec(set, envs, fx.in.data, fx.in.len / 2,
                                         outs, errs),
                      VEIL_WIRE_OK);
        cr_assert_neq(errs[0].code, VEIL_WIRE_OK);
        cr_assert_neq(errs[1].code, VEIL_WIRE_OK);
        cr_assert_eq(one[0].len + one[1].len, 0);
        /* a plan of another schema cannot join */
        opts.policy  = &fx.policy;
        opts.purpose = veil_policy_purpose(&fx.policy, "analytics");
        {
                struct veil_schema *s2 = parse_schema(
                        "{\"type\":\"record\",\"name\":\"X\",\"fields\":[{"
                        "\"name\":\"a\",\"type\":\"string\",\"pii\":"
                        "\"public\"}]}");
                const struct veil_plan *mix[2];

                s2->id = 77;
                other  = veil_plan_compile(s2, &opts, err, sizeof(err));
                cr_assert_not_null(other, "%s", err);
                mix[0] = pl[0];
                mix[1] = other;
                cr_assert_null(veil_plan_set_new(mix, 2, err, sizeof(err)));
                cr_assert(strstr(err, "schemas"), "%s", err);
                veil_plan_destroy(other);
                veil_schema_destroy(s2);
        }
        veil_plan_set_destroy(set);
        for (i = 0; i < 2; i++) {
                veil_plan_destroy(pl[i]);
                veil_buf_free(&own[i]);
                veil_buf_free(&one[i]);
                veil_detect_scratch_destroy(env[i].detect_scratch);
                veil_plan_env_free(&env[i]);
                veil_tx_keys_destroy(&keys[i]);
        }
        veil_detect_engine_destroy(engine);
        fixture_fini(&fx);
}
