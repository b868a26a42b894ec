/* log.c - structured JSON log lines on stderr for the worker and its parts. */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* Length of the well-formed UTF-8 sequence at s[0..len), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
        size_t n, i;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4;
        else
                return 0;
        if (len < n)
                return 0;
        for (i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        /* Overlong, surrogate and beyond-U+10FFFF forms. */
        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
            (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
                return 0;
        return n;
}

void veil_log_utf8_fix(char *msg, bool truncated)
{
        unsigned char *s = (unsigned char *)msg;
        size_t len = strlen(msg), i = 0, n, tail;

        /* A cut in the middle of a character: drop its first bytes. */
        if (truncated && len) {
                tail = len;
                while (tail > 0 && len - tail < 4 &&
                       (s[tail - 1] & 0xc0) == 0x80)
                        tail--;
                if (tail > 0 && s[tail - 1] >= 0xc0 &&
                    utf8_seq(s + tail - 1, len - tail + 1) == 0) {
                        len      = tail - 1;
                        msg[len] = '\0';
                }
        }
        /* Anything else that is not UTF-8 becomes '?', so the line is
         * still written (jansson refuses a string that is not UTF-8). */
        while (i < len) {
                n = utf8_seq(s + i, len - i);
                if (!n) {
                        s[i] = '?';
                        n    = 1;
                }
                i += n;
        }
}

void veil_log(const char *level, const char *event, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        json_t *o;
        char *text;
        int n;

        if (log_rank(level) < log_min)
                return;
        va_start(ap, fmt);
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                snprintf(msg, sizeof(msg), "(unformattable message)");
        veil_log_utf8_fix(msg, n >= (int)sizeof(msg));
        o = json_pack("{s:I, s:s, s:s, s:s}", "ts", (json_int_t)veil_now_ms(),
                      "level", level, "event", event, "msg", msg);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text)
                fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(o);
}
