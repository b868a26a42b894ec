/* ledger.c - ledger record encoding and restore, write coalescing, and
 * erasure requests (formats in ledger.h). */
#define _GNU_SOURCE
#include "ledger.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "config.h"
#include "crypto.h"

#include "util.h"
#include "veil.h"

/* ---- ledger records --------------------------------------------------------
 */

static void put_be64(unsigned char *p, uint64_t v)
{
        int i;

        for (i = 7; i >= 0; i--) {
                p[i] = (unsigned char)(v & 0xff);
                v >>= 8;
        }
}

static void put_be32(unsigned char *p, uint32_t v)
{
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
        uint64_t v = 0;
        int i;

        for (i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static uint32_t get_be32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
}

static bool topic_char(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Kafka's rule for topic names (the broker rejects anything else). */
static bool topic_valid(const char *t, size_t len)
{
        size_t i;

        if (len == 0 || len > VEIL_LEDGER_TOPIC_MAX)
                return false;
        if ((len == 1 && t[0] == '.') || (len == 2 && !memcmp(t, "..", 2)))
                return false;
        for (i = 0; i < len; i++)
                if (!topic_char((unsigned char)t[i]))
                        return false;
        return true;
}

size_t veil_ledger_key_len(size_t topic_len, size_t key_len)
{
        return topic_len + 1 + key_len;
}

int veil_ledger_key_encode(const char *topic, const void *key, size_t key_len,
                           unsigned char *out, size_t cap, size_t *outlen,
                           char *errstr, size_t errstr_size)
{
        size_t tlen = topic ? strlen(topic) : 0;

        if (!topic_valid(topic, tlen))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: purpose topic is not a valid Kafka "
                                 "topic name");
        if (key_len > VEIL_RETENTION_MAX_KEY || (!key && key_len))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: key of %zu bytes (at most %u)",
                                 key_len, VEIL_RETENTION_MAX_KEY);
        if (cap < veil_ledger_key_len(tlen, key_len))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: key buffer of %zu bytes, need %zu",
                                 cap, veil_ledger_key_len(tlen, key_len));
        memcpy(out, topic, tlen);
        out[tlen] = 0;
        if (key_len)
                memcpy(out + tlen + 1, key, key_len);
        *outlen = veil_ledger_key_len(tlen, key_len);
        return 0;
}

int veil_ledger_value_encode(const struct veil_ledger_value *v,
                             unsigned char out[VEIL_LEDGER_VALUE_LEN],
                             char *errstr, size_t errstr_size)
{
        if (v->deadline_ms < 0 || v->partition < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: negative %s",
                                 v->deadline_ms < 0 ? "deadline" : "partition");
        out[0] = VEIL_LEDGER_VERSION;
        put_be64(out + 1, (uint64_t)v->deadline_ms);
        put_be64(out + 9, (uint64_t)v->record_ts_ms);
        put_be32(out + 17, (uint32_t)v->partition);
        return 0;
}

int veil_ledger_decode(const void *key, size_t key_len, const void *value,
                       size_t value_len, struct veil_ledger_record *rec,
                       char *errstr, size_t errstr_size)
{
        const unsigned char *k = key, *v = value, *nul;
        size_t tlen;

        memset(rec, 0, sizeof(*rec));
        if (!k || !key_len)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: record without a key");
        nul = memchr(k, 0,
                     key_len < VEIL_LEDGER_TOPIC_MAX + 1
                             ? key_len
                             : VEIL_LEDGER_TOPIC_MAX + 1);
        if (!nul)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: key has no topic separator in its "
                                 "first %d bytes",
                                 VEIL_LEDGER_TOPIC_MAX + 1);
        tlen = (size_t)(nul - k);
        if (!topic_valid((const char *)k, tlen))
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: key's topic part (%zu bytes) is not "
                                 "a valid topic name",
                                 tlen);
        if (key_len - tlen - 1 > VEIL_RETENTION_MAX_KEY)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: key part of %zu bytes (at most %u)",
                                 key_len - tlen - 1, VEIL_RETENTION_MAX_KEY);
        rec->topic     = (const char *)k;
        rec->topic_len = tlen;
        rec->key       = nul + 1;
        rec->key_len   = key_len - tlen - 1;
        if (!v || !value_len) {
                rec->tombstone = true;
                return 0;
        }
        if (value_len != VEIL_LEDGER_VALUE_LEN)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: value of %zu bytes (want %d)",
                                 value_len, VEIL_LEDGER_VALUE_LEN);
        if (v[0] != VEIL_LEDGER_VERSION)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: value format version %u (know %d)",
                                 v[0], VEIL_LEDGER_VERSION);
        rec->value.deadline_ms  = (int64_t)get_be64(v + 1);
        rec->value.record_ts_ms = (int64_t)get_be64(v + 9);
        rec->value.partition    = (int32_t)get_be32(v + 17);
        if (rec->value.deadline_ms < 0 || rec->value.partition < 0) {
                rec->value.deadline_ms = 0;
                rec->value.partition   = 0;
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger: negative deadline or partition");
        }
        return 0;
}

int veil_ledger_apply(struct veil_retention *ri, uint16_t purpose,
                      const struct veil_ledger_record *rec, char *errstr,
                      size_t errstr_size)
{
        if (rec->tombstone) {
                (void)veil_retention_remove(ri, purpose, rec->key, rec->key_len,
                                            NULL);
                return 0;
        }
        return veil_retention_set(ri, purpose, rec->key, rec->key_len,
                                  rec->value.deadline_ms, rec->value.partition,
                                  errstr, errstr_size);
}

int veil_ledger_restore(struct veil_retention *ri, const char *const *topics,
                        size_t n_topics, const void *key, size_t key_len,
                        const void *value, size_t value_len, char *errstr,
                        size_t errstr_size)
{
        struct veil_ledger_record rec;
        size_t i;
        int rc;

        rc = veil_ledger_decode(key, key_len, value, value_len, &rec, errstr,
                                errstr_size);
        if (rc)
                return rc;
        /* A handful of purposes: a scan with a length check first beats
         * hashing the name. */
        for (i = 0; i < n_topics && i <= UINT16_MAX; i++)
                if (strlen(topics[i]) == rec.topic_len &&
                    !memcmp(topics[i], rec.topic, rec.topic_len))
                        return veil_ledger_apply(ri, (uint16_t)i, &rec, errstr,
                                                 errstr_size);
        return veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                         "ledger: record of purpose topic '%.*s', which the "
                         "config does not have",
                         (int)rec.topic_len, rec.topic);
}

/* ---- ledger records, version 2
 * ------------------------------------------------------ */

int veil_ledger_key_version(const void *key, size_t key_len)
{
        return key && key_len && ((const unsigned char *)key)[0] == 0 ? 2 : 1;
}

void veil_ledger_id(const struct veil_hmac *k, const char *source,
                    const void *key, size_t key_len,
                    unsigned char id[VEIL_LEDGER_ID_LEN])
{
        unsigned char mac[VEIL_SHA256_LEN], small[512], *msg = small;
        size_t slen = strlen(source), n = slen + 1 + key_len;

        if (n > sizeof(small))
                msg = veil_malloc(n);
        memcpy(msg, source, slen);
        msg[slen] = 0;
        if (key_len)
                memcpy(msg + slen + 1, key, key_len);
        veil_hmac_sha256(k, msg, n, mac);
        /* The source key is personal data. */
        veil_cleanse(msg, n);
        if (msg != small)
                free(msg);
        memcpy(id, mac, VEIL_LEDGER_ID_LEN);
        veil_cleanse(mac, sizeof(mac));
}

size_t veil_ledger_key2_len(size_t source_len)
{
        return 2 + source_len + 1 + VEIL_LEDGER_ID_LEN;
}

int veil_ledger_key2_encode(const char *source,
                            const unsigned char id[VEIL_LEDGER_ID_LEN],
                            unsigned char *out, size_t cap, size_t *outlen,
                            char *errstr, size_t errstr_size)
{
        size_t slen = source ? strlen(source) : 0;

        if (!topic_valid(source, slen))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: source topic is not a valid Kafka "
                                 "topic name");
        if (cap < veil_ledger_key2_len(slen))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: key buffer of %zu bytes, need %zu",
                                 cap, veil_ledger_key2_len(slen));
        out[0] = 0;
        out[1] = VEIL_LEDGER_VERSION2;
        memcpy(out + 2, source, slen);
        out[2 + slen] = 0;
        memcpy(out + 3 + slen, id, VEIL_LEDGER_ID_LEN);
        *outlen = veil_ledger_key2_len(slen);
        return 0;
}

size_t veil_ledger_value2_len(const struct veil_ledger_entry *entries, size_t n)
{
        size_t len = 6, i;

        for (i = 0; i < n; i++)
                len += 1 + entries[i].topic_len + 2 + entries[i].key_len + 16;
        return len;
}

int veil_ledger_value2_encode(int32_t partition,
                              const struct veil_ledger_entry *entries, size_t n,
                              unsigned char *out, size_t cap, size_t *outlen,
                              char *errstr, size_t errstr_size)
{
        size_t i, j, off = 6;

        if (n == 0 || n > VEIL_LEDGER_MAX_ENTRIES)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: %zu entries (1 to %d)", n,
                                 VEIL_LEDGER_MAX_ENTRIES);
        if (partition < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: negative partition");
        for (i = 0; i < n; i++) {
                const struct veil_ledger_entry *e = &entries[i];

                if (!topic_valid(e->topic, e->topic_len))
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "ledger: entry %zu: purpose topic is "
                                         "not a valid Kafka topic name",
                                         i);
                if (e->key_len > VEIL_RETENTION_MAX_KEY ||
                    (!e->key && e->key_len))
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "ledger: entry %zu: key of %zu bytes "
                                         "(at most %u)",
                                         i, e->key_len, VEIL_RETENTION_MAX_KEY);
                if (e->deadline_ms < 0)
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "ledger: entry %zu: negative "
                                         "deadline",
                                         i);
                for (j = 0; j < i; j++)
                        if (entries[j].topic_len == e->topic_len &&
                            !memcmp(entries[j].topic, e->topic, e->topic_len) &&
                            entries[j].key_len == e->key_len &&
                            (!e->key_len ||
                             !memcmp(entries[j].key, e->key, e->key_len)))
                                return veil_errf(errstr, errstr_size,
                                                 VEIL_EINVAL,
                                                 "ledger: entry %zu repeats "
                                                 "entry %zu",
                                                 i, j);
        }
        if (cap < veil_ledger_value2_len(entries, n))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: value buffer of %zu bytes, need %zu",
                                 cap, veil_ledger_value2_len(entries, n));
        out[0] = VEIL_LEDGER_VERSION2;
        put_be32(out + 1, (uint32_t)partition);
        out[5] = (unsigned char)n;
        for (i = 0; i < n; i++) {
                const struct veil_ledger_entry *e = &entries[i];

                out[off++] = (unsigned char)e->topic_len;
                memcpy(out + off, e->topic, e->topic_len);
                off += e->topic_len;
                out[off++] = (unsigned char)(e->key_len >> 8);
                out[off++] = (unsigned char)e->key_len;
                if (e->key_len)
                        memcpy(out + off, e->key, e->key_len);
                off += e->key_len;
                put_be64(out + off, (uint64_t)e->deadline_ms);
                put_be64(out + off + 8, (uint64_t)e->record_ts_ms);
                off += 16;
        }
        *outlen = off;
        return 0;
}

int veil_ledger_decode2(const void *key, size_t key_len, const void *value,
                        size_t value_len, struct veil_ledger_group *g,
                        char *errstr, size_t errstr_size)
{
        const unsigned char *k = key, *v = value;
        size_t slen, off, i, j, n;

        g->source     = NULL;
        g->source_len = 0;
        g->tombstone  = false;
        g->partition  = 0;
        g->n          = 0;
        memset(g->id, 0, sizeof(g->id));
        if (!k || key_len < 2 + 1 + 1 + VEIL_LEDGER_ID_LEN)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: key of %zu bytes is too short",
                                 key_len);
        if (k[0] != 0 || k[1] != VEIL_LEDGER_VERSION2)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: key does not start with 0x00 "
                                 "0x02");
        slen = key_len - 3 - VEIL_LEDGER_ID_LEN;
        if (k[2 + slen] != 0 || !topic_valid((const char *)k + 2, slen))
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: key's source part (%zu bytes) "
                                 "is not a valid topic name",
                                 slen);
        g->source     = (const char *)k + 2;
        g->source_len = slen;
        memcpy(g->id, k + 3 + slen, VEIL_LEDGER_ID_LEN);
        if (!v || !value_len) {
                g->tombstone = true;
                return 0;
        }
        if (value_len < 6)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: value of %zu bytes is too short",
                                 value_len);
        if (v[0] != VEIL_LEDGER_VERSION2)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: value format version %u (want "
                                 "%d)",
                                 v[0], VEIL_LEDGER_VERSION2);
        g->partition = (int32_t)get_be32(v + 1);
        n            = v[5];
        if (g->partition < 0 || n == 0) {
                g->partition = 0;
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: %s",
                                 n ? "negative partition" : "no entries");
        }
        off = 6;
        for (i = 0; i < n; i++) {
                struct veil_ledger_entry *e = &g->entries[i];
                size_t tl, kl;

                if (value_len - off < 1)
                        goto short_value;
                tl = v[off++];
                if (value_len - off < tl + 2)
                        goto short_value;
                if (!topic_valid((const char *)v + off, tl))
                        goto bad;
                e->topic     = (const char *)v + off;
                e->topic_len = tl;
                off += tl;
                kl = (size_t)v[off] << 8 | v[off + 1];
                off += 2;
                if (value_len - off < kl + 16)
                        goto short_value;
                e->key     = v + off;
                e->key_len = kl;
                off += kl;
                e->deadline_ms  = (int64_t)get_be64(v + off);
                e->record_ts_ms = (int64_t)get_be64(v + off + 8);
                off += 16;
                if (e->deadline_ms < 0) {
                        g->n = 0;
                        return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                         "ledger v2: entry %zu: negative "
                                         "deadline",
                                         i);
                }
                for (j = 0; j < i; j++)
                        if (g->entries[j].topic_len == tl &&
                            !memcmp(g->entries[j].topic, e->topic, tl) &&
                            g->entries[j].key_len == kl &&
                            (!kl || !memcmp(g->entries[j].key, e->key, kl))) {
                                g->n = 0;
                                return veil_errf(errstr, errstr_size,
                                                 VEIL_EDATA,
                                                 "ledger v2: entry %zu "
                                                 "repeats entry %zu",
                                                 i, j);
                        }
                g->n = i + 1;
        }
        if (off != value_len) {
                g->n = 0;
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "ledger v2: %zu byte(s) after entry %zu",
                                 value_len - off, n - 1);
        }
        return 0;
short_value:
        g->n = 0;
        return veil_errf(errstr, errstr_size, VEIL_EDATA,
                         "ledger v2: value ends inside entry %zu (at byte "
                         "%zu)",
                         i, off);
bad:
        g->n = 0;
        return veil_errf(errstr, errstr_size, VEIL_EDATA,
                         "ledger v2: entry %zu (at byte %zu): topic is not a "
                         "valid topic name",
                         i, off);
}

/* ---- write coalescing
 * -------------------------------------------------------- */

struct lb_pending {
        size_t key_off;
        size_t val_off; /* into vals */
        uint32_t key_len;
        uint32_t val_len;
        uint32_t hash;
        int32_t partition;
        bool tombstone;
};

struct veil_ledger_batch {
        struct lb_pending *p;
        size_t n, cap, puts;
        uint32_t *slots; /* entry number + 1; 0 empty */
        size_t mask;
        unsigned char *keys;
        size_t keys_len, keys_cap;
        /* values; a coalesced put leaves its predecessor's bytes dead */
        unsigned char *vals;
        size_t vals_len, vals_cap;
        uint64_t seed;
};

struct veil_ledger_batch *veil_ledger_batch_new(void)
{
        struct veil_ledger_batch *b = veil_calloc(1, sizeof(*b));

        b->cap      = 64;
        b->p        = veil_malloc(b->cap * sizeof(*b->p));
        b->mask     = 127;
        b->slots    = veil_calloc(b->mask + 1, sizeof(*b->slots));
        b->keys_cap = 4096;
        b->keys     = veil_malloc(b->keys_cap);
        b->seed     = veil_retention_seed();
        return b;
}

void veil_ledger_batch_destroy(struct veil_ledger_batch *b)
{
        if (!b)
                return;
        veil_ledger_batch_clear(b);
        free(b->vals);
        free(b->keys);
        free(b->slots);
        free(b->p);
        free(b);
}

size_t veil_ledger_batch_count(const struct veil_ledger_batch *b)
{
        return b->n;
}

size_t veil_ledger_batch_puts(const struct veil_ledger_batch *b)
{
        return b->puts;
}

void veil_ledger_batch_get(const struct veil_ledger_batch *b, size_t i,
                           struct veil_ledger_pending *out)
{
        const struct lb_pending *p = &b->p[i];

        out->key       = b->keys + p->key_off;
        out->key_len   = p->key_len;
        out->value     = p->tombstone ? NULL : b->vals + p->val_off;
        out->value_len = p->tombstone ? 0 : p->val_len;
        out->partition = p->partition;
}

void veil_ledger_batch_clear(struct veil_ledger_batch *b)
{
        /* A batch that once held many keys keeps its table; clearing it is
         * a memset per transaction, cheap next to the transaction. */
        memset(b->slots, 0, (b->mask + 1) * sizeof(*b->slots));
        if (b->keys_len)
                memset(b->keys, 0, b->keys_len);
        b->keys_len = 0;
        if (b->vals_len)
                memset(b->vals, 0, b->vals_len);
        b->vals_len = 0;
        b->n        = 0;
        b->puts     = 0;
}

static void lb_grow_table(struct veil_ledger_batch *b)
{
        size_t nslots = (b->mask + 1) * 2, i, x;

        free(b->slots);
        b->slots = veil_calloc(nslots, sizeof(*b->slots));
        b->mask  = nslots - 1;
        for (x = 0; x < b->n; x++) {
                i = b->p[x].hash & b->mask;
                while (b->slots[i])
                        i = (i + 1) & b->mask;
                b->slots[i] = (uint32_t)x + 1;
        }
}

/* Puts the key at the end of the key arena (klen bytes, already written
 * there by the caller) with its value. */
static int lb_put(struct veil_ledger_batch *b, size_t klen, int32_t partition,
                  const void *value, size_t value_len)
{
        struct lb_pending *p;
        uint64_t h64;
        uint32_t h, s;
        size_t i;

        if (value) {
                if (b->vals_len + value_len > b->vals_cap) {
                        if (!b->vals_cap)
                                b->vals_cap = 4096;
                        while (b->vals_len + value_len > b->vals_cap)
                                b->vals_cap *= 2;
                        b->vals = veil_realloc(b->vals, b->vals_cap);
                }
        }
        if ((b->n + 1) * 4 > (b->mask + 1) * 3)
                lb_grow_table(b);
        h64 = veil_retention_hash(b->seed, b->keys + b->keys_len, klen);
        h   = (uint32_t)(h64 ^ (h64 >> 32));
        b->puts++;
        for (i = h & b->mask; (s = b->slots[i]) != 0; i = (i + 1) & b->mask) {
                p = &b->p[s - 1];
                if (p->hash == h && p->key_len == klen &&
                    !memcmp(b->keys + p->key_off, b->keys + b->keys_len,
                            klen)) {
                        memset(b->keys + b->keys_len, 0, klen);
                        goto fill;
                }
        }
        if (b->n == b->cap) {
                b->cap *= 2;
                b->p = veil_realloc(b->p, b->cap * sizeof(*b->p));
        }
        b->slots[i] = (uint32_t)b->n + 1;
        p           = &b->p[b->n++];
        p->key_off  = b->keys_len;
        p->key_len  = (uint32_t)klen;
        p->hash     = h;
        b->keys_len += klen;
fill:
        p->partition = partition;
        p->tombstone = value == NULL;
        p->val_off   = b->vals_len;
        p->val_len   = value ? (uint32_t)value_len : 0;
        if (value) {
                memcpy(b->vals + b->vals_len, value, value_len);
                b->vals_len += value_len;
        }
        return 0;
}

static void lb_reserve_key(struct veil_ledger_batch *b, size_t need)
{
        if (b->keys_len + need > b->keys_cap) {
                while (b->keys_len + need > b->keys_cap)
                        b->keys_cap *= 2;
                b->keys = veil_realloc(b->keys, b->keys_cap);
        }
}

int veil_ledger_batch_put(struct veil_ledger_batch *b, const char *topic,
                          const void *key, size_t key_len, int32_t partition,
                          const struct veil_ledger_value *value, char *errstr,
                          size_t errstr_size)
{
        unsigned char val[VEIL_LEDGER_VALUE_LEN];
        size_t klen;
        int rc;

        if (partition < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: negative partition %d",
                                 (int)partition);
        if (value) {
                rc = veil_ledger_value_encode(value, val, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        /* Encode the ledger key at the end of the key arena; it becomes
         * the pending record's key unless the key is already pending. */
        lb_reserve_key(b,
                       veil_ledger_key_len(topic ? strlen(topic) : 0, key_len));
        rc = veil_ledger_key_encode(topic, key, key_len, b->keys + b->keys_len,
                                    b->keys_cap - b->keys_len, &klen, errstr,
                                    errstr_size);
        if (rc)
                return rc;
        return lb_put(b, klen, partition, value ? val : NULL, sizeof(val));
}

int veil_ledger_batch_put2(struct veil_ledger_batch *b, const void *key,
                           size_t key_len, int32_t partition, const void *value,
                           size_t value_len, char *errstr, size_t errstr_size)
{
        if (partition < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: negative partition %d",
                                 (int)partition);
        if (!key || !key_len || (value && !value_len) || value_len > UINT32_MAX)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "ledger: empty key or value");
        lb_reserve_key(b, key_len);
        memcpy(b->keys + b->keys_len, key, key_len);
        return lb_put(b, key_len, partition, value, value_len);
}

/* ---- erasure requests
 * ---------------------------------------------------------- */

#define ERASURE_INFO_ID "veil:erasure:id"
#define ERASURE_INFO_SEAL "veil:erasure:seal"
#define ERASURE_INFO_MAC "veil:erasure:mac"
#define ERASURE_MAC_LABEL "veil-erasure-v2"

static bool key_id_valid(const char *id, size_t len)
{
        size_t i;

        if (!len || len > VEIL_TX_KEY_ID_MAX)
                return false;
        for (i = 0; i < len; i++) {
                unsigned char c = (unsigned char)id[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                      c == '-'))
                        return false;
        }
        return true;
}

int veil_erasure_keys_init(struct veil_erasure_keys *ek,
                           const unsigned char *master, size_t master_len,
                           const char *key_id, char *errstr, size_t errstr_size)
{
        size_t idlen = key_id ? strlen(key_id) : 0;
        int rc;

        memset(ek, 0, sizeof(*ek));
        if (!key_id_valid(key_id, idlen))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "erasure: key id must be 1-%d of "
                                 "[A-Za-z0-9._-]",
                                 VEIL_TX_KEY_ID_MAX);
        if (!master || master_len < 32)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "erasure: master key of %zu bytes (need at "
                                 "least 32)",
                                 master ? master_len : 0);
        memcpy(ek->key_id, key_id, idlen + 1);
        ek->key_id_len = idlen;

        rc = veil_hmac_init_derived(&ek->id, master, master_len,
                                    ERASURE_INFO_ID, errstr, errstr_size);
        if (rc)
                goto err;
        rc = veil_hmac_init_derived(&ek->mac, master, master_len,
                                    ERASURE_INFO_MAC, errstr, errstr_size);
        if (rc)
                goto err;
        rc = veil_aead_init_derived(&ek->seal, VEIL_AEAD_GCM, master,
                                    master_len, ERASURE_INFO_SEAL, errstr,
                                    errstr_size);
        if (rc)
                goto err;
        return 0;
err:
        veil_hmac_cleanse(&ek->id);
        veil_hmac_cleanse(&ek->mac);
        memset(ek, 0, sizeof(*ek));
        return rc;
}

int veil_erasure_keys_init_config(struct veil_erasure_keys *ek,
                                  const struct veil_config *config,
                                  char *errstr, size_t errstr_size)
{
        int rc;

        rc = veil_erasure_keys_init(ek, config->keys.key, config->keys.key_len,
                                    config->keys.key_id, errstr, errstr_size);
        if (rc)
                return rc;
        ek->allow_plaintext = config->erasure.allow_plaintext;
        ek->config          = config;
        return 0;
}

/* The request's MAC, "<key_id>:" + base64url, NUL-terminated into out
 * (cap ≥ VEIL_ERASURE_KEY_HASH_MAX + 1). */
static void erasure_mac(const struct veil_erasure_keys *ek,
                        const char *request_id, int64_t requested_at_ms,
                        const char *key_field, size_t key_field_len, char *out,
                        size_t cap)
{
        unsigned char mac[VEIL_SHA256_LEN];
        size_t head, total, n;
        char *msg;

        head  = strlen(ERASURE_MAC_LABEL) + strlen(request_id) + 24;
        total = head + key_field_len;
        msg   = veil_malloc(total + 1);
        n     = (size_t)snprintf(msg, head, "%s\n%s\n%" PRId64 "\n",
                                 ERASURE_MAC_LABEL, request_id, requested_at_ms);
        memcpy(msg + n, key_field, key_field_len);
        veil_hmac_sha256(&ek->mac, msg, n + key_field_len, mac);
        veil_cleanse(msg, n + key_field_len);
        free(msg);
        memcpy(out, ek->key_id, ek->key_id_len);
        out[ek->key_id_len] = ':';
        veil_b64url_encode(mac, sizeof(mac), out + ek->key_id_len + 1,
                           cap - ek->key_id_len - 2, &n);
        out[ek->key_id_len + 1 + n] = 0;
}

void veil_erasure_keys_destroy(struct veil_erasure_keys *ek)
{
        if (!ek)
                return;
        veil_hmac_cleanse(&ek->id);
        veil_hmac_cleanse(&ek->mac);
        veil_aead_destroy(&ek->seal);
        memset(ek, 0, sizeof(*ek));
}

int veil_erasure_key_hash(const struct veil_erasure_keys *ek, const void *key,
                          size_t key_len, char *out, size_t cap)
{
        unsigned char mac[VEIL_SHA256_LEN];
        size_t n;

        if (cap < ek->key_id_len + 1 + VEIL_B64URL_LEN(sizeof(mac)) + 1)
                return VEIL_EINVAL;
        veil_hmac_sha256(&ek->id, key, key_len, mac);
        memcpy(out, ek->key_id, ek->key_id_len);
        out[ek->key_id_len] = ':';
        if (veil_b64url_encode(mac, sizeof(mac), out + ek->key_id_len + 1,
                               cap - ek->key_id_len - 1, &n))
                return VEIL_EINVAL;
        out[ek->key_id_len + 1 + n] = 0;
        return 0;
}

int veil_erasure_request_id(char out[37], char *errstr, size_t errstr_size)
{
        static const char hex[] = "0123456789abcdef";
        unsigned char r[16];
        size_t i, o = 0;

        if (RAND_bytes(r, sizeof(r)) != 1)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "erasure: RAND_bytes failed");
        r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
        r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
        for (i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                out[o++] = hex[r[i] >> 4];
                out[o++] = hex[r[i] & 15];
        }
        out[o] = 0;
        return 0;
}

static bool request_id_valid(const char *s)
{
        size_t i, n = strlen(s);

        if (!n || n > VEIL_ERASURE_REQUEST_ID_MAX)
                return false;
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                      c == '.' || c == ':'))
                        return false;
        }
        return true;
}

int veil_erasure_request_encode(struct veil_erasure_keys *ek, const void *key,
                                size_t key_len, int64_t requested_at_ms,
                                const char *request_id, char **json,
                                size_t *json_len, char *errstr,
                                size_t errstr_size)
{
        unsigned char *sealed = NULL;
        char *tok = NULL, *s = NULL, mac[VEIL_ERASURE_KEY_HASH_MAX + 1];
        size_t slen, cap, tlen, n;
        json_t *obj = NULL;
        int rc      = VEIL_EINVAL;

        *json = NULL;
        if (!key || !key_len || key_len > VEIL_RETENTION_MAX_KEY)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "erasure: key of %zu bytes (1-%u)", key_len,
                                 VEIL_RETENTION_MAX_KEY);
        if (!request_id || !request_id_valid(request_id))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "erasure: request id must be 1-%d of "
                                 "[A-Za-z0-9._:-]",
                                 VEIL_ERASURE_REQUEST_ID_MAX);
        if (requested_at_ms < 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "erasure: negative requested_at");
        cap    = key_len + VEIL_AEAD_OVERHEAD;
        sealed = veil_malloc(cap);
        if (veil_aead_seal(&ek->seal, key, key_len, sealed, cap, &slen)) {
                rc = veil_errf(errstr, errstr_size, VEIL_EIO,
                               "erasure: sealing the key failed");
                goto out;
        }
        tlen = ek->key_id_len + 3 + VEIL_B64URL_LEN(slen);
        tok  = veil_malloc(tlen + 1);
        memcpy(tok, ek->key_id, ek->key_id_len);
        memcpy(tok + ek->key_id_len, ":g:", 3);
        if (veil_b64url_encode(sealed, slen, tok + ek->key_id_len + 3,
                               tlen - ek->key_id_len - 3, &n)) {
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "erasure: encoding the sealed key failed");
                goto out;
        }
        tok[ek->key_id_len + 3 + n] = 0;
        erasure_mac(ek, request_id, requested_at_ms, tok, strlen(tok), mac,
                    sizeof(mac));
        obj = json_pack("{s:i, s:s, s:I, s:s, s:s}", "v", 2, "key_sealed", tok,
                        "requested_at", (json_int_t)requested_at_ms,
                        "request_id", request_id, "mac", mac);
        if (!obj) {
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "erasure: building the request failed");
                goto out;
        }
        s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s) {
                rc = veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                               "erasure: serializing the request failed");
                goto out;
        }
        *json     = s;
        *json_len = strlen(s);
        rc        = 0;
out:
        json_decref(obj);
        if (tok)
                veil_cleanse(tok, strlen(tok));
        free(tok);
        veil_cleanse(sealed, cap);
        free(sealed);
        return rc;
}

void veil_erasure_request_clear(struct veil_erasure_request *req)
{
        if (!req)
                return;
        if (req->key)
                veil_cleanse(req->key, req->key_len);
        free(req->key);
        memset(req, 0, sizeof(*req));
}

/* Opens "<key_id>:g:<b64url>" into a fresh buffer. */
static int erasure_unseal(struct veil_erasure_keys *ek, const char *tok,
                          size_t len, struct veil_erasure_request *req,
                          char *errstr, size_t errstr_size)
{
        const char *c      = memchr(tok, ':', len);
        unsigned char *raw = NULL;
        size_t idlen, blen, rlen, plen;
        int rc;

        if (!c || (size_t)(c - tok) + 3 > len || memcmp(c, ":g:", 3))
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "erasure: key_sealed is not KEYID:g:…");
        idlen = (size_t)(c - tok);
        if (!key_id_valid(tok, idlen))
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "erasure: key_sealed has a malformed key "
                                 "id");
        if (idlen != ek->key_id_len || memcmp(tok, ek->key_id, idlen))
                return veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                 "erasure: key_sealed is sealed under key id "
                                 "'%.*s', this keyring has '%s'",
                                 (int)idlen, tok, ek->key_id);
        blen = len - idlen - 3;
        raw  = veil_malloc(blen ? blen : 1);
        if (veil_b64url_decode(c + 3, blen, raw, blen, &rlen)) {
                free(raw);
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "erasure: key_sealed is not base64url");
        }
        rc = veil_aead_open(&ek->seal, raw, rlen, raw, rlen, &plen);
        if (rc || !plen || plen > VEIL_RETENTION_MAX_KEY) {
                veil_cleanse(raw, rlen);
                free(raw);
                if (rc == VEIL_EIO)
                        return veil_errf(errstr, errstr_size, VEIL_EIO,
                                         "erasure: opening key_sealed "
                                         "failed (OpenSSL)");
                return veil_errf(errstr, errstr_size,
                                 rc ? VEIL_EAUTH : VEIL_EDATA,
                                 rc ? "erasure: key_sealed does not "
                                      "authenticate (tampered, or another "
                                      "master key)"
                                    : "erasure: sealed key is empty or too "
                                      "long");
        }
        req->key     = raw;
        req->key_len = plen;
        req->sealed  = true;
        return 0;
}

/* The key id a request's key_sealed names, or NULL. */
static const char *sealed_key_id(json_t *doc, size_t *len)
{
        json_t *ks = json_object_get(doc, "key_sealed");
        const char *s, *c;

        if (!json_is_string(ks))
                return NULL;
        s = json_string_value(ks);
        c = strchr(s, ':');
        if (!c)
                return NULL;
        *len = (size_t)(c - s);
        return s;
}

static int decode_with(struct veil_erasure_keys *ek, json_t *doc,
                       struct veil_erasure_request *req, char *errstr,
                       size_t errstr_size);

int veil_erasure_request_decode(struct veil_erasure_keys *ek, const void *value,
                                size_t value_len,
                                struct veil_erasure_request *req, char *errstr,
                                size_t errstr_size)
{
        struct veil_erasure_keys older;
        const struct veil_key *key;
        const char *kid;
        size_t kid_len = 0;
        json_t *doc, *k;
        json_error_t jerr;
        int rc;

        memset(req, 0, sizeof(*req));
        if (!value || !value_len || value_len > VEIL_ERASURE_VALUE_MAX)
                return veil_errf(errstr, errstr_size, VEIL_EDATA,
                                 "erasure: request value of %zu bytes "
                                 "(1-%u)",
                                 value_len, VEIL_ERASURE_VALUE_MAX);
        /* JSON_REJECT_DUPLICATES: two "key"s could make two readers act on
         * different subjects. */
        doc = json_loadb(value, value_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc || !json_is_object(doc)) {
                rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                               "erasure: request is not a JSON object%s",
                               doc ? "" : " (does not parse)");
                json_decref(doc);
                return rc;
        }
        kid = sealed_key_id(doc, &kid_len);
        /* Sealed under an older key of the ring: that key's erasure keys,
         * for this one request (erasures are rare). */
        if (kid && ek->config &&
            (kid_len != ek->key_id_len || memcmp(kid, ek->key_id, kid_len)) &&
            (key = veil_keyring_find(ek->config, kid, kid_len)) && key->key) {
                rc = veil_erasure_keys_init(&older, key->key, key->len, key->id,
                                            errstr, errstr_size);
                if (!rc) {
                        older.allow_plaintext = ek->allow_plaintext;
                        rc = decode_with(&older, doc, req, errstr, errstr_size);
                        veil_erasure_keys_destroy(&older);
                }
        } else {
                rc = decode_with(ek, doc, req, errstr, errstr_size);
        }
        /* jansson keeps its own copy of a key in clear: wipe it. */
        if ((k = json_object_get(doc, "key")) && json_is_string(k))
                veil_cleanse((void *)json_string_value(k),
                             json_string_length(k));
        json_decref(doc);
        if (rc)
                veil_erasure_request_clear(req);
        return rc;
}

static int decode_with(struct veil_erasure_keys *ek, json_t *doc,
                       struct veil_erasure_request *req, char *errstr,
                       size_t errstr_size)
{
        char want[VEIL_ERASURE_KEY_HASH_MAX + 1];
        json_t *v, *k, *ks, *at, *id, *mac;
        const char *kid;
        size_t kid_len     = 0;
        json_int_t version = 1;
        int rc             = VEIL_EDATA;

        v = json_object_get(doc, "v");
        if (v && json_is_integer(v))
                version = json_integer_value(v);
        if (v && (!json_is_integer(v) || version < 1 || version > 2)) {
                rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                               "erasure: unknown request format version");
                goto err;
        }
        k   = json_object_get(doc, "key");
        ks  = json_object_get(doc, "key_sealed");
        at  = json_object_get(doc, "requested_at");
        id  = json_object_get(doc, "request_id");
        mac = json_object_get(doc, "mac");
        if (!k == !ks) {
                rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                               "erasure: request needs exactly one of "
                               "'key' and 'key_sealed'");
                goto err;
        }
        if (!at || !json_is_integer(at) || json_integer_value(at) < 0) {
                rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                               "erasure: 'requested_at' must be a "
                               "non-negative integer (ms)");
                goto err;
        }
        if (!id || !json_is_string(id) ||
            !request_id_valid(json_string_value(id))) {
                rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                               "erasure: 'request_id' must be 1-%d of "
                               "[A-Za-z0-9._:-]",
                               VEIL_ERASURE_REQUEST_ID_MAX);
                goto err;
        }
        req->requested_at_ms = json_integer_value(at);
        snprintf(req->request_id, sizeof(req->request_id), "%s",
                 json_string_value(id));
        if (k && !ek->allow_plaintext) {
                rc = veil_errf(errstr, errstr_size, VEIL_EAUTH,
                               "erasure: a request with the key in clear "
                               "('key') is not authenticated and is refused "
                               "(erasure.allow_plaintext is false); send it "
                               "with `veil erase`");
                goto err;
        }
        if (ks) {
                if (!json_is_string(ks)) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                                       "erasure: 'key_sealed' must be a "
                                       "string");
                        goto err;
                }
                kid = sealed_key_id(doc, &kid_len);
                if (kid && veil_key_id_valid(kid, kid_len) &&
                    (kid_len != ek->key_id_len ||
                     memcmp(kid, ek->key_id, kid_len))) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                       "erasure: key_sealed is sealed under "
                                       "key id '%.*s', which this keyring "
                                       "does not hold (active: '%s')",
                                       (int)kid_len, kid, ek->key_id);
                        goto err;
                }
                /* The MAC first: an unauthenticated request is never
                 * opened. */
                if (!mac || !json_is_string(mac)) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                       "erasure: the request carries no "
                                       "'mac' (format v%d; requests must be "
                                       "made by `veil erase` with the "
                                       "master key)",
                                       (int)version);
                        goto err;
                }
                erasure_mac(ek, req->request_id, req->requested_at_ms,
                            json_string_value(ks), json_string_length(ks), want,
                            sizeof(want));
                if (json_string_length(mac) != strlen(want) ||
                    CRYPTO_memcmp(json_string_value(mac), want, strlen(want))) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EAUTH,
                                       "erasure: the request's 'mac' does "
                                       "not authenticate (forged or "
                                       "altered, or made with another "
                                       "master key)");
                        goto err;
                }
                rc = erasure_unseal(ek, json_string_value(ks),
                                    json_string_length(ks), req, errstr,
                                    errstr_size);
                if (rc)
                        goto err;
        } else {
                if (!json_is_string(k) || !json_string_length(k) ||
                    json_string_length(k) > VEIL_RETENTION_MAX_KEY) {
                        rc = veil_errf(errstr, errstr_size, VEIL_EDATA,
                                       "erasure: 'key' must be a string of "
                                       "1-%u bytes",
                                       VEIL_RETENTION_MAX_KEY);
                        goto err;
                }
                req->key_len = json_string_length(k);
                req->key     = veil_malloc(req->key_len);
                memcpy(req->key, json_string_value(k), req->key_len);
        }
        return 0;
err:
        veil_erasure_request_clear(req);
        return rc;
}
