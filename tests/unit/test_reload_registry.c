/* test_reload_registry.c - what decides whether a SIGHUP rebuilds the
 * registry client (veil_pipe_registry_digest), and the prefix that keeps
 * registry errors from naming the registry twice. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipe.h"
#include "registry.h"

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
}

static bool same(const struct veil_registry_opts *a,
                 const struct veil_registry_opts *b)
{
        unsigned char da[VEIL_PIPE_REG_DIGEST_LEN],
                db[VEIL_PIPE_REG_DIGEST_LEN];

        veil_pipe_registry_digest(a, da);
        veil_pipe_registry_digest(b, db);
        return !memcmp(da, db, sizeof(da));
}

Test(reload_registry, equal_settings_are_the_same_client)
{
        struct veil_registry_opts a = {.url     = "http://127.0.0.1:1",
                                       .retries = 3};
        struct veil_registry_opts b = a;

        b.url = strdup("http://127.0.0.1:1");
        cr_assert(same(&a, &b));
        free(b.url);
}

Test(reload_registry, each_setting_is_a_change)
{
        struct veil_registry_opts a = {
                .url = "https://r.example", .retries = 3, .timeout_ms = 5000};
        struct veil_registry_opts b;

        b     = a;
        b.url = "https://r2.example";
        cr_assert_not(same(&a, &b));
        b              = a;
        b.bearer_token = "t1";
        cr_assert_not(same(&a, &b));
        b            = a;
        b.basic_auth = "u:p";
        cr_assert_not(same(&a, &b));
        /* absent and empty differ */
        b            = a;
        a.basic_auth = "";
        cr_assert_not(same(&a, &b));
        a.basic_auth = NULL;
        b            = a;
        b.retries    = 0;
        cr_assert_not(same(&a, &b));
        b            = a;
        b.timeout_ms = 1000;
        cr_assert_not(same(&a, &b));
        b                = a;
        b.allow_insecure = true;
        cr_assert_not(same(&a, &b));
        /* a value cannot slide into the next setting */
        a.url        = "https://r.example";
        a.basic_auth = "x";
        b            = a;
        b.url        = "https://r.examplex";
        b.basic_auth = "";
        cr_assert_not(same(&a, &b));
}

Test(reload_registry, a_rotated_file_under_the_same_name_is_a_change)
{
        char dir[]                  = "/tmp/veil-reload-XXXXXX", ca[256];
        struct veil_registry_opts a = {.url = "https://r.example"};
        unsigned char d1[VEIL_PIPE_REG_DIGEST_LEN],
                d2[VEIL_PIPE_REG_DIGEST_LEN];

        cr_assert_not_null(mkdtemp(dir));
        snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
        write_file(ca, "one\n");
        a.ca_file = ca;
        veil_pipe_registry_digest(&a, d1);
        veil_pipe_registry_digest(&a, d2);
        cr_assert(!memcmp(d1, d2, sizeof(d1)), "same file, same digest");
        write_file(ca, "two\n");
        veil_pipe_registry_digest(&a, d2);
        cr_assert(memcmp(d1, d2, sizeof(d1)), "new contents, new digest");
        /* gone: a change too (the new client's build then says why) */
        unlink(ca);
        veil_pipe_registry_digest(&a, d1);
        cr_assert(memcmp(d1, d2, sizeof(d1)));
        /* cert and key files count the same way */
        write_file(ca, "two\n");
        a.ca_file   = NULL;
        a.cert_file = ca;
        veil_pipe_registry_digest(&a, d1);
        write_file(ca, "three\n");
        veil_pipe_registry_digest(&a, d2);
        cr_assert(memcmp(d1, d2, sizeof(d1)));
        a.cert_file = NULL;
        a.key_file  = ca;
        veil_pipe_registry_digest(&a, d1);
        write_file(ca, "four\n");
        veil_pipe_registry_digest(&a, d2);
        cr_assert(memcmp(d1, d2, sizeof(d1)));
        unlink(ca);
        rmdir(dir);
}

Test(reload_registry, errors_name_the_registry_once)
{
        cr_assert_str_eq(veil_registry_err_prefix("registry GET http://x/: "
                                                  "HTTP 500"),
                         "");
        cr_assert_str_eq(veil_registry_err_prefix("registry.url: missing"), "");
        cr_assert_str_eq(veil_registry_err_prefix("/reg/x.avsc:1:2: bad"),
                         "registry: ");
        cr_assert_str_eq(veil_registry_err_prefix(""), "registry: ");
}
