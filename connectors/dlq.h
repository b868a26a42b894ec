/* dlq.h - the DLQ's sealing key and header names, shared by the worker
 * that writes dead letters and `veil dlq replay` that reads them back. */
#ifndef VEIL_CONNECTORS_DLQ_H
#define VEIL_CONNECTORS_DLQ_H

#include <stddef.h>

#include "config.h"
#include "crypto.h"

/* A dead letter: veil.error (code), veil.error.detail, veil.source
 * ("TOPIC/PARTITION/OFFSET" of the original), veil.policy,
 * veil.dlq.payload ("encrypted" or "raw"), with encrypted also
 * veil.dlq.cipher ("aes-256-gcm") and veil.key_id. Sealed key and value:
 * AES-256-GCM (nonce | ciphertext | tag) under a key derived from the
 * master key (HKDF-SHA256, info "veil:dlq"); a NULL key or value stays
 * NULL.
 * A record fed back by `veil dlq replay` carries veil.replay.of (the
 * dead letter's "DLQ_TOPIC/PARTITION/OFFSET"); the worker copies it onto
 * what it produces from that record, and onto a new dead letter if the
 * record fails again. In the same transaction as the replayed record,
 * replay writes a marker to the DLQ topic (header veil.replay.done with
 * the same position, no veil.error), so a replay that runs again skips
 * what was already fed back. */
#define VEIL_DLQ_REPLAY_OF "veil.replay.of"
#define VEIL_DLQ_REPLAY_DONE "veil.replay.done"

/* Keys `aead` (GCM) with the DLQ key of config's master key. 0 or VEIL_E*
 * with errstr; on error `aead` needs no destroy. */
int veil_dlq_aead_init(struct veil_aead *aead, const struct veil_config *config,
                       char *errstr, size_t errstr_size);

#endif
