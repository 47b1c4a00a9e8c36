/* common/tp_redis_slot.c: Redis Cluster key slots and where a command's key is. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_redis.h"

/* CRC16-CCITT (XMODEM), the variant Redis Cluster uses (cluster spec,
 * "Keys distribution model"): polynomial 0x1021, initial value 0. */
static unsigned crc16(const char *buf, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
        crc &= 0xffff;
    }
    return crc;
}

unsigned tp_redis_slot(const char *key, size_t len)
{
    /* Only the part between the first '{' and the next '}' is hashed, when
     * that part is not empty, so related keys can share a slot. */
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return crc16(key, len) & 16383;
}

int tp_redis_parse_redirect(const char *err, unsigned *slot, char *addr, size_t addrlen)
{
    int kind;
    if (strncmp(err, "MOVED ", 6) == 0)
        kind = 1, err += 6;
    else if (strncmp(err, "ASK ", 4) == 0)
        kind = 2, err += 4;
    else
        return 0;
    char *end;
    unsigned long s = strtoul(err, &end, 10);
    if (end == err || *end != ' ' || s >= 16384)
        return 0;
    const char *a = end + 1;
    size_t n = strcspn(a, " \r\n");
    if (n == 0 || n >= addrlen || strchr(a, ':') == NULL)
        return 0;
    memcpy(addr, a, n);
    addr[n] = '\0';
    *slot = (unsigned)s;
    return kind;
}

int tp_redis_key_index(const char *cmd, size_t len, int argc)
{
    static const char *const keyless[] = {
        "PING",    "AUTH",     "SELECT",    "INFO",        "CLUSTER",    "ASKING",
        "SCAN",    "PUBLISH",  "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "SCRIPT",
        "ROLE",    "SENTINEL", "READONLY",  "HELLO",       "CLIENT",     "DBSIZE",
        "FLUSHDB", "FLUSHALL", "DEBUG",     "CONFIG",      "TIME",       "QUIT",
        "ECHO",    "WAIT",     "MULTI",     "EXEC",        "DISCARD",    NULL};
    for (int i = 0; keyless[i] != NULL; i++)
        if (strlen(keyless[i]) == len && strncasecmp(cmd, keyless[i], len) == 0)
            return -1;
    if ((len == 4 && strncasecmp(cmd, "EVAL", 4) == 0) ||
        (len == 7 && strncasecmp(cmd, "EVALSHA", 7) == 0) ||
        (len == 10 && strncasecmp(cmd, "EVALSHA_RO", 10) == 0) ||
        (len == 7 && strncasecmp(cmd, "EVAL_RO", 7) == 0))
        return argc > 3 ? 3 : -1;
    return argc > 1 ? 1 : -1;
}
