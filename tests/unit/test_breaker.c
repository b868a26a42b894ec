/* test_breaker.c - the circuit breaker's control record (connectors/breaker.c).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "veil.h"

Test(breaker, record_round_trip)
{
        struct veil_breaker_state s = {0}, got;
        char *key, *value, err[256];
        size_t key_len, value_len;

        snprintf(s.purpose, sizeof(s.purpose), "analytics");
        s.halted = true;
        snprintf(s.reason, sizeof(s.reason), "leak");
        snprintf(s.by, sizeof(s.by), "veil-w1-2");
        snprintf(s.source, sizeof(s.source), "customers/3/17");
        s.at_ms = 1764950000123;
        veil_breaker_encode(&s, &key, &key_len, &value, &value_len);
        cr_assert_eq(key_len, strlen("halt/analytics"));
        cr_assert_eq(memcmp(key, "halt/analytics", key_len), 0);
        cr_assert_eq(veil_breaker_decode(key, key_len, value, value_len, &got,
                                         err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(got.purpose, "analytics");
        cr_assert(got.halted);
        cr_assert_str_eq(got.reason, "leak");
        cr_assert_str_eq(got.by, "veil-w1-2");
        cr_assert_str_eq(got.source, "customers/3/17");
        cr_assert_eq(got.at_ms, 1764950000123);
        free(key);
        free(value);

        s.halted = false;
        veil_breaker_encode(&s, &key, &key_len, &value, &value_len);
        cr_assert_eq(veil_breaker_decode(key, key_len, value, value_len, &got,
                                         err, sizeof(err)),
                     0);
        cr_assert_not(got.halted);
        free(key);
        free(value);
}

/* Arrays, not pointers: Criterion copies the parameters into each test's
 * own process. */
struct bad {
        char key[16];
        char value[64];
        bool null_value;
        int rc;
};

ParameterizedTestParameters(breaker, hostile_records)
{
        static struct bad v[] = {
                {"other/x", "{}", false, VEIL_ENOTFOUND},
                {"halt/", "{\"state\":\"halted\"}", false, VEIL_ENOTFOUND},
                {"halt/a", "not json", false, VEIL_EINVAL},
                {"halt/a", "[1]", false, VEIL_EINVAL},
                {"halt/a", "{\"state\":\"maybe\"}", false, VEIL_EINVAL},
                {"halt/a", "{}", false, VEIL_EINVAL},
                {"halt/a", "{\"state\":\"halted\",\"at\":\"x\"}", false,
                 VEIL_EINVAL},
                {"halt/a", "{\"state\":\"halted\",\"by\":7}", false,
                 VEIL_EINVAL},
                {"halt/a", "{\"state\":\"halted\",\"purpose\":\"b\"}", false,
                 VEIL_EINVAL},
                {"halt/a", "{\"state\":\"halted\",\"state\":\"resumed\"}",
                 false, VEIL_EINVAL},
                {"halt/a", "", true, VEIL_EINVAL},
                {"halt/a\xff", "{\"state\":\"halted\"}", false, VEIL_EINVAL},
                {"halt/a\nb", "{\"state\":\"halted\"}", false, VEIL_EINVAL},
        };
        return cr_make_param_array(struct bad, v, sizeof(v) / sizeof(v[0]));
}

ParameterizedTest(struct bad *b, breaker, hostile_records)
{
        struct veil_breaker_state got;
        char err[256];

        cr_assert_eq(veil_breaker_decode(b->key, strlen(b->key),
                                         b->null_value ? NULL : b->value,
                                         strlen(b->value), &got, err,
                                         sizeof(err)),
                     b->rc, "%s -> %s", b->key, err);
        /* the message names the purpose at most, never the bytes */
        cr_assert_null(strstr(err, "not json"));
}

Test(breaker, minimal_record_is_enough)
{
        struct veil_breaker_state got;
        char err[256];
        const char *v = "{\"state\":\"halted\"}";

        cr_assert_eq(veil_breaker_decode("halt/a", 6, v, strlen(v), &got, err,
                                         sizeof(err)),
                     0, "%s", err);
        cr_assert(got.halted);
        cr_assert_str_eq(got.purpose, "a");
}
