/* test_alerts.c - alert thresholds over a sliding minute
 * (connectors/alerts.c), and the alerts: / halt_on: keys of the config
 * (every error with FILE:LINE:COL and the key path). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "alerts.h"
#include "config.h"
#include "metrics.h"
#include "tmpfile.h"
#include "veil.h"

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
        /* taken by one caller: not offered to the next one ... */
        cr_assert_eq(veil_alerts_eval(a, t0 + 31000, 0, trips, 4), 0);
        /* ... unless it was not written within 10 s; once done, not again */
        cr_assert_eq(veil_alerts_eval(a, t0 + 40000, 0, trips, 4), 1);
        veil_alerts_done(a, &trips[0]);
        cr_assert_eq(veil_alerts_eval(a, t0 + 51000, 0, trips, 4), 0);
        /* the first two leaks leave the window at t0 + 60 s */
        cr_assert_eq(veil_alerts_eval(a, t0 + 60000, 0, trips, 4), 0);
        cr_assert(strstr(render(m), "purpose=\"analytics\",code=\"\"} 0"));
        /* raised again: trips again */
        veil_alerts_add(a, VEIL_ALERT_LEAKS, "analytics", 3, t0 + 61000);
        cr_assert_eq(veil_alerts_eval(a, t0 + 61000, 0, trips, 4), 1);
        cr_assert(strstr(render(m), "purpose=\"analytics\",code=\"\"} 1"));
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
        /* too soon: nothing evaluated (the trip is not offered either) */
        cr_assert_eq(veil_alerts_eval(a, 10100, 500, trips, 4), 0);
        cr_assert_eq(veil_alerts_eval(a, 20000, 500, trips, 4), 1);
        cr_assert_eq(veil_alerts_eval(a, 20100, 500, trips, 4), 0);
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

/* ---- alerts: and halt_on: in the config --------------------------------- */

static const struct veil_config_opts no_key = {.skip_key = true};

#define BASE                                                                   \
        "classes:\n"                                                           \
        "  customer_id: { tier: internal }\n"                                  \
        "purposes:\n"                                                          \
        "  marketing:\n"                                                       \
        "    transforms: { public: keep }\n"

struct bad_case {
        char yaml[256];
        char msg[200]; /* after "FILE:" */
};

ParameterizedTestParameters(alerts, bad_config)
{
        static struct bad_case cases[] = {
                {BASE "alerts: { leaks_per_minute: 0 }\n",
                 "6:29: alerts.leaks_per_minute: expected an integer from 1 "
                 "to 9223372036854775807, got '0'"},
                {BASE "alerts: { leaks_per_minute: [1] }\n",
                 "6:29: alerts.leaks_per_minute: expected a whole number of "
                 "events per minute, got a list"},
                {BASE "alerts: { leak_per_minute: 1 }\n",
                 "6:11: alerts.leak_per_minute: unknown key (did you mean "
                 "'leaks_per_minute'?)"},
                {BASE "alerts: { dlq_per_minute: 5 }\n",
                 "6:27: alerts.dlq_per_minute: expected a map of veil.error "
                 "codes to events per minute ({ bad-magic: 100 }), got a "
                 "scalar"},
                {BASE "alerts: { dlq_per_minute: { \"Bad Magic\": 5 } }\n",
                 "6:29: alerts.dlq_per_minute.Bad Magic: 'Bad Magic' is not a "
                 "veil.error code (a-z 0-9 - _ .)"},
                {BASE "alerts: { dlq_per_minute: { bad-magic: x } }\n",
                 "6:40: alerts.dlq_per_minute.bad-magic: expected an integer "
                 "from 1 to 9223372036854775807, got 'x'"},
                {BASE "alerts: { leaks_per_minute: 1 }\n"
                      "halt_on: [leaks_per_minut]\n",
                 "7:11: halt_on[0]: 'leaks_per_minut' is not an alert "
                 "(leaks_per_minute, dlq_per_minute, "
                 "unclassified_per_minute, consent_drops_per_minute)"},
                {BASE "alerts: { leaks_per_minute: 1 }\n"
                      "halt_on: [consent_drops_per_minute]\n",
                 "7:11: halt_on[0]: 'consent_drops_per_minute' is not set "
                 "under alerts: (a halt_on alert needs its threshold)"},
                {BASE "halt_on: leaks_per_minute\n",
                 "6:10: halt_on: expected a list of alert names, got a "
                 "scalar"},
                {BASE "    guard: { on_leak: hal }\n",
                 "6:23: purposes.marketing.guard.on_leak: expected one of "
                 "redact, quarantine, halt, got 'hal' (did you mean "
                 "'halt'?)"},
        };

        return cr_make_param_array(struct bad_case, cases,
                                   sizeof(cases) / sizeof(cases[0]), NULL);
}

ParameterizedTest(struct bad_case *c, alerts, bad_config)
{
        char *path = test_write_tmp(c->yaml), err[1024] = "", want[1024];
        struct veil_config *config =
                veil_config_load(path, &no_key, err, sizeof(err));

        cr_assert_null(config, "loaded: %s", c->yaml);
        snprintf(want, sizeof(want), "%s:%s", path, c->msg);
        cr_expect_str_eq(err, want);
        unlink(path);
        free(path);
}

Test(alerts, config_values)
{
        char *path = test_write_tmp(
                BASE "    guard: { on_leak: halt }\n"
                     "topics: { control: my.control }\n"
                     "alerts:\n"
                     "  leaks_per_minute: 2\n"
                     "  dlq_per_minute: { bad-magic: 100, unknown-schema: 7 }\n"
                     "  consent_drops_per_minute: 9\n"
                     "halt_on: [dlq_per_minute, leaks_per_minute]\n");
        char err[1024] = "";
        struct veil_config *config =
                veil_config_load(path, &no_key, err, sizeof(err));
        const struct veil_alert_rules *r;
        size_t i, halts = 0;

        cr_assert_not_null(config, "%s", err);
        cr_assert_eq(config->policy.purposes[0].guard.on_leak, VEIL_LEAK_HALT);
        cr_assert_str_eq(config->topics.control, "my.control");
        r = &config->alerts;
        cr_assert_eq(r->n, 4);
        cr_assert_eq(r->v[0].kind, VEIL_ALERT_LEAKS);
        cr_assert_eq(r->v[0].threshold, 2);
        cr_assert_eq(r->v[1].kind, VEIL_ALERT_DLQ);
        cr_assert_str_eq(r->v[1].code, "bad-magic");
        cr_assert_eq(r->v[1].threshold, 100);
        cr_assert_str_eq(r->v[2].code, "unknown-schema");
        cr_assert_eq(r->v[3].kind, VEIL_ALERT_CONSENT);
        cr_assert_not(r->v[3].halt);
        for (i = 0; i < r->n; i++)
                halts += r->v[i].halt;
        cr_assert_eq(halts, 3);
        veil_config_destroy(config);
        unlink(path);
        free(path);
}

Test(alerts, config_defaults)
{
        char *path     = test_write_tmp(BASE);
        char err[1024] = "";
        struct veil_config *config =
                veil_config_load(path, &no_key, err, sizeof(err));

        cr_assert_not_null(config, "%s", err);
        cr_assert_eq(config->alerts.n, 0);
        cr_assert_str_eq(config->topics.control, "veil.control");
        veil_config_destroy(config);
        unlink(path);
        free(path);
}
