/* tally.c - the worker's metric families and per-pipeline tallies
 * (tally.h). */
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "counters.h"
#include "policy.h"
#include "tally.h"
#include "util.h"
#include "veil.h"

/* Counters without labels: one series each. */
static const struct {
        size_t off;
        const char *name, *help;
} scalar_counters[] = {
        {offsetof(struct veil_families, plan_hits),
         "veil_plan_cache_hits_total", "record plans found in the plan cache"},
        {offsetof(struct veil_families, plan_misses),
         "veil_plan_cache_misses_total", "record plans compiled (not cached)"},
        {offsetof(struct veil_families, sk_created),
         "veil_subject_keys_created_total",
         "per-subject data keys made and committed (crypto-shredding)"},
        {offsetof(struct veil_families, sk_destroyed),
         "veil_subject_keys_destroyed_total",
         "per-subject data keys an erasure tombstoned (committed)"},
        {offsetof(struct veil_families, sk_rewrapped),
         "veil_subject_keys_rewrapped_total",
         "per-subject data keys re-wrapped under the active master key "
         "(committed)"},
        {offsetof(struct veil_families, sk_hits),
         "veil_subject_keys_cache_hits_total",
         "subject look-ups served by the key cache"},
        {offsetof(struct veil_families, sk_misses),
         "veil_subject_keys_cache_misses_total",
         "subject look-ups that unwrapped or made a key"},
        {offsetof(struct veil_families, sk_fetched),
         "veil_subject_keys_fetched_total",
         "wrapped keys of spilled subjects fetched back from the key topic "
         "(past the index's bound)"},
};

void veil_families_init(struct veil_families *m)
{
        const char *none[1] = {NULL};
        const char *v[2];
        struct veil_metric *txns;

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
        m->consent = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_consent_withheld_total",
                "records a purpose did not receive because its requires: "
                "condition failed, by reason",
                "route,purpose,reason", NULL, 0);
        m->leaks = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_leaks_total",
                "spans the leak guard found in what a purpose would receive, "
                "by field, detector and action",
                "purpose,field,detector,action", NULL, 0);
        m->halted = veil_metrics_family(
                m->reg, VEIL_METRIC_GAUGE, "veil_purpose_halted",
                "1 while the purpose's circuit breaker is open (nothing is "
                "routed to it until `veil guard resume`)",
                "purpose", NULL, 0);
        m->alert = veil_metrics_family(
                m->reg, VEIL_METRIC_GAUGE, "veil_alert_active",
                "1 while an alerts: threshold is crossed over the last "
                "minute",
                "alert,purpose,code", NULL, 0);
        m->dlq = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_dlq_records_total",
                "records committed to the DLQ, by veil.error code", "code",
                NULL, 0);
        m->tx = veil_metrics_family(
                m->reg, VEIL_METRIC_COUNTER, "veil_transforms_total",
                "field values given to a purpose, by data class (or "
                "'unclassified') and transform",
                "purpose,class,transform", NULL, 0);
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
        txns         = veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                           "veil_transactions_total",
                                           "transactions by outcome (an aborted "
                                                   "batch is processed again)",
                                           "outcome", NULL, 0);
        m->committed = veil_metric_series(txns, (v[0] = "committed", v));
        m->aborted   = veil_metric_series(txns, (v[0] = "aborted", v));
        m->audit     = veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                           "veil_audit_events_total",
                                           "audit events committed", NULL, NULL, 0);
        m->assigned  = veil_metric_series(
                 veil_metrics_family(
                         m->reg, VEIL_METRIC_GAUGE, "veil_assigned_partitions",
                         "source partitions this worker owns", NULL, NULL, 0),
                 none);
        veil_series_set(m->assigned, 0);
        for (size_t i = 0;
             i < sizeof(scalar_counters) / sizeof(scalar_counters[0]); i++)
                *(struct veil_series **)((char *)m + scalar_counters[i].off) =
                        veil_metric_series(
                                veil_metrics_family(m->reg, VEIL_METRIC_COUNTER,
                                                    scalar_counters[i].name,
                                                    scalar_counters[i].help,
                                                    NULL, NULL, 0),
                                none);
        m->lag = veil_metrics_family(
                m->reg, VEIL_METRIC_GAUGE, "veil_consumer_lag",
                "records behind the end of an assigned source partition "
                "(librdkafka statistics)",
                "topic,partition", NULL, 0);
}

void veil_families_destroy(struct veil_families *m)
{
        veil_metrics_destroy(m->reg);
        m->reg = NULL;
}

void veil_families_lag(struct veil_families *m, const char *json, size_t len)
{
        json_t *root, *topics, *t, *parts, *pj;
        const char *tname, *pname;

        root = json_loadb(json, len, 0, NULL);
        if (!root)
                return;
        topics = json_object_get(root, "topics");
        json_object_foreach(topics, tname, t)
        {
                parts = json_object_get(t, "partitions");
                json_object_foreach(parts, pname, pj)
                {
                        /* librdkafka's own consumer_lag counts from the
                         * group's committed offset, which a consumer never
                         * learns when its offsets commit through the
                         * producer's transactions: the lag here is from
                         * the position (app_offset) to the end a
                         * read_committed consumer can reach (ls_offset). */
                        json_int_t end = json_integer_value(
                                json_object_get(pj, "ls_offset"));
                        json_int_t pos = json_integer_value(
                                json_object_get(pj, "app_offset"));
                        const char *v[2];

                        /* "-1" is librdkafka's internal UA partition;
                         * negative offsets are not known yet. */
                        if (!strcmp(pname, "-1") || end < 0 || pos < 0 ||
                            !json_is_true(json_object_get(pj, "desired")))
                                continue;
                        v[0] = tname;
                        v[1] = pname;
                        veil_series_set(veil_metric_series(m->lag, v),
                                        end > pos ? (int64_t)(end - pos) : 0);
                }
        }
        json_decref(root);
}

/* ---- a pipeline's tally ----------------------------------------------------
 */

/* Distinct (kind, purpose or code) an open batch counts for the alerts;
 * more are dropped (a batch seldom sees more than a few). */
#define ALERT_PENDING_MAX 64

/* Transform counters of one (route purpose, schema id). */
struct txinfo {
        const struct veil_route_purpose *rp;
        int schema_in;
        struct veil_counter **tx;
        uint64_t *mult;
        size_t n;
        uint64_t unclassified; /* fields without a class, per record */
        struct txinfo *next;
};

struct route_counters {
        struct veil_counter *in;
        struct veil_counter **out, **expired; /* per route purpose */
        bool *expiry_seen;                    /* per route purpose */
};

struct veil_tally {
        struct veil_families *m;
        struct veil_counters *ctr;
        struct route_counters *rc;
        size_t n_rc;
        struct txinfo *txinfos;
        struct veil_counter *audit;
        uint64_t plan_hits_seen, plan_misses_seen, audit_seen;
        /* the subject-key counters already added (veil_chain_stats) */
        uint64_t sk_seen[6];
        /* tombstones of the open batch, and committed so far */
        int64_t tomb_batch, tomb_committed;
        /* what the alerts watch, in the open batch: added on commit */
        struct veil_alerts *alerts;
        struct pending_alert {
                enum veil_alert_kind kind;
                char key[128];
                uint64_t n;
        } pending[ALERT_PENDING_MAX];
        size_t n_pending;
};

struct veil_tally *veil_tally_new(struct veil_families *m)
{
        struct veil_tally *t = veil_calloc(1, sizeof(*t));
        const char *none[1]  = {NULL};

        t->m     = m;
        t->ctr   = veil_counters_new();
        t->audit = veil_counter_get(t->ctr, m->audit, none);
        return t;
}

static void routes_free(struct veil_tally *t)
{
        size_t r;

        for (r = 0; r < t->n_rc; r++) {
                free(t->rc[r].out);
                free(t->rc[r].expired);
                free(t->rc[r].expiry_seen);
        }
        free(t->rc);
        t->rc   = NULL;
        t->n_rc = 0;
}

static void txinfos_free(struct veil_tally *t)
{
        while (t->txinfos) {
                struct txinfo *ti = t->txinfos;

                t->txinfos = ti->next;
                free(ti->tx);
                free(ti->mult);
                free(ti);
        }
}

void veil_tally_destroy(struct veil_tally *t)
{
        if (!t)
                return;
        routes_free(t);
        txinfos_free(t);
        veil_counters_destroy(t->ctr);
        free(t);
}

void veil_tally_bind(struct veil_tally *t, const struct veil_config *config)
{
        const struct veil_policy *policy = &config->policy;
        size_t r, j;

        routes_free(t);
        txinfos_free(t);
        /* The chain that counted plan hits is new too, and so is the
         * subject-key store (a reload makes another). */
        t->plan_hits_seen = t->plan_misses_seen = 0;
        memset(t->sk_seen, 0, sizeof(t->sk_seen));
        t->rc   = veil_calloc(policy->n_routes + 1, sizeof(*t->rc));
        t->n_rc = policy->n_routes;
        for (r = 0; r < policy->n_routes; r++) {
                const struct veil_route *route = &policy->routes[r];
                struct route_counters *rc      = &t->rc[r];
                const char *v[2]               = {route->source, NULL};
                size_t n                       = route->n_purposes + 1;

                rc->in          = veil_counter_get(t->ctr, t->m->in, v);
                rc->out         = veil_calloc(n, sizeof(*rc->out));
                rc->expired     = veil_calloc(n, sizeof(*rc->expired));
                rc->expiry_seen = veil_calloc(n, sizeof(*rc->expiry_seen));
                for (j = 0; j < route->n_purposes; j++) {
                        v[1]       = route->purposes[j].purpose;
                        rc->out[j] = veil_counter_get(t->ctr, t->m->out, v);
                        rc->expired[j] =
                                veil_counter_get(t->ctr, t->m->expired, v);
                }
        }
}

void veil_tally_in(struct veil_tally *t, size_t route)
{
        veil_counter_add(t->ctr, t->rc[route].in, 1);
}

void veil_tally_out(struct veil_tally *t, size_t route, size_t purpose)
{
        veil_counter_add(t->ctr, t->rc[route].out[purpose], 1);
}

bool veil_tally_expired(struct veil_tally *t, size_t route, size_t purpose)
{
        struct route_counters *rc = &t->rc[route];
        bool first                = !rc->expiry_seen[purpose];

        veil_counter_add(t->ctr, rc->expired[purpose], 1);
        rc->expiry_seen[purpose] = true;
        return first;
}

void veil_tally_alerts(struct veil_tally *t, struct veil_alerts *alerts)
{
        t->alerts    = alerts;
        t->n_pending = 0;
}

static void alert_note(struct veil_tally *t, enum veil_alert_kind kind,
                       const char *key, uint64_t n)
{
        size_t i;

        if (!n || !veil_alerts_watch(t->alerts, kind))
                return;
        for (i = 0; i < t->n_pending; i++)
                if (t->pending[i].kind == kind &&
                    !strcmp(t->pending[i].key, key)) {
                        t->pending[i].n += n;
                        return;
                }
        if (t->n_pending == ALERT_PENDING_MAX)
                return;
        t->pending[t->n_pending].kind = kind;
        snprintf(t->pending[t->n_pending].key,
                 sizeof(t->pending[t->n_pending].key), "%s", key);
        t->pending[t->n_pending++].n = n;
}

int64_t veil_tally_tombstones(const struct veil_tally *t)
{
        return t ? t->tomb_committed : 0;
}

void veil_tally_tombstone(struct veil_tally *t, const char *route,
                          const char *purpose, const char *reason)
{
        const char *v[3] = {route, purpose, reason ? reason : ""};

        t->tomb_batch++;
        veil_counter_add(t->ctr, veil_counter_get(t->ctr, t->m->tomb, v), 1);
}

void veil_tally_consent(struct veil_tally *t, const char *route,
                        const char *purpose, const char *reason)
{
        const char *v[3] = {route, purpose, reason};

        veil_counter_add(t->ctr, veil_counter_get(t->ctr, t->m->consent, v), 1);
        alert_note(t, VEIL_ALERT_CONSENT, purpose, 1);
}

void veil_tally_leak(struct veil_tally *t, const char *purpose,
                     const char *path, const char *detector, const char *action,
                     uint64_t n)
{
        const char *v[4] = {purpose, path, detector, action};

        veil_counter_add(t->ctr, veil_counter_get(t->ctr, t->m->leaks, v), n);
        alert_note(t, VEIL_ALERT_LEAKS, purpose, n);
}

void veil_tally_dlq(struct veil_tally *t, const char *code)
{
        const char *v[1] = {code};

        veil_counter_add(t->ctr, veil_counter_get(t->ctr, t->m->dlq, v), 1);
        alert_note(t, VEIL_ALERT_DLQ, code, 1);
}

void veil_tally_plan(struct veil_tally *t, const struct veil_record_out *out,
                     int schema_in)
{
        const struct veil_plan_field *f;
        struct txinfo *ti;
        size_t n, i, k;

        for (ti = t->txinfos; ti; ti = ti->next)
                if (ti->rp == out->rp && ti->schema_in == schema_in)
                        break;
        if (!ti) {
                ti            = veil_calloc(1, sizeof(*ti));
                ti->rp        = out->rp;
                ti->schema_in = schema_in;
                f             = veil_plan_fields(out->plan, &n);
                ti->tx        = veil_calloc(n + 1, sizeof(*ti->tx));
                ti->mult      = veil_calloc(n + 1, sizeof(*ti->mult));
                for (i = 0; i < n; i++) {
                        const char *v[3] = {out->rp->purpose,
                                            f[i].label ? f[i].label
                                                       : "unclassified",
                                            veil_tx_name(f[i].tx)};
                        struct veil_counter *ct =
                                veil_counter_get(t->ctr, t->m->tx, v);

                        if (!f[i].label)
                                ti->unclassified++;
                        for (k = 0; k < ti->n && ti->tx[k] != ct; k++)
                                ;
                        if (k == ti->n) {
                                ti->tx[ti->n]     = ct;
                                ti->mult[ti->n++] = 0;
                        }
                        ti->mult[k]++;
                }
                ti->next   = t->txinfos;
                t->txinfos = ti;
        }
        for (k = 0; k < ti->n; k++)
                veil_counter_add(t->ctr, ti->tx[k], ti->mult[k]);
        alert_note(t, VEIL_ALERT_UNCLASSIFIED, out->rp->purpose,
                   ti->unclassified);
}

/* The subject-key counters since the last call. A store made since (a
 * reload that bound no new chain) starts again from zero. */
static void subject_keys_add(struct veil_tally *t,
                             const struct veil_chain_stats *st)
{
        const uint64_t now[6] = {
                st->subject_keys_created,   st->subject_keys_destroyed,
                st->subject_keys_rewrapped, st->subject_key_hits,
                st->subject_key_misses,     st->subject_keys_fetched};
        struct veil_series *to[6] = {t->m->sk_created,   t->m->sk_destroyed,
                                     t->m->sk_rewrapped, t->m->sk_hits,
                                     t->m->sk_misses,    t->m->sk_fetched};
        size_t i;

        for (i = 0; i < 6; i++) {
                if (now[i] < t->sk_seen[i])
                        t->sk_seen[i] = 0;
                veil_series_add(to[i], now[i] - t->sk_seen[i]);
                t->sk_seen[i] = now[i];
        }
}

void veil_tally_chain(struct veil_tally *t, const struct veil_chain_stats *st)
{
        veil_series_add(t->m->plan_hits, st->plan_hits - t->plan_hits_seen);
        veil_series_add(t->m->plan_misses,
                        st->plan_misses - t->plan_misses_seen);
        t->plan_hits_seen   = st->plan_hits;
        t->plan_misses_seen = st->plan_misses;
        subject_keys_add(t, st);
}

void veil_tally_commit(struct veil_tally *t, const struct veil_chain_stats *st,
                       uint64_t audited, int64_t commit_ms, int64_t batch_ms)
{
        veil_tally_chain(t, st);
        if (audited > t->audit_seen)
                veil_counter_add(t->ctr, t->audit, audited - t->audit_seen);
        t->audit_seen = audited;
        size_t i;
        int64_t now = veil_now_ms();

        veil_counters_settle(t->ctr, true);
        t->tomb_committed += t->tomb_batch;
        t->tomb_batch = 0;
        for (i = 0; i < t->n_pending; i++)
                veil_alerts_add(t->alerts, t->pending[i].kind,
                                t->pending[i].key, t->pending[i].n, now);
        t->n_pending = 0;
        veil_series_add(t->m->committed, 1);
        veil_series_observe(t->m->commit_s, (double)commit_ms / 1e3);
        veil_series_observe(t->m->batch_s, (double)batch_ms / 1e3);
}

void veil_tally_abort(struct veil_tally *t)
{
        veil_counters_settle(t->ctr, false);
        t->tomb_batch = 0;
        t->n_pending  = 0;
        veil_series_add(t->m->aborted, 1);
}
