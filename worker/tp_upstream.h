/*
 * worker/tp_upstream.h: per-host pools of upstream connections, and the
 * upstream half of a request (tp_proxy.c), the last stage of the chain.
 *
 * Used by: worker processes. A pool is per host:port and generation
 * independent; an upstream connection serves one request at a time.
 */
#ifndef TP_UPSTREAM_H
#define TP_UPSTREAM_H

#include <netinet/in.h>
#include <sys/socket.h>

#include <llhttp.h>
#include <uv.h>

#include "tp_io.h"
#include "tp_req.h"

#define TP_UP_MAX_HEADERS 128

enum {
    TP_UP_CONNECTING,
    TP_UP_ACTIVE,
    TP_UP_IDLE,
};

struct tp_upconn_s {
    tp_io_t io; /* plain or TLS */
    uv_timer_t timer;
    uv_connect_t creq;
    llhttp_t parser;
    tp_worker_t *w;
    tp_pool_t *pool;
    tp_req_t *req;
    tp_list_t link; /* pool->idle */
    char *rbuf;     /* a block while active */
    size_t rlen;    /* bytes in rbuf */
    size_t rparsed; /* of which llhttp has seen */
    uint32_t reason_off;
    uint32_t reason_len;
    uint32_t nhdrs;
    uint32_t uses;
    uint64_t deadline;
    uint64_t timer_due;
    uint8_t state;
    uint8_t handles_open;
    uint8_t last_cb;
    unsigned writing : 1;
    unsigned reading : 1;
    unsigned closing : 1;
    unsigned head_done : 1;
    unsigned msg_done : 1;
    unsigned got_bytes : 1;
    unsigned interim : 1; /* parsing a 1xx response, which is dropped */
    unsigned msg_cb : 1;  /* llhttp completed the message */
    unsigned extra : 1;   /* bytes followed the response: not reusable */
    unsigned eof : 1;     /* the upstream closed */
    char *dechunk_w;      /* HTTP/1.0 client: where de-chunked body bytes go */
    tp_hdr_t hdrs[TP_UP_MAX_HEADERS];
};

struct tp_pool_s {
    char *host;
    char *name; /* host:port, for logs */
    uint16_t port;
    tp_tls_ctx_t *tls; /* https: the session settings (NULL: plain, or unusable) */
    int https;
    struct sockaddr_storage addr;
    int have_addr;
    int literal; /* host is an IP address: never resolved */
    uint64_t addr_expires;
    int resolving;
    uv_getaddrinfo_t gai;
    tp_list_t waiters;
    tp_list_t idle;
    uint32_t nidle;
};

/* tp_proxy.c: the upstream half of a request */
/* Builds the upstream request head and starts proxying. The request's head
 * spans are only valid during this call. Returns 0, or -1 when it answered
 * itself (every target_list host down by the uptime tests: 503). */
int tp_proxy_start(tp_req_t *req, const tp_reqpath_t *rp);
void tp_proxy_connected(tp_req_t *req, tp_upconn_t *up);
/* <ms>, or less when the request's hard timeout ends sooner. */
uint64_t tp_proxy_timeout_ms(const tp_req_t *req, uint64_t ms);
void tp_proxy_failed(tp_req_t *req, int err);
void tp_proxy_body_ready(tp_req_t *req);
void tp_proxy_client_written(tp_req_t *req);
void tp_proxy_abort(tp_req_t *req);
void tp_proxy_init_settings(llhttp_settings_t *s);
/* Upstream events for the request <up> serves. */
void tp_proxy_up_read(tp_upconn_t *up, size_t nread);
void tp_proxy_up_eof(tp_upconn_t *up, int err);
void tp_proxy_up_written(tp_upconn_t *up, int status);
void tp_proxy_up_timeout(tp_upconn_t *up);

/* tp_upstream.c: per-host pools of upstream connections */
/* Maps the targets of a new generation to pools (made as needed). */
void tp_upstream_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* The pool of plain-HTTP host <t> (url_rewrites to another host): made
 * on first use, kept for the worker's life like every pool. */
tp_pool_t *tp_upstream_pool(tp_worker_t *w, const tp_target_t *t);
/* Finds or opens a connection for <req>; calls tp_proxy_connected or
 * tp_proxy_failed (possibly before returning). */
void tp_upstream_acquire(tp_req_t *req);
/* Returns <up> to its pool if <reusable>, else closes it. */
void tp_upstream_release(tp_upconn_t *up, int reusable);
void tp_upstream_set_deadline(tp_upconn_t *up, uint64_t ms);
/* Stops / restarts reading the upstream (back-pressure from the client). */
void tp_upstream_pause(tp_upconn_t *up);
void tp_upstream_resume(tp_upconn_t *up);
void tp_upstream_close(tp_upconn_t *up);
void tp_upstream_cancel_wait(tp_req_t *req);
void tp_upstream_shutdown(tp_worker_t *w);

#endif
