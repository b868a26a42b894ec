/* worker.c - `veil run`: the loop. Several pipelines run side by side, each
 * its own consumer-group member with its own transactional sink (what
 * Kafka Streams does with stream threads), so that while one waits for its
 * commit the others keep the broker busy. A pipeline consumes, runs the
 * filter chain, and hands outputs, dead letters (dlq.c), audit events
 * (audit.c) and retention state (retain.c) to one transaction (sink.c) per
 * batch. This file owns the threads, each pipeline's loop, /healthz and
 * the stop/reload entry points; one pipeline's clients and transaction are
 * in pipe.c, one record's way through it in route.c. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pipe.h"
#include "retain.h"
#include "sink.h"
#include "source.h"
#include "util.h"
#include "veil.h"
#include "worker.h"

volatile sig_atomic_t veil_worker_stop_requested;
/* Bumped by each SIGHUP; every pipeline reloads once per change. */
static volatile sig_atomic_t reload_gen;

void veil_worker_stop(void)
{
        veil_worker_stop_requested = 1;
}

void veil_worker_reload(void)
{
        reload_gen = (sig_atomic_t)(reload_gen + 1);
}

/* ---- the loop ------------------------------------------------------------ */

static void loop(struct pipe *p)
{
        const int64_t interval   = p->config->commit_interval_ms > 0
                                           ? p->config->commit_interval_ms
                                           : 100;
        const int64_t max        = p->config->max_batch_records > 0
                                           ? p->config->max_batch_records
                                           : 10000;
        sig_atomic_t reload_seen = reload_gen;

        while (!veil_pipe_stopping(p) && !veil_pipe_dead(p)) {
                rd_kafka_message_t *rkm;
                int timeout = 100;
                /* One clock reading per step: at 100k records/s the
                 * readings alone showed in profiles. */
                int64_t now = veil_now_ms();
                bool in_txn = veil_sink_in_txn(p->sink);

                atomic_store_explicit(&p->heartbeat_ms, now,
                                      memory_order_relaxed);
                if (in_txn) {
                        int64_t left = p->batch_start_ms + interval - now;
                        timeout      = left > 0 ? (int)left : 0;
                }
                rkm = rd_kafka_consumer_poll(veil_source_consumer(p->source),
                                             timeout);
                rd_kafka_poll(veil_sink_producer(p->sink), 0);
                if (rkm) {
                        enum rec_outcome o = REC_OK;

                        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                veil_source_eof(p->source,
                                                rd_kafka_topic_name(rkm->rkt),
                                                rkm->partition);
                        else if (rkm->err)
                                veil_log("warn", "consume", "%s",
                                         rd_kafka_message_errstr(rkm));
                        else
                                o = veil_route_record(p, rkm);
                        rd_kafka_message_destroy(rkm);
                        if (o == REC_RETRY || o == REC_REDO) {
                                veil_pipe_abort_batch(p, true);
                                if (o == REC_RETRY)
                                        veil_pipe_backoff(p);
                                continue;
                        }
                        if (o == REC_FATAL)
                                break;
                }
                if (veil_pipe_dead(p))
                        break;
                now = veil_now_ms();
                /* Passed deadlines and erasure requests, at least once
                 * per commit interval, with or without input records. */
                if (veil_retain_due(p->retain, now)) {
                        char rerr[512];
                        int64_t n;

                        veil_pipe_begin(p);
                        if (veil_pipe_dead(p))
                                break;
                        n = veil_retain_tick(p->retain, now, rerr,
                                             sizeof(rerr));
                        if (n < 0) {
                                veil_pipe_fail(p, "%s", rerr);
                                break;
                        }
                        p->batch_records += n;
                }
                if (veil_sink_in_txn(p->sink) &&
                    (p->batch_records >= max ||
                     now - p->batch_start_ms >= interval)) {
                        if (veil_pipe_commit(p) == VEIL_SINK_ABORTED)
                                veil_pipe_backoff(p);
                }
                if (reload_seen != reload_gen && !veil_sink_in_txn(p->sink)) {
                        reload_seen = reload_gen;
                        veil_pipe_reload(p);
                }
                /* --once: every assigned partition read to its end (with
                 * more pipelines than partitions, one without any stops
                 * when another has read its share). */
                if (p->sh->opts.once && !veil_sink_in_txn(p->sink) &&
                    (veil_source_count(p->source)
                             ? veil_source_all_eof(p->source)
                             : atomic_load(&p->sh->done) > 0))
                        break;
        }
        /* SIGINT/SIGTERM: the open batch is committed, not lost. After a
         * fatal error it is aborted: nothing that was not written is
         * committed. */
        if (veil_sink_in_txn(p->sink)) {
                if (veil_pipe_dead(p))
                        veil_pipe_abort_batch(p, false);
                else
                        veil_pipe_commit(p);
        }
        atomic_fetch_add(&p->sh->done, 1);
}

static void *pipe_main(void *arg)
{
        struct pipe *p = arg;

        loop(p);
        return NULL;
}

/* /healthz, on the HTTP thread: only atomics. A pipeline beats at least
 * every commit interval; a commit or an audit recovery may legitimately
 * block for up to a couple of minutes. */
#define HEALTH_STALL_MS 180000

static int health(void *opaque, char *msg, size_t msg_size)
{
        struct shared *sh = opaque;
        int64_t oldest    = 0;
        size_t i;

        for (i = 0; i < sh->n_pipes; i++) {
                struct pipe *p = &sh->pipes[i];
                int64_t beat   = atomic_load_explicit(&p->heartbeat_ms,
                                                      memory_order_relaxed);

                if (atomic_load(&p->dead)) {
                        snprintf(msg, msg_size,
                                 "pipeline %zu stopped on a fatal error", i);
                        return 0;
                }
                if (beat == 0) {
                        snprintf(msg, msg_size, "starting");
                        return 1;
                }
                if (!oldest || beat < oldest)
                        oldest = beat;
        }
        if (oldest > 0 && veil_now_ms() - oldest > HEALTH_STALL_MS) {
                snprintf(msg, msg_size,
                         "a pipeline has not run for %" PRId64 " s",
                         (veil_now_ms() - oldest) / 1000);
                return 0;
        }
        snprintf(msg, msg_size, "%s", oldest > 0 ? "running" : "starting");
        return 1;
}

static size_t threads_of(const struct veil_config *config)
{
        long n;

        if (config->threads > 0)
                return (size_t)config->threads;
        n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (size_t)n : 1;
}

int veil_worker_run(const struct veil_config *config,
                    const struct veil_worker_opts *opts, char *errstr,
                    size_t errstr_size)
{
        struct shared sh;
        int64_t n_in = 0, n_out = 0, n_dlq = 0, n_tomb = 0, n_exp = 0,
                n_commits = 0, n_aborts = 0;
        const char *fatal = NULL;
        size_t i;
        int rc = 0;

        memset(&sh, 0, sizeof(sh));
        atomic_init(&sh.stop, false);
        atomic_init(&sh.done, 0);
        atomic_init(&sh.assigned, 0);
        sh.config = config;
        if (opts)
                sh.opts = *opts;
        veil_log_set_level(config->log_level);
        veil_families_init(&sh.m);
        sh.n_pipes = threads_of(config);
        sh.pipes   = veil_calloc(sh.n_pipes, sizeof(*sh.pipes));
        for (i = 0; i < sh.n_pipes; i++) {
                struct pipe *p = &sh.pipes[i];

                p->sh     = &sh;
                p->index  = (int)i;
                p->config = config;
                atomic_init(&p->heartbeat_ms, 0);
                atomic_init(&p->dead, false);
                /* The first pipeline keeps the documented
                 * transactional.id GROUP-INSTANCE; the others add their
                 * number. Stable across restarts, so each fences its own
                 * predecessor. */
                if (i == 0)
                        snprintf(p->txn_id, sizeof(p->txn_id), "%s-%s",
                                 config->group, config->instance);
                else
                        snprintf(p->txn_id, sizeof(p->txn_id), "%s-%s-%zu",
                                 config->group, config->instance, i);
        }
        if (config->metrics_listen) {
                sh.http = veil_http_start(config->metrics_listen, sh.m.reg,
                                          health, &sh, errstr, errstr_size);
                if (!sh.http) {
                        rc = VEIL_EIO;
                        goto out;
                }
                veil_log("info", "metrics",
                         "serving /metrics and /healthz on %.*s:%d",
                         (int)(strrchr(config->metrics_listen, ':') -
                               config->metrics_listen),
                         config->metrics_listen, veil_http_port(sh.http));
        }
        for (i = 0; i < sh.n_pipes; i++) {
                rc = veil_pipe_open(&sh.pipes[i], errstr, errstr_size);
                if (rc)
                        goto out;
        }
        veil_log("info", "start",
                 "worker %s-%s: group %s, %zu pipeline(s), %zu route(s), "
                 "policy %.12s, audit %s, dlq payload %s",
                 config->group, config->instance, config->group, sh.n_pipes,
                 config->policy.n_routes, config->policy.digest,
                 config->audit_level == VEIL_AUDIT_BATCH ? "batch"
                 : config->audit_level == VEIL_AUDIT_OFF ? "off"
                                                         : "record",
                 config->dlq_payload == VEIL_DLQ_ENCRYPTED ? "encrypted"
                                                           : "raw");
        for (i = 1; i < sh.n_pipes; i++) {
                if (pthread_create(&sh.pipes[i].thread, NULL, pipe_main,
                                   &sh.pipes[i])) {
                        veil_pipe_fail(&sh.pipes[i],
                                       "starting pipeline %zu failed", i);
                        break;
                }
                sh.pipes[i].started = true;
        }
        loop(&sh.pipes[0]);
        for (i = 1; i < sh.n_pipes; i++)
                if (sh.pipes[i].started)
                        pthread_join(sh.pipes[i].thread, NULL);
out:
        for (i = 0; i < sh.n_pipes; i++) {
                struct pipe *p = &sh.pipes[i];

                veil_pipe_close(p);
                n_in += p->n_in;
                n_out += p->n_out;
                n_dlq += p->n_dlq;
                n_tomb += p->n_tombstones;
                n_exp += p->n_expired;
                n_commits += p->n_commits;
                n_aborts += p->n_aborts;
                if (atomic_load(&p->dead) && !fatal)
                        fatal = p->fatal_msg;
        }
        if (!rc)
                veil_log("info", "stop",
                         "records in %" PRId64 ", out %" PRId64
                         ", tombstones %" PRId64 ", dlq %" PRId64
                         ", expired %" PRId64 ", commits %" PRId64
                         ", aborts %" PRId64,
                         n_in, n_out, n_tomb, n_dlq, n_exp, n_commits,
                         n_aborts);
        if (!rc && fatal)
                rc = veil_errf(errstr, errstr_size, VEIL_ENET, "%s", fatal);
        /* The endpoint serves until the end: a scrape after the last
         * commit sees the final counts. */
        veil_http_stop(sh.http);
        free(sh.pipes);
        veil_families_destroy(&sh.m);
        return rc;
}
