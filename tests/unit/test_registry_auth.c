/* test_registry_auth.c - the registry's credentials checked at load: token
 * files and variables, client certificates and CA files; and the client
 * sending a bearer token without retrying a refusal. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "registry_auth.h"
#include "registry_double.h"
#include "veil.h"

static char dir[] = "/tmp/veil-regauth-XXXXXX";
static char errstr[512];

static void setup(void)
{
        strcpy(dir, "/tmp/veil-regauth-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
}

static char *path_of(const char *name)
{
        char *p;

        cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
        char *p = path_of(name);
        FILE *f = fopen(p, "w");

        cr_assert_not_null(f, "%s", p);
        fputs(text, f);
        fclose(f);
        cr_assert_eq(chmod(p, mode), 0);
        return p;
}

/* A self-signed certificate valid from now+from_s to now+to_s, and its
 * key; passphrase non-NULL encrypts the key. Returns the key so a second
 * certificate can be made for another key. */
static void make_cert(const char *cert_name, const char *key_name, long from_s,
                      long to_s, const char *passphrase)
{
        EVP_PKEY *pkey = EVP_EC_gen("P-256");
        X509 *x        = X509_new();
        X509_NAME *name;
        char *cp = path_of(cert_name), *kp = path_of(key_name);
        FILE *f;

        cr_assert_not_null(pkey);
        cr_assert_not_null(x);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), from_s);
        X509_gmtime_adj(X509_getm_notAfter(x), to_s);
        X509_set_pubkey(x, pkey);
        name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   (const unsigned char *)"veil-test", -1, -1,
                                   0);
        X509_set_issuer_name(x, name);
        cr_assert(X509_sign(x, pkey, EVP_sha256()) > 0);
        cr_assert_not_null(f = fopen(cp, "w"));
        PEM_write_X509(f, x);
        fclose(f);
        cr_assert_not_null(f = fopen(kp, "w"));
        if (passphrase)
                PEM_write_PrivateKey(f, pkey, EVP_aes_256_cbc(),
                                     (unsigned char *)passphrase,
                                     (int)strlen(passphrase), NULL, NULL);
        else
                PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
        fclose(f);
        cr_assert_eq(chmod(kp, 0600), 0);
        X509_free(x);
        EVP_PKEY_free(pkey);
        free(cp);
        free(kp);
}

TestSuite(registry_auth, .init = setup, .fini = teardown);

Test(registry_auth, token_file_owner_only_and_trimmed)
{
        char *p = write_file("tok", "abc.DEF-123_x~+/=\n", 0600), *tok = NULL;

        cr_assert_eq(veil_registry_token_file(p, false, &tok, errstr,
                                              sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(tok, "abc.DEF-123_x~+/=");
        free(tok);

        cr_assert_eq(chmod(p, 0640), 0);
        cr_assert_eq(veil_registry_token_file(p, false, &tok, errstr,
                                              sizeof(errstr)),
                     VEIL_EAUTH);
        cr_assert_null(tok);
        cr_assert(strstr(errstr, "0640") && strstr(errstr, p), "%s", errstr);
        cr_assert_null(strstr(errstr, "abc.DEF"), "%s", errstr);
        cr_assert_eq(
                veil_registry_token_file(p, true, &tok, errstr, sizeof(errstr)),
                0, "%s", errstr);
        free(tok);
        free(p);
}

Test(registry_auth, token_file_bad_content_is_refused_without_echo)
{
        static const char *bad[] = {"",
                                    "\n",
                                    "sec ret\n",
                                    "sec\tret",
                                    "secr\x01t",
                                    "s\xc3\xa9"
                                    "cret"};
        char name[16], *p, *tok = NULL;
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                snprintf(name, sizeof(name), "t%zu", i);
                p = write_file(name, bad[i], 0600);
                cr_assert_eq(veil_registry_token_file(p, false, &tok, errstr,
                                                      sizeof(errstr)),
                             VEIL_EINVAL, "case %zu", i);
                cr_assert_null(tok);
                cr_assert_null(strstr(errstr, "sec"), "%s", errstr);
                free(p);
        }
        p = path_of("missing");
        cr_assert_eq(veil_registry_token_file(p, false, &tok, errstr,
                                              sizeof(errstr)),
                     VEIL_EIO);
        cr_assert(strstr(errstr, p), "%s", errstr);
        free(p);
}

Test(registry_auth, token_env_is_taken_out_of_the_environment)
{
        char *tok = NULL;

        cr_assert_eq(veil_registry_token_env("VEIL_TEST_TOKEN_UNSET", &tok,
                                             errstr, sizeof(errstr)),
                     VEIL_ENOTFOUND);
        setenv("VEIL_TEST_TOKEN", "eyJhbGciOi.payload.sig", 1);
        cr_assert_eq(veil_registry_token_env("VEIL_TEST_TOKEN", &tok, errstr,
                                             sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(tok, "eyJhbGciOi.payload.sig");
        free(tok);
        cr_assert_null(getenv("VEIL_TEST_TOKEN"));
        /* A reload finds it again. */
        cr_assert_eq(veil_registry_token_env("VEIL_TEST_TOKEN", &tok, errstr,
                                             sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(tok, "eyJhbGciOi.payload.sig");
        free(tok);

        setenv("VEIL_TEST_TOKEN_BAD", "two words", 1);
        cr_assert_eq(veil_registry_token_env("VEIL_TEST_TOKEN_BAD", &tok,
                                             errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert_null(strstr(errstr, "words"), "%s", errstr);
}

Test(registry_auth, client_cert_and_key_checked)
{
        char *cert, *key, *other_key, *enc_cert, *enc_key;
        bool key_fault = false;

        make_cert("c.pem", "c.key", -60, 86400, NULL);
        make_cert("o.pem", "o.key", -60, 86400, NULL);
        make_cert("e.pem", "e.key", -60, 86400, "pw");
        cert      = path_of("c.pem");
        key       = path_of("c.key");
        other_key = path_of("o.key");
        enc_cert  = path_of("e.pem");
        enc_key   = path_of("e.key");

        cr_assert_eq(veil_registry_check_client_cert(cert, key, false, NULL,
                                                     errstr, sizeof(errstr)),
                     0, "%s", errstr);

        cr_assert_eq(veil_registry_check_client_cert(cert, other_key, false,
                                                     NULL, errstr,
                                                     sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "does not belong"), "%s", errstr);
        cr_assert_eq(veil_registry_check_client_cert(cert, other_key, false,
                                                     &key_fault, errstr,
                                                     sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(key_fault, "the key is the file to fix");

        cr_assert_eq(veil_registry_check_client_cert(enc_cert, enc_key, false,
                                                     NULL, errstr,
                                                     sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "encrypted"), "%s", errstr);

        cr_assert_eq(chmod(key, 0644), 0);
        cr_assert_eq(veil_registry_check_client_cert(cert, key, false, NULL,
                                                     errstr, sizeof(errstr)),
                     VEIL_EAUTH);
        cr_assert(strstr(errstr, "0644") && strstr(errstr, key), "%s", errstr);
        cr_assert_eq(veil_registry_check_client_cert(cert, key, true, NULL,
                                                     errstr, sizeof(errstr)),
                     0, "%s", errstr);

        /* A key where the certificate should be, and the other way round. */
        cr_assert_eq(veil_registry_check_client_cert(key, key, true, NULL,
                                                     errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "no PEM certificate"), "%s", errstr);
        cr_assert_eq(veil_registry_check_client_cert(key, key, true, &key_fault,
                                                     errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert_not(key_fault, "the certificate is the file to fix");
        cr_assert_eq(veil_registry_check_client_cert(cert, cert, true, NULL,
                                                     errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "no PEM private key"), "%s", errstr);
        /* Never key material in a message. */
        cr_assert_null(strstr(errstr, "PRIVATE KEY-----"), "%s", errstr);
        free(cert);
        free(key);
        free(other_key);
        free(enc_cert);
        free(enc_key);
}

Test(registry_auth, client_cert_outside_its_validity_is_refused)
{
        char *cert, *key;

        make_cert("old.pem", "old.key", -7200, -3600, NULL);
        cert = path_of("old.pem");
        key  = path_of("old.key");
        cr_assert_eq(veil_registry_check_client_cert(cert, key, false, NULL,
                                                     errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "expired on"), "%s", errstr);
        free(cert);
        free(key);

        make_cert("new.pem", "new.key", 3600, 7200, NULL);
        cert = path_of("new.pem");
        key  = path_of("new.key");
        cr_assert_eq(veil_registry_check_client_cert(cert, key, false, NULL,
                                                     errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "not valid before"), "%s", errstr);
        free(cert);
        free(key);
}

Test(registry_auth, ca_file_must_hold_a_certificate)
{
        char *ca, *junk, *missing;

        make_cert("ca.pem", "ca.key", -60, 86400, NULL);
        ca      = path_of("ca.pem");
        junk    = write_file("junk.pem", "not a certificate\n", 0644);
        missing = path_of("missing.pem");
        cr_assert_eq(veil_registry_check_ca_file(ca, errstr, sizeof(errstr)), 0,
                     "%s", errstr);
        cr_assert_eq(veil_registry_check_ca_file(junk, errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, junk), "%s", errstr);
        cr_assert_eq(
                veil_registry_check_ca_file(missing, errstr, sizeof(errstr)),
                VEIL_EIO);
        cr_assert(strstr(errstr, "No such file"), "%s", errstr);
        free(ca);
        free(junk);
        free(missing);
}

/* ---- the client with a bearer token (plain HTTP to loopback) ---- */

static struct veil_registry *bearer_client(const char *url, const char *tok)
{
        struct veil_registry_opts opts = {
                .url          = (char *)url,
                .bearer_token = (char *)tok,
                .timeout_ms   = 5000,
                .retries      = 3,
        };
        struct veil_registry *reg =
                veil_registry_new(&opts, errstr, sizeof(errstr));

        cr_assert_not_null(reg, "veil_registry_new: %s", errstr);
        return reg;
}

Test(registry_auth, bearer_right_and_wrong_never_retried)
{
        struct registry_double *rdbl = registry_double_start();
        struct veil_registry *reg;
        const char *schema = NULL;
        int id;

        cr_assert_not_null(rdbl);
        id = registry_double_add(
                rdbl, "c-value",
                "{\"type\":\"record\",\"name\":\"C\",\"fields\":[]}");
        registry_double_require_bearer(rdbl, "t0k.en");

        reg = bearer_client(registry_double_url(rdbl), "t0k.en");
        cr_assert_eq(veil_registry_probe(reg, errstr, sizeof(errstr)), 0, "%s",
                     errstr);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     0, "%s", errstr);
        veil_registry_destroy(reg);

        reg = bearer_client(registry_double_url(rdbl), "wrong.token");
        cr_assert_eq(veil_registry_probe(reg, errstr, sizeof(errstr)),
                     VEIL_EAUTH);
        cr_assert(strstr(errstr, registry_double_url(rdbl)), "%s", errstr);
        cr_assert(strstr(errstr, "bearer"), "%s", errstr);
        cr_assert_null(strstr(errstr, "wrong.token"), "%s", errstr);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_EAUTH);
        veil_registry_destroy(reg);
        /* probe + lookup, then probe + lookup refused once each. */
        cr_assert_eq(registry_double_requests(rdbl, NULL), 4);

        /* Bearer and basic together is a configuration error. */
        {
                struct veil_registry_opts opts = {
                        .url          = (char *)registry_double_url(rdbl),
                        .basic_auth   = (char *)"u:p",
                        .bearer_token = (char *)"t0k.en",
                };

                cr_assert_null(
                        veil_registry_new(&opts, errstr, sizeof(errstr)));
                cr_assert(strstr(errstr, "keep one"), "%s", errstr);
                cr_assert_null(strstr(errstr, "t0k.en"), "%s", errstr);
        }
        registry_double_stop(rdbl);
}

Test(registry_auth, client_cert_needs_https)
{
        struct veil_registry_opts opts = {
                .url       = (char *)"http://127.0.0.1:1",
                .cert_file = (char *)"c.pem",
                .key_file  = (char *)"c.key",
        };

        cr_assert_null(veil_registry_new(&opts, errstr, sizeof(errstr)));
        cr_assert(strstr(errstr, "https://"), "%s", errstr);
        opts.url      = (char *)"https://127.0.0.1:1";
        opts.key_file = NULL;
        cr_assert_null(veil_registry_new(&opts, errstr, sizeof(errstr)));
        cr_assert(strstr(errstr, "go together"), "%s", errstr);
}

/* Down is not a refusal: the probe says VEIL_ENET, for the caller to wait. */
Test(registry_auth, probe_of_a_registry_that_is_down_is_not_a_refusal)
{
        struct veil_registry_opts opts = {
                .url        = (char *)"http://127.0.0.1:1",
                .timeout_ms = 1000,
                .retries    = 0,
        };
        struct veil_registry *reg =
                veil_registry_new(&opts, errstr, sizeof(errstr));

        cr_assert_not_null(reg, "%s", errstr);
        cr_assert_eq(veil_registry_probe(reg, errstr, sizeof(errstr)),
                     VEIL_ENET, "%s", errstr);
        veil_registry_destroy(reg);
}
