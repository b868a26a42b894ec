/* tally.h - what `veil run` counts for /metrics: the metric families every
 * pipeline shares, and each pipeline's tally of its open batch, added to
 * them when the batch commits and dropped when it aborts. */
#ifndef VEIL_CONNECTORS_TALLY_H
#define VEIL_CONNECTORS_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "filter.h"
#include "metrics.h"

/* The registry and its families, shared by the pipelines (values are
 * atomic). */
struct veil_families {
        struct veil_metrics *reg;
        struct veil_metric *in, *out, *tomb, *expired, *dlq, *tx, *lag, *audit;
        struct veil_metric *consent; /* records a consent gate withheld */
        struct veil_metric *leaks;   /* leak guard findings */
        struct veil_metric *halted;  /* veil_purpose_halted{purpose} */
        struct veil_metric *alert;   /* veil_alert_active{alert,purpose,code} */
        struct veil_series *plan_hits, *plan_misses, *batch_s, *commit_s,
                *committed, *aborted, *assigned;
        /* crypto-shredding: the subject-key stores' counters */
        struct veil_series *sk_created, *sk_destroyed, *sk_rewrapped, *sk_hits,
                *sk_misses, *sk_fetched;
};

void veil_families_init(struct veil_families *m);
void veil_families_destroy(struct veil_families *m);

/* librdkafka's statistics JSON (statistics.interval.ms): each assigned
 * partition's lag becomes a gauge. */
void veil_families_lag(struct veil_families *m, const char *json, size_t len);

struct veil_tally;

/* One pipeline's (single-threaded). m must outlive it. */
struct veil_tally *veil_tally_new(struct veil_families *m);
void veil_tally_destroy(struct veil_tally *t);

/* The running config's routes and a new chain (again after a reload:
 * route pointers change). Plan summaries of the old config are dropped. */
void veil_tally_bind(struct veil_tally *t, const struct veil_config *config);

/* Inside the open batch. route: index in config->policy.routes; purpose:
 * index in that route's purposes. */
void veil_tally_in(struct veil_tally *t, size_t route);
void veil_tally_out(struct veil_tally *t, size_t route, size_t purpose);
/* Returns true the first time since the last bind (to log it once). */
bool veil_tally_expired(struct veil_tally *t, size_t route, size_t purpose);
void veil_tally_tombstone(struct veil_tally *t, const char *route,
                          const char *purpose, const char *reason);
void veil_tally_dlq(struct veil_tally *t, const char *code);
/* `n` spans of `detector` the leak guard found at field `path` of an
 * output of `purpose`, and what it did (`action`: redact, quarantine). */
void veil_tally_leak(struct veil_tally *t, const char *purpose,
                     const char *path, const char *detector, const char *action,
                     uint64_t n);
/* A record the purpose's consent gate did not let through (`reason`: a
 * veil_consent_name). */
void veil_tally_consent(struct veil_tally *t, const char *route,
                        const char *purpose, const char *reason);
/* The field transforms of the plan `out` used (flattened on first sight
 * of (route purpose, schema id), while the plan is alive). */
void veil_tally_plan(struct veil_tally *t, const struct veil_record_out *out,
                     int schema_in);

/* Alerts (alerts.h, shared; may be NULL) that get this pipeline's
 * leaks, dead letters, consent drops and unclassified fields, each batch
 * when it commits. */
struct veil_alerts;
void veil_tally_alerts(struct veil_tally *t, struct veil_alerts *alerts);
/* Tombstones committed so far (every reason: the worker's and the
 * retention side's), for the stop summary. */
int64_t veil_tally_tombstones(const struct veil_tally *t);

/* The chain's plan-cache counters (cumulative) reach the registry: on
 * commit, and before a reload replaces the chain. */
void veil_tally_chain(struct veil_tally *t, const struct veil_chain_stats *st);

/* The batch committed: its counts are added, with the chain's plan-cache
 * counters and the audit events committed so far (cumulative), and the
 * commit's and batch's durations (ms). */
void veil_tally_commit(struct veil_tally *t, const struct veil_chain_stats *st,
                       uint64_t audited, int64_t commit_ms, int64_t batch_ms);
/* The batch aborted: its counts are dropped. */
void veil_tally_abort(struct veil_tally *t);

#endif
