/* audit.c - audit chain helpers shared by the worker and `audit verify`. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "veil.h"

int veil_audit_hmac_init(struct veil_hmac *h, const struct veil_config *config,
                         char *errstr, size_t errstr_size)
{
        static const char info[] = "veil:audit";
        unsigned char key[32];
        int rc;

        if (!config->keys.key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit: no master key loaded");
        rc = veil_hkdf_sha256(config->keys.key, config->keys.key_len, NULL, 0,
                              info, sizeof(info) - 1, key, sizeof(key), errstr,
                              errstr_size);
        if (!rc)
                veil_hmac_init(h, key, sizeof(key));
        veil_cleanse(key, sizeof(key));
        return rc;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";
        size_t i;

        for (i = 0; i < n; i++) {
                out[2 * i]     = digits[d[i] >> 4];
                out[2 * i + 1] = digits[d[i] & 15];
        }
        out[2 * n] = '\0';
}

void veil_audit_mac(const struct veil_hmac *h, const char *key_id,
                    const void *event, size_t len, char *out, size_t size)
{
        unsigned char mac[VEIL_SHA256_LEN];
        char mhex[2 * VEIL_SHA256_LEN + 1];

        veil_hmac_sha256(h, event, len, mac);
        hex(mac, sizeof(mac), mhex);
        snprintf(out, size, "%s:%s", key_id ? key_id : "", mhex);
}

void veil_audit_digest(const void *event, size_t len, char out[65])
{
        unsigned char d[VEIL_SHA256_LEN];

        veil_sha256(event, len, d);
        hex(d, sizeof(d), out);
}

int32_t veil_audit_partition(int32_t partition, int32_t n)
{
        return n > 0 && partition >= 0 ? partition % n : 0;
}
