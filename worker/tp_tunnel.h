/*
 * worker/tp_tunnel.h: upgraded connections (websockets and any other
 * protocol a client asks for with "Connection: Upgrade", as Tyk): once the
 * upstream answers 101, bytes are relayed both ways unparsed.
 *
 * Used by: tp_proxy.c, which detects the upgrade, writes the upstream
 * request, and hands over at the 101; the request stays the client
 * connection's current one until the session ends, then it is logged
 * (status 101, latency covering the session) and both connections close.
 */
#ifndef TP_TUNNEL_H
#define TP_TUNNEL_H

#include <stddef.h>

typedef struct tp_req_s tp_req_t;
typedef struct tp_upconn_s tp_upconn_t;
typedef struct tp_tunnel_s tp_tunnel_t;

/* The upstream answered 101: its head is parsed in up->rbuf, and <n>
 * bytes at <rest> (there too) followed it. */
void tp_tunnel_start(tp_req_t *req, tp_upconn_t *up, const char *rest, size_t n);
/* No byte either way for turnpike.websocket_idle_timeout: the session ends. */
void tp_tunnel_idle(tp_req_t *req);
/* The client connection is closing from outside (shutdown): forget the
 * session; the caller closes the upstream. */
void tp_tunnel_abort(tp_req_t *req);

#endif
