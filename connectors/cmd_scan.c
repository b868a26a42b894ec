/* cmd_scan.c - `veil scan`: static scan of files, directories or stdin for
 * PII with the detectors the pipeline uses; reports name positions and
 * detectors, never the matched text. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "commands.h"
#include "detect.h"
#include "util.h"
#include "veil.h"

static const struct veil_cmd_help help_scan = {
        "scan",
        "scan [--format text|json|sarif] [--detectors LIST] [--baseline "
        "FILE] PATH…",
        "Static scan of files for PII with the same detectors as the "
        "pipeline.\nDirectories are scanned recursively (binary files "
        "skipped); '-' reads stdin.\nReports give positions and detector "
        "names, never the matched text.",
        "options:\n"
        "  -f, --format FMT      text (default): PATH:LINE:START-END: "
        "DETECTOR\n"
        "                        json: one object per line: path, line "
        "(1-based),\n"
        "                        start, end (0-based bytes in the line, end "
        "exclusive),\n"
        "                        detector, fingerprint\n"
        "                        sarif: SARIF 2.1.0, one result per finding\n"
        "  -d, --detectors LIST  comma-separated detectors (default: all): "
        "email,\n"
        "                        phone, us_ssn, credit_card, iban, ipv4, "
        "ipv6,\n"
        "                        uk_nhs, ca_sin, fr_nir, es_dni, "
        "it_fiscal_code,\n"
        "                        nl_bsn, in_aadhaar, in_pan, br_cpf, "
        "aws_access_key,\n"
        "                        jwt (docs/detectors.md)\n"
        "  -b, --baseline FILE   a previous json report: the findings it "
        "holds are\n"
        "                        not reported again, even if their line "
        "moved\n"
        "environment:\n"
        "  VEIL_SCAN_SALT        key of the fingerprints (default: a fixed "
        "one)\n"
        "exit: 0 no findings, 1 findings, 2 error\n"};

enum scan_format { FMT_TEXT = 0, FMT_JSON, FMT_SARIF };

/* Files are scanned in pieces of about this size cut at line ends: the
 * line mapping that follows each scan then reads bytes still in cache, and
 * the finding list stays small (one block call could take up to 4 GiB). */
#define SCAN_CHUNK (4u << 20)
/* A NUL byte in the first 8 KiB marks a binary file, as git does. */
#define BINARY_PROBE 8192
#define FP_BYTES 16
#define DEFAULT_SALT "veil-scan-fingerprint-v1"

struct scan {
        enum scan_format fmt;
        struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        bool *want; /* by detector id */
        const char *salt;
        /* baseline: sorted keys, "F<fingerprint>" or
         * "T<path>\t<line>\t<start>\t<end>\t<detector>" */
        char **base;
        size_t n_base;
        bool base_tuples;
        json_t *results;            /* sarif */
        struct veil_text_buf fpbuf; /* fingerprint input, reused */
        size_t reported, suppressed;
        int errors;
};

/* ----------------------------------------------------------- fingerprint */
/* HMAC-SHA256 over path, detector and the matched bytes, truncated: the
 * same value in the same file keeps its fingerprint when lines move, and
 * the report never carries the value itself. */
static void fingerprint(struct scan *sc, const char *path, const char *det,
                        const char *m, size_t mlen, char hex[2 * FP_BYTES + 1])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        size_t plen = strlen(path) + 1, dlen = strlen(det) + 1;
        struct veil_text_buf *tb = &sc->fpbuf;

        if (tb->cap < plen + dlen + mlen) {
                tb->cap  = plen + dlen + mlen + 256;
                tb->data = veil_realloc(tb->data, tb->cap);
        }
        memcpy(tb->data, path, plen);
        memcpy(tb->data + plen, det, dlen);
        memcpy(tb->data + plen + dlen, m, mlen);
        if (!HMAC(EVP_sha256(), sc->salt, (int)strlen(sc->salt),
                  (const unsigned char *)tb->data, plen + dlen + mlen, md,
                  &mdlen) ||
            mdlen < FP_BYTES)
                memset(md, 0, sizeof(md)); /* keeps the report well-formed */
        veil_hex_encode(md, FP_BYTES, hex);
}

/* -------------------------------------------------------------- baseline */
static int key_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *tuple_key(const char *path, size_t line, size_t start, size_t end,
                       const char *det)
{
        char *k = NULL;

        if (asprintf(&k, "T%s\t%zu\t%zu\t%zu\t%s", path, line, start, end,
                     det) < 0)
                abort();
        return k;
}

static bool in_baseline(const struct scan *sc, const char *key)
{
        return sc->n_base && bsearch(&key, sc->base, sc->n_base,
                                     sizeof(*sc->base), key_cmp) != NULL;
}

static int load_baseline(struct scan *sc, const char *file)
{
        char errstr[512];
        size_t len, lineno = 0, cap = 0;
        char *text = veil_file_read(file, &len, errstr, sizeof(errstr));
        char *line, *save = NULL;

        if (!text) {
                fprintf(stderr, "veil scan: baseline %s\n", errstr);
                return -1;
        }
        for (line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                json_error_t jerr;
                json_t *obj, *fp, *path, *det, *ln, *st, *en;
                char *key;

                lineno++;
                if (!*line || strspn(line, " \t\r") == strlen(line))
                        continue;
                obj  = json_loads(line, 0, &jerr);
                fp   = json_object_get(obj, "fingerprint");
                path = json_object_get(obj, "path");
                det  = json_object_get(obj, "detector");
                ln   = json_object_get(obj, "line");
                st   = json_object_get(obj, "start");
                en   = json_object_get(obj, "end");
                if (json_is_string(fp)) {
                        key    = veil_malloc(strlen(json_string_value(fp)) + 2);
                        key[0] = 'F';
                        strcpy(key + 1, json_string_value(fp));
                } else if (json_is_string(path) && json_is_string(det) &&
                           json_is_integer(ln) && json_is_integer(st) &&
                           json_is_integer(en)) {
                        key             = tuple_key(json_string_value(path),
                                                    (size_t)json_integer_value(ln),
                                                    (size_t)json_integer_value(st),
                                                    (size_t)json_integer_value(en),
                                                    json_string_value(det));
                        sc->base_tuples = true;
                } else {
                        fprintf(stderr,
                                "veil scan: baseline %s:%zu: not a finding "
                                "of `veil scan --format json`\n",
                                file, lineno);
                        json_decref(obj);
                        free(text);
                        return -1;
                }
                json_decref(obj);
                if (sc->n_base == cap) {
                        cap = cap ? 2 * cap : 64;
                        sc->base =
                                veil_realloc(sc->base, cap * sizeof(*sc->base));
                }
                sc->base[sc->n_base++] = key;
        }
        free(text);
        if (sc->n_base)
                qsort(sc->base, sc->n_base, sizeof(*sc->base), key_cmp);
        return 0;
}

/* ---------------------------------------------------------------- output */
/* jansson wants UTF-8; a path that is not gets '?' for its bad bytes. */
static json_t *json_path(const char *path)
{
        json_t *s = json_string(path);
        char *copy;
        size_t i;

        if (s)
                return s;
        copy = veil_strdup(path);
        for (i = 0; copy[i]; i++)
                if ((unsigned char)copy[i] >= 0x80)
                        copy[i] = '?';
        s = json_string(copy);
        free(copy);
        return s;
}

/* SARIF wants a URI reference: percent-encode what is not unreserved. */
static char *uri_of(const char *path)
{
        static const char hexd[] = "0123456789ABCDEF";
        size_t n = strlen(path), i, o = 0;
        char *u = veil_malloc(3 * n + 1);

        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)path[i];

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || strchr("-._~/", c)) {
                        u[o++] = (char)c;
                } else {
                        u[o++] = '%';
                        u[o++] = hexd[c >> 4];
                        u[o++] = hexd[c & 15];
                }
        }
        u[o] = 0;
        return u;
}

static size_t codepoints(const char *s, size_t n)
{
        size_t i, cp = 0;

        for (i = 0; i < n; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        cp++;
        return cp;
}

static void put_size(size_t v)
{
        char buf[24];
        size_t i = sizeof(buf);

        do {
                buf[--i] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        fwrite_unlocked(buf + i, 1, sizeof(buf) - i, stdout);
}

struct located {
        const char *path;
        const char *text;  /* the scanned piece */
        size_t base;       /* its offset in the file */
        size_t line;       /* 1-based */
        size_t line_start; /* offset of the line in `text` */
};

static void report(struct scan *sc, const struct located *at,
                   const struct veil_finding *f)
{
        const char *det           = veil_detect_name(sc->engine, f->detector);
        size_t start              = f->start - at->line_start;
        size_t end                = f->end - at->line_start;
        char fp[2 * FP_BYTES + 1] = "";
        bool need_fp              = sc->fmt != FMT_TEXT || sc->n_base;

        if (need_fp)
                fingerprint(sc, at->path, det, at->text + f->start,
                            f->end - f->start, fp);
        if (sc->n_base) {
                char key[2 * FP_BYTES + 2];
                bool hit;

                key[0] = 'F';
                memcpy(key + 1, fp, sizeof(fp));
                hit = in_baseline(sc, key);
                if (!hit && sc->base_tuples) {
                        char *tk =
                                tuple_key(at->path, at->line, start, end, det);

                        hit = in_baseline(sc, tk);
                        free(tk);
                }
                if (hit) {
                        sc->suppressed++;
                        return;
                }
        }
        sc->reported++;
        if (sc->fmt == FMT_TEXT) {
                /* the hot output path on big trees: no printf parsing */
                fputs_unlocked(at->path, stdout);
                putchar_unlocked(':');
                put_size(at->line);
                putchar_unlocked(':');
                put_size(start);
                putchar_unlocked('-');
                put_size(end);
                fputs_unlocked(": ", stdout);
                fputs_unlocked(det, stdout);
                putchar_unlocked('\n');
        } else if (sc->fmt == FMT_JSON) {
                json_t *obj = json_object();

                json_object_set_new(obj, "path", json_path(at->path));
                json_object_set_new(obj, "line",
                                    json_integer((json_int_t)at->line));
                json_object_set_new(obj, "start",
                                    json_integer((json_int_t)start));
                json_object_set_new(obj, "end", json_integer((json_int_t)end));
                json_object_set_new(obj, "detector", json_string(det));
                json_object_set_new(obj, "fingerprint", json_string(fp));
                json_dumpf(obj, stdout, JSON_COMPACT);
                putchar('\n');
                json_decref(obj);
        } else {
                const char *ls = at->text + at->line_start;
                size_t col     = codepoints(ls, start) + 1;
                size_t ecol    = col + codepoints(ls + start, end - start);
                char *uri      = uri_of(at->path);
                char msg[128];
                json_t *res;

                snprintf(msg, sizeof(msg), "%s found (confidence %.2f)", det,
                         (double)f->confidence);
                res = json_pack(
                        "{s:s, s:i, s:s, s:{s:s}, s:[{s:{s:{s:s}, "
                        "s:{s:I, s:I, s:I, s:I, s:I}}}], s:{s:s}}",
                        "ruleId", det, "ruleIndex", f->detector, "level",
                        "warning", "message", "text", msg, "locations",
                        "physicalLocation", "artifactLocation", "uri", uri,
                        "region", "startLine", (json_int_t)at->line,
                        "startColumn", (json_int_t)col, "endColumn",
                        (json_int_t)ecol, "byteOffset",
                        (json_int_t)(at->base + f->start), "byteLength",
                        (json_int_t)(f->end - f->start), "partialFingerprints",
                        "veilFingerprint/v1", fp);
                free(uri);
                if (res)
                        json_array_append_new(sc->results, res);
        }
}

/* Scans one piece of a file; `line` carries the line count across
 * pieces. */
static int scan_piece(struct scan *sc, const char *path, const char *text,
                      size_t len, size_t base, size_t *line)
{
        const struct veil_finding *f;
        struct located at = {path, text, base, *line, 0};
        size_t n, i, pos = 0;
        char errstr[256];

        if (veil_detect_scan(sc->engine, sc->scratch, text, len, &f, &n, errstr,
                             sizeof(errstr))) {
                fprintf(stderr, "veil scan: %s: %s\n", path, errstr);
                return -1;
        }
        for (i = 0; i < n; i++) {
                const char *nl;

                if (!sc->want[f[i].detector])
                        continue;
                while ((nl = memchr(text + pos, '\n', f[i].start - pos))) {
                        at.line++;
                        pos           = (size_t)(nl - text) + 1;
                        at.line_start = pos;
                }
                pos = f[i].start;
                report(sc, &at, &f[i]);
        }
        /* count the rest of the lines for the next piece */
        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);

                if (!nl)
                        break;
                at.line++;
                pos = (size_t)(nl - text) + 1;
        }
        *line = at.line;
        return 0;
}

static int scan_buffer(struct scan *sc, const char *path, const char *text,
                       size_t len)
{
        size_t off = 0, line = 1;

        if (memchr(text, 0, len < BINARY_PROBE ? len : BINARY_PROBE))
                return 0; /* binary */
        while (off < len) {
                size_t n = len - off;

                if (n > SCAN_CHUNK) {
                        const char *nl = memrchr(text + off, '\n', SCAN_CHUNK);

                        n = nl ? (size_t)(nl - (text + off)) + 1 : SCAN_CHUNK;
                }
                if (scan_piece(sc, path, text + off, n, off, &line))
                        return -1;
                off += n;
        }
        return 0;
}

static int read_all(int fd, struct veil_text_buf *tb)
{
        tb->len = 0;
        for (;;) {
                ssize_t r;

                if (tb->cap - tb->len < 65536) {
                        tb->cap  = tb->cap ? 2 * tb->cap : 1 << 20;
                        tb->data = veil_realloc(tb->data, tb->cap);
                }
                r = read(fd, tb->data + tb->len, tb->cap - tb->len);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -1;
                if (r == 0)
                        return 0;
                tb->len += (size_t)r;
        }
}

static void scan_fd_stream(struct scan *sc, const char *path, int fd)
{
        struct veil_text_buf tb = {0};

        if (read_all(fd, &tb)) {
                fprintf(stderr, "veil scan: %s: %s\n", path, strerror(errno));
                sc->errors++;
        } else if (scan_buffer(sc, path, tb.data ? tb.data : "", tb.len)) {
                sc->errors++;
        }
        veil_text_buf_free(&tb);
}

static void scan_file(struct scan *sc, const char *path)
{
        struct stat st;
        void *map;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "veil scan: %s: %s\n", path, strerror(errno));
                sc->errors++;
                if (fd >= 0)
                        close(fd);
                return;
        }
        if (!S_ISREG(st.st_mode)) {
                scan_fd_stream(sc, path, fd); /* a pipe or device named */
                close(fd);
                return;
        }
        if (st.st_size == 0) {
                close(fd);
                return;
        }
        /* populate: one call maps the whole (usually cached) file instead
         * of a page fault every few pages */
        map = mmap(NULL, (size_t)st.st_size, PROT_READ,
                   MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) {
                scan_fd_stream(sc, path, fd);
                close(fd);
                return;
        }
        close(fd);
        if (scan_buffer(sc, path, map, (size_t)st.st_size))
                sc->errors++;
        munmap(map, (size_t)st.st_size);
}

static bool skip_dir_entry(const char *name)
{
        return !strcmp(name, ".") || !strcmp(name, "..") ||
               !strcmp(name, ".git") || !strcmp(name, ".hg") ||
               !strcmp(name, ".svn");
}

/* Depth-first, entries in name order so that reports are stable; symbolic
 * links inside a tree are not followed (no loops, no escaping it). */
static void scan_dir(struct scan *sc, const char *dir)
{
        struct dirent **ents = NULL;
        int n                = scandir(dir, &ents, NULL, alphasort), i;
        size_t dlen          = strlen(dir);

        if (n < 0) {
                fprintf(stderr, "veil scan: %s: %s\n", dir, strerror(errno));
                sc->errors++;
                return;
        }
        for (i = 0; i < n; i++) {
                const char *name = ents[i]->d_name;
                struct stat st;
                char *child;

                if (skip_dir_entry(name)) {
                        free(ents[i]);
                        continue;
                }
                child = veil_malloc(dlen + strlen(name) + 2);
                sprintf(child, "%s%s%s", dir,
                        dlen && dir[dlen - 1] == '/' ? "" : "/", name);
                if (lstat(child, &st) == 0) {
                        if (S_ISDIR(st.st_mode))
                                scan_dir(sc, child);
                        else if (S_ISREG(st.st_mode))
                                scan_file(sc, child);
                } else {
                        fprintf(stderr, "veil scan: %s: %s\n", child,
                                strerror(errno));
                        sc->errors++;
                }
                free(child);
                free(ents[i]);
        }
        free(ents);
}

static void scan_path(struct scan *sc, const char *path)
{
        struct stat st;

        if (!strcmp(path, "-")) {
                scan_fd_stream(sc, "-", STDIN_FILENO);
                return;
        }
        if (stat(path, &st) < 0) {
                fprintf(stderr, "veil scan: %s: %s\n", path, strerror(errno));
                sc->errors++;
                return;
        }
        if (S_ISDIR(st.st_mode))
                scan_dir(sc, path);
        else
                scan_file(sc, path);
}

/* ----------------------------------------------------------------- sarif */
static void sarif_write(struct scan *sc)
{
        json_t *rules = json_array(), *doc;
        int i;

        for (i = 0; i < veil_detect_count(sc->engine); i++) {
                const char *name = veil_detect_name(sc->engine, i);
                char text[96];

                snprintf(text, sizeof(text), "Personal data (%s) in text",
                         name);
                json_array_append_new(rules, json_pack("{s:s, s:s, s:{s:s}}",
                                                       "id", name, "name", name,
                                                       "shortDescription",
                                                       "text", text));
        }
        doc = json_pack("{s:s, s:s, s:[{s:{s:{s:s, s:s, s:s, s:o}}, s:s, "
                        "s:O}]}",
                        "$schema",
                        "https://json.schemastore.org/sarif-2.1.0.json",
                        "version", "2.1.0", "runs", "tool", "driver", "name",
                        "veil", "version", VEIL_VERSION, "semanticVersion",
                        VEIL_VERSION, "rules", rules, "columnKind",
                        "unicodeCodePoints", "results", sc->results);
        if (doc) {
                json_dumpf(doc, stdout, JSON_INDENT(2));
                putchar('\n');
        }
        json_decref(doc);
}

/* ------------------------------------------------------------------ main */
static int parse_detectors(struct scan *sc, const char *list)
{
        char *copy = veil_strdup(list), *tok, *save = NULL;
        int n = veil_detect_count(sc->engine), i, picked = 0;

        for (i = 0; i < n; i++)
                sc->want[i] = false;
        for (tok = strtok_r(copy, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
                int id = veil_detect_id(sc->engine, tok);

                if (id < 0) {
                        const char *best = NULL;
                        unsigned bd      = 3;

                        for (i = 0; i < n; i++) {
                                const char *name =
                                        veil_detect_name(sc->engine, i);
                                unsigned d = veil_edit_distance(tok, name, 3);

                                if (d < bd) {
                                        bd   = d;
                                        best = name;
                                }
                        }
                        if (best)
                                veil_cmd_usage_error(&help_scan,
                                                     "unknown detector '%s' "
                                                     "(did you mean '%s'?)",
                                                     tok, best);
                        else
                                veil_cmd_usage_error(&help_scan,
                                                     "unknown detector '%s'",
                                                     tok);
                        free(copy);
                        return -1;
                }
                sc->want[id] = true;
                picked++;
        }
        free(copy);
        if (!picked) {
                veil_cmd_usage_error(&help_scan, "--detectors: empty list");
                return -1;
        }
        return 0;
}

int veil_cmd_scan(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"format", required_argument, NULL, 'f'},
                {"detectors", required_argument, NULL, 'd'},
                {"baseline", required_argument, NULL, 'b'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        struct scan sc     = {0};
        const char *format = "text", *detectors = NULL, *baseline = NULL;
        char errstr[512];
        int opt, i, rc = VEIL_EXIT_USAGE;
        size_t k;

        opterr = 0;
        optind = 1;
        while ((opt = getopt_long(argc, argv, ":f:d:b:h", longopts, NULL)) !=
               -1) {
                switch (opt) {
                case 'f':
                        format = optarg;
                        break;
                case 'd':
                        detectors = optarg;
                        break;
                case 'b':
                        baseline = optarg;
                        break;
                case 'h':
                        veil_cmd_print_help(&help_scan);
                        return VEIL_EXIT_OK;
                case ':':
                        return veil_cmd_usage_error(&help_scan,
                                                    "option '%s' needs a "
                                                    "value",
                                                    argv[optind - 1]);
                default:
                        return veil_cmd_usage_error(&help_scan,
                                                    "unknown option '%s'",
                                                    argv[optind - 1]);
                }
        }
        if (!strcmp(format, "text"))
                sc.fmt = FMT_TEXT;
        else if (!strcmp(format, "json"))
                sc.fmt = FMT_JSON;
        else if (!strcmp(format, "sarif"))
                sc.fmt = FMT_SARIF;
        else
                return veil_cmd_usage_error(&help_scan,
                                            "unknown format '%s' (text, json "
                                            "or sarif)",
                                            format);
        if (optind >= argc)
                return veil_cmd_usage_error(&help_scan, "no PATH to scan");

        /* reports can be long: write them in large blocks unless a
         * terminal is watching */
        if (!isatty(STDOUT_FILENO))
                setvbuf(stdout, NULL, _IOFBF, 1 << 16);
        sc.salt = getenv("VEIL_SCAN_SALT");
        if (!sc.salt || !*sc.salt)
                sc.salt = DEFAULT_SALT;
        sc.engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        if (!sc.engine) {
                fprintf(stderr, "veil scan: %s\n", errstr);
                goto out;
        }
        sc.scratch = veil_detect_scratch_new(sc.engine, errstr, sizeof(errstr));
        if (!sc.scratch) {
                fprintf(stderr, "veil scan: %s\n", errstr);
                goto out;
        }
        sc.want = veil_calloc((size_t)veil_detect_count(sc.engine),
                              sizeof(*sc.want));
        for (i = 0; i < veil_detect_count(sc.engine); i++)
                sc.want[i] = true;
        if (detectors && parse_detectors(&sc, detectors))
                goto out;
        if (baseline && load_baseline(&sc, baseline))
                goto out;
        if (sc.fmt == FMT_SARIF)
                sc.results = json_array();

        for (i = optind; i < argc; i++)
                scan_path(&sc, argv[i]);
        if (sc.fmt == FMT_SARIF)
                sarif_write(&sc);
        fflush(stdout);
        if (sc.suppressed)
                fprintf(stderr,
                        "veil scan: %zu finding(s) in the baseline "
                        "not reported\n",
                        sc.suppressed);
        rc = sc.errors     ? VEIL_EXIT_USAGE
             : sc.reported ? VEIL_EXIT_GAPS
                           : VEIL_EXIT_OK;
out:
        json_decref(sc.results);
        for (k = 0; k < sc.n_base; k++)
                free(sc.base[k]);
        free(sc.base);
        free(sc.want);
        veil_text_buf_free(&sc.fpbuf);
        veil_detect_scratch_destroy(sc.scratch);
        veil_detect_engine_destroy(sc.engine);
        return rc;
}
