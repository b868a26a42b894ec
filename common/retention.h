/* retention.h - the in-memory deadline index of a worker: (purpose, transformed
 * key) → deadline, for millions of keys, popped in deadline order. */
#ifndef VEIL_COMMON_RETENTION_H
#define VEIL_COMMON_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* One index per worker (not thread-safe). A tracked key is identified by
 * the caller's purpose number (an index into the worker's own table of
 * purpose topics) and the key bytes as they are written to the purpose
 * topic, i.e. already transformed: the index never sees, and must never be
 * given, an untransformed key. Each entry
 * also remembers the source partition its latest record came from, so a
 * revocation can drop what moved away.
 *
 * Layout (about 41 bytes per key plus the key's bytes, see retention.c):
 * entries in one dense array, keys in one arena, an open-addressing hash
 * table of 32-bit entry numbers and a 4-ary min-heap of (deadline, entry). */
struct veil_retention;

/* Purposes are numbered 0..65535 (uint16_t); keys are at most this long. */
#define VEIL_RETENTION_MAX_KEY 65535u
/* Entries one index holds at most (32-bit entry numbers). */
#define VEIL_RETENTION_MAX_ENTRIES 0x7fffffffu

/* What an upsert did. */
enum veil_retention_change {
        VEIL_RETENTION_UNCHANGED = 0, /* tracked with a later or equal
                                       * deadline: nothing to write */
        VEIL_RETENTION_ADDED,         /* a new key */
        VEIL_RETENTION_RENEWED,       /* its deadline moved later */
};

/* A tracked key as the index reports it. `key` points into the index's
 * key arena: valid until the next veil_retention_upsert / _set / _compact /
 * _destroy (removing and popping never move keys, so the keys of a whole
 * pop batch stay readable while the caller produces their tombstones). */
struct veil_retention_entry {
        const unsigned char *key;
        size_t key_len;
        int64_t deadline_ms;
        int32_t partition; /* the source partition */
        uint16_t purpose;
};

/* An empty index. Allocation failure aborts (util.h). */
struct veil_retention *veil_retention_new(void);
void veil_retention_destroy(struct veil_retention *ri);

/* Keys of this index are an identity (their first id_len bytes) and a
 * payload (the rest): lookups, removal and equality use the identity only,
 * and upsert / set of a tracked key replace its payload (logged like any
 * change, so a rollback restores it). A new payload goes to the arena like
 * a new key (it may compact). Set once, on an empty index; 0 (the
 * default) makes the whole key its identity. */
void veil_retention_set_id_len(struct veil_retention *ri, size_t id_len);

/* Tracks the key or renews it: the deadline becomes max(old, deadline_ms),
 * so a record read late (older timestamp) never shortens a key's life.
 * The partition is set to `partition` whenever the deadline moves (the
 * newest record's partition). `change` (may be NULL) says what happened;
 * the caller writes a ledger record only when it is not UNCHANGED.
 * Returns 0, or VEIL_EINVAL (key longer than VEIL_RETENTION_MAX_KEY,
 * negative partition) / VEIL_ENOMEM (more than VEIL_RETENTION_MAX_ENTRIES, or 4
 * GiB of live key bytes) with errstr. The key bytes are copied. */
int veil_retention_upsert(struct veil_retention *ri, uint16_t purpose,
                          const void *key, size_t key_len, int64_t deadline_ms,
                          int32_t partition, enum veil_retention_change *change,
                          char *errstr, size_t errstr_size);

/* Like upsert, but the deadline and partition are replaced even when the
 * new deadline is earlier: what restoring from the ledger needs (the later
 * ledger record wins, whatever it says). */
int veil_retention_set(struct veil_retention *ri, uint16_t purpose,
                       const void *key, size_t key_len, int64_t deadline_ms,
                       int32_t partition, char *errstr, size_t errstr_size);

/* Looks a key up. Returns 0 and fills *out (may be NULL), or
 * VEIL_ENOTFOUND. */
int veil_retention_get(const struct veil_retention *ri, uint16_t purpose,
                       const void *key, size_t key_len,
                       struct veil_retention_entry *out);

/* Stops tracking a key (an upstream delete, an erasure). Returns 0 and
 * fills *old (may be NULL; its key points at the caller's bytes), or
 * VEIL_ENOTFOUND. */
int veil_retention_remove(struct veil_retention *ri, uint16_t purpose,
                          const void *key, size_t key_len,
                          struct veil_retention_entry *old);

/* Removes up to `max` entries whose deadline is ≤ now_ms, earliest first
 * (ties in no particular order), into out[]. Returns how many; call again
 * while it returns `max` to drain a mass expiry in bounded batches. */
size_t veil_retention_pop_expired(struct veil_retention *ri, int64_t now_ms,
                                  struct veil_retention_entry *out, size_t max);

/* The earliest deadline, or INT64_MAX when the index is empty: how long
 * the worker may sleep before the next tombstone is due. */
int64_t veil_retention_next_deadline(const struct veil_retention *ri);

/* Drops every entry for which match(ctx, entry) returns true (e.g. a
 * revoked source partition) and returns how many. match must not touch
 * the index. */
size_t veil_retention_drop_if(
        struct veil_retention *ri,
        bool (*match)(void *ctx, const struct veil_retention_entry *entry),
        void *ctx);

/* Drops the entries of one source partition whose purpose is one of
 * purposes[0..n_purposes) (the purpose topics of the route whose source
 * partition was revoked); n_purposes == 0 matches every purpose. */
size_t veil_retention_drop_partition(struct veil_retention *ri,
                                     int32_t partition,
                                     const uint16_t *purposes,
                                     size_t n_purposes);

/* Calls fn for every entry, in no particular order, until it returns
 * non-zero (which is returned). fn must not change the index. */
int veil_retention_foreach(const struct veil_retention *ri,
                           int (*fn)(void *ctx,
                                     const struct veil_retention_entry *entry),
                           void *ctx);

/* Removes everything, keeping the allocations. An open transaction is
 * closed: there is nothing left to roll back to. */
void veil_retention_clear(struct veil_retention *ri);

/* Transactions, mirroring the worker's Kafka transaction. Between begin
 * and commit/rollback every change (upsert, set, remove, pop, drop) is
 * logged with the state it replaced, so rollback - the Kafka transaction
 * aborted, the worker rewinds its consumer - returns the index to what it
 * was at begin: reprocessed records renew their keys again (and so write
 * their ledger records again) and popped deadlines come back to expire
 * again. begin while a transaction is open starts a new one (the old log
 * is forgotten, as on commit). Outside a transaction nothing is logged.
 * Revocations (drop) are best done outside one: each drop is logged. */
void veil_retention_begin(struct veil_retention *ri);
void veil_retention_commit(struct veil_retention *ri);
void veil_retention_rollback(struct veil_retention *ri);
/* Changes logged by the open transaction (0 when none is open). */
size_t veil_retention_txn_changes(const struct veil_retention *ri);

/* Copies live keys into a fresh arena, reclaiming the space of removed
 * ones. Upsert does it by itself when more than half the arena is dead. */
void veil_retention_compact(struct veil_retention *ri);

size_t veil_retention_count(const struct veil_retention *ri);

/* Bytes the index has allocated (arrays at capacity, arena, table). The
 * resident size may be lower: pages never written are not resident. */
size_t veil_retention_memory(const struct veil_retention *ri);

/* ---- deadlines from the licence --------------------------------------- */

/* Why a deadline is what it is. */
enum veil_retention_reason {
        VEIL_RETENTION_NONE = 0,         /* not retained by Veil */
        VEIL_RETENTION_BY_RETENTION,     /* record time + retention */
        VEIL_RETENTION_BY_LICENSE_EXPIRY /* the licence ends first */
};

/* The deadline of a record of `purpose` stamped record_ts_ms: the earlier
 * of record_ts_ms + retention and the end of the licence (valid_until),
 * so a licence expiry purge is just more deadlines passing. Sets *reason
 * (may be NULL). Returns INT64_MAX with VEIL_RETENTION_NONE when the
 * purpose has neither a retention nor a valid_until. Saturates instead of
 * overflowing. */
int64_t veil_retention_deadline(const struct veil_purpose *purpose,
                                int64_t record_ts_ms,
                                enum veil_retention_reason *reason);

/* The `veil.reason` header of a tombstone for a deadline of `purpose`:
 * "license-expired" when the deadline is the end of the licence,
 * "retention" otherwise. */
const char *veil_retention_reason_name(const struct veil_purpose *purpose,
                                       int64_t deadline_ms);

/* The end of the licence in ms (first millisecond it is no longer valid),
 * or INT64_MAX when it has no valid_until. */
int64_t veil_retention_license_end_ms(const struct veil_purpose *purpose);

/* A fast seeded 64-bit hash of bytes (not cryptographic; the seed makes
 * the table layout unpredictable to whoever chooses the keys). */
uint64_t veil_retention_hash(uint64_t seed, const void *data, size_t len);

/* A random seed for veil_retention_hash (getrandom, with a fallback). */
uint64_t veil_retention_seed(void);

#endif
