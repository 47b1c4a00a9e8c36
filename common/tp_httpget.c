/*
 * common/tp_httpget.c: one blocking HTTP(S) GET, for the master's own
 * downloads at load time (Tyk's plugin bundles): resolve, connect, TLS
 * (verified against the system roots unless told not to), HTTP/1.1 with
 * "Connection: close", a 200 answer's body by Content-Length, chunked or
 * to the end, at most <max> bytes, all within one deadline.
 *
 * Used by: the master (it has no loop of its own for clients). A load that
 * downloads waits for it, as Tyk's does.
 */
#include "tp_httpget.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tp_tls.h"
#include "tp_url.h"

typedef struct conn_s {
    int fd;
    tp_tls_t *tls;
    int64_t deadline;
    char *err;
    size_t errlen;
} conn_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for <events> on the socket: 0, or -1 (timed out, reason set). */
static int wait_fd(conn_t *c, short events)
{
    for (;;) {
        int64_t left = c->deadline - now_ms();
        if (left <= 0) {
            snprintf(c->err, c->errlen, "timed out");
            return -1;
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR) {
            snprintf(c->err, c->errlen, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

static int send_all(conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(c, POLLOUT) < 0)
                return -1;
        } else {
            snprintf(c->err, c->errlen, "send: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* What the session wants on the wire goes out. */
static int flush_tls(conn_t *c)
{
    tp_buf_t *b = tp_tls_pending(c->tls);
    int rc = send_all(c, b->data, b->len);
    b->len = 0;
    return rc;
}

/* Raw bytes from the socket: count, 0 at its end, -1 on error. */
static long recv_some(conn_t *c, char *dst, size_t cap)
{
    for (;;) {
        ssize_t r = recv(c->fd, dst, cap, 0);
        if (r >= 0)
            return (long)r;
        if (errno != EAGAIN && errno != EINTR) {
            snprintf(c->err, c->errlen, "recv: %s", strerror(errno));
            return -1;
        }
        if (wait_fd(c, POLLIN) < 0)
            return -1;
    }
}

/* Plaintext bytes: count, 0 at the end of the stream, -1 on error. */
static long read_some(conn_t *c, char *dst, size_t cap)
{
    if (c->tls == NULL)
        return recv_some(c, dst, cap);
    for (;;) {
        long r = tp_tls_read(c->tls, dst, cap, c->err, c->errlen);
        if (flush_tls(c) < 0)
            return -1;
        if (r > 0)
            return r;
        if (r == TP_TLS_CLOSED)
            return 0;
        if (r == TP_TLS_ERROR)
            return -1;
        char raw[16384];
        long n = recv_some(c, raw, sizeof(raw));
        if (n <= 0)
            return n;
        tp_tls_feed(c->tls, raw, (size_t)n);
    }
}

static int do_connect(conn_t *c, const tp_url_t *u)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", u->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(c->err, c->errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            continue;
        if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(c, POLLOUT) == 0)) {
            int e = 0;
            socklen_t el = sizeof(e);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
            if (e == 0) {
                freeaddrinfo(res);
                return 0;
            }
            snprintf(c->err, c->errlen, "connect %s:%s: %s", u->host, port, strerror(e));
        } else if (errno != EINPROGRESS) {
            snprintf(c->err, c->errlen, "connect %s:%s: %s", u->host, port, strerror(errno));
        }
        close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (c->err[0] == '\0')
        snprintf(c->err, c->errlen, "cannot connect to %s:%s", u->host, port);
    return -1;
}

static int handshake(conn_t *c, const tp_url_t *u, int insecure)
{
    tp_tls_ctx_t *ctx = tp_tls_ctx_new(TP_TLS_CLIENT, c->err, c->errlen);
    if (ctx == NULL)
        return -1;
    if (insecure)
        tp_tls_ctx_verify(ctx, TP_TLS_VERIFY_NONE);
    c->tls = tp_tls_new(ctx, u->host);
    tp_tls_ctx_unref(ctx); /* the session keeps its reference */
    if (c->tls == NULL) {
        snprintf(c->err, c->errlen, "out of memory");
        return -1;
    }
    for (;;) {
        int rc = tp_tls_handshake(c->tls, c->err, c->errlen);
        if (flush_tls(c) < 0 || rc < 0)
            return -1;
        if (rc == 1)
            return 0;
        char raw[16384];
        long n = recv_some(c, raw, sizeof(raw));
        if (n <= 0) {
            if (n == 0)
                snprintf(c->err, c->errlen, "TLS handshake: the server closed the connection");
            return -1;
        }
        tp_tls_feed(c->tls, raw, (size_t)n);
    }
}

/* The status line and headers are in <b>: the status, the body's framing,
 * and where the body starts. -1 when malformed. */
static int parse_head(const tp_buf_t *b, size_t end, int *status, long long *clen, int *chunked)
{
    const char *p = b->data;
    if (end < 12 || strncmp(p, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(p + 9);
    *clen = -1;
    *chunked = 0;
    for (const char *l = strstr(p, "\r\n") + 2; l < p + end - 2;) {
        const char *e = strstr(l, "\r\n");
        if (strncasecmp(l, "content-length:", 15) == 0)
            *clen = atoll(l + 15);
        else if (strncasecmp(l, "transfer-encoding:", 18) == 0 && strstr(l, "chunked") != NULL &&
                 strstr(l, "chunked") < e)
            *chunked = 1;
        l = e + 2;
    }
    return 0;
}

/* The chunked body in <in> decoded into <out>: 1 when complete, 0 when
 * more is needed, -1 when malformed. */
static int dechunk(const char *in, size_t n, tp_buf_t *out)
{
    size_t at = 0;
    out->len = 0;
    for (;;) {
        const char *eol = memmem(in + at, n - at, "\r\n", 2);
        if (eol == NULL)
            return 0;
        char *endp;
        unsigned long long size = strtoull(in + at, &endp, 16);
        if (endp == in + at)
            return -1;
        at = (size_t)(eol - in) + 2;
        if (size == 0)
            return 1; /* trailers are not read */
        if (size > n || at + size + 2 > n)
            return 0;
        tp_buf_append(out, in + at, size);
        at += size + 2;
    }
}

int tp_http_get(const char *url, int insecure, size_t max, int timeout_ms, tp_buf_t *out, char *err,
                size_t errlen)
{
    tp_url_t u;
    char why[256];
    if (tp_url_parse(url, &u, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    err[0] = '\0';
    conn_t c = {.fd = -1, .deadline = now_ms() + timeout_ms, .err = err, .errlen = errlen};
    tp_buf_t in = {0}, req = {0};
    int rc = -1;
    if (do_connect(&c, &u) < 0 || (u.tls && handshake(&c, &u, insecure) < 0))
        goto out;
    tp_buf_printf(&req,
                  "GET %s%s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Turnpike\r\nAccept-Encoding: "
                  "identity\r\nConnection: close\r\n\r\n",
                  u.path[0] != '\0' ? u.path : "/", u.query != NULL ? "?" : "",
                  u.query != NULL ? u.query : "", u.authority);
    if (c.tls != NULL) {
        if (tp_tls_write(c.tls, req.data, req.len, err, errlen) < 0 || flush_tls(&c) < 0)
            goto out;
    } else if (send_all(&c, req.data, req.len) < 0) {
        goto out;
    }
    /* everything until the end (or the framing says the body is complete) */
    size_t head_end = 0;
    int status = 0, chunked = 0;
    long long clen = -1;
    for (;;) {
        if (in.len > max + 65536) {
            snprintf(err, errlen, "the answer is larger than %zu bytes", max);
            goto out;
        }
        char *dst = tp_buf_reserve(&in, 16384);
        long n = read_some(&c, dst, 16384);
        if (n < 0)
            goto out;
        in.len += (size_t)n;
        if (head_end == 0) {
            const char *e = in.len > 0 ? memmem(in.data, in.len, "\r\n\r\n", 4) : NULL;
            if (e != NULL) {
                head_end = (size_t)(e - in.data) + 4;
                tp_buf_putc(&in, '\0');
                in.len--;
                if (parse_head(&in, head_end, &status, &clen, &chunked) < 0) {
                    snprintf(err, errlen, "a malformed HTTP answer");
                    goto out;
                }
                if (status != 200) {
                    snprintf(err, errlen, "HTTP Error, got status code %d", status);
                    goto out;
                }
            }
        }
        if (head_end != 0) {
            size_t body = in.len - head_end;
            if (chunked &&
                (n == 0 || (body >= 5 && memcmp(in.data + in.len - 5, "0\r\n\r\n", 5) == 0))) {
                /* decoded once it looks complete (or the server closed) */
                tp_buf_t dec = {0};
                int d = dechunk(in.data + head_end, body, &dec);
                if (d == 1)
                    tp_buf_append(out, dec.data != NULL ? dec.data : "", dec.len);
                tp_buf_free(&dec);
                if (d < 0) {
                    snprintf(err, errlen, "a malformed chunked body");
                    goto out;
                }
                if (d == 1)
                    break;
            } else if (clen >= 0 && body >= (size_t)clen) {
                tp_buf_append(out, in.data + head_end, (size_t)clen);
                break;
            }
        }
        if (n == 0) {
            if (head_end == 0 || chunked || clen >= 0) {
                snprintf(err, errlen, "the connection closed before the whole answer");
                goto out;
            }
            tp_buf_append(out, in.data + head_end, in.len - head_end);
            break;
        }
    }
    if (out->len > max) {
        snprintf(err, errlen, "the answer is larger than %zu bytes", max);
        goto out;
    }
    rc = 0;
out:
    if (c.tls != NULL)
        tp_tls_free(c.tls);
    if (c.fd >= 0)
        close(c.fd);
    tp_buf_free(&in);
    tp_buf_free(&req);
    tp_url_free(&u);
    return rc;
}
