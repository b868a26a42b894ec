/* bench_hmac.c - keyed-once HMAC-SHA256 against OpenSSL's one-shot HMAC()
 * on a 20-byte value, plus the transforms built on it (never a test).
 *
 * Build and run (after `make`):
 *   cc -O2 -Icommon bench/bench_hmac.c build/libveil.a \
 *      $(pkg-config --libs libcrypto) -lpthread -o build/bench_hmac
 *   build/bench_hmac
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "transform.h"

/* Each measurement runs for about this long after a warm-up. */
#define BENCH_NS 300000000.0

static double now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The result of each call feeds the next input, so the compiler cannot
 * drop or overlap iterations. */
static unsigned char value[20] = "customer-0000000001";
static volatile unsigned char sink;

typedef void (*bench_fn)(void *arg);

static double bench(bench_fn fn, void *arg)
{
        double t0, t;
        uint64_t i, n = 1000;

        for (i = 0; i < n; i++) /* warm up */
                fn(arg);
        for (;;) {
                t0 = now_ns();
                for (i = 0; i < n; i++)
                        fn(arg);
                t = now_ns() - t0;
                if (t >= BENCH_NS)
                        return t / (double)n;
                n *= t > 1e6 ? (uint64_t)(BENCH_NS / t) + 1 : 10;
        }
}

static void run_keyed(void *arg)
{
        unsigned char out[VEIL_SHA256_LEN];

        veil_hmac_sha256(arg, value, sizeof(value), out);
        value[0] ^= out[0];
}

static const unsigned char bench_key[32] = "bench-key-0123456789abcdefghijk";

static void run_oneshot(void *arg)
{
        unsigned char out[EVP_MAX_MD_SIZE];
        unsigned len;

        (void)arg;
        if (!HMAC(EVP_sha256(), bench_key, sizeof(bench_key), value,
                  sizeof(value), out, &len))
                return;
        value[0] ^= out[0];
}

static void run_tx_hash(void *arg)
{
        char out[VEIL_TX_HASH_TOKEN_MAX];
        size_t n;

        if (veil_tx_hash(arg, value, sizeof(value), out, sizeof(out), &n) == 0)
                value[0] ^= (unsigned char)out[n - 1];
}

static void run_siv(void *arg)
{
        unsigned char out[VEIL_TX_ENCRYPT_MAX(sizeof(value))];
        size_t n;

        if (veil_tx_encrypt(arg, VEIL_ENCRYPT_SIV, VEIL_ENCRYPT_OUT_STRING,
                            value, sizeof(value), out, sizeof(out), &n) == 0)
                sink ^= out[n - 1];
}

static void run_gcm(void *arg)
{
        unsigned char out[VEIL_TX_ENCRYPT_MAX(sizeof(value))];
        size_t n;

        if (veil_tx_encrypt(arg, VEIL_ENCRYPT_GCM, VEIL_ENCRYPT_OUT_STRING,
                            value, sizeof(value), out, sizeof(out), &n) == 0)
                sink ^= out[n - 1];
}

int main(void)
{
        static const unsigned char master[32] =
                "bench-master-key-0123456789abcd";
        struct veil_hmac best, portable;
        struct veil_tx_keys keys;
        double keyed, keyed_portable, oneshot, tx, siv, gcm;
        char err[256];

        veil_hmac_init(&best, bench_key, sizeof(bench_key));
        veil_hmac_init_impl(&portable, bench_key, sizeof(bench_key),
                            VEIL_SHA256_PORTABLE);
        if (veil_tx_keys_init(&keys, master, sizeof(master), "k1", "bench",
                              false, err, sizeof(err))) {
                fprintf(stderr, "bench_hmac: %s\n", err);
                return 1;
        }

        keyed          = bench(run_keyed, &best);
        keyed_portable = bench(run_keyed, &portable);
        oneshot        = bench(run_oneshot, NULL);
        tx             = bench(run_tx_hash, &keys);
        siv            = bench(run_siv, &keys);
        gcm            = bench(run_gcm, &keys);

        printf("bench: sha256_impl %s\n",
               veil_sha256_impl_name(VEIL_SHA256_AUTO));
        printf("bench: hmac_keyed_ns %.0f ns\n", keyed);
        printf("bench: hmac_keyed_portable_ns %.0f ns\n", keyed_portable);
        printf("bench: hmac_oneshot_ns %.0f ns\n", oneshot);
        printf("bench: hmac_ratio %.1f (one-shot / keyed-once)\n",
               oneshot / keyed);
        printf("bench: tx_hash_token_ns %.0f ns\n", tx);
        printf("bench: tx_encrypt_siv_ns %.0f ns\n", siv);
        printf("bench: tx_encrypt_gcm_ns %.0f ns\n", gcm);
        veil_tx_keys_destroy(&keys);
        veil_hmac_cleanse(&best);
        veil_hmac_cleanse(&portable);
        return 0;
}
