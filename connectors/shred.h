/* shred.h - the worker's side of crypto-shredding: the subject-key store
 * kept current from the compacted key topic, its writes and erasure
 * tombstones inside the worker's Kafka transaction. */
#ifndef VEIL_CONNECTORS_SHRED_H
#define VEIL_CONNECTORS_SHRED_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "subject_keys.h"

struct veil_shred;

/* Subjects whose token keys are kept per worker pipeline (the LRU's
 * bound: 128 bytes each with one per_subject purpose). */
#define VEIL_SHRED_CACHE_MAX 65536
/* Subjects whose wrapped key stays resident in the index (96 bytes each);
 * past it, subjects not used lately keep only ref and position (32
 * bytes) and their key is fetched from the key topic on their next use. */
#define VEIL_SHRED_INDEX_MAX 1000000
/* How long a start retries reading the key topic on broker errors. */
#define VEIL_SHRED_START_TIMEOUT_MS 60000
/* A fetch that takes longer fails the batch, which is then retried. */
#define VEIL_SHRED_FETCH_TIMEOUT_MS 10000
/* How often, at most, a transaction's begin tries a full read of the key
 * topic again when it is not followed (not there yet, or an error). */
#define VEIL_SHRED_CATCHUP_MS 1000

/* The shredding side of a worker whose transactional sink is `sink`
 * (borrowed: subject keys are written through it). *shredp is NULL (and 0
 * returned) when no purpose uses per_subject. Reads the key topic to its end
 * (blocking). */
struct veil_sink;
int veil_shred_new(const struct veil_config *config, struct veil_sink *sink,
                   struct veil_shred **shredp, char *errstr,
                   size_t errstr_size);
void veil_shred_destroy(struct veil_shred *s);
/* The store the license filter takes keys from (NULL for NULL). */
struct veil_subject_keys *veil_shred_store(struct veil_shred *s);
/* A reloaded config: a new store (the keyring may have changed), read
 * again from the key topic. Between transactions. */
int veil_shred_set_config(struct veil_shred *s,
                          const struct veil_config *config, char *errstr,
                          size_t errstr_size);
/* `force` (an assignment: a previous owner's keys): reads the key topic
 * from where it stopped to its end, blocking, then follows it. Else
 * applies what the followed reader has fetched (erasures and keys of
 * other pipelines) without waiting. Outside a transaction. */
int veil_shred_catch_up(struct veil_shred *s, bool force, char *errstr,
                        size_t errstr_size);
/* Inside the transaction, before its commit: produces the keys made or
 * re-wrapped by its records. */
int veil_shred_flush(struct veil_shred *s, char *errstr, size_t errstr_size);
void veil_shred_commit(struct veil_shred *s);
void veil_shred_rollback(struct veil_shred *s);
/* Erasure, inside the transaction: tombstones the subject's key record
 * (under every ring key, for every route source). Adds the tombstones
 * produced to *produced. */
int veil_shred_erase(struct veil_shred *s, const void *subject, size_t len,
                     int64_t *produced, char *errstr, size_t errstr_size);

#endif
