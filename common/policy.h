/* policy.h - the licence model: tiers, classes, purposes, transforms, routes,
 * and the one classification resolver shared by `veil check` and the plans. */
#ifndef VEIL_COMMON_POLICY_H
#define VEIL_COMMON_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_tier {
        VEIL_TIER_PUBLIC = 0,
        VEIL_TIER_INTERNAL,
        VEIL_TIER_CONFIDENTIAL,
        VEIL_TIER_RESTRICTED,
        VEIL_TIER__COUNT,
        VEIL_TIER_NONE = -1,
};

/* "public" → VEIL_TIER_PUBLIC …; VEIL_TIER_NONE when not a tier name. */
enum veil_tier veil_tier_parse(const char *name);
const char *veil_tier_name(enum veil_tier tier);

enum veil_tx_kind {
        VEIL_TX_KEEP = 0,
        VEIL_TX_DROP,
        VEIL_TX_NULL,
        VEIL_TX_HASH,
        VEIL_TX_MASK,
        VEIL_TX_GENERALIZE,
        VEIL_TX_ENCRYPT,
        VEIL_TX_REDACT_TEXT,
        VEIL_TX__COUNT,
};

/* "keep" → VEIL_TX_KEEP …; -1 when unknown. */
int veil_tx_parse(const char *name);
const char *veil_tx_name(enum veil_tx_kind kind);

enum veil_encrypt_mode { VEIL_ENCRYPT_SIV = 0, VEIL_ENCRYPT_GCM };
enum veil_encrypt_output {
        VEIL_ENCRYPT_OUT_STRING = 0,
        VEIL_ENCRYPT_OUT_BYTES
};

/* A transform with its parameters. Written in YAML either as a plain name
 * (`hash`) or as a one-key map (`{ mask: { keep_last: 4 } }`). */
struct veil_transform {
        enum veil_tx_kind kind;
        struct {
                int keep_last;    /* default 4 when neither is given */
                int keep_first;   /* default 0 */
                char mask_char;   /* default '*' */
                bool digits_only; /* mask only digits (cards) */
        } mask;
        struct {
                int64_t width; /* numbers: bucket width, default 10 */
                int prefix;    /* strings: characters kept, default 1 */
        } generalize;
        struct {
                enum veil_encrypt_mode mode;     /* default SIV */
                enum veil_encrypt_output output; /* default string */
                bool per_subject; /* the subject's own data key */
        } encrypt;
        struct {
                char *replace;    /* default "[{detector}]" */
                char **detectors; /* NULL: all detectors */
                size_t n_detectors;
        } redact;
};

/* One class (e.g. `email`): a tier and optionally a detector name. */
struct veil_class {
        char *name;
        enum veil_tier tier;
        char *detector; /* NULL when none */
};

/* One entry of a purpose's `transforms:` map. `target` is a class name or
 * a tier name. */
struct veil_tx_rule {
        char *target;
        struct veil_transform tx;
};

/* A purpose's consent gate (`requires:`): the source record's field at
 * `field` (a dotted path through records; unions with null are looked
 * through) must equal the value. A record that fails it is not routed to
 * the purpose (filters/consent.c). */
enum veil_requires_kind {
        VEIL_REQUIRES_NONE = 0, /* no gate */
        VEIL_REQUIRES_BOOL,     /* equals: true | false */
        VEIL_REQUIRES_STRING,   /* equals: "text" or an enum symbol */
};

struct veil_requires {
        enum veil_requires_kind kind;
        char *field; /* "consents.marketing" */
        bool boolean;
        char *string;
};

/* A purpose's egress leak guard (`guard:`, filters/guard.c): what happens
 * when a detector finds, in a string the purpose receives, a class its
 * licence does not let it see raw. */
enum veil_on_leak {
        VEIL_LEAK_REDACT = 0, /* the span is replaced, the record goes on */
        VEIL_LEAK_QUARANTINE, /* the record goes to the DLQ */
        VEIL_LEAK_HALT,       /* the purpose's circuit breaker trips */
};

struct veil_guard {
        bool enabled; /* `guard:` given */
        enum veil_on_leak on_leak;
};

struct veil_purpose {
        char *name;
        char *license_id;
        int64_t valid_until;  /* epoch seconds of the end of that UTC day
                               * (the licence is valid through the date);
                               * 0 when not set */
        int64_t retention_ms; /* 0 when not set */
        struct veil_tx_rule *rules;
        size_t n_rules;
        struct veil_requires requires; /* kind NONE when not set */
        struct veil_guard guard;
};

struct veil_route_purpose {
        char *purpose;                  /* purpose name */
        char *topic;                    /* purpose topic */
        const struct veil_purpose *ref; /* resolved at load time */
};

struct veil_classify_override {
        char *path;  /* position path: `address.zip`, `contacts[].email`,
                      * map values `attrs{}`, map keys `attrs{key}` */
        char *label; /* class or tier name */
};

struct veil_route {
        char *source;    /* source topic */
        char *key_class; /* NULL when not set */
        struct veil_route_purpose *purposes;
        size_t n_purposes;
        struct veil_classify_override *classify;
        size_t n_classify;
        /* `accept: { records: [...] }`: full names of the writer schemas
         * this source may carry; anything else goes to the DLQ
         * (source-rejected). n_accept_records 0: every schema. */
        char **accept_records;
        size_t n_accept_records;
};

/* Custom detector from `detectors:`. */
struct veil_detector_def {
        char *name;
        char *pattern;
};

/* Tag → class mapping from `tag_classes:` (Confluent tags such as PII). */
struct veil_tag_class {
        char *tag;
        char *label;
};

struct veil_policy {
        struct veil_class *classes;
        size_t n_classes;
        struct veil_purpose *purposes;
        size_t n_purposes;
        struct veil_route *routes;
        size_t n_routes;
        struct veil_tag_class *tag_classes;
        size_t n_tag_classes;
        struct veil_detector_def *detectors;
        size_t n_detectors;
        /* SHA-256 of the canonical policy (classes, purposes, routes,
         * tag_classes, detectors), hex; stamped as `veil.policy`. */
        char digest[65];
};

/* Frees what the policy owns (not the struct itself) and zeroes it. */
void veil_policy_destroy(struct veil_policy *policy);

/* Frees a transform's parameters (redact replace/detectors) and zeroes it. */
void veil_transform_clear(struct veil_transform *tx);

/* Sets `kind` and every parameter to its documented default (the values
 * the config loader uses when YAML names none). Does not allocate: the
 * redact replace template stays NULL, which means "[{detector}]". */
void veil_transform_defaults(struct veil_transform *tx, enum veil_tx_kind kind);

/* The built-in detector names (docs/detectors.md): what `detector:` and
 * `redact_text.detectors` may name besides the policy's own `detectors:`. */
extern const char *const veil_builtin_detectors[];
extern const size_t veil_n_builtin_detectors;
bool veil_detector_is_builtin(const char *name);

/* Computes policy->digest: SHA-256 (hex) of a canonical serialization of
 * classes, purposes, routes, tag_classes and detectors, sorted by name so
 * that neither YAML key order nor formatting changes it. The config loader
 * calls it; call it again after changing a policy by hand. Returns 0 or
 * VEIL_ENOMEM/VEIL_EINVAL when OpenSSL fails. */
int veil_policy_digest(struct veil_policy *policy, char *errstr,
                       size_t errstr_size);

const struct veil_class *veil_policy_class(const struct veil_policy *policy,
                                           const char *name);
const struct veil_purpose *veil_policy_purpose(const struct veil_policy *policy,
                                               const char *name);
const struct veil_route *veil_policy_route(const struct veil_policy *policy,
                                           const char *source);
/* The custom detector of that name from `detectors:`, or NULL. */
const struct veil_detector_def *
veil_policy_detector(const struct veil_policy *policy, const char *name);

/* Where a classification came from, most precedent first. */
enum veil_label_source {
        VEIL_LABEL_NONE = 0, /* unclassified */
        VEIL_LABEL_OVERRIDE, /* the route's classify: */
        VEIL_LABEL_PII,      /* the field's "pii" annotation */
        VEIL_LABEL_TAG, /* confluent:tags / metadata.tags via tag_classes */
};

/* What the schema says about one field (gathered by the schema reader). */
struct veil_field_annotations {
        const char *pii;         /* "pii" attribute, or NULL */
        const char *const *tags; /* field confluent:tags + metadata.tags */
        size_t n_tags;
};

/* The one resolver (DESIGN.md §4): route override by path, then the "pii"
 * annotation, then tags through tag_classes; else unclassified (NULL).
 * Returns the label (class or tier name, owned by policy or by `ann`) and
 * sets *src. `route` may be NULL (no overrides). */
const char *veil_policy_classify(const struct veil_policy *policy,
                                 const struct veil_route *route,
                                 const char *path,
                                 const struct veil_field_annotations *ann,
                                 enum veil_label_source *src);

/* The tier of a label: the class's tier, or the tier itself when the label
 * is a tier name; VEIL_TIER_NONE when the label is neither (undefined). */
enum veil_tier veil_policy_label_tier(const struct veil_policy *policy,
                                      const char *label);

/* The transform a purpose applies to a label: the rule naming the class,
 * else the rule naming its tier; NULL when the licence does not cover it
 * (fail closed: the caller drops the field). */
const struct veil_transform *
veil_policy_transform(const struct veil_purpose *purpose,
                      const struct veil_policy *policy, const char *label);

/* True when the purpose's licence is still valid at `now` (epoch s). */
bool veil_purpose_licensed(const struct veil_purpose *purpose, int64_t now);

/* When the purpose's licence has expired at `now` (epoch s), writes
 * "licence ID expired on YYYY-MM-DD" (the last valid day, UTC) into buf and
 * returns true; otherwise returns false and leaves buf alone. The one
 * wording every command and log line uses for an expired licence. */
bool veil_license_expired_msg(const struct veil_purpose *purpose, int64_t now,
                              char *buf, size_t size);

#endif
