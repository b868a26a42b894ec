/* audit.c - the audit room: chain helpers shared with `audit verify`, and
 * the one emitter of audit events (per record from a template, per batch
 * and for retention with jansson), chained per source partition. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "policy.h"
#include "reader.h"
#include "util.h"
#include "veil.h"
#include "wire.h"

int veil_audit_hmac_init(struct veil_hmac *h, const struct veil_config *config,
                         char *errstr, size_t errstr_size)
{
        if (!config->keys.key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit: no master key loaded");
        return veil_hmac_init_derived(h, config->keys.key, config->keys.key_len,
                                      "veil:audit", errstr, errstr_size);
}

int veil_audit_hmac_init_key(struct veil_hmac *h, const struct veil_key *key,
                             char *errstr, size_t errstr_size)
{
        if (!key || !key->key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit: key '%s' is not loaded",
                                 key ? key->id : "");
        return veil_hmac_init_derived(h, key->key, key->len, "veil:audit",
                                      errstr, errstr_size);
}

/* "KEY_ID:HEX" of a MAC into out, as snprintf would write it (cut to
 * size), without formatting in the common case. */
static void mac_text(const char *key_id, const unsigned char *mac, char *out,
                     size_t size)
{
        char mhex[2 * VEIL_SHA256_LEN + 1];
        size_t kl;

        veil_hex_encode(mac, VEIL_SHA256_LEN, mhex);
        key_id = key_id ? key_id : "";
        kl     = strlen(key_id);
        if (kl + 1 + 2 * VEIL_SHA256_LEN < size) {
                memcpy(out, key_id, kl);
                out[kl] = ':';
                memcpy(out + kl + 1, mhex, sizeof(mhex));
        } else {
                snprintf(out, size, "%s:%s", key_id, mhex);
        }
}

void veil_audit_mac(const struct veil_hmac *h, const char *key_id,
                    const void *event, size_t len, char *out, size_t size)
{
        unsigned char mac[VEIL_SHA256_LEN];

        veil_hmac_sha256(h, event, len, mac);
        mac_text(key_id, mac, out, size);
}

void veil_audit_digest(const void *event, size_t len, char out[65])
{
        unsigned char d[VEIL_SHA256_LEN];

        veil_sha256(event, len, d);
        veil_hex_encode(d, sizeof(d), out);
}

int32_t veil_audit_partition(int32_t partition, int32_t n)
{
        return n > 0 && partition >= 0 ? partition % n : 0;
}

/* ---- the emitter --------------------------------------------------------- */

/* One chain: the events of one source partition (or the retention chain). */
struct chain {
        char *source; /* "topic/partition": the chain's id and message key */
        char *topic;
        int32_t partition;
        int32_t audit_partition; /* RD_KAFKA_PARTITION_UA: by key */
        char prev[65];           /* committed head */
        char pending[65];        /* head inside the open transaction */
        /* Why the chain starts a segment (its committed head is zeros):
         * the reason the next event carries. */
        const char *segment_reason;
        /* The per-record event's opening, up to the first offset. */
        char *prefix;
        size_t prefix_len;
        struct chain *next;
};

/* Why a field was dropped, as audit events name it: "policy" when the
 * purpose's licence says drop for its label (its own or inherited), else
 * the fail-closed case (DESIGN.md §4). */
static const char *const drop_reasons[] = {
        VEIL_AUDIT_DROP_POLICY, VEIL_AUDIT_DROP_UNCLASSIFIED,
        VEIL_AUDIT_DROP_UNLICENSED, VEIL_AUDIT_DROP_UNDEFINED};
#define N_DROP_REASONS VEIL_ARRAY_SIZE(drop_reasons)

static size_t drop_reason(enum veil_plan_reason why)
{
        switch (why) {
        case VEIL_PLAN_UNCLASSIFIED:
                return 1;
        case VEIL_PLAN_UNLICENSED:
                return 2;
        case VEIL_PLAN_UNDEFINED:
                return 3;
        case VEIL_PLAN_LICENSED:
        case VEIL_PLAN_INHERITED:
        default:
                return 0;
        }
}

/* What a plan does for one (route purpose, schema id), serialised once:
 * `"fields":{…},"license":…,"policy":…,"purpose":…,"schema_in":[…],
 * "schema_out":[…],"topic":…` for per-record events, and the field map
 * for batch events. Built on first sight, while the plan is certainly
 * alive (the plan cache may evict it later). */
struct info {
        const struct veil_route_purpose *rp;
        int schema_in, schema_out;
        json_t *fields;               /* {path: transform} */
        json_t *dropped;              /* {path: why} of the dropped fields */
        size_t n_tx[VEIL_TX__COUNT];  /* fields per transform */
        size_t n_why[N_DROP_REASONS]; /* dropped fields per reason */
        char *frag;
        size_t frag_len;
        struct info *next;
};

/* What one batch did for one (source partition, purpose). */
struct acc {
        const struct veil_route *route;
        size_t purpose;
        int32_t partition;
        int64_t first, last;
        int64_t records, tombstones, expired;
        struct info **infos;
        int64_t *per_info; /* records through infos[i] */
        size_t n_infos, cap_infos;
};

struct veil_audit {
        const struct veil_config *config;
        rd_kafka_t *reader;
        int32_t n_partitions;
        veil_audit_produce_fn produce;
        void *opaque;
        struct veil_hmac mac;
        bool mac_ok;
        struct chain *chains;
        struct chain *last; /* the chain found last: records come in runs */
        struct chain retention;
        struct info *infos;
        struct info *none; /* per (route purpose) without plan: see info_for */
        struct acc *acc;
        size_t n_acc, cap_acc;
        struct veil_buf text; /* the event being built, reused */
        uint64_t pending_events, committed_events;
};

/* Events are written: an audit topic, and a level other than off. */
static bool audit_on(const struct veil_config *config)
{
        return config->topics.audit && config->audit_level != VEIL_AUDIT_OFF;
}

static void chain_free(struct chain *c)
{
        free(c->source);
        free(c->topic);
        free(c->prefix);
        free(c);
}

static void infos_free(struct veil_audit *a)
{
        while (a->infos) {
                struct info *in = a->infos;

                a->infos = in->next;
                json_decref(in->fields);
                json_decref(in->dropped);
                free(in->frag);
                free(in);
        }
}

struct veil_audit *veil_audit_new(const struct veil_config *config,
                                  const char *chain_id, rd_kafka_t *reader,
                                  int32_t n_partitions,
                                  veil_audit_produce_fn produce, void *opaque,
                                  char *errstr, size_t errstr_size)
{
        struct veil_audit *a = veil_calloc(1, sizeof(*a));

        a->config       = config;
        a->reader       = reader;
        a->n_partitions = n_partitions;
        a->produce      = produce;
        a->opaque       = opaque;
        veil_buf_init(&a->text, 0);
        if (asprintf(&a->retention.source, "retention/%s", chain_id) < 0)
                abort();
        a->retention.audit_partition = RD_KAFKA_PARTITION_UA;
        a->retention.segment_reason  = VEIL_AUDIT_SEGMENT_NEW;
        memcpy(a->retention.prev, VEIL_AUDIT_ZERO, 65);
        memcpy(a->retention.pending, VEIL_AUDIT_ZERO, 65);
        if (audit_on(config)) {
                if (veil_audit_hmac_init(&a->mac, config, errstr,
                                         errstr_size)) {
                        veil_audit_destroy(a);
                        return NULL;
                }
                a->mac_ok = true;
        }
        return a;
}

void veil_audit_destroy(struct veil_audit *a)
{
        size_t i;

        if (!a)
                return;
        while (a->chains) {
                struct chain *c = a->chains;

                a->chains = c->next;
                chain_free(c);
        }
        free(a->retention.source);
        infos_free(a);
        for (i = 0; i < a->cap_acc; i++) {
                free(a->acc[i].infos);
                free(a->acc[i].per_info);
        }
        free(a->acc);
        veil_buf_free(&a->text);
        if (a->mac_ok)
                veil_hmac_cleanse(&a->mac);
        free(a);
}

void veil_audit_set_config(struct veil_audit *a,
                           const struct veil_config *config)
{
        /* Summaries point into the old config's routes. */
        infos_free(a);
        a->n_acc  = 0;
        a->config = config;
}

/* ---- chains and their recovery ------------------------------------------ */

static struct chain *chain_find(struct veil_audit *a, const char *topic,
                                int32_t partition)
{
        struct chain *c = a->last;

        if (c && c->partition == partition && !strcmp(c->topic, topic))
                return c;
        for (c = a->chains; c; c = c->next)
                if (c->partition == partition && !strcmp(c->topic, topic))
                        return a->last = c;
        return NULL;
}

/* Forgets the chains of partitions this worker no longer owns: another
 * worker continues them, and if they come back their head is read again. */
void veil_audit_revoke(struct veil_audit *a,
                       const rd_kafka_topic_partition_list_t *list)
{
        struct chain **cp, *c;
        int i;

        for (i = 0; i < list->cnt; i++)
                for (cp = &a->chains; (c = *cp);) {
                        if (c->partition == list->elems[i].partition &&
                            !strcmp(c->topic, list->elems[i].topic)) {
                                *cp = c->next;
                                if (a->last == c)
                                        a->last = NULL;
                                chain_free(c);
                        } else {
                                cp = &c->next;
                        }
                }
}

struct recover_ctx {
        struct chain **want;
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
static void recover_partition(struct veil_audit *a, struct chain **want,
                              size_t n, int32_t ap)
{
        const char *topic = a->config->topics.audit;
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
        err = rd_kafka_query_watermark_offsets(a->reader, topic, ap, &lo, &hi,
                                               30000);
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
                if (veil_reader_run(a->reader, topic, &part, 1,
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

static struct chain *chain_new(struct veil_audit *a, const char *topic,
                               int32_t partition)
{
        struct chain *c = veil_calloc(1, sizeof(*c));
        json_t *t;
        char *ts;

        c->topic     = veil_strdup(topic);
        c->partition = partition;
        if (asprintf(&c->source, "%s/%" PRId32, topic, partition) < 0)
                abort();
        c->audit_partition = veil_audit_partition(partition, a->n_partitions);
        memcpy(c->prev, VEIL_AUDIT_ZERO, 65);
        memcpy(c->pending, VEIL_AUDIT_ZERO, 65);
        c->segment_reason = VEIL_AUDIT_SEGMENT_NEW;
        /* Topic names are restricted by Kafka, but escape them anyway. */
        t  = json_string(topic);
        ts = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;
        json_decref(t);
        if (!ts)
                abort();
        if (asprintf(&c->prefix,
                     "{\"v\":1,\"kind\":\"record\",\"chain\":\"%s/%" PRId32
                     "\",\"source\":{\"topic\":%s,\"partition\":%" PRId32
                     ",\"first\":",
                     topic, partition, ts, partition) < 0)
                abort();
        free(ts);
        c->prefix_len = strlen(c->prefix);
        c->next       = a->chains;
        a->chains     = c;
        return c;
}

void veil_audit_assign(struct veil_audit *a,
                       const rd_kafka_topic_partition_list_t *list)
{
        struct chain **want;
        size_t n = 0, i, k;
        int j;

        if (!audit_on(a->config) || !a->reader || list->cnt == 0)
                return;
        want = veil_calloc((size_t)list->cnt, sizeof(*want));
        for (j = 0; j < list->cnt; j++)
                if (!chain_find(a, list->elems[j].topic,
                                list->elems[j].partition))
                        want[n++] = chain_new(a, list->elems[j].topic,
                                              list->elems[j].partition);
        /* One backwards read per audit partition serves all its chains. */
        for (i = 0; i < n; i++) {
                struct chain **group;
                size_t m = 0;
                int32_t ap;

                if (!want[i])
                        continue;
                ap    = want[i]->audit_partition;
                group = veil_calloc(n, sizeof(*group));
                for (k = i; k < n; k++)
                        if (want[k] && want[k]->audit_partition == ap) {
                                group[m++] = want[k];
                                want[k]    = NULL;
                        }
                recover_partition(a, group, m, ap);
                free(group);
        }
        free(want);
}

static struct chain *chain_get(struct veil_audit *a, const char *topic,
                               int32_t partition)
{
        struct chain *c = chain_find(a, topic, partition);
        rd_kafka_topic_partition_list_t *list;

        if (c)
                return c;
        /* Not from an assignment (cannot happen): recover it now. */
        list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, topic, partition);
        veil_audit_assign(a, list);
        rd_kafka_topic_partition_list_destroy(list);
        return chain_find(a, topic, partition);
}

/* ---- emitting ------------------------------------------------------------ */

/* Chains, MACs and produces the event in a->text (a complete JSON
 * object): the digest becomes the chain's pending head. */
static int emit(struct veil_audit *a, struct chain *c, char *errstr,
                size_t errstr_size)
{
        unsigned char d[VEIL_SHA256_LEN], m[VEIL_SHA256_LEN];
        char mac[VEIL_AUDIT_MAC_MAX];
        rd_kafka_headers_t *hdrs;
        int rc;

        /* The chain digest and the MAC of the same bytes in one pass: the
         * values veil_audit_digest and veil_audit_mac give. */
        veil_sha256_hmac_pair(&a->mac, a->text.data, a->text.len, d, m);
        veil_hex_encode(d, sizeof(d), c->pending);
        mac_text(a->config->keys.key_id, m, mac, sizeof(mac));
        hdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(hdrs, VEIL_H_MAC, -1, mac, -1);
        rc = a->produce(a->opaque, a->config->topics.audit, c->audit_partition,
                        c->source, strlen(c->source), a->text.data, a->text.len,
                        hdrs, errstr, errstr_size);
        if (!rc)
                a->pending_events++;
        return rc;
}

/* The first event after a committed zero head opens a segment and says
 * why; verify accepts a zero `prev` only with it. */
static const char *segment_of(const struct chain *c)
{
        if (strcmp(c->pending, VEIL_AUDIT_ZERO))
                return NULL;
        return c->segment_reason ? c->segment_reason : VEIL_AUDIT_SEGMENT_NEW;
}

/* A jansson event (batch and retention events: a few per transaction)
 * completed with the chain's fields, serialised, emitted. Takes ev. */
static int emit_json(struct veil_audit *a, struct chain *c, json_t *ev,
                     char *errstr, size_t errstr_size)
{
        const char *segment = segment_of(c);
        char *text;

        json_object_set_new(ev, "v", json_integer(1));
        json_object_set_new(ev, "chain", json_string(c->source));
        json_object_set_new(ev, "policy",
                            json_string(a->config->policy.digest));
        json_object_set_new(ev, "prev", json_string(c->pending));
        json_object_set_new(ev, "ts", json_integer(veil_now_ms()));
        if (segment) {
                json_object_set_new(ev, "segment_start", json_true());
                json_object_set_new(ev, "segment_reason", json_string(segment));
        }
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(ev);
        if (!text)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "serializing an audit event failed");
        a->text.len = 0;
        if (!veil_buf_append(&a->text, text, strlen(text))) {
                free(text);
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "audit event too large");
        }
        free(text);
        return emit(a, c, errstr, errstr_size);
}

int veil_audit_retention(struct veil_audit *a, json_t *ev, char *errstr,
                         size_t errstr_size)
{
        if (!audit_on(a->config)) {
                json_decref(ev);
                return 0;
        }
        if (!ev)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "building an audit event failed");
        return emit_json(a, &a->retention, ev, errstr, errstr_size);
}

static struct info *info_for(struct veil_audit *a,
                             const struct veil_route_purpose *rp,
                             const struct veil_plan *plan, int schema_in)
{
        const struct veil_purpose *pu = rp->ref;
        const struct veil_plan_field *f;
        struct info *in;
        json_t *o;
        char *text;
        size_t n = 0, i;

        for (in = a->infos; in; in = in->next)
                if (in->rp == rp && in->schema_in == schema_in)
                        return in;
        in            = veil_calloc(1, sizeof(*in));
        in->rp        = rp;
        in->schema_in = schema_in;
        in->fields    = json_object();
        in->dropped   = json_object();
        if (plan) {
                in->schema_out = veil_plan_output_id(plan);
                f              = veil_plan_fields(plan, &n);
                for (i = 0; i < n; i++) {
                        json_object_set_new(in->fields, f[i].path,
                                            json_string(veil_tx_name(f[i].tx)));
                        if ((unsigned)f[i].tx < VEIL_TX__COUNT)
                                in->n_tx[f[i].tx]++;
                        if (f[i].tx == VEIL_TX_DROP) {
                                size_t w = drop_reason(f[i].reason);

                                in->n_why[w]++;
                                json_object_set_new(
                                        in->dropped, f[i].path,
                                        json_string(drop_reasons[w]));
                        }
                }
        }
        o = json_pack(
                "{s:O, s:s, s:s, s:s, s:[i], s:[i], s:s}", "fields", in->fields,
                "license", pu->license_id ? pu->license_id : "", "policy",
                a->config->policy.digest, "purpose", rp->purpose, "schema_in",
                schema_in, "schema_out", in->schema_out, "topic", rp->topic);
        /* Only when something was dropped: most events stay as short as
         * before, and readers of older events see no difference. */
        if (o && json_object_size(in->dropped))
                json_object_set(o, "dropped", in->dropped);
        if (o && !plan) { /* no plan: no schema ids to state */
                json_object_set_new(o, "schema_in", json_array());
                json_object_set_new(o, "schema_out", json_array());
        }
        text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        if (!text)
                abort();
        /* Without its braces: spliced into each event. */
        in->frag_len = strlen(text) - 2;
        in->frag     = veil_strndup(text + 1, in->frag_len);
        free(text);
        in->next = a->infos;
        a->infos = in;
        return in;
}

/* v in decimal, as "%" PRId64 writes it (five per event: no printf). */
static bool put_i64(struct veil_buf *b, int64_t v)
{
        char tmp[24];
        char *e = tmp + sizeof(tmp), *q = e;
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

        do {
                *--q = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                *--q = '-';
        return veil_buf_append(b, q, (size_t)(e - q));
}

#define PUT_LIT(b, s) veil_buf_append((b), (s), sizeof(s) - 1)

/* One record's event, from the chain's prefix and the plan's fragment
 * into the reused buffer: no DOM, no allocation. */
static int record_event(struct veil_audit *a, struct chain *c,
                        const struct info *in, int64_t offset, bool skip,
                        bool tombstone, char *errstr, size_t errstr_size)
{
        struct veil_buf *b  = &a->text;
        const char *segment = segment_of(c);
        bool ok;

        b->len = 0;
        ok     = veil_buf_append(b, c->prefix, c->prefix_len) &&
             put_i64(b, offset) && PUT_LIT(b, ",\"last\":") &&
             put_i64(b, offset) && PUT_LIT(b, "},") &&
             veil_buf_append(b, in->frag, in->frag_len) &&
             PUT_LIT(b, ",\"records\":") && put_i64(b, !skip && !tombstone) &&
             PUT_LIT(b, ",\"tombstones\":") && put_i64(b, !skip && tombstone) &&
             PUT_LIT(b, ",\"expired\":") && put_i64(b, skip) &&
             PUT_LIT(b, ",\"prev\":\"") && veil_buf_append(b, c->pending, 64) &&
             PUT_LIT(b, "\",\"ts\":") && put_i64(b, veil_now_ms());
        if (ok && segment)
                ok = PUT_LIT(b,
                             ",\"segment_start\":true,\"segment_reason\":\"") &&
                     veil_buf_append(b, segment, strlen(segment)) &&
                     PUT_LIT(b, "\"");
        if (!ok || !PUT_LIT(b, "}"))
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "building an audit event failed");
        return emit(a, c, errstr, errstr_size);
}

static struct acc *acc_get(struct veil_audit *a, const struct veil_route *route,
                           size_t purpose, int32_t partition, int64_t offset)
{
        struct acc *x;
        size_t i;

        for (i = 0; i < a->n_acc; i++) {
                x = &a->acc[i];
                if (x->route == route && x->purpose == purpose &&
                    x->partition == partition) {
                        if (offset < x->first)
                                x->first = offset;
                        if (offset > x->last)
                                x->last = offset;
                        return x;
                }
        }
        if (a->n_acc == a->cap_acc) {
                a->cap_acc = a->cap_acc ? 2 * a->cap_acc : 8;
                a->acc     = veil_realloc(a->acc, a->cap_acc * sizeof(*a->acc));
                memset(a->acc + a->n_acc, 0,
                       (a->cap_acc - a->n_acc) * sizeof(*a->acc));
        }
        x            = &a->acc[a->n_acc++];
        x->route     = route;
        x->purpose   = purpose;
        x->partition = partition;
        x->first     = offset;
        x->last      = offset;
        x->records = x->tombstones = x->expired = 0;
        x->n_infos                              = 0;
        return x;
}

static void acc_note(struct acc *x, struct info *in, bool skip, bool tombstone)
{
        size_t i;

        if (skip) {
                x->expired++;
                return;
        }
        if (tombstone) {
                x->tombstones++;
                return;
        }
        x->records++;
        for (i = 0; i < x->n_infos; i++)
                if (x->infos[i] == in) {
                        x->per_info[i]++;
                        return;
                }
        if (x->n_infos == x->cap_infos) {
                x->cap_infos = x->cap_infos ? 2 * x->cap_infos : 4;
                x->infos     = veil_realloc(x->infos,
                                            x->cap_infos * sizeof(*x->infos));
                x->per_info  = veil_realloc(x->per_info,
                                            x->cap_infos * sizeof(*x->per_info));
        }
        x->per_info[x->n_infos] = 1;
        x->infos[x->n_infos++]  = in;
}

int veil_audit_record(struct veil_audit *a, const struct veil_route *route,
                      size_t purpose, int32_t partition, int64_t offset,
                      const struct veil_plan *plan, int schema_in, bool skip,
                      bool tombstone, char *errstr, size_t errstr_size)
{
        const struct veil_route_purpose *rp = &route->purposes[purpose];
        struct chain *c;
        struct info *in;

        if (!audit_on(a->config))
                return 0;
        in = info_for(a, rp, plan, plan ? schema_in : -1);
        if (a->config->audit_level == VEIL_AUDIT_BATCH) {
                acc_note(acc_get(a, route, purpose, partition, offset),
                         plan ? in : NULL, skip, tombstone);
                return 0;
        }
        c = chain_get(a, route->source, partition);
        if (!c)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "no audit chain for %s/%" PRId32,
                                 route->source, partition);
        return record_event(a, c, in, offset, skip, tombstone, errstr,
                            errstr_size);
}

/* The head every per-record purpose event shares (kind, source position,
 * purpose, topic, licence, schema) into *ev, and its chain; the caller adds
 * its own fields and emits. */
static int purpose_event(struct veil_audit *a, const char *kind,
                         const struct veil_route *route, size_t purpose,
                         int32_t partition, int64_t offset, int schema_in,
                         json_t **ev, struct chain **c, char *errstr,
                         size_t errstr_size)
{
        const struct veil_route_purpose *rp = &route->purposes[purpose];

        *c = chain_get(a, route->source, partition);
        if (!*c)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "no audit chain for %s/%" PRId32,
                                 route->source, partition);
        *ev = json_pack("{s:s, s:{s:s, s:i, s:I, s:I}, s:s, s:s, s:s, s:i}",
                        "kind", kind, "source", "topic", route->source,
                        "partition", (int)partition, "first",
                        (json_int_t)offset, "last", (json_int_t)offset,
                        "purpose", rp->purpose, "topic", rp->topic, "license",
                        rp->ref->license_id ? rp->ref->license_id : "",
                        "schema_in", schema_in);
        return *ev ? 0
                   : veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                               "building an audit event failed");
}

int veil_audit_consent(struct veil_audit *a, const struct veil_route *route,
                       size_t purpose, int32_t partition, int64_t offset,
                       int schema_in, const char *reason, const char *tombstone,
                       char *errstr, size_t errstr_size)
{
        const struct veil_purpose *pu = route->purposes[purpose].ref;
        struct chain *c;
        json_t *ev;
        int rc;

        if (!audit_on(a->config))
                return 0;
        rc = purpose_event(a, "consent", route, purpose, partition, offset,
                           schema_in, &ev, &c, errstr, errstr_size);
        if (rc)
                return rc;
        json_object_set_new(ev, "reason", json_string(reason));
        json_object_set_new(
                ev, "field",
                json_string(pu->requires.field ? pu->requires.field : ""));
        json_object_set_new(ev, "tombstone",
                            tombstone ? json_string(tombstone) : json_null());
        return emit_json(a, c, ev, errstr, errstr_size);
}

int veil_audit_leak(struct veil_audit *a, const struct veil_route *route,
                    size_t purpose, int32_t partition, int64_t offset,
                    int schema_in, const char *path, const char *detector,
                    uint32_t count, const char *action, char *errstr,
                    size_t errstr_size)
{
        struct chain *c;
        json_t *ev;
        int rc;

        if (!audit_on(a->config))
                return 0;
        rc = purpose_event(a, "leak", route, purpose, partition, offset,
                           schema_in, &ev, &c, errstr, errstr_size);
        if (rc)
                return rc;
        json_object_set_new(ev, "field", json_string(path));
        json_object_set_new(ev, "detector", json_string(detector));
        json_object_set_new(ev, "spans", json_integer((json_int_t)count));
        json_object_set_new(ev, "action", json_string(action));
        return emit_json(a, c, ev, errstr, errstr_size);
}

static void json_int_set_add(json_t *arr, int v)
{
        size_t i;
        json_t *x;

        json_array_foreach(arr, i, x) if (json_integer_value(x) == v) return;
        json_array_append_new(arr, json_integer(v));
}

/* One batch event for one (source partition, purpose). */
static int batch_event(struct veil_audit *a, const struct acc *x, char *errstr,
                       size_t errstr_size)
{
        const struct veil_route_purpose *rp = &x->route->purposes[x->purpose];
        json_t *ev, *schema_in, *schema_out, *fields, *dropped, *applied,
                *drops;
        int64_t n_tx[VEIL_TX__COUNT] = {0}, n_why[N_DROP_REASONS] = {0};
        struct chain *c;
        size_t i, k;

        c = chain_get(a, x->route->source, x->partition);
        if (!c)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "no audit chain for %s/%" PRId32,
                                 x->route->source, x->partition);
        schema_in  = json_array();
        schema_out = json_array();
        fields     = json_object();
        dropped    = json_object();
        applied    = json_object();
        for (i = 0; i < x->n_infos; i++) {
                json_int_set_add(schema_in, x->infos[i]->schema_in);
                json_int_set_add(schema_out, x->infos[i]->schema_out);
                json_object_update(fields, x->infos[i]->fields);
                json_object_update(dropped, x->infos[i]->dropped);
                /* The field map is the union over the batch's schemas;
                 * these counts are exact: each record's own plan. */
                for (k = 0; k < VEIL_TX__COUNT; k++)
                        n_tx[k] +=
                                x->per_info[i] * (int64_t)x->infos[i]->n_tx[k];
                for (k = 0; k < N_DROP_REASONS; k++)
                        n_why[k] +=
                                x->per_info[i] * (int64_t)x->infos[i]->n_why[k];
        }
        drops = json_object();
        for (k = 0; k < N_DROP_REASONS; k++)
                if (n_why[k])
                        json_object_set_new(drops, drop_reasons[k],
                                            json_integer(n_why[k]));
        for (k = 0; k < VEIL_TX__COUNT; k++)
                if (n_tx[k])
                        json_object_set_new(applied,
                                            veil_tx_name((enum veil_tx_kind)k),
                                            json_integer(n_tx[k]));
        ev = json_pack("{s:s, s:{s:s, s:i, s:I, s:I}, s:s, s:s, s:s, s:I, "
                       "s:I, s:I, s:o, s:o, s:o}",
                       "kind", "batch", "source", "topic", x->route->source,
                       "partition", (int)x->partition, "first",
                       (json_int_t)x->first, "last", (json_int_t)x->last,
                       "purpose", rp->purpose, "topic", rp->topic, "license",
                       rp->ref->license_id ? rp->ref->license_id : "",
                       "records", (json_int_t)x->records, "tombstones",
                       (json_int_t)x->tombstones, "expired",
                       (json_int_t)x->expired, "schema_in", schema_in,
                       "schema_out", schema_out, "fields", fields);
        if (ev) {
                json_object_set_new(ev, "applied", applied);
                if (json_object_size(dropped)) {
                        json_object_set_new(ev, "dropped", dropped);
                        json_object_set_new(ev, "drops", drops);
                } else {
                        json_decref(dropped);
                        json_decref(drops);
                }
        } else {
                json_decref(applied);
                json_decref(dropped);
                json_decref(drops);
        }
        if (!ev)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "building an audit event failed");
        return emit_json(a, c, ev, errstr, errstr_size);
}

int veil_audit_flush(struct veil_audit *a, char *errstr, size_t errstr_size)
{
        size_t i;
        int rc = 0;

        if (!audit_on(a->config))
                return 0;
        for (i = 0; i < a->n_acc && !rc; i++)
                rc = batch_event(a, &a->acc[i], errstr, errstr_size);
        a->n_acc = 0;
        return rc;
}

void veil_audit_commit(struct veil_audit *a)
{
        struct chain *c;

        for (c = a->chains; c; c = c->next)
                memcpy(c->prev, c->pending, sizeof(c->prev));
        memcpy(a->retention.prev, a->retention.pending, 65);
        a->committed_events += a->pending_events;
        a->pending_events = 0;
}

void veil_audit_rollback(struct veil_audit *a)
{
        struct chain *c;

        for (c = a->chains; c; c = c->next)
                memcpy(c->pending, c->prev, sizeof(c->prev));
        memcpy(a->retention.pending, a->retention.prev, 65);
        a->pending_events = 0;
        a->n_acc          = 0;
}

uint64_t veil_audit_committed(const struct veil_audit *a)
{
        return a->committed_events;
}
