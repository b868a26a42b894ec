/* test_alerts.c - alert thresholds over a sliding minute
 * (connectors/alerts.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "metrics.h"

static struct veil_alert_rule rules_v[] = {
        {VEIL_ALERT_LEAKS, NULL, 3, true},
        {VEIL_ALERT_DLQ, "bad-magic", 2, false},
};
static const struct veil_alert_rules rules = {rules_v, 2};

static const char *render(struct veil_metrics *m)
{
        static char buf[8192];
        size_t len;
        char *text = veil_metrics_render(m, &len);

        snprintf(buf, sizeof(buf), "%s", text);
        free(text);
        return buf;
}

Test(alerts, raises_at_threshold_and_clears_when_the_minute_passes)
{
        struct veil_metrics *m = veil_metrics_new();
        struct veil_metric *g =
                veil_metrics_family(m, VEIL_METRIC_GAUGE, "veil_alert_active",
                                    "h", "alert,purpose,code", NULL, 0);
        struct veil_alerts *a = veil_alerts_new(&rules, g);
        struct veil_alert_trip trips[4];
        int64_t t0 = 1000000000;

        cr_assert(veil_alerts_watch(a, VEIL_ALERT_LEAKS));
        cr_assert_not(veil_alerts_watch(a, VEIL_ALERT_CONSENT));
        veil_alerts_add(a, VEIL_ALERT_LEAKS, "analytics", 2, t0);
        cr_assert_eq(veil_alerts_eval(a, t0, 0, trips, 4), 0);
        cr_assert(strstr(render(m),
                         "veil_alert_active{alert=\"leaks_per_minute\","
                         "purpose=\"analytics\",code=\"\"} 0"),
                  "%s", render(m));
        veil_alerts_add(a, VEIL_ALERT_LEAKS, "analytics", 1, t0 + 30000);
        cr_assert_eq(veil_alerts_eval(a, t0 + 30000, 0, trips, 4), 1);
        cr_assert_str_eq(trips[0].purpose, "analytics");
        cr_assert_str_eq(trips[0].reason, "alert:leaks_per_minute");
        cr_assert(strstr(render(m), "purpose=\"analytics\",code=\"\"} 1"));
        /* not written yet: offered again; once done, not again */
        cr_assert_eq(veil_alerts_eval(a, t0 + 31000, 0, trips, 4), 1);
        veil_alerts_done(a, &trips[0]);
        cr_assert_eq(veil_alerts_eval(a, t0 + 32000, 0, trips, 4), 0);
        /* the first two leaks leave the window at t0 + 60 s */
        cr_assert_eq(veil_alerts_eval(a, t0 + 60000, 0, trips, 4), 0);
        cr_assert(strstr(render(m), "purpose=\"analytics\",code=\"\"} 0"));
        veil_alerts_destroy(a);
        veil_metrics_destroy(m);
}

Test(alerts, dlq_counts_only_its_code_and_does_not_trip)
{
        struct veil_metrics *m = veil_metrics_new();
        struct veil_metric *g =
                veil_metrics_family(m, VEIL_METRIC_GAUGE, "veil_alert_active",
                                    "h", "alert,purpose,code", NULL, 0);
        struct veil_alerts *a = veil_alerts_new(&rules, g);
        struct veil_alert_trip trips[4];
        int64_t t0 = 5000000;

        veil_alerts_add(a, VEIL_ALERT_DLQ, "truncated", 10, t0);
        cr_assert_eq(veil_alerts_eval(a, t0, 0, trips, 4), 0);
        cr_assert_null(strstr(render(m), "truncated"));
        veil_alerts_add(a, VEIL_ALERT_DLQ, "bad-magic", 2, t0);
        cr_assert_eq(veil_alerts_eval(a, t0, 0, trips, 4), 0); /* no halt */
        cr_assert(strstr(render(m), "{alert=\"dlq_per_minute\",purpose=\"\","
                                    "code=\"bad-magic\"} 1"),
                  "%s", render(m));
        veil_alerts_destroy(a);
        veil_metrics_destroy(m);
}

Test(alerts, evaluation_is_rate_limited)
{
        struct veil_alerts *a = veil_alerts_new(&rules, NULL);
        struct veil_alert_trip trips[4];

        veil_alerts_add(a, VEIL_ALERT_LEAKS, "p", 5, 10000);
        cr_assert_eq(veil_alerts_eval(a, 10000, 500, trips, 4), 1);
        cr_assert_eq(veil_alerts_eval(a, 10100, 500, trips, 4), 0);
        cr_assert_eq(veil_alerts_eval(a, 10600, 500, trips, 4), 1);
        veil_alerts_destroy(a);
}

Test(alerts, no_rules_no_work)
{
        struct veil_alerts *a = veil_alerts_new(NULL, NULL);
        struct veil_alert_trip trips[1];

        cr_assert_not(veil_alerts_watch(a, VEIL_ALERT_LEAKS));
        veil_alerts_add(a, VEIL_ALERT_LEAKS, "p", 5, 10000);
        cr_assert_eq(veil_alerts_eval(a, 10000, 0, trips, 1), 0);
        veil_alerts_destroy(a);
}
