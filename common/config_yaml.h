/* config_yaml.h - the config loader's YAML walker (config_yaml.c), shared
 * with the section parsers of config.c. Private to the loader: the public
 * API is config.h. */
#ifndef VEIL_COMMON_CONFIG_YAML_H
#define VEIL_COMMON_CONFIG_YAML_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config.h"

#define MAX_TOPIC_LEN 249

/* State of one load: the document, where we are in it (for messages) and
 * what the later passes need to point at. */
struct loader {
        const char *file; /* as the caller named it: messages use it */
        const char *text;
        size_t text_len;
        yaml_document_t doc;
        bool have_doc;
        const struct veil_config_opts *opts;
        struct veil_config *config;
        rd_kafka_conf_t *kconf; /* throwaway, validates kafka: */
        yaml_node_t *keys_node, *key_file_node, *key_id_node, *active_node;
        yaml_node_t *ring_node;
        yaml_node_t **ring_nodes; /* the id of each keys.ring entry */
        char path[512];
        size_t path_len;
        char *errstr;
        size_t errstr_size;
};

/* A known key of a map: its handler gets the value node. Handlers run in
 * table order, not document order, so that `routes` can check names that
 * `classes` and `purposes` define wherever they appear in the file. */
struct key_spec {
        const char *name;
        int (*parse)(struct loader *ld, yaml_node_t *node, void *obj);
        bool required;
};

/* A user-named entry of a map (a class, a purpose, a kafka property…). */
typedef int (*entry_fn)(struct loader *ld, yaml_node_t *key, yaml_node_t *value,
                        void *obj);

/* "Did you mean": the closest candidate within edit distance 2. */
struct suggest {
        const char *word;
        const char *best;
        unsigned dist;
        char text[160];
};

/* ---- messages ------------------------------------------------------------ */

/* The key path of messages: push a key or a list index (returns the old
 * length), pop back to it. */
size_t veil_yaml_path_push(struct loader *ld, const char *key);
size_t veil_yaml_path_push_index(struct loader *ld, size_t i);
void veil_yaml_path_pop(struct loader *ld, size_t old);

/* "FILE:LINE:COL: key.path: message" at the node (1-based positions);
 * returns VEIL_ECONFIG. */
int veil_yaml_fail(struct loader *ld, const yaml_node_t *node, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

/* "Did you mean": feed candidates, then the text to append ("" if none
 * is close). */
void veil_yaml_suggest_init(struct suggest *sg, const char *word);
void veil_yaml_suggest_try(struct suggest *sg, const char *cand);
const char *veil_yaml_suggest_text(struct suggest *sg);

/* ---- nodes and scalars ----------------------------------------------------
 */

yaml_node_t *veil_yaml_node_at(struct loader *ld, int idx);
const char *veil_yaml_scalar(const yaml_node_t *node);
bool veil_yaml_is_null(const yaml_node_t *node);
/* "a map", "a list", "a scalar", "nothing": for messages. */
const char *veil_yaml_kind_name(const yaml_node_t *node);
size_t veil_yaml_map_size(const yaml_node_t *node);

/* A non-null scalar without NUL bytes (C strings cannot carry them). */
int veil_yaml_get_scalar(struct loader *ld, yaml_node_t *node, const char *what,
                         const char **out);
int veil_yaml_get_string(struct loader *ld, yaml_node_t *node,
                         const char **out);
/* Replaces *dst by the node's string; a null node leaves NULL when
 * `nullable` (an optional setting explicitly left empty). */
int veil_yaml_set_string(struct loader *ld, yaml_node_t *node, char **dst,
                         bool nullable);
int veil_yaml_get_int(struct loader *ld, yaml_node_t *node, int64_t min,
                      int64_t max, int64_t *out);
int veil_yaml_get_bool(struct loader *ld, yaml_node_t *node, bool *out);
/* One of `names` (a NULL-terminated list) → its index. */
int veil_yaml_get_enum(struct loader *ld, yaml_node_t *node,
                       const char *const *names, int *out);
int veil_yaml_get_duration(struct loader *ld, yaml_node_t *node, int64_t *msp);
/* Kafka's own rule: 1-249 of [a-zA-Z0-9._-]. */
int veil_yaml_get_topic(struct loader *ld, yaml_node_t *node, const char **out);
/* A path from the file: absolute as is, else against the file's folder
 * (caller frees). */
char *veil_yaml_resolve_path(struct loader *ld, const char *p);

/* ---- maps and the document ------------------------------------------------
 */

/* Every key of a map must be a non-empty scalar and appear once. */
int veil_yaml_check_keys(struct loader *ld, yaml_node_t *map);
/* A map whose keys are Veil's: unknown keys are errors (with a suggestion),
 * required ones must be there, handlers run in `specs` order. A null value
 * is an empty map. */
int veil_yaml_walk_map(struct loader *ld, yaml_node_t *map,
                       const struct key_spec *specs, void *obj);
/* A map whose keys the user names: fn per entry, in document order. */
int veil_yaml_each_entry(struct loader *ld, yaml_node_t *map, entry_fn fn,
                         void *obj);
/* Parses ld->text into ld->doc: one document whose root is a map. */
int veil_yaml_parse_document(struct loader *ld);

#endif
