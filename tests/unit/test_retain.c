/* test_retain.c - the worker's retention side against librdkafka's mock
 * cluster: ledger writes per transaction (coalesced, on the source's
 * partition), rollback, due tombstones with their headers, restore of
 * only the assigned partitions, revocation, and the licence-expiry purge
 * of restored keys. Real-Kafka behaviour (read_committed, compaction) is
 * in tests/integration/test_retention.py. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "kafka.h"
#include "ledger.h"
#include "retain.h"
#include "sink.h"
#include "util.h"
#include "veil.h"

TestSuite(retain, .timeout = 60);

struct env {
        rd_kafka_t *mrk; /* owns the mock cluster */
        rd_kafka_mock_cluster_t *mc;
        char dir[64];
        struct veil_config *config;
        struct veil_sink *sink; /* the worker's: ledger writes go through it */
        struct veil_retain *r;
        struct veil_audit *audit;
};

static void mock_up(struct env *e)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[256];
        const char *topics[] = {"src",      "src.short", "src.long",
                                "t.ledger", "t.audit",   "t.erasure"};
        int parts[]          = {2, 1, 1, 2, 1, 1};
        size_t i;

        memset(e, 0, sizeof(*e));
        rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
        e->mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        cr_assert(e->mrk, "%s", err);
        e->mc = rd_kafka_mock_cluster_new(e->mrk, 1);
        cr_assert(e->mc);
        for (i = 0; i < sizeof(topics) / sizeof(*topics); i++)
                cr_assert_eq(rd_kafka_mock_topic_create(e->mc, topics[i],
                                                        parts[i], 1),
                             0);
}

/* The keys section config_new writes. */
static const char *keys_yaml = "keys: { key_id: k1 }\n";

/* A config over the mock cluster; short_until is the short purpose's
 * valid_until. */
static struct veil_config *config_new(struct env *e, const char *short_until)
{
        struct veil_config_opts opts = {0};
        struct veil_config *config;
        char path[128], err[1024];
        FILE *f;

        if (!e->dir[0]) {
                snprintf(e->dir, sizeof(e->dir), "/tmp/veil-retain-XXXXXX");
                cr_assert(mkdtemp(e->dir));
        }
        snprintf(path, sizeof(path), "%s/veil.yaml", e->dir);
        f = fopen(path, "w");
        cr_assert(f);
        fprintf(f,
                "kafka:\n  bootstrap.servers: %s\n  log_level: 0\n"
                "group: g\ninstance: i1\n"
                "registry: { url: file://%s }\n"
                "%s"
                "classes:\n  customer_id: { tier: internal }\n"
                "purposes:\n"
                "  short:\n    license: { id: L-S, valid_until: %s }\n"
                "    retention: 1s\n"
                "    transforms: { customer_id: keep }\n"
                "  long:\n    license: { id: L-L, valid_until: 2099-12-31 }\n"
                "    retention: 90d\n"
                "    transforms: { customer_id: hash }\n"
                "routes:\n  - source: src\n    key_class: customer_id\n"
                "    purposes: { short: src.short, long: src.long }\n"
                "topics: { dlq: t.dlq, audit: t.audit, ledger: t.ledger, "
                "erasure: t.erasure }\n",
                rd_kafka_mock_cluster_bootstraps(e->mc), e->dir, keys_yaml,
                short_until);
        fclose(f);
        if (strstr(keys_yaml, "ring:"))
                unsetenv("VEIL_HMAC_KEY"); /* it would be the active key */
        else
                setenv("VEIL_HMAC_KEY",
                       "retain-unit-test-master-key-0123456789abcdef", 1);
        config = veil_config_load(path, &opts, err, sizeof(err));
        cr_assert(config, "%s", err);
        return config;
}

static struct veil_sink *txn_sink(struct env *e, const char *txn_id)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        struct veil_sink *s;
        char err[256];

        rd_kafka_conf_set(conf, "bootstrap.servers",
                          rd_kafka_mock_cluster_bootstraps(e->mc), NULL, 0);
        rd_kafka_conf_set(conf, "transactional.id", txn_id, NULL, 0);
        rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
        s = veil_sink_new(conf, NULL, err, sizeof(err));
        cr_assert(s, "%s", err);
        return s;
}

/* Audit events go into the open transaction, as the worker's sink does. */
static int audit_produce(void *opaque, const char *topic, int32_t partition,
                         const void *key, size_t key_len, const void *value,
                         size_t value_len, rd_kafka_headers_t *hdrs,
                         char *errstr, size_t errstr_size)
{
        struct env *e = opaque;

        return veil_sink_write(e->sink, topic, partition, key, key_len, value,
                               value_len, hdrs, errstr, errstr_size);
}

static void setup_worker(struct env *e, const char *short_until)
{
        char err[512];

        e->config = config_new(e, short_until);
        e->sink   = txn_sink(e, "g-i1");
        e->audit  = veil_audit_new(e->config, "g-i1", NULL, 1, audit_produce, e,
                                   err, sizeof(err));
        cr_assert(e->audit, "%s", err);
        e->r = veil_retain_new(e->config, e->sink, e->audit, err, sizeof(err));
        cr_assert(e->r, "%s", err);
}

static void teardown_worker(struct env *e)
{
        veil_retain_destroy(e->r);
        veil_audit_destroy(e->audit);
        e->audit = NULL;
        veil_sink_destroy(e->sink);
        veil_config_destroy(e->config);
        e->r      = NULL;
        e->sink   = NULL;
        e->config = NULL;
}

static void mock_down(struct env *e)
{
        char cmd[128];

        teardown_worker(e);
        rd_kafka_mock_cluster_destroy(e->mc);
        rd_kafka_destroy(e->mrk);
        if (e->dir[0]) {
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
                cr_assert_eq(system(cmd), 0);
        }
}

static void txn_begin(struct env *e)
{
        cr_assert_eq(veil_sink_begin(e->sink), VEIL_SINK_OK);
        veil_retain_begin(e->r);
}

static void txn_commit(struct env *e)
{
        char err[512];

        cr_assert_eq(veil_retain_flush(e->r, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(veil_sink_commit(e->sink, NULL, NULL), VEIL_SINK_OK, "%s",
                     veil_sink_fatal(e->sink));
        veil_retain_commit(e->r);
        veil_audit_commit(e->audit);
}

static void txn_abort(struct env *e)
{
        cr_assert_eq(veil_sink_abort(e->sink), VEIL_SINK_OK);
        veil_retain_rollback(e->r);
        veil_audit_rollback(e->audit);
}

static const struct veil_route_purpose *rp_of(struct env *e, const char *name)
{
        const struct veil_route *route = &e->config->policy.routes[0];
        size_t j;

        for (j = 0; j < route->n_purposes; j++)
                if (!strcmp(route->purposes[j].purpose, name))
                        return &route->purposes[j];
        cr_assert_fail("no purpose %s", name);
        return NULL;
}

/* Output `key` for purpose of the source record keyed skey. */
static void note_src(struct env *e, const char *purpose, int32_t partition,
                     const char *skey, const char *key, bool tombstone,
                     int64_t ts)
{
        char err[512];

        cr_assert_eq(veil_retain_note(e->r, &e->config->policy.routes[0],
                                      rp_of(e, purpose), partition, skey,
                                      strlen(skey), key, strlen(key), tombstone,
                                      ts, err, sizeof(err)),
                     0, "%s", err);
}

/* A source record whose key is its one output's key. */
static void note(struct env *e, const char *purpose, int32_t partition,
                 const char *key, bool tombstone, int64_t ts)
{
        note_src(e, purpose, partition, key, key, tombstone, ts);
}

/* The consumer of the messages read_all returned: a handle is destroyed
 * only after its messages (rd_kafka_destroy waits for them). */
static rd_kafka_t *reader;

/* Every message of topic/partition, read_uncommitted from the start (the
 * mock cluster has nothing else). Caller frees them with msgs_free before
 * the next read_all. */
static size_t read_all(struct env *e, const char *topic, int32_t partition,
                       rd_kafka_message_t **out, size_t cap)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_t *rk;
        char err[256];
        size_t n = 0;

        rd_kafka_conf_set(conf, "bootstrap.servers",
                          rd_kafka_mock_cluster_bootstraps(e->mc), NULL, 0);
        rd_kafka_conf_set(conf, "group.id", "reader", NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
        rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        cr_assert(rk, "%s", err);
        rd_kafka_poll_set_consumer(rk);
        parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, topic, partition)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        for (;;) {
                rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 10000);

                cr_assert(rkm, "no end of %s/%d", topic, (int)partition);
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        rd_kafka_message_destroy(rkm);
                        break;
                }
                cr_assert_eq(rkm->err, 0, "%s", rd_kafka_message_errstr(rkm));
                cr_assert_lt(n, cap);
                out[n++] = rkm;
        }
        rd_kafka_assign(rk, NULL);
        reader = rk;
        return n;
}

static void msgs_free(rd_kafka_message_t **m, size_t n)
{
        while (n--)
                rd_kafka_message_destroy(m[n]);
        if (reader)
                rd_kafka_destroy(reader);
        reader = NULL;
}

static const char *header(const rd_kafka_message_t *rkm, const char *name,
                          char *buf, size_t size)
{
        rd_kafka_headers_t *hdrs = NULL;
        const void *v;
        size_t len;

        if (rd_kafka_message_headers(rkm, &hdrs) ||
            rd_kafka_header_get_last(hdrs, name, &v, &len) || len >= size)
                return NULL;
        memcpy(buf, v, len);
        buf[len] = '\0';
        return buf;
}

static void assign(struct env *e, int32_t partition, bool revoke)
{
        rd_kafka_topic_partition_list_t *parts =
                rd_kafka_topic_partition_list_new(1);
        char err[512];

        rd_kafka_topic_partition_list_add(parts, "src", partition);
        if (revoke)
                veil_retain_revoke(e->r, parts);
        else
                cr_assert_eq(veil_retain_assign(e->r, parts, err, sizeof(err)),
                             0, "%s", err);
        rd_kafka_topic_partition_list_destroy(parts);
}

Test(retain, ledger_writes_coalesce_on_the_source_partition)
{
        struct env e;
        rd_kafka_message_t *m[16];
        static struct veil_ledger_group g;
        int64_t now = veil_now_ms();
        char err[256];
        size_t n;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note(&e, "long", 1, "k1:aaa", false, now);
        note(&e, "long", 1, "k1:aaa", false, now + 1000); /* renewed */
        note(&e, "long", 1, "k1:aaa", false, now + 500);  /* older: no-op */
        note(&e, "short", 1, "C1", false, now);
        note(&e, "short", 0, "C2", false, now);
        note(&e, "short", 0, "C3", false, now);
        note(&e, "short", 0, "C3", true, now); /* deleted upstream */
        cr_assert_eq(veil_retain_count(e.r), 3);
        txn_commit(&e);

        n = read_all(&e, "t.ledger", 1, m, 16);
        cr_assert_eq(n, 2, "one record per key: %zu", n);
        cr_assert_eq(veil_ledger_decode2(m[0]->key, m[0]->key_len,
                                         m[0]->payload, m[0]->len, &g, err,
                                         sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(g.source_len, strlen("src"));
        cr_assert_eq(g.n, 1);
        cr_assert_eq(g.entries[0].topic_len, strlen("src.long"));
        cr_assert_eq(g.entries[0].key_len, strlen("k1:aaa"));
        cr_assert_eq(g.entries[0].record_ts_ms, now + 1000);
        cr_assert_eq(g.entries[0].deadline_ms, now + 1000 + 90LL * 86400000);
        cr_assert_eq(g.partition, 1);
        /* The source key is nowhere in the record. */
        cr_assert_null(memmem(m[0]->key, m[0]->key_len, "k1:aaa", 6));
        msgs_free(m, n);
        n = read_all(&e, "t.ledger", 0, m, 16);
        cr_assert_eq(n, 2); /* C2, and C3's put replaced by its tombstone */
        cr_assert_null(m[1]->payload);
        msgs_free(m, n);
        mock_down(&e);
}

Test(retain, rollback_forgets_the_transaction)
{
        struct env e;
        int64_t now = veil_now_ms();
        rd_kafka_message_t *m[4];
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note(&e, "long", 0, "k1:aaa", false, now);
        txn_commit(&e);
        txn_begin(&e);
        note(&e, "long", 0, "k1:bbb", false, now);
        note(&e, "long", 0, "k1:aaa", true, now);
        cr_assert_eq(veil_retain_count(e.r), 1);
        txn_abort(&e);
        cr_assert_eq(veil_retain_count(e.r), 1);
        /* The aborted changes never reach the ledger, not even with the
         * next commit. */
        txn_begin(&e);
        txn_commit(&e);
        got = read_all(&e, "t.ledger", 0, m, 4);
        cr_assert_eq(got, 1, "%zu", got);
        msgs_free(m, got);
        mock_down(&e);
}

Test(retain, passed_deadlines_become_tombstones_with_headers)
{
        struct env e;
        rd_kafka_message_t *m[8];
        char err[512], buf[64];
        int64_t now = veil_now_ms(), n;
        struct veil_retain_stats st;
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note(&e, "short", 0, "C1", false, now - 5000); /* due */
        note(&e, "short", 0, "C2", false, now + 60000);
        note(&e, "long", 0, "k1:x", false, now - 5000);
        txn_commit(&e);
        cr_assert(veil_retain_due(e.r, now));
        txn_begin(&e);
        n = veil_retain_tick(e.r, now, err, sizeof(err));
        cr_assert_geq(n, 1, "%s", err);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 2);
        cr_assert_not(veil_retain_due(e.r, now));

        got = read_all(&e, "src.short", 0, m, 8);
        cr_assert_eq(got, 1);
        cr_assert_null(m[0]->payload);
        cr_assert_eq(m[0]->key_len, 2);
        cr_assert_eq(memcmp(m[0]->key, "C1", 2), 0);
        cr_assert_str_eq(header(m[0], "veil.reason", buf, sizeof(buf)),
                         "retention");
        cr_assert_str_eq(header(m[0], "veil.purpose", buf, sizeof(buf)),
                         "short");
        cr_assert_str_eq(header(m[0], "veil.license", buf, sizeof(buf)), "L-S");
        msgs_free(m, got);
        /* The ledger says the key is gone; the audit says how many. */
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 4);
        cr_assert_null(m[3]->payload);
        msgs_free(m, got);
        got = read_all(&e, "t.audit", 0, m, 8);
        cr_assert_eq(got, 1);
        cr_assert(strstr((const char *)m[0]->payload, "\"tombstones\":1"));
        cr_assert(
                strstr((const char *)m[0]->payload, "\"segment_start\":true"));
        msgs_free(m, got);
        veil_retain_stats(e.r, &st);
        cr_assert_eq(st.tombstones, 1);
        cr_assert_eq(st.tracked, 2);
        mock_down(&e);
}

Test(retain, restore_takes_only_the_assigned_partitions_and_revoke_drops)
{
        struct env e;
        int64_t now = veil_now_ms();

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note(&e, "short", 0, "C0", false, now + 60000);
        note(&e, "long", 0, "k1:0", false, now);
        note(&e, "short", 1, "C1", false, now + 60000);
        note(&e, "short", 1, "C9", false, now + 60000);
        txn_commit(&e);
        txn_begin(&e);
        note(&e, "short", 1, "C9", true, now);
        txn_commit(&e);
        teardown_worker(&e);

        /* Another worker takes partition 1 over, then partition 0. */
        setup_worker(&e, "2099-12-31");
        assign(&e, 1, false);
        cr_assert_eq(veil_retain_count(e.r), 1); /* C1; C9 was deleted */
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 3);
        assign(&e, 1, true);
        cr_assert_eq(veil_retain_count(e.r), 2);
        cr_assert_not(veil_retain_due(e.r, now));
        mock_down(&e);
}

Test(retain, restored_keys_of_an_ended_licence_are_purged)
{
        struct env e;
        rd_kafka_message_t *m[8];
        char err[512], buf[64];
        int64_t now = veil_now_ms();
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note(&e, "short", 0, "C0", false, now + 3600000);
        note(&e, "long", 0, "k1:0", false, now);
        txn_commit(&e);
        teardown_worker(&e);

        setup_worker(&e, "2020-01-01");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 2);
        cr_assert(veil_retain_due(e.r, now));
        txn_begin(&e);
        cr_assert_geq(veil_retain_tick(e.r, now, err, sizeof(err)), 1, "%s",
                      err);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 1);
        got = read_all(&e, "src.short", 0, m, 8);
        cr_assert_eq(got, 1);
        cr_assert_str_eq(header(m[0], "veil.reason", buf, sizeof(buf)),
                         "license-expired");
        msgs_free(m, got);
        mock_down(&e);
}

/* ---- one ledger record per source key (ledger version 2) ---------------- */

static void decode2(rd_kafka_message_t *m, struct veil_ledger_group *g)
{
        char err[256];

        cr_assert_eq(veil_ledger_key_version(m->key, m->key_len), 2);
        cr_assert_eq(veil_ledger_decode2(m->key, m->key_len, m->payload, m->len,
                                         g, err, sizeof(err)),
                     0, "%s", err);
}

Test(retain, one_ledger_record_holds_every_purpose_of_a_source_key)
{
        static struct veil_ledger_group g;
        struct env e;
        rd_kafka_message_t *m[8];
        int64_t now = veil_now_ms();
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note_src(&e, "short", 1, "S1", "C1", false, now);
        note_src(&e, "long", 1, "S1", "k1:h1", false, now);
        note_src(&e, "short", 1, "S2", "C2", false, now);
        cr_assert_eq(veil_retain_count(e.r), 2);
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "long"), "S1", 2, "k1:h1", 5),
                     1);
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "long"), "S2", 2, "k1:h1", 5),
                     0);
        txn_commit(&e);

        got = read_all(&e, "t.ledger", 1, m, 8);
        cr_assert_eq(got, 2, "one record per source key, not per purpose: %zu",
                     got);
        decode2(m[0], &g);
        cr_assert_eq(g.n, 2);
        cr_assert_eq(g.partition, 1);
        cr_assert_eq(g.entries[0].topic_len, strlen("src.short"));
        cr_assert_eq(memcmp(g.entries[1].key, "k1:h1", 5), 0);
        cr_assert_eq(g.entries[0].deadline_ms, now + 1000);
        cr_assert_null(memmem(m[0]->key, m[0]->key_len, "S1", 2));
        msgs_free(m, got);
        mock_down(&e);
}

Test(retain, a_passed_deadline_rewrites_the_record_without_its_entry)
{
        static struct veil_ledger_group g;
        struct env e;
        rd_kafka_message_t *m[8];
        int64_t now = veil_now_ms();
        char err[512];
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note_src(&e, "short", 0, "S1", "C1", false, now - 5000); /* due */
        note_src(&e, "long", 0, "S1", "k1:h1", false, now);
        txn_commit(&e);
        txn_begin(&e);
        cr_assert_geq(veil_retain_tick(e.r, now, err, sizeof(err)), 1, "%s",
                      err);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 1);
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "short"), "S1", 2, "C1", 2),
                     0);
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "long"), "S1", 2, "k1:h1", 5),
                     1);
        got = read_all(&e, "src.short", 0, m, 8);
        cr_assert_eq(got, 1);
        cr_assert_null(m[0]->payload);
        msgs_free(m, got);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 2);
        cr_assert_eq(m[0]->key_len, m[1]->key_len);
        cr_assert_eq(memcmp(m[0]->key, m[1]->key, m[0]->key_len), 0);
        decode2(m[1], &g);
        cr_assert_eq(g.n, 1, "rewritten without the short entry");
        cr_assert_eq(memcmp(g.entries[0].key, "k1:h1", 5), 0);
        msgs_free(m, got);

        /* Deleted upstream: the last entry goes, and the record with it. */
        txn_begin(&e);
        note_src(&e, "long", 0, "S1", "k1:h1", true, now);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 0);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 3);
        decode2(m[2], &g);
        cr_assert(g.tombstone);
        msgs_free(m, got);

        /* A fresh worker restores nothing of it. */
        teardown_worker(&e);
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 0);
        mock_down(&e);
}

/* A version 1 record as a worker before version 2 wrote it. */
static void produce_v1(struct env *e, const char *topic, const char *key,
                       int64_t deadline, int64_t ts, int32_t partition)
{
        struct veil_ledger_value lv = {deadline, ts, partition};
        unsigned char k[128], v[VEIL_LEDGER_VALUE_LEN];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[256];
        size_t klen;
        rd_kafka_t *rk;

        cr_assert_eq(veil_ledger_key_encode(topic, key, strlen(key), k,
                                            sizeof(k), &klen, err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(veil_ledger_value_encode(&lv, v, err, sizeof(err)), 0);
        rd_kafka_conf_set(conf, "bootstrap.servers",
                          rd_kafka_mock_cluster_bootstraps(e->mc), NULL, 0);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        cr_assert(rk, "%s", err);
        cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t.ledger"),
                                       RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_KEY(k, klen),
                                       RD_KAFKA_V_VALUE(v, sizeof(v)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     0);
        cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
        rd_kafka_destroy(rk);
}

Test(retain, version_1_ledgers_restore_and_move_to_version_2)
{
        static struct veil_ledger_group g;
        struct veil_ledger_record rec;
        struct env e;
        rd_kafka_message_t *m[8];
        int64_t now = veil_now_ms(), later = now + 60000;
        char err[512];
        size_t got;

        mock_up(&e);
        /* An existing ledger: two keys of version 1. */
        produce_v1(&e, "src.short", "C7", later + 1000, later, 0);
        produce_v1(&e, "src.long", "k1:z", now + 90LL * 86400000, now, 0);
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 2, "nothing lost in the upgrade");
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "short"), "S7", 2, "C7", 2),
                     1);
        /* The key written again: its version 1 record gets a tombstone and
         * its entry joins the source key's version 2 record, keeping the
         * later deadline. */
        txn_begin(&e);
        note_src(&e, "short", 0, "S7", "C7", false, now);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 2);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 4, "%zu", got);
        cr_assert_eq(veil_ledger_decode(m[2]->key, m[2]->key_len, m[2]->payload,
                                        m[2]->len, &rec, err, sizeof(err)),
                     0, "%s", err);
        cr_assert(rec.tombstone);
        cr_assert_eq(memcmp(rec.key, "C7", 2), 0);
        decode2(m[3], &g);
        cr_assert_eq(g.n, 1);
        cr_assert_eq(g.entries[0].deadline_ms, later + 1000);
        cr_assert_eq(g.entries[0].record_ts_ms, later);
        msgs_free(m, got);

        /* The next owner restores both formats: C7 once, k1:z. */
        teardown_worker(&e);
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 2);
        cr_assert_not(veil_retain_due(e.r, later));
        cr_assert(veil_retain_due(e.r, later + 1000));
        txn_begin(&e);
        cr_assert_geq(veil_retain_tick(e.r, later + 1000, err, sizeof(err)), 1,
                      "%s", err);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 1);
        got = read_all(&e, "src.short", 0, m, 8);
        cr_assert_eq(got, 1, "one tombstone for C7: %zu", got);
        msgs_free(m, got);
        /* A version 1 key's own expiry: a version 1 tombstone. */
        txn_begin(&e);
        cr_assert_geq(
                veil_retain_tick(e.r, now + 91LL * 86400000, err, sizeof(err)),
                1, "%s", err);
        txn_commit(&e);
        cr_assert_eq(veil_retain_count(e.r), 0);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 6, "%zu", got);
        cr_assert_eq(veil_ledger_key_version(m[5]->key, m[5]->key_len), 1);
        cr_assert_null(m[5]->payload);
        msgs_free(m, got);
        teardown_worker(&e);
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 0);
        mock_down(&e);
}

#define RING_K1 "printf %s ledger-ring-key-one-0123456789abcdef0123"
#define RING_K2 "printf %s ledger-ring-key-two-0123456789abcdef0123"

Test(retain, a_record_written_before_a_key_rotation_joins_the_new_one)
{
        static struct veil_ledger_group g;
        struct env e;
        rd_kafka_message_t *m[8];
        int64_t now = veil_now_ms();
        char err[512];
        size_t got;

        mock_up(&e);
        keys_yaml = "keys:\n  active: k1\n  ring:\n"
                    "    k1: { command: \"" RING_K1 "\" }\n";
        setup_worker(&e, "2099-12-31");
        txn_begin(&e);
        note_src(&e, "short", 0, "S1", "C1", false, now - 500);
        txn_commit(&e);
        teardown_worker(&e);

        /* k2 becomes active; k1 stays in the ring. */
        keys_yaml = "keys:\n  active: k2\n  ring:\n"
                    "    k1: { command: \"" RING_K1 "\" }\n"
                    "    k2: { command: \"" RING_K2 "\" }\n";
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 1);
        cr_assert_eq(veil_retain_holds(e.r, &e.config->policy.routes[0],
                                       rp_of(&e, "short"), "S1", 2, "C1", 2),
                     1, "held under the old key's record");
        txn_begin(&e);
        note_src(&e, "short", 0, "S1", "C1", false, now + 60000);
        txn_commit(&e);
        /* One record holds C1, with the newer deadline: the old one's
         * deadline would otherwise tombstone the newer data. */
        cr_assert_eq(veil_retain_count(e.r), 1);
        cr_assert_not(veil_retain_due(e.r, now + 1000));
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 3, "%zu", got);
        decode2(m[0], &g);
        cr_assert_eq(g.n, 1);
        decode2(m[1], &g); /* the old record's tombstone */
        cr_assert(g.tombstone);
        cr_assert_eq(m[0]->key_len, m[1]->key_len);
        cr_assert_eq(memcmp(m[0]->key, m[1]->key, m[0]->key_len), 0);
        decode2(m[2], &g);
        cr_assert_eq(g.n, 1);
        cr_assert_eq(g.entries[0].deadline_ms, now + 61000);
        cr_assert_neq(memcmp(m[0]->key, m[2]->key, m[0]->key_len), 0);
        msgs_free(m, got);
        teardown_worker(&e);
        setup_worker(&e, "2099-12-31");
        assign(&e, 0, false);
        cr_assert_eq(veil_retain_count(e.r), 1);
        cr_assert_not(veil_retain_due(e.r, now + 1000));
        txn_begin(&e);
        cr_assert_eq(veil_retain_tick(e.r, now + 1000, err, sizeof(err)), 0,
                     "%s", err);
        txn_commit(&e);
        keys_yaml = "keys: { key_id: k1 }\n";
        mock_down(&e);
}

Test(retain, a_noted_key_is_copied_before_the_caller_reuses_its_buffer)
{
        static struct veil_ledger_group g;
        const struct veil_route *route;
        struct env e;
        rd_kafka_message_t *m[8];
        int64_t now = veil_now_ms();
        char err[512], buf[16];
        size_t got;

        mock_up(&e);
        setup_worker(&e, "2099-12-31");
        route = &e.config->policy.routes[0];
        txn_begin(&e);
        /* The worker's output buffers are reused record after record. */
        strcpy(buf, "C1");
        cr_assert_eq(veil_retain_note(e.r, route, rp_of(&e, "short"), 0, "S1",
                                      2, buf, 2, false, now, err, sizeof(err)),
                     0, "%s", err);
        strcpy(buf, "k1:h1");
        cr_assert_eq(veil_retain_note(e.r, route, rp_of(&e, "long"), 0, "S1", 2,
                                      buf, 5, false, now, err, sizeof(err)),
                     0, "%s", err);
        strcpy(buf, "XXXXX");
        /* The same source key again (renewed), then another. */
        note_src(&e, "short", 0, "S1", "C1", false, now + 10);
        note_src(&e, "short", 0, "S2", "C2", false, now);
        cr_assert_eq(veil_retain_holds(e.r, route, rp_of(&e, "short"), "S2", 2,
                                       "C2", 2),
                     1);
        cr_assert_eq(veil_retain_count(e.r), 2);
        txn_commit(&e);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 2, "one record per source key: %zu", got);
        decode2(m[0], &g);
        cr_assert_eq(g.n, 2);
        cr_assert_eq(memcmp(g.entries[0].key, "C1", 2), 0);
        cr_assert_eq(g.entries[0].record_ts_ms, now + 10);
        cr_assert_eq(g.entries[1].key_len, 5);
        cr_assert_eq(memcmp(g.entries[1].key, "k1:h1", 5), 0);
        msgs_free(m, got);
        /* An aborted transaction's waiting group is forgotten. */
        txn_begin(&e);
        note_src(&e, "short", 0, "S3", "C3", false, now);
        cr_assert_eq(veil_retain_count(e.r), 3);
        txn_abort(&e);
        cr_assert_eq(veil_retain_count(e.r), 2);
        txn_begin(&e);
        txn_commit(&e);
        got = read_all(&e, "t.ledger", 0, m, 8);
        cr_assert_eq(got, 2, "%zu", got);
        msgs_free(m, got);
        mock_down(&e);
}
