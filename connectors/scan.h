/* scan.h - `veil scan` internals shared by its files: files cut into
 * line-aligned pieces scanned with overlap (scan_piece.c), and the report
 * writers that turn a piece's findings into text, JSON lines or SARIF
 * (scan_report.c). */
#ifndef VEIL_CONNECTORS_SCAN_H
#define VEIL_CONNECTORS_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "crypto.h"
#include "detect.h"

/* Pieces are about this size, cut at the first line end after it: small
 * enough that the reports of the pieces in flight stay small (SARIF is ~6x
 * the text on dense input), large enough that the overlap below costs
 * little. */
#define VEIL_SCAN_PIECE (256u << 10)
/* A line longer than this is cut without a line end (Hyperscan's block
 * mode stops at 4 GiB; findings across such a cut are lost). */
#define VEIL_SCAN_PIECE_MAX (256u << 20)
/* Bytes before a piece that its scan also reads, so that detectors see
 * the same context as in one scan of the whole file. No built-in shape
 * matches a line end, so a finding never starts in one piece and ends in
 * the next, and the span recovery walks of common/detect.c never cross a
 * piece's start; what reaches back across it is the context-word window
 * (48 bytes and the byte before). 1 KiB covers that twenty times over,
 * for detectors to come, at 0.4 % more scanning with 256 KiB pieces;
 * tests/unit/test_scan_piece.c and tests/fuzz/fuzz_scan.c check pieces
 * against one scan of the whole text. */
#define VEIL_SCAN_OVERLAP 1024u

/* End of the piece that starts at `start` (a line start) in text[0, len):
 * just after the first '\n' at or after start + piece_size, or len. */
size_t veil_scan_piece_end(const char *text, size_t len, size_t start,
                           size_t piece_size);

/* Number of '\n' bytes in p[0, n). */
size_t veil_scan_count_lines(const char *p, size_t n);

/* Scans text[start, end) with VEIL_SCAN_OVERLAP bytes before it as
 * context and returns the findings that start in [start, end): *f (owned
 * by `scratch`, valid until its next use) holds *n findings whose offsets
 * are relative to text + *base. Errors as veil_detect_scan(). */
int veil_scan_piece(const struct veil_detect_engine *engine,
                    struct veil_detect_scratch *scratch, const char *text,
                    size_t start, size_t end, const struct veil_finding **f,
                    size_t *n, size_t *base, char *errstr, size_t errstr_size);

enum veil_scan_format {
        VEIL_SCAN_TEXT = 0,
        VEIL_SCAN_JSON,
        VEIL_SCAN_SARIF,
};

#define VEIL_SCAN_FP_BYTES 16

/* A scanned file as the reports name it: each form built once per file. */
struct veil_scan_file {
        char *path;      /* as given or found; text format */
        char *path_json; /* JSON string literal, quotes included */
        char *uri_json;  /* SARIF: percent-encoded URI, as a JSON literal */
        size_t path_len, path_json_len, uri_json_len;
};

/* Fills the three names of `path` (copied). veil_scan_file_fini frees
 * them. */
void veil_scan_file_init(struct veil_scan_file *file, const char *path);
void veil_scan_file_fini(struct veil_scan_file *file);

/* What every piece's report needs, read-only while threads scan. */
struct veil_scan_report {
        enum veil_scan_format fmt;
        const struct veil_detect_engine *engine;
        const bool *want;            /* by detector id */
        const char *const *det_name; /* by detector id */
        const size_t *det_len;
        const struct veil_hmac *hmac; /* fingerprint key; NULL: none */
        /* baseline: sorted keys, "F<fingerprint>" or
         * "T<path>\t<line>\t<start>\t<end>\t<detector>" */
        char *const *base;
        size_t n_base;
        bool base_tuples;
};

/* Baseline keys: strcmp order for qsort/bsearch over char *, and the key
 * of a finding's position (caller frees). */
int veil_scan_key_cmp(const void *a, const void *b);
char *veil_scan_tuple_key(const char *path, size_t line, size_t start,
                          size_t end, const char *det);

/* One piece's report, built by one thread. `out` and `fp` are reused
 * from piece to piece (steady state allocates nothing). */
struct veil_scan_out {
        struct veil_text_buf out;
        /* fingerprint input: HMAC-SHA256(salt, path NUL detector NUL
         * value) truncated to VEIL_SCAN_FP_BYTES, in hex */
        struct veil_text_buf fp;
        size_t reported, suppressed;
};

/* Appends the report lines of findings f[0, n) (offsets relative to
 * text + base) to out->out. `text` is the file, [start, end) the piece
 * (start a line start) and `line` the 1-based number of its first line.
 * SARIF results each start with ',' (the writer drops the first one of
 * the run). Returns the number of line ends in the piece. */
size_t veil_scan_report_piece(const struct veil_scan_report *rep,
                              const struct veil_scan_file *file,
                              const char *text, size_t start, size_t end,
                              size_t line, const struct veil_finding *f,
                              size_t n, size_t base, struct veil_scan_out *out);

/* The SARIF document around the results: the run, the tool and each
 * detector declared once as a rule; then the end of the results array
 * and of the document. */
void veil_scan_sarif_begin(const struct veil_detect_engine *engine,
                           struct veil_text_buf *tb);
void veil_scan_sarif_end(struct veil_text_buf *tb);

#endif
