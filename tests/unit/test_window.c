/* test_window.c - sliding-window counts (common/window.c). */
#include <criterion/criterion.h>

#include "window.h"

Test(window, counts_inside_the_window)
{
        struct veil_window w;

        veil_window_init(&w, 60);
        veil_window_add(&w, 1000000, 1);
        veil_window_add(&w, 1000500, 2);
        veil_window_add(&w, 1030000, 4);
        cr_assert_eq(veil_window_sum(&w, 1030000), 7);
        /* 59.9 s after the first second: still inside */
        cr_assert_eq(veil_window_sum(&w, 1059999), 7);
}

Test(window, old_events_slide_out)
{
        struct veil_window w;

        veil_window_init(&w, 60);
        veil_window_add(&w, 1000000, 1);
        veil_window_add(&w, 1030000, 4);
        /* the second 1000 leaves at 1060 */
        cr_assert_eq(veil_window_sum(&w, 1060000), 4);
        cr_assert_eq(veil_window_sum(&w, 1089999), 4);
        cr_assert_eq(veil_window_sum(&w, 1090000), 0);
}

Test(window, a_long_gap_empties_it)
{
        struct veil_window w;

        veil_window_init(&w, 10);
        veil_window_add(&w, 5000, 3);
        veil_window_add(&w, 6000, 3);
        cr_assert_eq(veil_window_sum(&w, 6000), 6);
        cr_assert_eq(veil_window_sum(&w, 100000000), 0);
        veil_window_add(&w, 100000000, 1);
        cr_assert_eq(veil_window_sum(&w, 100000000), 1);
}

Test(window, a_clock_going_back_counts_in_the_newest_second)
{
        struct veil_window w;

        veil_window_init(&w, 5);
        veil_window_add(&w, 10000, 1);
        veil_window_add(&w, 9000, 1);
        cr_assert_eq(veil_window_sum(&w, 10000), 2);
        cr_assert_eq(veil_window_sum(&w, 14999), 2);
        cr_assert_eq(veil_window_sum(&w, 15000), 0);
}

Test(window, span_is_clamped)
{
        struct veil_window w;

        veil_window_init(&w, 0);
        cr_assert_eq(w.span_s, 1);
        veil_window_init(&w, 100000);
        cr_assert_eq(w.span_s, VEIL_WINDOW_MAX_S);
        /* a one-second window: only the current second counts */
        veil_window_init(&w, 1);
        veil_window_add(&w, 1000, 5);
        cr_assert_eq(veil_window_sum(&w, 1999), 5);
        cr_assert_eq(veil_window_sum(&w, 2000), 0);
}

/* Every event counts exactly while it is inside the window: checked
 * against a brute-force list. */
Test(window, matches_brute_force)
{
        struct veil_window w;
        int64_t at[400];
        uint64_t n[400];
        size_t i, k;

        veil_window_init(&w, 7);
        for (i = 0; i < 400; i++) {
                at[i] = 1000 * (int64_t)(i / 3 + (i % 5 == 0 ? 2 : 0)) +
                        (int64_t)(i * 37 % 1000);
                if (i && at[i] < at[i - 1])
                        at[i] = at[i - 1];
                n[i] = i % 4 + 1;
                veil_window_add(&w, at[i], n[i]);
                {
                        uint64_t want = 0;

                        for (k = 0; k <= i; k++)
                                if (at[k] / 1000 > at[i] / 1000 - 7)
                                        want += n[k];
                        cr_assert_eq(veil_window_sum(&w, at[i]), want,
                                     "at step %zu", i);
                }
        }
}
