/* worker.c - `veil run`: the source connector (one consumer in the group,
 * read_committed, manual offsets), the sink connector (one transactional
 * producer, KIP-447 offsets), the filter chain between them, DLQ and audit
 * events; one Kafka transaction per batch. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "filter.h"
#include "registry.h"
#include "util.h"
#include "veil.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

void veil_worker_stop(void)
{
        stop_requested = 1;
}

void veil_worker_reload(void)
{
        reload_requested = 1;
}

/* ---- logs: JSON lines on stderr, names and codes only, never values ---- */

static void logj(const char *level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void logj(const char *level, const char *event, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        json_t *o;
        char *text;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o = json_pack("{s:I, s:s, s:s, s:s}", "ts", (json_int_t)veil_now_ms(),
                      "level", level, "event", event, "msg", msg);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text)
                fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(o);
}

/* ---- audit: events per batch (or record) and purpose, hash-chained per
 * source partition ------------------------------------------------------ */

struct audit_chain {
        char *source;  /* "topic/partition": the chain's id and message key */
        char prev[65]; /* committed head */
        char pending[65]; /* head inside the open transaction */
        struct audit_chain *next;
};

/* What one batch did for one (source partition, purpose). */
struct audit_acc {
        const struct veil_route *route;
        size_t purpose; /* index in route->purposes */
        int32_t partition;
        int64_t first, last;
        int64_t records, tombstones, expired;
        json_t *schema_in, *schema_out, *fields;
};

struct worker {
        const struct veil_config *config;
        struct veil_config *owned; /* a reloaded config, or NULL */
        struct veil_worker_opts opts;
        struct veil_registry *reg;
        struct veil_chain *chain;
        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        char txn_id[512];
        bool txn_open;
        int64_t batch_start_ms;
        int64_t batch_records;
        int64_t batch_now; /* epoch s for licence checks */

        bool dlq_encrypted;
        struct veil_aead dlq_aead;
        struct veil_buf dlq_key, dlq_value;

        struct audit_chain *chains;
        struct audit_acc *acc;
        size_t n_acc, cap_acc;

        /* The assignment: end-of-partition flags (--once) and the first
         * offset the open batch consumed (what an abort rewinds to). */
        struct {
                char *topic;
                int32_t partition;
                bool eof;
                int64_t batch_first; /* -1: nothing in the open batch */
        } * parts;
        size_t n_parts;

        bool fatal;
        char fatal_msg[512];
        int64_t n_in, n_out, n_dlq, n_tombstones, n_expired, n_aborts;
        int64_t backoff_ms;
};

static void fatal(struct worker *w, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void fatal(struct worker *w, const char *fmt, ...)
{
        va_list ap;

        if (w->fatal)
                return;
        w->fatal = true;
        va_start(ap, fmt);
        vsnprintf(w->fatal_msg, sizeof(w->fatal_msg), fmt, ap);
        va_end(ap);
        logj("error", "fatal", "%s", w->fatal_msg);
}

static struct audit_chain *audit_chain(struct worker *w, const char *topic,
                                       int32_t partition)
{
        struct audit_chain *c;
        char *source;

        if (asprintf(&source, "%s/%" PRId32, topic, partition) < 0)
                abort();
        for (c = w->chains; c; c = c->next)
                if (!strcmp(c->source, source)) {
                        free(source);
                        return c;
                }
        c         = veil_calloc(1, sizeof(*c));
        c->source = source;
        memset(c->prev, '0', 64);
        memcpy(c->pending, c->prev, 65);
        c->next   = w->chains;
        w->chains = c;
        return c;
}

static struct audit_acc *audit_acc(struct worker *w,
                                   const struct veil_route *route,
                                   size_t purpose, int32_t partition,
                                   int64_t offset)
{
        struct audit_acc *a;
        size_t i;

        for (i = 0; i < w->n_acc; i++) {
                a = &w->acc[i];
                if (a->route == route && a->purpose == purpose &&
                    a->partition == partition) {
                        if (offset < a->first)
                                a->first = offset;
                        if (offset > a->last)
                                a->last = offset;
                        return a;
                }
        }
        if (w->n_acc == w->cap_acc) {
                w->cap_acc = w->cap_acc ? 2 * w->cap_acc : 8;
                w->acc     = veil_realloc(w->acc, w->cap_acc * sizeof(*w->acc));
        }
        a = &w->acc[w->n_acc++];
        memset(a, 0, sizeof(*a));
        a->route      = route;
        a->purpose    = purpose;
        a->partition  = partition;
        a->first      = offset;
        a->last       = offset;
        a->schema_in  = json_array();
        a->schema_out = json_array();
        a->fields     = json_object();
        return a;
}

static void audit_acc_clear(struct worker *w)
{
        size_t i;

        for (i = 0; i < w->n_acc; i++) {
                json_decref(w->acc[i].schema_in);
                json_decref(w->acc[i].schema_out);
                json_decref(w->acc[i].fields);
        }
        w->n_acc = 0;
}

static void json_int_set_add(json_t *arr, int v)
{
        size_t i;
        json_t *x;

        json_array_foreach(arr, i, x) if (json_integer_value(x) == v) return;
        json_array_append_new(arr, json_integer(v));
}

/* Adds one record's outcome for one purpose. */
static void audit_note(struct audit_acc *a, const struct veil_record *rec,
                       const struct veil_record_out *out)
{
        if (out->skip) {
                a->expired++;
                return;
        }
        if (out->value_null) {
                a->tombstones++;
                return;
        }
        a->records++;
        json_int_set_add(a->schema_in, rec->frame.schema_id);
        if (out->plan) {
                const struct veil_plan_field *f;
                size_t n, i;

                json_int_set_add(a->schema_out, veil_plan_output_id(out->plan));
                f = veil_plan_fields(out->plan, &n);
                for (i = 0; i < n; i++)
                        json_object_set_new(a->fields, f[i].path,
                                            json_string(veil_tx_name(f[i].tx)));
        }
}

static rd_kafka_headers_t *headers_new(void)
{
        return rd_kafka_headers_new(8);
}

static void header_add(rd_kafka_headers_t *hdrs, const char *name,
                       const char *value)
{
        rd_kafka_header_add(hdrs, name, -1, value, -1);
}

/* Produces one message inside the open transaction. Takes ownership of
 * hdrs. Copies key and value. 0, or -1 after fatal(). */
static int produce(struct worker *w, const char *topic, const void *key,
                   size_t key_len, const void *value, size_t value_len,
                   rd_kafka_headers_t *hdrs, int64_t timestamp)
{
        rd_kafka_resp_err_t err;

        for (;;) {
                err = rd_kafka_producev(
                        w->producer, RD_KAFKA_V_TOPIC(topic),
                        RD_KAFKA_V_KEY((void *)key, key_len),
                        RD_KAFKA_V_VALUE((void *)value, value_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_TIMESTAMP(timestamp > 0 ? timestamp : 0),
                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                /* Let deliveries drain; a full queue is back-pressure. */
                rd_kafka_poll(w->producer, 100);
        }
        if (err) {
                rd_kafka_headers_destroy(hdrs);
                fatal(w, "producing to %s: %s", topic, rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

/* One audit event: serialized with sorted keys, chained to the previous
 * event of its source partition, produced keyed by that partition so the
 * chain stays on one audit partition in order. */
static int audit_emit(struct worker *w, const struct audit_acc *a,
                      const char *kind)
{
        const struct veil_route_purpose *rp = &a->route->purposes[a->purpose];
        struct audit_chain *c = audit_chain(w, a->route->source, a->partition);
        unsigned char digest[VEIL_SHA256_LEN];
        json_t *ev;
        char *text;
        size_t i;
        int rc;

        if (!w->config->topics.audit)
                return 0;
        ev = json_pack(
                "{s:i, s:s, s:s, s:{s:s, s:i, s:I, s:I}, s:s, s:s, s:s, s:s, "
                "s:I, s:I, s:I, s:O, s:O, s:O, s:s, s:I}",
                "v", 1, "kind", kind, "chain", c->source, "source", "topic",
                a->route->source, "partition", (int)a->partition, "first",
                (json_int_t)a->first, "last", (json_int_t)a->last, "purpose",
                rp->purpose, "topic", rp->topic, "license",
                rp->ref->license_id ? rp->ref->license_id : "", "policy",
                w->config->policy.digest, "records", (json_int_t)a->records,
                "tombstones", (json_int_t)a->tombstones, "expired",
                (json_int_t)a->expired, "schema_in", a->schema_in, "schema_out",
                a->schema_out, "fields", a->fields, "prev", c->pending, "ts",
                (json_int_t)veil_now_ms());
        if (!ev) {
                fatal(w, "building an audit event failed");
                return -1;
        }
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(ev);
        if (!text) {
                fatal(w, "serializing an audit event failed");
                return -1;
        }
        veil_sha256(text, strlen(text), digest);
        for (i = 0; i < VEIL_SHA256_LEN; i++)
                snprintf(c->pending + 2 * i, 3, "%02x", digest[i]);
        rc = produce(w, w->config->topics.audit, c->source, strlen(c->source),
                     text, strlen(text), headers_new(), 0);
        free(text);
        return rc;
}

/* ---- DLQ ---------------------------------------------------------------- */

static int seal(struct worker *w, const void *in, size_t len,
                struct veil_buf *out)
{
        size_t n = 0;

        out->len = 0;
        if (!veil_buf_reserve(out, len + VEIL_AEAD_OVERHEAD))
                return -1;
        if (veil_aead_seal(&w->dlq_aead, in, len, out->data, out->cap, &n))
                return -1;
        out->len = n;
        return 0;
}

static int dlq(struct worker *w, const rd_kafka_message_t *rkm,
               const struct veil_record *rec)
{
        const void *key = rkm->key, *value = rkm->payload;
        size_t key_len = rkm->key_len, value_len = rkm->len;
        rd_kafka_headers_t *hdrs = headers_new();
        char source[512];

        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, rec->topic,
                 rec->partition, rec->offset);
        header_add(hdrs, "veil.error", rec->reason ? rec->reason : "unknown");
        header_add(hdrs, "veil.error.detail", rec->detail);
        header_add(hdrs, "veil.source", source);
        header_add(hdrs, "veil.policy", w->config->policy.digest);
        if (w->dlq_encrypted) {
                /* A failure path must not leak plaintext: key and value are
                 * sealed with a key derived from the master key. */
                header_add(hdrs, "veil.dlq.payload", "encrypted");
                header_add(hdrs, "veil.dlq.cipher", "aes-256-gcm");
                header_add(hdrs, "veil.key_id", w->config->keys.key_id);
                if (key && seal(w, key, key_len, &w->dlq_key)) {
                        rd_kafka_headers_destroy(hdrs);
                        fatal(w, "sealing a DLQ key failed");
                        return -1;
                }
                if (value && seal(w, value, value_len, &w->dlq_value)) {
                        rd_kafka_headers_destroy(hdrs);
                        fatal(w, "sealing a DLQ value failed");
                        return -1;
                }
                key       = key ? w->dlq_key.data : NULL;
                key_len   = key ? w->dlq_key.len : 0;
                value     = value ? w->dlq_value.data : NULL;
                value_len = value ? w->dlq_value.len : 0;
        } else {
                header_add(hdrs, "veil.dlq.payload", "raw");
        }
        w->n_dlq++;
        logj("warn", "dlq", "%s at %s: %s", rec->reason, source, rec->detail);
        return produce(w, w->config->topics.dlq, key, key_len, value, value_len,
                       hdrs, 0);
}

/* ---- transactions ------------------------------------------------------- */

enum txn_outcome { TXN_OK = 0, TXN_ABORTED, TXN_FATAL };

static enum txn_outcome txn_error(struct worker *w, const char *what,
                                  rd_kafka_error_t *error)
{
        enum txn_outcome o;

        if (rd_kafka_error_is_fatal(error)) {
                fatal(w, "%s: %s", what, rd_kafka_error_string(error));
                o = TXN_FATAL;
        } else {
                logj("warn", "txn", "%s: %s", what,
                     rd_kafka_error_string(error));
                o = TXN_ABORTED;
        }
        rd_kafka_error_destroy(error);
        return o;
}

static void eof_reset(struct worker *w)
{
        size_t i;

        for (i = 0; i < w->n_parts; i++)
                w->parts[i].eof = false;
}

static void batch_first_reset(struct worker *w)
{
        size_t i;

        for (i = 0; i < w->n_parts; i++)
                w->parts[i].batch_first = -1;
}

static void batch_first_note(struct worker *w, const char *topic,
                             int32_t partition, int64_t offset)
{
        size_t k;

        for (k = 0; k < w->n_parts; k++)
                if (w->parts[k].partition == partition &&
                    w->parts[k].batch_first < 0 &&
                    !strcmp(w->parts[k].topic, topic))
                        w->parts[k].batch_first = offset;
}

/* Abort the open transaction (if any) and rewind each partition to the
 * first offset the batch consumed from it, so that the batch is read again.
 * Not the group's committed offsets: the dev broker does not store
 * transactional commits, and the batch start is exact anyway. */
static void abort_and_rewind(struct worker *w, bool rewind)
{
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_error_t *error;
        size_t k;

        if (w->txn_open) {
                for (;;) {
                        error = rd_kafka_abort_transaction(w->producer, 30000);
                        if (!error)
                                break;
                        if (rd_kafka_error_is_retriable(error)) {
                                rd_kafka_error_destroy(error);
                                continue;
                        }
                        txn_error(w, "abort_transaction", error);
                        return;
                }
                w->n_aborts++;
        }
        w->txn_open = false;
        audit_acc_clear(w);
        {
                struct audit_chain *c;

                for (c = w->chains; c; c = c->next)
                        memcpy(c->pending, c->prev, sizeof(c->prev));
        }
        if (rewind) {
                eof_reset(w);
                parts = rd_kafka_topic_partition_list_new(
                        w->n_parts ? (int)w->n_parts : 1);
                for (k = 0; k < w->n_parts; k++)
                        if (w->parts[k].batch_first >= 0)
                                rd_kafka_topic_partition_list_add(
                                        parts, w->parts[k].topic,
                                        w->parts[k].partition)
                                        ->offset = w->parts[k].batch_first;
                if (parts->cnt > 0) {
                        error = rd_kafka_seek_partitions(w->consumer, parts,
                                                         30000);
                        if (error) {
                                fatal(w, "rewinding the consumer: %s",
                                      rd_kafka_error_string(error));
                                rd_kafka_error_destroy(error);
                        }
                }
                rd_kafka_topic_partition_list_destroy(parts);
        }
        batch_first_reset(w);
}

static int begin(struct worker *w)
{
        rd_kafka_error_t *error;

        if (w->txn_open)
                return 0;
        error = rd_kafka_begin_transaction(w->producer);
        if (error) {
                txn_error(w, "begin_transaction", error);
                if (!w->fatal)
                        fatal(w, "begin_transaction failed");
                return -1;
        }
        w->txn_open       = true;
        w->batch_start_ms = veil_now_ms();
        w->batch_records  = 0;
        w->batch_now      = (int64_t)time(NULL);
        return 0;
}

/* Emits the batch's audit events, sends the consumer's positions and
 * commits. On an abortable error, aborts and rewinds. */
static enum txn_outcome commit(struct worker *w)
{
        rd_kafka_topic_partition_list_t *parts = NULL, *offsets;
        rd_kafka_consumer_group_metadata_t *cgmd;
        rd_kafka_error_t *error;
        enum txn_outcome o = TXN_OK;
        size_t i;
        int k;

        if (!w->txn_open)
                return TXN_OK;
        if (w->config->audit_level == VEIL_AUDIT_BATCH)
                for (i = 0; i < w->n_acc; i++)
                        if (audit_emit(w, &w->acc[i], "batch"))
                                return TXN_FATAL;
        audit_acc_clear(w);

        if (rd_kafka_assignment(w->consumer, &parts)) {
                fatal(w, "reading the assignment failed");
                return TXN_FATAL;
        }
        rd_kafka_position(w->consumer, parts);
        offsets =
                rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
        for (k = 0; k < parts->cnt; k++)
                if (parts->elems[k].offset >= 0)
                        rd_kafka_topic_partition_list_add(
                                offsets, parts->elems[k].topic,
                                parts->elems[k].partition)
                                ->offset = parts->elems[k].offset;
        rd_kafka_topic_partition_list_destroy(parts);

        cgmd = rd_kafka_consumer_group_metadata(w->consumer);
        for (;;) {
                error = rd_kafka_send_offsets_to_transaction(
                        w->producer, offsets, cgmd, 30000);
                if (!error || !rd_kafka_error_is_retriable(error))
                        break;
                rd_kafka_error_destroy(error);
        }
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_topic_partition_list_destroy(offsets);
        if (error) {
                o = txn_error(w, "send_offsets_to_transaction", error);
                goto failed;
        }
        for (;;) {
                error = rd_kafka_commit_transaction(w->producer, 60000);
                if (!error || !rd_kafka_error_is_retriable(error))
                        break;
                rd_kafka_error_destroy(error);
        }
        if (error) {
                o = txn_error(w, "commit_transaction", error);
                goto failed;
        }
        w->txn_open = false;
        {
                struct audit_chain *c;

                for (c = w->chains; c; c = c->next)
                        memcpy(c->prev, c->pending, sizeof(c->prev));
        }
        batch_first_reset(w);
        w->backoff_ms = 0;
        return TXN_OK;
failed:
        if (o == TXN_FATAL)
                return o;
        abort_and_rewind(w, true);
        return w->fatal ? TXN_FATAL : TXN_ABORTED;
}

/* ---- one record --------------------------------------------------------- */

enum rec_outcome { REC_OK = 0, REC_RETRY, REC_FATAL };

static enum rec_outcome handle(struct worker *w, rd_kafka_message_t *rkm)
{
        const char *topic = rd_kafka_topic_name(rkm->rkt);
        const struct veil_route *route =
                veil_policy_route(&w->config->policy, topic);
        struct veil_record rec;
        enum veil_verdict v;
        char source[512];
        size_t j;

        if (begin(w))
                return REC_FATAL;
        batch_first_note(w, topic, rkm->partition, rkm->offset);
        memset(&rec, 0, sizeof(rec));
        rec.topic     = topic;
        rec.partition = rkm->partition;
        rec.offset    = rkm->offset;
        rec.key       = rkm->key;
        rec.key_len   = rkm->key_len;
        rec.value     = rkm->payload;
        rec.value_len = rkm->len;
        rec.now       = w->batch_now;
        w->batch_records++;
        w->n_in++;
        if (!route) {
                /* Subscribed only to route sources: cannot happen, but a
                 * record must never be lost silently. */
                rec.reason = "no-route";
                snprintf(rec.detail, sizeof(rec.detail),
                         "no route for topic %s", topic);
                return dlq(w, rkm, &rec) ? REC_FATAL : REC_OK;
        }
        rec.route = route;
        v         = veil_chain_process(w->chain, &rec);
        switch (v) {
        case VEIL_DROP:
                return REC_OK;
        case VEIL_DIVERT:
                return dlq(w, rkm, &rec) ? REC_FATAL : REC_OK;
        case VEIL_RETRY:
                logj("warn", "retry", "%s at %s/%" PRId32 "/%" PRId64 ": %s",
                     rec.reason ? rec.reason : "retry", topic, rec.partition,
                     rec.offset, rec.detail);
                return REC_RETRY;
        case VEIL_CONTINUE:
                break;
        }
        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, topic,
                 rec.partition, rec.offset);
        for (j = 0; j < rec.n_outs; j++) {
                const struct veil_record_out *out = &rec.outs[j];
                const struct veil_purpose *pu     = out->rp->ref;
                rd_kafka_headers_t *hdrs;
                int64_t ts;

                if (w->config->audit_level == VEIL_AUDIT_BATCH) {
                        audit_note(audit_acc(w, route, j, rec.partition,
                                             rec.offset),
                                   &rec, out);
                } else {
                        struct audit_acc *a = audit_acc(
                                w, route, j, rec.partition, rec.offset);
                        int rc;

                        audit_note(a, &rec, out);
                        rc = audit_emit(w, a, "record");
                        audit_acc_clear(w);
                        if (rc)
                                return REC_FATAL;
                }
                if (out->skip) {
                        w->n_expired++;
                        continue;
                }
                hdrs = headers_new();
                header_add(hdrs, "veil.purpose", pu->name);
                header_add(hdrs, "veil.license",
                           pu->license_id ? pu->license_id : "");
                header_add(hdrs, "veil.policy", w->config->policy.digest);
                header_add(hdrs, "veil.source", source);
                if (out->reason)
                        header_add(hdrs, "veil.reason", out->reason);
                ts = rd_kafka_message_timestamp(rkm, NULL);
                if (produce(w, out->rp->topic,
                            out->key_null ? NULL : out->key.data,
                            out->key_null ? 0 : out->key.len,
                            out->value_null ? NULL : out->value.data,
                            out->value_null ? 0 : out->value.len, hdrs, ts))
                        return REC_FATAL;
                if (out->value_null)
                        w->n_tombstones++;
                else
                        w->n_out++;
        }
        return REC_OK;
}

/* ---- source connector: the assignment and rebalances -------------------- */

static void parts_add(struct worker *w,
                      const rd_kafka_topic_partition_list_t *list)
{
        int i;

        for (i = 0; i < list->cnt; i++) {
                w->parts                   = veil_realloc(w->parts,
                                                          (w->n_parts + 1) * sizeof(*w->parts));
                w->parts[w->n_parts].topic = veil_strdup(list->elems[i].topic);
                w->parts[w->n_parts].partition   = list->elems[i].partition;
                w->parts[w->n_parts].eof         = false;
                w->parts[w->n_parts].batch_first = -1;
                w->n_parts++;
        }
}

static void parts_remove(struct worker *w,
                         const rd_kafka_topic_partition_list_t *list)
{
        size_t k;
        int i;

        for (i = 0; i < list->cnt; i++)
                for (k = 0; k < w->n_parts; k++)
                        if (w->parts[k].partition == list->elems[i].partition &&
                            !strcmp(w->parts[k].topic, list->elems[i].topic)) {
                                free(w->parts[k].topic);
                                w->parts[k] = w->parts[--w->n_parts];
                                break;
                        }
}

static void parts_eof(struct worker *w, const char *topic, int32_t partition,
                      bool eof)
{
        size_t k;

        for (k = 0; k < w->n_parts; k++)
                if (w->parts[k].partition == partition &&
                    !strcmp(w->parts[k].topic, topic))
                        w->parts[k].eof = eof;
}

static bool parts_all_eof(const struct worker *w)
{
        size_t k;

        if (w->n_parts == 0)
                return false;
        for (k = 0; k < w->n_parts; k++)
                if (!w->parts[k].eof)
                        return false;
        return true;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        struct worker *w = opaque;
        bool cooperative =
                !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        rd_kafka_error_t *error = NULL;

        switch (err) {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                logj("info", "assign", "%d partition(s) assigned", parts->cnt);
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                parts_add(w, parts);
                break;
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                logj("info", "revoke", "%d partition(s) revoked%s", parts->cnt,
                     rd_kafka_assignment_lost(rk) ? " (lost)" : "");
                /* The open transaction holds records of these partitions:
                 * finish it while we still own them, or abort it when they
                 * are already lost (another worker has them). */
                if (w->txn_open) {
                        if (rd_kafka_assignment_lost(rk))
                                abort_and_rewind(w, false);
                        else
                                commit(w);
                }
                if (cooperative)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
                parts_remove(w, parts);
                break;
        default:
                logj("error", "rebalance", "rebalance failed: %s",
                     rd_kafka_err2str(err));
                if (w->txn_open)
                        abort_and_rewind(w, false);
                rd_kafka_assign(rk, NULL);
                break;
        }
        if (error) {
                logj("error", "rebalance", "assignment failed: %s",
                     rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
        (void)rk;
        logj(level <= 3   ? "error"
             : level <= 4 ? "warn"
                          : "info",
             "rdkafka", "%s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        struct worker *w = opaque;
        char buf[512];

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                fatal(w, "%s: %s", rd_kafka_name(rk), buf);
                return;
        }
        /* Broker down and the like: librdkafka keeps retrying. */
        logj("warn", "kafka", "%s", reason);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                      void *opaque)
{
        (void)rk;
        (void)opaque;
        if (rkm->err)
                logj("warn", "delivery", "to %s: %s",
                     rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
}

static rd_kafka_conf_t *conf_new(struct worker *w, bool producer, char *errstr,
                                 size_t errstr_size)
{
        const struct veil_config *config = w->config;
        rd_kafka_conf_t *conf            = rd_kafka_conf_new();
        char err[512];
        size_t i;

#define SET(k, v)                                                              \
        do {                                                                   \
                if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) !=         \
                    RD_KAFKA_CONF_OK) {                                        \
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,           \
                                  "kafka.%s: %s", k, err);                     \
                        goto err;                                              \
                }                                                              \
        } while (0)

        if (!producer) {
                SET("partition.assignment.strategy", "cooperative-sticky");
                SET("auto.offset.reset", "earliest");
        }
        for (i = 0; i < config->n_kafka; i++)
                SET(config->kafka[i].key, config->kafka[i].value);
        if (producer) {
                SET("transactional.id", w->txn_id);
                rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        } else {
                /* What exactly-once rests on: these are not negotiable. */
                SET("group.id", config->group);
                SET("isolation.level", "read_committed");
                SET("enable.auto.commit", "false");
                SET("enable.partition.eof", w->opts.once ? "true" : "false");
                rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        }
#undef SET
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_opaque(conf, w);
        return conf;
err:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

static int clients_new(struct worker *w, char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy = &w->config->policy;
        rd_kafka_topic_partition_list_t *topics;
        rd_kafka_conf_t *conf;
        rd_kafka_error_t *error;
        rd_kafka_resp_err_t err;
        char kerr[512];
        size_t i;

        conf = conf_new(w, true, errstr, errstr_size);
        if (!conf)
                return VEIL_ECONFIG;
        w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!w->producer) {
                rd_kafka_conf_destroy(conf);
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "producer: %s", kerr);
        }
        conf = NULL;
        /* Fences a predecessor with the same transactional.id (a restarted
         * worker) and aborts its open transaction at once. */
        for (;;) {
                error = rd_kafka_init_transactions(w->producer, 60000);
                if (!error)
                        break;
                if (!rd_kafka_error_is_retriable(error) || stop_requested) {
                        veil_errf(errstr, errstr_size, VEIL_ENET,
                                  "init_transactions: %s",
                                  rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        return VEIL_ENET;
                }
                logj("warn", "txn", "init_transactions: %s (retrying)",
                     rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }

        conf = conf_new(w, false, errstr, errstr_size);
        if (!conf)
                return VEIL_ECONFIG;
        w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
        if (!w->consumer) {
                rd_kafka_conf_destroy(conf);
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "consumer: %s", kerr);
        }
        rd_kafka_poll_set_consumer(w->consumer);
        topics = rd_kafka_topic_partition_list_new((int)policy->n_routes + 1);
        for (i = 0; i < policy->n_routes; i++)
                rd_kafka_topic_partition_list_add(topics,
                                                  policy->routes[i].source,
                                                  RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(w->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "subscribe: %s", rd_kafka_err2str(err));
        return 0;
}

/* ---- the loop ------------------------------------------------------------ */

static void backoff(struct worker *w)
{
        struct timespec ts;

        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 100;
        if (w->backoff_ms > 5000)
                w->backoff_ms = 5000;
        ts.tv_sec  = w->backoff_ms / 1000;
        ts.tv_nsec = (w->backoff_ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) && errno == EINTR && !stop_requested)
                ;
}

/* The same route sources, in any order? */
static bool same_sources(const struct veil_policy *a,
                         const struct veil_policy *b)
{
        size_t i;

        if (a->n_routes != b->n_routes)
                return false;
        for (i = 0; i < a->n_routes; i++)
                if (!veil_policy_route(b, a->routes[i].source))
                        return false;
        return true;
}

/* SIGHUP, between batches: a new config and chain, or the old ones and a
 * log line saying why not. Kafka, group and registry settings stay as they
 * started (they need a restart). */
static void reload(struct worker *w)
{
        struct veil_config_opts lopts = {0};
        struct veil_config *config;
        struct veil_chain *chain;
        char err[1024];

        reload_requested = 0;
        if (!w->opts.config_path) {
                logj("warn", "reload-rejected", "no config file to reload");
                return;
        }
        config =
                veil_config_load(w->opts.config_path, &lopts, err, sizeof(err));
        if (!config) {
                logj("error", "reload-rejected", "keeping policy %.12s: %s",
                     w->config->policy.digest, err);
                return;
        }
        if (!same_sources(&config->policy, &w->config->policy)) {
                logj("error", "reload-rejected",
                     "keeping policy %.12s: the routes' source topics "
                     "changed, which needs a restart",
                     w->config->policy.digest);
                veil_config_destroy(config);
                return;
        }
        chain = veil_chain_new(config, w->reg, err, sizeof(err));
        if (!chain) {
                logj("error", "reload-rejected", "keeping policy %.12s: %s",
                     w->config->policy.digest, err);
                veil_config_destroy(config);
                return;
        }
        logj("info", "reload", "policy %.12s replaces %.12s",
             config->policy.digest, w->config->policy.digest);
        veil_chain_destroy(w->chain);
        veil_config_destroy(w->owned);
        w->chain  = chain;
        w->owned  = config;
        w->config = config;
}

static void loop(struct worker *w)
{
        const int64_t interval = w->config->commit_interval_ms > 0
                                         ? w->config->commit_interval_ms
                                         : 100;
        const int64_t max      = w->config->max_batch_records > 0
                                         ? w->config->max_batch_records
                                         : 10000;

        while (!stop_requested && !w->fatal) {
                rd_kafka_message_t *rkm;
                int timeout = 100;

                if (w->txn_open) {
                        int64_t left =
                                w->batch_start_ms + interval - veil_now_ms();
                        timeout = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(w->consumer, timeout);
                rd_kafka_poll(w->producer, 0);
                if (rkm) {
                        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                parts_eof(w, rd_kafka_topic_name(rkm->rkt),
                                          rkm->partition, true);
                        } else if (rkm->err) {
                                logj("warn", "consume", "%s",
                                     rd_kafka_message_errstr(rkm));
                        } else {
                                enum rec_outcome o;

                                parts_eof(w, rd_kafka_topic_name(rkm->rkt),
                                          rkm->partition, false);
                                o = handle(w, rkm);
                                if (o == REC_RETRY) {
                                        rd_kafka_message_destroy(rkm);
                                        abort_and_rewind(w, true);
                                        backoff(w);
                                        continue;
                                }
                        }
                        rd_kafka_message_destroy(rkm);
                }
                if (w->fatal)
                        break;
                if (w->txn_open &&
                    (w->batch_records >= max ||
                     veil_now_ms() - w->batch_start_ms >= interval)) {
                        if (commit(w) == TXN_ABORTED)
                                backoff(w);
                }
                if (reload_requested && !w->txn_open)
                        reload(w);
                if (w->opts.once && !w->txn_open && parts_all_eof(w))
                        break;
        }
        /* SIGINT/SIGTERM: the open batch is committed, not lost. */
        if (!w->fatal && w->txn_open)
                commit(w);
}

int veil_worker_run(const struct veil_config *config,
                    const struct veil_worker_opts *opts, char *errstr,
                    size_t errstr_size)
{
        struct worker w;
        unsigned char dlq_key[VEIL_AEAD_GCM_KEY_LEN];
        char err[512];
        int rc = 0;
        size_t i;

        memset(&w, 0, sizeof(w));
        w.config = config;
        if (opts)
                w.opts = *opts;
        snprintf(w.txn_id, sizeof(w.txn_id), "%s-%s", config->group,
                 config->instance);
        w.dlq_encrypted = config->dlq_payload == VEIL_DLQ_ENCRYPTED;
        veil_buf_init(&w.dlq_key, 0);
        veil_buf_init(&w.dlq_value, 0);
        if (w.dlq_encrypted) {
                static const char info[] = "veil:dlq";

                rc = veil_hkdf_sha256(config->keys.key, config->keys.key_len,
                                      NULL, 0, info, sizeof(info) - 1, dlq_key,
                                      sizeof(dlq_key), errstr, errstr_size);
                if (!rc)
                        rc = veil_aead_init(&w.dlq_aead, VEIL_AEAD_GCM, dlq_key,
                                            sizeof(dlq_key), errstr,
                                            errstr_size);
                veil_cleanse(dlq_key, sizeof(dlq_key));
                if (rc)
                        goto out;
        }
        w.reg = veil_registry_new(&config->registry, err, sizeof(err));
        if (!w.reg) {
                rc = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                               "registry: %s", err);
                goto out;
        }
        w.chain = veil_chain_new(config, w.reg, errstr, errstr_size);
        if (!w.chain) {
                rc = VEIL_ECONFIG;
                goto out;
        }
        rc = clients_new(&w, errstr, errstr_size);
        if (rc)
                goto out;
        logj("info", "start",
             "worker %s: group %s, %zu route(s), policy %.12s, audit %s, "
             "dlq payload %s",
             w.txn_id, config->group, config->policy.n_routes,
             config->policy.digest,
             config->audit_level == VEIL_AUDIT_BATCH ? "batch" : "record",
             w.dlq_encrypted ? "encrypted" : "raw");
        loop(&w);
        logj("info", "stop",
             "records in %" PRId64 ", out %" PRId64 ", tombstones %" PRId64
             ", dlq %" PRId64 ", expired %" PRId64 ", aborts %" PRId64,
             w.n_in, w.n_out, w.n_tombstones, w.n_dlq, w.n_expired, w.n_aborts);
        if (w.fatal)
                rc = veil_errf(errstr, errstr_size, VEIL_ENET, "%s",
                               w.fatal_msg);
out:
        if (w.consumer) {
                rd_kafka_consumer_close(w.consumer);
                rd_kafka_destroy(w.consumer);
        }
        if (w.producer) {
                rd_kafka_flush(w.producer, 10000);
                rd_kafka_destroy(w.producer);
        }
        veil_chain_destroy(w.chain);
        veil_config_destroy(w.owned);
        veil_registry_destroy(w.reg);
        veil_aead_destroy(&w.dlq_aead);
        veil_buf_free(&w.dlq_key);
        veil_buf_free(&w.dlq_value);
        audit_acc_clear(&w);
        free(w.acc);
        while (w.chains) {
                struct audit_chain *c = w.chains;

                w.chains = c->next;
                free(c->source);
                free(c);
        }
        for (i = 0; i < w.n_parts; i++)
                free(w.parts[i].topic);
        free(w.parts);
        return rc;
}
