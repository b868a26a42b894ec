/* check_plan.c - `veil check`'s walk of one field's type: would its
 * transform apply to every leaf inside it (veil_plan_check_field, the same
 * rule the compiler in plan.c applies)? */
#define _GNU_SOURCE
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "derive.h"
#include "subject_keys.h"
#include "util.h"
#include "plan_int.h"
#include "veil.h"

/* ---- veil check ---------------------------------------------------------- */

static int check_walk(const struct veil_schema *schema, avro_schema_t t,
                      json_t *j, const char *ns,
                      const struct veil_transform *tx, const char *sub,
                      int depth, char *errstr, size_t errstr_size)
{
        enum pk kind;
        enum lt lt;
        size_t i, n;
        int rc = 0;

        if (depth > VEIL_PLAN_MAX_DEPTH)
                return 0; /* recursion: the type was checked above */
        t    = veil_plan_resolve(t);
        j    = veil_plan_jnorm(j);
        kind = veil_plan_pk_of(avro_typeof(t));
        switch (kind) {
        case PK_RECORD: {
                struct comp c  = {.schema = schema};
                char *fn       = NULL, *ins;
                json_t *def    = veil_plan_named_def(&c, t, j, ns, &fn);
                json_t *fields = json_object_get(def, "fields");

                ins = veil_plan_inner_ns(fn ? fn : "");
                n   = avro_schema_record_size(t);
                for (i = 0; i < n && !rc; i++) {
                        char *s;
                        json_t *fj = json_array_get(fields, i);

                        if (asprintf(&s, "%s%s%s", sub, *sub ? "." : "",
                                     avro_schema_record_field_name(t, (int)i)) <
                            0)
                                abort();
                        rc = check_walk(schema,
                                        avro_schema_record_field_get_by_index(
                                                t, (int)i),
                                        json_object_get(fj, "type"), ins, tx, s,
                                        depth + 1, errstr, errstr_size);
                        free(s);
                }
                free(ins);
                free(fn);
                return rc;
        }
        case PK_ARRAY:
        case PK_MAP: {
                char *s;

                if (asprintf(&s, "%s%s", sub, kind == PK_ARRAY ? "[]" : "{}") <
                    0)
                        abort();
                rc = check_walk(schema,
                                kind == PK_ARRAY ? avro_schema_array_items(t)
                                                 : avro_schema_map_values(t),
                                json_object_get(j, kind == PK_ARRAY ? "items"
                                                                    : "values"),
                                ns, tx, s, depth + 1, errstr, errstr_size);
                free(s);
                return rc;
        }
        case PK_UNION:
                n = avro_schema_union_size(t);
                for (i = 0; i < n && !rc; i++)
                        rc = check_walk(schema,
                                        avro_schema_union_branch(t, (int)i),
                                        json_array_get(j, i), ns, tx, sub,
                                        depth + 1, errstr, errstr_size);
                return rc;
        default:
                lt = veil_plan_lt_of(kind, j, NULL);
                if (veil_plan_leaf_ok(tx->kind, kind, lt))
                        return 0;
                {
                        char tl[128];

                        veil_plan_type_label(tl, sizeof(tl), kind, lt,
                                             kind == PK_ENUM || kind == PK_FIXED
                                                     ? avro_schema_name(t)
                                                     : NULL);
                        if (*sub)
                                return veil_errf(
                                        errstr, errstr_size, VEIL_ETYPE,
                                        "transform '%s' cannot apply to type "
                                        "'%s' (at '%s' inside the field)",
                                        veil_tx_name(tx->kind), tl, sub);
                        return veil_errf(errstr, errstr_size, VEIL_ETYPE,
                                         "transform '%s' cannot apply to type "
                                         "'%s'",
                                         veil_tx_name(tx->kind), tl);
                }
        }
}

int veil_plan_check_field(const struct veil_schema *schema,
                          const struct veil_schema_field *field,
                          const struct veil_transform *tx, char *errstr,
                          size_t errstr_size)
{
        char *ns = NULL;
        int rc;

        if (tx->kind == VEIL_TX_KEEP || tx->kind == VEIL_TX_DROP ||
            tx->kind == VEIL_TX_NULL)
                return 0;
        rc = veil_tx_check(tx, errstr, errstr_size);
        if (rc)
                return rc;
        /* Named references inside resolve against the namespace of the
         * enclosing record; walk from the field's own parent. */
        if (field->parent >= 0) {
                const struct veil_schema_field *p =
                        &schema->fields[field->parent];
                avro_schema_t pt = veil_plan_resolve(p->type);

                while (avro_typeof(pt) == AVRO_UNION ||
                       avro_typeof(pt) == AVRO_ARRAY ||
                       avro_typeof(pt) == AVRO_MAP) {
                        if (avro_typeof(pt) == AVRO_ARRAY)
                                pt = veil_plan_resolve(
                                        avro_schema_array_items(pt));
                        else if (avro_typeof(pt) == AVRO_MAP)
                                pt = veil_plan_resolve(
                                        avro_schema_map_values(pt));
                        else
                                break;
                }
                if (avro_typeof(pt) == AVRO_RECORD && avro_schema_namespace(pt))
                        ns = veil_strdup(avro_schema_namespace(pt));
        } else if (avro_typeof(schema->avro) == AVRO_RECORD &&
                   avro_schema_namespace(schema->avro)) {
                ns = veil_strdup(avro_schema_namespace(schema->avro));
        }
        rc = check_walk(schema, field->type, field->type_json, ns ? ns : "", tx,
                        "", 0, errstr, errstr_size);
        free(ns);
        return rc;
}
