/* fuzz_config.c - libFuzzer harness over the config loader: any bytes as
 * the YAML file, loaded with veil_config_load. The loader either returns a
 * config (whose policy digested) or NULL with a message; never a crash, a
 * leak or an empty message. Built by scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_config        (FUZZ_SECONDS, default 20)
 *
 * The input is written to veil.yaml in a private temporary directory that
 * also holds dev-hmac.key (a copy of config/dev-hmac.key), so relative key
 * paths resolve. The input's length picks the options (bit 0: skip_key,
 * bit 1: skip_kafka_check), so every seed runs under some combination and
 * the fuzzer reaches the others by adding or removing a byte. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_config: %s:%d: %s\n", __FILE__,  \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static char dir[64];
static char path[128];
static char key_path[128];

static void cleanup(void)
{
        unlink(path);
        unlink(key_path);
        rmdir(dir);
}

static void write_file(const char *p, const void *data, size_t len)
{
        FILE *f = fopen(p, "wb");

        CHECK(f);
        CHECK(len == 0 || fwrite(data, 1, len, f) == len);
        CHECK(fclose(f) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        static const char fallback[] =
                "0123456789abcdef0123456789abcdef-fuzz\n";
        char err[256];
        size_t len = 0;
        char *key;

        (void)argc;
        (void)argv;
        /* The environment must not supply a key behind the file's back. */
        unsetenv("VEIL_HMAC_KEY");
        snprintf(dir, sizeof(dir), "%s/veil-fuzz-config-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/veil.yaml", dir);
        snprintf(key_path, sizeof(key_path), "%s/dev-hmac.key", dir);
        key = veil_file_read("config/dev-hmac.key", &len, err, sizeof(err));
        if (key) {
                write_file(key_path, key, len);
                free(key);
        } else {
                write_file(key_path, fallback, sizeof(fallback) - 1);
        }
        atexit(cleanup);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_config_opts opts = {0};
        struct veil_config *config;
        char err[1024];

        opts.skip_key         = size & 1;
        opts.skip_kafka_check = (size & 2) != 0;
        write_file(path, data, size);
        err[0] = '\0';
        config = veil_config_load(path, &opts, err, sizeof(err));
        if (!config) {
                CHECK(err[0] != '\0');
                return 0;
        }
        CHECK(config->group && config->instance);
        CHECK(opts.skip_key ||
              (config->keys.key && config->keys.key_len >= 32));
        veil_config_destroy(config);
        return 0;
}
