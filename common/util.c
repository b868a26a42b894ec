/* util.c - small helpers shared by every module. */
#define _GNU_SOURCE
#include "util.h"
#include "veil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int veil_errf(char *errstr, size_t errstr_size, int code, const char *fmt, ...)
{
        va_list ap;

        if (errstr && errstr_size) {
                va_start(ap, fmt);
                vsnprintf(errstr, errstr_size, fmt, ap);
                va_end(ap);
        }
        return code;
}

static void oom(size_t n)
{
        fprintf(stderr, "veil: out of memory allocating %zu bytes\n", n);
        abort();
}

void *veil_malloc(size_t n)
{
        void *p = malloc(n ? n : 1);

        if (!p)
                oom(n);
        return p;
}

void *veil_calloc(size_t n, size_t sz)
{
        void *p = calloc(n ? n : 1, sz ? sz : 1);

        if (!p)
                oom(n * sz);
        return p;
}

void *veil_realloc(void *p, size_t n)
{
        void *q = realloc(p, n ? n : 1);

        if (!q)
                oom(n);
        return q;
}

char *veil_strdup(const char *s)
{
        return s ? veil_strndup(s, strlen(s)) : NULL;
}

char *veil_strndup(const char *s, size_t n)
{
        char *d = veil_malloc(n + 1);

        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

char *veil_file_read(const char *path, size_t *lenp, char *errstr,
                     size_t errstr_size)
{
        FILE *fp   = fopen(path, "rb");
        char *buf  = NULL;
        size_t len = 0, cap = 0, n;

        if (!fp) {
                veil_errf(errstr, errstr_size, VEIL_EIO, "%s: %s", path,
                          strerror(errno));
                return NULL;
        }
        do {
                if (cap - len < 4096) {
                        cap = cap ? cap * 2 : 8192;
                        buf = veil_realloc(buf, cap + 1);
                }
                n = fread(buf + len, 1, cap - len, fp);
                len += n;
        } while (n > 0);
        if (ferror(fp)) {
                veil_errf(errstr, errstr_size, VEIL_EIO, "%s: read error",
                          path);
                free(buf);
                fclose(fp);
                return NULL;
        }
        fclose(fp);
        buf[len] = '\0';
        if (lenp)
                *lenp = len;
        return buf;
}

unsigned veil_edit_distance(const char *a, const char *b, unsigned cap)
{
        size_t la = strlen(a), lb = strlen(b), i, j;
        unsigned *row, best, r;

        if (la > 64 || lb > 64)
                return cap + 1;
        row = veil_malloc((lb + 1) * sizeof(*row));
        for (j = 0; j <= lb; j++)
                row[j] = (unsigned)j;
        for (i = 1; i <= la; i++) {
                unsigned diag = row[0];

                row[0] = (unsigned)i;
                best   = row[0];
                for (j = 1; j <= lb; j++) {
                        unsigned up = row[j];
                        unsigned c  = diag + (a[i - 1] != b[j - 1]);

                        if (up + 1 < c)
                                c = up + 1;
                        if (row[j - 1] + 1 < c)
                                c = row[j - 1] + 1;
                        row[j] = c;
                        diag   = up;
                        if (c < best)
                                best = c;
                }
                if (best > cap) {
                        free(row);
                        return cap + 1;
                }
        }
        r = row[lb];
        free(row);
        return r;
}

int64_t veil_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void veil_hex_encode(const void *in, size_t len, char *out)
{
        static const char digits[] = "0123456789abcdef";
        const unsigned char *p     = in;
        size_t i;

        for (i = 0; i < len; i++) {
                out[2 * i]     = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 0xf];
        }
        out[2 * len] = '\0';
}
