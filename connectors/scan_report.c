/* scan_report.c - `veil scan`'s report writers: text, JSON lines and
 * SARIF 2.1.0 serialised by hand into a reused buffer, a piece at a time.
 * A dense file has a finding every ~60 bytes, so per finding there is no
 * allocation, no JSON object and no stdio call; the names of a file are
 * escaped once. Reports name positions and detectors, never values. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "scan.h"
#include "util.h"
#include "veil.h"

/* ---------------------------------------------------------------- buffer */
static char *grow(struct veil_text_buf *tb, size_t n)
{
        if (tb->cap - tb->len < n) {
                size_t cap = tb->cap ? tb->cap : 65536;

                while (cap - tb->len < n)
                        cap *= 2;
                tb->data = veil_realloc(tb->data, cap);
                tb->cap  = cap;
        }
        return tb->data + tb->len;
}

static void put(struct veil_text_buf *tb, const char *s, size_t n)
{
        memcpy(grow(tb, n), s, n);
        tb->len += n;
}

#define PUT_LIT(tb, lit) put((tb), (lit), sizeof(lit) - 1)

/* ----------------------------------------------------------------- names */
/* SARIF wants a URI reference: percent-encode what is not unreserved. */
static char *uri_of(const char *path)
{
        static const char hexd[] = "0123456789ABCDEF";
        size_t n = strlen(path), i, o = 0;
        char *u = veil_malloc(3 * n + 3);

        u[o++] = '"';
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
        u[o++] = '"';
        u[o]   = 0;
        return u;
}

/* JSON wants UTF-8; a path that is not gets '?' for its bytes >= 0x80. */
static char *json_literal(const char *path)
{
        json_t *s = json_string(path);
        char *lit;

        if (!s) {
                char *copy = veil_strdup(path);
                size_t i;

                for (i = 0; copy[i]; i++)
                        if ((unsigned char)copy[i] >= 0x80)
                                copy[i] = '?';
                s = json_string(copy);
                free(copy);
        }
        lit = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        json_decref(s);
        if (!lit)
                abort(); /* out of memory */
        return lit;
}

void veil_scan_file_init(struct veil_scan_file *file, const char *path)
{
        file->path          = veil_strdup(path);
        file->path_len      = strlen(path);
        file->path_json     = json_literal(path);
        file->path_json_len = strlen(file->path_json);
        file->uri_json      = uri_of(path);
        file->uri_json_len  = strlen(file->uri_json);
}

void veil_scan_file_fini(struct veil_scan_file *file)
{
        free(file->path);
        free(file->path_json); /* jansson's default allocator is malloc */
        free(file->uri_json);
        memset(file, 0, sizeof(*file));
}

/* -------------------------------------------------------------- baseline */
/* Fingerprints (in veil_scan_report_piece) are HMAC-SHA256 keyed once
 * (common/crypto.h) over path NUL detector NUL value, truncated: the same
 * value in the same file keeps its fingerprint when lines move, and the
 * report never carries the value itself. */
int veil_scan_key_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

char *veil_scan_tuple_key(const char *path, size_t line, size_t start,
                          size_t end, const char *det)
{
        char *k = NULL;

        if (asprintf(&k, "T%s\t%zu\t%zu\t%zu\t%s", path, line, start, end,
                     det) < 0)
                abort(); /* out of memory */
        return k;
}

static bool in_baseline(const struct veil_scan_report *rep, const char *key)
{
        return bsearch(&key, rep->base, rep->n_base, sizeof(*rep->base),
                       veil_scan_key_cmp) != NULL;
}

static bool baseline_has(const struct veil_scan_report *rep,
                         const struct veil_scan_file *file, const char *fp,
                         size_t line, size_t start, size_t end, const char *det)
{
        char key[2 * VEIL_SCAN_FP_BYTES + 2];
        char *tk = NULL;
        bool hit;

        key[0] = 'F';
        memcpy(key + 1, fp, 2 * VEIL_SCAN_FP_BYTES + 1);
        if (in_baseline(rep, key))
                return true;
        if (!rep->base_tuples)
                return false;
        tk  = veil_scan_tuple_key(file->path, line, start, end, det);
        hit = in_baseline(rep, tk);
        free(tk);
        return hit;
}

/* --------------------------------------------------------------- formats
 * Each report line is written through a cursor into space reserved once
 * for the whole line: the literal pieces are constant-size copies the
 * compiler turns into a few stores. */
#define W_LIT(p, lit)                                                          \
        (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)
#define W_BYTES(p, s, n) (memcpy((p), (s), (n)), (p) += (n))
/* Room for a line besides the path and the detector name: the keys, five
 * numbers of up to 20 digits, the fingerprint. */
#define LINE_ROOM 512

static char *w_size(char *p, size_t v)
{
        char buf[20];
        size_t i = sizeof(buf);

        do {
                buf[--i] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        memcpy(p, buf + i, sizeof(buf) - i);
        return p + (sizeof(buf) - i);
}

/* Confidence as the two decimals the rule's message shows. */
static char *w_confidence(char *p, float conf)
{
        int c = (int)(conf * 100.0f + 0.5f);

        if (c < 0)
                c = 0;
        if (c > 99) {
                W_LIT(p, "1.00");
                return p;
        }
        p[0] = '0';
        p[1] = '.';
        p[2] = (char)('0' + c / 10);
        p[3] = (char)('0' + c % 10);
        return p + 4;
}

/* Code points in s[0, n): bytes that are not UTF-8 continuation bytes
 * (10xxxxxx), eight at a time. */
static size_t codepoints(const char *s, size_t n)
{
        const uint64_t high = 0x8080808080808080ull, ones = high >> 7;
        size_t i = 0, cont = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t w, c;

                memcpy(&w, s + i, 8);
                c = w & ~(w << 1) & high; /* bit 7 set, bit 6 clear */
                cont += (size_t)(((c >> 7) * ones) >> 56);
        }
        for (; i < n; i++)
                cont += ((unsigned char)s[i] & 0xC0) == 0x80;
        return n - cont;
}

/* Fingerprints are computed ahead, for the next FP_BATCH findings the
 * report wants: veil_hmac_sha256_many hashes them side by side. */
#define FP_BATCH 16

/* Fingerprints of the first (up to FP_BATCH) wanted findings of f[0, n),
 * in hex, into fps[0, *n_fps). The inputs (path NUL detector NUL value)
 * are laid end to end in out->fp. */
static void fp_batch(const struct veil_scan_report *rep,
                     const struct veil_scan_file *file, const char *text,
                     size_t base, const struct veil_finding *f, size_t n,
                     struct veil_scan_out *out,
                     char fps[][2 * VEIL_SCAN_FP_BYTES + 1], size_t *n_fps)
{
        size_t off[FP_BATCH], len[FP_BATCH], i, k = 0;
        const void *data[FP_BATCH];
        unsigned char md[FP_BATCH][VEIL_SHA256_LEN];

        out->fp.len = 0;
        for (i = 0; i < n && k < FP_BATCH; i++) {
                int d = f[i].detector;

                if (!rep->want[d])
                        continue;
                off[k] = out->fp.len;
                put(&out->fp, file->path, file->path_len + 1);
                put(&out->fp, rep->det_name[d], rep->det_len[d] + 1);
                put(&out->fp, text + base + f[i].start, f[i].end - f[i].start);
                len[k] = out->fp.len - off[k];
                k++;
        }
        for (i = 0; i < k; i++) /* out->fp no longer moves */
                data[i] = out->fp.data + off[i];
        veil_hmac_sha256_many(rep->hmac, k, data, len, md);
        for (i = 0; i < k; i++)
                veil_hex_encode(md[i], VEIL_SCAN_FP_BYTES, fps[i]);
        *n_fps = k;
}

size_t veil_scan_report_piece(const struct veil_scan_report *rep,
                              const struct veil_scan_file *file,
                              const char *text, size_t start, size_t end,
                              size_t line, const struct veil_finding *f,
                              size_t n, size_t base, struct veil_scan_out *out)
{
        struct veil_text_buf *tb = &out->out;
        size_t pos = start, line_start = start, first_line = line, i;
        /* SARIF columns: code points from the line start, counted on from
         * the previous finding of the same line (findings are sorted), so
         * a long line costs its length once, not once per finding */
        size_t cp_pos = start, cp = 0;
        bool need_fp = rep->hmac && (rep->fmt != VEIL_SCAN_TEXT || rep->n_base);
        char fps[FP_BATCH][2 * VEIL_SCAN_FP_BYTES + 1];
        size_t fp_n = 0, fp_at = 0;

        for (i = 0; i < n; i++) {
                size_t fs = base + f[i].start, fe = base + f[i].end;
                int d = f[i].detector;
                const char *det, *nl;
                char fp[2 * VEIL_SCAN_FP_BYTES + 1], *p;
                size_t dlen;

                if (!rep->want[d])
                        continue;
                while ((nl = memchr(text + pos, '\n', fs - pos))) {
                        line++;
                        pos        = (size_t)(nl - text) + 1;
                        line_start = pos;
                }
                pos  = fs;
                det  = rep->det_name[d];
                dlen = rep->det_len[d];
                if (need_fp) {
                        if (fp_at == fp_n) {
                                fp_batch(rep, file, text, base, f + i, n - i,
                                         out, fps, &fp_n);
                                fp_at = 0;
                        }
                        memcpy(fp, fps[fp_at++], sizeof(fp));
                }
                if (rep->n_base &&
                    baseline_has(rep, file, fp, line, fs - line_start,
                                 fe - line_start, det)) {
                        out->suppressed++;
                        continue;
                }
                out->reported++;
                p = grow(tb, file->path_json_len + file->uri_json_len + dlen +
                                     LINE_ROOM);
                switch (rep->fmt) {
                case VEIL_SCAN_TEXT:
                        W_BYTES(p, file->path, file->path_len);
                        W_LIT(p, ":");
                        p = w_size(p, line);
                        W_LIT(p, ":");
                        p = w_size(p, fs - line_start);
                        W_LIT(p, "-");
                        p = w_size(p, fe - line_start);
                        W_LIT(p, ": ");
                        W_BYTES(p, det, dlen);
                        W_LIT(p, "\n");
                        break;
                case VEIL_SCAN_JSON:
                        W_LIT(p, "{\"path\":");
                        W_BYTES(p, file->path_json, file->path_json_len);
                        W_LIT(p, ",\"line\":");
                        p = w_size(p, line);
                        W_LIT(p, ",\"start\":");
                        p = w_size(p, fs - line_start);
                        W_LIT(p, ",\"end\":");
                        p = w_size(p, fe - line_start);
                        W_LIT(p, ",\"detector\":\"");
                        W_BYTES(p, det, dlen);
                        if (need_fp) {
                                W_LIT(p, "\",\"fingerprint\":\"");
                                W_BYTES(p, fp, 2 * VEIL_SCAN_FP_BYTES);
                        }
                        W_LIT(p, "\"}\n");
                        break;
                case VEIL_SCAN_SARIF: {
                        size_t col;

                        if (cp_pos < line_start) {
                                cp_pos = line_start;
                                cp     = 0;
                        }
                        cp += codepoints(text + cp_pos, fs - cp_pos);
                        cp_pos = fs;
                        col    = cp + 1;
                        /* The level and the message text live in the rule
                         * (declared once in veil_scan_sarif_begin); a
                         * result names its rule and message id, with the
                         * confidence as the message's argument. */
                        W_LIT(p, ",\n{\"ruleId\":\"");
                        W_BYTES(p, det, dlen);
                        W_LIT(p, "\",\"ruleIndex\":");
                        p = w_size(p, (size_t)d);
                        W_LIT(p, ",\"message\":{\"id\":\"found\","
                                 "\"arguments\":[\"");
                        p = w_confidence(p, f[i].confidence);
                        W_LIT(p, "\"]},\"locations\":[{\"physicalLocation\":{"
                                 "\"artifactLocation\":{\"uri\":");
                        W_BYTES(p, file->uri_json, file->uri_json_len);
                        W_LIT(p, "},\"region\":{\"startLine\":");
                        p = w_size(p, line);
                        W_LIT(p, ",\"startColumn\":");
                        p = w_size(p, col);
                        W_LIT(p, ",\"endColumn\":");
                        p = w_size(p, col + codepoints(text + fs, fe - fs));
                        W_LIT(p, ",\"byteOffset\":");
                        p = w_size(p, fs);
                        W_LIT(p, ",\"byteLength\":");
                        p = w_size(p, fe - fs);
                        W_LIT(p, "}}}]");
                        if (need_fp) {
                                W_LIT(p, ",\"partialFingerprints\":{"
                                         "\"veilFingerprint/v1\":\"");
                                W_BYTES(p, fp, 2 * VEIL_SCAN_FP_BYTES);
                                W_LIT(p, "\"}");
                        }
                        W_LIT(p, "}");
                        break;
                }
                }
                tb->len = (size_t)(p - tb->data);
        }
        /* the lines after the last finding, for the next piece's number */
        if (pos < end)
                line += veil_scan_count_lines(text + pos, end - pos);
        return line - first_line;
}

/* ----------------------------------------------------------------- sarif */
void veil_scan_sarif_begin(const struct veil_detect_engine *engine,
                           struct veil_text_buf *tb)
{
        int i;

        PUT_LIT(tb, "{\"$schema\":\"https://json.schemastore.org/"
                    "sarif-2.1.0.json\",\"version\":\"2.1.0\",\"runs\":["
                    "{\"tool\":{\"driver\":{\"name\":\"veil\",\"version\":"
                    "\"" VEIL_VERSION "\",\"semanticVersion\":\"" VEIL_VERSION
                    "\",\"rules\":[");
        for (i = 0; i < veil_detect_count(engine); i++) {
                const char *name = veil_detect_name(engine, i);
                size_t n         = strlen(name);

                if (i)
                        PUT_LIT(tb, ",");
                PUT_LIT(tb, "\n{\"id\":\"");
                put(tb, name, n);
                PUT_LIT(tb, "\",\"name\":\"");
                put(tb, name, n);
                PUT_LIT(tb, "\",\"shortDescription\":{\"text\":\"Personal "
                            "data (");
                put(tb, name, n);
                PUT_LIT(tb, ") in text\"},\"messageStrings\":{\"found\":{"
                            "\"text\":\"");
                put(tb, name, n);
                PUT_LIT(tb, " found (confidence {0})\"}},"
                            "\"defaultConfiguration\":{\"level\":"
                            "\"warning\"}}");
        }
        PUT_LIT(tb, "]}},\"columnKind\":\"unicodeCodePoints\",\"results\":[");
}

void veil_scan_sarif_end(struct veil_text_buf *tb)
{
        PUT_LIT(tb, "\n]}]}\n");
}
