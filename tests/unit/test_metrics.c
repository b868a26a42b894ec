/* test_metrics.c - the Prometheus registry: exposition text, label
 * escaping, histograms, hidden gauges, and updates racing a scrape. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(struct veil_metrics *m)
{
        size_t len = 0;
        char *text = veil_metrics_render(m, &len);

        cr_assert_eq(strlen(text), len);
        return text;
}

Test(metrics, counter_with_labels_and_help)
{
        struct veil_metrics *m = veil_metrics_new();
        struct veil_metric *f  = veil_metrics_family(
                 m, VEIL_METRIC_COUNTER, "veil_records_out_total", "records out",
                 "route,purpose", NULL, 0);
        const char *a[]        = {"customers", "analytics"};
        const char *b[]        = {"customers", "marketing"};
        struct veil_series *sa = veil_metric_series(f, a);
        char *text;

        veil_series_add(sa, 3);
        veil_series_add(veil_metric_series(f, b), 1);
        /* The same labels give the same series. */
        cr_assert_eq(veil_metric_series(f, a), sa);
        veil_series_add(veil_metric_series(f, a), 2);
        cr_assert_eq(veil_series_count(sa), 5);
        text = render(m);
        cr_assert_str_eq(text, "# HELP veil_records_out_total records out\n"
                               "# TYPE veil_records_out_total counter\n"
                               "veil_records_out_total{route=\"customers\","
                               "purpose=\"analytics\"} 5\n"
                               "veil_records_out_total{route=\"customers\","
                               "purpose=\"marketing\"} 1\n");
        free(text);
        /* Registering again returns the family. */
        cr_assert_eq(veil_metrics_family(m, VEIL_METRIC_COUNTER,
                                         "veil_records_out_total", "x",
                                         "route,purpose", NULL, 0),
                     f);
        veil_metrics_destroy(m);
}

Test(metrics, label_values_and_help_are_escaped)
{
        struct veil_metrics *m = veil_metrics_new();
        struct veil_metric *f  = veil_metrics_family(m, VEIL_METRIC_GAUGE, "g",
                                                     "a \\ b\nc", "l", NULL, 0);
        const char *v[]        = {"q\"b\\s\nn"};
        char *text;

        veil_series_set(veil_metric_series(f, v), -7);
        text = render(m);
        cr_assert_str_eq(text, "# HELP g a \\\\ b\\nc\n"
                               "# TYPE g gauge\n"
                               "g{l=\"q\\\"b\\\\s\\nn\"} -7\n");
        free(text);
        veil_metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
        static const double b[] = {0.1, 1, 10};
        struct veil_metrics *m  = veil_metrics_new();
        struct veil_series *s   = veil_metric_series(
                  veil_metrics_family(m, VEIL_METRIC_HISTOGRAM, "h_seconds", "h",
                                      NULL, b, 3),
                  NULL);
        char *text;

        veil_series_observe(s, 0.05);
        veil_series_observe(s, 0.1); /* le is inclusive */
        veil_series_observe(s, 5);
        veil_series_observe(s, 50);
        text = render(m);
        cr_assert_str_eq(text, "# HELP h_seconds h\n"
                               "# TYPE h_seconds histogram\n"
                               "h_seconds_bucket{le=\"0.1\"} 2\n"
                               "h_seconds_bucket{le=\"1\"} 2\n"
                               "h_seconds_bucket{le=\"10\"} 3\n"
                               "h_seconds_bucket{le=\"+Inf\"} 4\n"
                               "h_seconds_sum 55.149999999999999\n"
                               "h_seconds_count 4\n");
        free(text);
        veil_metrics_destroy(m);
}

Test(metrics, hidden_gauges_come_back_when_set)
{
        struct veil_metrics *m = veil_metrics_new();
        struct veil_metric *f = veil_metrics_family(m, VEIL_METRIC_GAUGE, "lag",
                                                    "lag", "p", NULL, 0);
        const char *p0[] = {"0"}, *p1[] = {"1"};
        char *text;

        /* A gauge never set is not shown as a zero. */
        veil_metric_series(f, p1);
        veil_series_set(veil_metric_series(f, p0), 4);
        text = render(m);
        cr_assert_str_eq(text, "# HELP lag lag\n# TYPE lag gauge\n"
                               "lag{p=\"0\"} 4\n");
        free(text);
        veil_metric_hide_all(f);
        veil_series_set(veil_metric_series(f, p1), 0);
        text = render(m);
        cr_assert_str_eq(text, "# HELP lag lag\n# TYPE lag gauge\n"
                               "lag{p=\"1\"} 0\n");
        free(text);
        veil_metrics_destroy(m);
}

struct racer {
        struct veil_series *c, *h;
        int n;
};

static void *race(void *arg)
{
        struct racer *r = arg;
        int i;

        for (i = 0; i < r->n; i++) {
                veil_series_add(r->c, 1);
                veil_series_observe(r->h, 0.5);
        }
        return NULL;
}

/* Updates never lock: counts stay exact with writers on two threads while
 * a third renders. */
Test(metrics, updates_race_a_scrape)
{
        struct veil_metrics *m = veil_metrics_new();
        struct racer r;
        pthread_t t1, t2;
        int i;

        r.c = veil_metric_series(veil_metrics_family(m, VEIL_METRIC_COUNTER,
                                                     "c_total", "c", NULL, NULL,
                                                     0),
                                 NULL);
        r.h = veil_metric_series(
                veil_metrics_family(m, VEIL_METRIC_HISTOGRAM, "h", "h", NULL,
                                    veil_metrics_latency_buckets,
                                    veil_metrics_latency_n_buckets),
                NULL);
        r.n = 100000;
        pthread_create(&t1, NULL, race, &r);
        pthread_create(&t2, NULL, race, &r);
        for (i = 0; i < 20; i++)
                free(render(m));
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        cr_assert_eq(veil_series_count(r.c), 200000);
        cr_assert_eq(veil_series_count(r.h), 200000);
        {
                char *text = render(m);

                cr_assert(strstr(text, "c_total 200000\n"));
                cr_assert(strstr(text, "h_bucket{le=\"0.5\"} 200000\n"));
                cr_assert(strstr(text, "h_sum 100000\n"));
                free(text);
        }
        veil_metrics_destroy(m);
}
