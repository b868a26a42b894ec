/* alert.c - the names of the `alerts:` thresholds (alert.h). */
#include <stdlib.h>
#include <string.h>

#include "alert.h"

static const char *const names[VEIL_ALERT_KINDS] = {
        [VEIL_ALERT_LEAKS]        = "leaks_per_minute",
        [VEIL_ALERT_DLQ]          = "dlq_per_minute",
        [VEIL_ALERT_UNCLASSIFIED] = "unclassified_per_minute",
        [VEIL_ALERT_CONSENT]      = "consent_drops_per_minute",
};

const char *veil_alert_name(enum veil_alert_kind kind)
{
        return (unsigned)kind < VEIL_ALERT_KINDS ? names[kind] : "?";
}

int veil_alert_kind_of(const char *name)
{
        int k;

        for (k = 0; k < VEIL_ALERT_KINDS; k++)
                if (!strcmp(names[k], name))
                        return k;
        return -1;
}

bool veil_alert_per_purpose(enum veil_alert_kind kind)
{
        return kind != VEIL_ALERT_DLQ;
}

void veil_alert_rules_free(struct veil_alert_rules *r)
{
        size_t i;

        for (i = 0; i < r->n; i++)
                free(r->v[i].code);
        free(r->v);
        r->v = NULL;
        r->n = 0;
}
