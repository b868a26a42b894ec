/* support_registry_double.c - the registry double (libmicrohttpd + jansson). */
#define _GNU_SOURCE
#include "registry_double.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RDBL_CONTENT_TYPE "application/vnd.schemaregistry.v1+json"

struct rdbl_schema { /* one schema text, one global id */
        int id;
        char *text;
        char *metadata; /* JSON object text or NULL */
};

struct rdbl_version { /* subject → version → id */
        char *subject;
        int version;
        int id;
};

struct rdbl_count {
        char *path;
        unsigned n;
};

struct registry_double {
        struct MHD_Daemon *mhd;
        int port;
        char url[64];

        pthread_mutex_t lock; /* everything below */
        struct rdbl_schema *schemas;
        size_t n_schemas;
        struct rdbl_version *versions;
        size_t n_versions;
        struct rdbl_count *counts;
        size_t n_counts;
        unsigned total;
        char *user, *password;
        char *bearer; /* required token, or NULL */
        unsigned fail_n;
        int fail_status;
};

/* A request body collected across MHD's upload callbacks. */
struct rdbl_upload {
        char *data;
        size_t len;
};

static void *rdbl_xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n ? n : 1);

        if (!q)
                abort();
        return q;
}

static char *rdbl_xstrdup(const char *s)
{
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                abort();
        return d;
}

/* Callers hold rdbl->lock. */
static const struct rdbl_schema *
rdbl_find_id(const struct registry_double *rdbl, int id)
{
        size_t i;

        for (i = 0; i < rdbl->n_schemas; i++)
                if (rdbl->schemas[i].id == id)
                        return &rdbl->schemas[i];
        return NULL;
}

static const struct rdbl_version *
rdbl_latest(const struct registry_double *rdbl, const char *subject)
{
        const struct rdbl_version *best = NULL;
        size_t i;

        for (i = 0; i < rdbl->n_versions; i++)
                if (!strcmp(rdbl->versions[i].subject, subject) &&
                    (!best || rdbl->versions[i].version > best->version))
                        best = &rdbl->versions[i];
        return best;
}

static int rdbl_add_locked(struct registry_double *rdbl, const char *subject,
                           const char *schema, const char *metadata)
{
        const struct rdbl_schema *s = NULL;
        const struct rdbl_version *latest;
        struct rdbl_version *v;
        size_t i;
        int id = 0, version;

        for (i = 0; i < rdbl->n_schemas && !s; i++)
                if (!strcmp(rdbl->schemas[i].text, schema))
                        s = &rdbl->schemas[i];
        if (s) {
                id = s->id;
        } else {
                rdbl->schemas                    = rdbl_xrealloc(rdbl->schemas,
                                                                 (rdbl->n_schemas + 1) *
                                                                         sizeof(*rdbl->schemas));
                id                               = (int)rdbl->n_schemas + 1;
                rdbl->schemas[rdbl->n_schemas++] = (struct rdbl_schema){
                        .id       = id,
                        .text     = rdbl_xstrdup(schema),
                        .metadata = rdbl_xstrdup(metadata),
                };
        }
        for (i = 0; i < rdbl->n_versions; i++)
                if (!strcmp(rdbl->versions[i].subject, subject) &&
                    rdbl->versions[i].id == id)
                        return id; /* already a version of this subject */
        /* Read the version before realloc moves the array under latest. */
        latest  = rdbl_latest(rdbl, subject);
        version = latest ? latest->version + 1 : 1;
        rdbl->versions =
                rdbl_xrealloc(rdbl->versions,
                              (rdbl->n_versions + 1) * sizeof(*rdbl->versions));
        v          = &rdbl->versions[rdbl->n_versions++];
        v->subject = rdbl_xstrdup(subject);
        v->version = version;
        v->id      = id;
        return id;
}

static void rdbl_count_locked(struct registry_double *rdbl, const char *path)
{
        size_t i;

        rdbl->total++;
        for (i = 0; i < rdbl->n_counts; i++) {
                if (!strcmp(rdbl->counts[i].path, path)) {
                        rdbl->counts[i].n++;
                        return;
                }
        }
        rdbl->counts = rdbl_xrealloc(
                rdbl->counts, (rdbl->n_counts + 1) * sizeof(*rdbl->counts));
        rdbl->counts[rdbl->n_counts++] =
                (struct rdbl_count){.path = rdbl_xstrdup(path), .n = 1};
}

static enum MHD_Result rdbl_reply(struct MHD_Connection *conn, unsigned status,
                                  json_t *body)
{
        char *text = json_dumps(body, JSON_COMPACT);
        struct MHD_Response *resp;
        enum MHD_Result ret;

        json_decref(body);
        if (!text)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text,
                                               MHD_RESPMEM_MUST_COPY);
        free(text);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                RDBL_CONTENT_TYPE);
        if (status == MHD_HTTP_UNAUTHORIZED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                        "Basic realm=\"registry-double\"");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static json_t *rdbl_error(int code, const char *message)
{
        return json_pack("{s:i, s:s}", "error_code", code, "message", message);
}

static bool rdbl_authorized(struct registry_double *rdbl,
                            struct MHD_Connection *conn)
{
        char *pass = NULL;
        char *user = MHD_basic_auth_get_username_password(conn, &pass);
        bool ok    = user && pass && !strcmp(user, rdbl->user) &&
                  !strcmp(pass, rdbl->password);

        MHD_free(user);
        MHD_free(pass);
        return ok;
}

static bool rdbl_bearer_ok(struct registry_double *rdbl,
                           struct MHD_Connection *conn)
{
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    "Authorization");

        return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, rdbl->bearer);
}

static void rdbl_put_metadata(json_t *obj, const struct rdbl_schema *s)
{
        json_t *meta;

        if (s->metadata && (meta = json_loads(s->metadata, 0, NULL)))
                json_object_set_new(obj, "metadata", meta);
}

/* Routes one complete request; caller holds rdbl->lock. Returns the status
 * and sets *bodyp. */
static unsigned rdbl_route(struct registry_double *rdbl, const char *url,
                           const char *method, const char *body, json_t **bodyp)
{
        char msg[512];
        const char *subject_end;
        size_t prefix = strlen("/subjects/");
        int id;
        char tail;

        if (!strcmp(method, "GET") &&
            sscanf(url, "/schemas/ids/%d%c", &id, &tail) == 1) {
                const struct rdbl_schema *s = rdbl_find_id(rdbl, id);

                if (!s) {
                        snprintf(msg, sizeof(msg), "Schema %d not found", id);
                        *bodyp = rdbl_error(40403, msg);
                        return MHD_HTTP_NOT_FOUND;
                }
                *bodyp = json_pack("{s:s, s:s}", "schema", s->text,
                                   "schemaType", "AVRO");
                rdbl_put_metadata(*bodyp, s);
                return MHD_HTTP_OK;
        }
        if (strncmp(url, "/subjects/", prefix)) {
                *bodyp = rdbl_error(404, "HTTP 404 Not Found");
                return MHD_HTTP_NOT_FOUND;
        }

        /* The subject may hold anything once decoded, so split from the right.
         */
        if (!strcmp(method, "GET") &&
            (subject_end = strstr(url + prefix, "/versions/latest")) &&
            !strcmp(subject_end, "/versions/latest")) {
                char *subject                = strndup(url + prefix,
                                                       (size_t)(subject_end - url) - prefix);
                const struct rdbl_version *v = rdbl_latest(rdbl, subject);

                if (!v) {
                        snprintf(msg, sizeof(msg), "Subject '%s' not found.",
                                 subject);
                        *bodyp = rdbl_error(40401, msg);
                        free(subject);
                        return MHD_HTTP_NOT_FOUND;
                }
                *bodyp = json_pack("{s:s, s:i, s:i, s:s}", "subject", subject,
                                   "version", v->version, "id", v->id, "schema",
                                   rdbl_find_id(rdbl, v->id)->text);
                rdbl_put_metadata(*bodyp, rdbl_find_id(rdbl, v->id));
                free(subject);
                return MHD_HTTP_OK;
        }
        if (!strcmp(method, "POST") &&
            strlen(url) > prefix + strlen("/versions") &&
            !strcmp(url + strlen(url) - strlen("/versions"), "/versions")) {
                char *subject =
                        strndup(url + prefix,
                                strlen(url) - prefix - strlen("/versions"));
                json_t *req     = body ? json_loads(body, 0, NULL) : NULL;
                json_t *schema  = json_object_get(req, "schema");
                json_t *type    = json_object_get(req, "schemaType");
                json_t *parsed  = NULL;
                unsigned status = MHD_HTTP_OK;

                if (json_is_string(schema))
                        parsed = json_loads(json_string_value(schema),
                                            JSON_DECODE_ANY, NULL);
                if (!parsed ||
                    (type && !(json_is_string(type) &&
                               !strcmp(json_string_value(type), "AVRO")))) {
                        *bodyp = rdbl_error(42201, "Invalid schema");
                        status = 422;
                } else {
                        id     = rdbl_add_locked(rdbl, subject,
                                                 json_string_value(schema), NULL);
                        *bodyp = json_pack("{s:i}", "id", id);
                }
                json_decref(parsed);
                json_decref(req);
                free(subject);
                return status;
        }
        *bodyp = rdbl_error(405, "HTTP 405 Method Not Allowed");
        return MHD_HTTP_METHOD_NOT_ALLOWED;
}

static enum MHD_Result rdbl_handle(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
        struct registry_double *rdbl = cls;
        struct rdbl_upload *up       = *con_cls;
        json_t *body                 = NULL;
        unsigned status;
        char msg[64];

        (void)version;
        if (!up) { /* headers only so far: set up the body buffer */
                up = calloc(1, sizeof(*up));
                if (!up)
                        return MHD_NO;
                *con_cls = up;
                return MHD_YES;
        }
        if (*upload_data_size) {
                up->data = rdbl_xrealloc(up->data,
                                         up->len + *upload_data_size + 1);
                memcpy(up->data + up->len, upload_data, *upload_data_size);
                up->len += *upload_data_size;
                up->data[up->len] = '\0';
                *upload_data_size = 0;
                return MHD_YES;
        }

        pthread_mutex_lock(&rdbl->lock);
        rdbl_count_locked(rdbl, url);
        if (rdbl->fail_n > 0) {
                rdbl->fail_n--;
                status = (unsigned)rdbl->fail_status;
                snprintf(msg, sizeof(msg), "injected HTTP %u", status);
                body = rdbl_error(rdbl->fail_status, msg);
        } else if ((rdbl->user && !rdbl_authorized(rdbl, conn)) ||
                   (rdbl->bearer && !rdbl_bearer_ok(rdbl, conn))) {
                status = MHD_HTTP_UNAUTHORIZED;
                body   = rdbl_error(401, "Unauthorized");
        } else {
                status = rdbl_route(rdbl, url, method, up->data, &body);
        }
        pthread_mutex_unlock(&rdbl->lock);
        return rdbl_reply(conn, status, body);
}

static void rdbl_completed(void *cls, struct MHD_Connection *conn,
                           void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct rdbl_upload *up = *con_cls;

        (void)cls;
        (void)conn;
        (void)toe;
        if (up) {
                free(up->data);
                free(up);
                *con_cls = NULL;
        }
}

struct registry_double *registry_double_start(void)
{
        struct registry_double *rdbl = calloc(1, sizeof(*rdbl));
        struct sockaddr_in sa        = {.sin_family = AF_INET, .sin_port = 0};
        const union MHD_DaemonInfo *info;

        if (!rdbl)
                return NULL;
        pthread_mutex_init(&rdbl->lock, NULL);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rdbl->mhd          = MHD_start_daemon(
                         MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         rdbl_handle, rdbl, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_NOTIFY_COMPLETED, rdbl_completed, rdbl,
                         MHD_OPTION_END);
        if (!rdbl->mhd) {
                fprintf(stderr, "registry double: MHD_start_daemon failed\n");
                goto err;
        }
        info = MHD_get_daemon_info(rdbl->mhd, MHD_DAEMON_INFO_BIND_PORT);
        if (!info || !info->port) {
                fprintf(stderr, "registry double: no bound port\n");
                goto err;
        }
        rdbl->port = info->port;
        snprintf(rdbl->url, sizeof(rdbl->url), "http://127.0.0.1:%d",
                 rdbl->port);
        return rdbl;
err:
        registry_double_stop(rdbl);
        return NULL;
}

void registry_double_stop(struct registry_double *rdbl)
{
        size_t i;

        if (!rdbl)
                return;
        if (rdbl->mhd)
                MHD_stop_daemon(rdbl->mhd); /* joins the server thread */
        for (i = 0; i < rdbl->n_schemas; i++) {
                free(rdbl->schemas[i].text);
                free(rdbl->schemas[i].metadata);
        }
        for (i = 0; i < rdbl->n_versions; i++)
                free(rdbl->versions[i].subject);
        for (i = 0; i < rdbl->n_counts; i++)
                free(rdbl->counts[i].path);
        free(rdbl->schemas);
        free(rdbl->versions);
        free(rdbl->counts);
        free(rdbl->user);
        free(rdbl->password);
        free(rdbl->bearer);
        pthread_mutex_destroy(&rdbl->lock);
        free(rdbl);
}

const char *registry_double_url(const struct registry_double *rdbl)
{
        return rdbl->url;
}

int registry_double_port(const struct registry_double *rdbl)
{
        return rdbl->port;
}

int registry_double_add_meta(struct registry_double *rdbl, const char *subject,
                             const char *schema, const char *metadata)
{
        int id;

        pthread_mutex_lock(&rdbl->lock);
        id = rdbl_add_locked(rdbl, subject, schema, metadata);
        pthread_mutex_unlock(&rdbl->lock);
        return id;
}

int registry_double_add(struct registry_double *rdbl, const char *subject,
                        const char *schema)
{
        return registry_double_add_meta(rdbl, subject, schema, NULL);
}

void registry_double_require_auth(struct registry_double *rdbl,
                                  const char *user, const char *password)
{
        pthread_mutex_lock(&rdbl->lock);
        free(rdbl->user);
        free(rdbl->password);
        rdbl->user     = rdbl_xstrdup(user);
        rdbl->password = user ? rdbl_xstrdup(password ? password : "") : NULL;
        pthread_mutex_unlock(&rdbl->lock);
}

void registry_double_require_bearer(struct registry_double *rdbl,
                                    const char *token)
{
        pthread_mutex_lock(&rdbl->lock);
        free(rdbl->bearer);
        rdbl->bearer = rdbl_xstrdup(token);
        pthread_mutex_unlock(&rdbl->lock);
}

void registry_double_fail_next(struct registry_double *rdbl, unsigned n,
                               int status)
{
        pthread_mutex_lock(&rdbl->lock);
        rdbl->fail_n      = n;
        rdbl->fail_status = status;
        pthread_mutex_unlock(&rdbl->lock);
}

unsigned registry_double_requests(struct registry_double *rdbl,
                                  const char *path)
{
        unsigned n = 0;
        size_t i;

        pthread_mutex_lock(&rdbl->lock);
        if (!path)
                n = rdbl->total;
        for (i = 0; path && i < rdbl->n_counts; i++)
                if (!strcmp(rdbl->counts[i].path, path))
                        n = rdbl->counts[i].n;
        pthread_mutex_unlock(&rdbl->lock);
        return n;
}

char *registry_double_latest(struct registry_double *rdbl, const char *subject,
                             int *idp)
{
        const struct rdbl_version *v;
        char *text = NULL;

        pthread_mutex_lock(&rdbl->lock);
        if ((v = rdbl_latest(rdbl, subject))) {
                text = rdbl_xstrdup(rdbl_find_id(rdbl, v->id)->text);
                if (idp)
                        *idp = v->id;
        }
        pthread_mutex_unlock(&rdbl->lock);
        return text;
}
