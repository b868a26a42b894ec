/* fuzz_erasure.c - libFuzzer harness over erasure requests as a worker
 * reads them from topics.erasure (veil_erasure_request_decode: JSON, the
 * sealed key or a clear one). Built by scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_erasure        (FUZZ_SECONDS, default 20)
 *
 * Input: the record value, copied into a buffer of exactly its size (a
 * read past it is an ASan error). Checked: decode fails with VEIL_EDATA or
 * VEIL_EAUTH, a message and nothing allocated, or yields a key
 * of 1..VEIL_RETENTION_MAX_KEY bytes and a valid request id; a decoded request
 * encodes again (sealed) and decodes to the same key. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "retention.h"
#include "util.h"
#include "veil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_erasure: %s:%d: %s\n", __FILE__, \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

/* The same master key and id as tests/fuzz/gen_seeds.c. */
static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-fuzzer";

static struct veil_erasure_keys ek;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char err[256];

        (void)argc;
        (void)argv;
        CHECK(veil_erasure_keys_init(&ek, master, sizeof(master), "k1", err,
                                     sizeof(err)) == 0);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_erasure_request req, again;
        unsigned char *value = size ? veil_malloc(size) : NULL;
        char err[512], *json = NULL;
        size_t json_len = 0;
        int rc;

        if (size)
                memcpy(value, data, size);
        err[0] = '\0';
        rc     = veil_erasure_request_decode(&ek, value, size, &req, err,
                                             sizeof(err));
        free(value);
        if (rc) {
                CHECK(rc == VEIL_EDATA || rc == VEIL_EAUTH);
                CHECK(err[0]);
                CHECK(req.key == NULL && req.key_len == 0);
                return 0;
        }
        CHECK(req.key && req.key_len >= 1 &&
              req.key_len <= VEIL_RETENTION_MAX_KEY);
        CHECK(req.requested_at_ms >= 0);
        CHECK(req.request_id[0]);
        rc = veil_erasure_request_encode(&ek, req.key, req.key_len,
                                         req.requested_at_ms, req.request_id,
                                         &json, &json_len, err, sizeof(err));
        CHECK(rc == 0 && json && json_len == strlen(json));
        rc = veil_erasure_request_decode(&ek, json, json_len, &again, err,
                                         sizeof(err));
        CHECK(rc == 0 && again.sealed);
        CHECK(again.key_len == req.key_len &&
              !memcmp(again.key, req.key, req.key_len));
        CHECK(again.requested_at_ms == req.requested_at_ms);
        CHECK(!strcmp(again.request_id, req.request_id));
        free(json);
        veil_erasure_request_clear(&again);
        veil_erasure_request_clear(&req);
        return 0;
}
