/* retain.c - the worker's retention side: deadlines of the keys it wrote,
 * kept in the ledger inside the worker's transactions, restored on
 * assignment, turned into tombstones when they pass; erasure requests. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "headers.h"
#include "derive.h"
#include "kafka.h"
#include "ledger.h"
#include "plan.h"
#include "retain.h"
#include "tally.h"
#include "shred.h"
#include "sink.h"
#include "retention.h"
#include "transform.h"
#include "log.h"
#include "util.h"
#include "veil.h"

/* Deadlines handled per tick: a mass expiry is spread over transactions
 * so that none grows without bound. */
#define POP_BATCH 1000
#define POP_MAX_PER_TICK 10000
/* Erasure requests handled per tick. */
#define ERASE_MAX_PER_TICK 100
/* How long an assignment may take to read its ledger partitions. */
#define RESTORE_TIMEOUT_MS 120000

/* A purpose topic and where the current config has it. The number of a
 * topic (its index) is what the deadline index calls a purpose; it never
 * changes for the life of the worker, reloads only append. */
struct topic_slot {
        char *topic;
        const struct veil_route *route; /* NULL: not configured now */
        const struct veil_route_purpose *rp;
};

/* An erasure partition the open transaction consumed from. */
struct erase_pos {
        char *topic;
        int32_t partition;
        int64_t first, last;
};

/* A group: every purpose's entry for one (route source, source key), as
 * the ledger's version 2 record holds it. In the index a group is one
 * entry: purpose = the route's slot number, key = the 16-byte ledger id
 * (its identity) + a payload
 *   flags (1) | n (1) | n times: slot (2) | deadline (8) | ts (8) |
 *   key length (2) | key (the purpose's transformed key)
 * (integers in host order: it never leaves the process), deadline = the
 * earliest of its entries', partition = the source partition. */
#define G_V1                                                                   \
        0x01 /* from a version 1 ledger record: one entry, and its id          \
              * is pseudo_id's (the source key is not known) */
#define G_MAX VEIL_LEDGER_MAX_ENTRIES

struct gmem {
        uint16_t slot;
        int64_t deadline_ms, ts_ms;
        const unsigned char *key; /* into grp.buf, or the caller's bytes */
        size_t key_len;
};

struct grp {
        uint16_t rs;
        unsigned char id[VEIL_LEDGER_ID_LEN];
        unsigned char flags;
        bool found; /* in the index when loaded */
        int32_t partition;
        size_t n;
        struct gmem m[G_MAX];
        struct veil_buf buf; /* the loaded payload */
};

struct veil_retain {
        const struct veil_config *config;
        struct veil_sink *sink; /* borrowed */

        /* route sources: the index's purpose numbers for groups */
        struct topic_slot *rslots;
        size_t n_rslots;
        struct veil_hmac lk; /* K_ledger */
        /* K_ledger of the ring's other keys: a source key's record written
         * under one of them (before a rotation) joins the current one */
        struct veil_hmac *alias;
        size_t n_alias;
        bool alias_done; /* for the id cached below */
        struct grp *ag;  /* scratch */
        unsigned char **chunks;
        size_t n_chunks;
        bool v1_seen; /* a version 1 record was restored */
        /* The last group note touched: g_valid when it is the index's
         * state, g_dirty when changed and not stored yet (a record's
         * purposes are noted one after another: one store per record). */
        struct grp g;
        bool g_valid, g_dirty;
        struct veil_ledger_group *lg; /* restore's decoding space */
        struct veil_buf enc, enc2;
        /* the id of the last source key asked about */
        const struct veil_route *id_route;
        struct veil_buf id_skey;
        unsigned char id[VEIL_LEDGER_ID_LEN];

        struct veil_retention *ri;
        struct veil_ledger_batch *batch;
        struct topic_slot *slots;
        size_t n_slots;
        int32_t ledger_parts; /* 0: not looked up yet */

        /* key transforms, one per policy purpose (same index) */
        struct veil_tx_keys *keys;
        struct veil_plan_env *envs;
        size_t n_envs;
        struct veil_buf key;

        rd_kafka_t *restore;       /* assign-only consumer of the ledger */
        rd_kafka_t *erasure;       /* group <group>-erasure; NULL when off */
        rd_kafka_message_t *stash; /* polled by due(), not handled yet */
        struct veil_erasure_keys ek;
        bool ek_ok;
        struct erase_pos *epos;
        size_t n_epos;
        /* An erasure partition the open transaction consumed from was
         * revoked: another member may already be reading the same
         * requests, so the transaction must not commit them. */
        bool epos_revoked;
        bool erasure_warned;

        struct veil_audit *audit; /* borrowed: the worker's emitter */
        struct veil_tally *tally; /* borrowed: the pipeline's; may be NULL */

        struct veil_retention_entry *popped;
        int64_t n_tombstones, n_erasures;
        struct veil_shred *shred; /* per-subject keys; NULL when unused */
};

/* ---- purpose topics and key transforms ---------------------------------- */

static void slots_bind(struct veil_retain *r)
{
        const struct veil_policy *policy = &r->config->policy;
        size_t i, j, k;

        for (k = 0; k < r->n_slots; k++) {
                r->slots[k].route = NULL;
                r->slots[k].rp    = NULL;
        }
        for (i = 0; i < policy->n_routes; i++)
                for (j = 0; j < policy->routes[i].n_purposes; j++) {
                        const struct veil_route_purpose *rp =
                                &policy->routes[i].purposes[j];

                        for (k = 0; k < r->n_slots; k++)
                                if (!strcmp(r->slots[k].topic, rp->topic))
                                        break;
                        if (k == r->n_slots) {
                                r->slots = veil_realloc(
                                        r->slots,
                                        (r->n_slots + 1) * sizeof(*r->slots));
                                r->slots[k].topic = veil_strdup(rp->topic);
                                r->n_slots++;
                        }
                        r->slots[k].route = &policy->routes[i];
                        r->slots[k].rp    = rp;
                }
}

static void rslots_bind(struct veil_retain *r)
{
        const struct veil_policy *policy = &r->config->policy;
        size_t i, k;

        for (k = 0; k < r->n_rslots; k++)
                r->rslots[k].route = NULL;
        for (i = 0; i < policy->n_routes; i++) {
                for (k = 0; k < r->n_rslots; k++)
                        if (!strcmp(r->rslots[k].topic,
                                    policy->routes[i].source))
                                break;
                if (k == r->n_rslots) {
                        r->rslots = veil_realloc(r->rslots,
                                                 (r->n_rslots + 1) *
                                                         sizeof(*r->rslots));
                        r->rslots[k].topic =
                                veil_strdup(policy->routes[i].source);
                        r->rslots[k].rp = NULL;
                        r->n_rslots++;
                }
                r->rslots[k].route = &policy->routes[i];
        }
        r->id_route = NULL; /* routes moved */
}

static uint16_t rslot_of(const struct veil_retain *r, const char *source,
                         size_t len)
{
        size_t k;

        for (k = 0; k < r->n_rslots; k++)
                if (strlen(r->rslots[k].topic) == len &&
                    !memcmp(r->rslots[k].topic, source, len))
                        return (uint16_t)k;
        return UINT16_MAX;
}

/* The number of a configured purpose topic (slots_bind made one for each). */
static uint16_t slot_of(const struct veil_retain *r, const char *topic,
                        size_t len)
{
        size_t k;

        for (k = 0; k < r->n_slots; k++)
                if (strlen(r->slots[k].topic) == len &&
                    !memcmp(r->slots[k].topic, topic, len))
                        return (uint16_t)k;
        return UINT16_MAX;
}

static void envs_free(struct veil_tx_keys *keys, struct veil_plan_env *envs,
                      size_t n)
{
        size_t i;

        for (i = 0; i < n; i++) {
                veil_plan_env_free(&envs[i]);
                veil_tx_keys_destroy(&keys[i]);
        }
        free(envs);
        free(keys);
}

/* Key transforms of every purpose, as the license filter keys them. */
static int envs_new(const struct veil_config *config,
                    struct veil_tx_keys **keysp, struct veil_plan_env **envsp,
                    size_t *np, char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy = &config->policy;
        size_t n                         = policy->n_purposes, i;
        struct veil_tx_keys *keys        = veil_calloc(n + 1, sizeof(*keys));
        struct veil_plan_env *envs       = veil_calloc(n + 1, sizeof(*envs));
        int rc;

        for (i = 0; i < n; i++) {
                rc = veil_tx_keys_init(
                        &keys[i], config->keys.key, config->keys.key_len,
                        config->keys.key_id, policy->purposes[i].name,
                        config->keys.shared_across_purposes, errstr,
                        errstr_size);
                if (rc) {
                        envs_free(keys, envs, i);
                        return rc;
                }
                envs[i].keys = &keys[i];
        }
        *keysp = keys;
        *envsp = envs;
        *np    = n;
        return 0;
}

/* ---- Kafka handles ------------------------------------------------------- */

/* The erasure consumer's group rebalances when a worker joins or leaves.
 * Requests the open transaction consumed from a revoked partition are
 * read again by the partition's next owner, from the committed offset: the
 * transaction must then abort (veil_retain_flush says so) or both would
 * commit the same requests. Kafka does not fence this by itself: the
 * offsets go into the transaction with the group's new generation. */
static void erasure_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts,
                                 void *opaque)
{
        struct veil_retain *r = opaque;
        /* NULL once the consumer has left its group (while closing). */
        const char *protocol    = rd_kafka_rebalance_protocol(rk);
        bool cooperative        = protocol && !strcmp(protocol, "COOPERATIVE");
        rd_kafka_error_t *error = NULL;
        size_t i;
        int k;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
        } else {
                for (k = 0; k < parts->cnt; k++) {
                        const rd_kafka_topic_partition_t *tp = &parts->elems[k];

                        for (i = 0; i < r->n_epos; i++)
                                if (r->epos[i].partition == tp->partition &&
                                    !strcmp(r->epos[i].topic, tp->topic))
                                        r->epos_revoked = true;
                        if (r->stash && r->stash->partition == tp->partition &&
                            !strcmp(rd_kafka_topic_name(r->stash->rkt),
                                    tp->topic)) {
                                /* the next owner handles it */
                                veil_log("info", "erasure",
                                         "%s/%" PRId32 " revoked: a polled "
                                         "request is left to its next owner",
                                         tp->topic, tp->partition);
                                rd_kafka_message_destroy(r->stash);
                                r->stash = NULL;
                        }
                }
                /* A failed rebalance: nothing consumed may be committed. */
                if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && r->n_epos)
                        r->epos_revoked = true;
                if (cooperative && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
        }
        if (error) {
                veil_log("error", "erasure", "assignment failed: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
}

static rd_kafka_t *consumer_new(const struct veil_config *config,
                                const char *group, const char *fetch_wait_ms,
                                struct veil_retain *rebalance_opaque,
                                char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];
        rd_kafka_t *rk;

#define SET(k, v)                                                              \
        do {                                                                   \
                if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) !=         \
                    RD_KAFKA_CONF_OK) {                                        \
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,           \
                                  "kafka.%s: %s", k, err);                     \
                        rd_kafka_conf_destroy(conf);                           \
                        return NULL;                                           \
                }                                                              \
        } while (0)

        SET("auto.offset.reset", "earliest");
        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size) ||
            veil_kafka_conf_bound(conf, config, false, errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        SET("group.id", group);
        SET("isolation.level", "read_committed");
        SET("enable.auto.commit", "false");
        SET("enable.auto.offset.store", "false");
        SET("enable.partition.eof", "true");
        SET("fetch.wait.max.ms", fetch_wait_ms);
#undef SET
        if (rebalance_opaque) {
                rd_kafka_conf_set_rebalance_cb(conf, erasure_rebalance_cb);
                rd_kafka_conf_set_opaque(conf, rebalance_opaque);
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "consumer: %s",
                          err);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        return rk;
}

/* Partitions of the ledger topic, looked up once through the producer (a
 * producer's metadata request lets a broker that auto-creates topics create
 * it, as the first ledger write would). */
static int ledger_parts(struct veil_retain *r, char *errstr, size_t errstr_size)
{
        const char *topic = r->config->topics.ledger;
        int64_t deadline  = veil_now_ms() + 30000;
        rd_kafka_topic_t *rkt;

        if (r->ledger_parts > 0)
                return 0;
        rkt = rd_kafka_topic_new(veil_sink_producer(r->sink), topic, NULL);
        if (!rkt)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "ledger topic %s: %s", topic,
                                 rd_kafka_err2str(rd_kafka_last_error()));
        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err            = rd_kafka_metadata(
                                   veil_sink_producer(r->sink), 0, rkt, &md, 5000);

                if (!err && md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt > 0)
                        r->ledger_parts = md->topics[0].partition_cnt;
                else if (!err && md->topic_cnt == 1)
                        err = md->topics[0].err;
                if (md)
                        rd_kafka_metadata_destroy(md);
                if (r->ledger_parts > 0)
                        break;
                if (veil_now_ms() > deadline) {
                        rd_kafka_topic_destroy(rkt);
                        return veil_errf(errstr, errstr_size, VEIL_ENET,
                                         "ledger topic %s not available: %s "
                                         "(create it: veil topics)",
                                         topic, rd_kafka_err2str(err));
                }
                rd_kafka_poll(veil_sink_producer(r->sink), 200);
        }
        rd_kafka_topic_destroy(rkt);
        return 0;
}

/* The ledger partition of source partition p: p itself when the ledger has
 * as many partitions as the sources (the design), folded otherwise, which
 * the restore tolerates (ledger values name their source partition). */
static int32_t ledger_partition(const struct veil_retain *r, int32_t p)
{
        return r->ledger_parts > 0 ? p % r->ledger_parts : p;
}

/* Takes ownership of hdrs. */
static int produce(struct veil_retain *r, const char *topic, int32_t partition,
                   const void *key, size_t key_len, const void *value,
                   size_t value_len, rd_kafka_headers_t *hdrs, char *errstr,
                   size_t errstr_size)
{
        /* A failed transaction: the sink's commit aborts it and the batch
         * (this write with it) is redone. */
        return veil_sink_write(r->sink, topic, partition, key, key_len, value,
                               value_len, hdrs, errstr, errstr_size);
}

/* A tombstone for a tracked key on its purpose topic (route: its source,
 * for the tally; NULL when the route is no longer configured). */
static int tombstone(struct veil_retain *r, const struct veil_route *route,
                     const char *topic, const struct veil_purpose *purpose,
                     const void *key, size_t key_len, const char *reason,
                     char *errstr, size_t errstr_size)
{
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);

        rd_kafka_header_add(hdrs, VEIL_H_REASON, -1, reason, -1);
        rd_kafka_header_add(hdrs, VEIL_H_PURPOSE, -1,
                            purpose ? purpose->name : "", -1);
        rd_kafka_header_add(
                hdrs, VEIL_H_LICENSE, -1,
                purpose && purpose->license_id ? purpose->license_id : "", -1);
        rd_kafka_header_add(hdrs, VEIL_H_POLICY, -1, r->config->policy.digest,
                            -1);
        r->n_tombstones++;
        if (r->tally)
                veil_tally_tombstone(r->tally, route ? route->source : "",
                                     purpose ? purpose->name : "", reason);
        return produce(r, topic, RD_KAFKA_PARTITION_UA, key, key_len, NULL, 0,
                       hdrs, errstr, errstr_size);
}

/* ---- groups (ledger version 2) ----------------------------------------- */

static void alias_free(struct veil_hmac *alias, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                veil_hmac_cleanse(&alias[i]);
        free(alias);
}

static int lk_init(struct veil_retain *r, const struct veil_config *config,
                   char *errstr, size_t errstr_size)
{
        struct veil_hmac *alias = NULL;
        size_t i, n = 0;
        int rc;

        rc = veil_hmac_init_derived(&r->lk, config->keys.key,
                                    config->keys.key_len, VEIL_LEDGER_ID_INFO,
                                    errstr, errstr_size);
        if (rc)
                return rc;
        for (i = 0; i < config->keys.n_ring; i++) {
                const struct veil_key *k = &config->keys.ring[i];

                if (!k->key || k->len < 32 || k->key == config->keys.key)
                        continue;
                alias = veil_realloc(alias, (n + 1) * sizeof(*alias));
                rc    = veil_hmac_init_derived(&alias[n], k->key, k->len,
                                               VEIL_LEDGER_ID_INFO, errstr,
                                               errstr_size);
                if (rc) {
                        alias_free(alias, n);
                        return rc;
                }
                n++;
        }
        alias_free(r->alias, r->n_alias);
        r->alias    = alias;
        r->n_alias  = n;
        r->id_route = NULL;
        return 0;
}

/* The ledger id of the record key (skey) read from route's source; the
 * last one is remembered, since every purpose of a record asks. */
static const unsigned char *source_id(struct veil_retain *r,
                                      const struct veil_route *route,
                                      const void *skey, size_t sklen)
{
        if (r->id_route == route && r->id_skey.len == sklen &&
            (!sklen || !memcmp(r->id_skey.data, skey, sklen)))
                return r->id;
        veil_ledger_id(&r->lk, route->source, skey, sklen, r->id);
        r->alias_done = false;
        /* A copy of the source key (personal data) only for the compare;
         * wiped when the next one replaces it and at the end. */
        veil_cleanse(r->id_skey.data, r->id_skey.cap);
        r->id_skey.len = 0;
        veil_buf_append(&r->id_skey, skey, sklen);
        r->id_route = route;
        return r->id;
}

/* The id standing for a key restored from a version 1 record, whose
 * source key is unknown: "v1:" cannot start a topic name, so it is no
 * source's id. */
static void pseudo_id(const struct veil_retain *r, uint16_t slot,
                      const void *key, size_t key_len,
                      unsigned char id[VEIL_LEDGER_ID_LEN])
{
        char name[4 + VEIL_LEDGER_TOPIC_MAX + 1];

        snprintf(name, sizeof(name), "v1:%s", r->slots[slot].topic);
        veil_ledger_id(&r->lk, name, key, key_len, id);
}

/* Parses a payload (after the id) into g; bytes must outlive g. */
static void grp_parse(struct grp *g, const unsigned char *p, size_t len)
{
        size_t off = 2, i;

        g->flags = p[0];
        g->n     = p[1];
        for (i = 0; i < g->n && off + 20 <= len; i++) {
                uint16_t kl;

                memcpy(&g->m[i].slot, p + off, 2);
                memcpy(&g->m[i].deadline_ms, p + off + 2, 8);
                memcpy(&g->m[i].ts_ms, p + off + 10, 8);
                memcpy(&kl, p + off + 18, 2);
                g->m[i].key     = p + off + 20;
                g->m[i].key_len = kl;
                off += 20 + (size_t)kl;
        }
}

/* Loads group (rs, id) into r->g (empty and !found when not tracked). */
static struct grp *grp_load(struct veil_retain *r, uint16_t rs,
                            const unsigned char *id)
{
        struct grp *g = &r->g;
        struct veil_retention_entry e;

        if (r->g_valid && g->rs == rs && !memcmp(g->id, id, VEIL_LEDGER_ID_LEN))
                return g;
        g->rs = rs;
        memcpy(g->id, id, VEIL_LEDGER_ID_LEN);
        g->flags     = 0;
        g->found     = false;
        g->partition = 0;
        g->n         = 0;
        r->g_valid   = true; /* what the index says: nothing, or this */
        if (veil_retention_get(r->ri, rs, id, VEIL_LEDGER_ID_LEN, &e))
                return g;
        veil_cleanse(g->buf.data, g->buf.cap);
        g->buf.len = 0;
        veil_buf_append(&g->buf, e.key, e.key_len);
        g->found     = true;
        g->partition = e.partition;
        grp_parse(g, g->buf.data + VEIL_LEDGER_ID_LEN,
                  g->buf.len - VEIL_LEDGER_ID_LEN);
        return g;
}

/* Makes every entry's key bytes g's own (in g->buf): keys noted from the
 * caller's buffers or a scratch chunk outlive them while g waits. */
static void grp_own_keys(struct grp *g)
{
        size_t off[G_MAX], i, len = g->buf.len;
        const unsigned char *base = g->buf.data;
        bool in[G_MAX];

        for (i = 0; i < g->n; i++) {
                in[i] = !g->m[i].key_len ||
                        (base && g->m[i].key >= base &&
                         g->m[i].key + g->m[i].key_len <= base + len);
                off[i] = in[i] && g->m[i].key_len ? (size_t)(g->m[i].key - base)
                                                  : 0;
        }
        for (i = 0; i < g->n; i++)
                if (!in[i]) {
                        off[i] = g->buf.len;
                        veil_buf_append(&g->buf, g->m[i].key, g->m[i].key_len);
                }
        for (i = 0; i < g->n; i++)
                g->m[i].key = g->buf.data + off[i];
}

static ssize_t grp_find(const struct grp *g, uint16_t slot, const void *key,
                        size_t key_len)
{
        size_t i;

        for (i = 0; i < g->n; i++)
                if (g->m[i].slot == slot && g->m[i].key_len == key_len &&
                    (!key_len || !memcmp(g->m[i].key, key, key_len)))
                        return (ssize_t)i;
        return -1;
}

/* Entry i leaves the group. A version 1 key's ledger record is its own:
 * it gets its tombstone now. */
static int grp_drop(struct veil_retain *r, struct grp *g, size_t i,
                    char *errstr, size_t errstr_size)
{
        int rc = 0;

        if (g->flags & G_V1)
                rc = veil_ledger_batch_put(
                        r->batch, r->slots[g->m[i].slot].topic, g->m[i].key,
                        g->m[i].key_len, g->partition, NULL, errstr,
                        errstr_size);
        g->m[i] = g->m[--g->n];
        return rc;
}

/* Writes g back: into the index (or out of it when empty) and into the
 * transaction's ledger batch (one record per group per transaction: a
 * later store of the same group replaces the pending record). */
/* Puts g (n > 0) into the index as it is: the payload, the earliest
 * deadline, the partition. */
static int grp_index(struct veil_retain *r, struct grp *g, char *errstr,
                     size_t errstr_size)
{
        int64_t min = INT64_MAX;
        unsigned char hdr[2];
        size_t i;
        int rc;

        /* Member keys may point into g->buf: a separate buffer. */
        r->enc.len = 0;
        veil_buf_append(&r->enc, g->id, VEIL_LEDGER_ID_LEN);
        hdr[0] = g->flags;
        hdr[1] = (unsigned char)g->n;
        veil_buf_append(&r->enc, hdr, 2);
        for (i = 0; i < g->n; i++) {
                const struct gmem *m = &g->m[i];
                uint16_t kl          = (uint16_t)m->key_len;

                veil_buf_append(&r->enc, &m->slot, 2);
                veil_buf_append(&r->enc, &m->deadline_ms, 8);
                veil_buf_append(&r->enc, &m->ts_ms, 8);
                veil_buf_append(&r->enc, &kl, 2);
                veil_buf_append(&r->enc, m->key, m->key_len);
                if (m->deadline_ms < min)
                        min = m->deadline_ms;
        }
        rc = veil_retention_set(r->ri, g->rs, r->enc.data, r->enc.len, min,
                                g->partition, errstr, errstr_size);
        if (!rc) {
                /* g now reads from the bytes just stored. */
                struct veil_buf t = g->buf;

                g->buf   = r->enc;
                r->enc   = t;
                g->found = true;
                grp_parse(g, g->buf.data + VEIL_LEDGER_ID_LEN,
                          g->buf.len - VEIL_LEDGER_ID_LEN);
        }
        return rc;
}

static int grp_store(struct veil_retain *r, struct grp *g, char *errstr,
                     size_t errstr_size);

/* Stores the group a record's notes changed. */
static int grp_settle(struct veil_retain *r, char *errstr, size_t errstr_size)
{
        int rc;

        if (!r->g_dirty)
                return 0;
        r->g_dirty = false;
        rc         = grp_store(r, &r->g, errstr, errstr_size);
        if (rc)
                r->g_valid = false;
        return rc;
}

static int restore_set(struct veil_retain *r, struct grp *g, char *errstr,
                       size_t errstr_size)
{
        return grp_index(r, g, errstr, errstr_size);
}

static int grp_store(struct veil_retain *r, struct grp *g, char *errstr,
                     size_t errstr_size)
{
        unsigned char key2[2 + VEIL_LEDGER_TOPIC_MAX + 1 + VEIL_LEDGER_ID_LEN];
        struct veil_ledger_entry ents[G_MAX];
        const char *source = r->rslots[g->rs].topic;
        size_t i, klen, vlen;
        int rc;

        if (g->n == 0) {
                if (g->found)
                        veil_retention_remove(r->ri, g->rs, g->id,
                                              VEIL_LEDGER_ID_LEN, NULL);
                g->found = false;
                if (g->flags & G_V1)
                        return 0; /* grp_drop wrote the tombstones */
                rc = veil_ledger_key2_encode(source, g->id, key2, sizeof(key2),
                                             &klen, errstr, errstr_size);
                return rc ? rc
                          : veil_ledger_batch_put2(r->batch, key2, klen,
                                                   g->partition, NULL, 0,
                                                   errstr, errstr_size);
        }
        for (i = 0; i < g->n; i++) {
                const struct gmem *m = &g->m[i];

                ents[i].topic        = r->slots[m->slot].topic;
                ents[i].topic_len    = strlen(ents[i].topic);
                ents[i].key          = m->key;
                ents[i].key_len      = m->key_len;
                ents[i].deadline_ms  = m->deadline_ms;
                ents[i].record_ts_ms = m->ts_ms;
        }
        if (g->flags & G_V1) {
                /* Never rewritten as version 2 without its source key. */
                for (i = 0; i < g->n; i++) {
                        struct veil_ledger_value lv = {g->m[i].deadline_ms,
                                                       g->m[i].ts_ms,
                                                       g->partition};

                        rc = veil_ledger_batch_put(r->batch, ents[i].topic,
                                                   g->m[i].key, g->m[i].key_len,
                                                   g->partition, &lv, errstr,
                                                   errstr_size);
                        if (rc)
                                return rc;
                }
        } else {
                vlen = veil_ledger_value2_len(ents, g->n);
                veil_buf_reserve(&r->enc2, vlen);
                rc = veil_ledger_key2_encode(source, g->id, key2, sizeof(key2),
                                             &klen, errstr, errstr_size);
                if (!rc)
                        rc = veil_ledger_value2_encode(
                                g->partition, ents, g->n, r->enc2.data,
                                r->enc2.cap, &vlen, errstr, errstr_size);
                if (!rc)
                        rc = veil_ledger_batch_put2(r->batch, key2, klen,
                                                    g->partition, r->enc2.data,
                                                    vlen, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        return grp_index(r, g, errstr, errstr_size);
}

/* A version 1 key (slot, key) restored before this run's version 2
 * records: taken out of the index and the ledger (a tombstone for its
 * version 1 record) so that its group holds it from now on. *dl / *ts get
 * its deadline and timestamp, or stay when it is not tracked. */
static int absorb_v1(struct veil_retain *r, uint16_t rs, uint16_t slot,
                     const void *key, size_t key_len, int64_t *dl, int64_t *ts,
                     char *errstr, size_t errstr_size)
{
        unsigned char pid[VEIL_LEDGER_ID_LEN];
        struct veil_retention_entry e;
        struct grp v;
        int rc;

        if (!r->v1_seen)
                return 0;
        pseudo_id(r, slot, key, key_len, pid);
        if (veil_retention_get(r->ri, rs, pid, VEIL_LEDGER_ID_LEN, &e))
                return 0;
        memset(&v, 0, sizeof(v));
        grp_parse(&v, e.key + VEIL_LEDGER_ID_LEN,
                  e.key_len - VEIL_LEDGER_ID_LEN);
        if (v.n == 1) {
                if (v.m[0].deadline_ms > *dl) {
                        *dl = v.m[0].deadline_ms;
                        *ts = v.m[0].ts_ms;
                }
        }
        rc = veil_ledger_batch_put(r->batch, r->slots[slot].topic, key, key_len,
                                   e.partition, NULL, errstr, errstr_size);
        veil_retention_remove(r->ri, rs, pid, VEIL_LEDGER_ID_LEN, NULL);
        return rc;
}

static void chunks_free(struct veil_retain *r)
{
        size_t i;

        for (i = 0; i < r->n_chunks; i++)
                free(r->chunks[i]);
        r->n_chunks = 0;
}

/* Loads the group of (rs, id under alias a) into r->ag, its bytes in a
 * chunk that lives until chunks_free; false when not tracked. */
static bool alias_load(struct veil_retain *r, size_t a, uint16_t rs,
                       const struct veil_route *route, const void *skey,
                       size_t sklen)
{
        struct veil_retention_entry e;
        unsigned char *chunk;

        veil_ledger_id(&r->alias[a], route->source, skey, sklen, r->ag->id);
        if (veil_retention_get(r->ri, rs, r->ag->id, VEIL_LEDGER_ID_LEN, &e))
                return false;
        chunk = veil_malloc(e.key_len);
        memcpy(chunk, e.key, e.key_len);
        r->chunks =
                veil_realloc(r->chunks, (r->n_chunks + 1) * sizeof(*r->chunks));
        r->chunks[r->n_chunks++] = chunk;
        r->ag->rs                = rs;
        r->ag->found             = true;
        r->ag->partition         = e.partition;
        grp_parse(r->ag, chunk + VEIL_LEDGER_ID_LEN,
                  e.key_len - VEIL_LEDGER_ID_LEN);
        return true;
}

/* Records of the source key written under the ring's other keys (before a
 * key rotation) join g, the current one, keeping each entry's later
 * deadline: two records must never hold one purpose key, or the older
 * would tombstone it under the newer's data. Sets *joined. */
static int absorb_aliases(struct veil_retain *r, struct grp *g,
                          const struct veil_route *route, const void *skey,
                          size_t sklen, bool *joined, char *errstr,
                          size_t errstr_size)
{
        size_t a, i;
        ssize_t x;
        int rc;

        if (r->alias_done || !r->n_alias)
                return 0;
        r->alias_done = true;
        for (a = 0; a < r->n_alias; a++) {
                struct grp *v = r->ag;

                if (!alias_load(r, a, g->rs, route, skey, sklen))
                        continue;
                for (i = 0; i < v->n; i++) {
                        x = grp_find(g, v->m[i].slot, v->m[i].key,
                                     v->m[i].key_len);
                        if (x >= 0) {
                                if (v->m[i].deadline_ms > g->m[x].deadline_ms)
                                        g->m[x] = v->m[i];
                        } else if (g->n < G_MAX) {
                                g->m[g->n++] = v->m[i];
                        }
                }
                if (!g->n || !g->found)
                        g->partition = v->partition;
                v->n = 0;
                rc   = grp_store(r, v, errstr, errstr_size); /* tombstone */
                if (rc)
                        return rc;
                *joined = true;
        }
        return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

struct veil_retain *veil_retain_new(const struct veil_config *config,
                                    struct veil_sink *sink,
                                    struct veil_audit *audit, char *errstr,
                                    size_t errstr_size)
{
        struct veil_retain *r = veil_calloc(1, sizeof(*r));
        char group[512];

        r->config = config;
        r->sink   = sink;
        r->audit  = audit;
        r->ri     = veil_retention_new();
        r->batch  = veil_ledger_batch_new();
        r->popped = veil_calloc(POP_BATCH, sizeof(*r->popped));
        veil_retention_set_id_len(r->ri, VEIL_LEDGER_ID_LEN);
        r->lg = veil_calloc(1, sizeof(*r->lg));
        r->ag = veil_calloc(1, sizeof(*r->ag));
        veil_buf_init(&r->key, 0);
        veil_buf_init(&r->g.buf, 0);
        veil_buf_init(&r->enc, 0);
        veil_buf_init(&r->enc2, 0);
        veil_buf_init(&r->id_skey, 0);
        slots_bind(r);
        rslots_bind(r);
        if (lk_init(r, config, errstr, errstr_size))
                goto err;
        if (envs_new(config, &r->keys, &r->envs, &r->n_envs, errstr,
                     errstr_size))
                goto err;
        snprintf(group, sizeof(group), "%s-ledger-restore", config->group);
        /* A restore waits for nothing but the end of the partition. */
        r->restore =
                consumer_new(config, group, "50", NULL, errstr, errstr_size);
        if (!r->restore)
                goto err;
        if (veil_shred_new(config, sink, &r->shred, errstr, errstr_size))
                goto err;
        if (config->topics.erasure) {
                rd_kafka_topic_partition_list_t *topics;
                rd_kafka_resp_err_t err;

                if (veil_erasure_keys_init_config(&r->ek, config, errstr,
                                                  errstr_size))
                        goto err;
                r->ek_ok = true;
                snprintf(group, sizeof(group), "%s-erasure", config->group);
                r->erasure = consumer_new(config, group, "500", r, errstr,
                                          errstr_size);
                if (!r->erasure)
                        goto err;
                topics = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(
                        topics, config->topics.erasure, RD_KAFKA_PARTITION_UA);
                err = rd_kafka_subscribe(r->erasure, topics);
                rd_kafka_topic_partition_list_destroy(topics);
                if (err) {
                        veil_errf(errstr, errstr_size, VEIL_ENET,
                                  "subscribing to %s: %s",
                                  config->topics.erasure,
                                  rd_kafka_err2str(err));
                        goto err;
                }
        }
        return r;
err:
        veil_retain_destroy(r);
        return NULL;
}

static void epos_clear(struct veil_retain *r)
{
        size_t i;

        for (i = 0; i < r->n_epos; i++)
                free(r->epos[i].topic);
        r->n_epos       = 0;
        r->epos_revoked = false;
}

struct veil_subject_keys *veil_retain_subject_keys(struct veil_retain *r)
{
        return r ? veil_shred_store(r->shred) : NULL;
}

void veil_retain_destroy(struct veil_retain *r)
{
        size_t k;

        if (!r)
                return;
        if (r->stash)
                rd_kafka_message_destroy(r->stash);
        if (r->erasure) {
                veil_kafka_consumer_leave(r->erasure);
                rd_kafka_destroy(r->erasure);
        }
        if (r->restore)
                rd_kafka_destroy(r->restore);
        if (r->ek_ok)
                veil_erasure_keys_destroy(&r->ek);
        veil_shred_destroy(r->shred);
        envs_free(r->keys, r->envs, r->n_envs);
        veil_buf_free(&r->key);
        veil_cleanse(r->id_skey.data, r->id_skey.cap);
        veil_buf_free(&r->id_skey);
        veil_buf_free(&r->g.buf);
        free(r->lg);
        if (r->ag)
                veil_buf_free(&r->ag->buf);
        free(r->ag);
        chunks_free(r);
        free(r->chunks);
        alias_free(r->alias, r->n_alias);
        veil_buf_free(&r->enc);
        veil_buf_free(&r->enc2);
        veil_hmac_cleanse(&r->lk);
        for (k = 0; k < r->n_rslots; k++)
                free(r->rslots[k].topic);
        free(r->rslots);
        epos_clear(r);
        free(r->epos);
        for (k = 0; k < r->n_slots; k++)
                free(r->slots[k].topic);
        free(r->slots);
        free(r->popped);
        veil_ledger_batch_destroy(r->batch);
        veil_retention_destroy(r->ri);
        free(r);
}

int veil_retain_set_config(struct veil_retain *r,
                           const struct veil_config *config, char *errstr,
                           size_t errstr_size)
{
        struct veil_tx_keys *keys;
        struct veil_plan_env *envs;
        size_t n;
        int rc;

        rc = grp_settle(r, errstr, errstr_size);
        if (rc)
                return rc;
        r->g_valid = false;
        if (r->shred)
                rc = veil_shred_set_config(r->shred, config, errstr,
                                           errstr_size);
        else
                rc = veil_shred_new(config, r->sink, &r->shred, errstr,
                                    errstr_size);
        if (rc)
                return rc;
        rc = envs_new(config, &keys, &envs, &n, errstr, errstr_size);
        if (rc)
                return rc;
        if (r->ek_ok) {
                /* The erasure keys borrow the config (its keyring). */
                struct veil_erasure_keys ek;

                rc = veil_erasure_keys_init_config(&ek, config, errstr,
                                                   errstr_size);
                if (rc) {
                        envs_free(keys, envs, n);
                        return rc;
                }
                veil_erasure_keys_destroy(&r->ek);
                r->ek = ek;
        }
        {
                struct veil_hmac lk = r->lk;

                rc = lk_init(r, config, errstr, errstr_size);
                if (rc) {
                        r->lk = lk;
                        envs_free(keys, envs, n);
                        return rc;
                }
                veil_hmac_cleanse(&lk);
        }
        envs_free(r->keys, r->envs, r->n_envs);
        r->keys   = keys;
        r->envs   = envs;
        r->n_envs = n;
        r->config = config;
        slots_bind(r);
        rslots_bind(r);
        return 0;
}

/* The index's count with the group waiting to be stored. */
static size_t tracked(const struct veil_retain *r)
{
        size_t n = veil_retention_count(r->ri);

        if (r->g_dirty && !r->g.found && r->g.n)
                n++;
        if (r->g_dirty && r->g.found && !r->g.n)
                n--;
        return n;
}

void veil_retain_set_tally(struct veil_retain *r, struct veil_tally *tally)
{
        if (r)
                r->tally = tally;
}

size_t veil_retain_count(const struct veil_retain *r)
{
        return r ? tracked(r) : 0;
}

void veil_retain_stats(const struct veil_retain *r,
                       struct veil_retain_stats *st)
{
        memset(st, 0, sizeof(*st));
        if (!r)
                return;
        st->tracked    = tracked(r);
        st->memory     = veil_retention_memory(r->ri);
        st->tombstones = r->n_tombstones;
        st->erasures   = r->n_erasures;
}

/* ---- transactions -------------------------------------------------------- */

void veil_retain_begin(struct veil_retain *r)
{
        if (!r)
                return;
        veil_retention_begin(r->ri);
        veil_ledger_batch_clear(r->batch);
        epos_clear(r);
        /* Records under rotated keys are joined once per id and
         * transaction: forget which ids were. */
        r->id_route = NULL;
        if (r->shred) {
                char err[512];

                /* Erasures by other pipelines; a failure only delays it. */
                if (veil_shred_catch_up(r->shred, false, err, sizeof(err)))
                        veil_log("warn", "subject-keys", "%s", err);
        }
}

int veil_retain_flush(struct veil_retain *r, char *errstr, size_t errstr_size)
{
        struct veil_ledger_pending p;
        size_t i, n;
        int rc;

        if (!r)
                return 0;
        rc = grp_settle(r, errstr, errstr_size);
        if (rc)
                return rc;
        if (r->epos_revoked)
                return veil_errf(errstr, errstr_size, VEIL_RETAIN_REDO,
                                 "an erasure partition this transaction "
                                 "read from was revoked; aborting so that "
                                 "its new owner handles the requests once");
        rc = veil_shred_flush(r->shred, errstr, errstr_size);
        if (rc)
                return rc;
        /* Without a ledger topic deadlines live in memory only. */
        n = r->config->topics.ledger ? veil_ledger_batch_count(r->batch) : 0;
        if (n) {
                rc = ledger_parts(r, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        for (i = 0; i < n; i++) {
                veil_ledger_batch_get(r->batch, i, &p);
                rc = produce(r, r->config->topics.ledger,
                             ledger_partition(r, p.partition), p.key, p.key_len,
                             p.value, p.value_len, NULL, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        veil_ledger_batch_clear(r->batch);
        if (r->n_epos) {
                rd_kafka_topic_partition_list_t *offsets =
                        rd_kafka_topic_partition_list_new((int)r->n_epos);
                enum veil_sink_status st;

                for (i = 0; i < r->n_epos; i++)
                        rd_kafka_topic_partition_list_add(
                                offsets, r->epos[i].topic, r->epos[i].partition)
                                ->offset = r->epos[i].last + 1;
                /* Only a fatal producer stops the worker; anything else
                 * (the erasure group rebalanced while a broker restarted)
                 * aborts the batch at its commit, and it is redone with the
                 * requests read again. */
                st = veil_sink_add_offsets(r->sink, r->erasure, offsets);
                rd_kafka_topic_partition_list_destroy(offsets);
                if (st != VEIL_SINK_OK)
                        return veil_errf(errstr, errstr_size, VEIL_ENET,
                                         "sending the erasure offsets: %s",
                                         veil_sink_fatal(r->sink));
        }
        return 0;
}

void veil_retain_commit(struct veil_retain *r)
{
        if (!r)
                return;
        veil_retention_commit(r->ri);
        veil_shred_commit(r->shred);
        veil_ledger_batch_clear(r->batch);
        epos_clear(r);
}

void veil_retain_rollback(struct veil_retain *r)
{
        size_t i;

        if (!r)
                return;
        veil_retention_rollback(r->ri);
        veil_shred_rollback(r->shred);
        veil_ledger_batch_clear(r->batch);
        r->id_route = NULL;  /* joined records came back */
        r->g_dirty  = false; /* the transaction's, gone with it */
        r->g_valid  = false;
        /* The aborted transaction's requests come again. */
        for (i = 0; i < r->n_epos; i++) {
                if (r->stash && r->stash->partition == r->epos[i].partition &&
                    !strcmp(rd_kafka_topic_name(r->stash->rkt),
                            r->epos[i].topic)) {
                        /* read again after the seek */
                        rd_kafka_message_destroy(r->stash);
                        r->stash = NULL;
                }
                rd_kafka_topic_partition_list_t *parts =
                        rd_kafka_topic_partition_list_new(1);
                rd_kafka_error_t *error;

                rd_kafka_topic_partition_list_add(parts, r->epos[i].topic,
                                                  r->epos[i].partition)
                        ->offset = r->epos[i].first;
                error = rd_kafka_seek_partitions(r->erasure, parts, 10000);
                if (error) {
                        /* The partition moved to another worker, which
                         * starts from the committed offset. */
                        veil_log("warn", "erasure",
                                 "rewinding %s/%" PRId32 ": %s",
                                 r->epos[i].topic, r->epos[i].partition,
                                 rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                }
                rd_kafka_topic_partition_list_destroy(parts);
        }
        epos_clear(r);
}

/* ---- records ------------------------------------------------------------- */

int veil_retain_note(struct veil_retain *r, const struct veil_route *route,
                     const struct veil_route_purpose *rp, int32_t partition,
                     const void *skey, size_t skey_len, const void *key,
                     size_t key_len, bool value_null, int64_t ts_ms,
                     char *errstr, size_t errstr_size)
{
        enum veil_retention_reason reason;
        int64_t deadline = INT64_MIN, v1_ts = 0;
        const unsigned char *id;
        bool joined = false;
        uint16_t n, rs;
        struct grp *g;
        ssize_t i;
        int rc;

        if (!r || !key || !skey)
                return 0;
        n  = slot_of(r, rp->topic, strlen(rp->topic));
        rs = rslot_of(r, route->source, strlen(route->source));
        if (n == UINT16_MAX || rs == UINT16_MAX)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "purpose topic %s is not configured",
                                 rp->topic);
        if (ts_ms <= 0)
                ts_ms = veil_now_ms();
        if (!value_null) {
                deadline = veil_retention_deadline(rp->ref, ts_ms, &reason);
                if (reason == VEIL_RETENTION_NONE)
                        return 0;
        }
        /* A key restored from a version 1 record joins its group. */
        {
                int64_t d1 = INT64_MIN;

                rc = absorb_v1(r, rs, n, key, key_len, &d1, &v1_ts, errstr,
                               errstr_size);
                if (rc)
                        return rc;
                if (d1 > deadline && !value_null) {
                        deadline = d1;
                        ts_ms    = v1_ts;
                }
                v1_ts = d1 != INT64_MIN; /* absorbed: the group must say */
        }
        id = source_id(r, route, skey, skey_len);
        if (r->g_dirty &&
            (r->g.rs != rs || memcmp(r->g.id, id, VEIL_LEDGER_ID_LEN))) {
                rc = grp_settle(r, errstr, errstr_size); /* the last record's */
                if (rc)
                        goto out;
        }
        g  = grp_load(r, rs, id);
        rc = absorb_aliases(r, g, route, skey, skey_len, &joined, errstr,
                            errstr_size);
        if (rc)
                goto out;
        i = grp_find(g, n, key, key_len);
        if (value_null) {
                if (i >= 0)
                        rc = grp_drop(r, g, (size_t)i, errstr, errstr_size);
                if (!rc && (i >= 0 || joined)) {
                        grp_own_keys(g);
                        r->g_dirty = true;
                }
                goto out;
        }
        if (i >= 0) {
                if (deadline <= g->m[i].deadline_ms && !v1_ts && !joined)
                        goto out; /* a later or equal deadline: no write */
                if (deadline > g->m[i].deadline_ms) {
                        g->m[i].deadline_ms = deadline;
                        g->m[i].ts_ms       = ts_ms;
                }
        } else {
                if (g->n == G_MAX) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                       "retention: more than %d purpose "
                                       "keys for one source key",
                                       G_MAX);
                        goto out;
                }
                i                   = (ssize_t)g->n++;
                g->m[i].slot        = n;
                g->m[i].deadline_ms = deadline;
                g->m[i].ts_ms       = ts_ms;
                g->m[i].key         = key;
                g->m[i].key_len     = key_len;
        }
        g->partition = partition; /* the newest record's */
        /* Stored when the record's notes are done (the next note of another
         * source key, or any other use of the index). */
        grp_own_keys(g);
        r->g_dirty = true;
out:
        chunks_free(r);
        return rc;
}

int veil_retain_holds(struct veil_retain *r, const struct veil_route *route,
                      const struct veil_route_purpose *rp, const void *skey,
                      size_t skey_len, const void *key, size_t key_len)
{
        enum veil_retention_reason reason;
        unsigned char pid[VEIL_LEDGER_ID_LEN];
        struct veil_retention_entry e;
        const unsigned char *id;
        uint16_t n, rs;
        size_t a;

        if (!r || !key || !skey)
                return -1;
        veil_retention_deadline(rp->ref, veil_now_ms(), &reason);
        if (reason == VEIL_RETENTION_NONE)
                return -1;
        n  = slot_of(r, rp->topic, strlen(rp->topic));
        rs = rslot_of(r, route->source, strlen(route->source));
        if (n == UINT16_MAX || rs == UINT16_MAX)
                return -1;
        if (r->v1_seen) {
                pseudo_id(r, n, key, key_len, pid);
                if (!veil_retention_get(r->ri, rs, pid, VEIL_LEDGER_ID_LEN,
                                        NULL))
                        return 1;
        }
        id = source_id(r, route, skey, skey_len);
        if (r->g_valid && r->g.rs == rs &&
            !memcmp(r->g.id, id, VEIL_LEDGER_ID_LEN)) {
                /* the group noted last, maybe not stored yet */
                if (grp_find(&r->g, n, key, key_len) >= 0)
                        return 1;
        } else if (!veil_retention_get(r->ri, rs, id, VEIL_LEDGER_ID_LEN, &e)) {
                r->ag->n = 0;
                grp_parse(r->ag, e.key + VEIL_LEDGER_ID_LEN,
                          e.key_len - VEIL_LEDGER_ID_LEN);
                if (grp_find(r->ag, n, key, key_len) >= 0)
                        return 1;
        }
        for (a = 0; a < r->n_alias; a++)
                if (alias_load(r, a, rs, route, skey, skey_len) &&
                    grp_find(r->ag, n, key, key_len) >= 0) {
                        chunks_free(r);
                        return 1;
                }
        chunks_free(r);
        return 0;
}

/* ---- timers -------------------------------------------------------------- */

bool veil_retain_due(struct veil_retain *r, int64_t now_ms)
{
        if (!r)
                return false;
        if (veil_retention_next_deadline(r->ri) <= now_ms)
                return true;
        if (r->stash)
                return true;
        while (r->erasure) {
                rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->erasure, 0);

                if (!rkm)
                        break;
                if (!rkm->err) {
                        r->stash = rkm;
                        return true;
                }
                if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                    !r->erasure_warned) {
                        /* Typically: the erasure topic does not exist yet. */
                        veil_log("warn", "erasure", "%s",
                                 rd_kafka_message_errstr(rkm));
                        r->erasure_warned = true;
                }
                rd_kafka_message_destroy(rkm);
        }
        return false;
}

/* Counts per (purpose topic, reason) of one tick, for its audit events. */
struct expiry_count {
        uint16_t slot;
        const char *reason;
        int64_t n;
};

static int expire(struct veil_retain *r, int64_t now_ms, int64_t *produced,
                  char *errstr, size_t errstr_size)
{
        struct expiry_count counts[64];
        size_t n_counts = 0, i, k;
        int64_t total   = 0;
        int rc;

        /* A group at a time: the rest of a popped group goes back into
         * the index (which may move its bytes) before the next pop. r->g
         * is the scratch. */
        r->g_valid = false;
        while (total < POP_MAX_PER_TICK &&
               veil_retention_pop_expired(r->ri, now_ms, r->popped, 1) == 1) {
                const struct veil_retention_entry *e = &r->popped[0];
                struct grp *g                        = &r->g;

                g->rs = e->purpose;
                memcpy(g->id, e->key, VEIL_LEDGER_ID_LEN);
                veil_cleanse(g->buf.data, g->buf.cap);
                g->buf.len = 0;
                veil_buf_append(&g->buf, e->key, e->key_len);
                g->found     = false; /* popped */
                g->partition = e->partition;
                grp_parse(g, g->buf.data + VEIL_LEDGER_ID_LEN,
                          g->buf.len - VEIL_LEDGER_ID_LEN);
                for (i = g->n; i-- > 0;) {
                        const struct gmem *m       = &g->m[i];
                        const struct topic_slot *s = &r->slots[m->slot];
                        const struct veil_purpose *pu =
                                s->rp ? s->rp->ref : NULL;
                        const char *reason;

                        if (m->deadline_ms > now_ms)
                                continue;
                        reason = pu ? veil_retention_reason_name(pu,
                                                                 m->deadline_ms)
                                    : "retention";
                        rc     = tombstone(r, s->route, s->topic, pu, m->key,
                                           m->key_len, reason, errstr, errstr_size);
                        if (rc)
                                return rc;
                        for (k = 0; k < n_counts; k++)
                                if (counts[k].slot == m->slot &&
                                    !strcmp(counts[k].reason, reason))
                                        break;
                        if (k == n_counts && n_counts < 64) {
                                counts[k].slot   = m->slot;
                                counts[k].reason = reason;
                                counts[k].n      = 0;
                                n_counts++;
                        }
                        if (k < n_counts)
                                counts[k].n++;
                        total++;
                        rc = grp_drop(r, g, i, errstr, errstr_size);
                        if (rc)
                                return rc;
                }
                /* Rewritten without the passed entries, or its tombstone. */
                rc = grp_store(r, g, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        for (k = 0; k < n_counts; k++) {
                const struct topic_slot *s    = &r->slots[counts[k].slot];
                const struct veil_purpose *pu = s->rp ? s->rp->ref : NULL;
                json_t *ev                    = json_pack(
                                           "{s:s, s:s, s:s, s:s, s:s, s:I}", "kind", "retention",
                                           "purpose", pu ? pu->name : "", "topic", s->topic,
                                           "license", pu && pu->license_id ? pu->license_id : "",
                                           "reason", counts[k].reason, "tombstones",
                                           (json_int_t)counts[k].n);

                if (!ev)
                        return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                         "building an audit event failed");
                rc = veil_audit_retention(r->audit, ev, errstr, errstr_size);
                if (rc)
                        return rc;
                (*produced)++;
        }
        *produced += total;
        return 0;
}

/* ---- erasure ------------------------------------------------------------- */

static void epos_note(struct veil_retain *r, const rd_kafka_message_t *rkm)
{
        const char *topic = rd_kafka_topic_name(rkm->rkt);
        size_t i;

        for (i = 0; i < r->n_epos; i++)
                if (r->epos[i].partition == rkm->partition &&
                    !strcmp(r->epos[i].topic, topic)) {
                        r->epos[i].last = rkm->offset;
                        return;
                }
        r->epos = veil_realloc(r->epos, (r->n_epos + 1) * sizeof(*r->epos));
        r->epos[r->n_epos].topic     = veil_strdup(topic);
        r->epos[r->n_epos].partition = rkm->partition;
        r->epos[r->n_epos].first     = rkm->offset;
        r->epos[r->n_epos].last      = rkm->offset;
        r->n_epos++;
}

/* One request: a tombstone for the key as every purpose of every route
 * writes it, whether or not this worker tracks it (the key's records may
 * predate the ledger, or belong to another worker's partitions), and the
 * tracked entries cleared. */
static int erase(struct veil_retain *r, const rd_kafka_message_t *rkm,
                 int64_t *produced, char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy = &r->config->policy;
        struct veil_erasure_request req;
        struct grp *g;
        uint16_t rs;
        char hash[VEIL_ERASURE_KEY_HASH_MAX + 1], err[256];
        json_t *topics, *ev;
        int64_t tombstones = 0, cleared = 0, key_tombstones = 0;
        size_t i, j;
        int rc;

        memset(&req, 0, sizeof(req));
        rc = veil_erasure_request_decode(&r->ek, rkm->payload, rkm->len, &req,
                                         err, sizeof(err));
        if (rc) {
                /* Not ours to fix; the offset moves on, the log says where. */
                veil_log("warn", "erasure-rejected",
                         "%s/%" PRId32 "/%" PRId64 ": %s",
                         rd_kafka_topic_name(rkm->rkt), rkm->partition,
                         rkm->offset, err);
                return 0;
        }
        veil_erasure_key_hash(&r->ek, req.key, req.key_len, hash, sizeof(hash));
        topics = json_array();
        for (i = 0; i < policy->n_routes; i++) {
                const struct veil_route *route = &policy->routes[i];
                bool done[G_MAX]               = {false};
                ssize_t x;
                size_t k;

                /* The subject's group on this route (its tracked keys). */
                rs = rslot_of(r, route->source, strlen(route->source));
                g  = rs == UINT16_MAX ? NULL
                                      : grp_load(r, rs,
                                                 source_id(r, route, req.key,
                                                           req.key_len));
                for (j = 0; j < route->n_purposes; j++) {
                        const struct veil_route_purpose *rp =
                                &route->purposes[j];
                        const struct veil_transform *tx;
                        bool key_null = false;
                        uint16_t n;

                        tx = veil_key_tx(policy, route, rp->ref, err,
                                         sizeof(err));
                        if (!tx)
                                continue; /* its keys never reach it */
                        if (veil_key_transform(
                                    tx, &r->envs[rp->ref - policy->purposes],
                                    req.key, req.key_len, &r->key,
                                    &key_null) != VEIL_WIRE_OK ||
                            key_null)
                                continue;
                        rc = tombstone(r, route, rp->topic, rp->ref,
                                       r->key.data, r->key.len, "erasure",
                                       errstr, errstr_size);
                        if (rc)
                                goto out;
                        tombstones++;
                        json_array_append_new(topics, json_string(rp->topic));
                        n = slot_of(r, rp->topic, strlen(rp->topic));
                        if (g && n != UINT16_MAX &&
                            (x = grp_find(g, n, r->key.data, r->key.len)) >= 0)
                                done[x] = true;
                        if (n != UINT16_MAX && rs != UINT16_MAX) {
                                int64_t d1 = INT64_MIN, t1 = 0;

                                /* a key restored from version 1 */
                                rc = absorb_v1(r, rs, n, r->key.data,
                                               r->key.len, &d1, &t1, errstr,
                                               errstr_size);
                                if (rc)
                                        goto out;
                                if (d1 != INT64_MIN)
                                        cleared++;
                        }
                }
                if (!g)
                        continue;
                /* Tracked keys the purposes' transforms no longer give
                 * (written before a key rotation) are the subject's too. */
                for (k = 0; k < g->n; k++) {
                        const struct topic_slot *ts = &r->slots[g->m[k].slot];

                        if (done[k])
                                continue;
                        rc = tombstone(r, ts->route, ts->topic,
                                       ts->rp ? ts->rp->ref : NULL, g->m[k].key,
                                       g->m[k].key_len, "erasure", errstr,
                                       errstr_size);
                        if (rc)
                                goto out;
                        tombstones++;
                        json_array_append_new(topics, json_string(ts->topic));
                }
                /* Every entry goes, with one ledger tombstone. */
                if (g->n) {
                        cleared += (int64_t)g->n;
                        g->n = 0;
                        rc   = grp_store(r, g, errstr, errstr_size);
                        if (rc)
                                goto out;
                }
                /* Records of the key written under the ring's other keys:
                 * their keys are tombstoned too (a rotated transform gave
                 * other ones) and the records go. */
                for (k = 0; k < r->n_alias; k++) {
                        struct grp *v = r->ag;
                        size_t y;

                        if (!alias_load(r, k, rs, route, req.key, req.key_len))
                                continue;
                        for (y = 0; y < v->n; y++) {
                                const struct topic_slot *ts =
                                        &r->slots[v->m[y].slot];

                                rc = tombstone(r, ts->route, ts->topic,
                                               ts->rp ? ts->rp->ref : NULL,
                                               v->m[y].key, v->m[y].key_len,
                                               "erasure", errstr, errstr_size);
                                if (rc)
                                        goto out;
                                tombstones++;
                                json_array_append_new(topics,
                                                      json_string(ts->topic));
                        }
                        cleared += (int64_t)v->n;
                        v->n = 0;
                        rc   = grp_store(r, v, errstr, errstr_size);
                        if (rc)
                                goto out;
                }
        }
        if (r->shred) {
                /* Crypto-shredding: the subject's data key goes in the same
                 * transaction as the purpose tombstones and the event. */
                rc = veil_shred_erase(r->shred, req.key, req.key_len,
                                      &key_tombstones, errstr, errstr_size);
                if (rc)
                        goto out;
        }
        ev = json_pack("{s:s, s:s, s:s, s:I, s:O, s:I, s:I, s:I}", "kind",
                       "erasure-completed", "request_id", req.request_id,
                       "key_hash", hash, "requested_at",
                       (json_int_t)req.requested_at_ms, "topics", topics,
                       "tombstones", (json_int_t)tombstones, "cleared",
                       (json_int_t)cleared, "subject_key_tombstones",
                       (json_int_t)key_tombstones);
        if (!ev) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                               "building an audit event failed");
                goto out;
        }
        rc = veil_audit_retention(r->audit, ev, errstr, errstr_size);
        if (rc)
                goto out;
        r->n_erasures++;
        *produced += tombstones + key_tombstones + 1;
        veil_log("info", "erasure-completed",
                 "request %s: %" PRId64 " tombstone(s), %" PRId64
                 " tracked entr%s cleared",
                 req.request_id, tombstones, cleared,
                 cleared == 1 ? "y" : "ies");
out:
        json_decref(topics);
        veil_erasure_request_clear(&req);
        chunks_free(r);
        /* The id cache holds a copy of the subject key. */
        veil_cleanse(r->id_skey.data, r->id_skey.cap);
        r->id_skey.len = 0;
        r->id_route    = NULL;
        /* The transformed key of a subject is personal data too. */
        veil_cleanse(r->key.data, r->key.cap);
        r->key.len = 0;
        return rc;
}

int64_t veil_retain_tick(struct veil_retain *r, int64_t now_ms, char *errstr,
                         size_t errstr_size)
{
        int64_t produced = 0;
        int rc, handled = 0;

        rc = grp_settle(r, errstr, errstr_size);
        if (rc)
                return rc;
        while (r->erasure && handled < ERASE_MAX_PER_TICK) {
                rd_kafka_message_t *rkm = r->stash;

                r->stash = NULL;
                if (!rkm)
                        rkm = rd_kafka_consumer_poll(r->erasure, 0);
                if (!rkm)
                        break;
                if (rkm->err) {
                        rd_kafka_message_destroy(rkm);
                        continue;
                }
                epos_note(r, rkm);
                rc = erase(r, rkm, &produced, errstr, errstr_size);
                rd_kafka_message_destroy(rkm);
                if (rc)
                        return rc;
                handled++;
        }
        rc = expire(r, now_ms, &produced, errstr, errstr_size);
        if (rc)
                return rc;
        return produced;
}

/* ---- assignment ---------------------------------------------------------- */

/* Was source partition `partition` of route slot rs just assigned? */
static bool restoring(const struct veil_retain *r,
                      const rd_kafka_topic_partition_list_t *parts, uint16_t rs,
                      int32_t partition)
{
        int i;

        if (rs == UINT16_MAX || !r->rslots[rs].route)
                return false;
        for (i = 0; i < parts->cnt; i++)
                if (parts->elems[i].partition == partition &&
                    !strcmp(parts->elems[i].topic, r->rslots[rs].topic))
                        return true;
        return false;
}

/* The route slot of the route that writes purpose topic slot s. */
static uint16_t rslot_of_slot(const struct veil_retain *r, uint16_t s)
{
        const struct veil_route *route = r->slots[s].route;

        return route ? rslot_of(r, route->source, strlen(route->source))
                     : UINT16_MAX;
}

/* A version 1 record: its key becomes a group of one under pseudo_id. */
static void restore_v1(struct veil_retain *r,
                       const rd_kafka_topic_partition_list_t *parts,
                       const rd_kafka_message_t *rkm, int64_t *applied,
                       int64_t *skipped)
{
        struct veil_ledger_record rec;
        struct veil_retention_entry cur;
        enum veil_retention_reason reason;
        unsigned char pid[VEIL_LEDGER_ID_LEN];
        struct grp *g = &r->g;
        char err[256];
        uint16_t s, rs;

        if (veil_ledger_decode(rkm->key, rkm->key_len, rkm->payload, rkm->len,
                               &rec, err, sizeof(err))) {
                (*skipped)++;
                return;
        }
        s = slot_of(r, rec.topic, rec.topic_len);
        if (s == UINT16_MAX || (rs = rslot_of_slot(r, s)) == UINT16_MAX) {
                (*skipped)++; /* a purpose no longer configured */
                return;
        }
        r->v1_seen = true;
        pseudo_id(r, s, rec.key, rec.key_len, pid);
        if (rec.tombstone) {
                /* A tombstone names no partition: it clears the key if the
                 * key's entry belongs to a partition being restored. */
                if (!veil_retention_get(r->ri, rs, pid, VEIL_LEDGER_ID_LEN,
                                        &cur) &&
                    restoring(r, parts, rs, cur.partition)) {
                        veil_retention_remove(r->ri, rs, pid,
                                              VEIL_LEDGER_ID_LEN, NULL);
                        (*applied)++;
                }
                return;
        }
        if (!restoring(r, parts, rs, rec.value.partition))
                return;
        g->rs = rs;
        memcpy(g->id, pid, sizeof(pid));
        g->flags     = G_V1;
        g->found     = false;
        g->partition = rec.value.partition;
        /* Under the licence in force now: a retention or valid_until that
         * changed since the record applies to it (a licence that ended
         * while the key was held purges it at once). */
        g->m[0].slot        = s;
        g->m[0].deadline_ms = veil_retention_deadline(
                r->slots[s].rp->ref, rec.value.record_ts_ms, &reason);
        g->m[0].ts_ms   = rec.value.record_ts_ms;
        g->m[0].key     = rec.key;
        g->m[0].key_len = rec.key_len;
        g->n            = reason == VEIL_RETENTION_NONE ? 0 : 1;
        if (!g->n) {
                veil_retention_remove(r->ri, rs, pid, VEIL_LEDGER_ID_LEN, NULL);
                return;
        }
        if (restore_set(r, g, err, sizeof(err)))
                (*skipped)++;
        else
                (*applied)++;
}

static void restore_v2(struct veil_retain *r,
                       const rd_kafka_topic_partition_list_t *parts,
                       const rd_kafka_message_t *rkm, int64_t *applied,
                       int64_t *skipped)
{
        struct veil_retention_entry cur;
        enum veil_retention_reason reason;
        struct grp *g = &r->g;
        char err[256];
        size_t i;
        uint16_t rs, s;

        if (veil_ledger_decode2(rkm->key, rkm->key_len, rkm->payload, rkm->len,
                                r->lg, err, sizeof(err))) {
                (*skipped)++;
                return;
        }
        rs = rslot_of(r, r->lg->source, r->lg->source_len);
        if (rs == UINT16_MAX || !r->rslots[rs].route) {
                (*skipped)++; /* a route no longer configured */
                return;
        }
        if (r->lg->tombstone) {
                if (!veil_retention_get(r->ri, rs, r->lg->id,
                                        VEIL_LEDGER_ID_LEN, &cur) &&
                    restoring(r, parts, rs, cur.partition)) {
                        veil_retention_remove(r->ri, rs, r->lg->id,
                                              VEIL_LEDGER_ID_LEN, NULL);
                        (*applied)++;
                }
                return;
        }
        if (!restoring(r, parts, rs, r->lg->partition))
                return;
        g->rs = rs;
        memcpy(g->id, r->lg->id, VEIL_LEDGER_ID_LEN);
        g->flags     = 0;
        g->found     = false;
        g->partition = r->lg->partition;
        g->n         = 0;
        for (i = 0; i < r->lg->n; i++) {
                const struct veil_ledger_entry *e = &r->lg->entries[i];
                struct gmem *m                    = &g->m[g->n];

                s = slot_of(r, e->topic, e->topic_len);
                if (s == UINT16_MAX || rslot_of_slot(r, s) != rs)
                        continue; /* a purpose no longer on this route */
                m->deadline_ms = veil_retention_deadline(
                        r->slots[s].rp->ref, e->record_ts_ms, &reason);
                if (reason == VEIL_RETENTION_NONE)
                        continue;
                m->slot    = s;
                m->ts_ms   = e->record_ts_ms;
                m->key     = e->key;
                m->key_len = e->key_len;
                g->n++;
        }
        if (!g->n) {
                veil_retention_remove(r->ri, rs, g->id, VEIL_LEDGER_ID_LEN,
                                      NULL);
                (*applied)++;
                return;
        }
        if (restore_set(r, g, err, sizeof(err)))
                (*skipped)++;
        else
                (*applied)++;
}

static void restore_one(struct veil_retain *r,
                        const rd_kafka_topic_partition_list_t *parts,
                        const rd_kafka_message_t *rkm, int64_t *applied,
                        int64_t *skipped)
{
        if (veil_ledger_key_version(rkm->key, rkm->key_len) == 2)
                restore_v2(r, parts, rkm, applied, skipped);
        else
                restore_v1(r, parts, rkm, applied, skipped);
}

int veil_retain_assign(struct veil_retain *r,
                       const rd_kafka_topic_partition_list_t *parts,
                       char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *lparts;
        const char *ledger;
        int64_t t0 = veil_now_ms(), applied = 0, skipped = 0, msgs = 0;
        int64_t deadline = t0 + RESTORE_TIMEOUT_MS;
        size_t before    = veil_retention_count(r->ri);
        rd_kafka_resp_err_t err;
        int i, k, done = 0, rc = 0;

        if (!r || parts->cnt == 0)
                return 0;
        rc = grp_settle(r, errstr, errstr_size);
        if (rc)
                return rc;
        r->g_valid = false; /* restoring uses r->g */
        /* The previous owner's last keys, committed before it let go. */
        rc = veil_shred_catch_up(r->shred, true, errstr, errstr_size);
        if (rc)
                return rc;
        if (!r->config->topics.ledger)
                return 0;
        ledger = r->config->topics.ledger;
        rc     = ledger_parts(r, errstr, errstr_size);
        if (rc)
                return rc;
        lparts = rd_kafka_topic_partition_list_new(parts->cnt);
        for (i = 0; i < parts->cnt; i++) {
                int32_t lp = ledger_partition(r, parts->elems[i].partition);

                if (!rd_kafka_topic_partition_list_find(lparts, ledger, lp))
                        rd_kafka_topic_partition_list_add(lparts, ledger, lp)
                                ->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        err = rd_kafka_assign(r->restore, lparts);
        if (err) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                               "assigning the ledger %s: %s", ledger,
                               rd_kafka_err2str(err));
                goto out;
        }
        while (done < lparts->cnt) {
                rd_kafka_message_t *rkm;

                if (veil_now_ms() > deadline) {
                        rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                                       "restoring from %s: %d of %d "
                                       "partition(s) read to their end "
                                       "after %d s",
                                       ledger, done, lparts->cnt,
                                       RESTORE_TIMEOUT_MS / 1000);
                        break;
                }
                rkm = rd_kafka_consumer_poll(r->restore, 200);
                if (!rkm)
                        continue;
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        for (k = 0; k < lparts->cnt; k++)
                                if (lparts->elems[k].partition ==
                                            rkm->partition &&
                                    lparts->elems[k].offset !=
                                            RD_KAFKA_OFFSET_END) {
                                        lparts->elems[k].offset =
                                                RD_KAFKA_OFFSET_END;
                                        done++;
                                }
                } else if (rkm->err) {
                        veil_log("warn", "restore", "%s",
                                 rd_kafka_message_errstr(rkm));
                } else {
                        msgs++;
                        restore_one(r, parts, rkm, &applied, &skipped);
                }
                rd_kafka_message_destroy(rkm);
        }
        rd_kafka_assign(r->restore, NULL);
        r->g_valid = false;
        if (!rc)
                veil_log("info", "restore",
                         "%d ledger partition(s) of %s: %" PRId64
                         " record(s), %" PRId64 " applied, %" PRId64
                         " skipped, %zu key(s) tracked (was %zu), %" PRId64
                         " ms",
                         lparts->cnt, ledger, msgs, applied, skipped,
                         veil_retention_count(r->ri), before,
                         veil_now_ms() - t0);
out:
        rd_kafka_topic_partition_list_destroy(lparts);
        return rc;
}

void veil_retain_revoke(struct veil_retain *r,
                        const rd_kafka_topic_partition_list_t *parts)
{
        size_t dropped = 0;
        int i;

        if (!r)
                return;
        /* Outside a transaction nothing waits (flush stored it); the
         * cached group may be one of those dropped. */
        r->g_dirty = false;
        r->g_valid = false;

        for (i = 0; i < parts->cnt; i++) {
                uint16_t rs = rslot_of(r, parts->elems[i].topic,
                                       strlen(parts->elems[i].topic));

                if (rs == UINT16_MAX)
                        continue;
                dropped += veil_retention_drop_partition(
                        r->ri, parts->elems[i].partition, &rs, 1);
        }
        if (dropped)
                veil_log(
                        "info", "retention-revoke",
                        "%zu tracked key(s) of %d revoked partition(s) dropped",
                        dropped, parts->cnt);
}
