/* plan_exec.c - run a compiled plan over the Avro binary of one record
 * without building values or allocating (veil_plan_exec, framed), and one
 * pass for every purpose of a route (veil_plan_set). Plans are compiled in
 * plan.c. */
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

/* ---- executor ----------------------------------------------------------- */

struct ex {
        const uint8_t *p;
        const uint8_t *end;
        const uint8_t *start;
        const uint8_t *copy; /* start of the pending verbatim range */
        struct veil_buf *out;
        size_t limit; /* out->len may not pass it */
        const struct veil_plan *plan;
        struct veil_plan_env *env;
        uint64_t empty_items;
        const char *err_path;
};

#define TRY(x)                                                                 \
        do {                                                                   \
                enum veil_wire_err try_rc_ = (x);                              \
                if (try_rc_)                                                   \
                        return try_rc_;                                        \
        } while (0)

static inline __attribute__((always_inline)) enum veil_wire_err
ex_varint(struct ex *e, int max_bytes, int64_t *v)
{
        /* Most varints in real records are one byte. */
        if (e->p < e->end && !(*e->p & 0x80)) {
                uint8_t b = *e->p++;

                *v = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
                return VEIL_WIRE_OK;
        }
        /* Far from the end no byte needs a bounds check (timestamps take
         * 6 to 8 bytes). */
        if (e->end - e->p >= VEIL_VARINT_MAX) {
                const uint8_t *q = e->p;
                uint64_t u       = 0;
                int i;

                for (i = 0; i < max_bytes; i++) {
                        uint8_t b = q[i];

                        u |= (uint64_t)(b & 0x7f) << (7 * i);
                        if (b & 0x80)
                                continue;
                        if ((i == 9 && b > 1) ||
                            (max_bytes <= 5 && u > UINT32_MAX))
                                return VEIL_WIRE_BAD_VARINT;
                        e->p = q + i + 1;
                        *v   = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
                        return VEIL_WIRE_OK;
                }
                return VEIL_WIRE_BAD_VARINT;
        }
        return veil_varint_read(&e->p, e->end, max_bytes, v);
}

/* Room for n more output bytes, within the plan's output limit. */
static inline enum veil_wire_err ex_room(struct ex *e, size_t n)
{
        if (n > e->limit - e->out->len)
                return VEIL_WIRE_TOO_LARGE;
        if (!veil_buf_reserve(e->out, n))
                return VEIL_WIRE_TOO_LARGE;
        return VEIL_WIRE_OK;
}

/* Append the pending verbatim range up to `upto`. */
static inline enum veil_wire_err ex_flush(struct ex *e, const uint8_t *upto)
{
        size_t n = (size_t)(upto - e->copy);

        if (n) {
                TRY(ex_room(e, n));
                memcpy(e->out->data + e->out->len, e->copy, n);
                e->out->len += n;
        }
        e->copy = upto;
        return VEIL_WIRE_OK;
}

static inline void ex_put_varint(struct ex *e, int64_t v)
{
        e->out->len += veil_varint_write(e->out->data + e->out->len, v);
}

static enum veil_wire_err ex_put_bytes(struct ex *e, const void *p, size_t n)
{
        TRY(ex_room(e, VEIL_VARINT_MAX + n));
        ex_put_varint(e, (int64_t)n);
        if (n)
                memcpy(e->out->data + e->out->len, p, n);
        e->out->len += n;
        return VEIL_WIRE_OK;
}

/* Read the length and bytes of a string/bytes value. */
static inline __attribute__((always_inline)) enum veil_wire_err
ex_lenbytes(struct ex *e, const uint8_t **data, size_t *len)
{
        int64_t n;

        TRY(ex_varint(e, 10, &n));
        if (n < 0)
                return VEIL_WIRE_BAD_LENGTH;
        if ((uint64_t)n > (uint64_t)(e->end - e->p))
                return VEIL_WIRE_TRUNCATED;
        *data = e->p;
        *len  = (size_t)n;
        e->p += n;
        return VEIL_WIRE_OK;
}

/* Read a string (a value or a map key): ex_lenbytes, and the bytes must be
 * well-formed UTF-8, as Avro says. A string that is not would reach purpose
 * topics whose readers then fail on it (or mangle it), so the record is
 * bad-utf8 whatever its purposes do with the field. */
static inline __attribute__((always_inline)) enum veil_wire_err
ex_string(struct ex *e, const uint8_t **data, size_t *len)
{
        TRY(ex_lenbytes(e, data, len));
        return veil_utf8_valid(*data, *len) ? VEIL_WIRE_OK : VEIL_WIRE_BAD_UTF8;
}

/* A block header of an array or map: the item count (negative counts are
 * followed by the block's size in bytes, which *sizep gets; else -1). */
static inline enum veil_wire_err ex_block(struct ex *e,
                                          const struct pnode *item, bool map,
                                          int64_t *countp, int64_t *sizep)
{
        int64_t count, size = -1;
        uint64_t min;

        TRY(ex_varint(e, 10, &count));
        if (count < 0) {
                if (count == INT64_MIN)
                        return VEIL_WIRE_BAD_LENGTH;
                count = -count;
                TRY(ex_varint(e, 10, &size));
                if (size < 0 || size > e->end - e->p)
                        return size < 0 ? VEIL_WIRE_BAD_LENGTH
                                        : VEIL_WIRE_TRUNCATED;
        }
        /* Every item takes at least `min` bytes; items that take none are
         * bounded by count alone (hostile input: 2^62 nulls). */
        min = (uint64_t)item->min_size + (map ? 1 : 0);
        if (min) {
                if ((uint64_t)count > (uint64_t)(e->end - e->p) / min)
                        return VEIL_WIRE_TRUNCATED;
        } else {
                e->empty_items += (uint64_t)count;
                if (e->empty_items > VEIL_PLAN_MAX_EMPTY_ITEMS)
                        return VEIL_WIRE_BAD_LENGTH;
        }
        *countp = count;
        *sizep  = size;
        return VEIL_WIRE_OK;
}

/* Remember the innermost path an error passes through (cold path). */
static enum veil_wire_err __attribute__((noinline, cold))
ex_fail(struct ex *e, const struct pnode *node, enum veil_wire_err rc)
{
        if (!e->err_path)
                e->err_path = node->path;
        return rc;
}

/* Validate and skip one leaf value (kinds below PK_RECORD). Inline: most
 * of a record is leaves, and a call per leaf costs as much as the work. */
static inline __attribute__((always_inline)) enum veil_wire_err
ex_skip_leaf(struct ex *e, const struct pnode *node)
{
        const uint8_t *data;
        size_t len;
        int64_t v;

        switch (node->kind) {
        case PK_NULL:
                return VEIL_WIRE_OK;
        case PK_BOOL:
                if (e->p >= e->end)
                        return VEIL_WIRE_TRUNCATED;
                if (*e->p > 1)
                        return VEIL_WIRE_BAD_VALUE;
                e->p++;
                return VEIL_WIRE_OK;
        case PK_INT:
                return ex_varint(e, 5, &v);
        case PK_LONG:
                return ex_varint(e, 10, &v);
        case PK_FLOAT:
        case PK_DOUBLE:
        case PK_FIXED:
                len = node->kind == PK_FLOAT    ? 4
                      : node->kind == PK_DOUBLE ? 8
                                                : node->n;
                if ((size_t)(e->end - e->p) < len)
                        return VEIL_WIRE_TRUNCATED;
                e->p += len;
                return VEIL_WIRE_OK;
        case PK_BYTES:
                return ex_lenbytes(e, &data, &len);
        case PK_STRING:
                return ex_string(e, &data, &len);
        case PK_ENUM:
        default:
                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_VALUE;
                return VEIL_WIRE_OK;
        }
}

static enum veil_wire_err ex_skip(struct ex *e, const struct pnode *node,
                                  int depth)
{
        const struct veil_plan *plan = e->plan;
        enum veil_wire_err rc;
        const uint8_t *data;
        size_t len;
        int64_t v;
        uint32_t i;

        if (node->act == PA_DROP || node->act == PA_NULLIFY)
                node = &plan->nodes[node->kids];
        if (node->kind < PK_RECORD)
                return ex_skip_leaf(e, node);
        if (depth >= VEIL_PLAN_MAX_DEPTH)
                return VEIL_WIRE_TOO_DEEP;
        switch (node->kind) {
        case PK_RECORD:
                for (i = 0; i < node->n; i++) {
                        const struct pnode *k =
                                &plan->nodes[plan->kids[node->kids + i].node];

                        rc = k->kind < PK_RECORD && k->act == PA_PASS
                                     ? ex_skip_leaf(e, k)
                                     : ex_skip(e, k, depth + 1);
                        if (rc)
                                return ex_fail(e, k, rc);
                }
                return VEIL_WIRE_OK;
        case PK_ARRAY:
        case PK_MAP: {
                const struct pnode *item = &plan->nodes[node->kids];
                bool map                 = node->kind == PK_MAP;
                int64_t count, size, k;

                for (;;) {
                        const uint8_t *block;

                        TRY(ex_block(e, item, map, &count, &size));
                        if (!count)
                                return VEIL_WIRE_OK;
                        block = e->p;
                        for (k = 0; k < count; k++) {
                                if (map)
                                        TRY(ex_string(e, &data, &len));
                                rc = item->kind < PK_RECORD &&
                                                     item->act == PA_PASS
                                             ? ex_skip_leaf(e, item)
                                             : ex_skip(e, item, depth + 1);
                                if (rc)
                                        return ex_fail(e, item, rc);
                        }
                        if (size >= 0 && e->p - block != size)
                                return VEIL_WIRE_BAD_LENGTH;
                }
        }
        case PK_UNION:
        default: {
                const struct pnode *b;

                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_UNION_INDEX;
                b  = &plan->nodes[plan->kids[node->kids + v].node];
                rc = b->kind < PK_RECORD && b->act == PA_PASS
                             ? ex_skip_leaf(e, b)
                             : ex_skip(e, b, depth + 1);
                return rc ? ex_fail(e, b, rc) : VEIL_WIRE_OK;
        }
        }
}

/* Decimal text of an integer: what hash reads for int and long, so that a
 * customer id hashes the same whether a topic carries it as long or as
 * string. */
static size_t int_text(int64_t v, char *buf)
{
        char tmp[24];
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        size_t n = 0, i = 0;

        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                buf[i++] = '-';
        while (n)
                buf[i++] = tmp[--n];
        return i;
}

static uint32_t rd32le(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
}

static uint64_t rd64le(const uint8_t *p)
{
        return (uint64_t)rd32le(p) | (uint64_t)rd32le(p + 4) << 32;
}

static void wr32le(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

static int64_t units_per_day(enum lt lt)
{
        switch (lt) {
        case LT_TS_MICROS:
                return VEIL_TX_MICROS_PER_DAY;
        case LT_TS_NANOS:
                return VEIL_TX_NANOS_PER_DAY;
        default:
                return VEIL_TX_MILLIS_PER_DAY;
        }
}

/* Numbers under generalize: bucket floors, dates and timestamps → year. */
static enum veil_wire_err ex_generalize_num(struct ex *e,
                                            const struct pnode *node,
                                            int64_t iv, const uint8_t *raw)
{
        const struct veil_transform *tx = node->tx;
        uint8_t *o;

        TRY(ex_room(e, VEIL_VARINT_MAX));
        switch (node->kind) {
        case PK_INT: {
                int32_t r;

                if (node->logical == LT_DATE) {
                        r = veil_tx_year_from_days((int32_t)iv);
                } else if (veil_tx_bucket_int((int32_t)iv, tx->generalize.width,
                                              &r)) {
                        return VEIL_WIRE_BAD_VALUE;
                }
                ex_put_varint(e, r);
                return VEIL_WIRE_OK;
        }
        case PK_LONG: {
                int64_t r;

                if (node->logical == LT_TS_MILLIS ||
                    node->logical == LT_TS_MICROS ||
                    node->logical == LT_TS_NANOS) {
                        r = veil_tx_year_from_timestamp(
                                iv, units_per_day(node->logical));
                } else if (veil_tx_bucket_long(iv, tx->generalize.width, &r)) {
                        return VEIL_WIRE_BAD_VALUE;
                }
                ex_put_varint(e, r);
                return VEIL_WIRE_OK;
        }
        case PK_FLOAT: {
                uint32_t u = rd32le(raw);
                float f, r;

                memcpy(&f, &u, 4);
                if (veil_tx_bucket_float(f, tx->generalize.width, &r))
                        return VEIL_WIRE_BAD_VALUE;
                memcpy(&u, &r, 4);
                o = e->out->data + e->out->len;
                wr32le(o, u);
                e->out->len += 4;
                return VEIL_WIRE_OK;
        }
        case PK_DOUBLE: {
                uint64_t u = rd64le(raw);
                double d, r;

                memcpy(&d, &u, 8);
                if (veil_tx_bucket_double(d, tx->generalize.width, &r))
                        return VEIL_WIRE_BAD_VALUE;
                memcpy(&u, &r, 8);
                o = e->out->data + e->out->len;
                wr32le(o, (uint32_t)u);
                wr32le(o + 4, (uint32_t)(u >> 32));
                e->out->len += 8;
                return VEIL_WIRE_OK;
        }
        default:
                return VEIL_WIRE_BAD_VALUE;
        }
}

static enum veil_wire_err ex_put_tx(struct ex *e,
                                    const struct veil_transform *tx,
                                    enum veil_encrypt_output output,
                                    const uint8_t *data, size_t len);

/* Transform one leaf: read it, flush what precedes it, write the result. */
/* A leaf as read from the input: its bytes (string, bytes, fixed, float,
 * the text of an integer, an enum symbol) and an integer's value. */
struct leaf {
        const uint8_t *data;
        size_t len;
        int64_t iv;
        char num[24];
};

static inline enum veil_wire_err
ex_read_leaf(struct ex *e, const struct pnode *node, struct leaf *lf)
{
        lf->data = NULL;
        lf->len  = 0;
        lf->iv   = 0;
        switch (node->kind) {
        case PK_STRING:
                return ex_string(e, &lf->data, &lf->len);
        case PK_BYTES:
                return ex_lenbytes(e, &lf->data, &lf->len);
        case PK_INT:
        case PK_LONG:
                TRY(ex_varint(e, node->kind == PK_INT ? 5 : 10, &lf->iv));
                lf->len  = int_text(lf->iv, lf->num);
                lf->data = (const uint8_t *)lf->num;
                return VEIL_WIRE_OK;
        case PK_FLOAT:
        case PK_DOUBLE:
        case PK_FIXED:
                lf->len = node->kind == PK_FLOAT    ? 4
                          : node->kind == PK_DOUBLE ? 8
                                                    : node->n;
                if ((size_t)(e->end - e->p) < lf->len)
                        return VEIL_WIRE_TRUNCATED;
                lf->data = e->p;
                e->p += lf->len;
                return VEIL_WIRE_OK;
        case PK_ENUM:
                TRY(ex_varint(e, 5, &lf->iv));
                if (lf->iv < 0 || lf->iv >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_VALUE;
                lf->data =
                        (const uint8_t *)e->plan->syms[node->syms + lf->iv].s;
                lf->len = e->plan->syms[node->syms + lf->iv].len;
                return VEIL_WIRE_OK;
        case PK_BOOL:
                if (e->p >= e->end)
                        return VEIL_WIRE_TRUNCATED;
                if (*e->p > 1)
                        return VEIL_WIRE_BAD_VALUE;
                e->p++;
                return VEIL_WIRE_OK;
        default:
                return VEIL_WIRE_OK;
        }
}

/* Write the transform of the leaf read from [vstart, vend). */
static enum veil_wire_err ex_write_tx(struct ex *e, const struct pnode *node,
                                      const uint8_t *vstart,
                                      const uint8_t *vend,
                                      const struct leaf *lf)
{
        const struct veil_transform *tx = node->tx;

        TRY(ex_flush(e, vstart));
        e->copy = vend;
        if (tx->kind == VEIL_TX_GENERALIZE && node->kind != PK_STRING)
                return ex_generalize_num(e, node, lf->iv, lf->data);
        return ex_put_tx(e, tx, tx->encrypt.output, lf->data, lf->len);
}

/* Transform one leaf: read it, flush what precedes it, write the result. */
static enum veil_wire_err ex_tx(struct ex *e, const struct pnode *node)
{
        const uint8_t *vstart = e->p;
        struct leaf lf;

        TRY(ex_read_leaf(e, node, &lf));
        return ex_write_tx(e, node, vstart, e->p, &lf);
}

/* Write the transform of a string or bytes value (or of the text of an
 * integer or enum symbol, for hash). `output` is encrypt's form: a map key
 * always takes the string token. */
static enum veil_wire_err ex_put_tx(struct ex *e,
                                    const struct veil_transform *tx,
                                    enum veil_encrypt_output output,
                                    const uint8_t *data, size_t len)
{
        struct veil_plan_env *env = e->env;
        size_t n;

        switch (tx->kind) {
        case VEIL_TX_HASH: {
                /* Only values in the input are remembered (an integer's
                 * text lives on the stack); the output only grows within a
                 * record, so a remembered token stays where it was. */
                bool in_body = data >= e->start && data < e->end;
                unsigned i;

                n = veil_tx_hash_len(env->keys);
                TRY(ex_room(e, VEIL_VARINT_MAX + n));
                ex_put_varint(e, (int64_t)n);
                for (i = 0; in_body && i < env->n_memo; i++)
                        if (env->memo[i].len == len &&
                            !memcmp(env->memo[i].val, data, len)) {
                                memcpy(e->out->data + e->out->len,
                                       e->out->data + env->memo[i].off, n);
                                e->out->len += n;
                                return VEIL_WIRE_OK;
                        }
                if (veil_tx_hash(env->keys, data, len,
                                 (char *)e->out->data + e->out->len, n, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                if (in_body && env->n_memo < VEIL_PLAN_MEMO) {
                        env->memo[env->n_memo].val   = data;
                        env->memo[env->n_memo].len   = len;
                        env->memo[env->n_memo++].off = e->out->len;
                }
                e->out->len += n;
                return VEIL_WIRE_OK;
        }
        case VEIL_TX_ENCRYPT:
                if (tx->encrypt.per_subject) {
                        if (!env->subject || !env->subject->keyed)
                                return VEIL_WIRE_TRANSFORM_FAILED;
                        n = veil_subject_encrypt_len(
                                env->subject, tx->encrypt.mode, output, len);
                        TRY(ex_room(e, VEIL_VARINT_MAX + n));
                        ex_put_varint(e, (int64_t)n);
                        if (veil_subject_encrypt(env->subject, tx->encrypt.mode,
                                                 output, data, len,
                                                 e->out->data + e->out->len, n,
                                                 &n))
                                return VEIL_WIRE_TRANSFORM_FAILED;
                        e->out->len += n;
                        return VEIL_WIRE_OK;
                }
                n = veil_tx_encrypt_len(env->keys, tx->encrypt.mode, output,
                                        len);
                TRY(ex_room(e, VEIL_VARINT_MAX + n));
                ex_put_varint(e, (int64_t)n);
                if (veil_tx_encrypt(env->keys, tx->encrypt.mode, output, data,
                                    len, e->out->data + e->out->len, n, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                e->out->len += n;
                return VEIL_WIRE_OK;
        case VEIL_TX_MASK:
                if (!veil_buf_reserve(&env->tmp, len + 1))
                        return VEIL_WIRE_TOO_LARGE;
                if (veil_tx_mask(tx, (const char *)data, len,
                                 (char *)env->tmp.data, len + 1, &n))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                return ex_put_bytes(e, env->tmp.data, n);
        case VEIL_TX_REDACT_TEXT: {
                char err[128];

                if (veil_redact_text(env->detect, env->detect_scratch, tx,
                                     (const char *)data, len, &env->text, NULL,
                                     err, sizeof(err)))
                        return VEIL_WIRE_TRANSFORM_FAILED;
                return ex_put_bytes(e, env->text.data, env->text.len);
        }
        case VEIL_TX_GENERALIZE:
                return ex_put_bytes(e, data,
                                    veil_tx_prefix_len((const char *)data, len,
                                                       tx->generalize.prefix));
        default:
                return VEIL_WIRE_TRANSFORM_FAILED;
        }
}

/* ---- map keys a transform made equal ---------------------------------------
 * Readers disagree over a map with two equal keys (avro-c merges nested
 * values, Java and Python keep the last), so a plan never writes one: when
 * the keys' transform can make two equal (mask, generalize, redact_text),
 * each entry becomes a block of its own and an entry whose key equals an
 * earlier one of the same map is left out (the first wins). The keys seen
 * live in hash tables in env->seen, a stack (a map inside a value pushes
 * its own), keyed by a per-env random seed so that no input can be built
 * to collide them. The memory is reused: steady state allocates nothing. */

struct kslot {
        uint64_t off; /* the key as written (length and bytes) in out */
        uint32_t len;
        uint32_t hash; /* 0: empty */
};

struct kset {
        size_t base; /* offset of the table in env->seen */
        uint32_t cap, n;
};

static uint32_t key_hash(uint64_t seed, const uint8_t *p, size_t n)
{
        uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL), w;

        for (; n >= 8; p += 8, n -= 8) {
                memcpy(&w, p, 8);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
                h ^= h >> 29;
        }
        w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 32;
        return (uint32_t)h | 1;
}

static bool kset_open(struct ex *e, struct kset *ks)
{
        struct veil_buf *b = &e->env->seen;
        const size_t sz    = 16 * sizeof(struct kslot);

        if (!e->env->seen_seed &&
            getrandom(&e->env->seen_seed, sizeof(e->env->seen_seed),
                      GRND_NONBLOCK) != (ssize_t)sizeof(e->env->seen_seed))
                e->env->seen_seed =
                        (uint64_t)(uintptr_t)e->env ^ 0x6a09e667f3bcc909ULL;
        ks->base = b->len;
        ks->cap  = 16;
        ks->n    = 0;
        if (!veil_buf_reserve(b, sz))
                return false;
        memset(b->data + b->len, 0, sz);
        b->len += sz;
        return true;
}

static void kset_put(struct kslot *slots, uint32_t cap, const struct kslot *k)
{
        uint32_t i;

        for (i = k->hash & (cap - 1); slots[i].hash; i = (i + 1) & (cap - 1))
                ;
        slots[i] = *k;
}

/* Double the table on top of the stack (no nested table is open then). */
static bool kset_grow(struct ex *e, struct kset *ks)
{
        struct veil_buf *b = &e->env->seen;
        size_t old         = (size_t)ks->cap * sizeof(struct kslot);
        struct kslot *slots, *tmp;
        uint32_t i;

        if (ks->cap >= UINT32_MAX / 4 || !veil_buf_reserve(b, 2 * old))
                return false;
        slots = (struct kslot *)(void *)(b->data + ks->base);
        tmp   = (struct kslot *)(void *)(b->data + ks->base + 2 * old);
        memcpy(tmp, slots, old);
        memset(slots, 0, 2 * old);
        for (i = 0; i < ks->cap; i++)
                if (tmp[i].hash)
                        kset_put(slots, ks->cap * 2, &tmp[i]);
        ks->cap *= 2;
        b->len = ks->base + 2 * old;
        return true;
}

/* Is out[off, out->len) a key this map has not had yet? Adds it. */
static enum veil_wire_err kset_add(struct ex *e, struct kset *ks, size_t off,
                                   bool *fresh)
{
        const uint8_t *key = e->out->data + off;
        size_t len         = e->out->len - off;
        struct kslot k, *slots;
        uint32_t i;

        if (len > UINT32_MAX)
                return VEIL_WIRE_TOO_LARGE;
        if ((ks->n + 1) * 2 > ks->cap && !kset_grow(e, ks))
                return VEIL_WIRE_TOO_LARGE;
        k.off  = off;
        k.len  = (uint32_t)len;
        k.hash = key_hash(e->env->seen_seed, key, len);
        slots  = (struct kslot *)(void *)(e->env->seen.data + ks->base);
        for (i = k.hash & (ks->cap - 1); slots[i].hash;
             i = (i + 1) & (ks->cap - 1))
                if (slots[i].hash == k.hash && slots[i].len == k.len &&
                    !memcmp(e->out->data + slots[i].off, key, len)) {
                        *fresh = false;
                        return VEIL_WIRE_OK;
                }
        slots[i] = k;
        ks->n++;
        *fresh = true;
        return VEIL_WIRE_OK;
}

static enum veil_wire_err ex_run(struct ex *e, const struct pnode *node,
                                 int depth);

/* One entry of a unique-keys map: a block of one, or nothing when its key
 * was had. */
static enum veil_wire_err ex_map_entry(struct ex *e, const struct pnode *node,
                                       const struct pnode *item,
                                       struct kset *ks, int depth)
{
        const uint8_t *key = e->p, *data;
        enum veil_wire_err rc;
        size_t len, at;
        bool fresh;

        TRY(ex_string(e, &data, &len));
        TRY(ex_flush(e, key));
        e->copy = e->p;
        at      = e->out->len;
        TRY(ex_room(e, 1));
        e->out->data[e->out->len++] = 2; /* a block of 1 (zig-zag) */
        TRY(ex_put_tx(e, node->tx, VEIL_ENCRYPT_OUT_STRING, data, len));
        TRY(kset_add(e, ks, at + 1, &fresh));
        if (fresh)
                rc = ex_run(e, item, depth + 1);
        else {
                e->out->len = at;
                rc          = ex_skip(e, item, depth + 1);
                e->copy     = e->p;
        }
        return rc ? ex_fail(e, item, rc) : VEIL_WIRE_OK;
}

static enum veil_wire_err ex_map_unique(struct ex *e, const struct pnode *node,
                                        int depth)
{
        const struct pnode *item = &e->plan->nodes[node->kids];
        enum veil_wire_err rc    = VEIL_WIRE_OK;
        int64_t count, size, k;
        struct kset ks;

        if (!kset_open(e, &ks))
                return VEIL_WIRE_TOO_LARGE;
        for (;;) {
                const uint8_t *hdr = e->p, *block;

                rc = ex_block(e, item, true, &count, &size);
                if (rc || !count)
                        break; /* the final 0 stays in the copy range */
                rc = ex_flush(e, hdr);
                if (rc)
                        break;
                e->copy = e->p; /* each entry writes its own header */
                block   = e->p;
                for (k = 0; k < count && !rc; k++)
                        rc = ex_map_entry(e, node, item, &ks, depth);
                if (rc)
                        break;
                if (size >= 0 && e->p - block != size) {
                        rc = VEIL_WIRE_BAD_LENGTH;
                        break;
                }
        }
        e->env->seen.len = ks.base;
        return rc;
}

static enum veil_wire_err ex_run(struct ex *e, const struct pnode *node,
                                 int depth)
{
        const struct veil_plan *plan = e->plan;
        enum veil_wire_err rc;
        uint32_t i;

        switch (node->act) {
        case PA_PASS:
                return ex_skip(e, node, depth);
        case PA_DROP:
                TRY(ex_flush(e, e->p));
                TRY(ex_skip(e, &plan->nodes[node->kids], depth));
                e->copy = e->p;
                return VEIL_WIRE_OK;
        case PA_NULLIFY:
                TRY(ex_flush(e, e->p));
                TRY(ex_skip(e, &plan->nodes[node->kids], depth));
                e->copy = e->p;
                TRY(ex_room(e, 1));
                e->out->data[e->out->len++] = 0; /* branch 0: null */
                return VEIL_WIRE_OK;
        case PA_TX:
                return ex_tx(e, node);
        default:
                break;
        }
        if (depth >= VEIL_PLAN_MAX_DEPTH)
                return VEIL_WIRE_TOO_DEEP;
        switch (node->kind) {
        case PK_RECORD:
                for (i = 0; i < node->n; i++) {
                        const struct pnode *k =
                                &plan->nodes[plan->kids[node->kids + i].node];
                        const struct pnode *sk;

                        /* PASS and DROP fields dominate: no call for them
                         * when they are leaves. */
                        switch (k->act) {
                        case PA_PASS:
                                rc = k->kind < PK_RECORD
                                             ? ex_skip_leaf(e, k)
                                             : ex_skip(e, k, depth + 1);
                                break;
                        case PA_DROP:
                                sk = &plan->nodes[k->kids];
                                rc = ex_flush(e, e->p);
                                if (!rc)
                                        rc = sk->kind < PK_RECORD
                                                     ? ex_skip_leaf(e, sk)
                                                     : ex_skip(e, sk,
                                                               depth + 1);
                                e->copy = e->p;
                                break;
                        case PA_TX:
                                rc = ex_tx(e, k);
                                break;
                        default:
                                rc = ex_run(e, k, depth + 1);
                                break;
                        }
                        if (rc)
                                return ex_fail(e, k, rc);
                }
                return VEIL_WIRE_OK;
        case PK_UNION: {
                const uint8_t *at = e->p;
                const struct pnode *b;
                const struct pkid *k;
                int64_t v;

                TRY(ex_varint(e, 5, &v));
                if (v < 0 || v >= (int64_t)node->n)
                        return VEIL_WIRE_BAD_UNION_INDEX;
                k = &plan->kids[node->kids + v];
                if (k->out != (uint32_t)v) {
                        TRY(ex_flush(e, at));
                        TRY(ex_room(e, VEIL_VARINT_MAX));
                        ex_put_varint(e, k->out);
                        e->copy = e->p;
                }
                b = &plan->nodes[k->node];
                if (b->act == PA_TX)
                        rc = ex_tx(e, b);
                else if (b->kind < PK_RECORD && b->act == PA_PASS)
                        rc = ex_skip_leaf(e, b);
                else
                        rc = ex_run(e, b, depth + 1);
                return rc ? ex_fail(e, b, rc) : VEIL_WIRE_OK;
        }
        case PK_ARRAY:
        case PK_MAP: {
                const struct pnode *item = &plan->nodes[node->kids];
                bool map                 = node->kind == PK_MAP;
                const uint8_t *data;
                size_t len;
                int64_t count, size, k;

                if (node->unique)
                        return ex_map_unique(e, node, depth);
                for (;;) {
                        const uint8_t *hdr = e->p, *block;

                        TRY(ex_block(e, item, map, &count, &size));
                        if (!count)
                                return VEIL_WIRE_OK;
                        if (size >= 0) {
                                /* The items change size, so the block's byte
                                 * size would lie: write a plain count. */
                                TRY(ex_flush(e, hdr));
                                TRY(ex_room(e, VEIL_VARINT_MAX));
                                ex_put_varint(e, count);
                                e->copy = e->p;
                        }
                        block = e->p;
                        for (k = 0; k < count; k++) {
                                if (map) {
                                        const uint8_t *key = e->p;

                                        TRY(ex_string(e, &data, &len));
                                        if (node->tx) {
                                                TRY(ex_flush(e, key));
                                                e->copy = e->p;
                                                rc      = ex_put_tx(
                                                             e, node->tx,
                                                             VEIL_ENCRYPT_OUT_STRING,
                                                             data, len);
                                                if (rc)
                                                        return ex_fail(e, node,
                                                                       rc);
                                        }
                                }
                                rc = ex_run(e, item, depth + 1);
                                if (rc)
                                        return ex_fail(e, item, rc);
                        }
                        if (size >= 0 && e->p - block != size)
                                return VEIL_WIRE_BAD_LENGTH;
                }
        }
        default:
                return ex_skip(e, node, depth);
        }
}

enum veil_wire_err veil_plan_exec(const struct veil_plan *plan,
                                  struct veil_plan_env *env,
                                  const uint8_t *body, size_t len,
                                  struct veil_buf *out,
                                  struct veil_plan_error *err)
{
        struct veil_plan_env local = {0};
        struct ex e;
        size_t start_len = out->len;
        enum veil_wire_err rc;

        /* Without an env, masks still need a working buffer: a local one
         * (allocated per record, so callers in a loop pass their own). */
        if (!env)
                env = &local;
        env->seen.len = 0;
        env->n_memo   = 0;
        memset(&e, 0, sizeof(e));
        e.p = e.start = e.copy = body;
        e.end                  = body + len;
        e.out                  = out;
        e.plan                 = plan;
        e.env                  = env;
        e.limit                = plan->max_output > SIZE_MAX - start_len
                                         ? SIZE_MAX
                                         : start_len + plan->max_output;
        if ((plan->needs_keys && !env->keys) ||
            (plan->needs_detect && (!env->detect || !env->detect_scratch)))
                rc = VEIL_WIRE_TRANSFORM_FAILED;
        else
                rc = ex_run(&e, &plan->nodes[plan->root], 0);
        if (rc)
                ex_fail(&e, &plan->nodes[plan->root], rc);
        if (!rc && e.p != e.end)
                rc = VEIL_WIRE_TRAILING_BYTES;
        if (!rc)
                rc = ex_flush(&e, e.p);
        if (env == &local)
                veil_plan_env_free(&local);
        if (rc) {
                out->len = start_len;
                if (err) {
                        err->code   = rc;
                        err->offset = (size_t)(e.p - e.start);
                        err->path   = e.err_path;
                }
                return rc;
        }
        if (err) {
                err->code   = VEIL_WIRE_OK;
                err->offset = 0;
                err->path   = NULL;
        }
        return VEIL_WIRE_OK;
}

/* ---- one pass for every purpose ---------------------------------------------
 * The plans of one source schema (the purposes of a route) read the same
 * bytes in the same order. A plan set merges them once into one graph:
 * each merged node holds, for the position, what every plan does there
 * (pass, drop, null, transform, descend) as bit masks, and the positions
 * that no plan transforms or descends into are read once, like a pass in
 * one plan. One reader walks the input once (one decode, one validation);
 * each plan's writer keeps its own pending copy range and output. A
 * failure of the input fails every plan; a failure of one plan's writing
 * (its output limit, a transform) fails that plan only. */

struct mnode {
        uint8_t kind; /* the source type's kind */
        bool quiet;   /* no writer transforms or descends: read once */
        uint8_t srcw; /* the writer whose plan `src` lives in */
        uint32_t drop, nul, tx, desc; /* writers, by bit */
        uint32_t n;                   /* record fields, union branches */
        uint32_t kids;     /* record/union: first in set->kids; array/map:
                            * the item's merged node */
        uint32_t min_size; /* array/map: the largest minimum of the items */
        const struct pnode *src; /* reads (skips) the value */
        const struct pnode *w[VEIL_PLAN_MULTI_MAX]; /* each writer's node */
};

struct mmemo {
        uint32_t mask;
        const struct pnode *w[VEIL_PLAN_MULTI_MAX];
        uint32_t node;
};

struct veil_plan_set {
        const struct veil_plan *plans[VEIL_PLAN_MULTI_MAX];
        size_t n;
        struct mnode *nodes;
        size_t n_nodes, cap_nodes;
        uint32_t *kids;
        size_t n_kids, cap_kids;
        struct mmemo *memo;
        size_t n_memo, cap_memo;
        uint32_t root;
};

void veil_plan_set_destroy(struct veil_plan_set *set)
{
        if (!set)
                return;
        free(set->nodes);
        free(set->kids);
        free(set->memo);
        free(set);
}

/* The merged node of the writers in `mask` at nodes w[] (recursive types
 * meet the same tuple again: the memo points back). */
static int set_build(struct veil_plan_set *set, uint32_t mask,
                     const struct pnode *const *w, int depth, uint32_t *out,
                     char *errstr, size_t errstr_size)
{
        struct mnode mn = {0};
        uint32_t idx, i, f, first = UINT32_MAX, cmask;
        size_t m;
        int rc;

        for (m = 0; m < set->n_memo; m++)
                if (set->memo[m].mask == mask &&
                    !memcmp(set->memo[m].w, w, sizeof(set->memo[m].w))) {
                        *out = set->memo[m].node;
                        return 0;
                }
        if (depth > 4 * VEIL_PLAN_MAX_DEPTH)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "plan set: schema nests too deep");
        for (i = 0; i < set->n; i++) {
                const struct pnode *node = w[i], *src;

                if (!(mask & (1u << i)))
                        continue;
                mn.w[i] = node;
                src     = node;
                switch (node->act) {
                case PA_DROP:
                        mn.drop |= 1u << i;
                        src = &set->plans[i]->nodes[node->kids];
                        break;
                case PA_NULLIFY:
                        mn.nul |= 1u << i;
                        src = &set->plans[i]->nodes[node->kids];
                        break;
                case PA_TX:
                        mn.tx |= 1u << i;
                        break;
                case PA_DESCEND:
                        mn.desc |= 1u << i;
                        if (first == UINT32_MAX)
                                first = i;
                        break;
                default:
                        break;
                }
                if (!mn.src) {
                        mn.src  = src;
                        mn.srcw = (uint8_t)i;
                        mn.kind = src->kind;
                } else if (src->kind != mn.kind) {
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "plan set: the plans do not read "
                                         "the same schema");
                }
        }
        mn.quiet   = !(mn.tx | mn.desc);
        set->nodes = veil_plan_grow(set->nodes, &set->cap_nodes,
                                    set->n_nodes + 1, sizeof(*set->nodes));
        idx        = (uint32_t)set->n_nodes++;
        set->memo  = veil_plan_grow(set->memo, &set->cap_memo, set->n_memo + 1,
                                    sizeof(*set->memo));
        set->memo[set->n_memo].mask = mask;
        memcpy(set->memo[set->n_memo].w, w, sizeof(set->memo[0].w));
        set->memo[set->n_memo++].node = idx;
        cmask                         = mn.desc;
        if (cmask) {
                const struct pnode *fw = mn.w[first];
                const struct pnode *cw[VEIL_PLAN_MULTI_MAX];
                uint32_t base, nk = 0, item;

                for (i = 0; i < set->n; i++)
                        if ((cmask & (1u << i)) && mn.w[i]->kind == PK_RECORD &&
                            mn.w[i]->n != fw->n)
                                return veil_errf(errstr, errstr_size,
                                                 VEIL_EINVAL,
                                                 "plan set: the plans do not "
                                                 "read the same schema");
                switch (mn.kind) {
                case PK_RECORD:
                case PK_UNION:
                        nk        = fw->n;
                        set->kids = veil_plan_grow(set->kids, &set->cap_kids,
                                                   set->n_kids + nk + 1,
                                                   sizeof(*set->kids));
                        base      = (uint32_t)set->n_kids;
                        set->n_kids += nk;
                        mn.n    = nk;
                        mn.kids = base;
                        for (f = 0; f < nk; f++) {
                                memset(cw, 0, sizeof(cw));
                                for (i = 0; i < set->n; i++)
                                        if (cmask & (1u << i))
                                                cw[i] = &set->plans[i]->nodes
                                                                 [set->plans[i]
                                                                          ->kids[mn.w[i]->kids +
                                                                                 f]
                                                                          .node];
                                rc = set_build(set, cmask, cw, depth + 1, &item,
                                               errstr, errstr_size);
                                if (rc)
                                        return rc;
                                set->kids[base + f] = item;
                        }
                        break;
                case PK_ARRAY:
                case PK_MAP:
                        memset(cw, 0, sizeof(cw));
                        for (i = 0; i < set->n; i++)
                                if (cmask & (1u << i)) {
                                        cw[i] = &set->plans[i]
                                                         ->nodes[mn.w[i]->kids];
                                        if (cw[i]->min_size > mn.min_size)
                                                mn.min_size = cw[i]->min_size;
                                }
                        rc = set_build(set, cmask, cw, depth + 1, &item, errstr,
                                       errstr_size);
                        if (rc)
                                return rc;
                        mn.kids = item;
                        break;
                default:
                        return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                         "plan set: a leaf cannot descend");
                }
        }
        set->nodes[idx] = mn;
        *out            = idx;
        return 0;
}

struct veil_plan_set *veil_plan_set_new(const struct veil_plan *const *plans,
                                        size_t n, char *errstr,
                                        size_t errstr_size)
{
        struct veil_plan_set *set;
        const struct pnode *w[VEIL_PLAN_MULTI_MAX] = {0};
        size_t i;

        if (!n || n > VEIL_PLAN_MULTI_MAX) {
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "plan set: 1 to %d plans", VEIL_PLAN_MULTI_MAX);
                return NULL;
        }
        set    = veil_calloc(1, sizeof(*set));
        set->n = n;
        for (i = 0; i < n; i++) {
                if (plans[i]->source_id != plans[0]->source_id) {
                        veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                  "plan set: plans of schemas %d and %d",
                                  plans[0]->source_id, plans[i]->source_id);
                        veil_plan_set_destroy(set);
                        return NULL;
                }
                set->plans[i] = plans[i];
                w[i]          = &plans[i]->nodes[plans[i]->root];
        }
        if (set_build(set, (uint32_t)((1u << n) - 1), w, 0, &set->root, errstr,
                      errstr_size)) {
                veil_plan_set_destroy(set);
                return NULL;
        }
        free(set->memo);
        set->memo   = NULL;
        set->n_memo = set->cap_memo = 0;
        return set;
}

struct mx {
        struct ex r; /* the reader: p, end, empty_items, err_path */
        struct ex o[VEIL_PLAN_MULTI_MAX];
        enum veil_wire_err dead[VEIL_PLAN_MULTI_MAX];
        uint32_t deadm; /* writers that failed */
        uint32_t susp;  /* writers left out of the value being read (an
                         * entry whose key they had already) */
        const struct veil_plan_set *set;
};

/* Each set bit i of mask, lowest first. */
#define FOR_BITS(i, mask)                                                      \
        for (uint32_t bits_ = (mask), i;                                       \
             bits_ && ((i = (uint32_t)__builtin_ctz(bits_)), 1);               \
             bits_ &= bits_ - 1)

static inline uint32_t mx_live(const struct mx *m)
{
        return ~(m->deadm | m->susp);
}

static inline void mx_kill(struct mx *m, uint32_t i, enum veil_wire_err rc)
{
        if (!m->dead[i])
                m->dead[i] = rc;
        m->deadm |= 1u << i;
}

static inline enum veil_wire_err mx_skip(struct mx *m, const struct mnode *mn,
                                         int depth)
{
        m->r.plan = m->set->plans[mn->srcw];
        if (mn->src->kind < PK_RECORD)
                return ex_skip_leaf(&m->r, mn->src);
        return ex_skip(&m->r, mn->src, depth);
}

static enum veil_wire_err mx_run(struct mx *m, const struct mnode *mn,
                                 int depth);

static enum veil_wire_err mx_leaf(struct mx *m, const struct mnode *mn)
{
        const uint8_t *vstart = m->r.p;
        uint32_t want         = mn->tx & mx_live(m);
        uint32_t first        = (uint32_t)__builtin_ctz(want);
        struct leaf lf;

        m->r.plan = m->set->plans[first];
        TRY(ex_read_leaf(&m->r, mn->w[first], &lf));
        FOR_BITS(i, want)
        {
                enum veil_wire_err rc =
                        ex_write_tx(&m->o[i], mn->w[i], vstart, m->r.p, &lf);

                if (rc)
                        mx_kill(m, i, rc);
        }
        return VEIL_WIRE_OK;
}

static enum veil_wire_err mx_record(struct mx *m, const struct mnode *mn,
                                    int depth)
{
        const struct veil_plan_set *set = m->set;
        const uint32_t *kids            = &set->kids[mn->kids];
        enum veil_wire_err rc;
        uint32_t f;

        for (f = 0; f < mn->n; f++) {
                const struct mnode *c = &set->nodes[kids[f]];

                /* The common case without a call: a leaf every writer
                 * passes or drops. */
                if (c->quiet && c->kind < PK_RECORD && !c->nul) {
                        const uint8_t *at = m->r.p;
                        uint32_t drop     = c->drop & mx_live(m);

                        FOR_BITS(i, drop)
                        {
                                rc = ex_flush(&m->o[i], at);
                                if (rc)
                                        mx_kill(m, i, rc);
                        }
                        rc = ex_skip_leaf(&m->r, c->src);
                        FOR_BITS(i, drop)
                        m->o[i].copy = m->r.p;
                } else {
                        rc = mx_run(m, c, depth + 1);
                }
                if (rc)
                        return ex_fail(&m->r, c->w[c->srcw], rc);
        }
        return VEIL_WIRE_OK;
}

static enum veil_wire_err mx_union(struct mx *m, const struct mnode *mn,
                                   int depth)
{
        const uint8_t *at = m->r.p;
        const struct mnode *c;
        enum veil_wire_err rc;
        int64_t v;

        TRY(ex_varint(&m->r, 5, &v));
        if (v < 0 || v >= (int64_t)mn->n)
                return VEIL_WIRE_BAD_UNION_INDEX;
        FOR_BITS(i, mn->desc & mx_live(m))
        {
                const struct veil_plan *plan = m->set->plans[i];
                const struct pkid *k         = &plan->kids[mn->w[i]->kids + v];
                struct ex *o                 = &m->o[i];

                if (k->out == (uint32_t)v)
                        continue;
                rc = ex_flush(o, at);
                if (!rc)
                        rc = ex_room(o, VEIL_VARINT_MAX);
                if (rc) {
                        mx_kill(m, i, rc);
                        continue;
                }
                ex_put_varint(o, k->out);
                o->copy = m->r.p;
        }
        c  = &m->set->nodes[m->set->kids[mn->kids + v]];
        rc = mx_run(m, c, depth + 1);
        return rc ? ex_fail(&m->r, c->w[c->srcw], rc) : VEIL_WIRE_OK;
}

/* Arrays and maps: blocks read once; each writer reframes what its plan
 * changes (a counted block, per-entry blocks of a unique-keys map) and
 * writes its own keys. */
static enum veil_wire_err mx_blocks(struct mx *m, const struct mnode *mn,
                                    int depth)
{
        const bool map        = mn->kind == PK_MAP;
        const struct mnode *c = &m->set->nodes[mn->kids];
        struct kset ks[VEIL_PLAN_MULTI_MAX];
        struct pnode bound    = {0};
        enum veil_wire_err rc = VEIL_WIRE_OK;
        uint32_t uniq = 0, desc = mn->desc & mx_live(m);
        int64_t count, size, k;

        bound.min_size = mn->min_size;
        FOR_BITS(i, desc)
        {
                if (!mn->w[i]->unique)
                        continue;
                if (kset_open(&m->o[i], &ks[i]))
                        uniq |= 1u << i;
                else
                        mx_kill(m, i, VEIL_WIRE_TOO_LARGE);
        }
        for (;;) {
                const uint8_t *hdr = m->r.p, *block;

                rc = ex_block(&m->r, &bound, map, &count, &size);
                if (rc || !count)
                        break;
                FOR_BITS(i, desc & mx_live(m))
                {
                        struct ex *o           = &m->o[i];
                        enum veil_wire_err wrc = VEIL_WIRE_OK;

                        if (mn->w[i]->unique) {
                                wrc     = ex_flush(o, hdr);
                                o->copy = m->r.p;
                        } else if (size >= 0) {
                                wrc = ex_flush(o, hdr);
                                if (!wrc)
                                        wrc = ex_room(o, VEIL_VARINT_MAX);
                                if (!wrc) {
                                        ex_put_varint(o, count);
                                        o->copy = m->r.p;
                                }
                        }
                        if (wrc)
                                mx_kill(m, i, wrc);
                }
                block = m->r.p;
                for (k = 0; k < count; k++) {
                        const uint8_t *key = m->r.p, *data = NULL;
                        uint32_t saved = m->susp, skip = 0;
                        size_t len = 0;

                        if (map) {
                                rc = ex_string(&m->r, &data, &len);
                                if (rc)
                                        break;
                                FOR_BITS(i, desc & mx_live(m))
                                {
                                        const struct pnode *node = mn->w[i];
                                        struct ex *o             = &m->o[i];
                                        enum veil_wire_err wrc;
                                        bool fresh = true;
                                        size_t at;

                                        if (!node->tx)
                                                continue;
                                        wrc     = ex_flush(o, key);
                                        o->copy = m->r.p;
                                        at      = o->out->len;
                                        if (!wrc && node->unique) {
                                                wrc = ex_room(o, 1);
                                                if (!wrc)
                                                        o->out->data
                                                                [o->out->len++] =
                                                                2;
                                        }
                                        if (!wrc)
                                                wrc = ex_put_tx(
                                                        o, node->tx,
                                                        VEIL_ENCRYPT_OUT_STRING,
                                                        data, len);
                                        if (!wrc && node->unique)
                                                wrc = kset_add(o, &ks[i],
                                                               at + 1, &fresh);
                                        if (wrc) {
                                                mx_kill(m, i, wrc);
                                        } else if (!fresh) {
                                                o->out->len = at;
                                                skip |= 1u << i;
                                        }
                                }
                        }
                        m->susp |= skip;
                        rc      = mx_run(m, c, depth + 1);
                        m->susp = saved;
                        FOR_BITS(i, skip & ~m->deadm)
                        m->o[i].copy = m->r.p;
                        if (rc) {
                                rc = ex_fail(&m->r, c->w[c->srcw], rc);
                                break;
                        }
                }
                if (rc)
                        break;
                if (size >= 0 && m->r.p - block != size) {
                        rc = VEIL_WIRE_BAD_LENGTH;
                        break;
                }
        }
        FOR_BITS(i, uniq)
        m->o[i].env->seen.len = ks[i].base;
        return rc;
}

static enum veil_wire_err mx_run(struct mx *m, const struct mnode *mn,
                                 int depth)
{
        const uint8_t *start = m->r.p;
        uint32_t closing     = (mn->drop | mn->nul) & mx_live(m);
        enum veil_wire_err rc;

        FOR_BITS(i, closing)
        {
                rc = ex_flush(&m->o[i], start);
                if (rc)
                        mx_kill(m, i, rc);
        }
        if (!((mn->tx | mn->desc) & mx_live(m))) {
                rc = mx_skip(m, mn, depth);
        } else if (depth >= VEIL_PLAN_MAX_DEPTH) {
                rc = VEIL_WIRE_TOO_DEEP;
        } else {
                switch (mn->kind) {
                case PK_RECORD:
                        rc = mx_record(m, mn, depth);
                        break;
                case PK_UNION:
                        rc = mx_union(m, mn, depth);
                        break;
                case PK_ARRAY:
                case PK_MAP:
                        rc = mx_blocks(m, mn, depth);
                        break;
                default:
                        rc = mx_leaf(m, mn);
                        break;
                }
        }
        if (rc)
                return rc;
        FOR_BITS(i, closing & ~m->deadm)
        {
                struct ex *o = &m->o[i];

                o->copy = m->r.p;
                if (!(mn->nul & (1u << i)))
                        continue;
                rc = ex_room(o, 1);
                if (rc)
                        mx_kill(m, i, rc);
                else
                        o->out->data[o->out->len++] = 0; /* branch 0: null */
        }
        return VEIL_WIRE_OK;
}

enum veil_wire_err veil_plan_set_exec(const struct veil_plan_set *set,
                                      struct veil_plan_env *const *envs,
                                      const uint8_t *body, size_t len,
                                      struct veil_buf *const *outs,
                                      struct veil_plan_error *errs)
{
        struct mx m;
        size_t start_len[VEIL_PLAN_MULTI_MAX];
        enum veil_wire_err rc, first = VEIL_WIRE_OK;
        uint32_t i;

        memset(&m, 0, sizeof(m));
        m.set = set;
        m.r.p = m.r.start = m.r.copy = body;
        m.r.end                      = body + len;
        m.r.plan                     = set->plans[0];
        for (i = 0; i < set->n; i++) {
                const struct veil_plan *plan = set->plans[i];
                struct veil_plan_env *env    = envs[i];
                struct ex *o                 = &m.o[i];

                start_len[i] = outs[i]->len;
                o->p = o->start = o->copy = body;
                o->end                    = body + len;
                o->out                    = outs[i];
                o->plan                   = plan;
                o->env                    = env;
                o->limit      = plan->max_output > SIZE_MAX - start_len[i]
                                        ? SIZE_MAX
                                        : start_len[i] + plan->max_output;
                env->seen.len = 0;
                env->n_memo   = 0;
                if ((plan->needs_keys && !env->keys) ||
                    (plan->needs_detect &&
                     (!env->detect || !env->detect_scratch)))
                        mx_kill(&m, i, VEIL_WIRE_TRANSFORM_FAILED);
        }
        rc = mx_run(&m, &set->nodes[set->root], 0);
        if (rc)
                ex_fail(&m.r, set->nodes[set->root].src, rc);
        if (!rc && m.r.p != m.r.end)
                rc = VEIL_WIRE_TRAILING_BYTES;
        for (i = 0; i < set->n; i++) {
                enum veil_wire_err orc = rc ? rc : m.dead[i];

                if (!orc)
                        orc = ex_flush(&m.o[i], m.r.p);
                if (orc) {
                        outs[i]->len = start_len[i];
                        if (!first)
                                first = orc;
                }
                if (errs) {
                        errs[i].code   = orc;
                        errs[i].offset = orc ? (size_t)(m.r.p - body) : 0;
                        errs[i].path   = orc ? m.r.err_path : NULL;
                }
        }
        return first;
}

enum veil_wire_err veil_plan_exec_framed(const struct veil_plan *plan,
                                         struct veil_plan_env *env,
                                         const void *msg, size_t len,
                                         struct veil_buf *out,
                                         struct veil_plan_error *err)
{
        struct veil_wire_frame frame;
        enum veil_wire_err rc = veil_wire_parse(msg, len, &frame);

        out->len = 0;
        if (!rc && frame.tombstone)
                rc = VEIL_WIRE_TOO_SHORT;
        if (rc) {
                if (err) {
                        err->code   = rc;
                        err->offset = 0;
                        err->path   = NULL;
                }
                return rc;
        }
        if (!veil_buf_reserve(out, VEIL_WIRE_HEADER_SIZE)) {
                if (err) {
                        err->code   = VEIL_WIRE_TOO_LARGE;
                        err->offset = 0;
                        err->path   = NULL;
                }
                return VEIL_WIRE_TOO_LARGE;
        }
        veil_wire_header_write(out->data, plan->output_id);
        out->len = VEIL_WIRE_HEADER_SIZE;
        rc = veil_plan_exec(plan, env, frame.body, frame.body_len, out, err);
        if (rc)
                out->len = 0;
        return rc;
}
