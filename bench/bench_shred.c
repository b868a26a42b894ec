/* bench_shred.c - crypto-shredding costs per record, never a test: the
 * purpose-keyed SIV encrypt of a 20-byte value (the baseline, same run)
 * against the per-subject path with a new subject every record (the
 * subject's token keys from the store's LRU, the purpose's cipher
 * re-keyed for them, then the same encrypt), and the LRU's bytes per
 * cached subject (one purpose uses per_subject). The end-to-end
 * shred_overhead_pct (real Kafka, bench/e2e.sh) is not measured here. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "keyring.h"
#include "subject_keys.h"
#include "transform.h"
#include "veil.h"

#define SUBJECTS 10000
#define ROUNDS 200000
/* resident index entries in the bounded store (the rest spilled) */
#define BOUND 1000

/* The key-topic records the first store wrote, read back into a second
 * store bounded at BOUND (positions: partition 0, offsets in order). */
struct readback {
        struct veil_subject_keys *sk;
        int64_t off;
};

static int readback_cb(void *arg, const unsigned char *ref,
                       const unsigned char *blob, size_t len)
{
        struct readback *r = arg;

        veil_subject_keys_apply_at(r->sk, 0, r->off++, ref,
                                   VEIL_SUBJECT_REF_LEN, blob, len);
        return 0;
}

static int no_fetch(void *arg, int32_t part, int64_t off,
                    const unsigned char *ref, unsigned char *blob, size_t cap,
                    size_t *len, char *errstr, size_t errstr_size)
{
        (void)arg, (void)part, (void)off, (void)ref, (void)blob, (void)cap;
        (void)len, (void)errstr, (void)errstr_size;
        return VEIL_ENET;
}

static double now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
        static unsigned char master[] =
                "bench-shred-master-key-0123456789abcdef";
        static const char value[] = "someone@example.com";
        struct veil_key ring[1]   = {{0}};
        struct veil_config config;
        struct veil_subject_keys *sk;
        struct veil_subject_keys_stats st;
        struct veil_subject_cipher c;
        struct veil_tx_keys keys;
        const unsigned char *tk;
        unsigned char ref[16];
        char out[256], subj[32], err[256];
        const char *kid;
        size_t n;
        double t0, plain, shred;
        int i;

        memset(&config, 0, sizeof(config));
        memset(&c, 0, sizeof(c));
        ring[0].id         = "k1";
        ring[0].key        = master;
        ring[0].len        = sizeof(master) - 1;
        config.keys.ring   = ring;
        config.keys.n_ring = 1;
        config.keys.key_id = "k1";
        config.keys.key    = master;
        if (veil_tx_keys_init(&keys, master, sizeof(master) - 1, "k1",
                              "marketing", false, err, sizeof(err)))
                return fprintf(stderr, "%s\n", err), 1;
        sk = veil_subject_keys_new(&config, SUBJECTS, err, sizeof(err));
        if (!sk || veil_subject_keys_slot(sk, "marketing") != 0)
                return fprintf(stderr, "%s\n", err), 1;
        for (i = 0; i < SUBJECTS; i++) { /* every subject known and cached */
                snprintf(subj, sizeof(subj), "customer-%08d", i);
                veil_subject_keys_get(sk, "customers", subj, strlen(subj), &tk,
                                      ref, &kid, err, sizeof(err));
        }
        {
                struct readback r = {NULL, 0};

                r.sk = veil_subject_keys_new(&config, 16, err, sizeof(err));
                if (!r.sk)
                        return fprintf(stderr, "%s\n", err), 1;
                veil_subject_keys_bound(r.sk, BOUND, no_fetch, NULL);
                veil_subject_keys_pending(sk, readback_cb, &r);
                veil_subject_keys_stats(r.sk, &st);
                printf("bench: subject_key_index_bounded_bytes_per_subject "
                       "%.1f B\n",
                       (double)st.index_bytes / (double)st.known);
                printf("bench: subject_key_index_spilled %zu of %zu\n",
                       st.spilled, st.known);
                veil_subject_keys_destroy(r.sk);
        }
        veil_subject_keys_commit(sk);

        t0 = now_ns();
        for (i = 0; i < ROUNDS; i++)
                veil_tx_encrypt(&keys, VEIL_ENCRYPT_SIV,
                                VEIL_ENCRYPT_OUT_STRING, value,
                                sizeof(value) - 1, out, sizeof(out), &n);
        plain = (now_ns() - t0) / ROUNDS;

        t0 = now_ns();
        for (i = 0; i < ROUNDS; i++) {
                snprintf(subj, sizeof(subj), "customer-%08d", i % SUBJECTS);
                veil_subject_keys_get(sk, "customers", subj, strlen(subj), &tk,
                                      ref, &kid, err, sizeof(err));
                veil_subject_cipher_key(&c, tk, ref, kid, err, sizeof(err));
                veil_subject_encrypt(&c, VEIL_ENCRYPT_SIV,
                                     VEIL_ENCRYPT_OUT_STRING, value,
                                     sizeof(value) - 1, out, sizeof(out), &n);
        }
        shred = (now_ns() - t0) / ROUNDS;
        veil_subject_keys_stats(sk, &st);

        printf("bench: encrypt_siv_ns %.0f ns\n", plain);
        printf("bench: shred_encrypt_siv_ns %.0f ns\n", shred);
        printf("bench: shred_encrypt_ratio %.2f x\n", shred / plain);
        printf("bench: subject_key_cache_bytes_per_subject %.1f B\n",
               (double)st.cache_bytes / (double)st.cached);
        printf("bench: subject_key_index_bytes_per_subject %.1f B\n",
               (double)st.index_bytes / (double)st.known);
        veil_subject_cipher_clear(&c);
        veil_subject_keys_destroy(sk);
        veil_tx_keys_destroy(&keys);
        return 0;
}
