/* log.c - structured JSON log lines on stderr for the worker and its parts. */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
static int log_min = LOG_INFO;

static int log_rank(const char *level)
{
        if (!level)
                return LOG_INFO;
        if (!strcmp(level, "debug"))
                return LOG_DEBUG;
        if (!strcmp(level, "warn"))
                return LOG_WARN;
        if (!strcmp(level, "error"))
                return LOG_ERROR;
        return LOG_INFO;
}

void veil_log_set_level(const char *level)
{
        log_min = log_rank(level);
}

void veil_log(const char *level, const char *event, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        json_t *o;
        char *text;

        if (log_rank(level) < log_min)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o = json_pack("{s:I, s:s, s:s, s:s}", "ts", (json_int_t)veil_now_ms(),
                      "level", level, "event", event, "msg", msg);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text)
                fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(o);
}
