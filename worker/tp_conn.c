/*
 * worker/tp_conn.c: client connections: reading and parsing requests with
 * llhttp (strict), limits and deadlines, writing responses, keep-alive and
 * lingering close.
 *
 * Input lives in one of three places: the worker's shared read buffer
 * (the common case, nothing kept per connection), the request's body block
 * (while a body streams to the upstream), or conn->in (anything that must
 * wait: a partial head, pipelined requests). One request is handled at a
 * time; llhttp is paused after each head and after each message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_log.h"
#include "tp_worker.h"

/* Kept in conn->in beyond this, pipelined input stops the reads. */
#define TP_PIPELINE_MAX (64 * 1024)
/* Lingering close: discard input at most this long after the last response. */
#define TP_LINGER_MS 5000

enum { SRC_SHARED, SRC_BODY, SRC_TMP };

static void conn_process_in(tp_conn_t *c);
static void conn_update_reading(tp_conn_t *c);
static int head_too_big(tp_conn_t *c, const char *end);
static void conn_linger(tp_conn_t *c);

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Arms the connection timer lazily: a later deadline only updates the
 * field, and the callback re-arms when it fires early. */
static void conn_set_deadline(tp_conn_t *c, uint64_t deadline)
{
    c->deadline = deadline;
    if (deadline == 0 || (c->timer_due != 0 && c->timer_due <= deadline))
        return;
    uint64_t now = uv_now(&c->w->loop);
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
    c->timer_due = deadline;
}

void tp_conn_update_deadline(tp_conn_t *c)
{
    tp_worker_t *w = c->w;
    uint64_t now = uv_now(&w->loop);
    switch (c->state) {
    case TP_C_BODY:
        conn_set_deadline(c, c->reading ? now + w->body_timeout_ms
                                        : (c->writing ? now + w->send_timeout_ms : 0));
        break;
    case TP_C_DONE:
        conn_set_deadline(c, c->writing ? now + w->send_timeout_ms : 0);
        break;
    default:
        break; /* IDLE, HEAD and LINGER deadlines are set on entry */
    }
}

static void on_timer(uv_timer_t *t)
{
    tp_conn_t *c = t->data;
    uint64_t now = uv_now(&c->w->loop);
    c->timer_due = 0;
    if (c->closing || c->deadline == 0)
        return;
    if (now < c->deadline) {
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        c->timer_due = c->deadline;
        return;
    }
    switch (c->state) {
    case TP_C_HEAD:
        tp_log_debug("client %s: request head not received in time", c->ip);
        tp_respond_bad_request(c, 408);
        break;
    case TP_C_BODY:
        if (c->reading && c->req != NULL && !c->req->resp_started) {
            tp_log_info("client %s: request body stalled, giving up", c->ip);
            c->w->ev.stop(c->req);
            tp_respond_bad_request(c, 408);
            break;
        }
        tp_conn_close(c);
        break;
    case TP_C_DONE:
        tp_log_info("client %s: not reading the response, closing", c->ip);
        tp_conn_close(c);
        break;
    default:
        tp_conn_close(c);
        break;
    }
}

/* ---- closing ------------------------------------------------------------- */

static void conn_handle_closed(tp_conn_t *c)
{
    if (--c->handles_open > 0)
        return;
    tp_worker_t *w = c->w;
    tp_buf_free(&c->in);
    free(c);
    w->ev.conn_gone(w);
}

static void on_timer_closed(uv_handle_t *h)
{
    conn_handle_closed(h->data);
}

static void on_tcp_closed(uv_handle_t *h)
{
    conn_handle_closed(((tp_io_t *)h->data)->data);
}

void tp_conn_close(tp_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->req != NULL) {
        c->w->ev.drop(c->req);
        c->req = NULL;
    }
    tp_list_remove(&c->link);
    c->w->nconns--;
    atomic_store_explicit(&c->w->shm->workers[c->w->id].conns, c->w->nconns, memory_order_relaxed);
    tp_io_close(&c->io, on_tcp_closed);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- writing ------------------------------------------------------------- */

static void on_write(tp_io_t *io, int status)
{
    tp_conn_t *c = io->data;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        tp_log_debug("client %s: write failed: %s", c->ip, uv_strerror(status));
        tp_conn_close(c);
        return;
    }
    tp_req_t *req = c->req;
    if (req != NULL && !req->resp_done)
        c->w->ev.written(req);
    else
        tp_conn_response_done(c);
}

int tp_conn_write(tp_conn_t *c, uv_buf_t *bufs, unsigned n)
{
    TP_BUG_ON(c->writing);
    tp_req_t *req = c->req;
    if (req != NULL && req->tap_max != 0 && !req->sending_continue)
        for (unsigned i = 0; i < n; i++)
            tp_req_tap(req, &req->tap_out, bufs[i].base, bufs[i].len);
    int r = tp_io_write(&c->io, bufs, n, on_write);
    if (r < 0) {
        tp_log_debug("client %s: write failed: %s", c->ip, uv_strerror(r));
        tp_conn_close(c);
        return r;
    }
    if (r == 1)
        return 1;
    c->writing = 1;
    tp_conn_update_deadline(c);
    return 0;
}

/* ---- request lifecycle -------------------------------------------------- */

static void conn_start_request(tp_conn_t *c, const char *head)
{
    tp_worker_t *w = c->w;
    tp_req_t *req = w->ev.req_new(w);
    req->conn = c;
    req->head_base = head;
    req->start_ms = uv_now(&w->loop);
    c->req = req;
    c->state = TP_C_HEAD;
    c->nreq++;
    if (c->nreq > 1)
        conn_set_deadline(c, uv_now(&w->loop) + w->header_timeout_ms);
}

void tp_conn_response_done(tp_conn_t *c)
{
    tp_worker_t *w = c->w;
    tp_req_t *req = c->req;
    int linger = c->linger;
    if (req != NULL) {
        if (!req->body_done) {
            c->want_close = 1;
            linger = 1;
        }
        w->requests++;
        atomic_store_explicit(&w->shm->workers[w->id].requests, w->requests, memory_order_relaxed);
        w->ev.answered(req);
        c->req = NULL;
    }
    if (c->want_close || w->draining) {
        if (linger || c->in.len > 0)
            conn_linger(c);
        else
            tp_conn_close(c);
        return;
    }
    c->state = TP_C_IDLE;
    conn_set_deadline(c, uv_now(&w->loop) + w->keepalive_timeout_ms);
    if (c->in.len > 0)
        conn_process_in(c);
    else
        conn_update_reading(c);
}

/* Half-closes and discards input for a while, so the client reads our
 * response before it sees a reset for the data it was still sending. */
static void on_shutdown(uv_shutdown_t *sr, int status)
{
    tp_conn_t *c = sr->data;
    (void)status;
    if (!c->closing && status < 0)
        tp_conn_close(c);
}

static void conn_linger(tp_conn_t *c)
{
    if (c->closing)
        return;
    if (c->req != NULL) {
        c->w->ev.drop(c->req);
        c->req = NULL;
    }
    if (c->state == TP_C_LINGER)
        return;
    c->state = TP_C_LINGER;
    c->in.len = 0;
    c->sreq.data = c;
    if (tp_io_shutdown(&c->io, &c->sreq, on_shutdown) < 0) {
        tp_conn_close(c);
        return;
    }
    conn_set_deadline(c, uv_now(&c->w->loop) + TP_LINGER_MS);
    conn_update_reading(c);
}

void tp_conn_drain(tp_conn_t *c)
{
    if (c->closing)
        return;
    /* A connection that has not sent its first request yet (it may have
     * been taken from the listen queue in the final sweep) gets served
     * once; closing it now would reset a request in flight. */
    if (c->state == TP_C_IDLE && c->nreq > 0 && c->in.len == 0 && !c->writing)
        tp_conn_close(c);
    else
        c->want_close = 1;
}

/* ---- reading ------------------------------------------------------------- */

static int conn_wants_input(const tp_conn_t *c)
{
    switch (c->state) {
    case TP_C_IDLE:
    case TP_C_HEAD:
    case TP_C_LINGER:
        return 1;
    case TP_C_BODY:
        if (c->req != NULL && c->req->buffering)
            return 1;
        return c->req != NULL && c->req->body != NULL && c->req->body_len < TP_BLOCK_SIZE &&
               c->in.len == 0;
    case TP_C_DONE:
        /* keep reading to notice a client that goes away */
        return c->in.len < TP_PIPELINE_MAX;
    }
    return 0;
}

static void on_alloc(tp_io_t *io, uv_buf_t *buf);
static void on_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf);

static void conn_update_reading(tp_conn_t *c)
{
    if (c->closing)
        return;
    int want = conn_wants_input(c);
    if (want && !c->reading) {
        if (tp_io_read_start(&c->io, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        tp_io_read_stop(&c->io);
        c->reading = 0;
    }
    tp_conn_update_deadline(c);
}

void tp_conn_body_drained(tp_conn_t *c)
{
    if (c->closing || c->state != TP_C_BODY)
        return;
    if (c->in.len > 0)
        conn_process_in(c);
    else
        conn_update_reading(c);
}

static void on_alloc(tp_io_t *io, uv_buf_t *buf)
{
    tp_conn_t *c = io->data;
    tp_req_t *req = c->req;
    if (c->state == TP_C_BODY && c->in.len == 0 && req != NULL && req->body != NULL &&
        req->body_len < TP_BLOCK_SIZE) {
        buf->base = req->body + req->body_len;
        buf->len = TP_BLOCK_SIZE - req->body_len;
        return;
    }
    if (c->in.len > 0) {
        buf->base = tp_buf_reserve(&c->in, 16384);
        buf->len = c->in.cap - c->in.len;
        return;
    }
    buf->base = c->w->rbuf;
    buf->len = TP_BLOCK_SIZE;
}

static void conn_save(tp_conn_t *c, const char *p, size_t n)
{
    tp_buf_append(&c->in, p, n);
}

/* A request parse failed: map the llhttp error (or our callback's reason)
 * to a status, answer, and close. */
static void conn_reject(tp_conn_t *c, llhttp_errno_t err)
{
    tp_req_t *req = c->req;
    int status = 400;
    if (req != NULL && req->reject != 0)
        status = req->reject;
    else if (err == HPE_INVALID_TRANSFER_ENCODING)
        status = 501;
    else if (err == HPE_INVALID_VERSION)
        status = 505;
    tp_log_debug("client %s: rejecting request (%d): %s: %s", c->ip, status, llhttp_errno_name(err),
                 llhttp_get_error_reason(&c->parser));
    if (req != NULL && req->resp_started) {
        tp_conn_close(c);
        return;
    }
    tp_respond_bad_request(c, status);
}

/* Runs request-body bytes through the parser: <used> of the <n> at <data>
 * were consumed. Returns 1 when the request is complete (the connection
 * is then TP_C_DONE), 0 when more body is to come, -1 when the request was
 * rejected (answered or closed). */
static int body_execute(tp_conn_t *c, const char *data, size_t n, size_t *used)
{
    llhttp_errno_t err = llhttp_execute(&c->parser, data, n);
    *used = err == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&c->parser) - data);
    if (err != HPE_OK && err != HPE_PAUSED) {
        conn_reject(c, err);
        return -1;
    }
    if (err != HPE_PAUSED)
        return 0;
    llhttp_resume(&c->parser);
    c->req->body_done = 1;
    c->state = TP_C_DONE;
    return 1;
}

/* Feeds <len> bytes at <data> to the parser according to the connection's
 * state. Bytes that must wait (a partial head, a pipelined request, body
 * bytes without room) are copied into conn->in. */
static void conn_consume(tp_conn_t *c, const char *data, size_t len, int src)
{
    tp_worker_t *w = c->w;
    while (len > 0 && !c->closing) {
        tp_req_t *req = c->req;
        switch (c->state) {
        case TP_C_IDLE:
            conn_start_request(c, data);
            continue;

        case TP_C_HEAD: {
            llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
            if (err == HPE_OK) {
                /* head incomplete: keep it, contiguous, from its first byte */
                size_t have = (size_t)(data + len - req->head_base);
                if (head_too_big(c, data + len)) {
                    conn_reject(c, HPE_USER);
                    return;
                }
                tp_buf_t keep = {0};
                tp_buf_append(&keep, req->head_base, have);
                tp_buf_free(&c->in);
                c->in = keep;
                req->head_base = c->in.data;
                conn_update_reading(c);
                return;
            }
            if (err != HPE_PAUSED) {
                conn_reject(c, err);
                return;
            }
            const char *pos = llhttp_get_error_pos(&c->parser);
            llhttp_resume(&c->parser);
            len -= (size_t)(pos - data);
            data = pos;
            if (req->has_body) {
                c->state = TP_C_BODY;
            } else {
                /* no body: let llhttp complete the message now (it needs no
                 * more input) so that keep-alive is known */
                llhttp_errno_t end = llhttp_execute(&c->parser, data, 0);
                if (end != HPE_OK && end != HPE_PAUSED) {
                    /* e.g. "Transfer-Encoding: gzip": llhttp says so here */
                    conn_reject(c, end);
                    return;
                }
                if (end == HPE_PAUSED)
                    llhttp_resume(&c->parser);
                req->body_done = 1;
                c->state = TP_C_DONE;
            }
            w->ev.head(req);
            if (c->closing || c->state == TP_C_LINGER)
                return;
            if (c->state == TP_C_BODY && req->body == NULL && !req->buffering &&
                req->resp_started) {
                /* answered without reading the body: it is discarded */
                c->state = TP_C_DONE;
            }
            continue;
        }

        case TP_C_BODY: {
            if (req->buffering) {
                /* a body for the gateway itself: on_body keeps it */
                size_t used;
                int done = body_execute(c, data, len, &used);
                if (done < 0)
                    return;
                data += used;
                len -= used;
                if (done) {
                    w->ev.rest_body(req);
                    if (c->closing || c->state == TP_C_LINGER)
                        return;
                } else {
                    conn_set_deadline(c, uv_now(&w->loop) + w->body_timeout_ms);
                }
                continue;
            }
            if (req->body == NULL) {
                /* the session is being read: the body waits for the proxy */
                conn_save(c, data, len);
                conn_update_reading(c);
                return;
            }
            size_t room = TP_BLOCK_SIZE - req->body_len;
            if (room == 0) {
                conn_save(c, data, len);
                conn_update_reading(c);
                return;
            }
            size_t used;
            int done = body_execute(c, data, len < room ? len : room, &used);
            if (done < 0)
                return;
            if (src != SRC_BODY || data != req->body + req->body_len)
                memcpy(req->body + req->body_len, data, used);
            req->body_len += used;
            data += used;
            len -= used;
            w->ev.body(req);
            if (c->closing)
                return;
            if (c->state == TP_C_BODY)
                conn_set_deadline(c, uv_now(&w->loop) + w->body_timeout_ms);
            continue;
        }

        case TP_C_DONE:
            conn_save(c, data, len);
            conn_update_reading(c);
            return;

        case TP_C_LINGER:
            return;
        }
    }
    if (!c->closing)
        conn_update_reading(c);
}

/* Processes what waits in conn->in (after a response, or when body room
 * frees up). The buffer is taken over first, so that whatever is still
 * left lands in a fresh conn->in. */
static void conn_process_in(tp_conn_t *c)
{
    TP_BUG_ON(c->state == TP_C_HEAD);
    tp_buf_t tmp = c->in;
    memset(&c->in, 0, sizeof(c->in));
    conn_consume(c, tmp.data, tmp.len, SRC_TMP);
    tp_buf_free(&tmp);
}

static void on_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf)
{
    tp_conn_t *c = io->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            tp_log_debug("client %s: read failed: %s", c->ip, uv_strerror((int)nread));
        tp_req_t *req = c->req;
        if (req != NULL && c->state == TP_C_DONE && req->resp_started && nread == UV_EOF) {
            /* half-closed after a complete request: finish the response */
            c->want_close = 1;
            tp_io_read_stop(io);
            c->reading = 0;
            return;
        }
        if (req != NULL && c->state != TP_C_LINGER)
            tp_log_debug("client %s closed the connection during a request (499)", c->ip);
        tp_conn_close(c);
        return;
    }
    if (c->state == TP_C_LINGER)
        return;
    if (buf->base == c->w->rbuf) {
        conn_consume(c, buf->base, (size_t)nread, SRC_SHARED);
    } else if (c->req != NULL && c->req->body != NULL &&
               buf->base == c->req->body + c->req->body_len) {
        conn_consume(c, buf->base, (size_t)nread, SRC_BODY);
    } else {
        /* appended to conn->in: take the buffer over, then parse the new
         * bytes (a partial head was parsed already) or everything */
        size_t old = c->in.len;
        c->in.len += (size_t)nread;
        tp_buf_t tmp = c->in;
        memset(&c->in, 0, sizeof(c->in));
        if (c->state == TP_C_HEAD && c->req != NULL) {
            c->req->head_base = tmp.data;
            conn_consume(c, tmp.data + old, tmp.len - old, SRC_TMP);
        } else {
            conn_consume(c, tmp.data, tmp.len, SRC_TMP);
        }
        tp_buf_free(&tmp);
    }
}

/* ---- llhttp callbacks (request) ----------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    tp_conn_t *c = p->data;
    tp_req_t *req = c->req;
    if (req->url_len == 0)
        req->url_off = (uint32_t)(at - req->head_base);
    req->url_len += (uint32_t)len;
    if (req->url_len > c->w->max_line) {
        req->reject = 414;
        return -1;
    }
    return 0;
}

/* Limits on what has arrived of the head up to <end>: the request line
 * (414) until the first header starts, then the header block (431). */
static int head_too_big(tp_conn_t *c, const char *end)
{
    tp_req_t *req = c->req;
    size_t have = (size_t)(end - req->head_base);
    if (req->nhdrs == 0) {
        /* method, target and version around max_line bytes of target */
        if (have > (size_t)c->w->max_line + 64) {
            req->reject = req->url_len > 0 ? 414 : 400;
            return 1;
        }
        return 0;
    }
    if (have - req->hdrs[0].name_off > c->w->max_head) {
        req->reject = 431;
        return 1;
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tp_conn_t *c = p->data;
    tp_req_t *req = c->req;
    if (req->last_cb != 1) {
        if (req->nhdrs >= c->w->max_hdrs) {
            req->reject = 431;
            return -1;
        }
        tp_hdr_t *h = &req->hdrs[req->nhdrs++];
        h->name_off = (uint32_t)(at - req->head_base);
        h->name_len = 0;
        h->val_off = h->name_off;
        h->val_len = 0;
        h->kind = -1;
        req->last_cb = 1;
    }
    req->hdrs[req->nhdrs - 1].name_len += (uint32_t)len;
    return head_too_big(c, at + len) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tp_conn_t *c = p->data;
    tp_req_t *req = c->req;
    tp_hdr_t *h = &req->hdrs[req->nhdrs - 1];
    uint32_t off = (uint32_t)(at - req->head_base);
    if (req->last_cb != 2) {
        h->val_off = off;
        h->val_len = (uint32_t)len;
    } else {
        /* llhttp 8 accepts obs-fold and hands the value over in pieces
         * with the fold in between; RFC 9112 5.2 says reject it. */
        if (off != req->last_val_end) {
            req->reject = 400;
            return -1;
        }
        h->val_len += (uint32_t)len;
    }
    req->last_val_end = off + (uint32_t)len;
    req->last_cb = 2;
    return head_too_big(c, at + len) ? -1 : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    tp_conn_t *c = p->data;
    tp_req_t *req = c->req;
    req->method = llhttp_get_method(p);
    req->http_major = llhttp_get_http_major(p);
    req->http_minor = llhttp_get_http_minor(p);
    req->chunked = (p->flags & F_CHUNKED) != 0;
    if (p->flags & F_CONTENT_LENGTH)
        req->content_length = p->content_length;
    req->has_body = req->chunked || req->content_length > 0;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    tp_conn_t *c = p->data;
    tp_req_t *req = c->req;
    req->body_seen += len;
    if (c->w->max_body > 0 && req->body_seen > c->w->max_body) {
        req->reject = 413;
        return -1;
    }
    if (req->buffering) {
        if (req->rbody.len + len > TP_REST_BODY_MAX) {
            req->reject = 413;
            return -1;
        }
        tp_buf_append(&req->rbody, at, len);
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    tp_conn_t *c = p->data;
    c->req->client_keepalive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
}

void tp_conn_init_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_url = on_url;
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* ---- accepting ----------------------------------------------------------- */

static tp_conn_t *conn_new(tp_worker_t *w)
{
    tp_conn_t *c = tp_calloc(1, sizeof(*c));
    c->w = w;
    tp_io_setup(&c->io, &w->loop, c);
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    tp_list_init(&c->link);
    tp_list_insert_tail(&w->conns, &c->link);
    w->nconns++;
    atomic_store_explicit(&w->shm->workers[w->id].conns, w->nconns, memory_order_relaxed);
    return c;
}

static void conn_start(tp_conn_t *c, tp_tls_ctx_t *tls)
{
    tp_worker_t *w = c->w;
    if (tls != NULL && tp_io_accept_tls(&c->io, tls) < 0) {
        tp_conn_close(c);
        return;
    }
    if (tls != NULL && w->any_mtls)
        tp_tls_request_client_cert(c->io.tls);
    uv_tcp_nodelay(&c->io.tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->io.tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
                /* Go reports a mapped IPv4 peer in dotted form */
                struct sockaddr_in s4 = {.sin_family = AF_INET};
                memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
                uv_ip4_name(&s4, c->ip, sizeof(c->ip));
            } else {
                uv_ip6_name(s6, c->ip, sizeof(c->ip));
            }
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof(c->ip));
        }
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &w->req_settings);
    c->parser.data = c;
    c->state = TP_C_IDLE;
    conn_set_deadline(c, uv_now(&w->loop) + w->header_timeout_ms);
    if (w->draining)
        c->want_close = 1;
    conn_update_reading(c);
}

void tp_conn_accept(tp_worker_t *w, uv_stream_t *server, int control, tp_tls_ctx_t *tls)
{
    tp_conn_t *c = conn_new(w);
    c->control = control != 0;
    if (uv_accept(server, (uv_stream_t *)&c->io.tcp) < 0) {
        tp_conn_close(c);
        return;
    }
    conn_start(c, tls);
}

void tp_conn_adopt(tp_worker_t *w, int fd, tp_tls_ctx_t *tls)
{
    tp_conn_t *c = conn_new(w);
    if (uv_tcp_open(&c->io.tcp, fd) < 0) {
        close(fd);
        tp_conn_close(c);
        return;
    }
    conn_start(c, tls);
}
