/* cmd_dlq.c - `veil dlq replay -c FILE [--error CODE]`: feeds dead letters
 * back to their source topics once their cause is fixed, exactly once per
 * dead letter (dlq.h: veil.replay.of and the replay markers). */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "dlq.h"
#include "kafka.h"
#include "reader.h"
#include "util.h"
#include "wire.h"
#include "veil.h"

/* Records replayed per transaction: a crash loses at most one such batch
 * of progress, never replays a record twice. */
#define REPLAY_TXN_RECORDS 500
#define REPLAY_EXIT_FAILED 1

static const struct veil_cmd_help help = {
        "dlq", "dlq replay -c FILE [--error CODE] [--dry-run]",
        "Feed dead-lettered records back through the pipeline once their "
        "cause is fixed:\neach dead letter's original key and value "
        "(decrypted when sealed) goes back to\nthe source topic and "
        "partition named by its veil.source header, so the running\nworkers "
        "process it again. Reads the DLQ read_committed up to the end offsets "
        "it\nhad at the start. Prints counts, never values.",
        "options:\n"
        "  -c, --config FILE   the pipeline (topics.dlq, keys, routes)\n"
        "  --error CODE        only dead letters whose veil.error is CODE\n"
        "  --dry-run           count what would be replayed; produce "
        "nothing\n"
        "Idempotent: each replayed record carries veil.replay.of "
        "(DLQ_TOPIC/PARTITION/OFFSET),\nand in the same transaction a marker "
        "with veil.replay.done goes to the DLQ; a\nlater replay skips dead "
        "letters that have a marker. A record that fails again\nbecomes a "
        "new dead letter (with veil.replay.of), replayable on its own.\n"
        "exit: 0 everything selected was replayed, 1 some dead letters could "
        "not be\n      (listed by position), 2 usage, config or Kafka error\n"};

struct replay {
        const struct veil_config *config;
        const char *dlq_topic;
        const char *only; /* --error */
        bool dry_run;
        struct veil_dlq *dlq; /* the codec: opens and checks letters */
        rd_kafka_t *producer;
        bool txn_open;
        int64_t in_txn;
        json_t *done;  /* positions already replayed (markers) */
        json_t *parts; /* source topic -> partition count */
        json_t *codes; /* code -> replayed count */
        int64_t letters, replayed, already, other, failed;
        char err[1200];
};

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                fprintf(stderr, "veil dlq: kafka: %s: %s\n", fac, buf);
}

static void position(const rd_kafka_message_t *rkm, const char *topic,
                     char *out, size_t size)
{
        snprintf(out, size, "%s/%" PRId32 "/%" PRId64, topic, rkm->partition,
                 rkm->offset);
}

/* Pass 1: what earlier replays already fed back. */
static int collect_markers(void *opaque, const rd_kafka_message_t *rkm)
{
        struct replay *r = opaque;
        char done[512];

        if (veil_reader_header(rkm, VEIL_H_REPLAY_DONE, done, sizeof(done)))
                json_object_set_new(r->done, done, json_true());
        return 0;
}

static void failed(struct replay *r, const char *pos, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void failed(struct replay *r, const char *pos, const char *fmt, ...)
{
        char why[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        fprintf(stderr, "veil dlq: cannot replay %s: %s\n", pos, why);
        r->failed++;
}

/* Partitions of a source topic (cached). -1 when unknown. */
static int32_t source_partitions(struct replay *r, rd_kafka_t *rk,
                                 const char *topic)
{
        struct veil_reader_part *parts = NULL;
        json_t *n                      = json_object_get(r->parts, topic);
        size_t cnt                     = 0;
        char err[512];

        if (n)
                return (int32_t)json_integer_value(n);
        if (veil_reader_ends(rk, topic, &parts, &cnt, 30000, err, sizeof(err)))
                cnt = 0;
        free(parts);
        json_object_set_new(r->parts, topic,
                            json_integer(cnt ? (json_int_t)cnt : -1));
        return cnt ? (int32_t)cnt : -1;
}

static int txn_commit(struct replay *r)
{
        rd_kafka_error_t *error;

        if (!r->txn_open)
                return 0;
        error = rd_kafka_commit_transaction(r->producer, 60000);
        if (error) {
                snprintf(r->err, sizeof(r->err),
                         "committing the replay: %s (nothing of the last "
                         "%" PRId64 " record(s) was replayed; run again)",
                         rd_kafka_error_string(error), r->in_txn);
                if (rd_kafka_error_txn_requires_abort(error)) {
                        rd_kafka_error_t *e2 =
                                rd_kafka_abort_transaction(r->producer, 30000);
                        if (e2)
                                rd_kafka_error_destroy(e2);
                }
                rd_kafka_error_destroy(error);
                r->replayed -= r->in_txn;
                r->txn_open = false;
                return -1;
        }
        r->txn_open = false;
        r->in_txn   = 0;
        return 0;
}

struct pass2 {
        struct replay *r;
        rd_kafka_t *rk; /* the reader, for metadata */
};

/* Pass 2: one dead letter. */
static int replay_one(void *opaque, const rd_kafka_message_t *rkm)
{
        struct pass2 *p2 = opaque;
        struct replay *r = p2->r;
        char pos[512], code[256], source[512], why[512];
        char marker_to[600], *text;
        const char *src_topic;
        int64_t src_offset;
        struct veil_dlq_letter letter;
        const void *key, *value;
        size_t key_len, value_len;
        rd_kafka_headers_t *hdrs, *mhdrs, *rhdrs = NULL;
        rd_kafka_resp_err_t err;
        rd_kafka_error_t *error;
        int32_t partition, n_parts;
        json_t *marker, *count;

        if (veil_reader_header(rkm, VEIL_H_REPLAY_DONE, pos, sizeof(pos)))
                return 0; /* a marker */
        position(rkm, r->dlq_topic, pos, sizeof(pos));
        if (!veil_reader_header(rkm, VEIL_H_ERROR, code, sizeof(code))) {
                failed(r, pos, "no %s header: not a dead letter", VEIL_H_ERROR);
                return 0;
        }
        r->letters++;
        if (r->only && strcmp(code, r->only)) {
                r->other++;
                return 0;
        }
        if (json_object_get(r->done, pos)) {
                r->already++;
                return 0;
        }
        if (rd_kafka_message_headers(rkm, &rhdrs))
                rhdrs = NULL;
        /* The codec checks the headers against the sealed payload: a
         * letter whose source or code was changed does not open. */
        if (veil_dlq_open(r->dlq, rhdrs, rkm->key, rkm->key_len, rkm->payload,
                          rkm->len, &letter, why, sizeof(why))) {
                failed(r, pos, "%s", why);
                return 0;
        }
        snprintf(source, sizeof(source), "%s", letter.source);
        if (veil_dlq_position_parse(source, &src_topic, &partition,
                                    &src_offset)) {
                failed(r, pos, "no usable %s header", VEIL_H_SOURCE);
                return 0;
        }
        if (!veil_policy_route(&r->config->policy, src_topic)) {
                failed(r, pos,
                       "its source topic %s is not a route of this config",
                       src_topic);
                return 0;
        }
        n_parts = source_partitions(r, p2->rk, src_topic);
        if (n_parts < 0) {
                failed(r, pos, "its source topic %s does not exist", src_topic);
                return 0;
        }
        key       = letter.key;
        key_len   = letter.key_len;
        value     = letter.value;
        value_len = letter.value_len;
        count     = json_object_get(r->codes, code);
        json_object_set_new(r->codes, code,
                            json_integer(json_integer_value(count) + 1));
        r->replayed++;
        if (r->dry_run)
                return 0;

        if (!r->txn_open) {
                error = rd_kafka_begin_transaction(r->producer);
                if (error) {
                        snprintf(r->err, sizeof(r->err),
                                 "begin_transaction: %s",
                                 rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        r->replayed--;
                        return VEIL_ENET;
                }
                r->txn_open = true;
        }
        /* The original partition when it still exists: key order as the
         * producer chose it. */
        if (partition < 0 || partition >= n_parts)
                partition = RD_KAFKA_PARTITION_UA;
        hdrs = rd_kafka_headers_new(2);
        rd_kafka_header_add(hdrs, VEIL_H_REPLAY_OF, -1, pos, -1);
        /* A letter held for one purpose (purpose-halted) goes back to that
         * purpose only: the others had the record already. */
        if (letter.purpose[0])
                rd_kafka_header_add(hdrs, VEIL_H_REPLAY_PURPOSE, -1,
                                    letter.purpose, -1);
        err = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(source),
                                RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY((void *)key, key_len),
                                RD_KAFKA_V_VALUE((void *)value, value_len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err) {
                rd_kafka_headers_destroy(hdrs);
                snprintf(r->err, sizeof(r->err), "producing to %s: %s", source,
                         rd_kafka_err2str(err));
                r->replayed--;
                return VEIL_ENET;
        }
        snprintf(marker_to, sizeof(marker_to), "%s/%" PRId32, source,
                 partition);
        marker = json_pack("{s:s, s:s, s:s, s:I}", "replayed", pos, "error",
                           code, "to", marker_to, "ts",
                           (json_int_t)veil_now_ms());
        text   = marker ? json_dumps(marker, JSON_COMPACT | JSON_SORT_KEYS)
                        : NULL;
        json_decref(marker);
        mhdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(mhdrs, VEIL_H_REPLAY_DONE, -1, pos, -1);
        err = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(r->dlq_topic),
                                RD_KAFKA_V_PARTITION(rkm->partition),
                                RD_KAFKA_V_KEY(pos, strlen(pos)),
                                RD_KAFKA_V_VALUE(text, text ? strlen(text) : 0),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(mhdrs), RD_KAFKA_V_END);
        free(text);
        if (err) {
                rd_kafka_headers_destroy(mhdrs);
                snprintf(r->err, sizeof(r->err), "producing to %s: %s",
                         r->dlq_topic, rd_kafka_err2str(err));
                r->replayed--;
                return VEIL_ENET;
        }
        r->in_txn++;
        rd_kafka_poll(r->producer, 0);
        if (r->in_txn >= REPLAY_TXN_RECORDS && txn_commit(r))
                return VEIL_ENET;
        return 0;
}

static rd_kafka_t *producer_new(const struct veil_config *config, char *errstr,
                                size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], txn_id[512];
        rd_kafka_error_t *error;
        rd_kafka_t *rk;

        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        /* One replay at a time per group: a second one fences the first,
         * whose open transaction is aborted. */
        snprintf(txn_id, sizeof(txn_id), "%s-dlq-replay", config->group);
        if (rd_kafka_conf_set(conf, "transactional.id", txn_id, err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "transactional.id: %s", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, quiet_log);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "producer: %s",
                          err);
                return NULL;
        }
        error = rd_kafka_init_transactions(rk, 60000);
        if (error) {
                veil_errf(errstr, errstr_size, VEIL_ENET,
                          "init_transactions: %s",
                          rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                rd_kafka_destroy(rk);
                return NULL;
        }
        return rk;
}

static int replay_run(const struct veil_config *config, const char *only,
                      bool dry_run, int timeout_s)
{
        struct veil_reader_part *parts = NULL;
        struct replay r;
        struct pass2 p2;
        rd_kafka_t *rk = NULL;
        char errstr[1024];
        const char *code;
        json_t *count;
        size_t n = 0;
        int rc, exit_code = VEIL_EXIT_USAGE;

        memset(&r, 0, sizeof(r));
        r.config    = config;
        r.dlq_topic = config->topics.dlq;
        r.only      = only;
        r.dry_run   = dry_run;
        r.done      = json_object();
        r.parts     = json_object();
        r.codes     = json_object();
        if (!r.dlq_topic) {
                fprintf(stderr, "veil dlq: the config has no DLQ topic "
                                "(topics.dlq)\n");
                goto out;
        }
        r.dlq = veil_dlq_new(config, errstr, sizeof(errstr));
        if (!r.dlq) {
                fprintf(stderr, "veil dlq: %s\n", errstr);
                goto out;
        }
        rk = veil_reader_consumer(config, "dlq-replay", quiet_log, errstr,
                                  sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil dlq: %s\n", errstr);
                goto out;
        }
        /* Fence an earlier replay first: its open transaction (markers
         * included) is aborted before the markers are read. */
        if (!dry_run) {
                r.producer = producer_new(config, errstr, sizeof(errstr));
                if (!r.producer) {
                        fprintf(stderr, "veil dlq: %s\n", errstr);
                        goto out;
                }
        }
        rc = veil_reader_ends(rk, r.dlq_topic, &parts, &n, 30000, errstr,
                              sizeof(errstr));
        if (!rc)
                rc = veil_reader_run(rk, r.dlq_topic, parts, n,
                                     timeout_s * 1000, collect_markers, &r,
                                     errstr, sizeof(errstr));
        if (!rc) {
                p2.r  = &r;
                p2.rk = rk;
                rc    = veil_reader_run(rk, r.dlq_topic, parts, n,
                                        timeout_s * 1000, replay_one, &p2, errstr,
                                        sizeof(errstr));
        }
        if (!rc && !dry_run && txn_commit(&r))
                rc = VEIL_ENET;
        if (rc) {
                if (r.txn_open) {
                        rd_kafka_error_t *e =
                                rd_kafka_abort_transaction(r.producer, 30000);
                        if (e)
                                rd_kafka_error_destroy(e);
                        r.replayed -= r.in_txn;
                }
                fprintf(stderr, "veil dlq: %s\n", r.err[0] ? r.err : errstr);
        }
        printf("veil dlq: %s: %" PRId64 " dead letter(s)%s%s; %s %" PRId64,
               r.dlq_topic, r.letters, only ? ", selecting " : "",
               only ? only : "", dry_run ? "would replay" : "replayed",
               r.replayed);
        if (r.replayed) {
                const char *sep = " (";

                json_object_foreach(r.codes, code, count)
                {
                        printf("%s%s %" PRId64, sep, code,
                               (int64_t)json_integer_value(count));
                        sep = ", ";
                }
                printf(")");
        }
        printf(", already replayed %" PRId64, r.already);
        if (only)
                printf(", other codes %" PRId64, r.other);
        printf(", failed %" PRId64 "\n", r.failed);
        exit_code = rc         ? VEIL_EXIT_USAGE
                    : r.failed ? REPLAY_EXIT_FAILED
                               : VEIL_EXIT_OK;
out:
        free(parts);
        if (r.producer) {
                rd_kafka_flush(r.producer, 10000);
                rd_kafka_destroy(r.producer);
        }
        if (rk)
                rd_kafka_destroy(rk);
        veil_dlq_destroy(r.dlq);
        json_decref(r.done);
        json_decref(r.parts);
        json_decref(r.codes);
        return exit_code;
}

int veil_cmd_dlq(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"error", required_argument, NULL, 'e'},
                {"dry-run", no_argument, NULL, 'n'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts lopts = {0};
        struct veil_config *config;
        struct veil_cmd_opts o = {.timeout_s = 120, .timeout_max = 86400};
        const char *only       = NULL;
        bool dry_run           = false;
        int c, rc;

        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                veil_cmd_print_help(&help);
                return VEIL_EXIT_OK;
        }
        if (argc < 2 || strcmp(argv[1], "replay"))
                return veil_cmd_usage_error(&help, "expected 'replay'%s%s",
                                            argc >= 2 ? ", got " : "",
                                            argc >= 2 ? argv[1] : "");
        argc--;
        argv++;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
                if (c == 'e')
                        only = optarg;
                else if (c == 'n')
                        dry_run = true;
                else if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >= 0)
                        return rc;
        }
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, false)))
                return rc;
        config = veil_cmd_load_config(&help, o.path, &lopts);
        if (!config)
                return VEIL_EXIT_USAGE;
        rc = replay_run(config, only, dry_run, o.timeout_s);
        veil_config_destroy(config);
        return rc;
}
