/* test_keyring.c - the keyring: ring and legacy forms, owner-only key files,
 * key commands (output, failure, timeout, stderr never seen), reload,
 * VEIL_HMAC_KEY leaving the environment, rotation (reveal and erasure
 * requests under a retired key), the instance lock, the registry's
 * plain-http rule and log lines cut on a UTF-8 boundary. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "keyring.h"
#include "ledger.h"
#include "log.h"
#include "registry.h"
#include "transform.h"
#include "util.h"
#include "veil.h"

#define KEY1 "keyring-test-key-one-0123456789abcdef"
#define KEY2 "keyring-test-key-two-0123456789abcdef"
#define UKEY1 ((const unsigned char *)KEY1)
#define UKEY2 ((const unsigned char *)KEY2)

static char dir[64];

static void setup(void)
{
        unsetenv("VEIL_HMAC_KEY");
        snprintf(dir, sizeof(dir), "/tmp/veil-test-keyring-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                cr_log_warn("could not remove %s", dir);
}

TestSuite(keyring, .init = setup, .fini = teardown, .timeout = 30);

/* Writes dir/name with `mode`; returns the path (static, 4 slots). */
static const char *put(const char *name, const char *text, mode_t mode)
{
        static char paths[4][256];
        static int next;
        char *p = paths[next++ % 4];
        FILE *fp;

        snprintf(p, 256, "%s/%s", dir, name);
        fp = fopen(p, "w");
        cr_assert_not_null(fp, "%s", p);
        fputs(text, fp);
        cr_assert_eq(fclose(fp), 0);
        cr_assert_eq(chmod(p, mode), 0);
        return p;
}

/* Writes dir/veil.yaml; the path stays valid until the next call. */
static const char *put_config(const char *text)
{
        static char path[256];

        snprintf(path, sizeof(path), "%s", put("veil.yaml", text, 0644));
        return path;
}

/* A config around `keys` (YAML lines under `keys:`). */
static const char *config_with(const char *keys)
{
        char text[4096];

        snprintf(text, sizeof(text),
                 "kafka: { bootstrap.servers: 127.0.0.1:9092 }\n"
                 "registry: { url: file://. }\n"
                 "keys:\n%s"
                 "classes: { email: { tier: confidential } }\n"
                 "purposes:\n"
                 "  support:\n"
                 "    license: { id: L1, valid_until: never }\n"
                 "    transforms: { email: encrypt }\n"
                 "routes:\n"
                 "  - source: customers\n"
                 "    purposes: { support: customers.support }\n",
                 keys);
        return put_config(text);
}

static struct veil_config *load(const char *path, char *err, size_t cap)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};

        err[0] = '\0';
        return veil_config_load(path, &opts, err, cap);
}

static struct veil_config *load_ok(const char *path)
{
        char err[1024];
        struct veil_config *config = load(path, err, sizeof(err));

        cr_assert_not_null(config, "%s", err);
        return config;
}

static const char *load_err(const char *path)
{
        static char err[1024];
        struct veil_config *config = load(path, err, sizeof(err));

        cr_assert_null(config, "%s loaded but should not", path);
        return err;
}

Test(keyring, ring_of_a_file_and_a_command_with_an_active_key)
{
        struct veil_config *config;
        const struct veil_key *k;

        put("k1.key", KEY1 "\n", 0600);
        put("k2.key", KEY2, 0600);
        config = load_ok(config_with("  active: k2\n"
                                     "  ring:\n"
                                     "    k1: { file: k1.key }\n"
                                     "    k2: { command: \"cat k2.key; echo "
                                     "noise >&2\" }\n"));
        cr_assert_eq(config->keys.n_ring, 2);
        cr_assert_str_eq(config->keys.key_id, "k2");
        /* The active key is keys.key, what every existing caller uses. */
        cr_assert_eq(config->keys.key_len, strlen(KEY2));
        cr_assert_eq(memcmp(config->keys.key, KEY2, strlen(KEY2)), 0);
        k = veil_keyring_find(config, "k1", 2);
        cr_assert_not_null(k);
        cr_assert_eq(k->len, strlen(KEY1));
        cr_assert_eq(memcmp(k->key, KEY1, k->len), 0);
        cr_assert_null(veil_keyring_find(config, "k3", 2));
        cr_assert_null(veil_keyring_find(config, "k", 1));
        veil_config_destroy(config);
}

Test(keyring, command_output_is_the_key_and_runs_in_the_config_folder)
{
        char keys[512];
        struct veil_config *config;

        snprintf(keys, sizeof(keys),
                 "  ring: { k1: { command: \"printf %%s '%s'\" } }\n", KEY1);
        config = load_ok(config_with(keys));
        cr_assert_str_eq(config->keys.key_id, "k1");
        cr_assert_eq(config->keys.key_len, strlen(KEY1));
        veil_config_destroy(config);
}

Test(keyring, legacy_form_is_a_ring_of_one)
{
        struct veil_config *config;
        const struct veil_key *k;

        put("k.key", KEY1 "\n", 0600);
        config =
                load_ok(config_with("  hmac_key_file: k.key\n  key_id: old\n"));
        cr_assert_eq(config->keys.n_ring, 1);
        k = veil_keyring_find(config, "old", 3);
        cr_assert_not_null(k);
        cr_assert_eq(k->key, config->keys.key);
        cr_assert_eq(k->len, strlen(KEY1));
        veil_config_destroy(config);
}

Test(keyring, key_files_readable_by_others_are_refused_naming_file_and_mode)
{
        static const mode_t modes[] = {0644, 0640, 0604, 0660, 0602};
        const char *cfg, *err, *key;
        char want[64];
        size_t i;

        cfg = config_with("  hmac_key_file: k.key\n");
        for (i = 0; i < VEIL_ARRAY_SIZE(modes); i++) {
                key = put("k.key", KEY1, modes[i]);
                err = load_err(cfg);
                snprintf(want, sizeof(want), "has mode %04o",
                         (unsigned)modes[i]);
                cr_assert(strstr(err, want), "%s", err);
                cr_assert(strstr(err, key), "%s", err);
                cr_assert(strstr(err, "chmod 600"), "%s", err);
                cr_assert_null(strstr(err, "keyring-test"), "%s", err);
        }
        /* The same ring key file. */
        cfg = config_with("  ring: { k1: { file: k.key } }\n");
        err = load_err(cfg);
        cr_assert(strstr(err, "keys.ring.k1: key file"), "%s", err);
        cr_assert(strstr(err, "has mode 0602"), "%s", err);
}

Test(keyring, insecure_permissions_only_when_the_config_says_so)
{
        struct veil_config *config;

        put("k.key", KEY1, 0644);
        config = load_ok(config_with("  hmac_key_file: k.key\n"
                                     "  allow_insecure_permissions: true\n"));
        cr_assert_eq(config->keys.key_len, strlen(KEY1));
        veil_config_destroy(config);
        put("k.key", KEY1, 0400);
        config = load_ok(config_with("  hmac_key_file: k.key\n"));
        veil_config_destroy(config);
}

Test(keyring, env_key_leaves_the_environment_and_survives_a_reload)
{
        struct veil_config *config;
        const char *cfg = config_with("  key_id: k1\n");

        cr_assert_eq(setenv("VEIL_HMAC_KEY", KEY2, 1), 0);
        config = load_ok(cfg);
        cr_assert_null(getenv("VEIL_HMAC_KEY"), "still in the environment");
        cr_assert_eq(config->keys.key_len, strlen(KEY2));
        veil_config_destroy(config);
        /* SIGHUP loads the config again: the key is still there. */
        config = load_ok(cfg);
        cr_assert_eq(config->keys.key_len, strlen(KEY2));
        cr_assert_eq(memcmp(config->keys.key, KEY2, strlen(KEY2)), 0);
        veil_config_destroy(config);
}

Test(keyring, failing_command_names_the_key_and_never_its_output)
{
        const char *err;

        err = load_err(config_with(
                "  ring: { k9: { command: \"echo secret-stderr-text >&2; "
                "echo secret-stdout-text; exit 3\" } }\n"));
        cr_assert(strstr(err, "keys.ring.k9: key 'k9': its command exited "
                              "with status 3"),
                  "%s", err);
        cr_assert_null(strstr(err, "secret"), "%s", err);
        err = load_err(config_with(
                "  ring: { k9: { command: \"echo too-short\" } }\n"));
        cr_assert(strstr(err, "key 'k9': its command printed 9 bytes, at "
                              "least 32 are required"),
                  "%s", err);
        cr_assert_null(strstr(err, "too-short"), "%s", err);
}

Test(keyring, slow_command_is_killed_at_the_timeout)
{
        const char *err;

        err = load_err(config_with("  command_timeout: 300ms\n"
                                   "  ring: { k1: { command: \"sleep 20\" } "
                                   "}\n"));
        cr_assert(strstr(err, "key 'k1': its command did not finish within "
                              "300 ms"),
                  "%s", err);
}

Test(keyring, reload_reruns_commands_and_keeps_the_old_keys_on_failure)
{
        struct veil_config *config;
        char keys[512], err[512];

        put("vault", KEY1, 0600);
        snprintf(keys, sizeof(keys),
                 "  ring: { k1: { command: \"cat %s/vault\" } }\n", dir);
        config = load_ok(config_with(keys));
        cr_assert_eq(memcmp(config->keys.key, KEY1, strlen(KEY1)), 0);
        put("vault", KEY2, 0600);
        cr_assert_eq(veil_keyring_reload(config, err, sizeof(err)), 0, "%s",
                     err);
        cr_assert_eq(memcmp(config->keys.key, KEY2, strlen(KEY2)), 0);
        cr_assert_eq(veil_keyring_find(config, "k1", 2)->key, config->keys.key);
        put("vault", "short", 0600);
        cr_assert_lt(veil_keyring_reload(config, err, sizeof(err)), 0);
        cr_assert(strstr(err, "keys.ring.k1"), "%s", err);
        cr_assert_eq(memcmp(config->keys.key, KEY2, strlen(KEY2)), 0);
        veil_config_destroy(config);
}

Test(keyring, key_clear_wipes_and_frees)
{
        struct veil_key k = {0};

        k.id  = veil_strdup("k1");
        k.key = veil_malloc(8);
        memcpy(k.key, "12345678", 8);
        k.len = 8;
        veil_key_clear(&k);
        cr_assert_null(k.key);
        cr_assert_null(k.id);
        cr_assert_eq(k.len, 0);
        veil_key_clear(&k);
}

/* ---- rotation ------------------------------------------------------------ */

static void make_token(const struct veil_key *key, const char *value,
                       enum veil_encrypt_mode mode, char *tok, size_t cap)
{
        struct veil_tx_keys keys;
        char err[256] = "";
        size_t n;

        cr_assert_eq(veil_tx_keys_init(&keys, key->key, key->len, key->id,
                                       "support", false, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_tx_encrypt(&keys, mode, VEIL_ENCRYPT_OUT_STRING,
                                     value, strlen(value), tok, cap - 1, &n),
                     0);
        tok[n] = '\0';
        veil_tx_keys_destroy(&keys);
}

Test(keyring, tokens_of_a_retired_key_still_reveal_after_rotation,
     .init = setup, .fini = teardown)
{
        struct veil_config *before, *after;
        const char *path_before, *path_after;
        char old_tok[256], new_tok[256], h1[128], h2[128];
        char *argv[] = {"reveal", "-c", NULL, old_tok, NULL};
        struct veil_tx_keys k1, k2;
        char err[256];
        size_t n1, n2;

        put("k1.key", KEY1, 0600);
        put("k2.key", KEY2, 0600);
        path_before = veil_strdup(config_with("  hmac_key_file: k1.key\n"
                                              "  key_id: k1\n"));
        before      = load_ok(path_before);
        make_token(veil_keyring_find(before, "k1", 2), "alice@example.com",
                   VEIL_ENCRYPT_GCM, old_tok, sizeof(old_tok));
        path_after = veil_strdup(config_with("  active: k2\n"
                                             "  ring:\n"
                                             "    k1: { file: k1.key }\n"
                                             "    k2: { file: k2.key }\n"));
        after      = load_ok(path_after);
        make_token(veil_keyring_find(after, "k2", 2), "bob@example.com",
                   VEIL_ENCRYPT_SIV, new_tok, sizeof(new_tok));
        cr_assert_eq(strncmp(old_tok, "k1:e:", 5), 0);
        cr_assert_eq(strncmp(new_tok, "k2:s:", 5), 0);

        argv[2] = (char *)path_after;
        cr_redirect_stdout();
        cr_redirect_stderr();
        cr_assert_eq(veil_cmd_reveal(4, argv), 0);
        argv[3] = new_tok;
        cr_assert_eq(veil_cmd_reveal(4, argv), 0);
        fflush(stdout);
        cr_assert_stdout_eq_str("alice@example.com\nbob@example.com\n");

        /* Hash tokens change with the key: joins across rotation break. */
        cr_assert_eq(veil_tx_keys_init(&k1, UKEY1, strlen(KEY1), "k1",
                                       "support", false, err, sizeof(err)),
                     0);
        cr_assert_eq(veil_tx_keys_init(&k2, UKEY2, strlen(KEY2), "k2",
                                       "support", false, err, sizeof(err)),
                     0);
        cr_assert_eq(veil_tx_hash(&k1, "v", 1, h1, sizeof(h1), &n1), 0);
        cr_assert_eq(veil_tx_hash(&k2, "v", 1, h2, sizeof(h2), &n2), 0);
        cr_assert(n1 != n2 || memcmp(h1 + 3, h2 + 3, n1 - 3));
        veil_tx_keys_destroy(&k1);
        veil_tx_keys_destroy(&k2);
        veil_config_destroy(before);
        veil_config_destroy(after);
}

Test(keyring, reveal_of_a_key_no_longer_in_the_ring_names_it)
{
        struct veil_config *config;
        struct veil_key gone = {.id  = "k0",
                                .key = (unsigned char *)KEY2,
                                .len = sizeof(KEY2) - 1};
        char tok[256], err[1024];
        char *argv[] = {"reveal", "-c", NULL, tok, NULL};
        const char *path;
        size_t n;

        put("k1.key", KEY1, 0600);
        path   = config_with("  ring: { k1: { file: k1.key } }\n");
        config = load_ok(path);
        make_token(&gone, "v", VEIL_ENCRYPT_SIV, tok, sizeof(tok));
        argv[2] = (char *)path;
        cr_redirect_stderr();
        cr_assert_eq(veil_cmd_reveal(4, argv), 1);
        fflush(stderr);
        n      = fread(err, 1, sizeof(err) - 1, cr_get_redirected_stderr());
        err[n] = '\0';
        cr_assert(strstr(err, "key id 'k0', which is not in the keyring"), "%s",
                  err);
        veil_config_destroy(config);
}

Test(keyring, erasure_requests_sealed_under_a_retired_key_still_open)
{
        struct veil_config *config;
        struct veil_erasure_keys old, now;
        struct veil_erasure_request req;
        char err[256] = "", *json = NULL;
        size_t n;

        put("k1.key", KEY1, 0600);
        put("k2.key", KEY2, 0600);
        config = load_ok(config_with("  active: k2\n"
                                     "  ring:\n"
                                     "    k1: { file: k1.key }\n"
                                     "    k2: { file: k2.key }\n"));
        cr_assert_eq(veil_erasure_keys_init(&old, (const unsigned char *)KEY1,
                                            strlen(KEY1), "k1", err,
                                            sizeof(err)),
                     0);
        cr_assert_eq(veil_erasure_request_encode(&old, "subject-7", 9, 5,
                                                 "req-1", &json, &n, err,
                                                 sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(
                veil_erasure_keys_init_config(&now, config, err, sizeof(err)),
                0, "%s", err);
        cr_assert_not(now.allow_plaintext);
        cr_assert_eq(veil_erasure_request_decode(&now, json, n, &req, err,
                                                 sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(req.key_len, 9);
        cr_assert_eq(memcmp(req.key, "subject-7", 9), 0);
        veil_erasure_request_clear(&req);
        free(json);
        veil_erasure_keys_destroy(&now);
        veil_erasure_keys_destroy(&old);
        veil_config_destroy(config);
}

Test(keyring, erasure_allow_plaintext_comes_from_the_config)
{
        struct veil_config *config;
        struct veil_erasure_keys ek;
        struct veil_erasure_request req;
        const char *json = "{\"key\":\"c-1\",\"requested_at\":1,"
                           "\"request_id\":\"r-1\"}";
        char err[256]    = "", text[2048];
        FILE *fp;
        size_t n;

        put("k1.key", KEY1, 0600);
        /* erasure: { allow_plaintext: true } appended to a config */
        fp = fopen(config_with("  hmac_key_file: k1.key\n"), "r");
        cr_assert_not_null(fp);
        n = fread(text, 1, sizeof(text) - 64, fp);
        fclose(fp);
        text[n] = '\0';
        strcat(text, "erasure: { allow_plaintext: true }\n");
        config = load_ok(put_config(text));
        cr_assert(config->erasure.allow_plaintext);
        cr_assert_eq(
                veil_erasure_keys_init_config(&ek, config, err, sizeof(err)), 0,
                "%s", err);
        cr_assert_eq(veil_erasure_request_decode(&ek, json, strlen(json), &req,
                                                 err, sizeof(err)),
                     0, "%s", err);
        veil_erasure_request_clear(&req);
        veil_erasure_keys_destroy(&ek);
        veil_config_destroy(config);
}

/* ---- valid_until ----------------------------------------------------------
 */

Test(keyring, licence_needs_valid_until_a_date_or_never)
{
        const char *path, *err;
        struct veil_config *config;
        struct veil_config_opts opts = {.skip_key = true};
        char e[512];

        path = put("v.yaml", "purposes:\n  p:\n    license: { id: L1 }\n",
                   0644);
        err  = load_err(path);
        cr_assert(strstr(err, "v.yaml:3:14: purposes.p.license: missing "
                              "required key 'valid_until'"),
                  "%s", err);
        path   = put("v.yaml",
                     "purposes:\n  p:\n    license: { id: L1, valid_until: "
                       "never }\n",
                     0644);
        config = veil_config_load(path, &opts, e, sizeof(e));
        cr_assert_not_null(config, "%s", e);
        cr_assert_eq(config->policy.purposes[0].valid_until, 0);
        veil_config_destroy(config);
}

/* ---- instance lock -------------------------------------------------------
 */

Test(keyring, a_second_worker_with_the_same_instance_is_refused)
{
        struct veil_config config = {0};
        char err[512];
        int a, b, c;

        cr_assert_eq(setenv("VEIL_LOCK_DIR", dir, 1), 0);
        config.group    = "g/1";
        config.instance = "host-a";
        a               = veil_instance_lock(&config, err, sizeof(err));
        cr_assert_geq(a, 0, "%s", err);
        b = veil_instance_lock(&config, err, sizeof(err));
        cr_assert_eq(b, -1);
        cr_assert(strstr(err, "another worker on this host already runs as "
                              "instance 'host-a' of group 'g/1'"),
                  "%s", err);
        cr_assert(strstr(err, "veil-g_1-host-a.lock"), "%s", err);
        /* Another instance is fine; the first one's exit frees its own. */
        config.instance = "host-b";
        c               = veil_instance_lock(&config, err, sizeof(err));
        cr_assert_geq(c, 0, "%s", err);
        close(a);
        config.instance = "host-a";
        b               = veil_instance_lock(&config, err, sizeof(err));
        cr_assert_geq(b, 0, "%s", err);
        close(b);
        close(c);
}

/* ---- registry over plain http --------------------------------------------
 */

Test(keyring, plain_http_only_to_loopback)
{
        static const struct {
                const char *url;
                bool insecure;
        } cases[] = {
                {"http://registry.example:8081", true},
                {"http://10.0.0.5:8081/", true},
                {"http://user:pw@registry.example/", true},
                {"http://127.0.0.1.evil.example/", true},
                {"http://localhost.evil.example:80", true},
                {"http://127.0.0.1:8081", false},
                {"http://127.1.2.3/", false},
                {"http://localhost:8081/sub", false},
                {"http://user:pw@localhost:8081", false},
                {"http://[::1]:8081", false},
                {"https://registry.example:8081", false},
                {"file:///schemas", false},
        };
        struct veil_registry_opts opts = {0};
        struct veil_registry *reg;
        char err[256];
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(cases); i++)
                cr_assert_eq(veil_registry_url_insecure(cases[i].url),
                             cases[i].insecure, "%s", cases[i].url);
        opts.url = "http://registry.example:8081";
        reg      = veil_registry_new(&opts, err, sizeof(err));
        cr_assert_null(reg);
        cr_assert(strstr(err, "registry.allow_insecure"), "%s", err);
        opts.allow_insecure = true;
        reg                 = veil_registry_new(&opts, err, sizeof(err));
        cr_assert_not_null(reg, "%s", err);
        veil_registry_destroy(reg);
}

/* ---- log lines ------------------------------------------------------------
 */

Test(keyring, log_lines_cut_inside_a_character_are_still_written)
{
        char msg[2048], line[4096];
        json_t *o;
        size_t i, n;

        /* 'é' is two bytes: 1000 of them cross the 1024-byte buffer, whose
         * 1023 bytes of text end inside the 512th. */
        for (i = 0; i < 1000; i++)
                memcpy(msg + 2 * i, "\xc3\xa9", 2);
        msg[2000] = '\0';
        cr_redirect_stderr();
        veil_log("error", "test", "%s", msg);
        veil_log("error", "test", "bad byte \xff here");
        fflush(stderr);
        n       = fread(line, 1, sizeof(line) - 1, cr_get_redirected_stderr());
        line[n] = '\0';
        cr_assert(strchr(line, '\n'), "no line written: %s", line);
        *strchr(line, '\n') = '\0';
        o                   = json_loads(line, 0, NULL);
        cr_assert_not_null(o, "%s", line);
        cr_assert_eq(strlen(json_string_value(json_object_get(o, "msg"))),
                     1022);
        json_decref(o);
        o = json_loads(line + strlen(line) + 1, 0, NULL);
        cr_assert_not_null(o);
        cr_assert_str_eq(json_string_value(json_object_get(o, "msg")),
                         "bad byte ? here");
        json_decref(o);
}

Test(keyring, utf8_fix_keeps_whole_characters)
{
        char a[] = "ab\xe2\x82", b[] = "ab\xe2\x82\xac", c[] = "\xf0\x9f";
        char d[] = "a\xc3";

        veil_log_utf8_fix(a, true);
        cr_assert_str_eq(a, "ab");
        veil_log_utf8_fix(b, true);
        cr_assert_str_eq(b, "ab\xe2\x82\xac");
        veil_log_utf8_fix(c, true);
        cr_assert_str_eq(c, "");
        veil_log_utf8_fix(d, false);
        cr_assert_str_eq(d, "a?");
}
