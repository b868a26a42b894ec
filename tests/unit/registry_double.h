/* registry_double.h - an in-process Confluent-compatible registry for tests. */
#ifndef VEIL_TESTS_REGISTRY_DOUBLE_H
#define VEIL_TESTS_REGISTRY_DOUBLE_H

/* It answers the REST subset Veil uses, with Confluent's status codes and
 * error bodies:
 *   GET  /schemas/ids/{id}               200 | 404 error 40403
 *   GET  /subjects/{s}/versions/latest   200 | 404 error 40401
 *   POST /subjects/{s}/versions          200 {"id"} | 422 error 42201
 * plus switches for the faults a client must handle. Thread-safe: the server
 * runs on its own thread while the test calls these functions. */
struct registry_double;

/* Listen on 127.0.0.1 on an ephemeral port. NULL on failure (reason on
 * stderr). */
struct registry_double *registry_double_start(void);

/* Stop serving (joins the server thread) and free everything. NULL: no-op. */
void registry_double_stop(struct registry_double *rdbl);

/* "http://127.0.0.1:PORT", owned by rdbl. */
const char *registry_double_url(const struct registry_double *rdbl);
int registry_double_port(const struct registry_double *rdbl);

/* Add schema as subject's next version and return its global id (>= 1).
 * As in Confluent, the same text keeps one id across subjects, and adding
 * the text a subject already holds returns its id without a new version.
 * metadata is a JSON object text such as {"tags":{"PII":["email"]}}, or NULL;
 * it is served as the schema's "metadata". */
int registry_double_add(struct registry_double *rdbl, const char *subject,
                        const char *schema);
int registry_double_add_meta(struct registry_double *rdbl, const char *subject,
                             const char *schema, const char *metadata);

/* From now on refuse requests without these basic-auth credentials (401).
 * user NULL: no auth. */
void registry_double_require_auth(struct registry_double *rdbl,
                                  const char *user, const char *password);

/* From now on refuse requests without "Authorization: Bearer TOKEN" (401).
 * token NULL: no bearer required. */
void registry_double_require_bearer(struct registry_double *rdbl,
                                    const char *token);

/* The next n requests, whatever they ask, answer HTTP status (e.g. 503, or
 * 409 to play an incompatible schema) with a Confluent error body whose
 * error_code is status. */
void registry_double_fail_next(struct registry_double *rdbl, unsigned n,
                               int status);

/* How many requests arrived for exactly this (URL-decoded) path, e.g.
 * "/schemas/ids/1"; path NULL: all requests. Refused and injected-failure
 * requests count too. */
unsigned registry_double_requests(struct registry_double *rdbl,
                                  const char *path);

/* The latest schema text of subject as a copy the caller frees, and its id
 * in *idp (may be NULL); NULL when the subject is unknown. For tests that
 * check what a client registered. */
char *registry_double_latest(struct registry_double *rdbl, const char *subject,
                             int *idp);

#endif
