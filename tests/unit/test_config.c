/* test_config.c - the YAML loader: values, defaults, every kind of error
 * message with its position and key path, durations, dates and the key. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <criterion/theories.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"
#include "veil.h"

#define DATA "tests/data/config/"

static const struct veil_config_opts no_key = {.skip_key = true};

static struct veil_config *load_ok(const char *path,
                                   const struct veil_config_opts *opts)
{
        char err[1024] = "";
        struct veil_config *config =
                veil_config_load(path, opts, err, sizeof(err));

        cr_assert_not_null(config, "%s: %s", path, err);
        return config;
}

/* Loads a file that must fail and returns its message (static buffer). */
static const char *load_err(const char *path,
                            const struct veil_config_opts *opts)
{
        static char err[1024];
        struct veil_config *config;

        err[0] = '\0';
        config = veil_config_load(path, opts, err, sizeof(err));
        cr_assert_null(config, "%s loaded but should not", path);
        cr_assert_neq(err[0], '\0', "%s: empty message", path);
        return err;
}

/* A temporary folder with files written by the test. */
static char tmpdir[64];

static void tmp_setup(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/veil-test-config-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                cr_log_warn("could not remove %s", tmpdir);
}

static const char *tmp_write(const char *name, const char *text)
{
        static char path[4][256];
        static int next;
        char *p = path[next++ % 4];
        FILE *fp;

        snprintf(p, 256, "%s/%s", tmpdir, name);
        fp = fopen(p, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
        /* Key files must be owner-only; tests of the mode chmod again. */
        if (strstr(name, ".key"))
                cr_assert_eq(chmod(p, 0600), 0);
        return p;
}

/* ---- every kind of bad file ------------------------------------------ */

/* Parameters are copied into each test's own process (Criterion may start
 * it afresh), so they hold their strings inline, never pointers. */
struct bad_case {
        char file[48];
        char msg[208]; /* after "FILE:" */
};

ParameterizedTestParameters(config, bad_file)
{
        static struct bad_case cases[] = {
                {"bad-syntax.yaml",
                 "3:2: syntax error: did not find expected key (while parsing "
                 "a block mapping at line 1, column 1)"},
                {"bad-tab.yaml",
                 "2:1: syntax error: found unexpected end of stream (while "
                 "scanning a quoted scalar at line 1, column 8)"},
                {"bad-empty.yaml",
                 "1:1: the file is empty (expected a map of settings)"},
                {"bad-root-list.yaml",
                 "1:1: expected a map of settings, got a list"},
                {"bad-two-docs.yaml",
                 "3:1: a second YAML document; the config is one document"},
                {"bad-unknown-top.yaml",
                 "2:1: registy: unknown key (did you mean 'registry'?)"},
                {"bad-unknown-nested.yaml",
                 "2:3: registry.urll: unknown key (did you mean 'url'?)"},
                {"bad-unknown-far.yaml", "2:1: frobnicate: unknown key"},
                {"bad-type-map.yaml",
                 "1:11: registry: expected a map, got a scalar"},
                {"bad-type-list.yaml",
                 "2:3: routes: expected a list of routes, got a map"},
                {"bad-duplicate.yaml",
                 "4:3: classes.email: duplicate key (first at line 2)"},
                {"bad-transform-name.yaml",
                 "7:14: purposes.analytics.transforms.email: unknown "
                 "transform 'hsh' (did you mean 'hash'?)"},
                {"bad-transform-map-name.yaml",
                 "6:15: purposes.analytics.transforms.card: unknown "
                 "transform 'msk' (did you mean 'mask'?)"},
                {"bad-transform-unknown.yaml",
                 "3:27: purposes.analytics.transforms.public: unknown "
                 "transform 'tokenize'"},
                {"bad-transform-param.yaml",
                 "8:11: purposes.analytics.transforms.card.mask.keep_lst: "
                 "unknown key (did you mean 'keep_last'?)"},
                {"bad-transform-two-keys.yaml",
                 "4:15: purposes.p.transforms.public: a transform map has "
                 "exactly one key, the transform's name (got 2)"},
                {"bad-mask-char.yaml",
                 "4:31: purposes.p.transforms.public.mask.char: expected "
                 "one printable ASCII character"},
                {"bad-target.yaml",
                 "6:7: purposes.analytics.transforms.emial: 'emial' is not "
                 "a defined class or tier (did you mean 'email'?)"},
                {"bad-key-class.yaml",
                 "7:16: routes[0].key_class: 'custmer_id' is not a defined "
                 "class or tier (did you mean 'customer_id'?)"},
                {"bad-route-purpose.yaml",
                 "5:17: routes[0].purposes.analytic: no purpose named "
                 "'analytic' (did you mean 'analytics'?)"},
                {"bad-classify-label.yaml",
                 "5:20: routes[1].classify.address.zip: 'zip' is not a "
                 "defined class or tier"},
                {"bad-missing-source.yaml",
                 "2:5: routes[0]: missing required key 'source'"},
                {"bad-route-dup-source.yaml",
                 "3:13: routes[1].source: routes[0] already reads "
                 "'customers'; one route per source"},
                {"bad-topic-reuse.yaml",
                 "8:20: routes[1].purposes.b: topic 'out.topic' is already "
                 "written by routes[0].purposes.a"},
                {"bad-tier.yaml",
                 "2:18: classes.email.tier: 'secret' is not a tier: public, "
                 "internal, confidential or restricted"},
                {"bad-tier-typo.yaml",
                 "2:18: classes.email.tier: 'confidental' is not a tier: "
                 "public, internal, confidential or restricted (did you "
                 "mean 'confidential'?)"},
                {"bad-class-tier-name.yaml",
                 "2:3: classes.internal: 'internal' is a tier name; a class "
                 "needs a name of its own"},
                {"bad-detector.yaml",
                 "2:42: classes.email.detector: unknown detector 'emial' "
                 "(did you mean 'email'?)"},
                {"bad-redact-detector.yaml",
                 "6:50: purposes.support.transforms.notes.redact_text."
                 "detectors[1]: unknown detector 'phon' (did you mean "
                 "'phone'?)"},
                {"bad-builtin-detector-name.yaml",
                 "2:3: detectors.email: 'email' is a built-in detector; "
                 "give yours another name"},
                {"bad-tag-class.yaml",
                 "2:8: tag_classes.PII: 'personal' is not a defined class "
                 "or tier"},
                {"bad-duration.yaml",
                 "3:16: purposes.analytics.retention: invalid duration "
                 "'90x' (expected e.g. 90d, 12h, 30m, 90s, 500ms or 1h30m)"},
                {"bad-date.yaml",
                 "3:37: purposes.analytics.license.valid_until: invalid "
                 "date '2023-02-29' (expected a real date as YYYY-MM-DD, or "
                 "never)"},
                {"bad-valid-until-missing.yaml",
                 "3:14: purposes.analytics.license: missing required key "
                 "'valid_until'"},
                {"bad-registry-insecure.yaml",
                 "2:8: registry.url: plain http:// to a host other than "
                 "this one (loopback): use https://, or set "
                 "registry.allow_insecure: true"},
                {"bad-keys-both-forms.yaml",
                 "2:18: keys: use either keys.ring or the one-key form "
                 "(hmac_key_file, key_id), not both"},
                {"bad-keys-no-active.yaml",
                 "2:3: keys: missing required key 'active' (which ring key "
                 "makes new tokens, seals and MACs)"},
                {"bad-keys-active-unknown.yaml",
                 "2:11: keys: no key 'k3' in keys.ring"},
                {"bad-keys-file-and-command.yaml",
                 "3:9: keys.ring.k1: a key has exactly one of 'file' and "
                 "'command'"},
                {"bad-keys-ring-id.yaml",
                 "3:5: keys.ring.k.1: a key id is 1-32 of a-z A-Z 0-9 _ -"},
                {"bad-enum.yaml",
                 "1:17: dlq.payload: expected one of encrypted, raw, got "
                 "'rwa' (did you mean 'raw'?)"},
                {"bad-int.yaml",
                 "1:20: max_batch_records: expected an integer from 1 to "
                 "10000000, got 'lots'"},
                {"bad-bool.yaml",
                 "2:27: keys.shared_across_purposes: expected true or "
                 "false, got 'sometimes'"},
                {"bad-metrics.yaml",
                 "1:20: metrics.listen: expected HOST:PORT (e.g. "
                 "127.0.0.1:9464)"},
                {"bad-registry-url.yaml",
                 "1:18: registry.url: expected an http://, https:// or "
                 "file:// URL"},
        };

        return cr_make_param_array(struct bad_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct bad_case *c, config, bad_file)
{
        char path[256], want[1024];
        const char *err;

        snprintf(path, sizeof(path), DATA "%s", c->file);
        snprintf(want, sizeof(want), "%s:%s", path, c->msg);
        err = load_err(path, &no_key);
        cr_assert_str_eq(err, want);
}

/* librdkafka's own words, whatever its version says. */
static void rdkafka_message(const char *key, const char *value, char *buf,
                            size_t size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();

        cr_assert_neq(rd_kafka_conf_set(conf, key, value, buf, size),
                      RD_KAFKA_CONF_OK);
        rd_kafka_conf_destroy(conf);
}

Test(config, kafka_unknown_property_uses_librdkafka_message)
{
        char lib[512], want[1024];
        const char *err;

        rdkafka_message("bootstrap.servrs", "127.0.0.1:9092", lib, sizeof(lib));
        snprintf(want, sizeof(want),
                 DATA "bad-kafka-key.yaml:3:3: kafka.bootstrap.servrs: %s",
                 lib);
        err = load_err(DATA "bad-kafka-key.yaml", &no_key);
        cr_assert_str_eq(err, want);
        cr_assert(strstr(lib, "bootstrap.servrs"));
}

Test(config, kafka_bad_value_points_at_value)
{
        char lib[512], want[1024];
        const char *err;

        rdkafka_message("enable.idempotence", "maybe", lib, sizeof(lib));
        snprintf(want, sizeof(want),
                 DATA "bad-kafka-value.yaml:2:23: kafka.enable.idempotence: "
                      "%s",
                 lib);
        err = load_err(DATA "bad-kafka-value.yaml", &no_key);
        cr_assert_str_eq(err, want);
}

Test(config, kafka_check_can_be_skipped)
{
        struct veil_config_opts opts = {.skip_key         = true,
                                        .skip_kafka_check = true};
        struct veil_config *config = load_ok(DATA "bad-kafka-key.yaml", &opts);

        cr_assert_eq(config->n_kafka, 2);
        cr_assert_str_eq(config->kafka[1].key, "bootstrap.servrs");
        cr_assert_str_eq(config->kafka[1].value, "127.0.0.1:9092");
        veil_config_destroy(config);
}

Test(config, bad_pattern_reports_hyperscan_reason)
{
        const char *err  = load_err(DATA "bad-pattern.yaml", &no_key);
        const char *want = DATA "bad-pattern.yaml:2:22: detectors.broken."
                                "pattern: invalid pattern: ";

        cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
        cr_assert_gt(strlen(err), strlen(want));
        /* A pattern that matches the empty string would match everywhere. */
        err  = load_err(DATA "bad-pattern-empty.yaml", &no_key);
        want = DATA "bad-pattern-empty.yaml:2:24: detectors.anything.pattern: "
                    "invalid pattern: ";
        cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
        cr_assert(strstr(err, "empty"), "%s", err);
}

Test(config, missing_file)
{
        const char *err = load_err(DATA "no-such-file.yaml", &no_key);

        cr_assert(strstr(err, DATA "no-such-file.yaml"), "%s", err);
        cr_assert(strstr(err, "No such file"), "%s", err);
}

/* ---- good files ------------------------------------------------------- */

Test(config, full_file_values)
{
        struct veil_config *config;
        const struct veil_policy *policy;
        const struct veil_purpose *purpose;
        const struct veil_route *route;
        const struct veil_transform *tx;
        char *dir = realpath(DATA, NULL), want[PATH_MAX + 64];

        unsetenv("VEIL_HMAC_KEY");
        cr_assert_eq(chmod(DATA "test-hmac.key", 0600), 0);
        config = load_ok(DATA "good-full.yaml", NULL);
        policy = &config->policy;
        cr_assert_str_eq(config->path, DATA "good-full.yaml");
        cr_assert_str_eq(config->dir, dir);

        cr_assert_eq(config->n_kafka, 3);
        cr_assert_str_eq(config->kafka[0].key, "bootstrap.servers");
        cr_assert_str_eq(config->kafka[0].value, "127.0.0.1:19092");
        cr_assert_str_eq(config->kafka[2].key, "linger.ms");
        cr_assert_str_eq(config->kafka[2].value, "5");
        cr_assert_str_eq(config->group, "g1");
        cr_assert_str_eq(config->instance, "worker-7");

        cr_assert_str_eq(config->registry.url, "https://registry.example:8081");
        cr_assert_str_eq(config->registry.basic_auth, "u:p");
        snprintf(want, sizeof(want), "%s/ca.pem", dir);
        cr_assert_str_eq(config->registry.ca_file, want);
        cr_assert_eq(config->registry.timeout_ms, 2500);
        cr_assert_eq(config->registry.retries, 5);

        snprintf(want, sizeof(want), "%s/test-hmac.key", dir);
        cr_assert_str_eq(config->keys.hmac_key_file, want);
        cr_assert_str_eq(config->keys.key_id, "k2");
        cr_assert(config->keys.shared_across_purposes);
        /* The file's content without its final newline. */
        cr_assert_eq(config->keys.key_len, 50);
        cr_assert_eq(memcmp(config->keys.key,
                            "test-only-hmac-key-for-unit-tests-0123456789"
                            "abcdef",
                            50),
                     0);

        cr_assert_eq(policy->n_detectors, 1);
        cr_assert_str_eq(policy->detectors[0].name, "order_ref");
        cr_assert_str_eq(policy->detectors[0].pattern, "ORD-[0-9]{8}");
        cr_assert_eq(policy->n_classes, 5);
        cr_assert_str_eq(policy->classes[1].name, "email");
        cr_assert_eq(policy->classes[1].tier, VEIL_TIER_CONFIDENTIAL);
        cr_assert_str_eq(policy->classes[1].detector, "email");
        cr_assert_null(policy->classes[0].detector);
        cr_assert_str_eq(policy->classes[3].detector, "order_ref");
        cr_assert_eq(policy->n_tag_classes, 2);
        cr_assert_str_eq(policy->tag_classes[1].tag, "CARD");
        cr_assert_str_eq(policy->tag_classes[1].label, "card");

        cr_assert_eq(policy->n_purposes, 2);
        purpose = veil_policy_purpose(policy, "analytics");
        cr_assert_not_null(purpose);
        cr_assert_str_eq(purpose->license_id, "LIC-A-1");
        /* 2024-02-29 23:59:59 UTC. */
        cr_assert_eq(purpose->valid_until, 1709251199);
        cr_assert_eq(purpose->retention_ms, 5400000);
        cr_assert_eq(purpose->n_rules, 7);
        tx = veil_policy_transform(purpose, policy, "customer_id");
        cr_assert_eq(tx->kind, VEIL_TX_HASH);
        tx = veil_policy_transform(purpose, policy, "email");
        cr_assert_eq(tx->kind, VEIL_TX_NULL);
        tx = veil_policy_transform(purpose, policy, "card");
        cr_assert_eq(tx->kind, VEIL_TX_MASK);
        cr_assert_eq(tx->mask.keep_first, 2);
        cr_assert_eq(tx->mask.keep_last, 0, "keep_first alone: no last");
        cr_assert_eq(tx->mask.mask_char, '#');
        cr_assert(tx->mask.digits_only);
        tx = veil_policy_transform(purpose, policy, "ref");
        cr_assert_eq(tx->kind, VEIL_TX_GENERALIZE);
        cr_assert_eq(tx->generalize.width, 100);
        cr_assert_eq(tx->generalize.prefix, 3);
        tx = veil_policy_transform(purpose, policy, "notes");
        cr_assert_eq(tx->kind, VEIL_TX_REDACT_TEXT);
        cr_assert_str_eq(tx->redact.replace, "<{detector}>");
        cr_assert_eq(tx->redact.n_detectors, 2);
        cr_assert_str_eq(tx->redact.detectors[0], "email");
        cr_assert_str_eq(tx->redact.detectors[1], "order_ref");
        tx = veil_policy_transform(purpose, policy, "restricted");
        cr_assert_eq(tx->kind, VEIL_TX_ENCRYPT);
        cr_assert_eq(tx->encrypt.mode, VEIL_ENCRYPT_GCM);
        cr_assert_eq(tx->encrypt.output, VEIL_ENCRYPT_OUT_BYTES);

        /* Plain names get each transform's defaults. */
        purpose = veil_policy_purpose(policy, "support");
        cr_assert_null(purpose->license_id);
        cr_assert_eq(purpose->valid_until, 0);
        cr_assert_eq(purpose->retention_ms, 90000);
        tx = veil_policy_transform(purpose, policy, "card");
        cr_assert_eq(tx->kind, VEIL_TX_MASK);
        cr_assert_eq(tx->mask.keep_last, 4);
        cr_assert_eq(tx->mask.keep_first, 0);
        cr_assert_eq(tx->mask.mask_char, '*');
        cr_assert_not(tx->mask.digits_only);
        tx = veil_policy_transform(purpose, policy, "notes");
        cr_assert_str_eq(tx->redact.replace, "[{detector}]");
        cr_assert_null(tx->redact.detectors);
        tx = veil_policy_transform(purpose, policy, "email");
        cr_assert_eq(tx->encrypt.mode, VEIL_ENCRYPT_SIV);
        cr_assert_eq(tx->encrypt.output, VEIL_ENCRYPT_OUT_STRING);

        cr_assert_eq(policy->n_routes, 2);
        route = veil_policy_route(policy, "customers");
        cr_assert_str_eq(route->key_class, "customer_id");
        cr_assert_eq(route->n_purposes, 2);
        cr_assert_str_eq(route->purposes[1].purpose, "support");
        cr_assert_str_eq(route->purposes[1].topic, "customers.support");
        cr_assert_eq(route->purposes[1].ref,
                     veil_policy_purpose(policy, "support"));
        cr_assert_eq(route->n_classify, 2);
        cr_assert_str_eq(route->classify[1].path, "contacts[].email");
        cr_assert_str_eq(route->classify[1].label, "email");
        route = veil_policy_route(policy, "orders");
        cr_assert_null(route->key_class);
        cr_assert_eq(route->n_classify, 0);

        cr_assert_str_eq(config->topics.dlq, "t.dlq");
        cr_assert_str_eq(config->topics.audit, "t.audit");
        cr_assert_str_eq(config->topics.ledger, "t.ledger");
        cr_assert_str_eq(config->topics.erasure, "t.erasure");
        cr_assert_eq(config->dlq_payload, VEIL_DLQ_RAW);
        cr_assert_eq(config->audit_level, VEIL_AUDIT_BATCH);
        cr_assert_str_eq(config->metrics_listen, "[::1]:9999");
        cr_assert_str_eq(config->log_level, "debug");
        cr_assert_eq(config->commit_interval_ms, 250);
        cr_assert_eq(config->max_batch_records, 500);
        cr_assert_eq(config->n_plugins, 3);
        cr_assert_str_eq(config->plugins[0], "libfoo.so");
        snprintf(want, sizeof(want), "%s/plugins/bar.so", dir);
        cr_assert_str_eq(config->plugins[1], want);
        cr_assert_str_eq(config->plugins[2], "/opt/veil/baz.so");
        cr_assert_eq(strlen(policy->digest), 64);
        veil_config_destroy(config);
        free(dir);
}

Test(config, defaults)
{
        struct veil_config *config = load_ok(DATA "good-minimal.yaml", &no_key);
        char host[256]             = "", want[PATH_MAX + 64];
        char *dir                  = realpath(DATA, NULL);

        cr_assert_str_eq(config->group, "veil");
        cr_assert_eq(gethostname(host, sizeof(host)), 0);
        cr_assert_str_eq(config->instance, host);
        /* A relative file:// URL is relative to the config's folder. */
        snprintf(want, sizeof(want), "file://%s/schemas", dir);
        cr_assert_str_eq(config->registry.url, want);
        cr_assert_null(config->registry.basic_auth);
        cr_assert_null(config->registry.ca_file);
        cr_assert_eq(config->registry.timeout_ms, 5000);
        cr_assert_eq(config->registry.retries, 3);
        cr_assert_str_eq(config->keys.key_id, "k1");
        cr_assert_not(config->keys.shared_across_purposes);
        cr_assert_null(config->keys.key, "skip_key reads no key");
        cr_assert_str_eq(config->topics.dlq, "veil.dlq");
        cr_assert_str_eq(config->topics.audit, "veil.audit");
        cr_assert_str_eq(config->topics.ledger, "veil.retention");
        cr_assert_str_eq(config->topics.erasure, "veil.erasure");
        cr_assert_eq(config->dlq_payload, VEIL_DLQ_ENCRYPTED);
        cr_assert_eq(config->audit_level, VEIL_AUDIT_RECORD);
        cr_assert_null(config->metrics_listen);
        cr_assert_str_eq(config->log_level, "info");
        cr_assert_eq(config->commit_interval_ms, 100);
        cr_assert_eq(config->max_batch_records, 10000);
        cr_assert_eq(config->n_plugins, 0);
        cr_assert_eq(config->n_kafka, 0);
        cr_assert_eq(config->policy.n_classes, 0);
        cr_assert_eq(strlen(config->policy.digest), 64);
        veil_config_destroy(config);
        free(dir);
}

Test(config, demo_config_loads_with_its_key)
{
        struct veil_config *config;
        const struct veil_route *route;
        char *schemas = realpath("schemas", NULL), want[PATH_MAX + 16];

        unsetenv("VEIL_HMAC_KEY");
        /* git keeps no file mode but the x bit: a checkout's key is 0644. */
        cr_assert_eq(chmod("config/dev-hmac.key", 0600), 0);
        config = load_ok("config/veil.yaml", NULL);
        snprintf(want, sizeof(want), "file://%s", schemas);
        cr_assert_str_eq(config->registry.url, want);
        cr_assert_geq(config->keys.key_len, 32);
        route = veil_policy_route(&config->policy, "customers");
        cr_assert_not_null(route);
        cr_assert_str_eq(route->key_class, "customer_id");
        cr_assert_geq(route->n_purposes, 2);
        cr_assert_not_null(veil_policy_purpose(&config->policy, "analytics"));
        cr_assert_not_null(veil_policy_purpose(&config->policy, "marketing"));
        veil_config_destroy(config);
        free(schemas);
}

/* The reference must stay loadable: a key added to the loader and not to
 * the example, or the other way round, fails here. */
Test(config, example_config_loads)
{
        struct veil_config *config;

        unsetenv("VEIL_HMAC_KEY");
        cr_assert_eq(chmod("config/dev-hmac.key", 0600), 0);
        config = load_ok("config/veil.example.yaml", NULL);
        cr_assert_eq(config->policy.n_detectors, 1);
        cr_assert_geq(config->policy.n_purposes, 2);
        cr_assert_eq(config->policy.n_routes, 1);
        cr_assert_str_eq(config->instance, "w1");
        cr_assert_not_null(config->metrics_listen);
        veil_config_destroy(config);
}

/* Every top-level key the loader accepts appears in the example. */
Test(config, example_mentions_every_key)
{
        static const char *const keys[] = {
                "kafka:",
                "group:",
                "instance:",
                "registry:",
                "url:",
                "basic_auth:",
                "ca_file:",
                "cert_file:",
                "key_file:",
                "bearer_token_file:",
                "bearer_token_env:",
                "timeout:",
                "retries:",
                "keys:",
                "hmac_key_file:",
                "key_id:",
                "shared_across_purposes:",
                "detectors:",
                "pattern:",
                "classes:",
                "tier:",
                "detector:",
                "tag_classes:",
                "purposes:",
                "license:",
                "id:",
                "valid_until:",
                "retention:",
                "transforms:",
                "routes:",
                "source:",
                "key_class:",
                "classify:",
                "topics:",
                "dlq:",
                "audit:",
                "ledger:",
                "erasure:",
                "control:",
                "alerts:",
                "halt_on:",
                "leaks_per_minute:",
                "dlq_per_minute:",
                "payload:",
                "level:",
                "metrics:",
                "listen:",
                "log:",
                "commit_interval:",
                "max_batch_records:",
                "plugins:",
                "keep_last:",
                "keep_first:",
                "char:",
                "digits_only:",
                "width:",
                "prefix:",
                "mode:",
                "output:",
                "replace:",
                "detectors:",
                "hash",
                "keep",
                "drop",
                "null",
                "mask:",
                "generalize:",
                "encrypt:",
                "redact_text:",
        };
        char err[256];
        char *text = veil_file_read("config/veil.example.yaml", NULL, err,
                                    sizeof(err));
        size_t i;

        cr_assert_not_null(text, "%s", err);
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                cr_expect(strstr(text, keys[i]), "example lacks %s", keys[i]);
        free(text);
}

/* ---- the key ----------------------------------------------------------- */

Test(config, env_key_overrides_file)
{
        const char *key = "env-key-0123456789-0123456789-0123456789";
        struct veil_config *config;

        cr_assert_eq(setenv("VEIL_HMAC_KEY", key, 1), 0);
        config = load_ok(DATA "good-full.yaml", NULL);
        cr_assert_eq(config->keys.key_len, strlen(key));
        cr_assert_eq(memcmp(config->keys.key, key, strlen(key)), 0);
        veil_config_destroy(config);
}

Test(config, env_key_works_without_a_key_file, .init = tmp_setup,
     .fini = tmp_teardown)
{
        const char *key  = "env-key-0123456789-0123456789-0123456789";
        const char *path = tmp_write("c.yaml", "group: g\n");
        struct veil_config *config;

        cr_assert_eq(setenv("VEIL_HMAC_KEY", key, 1), 0);
        config = load_ok(path, NULL);
        cr_assert_eq(config->keys.key_len, strlen(key));
        veil_config_destroy(config);
}

Test(config, short_key_file_refused_without_showing_it, .init = tmp_setup,
     .fini = tmp_teardown)
{
        const char *secret = "s3cr3t-short-key";
        char key_path[256], want[512];
        const char *path, *err;

        unsetenv("VEIL_HMAC_KEY");
        tmp_write("short.key", "s3cr3t-short-key\n");
        path = tmp_write("c.yaml", "keys:\n  hmac_key_file: short.key\n");
        snprintf(key_path, sizeof(key_path), "%s/short.key", tmpdir);
        err = load_err(path, NULL);
        snprintf(want, sizeof(want),
                 "%s:2:18: keys.hmac_key_file: the key in %s is too short: "
                 "16 bytes, at least 32 are required",
                 path, key_path);
        cr_assert_str_eq(err, want);
        cr_assert_null(strstr(err, secret));
        cr_assert_null(strstr(err, "s3cr3t"));
}

Test(config, short_env_key_refused_without_showing_it)
{
        const char *err;

        cr_assert_eq(setenv("VEIL_HMAC_KEY", "tiny-env-key", 1), 0);
        err = load_err(DATA "good-full.yaml", NULL);
        cr_assert(strstr(err, "VEIL_HMAC_KEY is too short"), "%s", err);
        cr_assert(strstr(err, "at least 32"), "%s", err);
        cr_assert_null(strstr(err, "tiny"), "%s", err);
}

Test(config, missing_key_file, .init = tmp_setup, .fini = tmp_teardown)
{
        const char *path, *err;

        unsetenv("VEIL_HMAC_KEY");
        path = tmp_write("c.yaml", "keys: { hmac_key_file: nope.key }\n");
        err  = load_err(path, NULL);
        cr_assert(strstr(err, ":1:24: keys.hmac_key_file: cannot read key "
                              "file "),
                  "%s", err);
        cr_assert(strstr(err, "nope.key: No such file or directory"), "%s",
                  err);
}

Test(config, no_key_at_all, .init = tmp_setup, .fini = tmp_teardown)
{
        const char *path, *err;
        char want[512];

        unsetenv("VEIL_HMAC_KEY");
        path = tmp_write("c.yaml", "group: g\n");
        err  = load_err(path, NULL);
        snprintf(want, sizeof(want),
                 "%s:1:1: keys: no key: set keys.hmac_key_file, keys.ring "
                 "or the VEIL_HMAC_KEY environment variable",
                 path);
        cr_assert_str_eq(err, want);
}

Test(config, key_file_keeps_inner_newlines_strips_one, .init = tmp_setup,
     .fini = tmp_teardown)
{
        const char *key = "line-one-0123456789abcdef\nline-two-0123456789\n\n";
        struct veil_config *config;
        const char *path;

        unsetenv("VEIL_HMAC_KEY");
        tmp_write("k.key", key);
        path   = tmp_write("c.yaml", "keys: { hmac_key_file: k.key }\n");
        config = load_ok(path, NULL);
        /* Only the last newline goes. */
        cr_assert_eq(config->keys.key_len, strlen(key) - 1);
        cr_assert_eq(memcmp(config->keys.key, key, strlen(key) - 1), 0);
        veil_config_destroy(config);
}

/* ---- durations ------------------------------------------------------- */

struct duration_case {
        char text[32];
        int64_t ms;
};

ParameterizedTestParameters(config, duration_valid)
{
        static struct duration_case cases[] = {
                {"90d", 90LL * 86400000},
                {"12h", 12LL * 3600000},
                {"30m", 30LL * 60000},
                {"90s", 90000},
                {"500ms", 500},
                {"1h30m", 5400000},
                {"2d12h", 216000000},
                {"1m1s1ms", 61001},
                {"0s", 0},
                {"1d2h3m4s5ms", 93784005},
                {"106751991167d", 106751991167LL * 86400000},
                {"9223372036854775807ms", INT64_MAX},
        };

        return cr_make_param_array(struct duration_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct duration_case *c, config, duration_valid)
{
        int64_t ms = -1;

        cr_assert_eq(veil_duration_parse(c->text, &ms), 0, "%s", c->text);
        cr_assert_eq(ms, c->ms, "%s", c->text);
}

struct bad_text {
        char text[32];
};

ParameterizedTestParameters(config, duration_invalid)
{
        static struct bad_text cases[] = {
                {""},
                {"90"},
                {"-5s"},
                {"5"},
                {"d"},
                {"5x"},
                {"5 s"},
                {" 5s"},
                {"5s "},
                {"1.5h"},
                {"5S"},
                {"30m1h"},
                {"1h1h"},
                {"5sms"},
                {"1msms"},
                {"+5s"},
                {"5mss"},
                {"1w"},
                {"106751991168d"},         /* > INT64_MAX ms */
                {"9223372036854775808ms"}, /* INT64_MAX + 1 */
                {"99999999999999999999s"}, /* digits overflow */
                {"106751991167d8h"},       /* sum overflows */
        };

        return cr_make_param_array(struct bad_text, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct bad_text *c, config, duration_invalid)
{
        int64_t ms = 12345;

        cr_assert_eq(veil_duration_parse(c->text, &ms), VEIL_EINVAL, "'%s'",
                     c->text);
        cr_assert_eq(ms, 12345, "output untouched on error");
}

Test(config, duration_null)
{
        int64_t ms;

        cr_assert_eq(veil_duration_parse(NULL, &ms), VEIL_EINVAL);
}

/* n of a unit is n times the unit, for any n and unit. */
TheoryDataPoints(config, duration_units) = {
        DataPoints(int, 0, 1, 7, 59, 60, 999, 1000, 86400, 1000000),
        DataPoints(int, 0, 1, 2, 3, 4),
};

Theory((int n, int unit), config, duration_units)
{
        static const char *const names[] = {"d", "h", "m", "s", "ms"};
        static const int64_t ms[]        = {86400000, 3600000, 60000, 1000, 1};
        char text[64];
        int64_t got = -1;

        snprintf(text, sizeof(text), "%d%s", n, names[unit]);
        cr_assert_eq(veil_duration_parse(text, &got), 0, "%s", text);
        cr_assert_eq(got, (int64_t)n * ms[unit], "%s", text);
}

/* ---- dates ------------------------------------------------------------- */

struct date_case {
        char text[16];
        int64_t sec;
};

ParameterizedTestParameters(config, date_valid)
{
        static struct date_case cases[] = {
                {"1970-01-01", 0},          {"2000-02-29", 951782400},
                {"2024-02-29", 1709164800}, {"2027-12-31", 1830211200},
                {"2023-02-28", 1677542400}, {"1999-12-31", 946598400},
                {"2024-04-30", 1714435200}, {"9999-12-31", 253402214400},
        };

        return cr_make_param_array(struct date_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct date_case *c, config, date_valid)
{
        int64_t sec = -1;

        cr_assert_eq(veil_date_parse(c->text, &sec), 0, "%s", c->text);
        cr_assert_eq(sec, c->sec, "%s", c->text);
}

ParameterizedTestParameters(config, date_invalid)
{
        static struct bad_text cases[] = {
                {"2023-02-29"},
                {"1900-02-29"},
                {"2100-02-29"},
                {"2024-02-30"},
                {"2024-04-31"},
                {"2024-13-01"},
                {"2024-00-10"},
                {"2024-01-00"},
                {"2024-01-32"},
                {"2024-1-01"},
                {"24-01-01"},
                {"2024/01/01"},
                {"2024-01-01T00:00:00"},
                {""},
                {"2024-01-0a"},
                {"1969-12-31"},
                {" 2024-01-01"},
                {"+024-01-01"},
        };

        return cr_make_param_array(struct bad_text, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct bad_text *c, config, date_invalid)
{
        int64_t sec = 777;

        cr_assert_eq(veil_date_parse(c->text, &sec), VEIL_EINVAL, "'%s'",
                     c->text);
        cr_assert_eq(sec, 777);
}

Test(config, destroy_null_is_noop)
{
        veil_config_destroy(NULL);
}

/* registry: credentials are read when the file loads, errors at their
 * place; the token itself never appears in a message. */
Test(config, registry_bearer_token_file_and_env, .init = tmp_setup,
     .fini = tmp_teardown)
{
        char tok_path[256], want[512];
        const char *path, *err;
        struct veil_config *config;

        tmp_write("reg.tok", "tok.en-0123456789\n");
        snprintf(tok_path, sizeof(tok_path), "%s/reg.tok", tmpdir);
        cr_assert_eq(chmod(tok_path, 0600), 0);
        path   = tmp_write("c.yaml", "registry:\n  url: https://reg.example\n"
                                       "  bearer_token_file: reg.tok\n");
        config = load_ok(path, &no_key);
        cr_assert_str_eq(config->registry.bearer_token, "tok.en-0123456789");
        cr_assert_str_eq(config->registry.bearer_token_file, tok_path);
        veil_config_destroy(config);

        cr_assert_eq(chmod(tok_path, 0604), 0);
        err = load_err(path, &no_key);
        snprintf(want, sizeof(want),
                 "%s:3:22: registry.bearer_token_file: token file %s has "
                 "mode 0604",
                 path, tok_path);
        cr_assert(!strncmp(err, want, strlen(want)), "%s", err);
        cr_assert_null(strstr(err, "tok.en"), "%s", err);

        path = tmp_write("e.yaml", "registry:\n  url: https://reg.example\n"
                                   "  bearer_token_env: VEIL_TEST_CFG_TOKEN\n");
        cr_assert_eq(setenv("VEIL_TEST_CFG_TOKEN", "env.tok.en", 1), 0);
        config = load_ok(path, &no_key);
        cr_assert_str_eq(config->registry.bearer_token, "env.tok.en");
        cr_assert_null(getenv("VEIL_TEST_CFG_TOKEN"));
        veil_config_destroy(config);
        /* A reload (SIGHUP) finds it again. */
        config = load_ok(path, &no_key);
        cr_assert_str_eq(config->registry.bearer_token, "env.tok.en");
        veil_config_destroy(config);

        path = tmp_write("b.yaml", "registry:\n  url: https://reg.example\n"
                                   "  basic_auth: \"u:p4ss\"\n"
                                   "  bearer_token_env: VEIL_TEST_CFG_TOKEN\n");
        err  = load_err(path, &no_key);
        cr_assert(strstr(err, ":4:21: registry.bearer_token_env: a bearer "
                              "token and registry.basic_auth are both set"),
                  "%s", err);
        cr_assert_null(strstr(err, "p4ss"), "%s", err);
}

Test(config, registry_client_cert_needs_key_and_https, .init = tmp_setup,
     .fini = tmp_teardown)
{
        const char *path, *err;

        path = tmp_write("c.yaml", "registry:\n  url: https://reg.example\n"
                                   "  cert_file: c.pem\n");
        err  = load_err(path, &no_key);
        cr_assert(strstr(err, ":3:14: registry.cert_file: a client "
                              "certificate needs its key"),
                  "%s", err);
        path = tmp_write("d.yaml", "registry:\n  url: http://127.0.0.1:8081\n"
                                   "  cert_file: c.pem\n  key_file: c.key\n");
        err  = load_err(path, &no_key);
        cr_assert(strstr(err, ":3:14: registry.cert_file: a client "
                              "certificate needs an https://"),
                  "%s", err);
        path = tmp_write("e.yaml", "registry:\n  url: https://reg.example\n"
                                   "  cert_file: c.pem\n  key_file: c.key\n");
        err  = load_err(path, &no_key);
        cr_assert(strstr(err, ":3:14: registry.cert_file: cannot read client "
                              "certificate "),
                  "%s", err);
        path = tmp_write("f.yaml", "registry:\n  url: https://reg.example\n"
                                   "  ca_file: nope.pem\n");
        err  = load_err(path, &no_key);
        cr_assert(strstr(err, ":3:12: registry.ca_file: cannot read CA file "),
                  "%s", err);
}
