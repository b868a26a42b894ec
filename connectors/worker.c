/* worker.c - `veil run`: the source connector (one consumer in the group,
 * read_committed, manual offsets), the sink connector (one transactional
 * producer, KIP-447 offsets), the filter chain between them, DLQ and audit
 * events, and the operations endpoint (/metrics, /healthz); one Kafka
 * transaction per batch. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "crypto.h"
#include "dlq.h"
#include "filter.h"
#include "http.h"
#include "kafka.h"
#include "metrics.h"
#include "reader.h"
#include "registry.h"
#include "retain.h"
#include "log.h"
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

/* ---- metrics: counted per batch, added to the registry on commit -------- */

/* A series plus what the open transaction adds to it: an aborted batch is
 * processed again, so its counts are dropped, never added twice. */
struct slot {
        struct veil_series *s;
        uint64_t n;
        bool touched;
        struct slot *next; /* every slot, for freeing */
};

/* The series of one route. */
struct route_slots {
        struct slot *in;
        struct slot **out, **expired; /* per route purpose */
};

/* What a plan does, flattened once per (route purpose, schema id): the
 * audit events' field map and the transform counters. */
struct plan_info {
        const struct veil_route_purpose *rp;
        int schema_in, schema_out;
        json_t *fields;    /* {path: transform} */
        struct slot **tx;  /* veil_transforms_total series */
        uint64_t *tx_mult; /* how many fields of the plan count there */
        size_t n_tx;
        struct plan_info *next;
};

struct worker_metrics {
        struct veil_metrics *reg;
        struct veil_metric *in, *out, *tomb, *expired, *dlq, *tx, *lag, *audit;
        struct veil_series *plan_hits, *plan_misses, *batch_s, *commit_s,
                *committed, *aborted, *assigned;
};

/* ---- audit: events per batch (or record) and purpose, hash-chained per
 * source partition (audit.h) -------------------------------------------- */

struct audit_chain {
        char *source; /* "topic/partition": the chain's id and message key */
        char *topic;
        int32_t partition;
        int32_t audit_partition;
        char prev[65];    /* committed head */
        char pending[65]; /* head inside the open transaction */
        /* Why the chain starts a segment (its committed head is zeros):
         * the reason the next event carries. */
        const char *segment_reason;
        struct audit_chain *next;
};

/* What one batch did for one (source partition, purpose). */
struct audit_acc {
        const struct veil_route *route;
        size_t purpose; /* index in route->purposes */
        int32_t partition;
        int64_t first, last;
        int64_t records, tombstones, expired;
        struct plan_info **infos;
        size_t n_infos, cap_infos;
};

struct worker {
        const struct veil_config *config;
        struct veil_config *owned; /* a reloaded config, or NULL */
        struct veil_worker_opts opts;
        struct veil_registry *reg;
        struct veil_chain *chain;
        struct veil_retain *retain; /* deadlines, ledger, erasure */
        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        rd_kafka_t *audit_reader; /* chain heads on assignment */
        int32_t audit_partitions;
        struct veil_hmac audit_mac;
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

        struct worker_metrics m;
        struct slot *slots;    /* all, for freeing */
        struct slot **touched; /* slots with counts in the open batch */
        size_t n_touched, cap_touched;
        struct route_slots *rslots; /* per route of the running config */
        size_t n_route_slots;
        struct slot *audit_slot;
        struct plan_info *infos;
        uint64_t plan_hits_seen, plan_misses_seen;
        struct veil_http *http;
        _Atomic int64_t heartbeat_ms;
        atomic_bool dead;

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
        atomic_store(&w->dead, true);
        va_start(ap, fmt);
        vsnprintf(w->fatal_msg, sizeof(w->fatal_msg), fmt, ap);
        va_end(ap);
        veil_log("error", "fatal", "%s", w->fatal_msg);
}

/* ---- metric slots ------------------------------------------------------- */

static struct slot *slot_get(struct worker *w, struct veil_metric *family,
                             const char *const *values)
{
        struct veil_series *s = veil_metric_series(family, values);
        struct slot *sl;

        for (sl = w->slots; sl; sl = sl->next)
                if (sl->s == s)
                        return sl;
        sl       = veil_calloc(1, sizeof(*sl));
        sl->s    = s;
        sl->next = w->slots;
        w->slots = sl;
        return sl;
}

static void slot_add(struct worker *w, struct slot *sl, uint64_t n)
{
        if (!sl->touched) {
                if (w->n_touched == w->cap_touched) {
                        w->cap_touched =
                                w->cap_touched ? 2 * w->cap_touched : 32;
                        w->touched = veil_realloc(w->touched,
                                                  w->cap_touched *
                                                          sizeof(*w->touched));
                }
                w->touched[w->n_touched++] = sl;
                sl->touched                = true;
        }
        sl->n += n;
}

/* The batch committed (add) or aborted (drop). */
static void slots_settle(struct worker *w, bool add)
{
        size_t i;

        for (i = 0; i < w->n_touched; i++) {
                struct slot *sl = w->touched[i];

                if (add)
                        veil_series_add(sl->s, sl->n);
                sl->n       = 0;
                sl->touched = false;
        }
        w->n_touched = 0;
}

/* The plan-cache counters live in the chain; their growth since the last
 * look goes to the registry. */
static void plan_stats_flush(struct worker *w)
{
        const struct veil_chain_stats *st = veil_chain_stats(w->chain);

        veil_series_add(w->m.plan_hits, st->plan_hits - w->plan_hits_seen);
        veil_series_add(w->m.plan_misses,
                        st->plan_misses - w->plan_misses_seen);
        w->plan_hits_seen   = st->plan_hits;
        w->plan_misses_seen = st->plan_misses;
}

static void metrics_init(struct worker *w)
{
        struct worker_metrics *m = &w->m;
        const char *none[1]      = {NULL};
        const char *v[2];

        m->reg = veil_metrics_new();
        veil_series_set(veil_metric_series(
                                veil_metrics_family(m->reg, VEIL_METRIC_GAUGE,
                                                    "veil_build_info",
                                                    "Veil's version (always 1)",
                                                    "version", NULL, 0),
                                (v[0] = VEIL_VERSION, v)),
                        1);
        m->in = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_records_in_total",
                "source records consumed and committed", "route", NULL, 0);
        m->out = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_records_out_total",
                "records committed to a purpose topic (tombstones apart)",
                "route,purpose", NULL, 0);
        m->tomb = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_tombstones_out_total",
                "tombstones committed to a purpose topic, by veil.reason",
                "route,purpose,reason", NULL, 0);
        m->expired = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_records_expired_total",
                "records a purpose did not receive because its licence "
                "expired",
                "route,purpose", NULL, 0);
        m->dlq = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_dlq_records_total",
                "records committed to the DLQ, by veil.error code", "code",
                NULL, 0);
        m->tx = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_transforms_total",
                "field values given to a purpose, by data class (or "
                "'unclassified') and transform",
                "purpose,class,transform", NULL, 0);
        m->plan_hits = veil_metric_series(
                veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                    "veil_plan_cache_hits_total",
                                    "record plans found in the plan cache",
                                    NULL, NULL, 0),
                none);
        m->plan_misses = veil_metric_series(
                veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                    "veil_plan_cache_misses_total",
                                    "record plans compiled (not cached)", NULL,
                                    NULL, 0),
                none);
        m->batch_s = veil_metric_series(
                veil_metrics_family(m->reg, VEIL_METRIC_HISTOGRAM,
                                    "veil_batch_duration_seconds",
                                    "a committed transaction from its first "
                                    "record to the end of its commit",
                                    NULL, veil_metrics_latency_buckets,
                                    veil_metrics_latency_n_buckets),
                none);
        m->commit_s = veil_metric_series(
                veil_metrics_family(
                        m->reg, VEIL_METRIC_HISTOGRAM,
                        "veil_commit_duration_seconds",
                        "sending the offsets and committing a transaction",
                        NULL, veil_metrics_latency_buckets,
                        veil_metrics_latency_n_buckets),
                none);
        {
                struct veil_metric *txns = veil_metrics_family(
                        m->reg, VEIL_METRIC_COUNTER, "veil_transactions_total",
                        "transactions by outcome (an aborted batch is "
                        "processed again)",
                        "outcome", NULL, 0);

                m->committed =
                        veil_metric_series(txns, (v[0] = "committed", v));
                m->aborted = veil_metric_series(txns, (v[0] = "aborted", v));
        }
        m->audit    = veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                          "veil_audit_events_total",
                                          "audit events committed", NULL, NULL, 0);
        m->assigned = veil_metric_series(
                veil_metrics_family(
                        m->reg, VEIL_METRIC_GAUGE, "veil_assigned_partitions",
                        "source partitions this worker owns", NULL, NULL, 0),
                none);
        veil_series_set(m->assigned, 0);
        m->lag = veil_metrics_family(
                m->reg, VEIL_METRIC_GAUGE, "veil_consumer_lag",
                "records behind the end of an assigned source partition "
                "(librdkafka statistics)",
                "topic,partition", NULL, 0);
}

/* The per-route slots of the running config (again after a reload: route
 * pointers change). */
static void route_slots_build(struct worker *w)
{
        const struct veil_policy *policy = &w->config->policy;
        size_t r, j;

        if (w->rslots) {
                for (r = 0; r < w->n_route_slots; r++) {
                        free(w->rslots[r].out);
                        free(w->rslots[r].expired);
                }
                free(w->rslots);
        }
        w->rslots = veil_calloc(policy->n_routes + 1, sizeof(*w->rslots));
        w->n_route_slots = policy->n_routes;
        for (r = 0; r < policy->n_routes; r++) {
                const struct veil_route *route = &policy->routes[r];
                struct route_slots *rs         = &w->rslots[r];
                const char *v[2]               = {route->source, NULL};

                rs->in  = slot_get(w, w->m.in, v);
                rs->out = veil_calloc(route->n_purposes + 1, sizeof(*rs->out));
                rs->expired = veil_calloc(route->n_purposes + 1,
                                          sizeof(*rs->expired));
                for (j = 0; j < route->n_purposes; j++) {
                        v[1]           = route->purposes[j].purpose;
                        rs->out[j]     = slot_get(w, w->m.out, v);
                        rs->expired[j] = slot_get(w, w->m.expired, v);
                }
        }
}

/* ---- plan summaries ----------------------------------------------------- */

static void plan_infos_free(struct worker *w)
{
        while (w->infos) {
                struct plan_info *pi = w->infos;

                w->infos = pi->next;
                json_decref(pi->fields);
                free(pi->tx);
                free(pi->tx_mult);
                free(pi);
        }
}

/* The summary of the plan `out` used; built on first sight, while the
 * plan is certainly alive (the cache may evict it later). */
static struct plan_info *plan_info_for(struct worker *w,
                                       const struct veil_record_out *out,
                                       int schema_in)
{
        const struct veil_plan_field *f;
        struct plan_info *pi;
        size_t n, i, k;

        for (pi = w->infos; pi; pi = pi->next)
                if (pi->rp == out->rp && pi->schema_in == schema_in)
                        return pi;
        pi             = veil_calloc(1, sizeof(*pi));
        pi->rp         = out->rp;
        pi->schema_in  = schema_in;
        pi->schema_out = veil_plan_output_id(out->plan);
        pi->fields     = json_object();
        f              = veil_plan_fields(out->plan, &n);
        pi->tx         = veil_calloc(n + 1, sizeof(*pi->tx));
        pi->tx_mult    = veil_calloc(n + 1, sizeof(*pi->tx_mult));
        for (i = 0; i < n; i++) {
                const char *v[3] = {out->rp->purpose,
                                    f[i].label ? f[i].label : "unclassified",
                                    veil_tx_name(f[i].tx)};
                struct slot *sl  = slot_get(w, w->m.tx, v);

                json_object_set_new(pi->fields, f[i].path,
                                    json_string(veil_tx_name(f[i].tx)));
                for (k = 0; k < pi->n_tx && pi->tx[k] != sl; k++)
                        ;
                if (k == pi->n_tx) {
                        pi->tx[pi->n_tx]        = sl;
                        pi->tx_mult[pi->n_tx++] = 0;
                }
                pi->tx_mult[k]++;
        }
        pi->next = w->infos;
        w->infos = pi;
        return pi;
}

/* ---- audit -------------------------------------------------------------- */

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
                memset(w->acc + w->n_acc, 0,
                       (w->cap_acc - w->n_acc) * sizeof(*w->acc));
        }
        a            = &w->acc[w->n_acc++];
        a->route     = route;
        a->purpose   = purpose;
        a->partition = partition;
        a->first     = offset;
        a->last      = offset;
        a->records = a->tombstones = a->expired = 0;
        a->n_infos                              = 0;
        return a;
}

/* Keeps the accumulators' arrays for the next batch. */
static void audit_acc_clear(struct worker *w)
{
        w->n_acc = 0;
}

/* Adds one record's outcome for one purpose. */
static void audit_note(struct audit_acc *a, const struct veil_record_out *out,
                       struct plan_info *pi)
{
        size_t i;

        if (out->skip) {
                a->expired++;
                return;
        }
        if (out->value_null) {
                a->tombstones++;
                return;
        }
        a->records++;
        if (!pi)
                return;
        for (i = 0; i < a->n_infos; i++)
                if (a->infos[i] == pi)
                        return;
        if (a->n_infos == a->cap_infos) {
                a->cap_infos = a->cap_infos ? 2 * a->cap_infos : 4;
                a->infos     = veil_realloc(a->infos,
                                            a->cap_infos * sizeof(*a->infos));
        }
        a->infos[a->n_infos++] = pi;
}

static void chain_free(struct audit_chain *c)
{
        free(c->source);
        free(c->topic);
        free(c);
}

static struct audit_chain *chain_find(struct worker *w, const char *topic,
                                      int32_t partition)
{
        struct audit_chain *c;

        for (c = w->chains; c; c = c->next)
                if (c->partition == partition && !strcmp(c->topic, topic))
                        return c;
        return NULL;
}

/* Forgets the chains of partitions this worker no longer owns: another
 * worker continues them, and if they come back their head is read again. */
static void chains_drop(struct worker *w,
                        const rd_kafka_topic_partition_list_t *list)
{
        struct audit_chain **cp, *c;
        int i;

        for (i = 0; i < list->cnt; i++)
                for (cp = &w->chains; (c = *cp);) {
                        if (c->partition == list->elems[i].partition &&
                            !strcmp(c->topic, list->elems[i].topic)) {
                                *cp = c->next;
                                chain_free(c);
                        } else {
                                cp = &c->next;
                        }
                }
}

struct recover_ctx {
        struct audit_chain **want;
        size_t n;
        int64_t *found; /* offset of the latest event seen, -1: none */
        char (*head)[65];
};

static int recover_cb(void *opaque, const rd_kafka_message_t *rkm)
{
        struct recover_ctx *rc = opaque;
        size_t i;

        if (!rkm->key || !rkm->payload)
                return 0;
        for (i = 0; i < rc->n; i++) {
                const char *src = rc->want[i]->source;

                if (rkm->key_len == strlen(src) &&
                    !memcmp(rkm->key, src, rkm->key_len) &&
                    rkm->offset > rc->found[i]) {
                        rc->found[i] = rkm->offset;
                        veil_audit_digest(rkm->payload, rkm->len, rc->head[i]);
                }
        }
        return 0;
}

/* Most offsets of one audit partition read back to find chain heads
 * before giving up and starting a new segment. */
#define RECOVER_MAX_SCAN ((int64_t)4 << 20)
/* How long one read may wait for transactions still open on the audit
 * partition (a predecessor's is aborted or times out within
 * transaction.timeout.ms, 60 s by default). */
#define RECOVER_TIMEOUT_MS 90000

/* Finds the last committed event of each chain in `want` (all on audit
 * partition `ap`) by reading the partition backwards in growing windows,
 * so a chain continues across restarts and rebalances. A chain with no
 * event found starts a segment and says why. */
static void chains_recover_partition(struct worker *w,
                                     struct audit_chain **want, size_t n,
                                     int32_t ap)
{
        const char *topic = w->config->topics.audit;
        struct recover_ctx ctx;
        struct veil_reader_part part;
        rd_kafka_resp_err_t err;
        int64_t lo, hi, end, window = 1024, scanned = 0;
        size_t i, left = n;
        char errstr[512];
        bool gave_up = false;

        ctx.want  = want;
        ctx.n     = n;
        ctx.found = veil_calloc(n, sizeof(*ctx.found));
        ctx.head  = veil_calloc(n, sizeof(*ctx.head));
        for (i = 0; i < n; i++)
                ctx.found[i] = -1;
        err = rd_kafka_query_watermark_offsets(w->audit_reader, topic, ap, &lo,
                                               &hi, 30000);
        if (err) {
                veil_log("warn", "audit-recover",
                         "end offsets of %s [%" PRId32 "]: %s", topic, ap,
                         rd_kafka_err2str(err));
                lo = hi = 0;
                gave_up = true;
        }
        for (end = hi; left > 0 && end > lo && !gave_up;) {
                part.partition = ap;
                part.lo        = lo;
                part.from      = end - window > lo ? end - window : lo;
                part.to        = end;
                if (veil_reader_run(w->audit_reader, topic, &part, 1,
                                    RECOVER_TIMEOUT_MS, recover_cb, &ctx,
                                    errstr, sizeof(errstr))) {
                        veil_log("warn", "audit-recover", "%s", errstr);
                        gave_up = true;
                        break;
                }
                for (i = 0; i < n; i++)
                        if (ctx.found[i] >= 0 && want[i]->segment_reason) {
                                memcpy(want[i]->prev, ctx.head[i], 65);
                                memcpy(want[i]->pending, ctx.head[i], 65);
                                want[i]->segment_reason = NULL;
                                left--;
                        }
                scanned += end - part.from;
                end = part.from;
                window *= 4;
                if (scanned >= RECOVER_MAX_SCAN)
                        gave_up = left > 0 && end > lo;
        }
        for (i = 0; i < n; i++) {
                if (!want[i]->segment_reason) {
                        veil_log("info", "audit-recover",
                                 "chain %s continues from offset %" PRId64
                                 " of %s [%" PRId32 "]",
                                 want[i]->source, ctx.found[i], topic, ap);
                        continue;
                }
                want[i]->segment_reason = gave_up ? VEIL_AUDIT_SEGMENT_NOT_FOUND
                                          : lo > 0 ? VEIL_AUDIT_SEGMENT_EXPIRED
                                                   : VEIL_AUDIT_SEGMENT_NEW;
                veil_log("info", "audit-recover",
                         "chain %s starts a segment (%s) on %s [%" PRId32 "]",
                         want[i]->source, want[i]->segment_reason, topic, ap);
        }
        free(ctx.found);
        free(ctx.head);
}

/* New chains for newly assigned partitions, their heads read back from
 * the audit topic. Our own open transaction must be committed first: its
 * audit events would hold the partition's last stable offset back. */
static void chains_recover(struct worker *w,
                           const rd_kafka_topic_partition_list_t *list)
{
        struct audit_chain **want;
        size_t n = 0, i, k;
        int32_t ap;
        int j;

        if (!w->config->topics.audit || !w->audit_reader || list->cnt == 0)
                return;
        want = veil_calloc((size_t)list->cnt, sizeof(*want));
        for (j = 0; j < list->cnt; j++) {
                struct audit_chain *c;

                if (chain_find(w, list->elems[j].topic,
                               list->elems[j].partition))
                        continue;
                c            = veil_calloc(1, sizeof(*c));
                c->topic     = veil_strdup(list->elems[j].topic);
                c->partition = list->elems[j].partition;
                if (asprintf(&c->source, "%s/%" PRId32, c->topic,
                             c->partition) < 0)
                        abort();
                c->audit_partition =
                        veil_audit_partition(c->partition, w->audit_partitions);
                memcpy(c->prev, VEIL_AUDIT_ZERO, 65);
                memcpy(c->pending, VEIL_AUDIT_ZERO, 65);
                c->segment_reason = VEIL_AUDIT_SEGMENT_NEW;
                c->next           = w->chains;
                w->chains         = c;
                want[n++]         = c;
        }
        /* One backwards read per audit partition serves all its chains. */
        for (i = 0; i < n; i++) {
                struct audit_chain **group;
                size_t m = 0;

                if (!want[i])
                        continue;
                ap    = want[i]->audit_partition;
                group = veil_calloc(n, sizeof(*group));
                for (k = i; k < n; k++)
                        if (want[k] && want[k]->audit_partition == ap) {
                                group[m++] = want[k];
                                want[k]    = NULL;
                        }
                chains_recover_partition(w, group, m, ap);
                free(group);
        }
        free(want);
}

static struct audit_chain *audit_chain(struct worker *w, const char *topic,
                                       int32_t partition)
{
        struct audit_chain *c = chain_find(w, topic, partition);
        rd_kafka_topic_partition_list_t *list;

        if (c)
                return c;
        /* Not from an assignment (cannot happen): recover it now. */
        list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, topic, partition);
        chains_recover(w, list);
        rd_kafka_topic_partition_list_destroy(list);
        return chain_find(w, topic, partition);
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
static int produce(struct worker *w, const char *topic, int32_t partition,
                   const void *key, size_t key_len, const void *value,
                   size_t value_len, rd_kafka_headers_t *hdrs,
                   int64_t timestamp)
{
        rd_kafka_resp_err_t err;

        err = veil_kafka_produce(w->producer, topic, partition, key, key_len,
                                 value, value_len, hdrs, timestamp);
        if (err) {
                fatal(w, "producing to %s: %s", topic, rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

static void json_int_set_add(json_t *arr, int v)
{
        size_t i;
        json_t *x;

        json_array_foreach(arr, i, x) if (json_integer_value(x) == v) return;
        json_array_append_new(arr, json_integer(v));
}

/* One audit event: serialized with sorted keys, chained to the previous
 * event of its source partition, produced keyed by the chain to the audit
 * partition of that source partition, MACed with the audit key. */
static int audit_emit(struct worker *w, const struct audit_acc *a,
                      const char *kind)
{
        const struct veil_route_purpose *rp = &a->route->purposes[a->purpose];
        struct audit_chain *c;
        rd_kafka_headers_t *hdrs;
        json_t *ev, *schema_in, *schema_out, *fields;
        char mac[VEIL_AUDIT_MAC_MAX];
        bool segment;
        char *text;
        size_t i;
        int rc;

        if (!w->config->topics.audit)
                return 0;
        c = audit_chain(w, a->route->source, a->partition);
        if (!c) {
                fatal(w, "no audit chain for %s/%" PRId32, a->route->source,
                      a->partition);
                return -1;
        }
        schema_in  = json_array();
        schema_out = json_array();
        fields     = json_object();
        for (i = 0; i < a->n_infos; i++) {
                json_int_set_add(schema_in, a->infos[i]->schema_in);
                json_int_set_add(schema_out, a->infos[i]->schema_out);
                json_object_update(fields, a->infos[i]->fields);
        }
        ev = json_pack(
                "{s:i, s:s, s:s, s:{s:s, s:i, s:I, s:I}, s:s, s:s, s:s, s:s, "
                "s:I, s:I, s:I, s:o, s:o, s:o, s:s, s:I}",
                "v", 1, "kind", kind, "chain", c->source, "source", "topic",
                a->route->source, "partition", (int)a->partition, "first",
                (json_int_t)a->first, "last", (json_int_t)a->last, "purpose",
                rp->purpose, "topic", rp->topic, "license",
                rp->ref->license_id ? rp->ref->license_id : "", "policy",
                w->config->policy.digest, "records", (json_int_t)a->records,
                "tombstones", (json_int_t)a->tombstones, "expired",
                (json_int_t)a->expired, "schema_in", schema_in, "schema_out",
                schema_out, "fields", fields, "prev", c->pending, "ts",
                (json_int_t)veil_now_ms());
        if (!ev) {
                fatal(w, "building an audit event failed");
                return -1;
        }
        /* The first event after a committed zero head opens a segment and
         * says why; verify accepts a zero `prev` only with it. */
        segment = !strcmp(c->pending, VEIL_AUDIT_ZERO);
        if (segment) {
                json_object_set_new(ev, "segment_start", json_true());
                json_object_set_new(
                        ev, "segment_reason",
                        json_string(c->segment_reason
                                            ? c->segment_reason
                                            : VEIL_AUDIT_SEGMENT_NEW));
        }
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(ev);
        if (!text) {
                fatal(w, "serializing an audit event failed");
                return -1;
        }
        veil_audit_digest(text, strlen(text), c->pending);
        veil_audit_mac(&w->audit_mac, w->config->keys.key_id, text,
                       strlen(text), mac, sizeof(mac));
        hdrs = headers_new();
        header_add(hdrs, VEIL_AUDIT_MAC_HEADER, mac);
        rc = produce(w, w->config->topics.audit, c->audit_partition, c->source,
                     strlen(c->source), text, strlen(text), hdrs, 0);
        free(text);
        if (!rc)
                slot_add(w, w->audit_slot, 1);
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
               const struct veil_record *rec, const char *replay_of)
{
        const void *key = rkm->key, *value = rkm->payload;
        size_t key_len = rkm->key_len, value_len = rkm->len;
        rd_kafka_headers_t *hdrs = headers_new();
        const char *code         = rec->reason ? rec->reason : "unknown";
        char source[512];

        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, rec->topic,
                 rec->partition, rec->offset);
        header_add(hdrs, "veil.error", code);
        header_add(hdrs, "veil.error.detail", rec->detail);
        header_add(hdrs, "veil.source", source);
        header_add(hdrs, "veil.policy", w->config->policy.digest);
        if (replay_of)
                header_add(hdrs, VEIL_DLQ_REPLAY_OF, replay_of);
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
        {
                const char *v[1] = {code};

                slot_add(w, slot_get(w, w->m.dlq, v), 1);
        }
        veil_log("warn", "dlq", "%s at %s: %s", code, source, rec->detail);
        return produce(w, w->config->topics.dlq, RD_KAFKA_PARTITION_UA, key,
                       key_len, value, value_len, hdrs, 0);
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
                veil_log("warn", "txn", "%s: %s", what,
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
        struct audit_chain *c;
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
                veil_series_add(w->m.aborted, 1);
        }
        w->txn_open = false;
        if (w->retain)
                veil_retain_rollback(w->retain);
        audit_acc_clear(w);
        slots_settle(w, false);
        plan_stats_flush(w);
        for (c = w->chains; c; c = c->next)
                memcpy(c->pending, c->prev, sizeof(c->prev));
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
        w->txn_open = true;
        veil_retain_begin(w->retain);
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
        struct audit_chain *c;
        int64_t t0;
        size_t i;
        int k;

        if (!w->txn_open)
                return TXN_OK;
        {
                char rerr[512];

                /* The ledger records of this batch commit with it. */
                if (veil_retain_flush(w->retain, rerr, sizeof(rerr))) {
                        fatal(w, "%s", rerr);
                        return TXN_FATAL;
                }
        }
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

        t0   = veil_now_ms();
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
        veil_retain_commit(w->retain);
        for (c = w->chains; c; c = c->next)
                memcpy(c->prev, c->pending, sizeof(c->prev));
        batch_first_reset(w);
        w->backoff_ms = 0;
        slots_settle(w, true);
        plan_stats_flush(w);
        veil_series_add(w->m.committed, 1);
        veil_series_observe(w->m.commit_s, (double)(veil_now_ms() - t0) / 1e3);
        veil_series_observe(w->m.batch_s,
                            (double)(veil_now_ms() - w->batch_start_ms) / 1e3);
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
        struct route_slots *rs = NULL;
        struct veil_record rec;
        enum veil_verdict v;
        char source[512], replay_buf[512];
        const char *replay_of;
        int64_t ts;
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
        /* A record fed back from the DLQ keeps saying so downstream. */
        replay_of = veil_reader_header(rkm, VEIL_DLQ_REPLAY_OF, replay_buf,
                                       sizeof(replay_buf));
        if (!route) {
                /* Subscribed only to route sources: cannot happen, but a
                 * record must never be lost silently. */
                rec.reason = "no-route";
                snprintf(rec.detail, sizeof(rec.detail),
                         "no route for topic %s", topic);
                return dlq(w, rkm, &rec, replay_of) ? REC_FATAL : REC_OK;
        }
        rs = &w->rslots[route - w->config->policy.routes];
        slot_add(w, rs->in, 1);
        rec.route = route;
        v         = veil_chain_process(w->chain, &rec);
        switch (v) {
        case VEIL_DROP:
                return REC_OK;
        case VEIL_DIVERT:
                return dlq(w, rkm, &rec, replay_of) ? REC_FATAL : REC_OK;
        case VEIL_RETRY:
                veil_log("warn", "retry",
                         "%s at %s/%" PRId32 "/%" PRId64 ": %s",
                         rec.reason ? rec.reason : "retry", topic,
                         rec.partition, rec.offset, rec.detail);
                return REC_RETRY;
        case VEIL_CONTINUE:
                break;
        }
        snprintf(source, sizeof(source), "%s/%" PRId32 "/%" PRId64, topic,
                 rec.partition, rec.offset);
        ts = rd_kafka_message_timestamp(rkm, NULL);
        for (j = 0; j < rec.n_outs; j++) {
                const struct veil_record_out *out = &rec.outs[j];
                const struct veil_purpose *pu     = out->rp->ref;
                struct plan_info *pi              = NULL;
                struct audit_acc *a;
                rd_kafka_headers_t *hdrs;
                size_t k;

                if (out->plan) {
                        pi = plan_info_for(w, out, rec.frame.schema_id);
                        for (k = 0; k < pi->n_tx; k++)
                                slot_add(w, pi->tx[k], pi->tx_mult[k]);
                }
                a = audit_acc(w, route, j, rec.partition, rec.offset);
                audit_note(a, out, pi);
                if (w->config->audit_level != VEIL_AUDIT_BATCH) {
                        int rc = audit_emit(w, a, "record");

                        audit_acc_clear(w);
                        if (rc)
                                return REC_FATAL;
                }
                if (out->skip) {
                        w->n_expired++;
                        slot_add(w, rs->expired[j], 1);
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
                if (replay_of)
                        header_add(hdrs, VEIL_DLQ_REPLAY_OF, replay_of);
                if (produce(w, out->rp->topic, RD_KAFKA_PARTITION_UA,
                            out->key_null ? NULL : out->key.data,
                            out->key_null ? 0 : out->key.len,
                            out->value_null ? NULL : out->value.data,
                            out->value_null ? 0 : out->value.len, hdrs, ts))
                        return REC_FATAL;
                /* Renew the key's deadline, or forget it on a delete. */
                if (veil_retain_note(w->retain, route, out->rp, rec.partition,
                                     out->key_null ? NULL : out->key.data,
                                     out->key.len, out->value_null, ts,
                                     rec.detail, sizeof(rec.detail))) {
                        fatal(w, "%s", rec.detail);
                        return REC_FATAL;
                }
                if (out->value_null) {
                        const char *tv[3] = {route->source, out->rp->purpose,
                                             out->reason ? out->reason : ""};

                        w->n_tombstones++;
                        slot_add(w, slot_get(w, w->m.tomb, tv), 1);
                } else {
                        w->n_out++;
                        slot_add(w, rs->out[j], 1);
                }
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
        veil_series_set(w->m.assigned, (int64_t)w->n_parts);
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
        veil_series_set(w->m.assigned, (int64_t)w->n_parts);
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
                veil_log("info", "assign", "%d partition(s) assigned",
                         parts->cnt);
                /* Audit chains continue from their last committed event;
                 * our own open transaction would hide it (it holds the
                 * audit partition's last stable offset back). */
                if (w->txn_open && w->config->topics.audit)
                        commit(w);
                chains_recover(w, parts);
                /* Their retention state, before any of their records: a
                 * restore inside a transaction would be undone by its
                 * abort. */
                if (w->txn_open)
                        commit(w);
                {
                        char rerr[512];

                        if (veil_retain_assign(w->retain, parts, rerr,
                                               sizeof(rerr)))
                                fatal(w, "%s", rerr);
                }
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                parts_add(w, parts);
                break;
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                veil_log("info", "revoke", "%d partition(s) revoked%s",
                         parts->cnt,
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
                chains_drop(w, parts);
                veil_retain_revoke(w->retain, parts);
                if (cooperative)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
                parts_remove(w, parts);
                break;
        default:
                veil_log("error", "rebalance", "rebalance failed: %s",
                         rd_kafka_err2str(err));
                if (w->txn_open)
                        abort_and_rewind(w, false);
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
        struct worker *w = opaque;
        char buf[512];

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                fatal(w, "%s: %s", rd_kafka_name(rk), buf);
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
        if (rkm->err)
                veil_log("warn", "delivery", "to %s: %s",
                         rd_kafka_topic_name(rkm->rkt),
                         rd_kafka_err2str(rkm->err));
}

/* librdkafka's statistics (statistics.interval.ms): the consumer lag of
 * each assigned partition becomes a gauge. Runs on the worker's thread
 * inside consumer_poll; the JSON is librdkafka's to free. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
        struct worker *w = opaque;
        json_t *root, *topics, *t, *parts, *p;
        const char *tname, *pname;

        (void)rk;
        root = json_loadb(json, json_len, 0, NULL);
        if (!root)
                return 0;
        veil_metric_hide_all(w->m.lag);
        topics = json_object_get(root, "topics");
        json_object_foreach(topics, tname, t)
        {
                parts = json_object_get(t, "partitions");
                json_object_foreach(parts, pname, p)
                {
                        /* librdkafka's own consumer_lag counts from the
                         * group's committed offset, which a consumer never
                         * learns when its offsets commit through the
                         * producer's transactions: the lag here is from
                         * the position (app_offset) to the end a
                         * read_committed consumer can reach (ls_offset). */
                        json_int_t end = json_integer_value(
                                json_object_get(p, "ls_offset"));
                        json_int_t pos = json_integer_value(
                                json_object_get(p, "app_offset"));
                        const char *v[2];

                        /* "-1" is librdkafka's internal UA partition;
                         * negative offsets are not known yet. */
                        if (!strcmp(pname, "-1") || end < 0 || pos < 0 ||
                            !json_is_true(json_object_get(p, "desired")))
                                continue;
                        v[0] = tname;
                        v[1] = pname;
                        veil_series_set(veil_metric_series(w->m.lag, v),
                                        end > pos ? (int64_t)(end - pos) : 0);
                }
        }
        json_decref(root);
        return 0;
}

static bool kafka_key_set(const struct veil_config *config, const char *key)
{
        size_t i;

        for (i = 0; i < config->n_kafka; i++)
                if (!strcmp(config->kafka[i].key, key))
                        return true;
        return false;
}

static rd_kafka_conf_t *conf_new(struct worker *w, bool producer, char *errstr,
                                 size_t errstr_size)
{
        const struct veil_config *config = w->config;
        rd_kafka_conf_t *conf            = rd_kafka_conf_new();
        char err[512];

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
                /* Consumer lag for /metrics, unless kafka: says otherwise. */
                if (config->metrics_listen &&
                    !kafka_key_set(config, "statistics.interval.ms"))
                        SET("statistics.interval.ms", "5000");
        }
        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size))
                goto err;
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
                if (config->metrics_listen)
                        rd_kafka_conf_set_stats_cb(conf, stats_cb);
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

/* The audit topic must exist before the first batch: its partition count
 * places the chains (audit.h). */
static int audit_setup(struct worker *w, char *errstr, size_t errstr_size)
{
        struct veil_reader_part *parts = NULL;
        size_t n                       = 0;
        char err[512];
        int rc;

        if (!w->config->topics.audit)
                return 0;
        rc = veil_audit_hmac_init(&w->audit_mac, w->config, errstr,
                                  errstr_size);
        if (rc)
                return rc;
        w->audit_reader = veil_reader_consumer(w->config, "audit-reader",
                                               log_cb, errstr, errstr_size);
        if (!w->audit_reader)
                return VEIL_ECONFIG;
        for (;;) {
                rc = veil_reader_ends(w->audit_reader, w->config->topics.audit,
                                      &parts, &n, 10000, err, sizeof(err));
                free(parts);
                if (rc != VEIL_ENET || stop_requested)
                        break;
                veil_log("warn", "kafka", "%s (retrying)", err);
        }
        if (rc == VEIL_ENOTFOUND)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit topic %s does not exist: create it "
                                 "first (veil topics -c FILE --apply)",
                                 w->config->topics.audit);
        if (rc)
                return veil_errf(errstr, errstr_size, rc, "%s", err);
        w->audit_partitions = (int32_t)n;
        return 0;
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
        int rc;

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
                veil_log("warn", "txn", "init_transactions: %s (retrying)",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
        rc = audit_setup(w, errstr, errstr_size);
        if (rc)
                return rc;

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
                veil_log("warn", "reload-rejected", "no config file to reload");
                return;
        }
        config =
                veil_config_load(w->opts.config_path, &lopts, err, sizeof(err));
        if (!config) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         w->config->policy.digest, err);
                return;
        }
        if (!same_sources(&config->policy, &w->config->policy)) {
                veil_log("error", "reload-rejected",
                         "keeping policy %.12s: the routes' source topics "
                         "changed, which needs a restart",
                         w->config->policy.digest);
                veil_config_destroy(config);
                return;
        }
        chain = veil_chain_new(config, w->reg, err, sizeof(err));
        if (!chain) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         w->config->policy.digest, err);
                veil_config_destroy(config);
                return;
        }
        if (veil_retain_set_config(w->retain, config, err, sizeof(err))) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         w->config->policy.digest, err);
                veil_chain_destroy(chain);
                veil_config_destroy(config);
                return;
        }
        veil_log("info", "reload", "policy %.12s replaces %.12s",
                 config->policy.digest, w->config->policy.digest);
        plan_stats_flush(w);
        veil_chain_destroy(w->chain);
        veil_config_destroy(w->owned);
        w->chain            = chain;
        w->owned            = config;
        w->config           = config;
        w->plan_hits_seen   = 0;
        w->plan_misses_seen = 0;
        /* Summaries and slots point into the old config. */
        plan_infos_free(w);
        route_slots_build(w);
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
                /* One clock reading per step: at 100k records/s the
                 * readings alone showed in profiles. */
                int64_t now = veil_now_ms();

                atomic_store_explicit(&w->heartbeat_ms, now,
                                      memory_order_relaxed);
                if (w->txn_open) {
                        int64_t left = w->batch_start_ms + interval - now;
                        timeout      = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(w->consumer, timeout);
                rd_kafka_poll(w->producer, 0);
                if (rkm) {
                        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                parts_eof(w, rd_kafka_topic_name(rkm->rkt),
                                          rkm->partition, true);
                        } else if (rkm->err) {
                                veil_log("warn", "consume", "%s",
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
                now = veil_now_ms();
                /* Passed deadlines and erasure requests, at least once
                 * per commit interval, with or without input records. */
                if (veil_retain_due(w->retain, now)) {
                        char rerr[512];
                        int64_t n;

                        if (begin(w))
                                break;
                        n = veil_retain_tick(w->retain, now, rerr,
                                             sizeof(rerr));
                        if (n < 0) {
                                fatal(w, "%s", rerr);
                                break;
                        }
                        w->batch_records += n;
                }
                if (w->txn_open && (w->batch_records >= max ||
                                    now - w->batch_start_ms >= interval)) {
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

/* /healthz, on the HTTP thread: only atomics. The loop beats at least every
 * commit interval; a commit or an audit recovery may legitimately block
 * for up to a couple of minutes. */
#define HEALTH_STALL_MS 180000

static int health(void *opaque, char *msg, size_t msg_size)
{
        struct worker *w = opaque;
        int64_t beat =
                atomic_load_explicit(&w->heartbeat_ms, memory_order_relaxed);
        int64_t age = veil_now_ms() - beat;

        if (atomic_load(&w->dead)) {
                snprintf(msg, msg_size, "the worker stopped on a fatal error");
                return 0;
        }
        if (beat > 0 && age > HEALTH_STALL_MS) {
                snprintf(msg, msg_size,
                         "the worker loop has not run for %" PRId64 " s",
                         age / 1000);
                return 0;
        }
        snprintf(msg, msg_size, "%s", beat > 0 ? "running" : "starting");
        return 1;
}

int veil_worker_run(const struct veil_config *config,
                    const struct veil_worker_opts *opts, char *errstr,
                    size_t errstr_size)
{
        struct worker w;
        char err[512];
        int rc = 0;
        size_t i;

        memset(&w, 0, sizeof(w));
        atomic_init(&w.heartbeat_ms, 0);
        atomic_init(&w.dead, false);
        w.config = config;
        if (opts)
                w.opts = *opts;
        veil_log_set_level(config->log_level);
        snprintf(w.txn_id, sizeof(w.txn_id), "%s-%s", config->group,
                 config->instance);
        w.dlq_encrypted = config->dlq_payload == VEIL_DLQ_ENCRYPTED;
        veil_buf_init(&w.dlq_key, 0);
        veil_buf_init(&w.dlq_value, 0);
        metrics_init(&w);
        route_slots_build(&w);
        {
                const char *none[1] = {NULL};

                w.audit_slot = slot_get(&w, w.m.audit, none);
        }
        if (w.dlq_encrypted) {
                rc = veil_dlq_aead_init(&w.dlq_aead, config, errstr,
                                        errstr_size);
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
        if (config->metrics_listen) {
                w.http = veil_http_start(config->metrics_listen, w.m.reg,
                                         health, &w, errstr, errstr_size);
                if (!w.http) {
                        rc = VEIL_EIO;
                        goto out;
                }
                veil_log("info", "metrics",
                         "serving /metrics and /healthz on %.*s:%d",
                         (int)(strrchr(config->metrics_listen, ':') -
                               config->metrics_listen),
                         config->metrics_listen, veil_http_port(w.http));
        }
        rc = clients_new(&w, errstr, errstr_size);
        if (rc)
                goto out;
        w.retain = veil_retain_new(config, w.producer, w.txn_id, errstr,
                                   errstr_size);
        if (!w.retain) {
                rc = VEIL_ECONFIG;
                goto out;
        }
        veil_log("info", "start",
                 "worker %s: group %s, %zu route(s), policy %.12s, audit %s, "
                 "dlq payload %s",
                 w.txn_id, config->group, config->policy.n_routes,
                 config->policy.digest,
                 config->audit_level == VEIL_AUDIT_BATCH ? "batch" : "record",
                 w.dlq_encrypted ? "encrypted" : "raw");
        loop(&w);
        veil_log("info", "stop",
                 "records in %" PRId64 ", out %" PRId64 ", tombstones %" PRId64
                 ", dlq %" PRId64 ", expired %" PRId64 ", aborts %" PRId64,
                 w.n_in, w.n_out, w.n_tombstones, w.n_dlq, w.n_expired,
                 w.n_aborts);
        if (w.fatal)
                rc = veil_errf(errstr, errstr_size, VEIL_ENET, "%s",
                               w.fatal_msg);
out:
        if (w.consumer) {
                rd_kafka_consumer_close(w.consumer);
                rd_kafka_destroy(w.consumer);
        }
        /* After the consumer's last revocation, before the producer it
         * borrows. */
        veil_retain_destroy(w.retain);
        if (w.producer) {
                rd_kafka_flush(w.producer, 10000);
                rd_kafka_destroy(w.producer);
        }
        if (w.audit_reader)
                rd_kafka_destroy(w.audit_reader);
        /* The endpoint serves until the end: a scrape after the last
         * commit sees the final counts. */
        veil_http_stop(w.http);
        veil_chain_destroy(w.chain);
        veil_config_destroy(w.owned);
        veil_registry_destroy(w.reg);
        veil_aead_destroy(&w.dlq_aead);
        veil_hmac_cleanse(&w.audit_mac);
        veil_buf_free(&w.dlq_key);
        veil_buf_free(&w.dlq_value);
        for (i = 0; i < w.cap_acc; i++)
                free(w.acc[i].infos);
        free(w.acc);
        plan_infos_free(&w);
        while (w.chains) {
                struct audit_chain *c = w.chains;

                w.chains = c->next;
                chain_free(c);
        }
        for (i = 0; i < w.n_route_slots; i++) {
                free(w.rslots[i].out);
                free(w.rslots[i].expired);
        }
        free(w.rslots);
        while (w.slots) {
                struct slot *sl = w.slots;

                w.slots = sl->next;
                free(sl);
        }
        free(w.touched);
        veil_metrics_destroy(w.m.reg);
        for (i = 0; i < w.n_parts; i++)
                free(w.parts[i].topic);
        free(w.parts);
        return rc;
}
