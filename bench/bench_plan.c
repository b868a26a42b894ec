/* bench_plan.c - records/s of the plan path against the avro-c generic path
 * (decode to avro_value_t, transform, encode) on the reference customer
 * record licensed to two purposes, in one run on one core, plus heap
 * allocations per record in steady state. Prints `bench: NAME VALUE UNIT`.
 *
 * Built and run by bench/plan.sh. Allocations are counted by defining
 * malloc & co. here (ELF interposition: every library in the process calls
 * these), forwarding to glibc's __libc_* entry points. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avro_ref.h"
#include "crypto.h"
#include "plan.h"
#include "plan_fixture.h"
#include "schema.h"
#include "transform.h"
#include "util.h"

/* ---- allocation counter -------------------------------------------------- */

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static volatile bool counting;
static uint64_t n_allocs;

void *malloc(size_t n)
{
        if (counting)
                n_allocs++;
        return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
        if (counting)
                n_allocs++;
        return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
        if (counting)
                n_allocs++;
        return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
        if (counting)
                n_allocs++;
        return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
        if (counting)
                n_allocs++;
        return __libc_memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
        if (counting)
                n_allocs++;
        *p = __libc_memalign(align, n);
        return *p ? 0 : 12; /* ENOMEM */
}

void free(void *p)
{
        __libc_free(p);
}

/* ---- setup
 * ------------------------------------------------------------------- */

static const unsigned char master[40] =
        "0123456789abcdef0123456789abcdef-bench!!";

static void die(const char *what, const char *err)
{
        fprintf(stderr, "bench_plan: %s: %s\n", what, err);
        exit(1);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: on a shared machine the wall clock also counts
 * other processes' turns; the CPU figure is what one core does. */
static double cpu_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double generic_cpu_rps;

/* Two purposes (DESIGN.md §5, with mask, drop and generalize added):
 * analytics hashes ids and emails, masks cards and phones, generalizes the
 * birth date, drops ssn and notes, keeps public and internal fields;
 * marketing keeps public fields and hashes customer ids. */
static void build_policy(struct veil_policy *policy)
{
        static const struct plan_fx_class classes[] = {
                {"customer_id", VEIL_TIER_INTERNAL},
                {"email", VEIL_TIER_CONFIDENTIAL},
                {"phone", VEIL_TIER_CONFIDENTIAL},
                {"ssn", VEIL_TIER_RESTRICTED},
                {"card", VEIL_TIER_RESTRICTED},
                {"notes", VEIL_TIER_INTERNAL},
                {"birth_date", VEIL_TIER_CONFIDENTIAL},
                {"name", VEIL_TIER_CONFIDENTIAL},
                {NULL, VEIL_TIER_NONE},
        };
        static const struct plan_fx_rule rules[] = {
                {"analytics", "public", VEIL_TX_KEEP, false},
                {"analytics", "internal", VEIL_TX_KEEP, false},
                {"analytics", "customer_id", VEIL_TX_HASH, false},
                {"analytics", "email", VEIL_TX_HASH, false},
                {"analytics", "card", VEIL_TX_MASK, true},
                {"analytics", "phone", VEIL_TX_MASK, false},
                {"analytics", "birth_date", VEIL_TX_GENERALIZE, false},
                {"analytics", "ssn", VEIL_TX_DROP, false},
                {"analytics", "notes", VEIL_TX_DROP, false},
                {"marketing", "public", VEIL_TX_KEEP, false},
                {"marketing", "customer_id", VEIL_TX_HASH, false},
                {"marketing", "name", VEIL_TX_KEEP, false},
                {NULL, NULL, VEIL_TX_KEEP, false},
        };
        const struct plan_fx_policy spec = {
                classes,       rules,         "customers",
                "customer_id", "address.zip", "internal",
        };

        plan_fx_policy_build(policy, &spec);
}

static void set_str(avro_value_t *rec, const char *field, const char *s)
{
        avro_value_t f, b;

        avro_value_get_by_name(rec, field, &f, NULL);
        if (avro_value_get_type(&f) == AVRO_UNION) {
                avro_value_set_branch(&f, s ? 1 : 0, &b);
                if (!s) {
                        avro_value_set_null(&b);
                        return;
                }
                f = b;
        }
        avro_value_set_string(&f, s);
}

/* A realistic customer of about 700 bytes; `i` varies ids and numbers. */
static void fill_customer(avro_value_t *c, int i)
{
        avro_value_t f, b, item, sub;
        char id[32], mail[64];
        int k;

        snprintf(id, sizeof(id), "CUST-%08d", 1000000 + i);
        snprintf(mail, sizeof(mail), "customer.%d@example-mail.com", i);
        set_str(c, "customer_id", id);
        set_str(c, "email", mail);
        set_str(c, "phone", "+1 (415) 555-0100");
        set_str(c, "full_name", "Augusta Ada King, Countess of Lovelace");
        set_str(c, "ssn", "123-45-6789");
        set_str(c, "card_number", "4111 1111 1111 1111");
        avro_value_get_by_name(c, "birth_date", &f, NULL);
        avro_value_set_int(&f, 3652 + i % 10000);
        avro_value_get_by_name(c, "created_at", &f, NULL);
        avro_value_set_long(&f, INT64_C(1700000000000) + i);
        avro_value_get_by_name(c, "updated_at", &f, NULL);
        avro_value_set_long(&f, INT64_C(1700000000000000) + i);
        avro_value_get_by_name(c, "status", &f, NULL);
        avro_value_set_enum(&f, i % 3);
        set_str(c, "tier", "gold");
        avro_value_get_by_name(c, "loyalty_points", &f, NULL);
        avro_value_set_int(&f, 1234 + i);
        avro_value_get_by_name(c, "lifetime_value", &f, NULL);
        avro_value_set_double(&f, 9876.5 + i);
        avro_value_get_by_name(c, "credit_score", &f, NULL);
        avro_value_set_branch(&f, 1, &b);
        avro_value_set_int(&b, 720);
        avro_value_get_by_name(c, "marketing_opt_in", &f, NULL);
        avro_value_set_boolean(&f, i & 1);
        set_str(c, "account_uuid", "7d444840-9dc0-11d1-b245-5ffdce74fad2");
        avro_value_get_by_name(c, "balance", &f, NULL);
        avro_value_set_bytes(&f, "\x01\x86\xa0\x11", 4);
        avro_value_get_by_name(c, "address", &f, NULL);
        set_str(&f, "street", "12 St James's Square, Flat 4");
        set_str(&f, "city", "London");
        set_str(&f, "zip", "SW1Y 4JH");
        set_str(&f, "country", "GB");
        avro_value_get_by_name(c, "contacts", &f, NULL);
        for (k = 0; k < 3; k++) {
                avro_value_append(&f, &item, NULL);
                set_str(&item, "kind", k ? "home" : "work");
                set_str(&item, "email", k == 2 ? NULL : mail);
                set_str(&item, "phone", k == 1 ? NULL : "+44 20 7946 0000");
        }
        avro_value_get_by_name(c, "attributes", &f, NULL);
        avro_value_add(&f, "segment", &sub, NULL, NULL);
        avro_value_set_string(&sub, "small-business");
        avro_value_add(&f, "channel", &sub, NULL, NULL);
        avro_value_set_string(&sub, "web-organic");
        avro_value_add(&f, "language", &sub, NULL, NULL);
        avro_value_set_string(&sub, "en-GB");
        avro_value_add(&f, "campaign", &sub, NULL, NULL);
        avro_value_set_string(&sub, "spring-2024-loyalty-upgrade");
        avro_value_get_by_name(c, "device_fingerprint", &f, NULL);
        avro_value_set_fixed(&f, "0123456789abcdef", 16);
        set_str(c, "notes",
                "Customer called about a billing issue on the last invoice; "
                "asked to be contacted by email rather than phone. Prefers "
                "morning appointments. Escalated to tier-2 support, ticket "
                "SUP-44812, resolved with a courtesy credit.");
        set_str(c, "last_login_ip", "203.0.113.42");
        set_str(c, "referrer", "newsletter-2024-03");
}

static size_t encode(avro_value_t *v, char *buf, size_t cap)
{
        avro_writer_t w = avro_writer_memory(buf, (int64_t)cap);
        size_t n;

        if (avro_value_write(w, v))
                die("avro_value_write", avro_strerror());
        n = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        return n;
}

#define N_VARIANTS 64
#define N_PURPOSES 2

struct bench {
        struct veil_policy policy;
        struct veil_schema *schema;
        struct veil_plan *plan[N_PURPOSES];
        struct avro_ref *ref[N_PURPOSES];
        avro_schema_t derived[N_PURPOSES];
        avro_value_iface_t *src_iface, *dst_iface[N_PURPOSES];
        struct veil_tx_keys keys[N_PURPOSES];
        struct veil_plan_env env[N_PURPOSES];
        char in[N_VARIANTS][2048];
        size_t in_len[N_VARIANTS];
        struct veil_plan_opts opts[N_PURPOSES];
        struct veil_plan_set *set; /* both plans in one pass */
};

static void setup(struct bench *b)
{
        static const char *const purposes[N_PURPOSES] = {"analytics",
                                                         "marketing"};
        char err[512];
        avro_value_t v;
        int i, p;

        build_policy(&b->policy);
        b->schema = plan_fx_schema_file("schemas/customers-value.avsc", 1, err,
                                        sizeof(err));
        if (!b->schema)
                die("schema", err);
        b->src_iface = avro_generic_class_from_schema(b->schema->avro);
        for (i = 0; i < N_VARIANTS; i++) {
                avro_generic_value_new(b->src_iface, &v);
                fill_customer(&v, i);
                b->in_len[i] = encode(&v, b->in[i], sizeof(b->in[i]));
                avro_value_decref(&v);
        }
        for (p = 0; p < N_PURPOSES; p++) {
                const char *dt;

                plan_fx_opts(&b->opts[p], &b->policy, "customers", purposes[p]);
                b->plan[p] = veil_plan_compile(b->schema, &b->opts[p], err,
                                               sizeof(err));
                if (!b->plan[p])
                        die("plan", err);
                b->ref[p] =
                        avro_ref_new(b->schema, &b->opts[p], err, sizeof(err));
                if (!b->ref[p])
                        die("reference", err);
                dt = veil_plan_derived_text(b->plan[p]);
                if (avro_schema_from_json_length(dt, strlen(dt),
                                                 &b->derived[p]))
                        die("derived schema", avro_strerror());
                b->dst_iface[p] = avro_generic_class_from_schema(b->derived[p]);
                if (veil_tx_keys_init(&b->keys[p], master, sizeof(master), "k1",
                                      purposes[p], false, err, sizeof(err)))
                        die("keys", err);
                b->env[p].keys = &b->keys[p];
        }
}

static void setup_set(struct bench *b)
{
        const struct veil_plan *plans[N_PURPOSES];
        char err[256];
        int p;

        for (p = 0; p < N_PURPOSES; p++)
                plans[p] = b->plan[p];
        b->set = veil_plan_set_new(plans, N_PURPOSES, err, sizeof(err));
        if (!b->set)
                die("plan set", err);
}

/* Both paths must produce the same records, or the race is meaningless. */
static void cross_check(struct bench *b)
{
        struct veil_buf out;
        avro_value_t src, want, got;
        avro_reader_t rd;
        char err[256];
        int p, i;

        veil_buf_init(&out, 0);
        for (p = 0; p < N_PURPOSES; p++)
                for (i = 0; i < 4; i++) {
                        avro_generic_value_new(b->src_iface, &src);
                        avro_generic_value_new(b->dst_iface[p], &want);
                        avro_generic_value_new(b->dst_iface[p], &got);
                        rd = avro_reader_memory(b->in[i],
                                                (int64_t)b->in_len[i]);
                        if (avro_value_read(rd, &src))
                                die("decode", avro_strerror());
                        avro_reader_free(rd);
                        if (avro_ref_apply(b->ref[p], &b->env[p], &src, &want,
                                           err, sizeof(err)))
                                die("reference", err);
                        out.len = 0;
                        if (veil_plan_exec(b->plan[p], &b->env[p],
                                           (const uint8_t *)b->in[i],
                                           b->in_len[i], &out, NULL))
                                die("plan", "exec failed");
                        rd = avro_reader_memory((const char *)out.data,
                                                (int64_t)out.len);
                        if (avro_value_read(rd, &got))
                                die("decode output", avro_strerror());
                        avro_reader_free(rd);
                        if (!avro_value_equal_fast(&got, &want))
                                die("cross-check", "plan and generic differ");
                        {
                                /* the one pass writes the same bytes */
                                struct veil_plan_env *envs[N_PURPOSES];
                                struct veil_buf mo[N_PURPOSES], *mp[N_PURPOSES];
                                int q;

                                for (q = 0; q < N_PURPOSES; q++) {
                                        envs[q] = &b->env[q];
                                        veil_buf_init(&mo[q], 0);
                                        mp[q] = &mo[q];
                                }
                                if (veil_plan_set_exec(
                                            b->set, envs,
                                            (const uint8_t *)b->in[i],
                                            b->in_len[i], mp, NULL))
                                        die("one pass", "exec failed");
                                if (mo[p].len != out.len ||
                                    memcmp(mo[p].data, out.data, out.len))
                                        die("cross-check",
                                            "one pass and own pass differ");
                                for (q = 0; q < N_PURPOSES; q++)
                                        veil_buf_free(&mo[q]);
                        }
                        avro_value_decref(&src);
                        avro_value_decref(&want);
                        avro_value_decref(&got);
                }
        veil_buf_free(&out);
}

/* Source records/s of the plan path, each record rewritten for both
 * purposes: in one pass (veil_plan_set_exec) or one pass per purpose.
 * *cpu_rps: the same per second of this thread's CPU time. */
static double run_plan(struct bench *b, double secs, bool one_pass,
                       uint64_t *allocs, uint64_t *recs, double *cpu_rps)
{
        struct veil_buf out[N_PURPOSES], *outs[N_PURPOSES];
        struct veil_plan_env *envs[N_PURPOSES];
        uint64_t n = 0;
        double t0, t, c0;
        int p, i;

        for (p = 0; p < N_PURPOSES; p++) {
                veil_buf_init(&out[p], 0);
                outs[p] = &out[p];
                envs[p] = &b->env[p];
        }
        /* warm-up: buffers reach their steady size */
        for (i = 0; i < 1000; i++)
                for (p = 0; p < N_PURPOSES; p++) {
                        out[p].len = 0;
                        veil_plan_exec(b->plan[p], &b->env[p],
                                       (const uint8_t *)b->in[i % N_VARIANTS],
                                       b->in_len[i % N_VARIANTS], &out[p],
                                       NULL);
                }
        n_allocs = 0;
        counting = true;
        t0       = now_s();
        c0       = cpu_s();
        do {
                for (i = 0; i < 1024; i++) {
                        const int v = i % N_VARIANTS;

                        if (one_pass) {
                                for (p = 0; p < N_PURPOSES; p++)
                                        out[p].len = 0;
                                if (veil_plan_set_exec(
                                            b->set, envs,
                                            (const uint8_t *)b->in[v],
                                            b->in_len[v], outs, NULL))
                                        die("plan", "one pass failed");
                                continue;
                        }
                        for (p = 0; p < N_PURPOSES; p++) {
                                out[p].len = 0;
                                if (veil_plan_exec(b->plan[p], &b->env[p],
                                                   (const uint8_t *)b->in[v],
                                                   b->in_len[v], &out[p], NULL))
                                        die("plan", "exec failed");
                        }
                }
                n += 1024;
                t = now_s() - t0;
        } while (t < secs);
        *cpu_rps = (double)n / (cpu_s() - c0);
        counting = false;
        *allocs  = n_allocs;
        *recs    = n;
        for (p = 0; p < N_PURPOSES; p++)
                veil_buf_free(&out[p]);
        return (double)n / t;
}

/* The same work on generic values: decode into a reused avro_value_t,
 * transform into a reused value of the derived schema, encode. */
static double run_generic(struct bench *b, double secs, uint64_t *allocs,
                          uint64_t *recs)
{
        avro_value_t src, dst[N_PURPOSES];
        static char outbuf[4096];
        avro_reader_t rd = avro_reader_memory(b->in[0], 1);
        avro_writer_t wr = avro_writer_memory(outbuf, sizeof(outbuf));
        char err[256];
        uint64_t n = 0;
        double t0, t, c0 = 0;
        int p, i, round;

        avro_generic_value_new(b->src_iface, &src);
        for (p = 0; p < N_PURPOSES; p++)
                avro_generic_value_new(b->dst_iface[p], &dst[p]);
        for (round = 0; round < 2; round++) {
                if (round == 1) {
                        n_allocs = 0;
                        counting = true;
                        c0       = cpu_s();
                }
                t0 = now_s();
                do {
                        for (i = 0; i < (round ? 256 : 1000); i++) {
                                const int v = i % N_VARIANTS;

                                avro_reader_memory_set_source(
                                        rd, b->in[v], (int64_t)b->in_len[v]);
                                avro_value_reset(&src);
                                if (avro_value_read(rd, &src))
                                        die("decode", avro_strerror());
                                for (p = 0; p < N_PURPOSES; p++) {
                                        avro_value_reset(&dst[p]);
                                        if (avro_ref_apply(
                                                    b->ref[p], &b->env[p], &src,
                                                    &dst[p], err, sizeof(err)))
                                                die("reference", err);
                                        avro_writer_reset(wr);
                                        if (avro_value_write(wr, &dst[p]))
                                                die("encode", avro_strerror());
                                }
                        }
                        if (round)
                                n += 256;
                        t = now_s() - t0;
                } while (round && t < secs);
        }
        generic_cpu_rps = (double)n / (cpu_s() - c0);
        counting        = false;
        *allocs         = n_allocs;
        *recs           = n;
        avro_value_decref(&src);
        for (p = 0; p < N_PURPOSES; p++)
                avro_value_decref(&dst[p]);
        avro_reader_free(rd);
        avro_writer_free(wr);
        return (double)n / t;
}

/* Map keys are data: the analytics plan once more, with the attributes'
 * keys masked (classify: "attributes{key}": phone), which takes the
 * unique-keys path (keys a mask could merge are checked per map). */
static double run_mapkeys(struct bench *b, double secs, uint64_t *allocs,
                          uint64_t *recs)
{
        struct veil_policy policy;
        struct veil_plan_opts opts = {0};
        struct veil_plan *plan;
        struct veil_buf out;
        char err[512];
        uint64_t n = 0;
        double t0, t;
        int i;

        build_policy(&policy);
        avro_ref_override(&policy.routes[0], "attributes{key}", "phone");
        plan_fx_opts(&opts, &policy, "customers", "analytics");
        plan = veil_plan_compile(b->schema, &opts, err, sizeof(err));
        if (!plan)
                die("plan (map keys)", err);
        veil_buf_init(&out, 0);
        for (i = 0; i < 1000; i++) {
                out.len = 0;
                if (veil_plan_exec(plan, &b->env[0],
                                   (const uint8_t *)b->in[i % N_VARIANTS],
                                   b->in_len[i % N_VARIANTS], &out, NULL))
                        die("plan (map keys)", "exec failed");
        }
        if (memmem(out.data, out.len, "segment", 7) ||
            !memmem(out.data, out.len, "***ment", 7))
                die("plan (map keys)", "keys not masked");
        n_allocs = 0;
        counting = true;
        t0       = now_s();
        do {
                for (i = 0; i < 1024; i++) {
                        out.len = 0;
                        if (veil_plan_exec(
                                    plan, &b->env[0],
                                    (const uint8_t *)b->in[i % N_VARIANTS],
                                    b->in_len[i % N_VARIANTS], &out, NULL))
                                die("plan (map keys)", "exec failed");
                }
                n += 1024;
                t = now_s() - t0;
        } while (t < secs);
        counting = false;
        *allocs  = n_allocs;
        *recs    = n;
        veil_buf_free(&out);
        veil_plan_destroy(plan);
        veil_policy_destroy(&policy);
        return (double)n / t;
}

int main(int argc, char **argv)
{
        static struct bench b;
        double secs = argc > 1 ? atof(argv[1]) : 2.0;
        double plan_rps, generic_rps, mapkeys_rps, passes_rps, avg = 0;
        double plan_cpu, passes_cpu;
        uint64_t pa, ga, pn, gn, ma, mn, sa, sn;
        int i;

        setup(&b);
        setup_set(&b);
        cross_check(&b);
        for (i = 0; i < N_VARIANTS; i++)
                avg += (double)b.in_len[i];
        avg /= N_VARIANTS;
        /* `bench_plan SECS plan|passes` runs one plan path alone
         * (profiling): the one pass, or one pass per purpose */
        if (argc > 2 &&
            (!strcmp(argv[2], "plan") || !strcmp(argv[2], "passes"))) {
                plan_rps = run_plan(&b, secs, !strcmp(argv[2], "plan"), &pa,
                                    &pn, &plan_cpu);
                printf("bench: plan_rps %.0f rec/s (%.0f per CPU second)\n",
                       plan_rps, plan_cpu);
                return 0;
        }
        plan_rps    = run_plan(&b, secs, true, &pa, &pn, &plan_cpu);
        passes_rps  = run_plan(&b, secs, false, &sa, &sn, &passes_cpu);
        generic_rps = run_generic(&b, secs, &ga, &gn);
        mapkeys_rps = run_mapkeys(&b, secs / 2, &ma, &mn);
        printf("# customer record %.0f bytes, %d purposes (analytics: hash, "
               "mask, generalize, drop, keep; marketing: hash, keep), "
               "sha256 %s\n",
               avg, N_PURPOSES, veil_sha256_impl_name(veil_sha256_best()));
        printf("bench: plan_rps %.0f rec/s (source records, one core, one "
               "pass for %d purposes; goal >= 1000000)\n",
               plan_rps, N_PURPOSES);
        printf("bench: plan_rps_cpu %.0f rec/s (per second of this thread's "
               "CPU time: other processes' turns left out)\n",
               plan_cpu);
        printf("bench: plan_passes_rps %.0f rec/s (baseline: one pass per "
               "purpose)\n",
               passes_rps);
        printf("bench: plan_passes_rps_cpu %.0f rec/s\n", passes_cpu);
        printf("bench: plan_one_pass_vs_passes %.2f x\n",
               plan_cpu / passes_cpu);
        printf("bench: plan_outputs_per_s %.0f rec/s\n", plan_rps * N_PURPOSES);
        printf("bench: generic_rps %.0f rec/s\n", generic_rps);
        printf("bench: plan_vs_generic %.1f x (goal >= 5)\n",
               plan_rps / generic_rps);
        printf("bench: plan_vs_generic_cpu %.1f x\n",
               plan_cpu / generic_cpu_rps);
        printf("bench: plan_allocs_per_rec %.4f\n", (double)pa / (double)pn);
        printf("bench: plan_passes_allocs_per_rec %.4f\n",
               (double)sa / (double)sn);
        printf("bench: generic_allocs_per_rec %.1f\n", (double)ga / (double)gn);
        printf("bench: record_bytes %.0f\n", avg);
        printf("bench: plan_mapkeys_rps %.0f rec/s (analytics alone, "
               "attributes' keys masked)\n",
               mapkeys_rps);
        printf("bench: plan_mapkeys_allocs_per_rec %.4f\n",
               (double)ma / (double)mn);
        for (i = 0; i < N_PURPOSES; i++) {
                avro_ref_destroy(b.ref[i]);
                veil_plan_destroy(b.plan[i]);
                avro_value_iface_decref(b.dst_iface[i]);
                avro_schema_decref(b.derived[i]);
                veil_plan_env_free(&b.env[i]);
                veil_tx_keys_destroy(&b.keys[i]);
        }
        veil_plan_set_destroy(b.set);
        avro_value_iface_decref(b.src_iface);
        veil_schema_destroy(b.schema);
        veil_policy_destroy(&b.policy);
        return 0;
}
