/* test_retention.c - the deadline index: renew/max semantics, removal, pops
 * in deadline order, revocation, transactions, and 100k random operations
 * against a plain reference model. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "retention.h"
#include "veil.h"

TestSuite(retention);

static struct veil_retention *ri;

static void setup(void)
{
        ri = veil_retention_new();
}

static void teardown(void)
{
        veil_retention_destroy(ri);
        ri = NULL;
}

TestSuite(retention_fx, .init = setup, .fini = teardown);

static enum veil_retention_change up(uint16_t purpose, const char *key,
                                     int64_t dl, int32_t partition)
{
        enum veil_retention_change ch;
        char err[256] = "";

        cr_assert_eq(veil_retention_upsert(ri, purpose, key, strlen(key), dl,
                                           partition, &ch, err, sizeof(err)),
                     0, "%s", err);
        return ch;
}

static int64_t deadline_of(uint16_t purpose, const char *key)
{
        struct veil_retention_entry e;

        if (veil_retention_get(ri, purpose, key, strlen(key), &e))
                return -1;
        return e.deadline_ms;
}

Test(retention_fx, upsert_adds_then_renews_to_the_later_deadline)
{
        cr_assert_eq(up(0, "k1", 1000, 3), VEIL_RETENTION_ADDED);
        cr_assert_eq(veil_retention_count(ri), 1);
        cr_assert_eq(deadline_of(0, "k1"), 1000);
        /* A newer record: later deadline. */
        cr_assert_eq(up(0, "k1", 5000, 3), VEIL_RETENTION_RENEWED);
        cr_assert_eq(deadline_of(0, "k1"), 5000);
        /* An older record read late must not shorten it. */
        cr_assert_eq(up(0, "k1", 2000, 3), VEIL_RETENTION_UNCHANGED);
        cr_assert_eq(deadline_of(0, "k1"), 5000);
        cr_assert_eq(up(0, "k1", 5000, 3), VEIL_RETENTION_UNCHANGED);
        cr_assert_eq(veil_retention_count(ri), 1);
}

Test(retention_fx, purpose_and_key_bytes_both_identify_an_entry)
{
        up(0, "k1", 100, 0);
        up(1, "k1", 200, 0);
        up(0, "k10", 300, 0);
        cr_assert_eq(veil_retention_count(ri), 3);
        cr_assert_eq(deadline_of(0, "k1"), 100);
        cr_assert_eq(deadline_of(1, "k1"), 200);
        cr_assert_eq(deadline_of(0, "k10"), 300);
        cr_assert_eq(deadline_of(2, "k1"), -1);
        /* Binary keys with NULs and the empty key are keys too. */
        cr_assert_eq(
                veil_retention_upsert(ri, 0, "a\0b", 3, 7, 0, NULL, NULL, 0),
                0);
        cr_assert_eq(
                veil_retention_upsert(ri, 0, "a\0c", 3, 8, 0, NULL, NULL, 0),
                0);
        cr_assert_eq(veil_retention_upsert(ri, 0, NULL, 0, 9, 0, NULL, NULL, 0),
                     0);
        cr_assert_eq(veil_retention_count(ri), 6);
        cr_assert_eq(veil_retention_get(ri, 0, "a\0b", 3, NULL), 0);
        cr_assert_eq(veil_retention_get(ri, 0, "", 0, NULL), 0);
        cr_assert_eq(veil_retention_get(ri, 0, "a", 1, NULL), VEIL_ENOTFOUND);
}

Test(retention_fx, partition_follows_the_newest_record)
{
        struct veil_retention_entry e;

        up(0, "k", 100, 1);
        up(0, "k", 50, 2); /* older: nothing changes */
        cr_assert_eq(veil_retention_get(ri, 0, "k", 1, &e), 0);
        cr_assert_eq(e.partition, 1);
        up(0, "k", 200, 2);
        cr_assert_eq(veil_retention_get(ri, 0, "k", 1, &e), 0);
        cr_assert_eq(e.partition, 2);
        cr_assert_eq(e.purpose, 0);
        cr_assert_eq(e.key_len, 1);
        cr_assert_eq(memcmp(e.key, "k", 1), 0);
}

Test(retention_fx, set_replaces_even_with_an_earlier_deadline)
{
        up(0, "k", 5000, 1);
        cr_assert_eq(veil_retention_set(ri, 0, "k", 1, 1000, 4, NULL, 0), 0);
        cr_assert_eq(deadline_of(0, "k"), 1000);
        cr_assert_eq(veil_retention_next_deadline(ri), 1000);
        cr_assert_eq(veil_retention_set(ri, 0, "new", 3, 7, 0, NULL, 0), 0);
        cr_assert_eq(veil_retention_next_deadline(ri), 7);
}

Test(retention_fx, rejects_bad_arguments_with_a_message)
{
        char err[256] = "", *big = calloc(1, VEIL_RETENTION_MAX_KEY + 1);

        cr_assert_eq(veil_retention_upsert(ri, 0, big,
                                           VEIL_RETENTION_MAX_KEY + 1, 1, 0,
                                           NULL, err, sizeof(err)),
                     VEIL_EINVAL);
        cr_assert(strstr(err, "65536 bytes"), "%s", err);
        cr_assert_eq(veil_retention_upsert(ri, 0, big, VEIL_RETENTION_MAX_KEY,
                                           1, 0, NULL, err, sizeof(err)),
                     0);
        cr_assert_eq(veil_retention_upsert(ri, 0, "k", 1, 1, -1, NULL, err,
                                           sizeof(err)),
                     VEIL_EINVAL);
        cr_assert_eq(veil_retention_count(ri), 1);
        free(big);
}

Test(retention_fx, remove_reports_what_it_removed)
{
        struct veil_retention_entry old;

        up(0, "a", 10, 1);
        up(0, "b", 20, 2);
        up(0, "c", 30, 3);
        cr_assert_eq(veil_retention_remove(ri, 0, "b", 1, &old), 0);
        cr_assert_eq(old.deadline_ms, 20);
        cr_assert_eq(old.partition, 2);
        cr_assert_eq(veil_retention_remove(ri, 0, "b", 1, &old),
                     VEIL_ENOTFOUND);
        cr_assert_eq(veil_retention_count(ri), 2);
        cr_assert_eq(deadline_of(0, "a"), 10);
        cr_assert_eq(deadline_of(0, "c"), 30);
        cr_assert_eq(veil_retention_remove(ri, 0, "a", 1, NULL), 0);
        cr_assert_eq(veil_retention_remove(ri, 0, "c", 1, NULL), 0);
        cr_assert_eq(veil_retention_count(ri), 0);
        cr_assert_eq(veil_retention_next_deadline(ri), INT64_MAX);
}

Test(retention_fx, pop_returns_expired_in_deadline_order_in_bounded_batches)
{
        struct veil_retention_entry out[7];
        char key[32];
        int64_t last = -1;
        size_t n, total = 0, i;
        int k;

        /* 100 keys with shuffled deadlines 1000..1099, 100 not due. */
        for (k = 0; k < 200; k++) {
                snprintf(key, sizeof(key), "key-%d", k);
                up(k % 3, key, k < 100 ? 1000 + (k * 37) % 100 : 5000 + k,
                   k % 4);
        }
        cr_assert_eq(veil_retention_next_deadline(ri), 1000);
        cr_assert_eq(veil_retention_pop_expired(ri, 999, out, 7), 0);
        while ((n = veil_retention_pop_expired(ri, 1099, out, 7)) > 0) {
                cr_assert_leq(n, 7);
                for (i = 0; i < n; i++) {
                        cr_assert_geq(out[i].deadline_ms, last);
                        cr_assert_leq(out[i].deadline_ms, 1099);
                        last = out[i].deadline_ms;
                        /* deadline 1000 + 37k mod 100 → k = 73(d-1000)
                         * mod 100 (73 is 37's inverse mod 100) */
                        k = (int)(((out[i].deadline_ms - 1000) * 73) % 100);
                        snprintf(key, sizeof(key), "key-%d", k);
                        cr_assert_eq(out[i].key_len, strlen(key));
                        cr_assert_eq(memcmp(out[i].key, key, strlen(key)), 0);
                        cr_assert_eq(out[i].purpose, k % 3);
                        cr_assert_eq(out[i].partition, k % 4);
                }
                total += n;
                if (n < 7)
                        break;
        }
        cr_assert_eq(total, 100);
        cr_assert_eq(veil_retention_count(ri), 100);
        cr_assert_eq(veil_retention_next_deadline(ri), 5100);
}

Test(retention_fx, popped_keys_stay_readable_for_the_whole_batch)
{
        struct veil_retention_entry out[1000];
        char key[32], want[32];
        size_t n, i;
        int k;

        for (k = 0; k < 1000; k++) {
                snprintf(key, sizeof(key), "subject-%04d", k);
                up(0, key, k, 0);
        }
        n = veil_retention_pop_expired(ri, 10000, out, 1000);
        cr_assert_eq(n, 1000);
        for (i = 0; i < n; i++) {
                snprintf(want, sizeof(want), "subject-%04d",
                         (int)out[i].deadline_ms);
                cr_assert_eq(out[i].key_len, strlen(want));
                cr_assert_eq(memcmp(out[i].key, want, out[i].key_len), 0);
        }
}

Test(retention_fx, drop_partition_removes_only_that_partition_and_purposes)
{
        uint16_t route_a[] = {0, 1};
        char key[32];
        int k;

        for (k = 0; k < 300; k++) {
                snprintf(key, sizeof(key), "k%d", k);
                up(k % 3, key, 1000 + k, k % 5);
        }
        /* purposes 0 and 1 (route A), partition 2 */
        cr_assert_eq(veil_retention_drop_partition(ri, 2, route_a, 2), 40);
        cr_assert_eq(veil_retention_count(ri), 260);
        for (k = 0; k < 300; k++) {
                snprintf(key, sizeof(key), "k%d", k);
                if (k % 5 == 2 && k % 3 != 2)
                        cr_assert_eq(deadline_of(k % 3, key), -1);
                else
                        cr_assert_eq(deadline_of(k % 3, key), 1000 + k);
        }
        /* any purpose */
        cr_assert_eq(veil_retention_drop_partition(ri, 2, NULL, 0), 20);
        cr_assert_eq(veil_retention_drop_partition(ri, 2, NULL, 0), 0);
        cr_assert_eq(veil_retention_count(ri), 240);
}

static int count_cb(void *ctx, const struct veil_retention_entry *e)
{
        (void)e;
        ++*(size_t *)ctx;
        return 0;
}

static bool odd_deadline(void *ctx, const struct veil_retention_entry *e)
{
        (void)ctx;
        return e->deadline_ms % 2;
}

Test(retention_fx, drop_if_and_foreach_and_clear)
{
        char key[32];
        size_t n = 0;
        int k;

        for (k = 0; k < 1000; k++) {
                snprintf(key, sizeof(key), "k%d", k);
                up(0, key, k, 0);
        }
        cr_assert_eq(veil_retention_drop_if(ri, odd_deadline, NULL), 500);
        cr_assert_eq(veil_retention_foreach(ri, count_cb, &n), 0);
        cr_assert_eq(n, 500);
        cr_assert_eq(deadline_of(0, "k998"), 998);
        cr_assert_eq(deadline_of(0, "k999"), -1);
        veil_retention_clear(ri);
        cr_assert_eq(veil_retention_count(ri), 0);
        cr_assert_eq(deadline_of(0, "k998"), -1);
        up(0, "again", 5, 0);
        cr_assert_eq(deadline_of(0, "again"), 5);
}

Test(retention_fx, rollback_restores_the_state_at_begin)
{
        struct veil_retention_entry out[10];
        char key[32];
        int k;

        for (k = 0; k < 50; k++) {
                snprintf(key, sizeof(key), "k%d", k);
                up(0, key, 100 + k, k % 2);
        }
        veil_retention_begin(ri);
        up(0, "k1", 900, 1); /* renewed */
        up(0, "new", 50, 0); /* added */
        cr_assert_eq(veil_retention_remove(ri, 0, "k2", 2, NULL), 0);
        cr_assert_eq(veil_retention_set(ri, 0, "k3", 2, 1, 1, NULL, 0), 0);
        cr_assert_eq(veil_retention_pop_expired(ri, 104, out, 10), 4);
        cr_assert_eq(veil_retention_drop_partition(ri, 1, NULL, 0), 24);
        cr_assert_gt(veil_retention_txn_changes(ri), 0);
        veil_retention_rollback(ri);
        cr_assert_eq(veil_retention_txn_changes(ri), 0);

        cr_assert_eq(veil_retention_count(ri), 50);
        cr_assert_eq(deadline_of(0, "new"), -1);
        for (k = 0; k < 50; k++) {
                struct veil_retention_entry e;

                snprintf(key, sizeof(key), "k%d", k);
                cr_assert_eq(veil_retention_get(ri, 0, key, strlen(key), &e), 0,
                             "%s", key);
                cr_assert_eq(e.deadline_ms, 100 + k);
                cr_assert_eq(e.partition, k % 2);
        }
        /* committed changes stay */
        veil_retention_begin(ri);
        up(0, "k1", 900, 1);
        veil_retention_commit(ri);
        veil_retention_rollback(ri); /* no transaction open: nothing */
        cr_assert_eq(deadline_of(0, "k1"), 900);
        /* nothing is logged outside a transaction */
        up(0, "k4", 1000, 0);
        cr_assert_eq(veil_retention_txn_changes(ri), 0);
}

/* A transaction whose only logged key is empty (a ledger record
 * "topic\0" restores one) rolls back. The bug fuzz_ledger found here
 * (NULL + 0 on the empty key log) is flagged by clang's UBSan only, so
 * the regression that fails without the fix is
 * tests/fuzz/regress_ledger/empty-key-rollback under `make fuzz`. */
Test(retention_fx, rollback_of_only_empty_keys)
{
        veil_retention_begin(ri);
        cr_assert_eq(veil_retention_set(ri, 2, "", 0, 5, 0, NULL, 0), 0);
        cr_assert_eq(veil_retention_count(ri), 1);
        veil_retention_rollback(ri);
        cr_assert_eq(veil_retention_count(ri), 0);

        up(2, "", 7, 0);
        veil_retention_begin(ri);
        cr_assert_eq(veil_retention_remove(ri, 2, "", 0, NULL), 0);
        veil_retention_rollback(ri);
        cr_assert_eq(deadline_of(2, ""), 7);
}

Test(retention_fx, memory_per_key_is_within_the_design_number)
{
        char key[32];
        size_t n = 100000, mem;
        int k;

        for (k = 0; k < (int)n; k++) {
                snprintf(key, sizeof(key), "%020d", k); /* 20-byte keys */
                up(0, key, k, 0);
        }
        mem = veil_retention_memory(ri);
        /* Allocated capacity (not RSS): arrays may be up to twice what
         * they hold, and still within 64 B + the key's bytes. */
        cr_assert_leq(mem, n * (64 + 20), "%zu B for %zu keys", mem, n);
        cr_assert_gt(mem, n * 20);
}

Test(retention_fx, arena_compaction_keeps_every_key)
{
        char key[64];
        int k, round;

        /* Churn 3 MB of keys through a small live set. */
        for (round = 0; round < 60; round++) {
                for (k = 0; k < 1000; k++) {
                        snprintf(key, sizeof(key), "r%02d-%040d", round, k);
                        up(1, key, round * 1000 + k, 0);
                }
                if (round > 0)
                        for (k = 0; k < 1000; k++) {
                                snprintf(key, sizeof(key), "r%02d-%040d",
                                         round - 1, k);
                                cr_assert_eq(veil_retention_remove(ri, 1, key,
                                                                   strlen(key),
                                                                   NULL),
                                             0);
                        }
        }
        cr_assert_eq(veil_retention_count(ri), 1000);
        /* The arena was compacted: far less than 3 MB allocated. */
        cr_assert_lt(veil_retention_memory(ri), 1u << 21);
        for (k = 0; k < 1000; k++) {
                snprintf(key, sizeof(key), "r59-%040d", k);
                cr_assert_eq(deadline_of(1, key), 59000 + k);
        }
        veil_retention_compact(ri);
        cr_assert_eq(
                deadline_of(1, "r59-0000000000000000000000000000000000000007"),
                59007);
}

/* ---- 100k random operations against a reference model -------------------- */

#define M_PURPOSES 3
#define M_KEYS 1500

struct model_entry {
        bool present;
        int64_t deadline;
        int32_t partition;
};

struct model {
        struct model_entry e[M_PURPOSES][M_KEYS];
};

static uint64_t rng_state;

static uint64_t rng(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Key k's bytes: variable length (0..47), binary, deterministic. */
static size_t model_key(int k, unsigned char *out)
{
        size_t len = (size_t)(k * 7) % 48, i;

        for (i = 0; i < len; i++)
                out[i] = (unsigned char)(k * 131 + i * 17);
        if (len >= 2) {
                out[0] = (unsigned char)k;
                out[1] = (unsigned char)(k >> 8);
        }
        return len;
}

/* Keys shorter than 2 bytes would collide between k values: the model
 * maps them onto the same identity. */
static int model_canon(int k)
{
        unsigned char a[48], b[48];
        size_t la = model_key(k, a), j;

        if (la >= 2)
                return k;
        for (j = 0; j < (size_t)k; j++) {
                size_t lb = model_key((int)j, b);

                if (lb == la && !memcmp(a, b, la))
                        return (int)j;
        }
        return k;
}

static void model_check(const struct model *m)
{
        struct veil_retention_entry e;
        unsigned char key[48];
        size_t n = 0, len;
        int p, k;

        for (p = 0; p < M_PURPOSES; p++)
                for (k = 0; k < M_KEYS; k++) {
                        if (model_canon(k) != k)
                                continue;
                        len = model_key(k, key);
                        if (m->e[p][k].present) {
                                n++;
                                cr_assert_eq(veil_retention_get(ri, (uint16_t)p,
                                                                key, len, &e),
                                             0, "p%d k%d missing", p, k);
                                cr_assert_eq(e.deadline_ms,
                                             m->e[p][k].deadline);
                                cr_assert_eq(e.partition, m->e[p][k].partition);
                        } else {
                                cr_assert_eq(veil_retention_get(ri, (uint16_t)p,
                                                                key, len, &e),
                                             VEIL_ENOTFOUND, "p%d k%d present",
                                             p, k);
                        }
                }
        cr_assert_eq(veil_retention_count(ri), n);
}

Test(retention_fx, random_operations_match_a_reference_model, .timeout = 120)
{
        static struct model m, snap;
        struct veil_retention_entry out[64];
        unsigned char key[48];
        enum veil_retention_change ch;
        bool in_txn = false;
        int64_t now = 0, last, min_left;
        size_t len, n, i, max;
        int op, p, k, c, popped_total = 0;

        rng_state = 0x5eed5eed12345678ULL;
        memset(&m, 0, sizeof(m));
        for (op = 0; op < 100000; op++) {
                uint64_t r = rng();
                int kind   = (int)(r % 100);

                p                      = (int)((r >> 8) % M_PURPOSES);
                k                      = model_canon((int)((r >> 16) % M_KEYS));
                len                    = model_key(k, key);
                struct model_entry *me = &m.e[p][k];
                int64_t dl             = now + (int64_t)((r >> 32) % 5000);
                int32_t part           = (int32_t)((r >> 48) % 4);

                if (kind < 45) {
                        cr_assert_eq(veil_retention_upsert(ri, (uint16_t)p, key,
                                                           len, dl, part, &ch,
                                                           NULL, 0),
                                     0);
                        if (!me->present) {
                                cr_assert_eq(ch, VEIL_RETENTION_ADDED);
                                *me = (struct model_entry){true, dl, part};
                        } else if (dl > me->deadline) {
                                cr_assert_eq(ch, VEIL_RETENTION_RENEWED);
                                me->deadline  = dl;
                                me->partition = part;
                        } else {
                                cr_assert_eq(ch, VEIL_RETENTION_UNCHANGED);
                        }
                } else if (kind < 52) {
                        cr_assert_eq(veil_retention_set(ri, (uint16_t)p, key,
                                                        len, dl, part, NULL, 0),
                                     0);
                        *me = (struct model_entry){true, dl, part};
                } else if (kind < 70) {
                        cr_assert_eq(veil_retention_remove(ri, (uint16_t)p, key,
                                                           len, NULL),
                                     me->present ? 0 : VEIL_ENOTFOUND);
                        me->present = false;
                } else if (kind < 90) {
                        now += (int64_t)(r >> 40) % 200;
                        max = 1 + (r >> 20) % 64;
                        n   = veil_retention_pop_expired(ri, now, out, max);
                        cr_assert_leq(n, max);
                        last = INT64_MIN;
                        for (i = 0; i < n; i++) {
                                int kk;
                                bool found = false;

                                cr_assert_leq(out[i].deadline_ms, now);
                                cr_assert_geq(out[i].deadline_ms, last);
                                last = out[i].deadline_ms;
                                /* find it in the model */
                                for (kk = 0; kk < M_KEYS && !found; kk++) {
                                        unsigned char kb[48];
                                        size_t kl = model_key(kk, kb);
                                        struct model_entry *x =
                                                &m.e[out[i].purpose][kk];

                                        if (model_canon(kk) != kk ||
                                            kl != out[i].key_len ||
                                            (kl && memcmp(kb, out[i].key, kl)))
                                                continue;
                                        cr_assert(x->present);
                                        cr_assert_eq(x->deadline,
                                                     out[i].deadline_ms);
                                        cr_assert_eq(x->partition,
                                                     out[i].partition);
                                        x->present = false;
                                        found      = true;
                                }
                                cr_assert(found);
                                popped_total++;
                        }
                        /* Nothing left is due earlier than what was
                         * popped; when the batch was not full, nothing
                         * due is left at all. */
                        min_left = INT64_MAX;
                        for (c = 0; c < M_PURPOSES; c++)
                                for (i = 0; i < M_KEYS; i++)
                                        if (m.e[c][i].present &&
                                            m.e[c][i].deadline < min_left)
                                                min_left = m.e[c][i].deadline;
                        cr_assert_eq(veil_retention_next_deadline(ri),
                                     min_left);
                        if (n < max)
                                cr_assert_gt(min_left, now);
                        if (n)
                                cr_assert_geq(min_left, last);
                } else if (kind < 93) {
                        size_t want = 0;
                        uint16_t pu = (uint16_t)p;

                        for (i = 0; i < M_KEYS; i++)
                                if (m.e[p][i].present &&
                                    m.e[p][i].partition == part) {
                                        m.e[p][i].present = false;
                                        want++;
                                }
                        cr_assert_eq(
                                veil_retention_drop_partition(ri, part, &pu, 1),
                                want);
                } else if (kind < 94) {
                        veil_retention_compact(ri);
                } else if (kind < 97) {
                        /* begin, or commit */
                        if (!in_txn) {
                                veil_retention_begin(ri);
                                snap   = m;
                                in_txn = true;
                        } else {
                                veil_retention_commit(ri);
                                in_txn = false;
                        }
                } else {
                        if (in_txn) {
                                veil_retention_rollback(ri);
                                m      = snap;
                                in_txn = false;
                        }
                }
                if (op % 5000 == 0)
                        model_check(&m);
        }
        model_check(&m);
        cr_assert_gt(popped_total, 1000,
                     "the run popped too little to "
                     "test pops");
}

/* ---- deadlines from the licence ---------------------------------------- */

Test(retention, deadline_is_the_earlier_of_retention_and_licence_end)
{
        struct veil_purpose p = {0};
        enum veil_retention_reason why;
        int64_t end;

        p.retention_ms = 1000;
        cr_assert_eq(veil_retention_deadline(&p, 5000, &why), 6000);
        cr_assert_eq(why, VEIL_RETENTION_BY_RETENTION);
        cr_assert_str_eq(veil_retention_reason_name(&p, 6000), "retention");

        /* valid through 1970-01-02 (its last second is 172799) */
        p.valid_until = 172799;
        end           = veil_retention_license_end_ms(&p);
        cr_assert_eq(end, 172800000);
        cr_assert_eq(veil_retention_deadline(&p, 5000, &why), 6000);
        cr_assert_eq(why, VEIL_RETENTION_BY_RETENTION);
        cr_assert_eq(veil_retention_deadline(&p, end - 10, &why), end);
        cr_assert_eq(why, VEIL_RETENTION_BY_LICENSE_EXPIRY);
        cr_assert_str_eq(veil_retention_reason_name(&p, end),
                         "license-expired");
        cr_assert_str_eq(veil_retention_reason_name(&p, end - 1), "retention");

        p.retention_ms = 0; /* licence only */
        cr_assert_eq(veil_retention_deadline(&p, 5000, &why), end);
        cr_assert_eq(why, VEIL_RETENTION_BY_LICENSE_EXPIRY);

        p.valid_until = 0; /* neither */
        cr_assert_eq(veil_retention_deadline(&p, 5000, &why), INT64_MAX);
        cr_assert_eq(why, VEIL_RETENTION_NONE);
        cr_assert_eq(veil_retention_deadline(NULL, 5000, &why), INT64_MAX);
        cr_assert_eq(why, VEIL_RETENTION_NONE);

        p.retention_ms = INT64_MAX / 2; /* saturates */
        cr_assert_eq(veil_retention_deadline(&p, INT64_MAX - 5, &why),
                     INT64_MAX);
        cr_assert_eq(why, VEIL_RETENTION_BY_RETENTION);
}

Test(retention, hash_depends_on_seed_bytes_and_length)
{
        uint64_t a = veil_retention_hash(1, "abcdefghij", 10);

        cr_assert_eq(a, veil_retention_hash(1, "abcdefghij", 10));
        cr_assert_neq(a, veil_retention_hash(2, "abcdefghij", 10));
        cr_assert_neq(a, veil_retention_hash(1, "abcdefghik", 10));
        cr_assert_neq(veil_retention_hash(1, "ab", 2),
                      veil_retention_hash(1, "ab\0", 3));
        cr_assert_neq(veil_retention_hash(1, "", 0),
                      veil_retention_hash(1, "\0", 1));
}

/* An index whose keys are a 4-byte identity and a payload (what the
 * worker's groups are: a ledger id and every purpose's entry). */
Test(retention_fx, id_len_keys_are_found_by_identity_and_replace_payloads)
{
        struct veil_retention_entry e;
        char err[256] = "", big[3000];
        size_t i;

        veil_retention_set_id_len(ri, 4);
        cr_assert_eq(up(1, "IDIDfirst", 1000, 2), VEIL_RETENTION_ADDED);
        cr_assert_eq(up(1, "IDID-second-payload", 500, 3),
                     VEIL_RETENTION_UNCHANGED); /* earlier: deadline stays */
        cr_assert_eq(veil_retention_count(ri), 1);
        cr_assert_eq(veil_retention_get(ri, 1, "IDID", 4, &e), 0);
        cr_assert_eq(e.key_len, strlen("IDID-second-payload"),
                     "the payload is replaced all the same");
        cr_assert_eq(memcmp(e.key, "IDID-second-payload", e.key_len), 0);
        cr_assert_eq(e.deadline_ms, 1000);
        cr_assert_eq(veil_retention_get(ri, 2, "IDID", 4, NULL),
                     VEIL_ENOTFOUND); /* the purpose still counts */
        cr_assert_eq(veil_retention_get(ri, 1, "IDIx", 4, NULL),
                     VEIL_ENOTFOUND);
        /* A transaction's payload changes roll back. */
        veil_retention_begin(ri);
        cr_assert_eq(veil_retention_set(ri, 1, "IDIDthird", 9, 10, 4, err,
                                        sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(up(1, "OTHRx", 7, 0), VEIL_RETENTION_ADDED);
        cr_assert_eq(veil_retention_remove(ri, 1, "OTHR", 4, NULL), 0);
        cr_assert_eq(up(1, "OTHRy", 8, 0), VEIL_RETENTION_ADDED);
        veil_retention_rollback(ri);
        cr_assert_eq(veil_retention_count(ri), 1);
        cr_assert_eq(veil_retention_get(ri, 1, "IDIDanything", 12, &e), 0);
        cr_assert_eq(e.key_len, strlen("IDID-second-payload"));
        cr_assert_eq(memcmp(e.key, "IDID-second-payload", e.key_len), 0);
        cr_assert_eq(e.deadline_ms, 1000);
        cr_assert_eq(e.partition, 2);
        /* Payload churn: the arena compacts and keeps the live bytes. */
        memset(big, 'p', sizeof(big));
        memcpy(big, "IDID", 4);
        for (i = 0; i < 2000; i++) {
                big[4] = (char)('a' + i % 26);
                cr_assert_eq(veil_retention_set(ri, 1, big, sizeof(big),
                                                (int64_t)i, 0, err,
                                                sizeof(err)),
                             0, "%s", err);
        }
        cr_assert_eq(veil_retention_get(ri, 1, "IDID", 4, &e), 0);
        cr_assert_eq(e.key_len, sizeof(big));
        cr_assert_eq(e.key[4], 'a' + 1999 % 26);
        cr_assert_lt(veil_retention_memory(ri), (size_t)16 << 20);
}
