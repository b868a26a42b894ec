/* scan_piece.c - `veil scan` cuts files into line-aligned pieces that
 * threads scan independently; each piece is scanned with the bytes before
 * it as context, so that its findings are those of one whole-file scan. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>

#include "scan.h"

size_t veil_scan_piece_end(const char *text, size_t len, size_t start,
                           size_t piece_size)
{
        size_t want = start + piece_size, hi;
        const char *nl;

        if (piece_size >= len - start)
                return len;
        hi = len - start > VEIL_SCAN_PIECE_MAX ? start + VEIL_SCAN_PIECE_MAX
                                               : len;
        if (want >= hi)
                return hi;
        nl = memchr(text + want, '\n', hi - want);
        return nl ? (size_t)(nl - text) + 1 : hi;
}

/* Eight bytes at a time: the main thread counts every line of the input
 * to number the pieces, so this runs at memory speed, not one branch per
 * byte. */
size_t veil_scan_count_lines(const char *p, size_t n)
{
        const uint64_t ones = 0x0101010101010101ull, nl = ones * '\n';
        const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
        size_t count = 0, i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t w, x, t;

                memcpy(&w, p + i, 8);
                x = w ^ nl; /* zero bytes where '\n' was */
                /* high bit set in each byte of x that is zero */
                t = ~(((x & low7) + low7) | x | low7);
                /* one bit per '\n' at bit 7 of its byte: sum the bytes */
                count += (size_t)(((t >> 7) * ones) >> 56);
        }
        for (; i < n; i++)
                count += p[i] == '\n';
        return count;
}

int veil_scan_piece(const struct veil_detect_engine *engine,
                    struct veil_detect_scratch *scratch, const char *text,
                    size_t start, size_t end, const struct veil_finding **f,
                    size_t *n, size_t *base, char *errstr, size_t errstr_size)
{
        size_t from = start > VEIL_SCAN_OVERLAP ? start - VEIL_SCAN_OVERLAP : 0;
        const struct veil_finding *all;
        size_t n_all, skip = 0;
        int rc;

        rc = veil_detect_scan(engine, scratch, text + from, end - from, &all,
                              &n_all, errstr, errstr_size);
        if (rc)
                return rc;
        /* findings are sorted by start: drop those of the context */
        while (skip < n_all && all[skip].start < start - from)
                skip++;
        *f    = skip < n_all ? all + skip : NULL; /* `all` may be NULL */
        *n    = n_all - skip;
        *base = from;
        return 0;
}
