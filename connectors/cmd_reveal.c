/* cmd_reveal.c - `veil reveal -c FILE TOKEN`: decrypt an encrypt token for
 * an operator who holds the key. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "crypto.h"
#include "reader.h"
#include "subject_keys.h"
#include "transform.h"
#include "util.h"
#include "veil.h"

/* Tokens are short (a field value); this bounds what stdin may hand us. */
#define REVEAL_TOKEN_MAX (16u << 20)

static const struct veil_cmd_help help = {
        "reveal", "reveal -c FILE [-p PURPOSE] [--hex] TOKEN",
        "Decrypt a token written by the `encrypt` transform and print the "
        "original value.\nOnly for operators who hold the key: the token "
        "names its key id, and FILE's keyring\n(keys.ring, or "
        "keys.hmac_key_file / VEIL_HMAC_KEY) must hold that key.",
        "options:\n"
        "  -c, --config FILE    the pipeline whose keys made the token "
        "(required)\n"
        "  -p, --purpose NAME   the purpose whose topic holds the token; by "
        "default every\n"
        "                       purpose of FILE is tried (keys are derived "
        "per purpose)\n"
        "  --hex                TOKEN is the bytes form (`output: bytes`) "
        "written in hex\n"
        "  -h, --help           this help\n"
        "TOKEN is KEYID:s:… (deterministic) or KEYID:e:… / KEYID:g:… (random "
        "nonce);\nper-subject tokens KEYID:S:… / KEYID:G:… open with their "
        "subject's key, read from\ntopics.subject_keys: an erased subject "
        "exits 1 with \"subject erased\". "
        "'-' reads it\nfrom standard input.\n"
        "exit: 0 revealed, 1 the token does not open with these keys or is "
        "malformed,\n      2 usage or config error\n"};

/* Reads one token from stdin, without the final newline. */
static char *reveal_read_stdin(size_t *lenp)
{
        size_t cap = 256, len = 0, n;
        char *buf = veil_malloc(cap);

        while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
                len += n;
                if (len == cap) {
                        if (cap >= REVEAL_TOKEN_MAX) {
                                free(buf);
                                return NULL;
                        }
                        cap *= 2;
                        buf = veil_realloc(buf, cap);
                }
        }
        if (ferror(stdin)) {
                free(buf);
                return NULL;
        }
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        *lenp = len;
        return buf;
}

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Hex → bytes in place; -1 on an odd length or a non-hex character. */
static int reveal_unhex(char *s, size_t *lenp)
{
        size_t i, n = *lenp;
        int hi, lo;

        if (n % 2)
                return -1;
        for (i = 0; i < n / 2; i++) {
                hi = hex_digit(s[2 * i]);
                lo = hex_digit(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -1;
                s[i] = (char)(hi << 4 | lo);
        }
        *lenp = n / 2;
        return 0;
}

/* Tries one purpose's keys (NULL: the shared keys). Returns the
 * veil_tx_reveal code; on 0 the plaintext is in out. */
static int reveal_with(const struct veil_config *config,
                       const struct veil_key *key, const char *purpose,
                       const char *token, size_t len, unsigned char *out,
                       size_t *outlen, char *errstr, size_t errstr_size)
{
        struct veil_tx_keys keys;
        int rc;

        rc = veil_tx_keys_init(&keys, key->key, key->len, key->id, purpose,
                               config->keys.shared_across_purposes, errstr,
                               errstr_size);
        if (rc)
                return rc;
        rc = veil_tx_reveal(&keys, token, len, out, len, outlen, errstr,
                            errstr_size);
        veil_tx_keys_destroy(&keys);
        return rc;
}

/* What the key topic says of one ref: its last record. */
struct subject_find {
        const unsigned char *ref;
        bool live;
        unsigned char blob[VEIL_SUBJECT_WRAPPED_MAX];
        size_t blob_len;
};

static int subject_find_cb(void *opaque, const rd_kafka_message_t *rkm)
{
        struct subject_find *f = opaque;

        if (rkm->key_len != VEIL_SUBJECT_REF_LEN ||
            memcmp(rkm->key, f->ref, VEIL_SUBJECT_REF_LEN))
                return 0;
        f->live = rkm->payload && rkm->len <= sizeof(f->blob);
        if (f->live) {
                memcpy(f->blob, rkm->payload, rkm->len);
                f->blob_len = rkm->len;
        }
        return 0;
}

/* A per-subject token: finds the subject's wrapped key in the key topic
 * (read_committed, the whole topic: the token names the record key, not
 * its partition's offset), unwraps it and opens the token. An erased
 * subject (a tombstone, or no record left after compaction) prints
 * "subject erased" and nothing else. Returns the exit code. */
static int reveal_subject(const struct veil_config *config, const char *path,
                          const char *purpose, const char *token, size_t len,
                          unsigned char *plain, size_t *plen)
{
        struct veil_subject_token t;
        struct subject_find f;
        struct veil_reader_part *parts = NULL;
        unsigned char key[VEIL_SUBJECT_KEY_LEN], *buf = veil_malloc(len);
        char errstr[1024] = "";
        rd_kafka_t *rk    = NULL;
        size_t n          = 0, i;
        int rc, exit_code = VEIL_EXIT_GAPS;

        memset(&f, 0, sizeof(f));
        if (veil_subject_token_parse(token, len, buf, len, &t)) {
                fprintf(stderr, "veil reveal: a malformed per-subject token\n");
                goto out;
        }
        f.ref = t.ref;
        rk    = veil_reader_consumer(config, "reveal", NULL, errstr,
                                     sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil reveal: %s\n", errstr);
                exit_code = VEIL_EXIT_USAGE;
                goto out;
        }
        rc = veil_reader_ends(rk, config->topics.subject_keys, &parts, &n,
                              10000, errstr, sizeof(errstr));
        if (!rc)
                rc = veil_reader_run(rk, config->topics.subject_keys, parts, n,
                                     60000, subject_find_cb, &f, errstr,
                                     sizeof(errstr));
        if (rc && rc != VEIL_ENOTFOUND) {
                fprintf(stderr, "veil reveal: %s\n", errstr);
                goto out;
        }
        if (!f.live) {
                fprintf(stderr, "veil reveal: subject erased\n");
                goto out;
        }
        if (veil_subject_unwrap(config, t.ref, f.blob, f.blob_len, key, errstr,
                                sizeof(errstr))) {
                fprintf(stderr, "veil reveal: %s\n", errstr);
                goto out;
        }
        rc = VEIL_EDATA;
        if (purpose)
                rc = veil_subject_open(&t, key, purpose, plain, len, plen,
                                       errstr, sizeof(errstr));
        for (i = 0;
             !purpose && i < config->policy.n_purposes && rc == VEIL_EDATA; i++)
                rc = veil_subject_open(&t, key, config->policy.purposes[i].name,
                                       plain, len, plen, errstr,
                                       sizeof(errstr));
        veil_cleanse(key, sizeof(key));
        if (rc) {
                if (!purpose)
                        snprintf(errstr, sizeof(errstr),
                                 "the token does not open with its subject's "
                                 "key for any purpose of %s",
                                 path);
                fprintf(stderr, "veil reveal: %s\n", errstr);
                goto out;
        }
        exit_code = VEIL_EXIT_OK;
out:
        veil_cleanse(&f, sizeof(f));
        free(parts);
        if (rk)
                rd_kafka_destroy(rk);
        free(buf);
        return exit_code;
}

/* The closest purpose name, for "did you mean". */
static const char *reveal_suggest(const struct veil_policy *policy,
                                  const char *name)
{
        const char *best = NULL;
        unsigned d, best_d = 3;
        size_t i;

        for (i = 0; i < policy->n_purposes; i++) {
                d = veil_edit_distance(name, policy->purposes[i].name, 2);
                if (d < best_d) {
                        best_d = d;
                        best   = policy->purposes[i].name;
                }
        }
        return best;
}

int veil_cmd_reveal(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"purpose", required_argument, NULL, 'p'},
                {"hex", no_argument, NULL, 'x'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts opts = {.skip_kafka_check = true};
        const char *path = NULL, *purpose = NULL, *arg, *sug, *kid = NULL;
        const struct veil_key *key;
        size_t kid_len             = 0;
        struct veil_config *config = NULL;
        unsigned char *plain       = NULL;
        char *token = NULL, errstr[1024] = "";
        size_t len = 0, plen = 0, i;
        int c, hex = 0, rc, exit_code = VEIL_EXIT_GAPS;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:p:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 'p':
                        purpose = optarg;
                        break;
                case 'x':
                        hex = 1;
                        break;
                case 'h':
                        veil_cmd_print_help(&help);
                        return VEIL_EXIT_OK;
                default:
                        return veil_cmd_usage_error(&help,
                                                    "unknown or incomplete "
                                                    "option '%s'",
                                                    argv[optind - 1]);
                }
        }
        if (!path)
                return veil_cmd_usage_error(&help, "-c FILE is required");
        if (optind >= argc)
                return veil_cmd_usage_error(&help, "a TOKEN is required");
        if (argc - optind > 1)
                return veil_cmd_usage_error(&help, "unexpected argument '%s'",
                                            argv[optind + 1]);
        arg = argv[optind];

        if (!strcmp(arg, "-")) {
                token = reveal_read_stdin(&len);
                if (!token) {
                        fprintf(stderr, "veil reveal: cannot read the token "
                                        "from standard input\n");
                        return VEIL_EXIT_USAGE;
                }
        } else {
                len   = strlen(arg);
                token = veil_strndup(arg, len);
        }
        if (hex && reveal_unhex(token, &len)) {
                fprintf(stderr, "veil reveal: --hex: TOKEN is not an even "
                                "number of hex digits\n");
                exit_code = VEIL_EXIT_USAGE;
                goto out;
        }
        if (!len) {
                exit_code = veil_cmd_usage_error(&help, "the TOKEN is empty");
                goto out;
        }

        config = veil_cmd_load_config(&help, path, &opts);
        if (!config) {
                exit_code = VEIL_EXIT_USAGE;
                goto out;
        }
        if (purpose && !veil_policy_purpose(&config->policy, purpose)) {
                sug = reveal_suggest(&config->policy, purpose);
                fprintf(stderr, "veil reveal: %s has no purpose '%s'%s%s%s\n",
                        path, purpose, sug ? " (did you mean '" : "",
                        sug ? sug : "", sug ? "'?)" : "");
                exit_code = VEIL_EXIT_USAGE;
                goto out;
        }

        {
                struct veil_subject_token t;
                unsigned char *tmp = veil_malloc(len);
                int kind = veil_subject_token_parse(token, len, tmp, len, &t);

                free(tmp);
                if (kind != VEIL_ENOTFOUND) {
                        plain     = veil_malloc(len);
                        exit_code = reveal_subject(config, path, purpose, token,
                                                   len, plain, &plen);
                        if (exit_code == VEIL_EXIT_OK &&
                            (fwrite(plain, 1, plen, stdout) != plen ||
                             fputc('\n', stdout) == EOF || fflush(stdout))) {
                                fprintf(stderr, "veil reveal: cannot write "
                                                "to standard output\n");
                                exit_code = VEIL_EXIT_GAPS;
                        }
                        goto out;
                }
        }
        /* The token names its key: any key of the ring opens what it
         * made, so rotating never strands old tokens. */
        if (veil_tx_token_key_id(token, len, &kid, &kid_len)) {
                fprintf(stderr, "veil reveal: not a Veil encrypt token "
                                "(expected KEYID:s:…, KEYID:e:… or "
                                "KEYID:g:…)\n");
                goto out;
        }
        key = veil_keyring_find(config, kid, kid_len);
        if (!key || !key->key) {
                fprintf(stderr,
                        "veil reveal: the token was made with key id "
                        "'%.*s', which is not in the keyring of %s (keys: "
                        "",
                        (int)kid_len, kid, path);
                for (i = 0; i < config->keys.n_ring; i++)
                        fprintf(stderr, "%s'%s'", i ? ", " : "",
                                config->keys.ring[i].id);
                fprintf(stderr, ")\n");
                goto out;
        }

        /* A plaintext is never longer than its token. */
        plain = veil_malloc(len);
        if (config->keys.shared_across_purposes || purpose) {
                rc = reveal_with(config, key, purpose, token, len, plain, &plen,
                                 errstr, sizeof(errstr));
        } else {
                /* Keys differ per purpose and the token does not say which:
                 * authenticated decryption makes trying each one safe. */
                rc = VEIL_EDATA;
                for (i = 0; i < config->policy.n_purposes && rc == VEIL_EDATA;
                     i++)
                        rc = reveal_with(config, key,
                                         config->policy.purposes[i].name, token,
                                         len, plain, &plen, errstr,
                                         sizeof(errstr));
                if (rc == VEIL_EDATA)
                        snprintf(errstr, sizeof(errstr),
                                 "the token does not authenticate with the "
                                 "key of any of the %zu purposes in %s "
                                 "(tampered, or made with another key under "
                                 "id '%s')",
                                 config->policy.n_purposes, path, key->id);
        }
        if (rc) {
                /* veil_tx_reveal's messages start with "reveal: ". */
                fprintf(stderr, "veil %s%s\n",
                        strncmp(errstr, "reveal: ", 8) ? "reveal: " : "",
                        errstr);
                goto out;
        }
        if (fwrite(plain, 1, plen, stdout) != plen ||
            fputc('\n', stdout) == EOF || fflush(stdout)) {
                fprintf(stderr, "veil reveal: cannot write to standard "
                                "output\n");
                goto out;
        }
        exit_code = VEIL_EXIT_OK;
out:
        if (plain)
                veil_cleanse(plain, len);
        free(plain);
        free(token);
        veil_config_destroy(config);
        return exit_code;
}
