/* cmd_scan.c - `veil scan`: static scan of files, directories or stdin for
 * PII with the detectors the pipeline uses. The main thread walks the
 * paths and cuts files into pieces (scan_piece.c); a pool of threads, one
 * Hyperscan scratch each, scans them and builds each piece's report
 * (scan_report.c); the main thread writes the reports in input order, so
 * the output does not depend on -j. Reports give positions and detector
 * names, never the matched text. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "commands.h"
#include "crypto.h"
#include "detect.h"
#include "scan.h"
#include "util.h"
#include "veil.h"

static const struct veil_cmd_help help_scan = {
        "scan",
        "scan [--format text|json|sarif] [--detectors LIST] [-j N] "
        "[--salt-file FILE] [--baseline FILE] PATH…",
        "Static scan of files for PII with the same detectors as the "
        "pipeline.\nDirectories are scanned recursively (binary files "
        "skipped); '-' reads stdin.\nReports give positions and detector "
        "names, never the matched text.",
        "options:\n"
        "  -f, --format FMT      text (default): PATH:LINE:START-END: "
        "DETECTOR\n"
        "                        json: one object per line: path, line "
        "(1-based),\n"
        "                        start, end (0-based bytes in the line, end "
        "exclusive),\n"
        "                        detector, fingerprint (with a salt)\n"
        "                        sarif: SARIF 2.1.0, one result per finding\n"
        "  -d, --detectors LIST  comma-separated detectors (default: all): "
        "email,\n"
        "                        phone, us_ssn, credit_card, iban, ipv4, "
        "ipv6,\n"
        "                        uk_nhs, ca_sin, fr_nir, es_dni, "
        "it_fiscal_code,\n"
        "                        nl_bsn, in_aadhaar, in_pan, br_cpf, "
        "aws_access_key,\n"
        "                        jwt (docs/detectors.md)\n"
        "  -j, --jobs N          scanning threads (default: the CPUs); the "
        "report is\n"
        "                        the same for every N\n"
        "      --salt-file FILE  secret key of the fingerprints (one "
        "trailing newline\n"
        "                        is ignored); instead of VEIL_SCAN_SALT\n"
        "  -b, --baseline FILE   a previous json report made with the same "
        "salt: the\n"
        "                        findings it holds are not reported again, "
        "even if\n"
        "                        their line moved (needs a salt)\n"
        "environment:\n"
        "  VEIL_SCAN_SALT        secret key of the fingerprints; without a "
        "salt,\n"
        "                        reports carry no fingerprint\n"
        "exit: 0 no findings, 1 findings, 2 error\n"};

/* A NUL byte in the first 8 KiB marks a binary file, as git does. */
#define BINARY_PROBE 8192
/* Report bytes gathered before one write(2). */
#define WRITE_BLOCK (1u << 20)
#define MAX_JOBS 256

/* A file being scanned: its bytes and its names. Owned by the main
 * thread, which frees it when the last of its pieces is written. */
struct scan_src {
        struct veil_scan_file file;
        char *data;
        size_t len;
        bool mapped;
        unsigned refs; /* pieces not yet written, + 1 while being cut */
};

/* A piece on its way: cut by the main thread, scanned by a worker,
 * written by the main thread. Slots are reused in a ring, with their
 * buffers. */
struct job {
        struct scan_src *src;
        size_t start, end, line;
        size_t n_lines; /* line ends in the piece, counted by the scan */
        bool done;
        int rc;
        char errstr[256];
        struct veil_scan_out out;
};

struct scan {
        struct veil_scan_report rep;
        struct veil_detect_engine *engine;
        struct veil_detect_scratch **scratch; /* one per thread */
        bool *want;
        const char **det_name;
        size_t *det_len;
        struct veil_hmac hmac;
        char **base;
        size_t n_base;
        size_t piece_size;

        /* the pool: n_threads == 0 scans on the main thread */
        int n_threads, n_started;
        pthread_t *threads;
        pthread_mutex_t mu;
        pthread_cond_t cv_work, cv_done;
        struct job *slots;
        size_t n_slots;
        uint64_t seq_next, seq_take, seq_write;
        bool closing;

        /* output, main thread only */
        struct veil_text_buf wbuf;
        bool sarif_any, write_failed;
        size_t reported, suppressed;
        int errors;
};

/* -------------------------------------------------------------- baseline */
static int load_baseline(struct scan *sc, const char *file)
{
        char errstr[512];
        size_t len, lineno = 0, cap = 0;
        char *text = veil_file_read(file, &len, errstr, sizeof(errstr));
        char *line, *save = NULL;

        if (!text) {
                fprintf(stderr, "veil scan: baseline %s\n", errstr);
                return -1;
        }
        for (line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                json_error_t jerr;
                json_t *obj, *fp, *path, *det, *ln, *st, *en;
                char *key;

                lineno++;
                if (!*line || strspn(line, " \t\r") == strlen(line))
                        continue;
                obj  = json_loads(line, 0, &jerr);
                fp   = json_object_get(obj, "fingerprint");
                path = json_object_get(obj, "path");
                det  = json_object_get(obj, "detector");
                ln   = json_object_get(obj, "line");
                st   = json_object_get(obj, "start");
                en   = json_object_get(obj, "end");
                if (json_is_string(fp)) {
                        key    = veil_malloc(strlen(json_string_value(fp)) + 2);
                        key[0] = 'F';
                        strcpy(key + 1, json_string_value(fp));
                } else if (json_is_string(path) && json_is_string(det) &&
                           json_is_integer(ln) && json_is_integer(st) &&
                           json_is_integer(en)) {
                        key = veil_scan_tuple_key(
                                json_string_value(path),
                                (size_t)json_integer_value(ln),
                                (size_t)json_integer_value(st),
                                (size_t)json_integer_value(en),
                                json_string_value(det));
                        sc->rep.base_tuples = true;
                } else {
                        fprintf(stderr,
                                "veil scan: baseline %s:%zu: not a finding "
                                "of `veil scan --format json`\n",
                                file, lineno);
                        json_decref(obj);
                        free(text);
                        return -1;
                }
                json_decref(obj);
                if (sc->n_base == cap) {
                        cap = cap ? 2 * cap : 64;
                        sc->base =
                                veil_realloc(sc->base, cap * sizeof(*sc->base));
                }
                sc->base[sc->n_base++] = key;
        }
        free(text);
        if (sc->n_base)
                qsort(sc->base, sc->n_base, sizeof(*sc->base),
                      veil_scan_key_cmp);
        return 0;
}

/* ---------------------------------------------------------------- output */
static void out_write(struct scan *sc, const char *p, size_t n)
{
        while (n && !sc->write_failed) {
                ssize_t w = write(STDOUT_FILENO, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        fprintf(stderr, "veil scan: writing the report: %s\n",
                                strerror(errno));
                        sc->write_failed = true;
                        return;
                }
                p += w;
                n -= (size_t)w;
        }
}

static void out_flush(struct scan *sc)
{
        out_write(sc, sc->wbuf.data, sc->wbuf.len);
        sc->wbuf.len = 0;
}

/* Small reports are gathered into one block; large ones go out as they
 * are, after what was gathered. */
static void out_put(struct scan *sc, const char *p, size_t n)
{
        if (n >= WRITE_BLOCK / 4) {
                out_flush(sc);
                out_write(sc, p, n);
                return;
        }
        if (sc->wbuf.cap - sc->wbuf.len < n) {
                out_flush(sc);
                if (sc->wbuf.cap < WRITE_BLOCK) {
                        sc->wbuf.data =
                                veil_realloc(sc->wbuf.data, WRITE_BLOCK);
                        sc->wbuf.cap = WRITE_BLOCK;
                }
        }
        memcpy(sc->wbuf.data + sc->wbuf.len, p, n);
        sc->wbuf.len += n;
        if (sc->wbuf.len >= WRITE_BLOCK / 2)
                out_flush(sc);
}

/* ----------------------------------------------------------------- files */
static void src_unref(struct scan_src *src)
{
        if (--src->refs)
                return;
        if (src->mapped)
                munmap(src->data, src->len);
        else
                free(src->data);
        veil_scan_file_fini(&src->file);
        free(src);
}

/* ------------------------------------------------------------------ pool */
static void job_run(struct scan *sc, struct veil_detect_scratch *scratch,
                    struct job *job)
{
        const struct veil_finding *f;
        size_t n, base;

        job->out.out.len  = 0;
        job->out.reported = job->out.suppressed = 0;
        job->rc = veil_scan_piece(sc->engine, scratch, job->src->data,
                                  job->start, job->end, &f, &n, &base,
                                  job->errstr, sizeof(job->errstr));
        if (!job->rc)
                job->n_lines = veil_scan_report_piece(
                        &sc->rep, &job->src->file, job->src->data, job->start,
                        job->end, job->line, f, n, base, &job->out);
        else
                job->n_lines = veil_scan_count_lines(
                        job->src->data + job->start, job->end - job->start);
}

/* Main thread: a scanned piece goes out. */
static void job_write(struct scan *sc, struct job *job)
{
        const char *p = job->out.out.data;
        size_t n      = job->out.out.len;

        if (job->rc) {
                out_flush(sc); /* the error after the findings before it */
                fprintf(stderr, "veil scan: %s: %s\n", job->src->file.path,
                        job->errstr);
                sc->errors++;
        } else if (n) {
                if (sc->rep.fmt == VEIL_SCAN_SARIF && !sc->sarif_any) {
                        p++; /* the run's first result: no ',' before it */
                        n--;
                        sc->sarif_any = true;
                }
                out_put(sc, p, n);
        }
        sc->reported += job->out.reported;
        sc->suppressed += job->out.suppressed;
        src_unref(job->src);
        job->src = NULL;
}

struct worker_arg {
        struct scan *sc;
        struct veil_detect_scratch *scratch;
};

static void *worker_main(void *arg)
{
        struct scan *sc = ((struct worker_arg *)arg)->sc;
        struct veil_detect_scratch *scratch =
                ((struct worker_arg *)arg)->scratch;

        free(arg);
        pthread_mutex_lock(&sc->mu);
        for (;;) {
                struct job *job;

                while (sc->seq_take == sc->seq_next && !sc->closing)
                        pthread_cond_wait(&sc->cv_work, &sc->mu);
                if (sc->seq_take == sc->seq_next)
                        break; /* closing, nothing left */
                job = &sc->slots[sc->seq_take++ % sc->n_slots];
                pthread_mutex_unlock(&sc->mu);
                job_run(sc, scratch, job);
                pthread_mutex_lock(&sc->mu);
                job->done = true;
                pthread_cond_signal(&sc->cv_done);
        }
        pthread_mutex_unlock(&sc->mu);
        return NULL;
}

/* Main thread: writes the pieces at the head of the ring that are done;
 * with `all`, waits for every piece handed out. */
static void pool_drain(struct scan *sc, bool all)
{
        if (!sc->n_threads)
                return;
        pthread_mutex_lock(&sc->mu);
        while (sc->seq_write < sc->seq_next) {
                struct job *head = &sc->slots[sc->seq_write % sc->n_slots];

                if (!head->done) {
                        if (!all)
                                break;
                        pthread_cond_wait(&sc->cv_done, &sc->mu);
                        continue;
                }
                pthread_mutex_unlock(&sc->mu);
                job_write(sc, head);
                pthread_mutex_lock(&sc->mu);
                sc->seq_write++;
        }
        pthread_mutex_unlock(&sc->mu);
}

/* Main thread: hands a piece to the pool, or scans it here with -j 1 and
 * returns the number of its line ends (SIZE_MAX: count them). */
static size_t submit(struct scan *sc, struct scan_src *src, size_t start,
                     size_t end, size_t line)
{
        struct job *job;

        src->refs++;
        if (!sc->n_threads) {
                job        = &sc->slots[0];
                job->src   = src;
                job->start = start;
                job->end   = end;
                job->line  = line;
                job_run(sc, sc->scratch[0], job);
                job_write(sc, job);
                return job->n_lines;
        }
        pthread_mutex_lock(&sc->mu);
        while (sc->seq_next - sc->seq_write == sc->n_slots) {
                struct job *head = &sc->slots[sc->seq_write % sc->n_slots];

                if (!head->done) {
                        pthread_cond_wait(&sc->cv_done, &sc->mu);
                        continue;
                }
                pthread_mutex_unlock(&sc->mu);
                job_write(sc, head);
                pthread_mutex_lock(&sc->mu);
                sc->seq_write++;
        }
        job        = &sc->slots[sc->seq_next % sc->n_slots];
        job->src   = src;
        job->start = start;
        job->end   = end;
        job->line  = line;
        job->done  = false;
        sc->seq_next++;
        pthread_cond_signal(&sc->cv_work);
        pthread_mutex_unlock(&sc->mu);
        pool_drain(sc, false);
        return SIZE_MAX;
}

static int pool_start(struct scan *sc, int jobs, char *errstr,
                      size_t errstr_size)
{
        int i, n_scratch = jobs > 1 ? jobs : 1;

        pthread_mutex_init(&sc->mu, NULL);
        pthread_cond_init(&sc->cv_work, NULL);
        pthread_cond_init(&sc->cv_done, NULL);
        sc->n_threads = jobs > 1 ? jobs : 0;
        /* pieces in flight: enough that a slow piece at the head does not
         * idle the threads, few enough that their reports (a SARIF report
         * is ~6x its piece) stay a few MB per thread */
        sc->n_slots = sc->n_threads ? 3 * (size_t)sc->n_threads : 1;
        sc->slots   = veil_calloc(sc->n_slots, sizeof(*sc->slots));
        sc->scratch = veil_calloc((size_t)n_scratch, sizeof(*sc->scratch));
        for (i = 0; i < n_scratch; i++) {
                sc->scratch[i] = veil_detect_scratch_new(sc->engine, errstr,
                                                         errstr_size);
                if (!sc->scratch[i])
                        return -1;
        }
        if (!sc->n_threads)
                return 0;
        sc->threads = veil_calloc((size_t)sc->n_threads, sizeof(*sc->threads));
        for (i = 0; i < sc->n_threads; i++) {
                struct worker_arg *arg = veil_malloc(sizeof(*arg));
                int rc;

                arg->sc      = sc;
                arg->scratch = sc->scratch[i];
                rc = pthread_create(&sc->threads[i], NULL, worker_main, arg);
                if (rc) {
                        free(arg);
                        snprintf(errstr, errstr_size,
                                 "cannot start a scanning thread: %s",
                                 strerror(rc));
                        return -1;
                }
                sc->n_started++;
        }
        return 0;
}

/* Waits for every piece, writes it, and stops the threads. */
static void pool_stop(struct scan *sc)
{
        int i;

        if (sc->n_threads) {
                pool_drain(sc, true);
                pthread_mutex_lock(&sc->mu);
                sc->closing = true;
                pthread_cond_broadcast(&sc->cv_work);
                pthread_mutex_unlock(&sc->mu);
                for (i = 0; i < sc->n_started; i++)
                        pthread_join(sc->threads[i], NULL);
        }
        if (sc->slots) { /* pool_start ran */
                pthread_cond_destroy(&sc->cv_done);
                pthread_cond_destroy(&sc->cv_work);
                pthread_mutex_destroy(&sc->mu);
        }
        free(sc->threads);
        sc->threads = NULL;
        if (sc->slots) {
                size_t k;

                for (k = 0; k < sc->n_slots; k++) {
                        veil_text_buf_free(&sc->slots[k].out.out);
                        veil_text_buf_free(&sc->slots[k].out.fp);
                }
        }
        free(sc->slots);
        sc->slots = NULL;
        if (sc->scratch)
                for (i = 0; i < (sc->n_threads ? sc->n_threads : 1); i++)
                        veil_detect_scratch_destroy(sc->scratch[i]);
        free(sc->scratch);
        sc->scratch = NULL;
}

/* ------------------------------------------------------------------ walk */
/* Cuts a file into pieces and numbers their first lines; takes `src`'s
 * first reference. */
static void scan_src(struct scan *sc, struct scan_src *src)
{
        size_t start = 0, line = 1;

        src->refs = 1;
        if (src->len &&
            !memchr(src->data, 0,
                    src->len < BINARY_PROBE ? src->len : BINARY_PROBE)) {
                while (start < src->len && !sc->write_failed) {
                        size_t end = veil_scan_piece_end(src->data, src->len,
                                                         start, sc->piece_size);

                        size_t n = submit(sc, src, start, end, line);

                        /* the pool needs the next piece's first line now:
                         * count here (memory speed) while threads scan */
                        if (n == SIZE_MAX && end < src->len)
                                n = veil_scan_count_lines(src->data + start,
                                                          end - start);
                        line += n == SIZE_MAX ? 0 : n;
                        start = end;
                }
        }
        src_unref(src);
}

static struct scan_src *src_new(const char *path)
{
        struct scan_src *src = veil_calloc(1, sizeof(*src));

        veil_scan_file_init(&src->file, path);
        return src;
}

static int read_all(int fd, struct veil_text_buf *tb)
{
        tb->len = 0;
        for (;;) {
                ssize_t r;

                if (tb->cap - tb->len < 65536) {
                        tb->cap  = tb->cap ? 2 * tb->cap : 1 << 20;
                        tb->data = veil_realloc(tb->data, tb->cap);
                }
                r = read(fd, tb->data + tb->len, tb->cap - tb->len);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -1;
                if (r == 0)
                        return 0;
                tb->len += (size_t)r;
        }
}

static void scan_fd_stream(struct scan *sc, const char *path, int fd)
{
        struct veil_text_buf tb = {0};
        struct scan_src *src;

        if (read_all(fd, &tb)) {
                pool_drain(sc, true); /* the error after earlier findings */
                out_flush(sc);
                fprintf(stderr, "veil scan: %s: %s\n", path, strerror(errno));
                sc->errors++;
                veil_text_buf_free(&tb);
                return;
        }
        src       = src_new(path);
        src->data = tb.data;
        src->len  = tb.len;
        scan_src(sc, src);
}

static void report_errno(struct scan *sc, const char *path, int err)
{
        pool_drain(sc, true); /* the error after the findings before it */
        out_flush(sc);
        fprintf(stderr, "veil scan: %s: %s\n", path, strerror(err));
        sc->errors++;
}

static void scan_file(struct scan *sc, const char *path)
{
        struct scan_src *src;
        struct stat st;
        void *map;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0) {
                report_errno(sc, path, errno);
                if (fd >= 0)
                        close(fd);
                return;
        }
        if (!S_ISREG(st.st_mode)) {
                scan_fd_stream(sc, path, fd); /* a pipe or device named */
                close(fd);
                return;
        }
        if (st.st_size == 0) {
                close(fd);
                return;
        }
        /* populate: one call maps the whole (usually cached) file instead
         * of a page fault every few pages */
        map = mmap(NULL, (size_t)st.st_size, PROT_READ,
                   MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) {
                scan_fd_stream(sc, path, fd);
                close(fd);
                return;
        }
        close(fd);
        src         = src_new(path);
        src->data   = map;
        src->len    = (size_t)st.st_size;
        src->mapped = true;
        scan_src(sc, src);
}

static bool skip_dir_entry(const char *name)
{
        return !strcmp(name, ".") || !strcmp(name, "..") ||
               !strcmp(name, ".git") || !strcmp(name, ".hg") ||
               !strcmp(name, ".svn");
}

/* Depth-first, entries in name order so that reports are stable; symbolic
 * links inside a tree are not followed (no loops, no escaping it). */
static void scan_dir(struct scan *sc, const char *dir)
{
        struct dirent **ents = NULL;
        int n                = scandir(dir, &ents, NULL, alphasort), i;
        size_t dlen          = strlen(dir);

        if (n < 0) {
                report_errno(sc, dir, errno);
                return;
        }
        for (i = 0; i < n; i++) {
                const char *name = ents[i]->d_name;
                struct stat st;
                char *child;

                if (skip_dir_entry(name)) {
                        free(ents[i]);
                        continue;
                }
                child = veil_malloc(dlen + strlen(name) + 2);
                sprintf(child, "%s%s%s", dir,
                        dlen && dir[dlen - 1] == '/' ? "" : "/", name);
                if (lstat(child, &st) == 0) {
                        if (S_ISDIR(st.st_mode))
                                scan_dir(sc, child);
                        else if (S_ISREG(st.st_mode))
                                scan_file(sc, child);
                } else {
                        report_errno(sc, child, errno);
                }
                free(child);
                free(ents[i]);
        }
        free(ents);
}

static void scan_path(struct scan *sc, const char *path)
{
        struct stat st;

        if (!strcmp(path, "-")) {
                scan_fd_stream(sc, "-", STDIN_FILENO);
                return;
        }
        if (stat(path, &st) < 0) {
                report_errno(sc, path, errno);
                return;
        }
        if (S_ISDIR(st.st_mode))
                scan_dir(sc, path);
        else
                scan_file(sc, path);
}

static int parse_detectors(struct scan *sc, const char *list)
{
        char *copy = veil_strdup(list), *tok, *save = NULL;
        int n = veil_detect_count(sc->engine), i, picked = 0;

        for (i = 0; i < n; i++)
                sc->want[i] = false;
        for (tok = strtok_r(copy, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
                int id = veil_detect_id(sc->engine, tok);

                if (id < 0) {
                        const char *best = NULL;
                        unsigned bd      = 3;

                        for (i = 0; i < n; i++) {
                                const char *name =
                                        veil_detect_name(sc->engine, i);
                                unsigned d = veil_edit_distance(tok, name, 3);

                                if (d < bd) {
                                        bd   = d;
                                        best = name;
                                }
                        }
                        if (best)
                                veil_cmd_usage_error(&help_scan,
                                                     "unknown detector '%s' "
                                                     "(did you mean '%s'?)",
                                                     tok, best);
                        else
                                veil_cmd_usage_error(&help_scan,
                                                     "unknown detector '%s'",
                                                     tok);
                        free(copy);
                        return -1;
                }
                sc->want[id] = true;
                picked++;
        }
        free(copy);
        if (!picked) {
                veil_cmd_usage_error(&help_scan, "--detectors: empty list");
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------ salt */
/* The fingerprint key: --salt-file, else VEIL_SCAN_SALT (taken out of the
 * environment once read). There is no default: a public salt would let
 * anyone test a guessed value against a report's fingerprints. *salt is
 * NULL when none was given. Returns -1 on a bad salt file. */
static int read_salt(const char *salt_file, char **salt, size_t *len)
{
        const char *env = getenv("VEIL_SCAN_SALT");
        char errstr[512];

        *salt = NULL;
        *len  = 0;
        if (salt_file) {
                *salt = veil_file_read(salt_file, len, errstr, sizeof(errstr));
                if (!*salt) {
                        fprintf(stderr, "veil scan: --salt-file %s\n", errstr);
                        return -1;
                }
                if (*len && (*salt)[*len - 1] == '\n')
                        (*len)--;
                if (*len && (*salt)[*len - 1] == '\r')
                        (*len)--;
                if (!*len) {
                        fprintf(stderr,
                                "veil scan: --salt-file %s: empty salt\n",
                                salt_file);
                        free(*salt);
                        *salt = NULL;
                        return -1;
                }
        } else if (env && *env) {
                *salt = veil_strdup(env);
                *len  = strlen(env);
        }
        if (env) {
                OPENSSL_cleanse((char *)env, strlen(env));
                unsetenv("VEIL_SCAN_SALT");
        }
        return 0;
}

/* ------------------------------------------------------------------ main */
static int default_jobs(void)
{
        cpu_set_t set;
        int n = 0;

        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        if (n < 1)
                n = (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
                n = 1;
        return n > MAX_JOBS ? MAX_JOBS : n;
}

int veil_cmd_scan(int argc, char **argv)
{
        enum { OPT_SALT_FILE = 256 };
        static const struct option longopts[] = {
                {"format", required_argument, NULL, 'f'},
                {"detectors", required_argument, NULL, 'd'},
                {"baseline", required_argument, NULL, 'b'},
                {"jobs", required_argument, NULL, 'j'},
                {"salt-file", required_argument, NULL, OPT_SALT_FILE},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        struct scan sc     = {0};
        const char *format = "text", *detectors = NULL, *baseline = NULL;
        const char *salt_file = NULL, *piece_env;
        char errstr[512], *salt = NULL;
        size_t salt_len = 0, k;
        int opt, i, jobs = 0, rc = VEIL_EXIT_USAGE;
        struct veil_text_buf tail = {0};

        opterr = 0;
        optind = 1;
        while ((opt = getopt_long(argc, argv, ":f:d:b:j:h", longopts, NULL)) !=
               -1) {
                switch (opt) {
                case 'f':
                        format = optarg;
                        break;
                case 'd':
                        detectors = optarg;
                        break;
                case 'b':
                        baseline = optarg;
                        break;
                case 'j':
                        if (veil_cmd_int_arg(optarg, 1, MAX_JOBS, &jobs))
                                return veil_cmd_usage_error(
                                        &help_scan,
                                        "--jobs: '%s' is not a number from 1 "
                                        "to %d",
                                        optarg, MAX_JOBS);
                        break;
                case OPT_SALT_FILE:
                        salt_file = optarg;
                        break;
                case 'h':
                        veil_cmd_print_help(&help_scan);
                        return VEIL_EXIT_OK;
                case ':':
                        return veil_cmd_usage_error(&help_scan,
                                                    "option '%s' needs a "
                                                    "value",
                                                    argv[optind - 1]);
                default:
                        return veil_cmd_usage_error(&help_scan,
                                                    "unknown option '%s'",
                                                    argv[optind - 1]);
                }
        }
        if (!strcmp(format, "text"))
                sc.rep.fmt = VEIL_SCAN_TEXT;
        else if (!strcmp(format, "json"))
                sc.rep.fmt = VEIL_SCAN_JSON;
        else if (!strcmp(format, "sarif"))
                sc.rep.fmt = VEIL_SCAN_SARIF;
        else
                return veil_cmd_usage_error(&help_scan,
                                            "unknown format '%s' (text, json "
                                            "or sarif)",
                                            format);
        if (optind >= argc)
                return veil_cmd_usage_error(&help_scan, "no PATH to scan");
        if (!jobs)
                jobs = default_jobs();
        /* tests cut tiny pieces to check that pieces change nothing */
        sc.piece_size = VEIL_SCAN_PIECE;
        piece_env     = getenv("VEIL_SCAN_PIECE_SIZE");
        if (piece_env && *piece_env) {
                int v;

                if (veil_cmd_int_arg(piece_env, 1, INT32_MAX, &v)) {
                        fprintf(stderr,
                                "veil scan: VEIL_SCAN_PIECE_SIZE: '%s' is not "
                                "a number of bytes\n",
                                piece_env);
                        return VEIL_EXIT_USAGE;
                }
                sc.piece_size = (size_t)v;
        }

        if (read_salt(salt_file, &salt, &salt_len))
                return VEIL_EXIT_USAGE;
        if (baseline && !salt) {
                fprintf(stderr,
                        "veil scan: --baseline needs the secret salt the "
                        "baseline was made with: set VEIL_SCAN_SALT or give "
                        "--salt-file FILE\n");
                return VEIL_EXIT_USAGE;
        }
        if (salt) {
                veil_hmac_init(&sc.hmac, salt, salt_len);
                OPENSSL_cleanse(salt, salt_len);
                free(salt);
                sc.rep.hmac = &sc.hmac;
        } else if (sc.rep.fmt != VEIL_SCAN_TEXT) {
                fprintf(stderr, "veil scan: no salt (VEIL_SCAN_SALT or "
                                "--salt-file): the report carries no "
                                "fingerprints\n");
        }

        sc.engine = veil_detect_engine_new(NULL, 0, errstr, sizeof(errstr));
        if (!sc.engine) {
                fprintf(stderr, "veil scan: %s\n", errstr);
                goto out;
        }
        sc.want = veil_calloc((size_t)veil_detect_count(sc.engine),
                              sizeof(*sc.want));
        for (i = 0; i < veil_detect_count(sc.engine); i++)
                sc.want[i] = true;
        if (detectors && parse_detectors(&sc, detectors))
                goto out;
        if (baseline && load_baseline(&sc, baseline))
                goto out;
        sc.det_name = veil_calloc((size_t)veil_detect_count(sc.engine),
                                  sizeof(*sc.det_name));
        sc.det_len  = veil_calloc((size_t)veil_detect_count(sc.engine),
                                  sizeof(*sc.det_len));
        for (i = 0; i < veil_detect_count(sc.engine); i++) {
                sc.det_name[i] = veil_detect_name(sc.engine, i);
                sc.det_len[i]  = strlen(sc.det_name[i]);
        }
        sc.rep.det_name = sc.det_name;
        sc.rep.det_len  = sc.det_len;
        sc.rep.engine   = sc.engine;
        sc.rep.want     = sc.want;
        sc.rep.base     = sc.base;
        sc.rep.n_base   = sc.n_base;
        if (pool_start(&sc, jobs, errstr, sizeof(errstr))) {
                fprintf(stderr, "veil scan: %s\n", errstr);
                pool_stop(&sc);
                goto out;
        }

        if (sc.rep.fmt == VEIL_SCAN_SARIF) {
                veil_scan_sarif_begin(sc.engine, &tail);
                out_put(&sc, tail.data, tail.len);
                tail.len = 0;
        }
        for (i = optind; i < argc && !sc.write_failed; i++)
                scan_path(&sc, argv[i]);
        pool_stop(&sc);
        if (sc.rep.fmt == VEIL_SCAN_SARIF) {
                veil_scan_sarif_end(&tail);
                out_put(&sc, tail.data, tail.len);
        }
        out_flush(&sc);
        if (sc.suppressed)
                fprintf(stderr,
                        "veil scan: %zu finding(s) in the baseline "
                        "not reported\n",
                        sc.suppressed);
        rc = sc.errors || sc.write_failed ? VEIL_EXIT_USAGE
             : sc.reported                ? VEIL_EXIT_GAPS
                                          : VEIL_EXIT_OK;
out:
        veil_text_buf_free(&tail);
        veil_text_buf_free(&sc.wbuf);
        for (k = 0; k < sc.n_base; k++)
                free(sc.base[k]);
        free(sc.base);
        free(sc.want);
        free(sc.det_name);
        free(sc.det_len);
        veil_hmac_cleanse(&sc.hmac);
        veil_detect_engine_destroy(sc.engine);
        return rc;
}
