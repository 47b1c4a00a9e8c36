/*
 * common/tp_err.h: the project's error vocabulary.
 *
 * Used by: master and workers. Functions return 0 on success or a negative
 * code: -errno where the C library has one, or a TP_E* code from the table
 * below. tp_strerror() names either kind. No state, no locking.
 */
#ifndef TP_ERR_H
#define TP_ERR_H

#define TP_ERR_MAP(X)                                                                              \
    X(CONF, "invalid configuration")                                                               \
    X(JSON, "malformed JSON")                                                                      \
    X(LIMIT, "limit exceeded")                                                                     \
    X(PROTO, "protocol error")                                                                     \
    X(UPSTREAM, "upstream error")                                                                  \
    X(DNS, "host lookup failed")                                                                   \
    X(TIMEOUT, "timed out")                                                                        \
    X(TLS, "TLS handshake failed")

enum {
    TP_E__BASE = -20000,
#define TP_ERR_ENUM(name, text) TP_E##name,
    TP_ERR_MAP(TP_ERR_ENUM)
#undef TP_ERR_ENUM
};

/* Returns a static string for a 0 / -errno / TP_E* code. */
const char *tp_strerror(int err);

/* Aborts with a message on allocation failure, as h2o does: an out-of-memory
 * worker is restarted by the master, which beats threading -ENOMEM through
 * every request path. */
void *tp_malloc(unsigned long n);
void *tp_calloc(unsigned long count, unsigned long n);
void *tp_realloc(void *p, unsigned long n);
char *tp_strdup(const char *s);
char *tp_strndup(const char *s, unsigned long n);

/* Cheap invariants that stay on in production. */
#define TP_BUG_ON(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!!(cond), 0))                                                         \
            tp_bug(__FILE__, __LINE__, #cond);                                                     \
    } while (0)

_Noreturn void tp_bug(const char *file, int line, const char *what);

#endif
