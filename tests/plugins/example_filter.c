/* example_filter.c - an out-of-tree filter for `plugins:`: diverts records
 * whose key starts with a prefix (default "TEST-") to the DLQ as
 * `example-quarantine`. Built by tests/integration/test_worker.py with
 *   cc -shared -fPIC -Icommon -Ifilters $(pkg-config --cflags …) -o x.so
 * Define EXAMPLE_ABI to build it for another ABI version (to test refusal). */
#include <stdbool.h>
#include <string.h>

#include "filter.h"

#ifndef EXAMPLE_ABI
#define EXAMPLE_ABI VEIL_FILTER_ABI_VERSION
#endif

struct example_ctx {
        char *key_prefix; /* config */
        size_t prefix_len;
};

static const struct veil_filter_config example_config[] = {
        {VEIL_FCONF_STR, "key_prefix", "TEST-", 0,
         offsetof(struct example_ctx, key_prefix),
         "records whose key starts with this go to the DLQ"},
        {0}};

static int example_init(void *ctx_, const struct veil_filter_env *env,
                        char *errstr, size_t errstr_size)
{
        struct example_ctx *ctx = ctx_;

        (void)env;
        (void)errstr;
        (void)errstr_size;
        ctx->prefix_len = strlen(ctx->key_prefix);
        return 0;
}

static enum veil_verdict example_process(void *ctx_,
                                         struct veil_record_view *rec)
{
        struct example_ctx *ctx = ctx_;

        if (rec->key && rec->key_len >= ctx->prefix_len &&
            !memcmp(rec->key, ctx->key_prefix, ctx->prefix_len)) {
                rec->reason = "example-quarantine";
                strcpy(rec->detail, "key prefix matched");
                return VEIL_DIVERT;
        }
        return VEIL_CONTINUE;
}

static void example_destroy(void *ctx)
{
        (void)ctx;
}

const struct veil_filter_plugin veil_plugin = {
        .abi_version = EXAMPLE_ABI,
        .name        = "example",
        .description = "divert records with a test key prefix to the DLQ",
        .config      = example_config,
        .ctx_size    = sizeof(struct example_ctx),
        .init        = example_init,
        .process_view = example_process,
        .destroy     = example_destroy,
};
