/* dlq.c - the DLQ sealing key, derived the same way by writer and replay. */
#include "dlq.h"
#include "veil.h"

int veil_dlq_aead_init(struct veil_aead *aead, const struct veil_config *config,
                       char *errstr, size_t errstr_size)
{
        static const char info[] = "veil:dlq";
        unsigned char key[VEIL_AEAD_GCM_KEY_LEN];
        int rc;

        if (!config->keys.key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "dlq: no master key loaded");
        rc = veil_hkdf_sha256(config->keys.key, config->keys.key_len, NULL, 0,
                              info, sizeof(info) - 1, key, sizeof(key), errstr,
                              errstr_size);
        if (!rc)
                rc = veil_aead_init(aead, VEIL_AEAD_GCM, key, sizeof(key),
                                    errstr, errstr_size);
        veil_cleanse(key, sizeof(key));
        return rc;
}
