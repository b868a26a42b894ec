/* veil.h - project-wide constants: version, error codes, small helpers. */
#ifndef VEIL_COMMON_VEIL_H
#define VEIL_COMMON_VEIL_H

#include <stddef.h>

#define VEIL_VERSION "0.1.0"

/* Every int-returning function: 0 on success, one of these (< 0) on failure,
 * with a human message written into the caller's errstr. */
enum veil_err {
        VEIL_OK        = 0,
        VEIL_EINVAL    = -1,  /* bad argument or bad input */
        VEIL_ENOMEM    = -2,  /* allocation failed */
        VEIL_EIO       = -3,  /* file or socket I/O failed */
        VEIL_ECONFIG   = -4,  /* configuration rejected */
        VEIL_ENOTFOUND = -5,  /* subject/schema/file not found */
        VEIL_ENET      = -6,  /* network or server error (retryable) */
        VEIL_EPROTO    = -7,  /* peer answered something we cannot read */
        VEIL_ETYPE     = -8,  /* transform does not apply to a type */
        VEIL_EAUTH     = -9,  /* authentication/authorization refused */
        VEIL_EDATA     = -10, /* malformed record data */
};

/* Exit codes shared by the subcommands (DESIGN.md §5). */
#define VEIL_EXIT_OK 0
#define VEIL_EXIT_GAPS 1
#define VEIL_EXIT_USAGE 2

#define VEIL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* printf-style write into errstr that never overflows and tolerates
 * errstr == NULL. Returns the code passed in, so callers can
 * `return veil_errf(errstr, sz, VEIL_EINVAL, "...")`. */
int veil_errf(char *errstr, size_t errstr_size, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#endif
