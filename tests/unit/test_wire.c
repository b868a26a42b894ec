/* test_wire.c - Confluent framing, zig-zag varints, the output buffer and
 * the stable error code names. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

TestSuite(wire);

Test(wire, error_codes_are_the_contract_names)
{
        static const char *const want[VEIL_WIRE__COUNT] = {
                "ok",
                "bad-magic",
                "too-short",
                "unknown-schema",
                "truncated",
                "trailing-bytes",
                "bad-varint",
                "bad-union-index",
                "bad-length",
                "too-deep",
                "bad-value",
                "too-large",
                "transform-failed",
                "bad-utf8",
        };
        int i;

        for (i = 0; i < VEIL_WIRE__COUNT; i++)
                cr_assert_str_eq(veil_wire_error_code((enum veil_wire_err)i),
                                 want[i]);
        cr_assert_str_eq(veil_wire_error_code(VEIL_WIRE__COUNT), "unknown");
        cr_assert_str_eq(veil_wire_error_code((enum veil_wire_err) - 1),
                         "unknown");
}

/* Inline text: Criterion copies parameters into the test's own process,
 * where pointers into the parent's data would dangle. */
struct utf8_case {
        char s[48];
        bool valid;
};

ParameterizedTestParameters(wire, utf8_validity)
{
        static struct utf8_case cases[] = {
                {"", true},
                {"plain ASCII, longer than one word of eight", true},
                {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
                 true},
                {"\xed\x9f\xbf \xee\x80\x80", true}, /* around surrogates */
                {"\xff", false},
                {"abcdefgh\x80", false},     /* lone continuation */
                {"\xc3", false},             /* cut short */
                {"\xc3\x28", false},         /* bad continuation */
                {"\xc0\xaf", false},         /* overlong '/' */
                {"\xe0\x80\xaf", false},     /* overlong */
                {"\xf0\x80\x80\xaf", false}, /* overlong */
                {"\xed\xa0\x80", false},     /* surrogate U+D800 */
                {"\xf4\x90\x80\x80", false}, /* above U+10FFFF */
                {"\xf5\x80\x80\x80", false},
                {"ok \xe2\x82", false}, /* cut at the end */
        };

        return cr_make_param_array(struct utf8_case, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct utf8_case *c, wire, utf8_validity)
{
        cr_assert_eq(veil_utf8_valid((const uint8_t *)c->s, strlen(c->s)),
                     c->valid, "case of %zu bytes", strlen(c->s));
}

Test(wire, parse_frames_and_rejects_bad_ones)
{
        static const uint8_t ok[]  = {0, 0, 0, 1, 0x2c, 0xaa, 0xbb};
        static const uint8_t big[] = {0, 0xff, 0xff, 0xff, 0xfe};
        struct veil_wire_frame f;

        cr_assert_eq(veil_wire_parse(ok, sizeof(ok), &f), VEIL_WIRE_OK);
        cr_assert_not(f.tombstone);
        cr_assert_eq(f.schema_id, 300);
        cr_assert_eq(f.body, ok + 5);
        cr_assert_eq(f.body_len, 2);
        cr_assert_eq(veil_wire_parse(ok, 5, &f), VEIL_WIRE_OK);
        cr_assert_eq(f.body_len, 0);
        cr_assert_eq(veil_wire_parse(big, 5, &f), VEIL_WIRE_OK);
        cr_assert_eq(f.schema_id, -2);
        /* a null value is a tombstone, not an error */
        cr_assert_eq(veil_wire_parse(NULL, 0, &f), VEIL_WIRE_OK);
        cr_assert(f.tombstone);
        cr_assert_eq(veil_wire_parse(ok, 0, &f), VEIL_WIRE_TOO_SHORT);
        cr_assert_eq(veil_wire_parse(ok, 4, &f), VEIL_WIRE_TOO_SHORT);
        cr_assert_eq(veil_wire_parse("{\"json\":1}", 10, &f),
                     VEIL_WIRE_BAD_MAGIC);
        cr_assert_eq(veil_wire_parse("\x01", 1, &f), VEIL_WIRE_BAD_MAGIC);
}

Test(wire, header_round_trips)
{
        uint8_t h[VEIL_WIRE_HEADER_SIZE];
        struct veil_wire_frame f;
        static const int32_t ids[] = {0, 1, 255, 256, 65536, INT32_MAX, -1};
        size_t i;

        for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                veil_wire_header_write(h, ids[i]);
                cr_assert_eq(h[0], 0);
                cr_assert_eq(veil_wire_parse(h, sizeof(h), &f), VEIL_WIRE_OK);
                cr_assert_eq(f.schema_id, ids[i]);
        }
        veil_wire_header_write(h, 0x01020304);
        cr_assert_eq(memcmp(h, "\x00\x01\x02\x03\x04", 5), 0);
}

struct vcase {
        int64_t v;
        uint8_t bytes[10];
        size_t n;
};

ParameterizedTestParameters(wire, varint_known_encodings)
{
        static struct vcase cases[] = {
                {0, {0x00}, 1},
                {-1, {0x01}, 1},
                {1, {0x02}, 1},
                {-64, {0x7f}, 1},
                {64, {0x80, 0x01}, 2},
                {INT32_MAX, {0xfe, 0xff, 0xff, 0xff, 0x0f}, 5},
                {INT32_MIN, {0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
                {INT64_MAX,
                 {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                 10},
                {INT64_MIN,
                 {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                 10},
        };

        return cr_make_param_array(struct vcase, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct vcase *c, wire, varint_known_encodings)
{
        uint8_t buf[VEIL_VARINT_MAX];
        const uint8_t *p = c->bytes;
        int64_t v;

        cr_assert_eq(veil_varint_write(buf, c->v), c->n);
        cr_assert_eq(veil_varint_size(c->v), c->n);
        cr_assert_eq(memcmp(buf, c->bytes, c->n), 0);
        cr_assert_eq(veil_varint_read(&p, c->bytes + c->n, 10, &v),
                     VEIL_WIRE_OK);
        cr_assert_eq(v, c->v);
        cr_assert_eq(p, c->bytes + c->n);
        p = c->bytes;
        if (c->v >= INT32_MIN && c->v <= INT32_MAX) {
                cr_assert_eq(veil_varint_read(&p, c->bytes + c->n, 5, &v),
                             VEIL_WIRE_OK);
                cr_assert_eq(v, c->v);
        } else {
                cr_assert_eq(veil_varint_read(&p, c->bytes + c->n, 5, &v),
                             VEIL_WIRE_BAD_VARINT);
        }
}

Test(wire, varint_round_trips_and_rejects_garbage)
{
        static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x00};
        static const uint8_t tenth_too_big[] = {0x80, 0x80, 0x80, 0x80, 0x80,
                                                0x80, 0x80, 0x80, 0x80, 0x02};
        static const uint8_t int_33bit[]     = {0x80, 0x80, 0x80, 0x80, 0x10};
        static const uint8_t cut[]           = {0x80, 0x80};
        uint64_t x                           = 88172645463325252ULL;
        uint8_t buf[VEIL_VARINT_MAX];
        const uint8_t *p;
        int64_t v;
        int i;

        for (i = 0; i < 100000; i++) {
                int64_t in;
                size_t n;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                in = (int64_t)x >> (x % 64);
                n  = veil_varint_write(buf, in);
                p  = buf;
                cr_assert_eq(veil_varint_read(&p, buf + n, 10, &v),
                             VEIL_WIRE_OK);
                cr_assert_eq(v, in);
                cr_assert_eq(p, buf + n);
                /* every shorter buffer is truncated */
                p = buf;
                if (n > 1)
                        cr_assert_eq(veil_varint_read(&p, buf + n - 1, 10, &v),
                                     VEIL_WIRE_TRUNCATED);
        }
        p = eleven;
        cr_assert_eq(veil_varint_read(&p, eleven + sizeof(eleven), 10, &v),
                     VEIL_WIRE_BAD_VARINT);
        p = tenth_too_big;
        cr_assert_eq(veil_varint_read(&p, tenth_too_big + 10, 10, &v),
                     VEIL_WIRE_BAD_VARINT);
        p = int_33bit;
        cr_assert_eq(veil_varint_read(&p, int_33bit + 5, 5, &v),
                     VEIL_WIRE_BAD_VARINT);
        p = cut;
        cr_assert_eq(veil_varint_read(&p, cut + 2, 10, &v),
                     VEIL_WIRE_TRUNCATED);
        cr_assert_eq(p, cut, "a failed read does not advance");
        p = cut;
        cr_assert_eq(veil_varint_read(&p, cut, 10, &v), VEIL_WIRE_TRUNCATED);
}

Test(wire, buffer_grows_and_respects_its_cap)
{
        struct veil_buf b;
        uint8_t chunk[300];
        void *before;
        int i;

        memset(chunk, 'x', sizeof(chunk));
        veil_buf_init(&b, 1000);
        cr_assert(veil_buf_append(&b, chunk, 300));
        cr_assert(veil_buf_append(&b, chunk, 300));
        cr_assert(veil_buf_append(&b, chunk, 300));
        cr_assert_not(veil_buf_append(&b, chunk, 300), "cap exceeded");
        cr_assert_eq(b.len, 900);
        cr_assert_leq(b.cap, 1000);
        /* reuse: once large enough, no reallocation */
        b.len  = 0;
        before = b.data;
        for (i = 0; i < 1000; i++) {
                b.len = 0;
                cr_assert(veil_buf_append(&b, chunk, 300));
        }
        cr_assert_eq(b.data, before);
        cr_assert(veil_buf_append(&b, "", 0));
        veil_buf_free(&b);
        cr_assert_null(b.data);
        cr_assert_eq(b.cap, 0);
        veil_buf_init(&b, 0);
        for (i = 0; i < 100; i++)
                cr_assert(veil_buf_append(&b, chunk, sizeof(chunk)));
        cr_assert_eq(b.len, 30000);
        veil_buf_free(&b);
}
