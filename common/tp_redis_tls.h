/*
 * common/tp_redis_tls.h: TLS for Redis connections with mbedTLS, over memory
 * buffers so the bytes travel on our own libuv sockets.
 *
 * Used by: the Redis client (common/tp_redis.c) only; part of the redis
 * module, split out because it is the only file that knows mbedTLS.
 * One tp_rtls_conf_t per client (the CA chain, client certificate, random
 * generator), one tp_rtls_t per connection. Single-threaded.
 */
#ifndef TP_REDIS_TLS_H
#define TP_REDIS_TLS_H

#include <stddef.h>

#include "tp_buf.h"
#include "tp_redis_conf.h"

typedef struct tp_rtls_conf_s tp_rtls_conf_t;
typedef struct tp_rtls_s tp_rtls_t;

/* Loads ca_file / cert_file / key_file and the version bounds from
 * <st>. Returns NULL with the reason in <err> (file name included). */
tp_rtls_conf_t *tp_rtls_conf_new(const tp_redis_conf_t *st, char *err, size_t errlen);
void tp_rtls_conf_free(tp_rtls_conf_t *tc);

/* A TLS session for a connection to <host> (for SNI and the certificate
 * name check). */
tp_rtls_t *tp_rtls_new(tp_rtls_conf_t *tc, const char *host);
void tp_rtls_free(tp_rtls_t *t);

/* Bytes the session wants on the wire: append them to the socket and
 * clear with tp_rtls_sent. */
tp_buf_t *tp_rtls_pending(tp_rtls_t *t);

/* Drives the handshake with what arrived (<in>, <n>; may be 0 bytes).
 * Returns 1 when done, 0 when more input is needed, -1 on failure with a
 * reason (verification errors spelled out) in <err>. */
int tp_rtls_handshake(tp_rtls_t *t, const char *in, size_t n, char *err, size_t errlen);

/* Encrypts <n> plaintext bytes into the pending output. Returns 0 or -1. */
int tp_rtls_write(tp_rtls_t *t, const char *p, size_t n, char *err, size_t errlen);

/* Decrypts what arrived; appends plaintext to <out>. Returns 0, 1 when the
 * peer closed the session, -1 on error. */
int tp_rtls_read(tp_rtls_t *t, const char *in, size_t n, tp_buf_t *out, char *err, size_t errlen);

#endif
