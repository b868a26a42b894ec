/* check.c - `veil check`: walk every source schema field and report, by path,
 * every gap between the schemas and the policy before deployment. */
#define _GNU_SOURCE
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "plan.h"
#include "registry.h"
#include "schema.h"
#include "transform.h"
#include "util.h"
#include "veil.h"

struct ctx {
        const struct veil_config *config;
        const struct veil_policy *policy;
        json_t *report;
};

static void finding(struct ctx *c, enum veil_check_severity sev,
                    const char *kind, const char *route, const char *purpose,
                    const char *path, const char *label, const char *fmt, ...)
        __attribute__((format(printf, 8, 9)));

static void finding(struct ctx *c, enum veil_check_severity sev,
                    const char *kind, const char *route, const char *purpose,
                    const char *path, const char *label, const char *fmt, ...)
{
        json_t *f = json_object();
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        json_object_set_new(
                f, "severity",
                json_string(sev == VEIL_CHECK_ERROR ? "error" : "warning"));
        json_object_set_new(f, "kind", json_string(kind));
        if (route)
                json_object_set_new(f, "route", json_string(route));
        if (purpose)
                json_object_set_new(f, "purpose", json_string(purpose));
        if (path)
                json_object_set_new(f, "path", json_string(path));
        if (label)
                json_object_set_new(f, "label", json_string(label));
        json_object_set_new(f, "message", json_string(msg));
        json_array_append_new(c->report, f);
}

static void check_purposes(struct ctx *c, int64_t now)
{
        const struct veil_policy *p = c->policy;
        size_t i;

        for (i = 0; i < p->n_purposes; i++) {
                const struct veil_purpose *pu = &p->purposes[i];

                if (!pu->retention_ms)
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_NO_RETENTION,
                                NULL, pu->name, NULL, NULL,
                                "purpose has no retention: its data would "
                                "never be deleted downstream");
                if (!pu->valid_until) {
                        /* `valid_until: never` said explicitly: allowed,
                         * but a licence without an end is worth a look. */
                        if (pu->license_id)
                                finding(c, VEIL_CHECK_WARNING,
                                        VEIL_GAP_LICENSE_NEVER, NULL, pu->name,
                                        NULL, NULL,
                                        "licence %s never ends "
                                        "(valid_until: never)",
                                        pu->license_id);
                        continue;
                }
                if (pu->valid_until <= now)
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_LICENSE_EXPIRED,
                                NULL, pu->name, NULL, NULL,
                                "licence %s expired: the purpose receives "
                                "nothing",
                                pu->license_id ? pu->license_id : "(no id)");
                else if (pu->valid_until - now <= 30 * 86400)
                        finding(c, VEIL_CHECK_WARNING,
                                VEIL_GAP_LICENSE_EXPIRING, NULL, pu->name, NULL,
                                NULL,
                                "licence %s expires within 30 days (%lld "
                                "days left)",
                                pu->license_id ? pu->license_id : "(no id)",
                                (long long)((pu->valid_until - now + 86399) /
                                            86400));
        }
}

/* Check one label against every purpose of the route. */
static void check_label(struct ctx *c, const struct veil_route *route,
                        const struct veil_schema *schema,
                        const struct veil_schema_field *f, const char *label,
                        int64_t now)
{
        size_t j;
        char err[256];

        for (j = 0; j < route->n_purposes; j++) {
                const struct veil_purpose *pu = route->purposes[j].ref;
                const struct veil_transform *tx;

                if (!pu || (pu->valid_until && pu->valid_until <= now))
                        continue; /* reported once per purpose */
                tx = veil_policy_transform(pu, c->policy, label);
                if (!tx) {
                        finding(c, VEIL_CHECK_WARNING, VEIL_GAP_UNLICENSED,
                                route->source, pu->name, f->path, label,
                                "licence does not list '%s' (or its tier): "
                                "the field is dropped for this purpose; "
                                "name it with 'drop' to make that explicit",
                                label);
                        continue;
                }
                /* the plan compiler's own rule, so check and run agree */
                if (veil_plan_check_field(schema, f, tx, err, sizeof(err)))
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_TYPE_MISMATCH,
                                route->source, pu->name, f->path, label, "%s",
                                err);
        }
}

/* ---- map keys (DESIGN.md §5: map keys are data) ----------------------------
 * The walk over a field's type down to the records inside it (their fields
 * are schema fields of their own): every map met has keys at "PATH{key}",
 * classified by that override or by the map's label. `known` collects the
 * positions seen (PATH[], PATH{}, PATH{key}) for the unused-override
 * check. */
struct keys_walk {
        struct ctx *c;
        const struct veil_route *route;
        int64_t now;
        json_t *known;
};

static void check_keys_label(struct keys_walk *w, const char *kpath,
                             const char *label)
{
        struct ctx *c = w->c;
        char err[256];
        size_t j;

        if (veil_policy_label_tier(c->policy, label) == VEIL_TIER_NONE) {
                finding(c, VEIL_CHECK_ERROR, VEIL_GAP_UNDEFINED_CLASS,
                        w->route->source, NULL, kpath, label,
                        "class '%s' is not defined under classes: (from "
                        "classify:)",
                        label);
                return;
        }
        for (j = 0; j < w->route->n_purposes; j++) {
                const struct veil_purpose *pu = w->route->purposes[j].ref;
                const struct veil_transform *tx;

                if (!pu || (pu->valid_until && pu->valid_until <= w->now))
                        continue;
                tx = veil_policy_transform(pu, c->policy, label);
                if (!tx)
                        finding(c, VEIL_CHECK_WARNING, VEIL_GAP_UNLICENSED,
                                w->route->source, pu->name, kpath, label,
                                "licence does not list '%s' (or its tier): "
                                "the map is dropped for this purpose",
                                label);
                else if (tx->kind != VEIL_TX_KEEP && tx->kind != VEIL_TX_DROP &&
                         tx->kind != VEIL_TX_NULL &&
                         veil_tx_check(tx, err, sizeof(err)))
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_TYPE_MISMATCH,
                                w->route->source, pu->name, kpath, label, "%s",
                                err);
        }
}

/* Returns true when a leaf below is unclassified (no label, none of the
 * route's PATH[] / PATH{} overrides). */
static bool walk_keys(struct keys_walk *w, avro_schema_t t, const char *path,
                      const char *label, int depth, bool top)
{
        const struct veil_policy *policy = w->c->policy;
        const char *own;
        bool bare = false;
        char *sub;
        size_t i;

        while (avro_typeof(t) == AVRO_LINK)
                t = avro_schema_link_target(t);
        if (depth > VEIL_SCHEMA_MAX_DEPTH)
                return false;
        switch (avro_typeof(t)) {
        case AVRO_UNION:
                for (i = 0; i < avro_schema_union_size(t); i++)
                        bare |= walk_keys(w,
                                          avro_schema_union_branch(t, (int)i),
                                          path, label, depth + 1, false);
                return bare;
        case AVRO_MAP:
                if (asprintf(&sub, "%s{key}", path) < 0)
                        abort();
                json_object_set_new(w->known, sub, json_true());
                own = veil_policy_classify(policy, w->route, sub, NULL, NULL);
                if (own)
                        check_keys_label(w, sub, own);
                else if (!label)
                        finding(w->c, VEIL_CHECK_ERROR, VEIL_GAP_UNCLASSIFIED,
                                w->route->source, NULL, sub, NULL,
                                "map keys are unclassified: no purpose will "
                                "receive the map (label the map, or name "
                                "\"%s\" in the route's classify:)",
                                sub);
                free(sub);
                /* fall through to the values */
                if (asprintf(&sub, "%s{}", path) < 0)
                        abort();
                break;
        case AVRO_ARRAY:
                if (asprintf(&sub, "%s[]", path) < 0)
                        abort();
                break;
        case AVRO_RECORD:
                return false; /* its fields are schema fields of their own */
        case AVRO_NULL:
                /* carries nothing: passes inside a union or a container,
                 * but a field of type null is a field like any other */
                return top && !label;
        default:
                return !label;
        }
        json_object_set_new(w->known, sub, json_true());
        own  = veil_policy_classify(policy, w->route, sub, NULL, NULL);
        bare = walk_keys(w,
                         avro_typeof(t) == AVRO_MAP
                                 ? avro_schema_map_values(t)
                                 : avro_schema_array_items(t),
                         sub, own ? own : label, depth + 1, false);
        free(sub);
        return bare;
}

/* The consent gates of the route's purposes: the field must be in the
 * schema with a type the condition can test (the worker would otherwise
 * withhold every record from the purpose). */
static void check_requires(struct ctx *c, const struct veil_route *route,
                           const struct veil_schema *schema)
{
        size_t j;

        for (j = 0; j < route->n_purposes; j++) {
                const struct veil_purpose *pu = route->purposes[j].ref;
                struct veil_consent_probe *probe;
                char err[384];
                int rc = 0;

                if (!pu || pu->requires.kind == VEIL_REQUIRES_NONE)
                        continue;
                probe = veil_consent_probe_new(schema, &pu->requires, &rc, err,
                                               sizeof(err));
                if (probe) {
                        veil_consent_probe_destroy(probe);
                        continue;
                }
                finding(c, VEIL_CHECK_ERROR,
                        rc == VEIL_ENOTFOUND ? VEIL_GAP_REQUIRES_MISSING
                                             : VEIL_GAP_REQUIRES_TYPE,
                        route->source, pu->name, pu->requires.field, NULL,
                        "schema %d: %s; the purpose would receive none of "
                        "its records",
                        schema->id, err);
        }
}

/* accept: must let the source's own latest schema through. */
static void check_accept(struct ctx *c, const struct veil_route *route,
                         const struct veil_schema *schema)
{
        const char *name = avro_schema_name(schema->avro);
        const char *ns   = avro_schema_namespace(schema->avro);
        char full[384];
        size_t i;

        if (!route->n_accept_records)
                return;
        snprintf(full, sizeof(full), "%s%s%s", ns && *ns ? ns : "",
                 ns && *ns ? "." : "", name ? name : "?");
        for (i = 0; i < route->n_accept_records; i++)
                if (!strcmp(route->accept_records[i], full))
                        return;
        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_NOT_ACCEPTED, route->source, NULL,
                NULL, NULL,
                "schema %d is the record %s, which accept: does not list: "
                "every record of the source would go to the DLQ",
                schema->id, full);
}

/* Crypto-shredding's subject is the source record's key: a purpose that
 * encrypts per subject on a route that declares no key (no key_class)
 * would send every record without one to the DLQ. One finding per rule. */
static void check_subject_keys(struct ctx *c, const struct veil_route *route)
{
        size_t j, k;

        if (route->key_class)
                return;
        for (j = 0; j < route->n_purposes; j++) {
                const struct veil_purpose *pu = route->purposes[j].ref;

                for (k = 0; pu && k < pu->n_rules; k++) {
                        const struct veil_tx_rule *rule = &pu->rules[k];

                        if (rule->tx.kind != VEIL_TX_ENCRYPT ||
                            !rule->tx.encrypt.per_subject)
                                continue;
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_SUBJECT_NO_KEY,
                                route->source, pu->name, NULL, rule->target,
                                "'%s' is encrypted per subject, whose subject "
                                "is the record key, but the route declares "
                                "no key (key_class): records without one "
                                "would go to the DLQ",
                                rule->target);
                }
        }
}

static int check_route(struct ctx *c, struct veil_registry *reg,
                       const struct veil_route *route, int64_t now,
                       char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy = c->policy;
        struct veil_schema *schema       = NULL;
        const char *text, *meta_text = NULL;
        json_t *meta  = NULL;
        char *subject = NULL;
        char err[512];
        int id, rc;
        size_t i, j;
        int *covered        = NULL; /* 1 when an ancestor carries a label */
        const char **labels = NULL; /* the label in force at each field */
        struct keys_walk kw = {c, route, now, NULL};

        if (!route->key_class)
                finding(c, VEIL_CHECK_ERROR, VEIL_GAP_NO_KEY_CLASS,
                        route->source, NULL, NULL, NULL,
                        "route has no key_class: keys would reach purposes "
                        "untransformed, so none are sent");
        else
                for (j = 0; j < route->n_purposes; j++) {
                        const struct veil_purpose *pu = route->purposes[j].ref;

                        if (pu && !veil_policy_transform(pu, policy,
                                                         route->key_class))
                                finding(c, VEIL_CHECK_ERROR,
                                        VEIL_GAP_KEY_UNLICENSED, route->source,
                                        pu->name, NULL, route->key_class,
                                        "the key's class '%s' is not "
                                        "licensed for this purpose: its "
                                        "records cannot be keyed",
                                        route->key_class);
                }

        check_subject_keys(c, route);

        if (asprintf(&subject, "%s-value", route->source) < 0)
                abort();
        rc = veil_registry_latest_meta(reg, subject, &id, &text, &meta_text,
                                       err, sizeof(err));
        if (rc == VEIL_ENOTFOUND) {
                finding(c, VEIL_CHECK_ERROR, VEIL_GAP_NO_SCHEMA, route->source,
                        NULL, NULL, NULL,
                        "no schema registered under subject '%s'", subject);
                free(subject);
                return 0;
        }
        if (rc) {
                veil_errf(errstr, errstr_size, rc, "%s%s",
                          veil_registry_err_prefix(err), err);
                free(subject);
                return rc;
        }
        if (meta_text)
                meta = json_loads(meta_text, 0, NULL);
        schema = veil_schema_parse(text, strlen(text), meta, id, err,
                                   sizeof(err));
        json_decref(meta);
        if (!schema) {
                finding(c, VEIL_CHECK_ERROR, VEIL_GAP_BAD_SCHEMA, route->source,
                        NULL, NULL, NULL, "schema %d of subject '%s': %s", id,
                        subject, err);
                free(subject);
                return 0;
        }
        free(subject);
        check_accept(c, route, schema);
        check_requires(c, route, schema);

        covered = veil_calloc(schema->n_fields + 1, sizeof(*covered));
        labels  = veil_calloc(schema->n_fields + 1, sizeof(*labels));
        for (i = 0; i < schema->n_fields; i++) {
                const struct veil_schema_field *f = &schema->fields[i];
                struct veil_field_annotations ann;
                enum veil_label_source src;
                const char *label;

                if (f->parent >= 0 && covered[f->parent]) {
                        covered[i] = 1; /* the ancestor's transform rules */
                        labels[i]  = labels[f->parent];
                        continue;
                }
                veil_schema_field_annotations(f, &ann);
                label     = veil_policy_classify(policy, route, f->path, &ann,
                                                 &src);
                labels[i] = label;
                if (!label)
                        continue; /* leaves below: see walk_keys */
                covered[i] = 1;
                if (veil_policy_label_tier(policy, label) == VEIL_TIER_NONE) {
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_UNDEFINED_CLASS,
                                route->source, NULL, f->path, label,
                                "class '%s' is not defined under classes: "
                                "(from %s)",
                                label,
                                src == VEIL_LABEL_OVERRIDE ? "classify:"
                                : src == VEIL_LABEL_PII ? "the pii annotation"
                                                        : "tag_classes:");
                        continue;
                }
                check_label(c, route, schema, f, label, now);
        }
        kw.known = json_object();
        for (i = 0; i < schema->n_fields; i++) {
                const struct veil_schema_field *f = &schema->fields[i];
                int has_children                  = i + 1 < schema->n_fields &&
                                   schema->fields[i + 1].parent == (int)i;

                /* A field unclassified with values below it that no
                 * PATH[] / PATH{} override labels either (records below
                 * are classified field by field). */
                if (walk_keys(&kw, f->type, f->path, labels[i], f->depth,
                              true) &&
                    !has_children)
                        finding(c, VEIL_CHECK_ERROR, VEIL_GAP_UNCLASSIFIED,
                                route->source, NULL, f->path, NULL,
                                "field is unclassified: no purpose will "
                                "receive it (annotate it with \"pii\" or "
                                "add it to the route's classify:)");
        }
        for (i = 0; i < route->n_classify; i++)
                if (!veil_schema_field(schema, route->classify[i].path) &&
                    !json_object_get(kw.known, route->classify[i].path))
                        finding(c, VEIL_CHECK_WARNING, VEIL_GAP_UNUSED_OVERRIDE,
                                route->source, NULL, route->classify[i].path,
                                route->classify[i].label,
                                "classify: names a path that schema %d does "
                                "not have",
                                schema->id);
        json_decref(kw.known);
        free(labels);
        free(covered);
        veil_schema_destroy(schema);
        return 0;
}

int veil_check_run(const struct veil_config *config, struct veil_registry *reg,
                   int64_t now, json_t *report, char *errstr,
                   size_t errstr_size)
{
        struct ctx c = {config, &config->policy, report};
        size_t i;
        int rc;

        check_purposes(&c, now);
        for (i = 0; i < config->policy.n_routes; i++) {
                rc = check_route(&c, reg, &config->policy.routes[i], now,
                                 errstr, errstr_size);
                if (rc)
                        return rc;
        }
        return 0;
}
