/* test_util.c - the small shared helpers: hex, edit distance, and the
 * derived-key HMAC setup every subkey goes through. */
#include <criterion/criterion.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

Test(util, hex_encode_is_lower_case_and_terminated)
{
        const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
        char out[2 * sizeof(in) + 1];

        memset(out, 'x', sizeof(out));
        veil_hex_encode(in, sizeof(in), out);
        cr_assert_str_eq(out, "000fa5ff");
        veil_hex_encode(in, 0, out);
        cr_assert_str_eq(out, "");
}

Test(util, edit_distance_with_cap)
{
        cr_assert_eq(veil_edit_distance("purposes", "purposez", 2), 1);
        cr_assert_eq(veil_edit_distance("kafka", "kafka", 2), 0);
        cr_assert_eq(veil_edit_distance("retention", "retnetion", 2), 2);
        cr_assert_gt(veil_edit_distance("classes", "routes", 2), 2);
}

Test(util, hmac_init_derived_equals_hkdf_then_init)
{
        static const char master[] = "0123456789abcdef0123456789abcdef";
        static const char info[]   = "veil:test";
        unsigned char key[32], a[VEIL_SHA256_LEN], b[VEIL_SHA256_LEN];
        struct veil_hmac h1, h2;
        char err[256];

        cr_assert_eq(veil_hkdf_sha256(master, 32, NULL, 0, info, strlen(info),
                                      key, sizeof(key), err, sizeof(err)),
                     0, "%s", err);
        veil_hmac_init(&h1, key, sizeof(key));
        cr_assert_eq(
                veil_hmac_init_derived(&h2, master, 32, info, err, sizeof(err)),
                0, "%s", err);
        veil_hmac_sha256(&h1, "value", 5, a);
        veil_hmac_sha256(&h2, "value", 5, b);
        cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
        /* another label derives another key */
        cr_assert_eq(veil_hmac_init_derived(&h2, master, 32, "veil:other", err,
                                            sizeof(err)),
                     0);
        veil_hmac_sha256(&h2, "value", 5, b);
        cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
        veil_hmac_cleanse(&h1);
        veil_hmac_cleanse(&h2);
}
