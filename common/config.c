/* config.c - loads the one YAML file (DESIGN.md §5) with libyaml into a
 * struct veil_config; anything it does not understand is refused with
 * FILE:LINE:COL, the key path and, for near misses, a suggestion. This file
 * owns the section parsers and their key tables, keys, defaults, the
 * instance lock and the duration/date parsers; the YAML walker (messages,
 * typed getters, map walks) is config_yaml.c. */
#define _GNU_SOURCE
#include "config.h"
#include "config_yaml.h"
#include "registry.h"
#include "util.h"
#include "veil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <hs.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define MASK_MAX_KEEP 1024
#define MAX_BATCH_RECORDS 10000000

/* ---------------------------------------------------------------------- */
/* Labels, detectors                                                       */

static bool label_defined(struct loader *ld, const char *label)
{
        return veil_tier_parse(label) != VEIL_TIER_NONE ||
               veil_policy_class(&ld->config->policy, label);
}

/* A class or tier name, else an error at `node` naming the closest. */
static int check_label(struct loader *ld, yaml_node_t *node, const char *label)
{
        const struct veil_policy *policy = &ld->config->policy;
        struct suggest sg;
        size_t i;

        if (label_defined(ld, label))
                return 0;
        veil_yaml_suggest_init(&sg, label);
        for (i = 0; i < policy->n_classes; i++)
                veil_yaml_suggest_try(&sg, policy->classes[i].name);
        for (i = 0; i < VEIL_TIER__COUNT; i++)
                veil_yaml_suggest_try(&sg, veil_tier_name((enum veil_tier)i));
        return veil_yaml_fail(ld, node, "'%s' is not a defined class or tier%s",
                              label, veil_yaml_suggest_text(&sg));
}

static int check_detector(struct loader *ld, yaml_node_t *node,
                          const char *name)
{
        const struct veil_policy *policy = &ld->config->policy;
        struct suggest sg;
        size_t i;

        if (veil_detector_is_builtin(name) ||
            veil_policy_detector(policy, name))
                return 0;
        veil_yaml_suggest_init(&sg, name);
        for (i = 0; i < veil_n_builtin_detectors; i++)
                veil_yaml_suggest_try(&sg, veil_builtin_detectors[i]);
        for (i = 0; i < policy->n_detectors; i++)
                veil_yaml_suggest_try(&sg, policy->detectors[i].name);
        return veil_yaml_fail(ld, node, "unknown detector '%s'%s", name,
                              veil_yaml_suggest_text(&sg));
}

/* ---------------------------------------------------------------------- */
/* detectors:                                                              */

static int parse_detector_pattern(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_detector_def *def = obj;
        hs_compile_error_t *cerr      = NULL;
        hs_database_t *db             = NULL;
        int r;

        if ((r = veil_yaml_set_string(ld, node, &def->pattern, false)))
                return r;
        /* Compile once here so that a syntax error (or a pattern matching
         * the empty string) is reported at its line. No extra flags: this
         * must never refuse what the detection engine (detect.c) accepts;
         * it reports anything flag-specific itself, naming the detector. */
        if (hs_compile(def->pattern, 0, HS_MODE_BLOCK, NULL, &db, &cerr) !=
            HS_SUCCESS) {
                r = veil_yaml_fail(ld, node, "invalid pattern: %s",
                                   cerr && cerr->message
                                           ? cerr->message
                                           : "Hyperscan refused it");
                hs_free_compile_error(cerr);
                return r;
        }
        hs_free_database(db);
        return 0;
}

static const struct key_spec detector_specs[] = {
        {"pattern", parse_detector_pattern, true},
        {NULL, NULL, false},
};

static int detector_entry(struct loader *ld, yaml_node_t *key,
                          yaml_node_t *value, void *obj)
{
        struct veil_policy *policy = obj;
        struct veil_detector_def *def;

        if (veil_detector_is_builtin(veil_yaml_scalar(key)))
                return veil_yaml_fail(ld, key,
                                      "'%s' is a built-in detector; give yours "
                                      "another name",
                                      veil_yaml_scalar(key));
        def       = &policy->detectors[policy->n_detectors++];
        def->name = veil_strdup(veil_yaml_scalar(key));
        return veil_yaml_walk_map(ld, value, detector_specs, def);
}

static int parse_detectors(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.detectors = veil_calloc(
                veil_yaml_map_size(node), sizeof(*config->policy.detectors));
        return veil_yaml_each_entry(ld, node, detector_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* classes:                                                                */

static int parse_class_tier(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_class *cls = obj;
        struct suggest sg;
        const char *s;
        int i, r;

        if ((r = veil_yaml_get_scalar(ld, node, "a tier name", &s)))
                return r;
        cls->tier = veil_tier_parse(s);
        if (cls->tier != VEIL_TIER_NONE)
                return 0;
        veil_yaml_suggest_init(&sg, s);
        for (i = 0; i < VEIL_TIER__COUNT; i++)
                veil_yaml_suggest_try(&sg, veil_tier_name((enum veil_tier)i));
        return veil_yaml_fail(
                ld, node,
                "'%s' is not a tier: public, internal, confidential or "
                "restricted%s",
                s, veil_yaml_suggest_text(&sg));
}

static int parse_class_detector(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_class *cls = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)) ||
            (r = check_detector(ld, node, s)))
                return r;
        free(cls->detector);
        cls->detector = veil_strdup(s);
        return 0;
}

static const struct key_spec class_specs[] = {
        {"tier", parse_class_tier, true},
        {"detector", parse_class_detector, false},
        {NULL, NULL, false},
};

static int class_entry(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                       void *obj)
{
        struct veil_policy *policy = obj;
        struct veil_class *cls;

        /* A class named like a tier would make every label ambiguous. */
        if (veil_tier_parse(veil_yaml_scalar(key)) != VEIL_TIER_NONE)
                return veil_yaml_fail(
                        ld, key,
                        "'%s' is a tier name; a class needs a name of "
                        "its own",
                        veil_yaml_scalar(key));
        cls       = &policy->classes[policy->n_classes++];
        cls->name = veil_strdup(veil_yaml_scalar(key));
        cls->tier = VEIL_TIER_NONE;
        return veil_yaml_walk_map(ld, value, class_specs, cls);
}

static int parse_classes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.classes = veil_calloc(veil_yaml_map_size(node),
                                             sizeof(*config->policy.classes));
        return veil_yaml_each_entry(ld, node, class_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* tag_classes:                                                            */

static int tag_class_entry(struct loader *ld, yaml_node_t *key,
                           yaml_node_t *value, void *obj)
{
        struct veil_policy *policy = obj;
        struct veil_tag_class *tc;
        const char *label;
        int r;

        if ((r = veil_yaml_get_string(ld, value, &label)) ||
            (r = check_label(ld, value, label)))
                return r;
        tc        = &policy->tag_classes[policy->n_tag_classes++];
        tc->tag   = veil_strdup(veil_yaml_scalar(key));
        tc->label = veil_strdup(label);
        return 0;
}

static int parse_tag_classes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.tag_classes = veil_calloc(
                veil_yaml_map_size(node), sizeof(*config->policy.tag_classes));
        return veil_yaml_each_entry(ld, node, tag_class_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* Transforms                                                              */

static int parse_mask_keep_last(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        int64_t v;
        int r;

        if ((r = veil_yaml_get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
                return r;
        tx->mask.keep_last = (int)v;
        return 0;
}

static int parse_mask_keep_first(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        struct veil_transform *tx = obj;
        int64_t v;
        int r;

        if ((r = veil_yaml_get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
                return r;
        tx->mask.keep_first = (int)v;
        return 0;
}

static int parse_mask_char(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "one character", &s)))
                return r;
        /* One printable ASCII byte: a multi-byte character would change the
         * length of masked strings and could split UTF-8 sequences. */
        if (strlen(s) != 1 || !isprint((unsigned char)s[0]))
                return veil_yaml_fail(ld, node,
                                      "expected one printable ASCII character");
        tx->mask.mask_char = s[0];
        return 0;
}

static int parse_mask_digits_only(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_transform *tx = obj;

        return veil_yaml_get_bool(ld, node, &tx->mask.digits_only);
}

static const struct key_spec mask_specs[] = {
        {"keep_last", parse_mask_keep_last, false},
        {"keep_first", parse_mask_keep_first, false},
        {"char", parse_mask_char, false},
        {"digits_only", parse_mask_digits_only, false},
        {NULL, NULL, false},
};

static int parse_gen_width(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;

        return veil_yaml_get_int(ld, node, 1, INT64_MAX, &tx->generalize.width);
}

static int parse_gen_prefix(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        int64_t v;
        int r;

        if ((r = veil_yaml_get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
                return r;
        tx->generalize.prefix = (int)v;
        return 0;
}

static const struct key_spec generalize_specs[] = {
        {"width", parse_gen_width, false},
        {"prefix", parse_gen_prefix, false},
        {NULL, NULL, false},
};

static int parse_enc_mode(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"siv", "gcm", NULL};
        struct veil_transform *tx        = obj;
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        tx->encrypt.mode = (enum veil_encrypt_mode)v;
        return 0;
}

static int parse_enc_output(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"string", "bytes", NULL};
        struct veil_transform *tx        = obj;
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        tx->encrypt.output = (enum veil_encrypt_output)v;
        return 0;
}

static int parse_enc_per_subject(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        return veil_yaml_get_bool(
                ld, node, &((struct veil_transform *)obj)->encrypt.per_subject);
}

static const struct key_spec encrypt_specs[] = {
        {"mode", parse_enc_mode, false},
        {"per_subject", parse_enc_per_subject, false},
        {"output", parse_enc_output, false},
        {NULL, NULL, false},
};

static int parse_redact_replace(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        const char *s;

        /* Empty is allowed: it deletes the span. */
        if (node->type != YAML_SCALAR_NODE)
                return veil_yaml_fail(ld, node, "expected a string, got %s",
                                      veil_yaml_kind_name(node));
        s = veil_yaml_is_null(node) ? "" : veil_yaml_scalar(node);
        if (strlen(s) != node->data.scalar.length && !veil_yaml_is_null(node))
                return veil_yaml_fail(ld, node, "contains a NUL character");
        free(tx->redact.replace);
        tx->redact.replace = veil_strdup(s);
        return 0;
}

static int parse_redact_detectors(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_transform *tx = obj;
        yaml_node_item_t *item;
        size_t n, i, j;
        int r;

        if (node->type != YAML_SEQUENCE_NODE)
                return veil_yaml_fail(
                        ld, node, "expected a list of detector names, got %s",
                        veil_yaml_kind_name(node));
        n = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        if (n == 0)
                return veil_yaml_fail(ld, node,
                                      "name at least one detector, or leave "
                                      "'detectors' out to use all of them");
        tx->redact.detectors = veil_calloc(n, sizeof(char *));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                yaml_node_t *d = veil_yaml_node_at(ld, *item);
                size_t old     = veil_yaml_path_push_index(ld, i);
                const char *s;

                r = veil_yaml_get_string(ld, d, &s);
                if (!r)
                        r = check_detector(ld, d, s);
                for (j = 0; !r && j < tx->redact.n_detectors; j++)
                        if (!strcmp(tx->redact.detectors[j], s))
                                r = veil_yaml_fail(ld, d,
                                                   "'%s' is listed twice", s);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
                tx->redact.detectors[tx->redact.n_detectors++] = veil_strdup(s);
        }
        return 0;
}

static const struct key_spec redact_specs[] = {
        {"replace", parse_redact_replace, false},
        {"detectors", parse_redact_detectors, false},
        {NULL, NULL, false},
};

static const struct key_spec no_specs[] = {{NULL, NULL, false}};

static const struct key_spec *const tx_specs[VEIL_TX__COUNT] = {
        [VEIL_TX_KEEP]        = no_specs,
        [VEIL_TX_DROP]        = no_specs,
        [VEIL_TX_NULL]        = no_specs,
        [VEIL_TX_HASH]        = no_specs,
        [VEIL_TX_MASK]        = mask_specs,
        [VEIL_TX_GENERALIZE]  = generalize_specs,
        [VEIL_TX_ENCRYPT]     = encrypt_specs,
        [VEIL_TX_REDACT_TEXT] = redact_specs,
};

static int tx_kind(struct loader *ld, yaml_node_t *node, const char *name)
{
        struct suggest sg;
        int kind = veil_tx_parse(name), i;

        if (kind >= 0)
                return kind;
        veil_yaml_suggest_init(&sg, name);
        for (i = 0; i < VEIL_TX__COUNT; i++)
                veil_yaml_suggest_try(&sg, veil_tx_name((enum veil_tx_kind)i));
        return veil_yaml_fail(ld, node, "unknown transform '%s'%s", name,
                              veil_yaml_suggest_text(&sg));
}

/* `hash` or `{ mask: { keep_last: 4 } }` → *tx (owned by the rule). */
static int parse_transform(struct loader *ld, yaml_node_t *node,
                           struct veil_transform *tx)
{
        yaml_node_t *knode, *params = NULL;
        const char *name;
        size_t old;
        int kind, r;

        if (node->type == YAML_MAPPING_NODE) {
                if (veil_yaml_map_size(node) != 1)
                        return veil_yaml_fail(
                                ld, node,
                                "a transform map has exactly one key, "
                                "the transform's name (got %zu)",
                                veil_yaml_map_size(node));
                knode  = veil_yaml_node_at(ld,
                                           node->data.mapping.pairs.start->key);
                params = veil_yaml_node_at(
                        ld, node->data.mapping.pairs.start->value);
        } else if (node->type == YAML_SCALAR_NODE &&
                   (!veil_yaml_is_null(node) ||
                    !strcmp(veil_yaml_scalar(node), "null"))) {
                /* A plain `null` here is the transform of that name, not
                 * YAML's null: that is what a user writing it means. */
                knode = node;
        } else {
                return veil_yaml_fail(
                        ld, node,
                        "expected a transform name or a one-key map, got "
                        "%s",
                        veil_yaml_kind_name(node));
        }
        if (knode->type != YAML_SCALAR_NODE)
                return veil_yaml_fail(ld, knode,
                                      "expected a transform name, got %s",
                                      veil_yaml_kind_name(knode));
        name = veil_yaml_scalar(knode);
        if ((kind = tx_kind(ld, knode, name)) < 0)
                return kind;

        veil_transform_defaults(tx, (enum veil_tx_kind)kind);
        /* -1: not given, so the keep_last default applies only when
         * neither end of the mask is named (resolved below). */
        tx->mask.keep_last  = -1;
        tx->mask.keep_first = -1;
        if (kind == VEIL_TX_REDACT_TEXT)
                tx->redact.replace = veil_strdup("[{detector}]");
        if (params) {
                old = veil_yaml_path_push(ld, name);
                r   = veil_yaml_walk_map(ld, params, tx_specs[kind], tx);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        /* keep_last defaults to 4 only when neither end is given. */
        if (tx->mask.keep_last < 0 && tx->mask.keep_first < 0)
                tx->mask.keep_last = 4;
        if (tx->mask.keep_last < 0)
                tx->mask.keep_last = 0;
        if (tx->mask.keep_first < 0)
                tx->mask.keep_first = 0;
        return 0;
}

/* ---------------------------------------------------------------------- */
/* purposes:                                                               */

static int parse_license_id(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_purpose *purpose = obj;

        return veil_yaml_set_string(ld, node, &purpose->license_id, false);
}

static int parse_license_valid_until(struct loader *ld, yaml_node_t *node,
                                     void *obj)
{
        struct veil_purpose *purpose = obj;
        const char *s;
        int64_t sec;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "a date (YYYY-MM-DD) or never",
                                      &s)))
                return r;
        /* A licence without an end is a decision, said in so many words:
         * 0 is "no end" for the policy, retention and `veil check`. */
        if (!strcmp(s, "never")) {
                purpose->valid_until = 0;
                return 0;
        }
        if (veil_date_parse(s, &sec))
                return veil_yaml_fail(
                        ld, node,
                        "invalid date '%s' (expected a real date as "
                        "YYYY-MM-DD, or never)",
                        s);
        /* The licence is valid through that day, UTC. */
        purpose->valid_until = sec + 86400 - 1;
        return 0;
}

static const struct key_spec license_specs[] = {
        {"id", parse_license_id, true},
        {"valid_until", parse_license_valid_until, true},
        {NULL, NULL, false},
};

static int parse_purpose_license(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        if (veil_yaml_is_null(node))
                return veil_yaml_fail(ld, node,
                                      "expected a map with 'id' and "
                                      "'valid_until', got nothing");
        return veil_yaml_walk_map(ld, node, license_specs, obj);
}

static int parse_purpose_retention(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        struct veil_purpose *purpose = obj;

        return veil_yaml_get_duration(ld, node, &purpose->retention_ms);
}

static int rule_entry(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                      void *obj)
{
        struct veil_purpose *purpose = obj;
        struct veil_tx_rule *rule;
        int r;

        if ((r = check_label(ld, key, veil_yaml_scalar(key))))
                return r;
        rule         = &purpose->rules[purpose->n_rules++];
        rule->target = veil_strdup(veil_yaml_scalar(key));
        return parse_transform(ld, value, &rule->tx);
}

static int parse_purpose_transforms(struct loader *ld, yaml_node_t *node,
                                    void *obj)
{
        struct veil_purpose *purpose = obj;

        purpose->rules =
                veil_calloc(veil_yaml_map_size(node), sizeof(*purpose->rules));
        return veil_yaml_each_entry(ld, node, rule_entry, purpose);
}

/* An Avro full name or a dotted field path: segments of [A-Za-z_]
 * followed by [A-Za-z0-9_], joined by single dots. */
static bool avro_dotted_ok(const char *s)
{
        bool start = true;

        for (; *s; s++) {
                if (*s == '.') {
                        if (start)
                                return false;
                        start = true;
                        continue;
                }
                if (!(isalpha((unsigned char)*s) || *s == '_' ||
                      (!start && isdigit((unsigned char)*s))))
                        return false;
                start = false;
        }
        return !start;
}

/* requires: { field: "consents.marketing", equals: true } */
static int parse_requires_field(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_purpose *purpose = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        if (!avro_dotted_ok(s))
                return veil_yaml_fail(
                        ld, node,
                        "'%s' is not a field path (record field names "
                        "joined by '.', e.g. consents.marketing)",
                        s);
        free(purpose->requires.field);
        purpose->requires.field = veil_strdup(s);
        return 0;
}

/* A plain true/false is a boolean; anything else (quoted, or a bare word
 * such as an enum symbol) is compared as text. */
static int parse_requires_equals(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        struct veil_purpose *purpose = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "true, false or a string", &s)))
                return r;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (!strcasecmp(s, "true") || !strcasecmp(s, "false"))) {
                purpose->requires.kind    = VEIL_REQUIRES_BOOL;
                purpose->requires.boolean = !strcasecmp(s, "true");
                return 0;
        }
        if (!*s)
                return veil_yaml_fail(
                        ld, node, "expected true, false or a non-empty string");
        purpose->requires.kind = VEIL_REQUIRES_STRING;
        free(purpose->requires.string);
        purpose->requires.string = veil_strdup(s);
        return 0;
}

static const struct key_spec requires_specs[] = {
        {"field", parse_requires_field, true},
        {"equals", parse_requires_equals, true},
        {NULL, NULL, false},
};

static int parse_purpose_requires(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        if (veil_yaml_is_null(node))
                return veil_yaml_fail(
                        ld, node,
                        "expected a map with 'field' and 'equals', got "
                        "nothing");
        return veil_yaml_walk_map(ld, node, requires_specs, obj);
}

/* guard: { on_leak: redact | quarantine } */
static int parse_guard_on_leak(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"redact", "quarantine", NULL};
        struct veil_purpose *purpose     = obj;
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        purpose->guard.on_leak = (enum veil_on_leak)v;
        return 0;
}

static const struct key_spec guard_specs[] = {
        {"on_leak", parse_guard_on_leak, false},
        {NULL, NULL, false},
};

static int parse_purpose_guard(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_purpose *purpose = obj;

        purpose->guard.enabled = true;
        purpose->guard.on_leak = VEIL_LEAK_REDACT;
        return veil_yaml_walk_map(ld, node, guard_specs, obj);
}

static const struct key_spec purpose_specs[] = {
        {"license", parse_purpose_license, false},
        {"retention", parse_purpose_retention, false},
        {"transforms", parse_purpose_transforms, false},
        {"requires", parse_purpose_requires, false},
        {"guard", parse_purpose_guard, false},
        {NULL, NULL, false},
};

static int purpose_entry(struct loader *ld, yaml_node_t *key,
                         yaml_node_t *value, void *obj)
{
        struct veil_policy *policy = obj;
        struct veil_purpose *purpose;

        purpose       = &policy->purposes[policy->n_purposes++];
        purpose->name = veil_strdup(veil_yaml_scalar(key));
        return veil_yaml_walk_map(ld, value, purpose_specs, purpose);
}

static int parse_purposes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.purposes = veil_calloc(veil_yaml_map_size(node),
                                              sizeof(*config->policy.purposes));
        return veil_yaml_each_entry(ld, node, purpose_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* topics:                                                                 */

static int set_topic(struct loader *ld, yaml_node_t *node, char **dst)
{
        const char *s;
        int r;

        if ((r = veil_yaml_get_topic(ld, node, &s)))
                return r;
        free(*dst);
        *dst = veil_strdup(s);
        return 0;
}

static int parse_topic_dlq(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_topic(ld, node, &((struct veil_config *)obj)->topics.dlq);
}

static int parse_topic_audit(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_topic(ld, node, &((struct veil_config *)obj)->topics.audit);
}

static int parse_topic_ledger(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_topic(ld, node, &((struct veil_config *)obj)->topics.ledger);
}

static int parse_topic_subject_keys(struct loader *ld, yaml_node_t *node,
                                    void *obj)
{
        return set_topic(ld, node,
                         &((struct veil_config *)obj)->topics.subject_keys);
}

static int parse_topic_erasure(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_topic(ld, node,
                         &((struct veil_config *)obj)->topics.erasure);
}

static const struct key_spec topics_specs[] = {
        {"dlq", parse_topic_dlq, false},
        {"audit", parse_topic_audit, false},
        {"ledger", parse_topic_ledger, false},
        {"erasure", parse_topic_erasure, false},
        {"subject_keys", parse_topic_subject_keys, false},
        {NULL, NULL, false},
};

static int parse_topics(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, topics_specs, obj);
}

/* ---------------------------------------------------------------------- */
/* routes:                                                                 */

static int parse_route_source(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route   = obj;
        struct veil_policy *policy = &ld->config->policy;
        const char *s;
        size_t i;
        int r;

        if ((r = veil_yaml_get_topic(ld, node, &s)))
                return r;
        for (i = 0; &policy->routes[i] != route; i++)
                if (!strcmp(policy->routes[i].source, s))
                        return veil_yaml_fail(
                                ld, node,
                                "routes[%zu] already reads '%s'; one "
                                "route per source",
                                i, s);
        route->source = veil_strdup(s);
        return 0;
}

static int parse_route_key_class(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        struct veil_route *route = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)) ||
            (r = check_label(ld, node, s)))
                return r;
        route->key_class = veil_strdup(s);
        return 0;
}

/* Where else a purpose topic is already in use, or NULL. Two writers on
 * one topic would mix licences; writing to the source would loop. */
static const char *topic_taken(struct loader *ld,
                               const struct veil_route *route,
                               const char *topic, char *buf, size_t size)
{
        const struct veil_config *config = ld->config;
        const struct veil_policy *policy = &config->policy;
        const char *sys[] = {config->topics.dlq, config->topics.audit,
                             config->topics.ledger, config->topics.erasure,
                             config->topics.subject_keys};
        size_t i, j;

        if (!strcmp(topic, route->source))
                return "the route's own source";
        for (i = 0; i < VEIL_ARRAY_SIZE(sys); i++)
                if (!strcmp(topic, sys[i]))
                        return "one of Veil's own topics (topics:)";
        for (i = 0; i < policy->n_routes; i++) {
                const struct veil_route *other = &policy->routes[i];

                for (j = 0; j < other->n_purposes; j++) {
                        if (strcmp(other->purposes[j].topic, topic))
                                continue;
                        snprintf(buf, size, "routes[%zu].purposes.%s", i,
                                 other->purposes[j].purpose);
                        return buf;
                }
                if (other == route)
                        break;
        }
        return NULL;
}

static int route_purpose_entry(struct loader *ld, yaml_node_t *key,
                               yaml_node_t *value, void *obj)
{
        struct veil_route *route         = obj;
        const struct veil_policy *policy = &ld->config->policy;
        const struct veil_purpose *purpose;
        struct veil_route_purpose *rp;
        const char *topic, *taken;
        struct suggest sg;
        char buf[300];
        size_t i;
        int r;

        purpose = veil_policy_purpose(policy, veil_yaml_scalar(key));
        if (!purpose) {
                veil_yaml_suggest_init(&sg, veil_yaml_scalar(key));
                for (i = 0; i < policy->n_purposes; i++)
                        veil_yaml_suggest_try(&sg, policy->purposes[i].name);
                return veil_yaml_fail(ld, key, "no purpose named '%s'%s",
                                      veil_yaml_scalar(key),
                                      veil_yaml_suggest_text(&sg));
        }
        if ((r = veil_yaml_get_topic(ld, value, &topic)))
                return r;
        taken = topic_taken(ld, route, topic, buf, sizeof(buf));
        if (taken)
                return veil_yaml_fail(ld, value, "topic '%s' is already %s%s",
                                      topic, taken == buf ? "written by " : "",
                                      taken);
        rp          = &route->purposes[route->n_purposes++];
        rp->purpose = veil_strdup(purpose->name);
        rp->topic   = veil_strdup(topic);
        rp->ref     = purpose;
        return 0;
}

static int parse_route_purposes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;

        route->purposes =
                veil_calloc(veil_yaml_map_size(node), sizeof(*route->purposes));
        return veil_yaml_each_entry(ld, node, route_purpose_entry, route);
}

static int classify_entry(struct loader *ld, yaml_node_t *key,
                          yaml_node_t *value, void *obj)
{
        struct veil_route *route = obj;
        struct veil_classify_override *co;
        const char *label;
        int r;

        if ((r = veil_yaml_get_string(ld, value, &label)) ||
            (r = check_label(ld, value, label)))
                return r;
        co        = &route->classify[route->n_classify++];
        co->path  = veil_strdup(veil_yaml_scalar(key));
        co->label = veil_strdup(label);
        return 0;
}

static int parse_route_classify(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;

        route->classify =
                veil_calloc(veil_yaml_map_size(node), sizeof(*route->classify));
        return veil_yaml_each_entry(ld, node, classify_entry, route);
}

/* accept: { records: [com.example.crm.Customer, ...] } */
static int parse_accept_records(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;
        yaml_node_item_t *item;
        size_t n, i, j;
        int r;

        if (node->type != YAML_SEQUENCE_NODE)
                return veil_yaml_fail(
                        ld, node,
                        "expected a list of record full names, got %s",
                        veil_yaml_kind_name(node));
        n = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        if (n == 0)
                return veil_yaml_fail(
                        ld, node,
                        "name at least one record, or leave 'accept' "
                        "out to accept every schema");
        route->accept_records = veil_calloc(n, sizeof(char *));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                yaml_node_t *d = veil_yaml_node_at(ld, *item);
                size_t old     = veil_yaml_path_push_index(ld, i);
                const char *s;

                r = veil_yaml_get_string(ld, d, &s);
                if (!r && !avro_dotted_ok(s))
                        r = veil_yaml_fail(
                                ld, d,
                                "'%s' is not an Avro full name (e.g. "
                                "com.example.crm.Customer)",
                                s);
                for (j = 0; !r && j < route->n_accept_records; j++)
                        if (!strcmp(route->accept_records[j], s))
                                r = veil_yaml_fail(ld, d,
                                                   "'%s' is listed twice", s);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
                route->accept_records[route->n_accept_records++] =
                        veil_strdup(s);
        }
        return 0;
}

static const struct key_spec accept_specs[] = {
        {"records", parse_accept_records, true},
        {NULL, NULL, false},
};

static int parse_route_accept(struct loader *ld, yaml_node_t *node, void *obj)
{
        if (veil_yaml_is_null(node))
                return veil_yaml_fail(
                        ld, node, "expected a map with 'records', got nothing");
        return veil_yaml_walk_map(ld, node, accept_specs, obj);
}

static const struct key_spec route_specs[] = {
        {"source", parse_route_source, true},
        {"key_class", parse_route_key_class, false},
        {"purposes", parse_route_purposes, false},
        {"classify", parse_route_classify, false},
        {"accept", parse_route_accept, false},
        {NULL, NULL, false},
};

static int parse_routes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        struct veil_policy *policy = &config->policy;
        yaml_node_item_t *item;
        size_t n, i;
        int r;

        if (veil_yaml_is_null(node))
                return 0;
        if (node->type != YAML_SEQUENCE_NODE)
                return veil_yaml_fail(ld, node,
                                      "expected a list of routes, got %s",
                                      veil_yaml_kind_name(node));
        n              = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        policy->routes = veil_calloc(n, sizeof(*policy->routes));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                size_t old = veil_yaml_path_push_index(ld, i);

                /* Counted before parsing so destroy frees a half-read one. */
                policy->n_routes++;
                r = veil_yaml_walk_map(ld, veil_yaml_node_at(ld, *item),
                                       route_specs, &policy->routes[i]);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* ---------------------------------------------------------------------- */
/* kafka:                                                                  */

static int kafka_entry(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                       void *obj)
{
        struct veil_config *config = obj;
        rd_kafka_conf_res_t res;
        struct veil_kv *kv;
        char err[512];
        const char *v;
        int r;

        if ((r = veil_yaml_get_scalar(ld, value,
                                      "a value (librdkafka properties are "
                                      "scalars)",
                                      &v)))
                return r;
        kv        = &config->kafka[config->n_kafka++];
        kv->key   = veil_strdup(veil_yaml_scalar(key));
        kv->value = veil_strdup(v);
        if (ld->opts && ld->opts->skip_kafka_check)
                return 0;
        if (!ld->kconf)
                ld->kconf = rd_kafka_conf_new();
        err[0] = '\0';
        res    = rd_kafka_conf_set(ld->kconf, kv->key, kv->value, err,
                                   sizeof(err));
        if (res == RD_KAFKA_CONF_OK)
                return 0;
        /* Point at the key when librdkafka does not know it, else at the
         * value it refused; its own words say why. */
        return veil_yaml_fail(ld, res == RD_KAFKA_CONF_UNKNOWN ? key : value,
                              "%s", err[0] ? err : "rejected by librdkafka");
}

static int parse_kafka(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->kafka =
                veil_calloc(veil_yaml_map_size(node), sizeof(*config->kafka));
        return veil_yaml_each_entry(ld, node, kafka_entry, config);
}

/* ---------------------------------------------------------------------- */
/* group, instance, registry:                                              */

static int parse_group(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_set_string(ld, node,
                                    &((struct veil_config *)obj)->group, false);
}

static int parse_instance(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_set_string(
                ld, node, &((struct veil_config *)obj)->instance, false);
}

static int parse_registry_url(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_registry_opts *reg = obj;
        char *joined, *real, *url;
        const char *s, *rest;
        size_t n;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8) &&
            strncmp(s, "file://", 7))
                return veil_yaml_fail(
                        ld, node,
                        "expected an http://, https:// or file:// URL");
        free(reg->url);
        rest = s + 7;
        if (strncmp(s, "file://", 7) || rest[0] == '/') {
                reg->url = veil_strdup(s);
                return 0;
        }
        if (!*rest)
                return veil_yaml_fail(ld, node, "file:// needs a directory");
        /* A relative file:// URL is relative to this file's folder, so the
         * config works from any working directory. */
        joined = veil_yaml_resolve_path(ld, rest);
        real   = realpath(joined, NULL);
        n      = strlen(real ? real : joined) + 8;
        url    = veil_malloc(n);
        snprintf(url, n, "file://%s", real ? real : joined);
        free(real);
        free(joined);
        reg->url = url;
        return 0;
}

static int parse_registry_basic_auth(struct loader *ld, yaml_node_t *node,
                                     void *obj)
{
        struct veil_registry_opts *reg = obj;
        const char *s;
        int r;

        /* Never echo this value: it is a credential. */
        if (node->type != YAML_SCALAR_NODE)
                return veil_yaml_fail(ld, node,
                                      "expected \"user:password\", got %s",
                                      veil_yaml_kind_name(node));
        if ((r = veil_yaml_set_string(ld, node, &reg->basic_auth, true)))
                return r;
        s = reg->basic_auth;
        if (s && !strchr(s, ':'))
                return veil_yaml_fail(ld, node, "expected \"user:password\"");
        return 0;
}

static int parse_registry_ca_file(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_registry_opts *reg = obj;
        const char *s;
        int r;

        if (veil_yaml_is_null(node)) {
                free(reg->ca_file);
                reg->ca_file = NULL;
                return 0;
        }
        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        free(reg->ca_file);
        reg->ca_file = veil_yaml_resolve_path(ld, s);
        return 0;
}

static int parse_registry_timeout(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        return veil_yaml_get_duration(
                ld, node, &((struct veil_registry_opts *)obj)->timeout_ms);
}

static int parse_registry_retries(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        int64_t v;
        int r;

        if ((r = veil_yaml_get_int(ld, node, 0, 100, &v)))
                return r;
        ((struct veil_registry_opts *)obj)->retries = (int)v;
        return 0;
}

static int parse_registry_insecure(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        return veil_yaml_get_bool(
                ld, node, &((struct veil_registry_opts *)obj)->allow_insecure);
}

static const struct key_spec registry_specs[] = {
        {"url", parse_registry_url, true},
        {"allow_insecure", parse_registry_insecure, false},
        {"basic_auth", parse_registry_basic_auth, false},
        {"ca_file", parse_registry_ca_file, false},
        {"timeout", parse_registry_timeout, false},
        {"retries", parse_registry_retries, false},
        {NULL, NULL, false},
};

static int parse_registry(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_registry_opts *reg = &((struct veil_config *)obj)->registry;
        yaml_node_pair_t *pair;
        size_t old;
        int r;

        if ((r = veil_yaml_walk_map(ld, node, registry_specs, reg)))
                return r;
        if (!reg->url || reg->allow_insecure ||
            !veil_registry_url_insecure(reg->url))
                return 0;
        /* Schemas decide what each purpose receives: a man in the middle
         * of plain HTTP could relabel a field as public. */
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++)
                if (!strcmp(veil_yaml_scalar(veil_yaml_node_at(ld, pair->key)),
                            "url"))
                        break;
        old = veil_yaml_path_push(ld, "url");
        r   = veil_yaml_fail(
                  ld, veil_yaml_node_at(ld, pair->value),
                  "plain http:// to a host other than this one (loopback): "
                    "use https://, or set registry.allow_insecure: true");
        veil_yaml_path_pop(ld, old);
        return r;
}

/* ---------------------------------------------------------------------- */
/* keys:                                                                   */

static int parse_keys_file(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        free(config->keys.hmac_key_file);
        config->keys.hmac_key_file = veil_yaml_resolve_path(ld, s);
        ld->key_file_node          = node;
        return 0;
}

/* A key id, checked: it travels inside every token, seal and MAC, so it is
 * short and free of separators. */
static int get_key_id(struct loader *ld, yaml_node_t *node, const char **out)
{
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        if (!veil_key_id_valid(s, strlen(s)))
                return veil_yaml_fail(ld, node,
                                      "a key id is 1-%d of a-z A-Z 0-9 _ -",
                                      VEIL_KEY_ID_MAX);
        *out = s;
        return 0;
}

/* keys.key_id (a ring of one) and keys.active both name the active key;
 * the node says which form the file used. */
static int set_active_id(struct loader *ld, yaml_node_t *node,
                         struct veil_config *config, yaml_node_t **which)
{
        const char *s;
        int r;

        if ((r = get_key_id(ld, node, &s)))
                return r;
        free(config->keys.key_id);
        config->keys.key_id = veil_strdup(s);
        *which              = node;
        return 0;
}

static int parse_keys_id(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_active_id(ld, node, obj, &ld->key_id_node);
}

static int parse_keys_active(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_active_id(ld, node, obj, &ld->active_node);
}

static int parse_ring_file(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_key *k = obj;
        const char *s;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        k->file = veil_yaml_resolve_path(ld, s);
        return 0;
}

static int parse_ring_command(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_key *k = obj;
        const char *s;
        int r;

        /* Never echoed: a command line may carry a vault token. */
        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        k->command = veil_strdup(s);
        return 0;
}

static const struct key_spec ring_specs[] = {
        {"file", parse_ring_file, false},
        {"command", parse_ring_command, false},
        {NULL, NULL, false},
};

static int ring_entry(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                      void *obj)
{
        struct veil_config *config = obj;
        struct veil_key *k;
        int r;

        if (!veil_key_id_valid(veil_yaml_scalar(key),
                               strlen(veil_yaml_scalar(key))))
                return veil_yaml_fail(ld, key,
                                      "a key id is 1-%d of a-z A-Z 0-9 _ -",
                                      VEIL_KEY_ID_MAX);
        if (value->type != YAML_MAPPING_NODE)
                return veil_yaml_fail(
                        ld, value,
                        "expected { file: PATH } or { command: \"...\" }, "
                        "got %s",
                        veil_yaml_kind_name(value));
        ld->ring_nodes[config->keys.n_ring] = key;
        k     = &config->keys.ring[config->keys.n_ring++];
        k->id = veil_strdup(veil_yaml_scalar(key));
        if ((r = veil_yaml_walk_map(ld, value, ring_specs, k)))
                return r;
        if (!k->file == !k->command)
                return veil_yaml_fail(
                        ld, value,
                        "a key has exactly one of 'file' and 'command'");
        return 0;
}

static int parse_keys_ring(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        size_t n                   = veil_yaml_map_size(node);

        if (veil_yaml_is_null(node) || !n)
                return veil_yaml_fail(ld, node,
                                      "expected a map of key ids, got "
                                      "nothing");
        config->keys.ring = veil_calloc(n, sizeof(*config->keys.ring));
        ld->ring_nodes    = veil_calloc(n, sizeof(*ld->ring_nodes));
        ld->ring_node     = node;
        return veil_yaml_each_entry(ld, node, ring_entry, config);
}

static int parse_keys_insecure(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_get_bool(
                ld, node,
                &((struct veil_config *)obj)->keys.allow_insecure_permissions);
}

static int parse_keys_timeout(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        int r;

        if ((r = veil_yaml_get_duration(ld, node,
                                        &config->keys.command_timeout_ms)))
                return r;
        if (config->keys.command_timeout_ms <= 0)
                return veil_yaml_fail(ld, node, "expected a duration above 0");
        return 0;
}

static int parse_keys_shared(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_get_bool(
                ld, node,
                &((struct veil_config *)obj)->keys.shared_across_purposes);
}

static const struct key_spec keys_specs[] = {
        {"hmac_key_file", parse_keys_file, false},
        {"key_id", parse_keys_id, false},
        {"active", parse_keys_active, false},
        {"ring", parse_keys_ring, false},
        {"allow_insecure_permissions", parse_keys_insecure, false},
        {"command_timeout", parse_keys_timeout, false},
        {"shared_across_purposes", parse_keys_shared, false},
        {NULL, NULL, false},
};

/* The two forms do not mix: a ring names its keys, the legacy form is a
 * ring of one (hmac_key_file, key_id) made here. */
static int check_keys_form(struct loader *ld, yaml_node_t *node)
{
        struct veil_config *config = ld->config;
        size_t i;

        if (config->keys.ring) {
                if (ld->key_file_node)
                        return veil_yaml_fail(
                                ld, ld->key_file_node,
                                "use either keys.ring or the one-key form "
                                "(hmac_key_file, key_id), not both");
                if (ld->key_id_node)
                        return veil_yaml_fail(
                                ld, ld->key_id_node,
                                "with keys.ring, the key of new tokens "
                                "is keys.active");
                if (!ld->active_node) {
                        if (config->keys.n_ring > 1)
                                return veil_yaml_fail(
                                        ld, node,
                                        "missing required key 'active' "
                                        "(which ring key makes new "
                                        "tokens, seals and MACs)");
                        free(config->keys.key_id);
                        config->keys.key_id =
                                veil_strdup(config->keys.ring[0].id);
                }
                for (i = 0; i < config->keys.n_ring; i++)
                        if (!strcmp(config->keys.ring[i].id,
                                    config->keys.key_id))
                                return 0;
                return veil_yaml_fail(ld, ld->active_node,
                                      "no key '%s' in keys.ring",
                                      config->keys.key_id);
        }
        if (ld->active_node)
                return veil_yaml_fail(
                        ld, ld->active_node,
                        "keys.active names a key of keys.ring; the "
                        "one-key form uses key_id");
        return 0;
}

static int parse_keys(struct loader *ld, yaml_node_t *node, void *obj)
{
        int r;

        ld->keys_node = node;
        if ((r = veil_yaml_walk_map(ld, node, keys_specs, obj)))
                return r;
        return check_keys_form(ld, node);
}

/* ---------------------------------------------------------------------- */
/* erasure:                                                                */

static int parse_erasure_plaintext(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        return veil_yaml_get_bool(
                ld, node,
                &((struct veil_config *)obj)->erasure.allow_plaintext);
}

static const struct key_spec erasure_specs[] = {
        {"allow_plaintext", parse_erasure_plaintext, false},
        {NULL, NULL, false},
};

static int parse_erasure(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, erasure_specs, obj);
}

/* ---------------------------------------------------------------------- */
/* dlq, audit, metrics, log, commit_interval, max_batch_records, plugins   */

static int parse_dlq_payload(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"encrypted", "raw", NULL};
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        ((struct veil_config *)obj)->dlq_payload = (enum veil_dlq_payload)v;
        return 0;
}

static const struct key_spec dlq_specs[] = {
        {"payload", parse_dlq_payload, false},
        {NULL, NULL, false},
};

static int parse_dlq(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, dlq_specs, obj);
}

static int parse_audit_level(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"record", "batch", "off", NULL};
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        ((struct veil_config *)obj)->audit_level = (enum veil_audit_level)v;
        return 0;
}

static const struct key_spec audit_specs[] = {
        {"level", parse_audit_level, false},
        {NULL, NULL, false},
};

static int parse_audit(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, audit_specs, obj);
}

static int parse_metrics_listen(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        const char *colon;
        char *end;
        long port;
        int r;

        if ((r = veil_yaml_set_string(ld, node, &config->metrics_listen, true)))
                return r;
        if (!config->metrics_listen)
                return 0;
        colon = strrchr(config->metrics_listen, ':');
        port  = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == config->metrics_listen || !colon[1] || *end ||
            port < 1 || port > 65535)
                return veil_yaml_fail(
                        ld, node, "expected HOST:PORT (e.g. 127.0.0.1:9464)");
        return 0;
}

static const struct key_spec metrics_specs[] = {
        {"listen", parse_metrics_listen, false},
        {NULL, NULL, false},
};

static int parse_metrics(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, metrics_specs, obj);
}

static int parse_log_level(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"debug", "info", "warn", "error",
                                            NULL};
        struct veil_config *config       = obj;
        int v, r;

        if ((r = veil_yaml_get_enum(ld, node, names, &v)))
                return r;
        free(config->log_level);
        config->log_level = veil_strdup(names[v]);
        return 0;
}

static const struct key_spec log_specs[] = {
        {"level", parse_log_level, false},
        {NULL, NULL, false},
};

static int parse_log(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_walk_map(ld, node, log_specs, obj);
}

static int parse_commit_interval(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        return veil_yaml_get_duration(
                ld, node, &((struct veil_config *)obj)->commit_interval_ms);
}

static int parse_max_batch(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_get_int(
                ld, node, 1, MAX_BATCH_RECORDS,
                &((struct veil_config *)obj)->max_batch_records);
}

static int parse_threads(struct loader *ld, yaml_node_t *node, void *obj)
{
        return veil_yaml_get_int(ld, node, 1, 64,
                                 &((struct veil_config *)obj)->threads);
}

/* A map of scalars into settings (values checked later by the filter's
 * own table). */
static int parse_settings(struct loader *ld, yaml_node_t *node,
                          struct veil_filter_settings *fs)
{
        yaml_node_pair_t *pair;
        int r;

        fs->line = (int)node->start_mark.line + 1;
        fs->col  = (int)node->start_mark.column + 1;
        if (veil_yaml_is_null(node))
                return 0;
        if (node->type != YAML_MAPPING_NODE)
                return veil_yaml_fail(ld, node,
                                      "expected a map of settings, got %s",
                                      veil_yaml_kind_name(node));
        if ((r = veil_yaml_check_keys(ld, node)))
                return r;
        fs->v = veil_calloc((size_t)(node->data.mapping.pairs.top -
                                     node->data.mapping.pairs.start) +
                                    1,
                            sizeof(*fs->v));
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k           = veil_yaml_node_at(ld, pair->key);
                yaml_node_t *v           = veil_yaml_node_at(ld, pair->value);
                struct veil_setting *set = &fs->v[fs->n];
                size_t old = veil_yaml_path_push(ld, veil_yaml_scalar(k));
                const char *text;

                r = veil_yaml_get_scalar(ld, v, "a scalar", &text);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
                set->key   = veil_strdup(veil_yaml_scalar(k));
                set->value = veil_strdup(text);
                set->line  = (int)v->start_mark.line + 1;
                set->col   = (int)v->start_mark.column + 1;
                fs->n++;
        }
        return 0;
}

static int parse_filters(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        yaml_node_pair_t *pair;
        int r;

        if (veil_yaml_is_null(node))
                return 0;
        if (node->type != YAML_MAPPING_NODE)
                return veil_yaml_fail(ld, node,
                                      "expected a map of filter names, got %s",
                                      veil_yaml_kind_name(node));
        if ((r = veil_yaml_check_keys(ld, node)))
                return r;
        config->filters = veil_calloc((size_t)(node->data.mapping.pairs.top -
                                               node->data.mapping.pairs.start) +
                                              1,
                                      sizeof(*config->filters));
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = veil_yaml_node_at(ld, pair->key);
                struct veil_filter_settings *fs =
                        &config->filters[config->n_filters++];
                size_t old = veil_yaml_path_push(ld, veil_yaml_scalar(k));

                fs->name = veil_strdup(veil_yaml_scalar(k));
                r = parse_settings(ld, veil_yaml_node_at(ld, pair->value), fs);
                fs->line = (int)k->start_mark.line + 1;
                fs->col  = (int)k->start_mark.column + 1;
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* A bare name is left to dlopen's search path; anything with a slash is a
 * path relative to this file. */
static char *plugin_path(struct loader *ld, const char *s)
{
        return strchr(s, '/') ? veil_yaml_resolve_path(ld, s) : veil_strdup(s);
}

/* One `plugins:` entry: a path, or { path: …, config: { … } }. */
static int parse_plugin(struct loader *ld, yaml_node_t *node,
                        struct veil_config *config)
{
        struct veil_filter_settings *fs =
                &config->plugin_settings[config->n_plugins];
        yaml_node_t *path = NULL, *conf = NULL;
        yaml_node_pair_t *pair;
        const char *s;
        size_t old;
        int r;

        if (node->type != YAML_MAPPING_NODE) {
                if ((r = veil_yaml_get_string(ld, node, &s)))
                        return r;
                config->plugins[config->n_plugins++] = plugin_path(ld, s);
                return 0;
        }
        if ((r = veil_yaml_check_keys(ld, node)))
                return r;
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k   = veil_yaml_node_at(ld, pair->key);
                const char *name = veil_yaml_scalar(k);

                if (!strcmp(name, "path"))
                        path = veil_yaml_node_at(ld, pair->value);
                else if (!strcmp(name, "config"))
                        conf = veil_yaml_node_at(ld, pair->value);
                else {
                        struct suggest sg;

                        veil_yaml_suggest_init(&sg, name);
                        veil_yaml_suggest_try(&sg, "path");
                        veil_yaml_suggest_try(&sg, "config");
                        old = veil_yaml_path_push(ld, name);
                        r   = veil_yaml_fail(ld, k, "unknown key%s",
                                             veil_yaml_suggest_text(&sg));
                        veil_yaml_path_pop(ld, old);
                        return r;
                }
        }
        if (!path)
                return veil_yaml_fail(ld, node, "missing required key 'path'");
        old = veil_yaml_path_push(ld, "path");
        r   = veil_yaml_get_string(ld, path, &s);
        veil_yaml_path_pop(ld, old);
        if (r)
                return r;
        if (conf) {
                old = veil_yaml_path_push(ld, "config");
                r   = parse_settings(ld, conf, fs);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        config->plugins[config->n_plugins++] = plugin_path(ld, s);
        return 0;
}

static int parse_plugins(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        yaml_node_item_t *item;
        size_t n, i;
        int r;

        if (veil_yaml_is_null(node))
                return 0;
        if (node->type != YAML_SEQUENCE_NODE)
                return veil_yaml_fail(ld, node,
                                      "expected a list of paths, got %s",
                                      veil_yaml_kind_name(node));
        n               = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        config->plugins = veil_calloc(n + 1, sizeof(char *));
        config->plugin_settings =
                veil_calloc(n + 1, sizeof(*config->plugin_settings));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                size_t old = veil_yaml_path_push_index(ld, i);

                r = parse_plugin(ld, veil_yaml_node_at(ld, *item), config);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* The top level, in dependency order: names are defined before use. */
static const struct key_spec top_specs[] = {
        {"detectors", parse_detectors, false},
        {"classes", parse_classes, false},
        {"tag_classes", parse_tag_classes, false},
        {"purposes", parse_purposes, false},
        {"topics", parse_topics, false},
        {"routes", parse_routes, false},
        {"kafka", parse_kafka, false},
        {"group", parse_group, false},
        {"instance", parse_instance, false},
        {"registry", parse_registry, false},
        {"keys", parse_keys, false},
        {"erasure", parse_erasure, false},
        {"dlq", parse_dlq, false},
        {"audit", parse_audit, false},
        {"metrics", parse_metrics, false},
        {"log", parse_log, false},
        {"commit_interval", parse_commit_interval, false},
        {"max_batch_records", parse_max_batch, false},
        {"threads", parse_threads, false},
        {"plugins", parse_plugins, false},
        {"filters", parse_filters, false},
        {NULL, NULL, false},
};

/* ---------------------------------------------------------------------- */
/* The key                                                                 */

/* Makes the legacy form (hmac_key_file + key_id, or VEIL_HMAC_KEY alone)
 * a ring of one, so everything after this sees one shape. */
static void ring_of_one(struct loader *ld)
{
        struct veil_config *config = ld->config;

        if (config->keys.ring)
                return;
        config->keys.ring       = veil_calloc(1, sizeof(*config->keys.ring));
        ld->ring_nodes          = veil_calloc(1, sizeof(*ld->ring_nodes));
        ld->ring_nodes[0]       = ld->key_file_node;
        config->keys.n_ring     = 1;
        config->keys.ring[0].id = veil_strdup(config->keys.key_id);
        if (config->keys.hmac_key_file)
                config->keys.ring[0].file =
                        veil_strdup(config->keys.hmac_key_file);
}

/* Reads every key of the ring; VEIL_HMAC_KEY, when set, is the active
 * key's material. Messages point at the key's entry in the file. */
static int load_keys(struct loader *ld)
{
        struct veil_config *config = ld->config;
        const unsigned char *env;
        char msg[768];
        size_t i, env_len = 0, old;
        int r;

        env = veil_keyring_env_key(&env_len);
        for (i = 0; i < config->keys.n_ring; i++) {
                struct veil_key *k = &config->keys.ring[i];
                bool active        = !strcmp(k->id, config->keys.key_id);
                yaml_node_t *at    = ld->ring_nodes[i];
                const char *where;

                if (!at)
                        at = ld->keys_node
                                     ? ld->keys_node
                                     : yaml_document_get_root_node(&ld->doc);
                if (ld->ring_node)
                        where = "keys.ring";
                else
                        where = ld->key_file_node ? "keys.hmac_key_file"
                                                  : "keys";
                old = veil_yaml_path_push(ld, where);
                if (ld->ring_node)
                        veil_yaml_path_push(ld, k->id);
                if (active && env) {
                        if (env_len < VEIL_KEY_MIN_LEN) {
                                r = veil_yaml_fail(
                                        ld, at,
                                        "the key in VEIL_HMAC_KEY is too "
                                        "short: %zu bytes, at least %d are "
                                        "required",
                                        env_len, VEIL_KEY_MIN_LEN);
                                veil_yaml_path_pop(ld, old);
                                return r;
                        }
                        k->key = veil_malloc(env_len);
                        memcpy(k->key, env, env_len);
                        k->len = env_len;
                } else if (k->file) {
                        r = veil_key_read_file(
                                k->file,
                                config->keys.allow_insecure_permissions,
                                &k->key, &k->len, msg, sizeof(msg));
                } else if (k->command) {
                        r = veil_key_run_command(
                                k->id, k->command, config->dir,
                                config->keys.command_timeout_ms, &k->key,
                                &k->len, msg, sizeof(msg));
                } else {
                        r = veil_errf(msg, sizeof(msg), VEIL_ECONFIG,
                                      "no key: set keys.hmac_key_file, "
                                      "keys.ring or the VEIL_HMAC_KEY "
                                      "environment variable");
                }
                if (!k->key) {
                        r = veil_yaml_fail(ld, at, "%s", msg);
                        veil_yaml_path_pop(ld, old);
                        return r;
                }
                veil_yaml_path_pop(ld, old);
                if (active) {
                        config->keys.key     = k->key;
                        config->keys.key_len = k->len;
                }
        }
        return 0;
}

static char *config_dir(const char *path)
{
        char *real = realpath(path, NULL), *slash, *dir;

        if (!real)
                return NULL;
        slash = strrchr(real, '/');
        if (slash == real)
                dir = veil_strdup("/");
        else
                dir = veil_strndup(real, (size_t)(slash - real));
        free(real);
        return dir;
}

static void set_defaults(struct veil_config *config)
{
        config->group                   = veil_strdup("veil");
        config->keys.key_id             = veil_strdup("k1");
        config->keys.command_timeout_ms = VEIL_KEY_COMMAND_TIMEOUT_MS;
        config->registry.timeout_ms     = 5000;
        config->registry.retries        = 3;
        config->topics.dlq              = veil_strdup("veil.dlq");
        config->topics.audit            = veil_strdup("veil.audit");
        config->topics.ledger           = veil_strdup("veil.retention");
        config->topics.erasure          = veil_strdup("veil.erasure");
        config->topics.subject_keys     = veil_strdup("veil.subject-keys");
        config->dlq_payload             = VEIL_DLQ_ENCRYPTED;
        config->audit_level             = VEIL_AUDIT_RECORD;
        config->log_level               = veil_strdup("info");
        config->commit_interval_ms      = 100;
        config->max_batch_records       = 10000;
}

static void default_instance(struct veil_config *config)
{
        char host[256];

        if (config->instance)
                return;
        if (gethostname(host, sizeof(host)) || !host[0])
                snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        config->instance       = veil_strdup(host);
}

struct veil_config *veil_config_load(const char *path,
                                     const struct veil_config_opts *opts,
                                     char *errstr, size_t errstr_size)
{
        struct loader ld = {0};
        struct veil_config *config;
        char *text;
        size_t len = 0;

        text = veil_file_read(path, &len, errstr, errstr_size);
        if (!text)
                return NULL;
        config         = veil_calloc(1, sizeof(*config));
        ld.file        = path;
        ld.text        = text;
        ld.text_len    = len;
        ld.opts        = opts;
        ld.config      = config;
        ld.errstr      = errstr;
        ld.errstr_size = errstr_size;
        config->path   = veil_strdup(path);
        config->dir    = config_dir(path);
        if (!config->dir) {
                veil_errf(errstr, errstr_size, VEIL_EIO, "%s: %s", path,
                          strerror(errno));
                goto err;
        }
        set_defaults(config);

        if (veil_yaml_parse_document(&ld))
                goto err;
        if (veil_yaml_walk_map(&ld, yaml_document_get_root_node(&ld.doc),
                               top_specs, config))
                goto err;
        default_instance(config);
        ring_of_one(&ld);
        if (!(opts && opts->skip_key) && load_keys(&ld))
                goto err;
        if (veil_policy_digest(&config->policy, errstr, errstr_size))
                goto err;

        if (ld.kconf)
                rd_kafka_conf_destroy(ld.kconf);
        if (ld.have_doc)
                yaml_document_delete(&ld.doc);
        free(ld.ring_nodes);
        free(text);
        return config;

err:
        if (ld.kconf)
                rd_kafka_conf_destroy(ld.kconf);
        if (ld.have_doc)
                yaml_document_delete(&ld.doc);
        free(ld.ring_nodes);
        free(text);
        veil_config_destroy(config);
        return NULL;
}

static void settings_free(struct veil_filter_settings *fs)
{
        size_t i;

        for (i = 0; i < fs->n; i++) {
                free(fs->v[i].key);
                free(fs->v[i].value);
        }
        free(fs->v);
        free(fs->name);
}

void veil_config_destroy(struct veil_config *config)
{
        size_t i;

        if (!config)
                return;
        free(config->path);
        free(config->dir);
        for (i = 0; i < config->n_kafka; i++) {
                free(config->kafka[i].key);
                /* Values may be credentials (sasl.password). */
                OPENSSL_cleanse(config->kafka[i].value,
                                strlen(config->kafka[i].value));
                free(config->kafka[i].value);
        }
        free(config->kafka);
        free(config->group);
        free(config->instance);
        free(config->registry.url);
        if (config->registry.basic_auth)
                OPENSSL_cleanse(config->registry.basic_auth,
                                strlen(config->registry.basic_auth));
        free(config->registry.basic_auth);
        free(config->registry.ca_file);
        free(config->keys.hmac_key_file);
        free(config->keys.key_id);
        /* keys.key points into the ring: wiped and freed there. */
        for (i = 0; i < config->keys.n_ring; i++)
                veil_key_clear(&config->keys.ring[i]);
        free(config->keys.ring);
        veil_policy_destroy(&config->policy);
        free(config->topics.dlq);
        free(config->topics.audit);
        free(config->topics.ledger);
        free(config->topics.erasure);
        free(config->topics.subject_keys);
        free(config->metrics_listen);
        free(config->log_level);
        for (i = 0; i < config->n_plugins; i++)
                free(config->plugins[i]);
        free(config->plugins);
        for (i = 0; config->plugin_settings && i < config->n_plugins; i++)
                settings_free(&config->plugin_settings[i]);
        free(config->plugin_settings);
        for (i = 0; i < config->n_filters; i++)
                settings_free(&config->filters[i]);
        free(config->filters);
        free(config);
}

/* ---------------------------------------------------------------------- */
/* The instance lock                                                       */

/* -1 whatever veil_errf returned: the lock returns a descriptor. */
static int lock_fail(int rc)
{
        (void)rc;
        return -1;
}

int veil_instance_lock(const struct veil_config *config, char *errstr,
                       size_t errstr_size)
{
        const char *dir = getenv("VEIL_LOCK_DIR");
        char path[PATH_MAX], name[512];
        size_t i;
        int fd, n;

        if (!dir || !*dir)
                dir = getenv("XDG_RUNTIME_DIR");
        if (!dir || !*dir)
                dir = "/tmp";
        /* The identity in a file name: anything but [A-Za-z0-9._-] → '_'
         * (the group and instance are free text). */
        n = snprintf(name, sizeof(name), "veil-%s-%s.lock", config->group,
                     config->instance);
        if (n < 0 || (size_t)n >= sizeof(name))
                return lock_fail(
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "group and instance names are too long "
                                  "for a lock file name"));
        for (i = 5; name[i]; i++)
                if (!isalnum((unsigned char)name[i]) && name[i] != '.' &&
                    name[i] != '-')
                        name[i] = '_';
        n = snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof(path))
                return lock_fail(veil_errf(errstr, errstr_size, VEIL_EIO,
                                           "lock directory path too long: %s",
                                           dir));
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return lock_fail(
                        veil_errf(errstr, errstr_size, VEIL_EIO,
                                  "cannot open the instance lock %s: %s "
                                  "(set VEIL_LOCK_DIR to a writable folder)",
                                  path, strerror(errno)));
        if (flock(fd, LOCK_EX | LOCK_NB)) {
                int err = errno;

                close(fd);
                if (err == EWOULDBLOCK)
                        return lock_fail(veil_errf(
                                errstr, errstr_size, VEIL_ECONFIG,
                                "another worker on this host already runs "
                                "as instance '%s' of group '%s' (lock %s): "
                                "both would use transactional.id %s-%s and "
                                "fence each other; give each worker its own "
                                "`instance:`",
                                config->instance, config->group, path,
                                config->group, config->instance));
                return lock_fail(veil_errf(errstr, errstr_size, VEIL_EIO,
                                           "cannot lock %s: %s", path,
                                           strerror(err)));
        }
        return fd;
}

/* ---------------------------------------------------------------------- */
/* Durations and dates                                                     */

int veil_duration_parse(const char *s, int64_t *msp)
{
        /* Largest unit first; each at most once, in this order. */
        static const struct {
                const char *name;
                int64_t ms;
        } units[] = {
                {"d", 86400000}, {"h", 3600000}, {"ms", 1},
                {"m", 60000},    {"s", 1000},
        };
        static const int rank[] = {0, 1, 4, 2, 3}; /* d h ms m s */
        int64_t total           = 0, n, v;
        int last                = -1, i;
        const char *p           = s;

        if (!s || !*s)
                return VEIL_EINVAL;
        while (*p) {
                if (!isdigit((unsigned char)*p))
                        return VEIL_EINVAL;
                for (n = 0; isdigit((unsigned char)*p); p++) {
                        if (n > (INT64_MAX - (*p - '0')) / 10)
                                return VEIL_EINVAL;
                        n = n * 10 + (*p - '0');
                }
                for (i = 0; i < (int)VEIL_ARRAY_SIZE(units); i++)
                        if (!strncmp(p, units[i].name, strlen(units[i].name)))
                                break;
                if (i == (int)VEIL_ARRAY_SIZE(units) || rank[i] <= last)
                        return VEIL_EINVAL;
                last = rank[i];
                p += strlen(units[i].name);
                if (n > INT64_MAX / units[i].ms)
                        return VEIL_EINVAL;
                v = n * units[i].ms;
                if (total > INT64_MAX - v)
                        return VEIL_EINVAL;
                total += v;
        }
        *msp = total;
        return 0;
}

int veil_date_parse(const char *s, int64_t *secp)
{
        static const int mdays[] = {31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        struct tm tm             = {0};
        int y, m, d, i, days;
        time_t t;

        if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
                return VEIL_EINVAL;
        for (i = 0; i < 10; i++)
                if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
                        return VEIL_EINVAL;
        y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
            (s[3] - '0');
        m = (s[5] - '0') * 10 + (s[6] - '0');
        d = (s[8] - '0') * 10 + (s[9] - '0');
        if (y < 1970 || m < 1 || m > 12 || d < 1)
                return VEIL_EINVAL;
        days = mdays[m - 1];
        if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                days = 29;
        if (d > days)
                return VEIL_EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon  = m - 1;
        tm.tm_mday = d;
        t          = timegm(&tm);
        if (t == (time_t)-1)
                return VEIL_EINVAL;
        *secp = (int64_t)t;
        return 0;
}

/* ---------------------------------------------------------------------- */
/* The tables, for `veil config-reference`                                 */

/* Where each table above applies. `*` stands for a name the user chooses
 * (a class, a purpose, a transform's target), `[]` for a list item. A new
 * table goes here too, so the generated reference shows it. */
static const struct {
        const char *section;
        const struct key_spec *specs;
} doc_tables[] = {
        {"", top_specs},
        {"detectors.*", detector_specs},
        {"classes.*", class_specs},
        {"purposes.*", purpose_specs},
        {"purposes.*.license", license_specs},
        {"purposes.*.requires", requires_specs},
        {"purposes.*.guard", guard_specs},
        {"purposes.*.transforms.*.mask", mask_specs},
        {"purposes.*.transforms.*.generalize", generalize_specs},
        {"purposes.*.transforms.*.encrypt", encrypt_specs},
        {"purposes.*.transforms.*.redact_text", redact_specs},
        {"topics", topics_specs},
        {"routes[]", route_specs},
        {"routes[].accept", accept_specs},
        {"registry", registry_specs},
        {"keys", keys_specs},
        {"keys.ring.*", ring_specs},
        {"erasure", erasure_specs},
        {"dlq", dlq_specs},
        {"audit", audit_specs},
        {"metrics", metrics_specs},
        {"log", log_specs},
};

void veil_config_each_key(veil_config_key_fn fn, void *arg)
{
        const struct key_spec *spec;
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(doc_tables); i++)
                for (spec = doc_tables[i].specs; spec->name; spec++)
                        fn(doc_tables[i].section, spec->name, spec->required,
                           arg);
}

const char *veil_config_kafka(const struct veil_config *config, const char *key)
{
        size_t i;

        for (i = 0; i < config->n_kafka; i++)
                if (!strcmp(config->kafka[i].key, key))
                        return config->kafka[i].value;
        return NULL;
}
