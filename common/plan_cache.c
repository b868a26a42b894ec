/* plan_cache.c - the plan cache: compiled plans by (schema id, purpose,
 * key or value), least recently used out first. */
#define _GNU_SOURCE
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "derive.h"
#include "subject_keys.h"
#include "util.h"
#include "plan_int.h"
#include "veil.h"

/* ---- cache -------------------------------------------------------------- */

struct cache_entry {
        int schema_id;
        bool key;
        char *purpose;
        char *digest;
        uint64_t hash;
        uint64_t used; /* clock of the last get/put */
        struct veil_plan *plan;
        struct cache_entry *next; /* bucket chain */
};

struct veil_plan_cache {
        struct cache_entry **buckets;
        size_t n_buckets; /* power of two */
        size_t n, capacity;
        uint64_t clock;
};

static uint64_t cache_hash(int schema_id, const char *purpose,
                           const char *digest, bool key)
{
        uint64_t h  = 1469598103934665603ULL;
        uint32_t id = (uint32_t)schema_id;
        int i;

        for (i = 0; i < 4; i++) {
                h ^= (id >> (8 * i)) & 0xff;
                h *= 1099511628211ULL;
        }
        for (; purpose && *purpose; purpose++) {
                h ^= (uint8_t)*purpose;
                h *= 1099511628211ULL;
        }
        h ^= 0xff;
        h *= 1099511628211ULL;
        for (; digest && *digest; digest++) {
                h ^= (uint8_t)*digest;
                h *= 1099511628211ULL;
        }
        h ^= key ? 1 : 2;
        h *= 1099511628211ULL;
        return h;
}

struct veil_plan_cache *veil_plan_cache_new(size_t capacity)
{
        struct veil_plan_cache *cache = veil_calloc(1, sizeof(*cache));

        cache->capacity  = capacity ? capacity : 1;
        cache->n_buckets = 16;
        while (cache->n_buckets < cache->capacity * 2)
                cache->n_buckets *= 2;
        cache->buckets = veil_calloc(cache->n_buckets, sizeof(*cache->buckets));
        return cache;
}

static void entry_free(struct cache_entry *ent)
{
        veil_plan_destroy(ent->plan);
        free(ent->purpose);
        free(ent->digest);
        free(ent);
}

void veil_plan_cache_destroy(struct veil_plan_cache *cache)
{
        size_t i;

        if (!cache)
                return;
        for (i = 0; i < cache->n_buckets; i++) {
                struct cache_entry *ent = cache->buckets[i], *next;

                for (; ent; ent = next) {
                        next = ent->next;
                        entry_free(ent);
                }
        }
        free(cache->buckets);
        free(cache);
}

static struct cache_entry **cache_find(struct veil_plan_cache *cache,
                                       uint64_t h, int schema_id,
                                       const char *purpose, const char *digest,
                                       bool key)
{
        struct cache_entry **pp = &cache->buckets[h & (cache->n_buckets - 1)];

        for (; *pp; pp = &(*pp)->next) {
                struct cache_entry *ent = *pp;

                if (ent->hash == h && ent->schema_id == schema_id &&
                    ent->key == key && !strcmp(ent->purpose, purpose) &&
                    !strcmp(ent->digest, digest))
                        return pp;
        }
        return pp;
}

struct veil_plan *veil_plan_cache_get(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key)
{
        uint64_t h = cache_hash(schema_id, purpose, policy_digest, key);
        struct cache_entry **pp =
                cache_find(cache, h, schema_id, purpose,
                           policy_digest ? policy_digest : "", key);

        if (!*pp)
                return NULL;
        (*pp)->used = ++cache->clock;
        return (*pp)->plan;
}

static void cache_evict_lru(struct veil_plan_cache *cache)
{
        struct cache_entry **victim = NULL;
        size_t i;

        for (i = 0; i < cache->n_buckets; i++) {
                struct cache_entry **pp;

                for (pp = &cache->buckets[i]; *pp; pp = &(*pp)->next)
                        if (!victim || (*pp)->used < (*victim)->used)
                                victim = pp;
        }
        if (victim) {
                struct cache_entry *ent = *victim;

                *victim = ent->next;
                entry_free(ent);
                cache->n--;
        }
}

struct veil_plan *veil_plan_cache_put(struct veil_plan_cache *cache,
                                      int schema_id, const char *purpose,
                                      const char *policy_digest, bool key,
                                      struct veil_plan *plan)
{
        const char *digest = policy_digest ? policy_digest : "";
        uint64_t h         = cache_hash(schema_id, purpose, policy_digest, key);
        struct cache_entry **pp, *ent;

        pp = cache_find(cache, h, schema_id, purpose, digest, key);
        if (*pp) {
                if ((*pp)->plan != plan)
                        veil_plan_destroy((*pp)->plan);
                (*pp)->plan = plan;
                (*pp)->used = ++cache->clock;
                return plan;
        }
        if (cache->n >= cache->capacity)
                cache_evict_lru(cache);
        ent            = veil_calloc(1, sizeof(*ent));
        ent->schema_id = schema_id;
        ent->key       = key;
        ent->purpose   = veil_strdup(purpose);
        ent->digest    = veil_strdup(digest);
        ent->hash      = h;
        ent->plan      = plan;
        ent->used      = ++cache->clock;
        pp             = &cache->buckets[h & (cache->n_buckets - 1)];
        ent->next      = *pp;
        *pp            = ent;
        cache->n++;
        return plan;
}

size_t veil_plan_cache_size(const struct veil_plan_cache *cache)
{
        return cache->n;
}
