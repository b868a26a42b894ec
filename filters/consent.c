/* consent.c - the consent filter: after licensing, each purpose with a
 * `requires:` condition has it tested on the source record (common/
 * consent.c reads the field from the Avro binary); a purpose whose
 * condition fails gets its output marked (out->gate) and the worker
 * withholds it, or tombstones a key the purpose already holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "filter.h"
#include "log.h"
#include "util.h"
#include "veil.h"

/* The probe of one (route purpose, schema id); probe NULL when the schema
 * cannot be tested (the record then fails the gate: fail closed). */
struct probe_entry {
        int schema_id;
        struct veil_consent_probe *probe;
        struct probe_entry *next;
};

struct consent_ctx {
        const struct veil_policy *policy;
        /* per route, per route purpose: the probes met so far */
        struct probe_entry ***probes;
        size_t n_routes;
};

static const struct veil_filter_config consent_config[] = {{0}};

static void consent_destroy(void *ctx_)
{
        struct consent_ctx *ctx = ctx_;
        size_t i, j;

        for (i = 0; i < ctx->n_routes && ctx->probes; i++) {
                for (j = 0; j < ctx->policy->routes[i].n_purposes; j++) {
                        struct probe_entry *e = ctx->probes[i][j], *next;

                        for (; e; e = next) {
                                next = e->next;
                                veil_consent_probe_destroy(e->probe);
                                free(e);
                        }
                }
                free(ctx->probes[i]);
        }
        free(ctx->probes);
}

static int consent_init(void *ctx_, const struct veil_filter_env *env,
                        char *errstr, size_t errstr_size)
{
        struct consent_ctx *ctx = ctx_;
        size_t i;

        (void)errstr;
        (void)errstr_size;
        ctx->policy   = &env->config->policy;
        ctx->n_routes = ctx->policy->n_routes;
        ctx->probes   = veil_calloc(ctx->n_routes + 1, sizeof(*ctx->probes));
        for (i = 0; i < ctx->n_routes; i++)
                ctx->probes[i] =
                        veil_calloc(ctx->policy->routes[i].n_purposes + 1,
                                    sizeof(**ctx->probes));
        return 0;
}

/* The probe for this record's schema, compiled on first sight. Records of
 * one schema come in runs: the entry found is moved to the front. */
static struct probe_entry *probe_for(struct consent_ctx *ctx,
                                     const struct veil_record *rec, size_t j)
{
        size_t ri                 = (size_t)(rec->route - ctx->policy->routes);
        struct probe_entry **head = &ctx->probes[ri][j], **pp, *e;
        const struct veil_route_purpose *rp = &rec->route->purposes[j];
        char err[256];

        for (pp = head; (e = *pp); pp = &e->next)
                if (e->schema_id == rec->frame.schema_id) {
                        *pp     = e->next;
                        e->next = *head;
                        *head   = e;
                        return e;
                }
        e            = veil_calloc(1, sizeof(*e));
        e->schema_id = rec->frame.schema_id;
        e->probe = veil_consent_probe_new(rec->schema, &rp->ref->requires, NULL,
                                          err, sizeof(err));
        if (!e->probe)
                /* `veil check` reports this too; here the purpose gets
                 * nothing of the schema until the policy is fixed. */
                veil_log("warn", "consent",
                         "purpose %s: schema id %d of %s cannot be tested: "
                         "%s; its records are withheld",
                         rp->purpose, (int)rec->frame.schema_id,
                         rec->route->source, err);
        e->next = *head;
        *head   = e;
        return e;
}

static enum veil_verdict consent_process(void *ctx_, struct veil_record *rec)
{
        struct consent_ctx *ctx = ctx_;
        size_t j;

        for (j = 0; j < rec->n_outs; j++) {
                struct veil_record_out *out   = &rec->outs[j];
                const struct veil_purpose *pu = out->rp->ref;
                struct probe_entry *e;
                enum veil_consent c;

                out->gate = NULL;
                if (pu->requires.kind == VEIL_REQUIRES_NONE || out->skip ||
                    rec->frame.tombstone || !rec->schema)
                        continue;
                e = probe_for(ctx, rec, j);
                c = e->probe ? veil_consent_eval(e->probe, rec->frame.body,
                                                 rec->frame.body_len)
                             : VEIL_CONSENT_NULL;
                if (c != VEIL_CONSENT_PASS)
                        out->gate = veil_consent_name(c);
        }
        return VEIL_CONTINUE;
}

const struct veil_filter_plugin veil_filter_consent = {
        .abi_version = VEIL_FILTER_ABI_VERSION,
        .name        = "consent",
        .description = "the consent gate: a purpose whose requires: the "
                       "record fails does not receive it; a key it holds "
                       "is tombstoned (consent-withdrawn)",
        .config      = consent_config,
        .ctx_size    = sizeof(struct consent_ctx),
        .init        = consent_init,
        .process     = consent_process,
        .destroy     = consent_destroy,
};
