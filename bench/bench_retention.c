/* bench_retention.c - the retention index at a million keys: resident
 * memory per key, restoring 1M ledger records, and tombstones/s when a
 * million deadlines pass at once, each against a plain baseline (chained
 * hash map of malloc'ed nodes + binary heap of pointers; qsort) in the same
 * run. Prints `bench: NAME VALUE UNIT`. Built and run by
 * bench/retention.sh; numbers in bench/README.md, "Retention". */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "retention.h"
#include "util.h"
#include "veil.h"

#define N_KEYS 1000000u
#define N_PURPOSES 3
/* Transformed keys as the hash transform writes them: "k1:" + 43
 * base64url characters. */
#define KEY_LEN 46
#define BATCH 10000 /* pops per transaction (max_batch_records) */

static const char *const TOPICS[N_PURPOSES] = {
        "customers.analytics", "customers.marketing", "customers.support"};

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident bytes of this process. */
static size_t rss_bytes(void)
{
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "r");

        if (!f)
                return 0;
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
                resident = 0;
        fclose(f);
        return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Key i: deterministic, distinct, hash-token shaped. */
static void make_key(uint32_t i, unsigned char out[KEY_LEN])
{
        static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                "tuvwxyz0123456789-_";
        uint64_t x = (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15) + 1;
        int k;

        memcpy(out, "k1:", 3);
        for (k = 3; k < KEY_LEN; k++) {
                x ^= x >> 29;
                x *= UINT64_C(0xbf58476d1ce4e5b9);
                x ^= x >> 32;
                out[k] = (unsigned char)b64[x & 63];
        }
        /* the index bits make keys distinct whatever the mixing does */
        out[KEY_LEN - 1] = (unsigned char)b64[i & 63];
        out[KEY_LEN - 2] = (unsigned char)b64[(i >> 6) & 63];
        out[KEY_LEN - 3] = (unsigned char)b64[(i >> 12) & 63];
        out[KEY_LEN - 4] = (unsigned char)b64[(i >> 18) & 63];
}

static int64_t deadline_of(uint32_t i)
{
        /* spread over ~90 days from an epoch, in random order */
        return INT64_C(1800000000000) +
               (int64_t)(((uint64_t)i * UINT64_C(2654435761)) % 7776000000u);
}

/* ---- baseline: what a straightforward implementation costs ------------------
 * std::unordered_map<std::string, node*>-like chaining with one heap node
 * per key and the key in its own allocation, plus a binary heap of
 * (deadline, node *) like std::priority_queue. */

struct bl_node {
        struct bl_node *next;
        char *key;
        size_t key_len;
        uint64_t hash;
        int64_t deadline;
        int32_t partition;
        uint16_t purpose;
        size_t heap_pos;
};

struct bl_heap_item {
        int64_t deadline;
        struct bl_node *node;
};

struct baseline {
        struct bl_node **buckets;
        size_t n_buckets, n;
        struct bl_heap_item *heap;
        size_t heap_cap;
};

static void bl_heap_put(struct baseline *b, size_t pos, struct bl_heap_item it)
{
        b->heap[pos]      = it;
        it.node->heap_pos = pos;
}

static void bl_up(struct baseline *b, size_t pos)
{
        struct bl_heap_item it = b->heap[pos];

        while (pos > 0 && b->heap[(pos - 1) / 2].deadline > it.deadline) {
                bl_heap_put(b, pos, b->heap[(pos - 1) / 2]);
                pos = (pos - 1) / 2;
        }
        bl_heap_put(b, pos, it);
}

static void bl_down(struct baseline *b, size_t pos)
{
        struct bl_heap_item it = b->heap[pos];
        size_t c;

        for (;;) {
                c = 2 * pos + 1;
                if (c >= b->n)
                        break;
                if (c + 1 < b->n &&
                    b->heap[c + 1].deadline < b->heap[c].deadline)
                        c++;
                if (b->heap[c].deadline >= it.deadline)
                        break;
                bl_heap_put(b, pos, b->heap[c]);
                pos = c;
        }
        bl_heap_put(b, pos, it);
}

static void bl_rehash(struct baseline *b)
{
        size_t nb            = b->n_buckets ? b->n_buckets * 2 : 16, i;
        struct bl_node **nbk = veil_calloc(nb, sizeof(*nbk)), *x, *next;

        for (i = 0; i < b->n_buckets; i++)
                for (x = b->buckets[i]; x; x = next) {
                        next              = x->next;
                        x->next           = nbk[x->hash % nb];
                        nbk[x->hash % nb] = x;
                }
        free(b->buckets);
        b->buckets   = nbk;
        b->n_buckets = nb;
}

static void bl_upsert(struct baseline *b, uint16_t purpose, const void *key,
                      size_t len, int64_t deadline, int32_t partition)
{
        uint64_t h = veil_retention_hash(purpose, key, len);
        struct bl_node *x;

        if (b->n_buckets)
                for (x = b->buckets[h % b->n_buckets]; x; x = x->next)
                        if (x->hash == h && x->purpose == purpose &&
                            x->key_len == len && !memcmp(x->key, key, len)) {
                                if (deadline > x->deadline) {
                                        x->deadline = deadline;
                                        b->heap[x->heap_pos].deadline =
                                                deadline;
                                        bl_down(b, x->heap_pos);
                                }
                                return;
                        }
        if (b->n + 1 > b->n_buckets)
                bl_rehash(b);
        x      = veil_malloc(sizeof(*x));
        x->key = veil_malloc(len);
        memcpy(x->key, key, len);
        x->key_len                   = len;
        x->hash                      = h;
        x->deadline                  = deadline;
        x->partition                 = partition;
        x->purpose                   = purpose;
        x->next                      = b->buckets[h % b->n_buckets];
        b->buckets[h % b->n_buckets] = x;
        if (b->n == b->heap_cap) {
                b->heap_cap = b->heap_cap ? b->heap_cap * 2 : 64;
                b->heap = veil_realloc(b->heap, b->heap_cap * sizeof(*b->heap));
        }
        b->heap[b->n] = (struct bl_heap_item){deadline, x};
        x->heap_pos   = b->n;
        b->n++;
        bl_up(b, b->n - 1);
}

/* ---- measurements, each in a child so RSS starts clean ------------------- */

/* Runs fn in a forked child; the child writes one double into the pipe. */
static double in_child(double (*fn)(void))
{
        int fd[2];
        double v = -1;
        pid_t pid;

        if (pipe(fd))
                return -1;
        /* nothing buffered may be written twice */
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                v = fn();
                fflush(stdout);
                if (write(fd[1], &v, sizeof(v)) != sizeof(v))
                        _exit(1);
                _exit(0);
        }
        close(fd[1]);
        if (read(fd[0], &v, sizeof(v)) != sizeof(v))
                v = -1;
        close(fd[0]);
        waitpid(pid, NULL, 0);
        return v;
}

static double mem_index(void)
{
        unsigned char key[KEY_LEN];
        struct veil_retention *ri;
        size_t before, after;
        uint32_t i;

        before = rss_bytes();
        ri     = veil_retention_new();
        for (i = 0; i < N_KEYS; i++) {
                make_key(i, key);
                if (veil_retention_upsert(ri, (uint16_t)(i % N_PURPOSES), key,
                                          KEY_LEN, deadline_of(i),
                                          (int32_t)(i % 12), NULL, NULL, 0))
                        abort();
        }
        after = rss_bytes();
        printf("# index: %zu keys, %zu B allocated at capacity (%.1f "
               "B/key)\n",
               veil_retention_count(ri), veil_retention_memory(ri),
               (double)veil_retention_memory(ri) / N_KEYS);
        return (double)(after - before) / N_KEYS;
}

static double mem_baseline(void)
{
        struct baseline b = {0};
        unsigned char key[KEY_LEN];
        size_t before, after;
        uint32_t i;

        before = rss_bytes();
        for (i = 0; i < N_KEYS; i++) {
                make_key(i, key);
                bl_upsert(&b, (uint16_t)(i % N_PURPOSES), key, KEY_LEN,
                          deadline_of(i), (int32_t)(i % 12));
        }
        after = rss_bytes();
        return (double)(after - before) / N_KEYS;
}

/* 1M ledger records (one per key, as a compacted ledger holds them),
 * encoded back to back: u16 key length | key | 21-byte value. */
static unsigned char *ledger_buffer(size_t *lenp)
{
        size_t cap = (size_t)N_KEYS *
                     (2 + 20 + 1 + KEY_LEN + VEIL_LEDGER_VALUE_LEN),
               off         = 0, kn;
        unsigned char *buf = veil_malloc(cap), key[KEY_LEN];
        uint32_t i;

        for (i = 0; i < N_KEYS; i++) {
                struct veil_ledger_value v = {deadline_of(i),
                                              deadline_of(i) - 1000,
                                              (int32_t)(i % 12)};

                make_key(i, key);
                if (veil_ledger_key_encode(TOPICS[i % N_PURPOSES], key, KEY_LEN,
                                           buf + off + 2, cap - off - 2, &kn,
                                           NULL, 0))
                        abort();
                buf[off]     = (unsigned char)(kn >> 8);
                buf[off + 1] = (unsigned char)kn;
                off += 2 + kn;
                if (veil_ledger_value_encode(&v, buf + off, NULL, 0))
                        abort();
                off += VEIL_LEDGER_VALUE_LEN;
        }
        *lenp = off;
        return buf;
}

static double restore_index(void)
{
        size_t len, off = 0, kn, n = 0;
        unsigned char *buf = ledger_buffer(&len);
        struct veil_retention *ri;
        double t0, t;

        t0 = now_s();
        ri = veil_retention_new();
        while (off < len) {
                kn = (size_t)buf[off] << 8 | buf[off + 1];
                if (veil_ledger_restore(ri, TOPICS, N_PURPOSES, buf + off + 2,
                                        kn, buf + off + 2 + kn,
                                        VEIL_LEDGER_VALUE_LEN, NULL, 0))
                        abort();
                off += 2 + kn + VEIL_LEDGER_VALUE_LEN;
                n++;
        }
        t = now_s() - t0;
        if (veil_retention_count(ri) != N_KEYS || n != N_KEYS)
                abort();
        return t;
}

static double restore_baseline(void)
{
        size_t len, off = 0, kn;
        unsigned char *buf = ledger_buffer(&len);
        struct veil_ledger_record rec;
        struct baseline b = {0};
        double t0;
        size_t i;

        t0 = now_s();
        while (off < len) {
                kn = (size_t)buf[off] << 8 | buf[off + 1];
                if (veil_ledger_decode(buf + off + 2, kn, buf + off + 2 + kn,
                                       VEIL_LEDGER_VALUE_LEN, &rec, NULL, 0))
                        abort();
                for (i = 0; i < N_PURPOSES; i++)
                        if (strlen(TOPICS[i]) == rec.topic_len &&
                            !memcmp(TOPICS[i], rec.topic, rec.topic_len))
                                break;
                bl_upsert(&b, (uint16_t)i, rec.key, rec.key_len,
                          rec.value.deadline_ms, rec.value.partition);
                off += 2 + kn + VEIL_LEDGER_VALUE_LEN;
        }
        return now_s() - t0;
}

/* A million deadlines pass at once: pop in transaction-sized batches and
 * build, per expired key, the purpose tombstone's key (the entry's own
 * bytes) and the ledger tombstone (coalescing batch), as the worker
 * would before producing them. */
static double tombstones_index(void)
{
        struct veil_retention_entry *out = veil_malloc(BATCH * sizeof(*out));
        struct veil_ledger_batch *lb     = veil_ledger_batch_new();
        struct veil_ledger_pending pd;
        struct veil_retention *ri = veil_retention_new();
        unsigned char key[KEY_LEN];
        size_t n, i, total = 0, sum = 0;
        double t0, t;
        uint32_t k;

        for (k = 0; k < N_KEYS; k++) {
                make_key(k, key);
                if (veil_retention_upsert(ri, (uint16_t)(k % N_PURPOSES), key,
                                          KEY_LEN, deadline_of(k),
                                          (int32_t)(k % 12), NULL, NULL, 0))
                        abort();
        }
        t0 = now_s();
        do {
                veil_retention_begin(ri);
                n = veil_retention_pop_expired(ri, INT64_MAX - 1, out, BATCH);
                for (i = 0; i < n; i++) {
                        sum += out[i].key[0]; /* the tombstone's key */
                        if (veil_ledger_batch_put(lb, TOPICS[out[i].purpose],
                                                  out[i].key, out[i].key_len,
                                                  out[i].partition, NULL, NULL,
                                                  0))
                                abort();
                }
                for (i = 0; i < veil_ledger_batch_count(lb); i++) {
                        veil_ledger_batch_get(lb, i, &pd);
                        sum += pd.key_len;
                }
                veil_ledger_batch_clear(lb);
                veil_retention_commit(ri);
                total += n;
        } while (n == BATCH);
        t = now_s() - t0;
        if (total != N_KEYS || !sum)
                abort();
        return N_KEYS / t;
}

struct sort_item {
        int64_t deadline;
        uint32_t idx;
};

static int sort_cmp(const void *a, const void *b)
{
        const struct sort_item *x = a, *y = b;

        return (x->deadline > y->deadline) - (x->deadline < y->deadline);
}

/* Baseline: the deadlines known up front, sorted once with qsort, the
 * same ledger keys built into a flat buffer. */
static double tombstones_qsort(void)
{
        struct sort_item *items = veil_malloc(N_KEYS * sizeof(*items));
        unsigned char *keys     = veil_malloc((size_t)N_KEYS * KEY_LEN);
        unsigned char lkey[300];
        size_t i, kn, sum = 0;
        double t0, t;

        for (i = 0; i < N_KEYS; i++) {
                make_key((uint32_t)i, keys + i * KEY_LEN);
                items[i] = (struct sort_item){deadline_of((uint32_t)i),
                                              (uint32_t)i};
        }
        t0 = now_s();
        qsort(items, N_KEYS, sizeof(*items), sort_cmp);
        for (i = 0; i < N_KEYS; i++) {
                if (veil_ledger_key_encode(
                            TOPICS[items[i].idx % N_PURPOSES],
                            keys + (size_t)items[i].idx * KEY_LEN, KEY_LEN,
                            lkey, sizeof(lkey), &kn, NULL, 0))
                        abort();
                sum += kn + lkey[kn - 1];
        }
        t = now_s() - t0;
        if (!sum)
                abort();
        return N_KEYS / t;
}

/* Best (lowest) of `runs` for times, best (highest) for rates. */
static double best_of(double (*fn)(void), int runs, bool lower)
{
        double best = -1, v;
        int r;

        for (r = 0; r < runs; r++) {
                v = in_child(fn);
                if (v < 0)
                        continue;
                if (best < 0 || (lower ? v < best : v > best))
                        best = v;
        }
        return best;
}

int main(int argc, char **argv)
{
        int runs = argc > 1 ? atoi(argv[1]) : 3;
        double bpk, bpk_bl, rs, rs_bl, ts, ts_bl;

        if (runs < 1)
                runs = 1;
        bpk    = in_child(mem_index);
        bpk_bl = in_child(mem_baseline);
        printf("bench: bytes_per_key %.1f B (%d-byte keys: %.1f B + the key; "
               "goal <= 64 B + the key)\n",
               bpk, KEY_LEN, bpk - KEY_LEN);
        printf("bench: baseline_bytes_per_key %.1f B (chained map + binary "
               "heap of pointers)\n",
               bpk_bl);
        rs    = best_of(restore_index, runs, true);
        rs_bl = best_of(restore_baseline, runs, true);
        printf("bench: restore_1m_s %.3f s (goal <= 3 s; decode + upsert "
               "from memory)\n",
               rs);
        printf("bench: baseline_restore_1m_s %.3f s\n", rs_bl);
        ts    = best_of(tombstones_index, runs, false);
        ts_bl = best_of(tombstones_qsort, runs, false);
        printf("bench: tombstones_per_s %.0f /s (1M due at once, batches of "
               "%d)\n",
               ts, BATCH);
        printf("bench: baseline_qsort_tombstones_per_s %.0f /s\n", ts_bl);
        return 0;
}
