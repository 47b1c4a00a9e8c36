/*
 * worker/tp_respond.c: responses the gateway makes itself: Tyk's error
 * template, plain bodies, and bare protocol errors.
 */
#include <stdio.h>
#include <string.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_time.h"
#include "tp_worker.h"

/* Will the connection close after the response to <req>? Decided before
 * the head is written, so "Connection: close" and the behaviour agree. */
int tp_req_will_close(const tp_req_t *req)
{
    const tp_conn_t *c = req->conn;
    const tp_worker_t *w = c->w;
    return c->want_close || w->draining || !req->client_keepalive || w->conf->close_connections ||
           c->nreq >= (uint32_t)w->conf->tp.keepalive_requests || !req->body_done;
}

void tp_respond(tp_req_t *req, int status, const char *content_type, const char *body,
                size_t body_len, const char *extra_headers)
{
    tp_conn_t *c = req->conn;
    tp_buf_t *out = &req->out;
    int close = tp_req_will_close(req);
    out->len = 0;
    tp_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, tp_http_reason(status),
                  tp_time_http_date());
    if (content_type != NULL)
        tp_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (extra_headers != NULL)
        tp_buf_puts(out, extra_headers);
    tp_buf_printf(out, "Content-Length: %zu\r\n", body_len);
    if (close)
        tp_buf_puts(out, "Connection: close\r\n");
    else if (req->http_minor == 0)
        tp_buf_puts(out, "Connection: keep-alive\r\n");
    tp_buf_puts(out, "\r\n");
    if (req->method != HTTP_HEAD)
        tp_buf_append(out, body, body_len);

    req->status = status;
    req->resp_started = 1;
    req->resp_done = 1;
    if (close)
        c->want_close = 1;
    uv_buf_t buf = uv_buf_init(out->data, (unsigned)out->len);
    if (tp_conn_write(c, &buf, 1) == 1)
        tp_conn_response_done(c);
}

void tp_respond_error(tp_req_t *req, int status, const char *message)
{
    /* Tyk's templates/error.json, byte for byte (no trailing newline). */
    tp_buf_t body = {0};
    tp_buf_puts(&body, "{\n    \"error\": \"");
    tp_buf_json_escape(&body, message, strlen(message));
    tp_buf_puts(&body, "\"\n}");
    const tp_conf_t *conf = req->conn->w->conf;
    tp_respond(req, status, "application/json", body.data, body.len,
               conf->hide_generator_header ? NULL : "X-Generator: tyk.io\r\n");
    tp_buf_free(&body);
}

void tp_respond_bad_request(tp_conn_t *c, int status)
{
    /* No request survives a parse error: the answer is static, the
     * connection closes, and input is discarded meanwhile (lingering). */
    static char bufs[8][256];
    static const int codes[8] = {400, 408, 413, 414, 431, 501, 505, 500};
    int i = 0;
    while (i < 7 && codes[i] != status)
        i++;
    if (codes[i] != status)
        status = 500;
    const char *reason = tp_http_reason(status);
    int n = snprintf(bufs[i], sizeof(bufs[i]),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%d %s",
                     status, reason, strlen(reason) + 4, status, reason);
    if (c->req != NULL) {
        tp_proxy_abort(c->req);
        tp_req_put(c->w, c->req);
        c->req = NULL;
    }
    c->want_close = 1;
    c->linger = 1;
    c->state = TP_C_DONE;
    if (c->writing) {
        tp_conn_close(c);
        return;
    }
    uv_buf_t buf = uv_buf_init(bufs[i], (unsigned)n);
    if (tp_conn_write(c, &buf, 1) == 1)
        tp_conn_response_done(c);
}
