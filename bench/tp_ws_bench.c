/*
 * bench/tp_ws_bench.c: websocket relay load for bench/websocket.sh.
 *
 *   tp_ws_bench serve PORT
 *       the upstream: answers an upgrade request with 101, then echoes every
 *       byte back (frames are not parsed: the proxies under test relay bytes)
 *   tp_ws_bench echo PORT PATH CONNS SECONDS SIZE
 *       CONNS websockets through the proxy on 127.0.0.1:PORT; each sends one
 *       masked binary frame of SIZE payload bytes and waits for it back,
 *       again and again; prints "messages N seconds S rate R" (R: round trips/s)
 *   tp_ws_bench idle PORT PATH CONNS
 *       opens CONNS websockets (100 handshakes at a time), prints
 *       "READY open=N" and holds them until its stdin closes
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

static uv_loop_t *loop;

typedef struct ws_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    char head[4096];
    size_t headlen;
    int upgraded;
    size_t got; /* echo bytes of the current message received */
} ws_t;

static const char *path;
static size_t size = 32, frame_len;
static char *frame;
static uint64_t messages;
static int counting = 1, conns_open, conns_want, conns_started;
static char rbuf[65536];

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

/* ---- serve ---------------------------------------------------------------- */

typedef struct wr_s {
    uv_write_t req;
    char data[];
} wr_t;

static void on_written_free(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void write_copy(uv_stream_t *s, const char *p, size_t n)
{
    wr_t *w = malloc(sizeof(*w) + n);
    if (w == NULL)
        abort();
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, s, &b, 1, on_written_free) < 0)
        free(w);
}

static void on_closed_free(uv_handle_t *h)
{
    free(h);
}

static void serve_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ws_t *c = (ws_t *)s;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed_free);
        return;
    }
    if (n == 0)
        return;
    if (c->upgraded) {
        write_copy(s, buf->base, (size_t)n);
        return;
    }
    size_t take =
        (size_t)n < sizeof(c->head) - c->headlen ? (size_t)n : sizeof(c->head) - c->headlen;
    memcpy(c->head + c->headlen, buf->base, take);
    c->headlen += take;
    char *end = memmem(c->head, c->headlen, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    write_copy(s, resp, sizeof(resp) - 1);
    c->upgraded = 1;
    size_t rest = c->headlen - (size_t)(end + 4 - c->head);
    if (rest > 0)
        write_copy(s, end + 4, rest);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    ws_t *c = calloc(1, sizeof(*c));
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, serve_read);
    } else {
        uv_close((uv_handle_t *)&c->tcp, on_closed_free);
    }
}

/* ---- clients -------------------------------------------------------------- */

static void send_frame(ws_t *c)
{
    uv_buf_t b = uv_buf_init(frame, (unsigned)frame_len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r < 0 && r != UV_EAGAIN) {
        fprintf(stderr, "tp_ws_bench: write: %s\n", uv_strerror(r));
        exit(1);
    }
    if (r < (int)frame_len)
        write_copy((uv_stream_t *)&c->tcp, frame + (r > 0 ? r : 0),
                   frame_len - (size_t)(r > 0 ? r : 0));
}

static void start_one(void);

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ws_t *c = (ws_t *)s;
    if (n < 0) {
        fprintf(stderr, "tp_ws_bench: connection closed: %s\n", uv_strerror((int)n));
        exit(1);
    }
    if (n == 0)
        return;
    const char *p = buf->base;
    size_t len = (size_t)n;
    if (!c->upgraded) {
        size_t take = len < sizeof(c->head) - c->headlen ? len : sizeof(c->head) - c->headlen;
        memcpy(c->head + c->headlen, p, take);
        c->headlen += take;
        char *end = memmem(c->head, c->headlen, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "tp_ws_bench: no upgrade: %.60s\n", c->head);
            exit(1);
        }
        c->upgraded = 1;
        conns_open++;
        if (frame == NULL) { /* idle mode */
            if (conns_open == conns_want) {
                printf("READY open=%d\n", conns_open);
                fflush(stdout);
            }
            start_one();
            return;
        }
        send_frame(c);
        return;
    }
    c->got += len;
    while (c->got >= frame_len) {
        c->got -= frame_len;
        if (counting)
            messages++;
        send_frame(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    ws_t *c = req->data;
    if (status < 0) {
        fprintf(stderr, "tp_ws_bench: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    write_copy((uv_stream_t *)&c->tcp, head, (size_t)n);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, client_read);
}

static struct sockaddr_in target;

static void start_one(void)
{
    if (conns_started >= conns_want)
        return;
    conns_started++;
    ws_t *c = calloc(1, sizeof(*c));
    uv_tcp_init(loop, &c->tcp);
    c->creq.data = c;
    uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&target, on_connect);
}

static uint64_t t0;

static void on_stop(uv_timer_t *t)
{
    (void)t;
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    printf("messages %llu seconds %.2f rate %.0f\n", (unsigned long long)messages, secs,
           (double)messages / secs);
    fflush(stdout);
    exit(0);
}

static void stdin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    (void)buf;
    if (n < 0)
        exit(0);
}

static void make_frame(void)
{
    size_t hl = size < 126 ? 2 : size < 65536 ? 4 : 10;
    frame_len = hl + 4 + size;
    frame = malloc(frame_len);
    frame[0] = (char)0x82;
    if (size < 126) {
        frame[1] = (char)(0x80 | size);
    } else if (size < 65536) {
        frame[1] = (char)(0x80 | 126);
        frame[2] = (char)(size >> 8);
        frame[3] = (char)size;
    } else {
        frame[1] = (char)(0x80 | 127);
        for (int i = 0; i < 8; i++)
            frame[2 + i] = (char)((uint64_t)size >> (56 - 8 * i));
    }
    memset(frame + hl, 0x5a, 4 + size); /* mask and masked payload */
}

int main(int argc, char **argv)
{
    loop = uv_default_loop();
    /* a peer that closes with echoes still queued must not kill us */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) {
        static uv_tcp_t server;
        struct sockaddr_in a;
        uv_ip4_addr("127.0.0.1", atoi(argv[2]), &a);
        uv_tcp_init(loop, &server);
        if (uv_tcp_bind(&server, (const struct sockaddr *)&a, 0) != 0 ||
            uv_listen((uv_stream_t *)&server, 4096, on_connection) != 0) {
            fprintf(stderr, "tp_ws_bench: cannot listen on %s\n", argv[2]);
            return 1;
        }
        return uv_run(loop, UV_RUN_DEFAULT);
    }
    int echo = argc == 7 && strcmp(argv[1], "echo") == 0;
    int idle = argc == 5 && strcmp(argv[1], "idle") == 0;
    if (!echo && !idle) {
        fprintf(stderr, "usage: tp_ws_bench serve PORT | echo PORT PATH CONNS SECONDS SIZE | "
                        "idle PORT PATH CONNS\n");
        return 2;
    }
    uv_ip4_addr("127.0.0.1", atoi(argv[2]), &target);
    path = argv[3];
    conns_want = atoi(argv[4]);
    if (echo) {
        size = (size_t)atol(argv[6]);
        make_frame();
        static uv_timer_t stop;
        uv_timer_init(loop, &stop);
        uv_timer_start(&stop, on_stop, (uint64_t)(atof(argv[5]) * 1000), 0);
        t0 = uv_hrtime();
        for (int i = 0; i < conns_want; i++)
            start_one();
    } else {
        static uv_pipe_t in;
        uv_pipe_init(loop, &in, 0);
        uv_pipe_open(&in, 0);
        uv_read_start((uv_stream_t *)&in, alloc_cb, stdin_read);
        for (int i = 0; i < 100; i++)
            start_one();
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
