/* consent.c - the consent gate's probe: the field of `requires:` found by
 * skipping the Avro binary of the fields before it, then compared. The
 * fields skipped at each level are resolved once, at compile time; values
 * inside them are skipped by walking their avro-c type (no value tree).
 * Only the bytes before the field are read, so the cost is that of the
 * fields that precede it in the schema, whatever follows. */
#include <avro.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "util.h"
#include "veil.h"

/* Nesting followed inside skipped values before a body counts as
 * malformed (recursive schemas are the only way to nest deeper). */
#define MAX_DEPTH 64

enum leaf_kind { LEAF_BOOL, LEAF_STRING, LEAF_ENUM };

/* One record on the path: the types of the fields before the one taken,
 * and how that field is read. */
struct step {
        avro_schema_t *before;
        size_t n_before;
        int branch; /* union field: the branch taken; -1 when not a union */
};

struct veil_consent_probe {
        struct step *steps;
        size_t n_steps;
        enum leaf_kind leaf;
        bool boolean;   /* LEAF_BOOL: the value wanted */
        char *string;   /* LEAF_STRING: the text wanted */
        size_t str_len; /* its length */
        int symbol;     /* LEAF_ENUM: the symbol's index, -1 when the enum
                         * has no such symbol (never passes) */
};

const char *veil_consent_name(enum veil_consent c)
{
        switch (c) {
        case VEIL_CONSENT_PASS:
                return "consent-given";
        case VEIL_CONSENT_FAIL:
                return "consent-not-given";
        case VEIL_CONSENT_NULL:
                return "consent-unknown";
        default:
                return "consent-malformed";
        }
}

static avro_schema_t deref(avro_schema_t t)
{
        while (t && is_avro_link(t))
                t = avro_schema_link_target(t);
        return t;
}

static const char *type_name(avro_schema_t t)
{
        t = deref(t);
        return t ? avro_schema_type_name(t) : "?";
}

/* "a" or "an" before a type's name. */
static const char *article(avro_schema_t t)
{
        return strchr("aeiou", type_name(t)[0]) ? "an" : "a";
}

void veil_consent_probe_destroy(struct veil_consent_probe *probe)
{
        size_t i;

        if (!probe)
                return;
        for (i = 0; i < probe->n_steps; i++)
                free(probe->steps[i].before);
        free(probe->steps);
        free(probe->string);
        free(probe);
}

/* The field's type, looked through a union with null: the non-null branch
 * (its index in *branch) or the type itself (*branch -1). NULL when the
 * union has more than one non-null branch. */
static avro_schema_t through_union(avro_schema_t t, int *branch)
{
        avro_schema_t found = NULL;
        size_t i, n;

        *branch = -1;
        t       = deref(t);
        if (!is_avro_union(t))
                return t;
        n = avro_schema_union_size(t);
        for (i = 0; i < n; i++) {
                avro_schema_t b = deref(avro_schema_union_branch(t, (int)i));

                if (is_avro_null(b))
                        continue;
                if (found)
                        return NULL;
                found   = b;
                *branch = (int)i;
        }
        return found;
}

static int leaf_of(struct veil_consent_probe *probe, avro_schema_t t,
                   const struct veil_requires *req, const char *path,
                   char *errstr, size_t errstr_size)
{
        if (req->kind == VEIL_REQUIRES_BOOL) {
                if (!is_avro_boolean(t))
                        return veil_errf(errstr, errstr_size, VEIL_ETYPE,
                                         "requires.field %s is %s %s; "
                                         "equals: %s needs a boolean",
                                         path, article(t), type_name(t),
                                         req->boolean ? "true" : "false");
                probe->leaf    = LEAF_BOOL;
                probe->boolean = req->boolean;
                return 0;
        }
        if (is_avro_string(t)) {
                probe->leaf    = LEAF_STRING;
                probe->string  = veil_strdup(req->string);
                probe->str_len = strlen(req->string);
                return 0;
        }
        if (is_avro_enum(t)) {
                probe->leaf   = LEAF_ENUM;
                probe->symbol = avro_schema_enum_get_by_name(t, req->string);
                if (probe->symbol < 0)
                        return veil_errf(errstr, errstr_size, VEIL_ETYPE,
                                         "requires.field %s is the enum %s, "
                                         "which has no symbol '%s'",
                                         path, avro_schema_name(t),
                                         req->string);
                return 0;
        }
        return veil_errf(errstr, errstr_size, VEIL_ETYPE,
                         "requires.field %s is %s %s; equals: \"%s\" needs a "
                         "string or an enum",
                         path, article(t), type_name(t), req->string);
}

struct veil_consent_probe *
veil_consent_probe_new(const struct veil_schema *schema,
                       const struct veil_requires *req, int *rcp, char *errstr,
                       size_t errstr_size)
{
        struct veil_consent_probe *probe;
        avro_schema_t t;
        char path[512];
        const char *seg, *dot;
        size_t n_steps = 1, plen = 0;
        int rc = VEIL_EINVAL;

        if (!schema || !schema->avro || !req ||
            req->kind == VEIL_REQUIRES_NONE || !req->field) {
                rc = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                               "no condition to compile");
                goto fail;
        }
        for (seg = req->field; *seg; seg++)
                n_steps += *seg == '.';
        probe        = veil_calloc(1, sizeof(*probe));
        probe->steps = veil_calloc(n_steps, sizeof(*probe->steps));
        t            = deref(schema->avro);
        for (seg = req->field;; seg = dot + 1) {
                struct step *st = &probe->steps[probe->n_steps];
                char name[256];
                size_t len;
                int idx, i;
                avro_schema_t ft;

                dot = strchr(seg, '.');
                len = dot ? (size_t)(dot - seg) : strlen(seg);
                snprintf(name, sizeof(name), "%.*s", (int)len, seg);
                plen += (size_t)snprintf(path + plen, sizeof(path) - plen,
                                         "%s%s", plen ? "." : "", name);
                if (plen >= sizeof(path))
                        plen = sizeof(path) - 1;
                if (!is_avro_record(t)) {
                        rc = veil_errf(errstr, errstr_size, VEIL_ETYPE,
                                       "requires.field %s: %.*s is %s %s, "
                                       "not a record",
                                       req->field, (int)(seg - req->field - 1),
                                       req->field, article(t), type_name(t));
                        goto err;
                }
                idx = avro_schema_record_field_get_index(t, name);
                if (idx < 0) {
                        rc = veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                       "requires.field %s: the record %s has "
                                       "no field '%s'",
                                       req->field, avro_schema_name(t), name);
                        goto err;
                }
                probe->n_steps++;
                st->n_before = (size_t)idx;
                st->before = veil_calloc(st->n_before + 1, sizeof(*st->before));
                for (i = 0; i < idx; i++)
                        st->before[i] =
                                avro_schema_record_field_get_by_index(t, i);
                ft = through_union(
                        avro_schema_record_field_get_by_index(t, idx),
                        &st->branch);
                if (!ft) {
                        rc = veil_errf(errstr, errstr_size, VEIL_ETYPE,
                                       "requires.field %s: %s is a union of "
                                       "several types; only null and one "
                                       "type can be tested",
                                       req->field, path);
                        goto err;
                }
                if (!dot) {
                        rc = leaf_of(probe, ft, req, req->field, errstr,
                                     errstr_size);
                        if (rc)
                                goto err;
                        break;
                }
                t = ft;
        }
        if (rcp)
                *rcp = 0;
        return probe;
err:
        veil_consent_probe_destroy(probe);
fail:
        if (rcp)
                *rcp = rc;
        return NULL;
}

/* ---- reading --------------------------------------------------------------
 */

struct rd {
        const uint8_t *p, *end;
        size_t budget; /* items left: bounds zero-width items */
};

static bool rd_long(struct rd *r, int64_t *out)
{
        uint64_t v = 0;
        int shift;

        for (shift = 0; shift < 64; shift += 7) {
                uint8_t b;

                if (r->p >= r->end)
                        return false;
                b = *r->p++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
                        return true;
                }
        }
        return false;
}

static bool rd_skip_bytes(struct rd *r, int64_t n)
{
        if (n < 0 || (uint64_t)n > (uint64_t)(r->end - r->p))
                return false;
        r->p += n;
        return true;
}

static bool skip(struct rd *r, avro_schema_t t, int depth);

/* Array items or map entries: blocks of a count (negative: followed by
 * the block's byte size, which lets us jump over it). */
static bool skip_blocks(struct rd *r, avro_schema_t item, bool map, int depth)
{
        int64_t n, size;

        for (;;) {
                if (!rd_long(r, &n))
                        return false;
                if (n == 0)
                        return true;
                if (n < 0) {
                        if (n == INT64_MIN || !rd_long(r, &size))
                                return false;
                        if (!rd_skip_bytes(r, size))
                                return false;
                        continue;
                }
                while (n-- > 0) {
                        int64_t klen;

                        if (!r->budget--)
                                return false;
                        if (map &&
                            (!rd_long(r, &klen) || !rd_skip_bytes(r, klen)))
                                return false;
                        if (!skip(r, item, depth + 1))
                                return false;
                }
        }
}

static bool skip(struct rd *r, avro_schema_t t, int depth)
{
        int64_t v;
        size_t i, n;

        if (depth > MAX_DEPTH)
                return false;
        t = deref(t);
        switch (avro_typeof(t)) {
        case AVRO_NULL:
                return true;
        case AVRO_BOOLEAN:
                if (r->p >= r->end || *r->p > 1)
                        return false;
                r->p++;
                return true;
        case AVRO_INT32:
        case AVRO_INT64:
        case AVRO_ENUM:
                return rd_long(r, &v);
        case AVRO_FLOAT:
                return rd_skip_bytes(r, 4);
        case AVRO_DOUBLE:
                return rd_skip_bytes(r, 8);
        case AVRO_STRING:
        case AVRO_BYTES:
                return rd_long(r, &v) && rd_skip_bytes(r, v);
        case AVRO_FIXED:
                return rd_skip_bytes(r, avro_schema_fixed_size(t));
        case AVRO_RECORD:
                n = avro_schema_record_size(t);
                for (i = 0; i < n; i++)
                        if (!skip(r,
                                  avro_schema_record_field_get_by_index(t,
                                                                        (int)i),
                                  depth + 1))
                                return false;
                return true;
        case AVRO_ARRAY:
                return skip_blocks(r, avro_schema_array_items(t), false, depth);
        case AVRO_MAP:
                return skip_blocks(r, avro_schema_map_values(t), true, depth);
        case AVRO_UNION:
                if (!rd_long(r, &v) || v < 0 ||
                    (uint64_t)v >= avro_schema_union_size(t))
                        return false;
                return skip(r, avro_schema_union_branch(t, (int)v), depth + 1);
        default:
                return false;
        }
}

enum veil_consent veil_consent_eval(const struct veil_consent_probe *probe,
                                    const uint8_t *body, size_t len)
{
        struct rd r = {body, body + len, len + 65536};
        int64_t v;
        size_t i, j;

        for (i = 0; i < probe->n_steps; i++) {
                const struct step *st = &probe->steps[i];

                for (j = 0; j < st->n_before; j++)
                        if (!skip(&r, st->before[j], 0))
                                return VEIL_CONSENT_MALFORMED;
                if (st->branch >= 0) {
                        if (!rd_long(&r, &v))
                                return VEIL_CONSENT_MALFORMED;
                        /* Only null and the one type are in the union. */
                        if (v != st->branch)
                                return VEIL_CONSENT_NULL;
                }
        }
        switch (probe->leaf) {
        case LEAF_BOOL:
                if (r.p >= r.end || *r.p > 1)
                        return VEIL_CONSENT_MALFORMED;
                return (*r.p == 1) == probe->boolean ? VEIL_CONSENT_PASS
                                                     : VEIL_CONSENT_FAIL;
        case LEAF_STRING:
                if (!rd_long(&r, &v) || v < 0 ||
                    (uint64_t)v > (uint64_t)(r.end - r.p))
                        return VEIL_CONSENT_MALFORMED;
                return (size_t)v == probe->str_len &&
                                       !memcmp(r.p, probe->string,
                                               probe->str_len)
                               ? VEIL_CONSENT_PASS
                               : VEIL_CONSENT_FAIL;
        default:
                if (!rd_long(&r, &v))
                        return VEIL_CONSENT_MALFORMED;
                return v == probe->symbol ? VEIL_CONSENT_PASS
                                          : VEIL_CONSENT_FAIL;
        }
}
