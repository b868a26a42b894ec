/* plan_int.h - the plan's program (nodes, kinds, actions), the compiler's
 * state and the helpers shared by plan.c (compile), check_plan.c
 * (`veil check`) and plan_exec.c (execute). Private to those files: the
 * public API is plan.h. */
#ifndef VEIL_COMMON_PLAN_INT_H
#define VEIL_COMMON_PLAN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan.h"

/* ---- the program ----------------------------------------------------------
 * A plan is a graph of nodes, one per position of the schema (recursive
 * records point back at their own node). Each node knows the Avro type it
 * reads and what to do with the value:
 *   PASS     validate and skip; the bytes stay in the pending copy range
 *   DROP     skip without copying (flush the range before it)
 *   NULLIFY  skip, write the null branch of the derived ["null", T]
 *   TX       read a leaf and write its transform
 *   DESCEND  a record, array, map or union with changes inside (for a
 *            map: in its values, or its keys get a transform)
 * Map keys are data (DESIGN.md §5): the label of a map covers its keys,
 * which are strings, so every transform that reaches them applies (encrypt
 * always writes its string token there); a drop or null of the keys drops
 * or nulls the whole map. Keys of an unlabelled map are unclassified unless
 * the route's classify: names "PATH{key}".
 * Unchanged bytes are never re-encoded: the executor keeps a pending range
 * [copy, p) and appends it to the output only when something changes. */

enum pk {
        PK_NULL = 0,
        PK_BOOL,
        PK_INT,
        PK_LONG,
        PK_FLOAT,
        PK_DOUBLE,
        PK_BYTES,
        PK_STRING,
        PK_FIXED,
        PK_ENUM,
        PK_RECORD,
        PK_ARRAY,
        PK_MAP,
        PK_UNION,
};

enum pa { PA_PASS = 0, PA_DROP, PA_NULLIFY, PA_TX, PA_DESCEND };

enum lt {
        LT_NONE = 0,
        LT_DATE,
        LT_TIME_MILLIS,
        LT_TIME_MICROS,
        LT_TS_MILLIS,
        LT_TS_MICROS,
        LT_TS_NANOS,
        LT_DECIMAL,
        LT_UUID,
};

struct pnode {
        uint8_t kind;
        uint8_t act;
        uint8_t logical;
        uint8_t unique;    /* MAP: the key transform can make keys equal */
        uint32_t n;        /* record fields, union branches, enum
                            * symbols, fixed size */
        uint32_t kids;     /* record/union: first entry in plan->kids;
                            * array/map: the item node; DROP/NULLIFY: the
                            * node that skips the source value */
        uint32_t min_size; /* fewest bytes a value of this type takes */
        uint32_t syms;     /* enum: first entry in plan->syms */
        /* TX: the leaf's transform; MAP: the keys' transform (NULL: keys
         * pass as they are). Borrowed from the policy. */
        const struct veil_transform *tx;
        const char *path; /* for error reports; NULL in skip trees */
};

struct pkid {
        uint32_t node;
        uint32_t out; /* union: the branch index in the derived union */
};

struct psym {
        const char *s;
        size_t len;
};

struct veil_plan {
        struct pnode *nodes;
        size_t n_nodes, cap_nodes;
        struct pkid *kids;
        size_t n_kids, cap_kids;
        struct psym *syms;
        size_t n_syms, cap_syms;
        char **strs; /* owned strings: paths and symbols */
        size_t n_strs, cap_strs;
        struct veil_plan_field *fields;
        size_t n_fields, cap_fields;
        size_t n_failclosed;
        uint32_t root;
        json_t *derived;
        char *derived_text;
        int source_id;
        int output_id;
        size_t max_output;
        bool needs_keys;
        bool needs_detect;
};

/* ---- the compiler's state (plan.c; check_plan.c names types with it) -- */

enum mode {
        M_CLASSIFY = 0, /* classify every position through the policy */
        M_KEEP,         /* keep everything (the T of a null transform) */
};

struct open_rec {
        const char *fullname;
        enum mode mode;
        const char *label;
        uint32_t node;
        bool recursed;
};

struct memo {
        avro_schema_t type;
        uint32_t node;
};

struct comp {
        struct veil_plan *plan;
        const struct veil_schema *schema;
        const struct veil_plan_opts *opts;
        struct open_rec open[VEIL_PLAN_MAX_DEPTH];
        int n_open;
        struct memo *memo;
        size_t n_memo, cap_memo;
        char *errstr;
        size_t errstr_size;
};

/* ---- helpers shared by plan.c, check_plan.c and plan_exec.c ---------------
 */

/* Grows array p (of *cap elements of size bytes) to hold need elements. */
void *veil_plan_grow(void *p, size_t *cap, size_t need, size_t size);
/* The plan kind of an avro-c type. */
enum pk veil_plan_pk_of(avro_type_t t);
/* The logical type a JSON type node declares, when it fits its base type. */
enum lt veil_plan_lt_of(enum pk kind, json_t *j, const char **namep);
/* Whether transform tx applies to a leaf of this kind and logical type. */
bool veil_plan_leaf_ok(enum veil_tx_kind tx, enum pk kind, enum lt lt);
/* The type's name for messages: "long (timestamp-millis)", "enum Color". */
void veil_plan_type_label(char *buf, size_t size, enum pk kind, enum lt lt,
                          const char *name);
/* t with named links followed. */
avro_schema_t veil_plan_resolve(avro_schema_t t);
/* A type node without its extra {"type": …} wrapping. */
json_t *veil_plan_jnorm(json_t *j);
/* The JSON definition of named type `t` met at JSON node `j` under
 * namespace `ns`, and its full name (caller frees). */
json_t *veil_plan_named_def(struct comp *c, avro_schema_t t, json_t *j,
                            const char *ns, char **fullp);
/* The namespace of a full name (caller frees). */
char *veil_plan_inner_ns(const char *fullname);

#endif
