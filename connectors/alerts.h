/* alerts.h - the `alerts:` thresholds at run time: counts committed by
 * every pipeline go into sliding one-minute windows; an evaluation sets
 * veil_alert_active{alert,purpose,code}, logs one `alert-raised` or
 * `alert-cleared` event per change (names and counts, never values) and
 * says which purposes an active `halt_on` alert must halt. Thread-safe:
 * the worker's pipelines share one. */
#ifndef VEIL_CONNECTORS_ALERTS_H
#define VEIL_CONNECTORS_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "metrics.h"

struct veil_alerts;

/* rules borrowed (they live in the config, which outlives the result);
 * gauge (may be NULL) is the veil_alert_active family with labels
 * alert,purpose,code. NULL rules or none: every call is a no-op. */
struct veil_alerts *veil_alerts_new(const struct veil_alert_rules *rules,
                                    struct veil_metric *gauge);
void veil_alerts_destroy(struct veil_alerts *a);

/* Is any threshold of this kind configured (so callers can skip)? */
bool veil_alerts_watch(const struct veil_alerts *a, enum veil_alert_kind kind);

/* n events of `kind` for `key` (the purpose; for dlq the veil.error code),
 * committed at now_ms. */
void veil_alerts_add(struct veil_alerts *a, enum veil_alert_kind kind,
                     const char *key, uint64_t n, int64_t now_ms);

/* A purpose an active halt_on alert says to halt ("*": every purpose, for
 * dlq_per_minute), with the reason for the control record
 * ("alert:NAME"). */
struct veil_alert_trip {
        char purpose[128];
        char reason[128];
};

/* Evaluates every window at now_ms (at most every `min_gap_ms`: a call
 * sooner returns 0 and does nothing, so pipelines may all call it on each
 * turn). Returns the trips of the halt_on alerts raised and not yet
 * written, each to one caller — and again every 10 s until
 * veil_alerts_done, so a halt whose transaction aborted is tried again. An
 * alert trips once per raise: a purpose resumed while the alert is still active
 * stays open. */
size_t veil_alerts_eval(struct veil_alerts *a, int64_t now_ms,
                        int64_t min_gap_ms, struct veil_alert_trip *trips,
                        size_t max);
/* The halt of `trip` is committed (or the purpose was halted already). */
void veil_alerts_done(struct veil_alerts *a,
                      const struct veil_alert_trip *trip);

#endif
