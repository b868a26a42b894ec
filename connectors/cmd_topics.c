/* cmd_topics.c - `veil topics -c FILE [--apply]`: the topics a pipeline
 * needs with their settings, printed as kafka-topics.sh commands or
 * created with the Admin API. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "commands.h"
#include "config.h"
#include "kafka.h"
#include "breaker.h"
#include "subject_keys.h"
#include "util.h"
#include "veil.h"

/* Settings, and why:
 *
 * Purpose topics are compacted: Veil deletes a key downstream by writing
 * a tombstone, and only compaction turns that into the old values being
 * gone from the log. Two settings bound how long that takes:
 * - max.compaction.lag.ms = min(retention, 1 day): the longest a value
 *   superseded by a tombstone may stay uncompacted. Kafka also rolls the
 *   active segment (which is never compacted) once its first record is
 *   that old, on the next append; so deleted data is gone within about
 *   that lag after its deadline, and no later than a day for long
 *   retentions, without the constant rewriting a smaller lag would cost.
 * - delete.retention.ms = min(retention, 1 day): how long the tombstone
 *   itself stays after compaction. Consumers that materialise the topic
 *   (tables, caches) must see it to delete their copy; a day covers a
 *   consumer that is down for less than a day. It never outlives the
 *   retention the licence granted, since the tombstone carries the key.
 * The ledger (compacted) holds one record per tracked source key; erased and
 *   expired keys must leave it too, so it gets the same one-day bounds.
 *   It needs as many partitions as the largest source: the state of
 *   source partition p lives in ledger partition p.
 * The subject-key topic (compacted, only when a purpose encrypts
 *   per_subject) holds one wrapped data key per subject; an erasure
 *   tombstones it, and the same one-day bounds make the key leave the
 *   log within a day (crypto-shredding: every copy of the subject's
 *   tokens stops opening). Partitions: like the largest source.
 * The audit topic keeps its events (delete policy) for at least a year
 *   and at least as long as any purpose keeps data, so the record of
 *   what was done outlives the data it describes.
 * The DLQ keeps failed records 7 days: long enough to fix and replay,
 *   short because its payloads are personal data (sealed by default).
 * Erasure requests (delete policy, 7 days, one partition: requests are
 *   few and are processed in order) only need to live until processed.
 * Replication is left to the broker's default.replication.factor unless
 * --replication-factor says otherwise. */

#define DAY_MS INT64_C(86400000)
#define DLQ_RETENTION_MS (7 * DAY_MS)
#define ERASURE_RETENTION_MS (7 * DAY_MS)
#define AUDIT_MIN_RETENTION_MS (365 * DAY_MS)

static const struct veil_cmd_help help = {
        "topics",
        "topics -c FILE [--bootstrap SERVERS] [--apply] "
        "[--partitions N] [--replication-factor N]",
        "The topics a pipeline needs, with their settings: compacted purpose "
        "topics whose\ncompaction matches each licence's retention, the "
        "ledger, audit, DLQ and erasure\ntopics. Prints kafka-topics.sh "
        "commands, or creates the topics with --apply.",
        "options:\n"
        "  -c, --config FILE          the pipeline\n"
        "  --bootstrap SERVERS        the cluster (default: the config's "
        "bootstrap.servers);\n"
        "                             given, source partition counts are "
        "read from it\n"
        "  --apply                    create the topics (Admin API), "
        "reporting each one\n"
        "                             as created or already existing\n"
        "  --partitions N             partition count for sources that do "
        "not exist yet\n"
        "  --replication-factor N     (default: the broker's "
        "default.replication.factor)\n"
        "  --timeout SECONDS          for each request to the cluster "
        "(default 10)\n"
        "  -h, --help                 this help\n"
        "Without a cluster, the commands take each source's partition count "
        "from a\nvariable (PARTITIONS_<SOURCE>) that must be set when they "
        "run.\n"
        "exit: 0 done (every topic created or present with its settings),\n"
        "      1 some topic failed or exists with other settings,\n"
        "      2 usage, config or connection error\n"};

struct kv {
        const char *name;
        char value[32];
};

#define MAX_CONFIGS 4

/* One topic to create. */
struct spec {
        const char *name;
        const char *comment;  /* one line, printed above the command */
        char detail[160];     /* more comment (the purpose's licence…) */
        int partitions;       /* -1: not known (the variable below) */
        char *partitions_var; /* shell expression when unknown */
        struct kv configs[MAX_CONFIGS];
        int n_configs;
        int source; /* route index for purpose topics, -1 otherwise */
};

struct source {
        const char *topic;
        char *var;      /* PARTITIONS_… */
        int partitions; /* -1 unknown */
};

struct plan {
        struct spec *specs;
        size_t n_specs;
        struct source *sources;
        size_t n_sources;
        int max_partitions; /* -1 unknown */
};

static void spec_config(struct spec *s, const char *name, int64_t value)
{
        s->configs[s->n_configs].name = name;
        snprintf(s->configs[s->n_configs].value,
                 sizeof(s->configs[s->n_configs].value), "%" PRId64, value);
        s->n_configs++;
}

static void spec_config_str(struct spec *s, const char *name, const char *value)
{
        s->configs[s->n_configs].name = name;
        snprintf(s->configs[s->n_configs].value,
                 sizeof(s->configs[s->n_configs].value), "%s", value);
        s->n_configs++;
}

/* "90d", "12h", "1500ms": the largest unit that divides it. */
static void fmt_duration(int64_t ms, char *out, size_t cap)
{
        static const struct {
                const char *unit;
                int64_t ms;
        } units[] = {{"d", DAY_MS}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(units); i++)
                if (ms && ms % units[i].ms == 0) {
                        snprintf(out, cap, "%" PRId64 "%s", ms / units[i].ms,
                                 units[i].unit);
                        return;
                }
        snprintf(out, cap, "%" PRId64 "ms", ms);
}

/* PARTITIONS_CUSTOMERS_V2 from "customers.v2"; unique within the plan. */
static char *source_var(const struct plan *plan, const char *topic)
{
        size_t n   = strlen(topic), i, k;
        char *v    = veil_malloc(n + 32);
        int suffix = 1;

        memcpy(v, "PARTITIONS_", 11);
        for (i = 0; i < n; i++) {
                char c = topic[i];

                if (c >= 'a' && c <= 'z')
                        c = (char)(c - 'a' + 'A');
                else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                        c = '_';
                v[11 + i] = c;
        }
        v[11 + n] = 0;
again:
        for (k = 0; k < plan->n_sources; k++)
                if (plan->sources[k].var && !strcmp(plan->sources[k].var, v)) {
                        snprintf(v + 11 + n, 21, "_%d", ++suffix);
                        goto again;
                }
        return v;
}

static struct spec *plan_add(struct plan *plan, const char *name)
{
        struct spec *s;
        size_t i;

        /* A topic named twice (the config forbids it for purposes) is
         * created once. */
        for (i = 0; i < plan->n_specs; i++)
                if (!strcmp(plan->specs[i].name, name))
                        return NULL;
        plan->specs = veil_realloc(plan->specs,
                                   (plan->n_specs + 1) * sizeof(*plan->specs));
        s           = &plan->specs[plan->n_specs++];
        memset(s, 0, sizeof(*s));
        s->name   = name;
        s->source = -1;
        return s;
}

static void plan_destroy(struct plan *plan)
{
        size_t i;

        for (i = 0; i < plan->n_specs; i++)
                free(plan->specs[i].partitions_var);
        for (i = 0; i < plan->n_sources; i++)
                free(plan->sources[i].var);
        free(plan->specs);
        free(plan->sources);
}

static char *strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *strfmt(const char *fmt, ...)
{
        va_list ap;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        s = veil_malloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return s;
}

/* Fills partition counts from what is known (sources[].partitions). */
static void plan_partitions(struct plan *plan)
{
        size_t i;
        int max = 0;

        for (i = 0; i < plan->n_sources; i++) {
                if (plan->sources[i].partitions < 0) {
                        max = -1;
                        break;
                }
                if (plan->sources[i].partitions > max)
                        max = plan->sources[i].partitions;
        }
        plan->max_partitions = plan->n_sources ? max : 1;
        for (i = 0; i < plan->n_specs; i++) {
                struct spec *s = &plan->specs[i];

                free(s->partitions_var);
                s->partitions_var = NULL;
                if (s->source >= 0) {
                        s->partitions = plan->sources[s->source].partitions;
                        if (s->partitions < 0)
                                s->partitions_var =
                                        strfmt("\"$%s\"",
                                               plan->sources[s->source].var);
                } else if (s->partitions == 0) {
                        /* ledger, audit, DLQ: like the largest source */
                        if (plan->max_partitions < 0)
                                s->partitions_var =
                                        strfmt("\"$PARTITIONS_MAX\"");
                }
        }
}

/* The specs, with partitions to be filled by plan_partitions: 0 means
 * "the largest source" (resolved there), -1 the route's source. */
static void plan_build(struct plan *plan, const struct veil_config *config)
{
        const struct veil_policy *policy = &config->policy;
        char dur[32], dur2[32];
        int64_t max_retention = 0, lag, ret;
        struct spec *s;
        size_t r, i;

        plan->sources = veil_calloc(policy->n_routes ? policy->n_routes : 1,
                                    sizeof(*plan->sources));
        for (r = 0; r < policy->n_routes; r++) {
                const struct veil_route *route = &policy->routes[r];

                plan->sources[r].topic      = route->source;
                plan->sources[r].partitions = -1;
                plan->sources[r].var        = source_var(plan, route->source);
                plan->n_sources++;
                for (i = 0; i < route->n_purposes; i++) {
                        const struct veil_route_purpose *rp =
                                &route->purposes[i];
                        const struct veil_purpose *p = rp->ref;

                        ret = p ? p->retention_ms : 0;
                        if (ret > max_retention)
                                max_retention = ret;
                        lag = ret > 0 && ret < DAY_MS ? ret : DAY_MS;
                        s   = plan_add(plan, rp->topic);
                        if (!s)
                                continue;
                        s->source  = (int)r;
                        s->comment = "purpose topic";
                        if (ret > 0)
                                fmt_duration(ret, dur, sizeof(dur));
                        else
                                snprintf(dur, sizeof(dur), "not set");
                        fmt_duration(lag, dur2, sizeof(dur2));
                        snprintf(s->detail, sizeof(s->detail),
                                 "%s -> purpose %s (licence %s), retention "
                                 "%s; deleted values gone within %s",
                                 route->source, rp->purpose,
                                 p && p->license_id ? p->license_id : "-", dur,
                                 dur2);
                        spec_config_str(s, "cleanup.policy", "compact");
                        spec_config(s, "max.compaction.lag.ms", lag);
                        spec_config(s, "delete.retention.ms", lag);
                }
        }
        if (config->topics.ledger &&
            (s = plan_add(plan, config->topics.ledger))) {
                s->comment = "retention ledger";
                snprintf(s->detail, sizeof(s->detail),
                         "key -> deadline; partition p holds the state of "
                         "source partition p");
                spec_config_str(s, "cleanup.policy", "compact");
                spec_config(s, "max.compaction.lag.ms", DAY_MS);
                spec_config(s, "delete.retention.ms", DAY_MS);
        }
        if (config->topics.subject_keys && veil_policy_per_subject(config) &&
            (s = plan_add(plan, config->topics.subject_keys))) {
                s->comment = "subject keys";
                snprintf(s->detail, sizeof(s->detail),
                         "keyed hash -> wrapped per-subject data key; an "
                         "erased subject's key is gone within 1d");
                spec_config_str(s, "cleanup.policy", "compact");
                spec_config(s, "max.compaction.lag.ms", DAY_MS);
                spec_config(s, "delete.retention.ms", DAY_MS);
        }
        if (config->topics.control && veil_breaker_needed(config) &&
            (s = plan_add(plan, config->topics.control))) {
                s->comment    = "control";
                s->partitions = 1;
                snprintf(s->detail, sizeof(s->detail),
                         "halted purposes (circuit breaker): one record per "
                         "purpose, the newest wins");
                spec_config_str(s, "cleanup.policy", "compact");
                spec_config(s, "delete.retention.ms", DAY_MS);
        }
        if (config->topics.audit &&
            (s = plan_add(plan, config->topics.audit))) {
                int64_t keep = max_retention > AUDIT_MIN_RETENTION_MS
                                       ? max_retention
                                       : AUDIT_MIN_RETENTION_MS;

                s->comment = "audit";
                fmt_duration(keep, dur, sizeof(dur));
                snprintf(s->detail, sizeof(s->detail),
                         "kept %s: at least a year and at least as long as "
                         "any purpose keeps data",
                         dur);
                spec_config_str(s, "cleanup.policy", "delete");
                spec_config(s, "retention.ms", keep);
        }
        if (config->topics.dlq && (s = plan_add(plan, config->topics.dlq))) {
                s->comment = "dead letters";
                snprintf(s->detail, sizeof(s->detail),
                         "kept 7d: time to fix and replay");
                spec_config_str(s, "cleanup.policy", "delete");
                spec_config(s, "retention.ms", DLQ_RETENTION_MS);
        }
        if (config->topics.erasure &&
            (s = plan_add(plan, config->topics.erasure))) {
                s->comment    = "erasure requests";
                s->partitions = 1;
                snprintf(s->detail, sizeof(s->detail),
                         "kept 7d; one partition, processed in order");
                spec_config_str(s, "cleanup.policy", "delete");
                spec_config(s, "retention.ms", ERASURE_RETENTION_MS);
        }
}

/* ---- printing ------------------------------------------------------------ */

/* Writes s single-quoted for sh. */
static void sh_quote(FILE *f, const char *s)
{
        fputc('\'', f);
        for (; *s; s++) {
                if (*s == '\'')
                        fputs("'\\''", f);
                else
                        fputc(*s, f);
        }
        fputc('\'', f);
}

static const char *config_bootstrap(const struct veil_config *config)
{
        size_t i;

        for (i = 0; i < config->n_kafka; i++)
                if (!strcmp(config->kafka[i].key, "bootstrap.servers") ||
                    !strcmp(config->kafka[i].key, "metadata.broker.list"))
                        return config->kafka[i].value;
        return NULL;
}

static void print_script(const struct plan *plan,
                         const struct veil_config *config,
                         const char *bootstrap, int replication)
{
        size_t i;
        int c;

        printf("#!/bin/sh\n"
               "# The topics of the pipeline %s (policy %.12s),\n"
               "# printed by `veil topics`. Run with BOOTSTRAP set (default "
               "below)",
               config->path, config->policy.digest);
        if (plan->max_partitions < 0)
                printf("\n# and the partition count of each source topic in "
                       "its PARTITIONS_ variable\n# (or rerun `veil topics "
                       "--bootstrap SERVERS` to have them filled in)");
        printf(".\nset -eu\n");
        printf("if [ -z \"${BOOTSTRAP:-}\" ]; then BOOTSTRAP=");
        sh_quote(stdout, bootstrap ? bootstrap : "localhost:9092");
        printf("; fi\n");
        if (plan->max_partitions < 0) {
                for (i = 0; i < plan->n_sources; i++) {
                        if (plan->sources[i].partitions > 0)
                                printf("%s=%d\n", plan->sources[i].var,
                                       plan->sources[i].partitions);
                        else
                                printf("%s=\"${%s:?the partition count of "
                                       "source topic %s}\"\n",
                                       plan->sources[i].var,
                                       plan->sources[i].var,
                                       plan->sources[i].topic);
                }
                printf("PARTITIONS_MAX=\"$%s\"\n", plan->sources[0].var);
                for (i = 1; i < plan->n_sources; i++)
                        printf("if [ \"$%s\" -gt \"$PARTITIONS_MAX\" ]; then "
                               "PARTITIONS_MAX=\"$%s\"; fi\n",
                               plan->sources[i].var, plan->sources[i].var);
        }
        for (i = 0; i < plan->n_specs; i++) {
                const struct spec *s = &plan->specs[i];

                printf("\n# %s: %s\n", s->comment, s->detail);
                printf("kafka-topics.sh --bootstrap-server \"$BOOTSTRAP\" "
                       "--create --if-not-exists \\\n  --topic ");
                sh_quote(stdout, s->name);
                if (s->partitions_var)
                        printf(" --partitions %s", s->partitions_var);
                else
                        printf(" --partitions %d",
                               s->partitions > 0 ? s->partitions
                                                 : plan->max_partitions);
                if (replication > 0)
                        printf(" --replication-factor %d", replication);
                for (c = 0; c < s->n_configs; c++)
                        printf(" \\\n  --config %s=%s", s->configs[c].name,
                               s->configs[c].value);
                printf("\n");
        }
}

/* ---- the cluster ------------------------------------------------------------
 */

static void topics_log(const rd_kafka_t *rk, int level, const char *fac,
                       const char *buf)
{
        (void)rk;
        /* errors only: connection chatter is summed up by our own message */
        if (level <= 3)
                fprintf(stderr, "veil topics: kafka: %s: %s\n", fac, buf);
}

static rd_kafka_t *connect_cluster(const struct veil_config *config,
                                   const char *bootstrap, char *errstr,
                                   size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];
        rd_kafka_t *rk;

        if (veil_kafka_conf_apply(conf, config, bootstrap, errstr,
                                  errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        if (rd_kafka_conf_set(conf, "log.connection.close", "false", err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "%s", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, topics_log);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "cannot create a Kafka client: %s", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        return rk;
}

/* Partition counts of the sources from one metadata request for all
 * topics (asking for a topic by name could auto-create it). */
static int query_partitions(rd_kafka_t *rk, struct plan *plan,
                            int default_partitions, int timeout_ms,
                            char *errstr, size_t errstr_size)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;
        size_t i;
        int t;

        err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
        if (err)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "cannot read the cluster's metadata: %s",
                                 rd_kafka_err2str(err));
        for (i = 0; i < plan->n_sources; i++) {
                plan->sources[i].partitions = -1;
                for (t = 0; t < md->topic_cnt; t++)
                        if (!strcmp(md->topics[t].topic,
                                    plan->sources[i].topic) &&
                            !md->topics[t].err)
                                plan->sources[i].partitions =
                                        md->topics[t].partition_cnt;
                if (plan->sources[i].partitions < 0 && default_partitions > 0)
                        plan->sources[i].partitions = default_partitions;
        }
        rd_kafka_metadata_destroy(md);
        return 0;
}

/* Waits for the result event of an admin request. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q,
                                    rd_kafka_event_type_t type, int timeout_ms)
{
        rd_kafka_event_t *ev;
        int64_t end = veil_now_ms() + timeout_ms;

        while (veil_now_ms() < end) {
                ev = rd_kafka_queue_poll(q, 200);
                if (!ev)
                        continue;
                if (rd_kafka_event_type(ev) == type)
                        return ev;
                rd_kafka_event_destroy(ev);
        }
        return NULL;
}

/* Compares an existing topic's settings with the plan's; prints what
 * differs. Returns the number of differences (-1: could not tell). */
static int check_existing(rd_kafka_t *rk, const struct spec *s, int timeout_ms)
{
        rd_kafka_ConfigResource_t *res =
                rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, s->name);
        rd_kafka_queue_t *q           = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(
                rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        const rd_kafka_ConfigResource_t **rres;
        const rd_kafka_ConfigEntry_t **entries;
        rd_kafka_event_t *ev;
        size_t n_res, n_ent, e;
        char alter[512];
        int c, diff = -1;

        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, NULL, 0);
        rd_kafka_DescribeConfigs(rk, &res, 1, opts, q);
        ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT,
                        timeout_ms + 1000);
        if (!ev || rd_kafka_event_error(ev))
                goto out;
        rres = rd_kafka_DescribeConfigs_result_resources(
                rd_kafka_event_DescribeConfigs_result(ev), &n_res);
        if (n_res != 1 || rd_kafka_ConfigResource_error(rres[0]))
                goto out;
        entries  = rd_kafka_ConfigResource_configs(rres[0], &n_ent);
        diff     = 0;
        alter[0] = 0;
        for (c = 0; c < s->n_configs; c++)
                for (e = 0; e < n_ent; e++) {
                        const char *have =
                                rd_kafka_ConfigEntry_value(entries[e]);

                        if (strcmp(rd_kafka_ConfigEntry_name(entries[e]),
                                   s->configs[c].name))
                                continue;
                        if (!have || strcmp(have, s->configs[c].value)) {
                                printf("%s: %s is %s (want %s)\n", s->name,
                                       s->configs[c].name,
                                       have ? have : "unset",
                                       s->configs[c].value);
                                snprintf(alter + strlen(alter),
                                         sizeof(alter) - strlen(alter),
                                         "%s%s=%s", diff ? "," : "",
                                         s->configs[c].name,
                                         s->configs[c].value);
                                diff++;
                        }
                }
        if (diff)
                printf("%s: to fix: kafka-configs.sh --bootstrap-server "
                       "\"$BOOTSTRAP\" --alter --entity-type topics "
                       "--entity-name %s --add-config %s\n",
                       s->name, s->name, alter);
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(res);
        return diff;
}

/* Creates every topic; prints one line per topic. Returns 0, or 1 when
 * any topic failed or exists with other settings. */
static int apply_plan(rd_kafka_t *rk, const struct plan *plan,
                      const char *bootstrap, int replication, int timeout_ms)
{
        rd_kafka_NewTopic_t **nt = veil_calloc(plan->n_specs, sizeof(*nt));
        rd_kafka_queue_t *q      = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opts =
                rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        const rd_kafka_topic_result_t **res;
        rd_kafka_event_t *ev = NULL;
        char err[512];
        size_t i, n_res, k;
        int c, status = 0, d, parts;

        rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, err,
                                                    sizeof(err));
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, err,
                                                  sizeof(err));
        for (i = 0; i < plan->n_specs; i++) {
                const struct spec *s = &plan->specs[i];

                parts = s->partitions > 0 ? s->partitions
                                          : plan->max_partitions;
                nt[i] = rd_kafka_NewTopic_new(
                        s->name, parts, replication > 0 ? replication : -1, err,
                        sizeof(err));
                if (!nt[i]) {
                        fprintf(stderr, "veil topics: %s: %s\n", s->name, err);
                        status = 1;
                        goto out;
                }
                for (c = 0; c < s->n_configs; c++)
                        rd_kafka_NewTopic_set_config(nt[i], s->configs[c].name,
                                                     s->configs[c].value);
        }
        rd_kafka_CreateTopics(rk, nt, plan->n_specs, opts, q);
        ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT,
                        timeout_ms + 2000);
        if (!ev) {
                fprintf(stderr,
                        "veil topics: no answer to CreateTopics from "
                        "%s\n",
                        bootstrap);
                status = 2;
                goto out;
        }
        if (rd_kafka_event_error(ev)) {
                fprintf(stderr, "veil topics: CreateTopics failed: %s\n",
                        rd_kafka_event_error_string(ev));
                status = 2;
                goto out;
        }
        res = rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(ev), &n_res);
        for (i = 0; i < plan->n_specs; i++) {
                const struct spec *s = &plan->specs[i];

                for (k = 0; k < n_res; k++)
                        if (!strcmp(rd_kafka_topic_result_name(res[k]),
                                    s->name))
                                break;
                if (k == n_res) {
                        printf("%s: no result\n", s->name);
                        status = 1;
                        continue;
                }
                switch (rd_kafka_topic_result_error(res[k])) {
                case RD_KAFKA_RESP_ERR_NO_ERROR:
                        parts = s->partitions > 0 ? s->partitions
                                                  : plan->max_partitions;
                        printf("%s: created (%d partition%s)\n", s->name, parts,
                               parts == 1 ? "" : "s");
                        break;
                case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
                        printf("%s: already exists\n", s->name);
                        d = check_existing(rk, s, timeout_ms);
                        if (d < 0)
                                printf("%s: could not read its settings\n",
                                       s->name);
                        if (d != 0)
                                status = 1;
                        break;
                default:
                        printf("%s: failed: %s\n", s->name,
                               rd_kafka_topic_result_error_string(res[k])
                                       ? rd_kafka_topic_result_error_string(
                                                 res[k])
                                       : rd_kafka_err2str(
                                                 rd_kafka_topic_result_error(
                                                         res[k])));
                        status = 1;
                }
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        for (i = 0; i < plan->n_specs; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        return status;
}

int veil_cmd_topics(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"bootstrap", required_argument, NULL, 'b'},
                {"apply", no_argument, NULL, 'a'},
                {"partitions", required_argument, NULL, 'p'},
                {"replication-factor", required_argument, NULL, 'r'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts copts = {.skip_key         = true,
                                         .skip_kafka_check = true};
        const char *path = NULL, *bootstrap = NULL;
        struct veil_config *config = NULL;
        struct plan plan           = {0};
        bool apply                 = false;
        struct veil_cmd_opts o     = {.timeout_s = 10, .timeout_max = 3600};
        int c, rc, partitions = 0, replication = 0, timeout_s;
        int status        = VEIL_EXIT_USAGE;
        rd_kafka_t *rk    = NULL;
        char errstr[1024] = "";
        size_t i;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'b':
                        bootstrap = optarg;
                        break;
                case 'a':
                        apply = true;
                        break;
                case 'p':
                        if (veil_cmd_int_arg(optarg, 1, 100000, &partitions))
                                return veil_cmd_usage_error(
                                        &help, "--partitions: a count from 1 "
                                               "to 100000");
                        break;
                case 'r':
                        if (veil_cmd_int_arg(optarg, 1, 32767, &replication))
                                return veil_cmd_usage_error(
                                        &help, "--replication-factor: a "
                                               "count from 1");
                        break;
                default:
                        if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >=
                            0)
                                return rc;
                }
        }
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, false)))
                return rc;
        path      = o.path;
        timeout_s = o.timeout_s;

        config = veil_cmd_load_config(&help, path, &copts);
        if (!config) {
                goto out;
        }
        plan_build(&plan, config);
        if (!plan.n_specs) {
                fprintf(stderr, "veil topics: %s names no topics\n", path);
                goto out;
        }
        if (!apply && !bootstrap) {
                /* No cluster: --partitions, or the variables. */
                for (i = 0; i < plan.n_sources; i++)
                        plan.sources[i].partitions =
                                partitions ? partitions : -1;
                plan_partitions(&plan);
                print_script(&plan, config, config_bootstrap(config),
                             replication);
                status = VEIL_EXIT_OK;
                goto out;
        }

        rk = connect_cluster(config, bootstrap, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil topics: %s\n", errstr);
                goto out;
        }
        if (!bootstrap)
                bootstrap = config_bootstrap(config);
        if (query_partitions(rk, &plan, partitions, timeout_s * 1000, errstr,
                             sizeof(errstr))) {
                fprintf(stderr, "veil topics: %s at %s\n", errstr,
                        bootstrap ? bootstrap : "(no bootstrap.servers)");
                goto out;
        }
        for (i = 0; i < plan.n_sources; i++)
                if (plan.sources[i].partitions < 0 && apply) {
                        fprintf(stderr,
                                "veil topics: source topic %s does not exist "
                                "at %s: create it first, or pass "
                                "--partitions N\n",
                                plan.sources[i].topic, bootstrap);
                        status = VEIL_EXIT_GAPS;
                        goto out;
                }
        plan_partitions(&plan);
        if (!apply) {
                print_script(&plan, config, bootstrap, replication);
                status = VEIL_EXIT_OK;
                goto out;
        }
        status =
                apply_plan(rk, &plan, bootstrap, replication, timeout_s * 1000);
out:
        if (rk)
                rd_kafka_destroy(rk);
        plan_destroy(&plan);
        veil_config_destroy(config);
        return status;
}
