/* chain.c - runs the built-in filters in order over one record, and holds
 * what they share: the parsed-schema cache and the per-route output slots. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "filter.h"
#include "subject_keys.h"
#include "util.h"
#include "veil.h"

/* The first N_PRE run before the user's plugins: what they reject never
 * reaches a plugin. */
static const struct veil_filter_plugin *const builtins[] = {
        &veil_filter_decode,  &veil_filter_accept, &veil_filter_license,
        &veil_filter_consent, &veil_filter_guard,
};
#define N_BUILTINS VEIL_ARRAY_SIZE(builtins)
#define N_PRE 2

/* One filter in the chain: built in, or loaded from a shared object. */
struct stage {
        const struct veil_filter_plugin *p;
        void *ctx;
        bool inited;
        void *dl;         /* dlopen handle, NULL for built-ins */
        int plugin_index; /* in config->plugins, -1 for built-ins */
};

struct schema_entry {
        int id;
        struct veil_schema *schema;
        struct schema_entry *next;
};

struct veil_chain {
        struct veil_filter_env env;
        struct veil_detect_engine *detect; /* env.detect, owned */
        struct veil_chain_stats stats;
        struct stage *stages; /* decode, plugins…, license */
        size_t n_stages;
        struct schema_entry *schemas;
        struct veil_record_out **outs; /* per route index */
        struct veil_record_view view;  /* what plugins see, reused */
        char view_name[512];
};

/* Writes the table's defaults into a fresh context; char * defaults are
 * duplicated and freed by veil_chain_destroy through the same table. */
static int apply_defaults(const struct veil_filter_plugin *p, void *ctx,
                          char *errstr, size_t errstr_size)
{
        const struct veil_filter_config *c;

        for (c = p->config; c && c->type != VEIL_FCONF_END; c++) {
                char *at = (char *)ctx + c->offset;

                if (!c->def) {
                        if (c->flags & VEIL_FCONF_REQUIRED)
                                return veil_errf(errstr, errstr_size,
                                                 VEIL_ECONFIG,
                                                 "filter %s: %s is required",
                                                 p->name, c->key);
                        continue;
                }
                switch (c->type) {
                case VEIL_FCONF_BOOL: {
                        bool b = !strcmp(c->def, "true");
                        memcpy(at, &b, sizeof(b));
                        break;
                }
                case VEIL_FCONF_INT: {
                        int64_t v = strtoll(c->def, NULL, 10);
                        memcpy(at, &v, sizeof(v));
                        break;
                }
                case VEIL_FCONF_STR: {
                        char *s = veil_strdup(c->def);
                        memcpy(at, &s, sizeof(s));
                        break;
                }
                default:
                        break;
                }
        }
        return 0;
}

/* One setting onto the context, typed by the filter's table: unknown keys
 * and bad values are refused with the file position. */
static int apply_setting(const struct veil_config *config,
                         const struct veil_filter_plugin *p, void *ctx,
                         const char *where, const struct veil_setting *set,
                         char *errstr, size_t errstr_size)
{
        const struct veil_filter_config *c, *best = NULL;
        unsigned dist = 3, d;
        char *end;

        for (c = p->config; c && c->type != VEIL_FCONF_END; c++) {
                if (!strcmp(c->key, set->key))
                        break;
                d = veil_edit_distance(set->key, c->key, 2);
                if (d < dist) {
                        dist = d;
                        best = c;
                }
        }
        if (!c || c->type == VEIL_FCONF_END)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "%s:%d:%d: %s.%s: unknown setting of filter "
                                 "%s%s%s%s",
                                 config->path, set->line, set->col, where,
                                 set->key, p->name,
                                 best ? " (did you mean '" : "",
                                 best ? best->key : "", best ? "'?)" : "");
        switch (c->type) {
        case VEIL_FCONF_BOOL: {
                bool b;

                if (!strcmp(set->value, "true"))
                        b = true;
                else if (!strcmp(set->value, "false"))
                        b = false;
                else
                        return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                         "%s:%d:%d: %s.%s: expected true or "
                                         "false",
                                         config->path, set->line, set->col,
                                         where, set->key);
                memcpy((char *)ctx + c->offset, &b, sizeof(b));
                break;
        }
        case VEIL_FCONF_INT: {
                long long v;

                errno = 0;
                v     = strtoll(set->value, &end, 10);
                if (errno || end == set->value || *end)
                        return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                         "%s:%d:%d: %s.%s: expected an "
                                         "integer",
                                         config->path, set->line, set->col,
                                         where, set->key);
                memcpy((char *)ctx + c->offset, &(int64_t){v}, sizeof(int64_t));
                break;
        }
        case VEIL_FCONF_STR: {
                char *old, *str = veil_strdup(set->value);

                memcpy(&old, (char *)ctx + c->offset, sizeof(old));
                free(old);
                memcpy((char *)ctx + c->offset, &str, sizeof(str));
                break;
        }
        default:
                break;
        }
        return 0;
}

static int apply_settings(const struct veil_config *config,
                          const struct veil_filter_plugin *p, void *ctx,
                          const char *where,
                          const struct veil_filter_settings *fs, char *errstr,
                          size_t errstr_size)
{
        size_t i;
        int rc;

        for (i = 0; fs && i < fs->n; i++)
                if ((rc = apply_setting(config, p, ctx, where, &fs->v[i],
                                        errstr, errstr_size)))
                        return rc;
        return 0;
}

static void free_config_strings(const struct veil_filter_plugin *p, void *ctx)
{
        const struct veil_filter_config *c;

        for (c = p->config; c && c->type != VEIL_FCONF_END; c++)
                if (c->type == VEIL_FCONF_STR) {
                        char *s;
                        memcpy(&s, (char *)ctx + c->offset, sizeof(s));
                        free(s);
                }
}

/* Loads a user's filter: the shared object exports
 * `const struct veil_filter_plugin veil_plugin`, built against this
 * filter.h (same VEIL_FILTER_ABI_VERSION). */
static int plugin_load(const char *path, struct stage *st, char *errstr,
                       size_t errstr_size)
{
        const struct veil_filter_plugin *p;
        const char *e;

        st->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!st->dl) {
                e = dlerror();
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plugins: cannot load %s: %s", path,
                                 e ? e : "unknown error");
        }
        p = dlsym(st->dl, VEIL_FILTER_SYMBOL);
        if (!p)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plugins: %s does not export '%s'", path,
                                 VEIL_FILTER_SYMBOL);
        if (p->abi_version != VEIL_FILTER_ABI_VERSION)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plugins: %s was built for filter ABI "
                                 "version %d, this veil has version %d: "
                                 "rebuild it against this filter.h",
                                 path, p->abi_version, VEIL_FILTER_ABI_VERSION);
        if (!p->name || !p->init || !p->process_view || !p->destroy)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plugins: %s: the registration needs a "
                                 "name, init, process_view and destroy",
                                 path);
        if (p->process)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "plugins: %s: process is for built-in "
                                 "filters; a plugin sets process_view",
                                 path);
        st->p = p;
        return 0;
}

void veil_chain_set_subject_keys(struct veil_chain *chain,
                                 struct veil_subject_keys *sk)
{
        chain->env.subject_keys = sk;
}

struct veil_chain *veil_chain_new(const struct veil_config *config,
                                  struct veil_registry *reg, char *errstr,
                                  size_t errstr_size)
{
        struct veil_chain *chain = veil_calloc(1, sizeof(*chain));
        size_t i, j;
        char err[512];

        chain->env.config = config;
        chain->env.reg    = reg;
        chain->env.chain  = chain;
        chain->env.stats  = &chain->stats;
        chain->outs =
                veil_calloc(config->policy.n_routes + 1, sizeof(*chain->outs));
        for (i = 0; i < config->policy.n_routes; i++) {
                const struct veil_route *route = &config->policy.routes[i];

                chain->outs[i] = veil_calloc(route->n_purposes + 1,
                                             sizeof(**chain->outs));
                for (j = 0; j < route->n_purposes; j++) {
                        chain->outs[i][j].rp = &route->purposes[j];
                        veil_buf_init(&chain->outs[i][j].key, 0);
                        veil_buf_init(&chain->outs[i][j].value, 0);
                }
        }
        chain->detect = veil_detect_engine_new(config->policy.detectors,
                                               config->policy.n_detectors,
                                               errstr, errstr_size);
        if (!chain->detect)
                goto err;
        chain->env.detect = chain->detect;
        chain->env.detect_scratch =
                veil_detect_scratch_new(chain->detect, errstr, errstr_size);
        if (!chain->env.detect_scratch)
                goto err;
        /* User filters see decoded records and run before licensing, so
         * whatever they drop or divert never reaches a purpose. */
        chain->stages = veil_calloc(N_BUILTINS + config->n_plugins,
                                    sizeof(*chain->stages));
        for (i = 0; i < N_PRE; i++) {
                chain->stages[chain->n_stages].plugin_index = -1;
                chain->stages[chain->n_stages++].p          = builtins[i];
        }
        for (i = 0; i < config->n_plugins; i++) {
                /* Counted before loading: a half-loaded one is closed by
                 * veil_chain_destroy. */
                struct stage *st = &chain->stages[chain->n_stages++];

                st->plugin_index = (int)i;
                if (plugin_load(config->plugins[i], st, errstr, errstr_size))
                        goto err;
        }
        for (i = N_PRE; i < N_BUILTINS; i++) {
                chain->stages[chain->n_stages].plugin_index = -1;
                chain->stages[chain->n_stages++].p          = builtins[i];
        }
        /* Settings for a filter that is not in the chain are a typo. */
        for (j = 0; j < config->n_filters; j++) {
                const struct veil_filter_settings *fs = &config->filters[j];
                const char *best                      = NULL;
                unsigned dist                         = 3, d;

                for (i = 0; i < chain->n_stages; i++) {
                        if (!strcmp(chain->stages[i].p->name, fs->name))
                                break;
                        d = veil_edit_distance(fs->name,
                                               chain->stages[i].p->name, 2);
                        if (d < dist) {
                                dist = d;
                                best = chain->stages[i].p->name;
                        }
                }
                if (i == chain->n_stages) {
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "%s:%d:%d: filters.%s: no such filter in "
                                  "the chain%s%s%s",
                                  config->path, fs->line, fs->col, fs->name,
                                  best ? " (did you mean '" : "",
                                  best ? best : "", best ? "'?)" : "");
                        goto err;
                }
        }
        for (i = 0; i < chain->n_stages; i++) {
                struct stage *st                   = &chain->stages[i];
                const struct veil_filter_plugin *p = st->p;

                st->ctx = veil_calloc(1, p->ctx_size ? p->ctx_size : 1);
                if (apply_defaults(p, st->ctx, errstr, errstr_size))
                        goto err;
                /* `filters: { NAME: … }`, then a plugin's own `config:` */
                for (j = 0; j < config->n_filters; j++)
                        if (!strcmp(config->filters[j].name, p->name)) {
                                char where[160];

                                snprintf(where, sizeof(where), "filters.%s",
                                         p->name);
                                if (apply_settings(config, p, st->ctx, where,
                                                   &config->filters[j], errstr,
                                                   errstr_size))
                                        goto err;
                        }
                if (st->plugin_index >= 0 && config->plugin_settings) {
                        char where[64];

                        snprintf(where, sizeof(where), "plugins[%d].config",
                                 st->plugin_index);
                        if (apply_settings(
                                    config, p, st->ctx, where,
                                    &config->plugin_settings[st->plugin_index],
                                    errstr, errstr_size))
                                goto err;
                }
                if (p->init(st->ctx, &chain->env, err, sizeof(err))) {
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "filter %s: %s", p->name, err);
                        goto err;
                }
                st->inited = true;
        }
        return chain;
err:
        veil_chain_destroy(chain);
        return NULL;
}

void veil_chain_destroy(struct veil_chain *chain)
{
        size_t i, j;

        if (!chain)
                return;
        for (i = chain->n_stages; i-- > 0;) {
                struct stage *st = &chain->stages[i];

                if (st->ctx) {
                        if (st->inited)
                                st->p->destroy(st->ctx);
                        free_config_strings(st->p, st->ctx);
                        free(st->ctx);
                }
                if (st->dl)
                        dlclose(st->dl);
        }
        free(chain->stages);
        while (chain->schemas) {
                struct schema_entry *e = chain->schemas;

                chain->schemas = e->next;
                veil_schema_destroy(e->schema);
                free(e);
        }
        for (i = 0; i < chain->env.config->policy.n_routes; i++) {
                const struct veil_route *route =
                        &chain->env.config->policy.routes[i];

                for (j = 0; j < route->n_purposes; j++) {
                        veil_buf_free(&chain->outs[i][j].key);
                        veil_buf_free(&chain->outs[i][j].value);
                }
                free(chain->outs[i]);
        }
        free(chain->outs);
        veil_detect_scratch_destroy(chain->env.detect_scratch);
        veil_detect_engine_destroy(chain->detect);
        free(chain);
}

/* A plugin's turn: the record as a view, its verdict's reason back. */
static enum veil_verdict view_process(struct veil_chain *chain,
                                      const struct stage *st,
                                      struct veil_record *rec)
{
        struct veil_record_view *view = &chain->view;
        enum veil_verdict v;
        const char *name = NULL, *ns = NULL;

        memset(view, 0, sizeof(*view));
        view->topic     = rec->topic;
        view->partition = rec->partition;
        view->offset    = rec->offset;
        view->key       = rec->key;
        view->key_len   = rec->key_len;
        view->value     = rec->value;
        view->value_len = rec->value_len;
        view->now       = rec->now;
        view->schema_id = rec->frame.tombstone ? -1 : rec->frame.schema_id;
        view->avro      = rec->frame.body;
        view->avro_len  = rec->frame.body_len;
        if (rec->schema && rec->schema->avro) {
                name = avro_schema_name(rec->schema->avro);
                ns   = avro_schema_namespace(rec->schema->avro);
        }
        if (name) {
                snprintf(chain->view_name, sizeof(chain->view_name), "%s%s%s",
                         ns && *ns ? ns : "", ns && *ns ? "." : "", name);
                view->schema_name = chain->view_name;
        }
        v = st->p->process_view(st->ctx, view);
        if (v == VEIL_DIVERT || v == VEIL_RETRY || v == VEIL_FATAL) {
                rec->reason = view->reason ? view->reason : "plugin";
                snprintf(rec->detail, sizeof(rec->detail), "%.40s: %.200s",
                         st->p->name, view->detail);
        }
        return v;
}

enum veil_verdict veil_chain_process(struct veil_chain *chain,
                                     struct veil_record *rec)
{
        size_t i;

        rec->reason    = NULL;
        rec->detail[0] = '\0';
        rec->schema    = NULL;
        rec->outs      = veil_chain_outs(chain, rec->route, &rec->n_outs);
        for (i = 0; i < chain->n_stages; i++) {
                const struct stage *st = &chain->stages[i];
                enum veil_verdict v    = st->p->process
                                                 ? st->p->process(st->ctx, rec)
                                                 : view_process(chain, st, rec);

                if (v != VEIL_CONTINUE)
                        return v;
        }
        return VEIL_CONTINUE;
}

const struct veil_schema *veil_chain_schema(struct veil_chain *chain, int id,
                                            int *rcp, char *errstr,
                                            size_t errstr_size)
{
        struct schema_entry *e;
        const char *text = NULL, *meta_text = NULL;
        json_t *meta = NULL;
        struct veil_schema *schema;
        char err[512];
        int rc;

        for (e = chain->schemas; e; e = e->next)
                if (e->id == id)
                        return e->schema;
        rc = veil_registry_schema_by_id_meta(chain->env.reg, id, &text,
                                             &meta_text, err, sizeof(err));
        if (rc) {
                *rcp = rc;
                veil_errf(errstr, errstr_size, rc, "schema id %d: %s", id, err);
                return NULL;
        }
        if (meta_text)
                meta = json_loads(meta_text, 0, NULL);
        schema = veil_schema_parse(text, strlen(text), meta, id, err,
                                   sizeof(err));
        json_decref(meta);
        if (!schema) {
                *rcp = VEIL_EINVAL;
                veil_errf(errstr, errstr_size, VEIL_EINVAL, "schema id %d: %s",
                          id, err);
                return NULL;
        }
        e              = veil_calloc(1, sizeof(*e));
        e->id          = id;
        e->schema      = schema;
        e->next        = chain->schemas;
        chain->schemas = e;
        return schema;
}

struct veil_record_out *veil_chain_outs(struct veil_chain *chain,
                                        const struct veil_route *route,
                                        size_t *n)
{
        size_t i = (size_t)(route - chain->env.config->policy.routes);

        *n = route->n_purposes;
        return chain->outs[i];
}

const struct veil_chain_stats *veil_chain_stats(struct veil_chain *chain)
{
        struct veil_subject_keys_stats st;

        if (chain->env.subject_keys) {
                veil_subject_keys_stats(chain->env.subject_keys, &st);
                chain->stats.subject_keys_created   = st.created;
                chain->stats.subject_keys_destroyed = st.destroyed;
                chain->stats.subject_keys_rewrapped = st.rewrapped;
                chain->stats.subject_key_hits       = st.hits;
                chain->stats.subject_key_misses     = st.misses;
                chain->stats.subject_keys_fetched   = st.fetched;
        }
        return &chain->stats;
}

void veil_chain_print_help(void)
{
        size_t i;

        for (i = 0; i < N_BUILTINS; i++) {
                const struct veil_filter_config *c;

                printf("  %-10s %s\n", builtins[i]->name,
                       builtins[i]->description);
                for (c = builtins[i]->config; c && c->type != VEIL_FCONF_END;
                     c++)
                        printf("      %s (default %s): %s\n", c->key,
                               c->def ? c->def : "none", c->help);
        }
}
