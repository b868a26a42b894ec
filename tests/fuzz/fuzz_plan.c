/* fuzz_plan.c - libFuzzer harness over the Confluent wire format and plan
 * execution: any bytes in, the plan either fails with a stable code (output
 * rolled back) or writes bytes that a second plan, compiled from the derived
 * schema, reads back whole. Built by scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_plan        (FUZZ_SECONDS, default 20)
 *
 * Input: byte 0 picks the target (low bits) and whether the rest is a framed
 * message (bit 7) or a bare Avro body. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "plan.h"
#include "policy.h"
#include "schema.h"
#include "transform.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_plan: %s:%d: %s\n", __FILE__,    \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-fuzzer";

/* Small schemas that reach what the customer record does not: every type,
 * zero-width items, recursion, a union that merges branches. */
static const char *const extra_schemas[] = {
        "{\"type\":\"record\",\"name\":\"All\",\"fields\":["
        "{\"name\":\"n\",\"type\":\"null\",\"pii\":\"public\"},"
        "{\"name\":\"b\",\"type\":\"boolean\",\"pii\":\"public\"},"
        "{\"name\":\"i\",\"type\":\"int\",\"pii\":\"email\"},"
        "{\"name\":\"l\",\"type\":\"long\",\"pii\":\"birth_date\"},"
        "{\"name\":\"f\",\"type\":\"float\",\"pii\":\"birth_date\"},"
        "{\"name\":\"d\",\"type\":\"double\",\"pii\":\"public\"},"
        "{\"name\":\"by\",\"type\":\"bytes\",\"pii\":\"email\"},"
        "{\"name\":\"s\",\"type\":\"string\",\"pii\":\"card\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
        "\"symbols\":[\"A\",\"B\",\"C\"]},\"pii\":\"email\"},"
        "{\"name\":\"z\",\"type\":{\"type\":\"array\",\"items\":\"null\"},"
        "\"pii\":\"public\"},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\","
        "\"int\",\"string\",\"long\"]},\"pii\":\"email\"},"
        "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\","
        "\"size\":3},\"pii\":\"phone\"},"
        "{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":"
        "\"timestamp-micros\"},\"pii\":\"birth_date\"},"
        "{\"name\":\"dt\",\"type\":{\"type\":\"int\",\"logicalType\":"
        "\"date\"},\"pii\":\"birth_date\"},"
        "{\"name\":\"t\",\"type\":\"string\",\"pii\":\"notes\"}]}",
        "{\"type\":\"record\",\"name\":\"Node\",\"fields\":["
        "{\"name\":\"v\",\"type\":\"string\",\"pii\":\"email\"},"
        "{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"Node\"}},"
        "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}",
        /* map keys are data: hashed, masked (keys may merge), redacted,
         * generalized, nested, nulled with their map, and classified by
         * the route's PATH{key} */
        "{\"type\":\"record\",\"name\":\"Maps\",\"fields\":["
        "{\"name\":\"h\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
        "\"pii\":\"email\"},"
        "{\"name\":\"k\",\"type\":{\"type\":\"map\",\"values\":{\"type\":"
        "\"map\",\"values\":[\"null\",\"string\"]}},\"pii\":\"card\"},"
        "{\"name\":\"r\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
        "\"pii\":\"notes\"},"
        "{\"name\":\"g\",\"type\":[\"null\",{\"type\":\"map\",\"values\":"
        "{\"type\":\"array\",\"items\":\"int\"}}],\"pii\":\"birth_date\"},"
        "{\"name\":\"n\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
        "\"pii\":\"phone\"},"
        "{\"name\":\"u\",\"type\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"map\",\"values\":\"string\"}}},"
        "{\"name\":\"x\",\"type\":{\"type\":\"map\",\"values\":\"string\"}}]}",
};

struct target {
        struct veil_schema *schema;
        struct veil_plan *plan;
        struct veil_schema *derived; /* parsed derived schema */
        struct veil_plan *check;     /* keeps everything: reads it back */
};

static struct veil_policy policy;
static struct veil_tx_keys keys;
static struct veil_detect_engine *engine;
static struct veil_plan_env env;
static struct target targets[8];
static int n_targets;

/* Targets of one schema under two purposes, also run in one pass
 * (struct veil_plan_set): each output must be what its own pass writes. */
struct pair {
        int a, b;
        struct veil_plan_set *set;
};
static struct pair pairs[2];
static int n_pairs;
static struct veil_plan_env env2;
static struct veil_buf pa, pb, sa, sb;
static struct veil_buf out, out2;

static void add_class(const char *name, enum veil_tier tier)
{
        policy.classes =
                veil_realloc(policy.classes,
                             (policy.n_classes + 1) * sizeof(*policy.classes));
        memset(&policy.classes[policy.n_classes], 0, sizeof(policy.classes[0]));
        policy.classes[policy.n_classes].name   = veil_strdup(name);
        policy.classes[policy.n_classes++].tier = tier;
}

static struct veil_transform *
add_rule(struct veil_purpose *p, const char *target, enum veil_tx_kind kind)
{
        struct veil_transform *tx;

        p->rules = veil_realloc(p->rules, (p->n_rules + 1) * sizeof(*p->rules));
        memset(&p->rules[p->n_rules], 0, sizeof(p->rules[0]));
        p->rules[p->n_rules].target = veil_strdup(target);
        tx                          = &p->rules[p->n_rules++].tx;
        tx->kind                    = kind;
        tx->mask.keep_last          = 4;
        tx->mask.mask_char          = '*';
        tx->mask.digits_only        = true;
        tx->generalize.width        = 10;
        tx->generalize.prefix       = 2;
        return tx;
}

static void build_policy(void)
{
        struct veil_purpose *a, *m, *k;

        add_class("customer_id", VEIL_TIER_INTERNAL);
        add_class("email", VEIL_TIER_CONFIDENTIAL);
        add_class("phone", VEIL_TIER_CONFIDENTIAL);
        add_class("card", VEIL_TIER_RESTRICTED);
        add_class("notes", VEIL_TIER_INTERNAL);
        add_class("birth_date", VEIL_TIER_CONFIDENTIAL);
        policy.purposes   = veil_calloc(3, sizeof(*policy.purposes));
        policy.n_purposes = 3;
        a                 = &policy.purposes[0];
        m                 = &policy.purposes[1];
        k                 = &policy.purposes[2];
        a->name           = veil_strdup("analytics");
        m->name           = veil_strdup("marketing");
        k->name           = veil_strdup("check");
        add_rule(a, "public", VEIL_TX_KEEP);
        add_rule(a, "internal", VEIL_TX_KEEP);
        add_rule(a, "customer_id", VEIL_TX_HASH);
        add_rule(a, "email", VEIL_TX_HASH);
        add_rule(a, "card", VEIL_TX_MASK);
        add_rule(a, "phone", VEIL_TX_NULL);
        add_rule(a, "notes", VEIL_TX_REDACT_TEXT);
        add_rule(a, "birth_date", VEIL_TX_GENERALIZE);
        add_rule(m, "public", VEIL_TX_KEEP);
        add_rule(m, "customer_id", VEIL_TX_KEEP);
        add_rule(m, "email", VEIL_TX_ENCRYPT);
        add_rule(m, "phone", VEIL_TX_MASK);
        /* the read-back purpose keeps whatever a derived schema holds */
        add_rule(k, "public", VEIL_TX_KEEP);
        /* Maps.u's keys and values are classified by the route; Maps.x's
         * keys are not (the map is dropped) */
        policy.routes           = veil_calloc(1, sizeof(*policy.routes));
        policy.n_routes         = 1;
        policy.routes[0].source = veil_strdup("t");
        policy.routes[0].classify =
                veil_calloc(3, sizeof(struct veil_classify_override));
        policy.routes[0].n_classify        = 3;
        policy.routes[0].classify[0].path  = veil_strdup("u[]{key}");
        policy.routes[0].classify[0].label = veil_strdup("card");
        policy.routes[0].classify[1].path  = veil_strdup("u[]{}");
        policy.routes[0].classify[1].label = veil_strdup("email");
        policy.routes[0].classify[2].path  = veil_strdup("x{}");
        policy.routes[0].classify[2].label = veil_strdup("public");
}

static struct veil_schema *parse(const char *text, size_t len)
{
        char err[256];
        struct veil_schema *s =
                veil_schema_parse(text, len, NULL, 1, err, sizeof(err));

        if (!s)
                fprintf(stderr, "fuzz_plan: schema: %s\n", err);
        CHECK(s);
        return s;
}

static void add_target(struct veil_schema *schema, const char *purpose,
                       bool own_schema)
{
        struct target *t           = &targets[n_targets++];
        struct veil_plan_opts opts = {0};
        const char *text;
        char err[512];

        (void)own_schema;
        t->schema    = schema;
        opts.policy  = &policy;
        opts.route   = &policy.routes[0];
        opts.purpose = veil_policy_purpose(&policy, purpose);
        t->plan      = veil_plan_compile(schema, &opts, err, sizeof(err));
        if (!t->plan)
                fprintf(stderr, "fuzz_plan: compile: %s\n", err);
        CHECK(t->plan);
        text       = veil_plan_derived_text(t->plan);
        t->derived = parse(text, strlen(text));
        /* Everything of the derived schema, read as "public": fields keep
         * their own labels, so they may drop, but a drop still reads and
         * validates every byte. */
        opts.purpose    = veil_policy_purpose(&policy, "check");
        opts.route      = NULL;
        opts.root_label = "public";
        t->check = veil_plan_compile(t->derived, &opts, err, sizeof(err));
        if (!t->check)
                fprintf(stderr, "fuzz_plan: compile check: %s\n", err);
        CHECK(t->check);
}

static void add_pair(int a, int b)
{
        const struct veil_plan *plans[2] = {targets[a].plan, targets[b].plan};
        char err[256];

        pairs[n_pairs].a   = a;
        pairs[n_pairs].b   = b;
        pairs[n_pairs].set = veil_plan_set_new(plans, 2, err, sizeof(err));
        if (!pairs[n_pairs].set)
                fprintf(stderr, "fuzz_plan: plan set: %s\n", err);
        CHECK(pairs[n_pairs].set);
        n_pairs++;
}

static void check_pair(const struct pair *pr, const uint8_t *body, size_t len)
{
        struct veil_plan_env *envs[2] = {&env, &env2};
        struct veil_buf *outs[2]      = {&sa, &sb};
        struct veil_plan_error errs[2];
        enum veil_wire_err ra, rb;

        pa.len = pb.len = sa.len = sb.len = 0;
        ra = veil_plan_exec(targets[pr->a].plan, &env, body, len, &pa, NULL);
        rb = veil_plan_exec(targets[pr->b].plan, &env2, body, len, &pb, NULL);
        veil_plan_set_exec(pr->set, envs, body, len, outs, errs);
        CHECK((errs[0].code == VEIL_WIRE_OK) == (ra == VEIL_WIRE_OK));
        CHECK((errs[1].code == VEIL_WIRE_OK) == (rb == VEIL_WIRE_OK));
        CHECK(sa.len == (ra ? 0 : pa.len));
        CHECK(sb.len == (rb ? 0 : pb.len));
        CHECK(!sa.len || !memcmp(sa.data, pa.data, sa.len));
        CHECK(!sb.len || !memcmp(sb.data, pb.data, sb.len));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        bool text_ok = false;
        char err[256];
        size_t len, i;
        char *text;

        (void)argc;
        (void)argv;
        build_policy();
        CHECK(veil_tx_keys_init(&keys, master, sizeof(master), "k1",
                                "analytics", false, err, sizeof(err)) == 0);
        engine = veil_detect_engine_new(NULL, 0, err, sizeof(err));
        CHECK(engine);
        env.keys           = &keys;
        env.detect         = engine;
        env.detect_scratch = veil_detect_scratch_new(engine, err, sizeof(err));
        CHECK(env.detect_scratch);
        text = veil_file_read("schemas/customers-value.avsc", &len, err,
                              sizeof(err));
        if (text) {
                struct veil_schema *s = parse(text, len);

                add_target(s, "analytics", true);
                add_target(s, "marketing", false);
                free(text);
                text_ok = true;
        } else {
                fprintf(stderr,
                        "fuzz_plan: %s (run from the repository "
                        "root)\n",
                        err);
        }
        for (i = 0; i < sizeof(extra_schemas) / sizeof(extra_schemas[0]); i++)
                add_target(parse(extra_schemas[i], strlen(extra_schemas[i])),
                           "analytics", true);
        /* the maps again under marketing: keys encrypted (string tokens) */
        i--;
        add_target(parse(extra_schemas[i], strlen(extra_schemas[i])),
                   "marketing", true);
        veil_buf_init(&out, 0);
        veil_buf_init(&out2, 0);
        env2.keys           = &keys;
        env2.detect         = engine;
        env2.detect_scratch = env.detect_scratch;
        if (text_ok)
                add_pair(0, 1);
        add_pair(n_targets - 2, n_targets - 1);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_plan_error perr;
        enum veil_wire_err rc;
        const struct target *t;
        const uint8_t *body;
        size_t body_len;

        if (size < 1 || !n_targets)
                return 0;
        t = &targets[(data[0] & 0x7f) % n_targets];
        if (!(data[0] & 0x80)) {
                int k;

                for (k = 0; k < n_pairs; k++)
                        if (t == &targets[pairs[k].a] ||
                            t == &targets[pairs[k].b])
                                check_pair(&pairs[k], data + 1, size - 1);
        }
        if (data[0] & 0x80) {
                rc = veil_plan_exec_framed(t->plan, &env, data + 1, size - 1,
                                           &out, &perr);
                if (rc) {
                        CHECK(out.len == 0);
                        CHECK(perr.code == rc);
                        return 0;
                }
                CHECK(out.len >= VEIL_WIRE_HEADER_SIZE);
                body     = out.data + VEIL_WIRE_HEADER_SIZE;
                body_len = out.len - VEIL_WIRE_HEADER_SIZE;
        } else {
                out.len = 0;
                rc = veil_plan_exec(t->plan, &env, data + 1, size - 1, &out,
                                    &perr);
                CHECK(strcmp(veil_wire_error_code(rc), "unknown") != 0);
                if (rc) {
                        CHECK(out.len == 0);
                        CHECK(perr.offset <= size - 1);
                        return 0;
                }
                body     = out.data;
                body_len = out.len;
        }
        /* What the plan wrote must read back whole under its derived
         * schema. */
        out2.len = 0;
        rc       = veil_plan_exec(t->check, &env, body, body_len, &out2, &perr);
        if (rc)
                fprintf(stderr,
                        "fuzz_plan: output does not read back: %s at "
                        "%zu (%s)\n",
                        veil_wire_error_code(rc), perr.offset,
                        perr.path ? perr.path : "-");
        CHECK(rc == VEIL_WIRE_OK);
        return 0;
}
