/* broker.c - `veil broker`: a dev Kafka cluster on loopback (the mock). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "commands.h"
#include "util.h"
#include "veil.h"

/* Bounds that catch typos (an extra zero) rather than real limits: the mock
 * keeps every partition in memory and runs one thread per broker. */
#define BROKER_MAX_BROKERS 32
#define BROKER_MAX_PARTITIONS 1024
#define BROKER_MAX_TOPICS 256

static const struct veil_cmd_help broker_help = {
        .name    = "broker",
        .usage   = "broker [--brokers N] [--topic NAME:PARTITIONS]...",
        .summary = "Run a development Kafka cluster on loopback (librdkafka's "
                   "mock cluster).\n"
                   "Prints the bootstrap list on the first line of stdout, "
                   "then serves until\nSIGINT or SIGTERM.",
        .details = "options:\n"
                   "  --brokers N              number of brokers (default 1)\n"
                   "  --topic NAME:PARTITIONS  create a topic before serving "
                   "(repeatable);\n"
                   "                           the mock cannot serve "
                   "CreateTopics\n"
                   "  -h, --help               this help\n"
                   "\n"
                   "Any topic a client names in a metadata request is "
                   "auto-created with 4\npartitions, whatever the client's "
                   "allow.auto.create.topics says (the mock\nspeaks a Metadata "
                   "version too old to carry that flag). CreateTopics is\nnot "
                   "served: admin clients time out waiting for a controller.\n"
                   "\n"
                   "This is not Kafka: each partition keeps only its latest ~5 "
                   "MB, there is\nno compaction, read_committed consumers see "
                   "aborted transactional records\nand transactional offset "
                   "commits are not stored. Use a real broker\n"
                   "(scripts/kafka.sh up) to test exactly-once behaviour.\n",
};

struct broker_topic {
        char *name;
        int partitions;
};

static volatile sig_atomic_t broker_stop;

static void broker_on_signal(int sig)
{
        (void)sig;
        broker_stop = 1;
}

/* Parses a decimal in [min, max]; returns 0 or -1 on anything else. */
static int broker_parse_int(const char *s, int min, int max, int *out)
{
        char *end;
        long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v     = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = (int)v;
        return 0;
}

/* "NAME:PARTITIONS" → t (t->name owned by the caller). */
static int broker_parse_topic(const char *spec, struct broker_topic *t)
{
        const char *colon = strrchr(spec, ':');

        if (!colon || colon == spec)
                return -1;
        if (broker_parse_int(colon + 1, 1, BROKER_MAX_PARTITIONS,
                             &t->partitions))
                return -1;
        t->name = veil_strndup(spec, (size_t)(colon - spec));
        return 0;
}

/* Takes the value of option `name` from "--name=V" or "--name V". Returns
 * the value or NULL when the argument is not this option; *missing is set
 * when the option is there without a value. */
static const char *broker_opt(int argc, char **argv, int *i, const char *name,
                              int *missing)
{
        size_t n      = strlen(name);
        const char *a = argv[*i];

        *missing = 0;
        if (strncmp(a, name, n))
                return NULL;
        if (a[n] == '=')
                return a + n + 1;
        if (a[n] != '\0')
                return NULL;
        if (*i + 1 >= argc) {
                *missing = 1;
                return NULL;
        }
        return argv[++*i];
}

/* Whether topics[cnt] repeats the name of an earlier one. */
static int broker_topic_dup(const struct broker_topic *topics, int cnt)
{
        int i;

        for (i = 0; i < cnt; i++)
                if (!strcmp(topics[i].name, topics[cnt].name))
                        return 1;
        return 0;
}

static void broker_topics_free(struct broker_topic *topics, int cnt)
{
        int i;

        for (i = 0; i < cnt; i++)
                free(topics[i].name);
        free(topics);
}

/* Serves until a signal arrives. Owns nothing it is given. */
static int broker_serve(int broker_cnt, const struct broker_topic *topics,
                        int topic_cnt)
{
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk                    = NULL;
        rd_kafka_mock_cluster_t *mcluster = NULL;
        struct sigaction sa;
        int i, rc = 1;

        /* The mock cluster needs a client handle to live on; a producer
         * with no bootstrap never connects anywhere by itself. */
        conf = rd_kafka_conf_new();
        /* log_level 4 hides the notice that this handle has no
         * bootstrap.servers: true, and meant. Warnings still show. */
        if (rd_kafka_conf_set(conf, "client.id", "veil-broker", errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) !=
                    RD_KAFKA_CONF_OK) {
                fprintf(stderr, "veil broker: config: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "veil broker: cannot create handle: %s\n",
                        errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        conf = NULL; /* owned by rk now */

        mcluster = rd_kafka_mock_cluster_new(rk, broker_cnt);
        if (!mcluster) {
                fprintf(stderr, "veil broker: cannot create mock cluster "
                                "(listening sockets on loopback?)\n");
                goto done;
        }

        for (i = 0; i < topic_cnt; i++) {
                rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
                        mcluster, topics[i].name, topics[i].partitions,
                        broker_cnt < 3 ? broker_cnt : 3);
                if (err) {
                        fprintf(stderr, "veil broker: topic '%s': %s\n",
                                topics[i].name, rd_kafka_err2str(err));
                        goto done;
                }
        }

        /* Handlers go in before the bootstrap line: whoever reads that line
         * may signal us at once. The loop below looks at the flag every
         * 100 ms, so a stop takes at most that long to notice. */
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = broker_on_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
                fprintf(stderr, "veil broker: sigaction: %s\n",
                        strerror(errno));
                goto done;
        }

        /* The first line of stdout is the contract: flush it now, as stdout
         * is a pipe (fully buffered) when a script or test reads it. */
        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        if (fflush(stdout)) {
                fprintf(stderr, "veil broker: cannot write stdout: %s\n",
                        strerror(errno));
                goto done;
        }
        fprintf(stderr,
                "veil broker: %d mock broker%s, %d topic%s created; "
                "SIGINT/SIGTERM stops\n",
                broker_cnt, broker_cnt == 1 ? "" : "s", topic_cnt,
                topic_cnt == 1 ? "" : "s");

        while (!broker_stop)
                rd_kafka_poll(rk, 100); /* serves the handle's own events */
        rc = 0;

done:
        if (mcluster)
                rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return rc;
}

int veil_cmd_broker(int argc, char **argv)
{
        struct broker_topic *topics;
        int topic_cnt = 0, broker_cnt = 1, i, rc, missing;
        const char *v;

        topics = veil_calloc(BROKER_MAX_TOPICS, sizeof(*topics));

        for (i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        veil_cmd_print_help(&broker_help);
                        rc = VEIL_EXIT_OK;
                        goto out;
                }
                if ((v = broker_opt(argc, argv, &i, "--brokers", &missing)) ||
                    missing) {
                        if (missing) {
                                rc = veil_cmd_usage_error(
                                        &broker_help,
                                        "--brokers needs a value");
                                goto out;
                        }
                        if (broker_parse_int(v, 1, BROKER_MAX_BROKERS,
                                             &broker_cnt)) {
                                rc = veil_cmd_usage_error(
                                        &broker_help,
                                        "--brokers wants a number from 1 "
                                        "to %d, not '%s'",
                                        BROKER_MAX_BROKERS, v);
                                goto out;
                        }
                        continue;
                }
                if ((v = broker_opt(argc, argv, &i, "--topic", &missing)) ||
                    missing) {
                        if (missing) {
                                rc = veil_cmd_usage_error(
                                        &broker_help, "--topic needs a value");
                                goto out;
                        }
                        if (topic_cnt == BROKER_MAX_TOPICS) {
                                rc = veil_cmd_usage_error(
                                        &broker_help,
                                        "at most %d --topic options",
                                        BROKER_MAX_TOPICS);
                                goto out;
                        }
                        if (broker_parse_topic(v, &topics[topic_cnt])) {
                                rc = veil_cmd_usage_error(
                                        &broker_help,
                                        "--topic wants NAME:PARTITIONS with "
                                        "1 to %d partitions, not '%s'",
                                        BROKER_MAX_PARTITIONS, v);
                                goto out;
                        }
                        if (broker_topic_dup(topics, topic_cnt)) {
                                rc = veil_cmd_usage_error(
                                        &broker_help, "topic '%s' given twice",
                                        topics[topic_cnt].name);
                                free(topics[topic_cnt].name);
                                goto out;
                        }
                        topic_cnt++;
                        continue;
                }
                if (a[0] == '-')
                        rc = veil_cmd_usage_error(&broker_help,
                                                  "unknown option '%s'", a);
                else
                        rc = veil_cmd_usage_error(
                                &broker_help, "unexpected argument '%s'", a);
                goto out;
        }

        rc = broker_serve(broker_cnt, topics, topic_cnt);
out:
        broker_topics_free(topics, topic_cnt);
        return rc;
}
