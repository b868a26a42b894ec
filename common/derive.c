/* derive.c - the pieces of derived schemas (named types, transformed leaf
 * types, nullable and merged unions, fields) and plain record keys. */
#define _GNU_SOURCE
#include "derive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "veil.h"

static bool is_named_def(json_t *j)
{
        const char *t = json_string_value(json_object_get(j, "type"));

        return t && json_is_string(json_object_get(j, "name")) &&
               (!strcmp(t, "record") || !strcmp(t, "error") ||
                !strcmp(t, "enum") || !strcmp(t, "fixed"));
}

/* Full name of a definition whose namespace is explicit (named_shell). */
static char *def_fullname(json_t *def)
{
        const char *name = json_string_value(json_object_get(def, "name"));
        const char *ns   = json_string_value(json_object_get(def, "namespace"));
        char *fn;

        if (!name)
                return veil_strdup("");
        if (strchr(name, '.') || !ns || !*ns)
                return veil_strdup(name);
        if (asprintf(&fn, "%s.%s", ns, name) < 0)
                abort();
        return fn;
}

/* A copy where every nested named definition is replaced by its full name,
 * so that a type defined in full at its first use compares equal to the
 * same type written as references later. */
static json_t *canon(json_t *j, bool top)
{
        json_t *out, *v;
        const char *k;
        size_t i;

        if (json_is_array(j)) {
                out = json_array();
                json_array_foreach(j, i, v)
                        json_array_append_new(out, canon(v, false));
                return out;
        }
        if (!json_is_object(j))
                return json_incref(j);
        if (!top && is_named_def(j)) {
                char *fn = def_fullname(j);

                out = json_string(fn);
                free(fn);
                return out;
        }
        out = json_object();
        json_object_foreach(j, k, v)
                json_object_set_new(out, k, canon(v, false));
        return out;
}

/* Replace every string equal to `from` in the type positions under `j`
 * (a renamed recursive record's references to itself). */
static void rename_refs(json_t *j, const char *from, const char *to, bool top)
{
        json_t *v;
        size_t i;

        if (json_is_array(j)) {
                json_array_foreach(j, i, v)
                {
                        if (json_is_string(v) &&
                            !strcmp(json_string_value(v), from))
                                json_array_set_new(j, i, json_string(to));
                        else
                                rename_refs(v, from, to, false);
                }
                return;
        }
        if (!json_is_object(j))
                return;
        if (!top && is_named_def(j)) {
                char *fn = def_fullname(j);
                int own  = !strcmp(fn, from);

                free(fn);
                if (own)
                        return; /* a nested definition of its own */
        }
        {
                static const char *const keys[] = {"type", "items", "values"};
                size_t k;

                for (k = 0; k < VEIL_ARRAY_SIZE(keys); k++) {
                        v = json_object_get(j, keys[k]);
                        if (json_is_string(v) &&
                            !strcmp(json_string_value(v), from))
                                json_object_set_new(j, keys[k],
                                                    json_string(to));
                        else
                                rename_refs(v, from, to, false);
                }
                json_array_foreach(json_object_get(j, "fields"), i, v)
                        rename_refs(v, from, to, false);
        }
}

/* Replace the definition of `fn` nested in a type position under `j` (at
 * any depth, inside other named types too) by a reference to it; true when
 * there was one. */
static bool unnest_def(json_t *j, const char *fn)
{
        static const char *const keys[] = {"type", "items", "values"};
        json_t *v;
        size_t i, k;

        if (json_is_array(j)) {
                json_array_foreach(j, i, v)
                {
                        if (is_named_def(v)) {
                                char *vfn = def_fullname(v);
                                int own   = !strcmp(vfn, fn);

                                free(vfn);
                                if (own) {
                                        json_array_set_new(j, i,
                                                           json_string(fn));
                                        return true;
                                }
                        }
                        if (unnest_def(v, fn))
                                return true;
                }
                return false;
        }
        if (!json_is_object(j))
                return false;
        for (k = 0; k < VEIL_ARRAY_SIZE(keys); k++) {
                v = json_object_get(j, keys[k]);
                if (is_named_def(v)) {
                        char *vfn = def_fullname(v);
                        int own   = !strcmp(vfn, fn);

                        free(vfn);
                        if (own) {
                                json_object_set_new(j, keys[k],
                                                    json_string(fn));
                                return true;
                        }
                }
                if (v && unnest_def(v, fn))
                        return true;
        }
        json_array_foreach(json_object_get(j, "fields"), i, v)
        {
                if (unnest_def(v, fn))
                        return true;
        }
        return false;
}

/* Register (or dedupe, or rename) the named definition `def`. Returns what
 * to put in its place (a new reference). */
static json_t *settle_named(json_t *defs, json_t *def)
{
        char *fn = def_fullname(def), *cand = NULL;
        const char *dot;
        json_t *c, *have;
        int n;

        c    = canon(def, true);
        have = json_object_get(defs, fn);
        if (!have) {
                json_object_set_new(defs, fn, c);
                free(fn);
                return json_incref(def);
        }
        if (json_equal(have, c)) {
                json_decref(c);
                /* The equal definition met first may sit inside this one (a
                 * recursive record derived once more for a labelled field
                 * of its own type): a reference here would leave no
                 * definition at all, so this one stays the definition and
                 * the inner becomes the reference. */
                if (unnest_def(def, fn)) {
                        free(fn);
                        return json_incref(def);
                }
                c = json_string(fn);
                free(fn);
                return c;
        }
        /* The same type derived differently at another position: a second
         * definition under one name is invalid Avro, so rename this one. */
        json_decref(c);
        dot = strrchr(fn, '.');
        for (n = 2;; n++) {
                char *shortname;

                free(cand);
                if (asprintf(&cand, "%s_%d", fn, n) < 0)
                        abort();
                if (asprintf(&shortname, "%s_%d", dot ? dot + 1 : fn, n) < 0)
                        abort();
                json_object_set_new(def, "name", json_string(shortname));
                free(shortname);
                rename_refs(def, fn, cand, true);
                c    = canon(def, true);
                have = json_object_get(defs, cand);
                if (!have) {
                        json_object_set_new(defs, cand, c);
                        free(cand);
                        free(fn);
                        return json_incref(def);
                }
                if (json_equal(have, c)) {
                        json_decref(c);
                        c = json_string(cand);
                        free(cand);
                        free(fn);
                        return c;
                }
                json_decref(c);
                rename_refs(def, cand, fn, true);
        }
}

/* Post-order over type positions: inner named types settle first, so that
 * an outer definition compares with its inner names final. */
static json_t *settle(json_t *defs, json_t *t)
{
        json_t *v;
        size_t i;

        if (json_is_array(t)) {
                json_array_foreach(t, i, v)
                        json_array_set_new(t, i, settle(defs, v));
                return json_incref(t);
        }
        if (!json_is_object(t))
                return json_incref(t);
        v = json_object_get(t, "type");
        if (json_is_object(v) || json_is_array(v)) {
                json_object_set_new(t, "type", settle(defs, v));
                return json_incref(t);
        }
        json_array_foreach(json_object_get(t, "fields"), i, v)
        {
                json_t *ft = json_object_get(v, "type");

                if (ft)
                        json_object_set_new(v, "type", settle(defs, ft));
        }
        if ((v = json_object_get(t, "items")))
                json_object_set_new(t, "items", settle(defs, v));
        if ((v = json_object_get(t, "values")))
                json_object_set_new(t, "values", settle(defs, v));
        if (is_named_def(t))
                return settle_named(defs, t);
        return json_incref(t);
}

json_t *veil_derive_finish(json_t *type)
{
        json_t *defs = json_object();
        json_t *out  = settle(defs, type);

        json_decref(type);
        json_decref(defs);
        return out;
}

static bool is_time_logical(const char *logical)
{
        return logical && (!strcmp(logical, "date") ||
                           !strncmp(logical, "timestamp-", 10) ||
                           !strncmp(logical, "local-timestamp-", 16));
}

json_t *veil_derive_leaf_type(const struct veil_transform *tx, const char *prim,
                              const char *logical)
{
        switch (tx->kind) {
        case VEIL_TX_HASH:
        case VEIL_TX_MASK:
        case VEIL_TX_REDACT_TEXT:
                return json_string("string");
        case VEIL_TX_ENCRYPT:
                return json_string(tx->encrypt.output == VEIL_ENCRYPT_OUT_BYTES
                                           ? "bytes"
                                           : "string");
        case VEIL_TX_GENERALIZE:
                /* A date or timestamp becomes its year: a plain int. */
                if (is_time_logical(logical))
                        return json_string("int");
                return json_string(prim);
        default:
                return json_string(prim);
        }
}

static bool is_null_type(json_t *t)
{
        if (json_is_string(t))
                return !strcmp(json_string_value(t), "null");
        return json_is_object(t) &&
               json_is_string(json_object_get(t, "type")) &&
               !strcmp(json_string_value(json_object_get(t, "type")), "null");
}

json_t *veil_derive_nullable(json_t *type)
{
        json_t *out = json_array(), *v;
        size_t i;

        json_array_append_new(out, json_string("null"));
        if (json_is_array(type)) {
                json_array_foreach(type, i, v)
                {
                        if (!is_null_type(v))
                                json_array_append(out, v);
                }
                json_decref(type);
        } else if (type && !is_null_type(type)) {
                json_array_append_new(out, type);
        } else {
                json_decref(type);
        }
        return out;
}

/* What makes two union branches "the same type" for Avro: the full name of
 * a named type, else the type's kind. */
static char *branch_key(json_t *t)
{
        const char *s;

        if (json_is_string(t))
                return veil_strdup(json_string_value(t));
        if (is_named_def(t))
                return def_fullname(t);
        s = json_string_value(json_object_get(t, "type"));
        return veil_strdup(s ? s : "?");
}

json_t *veil_derive_union(json_t *const *branches, size_t n, uint32_t *map)
{
        json_t *out = json_array();
        char **keys = veil_calloc(n + 1, sizeof(*keys));
        size_t i, k, m = 0;

        for (i = 0; i < n; i++) {
                char *key = branch_key(branches[i]);

                for (k = 0; k < m; k++)
                        if (!strcmp(keys[k], key))
                                break;
                if (k == m) {
                        keys[m++] = key;
                        json_array_append(out, branches[i]);
                } else {
                        free(key);
                }
                map[i] = (uint32_t)k;
        }
        for (k = 0; k < m; k++)
                free(keys[k]);
        free(keys);
        return out;
}

json_t *veil_derive_field(json_t *src_field, const char *name, json_t *type,
                          bool type_unchanged, bool force_null_default)
{
        json_t *out = json_object(), *v, *def;
        const char *k;

        json_object_set_new(out, "name", json_string(name));
        json_object_set_new(out, "type", type);
        if (json_is_object(src_field))
                json_object_foreach(src_field, k, v)
                {
                        if (!strcmp(k, "name") || !strcmp(k, "type") ||
                            !strcmp(k, "default"))
                                continue;
                        json_object_set(out, k, v);
                }
        def = json_object_get(src_field, "default");
        if (force_null_default) {
                json_object_set_new(out, "default", json_null());
        } else if (def && type_unchanged) {
                json_object_set(out, "default", def);
        } else if (json_is_null(def) && json_is_array(type) &&
                   is_null_type(json_array_get(type, 0))) {
                json_object_set_new(out, "default", json_null());
        }
        return out;
}

void veil_derive_mark(json_t *field, const char *label, enum veil_tx_kind tx)
{
        if (!json_is_object(field))
                return;
        if (label)
                json_object_set_new(field, "veil.class", json_string(label));
        json_object_set_new(field, "veil.transform",
                            json_string(veil_tx_name(tx)));
        if (tx != VEIL_TX_KEEP) {
                json_object_del(field, "pii");
                json_object_del(field, "confluent:tags");
        }
}

const struct veil_plan_field *
veil_derive_field_entry(const struct veil_plan_field *f, size_t n,
                        const char *path)
{
        static const char *const below[] = {"", "[]", "{}"};
        size_t len                       = strlen(path), i, k;

        for (k = 0; k < VEIL_ARRAY_SIZE(below); k++)
                for (i = 0; i < n; i++)
                        if (!strncmp(f[i].path, path, len) &&
                            !strcmp(f[i].path + len, below[k]))
                                return &f[i];
        return NULL;
}

char *veil_derive_schema(const struct veil_schema *schema,
                         const struct veil_plan_opts *opts, char *errstr,
                         size_t errstr_size)
{
        struct veil_plan *plan =
                veil_plan_compile(schema, opts, errstr, errstr_size);
        char *text;

        if (!plan)
                return NULL;
        text = veil_strdup(veil_plan_derived_text(plan));
        veil_plan_destroy(plan);
        return text;
}

/* ---- record keys -------------------------------------------------------- */

bool veil_key_is_framed(const void *key, size_t len)
{
        return key && len >= VEIL_WIRE_HEADER_SIZE &&
               ((const uint8_t *)key)[0] == VEIL_WIRE_MAGIC;
}

const struct veil_transform *veil_key_tx(const struct veil_policy *policy,
                                         const struct veil_route *route,
                                         const struct veil_purpose *purpose,
                                         char *errstr, size_t errstr_size)
{
        const struct veil_transform *tx;

        if (!route || !route->key_class) {
                veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                          "route has no key_class");
                return NULL;
        }
        tx = veil_policy_transform(purpose, policy, route->key_class);
        if (!tx || tx->kind == VEIL_TX_DROP) {
                veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                          "key class '%s' is not licensed for purpose '%s'",
                          route->key_class, purpose ? purpose->name : "?");
                return NULL;
        }
        if (tx->kind != VEIL_TX_KEEP && tx->kind != VEIL_TX_NULL &&
            veil_tx_check(tx, errstr, errstr_size))
                return NULL;
        if (tx->kind == VEIL_TX_GENERALIZE || tx->kind == VEIL_TX_HASH ||
            tx->kind == VEIL_TX_MASK || tx->kind == VEIL_TX_ENCRYPT ||
            tx->kind == VEIL_TX_REDACT_TEXT || tx->kind == VEIL_TX_KEEP ||
            tx->kind == VEIL_TX_NULL)
                return tx;
        veil_errf(errstr, errstr_size, VEIL_ETYPE,
                  "transform '%s' cannot apply to a string key",
                  veil_tx_name(tx->kind));
        return NULL;
}

enum veil_wire_err veil_key_transform(const struct veil_transform *tx,
                                      struct veil_plan_env *env,
                                      const void *key, size_t len,
                                      struct veil_buf *out, bool *nullp)
{
        size_t cap, n = 0;
        char err[128];

        out->len = 0;
        *nullp   = false;
        switch (tx->kind) {
        case VEIL_TX_KEEP:
                return veil_buf_append(out, key, len) ? VEIL_WIRE_OK
                                                      : VEIL_WIRE_TOO_LARGE;
        case VEIL_TX_NULL:
                *nullp = true;
                return VEIL_WIRE_OK;
        case VEIL_TX_REDACT_TEXT:
                if (!env->detect || !env->detect_scratch)
                        return VEIL_WIRE_TRANSFORM_FAILED;
                if (veil_redact_text(env->detect, env->detect_scratch, tx, key,
                                     len, &env->text, NULL, err, sizeof(err)))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                return veil_buf_append(out, env->text.data, env->text.len)
                               ? VEIL_WIRE_OK
                               : VEIL_WIRE_TOO_LARGE;
        case VEIL_TX_HASH:
        case VEIL_TX_MASK:
        case VEIL_TX_GENERALIZE:
        case VEIL_TX_ENCRYPT:
                if ((tx->kind == VEIL_TX_HASH || tx->kind == VEIL_TX_ENCRYPT) &&
                    !env->keys)
                        return VEIL_WIRE_TRANSFORM_FAILED;
                cap = veil_tx_string_max(env->keys, tx, len);
                if (!veil_buf_reserve(out, cap))
                        return VEIL_WIRE_TOO_LARGE;
                if (veil_tx_string(env->keys, tx, key, len, out->data, cap, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                out->len = n;
                return VEIL_WIRE_OK;
        default:
                return VEIL_WIRE_TRANSFORM_FAILED;
        }
}
