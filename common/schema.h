/* schema.h - an Avro schema as Veil sees it: the avro-c parse plus Veil's
 * field annotations (pii, confluent:tags, metadata.tags) read with jansson,
 * flattened into field paths for classification. */
#ifndef VEIL_COMMON_SCHEMA_H
#define VEIL_COMMON_SCHEMA_H

#include <avro.h>
#include <jansson.h>
#include <stddef.h>

#include "policy.h"

/* Field paths: record fields joined with '.', array items as "[]", map values
 * as "{}": `address.zip`, `contacts[].email`, `attrs{}`, `attrs{}.value`.
 * Unions are transparent (a nullable `email` is just `email`). */
struct veil_schema_field {
        char *path;
        const char *name;   /* last field name (owned by json) */
        json_t *json;       /* the field's JSON object (borrowed) */
        avro_schema_t type; /* the field's type as avro-c parsed it
                             * (borrowed from the schema) */
        const char *pii;    /* "pii" attribute or NULL */
        const char **tags;  /* confluent:tags + metadata tags */
        size_t n_tags;
        json_t *type_json;   /* the field's "type" JSON as written (a
                              * name string for a reference; borrowed) */
        const char *logical; /* logicalType of the type, or of the only
                              * non-null union branch; NULL if none */
        int depth;           /* 1 for top-level fields */
        int parent;          /* index of the enclosing field or -1 */
};

struct veil_schema {
        int id;             /* registry id, -1 when unknown */
        avro_schema_t avro; /* owned */
        json_t *json;       /* owned */
        json_t *metadata;   /* owned, may be NULL: Confluent schema
                             * metadata ({"tags": {"path": ["TAG"]}}) */
        struct veil_schema_field *fields; /* DFS order, parents first */
        json_t *named; /* owned: full name → JSON definition */
        size_t n_fields;
};

/* Parse `text` (Avro schema JSON). `metadata` (may be NULL, borrowed: a
 * reference is taken) is the registry's schema metadata object. Returns NULL
 * with errstr when avro-c or jansson rejects it or nesting exceeds
 * VEIL_SCHEMA_MAX_DEPTH. */
#define VEIL_SCHEMA_MAX_DEPTH 32
struct veil_schema *veil_schema_parse(const char *text, size_t len,
                                      json_t *metadata, int id, char *errstr,
                                      size_t errstr_size);
void veil_schema_destroy(struct veil_schema *schema);

/* The JSON definition of a named type (record, enum, fixed) by full name
 * ("com.example.Address"), or NULL. Borrowed from schema->json. */
json_t *veil_schema_named(const struct veil_schema *schema,
                          const char *fullname);

/* The field with that path, or NULL. */
const struct veil_schema_field *
veil_schema_field(const struct veil_schema *schema, const char *path);

/* Annotations of field i in the policy's terms. */
void veil_schema_field_annotations(const struct veil_schema_field *field,
                                   struct veil_field_annotations *ann);

#endif
