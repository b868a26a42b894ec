/* crypto.c - keyed-once HMAC-SHA256 (own SHA-256 compression, portable and
 * SHA-NI), HKDF, AES-SIV/GCM and base64url over OpenSSL 3 EVP. */
#define _POSIX_C_SOURCE 200809L
#include "crypto.h"
#include "veil.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
        (defined(__GNUC__) || defined(__clang__))
#define VEIL_HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t sha256_k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
        0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
        0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 §5.3.3. */
static const uint32_t sha256_h0[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

typedef void (*sha256_blocks_fn)(uint32_t state[8], const unsigned char *p,
                                 size_t nblocks);

static inline uint32_t ror32(uint32_t x, unsigned n)
{
        return (x >> n) | (x << (32 - n));
}

static inline uint32_t load_be32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void store_be32(unsigned char *p, uint32_t v)
{
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
}

static inline void store_be64(unsigned char *p, uint64_t v)
{
        store_be32(p, (uint32_t)(v >> 32));
        store_be32(p + 4, (uint32_t)v);
}

static void sha256_blocks_portable(uint32_t state[8], const unsigned char *p,
                                   size_t nblocks)
{
        uint32_t w[64];
        uint32_t a, b, c, d, e, f, g, h, t1, t2;
        int i;

        while (nblocks--) {
                for (i = 0; i < 16; i++)
                        w[i] = load_be32(p + 4 * i);
                for (i = 16; i < 64; i++) {
                        uint32_t s0 = ror32(w[i - 15], 7) ^
                                      ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
                        uint32_t s1 = ror32(w[i - 2], 17) ^
                                      ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
                        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
                }
                a = state[0];
                b = state[1];
                c = state[2];
                d = state[3];
                e = state[4];
                f = state[5];
                g = state[6];
                h = state[7];
                for (i = 0; i < 64; i++) {
                        t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) +
                             ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
                        t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) +
                             ((a & b) ^ (a & c) ^ (b & c));
                        h = g;
                        g = f;
                        f = e;
                        e = d + t1;
                        d = c;
                        c = b;
                        b = a;
                        a = t1 + t2;
                }
                state[0] += a;
                state[1] += b;
                state[2] += c;
                state[3] += d;
                state[4] += e;
                state[5] += f;
                state[6] += g;
                state[7] += h;
                p += VEIL_SHA256_BLOCK_LEN;
        }
}

#ifdef VEIL_HAVE_SHANI
/* SHA256RNDS2 keeps the eight working variables in two registers ordered
 * ABEF and CDGH (A in the top lane), and does two rounds per instruction
 * with the low two lanes of a W+K vector. SHA256MSG1/MSG2 compute the
 * message schedule four words at a time. */

/* Four rounds from one W+K vector: RNDS2 does two (low lanes), and the
 * old ABEF becomes the CDGH of the next two. */
#define SHANI_ROUNDS(wk)                                                       \
        do {                                                                   \
                st1 = _mm_sha256rnds2_epu32(st1, st0, (wk));                   \
                st0 = _mm_sha256rnds2_epu32(st0, st1,                          \
                                            _mm_shuffle_epi32((wk), 0x0e));    \
        } while (0)

/* w16 holds W[t-16..t-13] and becomes W[t..t+3]; w12, w8, w4 hold the
 * later groups. W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]. */
#define SHANI_SCHEDULE(w16, w12, w8, w4)                                       \
        (w16) = _mm_sha256msg2_epu32(                                          \
                _mm_add_epi32(_mm_sha256msg1_epu32((w16), (w12)),              \
                              _mm_alignr_epi8((w4), (w8), 4)),                 \
                (w4))

#define SHANI_GROUP(j, w)                                                      \
        SHANI_ROUNDS(_mm_add_epi32(                                            \
                (w), _mm_loadu_si128((const __m128i *)&sha256_k[4 * (j)])))

/* state[] (A..H in lanes 0..7) into the ABEF / CDGH pair, and back. */
__attribute__((target("sha,sse4.1,ssse3"))) static inline void
shani_load(const uint32_t state[8], __m128i *abef, __m128i *cdgh)
{
        __m128i tmp, hgfe;

        tmp   = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]),
                                  0xb1); /* B A D C */
        hgfe  = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]),
                                  0x1b);          /* H G F E */
        *abef = _mm_alignr_epi8(tmp, hgfe, 8);    /* F E B A */
        *cdgh = _mm_blend_epi16(hgfe, tmp, 0xf0); /* H G D C */
}

__attribute__((target("sha,sse4.1,ssse3"))) static inline void
shani_store(uint32_t state[8], __m128i abef, __m128i cdgh)
{
        __m128i tmp = _mm_shuffle_epi32(abef, 0x1b); /* A B E F */

        cdgh = _mm_shuffle_epi32(cdgh, 0xb1); /* G H C D */
        _mm_storeu_si128((__m128i *)&state[0],
                         _mm_blend_epi16(tmp, cdgh, 0xf0)); /* A B C D */
        _mm_storeu_si128((__m128i *)&state[4],
                         _mm_alignr_epi8(cdgh, tmp, 8)); /* E F G H */
}

/* The 64 rounds of the block at p: its message words loaded (m0..m3,
 * bswap in scope), scheduled, and fed four at a time to GROUP(j, w). */
#define SHANI_BLOCK(GROUP, p)                                                  \
        do {                                                                   \
                m0 = _mm_shuffle_epi8(                                         \
                        _mm_loadu_si128((const __m128i *)((p) + 0)), bswap);   \
                m1 = _mm_shuffle_epi8(                                         \
                        _mm_loadu_si128((const __m128i *)((p) + 16)), bswap);  \
                m2 = _mm_shuffle_epi8(                                         \
                        _mm_loadu_si128((const __m128i *)((p) + 32)), bswap);  \
                m3 = _mm_shuffle_epi8(                                         \
                        _mm_loadu_si128((const __m128i *)((p) + 48)), bswap);  \
                GROUP(0, m0);                                                  \
                GROUP(1, m1);                                                  \
                GROUP(2, m2);                                                  \
                GROUP(3, m3);                                                  \
                SHANI_SCHEDULE(m0, m1, m2, m3);                                \
                GROUP(4, m0);                                                  \
                SHANI_SCHEDULE(m1, m2, m3, m0);                                \
                GROUP(5, m1);                                                  \
                SHANI_SCHEDULE(m2, m3, m0, m1);                                \
                GROUP(6, m2);                                                  \
                SHANI_SCHEDULE(m3, m0, m1, m2);                                \
                GROUP(7, m3);                                                  \
                SHANI_SCHEDULE(m0, m1, m2, m3);                                \
                GROUP(8, m0);                                                  \
                SHANI_SCHEDULE(m1, m2, m3, m0);                                \
                GROUP(9, m1);                                                  \
                SHANI_SCHEDULE(m2, m3, m0, m1);                                \
                GROUP(10, m2);                                                 \
                SHANI_SCHEDULE(m3, m0, m1, m2);                                \
                GROUP(11, m3);                                                 \
                SHANI_SCHEDULE(m0, m1, m2, m3);                                \
                GROUP(12, m0);                                                 \
                SHANI_SCHEDULE(m1, m2, m3, m0);                                \
                GROUP(13, m1);                                                 \
                SHANI_SCHEDULE(m2, m3, m0, m1);                                \
                GROUP(14, m2);                                                 \
                SHANI_SCHEDULE(m3, m0, m1, m2);                                \
                GROUP(15, m3);                                                 \
        } while (0)

__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_shani(uint32_t state[8], const unsigned char *p, size_t nblocks)
{
        const __m128i bswap =
                _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i st0, st1, save0, save1, m0, m1, m2, m3;

        shani_load(state, &st0, &st1);
        while (nblocks--) {
                save0 = st0;
                save1 = st1;
                SHANI_BLOCK(SHANI_GROUP, p);
                st0 = _mm_add_epi32(st0, save0);
                st1 = _mm_add_epi32(st1, save1);
                p += VEIL_SHA256_BLOCK_LEN;
        }
        shani_store(state, st0, st1);
}

/* Two states over the same blocks: one message schedule feeds both, and
 * the two chains of SHA256RNDS2 overlap (each round waits on the one
 * before it). About a quarter faster than two passes (measured on SHA-NI
 * Xeons); what veil_sha256_hmac_pair uses for an audit event's digest and
 * the inner hash of its MAC. */
#define SHANI_ROUNDS2(wk)                                                      \
        do {                                                                   \
                __m128i hi_ = _mm_shuffle_epi32((wk), 0x0e);                   \
                st1         = _mm_sha256rnds2_epu32(st1, st0, (wk));           \
                su1         = _mm_sha256rnds2_epu32(su1, su0, (wk));           \
                st0         = _mm_sha256rnds2_epu32(st0, st1, hi_);            \
                su0         = _mm_sha256rnds2_epu32(su0, su1, hi_);            \
        } while (0)

#define SHANI_GROUP2(j, w)                                                     \
        SHANI_ROUNDS2(_mm_add_epi32(                                           \
                (w), _mm_loadu_si128((const __m128i *)&sha256_k[4 * (j)])))

__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_shani2(uint32_t s[8], uint32_t u[8], const unsigned char *p,
                     size_t nblocks)
{
        const __m128i bswap =
                _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i st0, st1, su0, su1, save0, save1, save2, save3, m0, m1, m2, m3;

        shani_load(s, &st0, &st1);
        shani_load(u, &su0, &su1);
        while (nblocks--) {
                save0 = st0;
                save1 = st1;
                save2 = su0;
                save3 = su1;
                SHANI_BLOCK(SHANI_GROUP2, p);
                st0 = _mm_add_epi32(st0, save0);
                st1 = _mm_add_epi32(st1, save1);
                su0 = _mm_add_epi32(su0, save2);
                su1 = _mm_add_epi32(su1, save3);
                p += VEIL_SHA256_BLOCK_LEN;
        }
        shani_store(s, st0, st1);
        shani_store(u, su0, su1);
}

static int cpu_has_shani(void)
{
        unsigned a, b, c, d;

        if (!__get_cpuid(1, &a, &b, &c, &d))
                return 0;
        if (!(c & bit_SSSE3) || !(c & bit_SSE4_1))
                return 0;
        if (__get_cpuid_max(0, NULL) < 7)
                return 0;
        __cpuid_count(7, 0, a, b, c, d);
        return (b & bit_SHA) != 0;
}
#endif

static pthread_once_t sha256_once        = PTHREAD_ONCE_INIT;
static enum veil_sha256_impl sha256_best = VEIL_SHA256_PORTABLE;

static void sha256_pick(void)
{
#ifdef VEIL_HAVE_SHANI
        if (cpu_has_shani())
                sha256_best = VEIL_SHA256_SHANI;
#endif
}

enum veil_sha256_impl veil_sha256_best(void)
{
        pthread_once(&sha256_once, sha256_pick);
        return sha256_best;
}

const char *veil_sha256_impl_name(enum veil_sha256_impl impl)
{
        switch (impl) {
        case VEIL_SHA256_AUTO:
                return veil_sha256_impl_name(veil_sha256_best());
        case VEIL_SHA256_PORTABLE:
                return "portable";
        case VEIL_SHA256_SHANI:
                return "sha-ni";
        }
        return "?";
}

static sha256_blocks_fn sha256_fn(enum veil_sha256_impl impl)
{
        if (impl == VEIL_SHA256_AUTO)
                impl = veil_sha256_best();
#ifdef VEIL_HAVE_SHANI
        if (impl == VEIL_SHA256_SHANI)
                return veil_sha256_best() == VEIL_SHA256_SHANI
                               ? sha256_blocks_shani
                               : NULL;
#endif
        if (impl == VEIL_SHA256_PORTABLE)
                return sha256_blocks_portable;
        return NULL;
}

/* Absorbs `len` bytes after `prefix_len` bytes already compressed into
 * `state` (a multiple of the block size), pads and writes the digest. */
static void sha256_finish(sha256_blocks_fn blocks, uint32_t state[8],
                          uint64_t prefix_len, const unsigned char *p,
                          size_t len, unsigned char out[VEIL_SHA256_LEN])
{
        unsigned char last[2 * VEIL_SHA256_BLOCK_LEN];
        size_t full = len / VEIL_SHA256_BLOCK_LEN;
        size_t rest = len % VEIL_SHA256_BLOCK_LEN;
        size_t n    = rest + 9 <= VEIL_SHA256_BLOCK_LEN
                              ? VEIL_SHA256_BLOCK_LEN
                              : 2 * VEIL_SHA256_BLOCK_LEN;
        int i;

        if (full)
                blocks(state, p, full);
        if (rest) /* p may be NULL when len is 0 */
                memcpy(last, p + full * VEIL_SHA256_BLOCK_LEN, rest);
        last[rest] = 0x80;
        memset(last + rest + 1, 0, n - rest - 1 - 8);
        store_be64(last + n - 8, (prefix_len + len) * 8);
        blocks(state, last, n / VEIL_SHA256_BLOCK_LEN);
        for (i = 0; i < 8; i++)
                store_be32(out + 4 * i, state[i]);
}

void veil_sha256(const void *data, size_t len,
                 unsigned char out[VEIL_SHA256_LEN])
{
        uint32_t st[8];

        memcpy(st, sha256_h0, sizeof(st));
        sha256_finish(sha256_fn(VEIL_SHA256_AUTO), st, 0, data, len, out);
}

int veil_hmac_init_impl(struct veil_hmac *h, const void *key, size_t len,
                        enum veil_sha256_impl impl)
{
        unsigned char k[VEIL_SHA256_BLOCK_LEN], pad[VEIL_SHA256_BLOCK_LEN];
        sha256_blocks_fn blocks = sha256_fn(impl);
        uint32_t st[8];
        int i;

        if (!blocks)
                return VEIL_EINVAL;
        memset(k, 0, sizeof(k));
        if (len > VEIL_SHA256_BLOCK_LEN) {
                memcpy(st, sha256_h0, sizeof(st));
                sha256_finish(blocks, st, 0, key, len, k);
        } else if (len) {
                memcpy(k, key, len);
        }

        for (i = 0; i < VEIL_SHA256_BLOCK_LEN; i++)
                pad[i] = k[i] ^ 0x36;
        memcpy(h->inner, sha256_h0, sizeof(h->inner));
        blocks(h->inner, pad, 1);
        for (i = 0; i < VEIL_SHA256_BLOCK_LEN; i++)
                pad[i] = k[i] ^ 0x5c;
        memcpy(h->outer, sha256_h0, sizeof(h->outer));
        blocks(h->outer, pad, 1);
        h->blocks = blocks;

        veil_cleanse(k, sizeof(k));
        veil_cleanse(pad, sizeof(pad));
        veil_cleanse(st, sizeof(st));
        return 0;
}

void veil_hmac_init(struct veil_hmac *h, const void *key, size_t len)
{
        (void)veil_hmac_init_impl(h, key, len, VEIL_SHA256_AUTO);
}

void veil_hmac_sha256(const struct veil_hmac *h, const void *data, size_t len,
                      unsigned char out[VEIL_SHA256_LEN])
{
        unsigned char ih[VEIL_SHA256_LEN];
        uint32_t st[8];

        memcpy(st, h->inner, sizeof(st));
        sha256_finish(h->blocks, st, VEIL_SHA256_BLOCK_LEN, data, len, ih);
        memcpy(st, h->outer, sizeof(st));
        sha256_finish(h->blocks, st, VEIL_SHA256_BLOCK_LEN, ih, sizeof(ih),
                      out);
}

void veil_sha256_hmac_pair(const struct veil_hmac *h, const void *data,
                           size_t len, unsigned char digest[VEIL_SHA256_LEN],
                           unsigned char mac[VEIL_SHA256_LEN])
{
        sha256_blocks_fn blocks = sha256_fn(VEIL_SHA256_AUTO);
        const unsigned char *p  = data;
        size_t full             = len / VEIL_SHA256_BLOCK_LEN;
        unsigned char ih[VEIL_SHA256_LEN];
        uint32_t st[8], su[8];

        memcpy(st, sha256_h0, sizeof(st));
        memcpy(su, h->inner, sizeof(su));
#ifdef VEIL_HAVE_SHANI
        /* Both on SHA-NI: the whole blocks once for the two states; the
         * tails differ (the length each pads with). */
        if (blocks == sha256_blocks_shani && h->blocks == blocks && full) {
                sha256_blocks_shani2(st, su, p, full);
                p += full * VEIL_SHA256_BLOCK_LEN;
                len -= full * VEIL_SHA256_BLOCK_LEN;
                full *= VEIL_SHA256_BLOCK_LEN;
        } else {
                full = 0;
        }
#else
        full = 0;
#endif
        sha256_finish(blocks, st, full, p, len, digest);
        sha256_finish(h->blocks, su, VEIL_SHA256_BLOCK_LEN + full, p, len, ih);
        memcpy(su, h->outer, sizeof(su));
        sha256_finish(h->blocks, su, VEIL_SHA256_BLOCK_LEN, ih, sizeof(ih),
                      mac);
}

/* ---- many MACs under one key ---------------------------------------------
 * SHA-NI runs one message at its full rate (a second message interleaved
 * gains nothing: the rounds are throughput-bound, measured; two hashes of
 * the same bytes sharing one message schedule did gain about a quarter:
 * sha256_blocks_shani2). AVX-512 runs
 * sixteen: each 32-bit lane of a vector is one message's state word, so
 * a round is a dozen vector operations for sixteen messages (rotates and
 * three-input logic are single instructions). Short values take one or
 * two inner blocks and one outer block each; lanes whose message has
 * fewer blocks than the longest keep their state (masked adds). */
#ifdef VEIL_HAVE_SHANI
#define MB_LANES 16
/* fewer values than this go one SHA-NI pass each */
#define MB_MIN 8

static int cpu_has_avx512f(void)
{
        unsigned a, b, c, d;

        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
                return 0;
        if (__get_cpuid_max(0, NULL) < 7)
                return 0;
        __cpuid_count(7, 0, a, b, c, d);
        if (!(b & bit_AVX512F))
                return 0;
        /* the OS saves the opmask and ZMM state (XCR0 bits 1, 2, 5-7) */
        {
                unsigned lo, hi;

                __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
                (void)hi;
                return (lo & 0xe6) == 0xe6;
        }
}

static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
static int have_avx512;

static void avx512_pick(void)
{
        have_avx512 = cpu_has_avx512f();
}

#define MB_ROR(x, n) _mm512_ror_epi32((x), (n))
#define MB_XOR3(x, y, z) _mm512_ternarylogic_epi32((x), (y), (z), 0x96)

/* One block for every lane in `mask`: w[t] holds word t of each lane's
 * block. */
__attribute__((target("avx512f"))) static void
sha256_mb_block(__m512i st[8], __m512i w[16], __mmask16 mask)
{
        __m512i a = st[0], b = st[1], c = st[2], d = st[3];
        __m512i e = st[4], f = st[5], g = st[6], h = st[7];
        int t;

#pragma GCC unroll 64
        for (t = 0; t < 64; t++) {
                __m512i wt, t1, t2;

                if (t < 16) {
                        wt = w[t];
                } else {
                        __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
                        __m512i s0 = MB_XOR3(MB_ROR(w15, 7), MB_ROR(w15, 18),
                                             _mm512_srli_epi32(w15, 3));
                        __m512i s1 = MB_XOR3(MB_ROR(w2, 17), MB_ROR(w2, 19),
                                             _mm512_srli_epi32(w2, 10));

                        wt = _mm512_add_epi32(
                                _mm512_add_epi32(w[t & 15], s0),
                                _mm512_add_epi32(w[(t - 7) & 15], s1));
                        w[t & 15] = wt;
                }
                t1 = _mm512_add_epi32(
                        _mm512_add_epi32(h, MB_XOR3(MB_ROR(e, 6), MB_ROR(e, 11),
                                                    MB_ROR(e, 25))),
                        _mm512_add_epi32(
                                _mm512_ternarylogic_epi32(e, f, g, 0xca),
                                _mm512_add_epi32(
                                        wt,
                                        _mm512_set1_epi32((int)sha256_k[t]))));
                t2 = _mm512_add_epi32(
                        MB_XOR3(MB_ROR(a, 2), MB_ROR(a, 13), MB_ROR(a, 22)),
                        _mm512_ternarylogic_epi32(a, b, c, 0xe8));
                h = g;
                g = f;
                f = e;
                e = _mm512_add_epi32(d, t1);
                d = c;
                c = b;
                b = a;
                a = _mm512_add_epi32(t1, t2);
        }
        st[0] = _mm512_mask_add_epi32(st[0], mask, st[0], a);
        st[1] = _mm512_mask_add_epi32(st[1], mask, st[1], b);
        st[2] = _mm512_mask_add_epi32(st[2], mask, st[2], c);
        st[3] = _mm512_mask_add_epi32(st[3], mask, st[3], d);
        st[4] = _mm512_mask_add_epi32(st[4], mask, st[4], e);
        st[5] = _mm512_mask_add_epi32(st[5], mask, st[5], f);
        st[6] = _mm512_mask_add_epi32(st[6], mask, st[6], g);
        st[7] = _mm512_mask_add_epi32(st[7], mask, st[7], h);
}

/* Up to sixteen MACs, n >= 1. */
__attribute__((target("avx512f"))) static void
hmac_mb16(const struct veil_hmac *hm, size_t n, const void *const *data,
          const size_t *len, unsigned char (*out)[VEIL_SHA256_LEN])
{
        static const unsigned char zero[VEIL_SHA256_BLOCK_LEN];
        struct {
                const unsigned char *p;
                size_t full, n;
                unsigned char last[2 * VEIL_SHA256_BLOCK_LEN];
        } m[MB_LANES];
        uint32_t wt[16][MB_LANES] __attribute__((aligned(64)));
        uint32_t sw[8][MB_LANES] __attribute__((aligned(64)));
        __m512i st[8], w[16];
        size_t i, blk, maxb = 0;
        int j;

        for (i = 0; i < n; i++) {
                size_t rest = len[i] % VEIL_SHA256_BLOCK_LEN;
                size_t tail = rest + 9 <= VEIL_SHA256_BLOCK_LEN
                                      ? VEIL_SHA256_BLOCK_LEN
                                      : 2 * VEIL_SHA256_BLOCK_LEN;

                m[i].p    = data[i];
                m[i].full = len[i] / VEIL_SHA256_BLOCK_LEN;
                m[i].n    = m[i].full + tail / VEIL_SHA256_BLOCK_LEN;
                if (rest)
                        memcpy(m[i].last,
                               m[i].p + m[i].full * VEIL_SHA256_BLOCK_LEN,
                               rest);
                m[i].last[rest] = 0x80;
                memset(m[i].last + rest + 1, 0, tail - rest - 1 - 8);
                store_be64(m[i].last + tail - 8,
                           (VEIL_SHA256_BLOCK_LEN + (uint64_t)len[i]) * 8);
                if (m[i].n > maxb)
                        maxb = m[i].n;
        }
        for (j = 0; j < 8; j++)
                st[j] = _mm512_set1_epi32((int)hm->inner[j]);
        for (blk = 0; blk < maxb; blk++) {
                __mmask16 mask = 0;

                for (i = 0; i < MB_LANES; i++) {
                        const unsigned char *b = zero;
                        int t;

                        if (i < n && blk < m[i].n) {
                                mask |= (__mmask16)(1u << i);
                                b = blk < m[i].full
                                            ? m[i].p +
                                                      blk * VEIL_SHA256_BLOCK_LEN
                                            : m[i].last +
                                                      (blk - m[i].full) *
                                                              VEIL_SHA256_BLOCK_LEN;
                        }
                        for (t = 0; t < 16; t++)
                                wt[t][i] = load_be32(b + 4 * t);
                }
                for (j = 0; j < 16; j++)
                        w[j] = _mm512_load_si512((const void *)wt[j]);
                sha256_mb_block(st, w, mask);
        }
        /* outer: the inner digest's words are the block's first eight */
        for (j = 0; j < 8; j++) {
                w[j]  = st[j];
                st[j] = _mm512_set1_epi32((int)hm->outer[j]);
        }
        w[8] = _mm512_set1_epi32((int)0x80000000u);
        for (j = 9; j < 15; j++)
                w[j] = _mm512_setzero_si512();
        w[15] = _mm512_set1_epi32((VEIL_SHA256_BLOCK_LEN + VEIL_SHA256_LEN) *
                                  8);
        sha256_mb_block(st, w, (__mmask16)0xffff);
        for (j = 0; j < 8; j++)
                _mm512_store_si512((void *)sw[j], st[j]);
        for (i = 0; i < n; i++)
                for (j = 0; j < 8; j++)
                        store_be32(out[i] + 4 * j, sw[j][i]);
}
#endif

void veil_hmac_sha256_many(const struct veil_hmac *h, size_t n,
                           const void *const *data, const size_t *len,
                           unsigned char (*out)[VEIL_SHA256_LEN])
{
        size_t i = 0;

#ifdef VEIL_HAVE_SHANI
        pthread_once(&avx512_once, avx512_pick);
        /* a lone value is one SHA-NI pass; AVX-512 pays from a few on */
        if (have_avx512)
                while (n - i >= MB_MIN) {
                        size_t k = n - i < MB_LANES ? n - i : MB_LANES;

                        hmac_mb16(h, k, data + i, len + i, out + i);
                        i += k;
                }
#endif
        for (; i < n; i++)
                veil_hmac_sha256(h, data[i], len[i], out[i]);
}

void veil_hmac_cleanse(struct veil_hmac *h)
{
        veil_cleanse(h, sizeof(*h));
}

void veil_cleanse(void *p, size_t len)
{
        if (p && len)
                OPENSSL_cleanse(p, len);
}

int veil_hkdf_sha256(const void *key, size_t key_len, const void *salt,
                     size_t salt_len, const void *info, size_t info_len,
                     unsigned char *out, size_t out_len, char *errstr,
                     size_t errstr_size)
{
        OSSL_PARAM params[5], *p = params;
        EVP_KDF_CTX *kctx = NULL;
        EVP_KDF *kdf      = NULL;
        int rc            = 0;

        if (!key || !key_len || !out || !out_len ||
            out_len > 255 * VEIL_SHA256_LEN)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "hkdf: bad key or output length");
        kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
        if (!kdf) {
                rc = veil_errf(errstr, errstr_size, VEIL_EIO,
                               "hkdf: OpenSSL has no HKDF");
                goto out;
        }
        kctx = EVP_KDF_CTX_new(kdf);
        if (!kctx) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                               "hkdf: cannot allocate a KDF context");
                goto out;
        }
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                (char *)"SHA256", 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                 (void *)key, key_len);
        if (salt && salt_len)
                *p++ = OSSL_PARAM_construct_octet_string(
                        OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                 (void *)info, info_len);
        *p   = OSSL_PARAM_construct_end();
        if (EVP_KDF_derive(kctx, out, out_len, params) != 1)
                rc = veil_errf(errstr, errstr_size, VEIL_EIO,
                               "hkdf: EVP_KDF_derive failed");
out:
        EVP_KDF_CTX_free(kctx);
        EVP_KDF_free(kdf);
        return rc;
}

int veil_hkdf_sha256_noalloc(const void *key, size_t key_len, const void *info,
                             size_t info_len, unsigned char *out,
                             size_t out_len)
{
        static const unsigned char zero[VEIL_SHA256_LEN];
        unsigned char prk[VEIL_SHA256_LEN], t[VEIL_SHA256_LEN];
        unsigned char buf[VEIL_SHA256_LEN + 255 + 1];
        struct veil_hmac h;
        size_t done = 0, n, tl = 0;
        unsigned char i = 0;

        if (!key || !key_len || !out || !out_len || info_len > 255 ||
            out_len > 255 * VEIL_SHA256_LEN || (info_len && !info))
                return VEIL_EINVAL;
        /* Extract: PRK = HMAC(salt = 0^32, IKM). */
        veil_hmac_init(&h, zero, sizeof(zero));
        veil_hmac_sha256(&h, key, key_len, prk);
        /* Expand: T(i) = HMAC(PRK, T(i-1) | info | i). */
        veil_hmac_init(&h, prk, sizeof(prk));
        while (done < out_len) {
                memcpy(buf, t, tl);
                if (info_len)
                        memcpy(buf + tl, info, info_len);
                buf[tl + info_len] = ++i;
                veil_hmac_sha256(&h, buf, tl + info_len + 1, t);
                tl = sizeof(t);
                n  = out_len - done < sizeof(t) ? out_len - done : sizeof(t);
                memcpy(out + done, t, n);
                done += n;
        }
        veil_hmac_cleanse(&h);
        veil_cleanse(prk, sizeof(prk));
        veil_cleanse(t, sizeof(t));
        veil_cleanse(buf, sizeof(buf));
        return 0;
}

/* ---- AEAD ---------------------------------------------------------------- */

/* Bumped in every forked child, so a GCM nonce pool filled before a fork
 * is never used by both processes. */
static pthread_once_t aead_fork_once = PTHREAD_ONCE_INIT;
static volatile unsigned aead_fork_gen;

static void aead_on_fork_child(void)
{
        aead_fork_gen++;
}

static void aead_fork_setup(void)
{
        (void)pthread_atfork(NULL, NULL, aead_on_fork_child);
}

/* RFC 5297 §2.3: multiplication by x in GF(2^128). */
static void siv_dbl(const unsigned char in[16], unsigned char out[16])
{
        unsigned char carry = in[0] >> 7;
        int i;

        for (i = 0; i < 15; i++)
                out[i] = (unsigned char)(in[i] << 1 | in[i + 1] >> 7);
        out[15] = (unsigned char)(in[15] << 1) ^ (unsigned char)(carry * 0x87);
}

static int siv_cmac(struct veil_aead *a, const unsigned char *p1, size_t n1,
                    const unsigned char *p2, size_t n2, unsigned char v[16])
{
        size_t outl = 0;

        /* No key: restart the keyed CMAC (no allocation). */
        if (EVP_MAC_init(a->cmac, NULL, 0, NULL) != 1)
                return -1;
        if (n1 && EVP_MAC_update(a->cmac, p1, n1) != 1)
                return -1;
        if (n2 && EVP_MAC_update(a->cmac, p2, n2) != 1)
                return -1;
        if (EVP_MAC_final(a->cmac, v, &outl, 16) != 1 || outl != 16)
                return -1;
        return 0;
}

/* S2V(K1, P) with the plaintext as the only string (RFC 5297 §2.4). */
static int siv_s2v(struct veil_aead *a, const unsigned char *p, size_t len,
                   unsigned char v[16])
{
        unsigned char t[16];
        size_t i;
        int rc;

        if (len >= 16) {
                /* T = P xorend D: only the last block changes. */
                for (i = 0; i < 16; i++)
                        t[i] = p[len - 16 + i] ^ a->d[i];
                rc = siv_cmac(a, p, len - 16, t, 16, v);
        } else {
                /* T = dbl(D) xor pad(P). */
                memcpy(t, a->d2, 16);
                for (i = 0; i < len; i++)
                        t[i] ^= p[i];
                t[len] ^= 0x80;
                rc = siv_cmac(a, t, 16, NULL, 0, v);
        }
        veil_cleanse(t, sizeof(t));
        return rc;
}

/* AES-CTR under K2 with the counter Q = V with bits 63 and 31 cleared. */
static int siv_ctr(struct veil_aead *a, const unsigned char v[16],
                   const unsigned char *in, size_t len, unsigned char *out)
{
        unsigned char q[16];
        int n = 0;

        if (!len)
                return 0;
        memcpy(q, v, 16);
        q[8] &= 0x7f;
        q[12] &= 0x7f;
        if (EVP_EncryptInit_ex2(a->enc, NULL, NULL, q, NULL) != 1 ||
            EVP_EncryptUpdate(a->enc, out, &n, in, (int)len) != 1 ||
            (size_t)n != len)
                return -1;
        return 0;
}

static int aead_init_siv(struct veil_aead *a, const unsigned char *key,
                         char *errstr, size_t errstr_size)
{
        static const unsigned char zero[16];
        OSSL_PARAM params[2];

        a->mac    = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_CMAC, NULL);
        a->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
        if (!a->mac || !a->cipher)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-SIV: OpenSSL lacks CMAC or AES-256-CTR");
        a->cmac = EVP_MAC_CTX_new(a->mac);
        a->enc  = EVP_CIPHER_CTX_new();
        if (!a->cmac || !a->enc)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "AES-SIV: cannot allocate contexts");
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
                                                     (char *)"AES-256-CBC", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (EVP_MAC_init(a->cmac, key, 32, params) != 1 ||
            EVP_EncryptInit_ex2(a->enc, a->cipher, key + 32, NULL, NULL) != 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-SIV: cannot key CMAC or AES-256-CTR");
        if (siv_cmac(a, zero, sizeof(zero), NULL, 0, a->d))
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-SIV: CMAC failed");
        siv_dbl(a->d, a->d2);
        return 0;
}

static int aead_init_gcm(struct veil_aead *a, const unsigned char *key,
                         char *errstr, size_t errstr_size)
{
        a->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        if (!a->cipher)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-256-GCM: not available in OpenSSL");
        a->enc = EVP_CIPHER_CTX_new();
        a->dec = EVP_CIPHER_CTX_new();
        if (!a->enc || !a->dec)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "AES-256-GCM: cannot allocate contexts");
        if (EVP_EncryptInit_ex2(a->enc, a->cipher, key, NULL, NULL) != 1 ||
            EVP_DecryptInit_ex2(a->dec, a->cipher, key, NULL, NULL) != 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-256-GCM: cannot key the contexts");
        pthread_once(&aead_fork_once, aead_fork_setup);
        a->nonce_next = VEIL_AEAD_NONCE_POOL; /* empty: fill on first use */
        return 0;
}

int veil_aead_init(struct veil_aead *a, enum veil_aead_mode mode,
                   const unsigned char *key, size_t key_len, char *errstr,
                   size_t errstr_size)
{
        size_t want = mode == VEIL_AEAD_SIV ? VEIL_AEAD_SIV_KEY_LEN
                                            : VEIL_AEAD_GCM_KEY_LEN;
        int rc;

        memset(a, 0, sizeof(*a));
        if ((mode != VEIL_AEAD_SIV && mode != VEIL_AEAD_GCM) || !key ||
            key_len != want)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "%s: key must be %zu bytes",
                                 mode == VEIL_AEAD_SIV ? "AES-SIV"
                                                       : "AES-256-GCM",
                                 want);
        a->mode = mode;
        rc = mode == VEIL_AEAD_SIV ? aead_init_siv(a, key, errstr, errstr_size)
                                   : aead_init_gcm(a, key, errstr, errstr_size);
        if (rc)
                veil_aead_destroy(a);
        return rc;
}

int veil_aead_rekey(struct veil_aead *a, const unsigned char *key,
                    size_t key_len)
{
        static const unsigned char zero[16];

        if (!a->enc || !key)
                return VEIL_EINVAL;
        if (a->mode == VEIL_AEAD_SIV) {
                if (key_len != VEIL_AEAD_SIV_KEY_LEN || !a->cmac)
                        return VEIL_EINVAL;
                if (EVP_MAC_init(a->cmac, key, 32, NULL) != 1 ||
                    EVP_EncryptInit_ex2(a->enc, NULL, key + 32, NULL, NULL) !=
                            1 ||
                    siv_cmac(a, zero, sizeof(zero), NULL, 0, a->d))
                        return VEIL_EIO;
                siv_dbl(a->d, a->d2);
                return 0;
        }
        if (key_len != VEIL_AEAD_GCM_KEY_LEN || !a->dec)
                return VEIL_EINVAL;
        if (EVP_EncryptInit_ex2(a->enc, NULL, key, NULL, NULL) != 1 ||
            EVP_DecryptInit_ex2(a->dec, NULL, key, NULL, NULL) != 1)
                return VEIL_EIO;
        return 0;
}

void veil_aead_destroy(struct veil_aead *a)
{
        if (!a)
                return;
        EVP_MAC_CTX_free(a->cmac);
        EVP_MAC_free(a->mac);
        EVP_CIPHER_CTX_free(a->enc);
        EVP_CIPHER_CTX_free(a->dec);
        EVP_CIPHER_free(a->cipher);
        veil_cleanse(a, sizeof(*a));
}

static int gcm_nonce(struct veil_aead *a, unsigned char *nonce)
{
        unsigned gen = aead_fork_gen;

        if (a->nonce_next >= VEIL_AEAD_NONCE_POOL || a->fork_gen != gen) {
                if (RAND_bytes(a->nonces, sizeof(a->nonces)) != 1)
                        return -1;
                a->nonce_next = 0;
                a->fork_gen   = gen;
        }
        memcpy(nonce, a->nonces + a->nonce_next * VEIL_AEAD_GCM_NONCE_LEN,
               VEIL_AEAD_GCM_NONCE_LEN);
        /* Wipe the slot: a used nonce must never come back. */
        memset(a->nonces + a->nonce_next * VEIL_AEAD_GCM_NONCE_LEN, 0,
               VEIL_AEAD_GCM_NONCE_LEN);
        a->nonce_next++;
        return 0;
}

static int siv_seal(struct veil_aead *a, const unsigned char *in, size_t len,
                    unsigned char *out)
{
        if (siv_s2v(a, in, len, out))
                return VEIL_EIO;
        if (siv_ctr(a, out, in, len, out + VEIL_AEAD_TAG_LEN))
                return VEIL_EIO;
        return 0;
}

static int gcm_seal(struct veil_aead *a, const unsigned char *ad, size_t ad_len,
                    const unsigned char *in, size_t len, unsigned char *out)
{
        unsigned char *nonce = out, *ct = out + VEIL_AEAD_GCM_NONCE_LEN;
        int n = 0, fin = 0;

        if (gcm_nonce(a, nonce))
                return VEIL_EIO;
        if (EVP_EncryptInit_ex2(a->enc, NULL, NULL, nonce, NULL) != 1)
                return VEIL_EIO;
        if (ad_len && EVP_EncryptUpdate(a->enc, NULL, &n, ad, (int)ad_len) != 1)
                return VEIL_EIO;
        if (len && (EVP_EncryptUpdate(a->enc, ct, &n, in, (int)len) != 1 ||
                    (size_t)n != len))
                return VEIL_EIO;
        if (EVP_EncryptFinal_ex(a->enc, ct + len, &fin) != 1 || fin != 0)
                return VEIL_EIO;
        if (EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG,
                                VEIL_AEAD_TAG_LEN, ct + len) != 1)
                return VEIL_EIO;
        return 0;
}

int veil_aead_seal(struct veil_aead *a, const void *in, size_t len,
                   unsigned char *out, size_t cap, size_t *outlen)
{
        return veil_aead_seal_ad(a, NULL, 0, in, len, out, cap, outlen);
}

int veil_aead_seal_ad(struct veil_aead *a, const void *ad, size_t ad_len,
                      const void *in, size_t len, unsigned char *out,
                      size_t cap, size_t *outlen)
{
        size_t total = len + (a->mode == VEIL_AEAD_SIV ? VEIL_AEAD_TAG_LEN
                                                       : VEIL_AEAD_OVERHEAD);
        int rc;

        if (len > VEIL_AEAD_MAX_LEN || cap < total ||
            ad_len > VEIL_AEAD_MAX_LEN || (ad_len && a->mode != VEIL_AEAD_GCM))
                return VEIL_EINVAL;
        rc = a->mode == VEIL_AEAD_SIV ? siv_seal(a, in, len, out)
                                      : gcm_seal(a, ad, ad_len, in, len, out);
        if (rc) {
                veil_cleanse(out, total);
                return rc;
        }
        *outlen = total;
        return 0;
}

/* ct (ctlen bytes) is already at the start of out. */
static int siv_open(struct veil_aead *a, const unsigned char v[16],
                    unsigned char *out, size_t ctlen)
{
        unsigned char check[16];

        if (siv_ctr(a, v, out, ctlen, out) || siv_s2v(a, out, ctlen, check))
                return VEIL_EIO;
        return CRYPTO_memcmp(check, v, 16) ? VEIL_EDATA : 0;
}

static int gcm_open(struct veil_aead *a, const unsigned char *ad, size_t ad_len,
                    const unsigned char *nonce, unsigned char tag[16],
                    unsigned char *out, size_t ctlen)
{
        unsigned char scratch[16];
        int n = 0, fin = 0;

        if (EVP_DecryptInit_ex2(a->dec, NULL, NULL, nonce, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG,
                                VEIL_AEAD_TAG_LEN, tag) != 1)
                return VEIL_EIO;
        if (ad_len && EVP_DecryptUpdate(a->dec, NULL, &n, ad, (int)ad_len) != 1)
                return VEIL_EIO;
        if (ctlen &&
            (EVP_DecryptUpdate(a->dec, out, &n, out, (int)ctlen) != 1 ||
             (size_t)n != ctlen))
                return VEIL_EIO;
        /* GCM checks the tag here. */
        if (EVP_DecryptFinal_ex(a->dec, scratch, &fin) != 1 || fin != 0)
                return VEIL_EDATA;
        return 0;
}

int veil_aead_open(struct veil_aead *a, const unsigned char *in, size_t len,
                   unsigned char *out, size_t cap, size_t *outlen)
{
        return veil_aead_open_ad(a, NULL, 0, in, len, out, cap, outlen);
}

int veil_aead_open_ad(struct veil_aead *a, const void *ad, size_t ad_len,
                      const unsigned char *in, size_t len, unsigned char *out,
                      size_t cap, size_t *outlen)
{
        unsigned char head[VEIL_AEAD_GCM_NONCE_LEN], tag[VEIL_AEAD_TAG_LEN];
        size_t ctlen;
        int rc;

        if (ad_len > VEIL_AEAD_MAX_LEN || (ad_len && a->mode != VEIL_AEAD_GCM))
                return VEIL_EINVAL;

        if (a->mode == VEIL_AEAD_SIV) {
                if (len < VEIL_AEAD_TAG_LEN)
                        return VEIL_EINVAL;
                ctlen = len - VEIL_AEAD_TAG_LEN;
                memcpy(tag, in, VEIL_AEAD_TAG_LEN); /* V */
        } else {
                if (len < VEIL_AEAD_OVERHEAD)
                        return VEIL_EINVAL;
                ctlen = len - VEIL_AEAD_OVERHEAD;
                memcpy(head, in, VEIL_AEAD_GCM_NONCE_LEN);
                memcpy(tag, in + VEIL_AEAD_GCM_NONCE_LEN + ctlen,
                       VEIL_AEAD_TAG_LEN);
        }
        if (ctlen > VEIL_AEAD_MAX_LEN || cap < ctlen)
                return VEIL_EINVAL;
        /* Decrypt in place at the start of out: OpenSSL allows in == out
         * but not a partial overlap, which out == in would otherwise be. */
        if (ctlen)
                memmove(out,
                        in + len - ctlen -
                                (a->mode == VEIL_AEAD_GCM ? VEIL_AEAD_TAG_LEN
                                                          : 0),
                        ctlen);
        rc = a->mode == VEIL_AEAD_SIV
                     ? siv_open(a, tag, out, ctlen)
                     : gcm_open(a, ad, ad_len, head, tag, out, ctlen);
        if (rc) {
                veil_cleanse(out, ctlen);
                return rc;
        }
        *outlen = ctlen;
        return 0;
}

/* ---- base64url ------------------------------------------------------------
 */

static const char b64url_alphabet[64] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int veil_b64url_encode(const void *in, size_t len, char *out, size_t cap,
                       size_t *outlen)
{
        const unsigned char *p = in;
        size_t need = VEIL_B64URL_LEN(len), i = 0;
        char *o = out;
        uint32_t v;

        if (cap < need)
                return VEIL_EINVAL;
        for (; i + 3 <= len; i += 3) {
                char g[4]; /* one store: the next group's loads need not
                            * wait for four byte stores to `o` */

                v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
                g[0] = b64url_alphabet[v >> 18];
                g[1] = b64url_alphabet[(v >> 12) & 63];
                g[2] = b64url_alphabet[(v >> 6) & 63];
                g[3] = b64url_alphabet[v & 63];
                memcpy(o, g, 4);
                o += 4;
        }
        if (len - i == 1) {
                v    = (uint32_t)p[i] << 16;
                o[0] = b64url_alphabet[v >> 18];
                o[1] = b64url_alphabet[(v >> 12) & 63];
                o += 2;
        } else if (len - i == 2) {
                v    = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
                o[0] = b64url_alphabet[v >> 18];
                o[1] = b64url_alphabet[(v >> 12) & 63];
                o[2] = b64url_alphabet[(v >> 6) & 63];
                o += 3;
        }
        *outlen = (size_t)(o - out);
        return 0;
}

/* -1 for characters outside the alphabet. */
static int b64url_value(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

int veil_b64url_decode(const char *in, size_t len, unsigned char *out,
                       size_t cap, size_t *outlen)
{
        size_t rest = len % 4, need = len / 4 * 3 + (rest ? rest - 1 : 0);
        size_t i, o                 = 0;
        uint32_t acc = 0;
        int bits     = 0, v;

        if (rest == 1 || cap < need)
                return VEIL_EINVAL;
        for (i = 0; i < len; i++) {
                v = b64url_value((unsigned char)in[i]);
                if (v < 0)
                        return VEIL_EINVAL;
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* Canonical form only: the unused low bits of the last character
         * must be zero, so one byte string has exactly one encoding. */
        if (acc != 0)
                return VEIL_EINVAL;
        *outlen = o;
        return 0;
}

int veil_hmac_init_derived(struct veil_hmac *h, const void *master,
                           size_t master_len, const char *info, char *errstr,
                           size_t errstr_size)
{
        unsigned char key[VEIL_SHA256_LEN];
        int rc;

        rc = veil_hkdf_sha256(master, master_len, NULL, 0, info, strlen(info),
                              key, sizeof(key), errstr, errstr_size);
        if (!rc)
                veil_hmac_init(h, key, sizeof(key));
        veil_cleanse(key, sizeof(key));
        return rc;
}

int veil_aead_init_derived(struct veil_aead *a, enum veil_aead_mode mode,
                           const void *master, size_t master_len,
                           const char *info, char *errstr, size_t errstr_size)
{
        unsigned char key[VEIL_AEAD_SIV_KEY_LEN];
        size_t key_len = mode == VEIL_AEAD_SIV ? VEIL_AEAD_SIV_KEY_LEN
                                               : VEIL_AEAD_GCM_KEY_LEN;
        int rc;

        rc = veil_hkdf_sha256(master, master_len, NULL, 0, info, strlen(info),
                              key, key_len, errstr, errstr_size);
        if (!rc)
                rc = veil_aead_init(a, mode, key, key_len, errstr, errstr_size);
        veil_cleanse(key, sizeof(key));
        return rc;
}

/* ---- AES-256-GCM under epoch keys ------------------------------------------
 */

#define EPOCH_INFO "veil:gcm-epoch"

/* The epoch key of `salt`: HKDF-SHA256(base, salt, EPOCH_INFO). */
static int epoch_key(const unsigned char base[VEIL_AEAD_GCM_KEY_LEN],
                     const unsigned char salt[VEIL_GCM_EPOCH_SALT_LEN],
                     struct veil_aead *a, char *errstr, size_t errstr_size)
{
        unsigned char key[VEIL_AEAD_GCM_KEY_LEN];
        int rc;

        rc = veil_hkdf_sha256(base, VEIL_AEAD_GCM_KEY_LEN, salt,
                              VEIL_GCM_EPOCH_SALT_LEN, EPOCH_INFO,
                              strlen(EPOCH_INFO), key, sizeof(key), errstr,
                              errstr_size);
        if (!rc)
                rc = veil_aead_init(a, VEIL_AEAD_GCM, key, sizeof(key), errstr,
                                    errstr_size);
        veil_cleanse(key, sizeof(key));
        return rc;
}

/* A fresh random salt and its key. */
static int epoch_next(struct veil_gcm_epochs *g, char *errstr,
                      size_t errstr_size)
{
        struct veil_aead next;
        unsigned char salt[VEIL_GCM_EPOCH_SALT_LEN];
        int rc;

        if (RAND_bytes(salt, sizeof(salt)) != 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "AES-256-GCM epoch: RAND_bytes failed");
        rc = epoch_key(g->base, salt, &next, errstr, errstr_size);
        if (rc)
                return rc;
        if (g->keyed)
                veil_aead_destroy(&g->aead);
        g->aead = next;
        memcpy(g->salt, salt, sizeof(salt));
        g->keyed  = true;
        g->sealed = 0;
        return 0;
}

int veil_gcm_epochs_init(struct veil_gcm_epochs *g,
                         const unsigned char base[VEIL_AEAD_GCM_KEY_LEN],
                         char *errstr, size_t errstr_size)
{
        int rc;

        memset(g, 0, sizeof(*g));
        memcpy(g->base, base, VEIL_AEAD_GCM_KEY_LEN);
        rc = epoch_next(g, errstr, errstr_size);
        if (rc)
                veil_gcm_epochs_destroy(g);
        return rc;
}

void veil_gcm_epochs_destroy(struct veil_gcm_epochs *g)
{
        if (!g)
                return;
        if (g->keyed)
                veil_aead_destroy(&g->aead);
        veil_cleanse(g, sizeof(*g));
}

int veil_gcm_epochs_seal(struct veil_gcm_epochs *g, const void *ad,
                         size_t ad_len, const void *in, size_t len,
                         unsigned char *out, size_t cap, size_t *outlen)
{
        size_t n;
        int rc;

        if (cap < VEIL_GCM_EPOCH_SALT_LEN)
                return VEIL_EINVAL;
        /* Rare (once per VEIL_GCM_EPOCH_MAX messages): the only
         * allocation on this path. */
        if (g->sealed >= VEIL_GCM_EPOCH_MAX && epoch_next(g, NULL, 0))
                return VEIL_EIO;
        rc = veil_aead_seal_ad(&g->aead, ad, ad_len, in, len,
                               out + VEIL_GCM_EPOCH_SALT_LEN,
                               cap - VEIL_GCM_EPOCH_SALT_LEN, &n);
        if (rc)
                return rc;
        memcpy(out, g->salt, VEIL_GCM_EPOCH_SALT_LEN);
        g->sealed++;
        *outlen = VEIL_GCM_EPOCH_SALT_LEN + n;
        return 0;
}

int veil_gcm_epochs_open(struct veil_gcm_epochs *g, const void *ad,
                         size_t ad_len, const unsigned char *in, size_t len,
                         unsigned char *out, size_t cap, size_t *outlen)
{
        struct veil_aead other;
        int rc;

        if (len < VEIL_GCM_EPOCH_SALT_LEN + VEIL_AEAD_OVERHEAD)
                return VEIL_EINVAL;
        if (g->keyed && !CRYPTO_memcmp(in, g->salt, VEIL_GCM_EPOCH_SALT_LEN))
                return veil_aead_open_ad(
                        &g->aead, ad, ad_len, in + VEIL_GCM_EPOCH_SALT_LEN,
                        len - VEIL_GCM_EPOCH_SALT_LEN, out, cap, outlen);
        /* Another epoch (another worker, an earlier run): its key once. */
        if (epoch_key(g->base, in, &other, NULL, 0))
                return VEIL_EIO;
        rc = veil_aead_open_ad(&other, ad, ad_len, in + VEIL_GCM_EPOCH_SALT_LEN,
                               len - VEIL_GCM_EPOCH_SALT_LEN, out, cap, outlen);
        veil_aead_destroy(&other);
        return rc;
}
