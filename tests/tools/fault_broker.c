/* fault_broker.c - librdkafka's mock cluster driven from stdin: the one place
 * the tests reach its error injection (tests/integration/faults.py wraps it).
 *
 * Usage: fault_broker [--brokers N] [--topic NAME:PARTITIONS]...
 * Prints the bootstrap list on the first line of stdout, then reads one
 * command per line on stdin and answers each with one line: "ok [VALUE]" or
 * "error MESSAGE". End of input, SIGINT or SIGTERM stops it.
 *
 * Commands (API is a Kafka request name such as EndTxn or its number; CODE
 * is an error name as librdkafka spells it, e.g. NOT_COORDINATOR or
 * _TRANSPORT, or its number; CODE*N repeats it N times; broker-errors also
 * take CODE[*N]@RTT_MS, each answer that many ms late):
 *   topic NAME PARTITIONS        create a topic
 *   errors API CODE...           the next requests of API, on any broker,
 *                                fail with these codes in order
 *   broker-errors ID API CODE[*N][@RTT_MS]...
 *                                the same on broker ID only, each with an
 *                                optional response delay; countable:
 *   stack ID API                 "ok N": errors still queued on broker ID
 *   clear API                    drop the cluster-wide errors of API
 *   topic-error TOPIC CODE       Metadata/AddPartitionsToTxn fail for TOPIC
 *   down ID | up ID              disconnect a broker / let it serve (-1: all)
 *   rtt ID MS                    delay every response of a broker
 *   coordinator transaction|group KEY ID
 *                                name the coordinator of a key
 *   quit                         stop
 *
 * Why a separate program and not `veil broker`: the product's command stays
 * what users run; fault injection exists only for the tests. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define FB_MAX_ARGS 1024
#define FB_MAX_ERRS 100000
#define FB_LINE_MAX 65536

/* The request types worth injecting into, by their protocol names. */
static const struct {
        const char *name;
        int16_t key;
} fb_apis[] = {
        {"Produce", 0},          {"Fetch", 1},
        {"ListOffsets", 2},      {"Metadata", 3},
        {"OffsetCommit", 8},     {"OffsetFetch", 9},
        {"FindCoordinator", 10}, {"JoinGroup", 11},
        {"Heartbeat", 12},       {"LeaveGroup", 13},
        {"SyncGroup", 14},       {"ApiVersions", 18},
        {"InitProducerId", 22},  {"AddPartitionsToTxn", 24},
        {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
        {"TxnOffsetCommit", 28},
};

static volatile sig_atomic_t fb_stop;

static void fb_on_signal(int sig)
{
        (void)sig;
        fb_stop = 1;
}

static int fb_parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v     = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

static int fb_parse_api(const char *s, int16_t *key)
{
        size_t i;
        long v;

        for (i = 0; i < sizeof(fb_apis) / sizeof(fb_apis[0]); i++)
                if (!strcasecmp(s, fb_apis[i].name)) {
                        *key = fb_apis[i].key;
                        return 0;
                }
        if (fb_parse_long(s, 0, 100, &v))
                return -1;
        *key = (int16_t)v;
        return 0;
}

/* "NOT_COORDINATOR", "RD_KAFKA_RESP_ERR_NOT_COORDINATOR" or "16". */
static int fb_parse_code(const char *s, rd_kafka_resp_err_t *err)
{
        const struct rd_kafka_err_desc *descs;
        size_t n, i;
        long v;

        if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
                s += 18;
        rd_kafka_get_err_descs(&descs, &n);
        for (i = 0; i < n; i++)
                if (descs[i].name && !strcasecmp(s, descs[i].name)) {
                        *err = descs[i].code;
                        return 0;
                }
        if (fb_parse_long(s, -200, 200, &v))
                return -1;
        *err = (rd_kafka_resp_err_t)v;
        return 0;
}

/* CODE[*N][@RTT]: fills err, count and rtt (0 when absent). */
static int fb_parse_err_spec(char *spec, rd_kafka_resp_err_t *err, long *cnt,
                             long *rtt)
{
        char *at = strchr(spec, '@'), *star;

        *cnt = 1;
        *rtt = 0;
        if (at) {
                *at++ = '\0';
                if (fb_parse_long(at, 0, 600000, rtt))
                        return -1;
        }
        star = strchr(spec, '*');
        if (star) {
                *star++ = '\0';
                if (fb_parse_long(star, 1, FB_MAX_ERRS, cnt))
                        return -1;
        }
        return fb_parse_code(spec, err);
}

/* One command; the answer goes to `out` (without the newline). */
static void fb_command(rd_kafka_mock_cluster_t *mcluster, char *line, char *out,
                       size_t out_size)
{
        char *argv[FB_MAX_ARGS], *save = NULL, *tok;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR, code;
        int argc                = 0, i;
        int16_t api;
        long id, n, cnt, rtt;

        for (tok = strtok_r(line, " \t\r", &save); tok && argc < FB_MAX_ARGS;
             tok = strtok_r(NULL, " \t\r", &save))
                argv[argc++] = tok;
        snprintf(out, out_size, "ok");
        if (argc == 0)
                return;

        if (!strcmp(argv[0], "topic") && argc == 3) {
                if (fb_parse_long(argv[2], 1, 10000, &n))
                        goto usage;
                err = rd_kafka_mock_topic_create(mcluster, argv[1], (int)n, 1);
        } else if (!strcmp(argv[0], "errors") && argc >= 3) {
                rd_kafka_resp_err_t *errs;
                size_t total = 0;

                if (fb_parse_api(argv[1], &api))
                        goto usage;
                errs = calloc(FB_MAX_ERRS, sizeof(*errs));
                if (!errs) {
                        snprintf(out, out_size, "error out of memory");
                        return;
                }
                for (i = 2; i < argc; i++) {
                        if (fb_parse_err_spec(argv[i], &code, &cnt, &rtt) ||
                            rtt || total + (size_t)cnt > FB_MAX_ERRS) {
                                free(errs);
                                goto usage;
                        }
                        while (cnt-- > 0)
                                errs[total++] = code;
                }
                rd_kafka_mock_push_request_errors_array(mcluster, api, total,
                                                        errs);
                free(errs);
        } else if (!strcmp(argv[0], "broker-errors") && argc >= 4) {
                if (fb_parse_long(argv[1], 0, INT32_MAX, &id) ||
                    fb_parse_api(argv[2], &api))
                        goto usage;
                /* The call is variadic only: push one (err, rtt) at a time;
                 * each lands at the end of the stack, so order holds. */
                for (i = 3; i < argc && !err; i++) {
                        if (fb_parse_err_spec(argv[i], &code, &cnt, &rtt))
                                goto usage;
                        while (cnt-- > 0 && !err)
                                err = rd_kafka_mock_broker_push_request_error_rtts(
                                        mcluster, (int32_t)id, api, 1, code,
                                        (int)rtt);
                }
        } else if (!strcmp(argv[0], "stack") && argc == 3) {
                size_t left = 0;

                if (fb_parse_long(argv[1], 0, INT32_MAX, &id) ||
                    fb_parse_api(argv[2], &api))
                        goto usage;
                err = rd_kafka_mock_broker_error_stack_cnt(
                        mcluster, (int32_t)id, api, &left);
                if (!err) {
                        snprintf(out, out_size, "ok %zu", left);
                        return;
                }
        } else if (!strcmp(argv[0], "clear") && argc == 2) {
                if (fb_parse_api(argv[1], &api))
                        goto usage;
                rd_kafka_mock_clear_request_errors(mcluster, api);
        } else if (!strcmp(argv[0], "topic-error") && argc == 3) {
                if (fb_parse_code(argv[2], &code))
                        goto usage;
                rd_kafka_mock_topic_set_error(mcluster, argv[1], code);
        } else if ((!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) &&
                   argc == 2) {
                if (fb_parse_long(argv[1], -1, INT32_MAX, &id))
                        goto usage;
                err = argv[0][0] == 'd'
                              ? rd_kafka_mock_broker_set_down(mcluster,
                                                              (int32_t)id)
                              : rd_kafka_mock_broker_set_up(mcluster,
                                                            (int32_t)id);
        } else if (!strcmp(argv[0], "rtt") && argc == 3) {
                if (fb_parse_long(argv[1], -1, INT32_MAX, &id) ||
                    fb_parse_long(argv[2], 0, 600000, &n))
                        goto usage;
                err = rd_kafka_mock_broker_set_rtt(mcluster, (int32_t)id,
                                                   (int)n);
        } else if (!strcmp(argv[0], "coordinator") && argc == 4) {
                if (fb_parse_long(argv[3], -1, INT32_MAX, &id))
                        goto usage;
                err = rd_kafka_mock_coordinator_set(mcluster, argv[1], argv[2],
                                                    (int32_t)id);
        } else if (!strcmp(argv[0], "quit") && argc == 1) {
                fb_stop = 1;
        } else {
                goto usage;
        }
        if (err)
                snprintf(out, out_size, "error %s", rd_kafka_err2str(err));
        return;
usage:
        snprintf(out, out_size,
                 "error cannot parse '%s' (see tests/tools/fault_broker.c)",
                 argv[0]);
}

/* Reads stdin without blocking the mock: poll, then split lines. Returns
 * -1 at end of input. */
static int fb_serve(rd_kafka_t *rk, rd_kafka_mock_cluster_t *mcluster)
{
        static char buf[FB_LINE_MAX];
        size_t used = 0;
        char answer[512];

        while (!fb_stop) {
                struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
                char *nl;
                ssize_t r;
                int pr;

                rd_kafka_poll(rk, 0);
                pr = poll(&pfd, 1, 100);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr <= 0)
                        continue;
                r = read(STDIN_FILENO, buf + used, sizeof(buf) - 1 - used);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                used += (size_t)r;
                buf[used] = '\0';
                while ((nl = strchr(buf, '\n'))) {
                        *nl = '\0';
                        fb_command(mcluster, buf, answer, sizeof(answer));
                        printf("%s\n", answer);
                        fflush(stdout);
                        used -= (size_t)(nl + 1 - buf);
                        memmove(buf, nl + 1, used + 1);
                }
                if (used == sizeof(buf) - 1) {
                        printf("error line too long\n");
                        fflush(stdout);
                        used = 0;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        struct sigaction sa;
        long brokers = 1, n;
        int i, rc = 1;

        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers") && i + 1 < argc &&
                    !fb_parse_long(argv[i + 1], 1, 16, &brokers)) {
                        i++;
                        continue;
                }
                if (!strcmp(argv[i], "--topic") && i + 1 < argc &&
                    strrchr(argv[i + 1], ':') &&
                    !fb_parse_long(strrchr(argv[i + 1], ':') + 1, 1, 10000,
                                   &n)) {
                        i++;
                        continue;
                }
                fprintf(stderr, "usage: fault_broker [--brokers N] "
                                "[--topic NAME:PARTITIONS]...\n");
                return 2;
        }

        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                fprintf(stderr, "fault_broker: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "fault_broker: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        mcluster = rd_kafka_mock_cluster_new(rk, (int)brokers);
        if (!mcluster) {
                fprintf(stderr, "fault_broker: no mock cluster\n");
                goto out;
        }
        for (i = 1; i < argc; i++) {
                char *colon, *name;
                rd_kafka_resp_err_t err;

                if (strcmp(argv[i], "--topic"))
                        continue;
                colon = strrchr(argv[++i], ':');
                name  = strndup(argv[i], (size_t)(colon - argv[i]));
                err   = rd_kafka_mock_topic_create(mcluster, name,
                                                   atoi(colon + 1), 1);
                free(name);
                if (err) {
                        fprintf(stderr, "fault_broker: topic %s: %s\n", argv[i],
                                rd_kafka_err2str(err));
                        goto out;
                }
        }

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = fb_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);
        fb_serve(rk, mcluster);
        rc = 0;
out:
        if (mcluster)
                rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return rc;
}
