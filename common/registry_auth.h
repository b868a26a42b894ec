/* registry_auth.h - the schema registry's credentials, checked at load:
 * bearer token (file or environment), client certificate and CA bundle. */
#ifndef VEIL_COMMON_REGISTRY_AUTH_H
#define VEIL_COMMON_REGISTRY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Longest bearer token accepted (a JWT with many claims stays well below). */
#define VEIL_REGISTRY_TOKEN_MAX 16384

/* Reads a bearer token from `path` into *tokenp (a fresh string the caller
 * wipes and frees). One final "\n" or "\r\n" is dropped; the rest must be
 * 1..VEIL_REGISTRY_TOKEN_MAX visible ASCII characters (RFC 6750 tokens
 * have no spaces or controls, and a stray byte would break the header).
 * A file its group or others may access is refused (VEIL_EAUTH) unless
 * allow_insecure. Errors name the file, never its content. */
int veil_registry_token_file(const char *path, bool allow_insecure,
                             char **tokenp, char *errstr, size_t errstr_size);

/* The bearer token in environment variable `name`, as a fresh string (the
 * caller wipes and frees). The first call takes it out of the environment
 * (no child process and no later reader sees it) and keeps a copy, so a
 * reload on SIGHUP finds it again; the copy is wiped at exit.
 * VEIL_ENOTFOUND when the variable is unset or empty, VEIL_EINVAL when it
 * is not a valid token. Not thread-safe: call while loading the config. */
int veil_registry_token_env(const char *name, char **tokenp, char *errstr,
                            size_t errstr_size);

/* Checks a client certificate for mutual TLS before anything connects:
 * cert_file holds a PEM certificate that is valid now, key_file a PEM
 * private key without a passphrase that belongs to it, and key_file is
 * owner-only unless allow_insecure (VEIL_EAUTH). Errors name the files and
 * what is wrong with them, never key material; *key_faultp (may be NULL)
 * says whether the key file is the one to fix. */
int veil_registry_check_client_cert(const char *cert_file, const char *key_file,
                                    bool allow_insecure, bool *key_faultp,
                                    char *errstr, size_t errstr_size);

/* Checks that ca_file holds at least one PEM certificate. */
int veil_registry_check_ca_file(const char *ca_file, char *errstr,
                                size_t errstr_size);

#endif
