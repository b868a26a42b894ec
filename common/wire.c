/* wire.c - Confluent framing, Avro zig-zag varints, the reusable output
 * buffer and the names of the stable record error codes. */
#include "wire.h"

#include <stdlib.h>

#include "util.h"

static const char *const wire_codes[VEIL_WIRE__COUNT] = {
        [VEIL_WIRE_OK]               = "ok",
        [VEIL_WIRE_BAD_MAGIC]        = "bad-magic",
        [VEIL_WIRE_TOO_SHORT]        = "too-short",
        [VEIL_WIRE_UNKNOWN_SCHEMA]   = "unknown-schema",
        [VEIL_WIRE_TRUNCATED]        = "truncated",
        [VEIL_WIRE_TRAILING_BYTES]   = "trailing-bytes",
        [VEIL_WIRE_BAD_VARINT]       = "bad-varint",
        [VEIL_WIRE_BAD_UNION_INDEX]  = "bad-union-index",
        [VEIL_WIRE_BAD_LENGTH]       = "bad-length",
        [VEIL_WIRE_TOO_DEEP]         = "too-deep",
        [VEIL_WIRE_BAD_VALUE]        = "bad-value",
        [VEIL_WIRE_TOO_LARGE]        = "too-large",
        [VEIL_WIRE_TRANSFORM_FAILED] = "transform-failed",
        [VEIL_WIRE_BAD_UTF8]         = "bad-utf8",
};

const char *veil_wire_error_code(enum veil_wire_err err)
{
        if ((int)err < 0 || err >= VEIL_WIRE__COUNT)
                return "unknown";
        return wire_codes[err];
}

bool veil_utf8_valid_full(const uint8_t *s, size_t len)
{
        size_t i = 0;

        while (i < len) {
                unsigned c = s[i];
                uint64_t w;

                if (c < 0x80) {
                        /* Skip ASCII a word at a time. */
                        while (len - i >= 8) {
                                memcpy(&w, s + i, 8);
                                if (w & 0x8080808080808080ull)
                                        break;
                                i += 8;
                        }
                        while (i < len && s[i] < 0x80)
                                i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        if (len - i < 2 || (s[i + 1] & 0xc0) != 0x80)
                                return false;
                        i += 2;
                } else if (c >= 0xe0 && c <= 0xef) {
                        unsigned lo = c == 0xe0 ? 0xa0 : 0x80;
                        unsigned hi = c == 0xed ? 0x9f : 0xbf;

                        if (len - i < 3 || s[i + 1] < lo || s[i + 1] > hi ||
                            (s[i + 2] & 0xc0) != 0x80)
                                return false;
                        i += 3;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        unsigned lo = c == 0xf0 ? 0x90 : 0x80;
                        unsigned hi = c == 0xf4 ? 0x8f : 0xbf;

                        if (len - i < 4 || s[i + 1] < lo || s[i + 1] > hi ||
                            (s[i + 2] & 0xc0) != 0x80 ||
                            (s[i + 3] & 0xc0) != 0x80)
                                return false;
                        i += 4;
                } else {
                        return false; /* continuation, 0xc0/0xc1, 0xf5+ */
                }
        }
        return true;
}

enum veil_wire_err veil_wire_parse(const void *buf, size_t len,
                                   struct veil_wire_frame *frame)
{
        const uint8_t *b = buf;

        memset(frame, 0, sizeof(*frame));
        if (!buf) {
                frame->tombstone = true;
                return VEIL_WIRE_OK;
        }
        /* A non-zero first byte is the more useful diagnosis even when the
         * message is also short: it is probably not Confluent-framed. */
        if (len >= 1 && b[0] != VEIL_WIRE_MAGIC)
                return VEIL_WIRE_BAD_MAGIC;
        if (len < VEIL_WIRE_HEADER_SIZE)
                return VEIL_WIRE_TOO_SHORT;
        frame->schema_id =
                (int32_t)(((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) |
                          ((uint32_t)b[3] << 8) | (uint32_t)b[4]);
        frame->body     = b + VEIL_WIRE_HEADER_SIZE;
        frame->body_len = len - VEIL_WIRE_HEADER_SIZE;
        return VEIL_WIRE_OK;
}

void veil_wire_header_write(uint8_t out[VEIL_WIRE_HEADER_SIZE],
                            int32_t schema_id)
{
        uint32_t id = (uint32_t)schema_id;

        out[0] = VEIL_WIRE_MAGIC;
        out[1] = (uint8_t)(id >> 24);
        out[2] = (uint8_t)(id >> 16);
        out[3] = (uint8_t)(id >> 8);
        out[4] = (uint8_t)id;
}

size_t veil_varint_write(uint8_t *out, int64_t v)
{
        uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        size_t n   = 0;

        while (u >= 0x80) {
                out[n++] = (uint8_t)(u | 0x80);
                u >>= 7;
        }
        out[n++] = (uint8_t)u;
        return n;
}

size_t veil_varint_size(int64_t v)
{
        uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        size_t n   = 1;

        while (u >= 0x80) {
                u >>= 7;
                n++;
        }
        return n;
}

enum veil_wire_err veil_varint_read(const uint8_t **p, const uint8_t *end,
                                    int max_bytes, int64_t *v)
{
        const uint8_t *q = *p;
        uint64_t u       = 0;
        int shift        = 0, i;

        for (i = 0; i < max_bytes; i++) {
                uint8_t b;

                if (q >= end)
                        return VEIL_WIRE_TRUNCATED;
                b = *q++;
                /* The 10th byte of a long may only carry the top bit. */
                if (i == 9 && b > 1)
                        return VEIL_WIRE_BAD_VARINT;
                u |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        if (max_bytes <= 5 && u > UINT32_MAX)
                                return VEIL_WIRE_BAD_VARINT;
                        *p = q;
                        *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
                        return VEIL_WIRE_OK;
                }
                shift += 7;
        }
        return VEIL_WIRE_BAD_VARINT;
}

void veil_buf_init(struct veil_buf *buf, size_t max)
{
        memset(buf, 0, sizeof(*buf));
        buf->max = max;
}

void veil_buf_free(struct veil_buf *buf)
{
        free(buf->data);
        buf->data = NULL;
        buf->len = buf->cap = 0;
}

bool veil_buf_grow(struct veil_buf *buf, size_t need)
{
        size_t cap = buf->cap ? buf->cap : 256;

        if (need > SIZE_MAX / 2 - buf->len)
                return false;
        if (buf->max && buf->len + need > buf->max)
                return false;
        while (cap - buf->len < need)
                cap *= 2;
        if (buf->max && cap > buf->max)
                cap = buf->max;
        buf->data = veil_realloc(buf->data, cap);
        buf->cap  = cap;
        return true;
}
