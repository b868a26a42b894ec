/* metrics.h - a small Prometheus registry: counter, gauge and histogram
 * families with labels, lock-free updates, text exposition format 0.0.4. */
#ifndef VEIL_COMMON_METRICS_H
#define VEIL_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum veil_metric_type {
        VEIL_METRIC_COUNTER = 0,
        VEIL_METRIC_GAUGE,
        VEIL_METRIC_HISTOGRAM,
};

/* At most this many labels per family. */
#define VEIL_METRIC_MAX_LABELS 4
/* At most this many histogram buckets (without +Inf). */
#define VEIL_METRIC_MAX_BUCKETS 16

struct veil_metrics; /* the registry */
struct veil_metric;  /* one family: name, help, type, label names */
struct veil_series;  /* one labelled child of a family */

/* Upper bounds (seconds) of the latency histograms: 1 ms … 10 s. */
extern const double veil_metrics_latency_buckets[];
extern const size_t veil_metrics_latency_n_buckets;

struct veil_metrics *veil_metrics_new(void);
/* Frees the registry with its families and series; nothing may use them
 * (nor render) any more. NULL is a no-op. */
void veil_metrics_destroy(struct veil_metrics *m);

/* Registers a family (or returns the one already registered under `name`,
 * which must then have the same type and labels). `labels` is a
 * comma-separated list of label names ("route,purpose", "" or NULL for
 * none). Histograms take their bucket upper bounds, ascending. Names,
 * labels and buckets are the program's own: an invalid one aborts. Owned
 * by the registry. */
struct veil_metric *
veil_metrics_family(struct veil_metrics *m, enum veil_metric_type type,
                    const char *name, const char *help, const char *labels,
                    const double *buckets, size_t n_buckets);

/* The series of `family` with these label values (as many as the family
 * has labels, in order; any bytes, escaped on output), created at zero on
 * first use. Takes a lock: look series up once and keep the pointer for
 * the hot path. Owned by the registry. */
struct veil_series *veil_metric_series(struct veil_metric *family,
                                       const char *const *values);

/* Updates: lock-free (relaxed atomics), safe from any thread while another
 * renders. Each asserts nothing about the type: the caller uses the one
 * its family was registered with. */
void veil_series_add(struct veil_series *s, uint64_t n);   /* counter */
void veil_series_set(struct veil_series *s, int64_t v);    /* gauge */
void veil_series_observe(struct veil_series *s, double v); /* histogram */
uint64_t veil_series_count(const struct veil_series *s);   /* counter value,
                                                            * histogram count */

/* Gauges whose series come and go (consumer lag per assigned partition):
 * hides every series of the family until its next veil_series_set. */
void veil_metric_hide_all(struct veil_metric *family);

/* The whole registry in the text exposition format 0.0.4 (# HELP and
 * # TYPE per family, families in registration order). The caller frees
 * the result; *lenp gets its length (without the NUL). */
char *veil_metrics_render(struct veil_metrics *m, size_t *lenp);

#endif
