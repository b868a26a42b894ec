/* http.h - the worker's operations endpoint: GET /metrics (Prometheus text
 * format 0.0.4) and GET /healthz, served by libmicrohttpd on its own
 * thread. */
#ifndef VEIL_CONNECTORS_HTTP_H
#define VEIL_CONNECTORS_HTTP_H

#include <stddef.h>

#include "metrics.h"

struct veil_http;

/* Called on the server's thread for /healthz: returns non-zero when
 * healthy and writes a one-line reason into msg either way. */
typedef int (*veil_http_health_fn)(void *opaque, char *msg, size_t msg_size);

/* Listens on `listen` ("HOST:PORT", "[IPV6]:PORT"; port 0 picks a free
 * one, see veil_http_port) and serves `metrics` (borrowed: must outlive
 * the server) and `health`. NULL with errstr when the address does not
 * parse or cannot be bound. */
struct veil_http *veil_http_start(const char *listen,
                                  struct veil_metrics *metrics,
                                  veil_http_health_fn health, void *opaque,
                                  char *errstr, size_t errstr_size);

/* The port actually bound. */
int veil_http_port(const struct veil_http *http);

/* Stops the server thread and frees it. NULL is a no-op. */
void veil_http_stop(struct veil_http *http);

#endif
