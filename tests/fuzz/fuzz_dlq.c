/* fuzz_dlq.c - libFuzzer harness over the dead letter codec's reader
 * (`veil dlq replay` opens letters from a topic others can write): any
 * headers, key and value in, an error code or a letter out, never a crash;
 * a letter that opens was sealed by this key over these headers.
 *
 * Input layout: a byte n of headers, then for each a byte naming one of
 * the known header names (mod their count) and a byte of length with that
 * many bytes of value; then a byte k: the key is the next k bytes, the rest
 * the value. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dlq.h"
#include "veil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct veil_config *config;
static struct veil_dlq *dlq;

static const char *const names[] = {
        VEIL_H_ERROR,  VEIL_H_ERROR_DETAIL, VEIL_H_SOURCE,
        VEIL_H_POLICY, VEIL_H_DLQ_PAYLOAD,  VEIL_H_DLQ_CIPHER,
        VEIL_H_KEY_ID, VEIL_H_REPLAY_OF,    VEIL_H_REPLAY_DONE,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        char path[]                  = "/tmp/veil-fuzz-dlq-XXXXXX", err[1024];
        int fd                       = mkstemp(path);
        FILE *f;

        (void)argc;
        (void)argv;
        if (fd < 0 || !(f = fdopen(fd, "w")))
                abort();
        fprintf(f, "kafka: { bootstrap.servers: 127.0.0.1:1 }\n"
                   "registry: { url: file:///tmp }\n"
                   "keys: { key_id: k1 }\n"
                   "classes: { id: { tier: internal } }\n"
                   "purposes:\n  a:\n    license: { id: L, valid_until: "
                   "2099-12-31 }\n    retention: 1d\n"
                   "    transforms: { id: keep }\n"
                   "routes:\n  - source: s\n    key_class: id\n"
                   "    purposes: { a: s.a }\n");
        fclose(f);
        setenv("VEIL_HMAC_KEY", "fuzz-dlq-master-key-0123456789abcdefghij", 1);
        config = veil_config_load(path, &opts, err, sizeof(err));
        unlink(path);
        if (!config || !(dlq = veil_dlq_new(config, err, sizeof(err)))) {
                fprintf(stderr, "fuzz_dlq: %s\n", err);
                abort();
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        struct veil_dlq_letter l;
        size_t i = 0, n, k, len;
        char err[512];
        int rc;

        n = size ? data[i++] % 12 : 0;
        while (n-- > 0 && i + 2 <= size) {
                const char *name =
                        names[data[i] % (sizeof(names) / sizeof(names[0]))];

                len = data[i + 1];
                i += 2;
                if (len > size - i)
                        len = size - i;
                rd_kafka_header_add(hdrs, name, -1, data + i, (ssize_t)len);
                i += len;
        }
        k = i < size ? data[i++] : 0;
        if (k > size - i)
                k = size - i;
        rc = veil_dlq_open(dlq, hdrs, k ? data + i : NULL, k,
                           size - i - k ? data + i + k : NULL, size - i - k, &l,
                           err, sizeof(err));
        /* a sealed letter opens only under the key id this config holds */
        if (rc == 0 && l.encrypted && strcmp(l.key_id, "k1"))
                abort();
        rd_kafka_headers_destroy(hdrs);
        return 0;
}
