/* worker/tp_io.c: plain and TLS streams behind one interface. */
#include <stdio.h>
#include <string.h>

#include "tp_err.h"
#include "tp_io.h"
#include "tp_log.h"

/* Ciphertext is read here and decrypted into the owner's buffers. */
static char cipher_buf[17 * 1024];
static tp_list_t pending; /* TLS streams with input their owner has not had */
static uv_idle_t idle;
static int idle_ready;

static void deliver(tp_io_t *io);

static void on_idle(uv_idle_t *h)
{
    (void)h;
    /* take the list: a delivery may add the stream again */
    tp_list_t todo;
    tp_list_init(&todo);
    while (!tp_list_empty(&pending)) {
        tp_list_t *l = pending.next;
        tp_list_remove(l);
        tp_list_insert_tail(&todo, l);
    }
    while (!tp_list_empty(&todo)) {
        tp_io_t *io = tp_container_of(todo.next, tp_io_t, pend);
        tp_list_remove(&io->pend);
        deliver(io);
    }
    if (tp_list_empty(&pending))
        uv_idle_stop(&idle);
}

void tp_io_init(uv_loop_t *loop)
{
    tp_list_init(&pending);
    uv_idle_init(loop, &idle);
    uv_unref((uv_handle_t *)&idle);
    idle_ready = 1;
}

void tp_io_shutdown_loop(void)
{
    if (idle_ready)
        uv_close((uv_handle_t *)&idle, NULL);
    idle_ready = 0;
}

static void want_delivery(tp_io_t *io)
{
    if (tp_list_linked(&io->pend) || !idle_ready)
        return;
    tp_list_insert_tail(&pending, &io->pend);
    uv_idle_start(&idle, on_idle);
}

void tp_io_setup(tp_io_t *io, uv_loop_t *loop, void *owner)
{
    memset(io, 0, sizeof(*io));
    uv_tcp_init(loop, &io->tcp);
    io->tcp.data = io;
    io->data = owner;
    tp_list_init(&io->pend);
}

/* ---- writing ----------------------------------------------------------------- */

static void flush(tp_io_t *io);

static void finish_owner_write(tp_io_t *io, int status)
{
    if (!io->owner_wait)
        return;
    io->owner_wait = 0;
    io->write_cb(io, status);
}

static void on_flight_written(uv_write_t *wr, int status)
{
    tp_io_t *io = wr->data;
    io->writing = 0;
    if (io->closing)
        return;
    io->flight.len = 0;
    if (status < 0) {
        finish_owner_write(io, status);
        return;
    }
    flush(io);
    if (!io->writing) {
        /* an idle stream keeps no output buffers */
        tp_buf_free(&io->flight);
        finish_owner_write(io, 0);
    }
}

/* Sends what the session has queued; one uv_write at a time. */
static void flush(tp_io_t *io)
{
    tp_buf_t *out = tp_tls_pending(io->tls);
    while (!io->writing && out->len > 0 && !io->closing) {
        tp_buf_t tmp = io->flight;
        io->flight = *out;
        *out = tmp;
        out->len = 0;
        uv_buf_t b = uv_buf_init(io->flight.data, (unsigned)io->flight.len);
        int r = uv_try_write((uv_stream_t *)&io->tcp, &b, 1);
        if (r == UV_EAGAIN || r == UV_ENOSYS)
            r = 0;
        if (r < 0) {
            io->flight.len = 0;
            return; /* the read side sees the error */
        }
        if ((size_t)r == io->flight.len) {
            io->flight.len = 0;
            continue;
        }
        b.base += r;
        b.len -= (unsigned)r;
        io->wreq.data = io;
        if (uv_write(&io->wreq, (uv_stream_t *)&io->tcp, &b, 1, on_flight_written) < 0) {
            io->flight.len = 0;
            return;
        }
        io->writing = 1;
    }
}

static void on_plain_written(uv_write_t *wr, int status)
{
    tp_io_t *io = wr->data;
    io->writing = 0;
    if (io->closing)
        return;
    io->owner_wait = 0;
    io->write_cb(io, status);
}

/* Encrypts bufs into as few records as fit: small pieces (a response head
 * and its body) are gathered into one record, so the peer decrypts one
 * record and reads twice, not four times. Large pieces go as they are. */
static int tls_encrypt(tp_io_t *io, const uv_buf_t *bufs, unsigned n)
{
    static char stage[16384];
    size_t staged = 0;
    char err[256];
    for (unsigned i = 0; i < n; i++) {
        const char *p = bufs[i].base;
        size_t len = bufs[i].len;
        while (len > 0) {
            if (staged == 0 && len >= sizeof(stage)) {
                if (tp_tls_write(io->tls, p, len, err, sizeof(err)) < 0)
                    goto fail;
                break;
            }
            size_t take = sizeof(stage) - staged < len ? sizeof(stage) - staged : len;
            memcpy(stage + staged, p, take);
            staged += take;
            p += take;
            len -= take;
            if (staged == sizeof(stage)) {
                if (tp_tls_write(io->tls, stage, staged, err, sizeof(err)) < 0)
                    goto fail;
                staged = 0;
            }
        }
    }
    if (staged > 0 && tp_tls_write(io->tls, stage, staged, err, sizeof(err)) < 0)
        goto fail;
    return 0;
fail:
    tp_log_debug("%s", err);
    return UV_EPROTO;
}

static void on_copy_written(uv_write_t *wr, int status)
{
    tp_io_t *io = wr->data;
    tp_buf_free(&io->flight);
    on_plain_written(wr, status);
}

/* A plain stream's write: what the socket takes at once, then the rest
 * queued, from the owner's buffers or, with <copy>, from a copy of them. */
static int plain_write(tp_io_t *io, uv_buf_t *bufs, unsigned n, int copy)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    int r = uv_try_write((uv_stream_t *)&io->tcp, bufs, n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r < 0)
        return r;
    if ((size_t)r == total)
        return 1;
    /* skip what went out, queue the rest */
    size_t done = (size_t)r;
    unsigned i = 0;
    while (done >= bufs[i].len) {
        done -= bufs[i].len;
        i++;
    }
    bufs[i].base += done;
    bufs[i].len -= done;
    io->wreq.data = io;
    if (copy) {
        io->flight.len = 0;
        for (unsigned k = i; k < n; k++)
            tp_buf_append(&io->flight, bufs[k].base, bufs[k].len);
        uv_buf_t b = uv_buf_init(io->flight.data, (unsigned)io->flight.len);
        r = uv_write(&io->wreq, (uv_stream_t *)&io->tcp, &b, 1, on_copy_written);
    } else {
        r = uv_write(&io->wreq, (uv_stream_t *)&io->tcp, bufs + i, n - i, on_plain_written);
    }
    if (r < 0)
        return r;
    io->writing = 1;
    io->owner_wait = 1;
    return 0;
}

int tp_io_write(tp_io_t *io, uv_buf_t *bufs, unsigned n, tp_io_write_cb cb)
{
    io->write_cb = cb;
    if (io->tls != NULL) {
        if (tls_encrypt(io, bufs, n) < 0)
            return UV_EPROTO;
        flush(io);
        if (!io->writing)
            return 1;
        io->owner_wait = 1;
        return 0;
    }
    return plain_write(io, bufs, n, 0);
}

int tp_io_write_copy(tp_io_t *io, const char *p, size_t n, tp_io_write_cb cb)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (io->tls != NULL)
        return tp_io_write(io, &b, 1, cb); /* encrypted into the session's buffer */
    io->write_cb = cb;
    return plain_write(io, &b, 1, 1);
}

/* ---- reading ------------------------------------------------------------------ */

static void plain_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    tp_io_t *io = h->data;
    (void)hint;
    io->alloc_cb(io, buf);
}

static void plain_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tp_io_t *io = s->data;
    io->read_cb(io, nread, buf);
}

static void tls_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = cipher_buf;
    buf->len = sizeof(cipher_buf);
}

static void raw_update(tp_io_t *io);

/* Plaintext the session holds goes to the owner while it reads. */
static void deliver(tp_io_t *io)
{
    char err[256];
    while (io->reading && !io->closing && !io->handshaking) {
        uv_buf_t b;
        io->alloc_cb(io, &b);
        long n = tp_tls_read(io->tls, b.base, b.len, err, sizeof(err));
        if (n > 0) {
            io->read_cb(io, n, &b);
            continue;
        }
        if (n == TP_TLS_WANT)
            break;
        if (n == TP_TLS_ERROR)
            tp_log_debug("%s", err);
        io->read_cb(io, n == TP_TLS_CLOSED ? UV_EOF : UV_EPROTO, &b);
        return;
    }
    if (io->closing)
        return;
    flush(io);      /* alerts */
    raw_update(io); /* what the session holds waits for the owner to read again */
}

/* Go answers plain HTTP on a TLS port so. */
static const char HTTP_ON_TLS[] = "HTTP/1.0 400 Bad Request\r\n\r\n"
                                  "Client sent an HTTP request to an HTTPS server.\n";

static void handshake_failed(tp_io_t *io, const char *why)
{
    io->handshaking = 0;
    if (io->ready_cb != NULL) {
        tp_io_ready_cb cb = io->ready_cb;
        io->ready_cb = NULL;
        cb(io, UV_EPROTO, why);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64] = "?";
    if (uv_tcp_getpeername(&io->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    }
    tp_log_info("TLS handshake with client %s failed: %s", ip, why);
    if (io->reading) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        io->read_cb(io, UV_EPROTO, &b);
    }
}

static void tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tp_io_t *io = s->data;
    if (nread == 0 || io->closing)
        return;
    if (nread < 0) {
        if (io->handshaking) {
            handshake_failed(io, nread == UV_EOF ? "the peer closed the connection"
                                                 : uv_strerror((int)nread));
            return;
        }
        uv_buf_t b = uv_buf_init(NULL, 0);
        io->read_cb(io, nread, &b);
        return;
    }
    if (!io->got_bytes && io->ready_cb == NULL && io->handshaking && buf->base[0] != 0x16) {
        /* not a TLS record: an HTTP client on a TLS port, or noise */
        if (buf->base[0] >= 'A' && buf->base[0] <= 'Z') {
            uv_buf_t b = uv_buf_init((char *)HTTP_ON_TLS, sizeof(HTTP_ON_TLS) - 1);
            (void)uv_try_write((uv_stream_t *)&io->tcp, &b, 1);
            handshake_failed(io, "the client sent plain HTTP");
        } else {
            handshake_failed(io, "the client did not send a TLS handshake");
        }
        return;
    }
    io->got_bytes = 1;
    tp_tls_feed(io->tls, buf->base, (size_t)nread);
    if (io->handshaking) {
        char err[512];
        int rc = tp_tls_handshake(io->tls, err, sizeof(err));
        flush(io);
        if (rc < 0) {
            handshake_failed(io, err);
            return;
        }
        if (rc == 0)
            return;
        io->handshaking = 0;
        if (io->ready_cb != NULL) {
            tp_io_ready_cb cb = io->ready_cb;
            io->ready_cb = NULL;
            cb(io, 0, NULL);
            if (io->closing)
                return;
        }
    }
    deliver(io);
}

/* The socket is read while the owner reads or a handshake runs. */
static void raw_update(tp_io_t *io)
{
    if (io->closing)
        return;
    int want = io->reading || io->handshaking;
    if (want && !io->raw_reading) {
        if (uv_read_start((uv_stream_t *)&io->tcp, tls_alloc, tls_read) == 0)
            io->raw_reading = 1;
    } else if (!want && io->raw_reading) {
        uv_read_stop((uv_stream_t *)&io->tcp);
        io->raw_reading = 0;
    }
}

int tp_io_read_start(tp_io_t *io, tp_io_alloc_cb alloc_cb, tp_io_read_cb read_cb)
{
    io->alloc_cb = alloc_cb;
    io->read_cb = read_cb;
    io->reading = 1;
    if (io->tls == NULL)
        return uv_read_start((uv_stream_t *)&io->tcp, plain_alloc, plain_read);
    raw_update(io);
    if (!io->handshaking && tp_tls_has_input(io->tls))
        want_delivery(io);
    return 0;
}

void tp_io_read_stop(tp_io_t *io)
{
    io->reading = 0;
    if (io->tls == NULL) {
        uv_read_stop((uv_stream_t *)&io->tcp);
        return;
    }
    raw_update(io);
}

/* ---- TLS sessions ----------------------------------------------------------------- */

int tp_io_accept_tls(tp_io_t *io, tp_tls_ctx_t *ctx)
{
    io->tls = tp_tls_new(ctx, NULL);
    if (io->tls == NULL)
        return -1;
    io->handshaking = 1;
    return 0;
}

void tp_io_connect_tls(tp_io_t *io, tp_tls_ctx_t *ctx, const char *host, tp_io_ready_cb cb)
{
    io->tls = tp_tls_new(ctx, host);
    io->ready_cb = cb;
    if (io->tls == NULL) {
        handshake_failed(io, "cannot start a TLS session (out of memory)");
        return;
    }
    io->handshaking = 1;
    char err[512];
    if (tp_tls_handshake(io->tls, err, sizeof(err)) < 0) {
        handshake_failed(io, err);
        return;
    }
    flush(io);
    raw_update(io);
}

const char *tp_io_peer_subject(const tp_io_t *io)
{
    return io->tls != NULL ? tp_tls_peer_subject(io->tls) : "";
}

/* ---- closing ----------------------------------------------------------------------- */

int tp_io_shutdown(tp_io_t *io, uv_shutdown_t *req, uv_shutdown_cb cb)
{
    if (io->tls != NULL) {
        tp_tls_close_notify(io->tls);
        flush(io);
    }
    return uv_shutdown(req, (uv_stream_t *)&io->tcp, cb);
}

void tp_io_close(tp_io_t *io, uv_close_cb cb)
{
    if (io->closing)
        return;
    io->closing = 1;
    if (tp_list_linked(&io->pend))
        tp_list_remove(&io->pend);
    tp_tls_free(io->tls);
    io->tls = NULL;
    tp_buf_free(&io->flight);
    uv_close((uv_handle_t *)&io->tcp, cb);
}
