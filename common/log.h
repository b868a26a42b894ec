/* log.h - structured logs: one JSON object per line on stderr, naming
 * fields, positions and codes, never a value from a record. */
#ifndef VEIL_COMMON_LOG_H
#define VEIL_COMMON_LOG_H

#include <stdbool.h>

/* Lines below `level` ("debug", "info", "warn", "error"; anything else
 * counts as "info") are dropped. Process-wide; default "info". */
void veil_log_set_level(const char *level);

/* {"ts": ms, "level": level, "event": event, "msg": formatted} */
void veil_log(const char *level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Makes a formatted message valid UTF-8 in place: when `truncated` (it
 * was cut to fit a buffer), a character the cut split is dropped whole;
 * any other invalid byte becomes '?'. Without this, the JSON encoder
 * refuses the message and the whole line is lost. */
void veil_log_utf8_fix(char *msg, bool truncated);

#endif
