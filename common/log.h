/* log.h - structured logs: one JSON object per line on stderr, naming
 * fields, positions and codes, never a value from a record. */
#ifndef VEIL_COMMON_LOG_H
#define VEIL_COMMON_LOG_H

/* Lines below `level` ("debug", "info", "warn", "error"; anything else
 * counts as "info") are dropped. Process-wide; default "info". */
void veil_log_set_level(const char *level);

/* {"ts": ms, "level": level, "event": event, "msg": formatted} */
void veil_log(const char *level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif
