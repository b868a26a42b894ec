/* source.c - the source connector (source.h): the consumer settings that
 * exactly-once rests on, and the assignment's batch bookkeeping. */
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "source.h"
#include "util.h"
#include "veil.h"

struct part {
        char *topic;
        int32_t partition;
        bool eof;
        int64_t batch_first; /* -1: nothing in the open batch */
};

struct veil_source {
        rd_kafka_t *rk;
        struct part *parts;
        size_t n_parts;
};

static rd_kafka_conf_t *conf_new(const struct veil_config *config,
                                 const char *client_id, bool eof,
                                 const struct veil_source_hooks *hooks,
                                 char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];

#define SET(k, v)                                                              \
        do {                                                                   \
                if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) !=         \
                    RD_KAFKA_CONF_OK) {                                        \
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,           \
                                  "kafka.%s: %s", k, err);                     \
                        goto err;                                              \
                }                                                              \
        } while (0)

        /* Cooperative rebalancing moves only the partitions that change
         * hands, but librdkafka before 2.3 aborts when such a consumer is
         * closed before its first assignment (its issue 4312), which
         * several pipelines per process make routine: there, the eager
         * round-robin assignor. */
        SET("partition.assignment.strategy", rd_kafka_version() >= 0x020300ff
                                                     ? "cooperative-sticky"
                                                     : "roundrobin");
        SET("auto.offset.reset", "earliest");
        /* Consumer lag for /metrics, unless kafka: says otherwise. */
        if (hooks->stats &&
            !veil_config_kafka(config, "statistics.interval.ms"))
                SET("statistics.interval.ms", "5000");
        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size) ||
            veil_kafka_conf_bound(conf, config, false, errstr, errstr_size))
                goto err;
        /* What exactly-once rests on: these are not negotiable. */
        SET("group.id", config->group);
        SET("client.id", client_id);
        SET("isolation.level", "read_committed");
        SET("enable.auto.commit", "false");
        SET("enable.partition.eof", eof ? "true" : "false");
#undef SET
        rd_kafka_conf_set_rebalance_cb(conf, hooks->rebalance);
        if (hooks->stats)
                rd_kafka_conf_set_stats_cb(conf, hooks->stats);
        rd_kafka_conf_set_log_cb(conf, hooks->log);
        rd_kafka_conf_set_error_cb(conf, hooks->error);
        rd_kafka_conf_set_opaque(conf, hooks->opaque);
        return conf;
err:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

struct veil_source *veil_source_new(const struct veil_config *config,
                                    const char *client_id, bool eof,
                                    const struct veil_source_hooks *hooks,
                                    char *errstr, size_t errstr_size)
{
        const struct veil_policy *policy = &config->policy;
        rd_kafka_topic_partition_list_t *topics;
        struct veil_source *src;
        rd_kafka_conf_t *conf;
        rd_kafka_resp_err_t err;
        char kerr[512];
        size_t i;

        conf = conf_new(config, client_id, eof, hooks, errstr, errstr_size);
        if (!conf)
                return NULL;
        src     = veil_calloc(1, sizeof(*src));
        src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
        if (!src->rk) {
                rd_kafka_conf_destroy(conf);
                free(src);
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "consumer: %s",
                          kerr);
                return NULL;
        }
        rd_kafka_poll_set_consumer(src->rk);
        topics = rd_kafka_topic_partition_list_new((int)policy->n_routes + 1);
        for (i = 0; i < policy->n_routes; i++)
                rd_kafka_topic_partition_list_add(topics,
                                                  policy->routes[i].source,
                                                  RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(src->rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err) {
                veil_errf(errstr, errstr_size, VEIL_ENET, "subscribe: %s",
                          rd_kafka_err2str(err));
                veil_source_destroy(src);
                return NULL;
        }
        return src;
}

void veil_source_destroy(struct veil_source *src)
{
        size_t i;

        if (!src)
                return;
        /* The last revocation runs inside: it commits or aborts the open
         * batch while its partitions still belong here. */
        veil_kafka_consumer_leave(src->rk);
        rd_kafka_destroy(src->rk);
        for (i = 0; i < src->n_parts; i++)
                free(src->parts[i].topic);
        free(src->parts);
        free(src);
}

rd_kafka_t *veil_source_consumer(struct veil_source *src)
{
        return src->rk;
}

static struct part *part_find(const struct veil_source *src, const char *topic,
                              int32_t partition)
{
        size_t k;

        for (k = 0; k < src->n_parts; k++)
                if (src->parts[k].partition == partition &&
                    !strcmp(src->parts[k].topic, topic))
                        return &src->parts[k];
        return NULL;
}

void veil_source_assigned(struct veil_source *src,
                          const rd_kafka_topic_partition_list_t *list)
{
        int i;

        for (i = 0; i < list->cnt; i++) {
                struct part *pt;

                if (part_find(src, list->elems[i].topic,
                              list->elems[i].partition))
                        continue;
                src->parts = veil_realloc(
                        src->parts, (src->n_parts + 1) * sizeof(*src->parts));
                pt              = &src->parts[src->n_parts++];
                pt->topic       = veil_strdup(list->elems[i].topic);
                pt->partition   = list->elems[i].partition;
                pt->eof         = false;
                pt->batch_first = -1;
        }
}

void veil_source_revoked(struct veil_source *src,
                         const rd_kafka_topic_partition_list_t *list)
{
        int i;

        for (i = 0; i < list->cnt; i++) {
                struct part *pt = part_find(src, list->elems[i].topic,
                                            list->elems[i].partition);

                if (pt) {
                        free(pt->topic);
                        *pt = src->parts[--src->n_parts];
                }
        }
}

size_t veil_source_count(const struct veil_source *src)
{
        return src->n_parts;
}

void veil_source_note(struct veil_source *src, const char *topic,
                      int32_t partition, int64_t offset)
{
        struct part *pt = part_find(src, topic, partition);

        if (!pt)
                return;
        pt->eof = false;
        if (pt->batch_first < 0)
                pt->batch_first = offset;
}

void veil_source_eof(struct veil_source *src, const char *topic,
                     int32_t partition)
{
        struct part *pt = part_find(src, topic, partition);

        if (pt)
                pt->eof = true;
}

bool veil_source_all_eof(const struct veil_source *src)
{
        size_t k;

        if (src->n_parts == 0)
                return false;
        for (k = 0; k < src->n_parts; k++)
                if (!src->parts[k].eof)
                        return false;
        return true;
}

void veil_source_batch_done(struct veil_source *src)
{
        size_t k;

        for (k = 0; k < src->n_parts; k++)
                src->parts[k].batch_first = -1;
}

/* Not the group's committed offsets: the dev broker does not store
 * transactional commits, and the batch start is exact anyway. */
int veil_source_rewind(struct veil_source *src, char *errstr,
                       size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *list;
        rd_kafka_error_t *error = NULL;
        int rc                  = 0;
        size_t k;

        list = rd_kafka_topic_partition_list_new(
                src->n_parts ? (int)src->n_parts : 1);
        for (k = 0; k < src->n_parts; k++) {
                src->parts[k].eof = false;
                if (src->parts[k].batch_first >= 0)
                        rd_kafka_topic_partition_list_add(
                                list, src->parts[k].topic,
                                src->parts[k].partition)
                                ->offset = src->parts[k].batch_first;
        }
        if (list->cnt > 0)
                error = rd_kafka_seek_partitions(src->rk, list, 30000);
        if (error) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENET,
                               "rewinding the consumer: %s",
                               rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
        rd_kafka_topic_partition_list_destroy(list);
        veil_source_batch_done(src);
        return rc;
}

rd_kafka_topic_partition_list_t *veil_source_positions(struct veil_source *src)
{
        rd_kafka_topic_partition_list_t *parts = NULL, *offsets;
        int k;

        if (rd_kafka_assignment(src->rk, &parts))
                return NULL;
        rd_kafka_position(src->rk, parts);
        offsets =
                rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
        for (k = 0; k < parts->cnt; k++)
                if (parts->elems[k].offset >= 0)
                        rd_kafka_topic_partition_list_add(
                                offsets, parts->elems[k].topic,
                                parts->elems[k].partition)
                                ->offset = parts->elems[k].offset;
        rd_kafka_topic_partition_list_destroy(parts);
        return offsets;
}
