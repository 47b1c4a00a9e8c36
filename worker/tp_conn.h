/*
 * worker/tp_conn.h: client connections: reading and parsing requests
 * (llhttp), writing responses, keep-alive, pipelining, deadlines.
 *
 * Used by: worker processes. The connection layer knows requests, not
 * stages: it tells the layers above through the worker's tp_conn_events_t
 * (set by tp_worker.c), and they answer through tp_conn_write and
 * tp_respond.c.
 */
#ifndef TP_CONN_H
#define TP_CONN_H

#include <llhttp.h>
#include <uv.h>

#include "tp_io.h"
#include "tp_req.h"

enum {
    TP_C_IDLE,   /* between requests, nothing buffered */
    TP_C_HEAD,   /* reading a request head */
    TP_C_BODY,   /* head dispatched, reading the request body */
    TP_C_DONE,   /* request fully read, response under way */
    TP_C_LINGER, /* final response sent, discarding input before close */
};

struct tp_conn_s {
    tp_io_t io; /* plain or TLS */
    uv_timer_t timer;
    uv_shutdown_t sreq;
    llhttp_t parser;
    tp_worker_t *w;
    tp_req_t *req;
    tp_list_t link;
    tp_buf_t in;        /* input not yet parsed (partial head, pipelined requests) */
    uint64_t deadline;  /* loop time in ms; 0 for none */
    uint64_t timer_due; /* when the timer is armed to fire */
    uint32_t nreq;      /* requests started on this connection */
    uint8_t state;
    uint8_t handles_open; /* embedded handles not yet closed */
    unsigned reading : 1;
    unsigned writing : 1;
    unsigned closing : 1;
    unsigned control : 1;    /* accepted on control_api_port */
    unsigned want_close : 1; /* close once the current response is out */
    unsigned linger : 1;     /* and discard input for a while before closing */
    char ip[46];
};

/* What the connection layer (tp_conn.c, tp_respond.c) tells the layers
 * above it, which it does not know by name: set by tp_worker.c. */
typedef struct tp_conn_events_s {
    tp_req_t *(*req_new)(tp_worker_t *w); /* a request head starts */
    void (*head)(tp_req_t *req);          /* its head is complete: handle it */
    void (*body)(tp_req_t *req);          /* body bytes are in req->body */
    void (*rest_body)(tp_req_t *req);     /* a body for the gateway is in req->rbody */
    void (*written)(tp_req_t *req);       /* a response write is out, more is to come */
    void (*stop)(tp_req_t *req);          /* stop the upstream side of the request */
    void (*drop)(tp_req_t *req);          /* the request ends unanswered (stopped, freed) */
    void (*answered)(tp_req_t *req);      /* the request is answered (logged, freed) */
    void (*conn_gone)(tp_worker_t *w);    /* a connection is closed and freed */
} tp_conn_events_t;

/* tp_conn.c: client connections */
/* <tls>: the listener's TLS context, or NULL for plain HTTP. */
void tp_conn_accept(tp_worker_t *w, uv_stream_t *server, int control, tp_tls_ctx_t *tls);
/* Serves a socket accepted outside libuv (the final accept sweep of a drain). */
void tp_conn_adopt(tp_worker_t *w, int fd, tp_tls_ctx_t *tls);
void tp_conn_init_settings(llhttp_settings_t *s);
/* Writes <n> buffers to the client; tp_conn_written() follows when they are
 * out (possibly before this returns). The buffers must stay valid until
 * then. Returns 0 or a negative libuv error (the connection is closed). */
int tp_conn_write(tp_conn_t *c, uv_buf_t *bufs, unsigned n);
/* The response for the current request is complete (or failed): keep the
 * connection alive for the next request or close it. */
void tp_conn_response_done(tp_conn_t *c);
void tp_conn_close(tp_conn_t *c);
/* Resumes reading the request body after the upstream drained it. */
void tp_conn_body_drained(tp_conn_t *c);
void tp_conn_drain(tp_conn_t *c);
void tp_conn_update_deadline(tp_conn_t *c);

#endif
