/* dlq.c - the DLQ sealing key, derived the same way by writer and replay. */
#include "dlq.h"
#include "veil.h"

int veil_dlq_aead_init(struct veil_aead *aead, const struct veil_config *config,
                       char *errstr, size_t errstr_size)
{
        if (!config->keys.key)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "dlq: no master key loaded");
        return veil_aead_init_derived(aead, VEIL_AEAD_GCM, config->keys.key,
                                      config->keys.key_len, "veil:dlq", errstr,
                                      errstr_size);
}
