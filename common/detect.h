/* detect.h - PII detection in free text: one Hyperscan database per policy
 * (built-in detectors plus the policy's custom ones), a scratch per thread,
 * findings as byte spans, and the `redact_text` transform built on them. */
#ifndef VEIL_COMMON_DETECT_H
#define VEIL_COMMON_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* Built-in detector ids; custom detectors follow from VEIL_DET__BUILTIN in
 * the order they were given to veil_detect_engine_new(). */
enum veil_detector_id {
        VEIL_DET_EMAIL = 0,
        VEIL_DET_PHONE,
        VEIL_DET_US_SSN,
        VEIL_DET_CREDIT_CARD,
        VEIL_DET_IBAN,
        VEIL_DET_IPV4,
        VEIL_DET_IPV6,
        VEIL_DET_UK_NHS,
        VEIL_DET_CA_SIN,
        VEIL_DET_FR_NIR,
        VEIL_DET_ES_DNI,
        VEIL_DET_IT_FISCAL_CODE,
        VEIL_DET_NL_BSN,
        VEIL_DET_IN_AADHAAR,
        VEIL_DET_IN_PAN,
        VEIL_DET_BR_CPF,
        VEIL_DET_AWS_ACCESS_KEY,
        VEIL_DET_JWT,
        VEIL_DET__BUILTIN,
};

/* Findings below this confidence are not reported: weak shapes (a bare
 * 9- to 12-digit number, an identifier that shares its digits with
 * others) only reach it with a context word nearby. */
#define VEIL_DETECT_MIN_CONFIDENCE 0.5f

/* One finding: [start, end) byte offsets into the scanned text. */
struct veil_finding {
        size_t start;
        size_t end;
        int detector;     /* enum veil_detector_id or a custom id */
        float confidence; /* 0..1, raised by context words */
};

struct veil_detect_engine;
struct veil_detect_scratch;

/* Engine options (benchmarks and tests; NULL means the defaults). */
struct veil_detect_opts {
        /* Compile the built-in patterns with HS_FLAG_SOM_LEFTMOST and take
         * the span start from Hyperscan instead of recovering it by hand
         * from the end offset. Slower; kept to measure the difference. */
        bool som;
};

/* True when `name` is a built-in detector (docs/detectors.md lists them). */
bool veil_detect_known(const char *name);

/* Compiles one block-mode database from the built-ins and `custom`
 * (name + Hyperscan pattern each; names must differ from the built-ins and
 * from each other). The engine copies what it needs; `custom` stays the
 * caller's. Returns NULL with a message naming the bad detector on error.
 * An engine is read-only after creation and may be shared by threads. */
struct veil_detect_engine *
veil_detect_engine_new(const struct veil_detector_def *custom, size_t n_custom,
                       char *errstr, size_t errstr_size);
struct veil_detect_engine *veil_detect_engine_new_opts(
        const struct veil_detector_def *custom, size_t n_custom,
        const struct veil_detect_opts *opts, char *errstr, size_t errstr_size);
void veil_detect_engine_destroy(struct veil_detect_engine *engine);

/* Number of detectors (built-ins + custom); ids are 0 .. count-1. */
int veil_detect_count(const struct veil_detect_engine *engine);
/* Id of a detector name, or -1. */
int veil_detect_id(const struct veil_detect_engine *engine, const char *name);
/* Name of an id (owned by the engine), or NULL. */
const char *veil_detect_name(const struct veil_detect_engine *engine, int id);

/* Per-thread working memory for one engine: Hyperscan scratch, the
 * finding list that scans reuse, so that steady state allocates nothing,
 * and a memo of texts scanned (below; it answers for that engine only). */
struct veil_detect_scratch *
veil_detect_scratch_new(const struct veil_detect_engine *engine, char *errstr,
                        size_t errstr_size);
void veil_detect_scratch_destroy(struct veil_detect_scratch *scratch);

/* Scans `buf` (any bytes, need not be NUL-terminated, at most 4 GiB - 1)
 * and sets *findings to the reported findings: sorted by start, not
 * overlapping, confidence >= VEIL_DETECT_MIN_CONFIDENCE. The array belongs
 * to `scratch` and stays valid until its next use. Returns 0, VEIL_EINVAL
 * (text too large) or VEIL_EIO (Hyperscan failed).
 *
 * The result is a function of the engine and the bytes alone: `scratch`
 * remembers recent texts by value, bytes compared (short ones that held no
 * finding, in a direct-mapped table; the last 4 up to 4 KiB with their
 * findings), and answers a text met again without scanning it. */
int veil_detect_scan(const struct veil_detect_engine *engine,
                     struct veil_detect_scratch *scratch, const char *buf,
                     size_t len, const struct veil_finding **findings,
                     size_t *n_findings, char *errstr, size_t errstr_size);

/* Runs the same database over `buf` with a callback that only counts
 * Hyperscan matches (no span recovery, no validation): the ceiling the
 * benchmark compares veil_detect_scan() against. */
int veil_detect_scan_raw(const struct veil_detect_engine *engine,
                         struct veil_detect_scratch *scratch, const char *buf,
                         size_t len, uint64_t *n_matches, char *errstr,
                         size_t errstr_size);

/* Validators: pure functions over a value in its compact form (separators
 * removed), as the issuer defines it. `s` need not be NUL-terminated; a
 * wrong length is invalid. The engine calls them after a shape matched;
 * they are public so that tests and other modules check values the same
 * way. */
bool veil_valid_luhn(const char *digits, size_t n);
/* 10 digits, mod-11 check digit (weights 10..2; remainder 10 is invalid) */
bool veil_valid_uk_nhs(const char *s, size_t n);
/* 9 digits, Luhn; first digit 8 (business numbers) is not a person's */
bool veil_valid_ca_sin(const char *s, size_t n);
/* 15 chars: sex, year, month, department (or 2A/2B), commune, order,
 * key = 97 - (first 13 mod 97) */
bool veil_valid_fr_nir(const char *s, size_t n);
/* DNI 8 digits + letter, NIE X/Y/Z + 7 digits + letter: mod-23 letter */
bool veil_valid_es_dni(const char *s, size_t n);
/* 16 chars (upper case): name letters, year, month letter, day (1-31,
 * 41-71), place, odd/even check letter; omocodia letters accepted */
bool veil_valid_it_fiscal_code(const char *s, size_t n);
/* 9 digits, the 11-proof (weights 9..2 and -1) */
bool veil_valid_nl_bsn(const char *s, size_t n);
/* 12 digits, first 2-9, Verhoeff */
bool veil_valid_in_aadhaar(const char *s, size_t n);
/* 10 chars: 3 letters, holder type (ABCFGHJLPT), letter, 4 digits (not
 * 0000), letter */
bool veil_valid_in_pan(const char *s, size_t n);
/* 11 digits, two mod-11 check digits, not one digit repeated */
bool veil_valid_br_cpf(const char *s, size_t n);
/* 20 chars: AKIA or ASIA, then 16 of base32's alphabet A-Z 2-7 */
bool veil_valid_aws_access_key(const char *s, size_t n);
/* header.payload.signature in base64url; the header decodes to a JSON
 * object with a string "alg" */
bool veil_valid_jwt(const char *s, size_t n);

/* A growable byte buffer owned by the caller and reused across calls.
 * `data` is NUL-terminated after a successful call (not counted in len). */
struct veil_text_buf {
        char *data;
        size_t len;
        size_t cap;
};

void veil_text_buf_free(struct veil_text_buf *tb);

/* Which findings a redaction replaces, and with what. */
struct veil_redaction {
        const char *replace; /* "{detector}" is the detector's name;
                              * NULL: "[{detector}]" */
        bool (*want)(void *arg, int detector); /* NULL: every finding */
        void (*each)(void *arg, int detector); /* told of each wanted finding
                                                * of every scan; may be NULL */
        void *arg;
};

/* Rewrites a text at most this many times before emptying it. */
#define VEIL_REDACT_ROUNDS 4

/* Scans `in` and writes it to `out` with each wanted finding replaced;
 * the result is scanned again, since a replacement can itself be the
 * context word that makes the number beside it a finding ("[phone];
 * 4155550100"), and redacted again until a scan finds nothing wanted in
 * it. A text still holding a wanted finding after VEIL_REDACT_ROUNDS
 * rewrites (a custom detector that matches its own replacement) becomes
 * "" (fail closed). *n_redacted gets the wanted findings of every scan;
 * `out` is written only when that is not 0 (else `in` stands). Rounds
 * swap `out`'s buffer with one of the scratch's, so out->data may move.
 * A rewritten text the last scan found clean is in the scratch's memo:
 * a scan of the same bytes (the egress guard's) costs no second pass.
 * Returns 0, or the error of veil_detect_scan() with `out` emptied. */
int veil_redact(const struct veil_detect_engine *engine,
                struct veil_detect_scratch *scratch,
                const struct veil_redaction *how, const char *in, size_t len,
                struct veil_text_buf *out, size_t *n_redacted, char *errstr,
                size_t errstr_size);

/* The redact_text transform: veil_redact() with tx->redact.replace, limited
 * to tx->redact.detectors when that list is set; `out` always gets the
 * result (replacing its previous contents), a copy of `in` when nothing
 * was wanted. Everything but the spans is copied byte for byte; spans
 * never split a UTF-8 sequence. `tx` may be NULL (defaults). *n_redacted
 * (may be NULL) gets veil_redact()'s count. Returns 0 or the error of
 * veil_detect_scan(). */
int veil_redact_text(const struct veil_detect_engine *engine,
                     struct veil_detect_scratch *scratch,
                     const struct veil_transform *tx, const char *in,
                     size_t len, struct veil_text_buf *out, size_t *n_redacted,
                     char *errstr, size_t errstr_size);

#endif
