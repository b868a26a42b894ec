/* test_check.c - `veil check` finds each kind of gap, by field path. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "plan.h"
#include "registry.h"
#include "schema.h"
#include "util.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
        char path[256];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
}

static void setup(void)
{
        char path[256];

        strcpy(dir, "/tmp/veil-check-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/schemas", dir);
        cr_assert_eq(mkdir(path, 0700), 0);
}

/* Policy used by most tests: schemas under DIR/schemas. */
static const char *base_yaml =
        "registry: { url: file://schemas }\n"
        "classes:\n"
        "  customer_id: { tier: internal }\n"
        "  email: { tier: confidential, detector: email }\n"
        "  card: { tier: restricted }\n"
        "purposes:\n"
        "  analytics:\n"
        "    license: { id: LIC-A, valid_until: 2099-12-31 }\n"
        "    retention: 90d\n"
        "    transforms: { internal: keep, customer_id: hash, email: hash,\n"
        "                  card: { mask: { keep_last: 4 } } }\n"
        "routes:\n"
        "  - source: customers\n"
        "    key_class: customer_id\n"
        "    purposes: { analytics: customers.analytics }\n"
        "    classify: { \"address.zip\": internal }\n";

static const char *base_schema =
        "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
        "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
        "{\"name\":\"email\",\"type\":[\"null\",\"string\"],\"pii\":\"email\"},"
        "{\"name\":\"card\",\"type\":\"string\",\"pii\":\"card\"},"
        "{\"name\":\"address\",\"type\":{\"type\":\"record\",\"name\":\"A\","
        "\"fields\":[{\"name\":\"zip\",\"type\":\"string\"},"
        "{\"name\":\"city\",\"type\":\"string\",\"pii\":\"internal\"}]}}"
        "]}";

static void teardown(void)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
}

/* Run check on (yaml, schema) and return the findings (caller decrefs). */
static json_t *run(const char *yaml, const char *schema, int *rcp)
{
        struct veil_config_opts opts = {.skip_key         = true,
                                        .skip_kafka_check = true};
        struct veil_config *config;
        struct veil_registry *reg;
        json_t *report = json_array();
        char err[1024] = "", cfg[256];

        write_file("veil.yaml", yaml);
        if (schema)
                write_file("schemas/customers-value.avsc", schema);
        snprintf(cfg, sizeof(cfg), "%s/veil.yaml", dir);
        config = veil_config_load(cfg, &opts, err, sizeof(err));
        cr_assert_not_null(config, "config: %s", err);
        reg = veil_registry_new(&config->registry, err, sizeof(err));
        cr_assert_not_null(reg, "registry: %s", err);
        /* "now" is fixed: 2030-01-01 */
        *rcp = veil_check_run(config, reg, 1893456000, report, err,
                              sizeof(err));
        veil_registry_destroy(reg);
        veil_config_destroy(config);
        return report;
}

/* Count findings of `kind` (and path, when given). */
static int count(json_t *report, const char *kind, const char *path)
{
        json_t *f;
        size_t i;
        int n = 0;

        json_array_foreach(report, i, f)
        {
                const char *p = json_string_value(json_object_get(f, "path"));

                if (strcmp(json_string_value(json_object_get(f, "kind")), kind))
                        continue;
                if (path && (!p || strcmp(p, path)))
                        continue;
                n++;
        }
        return n;
}

TestSuite(check, .init = setup, .fini = teardown);

Test(check, clean_policy_has_no_findings)
{
        int rc;
        json_t *r = run(base_yaml, base_schema, &rc);

        cr_assert_eq(rc, 0);
        cr_assert_eq(json_array_size(r), 0, "%s", json_dumps(r, JSON_COMPACT));
        json_decref(r);
}

Test(check, unclassified_field_by_path)
{
        const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"address\",\"type\":{\"type\":\"record\",\"name\":"
                "\"A\",\"fields\":[{\"name\":\"zip\",\"type\":\"string\"},"
                "{\"name\":\"street\",\"type\":\"string\"}]}},"
                "{\"name\":\"contacts\",\"type\":{\"type\":\"array\",\"items\":"
                "{\"type\":\"record\",\"name\":\"K\",\"fields\":[{\"name\":"
                "\"phone\",\"type\":\"string\"}]}}}]}";
        int rc;
        json_t *r = run(base_yaml, schema, &rc);

        cr_assert_eq(rc, 0);
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, "address.street"), 1);
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, "contacts[].phone"), 1);
        /* zip is classified by the route override; parents are not leaves */
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, NULL), 2);
        json_decref(r);
}

Test(check, classified_parent_covers_children)
{
        const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"address\",\"pii\":\"internal\",\"type\":{\"type\":"
                "\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"street\","
                "\"type\":\"string\"}]}}]}";
        int rc;
        json_t *r = run(base_yaml, schema, &rc);

        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, NULL), 0);
        /* the override for address.zip names a path this schema lacks */
        cr_assert_eq(count(r, VEIL_GAP_UNUSED_OVERRIDE, "address.zip"), 1);
        json_decref(r);
}

Test(check, undefined_class_in_schema)
{
        const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"dob\",\"type\":\"int\",\"pii\":\"birthday\"}]}";
        int rc;
        json_t *r = run(base_yaml, schema, &rc);

        cr_assert_eq(count(r, VEIL_GAP_UNDEFINED_CLASS, "dob"), 1);
        json_decref(r);
}

Test(check, transform_type_mismatch)
{
        const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"card\",\"type\":\"long\",\"pii\":\"card\"},"
                "{\"name\":\"email\",\"type\":\"double\",\"pii\":\"email\"}]}";
        int rc;
        json_t *r = run(base_yaml, schema, &rc);

        cr_assert_eq(count(r, VEIL_GAP_TYPE_MISMATCH, "card"), 1);
        cr_assert_eq(count(r, VEIL_GAP_TYPE_MISMATCH, "email"), 1);
        json_decref(r);
}

Test(check, unlicensed_class_is_a_warning)
{
        const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"s\",\"type\":\"string\",\"pii\":\"restricted\"}]}";
        int rc;
        json_t *r = run(base_yaml, schema, &rc), *f;

        cr_assert_eq(count(r, VEIL_GAP_UNLICENSED, "s"), 1);
        f = json_array_get(r, 0);
        cr_assert_str_eq(json_string_value(json_object_get(f, "severity")),
                         "warning");
        json_decref(r);
}

Test(check, licences_retention_key_class_and_missing_schema)
{
        const char *yaml =
                "registry: { url: file://schemas }\n"
                "classes:\n"
                "  customer_id: { tier: internal }\n"
                "purposes:\n"
                "  old:\n"
                "    license: { id: LIC-OLD, valid_until: 2029-06-30 }\n"
                "    retention: 1d\n"
                "    transforms: { customer_id: hash }\n"
                "  soon:\n"
                "    license: { id: LIC-SOON, valid_until: 2030-01-15 }\n"
                "    transforms: { public: keep }\n"
                "  forever:\n"
                "    license: { id: LIC-EVER, valid_until: never }\n"
                "    retention: 1d\n"
                "    transforms: { public: keep }\n"
                "routes:\n"
                "  - source: customers\n"
                "    purposes: { soon: c.soon }\n"
                "  - source: orders\n"
                "    key_class: customer_id\n"
                "    purposes: { old: o.old, soon: o.soon }\n";
        int rc;
        json_t *r = run(yaml, base_schema, &rc);

        cr_assert_eq(rc, 0);
        cr_assert_eq(count(r, VEIL_GAP_LICENSE_EXPIRED, NULL), 1);
        cr_assert_eq(count(r, VEIL_GAP_LICENSE_EXPIRING, NULL), 1);
        /* `never` is allowed, said explicitly, and warned about */
        cr_assert_eq(count(r, VEIL_GAP_LICENSE_NEVER, NULL), 1);
        cr_assert_eq(count(r, VEIL_GAP_NO_RETENTION, NULL), 1);
        cr_assert_eq(count(r, VEIL_GAP_NO_KEY_CLASS, NULL), 1);
        /* orders has no schema in the registry */
        cr_assert_eq(count(r, VEIL_GAP_NO_SCHEMA, NULL), 1);
        /* soon does not license customer_id, the key of orders */
        cr_assert_eq(count(r, VEIL_GAP_KEY_UNLICENSED, NULL), 1);
        json_decref(r);
}

Test(check, findings_never_carry_values)
{
        int rc;
        json_t *r = run(base_yaml, base_schema, &rc), *f;
        size_t i;

        json_array_foreach(r, i, f) cr_assert_null(json_object_get(f, "value"));
        json_decref(r);
}

/* Map keys are data: an unlabelled map's keys are a gap (the map would be
 * dropped) even when its values are labelled, until classify: names
 * PATH{key}; a labelled map covers its keys. */
Test(check, unclassified_map_keys_by_path)
{
        static const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":"
                "\"string\"}},"
                "{\"name\":\"tags\",\"type\":[\"null\",{\"type\":\"array\","
                "\"items\":{\"type\":\"map\",\"values\":\"long\"}}],"
                "\"pii\":\"internal\"},"
                "{\"name\":\"byname\",\"type\":{\"type\":\"map\",\"values\":"
                "{\"type\":\"record\",\"name\":\"P\",\"fields\":[{\"name\":"
                "\"email\",\"type\":\"string\",\"pii\":\"email\"}]}}}]}";
        char yaml[2048];
        int rc;
        json_t *r, *f;
        size_t i;

        /* base_yaml ends in a flow map: write the overrides as a block */
        snprintf(yaml, sizeof(yaml),
                 "%.*s    classify:\n"
                 "      \"attrs{}\": internal\n",
                 (int)(strstr(base_yaml, "    classify:") - base_yaml),
                 base_yaml);
        r = run(yaml, schema, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, "attrs{key}"), 1, "%s",
                     json_dumps(r, JSON_COMPACT));
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, "byname{key}"), 1);
        /* tags is labelled: it covers the keys of the maps inside it */
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, "tags[]{key}"), 0);
        /* "attrs{}" names map values, a position this schema has */
        cr_assert_eq(count(r, VEIL_GAP_UNUSED_OVERRIDE, NULL), 0);
        json_array_foreach(r, i, f)
        {
                if (strcmp(json_string_value(json_object_get(f, "path")),
                           "attrs{key}"))
                        continue;
                cr_assert_str_eq(
                        json_string_value(json_object_get(f, "severity")),
                        "error");
                cr_assert(
                        strstr(json_string_value(json_object_get(f, "message")),
                               "classify:"));
        }
        json_decref(r);

        /* classify: PATH{key} closes the gaps */
        snprintf(yaml, sizeof(yaml),
                 "%.*s    classify:\n"
                 "      \"attrs{}\": internal\n"
                 "      \"attrs{key}\": email\n"
                 "      \"byname{key}\": customer_id\n"
                 "      \"tags[]{key}\": card\n"
                 "      \"attrs{key}.x\": email\n",
                 (int)(strstr(base_yaml, "    classify:") - base_yaml),
                 base_yaml);
        r = run(yaml, schema, &rc);
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, NULL), 0, "%s",
                     json_dumps(r, JSON_COMPACT));
        /* a key is a string: nothing is below it */
        cr_assert_eq(count(r, VEIL_GAP_UNUSED_OVERRIDE, "attrs{key}.x"), 1);
        cr_assert_eq(count(r, VEIL_GAP_UNUSED_OVERRIDE, NULL), 1);
        json_decref(r);
}

/* A PATH{key} class the licence does not list drops the map: a warning, as
 * for fields; an undefined one is an error. */
Test(check, map_key_override_unlicensed_or_undefined)
{
        static const char *schema =
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":["
                "{\"name\":\"id\",\"type\":\"string\",\"pii\":\"customer_id\"},"
                "{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":"
                "\"string\"},\"pii\":\"internal\"}]}";
        char yaml[2048];
        int rc;
        json_t *r;

        snprintf(yaml, sizeof(yaml),
                 "%.*s    classify:\n"
                 "      \"attrs{key}\": restricted\n",
                 (int)(strstr(base_yaml, "    classify:") - base_yaml),
                 base_yaml);
        r = run(yaml, schema, &rc);
        cr_assert_eq(count(r, VEIL_GAP_UNLICENSED, "attrs{key}"), 1, "%s",
                     json_dumps(r, JSON_COMPACT));
        cr_assert_eq(count(r, VEIL_GAP_UNCLASSIFIED, NULL), 0);
        json_decref(r);
}

/* The type rule behind "transform-type" is the plan compiler's own. */
/* Strings inline: Criterion re-executes the binary for each test, so a
 * pointer in a parameter would not survive (ASLR). */
struct tx_case {
        int kind;
        char type[64];
        int ok;
};

ParameterizedTestParameters(check, tx_types)
{
        static struct tx_case cases[] = {
                {VEIL_TX_HASH, "\"string\"", 1},
                {VEIL_TX_HASH, "\"long\"", 1},
                {VEIL_TX_HASH, "\"double\"", 0},
                {VEIL_TX_HASH, "[\"null\",\"string\"]", 1},
                /* containers are looked through: the leaves must fit */
                {VEIL_TX_HASH, "[\"null\",\"string\",\"int\"]", 1},
                {VEIL_TX_HASH, "[\"null\",\"string\",\"double\"]", 0},
                {VEIL_TX_MASK, "\"string\"", 1},
                {VEIL_TX_MASK, "\"int\"", 0},
                {VEIL_TX_GENERALIZE, "\"int\"", 1},
                {VEIL_TX_GENERALIZE, "\"boolean\"", 0},
                {VEIL_TX_ENCRYPT, "\"bytes\"", 1},
                {VEIL_TX_ENCRYPT, "\"float\"", 0},
                {VEIL_TX_REDACT_TEXT, "\"string\"", 1},
                {VEIL_TX_REDACT_TEXT,
                 "{\"type\":\"map\",\"values\":\"string\"}", 1},
                {VEIL_TX_REDACT_TEXT, "{\"type\":\"array\",\"items\":\"long\"}",
                 0},
                {VEIL_TX_DROP, "{\"type\":\"array\",\"items\":\"int\"}", 1},
                {VEIL_TX_NULL, "\"boolean\"", 1},
        };
        return cr_make_param_array(struct tx_case, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct tx_case *tc, check, tx_types)
{
        struct veil_transform tx;
        struct veil_schema *schema;
        char text[256], err[256] = "";
        int rc;

        /* the loader's defaults for parameterised transforms */
        veil_transform_defaults(&tx, (enum veil_tx_kind)tc->kind);

        snprintf(text, sizeof(text),
                 "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                 "[{\"name\":\"f\",\"type\":%s}]}",
                 tc->type);
        schema = veil_schema_parse(text, strlen(text), NULL, 1, err,
                                   sizeof(err));
        cr_assert_not_null(schema, "%s", err);
        rc = veil_plan_check_field(schema, veil_schema_field(schema, "f"), &tx,
                                   err, sizeof(err));
        cr_assert_eq(rc == 0, tc->ok, "%s on %s: %s", veil_tx_name(tc->kind),
                     tc->type, err);
        if (!tc->ok)
                cr_assert(strstr(err, veil_tx_name(tc->kind)) != NULL, "%s",
                          err);
        veil_schema_destroy(schema);
}

/* Crypto-shredding's subject is the record key: a purpose that encrypts
 * per subject on a route that declares no key (no key_class) is a gap,
 * named by route, purpose and the field's rule; with a key, none. */
#define SUBJECT_YAML(KEY)                                                      \
        "registry: { url: file://schemas }\n"                                  \
        "classes:\n"                                                           \
        "  customer_id: { tier: internal }\n"                                  \
        "  email: { tier: confidential, detector: email }\n"                   \
        "  card: { tier: restricted }\n"                                       \
        "purposes:\n"                                                          \
        "  mkt:\n"                                                             \
        "    license: { id: LIC-M, valid_until: 2099-12-31 }\n"                \
        "    retention: 30d\n"                                                 \
        "    transforms: { internal: keep, customer_id: keep,\n"               \
        "                  email: { encrypt: { per_subject: true } },\n"       \
        "                  card: drop }\n"                                     \
        "  plain:\n"                                                           \
        "    license: { id: LIC-P, valid_until: 2099-12-31 }\n"                \
        "    retention: 30d\n"                                                 \
        "    transforms: { internal: keep, customer_id: keep,\n"               \
        "                  email: { encrypt: { mode: siv } },\n"               \
        "                  card: drop }\n"                                     \
        "routes:\n"                                                            \
        "  - source: customers\n" KEY                                          \
        "    purposes: { mkt: c.mkt, plain: c.plain }\n"                       \
        "    classify: { \"address.zip\": internal }\n"

Test(check, per_subject_needs_a_keyed_route)
{
        json_t *r, *f;
        size_t i;
        int rc;

        r = run(SUBJECT_YAML(""), base_schema, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_eq(count(r, VEIL_GAP_SUBJECT_NO_KEY, NULL), 1);
        json_array_foreach(r, i, f)
        {
                if (strcmp(json_string_value(json_object_get(f, "kind")),
                           VEIL_GAP_SUBJECT_NO_KEY))
                        continue;
                cr_assert_str_eq(
                        json_string_value(json_object_get(f, "severity")),
                        "error");
                cr_assert_str_eq(json_string_value(json_object_get(f, "route")),
                                 "customers");
                cr_assert_str_eq(
                        json_string_value(json_object_get(f, "purpose")),
                        "mkt");
                cr_assert_str_eq(json_string_value(json_object_get(f, "label")),
                                 "email");
        }
        json_decref(r);
        r = run(SUBJECT_YAML("    key_class: customer_id\n"), base_schema, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_eq(count(r, VEIL_GAP_SUBJECT_NO_KEY, NULL), 0);
        cr_assert_eq(count(r, VEIL_GAP_NO_KEY_CLASS, NULL), 0);
        json_decref(r);
}
