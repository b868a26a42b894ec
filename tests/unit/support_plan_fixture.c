/* support_plan_fixture.c - tests and bench only: builds the policies,
 * schemas and plan options the plan tests share (plan_fixture.h). */
#include "plan_fixture.h"

#include <stdlib.h>
#include <string.h>

#include "avro_ref.h"
#include "util.h"

void plan_fx_policy_build(struct veil_policy *policy,
                          const struct plan_fx_policy *spec)
{
        const struct plan_fx_class *c;
        const struct plan_fx_rule *r;
        struct veil_purpose *p = NULL;
        struct veil_transform *tx;
        struct veil_route *route;

        memset(policy, 0, sizeof(*policy));
        for (c = spec->classes; c && c->name; c++)
                avro_ref_class(policy, c->name, c->tier);
        for (r = spec->rules; r && r->purpose; r++) {
                /* Adding a purpose moves the earlier ones, but their rules
                 * are all added by then: the table groups them. */
                if (!p || strcmp(p->name, r->purpose) != 0)
                        p = avro_ref_purpose(policy, r->purpose);
                tx = avro_ref_rule(p, r->target, r->kind);
                if (r->digits_only)
                        tx->mask.digits_only = true;
        }
        if (!spec->route_source)
                return;
        route = avro_ref_route(policy, spec->route_source, spec->route_key);
        if (spec->override_path)
                avro_ref_override(route, spec->override_path,
                                  spec->override_label);
}

struct veil_schema *plan_fx_schema_file(const char *path, int id, char *errstr,
                                        size_t errstr_size)
{
        struct veil_schema *s;
        size_t len;
        char *text = veil_file_read(path, &len, errstr, errstr_size);

        if (!text)
                return NULL;
        s = veil_schema_parse(text, len, NULL, id, errstr, errstr_size);
        free(text);
        return s;
}

void plan_fx_opts(struct veil_plan_opts *opts, const struct veil_policy *policy,
                  const char *source, const char *purpose)
{
        opts->policy  = policy;
        opts->route   = veil_policy_route(policy, source);
        opts->purpose = veil_policy_purpose(policy, purpose);
}
