/* config.h - the one YAML file (DESIGN.md §5) loaded into memory. */
#ifndef VEIL_COMMON_CONFIG_H
#define VEIL_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct veil_kv {
        char *key;
        char *value;
};

struct veil_registry_opts {
        char *url;          /* http(s)://… or file://DIR */
        char *basic_auth;   /* "user:pass" or NULL */
        char *ca_file;      /* NULL: system store */
        int64_t timeout_ms; /* default 5000 */
        int retries;        /* default 3 */
};

enum veil_dlq_payload { VEIL_DLQ_ENCRYPTED = 0, VEIL_DLQ_RAW };
enum veil_audit_level { VEIL_AUDIT_RECORD = 0, VEIL_AUDIT_BATCH };

struct veil_config {
        char *path; /* the file it came from */
        char *dir;  /* its directory, absolute: relative paths in the file
                     * (key file, ca_file, file:// registry, plugins) are
                     * resolved against it */

        struct veil_kv *kafka; /* passed verbatim to librdkafka */
        size_t n_kafka;
        char *group;    /* default "veil" */
        char *instance; /* default: host name */
        struct veil_registry_opts registry;

        struct {
                char *hmac_key_file;
                char *key_id; /* default "k1" */
                bool shared_across_purposes;
                unsigned char *key; /* the master key, never printed */
                size_t key_len;     /* >= 32 */
        } keys;

        struct veil_policy policy;

        struct {
                char *dlq, *audit, *ledger, *erasure;
        } topics;

        enum veil_dlq_payload dlq_payload;
        enum veil_audit_level audit_level;
        char *metrics_listen;       /* NULL: no metrics endpoint */
        char *log_level;            /* default "info" */
        int64_t commit_interval_ms; /* default 100 */
        int64_t max_batch_records;  /* default 10000 */
        char **plugins;
        size_t n_plugins;
};

/* Options for loading. */
struct veil_config_opts {
        bool skip_key; /* do not read keys (e.g. `veil check`, `veil topics`) */
        bool skip_kafka_check; /* do not validate kafka: through librdkafka */
};

/* Load and validate the file. On error returns NULL and writes a message
 * "FILE:LINE:COL: KEY.PATH: what is wrong" into errstr. The result is owned
 * by the caller (veil_config_destroy). */
struct veil_config *veil_config_load(const char *path,
                                     const struct veil_config_opts *opts,
                                     char *errstr, size_t errstr_size);
void veil_config_destroy(struct veil_config *config);

/* "90d", "12h", "30m", "90s", "500ms" (also combined: "1h30m") → ms.
 * Returns 0 or VEIL_EINVAL. */
int veil_duration_parse(const char *s, int64_t *msp);

/* "YYYY-MM-DD" → epoch seconds at 00:00:00 UTC that day. VEIL_EINVAL when
 * malformed or not a real date. */
int veil_date_parse(const char *s, int64_t *secp);

/* Calls fn for every key of every table the loader parses with, in table
 * order: section ("" for the top level, "purposes.*.license", "routes[]"…),
 * the key's name and whether it is required. `veil config-reference`
 * prints the reference from it. */
typedef void (*veil_config_key_fn)(const char *section, const char *key,
                                   bool required, void *arg);
void veil_config_each_key(veil_config_key_fn fn, void *arg);

#endif
