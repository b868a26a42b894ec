/* pipe.h - `veil run` internals shared by its files: what the pipelines
 * share, one pipeline (struct pipe), its clients and batch transaction
 * (pipe.c), one record (route.c); the loop is in worker.c. Not a public
 * header. */
#ifndef VEIL_CONNECTORS_PIPE_H
#define VEIL_CONNECTORS_PIPE_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sink.h"
#include "tally.h"
#include "worker.h"

struct veil_audit;
struct veil_chain;
struct veil_dlq;
struct veil_http;
struct veil_registry;
struct veil_retain;
struct veil_source;

/* Set by veil_worker_stop() (SIGINT/SIGTERM); worker.c owns it. */
extern volatile sig_atomic_t veil_worker_stop_requested;

/* ---- what the pipelines share -------------------------------------------- */

struct shared {
        const struct veil_config *config;
        struct veil_worker_opts opts;
        struct veil_families m;
        struct veil_http *http;
        atomic_bool stop; /* a pipeline hit a fatal error: all stop */
        atomic_int done;  /* pipelines that finished (--once) */
        atomic_int assigned;
        struct pipe *pipes;
        size_t n_pipes;
};

struct pipe {
        struct shared *sh;
        int index;
        const struct veil_config *config;
        struct veil_config *owned; /* a reloaded config, or NULL */
        char txn_id[512];
        pthread_t thread;
        bool started;

        struct veil_registry *reg;
        struct veil_chain *chain;
        struct veil_sink *sink;
        struct veil_source *source;
        rd_kafka_t *audit_reader;
        struct veil_audit *audit;
        struct veil_retain *retain;
        struct veil_dlq *dlq;

        int64_t batch_start_ms, batch_records, batch_now;
        /* A record whose output the producer refused for its size after
         * the size check passed: the batch is redone and this record goes
         * to the DLQ instead. */
        struct {
                char *topic;
                int32_t partition;
                int64_t offset;
        } too_large;

        struct veil_tally *tally;

        _Atomic int64_t heartbeat_ms;
        atomic_bool dead;
        char fatal_msg[512];
        int64_t n_in, n_out, n_dlq, n_tombstones, n_expired;
        int64_t n_commits, n_aborts;
        int64_t backoff_ms;
};

/* ---- one pipeline (pipe.c) ------------------------------------------------
 */

/* A stop was asked for, or a pipeline hit a fatal error. */
bool veil_pipe_stopping(const struct pipe *p);

/* A fatal error: the open transaction is aborted (never committed), every
 * pipeline stops, `veil run` exits non-zero with the reason. */
void veil_pipe_fail(struct pipe *p, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The pipeline is dead (a fatal error, its own or the sink's). */
bool veil_pipe_dead(struct pipe *p);

/* Opens a batch transaction unless one is open. */
void veil_pipe_begin(struct pipe *p);

/* Aborts the open batch (a transient failure); with rewind it is read
 * again. */
void veil_pipe_abort_batch(struct pipe *p, bool rewind);

/* Ledger and audit events of the batch, the consumer's positions, commit.
 * Never after a fatal error: the sink refuses. */
enum veil_sink_status veil_pipe_commit(struct pipe *p);

/* Sleeps 100 ms, doubling up to 5 s while failures repeat. */
void veil_pipe_backoff(struct pipe *p);

/* SIGHUP, between batches: a new config and chain, or the old ones and a
 * log line saying why not. */
void veil_pipe_reload(struct pipe *p);

/* Opens the pipeline's clients; 0 or a VEIL_E* code with errstr. */
int veil_pipe_open(struct pipe *p, char *errstr, size_t errstr_size);

/* Closes them in reverse order (the last revocation commits or aborts the
 * open batch). */
void veil_pipe_close(struct pipe *p);

/* ---- one record (route.c) -------------------------------------------------
 */

enum rec_outcome { REC_OK = 0, REC_RETRY, REC_REDO, REC_FATAL };

/* Runs one consumed record through the chain into the open transaction
 * (or the DLQ). REC_RETRY/REC_REDO: the batch is aborted and read again. */
enum rec_outcome veil_route_record(struct pipe *p, rd_kafka_message_t *rkm);

/* The audit sink callback (opaque: the pipe): audit events go into the
 * same transaction. */
int veil_route_audit_produce(void *opaque, const char *topic, int32_t partition,
                             const void *key, size_t key_len, const void *value,
                             size_t value_len, rd_kafka_headers_t *hdrs,
                             char *errstr, size_t errstr_size);

#endif
