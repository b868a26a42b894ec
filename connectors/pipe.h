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

#define VEIL_PIPE_REG_DIGEST_LEN 32

struct veil_alerts;
struct veil_audit;
struct veil_breaker;
struct veil_chain;
struct veil_halt;
struct veil_purpose;
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
        /* the circuit breaker (NULL when no purpose can be halted) and the
         * alerts (alerts:), shared; both follow the config the worker
         * started with */
        struct veil_breaker *breaker;
        struct veil_alerts *alerts;
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
        /* the settings `reg` was built from (veil_pipe_registry_digest) */
        unsigned char reg_digest[VEIL_PIPE_REG_DIGEST_LEN];
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
        struct veil_halt *halt; /* this pipeline's side of the breaker */

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
 * log line saying why not. A new registry client too when the registry
 * settings changed (the token's and the TLS files' contents included);
 * one that cannot be built or does not answer its probe keeps the old. */
void veil_pipe_reload(struct pipe *p);

/* SHA-256 over the registry settings and the contents of the files they
 * name (ca_file, cert_file, key_file): equal digests, same client. */
void veil_pipe_registry_digest(const struct veil_registry_opts *o,
                               unsigned char out[VEIL_PIPE_REG_DIGEST_LEN]);

/* Opens the pipeline's clients; 0 or a VEIL_E* code with errstr. */
int veil_pipe_open(struct pipe *p, char *errstr, size_t errstr_size);

/* Closes them in reverse order (the last revocation commits or aborts the
 * open batch). */
void veil_pipe_close(struct pipe *p);

/* ---- one record (route.c) -------------------------------------------------
 */

enum rec_outcome { REC_OK = 0, REC_RETRY, REC_REDO, REC_FATAL };

/* ---- the circuit breaker (halt.c) ------------------------------------------
 */

struct veil_halt *veil_halt_new(void);
void veil_halt_destroy(struct veil_halt *h);
/* Is the purpose halted: by the shared breaker, or by a trip of this
 * pipeline's open batch? */
bool veil_halt_held(struct pipe *p, const struct veil_purpose *pu);
/* Trips the purpose's breaker inside the open transaction: the control
 * record and a `halt` audit event. `source` is the record that tripped it
 * ("TOPIC/PARTITION/OFFSET", or NULL). */
enum rec_outcome veil_halt_trip(struct pipe *p, const struct veil_purpose *pu,
                                const char *reason, const char *source);
/* The batch committed (its trips become the breaker's state) / aborted
 * (they are forgotten: the redo trips again). */
void veil_halt_commit(struct pipe *p);
void veil_halt_rollback(struct pipe *p);
/* On the loop's turns (at most every 200 ms): halts that halt_on alerts
 * raised, and audit events of the resumes read from the control topic. */
enum rec_outcome veil_halt_tick(struct pipe *p, int64_t now_ms);

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
