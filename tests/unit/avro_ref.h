/* avro_ref.h - tests only: a policy builder, and the reference
 * implementation of every licence transform over avro-c generic values
 * (avro_value_t) that the record plans are checked against. */
#ifndef VEIL_TESTS_AVRO_REF_H
#define VEIL_TESTS_AVRO_REF_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan.h"
#include "policy.h"
#include "schema.h"

/* ---- policy builder: plain data, freed by veil_policy_destroy ----------- */

void avro_ref_class(struct veil_policy *policy, const char *name,
                    enum veil_tier tier);
/* Adds a purpose; pointers to earlier purposes move (look them up again
 * with veil_policy_purpose once all are added). */
struct veil_purpose *avro_ref_purpose(struct veil_policy *policy,
                                      const char *name);
/* A rule with the loader's defaults (keep_last 4, '*', width 10, prefix 1,
 * SIV, string output). */
struct veil_transform *avro_ref_rule(struct veil_purpose *purpose,
                                     const char *target,
                                     enum veil_tx_kind kind);
struct veil_route *avro_ref_route(struct veil_policy *policy,
                                  const char *source, const char *key_class);
void avro_ref_override(struct veil_route *route, const char *path,
                       const char *label);
void avro_ref_tag_class(struct veil_policy *policy, const char *tag,
                        const char *label);

/* ---- the reference transform ------------------------------------------- */

/* A decision tree over the source schema, built once per (schema, purpose)
 * from the same policy calls the plan uses (veil_policy_classify,
 * veil_policy_transform) but with its own walk: the generic path. */
struct avro_ref;

/* NULL with errstr when the reference does not handle the schema (it does
 * not follow recursive types). Refused transforms drop the position, as a
 * plan compiled with on_refuse does. */
struct avro_ref *avro_ref_new(const struct veil_schema *schema,
                              const struct veil_plan_opts *opts, char *errstr,
                              size_t errstr_size);
void avro_ref_destroy(struct avro_ref *ref);

/* Transform `src` (a value of schema->avro) into `dst` (a fresh value of the
 * derived schema). 0, or -1 with errstr. */
int avro_ref_apply(struct avro_ref *ref, struct veil_plan_env *env,
                   avro_value_t *src, avro_value_t *dst, char *errstr,
                   size_t errstr_size);

/* ---- random schemas and data (property tests) -------------------------- */

/* A tiny deterministic PRNG (splitmix64) so that seeds reproduce. */
uint64_t avro_ref_rand(uint64_t *state);
uint64_t avro_ref_below(uint64_t *state, uint64_t n);

/* Fill `value` with random data of its schema. `json` is the schema JSON
 * node for the value's type (for logical types); may be NULL. */
void avro_ref_random_value(uint64_t *state, avro_value_t *value, json_t *json,
                           const struct veil_schema *schema, int depth);

#endif
