/* route.c - one record of `veil run`: decode, the filter chain, the
 * consent gate and guard accounting, the size check of its outputs,
 * producing them (and audit events) into the pipeline's open transaction,
 * or a dead letter when the record cannot be processed. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "dlq.h"
#include "filter.h"
#include "headers.h"
#include "log.h"
#include "pipe.h"
#include "reader.h"
#include "registry.h"
#include "retain.h"
#include "sink.h"
#include "source.h"
#include "tally.h"
#include "util.h"
#include "veil.h"

/* ---- one record ------------------------------------------------------------
 */

static enum rec_outcome produce_status(struct pipe *p, enum veil_sink_status st)
{
        if (st == VEIL_SINK_OK)
                return REC_OK;
        veil_pipe_dead(p);
        return REC_FATAL;
}

/* The audit sink callback: audit events go into the same transaction. */
int veil_route_audit_produce(void *opaque, const char *topic, int32_t partition,
                             const void *key, size_t key_len, const void *value,
                             size_t value_len, rd_kafka_headers_t *hdrs,
                             char *errstr, size_t errstr_size)
{
        struct pipe *p = opaque;

        if (veil_sink_produce(p->sink, topic, partition, key, key_len, value,
                              value_len, hdrs, 0) == VEIL_SINK_OK)
                return 0;
        /* The sink's reason (fenced, not authorised) names the cause. */
        if (veil_sink_fatal(p->sink))
                return veil_errf(errstr, errstr_size, VEIL_ENET, "%s",
                                 veil_sink_fatal(p->sink));
        return veil_errf(errstr, errstr_size, VEIL_ENET,
                         "producing an audit event to %s failed", topic);
}

/* A record that cannot be processed goes to the DLQ, sealed by default.
 * `purpose`: a letter held for that purpose only (code and detail given),
 * else NULL (the record's reason and detail). */
static enum rec_outcome letter(struct pipe *p, const rd_kafka_message_t *rkm,
                               const struct veil_record *rec,
                               const char *replay_of, const char *purpose,
                               const char *code, const char *detail)
{
        struct veil_dlq_letter l;
        rd_kafka_headers_t *hdrs;
        const void *key, *value;
        size_t key_len, value_len;
        enum veil_sink_status st;
        char err[512];

        memset(&l, 0, sizeof(l));
        snprintf(l.code, sizeof(l.code), "%s",
                 code          ? code
                 : rec->reason ? rec->reason
                               : "unknown");
        snprintf(l.detail, sizeof(l.detail), "%s",
                 detail ? detail : rec->detail);
        snprintf(l.purpose, sizeof(l.purpose), "%s", purpose ? purpose : "");
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
                        veil_pipe_fail(p, "%s", err);
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
                         detail ? detail : rec->detail);
        }
        if (st != VEIL_SINK_OK) {
                if (st == VEIL_SINK_RECORD)
                        veil_pipe_fail(p,
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

static enum rec_outcome dead_letter(struct pipe *p,
                                    const rd_kafka_message_t *rkm,
                                    const struct veil_record *rec,
                                    const char *replay_of)
{
        return letter(p, rkm, rec, replay_of, NULL, NULL, NULL);
}

/* Output j of a purpose whose breaker is open: held in the DLQ for that
 * purpose alone (purpose-halted; the output that leaked and tripped it:
 * leak-quarantined), for `veil dlq replay` after `veil guard resume`. */
static enum rec_outcome hold(struct pipe *p, const rd_kafka_message_t *rkm,
                             const struct veil_record *rec, size_t j,
                             const char *replay_of)
{
        const struct veil_record_out *out = &rec->outs[j];
        char detail[256];

        if (out->n_leaks) {
                snprintf(detail, sizeof(detail),
                         "purpose %.40s: %.40s found in %.120s%s; purpose "
                         "halted",
                         out->rp->purpose, out->leaks[0].detector,
                         out->leaks[0].path,
                         out->n_leaks > 1 ? " (and more)" : "");
                return letter(p, rkm, rec, replay_of, out->rp->purpose,
                              "leak-quarantined", detail);
        }
        snprintf(detail, sizeof(detail),
                 "purpose %.80s is halted (veil guard resume)",
                 out->rp->purpose);
        return letter(p, rkm, rec, replay_of, out->rp->purpose,
                      "purpose-halted", detail);
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
                veil_pipe_fail(p, "%s", err);
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
                        : out->rp->ref->guard.on_leak == VEIL_LEAK_HALT
                                ? "halt"
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
                                veil_pipe_fail(p, "%s", err);
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

enum rec_outcome veil_route_record(struct pipe *p, rd_kafka_message_t *rkm)
{
        const char *topic = rd_kafka_topic_name(rkm->rkt);
        const struct veil_route *route =
                veil_policy_route(&p->config->policy, topic);
        struct veil_record rec;
        enum veil_verdict v;
        size_t ri;
        char source[512], replay_buf[512], only_buf[256], err[512];
        const char *replay_of, *only;
        int64_t ts;
        size_t j;

        veil_pipe_begin(p);
        if (veil_pipe_dead(p))
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
        /* A letter held for one purpose, replayed: for that purpose only. */
        only = replay_of ? veil_reader_header(rkm, VEIL_H_REPLAY_PURPOSE,
                                              only_buf, sizeof(only_buf))
                         : NULL;
        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, topic,
                 rec.partition, rec.offset);
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
        /* on_leak: halt: the leak trips the purpose's breaker in this
         * transaction, whatever else happens to the record. */
        for (j = 0; rec.guarded && j < rec.n_outs; j++)
                if (rec.outs[j].n_leaks &&
                    rec.outs[j].rp->ref->guard.on_leak == VEIL_LEAK_HALT &&
                    veil_halt_trip(p, rec.outs[j].rp->ref, "leak", source) !=
                            REC_OK)
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
        case VEIL_FATAL:
                /* The registry refuses Veil (TLS, credentials): waiting
                 * cannot mend it, and the record is not at fault. The
                 * batch is aborted; a restart reads the record again. */
                veil_pipe_fail(p, "%s at %s/%" PRId32 "/%" PRId64 ": %s",
                               rec.reason ? rec.reason : "fatal", topic,
                               rec.partition, rec.offset, rec.detail);
                return REC_FATAL;
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
        ts = rd_kafka_message_timestamp(rkm, NULL);
        for (j = 0; j < rec.n_outs; j++) {
                const struct veil_record_out *out = &rec.outs[j];
                const struct veil_purpose *pu     = out->rp->ref;
                rd_kafka_headers_t *hdrs;
                enum veil_sink_status st;

                if (only && strcmp(out->rp->purpose, only))
                        continue; /* the others had it already */
                if (out->gate) {
                        enum rec_outcome o = consent_gate(p, &rec, j);

                        if (o != REC_OK)
                                return o;
                        if (!out->value_null)
                                continue; /* withheld */
                }
                /* A halted purpose gets no data; deletions still reach
                 * it (a halt never keeps personal data alive). */
                if (!out->value_null && !out->skip && veil_halt_held(p, pu)) {
                        enum rec_outcome o = hold(p, rkm, &rec, j, replay_of);

                        if (o != REC_OK)
                                return o;
                        continue;
                }
                if (out->plan)
                        veil_tally_plan(p->tally, out, rec.frame.schema_id);
                if (veil_audit_record(p->audit, route, j, rec.partition,
                                      rec.offset, out->plan,
                                      rec.frame.schema_id, out->skip,
                                      out->value_null, err, sizeof(err))) {
                        veil_pipe_fail(p, "%s", err);
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
                        veil_pipe_fail(p, "%s", err);
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
