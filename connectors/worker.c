/* worker.c - `veil run`: the loop. Several pipelines run side by side, each
 * its own consumer-group member with its own transactional sink (what
 * Kafka Streams does with stream threads), so that while one waits for its
 * commit the others keep the broker busy. A pipeline consumes, runs the
 * filter chain, and hands outputs, dead letters (dlq.c), audit events
 * (audit.c) and retention state (retain.c) to one transaction (sink.c) per
 * batch. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "dlq.h"
#include "filter.h"
#include "headers.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "reader.h"
#include "registry.h"
#include "retain.h"
#include "sink.h"
#include "source.h"
#include "tally.h"
#include "util.h"
#include "veil.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested;
/* Bumped by each SIGHUP; every pipeline reloads once per change. */
static volatile sig_atomic_t reload_gen;

void veil_worker_stop(void)
{
        stop_requested = 1;
}

void veil_worker_reload(void)
{
        reload_gen = (sig_atomic_t)(reload_gen + 1);
}

/* ---- what the pipelines share -------------------------------------------- */

struct shared {
        const struct veil_config *config;
        struct veil_worker_opts opts;
        struct veil_families m;
        struct veil_http *http;
        atomic_bool stop; /* a pipeline hit a fatal error: all stop */
        atomic_int done;  /* pipelines that finished (--once) */
        atomic_int assigned;
        struct pipe *pipes;
        size_t n_pipes;
};

struct pipe {
        struct shared *sh;
        int index;
        const struct veil_config *config;
        struct veil_config *owned; /* a reloaded config, or NULL */
        char txn_id[512];
        pthread_t thread;
        bool started;

        struct veil_registry *reg;
        struct veil_chain *chain;
        struct veil_sink *sink;
        struct veil_source *source;
        rd_kafka_t *audit_reader;
        struct veil_audit *audit;
        struct veil_retain *retain;
        struct veil_dlq *dlq;

        int64_t batch_start_ms, batch_records, batch_now;
        /* A record whose output the producer refused for its size after
         * the size check passed: the batch is redone and this record goes
         * to the DLQ instead. */
        struct {
                char *topic;
                int32_t partition;
                int64_t offset;
        } too_large;

        struct veil_tally *tally;

        _Atomic int64_t heartbeat_ms;
        atomic_bool dead;
        char fatal_msg[512];
        int64_t n_in, n_out, n_dlq, n_tombstones, n_expired;
        int64_t n_commits, n_aborts;
        int64_t backoff_ms;
};

static bool stopping(const struct pipe *p)
{
        return stop_requested || atomic_load(&p->sh->stop);
}

/* A fatal error: the open transaction is aborted (never committed), every
 * pipeline stops, `veil run` exits non-zero with the reason. */
static void fail(struct pipe *p, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void fail(struct pipe *p, const char *fmt, ...)
{
        va_list ap;

        if (!atomic_load(&p->dead)) {
                va_start(ap, fmt);
                vsnprintf(p->fatal_msg, sizeof(p->fatal_msg), fmt, ap);
                va_end(ap);
                atomic_store(&p->dead, true);
                if (p->sink)
                        veil_sink_fail(p->sink, "%s", p->fatal_msg);
                else
                        veil_log("error", "fatal", "%s", p->fatal_msg);
        }
        atomic_store(&p->sh->stop, true);
}

static bool dead(struct pipe *p)
{
        if (!atomic_load(&p->dead) && p->sink && veil_sink_fatal(p->sink)) {
                snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s",
                         veil_sink_fatal(p->sink));
                atomic_store(&p->dead, true);
                atomic_store(&p->sh->stop, true);
        }
        return atomic_load(&p->dead);
}

/* ---- transactions ----------------------------------------------------------
 */

static void begin(struct pipe *p)
{
        if (veil_sink_in_txn(p->sink))
                return;
        if (veil_sink_begin(p->sink) != VEIL_SINK_OK) {
                dead(p);
                return;
        }
        veil_retain_begin(p->retain);
        p->batch_start_ms = veil_now_ms();
        p->batch_records  = 0;
        p->batch_now      = (int64_t)time(NULL);
}

/* The batch's state is forgotten (after an abort); with rewind, each
 * partition goes back to the first offset the batch consumed from it so
 * that the batch is read again. Not the group's committed offsets: the
 * dev broker does not store transactional commits, and the batch start is
 * exact anyway. */
static void rollback(struct pipe *p, bool rewind)
{
        char err[512];

        veil_retain_rollback(p->retain);
        veil_audit_rollback(p->audit);
        veil_tally_abort(p->tally);
        if (!rewind)
                veil_source_batch_done(p->source);
        else if (veil_source_rewind(p->source, err, sizeof(err)))
                fail(p, "%s", err);
}

/* Aborts the open batch (a transient failure): it is read again. */
static void abort_batch(struct pipe *p, bool rewind)
{
        if (!veil_sink_in_txn(p->sink))
                return;
        if (veil_sink_abort(p->sink) != VEIL_SINK_OK) {
                dead(p);
                rollback(p, false);
                return;
        }
        rollback(p, rewind);
}

/* Ledger and audit events of the batch, the consumer's positions, commit.
 * Never after a fatal error: the sink refuses. */
static enum veil_sink_status commit(struct pipe *p)
{
        rd_kafka_topic_partition_list_t *offsets;
        enum veil_sink_status st;
        char err[512];
        int64_t t0;
        int rc;

        if (!veil_sink_in_txn(p->sink))
                return VEIL_SINK_OK;
        if (dead(p))
                return VEIL_SINK_FATAL;
        rc = veil_retain_flush(p->retain, err, sizeof(err));
        if (rc == VEIL_RETAIN_REDO) {
                veil_log("warn", "erasure", "%s", err);
                abort_batch(p, true);
                return dead(p) ? VEIL_SINK_FATAL : VEIL_SINK_ABORTED;
        }
        if (rc || veil_audit_flush(p->audit, err, sizeof(err))) {
                fail(p, "%s", err);
                rollback(p, false);
                return VEIL_SINK_FATAL;
        }
        offsets = veil_source_positions(p->source);
        if (!offsets) {
                fail(p, "reading the assignment failed");
                rollback(p, false);
                return VEIL_SINK_FATAL;
        }
        t0 = veil_now_ms();
        st = veil_sink_commit(p->sink, veil_source_consumer(p->source),
                              offsets);
        rd_kafka_topic_partition_list_destroy(offsets);
        if (st == VEIL_SINK_ABORTED) {
                rollback(p, true);
                return st;
        }
        if (st != VEIL_SINK_OK) {
                dead(p);
                rollback(p, false);
                return st;
        }
        veil_retain_commit(p->retain);
        veil_audit_commit(p->audit);
        veil_source_batch_done(p->source);
        p->backoff_ms = 0;
        veil_tally_commit(p->tally, veil_chain_stats(p->chain),
                          veil_audit_committed(p->audit), veil_now_ms() - t0,
                          veil_now_ms() - p->batch_start_ms);
        return VEIL_SINK_OK;
}

/* ---- one record ------------------------------------------------------------
 */

enum rec_outcome { REC_OK = 0, REC_RETRY, REC_REDO, REC_FATAL };

static enum rec_outcome produce_status(struct pipe *p, enum veil_sink_status st)
{
        if (st == VEIL_SINK_OK)
                return REC_OK;
        dead(p);
        return REC_FATAL;
}

/* The audit sink callback: audit events go into the same transaction. */
static int audit_produce(void *opaque, const char *topic, int32_t partition,
                         const void *key, size_t key_len, const void *value,
                         size_t value_len, rd_kafka_headers_t *hdrs,
                         char *errstr, size_t errstr_size)
{
        struct pipe *p = opaque;

        if (veil_sink_produce(p->sink, topic, partition, key, key_len, value,
                              value_len, hdrs, 0) == VEIL_SINK_OK)
                return 0;
        return veil_errf(errstr, errstr_size, VEIL_ENET,
                         "producing an audit event to %s failed", topic);
}

/* A record that cannot be processed goes to the DLQ, sealed by default. */
static enum rec_outcome dead_letter(struct pipe *p,
                                    const rd_kafka_message_t *rkm,
                                    const struct veil_record *rec,
                                    const char *replay_of)
{
        struct veil_dlq_letter l;
        rd_kafka_headers_t *hdrs;
        const void *key, *value;
        size_t key_len, value_len;
        enum veil_sink_status st;
        char err[512];

        memset(&l, 0, sizeof(l));
        snprintf(l.code, sizeof(l.code), "%s",
                 rec->reason ? rec->reason : "unknown");
        snprintf(l.detail, sizeof(l.detail), "%s", rec->detail);
        snprintf(l.source, sizeof(l.source), "%s/%" PRId32 "/%" PRId64,
                 rec->topic, rec->partition, rec->offset);
        snprintf(l.policy, sizeof(l.policy), "%s", p->config->policy.digest);
        snprintf(l.replay_of, sizeof(l.replay_of), "%s",
                 replay_of ? replay_of : "");
        l.key       = rkm->key;
        l.key_len   = rkm->key_len;
        l.value     = rkm->payload;
        l.value_len = rkm->len;
        for (;;) {
                if (veil_dlq_build(p->dlq, &l, &hdrs, &key, &key_len, &value,
                                   &value_len, err, sizeof(err))) {
                        fail(p, "%s", err);
                        return REC_FATAL;
                }
                st = veil_sink_produce(p->sink, p->config->topics.dlq,
                                       RD_KAFKA_PARTITION_UA, key, key_len,
                                       value, value_len, hdrs, 0);
                if (st != VEIL_SINK_RECORD || !l.value)
                        break;
                /* The letter itself is too large: it keeps the position;
                 * the original stays on the source topic. */
                l.value     = NULL;
                l.value_len = 0;
                snprintf(l.detail, sizeof(l.detail),
                         "%.180s; payload omitted (over message.max.bytes)",
                         rec->detail);
        }
        if (st != VEIL_SINK_OK) {
                if (st == VEIL_SINK_RECORD)
                        fail(p,
                             "the dead letter of %s does not fit "
                             "message.max.bytes",
                             l.source);
                return produce_status(p, VEIL_SINK_FATAL);
        }
        p->n_dlq++;
        veil_tally_dlq(p->tally, l.code);
        veil_log("warn", "dlq", "%s at %s: %s", l.code, l.source, l.detail);
        return REC_OK;
}

/* Would every output of the record fit the producer's message size? */
static bool outputs_fit(const struct pipe *p, const struct veil_record *rec,
                        size_t *which)
{
        size_t max = veil_sink_max_message(p->sink), j;

        max = max > VEIL_MESSAGE_HEADROOM ? max - VEIL_MESSAGE_HEADROOM : 0;
        for (j = 0; j < rec->n_outs; j++) {
                const struct veil_record_out *out = &rec->outs[j];
                size_t n = (out->key_null ? 0 : out->key.len) +
                           (out->value_null ? 0 : out->value.len);

                if (!out->skip && n > max) {
                        *which = j;
                        return false;
                }
        }
        return true;
}

/* A purpose whose consent gate the record failed (out->gate): counted and
 * audited; a key the purpose holds (or may hold: keys of a purpose without
 * retention or licence end are not tracked) becomes a tombstone with
 * veil.reason consent-withdrawn, which the caller then produces like any
 * tombstone (the ledger forgets the key). */
static enum rec_outcome consent_gate(struct pipe *p, struct veil_record *rec,
                                     size_t j)
{
        struct veil_record_out *out = &rec->outs[j];
        bool tomb                   = !out->key_null &&
                    veil_retain_holds(p->retain, rec->route, out->rp, rec->key,
                                      rec->key_len, out->key.data,
                                      out->key.len) != 0;
        char err[512];

        veil_tally_consent(p->tally, rec->route->source, out->rp->purpose,
                           out->gate);
        if (veil_audit_consent(p->audit, rec->route, j, rec->partition,
                               rec->offset, rec->frame.schema_id, out->gate,
                               tomb ? VEIL_REASON_CONSENT_WITHDRAWN : NULL, err,
                               sizeof(err))) {
                fail(p, "%s", err);
                return REC_FATAL;
        }
        if (tomb) {
                out->value_null = true;
                out->reason     = VEIL_REASON_CONSENT_WITHDRAWN;
                out->plan       = NULL;
        }
        return REC_OK;
}

/* The leaks the guard found in the outputs of a guarded record (redacted,
 * or the record quarantined): counted per purpose, field and detector, audited,
 * and logged by name — never the text. */
static enum rec_outcome guard_account(struct pipe *p, struct veil_record *rec)
{
        char err[512];
        size_t j, i;

        for (j = 0; j < rec->n_outs; j++) {
                const struct veil_record_out *out = &rec->outs[j];
                const char *action =
                        out->rp->ref->guard.on_leak == VEIL_LEAK_QUARANTINE
                                ? "quarantine"
                                : "redact";

                for (i = 0; i < out->n_leaks; i++) {
                        const struct veil_leak *l = &out->leaks[i];

                        veil_tally_leak(p->tally, out->rp->purpose, l->path,
                                        l->detector, action, l->count);
                        if (veil_audit_leak(p->audit, rec->route, j,
                                            rec->partition, rec->offset,
                                            rec->frame.schema_id, l->path,
                                            l->detector, l->count, action, err,
                                            sizeof(err))) {
                                fail(p, "%s", err);
                                return REC_FATAL;
                        }
                        veil_log("warn", "leak",
                                 "purpose %s: %s found in %s at "
                                 "%s/%" PRId32 "/%" PRId64 " (%s)",
                                 out->rp->purpose, l->detector, l->path,
                                 rec->topic, rec->partition, rec->offset,
                                 action);
                }
        }
        return REC_OK;
}

static enum rec_outcome handle(struct pipe *p, rd_kafka_message_t *rkm)
{
        const char *topic = rd_kafka_topic_name(rkm->rkt);
        const struct veil_route *route =
                veil_policy_route(&p->config->policy, topic);
        struct veil_record rec;
        enum veil_verdict v;
        size_t ri;
        char source[512], replay_buf[512], err[512];
        const char *replay_of;
        int64_t ts;
        size_t j;

        begin(p);
        if (dead(p))
                return REC_FATAL;
        veil_source_note(p->source, topic, rkm->partition, rkm->offset);
        memset(&rec, 0, sizeof(rec));
        rec.topic     = topic;
        rec.partition = rkm->partition;
        rec.offset    = rkm->offset;
        rec.key       = rkm->key;
        rec.key_len   = rkm->key_len;
        rec.value     = rkm->payload;
        rec.value_len = rkm->len;
        rec.now       = p->batch_now;
        p->batch_records++;
        p->n_in++;
        /* A record fed back from the DLQ keeps saying so downstream. */
        replay_of = veil_reader_header(rkm, VEIL_H_REPLAY_OF, replay_buf,
                                       sizeof(replay_buf));
        if (!route) {
                /* Subscribed only to route sources: cannot happen, but a
                 * record must never be lost silently. */
                rec.reason = "no-route";
                snprintf(rec.detail, sizeof(rec.detail),
                         "no route for topic %s", topic);
                return dead_letter(p, rkm, &rec, replay_of);
        }
        ri = (size_t)(route - p->config->policy.routes);
        veil_tally_in(p->tally, ri);
        rec.route = route;
        if (p->too_large.topic && p->too_large.partition == rkm->partition &&
            p->too_large.offset == rkm->offset &&
            !strcmp(p->too_large.topic, topic)) {
                free(p->too_large.topic);
                p->too_large.topic = NULL;
                rec.reason         = "too-large";
                snprintf(rec.detail, sizeof(rec.detail),
                         "an output was refused by the producer for its "
                         "size (message.max.bytes %zu)",
                         veil_sink_max_message(p->sink));
                return dead_letter(p, rkm, &rec, replay_of);
        }
        v = veil_chain_process(p->chain, &rec);
        if (rec.guarded && guard_account(p, &rec) != REC_OK)
                return REC_FATAL;
        switch (v) {
        case VEIL_DROP:
                return REC_OK;
        case VEIL_DIVERT:
                return dead_letter(p, rkm, &rec, replay_of);
        case VEIL_RETRY:
                veil_log("warn", "retry",
                         "%s at %s/%" PRId32 "/%" PRId64 ": %s",
                         rec.reason ? rec.reason : "retry", topic,
                         rec.partition, rec.offset, rec.detail);
                return REC_RETRY;
        case VEIL_CONTINUE:
                break;
        }
        /* All of a record's outputs or none: a size the producer would
         * refuse is found before any of them is produced. */
        if (!outputs_fit(p, &rec, &j)) {
                rec.reason = "too-large";
                snprintf(rec.detail, sizeof(rec.detail),
                         "output for purpose %s is larger than "
                         "message.max.bytes %zu allows",
                         rec.outs[j].rp->purpose,
                         veil_sink_max_message(p->sink));
                return dead_letter(p, rkm, &rec, replay_of);
        }
        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, topic,
                 rec.partition, rec.offset);
        ts = rd_kafka_message_timestamp(rkm, NULL);
        for (j = 0; j < rec.n_outs; j++) {
                const struct veil_record_out *out = &rec.outs[j];
                const struct veil_purpose *pu     = out->rp->ref;
                rd_kafka_headers_t *hdrs;
                enum veil_sink_status st;

                if (out->gate) {
                        enum rec_outcome o = consent_gate(p, &rec, j);

                        if (o != REC_OK)
                                return o;
                        if (!out->value_null)
                                continue; /* withheld */
                }
                if (out->plan)
                        veil_tally_plan(p->tally, out, rec.frame.schema_id);
                if (veil_audit_record(p->audit, route, j, rec.partition,
                                      rec.offset, out->plan,
                                      rec.frame.schema_id, out->skip,
                                      out->value_null, err, sizeof(err))) {
                        fail(p, "%s", err);
                        return REC_FATAL;
                }
                if (out->skip) {
                        char why[160];

                        p->n_expired++;
                        /* Once per purpose and run (or reload): the reason
                         * in the words every command uses. */
                        if (veil_tally_expired(p->tally, ri, j) &&
                            veil_license_expired_msg(pu, rec.now, why,
                                                     sizeof(why))) {
                                veil_log("warn", "license-expired",
                                         "%s: purpose %s receives nothing "
                                         "from %s",
                                         why, pu->name, route->source);
                        }
                        continue;
                }
                hdrs = rd_kafka_headers_new(8);
                rd_kafka_header_add(hdrs, VEIL_H_PURPOSE, -1, pu->name, -1);
                rd_kafka_header_add(hdrs, VEIL_H_LICENSE, -1,
                                    pu->license_id ? pu->license_id : "", -1);
                rd_kafka_header_add(hdrs, VEIL_H_POLICY, -1,
                                    p->config->policy.digest, -1);
                rd_kafka_header_add(hdrs, VEIL_H_SOURCE, -1, source, -1);
                if (out->reason)
                        rd_kafka_header_add(hdrs, VEIL_H_REASON, -1,
                                            out->reason, -1);
                if (replay_of)
                        rd_kafka_header_add(hdrs, VEIL_H_REPLAY_OF, -1,
                                            replay_of, -1);
                st = veil_sink_produce(
                        p->sink, out->rp->topic, RD_KAFKA_PARTITION_UA,
                        out->key_null ? NULL : out->key.data,
                        out->key_null ? 0 : out->key.len,
                        out->value_null ? NULL : out->value.data,
                        out->value_null ? 0 : out->value.len, hdrs, ts);
                if (st == VEIL_SINK_RECORD) {
                        /* Refused after the size check passed: some of the
                         * record's outputs may be in the batch already, so
                         * the batch is redone with this record diverted. */
                        free(p->too_large.topic);
                        p->too_large.topic     = veil_strdup(topic);
                        p->too_large.partition = rec.partition;
                        p->too_large.offset    = rec.offset;
                        return REC_REDO;
                }
                if (st != VEIL_SINK_OK)
                        return produce_status(p, st);
                /* Renew the key's deadline, or forget it on a delete. */
                if (veil_retain_note(p->retain, route, out->rp, rec.partition,
                                     rec.key, rec.key_len,
                                     out->key_null ? NULL : out->key.data,
                                     out->key.len, out->value_null, ts, err,
                                     sizeof(err))) {
                        fail(p, "%s", err);
                        return REC_FATAL;
                }
                if (out->value_null) {
                        p->n_tombstones++;
                        veil_tally_tombstone(p->tally, route->source,
                                             out->rp->purpose, out->reason);
                } else {
                        p->n_out++;
                        veil_tally_out(p->tally, ri, j);
                }
        }
        return REC_OK;
}

/* ---- librdkafka callbacks ---------------------------------------------------
 */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        struct pipe *p = opaque;
        /* NULL once the consumer has left its group (while closing). */
        const char *protocol    = rd_kafka_rebalance_protocol(rk);
        bool cooperative        = protocol && !strcmp(protocol, "COOPERATIVE");
        rd_kafka_error_t *error = NULL;
        char rerr[512];

        switch (err) {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                veil_log("info", "assign", "%s: %d partition(s) assigned",
                         p->txn_id, parts->cnt);
                /* Audit chains continue from their last committed event;
                 * our own open transaction would hide it (it holds the
                 * audit partition's last stable offset back), and a
                 * retention restore inside a transaction would be undone
                 * by its abort. */
                if (veil_sink_in_txn(p->sink))
                        commit(p);
                veil_audit_assign(p->audit, parts);
                if (veil_retain_assign(p->retain, parts, rerr, sizeof(rerr)))
                        fail(p, "%s", rerr);
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                veil_source_assigned(p->source, parts);
                veil_series_set(p->sh->m.assigned,
                                atomic_fetch_add(&p->sh->assigned, parts->cnt) +
                                        parts->cnt);
                break;
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                veil_log("info", "revoke", "%s: %d partition(s) revoked%s",
                         p->txn_id, parts->cnt,
                         rd_kafka_assignment_lost(rk) ? " (lost)" : "");
                /* The open transaction holds records of these partitions:
                 * finish it while we still own them — unless they are lost
                 * (another worker has them) or a fatal error makes the
                 * batch untrustworthy: then it is aborted, never
                 * committed. */
                if (veil_sink_in_txn(p->sink)) {
                        if (dead(p) || rd_kafka_assignment_lost(rk))
                                abort_batch(p, false);
                        else
                                commit(p);
                }
                veil_audit_revoke(p->audit, parts);
                veil_retain_revoke(p->retain, parts);
                if (cooperative)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
                veil_series_set(p->sh->m.assigned,
                                atomic_fetch_sub(&p->sh->assigned, parts->cnt) -
                                        parts->cnt);
                veil_source_revoked(p->source, parts);
                break;
        default:
                veil_log("error", "rebalance", "rebalance failed: %s",
                         rd_kafka_err2str(err));
                abort_batch(p, false);
                rd_kafka_assign(rk, NULL);
                break;
        }
        if (error) {
                veil_log("error", "rebalance", "assignment failed: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
        (void)rk;
        veil_log(level <= 3   ? "error"
                 : level <= 4 ? "warn"
                 : level <= 6 ? "info"
                              : "debug",
                 "rdkafka", "%s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        struct pipe *p = opaque;
        char buf[512];

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                fail(p, "%s: %s", rd_kafka_name(rk), buf);
                return;
        }
        /* Broker down and the like: librdkafka keeps retrying. */
        veil_log("warn", "kafka", "%s", reason);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                      void *opaque)
{
        (void)rk;
        (void)opaque;
        /* An aborted transaction purges what it had queued: expected, and
         * one line per record would bury the abort's own log line. */
        if (rkm->err && rkm->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
            rkm->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
                veil_log("warn", "delivery", "to %s: %s",
                         rd_kafka_topic_name(rkm->rkt),
                         rd_kafka_err2str(rkm->err));
}

/* librdkafka's statistics (statistics.interval.ms): the consumer lag of
 * each assigned partition becomes a gauge. Runs on the pipeline's thread
 * inside consumer_poll; the JSON is librdkafka's to free. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
        struct pipe *p = opaque;

        (void)rk;
        veil_families_lag(&p->sh->m, json, json_len);
        return 0;
}

/* ---- clients ----------------------------------------------------------------
 */

/* The sink's producer: the transactional settings, queues bounded. */
static rd_kafka_conf_t *producer_conf(struct pipe *p, char *errstr,
                                      size_t errstr_size)
{
        const struct veil_config *config = p->config;
        rd_kafka_conf_t *conf            = rd_kafka_conf_new();
        char err[512];

        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size) ||
            veil_kafka_conf_bound(conf, config, true, errstr, errstr_size))
                goto err;
        if (rd_kafka_conf_set(conf, "transactional.id", p->txn_id, err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "kafka: %s", err);
                goto err;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_opaque(conf, p);
        return conf;
err:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* The audit topic must exist before the first batch: its partition count
 * places the chains (audit.h). */
static int audit_setup(struct pipe *p, char *errstr, size_t errstr_size)
{
        struct veil_reader_part *parts = NULL;
        size_t n                       = 0;
        char err[512];
        int rc = 0;

        if (p->config->topics.audit &&
            p->config->audit_level != VEIL_AUDIT_OFF) {
                p->audit_reader = veil_reader_consumer(
                        p->config, "audit-reader", log_cb, errstr, errstr_size);
                if (!p->audit_reader)
                        return VEIL_ECONFIG;
                for (;;) {
                        rc = veil_reader_ends(p->audit_reader,
                                              p->config->topics.audit, &parts,
                                              &n, 10000, err, sizeof(err));
                        free(parts);
                        parts = NULL;
                        if (rc != VEIL_ENET || stopping(p))
                                break;
                        veil_log("warn", "kafka", "%s (retrying)", err);
                }
                if (rc == VEIL_ENOTFOUND)
                        return veil_errf(
                                errstr, errstr_size, VEIL_ECONFIG,
                                "audit topic %s does not exist: create it "
                                "first (veil topics -c FILE --apply)",
                                p->config->topics.audit);
                if (rc)
                        return veil_errf(errstr, errstr_size, rc, "%s", err);
        }
        p->audit = veil_audit_new(p->config, p->txn_id, p->audit_reader,
                                  (int32_t)n, audit_produce, p, errstr,
                                  errstr_size);
        return p->audit ? 0 : VEIL_ECONFIG;
}

static int pipe_open(struct pipe *p, char *errstr, size_t errstr_size)
{
        struct veil_source_hooks hooks = {
                .rebalance = rebalance_cb,
                .log       = log_cb,
                .error     = error_cb,
                .stats     = p->config->metrics_listen ? stats_cb : NULL,
                .opaque    = p,
        };
        rd_kafka_conf_t *conf;
        char kerr[512];
        int rc;

        p->tally = veil_tally_new(&p->sh->m);
        veil_tally_bind(p->tally, p->config);
        p->dlq = veil_dlq_new(p->config, errstr, errstr_size);
        if (!p->dlq)
                return VEIL_ECONFIG;
        p->reg = veil_registry_new(&p->config->registry, kerr, sizeof(kerr));
        if (!p->reg)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "registry: %s", kerr);
        p->chain = veil_chain_new(p->config, p->reg, errstr, errstr_size);
        if (!p->chain)
                return VEIL_ECONFIG;
        conf = producer_conf(p, errstr, errstr_size);
        if (!conf)
                return VEIL_ECONFIG;
        p->sink = veil_sink_new(conf, &stop_requested, errstr, errstr_size);
        if (!p->sink)
                return VEIL_ENET;
        rc = audit_setup(p, errstr, errstr_size);
        if (rc)
                return rc;
        p->retain = veil_retain_new(p->config, veil_sink_producer(p->sink),
                                    p->audit, errstr, errstr_size);
        if (!p->retain)
                return VEIL_ECONFIG;
        veil_chain_set_subject_keys(p->chain,
                                    veil_retain_subject_keys(p->retain));
        p->source = veil_source_new(p->config, p->txn_id, p->sh->opts.once,
                                    &hooks, errstr, errstr_size);
        return p->source ? 0 : VEIL_ECONFIG;
}

static void pipe_close(struct pipe *p)
{
        /* The source's last revocation commits the open batch, or aborts
         * it after a fatal error; then the rooms, in reverse order. */
        veil_source_destroy(p->source);
        veil_retain_destroy(p->retain);
        if (p->sink)
                veil_sink_counts(p->sink, &p->n_commits, &p->n_aborts);
        veil_sink_destroy(p->sink);
        veil_audit_destroy(p->audit);
        if (p->audit_reader)
                rd_kafka_destroy(p->audit_reader);
        veil_chain_destroy(p->chain);
        veil_config_destroy(p->owned);
        veil_registry_destroy(p->reg);
        veil_dlq_destroy(p->dlq);
        veil_tally_destroy(p->tally);
        free(p->too_large.topic);
}

/* ---- the loop
 * ---------------------------------------------------------------- */

static void backoff(struct pipe *p)
{
        struct timespec ts;

        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 100;
        if (p->backoff_ms > 5000)
                p->backoff_ms = 5000;
        ts.tv_sec  = p->backoff_ms / 1000;
        ts.tv_nsec = (p->backoff_ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) && errno == EINTR && !stopping(p))
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
 * started (they need a restart). Each pipeline reloads on its own. */
static void reload(struct pipe *p)
{
        struct veil_config_opts lopts = {0};
        struct veil_config *config;
        struct veil_chain *chain;
        char err[1024];

        if (!p->sh->opts.config_path) {
                veil_log("warn", "reload-rejected", "no config file to reload");
                return;
        }
        config = veil_config_load(p->sh->opts.config_path, &lopts, err,
                                  sizeof(err));
        if (!config) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                return;
        }
        if (!same_sources(&config->policy, &p->config->policy)) {
                veil_log("error", "reload-rejected",
                         "keeping policy %.12s: the routes' source topics "
                         "changed, which needs a restart",
                         p->config->policy.digest);
                veil_config_destroy(config);
                return;
        }
        chain = veil_chain_new(config, p->reg, err, sizeof(err));
        if (!chain) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                veil_config_destroy(config);
                return;
        }
        if (veil_retain_set_config(p->retain, config, err, sizeof(err))) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                veil_chain_destroy(chain);
                veil_config_destroy(config);
                return;
        }
        veil_chain_set_subject_keys(chain, veil_retain_subject_keys(p->retain));
        veil_log("info", "reload", "%s: policy %.12s replaces %.12s", p->txn_id,
                 config->policy.digest, p->config->policy.digest);
        veil_tally_chain(p->tally, veil_chain_stats(p->chain));
        veil_chain_destroy(p->chain);
        veil_audit_set_config(p->audit, config);
        veil_config_destroy(p->owned);
        p->chain  = chain;
        p->owned  = config;
        p->config = config;
        /* Summaries and counters point into the old config. */
        veil_tally_bind(p->tally, config);
}

static void loop(struct pipe *p)
{
        const int64_t interval   = p->config->commit_interval_ms > 0
                                           ? p->config->commit_interval_ms
                                           : 100;
        const int64_t max        = p->config->max_batch_records > 0
                                           ? p->config->max_batch_records
                                           : 10000;
        sig_atomic_t reload_seen = reload_gen;

        while (!stopping(p) && !dead(p)) {
                rd_kafka_message_t *rkm;
                int timeout = 100;
                /* One clock reading per step: at 100k records/s the
                 * readings alone showed in profiles. */
                int64_t now = veil_now_ms();
                bool in_txn = veil_sink_in_txn(p->sink);

                atomic_store_explicit(&p->heartbeat_ms, now,
                                      memory_order_relaxed);
                if (in_txn) {
                        int64_t left = p->batch_start_ms + interval - now;
                        timeout      = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(veil_source_consumer(p->source),
                                             timeout);
                rd_kafka_poll(veil_sink_producer(p->sink), 0);
                if (rkm) {
                        enum rec_outcome o = REC_OK;

                        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                veil_source_eof(p->source,
                                                rd_kafka_topic_name(rkm->rkt),
                                                rkm->partition);
                        else if (rkm->err)
                                veil_log("warn", "consume", "%s",
                                         rd_kafka_message_errstr(rkm));
                        else
                                o = handle(p, rkm);
                        rd_kafka_message_destroy(rkm);
                        if (o == REC_RETRY || o == REC_REDO) {
                                abort_batch(p, true);
                                if (o == REC_RETRY)
                                        backoff(p);
                                continue;
                        }
                        if (o == REC_FATAL)
                                break;
                }
                if (dead(p))
                        break;
                now = veil_now_ms();
                /* Passed deadlines and erasure requests, at least once
                 * per commit interval, with or without input records. */
                if (veil_retain_due(p->retain, now)) {
                        char rerr[512];
                        int64_t n;

                        begin(p);
                        if (dead(p))
                                break;
                        n = veil_retain_tick(p->retain, now, rerr,
                                             sizeof(rerr));
                        if (n < 0) {
                                fail(p, "%s", rerr);
                                break;
                        }
                        p->batch_records += n;
                }
                if (veil_sink_in_txn(p->sink) &&
                    (p->batch_records >= max ||
                     now - p->batch_start_ms >= interval)) {
                        if (commit(p) == VEIL_SINK_ABORTED)
                                backoff(p);
                }
                if (reload_seen != reload_gen && !veil_sink_in_txn(p->sink)) {
                        reload_seen = reload_gen;
                        reload(p);
                }
                /* --once: every assigned partition read to its end (with
                 * more pipelines than partitions, one without any stops
                 * when another has read its share). */
                if (p->sh->opts.once && !veil_sink_in_txn(p->sink) &&
                    (veil_source_count(p->source)
                             ? veil_source_all_eof(p->source)
                             : atomic_load(&p->sh->done) > 0))
                        break;
        }
        /* SIGINT/SIGTERM: the open batch is committed, not lost. After a
         * fatal error it is aborted: nothing that was not written is
         * committed. */
        if (veil_sink_in_txn(p->sink)) {
                if (dead(p))
                        abort_batch(p, false);
                else
                        commit(p);
        }
        atomic_fetch_add(&p->sh->done, 1);
}

static void *pipe_main(void *arg)
{
        struct pipe *p = arg;

        loop(p);
        return NULL;
}

/* /healthz, on the HTTP thread: only atomics. A pipeline beats at least
 * every commit interval; a commit or an audit recovery may legitimately
 * block for up to a couple of minutes. */
#define HEALTH_STALL_MS 180000

static int health(void *opaque, char *msg, size_t msg_size)
{
        struct shared *sh = opaque;
        int64_t oldest    = 0;
        size_t i;

        for (i = 0; i < sh->n_pipes; i++) {
                struct pipe *p = &sh->pipes[i];
                int64_t beat   = atomic_load_explicit(&p->heartbeat_ms,
                                                      memory_order_relaxed);

                if (atomic_load(&p->dead)) {
                        snprintf(msg, msg_size,
                                 "pipeline %zu stopped on a fatal error", i);
                        return 0;
                }
                if (beat == 0) {
                        snprintf(msg, msg_size, "starting");
                        return 1;
                }
                if (!oldest || beat < oldest)
                        oldest = beat;
        }
        if (oldest > 0 && veil_now_ms() - oldest > HEALTH_STALL_MS) {
                snprintf(msg, msg_size,
                         "a pipeline has not run for %" PRId64 " s",
                         (veil_now_ms() - oldest) / 1000);
                return 0;
        }
        snprintf(msg, msg_size, "%s", oldest > 0 ? "running" : "starting");
        return 1;
}

static size_t threads_of(const struct veil_config *config)
{
        long n;

        if (config->threads > 0)
                return (size_t)config->threads;
        n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (size_t)n : 1;
}

int veil_worker_run(const struct veil_config *config,
                    const struct veil_worker_opts *opts, char *errstr,
                    size_t errstr_size)
{
        struct shared sh;
        int64_t n_in = 0, n_out = 0, n_dlq = 0, n_tomb = 0, n_exp = 0,
                n_commits = 0, n_aborts = 0;
        const char *fatal = NULL;
        size_t i;
        int rc = 0;

        memset(&sh, 0, sizeof(sh));
        atomic_init(&sh.stop, false);
        atomic_init(&sh.done, 0);
        atomic_init(&sh.assigned, 0);
        sh.config = config;
        if (opts)
                sh.opts = *opts;
        veil_log_set_level(config->log_level);
        veil_families_init(&sh.m);
        sh.n_pipes = threads_of(config);
        sh.pipes   = veil_calloc(sh.n_pipes, sizeof(*sh.pipes));
        for (i = 0; i < sh.n_pipes; i++) {
                struct pipe *p = &sh.pipes[i];

                p->sh     = &sh;
                p->index  = (int)i;
                p->config = config;
                atomic_init(&p->heartbeat_ms, 0);
                atomic_init(&p->dead, false);
                /* The first pipeline keeps the documented
                 * transactional.id GROUP-INSTANCE; the others add their
                 * number. Stable across restarts, so each fences its own
                 * predecessor. */
                if (i == 0)
                        snprintf(p->txn_id, sizeof(p->txn_id), "%s-%s",
                                 config->group, config->instance);
                else
                        snprintf(p->txn_id, sizeof(p->txn_id), "%s-%s-%zu",
                                 config->group, config->instance, i);
        }
        if (config->metrics_listen) {
                sh.http = veil_http_start(config->metrics_listen, sh.m.reg,
                                          health, &sh, errstr, errstr_size);
                if (!sh.http) {
                        rc = VEIL_EIO;
                        goto out;
                }
                veil_log("info", "metrics",
                         "serving /metrics and /healthz on %.*s:%d",
                         (int)(strrchr(config->metrics_listen, ':') -
                               config->metrics_listen),
                         config->metrics_listen, veil_http_port(sh.http));
        }
        for (i = 0; i < sh.n_pipes; i++) {
                rc = pipe_open(&sh.pipes[i], errstr, errstr_size);
                if (rc)
                        goto out;
        }
        veil_log("info", "start",
                 "worker %s-%s: group %s, %zu pipeline(s), %zu route(s), "
                 "policy %.12s, audit %s, dlq payload %s",
                 config->group, config->instance, config->group, sh.n_pipes,
                 config->policy.n_routes, config->policy.digest,
                 config->audit_level == VEIL_AUDIT_BATCH ? "batch"
                 : config->audit_level == VEIL_AUDIT_OFF ? "off"
                                                         : "record",
                 config->dlq_payload == VEIL_DLQ_ENCRYPTED ? "encrypted"
                                                           : "raw");
        for (i = 1; i < sh.n_pipes; i++) {
                if (pthread_create(&sh.pipes[i].thread, NULL, pipe_main,
                                   &sh.pipes[i])) {
                        fail(&sh.pipes[i], "starting pipeline %zu failed", i);
                        break;
                }
                sh.pipes[i].started = true;
        }
        loop(&sh.pipes[0]);
        for (i = 1; i < sh.n_pipes; i++)
                if (sh.pipes[i].started)
                        pthread_join(sh.pipes[i].thread, NULL);
out:
        for (i = 0; i < sh.n_pipes; i++) {
                struct pipe *p = &sh.pipes[i];

                pipe_close(p);
                n_in += p->n_in;
                n_out += p->n_out;
                n_dlq += p->n_dlq;
                n_tomb += p->n_tombstones;
                n_exp += p->n_expired;
                n_commits += p->n_commits;
                n_aborts += p->n_aborts;
                if (atomic_load(&p->dead) && !fatal)
                        fatal = p->fatal_msg;
        }
        if (!rc)
                veil_log("info", "stop",
                         "records in %" PRId64 ", out %" PRId64
                         ", tombstones %" PRId64 ", dlq %" PRId64
                         ", expired %" PRId64 ", commits %" PRId64
                         ", aborts %" PRId64,
                         n_in, n_out, n_tomb, n_dlq, n_exp, n_commits,
                         n_aborts);
        if (!rc && fatal)
                rc = veil_errf(errstr, errstr_size, VEIL_ENET, "%s", fatal);
        /* The endpoint serves until the end: a scrape after the last
         * commit sees the final counts. */
        veil_http_stop(sh.http);
        free(sh.pipes);
        veil_families_destroy(&sh.m);
        return rc;
}
