/* fuzz_token.c - libFuzzer harness over encrypt tokens as `veil reveal`
 * reads them (veil_tx_reveal, both the string and the bytes form). Built by
 * scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_token        (FUZZ_SECONDS, default 20)
 *
 * Input: byte 0 picks the keys (bits 0-1: purpose analytics, marketing, or
 * the shared keys) and the mode (bit 7 set: the rest is a plaintext that is
 * encrypted in all four forms and revealed again; clear: the rest is a
 * token). As in `veil reveal`, the output buffer is exactly as long as the
 * token (a plaintext is never longer than its token), and the token sits in
 * a buffer of exactly its size, so a read or write past either is an ASan
 * error. Checked: reveal fails with a known code and a message, or returns
 * at most len bytes; every token veil_tx_encrypt makes reveals to its
 * plaintext, under its own keys only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"
#include "util.h"
#include "veil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_token: %s:%d: %s\n", __FILE__,   \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

/* The same master key and ids as tests/fuzz/gen_seeds.c, so the seed
 * tokens open. */
static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-fuzzer";

static struct veil_tx_keys keys[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char err[256];

        (void)argc;
        (void)argv;
        CHECK(veil_tx_keys_init(&keys[0], master, sizeof(master), "k1",
                                "analytics", false, err, sizeof(err)) == 0);
        CHECK(veil_tx_keys_init(&keys[1], master, sizeof(master), "k1",
                                "marketing", false, err, sizeof(err)) == 0);
        CHECK(veil_tx_keys_init(&keys[2], master, sizeof(master), "key.2-x",
                                NULL, true, err, sizeof(err)) == 0);
        return 0;
}

static void reveal_one(struct veil_tx_keys *k, const uint8_t *tok, size_t len)
{
        unsigned char *token = veil_malloc(len ? len : 1);
        unsigned char *out   = veil_malloc(len ? len : 1);
        size_t outlen        = SIZE_MAX;
        char err[512];
        int rc;

        memcpy(token, tok, len);
        err[0] = '\0';
        rc = veil_tx_reveal(k, token, len, out, len, &outlen, err, sizeof(err));
        if (rc) {
                CHECK(rc == VEIL_EINVAL || rc == VEIL_EAUTH ||
                      rc == VEIL_EDATA);
                CHECK(err[0]);
        } else {
                CHECK(outlen <= len);
        }
        free(token);
        free(out);
}

static void roundtrip(struct veil_tx_keys *k, struct veil_tx_keys *other,
                      const uint8_t *plain, size_t len)
{
        static const enum veil_encrypt_mode modes[]  = {VEIL_ENCRYPT_SIV,
                                                        VEIL_ENCRYPT_GCM};
        static const enum veil_encrypt_output outs[] = {VEIL_ENCRYPT_OUT_STRING,
                                                        VEIL_ENCRYPT_OUT_BYTES};
        size_t m, o, tlen, need, outlen;
        unsigned char *tok, *out;
        char err[512];
        int rc;

        for (m = 0; m < 2; m++)
                for (o = 0; o < 2; o++) {
                        need = veil_tx_encrypt_len(k, modes[m], outs[o], len);
                        CHECK(need <= VEIL_TX_ENCRYPT_MAX(len));
                        tok = veil_malloc(need);
                        rc  = veil_tx_encrypt(k, modes[m], outs[o], plain, len,
                                              tok, need, &tlen);
                        CHECK(rc == 0 && tlen == need);
                        out = veil_malloc(tlen);
                        rc  = veil_tx_reveal(k, tok, tlen, out, tlen, &outlen,
                                             err, sizeof(err));
                        CHECK(rc == 0 && outlen == len);
                        CHECK(len == 0 || !memcmp(out, plain, len));
                        /* Another purpose's keys (same id) must not open
                         * it; another id is refused by name. */
                        rc = veil_tx_reveal(other, tok, tlen, out, tlen,
                                            &outlen, err, sizeof(err));
                        CHECK(rc == VEIL_EDATA || rc == VEIL_EAUTH);
                        free(out);
                        free(tok);
                }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t which;

        if (size < 1)
                return 0;
        which = (data[0] & 3) % 3;
        if (data[0] & 0x80) {
                /* Bound the plaintext: encrypt refuses over
                 * VEIL_AEAD_MAX_LEN, and big inputs only slow the fuzzer. */
                if (size - 1 > 4096)
                        return 0;
                roundtrip(&keys[which], &keys[(which + 1) % 3], data + 1,
                          size - 1);
        } else {
                reveal_one(&keys[which], data + 1, size - 1);
        }
        return 0;
}
