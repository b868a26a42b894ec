/* commands.h - the `veil` subcommands, one function each, dispatched by main.
 */
#ifndef VEIL_CONNECTORS_COMMANDS_H
#define VEIL_CONNECTORS_COMMANDS_H

#include <stdbool.h>

/* Each takes the arguments after the subcommand name (argv[0] is the
 * subcommand) and returns the process exit code. `--help` is handled by
 * each command itself and returns 0. Unknown options → usage, 2. */
int veil_cmd_run(int argc, char **argv);
int veil_cmd_check(int argc, char **argv);
int veil_cmd_scan(int argc, char **argv);
int veil_cmd_broker(int argc, char **argv);
int veil_cmd_erase(int argc, char **argv);
int veil_cmd_dlq(int argc, char **argv);
int veil_cmd_audit(int argc, char **argv);
int veil_cmd_report(int argc, char **argv);
int veil_cmd_reveal(int argc, char **argv);
int veil_cmd_topics(int argc, char **argv);
int veil_cmd_config_reference(int argc, char **argv);
int veil_cmd_guard(int argc, char **argv);

/* Prints "usage: veil CMD …" with the help text of a command. */
struct veil_cmd_help {
        const char *name;
        const char *usage;   /* one line after "veil " */
        const char *summary; /* one line */
        const char *details; /* options, multi-line, may be NULL */
};

void veil_cmd_print_help(const struct veil_cmd_help *h);
struct veil_config;
struct veil_config_opts;
/* Loads the command's config file; on error prints "veil NAME: FILE:LINE:
 * …" to stderr and returns NULL (the command then exits 2). */
struct veil_config *veil_cmd_load_config(const struct veil_cmd_help *h,
                                         const char *path,
                                         const struct veil_config_opts *opts);
/* Parses a whole decimal integer option argument in [lo, hi] into *out.
 * 0, or -1 when it is empty, not a number or out of range. */
int veil_cmd_int_arg(const char *s, long lo, long hi, int *out);
/* Writes "veil CMD: MESSAGE\nusage: veil USAGE\n" to stderr and returns 2. */
int veil_cmd_usage_error(const struct veil_cmd_help *h, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The options the config-reading commands share: -c FILE, --timeout
 * SECONDS (1 to timeout_max; 0 means the command has no --timeout) and -h.
 * Set timeout_s to the command's default before the getopt loop. */
struct veil_cmd_opts {
        const char *path;
        int timeout_s;
        int timeout_max;
};

/* Called from a getopt loop with an option the command does not handle
 * itself. Returns -1 when the loop goes on, else the exit code for the
 * command to return: 0 after -h printed the help, 2 after a usage error
 * (a bad --timeout, an unknown or incomplete option). */
int veil_cmd_opt(const struct veil_cmd_help *h, struct veil_cmd_opts *o, int c,
                 const char *arg, char **argv);
/* After the getopt loop: -c was given and, unless `operands`, nothing is
 * left over. 0, or the usage error's exit code (2). */
int veil_cmd_opts_end(const struct veil_cmd_help *h,
                      const struct veil_cmd_opts *o, int argc, char **argv,
                      bool operands);

#endif
