/*
 * worker/tp_fetch.h: one HTTP(S) request from a worker, for what the
 * gateway itself must ask of a server (JWKS key sets; the requests of a
 * batch, to itself): resolve, connect, TLS when https (verified against
 * the system roots unless told not to), "Connection: close", the whole
 * body (at most 1 MiB), a deadline.
 *
 * Used by: worker processes, on their loop. The callback runs once, on the
 * loop, unless the fetch was dropped first (tp_fetch_drop).
 */
#ifndef TP_FETCH_H
#define TP_FETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_worker_s tp_worker_t;
typedef struct tp_fetch_s tp_fetch_t;

/* <status>: the HTTP status, or 0 with the reason in <err>; <body> valid
 * during the call. */
typedef void (*tp_fetch_cb)(void *arg, int status, const char *body, size_t len, const char *err);

tp_fetch_t *tp_fetch_get(tp_worker_t *w, const char *url, int insecure, int64_t timeout_ms,
                         tp_fetch_cb cb, void *arg);
/* Any request: <method>, header lines <headers> ("Name: value\r\n" each,
 * or NULL) and a body of <len> bytes (sent with its Content-Length when
 * <body> is not NULL). NULL when <url> does not parse. */
tp_fetch_t *tp_fetch_request(tp_worker_t *w, const char *method, const char *url,
                             const char *headers, const char *body, size_t len, int insecure,
                             int64_t timeout_ms, tp_fetch_cb cb, void *arg);
/* The response's header lines ("Name: value\r\n" each), in the callback. */
const char *tp_fetch_response_headers(const tp_fetch_t *f);
/* The caller is gone: the fetch is abandoned, its callback never runs. */
void tp_fetch_drop(tp_fetch_t *f);

#endif
