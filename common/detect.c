/* detect.c - the PII detection engine: Hyperscan finds shapes without
 * start-of-match, the match callback recovers each span by hand from the
 * reported end offset and validates it (Luhn, mod-97, mod-11, mod-23,
 * Verhoeff, SSN ranges, octets, IPv6 forms, JSON headers, boundaries,
 * context words); redact_text is built on top. */
#define _GNU_SOURCE
#include "detect.h"
#include "util.h"
#include "veil.h"

#include <arpa/inet.h>
#include <hs.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ shapes
 *
 * Hyperscan does the scanning; the patterns below are the shapes it looks
 * for. None asks for start of match: with HS_FLAG_SOM_LEFTMOST the same set
 * scans several times slower (the email pattern alone drops from ~10 GB/s
 * to ~250 MB/s: an unbounded prefix makes SOM track every candidate start),
 * see bench/README.md. The start is found by hand instead, walking back
 * from the end over a bounded window; this is also where the validators
 * live, since Hyperscan has no look-around or back-references.
 *
 * phone, us_ssn and credit_card share one "digits with separators" shape:
 * their digit counts barely overlap (9 / 10-15 / 13-19) and one NFA scans
 * much faster than three (measured 360 vs 210 MB/s raw on mixed text). The
 * validators decide which detector a span belongs to. The national ids
 * that are only digits (uk_nhs, ca_sin, fr_nir, nl_bsn, in_aadhaar,
 * br_cpf) join that shape too: they cost no extra Hyperscan work, only
 * validators on the spans it already reports.
 *
 * Many of them share digit counts with each other and with phones (9, 10,
 * 11, 12 digits), and a checksum alone passes one random number in 10 or
 * 11: such a bare run is reported only next to a context word of its own
 * (CONF_WEAK), the nearest one deciding between rivals; a number whose
 * nearest context word names an identifier of its shape is never a phone.
 * The ids with letters get short anchors of their own. Every pattern
 * without a literal in it costs the whole database: the full shapes of
 * DNI, PAN and fiscal code (18, 10 and 16 positions) together halved its
 * raw rate, a caseless fiscal code alone cut it 2.5 times, where one
 * anchor for the three ("a digit, then a letter that ends a word") costs
 * about a tenth. AWS keys (AKIA/ASIA) and JWTs (ey...) carry literals and
 * cost nothing measurable.
 *
 * Measured on the bench text (108 MB, 796k findings of the first seven
 * detectors, none of the new ones: the findings are the same), CPU time
 * of one thread, best of five, against the seven-detector engine in the
 * same run: raw Hyperscan 470 -> 415 MB/s, veil_detect_scan 218 -> 175
 * MB/s, `veil scan` 180 -> 139 MB/s. The rest of the engine's cost is the
 * context walk that claims need (a fitted id's words are looked for even
 * when a phone is valid); it walks lazily, as far back as a question
 * needs. */
enum shape {
        SHAPE_EMAIL = 0,
        SHAPE_NUMERIC,
        SHAPE_IBAN,
        SHAPE_IPV4,
        SHAPE_IPV6,
        SHAPE_IPV6_DC, /* "::": its ends are found by hand (ipv6_dc) */
        SHAPE_CHECK_LETTER,
        SHAPE_NIR_CORSICA,
        SHAPE_AWS,
        SHAPE_JWT,
        SHAPE_CUSTOM,
        SHAPE__COUNT,
};

struct builtin_pattern {
        const char *re;
        enum shape shape;
        const char *re_som; /* the full shape, when `re` is only an anchor */
};

#define HEX "[0-9A-Fa-f]"
static const struct builtin_pattern builtin_patterns[] = {
        {"[A-Za-z0-9._%+-]@[A-Za-z0-9]", SHAPE_EMAIL,
         "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*"
         "\\.[A-Za-z]{2,24}\\b"},
        /* unbounded: a longer run only adds an end the validators reject,
         * and the database compiles four times faster than with {8,18} */
        {"(?:\\+|\\(|\\b)[0-9](?:[ .\\-/()]{0,2}[0-9]){8,}\\b", SHAPE_NUMERIC,
         NULL},
        {"\\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\\b",
         SHAPE_IBAN, NULL},
        {"\\b(?:[0-9]{1,3}\\.){3}[0-9]{1,3}\\b", SHAPE_IPV4, NULL},
        {"(?:" HEX "{1,4}:){7}" HEX "{1,4}\\b", SHAPE_IPV6, NULL},
        /* Without SOM only "::" is scanned for: the groups around it made
         * the whole database a fifth slower (288 vs 342 MB/s raw on the
         * dense bench text). ipv6_dc() walks forward from each "::" to the
         * ends the full form below would report. */
        {"::", SHAPE_IPV6_DC,
         "(?:" HEX "{1,4}(?::" HEX "{1,4}){0,6})?::(?:" HEX "{1,4}(?::" HEX
         "{1,4}){0,6}\\b)?"},
        {":(?:[0-9]{1,3}\\.){3}[0-9]{1,3}\\b", SHAPE_IPV6, NULL},
        /* the digits-only NIR is a numeric span; Corsica has letters */
        {"\\b[1278] ?[0-9]{2} ?[0-9]{2} ?2[AB] ?[0-9]{3} ?[0-9]{3} "
         "?[0-9]{2}\\b",
         SHAPE_NIR_CORSICA, NULL},
        /* DNI, NIE, PAN and the fiscal code end in a letter after a digit:
         * one short anchor, the ids walked back by hand. Their full
         * patterns (the SOM form) took the database from 460 to 245 MB/s
         * raw on the bench text; with the anchor it stays above 400. */
        {"[0-9][ -]?[A-Z]\\b", SHAPE_CHECK_LETTER,
         "\\b(?:[A-Z]{6}[0-9]{2}[ABCDEHLMPRST][0-9]{2}[A-Z][0-9]{3}[A-Z]|"
         "[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]|"
         "(?:[0-9]{8}|[0-9]{2}\\.[0-9]{3}\\.[0-9]{3}|[XYZ][ -]?[0-9]{7})"
         "[ -]?[A-Z])\\b"},
        {"\\bA[KS]IA[A-Z2-7]{16}\\b", SHAPE_AWS, NULL},
        /* up to the second dot; the signature is walked by hand */
        {"\\bey[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{2,}\\.", SHAPE_JWT, NULL},
};
#undef HEX
#define N_BUILTIN_PATTERNS VEIL_ARRAY_SIZE(builtin_patterns)

static const char *const builtin_names[VEIL_DET__BUILTIN] = {
        [VEIL_DET_EMAIL]          = "email",
        [VEIL_DET_PHONE]          = "phone",
        [VEIL_DET_US_SSN]         = "us_ssn",
        [VEIL_DET_CREDIT_CARD]    = "credit_card",
        [VEIL_DET_IBAN]           = "iban",
        [VEIL_DET_IPV4]           = "ipv4",
        [VEIL_DET_IPV6]           = "ipv6",
        [VEIL_DET_UK_NHS]         = "uk_nhs",
        [VEIL_DET_CA_SIN]         = "ca_sin",
        [VEIL_DET_FR_NIR]         = "fr_nir",
        [VEIL_DET_ES_DNI]         = "es_dni",
        [VEIL_DET_IT_FISCAL_CODE] = "it_fiscal_code",
        [VEIL_DET_NL_BSN]         = "nl_bsn",
        [VEIL_DET_IN_AADHAAR]     = "in_aadhaar",
        [VEIL_DET_IN_PAN]         = "in_pan",
        [VEIL_DET_BR_CPF]         = "br_cpf",
        [VEIL_DET_AWS_ACCESS_KEY] = "aws_access_key",
        [VEIL_DET_JWT]            = "jwt",
};

/* Context words that raise a finding's confidence when they occur within
 * a few words before it (lower case, whole words; UTF-8 letters are part
 * of a word, compared byte for byte). In the languages where the id is
 * used. */
static const char *const ctx_email[] = {"email", "mail", "contact", "reach",
                                        NULL};
static const char *const ctx_phone[] = {
        "phone", "telephone", "tel",      "call", "mobile", "cell",
        "fax",   "contact",   "whatsapp", "sms",  "ph",     NULL};
static const char *const ctx_ssn[]  = {"ssn",      "ssns",     "social",
                                       "security", "taxpayer", NULL};
static const char *const ctx_card[] = {"card", "credit",     "debit",
                                       "visa", "mastercard", "amex",
                                       "cc",   "payment",    NULL};
static const char *const ctx_iban[] = {"iban", "account", "bank", "sepa", NULL};
static const char *const ctx_ip[]   = {"ip",      "ipv4", "ipv6",   "host",
                                       "address", "addr", "client", "server",
                                       "peer",    "from", NULL};
static const char *const ctx_nhs[]  = {"nhs", "nhsno", "gig", NULL};
static const char *const ctx_sin[]  = {"sin", "nas", "insurance", "assurance",
                                       NULL};
static const char *const ctx_nir[]  = {"nir",     "insee",    "secu",
                                       "sécu",    "securite", "sécurité",
                                       "sociale", "vitale",   NULL};
static const char *const ctx_dni[]  = {"dni",       "nie",       "nif",
                                       "documento", "identidad", NULL};
static const char *const ctx_fiscal[]  = {"codice", "fiscale", "cf", NULL};
static const char *const ctx_bsn[]     = {"bsn", "burgerservicenummer",
                                          "sofinummer", "sofi", NULL};
static const char *const ctx_aadhaar[] = {"aadhaar", "aadhar", "adhaar", "uid",
                                          "uidai",   "आधार",   NULL};
static const char *const ctx_pan[]     = {"pan", "permanent", "income", NULL};
static const char *const ctx_cpf[] = {"cpf", "cadastro", "contribuinte", NULL};
static const char *const ctx_aws[] = {"aws", "akid", "access", "key", NULL};
static const char *const ctx_jwt[] = {"jwt", "token", "bearer", "authorization",
                                      NULL};
static const char *const *const ctx_words[VEIL_DET__BUILTIN] = {
        [VEIL_DET_EMAIL]          = ctx_email,
        [VEIL_DET_PHONE]          = ctx_phone,
        [VEIL_DET_US_SSN]         = ctx_ssn,
        [VEIL_DET_CREDIT_CARD]    = ctx_card,
        [VEIL_DET_IBAN]           = ctx_iban,
        [VEIL_DET_IPV4]           = ctx_ip,
        [VEIL_DET_IPV6]           = ctx_ip,
        [VEIL_DET_UK_NHS]         = ctx_nhs,
        [VEIL_DET_CA_SIN]         = ctx_sin,
        [VEIL_DET_FR_NIR]         = ctx_nir,
        [VEIL_DET_ES_DNI]         = ctx_dni,
        [VEIL_DET_IT_FISCAL_CODE] = ctx_fiscal,
        [VEIL_DET_NL_BSN]         = ctx_bsn,
        [VEIL_DET_IN_AADHAAR]     = ctx_aadhaar,
        [VEIL_DET_IN_PAN]         = ctx_pan,
        [VEIL_DET_BR_CPF]         = ctx_cpf,
        [VEIL_DET_AWS_ACCESS_KEY] = ctx_aws,
        [VEIL_DET_JWT]            = ctx_jwt,
};
#define CTX_BOOST 0.3f
#define CTX_WINDOW 48   /* bytes looked at before a finding */
#define CTX_TOKENS 4    /* words looked at before a finding */
#define CTX_WORD_MAX 24 /* bytes; longer tokens are no context word */
_Static_assert(CTX_WORD_MAX < 32, "ctx_lens holds a bit per length");
#define CTX_WORDS_MAX 255 /* context words of all built-ins together */

/* Base confidences: what the shape alone says. */
#define CONF_EMAIL 0.9f
#define CONF_PHONE_INTL 0.9f
#define CONF_PHONE_NANP 0.75f
#define CONF_PHONE_NATIONAL 0.7f
#define CONF_WEAK 0.3f /* bare 9/10-digit numbers: need context */
#define CONF_SSN_DASHED 0.85f
#define CONF_SSN_SPACED 0.6f
#define CONF_CARD_GROUPED 0.9f
#define CONF_CARD_BARE 0.7f
#define CONF_IBAN 0.95f
#define CONF_IPV4 0.7f
#define CONF_IPV6 0.8f
#define CONF_CUSTOM 0.9f
#define CONF_NIR_GROUPED 0.85f    /* 1 84 12 76 451 089 46 */
#define CONF_CPF_PUNCTUATED 0.85f /* 123.456.789-09 */
#define CONF_DNI 0.75f            /* 12345678Z: one number in 23 passes */
#define CONF_DNI_DOTTED 0.85f     /* 12.345.678-Z, and NIEs */
#define CONF_FISCAL_CODE 0.9f
#define CONF_PAN 0.6f /* a structure, no published check */
#define CONF_AWS 0.95f
#define CONF_JWT 0.95f

struct veil_detect_engine {
        hs_database_t *db;
        bool som;
        size_t n_patterns;
        enum shape *pattern_shape; /* by Hyperscan id */
        int *pattern_detector;     /* custom detector id, else -1 */
        int n_detectors;
        char **names; /* by detector id */
        /* every built-in's context words, grouped by first byte: those
         * starting with byte c are ctx_list[ctx_start[c] .. ctx_start[c+1]) */
        struct ctx_word {
                const char *word;
                uint8_t len;
                uint8_t det;
        } ctx_list[CTX_WORDS_MAX];
        uint8_t ctx_start[257];
        /* ctx_lens[c]: bit n when a context word starting with byte c has
         * n bytes (most tokens are turned down by this alone) */
        uint32_t ctx_lens[256];
        /* nd_want[n]: bit k for each numeric detector (enum numdet) that
         * takes n digits; n >= NUM_WINDOW takes nd_want[NUM_WINDOW] */
        uint16_t nd_want[65];
};

/* Texts scanned before, remembered by value with their findings: a scan
 * is a function of the engine and the bytes alone, so the same bytes met
 * again are answered without a scan: a country or a status in every
 * record; the text redact_text has just verified, which the egress guard
 * scans next; a note two purposes' redact_text both scan. Exact: the bytes
 * are compared, not only a hash. Short texts found clean live in a
 * direct-mapped table, 64 bytes a slot; longer ones (free text, up to
 * MEMO_LONG_MAX), clean or not, in a few slots replaced in turn. */
#define MEMO_SHORT_SLOTS 1024
#define MEMO_SHORT_MAX 52
#define MEMO_LONG_SLOTS 4
#define MEMO_LONG_MAX 4096
struct memo_short {
        uint64_t hash;
        uint32_t len; /* 0: empty slot */
        char s[MEMO_SHORT_MAX];
};

struct memo_long {  /* compared by length, then bytes */
        size_t len; /* 0: empty slot */
        char *s;    /* MEMO_LONG_MAX bytes once used */
        struct veil_finding *f;
        size_t n, cap;
};

struct veil_detect_scratch {
        const struct veil_detect_engine *engine; /* the memo's */
        hs_scratch_t *hs;
        struct veil_finding *f;
        size_t n, cap;
        struct memo_short *shorts; /* MEMO_SHORT_SLOTS */
        struct memo_long longs[MEMO_LONG_SLOTS];
        unsigned next_long;
        struct veil_text_buf round; /* veil_redact's other buffer */
};

/* ---------------------------------------------------------- byte classes
 * ASCII only and locale-free: bytes >= 0x80 (UTF-8) are never word
 * characters, as for Hyperscan's \b. One table lookup per byte: the
 * backward walks in the match callback are the engine's hot loops. */
enum {
        CL_DIGIT = 1,
        CL_UPPER = 2,
        CL_LOWER = 4,
        CL_HEXA  = 8,  /* a-f, A-F */
        CL_EMAIL = 16, /* ._%+- (with alphanumerics: an email local part) */
        CL_UTF8  = 32, /* >= 0x80: part of a context word */
};
#define CL_(c)                                                                 \
        (((c) >= '0' && (c) <= '9' ? CL_DIGIT : 0) |                           \
         ((c) >= 'A' && (c) <= 'Z' ? CL_UPPER : 0) |                           \
         ((c) >= 'a' && (c) <= 'z' ? CL_LOWER : 0) |                           \
         (((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F') ? CL_HEXA   \
                                                                   : 0) |      \
         ((c) == '.' || (c) == '_' || (c) == '%' || (c) == '+' || (c) == '-'   \
                  ? CL_EMAIL                                                   \
                  : 0) |                                                       \
         ((c) >= 0x80 ? CL_UTF8 : 0))
#define CL4_(c) CL_(c), CL_((c) + 1), CL_((c) + 2), CL_((c) + 3)
#define CL16_(c) CL4_(c), CL4_((c) + 4), CL4_((c) + 8), CL4_((c) + 12)
#define CL64_(c) CL16_(c), CL16_((c) + 16), CL16_((c) + 32), CL16_((c) + 48)
static const unsigned char byte_class[256] = {
        CL64_(0),
        CL64_(64),
        CL64_(128),
        CL64_(192),
};
#undef CL64_
#undef CL16_
#undef CL4_
#undef CL_

static inline bool is_digit(unsigned char c)
{
        return (unsigned)(c - '0') < 10u;
}
static inline bool is_upper(unsigned char c)
{
        return byte_class[c] & CL_UPPER;
}
static inline bool is_upper_digit(unsigned char c)
{
        return byte_class[c] & (CL_UPPER | CL_DIGIT);
}
static inline bool is_alpha(unsigned char c)
{
        return byte_class[c] & (CL_UPPER | CL_LOWER);
}
static inline bool is_alnum(unsigned char c)
{
        return byte_class[c] & (CL_DIGIT | CL_UPPER | CL_LOWER);
}
static inline bool is_word(unsigned char c)
{
        return is_alnum(c) || c == '_';
}
static inline bool is_hex(unsigned char c)
{
        return byte_class[c] & (CL_DIGIT | CL_HEXA);
}
static inline unsigned char to_lower(unsigned char c)
{
        return is_upper(c) ? (unsigned char)(c | 0x20) : c;
}

/* Characters that join two tokens into one (`ORD-2024`, `1.2.3.4.5`,
 * `a_b`, `x@y`): a span glued to a word through one of them is part of
 * something larger, not a finding. */
static inline bool is_glue(unsigned char c)
{
        return c == '-' || c == '.' || c == '/' || c == '_' || c == '@';
}

/* The byte before `start` does not continue the token. */
static bool left_free(const unsigned char *b, size_t start)
{
        if (start == 0)
                return true;
        if (is_word(b[start - 1]))
                return false;
        if (is_glue(b[start - 1]) && start >= 2 && is_alnum(b[start - 2]))
                return false;
        return true;
}

/* The byte at `end` does not continue the token; for an address (`addr`)
 * `:` and `/` may follow (a port, a prefix length). */
static bool right_free(const unsigned char *b, size_t len, size_t end,
                       bool addr)
{
        unsigned char c;

        if (end >= len)
                return true;
        c = b[end];
        if (is_word(c))
                return false;
        if (end + 1 < len && is_alnum(b[end + 1])) {
                if (addr)
                        return !(c == '.' || c == '-' || c == '@');
                return !(is_glue(c) || c == ':');
        }
        return true;
}

/* ------------------------------------------------------------- findings */
struct scan_ctx {
        const struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        const unsigned char *buf;
        size_t len;
        size_t last_end[SHAPE__COUNT];
        uint64_t n_matches;
        /* the context walk of the last start looked at (ctx_distance) */
        size_t ctx_start, ctx_pos;
        int ctx_ntok;
        bool ctx_done;
        uint32_t ctx_tok[CTX_TOKENS];
};

/* A byte of a context token: ASCII letters and digits, and any byte of a
 * UTF-8 sequence (so "sécurité" and "आधार" are one word each). */
static inline bool is_ctx_char(unsigned char c)
{
        return byte_class[c] & (CL_DIGIT | CL_UPPER | CL_LOWER | CL_UTF8);
}

_Static_assert(VEIL_DET__BUILTIN <= 32, "context masks are 32 bits");

/* Context words are looked for lazily, one token at a time walking back
 * from a finding's start, and only as far as a question needs: most
 * findings in context have their word right before them. The walk of the
 * last start is kept, since the ends Hyperscan reports for one number
 * share it. tok[i] gets the built-in detectors with a context word equal
 * to the i-th token back (0 nearest); CTX_TOKENS tokens within CTX_WINDOW
 * bytes are looked at. */
static void ctx_reset(struct scan_ctx *ctx, size_t start)
{
        ctx->ctx_start = start;
        ctx->ctx_pos   = start;
        ctx->ctx_ntok  = 0;
        ctx->ctx_done  = false;
}

/* Walks one token further; false when there is none. */
static bool ctx_step(struct scan_ctx *ctx)
{
        const struct veil_detect_engine *engine = ctx->engine;
        const unsigned char *b                  = ctx->buf;
        size_t start = ctx->ctx_start, p = ctx->ctx_pos, e, s, n;
        size_t lo    = start > CTX_WINDOW ? start - CTX_WINDOW : 0;
        uint32_t hit = 0;
        unsigned c, i;

        if (ctx->ctx_done || ctx->ctx_ntok == CTX_TOKENS)
                return false;
        while (p > lo && !is_ctx_char(b[p - 1]))
                p--;
        e = p;
        while (p > lo && is_ctx_char(b[p - 1]))
                p--;
        s            = p;
        ctx->ctx_pos = p;
        /* no token, or one cut by the window (not a whole word) */
        if (s == e || (s == lo && lo > 0 && is_ctx_char(b[lo - 1]))) {
                ctx->ctx_done = true;
                return false;
        }
        n = e - s;
        /* most tokens start with a byte no context word starts with, and
         * most of the rest differ in length */
        c = to_lower(b[s]);
        if (n > CTX_WORD_MAX || !(engine->ctx_lens[c] & (UINT32_C(1) << n)))
                goto done;
        for (i = engine->ctx_start[c]; i < engine->ctx_start[c + 1]; i++) {
                const struct ctx_word *w = &engine->ctx_list[i];
                uint32_t bit             = UINT32_C(1) << w->det;
                size_t k;

                if (w->len != n || (hit & bit))
                        continue;
                for (k = 1; k < n; k++)
                        if (to_lower(b[s + k]) != (unsigned char)w->word[k])
                                break;
                if (k == n)
                        hit |= bit;
        }
done:
        ctx->ctx_tok[ctx->ctx_ntok++] = hit;
        return true;
}

/* Index of the nearest token before `start` holding a context word of
 * built-in `det`, looking no further than token `limit`; CTX_TOKENS when
 * there is none. */
static int ctx_distance(struct scan_ctx *ctx, size_t start, int det, int limit)
{
        uint32_t bit = UINT32_C(1) << det;
        int i;

        if (ctx->ctx_start != start)
                ctx_reset(ctx, start);
        for (i = 0; i <= limit && i < CTX_TOKENS; i++) {
                if (i == ctx->ctx_ntok && !ctx_step(ctx))
                        break;
                if (ctx->ctx_tok[i] & bit)
                        return i;
        }
        return CTX_TOKENS;
}

_Static_assert(VEIL_DET__BUILTIN <= 32, "context masks are 32 bits");

/* Stores a finding whose confidence is final (context already counted). */
static void push_final(struct scan_ctx *ctx, int det, size_t start, size_t end,
                       float conf)
{
        struct veil_detect_scratch *scratch = ctx->scratch;
        struct veil_finding *f;

        if (conf > 0.99f)
                conf = 0.99f;
        if (conf < VEIL_DETECT_MIN_CONFIDENCE)
                return;
        if (scratch->n == scratch->cap) {
                scratch->cap = scratch->cap ? scratch->cap * 2 : 64;
                scratch->f   = veil_realloc(scratch->f,
                                            scratch->cap * sizeof(*scratch->f));
        }
        f             = &scratch->f[scratch->n++];
        f->start      = start;
        f->end        = end;
        f->detector   = det;
        f->confidence = conf;
}

/* A span an identifier's context claims although its check failed: it
 * hides the findings it covers in resolve_overlaps() and is never
 * reported itself. */
#define DET_CLAIM (-1)

static void push_claim(struct scan_ctx *ctx, size_t start, size_t end)
{
        push_final(ctx, DET_CLAIM, start, end, 1.0f);
        ctx->scratch->f[ctx->scratch->n - 1].confidence = 0;
}

static void push(struct scan_ctx *ctx, int det, size_t start, size_t end,
                 float conf)
{
        if (det < VEIL_DET__BUILTIN &&
            ctx_distance(ctx, start, det, CTX_TOKENS - 1) < CTX_TOKENS)
                conf += CTX_BOOST;
        push_final(ctx, det, start, end, conf);
}

/* ---------------------------------------------------------------- email */
#define EMAIL_LOCAL_MAX 64
#define EMAIL_MAX 254

static inline bool is_email_local(unsigned char c)
{
        return byte_class[c] & (CL_DIGIT | CL_UPPER | CL_LOWER | CL_EMAIL);
}

/* The domain after the '@' at `at`, forwards: labels of [A-Za-z0-9-] not
 * starting or ending with '-', the last one (the TLD) 2-24 letters.
 * Returns the end offset, or 0 when there is no such domain. */
static size_t email_domain_end(const unsigned char *b, size_t len, size_t at)
{
        size_t p = at + 1, hi = len - p > EMAIL_MAX ? p + EMAIL_MAX : len;
        size_t label = 0, tld_len = 0;
        int labels = 0;
        bool alpha = true;

        for (;;) {
                size_t ls = p;

                alpha = true;
                while (p < hi && (is_alnum(b[p]) || b[p] == '-')) {
                        alpha &= is_alpha(b[p]);
                        p++;
                }
                if (p == ls || b[ls] == '-' || b[p - 1] == '-')
                        return 0;
                labels++;
                label   = p;
                tld_len = p - ls;
                if (p + 1 < hi && b[p] == '.' && is_alnum(b[p + 1]))
                        p++;
                else
                        break;
        }
        if (labels < 2 || !alpha || tld_len < 2 || tld_len > 24)
                return 0;
        return label;
}

/* Without SOM Hyperscan reports the '@' with one character either side
 * (the cheapest anchor: a full email pattern makes the whole database a
 * third slower); the span is walked out by hand, bounded both ways. With
 * SOM the full pattern gives both ends. */
static void match_email(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t at, p, start, lo;

        if (som == SIZE_MAX) {
                at  = end - 2;
                end = email_domain_end(b, ctx->len, at);
                if (!end)
                        return;
        } else {
                at = (size_t)((const unsigned char *)memchr(b + som, '@',
                                                            end - som) -
                              b);
                if (email_domain_end(b, ctx->len, at) != end)
                        return;
        }
        if (!right_free(b, ctx->len, end, false))
                return;
        /* local part, backwards */
        lo = at > EMAIL_LOCAL_MAX ? at - EMAIL_LOCAL_MAX : 0;
        p  = at;
        while (p > lo && is_email_local(b[p - 1]))
                p--;
        if (p > 0 && is_email_local(b[p - 1]))
                return; /* longer than a local part may be */
        while (p < at && b[p] == '.')
                p++;
        start = p;
        if (som != SIZE_MAX) {
                if (som > start)
                        return;
                start = som;
        }
        if (start == at || b[at - 1] == '.')
                return;
        push(ctx, VEIL_DET_EMAIL, start, end, CONF_EMAIL);
}

/* ---------------------------------------------- digits with separators */
#define NUM_MAX_GROUPS 12
#define NUM_MAX_DIGITS 24
#define NUM_WINDOW 64

static inline bool is_numsep(unsigned char c)
{
        return c == ' ' || c == '-' || c == '.' || c == '/' || c == '(' ||
               c == ')';
}

/* The digit groups that end at a reported end offset, left to right, and
 * what separates them; analysed once, then every candidate span (each
 * suffix of groups) is a view into it. */
struct numtok {
        int ng;
        int nd;
        size_t gs[NUM_MAX_GROUPS], ge[NUM_MAX_GROUPS];
        unsigned char glen[NUM_MAX_GROUPS];
        int dstart[NUM_MAX_GROUPS]; /* first digit of group i in d */
        unsigned char d[NUM_WINDOW];
        /* the separator before group i (i >= 1): [')'] [plain] ['('] */
        unsigned char sc[NUM_MAX_GROUPS]; /* plain char, 0 if none */
        bool sclose[NUM_MAX_GROUPS], sopen[NUM_MAX_GROUPS];
        bool sbad[NUM_MAX_GROUPS];
};

/* One candidate: groups first .. ng-1 of a token. */
struct numcand {
        size_t start; /* includes a leading '+' or '(' */
        int ng;
        int nd;
        bool plus;
        bool parens;               /* any parenthesis */
        int paren_group;           /* group wrapped in parentheses, -1 none */
        bool bad;                  /* separators malformed */
        bool consistent;           /* phone: one separator char throughout */
        const unsigned char *glen; /* glen[i]: digits in group i */
        const unsigned char *sepc; /* sepc[i]: plain separator before i */
        const unsigned char *d;    /* nd digits */
};

/* Splits the separator between two groups: [')'] [one of " -./"] ['('] */
static bool split_sep(const unsigned char *s, size_t n, bool *close,
                      unsigned char *c, bool *open)
{
        size_t i = 0;

        *close = *open = false;
        *c             = 0;
        if (i < n && s[i] == ')') {
                *close = true;
                i++;
        }
        if (i < n &&
            (s[i] == ' ' || s[i] == '-' || s[i] == '.' || s[i] == '/')) {
                *c = s[i];
                i++;
        }
        if (i < n && s[i] == '(') {
                *open = true;
                i++;
        }
        return i == n;
}

static void num_tokenize(const unsigned char *b, size_t lo, size_t end,
                         struct numtok *tok)
{
        size_t rs[NUM_MAX_GROUPS], re[NUM_MAX_GROUPS];
        size_t pos = end;
        int n = 0, nd = 0, i;

        /* walk back: groups right to left */
        for (;;) {
                size_t e = pos, p;
                int nsep = 0;

                while (pos > lo && is_digit(b[pos - 1]))
                        pos--;
                if (pos == e)
                        break;
                nd += (int)(e - pos);
                rs[n] = pos;
                re[n] = e;
                n++;
                if (n == NUM_MAX_GROUPS || nd > NUM_MAX_DIGITS)
                        break;
                p = pos;
                while (p > lo && nsep < 2 && is_numsep(b[p - 1])) {
                        p--;
                        nsep++;
                }
                if (nsep == 0 || p == lo || !is_digit(b[p - 1]))
                        break;
                pos = p;
        }
        /* then left to right, with the separators analysed */
        tok->ng = n;
        tok->nd = 0;
        for (i = 0; i < n; i++) {
                size_t gs = rs[n - 1 - i], ge = re[n - 1 - i];

                tok->gs[i]     = gs;
                tok->ge[i]     = ge;
                tok->glen[i]   = (unsigned char)(ge - gs);
                tok->dstart[i] = tok->nd;
                memcpy(tok->d + tok->nd, b + gs, ge - gs);
                tok->nd += (int)(ge - gs);
                tok->sc[i]     = 0;
                tok->sclose[i] = tok->sopen[i] = tok->sbad[i] = false;
                if (i > 0)
                        tok->sbad[i] = !split_sep(
                                b + tok->ge[i - 1], gs - tok->ge[i - 1],
                                &tok->sclose[i], &tok->sc[i], &tok->sopen[i]);
        }
}

/* Candidate `first`: groups first .. ng-1. */
static void num_candidate(const unsigned char *b, const struct numtok *tok,
                          int first, struct numcand *c)
{
        int gi;
        bool open_cur        = false;
        unsigned char common = 0;

        c->start       = tok->gs[first];
        c->ng          = tok->ng - first;
        c->nd          = tok->nd - tok->dstart[first];
        c->d           = tok->d + tok->dstart[first];
        c->glen        = tok->glen + first;
        c->sepc        = tok->sc + first;
        c->plus        = false;
        c->parens      = false;
        c->paren_group = -1;
        c->bad         = false;
        c->consistent  = true;
        /* a '(' before the first group belongs to the span only when it
         * closes right after that group: "(415) 555-2671", not
         * "(078-05-1120)" */
        if (c->start > 0 && b[c->start - 1] == '(' && c->ng > 1 &&
            b[tok->ge[first]] == ')') {
                c->start--;
                open_cur  = true;
                c->parens = true;
        } else if (c->start > 0 && b[c->start - 1] == '+') {
                c->start--;
                c->plus = true;
        }
        for (gi = 1; gi < c->ng; gi++) {
                int i            = first + gi;
                unsigned char sc = tok->sc[i];

                if (tok->sbad[i] || tok->sclose[i] != open_cur) {
                        c->bad = true;
                        return;
                }
                if (tok->sclose[i]) {
                        if (c->paren_group >= 0) {
                                c->bad = true; /* two paren groups */
                                return;
                        }
                        c->paren_group = gi - 1;
                }
                open_cur = tok->sopen[i];
                if (open_cur)
                        c->parens = true;
                /* the separator after a country code or next to a
                 * parenthesis may differ from the others */
                if (sc && !tok->sclose[i] && !tok->sopen[i] &&
                    !(c->plus && gi == 1)) {
                        if (!common)
                                common = sc;
                        else if (common != sc)
                                c->consistent = false;
                }
        }
        if (open_cur)
                c->bad = true; /* '(' never closed */
}

static bool luhn_ok(const unsigned char *d, int n)
{
        int sum  = 0, i;
        bool dbl = false;

        for (i = n - 1; i >= 0; i--) {
                int v = d[i] - '0';

                if (dbl) {
                        v *= 2;
                        if (v > 9)
                                v -= 9;
                }
                sum += v;
                dbl = !dbl;
        }
        return sum % 10 == 0;
}

/* ------------------------------------------------------------ validators
 * One pure function per identifier, over its compact form. */
static bool all_digits(const char *s, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (!is_digit((unsigned char)s[i]))
                        return false;
        return true;
}

static bool all_upper(const char *s, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (!is_upper((unsigned char)s[i]))
                        return false;
        return true;
}

bool veil_valid_luhn(const char *digits, size_t n)
{
        return n > 0 && n < 64 && all_digits(digits, n) &&
               luhn_ok((const unsigned char *)digits, (int)n);
}

bool veil_valid_uk_nhs(const char *s, size_t n)
{
        int sum = 0, i, check;

        if (n != 10 || !all_digits(s, n))
                return false;
        for (i = 0; i < 9; i++)
                sum += (s[i] - '0') * (10 - i);
        check = 11 - sum % 11;
        if (check == 11)
                check = 0;
        return check != 10 && check == s[9] - '0';
}

bool veil_valid_ca_sin(const char *s, size_t n)
{
        /* 0 is not given to people either, but it is the prefix of the
         * Government's published sample (046 454 286): kept, as the card
         * detector keeps the networks' test numbers */
        return n == 9 && all_digits(s, n) && s[0] != '8' &&
               luhn_ok((const unsigned char *)s, 9);
}

static int two_digits(const char *s)
{
        return (s[0] - '0') * 10 + (s[1] - '0');
}

bool veil_valid_fr_nir(const char *s, size_t n)
{
        uint64_t v = 0;
        int month, key, i;

        if (n != 15 || !strchr("1278", s[0]) || !s[0] ||
            !all_digits(s + 1, 4) || !all_digits(s + 7, 8))
                return false;
        month = two_digits(s + 3);
        /* 01-12; 20-42 and 50-99 when the month was not known */
        if (month == 0 || (month > 12 && month < 20) ||
            (month > 42 && month < 50))
                return false;
        if (s[5] == '2' && (s[6] == 'A' || s[6] == 'B')) {
                /* Corsica: the key counts 2A as 19 and 2B as 18 */
        } else if (!all_digits(s + 5, 2) || two_digits(s + 5) == 0) {
                return false;
        }
        if (!memcmp(s + 7, "000", 3) || !memcmp(s + 10, "000", 3))
                return false; /* commune, order */
        for (i = 0; i < 13; i++) {
                if (i == 5 && s[6] == 'A')
                        v = v * 100 + 19, i++;
                else if (i == 5 && s[6] == 'B')
                        v = v * 100 + 18, i++;
                else
                        v = v * 10 + (uint64_t)(s[i] - '0');
        }
        key = two_digits(s + 13);
        return key >= 1 && key <= 97 && key == 97 - (int)(v % 97);
}

bool veil_valid_es_dni(const char *s, size_t n)
{
        static const char letters[] = "TRWAGMYFPDXBNJZSQVHLCKE";
        unsigned long v             = 0;
        int i;

        if (n != 9 || !is_upper((unsigned char)s[8]))
                return false;
        if (s[0] == 'X' || s[0] == 'Y' || s[0] == 'Z') {
                /* NIE: the letter stands for a leading 0, 1 or 2 */
                if (!all_digits(s + 1, 7))
                        return false;
                v = (unsigned long)(s[0] - 'X');
        } else if (!all_digits(s, 1)) {
                return false;
        } else {
                v = (unsigned long)(s[0] - '0');
        }
        if (!all_digits(s + 1, 7))
                return false;
        for (i = 1; i < 8; i++)
                v = v * 10 + (unsigned long)(s[i] - '0');
        if (v == 0)
                return false; /* 00000000T is reserved */
        return s[8] == letters[v % 23];
}

/* Fiscal code positions that hold digits, possibly as omocodia letters. */
static int fiscal_digit(char c)
{
        static const char omocodia[] = "LMNPQRSTUV";
        const char *p;

        if (is_digit((unsigned char)c))
                return c - '0';
        p = c ? strchr(omocodia, c) : NULL;
        return p ? (int)(p - omocodia) : -1;
}

bool veil_valid_it_fiscal_code(const char *s, size_t n)
{
        /* the odd positions' values for 0-9 and A-Z (the same for a digit
         * and the letter at its index) */
        static const unsigned char odd[26] = {
                1,  0,  5, 7, 9, 13, 15, 17, 19, 21, 2,  4,  18,
                20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23};
        static const char months[]         = "ABCDEHLMPRST";
        static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30,
                                              31, 31, 30, 31, 30, 31};
        static const int digit_pos[]       = {6, 7, 9, 10, 12, 13, 14};
        const char *m;
        int i, sum = 0, day;

        if (n != 16 || !all_upper(s, 6) || !is_upper((unsigned char)s[8]) ||
            !is_upper((unsigned char)s[11]) || !is_upper((unsigned char)s[15]))
                return false;
        for (i = 0; i < 7; i++)
                if (fiscal_digit(s[digit_pos[i]]) < 0)
                        return false;
        m = strchr(months, s[8]);
        if (!m)
                return false;
        day = fiscal_digit(s[9]) * 10 + fiscal_digit(s[10]);
        if (day > 40)
                day -= 40; /* women */
        if (day < 1 || day > mdays[m - months])
                return false;
        for (i = 0; i < 15; i++) {
                int v = is_digit((unsigned char)s[i]) ? s[i] - '0' : s[i] - 'A';

                sum += i % 2 == 0 ? odd[v] : v;
        }
        return s[15] == 'A' + sum % 26;
}

bool veil_valid_nl_bsn(const char *s, size_t n)
{
        int sum = 0, i;

        /* 8-digit numbers are written with one leading zero */
        if (n != 9 || !all_digits(s, n) || (s[0] == '0' && s[1] == '0'))
                return false;
        for (i = 0; i < 8; i++)
                sum += (s[i] - '0') * (9 - i);
        sum -= s[8] - '0';
        return sum % 11 == 0;
}

bool veil_valid_in_aadhaar(const char *s, size_t n)
{
        static const unsigned char d[10][10] = {
                {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
                {2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
                {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
                {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
                {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
        };
        static const unsigned char p[8][10] = {
                {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
                {5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
                {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
                {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
        };
        unsigned c = 0;
        size_t i;

        if (n != 12 || !all_digits(s, n) || s[0] < '2')
                return false;
        for (i = 0; i < n; i++)
                c = d[c][p[i % 8][s[n - 1 - i] - '0']];
        return c == 0;
}

bool veil_valid_in_pan(const char *s, size_t n)
{
        /* the fourth letter is the holder: Person, Company, Hindu undivided
         * family, Firm, Association, Trust, Body, Local authority,
         * artificial Juridical person, Government */
        return n == 10 && all_upper(s, 5) && strchr("ABCFGHJLPT", s[3]) &&
               all_digits(s + 5, 4) && memcmp(s + 5, "0000", 4) != 0 &&
               is_upper((unsigned char)s[9]);
}

bool veil_valid_br_cpf(const char *s, size_t n)
{
        int k, i;
        bool same = true;

        if (n != 11 || !all_digits(s, n))
                return false;
        for (i = 1; i < 11; i++)
                same &= s[i] == s[0];
        if (same)
                return false; /* 111.111.111-11 passes the sums */
        for (k = 9; k <= 10; k++) {
                int sum = 0, dv;

                for (i = 0; i < k; i++)
                        sum += (s[i] - '0') * (k + 1 - i);
                dv = sum * 10 % 11;
                if (dv == 10)
                        dv = 0;
                if (dv != s[k] - '0')
                        return false;
        }
        return true;
}

bool veil_valid_aws_access_key(const char *s, size_t n)
{
        size_t i;

        if (n != 20 || (memcmp(s, "AKIA", 4) && memcmp(s, "ASIA", 4)))
                return false;
        for (i = 4; i < n; i++)
                if (!is_upper((unsigned char)s[i]) &&
                    !(s[i] >= '2' && s[i] <= '7'))
                        return false;
        return true;
}

static inline bool is_b64url(unsigned char c)
{
        return is_alnum(c) || c == '-' || c == '_';
}

static int b64url_value(unsigned char c)
{
        if (is_upper(c))
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (is_digit(c))
                return c - '0' + 52;
        return c == '-' ? 62 : c == '_' ? 63 : -1;
}

#define JWT_HEADER_MAX 1024 /* base64url characters */

/* base64url without padding; `out` holds n * 3 / 4 bytes. Returns the
 * decoded length, or SIZE_MAX for a bad character or length. */
static size_t b64url_decode(const unsigned char *in, size_t n,
                            unsigned char *out)
{
        uint32_t acc = 0;
        size_t i, o = 0;
        int bits = 0;

        if (n % 4 == 1)
                return SIZE_MAX;
        for (i = 0; i < n; i++) {
                int v = b64url_value(in[i]);

                if (v < 0)
                        return SIZE_MAX;
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)(acc >> bits);
                }
        }
        return o;
}

/* The JWS header: base64url of a JSON object with a string "alg". */
static bool jwt_header_ok(const unsigned char *h, size_t n)
{
        unsigned char raw[JWT_HEADER_MAX * 3 / 4 + 1];
        json_error_t jerr;
        json_t *obj;
        size_t len;
        bool ok;

        if (n > JWT_HEADER_MAX || (len = b64url_decode(h, n, raw)) == SIZE_MAX)
                return false;
        obj = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &jerr);
        ok = json_is_object(obj) && json_is_string(json_object_get(obj, "alg"));
        json_decref(obj);
        return ok;
}

bool veil_valid_jwt(const char *s, size_t n)
{
        const unsigned char *b = (const unsigned char *)s;
        size_t dot[2], nd = 0, i;

        for (i = 0; i < n; i++) {
                if (b[i] == '.') {
                        if (nd == 2)
                                return false;
                        dot[nd++] = i;
                } else if (!is_b64url(b[i])) {
                        return false;
                }
        }
        if (nd != 2 || dot[0] == 0 || dot[1] == dot[0] + 1 ||
            (dot[1] - dot[0] - 1) % 4 == 1 || (n - dot[1] - 1) % 4 == 1)
                return false;
        return jwt_header_ok(b, dot[0]);
}

static int prefix_num(const unsigned char *d, int n)
{
        int v = 0, i;

        for (i = 0; i < n; i++)
                v = v * 10 + (d[i] - '0');
        return v;
}

/* Issuer ranges of the major networks with their lengths. */
static bool card_iin_ok(const unsigned char *d, int nd)
{
        int p1 = d[0] - '0', p2 = prefix_num(d, 2), p3 = prefix_num(d, 3),
            p4 = prefix_num(d, 4);

        if (p1 == 4) /* Visa */
                return nd == 13 || nd == 16 || nd == 19;
        if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
                return nd == 16; /* Mastercard */
        if (p2 == 34 || p2 == 37)
                return nd == 15; /* American Express */
        if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65)
                return nd >= 16 && nd <= 19; /* Discover */
        if (p4 >= 3528 && p4 <= 3589)
                return nd >= 16 && nd <= 19; /* JCB */
        if ((p3 >= 300 && p3 <= 305) || p4 == 3095 || p2 == 36 || p2 == 38 ||
            p2 == 39)
                return nd >= 14 && nd <= 19; /* Diners Club */
        if (p2 == 62)
                return nd >= 16 && nd <= 19; /* UnionPay */
        if (p4 >= 2200 && p4 <= 2204)
                return nd >= 16 && nd <= 19; /* Mir */
        if (p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 ||
            p4 == 6304 || p4 == 6759 || (p4 >= 6761 && p4 <= 6763))
                return nd >= 13 && nd <= 19; /* Maestro */
        return false;
}

static float card_check(const struct numcand *c, bool *fit)
{
        int i;

        if (c->plus || c->parens || c->nd < 13 || c->nd > 19)
                return 0;
        if (c->ng > 1) {
                bool fours = true;

                for (i = 1; i < c->ng; i++)
                        if (c->sepc[i] != c->sepc[1] ||
                            (c->sepc[1] != ' ' && c->sepc[1] != '-'))
                                return 0;
                for (i = 0; i < c->ng - 1; i++)
                        if (c->glen[i] != 4)
                                fours = false;
                if (!(fours && c->glen[c->ng - 1] <= 4) &&
                    !(c->ng == 3 && c->glen[0] == 4 && c->glen[1] == 6 &&
                      (c->glen[2] == 4 || c->glen[2] == 5)))
                        return 0;
        }
        *fit = true;
        if (!card_iin_ok(c->d, c->nd) || !luhn_ok(c->d, c->nd))
                return 0;
        return c->ng > 1 ? CONF_CARD_GROUPED : CONF_CARD_BARE;
}

static float ssn_check(const struct numcand *c, bool *fit)
{
        int area, group, serial;

        if (c->plus || c->parens || c->nd != 9)
                return 0;
        if (c->ng == 3) {
                if (c->glen[0] != 3 || c->glen[1] != 2 || c->glen[2] != 4 ||
                    c->sepc[1] != c->sepc[2] ||
                    (c->sepc[1] != '-' && c->sepc[1] != ' '))
                        return 0;
        } else if (c->ng != 1) {
                return 0;
        }
        *fit   = true;
        area   = prefix_num(c->d, 3);
        group  = prefix_num(c->d + 3, 2);
        serial = prefix_num(c->d + 5, 4);
        if (area == 0 || area == 666 || area >= 900 || group == 0 ||
            serial == 0)
                return 0;
        if (c->ng == 1)
                return CONF_WEAK;
        return c->sepc[1] == '-' ? CONF_SSN_DASHED : CONF_SSN_SPACED;
}

static float phone_check(const struct numcand *c, bool *fit)
{
        const unsigned char *d = c->d;
        int i;

        *fit = false; /* a phone claims no context over others */
        if (c->bad || !c->consistent)
                return 0;
        if (c->plus) {
                if (c->nd < 9 || c->nd > 15 || d[0] == '0')
                        return 0;
                /* a parenthesised group only right after the country code */
                if (c->paren_group >= 0 && c->paren_group != 1)
                        return 0;
                if (d[0] == '1' && (c->nd != 11 || d[1] < '2' || d[4] < '2'))
                        return 0; /* NANP: +1 NPA NXX XXXX */
                return CONF_PHONE_INTL;
        }
        if (c->paren_group > 0 &&
            !(c->nd == 11 && d[0] == '1' && c->paren_group == 1))
                return 0;
        /* NANP: (NPA) NXX-XXXX, optionally after a 1 */
        if (c->nd == 10 && d[0] >= '2' && d[3] >= '2') {
                if (c->ng == 1)
                        return c->parens ? 0 : CONF_WEAK;
                if (c->ng == 3 && c->glen[0] == 3 && c->glen[1] == 3)
                        return CONF_PHONE_NANP;
                return 0;
        }
        if (c->nd == 11 && d[0] == '1' && d[1] >= '2' && d[4] >= '2') {
                if (c->ng == 1)
                        return c->parens ? 0 : CONF_WEAK;
                if (c->ng == 4 && c->glen[0] == 1 && c->glen[1] == 3 &&
                    c->glen[2] == 3 && c->paren_group != 0 &&
                    c->paren_group != 2 && c->paren_group != 3)
                        return CONF_PHONE_NANP;
                return 0;
        }
        /* national numbers with a trunk 0 (UK, DE, FR, NL, ...) */
        if (d[0] == '0' && d[1] != '0' && c->nd >= 10 && c->nd <= 12) {
                if (c->ng == 1)
                        return c->parens ? 0 : CONF_WEAK;
                if (c->glen[0] < 2 || c->glen[0] > 5 || c->ng > 5)
                        return 0;
                for (i = 1; i < c->ng; i++)
                        if (c->glen[i] < 2)
                                return 0;
                return CONF_PHONE_NATIONAL;
        }
        return 0;
}

/* The candidate's digit groups are `n` groups of lens[0..n-1] joined by one
 * separator from `seps` throughout. */
static bool grouped(const struct numcand *c, const unsigned char *lens, int n,
                    const char *seps)
{
        int i;

        if (c->ng != n || !c->sepc[1] || !strchr(seps, c->sepc[1]))
                return false;
        for (i = 0; i < n; i++)
                if (c->glen[i] != lens[i] ||
                    (i > 0 && c->sepc[i] != c->sepc[1]))
                        return false;
        return true;
}

/* The national ids below are written bare or in their issuer's grouping;
 * `fit` says the shape is theirs even when the check fails (a number in
 * their context is then not a phone). Bare runs are CONF_WEAK. */
static bool id_shape(const struct numcand *c, int nd)
{
        return !c->plus && !c->parens && !c->bad && c->nd == nd;
}

static float nhs_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g334[] = {3, 3, 4};

        if (!id_shape(c, 10) || !(c->ng == 1 || grouped(c, g334, 3, " -")))
                return 0;
        *fit = true;
        return veil_valid_uk_nhs((const char *)c->d, 10) ? CONF_WEAK : 0;
}

static float sin_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g333[] = {3, 3, 3};

        if (!id_shape(c, 9) || !(c->ng == 1 || grouped(c, g333, 3, " -")))
                return 0;
        *fit = true;
        return veil_valid_ca_sin((const char *)c->d, 9) ? CONF_WEAK : 0;
}

static float bsn_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g333[] = {3, 3, 3}, g423[] = {4, 2, 3};

        if (!id_shape(c, 9) || !(c->ng == 1 || grouped(c, g333, 3, " -.") ||
                                 grouped(c, g423, 3, " .")))
                return 0;
        *fit = true;
        return veil_valid_nl_bsn((const char *)c->d, 9) ? CONF_WEAK : 0;
}

static float aadhaar_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g444[] = {4, 4, 4};

        if (!id_shape(c, 12) || !(c->ng == 1 || grouped(c, g444, 3, " -")))
                return 0;
        *fit = true;
        return veil_valid_in_aadhaar((const char *)c->d, 12) ? CONF_WEAK : 0;
}

static float cpf_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g92[] = {9, 2};
        bool dotted = c->ng == 4 && c->glen[0] == 3 && c->glen[1] == 3 &&
                      c->glen[2] == 3 && c->glen[3] == 2 && c->sepc[1] == '.' &&
                      c->sepc[2] == '.' && c->sepc[3] == '-';

        if (c->plus || c->parens || c->nd != 11 ||
            !(dotted || c->ng == 1 || grouped(c, g92, 2, "-")))
                return 0;
        *fit = true;
        if (!veil_valid_br_cpf((const char *)c->d, 11))
                return 0;
        return dotted ? CONF_CPF_PUNCTUATED : CONF_WEAK;
}

static float nir_check(const struct numcand *c, bool *fit)
{
        static const unsigned char g7[]    = {1, 2, 2, 2, 3, 3, 2},
                                   g13_2[] = {13, 2};
        bool spaced                        = grouped(c, g7, 7, " ");

        if (!id_shape(c, 15) ||
            !(spaced || c->ng == 1 || grouped(c, g13_2, 2, " ")))
                return 0;
        *fit = true;
        if (!veil_valid_fr_nir((const char *)c->d, 15))
                return 0;
        return spaced ? CONF_NIR_GROUPED : CONF_WEAK;
}

/* The left edge of a candidate: an inner candidate (more digit groups to
 * its left) may only be set apart by a space. */
/* Length of the alphanumeric token that ends at `end` (walking back) or
 * starts at `start` (walking forward), if it holds a digit; else 0. */
static size_t token_before(const unsigned char *b, size_t end)
{
        size_t p   = end;
        bool digit = false;

        while (p > 0 && is_alnum(b[p - 1]) && end - p <= 8) {
                digit |= is_digit(b[p - 1]);
                p--;
        }
        return digit ? end - p : 0;
}

static size_t token_after(const unsigned char *b, size_t len, size_t start)
{
        size_t p   = start;
        bool digit = false;

        while (p < len && is_alnum(b[p]) && p - start <= 8) {
                digit |= is_digit(b[p]);
                p++;
        }
        return digit ? p - start : 0;
}

/* The left edge of a candidate: an inner candidate (more digit groups to
 * its left) may only be set apart by a space. A space-grouped number
 * whose neighbour token looks like one more of its groups is a piece of
 * something longer ("6225 3753 [0108 7642 0779]", "XX88 [4082 2856 ...]"). */
static bool num_left_ok(const unsigned char *b, const struct numtok *tok,
                        int first, const struct numcand *c)
{
        (void)tok;
        if (first == 0 && !left_free(b, c->start))
                return false;
        if (first > 0 && (c->start == 0 || b[c->start - 1] != ' '))
                return false;
        if (c->ng > 1 && c->sepc[1] == ' ' && c->start >= 2 &&
            b[c->start - 1] == ' ' &&
            token_before(b, c->start - 1) == c->glen[0])
                return false;
        return true;
}

static bool num_right_ok(const unsigned char *b, size_t len,
                         const struct numcand *c, size_t end)
{
        if (c->ng > 1 && c->sepc[c->ng - 1] == ' ' && end + 1 < len &&
            b[end] == ' ' && token_after(b, len, end + 1) == c->glen[c->ng - 1])
                return false;
        return true;
}

/* A card printed in fours followed by a short digit group is the front of
 * a longer number ("6212 1810 4735 4294 671" has 19 digits). */
static bool card_right_ok(const unsigned char *b, size_t len,
                          const struct numcand *c, size_t end)
{
        size_t n = 0;

        if (c->ng < 2 || end + 1 >= len || b[end] != c->sepc[1])
                return true;
        while (end + 1 + n < len && is_digit(b[end + 1 + n]) && n < 5)
                n++;
        return !(n >= 1 && n <= 4 &&
                 (end + 1 + n == len || !is_alnum(b[end + 1 + n])));
}

/* The detectors of the numeric shape, longest-first candidates each. */
enum numdet {
        ND_PHONE = 0,
        ND_SSN,
        ND_CARD,
        ND_NHS,
        ND_SIN,
        ND_NIR,
        ND_BSN,
        ND_AADHAAR,
        ND_CPF,
        ND__COUNT,
};

static const struct {
        int det;
        int min_nd, max_nd;
        float (*check)(const struct numcand *c, bool *fit);
} numdets[ND__COUNT] = {
        [ND_PHONE]   = {VEIL_DET_PHONE, 9, 15, phone_check},
        [ND_SSN]     = {VEIL_DET_US_SSN, 9, 9, ssn_check},
        [ND_CARD]    = {VEIL_DET_CREDIT_CARD, 13, 19, card_check},
        [ND_NHS]     = {VEIL_DET_UK_NHS, 10, 10, nhs_check},
        [ND_SIN]     = {VEIL_DET_CA_SIN, 9, 9, sin_check},
        [ND_NIR]     = {VEIL_DET_FR_NIR, 15, 15, nir_check},
        [ND_BSN]     = {VEIL_DET_NL_BSN, 9, 9, bsn_check},
        [ND_AADHAAR] = {VEIL_DET_IN_AADHAAR, 12, 12, aadhaar_check},
        [ND_CPF]     = {VEIL_DET_BR_CPF, 11, 11, cpf_check},
};

static void match_numeric(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        struct numtok tok;
        struct numcand c;
        float best[ND__COUNT]        = {0};
        size_t best_start[ND__COUNT] = {0};
        bool fitted[ND__COUNT]       = {false};
        size_t fit_start[ND__COUNT]  = {0};
        size_t lo;
        int dist[ND__COUNT];
        int first, last, k, claim = -1, claim_dist = CTX_TOKENS, reach = 0;
        bool any = false, fit_id = false, beaten = false;
        unsigned found = 0; /* bit k: best[k] > 0 */

        if (!right_free(b, ctx->len, end, false))
                return;
        lo = end > NUM_WINDOW ? end - NUM_WINDOW : 0;
        if (som != SIZE_MAX) {
                if (end - som > NUM_WINDOW)
                        return; /* longer than any number we validate */
                lo = som;
                if (b[som] == '+' || b[som] == '(')
                        lo++;
        }
        num_tokenize(b, lo, end, &tok);
        if (tok.ng == 0)
                return;
        /* longest first: each detector keeps its longest valid span; with
         * SOM the span starts where Hyperscan says */
        last = som != SIZE_MAX ? 0 : tok.ng - 1;
        for (first = 0; first <= last; first++) {
                int nd         = tok.nd - tok.dstart[first];
                bool candidate = false;
                unsigned want;

                if (nd < 9)
                        break; /* shorter candidates only get shorter */
                /* the detectors of this digit count still without a
                 * finding, in ND order */
                want = ctx->engine->nd_want[nd < NUM_WINDOW ? nd : NUM_WINDOW] &
                       ~found;
                for (; want; want &= want - 1) {
                        bool fit = false;
                        float conf;

                        k = __builtin_ctz(want);
                        if (!candidate) {
                                num_candidate(b, &tok, first, &c);
                                if (c.bad)
                                        break;
                                if (som != SIZE_MAX && c.start != som)
                                        break;
                                if (!num_left_ok(b, &tok, first, &c) ||
                                    !num_right_ok(b, ctx->len, &c, end))
                                        break;
                                candidate = true;
                        }
                        conf = numdets[k].check(&c, &fit);
                        if (k == ND_CARD && conf > 0 &&
                            !card_right_ok(b, ctx->len, &c, end))
                                conf = 0;
                        if (fit && !fitted[k]) {
                                fitted[k]    = true;
                                fit_start[k] = c.start;
                                fit_id |= k != ND_PHONE && c.ng > 1;
                        }
                        if (conf > 0) {
                                best[k]       = conf;
                                best_start[k] = c.start;
                                any           = true;
                                found |= 1u << k;
                        }
                }
        }
        /* nothing to report: a claim still matters when the number has
         * groups, since Hyperscan also reports its pieces */
        /* nothing to report: a claim still matters when the number has
         * groups, since Hyperscan also reports its pieces */
        if (!any && !fit_id)
                return;
        /* each finding's own context word, and how far back a claim can
         * matter: no further than the farthest of those words */
        for (k = 0; k < ND__COUNT; k++) {
                dist[k] = CTX_TOKENS;
                if (best[k] == 0)
                        continue;
                dist[k] = ctx_distance(ctx, best_start[k], numdets[k].det,
                                       CTX_TOKENS - 1);
                if (dist[k] > reach)
                        reach = dist[k] < CTX_TOKENS ? dist[k] : CTX_TOKENS - 1;
        }
        if (!any)
                reach = CTX_TOKENS - 1;
        /* The identifier whose context word is nearest claims a number of
         * its shape, valid or not: no other detector reports it (a phone,
         * another id's bare run), and when its check fails nothing inside
         * it is reported either ("NHS number 943 476 5918"). */
        for (k = 0; k < ND__COUNT; k++) {
                int d;

                if (k == ND_PHONE || !fitted[k])
                        continue;
                d = ctx_distance(ctx, fit_start[k], numdets[k].det, reach);
                if (d < claim_dist) {
                        claim      = k;
                        claim_dist = d;
                }
        }
        for (k = 0; k < ND__COUNT; k++) {
                float conf = best[k];

                if (conf == 0)
                        continue;
                if (claim >= 0 && k != claim) {
                        if (dist[k] >= claim_dist)
                                continue;
                        beaten = true; /* its own word is nearer */
                }
                if (dist[k] < CTX_TOKENS)
                        conf += CTX_BOOST;
                push_final(ctx, numdets[k].det, best_start[k], end, conf);
        }
        if (claim >= 0 && best[claim] == 0 && !beaten)
                push_claim(ctx, fit_start[claim], end);
}

_Static_assert(ND__COUNT <= 16, "nd_want holds 16 bits");
_Static_assert(sizeof(((struct veil_detect_engine *)0)->nd_want) ==
                       (NUM_WINDOW + 1) * sizeof(uint16_t),
               "nd_want: one mask per digit count up to NUM_WINDOW");

/* The numeric detectors by digit count, for match_numeric. */
static void nd_index(struct veil_detect_engine *engine)
{
        int n, k;

        for (n = 0; n <= NUM_WINDOW; n++) {
                engine->nd_want[n] = 0;
                for (k = 0; k < ND__COUNT; k++)
                        if (n >= numdets[k].min_nd && n <= numdets[k].max_nd)
                                engine->nd_want[n] |= (uint16_t)(1u << k);
        }
}

/* ----------------------------------------------------------------- IBAN */
/* ISO 13616 registry: country code and total IBAN length. */
static const struct {
        char cc[3];
        unsigned char len;
} iban_lengths[] = {
        {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20},
        {"BE", 16}, {"BG", 22}, {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28},
        {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27},
        {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
        {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23},
        {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22},
        {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30},
        {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
        {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19},
        {"MN", 20}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18},
        {"NO", 15}, {"OM", 23}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25},
        {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31},
        {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23},
        {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29},
        {"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
};

static int iban_length(unsigned char c0, unsigned char c1)
{
        size_t lo = 0, hi = VEIL_ARRAY_SIZE(iban_lengths);

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int cmp    = (int)c0 - (unsigned char)iban_lengths[mid].cc[0];

                if (!cmp)
                        cmp = (int)c1 - (unsigned char)iban_lengths[mid].cc[1];
                if (!cmp)
                        return iban_lengths[mid].len;
                if (cmp < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return 0;
}

/* ISO 7064 mod 97-10 over the rearranged IBAN (first four chars last). */
static bool iban_mod97_ok(const unsigned char *s, int n)
{
        uint64_t acc = 0;
        int i;

        if (n < 4)
                return false;
        /* reduce only when the accumulator could overflow on the next
         * step: one division every seven characters or so; the rotation
         * is two runs, s[4, n) then s[0, 4), with no division per char */
        for (i = 4; i < n + 4; i++) {
                unsigned char c = s[i < n ? i : i - n];

                if (acc >= UINT64_C(100000000000000000))
                        acc %= 97;
                if (is_digit(c))
                        acc = acc * 10 + (unsigned)(c - '0');
                else
                        acc = acc * 100 + (unsigned)(c - 'A' + 10);
        }
        return acc % 97 == 1;
}

#define IBAN_MAX 34
#define IBAN_MAX_GROUPS 10

static void match_iban(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t gs[IBAN_MAX_GROUPS], ge[IBAN_MAX_GROUPS];
        size_t pos = end, lo = end > 48 ? end - 48 : 0;
        int ng = 0, k;

        if (som != SIZE_MAX)
                lo = som;
        if (!right_free(b, ctx->len, end, false))
                return;
        while (ng < IBAN_MAX_GROUPS) {
                size_t e = pos;

                while (pos > lo && is_upper_digit(b[pos - 1]))
                        pos--;
                if (pos == e)
                        break;
                gs[ng] = pos;
                ge[ng] = e;
                ng++;
                if (pos < lo + 2 || b[pos - 1] != ' ' ||
                    !is_upper_digit(b[pos - 2]))
                        break;
                pos--;
        }
        for (k = ng - 1; k >= 0; k--) {
                unsigned char s[IBAN_MAX];
                size_t st = gs[k];
                int n     = 0, i, want;

                if (ge[k] - st < 4 || !is_upper(b[st]) ||
                    !is_upper(b[st + 1]) || !is_digit(b[st + 2]) ||
                    !is_digit(b[st + 3]))
                        continue;
                if (som != SIZE_MAX && st != som)
                        continue;
                want = iban_length(b[st], b[st + 1]);
                if (!want)
                        continue;
                for (i = k; i >= 0 && n <= IBAN_MAX; i--) {
                        size_t j, glen = ge[i] - gs[i];

                        /* printed form: groups of four, the last shorter */
                        if (k > 0 && (i > 0 ? glen != 4 : glen > 4))
                                break;
                        for (j = gs[i]; j < ge[i] && n < IBAN_MAX; j++)
                                s[n++] = b[j];
                        if (glen > IBAN_MAX)
                                n = IBAN_MAX + 1;
                }
                if (i >= 0 || n != want || !iban_mod97_ok(s, n))
                        continue;
                if (k < ng - 1 ? b[st - 1] != ' ' : !left_free(b, st))
                        continue;
                push(ctx, VEIL_DET_IBAN, st, end, CONF_IBAN);
                return;
        }
}

/* ----------------------------------------------------------------- IPv4 */
/* Words right before a dotted quad that make it a version, not an address. */
static bool after_version_word(const unsigned char *b, size_t start)
{
        static const char *const words[] = {
                "version", "ver", "v", "release", "build", "firmware", NULL};
        size_t p = start, e, s, i;

        while (p > 0 && start - p < 3 && !is_alnum(b[p - 1]))
                p--;
        e = p;
        while (p > 0 && e - p < 10 && is_alpha(b[p - 1]))
                p--;
        s = p;
        if (s == e || (s > 0 && is_alnum(b[s - 1])))
                return false;
        for (i = 0; words[i]; i++) {
                size_t k, n = strlen(words[i]);

                if (n != e - s)
                        continue;
                for (k = 0; k < n && to_lower(b[s + k]) == words[i][k]; k++)
                        ;
                if (k == n)
                        return true;
        }
        return false;
}

static void match_ipv4(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t p = end, q = end;
        bool small = true;
        int i;

        if (!right_free(b, ctx->len, end, true))
                return;
        for (i = 0; i < 4; i++) {
                unsigned v = 0;
                size_t j;

                q = p;
                while (q > 0 && p - q < 3 && is_digit(b[q - 1]))
                        q--;
                if (q == p || (p - q > 1 && b[q] == '0'))
                        return; /* empty or leading zero */
                for (j = q; j < p; j++)
                        v = v * 10 + (unsigned)(b[j] - '0');
                if (v > 255)
                        return;
                small &= v < 100;
                if (i < 3) {
                        if (q == 0 || b[q - 1] != '.')
                                return;
                        p = q - 1;
                }
        }
        if (som != SIZE_MAX && q != som)
                return;
        if (!left_free(b, q))
                return;
        if (small && after_version_word(b, q))
                return; /* "version 1.2.3.4" */
        push(ctx, VEIL_DET_IPV4, q, end, CONF_IPV4);
}

/* ----------------------------------------------------------------- IPv6 */
#define IPV6_MAX 45

static inline bool is_ipv6_char(unsigned char c)
{
        return is_hex(c) || c == ':' || c == '.';
}

static bool ipv6_left_ok(const unsigned char *b, size_t start)
{
        unsigned char c;

        if (start == 0)
                return true;
        c = b[start - 1];
        if (is_word(c) || c == '.')
                return false;
        /* `host:fe80::1` yes, `a::b::c` or `12:fe80::1` no */
        if (c == ':' && start >= 2 &&
            (is_hex(b[start - 2]) || b[start - 2] == ':'))
                return false;
        return true;
}

static void match_ipv6(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t len             = ctx->len, s0, st;
        unsigned char addr[16];
        char tmp[IPV6_MAX + 1];

        if (end < len) {
                unsigned char c = b[end];

                if (is_word(c) || (c == ':' && end + 1 < len &&
                                   (is_hex(b[end + 1]) || b[end + 1] == ':')))
                        return;
                if (c == '.' && end + 1 < len && is_digit(b[end + 1]))
                        return;
        }
        s0 = end;
        while (s0 > 0 && end - s0 <= IPV6_MAX && is_ipv6_char(b[s0 - 1]))
                s0--;
        if (som != SIZE_MAX)
                s0 = som;
        /* candidate starts: the run's start, each byte after a ':', and the
         * first ':' of each "::"; longest first */
        for (st = s0; st + 2 <= end; st++) {
                size_t n = end - st;

                if (st != s0 && b[st - 1] != ':' &&
                    !(b[st] == ':' && b[st + 1] == ':'))
                        continue;
                if (n > IPV6_MAX)
                        continue;
                if (som != SIZE_MAX && st != som)
                        break;
                memcpy(tmp, b + st, n);
                tmp[n] = 0;
                if (!strcmp(tmp, "::"))
                        continue; /* C++ scopes, Haskell types: not an address
                                   */
                if (inet_pton(AF_INET6, tmp, addr) != 1)
                        continue;
                if (!ipv6_left_ok(b, st))
                        continue;
                push(ctx, VEIL_DET_IPV6, st, end, CONF_IPV6);
                return;
        }
}

/* The ends of (?:H{1,4}(?::H{1,4}){0,6})?::(?:H{1,4}(?::H{1,4}){0,6}\b)?
 * (H a hex digit) that Hyperscan would report for the "::" ending at `p`:
 * `p` itself, and after each group of up to four hex digits chained by
 * single colons (up to seven) that a word boundary follows. They are
 * handed to match_ipv6 in order, ahead of Hyperscan's later ends; no other
 * IPv6 pattern ends at one of them (the eight-group form cannot span a
 * "::", the IPv4 tail ends after a '.'), so last_end still drops repeats. */
static void ipv6_dc_end(struct scan_ctx *ctx, size_t end)
{
        if (ctx->last_end[SHAPE_IPV6] == end)
                return;
        ctx->last_end[SHAPE_IPV6] = end;
        match_ipv6(ctx, SIZE_MAX, end);
}

static void ipv6_dc(struct scan_ctx *ctx, size_t p)
{
        const unsigned char *b = ctx->buf;
        size_t len = ctx->len, q = p;
        int g;

        ipv6_dc_end(ctx, p);
        for (g = 0; g < 7; g++) {
                size_t k = 0, e;

                while (q + k < len && k < 5 && is_hex(b[q + k]))
                        k++;
                if (k == 0 || k == 5)
                        return;
                e = q + k;
                if (e < len && is_word(b[e]))
                        return;
                ipv6_dc_end(ctx, e);
                if (e >= len || b[e] != ':')
                        return;
                q = e + 1;
        }
}

/* --------------------------------------------------- ids with letters */
static bool digits_at(const unsigned char *b, size_t from, size_t n)
{
        return all_digits((const char *)b + from, n);
}

/* DNI (12345678Z, 12345678-Z, 12.345.678-Z) and NIE (X1234567L,
 * X-1234567-L), back from the check letter; the forms are tried from the
 * most specific. A space before the letter is weak. */
static bool match_dni(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t p               = end - 1, start;
        char v[9];
        bool spaced = false;
        float conf;

        if (p > 0 && (b[p - 1] == ' ' || b[p - 1] == '-')) {
                spaced = b[p - 1] == ' ';
                p--;
        }
        if (p >= 10 && b[p - 8] == '.' && b[p - 4] == '.' &&
            digits_at(b, p - 10, 2) && digits_at(b, p - 7, 3) &&
            digits_at(b, p - 3, 3)) {
                start = p - 10;
                memcpy(v, b + start, 2);
                memcpy(v + 2, b + start + 3, 3);
                memcpy(v + 5, b + start + 7, 3);
                conf = CONF_DNI_DOTTED;
        } else if (p >= 8 && digits_at(b, p - 8, 8)) {
                start = p - 8;
                memcpy(v, b + start, 8);
                conf = CONF_DNI;
        } else if (p >= 8 && digits_at(b, p - 7, 7)) {
                start = p - 8;
                if (start > 0 && (b[start] == ' ' || b[start] == '-')) {
                        spaced |= b[start] == ' ';
                        start--;
                }
                if (b[start] != 'X' && b[start] != 'Y' && b[start] != 'Z')
                        return false;
                v[0] = (char)b[start];
                memcpy(v + 1, b + p - 7, 7);
                conf = CONF_DNI_DOTTED;
        } else {
                return false;
        }
        v[8] = (char)b[end - 1];
        if ((som != SIZE_MAX && start != som) || !left_free(b, start) ||
            !veil_valid_es_dni(v, 9))
                return false;
        push(ctx, VEIL_DET_ES_DNI, start, end, spaced ? CONF_WEAK : conf);
        return true;
}

/* NIR with a Corsican department (2A, 2B): 15 characters back from the
 * end, spaces between the groups allowed. */
static void match_nir_corsica(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t p               = end;
        char v[15];
        int n       = 15;
        bool spaced = false;

        while (n > 0 && p > 0) {
                if (b[p - 1] == ' ') {
                        spaced = true;
                        p--;
                        continue;
                }
                v[--n] = (char)b[--p];
        }
        if (n > 0 || (som != SIZE_MAX && p != som) || !left_free(b, p) ||
            !right_free(b, ctx->len, end, false) || !veil_valid_fr_nir(v, 15))
                return;
        push(ctx, VEIL_DET_FR_NIR, p, end,
             spaced ? CONF_NIR_GROUPED : CONF_WEAK);
}

/* A fiscal code's last digit place may hold a letter (omocodia): such
 * codes end in two letters, which the anchor does not see. Their own
 * pattern would cost a fifth of the scan for a few thousand people. */
static bool match_fiscal_code(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t start           = end - 16;

        if (end < 16 || (som != SIZE_MAX && start != som) ||
            !left_free(b, start) ||
            !veil_valid_it_fiscal_code((const char *)b + start, 16))
                return false;
        push(ctx, VEIL_DET_IT_FISCAL_CODE, start, end, CONF_FISCAL_CODE);
        return true;
}

static bool match_pan(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t start           = end - 10;

        if (end < 10 || (som != SIZE_MAX && start != som) ||
            !left_free(b, start) ||
            !veil_valid_in_pan((const char *)b + start, 10))
                return false;
        push(ctx, VEIL_DET_IN_PAN, start, end, CONF_PAN);
        return true;
}

/* "A digit, then a letter that ends a word": a fiscal code, a PAN or a
 * DNI/NIE, told apart by their validators. */
static void match_check_letter(struct scan_ctx *ctx, size_t som, size_t end)
{
        if (!right_free(ctx->buf, ctx->len, end, false))
                return;
        if (!match_fiscal_code(ctx, som, end) && !match_pan(ctx, som, end))
                match_dni(ctx, som, end);
}

/* Keys are pasted next to anything (`id:secret`, `KEY=...`): the pattern's
 * word boundaries are the only ones asked for. */
static void match_aws(struct scan_ctx *ctx, size_t som, size_t end)
{
        size_t start = end - 20;

        if ((som != SIZE_MAX && start != som) ||
            !veil_valid_aws_access_key((const char *)ctx->buf + start, 20))
                return;
        push(ctx, VEIL_DET_AWS_ACCESS_KEY, start, end, CONF_AWS);
}

/* Reported after the second dot: header and payload are walked back, the
 * signature forward. A token glued to more base64url parts (a JWE, five
 * parts) or to a word is not one. */
static void match_jwt(struct scan_ctx *ctx, size_t som, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t len = ctx->len, p = end - 1, hs, se = end;

        while (p > 0 && is_b64url(b[p - 1]))
                p--;
        if (p == 0 || b[p - 1] != '.')
                return;
        p--;
        hs = p;
        while (hs > 0 && p - hs <= JWT_HEADER_MAX && is_b64url(b[hs - 1]))
                hs--;
        if (p - hs > JWT_HEADER_MAX || (hs > 0 && b[hs - 1] == '.') ||
            (som != SIZE_MAX && hs != som))
                return;
        while (se < len && is_b64url(b[se]))
                se++;
        if (se < len && b[se] == '.' && se + 1 < len && is_b64url(b[se + 1]))
                return;
        if (!veil_valid_jwt((const char *)b + hs, se - hs))
                return;
        push(ctx, VEIL_DET_JWT, hs, se, CONF_JWT);
}

/* --------------------------------------------------------------- custom */
static void match_custom(struct scan_ctx *ctx, int det, size_t from, size_t end)
{
        const unsigned char *b = ctx->buf;
        size_t len             = ctx->len;

        if (from >= end)
                return;
        /* whole words only, like \b on both sides */
        if (is_word(b[from]) && from > 0 && is_word(b[from - 1]))
                return;
        if (is_word(b[end - 1]) && end < len && is_word(b[end]))
                return;
        /* never split a UTF-8 sequence */
        while (from > 0 && (b[from] & 0xC0) == 0x80)
                from--;
        while (end < len && (b[end] & 0xC0) == 0x80)
                end++;
        push(ctx, det, from, end, CONF_CUSTOM);
}

static int on_match(unsigned int id, unsigned long long from,
                    unsigned long long to, unsigned int flags, void *opaque)
{
        struct scan_ctx *ctx                    = opaque;
        const struct veil_detect_engine *engine = ctx->engine;
        enum shape shape                        = engine->pattern_shape[id];
        size_t end                              = (size_t)to;
        size_t som = engine->som ? (size_t)from : SIZE_MAX;

        (void)flags;
        if (shape == SHAPE_CUSTOM) {
                match_custom(ctx, engine->pattern_detector[id], (size_t)from,
                             end);
                return 0;
        }
        /* the IPv6 patterns can end at the same offset */
        if (ctx->last_end[shape] == end)
                return 0;
        ctx->last_end[shape] = end;
        switch (shape) {
        case SHAPE_EMAIL:
                match_email(ctx, som, end);
                break;
        case SHAPE_NUMERIC:
                match_numeric(ctx, som, end);
                break;
        case SHAPE_IBAN:
                match_iban(ctx, som, end);
                break;
        case SHAPE_IPV4:
                match_ipv4(ctx, som, end);
                break;
        case SHAPE_IPV6:
                match_ipv6(ctx, som, end);
                break;
        case SHAPE_IPV6_DC:
                if (som != SIZE_MAX)
                        match_ipv6(ctx, som, end); /* the whole form */
                else
                        ipv6_dc(ctx, end);
                break;
        case SHAPE_CHECK_LETTER:
                match_check_letter(ctx, som, end);
                break;
        case SHAPE_NIR_CORSICA:
                match_nir_corsica(ctx, som, end);
                break;
        case SHAPE_AWS:
                match_aws(ctx, som, end);
                break;
        case SHAPE_JWT:
                match_jwt(ctx, som, end);
                break;
        default:
                break;
        }
        return 0;
}

static int on_match_count(unsigned int id, unsigned long long from,
                          unsigned long long to, unsigned int flags,
                          void *opaque)
{
        (void)id;
        (void)from;
        (void)to;
        (void)flags;
        ((struct scan_ctx *)opaque)->n_matches++;
        return 0;
}

/* Sort by start, longer first, so a span's rivals follow it. */
static int finding_cmp(const void *a, const void *b)
{
        const struct veil_finding *x = a, *y = b;

        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        if (x->end != y->end)
                return x->end > y->end ? -1 : 1;
        return x->detector - y->detector;
}

/* One span per finding: the same detector's overlapping spans (repeated
 * end offsets of one value) merge; between detectors the longer span
 * wins, then the more confident one. Claims (DET_CLAIM) take part and are
 * dropped at the end, with whatever they won against. */
static void resolve_overlaps(struct veil_detect_scratch *scratch)
{
        struct veil_finding *f = scratch->f;
        size_t n = scratch->n, i, out = 0;

        if (n < 2)
                goto claims;
        /* Hyperscan reports in end order and spans are short, so the list
         * is nearly sorted by start: insertion sort moves each finding a
         * few places at most and needs no memory. */
        for (i = 1; i < n; i++) {
                struct veil_finding cur = f[i];
                size_t j                = i;

                while (j > 0 && finding_cmp(&f[j - 1], &cur) > 0) {
                        f[j] = f[j - 1];
                        j--;
                }
                f[j] = cur;
        }
        for (i = 0; i < n; i++) {
                struct veil_finding *last = out ? &f[out - 1] : NULL;

                if (!last || f[i].start >= last->end) {
                        f[out++] = f[i];
                        continue;
                }
                if (f[i].detector == last->detector) {
                        if (f[i].end > last->end)
                                last->end = f[i].end;
                        if (f[i].confidence > last->confidence)
                                last->confidence = f[i].confidence;
                        continue;
                }
                {
                        size_t ln = last->end - last->start;
                        size_t cn = f[i].end - f[i].start;

                        /* a claim wins a tie: it is an identifier's */
                        if (cn > ln ||
                            (cn == ln && last->detector != DET_CLAIM &&
                             (f[i].detector == DET_CLAIM ||
                              f[i].confidence > last->confidence)))
                                *last = f[i];
                }
        }
        n = out;
claims:
        for (i = out = 0; i < n; i++)
                if (f[i].detector != DET_CLAIM)
                        f[out++] = f[i];
        scratch->n = out;
}

/* Groups the context words by first byte (a counting sort). */
static void ctx_index(struct veil_detect_engine *engine)
{
        unsigned count[256] = {0}, pos[256], c, n = 0;
        const char *const *w;
        int d;

        for (d = 0; d < VEIL_DET__BUILTIN; d++)
                for (w = ctx_words[d]; *w; w++) {
                        /* the tables above are the program's own */
                        if (++n > CTX_WORDS_MAX || strlen(*w) > CTX_WORD_MAX)
                                abort();
                        count[(unsigned char)(*w)[0]]++;
                }
        n = 0;
        for (c = 0; c < 256; c++) {
                engine->ctx_start[c] = (uint8_t)n;
                pos[c]               = n;
                n += count[c];
        }
        engine->ctx_start[256] = (uint8_t)n;
        for (d = 0; d < VEIL_DET__BUILTIN; d++)
                for (w = ctx_words[d]; *w; w++) {
                        struct ctx_word *cw = &engine->ctx_list[pos[(
                                unsigned char)(*w)[0]]++];

                        cw->word = *w;
                        cw->len  = (uint8_t)strlen(*w);
                        cw->det  = (uint8_t)d;
                        engine->ctx_lens[(unsigned char)(*w)[0]] |= UINT32_C(1)
                                                                    << cw->len;
                }
}

/* --------------------------------------------------------------- public */
bool veil_detect_known(const char *name)
{
        /* One list of built-in names: the licence model's. The engine's
         * table must agree with it (test_detect checks every name). */
        return veil_detector_is_builtin(name);
}

struct veil_detect_engine *
veil_detect_engine_new(const struct veil_detector_def *custom, size_t n_custom,
                       char *errstr, size_t errstr_size)
{
        return veil_detect_engine_new_opts(custom, n_custom, NULL, errstr,
                                           errstr_size);
}

struct veil_detect_engine *veil_detect_engine_new_opts(
        const struct veil_detector_def *custom, size_t n_custom,
        const struct veil_detect_opts *opts, char *errstr, size_t errstr_size)
{
        struct veil_detect_engine *engine;
        const char **exprs = NULL;
        unsigned *flags = NULL, *ids = NULL;
        hs_compile_error_t *cerr = NULL;
        size_t i, j, n;

        if (n_custom > (size_t)(INT_MAX - VEIL_DET__BUILTIN)) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "too many detectors");
                return NULL;
        }
        for (i = 0; i < n_custom; i++) {
                if (!custom[i].name || !*custom[i].name || !custom[i].pattern ||
                    !*custom[i].pattern) {
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "detectors[%zu]: needs a name and a pattern",
                                  i);
                        return NULL;
                }
                if (veil_detect_known(custom[i].name)) {
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "detector '%s': a built-in detector has "
                                  "this name",
                                  custom[i].name);
                        return NULL;
                }
                for (j = 0; j < i; j++)
                        if (!strcmp(custom[i].name, custom[j].name)) {
                                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                          "detector '%s': defined twice",
                                          custom[i].name);
                                return NULL;
                        }
        }

        engine                = veil_calloc(1, sizeof(*engine));
        engine->som           = opts && opts->som;
        n                     = N_BUILTIN_PATTERNS + n_custom;
        engine->n_patterns    = n;
        engine->pattern_shape = veil_calloc(n, sizeof(*engine->pattern_shape));
        engine->pattern_detector =
                veil_calloc(n, sizeof(*engine->pattern_detector));
        engine->n_detectors = VEIL_DET__BUILTIN + (int)n_custom;
        engine->names       = veil_calloc((size_t)engine->n_detectors,
                                          sizeof(*engine->names));
        for (i = 0; i < VEIL_DET__BUILTIN; i++)
                engine->names[i] = veil_strdup(builtin_names[i]);
        ctx_index(engine);
        nd_index(engine);
        for (i = 0; i < n_custom; i++)
                engine->names[VEIL_DET__BUILTIN + i] =
                        veil_strdup(custom[i].name);

        exprs = veil_calloc(n, sizeof(*exprs));
        flags = veil_calloc(n, sizeof(*flags));
        ids   = veil_calloc(n, sizeof(*ids));
        for (i = 0; i < N_BUILTIN_PATTERNS; i++) {
                exprs[i] = engine->som && builtin_patterns[i].re_som
                                   ? builtin_patterns[i].re_som
                                   : builtin_patterns[i].re;
                flags[i] = engine->som ? HS_FLAG_SOM_LEFTMOST : 0;
                ids[i]   = (unsigned)i;
                engine->pattern_shape[i]    = builtin_patterns[i].shape;
                engine->pattern_detector[i] = -1;
        }
        /* A user's pattern has no hand-written span recovery, so it asks
         * Hyperscan for the start of match. */
        for (i = 0; i < n_custom; i++) {
                size_t k = N_BUILTIN_PATTERNS + i;

                exprs[k]                    = custom[i].pattern;
                flags[k]                    = HS_FLAG_SOM_LEFTMOST;
                ids[k]                      = (unsigned)k;
                engine->pattern_shape[k]    = SHAPE_CUSTOM;
                engine->pattern_detector[k] = VEIL_DET__BUILTIN + (int)i;
        }
        if (hs_compile_multi(exprs, flags, ids, (unsigned)n, HS_MODE_BLOCK,
                             NULL, &engine->db, &cerr) != HS_SUCCESS) {
                if (cerr->expression < 0)
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "detector database rejected by "
                                  "Hyperscan: %s",
                                  cerr->message);
                else if (cerr->expression >= (int)N_BUILTIN_PATTERNS)
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "detector '%s': pattern rejected by "
                                  "Hyperscan: %s",
                                  custom[cerr->expression -
                                         (int)N_BUILTIN_PATTERNS]
                                          .name,
                                  cerr->message);
                else
                        veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                  "built-in pattern %d rejected by "
                                  "Hyperscan: %s",
                                  cerr->expression, cerr->message);
                hs_free_compile_error(cerr);
                engine->db = NULL;
                goto err;
        }
        free(exprs);
        free(flags);
        free(ids);
        return engine;

err:
        free(exprs);
        free(flags);
        free(ids);
        veil_detect_engine_destroy(engine);
        return NULL;
}

void veil_detect_engine_destroy(struct veil_detect_engine *engine)
{
        int i;

        if (!engine)
                return;
        hs_free_database(engine->db);
        for (i = 0; i < engine->n_detectors; i++)
                free(engine->names[i]);
        free(engine->names);
        free(engine->pattern_detector);
        free(engine->pattern_shape);
        free(engine);
}

int veil_detect_count(const struct veil_detect_engine *engine)
{
        return engine->n_detectors;
}

int veil_detect_id(const struct veil_detect_engine *engine, const char *name)
{
        int i;

        if (!name)
                return -1;
        for (i = 0; i < engine->n_detectors; i++)
                if (!strcmp(engine->names[i], name))
                        return i;
        return -1;
}

const char *veil_detect_name(const struct veil_detect_engine *engine, int id)
{
        if (id < 0 || id >= engine->n_detectors)
                return NULL;
        return engine->names[id];
}

struct veil_detect_scratch *
veil_detect_scratch_new(const struct veil_detect_engine *engine, char *errstr,
                        size_t errstr_size)
{
        struct veil_detect_scratch *scratch = veil_calloc(1, sizeof(*scratch));
        hs_error_t rc = hs_alloc_scratch(engine->db, &scratch->hs);

        scratch->engine = engine;
        scratch->shorts =
                veil_calloc(MEMO_SHORT_SLOTS, sizeof(*scratch->shorts));
        if (rc != HS_SUCCESS) {
                free(scratch->shorts);
                veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                          "Hyperscan scratch allocation failed (%d)", rc);
                free(scratch);
                return NULL;
        }
        return scratch;
}

void veil_detect_scratch_destroy(struct veil_detect_scratch *scratch)
{
        size_t i;

        if (!scratch)
                return;
        hs_free_scratch(scratch->hs);
        free(scratch->f);
        free(scratch->shorts);
        for (i = 0; i < MEMO_LONG_SLOTS; i++) {
                free(scratch->longs[i].s);
                free(scratch->longs[i].f);
        }
        veil_text_buf_free(&scratch->round);
        free(scratch);
}

static uint64_t memo_hash(const unsigned char *s, size_t len)
{
        uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;
        size_t i;

        for (i = 0; i + 8 <= len; i += 8) {
                memcpy(&w, s + i, 8);
                h = (h ^ w) * 0xff51afd7ed558ccdull;
                h ^= h >> 32;
        }
        for (w = 0; i < len; i++)
                w = (w << 8) | s[i];
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
        return h ^ (h >> 29);
}

/* Was `buf` (0 < len <= MEMO_LONG_MAX) scanned before? Then its findings
 * are back in the scratch. `hash` is memo_hash's for a short text (a long
 * one is compared directly). */
static bool memo_get(struct veil_detect_scratch *scratch, const char *buf,
                     size_t len, uint64_t hash)
{
        size_t i;

        if (len <= MEMO_SHORT_MAX) {
                const struct memo_short *m =
                        &scratch->shorts[hash & (MEMO_SHORT_SLOTS - 1)];

                if (m->len != len || m->hash != hash || memcmp(m->s, buf, len))
                        return false;
                scratch->n = 0;
                return true;
        }
        for (i = 0; i < MEMO_LONG_SLOTS; i++) {
                const struct memo_long *m = &scratch->longs[i];

                if (m->len != len || memcmp(m->s, buf, len))
                        continue;
                if (m->n > scratch->cap) {
                        scratch->cap = m->n;
                        scratch->f   = veil_realloc(
                                  scratch->f, scratch->cap * sizeof(*scratch->f));
                }
                if (m->n)
                        memcpy(scratch->f, m->f, m->n * sizeof(*m->f));
                scratch->n = m->n;
                return true;
        }
        return false;
}

/* Remembers the scratch's findings for `buf`; a short text only when
 * clean (a short one with a finding, an email or a phone in its own
 * field, is seldom met again). */
static void memo_put(struct veil_detect_scratch *scratch, const char *buf,
                     size_t len, uint64_t hash)
{
        struct memo_long *m;

        if (len <= MEMO_SHORT_MAX) {
                struct memo_short *s =
                        &scratch->shorts[hash & (MEMO_SHORT_SLOTS - 1)];

                if (scratch->n)
                        return;
                s->hash = hash;
                s->len  = (uint32_t)len;
                memcpy(s->s, buf, len);
                return;
        }
        m = &scratch->longs[scratch->next_long++ % MEMO_LONG_SLOTS];
        if (!m->s)
                m->s = veil_malloc(MEMO_LONG_MAX);
        if (scratch->n > m->cap) {
                m->cap = scratch->n;
                m->f   = veil_realloc(m->f, m->cap * sizeof(*m->f));
        }
        if (scratch->n)
                memcpy(m->f, scratch->f, scratch->n * sizeof(*m->f));
        m->n   = scratch->n;
        m->len = len;
        memcpy(m->s, buf, len);
}

static void ctx_init(struct scan_ctx *ctx,
                     const struct veil_detect_engine *engine,
                     struct veil_detect_scratch *scratch, const char *buf,
                     size_t len)
{
        size_t i;

        ctx->engine    = engine;
        ctx->scratch   = scratch;
        ctx->buf       = (const unsigned char *)buf;
        ctx->len       = len;
        ctx->n_matches = 0;
        ctx->ctx_start = SIZE_MAX;
        for (i = 0; i < SHAPE__COUNT; i++)
                ctx->last_end[i] = SIZE_MAX;
}

int veil_detect_scan(const struct veil_detect_engine *engine,
                     struct veil_detect_scratch *scratch, const char *buf,
                     size_t len, const struct veil_finding **findings,
                     size_t *n_findings, char *errstr, size_t errstr_size)
{
        struct scan_ctx ctx;
        uint64_t hash = 0;
        bool memo;
        hs_error_t rc;

        scratch->n  = 0;
        *findings   = scratch->f;
        *n_findings = 0;
        if (len > UINT_MAX)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "text of %zu bytes is too large for one "
                                 "scan",
                                 len);
        if (len == 0)
                return 0;
        /* the memo answers for its own engine only */
        memo = len <= MEMO_LONG_MAX && engine == scratch->engine;
        if (memo && len <= MEMO_SHORT_MAX)
                hash = memo_hash((const unsigned char *)buf, len);
        if (memo && memo_get(scratch, buf, len, hash)) {
                *findings   = scratch->f;
                *n_findings = scratch->n;
                return 0;
        }
        ctx_init(&ctx, engine, scratch, buf, len);
        rc = hs_scan(engine->db, buf, (unsigned)len, 0, scratch->hs, on_match,
                     &ctx);
        if (rc != HS_SUCCESS)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "Hyperscan scan failed (%d)", rc);
        resolve_overlaps(scratch);
        if (memo)
                memo_put(scratch, buf, len, hash);
        *findings   = scratch->f;
        *n_findings = scratch->n;
        return 0;
}

int veil_detect_scan_raw(const struct veil_detect_engine *engine,
                         struct veil_detect_scratch *scratch, const char *buf,
                         size_t len, uint64_t *n_matches, char *errstr,
                         size_t errstr_size)
{
        struct scan_ctx ctx;
        hs_error_t rc;

        *n_matches = 0;
        if (len > UINT_MAX)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "text of %zu bytes is too large for one "
                                 "scan",
                                 len);
        ctx_init(&ctx, engine, scratch, buf, len);
        rc = hs_scan(engine->db, buf, (unsigned)len, 0, scratch->hs,
                     on_match_count, &ctx);
        if (rc != HS_SUCCESS)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "Hyperscan scan failed (%d)", rc);
        *n_matches = ctx.n_matches;
        return 0;
}

/* ---------------------------------------------------------- redact_text */
void veil_text_buf_free(struct veil_text_buf *tb)
{
        if (!tb)
                return;
        free(tb->data);
        tb->data = NULL;
        tb->len = tb->cap = 0;
}

static void tb_reserve(struct veil_text_buf *tb, size_t need)
{
        size_t cap;

        if (need <= tb->cap)
                return;
        cap = tb->cap ? tb->cap : 256;
        while (cap < need)
                cap *= 2;
        tb->data = veil_realloc(tb->data, cap);
        tb->cap  = cap;
}

static const char placeholder[] = "{detector}";
#define PLACEHOLDER_LEN (sizeof(placeholder) - 1)

/* Length of the replacement for a detector name of length name_len. */
static size_t repl_len(const char *tmpl, size_t name_len)
{
        size_t n      = 0;
        const char *p = tmpl, *q;

        while ((q = strstr(p, placeholder))) {
                n += (size_t)(q - p) + name_len;
                p = q + PLACEHOLDER_LEN;
        }
        return n + strlen(p);
}

static char *repl_write(char *out, const char *tmpl, const char *name,
                        size_t name_len)
{
        const char *p = tmpl, *q;
        size_t n;

        while ((q = strstr(p, placeholder))) {
                memcpy(out, p, (size_t)(q - p));
                out += q - p;
                memcpy(out, name, name_len);
                out += name_len;
                p = q + PLACEHOLDER_LEN;
        }
        n = strlen(p);
        memcpy(out, p, n);
        return out + n;
}

static void text_empty(struct veil_text_buf *tb)
{
        tb_reserve(tb, 1);
        tb->len     = 0;
        tb->data[0] = 0;
}

/* One pass: `in` to `out` with each finding `how` wants replaced (the
 * findings `f` are in's). Returns the number of wanted findings; `out` is
 * written only when it is not 0, and never when NULL (count only). */
static size_t redact_pass(const struct veil_detect_engine *engine,
                          const struct veil_redaction *how, const char *in,
                          size_t len, const struct veil_finding *f, size_t n,
                          struct veil_text_buf *out)
{
        const char *tmpl = how->replace ? how->replace : "[{detector}]";
        size_t i, need = len + 1, pos = 0, done = 0;
        char *w;

        /* size first, so that the copy below never reallocates */
        for (i = 0; i < n; i++) {
                const char *name = engine->names[f[i].detector];

                if (how->want && !how->want(how->arg, f[i].detector))
                        continue;
                if (how->each)
                        how->each(how->arg, f[i].detector);
                need = need - (f[i].end - f[i].start) +
                       repl_len(tmpl, strlen(name));
                done++;
        }
        if (!done || !out)
                return done;
        tb_reserve(out, need);
        w = out->data;
        for (i = 0; i < n; i++) {
                const char *name = engine->names[f[i].detector];

                if (how->want && !how->want(how->arg, f[i].detector))
                        continue;
                memcpy(w, in + pos, f[i].start - pos);
                w += f[i].start - pos;
                w   = repl_write(w, tmpl, name, strlen(name));
                pos = f[i].end;
        }
        memcpy(w, in + pos, len - pos);
        w += len - pos;
        *w       = 0;
        out->len = (size_t)(w - out->data);
        return done;
}

int veil_redact(const struct veil_detect_engine *engine,
                struct veil_detect_scratch *scratch,
                const struct veil_redaction *how, const char *in, size_t len,
                struct veil_text_buf *out, size_t *n_redacted, char *errstr,
                size_t errstr_size)
{
        struct veil_text_buf *cur = out, *next = &scratch->round, t;
        const struct veil_finding *f;
        size_t n, got, total = 0;
        int rc, round;

        *n_redacted = 0;
        rc          = veil_detect_scan(engine, scratch, in, len, &f, &n, errstr,
                                       errstr_size);
        if (rc)
                goto failed;
        total = redact_pass(engine, how, in, len, f, n, cur);
        /* A replacement can be a context word for a number beside it
         * ("[phone]; 415..."), or a custom detector can match it: the
         * result is scanned again and redacted again until a scan finds
         * nothing wanted, and after VEIL_REDACT_ROUNDS rewrites a text
         * still holding a wanted finding is emptied (fail closed). */
        for (round = 1; total && round <= VEIL_REDACT_ROUNDS; round++) {
                rc = veil_detect_scan(engine, scratch, cur->data, cur->len, &f,
                                      &n, errstr, errstr_size);
                if (rc)
                        goto failed;
                if (round == VEIL_REDACT_ROUNDS) { /* counted, not rewritten */
                        got = redact_pass(engine, how, cur->data, cur->len, f,
                                          n, NULL);
                        total += got;
                        if (got)
                                text_empty(cur);
                        break;
                }
                got = redact_pass(engine, how, cur->data, cur->len, f, n, next);
                if (!got)
                        break;
                total += got;
                t     = *cur;
                *cur  = *next;
                *next = t;
        }
        *n_redacted = total;
        return 0;
failed: /* nothing half-redacted stays behind */
        text_empty(out);
        *n_redacted = total;
        return rc;
}

/* redact_text's choice: the detectors its list names (all without one). */
struct redact_text_arg {
        const struct veil_detect_engine *engine;
        const struct veil_transform *tx;
};

static bool redact_wanted(void *arg_, int detector)
{
        const struct redact_text_arg *arg = arg_;
        const char *name                  = arg->engine->names[detector];
        size_t i;

        for (i = 0; i < arg->tx->redact.n_detectors; i++)
                if (arg->tx->redact.detectors[i] &&
                    !strcmp(arg->tx->redact.detectors[i], name))
                        return true;
        return false;
}

int veil_redact_text(const struct veil_detect_engine *engine,
                     struct veil_detect_scratch *scratch,
                     const struct veil_transform *tx, const char *in,
                     size_t len, struct veil_text_buf *out, size_t *n_redacted,
                     char *errstr, size_t errstr_size)
{
        struct redact_text_arg arg = {engine, tx};
        struct veil_redaction how  = {
                 .replace = tx ? tx->redact.replace : NULL,
                 .want    = tx && tx->redact.detectors ? redact_wanted : NULL,
                 .arg     = &arg,
        };
        size_t n;
        int rc;

        if (n_redacted)
                *n_redacted = 0;
        rc = veil_redact(engine, scratch, &how, in, len, out, &n, errstr,
                         errstr_size);
        if (rc)
                return rc;
        if (!n) { /* nothing replaced: a copy */
                tb_reserve(out, len + 1);
                if (len) /* `in` may be NULL when len is 0 */
                        memcpy(out->data, in, len);
                out->data[len] = 0;
                out->len       = len;
        }
        if (n_redacted)
                *n_redacted = n;
        return 0;
}
