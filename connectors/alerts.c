/* alerts.c - sliding-window thresholds (alerts.h): one window per (rule,
 * purpose or code) seen, evaluated under one lock. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "log.h"
#include "util.h"
#include "window.h"

#define WINDOW_S 60
#define REOFFER_MS 10000

struct series {
        size_t rule; /* index in rules->v */
        char key[128];
        struct veil_window w;
        bool active;
        bool pending;       /* raised with halt_on, the halt not written yet */
        int64_t offered_ms; /* when a pipeline last took that halt */
        struct series *next;
};

struct veil_alerts {
        const struct veil_alert_rules *rules;
        struct veil_metric *gauge;
        pthread_mutex_t lock;
        struct series *series;
        int64_t last_eval_ms;
        bool watch[VEIL_ALERT_KINDS];
};

struct veil_alerts *veil_alerts_new(const struct veil_alert_rules *rules,
                                    struct veil_metric *gauge)
{
        struct veil_alerts *a = veil_calloc(1, sizeof(*a));
        size_t i;

        a->rules = rules;
        a->gauge = gauge;
        pthread_mutex_init(&a->lock, NULL);
        for (i = 0; rules && i < rules->n; i++)
                a->watch[rules->v[i].kind] = true;
        return a;
}

void veil_alerts_destroy(struct veil_alerts *a)
{
        if (!a)
                return;
        while (a->series) {
                struct series *s = a->series;

                a->series = s->next;
                free(s);
        }
        pthread_mutex_destroy(&a->lock);
        free(a);
}

bool veil_alerts_watch(const struct veil_alerts *a, enum veil_alert_kind kind)
{
        return a && (unsigned)kind < VEIL_ALERT_KINDS && a->watch[kind];
}

/* Labels of a series: alert, purpose, code. */
static void gauge_set(struct veil_alerts *a, const struct series *s)
{
        const struct veil_alert_rule *r = &a->rules->v[s->rule];
        const char *v[3];

        if (!a->gauge)
                return;
        v[0] = veil_alert_name(r->kind);
        v[1] = veil_alert_per_purpose(r->kind) ? s->key : "";
        v[2] = veil_alert_per_purpose(r->kind) ? "" : s->key;
        veil_series_set(veil_metric_series(a->gauge, v), s->active ? 1 : 0);
}

/* Under the lock. */
static struct series *series_of(struct veil_alerts *a, size_t rule,
                                const char *key)
{
        struct series *s;

        for (s = a->series; s; s = s->next)
                if (s->rule == rule && !strcmp(s->key, key))
                        return s;
        s       = veil_calloc(1, sizeof(*s));
        s->rule = rule;
        snprintf(s->key, sizeof(s->key), "%s", key);
        veil_window_init(&s->w, WINDOW_S);
        s->next   = a->series;
        a->series = s;
        gauge_set(a, s);
        return s;
}

void veil_alerts_add(struct veil_alerts *a, enum veil_alert_kind kind,
                     const char *key, uint64_t n, int64_t now_ms)
{
        size_t i;

        if (!veil_alerts_watch(a, kind) || !n)
                return;
        pthread_mutex_lock(&a->lock);
        for (i = 0; i < a->rules->n; i++) {
                const struct veil_alert_rule *r = &a->rules->v[i];

                if (r->kind != kind || (r->code && strcmp(r->code, key)))
                        continue;
                veil_window_add(&series_of(a, i, key)->w, now_ms, n);
        }
        pthread_mutex_unlock(&a->lock);
}

size_t veil_alerts_eval(struct veil_alerts *a, int64_t now_ms,
                        int64_t min_gap_ms, struct veil_alert_trip *trips,
                        size_t max)
{
        struct series *s;
        size_t n = 0;

        if (!a || !a->rules || !a->rules->n)
                return 0;
        pthread_mutex_lock(&a->lock);
        if (a->last_eval_ms && now_ms - a->last_eval_ms < min_gap_ms &&
            now_ms >= a->last_eval_ms) {
                pthread_mutex_unlock(&a->lock);
                return 0;
        }
        a->last_eval_ms = now_ms;
        for (s = a->series; s; s = s->next) {
                const struct veil_alert_rule *r = &a->rules->v[s->rule];
                uint64_t count = veil_window_sum(&s->w, now_ms);
                bool active    = count >= r->threshold;
                bool pp        = veil_alert_per_purpose(r->kind);

                if (active != s->active) {
                        s->active     = active;
                        s->pending    = active && r->halt;
                        s->offered_ms = 0;
                        gauge_set(a, s);
                        veil_log(active ? "warn" : "info",
                                 active ? "alert-raised" : "alert-cleared",
                                 "%s %s %s: %" PRIu64 " in the last %d s "
                                 "(threshold %" PRIu64 ")%s",
                                 veil_alert_name(r->kind),
                                 pp ? "purpose" : "code", s->key, count,
                                 WINDOW_S, r->threshold,
                                 active && r->halt ? "; halt_on: halting" : "");
                }
                /* One pipeline writes the halt; offered again only if it
                 * did not commit it in a while (its batch aborted). */
                if (s->pending && n < max &&
                    (!s->offered_ms || now_ms < s->offered_ms ||
                     now_ms - s->offered_ms >= REOFFER_MS)) {
                        s->offered_ms = now_ms;
                        snprintf(trips[n].purpose, sizeof(trips[n].purpose),
                                 "%s", pp ? s->key : "*");
                        snprintf(trips[n].reason, sizeof(trips[n].reason),
                                 "alert:%s", veil_alert_name(r->kind));
                        n++;
                }
        }
        pthread_mutex_unlock(&a->lock);
        return n;
}

void veil_alerts_done(struct veil_alerts *a, const struct veil_alert_trip *trip)
{
        struct series *s;

        if (!a)
                return;
        pthread_mutex_lock(&a->lock);
        for (s = a->series; s; s = s->next) {
                const struct veil_alert_rule *r = &a->rules->v[s->rule];
                char reason[160];

                snprintf(reason, sizeof(reason), "alert:%s",
                         veil_alert_name(r->kind));
                if (strcmp(reason, trip->reason))
                        continue;
                if (veil_alert_per_purpose(r->kind)
                            ? !strcmp(s->key, trip->purpose)
                            : !strcmp(trip->purpose, "*"))
                        s->pending = false;
        }
        pthread_mutex_unlock(&a->lock);
}
