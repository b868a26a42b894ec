/* shred.c - crypto-shredding in the worker: the subject-key store kept
 * current from the compacted key topic (read in full at start and from
 * where it stopped on every assignment, blocking; between them followed
 * without blocking), key writes and erasure tombstones produced into the
 * worker's transaction.
 *
 * Why follow rather than read to the end every second: a read to the end
 * asks the broker for metadata and each partition's end offset, then
 * fetches, while the pipeline waits (tens to hundreds of ms on a busy
 * broker, every second: it cost the end-to-end run a third of its
 * throughput). Kept assigned, the reader's fetches run in librdkafka's
 * threads and a transaction's begin only takes what has arrived. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "headers.h"
#include "kafka.h"
#include "log.h"
#include "reader.h"
#include "shred.h"
#include "sink.h"
#include "util.h"
#include "veil.h"

struct veil_shred {
        const struct veil_config *config;
        struct veil_sink *sink; /* borrowed */
        rd_kafka_t *reader;     /* assign-only, read_committed */
        rd_kafka_t *fetcher;    /* one record at a time: spilled subjects */
        struct veil_subject_keys *sk;
        /* where the next read starts, per key-topic partition */
        int64_t *next;
        size_t n_next;
        int64_t last_catch_up_ms;
        bool warned;
        bool following; /* reader assigned at next[] after a full read */
};

/* Records a begin applies at most (the rest wait for the next begin). */
#define FOLLOW_BUDGET 50000

static int apply_cb(void *opaque, const rd_kafka_message_t *rkm)
{
        struct veil_shred *s = opaque;

        /* Already applied (a fetch of an earlier assignment): an older
         * record must never come back over a later one (a tombstone). */
        if (rkm->partition >= 0 && (size_t)rkm->partition < s->n_next &&
            s->next[rkm->partition] >= 0 &&
            rkm->offset < s->next[rkm->partition])
                return 0;
        veil_subject_keys_apply_at(s->sk, rkm->partition, rkm->offset, rkm->key,
                                   rkm->key_len, rkm->payload, rkm->len);
        if (rkm->partition >= 0 && (size_t)rkm->partition < s->n_next)
                s->next[rkm->partition] = rkm->offset + 1;
        return 0;
}

/* Assigns the reader at next[] of every partition: librdkafka fetches from
 * there in its own threads. */
static int follow(struct veil_shred *s, char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *list;
        rd_kafka_resp_err_t err;
        size_t i;

        list = rd_kafka_topic_partition_list_new((int)s->n_next + 1);
        for (i = 0; i < s->n_next; i++)
                rd_kafka_topic_partition_list_add(
                        list, s->config->topics.subject_keys, (int32_t)i)
                        ->offset = s->next[i] >= 0 ? s->next[i]
                                                   : RD_KAFKA_OFFSET_BEGINNING;
        err = rd_kafka_assign(s->reader, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err)
                return veil_errf(
                        errstr, errstr_size, VEIL_ENET, "following %s: %s",
                        s->config->topics.subject_keys, rd_kafka_err2str(err));
        s->following = true;
        return 0;
}

/* What the followed reader has fetched, without waiting. */
static int drain(struct veil_shred *s, char *errstr, size_t errstr_size)
{
        rd_kafka_message_t *rkm;
        int budget = FOLLOW_BUDGET, rc = 0;

        while (budget-- > 0 && (rkm = rd_kafka_consumer_poll(s->reader, 0))) {
                if (!rkm->err) {
                        apply_cb(s, rkm);
                } else if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                           (rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                            rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                            rkm->err ==
                                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                            rkm->err == RD_KAFKA_RESP_ERR__FATAL)) {
                        /* Read it in full again at the next call. */
                        rc           = veil_errf(errstr, errstr_size, VEIL_ENET,
                                                 "following %s: %s",
                                                 s->config->topics.subject_keys,
                                                 rd_kafka_message_errstr(rkm));
                        s->following = false;
                        rd_kafka_message_destroy(rkm);
                        break;
                }
                /* other errors (transport): librdkafka retries */
                rd_kafka_message_destroy(rkm);
        }
        return rc;
}

int veil_shred_catch_up(struct veil_shred *s, bool force, char *errstr,
                        size_t errstr_size)
{
        struct veil_reader_part *parts = NULL;
        int64_t now                    = veil_now_ms();
        size_t n                       = 0, i;
        int rc;

        if (!s)
                return 0;
        if (!force && s->following)
                return drain(s, errstr, errstr_size);
        if (!force && now - s->last_catch_up_ms < VEIL_SHRED_CATCHUP_MS)
                return 0;
        s->following        = false;
        s->last_catch_up_ms = now;
        rc = veil_reader_ends(s->reader, s->config->topics.subject_keys, &parts,
                              &n, 10000, errstr, errstr_size);
        if (rc == VEIL_ENOTFOUND) {
                /* No key topic yet: no subject has a key. The first key
                 * write creates it where brokers auto-create topics. */
                if (!s->warned)
                        veil_log("warn", "subject-keys",
                                 "key topic %s does not exist yet "
                                 "(create it: veil topics --apply)",
                                 s->config->topics.subject_keys);
                s->warned = true;
                return 0;
        }
        if (rc)
                return rc;
        if (n > s->n_next) {
                s->next = veil_realloc(s->next, n * sizeof(*s->next));
                for (i = s->n_next; i < n; i++)
                        s->next[i] = -1;
                s->n_next = n;
        }
        for (i = 0; i < n; i++) {
                int32_t p = parts[i].partition;

                if (p >= 0 && (size_t)p < s->n_next && s->next[p] >= 0 &&
                    s->next[p] > parts[i].from)
                        parts[i].from = s->next[p];
        }
        rc = veil_reader_run(s->reader, s->config->topics.subject_keys, parts,
                             n, 30000, apply_cb, s, errstr, errstr_size);
        /* Where the read reached: the end (nothing more below it). */
        for (i = 0; !rc && i < n; i++) {
                int32_t p = parts[i].partition;

                if (p >= 0 && (size_t)p < s->n_next && parts[i].to > s->next[p])
                        s->next[p] = parts[i].to;
        }
        free(parts);
        if (!rc)
                rc = follow(s, errstr, errstr_size);
        return rc;
}

/* A bound from the environment (tests, tuning), else `def`. */
static size_t env_size(const char *name, size_t def)
{
        const char *v = getenv(name);
        char *end;
        unsigned long long n;

        if (!v || !*v)
                return def;
        errno = 0;
        n     = strtoull(v, &end, 10);
        if (errno || *end || n > SIZE_MAX / 2) {
                veil_log("warn", "subject-keys",
                         "%s is not a number: %zu is used", name, def);
                return def;
        }
        return (size_t)n;
}

static int fetch_cb(void *arg, int32_t part, int64_t off,
                    const unsigned char *ref, unsigned char *blob, size_t cap,
                    size_t *len, char *errstr, size_t errstr_size);

/* A store bounded as VEIL_SHRED_CACHE_MAX / _INDEX_MAX say (or the
 * environment's variables of those names), fetching through s. */
static struct veil_subject_keys *store_new(const struct veil_config *config,
                                           struct veil_shred *s, char *errstr,
                                           size_t errstr_size)
{
        struct veil_subject_keys *sk = veil_subject_keys_new(
                config, env_size("VEIL_SHRED_CACHE_MAX", VEIL_SHRED_CACHE_MAX),
                errstr, errstr_size);

        if (sk)
                veil_subject_keys_bound(
                        sk,
                        env_size("VEIL_SHRED_INDEX_MAX", VEIL_SHRED_INDEX_MAX),
                        fetch_cb, s);
        return sk;
}

/* The store's fetch (veil_subject_keys_fetch_fn): the record at (part,
 * off), read_committed, with a deadline. */
static int fetch_cb(void *arg, int32_t part, int64_t off,
                    const unsigned char *ref, unsigned char *blob, size_t cap,
                    size_t *len, char *errstr, size_t errstr_size)
{
        struct veil_shred *s = arg;
        const char *topic    = s->config->topics.subject_keys;
        int64_t deadline     = veil_now_ms() + VEIL_SHRED_FETCH_TIMEOUT_MS;
        rd_kafka_topic_partition_list_t *list;
        rd_kafka_resp_err_t err;
        int rc = VEIL_ENET;

        list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, topic, part)->offset = off;
        err = rd_kafka_assign(s->fetcher, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "fetching from %s: %s", topic,
                                 rd_kafka_err2str(err));
        veil_errf(errstr, errstr_size, VEIL_ENET,
                  "fetching a subject key from %s [%" PRId32 "] timed out",
                  topic, part);
        while (veil_now_ms() < deadline) {
                rd_kafka_message_t *rkm =
                        rd_kafka_consumer_poll(s->fetcher, 100);

                if (!rkm)
                        continue;
                if (rkm->partition != part ||
                    (rkm->err &&
                     rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
                        rd_kafka_message_destroy(rkm);
                        continue; /* transport errors: librdkafka retries */
                }
                /* The record is there, or the subject's record moved (a
                 * later one the reader has not applied yet): try again
                 * later, never answer "no key". */
                if (!rkm->err && rkm->offset == off &&
                    rkm->key_len == VEIL_SUBJECT_REF_LEN &&
                    !memcmp(rkm->key, ref, VEIL_SUBJECT_REF_LEN) &&
                    rkm->payload && rkm->len <= cap) {
                        memcpy(blob, rkm->payload, rkm->len);
                        *len = rkm->len;
                        rc   = 0;
                } else {
                        rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                                       "a subject key is no longer at %s "
                                       "[%" PRId32 "] offset %" PRId64
                                       " (read again)",
                                       topic, part, off);
                }
                rd_kafka_message_destroy(rkm);
                break;
        }
        rd_kafka_assign(s->fetcher, NULL);
        return rc;
}

int veil_shred_new(const struct veil_config *config, struct veil_sink *sink,
                   struct veil_shred **shredp, char *errstr, size_t errstr_size)
{
        struct veil_shred *s;
        struct veil_subject_keys_stats st;
        int64_t deadline;
        int rc;

        *shredp = NULL;
        if (!veil_policy_per_subject(config) || !config->topics.subject_keys)
                return 0;
        s         = veil_calloc(1, sizeof(*s));
        s->config = config;
        s->sink   = sink;
        s->sk     = store_new(config, s, errstr, errstr_size);
        if (!s->sk) {
                veil_shred_destroy(s);
                return VEIL_ECONFIG;
        }
        s->reader = veil_reader_consumer(config, "subject-keys", NULL, errstr,
                                         errstr_size);
        s->fetcher =
                s->reader ? veil_reader_consumer(config, "subject-keys-fetch",
                                                 NULL, errstr, errstr_size)
                          : NULL;
        if (!s->reader || !s->fetcher) {
                veil_shred_destroy(s);
                return VEIL_ECONFIG;
        }
        /* A key topic just created may not have its leaders yet: broker
         * errors are retried for a while, as the audit topic's are. */
        deadline = veil_now_ms() + VEIL_SHRED_START_TIMEOUT_MS;
        while ((rc = veil_shred_catch_up(s, true, errstr, errstr_size)) ==
                       VEIL_ENET &&
               veil_now_ms() < deadline) {
                veil_log("warn", "subject-keys", "%s (retrying)", errstr);
                nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
        }
        if (rc) {
                veil_shred_destroy(s);
                return rc;
        }
        veil_subject_keys_stats(s->sk, &st);
        veil_log("info", "subject-keys", "%s: %zu subject key(s) known",
                 config->topics.subject_keys, st.known);
        *shredp = s;
        return 0;
}

void veil_shred_destroy(struct veil_shred *s)
{
        if (!s)
                return;
        if (s->reader)
                rd_kafka_destroy(s->reader);
        if (s->fetcher)
                rd_kafka_destroy(s->fetcher);
        veil_subject_keys_destroy(s->sk);
        free(s->next);
        free(s);
}

struct veil_subject_keys *veil_shred_store(struct veil_shred *s)
{
        return s ? s->sk : NULL;
}

int veil_shred_set_config(struct veil_shred *s,
                          const struct veil_config *config, char *errstr,
                          size_t errstr_size)
{
        struct veil_subject_keys *old_sk;
        const struct veil_config *old_config;
        int64_t *old_next;
        size_t i;
        int rc;

        if (!s)
                return 0;
        old_sk     = s->sk;
        old_config = s->config;
        old_next   = veil_calloc(s->n_next + 1, sizeof(*old_next));
        if (s->n_next)
                memcpy(old_next, s->next, s->n_next * sizeof(*old_next));
        s->sk = store_new(config, s, errstr, errstr_size);
        rc    = s->sk ? 0 : VEIL_ECONFIG;
        if (!rc) {
                s->config = config;
                for (i = 0; i < s->n_next; i++)
                        s->next[i] = -1;
                rc = veil_shred_catch_up(s, true, errstr, errstr_size);
        }
        if (rc) {
                /* The old config stays: so do its store and positions. */
                veil_subject_keys_destroy(s->sk);
                s->sk     = old_sk;
                s->config = old_config;
                if (s->n_next)
                        memcpy(s->next, old_next,
                               s->n_next * sizeof(*old_next));
        } else {
                veil_subject_keys_destroy(old_sk);
        }
        free(old_next);
        return rc;
}

struct flush_ctx {
        struct veil_shred *s;
        char *errstr;
        size_t errstr_size;
};

static int flush_one(void *arg, const unsigned char *ref,
                     const unsigned char *blob, size_t blob_len)
{
        struct flush_ctx *f = arg;

        /* A failed transaction: its commit aborts it and the batch is
         * redone (sink.c), the key written again then. */
        return veil_sink_write(f->s->sink, f->s->config->topics.subject_keys,
                               RD_KAFKA_PARTITION_UA, ref, VEIL_SUBJECT_REF_LEN,
                               blob, blob_len, NULL, f->errstr, f->errstr_size);
}

int veil_shred_flush(struct veil_shred *s, char *errstr, size_t errstr_size)
{
        struct flush_ctx f = {s, errstr, errstr_size};

        if (!s)
                return 0;
        return veil_subject_keys_pending(s->sk, flush_one, &f);
}

void veil_shred_commit(struct veil_shred *s)
{
        if (s)
                veil_subject_keys_commit(s->sk);
}

void veil_shred_rollback(struct veil_shred *s)
{
        if (s)
                veil_subject_keys_rollback(s->sk);
}

int veil_shred_erase(struct veil_shred *s, const void *subject, size_t len,
                     int64_t *produced, char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy;
        unsigned char(*refs)[VEIL_SUBJECT_REF_LEN];
        size_t cap, i, j, k, n;
        int rc = 0;

        if (!s)
                return 0;
        policy = &s->config->policy;
        cap    = veil_subject_keys_ring_size(s->sk);
        refs   = veil_calloc(cap + 1, sizeof(*refs));
        for (i = 0; i < policy->n_routes && !rc; i++) {
                const char *source = policy->routes[i].source;

                /* Two routes of one source share its subjects' keys. */
                for (j = 0; j < i; j++)
                        if (!strcmp(policy->routes[j].source, source))
                                break;
                if (j < i)
                        continue;
                rc = veil_subject_keys_erase(s->sk, source, subject, len, refs,
                                             cap, &n, errstr, errstr_size);
                for (k = 0; k < n && !rc; k++) {
                        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(1);

                        rd_kafka_header_add(hdrs, VEIL_H_REASON, -1, "erasure",
                                            -1);
                        rc = veil_sink_write(s->sink,
                                             s->config->topics.subject_keys,
                                             RD_KAFKA_PARTITION_UA, refs[k],
                                             VEIL_SUBJECT_REF_LEN, NULL, 0,
                                             hdrs, errstr, errstr_size);
                        if (!rc)
                                (*produced)++;
                }
        }
        veil_cleanse(refs, (cap + 1) * sizeof(*refs));
        free(refs);
        return rc;
}
