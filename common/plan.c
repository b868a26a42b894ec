/* plan.c - compile a record plan once per (schema, purpose) and run it per
 * record over the Avro binary without building values or allocating. */
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
#include "veil.h"

/* ---- the program ----------------------------------------------------------
 * A plan is a graph of nodes, one per position of the schema (recursive
 * records point back at their own node). Each node knows the Avro type it
 * reads and what to do with the value:
 *   PASS     validate and skip; the bytes stay in the pending copy range
 *   DROP     skip without copying (flush the range before it)
 *   NULLIFY  skip, write the null branch of the derived ["null", T]
 *   TX       read a leaf and write its transform
 *   DESCEND  a record, array, map or union with changes inside (for a
 *            map: in its values, or its keys get a transform)
 * Map keys are data (DESIGN.md §5): the label of a map covers its keys,
 * which are strings, so every transform that reaches them applies (encrypt
 * always writes its string token there); a drop or null of the keys drops
 * or nulls the whole map. Keys of an unlabelled map are unclassified unless
 * the route's classify: names "PATH{key}".
 * Unchanged bytes are never re-encoded: the executor keeps a pending range
 * [copy, p) and appends it to the output only when something changes. */

enum pk {
        PK_NULL = 0,
        PK_BOOL,
        PK_INT,
        PK_LONG,
        PK_FLOAT,
        PK_DOUBLE,
        PK_BYTES,
        PK_STRING,
        PK_FIXED,
        PK_ENUM,
        PK_RECORD,
        PK_ARRAY,
        PK_MAP,
        PK_UNION,
};

enum pa { PA_PASS = 0, PA_DROP, PA_NULLIFY, PA_TX, PA_DESCEND };

enum lt {
        LT_NONE = 0,
        LT_DATE,
        LT_TIME_MILLIS,
        LT_TIME_MICROS,
        LT_TS_MILLIS,
        LT_TS_MICROS,
        LT_TS_NANOS,
        LT_DECIMAL,
        LT_UUID,
};

struct pnode {
        uint8_t kind;
        uint8_t act;
        uint8_t logical;
        uint8_t unique;    /* MAP: the key transform can make keys equal */
        uint32_t n;        /* record fields, union branches, enum
                            * symbols, fixed size */
        uint32_t kids;     /* record/union: first entry in plan->kids;
                            * array/map: the item node; DROP/NULLIFY: the
                            * node that skips the source value */
        uint32_t min_size; /* fewest bytes a value of this type takes */
        uint32_t syms;     /* enum: first entry in plan->syms */
        /* TX: the leaf's transform; MAP: the keys' transform (NULL: keys
         * pass as they are). Borrowed from the policy. */
        const struct veil_transform *tx;
        const char *path; /* for error reports; NULL in skip trees */
};

struct pkid {
        uint32_t node;
        uint32_t out; /* union: the branch index in the derived union */
};

struct psym {
        const char *s;
        size_t len;
};

struct veil_plan {
        struct pnode *nodes;
        size_t n_nodes, cap_nodes;
        struct pkid *kids;
        size_t n_kids, cap_kids;
        struct psym *syms;
        size_t n_syms, cap_syms;
        char **strs; /* owned strings: paths and symbols */
        size_t n_strs, cap_strs;
        struct veil_plan_field *fields;
        size_t n_fields, cap_fields;
        size_t n_failclosed;
        uint32_t root;
        json_t *derived;
        char *derived_text;
        int source_id;
        int output_id;
        size_t max_output;
        bool needs_keys;
        bool needs_detect;
};

/* ---- plan storage ------------------------------------------------------- */

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
        if (need <= *cap)
                return p;
        while (*cap < need)
                *cap = *cap ? *cap * 2 : 16;
        return veil_realloc(p, *cap * size);
}

static uint32_t node_new(struct veil_plan *plan, enum pk kind)
{
        struct pnode *n;

        plan->nodes = grow(plan->nodes, &plan->cap_nodes, plan->n_nodes + 1,
                           sizeof(*plan->nodes));
        n           = &plan->nodes[plan->n_nodes];
        memset(n, 0, sizeof(*n));
        n->kind = (uint8_t)kind;
        return (uint32_t)plan->n_nodes++;
}

static const char *plan_str(struct veil_plan *plan, const char *s)
{
        plan->strs = grow(plan->strs, &plan->cap_strs, plan->n_strs + 1,
                          sizeof(*plan->strs));
        plan->strs[plan->n_strs] = veil_strdup(s);
        return plan->strs[plan->n_strs++];
}

static uint32_t kids_add(struct veil_plan *plan, const struct pkid *k, size_t n)
{
        uint32_t first = (uint32_t)plan->n_kids;

        plan->kids = grow(plan->kids, &plan->cap_kids, plan->n_kids + n + 1,
                          sizeof(*plan->kids));
        if (n)
                memcpy(plan->kids + plan->n_kids, k, n * sizeof(*k));
        plan->n_kids += n;
        return first;
}

void veil_plan_destroy(struct veil_plan *plan)
{
        size_t i;

        if (!plan)
                return;
        for (i = 0; i < plan->n_strs; i++)
                free(plan->strs[i]);
        free(plan->strs);
        free(plan->nodes);
        free(plan->kids);
        free(plan->syms);
        free(plan->fields);
        json_decref(plan->derived);
        free(plan->derived_text);
        free(plan);
}

const char *veil_plan_derived_text(const struct veil_plan *plan)
{
        return plan->derived_text;
}

json_t *veil_plan_derived_json(const struct veil_plan *plan)
{
        return plan->derived;
}

int veil_plan_source_id(const struct veil_plan *plan)
{
        return plan->source_id;
}

int veil_plan_output_id(const struct veil_plan *plan)
{
        return plan->output_id;
}

void veil_plan_set_output_id(struct veil_plan *plan, int id)
{
        plan->output_id = id;
}

const struct veil_plan_field *veil_plan_fields(const struct veil_plan *plan,
                                               size_t *n)
{
        *n = plan->n_fields;
        return plan->fields;
}

size_t veil_plan_failclosed_count(const struct veil_plan *plan)
{
        return plan->n_failclosed;
}

bool veil_plan_needs_keys(const struct veil_plan *plan)
{
        return plan->needs_keys;
}

bool veil_plan_needs_detect(const struct veil_plan *plan)
{
        return plan->needs_detect;
}

void veil_plan_env_free(struct veil_plan_env *env)
{
        if (!env)
                return;
        veil_buf_free(&env->tmp);
        veil_buf_free(&env->seen);
        veil_text_buf_free(&env->text);
}

/* ---- types -------------------------------------------------------------- */

static enum pk pk_of(avro_type_t t)
{
        switch (t) {
        case AVRO_NULL:
                return PK_NULL;
        case AVRO_BOOLEAN:
                return PK_BOOL;
        case AVRO_INT32:
                return PK_INT;
        case AVRO_INT64:
                return PK_LONG;
        case AVRO_FLOAT:
                return PK_FLOAT;
        case AVRO_DOUBLE:
                return PK_DOUBLE;
        case AVRO_BYTES:
                return PK_BYTES;
        case AVRO_STRING:
                return PK_STRING;
        case AVRO_FIXED:
                return PK_FIXED;
        case AVRO_ENUM:
                return PK_ENUM;
        case AVRO_RECORD:
                return PK_RECORD;
        case AVRO_ARRAY:
                return PK_ARRAY;
        case AVRO_MAP:
                return PK_MAP;
        case AVRO_UNION:
        default:
                return PK_UNION;
        }
}

static const char *const pk_names[] = {
        [PK_NULL] = "null",   [PK_BOOL] = "boolean",  [PK_INT] = "int",
        [PK_LONG] = "long",   [PK_FLOAT] = "float",   [PK_DOUBLE] = "double",
        [PK_BYTES] = "bytes", [PK_STRING] = "string", [PK_FIXED] = "fixed",
        [PK_ENUM] = "enum",   [PK_RECORD] = "record", [PK_ARRAY] = "array",
        [PK_MAP] = "map",     [PK_UNION] = "union",
};

/* The logical type a JSON type node declares, when it fits its base type
 * (Avro ignores a logicalType on the wrong base type, and so do we). */
static enum lt lt_of(enum pk kind, json_t *j, const char **namep)
{
        const char *s = NULL;

        if (json_is_object(j))
                s = json_string_value(json_object_get(j, "logicalType"));
        if (namep)
                *namep = s;
        if (!s)
                return LT_NONE;
        if (kind == PK_INT && !strcmp(s, "date"))
                return LT_DATE;
        if (kind == PK_INT && !strcmp(s, "time-millis"))
                return LT_TIME_MILLIS;
        if (kind == PK_LONG && !strcmp(s, "time-micros"))
                return LT_TIME_MICROS;
        if (kind == PK_LONG && (!strcmp(s, "timestamp-millis") ||
                                !strcmp(s, "local-timestamp-millis")))
                return LT_TS_MILLIS;
        if (kind == PK_LONG && (!strcmp(s, "timestamp-micros") ||
                                !strcmp(s, "local-timestamp-micros")))
                return LT_TS_MICROS;
        if (kind == PK_LONG && (!strcmp(s, "timestamp-nanos") ||
                                !strcmp(s, "local-timestamp-nanos")))
                return LT_TS_NANOS;
        if ((kind == PK_BYTES || kind == PK_FIXED) && !strcmp(s, "decimal"))
                return LT_DECIMAL;
        if (kind == PK_STRING && !strcmp(s, "uuid"))
                return LT_UUID;
        if (namep)
                *namep = NULL;
        return LT_NONE;
}

static const char *const lt_names[] = {
        [LT_NONE]        = NULL,
        [LT_DATE]        = "date",
        [LT_TIME_MILLIS] = "time-millis",
        [LT_TIME_MICROS] = "time-micros",
        [LT_TS_MILLIS]   = "timestamp-millis",
        [LT_TS_MICROS]   = "timestamp-micros",
        [LT_TS_NANOS]    = "timestamp-nanos",
        [LT_DECIMAL]     = "decimal",
        [LT_UUID]        = "uuid",
};

/* Which leaf types each transform applies to (the one rule, shared with
 * `veil check` through veil_plan_check_field). A null leaf passes every
 * transform: it carries nothing. */
static bool leaf_ok(enum veil_tx_kind tx, enum pk kind, enum lt lt)
{
        if (kind == PK_NULL)
                return true;
        switch (tx) {
        case VEIL_TX_KEEP:
        case VEIL_TX_DROP:
        case VEIL_TX_NULL:
                return true;
        case VEIL_TX_HASH:
                /* Needs a well-defined byte form: raw bytes, the text of an
                 * integer, an enum symbol. */
                return kind == PK_STRING || kind == PK_BYTES ||
                       kind == PK_FIXED || kind == PK_INT || kind == PK_LONG ||
                       kind == PK_ENUM;
        case VEIL_TX_MASK:
        case VEIL_TX_REDACT_TEXT:
                return kind == PK_STRING;
        case VEIL_TX_ENCRYPT:
                return kind == PK_STRING || kind == PK_BYTES;
        case VEIL_TX_GENERALIZE:
                if (lt == LT_UUID || lt == LT_DECIMAL || lt == LT_TIME_MILLIS ||
                    lt == LT_TIME_MICROS)
                        return false;
                return kind == PK_INT || kind == PK_LONG || kind == PK_FLOAT ||
                       kind == PK_DOUBLE || kind == PK_STRING;
        default:
                return false;
        }
}

static void type_label(char *buf, size_t size, enum pk kind, enum lt lt,
                       const char *name)
{
        if (lt != LT_NONE)
                snprintf(buf, size, "%s (%s)", pk_names[kind], lt_names[lt]);
        else if (name && (kind == PK_ENUM || kind == PK_FIXED))
                snprintf(buf, size, "%s %s", pk_names[kind], name);
        else
                snprintf(buf, size, "%s", pk_names[kind]);
}

/* ---- compiler ----------------------------------------------------------- */

enum mode {
        M_CLASSIFY = 0, /* classify every position through the policy */
        M_KEEP,         /* keep everything (the T of a null transform) */
};

struct open_rec {
        const char *fullname;
        enum mode mode;
        const char *label;
        uint32_t node;
        bool recursed;
};

struct memo {
        avro_schema_t type;
        uint32_t node;
};

struct comp {
        struct veil_plan *plan;
        const struct veil_schema *schema;
        const struct veil_plan_opts *opts;
        struct open_rec open[VEIL_PLAN_MAX_DEPTH];
        int n_open;
        struct memo *memo;
        size_t n_memo, cap_memo;
        char *errstr;
        size_t errstr_size;
};

struct cres {
        uint32_t node;
        json_t *type; /* derived type, owned; NULL when dropped */
        bool dropped;
        bool changed; /* output bytes differ from input bytes */
};

static bool is_primitive_name(const char *s)
{
        static const char *const prims[] = {"null",  "boolean", "int",
                                            "long",  "float",   "double",
                                            "bytes", "string"};
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(prims); i++)
                if (!strcmp(s, prims[i]))
                        return true;
        return false;
}

/* A type node as written may wrap its type one more level:
 * {"type": {"type": "long", "logicalType": …}} or {"type": [..]}. */
static json_t *jnorm(json_t *j)
{
        int guard = 0;

        while (json_is_object(j) && guard++ < 8) {
                json_t *t = json_object_get(j, "type");

                if (json_is_object(t) || json_is_array(t))
                        j = t;
                else
                        break;
        }
        return j;
}

static char *full_name(const char *name, const char *ns)
{
        char *fn;

        if (strchr(name, '.') || !ns || !*ns)
                return veil_strdup(name);
        if (asprintf(&fn, "%s.%s", ns, name) < 0)
                abort();
        return fn;
}

/* The JSON definition of named type `t` met at JSON node `j` under
 * namespace `ns`, and its full name (caller frees). */
static json_t *named_def(struct comp *c, avro_schema_t t, json_t *j,
                         const char *ns, char **fullp)
{
        json_t *def     = NULL;
        const char *ref = NULL;
        char *fn        = NULL;

        *fullp = NULL;
        if (json_is_object(j)) {
                const char *type =
                        json_string_value(json_object_get(j, "type"));
                const char *name =
                        json_string_value(json_object_get(j, "name"));

                if (name && type &&
                    (!strcmp(type, "record") || !strcmp(type, "error") ||
                     !strcmp(type, "enum") || !strcmp(type, "fixed"))) {
                        const char *own = json_string_value(
                                json_object_get(j, "namespace"));

                        *fullp = full_name(name, own ? own : ns);
                        return j;
                }
                ref = type; /* {"type": "SomeName"} */
        } else if (json_is_string(j)) {
                ref = json_string_value(j);
        }
        if (ref && !is_primitive_name(ref)) {
                fn  = full_name(ref, ns);
                def = veil_schema_named(c->schema, fn);
                if (!def && strcmp(fn, ref)) {
                        free(fn);
                        fn  = veil_strdup(ref);
                        def = veil_schema_named(c->schema, fn);
                }
        }
        if (!def) {
                /* Fall back on the name avro-c resolved. */
                const char *an  = avro_schema_name(t);
                const char *ans = avro_schema_namespace(t);

                free(fn);
                fn  = full_name(an ? an : "", ans);
                def = veil_schema_named(c->schema, fn);
                if (!def && an) {
                        free(fn);
                        fn  = veil_strdup(an);
                        def = veil_schema_named(c->schema, fn);
                }
        }
        if (!def) {
                free(fn);
                return NULL;
        }
        *fullp = fn;
        return def;
}

/* A derived named definition: the source definition's attributes minus
 * the ones we set, "name" short and "namespace" explicit, so that the
 * definition reads the same wherever the derived schema places it. */
static json_t *named_shell(json_t *def, const char *fullname)
{
        json_t *out = json_object(), *v;
        const char *k, *dot = strrchr(fullname, '.');

        json_object_set(out, "type", json_object_get(def, "type"));
        if (dot) {
                json_object_set_new(out, "name", json_string(dot + 1));
                json_object_set_new(
                        out, "namespace",
                        json_stringn(fullname, (size_t)(dot - fullname)));
        } else {
                json_object_set_new(out, "name", json_string(fullname));
        }
        json_object_foreach(def, k, v)
        {
                if (!strcmp(k, "name") || !strcmp(k, "namespace") ||
                    !strcmp(k, "fields") || !strcmp(k, "type"))
                        continue;
                json_object_set(out, k, v);
        }
        return out;
}

static char *inner_ns(const char *fullname)
{
        const char *dot = strrchr(fullname, '.');

        return dot ? veil_strndup(fullname, (size_t)(dot - fullname))
                   : veil_strdup("");
}

static void field_add(struct comp *c, const char *path, const char *label,
                      enum veil_label_source src, enum veil_plan_reason why,
                      enum veil_tx_kind tx)
{
        struct veil_plan *plan = c->plan;
        struct veil_plan_field *f;

        plan->fields = grow(plan->fields, &plan->cap_fields, plan->n_fields + 1,
                            sizeof(*plan->fields));
        f            = &plan->fields[plan->n_fields++];
        f->path      = plan_str(plan, path);
        f->label     = label;
        f->source    = src;
        f->reason    = why;
        f->tx        = tx;
        if (why == VEIL_PLAN_UNCLASSIFIED || why == VEIL_PLAN_UNLICENSED ||
            why == VEIL_PLAN_UNDEFINED)
                plan->n_failclosed++;
}

static avro_schema_t resolve(avro_schema_t t)
{
        while (avro_typeof(t) == AVRO_LINK)
                t = avro_schema_link_target(t);
        return t;
}

/* A node that validates and skips a value of `t` (no JSON, no paths):
 * what DROP and NULLIFY run over the source value. Shared per type. */
static int compile_skip(struct comp *c, avro_schema_t t, int depth,
                        uint32_t *nodep)
{
        struct veil_plan *plan = c->plan;
        enum pk kind;
        uint32_t idx;
        size_t i, n;
        int rc;

        t = resolve(t);
        for (i = 0; i < c->n_memo; i++)
                if (c->memo[i].type == t) {
                        *nodep = c->memo[i].node;
                        return 0;
                }
        if (depth > VEIL_PLAN_MAX_DEPTH)
                return veil_errf(c->errstr, c->errstr_size, VEIL_EINVAL,
                                 "schema nests deeper than %d levels",
                                 VEIL_PLAN_MAX_DEPTH);
        kind = pk_of(avro_typeof(t));
        idx  = node_new(plan, kind);
        /* Memoize before descending: recursive types point back here. */
        c->memo = grow(c->memo, &c->cap_memo, c->n_memo + 1, sizeof(*c->memo));
        c->memo[c->n_memo].type   = t;
        c->memo[c->n_memo++].node = idx;

        switch (kind) {
        case PK_BOOL:
        case PK_INT:
        case PK_LONG:
        case PK_BYTES:
        case PK_STRING:
        case PK_ENUM:
        case PK_ARRAY:
        case PK_MAP:
        case PK_UNION:
                plan->nodes[idx].min_size = 1;
                break;
        case PK_FLOAT:
                plan->nodes[idx].min_size = 4;
                break;
        case PK_DOUBLE:
                plan->nodes[idx].min_size = 8;
                break;
        default:
                break;
        }
        switch (kind) {
        case PK_FIXED:
                plan->nodes[idx].n        = (uint32_t)avro_schema_fixed_size(t);
                plan->nodes[idx].min_size = plan->nodes[idx].n;
                break;
        case PK_ENUM:
                plan->nodes[idx].n =
                        (uint32_t)avro_schema_enum_number_of_symbols(t);
                break;
        case PK_RECORD: {
                struct pkid *k;
                uint32_t min = 0;

                n = avro_schema_record_size(t);
                k = veil_calloc(n + 1, sizeof(*k));
                for (i = 0; i < n; i++) {
                        rc = compile_skip(c,
                                          avro_schema_record_field_get_by_index(
                                                  t, (int)i),
                                          depth + 1, &k[i].node);
                        if (rc) {
                                free(k);
                                return rc;
                        }
                        min += plan->nodes[k[i].node].min_size;
                }
                plan->nodes[idx].n        = (uint32_t)n;
                plan->nodes[idx].kids     = kids_add(plan, k, n);
                plan->nodes[idx].min_size = min;
                free(k);
                break;
        }
        case PK_ARRAY:
        case PK_MAP: {
                uint32_t item;

                rc = compile_skip(c,
                                  kind == PK_ARRAY ? avro_schema_array_items(t)
                                                   : avro_schema_map_values(t),
                                  depth + 1, &item);
                if (rc)
                        return rc;
                plan->nodes[idx].kids = item;
                break;
        }
        case PK_UNION: {
                struct pkid *k;

                n = avro_schema_union_size(t);
                k = veil_calloc(n + 1, sizeof(*k));
                for (i = 0; i < n; i++) {
                        rc = compile_skip(c,
                                          avro_schema_union_branch(t, (int)i),
                                          depth + 1, &k[i].node);
                        if (rc) {
                                free(k);
                                return rc;
                        }
                        k[i].out = (uint32_t)i;
                }
                plan->nodes[idx].n    = (uint32_t)n;
                plan->nodes[idx].kids = kids_add(plan, k, n);
                free(k);
                break;
        }
        default:
                break;
        }
        *nodep = idx;
        return 0;
}

static int compile_type(struct comp *c, avro_schema_t t, json_t *j,
                        const char *ns, const char *path, const char *label,
                        const struct veil_transform *tx, enum mode mode,
                        int depth, bool root, struct cres *r);

static bool structural(avro_schema_t t)
{
        avro_type_t at = avro_typeof(resolve(t));

        return at == AVRO_RECORD || at == AVRO_ARRAY || at == AVRO_MAP ||
               at == AVRO_UNION;
}

static int result_drop(struct comp *c, avro_schema_t t, int depth,
                       struct cres *r)
{
        uint32_t skip;
        int rc = compile_skip(c, t, depth, &skip);

        if (rc)
                return rc;
        r->node                      = node_new(c->plan, PK_NULL);
        c->plan->nodes[r->node].act  = PA_DROP;
        c->plan->nodes[r->node].kids = skip;
        r->type                      = NULL;
        r->dropped                   = true;
        r->changed                   = true;
        return 0;
}

static int result_nullify(struct comp *c, avro_schema_t t, json_t *j,
                          const char *ns, const char *path, int depth,
                          struct cres *r)
{
        struct cres k = {0};
        int rc = compile_type(c, t, j, ns, path, NULL, NULL, M_KEEP, depth,
                              false, &k);

        if (rc)
                return rc;
        r->node                      = node_new(c->plan, PK_NULL);
        c->plan->nodes[r->node].act  = PA_NULLIFY;
        c->plan->nodes[r->node].kids = k.node;
        c->plan->nodes[r->node].path = plan_str(c->plan, path);
        r->type                      = veil_derive_nullable(k.type);
        r->dropped                   = false;
        r->changed                   = true;
        return 0;
}

/* ---- map keys ------------------------------------------------------------
 * Keys are strings the record's producer chose, so they are data like the
 * values: the map's label covers them, the route's "PATH{key}" override
 * wins over it, and without either they are unclassified. */

struct keys {
        char *path; /* "PATH{key}", owned */
        const char *label;
        enum veil_label_source src;
        const struct veil_transform *tx; /* NULL: unlicensed/undefined */
        bool own;                        /* from the override */
};

enum keys_fate { KEYS_TX = 0, KEYS_DROP, KEYS_NULL };

/* Does the value at a position hold a map of its own (itself, or a branch
 * of its union)? Maps inside records and arrays are positions of their
 * own. */
static bool holds_map(avro_schema_t t)
{
        size_t i, n;

        t = resolve(t);
        if (avro_typeof(t) == AVRO_MAP)
                return true;
        if (avro_typeof(t) != AVRO_UNION)
                return false;
        n = avro_schema_union_size(t);
        for (i = 0; i < n; i++)
                if (avro_typeof(resolve(avro_schema_union_branch(t, (int)i))) ==
                    AVRO_MAP)
                        return true;
        return false;
}

static void keys_resolve(struct comp *c, const char *path, const char *label,
                         struct keys *k)
{
        memset(k, 0, sizeof(*k));
        if (asprintf(&k->path, "%s{key}", path) < 0)
                abort();
        k->label = veil_policy_classify(c->opts->policy, c->opts->route,
                                        k->path, NULL, &k->src);
        k->own   = k->label != NULL;
        if (!k->label)
                k->label = label;
        if (k->label)
                k->tx = veil_policy_transform(c->opts->purpose, c->opts->policy,
                                              k->label);
}

static enum keys_fate keys_fate(const struct keys *k)
{
        if (!k->tx || k->tx->kind == VEIL_TX_DROP)
                return KEYS_DROP;
        return k->tx->kind == VEIL_TX_NULL ? KEYS_NULL : KEYS_TX;
}

/* The keys' entry in the plan's field summary (fail-closed ones count). */
static void keys_note(struct comp *c, const struct keys *k)
{
        enum veil_plan_reason why =
                k->own ? VEIL_PLAN_LICENSED : VEIL_PLAN_INHERITED;

        if (!k->label)
                why = VEIL_PLAN_UNCLASSIFIED;
        else if (!k->tx)
                why = veil_policy_label_tier(c->opts->policy, k->label) ==
                                      VEIL_TIER_NONE
                              ? VEIL_PLAN_UNDEFINED
                              : VEIL_PLAN_UNLICENSED;
        field_add(c, k->path, k->label, k->own ? k->src : VEIL_LABEL_NONE, why,
                  k->tx ? k->tx->kind : VEIL_TX_DROP);
}

/* One classified position: a record field, array items ("p[]"), map values
 * ("p{}") or the whole value (keys). `inherited` is the enclosing
 * position's label. */
static int compile_value(struct comp *c, avro_schema_t t, json_t *j,
                         const char *ns, const char *path,
                         const char *inherited,
                         const struct veil_field_annotations *ann,
                         enum mode mode, int depth, struct cres *r)
{
        const struct veil_policy *policy = c->opts->policy;
        const struct veil_transform *tx;
        enum veil_label_source src = VEIL_LABEL_NONE;
        const char *own            = NULL, *label;
        enum veil_plan_reason why;
        int rc;

        if (mode == M_KEEP)
                return compile_type(c, t, j, ns, path, NULL, NULL, M_KEEP,
                                    depth, false, r);
        own   = veil_policy_classify(policy, c->opts->route, path, ann, &src);
        label = own ? own : inherited;
        if (!label) {
                /* Containers are not data themselves: their leaves are
                 * classified one by one (and dropped when unclassified). */
                if (structural(t))
                        return compile_type(c, t, j, ns, path, NULL, NULL,
                                            M_CLASSIFY, depth, false, r);
                field_add(c, path, NULL, VEIL_LABEL_NONE,
                          VEIL_PLAN_UNCLASSIFIED, VEIL_TX_DROP);
                return result_drop(c, t, depth, r);
        }
        tx  = veil_policy_transform(c->opts->purpose, policy, label);
        why = own ? VEIL_PLAN_LICENSED : VEIL_PLAN_INHERITED;
        if (!tx) {
                why = veil_policy_label_tier(policy, label) == VEIL_TIER_NONE
                              ? VEIL_PLAN_UNDEFINED
                              : VEIL_PLAN_UNLICENSED;
                field_add(c, path, label, src, why, VEIL_TX_DROP);
                return result_drop(c, t, depth, r);
        }
        if (own || !structural(t))
                field_add(c, path, label, src, why, tx->kind);
        if (tx->kind == VEIL_TX_DROP)
                return result_drop(c, t, depth, r);
        if (tx->kind == VEIL_TX_NULL)
                return result_nullify(c, t, j, ns, path, depth, r);
        rc = veil_tx_check(tx, c->errstr, c->errstr_size);
        if (rc)
                return veil_errf(c->errstr, c->errstr_size, rc,
                                 "field '%s': transform '%s' (label '%s'): "
                                 "bad parameters",
                                 path, veil_tx_name(tx->kind), label);
        return compile_type(c, t, j, ns, path, label, tx, M_CLASSIFY, depth,
                            false, r);
}

/* A position that holds a map: when its keys cannot reach the purpose, or
 * their transform is drop or null, the whole position goes (here, so that
 * a nullable map in a union becomes one ["null", map] and not a union in a
 * union); else the map's own compile settles the keys. */
static int compile_position(struct comp *c, avro_schema_t t, json_t *j,
                            const char *ns, const char *path,
                            const char *inherited,
                            const struct veil_field_annotations *ann,
                            enum mode mode, int depth, struct cres *r)
{
        const struct veil_policy *policy = c->opts->policy;
        const struct veil_transform *tx;
        const char *label;
        struct keys k;
        enum keys_fate fate;

        if (mode == M_KEEP || !holds_map(t))
                return compile_value(c, t, j, ns, path, inherited, ann, mode,
                                     depth, r);
        label = veil_policy_classify(policy, c->opts->route, path, ann, NULL);
        if (!label)
                label = inherited;
        tx = label ? veil_policy_transform(c->opts->purpose, policy, label)
                   : NULL;
        /* The position's own drop or null decides first (no keys left). */
        if (label &&
            (!tx || tx->kind == VEIL_TX_DROP || tx->kind == VEIL_TX_NULL))
                return compile_value(c, t, j, ns, path, inherited, ann, mode,
                                     depth, r);
        keys_resolve(c, path, label, &k);
        fate = keys_fate(&k);
        if (fate == KEYS_TX) {
                free(k.path);
                return compile_value(c, t, j, ns, path, inherited, ann, mode,
                                     depth, r);
        }
        keys_note(c, &k);
        free(k.path);
        if (fate == KEYS_NULL)
                return result_nullify(c, t, j, ns, path, depth, r);
        return result_drop(c, t, depth, r);
}

/* Annotations of record field `fj` at `path`: schema.c's entry (which adds
 * metadata tags) when there is one, else the field's own JSON (positions
 * schema.c does not walk, such as inside recursive types). */
static void annotations(struct comp *c, const char *path, json_t *fj,
                        struct veil_field_annotations *ann, const char **tagbuf,
                        size_t tagcap)
{
        const struct veil_schema_field *f = NULL;
        json_t *tags, *tv;
        size_t i;

        memset(ann, 0, sizeof(*ann));
        /* Union branches share paths (two records in one union may both
         * have a field `x`): the field's own JSON object tells them apart.
         * Only when our JSON is missing does the path alone decide. */
        for (i = 0; i < c->schema->n_fields; i++) {
                const struct veil_schema_field *cand = &c->schema->fields[i];

                if (strcmp(cand->path, path))
                        continue;
                if (fj && cand->json == fj) {
                        f = cand;
                        break;
                }
                if (!fj && !f)
                        f = cand;
        }
        if (f) {
                veil_schema_field_annotations(f, ann);
                return;
        }
        ann->pii = json_string_value(json_object_get(fj, "pii"));
        tags     = json_object_get(fj, "confluent:tags");
        json_array_foreach(tags, i, tv)
        {
                if (ann->n_tags < tagcap && json_is_string(tv))
                        tagbuf[ann->n_tags++] = json_string_value(tv);
        }
        ann->tags = tagbuf;
}

static int refuse(struct comp *c, const char *path, const char *label,
                  const struct veil_transform *tx, enum pk kind, enum lt lt,
                  const char *name, avro_schema_t t, int depth, struct cres *r)
{
        char tl[128], msg[512];

        type_label(tl, sizeof(tl), kind, lt, name);
        snprintf(msg, sizeof(msg),
                 "field '%s': transform '%s' cannot apply to type '%s'",
                 *path ? path : "(value)", veil_tx_name(tx->kind), tl);
        if (!c->opts->on_refuse)
                return veil_errf(c->errstr, c->errstr_size, VEIL_ETYPE, "%s",
                                 msg);
        c->opts->on_refuse(c->opts->opaque, path, label, tx, msg);
        return result_drop(c, t, depth, r);
}

static int compile_record(struct comp *c, avro_schema_t t, json_t *j,
                          const char *ns, const char *path, const char *label,
                          enum mode mode, int depth, bool root, struct cres *r)
{
        struct veil_plan *plan = c->plan;
        json_t *def, *fields, *outfields = NULL, *shell;
        char *fullname = NULL, *ins = NULL;
        struct pkid *k = NULL;
        struct open_rec *o;
        uint32_t idx, min = 0;
        size_t i, n;
        bool changed = false;
        int rc       = 0, slot;

        def = named_def(c, t, j, ns, &fullname);
        if (!def)
                return veil_errf(c->errstr, c->errstr_size, VEIL_EINVAL,
                                 "field '%s': no JSON definition for record "
                                 "'%s'",
                                 path, avro_schema_name(t));
        /* A record already open in the same context is a recursive
         * reference: point back at its node. */
        for (slot = c->n_open - 1; slot >= 0; slot--) {
                o = &c->open[slot];
                if (o->mode == mode && !strcmp(o->fullname, fullname) &&
                    ((!o->label && !label) ||
                     (o->label && label && !strcmp(o->label, label)))) {
                        o->recursed = true;
                        r->node     = o->node;
                        r->type     = json_string(fullname);
                        r->dropped  = false;
                        r->changed  = true; /* unknown yet: never PASS */
                        free(fullname);
                        return 0;
                }
        }
        if (c->n_open >= VEIL_PLAN_MAX_DEPTH) {
                rc = veil_errf(c->errstr, c->errstr_size, VEIL_EINVAL,
                               "field '%s': schema nests deeper than %d "
                               "levels",
                               path, VEIL_PLAN_MAX_DEPTH);
                free(fullname);
                return rc;
        }
        idx                   = node_new(plan, PK_RECORD);
        plan->nodes[idx].path = plan_str(plan, *path ? path : "(value)");
        o                     = &c->open[c->n_open++];
        o->fullname           = fullname;
        o->mode               = mode;
        o->label              = label;
        o->node               = idx;
        o->recursed           = false;

        ins       = inner_ns(fullname);
        fields    = json_object_get(def, "fields");
        n         = avro_schema_record_size(t);
        k         = veil_calloc(n + 1, sizeof(*k));
        outfields = json_array();
        for (i = 0; i < n; i++) {
                const char *fname = avro_schema_record_field_name(t, (int)i);
                avro_schema_t ft =
                        avro_schema_record_field_get_by_index(t, (int)i);
                json_t *fj = json_array_get(fields, i);
                struct veil_field_annotations ann;
                const char *tagbuf[32];
                struct cres fr = {0};
                char *fpath;

                if (fj && json_string_value(json_object_get(fj, "name")) &&
                    strcmp(json_string_value(json_object_get(fj, "name")),
                           fname))
                        fj = NULL;
                if (*path) {
                        if (asprintf(&fpath, "%s.%s", path, fname) < 0)
                                abort();
                } else {
                        fpath = veil_strdup(fname);
                }
                annotations(c, fpath, fj, &ann, tagbuf,
                            VEIL_ARRAY_SIZE(tagbuf));
                rc = compile_position(c, ft, json_object_get(fj, "type"), ins,
                                      fpath, label, &ann, mode, depth + 1, &fr);
                free(fpath);
                if (rc)
                        goto out;
                k[i].node = fr.node;

                min += plan->nodes[fr.node].min_size;
                changed |= fr.changed;
                if (fr.dropped)
                        continue;
                json_array_append_new(
                        outfields,
                        veil_derive_field(fj, fname, fr.type, !fr.changed,
                                          plan->nodes[fr.node].act ==
                                                  PA_NULLIFY));
        }
        plan->nodes[idx].n        = (uint32_t)n;
        plan->nodes[idx].kids     = kids_add(plan, k, n);
        plan->nodes[idx].min_size = o->recursed ? 0 : min;
        plan->nodes[idx].act = changed || o->recursed ? PA_DESCEND : PA_PASS;
        if (mode == M_CLASSIFY && !root && !o->recursed &&
            json_array_size(outfields) == 0) {
                /* Nothing of it reaches the purpose: drop the field that
                 * holds it rather than send an empty shell. */
                c->n_open--;
                free(fullname);
                fullname = NULL;
                rc       = result_drop(c, t, depth, r);
                goto out;
        }
        shell = named_shell(def, fullname);
        json_object_set_new(shell, "fields", outfields);
        outfields  = NULL;
        r->node    = idx;
        r->type    = shell;
        r->dropped = false;
        r->changed = changed || o->recursed;
        c->n_open--;
        free(fullname);
        fullname = NULL;
out:
        if (rc && fullname) {
                c->n_open--;
                free(fullname);
        }
        json_decref(outfields);
        free(ins);
        free(k);
        return rc;
}

/* Copy the attributes of a JSON type object (doc, custom properties) onto a
 * derived array or map. */
static json_t *container_shell(json_t *j, const char *type)
{
        json_t *out = json_object(), *v;
        const char *key;

        if (json_is_object(j))
                json_object_foreach(j, key, v)
                {
                        if (!strcmp(key, "items") || !strcmp(key, "values") ||
                            !strcmp(key, "type"))
                                continue;
                        json_object_set(out, key, v);
                }
        json_object_set_new(out, "type", json_string(type));
        return out;
}

static int compile_type(struct comp *c, avro_schema_t t, json_t *j,
                        const char *ns, const char *path, const char *label,
                        const struct veil_transform *tx, enum mode mode,
                        int depth, bool root, struct cres *r)
{
        struct veil_plan *plan = c->plan;
        enum pk kind;
        enum lt lt;
        const char *ltname;
        uint32_t idx;
        int rc;

        if (depth > VEIL_PLAN_MAX_DEPTH * 2)
                return veil_errf(c->errstr, c->errstr_size, VEIL_EINVAL,
                                 "field '%s': schema nests deeper than %d "
                                 "levels",
                                 path, VEIL_PLAN_MAX_DEPTH);
        t    = resolve(t);
        j    = jnorm(j);
        kind = pk_of(avro_typeof(t));
        memset(r, 0, sizeof(*r));

        switch (kind) {
        case PK_RECORD:
                return compile_record(c, t, j, ns, path, label, mode, depth,
                                      root, r);
        case PK_ARRAY:
        case PK_MAP: {
                struct cres ir   = {0};
                avro_schema_t it = kind == PK_ARRAY ? avro_schema_array_items(t)
                                                    : avro_schema_map_values(t);
                json_t *ij       = json_object_get(j, kind == PK_ARRAY ? "items"
                                                                       : "values");
                const struct veil_transform *ktx = NULL;
                size_t kfield                    = SIZE_MAX;
                json_t *shell;
                char *ipath;

                if (kind == PK_MAP && mode == M_CLASSIFY) {
                        struct keys k;
                        enum keys_fate fate;

                        /* Reached with drop or null only at the root (a
                         * position settles those first). */
                        keys_resolve(c, path, label, &k);
                        fate = keys_fate(&k);
                        keys_note(c, &k);
                        kfield = plan->n_fields - 1;
                        free(k.path);
                        if (fate == KEYS_DROP)
                                return result_drop(c, t, depth, r);
                        if (fate == KEYS_NULL)
                                return result_nullify(c, t, j, ns, path, depth,
                                                      r);
                        if (k.tx->kind != VEIL_TX_KEEP) {
                                rc = veil_tx_check(k.tx, c->errstr,
                                                   c->errstr_size);
                                if (rc)
                                        return veil_errf(
                                                c->errstr, c->errstr_size, rc,
                                                "field '%s{key}': transform "
                                                "'%s' (label '%s'): bad "
                                                "parameters",
                                                path, veil_tx_name(k.tx->kind),
                                                k.label);
                                ktx = k.tx;
                        }
                }
                if (asprintf(&ipath, "%s%s", path,
                             kind == PK_ARRAY ? "[]" : "{}") < 0)
                        abort();
                rc = compile_position(c, it, ij, ns, ipath, label, NULL, mode,
                                      depth + 1, &ir);
                free(ipath);
                if (rc)
                        return rc;
                if (ir.dropped) {
                        /* The keys go with the values. */
                        if (kfield != SIZE_MAX)
                                plan->fields[kfield].tx = VEIL_TX_DROP;
                        return result_drop(c, t, depth, r);
                }
                idx                       = node_new(plan, kind);
                plan->nodes[idx].kids     = ir.node;
                plan->nodes[idx].min_size = 1;
                plan->nodes[idx].tx       = ktx;
                /* mask, generalize and redact_text can map two keys to
                 * one; hash and encrypt cannot */
                plan->nodes[idx].unique =
                        ktx && (ktx->kind == VEIL_TX_MASK ||
                                ktx->kind == VEIL_TX_GENERALIZE ||
                                ktx->kind == VEIL_TX_REDACT_TEXT);
                plan->nodes[idx].act = ir.changed || ktx ? PA_DESCEND : PA_PASS;
                plan->nodes[idx].path = plan_str(plan, path);
                if (ktx &&
                    (ktx->kind == VEIL_TX_HASH || ktx->kind == VEIL_TX_ENCRYPT))
                        plan->needs_keys = true;
                if (ktx && ktx->kind == VEIL_TX_REDACT_TEXT)
                        plan->needs_detect = true;
                shell = container_shell(j, kind == PK_ARRAY ? "array" : "map");
                json_object_set_new(
                        shell, kind == PK_ARRAY ? "items" : "values", ir.type);
                r->node    = idx;
                r->type    = shell;
                r->changed = ir.changed || ktx;
                return 0;
        }
        case PK_UNION: {
                size_t i, n = avro_schema_union_size(t);
                struct cres *br = veil_calloc(n + 1, sizeof(*br));
                json_t **types  = veil_calloc(n + 1, sizeof(*types));
                uint32_t *map   = veil_calloc(n + 1, sizeof(*map));
                struct pkid *k  = veil_calloc(n + 1, sizeof(*k));
                bool changed = false, dropped = false, remap = false;

                rc = 0;
                for (i = 0; i < n && !rc; i++) {
                        rc = compile_type(c,
                                          avro_schema_union_branch(t, (int)i),
                                          json_array_get(j, i), ns, path, label,
                                          tx, mode, depth + 1, false, &br[i]);
                        if (!rc && br[i].dropped)
                                dropped = true;
                }
                if (!rc && dropped) {
                        /* One branch cannot reach the purpose, so neither
                         * can the field that may hold it. */
                        rc = result_drop(c, t, depth, r);
                } else if (!rc) {
                        for (i = 0; i < n; i++)
                                types[i] = br[i].type;
                        r->type = veil_derive_union(types, n, map);
                        for (i = 0; i < n; i++) {
                                k[i].node = br[i].node;
                                k[i].out  = map[i];
                                remap |= map[i] != i;
                                changed |= br[i].changed;
                        }
                        idx                       = node_new(plan, PK_UNION);
                        plan->nodes[idx].n        = (uint32_t)n;
                        plan->nodes[idx].kids     = kids_add(plan, k, n);
                        plan->nodes[idx].min_size = 1;
                        plan->nodes[idx].act =
                                changed || remap ? PA_DESCEND : PA_PASS;
                        plan->nodes[idx].path = plan_str(plan, path);
                        r->node               = idx;
                        r->changed            = changed || remap;
                }
                for (i = 0; i < n; i++)
                        json_decref(br[i].type);
                free(br);
                free(types);
                free(map);
                free(k);
                return rc;
        }
        default:
                break;
        }

        /* Leaves: primitives, enum, fixed. */
        lt = lt_of(kind, j, &ltname);
        if (kind != PK_NULL && mode == M_CLASSIFY && !label) {
                field_add(c, path, NULL, VEIL_LABEL_NONE,
                          VEIL_PLAN_UNCLASSIFIED, VEIL_TX_DROP);
                return result_drop(c, t, depth, r);
        }
        if (kind != PK_NULL && tx && tx->kind != VEIL_TX_KEEP &&
            !leaf_ok(tx->kind, kind, lt)) {
                const char *name = kind == PK_ENUM || kind == PK_FIXED
                                           ? avro_schema_name(t)
                                           : NULL;

                return refuse(c, path, label, tx, kind, lt, name, t, depth, r);
        }
        idx                      = node_new(plan, kind);
        plan->nodes[idx].logical = (uint8_t)lt;
        plan->nodes[idx].path    = plan_str(plan, *path ? path : "(value)");
        switch (kind) {
        case PK_FLOAT:
                plan->nodes[idx].min_size = 4;
                break;
        case PK_DOUBLE:
                plan->nodes[idx].min_size = 8;
                break;
        case PK_NULL:
                break;
        case PK_FIXED:
                plan->nodes[idx].n        = (uint32_t)avro_schema_fixed_size(t);
                plan->nodes[idx].min_size = plan->nodes[idx].n;
                break;
        default:
                plan->nodes[idx].min_size = 1;
                break;
        }
        if (kind == PK_ENUM) {
                size_t i, n = (size_t)avro_schema_enum_number_of_symbols(t);

                plan->syms            = grow(plan->syms, &plan->cap_syms,
                                             plan->n_syms + n + 1, sizeof(*plan->syms));
                plan->nodes[idx].n    = (uint32_t)n;
                plan->nodes[idx].syms = (uint32_t)plan->n_syms;
                for (i = 0; i < n; i++) {
                        const char *s =
                                plan_str(plan, avro_schema_enum_get(t, (int)i));

                        plan->syms[plan->n_syms].s     = s;
                        plan->syms[plan->n_syms++].len = strlen(s);
                }
        }
        if (kind == PK_NULL || mode == M_KEEP || !tx ||
            tx->kind == VEIL_TX_KEEP) {
                plan->nodes[idx].act = PA_PASS;
                if (kind == PK_ENUM || kind == PK_FIXED) {
                        char *fullname = NULL;
                        json_t *def    = named_def(c, t, j, ns, &fullname);
                        json_t *shell;

                        if (!def)
                                return veil_errf(
                                        c->errstr, c->errstr_size, VEIL_EINVAL,
                                        "field '%s': no JSON definition for "
                                        "'%s'",
                                        path, avro_schema_name(t));
                        shell = named_shell(def, fullname);
                        free(fullname);
                        r->type = shell;
                } else if (json_is_object(j)) {
                        r->type = json_deep_copy(j);
                } else {
                        r->type = json_string(pk_names[kind]);
                }
                r->node = idx;
                return 0;
        }
        plan->nodes[idx].act = PA_TX;
        plan->nodes[idx].tx  = tx;
        if (tx->kind == VEIL_TX_HASH || tx->kind == VEIL_TX_ENCRYPT)
                plan->needs_keys = true;
        if (tx->kind == VEIL_TX_REDACT_TEXT)
                plan->needs_detect = true;
        r->node    = idx;
        r->type    = veil_derive_leaf_type(tx, pk_names[kind], ltname);
        r->changed = true;
        return 0;
}

struct veil_plan *veil_plan_compile(const struct veil_schema *schema,
                                    const struct veil_plan_opts *opts,
                                    char *errstr, size_t errstr_size)
{
        struct veil_plan *plan = veil_calloc(1, sizeof(*plan));
        struct comp c          = {0};
        struct cres r          = {0};
        avro_schema_t root;
        int rc;

        c.plan           = plan;
        c.schema         = schema;
        c.opts           = opts;
        c.errstr         = errstr;
        c.errstr_size    = errstr_size;
        plan->source_id  = schema->id;
        plan->output_id  = -1;
        plan->max_output = opts->max_output ? opts->max_output
                                            : VEIL_PLAN_DEFAULT_MAX_OUTPUT;
        if (!opts->policy || !opts->purpose) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "plan: policy and purpose are required");
                goto err;
        }
        root = resolve(schema->avro);
        if (opts->root_label) {
                const struct veil_transform *tx = veil_policy_transform(
                        opts->purpose, opts->policy, opts->root_label);

                if (!tx || tx->kind == VEIL_TX_DROP) {
                        veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                  "class '%s' is not licensed for purpose "
                                  "'%s'",
                                  opts->root_label, opts->purpose->name);
                        goto err;
                }
                field_add(&c, "", opts->root_label, VEIL_LABEL_OVERRIDE,
                          VEIL_PLAN_LICENSED, tx->kind);
                if (tx->kind == VEIL_TX_NULL) {
                        rc = result_nullify(&c, root, schema->json, "", "", 0,
                                            &r);
                } else {
                        rc = veil_tx_check(tx, errstr, errstr_size);
                        if (!rc)
                                rc = compile_type(&c, root, schema->json, "",
                                                  "", opts->root_label, tx,
                                                  M_CLASSIFY, 0, true, &r);
                }
        } else {
                if (avro_typeof(root) != AVRO_RECORD) {
                        veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                  "the value schema is a %s, not a record: "
                                  "its fields cannot be classified",
                                  avro_schema_type_name(root));
                        goto err;
                }
                rc = compile_type(&c, root, schema->json, "", "", NULL, NULL,
                                  M_CLASSIFY, 0, true, &r);
        }
        if (rc)
                goto err;
        if (r.dropped) {
                veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                          "nothing of the value reaches purpose '%s'",
                          opts->purpose->name);
                goto err;
        }
        plan->root    = r.node;
        plan->derived = veil_derive_finish(r.type);
        r.type        = NULL;
        plan->derived_text =
                json_dumps(plan->derived, JSON_COMPACT | JSON_ENCODE_ANY |
                                                  JSON_PRESERVE_ORDER);
        if (!plan->derived_text)
                abort();
        free(c.memo);
        return plan;
err:
        json_decref(r.type);
        free(c.memo);
        veil_plan_destroy(plan);
        return NULL;
}

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
        t    = resolve(t);
        j    = jnorm(j);
        kind = pk_of(avro_typeof(t));
        switch (kind) {
        case PK_RECORD: {
                struct comp c  = {.schema = schema};
                char *fn       = NULL, *ins;
                json_t *def    = named_def(&c, t, j, ns, &fn);
                json_t *fields = json_object_get(def, "fields");

                ins = inner_ns(fn ? fn : "");
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
                lt = lt_of(kind, j, NULL);
                if (leaf_ok(tx->kind, kind, lt))
                        return 0;
                {
                        char tl[128];

                        type_label(tl, sizeof(tl), kind, lt,
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
                avro_schema_t pt = resolve(p->type);

                while (avro_typeof(pt) == AVRO_UNION ||
                       avro_typeof(pt) == AVRO_ARRAY ||
                       avro_typeof(pt) == AVRO_MAP) {
                        if (avro_typeof(pt) == AVRO_ARRAY)
                                pt = resolve(avro_schema_array_items(pt));
                        else if (avro_typeof(pt) == AVRO_MAP)
                                pt = resolve(avro_schema_map_values(pt));
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

/* ---- executor ----------------------------------------------------------- */

struct ex {
        const uint8_t *p;
        const uint8_t *end;
        const uint8_t *start;
        const uint8_t *copy; /* start of the pending verbatim range */
        struct veil_buf *out;
        size_t limit; /* out->len may not pass it */
        const struct veil_plan *plan;
        struct veil_plan_env *env;
        uint64_t empty_items;
        const char *err_path;
};

#define TRY(x)                                                                 \
        do {                                                                   \
                enum veil_wire_err try_rc_ = (x);                              \
                if (try_rc_)                                                   \
                        return try_rc_;                                        \
        } while (0)

static inline __attribute__((always_inline)) enum veil_wire_err
ex_varint(struct ex *e, int max_bytes, int64_t *v)
{
        /* Most varints in real records are one byte. */
        if (e->p < e->end && !(*e->p & 0x80)) {
                uint8_t b = *e->p++;

                *v = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
                return VEIL_WIRE_OK;
        }
        /* Far from the end no byte needs a bounds check (timestamps take
         * 6 to 8 bytes). */
        if (e->end - e->p >= VEIL_VARINT_MAX) {
                const uint8_t *q = e->p;
                uint64_t u       = 0;
                int i;

                for (i = 0; i < max_bytes; i++) {
                        uint8_t b = q[i];

                        u |= (uint64_t)(b & 0x7f) << (7 * i);
                        if (b & 0x80)
                                continue;
                        if ((i == 9 && b > 1) ||
                            (max_bytes <= 5 && u > UINT32_MAX))
                                return VEIL_WIRE_BAD_VARINT;
                        e->p = q + i + 1;
                        *v   = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
                        return VEIL_WIRE_OK;
                }
                return VEIL_WIRE_BAD_VARINT;
        }
        return veil_varint_read(&e->p, e->end, max_bytes, v);
}

/* Room for n more output bytes, within the plan's output limit. */
static inline enum veil_wire_err ex_room(struct ex *e, size_t n)
{
        if (n > e->limit - e->out->len)
                return VEIL_WIRE_TOO_LARGE;
        if (!veil_buf_reserve(e->out, n))
                return VEIL_WIRE_TOO_LARGE;
        return VEIL_WIRE_OK;
}

/* Append the pending verbatim range up to `upto`. */
static inline enum veil_wire_err ex_flush(struct ex *e, const uint8_t *upto)
{
        size_t n = (size_t)(upto - e->copy);

        if (n) {
                TRY(ex_room(e, n));
                memcpy(e->out->data + e->out->len, e->copy, n);
                e->out->len += n;
        }
        e->copy = upto;
        return VEIL_WIRE_OK;
}

static inline void ex_put_varint(struct ex *e, int64_t v)
{
        e->out->len += veil_varint_write(e->out->data + e->out->len, v);
}

static enum veil_wire_err ex_put_bytes(struct ex *e, const void *p, size_t n)
{
        TRY(ex_room(e, VEIL_VARINT_MAX + n));
        ex_put_varint(e, (int64_t)n);
        if (n)
                memcpy(e->out->data + e->out->len, p, n);
        e->out->len += n;
        return VEIL_WIRE_OK;
}

/* Read the length and bytes of a string/bytes value. */
static inline __attribute__((always_inline)) enum veil_wire_err
ex_lenbytes(struct ex *e, const uint8_t **data, size_t *len)
{
        int64_t n;

        TRY(ex_varint(e, 10, &n));
        if (n < 0)
                return VEIL_WIRE_BAD_LENGTH;
        if ((uint64_t)n > (uint64_t)(e->end - e->p))
                return VEIL_WIRE_TRUNCATED;
        *data = e->p;
        *len  = (size_t)n;
        e->p += n;
        return VEIL_WIRE_OK;
}

/* A block header of an array or map: the item count (negative counts are
 * followed by the block's size in bytes, which *sizep gets; else -1). */
static inline enum veil_wire_err ex_block(struct ex *e,
                                          const struct pnode *item, bool map,
                                          int64_t *countp, int64_t *sizep)
{
        int64_t count, size = -1;
        uint64_t min;

        TRY(ex_varint(e, 10, &count));
        if (count < 0) {
                if (count == INT64_MIN)
                        return VEIL_WIRE_BAD_LENGTH;
                count = -count;
                TRY(ex_varint(e, 10, &size));
                if (size < 0 || size > e->end - e->p)
                        return size < 0 ? VEIL_WIRE_BAD_LENGTH
                                        : VEIL_WIRE_TRUNCATED;
        }
        /* Every item takes at least `min` bytes; items that take none are
         * bounded by count alone (hostile input: 2^62 nulls). */
        min = (uint64_t)item->min_size + (map ? 1 : 0);
        if (min) {
                if ((uint64_t)count > (uint64_t)(e->end - e->p) / min)
                        return VEIL_WIRE_TRUNCATED;
        } else {
                e->empty_items += (uint64_t)count;
                if (e->empty_items > VEIL_PLAN_MAX_EMPTY_ITEMS)
                        return VEIL_WIRE_BAD_LENGTH;
        }
        *countp = count;
        *sizep  = size;
        return VEIL_WIRE_OK;
}

/* Remember the innermost path an error passes through (cold path). */
static enum veil_wire_err __attribute__((noinline, cold))
ex_fail(struct ex *e, const struct pnode *node, enum veil_wire_err rc)
{
        if (!e->err_path)
                e->err_path = node->path;
        return rc;
}

/* Validate and skip one leaf value (kinds below PK_RECORD). Inline: most
 * of a record is leaves, and a call per leaf costs as much as the work. */
static inline __attribute__((always_inline)) enum veil_wire_err
ex_skip_leaf(struct ex *e, const struct pnode *node)
{
        const uint8_t *data;
        size_t len;
        int64_t v;

        switch (node->kind) {
        case PK_NULL:
                return VEIL_WIRE_OK;
        case PK_BOOL:
                if (e->p >= e->end)
                        return VEIL_WIRE_TRUNCATED;
                if (*e->p > 1)
                        return VEIL_WIRE_BAD_VALUE;
                e->p++;
                return VEIL_WIRE_OK;
        case PK_INT:
                return ex_varint(e, 5, &v);
        case PK_LONG:
                return ex_varint(e, 10, &v);
        case PK_FLOAT:
        case PK_DOUBLE:
        case PK_FIXED:
                len = node->kind == PK_FLOAT    ? 4
                      : node->kind == PK_DOUBLE ? 8
                                                : node->n;
                if ((size_t)(e->end - e->p) < len)
                        return VEIL_WIRE_TRUNCATED;
                e->p += len;
                return VEIL_WIRE_OK;
        case PK_BYTES:
        case PK_STRING:
                return ex_lenbytes(e, &data, &len);
        case PK_ENUM:
        default:
                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_VALUE;
                return VEIL_WIRE_OK;
        }
}

static enum veil_wire_err ex_skip(struct ex *e, const struct pnode *node,
                                  int depth)
{
        const struct veil_plan *plan = e->plan;
        enum veil_wire_err rc;
        const uint8_t *data;
        size_t len;
        int64_t v;
        uint32_t i;

        if (node->act == PA_DROP || node->act == PA_NULLIFY)
                node = &plan->nodes[node->kids];
        if (node->kind < PK_RECORD)
                return ex_skip_leaf(e, node);
        if (depth >= VEIL_PLAN_MAX_DEPTH)
                return VEIL_WIRE_TOO_DEEP;
        switch (node->kind) {
        case PK_RECORD:
                for (i = 0; i < node->n; i++) {
                        const struct pnode *k =
                                &plan->nodes[plan->kids[node->kids + i].node];

                        rc = k->kind < PK_RECORD && k->act == PA_PASS
                                     ? ex_skip_leaf(e, k)
                                     : ex_skip(e, k, depth + 1);
                        if (rc)
                                return ex_fail(e, k, rc);
                }
                return VEIL_WIRE_OK;
        case PK_ARRAY:
        case PK_MAP: {
                const struct pnode *item = &plan->nodes[node->kids];
                bool map                 = node->kind == PK_MAP;
                int64_t count, size, k;

                for (;;) {
                        const uint8_t *block;

                        TRY(ex_block(e, item, map, &count, &size));
                        if (!count)
                                return VEIL_WIRE_OK;
                        block = e->p;
                        for (k = 0; k < count; k++) {
                                if (map)
                                        TRY(ex_lenbytes(e, &data, &len));
                                rc = item->kind < PK_RECORD &&
                                                     item->act == PA_PASS
                                             ? ex_skip_leaf(e, item)
                                             : ex_skip(e, item, depth + 1);
                                if (rc)
                                        return ex_fail(e, item, rc);
                        }
                        if (size >= 0 && e->p - block != size)
                                return VEIL_WIRE_BAD_LENGTH;
                }
        }
        case PK_UNION:
        default: {
                const struct pnode *b;

                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_UNION_INDEX;
                b  = &plan->nodes[plan->kids[node->kids + v].node];
                rc = b->kind < PK_RECORD && b->act == PA_PASS
                             ? ex_skip_leaf(e, b)
                             : ex_skip(e, b, depth + 1);
                return rc ? ex_fail(e, b, rc) : VEIL_WIRE_OK;
        }
        }
}

/* Decimal text of an integer: what hash reads for int and long, so that a
 * customer id hashes the same whether a topic carries it as long or as
 * string. */
static size_t int_text(int64_t v, char *buf)
{
        char tmp[24];
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        size_t n = 0, i = 0;

        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                buf[i++] = '-';
        while (n)
                buf[i++] = tmp[--n];
        return i;
}

static uint32_t rd32le(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
}

static uint64_t rd64le(const uint8_t *p)
{
        return (uint64_t)rd32le(p) | (uint64_t)rd32le(p + 4) << 32;
}

static void wr32le(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

static int64_t units_per_day(enum lt lt)
{
        switch (lt) {
        case LT_TS_MICROS:
                return VEIL_TX_MICROS_PER_DAY;
        case LT_TS_NANOS:
                return VEIL_TX_NANOS_PER_DAY;
        default:
                return VEIL_TX_MILLIS_PER_DAY;
        }
}

/* Numbers under generalize: bucket floors, dates and timestamps → year. */
static enum veil_wire_err ex_generalize_num(struct ex *e,
                                            const struct pnode *node,
                                            int64_t iv, const uint8_t *raw)
{
        const struct veil_transform *tx = node->tx;
        uint8_t *o;

        TRY(ex_room(e, VEIL_VARINT_MAX));
        switch (node->kind) {
        case PK_INT: {
                int32_t r;

                if (node->logical == LT_DATE) {
                        r = veil_tx_year_from_days((int32_t)iv);
                } else if (veil_tx_bucket_int((int32_t)iv, tx->generalize.width,
                                              &r)) {
                        return VEIL_WIRE_BAD_VALUE;
                }
                ex_put_varint(e, r);
                return VEIL_WIRE_OK;
        }
        case PK_LONG: {
                int64_t r;

                if (node->logical == LT_TS_MILLIS ||
                    node->logical == LT_TS_MICROS ||
                    node->logical == LT_TS_NANOS) {
                        r = veil_tx_year_from_timestamp(
                                iv, units_per_day(node->logical));
                } else if (veil_tx_bucket_long(iv, tx->generalize.width, &r)) {
                        return VEIL_WIRE_BAD_VALUE;
                }
                ex_put_varint(e, r);
                return VEIL_WIRE_OK;
        }
        case PK_FLOAT: {
                uint32_t u = rd32le(raw);
                float f, r;

                memcpy(&f, &u, 4);
                if (veil_tx_bucket_float(f, tx->generalize.width, &r))
                        return VEIL_WIRE_BAD_VALUE;
                memcpy(&u, &r, 4);
                o = e->out->data + e->out->len;
                wr32le(o, u);
                e->out->len += 4;
                return VEIL_WIRE_OK;
        }
        case PK_DOUBLE: {
                uint64_t u = rd64le(raw);
                double d, r;

                memcpy(&d, &u, 8);
                if (veil_tx_bucket_double(d, tx->generalize.width, &r))
                        return VEIL_WIRE_BAD_VALUE;
                memcpy(&u, &r, 8);
                o = e->out->data + e->out->len;
                wr32le(o, (uint32_t)u);
                wr32le(o + 4, (uint32_t)(u >> 32));
                e->out->len += 8;
                return VEIL_WIRE_OK;
        }
        default:
                return VEIL_WIRE_BAD_VALUE;
        }
}

static enum veil_wire_err ex_put_tx(struct ex *e,
                                    const struct veil_transform *tx,
                                    enum veil_encrypt_output output,
                                    const uint8_t *data, size_t len);

/* Transform one leaf: read it, flush what precedes it, write the result. */
/* A leaf as read from the input: its bytes (string, bytes, fixed, float,
 * the text of an integer, an enum symbol) and an integer's value. */
struct leaf {
        const uint8_t *data;
        size_t len;
        int64_t iv;
        char num[24];
};

static inline enum veil_wire_err
ex_read_leaf(struct ex *e, const struct pnode *node, struct leaf *lf)
{
        lf->data = NULL;
        lf->len  = 0;
        lf->iv   = 0;
        switch (node->kind) {
        case PK_STRING:
        case PK_BYTES:
                return ex_lenbytes(e, &lf->data, &lf->len);
        case PK_INT:
        case PK_LONG:
                TRY(ex_varint(e, node->kind == PK_INT ? 5 : 10, &lf->iv));
                lf->len  = int_text(lf->iv, lf->num);
                lf->data = (const uint8_t *)lf->num;
                return VEIL_WIRE_OK;
        case PK_FLOAT:
        case PK_DOUBLE:
        case PK_FIXED:
                lf->len = node->kind == PK_FLOAT    ? 4
                          : node->kind == PK_DOUBLE ? 8
                                                    : node->n;
                if ((size_t)(e->end - e->p) < lf->len)
                        return VEIL_WIRE_TRUNCATED;
                lf->data = e->p;
                e->p += lf->len;
                return VEIL_WIRE_OK;
        case PK_ENUM:
                TRY(ex_varint(e, 5, &lf->iv));
                if (lf->iv < 0 || lf->iv >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_VALUE;
                lf->data =
                        (const uint8_t *)e->plan->syms[node->syms + lf->iv].s;
                lf->len = e->plan->syms[node->syms + lf->iv].len;
                return VEIL_WIRE_OK;
        case PK_BOOL:
                if (e->p >= e->end)
                        return VEIL_WIRE_TRUNCATED;
                if (*e->p > 1)
                        return VEIL_WIRE_BAD_VALUE;
                e->p++;
                return VEIL_WIRE_OK;
        default:
                return VEIL_WIRE_OK;
        }
}

/* Write the transform of the leaf read from [vstart, vend). */
static enum veil_wire_err ex_write_tx(struct ex *e, const struct pnode *node,
                                      const uint8_t *vstart,
                                      const uint8_t *vend,
                                      const struct leaf *lf)
{
        const struct veil_transform *tx = node->tx;

        TRY(ex_flush(e, vstart));
        e->copy = vend;
        if (tx->kind == VEIL_TX_GENERALIZE && node->kind != PK_STRING)
                return ex_generalize_num(e, node, lf->iv, lf->data);
        return ex_put_tx(e, tx, tx->encrypt.output, lf->data, lf->len);
}

/* Transform one leaf: read it, flush what precedes it, write the result. */
static enum veil_wire_err ex_tx(struct ex *e, const struct pnode *node)
{
        const uint8_t *vstart = e->p;
        struct leaf lf;

        TRY(ex_read_leaf(e, node, &lf));
        return ex_write_tx(e, node, vstart, e->p, &lf);
}

/* Write the transform of a string or bytes value (or of the text of an
 * integer or enum symbol, for hash). `output` is encrypt's form: a map key
 * always takes the string token. */
static enum veil_wire_err ex_put_tx(struct ex *e,
                                    const struct veil_transform *tx,
                                    enum veil_encrypt_output output,
                                    const uint8_t *data, size_t len)
{
        struct veil_plan_env *env = e->env;
        size_t n;

        switch (tx->kind) {
        case VEIL_TX_HASH: {
                /* Only values in the input are remembered (an integer's
                 * text lives on the stack); the output only grows within a
                 * record, so a remembered token stays where it was. */
                bool in_body = data >= e->start && data < e->end;
                unsigned i;

                n = veil_tx_hash_len(env->keys);
                TRY(ex_room(e, VEIL_VARINT_MAX + n));
                ex_put_varint(e, (int64_t)n);
                for (i = 0; in_body && i < env->n_memo; i++)
                        if (env->memo[i].len == len &&
                            !memcmp(env->memo[i].val, data, len)) {
                                memcpy(e->out->data + e->out->len,
                                       e->out->data + env->memo[i].off, n);
                                e->out->len += n;
                                return VEIL_WIRE_OK;
                        }
                if (veil_tx_hash(env->keys, data, len,
                                 (char *)e->out->data + e->out->len, n, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                if (in_body && env->n_memo < VEIL_PLAN_MEMO) {
                        env->memo[env->n_memo].val   = data;
                        env->memo[env->n_memo].len   = len;
                        env->memo[env->n_memo++].off = e->out->len;
                }
                e->out->len += n;
                return VEIL_WIRE_OK;
        }
        case VEIL_TX_ENCRYPT:
                if (tx->encrypt.per_subject) {
                        if (!env->subject || !env->subject->keyed)
                                return VEIL_WIRE_TRANSFORM_FAILED;
                        n = veil_subject_encrypt_len(
                                env->subject, tx->encrypt.mode, output, len);
                        TRY(ex_room(e, VEIL_VARINT_MAX + n));
                        ex_put_varint(e, (int64_t)n);
                        if (veil_subject_encrypt(env->subject, tx->encrypt.mode,
                                                 output, data, len,
                                                 e->out->data + e->out->len, n,
                                                 &n))
                                return VEIL_WIRE_TRANSFORM_FAILED;
                        e->out->len += n;
                        return VEIL_WIRE_OK;
                }
                n = veil_tx_encrypt_len(env->keys, tx->encrypt.mode, output,
                                        len);
                TRY(ex_room(e, VEIL_VARINT_MAX + n));
                ex_put_varint(e, (int64_t)n);
                if (veil_tx_encrypt(env->keys, tx->encrypt.mode, output, data,
                                    len, e->out->data + e->out->len, n, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                e->out->len += n;
                return VEIL_WIRE_OK;
        case VEIL_TX_MASK:
                if (!veil_buf_reserve(&env->tmp, len + 1))
                        return VEIL_WIRE_TOO_LARGE;
                if (veil_tx_mask(tx, (const char *)data, len,
                                 (char *)env->tmp.data, len + 1, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                return ex_put_bytes(e, env->tmp.data, n);
        case VEIL_TX_REDACT_TEXT: {
                char err[128];

                if (veil_redact_text(env->detect, env->detect_scratch, tx,
                                     (const char *)data, len, &env->text, NULL,
                                     err, sizeof(err)))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                return ex_put_bytes(e, env->text.data, env->text.len);
        }
        case VEIL_TX_GENERALIZE:
                return ex_put_bytes(e, data,
                                    veil_tx_prefix_len((const char *)data, len,
                                                       tx->generalize.prefix));
        default:
                return VEIL_WIRE_TRANSFORM_FAILED;
        }
}

/* ---- map keys a transform made equal ---------------------------------------
 * Readers disagree over a map with two equal keys (avro-c merges nested
 * values, Java and Python keep the last), so a plan never writes one: when
 * the keys' transform can make two equal (mask, generalize, redact_text),
 * each entry becomes a block of its own and an entry whose key equals an
 * earlier one of the same map is left out (the first wins). The keys seen
 * live in hash tables in env->seen, a stack (a map inside a value pushes
 * its own), keyed by a per-env random seed so that no input can be built
 * to collide them. The memory is reused: steady state allocates nothing. */

struct kslot {
        uint64_t off; /* the key as written (length and bytes) in out */
        uint32_t len;
        uint32_t hash; /* 0: empty */
};

struct kset {
        size_t base; /* offset of the table in env->seen */
        uint32_t cap, n;
};

static uint32_t key_hash(uint64_t seed, const uint8_t *p, size_t n)
{
        uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL), w;

        for (; n >= 8; p += 8, n -= 8) {
                memcpy(&w, p, 8);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
                h ^= h >> 29;
        }
        w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 32;
        return (uint32_t)h | 1;
}

static bool kset_open(struct ex *e, struct kset *ks)
{
        struct veil_buf *b = &e->env->seen;
        const size_t sz    = 16 * sizeof(struct kslot);

        if (!e->env->seen_seed &&
            getrandom(&e->env->seen_seed, sizeof(e->env->seen_seed),
                      GRND_NONBLOCK) != (ssize_t)sizeof(e->env->seen_seed))
                e->env->seen_seed =
                        (uint64_t)(uintptr_t)e->env ^ 0x6a09e667f3bcc909ULL;
        ks->base = b->len;
        ks->cap  = 16;
        ks->n    = 0;
        if (!veil_buf_reserve(b, sz))
                return false;
        memset(b->data + b->len, 0, sz);
        b->len += sz;
        return true;
}

static void kset_put(struct kslot *slots, uint32_t cap, const struct kslot *k)
{
        uint32_t i;

        for (i = k->hash & (cap - 1); slots[i].hash; i = (i + 1) & (cap - 1))
                ;
        slots[i] = *k;
}

/* Double the table on top of the stack (no nested table is open then). */
static bool kset_grow(struct ex *e, struct kset *ks)
{
        struct veil_buf *b = &e->env->seen;
        size_t old         = (size_t)ks->cap * sizeof(struct kslot);
        struct kslot *slots, *tmp;
        uint32_t i;

        if (ks->cap >= UINT32_MAX / 4 || !veil_buf_reserve(b, 2 * old))
                return false;
        slots = (struct kslot *)(void *)(b->data + ks->base);
        tmp   = (struct kslot *)(void *)(b->data + ks->base + 2 * old);
        memcpy(tmp, slots, old);
        memset(slots, 0, 2 * old);
        for (i = 0; i < ks->cap; i++)
                if (tmp[i].hash)
                        kset_put(slots, ks->cap * 2, &tmp[i]);
        ks->cap *= 2;
        b->len = ks->base + 2 * old;
        return true;
}

/* Is out[off, out->len) a key this map has not had yet? Adds it. */
static enum veil_wire_err kset_add(struct ex *e, struct kset *ks, size_t off,
                                   bool *fresh)
{
        const uint8_t *key = e->out->data + off;
        size_t len         = e->out->len - off;
        struct kslot k, *slots;
        uint32_t i;

        if (len > UINT32_MAX)
                return VEIL_WIRE_TOO_LARGE;
        if ((ks->n + 1) * 2 > ks->cap && !kset_grow(e, ks))
                return VEIL_WIRE_TOO_LARGE;
        k.off  = off;
        k.len  = (uint32_t)len;
        k.hash = key_hash(e->env->seen_seed, key, len);
        slots  = (struct kslot *)(void *)(e->env->seen.data + ks->base);
        for (i = k.hash & (ks->cap - 1); slots[i].hash;
             i = (i + 1) & (ks->cap - 1))
                if (slots[i].hash == k.hash && slots[i].len == k.len &&
                    !memcmp(e->out->data + slots[i].off, key, len)) {
                        *fresh = false;
                        return VEIL_WIRE_OK;
                }
        slots[i] = k;
        ks->n++;
        *fresh = true;
        return VEIL_WIRE_OK;
}

static enum veil_wire_err ex_run(struct ex *e, const struct pnode *node,
                                 int depth);

/* One entry of a unique-keys map: a block of one, or nothing when its key
 * was had. */
static enum veil_wire_err ex_map_entry(struct ex *e, const struct pnode *node,
                                       const struct pnode *item,
                                       struct kset *ks, int depth)
{
        const uint8_t *key = e->p, *data;
        enum veil_wire_err rc;
        size_t len, at;
        bool fresh;

        TRY(ex_lenbytes(e, &data, &len));
        TRY(ex_flush(e, key));
        e->copy = e->p;
        at      = e->out->len;
        TRY(ex_room(e, 1));
        e->out->data[e->out->len++] = 2; /* a block of 1 (zig-zag) */
        TRY(ex_put_tx(e, node->tx, VEIL_ENCRYPT_OUT_STRING, data, len));
        TRY(kset_add(e, ks, at + 1, &fresh));
        if (fresh)
                rc = ex_run(e, item, depth + 1);
        else {
                e->out->len = at;
                rc          = ex_skip(e, item, depth + 1);
                e->copy     = e->p;
        }
        return rc ? ex_fail(e, item, rc) : VEIL_WIRE_OK;
}

static enum veil_wire_err ex_map_unique(struct ex *e, const struct pnode *node,
                                        int depth)
{
        const struct pnode *item = &e->plan->nodes[node->kids];
        enum veil_wire_err rc    = VEIL_WIRE_OK;
        int64_t count, size, k;
        struct kset ks;

        if (!kset_open(e, &ks))
                return VEIL_WIRE_TOO_LARGE;
        for (;;) {
                const uint8_t *hdr = e->p, *block;

                rc = ex_block(e, item, true, &count, &size);
                if (rc || !count)
                        break; /* the final 0 stays in the copy range */
                rc = ex_flush(e, hdr);
                if (rc)
                        break;
                e->copy = e->p; /* each entry writes its own header */
                block   = e->p;
                for (k = 0; k < count && !rc; k++)
                        rc = ex_map_entry(e, node, item, &ks, depth);
                if (rc)
                        break;
                if (size >= 0 && e->p - block != size) {
                        rc = VEIL_WIRE_BAD_LENGTH;
                        break;
                }
        }
        e->env->seen.len = ks.base;
        return rc;
}

static enum veil_wire_err ex_run(struct ex *e, const struct pnode *node,
                                 int depth)
{
        const struct veil_plan *plan = e->plan;
        enum veil_wire_err rc;
        uint32_t i;

        switch (node->act) {
        case PA_PASS:
                return ex_skip(e, node, depth);
        case PA_DROP:
                TRY(ex_flush(e, e->p));
                TRY(ex_skip(e, &plan->nodes[node->kids], depth));
                e->copy = e->p;
                return VEIL_WIRE_OK;
        case PA_NULLIFY:
                TRY(ex_flush(e, e->p));
                TRY(ex_skip(e, &plan->nodes[node->kids], depth));
                e->copy = e->p;
                TRY(ex_room(e, 1));
                e->out->data[e->out->len++] = 0; /* branch 0: null */
                return VEIL_WIRE_OK;
        case PA_TX:
                return ex_tx(e, node);
        default:
                break;
        }
        if (depth >= VEIL_PLAN_MAX_DEPTH)
                return VEIL_WIRE_TOO_DEEP;
        switch (node->kind) {
        case PK_RECORD:
                for (i = 0; i < node->n; i++) {
                        const struct pnode *k =
                                &plan->nodes[plan->kids[node->kids + i].node];
                        const struct pnode *sk;

                        /* PASS and DROP fields dominate: no call for them
                         * when they are leaves. */
                        switch (k->act) {
                        case PA_PASS:
                                rc = k->kind < PK_RECORD
                                             ? ex_skip_leaf(e, k)
                                             : ex_skip(e, k, depth + 1);
                                break;
                        case PA_DROP:
                                sk = &plan->nodes[k->kids];
                                rc = ex_flush(e, e->p);
                                if (!rc)
                                        rc = sk->kind < PK_RECORD
                                                     ? ex_skip_leaf(e, sk)
                                                     : ex_skip(e, sk,
                                                               depth + 1);
                                e->copy = e->p;
                                break;
                        case PA_TX:
                                rc = ex_tx(e, k);
                                break;
                        default:
                                rc = ex_run(e, k, depth + 1);
                                break;
                        }
                        if (rc)
                                return ex_fail(e, k, rc);
                }
                return VEIL_WIRE_OK;
        case PK_UNION: {
                const uint8_t *at = e->p;
                const struct pnode *b;
                const struct pkid *k;
                int64_t v;

                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_UNION_INDEX;
                k = &plan->kids[node->kids + v];
                if (k->out != (uint32_t)v) {
                        TRY(ex_flush(e, at));
                        TRY(ex_room(e, VEIL_VARINT_MAX));
                        ex_put_varint(e, k->out);
                        e->copy = e->p;
                }
                b = &plan->nodes[k->node];
                if (b->act == PA_TX)
                        rc = ex_tx(e, b);
                else if (b->kind < PK_RECORD && b->act == PA_PASS)
                        rc = ex_skip_leaf(e, b);
                else
                        rc = ex_run(e, b, depth + 1);
                return rc ? ex_fail(e, b, rc) : VEIL_WIRE_OK;
        }
        case PK_ARRAY:
        case PK_MAP: {
                const struct pnode *item = &plan->nodes[node->kids];
                bool map                 = node->kind == PK_MAP;
                const uint8_t *data;
                size_t len;
                int64_t count, size, k;

                if (node->unique)
                        return ex_map_unique(e, node, depth);
                for (;;) {
                        const uint8_t *hdr = e->p, *block;

                        TRY(ex_block(e, item, map, &count, &size));
                        if (!count)
                                return VEIL_WIRE_OK;
                        if (size >= 0) {
                                /* The items change size, so the block's byte
                                 * size would lie: write a plain count. */
                                TRY(ex_flush(e, hdr));
                                TRY(ex_room(e, VEIL_VARINT_MAX));
                                ex_put_varint(e, count);
                                e->copy = e->p;
                        }
                        block = e->p;
                        for (k = 0; k < count; k++) {
                                if (map) {
                                        const uint8_t *key = e->p;

                                        TRY(ex_lenbytes(e, &data, &len));
                                        if (node->tx) {
                                                TRY(ex_flush(e, key));
                                                e->copy = e->p;
                                                rc      = ex_put_tx(
                                                             e, node->tx,
                                                             VEIL_ENCRYPT_OUT_STRING,
                                                             data, len);
                                                if (rc)
                                                        return ex_fail(e, node,
                                                                       rc);
                                        }
                                }
                                rc = ex_run(e, item, depth + 1);
                                if (rc)
                                        return ex_fail(e, item, rc);
                        }
                        if (size >= 0 && e->p - block != size)
                                return VEIL_WIRE_BAD_LENGTH;
                }
        }
        default:
                return ex_skip(e, node, depth);
        }
}

enum veil_wire_err veil_plan_exec(const struct veil_plan *plan,
                                  struct veil_plan_env *env,
                                  const uint8_t *body, size_t len,
                                  struct veil_buf *out,
                                  struct veil_plan_error *err)
{
        struct veil_plan_env local = {0};
        struct ex e;
        size_t start_len = out->len;
        enum veil_wire_err rc;

        /* Without an env, masks still need a working buffer: a local one
         * (allocated per record, so callers in a loop pass their own). */
        if (!env)
                env = &local;
        env->seen.len = 0;
        env->n_memo   = 0;
        memset(&e, 0, sizeof(e));
        e.p = e.start = e.copy = body;
        e.end                  = body + len;
        e.out                  = out;
        e.plan                 = plan;
        e.env                  = env;
        e.limit                = plan->max_output > SIZE_MAX - start_len
                                         ? SIZE_MAX
                                         : start_len + plan->max_output;
        if ((plan->needs_keys && !env->keys) ||
            (plan->needs_detect && (!env->detect || !env->detect_scratch)))
                rc = VEIL_WIRE_TRANSFORM_FAILED;
        else
                rc = ex_run(&e, &plan->nodes[plan->root], 0);
        if (rc)
                ex_fail(&e, &plan->nodes[plan->root], rc);
        if (!rc && e.p != e.end)
                rc = VEIL_WIRE_TRAILING_BYTES;
        if (!rc)
                rc = ex_flush(&e, e.p);
        if (env == &local)
                veil_plan_env_free(&local);
        if (rc) {
                out->len = start_len;
                if (err) {
                        err->code   = rc;
                        err->offset = (size_t)(e.p - e.start);
                        err->path   = e.err_path;
                }
                return rc;
        }
        if (err) {
                err->code   = VEIL_WIRE_OK;
                err->offset = 0;
                err->path   = NULL;
        }
        return VEIL_WIRE_OK;
}

/* ---- one pass for every purpose ---------------------------------------------
 * The plans of one source schema (the purposes of a route) read the same
 * bytes in the same order. A plan set merges them once into one graph:
 * each merged node holds, for the position, what every plan does there
 * (pass, drop, null, transform, descend) as bit masks, and the positions
 * that no plan transforms or descends into are read once, like a pass in
 * one plan. One reader walks the input once (one decode, one validation);
 * each plan's writer keeps its own pending copy range and output. A
 * failure of the input fails every plan; a failure of one plan's writing
 * (its output limit, a transform) fails that plan only. */

struct mnode {
        uint8_t kind; /* the source type's kind */
        bool quiet;   /* no writer transforms or descends: read once */
        uint8_t srcw; /* the writer whose plan `src` lives in */
        uint32_t drop, nul, tx, desc; /* writers, by bit */
        uint32_t n;                   /* record fields, union branches */
        uint32_t kids;     /* record/union: first in set->kids; array/map:
                            * the item's merged node */
        uint32_t min_size; /* array/map: the largest minimum of the items */
        const struct pnode *src; /* reads (skips) the value */
        const struct pnode *w[VEIL_PLAN_MULTI_MAX]; /* each writer's node */
};

struct mmemo {
        uint32_t mask;
        const struct pnode *w[VEIL_PLAN_MULTI_MAX];
        uint32_t node;
};

struct veil_plan_set {
        const struct veil_plan *plans[VEIL_PLAN_MULTI_MAX];
        size_t n;
        struct mnode *nodes;
        size_t n_nodes, cap_nodes;
        uint32_t *kids;
        size_t n_kids, cap_kids;
        struct mmemo *memo;
        size_t n_memo, cap_memo;
        uint32_t root;
};

void veil_plan_set_destroy(struct veil_plan_set *set)
{
        if (!set)
                return;
        free(set->nodes);
        free(set->kids);
        free(set->memo);
        free(set);
}

/* The merged node of the writers in `mask` at nodes w[] (recursive types
 * meet the same tuple again: the memo points back). */
static int set_build(struct veil_plan_set *set, uint32_t mask,
                     const struct pnode *const *w, int depth, uint32_t *out,
                     char *errstr, size_t errstr_size)
{
        struct mnode mn = {0};
        uint32_t idx, i, f, first = UINT32_MAX, cmask;
        size_t m;
        int rc;

        for (m = 0; m < set->n_memo; m++)
                if (set->memo[m].mask == mask &&
                    !memcmp(set->memo[m].w, w, sizeof(set->memo[m].w))) {
                        *out = set->memo[m].node;
                        return 0;
                }
        if (depth > 4 * VEIL_PLAN_MAX_DEPTH)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "plan set: schema nests too deep");
        for (i = 0; i < set->n; i++) {
                const struct pnode *node = w[i], *src;

                if (!(mask & (1u << i)))
                        continue;
                mn.w[i] = node;
                src     = node;
                switch (node->act) {
                case PA_DROP:
                        mn.drop |= 1u << i;
                        src = &set->plans[i]->nodes[node->kids];
                        break;
                case PA_NULLIFY:
                        mn.nul |= 1u << i;
                        src = &set->plans[i]->nodes[node->kids];
                        break;
                case PA_TX:
                        mn.tx |= 1u << i;
                        break;
                case PA_DESCEND:
                        mn.desc |= 1u << i;
                        if (first == UINT32_MAX)
                                first = i;
                        break;
                default:
                        break;
                }
                if (!mn.src) {
                        mn.src  = src;
                        mn.srcw = (uint8_t)i;
                        mn.kind = src->kind;
                } else if (src->kind != mn.kind) {
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "plan set: the plans do not read "
                                         "the same schema");
                }
        }
        mn.quiet   = !(mn.tx | mn.desc);
        set->nodes = grow(set->nodes, &set->cap_nodes, set->n_nodes + 1,
                          sizeof(*set->nodes));
        idx        = (uint32_t)set->n_nodes++;
        set->memo  = grow(set->memo, &set->cap_memo, set->n_memo + 1,
                          sizeof(*set->memo));
        set->memo[set->n_memo].mask = mask;
        memcpy(set->memo[set->n_memo].w, w, sizeof(set->memo[0].w));
        set->memo[set->n_memo++].node = idx;
        cmask                         = mn.desc;
        if (cmask) {
                const struct pnode *fw = mn.w[first];
                const struct pnode *cw[VEIL_PLAN_MULTI_MAX];
                uint32_t base, nk = 0, item;

                for (i = 0; i < set->n; i++)
                        if ((cmask & (1u << i)) && mn.w[i]->kind == PK_RECORD &&
                            mn.w[i]->n != fw->n)
                                return veil_errf(errstr, errstr_size,
                                                 VEIL_EINVAL,
                                                 "plan set: the plans do not "
                                                 "read the same schema");
                switch (mn.kind) {
                case PK_RECORD:
                case PK_UNION:
                        nk = fw->n;
                        set->kids =
                                grow(set->kids, &set->cap_kids,
                                     set->n_kids + nk + 1, sizeof(*set->kids));
                        base = (uint32_t)set->n_kids;
                        set->n_kids += nk;
                        mn.n    = nk;
                        mn.kids = base;
                        for (f = 0; f < nk; f++) {
                                memset(cw, 0, sizeof(cw));
                                for (i = 0; i < set->n; i++)
                                        if (cmask & (1u << i))
                                                cw[i] = &set->plans[i]->nodes
                                                                 [set->plans[i]
                                                                          ->kids[mn.w[i]->kids +
                                                                                 f]
                                                                          .node];
                                rc = set_build(set, cmask, cw, depth + 1, &item,
                                               errstr, errstr_size);
                                if (rc)
                                        return rc;
                                set->kids[base + f] = item;
                        }
                        break;
                case PK_ARRAY:
                case PK_MAP:
                        memset(cw, 0, sizeof(cw));
                        for (i = 0; i < set->n; i++)
                                if (cmask & (1u << i)) {
                                        cw[i] = &set->plans[i]
                                                         ->nodes[mn.w[i]->kids];
                                        if (cw[i]->min_size > mn.min_size)
                                                mn.min_size = cw[i]->min_size;
                                }
                        rc = set_build(set, cmask, cw, depth + 1, &item, errstr,
                                       errstr_size);
                        if (rc)
                                return rc;
                        mn.kids = item;
                        break;
                default:
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "plan set: a leaf cannot descend");
                }
        }
        set->nodes[idx] = mn;
        *out            = idx;
        return 0;
}

struct veil_plan_set *veil_plan_set_new(const struct veil_plan *const *plans,
                                        size_t n, char *errstr,
                                        size_t errstr_size)
{
        struct veil_plan_set *set;
        const struct pnode *w[VEIL_PLAN_MULTI_MAX] = {0};
        size_t i;

        if (!n || n > VEIL_PLAN_MULTI_MAX) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "plan set: 1 to %d plans", VEIL_PLAN_MULTI_MAX);
                return NULL;
        }
        set    = veil_calloc(1, sizeof(*set));
        set->n = n;
        for (i = 0; i < n; i++) {
                if (plans[i]->source_id != plans[0]->source_id) {
                        veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                  "plan set: plans of schemas %d and %d",
                                  plans[0]->source_id, plans[i]->source_id);
                        veil_plan_set_destroy(set);
                        return NULL;
                }
                set->plans[i] = plans[i];
                w[i]          = &plans[i]->nodes[plans[i]->root];
        }
        if (set_build(set, (uint32_t)((1u << n) - 1), w, 0, &set->root, errstr,
                      errstr_size)) {
                veil_plan_set_destroy(set);
                return NULL;
        }
        free(set->memo);
        set->memo   = NULL;
        set->n_memo = set->cap_memo = 0;
        return set;
}

struct mx {
        struct ex r; /* the reader: p, end, empty_items, err_path */
        struct ex o[VEIL_PLAN_MULTI_MAX];
        enum veil_wire_err dead[VEIL_PLAN_MULTI_MAX];
        uint32_t deadm; /* writers that failed */
        uint32_t susp;  /* writers left out of the value being read (an
                         * entry whose key they had already) */
        const struct veil_plan_set *set;
};

/* Each set bit i of mask, lowest first. */
#define FOR_BITS(i, mask)                                                      \
        for (uint32_t bits_ = (mask), i;                                       \
             bits_ && ((i = (uint32_t)__builtin_ctz(bits_)), 1);               \
             bits_ &= bits_ - 1)

static inline uint32_t mx_live(const struct mx *m)
{
        return ~(m->deadm | m->susp);
}

static inline void mx_kill(struct mx *m, uint32_t i, enum veil_wire_err rc)
{
        if (!m->dead[i])
                m->dead[i] = rc;
        m->deadm |= 1u << i;
}

static inline enum veil_wire_err mx_skip(struct mx *m, const struct mnode *mn,
                                         int depth)
{
        m->r.plan = m->set->plans[mn->srcw];
        if (mn->src->kind < PK_RECORD)
                return ex_skip_leaf(&m->r, mn->src);
        return ex_skip(&m->r, mn->src, depth);
}

static enum veil_wire_err mx_run(struct mx *m, const struct mnode *mn,
                                 int depth);

static enum veil_wire_err mx_leaf(struct mx *m, const struct mnode *mn)
{
        const uint8_t *vstart = m->r.p;
        uint32_t want         = mn->tx & mx_live(m);
        uint32_t first        = (uint32_t)__builtin_ctz(want);
        struct leaf lf;

        m->r.plan = m->set->plans[first];
        TRY(ex_read_leaf(&m->r, mn->w[first], &lf));
        FOR_BITS(i, want)
        {
                enum veil_wire_err rc =
                        ex_write_tx(&m->o[i], mn->w[i], vstart, m->r.p, &lf);

                if (rc)
                        mx_kill(m, i, rc);
        }
        return VEIL_WIRE_OK;
}

static enum veil_wire_err mx_record(struct mx *m, const struct mnode *mn,
                                    int depth)
{
        const struct veil_plan_set *set = m->set;
        const uint32_t *kids            = &set->kids[mn->kids];
        enum veil_wire_err rc;
        uint32_t f;

        for (f = 0; f < mn->n; f++) {
                const struct mnode *c = &set->nodes[kids[f]];

                /* The common case without a call: a leaf every writer
                 * passes or drops. */
                if (c->quiet && c->kind < PK_RECORD && !c->nul) {
                        const uint8_t *at = m->r.p;
                        uint32_t drop     = c->drop & mx_live(m);

                        FOR_BITS(i, drop)
                        {
                                rc = ex_flush(&m->o[i], at);
                                if (rc)
                                        mx_kill(m, i, rc);
                        }
                        rc = ex_skip_leaf(&m->r, c->src);
                        FOR_BITS(i, drop)
                        m->o[i].copy = m->r.p;
                } else {
                        rc = mx_run(m, c, depth + 1);
                }
                if (rc)
                        return ex_fail(&m->r, c->w[c->srcw], rc);
        }
        return VEIL_WIRE_OK;
}

static enum veil_wire_err mx_union(struct mx *m, const struct mnode *mn,
                                   int depth)
{
        const uint8_t *at = m->r.p;
        const struct mnode *c;
        enum veil_wire_err rc;
        int64_t v;

        TRY(ex_varint(&m->r, 5, &v));
        if (v < 0 || v >= (int64_t)mn->n)
                return VEIL_WIRE_BAD_UNION_INDEX;
        FOR_BITS(i, mn->desc & mx_live(m))
        {
                const struct veil_plan *plan = m->set->plans[i];
                const struct pkid *k         = &plan->kids[mn->w[i]->kids + v];
                struct ex *o                 = &m->o[i];

                if (k->out == (uint32_t)v)
                        continue;
                rc = ex_flush(o, at);
                if (!rc)
                        rc = ex_room(o, VEIL_VARINT_MAX);
                if (rc) {
                        mx_kill(m, i, rc);
                        continue;
                }
                ex_put_varint(o, k->out);
                o->copy = m->r.p;
        }
        c  = &m->set->nodes[m->set->kids[mn->kids + v]];
        rc = mx_run(m, c, depth + 1);
        return rc ? ex_fail(&m->r, c->w[c->srcw], rc) : VEIL_WIRE_OK;
}

/* Arrays and maps: blocks read once; each writer reframes what its plan
 * changes (a counted block, per-entry blocks of a unique-keys map) and
 * writes its own keys. */
static enum veil_wire_err mx_blocks(struct mx *m, const struct mnode *mn,
                                    int depth)
{
        const bool map        = mn->kind == PK_MAP;
        const struct mnode *c = &m->set->nodes[mn->kids];
        struct kset ks[VEIL_PLAN_MULTI_MAX];
        struct pnode bound    = {0};
        enum veil_wire_err rc = VEIL_WIRE_OK;
        uint32_t uniq = 0, desc = mn->desc & mx_live(m);
        int64_t count, size, k;

        bound.min_size = mn->min_size;
        FOR_BITS(i, desc)
        {
                if (!mn->w[i]->unique)
                        continue;
                if (kset_open(&m->o[i], &ks[i]))
                        uniq |= 1u << i;
                else
                        mx_kill(m, i, VEIL_WIRE_TOO_LARGE);
        }
        for (;;) {
                const uint8_t *hdr = m->r.p, *block;

                rc = ex_block(&m->r, &bound, map, &count, &size);
                if (rc || !count)
                        break;
                FOR_BITS(i, desc & mx_live(m))
                {
                        struct ex *o           = &m->o[i];
                        enum veil_wire_err wrc = VEIL_WIRE_OK;

                        if (mn->w[i]->unique) {
                                wrc     = ex_flush(o, hdr);
                                o->copy = m->r.p;
                        } else if (size >= 0) {
                                wrc = ex_flush(o, hdr);
                                if (!wrc)
                                        wrc = ex_room(o, VEIL_VARINT_MAX);
                                if (!wrc) {
                                        ex_put_varint(o, count);
                                        o->copy = m->r.p;
                                }
                        }
                        if (wrc)
                                mx_kill(m, i, wrc);
                }
                block = m->r.p;
                for (k = 0; k < count; k++) {
                        const uint8_t *key = m->r.p, *data = NULL;
                        uint32_t saved = m->susp, skip = 0;
                        size_t len = 0;

                        if (map) {
                                rc = ex_lenbytes(&m->r, &data, &len);
                                if (rc)
                                        break;
                                FOR_BITS(i, desc & mx_live(m))
                                {
                                        const struct pnode *node = mn->w[i];
                                        struct ex *o             = &m->o[i];
                                        enum veil_wire_err wrc;
                                        bool fresh = true;
                                        size_t at;

                                        if (!node->tx)
                                                continue;
                                        wrc     = ex_flush(o, key);
                                        o->copy = m->r.p;
                                        at      = o->out->len;
                                        if (!wrc && node->unique) {
                                                wrc = ex_room(o, 1);
                                                if (!wrc)
                                                        o->out->data
                                                                [o->out->len++] =
                                                                2;
                                        }
                                        if (!wrc)
                                                wrc = ex_put_tx(
                                                        o, node->tx,
                                                        VEIL_ENCRYPT_OUT_STRING,
                                                        data, len);
                                        if (!wrc && node->unique)
                                                wrc = kset_add(o, &ks[i],
                                                               at + 1, &fresh);
                                        if (wrc) {
                                                mx_kill(m, i, wrc);
                                        } else if (!fresh) {
                                                o->out->len = at;
                                                skip |= 1u << i;
                                        }
                                }
                        }
                        m->susp |= skip;
                        rc      = mx_run(m, c, depth + 1);
                        m->susp = saved;
                        FOR_BITS(i, skip & ~m->deadm)
                        m->o[i].copy = m->r.p;
                        if (rc) {
                                rc = ex_fail(&m->r, c->w[c->srcw], rc);
                                break;
                        }
                }
                if (rc)
                        break;
                if (size >= 0 && m->r.p - block != size) {
                        rc = VEIL_WIRE_BAD_LENGTH;
                        break;
                }
        }
        FOR_BITS(i, uniq)
        m->o[i].env->seen.len = ks[i].base;
        return rc;
}

static enum veil_wire_err mx_run(struct mx *m, const struct mnode *mn,
                                 int depth)
{
        const uint8_t *start = m->r.p;
        uint32_t closing     = (mn->drop | mn->nul) & mx_live(m);
        enum veil_wire_err rc;

        FOR_BITS(i, closing)
        {
                rc = ex_flush(&m->o[i], start);
                if (rc)
                        mx_kill(m, i, rc);
        }
        if (!((mn->tx | mn->desc) & mx_live(m))) {
                rc = mx_skip(m, mn, depth);
        } else if (depth >= VEIL_PLAN_MAX_DEPTH) {
                rc = VEIL_WIRE_TOO_DEEP;
        } else {
                switch (mn->kind) {
                case PK_RECORD:
                        rc = mx_record(m, mn, depth);
                        break;
                case PK_UNION:
                        rc = mx_union(m, mn, depth);
                        break;
                case PK_ARRAY:
                case PK_MAP:
                        rc = mx_blocks(m, mn, depth);
                        break;
                default:
                        rc = mx_leaf(m, mn);
                        break;
                }
        }
        if (rc)
                return rc;
        FOR_BITS(i, closing & ~m->deadm)
        {
                struct ex *o = &m->o[i];

                o->copy = m->r.p;
                if (!(mn->nul & (1u << i)))
                        continue;
                rc = ex_room(o, 1);
                if (rc)
                        mx_kill(m, i, rc);
                else
                        o->out->data[o->out->len++] = 0; /* branch 0: null */
        }
        return VEIL_WIRE_OK;
}

enum veil_wire_err veil_plan_set_exec(const struct veil_plan_set *set,
                                      struct veil_plan_env *const *envs,
                                      const uint8_t *body, size_t len,
                                      struct veil_buf *const *outs,
                                      struct veil_plan_error *errs)
{
        struct mx m;
        size_t start_len[VEIL_PLAN_MULTI_MAX];
        enum veil_wire_err rc, first = VEIL_WIRE_OK;
        uint32_t i;

        memset(&m, 0, sizeof(m));
        m.set = set;
        m.r.p = m.r.start = m.r.copy = body;
        m.r.end                      = body + len;
        m.r.plan                     = set->plans[0];
        for (i = 0; i < set->n; i++) {
                const struct veil_plan *plan = set->plans[i];
                struct veil_plan_env *env    = envs[i];
                struct ex *o                 = &m.o[i];

                start_len[i] = outs[i]->len;
                o->p = o->start = o->copy = body;
                o->end                    = body + len;
                o->out                    = outs[i];
                o->plan                   = plan;
                o->env                    = env;
                o->limit      = plan->max_output > SIZE_MAX - start_len[i]
                                        ? SIZE_MAX
                                        : start_len[i] + plan->max_output;
                env->seen.len = 0;
                env->n_memo   = 0;
                if ((plan->needs_keys && !env->keys) ||
                    (plan->needs_detect &&
                     (!env->detect || !env->detect_scratch)))
                        mx_kill(&m, i, VEIL_WIRE_TRANSFORM_FAILED);
        }
        rc = mx_run(&m, &set->nodes[set->root], 0);
        if (rc)
                ex_fail(&m.r, set->nodes[set->root].src, rc);
        if (!rc && m.r.p != m.r.end)
                rc = VEIL_WIRE_TRAILING_BYTES;
        for (i = 0; i < set->n; i++) {
                enum veil_wire_err orc = rc ? rc : m.dead[i];

                if (!orc)
                        orc = ex_flush(&m.o[i], m.r.p);
                if (orc) {
                        outs[i]->len = start_len[i];
                        if (!first)
                                first = orc;
                }
                if (errs) {
                        errs[i].code   = orc;
                        errs[i].offset = orc ? (size_t)(m.r.p - body) : 0;
                        errs[i].path   = orc ? m.r.err_path : NULL;
                }
        }
        return first;
}

enum veil_wire_err veil_plan_exec_framed(const struct veil_plan *plan,
                                         struct veil_plan_env *env,
                                         const void *msg, size_t len,
                                         struct veil_buf *out,
                                         struct veil_plan_error *err)
{
        struct veil_wire_frame frame;
        enum veil_wire_err rc = veil_wire_parse(msg, len, &frame);

        out->len = 0;
        if (!rc && frame.tombstone)
                rc = VEIL_WIRE_TOO_SHORT;
        if (rc) {
                if (err) {
                        err->code   = rc;
                        err->offset = 0;
                        err->path   = NULL;
                }
                return rc;
        }
        if (!veil_buf_reserve(out, VEIL_WIRE_HEADER_SIZE)) {
                if (err) {
                        err->code   = VEIL_WIRE_TOO_LARGE;
                        err->offset = 0;
                        err->path   = NULL;
                }
                return VEIL_WIRE_TOO_LARGE;
        }
        veil_wire_header_write(out->data, plan->output_id);
        out->len = VEIL_WIRE_HEADER_SIZE;
        rc = veil_plan_exec(plan, env, frame.body, frame.body_len, out, err);
        if (rc)
                out->len = 0;
        return rc;
}

/* ---- cache -------------------------------------------------------------- */

struct cache_entry {
        int schema_id;
        bool key;
        char *purpose;
        char *digest;
        uint64_t hash;
        uint64_t used; /* clock of the last get/put */
        struct veil_plan *plan;
        struct cache_entry *next; /* bucket chain */
};

struct veil_plan_cache {
        struct cache_entry **buckets;
        size_t n_buckets; /* power of two */
        size_t n, capacity;
        uint64_t clock;
};

static uint64_t cache_hash(int schema_id, const char *purpose,
                           const char *digest, bool key)
{
        uint64_t h  = 1469598103934665603ULL;
        uint32_t id = (uint32_t)schema_id;
        int i;

        for (i = 0; i < 4; i++) {
                h ^= (id >> (8 * i)) & 0xff;
                h *= 1099511628211ULL;
        }
        for (; purpose && *purpose; purpose++) {
                h ^= (uint8_t)*purpose;
                h *= 1099511628211ULL;
        }
        h ^= 0xff;
        h *= 1099511628211ULL;
        for (; digest && *digest; digest++) {
                h ^= (uint8_t)*digest;
                h *= 1099511628211ULL;
        }
        h ^= key ? 1 : 2;
        h *= 1099511628211ULL;
        return h;
}

struct veil_plan_cache *veil_plan_cache_new(size_t capacity)
{
        struct veil_plan_cache *cache = veil_calloc(1, sizeof(*cache));

        cache->capacity  = capacity ? capacity : 1;
        cache->n_buckets = 16;
        while (cache->n_buckets < cache->capacity * 2)
                cache->n_buckets *= 2;
        cache->buckets = veil_calloc(cache->n_buckets, sizeof(*cache->buckets));
        return cache;
}

static void entry_free(struct cache_entry *ent)
{
        veil_plan_destroy(ent->plan);
        free(ent->purpose);
        free(ent->digest);
        free(ent);
}

void veil_plan_cache_destroy(struct veil_plan_cache *cache)
{
        size_t i;

        if (!cache)
                return;
        for (i = 0; i < cache->n_buckets; i++) {
                struct cache_entry *ent = cache->buckets[i], *next;

                for (; ent; ent = next) {
                        next = ent->next;
                        entry_free(ent);
                }
        }
        free(cache->buckets);
        free(cache);
}

static struct cache_entry **cache_find(struct veil_plan_cache *cache,
                                       uint64_t h, int schema_id,
                                       const char *purpose, const char *digest,
                                       bool key)
{
        struct cache_entry **pp = &cache->buckets[h & (cache->n_buckets - 1)];

        for (; *pp; pp = &(*pp)->next) {
                struct cache_entry *ent = *pp;

                if (ent->hash == h && ent->schema_id == schema_id &&
                    ent->key == key && !strcmp(ent->purpose, purpose) &&
                    !strcmp(ent->digest, digest))
                        return pp;
        }
        return pp;
}

struct veil_plan *veil_plan_cache_get(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key)
{
        uint64_t h = cache_hash(schema_id, purpose, policy_digest, key);
        struct cache_entry **pp =
                cache_find(cache, h, schema_id, purpose,
                           policy_digest ? policy_digest : "", key);

        if (!*pp)
                return NULL;
        (*pp)->used = ++cache->clock;
        return (*pp)->plan;
}

static void cache_evict_lru(struct veil_plan_cache *cache)
{
        struct cache_entry **victim = NULL;
        size_t i;

        for (i = 0; i < cache->n_buckets; i++) {
                struct cache_entry **pp;

                for (pp = &cache->buckets[i]; *pp; pp = &(*pp)->next)
                        if (!victim || (*pp)->used < (*victim)->used)
                                victim = pp;
        }
        if (victim) {
                struct cache_entry *ent = *victim;

                *victim = ent->next;
                entry_free(ent);
                cache->n--;
        }
}

struct veil_plan *veil_plan_cache_put(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key,
                                      struct veil_plan *plan)
{
        const char *digest = policy_digest ? policy_digest : "";
        uint64_t h         = cache_hash(schema_id, purpose, policy_digest, key);
        struct cache_entry **pp, *ent;

        pp = cache_find(cache, h, schema_id, purpose, digest, key);
        if (*pp) {
                if ((*pp)->plan != plan)
                        veil_plan_destroy((*pp)->plan);
                (*pp)->plan = plan;
                (*pp)->used = ++cache->clock;
                return plan;
        }
        if (cache->n >= cache->capacity)
                cache_evict_lru(cache);
        ent            = veil_calloc(1, sizeof(*ent));
        ent->schema_id = schema_id;
        ent->key       = key;
        ent->purpose   = veil_strdup(purpose);
        ent->digest    = veil_strdup(digest);
        ent->hash      = h;
        ent->plan      = plan;
        ent->used      = ++cache->clock;
        pp             = &cache->buckets[h & (cache->n_buckets - 1)];
        ent->next      = *pp;
        *pp            = ent;
        cache->n++;
        return plan;
}

size_t veil_plan_cache_size(const struct veil_plan_cache *cache)
{
        return cache->n;
}
