/* cmd_audit.c - `veil audit verify -c FILE`: reads the audit topic end to
 * end (read_committed) and checks every chain: each event's MAC, and that
 * its `prev` is the SHA-256 of the chain's previous event (audit.h). */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "commands.h"
#include "config.h"
#include "reader.h"
#include "util.h"
#include "veil.h"

#define AUDIT_EXIT_BROKEN 1
/* Breaks printed in full; the rest are counted. */
#define AUDIT_MAX_REPORTED 10

static const struct veil_cmd_help help = {
        "audit", "audit verify -c FILE [--timeout SECONDS]",
        "Check the audit topic's hash chains end to end: every event's MAC "
        "(made with the\naudit key of the ring key its veil.mac names) and its "
        "`prev`, the SHA-256 of the\nprevious event of its chain. Reads "
        "read_committed up to the end offsets the\ntopic had when the check "
        "started. Prints the first breaks with their\ntopic/partition/offset; "
        "never a record value.",
        "options:\n"
        "  -c, --config FILE   the pipeline (its topics.audit and keys)\n"
        "  --timeout SECONDS   how long to wait for the topic's end (default "
        "120)\n"
        "A chain is one source partition (key \"TOPIC/PARTITION\"). An event "
        "whose prev is 64\nzeros starts a segment and must say "
        "\"segment_start\": true with a reason (\"new\",\n\"head-not-found\", "
        "\"head-not-retained\"); workers continue a chain from its last\n"
        "event when they take a partition over, so segments are rare.\n"
        "exit: 0 intact, 1 broken, 2 usage, config or Kafka error\n"};

/* The audit key of each ring key, derived when an event first names it. */
struct verify_key {
        const struct veil_key *key;
        struct veil_hmac hmac;
};

struct verify {
        const struct veil_config *config;
        const char *topic;
        struct verify_key *keys; /* one per ring key, in ring order */
        bool *keyed;
        const struct veil_reader_part *part; /* being read */
        /* "PARTITION\tCHAIN" -> {"head": hex, "offset": n} */
        json_t *chains;
        json_t *reasons; /* segment reason -> count */
        int64_t events, breaks, continued;
        char first_break[1024];
        char fatal[512];
};

static void brk(struct verify *v, const rd_kafka_message_t *rkm,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void brk(struct verify *v, const rd_kafka_message_t *rkm,
                const char *fmt, ...)
{
        char why[512], where[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        snprintf(where, sizeof(where), "%s/%" PRId32 "/%" PRId64, v->topic,
                 rkm->partition, rkm->offset);
        if (v->breaks == 0)
                snprintf(v->first_break, sizeof(v->first_break), "%s: %s",
                         where, why);
        if (v->breaks < AUDIT_MAX_REPORTED)
                fprintf(stderr, "veil audit: broken at %s: %s\n", where, why);
        v->breaks++;
}

static bool is_hex64(const char *s)
{
        size_t i;

        for (i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') ||
                      (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return s[64] == '\0';
}

static int verify_event(void *opaque, const rd_kafka_message_t *rkm)
{
        struct verify *v = opaque;
        char mac_hdr[VEIL_AUDIT_MAC_MAX], mac[VEIL_AUDIT_MAC_MAX];
        char chain[512], id[600], head[65];
        const char *prev, *kid_end, *reason;
        const struct veil_key *key;
        json_t *ev = NULL, *st;
        size_t kid_len, ki;

        v->events++;
        if (!rkm->key || rkm->key_len == 0 || rkm->key_len >= sizeof(chain)) {
                brk(v, rkm, "event without a chain key");
                return 0;
        }
        memcpy(chain, rkm->key, rkm->key_len);
        chain[rkm->key_len] = '\0';
        snprintf(id, sizeof(id), "%" PRId32 "\t%s", rkm->partition, chain);
        if (!rkm->payload) {
                brk(v, rkm, "chain %s: event without a value", chain);
                return 0;
        }
        veil_audit_digest(rkm->payload, rkm->len, head);
        if (!veil_reader_header(rkm, VEIL_AUDIT_MAC_HEADER, mac_hdr,
                                sizeof(mac_hdr))) {
                brk(v, rkm, "chain %s: event without a %s header", chain,
                    VEIL_AUDIT_MAC_HEADER);
                goto next;
        }
        kid_end = strchr(mac_hdr, ':');
        kid_len = kid_end ? (size_t)(kid_end - mac_hdr) : 0;
        key = kid_end ? veil_keyring_find(v->config, mac_hdr, kid_len) : NULL;
        if (!key) {
                /* Not a break we can judge: a key we do not hold made it
                 * (an event without a key id is a break, below). */
                if (kid_end && veil_key_id_valid(mac_hdr, kid_len)) {
                        snprintf(v->fatal, sizeof(v->fatal),
                                 "%s/%" PRId32 "/%" PRId64
                                 ": the MAC was made with key id '%.*s', "
                                 "which is not in this config's keyring "
                                 "(keys.ring; a retired key must stay there "
                                 "while its events are kept)",
                                 v->topic, rkm->partition, rkm->offset,
                                 (int)kid_len, mac_hdr);
                        return VEIL_ECONFIG;
                }
                brk(v, rkm, "chain %s: the %s header names no key id", chain,
                    VEIL_AUDIT_MAC_HEADER);
                goto next;
        }
        ki = (size_t)(key - v->config->keys.ring);
        if (!v->keyed[ki]) {
                char err[512];

                if (veil_audit_hmac_init_key(&v->keys[ki].hmac, key, err,
                                             sizeof(err))) {
                        snprintf(v->fatal, sizeof(v->fatal), "%s", err);
                        return VEIL_ECONFIG;
                }
                v->keyed[ki] = true;
        }
        veil_audit_mac(&v->keys[ki].hmac, key->id, rkm->payload, rkm->len, mac,
                       sizeof(mac));
        /* Constant time: how far a forged MAC matches must not show. */
        if (strlen(mac) != strlen(mac_hdr) ||
            CRYPTO_memcmp(mac, mac_hdr, strlen(mac))) {
                brk(v, rkm,
                    "chain %s: the MAC does not match the event "
                    "(forged or altered)",
                    chain);
                goto next;
        }
        ev = json_loadb(rkm->payload, rkm->len, 0, NULL);
        if (!json_is_object(ev) ||
            !json_is_string(json_object_get(ev, "chain")) ||
            strcmp(json_string_value(json_object_get(ev, "chain")), chain)) {
                brk(v, rkm, "chain %s: the event does not name its chain",
                    chain);
                goto next;
        }
        prev = json_string_value(json_object_get(ev, "prev"));
        if (!prev || !is_hex64(prev)) {
                brk(v, rkm, "chain %s: no valid prev digest", chain);
                goto next;
        }
        st = json_object_get(v->chains, id);
        if (!strcmp(prev, VEIL_AUDIT_ZERO)) {
                reason = json_string_value(
                        json_object_get(ev, "segment_reason"));
                if (!json_is_true(json_object_get(ev, "segment_start")) ||
                    !reason || !*reason) {
                        brk(v, rkm,
                            "chain %s: restarts from a zero prev without "
                            "saying segment_start and a reason",
                            chain);
                        goto next;
                }
                json_object_set_new(
                        v->reasons, reason,
                        json_integer(json_integer_value(json_object_get(
                                             v->reasons, reason)) +
                                     1));
        } else if (!st) {
                /* The chain's earlier events are gone only if retention
                 * deleted the start of the partition. */
                if (v->part->lo == 0) {
                        brk(v, rkm,
                            "chain %s: the first event refers to a "
                            "predecessor that is not in the topic",
                            chain);
                        goto next;
                }
                v->continued++;
        } else if (strcmp(prev,
                          json_string_value(json_object_get(st, "head")))) {
                brk(v, rkm,
                    "chain %s: prev does not match the chain's previous "
                    "event at offset %" PRId64
                    " (an event is missing, altered or inserted)",
                    chain,
                    (int64_t)json_integer_value(json_object_get(st, "offset")));
                goto next;
        }
next:
        /* Later events are checked against this one, so one break is
         * reported once, not at every following event. */
        json_object_set_new(v->chains, id,
                            json_pack("{s:s, s:I}", "head", head, "offset",
                                      (json_int_t)rkm->offset));
        json_decref(ev);
        return 0;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                fprintf(stderr, "veil audit: kafka: %s: %s\n", fac, buf);
}

static int verify_run(const struct veil_config *config, int timeout_s)
{
        struct veil_reader_part *parts = NULL;
        struct verify v;
        rd_kafka_t *rk = NULL;
        char errstr[1024];
        const char *reason;
        json_t *count;
        size_t n = 0, i;
        int rc, exit_code = VEIL_EXIT_USAGE;

        memset(&v, 0, sizeof(v));
        v.config = config;
        v.topic  = config->topics.audit;
        if (!v.topic) {
                fprintf(stderr, "veil audit: the config has no audit topic "
                                "(topics.audit)\n");
                return VEIL_EXIT_USAGE;
        }
        v.keys    = veil_calloc(config->keys.n_ring + 1, sizeof(*v.keys));
        v.keyed   = veil_calloc(config->keys.n_ring + 1, sizeof(*v.keyed));
        v.chains  = json_object();
        v.reasons = json_object();
        rk = veil_reader_consumer(config, "audit-verify", quiet_log, errstr,
                                  sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil audit: %s\n", errstr);
                goto out;
        }
        rc = veil_reader_ends(rk, v.topic, &parts, &n, 30000, errstr,
                              sizeof(errstr));
        if (rc) {
                fprintf(stderr, "veil audit: %s\n", errstr);
                goto out;
        }
        /* One partition at a time: each knows its own low watermark. */
        for (i = 0; i < n; i++) {
                v.part = &parts[i];
                rc     = veil_reader_run(rk, v.topic, &parts[i], 1,
                                         timeout_s * 1000, verify_event, &v, errstr,
                                         sizeof(errstr));
                if (rc) {
                        fprintf(stderr, "veil audit: %s\n",
                                v.fatal[0] ? v.fatal : errstr);
                        goto out;
                }
        }
        printf("veil audit: %s: %" PRId64 " event(s) in %zu chain(s) on %zu "
               "partition(s)",
               v.topic, v.events, json_object_size(v.chains), n);
        if (json_object_size(v.reasons)) {
                printf("; segment starts:");
                json_object_foreach(v.reasons, reason, count)
                        printf(" %s %" PRId64, reason,
                               (int64_t)json_integer_value(count));
        }
        if (v.continued)
                printf("; %" PRId64 " chain(s) begin before the retained "
                       "history",
                       v.continued);
        if (v.breaks) {
                printf(": BROKEN, %" PRId64 " break(s); first at %s\n",
                       v.breaks, v.first_break);
                exit_code = AUDIT_EXIT_BROKEN;
        } else {
                printf(": intact\n");
                exit_code = VEIL_EXIT_OK;
        }
out:
        free(parts);
        if (rk)
                rd_kafka_destroy(rk);
        json_decref(v.chains);
        json_decref(v.reasons);
        for (i = 0; i < config->keys.n_ring; i++)
                if (v.keyed[i])
                        veil_hmac_cleanse(&v.keys[i].hmac);
        free(v.keys);
        free(v.keyed);
        return exit_code;
}

int veil_cmd_audit(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts lopts = {0};
        struct veil_config *config;
        struct veil_cmd_opts o = {.timeout_s = 120, .timeout_max = 86400};
        int c, rc;

        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                veil_cmd_print_help(&help);
                return VEIL_EXIT_OK;
        }
        if (argc < 2 || strcmp(argv[1], "verify"))
                return veil_cmd_usage_error(&help, "expected 'verify'%s%s",
                                            argc >= 2 ? ", got " : "",
                                            argc >= 2 ? argv[1] : "");
        argc--;
        argv++;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1)
                if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >= 0)
                        return rc;
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, false)))
                return rc;
        config = veil_cmd_load_config(&help, o.path, &lopts);
        if (!config) {
                return VEIL_EXIT_USAGE;
        }
        rc = verify_run(config, o.timeout_s);
        veil_config_destroy(config);
        return rc;
}
