/* window.h - a count over a sliding window of time (the last minute, by
 * default), kept as per-second buckets: what `alerts:` thresholds are
 * measured on. Not thread-safe: the caller holds its own lock. */
#ifndef VEIL_COMMON_WINDOW_H
#define VEIL_COMMON_WINDOW_H

#include <stdint.h>

/* Buckets kept: a window is at most this many seconds long. */
#define VEIL_WINDOW_MAX_S 300

struct veil_window {
        int span_s;   /* window length in seconds (1..VEIL_WINDOW_MAX_S) */
        int64_t head; /* the second of the newest bucket (epoch s) */
        uint64_t sum; /* of the buckets inside the window */
        uint64_t buckets[VEIL_WINDOW_MAX_S];
};

/* An empty window of `span_s` seconds (clamped to 1..VEIL_WINDOW_MAX_S). */
void veil_window_init(struct veil_window *w, int span_s);

/* Counts n events at now_ms. Events older than the newest bucket (a clock
 * that went back) count in the newest bucket. */
void veil_window_add(struct veil_window *w, int64_t now_ms, uint64_t n);

/* Events in the window ending at now_ms: the current second and the
 * span_s - 1 before it. */
uint64_t veil_window_sum(struct veil_window *w, int64_t now_ms);

#endif
