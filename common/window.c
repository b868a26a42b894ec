/* window.c - sliding-window counts in per-second buckets (window.h). A
 * ring of seconds: moving the head forward zeroes the buckets it passes,
 * so adding and summing cost O(1) amortised and memory is fixed. */
#include <string.h>

#include "window.h"

void veil_window_init(struct veil_window *w, int span_s)
{
        memset(w, 0, sizeof(*w));
        if (span_s < 1)
                span_s = 1;
        if (span_s > VEIL_WINDOW_MAX_S)
                span_s = VEIL_WINDOW_MAX_S;
        w->span_s = span_s;
}

/* Moves the head to second `s`, dropping what leaves the window. */
static void advance(struct veil_window *w, int64_t s)
{
        int64_t gap = s - w->head;
        int64_t i;

        if (gap <= 0)
                return;
        if (gap >= w->span_s) {
                memset(w->buckets, 0, sizeof(w->buckets));
                w->sum = 0;
        } else {
                for (i = 1; i <= gap; i++) {
                        uint64_t *b = &w->buckets[(w->head + i) % w->span_s];

                        w->sum -= *b;
                        *b = 0;
                }
        }
        w->head = s;
}

static int64_t second_of(int64_t now_ms)
{
        return now_ms >= 0 ? now_ms / 1000 : 0;
}

void veil_window_add(struct veil_window *w, int64_t now_ms, uint64_t n)
{
        advance(w, second_of(now_ms));
        w->buckets[w->head % w->span_s] += n;
        w->sum += n;
}

uint64_t veil_window_sum(struct veil_window *w, int64_t now_ms)
{
        advance(w, second_of(now_ms));
        return w->sum;
}
