/* registry_auth.c - the schema registry's credentials, checked at load so a
 * wrong file is a config error with its place, not a refusal mid-stream. */
#define _GNU_SOURCE
#include "registry_auth.h"
#include "keyring.h"
#include "util.h"
#include "veil.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- bearer token ---- */

/* Drops one final "\n" or "\r\n", then accepts only visible ASCII: a
 * control byte or space would split or corrupt the Authorization header. */
static int token_check(char *tok, size_t *lenp, const char *where, char *errstr,
                       size_t errstr_size)
{
        size_t len = *lenp, i;

        if (len && tok[len - 1] == '\n')
                tok[--len] = '\0';
        if (len && tok[len - 1] == '\r')
                tok[--len] = '\0';
        if (!len)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "the bearer token in %s is empty", where);
        for (i = 0; i < len; i++)
                if ((unsigned char)tok[i] <= 0x20 ||
                    (unsigned char)tok[i] >= 0x7f)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "the bearer token in %s has a space, "
                                         "control or non-ASCII byte at "
                                         "position %zu",
                                         where, i);
        *lenp = len;
        return 0;
}

int veil_registry_token_file(const char *path, bool allow_insecure,
                             char **tokenp, char *errstr, size_t errstr_size)
{
        unsigned char *buf;
        size_t len, cap;
        int rc;

        *tokenp = NULL;
        rc = veil_secret_file_read(path, "token", VEIL_REGISTRY_TOKEN_MAX + 2,
                                   allow_insecure, &buf, &len, &cap, errstr,
                                   errstr_size);
        if (rc)
                return rc;
        if ((rc = token_check((char *)buf, &len, path, errstr, errstr_size))) {
                OPENSSL_cleanse(buf, cap);
                free(buf);
                return rc;
        }
        *tokenp = (char *)buf;
        return 0;
}

/* Variables already taken out of the environment, with their values. */
struct env_token {
        struct env_token *next;
        char *name;
        char *value;
        size_t len;
};

static struct env_token *env_tokens;
static bool env_atexit;

static void env_tokens_wipe(void)
{
        struct env_token *e;

        while ((e = env_tokens)) {
                env_tokens = e->next;
                OPENSSL_cleanse(e->value, e->len);
                free(e->value);
                free(e->name);
                free(e);
        }
}

int veil_registry_token_env(const char *name, char **tokenp, char *errstr,
                            size_t errstr_size)
{
        struct env_token *e;
        char *env, *tok;
        size_t len;
        int rc;

        *tokenp = NULL;
        for (e = env_tokens; e; e = e->next)
                if (!strcmp(e->name, name))
                        break;
        if (!e && (env = getenv(name)) && *env) {
                len      = strlen(env);
                e        = veil_calloc(1, sizeof(*e));
                e->name  = veil_strdup(name);
                e->value = veil_malloc(len + 1);
                memcpy(e->value, env, len + 1);
                e->len     = len;
                e->next    = env_tokens;
                env_tokens = e;
                /* The environment block is the process's: wipe the value
                 * before dropping the variable. */
                OPENSSL_cleanse(env, len);
                unsetenv(name);
                if (!env_atexit && !atexit(env_tokens_wipe))
                        env_atexit = true;
        }
        if (!e)
                return veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                 "environment variable %s is not set", name);
        len = e->len;
        tok = veil_malloc(len + 1);
        memcpy(tok, e->value, len + 1);
        if ((rc = token_check(tok, &len, name, errstr, errstr_size))) {
                OPENSSL_cleanse(tok, e->len);
                free(tok);
                return rc;
        }
        *tokenp = tok;
        return 0;
}

/* ---- certificates ---- */

/* The first reason OpenSSL queued, or "no PEM data"; clears the queue. */
static const char *ossl_reason(char *buf, size_t size)
{
        unsigned long e = ERR_peek_error();

        if (e)
                ERR_error_string_n(e, buf, size);
        else
                snprintf(buf, size, "no PEM data");
        ERR_clear_error();
        return buf;
}

static void asn1_time_text(const ASN1_TIME *t, char *buf, size_t size)
{
        BIO *bio = BIO_new(BIO_s_mem());
        int n    = 0;

        buf[0] = '\0';
        if (bio && ASN1_TIME_print(bio, t))
                n = BIO_read(bio, buf, (int)size - 1);
        buf[n > 0 ? n : 0] = '\0';
        BIO_free(bio);
}

/* Refuses to ask for a passphrase: there is nobody to type one. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
        (void)buf;
        (void)size;
        (void)rwflag;
        *(bool *)u = true;
        return 0;
}

/* NULL with *rcp and errstr when path cannot be read or holds none. */
static X509 *read_cert(const char *path, const char *what, int *rcp,
                       char *errstr, size_t errstr_size)
{
        BIO *bio = BIO_new_file(path, "r");
        char why[256];
        X509 *x;
        int err = errno;

        if (!bio) {
                ERR_clear_error();
                *rcp = veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "cannot read %s %s: %s", what, path,
                                 strerror(err));
                return NULL;
        }
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!x)
                *rcp = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "%s %s holds no PEM certificate (%s)", what,
                                 path, ossl_reason(why, sizeof(why)));
        return x;
}

int veil_registry_check_client_cert(const char *cert_file, const char *key_file,
                                    bool allow_insecure, bool *key_faultp,
                                    char *errstr, size_t errstr_size)
{
        X509 *x        = NULL;
        EVP_PKEY *pkey = NULL;
        FILE *fp       = NULL;
        struct stat st;
        char when[64], why[256];
        bool asked = false;
        int fd, err, rc = 0;

        if (key_faultp)
                *key_faultp = false;
        if (!(x = read_cert(cert_file, "client certificate", &rc, errstr,
                            errstr_size)))
                return rc;
        if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
                asn1_time_text(X509_get0_notAfter(x), when, sizeof(when));
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "client certificate %s expired on %s", cert_file,
                               when);
                goto done;
        }
        if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
                asn1_time_text(X509_get0_notBefore(x), when, sizeof(when));
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "client certificate %s is not valid before %s",
                               cert_file, when);
                goto done;
        }

        if (key_faultp)
                *key_faultp = true; /* from here on, the key is at fault */
        fd = open(key_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                err = errno;
                rc  = veil_errf(errstr, errstr_size, VEIL_EIO,
                                "cannot read client key %s: %s", key_file,
                                strerror(err));
                goto done;
        }
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
                close(fd);
                rc = veil_errf(errstr, errstr_size, VEIL_EIO,
                               "cannot read client key %s: not a regular file",
                               key_file);
                goto done;
        }
        if ((st.st_mode & 077) && !allow_insecure) {
                close(fd);
                rc = veil_errf(errstr, errstr_size, VEIL_EAUTH,
                               "client key %s has mode %04o: it must be "
                               "accessible by its owner only (chmod 600 %s), "
                               "or set keys.allow_insecure_permissions: true",
                               key_file, (unsigned)(st.st_mode & 07777),
                               key_file);
                goto done;
        }
        if (!(fp = fdopen(fd, "r"))) {
                err = errno;
                close(fd);
                rc = veil_errf(errstr, errstr_size, VEIL_EIO,
                               "cannot read client key %s: %s", key_file,
                               strerror(err));
                goto done;
        }
        pkey = PEM_read_PrivateKey(fp, NULL, no_passphrase, &asked);
        if (!pkey) {
                if (asked) {
                        ERR_clear_error();
                        rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                       "client key %s is encrypted: Veil "
                                       "reads keys without a passphrase "
                                       "(protect the file by its mode)",
                                       key_file);
                } else {
                        rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                       "client key %s holds no PEM private "
                                       "key (%s)",
                                       key_file, ossl_reason(why, sizeof(why)));
                }
                goto done;
        }
        if (X509_check_private_key(x, pkey) != 1) {
                ERR_clear_error();
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "client key %s does not belong to the "
                               "certificate in %s",
                               key_file, cert_file);
                goto done;
        }
done:
        EVP_PKEY_free(pkey);
        if (fp)
                fclose(fp);
        X509_free(x);
        return rc;
}

int veil_registry_check_ca_file(const char *ca_file, char *errstr,
                                size_t errstr_size)
{
        int rc  = 0;
        X509 *x = read_cert(ca_file, "CA file", &rc, errstr, errstr_size);

        if (!x)
                return rc;
        X509_free(x);
        return 0;
}
