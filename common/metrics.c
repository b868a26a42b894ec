/* metrics.c - the Prometheus registry: families and series in append-only
 * lists (a lock only to add or walk them), values in relaxed atomics so
 * the record path never waits for a scrape. */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

const double veil_metrics_latency_buckets[] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t veil_metrics_latency_n_buckets =
        sizeof(veil_metrics_latency_buckets) /
        sizeof(veil_metrics_latency_buckets[0]);

struct veil_series {
        struct veil_metric *family;
        char *values[VEIL_METRIC_MAX_LABELS];
        /* counter: the count; gauge: the value's bits (int64); histogram:
         * the number of observations */
        _Atomic uint64_t value;
        _Atomic uint64_t sum_bits; /* histogram: the sum, as double bits */
        _Atomic uint64_t buckets[VEIL_METRIC_MAX_BUCKETS + 1]; /* not
                                                                * cumulative */
        atomic_bool visible;
        struct veil_series *next;
};

struct veil_metric {
        struct veil_metrics *m;
        enum veil_metric_type type;
        char *name, *help;
        char *labels[VEIL_METRIC_MAX_LABELS];
        size_t n_labels;
        double bounds[VEIL_METRIC_MAX_BUCKETS];
        size_t n_bounds;
        struct veil_series *series, **tail;
        struct veil_metric *next;
};

struct veil_metrics {
        pthread_mutex_t lock;
        struct veil_metric *families, **tail;
};

struct veil_metrics *veil_metrics_new(void)
{
        struct veil_metrics *m = veil_calloc(1, sizeof(*m));

        pthread_mutex_init(&m->lock, NULL);
        m->tail = &m->families;
        return m;
}

void veil_metrics_destroy(struct veil_metrics *m)
{
        size_t i;

        if (!m)
                return;
        while (m->families) {
                struct veil_metric *f = m->families;

                m->families = f->next;
                while (f->series) {
                        struct veil_series *s = f->series;

                        f->series = s->next;
                        for (i = 0; i < f->n_labels; i++)
                                free(s->values[i]);
                        free(s);
                }
                for (i = 0; i < f->n_labels; i++)
                        free(f->labels[i]);
                free(f->name);
                free(f->help);
                free(f);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':' and no leading "__"). */
static bool valid_name(const char *s, size_t n, bool label)
{
        size_t i;

        if (n == 0)
                return false;
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (!(isalpha(c) || c == '_' || (!label && c == ':') ||
                      (i > 0 && isdigit(c))))
                        return false;
        }
        return !(label && n >= 2 && s[0] == '_' && s[1] == '_');
}

static void misuse(const char *what, const char *name)
{
        /* A metric definition is code, not input: fail loudly in tests. */
        fprintf(stderr, "veil: metrics: %s: %s\n", what, name);
        abort();
}

struct veil_metric *veil_metrics_family(struct veil_metrics *m,
                                        enum veil_metric_type type,
                                        const char *name, const char *help,
                                        const char *labels,
                                        const double *buckets, size_t n_buckets)
{
        struct veil_metric *f;
        const char *p;
        size_t i;

        if (!valid_name(name, strlen(name), false))
                misuse("invalid metric name", name);
        pthread_mutex_lock(&m->lock);
        for (f = m->families; f; f = f->next)
                if (!strcmp(f->name, name))
                        break;
        pthread_mutex_unlock(&m->lock);
        if (f) {
                if (f->type != type)
                        misuse("registered twice with another type", name);
                return f;
        }
        f       = veil_calloc(1, sizeof(*f));
        f->m    = m;
        f->type = type;
        f->name = veil_strdup(name);
        f->help = veil_strdup(help ? help : "");
        f->tail = &f->series;
        for (p = labels; p && *p;) {
                size_t n = strcspn(p, ",");

                if (f->n_labels == VEIL_METRIC_MAX_LABELS ||
                    !valid_name(p, n, true))
                        misuse("invalid or too many labels", name);
                f->labels[f->n_labels++] = veil_strndup(p, n);
                p += n;
                if (*p == ',')
                        p++;
        }
        if (type == VEIL_METRIC_HISTOGRAM) {
                if (n_buckets == 0 || n_buckets > VEIL_METRIC_MAX_BUCKETS)
                        misuse("histogram needs 1 to 16 buckets", name);
                for (i = 0; i < n_buckets; i++) {
                        if (i > 0 && !(buckets[i] > buckets[i - 1]))
                                misuse("buckets must ascend", name);
                        f->bounds[i] = buckets[i];
                }
                f->n_bounds = n_buckets;
        }
        pthread_mutex_lock(&m->lock);
        *m->tail = f;
        m->tail  = &f->next;
        pthread_mutex_unlock(&m->lock);
        return f;
}

struct veil_series *veil_metric_series(struct veil_metric *f,
                                       const char *const *values)
{
        struct veil_series *s;
        size_t i;

        pthread_mutex_lock(&f->m->lock);
        for (s = f->series; s; s = s->next) {
                for (i = 0; i < f->n_labels; i++)
                        if (strcmp(s->values[i], values[i]))
                                break;
                if (i == f->n_labels)
                        goto out;
        }
        s         = veil_calloc(1, sizeof(*s));
        s->family = f;
        for (i = 0; i < f->n_labels; i++)
                s->values[i] = veil_strdup(values[i] ? values[i] : "");
        atomic_init(&s->value, 0);
        atomic_init(&s->sum_bits, 0);
        for (i = 0; i <= VEIL_METRIC_MAX_BUCKETS; i++)
                atomic_init(&s->buckets[i], 0);
        /* A gauge that says nothing yet is not shown as a zero. */
        atomic_init(&s->visible, f->type != VEIL_METRIC_GAUGE);
        *f->tail = s;
        f->tail  = &s->next;
out:
        pthread_mutex_unlock(&f->m->lock);
        return s;
}

void veil_series_add(struct veil_series *s, uint64_t n)
{
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void veil_series_set(struct veil_series *s, int64_t v)
{
        uint64_t bits;

        memcpy(&bits, &v, sizeof(bits));
        atomic_store_explicit(&s->value, bits, memory_order_relaxed);
        atomic_store_explicit(&s->visible, true, memory_order_relaxed);
}

void veil_series_observe(struct veil_series *s, double v)
{
        const struct veil_metric *f = s->family;
        uint64_t old, new;
        double sum;
        size_t i;

        for (i = 0; i < f->n_bounds && v > f->bounds[i]; i++)
                ;
        atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
        old = atomic_load_explicit(&s->sum_bits, memory_order_relaxed);
        do {
                memcpy(&sum, &old, sizeof(sum));
                sum += v;
                memcpy(&new, &sum, sizeof(new));
        } while (!atomic_compare_exchange_weak_explicit(&s->sum_bits, &old, new,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
        atomic_fetch_add_explicit(&s->value, 1, memory_order_relaxed);
}

uint64_t veil_series_count(const struct veil_series *s)
{
        return atomic_load_explicit(&((struct veil_series *)s)->value,
                                    memory_order_relaxed);
}

void veil_metric_hide_all(struct veil_metric *f)
{
        struct veil_series *s;

        pthread_mutex_lock(&f->m->lock);
        for (s = f->series; s; s = s->next)
                atomic_store_explicit(&s->visible, false, memory_order_relaxed);
        pthread_mutex_unlock(&f->m->lock);
}

/* ---- exposition --------------------------------------------------------- */

/* HELP text escapes '\' and newline; label values also '"'. */
static void put_escaped(FILE *fp, const char *s, bool quote)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", fp);
                else if (*s == '\n')
                        fputs("\\n", fp);
                else if (quote && *s == '"')
                        fputs("\\\"", fp);
                else
                        fputc(*s, fp);
        }
}

static void put_double(FILE *fp, double v)
{
        if (isinf(v))
                fputs(v > 0 ? "+Inf" : "-Inf", fp);
        else if (isnan(v))
                fputs("NaN", fp);
        else
                fprintf(fp, "%.17g", v);
}

/* `name{a="x",b="y"[,le="…"]}` */
static void put_series_name(FILE *fp, const struct veil_series *s,
                            const char *suffix, const char *le)
{
        const struct veil_metric *f = s->family;
        size_t i;

        fprintf(fp, "%s%s", f->name, suffix);
        if (f->n_labels == 0 && !le)
                return;
        fputc('{', fp);
        for (i = 0; i < f->n_labels; i++) {
                fprintf(fp, "%s%s=\"", i ? "," : "", f->labels[i]);
                put_escaped(fp, s->values[i], true);
                fputc('"', fp);
        }
        if (le)
                fprintf(fp, "%sle=\"%s\"", f->n_labels ? "," : "", le);
        fputc('}', fp);
}

static void put_histogram(FILE *fp, struct veil_series *s)
{
        const struct veil_metric *f = s->family;
        uint64_t cum                = 0, bits;
        char le[64];
        double sum;
        size_t i;

        for (i = 0; i <= f->n_bounds; i++) {
                cum += atomic_load_explicit(&s->buckets[i],
                                            memory_order_relaxed);
                if (i < f->n_bounds)
                        snprintf(le, sizeof(le), "%g", f->bounds[i]);
                else
                        snprintf(le, sizeof(le), "+Inf");
                put_series_name(fp, s, "_bucket", le);
                fprintf(fp, " %" PRIu64 "\n", cum);
        }
        bits = atomic_load_explicit(&s->sum_bits, memory_order_relaxed);
        memcpy(&sum, &bits, sizeof(sum));
        put_series_name(fp, s, "_sum", NULL);
        fputc(' ', fp);
        put_double(fp, sum);
        fputc('\n', fp);
        /* The count is the +Inf bucket: the two always agree, even while
         * observations land during the scrape. */
        put_series_name(fp, s, "_count", NULL);
        fprintf(fp, " %" PRIu64 "\n", cum);
}

char *veil_metrics_render(struct veil_metrics *m, size_t *lenp)
{
        static const char *const types[] = {"counter", "gauge", "histogram"};
        struct veil_metric *f;
        struct veil_series *s;
        char *text = NULL;
        size_t len = 0;
        FILE *fp;

        fp = open_memstream(&text, &len);
        if (!fp)
                abort();
        pthread_mutex_lock(&m->lock);
        for (f = m->families; f; f = f->next) {
                fprintf(fp, "# HELP %s ", f->name);
                put_escaped(fp, f->help, false);
                fprintf(fp, "\n# TYPE %s %s\n", f->name, types[f->type]);
                for (s = f->series; s; s = s->next) {
                        uint64_t v;

                        if (!atomic_load_explicit(&s->visible,
                                                  memory_order_relaxed))
                                continue;
                        if (f->type == VEIL_METRIC_HISTOGRAM) {
                                put_histogram(fp, s);
                                continue;
                        }
                        v = atomic_load_explicit(&s->value,
                                                 memory_order_relaxed);
                        put_series_name(fp, s, "", NULL);
                        if (f->type == VEIL_METRIC_GAUGE) {
                                int64_t g;

                                memcpy(&g, &v, sizeof(g));
                                fprintf(fp, " %" PRId64 "\n", g);
                        } else {
                                fprintf(fp, " %" PRIu64 "\n", v);
                        }
                }
        }
        pthread_mutex_unlock(&m->lock);
        if (fclose(fp))
                abort();
        if (lenp)
                *lenp = len;
        return text;
}
