/* retention.c - the deadline index: dense entries, a key arena, an
 * open-addressing table and a 4-ary heap, sized for millions of keys. */
#define _GNU_SOURCE
#include "retention.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util.h"
#include "veil.h"

/* Memory per tracked key, by design (measured: bench/README.md):
 *   entry   20 B  key offset, hash, heap position, partition, purpose, length
 *   heap    12 B  deadline (int64) and entry number (uint32) in two arrays,
 *                 so sifting compares deadlines in one contiguous array and
 *                 touches an entry only to record its new heap position
 *   table 5-11 B  32-bit slots (entry number + 1) at load 0.375-0.75,
 *                 linear probing, no tombstones: deletion shifts the
 *                 cluster back
 *   key  len B    in one arena; no length prefix since the entry's 16-bit
 *                 length fills what would otherwise be padding
 * ≈ 37-43 B + the key (measured: 41 B at 1M keys), against ~107 B for a
 * malloc'ed node per key in a pointer-based map and heap. Arrays grow by
 * doubling; large blocks come from mmap, so capacity never written is not
 * resident.
 *
 * Entries stay dense: removing one moves the last entry into its place,
 * and its table slot and heap node are repointed. Keys never move on
 * removal (their bytes become dead arena space), which is what keeps the
 * key pointers of a popped batch valid; upsert compacts the arena once
 * more than half of it is dead. */

struct ri_entry {
        uint32_t key_off;  /* into the arena */
        uint32_t hash;     /* of (purpose, key): rehashing reads no key */
        uint32_t heap_pos; /* where its deadline sits in the heap */
        int32_t partition;
        uint16_t purpose;
        uint16_t key_len;
};

struct veil_retention {
        struct ri_entry *ent;
        int64_t *hdl;   /* heap: deadlines */
        uint32_t *hidx; /* heap: entry numbers */
        size_t n, cap;  /* entries (= heap nodes) and their capacity */

        uint32_t *slots; /* 0: empty, else entry number + 1 */
        size_t mask;     /* slots - 1 (a power of two) */

        unsigned char *arena;
        size_t arena_len, arena_cap, arena_dead;

        uint64_t seed;
        /* > 0: only a key's first id_len bytes identify it; the rest is a
         * payload that put replaces (veil_retention_set_id_len). */
        size_t id_len;

        /* The open transaction's undo log: what each change replaced. */
        bool txn;
        struct ri_undo *undo;
        size_t n_undo, cap_undo;
        unsigned char *undo_keys;
        size_t undo_keys_len, undo_keys_cap;
};

struct ri_undo {
        int64_t deadline_ms;
        size_t key_off; /* into undo_keys */
        int32_t partition;
        uint16_t purpose;
        uint16_t key_len;
        bool existed; /* false: the change added the key */
};

#define RI_MIN_CAP 64
#define RI_MIN_SLOTS 128
/* Arena offsets are 32-bit. */
#define RI_ARENA_MAX ((size_t)UINT32_MAX)
/* Compact when more than this much of the arena is dead (and > half). */
#define RI_COMPACT_MIN ((size_t)1 << 20)

/* ---- hashing ----------------------------------------------------------- */

#define RI_K1 UINT64_C(0x9e3779b97f4a7c15)
#define RI_K2 UINT64_C(0xd6e8feb86659fd93)
#define RI_K3 UINT64_C(0xa0761d6478bd642f)

static uint64_t ri_mix(uint64_t h)
{
        h ^= h >> 32;
        h *= RI_K2;
        h ^= h >> 29;
        return h;
}

uint64_t veil_retention_hash(uint64_t seed, const void *data, size_t len)
{
        const unsigned char *p = data;
        uint64_t h             = seed ^ ((uint64_t)len * RI_K1), w;

        while (len >= 8) {
                memcpy(&w, p, 8);
                h = (h ^ w) * RI_K1;
                h ^= h >> 31;
                p += 8;
                len -= 8;
        }
        if (len) {
                w = 0;
                memcpy(&w, p, len);
                h = (h ^ w ^ ((uint64_t)len << 59)) * RI_K3;
                h ^= h >> 31;
        }
        return ri_mix(ri_mix(h));
}

uint64_t veil_retention_seed(void)
{
        uint64_t s = 0;
        struct timespec ts;

        if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s))
                return s;
        /* No entropy yet (early boot): the seed only spreads the table, so
         * a clock and an address are an acceptable fallback. */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ri_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                      (uint64_t)(uintptr_t)&s);
}

/* The bytes of a key of len bytes that identify it. */
static size_t ri_idlen(const struct veil_retention *ri, size_t len)
{
        return ri->id_len && len > ri->id_len ? ri->id_len : len;
}

static uint32_t ri_hash(const struct veil_retention *ri, uint16_t purpose,
                        const void *key, size_t len)
{
        uint64_t h;

        len = ri_idlen(ri, len);
        h   = veil_retention_hash(ri->seed ^ (purpose * RI_K3), key, len);

        return (uint32_t)(h ^ (h >> 32));
}

/* ---- life cycle ---------------------------------------------------------- */

struct veil_retention *veil_retention_new(void)
{
        struct veil_retention *ri = veil_calloc(1, sizeof(*ri));

        ri->cap       = RI_MIN_CAP;
        ri->ent       = veil_malloc(ri->cap * sizeof(*ri->ent));
        ri->hdl       = veil_malloc(ri->cap * sizeof(*ri->hdl));
        ri->hidx      = veil_malloc(ri->cap * sizeof(*ri->hidx));
        ri->mask      = RI_MIN_SLOTS - 1;
        ri->slots     = veil_calloc(RI_MIN_SLOTS, sizeof(*ri->slots));
        ri->arena_cap = 4096;
        ri->arena     = veil_malloc(ri->arena_cap);
        ri->seed      = veil_retention_seed();
        return ri;
}

void veil_retention_destroy(struct veil_retention *ri)
{
        if (!ri)
                return;
        /* Transformed keys are still what a purpose publishes: wipe them. */
        if (ri->arena_len)
                memset(ri->arena, 0, ri->arena_len);
        veil_retention_commit(ri);
        free(ri->undo_keys);
        free(ri->undo);
        free(ri->arena);
        free(ri->slots);
        free(ri->hidx);
        free(ri->hdl);
        free(ri->ent);
        free(ri);
}

size_t veil_retention_count(const struct veil_retention *ri)
{
        return ri->n;
}

size_t veil_retention_memory(const struct veil_retention *ri)
{
        return sizeof(*ri) +
               ri->cap * (sizeof(*ri->ent) + sizeof(*ri->hdl) +
                          sizeof(*ri->hidx)) +
               (ri->mask + 1) * sizeof(*ri->slots) + ri->arena_cap;
}

void veil_retention_clear(struct veil_retention *ri)
{
        ri->n = 0;
        memset(ri->slots, 0, (ri->mask + 1) * sizeof(*ri->slots));
        memset(ri->arena, 0, ri->arena_len);
        ri->arena_len  = 0;
        ri->arena_dead = 0;
        veil_retention_commit(ri);
}

/* ---- heap ------------------------------------------------------------------
 * 4-ary: half the depth of a binary heap, and the four children of a node
 * share a cache line of deadlines. */

static void heap_put(struct veil_retention *ri, size_t pos, int64_t dl,
                     uint32_t idx)
{
        ri->hdl[pos]          = dl;
        ri->hidx[pos]         = idx;
        ri->ent[idx].heap_pos = (uint32_t)pos;
}

static void heap_up(struct veil_retention *ri, size_t pos)
{
        int64_t dl   = ri->hdl[pos];
        uint32_t idx = ri->hidx[pos];
        size_t parent;

        while (pos > 0) {
                parent = (pos - 1) / 4;
                if (ri->hdl[parent] <= dl)
                        break;
                heap_put(ri, pos, ri->hdl[parent], ri->hidx[parent]);
                pos = parent;
        }
        heap_put(ri, pos, dl, idx);
}

static void heap_down(struct veil_retention *ri, size_t pos)
{
        int64_t dl   = ri->hdl[pos];
        uint32_t idx = ri->hidx[pos];
        size_t c, end, j, best;

        for (;;) {
                c = 4 * pos + 1;
                if (c >= ri->n)
                        break;
                end  = c + 4 < ri->n ? c + 4 : ri->n;
                best = c;
                for (j = c + 1; j < end; j++)
                        if (ri->hdl[j] < ri->hdl[best])
                                best = j;
                if (ri->hdl[best] >= dl)
                        break;
                heap_put(ri, pos, ri->hdl[best], ri->hidx[best]);
                pos = best;
        }
        heap_put(ri, pos, dl, idx);
}

/* After the deadline at pos changed either way. */
static void heap_fix(struct veil_retention *ri, size_t pos)
{
        if (pos > 0 && ri->hdl[pos] < ri->hdl[(pos - 1) / 4])
                heap_up(ri, pos);
        else
                heap_down(ri, pos);
}

/* ---- table -----------------------------------------------------------------
 */

static int ri_key_eq(const struct veil_retention *ri, const struct ri_entry *e,
                     uint32_t h, uint16_t purpose, const void *key, size_t len)
{
        size_t el = ri_idlen(ri, e->key_len);

        len = ri_idlen(ri, len);
        return e->hash == h && e->purpose == purpose && el == len &&
               (!len || !memcmp(ri->arena + e->key_off, key, len));
}

/* The slot holding the key, or the empty slot where it would go; *found
 * says which. */
static size_t ri_lookup(const struct veil_retention *ri, uint32_t h,
                        uint16_t purpose, const void *key, size_t len,
                        int *found)
{
        size_t i = h & ri->mask;
        uint32_t s;

        while ((s = ri->slots[i]) != 0) {
                if (ri_key_eq(ri, &ri->ent[s - 1], h, purpose, key, len)) {
                        *found = 1;
                        return i;
                }
                i = (i + 1) & ri->mask;
        }
        *found = 0;
        return i;
}

/* The slot holding entry number idx (which must be in the table). */
static size_t ri_slot_of(const struct veil_retention *ri, uint32_t idx)
{
        size_t i = ri->ent[idx].hash & ri->mask;

        while (ri->slots[i] != idx + 1)
                i = (i + 1) & ri->mask;
        return i;
}

/* Empties slot i and shifts back the rest of its cluster, so lookups never
 * need tombstones. */
static void ri_slot_delete(struct veil_retention *ri, size_t i)
{
        size_t j = i, k;

        for (;;) {
                j = (j + 1) & ri->mask;
                if (!ri->slots[j])
                        break;
                k = ri->ent[ri->slots[j] - 1].hash & ri->mask;
                /* The entry at j may fill i unless its home k lies
                 * cyclically in (i, j]. */
                if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
                        ri->slots[i] = ri->slots[j];
                        i            = j;
                }
        }
        ri->slots[i] = 0;
}

static void ri_table_grow(struct veil_retention *ri)
{
        size_t nslots = (ri->mask + 1) * 2, i, x;

        free(ri->slots);
        ri->slots = veil_calloc(nslots, sizeof(*ri->slots));
        ri->mask  = nslots - 1;
        for (x = 0; x < ri->n; x++) {
                i = ri->ent[x].hash & ri->mask;
                while (ri->slots[i])
                        i = (i + 1) & ri->mask;
                ri->slots[i] = (uint32_t)x + 1;
        }
}

/* ---- arena ------------------------------------------------------------------
 */

void veil_retention_compact(struct veil_retention *ri)
{
        size_t live = ri->arena_len - ri->arena_dead, cap, off = 0, x;
        unsigned char *a;

        cap = live + live / 4;
        if (cap < 4096)
                cap = 4096;
        a = veil_malloc(cap);
        for (x = 0; x < ri->n; x++) {
                struct ri_entry *e = &ri->ent[x];

                memcpy(a + off, ri->arena + e->key_off, e->key_len);
                e->key_off = (uint32_t)off;
                off += e->key_len;
        }
        memset(ri->arena, 0, ri->arena_len);
        free(ri->arena);
        ri->arena      = a;
        ri->arena_cap  = cap;
        ri->arena_len  = off;
        ri->arena_dead = 0;
}

/* Room for `len` more key bytes. VEIL_ENOMEM past 4 GiB of live keys. */
static int ri_arena_reserve(struct veil_retention *ri, size_t len)
{
        size_t cap;

        if (ri->arena_dead > RI_COMPACT_MIN &&
            ri->arena_dead > ri->arena_len / 2)
                veil_retention_compact(ri);
        if (ri->arena_len + len <= ri->arena_cap)
                return 0;
        if (ri->arena_len + len > RI_ARENA_MAX && ri->arena_dead)
                veil_retention_compact(ri);
        if (ri->arena_len + len > RI_ARENA_MAX)
                return VEIL_ENOMEM;
        cap = ri->arena_cap;
        while (cap < ri->arena_len + len)
                cap *= 2;
        if (cap > RI_ARENA_MAX)
                cap = RI_ARENA_MAX;
        ri->arena     = veil_realloc(ri->arena, cap);
        ri->arena_cap = cap;
        return 0;
}

/* ---- transactions ----------------------------------------------------------
 */

/* Logs the state a change is about to replace (existed == false: the key
 * was absent). No-op outside a transaction. */
static void ri_log(struct veil_retention *ri, uint16_t purpose, const void *key,
                   size_t key_len, bool existed, int64_t deadline_ms,
                   int32_t partition)
{
        struct ri_undo *u;

        if (!ri->txn)
                return;
        if (ri->n_undo == ri->cap_undo) {
                ri->cap_undo = ri->cap_undo ? ri->cap_undo * 2 : 64;
                ri->undo     = veil_realloc(ri->undo,
                                            ri->cap_undo * sizeof(*ri->undo));
        }
        if (ri->undo_keys_len + key_len > ri->undo_keys_cap) {
                while (ri->undo_keys_len + key_len > ri->undo_keys_cap)
                        ri->undo_keys_cap = ri->undo_keys_cap
                                                    ? ri->undo_keys_cap * 2
                                                    : 4096;
                ri->undo_keys = veil_realloc(ri->undo_keys, ri->undo_keys_cap);
        }
        u              = &ri->undo[ri->n_undo++];
        u->deadline_ms = deadline_ms;
        u->key_off     = ri->undo_keys_len;
        u->partition   = partition;
        u->purpose     = purpose;
        u->key_len     = (uint16_t)key_len;
        u->existed     = existed;
        if (key_len)
                memcpy(ri->undo_keys + ri->undo_keys_len, key, key_len);
        ri->undo_keys_len += key_len;
}

void veil_retention_begin(struct veil_retention *ri)
{
        veil_retention_commit(ri);
        ri->txn = true;
}

void veil_retention_commit(struct veil_retention *ri)
{
        if (ri->undo_keys_len)
                memset(ri->undo_keys, 0, ri->undo_keys_len);
        ri->undo_keys_len = 0;
        ri->n_undo        = 0;
        ri->txn           = false;
}

size_t veil_retention_txn_changes(const struct veil_retention *ri)
{
        return ri->txn ? ri->n_undo : 0;
}

/* ---- operations -----------------------------------------------------------
 */

static void ri_view(const struct veil_retention *ri, size_t x,
                    struct veil_retention_entry *out)
{
        const struct ri_entry *e = &ri->ent[x];

        out->key         = ri->arena + e->key_off;
        out->key_len     = e->key_len;
        out->deadline_ms = ri->hdl[e->heap_pos];
        out->partition   = e->partition;
        out->purpose     = e->purpose;
}

/* Removes entry x entirely; the last entry moves into its place. */
static void ri_remove_at(struct veil_retention *ri, size_t x)
{
        size_t pos = ri->ent[x].heap_pos, last = ri->n - 1;

        if (ri->txn)
                ri_log(ri, ri->ent[x].purpose, ri->arena + ri->ent[x].key_off,
                       ri->ent[x].key_len, true, ri->hdl[pos],
                       ri->ent[x].partition);
        /* Heap: the last node fills the hole. ri->n shrinks last, so the
         * heap is sifted with its new size set by hand. */
        ri_slot_delete(ri, ri_slot_of(ri, (uint32_t)x));
        ri->arena_dead += ri->ent[x].key_len;
        ri->n = last;
        if (pos != last) {
                heap_put(ri, pos, ri->hdl[last], ri->hidx[last]);
                heap_fix(ri, pos);
        }
        /* Dense array: the last entry moves into x. */
        if (x != last) {
                ri->slots[ri_slot_of(ri, (uint32_t)last)] = (uint32_t)x + 1;
                ri->ent[x]                                = ri->ent[last];
                ri->hidx[ri->ent[x].heap_pos]             = (uint32_t)x;
        }
}

static int ri_put(struct veil_retention *ri, uint16_t purpose, const void *key,
                  size_t key_len, int64_t deadline_ms, int32_t partition,
                  bool replace, enum veil_retention_change *change,
                  char *errstr, size_t errstr_size)
{
        struct ri_entry *e;
        size_t slot, x, pos;
        int64_t old;
        uint32_t h;
        int found, rc;

        if (change)
                *change = VEIL_RETENTION_UNCHANGED;
        if (key_len > VEIL_RETENTION_MAX_KEY)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "retention: key of %zu bytes (at most %u)",
                                 key_len, VEIL_RETENTION_MAX_KEY);
        if (partition < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "retention: negative partition %d",
                                 (int)partition);
        if (!key && key_len)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "retention: no key bytes");

        h = ri_hash(ri, purpose, key, key_len);
        /* Grow before the lookup so the returned empty slot stays valid. */
        if ((ri->n + 1) * 4 > (ri->mask + 1) * 3)
                ri_table_grow(ri);
        slot = ri_lookup(ri, h, purpose, key, key_len, &found);
        if (found) {
                bool payload;

                x       = ri->slots[slot] - 1;
                pos     = ri->ent[x].heap_pos;
                old     = ri->hdl[pos];
                payload = ri->id_len && (ri->ent[x].key_len != key_len ||
                                         memcmp(ri->arena + ri->ent[x].key_off,
                                                key, key_len) != 0);
                if (ri->txn && (deadline_ms > old || replace || payload))
                        ri_log(ri, purpose, ri->arena + ri->ent[x].key_off,
                               ri->ent[x].key_len, true, old,
                               ri->ent[x].partition);
                if (payload) {
                        /* The new bytes go to the arena's end (a compaction
                         * there moves only offsets); the old become dead. */
                        rc = ri_arena_reserve(ri, key_len);
                        if (rc)
                                return veil_errf(errstr, errstr_size, rc,
                                                 "retention: more than 4 GiB "
                                                 "of keys");
                        ri->arena_dead += ri->ent[x].key_len;
                        ri->ent[x].key_off = (uint32_t)ri->arena_len;
                        ri->ent[x].key_len = (uint16_t)key_len;
                        memcpy(ri->arena + ri->arena_len, key, key_len);
                        ri->arena_len += key_len;
                }
                if (deadline_ms > old || (replace && deadline_ms != old)) {
                        ri->hdl[pos] = deadline_ms;
                        heap_fix(ri, pos);
                        if (change && deadline_ms > old)
                                *change = VEIL_RETENTION_RENEWED;
                }
                if (deadline_ms > old || replace)
                        ri->ent[x].partition = partition;
                return 0;
        }

        if (ri->n >= VEIL_RETENTION_MAX_ENTRIES)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "retention: the index is full (%zu keys)",
                                 ri->n);
        /* Compaction rewrites offsets but not the table, so `slot` holds. */
        rc = ri_arena_reserve(ri, key_len);
        if (rc)
                return veil_errf(errstr, errstr_size, rc,
                                 "retention: more than 4 GiB of keys");
        if (ri->n == ri->cap) {
                ri->cap *= 2;
                ri->ent  = veil_realloc(ri->ent, ri->cap * sizeof(*ri->ent));
                ri->hdl  = veil_realloc(ri->hdl, ri->cap * sizeof(*ri->hdl));
                ri->hidx = veil_realloc(ri->hidx, ri->cap * sizeof(*ri->hidx));
        }
        x            = ri->n++;
        e            = &ri->ent[x];
        e->key_off   = (uint32_t)ri->arena_len;
        e->hash      = h;
        e->partition = partition;
        e->purpose   = purpose;
        e->key_len   = (uint16_t)key_len;
        if (key_len)
                memcpy(ri->arena + ri->arena_len, key, key_len);
        ri->arena_len += key_len;
        ri->slots[slot] = (uint32_t)x + 1;
        heap_put(ri, x, deadline_ms, (uint32_t)x);
        heap_up(ri, x);
        ri_log(ri, purpose, key, key_len, false, 0, 0);
        if (change)
                *change = VEIL_RETENTION_ADDED;
        return 0;
}

void veil_retention_set_id_len(struct veil_retention *ri, size_t id_len)
{
        ri->id_len = id_len;
}

int veil_retention_upsert(struct veil_retention *ri, uint16_t purpose,
                          const void *key, size_t key_len, int64_t deadline_ms,
                          int32_t partition, enum veil_retention_change *change,
                          char *errstr, size_t errstr_size)
{
        return ri_put(ri, purpose, key, key_len, deadline_ms, partition, false,
                      change, errstr, errstr_size);
}

int veil_retention_set(struct veil_retention *ri, uint16_t purpose,
                       const void *key, size_t key_len, int64_t deadline_ms,
                       int32_t partition, char *errstr, size_t errstr_size)
{
        return ri_put(ri, purpose, key, key_len, deadline_ms, partition, true,
                      NULL, errstr, errstr_size);
}

int veil_retention_get(const struct veil_retention *ri, uint16_t purpose,
                       const void *key, size_t key_len,
                       struct veil_retention_entry *out)
{
        size_t slot;
        int found;

        if (key_len > VEIL_RETENTION_MAX_KEY || (!key && key_len))
                return VEIL_ENOTFOUND;
        slot = ri_lookup(ri, ri_hash(ri, purpose, key, key_len), purpose, key,
                         key_len, &found);
        if (!found)
                return VEIL_ENOTFOUND;
        if (out)
                ri_view(ri, ri->slots[slot] - 1, out);
        return 0;
}

int veil_retention_remove(struct veil_retention *ri, uint16_t purpose,
                          const void *key, size_t key_len,
                          struct veil_retention_entry *old)
{
        size_t slot, x;
        int found;

        if (key_len > VEIL_RETENTION_MAX_KEY || (!key && key_len))
                return VEIL_ENOTFOUND;
        slot = ri_lookup(ri, ri_hash(ri, purpose, key, key_len), purpose, key,
                         key_len, &found);
        if (!found)
                return VEIL_ENOTFOUND;
        x = ri->slots[slot] - 1;
        if (old) {
                ri_view(ri, x, old);
                old->key = key;
        }
        ri_remove_at(ri, x);
        return 0;
}

size_t veil_retention_pop_expired(struct veil_retention *ri, int64_t now_ms,
                                  struct veil_retention_entry *out, size_t max)
{
        size_t k = 0;

        while (k < max && ri->n && ri->hdl[0] <= now_ms) {
                ri_view(ri, ri->hidx[0], &out[k++]);
                ri_remove_at(ri, ri->hidx[0]);
        }
        return k;
}

int64_t veil_retention_next_deadline(const struct veil_retention *ri)
{
        return ri->n ? ri->hdl[0] : INT64_MAX;
}

size_t veil_retention_drop_if(
        struct veil_retention *ri,
        bool (*match)(void *ctx, const struct veil_retention_entry *entry),
        void *ctx)
{
        struct veil_retention_entry view;
        size_t x, dropped = 0;

        /* Downwards: removing x moves the last entry, already visited,
         * into x. */
        for (x = ri->n; x-- > 0;) {
                ri_view(ri, x, &view);
                if (match(ctx, &view)) {
                        ri_remove_at(ri, x);
                        dropped++;
                }
        }
        return dropped;
}

struct drop_partition_ctx {
        int32_t partition;
        const uint16_t *purposes;
        size_t n_purposes;
};

static bool drop_partition_match(void *ctx,
                                 const struct veil_retention_entry *entry)
{
        const struct drop_partition_ctx *d = ctx;
        size_t i;

        if (entry->partition != d->partition)
                return false;
        if (!d->n_purposes)
                return true;
        for (i = 0; i < d->n_purposes; i++)
                if (d->purposes[i] == entry->purpose)
                        return true;
        return false;
}

size_t veil_retention_drop_partition(struct veil_retention *ri,
                                     int32_t partition,
                                     const uint16_t *purposes,
                                     size_t n_purposes)
{
        struct drop_partition_ctx d = {partition, purposes, n_purposes};

        return veil_retention_drop_if(ri, drop_partition_match, &d);
}

int veil_retention_foreach(const struct veil_retention *ri,
                           int (*fn)(void *ctx,
                                     const struct veil_retention_entry *entry),
                           void *ctx)
{
        struct veil_retention_entry view;
        size_t x;
        int rc;

        for (x = 0; x < ri->n; x++) {
                ri_view(ri, x, &view);
                rc = fn(ctx, &view);
                if (rc)
                        return rc;
        }
        return 0;
}

/* ---- deadlines from the licence ----------------------------------------- */

int64_t veil_retention_license_end_ms(const struct veil_purpose *purpose)
{
        /* valid_until is the last second of the last valid day. */
        if (!purpose || purpose->valid_until <= 0 ||
            purpose->valid_until >= INT64_MAX / 1000 - 1)
                return INT64_MAX;
        return (purpose->valid_until + 1) * 1000;
}

int64_t veil_retention_deadline(const struct veil_purpose *purpose,
                                int64_t record_ts_ms,
                                enum veil_retention_reason *reason)
{
        int64_t end = veil_retention_license_end_ms(purpose), dl = INT64_MAX;
        enum veil_retention_reason why = VEIL_RETENTION_NONE;

        if (purpose && purpose->retention_ms > 0) {
                why = VEIL_RETENTION_BY_RETENTION;
                if (record_ts_ms > INT64_MAX - purpose->retention_ms)
                        dl = INT64_MAX;
                else
                        dl = record_ts_ms + purpose->retention_ms;
        }
        if (end != INT64_MAX && end < dl) {
                dl  = end;
                why = VEIL_RETENTION_BY_LICENSE_EXPIRY;
        } else if (end != INT64_MAX && why == VEIL_RETENTION_NONE) {
                why = VEIL_RETENTION_BY_LICENSE_EXPIRY;
        }
        if (reason)
                *reason = why;
        return dl;
}

const char *veil_retention_reason_name(const struct veil_purpose *purpose,
                                       int64_t deadline_ms)
{
        int64_t end = veil_retention_license_end_ms(purpose);

        return end != INT64_MAX && deadline_ms >= end ? "license-expired"
                                                      : "retention";
}

void veil_retention_rollback(struct veil_retention *ri)
{
        const struct ri_undo *u;
        size_t i;

        if (!ri->txn)
                return;
        /* Replayed newest first with logging off, each step restores the
         * state before one change: the last restores the state at begin.
         * None can fail: the keys were tracked before (length checked)
         * and the index only shrinks back toward a size it had. */
        ri->txn = false;
        for (i = ri->n_undo; i-- > 0;) {
                const unsigned char *key;

                u = &ri->undo[i];
                /* undo_keys is NULL while every logged key was empty. */
                key = ri->undo_keys ? ri->undo_keys + u->key_off : NULL;
                if (u->existed)
                        (void)ri_put(ri, u->purpose, key, u->key_len,
                                     u->deadline_ms, u->partition, true, NULL,
                                     NULL, 0);
                else
                        (void)veil_retention_remove(ri, u->purpose, key,
                                                    u->key_len, NULL);
        }
        veil_retention_commit(ri);
}
