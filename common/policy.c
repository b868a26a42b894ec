/* policy.c - the licence model: names of tiers and transforms, lookups, the
 * one classification resolver, and the policy digest stamped on records. */
#define _POSIX_C_SOURCE 200809L
#include "policy.h"
#include "util.h"
#include "veil.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const tier_names[VEIL_TIER__COUNT] = {
        [VEIL_TIER_PUBLIC]       = "public",
        [VEIL_TIER_INTERNAL]     = "internal",
        [VEIL_TIER_CONFIDENTIAL] = "confidential",
        [VEIL_TIER_RESTRICTED]   = "restricted",
};

static const char *const tx_names[VEIL_TX__COUNT] = {
        [VEIL_TX_KEEP] = "keep",       [VEIL_TX_DROP] = "drop",
        [VEIL_TX_NULL] = "null",       [VEIL_TX_HASH] = "hash",
        [VEIL_TX_MASK] = "mask",       [VEIL_TX_GENERALIZE] = "generalize",
        [VEIL_TX_ENCRYPT] = "encrypt", [VEIL_TX_REDACT_TEXT] = "redact_text",
};

const char *const veil_builtin_detectors[] = {
        "email",  "phone",          "us_ssn", "credit_card", "iban",
        "ipv4",   "ipv6",           "uk_nhs", "ca_sin",      "fr_nir",
        "es_dni", "it_fiscal_code", "nl_bsn", "in_aadhaar",  "in_pan",
        "br_cpf", "aws_access_key", "jwt",
};
const size_t veil_n_builtin_detectors = VEIL_ARRAY_SIZE(veil_builtin_detectors);

enum veil_tier veil_tier_parse(const char *name)
{
        int i;

        if (!name)
                return VEIL_TIER_NONE;
        for (i = 0; i < VEIL_TIER__COUNT; i++)
                if (!strcmp(name, tier_names[i]))
                        return (enum veil_tier)i;
        return VEIL_TIER_NONE;
}

const char *veil_tier_name(enum veil_tier tier)
{
        if ((int)tier < 0 || tier >= VEIL_TIER__COUNT)
                return "none";
        return tier_names[tier];
}

int veil_tx_parse(const char *name)
{
        int i;

        if (!name)
                return -1;
        for (i = 0; i < VEIL_TX__COUNT; i++)
                if (!strcmp(name, tx_names[i]))
                        return i;
        return -1;
}

const char *veil_tx_name(enum veil_tx_kind kind)
{
        if ((int)kind < 0 || kind >= VEIL_TX__COUNT)
                return "unknown";
        return tx_names[kind];
}

bool veil_detector_is_builtin(const char *name)
{
        size_t i;

        if (!name)
                return false;
        for (i = 0; i < veil_n_builtin_detectors; i++)
                if (!strcmp(name, veil_builtin_detectors[i]))
                        return true;
        return false;
}

void veil_transform_clear(struct veil_transform *tx)
{
        size_t i;

        if (!tx)
                return;
        free(tx->redact.replace);
        for (i = 0; i < tx->redact.n_detectors; i++)
                free(tx->redact.detectors[i]);
        free(tx->redact.detectors);
        memset(tx, 0, sizeof(*tx));
}

void veil_transform_defaults(struct veil_transform *tx, enum veil_tx_kind kind)
{
        memset(tx, 0, sizeof(*tx));
        tx->kind              = kind;
        tx->mask.keep_last    = 4;
        tx->mask.mask_char    = '*';
        tx->generalize.width  = 10;
        tx->generalize.prefix = 1;
        tx->encrypt.mode      = VEIL_ENCRYPT_SIV;
        tx->encrypt.output    = VEIL_ENCRYPT_OUT_STRING;
}

void veil_policy_destroy(struct veil_policy *policy)
{
        size_t i, j;

        if (!policy)
                return;
        for (i = 0; i < policy->n_classes; i++) {
                free(policy->classes[i].name);
                free(policy->classes[i].detector);
        }
        free(policy->classes);
        for (i = 0; i < policy->n_purposes; i++) {
                struct veil_purpose *purpose = &policy->purposes[i];

                free(purpose->name);
                free(purpose->license_id);
                for (j = 0; j < purpose->n_rules; j++) {
                        free(purpose->rules[j].target);
                        veil_transform_clear(&purpose->rules[j].tx);
                }
                free(purpose->rules);
                free(purpose->requires.field);
                free(purpose->requires.string);
        }
        free(policy->purposes);
        for (i = 0; i < policy->n_routes; i++) {
                struct veil_route *route = &policy->routes[i];

                free(route->source);
                free(route->key_class);
                for (j = 0; j < route->n_purposes; j++) {
                        free(route->purposes[j].purpose);
                        free(route->purposes[j].topic);
                }
                free(route->purposes);
                for (j = 0; j < route->n_classify; j++) {
                        free(route->classify[j].path);
                        free(route->classify[j].label);
                }
                free(route->classify);
                for (j = 0; j < route->n_accept_records; j++)
                        free(route->accept_records[j]);
                free(route->accept_records);
        }
        free(policy->routes);
        for (i = 0; i < policy->n_tag_classes; i++) {
                free(policy->tag_classes[i].tag);
                free(policy->tag_classes[i].label);
        }
        free(policy->tag_classes);
        for (i = 0; i < policy->n_detectors; i++) {
                free(policy->detectors[i].name);
                free(policy->detectors[i].pattern);
        }
        free(policy->detectors);
        memset(policy, 0, sizeof(*policy));
}

const struct veil_class *veil_policy_class(const struct veil_policy *policy,
                                           const char *name)
{
        size_t i;

        if (!policy || !name)
                return NULL;
        for (i = 0; i < policy->n_classes; i++)
                if (!strcmp(policy->classes[i].name, name))
                        return &policy->classes[i];
        return NULL;
}

const struct veil_purpose *veil_policy_purpose(const struct veil_policy *policy,
                                               const char *name)
{
        size_t i;

        if (!policy || !name)
                return NULL;
        for (i = 0; i < policy->n_purposes; i++)
                if (!strcmp(policy->purposes[i].name, name))
                        return &policy->purposes[i];
        return NULL;
}

const struct veil_route *veil_policy_route(const struct veil_policy *policy,
                                           const char *source)
{
        size_t i;

        if (!policy || !source)
                return NULL;
        for (i = 0; i < policy->n_routes; i++)
                if (!strcmp(policy->routes[i].source, source))
                        return &policy->routes[i];
        return NULL;
}

const struct veil_detector_def *
veil_policy_detector(const struct veil_policy *policy, const char *name)
{
        size_t i;

        if (!policy || !name)
                return NULL;
        for (i = 0; i < policy->n_detectors; i++)
                if (!strcmp(policy->detectors[i].name, name))
                        return &policy->detectors[i];
        return NULL;
}

const char *veil_policy_classify(const struct veil_policy *policy,
                                 const struct veil_route *route,
                                 const char *path,
                                 const struct veil_field_annotations *ann,
                                 enum veil_label_source *src)
{
        size_t i, j;

        if (src)
                *src = VEIL_LABEL_NONE;
        if (route && path) {
                for (i = 0; i < route->n_classify; i++) {
                        if (strcmp(route->classify[i].path, path))
                                continue;
                        if (src)
                                *src = VEIL_LABEL_OVERRIDE;
                        return route->classify[i].label;
                }
        }
        if (!ann)
                return NULL;
        /* An empty "pii" says nothing; treating it as a label would make an
         * undefined class out of a typo in the schema. */
        if (ann->pii && *ann->pii) {
                if (src)
                        *src = VEIL_LABEL_PII;
                return ann->pii;
        }
        /* The field's own tag order decides: the first tag that maps wins. */
        for (i = 0; policy && i < ann->n_tags; i++) {
                if (!ann->tags[i])
                        continue;
                for (j = 0; j < policy->n_tag_classes; j++) {
                        if (strcmp(policy->tag_classes[j].tag, ann->tags[i]))
                                continue;
                        if (src)
                                *src = VEIL_LABEL_TAG;
                        return policy->tag_classes[j].label;
                }
        }
        return NULL;
}

enum veil_tier veil_policy_label_tier(const struct veil_policy *policy,
                                      const char *label)
{
        const struct veil_class *cls;
        enum veil_tier tier = veil_tier_parse(label);

        if (tier != VEIL_TIER_NONE)
                return tier;
        cls = veil_policy_class(policy, label);
        return cls ? cls->tier : VEIL_TIER_NONE;
}

static const struct veil_transform *rule_for(const struct veil_purpose *purpose,
                                             const char *target)
{
        size_t i;

        for (i = 0; i < purpose->n_rules; i++)
                if (!strcmp(purpose->rules[i].target, target))
                        return &purpose->rules[i].tx;
        return NULL;
}

const struct veil_transform *
veil_policy_transform(const struct veil_purpose *purpose,
                      const struct veil_policy *policy, const char *label)
{
        const struct veil_transform *tx;
        const struct veil_class *cls;

        if (!purpose || !label)
                return NULL;
        /* A tier label (`"pii": "internal"`) has no class rule to prefer. */
        if (veil_tier_parse(label) != VEIL_TIER_NONE)
                return rule_for(purpose, label);
        cls = veil_policy_class(policy, label);
        if (!cls)
                return NULL; /* undefined label: fail closed */
        tx = rule_for(purpose, label);
        if (tx)
                return tx;
        return rule_for(purpose, veil_tier_name(cls->tier));
}

bool veil_purpose_licensed(const struct veil_purpose *purpose, int64_t now)
{
        if (!purpose)
                return false;
        return purpose->valid_until == 0 || now <= purpose->valid_until;
}

bool veil_license_expired_msg(const struct veil_purpose *purpose, int64_t now,
                              char *buf, size_t size)
{
        time_t last;
        struct tm tm;

        if (!purpose || veil_purpose_licensed(purpose, now))
                return false;
        last = (time_t)purpose->valid_until;
        if (!gmtime_r(&last, &tm))
                return false;
        snprintf(buf, size, "licence %s expired on %04d-%02d-%02d",
                 purpose->license_id ? purpose->license_id : purpose->name,
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
        return true;
}

/* The digest: a canonical, length-prefixed serialization fed to SHA-256.
 * Every collection is sorted by name so that YAML key order and formatting
 * do not change it, and every string carries its length so that no two
 * policies serialize to the same bytes. */

struct digest {
        EVP_MD_CTX *md;
        int ok;
};

static void put_bytes(struct digest *d, const void *p, size_t n)
{
        if (d->ok && n && EVP_DigestUpdate(d->md, p, n) != 1)
                d->ok = 0;
}

static void put_str(struct digest *d, const char *s)
{
        char hdr[32];
        int n;

        if (!s) {
                put_bytes(d, "n", 1);
                return;
        }
        n = snprintf(hdr, sizeof(hdr), "s%zu:", strlen(s));
        put_bytes(d, hdr, (size_t)n);
        put_bytes(d, s, strlen(s));
}

static void put_int(struct digest *d, int64_t v)
{
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "i%lld;", (long long)v);

        put_bytes(d, buf, (size_t)n);
}

static int cmp_str_ptr(const void *a, const void *b)
{
        const char *const *x = a, *const *y = b;

        return strcmp(*x, *y);
}

struct named {
        const char *name;
        size_t i;
};

static int cmp_named(const void *a, const void *b)
{
        const struct named *x = a, *y = b;

        return strcmp(x->name, y->name);
}

/* The indexes of `n` items (each `size` bytes, with its `char *` name at
 * `name_off`) in name order. The caller frees the result. */
static size_t *sorted_by_name(const void *items, size_t n, size_t size,
                              size_t name_off)
{
        struct named *pairs = veil_calloc(n, sizeof(*pairs));
        size_t *idx         = veil_calloc(n, sizeof(*idx));
        size_t i;

        for (i = 0; i < n; i++) {
                const char *item = (const char *)items + i * size;

                memcpy(&pairs[i].name, item + name_off, sizeof(char *));
                pairs[i].i = i;
        }
        if (n)
                qsort(pairs, n, sizeof(*pairs), cmp_named);
        for (i = 0; i < n; i++)
                idx[i] = pairs[i].i;
        free(pairs);
        return idx;
}

static void put_transform(struct digest *d, const struct veil_transform *tx)
{
        const char **dets;
        size_t i;

        put_str(d, veil_tx_name(tx->kind));
        /* Only the parameters the kind uses: `hash` and `{ hash: {} }`, or
         * `mask` and `{ mask: { keep_last: 4 } }`, are the same policy. */
        switch (tx->kind) {
        case VEIL_TX_MASK:
                put_int(d, tx->mask.keep_last);
                put_int(d, tx->mask.keep_first);
                put_int(d, (unsigned char)tx->mask.mask_char);
                put_int(d, tx->mask.digits_only);
                break;
        case VEIL_TX_GENERALIZE:
                put_int(d, tx->generalize.width);
                put_int(d, tx->generalize.prefix);
                break;
        case VEIL_TX_ENCRYPT:
                put_int(d, tx->encrypt.mode);
                put_int(d, tx->encrypt.output);
                break;
        case VEIL_TX_REDACT_TEXT:
                put_str(d, tx->redact.replace);
                if (!tx->redact.detectors) {
                        put_bytes(d, "all", 3);
                        break;
                }
                dets = veil_calloc(tx->redact.n_detectors, sizeof(*dets));
                for (i = 0; i < tx->redact.n_detectors; i++)
                        dets[i] = tx->redact.detectors[i];
                qsort(dets, tx->redact.n_detectors, sizeof(*dets), cmp_str_ptr);
                put_int(d, (int64_t)tx->redact.n_detectors);
                for (i = 0; i < tx->redact.n_detectors; i++)
                        put_str(d, dets[i]);
                free(dets);
                break;
        default:
                break;
        }
}

#define SORTED(arr, n, type, field)                                            \
        sorted_by_name((arr), (n), sizeof(type), offsetof(type, field))

static void put_purpose(struct digest *d, const struct veil_purpose *purpose)
{
        size_t *idx, i;

        put_str(d, purpose->name);
        put_str(d, purpose->license_id);
        put_int(d, purpose->valid_until);
        put_int(d, purpose->retention_ms);
        put_int(d, (int64_t)purpose->n_rules);
        idx = SORTED(purpose->rules, purpose->n_rules, struct veil_tx_rule,
                     target);
        for (i = 0; i < purpose->n_rules; i++) {
                put_str(d, purpose->rules[idx[i]].target);
                put_transform(d, &purpose->rules[idx[i]].tx);
        }
        free(idx);
        /* Only when set: policies without a gate keep their digest. */
        if (purpose->requires.kind != VEIL_REQUIRES_NONE) {
                put_str(d, "requires");
                put_int(d, (int64_t)purpose->requires.kind);
                put_str(d, purpose->requires.field);
                put_int(d, purpose->requires.boolean);
                put_str(d, purpose->requires.string);
        }
        if (purpose->guard.enabled) {
                put_str(d, "guard");
                put_int(d, (int64_t)purpose->guard.on_leak);
        }
}

static void put_route(struct digest *d, const struct veil_route *route)
{
        size_t *idx, i;

        put_str(d, route->source);
        put_str(d, route->key_class);
        put_int(d, (int64_t)route->n_purposes);
        idx = SORTED(route->purposes, route->n_purposes,
                     struct veil_route_purpose, purpose);
        for (i = 0; i < route->n_purposes; i++) {
                put_str(d, route->purposes[idx[i]].purpose);
                put_str(d, route->purposes[idx[i]].topic);
        }
        free(idx);
        put_int(d, (int64_t)route->n_classify);
        idx = SORTED(route->classify, route->n_classify,
                     struct veil_classify_override, path);
        for (i = 0; i < route->n_classify; i++) {
                put_str(d, route->classify[idx[i]].path);
                put_str(d, route->classify[idx[i]].label);
        }
        free(idx);
        if (route->n_accept_records) {
                put_str(d, "accept.records");
                put_int(d, (int64_t)route->n_accept_records);
                idx = sorted_by_name(route->accept_records,
                                     route->n_accept_records, sizeof(char *),
                                     0);
                for (i = 0; i < route->n_accept_records; i++)
                        put_str(d, route->accept_records[idx[i]]);
                free(idx);
        }
}

int veil_policy_digest(struct veil_policy *policy, char *errstr,
                       size_t errstr_size)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        struct digest d     = {EVP_MD_CTX_new(), 1};
        size_t *idx, i;

        if (!d.md)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "policy digest: EVP_MD_CTX_new failed");
        if (EVP_DigestInit_ex(d.md, EVP_sha256(), NULL) != 1)
                d.ok = 0;
        put_str(&d, "veil-policy-1");

        put_bytes(&d, "C", 1);
        put_int(&d, (int64_t)policy->n_classes);
        idx = SORTED(policy->classes, policy->n_classes, struct veil_class,
                     name);
        for (i = 0; i < policy->n_classes; i++) {
                const struct veil_class *cls = &policy->classes[idx[i]];

                put_str(&d, cls->name);
                put_str(&d, veil_tier_name(cls->tier));
                put_str(&d, cls->detector);
        }
        free(idx);

        put_bytes(&d, "P", 1);
        put_int(&d, (int64_t)policy->n_purposes);
        idx = SORTED(policy->purposes, policy->n_purposes, struct veil_purpose,
                     name);
        for (i = 0; i < policy->n_purposes; i++)
                put_purpose(&d, &policy->purposes[idx[i]]);
        free(idx);

        put_bytes(&d, "R", 1);
        put_int(&d, (int64_t)policy->n_routes);
        idx = SORTED(policy->routes, policy->n_routes, struct veil_route,
                     source);
        for (i = 0; i < policy->n_routes; i++)
                put_route(&d, &policy->routes[idx[i]]);
        free(idx);

        put_bytes(&d, "T", 1);
        put_int(&d, (int64_t)policy->n_tag_classes);
        idx = SORTED(policy->tag_classes, policy->n_tag_classes,
                     struct veil_tag_class, tag);
        for (i = 0; i < policy->n_tag_classes; i++) {
                put_str(&d, policy->tag_classes[idx[i]].tag);
                put_str(&d, policy->tag_classes[idx[i]].label);
        }
        free(idx);

        put_bytes(&d, "D", 1);
        put_int(&d, (int64_t)policy->n_detectors);
        idx = SORTED(policy->detectors, policy->n_detectors,
                     struct veil_detector_def, name);
        for (i = 0; i < policy->n_detectors; i++) {
                put_str(&d, policy->detectors[idx[i]].name);
                put_str(&d, policy->detectors[idx[i]].pattern);
        }
        free(idx);

        if (d.ok && EVP_DigestFinal_ex(d.md, md, &md_len) != 1)
                d.ok = 0;
        EVP_MD_CTX_free(d.md);
        if (!d.ok || md_len != 32)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "policy digest: SHA-256 failed");
        veil_hex_encode(md, md_len, policy->digest);
        return 0;
}
