/* passthrough.c - the benchmark's baseline: an exactly-once copy of a
 * source topic to two topics with the same librdkafka settings, batching
 * and transactions as `veil run` (one transaction per commit interval or
 * max batch, offsets sent with the consumer's group metadata), but records
 * copied unchanged: no decoding, licensing, DLQ or audit.
 *
 *   passthrough BOOTSTRAP GROUP TXN_ID SOURCE OUT1 OUT2 [INTERVAL_MS MAX]
 *
 * Runs until SIGINT/SIGTERM, then commits the open batch. */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, const char *why)
{
        fprintf(stderr, "passthrough: %s: %s\n", what, why);
        exit(1);
}

static void check(rd_kafka_error_t *error, const char *what)
{
        if (error)
                die(what, rd_kafka_error_string(error));
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
        char err[512];

        if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                die(k, err);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        (void)opaque;
        /* The benchmark runs one instance: nothing to finish on revoke. */
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
                rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
                rd_kafka_error_destroy(
                        rd_kafka_incremental_unassign(rk, parts));
}

static void commit(rd_kafka_t *consumer, rd_kafka_t *producer)
{
        rd_kafka_topic_partition_list_t *parts = NULL, *offsets;
        rd_kafka_consumer_group_metadata_t *cgmd;
        int i;

        rd_kafka_assignment(consumer, &parts);
        rd_kafka_position(consumer, parts);
        offsets = rd_kafka_topic_partition_list_new(parts->cnt + 1);
        for (i = 0; i < parts->cnt; i++)
                if (parts->elems[i].offset >= 0)
                        rd_kafka_topic_partition_list_add(
                                offsets, parts->elems[i].topic,
                                parts->elems[i].partition)
                                ->offset = parts->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(parts);
        cgmd = rd_kafka_consumer_group_metadata(consumer);
        check(rd_kafka_send_offsets_to_transaction(producer, offsets, cgmd,
                                                   30000),
              "send_offsets_to_transaction");
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_topic_partition_list_destroy(offsets);
        check(rd_kafka_commit_transaction(producer, 60000),
              "commit_transaction");
}

int main(int argc, char **argv)
{
        rd_kafka_conf_t *pconf = rd_kafka_conf_new(), *cconf;
        rd_kafka_topic_partition_list_t *topics;
        rd_kafka_t *producer, *consumer;
        long long interval, max, batch = 0, start = 0, copied = 0;
        const char *out[2];
        char err[512];
        int open = 0, k;

        if (argc != 7 && argc != 9) {
                fprintf(stderr, "usage: passthrough BOOTSTRAP GROUP TXN_ID "
                                "SOURCE OUT1 OUT2 [INTERVAL_MS MAX]\n");
                return 2;
        }
        out[0]   = argv[5];
        out[1]   = argv[6];
        interval = argc == 9 ? atoll(argv[7]) : 100;
        max      = argc == 9 ? atoll(argv[8]) : 10000;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);

        set(pconf, "bootstrap.servers", argv[1]);
        set(pconf, "transactional.id", argv[3]);
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
        if (!producer)
                die("producer", err);
        check(rd_kafka_init_transactions(producer, 60000), "init_transactions");

        cconf = rd_kafka_conf_new();
        set(cconf, "partition.assignment.strategy", "cooperative-sticky");
        set(cconf, "auto.offset.reset", "earliest");
        set(cconf, "bootstrap.servers", argv[1]);
        set(cconf, "group.id", argv[2]);
        set(cconf, "isolation.level", "read_committed");
        set(cconf, "enable.auto.commit", "false");
        set(cconf, "enable.partition.eof", "false");
        rd_kafka_conf_set_rebalance_cb(cconf, rebalance_cb);
        consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
        if (!consumer)
                die("consumer", err);
        rd_kafka_poll_set_consumer(consumer);
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, argv[4],
                                          RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(consumer, topics))
                die("subscribe", argv[4]);
        rd_kafka_topic_partition_list_destroy(topics);

        while (!stop) {
                int timeout = 100;
                rd_kafka_message_t *rkm;

                if (open) {
                        long long left = start + interval - now_ms();
                        timeout        = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(consumer, timeout);
                rd_kafka_poll(producer, 0);
                if (rkm && !rkm->err) {
                        if (!open) {
                                check(rd_kafka_begin_transaction(producer),
                                      "begin_transaction");
                                open  = 1;
                                start = now_ms();
                                batch = 0;
                        }
                        for (k = 0; k < 2; k++) {
                                rd_kafka_resp_err_t e;

                                while ((e = rd_kafka_producev(
                                                producer,
                                                RD_KAFKA_V_TOPIC(out[k]),
                                                RD_KAFKA_V_KEY(rkm->key,
                                                               rkm->key_len),
                                                RD_KAFKA_V_VALUE(rkm->payload,
                                                                 rkm->len),
                                                RD_KAFKA_V_MSGFLAGS(
                                                        RD_KAFKA_MSG_F_COPY),
                                                RD_KAFKA_V_TIMESTAMP(
                                                        rd_kafka_message_timestamp(
                                                                rkm, NULL)),
                                                RD_KAFKA_V_END)) ==
                                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                        rd_kafka_poll(producer, 100);
                                if (e)
                                        die("produce", rd_kafka_err2str(e));
                        }
                        batch++;
                        copied++;
                }
                if (rkm)
                        rd_kafka_message_destroy(rkm);
                if (open && (batch >= max || now_ms() - start >= interval)) {
                        commit(consumer, producer);
                        open = 0;
                }
        }
        if (open)
                commit(consumer, producer);
        fprintf(stderr, "passthrough: copied %lld record(s)\n", copied);
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
        rd_kafka_flush(producer, 10000);
        rd_kafka_destroy(producer);
        return 0;
}
