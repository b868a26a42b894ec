/* license.c - the license filter: for every purpose of the record's route,
 * the compiled plan of (schema, purpose) rewrites the value, the route's
 * key_class rewrites the key, and expired licences receive nothing. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive.h"
#include "filter.h"
#include "headers.h"
#include "subject_keys.h"
#include "util.h"
#include "veil.h"

struct license_ctx {
        int64_t plan_cache_size; /* config */
        size_t max_output;       /* message.max.bytes less headroom */
        const struct veil_config *config;
        struct veil_registry *reg;
        struct veil_chain *chain;
        struct veil_chain_stats *stats;
        struct veil_plan_cache *cache;
        const struct veil_detect_engine *detect; /* the chain's */
        struct veil_detect_scratch *scratch;
        /* one env (and key set) per policy purpose, same index */
        struct veil_plan_env *envs;
        struct veil_tx_keys *keys;
        size_t n_envs;
        /* per route, per route purpose */
        struct rp_state **rps;
        size_t n_routes;
        /* per route: the plans of its purposes merged for one pass over
         * each record (rebuilt when the plans change; dropped whenever the
         * cache gets a plan, which may evict any) */
        struct route_set *sets;
        uint64_t puts; /* plans put in the cache so far */
        /* crypto-shredding: per policy purpose (same index), does it use
         * encrypt { per_subject }, and its ciphers for the current record's
         * subject */
        const struct veil_filter_env *fenv; /* for subject_keys */
        bool *per_subject;
        bool *use_subject; /* keyed for the current record */
        struct veil_subject_cipher *subject;
};

struct route_set {
        struct veil_plan_set *set;
        const struct veil_plan *plans[VEIL_PLAN_MULTI_MAX];
        size_t n;
};

/* What one purpose of one route remembers between records. */
struct rp_state {
        /* The plan cache key's purpose part: "PURPOSE\x1fSOURCE". Plans
         * depend on the route too (its classify: overrides). */
        char *cache_key;
        /* The last plan used for values [0] and keys [1]: records of one
         * schema in a row skip the cache's hashing. Cleared whenever the
         * cache gets a plan (that may evict any). */
        int mru_id[2];
        struct veil_plan *mru[2];
        /* The transform of plain (unframed) keys, resolved once from the
         * route's key_class: NULL with the reason in key_err when the key
         * cannot be licensed for this purpose. */
        const struct veil_transform *key_tx;
        char key_err[192];
};

static const struct veil_filter_config license_config[] = {
        {VEIL_FCONF_INT, "plan_cache_size", "1024", 0,
         offsetof(struct license_ctx, plan_cache_size),
         "compiled plans kept (schema id x purpose x key/value)"},
        {0}};

static void license_destroy(void *ctx_)
{
        struct license_ctx *ctx = ctx_;
        size_t i;

        for (i = 0; i < ctx->n_envs; i++) {
                veil_plan_env_free(&ctx->envs[i]);
                veil_tx_keys_destroy(&ctx->keys[i]);
                if (ctx->subject)
                        veil_subject_cipher_clear(&ctx->subject[i]);
        }
        free(ctx->subject);
        free(ctx->per_subject);
        free(ctx->use_subject);
        free(ctx->envs);
        free(ctx->keys);
        for (i = 0; i < ctx->n_routes && ctx->rps; i++) {
                const struct veil_route *route = &ctx->config->policy.routes[i];
                size_t j;

                for (j = 0; j < route->n_purposes; j++)
                        free(ctx->rps[i][j].cache_key);
                free(ctx->rps[i]);
        }
        free(ctx->rps);
        for (i = 0; i < ctx->n_routes && ctx->sets; i++)
                veil_plan_set_destroy(ctx->sets[i].set);
        free(ctx->sets);
        veil_plan_cache_destroy(ctx->cache);
}

static int license_init(void *ctx_, const struct veil_filter_env *env,
                        char *errstr, size_t errstr_size)
{
        struct license_ctx *ctx          = ctx_;
        const struct veil_config *config = env->config;
        const struct veil_policy *policy = &config->policy;
        size_t i;

        ctx->config = config;
        ctx->fenv   = env;
        ctx->reg    = env->reg;
        ctx->chain  = env->chain;
        ctx->stats  = env->stats;
        if (ctx->plan_cache_size <= 0)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plan_cache_size must be > 0");
        ctx->cache = veil_plan_cache_new((size_t)ctx->plan_cache_size);
        /* An output the producer would refuse is refused here first, as
         * too-large, before any purpose of the record is produced. */
        if (veil_config_kafka(config, "message.max.bytes")) {
                unsigned long long max =
                        strtoull(veil_config_kafka(config, "message.max.bytes"),
                                 NULL, 10);

                if (max > 2 * VEIL_MESSAGE_HEADROOM)
                        ctx->max_output = (size_t)max - VEIL_MESSAGE_HEADROOM;
        }
        ctx->detect   = env->detect;
        ctx->scratch  = env->detect_scratch;
        ctx->n_routes = policy->n_routes;
        ctx->rps      = veil_calloc(ctx->n_routes + 1, sizeof(*ctx->rps));
        ctx->sets     = veil_calloc(ctx->n_routes + 1, sizeof(*ctx->sets));
        for (i = 0; i < ctx->n_routes; i++) {
                const struct veil_route *route = &policy->routes[i];
                size_t j;

                ctx->rps[i] =
                        veil_calloc(route->n_purposes + 1, sizeof(**ctx->rps));
                for (j = 0; j < route->n_purposes; j++) {
                        struct rp_state *st = &ctx->rps[i][j];

                        if (asprintf(&st->cache_key, "%s\x1f%s",
                                     route->purposes[j].purpose,
                                     route->source) < 0)
                                abort();
                        st->key_tx = veil_key_tx(
                                policy, route, route->purposes[j].ref,
                                st->key_err, sizeof(st->key_err));
                }
        }
        ctx->n_envs  = policy->n_purposes;
        ctx->envs    = veil_calloc(ctx->n_envs + 1, sizeof(*ctx->envs));
        ctx->keys    = veil_calloc(ctx->n_envs + 1, sizeof(*ctx->keys));
        ctx->subject = veil_calloc(ctx->n_envs + 1, sizeof(*ctx->subject));
        ctx->per_subject =
                veil_calloc(ctx->n_envs + 1, sizeof(*ctx->per_subject));
        ctx->use_subject =
                veil_calloc(ctx->n_envs + 1, sizeof(*ctx->use_subject));
        for (i = 0; i < ctx->n_envs; i++) {
                const struct veil_purpose *pu = &policy->purposes[i];
                size_t j;

                for (j = 0; j < pu->n_rules; j++)
                        if (pu->rules[j].tx.kind == VEIL_TX_ENCRYPT &&
                            pu->rules[j].tx.encrypt.per_subject)
                                ctx->per_subject[i] = true;
        }
        for (i = 0; i < ctx->n_envs; i++) {
                int rc = veil_tx_keys_init(
                        &ctx->keys[i], config->keys.key, config->keys.key_len,
                        config->keys.key_id, policy->purposes[i].name,
                        config->keys.shared_across_purposes, errstr,
                        errstr_size);
                if (rc)
                        return rc;
                ctx->envs[i].keys           = &ctx->keys[i];
                ctx->envs[i].detect         = ctx->detect;
                ctx->envs[i].detect_scratch = ctx->scratch;
        }
        return 0;
}

/* The state of one purpose of the record's route. */
static struct rp_state *rp_state_of(struct license_ctx *ctx,
                                    const struct veil_record *rec,
                                    const struct veil_route_purpose *rp)
{
        return &ctx->rps[rec->route - ctx->config->policy.routes]
                        [rp - rec->route->purposes];
}

/* Sets the record's reason and detail (vsnprintf: details are cut at the
 * buffer's size, which is fine for a diagnostic). Returns `v`. */
static enum veil_verdict verdict(struct veil_record *rec, enum veil_verdict v,
                                 const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static enum veil_verdict verdict(struct veil_record *rec, enum veil_verdict v,
                                 const char *code, const char *fmt, ...)
{
        va_list ap;

        rec->reason = code;
        va_start(ap, fmt);
        vsnprintf(rec->detail, sizeof(rec->detail), fmt, ap);
        va_end(ap);
        return v;
}

/* The plan of (schema, purpose, key-or-value), compiled and its derived
 * schema registered under `<topic>-value` / `<topic>-key` on first sight.
 * NULL with the verdict in *vp. `again`: a second look-up for the same
 * record, not counted in the hit/miss statistics. */
static struct veil_plan *plan_for(struct license_ctx *ctx,
                                  struct veil_record *rec,
                                  const struct veil_schema *schema,
                                  const struct veil_route_purpose *rp, bool key,
                                  bool again, enum veil_verdict *vp)
{
        const struct veil_policy *policy = &ctx->config->policy;
        struct rp_state *st              = rp_state_of(ctx, rec, rp);
        struct veil_plan_opts opts;
        struct veil_plan *plan;
        char err[256], *subject = NULL;
        int id, rc;
        size_t i, j;

        if (st->mru[key] && st->mru_id[key] == schema->id) {
                if (ctx->stats && !again)
                        ctx->stats->plan_hits++;
                return st->mru[key];
        }
        plan = veil_plan_cache_get(ctx->cache, schema->id, st->cache_key,
                                   policy->digest, key);
        if (ctx->stats && !again) {
                if (plan)
                        ctx->stats->plan_hits++;
                else
                        ctx->stats->plan_misses++;
        }
        if (plan && veil_plan_output_id(plan) >= 0)
                goto found;
        if (!plan) {
                memset(&opts, 0, sizeof(opts));
                opts.policy     = policy;
                opts.route      = rec->route;
                opts.purpose    = rp->ref;
                opts.root_label = key ? rec->route->key_class : NULL;
                opts.max_output = ctx->max_output;
                plan = veil_plan_compile(schema, &opts, err, sizeof(err));
                if (!plan) {
                        if (key) {
                                *vp = verdict(rec, VEIL_DIVERT,
                                              "unclassified-key",
                                              "key schema: %s", err);
                                return NULL;
                        }
                        *vp = verdict(rec, VEIL_DIVERT, "plan-failed",
                                      "purpose %s: %s", rp->purpose, err);
                        return NULL;
                }
                /* The put may evict any cached plan: forget them all. */
                for (i = 0; i < ctx->n_routes; i++) {
                        for (j = 0; j < policy->routes[i].n_purposes; j++) {
                                ctx->rps[i][j].mru[0] = NULL;
                                ctx->rps[i][j].mru[1] = NULL;
                        }
                        veil_plan_set_destroy(ctx->sets[i].set);
                        ctx->sets[i].set = NULL;
                        ctx->sets[i].n   = 0;
                }
                ctx->puts++;
                plan = veil_plan_cache_put(ctx->cache, schema->id,
                                           st->cache_key, policy->digest, key,
                                           plan);
        }
        if (asprintf(&subject, "%s-%s", rp->topic, key ? "key" : "value") < 0)
                abort();
        rc = veil_registry_register(ctx->reg, subject,
                                    veil_plan_derived_text(plan), &id, err,
                                    sizeof(err));
        free(subject);
        if (rc == VEIL_EINVAL || rc == VEIL_ENOTFOUND) {
                *vp = verdict(rec, VEIL_DIVERT, "plan-failed",
                              "registering the derived schema of %s: %s",
                              rp->topic, err);
                return NULL;
        }
        if (rc) {
                *vp = verdict(rec, rc == VEIL_EAUTH ? VEIL_FATAL : VEIL_RETRY,
                              rc == VEIL_EAUTH ? "registry-refused"
                                               : "registry-unavailable",
                              "registering the derived schema of %s: %s",
                              rp->topic, err);
                return NULL;
        }
        veil_plan_set_output_id(plan, id);
found:
        st->mru[key]    = plan;
        st->mru_id[key] = schema->id;
        return plan;
}

static enum veil_verdict exec_error(struct veil_record *rec, const char *what,
                                    const struct veil_plan_error *perr)
{
        const char *code = veil_wire_error_code(perr->code);

        return verdict(rec, VEIL_DIVERT, code, "%s: %s at byte %zu%s%s", what,
                       code, perr->offset, perr->path ? " in " : "",
                       perr->path ? perr->path : "");
}

static enum veil_verdict license_key(struct license_ctx *ctx,
                                     struct veil_record *rec,
                                     struct veil_record_out *out,
                                     struct veil_plan_env *penv)
{
        enum veil_verdict v = VEIL_CONTINUE;
        enum veil_wire_err werr;
        char err[256];

        if (!rec->key) {
                out->key_null = true;
                return VEIL_CONTINUE;
        }
        if (veil_key_is_framed(rec->key, rec->key_len)) {
                struct veil_wire_frame frame;
                const struct veil_schema *schema;
                struct veil_plan_error perr = {0};
                struct veil_plan *plan;
                int rc = 0;

                werr = veil_wire_parse(rec->key, rec->key_len, &frame);
                if (werr != VEIL_WIRE_OK)
                        return verdict(
                                rec, VEIL_DIVERT, veil_wire_error_code(werr),
                                "key framing: %s", veil_wire_error_code(werr));
                schema = veil_chain_schema(ctx->chain, frame.schema_id, &rc,
                                           err, sizeof(err));
                if (!schema) {
                        if (rc == VEIL_ENOTFOUND)
                                return verdict(rec, VEIL_DIVERT,
                                               "unknown-schema",
                                               "key schema id %d not in "
                                               "the registry",
                                               (int)frame.schema_id);
                        if (rc == VEIL_EINVAL)
                                return verdict(rec, VEIL_DIVERT, "plan-failed",
                                               "key: %s", err);
                        if (rc == VEIL_EAUTH)
                                return verdict(rec, VEIL_FATAL,
                                               "registry-refused",
                                               "key schema: %s", err);
                        return verdict(rec, VEIL_RETRY, "registry-unavailable",
                                       "key schema: %s", err);
                }
                plan = plan_for(ctx, rec, schema, out->rp, true, false, &v);
                if (!plan)
                        return v;
                werr = veil_plan_exec_framed(plan, penv, rec->key, rec->key_len,
                                             &out->key, &perr);
                if (werr != VEIL_WIRE_OK)
                        return exec_error(rec, "key", &perr);
                return VEIL_CONTINUE;
        }
        {
                const struct rp_state *st = rp_state_of(ctx, rec, out->rp);

                if (!st->key_tx)
                        return verdict(rec, VEIL_DIVERT, "unclassified-key",
                                       "purpose %s: %s", out->rp->purpose,
                                       st->key_err);
                werr = veil_key_transform(st->key_tx, penv, rec->key,
                                          rec->key_len, &out->key,
                                          &out->key_null);
                if (werr != VEIL_WIRE_OK)
                        return verdict(
                                rec, VEIL_DIVERT, veil_wire_error_code(werr),
                                "key transform for purpose %s: %s",
                                out->rp->purpose, veil_wire_error_code(werr));
        }
        return VEIL_CONTINUE;
}

/* The route's plan set for these plans (NULL with the reason in err when
 * they cannot be merged: the caller runs them one by one). */
static const struct veil_plan_set *set_for(struct license_ctx *ctx,
                                           const struct veil_record *rec,
                                           const struct veil_plan *const *plans,
                                           size_t n, char *err, size_t errsz)
{
        struct route_set *rs =
                &ctx->sets[rec->route - ctx->config->policy.routes];

        if (rs->set && rs->n == n &&
            !memcmp(rs->plans, plans, n * sizeof(*plans)))
                return rs->set;
        veil_plan_set_destroy(rs->set);
        rs->n   = 0;
        rs->set = veil_plan_set_new(plans, n, err, errsz);
        if (rs->set) {
                memcpy(rs->plans, plans, n * sizeof(*plans));
                rs->n = n;
        }
        return rs->set;
}

/* The values of every purpose from one pass over the record (DESIGN.md
 * §7, issue 15): each output framed with its plan's derived schema id. */
static enum veil_verdict license_values(struct license_ctx *ctx,
                                        struct veil_record *rec,
                                        const struct veil_plan *const *plans,
                                        struct veil_plan_env *const *envs,
                                        struct veil_record_out *const *outs,
                                        size_t n)
{
        struct veil_buf *bufs[VEIL_PLAN_MULTI_MAX];
        struct veil_plan_error errs[VEIL_PLAN_MULTI_MAX];
        const struct veil_plan_set *set = NULL;
        struct veil_wire_frame frame;
        enum veil_wire_err werr;
        char err[256];
        size_t i;

        werr = veil_wire_parse(rec->value, rec->value_len, &frame);
        if (n > 1 && werr == VEIL_WIRE_OK && !frame.tombstone)
                set = set_for(ctx, rec, plans, n, err, sizeof(err));
        if (!set) {
                /* one pass per purpose */
                for (i = 0; i < n; i++) {
                        werr = veil_plan_exec_framed(plans[i], envs[i],
                                                     rec->value, rec->value_len,
                                                     &outs[i]->value, &errs[i]);
                        if (werr != VEIL_WIRE_OK)
                                return exec_error(rec, "value", &errs[i]);
                }
                return VEIL_CONTINUE;
        }
        for (i = 0; i < n; i++) {
                struct veil_buf *b = &outs[i]->value;

                b->len = 0;
                if (!veil_buf_reserve(b, VEIL_WIRE_HEADER_SIZE)) {
                        errs[i].code   = VEIL_WIRE_TOO_LARGE;
                        errs[i].offset = 0;
                        errs[i].path   = NULL;
                        return exec_error(rec, "value", &errs[i]);
                }
                veil_wire_header_write(b->data, veil_plan_output_id(plans[i]));
                b->len  = VEIL_WIRE_HEADER_SIZE;
                bufs[i] = b;
        }
        werr = veil_plan_set_exec(set, envs, frame.body, frame.body_len, bufs,
                                  errs);
        if (werr == VEIL_WIRE_OK)
                return VEIL_CONTINUE;
        for (i = 0; i < n; i++)
                outs[i]->value.len = 0;
        for (i = 0; i < n && errs[i].code == VEIL_WIRE_OK; i++)
                ;
        return exec_error(rec, "value", &errs[i < n ? i : 0]);
}

/* Crypto-shredding: keys the ciphers of every licensed purpose of the
 * route that uses encrypt { per_subject } with the token keys of the
 * record's subject (its key); the others are left unkeyed, so a
 * per-subject field without a subject (null key, no store) fails closed. */
static enum veil_verdict subject_prepare(struct license_ctx *ctx,
                                         struct veil_record *rec)
{
        const struct veil_policy *policy = &ctx->config->policy;
        struct veil_subject_keys *sk     = ctx->fenv->subject_keys;
        unsigned char ref[VEIL_SUBJECT_REF_LEN];
        const unsigned char *tks = NULL, *tk;
        const char *kid          = NULL;
        char err[256];
        size_t j;
        int rc, slot;

        for (j = 0; j < rec->n_outs; j++) {
                const struct veil_purpose *purpose = rec->outs[j].rp->ref;
                size_t i = (size_t)(purpose - policy->purposes);

                ctx->use_subject[i] = false;
                if (!ctx->per_subject[i] || rec->frame.tombstone || !rec->key ||
                    !sk || !veil_purpose_licensed(purpose, rec->now))
                        continue;
                /* By name, not cached: a reload brings another store. */
                slot = veil_subject_keys_slot(sk, purpose->name);
                if (slot < 0)
                        return verdict(rec, VEIL_DIVERT, "transform-failed",
                                       "subject key: purpose %s has no "
                                       "subject keys in this store",
                                       purpose->name);
                if (!tks) {
                        rc = veil_subject_keys_get(sk, rec->route->source,
                                                   rec->key, rec->key_len, &tks,
                                                   ref, &kid, err, sizeof(err));
                        /* A spilled subject's key not fetched: not the
                         * record's fault. */
                        if (rc == VEIL_ENET)
                                return verdict(rec, VEIL_RETRY,
                                               "subject-keys-unavailable",
                                               "subject key: %s", err);
                        if (rc)
                                return verdict(rec, VEIL_DIVERT,
                                               "transform-failed",
                                               "subject key: %s", err);
                }
                tk = tks + (size_t)slot * VEIL_SUBJECT_TOKEN_KEYS_LEN;
                /* The same subject as the last record: keyed already. */
                ctx->use_subject[i] = true;
                if (veil_subject_cipher_is(&ctx->subject[i], tk, ref, kid))
                        continue;
                rc = veil_subject_cipher_key(&ctx->subject[i], tk, ref, kid,
                                             err, sizeof(err));
                if (rc)
                        return verdict(rec, VEIL_DIVERT, "transform-failed",
                                       "subject key: %s", err);
        }
        return VEIL_CONTINUE;
}

static enum veil_verdict license_process(void *ctx_, struct veil_record *rec)
{
        struct license_ctx *ctx          = ctx_;
        const struct veil_policy *policy = &ctx->config->policy;
        const struct veil_plan *plans[VEIL_PLAN_MULTI_MAX];
        struct veil_plan_env *envs[VEIL_PLAN_MULTI_MAX];
        struct veil_record_out *vouts[VEIL_PLAN_MULTI_MAX];
        const uint64_t puts = ctx->puts;
        size_t j, n = 0;
        enum veil_verdict sv;

        sv = subject_prepare(ctx, rec);
        if (sv != VEIL_CONTINUE)
                return sv;

        for (j = 0; j < rec->n_outs; j++) {
                struct veil_record_out *out        = &rec->outs[j];
                const struct veil_purpose *purpose = out->rp->ref;
                struct veil_plan_env *penv =
                        &ctx->envs[purpose - policy->purposes];
                struct veil_plan_error perr = {0};
                enum veil_verdict v         = VEIL_CONTINUE;
                enum veil_wire_err werr;
                struct veil_plan *plan;

                out->skip       = false;
                out->key_null   = false;
                out->value_null = false;
                out->reason     = NULL;
                out->plan       = NULL;
                out->key.len    = 0;
                out->value.len  = 0;
                if (!veil_purpose_licensed(purpose, rec->now)) {
                        out->skip = true;
                        continue;
                }
                /* A key never takes a per-subject token (its tombstones
                 * must match after the subject's key is gone). */
                penv->subject = NULL;
                v             = license_key(ctx, rec, out, penv);
                penv->subject =
                        ctx->use_subject[purpose - policy->purposes]
                                ? &ctx->subject[purpose - policy->purposes]
                                : NULL;
                if (v != VEIL_CONTINUE)
                        return v;
                if (rec->frame.tombstone) {
                        out->value_null = true;
                        out->reason     = "upstream-delete";
                        continue;
                }
                plan = plan_for(ctx, rec, rec->schema, out->rp, false, false,
                                &v);
                if (!plan)
                        return v;
                out->plan = plan;
                if (n < VEIL_PLAN_MULTI_MAX) {
                        /* the values: below, in one pass for all */
                        plans[n]   = plan;
                        envs[n]    = penv;
                        vouts[n++] = out;
                        continue;
                }
                werr = veil_plan_exec_framed(plan, penv, rec->value,
                                             rec->value_len, &out->value,
                                             &perr);
                if (werr != VEIL_WIRE_OK)
                        return exec_error(rec, "value", &perr);
        }
        if (ctx->puts != puts) {
                /* A plan was put in the cache meanwhile, which may have
                 * evicted one gathered before it: look each up again and
                 * run it at once (rare: the first records of a schema). */
                for (j = 0; j < n; j++) {
                        struct veil_plan_error perr = {0};
                        enum veil_verdict v         = VEIL_CONTINUE;
                        struct veil_plan *plan =
                                plan_for(ctx, rec, rec->schema, vouts[j]->rp,
                                         false, true, &v);

                        if (!plan)
                                return v;
                        vouts[j]->plan = plan;
                        if (veil_plan_exec_framed(plan, envs[j], rec->value,
                                                  rec->value_len,
                                                  &vouts[j]->value, &perr))
                                return exec_error(rec, "value", &perr);
                }
                return VEIL_CONTINUE;
        }
        return n ? license_values(ctx, rec, plans, envs, vouts, n)
                 : VEIL_CONTINUE;
}

const struct veil_filter_plugin veil_filter_license = {
        .abi_version = VEIL_FILTER_ABI_VERSION,
        .name        = "license",
        .description = "rewrite key and value for every purpose of the "
                       "route, as its licence says",
        .config      = license_config,
        .ctx_size    = sizeof(struct license_ctx),
        .init        = license_init,
        .process     = license_process,
        .destroy     = license_destroy,
};
