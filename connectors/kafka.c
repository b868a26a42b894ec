/* kafka.c - librdkafka plumbing shared by the worker, its retention side
 * and the commands (see kafka.h). */
#include <string.h>

#include "kafka.h"
#include "util.h"
#include "veil.h"

int veil_kafka_conf_apply(rd_kafka_conf_t *conf,
                          const struct veil_config *config,
                          const char *bootstrap, char *errstr,
                          size_t errstr_size)
{
        char err[512];
        size_t i;

        for (i = 0; i < config->n_kafka; i++)
                if (rd_kafka_conf_set(conf, config->kafka[i].key,
                                      config->kafka[i].value, err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK)
                        return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                         "kafka.%s: %s", config->kafka[i].key,
                                         err);
        if (bootstrap &&
            rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                              sizeof(err)) != RD_KAFKA_CONF_OK)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "bootstrap.servers: %s", err);
        return 0;
}

rd_kafka_resp_err_t veil_kafka_produce(rd_kafka_t *rk, const char *topic,
                                       int32_t partition, const void *key,
                                       size_t key_len, const void *value,
                                       size_t value_len,
                                       rd_kafka_headers_t *hdrs,
                                       int64_t timestamp)
{
        rd_kafka_resp_err_t err;

        for (;;) {
                err = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(topic),
                        RD_KAFKA_V_PARTITION(partition),
                        RD_KAFKA_V_KEY((void *)key, key_len),
                        RD_KAFKA_V_VALUE((void *)value, value_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_TIMESTAMP(timestamp > 0 ? timestamp : 0),
                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                /* Let deliveries drain. */
                rd_kafka_poll(rk, 100);
        }
        if (err && hdrs)
                rd_kafka_headers_destroy(hdrs);
        return err;
}

static const struct {
        bool producer;
        const char *key, *value;
} bounds[] = {
        {false, "queued.max.messages.kbytes", "8192"},
        {false, "fetch.max.bytes", "8388608"},
        {false, "max.partition.fetch.bytes", "1048576"},
        {true, "queue.buffering.max.kbytes", "32768"},
        /* Small batches wait a little for company: fewer, fuller produce
         * requests per transaction. */
        {true, "linger.ms", "10"},
};

int veil_kafka_conf_bound(rd_kafka_conf_t *conf,
                          const struct veil_config *config, bool producer,
                          char *errstr, size_t errstr_size)
{
        char err[512];
        size_t i;

        for (i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
                /* the user's own setting stands */
                if (bounds[i].producer != producer ||
                    veil_config_kafka(config, bounds[i].key))
                        continue;
                if (rd_kafka_conf_set(conf, bounds[i].key, bounds[i].value, err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK)
                        return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                         "kafka.%s: %s", bounds[i].key, err);
        }
        return 0;
}

/* Polls in a row, 50 ms each, with nothing assigned that make the queue
 * quiet: a rebalance already queued is served by the first. */
#define LEAVE_QUIET_POLLS 4
/* The bound on serving the queue before the close. */
#define LEAVE_TIMEOUT_MS 10000

void veil_kafka_consumer_leave(rd_kafka_t *rk)
{
        int64_t deadline = veil_now_ms() + LEAVE_TIMEOUT_MS;
        int quiet        = 0;

        rd_kafka_unsubscribe(rk);
        while (quiet < LEAVE_QUIET_POLLS && veil_now_ms() < deadline) {
                rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 50);
                rd_kafka_topic_partition_list_t *held = NULL;

                if (rkm) {
                        rd_kafka_message_destroy(rkm);
                        quiet = 0;
                        continue;
                }
                if (rd_kafka_assignment(rk, &held) || held->cnt > 0)
                        quiet = 0;
                else
                        quiet++;
                if (held)
                        rd_kafka_topic_partition_list_destroy(held);
        }
        rd_kafka_consumer_close(rk);
}
