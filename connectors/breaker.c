/* breaker.c - the purposes' circuit breaker (breaker.h): the control
 * record's codec, and the state each worker keeps of it — read to the end
 * at start, then followed by a thread of its own so that the pipelines only
 * read an atomic generation per record. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "log.h"
#include "reader.h"
#include "util.h"
#include "veil.h"

#define KEY_PREFIX "halt/"
#define EVENTS_MAX 64

/* ---- the record ------------------------------------------------------- */

void veil_breaker_encode(const struct veil_breaker_state *s, char **keyp,
                         size_t *key_len, char **valuep, size_t *value_len)
{
        json_t *o;
        char *text;

        *key_len = strlen(KEY_PREFIX) + strlen(s->purpose);
        *keyp    = veil_malloc(*key_len + 1);
        snprintf(*keyp, *key_len + 1, "%s%s", KEY_PREFIX, s->purpose);
        o    = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "v", 1,
                         "kind", "halt", "purpose", s->purpose, "state",
                      s->halted ? "halted" : "resumed", "reason", s->reason,
                         "by", s->by, "at", (json_int_t)s->at_ms, "source",
                         s->source);
        text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        if (!text)
                abort(); /* out of memory: like veil_malloc */
        *value_len = strlen(text);
        *valuep    = text;
}

static bool copy_str(json_t *o, const char *name, char *dst, size_t size,
                     bool required)
{
        json_t *v = json_object_get(o, name);

        if (!v) {
                dst[0] = '\0';
                return !required;
        }
        if (!json_is_string(v) || json_string_length(v) >= size)
                return false;
        memcpy(dst, json_string_value(v), json_string_length(v) + 1);
        return true;
}

int veil_breaker_decode(const void *key, size_t key_len, const void *value,
                        size_t value_len, struct veil_breaker_state *s,
                        char *errstr, size_t errstr_size)
{
        size_t plen = strlen(KEY_PREFIX);
        json_error_t jerr;
        json_t *o, *v;
        const char *state;
        size_t i;
        int rc = 0;

        memset(s, 0, sizeof(*s));
        if (!key || key_len <= plen || memcmp(key, KEY_PREFIX, plen))
                return veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                 "not a halt record");
        if (key_len - plen >= sizeof(s->purpose) ||
            memchr((const char *)key + plen, '\0', key_len - plen))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "control record key: bad purpose name");
        if (!value)
                /* A tombstone of the key: the purpose is open. */
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "control record without a value");
        memcpy(s->purpose, (const char *)key + plen, key_len - plen);
        /* A name the config could hold: UTF-8, no control characters
         * (it goes into logs, metric labels and records again). */
        for (i = 0; s->purpose[i]; i++)
                if ((unsigned char)s->purpose[i] < 0x20 ||
                    s->purpose[i] == 0x7f)
                        break;
        if (s->purpose[i] || !(v = json_string(s->purpose))) {
                s->purpose[0] = '\0';
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "control record key: bad purpose name");
        }
        json_decref(v);
        o = json_loadb(value, value_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(o)) {
                json_decref(o);
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "control record for %s: not a JSON object",
                                 s->purpose);
        }
        v     = json_object_get(o, "state");
        state = json_is_string(v) ? json_string_value(v) : "";
        if (!strcmp(state, "halted"))
                s->halted = true;
        else if (strcmp(state, "resumed"))
                rc = VEIL_EINVAL;
        v = json_object_get(o, "at");
        if (v && json_is_integer(v))
                s->at_ms = (int64_t)json_integer_value(v);
        else if (v)
                rc = VEIL_EINVAL;
        if (!copy_str(o, "reason", s->reason, sizeof(s->reason), false) ||
            !copy_str(o, "by", s->by, sizeof(s->by), false) ||
            !copy_str(o, "source", s->source, sizeof(s->source), false))
                rc = VEIL_EINVAL;
        v = json_object_get(o, "purpose");
        if (v &&
            (!json_is_string(v) || strcmp(json_string_value(v), s->purpose)))
                rc = VEIL_EINVAL; /* the value speaks of another purpose */
        json_decref(o);
        if (rc)
                return veil_errf(errstr, errstr_size, rc,
                                 "control record for %s: bad state, reason, "
                                 "by, at, source or purpose",
                                 s->purpose);
        return 0;
}

bool veil_breaker_needed(const struct veil_config *config)
{
        size_t i;

        for (i = 0; i < config->policy.n_purposes; i++)
                if (config->policy.purposes[i].guard.enabled &&
                    config->policy.purposes[i].guard.on_leak == VEIL_LEAK_HALT)
                        return true;
        for (i = 0; i < config->alerts.n; i++)
                if (config->alerts.v[i].halt)
                        return true;
        return false;
}

/* ---- the state ---------------------------------------------------------- */

struct entry {
        char name[VEIL_BREAKER_NAME_MAX];
        bool halted;
};

struct veil_breaker {
        const struct veil_config *config;
        struct veil_metric *gauge;
        pthread_mutex_t lock;
        atomic_uint gen;
        struct entry *v;
        size_t n;
        char self[VEIL_BREAKER_NAME_MAX]; /* GROUP-INSTANCE */
        struct veil_breaker_state events[EVENTS_MAX];
        size_t n_events;

        rd_kafka_t *rk; /* assign-only, read_committed */
        pthread_t thread;
        bool started;
        atomic_bool stop;
};

static void gauge_set(struct veil_breaker *b, const char *purpose, bool halted)
{
        const char *v[1];

        if (!b->gauge)
                return;
        v[0] = purpose;
        veil_series_set(veil_metric_series(b->gauge, v), halted ? 1 : 0);
}

/* Under the lock. */
static struct entry *entry_of(struct veil_breaker *b, const char *purpose,
                              bool add)
{
        size_t i;

        for (i = 0; i < b->n; i++)
                if (!strcmp(b->v[i].name, purpose))
                        return &b->v[i];
        if (!add)
                return NULL;
        b->v = veil_realloc(b->v, (b->n + 1) * sizeof(*b->v));
        memset(&b->v[b->n], 0, sizeof(b->v[b->n]));
        snprintf(b->v[b->n].name, sizeof(b->v[b->n].name), "%s", purpose);
        return &b->v[b->n++];
}

/* Did this worker write it (by "GROUP-INSTANCE" or "GROUP-INSTANCE-n")? */
static bool mine(const struct veil_breaker *b, const char *by)
{
        size_t n = strlen(b->self);

        return !strncmp(by, b->self, n) && (by[n] == '\0' || by[n] == '-');
}

/* A state becomes this worker's view; `event`: queue it for the audit when
 * it changes something and another wrote it (our own trip was audited in
 * the transaction that wrote it). */
static void apply(struct veil_breaker *b, const struct veil_breaker_state *s,
                  bool event)
{
        struct entry *e;
        bool changed;

        pthread_mutex_lock(&b->lock);
        e         = entry_of(b, s->purpose, true);
        changed   = e->halted != s->halted;
        e->halted = s->halted;
        if (changed) {
                atomic_fetch_add(&b->gen, 1);
                if (event && !mine(b, s->by) && b->n_events < EVENTS_MAX)
                        b->events[b->n_events++] = *s;
        }
        pthread_mutex_unlock(&b->lock);
        if (!changed)
                return;
        gauge_set(b, s->purpose, s->halted);
        veil_log(s->halted ? "warn" : "info",
                 s->halted ? "purpose-halted" : "purpose-resumed",
                 "purpose %s %s (%s, by %s%s%s)", s->purpose,
                 s->halted ? "halted: nothing is routed to it until "
                             "`veil guard resume`"
                           : "resumed",
                 s->reason[0] ? s->reason : "-", s->by[0] ? s->by : "-",
                 s->source[0] ? ", at " : "", s->source);
}

static void consume(struct veil_breaker *b, const rd_kafka_message_t *rkm,
                    bool event)
{
        struct veil_breaker_state s;
        char err[256];
        int rc;

        rc = veil_breaker_decode(rkm->key, rkm->key_len, rkm->payload, rkm->len,
                                 &s, err, sizeof(err));
        if (rc == VEIL_ENOTFOUND)
                return;
        if (rc) {
                /* Fail closed would halt on garbage someone wrote; a bad
                 * record is ignored and said, the last good one stands. */
                veil_log("warn", "control",
                         "%s at %s/%" PRId32 "/%" PRId64 " (ignored)", err,
                         rd_kafka_topic_name(rkm->rkt), rkm->partition,
                         rkm->offset);
                return;
        }
        apply(b, &s, event);
}

static int initial(void *opaque, const rd_kafka_message_t *rkm)
{
        consume(opaque, rkm, false);
        return 0;
}

int veil_breaker_poll(struct veil_breaker *b, int timeout_ms, char *errstr,
                      size_t errstr_size)
{
        rd_kafka_message_t *rkm;

        if (!b || !b->rk)
                return 0;
        while ((rkm = rd_kafka_consumer_poll(b->rk, timeout_ms))) {
                if (!rkm->err)
                        consume(b, rkm, true);
                else if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        veil_log("warn", "control", "%s",
                                 rd_kafka_message_errstr(rkm));
                rd_kafka_message_destroy(rkm);
                timeout_ms = 0;
        }
        (void)errstr;
        (void)errstr_size;
        return 0;
}

static void *follow(void *arg)
{
        struct veil_breaker *b = arg;

        while (!atomic_load(&b->stop))
                veil_breaker_poll(b, 200, NULL, 0);
        return NULL;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                veil_log("warn", "control", "%s: %s", fac, buf);
}

struct veil_breaker *veil_breaker_new(const struct veil_config *config,
                                      struct veil_metric *gauge, char *errstr,
                                      size_t errstr_size)
{
        struct veil_breaker *b                = veil_calloc(1, sizeof(*b));
        struct veil_reader_part *parts        = NULL;
        rd_kafka_topic_partition_list_t *list = NULL;
        const char *topic                     = config->topics.control;
        size_t n                              = 0, i;
        char err[512];
        int rc;

        b->config = config;
        b->gauge  = gauge;
        snprintf(b->self, sizeof(b->self), "%s-%s", config->group,
                 config->instance);
        pthread_mutex_init(&b->lock, NULL);
        atomic_init(&b->gen, 0);
        atomic_init(&b->stop, false);
        for (i = 0; i < config->policy.n_purposes; i++) {
                entry_of(b, config->policy.purposes[i].name, true);
                gauge_set(b, config->policy.purposes[i].name, false);
        }
        if (!topic)
                return b;
        b->rk = veil_reader_consumer(config, "control", quiet_log, errstr,
                                     errstr_size);
        if (!b->rk)
                goto err;
        rc = veil_reader_ends(b->rk, topic, &parts, &n, 10000, err,
                              sizeof(err));
        if (rc == VEIL_ENOTFOUND) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "control topic %s does not exist: create it first "
                          "(veil topics -c FILE --apply)",
                          topic);
                goto err;
        }
        if (!rc)
                rc = veil_reader_run(b->rk, topic, parts, n, 60000, initial, b,
                                     err, sizeof(err));
        if (rc) {
                veil_errf(errstr, errstr_size, rc, "control topic %s: %s",
                          topic, err);
                goto err;
        }
        /* Then follow it from where the first read ended. */
        list = rd_kafka_topic_partition_list_new((int)n);
        for (i = 0; i < n; i++)
                rd_kafka_topic_partition_list_add(list, topic,
                                                  parts[i].partition)
                        ->offset = parts[i].to;
        free(parts);
        parts = NULL;
        if (rd_kafka_assign(b->rk, list)) {
                veil_errf(errstr, errstr_size, VEIL_ENET,
                          "control topic %s: assign failed", topic);
                goto err;
        }
        rd_kafka_topic_partition_list_destroy(list);
        list = NULL;
        if (pthread_create(&b->thread, NULL, follow, b)) {
                veil_errf(errstr, errstr_size, VEIL_EIO,
                          "starting the control topic's reader failed");
                goto err;
        }
        b->started = true;
        return b;
err:
        if (list)
                rd_kafka_topic_partition_list_destroy(list);
        free(parts);
        veil_breaker_destroy(b);
        return NULL;
}

void veil_breaker_destroy(struct veil_breaker *b)
{
        if (!b)
                return;
        atomic_store(&b->stop, true);
        if (b->started)
                pthread_join(b->thread, NULL);
        if (b->rk) {
                rd_kafka_consumer_close(b->rk);
                rd_kafka_destroy(b->rk);
        }
        pthread_mutex_destroy(&b->lock);
        free(b->v);
        free(b);
}

unsigned veil_breaker_gen(const struct veil_breaker *b)
{
        return b ? atomic_load(&((struct veil_breaker *)b)->gen) : 0;
}

bool veil_breaker_halted(struct veil_breaker *b, const char *purpose)
{
        struct entry *e;
        bool halted;

        if (!b)
                return false;
        pthread_mutex_lock(&b->lock);
        e      = entry_of(b, purpose, false);
        halted = e && e->halted;
        pthread_mutex_unlock(&b->lock);
        return halted;
}

void veil_breaker_set(struct veil_breaker *b,
                      const struct veil_breaker_state *s)
{
        if (b)
                apply(b, s, false);
}

size_t veil_breaker_take(struct veil_breaker *b, struct veil_breaker_state *out,
                         size_t max)
{
        size_t n;

        if (!b)
                return 0;
        pthread_mutex_lock(&b->lock);
        n = b->n_events < max ? b->n_events : max;
        memcpy(out, b->events, n * sizeof(*out));
        memmove(b->events, b->events + n,
                (b->n_events - n) * sizeof(*b->events));
        b->n_events -= n;
        pthread_mutex_unlock(&b->lock);
        return n;
}
