/* util.h - small helpers shared by every module (allocation, strings, files).
 */
#ifndef VEIL_COMMON_UTIL_H
#define VEIL_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Allocation that aborts the process on out-of-memory: Veil cannot make
 * progress without memory and a NULL check at every call site hides logic. */
void *veil_malloc(size_t n);
void *veil_calloc(size_t n, size_t sz);
void *veil_realloc(void *p, size_t n);
char *veil_strdup(const char *s);
char *veil_strndup(const char *s, size_t n);

/* Read a whole file into a NUL-terminated buffer the caller frees.
 * Returns NULL and writes errstr on failure. */
char *veil_file_read(const char *path, size_t *lenp, char *errstr,
                     size_t errstr_size);

/* Levenshtein distance, capped: returns > cap as soon as it is known to be
 * larger. Used for "did you mean" suggestions. */
unsigned veil_edit_distance(const char *a, const char *b, unsigned cap);

/* Lower-case hex of `len` bytes into out (2 * len + 1 bytes, NUL
 * included): digests, MACs and fingerprints print the same way. */
void veil_hex_encode(const void *in, size_t len, char *out);

/* Wall-clock time in milliseconds since the epoch. */
int64_t veil_now_ms(void);

#endif
