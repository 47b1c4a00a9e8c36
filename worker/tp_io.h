/*
 * worker/tp_io.h: a TCP stream that is plain or TLS, behind one interface.
 *
 * Used by: client connections (tp_conn.c, tp_respond.c) and upstream
 * connections (tp_upstream.c, tp_proxy.c). They read, write, pause and
 * close a tp_io_t the same way whether it carries TLS or not; only the
 * code that creates one says which (tp_io_accept_tls, tp_io_connect_tls).
 *
 * Reading mirrors libuv's: the owner's alloc callback gives a buffer, its
 * read callback gets the (plaintext) bytes, UV_EOF, or an error. With TLS
 * the ciphertext lands in a per-process buffer and is decrypted into the
 * owner's buffer, so an owner that reads into its own memory (a request
 * body, an upstream block) still does. Plaintext the session holds while
 * the owner has stopped reading is delivered from an idle callback once
 * it reads again (tp_io_init registers it). A TLS stream's handshake runs
 * before any read callback: a server's under the owner's deadline, a
 * client's reported through its ready callback.
 *
 * Writing: tp_io_write takes buffers that stay valid until the write
 * callback (plain) or only for the call (TLS: encrypted at once). One owner
 * write at a time.
 *
 * Single-threaded: one loop per process.
 */
#ifndef TP_IO_H
#define TP_IO_H

#include <uv.h>

#include "tp_buf.h"
#include "tp_list.h"
#include "tp_tls.h"

typedef struct tp_io_s tp_io_t;
typedef void (*tp_io_alloc_cb)(tp_io_t *io, uv_buf_t *buf);
typedef void (*tp_io_read_cb)(tp_io_t *io, ssize_t nread, const uv_buf_t *buf);
typedef void (*tp_io_write_cb)(tp_io_t *io, int status);
/* A client handshake finished (status 0) or failed (a negative libuv
 * error, <why> the reason, the peer's certificate subject in
 * tp_io_peer_subject). */
typedef void (*tp_io_ready_cb)(tp_io_t *io, int status, const char *why);

struct tp_io_s {
    uv_tcp_t tcp; /* tcp.data points at the tp_io_t */
    uv_write_t wreq;
    void *data; /* the owner */
    tp_tls_t *tls;
    tp_io_alloc_cb alloc_cb;
    tp_io_read_cb read_cb;
    tp_io_write_cb write_cb;
    tp_io_ready_cb ready_cb;
    tp_buf_t flight;          /* TLS: ciphertext on the wire */
    tp_list_t pend;           /* TLS: in the list of streams with input to deliver */
    unsigned reading : 1;     /* the owner wants input */
    unsigned raw_reading : 1; /* the socket is being read */
    unsigned writing : 1;     /* a uv_write is in flight */
    unsigned owner_wait : 1;  /* the owner's write completes when the output is out */
    unsigned handshaking : 1;
    unsigned got_bytes : 1; /* TLS: something arrived */
    unsigned closing : 1;
};

/* Registers the idle callback that delivers buffered TLS input. */
void tp_io_init(uv_loop_t *loop);
void tp_io_shutdown_loop(void);

/* Initialises the stream on <loop> (as uv_tcp_init). */
void tp_io_setup(tp_io_t *io, uv_loop_t *loop, void *owner);
/* Makes an accepted stream a TLS server session on <ctx>. Returns 0 or -1. */
int tp_io_accept_tls(tp_io_t *io, tp_tls_ctx_t *ctx);
/* A connected stream starts a TLS client session to <host>; <cb> follows. */
void tp_io_connect_tls(tp_io_t *io, tp_tls_ctx_t *ctx, const char *host, tp_io_ready_cb cb);

int tp_io_read_start(tp_io_t *io, tp_io_alloc_cb alloc_cb, tp_io_read_cb read_cb);
void tp_io_read_stop(tp_io_t *io);
/* Returns 1 when everything went out at once, 0 when <cb> will follow, or
 * a negative libuv error. */
int tp_io_write(tp_io_t *io, uv_buf_t *bufs, unsigned n, tp_io_write_cb cb);
/* As tp_io_write, but <p> need only be valid for the call: what the socket
 * does not take at once is copied (a relay reading into a shared buffer). */
int tp_io_write_copy(tp_io_t *io, const char *p, size_t n, tp_io_write_cb cb);
/* Half-closes the sending side after what is queued (TLS: close_notify). */
int tp_io_shutdown(tp_io_t *io, uv_shutdown_t *req, uv_shutdown_cb cb);
/* Closes the socket; <cb> runs on the tcp handle as with uv_close. */
void tp_io_close(tp_io_t *io, uv_close_cb cb);

/* The peer certificate subject of a TLS stream ("" if none). */
const char *tp_io_peer_subject(const tp_io_t *io);

#endif
