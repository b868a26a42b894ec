/* counters.c - metric counts settled on commit (counters.h). */
#include <stdlib.h>

#include "counters.h"
#include "util.h"

struct veil_counter {
        struct veil_series *s;
        uint64_t n;
        bool touched;
        struct veil_counter *next; /* every counter, for freeing */
};

struct veil_counters {
        struct veil_counter *all;
        struct veil_counter **touched; /* with counts in the open batch */
        size_t n_touched, cap_touched;
};

struct veil_counters *veil_counters_new(void)
{
        return veil_calloc(1, sizeof(struct veil_counters));
}

void veil_counters_destroy(struct veil_counters *c)
{
        if (!c)
                return;
        while (c->all) {
                struct veil_counter *ct = c->all;

                c->all = ct->next;
                free(ct);
        }
        free(c->touched);
        free(c);
}

struct veil_counter *veil_counter_get(struct veil_counters *c,
                                      struct veil_metric *family,
                                      const char *const *values)
{
        struct veil_series *s = veil_metric_series(family, values);
        struct veil_counter *ct;

        for (ct = c->all; ct; ct = ct->next)
                if (ct->s == s)
                        return ct;
        ct       = veil_calloc(1, sizeof(*ct));
        ct->s    = s;
        ct->next = c->all;
        c->all   = ct;
        return ct;
}

void veil_counter_add(struct veil_counters *c, struct veil_counter *ct,
                      uint64_t n)
{
        if (!ct->touched) {
                if (c->n_touched == c->cap_touched) {
                        c->cap_touched =
                                c->cap_touched ? 2 * c->cap_touched : 32;
                        c->touched = veil_realloc(c->touched,
                                                  c->cap_touched *
                                                          sizeof(*c->touched));
                }
                c->touched[c->n_touched++] = ct;
                ct->touched                = true;
        }
        ct->n += n;
}

void veil_counters_settle(struct veil_counters *c, bool add)
{
        size_t i;

        for (i = 0; i < c->n_touched; i++) {
                struct veil_counter *ct = c->touched[i];

                if (add)
                        veil_series_add(ct->s, ct->n);
                ct->n       = 0;
                ct->touched = false;
        }
        c->n_touched = 0;
}
