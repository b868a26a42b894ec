/* cmd_run.c - `veil run -c FILE [--once]`: load the pipeline, install the
 * signal handlers and run the worker until told to stop. */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "filter.h"
#include "log.h"
#include "registry.h"
#include "veil.h"
#include "worker.h"

static const struct veil_cmd_help help_run = {
        "run", "run -c FILE [--once]",
        "The worker: consume the routes' source topics, license each record "
        "for every purpose,\nproduce to the purpose topics exactly once (one "
        "Kafka transaction per batch),\ndead-letter what cannot be "
        "processed, and write hash-chained audit events.",
        "options:\n  -c, --config FILE   the pipeline (config/veil.yaml)\n"
        "  --once              stop after every assigned partition has been "
        "read to its end\n"
        "signals: SIGINT/SIGTERM commit the open batch and leave the group; "
        "SIGHUP reloads\nthe policy, and the registry client when its "
        "settings or files changed (an invalid\nfile or an unusable "
        "registry is rejected, the old ones stay)\n"
        "metrics: with `metrics: { listen: HOST:PORT }`, GET /metrics "
        "(Prometheus text format)\nand GET /healthz (200 while the worker "
        "runs, 503 after a fatal error or a stall)\n"
        "exit: 0 on clean shutdown (SIGINT/SIGTERM, or --once done), 1 on a "
        "fatal Kafka or\nsetup error (or a registry that refuses Veil while "
        "records flow), 2 on a usage\nor config error (or a registry that "
        "refuses Veil at start: TLS, credentials)\n"};

static void on_signal(int sig)
{
        if (sig == SIGHUP)
                veil_worker_reload();
        else
                veil_worker_stop();
}

/* A purpose whose licence has passed gets nothing: say so by its licence,
 * not as a retention matter. */
static void warn_expired_licences(const struct veil_config *config)
{
        const struct veil_policy *policy = &config->policy;
        char msg[256];
        size_t i;

        veil_log_set_level(config->log_level);
        for (i = 0; i < policy->n_purposes; i++)
                if (veil_license_expired_msg(&policy->purposes[i],
                                             (int64_t)time(NULL), msg,
                                             sizeof(msg)))
                        veil_log("warn", "license-expired",
                                 "%s: purpose %s receives nothing and its "
                                 "keys are tombstoned (license-expired)",
                                 msg, policy->purposes[i].name);
}

/* Asks the registry once before anything starts: a refusal (TLS that fails
 * on a certificate, HTTP 401/403) is a configuration error that waiting
 * cannot mend, so the worker does not start (exit 2). A registry that is
 * down may come back: the worker starts and its records wait for it. */
static int probe_registry(const struct veil_config *config, char *errstr,
                          size_t errstr_size)
{
        struct veil_registry *reg;
        char err[768];
        int rc;

        reg = veil_registry_new(&config->registry, err, sizeof(err));
        if (!reg)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG, "%s%s",
                                 veil_registry_err_prefix(err), err);
        rc = veil_registry_probe(reg, err, sizeof(err));
        veil_registry_destroy(reg);
        if (rc == VEIL_EAUTH)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG, "%s", err);
        if (rc)
                veil_log("warn", "registry",
                         "%s; starting anyway: records wait for the "
                         "registry",
                         err);
        return 0;
}

int veil_cmd_run(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"once", no_argument, NULL, 'o'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts lopts = {0};
        struct veil_worker_opts wopts = {0};
        struct veil_config *config;
        struct sigaction sa;
        struct veil_cmd_opts o = {0};
        const char *path;
        char errstr[1024];
        int c, rc, lock_fd;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'o':
                        wopts.once = true;
                        break;
                case 'h':
                        veil_cmd_print_help(&help_run);
                        printf("\nfilters (in chain order):\n");
                        veil_chain_print_help();
                        return VEIL_EXIT_OK;
                default:
                        if ((rc = veil_cmd_opt(&help_run, &o, c, optarg,
                                               argv)) >= 0)
                                return rc;
                }
        }
        if ((rc = veil_cmd_opts_end(&help_run, &o, argc, argv, false)))
                return rc;
        path = o.path;

        config = veil_cmd_load_config(&help_run, path, &lopts);
        if (!config) {
                return VEIL_EXIT_USAGE;
        }
        /* Two live workers sharing group + instance on this host would
         * share a transactional.id: the second is refused here, before
         * it fences the first. Held until the process exits. */
        lock_fd = veil_instance_lock(config, errstr, sizeof(errstr));
        if (lock_fd < 0) {
                fprintf(stderr, "veil run: %s\n", errstr);
                veil_config_destroy(config);
                return VEIL_EXIT_USAGE;
        }
        warn_expired_licences(config);
        if (probe_registry(config, errstr, sizeof(errstr))) {
                fprintf(stderr, "veil run: %s\n", errstr);
                veil_config_destroy(config);
                close(lock_fd);
                return VEIL_EXIT_USAGE;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        wopts.config_path = path;

        rc = veil_worker_run(config, &wopts, errstr, sizeof(errstr));
        veil_config_destroy(config);
        close(lock_fd);
        if (rc) {
                fprintf(stderr, "veil run: %s\n", errstr);
                return rc == VEIL_ECONFIG ? VEIL_EXIT_USAGE : 1;
        }
        return VEIL_EXIT_OK;
}
