/* test_policy.c - the licence model: classification precedence, transform
 * lookup with tier fallback, licence validity and the policy digest. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "config.h"
#include "policy.h"

#define DATA "tests/data/config/"

static struct veil_config *config;
static const struct veil_policy *policy;
static const struct veil_route *route;

static struct veil_config *load(const char *path)
{
        struct veil_config_opts opts = {.skip_key         = true,
                                        .skip_kafka_check = true};
        char err[1024]               = "";
        struct veil_config *c = veil_config_load(path, &opts, err, sizeof(err));

        cr_assert_not_null(c, "%s", err);
        return c;
}

static void setup(void)
{
        config = load(DATA "policy.yaml");
        policy = &config->policy;
        route  = veil_policy_route(policy, "customers");
        cr_assert_not_null(route);
}

static void teardown(void)
{
        veil_config_destroy(config);
        config = NULL;
}

TestSuite(policy, .init = setup, .fini = teardown);

/* ---- names ------------------------------------------------------------- */

Test(policy, tier_names_round_trip)
{
        int i;

        for (i = 0; i < VEIL_TIER__COUNT; i++)
                cr_assert_eq(veil_tier_parse(veil_tier_name(i)), i);
        cr_assert_str_eq(veil_tier_name(VEIL_TIER_RESTRICTED), "restricted");
        cr_assert_eq(veil_tier_parse("secret"), VEIL_TIER_NONE);
        cr_assert_eq(veil_tier_parse(NULL), VEIL_TIER_NONE);
        cr_assert_eq(veil_tier_parse("Public"), VEIL_TIER_NONE);
        cr_assert_lt(VEIL_TIER_PUBLIC, VEIL_TIER_INTERNAL);
        cr_assert_lt(VEIL_TIER_CONFIDENTIAL, VEIL_TIER_RESTRICTED);
}

Test(policy, transform_names_round_trip)
{
        int i;

        for (i = 0; i < VEIL_TX__COUNT; i++)
                cr_assert_eq(veil_tx_parse(veil_tx_name(i)), i);
        cr_assert_eq(veil_tx_parse("redact_text"), VEIL_TX_REDACT_TEXT);
        cr_assert_eq(veil_tx_parse("tokenize"), -1);
        cr_assert_eq(veil_tx_parse(NULL), -1);
}

Test(policy, builtin_detectors)
{
        cr_assert_eq(veil_n_builtin_detectors, 18);
        cr_assert(veil_detector_is_builtin("us_ssn"));
        cr_assert(veil_detector_is_builtin("ipv6"));
        cr_assert(veil_detector_is_builtin("uk_nhs"));
        cr_assert(veil_detector_is_builtin("jwt"));
        cr_assert_not(veil_detector_is_builtin("ssn"));
        cr_assert_not(veil_detector_is_builtin(NULL));
}

/* ---- classification ------------------------------------------------ */

/* Strings inline: Criterion copies parameters into each test's process. */
struct classify_case {
        char path[24];
        char pii[16]; /* "-": no annotation */
        char tags[3][16];
        size_t n_tags;
        bool with_route;
        char want[16]; /* "": unclassified */
        enum veil_label_source src;
};

ParameterizedTestParameters(policy, classify)
{
        static struct classify_case cases[] = {
                /* The route's override beats the pii annotation and tags. */
                {"email",
                 "email",
                 {"PII"},
                 1,
                 true,
                 "notes",
                 VEIL_LABEL_OVERRIDE},
                {"address.zip",
                 "-",
                 {""},
                 0,
                 true,
                 "internal",
                 VEIL_LABEL_OVERRIDE},
                {"contacts[].phone",
                 "phone",
                 {""},
                 0,
                 true,
                 "restricted",
                 VEIL_LABEL_OVERRIDE},
                /* Without a route there are no overrides. */
                {"email", "email", {"PII"}, 1, false, "email", VEIL_LABEL_PII},
                /* pii beats tags. */
                {"ssn", "ssn", {"PII"}, 1, true, "ssn", VEIL_LABEL_PII},
                /* A tier name as annotation is a label like any other. */
                {"created_at",
                 "public",
                 {""},
                 0,
                 true,
                 "public",
                 VEIL_LABEL_PII},
                /* An undefined annotation is returned as is: `veil check`
                 * reports it and lookups fail closed. */
                {"x", "mystery", {""}, 0, true, "mystery", VEIL_LABEL_PII},
                /* Tags through tag_classes: the first tag that maps. */
                {"a", "-", {"PII"}, 1, true, "confidential", VEIL_LABEL_TAG},
                {"a",
                 "-",
                 {"UNKNOWN", "CARD", "PII"},
                 3,
                 true,
                 "card",
                 VEIL_LABEL_TAG},
                {"a",
                 "-",
                 {"PII", "CARD"},
                 2,
                 true,
                 "confidential",
                 VEIL_LABEL_TAG},
                {"a", "", {"SENSITIVE"}, 1, true, "restricted", VEIL_LABEL_TAG},
                /* Nothing: unclassified. */
                {"referrer", "-", {"UNKNOWN"}, 1, true, "", VEIL_LABEL_NONE},
                {"referrer", "-", {""}, 0, true, "", VEIL_LABEL_NONE},
                /* An override path matches exactly, not by prefix. */
                {"address.zip2", "-", {""}, 0, true, "", VEIL_LABEL_NONE},
                {"address", "-", {""}, 0, true, "", VEIL_LABEL_NONE},
        };

        return cr_make_param_array(struct classify_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct classify_case *c, policy, classify)
{
        const char *tags[3] = {c->tags[0], c->tags[1], c->tags[2]};
        struct veil_field_annotations ann = {.pii = strcmp(c->pii, "-") ? c->pii
                                                                        : NULL,
                                             .tags   = tags,
                                             .n_tags = c->n_tags};
        enum veil_label_source src        = (enum veil_label_source)99;
        const char *label;

        label = veil_policy_classify(policy, c->with_route ? route : NULL,
                                     c->path, &ann, &src);
        if (c->want[0])
                cr_assert_str_eq(label, c->want, "%s", c->path);
        else
                cr_assert_null(label, "%s got %s", c->path, label);
        cr_assert_eq(src, c->src, "%s", c->path);
}

Test(policy, classify_without_annotations)
{
        enum veil_label_source src = VEIL_LABEL_PII;

        cr_assert_str_eq(
                veil_policy_classify(policy, route, "address.zip", NULL, &src),
                "internal");
        cr_assert_eq(src, VEIL_LABEL_OVERRIDE);
        cr_assert_null(veil_policy_classify(policy, route, "nope", NULL, &src));
        cr_assert_eq(src, VEIL_LABEL_NONE);
        /* src may be NULL. */
        cr_assert_null(veil_policy_classify(policy, NULL, "nope", NULL, NULL));
}

Test(policy, label_tier)
{
        cr_assert_eq(veil_policy_label_tier(policy, "email"),
                     VEIL_TIER_CONFIDENTIAL);
        cr_assert_eq(veil_policy_label_tier(policy, "customer_id"),
                     VEIL_TIER_INTERNAL);
        cr_assert_eq(veil_policy_label_tier(policy, "restricted"),
                     VEIL_TIER_RESTRICTED);
        cr_assert_eq(veil_policy_label_tier(policy, "mystery"), VEIL_TIER_NONE);
        cr_assert_eq(veil_policy_label_tier(policy, NULL), VEIL_TIER_NONE);
}

/* ---- transform lookup ---------------------------------------------- */

struct lookup_case {
        char purpose[16];
        char label[16];
        int kind; /* -1: not licensed (NULL) */
};

ParameterizedTestParameters(policy, transform_lookup)
{
        static struct lookup_case cases[] = {
                /* A rule naming the class wins over its tier's rule. */
                {"analytics", "customer_id", VEIL_TX_HASH},
                {"analytics", "email", VEIL_TX_HASH},
                {"analytics", "card", VEIL_TX_MASK},
                /* Else the class's tier. */
                {"analytics", "phone", VEIL_TX_DROP},
                {"analytics", "notes", VEIL_TX_KEEP},
                /* A tier label looks up only its tier's rule. */
                {"analytics", "internal", VEIL_TX_KEEP},
                {"analytics", "public", VEIL_TX_KEEP},
                {"analytics", "confidential", VEIL_TX_DROP},
                /* Not in the licence: neither class nor tier listed. */
                {"analytics", "ssn", -1},
                {"analytics", "restricted", -1},
                {"marketing", "email", VEIL_TX_KEEP},
                {"marketing", "card", -1},
                {"marketing", "customer_id", -1},
                {"marketing", "internal", -1},
                {"marketing", "phone", -1},
                /* Undefined labels fail closed. */
                {"analytics", "mystery", -1},
        };

        return cr_make_param_array(struct lookup_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct lookup_case *c, policy, transform_lookup)
{
        const struct veil_purpose *purpose =
                veil_policy_purpose(policy, c->purpose);
        const struct veil_transform *tx;

        cr_assert_not_null(purpose);
        tx = veil_policy_transform(purpose, policy, c->label);
        if (c->kind < 0) {
                cr_assert_null(tx, "%s/%s licensed as %s", c->purpose, c->label,
                               tx ? veil_tx_name(tx->kind) : "");
                return;
        }
        cr_assert_not_null(tx, "%s/%s", c->purpose, c->label);
        cr_assert_eq(tx->kind, c->kind, "%s/%s: %s", c->purpose, c->label,
                     veil_tx_name(tx->kind));
}

Test(policy, transform_lookup_edges)
{
        const struct veil_purpose *analytics =
                veil_policy_purpose(policy, "analytics");

        cr_assert_null(veil_policy_transform(analytics, policy, NULL));
        cr_assert_null(veil_policy_transform(NULL, policy, "email"));
        cr_assert_eq(veil_policy_transform(analytics, policy, "card")
                             ->mask.keep_last,
                     4);
}

Test(policy, lookups)
{
        cr_assert_not_null(veil_policy_class(policy, "ssn"));
        cr_assert_null(veil_policy_class(policy, "restricted"));
        cr_assert_null(veil_policy_purpose(policy, "support"));
        cr_assert_null(veil_policy_route(policy, "orders"));
        cr_assert_null(veil_policy_detector(policy, "email"),
                       "built-ins are not policy detectors");
        cr_assert_eq(route->purposes[0].ref,
                     veil_policy_purpose(policy, "analytics"));
        cr_assert_str_eq(route->purposes[1].topic, "customers.marketing");
}

/* ---- licence validity -------------------------------------------------- */

Test(policy, licensed_through_valid_until)
{
        const struct veil_purpose *analytics =
                veil_policy_purpose(policy, "analytics");
        const struct veil_purpose *marketing =
                veil_policy_purpose(policy, "marketing");
        /* 2027-12-31 is valid through 23:59:59 UTC. */
        const int64_t end = 1830211200 + 86399;

        cr_assert_eq(analytics->valid_until, end);
        cr_assert(veil_purpose_licensed(analytics, 1700000000));
        cr_assert(veil_purpose_licensed(analytics, 1830211200));
        cr_assert(veil_purpose_licensed(analytics, end));
        cr_assert_not(veil_purpose_licensed(analytics, end + 1));
        cr_assert_not(veil_purpose_licensed(analytics, end + 86400 * 365));
        /* No valid_until: no expiry. */
        cr_assert_eq(marketing->valid_until, 0);
        cr_assert(veil_purpose_licensed(marketing, end + 86400 * 365));
        cr_assert_not(veil_purpose_licensed(NULL, 0));
}

Test(policy, expired_licence_is_named_with_its_last_day)
{
        const struct veil_purpose *analytics =
                veil_policy_purpose(policy, "analytics");
        const struct veil_purpose *marketing =
                veil_policy_purpose(policy, "marketing");
        const int64_t end = 1830211200 + 86399; /* 2027-12-31 23:59:59 */
        char msg[128]     = "untouched";

        cr_assert_not(
                veil_license_expired_msg(analytics, end, msg, sizeof(msg)));
        cr_assert_str_eq(msg, "untouched");
        cr_assert(
                veil_license_expired_msg(analytics, end + 1, msg, sizeof(msg)));
        cr_assert_str_eq(msg, "licence LIC-A expired on 2027-12-31");
        cr_assert(veil_license_expired_msg(analytics, end + 86400 * 400, msg,
                                           sizeof(msg)));
        cr_assert_str_eq(msg, "licence LIC-A expired on 2027-12-31");
        /* No valid_until: never expired. */
        cr_assert_not(veil_license_expired_msg(marketing, end + 86400 * 365,
                                               msg, sizeof(msg)));
}

/* ---- digest ---------------------------------------------------------- */

Test(policy, digest_ignores_order_and_formatting)
{
        struct veil_config *a = load(DATA "digest-a.yaml");
        struct veil_config *b = load(DATA "digest-b.yaml");
        size_t i;

        cr_assert_eq(strlen(a->policy.digest), 64);
        for (i = 0; i < 64; i++)
                cr_assert(strchr("0123456789abcdef", a->policy.digest[i]));
        cr_assert_str_eq(a->policy.digest, b->policy.digest);
        veil_config_destroy(a);
        veil_config_destroy(b);
}

Test(policy, digest_changes_with_a_transform)
{
        struct veil_config *a = load(DATA "digest-a.yaml");
        struct veil_config *c = load(DATA "digest-c.yaml");

        cr_assert_str_neq(a->policy.digest, c->policy.digest);
        veil_config_destroy(a);
        veil_config_destroy(c);
}

Test(policy, digest_recomputed_after_a_change)
{
        struct veil_config *a = load(DATA "digest-a.yaml");
        char before[65], err[256];
        struct veil_purpose *p = &a->policy.purposes[0];

        memcpy(before, a->policy.digest, sizeof(before));
        cr_assert_eq(veil_policy_digest(&a->policy, err, sizeof(err)), 0);
        cr_assert_str_eq(a->policy.digest, before, "deterministic");
        p->retention_ms += 1;
        cr_assert_eq(veil_policy_digest(&a->policy, err, sizeof(err)), 0);
        cr_assert_str_neq(a->policy.digest, before);
        p->retention_ms -= 1;
        free(p->license_id);
        p->license_id = strdup("LIC-2");
        cr_assert_eq(veil_policy_digest(&a->policy, err, sizeof(err)), 0);
        cr_assert_str_neq(a->policy.digest, before);
        veil_config_destroy(a);
}

Test(policy, digest_of_empty_policy)
{
        struct veil_policy empty = {0};
        char err[256];

        cr_assert_eq(veil_policy_digest(&empty, err, sizeof(err)), 0);
        cr_assert_eq(strlen(empty.digest), 64);
        cr_assert_str_neq(empty.digest, policy->digest);
        veil_policy_destroy(&empty);
        veil_policy_destroy(NULL);
}
