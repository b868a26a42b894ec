/* schema.c - parse an Avro schema with avro-c and read Veil's annotations
 * (pii, confluent:tags, metadata.tags) from its JSON with jansson, flattened
 * into field paths that the classifier and the plans share. */
#define _GNU_SOURCE
#include "schema.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "veil.h"

struct walk {
        struct veil_schema *schema;
        char *errstr;
        size_t errstr_size;
        size_t cap;
        const char *root_name; /* top record's name, for metadata paths */
        const char *root_full;
        avro_schema_t stack[VEIL_SCHEMA_MAX_DEPTH + 2]; /* records open */
        int n_stack;
};

/* The full name of a named JSON definition given the enclosing namespace. */
static char *full_name(const char *name, const char *ns)
{
        char *fn;

        if (strchr(name, '.') || !ns || !*ns)
                return veil_strdup(name);
        if (asprintf(&fn, "%s.%s", ns, name) < 0)
                abort();
        return fn;
}

/* Collect every named definition (record, enum, fixed) so that a field whose
 * type is a name reference still finds its JSON (and annotations). The first
 * full name defined twice goes to *dup (owned by the caller). */
static void collect_named(json_t *node, const char *ns, json_t *named,
                          int depth, char **dup)
{
        const char *type, *name, *own_ns;
        json_t *v;
        size_t i;

        if (depth > VEIL_SCHEMA_MAX_DEPTH * 4 || !node)
                return;
        if (json_is_array(node)) {
                json_array_foreach(node, i, v)
                        collect_named(v, ns, named, depth + 1, dup);
                return;
        }
        if (!json_is_object(node))
                return;
        type   = json_string_value(json_object_get(node, "type"));
        name   = json_string_value(json_object_get(node, "name"));
        own_ns = json_string_value(json_object_get(node, "namespace"));
        if (type && name &&
            (!strcmp(type, "record") || !strcmp(type, "error") ||
             !strcmp(type, "enum") || !strcmp(type, "fixed"))) {
                char *fn;
                const char *dot;

                fn = full_name(name, own_ns ? own_ns : ns);
                if (!*dup && json_object_get(named, fn))
                        *dup = veil_strdup(fn);
                json_object_set(named, fn, node);
                /* Names declared inside inherit this one's namespace. */
                dot = strrchr(fn, '.');
                if (dot) {
                        char *inner = veil_strndup(fn, (size_t)(dot - fn));

                        json_array_foreach(json_object_get(node, "fields"), i,
                                           v)
                                collect_named(json_object_get(v, "type"), inner,
                                              named, depth + 1, dup);
                        free(inner);
                } else {
                        json_array_foreach(json_object_get(node, "fields"), i,
                                           v)
                                collect_named(json_object_get(v, "type"), "",
                                              named, depth + 1, dup);
                }
                free(fn);
                return;
        }
        if (json_is_object(json_object_get(node, "type")) ||
            json_is_array(json_object_get(node, "type")))
                collect_named(json_object_get(node, "type"), ns, named,
                              depth + 1, dup);
        collect_named(json_object_get(node, "items"), ns, named, depth + 1,
                      dup);
        collect_named(json_object_get(node, "values"), ns, named, depth + 1,
                      dup);
}

static json_t *record_json(struct walk *w, avro_schema_t rec)
{
        const char *name = avro_schema_name(rec);
        const char *ns   = avro_schema_namespace(rec);
        char *fn         = full_name(name, ns);
        json_t *def      = json_object_get(w->schema->named, fn);

        free(fn);
        if (!def) /* avro-c may not report a namespace it inherited */
                def = json_object_get(w->schema->named, name);
        return def;
}

/* The logicalType of a type node, looking through ["null", T]. */
static const char *logical_of(json_t *type)
{
        const char *lt;
        json_t *v, *only = NULL;
        size_t i;

        if (json_is_object(type)) {
                lt = json_string_value(json_object_get(type, "logicalType"));
                if (lt)
                        return lt;
                /* {"type": {"type": "long", "logicalType": …}} nesting */
                v = json_object_get(type, "type");
                if (json_is_object(v))
                        return logical_of(v);
                return NULL;
        }
        if (json_is_array(type)) {
                json_array_foreach(type, i, v)
                {
                        if (json_is_string(v) &&
                            !strcmp(json_string_value(v), "null"))
                                continue;
                        if (only)
                                return NULL;
                        only = v;
                }
                return only ? logical_of(only) : NULL;
        }
        return NULL;
}

/* True when the first `pre` bytes of key are exactly `name`. */
static bool names_prefix(const char *key, size_t pre, const char *name)
{
        return name && strlen(name) == pre && !strncmp(key, name, pre);
}

/* Tags for `path` from Confluent schema metadata {"tags": {path: [..]}}.
 * Keys may be our path, the path under the record's (full) name, or a
 * "**."-prefixed suffix wildcard. */
static void metadata_tags(struct walk *w, const char *path,
                          const char *fieldname, const char ***tagsp,
                          size_t *np)
{
        json_t *tags = json_object_get(w->schema->metadata, "tags");
        const char *key;
        json_t *list, *t;
        size_t i, plen = strlen(path);

        json_object_foreach(tags, key, list)
        {
                int match   = !strcmp(key, path);
                size_t klen = strlen(key);

                if (!match && klen > plen && key[klen - plen - 1] == '.' &&
                    !strcmp(key + klen - plen, path)) {
                        size_t pre = klen - plen - 1;

                        match = names_prefix(key, pre, w->root_name) ||
                                names_prefix(key, pre, w->root_full);
                }
                if (!match && !strncmp(key, "**.", 3) &&
                    (!strcmp(key + 3, fieldname) ||
                     (plen >= klen - 3 &&
                      !strcmp(path + plen - (klen - 3), key + 3) &&
                      (plen == klen - 3 ||
                       path[plen - (klen - 3) - 1] == '.'))))
                        match = 1;
                if (!match || !json_is_array(list))
                        continue;
                json_array_foreach(list, i, t)
                {
                        if (!json_is_string(t))
                                continue;
                        *tagsp            = veil_realloc(*tagsp,
                                                         (*np + 1) * sizeof(**tagsp));
                        (*tagsp)[(*np)++] = json_string_value(t);
                }
        }
}

static int walk_type(struct walk *w, avro_schema_t type, const char *prefix,
                     int depth, int parent);

static int add_field(struct walk *w, const char *path, const char *name,
                     json_t *fjson, avro_schema_t ftype, int depth, int parent)
{
        struct veil_schema *s = w->schema;
        struct veil_schema_field *f;
        json_t *tags, *t;
        size_t i;

        if (s->n_fields == w->cap) {
                w->cap    = w->cap ? w->cap * 2 : 16;
                s->fields = veil_realloc(s->fields, w->cap * sizeof(*f));
        }
        f = &s->fields[s->n_fields++];
        memset(f, 0, sizeof(*f));
        f->path      = veil_strdup(path);
        f->name      = name;
        f->json      = fjson;
        f->type      = ftype;
        f->type_json = json_object_get(fjson, "type");
        f->logical   = logical_of(f->type_json);
        f->pii       = json_string_value(json_object_get(fjson, "pii"));
        f->depth     = depth;
        f->parent    = parent;
        tags         = json_object_get(fjson, "confluent:tags");
        json_array_foreach(tags, i, t)
        {
                if (!json_is_string(t))
                        continue;
                f->tags              = veil_realloc(f->tags,
                                                    (f->n_tags + 1) * sizeof(*f->tags));
                f->tags[f->n_tags++] = json_string_value(t);
        }
        metadata_tags(w, path, name, &f->tags, &f->n_tags);
        return (int)(s->n_fields - 1);
}

static int walk_record(struct walk *w, avro_schema_t rec, const char *prefix,
                       int depth, int parent)
{
        json_t *def = record_json(w, rec), *fields;
        size_t i, n = avro_schema_record_size(rec);

        if (depth > VEIL_SCHEMA_MAX_DEPTH)
                return veil_errf(w->errstr, w->errstr_size, VEIL_EINVAL,
                                 "schema nests deeper than %d levels at '%s'",
                                 VEIL_SCHEMA_MAX_DEPTH, prefix);
        fields = def ? json_object_get(def, "fields") : NULL;
        for (i = 0; i < n; i++) {
                const char *name = avro_schema_record_field_name(rec, (int)i);
                avro_schema_t ft =
                        avro_schema_record_field_get_by_index(rec, (int)i);
                json_t *fj = json_array_get(fields, i);
                char *path;
                int idx, rc;

                if (fj && json_string_value(json_object_get(fj, "name")) &&
                    strcmp(json_string_value(json_object_get(fj, "name")),
                           name))
                        fj = NULL; /* defensive: keep JSON and avro aligned */
                if (*prefix) {
                        if (asprintf(&path, "%s.%s", prefix, name) < 0)
                                abort();
                } else {
                        path = veil_strdup(name);
                }
                idx = add_field(
                        w, path,
                        fj ? json_string_value(json_object_get(fj, "name"))
                           : name,
                        fj, ft, depth, parent);
                rc = walk_type(w, ft, path, depth + 1, idx);
                free(path);
                if (rc)
                        return rc;
        }
        return 0;
}

/* Descend into a field's type to find nested record fields. */
static int walk_type(struct walk *w, avro_schema_t type, const char *prefix,
                     int depth, int parent)
{
        char *sub;
        int rc = 0;
        size_t i;

        if (depth > VEIL_SCHEMA_MAX_DEPTH)
                return veil_errf(w->errstr, w->errstr_size, VEIL_EINVAL,
                                 "schema nests deeper than %d levels at '%s'",
                                 VEIL_SCHEMA_MAX_DEPTH, prefix);
        switch (avro_typeof(type)) {
        case AVRO_RECORD:
                if (w->n_stack >= (int)VEIL_ARRAY_SIZE(w->stack))
                        return veil_errf(w->errstr, w->errstr_size, VEIL_EINVAL,
                                         "schema nests too deep at '%s'",
                                         prefix);
                w->stack[w->n_stack++] = type;
                rc = walk_record(w, type, prefix, depth, parent);
                w->n_stack--;
                return rc;
        case AVRO_LINK: {
                /* A reference to a named type defined earlier: walk it like
                 * the definition, unless it is recursive (already open). */
                avro_schema_t target = avro_schema_link_target(type);
                int k;

                for (k = 0; k < w->n_stack; k++)
                        if (w->stack[k] == target)
                                return 0;
                return walk_type(w, target, prefix, depth, parent);
        }
        case AVRO_ARRAY:
                if (asprintf(&sub, "%s[]", prefix) < 0)
                        abort();
                rc = walk_type(w, avro_schema_array_items(type), sub, depth,
                               parent);
                free(sub);
                return rc;
        case AVRO_MAP:
                if (asprintf(&sub, "%s{}", prefix) < 0)
                        abort();
                rc = walk_type(w, avro_schema_map_values(type), sub, depth,
                               parent);
                free(sub);
                return rc;
        case AVRO_UNION:
                for (i = 0; i < avro_schema_union_size(type) && !rc; i++)
                        rc = walk_type(w,
                                       avro_schema_union_branch(type, (int)i),
                                       prefix, depth, parent);
                return rc;
        default:
                /* Primitives, enum, fixed: leaves. A recursive reference
                 * stops above: its fields are classified where the type is
                 * defined, and the field itself carries a label. */
                return 0;
        }
}

struct veil_schema *veil_schema_parse(const char *text, size_t len,
                                      json_t *metadata, int id, char *errstr,
                                      size_t errstr_size)
{
        struct veil_schema *schema = veil_calloc(1, sizeof(*schema));
        struct walk w              = {0};
        char *root_full = NULL, *dup = NULL;
        json_error_t jerr;

        schema->id    = id;
        schema->json  = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
        schema->named = json_object();
        /* A name defined twice is invalid Avro, and avro-c leaks the second
         * definition when it refuses it: refuse it first. */
        collect_named(schema->json, "", schema->named, 0, &dup);
        if (dup) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "invalid Avro schema: named type '%s' is defined "
                          "more than once",
                          dup);
                goto err;
        }
        if (avro_schema_from_json_length(text, len, &schema->avro)) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "invalid Avro schema: %s", avro_strerror());
                schema->avro = NULL;
                goto err;
        }
        if (!schema->json) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "invalid schema JSON at line %d: %s", jerr.line,
                          jerr.text);
                goto err;
        }
        if (metadata)
                schema->metadata = json_incref(metadata);

        w.schema      = schema;
        w.errstr      = errstr;
        w.errstr_size = errstr_size;
        if (avro_typeof(schema->avro) == AVRO_RECORD) {
                w.root_name = avro_schema_name(schema->avro);
                root_full   = full_name(w.root_name,
                                        avro_schema_namespace(schema->avro));
                w.root_full = root_full;
        }
        if (walk_type(&w, schema->avro, "", 1, -1))
                goto err;
        free(root_full);
        return schema;
err:
        free(dup);
        free(root_full);
        veil_schema_destroy(schema);
        return NULL;
}

void veil_schema_destroy(struct veil_schema *schema)
{
        size_t i;

        if (!schema)
                return;
        for (i = 0; i < schema->n_fields; i++) {
                free(schema->fields[i].path);
                free(schema->fields[i].tags);
        }
        free(schema->fields);
        if (schema->avro)
                avro_schema_decref(schema->avro);
        json_decref(schema->named);
        json_decref(schema->metadata);
        json_decref(schema->json);
        free(schema);
}

json_t *veil_schema_named(const struct veil_schema *schema,
                          const char *fullname)
{
        return json_object_get(schema->named, fullname);
}

const struct veil_schema_field *
veil_schema_field(const struct veil_schema *schema, const char *path)
{
        size_t i;

        for (i = 0; i < schema->n_fields; i++)
                if (!strcmp(schema->fields[i].path, path))
                        return &schema->fields[i];
        return NULL;
}

void veil_schema_field_annotations(const struct veil_schema_field *field,
                                   struct veil_field_annotations *ann)
{
        ann->pii    = field->pii;
        ann->tags   = field->tags;
        ann->n_tags = field->n_tags;
}
