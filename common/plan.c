/* plan.c - compile a record plan once per (schema, purpose): the schema
 * walk that classifies every position through the policy and builds the
 * plan's nodes and the derived schema, the plan's storage and accessors,
 * and the Avro type helpers shared with `veil check` (check_plan.c). The
 * plans run in plan_exec.c; plan_cache.c keeps them. */
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

/* ---- plan storage ------------------------------------------------------- */

void *veil_plan_grow(void *p, size_t *cap, size_t need, size_t size)
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

        plan->nodes = veil_plan_grow(plan->nodes, &plan->cap_nodes,
                                     plan->n_nodes + 1, sizeof(*plan->nodes));
        n           = &plan->nodes[plan->n_nodes];
        memset(n, 0, sizeof(*n));
        n->kind = (uint8_t)kind;
        return (uint32_t)plan->n_nodes++;
}

static const char *plan_str(struct veil_plan *plan, const char *s)
{
        plan->strs               = veil_plan_grow(plan->strs, &plan->cap_strs,
                                                  plan->n_strs + 1, sizeof(*plan->strs));
        plan->strs[plan->n_strs] = veil_strdup(s);
        return plan->strs[plan->n_strs++];
}

static uint32_t kids_add(struct veil_plan *plan, const struct pkid *k, size_t n)
{
        uint32_t first = (uint32_t)plan->n_kids;

        plan->kids = veil_plan_grow(plan->kids, &plan->cap_kids,
                                    plan->n_kids + n + 1, sizeof(*plan->kids));
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

enum pk veil_plan_pk_of(avro_type_t t)
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
enum lt veil_plan_lt_of(enum pk kind, json_t *j, const char **namep)
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
bool veil_plan_leaf_ok(enum veil_tx_kind tx, enum pk kind, enum lt lt)
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

void veil_plan_type_label(char *buf, size_t size, enum pk kind, enum lt lt,
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
json_t *veil_plan_jnorm(json_t *j)
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
json_t *veil_plan_named_def(struct comp *c, avro_schema_t t, json_t *j,
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

char *veil_plan_inner_ns(const char *fullname)
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

        plan->fields =
                veil_plan_grow(plan->fields, &plan->cap_fields,
                               plan->n_fields + 1, sizeof(*plan->fields));
        f         = &plan->fields[plan->n_fields++];
        f->path   = plan_str(plan, path);
        f->label  = label;
        f->source = src;
        f->reason = why;
        f->tx     = tx;
        if (why == VEIL_PLAN_UNCLASSIFIED || why == VEIL_PLAN_UNLICENSED ||
            why == VEIL_PLAN_UNDEFINED)
                plan->n_failclosed++;
}

avro_schema_t veil_plan_resolve(avro_schema_t t)
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

        t = veil_plan_resolve(t);
        for (i = 0; i < c->n_memo; i++)
                if (c->memo[i].type == t) {
                        *nodep = c->memo[i].node;
                        return 0;
                }
        if (depth > VEIL_PLAN_MAX_DEPTH)
                return veil_errf(c->errstr, c->errstr_size, VEIL_EINVAL,
                                 "schema nests deeper than %d levels",
                                 VEIL_PLAN_MAX_DEPTH);
        kind = veil_plan_pk_of(avro_typeof(t));
        idx  = node_new(plan, kind);
        /* Memoize before descending: recursive types point back here. */
        c->memo = veil_plan_grow(c->memo, &c->cap_memo, c->n_memo + 1,
                                 sizeof(*c->memo));
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
        avro_type_t at = avro_typeof(veil_plan_resolve(t));

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

        t = veil_plan_resolve(t);
        if (avro_typeof(t) == AVRO_MAP)
                return true;
        if (avro_typeof(t) != AVRO_UNION)
                return false;
        n = avro_schema_union_size(t);
        for (i = 0; i < n; i++)
                if (avro_typeof(veil_plan_resolve(
                            avro_schema_union_branch(t, (int)i))) == AVRO_MAP)
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

        veil_plan_type_label(tl, sizeof(tl), kind, lt, name);
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

        def = veil_plan_named_def(c, t, j, ns, &fullname);
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

        ins       = veil_plan_inner_ns(fullname);
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
        t    = veil_plan_resolve(t);
        j    = veil_plan_jnorm(j);
        kind = veil_plan_pk_of(avro_typeof(t));
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
        lt = veil_plan_lt_of(kind, j, &ltname);
        if (kind != PK_NULL && mode == M_CLASSIFY && !label) {
                field_add(c, path, NULL, VEIL_LABEL_NONE,
                          VEIL_PLAN_UNCLASSIFIED, VEIL_TX_DROP);
                return result_drop(c, t, depth, r);
        }
        if (kind != PK_NULL && tx && tx->kind != VEIL_TX_KEEP &&
            !veil_plan_leaf_ok(tx->kind, kind, lt)) {
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

                plan->syms         = veil_plan_grow(plan->syms, &plan->cap_syms,
                                                    plan->n_syms + n + 1,
                                                    sizeof(*plan->syms));
                plan->nodes[idx].n = (uint32_t)n;
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
                        json_t *def =
                                veil_plan_named_def(c, t, j, ns, &fullname);
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
        root = veil_plan_resolve(schema->avro);
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
