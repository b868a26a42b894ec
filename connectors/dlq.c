/* dlq.c - the dead letter's one codec: built and sealed by the worker,
 * opened and checked by `veil dlq replay` (format in dlq.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "dlq.h"
#include "keyring.h"
#include "util.h"
#include "wire.h"
#include "veil.h"

#define BINDING_TAG "veil-dlq-2"

/* The sealing key of an older ring key, derived when a letter needs it. */
struct old_key {
        char id[64];
        struct veil_aead aead;
        struct old_key *next;
};

struct veil_dlq {
        const struct veil_config *config;
        struct old_key *old; /* other ring keys' DLQ keys, made on use */
        bool encrypted;      /* the config's dlq.payload */
        bool keyed;
        struct veil_aead aead;
        struct veil_buf plain; /* binding + payload, before sealing */
        struct veil_buf key, value;
};

struct veil_dlq *veil_dlq_new(const struct veil_config *config, char *errstr,
                              size_t errstr_size)
{
        struct veil_dlq *d = veil_calloc(1, sizeof(*d));

        d->config    = config;
        d->encrypted = config->dlq_payload == VEIL_DLQ_ENCRYPTED;
        veil_buf_init(&d->plain, 0);
        veil_buf_init(&d->key, 0);
        veil_buf_init(&d->value, 0);
        /* Raw DLQs still need the key to open letters written while the
         * config said encrypted; without a key only raw letters work. */
        if (config->keys.key) {
                if (veil_aead_init_derived(&d->aead, VEIL_AEAD_GCM,
                                           config->keys.key,
                                           config->keys.key_len, "veil:dlq",
                                           errstr, errstr_size))
                        goto err;
                d->keyed = true;
        } else if (d->encrypted) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "dlq: payload encrypted but no master key loaded");
                goto err;
        }
        return d;
err:
        veil_dlq_destroy(d);
        return NULL;
}

void veil_dlq_destroy(struct veil_dlq *d)
{
        if (!d)
                return;
        if (d->keyed)
                veil_aead_destroy(&d->aead);
        while (d->old) {
                struct old_key *o = d->old;

                d->old = o->next;
                veil_aead_destroy(&o->aead);
                free(o);
        }
        veil_cleanse(d->plain.data, d->plain.cap);
        veil_cleanse(d->key.data, d->key.cap);
        veil_cleanse(d->value.data, d->value.cap);
        veil_buf_free(&d->plain);
        veil_buf_free(&d->key);
        veil_buf_free(&d->value);
        free(d);
}

/* The binding of one part: what a sealed payload must agree with. */
static bool binding_put(struct veil_buf *b, const struct veil_dlq_letter *l,
                        const char *part)
{
        const char *f[] = {BINDING_TAG, l->source, l->code, l->key_id};
        size_t i;

        for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
                if (!veil_buf_append(b, f[i], strlen(f[i]) + 1))
                        return false;
        /* A letter of one purpose names it before the part ("purpose:"
         * keeps it from passing for a part name), so that it can be
         * neither stripped nor added; older letters open as they were
         * sealed. */
        if (l->purpose[0] &&
            (!veil_buf_append(b, "purpose:", 8) ||
             !veil_buf_append(b, l->purpose, strlen(l->purpose) + 1)))
                return false;
        return veil_buf_append(b, part, strlen(part) + 1);
}

static int seal(struct veil_dlq *d, const struct veil_dlq_letter *l,
                const char *part, const void *in, size_t len,
                struct veil_buf *out)
{
        size_t n = 0;

        d->plain.len = 0;
        if (!binding_put(&d->plain, l, part) ||
            (len && !veil_buf_append(&d->plain, in, len)))
                return VEIL_ENOMEM;
        out->len = 0;
        if (!veil_buf_reserve(out, d->plain.len + VEIL_AEAD_OVERHEAD))
                return VEIL_ENOMEM;
        if (veil_aead_seal(&d->aead, d->plain.data, d->plain.len, out->data,
                           out->cap, &n))
                return VEIL_EIO;
        out->len = n;
        veil_cleanse(d->plain.data, d->plain.len);
        return 0;
}

static void hdr(rd_kafka_headers_t *hdrs, const char *name, const char *value)
{
        rd_kafka_header_add(hdrs, name, -1, value, -1);
}

int veil_dlq_build(struct veil_dlq *d, const struct veil_dlq_letter *letter,
                   rd_kafka_headers_t **hdrsp, const void **key,
                   size_t *key_len, const void **value, size_t *value_len,
                   char *errstr, size_t errstr_size)
{
        struct veil_dlq_letter l = *letter;
        rd_kafka_headers_t *hdrs;

        *hdrsp     = NULL;
        *key       = letter->key;
        *key_len   = letter->key ? letter->key_len : 0;
        *value     = letter->value;
        *value_len = letter->value ? letter->value_len : 0;
        snprintf(l.key_id, sizeof(l.key_id), "%s",
                 d->encrypted && d->config->keys.key_id ? d->config->keys.key_id
                                                        : "");
        hdrs = rd_kafka_headers_new(10);
        hdr(hdrs, VEIL_H_ERROR, l.code);
        hdr(hdrs, VEIL_H_ERROR_DETAIL, l.detail);
        hdr(hdrs, VEIL_H_SOURCE, l.source);
        hdr(hdrs, VEIL_H_POLICY, l.policy);
        if (l.replay_of[0])
                hdr(hdrs, VEIL_H_REPLAY_OF, l.replay_of);
        if (l.purpose[0])
                hdr(hdrs, VEIL_H_PURPOSE, l.purpose);
        if (!d->encrypted) {
                hdr(hdrs, VEIL_H_DLQ_PAYLOAD, VEIL_DLQ_PAYLOAD_RAW);
                *hdrsp = hdrs;
                return 0;
        }
        /* A failure path must not leak plaintext. */
        hdr(hdrs, VEIL_H_DLQ_PAYLOAD, VEIL_DLQ_PAYLOAD_ENCRYPTED);
        hdr(hdrs, VEIL_H_DLQ_CIPHER, VEIL_DLQ_CIPHER_GCM_BOUND);
        hdr(hdrs, VEIL_H_KEY_ID, l.key_id);
        if ((letter->key &&
             seal(d, &l, "key", letter->key, letter->key_len, &d->key)) ||
            (letter->value && seal(d, &l, "value", letter->value,
                                   letter->value_len, &d->value))) {
                rd_kafka_headers_destroy(hdrs);
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "dlq: sealing the payload of %s failed",
                                 l.source);
        }
        if (letter->key) {
                *key     = d->key.data;
                *key_len = d->key.len;
        }
        if (letter->value) {
                *value     = d->value.data;
                *value_len = d->value.len;
        }
        *hdrsp = hdrs;
        return 0;
}

/* The last header `name` as a NUL-terminated string of at most size-1
 * bytes. false when absent, too long or holding a NUL. */
static bool hget(const rd_kafka_headers_t *hdrs, const char *name, char *buf,
                 size_t size)
{
        const void *v = NULL;
        size_t len    = 0;

        if (!hdrs || rd_kafka_header_get_last(hdrs, name, &v, &len) !=
                             RD_KAFKA_RESP_ERR_NO_ERROR)
                return false;
        if (!v)
                len = 0;
        if (len >= size || (len && memchr(v, '\0', len)))
                return false;
        if (len)
                memcpy(buf, v, len);
        buf[len] = '\0';
        return true;
}

/* The DLQ key a letter names: the active key's, or an older ring key's
 * (rotation never strands a dead letter). NULL when the ring has no such
 * loaded key. */
static struct veil_aead *aead_for(struct veil_dlq *d, const char *id)
{
        const struct veil_key *k;
        struct old_key *o;
        char err[256];

        if (d->keyed && d->config->keys.key_id &&
            !strcmp(id, d->config->keys.key_id))
                return &d->aead;
        for (o = d->old; o; o = o->next)
                if (!strcmp(o->id, id))
                        return &o->aead;
        k = veil_keyring_find(d->config, id, strlen(id));
        if (!k || !k->key || strlen(id) >= sizeof(o->id))
                return NULL;
        o = veil_calloc(1, sizeof(*o));
        if (veil_aead_init_derived(&o->aead, VEIL_AEAD_GCM, k->key, k->len,
                                   "veil:dlq", err, sizeof(err))) {
                free(o);
                return NULL;
        }
        snprintf(o->id, sizeof(o->id), "%s", id);
        o->next = d->old;
        d->old  = o;
        return &o->aead;
}

/* Opens one sealed part and checks its binding; the payload after it goes
 * to out->data. */
static int unseal(struct veil_dlq *d, struct veil_aead *aead,
                  const struct veil_dlq_letter *l, const char *part,
                  const void *in, size_t len, struct veil_buf *out)
{
        size_t n = 0, blen;

        out->len = 0;
        if (len > VEIL_AEAD_MAX_LEN + VEIL_AEAD_OVERHEAD)
                return VEIL_EINVAL;
        if (!veil_buf_reserve(out, len + 1))
                return VEIL_ENOMEM;
        if (veil_aead_open(aead, in, len, out->data, out->cap, &n))
                return VEIL_EAUTH;
        out->len = n;
        if (!l->bound)
                return 0;
        d->plain.len = 0;
        if (!binding_put(&d->plain, l, part))
                return VEIL_ENOMEM;
        blen = d->plain.len;
        if (n < blen || memcmp(out->data, d->plain.data, blen)) {
                veil_cleanse(out->data, n);
                out->len = 0;
                return VEIL_EAUTH;
        }
        memmove(out->data, out->data + blen, n - blen);
        out->len = n - blen;
        return 0;
}

int veil_dlq_open(struct veil_dlq *d, const rd_kafka_headers_t *hdrs,
                  const void *key, size_t key_len, const void *value,
                  size_t value_len, struct veil_dlq_letter *out, char *errstr,
                  size_t errstr_size)
{
        char payload[32], cipher[32];
        struct veil_aead *aead;
        const void *hv;
        size_t hl;
        int rc;

        memset(out, 0, sizeof(*out));
        if (hdrs && rd_kafka_header_get_last(hdrs, VEIL_H_REPLAY_DONE, &hv,
                                             &hl) == RD_KAFKA_RESP_ERR_NO_ERROR)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "a replay marker, not a dead letter");
        if (!hget(hdrs, VEIL_H_ERROR, out->code, sizeof(out->code)) ||
            !out->code[0])
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "no usable %s header: not a dead letter",
                                 VEIL_H_ERROR);
        if (!hget(hdrs, VEIL_H_SOURCE, out->source, sizeof(out->source)))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "no usable %s header", VEIL_H_SOURCE);
        if (!hget(hdrs, VEIL_H_ERROR_DETAIL, out->detail, sizeof(out->detail)))
                out->detail[0] = '\0';
        if (!hget(hdrs, VEIL_H_POLICY, out->policy, sizeof(out->policy)))
                out->policy[0] = '\0';
        if (!hget(hdrs, VEIL_H_REPLAY_OF, out->replay_of,
                  sizeof(out->replay_of)))
                out->replay_of[0] = '\0';
        if (!hget(hdrs, VEIL_H_PURPOSE, out->purpose, sizeof(out->purpose)))
                out->purpose[0] = '\0';
        if (!hget(hdrs, VEIL_H_DLQ_PAYLOAD, payload, sizeof(payload)))
                snprintf(payload, sizeof(payload), "%s", VEIL_DLQ_PAYLOAD_RAW);
        out->key       = key;
        out->key_len   = key ? key_len : 0;
        out->value     = value;
        out->value_len = value ? value_len : 0;
        if (!strcmp(payload, VEIL_DLQ_PAYLOAD_RAW)) {
                if (d->encrypted)
                        return veil_errf(
                                errstr, errstr_size, VEIL_ECONFIG,
                                "a raw payload in a DLQ this config keeps "
                                "encrypted: not written by Veil, refused");
                return 0;
        }
        if (strcmp(payload, VEIL_DLQ_PAYLOAD_ENCRYPTED))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "unknown %s value", VEIL_H_DLQ_PAYLOAD);
        out->encrypted = true;
        if (!hget(hdrs, VEIL_H_DLQ_CIPHER, cipher, sizeof(cipher)))
                snprintf(cipher, sizeof(cipher), "%s", VEIL_DLQ_CIPHER_GCM);
        if (!strcmp(cipher, VEIL_DLQ_CIPHER_GCM_BOUND))
                out->bound = true;
        else if (strcmp(cipher, VEIL_DLQ_CIPHER_GCM))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "unknown %s value", VEIL_H_DLQ_CIPHER);
        if (!hget(hdrs, VEIL_H_KEY_ID, out->key_id, sizeof(out->key_id)))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "sealed, but no usable %s header",
                                 VEIL_H_KEY_ID);
        aead = aead_for(d, out->key_id);
        if (!aead)
                return veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                 "sealed with key id '%s', which this "
                                 "config's keyring does not hold",
                                 out->key_id);
        rc = 0;
        if (key)
                rc = unseal(d, aead, out, "key", key, key_len, &d->key);
        if (!rc && value)
                rc = unseal(d, aead, out, "value", value, value_len, &d->value);
        if (rc)
                return veil_errf(errstr, errstr_size,
                                 rc == VEIL_ENOMEM ? VEIL_ENOMEM : VEIL_EAUTH,
                                 "the sealed payload does not open with key "
                                 "'%s' and these headers (changed, or "
                                 "another key)",
                                 out->key_id);
        out->key       = key ? d->key.data : NULL;
        out->key_len   = key ? d->key.len : 0;
        out->value     = value ? d->value.data : NULL;
        out->value_len = value ? d->value.len : 0;
        return 0;
}

int veil_dlq_position_parse(char *pos, const char **topic, int32_t *partition,
                            int64_t *offset)
{
        char *s1, *s2, *end;
        long p;
        long long o;

        s2 = strrchr(pos, '/');
        if (!s2 || s2 == pos)
                return VEIL_EINVAL;
        *s2 = '\0';
        s1  = strrchr(pos, '/');
        if (!s1 || s1 == pos) {
                *s2 = '/';
                return VEIL_EINVAL;
        }
        errno = 0;
        p     = strtol(s1 + 1, &end, 10);
        if (errno || end == s1 + 1 || *end || p < 0 || p > INT32_MAX) {
                *s2 = '/';
                return VEIL_EINVAL;
        }
        o = strtoll(s2 + 1, &end, 10);
        if (errno || end == s2 + 1 || *end || o < 0) {
                *s2 = '/';
                return VEIL_EINVAL;
        }
        *s1        = '\0';
        *topic     = pos;
        *partition = (int32_t)p;
        *offset    = (int64_t)o;
        return 0;
}
