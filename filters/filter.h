/* filter.h - the filter plugin API (DESIGN.md §3): a registration struct per
 * filter, a declarative config table, a record handle and verdicts; plus the
 * chain that runs the built-in filters in order. Filters never touch Kafka. */
#ifndef VEIL_FILTERS_FILTER_H
#define VEIL_FILTERS_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "plan.h"
#include "registry.h"
#include "schema.h"
#include "wire.h"

struct veil_subject_keys;
struct veil_detect_engine;
struct veil_detect_scratch;

/* Bump when struct veil_filter_plugin, struct veil_filter_env or struct
 * veil_record_view change shape: an out-of-tree plugin built against
 * another version is refused. Version 2: plugins see a record view, not
 * Veil's internal record. */
#define VEIL_FILTER_ABI_VERSION 2

/* What a shared-object filter named in `plugins:` exports:
 *   const struct veil_filter_plugin veil_plugin = { .abi_version =
 *           VEIL_FILTER_ABI_VERSION, .name = "mine",
 *           .process_view = mine_process, … };
 * It runs after decode and before license, and sees each record through
 * struct veil_record_view only. */
#define VEIL_FILTER_SYMBOL "veil_plugin"

/* What a filter decides for a record. */
enum veil_verdict {
        VEIL_CONTINUE = 0, /* hand the record to the next filter */
        VEIL_DROP,         /* nothing is produced for it (offset still
                            * commits) */
        VEIL_DIVERT,       /* to the DLQ: record->reason (a stable code, the
                            * `veil.error` header) and record->detail */
        VEIL_RETRY,        /* a transient outside failure (registry down):
                            * not the record's fault; the worker aborts the
                            * batch, backs off and processes it again */
        VEIL_FATAL,        /* an outside failure no retry can mend (the
                            * registry refuses Veil: TLS or credentials):
                            * not the record's fault, never the DLQ; the
                            * worker aborts the batch and stops with
                            * record->detail as the reason */
};

/* One leak the guard filter found in an output: where and which detector
 * (names owned by the guard, valid for the chain's life), how many spans. */
struct veil_leak {
        const char *path;
        const char *detector;
        uint32_t count;
};
#define VEIL_LEAKS_MAX 8

/* What one purpose of the route receives for one record. Filled by the
 * license filter; the sink produces it. */
struct veil_record_out {
        const struct veil_route_purpose *rp; /* purpose and topic */
        bool skip;             /* licence expired: nothing is produced */
        struct veil_buf key;   /* transformed key (owned, reused) */
        bool key_null;         /* produce a null key */
        struct veil_buf value; /* framed output (owned, reused) */
        bool value_null;       /* a tombstone */
        const char *reason;    /* veil.reason of a tombstone, or NULL */
        /* Plans used (owned by the license filter's cache; valid until
         * the next record is processed): for audit events. */
        const struct veil_plan *plan;
        /* Set by the consent filter when the purpose's `requires:` fails
         * (a veil_consent_name: "consent-not-given"…): the worker
         * withholds the record, or tombstones a key the purpose holds. */
        const char *gate;
        /* Set by the guard filter (valid when the record's guarded is
         * true): the leaks it found in the value, distinct (path,
         * detector) pairs, at most VEIL_LEAKS_MAX (leaks_dropped counts
         * the pairs beyond); redacted or quarantined per on_leak. */
        struct veil_leak leaks[VEIL_LEAKS_MAX];
        size_t n_leaks;
        uint32_t leaks_dropped;
};

/* One source record as it moves down the chain. The connectors own the
 * message bytes; the chain owns the outputs. */
struct veil_record {
        /* source position and bytes (borrowed from the consumer) */
        const char *topic;
        int32_t partition;
        int64_t offset;
        const void *key;
        size_t key_len;
        const void *value; /* NULL: an upstream tombstone */
        size_t value_len;
        const struct veil_route *route;
        int64_t now; /* epoch seconds of the batch (licence expiry) */

        /* set by decode */
        struct veil_wire_frame frame;
        const struct veil_schema *schema; /* owned by the chain's cache */

        /* set by license: one per route purpose */
        struct veil_record_out *outs;
        size_t n_outs;

        /* set with VEIL_DIVERT / VEIL_RETRY: a static code and a message
         * with positions and codes only, never a value */
        const char *reason;
        char detail[256];

        /* set by the guard filter once it has looked at the outputs (their
         * leaks are then current) */
        bool guarded;
};

/* What an out-of-tree filter sees of a record: its position, its bytes and
 * the identity of its decoded schema — never Veil's internal structs, so
 * that they can change without breaking plugins. Everything is borrowed
 * for the call. */
struct veil_record_view {
        const char *topic;
        int32_t partition;
        int64_t offset;
        const void *key;
        size_t key_len;
        const void *value; /* the framed value; NULL: an upstream tombstone */
        size_t value_len;
        int schema_id;           /* registry id, -1 for a tombstone */
        const char *schema_name; /* full name of the record, or NULL */
        const void *avro;        /* the Avro body after the frame */
        size_t avro_len;
        int64_t now; /* epoch seconds of the batch */
        /* Set with VEIL_DIVERT / VEIL_RETRY: a code (a string the plugin
         * keeps alive; the `veil.error` header) and a message with
         * positions and codes only, never a value. */
        const char *reason;
        char detail[256];
};

/* Counters the built-in filters keep for the worker's metrics. A chain
 * runs on one thread: plain integers, read between records. */
struct veil_chain_stats {
        uint64_t plan_hits;   /* plans found in the plan cache */
        uint64_t plan_misses; /* plans that had to be compiled */
        /* Appended: the subject-key store's counters (crypto-shredding;
         * zero without one), read from it by veil_chain_stats. */
        uint64_t subject_keys_created, subject_keys_destroyed;
        uint64_t subject_keys_rewrapped;
        uint64_t subject_key_hits, subject_key_misses;
        uint64_t subject_keys_fetched;
};

/* What filters get at init: the loaded config and shared services. */
struct veil_filter_env {
        const struct veil_config *config;
        struct veil_registry *reg;
        struct veil_chain *chain; /* for veil_chain_schema() */
        /* Appended after ABI version 1 shipped: a plugin built against the
         * shorter struct never reads it, so the version stays. */
        struct veil_chain_stats *stats;
        /* Appended too: per-subject data keys (crypto-shredding), set by
         * the worker with veil_chain_set_subject_keys; NULL otherwise.
         * Built-in filters read it per record. */
        struct veil_subject_keys *subject_keys;
        /* Appended too: the chain's detection engine (the built-in
         * detectors and the policy's own) and a scratch for it. The
         * built-in stages that scan text (license's redact_text, the
         * guard) share them: one Hyperscan database (~320 KB, an 85 ms
         * compile) per chain, not one per stage. Stages run one after the
         * other on the chain's thread, so the scratch is never in use
         * twice. */
        const struct veil_detect_engine *detect;
        struct veil_detect_scratch *detect_scratch;
};

/* ---- declarative config ---------------------------------------------- */

enum veil_filter_config_type {
        VEIL_FCONF_END = 0,
        VEIL_FCONF_BOOL,
        VEIL_FCONF_INT,
        VEIL_FCONF_STR,
};

#define VEIL_FCONF_REQUIRED 0x1

/* One key of a filter's configuration. The table ends with {0}. The
 * chain allocates the filter's context (ctx_size bytes), writes each
 * default at `offset` (bool, int64_t, or char * the chain owns), then calls
 * init. The same table prints `--help`. */
struct veil_filter_config {
        enum veil_filter_config_type type;
        const char *key;
        const char *def; /* default as text, NULL: none */
        int flags;
        size_t offset;
        const char *help;
};

struct veil_filter_plugin {
        int abi_version; /* VEIL_FILTER_ABI_VERSION */
        const char *name;
        const char *description;
        const struct veil_filter_config *config;
        size_t ctx_size; /* the context struct the config offsets point in */
        /* Expensive work here. 0 or a VEIL_E* code with errstr. */
        int (*init)(void *ctx, const struct veil_filter_env *env, char *errstr,
                    size_t errstr_size);
        /* Per-record work only; never frees what it does not own.
         * Built-in filters only (the internal record): */
        enum veil_verdict (*process)(void *ctx, struct veil_record *rec);
        /* Out-of-tree filters: the record view (set this, not process). */
        enum veil_verdict (*process_view)(void *ctx,
                                          struct veil_record_view *view);
        /* Releases what init allocated (not ctx itself). */
        void (*destroy)(void *ctx);
};

/* ---- the chain ---------------------------------------------------------- */

struct veil_chain;

/* The chain: decode, accept, the config's `plugins:` in order, license,
 * consent, guard. config
 * and reg must outlive it. NULL with errstr when a plugin cannot be loaded (or
 * has another ABI version) or a filter's init fails. */
struct veil_chain *veil_chain_new(const struct veil_config *config,
                                  struct veil_registry *reg, char *errstr,
                                  size_t errstr_size);
void veil_chain_destroy(struct veil_chain *chain);
/* The store that `encrypt: { per_subject: true }` takes data keys from
 * (borrowed; NULL: such fields fail closed). */
void veil_chain_set_subject_keys(struct veil_chain *chain,
                                 struct veil_subject_keys *sk);

/* Runs every filter on rec until one returns something other than
 * VEIL_CONTINUE. */
enum veil_verdict veil_chain_process(struct veil_chain *chain,
                                     struct veil_record *rec);

/* The parsed schema of registry id `id`, cached by the chain for its
 * lifetime (registry metadata included). On failure returns NULL and sets
 * *rcp: VEIL_ENOTFOUND (unknown id), VEIL_EINVAL (not a usable schema),
 * VEIL_EAUTH (the registry refuses Veil: stop), VEIL_ENET and others
 * (registry unreachable: retry later). */
const struct veil_schema *veil_chain_schema(struct veil_chain *chain, int id,
                                            int *rcp, char *errstr,
                                            size_t errstr_size);

/* The per-record output slots the chain reuses for a route (n = the
 * route's purposes). */
struct veil_record_out *veil_chain_outs(struct veil_chain *chain,
                                        const struct veil_route *route,
                                        size_t *n);

/* The chain's counters (owned by the chain), with the subject-key store's
 * (veil_chain_set_subject_keys) as they are now. */
const struct veil_chain_stats *veil_chain_stats(struct veil_chain *chain);

/* Prints each built-in filter's name, description and config keys. */
void veil_chain_print_help(void);

extern const struct veil_filter_plugin veil_filter_decode;
extern const struct veil_filter_plugin veil_filter_accept;
extern const struct veil_filter_plugin veil_filter_license;
extern const struct veil_filter_plugin veil_filter_consent;
extern const struct veil_filter_plugin veil_filter_guard;

#endif
