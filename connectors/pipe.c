/* pipe.c - one pipeline of `veil run`: its clients (consumer source,
 * transactional sink, audit reader, DLQ, retention, registry, filter
 * chain), their librdkafka callbacks (rebalance, log, error, delivery,
 * statistics), the batch transaction (begin, commit, rollback, abort),
 * fatal errors, backoff and SIGHUP reloads. The loop that drives it is in
 * worker.c; what happens to one record is in route.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "dlq.h"
#include "filter.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pipe.h"
#include "reader.h"
#include "registry.h"
#include "retain.h"
#include "sink.h"
#include "source.h"
#include "tally.h"
#include "util.h"
#include "veil.h"

bool veil_pipe_stopping(const struct pipe *p)
{
        return veil_worker_stop_requested || atomic_load(&p->sh->stop);
}

/* A fatal error: the open transaction is aborted (never committed), every
 * pipeline stops, `veil run` exits non-zero with the reason. */
void veil_pipe_fail(struct pipe *p, const char *fmt, ...)
{
        va_list ap;

        if (!atomic_load(&p->dead)) {
                va_start(ap, fmt);
                vsnprintf(p->fatal_msg, sizeof(p->fatal_msg), fmt, ap);
                va_end(ap);
                atomic_store(&p->dead, true);
                if (p->sink)
                        veil_sink_fail(p->sink, "%s", p->fatal_msg);
                else
                        veil_log("error", "fatal", "%s", p->fatal_msg);
        }
        atomic_store(&p->sh->stop, true);
}

bool veil_pipe_dead(struct pipe *p)
{
        if (!atomic_load(&p->dead) && p->sink && veil_sink_fatal(p->sink)) {
                snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s",
                         veil_sink_fatal(p->sink));
                atomic_store(&p->dead, true);
                atomic_store(&p->sh->stop, true);
        }
        return atomic_load(&p->dead);
}

/* ---- transactions ----------------------------------------------------------
 */

void veil_pipe_begin(struct pipe *p)
{
        if (veil_sink_in_txn(p->sink))
                return;
        if (veil_sink_begin(p->sink) != VEIL_SINK_OK) {
                veil_pipe_dead(p);
                return;
        }
        veil_retain_begin(p->retain);
        p->batch_start_ms = veil_now_ms();
        p->batch_records  = 0;
        p->batch_now      = (int64_t)time(NULL);
}

/* The batch's state is forgotten (after an abort); with rewind, each
 * partition goes back to the first offset the batch consumed from it so
 * that the batch is read again. Not the group's committed offsets: the
 * dev broker does not store transactional commits, and the batch start is
 * exact anyway. */
static void rollback(struct pipe *p, bool rewind)
{
        char err[512];

        veil_retain_rollback(p->retain);
        veil_audit_rollback(p->audit);
        veil_tally_abort(p->tally);
        veil_halt_rollback(p);
        if (!rewind)
                veil_source_batch_done(p->source);
        else if (veil_source_rewind(p->source, err, sizeof(err)))
                veil_pipe_fail(p, "%s", err);
}

/* Aborts the open batch (a transient failure): it is read again. */
void veil_pipe_abort_batch(struct pipe *p, bool rewind)
{
        if (!veil_sink_in_txn(p->sink))
                return;
        if (veil_sink_abort(p->sink) != VEIL_SINK_OK) {
                veil_pipe_dead(p);
                rollback(p, false);
                return;
        }
        rollback(p, rewind);
}

/* Ledger and audit events of the batch, the consumer's positions, commit.
 * Never after a fatal error: the sink refuses. */
enum veil_sink_status veil_pipe_commit(struct pipe *p)
{
        rd_kafka_topic_partition_list_t *offsets;
        enum veil_sink_status st;
        char err[512];
        int64_t t0;
        int rc;

        if (!veil_sink_in_txn(p->sink))
                return VEIL_SINK_OK;
        if (veil_pipe_dead(p))
                return VEIL_SINK_FATAL;
        rc = veil_retain_flush(p->retain, err, sizeof(err));
        if (rc == VEIL_RETAIN_REDO) {
                veil_log("warn", "erasure", "%s", err);
                veil_pipe_abort_batch(p, true);
                return veil_pipe_dead(p) ? VEIL_SINK_FATAL : VEIL_SINK_ABORTED;
        }
        if (rc || veil_audit_flush(p->audit, err, sizeof(err))) {
                veil_pipe_fail(p, "%s", err);
                rollback(p, false);
                return VEIL_SINK_FATAL;
        }
        offsets = veil_source_positions(p->source);
        if (!offsets) {
                veil_pipe_fail(p, "reading the assignment failed");
                rollback(p, false);
                return VEIL_SINK_FATAL;
        }
        t0 = veil_now_ms();
        st = veil_sink_commit(p->sink, veil_source_consumer(p->source),
                              offsets);
        rd_kafka_topic_partition_list_destroy(offsets);
        if (st == VEIL_SINK_ABORTED) {
                rollback(p, true);
                return st;
        }
        if (st != VEIL_SINK_OK) {
                veil_pipe_dead(p);
                rollback(p, false);
                return st;
        }
        veil_retain_commit(p->retain);
        veil_audit_commit(p->audit);
        veil_source_batch_done(p->source);
        p->backoff_ms = 0;
        veil_tally_commit(p->tally, veil_chain_stats(p->chain),
                          veil_audit_committed(p->audit), veil_now_ms() - t0,
                          veil_now_ms() - p->batch_start_ms);
        veil_halt_commit(p);
        return VEIL_SINK_OK;
}

/* ---- librdkafka callbacks ---------------------------------------------------
 */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        struct pipe *p = opaque;
        /* NULL once the consumer has left its group (while closing). */
        const char *protocol    = rd_kafka_rebalance_protocol(rk);
        bool cooperative        = protocol && !strcmp(protocol, "COOPERATIVE");
        rd_kafka_error_t *error = NULL;
        char rerr[512];

        switch (err) {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                veil_log("info", "assign", "%s: %d partition(s) assigned",
                         p->txn_id, parts->cnt);
                /* Audit chains continue from their last committed event;
                 * our own open transaction would hide it (it holds the
                 * audit partition's last stable offset back), and a
                 * retention restore inside a transaction would be undone
                 * by its abort. */
                if (veil_sink_in_txn(p->sink))
                        veil_pipe_commit(p);
                veil_audit_assign(p->audit, parts);
                if (veil_retain_assign(p->retain, parts, rerr, sizeof(rerr)))
                        veil_pipe_fail(p, "%s", rerr);
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                veil_source_assigned(p->source, parts);
                veil_series_set(p->sh->m.assigned,
                                atomic_fetch_add(&p->sh->assigned, parts->cnt) +
                                        parts->cnt);
                break;
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                veil_log("info", "revoke", "%s: %d partition(s) revoked%s",
                         p->txn_id, parts->cnt,
                         rd_kafka_assignment_lost(rk) ? " (lost)" : "");
                /* The open transaction holds records of these partitions:
                 * finish it while we still own them — unless they are lost
                 * (another worker has them) or a fatal error makes the
                 * batch untrustworthy: then it is aborted, never
                 * committed. */
                if (veil_sink_in_txn(p->sink)) {
                        if (veil_pipe_dead(p) || rd_kafka_assignment_lost(rk))
                                veil_pipe_abort_batch(p, false);
                        else
                                veil_pipe_commit(p);
                }
                veil_audit_revoke(p->audit, parts);
                veil_retain_revoke(p->retain, parts);
                if (cooperative)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
                veil_series_set(p->sh->m.assigned,
                                atomic_fetch_sub(&p->sh->assigned, parts->cnt) -
                                        parts->cnt);
                veil_source_revoked(p->source, parts);
                break;
        default:
                veil_log("error", "rebalance", "rebalance failed: %s",
                         rd_kafka_err2str(err));
                veil_pipe_abort_batch(p, false);
                rd_kafka_assign(rk, NULL);
                break;
        }
        if (error) {
                veil_log("error", "rebalance", "assignment failed: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
        (void)rk;
        veil_log(level <= 3   ? "error"
                 : level <= 4 ? "warn"
                 : level <= 6 ? "info"
                              : "debug",
                 "rdkafka", "%s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        struct pipe *p = opaque;
        char buf[512];

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                veil_pipe_fail(p, "%s: %s", rd_kafka_name(rk), buf);
                return;
        }
        /* Broker down and the like: librdkafka keeps retrying. */
        veil_log("warn", "kafka", "%s", reason);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                      void *opaque)
{
        (void)rk;
        (void)opaque;
        /* An aborted transaction purges what it had queued: expected, and
         * one line per record would bury the abort's own log line. */
        if (rkm->err && rkm->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
            rkm->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
                veil_log("warn", "delivery", "to %s: %s",
                         rd_kafka_topic_name(rkm->rkt),
                         rd_kafka_err2str(rkm->err));
}

/* librdkafka's statistics (statistics.interval.ms): the consumer lag of
 * each assigned partition becomes a gauge. Runs on the pipeline's thread
 * inside consumer_poll; the JSON is librdkafka's to free. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
        struct pipe *p = opaque;

        (void)rk;
        veil_families_lag(&p->sh->m, json, json_len);
        return 0;
}

/* ---- clients ----------------------------------------------------------------
 */

/* The sink's producer: the transactional settings, queues bounded. */
static rd_kafka_conf_t *producer_conf(struct pipe *p, char *errstr,
                                      size_t errstr_size)
{
        const struct veil_config *config = p->config;
        rd_kafka_conf_t *conf            = rd_kafka_conf_new();
        char err[512];

        if (veil_kafka_conf_apply(conf, config, NULL, errstr, errstr_size) ||
            veil_kafka_conf_bound(conf, config, true, errstr, errstr_size))
                goto err;
        if (rd_kafka_conf_set(conf, "transactional.id", p->txn_id, err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG, "kafka: %s", err);
                goto err;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_opaque(conf, p);
        return conf;
err:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* The audit topic must exist before the first batch: its partition count
 * places the chains (audit.h). */
static int audit_setup(struct pipe *p, char *errstr, size_t errstr_size)
{
        struct veil_reader_part *parts = NULL;
        size_t n                       = 0;
        char err[512];
        int rc = 0;

        if (p->config->topics.audit &&
            p->config->audit_level != VEIL_AUDIT_OFF) {
                p->audit_reader = veil_reader_consumer(
                        p->config, "audit-reader", log_cb, errstr, errstr_size);
                if (!p->audit_reader)
                        return VEIL_ECONFIG;
                for (;;) {
                        rc = veil_reader_ends(p->audit_reader,
                                              p->config->topics.audit, &parts,
                                              &n, 10000, err, sizeof(err));
                        free(parts);
                        parts = NULL;
                        if (rc != VEIL_ENET || veil_pipe_stopping(p))
                                break;
                        veil_log("warn", "kafka", "%s (retrying)", err);
                }
                if (rc == VEIL_ENOTFOUND)
                        return veil_errf(
                                errstr, errstr_size, VEIL_ECONFIG,
                                "audit topic %s does not exist: create it "
                                "first (veil topics -c FILE --apply)",
                                p->config->topics.audit);
                if (rc)
                        return veil_errf(errstr, errstr_size, rc, "%s", err);
        }
        p->audit = veil_audit_new(p->config, p->txn_id, p->audit_reader,
                                  (int32_t)n, veil_route_audit_produce, p,
                                  errstr, errstr_size);
        return p->audit ? 0 : VEIL_ECONFIG;
}

int veil_pipe_open(struct pipe *p, char *errstr, size_t errstr_size)
{
        struct veil_source_hooks hooks = {
                .rebalance = rebalance_cb,
                .log       = log_cb,
                .error     = error_cb,
                .stats     = p->config->metrics_listen ? stats_cb : NULL,
                .opaque    = p,
        };
        rd_kafka_conf_t *conf;
        char kerr[512];
        int rc;

        p->tally = veil_tally_new(&p->sh->m);
        veil_tally_bind(p->tally, p->config);
        veil_tally_alerts(p->tally, p->sh->alerts);
        p->halt = veil_halt_new();
        p->dlq  = veil_dlq_new(p->config, errstr, errstr_size);
        if (!p->dlq)
                return VEIL_ECONFIG;
        veil_pipe_registry_digest(&p->config->registry, p->reg_digest);
        p->reg = veil_registry_new(&p->config->registry, kerr, sizeof(kerr));
        if (!p->reg)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG, "%s%s",
                                 veil_registry_err_prefix(kerr), kerr);
        p->chain = veil_chain_new(p->config, p->reg, errstr, errstr_size);
        if (!p->chain)
                return VEIL_ECONFIG;
        conf = producer_conf(p, errstr, errstr_size);
        if (!conf)
                return VEIL_ECONFIG;
        p->sink = veil_sink_new(conf, &veil_worker_stop_requested, errstr,
                                errstr_size);
        if (!p->sink)
                return VEIL_ENET;
        rc = audit_setup(p, errstr, errstr_size);
        if (rc)
                return rc;
        p->retain = veil_retain_new(p->config, p->sink, p->audit, errstr,
                                    errstr_size);
        if (!p->retain)
                return VEIL_ECONFIG;
        veil_retain_set_tally(p->retain, p->tally);
        veil_chain_set_subject_keys(p->chain,
                                    veil_retain_subject_keys(p->retain));
        p->source = veil_source_new(p->config, p->txn_id, p->sh->opts.once,
                                    &hooks, errstr, errstr_size);
        return p->source ? 0 : VEIL_ECONFIG;
}

void veil_pipe_close(struct pipe *p)
{
        /* The source's last revocation commits the open batch, or aborts
         * it after a fatal error; then the rooms, in reverse order. */
        veil_source_destroy(p->source);
        veil_retain_destroy(p->retain);
        if (p->sink)
                veil_sink_counts(p->sink, &p->n_commits, &p->n_aborts);
        veil_sink_destroy(p->sink);
        veil_audit_destroy(p->audit);
        if (p->audit_reader)
                rd_kafka_destroy(p->audit_reader);
        veil_chain_destroy(p->chain);
        veil_config_destroy(p->owned);
        veil_registry_destroy(p->reg);
        veil_dlq_destroy(p->dlq);
        /* Tombstones that committed, the retention side's included. */
        p->n_tombstones = veil_tally_tombstones(p->tally);
        veil_tally_destroy(p->tally);
        veil_halt_destroy(p->halt);
        free(p->too_large.topic);
}

/* ---- backoff and reload -------------------------------------------------- */

/* One setting into the digest: its name, its length (or "absent") and its
 * bytes. */
static void digest_str(EVP_MD_CTX *md, const char *name, const char *v)
{
        uint64_t len = v ? (uint64_t)strlen(v) : UINT64_MAX;

        EVP_DigestUpdate(md, name, strlen(name) + 1);
        EVP_DigestUpdate(md, &len, sizeof(len));
        if (v)
                EVP_DigestUpdate(md, v, strlen(v));
}

/* A file setting: its path and what the file holds now (a rotated
 * certificate or key under the same name is a change). */
static void digest_file(EVP_MD_CTX *md, const char *name, const char *path)
{
        unsigned char buf[4096];
        size_t n;
        FILE *f;

        digest_str(md, name, path);
        if (!path)
                return;
        f = fopen(path, "rb");
        if (!f) {
                EVP_DigestUpdate(md, "\0unreadable", 11);
                return;
        }
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                EVP_DigestUpdate(md, buf, n);
        fclose(f);
        OPENSSL_cleanse(buf, sizeof(buf));
}

void veil_pipe_registry_digest(const struct veil_registry_opts *o,
                               unsigned char out[VEIL_PIPE_REG_DIGEST_LEN])
{
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        char limits[64];

        if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
                abort();
        digest_str(md, "url", o->url);
        digest_str(md, "basic_auth", o->basic_auth);
        /* The token itself: the config load read it again from
         * bearer_token_file (or bearer_token_env). */
        digest_str(md, "bearer_token", o->bearer_token);
        digest_file(md, "ca_file", o->ca_file);
        digest_file(md, "cert_file", o->cert_file);
        digest_file(md, "key_file", o->key_file);
        snprintf(limits, sizeof(limits), "%" PRId64 "/%d/%d", o->timeout_ms,
                 o->retries, (int)o->allow_insecure);
        digest_str(md, "limits", limits);
        if (!EVP_DigestFinal_ex(md, out, NULL))
                abort();
        EVP_MD_CTX_free(md);
}

void veil_pipe_backoff(struct pipe *p)
{
        struct timespec ts;

        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 100;
        if (p->backoff_ms > 5000)
                p->backoff_ms = 5000;
        ts.tv_sec  = p->backoff_ms / 1000;
        ts.tv_nsec = (p->backoff_ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) && errno == EINTR && !veil_pipe_stopping(p))
                ;
}

/* The same route sources, in any order? */
static bool same_sources(const struct veil_policy *a,
                         const struct veil_policy *b)
{
        size_t i;

        if (a->n_routes != b->n_routes)
                return false;
        for (i = 0; i < a->n_routes; i++)
                if (!veil_policy_route(b, a->routes[i].source))
                        return false;
        return true;
}

/* The registry client of a reloaded config: the running one when its
 * settings (and the files they name) did not change, else a new one that
 * answered a probe. NULL with err: keep everything as it is. */
static struct veil_registry *
reload_registry(struct pipe *p, const struct veil_config *config,
                unsigned char digest[VEIL_PIPE_REG_DIGEST_LEN], char *err,
                size_t err_size)
{
        struct veil_registry *reg;
        char why[768];

        veil_pipe_registry_digest(&config->registry, digest);
        if (!memcmp(digest, p->reg_digest, VEIL_PIPE_REG_DIGEST_LEN))
                return p->reg;
        reg = veil_registry_new(&config->registry, why, sizeof(why));
        if (!reg) {
                snprintf(err, err_size, "the new registry settings: %s%s",
                         veil_registry_err_prefix(why), why);
                return NULL;
        }
        /* A refusal (TLS, credentials) or no answer: the running client
         * stays, rather than a worker that cannot resolve a schema. */
        if (veil_registry_probe(reg, why, sizeof(why))) {
                snprintf(err, err_size, "the new registry settings: %s%s",
                         veil_registry_err_prefix(why), why);
                veil_registry_destroy(reg);
                return NULL;
        }
        return reg;
}

/* SIGHUP, between batches: a new config and chain (and registry client,
 * when the registry settings or the files they name changed), or the old
 * ones and a log line saying why not. Kafka and group settings stay as
 * they started (they need a restart). Each pipeline reloads on its own. */
void veil_pipe_reload(struct pipe *p)
{
        struct veil_config_opts lopts = {0};
        struct veil_config *config;
        struct veil_registry *reg;
        struct veil_chain *chain;
        unsigned char digest[VEIL_PIPE_REG_DIGEST_LEN];
        char err[1024];

        if (!p->sh->opts.config_path) {
                veil_log("warn", "reload-rejected", "no config file to reload");
                return;
        }
        config = veil_config_load(p->sh->opts.config_path, &lopts, err,
                                  sizeof(err));
        if (!config) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                return;
        }
        if (!same_sources(&config->policy, &p->config->policy)) {
                veil_log("error", "reload-rejected",
                         "keeping policy %.12s: the routes' source topics "
                         "changed, which needs a restart",
                         p->config->policy.digest);
                veil_config_destroy(config);
                return;
        }
        reg = reload_registry(p, config, digest, err, sizeof(err));
        if (!reg) {
                veil_log("error", "reload-rejected",
                         "keeping policy %.12s and the registry client: %s",
                         p->config->policy.digest, err);
                veil_config_destroy(config);
                return;
        }
        chain = veil_chain_new(config, reg, err, sizeof(err));
        if (!chain) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                if (reg != p->reg)
                        veil_registry_destroy(reg);
                veil_config_destroy(config);
                return;
        }
        if (veil_retain_set_config(p->retain, config, err, sizeof(err))) {
                veil_log("error", "reload-rejected", "keeping policy %.12s: %s",
                         p->config->policy.digest, err);
                veil_chain_destroy(chain);
                if (reg != p->reg)
                        veil_registry_destroy(reg);
                veil_config_destroy(config);
                return;
        }
        veil_chain_set_subject_keys(chain, veil_retain_subject_keys(p->retain));
        veil_log("info", "reload", "%s: policy %.12s replaces %.12s%s",
                 p->txn_id, config->policy.digest, p->config->policy.digest,
                 reg != p->reg ? "; the registry settings changed: a new "
                                 "registry client"
                               : "");
        veil_tally_chain(p->tally, veil_chain_stats(p->chain));
        veil_chain_destroy(p->chain);
        if (reg != p->reg) {
                /* The old chain, the only user of the old client, is gone. */
                veil_registry_destroy(p->reg);
                p->reg = reg;
                memcpy(p->reg_digest, digest, VEIL_PIPE_REG_DIGEST_LEN);
        }
        veil_audit_set_config(p->audit, config);
        veil_config_destroy(p->owned);
        p->chain  = chain;
        p->owned  = config;
        p->config = config;
        /* Summaries and counters point into the old config. */
        veil_tally_bind(p->tally, config);
}
