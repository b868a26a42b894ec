/* check.h - `veil check`: lint a policy against every source schema. */
#ifndef VEIL_COMMON_CHECK_H
#define VEIL_COMMON_CHECK_H

#include <avro.h>
#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "policy.h"

struct veil_registry;

enum veil_check_severity { VEIL_CHECK_WARNING = 0, VEIL_CHECK_ERROR };

/* Stable finding kinds (the JSON report's "kind"). */
#define VEIL_GAP_UNCLASSIFIED "unclassified"
#define VEIL_GAP_UNDEFINED_CLASS "undefined-class"
#define VEIL_GAP_TYPE_MISMATCH "transform-type"
#define VEIL_GAP_UNLICENSED "unlicensed"
#define VEIL_GAP_LICENSE_EXPIRED "license-expired"
#define VEIL_GAP_LICENSE_EXPIRING "license-expiring"
#define VEIL_GAP_LICENSE_NEVER "license-never"
#define VEIL_GAP_NO_RETENTION "no-retention"
#define VEIL_GAP_NO_KEY_CLASS "no-key-class"
#define VEIL_GAP_KEY_UNLICENSED "key-unlicensed"
#define VEIL_GAP_NO_SCHEMA "no-schema"
#define VEIL_GAP_BAD_SCHEMA "bad-schema"
#define VEIL_GAP_UNUSED_OVERRIDE "unused-override"
#define VEIL_GAP_REQUIRES_MISSING "requires-missing" /* field not in schema */
#define VEIL_GAP_REQUIRES_TYPE "requires-type" /* field cannot be tested */
#define VEIL_GAP_NOT_ACCEPTED "not-accepted"   /* accept: refuses the schema */
/* a purpose encrypts per subject on a route that declares no record key */
#define VEIL_GAP_SUBJECT_NO_KEY "subject-no-key"

/* Run every check. Findings are appended to `report` (a JSON array the
 * caller owns) as objects {severity, kind, route, purpose, path, label,
 * message}; values never appear, only names. `now` is epoch seconds.
 * Returns 0, or VEIL_ENET/VEIL_EAUTH… when the registry cannot be asked
 * (a connection error, not a gap). */
int veil_check_run(const struct veil_config *config, struct veil_registry *reg,
                   int64_t now, json_t *report, char *errstr,
                   size_t errstr_size);

#endif
