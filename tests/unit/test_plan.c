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
#include "schema.h"
#include "transform.h"
#include "util.h"
#include "wire.h"

TestSuite(plan);

static const unsigned char master[40] = "0123456789abcdef0123456789abcdef-master";

/* The DESIGN.md §5 policy, in code. */
static void design_policy(struct veil_policy *policy)
{
        struct veil_purpose *a, *m;
        struct veil_transform *tx;
        struct veil_route *r;

        memset(policy, 0, sizeof(*policy));
        avro_ref_class(policy, "customer_id", VEIL_TIER_INTERNAL);
        avro_ref_class(policy, "email", VEIL_TIER_CONFIDENTIAL);
        avro_ref_class(policy, "phone", VEIL_TIER_CONFIDENTIAL);
        avro_ref_class(policy, "ssn", VEIL_TIER_RESTRICTED);
        avro_ref_class(policy, "card", VEIL_TIER_RESTRICTED);
        avro_ref_class(policy, "notes", VEIL_TIER_INTERNAL);
        avro_ref_class(policy, "birth_date", VEIL_TIER_CONFIDENTIAL);
        a = avro_ref_purpose(policy, "analytics");
        avro_ref_rule(a, "public", VEIL_TX_KEEP);
        avro_ref_rule(a, "internal", VEIL_TX_KEEP);
        avro_ref_rule(a, "customer_id", VEIL_TX_HASH);
        avro_ref_rule(a, "email", VEIL_TX_HASH);
        tx = avro_ref_rule(a, "card", VEIL_TX_MASK);
        tx->mask.keep_last   = 4;
        tx->mask.digits_only = true;
        avro_ref_rule(a, "birth_date", VEIL_TX_GENERALIZE);
        avro_ref_rule(a, "phone", VEIL_TX_NULL);
        avro_ref_rule(a, "ssn", VEIL_TX_DROP);
        avro_ref_rule(a, "notes", VEIL_TX_REDACT_TEXT);
        m = avro_ref_purpose(policy, "marketing");
        avro_ref_rule(m, "public", VEIL_TX_KEEP);
        avro_ref_rule(m, "customer_id", VEIL_TX_KEEP);
        avro_ref_rule(m, "email", VEIL_TX_KEEP);
        r = avro_ref_route(policy, "customers", "customer_id");
        avro_ref_override(r, "address.zip", "internal");
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
        char err[256] = "";
        struct veil_schema *s =
                veil_schema_parse(text, strlen(text), NULL, 1, err, sizeof(err));

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
        cr_assert_eq(avro_value_read(rd, v), 0, "decode: %s",
                     avro_strerror());
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
        fx->env.keys           = &fx->keys;
        fx->env.detect         = fx->engine;
        fx->env.detect_scratch = veil_detect_scratch_new(fx->engine, err,
                                                         sizeof(err));
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

        opts.policy     = &fx->policy;
        opts.route      = veil_policy_route(&fx->policy, "customers");
        opts.purpose    = veil_policy_purpose(&fx->policy, purpose);
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
        int32_t i32;
        size_t n;

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

/* ---- small schemas ----------------------------------------------------------- */

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
        struct veil_purpose *p;

        memset(policy, 0, sizeof(*policy));
        avro_ref_class(policy, "email", VEIL_TIER_CONFIDENTIAL);
        avro_ref_class(policy, "card", VEIL_TIER_RESTRICTED);
        avro_ref_class(policy, "when", VEIL_TIER_CONFIDENTIAL);
        avro_ref_class(policy, "phone", VEIL_TIER_CONFIDENTIAL);
        avro_ref_class(policy, "secret", VEIL_TIER_RESTRICTED);
        p = avro_ref_purpose(policy, "p");
        avro_ref_rule(p, "public", VEIL_TX_KEEP);
        avro_ref_rule(p, "internal", VEIL_TX_KEEP);
        avro_ref_rule(p, "email", VEIL_TX_HASH);
        avro_ref_rule(p, "card", VEIL_TX_MASK);
        avro_ref_rule(p, "when", VEIL_TX_GENERALIZE);
        avro_ref_rule(p, "phone", VEIL_TX_NULL);
        avro_ref_rule(p, "secret", VEIL_TX_DROP);
        avro_ref_route(policy, "t", "email");
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
        static const uint8_t f[4] = {0, 0, 0x80, 0x3f}, d[8] = {0, 0, 0, 0,
                                                                 0, 0, 0xf0,
                                                                 0x3f};

        b->len = 0;
        put_raw(b, "\x01", 1);          /* b */
        put_long(b, -123456);           /* i */
        put_long(b, INT64_C(1) << 60);  /* l */
        put_raw(b, f, 4);               /* f */
        put_raw(b, d, 8);               /* d */
        put_str(b, "\x00\xff");         /* by: 0 bytes (strlen) */
        put_str(b, "héllo");            /* s */
        put_long(b, 7);                 /* r.x */
        put_long(b, 2);                 /* e */
        put_long(b, 2);                 /* a: 2 items */
        put_str(b, "x");
        put_str(b, "yz");
        put_long(b, 0);
        put_long(b, 1);                 /* m: 1 entry */
        put_str(b, "k");
        put_long(b, -9);
        put_long(b, 0);
        put_long(b, 2);                 /* u: branch R */
        put_long(b, 99);
        put_raw(b, "abcd", 4);          /* fx */
        put_long(b, 19000);             /* dt */
        put_long(b, 3600000);           /* tm */
        put_long(b, INT64_C(3600000000)); /* tu */
        put_long(b, INT64_C(1700000000000));    /* ts */
        put_long(b, INT64_C(1700000000000000)); /* tsu */
        put_str(b, "\x01\x02");         /* dec */
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
                        cr_assert_eq(sm.out.len, 0,
                                     "output not rolled back");
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
        int32_t i32;
        int64_t i64;
        double dv;
        float fv;

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
        put_raw(&sm.in, "\x00\x00\x28\x42", 4); /* 42.0f */
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
        const char *s;
        size_t n, block;
        char tok[VEIL_TX_HASH_TOKEN_MAX + 1];

        small_open(&sm,
                   "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
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
        /* h: -2 items, 6 bytes */
        put_long(&sm.in, -2);
        put_long(&sm.in, 6);
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
        avro_value_get_by_name(&f, "k", &item, NULL);
        avro_value_get_string(&item, &s, &n);
        cr_assert_eq(veil_tx_hash(&sm.keys, "v12", 3, tok, sizeof(tok) - 1,
                                  &block),
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
        sm.in.data[1] = 2 * 4;
        sm.in.data[sm.in.len - 8] = 2 * 7; /* h's block size 6 → 7 */
        cr_assert_eq(small_run(&sm), VEIL_WIRE_BAD_LENGTH);
        small_fini(&sm);
}
