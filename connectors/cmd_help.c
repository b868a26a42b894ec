/* cmd_help.c - shared help and usage-error printing for the subcommands. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>

#include "commands.h"
#include "config.h"
#include "veil.h"

void veil_cmd_print_help(const struct veil_cmd_help *h)
{
        printf("usage: veil %s\n\n%s\n", h->usage, h->summary);
        if (h->details)
                printf("\n%s", h->details);
}

struct veil_config *veil_cmd_load_config(const struct veil_cmd_help *h,
                                         const char *path,
                                         const struct veil_config_opts *opts)
{
        char errstr[1024];
        struct veil_config *config =
                veil_config_load(path, opts, errstr, sizeof(errstr));

        if (!config)
                fprintf(stderr, "veil %s: %s\n", h->name, errstr);
        return config;
}

int veil_cmd_int_arg(const char *s, long lo, long hi, int *out)
{
        char *end;
        long v;

        errno = 0;
        v     = strtol(s, &end, 10);
        if (!*s || *end || errno || v < lo || v > hi)
                return -1;
        *out = (int)v;
        return 0;
}

int veil_cmd_usage_error(const struct veil_cmd_help *h, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "veil %s: ", h->name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nusage: veil %s\n", h->usage);
        return VEIL_EXIT_USAGE;
}

int veil_cmd_opt(const struct veil_cmd_help *h, struct veil_cmd_opts *o, int c,
                 const char *arg, char **argv)
{
        switch (c) {
        case 'c':
                o->path = arg;
                return -1;
        case 't':
                if (o->timeout_max > 0 &&
                    !veil_cmd_int_arg(arg, 1, o->timeout_max, &o->timeout_s))
                        return -1;
                if (o->timeout_max > 0)
                        return veil_cmd_usage_error(
                                h,
                                "--timeout takes seconds (1 to %d), got '%s'",
                                o->timeout_max, arg);
                break;
        case 'h':
                veil_cmd_print_help(h);
                return VEIL_EXIT_OK;
        default:
                break;
        }
        return veil_cmd_usage_error(h, "unknown or incomplete option '%s'",
                                    argv[optind - 1]);
}

int veil_cmd_opts_end(const struct veil_cmd_help *h,
                      const struct veil_cmd_opts *o, int argc, char **argv,
                      bool operands)
{
        if (!operands && optind < argc)
                return veil_cmd_usage_error(h, "unexpected argument '%s'",
                                            argv[optind]);
        if (!o->path)
                return veil_cmd_usage_error(h, "-c FILE is required");
        return 0;
}
