/* plan_fixture.h - tests and bench only: the shared "policy + schema +
 * plan options" setup of the plan tests, built from plain tables so that
 * each test states only how its policy differs. */
#ifndef VEIL_TESTS_PLAN_FIXTURE_H
#define VEIL_TESTS_PLAN_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "plan.h"
#include "policy.h"
#include "schema.h"

struct plan_fx_class {
        const char *name; /* NULL ends the table */
        enum veil_tier tier;
};

/* One rule with the loader's defaults (avro_ref_rule). Rules of one
 * purpose are consecutive; a new purpose name starts a new purpose. */
struct plan_fx_rule {
        const char *purpose; /* NULL ends the table */
        const char *target;
        enum veil_tx_kind kind;
        bool digits_only; /* mask: keep only digits */
};

struct plan_fx_policy {
        const struct plan_fx_class *classes;
        const struct plan_fx_rule *rules;
        const char *route_source; /* NULL: no route */
        const char *route_key;
        const char *override_path; /* NULL: no classify override */
        const char *override_label;
};

/* Fill `policy` (zeroed first; free with veil_policy_destroy). */
void plan_fx_policy_build(struct veil_policy *policy,
                          const struct plan_fx_policy *spec);

/* Read and parse a schema file; NULL with errstr on failure. */
struct veil_schema *plan_fx_schema_file(const char *path, int id, char *errstr,
                                        size_t errstr_size);

/* Point opts at the policy, the route of `source` and the purpose
 * `purpose` (other options are left as they are). */
void plan_fx_opts(struct veil_plan_opts *opts, const struct veil_policy *policy,
                  const char *source, const char *purpose);

#endif
