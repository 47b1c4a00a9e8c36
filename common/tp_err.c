/* common/tp_err.c: error names and aborting allocators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp_err.h"

const char *tp_strerror(int err)
{
    if (err == 0)
        return "success";
    switch (err) {
#define TP_ERR_CASE(name, text)                                                                    \
    case TP_E##name:                                                                               \
        return text;
        TP_ERR_MAP(TP_ERR_CASE)
#undef TP_ERR_CASE
    default:
        break;
    }
    if (err < 0 && err > TP_E__BASE)
        return strerror(-err);
    return "unknown error";
}

static _Noreturn void oom(unsigned long n)
{
    char msg[96];
    int len = snprintf(msg, sizeof(msg), "turnpike: out of memory allocating %lu bytes\n", n);
    if (write(2, msg, (size_t)len) < 0) {
        /* nothing more we can do */
    }
    abort();
}

void *tp_malloc(unsigned long n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *tp_calloc(unsigned long count, unsigned long n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *tp_realloc(void *p, unsigned long n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *tp_strdup(const char *s)
{
    return tp_strndup(s, strlen(s));
}

char *tp_strndup(const char *s, unsigned long n)
{
    char *p = tp_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void tp_bug(const char *file, int line, const char *what)
{
    char msg[512];
    int len = snprintf(msg, sizeof(msg), "turnpike: BUG at %s:%d: %s\n", file, line, what);
    if (len > 0 && write(2, msg, (size_t)len) < 0) {
        /* ignore */
    }
    abort();
}
