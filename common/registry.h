/* registry.h - schema-registry client: Confluent REST or a file:// dir. */
#ifndef VEIL_COMMON_REGISTRY_H
#define VEIL_COMMON_REGISTRY_H

#include <stddef.h>

#include "config.h"

/* One registry connection plus its caches. Safe to share between threads:
 * the caches are behind a mutex and HTTP requests are serialised on one
 * connection (lookups are rare once the caches are warm). */
struct veil_registry;

/* Open the registry named by opts->url:
 *  - http://… or https://… : a Confluent-compatible REST registry. Basic auth
 *    from opts->basic_auth ("user:pass") or from user info in the URL (the
 *    former wins), or a bearer token (opts->bearer_token; not with basic
 *    auth); neither ever appears in messages. opts->ca_file sets the CA
 *    bundle; opts->cert_file + opts->key_file a client certificate (mutual
 *    TLS, https:// only); opts->timeout_ms bounds connect and whole request
 *    (<= 0: 5000); opts->retries is how many times a 5xx, 429 or network
 *    failure is retried with exponential backoff (< 0: 0). A refusal —
 *    HTTP 401/403, or TLS that fails on a certificate — is never retried:
 *    VEIL_EAUTH with a message naming the registry and what to check.
 *  - file:///abs/dir or file://rel/dir (relative to the current directory,
 *    resolved now): DIR/<subject>.avsc is the subject's latest schema,
 *    DIR/<subject>.meta.json its optional metadata, and the manifest
 *    DIR/.veil-registry.json keeps ids stable across runs.
 * opts is copied. Returns NULL with errstr on a bad URL or missing directory.
 */
/* Is `url` plain http:// to a host that is not loopback (localhost,
 * 127.0.0.0/8, ::1)? Such a registry is refused unless
 * registry.allow_insecure: schemas decide what each purpose receives. */
bool veil_registry_url_insecure(const char *url);

struct veil_registry *veil_registry_new(const struct veil_registry_opts *opts,
                                        char *errstr, size_t errstr_size);

/* What a caller puts before one of this module's messages so that it
 * names the registry once: "" when `msg` already starts with "registry"
 * (most do: "registry GET URL: ...", "registry.url: ..."), "registry: "
 * otherwise (a file:// registry's "PATH:LINE:COL: ..."). */
const char *veil_registry_err_prefix(const char *msg);
void veil_registry_destroy(struct veil_registry *reg);

/* Asks the registry once (GET /subjects) whether it is there and lets
 * Veil in, so a worker can refuse to start on a refusal rather than find it
 * at its first record. 0 (also for file:// and for any answer past TLS and
 * authentication), VEIL_EAUTH on a refusal (TLS or HTTP 401/403: a
 * configuration problem), VEIL_ENET when it cannot be reached after the
 * retries (it may come back: the caller decides whether to wait). */
int veil_registry_probe(struct veil_registry *reg, char *errstr,
                        size_t errstr_size);

/* Schema text by global id. *schemap is owned by the registry's cache and
 * stays valid until veil_registry_destroy; a second call for the same id
 * makes no request. VEIL_ENOTFOUND when the registry does not know the id,
 * VEIL_EINVAL when the schema is not Avro, VEIL_EAUTH when refused,
 * VEIL_ENET on network or server failure after retries. */
int veil_registry_schema_by_id(struct veil_registry *reg, int id,
                               const char **schemap, char *errstr,
                               size_t errstr_size);

/* Same, also returning the schema's Confluent `metadata` object as compact
 * JSON text (e.g. {"tags":{…}}) in *metadatap, or NULL when it has none.
 * Both owned by the cache. */
int veil_registry_schema_by_id_meta(struct veil_registry *reg, int id,
                                    const char **schemap,
                                    const char **metadatap, char *errstr,
                                    size_t errstr_size);

/* The latest version of a subject: its global id and schema text (owned by
 * the cache, valid until destroy). Always asks the registry (the latest
 * version can change); the answer also fills the id cache.
 * VEIL_ENOTFOUND when the subject does not exist. */
int veil_registry_latest(struct veil_registry *reg, const char *subject,
                         int *idp, const char **schemap, char *errstr,
                         size_t errstr_size);

/* Same, plus the schema's `metadata` object as compact JSON text, or NULL. */
int veil_registry_latest_meta(struct veil_registry *reg, const char *subject,
                              int *idp, const char **schemap,
                              const char **metadatap, char *errstr,
                              size_t errstr_size);

/* Register an Avro schema under subject, or find its id if that subject
 * already holds an identical schema. The id is cached per (subject, schema
 * text), so registering the same text again makes no request.
 * VEIL_EINVAL when the registry rejects the schema (invalid, or incompatible
 * with earlier versions) with the registry's reason. */
int veil_registry_register(struct veil_registry *reg, const char *subject,
                           const char *schema, int *idp, char *errstr,
                           size_t errstr_size);

#endif
