/*
 * common/tp_httpget.h: one blocking HTTP(S) GET, for the master's
 * downloads at load time (plugin bundles). See tp_httpget.c.
 */
#ifndef TP_HTTPGET_H
#define TP_HTTPGET_H

#include <stddef.h>

#include "tp_buf.h"

/* GET <url>: 0 with a 200 answer's body appended to <out> (at most <max>
 * bytes, within <timeout_ms>), or -1 with the reason in <err> ("HTTP
 * Error, got status code N" for another status, as Tyk words it). https
 * is verified against the system roots unless <insecure>. */
int tp_http_get(const char *url, int insecure, size_t max, int timeout_ms, tp_buf_t *out, char *err,
                size_t errlen);

#endif
