/*
 * common/tp_http.h: HTTP/1.1 vocabulary shared by the request path and tests:
 * header classes, token checks, status reason phrases.
 *
 * Used by: workers. Pure functions, no state.
 */
#ifndef TP_HTTP_H
#define TP_HTTP_H

#include <stddef.h>

#include "tp_buf.h"

enum {
    TP_H_OTHER = 0,
    TP_H_HOST,
    TP_H_CONNECTION,
    TP_H_KEEP_ALIVE,
    TP_H_PROXY_CONNECTION,
    TP_H_PROXY_AUTHENTICATE,
    TP_H_PROXY_AUTHORIZATION,
    TP_H_TE,
    TP_H_TRAILER,
    TP_H_TRANSFER_ENCODING,
    TP_H_UPGRADE,
    TP_H_X_FORWARDED_FOR,
    TP_H_EXPECT,
    TP_H_USER_AGENT,
    TP_H_CONTENT_LENGTH,
};

/* Classifies a header name (case-insensitive). */
int tp_http_header_kind(const char *name, size_t n);
/* <n> bytes of <a> equal lower-case ASCII <lower>, letters in any case
 * (no locale: header names are ASCII, compared on every response). */
static inline int tp_http_ieq(const char *a, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1, and Go's
 * list that Tyk applies: Connection, Proxy-Connection, Keep-Alive,
 * Proxy-Authenticate, Proxy-Authorization, Te, Trailer, Transfer-Encoding,
 * Upgrade). */
int tp_http_is_hop_by_hop(int kind);

/* Appends <n> bytes of header name <s> as Go's
 * textproto.CanonicalMIMEHeaderKey writes it ("x-my-header" ->
 * "X-My-Header"), for names made of token bytes. */
void tp_http_put_canonical(tp_buf_t *b, const char *s, size_t n);

/* One of the three X-RateLimit-* headers Tyk sets or removes (others,
 * such as X-RateLimit-Used, pass)? */
int tp_http_is_ratelimit_header(const char *name, size_t len);

/* GET, HEAD or OPTIONS (Tyk's SAFE_METHODS)? */
int tp_http_is_safe_method(const char *method);

/* Is <name> a valid field name (RFC 9110 token)? */
int tp_http_token_ok(const char *name, size_t n);

/* The standard reason phrase for a status code ("Not Found"), or "". */
const char *tp_http_reason(int status);

#endif
