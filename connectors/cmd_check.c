/* cmd_check.c - `veil check -c FILE [--format text|json]`: report every gap
 * between the policy and the source schemas before deployment. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "commands.h"
#include "config.h"
#include "registry.h"
#include "veil.h"

static const struct veil_cmd_help help = {
        "check", "check -c FILE [--format text|json]",
        "Lint the policy against every route's source schema (the latest "
        "version of <source>-value):\nunclassified fields, undefined classes, "
        "transforms that cannot apply to a field's type,\nexpired or expiring "
        "licences, purposes without retention, routes without key_class,\n"
        "sources without a schema.",
        "options:\n"
        "  -c, --config FILE   the pipeline (required)\n"
        "  --format FORMAT     text (default) or json\n"
        "exit: 0 clean (warnings allowed), 1 gaps found, 2 config or "
        "connection error\n"};

static void print_text(const char *path, const char *digest, json_t *report,
                       size_t errors, size_t warnings)
{
        json_t *f;
        size_t i;

        printf("veil check: %s (policy %.12s)\n", path, digest);
        json_array_foreach(report, i, f)
        {
                const char *route =
                        json_string_value(json_object_get(f, "route"));
                const char *purpose =
                        json_string_value(json_object_get(f, "purpose"));
                const char *fpath =
                        json_string_value(json_object_get(f, "path"));

                printf("%s: ",
                       json_string_value(json_object_get(f, "severity")));
                if (route)
                        printf("route %s: ", route);
                if (purpose)
                        printf("purpose %s: ", purpose);
                if (fpath)
                        printf("%s: ", fpath);
                printf("%s [%s]\n",
                       json_string_value(json_object_get(f, "message")),
                       json_string_value(json_object_get(f, "kind")));
        }
        printf("%zu error%s, %zu warning%s\n", errors, errors == 1 ? "" : "s",
               warnings, warnings == 1 ? "" : "s");
}

int veil_cmd_check(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"format", required_argument, NULL, 'f'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        struct veil_config_opts opts = {.skip_key = true};
        const char *path, *format = "text";
        struct veil_config *config = NULL;
        struct veil_registry *reg  = NULL;
        json_t *report             = NULL, *f;
        size_t errors = 0, warnings = 0, i;
        char errstr[1024];
        struct veil_cmd_opts o = {0};
        int c, st, rc = VEIL_EXIT_USAGE;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
                if (c == 'f')
                        format = optarg;
                else if ((st = veil_cmd_opt(&help, &o, c, optarg, argv)) >= 0)
                        return st;
        }
        if ((st = veil_cmd_opts_end(&help, &o, argc, argv, false)))
                return st;
        path = o.path;
        if (strcmp(format, "text") && strcmp(format, "json"))
                return veil_cmd_usage_error(&help, "unknown format '%s'",
                                            format);

        config = veil_cmd_load_config(&help, path, &opts);
        if (!config) {
                return VEIL_EXIT_USAGE;
        }
        reg = veil_registry_new(&config->registry, errstr, sizeof(errstr));
        if (!reg) {
                fprintf(stderr, "veil check: %s%s\n",
                        veil_registry_err_prefix(errstr), errstr);
                goto out;
        }
        report = json_array();
        if (veil_check_run(config, reg, (int64_t)time(NULL), report, errstr,
                           sizeof(errstr))) {
                fprintf(stderr, "veil check: %s\n", errstr);
                goto out;
        }
        json_array_foreach(report, i, f)
        {
                if (!strcmp(json_string_value(json_object_get(f, "severity")),
                            "error"))
                        errors++;
                else
                        warnings++;
        }
        if (!strcmp(format, "json")) {
                json_t *doc =
                        json_pack("{s:s, s:s, s:O, s:{s:i, s:i}}", "config",
                                  path, "policy", config->policy.digest,
                                  "findings", report, "summary", "errors",
                                  (int)errors, "warnings", (int)warnings);

                json_dumpf(doc, stdout, JSON_INDENT(2));
                putchar('\n');
                json_decref(doc);
        } else {
                print_text(path, config->policy.digest, report, errors,
                           warnings);
        }
        rc = errors ? VEIL_EXIT_GAPS : VEIL_EXIT_OK;
out:
        json_decref(report);
        veil_registry_destroy(reg);
        veil_config_destroy(config);
        return rc;
}
