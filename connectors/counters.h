/* counters.h - metric counts that settle with the transaction: what a
 * batch adds to a series is held until the batch commits, and dropped when
 * it aborts (the batch is processed again and counted then). */
#ifndef VEIL_CONNECTORS_COUNTERS_H
#define VEIL_CONNECTORS_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

struct veil_counters;
struct veil_counter;

/* Per pipeline (single-threaded); the series live in a shared registry
 * whose values are atomic. */
struct veil_counters *veil_counters_new(void);
void veil_counters_destroy(struct veil_counters *c);

/* The counter of one series of `family` (labels `values`), made once. */
struct veil_counter *veil_counter_get(struct veil_counters *c,
                                      struct veil_metric *family,
                                      const char *const *values);

/* Adds n inside the open batch. */
void veil_counter_add(struct veil_counters *c, struct veil_counter *ct,
                      uint64_t n);

/* The batch committed (add = true) or aborted. */
void veil_counters_settle(struct veil_counters *c, bool add);

#endif
