/* fuzz_control.c - libFuzzer harness over the circuit breaker's control
 * records as a worker reads them from topics.control
 * (veil_breaker_decode: key "halt/PURPOSE", JSON value). Built by
 * scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_control        (FUZZ_SECONDS, default 20)
 *
 * Input: the first byte is the key's length (capped at the input), the
 * key, then the value (none when the input ends with the key), each
 * copied into a buffer of exactly its size (a read past it is an ASan
 * error). Checked: decode returns 0, VEIL_EINVAL or VEIL_ENOTFOUND; a
 * decoded state has NUL-terminated fields and encodes again to a record
 * that decodes to the same state. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "veil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_control: %s:%d: %s\n", __FILE__, \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static bool terminated(const char *s, size_t size)
{
        return memchr(s, '\0', size) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_breaker_state s, again;
        size_t klen, vlen, k2len, v2len;
        char *key, *value = NULL, *k2, *v2, err[256];
        int rc;

        if (!size)
                return 0;
        klen = data[0] < size - 1 ? data[0] : size - 1;
        vlen = size - 1 - klen;
        key  = malloc(klen ? klen : 1);
        memcpy(key, data + 1, klen);
        if (vlen) {
                value = malloc(vlen);
                memcpy(value, data + 1 + klen, vlen);
        }
        rc = veil_breaker_decode(key, klen, value, vlen, &s, err, sizeof(err));
        CHECK(rc == 0 || rc == VEIL_EINVAL || rc == VEIL_ENOTFOUND);
        if (rc) {
                CHECK(terminated(err, sizeof(err)) && err[0]);
        } else {
                CHECK(terminated(s.purpose, sizeof(s.purpose)) && s.purpose[0]);
                CHECK(terminated(s.reason, sizeof(s.reason)));
                CHECK(terminated(s.by, sizeof(s.by)));
                CHECK(terminated(s.source, sizeof(s.source)));
                veil_breaker_encode(&s, &k2, &k2len, &v2, &v2len);
                CHECK(veil_breaker_decode(k2, k2len, v2, v2len, &again, err,
                                          sizeof(err)) == 0);
                CHECK(!strcmp(again.purpose, s.purpose) &&
                      again.halted == s.halted &&
                      !strcmp(again.reason, s.reason) &&
                      !strcmp(again.by, s.by) &&
                      !strcmp(again.source, s.source) &&
                      again.at_ms == s.at_ms);
                free(k2);
                free(v2);
        }
        free(key);
        free(value);
        return 0;
}
