/* decode.c - the first filter: reads a record's Confluent framing and finds
 * its writer schema in the registry (cached by the chain). */
#include <stdarg.h>
#include <stdio.h>

#include "filter.h"
#include "veil.h"

struct decode_ctx {
        struct veil_chain *chain;
};

static const struct veil_filter_config decode_config[] = {{0}};

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

static int decode_init(void *ctx_, const struct veil_filter_env *env,
                       char *errstr, size_t errstr_size)
{
        struct decode_ctx *ctx = ctx_;

        (void)errstr;
        (void)errstr_size;
        ctx->chain = env->chain;
        return 0;
}

static enum veil_verdict decode_process(void *ctx_, struct veil_record *rec)
{
        struct decode_ctx *ctx = ctx_;
        enum veil_wire_err werr;
        char err[256];
        int rc = 0;

        werr = veil_wire_parse(rec->value, rec->value_len, &rec->frame);
        if (werr != VEIL_WIRE_OK) {
                return verdict(rec, VEIL_DIVERT, veil_wire_error_code(werr),
                               "value framing: %s (%zu bytes)",
                               veil_wire_error_code(werr), rec->value_len);
        }
        if (rec->frame.tombstone)
                return VEIL_CONTINUE;
        rec->schema = veil_chain_schema(ctx->chain, rec->frame.schema_id, &rc,
                                        err, sizeof(err));
        if (rec->schema)
                return VEIL_CONTINUE;
        switch (rc) {
        case VEIL_ENOTFOUND:
                return verdict(rec, VEIL_DIVERT,
                               veil_wire_error_code(VEIL_WIRE_UNKNOWN_SCHEMA),
                               "schema id %d is not in the registry",
                               (int)rec->frame.schema_id);
        case VEIL_EINVAL:
                return verdict(rec, VEIL_DIVERT, "plan-failed", "%s", err);
        case VEIL_EAUTH:
                /* TLS or credentials: waiting would spin forever. */
                return verdict(rec, VEIL_FATAL, "registry-refused", "%s", err);
        default:
                /* The registry is down or refuses us: not the record's
                 * fault, so never the DLQ. */
                return verdict(rec, VEIL_RETRY, "registry-unavailable", "%s",
                               err);
        }
}

static void decode_destroy(void *ctx)
{
        (void)ctx;
}

const struct veil_filter_plugin veil_filter_decode = {
        .abi_version = VEIL_FILTER_ABI_VERSION,
        .name        = "decode",
        .description = "read the Confluent framing and find the writer "
                       "schema in the registry",
        .config      = decode_config,
        .ctx_size    = sizeof(struct decode_ctx),
        .init        = decode_init,
        .process     = decode_process,
        .destroy     = decode_destroy,
};
