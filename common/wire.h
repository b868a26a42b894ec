/* wire.h - Confluent wire format (magic, schema id, Avro binary), Avro
 * zig-zag varints, the growable output buffer and the stable record error
 * codes that become the DLQ's `veil.error`. */
#ifndef VEIL_COMMON_WIRE_H
#define VEIL_COMMON_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Why a record could not be read or rewritten. The strings returned by
 * veil_wire_error_code() are contracts (DLQ header `veil.error`): never
 * rename one, only add. */
enum veil_wire_err {
        VEIL_WIRE_OK = 0,
        VEIL_WIRE_BAD_MAGIC,        /* first byte is not 0x00 */
        VEIL_WIRE_TOO_SHORT,        /* fewer than 5 bytes of framing */
        VEIL_WIRE_UNKNOWN_SCHEMA,   /* the registry does not know the id */
        VEIL_WIRE_TRUNCATED,        /* the Avro body ends inside a value */
        VEIL_WIRE_TRAILING_BYTES,   /* bytes left after the top value */
        VEIL_WIRE_BAD_VARINT,       /* over-long or out-of-range varint */
        VEIL_WIRE_BAD_UNION_INDEX,  /* union branch index out of range */
        VEIL_WIRE_BAD_LENGTH,       /* negative or impossible length/count */
        VEIL_WIRE_TOO_DEEP,         /* nesting beyond the depth limit */
        VEIL_WIRE_BAD_VALUE,        /* enum index out of range, boolean not
                                     * 0/1, decimal wider than its type */
        VEIL_WIRE_TOO_LARGE,        /* output would exceed the size limit */
        VEIL_WIRE_TRANSFORM_FAILED, /* a transform failed (crypto error) */
        VEIL_WIRE_BAD_UTF8,         /* an Avro string (or map key) that is
                                     * not well-formed UTF-8 */
        VEIL_WIRE__COUNT,
};

/* "bad-magic", "too-short", …; "ok" for VEIL_WIRE_OK, "unknown" when out of
 * range. Static strings. */
const char *veil_wire_error_code(enum veil_wire_err err);

/* Confluent framing: 0x00, 4-byte big-endian schema id, Avro body. */
#define VEIL_WIRE_MAGIC 0x00
#define VEIL_WIRE_HEADER_SIZE 5

struct veil_wire_frame {
        bool tombstone; /* null value: not an error, nothing else set */
        int32_t schema_id;
        const uint8_t *body; /* points into the message */
        size_t body_len;
};

/* Parse a message value (or key). `buf` NULL means a tombstone (a Kafka null
 * value); an empty non-NULL buffer is too-short. Borrows `buf`. */
enum veil_wire_err veil_wire_parse(const void *buf, size_t len,
                                   struct veil_wire_frame *frame);

/* Write the 5-byte header for `schema_id` into out. */
void veil_wire_header_write(uint8_t out[VEIL_WIRE_HEADER_SIZE],
                            int32_t schema_id);

/* The full check of veil_utf8_valid, for text that is not all ASCII. */
bool veil_utf8_valid_full(const uint8_t *s, size_t len);

/* Is s[0..len) well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF)? Avro strings must be: a string that
 * is not would reach purposes that readers then fail on. Inline, because
 * it runs on every string of every record: all-ASCII text (most of it) is
 * settled by OR-ing its bytes eight at a time, without a branch per byte. */
static inline bool veil_utf8_valid(const uint8_t *s, size_t len)
{
        uint64_t acc = 0, w;
        size_t i     = 0;

        for (; i + 8 <= len; i += 8) {
                memcpy(&w, s + i, 8);
                acc |= w;
        }
        for (; i < len; i++)
                acc |= s[i];
        if (!(acc & UINT64_C(0x8080808080808080)))
                return true;
        return veil_utf8_valid_full(s, len);
}

/* Longest varint for a 64-bit value. */
#define VEIL_VARINT_MAX 10

/* Zig-zag + base-128 varint, as Avro encodes int and long. Returns the number
 * of bytes written (1..10). */
size_t veil_varint_write(uint8_t *out, int64_t v);

/* Bytes veil_varint_write would write for v. */
size_t veil_varint_size(int64_t v);

/* Read a zig-zag varint at *p (bounded by end) and advance *p. `max_bytes`
 * is 5 for Avro int, 10 for long; an int whose value does not fit 32 bits
 * is bad-varint. */
enum veil_wire_err veil_varint_read(const uint8_t **p, const uint8_t *end,
                                    int max_bytes, int64_t *v);

/* A growable byte buffer owned by the caller and reused across records, so
 * that the steady state allocates nothing. `max` (0: no limit) caps growth:
 * veil_buf_reserve fails instead of growing beyond it. */
struct veil_buf {
        uint8_t *data;
        size_t len;
        size_t cap;
        size_t max;
};

void veil_buf_init(struct veil_buf *buf, size_t max);
void veil_buf_free(struct veil_buf *buf);

/* Grow (slow path of veil_buf_reserve). Returns false when `max` forbids. */
bool veil_buf_grow(struct veil_buf *buf, size_t need);

/* Make room for `n` more bytes after len. False when `max` forbids. */
static inline bool veil_buf_reserve(struct veil_buf *buf, size_t n)
{
        if (buf->cap - buf->len >= n)
                return true;
        return veil_buf_grow(buf, n);
}

static inline bool veil_buf_append(struct veil_buf *buf, const void *p,
                                   size_t n)
{
        if (!veil_buf_reserve(buf, n))
                return false;
        if (n)
                memcpy(buf->data + buf->len, p, n);
        buf->len += n;
        return true;
}

#endif
