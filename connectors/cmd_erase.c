/* cmd_erase.c - `veil erase -c FILE [--file KEYS] KEY…`: publish erasure
 * requests (format in common/ledger.h) and wait until Kafka has them. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "commands.h"
#include "config.h"
#include "crypto.h"
#include "kafka.h"
#include "ledger.h"
#include "util.h"
#include "headers.h"
#include "veil.h"

static const struct veil_cmd_help help = {
        "erase", "erase -c FILE [--file KEYS] [--bootstrap SERVERS] KEY…",
        "Publish erasure requests: a worker turns each into a tombstone for "
        "the key on every\npurpose topic that holds it, clears its retention "
        "ledger entries and audits it.",
        "options:\n"
        "  -c, --config FILE     the pipeline (its master key seals the keys "
        "in the requests)\n"
        "  --file FILE           keys to erase, one per line ('-': standard "
        "input);\n"
        "                        empty lines are skipped\n"
        "  --bootstrap SERVERS   the cluster (default: the config's "
        "bootstrap.servers)\n"
        "  --timeout SECONDS     for all requests to be delivered (default "
        "30)\n"
        "  -h, --help            this help\n"
        "KEY is the source record's key as the producer wrote it. Requests "
        "go to\ntopics.erasure, keyed by a keyed hash of KEY, with KEY sealed "
        "(AES-256-GCM) in\nthe value. Prints one line per request (its id, "
        "never the key).\n"
        "exit: 0 all delivered, 1 a delivery failed, 2 usage or config "
        "error\n"};

/* One request, tracked through its delivery report. */
struct request {
        char id[37];
        size_t index; /* 1-based position of its key */
        rd_kafka_resp_err_t err;
        int32_t partition;
        int64_t offset;
        bool done;
};

struct keys {
        char **v;
        size_t *len;
        size_t n, cap;
};

static void keys_add(struct keys *k, const char *s, size_t len)
{
        if (k->n == k->cap) {
                k->cap = k->cap ? k->cap * 2 : 16;
                k->v   = veil_realloc(k->v, k->cap * sizeof(*k->v));
                k->len = veil_realloc(k->len, k->cap * sizeof(*k->len));
        }
        /* Bytes, not a string: a line may hold a NUL. */
        k->v[k->n] = veil_malloc(len + 1);
        memcpy(k->v[k->n], s, len);
        k->v[k->n][len] = 0;
        k->len[k->n++]  = len;
}

static void keys_free(struct keys *k)
{
        size_t i;

        for (i = 0; i < k->n; i++) {
                veil_cleanse(k->v[i], k->len[i]);
                free(k->v[i]);
        }
        free(k->v);
        free(k->len);
}

/* Reads one key per line; returns 0, or -1 with a message (line numbers,
 * never contents). */
static int keys_read_file(struct keys *k, const char *path)
{
        FILE *f    = strcmp(path, "-") ? fopen(path, "r") : stdin;
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t n;
        int rc = 0;

        if (!f) {
                fprintf(stderr, "veil erase: cannot open %s\n", path);
                return -1;
        }
        while ((n = getline(&line, &cap, f)) >= 0) {
                lineno++;
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        n--;
                if (!n)
                        continue;
                if ((size_t)n > VEIL_RETENTION_MAX_KEY) {
                        fprintf(stderr,
                                "veil erase: %s:%zu: key of %zd bytes (at "
                                "most %u)\n",
                                path, lineno, n, VEIL_RETENTION_MAX_KEY);
                        rc = -1;
                        break;
                }
                keys_add(k, line, (size_t)n);
        }
        if (rc == 0 && ferror(f)) {
                fprintf(stderr, "veil erase: reading %s failed\n", path);
                rc = -1;
        }
        if (line) {
                veil_cleanse(line, cap);
                free(line);
        }
        if (f != stdin)
                fclose(f);
        return rc;
}

static void erase_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                     void *opaque)
{
        struct request *req = rkm->_private;

        (void)rk;
        (void)opaque;
        req->err       = rkm->err;
        req->partition = rkm->partition;
        req->offset    = rkm->offset;
        req->done      = true;
}

static void erase_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                fprintf(stderr, "veil erase: kafka: %s: %s\n", fac, buf);
}

static rd_kafka_t *erase_producer(const struct veil_config *config,
                                  const char *bootstrap, int timeout_s)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[1024], tmo[32];
        rd_kafka_t *rk;

        if (veil_kafka_conf_apply(conf, config, bootstrap, err, sizeof(err))) {
                fprintf(stderr, "veil erase: %s\n", err);
                goto err;
        }
        snprintf(tmo, sizeof(tmo), "%d", timeout_s * 1000);
        /* Idempotence: a retried send is not a second request. The
         * timeout bounds the wait when the cluster cannot be reached. */
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "message.timeout.ms", tmo, err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "log.connection.close", "false", err,
                              sizeof(err))) {
                fprintf(stderr, "veil erase: %s\n", err);
                goto err;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, erase_dr);
        rd_kafka_conf_set_log_cb(conf, erase_log);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "veil erase: cannot create a producer: %s\n",
                        err);
                goto err;
        }
        return rk;
err:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

int veil_cmd_erase(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"file", required_argument, NULL, 'f'},
                {"bootstrap", required_argument, NULL, 'b'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts copts = {.skip_kafka_check = true};
        const char *path = NULL, *file = NULL, *bootstrap = NULL;
        struct veil_erasure_keys ek = {0};
        struct veil_config *config  = NULL;
        struct request *reqs        = NULL;
        struct keys keys            = {0};
        char errstr[1024] = "", hash[VEIL_ERASURE_KEY_HASH_MAX + 1], *json;
        size_t i, json_len, failed = 0, sent = 0;
        struct veil_cmd_opts o = {.timeout_s = 30, .timeout_max = 3600};
        int c, rc, timeout_s, status = VEIL_EXIT_USAGE;
        bool have_keys = false;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk = NULL;
        int64_t now, deadline;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case 'b':
                        bootstrap = optarg;
                        break;
                default:
                        if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >=
                            0)
                                return rc;
                }
        }
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, true)))
                return rc;
        path      = o.path;
        timeout_s = o.timeout_s;
        for (i = (size_t)optind; i < (size_t)argc; i++) {
                size_t len = strlen(argv[i]);

                if (!len || len > VEIL_RETENTION_MAX_KEY)
                        return veil_cmd_usage_error(
                                &help,
                                "key #%zu: empty or longer than %u "
                                "bytes",
                                i - (size_t)optind + 1, VEIL_RETENTION_MAX_KEY);
                have_keys = true;
        }
        if (!have_keys && !file)
                return veil_cmd_usage_error(&help,
                                            "no KEY and no --file: nothing "
                                            "to erase");
        for (i = (size_t)optind; i < (size_t)argc; i++)
                keys_add(&keys, argv[i], strlen(argv[i]));
        if (file && keys_read_file(&keys, file))
                goto out;
        if (!keys.n) {
                status = veil_cmd_usage_error(&help, "%s holds no keys",
                                              file ? file : "the input");
                goto out;
        }

        config = veil_cmd_load_config(&help, path, &copts);
        if (!config) {
                goto out;
        }
        if (!config->topics.erasure) {
                fprintf(stderr, "veil erase: %s has no topics.erasure\n", path);
                goto out;
        }
        if (veil_erasure_keys_init(&ek, config->keys.key, config->keys.key_len,
                                   config->keys.key_id, errstr,
                                   sizeof(errstr))) {
                fprintf(stderr, "veil erase: %s\n", errstr);
                goto out;
        }
        rk = erase_producer(config, bootstrap, timeout_s);
        if (!rk)
                goto out;

        reqs = veil_calloc(keys.n, sizeof(*reqs));
        now  = veil_now_ms();
        for (i = 0; i < keys.n; i++) {
                reqs[i].index = i + 1;
                if (veil_erasure_request_id(reqs[i].id, errstr,
                                            sizeof(errstr)) ||
                    veil_erasure_key_hash(&ek, keys.v[i], keys.len[i], hash,
                                          sizeof(hash)) ||
                    veil_erasure_request_encode(
                            &ek, keys.v[i], keys.len[i], now, reqs[i].id, &json,
                            &json_len, errstr, sizeof(errstr))) {
                        fprintf(stderr, "veil erase: key #%zu: %s\n", i + 1,
                                errstr[0] ? errstr
                                          : "cannot build the "
                                            "request");
                        status = VEIL_EXIT_GAPS;
                        goto drain;
                }
                /* RD_KAFKA_V_VALUE + F_FREE: librdkafka frees json. */
                err = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(config->topics.erasure),
                        RD_KAFKA_V_KEY(hash, strlen(hash)),
                        RD_KAFKA_V_VALUE(json, json_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE |
                                            RD_KAFKA_MSG_F_BLOCK),
                        RD_KAFKA_V_HEADER(VEIL_H_REQUEST, reqs[i].id,
                                          (ssize_t)strlen(reqs[i].id)),
                        RD_KAFKA_V_OPAQUE(&reqs[i]), RD_KAFKA_V_END);
                if (err) {
                        free(json);
                        fprintf(stderr,
                                "veil erase: key #%zu: cannot queue the "
                                "request: %s\n",
                                i + 1, rd_kafka_err2str(err));
                        status = VEIL_EXIT_GAPS;
                        goto drain;
                }
                sent++;
                rd_kafka_poll(rk, 0);
        }
        status = VEIL_EXIT_OK;
drain:
        /* message.timeout.ms bounds every request; the margin lets the
         * last delivery reports arrive. */
        deadline = veil_now_ms() + (int64_t)timeout_s * 1000 + 5000;
        while (rd_kafka_outq_len(rk) > 0 && veil_now_ms() < deadline)
                rd_kafka_poll(rk, 100);
        rd_kafka_poll(rk, 0);
        for (i = 0; i < sent; i++) {
                if (reqs[i].done && !reqs[i].err) {
                        printf("%s: delivered (key #%zu, %s [%" PRId32
                               "] at offset %" PRId64 ")\n",
                               reqs[i].id, reqs[i].index,
                               config->topics.erasure, reqs[i].partition,
                               reqs[i].offset);
                        continue;
                }
                failed++;
                printf("%s: not delivered (key #%zu): %s\n", reqs[i].id,
                       reqs[i].index,
                       reqs[i].done ? rd_kafka_err2str(reqs[i].err)
                                    : "no delivery report in time");
        }
        if (failed) {
                fprintf(stderr,
                        "veil erase: %zu of %zu requests not delivered to "
                        "%s\n",
                        failed, keys.n, config->topics.erasure);
                status = VEIL_EXIT_GAPS;
        } else if (status == VEIL_EXIT_OK) {
                fprintf(stderr, "veil erase: %zu request%s delivered to %s\n",
                        sent, sent == 1 ? "" : "s", config->topics.erasure);
        }
out:
        if (rk)
                rd_kafka_destroy(rk);
        free(reqs);
        veil_erasure_keys_destroy(&ek);
        keys_free(&keys);
        veil_config_destroy(config);
        return status;
}
