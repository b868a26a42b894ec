/* cmd_pending.c - subcommands whose contract is fixed (DESIGN.md §5) but
 * whose implementation lands with later issues: they document themselves
 * and refuse to run, so nobody mistakes them for working ones. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "veil.h"

static const struct veil_cmd_help help_dlq = {
        "dlq", "dlq replay -c FILE [--error CODE]",
        "Feed dead-lettered records back through the pipeline once their "
        "cause is fixed.",
        "options:\n  -c, --config FILE   the pipeline\n"
        "  --error CODE        only records with this veil.error code\n"};
static const struct veil_cmd_help help_audit = {
        "audit", "audit verify -c FILE",
        "Check the audit topic's hash chain end to end.",
        "exit: 0 intact, 1 broken\n"};

static int pending(const struct veil_cmd_help *h, int issue, int argc,
                   char **argv)
{
        int i;

        for (i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        veil_cmd_print_help(h);
                        return VEIL_EXIT_OK;
                }
        fprintf(stderr,
                "veil %s: not available in this build yet (tracked in issue "
                "%d)\n",
                h->name, issue);
        return VEIL_EXIT_USAGE;
}

int veil_cmd_dlq(int argc, char **argv)
{
        return pending(&help_dlq, 5, argc, argv);
}

int veil_cmd_audit(int argc, char **argv)
{
        return pending(&help_audit, 5, argc, argv);
}
