/* support_avro_ref.c - tests only: policy builder and the reference
 * implementation of the licence over avro-c generic values. It walks the
 * schema on its own (not through plan.c) so that the property tests compare
 * two implementations of the rules of DESIGN.md §4. */
#define _GNU_SOURCE
#include "avro_ref.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "transform.h"
#include "util.h"
#include "veil.h"

/* ---- policy builder ----------------------------------------------------- */

void avro_ref_class(struct veil_policy *policy, const char *name,
                    enum veil_tier tier)
{
        struct veil_class *c;

        policy->classes =
                veil_realloc(policy->classes, (policy->n_classes + 1) *
                                                      sizeof(*policy->classes));
        c = &policy->classes[policy->n_classes++];
        memset(c, 0, sizeof(*c));
        c->name = veil_strdup(name);
        c->tier = tier;
}

struct veil_purpose *avro_ref_purpose(struct veil_policy *policy,
                                      const char *name)
{
        struct veil_purpose *p;

        policy->purposes = veil_realloc(policy->purposes,
                                        (policy->n_purposes + 1) *
                                                sizeof(*policy->purposes));
        p                = &policy->purposes[policy->n_purposes++];
        memset(p, 0, sizeof(*p));
        p->name       = veil_strdup(name);
        p->license_id = veil_strdup("LIC-TEST");
        return p;
}

struct veil_transform *avro_ref_rule(struct veil_purpose *purpose,
                                     const char *target, enum veil_tx_kind kind)
{
        struct veil_tx_rule *r;

        purpose->rules = veil_realloc(purpose->rules,
                                      (purpose->n_rules + 1) * sizeof(*r));
        r              = &purpose->rules[purpose->n_rules++];
        memset(r, 0, sizeof(*r));
        r->target               = veil_strdup(target);
        r->tx.kind              = kind;
        r->tx.mask.keep_last    = 4;
        r->tx.mask.mask_char    = '*';
        r->tx.generalize.width  = 10;
        r->tx.generalize.prefix = 1;
        r->tx.encrypt.mode      = VEIL_ENCRYPT_SIV;
        r->tx.encrypt.output    = VEIL_ENCRYPT_OUT_STRING;
        return &r->tx;
}

struct veil_route *avro_ref_route(struct veil_policy *policy,
                                  const char *source, const char *key_class)
{
        struct veil_route *r;

        policy->routes = veil_realloc(policy->routes,
                                      (policy->n_routes + 1) * sizeof(*r));
        r              = &policy->routes[policy->n_routes++];
        memset(r, 0, sizeof(*r));
        r->source    = veil_strdup(source);
        r->key_class = key_class ? veil_strdup(key_class) : NULL;
        return r;
}

void avro_ref_override(struct veil_route *route, const char *path,
                       const char *label)
{
        route->classify =
                veil_realloc(route->classify, (route->n_classify + 1) *
                                                      sizeof(*route->classify));
        route->classify[route->n_classify].path    = veil_strdup(path);
        route->classify[route->n_classify++].label = veil_strdup(label);
}

void avro_ref_tag_class(struct veil_policy *policy, const char *tag,
                        const char *label)
{
        policy->tag_classes = veil_realloc(
                policy->tag_classes,
                (policy->n_tag_classes + 1) * sizeof(*policy->tag_classes));
        policy->tag_classes[policy->n_tag_classes].tag     = veil_strdup(tag);
        policy->tag_classes[policy->n_tag_classes++].label = veil_strdup(label);
}

/* ---- decision tree ------------------------------------------------------ */

enum ract { R_KEEP, R_DROP, R_NULL, R_TX, R_RECORD, R_ARRAY, R_MAP, R_UNION };

/* Time-like logical types the reference cares about. */
enum rlt {
        RL_NONE,
        RL_DATE,
        RL_TS_MS,
        RL_TS_US,
        RL_TS_NS,
        RL_OTHER_NUM,
        RL_UUID,
        RL_DECIMAL
};

struct rnode {
        enum ract act;
        avro_type_t type; /* source type */
        enum rlt lt;
        const struct veil_transform *tx;
        const struct veil_transform *ktx; /* R_MAP: the keys' (NULL: keep) */
        avro_schema_t schema;             /* source type (enum symbols) */
        const char *name;                 /* named types: short name */
        size_t n;
        struct rnode **kids;
        char **names; /* record field names */
};

struct avro_ref {
        const struct veil_schema *schema;
        const struct veil_plan_opts *opts;
        struct rnode *root;
        char *errstr;
        size_t errstr_size;
};

static struct rnode *rnode(enum ract act, avro_type_t type)
{
        struct rnode *n = veil_calloc(1, sizeof(*n));

        n->act  = act;
        n->type = type;
        return n;
}

static void rnode_free(struct rnode *n)
{
        size_t i;

        if (!n)
                return;
        for (i = 0; i < n->n; i++) {
                rnode_free(n->kids ? n->kids[i] : NULL);
                if (n->names)
                        free(n->names[i]);
        }
        free(n->kids);
        free(n->names);
        free(n);
}

static avro_schema_t deref(avro_schema_t t)
{
        while (avro_typeof(t) == AVRO_LINK)
                t = avro_schema_link_target(t);
        return t;
}

static json_t *unwrap(json_t *j)
{
        while (json_is_object(j) &&
               (json_is_object(json_object_get(j, "type")) ||
                json_is_array(json_object_get(j, "type"))))
                j = json_object_get(j, "type");
        return j;
}

static enum rlt logical(avro_type_t at, json_t *j)
{
        const char *s =
                json_is_object(j)
                        ? json_string_value(json_object_get(j, "logicalType"))
                        : NULL;

        if (!s)
                return RL_NONE;
        if (at == AVRO_INT32 && !strcmp(s, "date"))
                return RL_DATE;
        if (at == AVRO_INT32 && !strcmp(s, "time-millis"))
                return RL_OTHER_NUM;
        if (at == AVRO_INT64 && !strcmp(s, "time-micros"))
                return RL_OTHER_NUM;
        if (at == AVRO_INT64 && strstr(s, "timestamp-millis"))
                return RL_TS_MS;
        if (at == AVRO_INT64 && strstr(s, "timestamp-micros"))
                return RL_TS_US;
        if (at == AVRO_INT64 && strstr(s, "timestamp-nanos"))
                return RL_TS_NS;
        if (at == AVRO_STRING && !strcmp(s, "uuid"))
                return RL_UUID;
        if ((at == AVRO_BYTES || at == AVRO_FIXED) && !strcmp(s, "decimal"))
                return RL_DECIMAL;
        return RL_NONE;
}

/* The reference's own statement of which leaf each transform accepts. */
static bool accepts(enum veil_tx_kind k, avro_type_t at, enum rlt lt)
{
        if (at == AVRO_NULL || k == VEIL_TX_KEEP)
                return true;
        if (k == VEIL_TX_HASH)
                return at == AVRO_STRING || at == AVRO_BYTES ||
                       at == AVRO_FIXED || at == AVRO_INT32 ||
                       at == AVRO_INT64 || at == AVRO_ENUM;
        if (k == VEIL_TX_MASK || k == VEIL_TX_REDACT_TEXT)
                return at == AVRO_STRING;
        if (k == VEIL_TX_ENCRYPT)
                return at == AVRO_STRING || at == AVRO_BYTES;
        if (k == VEIL_TX_GENERALIZE)
                return (at == AVRO_INT32 || at == AVRO_INT64 ||
                        at == AVRO_FLOAT || at == AVRO_DOUBLE ||
                        at == AVRO_STRING) &&
                       lt != RL_OTHER_NUM && lt != RL_UUID && lt != RL_DECIMAL;
        return false;
}

static json_t *find_def(struct avro_ref *ref, avro_schema_t t, json_t *j,
                        const char *ns, char **nsp)
{
        const char *ref_name = NULL, *name;
        json_t *def          = NULL;
        char *fn;

        if (json_is_object(j) && json_is_string(json_object_get(j, "name")))
                def = j;
        else if (json_is_string(j))
                ref_name = json_string_value(j);
        else if (json_is_object(j))
                ref_name = json_string_value(json_object_get(j, "type"));
        if (!def && ref_name) {
                if (!strchr(ref_name, '.') && *ns) {
                        if (asprintf(&fn, "%s.%s", ns, ref_name) < 0)
                                abort();
                        def = veil_schema_named(ref->schema, fn);
                        free(fn);
                }
                if (!def)
                        def = veil_schema_named(ref->schema, ref_name);
        }
        if (!def)
                def = veil_schema_named(ref->schema, avro_schema_name(t));
        if (!def && avro_schema_namespace(t)) {
                if (asprintf(&fn, "%s.%s", avro_schema_namespace(t),
                             avro_schema_name(t)) < 0)
                        abort();
                def = veil_schema_named(ref->schema, fn);
                free(fn);
        }
        if (def && nsp) {
                const char *own;

                name = json_string_value(json_object_get(def, "name"));
                own  = json_string_value(json_object_get(def, "namespace"));
                if (strrchr(name, '.'))
                        *nsp = strndup(name,
                                       (size_t)(strrchr(name, '.') - name));
                else
                        *nsp = veil_strdup(own ? own : ns);
        }
        return def;
}

static struct rnode *ref_type(struct avro_ref *ref, avro_schema_t t, json_t *j,
                              const char *ns, const char *path,
                              const char *label,
                              const struct veil_transform *tx, bool keep_all,
                              bool root, int depth);

static bool is_container(avro_schema_t t)
{
        avro_type_t at = avro_typeof(deref(t));

        return at == AVRO_RECORD || at == AVRO_ARRAY || at == AVRO_MAP ||
               at == AVRO_UNION;
}

/* The keys of the map at `path` (DESIGN.md §5): classify:'s "PATH{key}",
 * else the map's label; R_KEEP when they get *ktx, R_DROP or R_NULL when
 * the whole map does. */
static enum ract ref_keys(struct avro_ref *ref, const char *path,
                          const char *label, const struct veil_transform **ktx)
{
        const char *klabel;
        char *kpath;

        if (asprintf(&kpath, "%s{key}", path) < 0)
                abort();
        klabel = veil_policy_classify(ref->opts->policy, ref->opts->route,
                                      kpath, NULL, NULL);
        free(kpath);
        if (!klabel)
                klabel = label;
        *ktx = klabel ? veil_policy_transform(ref->opts->purpose,
                                              ref->opts->policy, klabel)
                      : NULL;
        if (!*ktx || (*ktx)->kind == VEIL_TX_DROP)
                return R_DROP;
        if ((*ktx)->kind == VEIL_TX_NULL)
                return R_NULL;
        if ((*ktx)->kind == VEIL_TX_KEEP)
                *ktx = NULL;
        return R_KEEP;
}

static bool has_map(avro_schema_t t)
{
        size_t i;

        t = deref(t);
        if (avro_typeof(t) == AVRO_MAP)
                return true;
        if (avro_typeof(t) == AVRO_UNION)
                for (i = 0; i < avro_schema_union_size(t); i++)
                        if (avro_typeof(deref(avro_schema_union_branch(
                                    t, (int)i))) == AVRO_MAP)
                                return true;
        return false;
}

static struct rnode *ref_position(struct avro_ref *ref, avro_schema_t t,
                                  json_t *j, const char *ns, const char *path,
                                  const char *inherited, json_t *field_json,
                                  bool keep_all, int depth)
{
        const struct veil_policy *policy  = ref->opts->policy;
        struct veil_field_annotations ann = {0};
        const struct veil_schema_field *f = NULL;
        const struct veil_transform *tx;
        const char *label, *tags[32];
        json_t *tv;
        size_t i;

        if (keep_all)
                return ref_type(ref, t, j, ns, path, NULL, NULL, true, false,
                                depth);
        if (field_json) {
                size_t k;

                /* The entry of this very field: union branches can share
                 * a path. */
                for (k = 0; k < ref->schema->n_fields; k++)
                        if (ref->schema->fields[k].json == field_json &&
                            !strcmp(ref->schema->fields[k].path, path))
                                f = &ref->schema->fields[k];
                if (f) {
                        veil_schema_field_annotations(f, &ann);
                } else {
                        ann.pii = json_string_value(
                                json_object_get(field_json, "pii"));
                        ann.tags = tags;
                        json_array_foreach(
                                json_object_get(field_json, "confluent:tags"),
                                i, tv)
                        {
                                if (ann.n_tags < 32)
                                        tags[ann.n_tags++] =
                                                json_string_value(tv);
                        }
                }
        }
        label = veil_policy_classify(policy, ref->opts->route, path,
                                     field_json ? &ann : NULL, NULL);
        if (!label)
                label = inherited;
        tx = label ? veil_policy_transform(ref->opts->purpose, policy, label)
                   : NULL;
        if (label && (!tx || tx->kind == VEIL_TX_DROP))
                return rnode(R_DROP, avro_typeof(deref(t)));
        if (label && tx->kind == VEIL_TX_NULL)
                return rnode(R_NULL, avro_typeof(deref(t)));
        if (has_map(t)) {
                /* Keys that cannot pass take the whole position. */
                const struct veil_transform *ktx;
                enum ract fate = ref_keys(ref, path, label, &ktx);

                if (fate != R_KEEP)
                        return rnode(fate, avro_typeof(deref(t)));
        }
        if (!label)
                return is_container(t) ? ref_type(ref, t, j, ns, path, NULL,
                                                  NULL, false, false, depth)
                                       : rnode(R_DROP, avro_typeof(deref(t)));
        return ref_type(ref, t, j, ns, path, label, tx, false, false, depth);
}

static struct rnode *ref_type(struct avro_ref *ref, avro_schema_t t, json_t *j,
                              const char *ns, const char *path,
                              const char *label,
                              const struct veil_transform *tx, bool keep_all,
                              bool root, int depth)
{
        avro_type_t at;
        struct rnode *n;
        size_t i;

        if (!ref->root && depth > 40) /* recursion: not for the reference */
                return NULL;
        t  = deref(t);
        j  = unwrap(j);
        at = avro_typeof(t);
        switch (at) {
        case AVRO_RECORD: {
                char *ins      = NULL;
                json_t *def    = find_def(ref, t, j, ns, &ins);
                json_t *fields = json_object_get(def, "fields");
                size_t kept    = 0;

                if (!def)
                        return NULL;
                n        = rnode(R_RECORD, at);
                n->name  = avro_schema_name(t);
                n->n     = avro_schema_record_size(t);
                n->kids  = veil_calloc(n->n + 1, sizeof(*n->kids));
                n->names = veil_calloc(n->n + 1, sizeof(*n->names));
                for (i = 0; i < n->n; i++) {
                        const char *fname =
                                avro_schema_record_field_name(t, (int)i);
                        char *fpath;

                        if (asprintf(&fpath, "%s%s%s", path, *path ? "." : "",
                                     fname) < 0)
                                abort();
                        n->names[i] = veil_strdup(fname);
                        n->kids[i]  = ref_position(
                                 ref,
                                 avro_schema_record_field_get_by_index(t,
                                                                       (int)i),
                                 json_object_get(json_array_get(fields, i),
                                                 "type"),
                                 ins, fpath, label, json_array_get(fields, i),
                                 keep_all, depth + 1);
                        free(fpath);
                        if (!n->kids[i]) {
                                free(ins);
                                rnode_free(n);
                                return NULL;
                        }
                        kept += n->kids[i]->act != R_DROP;
                }
                free(ins);
                if (!kept && !root && !keep_all) {
                        rnode_free(n);
                        return rnode(R_DROP, at);
                }
                return n;
        }
        case AVRO_ARRAY:
        case AVRO_MAP: {
                const struct veil_transform *ktx = NULL;
                struct rnode *item;
                char *ipath;

                if (at == AVRO_MAP && !keep_all) {
                        enum ract fate = ref_keys(ref, path, label, &ktx);

                        if (fate != R_KEEP) /* the root: a position has
                                             * settled these */
                                return rnode(fate, at);
                }
                if (asprintf(&ipath, "%s%s", path,
                             at == AVRO_ARRAY ? "[]" : "{}") < 0)
                        abort();
                item = ref_position(
                        ref,
                        at == AVRO_ARRAY ? avro_schema_array_items(t)
                                         : avro_schema_map_values(t),
                        json_object_get(j,
                                        at == AVRO_ARRAY ? "items" : "values"),
                        ns, ipath, label, NULL, keep_all, depth + 1);
                free(ipath);
                if (!item)
                        return NULL;
                if (item->act == R_DROP) {
                        rnode_free(item);
                        return rnode(R_DROP, at);
                }
                n          = rnode(at == AVRO_ARRAY ? R_ARRAY : R_MAP, at);
                n->ktx     = ktx;
                n->n       = 1;
                n->kids    = veil_calloc(1, sizeof(*n->kids));
                n->kids[0] = item;
                return n;
        }
        case AVRO_UNION: {
                bool dropped = false;

                n       = rnode(R_UNION, at);
                n->n    = avro_schema_union_size(t);
                n->kids = veil_calloc(n->n + 1, sizeof(*n->kids));
                for (i = 0; i < n->n; i++) {
                        n->kids[i] = ref_type(
                                ref, avro_schema_union_branch(t, (int)i),
                                json_array_get(j, i), ns, path, label, tx,
                                keep_all, false, depth + 1);
                        if (!n->kids[i]) {
                                rnode_free(n);
                                return NULL;
                        }
                        dropped |= n->kids[i]->act == R_DROP;
                }
                if (dropped) {
                        rnode_free(n);
                        return rnode(R_DROP, at);
                }
                return n;
        }
        default: {
                enum rlt lt = logical(at, j);

                if (at == AVRO_NULL || keep_all)
                        n = rnode(R_KEEP, at);
                else if (!label)
                        return rnode(R_DROP, at);
                else if (tx->kind == VEIL_TX_KEEP)
                        n = rnode(R_KEEP, at);
                else if (!accepts(tx->kind, at, lt))
                        return rnode(R_DROP, at);
                else
                        n = rnode(R_TX, at);
                n->tx     = tx;
                n->lt     = lt;
                n->schema = t;
                if (at == AVRO_ENUM || at == AVRO_FIXED)
                        n->name = avro_schema_name(t);
                return n;
        }
        }
}

struct avro_ref *avro_ref_new(const struct veil_schema *schema,
                              const struct veil_plan_opts *opts, char *errstr,
                              size_t errstr_size)
{
        struct avro_ref *ref = veil_calloc(1, sizeof(*ref));
        avro_schema_t root   = deref(schema->avro);
        struct rnode *r;

        ref->schema = schema;
        ref->opts   = opts;
        if (opts->root_label) {
                const struct veil_transform *tx = veil_policy_transform(
                        opts->purpose, opts->policy, opts->root_label);

                if (!tx || tx->kind == VEIL_TX_DROP)
                        r = rnode(R_DROP, avro_typeof(root));
                else if (tx->kind == VEIL_TX_NULL)
                        r = rnode(R_NULL, avro_typeof(root));
                else
                        r = ref_type(ref, root, schema->json, "", "",
                                     opts->root_label, tx, false, true, 0);
        } else {
                r = ref_type(ref, root, schema->json, "", "", NULL, NULL, false,
                             true, 0);
        }
        if (!r) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "reference: schema not supported");
                free(ref);
                return NULL;
        }
        ref->root = r;
        return ref;
}

void avro_ref_destroy(struct avro_ref *ref)
{
        if (!ref)
                return;
        rnode_free(ref->root);
        free(ref);
}

/* ---- applying it --------------------------------------------------------- */

/* Does derived union branch `b` hold what node `n` writes? */
static bool branch_fits(struct rnode *n, avro_schema_t b)
{
        avro_type_t bt = avro_typeof(deref(b)), want = n->type;
        const char *bn;

        b = deref(b);
        if (n->act == R_TX) {
                switch (n->tx->kind) {
                case VEIL_TX_HASH:
                case VEIL_TX_MASK:
                case VEIL_TX_REDACT_TEXT:
                        want = AVRO_STRING;
                        break;
                case VEIL_TX_ENCRYPT:
                        want = n->tx->encrypt.output == VEIL_ENCRYPT_OUT_BYTES
                                       ? AVRO_BYTES
                                       : AVRO_STRING;
                        break;
                case VEIL_TX_GENERALIZE:
                        if (n->lt == RL_DATE || n->lt == RL_TS_MS ||
                            n->lt == RL_TS_US || n->lt == RL_TS_NS)
                                want = AVRO_INT32;
                        break;
                default:
                        break;
                }
                return bt == want;
        }
        if (bt != want)
                return false;
        if (bt != AVRO_RECORD && bt != AVRO_ENUM && bt != AVRO_FIXED)
                return true;
        bn = avro_schema_name(b);
        return !strcmp(bn, n->name) ||
               (!strncmp(bn, n->name, strlen(n->name)) &&
                bn[strlen(n->name)] == '_');
}

static int set_text(avro_value_t *dst, const char *s, size_t n)
{
        char *z;
        int rc;

        if (avro_value_get_type(dst) == AVRO_BYTES)
                return avro_value_set_bytes(dst, (void *)s, n);
        z = veil_malloc(n + 1);
        memcpy(z, s, n);
        z[n] = 0;
        rc   = avro_value_set_string_len(dst, z, n + 1);
        free(z);
        return rc;
}

static int apply_tx(struct avro_ref *ref, struct rnode *n,
                    struct veil_plan_env *env, avro_value_t *src,
                    avro_value_t *dst)
{
        const struct veil_transform *tx = n->tx;
        const void *in                  = NULL;
        size_t len                      = 0, cap, outlen;
        char num[32], *out;
        int32_t i32 = 0;
        int64_t i64 = 0;
        int rc;

        switch (n->type) {
        case AVRO_STRING: {
                const char *s = "";
                size_t sz     = 0;

                avro_value_get_string(src, &s, &sz);
                in  = s;
                len = sz ? sz - 1 : 0;
                break;
        }
        case AVRO_BYTES:
                avro_value_get_bytes(src, &in, &len);
                break;
        case AVRO_FIXED:
                avro_value_get_fixed(src, &in, &len);
                break;
        case AVRO_INT32:
                avro_value_get_int(src, &i32);
                len = (size_t)snprintf(num, sizeof(num), "%" PRId32, i32);
                in  = num;
                break;
        case AVRO_INT64:
                avro_value_get_long(src, &i64);
                len = (size_t)snprintf(num, sizeof(num), "%" PRId64, i64);
                in  = num;
                break;
        case AVRO_ENUM: {
                int e = 0;

                avro_value_get_enum(src, &e);
                in  = avro_schema_enum_get(n->schema, e);
                len = strlen(in);
                break;
        }
        default:
                break;
        }
        switch (tx->kind) {
        case VEIL_TX_HASH:
        case VEIL_TX_MASK:
        case VEIL_TX_ENCRYPT:
                cap = veil_tx_string_max(env->keys, tx, len) + 1;
                out = veil_malloc(cap);
                rc  = veil_tx_string(env->keys, tx, in, len, out, cap, &outlen);
                if (!rc)
                        rc = set_text(dst, out, outlen);
                free(out);
                return rc;
        case VEIL_TX_REDACT_TEXT: {
                char err[128];

                rc = veil_redact_text(env->detect, env->detect_scratch, tx, in,
                                      len, &env->text, NULL, err, sizeof(err));
                return rc ? rc : set_text(dst, env->text.data, env->text.len);
        }
        case VEIL_TX_GENERALIZE:
                break;
        default:
                return -1;
        }
        switch (n->type) {
        case AVRO_STRING:
                return set_text(
                        dst, in,
                        veil_tx_prefix_len(in, len, tx->generalize.prefix));
        case AVRO_INT32:
                if (n->lt == RL_DATE)
                        return avro_value_set_int(dst,
                                                  veil_tx_year_from_days(i32));
                if (veil_tx_bucket_int(i32, tx->generalize.width, &i32))
                        return -2;
                return avro_value_set_int(dst, i32);
        case AVRO_INT64: {
                int64_t per = n->lt == RL_TS_MS   ? VEIL_TX_MILLIS_PER_DAY
                              : n->lt == RL_TS_US ? VEIL_TX_MICROS_PER_DAY
                              : n->lt == RL_TS_NS ? VEIL_TX_NANOS_PER_DAY
                                                  : 0;

                if (per)
                        return avro_value_set_int(
                                dst, veil_tx_year_from_timestamp(i64, per));
                if (veil_tx_bucket_long(i64, tx->generalize.width, &i64))
                        return -2;
                return avro_value_set_long(dst, i64);
        }
        case AVRO_FLOAT: {
                float f = 0;

                avro_value_get_float(src, &f);
                if (veil_tx_bucket_float(f, tx->generalize.width, &f))
                        return -2;
                return avro_value_set_float(dst, f);
        }
        case AVRO_DOUBLE: {
                double d = 0;

                avro_value_get_double(src, &d);
                if (veil_tx_bucket_double(d, tx->generalize.width, &d))
                        return -2;
                return avro_value_set_double(dst, d);
        }
        default:
                (void)ref;
                return -1;
        }
}

/* A map key under its transform, as a new NUL-terminated string. Keys are
 * strings: encrypt gives its string token whatever the rule's output. */
static int key_tx(const struct veil_transform *ktx, struct veil_plan_env *env,
                  const char *key, char **outp)
{
        struct veil_transform t = *ktx;
        size_t len = strlen(key), cap, outlen = 0;
        char *out;
        int rc;

        if (t.kind == VEIL_TX_REDACT_TEXT) {
                char err[128];

                rc = veil_redact_text(env->detect, env->detect_scratch, &t, key,
                                      len, &env->text, NULL, err, sizeof(err));
                if (rc)
                        return rc;
                *outp = strndup(env->text.data, env->text.len);
                return 0;
        }
        t.encrypt.output = VEIL_ENCRYPT_OUT_STRING;
        cap              = veil_tx_string_max(env->keys, &t, len) + 1;
        out              = veil_malloc(cap);
        rc = veil_tx_string(env->keys, &t, key, len, out, cap, &outlen);
        if (rc) {
                free(out);
                return rc;
        }
        out[outlen] = 0;
        *outp       = out;
        return 0;
}

static int apply(struct avro_ref *ref, struct rnode *n,
                 struct veil_plan_env *env, avro_value_t *src,
                 avro_value_t *dst)
{
        avro_value_t s, d;
        const char *key;
        size_t i, count = 0;
        int rc;

        switch (n->act) {
        case R_KEEP:
                return avro_value_copy_fast(dst, src);
        case R_NULL:
                rc = avro_value_set_branch(dst, 0, &d);
                return rc ? rc : avro_value_set_null(&d);
        case R_TX:
                return apply_tx(ref, n, env, src, dst);
        case R_RECORD:
                for (i = 0; i < n->n; i++) {
                        if (n->kids[i]->act == R_DROP)
                                continue;
                        if (avro_value_get_by_index(src, i, &s, NULL) ||
                            avro_value_get_by_name(dst, n->names[i], &d, NULL))
                                return -1;
                        rc = apply(ref, n->kids[i], env, &s, &d);
                        if (rc)
                                return rc;
                }
                return 0;
        case R_ARRAY:
        case R_MAP:
                avro_value_get_size(src, &count);
                for (i = 0; i < count; i++) {
                        char *newkey = NULL;
                        int is_new   = 1;

                        if (avro_value_get_by_index(src, i, &s, &key))
                                return -1;
                        if (n->ktx) {
                                rc = key_tx(n->ktx, env, key, &newkey);
                                if (rc)
                                        return rc;
                                key = newkey;
                        }
                        rc = n->act == R_ARRAY
                                     ? avro_value_append(dst, &d, NULL)
                                     : avro_value_add(dst, key, &d, NULL,
                                                      &is_new);
                        free(newkey);
                        if (rc)
                                return rc;
                        /* Two keys a transform made equal: the first entry
                         * stays, the later ones are left out. */
                        if (!is_new)
                                continue;
                        rc = apply(ref, n->kids[0], env, &s, &d);
                        if (rc)
                                return rc;
                }
                return 0;
        case R_UNION: {
                avro_schema_t du = avro_value_get_schema(dst);
                int disc;
                size_t b, nb;

                if (avro_value_get_discriminant(src, &disc) ||
                    avro_value_get_current_branch(src, &s))
                        return -1;
                nb = avro_schema_union_size(du);
                for (b = 0; b < nb; b++)
                        if (branch_fits(n->kids[disc],
                                        avro_schema_union_branch(du, (int)b)))
                                break;
                if (b == nb)
                        return -1;
                if (avro_value_set_branch(dst, (int)b, &d))
                        return -1;
                return apply(ref, n->kids[disc], env, &s, &d);
        }
        default:
                return -1;
        }
}

int avro_ref_apply(struct avro_ref *ref, struct veil_plan_env *env,
                   avro_value_t *src, avro_value_t *dst, char *errstr,
                   size_t errstr_size)
{
        int rc;

        if (ref->root->act == R_DROP)
                return veil_errf(errstr, errstr_size, -1, "value dropped");
        rc = apply(ref, ref->root, env, src, dst);
        if (rc)
                return veil_errf(errstr, errstr_size, -1,
                                 "reference transform failed (%d)", rc);
        return 0;
}

/* ---- random data -------------------------------------------------------- */

uint64_t avro_ref_rand(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

uint64_t avro_ref_below(uint64_t *state, uint64_t n)
{
        return n ? avro_ref_rand(state) % n : 0;
}

static const char *const sample_text[] = {
        "",
        "a",
        "Ada Lovelace",
        "ada@example.com",
        "+1 415 555 0100",
        "4111 1111 1111 1111",
        "123-45-6789",
        "Zoë Ünicode ✓",
        "call me at 415-555-0199 or mail bob@example.org",
        "12",
};

static int64_t random_int64(uint64_t *st)
{
        switch (avro_ref_below(st, 4)) {
        case 0:
                return (int64_t)avro_ref_below(st, 100) - 50;
        case 1:
                return (int64_t)avro_ref_rand(st);
        case 2:
                return (int64_t)avro_ref_below(st, 4000000000000ULL);
        default:
                return (int64_t)avro_ref_rand(st) >> avro_ref_below(st, 63);
        }
}

static void random_text(uint64_t *st, char *buf, size_t cap, size_t *lenp)
{
        size_t n;

        if (avro_ref_below(st, 2)) {
                const char *s = sample_text[avro_ref_below(
                        st, VEIL_ARRAY_SIZE(sample_text))];

                n = strlen(s) < cap ? strlen(s) : cap - 1;
                memcpy(buf, s, n);
        } else {
                size_t i;

                n = (size_t)avro_ref_below(st, cap < 40 ? cap : 40);
                for (i = 0; i < n; i++)
                        buf[i] = (char)(' ' + avro_ref_below(st, 95));
        }
        buf[n] = 0;
        *lenp  = n;
}

void avro_ref_random_value(uint64_t *st, avro_value_t *v, json_t *json,
                           const struct veil_schema *schema, int depth)
{
        avro_schema_t t = avro_value_get_schema(v);
        char buf[128];
        size_t i, n = 0, len;
        avro_value_t child;

        (void)json;
        (void)schema;
        switch (avro_value_get_type(v)) {
        case AVRO_NULL:
                avro_value_set_null(v);
                break;
        case AVRO_BOOLEAN:
                avro_value_set_boolean(v, (int)avro_ref_below(st, 2));
                break;
        case AVRO_INT32:
                avro_value_set_int(v, (int32_t)random_int64(st));
                break;
        case AVRO_INT64:
                avro_value_set_long(v, random_int64(st));
                break;
        case AVRO_FLOAT:
                avro_value_set_float(v,
                                     (float)((double)random_int64(st) /
                                             (1 + avro_ref_below(st, 1000))));
                break;
        case AVRO_DOUBLE:
                avro_value_set_double(v,
                                      (double)random_int64(st) /
                                              (1 + avro_ref_below(st, 1000)));
                break;
        case AVRO_BYTES:
                n = (size_t)avro_ref_below(st, 20);
                for (i = 0; i < n; i++)
                        buf[i] = (char)avro_ref_rand(st);
                avro_value_set_bytes(v, buf, n);
                break;
        case AVRO_STRING:
                random_text(st, buf, sizeof(buf), &len);
                avro_value_set_string_len(v, buf, len + 1);
                break;
        case AVRO_FIXED:
                n = (size_t)avro_schema_fixed_size(t);
                {
                        char *fb = veil_malloc(n + 1);

                        for (i = 0; i < n; i++)
                                fb[i] = (char)avro_ref_rand(st);
                        avro_value_set_fixed(v, fb, n);
                        free(fb);
                }
                break;
        case AVRO_ENUM:
                avro_value_set_enum(
                        v, (int)avro_ref_below(
                                   st,
                                   (uint64_t)avro_schema_enum_number_of_symbols(
                                           t)));
                break;
        case AVRO_RECORD:
                avro_value_get_size(v, &n);
                for (i = 0; i < n; i++) {
                        avro_value_get_by_index(v, i, &child, NULL);
                        avro_ref_random_value(st, &child, NULL, NULL,
                                              depth + 1);
                }
                break;
        case AVRO_ARRAY:
                n = depth > 6 ? 0 : (size_t)avro_ref_below(st, 4);
                for (i = 0; i < n; i++) {
                        avro_value_append(v, &child, NULL);
                        avro_ref_random_value(st, &child, NULL, NULL,
                                              depth + 1);
                }
                break;
        case AVRO_MAP:
                n = depth > 6 ? 0 : (size_t)avro_ref_below(st, 4);
                for (i = 0; i < n; i++) {
                        /* Keys are data too: sometimes personal text. */
                        if (avro_ref_below(st, 2))
                                random_text(st, buf, sizeof(buf), &len);
                        else
                                snprintf(buf, sizeof(buf), "k%zu", i);
                        avro_value_add(v, buf, &child, NULL, NULL);
                        avro_ref_random_value(st, &child, NULL, NULL,
                                              depth + 1);
                }
                break;
        case AVRO_UNION: {
                size_t nb = avro_schema_union_size(t), b;

                b = (size_t)avro_ref_below(st, nb);
                /* Deep values take the first (usually null) branch so that
                 * random recursion ends. */
                if (depth > 6)
                        b = 0;
                avro_value_set_branch(v, (int)b, &child);
                avro_ref_random_value(st, &child, NULL, NULL, depth + 1);
                break;
        }
        default:
                break;
        }
}
