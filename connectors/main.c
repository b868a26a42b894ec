/* main.c - the `veil` command: subcommand dispatch, --help and --version. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "veil.h"

struct veil_command {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
};

static const struct veil_command commands[] = {
        {"run", veil_cmd_run, "the worker: consume, license, route, retain"},
        {"check", veil_cmd_check,
         "lint the policy against every source schema"},
        {"scan", veil_cmd_scan, "static scan of files for PII"},
        {"broker", veil_cmd_broker,
         "a development Kafka cluster on loopback (mock)"},
        {"erase", veil_cmd_erase, "publish erasure requests"},
        {"dlq", veil_cmd_dlq, "replay dead-lettered records (dlq replay)"},
        {"audit", veil_cmd_audit, "check the audit hash chain (audit verify)"},
        {"report", veil_cmd_report,
         "governance evidence per purpose, from the audit topic"},
        {"reveal", veil_cmd_reveal, "decrypt an encrypt token"},
        {"topics", veil_cmd_topics, "the topics a pipeline needs"},
        {"guard", veil_cmd_guard,
         "resume a purpose the circuit breaker halted (guard resume)"},
        {"config-reference", veil_cmd_config_reference,
         "print the configuration reference (Markdown)"},
};

static void usage(FILE *fp)
{
        size_t i;

        fprintf(fp, "usage: veil [--help] [--version] COMMAND [ARGS]\n\n"
                    "Veil licenses personal data flowing through Kafka.\n\n"
                    "commands:\n");
        for (i = 0; i < VEIL_ARRAY_SIZE(commands); i++)
                fprintf(fp, "  %-8s %s\n", commands[i].name,
                        commands[i].summary);
        fprintf(fp, "\n'veil COMMAND --help' describes one command.\n");
}

int main(int argc, char **argv)
{
        size_t i;

        if (argc < 2) {
                usage(stderr);
                return VEIL_EXIT_USAGE;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
            !strcmp(argv[1], "help")) {
                usage(stdout);
                return VEIL_EXIT_OK;
        }
        if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
                printf("veil %s\n", VEIL_VERSION);
                return VEIL_EXIT_OK;
        }
        for (i = 0; i < VEIL_ARRAY_SIZE(commands); i++)
                if (!strcmp(argv[1], commands[i].name))
                        return commands[i].fn(argc - 1, argv + 1);

        if (argv[1][0] == '-')
                fprintf(stderr, "veil: unknown option '%s'\n", argv[1]);
        else
                fprintf(stderr, "veil: unknown command '%s'\n", argv[1]);
        fprintf(stderr, "usage: veil [--help] [--version] COMMAND [ARGS]\n");
        return VEIL_EXIT_USAGE;
}
