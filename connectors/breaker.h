/* breaker.h - the purposes' circuit breaker (`guard: { on_leak: halt }`,
 * `halt_on:`): which purposes are halted. The state lives in Kafka, on the
 * compacted control topic (topics.control), so a halt survives restarts
 * and every worker of the group sees it; each worker reads the topic back
 * and follows it (a resume written by `veil guard resume` included)
 * without a restart. */
#ifndef VEIL_CONNECTORS_BREAKER_H
#define VEIL_CONNECTORS_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

/* One control record. Key "halt/PURPOSE"; value JSON
 *   {"v":1,"kind":"halt","purpose":P,"state":"halted"|"resumed",
 *    "reason":R,"by":WHO,"at":EPOCH_MS,"source":"TOPIC/PARTITION/OFFSET"}
 * reason: "leak" (on_leak: halt) or "alert:NAME" (halt_on), "resume" for
 * a resume; by: the transactional id that tripped it, or "veil guard
 * resume"; source: the record that tripped it ("" otherwise). Names and
 * positions only, never a value. The newest record of a key wins (the
 * topic is compacted). */
#define VEIL_BREAKER_NAME_MAX 128
struct veil_breaker_state {
        char purpose[VEIL_BREAKER_NAME_MAX];
        bool halted;
        char reason[VEIL_BREAKER_NAME_MAX];
        char by[VEIL_BREAKER_NAME_MAX];
        int64_t at_ms;
        char source[512];
};

/* The record of `s`: *keyp and *valuep are allocated (free()). */
void veil_breaker_encode(const struct veil_breaker_state *s, char **keyp,
                         size_t *key_len, char **valuep, size_t *value_len);
/* Reads a consumed control record (untrusted bytes). 0, or VEIL_EINVAL
 * with errstr naming what is wrong (never the bytes). A record whose key
 * is not "halt/…" is VEIL_ENOTFOUND (another kind: skipped). */
int veil_breaker_decode(const void *key, size_t key_len, const void *value,
                        size_t value_len, struct veil_breaker_state *s,
                        char *errstr, size_t errstr_size);

/* Can any purpose of config be halted (a guard with on_leak: halt, or an
 * alert in halt_on)? Only then does a worker need the control topic. */
bool veil_breaker_needed(const struct veil_config *config);

struct veil_breaker;

/* The breaker of config's control topic (config borrowed for the
 * breaker's life: only its kafka settings and topic name are used).
 * `gauge` (may be NULL) is the veil_purpose_halted{purpose} family. Reads
 * the topic to its end before it returns (so a restarted worker starts
 * halted), then a thread follows it. With no control topic configured
 * every purpose stays open. NULL with errstr (the topic is missing, Kafka
 * unreachable). */
struct veil_breaker *veil_breaker_new(const struct veil_config *config,
                                      struct veil_metric *gauge, char *errstr,
                                      size_t errstr_size);
void veil_breaker_destroy(struct veil_breaker *b);

/* Changes whenever any purpose's state changes: callers cache
 * veil_breaker_halted per purpose and look again when it moves. */
unsigned veil_breaker_gen(const struct veil_breaker *b);
bool veil_breaker_halted(struct veil_breaker *b, const char *purpose);

/* This worker's own transition, once the transaction that wrote its
 * record committed (the thread would see it too, later). */
void veil_breaker_set(struct veil_breaker *b,
                      const struct veil_breaker_state *s);

/* Transitions read from the topic that this worker (transactional ids
 * GROUP-INSTANCE[-n]) did not write itself (another worker's halt, a
 * resume): taken by the caller, which audits
 * them. Returns how many were written to out (at most max). */
size_t veil_breaker_take(struct veil_breaker *b, struct veil_breaker_state *out,
                         size_t max);

/* Test hook: reads new control records now instead of waiting for the
 * thread (0 or VEIL_E* with errstr). */
int veil_breaker_poll(struct veil_breaker *b, int timeout_ms, char *errstr,
                      size_t errstr_size);

#endif
