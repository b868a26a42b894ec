/* fuzz_detect.c - libFuzzer harness over the detection engine, its
 * validators and redact_text: any bytes in, findings must be in bounds,
 * sorted and disjoint; redaction must leave nothing a scan finds, and,
 * when one pass did it, change nothing but the spans.
 *
 *   FUZZ_SECONDS=300 scripts/fuzz.sh fuzz_detect
 *   (seeds: tests/fuzz/corpus_detect)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct veil_detect_engine *engines[2];
static struct veil_detect_scratch *scratches[2];
static struct veil_detect_scratch *checks[2]; /* verifies redactions */
static struct veil_text_buf out;

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_detect: %s:%d: %s\n", __FILE__,  \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* a custom detector exercises the start-of-match path, including a
         * pattern that can end inside a UTF-8 sequence */
        static struct veil_detector_def defs[] = {
                {"employee_id", "EMP-[0-9]{6}"},
                {"anyzo", "Zo[^ ]"},
        };
        struct veil_detect_opts som = {.som = true};
        char errstr[256];
        int i;

        (void)argc;
        (void)argv;
        engines[0] = veil_detect_engine_new(defs, 2, errstr, sizeof(errstr));
        engines[1] = veil_detect_engine_new_opts(defs, 2, &som, errstr,
                                                 sizeof(errstr));
        for (i = 0; i < 2; i++) {
                CHECK(engines[i]);
                scratches[i] = veil_detect_scratch_new(engines[i], errstr,
                                                       sizeof(errstr));
                checks[i]    = veil_detect_scratch_new(engines[i], errstr,
                                                       sizeof(errstr));
                CHECK(scratches[i] && checks[i]);
        }
        return 0;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
        size_t i = 0;

        while (i < n) {
                uint8_t c = s[i];
                size_t k, len = c < 0x80             ? 1
                                : (c & 0xE0) == 0xC0 ? 2
                                : (c & 0xF0) == 0xE0 ? 3
                                : (c & 0xF8) == 0xF0 ? 4
                                                     : 0;

                if (!len || i + len > n)
                        return false;
                for (k = 1; k < len; k++)
                        if ((s[i + k] & 0xC0) != 0x80)
                                return false;
                i += len;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text                    = (const char *)data;
        int which                           = size && (data[0] & 1);
        struct veil_detect_engine *engine   = engines[which];
        struct veil_detect_scratch *scratch = scratches[which];
        struct veil_finding *spans;
        const struct veil_finding *f;
        char errstr[256];
        size_t n, i, pos, opos, n_red = 0;

        /* the validators take any bytes of any length */
        {
                static bool (*const valid[])(const char *, size_t) = {
                        veil_valid_luhn,           veil_valid_uk_nhs,
                        veil_valid_ca_sin,         veil_valid_fr_nir,
                        veil_valid_es_dni,         veil_valid_it_fiscal_code,
                        veil_valid_nl_bsn,         veil_valid_in_aadhaar,
                        veil_valid_in_pan,         veil_valid_br_cpf,
                        veil_valid_aws_access_key, veil_valid_jwt,
                };
                size_t k;

                for (k = 0; k < sizeof(valid) / sizeof(valid[0]); k++)
                        (void)valid[k](text, size);
        }
        CHECK(veil_detect_scan(engine, scratch, text, size, &f, &n, errstr,
                               sizeof(errstr)) == 0);
        for (i = 0; i < n; i++) {
                CHECK(f[i].start < f[i].end && f[i].end <= size);
                CHECK(f[i].detector >= 0 &&
                      f[i].detector < veil_detect_count(engine));
                CHECK(f[i].confidence >= VEIL_DETECT_MIN_CONFIDENCE &&
                      f[i].confidence <= 1.0f);
                if (i)
                        CHECK(f[i - 1].end <= f[i].start);
        }
        /* the same bytes again: the scratch's memo answers (texts up to
         * 4 KiB) with the very same findings */
        {
                const struct veil_finding *g;
                size_t m;

                spans = malloc((n ? n : 1) * sizeof(*spans));
                CHECK(spans);
                if (n)
                        memcpy(spans, f, n * sizeof(*spans));
                CHECK(veil_detect_scan(engine, scratch, text, size, &g, &m,
                                       errstr, sizeof(errstr)) == 0);
                CHECK(m == n);
                CHECK(!n || !memcmp(g, spans, n * sizeof(*spans)));
                free(spans);
        }
        /* the scan result lives in the scratch, which redaction reuses */
        spans = malloc((n ? n : 1) * sizeof(*spans));
        CHECK(spans);
        if (n)
                memcpy(spans, f, n * sizeof(*spans));

        CHECK(veil_redact_text(engine, scratch, NULL, text, size, &out, &n_red,
                               errstr, sizeof(errstr)) == 0);
        /* later rounds only add spans (a replacement that became a
         * finding's context), and the result holds nothing */
        CHECK(n_red >= n);
        CHECK(out.data[out.len] == 0);
        CHECK(veil_detect_scan(engine, checks[which], out.data, out.len, &f, &i,
                               errstr, sizeof(errstr)) == 0);
        CHECK(i == 0);
        if (n_red > n) { /* rewritten more than once, or emptied */
                free(spans);
                return 0;
        }
        /* one pass: every byte outside the spans is where it was */
        pos = opos = 0;
        for (i = 0; i < n; i++) {
                const char *name = veil_detect_name(engine, spans[i].detector);
                size_t keep = spans[i].start - pos, nl = strlen(name);

                CHECK(opos + keep + nl + 2 <= out.len);
                CHECK(memcmp(out.data + opos, text + pos, keep) == 0);
                opos += keep;
                CHECK(out.data[opos] == '[');
                CHECK(memcmp(out.data + opos + 1, name, nl) == 0);
                CHECK(out.data[opos + 1 + nl] == ']');
                opos += nl + 2;
                pos = spans[i].end;
        }
        CHECK(out.len - opos == size - pos);
        CHECK(memcmp(out.data + opos, text + pos, size - pos) == 0);
        CHECK(out.data[out.len] == 0);
        if (utf8_valid(data, size))
                CHECK(utf8_valid((const uint8_t *)out.data, out.len));
        free(spans);
        return 0;
}
