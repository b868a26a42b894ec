/* test_scan_piece.c - `veil scan`'s pieces and report writers
 * (connectors/scan_piece.c, connectors/scan_report.c): line counting,
 * cuts at line ends, pieces scanned with overlap giving exactly the
 * findings of one scan of the whole labelled corpus, and the JSON / SARIF
 * lines with their fingerprints, columns and line numbers. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "detect.h"
#include "scan.h"
#include "util.h"

static size_t naive_lines(const char *p, size_t n)
{
        size_t i, c = 0;

        for (i = 0; i < n; i++)
                c += p[i] == '\n';
        return c;
}

Test(scan_piece, count_lines_matches_a_byte_loop)
{
        char buf[300];
        size_t off, len, i;
        unsigned seed = 7;

        for (i = 0; i < sizeof(buf); i++) {
                seed = seed * 1103515245u + 12345u;
                /* newlines, bytes >= 0x80 and 0x8a (0x0a with the high
                 * bit) that a sloppy SWAR count would take for '\n' */
                buf[i] = "\n\x8a\xff\x0b\x09a"[(seed >> 16) % 6];
        }
        for (off = 0; off < 9; off++)
                for (len = 0; len + off <= sizeof(buf); len += 13)
                        cr_assert_eq(veil_scan_count_lines(buf + off, len),
                                     naive_lines(buf + off, len),
                                     "off %zu len %zu", off, len);
}

Test(scan_piece, cuts_after_a_line_end)
{
        const char *t = "aaaa\nbbbbbbbb\ncc\n";
        size_t len    = strlen(t);

        cr_assert_eq(veil_scan_piece_end(t, len, 0, 1), 5);
        cr_assert_eq(veil_scan_piece_end(t, len, 0, 5), 14);
        cr_assert_eq(veil_scan_piece_end(t, len, 5, 3), 14);
        cr_assert_eq(veil_scan_piece_end(t, len, 14, 1), len);
        cr_assert_eq(veil_scan_piece_end(t, len, 0, 1000), len);
        /* no line end after the size: the rest of the text */
        cr_assert_eq(veil_scan_piece_end("abcdef", 6, 0, 2), 6);
}

/* tests/corpus from the working directory (make runs tests from the
 * repository root) or next to this source file. */
static char *read_corpus(size_t *len)
{
        char errstr[256], *path = NULL, *text;
        const char *src = __FILE__, *slash = strrchr(src, '/');

        if (access("tests/corpus/corpus.txt", R_OK) == 0)
                path = strdup("tests/corpus/corpus.txt");
        else if (slash && asprintf(&path, "%.*s/../corpus/corpus.txt",
                                   (int)(slash - src), src) < 0)
                path = NULL;
        cr_assert_not_null(path);
        text = veil_file_read(path, len, errstr, sizeof(errstr));
        cr_assert_not_null(text, "%s", errstr);
        free(path);
        return text;
}

static size_t piece_sizes[] = {1, 7, 100, 1000, 4096, 65536};
ParameterizedTestParameters(scan_piece, pieces_find_what_one_scan_finds)
{
        return cr_make_param_array(size_t, piece_sizes,
                                   sizeof(piece_sizes) / sizeof(*piece_sizes));
}

ParameterizedTest(size_t *piece, scan_piece, pieces_find_what_one_scan_finds)
{
        struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        const struct veil_finding *f;
        struct veil_finding *whole;
        char errstr[256];
        size_t len, n_whole, n, base, start = 0, k = 0, i, pieces = 0;
        char *text = read_corpus(&len);

        engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        cr_assert_not_null(engine, "%s", errstr);
        scratch = veil_detect_scratch_new(engine, errstr, sizeof(errstr));
        cr_assert_not_null(scratch, "%s", errstr);
        cr_assert_eq(veil_detect_scan(engine, scratch, text, len, &f, &n_whole,
                                      errstr, sizeof(errstr)),
                     0);
        cr_assert_gt(n_whole, 1000);
        whole = malloc(n_whole * sizeof(*whole));
        memcpy(whole, f, n_whole * sizeof(*whole));

        while (start < len) {
                size_t end = veil_scan_piece_end(text, len, start, *piece);

                cr_assert_eq(veil_scan_piece(engine, scratch, text, start, end,
                                             &f, &n, &base, errstr,
                                             sizeof(errstr)),
                             0);
                for (i = 0; i < n; i++, k++) {
                        cr_assert_lt(k, n_whole, "piece %zu: extra finding",
                                     *piece);
                        cr_assert_eq(base + f[i].start, whole[k].start,
                                     "piece %zu finding %zu", *piece, k);
                        cr_assert_eq(base + f[i].end, whole[k].end);
                        cr_assert_eq(f[i].detector, whole[k].detector);
                        cr_assert_float_eq(f[i].confidence, whole[k].confidence,
                                           1e-6);
                        cr_assert_geq(base + f[i].start, start);
                        cr_assert_lt(base + f[i].start, end);
                }
                start = end;
                pieces++;
        }
        cr_assert_eq(k, n_whole, "piece %zu: %zu of %zu findings", *piece, k,
                     n_whole);
        if (*piece <= 100)
                cr_assert_gt(pieces, 4000); /* about a piece per line */
        free(whole);
        free(text);
        veil_detect_scratch_destroy(scratch);
        veil_detect_engine_destroy(engine);
}

/* ------------------------------------------------------------- reports */
struct fixture {
        struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        struct veil_hmac hmac;
        bool want[64];
        const char *names[64];
        size_t lens[64];
        struct veil_scan_report rep;
        struct veil_scan_file file;
        struct veil_scan_out out;
};

static void fixture_init(struct fixture *fx, enum veil_scan_format fmt,
                         const char *path, bool salt)
{
        char errstr[256];
        int i;

        memset(fx, 0, sizeof(*fx));
        fx->engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        cr_assert_not_null(fx->engine, "%s", errstr);
        fx->scratch =
                veil_detect_scratch_new(fx->engine, errstr, sizeof(errstr));
        cr_assert_not_null(fx->scratch, "%s", errstr);
        cr_assert_leq(veil_detect_count(fx->engine), 64);
        for (i = 0; i < veil_detect_count(fx->engine); i++) {
                fx->want[i]  = true;
                fx->names[i] = veil_detect_name(fx->engine, i);
                fx->lens[i]  = strlen(fx->names[i]);
        }
        veil_hmac_init(&fx->hmac, "k3y", 3);
        fx->rep.fmt      = fmt;
        fx->rep.engine   = fx->engine;
        fx->rep.want     = fx->want;
        fx->rep.det_name = fx->names;
        fx->rep.det_len  = fx->lens;
        fx->rep.hmac     = salt ? &fx->hmac : NULL;
        veil_scan_file_init(&fx->file, path);
}

static void fixture_fini(struct fixture *fx)
{
        veil_text_buf_free(&fx->out.out);
        veil_text_buf_free(&fx->out.fp);
        veil_scan_file_fini(&fx->file);
        veil_detect_scratch_destroy(fx->scratch);
        veil_detect_engine_destroy(fx->engine);
}

/* Reports text in pieces of `piece` bytes, the way `veil scan` does. */
static char *report(struct fixture *fx, const char *text, size_t piece)
{
        size_t len = strlen(text), start = 0, line = 1;
        char errstr[256];

        fx->out.out.len = 0;
        while (start < len) {
                size_t end = veil_scan_piece_end(text, len, start, piece);
                const struct veil_finding *f;
                size_t n, base;

                cr_assert_eq(veil_scan_piece(fx->engine, fx->scratch, text,
                                             start, end, &f, &n, &base, errstr,
                                             sizeof(errstr)),
                             0);
                line += veil_scan_report_piece(&fx->rep, &fx->file, text, start,
                                               end, line, f, n, base, &fx->out);
                start = end;
        }
        return strndup(fx->out.out.data ? fx->out.out.data : "",
                       fx->out.out.len);
}

static void expect_fp(const char *path, const char *det, const char *value,
                      char hex[33])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "%s%c%s%c%s", path, 0, det, 0,
                         value);

        cr_assert(HMAC(EVP_sha256(), "k3y", 3, (unsigned char *)msg, (size_t)n,
                       md, &mdlen));
        veil_hex_encode(md, 16, hex);
}

Test(scan_report, json_lines_with_fingerprints)
{
        const char *text = "first line\nmail bob@example.org now\n"
                           "x\nssn 123-45-6789\n";
        struct fixture fx;
        char fp1[33], fp2[33], want[512], *got;
        size_t piece;

        expect_fp("dir/a \"q\".txt", "email", "bob@example.org", fp1);
        expect_fp("dir/a \"q\".txt", "us_ssn", "123-45-6789", fp2);
        snprintf(want, sizeof(want),
                 "{\"path\":\"dir/a \\\"q\\\".txt\",\"line\":2,\"start\":5,"
                 "\"end\":20,\"detector\":\"email\",\"fingerprint\":\"%s\"}\n"
                 "{\"path\":\"dir/a \\\"q\\\".txt\",\"line\":4,\"start\":4,"
                 "\"end\":15,\"detector\":\"us_ssn\",\"fingerprint\":\"%s\"}"
                 "\n",
                 fp1, fp2);
        fixture_init(&fx, VEIL_SCAN_JSON, "dir/a \"q\".txt", true);
        for (piece = 1; piece < 64; piece *= 4) { /* same in any pieces */
                got = report(&fx, text, piece);
                cr_assert_str_eq(got, want, "piece %zu", piece);
                free(got);
        }
        cr_assert_eq(fx.out.reported, 6); /* 3 runs of 2 */
        fixture_fini(&fx);
}

Test(scan_report, no_salt_no_fingerprint)
{
        struct fixture fx;
        char *got;

        fixture_init(&fx, VEIL_SCAN_JSON, "a", false);
        got = report(&fx, "mail bob@example.org\n", 1 << 20);
        cr_assert_str_eq(got, "{\"path\":\"a\",\"line\":1,\"start\":5,"
                              "\"end\":20,\"detector\":\"email\"}\n");
        free(got);
        fixture_fini(&fx);
}

Test(scan_report, sarif_columns_count_code_points)
{
        /* two findings on a line with multi-byte characters before and
         * between them: columns in code points, offsets in bytes */
        const char *text = "zz\nZoë 北京 bob@example.org und Müller "
                           "alice@example.com\n";
        struct fixture fx;
        char *got;

        fixture_init(&fx, VEIL_SCAN_SARIF, "d/ä b.txt", false);
        got = report(&fx, text, 1 << 20);
        cr_assert(strstr(got, "\"uri\":\"d/%C3%A4%20b.txt\""), "%s", got);
        cr_assert(strstr(got, "\"startLine\":2,\"startColumn\":8,"
                              "\"endColumn\":23,\"byteOffset\":15,"
                              "\"byteLength\":15"),
                  "%s", got);
        cr_assert(strstr(got, "\"startLine\":2,\"startColumn\":35,"
                              "\"endColumn\":52,\"byteOffset\":43,"
                              "\"byteLength\":17"),
                  "%s", got);
        cr_assert(strstr(got, "\"message\":{\"id\":\"found\",\"arguments\":"
                              "[\"0.90\"]}"),
                  "%s", got);
        cr_assert_eq(got[0], ',');
        cr_assert_null(strstr(got, "partialFingerprints"));
        free(got);
        fixture_fini(&fx);
}
