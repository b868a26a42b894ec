/* alert.h - the `alerts:` thresholds and `halt_on:` of a config: which
 * rates are watched over a sliding minute, and which of them trip a
 * purpose's circuit breaker (connectors/alerts.c evaluates them). */
#ifndef VEIL_COMMON_ALERT_H
#define VEIL_COMMON_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_alert_kind {
        VEIL_ALERT_LEAKS = 0,    /* leaks_per_minute: per purpose */
        VEIL_ALERT_DLQ,          /* dlq_per_minute: { CODE: N }: per code */
        VEIL_ALERT_UNCLASSIFIED, /* unclassified_per_minute: per purpose */
        VEIL_ALERT_CONSENT,      /* consent_drops_per_minute: per purpose */
        VEIL_ALERT_KINDS
};

/* One threshold: active while the count of the last 60 s is at least
 * `threshold`. */
struct veil_alert_rule {
        enum veil_alert_kind kind;
        char *code; /* VEIL_ALERT_DLQ: the veil.error code; else NULL */
        uint64_t threshold;
        bool halt; /* named in halt_on */
};

struct veil_alert_rules {
        struct veil_alert_rule *v;
        size_t n;
};

/* The config key of a kind ("leaks_per_minute"…). */
const char *veil_alert_name(enum veil_alert_kind kind);
/* The kind a config key names, or -1. */
int veil_alert_kind_of(const char *name);
/* Does a rule of this kind belong to one purpose (true), or to the whole
 * worker (dlq_per_minute: halt_on then halts every purpose)? */
bool veil_alert_per_purpose(enum veil_alert_kind kind);

void veil_alert_rules_free(struct veil_alert_rules *r);

#endif
