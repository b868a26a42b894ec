/* consent.h - a purpose's consent gate (`requires:`) read straight from a
 * record's Avro binary: a probe compiled once per (schema, condition) skips
 * to the field and compares it, without building an avro-c value. */
#ifndef VEIL_COMMON_CONSENT_H
#define VEIL_COMMON_CONSENT_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "schema.h"

struct veil_consent_probe;

/* What a record says about the condition. Only PASS lets it through. */
enum veil_consent {
        VEIL_CONSENT_PASS = 0,  /* the field equals the value */
        VEIL_CONSENT_FAIL,      /* it holds another value */
        VEIL_CONSENT_NULL,      /* it (or a record on its path) is null */
        VEIL_CONSENT_MALFORMED, /* the body ends early or is invalid */
};

/* "consent-given", "consent-not-given", "consent-unknown",
 * "consent-malformed": the reason in audit events and logs. */
const char *veil_consent_name(enum veil_consent c);

/* Compiles the probe of `req` (kind not NONE) over `schema`, whose top type
 * is a record. The schema must outlive the probe. NULL with errstr, and
 * *rcp (may be NULL) set to VEIL_ENOTFOUND when a field of the path is not
 * in the schema, or VEIL_ETYPE when a step is not a record, the field's
 * type cannot be tested by the condition (a boolean needs `boolean`; a
 * string a `string` or an `enum` with that symbol), or a union holds more
 * than null and one such type. Messages name the path and types, never a
 * value of a record. */
struct veil_consent_probe *
veil_consent_probe_new(const struct veil_schema *schema,
                       const struct veil_requires *req, int *rcp, char *errstr,
                       size_t errstr_size);
void veil_consent_probe_destroy(struct veil_consent_probe *probe);

/* Evaluates the probe on one Avro body (no framing). Reads only the bytes
 * up to the field; allocates nothing. */
enum veil_consent veil_consent_eval(const struct veil_consent_probe *probe,
                                    const uint8_t *body, size_t len);

#endif
