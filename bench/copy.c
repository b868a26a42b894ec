/* copy.c - the end-to-end benchmark's baseline, its source and its
 * stopwatch (bench/e2e.py drives all three).
 *
 *   copy run BOOTSTRAP GROUP TXN_ID SOURCE OUT1 OUT2 [THREADS [MS MAX]]
 *
 * An exactly-once copy of SOURCE to two topics with the same settings as
 * `veil run` (cooperative-sticky, read_committed, a transactional producer
 * whose offsets go with the consumer's group metadata, one transaction per
 * MS=100 ms or MAX=10,000 records), records copied unchanged: no decoding,
 * licensing, DLQ, ledger or audit. THREADS pipelines (default: the online
 * cores, as Veil's `threads:` default) each own a consumer (one group
 * member) and a producer (TXN_ID-N), so one commits while another reads.
 * Runs until SIGINT/SIGTERM, then commits the open batches.
 *
 *   copy fill BOOTSTRAP TOPIC PRIME N VALUES TXN_ID [KEYS]
 *
 * Produces PRIME records, then N records (keys C-000000000.., values
 * round robin from the file VALUES), each set in a transaction left open;
 * says "filled", and commits each when a line arrives on stdin (below).
 * With KEYS, record i's key is C-<(i * 2654435761) mod KEYS>: KEYS
 * distinct subjects in a scrambled order, each coming back every KEYS
 * records on average (crypto-shredding's comparison: bench/e2e.py).
 *
 *   copy count BOOTSTRAP TOPIC N [TIMEOUT_S [MARK]]
 *
 * Reads every partition of TOPIC from the start, read_committed, without a
 * group, until N records arrived; prints "mark TIME" when the first MARK
 * have, and at the end one JSON line with the count and the
 * CLOCK_MONOTONIC times (comparable with Python's time.monotonic()) of the
 * first and the last. Exits 1 on timeout. Counting in C keeps the
 * stopwatch's CPU small next to what it measures on a 2-core machine. */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
        fprintf(stderr, "copy: %s: %s\n", what, why);
        exit(1);
}

static void check(rd_kafka_error_t *error, const char *what)
{
        if (error)
                die(what, rd_kafka_error_string(error));
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
        char err[512];

        if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                die(k, err);
}

/* One pipeline: a group member and its transactional producer. */
struct pipe {
        pthread_t thread;
        const char *bootstrap, *group, *source, *out[2];
        char txn_id[256];
        long long interval, max, batch, start, copied;
        rd_kafka_t *consumer, *producer;
        int open;
};

/* Offsets of what this member has read, sent with its group metadata, then
 * the commit: the batch and its input positions become visible together. */
static void commit(struct pipe *p)
{
        rd_kafka_topic_partition_list_t *parts = NULL, *offsets;
        rd_kafka_consumer_group_metadata_t *cgmd;
        int i;

        rd_kafka_assignment(p->consumer, &parts);
        rd_kafka_position(p->consumer, parts);
        offsets = rd_kafka_topic_partition_list_new(parts->cnt + 1);
        for (i = 0; i < parts->cnt; i++)
                if (parts->elems[i].offset >= 0)
                        rd_kafka_topic_partition_list_add(
                                offsets, parts->elems[i].topic,
                                parts->elems[i].partition)
                                ->offset = parts->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(parts);
        cgmd = rd_kafka_consumer_group_metadata(p->consumer);
        check(rd_kafka_send_offsets_to_transaction(p->producer, offsets, cgmd,
                                                   30000),
              "send_offsets_to_transaction");
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_topic_partition_list_destroy(offsets);
        check(rd_kafka_commit_transaction(p->producer, 60000),
              "commit_transaction");
        p->open = 0;
}

/* With several members, a partition can move while a batch is open: the
 * batch (and the partition's position) is committed before it goes, so
 * its new owner starts where this one stopped, as the worker does. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        struct pipe *p = opaque;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
                return;
        }
        if (p->open)
                commit(p);
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
}

static void produce_copy(struct pipe *p, const rd_kafka_message_t *rkm)
{
        int k;

        for (k = 0; k < 2; k++) {
                rd_kafka_resp_err_t e;

                while ((e = rd_kafka_producev(
                                p->producer, RD_KAFKA_V_TOPIC(p->out[k]),
                                RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
                                RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_TIMESTAMP(
                                        rd_kafka_message_timestamp(rkm, NULL)),
                                RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(p->producer, 100);
                if (e)
                        die("produce", rd_kafka_err2str(e));
        }
}

static void *pipe_main(void *arg)
{
        struct pipe *p                          = arg;
        rd_kafka_conf_t *pconf                  = rd_kafka_conf_new(), *cconf;
        rd_kafka_topic_partition_list_t *topics = NULL;
        char err[512];

        set(pconf, "bootstrap.servers", p->bootstrap);
        set(pconf, "transactional.id", p->txn_id);
        p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
        if (!p->producer)
                die("producer", err);
        check(rd_kafka_init_transactions(p->producer, 60000),
              "init_transactions");

        cconf = rd_kafka_conf_new();
        set(cconf, "partition.assignment.strategy", "cooperative-sticky");
        set(cconf, "auto.offset.reset", "earliest");
        set(cconf, "bootstrap.servers", p->bootstrap);
        set(cconf, "group.id", p->group);
        set(cconf, "isolation.level", "read_committed");
        set(cconf, "enable.auto.commit", "false");
        set(cconf, "enable.partition.eof", "false");
        rd_kafka_conf_set_rebalance_cb(cconf, rebalance_cb);
        rd_kafka_conf_set_opaque(cconf, p);
        p->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
        if (!p->consumer)
                die("consumer", err);
        rd_kafka_poll_set_consumer(p->consumer);
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, p->source,
                                          RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(p->consumer, topics))
                die("subscribe", p->source);
        rd_kafka_topic_partition_list_destroy(topics);

        while (!stop) {
                int timeout = 100;
                rd_kafka_message_t *rkm;

                if (p->open) {
                        long long left = p->start + p->interval - now_ms();
                        timeout        = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(p->consumer, timeout);
                rd_kafka_poll(p->producer, 0);
                if (rkm && !rkm->err) {
                        if (!p->open) {
                                check(rd_kafka_begin_transaction(p->producer),
                                      "begin_transaction");
                                p->open  = 1;
                                p->start = now_ms();
                                p->batch = 0;
                        }
                        produce_copy(p, rkm);
                        p->batch++;
                        p->copied++;
                }
                if (rkm)
                        rd_kafka_message_destroy(rkm);
                if (p->open &&
                    (p->batch >= p->max || now_ms() - p->start >= p->interval))
                        commit(p);
        }
        if (p->open)
                commit(p);
        rd_kafka_consumer_close(p->consumer);
        rd_kafka_destroy(p->consumer);
        rd_kafka_flush(p->producer, 10000);
        rd_kafka_destroy(p->producer);
        return NULL;
}

static int cmd_run(int argc, char **argv)
{
        long threads       = sysconf(_SC_NPROCESSORS_ONLN), i;
        long long interval = 100, max = 10000, copied = 0;
        struct pipe *pipes;

        if (argc < 7 || argc == 9 || argc > 10) {
                fprintf(stderr, "usage: copy run BOOTSTRAP GROUP TXN_ID SOURCE "
                                "OUT1 OUT2 [THREADS [INTERVAL_MS MAX]]\n");
                return 2;
        }
        if (argc >= 8)
                threads = atol(argv[7]);
        if (argc == 10) {
                interval = atoll(argv[8]);
                max      = atoll(argv[9]);
        }
        if (threads < 1 || threads > 64 || interval < 1 || max < 1) {
                fprintf(stderr, "copy: bad THREADS, INTERVAL_MS or MAX\n");
                return 2;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        pipes = calloc((size_t)threads, sizeof(*pipes));
        if (!pipes)
                die("calloc", "out of memory");
        for (i = 0; i < threads; i++) {
                struct pipe *p = &pipes[i];

                p->bootstrap = argv[1];
                p->group     = argv[2];
                p->source    = argv[4];
                p->out[0]    = argv[5];
                p->out[1]    = argv[6];
                p->interval  = interval;
                p->max       = max;
                snprintf(p->txn_id, sizeof(p->txn_id), "%s-%ld", argv[3], i);
                if (pthread_create(&p->thread, NULL, pipe_main, p))
                        die("pthread_create", "failed");
        }
        for (i = 0; i < threads; i++) {
                pthread_join(pipes[i].thread, NULL);
                copied += pipes[i].copied;
        }
        fprintf(stderr, "copy: %ld pipeline(s) copied %lld record(s)\n",
                threads, copied);
        free(pipes);
        return 0;
}

/* The values to produce: a file of (4-byte big-endian length, bytes). */
static unsigned char *load_values(const char *path, size_t *n_out,
                                  unsigned char ***vals, size_t **lens)
{
        unsigned char *buf;
        size_t size, off = 0, n = 0, cap = 0;
        FILE *f = fopen(path, "rb");
        long end;

        if (!f || fseek(f, 0, SEEK_END) || (end = ftell(f)) <= 0 ||
            fseek(f, 0, SEEK_SET))
                die("values", path);
        size = (size_t)end;
        buf  = malloc(size);
        if (!buf || fread(buf, 1, size, f) != size)
                die("values", path);
        fclose(f);
        *vals = NULL;
        *lens = NULL;
        while (off + 4 <= size) {
                size_t len = (size_t)buf[off] << 24 |
                             (size_t)buf[off + 1] << 16 |
                             (size_t)buf[off + 2] << 8 | buf[off + 3];

                if (off + 4 + len > size)
                        die("values", "truncated");
                if (n == cap) {
                        cap   = cap ? 2 * cap : 1024;
                        *vals = realloc(*vals, cap * sizeof(**vals));
                        *lens = realloc(*lens, cap * sizeof(**lens));
                        if (!*vals || !*lens)
                                die("values", "out of memory");
                }
                (*vals)[n]   = buf + off + 4;
                (*lens)[n++] = len;
                off += 4 + len;
        }
        if (!n)
                die("values", "empty");
        *n_out = n;
        return buf;
}

/* Records first .. first+n-1 (keys C-<number>, values round robin). */
static void fill_range(rd_kafka_t *rk, const char *topic, long first, long n,
                       unsigned char **vals, const size_t *lens, size_t n_vals,
                       long keys)
{
        char key[32];
        long i;

        for (i = first; i < first + n; i++) {
                const size_t v = (size_t)i % n_vals;
                rd_kafka_resp_err_t e;
                long k   = keys > 0 ? (long)(((unsigned long long)i *
                                            2654435761ULL) %
                                           (unsigned long long)keys)
                                    : i;
                int klen = snprintf(key, sizeof(key), "C-%09ld", k);

                while ((e = rd_kafka_producev(
                                rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY(key, (size_t)klen),
                                RD_KAFKA_V_VALUE(vals[v], lens[v]),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(rk, 10);
                if (e)
                        die("produce", rd_kafka_err2str(e));
                rd_kafka_poll(rk, 0);
        }
        if (rd_kafka_flush(rk, 120000))
                die("flush", "timed out");
}

static rd_kafka_t *txn_producer(const char *bootstrap, const char *txn_id)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];
        rd_kafka_t *rk;

        set(conf, "bootstrap.servers", bootstrap);
        set(conf, "transactional.id", txn_id);
        set(conf, "transaction.timeout.ms", "600000");
        set(conf, "linger.ms", "20");
        set(conf, "queue.buffering.max.messages", "1000000");
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk)
                die("producer", err);
        check(rd_kafka_init_transactions(rk, 60000), "init_transactions");
        check(rd_kafka_begin_transaction(rk), "begin_transaction");
        return rk;
}

static void wait_line(void)
{
        char line[64];

        if (!fgets(line, sizeof(line), stdin))
                die("fill", "stdin closed before the commit");
}

/* Two open transactions: PRIME records, then (in every partition after
 * them) N records; "filled" once all are on the broker. A read_committed
 * reader sees nothing until a first line on stdin commits the primer
 * ("primed"), and the N only when a second line commits them ("commit
 * TIME" just before). The benchmark starts a pipeline with nothing to read,
 * lets its group settle, passes the primer through it (every member's
 * first transaction on fresh topics takes ~1 s here), then commits the N:
 * the timed run is a backlog drained by a pipeline past its start-up. */
static int cmd_fill(int argc, char **argv)
{
        unsigned char *buf, **vals;
        rd_kafka_t *rk_prime, *rk;
        size_t n_vals, *lens;
        char txn_id[256];
        long n, prime, keys;

        if (argc != 7 && argc != 8) {
                fprintf(stderr, "usage: copy fill BOOTSTRAP TOPIC PRIME N "
                                "VALUES TXN_ID [KEYS]\n");
                return 2;
        }
        keys  = argc == 8 ? atol(argv[7]) : 0;
        prime = atol(argv[3]);
        n     = atol(argv[4]);
        buf   = load_values(argv[5], &n_vals, &vals, &lens);
        snprintf(txn_id, sizeof(txn_id), "%s-prime", argv[6]);
        rk_prime = txn_producer(argv[1], txn_id);
        fill_range(rk_prime, argv[2], 0, prime, vals, lens, n_vals, keys);
        rk = txn_producer(argv[1], argv[6]);
        fill_range(rk, argv[2], prime, n, vals, lens, n_vals, keys);
        printf("filled\n");
        fflush(stdout);
        wait_line();
        check(rd_kafka_commit_transaction(rk_prime, 60000),
              "commit_transaction");
        printf("primed %.6f\n", now_s());
        fflush(stdout);
        wait_line();
        printf("commit %.6f\n", now_s());
        check(rd_kafka_commit_transaction(rk, 60000), "commit_transaction");
        printf("committed %.6f\n", now_s());
        fflush(stdout);
        rd_kafka_destroy(rk);
        rd_kafka_destroy(rk_prime);
        free(vals);
        free(lens);
        free(buf);
        return 0;
}

static int cmd_count(int argc, char **argv)
{
        rd_kafka_conf_t *conf              = rd_kafka_conf_new();
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_topic_t *rkt;
        double timeout = 300, deadline, t_first = 0, t_last = 0;
        long n, got = 0, mark = 0;
        char err[512];
        rd_kafka_t *rk;
        int i;

        if (argc < 4 || argc > 6) {
                fprintf(stderr, "usage: copy count BOOTSTRAP TOPIC N "
                                "[TIMEOUT_S [MARK]]\n");
                return 2;
        }
        n = atol(argv[3]);
        if (argc >= 5)
                timeout = atof(argv[4]);
        if (argc == 6)
                mark = atol(argv[5]);
        if (n < 1)
                die("count", "bad N");
        set(conf, "bootstrap.servers", argv[1]);
        set(conf, "group.id", "veil-bench-count"); /* never joins: assign() */
        set(conf, "isolation.level", "read_committed");
        set(conf, "enable.auto.commit", "false");
        set(conf, "enable.partition.eof", "false");
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk)
                die("consumer", err);
        rkt = rd_kafka_topic_new(rk, argv[2], NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
            md->topics[0].err || md->topics[0].partition_cnt < 1)
                die("metadata", argv[2]);
        parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (i = 0; i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(parts, argv[2], i)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (rd_kafka_assign(rk, parts))
                die("assign", argv[2]);
        rd_kafka_topic_partition_list_destroy(parts);

        deadline = now_s() + timeout;
        while (got < n) {
                rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);

                if (rkm) {
                        if (!rkm->err) {
                                t_last = now_s();
                                if (!got++)
                                        t_first = t_last;
                                if (got == mark) {
                                        printf("mark %.6f\n", t_last);
                                        fflush(stdout);
                                }
                        }
                        rd_kafka_message_destroy(rkm);
                }
                if (now_s() > deadline) {
                        fprintf(stderr, "copy: count: %ld of %ld in %.0f s\n",
                                got, n, timeout);
                        return 1;
                }
        }
        printf("{\"count\": %ld, \"t_first\": %.6f, \"t_last\": %.6f}\n", got,
               t_first, t_last);
        fflush(stdout);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc > 1 && !strcmp(argv[1], "run"))
                return cmd_run(argc - 1, argv + 1);
        if (argc > 1 && !strcmp(argv[1], "fill"))
                return cmd_fill(argc - 1, argv + 1);
        if (argc > 1 && !strcmp(argv[1], "count"))
                return cmd_count(argc - 1, argv + 1);
        fprintf(stderr, "usage: copy run|fill|count ... (see bench/copy.c)\n");
        return 2;
}
