/* plan.h - record plans: for one (schema, purpose), a program compiled once
 * over the Avro binary that copies untouched byte ranges, transforms
 * classified fields and skips dropped ones, plus the derived schema that
 * decodes its output; and a bounded cache of plans. */
#ifndef VEIL_COMMON_PLAN_H
#define VEIL_COMMON_PLAN_H

#include <avro.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"
#include "policy.h"
#include "schema.h"
#include "transform.h"
#include "wire.h"

/* Nesting the executor follows before a record is too-deep (recursive
 * schemas are the only way data nests deeper than the schema text). */
#define VEIL_PLAN_MAX_DEPTH 64
/* Items of zero-width types (null, empty records) allowed in one record:
 * they consume no input, so only a count bounds the work. */
#define VEIL_PLAN_MAX_EMPTY_ITEMS 65536
/* Hash tokens a record remembers (struct veil_plan_env). */
#define VEIL_PLAN_MEMO 8
/* Default cap of one output record. */
#define VEIL_PLAN_DEFAULT_MAX_OUTPUT ((size_t)64 << 20)

struct veil_plan;

/* Why a classified position got its action (the plan's field summary, for
 * audit events and counters: names and codes only, never values). */
enum veil_plan_reason {
        VEIL_PLAN_LICENSED = 0, /* the purpose's rule for the label */
        VEIL_PLAN_UNCLASSIFIED, /* no label: dropped (fail closed) */
        VEIL_PLAN_UNLICENSED,   /* label without a rule: dropped */
        VEIL_PLAN_UNDEFINED,    /* label is neither a class nor a tier */
        VEIL_PLAN_INHERITED,    /* no own label; the enclosing field's */
};

struct veil_plan_field {
        /* Owned by the plan: a field, items "a[]", map values "m{}" or
         * map keys "m{key}" (DESIGN.md §5: map keys are data). */
        const char *path;
        const char *label; /* NULL when unclassified; borrowed */
        enum veil_label_source source;
        enum veil_plan_reason reason;
        enum veil_tx_kind tx; /* what the plan does at this position */
};

/* Called for each transform the compiler refuses when set; compilation then
 * drops that position and goes on, so `veil check` sees every refusal in
 * one pass. Without it the first refusal fails the compile. */
typedef void (*veil_plan_refuse_fn)(void *opaque, const char *path,
                                    const char *label,
                                    const struct veil_transform *tx,
                                    const char *message);

struct veil_plan_opts {
        const struct veil_policy *policy;   /* must outlive the plan */
        const struct veil_route *route;     /* classify overrides; NULL ok */
        const struct veil_purpose *purpose; /* must outlive the plan */
        /* The label of the whole value: the route's key_class when the plan
         * rewrites keys. NULL for values (the top type must be a record
         * whose fields are classified one by one). */
        const char *root_label;
        size_t max_output; /* 0: VEIL_PLAN_DEFAULT_MAX_OUTPUT */
        veil_plan_refuse_fn on_refuse;
        void *opaque;
};

/* Compile the plan of `schema` for opts->purpose. The schema (and its avro
 * and JSON) need not outlive the plan; the policy must. Errors:
 * VEIL_ETYPE   a transform cannot apply to a type (message names the field
 *              path, the transform and the type);
 * VEIL_EINVAL  bad transform parameters, unresolvable named type, nesting
 *              deeper than VEIL_PLAN_MAX_DEPTH, a value schema whose top
 *              type is not a record;
 * VEIL_ENOTFOUND  the whole value would be dropped (root_label not licensed:
 *              for keys, the record cannot be keyed). */
struct veil_plan *veil_plan_compile(const struct veil_schema *schema,
                                    const struct veil_plan_opts *opts,
                                    char *errstr, size_t errstr_size);
void veil_plan_destroy(struct veil_plan *plan);

/* The derived schema (DESIGN.md §4): compact JSON text, or the JSON tree;
 * both owned by the plan. Output records decode exactly with it. */
const char *veil_plan_derived_text(const struct veil_plan *plan);
json_t *veil_plan_derived_json(const struct veil_plan *plan);

/* The source schema id and the registry id of the derived schema (-1 until
 * set). veil_plan_exec_framed frames output with the derived id. */
int veil_plan_source_id(const struct veil_plan *plan);
int veil_plan_output_id(const struct veil_plan *plan);
void veil_plan_set_output_id(struct veil_plan *plan, int id);

/* Every classified position with its label and action (DFS order). */
const struct veil_plan_field *veil_plan_fields(const struct veil_plan *plan,
                                               size_t *n);
/* Positions dropped by fail-closed (unclassified, unlicensed, undefined). */
size_t veil_plan_failclosed_count(const struct veil_plan *plan);
/* True when the plan needs env->keys (hash/encrypt) or env->detect
 * (redact_text). */
bool veil_plan_needs_keys(const struct veil_plan *plan);
bool veil_plan_needs_detect(const struct veil_plan *plan);

/* Can `tx` apply to a field of this type? The same rule the compiler uses:
 * records, arrays, maps and unions are looked through (the transform then
 * applies to their leaves, null branches pass). `type_json` (the field's
 * "type" as written, may be NULL) supplies logical types avro-c drops.
 * 0, or VEIL_ETYPE / VEIL_EINVAL with a message naming the transform, the
 * type and the sub-path below the field where it fails. */
int veil_plan_check_field(const struct veil_schema *schema,
                          const struct veil_schema_field *field,
                          const struct veil_transform *tx, char *errstr,
                          size_t errstr_size);

/* What a plan needs while it runs, owned by the caller, one per thread (and
 * per purpose for `keys`, whose ciphers are not thread-safe). The buffers
 * grow on first use and are reused: steady state allocates nothing. */
struct veil_subject_cipher;
struct veil_plan_env {
        struct veil_tx_keys *keys; /* hash/encrypt */
        /* encrypt { per_subject: true }: the ciphers of this record's
         * subject for this purpose (set per record by the caller; NULL
         * fails such a field closed, as transform-failed) */
        struct veil_subject_cipher *subject;
        const struct veil_detect_engine *detect; /* redact_text */
        struct veil_detect_scratch *detect_scratch;
        struct veil_buf tmp;       /* owned */
        struct veil_text_buf text; /* owned */
        struct veil_buf seen;      /* owned: map keys met (see plan_exec.c) */
        uint64_t seen_seed;        /* set on first use */
        /* Hash tokens written in the current record, by value: a value
         * that comes again (an address in `email` and in `contacts`)
         * copies its token instead of paying the HMAC again. */
        struct {
                const uint8_t *val; /* in the input body */
                size_t len, off;    /* the token's bytes in out */
        } memo[VEIL_PLAN_MEMO];
        unsigned n_memo;
};

/* Frees the env's own buffers (not keys, engine or scratch). */
void veil_plan_env_free(struct veil_plan_env *env);

/* Where a record failed: a stable code, the byte offset in the input body
 * and the innermost field path known (owned by the plan, may be NULL). */
struct veil_plan_error {
        enum veil_wire_err code;
        size_t offset;
        const char *path;
};

/* Rewrite one Avro body (no framing) and append the result to `out` (its
 * len is not reset). On error out->len is restored and `err` (may be NULL)
 * says why. A plan is read-only here: threads may share it, each with its
 * own env. `env` may be NULL for plans without hash, encrypt and
 * redact_text. Steady state (same env and out reused) allocates nothing. */
enum veil_wire_err veil_plan_exec(const struct veil_plan *plan,
                                  struct veil_plan_env *env,
                                  const uint8_t *body, size_t len,
                                  struct veil_buf *out,
                                  struct veil_plan_error *err);

/* At most this many plans run in one pass (struct veil_plan_set). */
#define VEIL_PLAN_MULTI_MAX 8

/* ---- one pass for every purpose of a route ----------------------------------
 * A plan set merges the plans of one source schema (the purposes of a
 * route) so that one pass over a record serves them all: one decode and
 * validation, each plan writing its own output exactly as veil_plan_exec
 * would. The plans must outlive the set; they must come from the same
 * schema (VEIL_EINVAL otherwise). Read-only once built: threads may share
 * it, each with its own envs. */
struct veil_plan_set;

struct veil_plan_set *veil_plan_set_new(const struct veil_plan *const *plans,
                                        size_t n, char *errstr,
                                        size_t errstr_size);
void veil_plan_set_destroy(struct veil_plan_set *set);

/* Rewrite one Avro body for every plan of the set: outs[i] (appended to)
 * and envs[i] (one per plan, never shared) go with the set's plan i. On a
 * failure of the input every out is restored and every errs[i] (may be
 * NULL) names it; a failure of one plan's own writing (its output limit, a
 * transform) fails that plan only. Returns the first failure, or
 * VEIL_WIRE_OK. Steady state allocates nothing. */
enum veil_wire_err veil_plan_set_exec(const struct veil_plan_set *set,
                                      struct veil_plan_env *const *envs,
                                      const uint8_t *body, size_t len,
                                      struct veil_buf *const *outs,
                                      struct veil_plan_error *errs);

/* Rewrite a framed message: out is reset (also on error) to the 5-byte
 * header with the plan's output id followed by the rewritten body.
 * Tombstones (msg NULL) are the caller's to forward; here they are
 * too-short. bad-magic / too-short for bad framing; the schema id is the
 * caller's business (it chose the plan). */
enum veil_wire_err veil_plan_exec_framed(const struct veil_plan *plan,
                                         struct veil_plan_env *env,
                                         const void *msg, size_t len,
                                         struct veil_buf *out,
                                         struct veil_plan_error *err);

/* ---- cache ---------------------------------------------------------------
 * Plans keyed by (schema id, purpose, policy digest, key-or-value), at most
 * `capacity` of them; the least recently used is destroyed to make room.
 * Not thread-safe: one cache per worker thread. A plan returned by get or
 * put stays valid until a later put evicts it. */
struct veil_plan_cache;

struct veil_plan_cache *veil_plan_cache_new(size_t capacity);
void veil_plan_cache_destroy(struct veil_plan_cache *cache);
struct veil_plan *veil_plan_cache_get(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key);
/* Takes ownership of plan (also on a duplicate key: the older is replaced).
 * Returns plan. */
struct veil_plan *veil_plan_cache_put(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key,
                                      struct veil_plan *plan);
size_t veil_plan_cache_size(const struct veil_plan_cache *cache);

#endif
