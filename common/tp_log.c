/* common/tp_log.c: leveled logging to stderr, logfmt or JSON lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tp_log.h"
#include "tp_time.h"

tp_log_t tp_log_g = {.level = TP_LOG_INFO, .json = 0, .fd = 2, .role = "master"};

static const char *const level_names[] = {"error", "warning", "info", "debug"};

const char *tp_log_level_name(int level)
{
    if (level < TP_LOG_ERROR || level > TP_LOG_DEBUG)
        return "info";
    return level_names[level];
}

int tp_log_level_parse(const char *name)
{
    if (strcasecmp(name, "debug") == 0)
        return TP_LOG_DEBUG;
    if (strcasecmp(name, "info") == 0 || name[0] == '\0')
        return TP_LOG_INFO;
    if (strcasecmp(name, "warn") == 0 || strcasecmp(name, "warning") == 0)
        return TP_LOG_WARN;
    if (strcasecmp(name, "error") == 0)
        return TP_LOG_ERROR;
    return -1;
}

void tp_log_set_role(const char *role)
{
    snprintf(tp_log_g.role, sizeof(tp_log_g.role), "%s", role);
}

/* Appends <s> to <out> escaped for a double-quoted string (valid both as
 * JSON and logfmt); stops early when <out> is full. */
static size_t put_escaped(char *out, size_t pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0' && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (c == '\n') {
            out[pos++] = '\\';
            out[pos++] = 'n';
        } else if (c == '\t') {
            out[pos++] = '\\';
            out[pos++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(out + pos, "\\u00", 4);
            out[pos + 4] = hex[c >> 4];
            out[pos + 5] = hex[c & 15];
            pos += 6;
        } else {
            out[pos++] = (char)c;
        }
    }
    return pos;
}

void tp_log_write(int level, const char *fmt, ...)
{
    int saved_errno = errno;
    char msg[2048];
    char line[4096];
    char ts[40];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tp_time_rfc3339(ts, sizeof(ts), tp_time_wall_us(), 1);

    int n;
    if (tp_log_g.json)
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"role\":\"%s\",\"msg\":\"", ts,
                     tp_log_level_name(level), (int)getpid(), tp_log_g.role);
    else
        n = snprintf(line, sizeof(line), "time=\"%s\" level=%s pid=%d role=%s msg=\"", ts,
                     tp_log_level_name(level), (int)getpid(), tp_log_g.role);
    size_t pos = n > 0 ? (size_t)n : 0;
    pos = put_escaped(line, pos, sizeof(line) - 3, msg);
    line[pos++] = '"';
    if (tp_log_g.json)
        line[pos++] = '}';
    line[pos++] = '\n';

    const char *p = line;
    while (pos > 0) {
        ssize_t w = write(tp_log_g.fd, p, pos);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        pos -= (size_t)w;
    }
    errno = saved_errno;
}
