/* http.c - /metrics and /healthz on libmicrohttpd's internal thread: it
 * only reads the registry's atomics and the health callback, so a scrape
 * never waits for the record path nor the record path for a scrape. */
#define _GNU_SOURCE
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"
#include "util.h"
#include "veil.h"

struct veil_http {
        struct MHD_Daemon *daemon;
        struct veil_metrics *metrics;
        veil_http_health_fn health;
        void *opaque;
        int port;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
                             const char *type, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, body, mode);
        if (!resp) {
                if (mode == MHD_RESPMEM_MUST_FREE)
                        free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
        struct veil_http *http = cls;
        char msg[256], *body;
        size_t len;
        int ok;

        (void)version;
        (void)upload_data;
        (void)con_cls;
        if (strcmp(method, MHD_HTTP_METHOD_GET) &&
            strcmp(method, MHD_HTTP_METHOD_HEAD)) {
                if (*upload_data_size) {
                        /* Swallow a body before answering. */
                        *upload_data_size = 0;
                        return MHD_YES;
                }
                return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                             (char *)"method not allowed\n", 19,
                             MHD_RESPMEM_PERSISTENT);
        }
        if (!strcmp(url, "/metrics")) {
                body = veil_metrics_render(http->metrics, &len);
                return reply(conn, MHD_HTTP_OK,
                             "text/plain; version=0.0.4; charset=utf-8", body,
                             len, MHD_RESPMEM_MUST_FREE);
        }
        if (!strcmp(url, "/healthz")) {
                msg[0] = '\0';
                ok = http->health ? http->health(http->opaque, msg, sizeof(msg))
                                  : 1;
                if (asprintf(&body, "%s%s%s\n", ok ? "ok" : "unhealthy",
                             msg[0] ? ": " : "", msg) < 0)
                        return MHD_NO;
                return reply(conn,
                             ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                             "text/plain; charset=utf-8", body, strlen(body),
                             MHD_RESPMEM_MUST_FREE);
        }
        return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain",
                     (char *)"not found: try /metrics or /healthz\n", 36,
                     MHD_RESPMEM_PERSISTENT);
}

struct veil_http *veil_http_start(const char *listen,
                                  struct veil_metrics *metrics,
                                  veil_http_health_fn health, void *opaque,
                                  char *errstr, size_t errstr_size)
{
        struct addrinfo hints, *ai = NULL;
        struct veil_http *http;
        const union MHD_DaemonInfo *info;
        char *host, *port, *colon;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
        int rc;

        host  = veil_strdup(listen);
        colon = strrchr(host, ':');
        if (!colon || colon == host || !colon[1]) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "metrics.listen: '%s' is not HOST:PORT", listen);
                free(host);
                return NULL;
        }
        *colon = '\0';
        port   = colon + 1;
        if (host[0] == '[') {
                size_t n = strlen(host);

                if (host[n - 1] != ']') {
                        veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                                  "metrics.listen: '%s': an IPv6 address "
                                  "goes in brackets, [::1]:9464",
                                  listen);
                        free(host);
                        return NULL;
                }
                host[n - 1] = '\0';
                memmove(host, host + 1, n - 1);
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_family   = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags    = AI_NUMERICSERV;
        rc                = getaddrinfo(host, port, &hints, &ai);
        if (rc) {
                veil_errf(errstr, errstr_size, VEIL_ECONFIG,
                          "metrics.listen: '%s': %s", listen, gai_strerror(rc));
                free(host);
                return NULL;
        }
        free(host);
        if (ai->ai_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        http          = veil_calloc(1, sizeof(*http));
        http->metrics = metrics;
        http->health  = health;
        http->opaque  = opaque;
        http->daemon  = MHD_start_daemon(
                 flags, 0, NULL, NULL, handle, http, MHD_OPTION_SOCK_ADDR,
                 ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
        freeaddrinfo(ai);
        if (!http->daemon) {
                veil_errf(errstr, errstr_size, VEIL_EIO,
                          "metrics.listen: cannot listen on %s (address in "
                          "use or not local?)",
                          listen);
                free(http);
                return NULL;
        }
        info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
        http->port = info ? info->port : 0;
        return http;
}

int veil_http_port(const struct veil_http *http)
{
        return http->port;
}

void veil_http_stop(struct veil_http *http)
{
        if (!http)
                return;
        MHD_stop_daemon(http->daemon);
        free(http);
}
