/* derive.h - derived schemas (what one purpose receives from one source
 * schema) and the transform of plain record keys. */
#ifndef VEIL_COMMON_DERIVE_H
#define VEIL_COMMON_DERIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan.h"
#include "policy.h"
#include "schema.h"
#include "wire.h"

/* The derived schema of (schema, opts->purpose) as compact JSON text, caller
 * frees. Same record names and namespaces as the source; per transform:
 *   keep → same type; drop, unclassified, unlicensed → field removed;
 *   null → ["null", T] with default null;
 *   hash, mask, redact_text, encrypt (string output) → "string";
 *   encrypt (bytes output) → "bytes";
 *   generalize: date and timestamps → "int" (the year), numbers → the same
 *   type, strings → "string".
 * It is the schema that the plan compiled from the same arguments writes;
 * errors are veil_plan_compile's. */
char *veil_derive_schema(const struct veil_schema *schema,
                         const struct veil_plan_opts *opts, char *errstr,
                         size_t errstr_size);

/* ---- building blocks for the plan compiler ------------------------------ */

/* Settle the named types (record, enum, fixed) of a derived schema built
 * with every named type written out in full. Avro allows one definition
 * per full name: in document order the first keeps its definition, an
 * equal later one becomes a reference, a different one (the same type
 * derived differently at another path) is renamed "<name>_<n>". Steals
 * `type`, returns the result. */
json_t *veil_derive_finish(json_t *type);

/* The derived type of a leaf (primitive, enum, fixed) of Avro type name
 * `prim` ("string", "long", …) with logicalType `logical` (may be NULL)
 * under tx (not keep, drop or null). New reference. */
json_t *veil_derive_leaf_type(const struct veil_transform *tx, const char *prim,
                              const char *logical);

/* ["null", T] for the null transform: T stolen; a union T gets "null"
 * moved first (or added). New reference. */
json_t *veil_derive_nullable(json_t *type);

/* A union of derived branches (references borrowed). Branches that became
 * the same type merge (two integers hashed into one "string"); map[i] gets
 * the output index of branch i. New reference. */
json_t *veil_derive_union(json_t *const *branches, size_t n, uint32_t *map);

/* A derived record field: the source field's attributes (doc, aliases,
 * order, annotations), name, the derived type (stolen) and the default
 * when it still fits: kept when the type is unchanged, null when the type
 * is a union whose first branch is "null" and the source default was null
 * (or for the null transform), removed otherwise. */
json_t *veil_derive_field(json_t *src_field, const char *name, json_t *type,
                          bool type_unchanged, bool force_null_default);

/* Says what the purpose receives in a derived record field (modified in
 * place): "veil.class" (the label, when there is one) and "veil.transform"
 * (veil_tx_name of tx). Unless tx is keep, the source's "pii" and
 * "confluent:tags" go: a hashed e-mail is no longer an e-mail, and a
 * consumer (or a Veil reading the purpose topic as a source) must not take
 * the token for one. */
void veil_derive_mark(json_t *field, const char *label, enum veil_tx_kind tx);

/* The entry of a plan's field summary (f, n: a slice of it) that speaks
 * for the record field at `path`: the entry at the path itself, else the
 * one of its items ("path[]") or map values ("path{}"). NULL when there is
 * none: an unlabelled container, whose leaves are marked one by one. */
const struct veil_plan_field *
veil_derive_field_entry(const struct veil_plan_field *f, size_t n,
                        const char *path);

/* ---- record keys ---------------------------------------------------------
 * A key is either Avro-framed (compile a plan with opts.root_label set to
 * the route's key_class and run veil_plan_exec_framed) or a plain string,
 * transformed here under the same rules, so that the same key always gives
 * the same output and tombstones match. */

/* True when the key looks Confluent-framed (0x00 + 4-byte id + body). */
bool veil_key_is_framed(const void *key, size_t len);

/* The transform a purpose applies to the route's keys. NULL with errstr
 * when its keys cannot reach the purpose (no key_class, class not licensed
 * or dropped): the record goes to the DLQ as `unclassified-key`. */
const struct veil_transform *veil_key_tx(const struct veil_policy *policy,
                                         const struct veil_route *route,
                                         const struct veil_purpose *purpose,
                                         char *errstr, size_t errstr_size);

/* Transform a plain key with tx (from veil_key_tx). out is reset and gets
 * the new key; *nullp is set when the key becomes null (the null
 * transform). Deterministic for hash, mask, generalize, SIV encrypt. */
enum veil_wire_err veil_key_transform(const struct veil_transform *tx,
                                      struct veil_plan_env *env,
                                      const void *key, size_t len,
                                      struct veil_buf *out, bool *nullp);

#endif
