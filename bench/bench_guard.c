/* bench_guard.c - what the egress leak guard costs inside the worker's
 * filter chain (decode, license, consent, guard), without Kafka: the same
 * records through the chain built from config/veil.yaml as shipped
 * (analytics and marketing routed, as bench/e2e.py does) and from the same
 * file with `guard: {}` on both purposes. Rounds alternate the two chains
 * on one core; each figure is the best round (the least disturbed), CPU
 * time of this thread. Prints `bench: NAME VALUE UNIT`:
 *
 *   chain_us_per_record        the chain, guard off
 *   guard_chain_us_per_record  the chain, guard on
 *   guard_chain_overhead_pct   the second against the first, same run
 *   guard_leaks_per_record     leaks the guard found (a sanity figure)
 *
 *   bench_guard OFF.yaml ON.yaml VALUES SECONDS   (bench/guard.sh) */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "filter.h"
#include "registry.h"
#include "util.h"
#include "veil.h"

#define ROUNDS 5

struct values {
        uint8_t **v;
        uint32_t *len;
        size_t n;
};

struct setup {
        struct veil_config *config;
        struct veil_registry *reg;
        struct veil_chain *chain;
        const struct veil_route *route;
};

static void die(const char *what, const char *err)
{
        fprintf(stderr, "bench_guard: %s: %s\n", what, err);
        exit(1);
}

static double thread_cpu_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load_values(const char *path, struct values *vs)
{
        FILE *f = fopen(path, "rb");
        uint32_t len;
        size_t cap = 0;

        if (!f)
                die(path, "cannot open");
        memset(vs, 0, sizeof(*vs));
        while (fread(&len, sizeof(len), 1, f) == 1) {
                if (vs->n == cap) {
                        cap     = cap ? 2 * cap : 1024;
                        vs->v   = veil_realloc(vs->v, cap * sizeof(*vs->v));
                        vs->len = veil_realloc(vs->len, cap * sizeof(*vs->len));
                }
                vs->v[vs->n] = veil_malloc(len);
                if (fread(vs->v[vs->n], 1, len, f) != len)
                        die(path, "truncated");
                vs->len[vs->n++] = len;
        }
        fclose(f);
        if (!vs->n)
                die(path, "no values");
}

static void setup_new(struct setup *s, const char *path)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        char err[1024];

        s->config = veil_config_load(path, &opts, err, sizeof(err));
        if (!s->config)
                die(path, err);
        s->reg = veil_registry_new(&s->config->registry, err, sizeof(err));
        if (!s->reg)
                die("registry", err);
        s->chain = veil_chain_new(s->config, s->reg, err, sizeof(err));
        if (!s->chain)
                die("chain", err);
        s->route = &s->config->policy.routes[0];
}

static void setup_free(struct setup *s)
{
        veil_chain_destroy(s->chain);
        veil_registry_destroy(s->reg);
        veil_config_destroy(s->config);
}

/* One record through the chain as connectors/route.c hands it over. */
static size_t one(struct setup *s, const struct values *vs, size_t i)
{
        struct veil_record rec;
        char key[32];
        size_t j, leaks = 0;

        memset(&rec, 0, sizeof(rec));
        rec.topic     = s->route->source;
        rec.offset    = (int64_t)i;
        rec.key_len   = (size_t)snprintf(key, sizeof(key), "c-%zu", i);
        rec.key       = key;
        rec.value     = vs->v[i % vs->n];
        rec.value_len = vs->len[i % vs->n];
        rec.route     = s->route;
        rec.now       = 1796000000;
        if (veil_chain_process(s->chain, &rec) != VEIL_CONTINUE) {
                fprintf(stderr, "bench_guard: record %zu: %s (%s)\n", i,
                        rec.reason ? rec.reason : "?", rec.detail);
                exit(1);
        }
        for (j = 0; j < rec.n_outs; j++)
                leaks += rec.outs[j].n_leaks;
        return leaks;
}

/* CPU microseconds per record over about `seconds`; leaks summed. */
static double round_us(struct setup *s, const struct values *vs, double seconds,
                       size_t *leaks, size_t *records)
{
        double t0 = thread_cpu_s(), t;
        size_t i  = 0;

        *leaks = 0;
        do {
                size_t k;

                for (k = 0; k < vs->n; k++, i++)
                        *leaks += one(s, vs, i);
                t = thread_cpu_s() - t0;
        } while (t < seconds);
        *records = i;
        return t * 1e6 / (double)i;
}

int main(int argc, char **argv)
{
        struct setup off, on;
        struct values vs;
        double seconds, best_off = 1e30, best_on = 1e30;
        size_t leaks = 0, records = 0, r, n, k;

        if (argc != 5) {
                fprintf(stderr, "usage: bench_guard OFF.yaml ON.yaml VALUES "
                                "SECONDS\n");
                return 2;
        }
        seconds = atof(argv[4]) / ROUNDS;
        load_values(argv[3], &vs);
        setup_new(&off, argv[1]);
        setup_new(&on, argv[2]);
        /* warm the plan caches, schema caches and allocator */
        for (k = 0; k < vs.n; k++) {
                one(&off, &vs, k);
                one(&on, &vs, k);
        }
        for (r = 0; r < ROUNDS; r++) {
                double a = round_us(&off, &vs, seconds, &n, &k);
                double b = round_us(&on, &vs, seconds, &leaks, &records);

                fprintf(stderr,
                        "guard: round %zu: off %.2f us/record, on %.2f "
                        "us/record (%zu records)\n",
                        r + 1, a, b, records);
                best_off = a < best_off ? a : best_off;
                best_on  = b < best_on ? b : best_on;
        }
        printf("bench: chain_us_per_record %.2f us\n", best_off);
        printf("bench: guard_chain_us_per_record %.2f us\n", best_on);
        printf("bench: guard_chain_overhead_pct %.0f %%\n",
               100.0 * (best_on / best_off - 1.0));
        printf("bench: guard_leaks_per_record %.3f leaks\n",
               (double)leaks / (double)records);
        setup_free(&on);
        setup_free(&off);
        for (k = 0; k < vs.n; k++)
                free(vs.v[k]);
        free(vs.v);
        free(vs.len);
        return 0;
}
