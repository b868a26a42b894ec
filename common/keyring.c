/* keyring.c - reads Veil's master keys: owner-only files, commands (a vault
 * or KMS CLI) and VEIL_HMAC_KEY, which leaves the environment once read. */
#define _GNU_SOURCE
#include "keyring.h"
#include "config.h"
#include "util.h"
#include "veil.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A key file or command output larger than this is not a key. */
#define KEY_MAX_LEN (1 << 16)

extern char **environ;

bool veil_key_id_valid(const char *s, size_t len)
{
        size_t i;

        if (!s || !len || len > VEIL_KEY_ID_MAX)
                return false;
        for (i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

const struct veil_key *veil_keyring_find(const struct veil_config *config,
                                         const char *id, size_t id_len)
{
        size_t i;

        if (!config || !id)
                return NULL;
        for (i = 0; i < config->keys.n_ring; i++) {
                const struct veil_key *k = &config->keys.ring[i];

                if (strlen(k->id) == id_len && !memcmp(k->id, id, id_len))
                        return k;
        }
        return NULL;
}

void veil_key_clear(struct veil_key *key)
{
        if (!key)
                return;
        if (key->key) {
                OPENSSL_cleanse(key->key, key->len);
                free(key->key);
        }
        free(key->id);
        free(key->file);
        if (key->command) /* may hold a token for the vault */
                OPENSSL_cleanse(key->command, strlen(key->command));
        free(key->command);
        memset(key, 0, sizeof(*key));
}

/* One final "\n" or "\r\n" is not part of the key (editors and `echo`). */
static void trim_newline(unsigned char *key, size_t *lenp)
{
        size_t len = *lenp;

        if (len && key[len - 1] == '\n') {
                key[--len] = 0;
                if (len && key[len - 1] == '\r')
                        key[--len] = 0;
        }
        *lenp = len;
}

int veil_secret_file_read(const char *path, const char *what, size_t max,
                          bool allow_insecure, unsigned char **bufp,
                          size_t *lenp, size_t *capp, char *errstr,
                          size_t errstr_size)
{
        unsigned char *buf = NULL;
        struct stat st;
        size_t len = 0, cap;
        ssize_t n;
        int fd, err;

        *bufp = NULL;
        fd    = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                err = errno;
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "cannot read %s file %s: %s", what, path,
                                 strerror(err));
        }
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
                close(fd);
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "cannot read %s file %s: not a regular "
                                 "file",
                                 what, path);
        }
        /* Checked on the open file, so a swap after the check cannot
         * matter. Any group or other bit: a secret is its owner's alone. */
        if ((st.st_mode & 077) && !allow_insecure) {
                close(fd);
                return veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                 "%s file %s has mode %04o: it must be "
                                 "accessible by its owner only (chmod 600 "
                                 "%s), or set "
                                 "keys.allow_insecure_permissions: true",
                                 what, path, (unsigned)(st.st_mode & 07777),
                                 path);
        }
        if ((size_t)st.st_size > max) {
                close(fd);
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "%s file %s is larger than %zu bytes", what,
                                 path, max);
        }
        /* Exact-size allocation: no copy of the secret is left behind in a
         * buffer realloc would free. */
        cap = (size_t)st.st_size + 1;
        buf = veil_malloc(cap);
        while (len < (size_t)st.st_size) {
                n = read(fd, buf + len, (size_t)st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        err = n < 0 ? errno : EIO;
                        OPENSSL_cleanse(buf, cap);
                        free(buf);
                        close(fd);
                        return veil_errf(errstr, errstr_size, VEIL_EIO,
                                         "cannot read %s file %s: %s", what,
                                         path, strerror(err));
                }
                len += (size_t)n;
        }
        close(fd);
        buf[len] = 0;
        *bufp    = buf;
        *lenp    = len;
        *capp    = cap;
        return 0;
}

int veil_key_read_file(const char *path, bool allow_insecure,
                       unsigned char **keyp, size_t *lenp, char *errstr,
                       size_t errstr_size)
{
        unsigned char *buf;
        size_t len, cap;
        int rc;

        *keyp = NULL;
        rc    = veil_secret_file_read(path, "key", KEY_MAX_LEN, allow_insecure,
                                      &buf, &len, &cap, errstr, errstr_size);
        if (rc)
                return rc;
        trim_newline(buf, &len);
        if (len < VEIL_KEY_MIN_LEN) {
                OPENSSL_cleanse(buf, cap);
                free(buf);
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "the key in %s is too short: %zu bytes, at "
                                 "least %d are required",
                                 path, len, VEIL_KEY_MIN_LEN);
        }
        *keyp = buf;
        *lenp = len;
        return 0;
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the child's stdout until EOF or the deadline. Returns 0, 1 on
 * timeout, -1 on an error or too much output. The buffer is grown by
 * copy-and-wipe so no partial key stays in freed memory. */
static int read_output(int fd, int64_t deadline, unsigned char **bufp,
                       size_t *lenp)
{
        unsigned char *buf = veil_malloc(256), *nb;
        size_t cap = 256, len = 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;
        int64_t left;

        for (;;) {
                left = deadline - mono_ms();
                if (left <= 0)
                        goto timeout;
                if (poll(&pfd, 1, (int)(left > 1000 ? 1000 : left)) < 0) {
                        if (errno == EINTR)
                                continue;
                        goto fail;
                }
                if (!pfd.revents)
                        continue;
                if (len == cap) {
                        if (cap >= KEY_MAX_LEN)
                                goto fail;
                        nb = veil_malloc(cap * 2);
                        memcpy(nb, buf, len);
                        OPENSSL_cleanse(buf, cap);
                        free(buf);
                        buf = nb;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0)
                        goto fail;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *bufp = buf;
        *lenp = len;
        return 0;
timeout:
        OPENSSL_cleanse(buf, cap);
        free(buf);
        return 1;
fail:
        OPENSSL_cleanse(buf, cap);
        free(buf);
        return -1;
}

int veil_key_run_command(const char *id, const char *command, const char *cwd,
                         int64_t timeout_ms, unsigned char **keyp, size_t *lenp,
                         char *errstr, size_t errstr_size)
{
        posix_spawn_file_actions_t fa;
        unsigned char *out = NULL, *key;
        char *argv[] = {(char *)"sh", (char *)"-c", (char *)command, NULL};
        int pipefd[2], status = 0, rc, r;
        size_t len = 0;
        pid_t pid;

        *keyp = NULL;
        if (timeout_ms <= 0)
                timeout_ms = VEIL_KEY_COMMAND_TIMEOUT_MS;
        if (pipe2(pipefd, O_CLOEXEC))
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "key '%s': cannot make a pipe: %s", id,
                                 strerror(errno));
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        if (cwd)
                posix_spawn_file_actions_addchdir_np(&fa, cwd);
        r = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[1]);
        if (r) {
                close(pipefd[0]);
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "key '%s': cannot start /bin/sh for its "
                                 "command: %s",
                                 id, strerror(r));
        }
        rc = read_output(pipefd[0], mono_ms() + timeout_ms, &out, &len);
        close(pipefd[0]);
        if (rc)
                kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (rc == 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "key '%s': its command did not finish "
                                 "within %lld ms (keys.command_timeout)",
                                 id, (long long)timeout_ms);
        if (rc)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "key '%s': reading its command's output "
                                 "failed (more than %d bytes, or an I/O "
                                 "error)",
                                 id, KEY_MAX_LEN);
        if (!WIFEXITED(status) || WEXITSTATUS(status)) {
                OPENSSL_cleanse(out, len);
                free(out);
                if (WIFSIGNALED(status))
                        return veil_errf(errstr, errstr_size, VEIL_EIO,
                                         "key '%s': its command was killed "
                                         "by signal %d",
                                         id, WTERMSIG(status));
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "key '%s': its command exited with status "
                                 "%d (its stderr is discarded; run it by "
                                 "hand to see why)",
                                 id, WEXITSTATUS(status));
        }
        trim_newline(out, &len);
        if (len < VEIL_KEY_MIN_LEN) {
                OPENSSL_cleanse(out, len);
                free(out);
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "key '%s': its command printed %zu bytes, "
                                 "at least %d are required",
                                 id, len, VEIL_KEY_MIN_LEN);
        }
        /* Exact size, the rest of the read buffer wiped. */
        key = veil_malloc(len);
        memcpy(key, out, len);
        OPENSSL_cleanse(out, len);
        free(out);
        *keyp = key;
        *lenp = len;
        return 0;
}

/* VEIL_HMAC_KEY as first seen by this process. */
static unsigned char *env_key;
static size_t env_key_len;
static bool env_atexit;

static void env_key_wipe(void)
{
        if (env_key) {
                OPENSSL_cleanse(env_key, env_key_len);
                free(env_key);
        }
        env_key     = NULL;
        env_key_len = 0;
}

const unsigned char *veil_keyring_env_key(size_t *lenp)
{
        char *env = getenv("VEIL_HMAC_KEY");
        size_t len;

        if (env && *env) {
                len = strlen(env);
                env_key_wipe();
                env_key = veil_malloc(len + 1);
                memcpy(env_key, env, len + 1);
                env_key_len = len;
                /* The environment block is the process's: wipe the value
                 * before dropping the variable. */
                OPENSSL_cleanse(env, len);
                unsetenv("VEIL_HMAC_KEY");
                if (!env_atexit && !atexit(env_key_wipe))
                        env_atexit = true;
        } else if (env) {
                unsetenv("VEIL_HMAC_KEY");
        }
        if (!env_key)
                return NULL;
        *lenp = env_key_len;
        return env_key;
}

/* Loads one key's material into *keyp (the caller owns it). */
static int key_load(const struct veil_config *config, const struct veil_key *k,
                    bool active, unsigned char **keyp, size_t *lenp,
                    char *errstr, size_t errstr_size)
{
        const unsigned char *env;
        size_t len = 0;

        if (active && (env = veil_keyring_env_key(&len))) {
                if (len < VEIL_KEY_MIN_LEN)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "the key in VEIL_HMAC_KEY is too "
                                         "short: %zu bytes, at least %d are "
                                         "required",
                                         len, VEIL_KEY_MIN_LEN);
                *keyp = veil_malloc(len);
                memcpy(*keyp, env, len);
                *lenp = len;
                return 0;
        }
        if (k->file)
                return veil_key_read_file(
                        k->file, config->keys.allow_insecure_permissions, keyp,
                        lenp, errstr, errstr_size);
        if (k->command)
                return veil_key_run_command(k->id, k->command, config->dir,
                                            config->keys.command_timeout_ms,
                                            keyp, lenp, errstr, errstr_size);
        return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                         "key '%s' has no file or command%s", k->id,
                         active ? " and VEIL_HMAC_KEY is not set" : "");
}

int veil_keyring_reload(struct veil_config *config, char *errstr,
                        size_t errstr_size)
{
        unsigned char **keys;
        size_t *lens, i, n = config->keys.n_ring, active = n;
        char msg[768];
        int rc = 0;

        keys = veil_calloc(n ? n : 1, sizeof(*keys));
        lens = veil_calloc(n ? n : 1, sizeof(*lens));
        for (i = 0; i < n; i++) {
                const struct veil_key *k = &config->keys.ring[i];
                bool is_active           = !strcmp(k->id, config->keys.key_id);

                if (is_active)
                        active = i;
                rc = key_load(config, k, is_active, &keys[i], &lens[i], msg,
                              sizeof(msg));
                if (rc) {
                        rc = veil_errf(errstr, errstr_size, rc,
                                       "%s: keys.ring.%s: %s", config->path,
                                       k->id, msg);
                        break;
                }
        }
        if (!rc && active == n)
                rc = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                               "%s: keys.active: no key '%s' in the ring",
                               config->path, config->keys.key_id);
        for (i = 0; i < n; i++) {
                struct veil_key *k = &config->keys.ring[i];
                unsigned char *old = rc ? keys[i] : k->key;
                size_t old_len     = rc ? lens[i] : k->len;

                if (!rc) {
                        k->key = keys[i];
                        k->len = lens[i];
                }
                if (old) {
                        OPENSSL_cleanse(old, old_len);
                        free(old);
                }
        }
        if (!rc) {
                config->keys.key     = config->keys.ring[active].key;
                config->keys.key_len = config->keys.ring[active].len;
        }
        free(keys);
        free(lens);
        return rc;
}
