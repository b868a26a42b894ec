/* test_redact.c - the redact_text transform: spans replaced, templates,
 * detector filters, UTF-8 and every other byte left as it was. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"

static struct veil_detect_engine *engine;
static struct veil_detect_scratch *scratch;
static struct veil_text_buf out;

static void setup(void)
{
        char errstr[256]                = "";
        struct veil_detector_def defs[] = {{"employee_id", "EMP-[0-9]{6}"}};

        engine = veil_detect_engine_new(defs, 1, errstr, sizeof(errstr));
        cr_assert(engine, "engine: %s", errstr);
        scratch = veil_detect_scratch_new(engine, errstr, sizeof(errstr));
        cr_assert(scratch, "scratch: %s", errstr);
        memset(&out, 0, sizeof(out));
}

static void teardown(void)
{
        veil_text_buf_free(&out);
        veil_detect_scratch_destroy(scratch);
        veil_detect_engine_destroy(engine);
}

TestSuite(redact, .init = setup, .fini = teardown);

static size_t redact(const struct veil_transform *tx, const char *in,
                     size_t len)
{
        char errstr[256] = "";
        size_t n         = 99;

        cr_assert_eq(veil_redact_text(engine, scratch, tx, in, len, &out, &n,
                                      errstr, sizeof(errstr)),
                     0, "redact: %s", errstr);
        cr_assert(out.data);
        cr_assert_eq(out.data[out.len], 0, "output is NUL-terminated");
        return n;
}

/* An engine with one custom detector, and its scratch (asserted). */
static struct veil_detect_engine *
custom_engine(char *name, char *pattern, struct veil_detect_scratch **scratchp)
{
        struct veil_detector_def defs[] = {{name, pattern}};
        char errstr[256]                = "";
        struct veil_detect_engine *e =
                veil_detect_engine_new(defs, 1, errstr, sizeof(errstr));

        cr_assert(e, "engine: %s", errstr);
        *scratchp = veil_detect_scratch_new(e, errstr, sizeof(errstr));
        cr_assert(*scratchp, "scratch: %s", errstr);
        return e;
}

static struct veil_transform tx_with(char *replace, char **dets, size_t n)
{
        struct veil_transform tx;

        memset(&tx, 0, sizeof(tx));
        tx.kind               = VEIL_TX_REDACT_TEXT;
        tx.redact.replace     = replace;
        tx.redact.detectors   = dets;
        tx.redact.n_detectors = n;
        return tx;
}

Test(redact, default_template)
{
        const char *in = "Mail alice@example.com or call +1 (415) 555-2671.";

        cr_expect_eq(redact(NULL, in, strlen(in)), 2);
        cr_expect_str_eq(out.data, "Mail [email] or call [phone].");
}

Test(redact, every_builtin_and_custom)
{
        const char *in = "a@example.com|+44 20 7946 0958|123-45-6789|"
                         "4111 1111 1111 1111|DE89370400440532013000|"
                         "10.0.0.1|fe80::1|EMP-123456";

        cr_expect_eq(redact(NULL, in, strlen(in)), 8);
        cr_expect_str_eq(out.data, "[email]|[phone]|[us_ssn]|[credit_card]|"
                                   "[iban]|[ipv4]|[ipv6]|[employee_id]");
}

Test(redact, national_ids_and_secrets)
{
        const char *in = "NHS number 943 476 5919|SIN 046 454 286|"
                         "1 84 12 76 451 089 46|12345678Z|RSSMRA85T10A562S|"
                         "BSN 123456782|Aadhaar 4991 1866 5246|ABCPE1234F|"
                         "123.456.789-09|AKIAIOSFODNN7EXAMPLE|"
                         "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.|"
                         "NHS number 943 476 5918";

        cr_expect_eq(redact(NULL, in, strlen(in)), 11);
        cr_expect_str_eq(out.data,
                         "NHS number [uk_nhs]|SIN [ca_sin]|[fr_nir]|[es_dni]|"
                         "[it_fiscal_code]|BSN [nl_bsn]|Aadhaar [in_aadhaar]|"
                         "[in_pan]|[br_cpf]|[aws_access_key]|[jwt]|"
                         "NHS number 943 476 5918");
}

Test(redact, identifier_filter_leaves_the_rest)
{
        const char *in   = "NHS number 943 476 5919, call 415-555-2671";
        char *only_nhs[] = {"uk_nhs"};
        struct veil_transform tx;

        tx = tx_with(NULL, only_nhs, 1);
        cr_expect_eq(redact(&tx, in, strlen(in)), 1);
        cr_expect_str_eq(out.data, "NHS number [uk_nhs], call 415-555-2671");
}

Test(redact, template_placeholders)
{
        const char *in = "x alice@example.com y";
        struct veil_transform tx;

        tx = tx_with("<{detector}>", NULL, 0);
        redact(&tx, in, strlen(in));
        cr_expect_str_eq(out.data, "x <email> y");

        tx = tx_with("***", NULL, 0);
        redact(&tx, in, strlen(in));
        cr_expect_str_eq(out.data, "x *** y");

        tx = tx_with("{detector}:{detector}", NULL, 0);
        redact(&tx, in, strlen(in));
        cr_expect_str_eq(out.data, "x email:email y");

        tx = tx_with("", NULL, 0);
        redact(&tx, in, strlen(in));
        cr_expect_str_eq(out.data, "x  y");

        tx = tx_with("{detectorX}{detector", NULL, 0);
        redact(&tx, in, strlen(in));
        cr_expect_str_eq(out.data, "x {detectorX}{detector y");
}

Test(redact, detector_filter)
{
        const char *in       = "alice@example.com 415-555-2671 EMP-123456";
        char *only_email[]   = {"email"};
        char *phone_custom[] = {"employee_id", "phone"};
        char *none[]         = {"iban"};
        struct veil_transform tx;

        tx = tx_with(NULL, only_email, 1);
        cr_expect_eq(redact(&tx, in, strlen(in)), 1);
        cr_expect_str_eq(out.data, "[email] 415-555-2671 EMP-123456");

        tx = tx_with(NULL, phone_custom, 2);
        cr_expect_eq(redact(&tx, in, strlen(in)), 2);
        cr_expect_str_eq(out.data, "alice@example.com [phone] [employee_id]");

        tx = tx_with(NULL, none, 1);
        cr_expect_eq(redact(&tx, in, strlen(in)), 0);
        cr_expect_str_eq(out.data, in);
}

Test(redact, text_without_findings_is_unchanged)
{
        static const char *const texts[] = {
                "",
                "plain words only",
                "ORD-2024-000123 550e8400-e29b-41d4-a716-446655440000",
                "4111 1111 1111 1112 and 000-12-3456 and 256.1.1.1",
                "Zoë, 北京, Αθήνα, emoji 🙂",
        };
        size_t i;

        for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                size_t len = strlen(texts[i]);

                cr_expect_eq(redact(NULL, texts[i], len), 0, "'%s'", texts[i]);
                cr_expect_eq(out.len, len, "'%s'", texts[i]);
                cr_expect_eq(memcmp(out.data, texts[i], len), 0, "'%s'",
                             texts[i]);
        }
}

Test(redact, utf8_around_spans_is_kept)
{
        const char *in = "Zoë → alice@example.com ← 北京 +44 20 7946 0958 ✓";

        redact(NULL, in, strlen(in));
        cr_expect_str_eq(out.data, "Zoë → [email] ← 北京 [phone] ✓");
}

Test(redact, custom_span_never_splits_utf8)
{
        /* the custom pattern "Zo." ends inside 'ë': the whole character
         * goes, the output stays valid UTF-8 */
        char errstr[256] = "";
        struct veil_detect_scratch *s;
        struct veil_detect_engine *e = custom_engine("zo", "Zo.", &s);
        const char *in               = "hi Zoë!";
        size_t n                     = 0;

        cr_assert(s, "%s", errstr);
        cr_assert_eq(veil_redact_text(e, s, NULL, in, strlen(in), &out, &n,
                                      errstr, sizeof(errstr)),
                     0);
        cr_expect_eq(n, 1);
        cr_expect_str_eq(out.data, "hi [zo]!");
        veil_detect_scratch_destroy(s);
        veil_detect_engine_destroy(e);
}

Test(redact, binary_bytes_pass_through)
{
        static const char in[]   = "\0\xff"
                                   "alice@example.com"
                                   "\0\x80\n";
        static const char want[] = "\0\xff"
                                   "[email]"
                                   "\0\x80\n";

        cr_expect_eq(redact(NULL, in, sizeof(in) - 1), 1);
        cr_assert_eq(out.len, sizeof(want) - 1);
        cr_expect_eq(memcmp(out.data, want, out.len), 0);
}

Test(redact, only_spans_change)
{
        /* rebuild the input from the output: every byte outside the spans
         * is where it was */
        const char *in = "SSN 123-45-6789; card 4111-1111-1111-1111; IBAN "
                         "GB82 WEST 1234 5698 7654 32; end";
        const struct veil_finding *f;
        char errstr[128];
        size_t n, i, pos = 0, opos = 0;
        char *copy;

        cr_assert_eq(veil_detect_scan(engine, scratch, in, strlen(in), &f, &n,
                                      errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(n, 3);
        /* scan results live in the scratch: copy before redacting */
        {
                struct veil_finding spans[3];

                memcpy(spans, f, sizeof(spans));
                redact(NULL, in, strlen(in));
                copy = out.data;
                for (i = 0; i < 3; i++) {
                        size_t keep = spans[i].start - pos;
                        const char *name =
                                veil_detect_name(engine, spans[i].detector);

                        cr_expect_eq(memcmp(copy + opos, in + pos, keep), 0);
                        opos += keep;
                        cr_expect_eq(copy[opos], '[');
                        opos += strlen(name) + 2;
                        pos = spans[i].end;
                }
                cr_expect_str_eq(copy + opos, in + pos);
        }
}

Test(redact, redacted_output_has_nothing_left)
{
        static const char *const texts[] = {
                "call 415-555-2671 or 020 7946 0958, mail a.b@example.org",
                "ssn: 123456789, card 378282246310005, ip ::ffff:10.1.2.3",
                "NL91ABNA0417164300 / 192.168.0.1:8080 / [2001:db8::1]:443",
        };
        const struct veil_finding *f;
        char errstr[128];
        size_t i, n;

        for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                char *copy;

                redact(NULL, texts[i], strlen(texts[i]));
                copy = strdup(out.data);
                cr_assert_eq(veil_detect_scan(engine, scratch, copy,
                                              strlen(copy), &f, &n, errstr,
                                              sizeof(errstr)),
                             0);
                cr_expect_eq(n, 0, "text %zu: %zu findings left", i, n);
                free(copy);
        }
}

Test(redact, buffer_is_reused)
{
        const char *in = "alice@example.com and bob@example.org";
        char *data;
        size_t cap;
        int i;

        redact(NULL, in, strlen(in));
        data = out.data;
        cap  = out.cap;
        for (i = 0; i < 100; i++) {
                redact(NULL, in, strlen(in));
                cr_assert_eq(out.data, data, "steady state reallocated");
                cr_assert_eq(out.cap, cap);
        }
        cr_expect_str_eq(out.data, "[email] and [email]");
        /* a longer text grows the buffer, a shorter one reuses it */
        {
                char big[4096];
                size_t k;

                for (k = 0; k + 20 < sizeof(big); k += 20)
                        memcpy(big + k, "u@example.com 12345 ", 20);
                big[k] = 0;
                redact(NULL, big, strlen(big));
                cr_expect_geq(out.cap, strlen(big) / 2);
                data = out.data;
                redact(NULL, in, strlen(in));
                cr_expect_eq(out.data, data);
        }
}

Test(redact, replacement_that_makes_a_finding_is_redacted_too)
{
        /* the bare number is no phone in the source; once the first phone
         * is "[phone]" that word is its context: the result is scanned
         * again and the second one goes as well */
        const char *in = "+1 212-555-1234; 4155550100 x";
        const struct veil_finding *f;
        char errstr[128];
        size_t n;

        cr_assert_eq(veil_detect_scan(engine, scratch, in, strlen(in), &f, &n,
                                      errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(n, 1, "the source holds one phone");
        cr_expect_eq(redact(NULL, in, strlen(in)), 2);
        cr_expect_str_eq(out.data, "[phone]; [phone] x");
        /* a list without phone leaves both */
        {
                char *only[]             = {"email"};
                struct veil_transform tx = tx_with(NULL, only, 1);

                cr_expect_eq(redact(&tx, in, strlen(in)), 0);
                cr_expect_str_eq(out.data, in);
        }
}

static size_t seen_spans;

static void count_span(void *arg, int detector)
{
        (void)arg;
        (void)detector;
        seen_spans++;
}

Test(redact, text_its_replacement_keeps_matching_is_emptied)
{
        /* a custom detector that matches its own replacement: every rescan
         * finds one; after VEIL_REDACT_ROUNDS rewrites the text is emptied
         * instead of returned with a finding in it, and every scan's span
         * is counted */
        char errstr[256] = "";
        struct veil_detect_scratch *s;
        struct veil_detect_engine *e =
                custom_engine("bracket", "\\[[a-z]+\\]", &s);
        const struct veil_redaction how = {.each = count_span};
        const char *in                  = "see [tag] here";
        size_t n                        = 0;

        cr_assert(s, "%s", errstr);
        seen_spans = 0;
        cr_assert_eq(veil_redact(e, s, &how, in, strlen(in), &out, &n, errstr,
                                 sizeof(errstr)),
                     0);
        cr_expect_eq(n, VEIL_REDACT_ROUNDS + 1);
        cr_expect_eq(seen_spans, VEIL_REDACT_ROUNDS + 1);
        cr_expect_eq(out.len, 0);
        cr_expect_str_eq(out.data, "");
        /* the same through redact_text; a clean text is untouched */
        cr_assert_eq(veil_redact_text(e, s, NULL, in, strlen(in), &out, &n,
                                      errstr, sizeof(errstr)),
                     0);
        cr_expect_eq(n, VEIL_REDACT_ROUNDS + 1);
        cr_expect_str_eq(out.data, "");
        cr_assert_eq(veil_redact_text(e, s, NULL, "no tag", 6, &out, &n, errstr,
                                      sizeof(errstr)),
                     0);
        cr_expect_eq(n, 0);
        cr_expect_str_eq(out.data, "no tag");
        veil_detect_scratch_destroy(s);
        veil_detect_engine_destroy(e);
}

Test(redact, memo_answers_only_for_the_same_bytes)
{
        /* the scratch remembers texts it scanned: the same bytes get the
         * same findings back, a text of the same length that differs,
         * short or long, gets its own */
        char clean[200], dirty[200], other[200];
        const struct veil_finding *f;
        char errstr[128];
        size_t n, k;
        int round;

        for (k = 0; k + 10 <= sizeof(clean); k += 10)
                memcpy(clean + k, "word pad. ", 10);
        memcpy(dirty, clean, sizeof(dirty));
        memcpy(dirty + 100, "a@example.com ", 14);
        for (round = 0; round < 3; round++) {
                cr_assert_eq(veil_detect_scan(engine, scratch, clean,
                                              sizeof(clean), &f, &n, errstr,
                                              sizeof(errstr)),
                             0);
                cr_expect_eq(n, 0);
                cr_assert_eq(veil_detect_scan(engine, scratch, dirty,
                                              sizeof(dirty), &f, &n, errstr,
                                              sizeof(errstr)),
                             0);
                cr_assert_eq(n, 1, "round %d: long text with an email", round);
                cr_expect_eq(f[0].start, 100);
                cr_expect_eq(f[0].end, 113);
                cr_expect_str_eq(veil_detect_name(engine, f[0].detector),
                                 "email");
                /* the same length, the email elsewhere: its own span */
                memcpy(other, clean, sizeof(other));
                memcpy(other + 20, "a@example.com ", 14);
                cr_assert_eq(veil_detect_scan(engine, scratch, other,
                                              sizeof(other), &f, &n, errstr,
                                              sizeof(errstr)),
                             0);
                cr_assert_eq(n, 1);
                cr_expect_eq(f[0].start, 20);
                /* short: the same 24 bytes, then an SSN in their place */
                cr_assert_eq(veil_detect_scan(engine, scratch, clean, 24, &f,
                                              &n, errstr, sizeof(errstr)),
                             0);
                cr_expect_eq(n, 0);
                cr_assert_eq(veil_detect_scan(engine, scratch,
                                              "ssn 123-45-6789 word pad", 24,
                                              &f, &n, errstr, sizeof(errstr)),
                             0);
                cr_expect_eq(n, 1, "round %d: short text with an SSN", round);
        }
        /* a full short table (2,000 clean texts in 1,024 slots) still
         * answers a text with a finding by scanning it */
        for (k = 0; k < 2000; k++) {
                char t[32];
                int len = snprintf(t, sizeof(t), "plain word %zu", k);

                cr_assert_eq(veil_detect_scan(engine, scratch, t, (size_t)len,
                                              &f, &n, errstr, sizeof(errstr)),
                             0);
                cr_expect_eq(n, 0);
        }
        for (k = 0; k < 50; k++) {
                char t[32];
                int len = snprintf(t, sizeof(t), "ssn 123-45-%04zu", 1000 + k);

                cr_assert_eq(veil_detect_scan(engine, scratch, t, (size_t)len,
                                              &f, &n, errstr, sizeof(errstr)),
                             0);
                cr_expect_eq(n, 1, "%s", t);
        }
}
