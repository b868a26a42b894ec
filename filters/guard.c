/* guard.c - the egress leak guard: after licensing, every string a guarded
 * purpose will receive (its output value, walked with the derived schema)
 * is scanned with the detection engine. A finding whose class the
 * purpose's transforms do not keep (an email typed into a field labelled
 * public, for a purpose that only gets emails hashed) is a leak: the span
 * is replaced (on_leak: redact), the record goes to the DLQ
 * (quarantine), or the leaks are only noted and the worker halts the
 * purpose (halt: connectors/halt.c). The leaks are left on the output for the
 * worker to count and audit: paths and detector names, never the text. */
#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "filter.h"
#include "log.h"
#include "util.h"
#include "veil.h"

#define MAX_DEPTH 64
#define PATH_MAX_LEN 512

/* The derived schema compiled for the walk, once per output id: each
 * node says how to read one value, with record field names at hand (no
 * avro-c lookups per field). A string under a field the purpose receives
 * as a token (veil.transform hash or encrypt) is Veil's own output, not
 * source text: it is skipped, never scanned (a token cannot carry the
 * source's data, and redacting one would break the purpose's joins). */
enum gkind {
        G_NULL,
        G_SKIP, /* n fixed bytes: boolean, float, double, fixed */
        G_LONG, /* int, long, enum */
        G_BYTES,
        G_STRING,
        G_RECORD,
        G_ARRAY,
        G_MAP,
        G_UNION,
};

struct gnode;

/* The way from a node to one of its children: a record field, a union
 * branch, or the items (values) of an array (map). A leaf child's kind and
 * size are copied here, so a record of leaves is read from one array
 * without visiting the child nodes (the walk runs on cold caches: between
 * two records the worker touches megabytes of Kafka buffers). */
struct gedge {
        const struct gnode *node;
        const char *name; /* record fields: the name (avro-c's) */
        uint32_t n;       /* node->n */
        uint8_t kind;     /* node->kind */
        bool token;       /* record fields: its strings are tokens */
};

struct gnode {
        enum gkind kind;
        size_t n;           /* G_SKIP bytes; record fields; branches */
        struct gedge *kids; /* fields, branches, or [0] items/values */
        avro_schema_t avro; /* records: the type (cycles meet here) */
        struct gnode *next; /* every node of one tree, for freeing */
};

/* The derived schema of one output id, parsed and compiled once. */
struct derived {
        int id;
        struct veil_schema *schema;
        struct gnode *root;
        struct gnode *nodes;
        struct derived *next;
};

/* Field paths handed out in leaks: kept for the chain's life. */
struct interned {
        struct interned *next;
        char s[];
};

struct guard_ctx {
        const struct veil_policy *policy;
        const struct veil_detect_engine *detect; /* the chain's; NULL:
                                                  * nothing to guard */
        struct veil_detect_scratch *scratch;
        int n_detectors;
        /* per policy purpose, per detector id: may the purpose see it raw */
        bool **allowed;
        size_t n_purposes;
        struct derived *derived;
        struct interned *paths;
        struct veil_buf tmp;       /* the rewritten value */
        struct veil_text_buf text; /* one redacted string */
};

static const struct veil_filter_config guard_config[] = {{0}};

static void gnodes_free(struct gnode *g)
{
        while (g) {
                struct gnode *next = g->next;

                free(g->kids);
                free(g);
                g = next;
        }
}

static void guard_destroy(void *ctx_)
{
        struct guard_ctx *ctx = ctx_;
        size_t i;

        while (ctx->derived) {
                struct derived *d = ctx->derived;

                ctx->derived = d->next;
                gnodes_free(d->nodes);
                veil_schema_destroy(d->schema);
                free(d);
        }
        while (ctx->paths) {
                struct interned *n = ctx->paths;

                ctx->paths = n->next;
                free(n);
        }
        for (i = 0; i < ctx->n_purposes && ctx->allowed; i++)
                free(ctx->allowed[i]);
        free(ctx->allowed);
        veil_buf_free(&ctx->tmp);
        veil_text_buf_free(&ctx->text);
}

/* A detector's finding is allowed when some class found by that detector
 * is kept as is by the purpose (its transform for the class, or the
 * class's tier, is keep). Anything else the purpose must not see raw. */
static void allowed_init(struct guard_ctx *ctx, size_t pi)
{
        const struct veil_purpose *pu = &ctx->policy->purposes[pi];
        size_t c;

        ctx->allowed[pi] =
                veil_calloc((size_t)ctx->n_detectors + 1, sizeof(bool));
        for (c = 0; c < ctx->policy->n_classes; c++) {
                const struct veil_class *cls = &ctx->policy->classes[c];
                const struct veil_transform *tx;
                int id;

                if (!cls->detector)
                        continue;
                id = veil_detect_id(ctx->detect, cls->detector);
                tx = veil_policy_transform(pu, ctx->policy, cls->name);
                if (id >= 0 && tx && tx->kind == VEIL_TX_KEEP)
                        ctx->allowed[pi][id] = true;
        }
}

static int guard_init(void *ctx_, const struct veil_filter_env *env,
                      char *errstr, size_t errstr_size)
{
        struct guard_ctx *ctx = ctx_;
        bool any              = false;
        size_t i;

        (void)errstr;
        (void)errstr_size;
        ctx->policy = &env->config->policy;
        for (i = 0; i < ctx->policy->n_purposes; i++)
                any |= ctx->policy->purposes[i].guard.enabled;
        veil_buf_init(&ctx->tmp, 0);
        if (!any)
                return 0; /* nothing to guard */
        ctx->detect      = env->detect;
        ctx->scratch     = env->detect_scratch;
        ctx->n_detectors = veil_detect_count(ctx->detect);
        ctx->n_purposes  = ctx->policy->n_purposes;
        ctx->allowed = veil_calloc(ctx->n_purposes + 1, sizeof(*ctx->allowed));
        for (i = 0; i < ctx->n_purposes; i++)
                allowed_init(ctx, i);
        return 0;
}

static avro_schema_t deref(avro_schema_t t)
{
        while (t && is_avro_link(t))
                t = avro_schema_link_target(t);
        return t;
}

static struct gnode *gnode_new(struct derived *d, enum gkind kind, size_t n)
{
        struct gnode *g = veil_calloc(1, sizeof(*g));

        g->kind  = kind;
        g->n     = n;
        g->next  = d->nodes;
        d->nodes = g;
        return g;
}

/* Does the record field (its JSON in the derived schema) reach the
 * purpose as a token? */
static bool token_field(json_t *field)
{
        const char *tx =
                json_string_value(json_object_get(field, "veil.transform"));

        return tx && (!strcmp(tx, "hash") || !strcmp(tx, "encrypt"));
}

static struct gnode *compile(struct derived *d, avro_schema_t t, int depth);

/* Points e at child (false: no child, the schema could not be compiled). */
static bool edge(struct gedge *e, const struct gnode *child)
{
        if (!child)
                return false;
        e->node = child;
        e->kind = (uint8_t)child->kind;
        e->n    = (uint32_t)child->n;
        return true;
}

static struct gnode *compile_record(struct derived *d, avro_schema_t t,
                                    int depth)
{
        size_t n       = avro_schema_record_size(t), i;
        const char *ns = avro_schema_namespace(t), *name = avro_schema_name(t);
        char full[512];
        json_t *fields;
        struct gnode *g;

        for (g = d->nodes; g; g = g->next)
                if (g->kind == G_RECORD && g->avro == t)
                        return g; /* a recursive type: the node exists */
        snprintf(full, sizeof(full), "%s%s%s", ns && *ns ? ns : "",
                 ns && *ns ? "." : "", name ? name : "");
        fields  = json_object_get(veil_schema_named(d->schema, full), "fields");
        g       = gnode_new(d, G_RECORD, n);
        g->avro = t;
        g->kids = veil_calloc(n + 1, sizeof(*g->kids));
        for (i = 0; i < n; i++) {
                g->kids[i].name  = avro_schema_record_field_name(t, (int)i);
                g->kids[i].token = token_field(json_array_get(fields, i));
                if (!edge(&g->kids[i],
                          compile(d,
                                  avro_schema_record_field_get_by_index(t,
                                                                        (int)i),
                                  depth + 1)))
                        return NULL;
        }
        return g;
}

static struct gnode *compile(struct derived *d, avro_schema_t t, int depth)
{
        struct gnode *g;
        size_t i, n;

        t = deref(t);
        if (!t || depth > MAX_DEPTH)
                return NULL;
        switch (avro_typeof(t)) {
        case AVRO_NULL:
                return gnode_new(d, G_NULL, 0);
        case AVRO_BOOLEAN:
                return gnode_new(d, G_SKIP, 1);
        case AVRO_FLOAT:
                return gnode_new(d, G_SKIP, 4);
        case AVRO_DOUBLE:
                return gnode_new(d, G_SKIP, 8);
        case AVRO_FIXED:
                return gnode_new(d, G_SKIP, (size_t)avro_schema_fixed_size(t));
        case AVRO_INT32:
        case AVRO_INT64:
        case AVRO_ENUM:
                return gnode_new(d, G_LONG, 0);
        case AVRO_BYTES:
                return gnode_new(d, G_BYTES, 0);
        case AVRO_STRING:
                return gnode_new(d, G_STRING, 0);
        case AVRO_RECORD:
                return compile_record(d, t, depth);
        case AVRO_ARRAY:
        case AVRO_MAP:
                g = gnode_new(d, avro_typeof(t) == AVRO_MAP ? G_MAP : G_ARRAY,
                              1);
                g->kids = veil_calloc(1, sizeof(*g->kids));
                return edge(&g->kids[0],
                            compile(d,
                                    avro_typeof(t) == AVRO_MAP
                                            ? avro_schema_map_values(t)
                                            : avro_schema_array_items(t),
                                    depth + 1))
                               ? g
                               : NULL;
        case AVRO_UNION:
                n       = avro_schema_union_size(t);
                g       = gnode_new(d, G_UNION, n);
                g->kids = veil_calloc(n + 1, sizeof(*g->kids));
                for (i = 0; i < n; i++)
                        if (!edge(&g->kids[i],
                                  compile(d,
                                          avro_schema_union_branch(t, (int)i),
                                          depth + 1)))
                                return NULL;
                return g;
        default:
                return NULL;
        }
}

static const struct derived *derived_of(struct guard_ctx *ctx,
                                        const struct veil_plan *plan)
{
        int id = veil_plan_output_id(plan);
        struct derived *d;
        const char *text;
        char err[256];

        for (d = ctx->derived; d; d = d->next)
                if (d->id == id)
                        return d;
        text      = veil_plan_derived_text(plan);
        d         = veil_calloc(1, sizeof(*d));
        d->id     = id;
        d->schema = veil_schema_parse(text, strlen(text), NULL, id, err,
                                      sizeof(err));
        if (!d->schema)
                veil_log("error", "guard",
                         "derived schema %d cannot be parsed: %s", id, err);
        else if (!(d->root = compile(d, d->schema->avro, 0)))
                veil_log("error", "guard",
                         "derived schema %d: a type the guard cannot walk "
                         "(or nesting deeper than %d)",
                         id, MAX_DEPTH);
        d->next      = ctx->derived;
        ctx->derived = d;
        return d;
}

static const char *intern(struct guard_ctx *ctx, const char *s)
{
        struct interned *n;
        size_t len = strlen(s);

        for (n = ctx->paths; n; n = n->next)
                if (!strcmp(n->s, s))
                        return n->s;
        n = veil_malloc(sizeof(*n) + len + 1);
        memcpy(n->s, s, len + 1);
        n->next    = ctx->paths;
        ctx->paths = n;
        return n->s;
}

/* ---- walking an output value ----------------------------------------------
 */

struct walk {
        struct guard_ctx *ctx;
        const bool *allowed;
        bool redact;
        struct veil_record_out *out;
        const uint8_t *base, *p, *end;
        size_t done;  /* base[0, done) is in ctx->tmp (rewriting) */
        bool rewrote; /* ctx->tmp holds the value being rewritten */
        const char *names[MAX_DEPTH];
        char kinds[MAX_DEPTH]; /* 'f' field, '[' item, '{' value, 'k' key */
        int depth;
        size_t budget; /* items left: bounds zero-width items */
        int token;     /* > 0: inside a field received as a token */
        bool failed;   /* out of memory or Hyperscan failed */
};

static void path_of(const struct walk *w, char *buf, size_t size)
{
        size_t n = 0;
        int i;

        buf[0] = '\0';
        for (i = 0; i < w->depth && n < size; i++) {
                int k;

                switch (w->kinds[i]) {
                case 'f':
                        k = snprintf(buf + n, size - n, "%s%s", n ? "." : "",
                                     w->names[i]);
                        break;
                case '[':
                        k = snprintf(buf + n, size - n, "[]");
                        break;
                case '{':
                        k = snprintf(buf + n, size - n, "{}");
                        break;
                default:
                        k = snprintf(buf + n, size - n, "{key}");
                        break;
                }
                n += k > 0 ? (size_t)k : 0;
        }
}

static void note_leak(struct walk *w, int detector)
{
        struct veil_record_out *out = w->out;
        const char *name = veil_detect_name(w->ctx->detect, detector);
        char path[PATH_MAX_LEN];
        size_t i;

        path_of(w, path, sizeof(path));
        for (i = 0; i < out->n_leaks; i++)
                if (!strcmp(out->leaks[i].path, path) &&
                    out->leaks[i].detector == name) {
                        out->leaks[i].count++;
                        return;
                }
        if (out->n_leaks == VEIL_LEAKS_MAX) {
                out->leaks_dropped++;
                return;
        }
        out->leaks[out->n_leaks].path     = intern(w->ctx, path);
        out->leaks[out->n_leaks].detector = name;
        out->leaks[out->n_leaks].count    = 1;
        out->n_leaks++;
}

static bool rd_long(struct walk *w, int64_t *v)
{
        return veil_varint_read(&w->p, w->end, 10, v) == VEIL_WIRE_OK;
}

static bool rd_skip(struct walk *w, int64_t n)
{
        if (n < 0 || (uint64_t)n > (uint64_t)(w->end - w->p))
                return false;
        w->p += n;
        return true;
}

/* The guard's redaction: each finding the purpose may not see is a leak
 * and is replaced by "[detector]". */
static bool leak_wanted(void *arg, int detector)
{
        const struct walk *w = arg;

        return !w->allowed[detector];
}

static void leak_seen(void *arg, int detector)
{
        note_leak(arg, detector);
}

/* One string of the output at [s, s + len), its length prefix at q. The
 * engine's memo answers for strings seen clean before (a country in every
 * record; the text redact_text has just verified). */
static bool scan_string(struct walk *w, const uint8_t *q, const uint8_t *s,
                        size_t len)
{
        struct guard_ctx *ctx           = w->ctx;
        const struct veil_redaction how = {
                .want = leak_wanted, .each = leak_seen, .arg = w};
        const struct veil_finding *f;
        uint8_t vi[VEIL_VARINT_MAX];
        size_t n, i;
        char err[128];

        if (!len)
                return true;
        if (!w->redact) { /* quarantine, halt: the leaks are only noted */
                if (veil_detect_scan(ctx->detect, ctx->scratch, (const char *)s,
                                     len, &f, &n, err, sizeof(err))) {
                        w->failed = true;
                        return false;
                }
                for (i = 0; i < n; i++)
                        if (!w->allowed[f[i].detector])
                                note_leak(w, f[i].detector);
                return true;
        }
        /* redact: rescanned until clean, as redact_text's output is, or
         * emptied after VEIL_REDACT_ROUNDS (every scan's spans count) */
        if (veil_redact(ctx->detect, ctx->scratch, &how, (const char *)s, len,
                        &ctx->text, &n, err, sizeof(err))) {
                w->failed = true;
                return false;
        }
        if (!n)
                return true;
        if (!w->rewrote) {
                ctx->tmp.len = 0;
                w->rewrote   = true;
        }
        if (!veil_buf_append(&ctx->tmp, w->base + w->done,
                             (size_t)(q - (w->base + w->done))) ||
            !veil_buf_append(&ctx->tmp, vi,
                             veil_varint_write(vi, (int64_t)ctx->text.len)) ||
            !veil_buf_append(&ctx->tmp, ctx->text.data, ctx->text.len)) {
                w->failed = true;
                return false;
        }
        w->done = (size_t)(s + len - w->base);
        return true;
}

static bool walk(struct walk *w, const struct gnode *g);
static bool walk_edge(struct walk *w, const struct gedge *e);

static bool push(struct walk *w, char kind, const char *name)
{
        if (w->depth >= MAX_DEPTH)
                return false;
        w->kinds[w->depth]   = kind;
        w->names[w->depth++] = name;
        return true;
}

/* The next string at w->p: scanned, or only skipped inside a token. */
static bool string_at(struct walk *w, bool scan)
{
        const uint8_t *q = w->p;
        int64_t len;

        if (!rd_long(w, &len) || !rd_skip(w, len))
                return false;
        return !scan || scan_string(w, q, w->p - len, (size_t)len);
}

static bool walk_blocks(struct walk *w, const struct gnode *g)
{
        bool map = g->kind == G_MAP;
        int64_t n, size;

        for (;;) {
                if (!rd_long(w, &n))
                        return false;
                if (n == 0)
                        return true;
                if (n < 0) {
                        if (n == INT64_MIN || !rd_long(w, &size))
                                return false;
                        n = -n;
                }
                while (n-- > 0) {
                        if (!w->budget--)
                                return false;
                        /* map keys are scanned even under a token field:
                         * the token transform is the values' */
                        if (map && (!push(w, 'k', NULL) || !string_at(w, true)))
                                return false;
                        if (map)
                                w->depth--;
                        if (!push(w, map ? '{' : '[', NULL) ||
                            !walk_edge(w, &g->kids[0]))
                                return false;
                        w->depth--;
                }
        }
}

/* A value without children: kind and size are all it takes to read. */
static bool walk_leaf(struct walk *w, unsigned kind, size_t n)
{
        int64_t v;

        switch (kind) {
        case G_NULL:
                return true;
        case G_SKIP:
                return rd_skip(w, (int64_t)n);
        case G_LONG:
                return rd_long(w, &v);
        case G_BYTES:
                return rd_long(w, &v) && rd_skip(w, v);
        case G_STRING:
                return string_at(w, !w->token);
        }
        return false;
}

static bool walk_edge(struct walk *w, const struct gedge *e)
{
        return e->kind >= G_RECORD ? walk(w, e->node)
                                   : walk_leaf(w, e->kind, e->n);
}

static bool walk(struct walk *w, const struct gnode *g)
{
        const struct gedge *e;
        int64_t v;

        switch (g->kind) {
        case G_RECORD:
                for (e = g->kids; e < g->kids + g->n; e++) {
                        if (!push(w, 'f', e->name))
                                return false;
                        w->token += e->token;
                        if (!walk_edge(w, e))
                                return false;
                        w->token -= e->token;
                        w->depth--;
                }
                return true;
        case G_ARRAY:
        case G_MAP:
                return walk_blocks(w, g);
        case G_UNION:
                if (!rd_long(w, &v) || v < 0 || (uint64_t)v >= g->n)
                        return false;
                return walk_edge(w, &g->kids[v]);
        default:
                return walk_leaf(w, g->kind, g->n);
        }
}

/* Scans one output; false when it cannot be read (the plan wrote it, so
 * that is a bug or memory: the record is diverted, fail closed). */
static bool guard_out(struct guard_ctx *ctx, struct veil_record_out *out,
                      size_t pi, bool redact)
{
        const struct derived *d = derived_of(ctx, out->plan);
        struct walk w;

        if (!d->root || out->value.len < VEIL_WIRE_HEADER_SIZE)
                return false;
        memset(&w, 0, sizeof(w));
        w.ctx     = ctx;
        w.allowed = ctx->allowed[pi];
        w.redact  = redact;
        w.out     = out;
        w.base    = out->value.data;
        w.p       = out->value.data + VEIL_WIRE_HEADER_SIZE;
        w.end     = out->value.data + out->value.len;
        w.budget  = out->value.len + 65536;
        if (!walk(&w, d->root) || w.p != w.end)
                return false;
        if (w.rewrote) {
                struct veil_buf swap;

                if (!veil_buf_append(&ctx->tmp, w.base + w.done,
                                     (size_t)(w.end - (w.base + w.done))))
                        return false;
                /* The rewritten value becomes the output; the old buffer
                 * is reused for the next rewrite. */
                swap            = out->value;
                out->value.data = ctx->tmp.data;
                out->value.len  = ctx->tmp.len;
                out->value.cap  = ctx->tmp.cap;
                ctx->tmp.data   = swap.data;
                ctx->tmp.len    = 0;
                ctx->tmp.cap    = swap.cap;
        }
        return true;
}

static enum veil_verdict guard_process(void *ctx_, struct veil_record *rec)
{
        struct guard_ctx *ctx = ctx_;
        size_t j;

        rec->guarded = true;
        for (j = 0; j < rec->n_outs; j++) {
                struct veil_record_out *out   = &rec->outs[j];
                const struct veil_purpose *pu = out->rp->ref;
                size_t pi = (size_t)(pu - ctx->policy->purposes);
                bool quarantine;

                out->n_leaks       = 0;
                out->leaks_dropped = 0;
                if (!pu->guard.enabled || out->skip || out->value_null ||
                    out->gate || !out->plan || !ctx->detect)
                        continue;
                quarantine = pu->guard.on_leak == VEIL_LEAK_QUARANTINE;
                /* halt: the output is not delivered, nothing to redact */
                if (!guard_out(ctx, out, pi,
                               pu->guard.on_leak == VEIL_LEAK_REDACT)) {
                        rec->reason = "guard-failed";
                        snprintf(rec->detail, sizeof(rec->detail),
                                 "purpose %s: the output could not be "
                                 "scanned",
                                 out->rp->purpose);
                        return VEIL_DIVERT;
                }
                if (quarantine && out->n_leaks) {
                        rec->reason = "leak-quarantined";
                        snprintf(rec->detail, sizeof(rec->detail),
                                 "purpose %.40s: %.40s found in %.120s%s",
                                 out->rp->purpose, out->leaks[0].detector,
                                 out->leaks[0].path,
                                 out->n_leaks > 1 ? " (and more)" : "");
                        return VEIL_DIVERT;
                }
        }
        return VEIL_CONTINUE;
}

const struct veil_filter_plugin veil_filter_guard = {
        .abi_version = VEIL_FILTER_ABI_VERSION,
        .name        = "guard",
        .description = "the egress leak guard: strings a guarded purpose "
                       "receives are scanned; a class its licence does not "
                       "keep is redacted, quarantined or halts the purpose",
        .config      = guard_config,
        .ctx_size    = sizeof(struct guard_ctx),
        .init        = guard_init,
        .process     = guard_process,
        .destroy     = guard_destroy,
};
