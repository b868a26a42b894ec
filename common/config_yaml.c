/* config_yaml.c - the config loader's YAML walker: the libyaml document,
 * errors as FILE:LINE:COL plus the key path (with "did you mean"), typed
 * getters for scalars (strings, integers, booleans, enums, durations, topic
 * names, paths), and the walk of a map against its table of known keys.
 * The section parsers and their tables are in config.c. */
#define _GNU_SOURCE
#include "config_yaml.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config.h"
#include "util.h"
#include "veil.h"

/* ---------------------------------------------------------------------- */
/* Messages                                                                */

size_t veil_yaml_path_push(struct loader *ld, const char *key)
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

size_t veil_yaml_path_push_index(struct loader *ld, size_t i)
{
        size_t old = ld->path_len;
        int n = snprintf(ld->path + old, sizeof(ld->path) - old, "[%zu]", i);

        if (n > 0)
                ld->path_len = old + (size_t)n < sizeof(ld->path)
                                       ? old + (size_t)n
                                       : sizeof(ld->path) - 1;
        return old;
}

void veil_yaml_path_pop(struct loader *ld, size_t old)
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

int veil_yaml_fail(struct loader *ld, const yaml_node_t *node, const char *fmt,
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

void veil_yaml_suggest_init(struct suggest *sg, const char *word)
{
        sg->word    = word;
        sg->best    = NULL;
        sg->dist    = 3;
        sg->text[0] = '\0';
}

void veil_yaml_suggest_try(struct suggest *sg, const char *cand)
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

const char *veil_yaml_suggest_text(struct suggest *sg)
{
        if (sg->best)
                snprintf(sg->text, sizeof(sg->text), " (did you mean '%s'?)",
                         sg->best);
        return sg->text;
}

/* ---------------------------------------------------------------------- */
/* Nodes and scalars                                                       */

yaml_node_t *veil_yaml_node_at(struct loader *ld, int idx)
{
        return yaml_document_get_node(&ld->doc, idx);
}

const char *veil_yaml_scalar(const yaml_node_t *node)
{
        return (const char *)node->data.scalar.value;
}

bool veil_yaml_is_null(const yaml_node_t *node)
{
        const char *s;

        if (node->type != YAML_SCALAR_NODE ||
            node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        s = veil_yaml_scalar(node);
        return !*s || !strcmp(s, "~") || !strcmp(s, "null") ||
               !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *veil_yaml_kind_name(const yaml_node_t *node)
{
        switch (node->type) {
        case YAML_SCALAR_NODE:
                return veil_yaml_is_null(node) ? "nothing" : "a scalar";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a map";
        default:
                return "nothing";
        }
}

size_t veil_yaml_map_size(const yaml_node_t *node)
{
        if (node->type != YAML_MAPPING_NODE)
                return 0;
        return (size_t)(node->data.mapping.pairs.top -
                        node->data.mapping.pairs.start);
}

/* A non-null scalar without NUL bytes (C strings cannot carry them). */
int veil_yaml_get_scalar(struct loader *ld, yaml_node_t *node, const char *what,
                         const char **out)
{
        if (node->type != YAML_SCALAR_NODE || veil_yaml_is_null(node))
                return veil_yaml_fail(ld, node, "expected %s, got %s", what,
                                      veil_yaml_kind_name(node));
        if (strlen(veil_yaml_scalar(node)) != node->data.scalar.length)
                return veil_yaml_fail(ld, node, "contains a NUL character");
        *out = veil_yaml_scalar(node);
        return 0;
}

int veil_yaml_get_string(struct loader *ld, yaml_node_t *node, const char **out)
{
        int r = veil_yaml_get_scalar(ld, node, "a string", out);

        if (r == 0 && !**out)
                return veil_yaml_fail(ld, node, "expected a non-empty string");
        return r;
}

/* Replaces *dst by the node's string; a null node leaves NULL when
 * `nullable` (an optional setting explicitly left empty). */
int veil_yaml_set_string(struct loader *ld, yaml_node_t *node, char **dst,
                         bool nullable)
{
        const char *s;
        int r;

        if (nullable && veil_yaml_is_null(node)) {
                free(*dst);
                *dst = NULL;
                return 0;
        }
        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        free(*dst);
        *dst = veil_strdup(s);
        return 0;
}

int veil_yaml_get_int(struct loader *ld, yaml_node_t *node, int64_t min,
                      int64_t max, int64_t *out)
{
        const char *s;
        char *end;
        long long v;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "an integer", &s)))
                return r;
        errno = 0;
        v     = strtoll(s, &end, 10);
        if (!isdigit((unsigned char)s[s[0] == '-' || s[0] == '+']) || *end ||
            errno || v < min || v > max)
                return veil_yaml_fail(
                        ld, node,
                        "expected an integer from %lld to %lld, got '%s'",
                        (long long)min, (long long)max, s);
        *out = v;
        return 0;
}

int veil_yaml_get_bool(struct loader *ld, yaml_node_t *node, bool *out)
{
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[]  = {"false", "no", "off"};
        const char *s;
        size_t i;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "true or false", &s)))
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
        return veil_yaml_fail(ld, node, "expected true or false, got '%s'", s);
}

/* One of `names` (a NULL-terminated list) → its index. */
int veil_yaml_get_enum(struct loader *ld, yaml_node_t *node,
                       const char *const *names, int *out)
{
        struct suggest sg;
        char list[256] = "";
        const char *s;
        size_t len = 0;
        int i, r;

        if ((r = veil_yaml_get_scalar(ld, node, "a name", &s)))
                return r;
        veil_yaml_suggest_init(&sg, s);
        for (i = 0; names[i]; i++) {
                if (!strcmp(s, names[i])) {
                        *out = i;
                        return 0;
                }
                veil_yaml_suggest_try(&sg, names[i]);
                len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                        i ? ", " : "", names[i]);
                if (len >= sizeof(list))
                        len = sizeof(list) - 1;
        }
        return veil_yaml_fail(ld, node, "expected one of %s, got '%s'%s", list,
                              s, veil_yaml_suggest_text(&sg));
}

int veil_yaml_get_duration(struct loader *ld, yaml_node_t *node, int64_t *msp)
{
        const char *s;
        int r;

        if ((r = veil_yaml_get_scalar(ld, node, "a duration", &s)))
                return r;
        if (veil_duration_parse(s, msp))
                return veil_yaml_fail(
                        ld, node,
                        "invalid duration '%s' (expected e.g. 90d, 12h, "
                        "30m, 90s, 500ms or 1h30m)",
                        s);
        if (*msp <= 0)
                return veil_yaml_fail(ld, node,
                                      "the duration must be more than 0");
        return 0;
}

/* Kafka's own rule: 1-249 of [a-zA-Z0-9._-]. */
int veil_yaml_get_topic(struct loader *ld, yaml_node_t *node, const char **out)
{
        const char *s, *p;
        int r;

        if ((r = veil_yaml_get_string(ld, node, &s)))
                return r;
        for (p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' &&
                    *p != '-')
                        break;
        if (*p || strlen(s) > MAX_TOPIC_LEN || !strcmp(s, ".") ||
            !strcmp(s, ".."))
                return veil_yaml_fail(
                        ld, node,
                        "'%s' is not a valid topic name (1-249 of "
                        "a-z A-Z 0-9 . _ -)",
                        s);
        *out = s;
        return 0;
}

/* A path from the file: absolute as is, else against the file's folder. */
char *veil_yaml_resolve_path(struct loader *ld, const char *p)
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
                yaml_node_t *k = veil_yaml_node_at(ld, pair->key);

                if (k && k->type == YAML_SCALAR_NODE &&
                    !strcmp(veil_yaml_scalar(k), key))
                        return k;
        }
        return NULL;
}

/* Every key of a map must be a non-empty scalar and appear once. */
int veil_yaml_check_keys(struct loader *ld, yaml_node_t *map)
{
        yaml_node_pair_t *pair;

        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = veil_yaml_node_at(ld, pair->key), *first;
                const char *name;
                size_t old;
                int r;

                if ((r = veil_yaml_get_scalar(ld, k, "a name as key", &name)))
                        return r;
                first = earlier_key(ld, map, pair, name);
                if (!first)
                        continue;
                old = veil_yaml_path_push(ld, name);
                r   = veil_yaml_fail(ld, k, "duplicate key (first at line %zu)",
                                     first->start_mark.line + 1);
                veil_yaml_path_pop(ld, old);
                return r;
        }
        return 0;
}

/* A map whose keys are Veil's: unknown keys are errors (with a suggestion),
 * required ones must be there, handlers run in `specs` order. A null value
 * is an empty map. */
int veil_yaml_walk_map(struct loader *ld, yaml_node_t *map,
                       const struct key_spec *specs, void *obj)
{
        const struct key_spec *spec;
        yaml_node_pair_t *pair;
        int r;

        if (veil_yaml_is_null(map)) {
                for (spec = specs; spec->name; spec++)
                        if (spec->required)
                                return veil_yaml_fail(
                                        ld, map, "missing required key '%s'",
                                        spec->name);
                return 0;
        }
        if (map->type != YAML_MAPPING_NODE)
                return veil_yaml_fail(ld, map, "expected a map, got %s",
                                      veil_yaml_kind_name(map));
        if ((r = veil_yaml_check_keys(ld, map)))
                return r;
        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k   = veil_yaml_node_at(ld, pair->key);
                const char *name = veil_yaml_scalar(k);
                struct suggest sg;
                size_t old;

                for (spec = specs; spec->name; spec++)
                        if (!strcmp(spec->name, name))
                                break;
                if (spec->name)
                        continue;
                veil_yaml_suggest_init(&sg, name);
                for (spec = specs; spec->name; spec++)
                        veil_yaml_suggest_try(&sg, spec->name);
                old = veil_yaml_path_push(ld, name);
                r   = veil_yaml_fail(ld, k, "unknown key%s",
                                     veil_yaml_suggest_text(&sg));
                veil_yaml_path_pop(ld, old);
                return r;
        }
        for (spec = specs; spec->name; spec++) {
                yaml_node_t *value = NULL;
                size_t old;

                for (pair = map->data.mapping.pairs.start;
                     pair < map->data.mapping.pairs.top; pair++)
                        if (!strcmp(veil_yaml_scalar(
                                            veil_yaml_node_at(ld, pair->key)),
                                    spec->name))
                                value = veil_yaml_node_at(ld, pair->value);
                if (!value) {
                        if (spec->required)
                                return veil_yaml_fail(
                                        ld, map, "missing required key '%s'",
                                        spec->name);
                        continue;
                }
                old = veil_yaml_path_push(ld, spec->name);
                r   = spec->parse(ld, value, obj);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
        }
        return 0;
}

/* A map whose keys the user names: fn per entry, in document order. */
int veil_yaml_each_entry(struct loader *ld, yaml_node_t *map, entry_fn fn,
                         void *obj)
{
        yaml_node_pair_t *pair;
        int r;

        if (veil_yaml_is_null(map))
                return 0;
        if (map->type != YAML_MAPPING_NODE)
                return veil_yaml_fail(ld, map, "expected a map, got %s",
                                      veil_yaml_kind_name(map));
        if ((r = veil_yaml_check_keys(ld, map)))
                return r;
        for (pair = map->data.mapping.pairs.start;
             pair < map->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = veil_yaml_node_at(ld, pair->key);
                size_t old     = veil_yaml_path_push(ld, veil_yaml_scalar(k));

                r = fn(ld, k, veil_yaml_node_at(ld, pair->value), obj);
                veil_yaml_path_pop(ld, old);
                if (r)
                        return r;
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

int veil_yaml_parse_document(struct loader *ld)
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
                r = veil_yaml_fail(ld, root,
                                   "expected a map of settings, got %s",
                                   veil_yaml_kind_name(root));
                goto out;
        }
        /* A second document would be silently ignored: refuse it. */
        if (!yaml_parser_load(&parser, &extra)) {
                r = syntax_error(ld, &parser);
                goto out;
        }
        extra_root = yaml_document_get_root_node(&extra);
        if (extra_root)
                r = veil_yaml_fail(ld, extra_root,
                                   "a second YAML document; the config is one "
                                   "document");
        yaml_document_delete(&extra);
out:
        yaml_parser_delete(&parser);
        return r;
}
