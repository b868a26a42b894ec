/* keyring.h - Veil's master keys: a ring of ids, each key read from an
 * owner-only file or from a command's stdout, one of them active. */
#ifndef VEIL_COMMON_KEYRING_H
#define VEIL_COMMON_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Shortest master key accepted, in bytes. */
#define VEIL_KEY_MIN_LEN 32
/* Longest key id: the id travels in every token, seal and MAC. */
#define VEIL_KEY_ID_MAX 32
/* Default for keys.command_timeout. */
#define VEIL_KEY_COMMAND_TIMEOUT_MS 10000

/* One key of the ring. Exactly one of file and command is set (the
 * legacy `hmac_key_file` is the file of a ring of one; VEIL_HMAC_KEY may
 * supply the active key instead, see veil_keyring_env_key). `key` is the
 * material once loaded (NULL with skip_key); it is wiped when freed. */
struct veil_key {
        char *id;
        char *file;    /* absolute path, or NULL */
        char *command; /* run through /bin/sh -c, or NULL */
        unsigned char *key;
        size_t len;
};

struct veil_config;

/* The ring key named `id` (`id_len` bytes, need not be NUL-terminated),
 * loaded or not; NULL when the ring has no such id. The result points
 * into config and lives as long as it. */
const struct veil_key *veil_keyring_find(const struct veil_config *config,
                                         const char *id, size_t id_len);

/* Is `s` (`len` bytes) a valid key id: 1..VEIL_KEY_ID_MAX of
 * [A-Za-z0-9_-]? */
bool veil_key_id_valid(const char *s, size_t len);

/* A secret file read whole (NUL-terminated, allocated to its exact size
 * `cap`, to be wiped with OPENSSL_cleanse): a regular file of at most max
 * bytes, accessible by its owner only unless allow_insecure. `what`
 * ("key", "token") names it in the errors. */
int veil_secret_file_read(const char *path, const char *what, size_t max,
                          bool allow_insecure, unsigned char **bufp,
                          size_t *lenp, size_t *capp, char *errstr,
                          size_t errstr_size);
/* Reads a key file into a fresh buffer (*keyp, the caller wipes and frees
 * it; one final "\n" or "\r\n" is not part of the key). Refuses a file
 * that its group or others may access unless allow_insecure. Errors
 * (VEIL_EIO, VEIL_EAUTH for the mode, VEIL_EINVAL for a short key) name
 * the file and never show its content. */
int veil_key_read_file(const char *path, bool allow_insecure,
                       unsigned char **keyp, size_t *lenp, char *errstr,
                       size_t errstr_size);

/* Runs `command` through /bin/sh -c in folder `cwd` (the config's, so
 * relative paths mean what they mean in the file; NULL: the current one)
 * with stdin and stderr on /dev/null (stderr is never read, so a vault
 * CLI's chatter cannot reach a log) and
 * takes its stdout, less one final newline, as the key (>= 32 bytes).
 * Killed after timeout_ms. Errors name the key id, never the output. */
int veil_key_run_command(const char *id, const char *command, const char *cwd,
                         int64_t timeout_ms, unsigned char **keyp, size_t *lenp,
                         char *errstr, size_t errstr_size);

/* The master key from the environment: VEIL_HMAC_KEY when set (it is
 * then removed from the environment so that no child process and no
 * later reader sees it), else the copy kept from an earlier call of this
 * process (so a reload on SIGHUP finds it again). NULL when neither.
 * The copy is wiped at exit. Not thread-safe: call while loading the
 * config. */
const unsigned char *veil_keyring_env_key(size_t *lenp);

/* Loads the material of every ring key (files read, commands run) into
 * fresh buffers and, only when all succeed, swaps them in for the old
 * ones (wiped). For SIGHUP when the config object stays: a command's key
 * may have rotated. On error nothing changes and errstr names the key
 * id. (veil_config_load does the same on every load, so a worker that
 * reloads its whole config needs no extra call.) */
int veil_keyring_reload(struct veil_config *config, char *errstr,
                        size_t errstr_size);

/* Wipes and frees one key's fields. */
void veil_key_clear(struct veil_key *key);

#endif
