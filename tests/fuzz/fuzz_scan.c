/* fuzz_scan.c - libFuzzer harness over `veil scan`'s pieces
 * (connectors/scan_piece.c): any text cut into line-aligned pieces of any
 * size, each scanned with the bytes before it, must give exactly the
 * findings of one scan of the whole text, and the report writers must
 * keep within the text and count its lines.
 *
 *   scripts/fuzz.sh fuzz_scan
 *
 * The first input byte picks the piece size (1 to 256 bytes); the rest is
 * the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "scan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct veil_detect_engine *engine;
static struct veil_detect_scratch *scratch;
static struct veil_finding *whole;
static size_t whole_cap;
static bool want[64];
static const char *names[64];
static size_t lens[64];
static struct veil_scan_out out;

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_scan: %s:%d: %s\n", __FILE__,    \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char errstr[256];
        int i;

        (void)argc;
        (void)argv;
        engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        CHECK(engine);
        scratch = veil_detect_scratch_new(engine, errstr, sizeof(errstr));
        CHECK(scratch);
        CHECK(veil_detect_count(engine) <= 64);
        for (i = 0; i < veil_detect_count(engine); i++) {
                want[i]  = true;
                names[i] = veil_detect_name(engine, i);
                lens[i]  = strlen(names[i]);
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct veil_scan_report rep = {
                .fmt      = VEIL_SCAN_SARIF,
                .engine   = engine,
                .want     = want,
                .det_name = names,
                .det_len  = lens,
        };
        struct veil_scan_file file = {
                .path          = "f",
                .path_json     = "\"f\"",
                .uri_json      = "\"f\"",
                .path_len      = 1,
                .path_json_len = 3,
                .uri_json_len  = 3,
        };
        const struct veil_finding *f;
        const char *text;
        char errstr[256];
        size_t piece, len, n_whole, n, base, start = 0, k = 0, i, lines = 0;

        if (!size)
                return 0;
        piece = (size_t)data[0] + 1;
        text  = (const char *)data + 1;
        len   = size - 1;

        CHECK(veil_detect_scan(engine, scratch, text, len, &f, &n_whole, errstr,
                               sizeof(errstr)) == 0);
        if (n_whole > whole_cap) {
                whole_cap = n_whole;
                whole     = realloc(whole, whole_cap * sizeof(*whole));
                CHECK(whole);
        }
        if (n_whole)
                memcpy(whole, f, n_whole * sizeof(*whole));

        while (start < len) {
                size_t end = veil_scan_piece_end(text, len, start, piece);

                CHECK(end > start && end <= len);
                CHECK(end == len || text[end - 1] == '\n');
                CHECK(veil_scan_piece(engine, scratch, text, start, end, &f, &n,
                                      &base, errstr, sizeof(errstr)) == 0);
                for (i = 0; i < n; i++, k++) {
                        CHECK(k < n_whole);
                        CHECK(base + f[i].start == whole[k].start);
                        CHECK(base + f[i].end == whole[k].end);
                        CHECK(f[i].detector == whole[k].detector);
                        CHECK(f[i].confidence == whole[k].confidence);
                }
                out.out.len = 0;
                lines += veil_scan_report_piece(&rep, &file, text, start, end,
                                                1 + lines, f, n, base, &out);
                start = end;
        }
        CHECK(k == n_whole);
        CHECK(lines == veil_scan_count_lines(text, len));
        return 0;
}
