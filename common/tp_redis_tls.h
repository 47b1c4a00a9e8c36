/*
 * common/tp_redis_tls.h: the TLS context for Redis connections, built from
 * tyk.conf's storage settings on the shared TLS layer (common/tp_tls.h).
 *
 * Used by: the Redis client (common/tp_redis.c) only.
 */
#ifndef TP_REDIS_TLS_H
#define TP_REDIS_TLS_H

#include <stddef.h>

#include "tp_redis_conf.h"
#include "tp_tls.h"

/* A client context from ca_file / cert_file / key_file / ssl_insecure_skip_verify
 * and the version bounds of <st>. Returns NULL with the reason in <err>
 * (file name included). */
tp_tls_ctx_t *tp_redis_tls_ctx(const tp_redis_conf_t *st, char *err, size_t errlen);

#endif
