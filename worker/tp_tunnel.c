/*
 * worker/tp_tunnel.c: the byte relay of an upgraded connection.
 *
 * Side 0 is the client, side 1 the upstream. Each side is read into the
 * worker's shared buffer and written to the other at once; what the other
 * socket does not take is copied (tp_io_write_copy) and the reading side
 * stops until it is out, so a peer that never reads holds one write's
 * worth of memory and stalls only its own session. An idle session keeps
 * no buffer. The upstream connection's timer is the idle timeout.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_tunnel.h"
#include "tp_worker.h"

struct tp_tunnel_s {
    tp_req_t *req;
    uint64_t bytes[2];    /* relayed from side i */
    unsigned wpending[2]; /* a write towards side i is in flight */
    unsigned eof[2];      /* side i closed (or failed) */
    unsigned ending : 1;
    unsigned head_out : 1; /* the 101 head is written: its buffers can go */
};

static void client_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf);
static void up_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf);
static void client_written(tp_io_t *io, int status);
static void up_written(tp_io_t *io, int status);

static tp_io_t *io_of(tp_tunnel_t *t, int side)
{
    return side == 0 ? &t->req->conn->io : &t->req->up->io;
}

static void shared_alloc(tp_worker_t *w, uv_buf_t *buf)
{
    buf->base = w->rbuf;
    buf->len = TP_BLOCK_SIZE;
}

static void client_alloc(tp_io_t *io, uv_buf_t *buf)
{
    shared_alloc(((tp_conn_t *)io->data)->w, buf);
}

static void up_alloc(tp_io_t *io, uv_buf_t *buf)
{
    shared_alloc(((tp_upconn_t *)io->data)->w, buf);
}

static void reading(tp_tunnel_t *t, int side, int on)
{
    tp_io_t *io = io_of(t, side);
    if (!on)
        tp_io_read_stop(io);
    else if (side == 0)
        tp_io_read_start(io, client_alloc, client_read);
    else
        tp_io_read_start(io, up_alloc, up_read);
}

static void touch(tp_tunnel_t *t)
{
    tp_upconn_t *up = t->req->up;
    /* a hard timeout ends the session too, as in Tyk */
    tp_upstream_set_deadline(
        up, tp_proxy_timeout_ms(t->req, (uint64_t)(up->w->conf->tp.websocket_idle_timeout * 1000)));
}

/* Once the 101 head is out, the session holds no buffer of its own: the
 * upstream's read block and the heads go back. */
static void head_written(tp_tunnel_t *t)
{
    if (t->head_out)
        return;
    t->head_out = 1;
    tp_req_t *req = t->req;
    tp_upconn_t *up = req->up;
    if (up->rbuf != NULL) {
        tp_block_put(up->w, up->rbuf);
        up->rbuf = NULL;
        up->rlen = up->rparsed = 0;
    }
    tp_buf_free(&req->out);
    tp_buf_free(&req->up_head);
}

/* The session is over: the request is logged and both connections close. */
static void tunnel_end(tp_tunnel_t *t, const char *why)
{
    if (t->ending)
        return;
    t->ending = 1;
    tp_req_t *req = t->req;
    tp_conn_t *c = req->conn;
    tp_upconn_t *up = req->up;
    tp_worker_t *w = c->w;
    tp_log_debug("api %s: client %s: upgraded session ends (%s) after %llu bytes up, %llu down",
                 req->route->api->api_id, c->ip, why, (unsigned long long)t->bytes[0],
                 (unsigned long long)t->bytes[1]);
    req->tunnel = NULL;
    free(t);
    atomic_fetch_sub_explicit(&w->me->ws_open, 1, memory_order_relaxed);
    req->up = NULL;
    up->req = NULL;
    tp_upstream_close(up);
    req->resp_done = 1;
    c->want_close = 1;
    c->in.len = 0;
    tp_conn_response_done(c);
}

/* Bytes read from side <from> go to the other side. */
static void relay(tp_tunnel_t *t, int from, ssize_t nread, const uv_buf_t *buf)
{
    if (t->ending)
        return;
    if (nread < 0) {
        t->eof[from] = 1;
        reading(t, from, 0);
        if (!t->wpending[1 - from])
            tunnel_end(t, nread == UV_EOF ? (from == 0 ? "client closed" : "upstream closed")
                                          : uv_strerror((int)nread));
        return; /* else once what it sent is out */
    }
    if (nread == 0)
        return;
    t->bytes[from] += (uint64_t)nread;
    touch(t);
    int to = 1 - from;
    int r = tp_io_write_copy(io_of(t, to), buf->base, (size_t)nread,
                             to == 0 ? client_written : up_written);
    if (r < 0) {
        tunnel_end(t, uv_strerror(r));
        return;
    }
    if (r == 0) {
        /* back-pressure: no more from this side until the other takes it */
        t->wpending[to] = 1;
        reading(t, from, 0);
    }
}

/* A write towards side <to> is out. */
static void written(tp_tunnel_t *t, int to, int status)
{
    if (t == NULL || t->ending)
        return;
    t->wpending[to] = 0;
    if (status < 0) {
        tunnel_end(t, uv_strerror(status));
        return;
    }
    if (to == 0)
        head_written(t);
    touch(t);
    if (t->eof[1 - to])
        tunnel_end(t, to == 1 ? "client closed" : "upstream closed");
    else
        reading(t, 1 - to, 1);
}

static void client_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf)
{
    tp_conn_t *c = io->data;
    if (c->req != NULL && c->req->tunnel != NULL)
        relay(c->req->tunnel, 0, nread, buf);
}

static void up_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf)
{
    tp_upconn_t *up = io->data;
    if (up->req != NULL && up->req->tunnel != NULL)
        relay(up->req->tunnel, 1, nread, buf);
}

static void client_written(tp_io_t *io, int status)
{
    tp_conn_t *c = io->data;
    if (c->req != NULL)
        written(c->req->tunnel, 0, status);
}

static void up_written(tp_io_t *io, int status)
{
    tp_upconn_t *up = io->data;
    if (up->req != NULL)
        written(up->req->tunnel, 1, status);
}

void tp_tunnel_start(tp_req_t *req, tp_upconn_t *up, const char *rest, size_t n)
{
    tp_conn_t *c = req->conn;
    tp_worker_t *w = c->w;

    /* the upstream's 101 head goes to the client whole: Connection and
     * Upgrade included, as Go's proxy does for a protocol switch */
    tp_buf_t *b = &req->out;
    b->len = 0;
    if (up->reason_len > 0)
        tp_buf_printf(b, "HTTP/1.1 101 %.*s\r\n", (int)up->reason_len, up->rbuf + up->reason_off);
    else
        tp_buf_puts(b, "HTTP/1.1 101 Switching Protocols\r\n");
    for (uint32_t i = 0; i < up->nhdrs; i++) {
        const tp_hdr_t *h = &up->hdrs[i];
        tp_buf_append(b, up->rbuf + h->name_off, h->name_len);
        tp_buf_puts(b, ": ");
        tp_buf_put_str(b, tp_str_trim((tp_str_t){up->rbuf + h->val_off, h->val_len}));
        tp_buf_puts(b, "\r\n");
    }
    tp_buf_puts(b, "\r\n");
    req->status = 101;
    req->resp_started = 1;
    req->up_ms = uv_now(&w->loop) - req->up_start_ms;
    if (req->route->api->stat_idx != UINT32_MAX)
        w->stats[req->route->api->stat_idx].websockets++;
    atomic_fetch_add_explicit(&w->me->ws_open, 1, memory_order_relaxed);

    tp_tunnel_t *t = tp_calloc(1, sizeof(*t));
    t->req = req;
    req->tunnel = t;
    /* the relay reads both sides from here on */
    if (c->reading) {
        tp_io_read_stop(&c->io);
        c->reading = 0;
    }
    tp_upstream_pause(up);
    touch(t);

    uv_buf_t bufs[2] = {uv_buf_init(b->data, (unsigned)b->len),
                        uv_buf_init((char *)rest, (unsigned)n)};
    int r = tp_io_write(&c->io, bufs, n > 0 ? 2 : 1, client_written);
    if (r < 0) {
        tunnel_end(t, uv_strerror(r));
        return;
    }
    t->wpending[0] = r == 0;
    if (r == 1)
        head_written(t);
    t->bytes[1] += n;
    if (c->in.len > 0) {
        /* the client did not wait for the 101 */
        t->bytes[0] += c->in.len;
        r = tp_io_write_copy(&up->io, c->in.data, c->in.len, up_written);
        c->in.len = 0;
        if (r < 0) {
            tunnel_end(t, uv_strerror(r));
            return;
        }
        t->wpending[1] = r == 0;
    }
    if (!t->wpending[1])
        reading(t, 0, 1);
    if (!t->wpending[0])
        reading(t, 1, 1);
}

void tp_tunnel_idle(tp_req_t *req)
{
    tp_tunnel_t *t = req->tunnel;
    if (req->hard_deadline != 0 && uv_now(&req->conn->w->loop) >= req->hard_deadline) {
        tp_log_info("api %s: client %s: upgraded session reached its hard timeout, closing",
                    req->route->api->api_id, req->conn->ip);
        tunnel_end(t, "hard timeout");
        return;
    }
    tp_log_info("api %s: client %s: upgraded session idle for %.0f s, closing",
                req->route->api->api_id, req->conn->ip,
                req->conn->w->conf->tp.websocket_idle_timeout);
    tunnel_end(t, "idle");
}

void tp_tunnel_abort(tp_req_t *req)
{
    tp_tunnel_t *t = req->tunnel;
    if (t == NULL)
        return;
    req->tunnel = NULL;
    free(t);
    atomic_fetch_sub_explicit(&req->conn->w->me->ws_open, 1, memory_order_relaxed);
}
