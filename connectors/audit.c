/* audit.c - audit chain helpers shared by the worker and `audit verify`. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "util.h"
#include "veil.h"

int veil_audit_hmac_init(struct veil_hmac *h, const struct veil_config *config,
                         char *errstr, size_t errstr_size)
{
        if (!config->keys.key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit: no master key loaded");
        return veil_hmac_init_derived(h, config->keys.key, config->keys.key_len,
                                      "veil:audit", errstr, errstr_size);
}

int veil_audit_hmac_init_key(struct veil_hmac *h, const struct veil_key *key,
                             char *errstr, size_t errstr_size)
{
        if (!key || !key->key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "audit: key '%s' is not loaded",
                                 key ? key->id : "");
        return veil_hmac_init_derived(h, key->key, key->len, "veil:audit",
                                      errstr, errstr_size);
}

void veil_audit_mac(const struct veil_hmac *h, const char *key_id,
                    const void *event, size_t len, char *out, size_t size)
{
        unsigned char mac[VEIL_SHA256_LEN];
        char mhex[2 * VEIL_SHA256_LEN + 1];

        veil_hmac_sha256(h, event, len, mac);
        veil_hex_encode(mac, sizeof(mac), mhex);
        snprintf(out, size, "%s:%s", key_id ? key_id : "", mhex);
}

void veil_audit_digest(const void *event, size_t len, char out[65])
{
        unsigned char d[VEIL_SHA256_LEN];

        veil_sha256(event, len, d);
        veil_hex_encode(d, sizeof(d), out);
}

int32_t veil_audit_partition(int32_t partition, int32_t n)
{
        return n > 0 && partition >= 0 ? partition % n : 0;
}
