/* reader.c - bounded read_committed reads of Veil's own topics: end offsets
 * taken up front, so a tool finishes even while workers keep writing. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader.h"
#include "kafka.h"
#include "util.h"
#include "veil.h"

rd_kafka_t *veil_reader_consumer(const struct veil_config *config,
                                 const char *purpose, veil_reader_log_fn log_cb,
                                 char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], group[512];
        rd_kafka_t *rk;

#define SET(k, v)                                                              \
        do {                                                                   \
                if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) !=         \
                    RD_KAFKA_CONF_OK) {                                        \
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,           \
                                  "kafka.%s: %s", k, err);                     \
                        rd_kafka_conf_destroy(conf);                           \
                        return NULL;                                           \
                }                                                              \
        } while (0)

        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size) ||
            veil_kafka_conf_bound(conf, config, false, errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        /* Only assign() is used: the group id names the client, nothing is
         * ever committed under it. */
        snprintf(group, sizeof(group), "%s-%s", config->group, purpose);
        SET("group.id", group);
        SET("client.id", group);
        SET("isolation.level", "read_committed");
        SET("enable.auto.commit", "false");
        SET("enable.auto.offset.store", "false");
        SET("enable.partition.eof", "true");
        SET("auto.offset.reset", "earliest");
#undef SET
        if (log_cb)
                rd_kafka_conf_set_log_cb(conf, log_cb);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "consumer: %s",
                          err);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        return rk;
}

static int part_cmp(const void *a, const void *b)
{
        const struct veil_reader_part *x = a, *y = b;

        return (x->partition > y->partition) - (x->partition < y->partition);
}

int veil_reader_ends(rd_kafka_t *rk, const char *topic,
                     struct veil_reader_part **partsp, size_t *np,
                     int timeout_ms, char *errstr, size_t errstr_size)
{
        const struct rd_kafka_metadata *md = NULL;
        struct veil_reader_part *parts     = NULL;
        rd_kafka_topic_t *rkt;
        rd_kafka_resp_err_t err;
        int i, n, rc = 0;

        *partsp = NULL;
        *np     = 0;
        rkt     = rd_kafka_topic_new(rk, topic, NULL);
        if (!rkt)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "topic %s: %s", topic,
                                 rd_kafka_err2str(rd_kafka_last_error()));
        err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
        rd_kafka_topic_destroy(rkt);
        if (err)
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "metadata of %s: %s", topic,
                                 rd_kafka_err2str(err));
        if (md->topic_cnt != 1 ||
            md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            md->topics[0].partition_cnt == 0) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                               "topic %s does not exist", topic);
                goto out;
        }
        if (md->topics[0].err) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                               "metadata of %s: %s", topic,
                               rd_kafka_err2str(md->topics[0].err));
                goto out;
        }
        n     = md->topics[0].partition_cnt;
        parts = veil_calloc((size_t)n, sizeof(*parts));
        for (i = 0; i < n; i++) {
                struct veil_reader_part *p = &parts[i];

                p->partition = md->topics[0].partitions[i].id;
                err          = rd_kafka_query_watermark_offsets(
                                 rk, topic, p->partition, &p->lo, &p->to, timeout_ms);
                if (err) {
                        rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                                       "end offsets of %s [%" PRId32 "]: %s",
                                       topic, p->partition,
                                       rd_kafka_err2str(err));
                        free(parts);
                        goto out;
                }
                p->from = p->lo;
        }
        qsort(parts, (size_t)n, sizeof(*parts), part_cmp);
        *partsp = parts;
        *np     = (size_t)n;
out:
        rd_kafka_metadata_destroy(md);
        return rc;
}

int veil_reader_run(rd_kafka_t *rk, const char *topic,
                    const struct veil_reader_part *parts, size_t n,
                    int timeout_ms, veil_reader_fn fn, void *opaque,
                    char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *list;
        int64_t *at, deadline = veil_now_ms() + timeout_ms;
        bool *done;
        size_t i, left = 0;
        rd_kafka_resp_err_t err;
        int rc = 0;

        if (n == 0)
                return 0;
        done = veil_calloc(n, sizeof(*done));
        at   = veil_calloc(n, sizeof(*at));
        list = rd_kafka_topic_partition_list_new((int)n);
        for (i = 0; i < n; i++) {
                at[i] = parts[i].from;
                if (parts[i].from >= parts[i].to) {
                        done[i] = true;
                        continue;
                }
                rd_kafka_topic_partition_list_add(list, topic,
                                                  parts[i].partition)
                        ->offset = parts[i].from;
                left++;
        }
        if (left == 0)
                goto out;
        err = rd_kafka_assign(rk, list);
        if (err) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                               "reading %s: assign: %s", topic,
                               rd_kafka_err2str(err));
                goto out;
        }
        while (left > 0) {
                rd_kafka_message_t *rkm;

                if (veil_now_ms() >= deadline) {
                        for (i = 0; i < n && done[i]; i++)
                                ;
                        rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                                       "reading %s: timed out at [%" PRId32
                                       "] offset %" PRId64 " of %" PRId64
                                       " (a transaction still open?)",
                                       topic, parts[i].partition, at[i],
                                       parts[i].to);
                        break;
                }
                rkm = rd_kafka_consumer_poll(rk, 200);
                if (!rkm)
                        continue;
                for (i = 0; i < n; i++)
                        if (parts[i].partition == rkm->partition)
                                break;
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        /* Under read_committed the end is the last stable
                         * offset: below `to` while a transaction there is
                         * still open, so wait for the next EOF. */
                        if (i < n && !done[i] && rkm->offset >= parts[i].to) {
                                done[i] = true;
                                left--;
                        }
                } else if (rkm->err) {
                        if (rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                            rkm->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                            rkm->err ==
                                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                            rkm->err ==
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                            rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
                                rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                                               "reading %s: %s", topic,
                                               rd_kafka_message_errstr(rkm));
                                rd_kafka_message_destroy(rkm);
                                break;
                        }
                        /* Transport errors and the like: librdkafka
                         * retries. */
                } else if (i < n && !done[i]) {
                        if (rkm->offset >= parts[i].to) {
                                done[i] = true;
                                left--;
                        } else {
                                at[i] = rkm->offset + 1;
                                rc    = fn(opaque, rkm);
                                if (rc) {
                                        rd_kafka_message_destroy(rkm);
                                        break;
                                }
                                if (rkm->offset + 1 >= parts[i].to) {
                                        done[i] = true;
                                        left--;
                                }
                        }
                }
                rd_kafka_message_destroy(rkm);
        }
        rd_kafka_assign(rk, NULL);
out:
        rd_kafka_topic_partition_list_destroy(list);
        free(done);
        free(at);
        return rc;
}

const char *veil_reader_header(const rd_kafka_message_t *rkm, const char *name,
                               char *buf, size_t size)
{
        rd_kafka_headers_t *hdrs;
        const void *val;
        size_t len;

        if (rd_kafka_message_headers(rkm, &hdrs) ||
            rd_kafka_header_get_last(hdrs, name, &val, &len))
                return NULL;
        if (!val)
                len = 0;
        if (len >= size)
                len = size - 1;
        if (len)
                memcpy(buf, val, len);
        buf[len] = '\0';
        return buf;
}
