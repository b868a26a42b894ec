/* config.c - loads the one YAML file (DESIGN.md §5) with libyaml into a
 * struct veil_config; anything it does not understand is refused with
 * FILE:LINE:COL, the key path and, for near misses, a suggestion. */
#define _GNU_SOURCE
#include "config.h"
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

#define MAX_TOPIC_LEN 249
#define MASK_MAX_KEEP 1024
#define MAX_BATCH_RECORDS 10000000

/* State of one load: the document, where we are in it (for messages) and
 * what the later passes need to point at. */
struct loader {
        const char *file; /* as the caller named it: messages use it */
        const char *text;
        size_t text_len;
        yaml_document_t doc;
        bool have_doc;
        const struct veil_config_opts *opts;
        struct veil_config *config;
        rd_kafka_conf_t *kconf; /* throwaway, validates kafka: */
        yaml_node_t *keys_node, *key_file_node, *key_id_node, *active_node;
        yaml_node_t *ring_node;
        yaml_node_t **ring_nodes; /* the id of each keys.ring entry */
        char path[512];
        size_t path_len;
        char *errstr;
        size_t errstr_size;
};

/* A known key of a map: its handler gets the value node. Handlers run in
 * table order, not document order, so that `routes` can check names that
 * `classes` and `purposes` define wherever they appear in the file. */
struct key_spec {
        const char *name;
        int (*parse)(struct loader *ld, yaml_node_t *node, void *obj);
        bool required;
};

/* A user-named entry of a map (a class, a purpose, a kafka property…). */
typedef int (*entry_fn)(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                        void *obj);

/* ---------------------------------------------------------------------- */
/* Messages                                                                */

static size_t path_push(struct loader *ld, const char *key)
{
        size_t old = ld->path_len;
        int n      = snprintf(ld->path + old, sizeof(ld->path) - old, "%s%s",
                         old ? "." : "", key);

        if (n > 0)
                ld->path_len = old + (size_t)n < sizeof(ld->path)
                                       ? old + (size_t)n
                                       : sizeof(ld->path) - 1;
        return old;
}

static size_t path_push_index(struct loader *ld, size_t i)
{
        size_t old = ld->path_len;
        int n = snprintf(ld->path + old, sizeof(ld->path) - old, "[%zu]", i);

        if (n > 0)
                ld->path_len = old + (size_t)n < sizeof(ld->path)
                                       ? old + (size_t)n
                                       : sizeof(ld->path) - 1;
        return old;
}

static void path_pop(struct loader *ld, size_t old)
{
        ld->path_len  = old;
        ld->path[old] = '\0';
}

static int fail_at(struct loader *ld, size_t line, size_t col, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static int fail_at(struct loader *ld, size_t line, size_t col, const char *fmt,
                   ...)
{
        char msg[768];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return veil_errf(ld->errstr, ld->errstr_size, VEIL_ECONFIG,
                         "%s:%zu:%zu: %s%s%s", ld->file, line, col, ld->path,
                         ld->path_len ? ": " : "", msg);
}

/* "FILE:LINE:COL: key.path: message" at the node (1-based positions). */
static int fail(struct loader *ld, const yaml_node_t *node, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, const yaml_node_t *node, const char *fmt,
                ...)
{
        char msg[768];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return fail_at(ld, node ? node->start_mark.line + 1 : 1,
                       node ? node->start_mark.column + 1 : 1, "%s", msg);
}

/* "Did you mean": the closest candidate within edit distance 2. */
struct suggest {
        const char *word;
        const char *best;
        unsigned dist;
        char text[160];
};

static void suggest_init(struct suggest *sg, const char *word)
{
        sg->word    = word;
        sg->best    = NULL;
        sg->dist    = 3;
        sg->text[0] = '\0';
}

static void suggest_try(struct suggest *sg, const char *cand)
{
        unsigned d;

        if (!cand)
                return;
        d = veil_edit_distance(sg->word, cand, 2);
        if (d > 0 && d < sg->dist) {
                sg->dist = d;
                sg->best = cand;
        }
}

static const char *suggest_text(struct suggest *sg)
{
        if (sg->best)
                snprintf(sg->text, sizeof(sg->text), " (did you mean '%s'?)",
                         sg->best);
        return sg->text;
}

/* ---------------------------------------------------------------------- */
/* Nodes and scalars                                                       */

static yaml_node_t *node_at(struct loader *ld, int idx)
{
        return yaml_document_get_node(&ld->doc, idx);
}

static const char *scalar(const yaml_node_t *node)
{
        return (const char *)node->data.scalar.value;
}

static bool is_null(const yaml_node_t *node)
{
        const char *s;

        if (node->type != YAML_SCALAR_NODE ||
            node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        s = scalar(node);
        return !*s || !strcmp(s, "~") || !strcmp(s, "null") ||
               !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *kind_name(const yaml_node_t *node)
{
        switch (node->type) {
        case YAML_SCALAR_NODE:
                return is_null(node) ? "nothing" : "a scalar";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a map";
        default:
                return "nothing";
        }
}

static size_t map_size(const yaml_node_t *node)
{
        if (node->type != YAML_MAPPING_NODE)
                return 0;
        return (size_t)(node->data.mapping.pairs.top -
                        node->data.mapping.pairs.start);
}

/* A non-null scalar without NUL bytes (C strings cannot carry them). */
static int get_scalar(struct loader *ld, yaml_node_t *node, const char *what,
                      const char **out)
{
        if (node->type != YAML_SCALAR_NODE || is_null(node))
                return fail(ld, node, "expected %s, got %s", what,
                            kind_name(node));
        if (strlen(scalar(node)) != node->data.scalar.length)
                return fail(ld, node, "contains a NUL character");
        *out = scalar(node);
        return 0;
}

static int get_string(struct loader *ld, yaml_node_t *node, const char **out)
{
        int r = get_scalar(ld, node, "a string", out);

        if (r == 0 && !**out)
                return fail(ld, node, "expected a non-empty string");
        return r;
}

/* Replaces *dst by the node's string; a null node leaves NULL when
 * `nullable` (an optional setting explicitly left empty). */
static int set_string(struct loader *ld, yaml_node_t *node, char **dst,
                      bool nullable)
{
        const char *s;
        int r;

        if (nullable && is_null(node)) {
                free(*dst);
                *dst = NULL;
                return 0;
        }
        if ((r = get_string(ld, node, &s)))
                return r;
        free(*dst);
        *dst = veil_strdup(s);
        return 0;
}

static int get_int(struct loader *ld, yaml_node_t *node, int64_t min,
                   int64_t max, int64_t *out)
{
        const char *s;
        char *end;
        long long v;
        int r;

        if ((r = get_scalar(ld, node, "an integer", &s)))
                return r;
        errno = 0;
        v     = strtoll(s, &end, 10);
        if (!isdigit((unsigned char)s[s[0] == '-' || s[0] == '+']) || *end ||
            errno || v < min || v > max)
                return fail(ld, node,
                            "expected an integer from %lld to %lld, got '%s'",
                            (long long)min, (long long)max, s);
        *out = v;
        return 0;
}

static int get_bool(struct loader *ld, yaml_node_t *node, bool *out)
{
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[]  = {"false", "no", "off"};
        const char *s;
        size_t i;
        int r;

        if ((r = get_scalar(ld, node, "true or false", &s)))
                return r;
        for (i = 0; i < VEIL_ARRAY_SIZE(yes); i++) {
                if (!strcasecmp(s, yes[i])) {
                        *out = true;
                        return 0;
                }
                if (!strcasecmp(s, no[i])) {
                        *out = false;
                        return 0;
                }
        }
        return fail(ld, node, "expected true or false, got '%s'", s);
}

/* One of `names` (a NULL-terminated list) → its index. */
static int get_enum(struct loader *ld, yaml_node_t *node,
                    const char *const *names, int *out)
{
        struct suggest sg;
        char list[256] = "";
        const char *s;
        size_t len = 0;
        int i, r;

        if ((r = get_scalar(ld, node, "a name", &s)))
                return r;
        suggest_init(&sg, s);
        for (i = 0; names[i]; i++) {
                if (!strcmp(s, names[i])) {
                        *out = i;
                        return 0;
                }
                suggest_try(&sg, names[i]);
                len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                        i ? ", " : "", names[i]);
                if (len >= sizeof(list))
                        len = sizeof(list) - 1;
        }
        return fail(ld, node, "expected one of %s, got '%s'%s", list, s,
                    suggest_text(&sg));
}

static int get_duration(struct loader *ld, yaml_node_t *node, int64_t *msp)
{
        const char *s;
        int r;

        if ((r = get_scalar(ld, node, "a duration", &s)))
                return r;
        if (veil_duration_parse(s, msp))
                return fail(ld, node,
                            "invalid duration '%s' (expected e.g. 90d, 12h, "
                            "30m, 90s, 500ms or 1h30m)",
                            s);
        if (*msp <= 0)
                return fail(ld, node, "the duration must be more than 0");
        return 0;
}

/* Kafka's own rule: 1-249 of [a-zA-Z0-9._-]. */
static int get_topic(struct loader *ld, yaml_node_t *node, const char **out)
{
        const char *s, *p;
        int r;

        if ((r = get_string(ld, node, &s)))
                return r;
        for (p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' &&
                    *p != '-')
                        break;
        if (*p || strlen(s) > MAX_TOPIC_LEN || !strcmp(s, ".") ||
            !strcmp(s, ".."))
                return fail(ld, node,
                            "'%s' is not a valid topic name (1-249 of "
                            "a-z A-Z 0-9 . _ -)",
                            s);
        *out = s;
        return 0;
}

/* A path from the file: absolute as is, else against the file's folder. */
static char *resolve_path(struct loader *ld, const char *p)
{
        size_t n;
        char *r;

        if (p[0] == '/')
                return veil_strdup(p);
        n = strlen(ld->config->dir) + 1 + strlen(p) + 1;
        r = veil_malloc(n);
        snprintf(r, n, "%s/%s", ld->config->dir, p);
        return r;
}

/* ---------------------------------------------------------------------- */
/* Maps                                                                    */

/* Finds an earlier pair of `map` (before pair `upto`) with the same key. */
static yaml_node_t *earlier_key(struct loader *ld, yaml_node_t *map,
                                yaml_node_pair_t *upto, const char *key)
{
        yaml_node_pair_t *pair;

        for (pair = map->data.mapping.pairs.start; pair < upto; pair++) {
                yaml_node_t *k = node_at(ld, pair->key);

                if (k && k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), key))
                        return k;
        }
        return NULL;
}

/* Every key of a map must be a non-empty scalar and appear once. */
static int check_keys(struct loader *ld, yaml_node_t *map)
{
        yaml_node_pair_t *pair;

        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = node_at(ld, pair->key), *first;
                const char *name;
                size_t old;
                int r;

                if ((r = get_scalar(ld, k, "a name as key", &name)))
                        return r;
                first = earlier_key(ld, map, pair, name);
                if (!first)
                        continue;
                old = path_push(ld, name);
                r   = fail(ld, k, "duplicate key (first at line %zu)",
                           first->start_mark.line + 1);
                path_pop(ld, old);
                return r;
        }
        return 0;
}

/* A map whose keys are Veil's: unknown keys are errors (with a suggestion),
 * required ones must be there, handlers run in `specs` order. A null value
 * is an empty map. */
static int walk_map(struct loader *ld, yaml_node_t *map,
                    const struct key_spec *specs, void *obj)
{
        const struct key_spec *spec;
        yaml_node_pair_t *pair;
        int r;

        if (is_null(map)) {
                for (spec = specs; spec->name; spec++)
                        if (spec->required)
                                return fail(ld, map,
                                            "missing required key '%s'",
                                            spec->name);
                return 0;
        }
        if (map->type != YAML_MAPPING_NODE)
                return fail(ld, map, "expected a map, got %s", kind_name(map));
        if ((r = check_keys(ld, map)))
                return r;
        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k   = node_at(ld, pair->key);
                const char *name = scalar(k);
                struct suggest sg;
                size_t old;

                for (spec = specs; spec->name; spec++)
                        if (!strcmp(spec->name, name))
                                break;
                if (spec->name)
                        continue;
                suggest_init(&sg, name);
                for (spec = specs; spec->name; spec++)
                        suggest_try(&sg, spec->name);
                old = path_push(ld, name);
                r   = fail(ld, k, "unknown key%s", suggest_text(&sg));
                path_pop(ld, old);
                return r;
        }
        for (spec = specs; spec->name; spec++) {
                yaml_node_t *value = NULL;
                size_t old;

                for (pair = map->data.mapping.pairs.start;
                     pair < map->data.mapping.pairs.top; pair++)
                        if (!strcmp(scalar(node_at(ld, pair->key)), spec->name))
                                value = node_at(ld, pair->value);
                if (!value) {
                        if (spec->required)
                                return fail(ld, map,
                                            "missing required key '%s'",
                                            spec->name);
                        continue;
                }
                old = path_push(ld, spec->name);
                r   = spec->parse(ld, value, obj);
                path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* A map whose keys the user names: fn per entry, in document order. */
static int each_entry(struct loader *ld, yaml_node_t *map, entry_fn fn,
                      void *obj)
{
        yaml_node_pair_t *pair;
        int r;

        if (is_null(map))
                return 0;
        if (map->type != YAML_MAPPING_NODE)
                return fail(ld, map, "expected a map, got %s", kind_name(map));
        if ((r = check_keys(ld, map)))
                return r;
        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = node_at(ld, pair->key);
                size_t old     = path_push(ld, scalar(k));

                r = fn(ld, k, node_at(ld, pair->value), obj);
                path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

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
        suggest_init(&sg, label);
        for (i = 0; i < policy->n_classes; i++)
                suggest_try(&sg, policy->classes[i].name);
        for (i = 0; i < VEIL_TIER__COUNT; i++)
                suggest_try(&sg, veil_tier_name((enum veil_tier)i));
        return fail(ld, node, "'%s' is not a defined class or tier%s", label,
                    suggest_text(&sg));
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
        suggest_init(&sg, name);
        for (i = 0; i < veil_n_builtin_detectors; i++)
                suggest_try(&sg, veil_builtin_detectors[i]);
        for (i = 0; i < policy->n_detectors; i++)
                suggest_try(&sg, policy->detectors[i].name);
        return fail(ld, node, "unknown detector '%s'%s", name,
                    suggest_text(&sg));
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

        if ((r = set_string(ld, node, &def->pattern, false)))
                return r;
        /* Compile once here so that a syntax error (or a pattern matching
         * the empty string) is reported at its line. No extra flags: this
         * must never refuse what the detection engine (detect.c) accepts;
         * it reports anything flag-specific itself, naming the detector. */
        if (hs_compile(def->pattern, 0, HS_MODE_BLOCK, NULL, &db, &cerr) !=
            HS_SUCCESS) {
                r = fail(ld, node, "invalid pattern: %s",
                         cerr && cerr->message ? cerr->message
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

        if (veil_detector_is_builtin(scalar(key)))
                return fail(ld, key,
                            "'%s' is a built-in detector; give yours "
                            "another name",
                            scalar(key));
        def       = &policy->detectors[policy->n_detectors++];
        def->name = veil_strdup(scalar(key));
        return walk_map(ld, value, detector_specs, def);
}

static int parse_detectors(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.detectors =
                veil_calloc(map_size(node), sizeof(*config->policy.detectors));
        return each_entry(ld, node, detector_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* classes:                                                                */

static int parse_class_tier(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_class *cls = obj;
        struct suggest sg;
        const char *s;
        int i, r;

        if ((r = get_scalar(ld, node, "a tier name", &s)))
                return r;
        cls->tier = veil_tier_parse(s);
        if (cls->tier != VEIL_TIER_NONE)
                return 0;
        suggest_init(&sg, s);
        for (i = 0; i < VEIL_TIER__COUNT; i++)
                suggest_try(&sg, veil_tier_name((enum veil_tier)i));
        return fail(ld, node,
                    "'%s' is not a tier: public, internal, confidential or "
                    "restricted%s",
                    s, suggest_text(&sg));
}

static int parse_class_detector(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_class *cls = obj;
        const char *s;
        int r;

        if ((r = get_string(ld, node, &s)) || (r = check_detector(ld, node, s)))
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
        if (veil_tier_parse(scalar(key)) != VEIL_TIER_NONE)
                return fail(ld, key,
                            "'%s' is a tier name; a class needs a name of "
                            "its own",
                            scalar(key));
        cls       = &policy->classes[policy->n_classes++];
        cls->name = veil_strdup(scalar(key));
        cls->tier = VEIL_TIER_NONE;
        return walk_map(ld, value, class_specs, cls);
}

static int parse_classes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.classes =
                veil_calloc(map_size(node), sizeof(*config->policy.classes));
        return each_entry(ld, node, class_entry, &config->policy);
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

        if ((r = get_string(ld, value, &label)) ||
            (r = check_label(ld, value, label)))
                return r;
        tc        = &policy->tag_classes[policy->n_tag_classes++];
        tc->tag   = veil_strdup(scalar(key));
        tc->label = veil_strdup(label);
        return 0;
}

static int parse_tag_classes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.tag_classes = veil_calloc(
                map_size(node), sizeof(*config->policy.tag_classes));
        return each_entry(ld, node, tag_class_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* Transforms                                                              */

static int parse_mask_keep_last(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        int64_t v;
        int r;

        if ((r = get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
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

        if ((r = get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
                return r;
        tx->mask.keep_first = (int)v;
        return 0;
}

static int parse_mask_char(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        const char *s;
        int r;

        if ((r = get_scalar(ld, node, "one character", &s)))
                return r;
        /* One printable ASCII byte: a multi-byte character would change the
         * length of masked strings and could split UTF-8 sequences. */
        if (strlen(s) != 1 || !isprint((unsigned char)s[0]))
                return fail(ld, node, "expected one printable ASCII character");
        tx->mask.mask_char = s[0];
        return 0;
}

static int parse_mask_digits_only(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_transform *tx = obj;

        return get_bool(ld, node, &tx->mask.digits_only);
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

        return get_int(ld, node, 1, INT64_MAX, &tx->generalize.width);
}

static int parse_gen_prefix(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_transform *tx = obj;
        int64_t v;
        int r;

        if ((r = get_int(ld, node, 0, MASK_MAX_KEEP, &v)))
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

        if ((r = get_enum(ld, node, names, &v)))
                return r;
        tx->encrypt.mode = (enum veil_encrypt_mode)v;
        return 0;
}

static int parse_enc_output(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"string", "bytes", NULL};
        struct veil_transform *tx        = obj;
        int v, r;

        if ((r = get_enum(ld, node, names, &v)))
                return r;
        tx->encrypt.output = (enum veil_encrypt_output)v;
        return 0;
}

static int parse_enc_per_subject(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        return get_bool(ld, node,
                        &((struct veil_transform *)obj)->encrypt.per_subject);
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
                return fail(ld, node, "expected a string, got %s",
                            kind_name(node));
        s = is_null(node) ? "" : scalar(node);
        if (strlen(s) != node->data.scalar.length && !is_null(node))
                return fail(ld, node, "contains a NUL character");
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
                return fail(ld, node,
                            "expected a list of detector names, got %s",
                            kind_name(node));
        n = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        if (n == 0)
                return fail(ld, node,
                            "name at least one detector, or leave "
                            "'detectors' out to use all of them");
        tx->redact.detectors = veil_calloc(n, sizeof(char *));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                yaml_node_t *d = node_at(ld, *item);
                size_t old     = path_push_index(ld, i);
                const char *s;

                r = get_string(ld, d, &s);
                if (!r)
                        r = check_detector(ld, d, s);
                for (j = 0; !r && j < tx->redact.n_detectors; j++)
                        if (!strcmp(tx->redact.detectors[j], s))
                                r = fail(ld, d, "'%s' is listed twice", s);
                path_pop(ld, old);
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
        suggest_init(&sg, name);
        for (i = 0; i < VEIL_TX__COUNT; i++)
                suggest_try(&sg, veil_tx_name((enum veil_tx_kind)i));
        return fail(ld, node, "unknown transform '%s'%s", name,
                    suggest_text(&sg));
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
                if (map_size(node) != 1)
                        return fail(ld, node,
                                    "a transform map has exactly one key, "
                                    "the transform's name (got %zu)",
                                    map_size(node));
                knode  = node_at(ld, node->data.mapping.pairs.start->key);
                params = node_at(ld, node->data.mapping.pairs.start->value);
        } else if (node->type == YAML_SCALAR_NODE &&
                   (!is_null(node) || !strcmp(scalar(node), "null"))) {
                /* A plain `null` here is the transform of that name, not
                 * YAML's null: that is what a user writing it means. */
                knode = node;
        } else {
                return fail(ld, node,
                            "expected a transform name or a one-key map, got "
                            "%s",
                            kind_name(node));
        }
        if (knode->type != YAML_SCALAR_NODE)
                return fail(ld, knode, "expected a transform name, got %s",
                            kind_name(knode));
        name = scalar(knode);
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
                old = path_push(ld, name);
                r   = walk_map(ld, params, tx_specs[kind], tx);
                path_pop(ld, old);
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

        return set_string(ld, node, &purpose->license_id, false);
}

static int parse_license_valid_until(struct loader *ld, yaml_node_t *node,
                                     void *obj)
{
        struct veil_purpose *purpose = obj;
        const char *s;
        int64_t sec;
        int r;

        if ((r = get_scalar(ld, node, "a date (YYYY-MM-DD) or never", &s)))
                return r;
        /* A licence without an end is a decision, said in so many words:
         * 0 is "no end" for the policy, retention and `veil check`. */
        if (!strcmp(s, "never")) {
                purpose->valid_until = 0;
                return 0;
        }
        if (veil_date_parse(s, &sec))
                return fail(ld, node,
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
        if (is_null(node))
                return fail(ld, node,
                            "expected a map with 'id' and "
                            "'valid_until', got nothing");
        return walk_map(ld, node, license_specs, obj);
}

static int parse_purpose_retention(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        struct veil_purpose *purpose = obj;

        return get_duration(ld, node, &purpose->retention_ms);
}

static int rule_entry(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                      void *obj)
{
        struct veil_purpose *purpose = obj;
        struct veil_tx_rule *rule;
        int r;

        if ((r = check_label(ld, key, scalar(key))))
                return r;
        rule         = &purpose->rules[purpose->n_rules++];
        rule->target = veil_strdup(scalar(key));
        return parse_transform(ld, value, &rule->tx);
}

static int parse_purpose_transforms(struct loader *ld, yaml_node_t *node,
                                    void *obj)
{
        struct veil_purpose *purpose = obj;

        purpose->rules = veil_calloc(map_size(node), sizeof(*purpose->rules));
        return each_entry(ld, node, rule_entry, purpose);
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

        if ((r = get_string(ld, node, &s)))
                return r;
        if (!avro_dotted_ok(s))
                return fail(ld, node,
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

        if ((r = get_scalar(ld, node, "true, false or a string", &s)))
                return r;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (!strcasecmp(s, "true") || !strcasecmp(s, "false"))) {
                purpose->requires.kind    = VEIL_REQUIRES_BOOL;
                purpose->requires.boolean = !strcasecmp(s, "true");
                return 0;
        }
        if (!*s)
                return fail(ld, node,
                            "expected true, false or a non-empty string");
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
        if (is_null(node))
                return fail(ld, node,
                            "expected a map with 'field' and 'equals', got "
                            "nothing");
        return walk_map(ld, node, requires_specs, obj);
}

/* guard: { on_leak: redact | quarantine } */
static int parse_guard_on_leak(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"redact", "quarantine", NULL};
        struct veil_purpose *purpose     = obj;
        int v, r;

        if ((r = get_enum(ld, node, names, &v)))
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
        return walk_map(ld, node, guard_specs, obj);
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
        purpose->name = veil_strdup(scalar(key));
        return walk_map(ld, value, purpose_specs, purpose);
}

static int parse_purposes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->policy.purposes =
                veil_calloc(map_size(node), sizeof(*config->policy.purposes));
        return each_entry(ld, node, purpose_entry, &config->policy);
}

/* ---------------------------------------------------------------------- */
/* topics:                                                                 */

static int set_topic(struct loader *ld, yaml_node_t *node, char **dst)
{
        const char *s;
        int r;

        if ((r = get_topic(ld, node, &s)))
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
        return walk_map(ld, node, topics_specs, obj);
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

        if ((r = get_topic(ld, node, &s)))
                return r;
        for (i = 0; &policy->routes[i] != route; i++)
                if (!strcmp(policy->routes[i].source, s))
                        return fail(ld, node,
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

        if ((r = get_string(ld, node, &s)) || (r = check_label(ld, node, s)))
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

        purpose = veil_policy_purpose(policy, scalar(key));
        if (!purpose) {
                suggest_init(&sg, scalar(key));
                for (i = 0; i < policy->n_purposes; i++)
                        suggest_try(&sg, policy->purposes[i].name);
                return fail(ld, key, "no purpose named '%s'%s", scalar(key),
                            suggest_text(&sg));
        }
        if ((r = get_topic(ld, value, &topic)))
                return r;
        taken = topic_taken(ld, route, topic, buf, sizeof(buf));
        if (taken)
                return fail(ld, value, "topic '%s' is already %s%s", topic,
                            taken == buf ? "written by " : "", taken);
        rp          = &route->purposes[route->n_purposes++];
        rp->purpose = veil_strdup(purpose->name);
        rp->topic   = veil_strdup(topic);
        rp->ref     = purpose;
        return 0;
}

static int parse_route_purposes(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;

        route->purposes = veil_calloc(map_size(node), sizeof(*route->purposes));
        return each_entry(ld, node, route_purpose_entry, route);
}

static int classify_entry(struct loader *ld, yaml_node_t *key,
                          yaml_node_t *value, void *obj)
{
        struct veil_route *route = obj;
        struct veil_classify_override *co;
        const char *label;
        int r;

        if ((r = get_string(ld, value, &label)) ||
            (r = check_label(ld, value, label)))
                return r;
        co        = &route->classify[route->n_classify++];
        co->path  = veil_strdup(scalar(key));
        co->label = veil_strdup(label);
        return 0;
}

static int parse_route_classify(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;

        route->classify = veil_calloc(map_size(node), sizeof(*route->classify));
        return each_entry(ld, node, classify_entry, route);
}

/* accept: { records: [com.example.crm.Customer, ...] } */
static int parse_accept_records(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_route *route = obj;
        yaml_node_item_t *item;
        size_t n, i, j;
        int r;

        if (node->type != YAML_SEQUENCE_NODE)
                return fail(ld, node,
                            "expected a list of record full names, got %s",
                            kind_name(node));
        n = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        if (n == 0)
                return fail(ld, node,
                            "name at least one record, or leave 'accept' "
                            "out to accept every schema");
        route->accept_records = veil_calloc(n, sizeof(char *));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                yaml_node_t *d = node_at(ld, *item);
                size_t old     = path_push_index(ld, i);
                const char *s;

                r = get_string(ld, d, &s);
                if (!r && !avro_dotted_ok(s))
                        r = fail(ld, d,
                                 "'%s' is not an Avro full name (e.g. "
                                 "com.example.crm.Customer)",
                                 s);
                for (j = 0; !r && j < route->n_accept_records; j++)
                        if (!strcmp(route->accept_records[j], s))
                                r = fail(ld, d, "'%s' is listed twice", s);
                path_pop(ld, old);
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
        if (is_null(node))
                return fail(ld, node,
                            "expected a map with 'records', got nothing");
        return walk_map(ld, node, accept_specs, obj);
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

        if (is_null(node))
                return 0;
        if (node->type != YAML_SEQUENCE_NODE)
                return fail(ld, node, "expected a list of routes, got %s",
                            kind_name(node));
        n              = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        policy->routes = veil_calloc(n, sizeof(*policy->routes));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                size_t old = path_push_index(ld, i);

                /* Counted before parsing so destroy frees a half-read one. */
                policy->n_routes++;
                r = walk_map(ld, node_at(ld, *item), route_specs,
                             &policy->routes[i]);
                path_pop(ld, old);
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

        if ((r = get_scalar(ld, value,
                            "a value (librdkafka properties are "
                            "scalars)",
                            &v)))
                return r;
        kv        = &config->kafka[config->n_kafka++];
        kv->key   = veil_strdup(scalar(key));
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
        return fail(ld, res == RD_KAFKA_CONF_UNKNOWN ? key : value, "%s",
                    err[0] ? err : "rejected by librdkafka");
}

static int parse_kafka(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;

        config->kafka = veil_calloc(map_size(node), sizeof(*config->kafka));
        return each_entry(ld, node, kafka_entry, config);
}

/* ---------------------------------------------------------------------- */
/* group, instance, registry:                                              */

static int parse_group(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_string(ld, node, &((struct veil_config *)obj)->group, false);
}

static int parse_instance(struct loader *ld, yaml_node_t *node, void *obj)
{
        return set_string(ld, node, &((struct veil_config *)obj)->instance,
                          false);
}

static int parse_registry_url(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_registry_opts *reg = obj;
        char *joined, *real, *url;
        const char *s, *rest;
        size_t n;
        int r;

        if ((r = get_string(ld, node, &s)))
                return r;
        if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8) &&
            strncmp(s, "file://", 7))
                return fail(ld, node,
                            "expected an http://, https:// or file:// URL");
        free(reg->url);
        rest = s + 7;
        if (strncmp(s, "file://", 7) || rest[0] == '/') {
                reg->url = veil_strdup(s);
                return 0;
        }
        if (!*rest)
                return fail(ld, node, "file:// needs a directory");
        /* A relative file:// URL is relative to this file's folder, so the
         * config works from any working directory. */
        joined = resolve_path(ld, rest);
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
                return fail(ld, node, "expected \"user:password\", got %s",
                            kind_name(node));
        if ((r = set_string(ld, node, &reg->basic_auth, true)))
                return r;
        s = reg->basic_auth;
        if (s && !strchr(s, ':'))
                return fail(ld, node, "expected \"user:password\"");
        return 0;
}

static int parse_registry_ca_file(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        struct veil_registry_opts *reg = obj;
        const char *s;
        int r;

        if (is_null(node)) {
                free(reg->ca_file);
                reg->ca_file = NULL;
                return 0;
        }
        if ((r = get_string(ld, node, &s)))
                return r;
        free(reg->ca_file);
        reg->ca_file = resolve_path(ld, s);
        return 0;
}

static int parse_registry_timeout(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        return get_duration(ld, node,
                            &((struct veil_registry_opts *)obj)->timeout_ms);
}

static int parse_registry_retries(struct loader *ld, yaml_node_t *node,
                                  void *obj)
{
        int64_t v;
        int r;

        if ((r = get_int(ld, node, 0, 100, &v)))
                return r;
        ((struct veil_registry_opts *)obj)->retries = (int)v;
        return 0;
}

static int parse_registry_insecure(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        return get_bool(ld, node,
                        &((struct veil_registry_opts *)obj)->allow_insecure);
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

        if ((r = walk_map(ld, node, registry_specs, reg)))
                return r;
        if (!reg->url || reg->allow_insecure ||
            !veil_registry_url_insecure(reg->url))
                return 0;
        /* Schemas decide what each purpose receives: a man in the middle
         * of plain HTTP could relabel a field as public. */
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++)
                if (!strcmp(scalar(node_at(ld, pair->key)), "url"))
                        break;
        old = path_push(ld, "url");
        r   = fail(ld, node_at(ld, pair->value),
                   "plain http:// to a host other than this one (loopback): "
                     "use https://, or set registry.allow_insecure: true");
        path_pop(ld, old);
        return r;
}

/* ---------------------------------------------------------------------- */
/* keys:                                                                   */

static int parse_keys_file(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        const char *s;
        int r;

        if ((r = get_string(ld, node, &s)))
                return r;
        free(config->keys.hmac_key_file);
        config->keys.hmac_key_file = resolve_path(ld, s);
        ld->key_file_node          = node;
        return 0;
}

/* A key id, checked: it travels inside every token, seal and MAC, so it is
 * short and free of separators. */
static int get_key_id(struct loader *ld, yaml_node_t *node, const char **out)
{
        const char *s;
        int r;

        if ((r = get_string(ld, node, &s)))
                return r;
        if (!veil_key_id_valid(s, strlen(s)))
                return fail(ld, node, "a key id is 1-%d of a-z A-Z 0-9 _ -",
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

        if ((r = get_string(ld, node, &s)))
                return r;
        k->file = resolve_path(ld, s);
        return 0;
}

static int parse_ring_command(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_key *k = obj;
        const char *s;
        int r;

        /* Never echoed: a command line may carry a vault token. */
        if ((r = get_string(ld, node, &s)))
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

        if (!veil_key_id_valid(scalar(key), strlen(scalar(key))))
                return fail(ld, key, "a key id is 1-%d of a-z A-Z 0-9 _ -",
                            VEIL_KEY_ID_MAX);
        if (value->type != YAML_MAPPING_NODE)
                return fail(ld, value,
                            "expected { file: PATH } or { command: \"...\" }, "
                            "got %s",
                            kind_name(value));
        ld->ring_nodes[config->keys.n_ring] = key;
        k     = &config->keys.ring[config->keys.n_ring++];
        k->id = veil_strdup(scalar(key));
        if ((r = walk_map(ld, value, ring_specs, k)))
                return r;
        if (!k->file == !k->command)
                return fail(ld, value,
                            "a key has exactly one of 'file' and 'command'");
        return 0;
}

static int parse_keys_ring(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        size_t n                   = map_size(node);

        if (is_null(node) || !n)
                return fail(ld, node,
                            "expected a map of key ids, got "
                            "nothing");
        config->keys.ring = veil_calloc(n, sizeof(*config->keys.ring));
        ld->ring_nodes    = veil_calloc(n, sizeof(*ld->ring_nodes));
        ld->ring_node     = node;
        return each_entry(ld, node, ring_entry, config);
}

static int parse_keys_insecure(struct loader *ld, yaml_node_t *node, void *obj)
{
        return get_bool(
                ld, node,
                &((struct veil_config *)obj)->keys.allow_insecure_permissions);
}

static int parse_keys_timeout(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        int r;

        if ((r = get_duration(ld, node, &config->keys.command_timeout_ms)))
                return r;
        if (config->keys.command_timeout_ms <= 0)
                return fail(ld, node, "expected a duration above 0");
        return 0;
}

static int parse_keys_shared(struct loader *ld, yaml_node_t *node, void *obj)
{
        return get_bool(
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
                        return fail(ld, ld->key_file_node,
                                    "use either keys.ring or the one-key form "
                                    "(hmac_key_file, key_id), not both");
                if (ld->key_id_node)
                        return fail(ld, ld->key_id_node,
                                    "with keys.ring, the key of new tokens "
                                    "is keys.active");
                if (!ld->active_node) {
                        if (config->keys.n_ring > 1)
                                return fail(ld, node,
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
                return fail(ld, ld->active_node, "no key '%s' in keys.ring",
                            config->keys.key_id);
        }
        if (ld->active_node)
                return fail(ld, ld->active_node,
                            "keys.active names a key of keys.ring; the "
                            "one-key form uses key_id");
        return 0;
}

static int parse_keys(struct loader *ld, yaml_node_t *node, void *obj)
{
        int r;

        ld->keys_node = node;
        if ((r = walk_map(ld, node, keys_specs, obj)))
                return r;
        return check_keys_form(ld, node);
}

/* ---------------------------------------------------------------------- */
/* erasure:                                                                */

static int parse_erasure_plaintext(struct loader *ld, yaml_node_t *node,
                                   void *obj)
{
        return get_bool(ld, node,
                        &((struct veil_config *)obj)->erasure.allow_plaintext);
}

static const struct key_spec erasure_specs[] = {
        {"allow_plaintext", parse_erasure_plaintext, false},
        {NULL, NULL, false},
};

static int parse_erasure(struct loader *ld, yaml_node_t *node, void *obj)
{
        return walk_map(ld, node, erasure_specs, obj);
}

/* ---------------------------------------------------------------------- */
/* dlq, audit, metrics, log, commit_interval, max_batch_records, plugins   */

static int parse_dlq_payload(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"encrypted", "raw", NULL};
        int v, r;

        if ((r = get_enum(ld, node, names, &v)))
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
        return walk_map(ld, node, dlq_specs, obj);
}

static int parse_audit_level(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"record", "batch", "off", NULL};
        int v, r;

        if ((r = get_enum(ld, node, names, &v)))
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
        return walk_map(ld, node, audit_specs, obj);
}

static int parse_metrics_listen(struct loader *ld, yaml_node_t *node, void *obj)
{
        struct veil_config *config = obj;
        const char *colon;
        char *end;
        long port;
        int r;

        if ((r = set_string(ld, node, &config->metrics_listen, true)))
                return r;
        if (!config->metrics_listen)
                return 0;
        colon = strrchr(config->metrics_listen, ':');
        port  = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == config->metrics_listen || !colon[1] || *end ||
            port < 1 || port > 65535)
                return fail(ld, node,
                            "expected HOST:PORT (e.g. 127.0.0.1:9464)");
        return 0;
}

static const struct key_spec metrics_specs[] = {
        {"listen", parse_metrics_listen, false},
        {NULL, NULL, false},
};

static int parse_metrics(struct loader *ld, yaml_node_t *node, void *obj)
{
        return walk_map(ld, node, metrics_specs, obj);
}

static int parse_log_level(struct loader *ld, yaml_node_t *node, void *obj)
{
        static const char *const names[] = {"debug", "info", "warn", "error",
                                            NULL};
        struct veil_config *config       = obj;
        int v, r;

        if ((r = get_enum(ld, node, names, &v)))
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
        return walk_map(ld, node, log_specs, obj);
}

static int parse_commit_interval(struct loader *ld, yaml_node_t *node,
                                 void *obj)
{
        return get_duration(ld, node,
                            &((struct veil_config *)obj)->commit_interval_ms);
}

static int parse_max_batch(struct loader *ld, yaml_node_t *node, void *obj)
{
        return get_int(ld, node, 1, MAX_BATCH_RECORDS,
                       &((struct veil_config *)obj)->max_batch_records);
}

static int parse_threads(struct loader *ld, yaml_node_t *node, void *obj)
{
        return get_int(ld, node, 1, 64, &((struct veil_config *)obj)->threads);
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
        if (is_null(node))
                return 0;
        if (node->type != YAML_MAPPING_NODE)
                return fail(ld, node, "expected a map of settings, got %s",
                            kind_name(node));
        if ((r = check_keys(ld, node)))
                return r;
        fs->v = veil_calloc((size_t)(node->data.mapping.pairs.top -
                                     node->data.mapping.pairs.start) +
                                    1,
                            sizeof(*fs->v));
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k           = node_at(ld, pair->key);
                yaml_node_t *v           = node_at(ld, pair->value);
                struct veil_setting *set = &fs->v[fs->n];
                size_t old               = path_push(ld, scalar(k));
                const char *text;

                r = get_scalar(ld, v, "a scalar", &text);
                path_pop(ld, old);
                if (r)
                        return r;
                set->key   = veil_strdup(scalar(k));
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

        if (is_null(node))
                return 0;
        if (node->type != YAML_MAPPING_NODE)
                return fail(ld, node, "expected a map of filter names, got %s",
                            kind_name(node));
        if ((r = check_keys(ld, node)))
                return r;
        config->filters = veil_calloc((size_t)(node->data.mapping.pairs.top -
                                               node->data.mapping.pairs.start) +
                                              1,
                                      sizeof(*config->filters));
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = node_at(ld, pair->key);
                struct veil_filter_settings *fs =
                        &config->filters[config->n_filters++];
                size_t old = path_push(ld, scalar(k));

                fs->name = veil_strdup(scalar(k));
                r        = parse_settings(ld, node_at(ld, pair->value), fs);
                fs->line = (int)k->start_mark.line + 1;
                fs->col  = (int)k->start_mark.column + 1;
                path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* A bare name is left to dlopen's search path; anything with a slash is a
 * path relative to this file. */
static char *plugin_path(struct loader *ld, const char *s)
{
        return strchr(s, '/') ? resolve_path(ld, s) : veil_strdup(s);
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
                if ((r = get_string(ld, node, &s)))
                        return r;
                config->plugins[config->n_plugins++] = plugin_path(ld, s);
                return 0;
        }
        if ((r = check_keys(ld, node)))
                return r;
        for (pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k   = node_at(ld, pair->key);
                const char *name = scalar(k);

                if (!strcmp(name, "path"))
                        path = node_at(ld, pair->value);
                else if (!strcmp(name, "config"))
                        conf = node_at(ld, pair->value);
                else {
                        struct suggest sg;

                        suggest_init(&sg, name);
                        suggest_try(&sg, "path");
                        suggest_try(&sg, "config");
                        old = path_push(ld, name);
                        r   = fail(ld, k, "unknown key%s", suggest_text(&sg));
                        path_pop(ld, old);
                        return r;
                }
        }
        if (!path)
                return fail(ld, node, "missing required key 'path'");
        old = path_push(ld, "path");
        r   = get_string(ld, path, &s);
        path_pop(ld, old);
        if (r)
                return r;
        if (conf) {
                old = path_push(ld, "config");
                r   = parse_settings(ld, conf, fs);
                path_pop(ld, old);
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

        if (is_null(node))
                return 0;
        if (node->type != YAML_SEQUENCE_NODE)
                return fail(ld, node, "expected a list of paths, got %s",
                            kind_name(node));
        n               = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
        config->plugins = veil_calloc(n + 1, sizeof(char *));
        config->plugin_settings =
                veil_calloc(n + 1, sizeof(*config->plugin_settings));
        for (item = node->data.sequence.items.start, i = 0;
             item < node->data.sequence.items.top; item++, i++) {
                size_t old = path_push_index(ld, i);

                r = parse_plugin(ld, node_at(ld, *item), config);
                path_pop(ld, old);
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
                old = path_push(ld, where);
                if (ld->ring_node)
                        path_push(ld, k->id);
                if (active && env) {
                        if (env_len < VEIL_KEY_MIN_LEN) {
                                r = fail(ld, at,
                                         "the key in VEIL_HMAC_KEY is too "
                                         "short: %zu bytes, at least %d are "
                                         "required",
                                         env_len, VEIL_KEY_MIN_LEN);
                                path_pop(ld, old);
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
                        r = fail(ld, at, "%s", msg);
                        path_pop(ld, old);
                        return r;
                }
                path_pop(ld, old);
                if (active) {
                        config->keys.key     = k->key;
                        config->keys.key_len = k->len;
                }
        }
        return 0;
}

/* ---------------------------------------------------------------------- */
/* Loading                                                                 */

/* Line and column of a byte offset (libyaml gives only the offset for
 * reader errors such as invalid UTF-8). */
static void offset_mark(const char *text, size_t len, size_t off, size_t *line,
                        size_t *col)
{
        size_t i;

        *line = 1;
        *col  = 1;
        for (i = 0; i < off && i < len; i++) {
                if (text[i] == '\n') {
                        (*line)++;
                        *col = 1;
                } else {
                        (*col)++;
                }
        }
}

static int syntax_error(struct loader *ld, yaml_parser_t *parser)
{
        size_t line, col;

        if (parser->error == YAML_READER_ERROR) {
                offset_mark(ld->text, ld->text_len, parser->problem_offset,
                            &line, &col);
        } else {
                line = parser->problem_mark.line + 1;
                col  = parser->problem_mark.column + 1;
        }
        if (parser->context)
                return fail_at(ld, line, col,
                               "syntax error: %s (%s at line %zu, column %zu)",
                               parser->problem ? parser->problem : "invalid",
                               parser->context, parser->context_mark.line + 1,
                               parser->context_mark.column + 1);
        return fail_at(ld, line, col, "syntax error: %s",
                       parser->problem ? parser->problem : "invalid YAML");
}

static int parse_document(struct loader *ld)
{
        yaml_parser_t parser;
        yaml_document_t extra;
        yaml_node_t *root, *extra_root;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return fail_at(ld, 1, 1, "cannot initialize the YAML parser");
        yaml_parser_set_input_string(&parser, (const unsigned char *)ld->text,
                                     ld->text_len);
        if (!yaml_parser_load(&parser, &ld->doc)) {
                r = syntax_error(ld, &parser);
                goto out;
        }
        ld->have_doc = true;
        root         = yaml_document_get_root_node(&ld->doc);
        if (!root) {
                r = fail_at(ld, 1, 1,
                            "the file is empty (expected a map of settings)");
                goto out;
        }
        if (root->type != YAML_MAPPING_NODE) {
                r = fail(ld, root, "expected a map of settings, got %s",
                         kind_name(root));
                goto out;
        }
        /* A second document would be silently ignored: refuse it. */
        if (!yaml_parser_load(&parser, &extra)) {
                r = syntax_error(ld, &parser);
                goto out;
        }
        extra_root = yaml_document_get_root_node(&extra);
        if (extra_root)
                r = fail(ld, extra_root,
                         "a second YAML document; the config is one "
                         "document");
        yaml_document_delete(&extra);
out:
        yaml_parser_delete(&parser);
        return r;
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

        if (parse_document(&ld))
                goto err;
        if (walk_map(&ld, yaml_document_get_root_node(&ld.doc), top_specs,
                     config))
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
