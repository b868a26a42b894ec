/* source.h - the source connector: one consumer-group member reading the
 * routes' source topics read_committed with manual offsets, and what it
 * owns — the assignment, where the open batch started on each partition
 * (what an abort rewinds to), end-of-partition flags (--once), and the
 * positions a transaction commits. */
#ifndef VEIL_CONNECTORS_SOURCE_H
#define VEIL_CONNECTORS_SOURCE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct veil_source;

/* The librdkafka callbacks of the consumer; opaque is theirs. */
struct veil_source_hooks {
        void (*rebalance)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, void *opaque);
        void (*log)(const rd_kafka_t *rk, int level, const char *fac,
                    const char *buf);
        void (*error)(rd_kafka_t *rk, int err, const char *reason,
                      void *opaque);
        int (*stats)(rd_kafka_t *rk, char *json, size_t json_len,
                     void *opaque); /* NULL: no statistics */
        void *opaque;
};

/* A member of config's group named client_id, subscribed to every route's
 * source. `eof`: report end of partition (--once). config is borrowed.
 * NULL with errstr. */
struct veil_source *veil_source_new(const struct veil_config *config,
                                    const char *client_id, bool eof,
                                    const struct veil_source_hooks *hooks,
                                    char *errstr, size_t errstr_size);
/* Leaves the group (the last revocation runs) and destroys the consumer. */
void veil_source_destroy(struct veil_source *src);

rd_kafka_t *veil_source_consumer(struct veil_source *src);

/* Partitions assigned / revoked (from the rebalance callback). */
void veil_source_assigned(struct veil_source *src,
                          const rd_kafka_topic_partition_list_t *list);
void veil_source_revoked(struct veil_source *src,
                         const rd_kafka_topic_partition_list_t *list);
size_t veil_source_count(const struct veil_source *src);

/* A record consumed into the open batch (clears the partition's EOF). */
void veil_source_note(struct veil_source *src, const char *topic,
                      int32_t partition, int64_t offset);
/* End of a partition reached. */
void veil_source_eof(struct veil_source *src, const char *topic,
                     int32_t partition);
/* Every assigned partition read to its end (false with none assigned). */
bool veil_source_all_eof(const struct veil_source *src);

/* The batch committed: forget where it started. */
void veil_source_batch_done(struct veil_source *src);
/* The batch was aborted: seek each partition back to where it started,
 * so that it is read again. 0 or VEIL_ENET with errstr. */
int veil_source_rewind(struct veil_source *src, char *errstr,
                       size_t errstr_size);

/* The next offsets of the assignment, for send_offsets_to_transaction
 * (caller destroys). NULL when the assignment cannot be read. */
rd_kafka_topic_partition_list_t *veil_source_positions(struct veil_source *src);

#endif
