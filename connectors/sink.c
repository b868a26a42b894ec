/* sink.c - the transactional sink (sink.h): the error policy of
 * librdkafka's transactional API in one place, after its
 * examples/transactions.c — retriable loops (bounded), abortable aborts,
 * fatal stops. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "sink.h"
#include "util.h"
#include "veil.h"

/* How long a retriable error may keep one step retrying before the
 * transaction is given up (aborted; the batch is redone). */
#define SINK_RETRY_DEADLINE_MS 120000
/* Per call of the transactional API. */
#define SINK_CALL_TIMEOUT_MS 30000

struct veil_sink {
        rd_kafka_t *rk;
        volatile sig_atomic_t *stop;
        size_t max_message;
        bool in_txn;
        bool must_abort; /* an abortable error: the commit aborts */
        bool fatal;
        char fatal_msg[512];
        int64_t committed, aborted;
};

void veil_sink_fail(struct veil_sink *s, const char *fmt, ...)
{
        va_list ap;

        if (!s->fatal) {
                s->fatal = true;
                va_start(ap, fmt);
                vsnprintf(s->fatal_msg, sizeof(s->fatal_msg), fmt, ap);
                va_end(ap);
                veil_log("error", "fatal", "%s", s->fatal_msg);
        }
        /* Whatever the batch holds is incomplete: from now on it cannot
         * commit, and the caller's next step aborts it. Not here: this
         * runs from librdkafka's error callback too, which a transactional
         * call serves while it waits (commit_transaction flushes), and an
         * abort inside it would conflict with that call. */
}

const char *veil_sink_fatal(const struct veil_sink *s)
{
        return s->fatal ? s->fatal_msg : NULL;
}

static bool stopping(const struct veil_sink *s)
{
        return s->stop && *s->stop;
}

struct veil_sink *veil_sink_new(rd_kafka_conf_t *conf,
                                volatile sig_atomic_t *stop, char *errstr,
                                size_t errstr_size)
{
        struct veil_sink *s = veil_calloc(1, sizeof(*s));
        rd_kafka_error_t *error;
        char buf[64], kerr[512];
        size_t len = sizeof(buf);

        s->stop        = stop;
        s->max_message = 1000000;
        if (rd_kafka_conf_get(conf, "message.max.bytes", buf, &len) ==
                    RD_KAFKA_CONF_OK &&
            strtoull(buf, NULL, 10) > 0)
                s->max_message = (size_t)strtoull(buf, NULL, 10);
        s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!s->rk) {
                rd_kafka_conf_destroy(conf);
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "producer: %s",
                          kerr);
                free(s);
                return NULL;
        }
        /* Fences a predecessor with the same transactional.id (a restarted
         * worker) and aborts its open transaction at once. */
        for (;;) {
                error = rd_kafka_init_transactions(s->rk, 60000);
                if (!error)
                        break;
                if (!rd_kafka_error_is_retriable(error) || stopping(s)) {
                        veil_errf(errstr, errstr_size, VEIL_ENET,
                                  "init_transactions: %s",
                                  rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        rd_kafka_destroy(s->rk);
                        free(s);
                        return NULL;
                }
                veil_log("warn", "txn", "init_transactions: %s (retrying)",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
        return s;
}

void veil_sink_destroy(struct veil_sink *s)
{
        if (!s)
                return;
        if (s->in_txn)
                veil_sink_abort(s);
        rd_kafka_flush(s->rk, 10000);
        rd_kafka_destroy(s->rk);
        free(s);
}

rd_kafka_t *veil_sink_producer(struct veil_sink *s)
{
        return s->rk;
}

size_t veil_sink_max_message(const struct veil_sink *s)
{
        return s->max_message;
}

bool veil_sink_in_txn(const struct veil_sink *s)
{
        return s->in_txn;
}

void veil_sink_counts(const struct veil_sink *s, int64_t *committed,
                      int64_t *aborted)
{
        *committed = s->committed;
        *aborted   = s->aborted;
}

enum veil_sink_status veil_sink_begin(struct veil_sink *s)
{
        rd_kafka_error_t *error;

        if (s->fatal)
                return VEIL_SINK_FATAL;
        if (s->in_txn)
                return VEIL_SINK_OK;
        error = rd_kafka_begin_transaction(s->rk);
        if (error) {
                veil_sink_fail(s, "begin_transaction: %s",
                               rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return VEIL_SINK_FATAL;
        }
        s->in_txn = true;
        return VEIL_SINK_OK;
}

/* True when a produce error only means the open transaction has failed
 * with an abortable error (librdkafka refuses further messages with
 * "Erroneous state" until it is aborted) and the producer itself is not
 * fatally broken: abort the batch and redo it, do not stop. */
static bool txn_abortable(rd_kafka_t *rk, rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR__STATE &&
               rd_kafka_fatal_error(rk, NULL, 0) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

enum veil_sink_status
veil_sink_produce(struct veil_sink *s, const char *topic, int32_t partition,
                  const void *key, size_t key_len, const void *value,
                  size_t value_len, rd_kafka_headers_t *hdrs, int64_t timestamp)
{
        rd_kafka_resp_err_t err;

        if (s->fatal || !s->in_txn) {
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                if (!s->fatal)
                        veil_sink_fail(s,
                                       "producing to %s outside a "
                                       "transaction",
                                       topic);
                return VEIL_SINK_FATAL;
        }
        err = veil_kafka_produce(s->rk, topic, partition, key, key_len, value,
                                 value_len, hdrs, timestamp);
        if (!err)
                return VEIL_SINK_OK;
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
                return VEIL_SINK_RECORD;
        if (txn_abortable(s->rk, err)) {
                if (!s->must_abort)
                        veil_log("warn", "txn",
                                 "producing to %s: %s (the transaction "
                                 "failed; aborting the batch at its commit)",
                                 topic, rd_kafka_err2str(err));
                s->must_abort = true;
                return VEIL_SINK_OK;
        }
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                /* "Local: Fatal error" says nothing: the reason (fenced by
                 * a newer instance, not authorised) is the producer's. */
                char why[256];

                rd_kafka_fatal_error(s->rk, why, sizeof(why));
                veil_sink_fail(s, "producing to %s: %s", topic, why);
        } else
                veil_sink_fail(s, "producing to %s: %s", topic,
                               rd_kafka_err2str(err));
        return VEIL_SINK_FATAL;
}

int veil_sink_write(struct veil_sink *s, const char *topic, int32_t partition,
                    const void *key, size_t key_len, const void *value,
                    size_t value_len, rd_kafka_headers_t *hdrs, char *errstr,
                    size_t errstr_size)
{
        switch (veil_sink_produce(s, topic, partition, key, key_len, value,
                                  value_len, hdrs, 0)) {
        case VEIL_SINK_OK:
                return 0;
        case VEIL_SINK_RECORD:
                return veil_errf(errstr, errstr_size, VEIL_ENET,
                                 "producing to %s: %zu bytes are more than "
                                 "the producer takes",
                                 topic, key_len + value_len);
        default:
                return veil_errf(errstr, errstr_size, VEIL_ENET, "%s",
                                 s->fatal ? s->fatal_msg : "the sink failed");
        }
}

/* An error from a transactional call: fatal stops, anything else aborts. */
static enum veil_sink_status failed(struct veil_sink *s, const char *what,
                                    rd_kafka_error_t *error)
{
        if (rd_kafka_error_is_fatal(error)) {
                veil_sink_fail(s, "%s: %s", what, rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return VEIL_SINK_FATAL;
        }
        veil_log("warn", "txn", "%s: %s (aborting the batch)", what,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return veil_sink_abort(s) == VEIL_SINK_OK ? VEIL_SINK_ABORTED
                                                  : VEIL_SINK_FATAL;
}

/* A retriable error may be retried until the deadline or a shutdown;
 * after that it counts as abortable. */
static bool retry(struct veil_sink *s, rd_kafka_error_t *error, int64_t t0,
                  const char *what)
{
        if (!rd_kafka_error_is_retriable(error) || stopping(s) ||
            veil_now_ms() - t0 > SINK_RETRY_DEADLINE_MS)
                return false;
        veil_log("warn", "txn", "%s: %s (retrying)", what,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return true;
}

/* Offsets of consumer's group into the open transaction, retriable errors
 * retried: NULL, or the error that remains. */
static rd_kafka_error_t *
send_offsets(struct veil_sink *s, rd_kafka_t *consumer,
             const rd_kafka_topic_partition_list_t *offsets, int64_t t0)
{
        rd_kafka_consumer_group_metadata_t *cgmd =
                rd_kafka_consumer_group_metadata(consumer);
        rd_kafka_error_t *error;

        do
                error = rd_kafka_send_offsets_to_transaction(
                        s->rk, offsets, cgmd, SINK_CALL_TIMEOUT_MS);
        while (error && retry(s, error, t0, "send_offsets_to_transaction"));
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        return error;
}

enum veil_sink_status
veil_sink_add_offsets(struct veil_sink *s, rd_kafka_t *consumer,
                      const rd_kafka_topic_partition_list_t *offsets)
{
        rd_kafka_error_t *error;

        if (s->fatal || !s->in_txn) {
                if (!s->fatal)
                        veil_sink_fail(s, "offsets outside a transaction");
                return VEIL_SINK_FATAL;
        }
        if (s->must_abort || !offsets || !offsets->cnt)
                return VEIL_SINK_OK;
        error = send_offsets(s, consumer, offsets, veil_now_ms());
        if (!error)
                return VEIL_SINK_OK;
        if (rd_kafka_error_is_fatal(error)) {
                veil_sink_fail(s, "send_offsets_to_transaction: %s",
                               rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return VEIL_SINK_FATAL;
        }
        /* Anything else (the other group rebalanced: unknown member, a
         * generation gone; the retry deadline) fails this batch only. */
        veil_log("warn", "txn",
                 "send_offsets_to_transaction: %s (aborting the batch at its "
                 "commit)",
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        s->must_abort = true;
        return VEIL_SINK_OK;
}

enum veil_sink_status
veil_sink_commit(struct veil_sink *s, rd_kafka_t *consumer,
                 const rd_kafka_topic_partition_list_t *offsets)
{
        rd_kafka_error_t *error = NULL;
        int64_t t0              = veil_now_ms();

        if (s->fatal)
                return VEIL_SINK_FATAL;
        if (!s->in_txn)
                return VEIL_SINK_OK;
        if (s->must_abort)
                return veil_sink_abort(s) == VEIL_SINK_OK ? VEIL_SINK_ABORTED
                                                          : VEIL_SINK_FATAL;
        if (offsets && offsets->cnt > 0 &&
            (error = send_offsets(s, consumer, offsets, t0)))
                return failed(s, "send_offsets_to_transaction", error);
        do
                error = rd_kafka_commit_transaction(s->rk,
                                                    2 * SINK_CALL_TIMEOUT_MS);
        while (error && retry(s, error, t0, "commit_transaction"));
        if (error)
                return failed(s, "commit_transaction", error);
        s->in_txn = false;
        s->committed++;
        return VEIL_SINK_OK;
}

enum veil_sink_status veil_sink_abort(struct veil_sink *s)
{
        rd_kafka_error_t *error;
        int64_t t0 = veil_now_ms();

        if (!s->in_txn)
                return s->fatal ? VEIL_SINK_FATAL : VEIL_SINK_OK;
        /* Out of the transaction either way: after a failed abort nothing
         * more is done with it (the broker times it out). */
        s->in_txn     = false;
        s->must_abort = false;
        for (;;) {
                error = rd_kafka_abort_transaction(s->rk, SINK_CALL_TIMEOUT_MS);
                if (!error)
                        break;
                /* Retried to the deadline, but not past a shutdown: the
                 * batch is invisible to read_committed readers whether or
                 * not the abort lands (it is never committed), and an
                 * open transaction is aborted by the coordinator after
                 * transaction.timeout.ms or by the next init_transactions
                 * of this transactional.id. Retrying through a shutdown
                 * only kept `veil run` from exiting (a timed-out commit
                 * makes every abort "conflicting" until its EndTxn ends:
                 * the whole 120 s deadline). */
                if (!rd_kafka_error_is_retriable(error) || stopping(s) ||
                    veil_now_ms() - t0 > SINK_RETRY_DEADLINE_MS) {
                        char why[400];

                        snprintf(why, sizeof(why), "%s",
                                 rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        /* A fenced or broken producer cannot abort; its
                         * transaction is aborted by the coordinator. */
                        if (!s->fatal) {
                                s->fatal = true;
                                snprintf(s->fatal_msg, sizeof(s->fatal_msg),
                                         "abort_transaction: %s", why);
                                veil_log("error", "fatal", "%s", s->fatal_msg);
                        }
                        return VEIL_SINK_FATAL;
                }
                rd_kafka_error_destroy(error);
        }
        s->aborted++;
        return s->fatal ? VEIL_SINK_FATAL : VEIL_SINK_OK;
}
