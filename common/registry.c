/* registry.c - schema-registry client: Confluent REST and file:// backends. */
#define _GNU_SOURCE
#include "registry.h"
#include "crypto.h"
#include "schema.h"
#include "util.h"
#include "veil.h"

#include <avro.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REG_DEFAULT_TIMEOUT_MS 5000
/* Backoff between retries: short enough that a registry restarting behind a
 * load balancer is ridden out within a few seconds, capped so a long retry
 * count does not stall a worker for minutes. */
#define REG_BACKOFF_BASE_MS 50
#define REG_BACKOFF_MAX_MS 2000
/* A schema is a few KB; anything this large is not a registry answer. */
#define REG_MAX_BODY (16 * 1024 * 1024)
#define REG_MANIFEST ".veil-registry.json"
#define REG_SUBJECT_MAX 200
#define REG_MSG_MAX 300 /* bytes of a registry's error message kept */

/* id → schema: the answer to every by-id lookup, owned until destroy. */
struct reg_schema {
        struct reg_schema *next;
        int id;
        char *schema;
        char *metadata; /* compact JSON, or NULL */
};

/* (subject, schema text) → id: what register() already learned. */
struct reg_registered {
        struct reg_registered *next;
        uint64_t hash;
        char *subject;
        char *schema;
        int id;
};

enum reg_kind { REG_HTTP, REG_FILE };

struct veil_registry {
        enum reg_kind kind;

        /* Guards the two caches. Entries are never removed before destroy,
         * so pointers handed out stay valid after the lock is dropped. */
        pthread_mutex_t lock;
        struct reg_schema **ids;
        size_t n_ids, ids_buckets;
        struct reg_registered **regs;
        size_t n_regs, regs_buckets;

        /* Serialises misses: one request (or manifest update) at a time, so
         * two threads missing on the same id make one request, not two. */
        pthread_mutex_t io_lock;

        /* HTTP backend */
        CURL *curl;
        char *base; /* URL without user info or trailing '/' */
        char curl_err[CURL_ERROR_SIZE];
        int retries;
        /* What Veil presents, for the hints of refusals (never values). */
        enum { REG_AUTH_NONE, REG_AUTH_BASIC, REG_AUTH_BEARER } auth;
        bool client_cert;

        /* file backend */
        char *dir;
};

/* A growable response buffer. */
struct reg_buf {
        char *data;
        size_t len, cap;
        bool overflow;
};

static pthread_once_t reg_curl_once = PTHREAD_ONCE_INIT;
static CURLcode reg_curl_init_rc;

/* curl_global_init is not thread-safe and must run once per process; never
 * paired with curl_global_cleanup because other threads may still use curl. */
static void reg_curl_init(void)
{
        reg_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *reg_printf(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));
static char *reg_printf(const char *fmt, ...)
{
        va_list ap;
        int n;
        char *s;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                abort(); /* only a bad format string can do this */
        s = veil_malloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return s;
}

static uint64_t reg_hash(const char *a, const char *b)
{
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        const unsigned char *p;

        for (p = (const unsigned char *)a; *p; p++)
                h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xff) *
            1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
        for (p = (const unsigned char *)b; *p; p++)
                h = (h ^ *p) * 1099511628211ULL;
        return h;
}

/* ---- caches (callers of the *_locked helpers hold reg->lock) ---- */

static size_t reg_id_bucket(int id, size_t buckets)
{
        return ((uint32_t)id * 2654435761U) & (buckets - 1);
}

static struct reg_schema *reg_ids_find_locked(struct veil_registry *reg, int id)
{
        struct reg_schema *e;

        for (e = reg->ids[reg_id_bucket(id, reg->ids_buckets)]; e; e = e->next)
                if (e->id == id)
                        return e;
        return NULL;
}

static const struct reg_schema *reg_ids_get(struct veil_registry *reg, int id)
{
        const struct reg_schema *e;

        pthread_mutex_lock(&reg->lock);
        e = reg_ids_find_locked(reg, id);
        pthread_mutex_unlock(&reg->lock);
        return e;
}

/* Takes ownership of schema and metadata. When the id is already cached the
 * existing entry wins (pointers to it may be in use) and the new copies are
 * freed: an id's schema never changes in a registry. */
static const struct reg_schema *reg_ids_put(struct veil_registry *reg, int id,
                                            char *schema, char *metadata)
{
        struct reg_schema *e;
        size_t i, b;

        pthread_mutex_lock(&reg->lock);
        if ((e = reg_ids_find_locked(reg, id))) {
                pthread_mutex_unlock(&reg->lock);
                free(schema);
                free(metadata);
                return e;
        }
        if (reg->n_ids >= reg->ids_buckets) {
                size_t nb             = reg->ids_buckets * 2;
                struct reg_schema **t = veil_calloc(nb, sizeof(*t));

                for (i = 0; i < reg->ids_buckets; i++) {
                        while ((e = reg->ids[i])) {
                                reg->ids[i] = e->next;
                                b           = reg_id_bucket(e->id, nb);
                                e->next     = t[b];
                                t[b]        = e;
                        }
                }
                free(reg->ids);
                reg->ids         = t;
                reg->ids_buckets = nb;
        }
        e           = veil_calloc(1, sizeof(*e));
        e->id       = id;
        e->schema   = schema;
        e->metadata = metadata;
        b           = reg_id_bucket(id, reg->ids_buckets);
        e->next     = reg->ids[b];
        reg->ids[b] = e;
        reg->n_ids++;
        pthread_mutex_unlock(&reg->lock);
        return e;
}

static bool reg_regs_get(struct veil_registry *reg, const char *subject,
                         const char *schema, int *idp)
{
        uint64_t h = reg_hash(subject, schema);
        struct reg_registered *e;
        bool found = false;

        pthread_mutex_lock(&reg->lock);
        for (e = reg->regs[h & (reg->regs_buckets - 1)]; e; e = e->next) {
                if (e->hash == h && !strcmp(e->subject, subject) &&
                    !strcmp(e->schema, schema)) {
                        *idp  = e->id;
                        found = true;
                        break;
                }
        }
        pthread_mutex_unlock(&reg->lock);
        return found;
}

static void reg_regs_put(struct veil_registry *reg, const char *subject,
                         const char *schema, int id)
{
        struct reg_registered *e;
        int old;
        size_t i;

        if (reg_regs_get(reg, subject, schema, &old))
                return;
        pthread_mutex_lock(&reg->lock);
        if (reg->n_regs >= reg->regs_buckets) {
                size_t nb                 = reg->regs_buckets * 2;
                struct reg_registered **t = veil_calloc(nb, sizeof(*t));

                for (i = 0; i < reg->regs_buckets; i++) {
                        while ((e = reg->regs[i])) {
                                reg->regs[i]          = e->next;
                                e->next               = t[e->hash & (nb - 1)];
                                t[e->hash & (nb - 1)] = e;
                        }
                }
                free(reg->regs);
                reg->regs         = t;
                reg->regs_buckets = nb;
        }
        e          = veil_calloc(1, sizeof(*e));
        e->hash    = reg_hash(subject, schema);
        e->subject = veil_strdup(subject);
        e->schema  = veil_strdup(schema);
        e->id      = id;
        e->next    = reg->regs[e->hash & (reg->regs_buckets - 1)];
        reg->regs[e->hash & (reg->regs_buckets - 1)] = e;
        reg->n_regs++;
        pthread_mutex_unlock(&reg->lock);
}

/* ---- shared JSON helpers ---- */

/* A registry's `metadata` object as compact JSON text, or NULL when absent
 * or empty (Confluent sends {} or null for "none"). */
static char *reg_metadata_text(json_t *meta)
{
        if (!json_is_object(meta) || json_object_size(meta) == 0)
                return NULL;
        return json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
}

/* ---- HTTP backend ---- */

static size_t reg_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct reg_buf *buf = userdata;
        size_t n            = size * nmemb;

        if (buf->len + n > REG_MAX_BODY) {
                buf->overflow = true;
                return 0; /* makes curl fail the transfer */
        }
        if (buf->len + n + 1 > buf->cap) {
                buf->cap  = (buf->len + n + 1) * 2;
                buf->data = veil_realloc(buf->data, buf->cap);
        }
        memcpy(buf->data + buf->len, ptr, n);
        buf->len += n;
        buf->data[buf->len] = '\0';
        return n;
}

static void reg_sleep_ms(long ms)
{
        struct timespec ts = {.tv_sec  = ms / 1000,
                              .tv_nsec = (ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
                ;
}

/* Turn a 4xx answer into a Veil error. The registry's own message is kept
 * (it names the subject or the schema problem); the body is never echoed
 * raw because a proxy may answer with a whole HTML page. */
static int reg_http_4xx(const struct veil_registry *reg, const char *method,
                        const char *path, long status,
                        const struct reg_buf *buf, char *errstr,
                        size_t errstr_size)
{
        json_t *root   = buf->data ? json_loads(buf->data, 0, NULL) : NULL;
        long long code = 0;
        char msg[REG_MSG_MAX + 1] = "";
        const char *what, *hint = "";
        char codetext[32] = "";
        int err;

        if (json_is_object(root)) {
                json_t *m = json_object_get(root, "message");

                code = json_integer_value(json_object_get(root, "error_code"));
                if (json_is_string(m))
                        snprintf(msg, sizeof(msg), "%s", json_string_value(m));
        }
        json_decref(root);

        if (status == 401 || status == 403) {
                /* Retrying cannot change the answer: it is the caller's
                 * to stop with this message (it names the registry). */
                err  = VEIL_EAUTH;
                what = status == 401 ? "authentication refused"
                                     : "access forbidden";
                if (status == 403)
                        hint = "; the registry knows Veil's credentials but "
                               "does not allow this request";
                else if (reg->auth == REG_AUTH_BASIC)
                        hint = "; check registry.basic_auth or the URL's "
                               "user info";
                else if (reg->auth == REG_AUTH_BEARER)
                        hint = "; check the bearer token "
                               "(registry.bearer_token_file or "
                               "registry.bearer_token_env)";
                else
                        hint = "; the registry wants credentials: set "
                               "registry.basic_auth or a bearer token";
                return veil_errf(errstr, errstr_size, err,
                                 "registry %s: %s %s: HTTP %ld: %s%s%s%s%s",
                                 reg->base, method, path, status, what,
                                 *msg ? " (" : "", msg, *msg ? ")" : "", hint);
        } else if (status == 404) {
                err  = VEIL_ENOTFOUND;
                what = code == 40401   ? "subject not found"
                       : code == 40402 ? "version not found"
                       : code == 40403 ? "schema not found"
                                       : "not found";
        } else if (status == 409) {
                err  = VEIL_EINVAL;
                what = "schema incompatible with the subject's earlier "
                       "versions";
        } else if (status == 422) {
                err  = VEIL_EINVAL;
                what = "schema rejected as invalid";
        } else {
                err  = VEIL_EPROTO;
                what = "request refused";
        }
        if (code)
                snprintf(codetext, sizeof(codetext), ", error %lld", code);
        return veil_errf(errstr, errstr_size, err,
                         "registry %s %s: HTTP %ld%s: %s%s%s%s%s", method, path,
                         status, codetext, what, *msg ? " (" : "", msg,
                         *msg ? ")" : "", hint);
}

/* A TLS failure that no retry can mend: the registry's certificate is not
 * trusted, Veil's is refused or unusable, or the port does not speak TLS.
 * Returns the hint for the message, or NULL for a failure worth retrying
 * (refused, reset, timeout: a registry restarting). With TLS 1.3 the
 * server judges the client certificate after the handshake, so its alert
 * arrives on the first read (CURLE_RECV_ERROR): a TLS alert is the peer's
 * deliberate answer, while a reset or an EOF is not. */
static const char *reg_tls_refusal(const struct veil_registry *reg, CURLcode rc,
                                   const char *msg)
{
        const char *no_cert = "does it want a client certificate? "
                              "(registry.cert_file, key_file)";
        const char *refused = "the registry refused Veil's client "
                              "certificate (registry.cert_file)";

        switch (rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                return "check registry.ca_file (the CA that signed the "
                       "registry's certificate)";
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
                return "registry.ca_file cannot be used";
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
                return "check registry.cert_file and key_file";
        case CURLE_SSL_CLIENTCERT:
                return reg->client_cert ? refused : no_cert;
        case CURLE_SSL_CIPHER:
        case CURLE_USE_SSL_FAILED:
                return "no TLS version or cipher in common";
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
                if (strncmp(reg->base, "https:", 6))
                        return NULL;
                /* "tlsv13 alert certificate required", "tlsv1 alert
                 * unknown ca", "sslv3 alert handshake failure"… */
                if (strstr(msg, " alert "))
                        return reg->client_cert ? refused : no_cert;
                if (strstr(msg, "wrong version number"))
                        return "no TLS on this port (plain http://?)";
                if (rc == CURLE_SSL_CONNECT_ERROR && strstr(msg, "certificate"))
                        return "a certificate failed the handshake";
                return NULL;
        default:
                return NULL;
        }
}

/* One REST call with retries. path is already URL-escaped and starts with
 * '/'; body (JSON) makes it a POST. On success *rootp is the parsed JSON
 * object (caller decrefs); rootp NULL: any 2xx answer will do. Caller holds
 * io_lock. */
static int reg_http_call(struct veil_registry *reg, const char *path,
                         const char *body, json_t **rootp, char *errstr,
                         size_t errstr_size)
{
        const char *method      = body ? "POST" : "GET";
        struct curl_slist *hdrs = NULL, *h;
        struct reg_buf buf      = {0};
        char *url               = reg_printf("%s%s", reg->base, path);
        long status = 0, delay = REG_BACKOFF_BASE_MS;
        int attempt, err       = VEIL_ENET;
        const char *hint;
        CURLcode rc;

        if (rootp)
                *rootp = NULL;
        hdrs = curl_slist_append(
                hdrs, "Accept: application/vnd.schemaregistry.v1+json");
        if (hdrs && body) {
                h = curl_slist_append(
                        hdrs,
                        "Content-Type: application/vnd.schemaregistry.v1+json");
                hdrs = h ? h : (curl_slist_free_all(hdrs), NULL);
        }
        if (!hdrs) {
                free(url);
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "registry %s %s: cannot build headers", method,
                                 path);
        }
        if ((rc = curl_easy_setopt(reg->curl, CURLOPT_URL, url)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_HTTPHEADER, hdrs)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_WRITEDATA, &buf)) ||
            (rc = body ? curl_easy_setopt(reg->curl, CURLOPT_POSTFIELDS, body)
                       : curl_easy_setopt(reg->curl, CURLOPT_HTTPGET, 1L))) {
                err = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                "registry %s %s: %s", method, path,
                                curl_easy_strerror(rc));
                goto done;
        }

        for (attempt = 0;; attempt++) {
                buf.len          = 0;
                buf.overflow     = false;
                reg->curl_err[0] = '\0';
                rc               = curl_easy_perform(reg->curl);
                if (rc == CURLE_OK)
                        curl_easy_getinfo(reg->curl, CURLINFO_RESPONSE_CODE,
                                          &status);
                if (buf.overflow) {
                        err = veil_errf(
                                errstr, errstr_size, VEIL_EPROTO,
                                "registry %s %s: answer larger than %d bytes",
                                method, path, REG_MAX_BODY);
                        goto done;
                }
                if (rc != CURLE_OK &&
                    (hint = reg_tls_refusal(
                             reg, rc,
                             reg->curl_err[0] ? reg->curl_err
                                              : curl_easy_strerror(rc)))) {
                        /* Not retried: the same handshake fails the same
                         * way. The message names host and port, never the
                         * credentials (they are not part of the URL). */
                        err = veil_errf(
                                errstr, errstr_size, VEIL_EAUTH,
                                "registry %s: TLS refused: %s; %s", reg->base,
                                reg->curl_err[0] ? reg->curl_err
                                                 : curl_easy_strerror(rc),
                                hint);
                        goto done;
                }
                if (rc != CURLE_OK) {
                        /* Connection refused, reset, timeout: all may
                         * pass; the message names host and port, never the
                         * credentials (they are not part of the URL). */
                        err = veil_errf(errstr, errstr_size, VEIL_ENET,
                                        "registry %s %s%s: %s (%d attempt%s)",
                                        method, reg->base, path,
                                        reg->curl_err[0]
                                                ? reg->curl_err
                                                : curl_easy_strerror(rc),
                                        attempt + 1, attempt ? "s" : "");
                } else if (status >= 200 && status < 300 && !rootp) {
                        err = 0;
                        goto done;
                } else if (status >= 200 && status < 300) {
                        json_error_t jerr;

                        *rootp = buf.data ? json_loads(buf.data, 0, &jerr)
                                          : NULL;
                        if (!json_is_object(*rootp)) {
                                json_decref(*rootp);
                                *rootp = NULL;
                                err    = veil_errf(
                                           errstr, errstr_size, VEIL_EPROTO,
                                           "registry %s %s: HTTP %ld but the "
                                              "answer is not a JSON object",
                                           method, path, status);
                        } else {
                                err = 0;
                        }
                        goto done;
                } else if (status >= 500 || status == 429) {
                        /* Server trouble or throttling: worth another try. */
                        err = veil_errf(
                                errstr, errstr_size, VEIL_ENET,
                                "registry %s %s: HTTP %ld (%d attempt%s)",
                                method, path, status, attempt + 1,
                                attempt ? "s" : "");
                } else {
                        err = reg_http_4xx(reg, method, path, status, &buf,
                                           errstr, errstr_size);
                        goto done;
                }
                if (attempt >= reg->retries)
                        goto done;
                reg_sleep_ms(delay);
                delay = delay * 2 > REG_BACKOFF_MAX_MS ? REG_BACKOFF_MAX_MS
                                                       : delay * 2;
        }
done:
        /* The handle outlives this call: do not leave it pointing at our
         * stack buffer or freed headers. */
        curl_easy_setopt(reg->curl, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(reg->curl, CURLOPT_WRITEDATA, NULL);
        curl_slist_free_all(hdrs);
        free(buf.data);
        free(url);
        return err;
}

/* Pull schema (+metadata) from an answer of /schemas/ids/{id} or
 * /subjects/{s}/versions/latest, refusing what Veil cannot decode. */
static int reg_http_schema(json_t *root, const char *path, char **schemap,
                           char **metadatap, char *errstr, size_t errstr_size)
{
        json_t *schema = json_object_get(root, "schema");
        json_t *type   = json_object_get(root, "schemaType");
        json_t *refs   = json_object_get(root, "references");

        if (!json_is_string(schema))
                return veil_errf(
                        errstr, errstr_size, VEIL_EPROTO,
                        "registry GET %s: answer has no \"schema\" string",
                        path);
        if (json_is_string(type) && strcmp(json_string_value(type), "AVRO"))
                return veil_errf(
                        errstr, errstr_size, VEIL_EINVAL,
                        "registry GET %s: schema type %s; Veil reads Avro only",
                        path, json_string_value(type));
        if (json_is_array(refs) && json_array_size(refs) > 0)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "registry GET %s: schema uses %zu schema "
                                 "reference(s), which Veil does not resolve",
                                 path, json_array_size(refs));
        *schemap   = veil_strdup(json_string_value(schema));
        *metadatap = reg_metadata_text(json_object_get(root, "metadata"));
        return 0;
}

static int reg_http_by_id(struct veil_registry *reg, int id, char **schemap,
                          char **metadatap, char *errstr, size_t errstr_size)
{
        char path[64];
        json_t *root;
        int err;

        snprintf(path, sizeof(path), "/schemas/ids/%d", id);
        if ((err = reg_http_call(reg, path, NULL, &root, errstr, errstr_size)))
                return err;
        err = reg_http_schema(root, path, schemap, metadatap, errstr,
                              errstr_size);
        json_decref(root);
        return err;
}

/* "/subjects/<escaped>/<rest>"; NULL only when curl cannot allocate. */
static char *reg_subject_path(struct veil_registry *reg, const char *subject,
                              const char *rest)
{
        char *esc = curl_easy_escape(reg->curl, subject, 0), *path;

        if (!esc)
                return NULL;
        path = reg_printf("/subjects/%s/%s", esc, rest);
        curl_free(esc);
        return path;
}

static int reg_http_latest(struct veil_registry *reg, const char *subject,
                           int *idp, char **schemap, char **metadatap,
                           char *errstr, size_t errstr_size)
{
        char *path   = reg_subject_path(reg, subject, "versions/latest");
        json_t *root = NULL, *id;
        int err;

        if (!path)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "registry: cannot escape subject");
        if ((err = reg_http_call(reg, path, NULL, &root, errstr, errstr_size)))
                goto done;
        id = json_object_get(root, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX) {
                err = veil_errf(errstr, errstr_size, VEIL_EPROTO,
                                "registry GET %s: answer has no valid \"id\"",
                                path);
                goto done;
        }
        if ((err = reg_http_schema(root, path, schemap, metadatap, errstr,
                                   errstr_size)))
                goto done;
        *idp = (int)json_integer_value(id);
done:
        json_decref(root);
        free(path);
        return err;
}

static int reg_http_register(struct veil_registry *reg, const char *subject,
                             const char *schema, int *idp, char *errstr,
                             size_t errstr_size)
{
        char *path = reg_subject_path(reg, subject, "versions");
        json_t *req =
                json_pack("{s:s, s:s}", "schema", schema, "schemaType", "AVRO");
        json_t *root = NULL, *id;
        char *body   = NULL;
        int err;

        if (!path || !req || !(body = json_dumps(req, JSON_COMPACT))) {
                err = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                "registry POST /subjects/.../versions: cannot "
                                "build the request (schema text not UTF-8?)");
                goto done;
        }
        if ((err = reg_http_call(reg, path, body, &root, errstr, errstr_size)))
                goto done;
        id = json_object_get(root, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX) {
                err = veil_errf(errstr, errstr_size, VEIL_EPROTO,
                                "registry POST %s: answer has no valid \"id\"",
                                path);
                goto done;
        }
        *idp = (int)json_integer_value(id);
done:
        json_decref(root);
        free(body);
        json_decref(req);
        free(path);
        return err;
}

int veil_registry_probe(struct veil_registry *reg, char *errstr,
                        size_t errstr_size)
{
        int err;

        if (reg->kind != REG_HTTP)
                return 0;
        pthread_mutex_lock(&reg->io_lock);
        err = reg_http_call(reg, "/subjects", NULL, NULL, errstr, errstr_size);
        pthread_mutex_unlock(&reg->io_lock);
        /* Any answer past TLS and authentication means the registry is
         * there and lets Veil in; a proxy that serves no /subjects is not
         * Veil's concern here. */
        if (err == VEIL_ENOTFOUND || err == VEIL_EINVAL || err == VEIL_EPROTO)
                return 0;
        return err;
}

/* Split the URL into what curl may log (base) and the credentials. */
static int reg_http_open(struct veil_registry *reg,
                         const struct veil_registry_opts *opts, char *errstr,
                         size_t errstr_size)
{
        CURLU *u   = NULL;
        char *user = NULL, *pass = NULL, *clean = NULL, *query = NULL;
        char *auth_user       = NULL;
        const char *auth_pass = NULL;
        long timeout          = opts->timeout_ms > 0 ? (long)opts->timeout_ms
                                                     : REG_DEFAULT_TIMEOUT_MS;
        size_t len;
        CURLcode rc = CURLE_OK;
        int err     = 0;

        pthread_once(&reg_curl_once, reg_curl_init);
        if (reg_curl_init_rc != CURLE_OK)
                return veil_errf(errstr, errstr_size, VEIL_EIO,
                                 "registry: curl_global_init: %s",
                                 curl_easy_strerror(reg_curl_init_rc));

        /* Never echo opts->url in messages: it may carry a password. */
        if (!(u = curl_url()) ||
            curl_url_set(u, CURLUPART_URL, opts->url, 0) != CURLUE_OK) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry.url: not a valid http(s) URL");
                goto done;
        }
        if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry.url: must not carry a query string");
                goto done;
        }
        curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
        curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE);
        if (curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &clean, 0) != CURLUE_OK) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry.url: cannot be normalised");
                goto done;
        }
        reg->base = veil_strdup(clean);
        len       = strlen(reg->base);
        while (len > 0 && reg->base[len - 1] == '/')
                reg->base[--len] = '\0';

        if (opts->basic_auth) {
                const char *colon = strchr(opts->basic_auth, ':');

                if (!colon) {
                        err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                        "registry.basic_auth: expected "
                                        "\"user:password\"");
                        goto done;
                }
                auth_user = veil_strndup(opts->basic_auth,
                                         (size_t)(colon - opts->basic_auth));
                auth_pass = colon + 1;
        } else if (user) {
                auth_user = veil_strdup(user);
                auth_pass = pass ? pass : "";
        }
        if (auth_user && opts->bearer_token) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry: basic auth (registry.basic_auth "
                                "or the URL's user info) and a bearer token "
                                "are both set; keep one");
                goto done;
        }
        if ((opts->cert_file != NULL) != (opts->key_file != NULL)) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry: cert_file and key_file go "
                                "together (a client certificate and its "
                                "key)");
                goto done;
        }
        if (opts->cert_file && strncmp(reg->base, "https:", 6)) {
                /* Plain HTTP never sends it: the setting would be a lie. */
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry: a client certificate "
                                "(registry.cert_file) needs an https:// URL");
                goto done;
        }
        reg->auth        = auth_user            ? REG_AUTH_BASIC
                           : opts->bearer_token ? REG_AUTH_BEARER
                                                : REG_AUTH_NONE;
        reg->client_cert = opts->cert_file != NULL;

        if (!(reg->curl = curl_easy_init())) {
                err = veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                "registry: curl_easy_init failed");
                goto done;
        }
        if ((rc = curl_easy_setopt(reg->curl, CURLOPT_NOSIGNAL, 1L)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_PROTOCOLS_STR,
                                   "http,https")) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_CONNECTTIMEOUT_MS,
                                   timeout)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_TIMEOUT_MS, timeout)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_ERRORBUFFER,
                                   reg->curl_err)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_WRITEFUNCTION,
                                   reg_write_cb)) ||
            (rc = curl_easy_setopt(reg->curl, CURLOPT_USERAGENT,
                                   "veil/" VEIL_VERSION)) ||
            (opts->ca_file && (rc = curl_easy_setopt(reg->curl, CURLOPT_CAINFO,
                                                     opts->ca_file))) ||
            (opts->cert_file &&
             ((rc = curl_easy_setopt(reg->curl, CURLOPT_SSLCERT,
                                     opts->cert_file)) ||
              (rc = curl_easy_setopt(reg->curl, CURLOPT_SSLKEY,
                                     opts->key_file)))) ||
            (opts->bearer_token &&
             ((rc = curl_easy_setopt(reg->curl, CURLOPT_HTTPAUTH,
                                     (long)CURLAUTH_BEARER)) ||
              (rc = curl_easy_setopt(reg->curl, CURLOPT_XOAUTH2_BEARER,
                                     opts->bearer_token)))) ||
            (auth_user &&
             ((rc = curl_easy_setopt(reg->curl, CURLOPT_HTTPAUTH,
                                     (long)CURLAUTH_BASIC)) ||
              (rc = curl_easy_setopt(reg->curl, CURLOPT_USERNAME, auth_user)) ||
              (rc = curl_easy_setopt(reg->curl, CURLOPT_PASSWORD,
                                     auth_pass))))) {
                err = veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                "registry: configuring libcurl: %s",
                                curl_easy_strerror(rc));
                goto done;
        }
        reg->retries = opts->retries > 0 ? opts->retries : 0;
done:
        free(auth_user); /* curl copied it */
        curl_free(user);
        curl_free(pass);
        curl_free(clean);
        curl_free(query);
        curl_url_cleanup(u);
        return err;
}

/* ---- file:// backend ---- */

/* Subjects become file names: refuse what would leave DIR or hide a file. */
static int reg_file_subject_ok(const struct veil_registry *reg,
                               const char *subject, char *errstr,
                               size_t errstr_size)
{
        size_t len = strlen(subject);

        if (len == 0 || len > REG_SUBJECT_MAX || subject[0] == '.' ||
            strchr(subject, '/'))
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "registry %s: subject \"%.*s\" cannot name a "
                                 "file (empty, too long, leading '.', or '/')",
                                 reg->dir, REG_SUBJECT_MAX, subject);
        return 0;
}

/* JSON text → compact, key-sorted form, so whitespace and key order do not
 * make a new version while any real change (a "pii" annotation, a field)
 * does. Also checks the result is an Avro schema avro-c accepts, as
 * Confluent does on register. what names the source for messages. */
static int reg_normalize(const char *text, const char *what, char **normp,
                         char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *root = json_loads(
                text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        struct veil_schema *schema;
        char *norm, msg[256];

        if (!root)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "%s:%d:%d: not valid JSON: %s", what,
                                 jerr.line, jerr.column, jerr.text);
        norm = json_dumps(root,
                          JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(root);
        if (!norm)
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "%s: cannot serialise", what);
        /* veil_schema_parse, not avro-c alone: avro-c leaks a named type
         * defined twice when it refuses it (tests/fuzz/regress_registry). */
        if (!(schema = veil_schema_parse(norm, strlen(norm), NULL, -1, msg,
                                         sizeof(msg)))) {
                const char *why = msg;

                if (!strncmp(why, "invalid Avro schema: ", 21))
                        why += 21;
                veil_errf(errstr, errstr_size, VEIL_EINVAL,
                          "%s: not a valid Avro schema: %s", what, why);
                free(norm);
                return VEIL_EINVAL;
        }
        veil_schema_destroy(schema);
        *normp = norm;
        return 0;
}

static void reg_sha256_hex(const char *text, char hex[65])
{
        unsigned char md[VEIL_SHA256_LEN];

        veil_sha256(text, strlen(text), md);
        veil_hex_encode(md, sizeof(md), hex);
}

/* Write path atomically (temp file in the same directory, fsync, rename),
 * so a reader or a crash sees the old file or the new one, never half. */
static int reg_write_atomic(const char *path, const char *data, size_t len,
                            char *errstr, size_t errstr_size)
{
        char *tmp = reg_printf("%s.XXXXXX", path);
        int fd = mkstemp(tmp), err = 0;
        size_t off = 0;
        ssize_t n;

        if (fd < 0) {
                err = veil_errf(errstr, errstr_size, VEIL_EIO, "%s: %s", tmp,
                                strerror(errno));
                free(tmp);
                return err;
        }
        while (off < len) {
                n = write(fd, data + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        err = veil_errf(errstr, errstr_size, VEIL_EIO,
                                        "%s: write: %s", tmp, strerror(errno));
                        break;
                }
                off += (size_t)n;
        }
        /* mkstemp makes 0600; schemas are not secret and other tools read them.
         */
        if (!err && (fchmod(fd, 0644) || fsync(fd)))
                err = veil_errf(errstr, errstr_size, VEIL_EIO, "%s: %s", tmp,
                                strerror(errno));
        if (close(fd) && !err)
                err = veil_errf(errstr, errstr_size, VEIL_EIO, "%s: close: %s",
                                tmp, strerror(errno));
        if (!err && rename(tmp, path))
                err = veil_errf(errstr, errstr_size, VEIL_EIO, "%s: rename: %s",
                                path, strerror(errno));
        if (err)
                unlink(tmp);
        free(tmp);
        return err;
}

/* Load the manifest: {"format":1,"schemas":[{"id","subject","version",
 * "sha256","schema"},…]}. A missing file is an empty manifest. The schema
 * text is kept in the manifest (not only its digest) so ids of earlier
 * versions still decode after the .avsc file moved on. */
static int reg_manifest_load(const struct veil_registry *reg, json_t **mp,
                             char *errstr, size_t errstr_size)
{
        char *path = reg_printf("%s/%s", reg->dir, REG_MANIFEST);
        json_error_t jerr;
        json_t *m = NULL, *list, *e;
        size_t i;
        int err = 0;

        if (access(path, F_OK) && errno == ENOENT) {
                *mp = json_pack("{s:i, s:[]}", "format", 1, "schemas");
                free(path);
                return 0;
        }
        if (!(m = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr))) {
                err = veil_errf(errstr, errstr_size, VEIL_EPROTO,
                                "%s:%d:%d: %s", path, jerr.line, jerr.column,
                                jerr.text);
                goto done;
        }
        list = json_object_get(m, "schemas");
        if (!json_is_array(list)) {
                err = veil_errf(errstr, errstr_size, VEIL_EPROTO,
                                "%s: no \"schemas\" array", path);
                goto done;
        }
        json_array_foreach(list, i, e)
        {
                if (!json_is_integer(json_object_get(e, "id")) ||
                    !json_is_string(json_object_get(e, "subject")) ||
                    !json_is_integer(json_object_get(e, "version")) ||
                    !json_is_string(json_object_get(e, "sha256")) ||
                    !json_is_string(json_object_get(e, "schema"))) {
                        err = veil_errf(errstr, errstr_size, VEIL_EPROTO,
                                        "%s: schemas[%zu] lacks id, subject, "
                                        "version, sha256 or schema",
                                        path, i);
                        goto done;
                }
        }
done:
        if (err) {
                json_decref(m);
                m = NULL;
        }
        *mp = m;
        free(path);
        return err;
}

static int reg_manifest_save(const struct veil_registry *reg, json_t *m,
                             char *errstr, size_t errstr_size)
{
        char *path = reg_printf("%s/%s", reg->dir, REG_MANIFEST);
        char *text = json_dumps(m, JSON_INDENT(2));
        char *withnl;
        int err;

        if (!text) {
                free(path);
                return veil_errf(errstr, errstr_size, VEIL_ENOMEM,
                                 "%s: cannot serialise", REG_MANIFEST);
        }
        withnl = reg_printf("%s\n", text);
        err    = reg_write_atomic(path, withnl, strlen(withnl), errstr,
                                  errstr_size);
        free(withnl);
        free(text);
        free(path);
        return err;
}

static const char *reg_entry_str(json_t *e, const char *key)
{
        return json_string_value(json_object_get(e, key));
}

/* The manifest entry for (subject, sha256), or NULL. */
static json_t *reg_manifest_find(json_t *m, const char *subject,
                                 const char *sha)
{
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(m, "schemas"), i, e)
        {
                if (!strcmp(reg_entry_str(e, "subject"), subject) &&
                    !strcmp(reg_entry_str(e, "sha256"), sha))
                        return e;
        }
        return NULL;
}

/* The manifest entry for a global id, or NULL. */
static json_t *reg_manifest_find_id(json_t *m, int id)
{
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(m, "schemas"), i, e)
        {
                if (json_integer_value(json_object_get(e, "id")) == id)
                        return e;
        }
        return NULL;
}

/* Add (subject, norm) as the subject's next version with the next global id. */
static int reg_manifest_add(json_t *m, const char *subject, const char *sha,
                            const char *norm)
{
        json_t *list      = json_object_get(m, "schemas"), *e;
        json_int_t max_id = 0, max_version = 0;
        size_t i;

        json_array_foreach(list, i, e)
        {
                json_int_t id = json_integer_value(json_object_get(e, "id"));
                json_int_t v =
                        json_integer_value(json_object_get(e, "version"));

                if (id > max_id)
                        max_id = id;
                if (!strcmp(reg_entry_str(e, "subject"), subject) &&
                    v > max_version)
                        max_version = v;
        }
        json_array_append_new(list, json_pack("{s:I, s:s, s:I, s:s, s:s}", "id",
                                              max_id + 1, "subject", subject,
                                              "version", max_version + 1,
                                              "sha256", sha, "schema", norm));
        return (int)(max_id + 1);
}

/* Cross-process exclusion for manifest updates: two workers starting at once
 * must not hand out the same id. flock on the directory itself leaves no
 * lock file behind. Returns the fd to close, or -1 with errstr. */
static int reg_dir_lock(const struct veil_registry *reg, char *errstr,
                        size_t errstr_size)
{
        int fd = open(reg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || flock(fd, LOCK_EX)) {
                veil_errf(errstr, errstr_size, VEIL_EIO, "%s: lock: %s",
                          reg->dir, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

/* Find the id of (subject, norm) in the manifest, adding it when new.
 * *addedp says whether it was new. */
static int reg_file_assign(struct veil_registry *reg, const char *subject,
                           const char *norm, int *idp, bool *addedp,
                           char *errstr, size_t errstr_size)
{
        char sha[65];
        json_t *m = NULL, *e;
        int fd    = -1, err;

        *addedp = false;
        reg_sha256_hex(norm, sha);
        /* Fast path without the lock: renames make every read whole. */
        if ((err = reg_manifest_load(reg, &m, errstr, errstr_size)))
                return err;
        if ((e = reg_manifest_find(m, subject, sha)))
                goto found;
        json_decref(m);
        m = NULL;
        if ((fd = reg_dir_lock(reg, errstr, errstr_size)) < 0)
                return VEIL_EIO;
        if ((err = reg_manifest_load(reg, &m, errstr, errstr_size)))
                goto done;
        if ((e = reg_manifest_find(m, subject, sha)))
                goto found;
        *idp    = reg_manifest_add(m, subject, sha, norm);
        *addedp = true;
        err     = reg_manifest_save(reg, m, errstr, errstr_size);
        goto done;
found:
        *idp = (int)json_integer_value(json_object_get(e, "id"));
done:
        if (fd >= 0)
                close(fd); /* releases the flock */
        json_decref(m);
        return err;
}

/* DIR/<subject>.meta.json as compact JSON, *metap NULL when absent. */
static int reg_file_metadata(struct veil_registry *reg, const char *subject,
                             char **metap, char *errstr, size_t errstr_size)
{
        char *path = reg_printf("%s/%s.meta.json", reg->dir, subject);
        json_error_t jerr;
        json_t *m;
        int err = 0;

        *metap = NULL;
        if (access(path, F_OK) && errno == ENOENT)
                goto done;
        if (!(m = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr))) {
                err = veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                "%s:%d:%d: %s", path, jerr.line, jerr.column,
                                jerr.text);
                goto done;
        }
        if (!json_is_object(m))
                err = veil_errf(
                        errstr, errstr_size, VEIL_EINVAL,
                        "%s: expected a JSON object like {\"tags\": {...}}",
                        path);
        else
                *metap = reg_metadata_text(m);
        json_decref(m);
done:
        free(path);
        return err;
}

/* The subject's .avsc, normalised; VEIL_ENOTFOUND when there is none. */
static int reg_file_read_avsc(struct veil_registry *reg, const char *subject,
                              char **normp, char *errstr, size_t errstr_size)
{
        char *path = reg_printf("%s/%s.avsc", reg->dir, subject);
        char *text = NULL;
        int err;

        if (access(path, F_OK) && errno == ENOENT) {
                err = veil_errf(
                        errstr, errstr_size, VEIL_ENOTFOUND,
                        "registry %s: subject not found: \"%s\" (no %s.avsc)",
                        reg->dir, subject, subject);
                goto done;
        }
        if (!(text = veil_file_read(path, NULL, errstr, errstr_size))) {
                err = VEIL_EIO;
                goto done;
        }
        err = reg_normalize(text, path, normp, errstr, errstr_size);
done:
        free(text);
        free(path);
        return err;
}

static int reg_file_latest(struct veil_registry *reg, const char *subject,
                           int *idp, char **schemap, char **metadatap,
                           char *errstr, size_t errstr_size)
{
        char *norm = NULL;
        bool added;
        int err;

        if ((err = reg_file_subject_ok(reg, subject, errstr, errstr_size)) ||
            (err = reg_file_read_avsc(reg, subject, &norm, errstr,
                                      errstr_size)) ||
            (err = reg_file_assign(reg, subject, norm, idp, &added, errstr,
                                   errstr_size)) ||
            (err = reg_file_metadata(reg, subject, metadatap, errstr,
                                     errstr_size))) {
                free(norm);
                return err;
        }
        *schemap = norm;
        return 0;
}

static int reg_file_by_id(struct veil_registry *reg, int id, char **schemap,
                          char **metadatap, char *errstr, size_t errstr_size)
{
        json_t *m, *e;
        int err;

        if ((err = reg_manifest_load(reg, &m, errstr, errstr_size)))
                return err;
        if (!(e = reg_manifest_find_id(m, id))) {
                err = veil_errf(
                        errstr, errstr_size, VEIL_ENOTFOUND,
                        "registry %s: schema not found: id %d is not in %s",
                        reg->dir, id, REG_MANIFEST);
        } else if (!(err = reg_file_metadata(reg, reg_entry_str(e, "subject"),
                                             metadatap, errstr, errstr_size))) {
                *schemap = veil_strdup(reg_entry_str(e, "schema"));
        }
        json_decref(m);
        return err;
}

static int reg_file_register(struct veil_registry *reg, const char *subject,
                             const char *schema, int *idp, char *errstr,
                             size_t errstr_size)
{
        char *norm = NULL, *cur = NULL, *path = NULL, *text = NULL;
        char what[64];
        bool added;
        int err, cur_id;

        snprintf(what, sizeof(what), "schema for subject %.40s", subject);
        if ((err = reg_file_subject_ok(reg, subject, errstr, errstr_size)) ||
            (err = reg_normalize(schema, what, &norm, errstr, errstr_size)))
                goto done;
        /* An edited .avsc that nobody has read yet would be lost when we
         * overwrite it: give it its version first. */
        err = reg_file_read_avsc(reg, subject, &cur, errstr, errstr_size);
        if (!err)
                err = reg_file_assign(reg, subject, cur, &cur_id, &added,
                                      errstr, errstr_size);
        if (err && err != VEIL_ENOTFOUND)
                goto done;
        err = 0;

        path = reg_printf("%s/%s.avsc", reg->dir, subject);
        if (!cur || strcmp(cur, norm)) {
                /* Like Confluent, re-registering an older version only
                 * returns its id; only a new schema becomes the latest. */
                char sha[65];
                json_t *m = NULL;
                bool known;

                reg_sha256_hex(norm, sha);
                if ((err = reg_manifest_load(reg, &m, errstr, errstr_size)))
                        goto done;
                known = reg_manifest_find(m, subject, sha) != NULL;
                json_decref(m);
                if (!known || !cur) {
                        size_t len = strlen(schema);

                        text = len && schema[len - 1] == '\n'
                                       ? veil_strdup(schema)
                                       : reg_printf("%s\n", schema);
                        if ((err = reg_write_atomic(path, text, strlen(text),
                                                    errstr, errstr_size)))
                                goto done;
                }
        }
        err = reg_file_assign(reg, subject, norm, idp, &added, errstr,
                              errstr_size);
done:
        free(text);
        free(path);
        free(cur);
        free(norm);
        return err;
}

static int reg_file_open(struct veil_registry *reg, const char *url,
                         char *errstr, size_t errstr_size)
{
        const char *rest = url + strlen("file://");
        struct stat st;
        size_t len;

        if (!*rest)
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "registry.url: file:// needs a directory");
        if (rest[0] == '/') {
                reg->dir = veil_strdup(rest);
        } else {
                /* Resolved now, so a later chdir does not move the registry. */
                char *cwd = getcwd(NULL, 0);

                if (!cwd)
                        return veil_errf(errstr, errstr_size, VEIL_EIO,
                                         "registry.url: getcwd: %s",
                                         strerror(errno));
                reg->dir = reg_printf("%s/%s", cwd, rest);
                free(cwd);
        }
        len = strlen(reg->dir);
        while (len > 1 && reg->dir[len - 1] == '/')
                reg->dir[--len] = '\0';
        if (stat(reg->dir, &st))
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "registry.url: %s: %s", reg->dir,
                                 strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                 "registry.url: %s: not a directory", reg->dir);
        return 0;
}

/* ---- public API ---- */

bool veil_registry_url_insecure(const char *url)
{
        const char *host, *end, *at, *slash;
        char name[256];
        size_t n;

        if (!url || strncasecmp(url, "http://", 7))
                return false;
        host  = url + 7;
        slash = strchr(host, '/');
        end   = slash ? slash : host + strlen(host);
        /* user:pass@ is not the host. */
        at = memchr(host, '@', (size_t)(end - host));
        while (at) {
                host = at + 1;
                at   = memchr(host, '@', (size_t)(end - host));
        }
        if (*host == '[') {
                const char *close = memchr(host, ']', (size_t)(end - host));

                if (!close)
                        return true;
                n = (size_t)(close - host - 1);
                host++;
        } else {
                const char *colon = memchr(host, ':', (size_t)(end - host));

                n = (size_t)((colon ? colon : end) - host);
        }
        if (!n || n >= sizeof(name))
                return true;
        memcpy(name, host, n);
        name[n] = '\0';
        if (!strcasecmp(name, "localhost") || !strcmp(name, "::1"))
                return false;
        if (!strncmp(name, "127.", 4)) {
                const char *p;

                for (p = name + 4; *p; p++)
                        if (!((*p >= '0' && *p <= '9') || *p == '.'))
                                return true;
                return false;
        }
        return true;
}

struct veil_registry *veil_registry_new(const struct veil_registry_opts *opts,
                                        char *errstr, size_t errstr_size)
{
        struct veil_registry *reg;

        if (!opts || !opts->url || !*opts->url) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "registry.url: missing");
                return NULL;
        }
        if (!opts->allow_insecure && veil_registry_url_insecure(opts->url)) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "registry.url: plain http:// to a host other than "
                          "this one (loopback): use https://, or set "
                          "registry.allow_insecure: true");
                return NULL;
        }
        reg = veil_calloc(1, sizeof(*reg));
        pthread_mutex_init(&reg->lock, NULL);
        pthread_mutex_init(&reg->io_lock, NULL);
        reg->ids_buckets  = 64;
        reg->ids          = veil_calloc(reg->ids_buckets, sizeof(*reg->ids));
        reg->regs_buckets = 64;
        reg->regs         = veil_calloc(reg->regs_buckets, sizeof(*reg->regs));

        if (!strncmp(opts->url, "file://", 7)) {
                reg->kind = REG_FILE;
                if (reg_file_open(reg, opts->url, errstr, errstr_size))
                        goto err;
        } else if (!strncasecmp(opts->url, "http://", 7) ||
                   !strncasecmp(opts->url, "https://", 8)) {
                reg->kind = REG_HTTP;
                if (reg_http_open(reg, opts, errstr, errstr_size))
                        goto err;
        } else {
                veil_errf(
                        errstr, errstr_size, VEIL_ECONFIG,
                        "registry.url: expected http://, https:// or file://");
                goto err;
        }
        return reg;
err:
        veil_registry_destroy(reg);
        return NULL;
}

const char *veil_registry_err_prefix(const char *msg)
{
        return msg && !strncmp(msg, "registry", 8) ? "" : "registry: ";
}

void veil_registry_destroy(struct veil_registry *reg)
{
        size_t i;

        if (!reg)
                return;
        for (i = 0; i < reg->ids_buckets; i++) {
                struct reg_schema *e, *next;

                for (e = reg->ids[i]; e; e = next) {
                        next = e->next;
                        free(e->schema);
                        free(e->metadata);
                        free(e);
                }
        }
        for (i = 0; i < reg->regs_buckets; i++) {
                struct reg_registered *e, *next;

                for (e = reg->regs[i]; e; e = next) {
                        next = e->next;
                        free(e->subject);
                        free(e->schema);
                        free(e);
                }
        }
        free(reg->ids);
        free(reg->regs);
        if (reg->curl)
                curl_easy_cleanup(reg->curl);
        free(reg->base);
        free(reg->dir);
        pthread_mutex_destroy(&reg->io_lock);
        pthread_mutex_destroy(&reg->lock);
        free(reg);
}

int veil_registry_schema_by_id_meta(struct veil_registry *reg, int id,
                                    const char **schemap,
                                    const char **metadatap, char *errstr,
                                    size_t errstr_size)
{
        const struct reg_schema *e;
        char *schema = NULL, *meta = NULL;
        int err = 0;

        /* A negative id comes from a producer's bytes: no registry holds
         * it, so it is unknown (a record's error, not the schema's). */
        if (id < 0)
                return veil_errf(errstr, errstr_size, VEIL_ENOTFOUND,
                                 "registry: schema id %d is negative", id);
        if ((e = reg_ids_get(reg, id)))
                goto found;
        pthread_mutex_lock(&reg->io_lock);
        /* Another thread may have fetched it while we waited. */
        if (!(e = reg_ids_get(reg, id))) {
                err = reg->kind == REG_HTTP
                              ? reg_http_by_id(reg, id, &schema, &meta, errstr,
                                               errstr_size)
                              : reg_file_by_id(reg, id, &schema, &meta, errstr,
                                               errstr_size);
                if (!err)
                        e = reg_ids_put(reg, id, schema, meta);
        }
        pthread_mutex_unlock(&reg->io_lock);
        if (err)
                return err;
found:
        *schemap = e->schema;
        if (metadatap)
                *metadatap = e->metadata;
        return 0;
}

int veil_registry_schema_by_id(struct veil_registry *reg, int id,
                               const char **schemap, char *errstr,
                               size_t errstr_size)
{
        return veil_registry_schema_by_id_meta(reg, id, schemap, NULL, errstr,
                                               errstr_size);
}

int veil_registry_latest_meta(struct veil_registry *reg, const char *subject,
                              int *idp, const char **schemap,
                              const char **metadatap, char *errstr,
                              size_t errstr_size)
{
        const struct reg_schema *e;
        char *schema = NULL, *meta = NULL;
        int id = -1, err;

        if (!subject || !*subject)
                return veil_errf(errstr, errstr_size, VEIL_EINVAL,
                                 "registry: empty subject");
        pthread_mutex_lock(&reg->io_lock);
        err = reg->kind == REG_HTTP
                      ? reg_http_latest(reg, subject, &id, &schema, &meta,
                                        errstr, errstr_size)
                      : reg_file_latest(reg, subject, &id, &schema, &meta,
                                        errstr, errstr_size);
        pthread_mutex_unlock(&reg->io_lock);
        if (err)
                return err;
        e        = reg_ids_put(reg, id, schema, meta);
        *idp     = id;
        *schemap = e->schema;
        if (metadatap)
                *metadatap = e->metadata;
        return 0;
}

int veil_registry_latest(struct veil_registry *reg, const char *subject,
                         int *idp, const char **schemap, char *errstr,
                         size_t errstr_size)
{
        return veil_registry_latest_meta(reg, subject, idp, schemap, NULL,
                                         errstr, errstr_size);
}

int veil_registry_register(struct veil_registry *reg, const char *subject,
                           const char *schema, int *idp, char *errstr,
                           size_t errstr_size)
{
        int id = -1, err = 0;

        if (!subject || !*subject || !schema)
                return veil_errf(
                        errstr, errstr_size, VEIL_EINVAL,
                        "registry: register needs a subject and a schema");
        if (reg_regs_get(reg, subject, schema, idp))
                return 0;
        pthread_mutex_lock(&reg->io_lock);
        if (!reg_regs_get(reg, subject, schema, &id)) {
                err = reg->kind == REG_HTTP
                              ? reg_http_register(reg, subject, schema, &id,
                                                  errstr, errstr_size)
                              : reg_file_register(reg, subject, schema, &id,
                                                  errstr, errstr_size);
                if (!err)
                        reg_regs_put(reg, subject, schema, id);
        }
        pthread_mutex_unlock(&reg->io_lock);
        if (!err)
                *idp = id;
        return err;
}
