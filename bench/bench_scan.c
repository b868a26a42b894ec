/* bench_scan.c - throughput of the detection engine on a large text file:
 * veil_detect_scan() against the raw Hyperscan rate of the same database
 * (no-op callback), with and without start-of-match, and the cost of
 * redact_text per KB of record text. Built and run by bench/scan.sh.
 *
 *   bench_scan [--engine-only] FILE
 *
 * --engine-only: only the engine and the raw rate (the dense benchmark,
 * where the SOM database would take a minute). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "detect.h"
#include "policy.h"

#define REPEAT 3

/* CPU time of this (single) thread: the per-core figure, which other
 * work sharing the machine does not inflate the way it does wall time. */
static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
        double engine_s, raw_s;
        size_t findings;
        unsigned long long matches;
};

static int measure(const struct veil_detect_opts *opts, const char *buf,
                   size_t len, struct run *run)
{
        struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        const struct veil_finding *f;
        char errstr[256];
        double t0, t1, compile_s;
        int r;

        t0        = now_s();
        engine    = veil_detect_engine_new_opts(NULL, 0, opts, errstr,
                                                sizeof(errstr));
        compile_s = now_s() - t0;
        if (!engine) {
                fprintf(stderr, "bench_scan: %s\n", errstr);
                return -1;
        }
        scratch = veil_detect_scratch_new(engine, errstr, sizeof(errstr));
        if (!scratch) {
                fprintf(stderr, "bench_scan: %s\n", errstr);
                veil_detect_engine_destroy(engine);
                return -1;
        }
        printf("# %s: compiled in %.3f s\n", opts->som ? "som" : "no-som",
               compile_s);
        run->engine_s = run->raw_s = 1e9;
        for (r = 0; r < REPEAT; r++) {
                uint64_t m = 0;

                t0 = now_s();
                if (veil_detect_scan_raw(engine, scratch, buf, len, &m, errstr,
                                         sizeof(errstr)))
                        goto fail;
                t1 = now_s();
                if (t1 - t0 < run->raw_s)
                        run->raw_s = t1 - t0;
                run->matches = m;

                t0 = now_s();
                if (veil_detect_scan(engine, scratch, buf, len, &f,
                                     &run->findings, errstr, sizeof(errstr)))
                        goto fail;
                t1 = now_s();
                if (t1 - t0 < run->engine_s)
                        run->engine_s = t1 - t0;
        }
        veil_detect_scratch_destroy(scratch);
        veil_detect_engine_destroy(engine);
        return 0;
fail:
        fprintf(stderr, "bench_scan: %s\n", errstr);
        veil_detect_scratch_destroy(scratch);
        veil_detect_engine_destroy(engine);
        return -1;
}

/* redact_text over records of about `rec` bytes cut at line ends, the way
 * a record plan calls it: one call per field value, buffers reused. */
static int measure_redact(const char *buf, size_t len, size_t rec,
                          size_t budget)
{
        struct veil_detect_engine *engine;
        struct veil_detect_scratch *scratch;
        struct veil_text_buf out = {0};
        char errstr[256];
        double best  = 1e9;
        size_t bytes = 0, calls = 0, redacted = 0;
        int r;

        engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        scratch =
                engine ? veil_detect_scratch_new(engine, errstr, sizeof(errstr))
                       : NULL;
        if (!scratch) {
                fprintf(stderr, "bench_scan: %s\n", errstr);
                veil_detect_engine_destroy(engine);
                return -1;
        }
        if (budget > len)
                budget = len;
        for (r = 0; r < REPEAT; r++) {
                size_t pos = 0;
                double t0  = now_s(), t;

                bytes = calls = redacted = 0;
                while (pos < budget) {
                        size_t n = rec, k = 0;
                        const char *nl;

                        if (pos + n > len)
                                n = len - pos;
                        nl = memchr(buf + pos + n / 2, '\n', n - n / 2);
                        if (nl)
                                n = (size_t)(nl - (buf + pos));
                        if (veil_redact_text(engine, scratch, NULL, buf + pos,
                                             n, &out, &k, errstr,
                                             sizeof(errstr))) {
                                fprintf(stderr, "bench_scan: %s\n", errstr);
                                break;
                        }
                        bytes += n;
                        calls++;
                        redacted += k;
                        pos += n + 1;
                }
                t = now_s() - t0;
                if (t < best)
                        best = t;
        }
        printf("bench: redact_ns_per_kb %.0f ns/KB (records ~%zu B, %zu "
               "calls, %.0f ns/call, %zu spans)\n",
               best * 1e9 / ((double)bytes / 1024.0), rec, calls,
               best * 1e9 / (double)calls, redacted);
        veil_text_buf_free(&out);
        veil_detect_scratch_destroy(scratch);
        veil_detect_engine_destroy(engine);
        return 0;
}

int main(int argc, char **argv)
{
        struct veil_detect_opts nosom = {.som = false}, som = {.som = true};
        struct run a, b;
        struct stat st;
        double mb;
        char *buf;
        const char *file;
        bool engine_only = argc == 3 && !strcmp(argv[1], "--engine-only");
        int fd;

        if (argc != 2 && !engine_only) {
                fprintf(stderr, "usage: bench_scan [--engine-only] FILE\n");
                return 2;
        }
        file = argv[argc - 1];
        fd   = open(file, O_RDONLY);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
                perror(file);
                return 2;
        }
        buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (buf == MAP_FAILED) {
                perror("mmap");
                return 2;
        }
        close(fd);
        /* fault the file in once so that no measurement pays for it */
        {
                volatile unsigned long sum = 0;
                off_t i;

                for (i = 0; i < st.st_size; i += 4096)
                        sum += (unsigned char)buf[i];
                (void)sum;
        }
        mb = (double)st.st_size / 1e6;
        printf("# %s: %.1f MB\n", file, mb);

        if (measure(&nosom, buf, (size_t)st.st_size, &a))
                return 1;
        printf("bench: engine_mbps %.1f MB/s (no SOM, end-anchored span "
               "recovery; %zu findings)\n",
               mb / a.engine_s, a.findings);
        printf("bench: hs_raw_mbps %.1f MB/s (same database, no-op "
               "callback; %llu matches)\n",
               mb / a.raw_s, a.matches);
        printf("bench: engine_vs_raw %.0f %%\n", 100.0 * a.raw_s / a.engine_s);
        if (engine_only) {
                munmap(buf, (size_t)st.st_size);
                return 0;
        }
        if (measure(&som, buf, (size_t)st.st_size, &b))
                return 1;
        printf("bench: som_engine_mbps %.1f MB/s (HS_FLAG_SOM_LEFTMOST; %zu "
               "findings)\n",
               mb / b.engine_s, b.findings);
        printf("bench: som_raw_mbps %.1f MB/s (SOM database, no-op "
               "callback)\n",
               mb / b.raw_s);
        measure_redact(buf, (size_t)st.st_size, 1024, 32u << 20);
        measure_redact(buf, (size_t)st.st_size, 200, 8u << 20);
        munmap(buf, (size_t)st.st_size);
        return 0;
}
