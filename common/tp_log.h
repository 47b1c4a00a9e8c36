/*
 * common/tp_log.h: leveled logging to stderr.
 *
 * Used by: master and workers. One line per event with timestamp, level,
 * pid and role, as logfmt text or (log_format "json") one JSON object per
 * line, like Tyk's logrus output. Each line goes out in a single write(2),
 * so lines from several processes sharing stderr never interleave.
 * The level is checked before the arguments are evaluated.
 * Never log a raw API key: log its hash.
 */
#ifndef TP_LOG_H
#define TP_LOG_H

enum { TP_LOG_ERROR = 0, TP_LOG_WARN = 1, TP_LOG_INFO = 2, TP_LOG_DEBUG = 3 };

typedef struct tp_log_s {
    int level;
    int json;
    int fd;
    char role[24];
} tp_log_t;

/* The one logging state of this process (set up before fork, then the role
 * is renamed in each worker). */
extern tp_log_t tp_log_g;

#define tp_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= tp_log_g.level)                                                               \
            tp_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)

#define tp_log_error(...) tp_log(TP_LOG_ERROR, __VA_ARGS__)
#define tp_log_warn(...) tp_log(TP_LOG_WARN, __VA_ARGS__)
#define tp_log_info(...) tp_log(TP_LOG_INFO, __VA_ARGS__)
#define tp_log_debug(...) tp_log(TP_LOG_DEBUG, __VA_ARGS__)

void tp_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tp_log_set_role(const char *role);

/* Parses "debug", "info", "warn"/"warning", "error". Returns the level or -1. */
int tp_log_level_parse(const char *name);
const char *tp_log_level_name(int level);

#endif
