/* cmd_guard.c - `veil guard resume -c FILE PURPOSE` reopens a purpose the
 * circuit breaker halted (a leak with on_leak: halt, or an alert named in
 * halt_on): it writes the purpose's "resumed" record on topics.control,
 * which every running worker follows. `veil guard status` prints which
 * purposes are halted. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "breaker.h"
#include "commands.h"
#include "config.h"
#include "kafka.h"
#include "util.h"
#include "veil.h"

static const struct veil_cmd_help help = {
        "guard", "guard resume|status -c FILE [--timeout SECONDS] [PURPOSE]",
        "The purposes' circuit breaker: reopen a halted purpose, or show which "
        "are halted.",
        "subcommands:\n"
        "  resume PURPOSE   write PURPOSE's resume on topics.control; running "
        "workers\n"
        "                   route to it again within a second, without a "
        "restart.\n"
        "                   Records held while it was halted are dead letters "
        "with\n"
        "                   veil.error purpose-halted: `veil dlq replay "
        "--error\n"
        "                   purpose-halted` delivers them to that purpose "
        "only.\n"
        "  status           one line per purpose: `NAME open` or `NAME "
        "halted`\n"
        "options:\n"
        "  -c, --config FILE     the pipeline\n"
        "  --timeout SECONDS     for Kafka to acknowledge (default 30)\n"
        "  -h, --help            this help\n"
        "exit: 0 resumed (or status printed), 2 usage, config or Kafka "
        "error\n"};

struct delivery {
        rd_kafka_resp_err_t err;
        bool done;
};

static void guard_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                     void *opaque)
{
        struct delivery *d = rkm->_private;

        (void)rk;
        (void)opaque;
        d->err  = rkm->err;
        d->done = true;
}

static void guard_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
        (void)rk;
        if (level <= 3)
                fprintf(stderr, "veil guard: kafka: %s: %s\n", fac, buf);
}

static int resume(const struct veil_config *config, const char *purpose,
                  int timeout_s)
{
        struct veil_breaker_state s;
        struct delivery d     = {0};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[1024], tmo[32], *key, *value;
        size_t key_len, value_len;
        rd_kafka_resp_err_t perr;
        rd_kafka_t *rk;
        int64_t deadline;

        if (veil_kafka_conf_apply(conf, config, NULL, err, sizeof(err))) {
                fprintf(stderr, "veil guard: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return VEIL_EXIT_USAGE;
        }
        snprintf(tmo, sizeof(tmo), "%d", timeout_s * 1000);
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "message.timeout.ms", tmo, err,
                              sizeof(err))) {
                fprintf(stderr, "veil guard: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return VEIL_EXIT_USAGE;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, guard_dr);
        rd_kafka_conf_set_log_cb(conf, guard_log);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, "veil guard: cannot create a producer: %s\n",
                        err);
                return VEIL_EXIT_USAGE;
        }
        memset(&s, 0, sizeof(s));
        snprintf(s.purpose, sizeof(s.purpose), "%s", purpose);
        s.halted = false;
        snprintf(s.reason, sizeof(s.reason), "resume");
        snprintf(s.by, sizeof(s.by), "veil guard resume");
        s.at_ms = veil_now_ms();
        veil_breaker_encode(&s, &key, &key_len, &value, &value_len);
        perr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(config->topics.control),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE(value, value_len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
        free(key);
        free(value);
        if (perr) {
                fprintf(stderr, "veil guard: producing to %s: %s\n",
                        config->topics.control, rd_kafka_err2str(perr));
                rd_kafka_destroy(rk);
                return VEIL_EXIT_USAGE;
        }
        deadline = veil_now_ms() + (int64_t)timeout_s * 1000 + 1000;
        while (!d.done && veil_now_ms() < deadline)
                rd_kafka_poll(rk, 100);
        rd_kafka_flush(rk, 1000);
        rd_kafka_destroy(rk);
        if (!d.done || d.err) {
                fprintf(stderr,
                        "veil guard: the resume of %s was not "
                        "acknowledged: %s\n",
                        purpose,
                        d.done ? rd_kafka_err2str(d.err) : "timed out");
                return VEIL_EXIT_USAGE;
        }
        printf("purpose %s resumed (%s)\n", purpose, config->topics.control);
        return VEIL_EXIT_OK;
}

static int status(const struct veil_config *config)
{
        struct veil_breaker *b;
        char err[1024];
        size_t i;

        b = veil_breaker_new(config, NULL, err, sizeof(err));
        if (!b) {
                fprintf(stderr, "veil guard: %s\n", err);
                return VEIL_EXIT_USAGE;
        }
        for (i = 0; i < config->policy.n_purposes; i++) {
                const char *name = config->policy.purposes[i].name;

                printf("%s %s\n", name,
                       veil_breaker_halted(b, name) ? "halted" : "open");
        }
        veil_breaker_destroy(b);
        return VEIL_EXIT_OK;
}

int veil_cmd_guard(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"timeout", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts lopts = {.skip_kafka_check = true};
        struct veil_config *config;
        const char *path       = NULL, *sub;
        struct veil_cmd_opts o = {.timeout_s = 30, .timeout_max = 3600};
        int c, rc, timeout_s;
        size_t i;

        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                veil_cmd_print_help(&help);
                return VEIL_EXIT_OK;
        }
        if (argc < 2 ||
            (strcmp(argv[1], "resume") && strcmp(argv[1], "status")))
                return veil_cmd_usage_error(&help,
                                            "expected 'resume' or "
                                            "'status'%s%s",
                                            argc >= 2 ? ", got " : "",
                                            argc >= 2 ? argv[1] : "");
        sub = argv[1];
        argc--;
        argv++;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
                if ((rc = veil_cmd_opt(&help, &o, c, optarg, argv)) >= 0)
                        return rc;
        }
        if ((rc = veil_cmd_opts_end(&help, &o, argc, argv, true)))
                return rc;
        path      = o.path;
        timeout_s = o.timeout_s;
        if (!strcmp(sub, "resume") && optind != argc - 1)
                return veil_cmd_usage_error(&help, "resume takes one PURPOSE");
        if (!strcmp(sub, "status") && optind != argc)
                return veil_cmd_usage_error(&help, "status takes no PURPOSE");
        config = veil_cmd_load_config(&help, path, &lopts);
        if (!config)
                return VEIL_EXIT_USAGE;
        if (!config->topics.control) {
                fprintf(stderr, "veil guard: %s: topics.control is not set\n",
                        path);
                veil_config_destroy(config);
                return VEIL_EXIT_USAGE;
        }
        if (!strcmp(sub, "status")) {
                rc = status(config);
                veil_config_destroy(config);
                return rc;
        }
        for (i = 0; i < config->policy.n_purposes; i++)
                if (!strcmp(config->policy.purposes[i].name, argv[optind]))
                        break;
        if (i == config->policy.n_purposes) {
                fprintf(stderr, "veil guard: %s: no purpose named %s\n", path,
                        argv[optind]);
                veil_config_destroy(config);
                return VEIL_EXIT_USAGE;
        }
        rc = resume(config, argv[optind], timeout_s);
        veil_config_destroy(config);
        return rc;
}
