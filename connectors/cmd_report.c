/* cmd_report.c - `veil report -c FILE [--since DURATION] [--format
 * text|json]`: the governance evidence a compliance review asks for, per
 * purpose, summed from the audit topic (read_committed) and the DLQ's
 * headers. Names, codes and counts only: never a value, never a payload. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "breaker.h"
#include "commands.h"
#include "config.h"
#include "dlq.h"
#include "headers.h"
#include "reader.h"
#include "util.h"
#include "veil.h"

static const struct veil_cmd_help help = {
        "report",
        "report -c FILE [--since DURATION] [--format text|json] "
        "[--timeout SECONDS]",
        "Governance evidence per purpose, read from the audit topic "
        "(read_committed): records\nreceived, transforms applied, fields "
        "dropped and why, tombstones by reason, leaks\ncaught, consent "
        "drops, dead letters by code, circuit-breaker halts and resumes\n"
        "(and whether the purpose is halted now), and each licence's "
        "validity.\nCounts and names only, never a value.",
        "options:\n"
        "  -c, --config FILE   the pipeline (its purposes, topics.audit and "
        "topics.dlq)\n"
        "  --since DURATION    only events of the last DURATION (30d, 12h, "
        "90m, 1h30m);\n"
        "                      default: everything the topics still hold\n"
        "  --format FORMAT     text (a table per purpose, the default) or "
        "json (stable\n"
        "                      keys: docs/compliance-guide.md)\n"
        "  --timeout SECONDS   how long to wait for the topics' ends "
        "(default 120)\n"
        "The audit topic's integrity is `veil audit verify`'s job; this "
        "sums what it holds.\n"
        "exit: 0 printed, 2 usage, config or Kafka error (audit topic "
        "missing or unreachable)\n"};

/* The tombstone reasons every purpose reports, zero or not. */
static const char *const tomb_reasons[] = {
        VEIL_REASON_RETENTION, VEIL_REASON_ERASURE,
        VEIL_REASON_CONSENT_WITHDRAWN, VEIL_REASON_UPSTREAM_DELETE,
        VEIL_REASON_LICENSE_EXPIRED};

/* Per-record and batch events count a purpose's tombstones without their
 * reason; consent events name theirs. The difference is the upstream
 * deletes (the only other tombstone a record makes). */
#define RAW_TOMBSTONES "_tombstones"
#define RAW_CONSENT_TOMBSTONES "_consent_tombstones"
/* When the purpose was last halted and last resumed (the control record's
 * time), over everything the topic holds: the state at the window's end. */
#define RAW_LAST_HALT "_last_halt"
#define RAW_LAST_RESUME "_last_resume"

struct report {
        const struct veil_config *config;
        int64_t since_ms; /* count events at or after; 0: all */
        json_t *purposes; /* name -> the purpose's figures */
        json_t *dlq_codes, *dlq_sources;
        json_t *resumes_seen; /* "purpose\nat\nby" of resumes counted */
        int64_t events, counted, unreadable;
        int64_t erasures, erasure_tombstones;
        int64_t dlq_total;
        bool dlq_present;
};

static void add(json_t *obj, const char *key, int64_t n)
{
        json_t *v = json_object_get(obj, key);

        json_object_set_new(obj, key, json_integer(json_integer_value(v) + n));
}

/* A purpose's figures, created zeroed on first use so every key is there
 * whatever happened. */
static json_t *purpose_get(struct report *r, const char *name)
{
        json_t *p = json_object_get(r->purposes, name), *tomb;
        size_t i;

        if (p)
                return p;
        tomb = json_object();
        for (i = 0; i < VEIL_ARRAY_SIZE(tomb_reasons); i++)
                json_object_set_new(tomb, tomb_reasons[i], json_integer(0));
        p = json_pack("{s:i, s:i, s:{}, s:{}, s:{}, s:o, s:{s:i, s:i, s:{}, "
                      "s:{}, s:{}}, s:{s:i, s:{}}, s:n, s:{s:i, s:{}}, s:i, "
                      "s:b, s:{}}",
                      "records", 0, "expired", 0, "transforms", "drops",
                      "fields", "tombstones", tomb, "leaks", "spans", 0,
                      "findings", 0, "by_detector", "by_action", "by_field",
                      "consent_drops", "total", 0, "by_reason", "license",
                      "halts", "total", 0, "by_reason", "resumes", 0, "halted",
                      0, "dlq");
        if (!p)
                abort();
        json_object_set_new(r->purposes, name, p);
        return p;
}

/* The purpose that writes `topic`, or NULL. */
static const char *purpose_of_topic(const struct veil_config *config,
                                    const char *topic)
{
        const struct veil_policy *policy = &config->policy;
        size_t i, j;

        for (i = 0; i < policy->n_routes; i++)
                for (j = 0; j < policy->routes[i].n_purposes; j++)
                        if (!strcmp(policy->routes[i].purposes[j].topic, topic))
                                return policy->routes[i].purposes[j].purpose;
        return NULL;
}

static int64_t int_of(json_t *ev, const char *key)
{
        json_t *v = json_object_get(ev, key);

        return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* "record" (one record) and "batch" (a transaction's records) events. */
static void note_records(json_t *p, json_t *ev)
{
        json_t *fields  = json_object_get(ev, "fields");
        json_t *applied = json_object_get(ev, "applied");
        json_t *drops   = json_object_get(ev, "drops");
        json_t *dropped = json_object_get(ev, "dropped"), *v;
        int64_t records = int_of(ev, "records");
        const char *path;

        add(p, "records", records);
        add(p, "expired", int_of(ev, "expired"));
        add(p, RAW_TOMBSTONES, int_of(ev, "tombstones"));
        if (json_is_object(fields))
                json_object_update(json_object_get(p, "fields"), fields);
        if (records == 0)
                return;
        if (json_is_object(applied)) {
                /* Batch events count each record's own plan. */
                json_object_foreach(applied, path, v)
                        add(json_object_get(p, "transforms"), path,
                            json_integer_value(v));
        } else {
                json_object_foreach(fields, path, v) if (json_is_string(v))
                        add(json_object_get(p, "transforms"),
                            json_string_value(v), records);
        }
        if (json_is_object(drops)) {
                json_object_foreach(drops, path, v)
                        add(json_object_get(p, "drops"), path,
                            json_integer_value(v));
                return;
        }
        /* A record event: its field map, and why each drop happened
         * (events older than "dropped" cannot say: "unspecified"). */
        json_object_foreach(fields, path, v)
        {
                const char *why;

                if (!json_is_string(v) || strcmp(json_string_value(v), "drop"))
                        continue;
                why = json_string_value(json_object_get(dropped, path));
                add(json_object_get(p, "drops"), why ? why : "unspecified",
                    records);
        }
}

static void note_leak(json_t *p, json_t *ev)
{
        json_t *leaks     = json_object_get(p, "leaks");
        int64_t spans     = int_of(ev, "spans");
        const char *det   = json_string_value(json_object_get(ev, "detector"));
        const char *act   = json_string_value(json_object_get(ev, "action"));
        const char *field = json_string_value(json_object_get(ev, "field"));

        add(leaks, "findings", 1);
        add(leaks, "spans", spans);
        add(json_object_get(leaks, "by_detector"), det ? det : "?", spans);
        add(json_object_get(leaks, "by_action"), act ? act : "?", spans);
        add(json_object_get(leaks, "by_field"), field ? field : "?", spans);
}

static void note_consent(json_t *p, json_t *ev)
{
        json_t *cd         = json_object_get(p, "consent_drops");
        const char *reason = json_string_value(json_object_get(ev, "reason"));
        const char *tomb = json_string_value(json_object_get(ev, "tombstone"));

        add(cd, "total", 1);
        add(json_object_get(cd, "by_reason"), reason ? reason : "?", 1);
        if (tomb) {
                add(json_object_get(p, "tombstones"), tomb, 1);
                add(p, RAW_CONSENT_TOMBSTONES, 1);
        }
}

static void note_erasure(struct report *r, json_t *ev)
{
        json_t *topics = json_object_get(ev, "topics"), *t;
        size_t i;

        r->erasures++;
        r->erasure_tombstones += int_of(ev, "tombstones");
        json_array_foreach(topics, i, t)
        {
                const char *purpose =
                        json_is_string(t)
                                ? purpose_of_topic(r->config,
                                                   json_string_value(t))
                                : NULL;

                if (purpose)
                        add(json_object_get(purpose_get(r, purpose),
                                            "tombstones"),
                            VEIL_REASON_ERASURE, 1);
        }
}

/* Tombstones the retention timer wrote: reason retention, or
 * license-expired when the licence ended first. */
static void note_retention(json_t *p, json_t *ev)
{
        const char *reason = json_string_value(json_object_get(ev, "reason"));

        add(json_object_get(p, "tombstones"),
            reason ? reason : VEIL_REASON_RETENTION, int_of(ev, "tombstones"));
}

/* The circuit breaker's events. "halt": a worker tripped the purpose (in
 * the transaction of the record or alert that did it); "halt-seen": another
 * worker applied that halt (not a second halt); "resume": each worker that
 * applied a `veil guard resume` says so, all with the control record's
 * "at" and "by": one resume per distinct (at, by). Called for every event,
 * inside the window or not: the state at its end needs the whole history;
 * `counted` says whether the event is inside the window. */
static void note_breaker(struct report *r, const char *kind,
                         const char *purpose, json_t *ev, bool counted)
{
        json_t *p  = purpose_get(r, purpose);
        json_t *at = json_object_get(ev, "at");
        int64_t when =
                json_is_integer(at) ? int_of(ev, "at") : int_of(ev, "ts");
        const char *by = json_string_value(json_object_get(ev, "by"));

        if (!strcmp(kind, "halt")) {
                const char *reason =
                        json_string_value(json_object_get(ev, "reason"));
                json_t *halts = json_object_get(p, "halts");

                if (counted) {
                        add(halts, "total", 1);
                        add(json_object_get(halts, "by_reason"),
                            reason && *reason ? reason : "?", 1);
                }
                if (when >= int_of(p, RAW_LAST_HALT))
                        json_object_set_new(p, RAW_LAST_HALT,
                                            json_integer(when));
        } else if (!strcmp(kind, "resume")) {
                if (json_is_integer(at)) {
                        char *key = NULL;

                        if (asprintf(&key, "%s\n%" PRId64 "\n%s", purpose, when,
                                     by ? by : "") < 0)
                                abort();
                        if (json_object_get(r->resumes_seen, key)) {
                                free(key);
                                return;
                        }
                        json_object_set_new(r->resumes_seen, key, json_true());
                        free(key);
                }
                if (counted)
                        add(p, "resumes", 1);
                if (when >= int_of(p, RAW_LAST_RESUME))
                        json_object_set_new(p, RAW_LAST_RESUME,
                                            json_integer(when));
        }
}

static int report_event(void *opaque, const rd_kafka_message_t *rkm)
{
        struct report *r = opaque;
        const char *kind, *purpose;
        json_t *ev;

        r->events++;
        ev = rkm->payload ? json_loadb(rkm->payload, rkm->len, 0, NULL) : NULL;
        kind = json_string_value(json_object_get(ev, "kind"));
        if (!json_is_object(ev) || !kind) {
                r->unreadable++;
                json_decref(ev);
                return 0;
        }
        purpose = json_string_value(json_object_get(ev, "purpose"));
        if (purpose && *purpose &&
            (!strcmp(kind, "halt") || !strcmp(kind, "resume")))
                note_breaker(r, kind, purpose, ev,
                             !r->since_ms || int_of(ev, "ts") >= r->since_ms);
        if (r->since_ms && int_of(ev, "ts") < r->since_ms) {
                json_decref(ev);
                return 0;
        }
        r->counted++;
        if (!strcmp(kind, "erasure-completed")) {
                note_erasure(r, ev);
        } else if (purpose && *purpose) {
                json_t *p = purpose_get(r, purpose);

                if (!strcmp(kind, "record") || !strcmp(kind, "batch"))
                        note_records(p, ev);
                else if (!strcmp(kind, "consent"))
                        note_consent(p, ev);
                else if (!strcmp(kind, "leak"))
                        note_leak(p, ev);
                else if (!strcmp(kind, "retention"))
                        note_retention(p, ev);
        }
        /* Other kinds (newer workers') are read and not summed. */
        json_decref(ev);
        return 0;
}

static int report_letter(void *opaque, const rd_kafka_message_t *rkm)
{
        struct report *r = opaque;
        char code[VEIL_DLQ_CODE_MAX], pos[VEIL_DLQ_POS_MAX], marker[8];
        char purpose[VEIL_BREAKER_NAME_MAX];
        const char *topic = NULL;
        int32_t partition;
        int64_t offset, ts;

        /* Replay markers are not dead letters. */
        if (veil_reader_header(rkm, VEIL_H_REPLAY_DONE, marker, sizeof(marker)))
                return 0;
        ts = rd_kafka_message_timestamp(rkm, NULL);
        if (r->since_ms && ts >= 0 && ts < r->since_ms)
                return 0;
        if (!veil_reader_header(rkm, VEIL_H_ERROR, code, sizeof(code)))
                snprintf(code, sizeof(code), "unknown");
        r->dlq_total++;
        add(r->dlq_codes, code, 1);
        if (veil_reader_header(rkm, VEIL_H_SOURCE, pos, sizeof(pos)) &&
            !veil_dlq_position_parse(pos, &topic, &partition, &offset))
                add(r->dlq_sources, topic, 1);
        /* A letter held for one purpose (purpose-halted, leak-quarantined)
         * is also that purpose's. */
        if (veil_reader_header(rkm, VEIL_H_PURPOSE, purpose, sizeof(purpose)) &&
            *purpose)
                add(json_object_get(purpose_get(r, purpose), "dlq"), code, 1);
        return 0;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                fprintf(stderr, "veil report: kafka: %s: %s\n", fac, buf);
}

/* Reads all of `topic` that is there now. 0, VEIL_ENOTFOUND, or another
 * VEIL_E* with errstr. */
static int read_topic(rd_kafka_t *rk, const char *topic, int timeout_s,
                      veil_reader_fn fn, struct report *r, char *errstr,
                      size_t errstr_size)
{
        struct veil_reader_part *parts = NULL;
        int meta_ms = timeout_s * 1000 < 30000 ? timeout_s * 1000 : 30000;
        size_t n    = 0;
        int rc;

        rc = veil_reader_ends(rk, topic, &parts, &n, meta_ms, errstr,
                              errstr_size);
        if (!rc)
                rc = veil_reader_run(rk, topic, parts, n, timeout_s * 1000, fn,
                                     r, errstr, errstr_size);
        free(parts);
        return rc;
}

static void iso_time(int64_t ms, char *buf, size_t size)
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The licence of a purpose the config defines, as of now (epoch s). */
static json_t *license_of(const struct veil_purpose *pu, int64_t now)
{
        char date[16];
        time_t last;
        struct tm tm;
        int64_t left;

        if (!pu->valid_until)
                return json_pack("{s:s, s:s, s:n, s:b}", "id",
                                 pu->license_id ? pu->license_id : "",
                                 "valid_until", "never", "days_left", "expired",
                                 0);
        /* valid_until is the end of the last valid day. */
        last = (time_t)(pu->valid_until - 1);
        gmtime_r(&last, &tm);
        strftime(date, sizeof(date), "%Y-%m-%d", &tm);
        left = pu->valid_until > now ? (pu->valid_until - now - 1) / 86400 : 0;
        return json_pack("{s:s, s:s, s:I, s:b}", "id",
                         pu->license_id ? pu->license_id : "", "valid_until",
                         date, "days_left", (json_int_t)left, "expired",
                         !veil_purpose_licensed(pu, now));
}

/* Settles the raw counters into the published figures. */
static void finish_purposes(struct report *r, int64_t now)
{
        const struct veil_policy *policy = &r->config->policy;
        const char *name;
        json_t *p;
        size_t i;

        for (i = 0; i < policy->n_purposes; i++) {
                p = purpose_get(r, policy->purposes[i].name);
                json_object_set_new(p, "license",
                                    license_of(&policy->purposes[i], now));
        }
        json_object_foreach(r->purposes, name, p)
        {
                int64_t up = int_of(p, RAW_TOMBSTONES) -
                             int_of(p, RAW_CONSENT_TOMBSTONES);

                add(json_object_get(p, "tombstones"),
                    VEIL_REASON_UPSTREAM_DELETE, up > 0 ? up : 0);
                json_object_set_new(
                        p, "halted",
                        json_boolean(json_object_get(p, RAW_LAST_HALT) &&
                                     int_of(p, RAW_LAST_HALT) >
                                             int_of(p, RAW_LAST_RESUME)));
                json_object_del(p, RAW_TOMBSTONES);
                json_object_del(p, RAW_CONSENT_TOMBSTONES);
                json_object_del(p, RAW_LAST_HALT);
                json_object_del(p, RAW_LAST_RESUME);
        }
}

static int str_cmp(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "hash 48, keep 300" (sorted by name), or "none". */
static void print_counts(const char *label, json_t *obj, bool zeros)
{
        const char **keys;
        size_t n = 0, i, k;
        const char *key;
        json_t *v;
        bool any = false;

        keys = veil_calloc(json_object_size(obj) + 1, sizeof(*keys));
        json_object_foreach(obj, key, v) keys[n++] = key;
        qsort(keys, n, sizeof(*keys), str_cmp);
        printf("  %-26s", label);
        for (i = 0, k = 0; i < n; i++) {
                int64_t c = json_integer_value(json_object_get(obj, keys[i]));

                if (!c && !zeros)
                        continue;
                printf("%s%s %" PRId64, k++ ? ", " : "", keys[i], c);
                any = true;
        }
        printf("%s\n", any ? "" : "none");
        free(keys);
}

static void print_purpose(const char *name, json_t *p)
{
        json_t *lic = json_object_get(p, "license"), *leaks, *cd, *halts;

        printf("\npurpose %s\n", name);
        if (json_is_object(lic)) {
                const char *until =
                        json_string_value(json_object_get(lic, "valid_until"));

                printf("  %-26s%s, ", "licence",
                       json_string_value(json_object_get(lic, "id")));
                if (!strcmp(until, "never"))
                        printf("no end date\n");
                else if (json_is_true(json_object_get(lic, "expired")))
                        printf("EXPIRED (valid until %s)\n", until);
                else
                        printf("valid until %s (%" PRId64 " day(s) left)\n",
                               until, int_of(lic, "days_left"));
        } else {
                printf("  %-26snot in this config\n", "licence");
        }
        printf("  %-26s%" PRId64 "\n", "records received",
               int_of(p, "records"));
        printf("  %-26s%" PRId64 "\n", "skipped, licence expired",
               int_of(p, "expired"));
        print_counts("transforms applied", json_object_get(p, "transforms"),
                     false);
        print_counts("fields dropped", json_object_get(p, "drops"), false);
        print_counts("tombstones", json_object_get(p, "tombstones"), true);
        leaks = json_object_get(p, "leaks");
        printf("  %-26s%" PRId64 " span(s) in %" PRId64 " finding(s)\n",
               "leaks caught", int_of(leaks, "spans"),
               int_of(leaks, "findings"));
        if (int_of(leaks, "spans"))
                print_counts("  by detector",
                             json_object_get(leaks, "by_detector"), false);
        cd = json_object_get(p, "consent_drops");
        printf("  %-26s%" PRId64 "\n", "consent drops", int_of(cd, "total"));
        if (int_of(cd, "total"))
                print_counts("  by reason", json_object_get(cd, "by_reason"),
                             false);
        halts = json_object_get(p, "halts");
        printf("  %-26s%" PRId64 "\n", "halts", int_of(halts, "total"));
        if (int_of(halts, "total"))
                print_counts("  by reason", json_object_get(halts, "by_reason"),
                             false);
        printf("  %-26s%" PRId64 "\n", "resumes", int_of(p, "resumes"));
        printf("  %-26s%s\n", "halted now",
               json_is_true(json_object_get(p, "halted")) ? "YES" : "no");
        print_counts("dead letters held", json_object_get(p, "dlq"), false);
}

static void print_text(const struct report *r, const char *generated)
{
        const struct veil_policy *policy = &r->config->policy;
        const char **extra, *name;
        size_t n = 0, i;
        json_t *p;
        char since[32];

        if (r->since_ms)
                iso_time(r->since_ms, since, sizeof(since));
        printf("veil report %s: audit topic %s, %" PRId64 " event(s) "
               "counted%s%s%s",
               generated, r->config->topics.audit, r->counted,
               r->since_ms ? " since " : " (all the topic holds)",
               r->since_ms ? since : "", r->unreadable ? "" : "\n");
        if (r->unreadable)
                printf(", %" PRId64 " unreadable\n", r->unreadable);
        /* The config's purposes in its order, then any the events name
         * that it no longer defines. */
        for (i = 0; i < policy->n_purposes; i++)
                print_purpose(
                        policy->purposes[i].name,
                        json_object_get(r->purposes, policy->purposes[i].name));
        extra = veil_calloc(json_object_size(r->purposes) + 1, sizeof(*extra));
        json_object_foreach(r->purposes, name, p)
        {
                for (i = 0; i < policy->n_purposes; i++)
                        if (!strcmp(policy->purposes[i].name, name))
                                break;
                if (i == policy->n_purposes)
                        extra[n++] = name;
        }
        qsort(extra, n, sizeof(*extra), str_cmp);
        for (i = 0; i < n; i++)
                print_purpose(extra[i], json_object_get(r->purposes, extra[i]));
        free(extra);
        printf("\nerasure requests completed: %" PRId64 " (%" PRId64
               " tombstone(s))\n",
               r->erasures, r->erasure_tombstones);
        if (!r->config->topics.dlq)
                return;
        printf("dead letters on %s: %" PRId64 "%s\n", r->config->topics.dlq,
               r->dlq_total, r->dlq_present ? "" : " (no such topic)");
        if (r->dlq_total)
                print_counts("by code", r->dlq_codes, false);
}

static json_t *to_json(const struct report *r, const char *generated)
{
        char since[32];

        if (r->since_ms)
                iso_time(r->since_ms, since, sizeof(since));
        return json_pack(
                "{s:s, s:o, s:{s:s, s:I, s:I, s:I}, s:O, s:{s:I, s:I}, "
                "s:{s:o, s:I, s:O, s:O}}",
                "generated_at", generated, "since",
                r->since_ms ? json_string(since) : json_null(), "audit",
                "topic", r->config->topics.audit, "events",
                (json_int_t)r->events, "counted", (json_int_t)r->counted,
                "unreadable", (json_int_t)r->unreadable, "purposes",
                r->purposes, "erasures", "requests", (json_int_t)r->erasures,
                "tombstones", (json_int_t)r->erasure_tombstones, "dlq", "topic",
                r->config->topics.dlq ? json_string(r->config->topics.dlq)
                                      : json_null(),
                "total", (json_int_t)r->dlq_total, "by_code", r->dlq_codes,
                "by_source", r->dlq_sources);
}

static int report_run(const struct veil_config *config, int64_t since,
                      bool json, int timeout_s)
{
        struct report r;
        rd_kafka_t *rk = NULL;
        char errstr[1024], generated[32];
        int64_t now = veil_now_ms();
        int rc, exit_code = VEIL_EXIT_USAGE;

        memset(&r, 0, sizeof(r));
        r.config       = config;
        r.since_ms     = since ? now - since : 0;
        r.purposes     = json_object();
        r.dlq_codes    = json_object();
        r.dlq_sources  = json_object();
        r.resumes_seen = json_object();
        if (!config->topics.audit) {
                fprintf(stderr, "veil report: the config has no audit topic "
                                "(topics.audit)\n");
                goto out;
        }
        rk = veil_reader_consumer(config, "report", quiet_log, errstr,
                                  sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil report: %s\n", errstr);
                goto out;
        }
        rc = read_topic(rk, config->topics.audit, timeout_s, report_event, &r,
                        errstr, sizeof(errstr));
        if (rc) {
                fprintf(stderr, "veil report: audit topic: %s\n", errstr);
                goto out;
        }
        if (config->topics.dlq) {
                rc = read_topic(rk, config->topics.dlq, timeout_s,
                                report_letter, &r, errstr, sizeof(errstr));
                if (rc && rc != VEIL_ENOTFOUND) {
                        fprintf(stderr, "veil report: DLQ topic: %s\n", errstr);
                        goto out;
                }
                r.dlq_present = rc == 0;
        }
        finish_purposes(&r, now / 1000);
        iso_time(now, generated, sizeof(generated));
        if (json) {
                json_t *doc = to_json(&r, generated);
                char *text =
                        doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS)
                            : NULL;

                json_decref(doc);
                if (!text) {
                        fprintf(stderr, "veil report: out of memory\n");
                        goto out;
                }
                printf("%s\n", text);
                free(text);
        } else {
                print_text(&r, generated);
        }
        exit_code = fflush(stdout) ? VEIL_EXIT_USAGE : VEIL_EXIT_OK;
out:
        if (rk)
                rd_kafka_destroy(rk);
        json_decref(r.purposes);
        json_decref(r.dlq_codes);
        json_decref(r.dlq_sources);
        json_decref(r.resumes_seen);
        return exit_code;
}

int veil_cmd_report(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"since", required_argument, NULL, 's'},
                {"format", required_argument, NULL, 'f'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        /* A compliance reader needs no key: counts are not secrets. */
        struct veil_config_opts lopts = {.skip_key = true};
        struct veil_config *config;
        struct veil_cmd_opts o = {.timeout_s = 120, .timeout_max = 86400};
        int64_t since          = 0;
        bool json              = false;
        int c, rc;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (veil_duration_parse(optarg, &since) || since <= 0)
                                return veil_cmd_usage_error(
                                        &help,
                                        "--since takes a duration such as "
                                        "30d, 12h or 90m, got '%s'",
                                        optarg);
                        break;
                case 'f':
                        if (!strcmp(optarg, "json"))
                                json = true;
                        else if (!strcmp(optarg, "text"))
                                json = false;
                        else
                                return veil_cmd_usage_error(
                                        &help,
                                        "--format is text or json, got '%s'",
                                        optarg);
                        break;
                default:
                        if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >=
                            0)
                                return rc;
                }
        }
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, false)))
                return rc;
        config = veil_cmd_load_config(&help, o.path, &lopts);
        if (!config)
                return VEIL_EXIT_USAGE;
        rc = report_run(config, since, json, o.timeout_s);
        veil_config_destroy(config);
        return rc;
}
