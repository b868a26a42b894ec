/* halt.c - the circuit breaker inside `veil run`: a pipeline asks whether a
 * purpose is halted (the worker's shared breaker, or a trip of its own open
 * batch), trips one in its open transaction (the control record, the audit
 * event and the record that tripped it commit together), applies its trips
 * once the batch commits, and on its turns writes the halts that alerts in
 * halt_on raised and audits resumes that came from the control topic. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alerts.h"
#include "audit.h"
#include "breaker.h"
#include "log.h"
#include "pipe.h"
#include "sink.h"
#include "util.h"
#include "veil.h"

/* Trips one open batch can hold (more purposes are halted in the next). */
#define TRIPS_MAX 32

struct veil_halt {
        struct {
                struct veil_breaker_state s;
                bool alert; /* from an alert: veil_alerts_done on commit */
                struct veil_alert_trip trip;
        } trips[TRIPS_MAX];
        size_t n;
        /* halted per purpose of `config`, as of breaker generation `gen` */
        const struct veil_config *config;
        unsigned gen;
        bool *halted;
        int64_t last_tick_ms;
};

struct veil_halt *veil_halt_new(void)
{
        return veil_calloc(1, sizeof(struct veil_halt));
}

void veil_halt_destroy(struct veil_halt *h)
{
        if (!h)
                return;
        free(h->halted);
        free(h);
}

static bool pending(const struct veil_halt *h, const char *purpose)
{
        size_t i;

        for (i = 0; i < h->n; i++)
                if (!strcmp(h->trips[i].s.purpose, purpose))
                        return true;
        return false;
}

bool veil_halt_held(struct pipe *p, const struct veil_purpose *pu)
{
        struct veil_halt *h              = p->halt;
        struct veil_breaker *breaker     = p->sh->breaker;
        const struct veil_policy *policy = &p->config->policy;
        size_t i, pi = (size_t)(pu - policy->purposes);
        unsigned gen;

        if (!breaker || !h)
                return false;
        if (h->n && pending(h, pu->name))
                return true;
        /* One atomic load per output; the lock only when a state moved
         * or the config was reloaded. */
        gen = veil_breaker_gen(breaker);
        if (h->config != p->config || h->gen != gen || !h->halted) {
                free(h->halted);
                h->halted = veil_calloc(policy->n_purposes + 1, sizeof(bool));
                for (i = 0; i < policy->n_purposes; i++)
                        h->halted[i] = veil_breaker_halted(
                                breaker, policy->purposes[i].name);
                h->config = p->config;
                h->gen    = gen;
        }
        return pi < policy->n_purposes && h->halted[pi];
}

/* The control record and the audit event of one trip, into the open
 * transaction. */
static int write_trip(struct pipe *p, const struct veil_breaker_state *s,
                      char *errstr, size_t errstr_size)
{
        const struct veil_purpose *pu = NULL;
        enum veil_sink_status st;
        char *key, *value;
        size_t key_len, value_len, i;
        json_t *ev;

        for (i = 0; i < p->config->policy.n_purposes; i++)
                if (!strcmp(p->config->policy.purposes[i].name, s->purpose))
                        pu = &p->config->policy.purposes[i];
        veil_breaker_encode(s, &key, &key_len, &value, &value_len);
        st = veil_sink_produce(p->sink, p->config->topics.control,
                               RD_KAFKA_PARTITION_UA, key, key_len, value,
                               value_len, NULL, 0);
        free(key);
        free(value);
        if (st != VEIL_SINK_OK)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "producing the halt of %s to %s failed",
                                 s->purpose, p->config->topics.control);
        ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "kind",
                       s->halted ? "halt" : "resume", "purpose", s->purpose,
                       "license", pu && pu->license_id ? pu->license_id : "",
                       "reason", s->reason, "by", s->by, "at_source", s->source,
                       "at", (json_int_t)s->at_ms);
        return veil_audit_retention(p->audit, ev, errstr, errstr_size);
}

static enum rec_outcome trip(struct pipe *p, const char *purpose,
                             const char *reason, const char *source,
                             const struct veil_alert_trip *alert)
{
        struct veil_halt *h = p->halt;
        struct veil_breaker_state s;
        char err[512];

        if (pending(h, purpose))
                return REC_OK;
        if (veil_breaker_halted(p->sh->breaker, purpose)) {
                if (alert)
                        veil_alerts_done(p->sh->alerts, alert);
                return REC_OK;
        }
        if (h->n == TRIPS_MAX)
                return REC_OK; /* the next batch halts it */
        memset(&s, 0, sizeof(s));
        snprintf(s.purpose, sizeof(s.purpose), "%s", purpose);
        s.halted = true;
        snprintf(s.reason, sizeof(s.reason), "%s", reason);
        snprintf(s.by, sizeof(s.by), "%.127s", p->txn_id);
        snprintf(s.source, sizeof(s.source), "%s", source ? source : "");
        s.at_ms = veil_now_ms();
        if (write_trip(p, &s, err, sizeof(err))) {
                veil_pipe_fail(p, "%s", err);
                return REC_FATAL;
        }
        h->trips[h->n].s     = s;
        h->trips[h->n].alert = alert != NULL;
        if (alert)
                h->trips[h->n].trip = *alert;
        h->n++;
        veil_log("warn", "halt",
                 "purpose %s: circuit breaker tripped (%s%s%s); its records "
                 "are held as dead letters (purpose-halted) until `veil "
                 "guard resume`",
                 purpose, reason, source ? " at " : "", source ? source : "");
        return REC_OK;
}

enum rec_outcome veil_halt_trip(struct pipe *p, const struct veil_purpose *pu,
                                const char *reason, const char *source)
{
        if (!p->sh->breaker)
                return REC_OK;
        return trip(p, pu->name, reason, source, NULL);
}

void veil_halt_commit(struct pipe *p)
{
        struct veil_halt *h = p->halt;
        size_t i;

        if (!h)
                return;
        for (i = 0; i < h->n; i++) {
                veil_breaker_set(p->sh->breaker, &h->trips[i].s);
                if (h->trips[i].alert)
                        veil_alerts_done(p->sh->alerts, &h->trips[i].trip);
        }
        h->n = 0;
}

void veil_halt_rollback(struct pipe *p)
{
        if (p->halt)
                p->halt->n = 0;
}

enum rec_outcome veil_halt_tick(struct pipe *p, int64_t now_ms)
{
        struct veil_alert_trip trips[16];
        struct veil_breaker_state seen[16];
        size_t n, i, k;
        enum rec_outcome o;
        char err[512];

        if (!p->halt || (now_ms >= p->halt->last_tick_ms &&
                         now_ms - p->halt->last_tick_ms < 200))
                return REC_OK;
        p->halt->last_tick_ms = now_ms;
        /* Gauges and log events whether or not anything can halt. */
        n = veil_alerts_eval(p->sh->alerts, now_ms, 500, trips, 16);
        if (!p->sh->breaker)
                return REC_OK;
        for (i = 0; i < n; i++) {
                const struct veil_policy *policy = &p->config->policy;

                veil_pipe_begin(p);
                if (veil_pipe_dead(p))
                        return REC_FATAL;
                for (k = 0; k < policy->n_purposes; k++) {
                        const char *name = policy->purposes[k].name;

                        if (strcmp(trips[i].purpose, "*") &&
                            strcmp(trips[i].purpose, name))
                                continue;
                        if ((o = trip(p, name, trips[i].reason, NULL,
                                      &trips[i])) != REC_OK)
                                return o;
                }
        }
        /* Resumes (and other workers' halts) read from the control topic:
         * audited by the first pipeline of each worker that applied them
         * ("at": the control record's time, the same in every worker's
         * event, so `veil report` counts a resume once). */
        if (p->index != 0)
                return REC_OK;
        n = veil_breaker_take(p->sh->breaker, seen, 16);
        for (i = 0; i < n; i++) {
                veil_pipe_begin(p);
                if (veil_pipe_dead(p))
                        return REC_FATAL;
                if (veil_audit_retention(
                            p->audit,
                            json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "kind",
                                      seen[i].halted ? "halt-seen" : "resume",
                                      "purpose", seen[i].purpose, "reason",
                                      seen[i].reason, "by", seen[i].by,
                                      "applied_by", p->txn_id, "at",
                                      (json_int_t)seen[i].at_ms),
                            err, sizeof(err))) {
                        veil_pipe_fail(p, "%s", err);
                        return REC_FATAL;
                }
        }
        return REC_OK;
}
