/*
 * worker/tp_fetch.c: an HTTP(S) request on the worker's loop (tp_fetch.h),
 * on a tp_io_t so TLS is the same code the upstreams use; the response is
 * parsed by llhttp (Content-Length, chunked or until close).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_fetch.h"
#include "tp_io.h"
#include "tp_log.h"
#include "tp_url.h"
#include "tp_worker.h"

#define BODY_MAX (1024 * 1024)

struct tp_fetch_s {
    tp_worker_t *w;
    tp_fetch_cb cb;
    void *arg; /* NULL: dropped */
    tp_url_t u;
    int insecure, done, open; /* open: handles still to close */
    tp_io_t io;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    tp_tls_ctx_t *tls;
    tp_buf_t req, body, head;
    int last_value; /* the header piece llhttp gave last was a value */
    int head_req;   /* a HEAD: the response has no body, whatever its length */
    char rbuf[16384];
    llhttp_t parser;
    llhttp_settings_t settings;
    int complete;
};

/* One of the fetch's holders (the timer, the socket, the resolver) is done
 * with it; the last frees it. */
static void unref(tp_fetch_t *f)
{
    if (--f->open > 0)
        return;
    if (f->tls != NULL)
        tp_tls_ctx_unref(f->tls);
    tp_url_free(&f->u);
    tp_buf_free(&f->req);
    tp_buf_free(&f->body);
    tp_buf_free(&f->head);
    free(f);
}

static void timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void tcp_closed(uv_handle_t *h)
{
    unref(((tp_io_t *)h->data)->data);
}

/* The answer (once): the callback, then the handles go. */
static void finish(tp_fetch_t *f, int status, const char *err)
{
    if (f->done)
        return;
    f->done = 1;
    if (f->arg != NULL)
        f->cb(f->arg, status, f->body.data ? f->body.data : "", f->body.len, err);
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, timer_closed);
    tp_io_close(&f->io, tcp_closed);
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    tp_fetch_t *f = p->data;
    if (f->body.len + n > BODY_MAX)
        return -1;
    tp_buf_append(&f->body, at, n);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    tp_fetch_t *f = p->data;
    if (f->last_value)
        tp_buf_puts(&f->head, "\r\n");
    f->last_value = 0;
    tp_buf_append(&f->head, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    tp_fetch_t *f = p->data;
    if (!f->last_value)
        tp_buf_puts(&f->head, ": ");
    f->last_value = 1;
    tp_buf_append(&f->head, at, n);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    tp_fetch_t *f = p->data;
    if (f->head.len > 0)
        tp_buf_puts(&f->head, "\r\n");
    tp_buf_cstr(&f->head);      /* NUL-terminated for tp_fetch_response_headers */
    return f->head_req ? 1 : 0; /* 1: llhttp expects no body */
}

const char *tp_fetch_response_headers(const tp_fetch_t *f)
{
    return f->head.data != NULL ? f->head.data : "";
}

static int on_complete(llhttp_t *p)
{
    ((tp_fetch_t *)p->data)->complete = 1;
    return HPE_PAUSED;
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, 0, "timed out");
}

static void alloc_cb(tp_io_t *io, uv_buf_t *buf)
{
    tp_fetch_t *f = io->data;
    *buf = uv_buf_init(f->rbuf, sizeof(f->rbuf));
}

static void read_cb(tp_io_t *io, ssize_t n, const uv_buf_t *buf)
{
    tp_fetch_t *f = io->data;
    if (f->done)
        return;
    if (n > 0) {
        llhttp_errno_t e = llhttp_execute(&f->parser, buf->base, (size_t)n);
        /* an answer to a GET with "Connection: close": nothing follows it */
        if (f->complete) {
            finish(f, f->parser.status_code, NULL);
        } else if (e != HPE_OK) {
            finish(f, 0,
                   f->body.len + (size_t)n > BODY_MAX ? "body over 1 MiB" : "not an HTTP response");
        }
    } else if (n < 0) {
        if (n == UV_EOF && llhttp_finish(&f->parser) == HPE_OK && f->parser.status_code > 0)
            finish(f, f->parser.status_code, NULL);
        else
            finish(f, 0, n == UV_EOF ? "closed before a whole response" : uv_strerror((int)n));
    }
}

static void send_request(tp_fetch_t *f)
{
    tp_io_read_start(&f->io, alloc_cb, read_cb);
    uv_buf_t b = uv_buf_init(f->req.data, (unsigned)f->req.len);
    int r = tp_io_write(&f->io, &b, 1, NULL);
    if (r < 0)
        finish(f, 0, uv_strerror(r));
}

static void on_tls_ready(tp_io_t *io, int status, const char *why)
{
    tp_fetch_t *f = io->data;
    if (status < 0)
        finish(f, 0, why != NULL ? why : "TLS handshake failed");
    else
        send_request(f);
}

static void on_connect(uv_connect_t *c, int status)
{
    tp_fetch_t *f = c->data;
    if (f->done)
        return;
    if (status < 0) {
        finish(f, 0, uv_strerror(status));
        return;
    }
    if (f->u.tls)
        tp_io_connect_tls(&f->io, f->tls, f->u.host, on_tls_ready);
    else
        send_request(f);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    tp_fetch_t *f = g->data;
    if (!f->done && (status < 0 || res == NULL)) {
        finish(f, 0, status < 0 ? uv_strerror(status) : "no address");
    } else if (!f->done) {
        f->creq.data = f;
        int r = uv_tcp_connect(&f->creq, &f->io.tcp, res->ai_addr, on_connect);
        if (r < 0)
            finish(f, 0, uv_strerror(r));
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    unref(f); /* the resolver's hold */
}

tp_fetch_t *tp_fetch_get(tp_worker_t *w, const char *url, int insecure, int64_t timeout_ms,
                         tp_fetch_cb cb, void *arg)
{
    return tp_fetch_request(w, "GET", url, "Accept: application/json\r\n", NULL, 0, insecure,
                            timeout_ms, cb, arg);
}

tp_fetch_t *tp_fetch_request(tp_worker_t *w, const char *method, const char *url,
                             const char *headers, const char *body, size_t len, int insecure,
                             int64_t timeout_ms, tp_fetch_cb cb, void *arg)
{
    tp_fetch_t *f = tp_calloc(1, sizeof(*f));
    char err[256];
    f->w = w;
    f->cb = cb;
    f->arg = arg;
    f->insecure = insecure;
    if (tp_url_parse(url, &f->u, err, sizeof(err)) < 0) {
        free(f);
        return NULL;
    }
    if (f->u.tls) {
        f->tls = tp_tls_ctx_new(TP_TLS_CLIENT, err, sizeof(err));
        if (f->tls == NULL) {
            tp_url_free(&f->u);
            free(f);
            return NULL;
        }
        if (insecure)
            tp_tls_ctx_verify(f->tls, TP_TLS_VERIFY_NONE);
    }
    tp_buf_printf(&f->req, "%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\n", method, f->u.path[0] ? "" : "/",
                  f->u.path, f->u.query ? "?" : "", f->u.query ? f->u.query : "", f->u.authority);
    f->head_req = strcmp(method, "HEAD") == 0;
    if (headers != NULL)
        tp_buf_puts(&f->req, headers);
    if (headers == NULL || strcasestr(headers, "\nUser-Agent:") == NULL)
        tp_buf_puts(&f->req, "User-Agent: Turnpike/" TP_VERSION "\r\n");
    if (body != NULL)
        tp_buf_put_header_i64(&f->req, "Content-Length", (int64_t)len);
    tp_buf_puts(&f->req, "Connection: close\r\n\r\n");
    if (body != NULL)
        tp_buf_append(&f->req, body, len);
    llhttp_settings_init(&f->settings);
    f->settings.on_body = on_body;
    f->settings.on_header_field = on_header_field;
    f->settings.on_header_value = on_header_value;
    f->settings.on_headers_complete = on_headers_complete;
    f->settings.on_message_complete = on_complete;
    llhttp_init(&f->parser, HTTP_RESPONSE, &f->settings);
    f->parser.data = f;
    tp_io_setup(&f->io, &w->loop, f);
    uv_timer_init(&w->loop, &f->timer);
    f->timer.data = f;
    f->open = 3; /* the timer, the socket, the resolver */
    uv_timer_start(&f->timer, on_timeout, (uint64_t)timeout_ms, 0);
    char port[8];
    snprintf(port, sizeof(port), "%u", f->u.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    f->gai.data = f;
    int r = uv_getaddrinfo(&w->loop, &f->gai, on_resolved, f->u.host, port, &hints);
    if (r < 0) {
        f->arg = NULL; /* the caller hears NULL, not a callback */
        finish(f, 0, uv_strerror(r));
        unref(f);
        return NULL;
    }
    return f;
}

void tp_fetch_drop(tp_fetch_t *f)
{
    if (f != NULL)
        f->arg = NULL;
}
