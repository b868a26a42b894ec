/* config.h - the one YAML file (DESIGN.md §5) loaded into memory. */
#ifndef VEIL_COMMON_CONFIG_H
#define VEIL_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyring.h"
#include "alert.h"
#include "policy.h"

struct veil_kv {
        char *key;
        char *value;
};

struct veil_registry_opts {
        char *url;          /* http(s)://… or file://DIR */
        char *basic_auth;   /* "user:pass" or NULL */
        char *ca_file;      /* NULL: system store */
        char *cert_file;    /* client certificate (PEM) for mTLS, or NULL */
        char *key_file;     /* its private key (PEM, owner-only), or NULL */
        char *bearer_token; /* the token itself (from bearer_token_file or
                             * the variable bearer_token_env names); never
                             * printed, wiped on destroy; or NULL */
        char *bearer_token_file; /* where it came from (for messages) */
        char *bearer_token_env;  /* or the variable's name */
        int64_t timeout_ms;      /* default 5000 */
        int retries;             /* default 3 */
        bool allow_insecure;     /* plain http:// to a non-loopback host */
};

/* One setting of one filter as the file wrote it: checked against that
 * filter's own config table when the chain is built (filter.h), with the
 * position for the error message. */
struct veil_setting {
        char *key;
        char *value; /* the scalar's text */
        int line, col;
};

/* The settings of one filter: `filters: { NAME: {…} }`, or a plugin's
 * `config:` (name NULL: the plugin at the same index). */
struct veil_filter_settings {
        char *name;
        struct veil_setting *v;
        size_t n;
        int line, col;
};

enum veil_dlq_payload { VEIL_DLQ_ENCRYPTED = 0, VEIL_DLQ_RAW };
/* off: no audit events at all (measurement, or where no licence asks for
 * an access log) */
enum veil_audit_level {
        VEIL_AUDIT_RECORD = 0,
        VEIL_AUDIT_BATCH,
        VEIL_AUDIT_OFF
};

struct veil_config {
        char *path; /* the file it came from */
        char *dir;  /* its directory, absolute: relative paths in the file
                     * (key file, ca_file, file:// registry, plugins) are
                     * resolved against it */

        struct veil_kv *kafka; /* passed verbatim to librdkafka */
        size_t n_kafka;
        char *group;    /* default "veil" */
        char *instance; /* default: host name; `veil run` holds
                         * veil_instance_lock so two live workers on one
                         * host never share it */
        struct veil_registry_opts registry;

        /* The keyring (keyring.h). `key`, `key_len` and `key_id` are the
         * ACTIVE key: new tokens, seals and MACs use it. Older keys stay in
         * `ring` to open old tokens and verify old MACs: find them by the
         * id the token names with veil_keyring_find. */
        struct {
                char *hmac_key_file; /* the legacy one-key form, or NULL */
                char *key_id;        /* keys.active (or key_id); "k1" */
                bool shared_across_purposes;
                bool allow_insecure_permissions;
                int64_t command_timeout_ms; /* default 10 s */
                struct veil_key *ring;      /* owned */
                size_t n_ring;
                unsigned char *key; /* the active key's material (points
                                     * into ring, not owned); never
                                     * printed */
                size_t key_len;     /* >= 32 */
        } keys;

        struct {
                bool allow_plaintext; /* accept {"key": …} requests */
        } erasure;

        struct veil_policy policy;
        struct veil_alert_rules alerts; /* alerts: and halt_on: */

        struct {
                char *dlq, *audit, *ledger, *erasure;
                char *subject_keys; /* wrapped per-subject data keys */
                char *control;      /* halted purposes (breaker.h) */
        } topics;

        enum veil_dlq_payload dlq_payload;
        enum veil_audit_level audit_level;
        char *metrics_listen;       /* NULL: no metrics endpoint */
        char *log_level;            /* default "info" */
        int64_t commit_interval_ms; /* default 100 */
        int64_t max_batch_records;  /* default 10000 */
        int64_t threads; /* pipelines per `veil run`; 0: one per core */
        char **plugins;
        size_t n_plugins;
        /* per plugin (same index): its `config:` (n == 0 when none) */
        struct veil_filter_settings *plugin_settings;
        /* `filters:` by filter name */
        struct veil_filter_settings *filters;
        size_t n_filters;
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

/* Takes the host-wide lock of this worker's transactional identity
 * (group + instance): an flock on "veil-GROUP-INSTANCE.lock" in
 * $VEIL_LOCK_DIR, else $XDG_RUNTIME_DIR, else /tmp. Two live workers on
 * one host with the same instance would share a transactional.id and
 * fence each other; the second is refused with a message saying so.
 * Returns the lock's file descriptor (keep it open for the life of the
 * worker; the kernel releases it when the process dies, so a restart
 * after a crash is never blocked), or -1 with errstr. */
int veil_instance_lock(const struct veil_config *config, char *errstr,
                       size_t errstr_size);

/* The value of `kafka:` entry `key` as the file wrote it, or NULL when the
 * file does not set it (librdkafka's default applies). Borrowed. */
const char *veil_config_kafka(const struct veil_config *config,
                              const char *key);

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
