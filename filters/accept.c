/* accept.c - source validation: on a route with `accept: { records: [...] }`
 * a record whose writer schema is not one of the listed full names goes to
 * the DLQ as source-rejected, before any purpose sees it. */
#include <avro.h>
#include <stdio.h>
#include <string.h>

#include "filter.h"
#include "veil.h"

struct accept_ctx {
        const struct veil_policy *policy;
        /* The last verdict, by (route, schema id): records of one schema
         * come in runs, so the name comparison runs once per run. */
        const struct veil_route *last_route;
        int last_id;
        bool last_ok;
};

static const struct veil_filter_config accept_config[] = {{0}};

static int accept_init(void *ctx_, const struct veil_filter_env *env,
                       char *errstr, size_t errstr_size)
{
        struct accept_ctx *ctx = ctx_;

        (void)errstr;
        (void)errstr_size;
        ctx->policy  = &env->config->policy;
        ctx->last_id = -1;
        return 0;
}

/* Writes the schema's full name ("ns.Name", or its type's name when the
 * top type is not named) into buf. */
static void full_name(const struct veil_schema *schema, char *buf, size_t size)
{
        const char *name = NULL, *ns = NULL;

        if (schema && schema->avro) {
                name = avro_schema_name(schema->avro);
                ns   = avro_schema_namespace(schema->avro);
        }
        if (!name) {
                snprintf(buf, size, "%s",
                         schema && schema->avro
                                 ? avro_schema_type_name(schema->avro)
                                 : "?");
                return;
        }
        snprintf(buf, size, "%s%s%s", ns && *ns ? ns : "", ns && *ns ? "." : "",
                 name);
}

static bool accepted(const struct veil_route *route, const char *name)
{
        size_t i;

        for (i = 0; i < route->n_accept_records; i++)
                if (!strcmp(route->accept_records[i], name))
                        return true;
        return false;
}

static enum veil_verdict accept_process(void *ctx_, struct veil_record *rec)
{
        struct accept_ctx *ctx         = ctx_;
        const struct veil_route *route = rec->route;
        char name[384];

        if (!route || !route->n_accept_records || rec->frame.tombstone)
                return VEIL_CONTINUE;
        if (route == ctx->last_route && rec->frame.schema_id == ctx->last_id &&
            ctx->last_ok)
                return VEIL_CONTINUE;
        full_name(rec->schema, name, sizeof(name));
        ctx->last_route = route;
        ctx->last_id    = (int)rec->frame.schema_id;
        ctx->last_ok    = accepted(route, name);
        if (ctx->last_ok)
                return VEIL_CONTINUE;
        /* The schema's identity only: never a field value. */
        rec->reason = "source-rejected";
        snprintf(rec->detail, sizeof(rec->detail),
                 "schema id %d (%.180s) is not accepted on %.40s",
                 (int)rec->frame.schema_id, name, route->source);
        return VEIL_DIVERT;
}

static void accept_destroy(void *ctx)
{
        (void)ctx;
}

const struct veil_filter_plugin veil_filter_accept = {
        .abi_version = VEIL_FILTER_ABI_VERSION,
        .name        = "accept",
        .description = "source validation: a record whose writer schema the "
                       "route's accept: does not list goes to the DLQ "
                       "(source-rejected)",
        .config      = accept_config,
        .ctx_size    = sizeof(struct accept_ctx),
        .init        = accept_init,
        .process     = accept_process,
        .destroy     = accept_destroy,
};
