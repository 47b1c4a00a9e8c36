/*
 * common/tp_redis.c: the Redis client: nodes, connections, pipelining,
 * timeouts, reconnection, and the three topologies.
 *
 * A node is one server address with its pool of connections. Commands for
 * a node wait in node->waiting until one of its connections is ready, then
 * sit in that connection's FIFO (conn->sent) until the reply comes back in
 * order. Bytes are batched: commands issued during a loop turn are written
 * together just before the loop blocks (the prepare handle).
 *
 * One timer ticks every TICK_MS for everything slow: command deadlines,
 * reconnection after backoff, the cluster slot map and sentinel lookups.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_list.h"
#include "tp_log.h"
#include "tp_counter.h"
#include "tp_redis.h"
#include "tp_redis_tls.h"

#define TICK_MS 50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REDIRECTS_MAX 5
#define PIPELINE_SPLIT 64 /* pending commands before another connection opens */
#define RBUF_SIZE (64 * 1024)

enum { MODE_SINGLE, MODE_CLUSTER, MODE_SENTINEL };
enum { NODE_IDLE, NODE_UP, NODE_DOWN };
enum { C_RESOLVING, C_CONNECTING, C_TLS, C_HANDSHAKE, C_READY, C_CLOSED };
enum { K_USER, K_SKIP, K_HANDSHAKE, K_SUBSCRIBE, K_SLOTS, K_SENTINEL_MASTER };

typedef struct tp_rnode_s tp_rnode_t;
typedef struct tp_rconn_s tp_rconn_t;

struct tp_rcmd_s {
    tp_list_t link;
    tp_redis_t *r;
    tp_redis_cb cb;
    void *arg;
    char *buf; /* RESP bytes from redisFormatCommand */
    size_t len;
    int slot; /* -1: no key */
    int kind;
    uint64_t deadline;
    uint8_t redirects;
    unsigned asking : 1;
    char errbuf[256]; /* the error text of a command failed before it ran */
    const char *err;
    uint64_t start_ns; /* when it was made, with stats on */
};

struct tp_rnode_s {
    tp_list_t link;
    tp_redis_t *r;
    char *host;
    uint16_t port;
    char name[280];
    int sentinel; /* a sentinel, not a data node */
    int state;
    tp_list_t conns;
    uint32_t nconns;
    tp_list_t waiting;
    uint64_t retry_at;
    uint32_t backoff;
    int wanted; /* keep a connection open even without commands */
    char err[600];
};

struct tp_rconn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_getaddrinfo_t gai;
    tp_list_t link; /* node->conns */
    tp_list_t dirty_link;
    tp_rnode_t *node;
    tp_redis_t *r;
    redisReader *reader;
    tp_list_t sent;
    uint32_t nsent;
    tp_buf_t out;   /* plaintext waiting to be written */
    tp_buf_t wbuf;  /* bytes in flight */
    tp_buf_t plain; /* TLS: decrypted input */
    tp_tls_t *tls;
    int state;
    int pending_handshake; /* handshake replies still expected */
    uint64_t connect_deadline;
    uint64_t idle_since; /* loop ms when it last had nothing in flight */
    unsigned writing : 1;
    unsigned closing : 1;
    unsigned pubsub : 1;
    unsigned resolving : 1;
};

struct tp_redis_s {
    uv_loop_t *loop;
    char name[32];
    int mode;
    /* the storage settings we need, owned */
    char *username;
    char *password;
    char *sentinel_password;
    char *master_name;
    int64_t database;
    uint64_t timeout_ms;
    uint32_t max_active;
    uint32_t max_idle;
    tp_tls_ctx_t *tls;

    tp_list_t nodes;
    tp_rnode_t *master; /* single, sentinel: the data node */
    tp_rnode_t **slots; /* cluster: 16384 entries */
    int slots_ok;
    int slots_refreshing;
    uint64_t slots_refresh_at;
    int sentinel_asking;
    uint64_t sentinel_retry_at;
    uint32_t sentinel_backoff;
    tp_list_t unrouted;  /* waiting for the slot map or the sentinel's answer */
    tp_list_t completed; /* commands whose callback is due */
    tp_list_t dirty;     /* connections with bytes to write */
    tp_redis_stats_t *stats;

    /* pub/sub */
    char *ps_channel;
    tp_redis_msg_cb ps_cb;
    void *ps_arg;
    tp_rconn_t *ps_conn;
    uint64_t ps_retry_at;
    uint32_t ps_backoff;
    int ps_ok;           /* the subscription is confirmed */
    tp_rconn_t *sw_conn; /* sentinel: +switch-master subscription */
    uint64_t sw_retry_at;
    uint32_t sw_backoff;

    int up;
    uint64_t up_since;
    char err[700];

    uv_timer_t timer;
    uv_prepare_t prepare;
    uv_idle_t idle;
    char *rbuf;
    int handles_open;
    int closing;
};

static void conn_close(tp_rconn_t *c, const char *why);
static void node_submit(tp_rnode_t *n, tp_rcmd_t *cmd);
static void route(tp_redis_t *r, tp_rcmd_t *cmd);
static void conn_send(tp_rconn_t *c, tp_rcmd_t *cmd);
static tp_rconn_t *conn_open(tp_rnode_t *n, int pubsub);
static void slots_refresh(tp_redis_t *r);
static void sentinel_ask(tp_redis_t *r);
static void cluster_recheck(tp_redis_t *r);

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t now_ms(const tp_redis_t *r)
{
    return uv_now(r->loop);
}

static void set_up(tp_redis_t *r, int up, const char *err)
{
    if (err != NULL && err != r->err && err[0] != '\0')
        snprintf(r->err, sizeof(r->err), "%s", err);
    if (up == r->up)
        return;
    r->up = up;
    r->up_since = now_ms(r);
    if (up)
        tp_log_info("redis %s: connected", r->name);
    else
        tp_log_warn("redis %s: unavailable: %s", r->name, r->err);
}

static tp_rcmd_t *cmd_new(tp_redis_t *r, int kind, tp_redis_cb cb, void *arg, char *buf, int len)
{
    tp_rcmd_t *cmd = tp_calloc(1, sizeof(*cmd));
    tp_list_init(&cmd->link);
    cmd->r = r;
    cmd->kind = kind;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->buf = buf;
    cmd->len = len > 0 ? (size_t)len : 0;
    cmd->slot = -1;
    cmd->deadline = now_ms(r) + r->timeout_ms;
    if (r->stats != NULL && kind == K_USER)
        cmd->start_ns = uv_hrtime();
    return cmd;
}

/* A caller's command is answered (or failed). */
static void cmd_count(const tp_rcmd_t *cmd, int failed)
{
    tp_redis_stats_t *s = cmd->r->stats;
    if (s == NULL || cmd->kind != K_USER || cmd->start_ns == 0)
        return;
    tp_counter_add(&s->commands, 1);
    tp_counter_add(&s->errors, failed != 0);
    tp_counter_add(&s->usec, (uv_hrtime() - cmd->start_ns) / 1000);
}

void tp_redis_set_stats(tp_redis_t *r, tp_redis_stats_t *stats)
{
    r->stats = stats;
}

/* An internal command (no callback) from a hiredis format string. */
static tp_rcmd_t *cmd_format(tp_redis_t *r, int kind, const char *fmt, ...)
{
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    return cmd_new(r, kind, NULL, NULL, buf, len);
}

static void cmd_free(tp_rcmd_t *cmd)
{
    if (cmd->buf != NULL)
        redisFreeCommand(cmd->buf);
    free(cmd);
}

static void on_idle(uv_idle_t *h);

/* Fails <cmd> with <err>; the callback runs from the idle handle, never
 * from inside the caller's tp_redis_cmd. */
static void cmd_fail(tp_rcmd_t *cmd, const char *err)
{
    tp_redis_t *r = cmd->r;
    if (tp_list_linked(&cmd->link))
        tp_list_remove(&cmd->link);
    snprintf(cmd->errbuf, sizeof(cmd->errbuf), "%s", err);
    cmd->err = cmd->errbuf;
    tp_list_insert_tail(&r->completed, &cmd->link);
    uv_idle_start(&r->idle, on_idle);
}

static void fail_list(tp_list_t *l, const char *err)
{
    while (!tp_list_empty(l))
        cmd_fail(tp_container_of(l->next, tp_rcmd_t, link), err);
}

/* ---- nodes ------------------------------------------------------------------- */

static tp_rnode_t *node_get(tp_redis_t *r, const char *host, unsigned port, int sentinel)
{
    tp_list_t *it;
    for (it = r->nodes.next; it != &r->nodes; it = it->next) {
        tp_rnode_t *n = tp_container_of(it, tp_rnode_t, link);
        if (n->port == port && n->sentinel == sentinel && strcasecmp(n->host, host) == 0)
            return n;
    }
    tp_rnode_t *n = tp_calloc(1, sizeof(*n));
    n->r = r;
    n->host = tp_strdup(host);
    n->port = (uint16_t)port;
    n->sentinel = sentinel;
    snprintf(n->name, sizeof(n->name), "%s%s:%u", strchr(host, ':') ? "[" : "", host, port);
    if (strchr(host, ':'))
        snprintf(n->name, sizeof(n->name), "[%s]:%u", host, port);
    tp_list_init(&n->conns);
    tp_list_init(&n->waiting);
    tp_list_insert_tail(&r->nodes, &n->link);
    return n;
}

/* Parses "host:port" or "[v6]:port" (port defaults to 6379). */
static tp_rnode_t *node_parse(tp_redis_t *r, const char *addr, int sentinel)
{
    char host[256];
    unsigned port = sentinel ? 26379 : 6379;
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL)
            return NULL;
        snprintf(host, sizeof(host), "%.*s", (int)(close - addr - 1), addr + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(addr, ':');
        snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - addr) : (int)strlen(addr), addr);
    }
    if (colon != NULL) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end != '\0' || p < 1 || p > 65535)
            return NULL;
        port = (unsigned)p;
    }
    if (host[0] == '\0')
        return NULL;
    return node_get(r, host, port, sentinel);
}

static void node_down(tp_rnode_t *n, const char *err)
{
    tp_redis_t *r = n->r;
    snprintf(n->err, sizeof(n->err), "%s: %s", n->name, err);
    if (n->state != NODE_DOWN) {
        n->backoff = BACKOFF_MIN_MS;
    } else {
        n->backoff *= 2;
        if (n->backoff > BACKOFF_MAX_MS)
            n->backoff = BACKOFF_MAX_MS;
    }
    n->state = NODE_DOWN;
    n->retry_at = now_ms(r) + n->backoff;
    fail_list(&n->waiting, n->err);
    if (n->sentinel)
        return;
    if (r->mode == MODE_SINGLE || n == r->master)
        set_up(r, 0, n->err);
    if (r->mode == MODE_SENTINEL && n == r->master) {
        /* the master may have moved: ask the sentinels again */
        r->sentinel_retry_at = now_ms(r);
    }
    if (r->mode == MODE_CLUSTER) {
        snprintf(r->err, sizeof(r->err), "%s", n->err);
        r->slots_refresh_at = now_ms(r) + BACKOFF_MIN_MS;
        cluster_recheck(r);
    }
}

/* A cluster is up when the slot map covers every slot and no node that
 * owns slots is down. */
static void cluster_recheck(tp_redis_t *r)
{
    int up = r->slots_ok;
    for (size_t i = 0; i < 16384 && up; i++)
        up = r->slots[i] != NULL && r->slots[i]->state != NODE_DOWN;
    set_up(r, up, NULL);
}

static tp_rconn_t *node_pick(tp_rnode_t *n)
{
    tp_rconn_t *best = NULL;
    tp_list_t *it;
    int opening = 0;
    for (it = n->conns.next; it != &n->conns; it = it->next) {
        tp_rconn_t *c = tp_container_of(it, tp_rconn_t, link);
        if (c->state != C_READY) {
            opening = 1;
            continue;
        }
        if (best == NULL || c->nsent < best->nsent)
            best = c;
    }
    /* pipelining does the work; another connection only under real load */
    if (!opening && (best == NULL || best->nsent >= PIPELINE_SPLIT) && n->nconns < n->r->max_active)
        conn_open(n, 0);
    return best;
}

static void node_submit(tp_rnode_t *n, tp_rcmd_t *cmd)
{
    tp_redis_t *r = n->r;
    if (n->state == NODE_DOWN && now_ms(r) < n->retry_at) {
        cmd_fail(cmd, n->err);
        return;
    }
    tp_rconn_t *c = node_pick(n);
    if (c != NULL) {
        conn_send(c, cmd);
        return;
    }
    tp_list_insert_tail(&n->waiting, &cmd->link);
}

/* ---- connections: writing ------------------------------------------------------- */

static void mark_dirty(tp_rconn_t *c)
{
    if (!tp_list_linked(&c->dirty_link))
        tp_list_insert_tail(&c->r->dirty, &c->dirty_link);
}

static void conn_send(tp_rconn_t *c, tp_rcmd_t *cmd)
{
    if (cmd->asking) {
        /* ASKING must precede the command on the same connection; its +OK
         * is consumed by a placeholder */
        static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
        tp_rcmd_t *skip = cmd_new(c->r, K_SKIP, NULL, NULL, NULL, 0);
        tp_buf_append(&c->out, asking, sizeof(asking) - 1);
        tp_list_insert_tail(&c->sent, &skip->link);
        c->nsent++;
    }
    tp_buf_append(&c->out, cmd->buf, cmd->len);
    tp_list_insert_tail(&c->sent, &cmd->link);
    c->nsent++;
    mark_dirty(c);
}

static void on_write(uv_write_t *wr, int status);

static void conn_flush(tp_rconn_t *c)
{
    if (c->writing || c->closing || c->state < C_TLS)
        return;
    tp_buf_t *src = &c->out;
    if (c->tls != NULL) {
        /* plaintext goes through the session once TLS is up */
        char err[256];
        if (c->state >= C_HANDSHAKE && c->out.len > 0) {
            if (tp_tls_write(c->tls, c->out.data, c->out.len, err, sizeof(err)) < 0) {
                conn_close(c, err);
                return;
            }
            c->out.len = 0;
        }
        src = tp_tls_pending(c->tls);
    } else if (c->state < C_HANDSHAKE) {
        return;
    }
    if (src->len == 0)
        return;
    /* swap: src keeps collecting while wbuf is on the wire */
    tp_buf_t tmp = c->wbuf;
    c->wbuf = *src;
    *src = tmp;
    src->len = 0;
    uv_buf_t b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        conn_close(c, uv_strerror(n));
        return;
    }
    if ((size_t)n == c->wbuf.len) {
        c->wbuf.len = 0;
        return;
    }
    b.base += n;
    b.len -= (unsigned)n;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        conn_close(c, "write failed");
        return;
    }
    c->writing = 1;
}

static void on_write(uv_write_t *wr, int status)
{
    tp_rconn_t *c = wr->data;
    c->writing = 0;
    c->wbuf.len = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    conn_flush(c);
}

static void on_prepare(uv_prepare_t *p)
{
    tp_redis_t *r = p->data;
    while (!tp_list_empty(&r->dirty)) {
        tp_list_t *l = r->dirty.next;
        tp_list_remove(l);
        conn_flush(tp_container_of(l, tp_rconn_t, dirty_link));
    }
}

/* ---- connections: lifecycle ------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    tp_rconn_t *c = h->data;
    tp_redis_t *r = c->r;
    tp_buf_free(&c->out);
    tp_buf_free(&c->wbuf);
    tp_buf_free(&c->plain);
    tp_tls_free(c->tls);
    if (c->reader != NULL)
        redisReaderFree(c->reader);
    free(c);
    if (--r->handles_open == 0 && r->closing) {
        free(r->rbuf);
        free(r);
    }
}

static void conn_close(tp_rconn_t *c, const char *why)
{
    tp_redis_t *r = c->r;
    tp_rnode_t *n = c->node;
    if (c->closing)
        return;
    int was_ready = c->state == C_READY;
    c->closing = 1;
    c->state = C_CLOSED;
    if (tp_list_linked(&c->dirty_link))
        tp_list_remove(&c->dirty_link);
    if (c == r->ps_conn) {
        r->ps_conn = NULL;
        r->ps_ok = 0;
        r->ps_retry_at =
            now_ms(r) + (r->ps_backoff = r->ps_backoff ? r->ps_backoff * 2 : BACKOFF_MIN_MS);
        if (r->ps_backoff > BACKOFF_MAX_MS)
            r->ps_backoff = BACKOFF_MAX_MS;
        if (!r->closing && r->ps_backoff == BACKOFF_MIN_MS)
            tp_log_warn("redis %s: subscription connection to %s lost: %s", r->name, n->name, why);
        else if (!r->closing)
            tp_log_debug("redis %s: subscription connection to %s lost: %s", r->name, n->name, why);
    } else if (c == r->sw_conn) {
        r->sw_conn = NULL;
        r->sw_backoff = r->sw_backoff ? r->sw_backoff * 2 : BACKOFF_MIN_MS;
        if (r->sw_backoff > BACKOFF_MAX_MS)
            r->sw_backoff = BACKOFF_MAX_MS;
        r->sw_retry_at = now_ms(r) + r->sw_backoff;
    } else {
        tp_list_remove(&c->link);
        n->nconns--;
    }
    char err[900];
    snprintf(err, sizeof(err), "%s: %s", n->name, why);
    /* what was sent may or may not have run: its callers get an error */
    while (!tp_list_empty(&c->sent)) {
        tp_rcmd_t *cmd = tp_container_of(c->sent.next, tp_rcmd_t, link);
        tp_list_remove(&cmd->link);
        if (cmd->kind == K_USER)
            cmd_fail(cmd, err);
        else if (cmd->kind == K_SLOTS) {
            r->slots_refreshing = 0;
            cmd_free(cmd);
        } else if (cmd->kind == K_SENTINEL_MASTER) {
            r->sentinel_asking = 0;
            cmd_free(cmd);
        } else {
            cmd_free(cmd);
        }
    }
    if (!r->closing && !c->pubsub) {
        int others = 0;
        tp_list_t *it;
        for (it = n->conns.next; it != &n->conns; it = it->next)
            others += tp_container_of(it, tp_rconn_t, link)->state == C_READY;
        /* losing the last connection to a node is news (once); retries
         * during backoff and pool trimming are not */
        if (!others && n->state != NODE_DOWN)
            tp_log_warn("redis %s: %s: %s", r->name, n->name, why);
        else
            tp_log_debug("redis %s: %s: %s", r->name, n->name, why);
        if (!others)
            node_down(n, why);
    }
    (void)was_ready;
    if (c->resolving) {
        /* the lookup finishes later; its callback sees closing */
        uv_cancel((uv_req_t *)&c->gai);
        return;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void handshake_cmd(tp_rconn_t *c, tp_rcmd_t *cmd)
{
    conn_send(c, cmd);
    c->pending_handshake++;
}

static void conn_ready(tp_rconn_t *c);

/* TCP (and TLS) is up: authenticate, select the database, subscribe. */
static void conn_handshake(tp_rconn_t *c)
{
    tp_redis_t *r = c->r;
    tp_rnode_t *n = c->node;
    c->state = C_HANDSHAKE;
    const char *pass = n->sentinel ? r->sentinel_password : r->password;
    if (pass != NULL && pass[0] != '\0') {
        if (!n->sentinel && r->username != NULL && r->username[0] != '\0')
            handshake_cmd(c, cmd_format(r, K_HANDSHAKE, "AUTH %s %s", r->username, pass));
        else
            handshake_cmd(c, cmd_format(r, K_HANDSHAKE, "AUTH %s", pass));
    }
    if (!n->sentinel && r->mode != MODE_CLUSTER && r->database != 0)
        handshake_cmd(c, cmd_format(r, K_HANDSHAKE, "SELECT %lld", (long long)r->database));
    if (!n->sentinel && r->mode == MODE_SENTINEL && !c->pubsub)
        handshake_cmd(c, cmd_format(r, K_HANDSHAKE, "ROLE"));
    /* a connection counts as ready only once the server has answered:
     * a stalled server still completes TCP handshakes */
    if (c->pending_handshake == 0)
        handshake_cmd(c, cmd_format(r, K_HANDSHAKE, "PING"));
    mark_dirty(c);
}

static void conn_ready(tp_rconn_t *c)
{
    tp_redis_t *r = c->r;
    tp_rnode_t *n = c->node;
    c->state = C_READY;
    c->connect_deadline = 0;
    if (c->pubsub) {
        if (c == r->sw_conn)
            r->sw_backoff = 0;
        const char *ch = c == r->sw_conn ? "+switch-master" : r->ps_channel;
        conn_send(c, cmd_format(r, K_SUBSCRIBE, "SUBSCRIBE %s", ch));
        return;
    }
    if (n->state != NODE_UP) {
        if (n->state == NODE_DOWN)
            tp_log_info("redis %s: %s answers again", r->name, n->name);
        n->state = NODE_UP;
        n->backoff = 0;
        if (r->mode == MODE_CLUSTER)
            cluster_recheck(r);
        else if (n == r->master)
            set_up(r, 1, NULL);
    }
    while (!tp_list_empty(&n->waiting)) {
        tp_rcmd_t *cmd = tp_container_of(n->waiting.next, tp_rcmd_t, link);
        tp_list_remove(&cmd->link);
        conn_send(c, cmd);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    tp_rconn_t *c = h->data;
    (void)hint;
    buf->base = c->r->rbuf;
    buf->len = RBUF_SIZE;
}

static void on_connect(uv_connect_t *cr, int status)
{
    tp_rconn_t *c = cr->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->tls != NULL) {
        char err[512];
        c->state = C_TLS;
        if (tp_tls_handshake(c->tls, err, sizeof(err)) < 0) {
            conn_close(c, err);
            return;
        }
        mark_dirty(c);
        return;
    }
    conn_handshake(c);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    tp_rconn_t *c = gai->data;
    c->resolving = 0;
    if (c->closing) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    if (status < 0 || res == NULL) {
        char why[160];
        snprintf(why, sizeof(why), "cannot resolve host: %s",
                 status < 0 ? uv_strerror(status) : "no address");
        if (res != NULL)
            uv_freeaddrinfo(res);
        conn_close(c, why);
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(c->node->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->node->port);
    c->state = C_CONNECTING;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss, on_connect);
    if (rc < 0)
        conn_close(c, uv_strerror(rc));
}

static tp_rconn_t *conn_open(tp_rnode_t *n, int pubsub)
{
    tp_redis_t *r = n->r;
    tp_rconn_t *c = tp_calloc(1, sizeof(*c));
    c->r = r;
    c->node = n;
    c->pubsub = pubsub != 0;
    c->reader = redisReaderCreate();
    tp_list_init(&c->sent);
    tp_list_init(&c->dirty_link);
    tp_list_init(&c->link);
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    r->handles_open++;
    if (!pubsub) {
        tp_list_insert_tail(&n->conns, &c->link);
        n->nconns++;
    }
    if (r->tls != NULL) {
        c->tls = tp_tls_new(r->tls, n->host);
        if (c->tls == NULL) {
            conn_close(c, "cannot start a TLS session");
            return NULL;
        }
    }
    c->state = C_RESOLVING;
    c->connect_deadline = now_ms(r) + r->timeout_ms;
    c->resolving = 1;
    c->gai.data = c;
    char port[8];
    snprintf(port, sizeof(port), "%u", n->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(r->loop, &c->gai, on_resolved, n->host, port, &hints);
    if (rc < 0) {
        c->resolving = 0;
        conn_close(c, uv_strerror(rc));
        return NULL;
    }
    return c;
}

/* ---- replies ---------------------------------------------------------------------- */

static int reply_str_eq(const redisReply *rep, const char *s)
{
    return rep != NULL && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) &&
           rep->len == strlen(s) && strncasecmp(rep->str, s, rep->len) == 0;
}

static void on_pubsub_reply(tp_rconn_t *c, redisReply *rep)
{
    tp_redis_t *r = c->r;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        !reply_str_eq(rep->element[0], "message"))
        return;
    const redisReply *ch = rep->element[1], *payload = rep->element[2];
    if (ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return;
    if (c == r->sw_conn) {
        /* "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>" */
        char name[256], oip[128], nip[128];
        unsigned oport, nport;
        if (sscanf(payload->str, "%255s %127s %u %127s %u", name, oip, &oport, nip, &nport) == 5 &&
            strcmp(name, r->master_name) == 0) {
            tp_rnode_t *m = node_get(r, nip, nport, 0);
            tp_log_warn("redis %s: sentinel reports a failover of %s: %s:%u -> %s", r->name, name,
                        oip, oport, m->name);
            if (m != r->master) {
                tp_rnode_t *old = r->master;
                r->master = m;
                m->wanted = 1;
                if (old != NULL) {
                    old->wanted = 0;
                    while (!tp_list_empty(&old->conns))
                        conn_close(tp_container_of(old->conns.next, tp_rconn_t, link),
                                   "no longer the master");
                    while (!tp_list_empty(&old->waiting)) {
                        tp_rcmd_t *cmd = tp_container_of(old->waiting.next, tp_rcmd_t, link);
                        tp_list_remove(&cmd->link);
                        node_submit(m, cmd);
                    }
                }
                if (r->ps_conn != NULL && r->ps_conn->node != m)
                    conn_close(r->ps_conn, "following the new master");
            }
        }
        return;
    }
    if (r->ps_cb != NULL)
        r->ps_cb(r->ps_arg, ch->str, payload->str, payload->len);
}

static void cluster_slots_reply(tp_redis_t *r, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
        snprintf(r->err, sizeof(r->err), "CLUSTER SLOTS: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "no slots (is the cluster created?)");
        return;
    }
    for (size_t i = 0; i < 16384; i++)
        r->slots[i] = NULL;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        const redisReply *host = e->element[2]->element[0], *port = e->element[2]->element[1];
        if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER)
            continue;
        tp_rnode_t *n = node_get(r, host->str, (unsigned)port->integer, 0);
        n->wanted = 1;
        long long a = e->element[0]->integer, b = e->element[1]->integer;
        for (long long s = a; s <= b && s < 16384; s++)
            if (s >= 0)
                r->slots[s] = n;
    }
    int covered = 1;
    for (size_t i = 0; i < 16384; i++)
        covered &= r->slots[i] != NULL;
    int was = r->slots_ok;
    r->slots_ok = covered;
    if (!covered)
        snprintf(r->err, sizeof(r->err), "the cluster does not cover every slot");
    if (covered && !was)
        tp_log_info("redis %s: cluster slot map loaded", r->name);
    cluster_recheck(r);
    while (covered && !tp_list_empty(&r->unrouted)) {
        tp_rcmd_t *cmd = tp_container_of(r->unrouted.next, tp_rcmd_t, link);
        tp_list_remove(&cmd->link);
        route(r, cmd);
    }
}

static void sentinel_master_reply(tp_redis_t *r, tp_rconn_t *c, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING) {
        snprintf(r->err, sizeof(r->err), "sentinel %s does not know master \"%s\"%s%s",
                 c->node->name, r->master_name, rep->type == REDIS_REPLY_ERROR ? ": " : "",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        tp_log_warn("redis %s: %s", r->name, r->err);
        r->sentinel_backoff = r->sentinel_backoff ? r->sentinel_backoff * 2 : BACKOFF_MIN_MS;
        if (r->sentinel_backoff > BACKOFF_MAX_MS)
            r->sentinel_backoff = BACKOFF_MAX_MS;
        r->sentinel_retry_at = now_ms(r) + r->sentinel_backoff;
        return;
    }
    unsigned port = (unsigned)atoi(rep->element[1]->str ? rep->element[1]->str : "0");
    tp_rnode_t *m = node_get(r, rep->element[0]->str, port, 0);
    r->sentinel_backoff = 0;
    if (m != r->master) {
        if (r->master != NULL) {
            r->master->wanted = 0;
            while (!tp_list_empty(&r->master->conns))
                conn_close(tp_container_of(r->master->conns.next, tp_rconn_t, link),
                           "no longer the master");
        }
        tp_log_info("redis %s: sentinel %s says master \"%s\" is %s", r->name, c->node->name,
                    r->master_name, m->name);
        r->master = m;
    }
    m->wanted = 1;
    if (m->state == NODE_DOWN)
        m->retry_at = now_ms(r);
    while (!tp_list_empty(&r->unrouted)) {
        tp_rcmd_t *cmd = tp_container_of(r->unrouted.next, tp_rcmd_t, link);
        tp_list_remove(&cmd->link);
        node_submit(m, cmd);
    }
}

/* An error reply that says the command belongs elsewhere (cluster) or
 * that the server is no longer what we think (sentinel). Returns 1 when
 * the command was sent again. */
static int redirect(tp_rconn_t *c, tp_rcmd_t *cmd, const redisReply *rep)
{
    tp_redis_t *r = c->r;
    if (rep->type != REDIS_REPLY_ERROR)
        return 0;
    if (r->mode == MODE_SENTINEL && strncmp(rep->str, "READONLY", 8) == 0) {
        r->sentinel_retry_at = now_ms(r);
        return 0;
    }
    if (r->mode != MODE_CLUSTER || cmd->redirects >= REDIRECTS_MAX)
        return 0;
    unsigned slot;
    char addr[300];
    int kind = tp_redis_parse_redirect(rep->str, &slot, addr, sizeof(addr));
    if (kind == 0)
        return 0;
    int moved = kind == 1;
    tp_rnode_t *n = node_parse(r, addr, 0);
    if (n == NULL)
        return 0;
    cmd->redirects++;
    if (moved) {
        r->slots[slot] = n;
        n->wanted = 1;
        if (!r->slots_refreshing)
            r->slots_refresh_at = now_ms(r);
        cmd->asking = 0;
    } else {
        cmd->asking = 1;
    }
    node_submit(n, cmd);
    return 1;
}

static void on_reply(tp_rconn_t *c, redisReply *rep)
{
    tp_redis_t *r = c->r;
    if (tp_list_empty(&c->sent)) {
        if (c->pubsub)
            on_pubsub_reply(c, rep);
        freeReplyObject(rep);
        return;
    }
    tp_rcmd_t *cmd = tp_container_of(c->sent.next, tp_rcmd_t, link);
    tp_list_remove(&cmd->link);
    if (--c->nsent == 0)
        c->idle_since = now_ms(r);
    switch (cmd->kind) {
    case K_USER:
        if (redirect(c, cmd, rep))
            break;
        cmd_count(cmd, rep->type == REDIS_REPLY_ERROR);
        if (cmd->cb != NULL)
            cmd->cb(cmd->arg, rep, NULL);
        cmd_free(cmd);
        break;
    case K_HANDSHAKE:
        cmd_free(cmd);
        c->pending_handshake--;
        if (rep->type == REDIS_REPLY_ERROR) {
            char why[300];
            snprintf(why, sizeof(why), "%s", rep->str);
            freeReplyObject(rep);
            conn_close(c, why);
            return;
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(rep->element[0]->str, "master") != 0) {
            /* ROLE: a sentinel pointed us at a replica (failover in progress) */
            r->sentinel_retry_at = now_ms(r) + BACKOFF_MIN_MS;
            freeReplyObject(rep);
            conn_close(c, "not a master (failover in progress?)");
            return;
        }
        if (c->pending_handshake == 0)
            conn_ready(c);
        break;
    case K_SUBSCRIBE:
        if (c == r->ps_conn) {
            r->ps_backoff = 0;
            r->ps_ok = 1;
            tp_log_info("redis %s: subscribed to %s on %s", r->name, r->ps_channel, c->node->name);
        }
        cmd_free(cmd);
        break;
    case K_SLOTS:
        r->slots_refreshing = 0;
        cluster_slots_reply(r, rep);
        cmd_free(cmd);
        break;
    case K_SENTINEL_MASTER:
        r->sentinel_asking = 0;
        sentinel_master_reply(r, c, rep);
        cmd_free(cmd);
        break;
    default:
        cmd_free(cmd);
        break;
    }
    freeReplyObject(rep);
}

static void feed(tp_rconn_t *c, const char *p, size_t n)
{
    if (redisReaderFeed(c->reader, p, n) != REDIS_OK) {
        conn_close(c, "protocol error");
        return;
    }
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(c->reader, &rep) != REDIS_OK) {
            conn_close(c, "protocol error in reply");
            return;
        }
        if (rep == NULL)
            return;
        on_reply(c, rep);
        if (c->closing)
            return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tp_rconn_t *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        conn_close(c,
                   nread == UV_EOF ? "connection closed by the server" : uv_strerror((int)nread));
        return;
    }
    if (c->tls == NULL) {
        feed(c, buf->base, (size_t)nread);
        return;
    }
    char err[512];
    if (c->state == C_TLS) {
        tp_tls_feed(c->tls, buf->base, (size_t)nread);
        int rc = tp_tls_handshake(c->tls, err, sizeof(err));
        if (rc < 0) {
            conn_close(c, err);
            return;
        }
        mark_dirty(c);
        if (rc == 0)
            return;
        conn_handshake(c);
        nread = 0;
    }
    c->plain.len = 0;
    tp_tls_feed(c->tls, buf->base, (size_t)nread);
    int rc = tp_tls_read_all(c->tls, &c->plain, err, sizeof(err));
    if (c->plain.len > 0)
        feed(c, c->plain.data, c->plain.len);
    if (c->closing)
        return;
    if (rc != 0)
        conn_close(c, rc == TP_TLS_CLOSED ? "TLS session closed by the server" : err);
    else if (tp_tls_pending(c->tls)->len > 0)
        mark_dirty(c);
}

/* ---- routing ---------------------------------------------------------------------- */

static tp_rnode_t *any_cluster_node(tp_redis_t *r)
{
    tp_list_t *it;
    tp_rnode_t *fallback = NULL;
    for (it = r->nodes.next; it != &r->nodes; it = it->next) {
        tp_rnode_t *n = tp_container_of(it, tp_rnode_t, link);
        if (n->sentinel)
            continue;
        if (n->state == NODE_UP)
            return n;
        if (fallback == NULL || (fallback->state == NODE_DOWN && n->state != NODE_DOWN))
            fallback = n;
    }
    return fallback;
}

static void route(tp_redis_t *r, tp_rcmd_t *cmd)
{
    switch (r->mode) {
    case MODE_SINGLE:
        node_submit(r->master, cmd);
        return;
    case MODE_SENTINEL:
        if (r->master == NULL) {
            if (r->sentinel_backoff > 0 && now_ms(r) < r->sentinel_retry_at) {
                cmd_fail(cmd, r->err);
                return;
            }
            tp_list_insert_tail(&r->unrouted, &cmd->link);
            sentinel_ask(r);
            return;
        }
        node_submit(r->master, cmd);
        return;
    default:
        if (!r->slots_ok) {
            tp_list_insert_tail(&r->unrouted, &cmd->link);
            slots_refresh(r);
            return;
        }
        node_submit(cmd->slot >= 0 ? r->slots[cmd->slot] : any_cluster_node(r), cmd);
        return;
    }
}

/* Sends an internal command to node <n>. */
static void internal_cmd(tp_rnode_t *n, tp_rcmd_t *cmd)
{
    tp_rconn_t *c = node_pick(n);
    if (c != NULL)
        conn_send(c, cmd);
    else
        tp_list_insert_tail(&n->waiting, &cmd->link);
}

static void slots_refresh(tp_redis_t *r)
{
    if (r->slots_refreshing || r->closing)
        return;
    /* ask a node that answers, or the next seed in turn */
    tp_rnode_t *n = any_cluster_node(r);
    if (n == NULL)
        return;
    if (n->state == NODE_DOWN && now_ms(r) < n->retry_at) {
        r->slots_refresh_at = n->retry_at;
        if (!r->slots_ok)
            fail_list(&r->unrouted, n->err);
        return;
    }
    r->slots_refreshing = 1;
    r->slots_refresh_at = 0;
    internal_cmd(n, cmd_format(r, K_SLOTS, "CLUSTER SLOTS"));
}

static void sentinel_ask(tp_redis_t *r)
{
    if (r->sentinel_asking || r->closing)
        return;
    /* the first sentinel that is not in backoff; rotate on failures */
    tp_list_t *it;
    tp_rnode_t *pick = NULL;
    for (it = r->nodes.next; it != &r->nodes; it = it->next) {
        tp_rnode_t *n = tp_container_of(it, tp_rnode_t, link);
        if (!n->sentinel)
            continue;
        if (n->state != NODE_DOWN || now_ms(r) >= n->retry_at) {
            pick = n;
            break;
        }
    }
    if (pick == NULL) {
        snprintf(r->err, sizeof(r->err), "no sentinel answers for master \"%s\"", r->master_name);
        r->sentinel_backoff = r->sentinel_backoff ? r->sentinel_backoff * 2 : BACKOFF_MIN_MS;
        if (r->sentinel_backoff > BACKOFF_MAX_MS)
            r->sentinel_backoff = BACKOFF_MAX_MS;
        r->sentinel_retry_at = now_ms(r) + r->sentinel_backoff;
        fail_list(&r->unrouted, r->err);
        set_up(r, 0, r->err);
        return;
    }
    /* keep sentinels in order but try the next one first next time */
    tp_list_remove(&pick->link);
    tp_list_insert_tail(&r->nodes, &pick->link);
    r->sentinel_asking = 1;
    r->sentinel_retry_at = 0;
    internal_cmd(pick, cmd_format(r, K_SENTINEL_MASTER, "SENTINEL get-master-addr-by-name %s",
                                  r->master_name));
    if (r->sw_conn == NULL && now_ms(r) >= r->sw_retry_at)
        r->sw_conn = conn_open(pick, 1);
}

/* ---- the tick ----------------------------------------------------------------------- */

static void expire_list(tp_list_t *l, uint64_t now, const char *why)
{
    while (!tp_list_empty(l)) {
        tp_rcmd_t *cmd = tp_container_of(l->next, tp_rcmd_t, link);
        if (cmd->deadline > now)
            break;
        if (cmd->kind == K_USER)
            cmd_fail(cmd, why);
        else {
            tp_list_remove(&cmd->link);
            if (cmd->kind == K_SLOTS)
                cmd->r->slots_refreshing = 0;
            if (cmd->kind == K_SENTINEL_MASTER)
                cmd->r->sentinel_asking = 0;
            cmd_free(cmd);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    tp_redis_t *r = t->data;
    uint64_t now = now_ms(r);
    char why[800];
    tp_list_t *it, *next;

    for (it = r->nodes.next; it != &r->nodes; it = next) {
        next = it->next;
        tp_rnode_t *n = tp_container_of(it, tp_rnode_t, link);
        snprintf(why, sizeof(why), "%s: timed out after %llu ms", n->name,
                 (unsigned long long)r->timeout_ms);
        /* a connection whose oldest command is overdue is stuck or dead;
         * beyond max_idle, connections idle for a minute are closed */
        tp_list_t *ci, *cn;
        uint32_t idle = 0;
        for (ci = n->conns.next; ci != &n->conns; ci = cn) {
            cn = ci->next;
            tp_rconn_t *c = tp_container_of(ci, tp_rconn_t, link);
            if (c->state == C_READY && c->nsent == 0 && ++idle > r->max_idle &&
                now - c->idle_since > 60000) {
                tp_list_remove(&c->link);
                tp_list_insert_head(&n->conns, &c->link); /* keep the others counted */
                conn_close(c, "idle beyond optimisation_max_idle");
                continue;
            }
            int overdue = !tp_list_empty(&c->sent) &&
                          tp_container_of(c->sent.next, tp_rcmd_t, link)->deadline <= now;
            if (overdue)
                conn_close(c, "timed out waiting for a reply");
            else if (c->connect_deadline != 0 && c->connect_deadline <= now)
                conn_close(c, "timed out connecting");
        }
        expire_list(&n->waiting, now, why);
        /* reconnect by ourselves: nodes we depend on keep one connection */
        int need = n->wanted;
        if (need && n->nconns == 0 && (n->state != NODE_DOWN || now >= n->retry_at))
            conn_open(n, 0);
    }
    snprintf(why, sizeof(why), "%s", r->err[0] ? r->err : "timed out waiting for the server");
    expire_list(&r->unrouted, now, why);

    tp_rconn_t *subs[2] = {r->ps_conn, r->sw_conn};
    for (int i = 0; i < 2; i++) {
        tp_rconn_t *c = subs[i];
        if (c != NULL && ((!tp_list_empty(&c->sent) &&
                           tp_container_of(c->sent.next, tp_rcmd_t, link)->deadline <= now) ||
                          (c->connect_deadline != 0 && c->connect_deadline <= now)))
            conn_close(c, "timed out subscribing");
    }

    if (r->mode == MODE_CLUSTER && (!r->slots_ok || r->slots_refresh_at != 0) &&
        now >= r->slots_refresh_at)
        slots_refresh(r);
    if (r->mode == MODE_SENTINEL && r->sentinel_retry_at != 0 && now >= r->sentinel_retry_at) {
        r->sentinel_retry_at = 0;
        sentinel_ask(r);
    }
    if (r->mode == MODE_SENTINEL && r->sw_conn == NULL && r->master != NULL &&
        now >= r->sw_retry_at)
        sentinel_ask(r);

    /* the subscription follows the data node */
    if (r->ps_channel != NULL && r->ps_conn == NULL && now >= r->ps_retry_at) {
        tp_rnode_t *n = r->mode == MODE_CLUSTER ? any_cluster_node(r) : r->master;
        if (n != NULL)
            r->ps_conn = conn_open(n, 1);
    }
}

static void on_idle(uv_idle_t *h)
{
    tp_redis_t *r = h->data;
    tp_list_t done;
    tp_list_init(&done);
    /* take the batch: callbacks that fail again land in the next one */
    if (!tp_list_empty(&r->completed)) {
        done.next = r->completed.next;
        done.prev = r->completed.prev;
        done.next->prev = &done;
        done.prev->next = &done;
        tp_list_init(&r->completed);
    }
    while (!tp_list_empty(&done)) {
        tp_rcmd_t *cmd = tp_container_of(done.next, tp_rcmd_t, link);
        tp_list_remove(&cmd->link);
        cmd_count(cmd, 1);
        if (cmd->cb != NULL)
            cmd->cb(cmd->arg, NULL, cmd->err);
        cmd_free(cmd);
    }
    if (tp_list_empty(&r->completed))
        uv_idle_stop(h);
}

/* ---- public API ------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? tp_strdup(s) : NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    tp_redis_t *r = h->data;
    if (--r->handles_open == 0) {
        free(r->rbuf);
        free(r);
    }
}

tp_redis_t *tp_redis_new(uv_loop_t *loop, const tp_redis_conf_t *st, const char *name, char *err,
                         size_t errlen)
{
    tp_redis_t *r = tp_calloc(1, sizeof(*r));
    r->loop = loop;
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->username = dup_or_null(st->username);
    r->password = dup_or_null(st->password);
    r->sentinel_password = dup_or_null(st->sentinel_password);
    r->master_name = dup_or_null(st->master_name);
    r->database = st->database;
    r->timeout_ms = (uint64_t)(st->timeout > 0 ? st->timeout : 5) * 1000;
    r->max_active = st->max_active > 0 ? (uint32_t)st->max_active : 500;
    r->max_idle = st->max_idle > 0 ? (uint32_t)st->max_idle : 100;
    tp_list_init(&r->nodes);
    tp_list_init(&r->unrouted);
    tp_list_init(&r->completed);
    tp_list_init(&r->dirty);
    r->mode = r->master_name != NULL ? MODE_SENTINEL
              : st->enable_cluster   ? MODE_CLUSTER
                                     : MODE_SINGLE;

    /* Tyk's address rule: addrs, else hosts, else host:port */
    size_t naddrs = st->addrs.n;
    if (naddrs == 0 && st->hosts.n == 0) {
        char hp[300];
        snprintf(hp, sizeof(hp), "%s:%lld", st->host ? st->host : "localhost",
                 (long long)(st->port ? st->port : 6379));
        if (node_parse(r, hp, r->mode == MODE_SENTINEL) == NULL) {
            snprintf(err, errlen, "storage.host/port: invalid address \"%s\"", hp);
            goto err;
        }
    }
    const tp_strlist_t *list = naddrs > 0 ? &st->addrs : &st->hosts;
    for (size_t i = 0; i < list->n; i++)
        if (node_parse(r, list->v[i], r->mode == MODE_SENTINEL) == NULL) {
            snprintf(err, errlen, "storage.%s[%zu]: invalid address \"%s\" (expected host:port)",
                     naddrs > 0 ? "addrs" : "hosts", i, list->v[i]);
            goto err;
        }
    if (r->mode == MODE_SINGLE) {
        r->master = tp_container_of(r->nodes.next, tp_rnode_t, link);
        if (list->n > 1)
            tp_log_warn("redis %s: %zu addresses but neither enable_cluster nor master_name: "
                        "using %s only",
                        name, list->n, r->master->name);
    }
    if (r->mode == MODE_CLUSTER)
        r->slots = tp_calloc(16384, sizeof(*r->slots));
    if (st->use_ssl) {
        r->tls = tp_redis_tls_ctx(st, err, errlen);
        if (r->tls == NULL)
            goto err;
    }
    r->rbuf = tp_malloc(RBUF_SIZE);
    uv_timer_init(loop, &r->timer);
    uv_prepare_init(loop, &r->prepare);
    uv_idle_init(loop, &r->idle);
    r->timer.data = r->prepare.data = r->idle.data = r;
    r->handles_open = 3;
    uv_timer_start(&r->timer, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&r->timer);
    uv_prepare_start(&r->prepare, on_prepare);
    uv_unref((uv_handle_t *)&r->prepare);
    return r;
err:
    while (!tp_list_empty(&r->nodes)) {
        tp_rnode_t *n = tp_container_of(r->nodes.next, tp_rnode_t, link);
        tp_list_remove(&n->link);
        free(n->host);
        free(n);
    }
    free(r->username);
    free(r->password);
    free(r->sentinel_password);
    free(r->master_name);
    free(r);
    return NULL;
}

int tp_redis_check_conf(const tp_redis_conf_t *st, char *err, size_t errlen)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    tp_redis_t *r = tp_redis_new(&loop, st, "check", err, errlen);
    if (r != NULL) {
        tp_redis_free(r);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    return r != NULL ? 0 : -1;
}

void tp_redis_connect(tp_redis_t *r)
{
    if (r->mode == MODE_SINGLE) {
        r->master->wanted = 1;
        conn_open(r->master, 0);
    } else if (r->mode == MODE_CLUSTER) {
        slots_refresh(r);
    } else {
        sentinel_ask(r);
    }
}

static tp_rcmd_t *submit(tp_redis_t *r, tp_redis_cb cb, void *arg, char *buf, int len)
{
    tp_rcmd_t *cmd = cmd_new(r, K_USER, cb, arg, buf, len);
    if (len <= 0 || buf == NULL) {
        cmd_fail(cmd, "invalid command format");
        return cmd;
    }
    if (r->closing) {
        cmd_fail(cmd, "client closed");
        return cmd;
    }
    if (r->mode == MODE_CLUSTER) {
        /* the key, from the RESP bytes: *N \r\n $len \r\n name \r\n $len \r\n key */
        const char *p = buf;
        int argc = atoi(p + 1);
        const char *name = strchr(p, '\n') + 1;
        size_t nlen = (size_t)atoi(name + 1);
        name = strchr(name, '\n') + 1;
        int ki = tp_redis_key_index(name, nlen, argc);
        const char *arg_p = name + nlen + 2;
        for (int i = 1; i < ki && arg_p < buf + len; i++)
            arg_p = strchr(arg_p, '\n') + 1 + atoi(arg_p + 1) + 2;
        if (ki > 0 && arg_p < buf + len) {
            size_t klen = (size_t)atoi(arg_p + 1);
            cmd->slot = (int)tp_redis_slot(strchr(arg_p, '\n') + 1, klen);
        }
    }
    route(r, cmd);
    return cmd;
}

tp_rcmd_t *tp_redis_cmd(tp_redis_t *r, tp_redis_cb cb, void *arg, const char *fmt, ...)
{
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    return submit(r, cb, arg, buf, len);
}

tp_rcmd_t *tp_redis_cmdv(tp_redis_t *r, tp_redis_cb cb, void *arg, int argc, const char **argv,
                         const size_t *argvlen)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    return submit(r, cb, arg, buf, len);
}

void tp_redis_cancel(tp_rcmd_t *cmd)
{
    cmd->cb = NULL;
}

void tp_redis_subscribe(tp_redis_t *r, const char *channel, tp_redis_msg_cb cb, void *arg)
{
    free(r->ps_channel);
    r->ps_channel = tp_strdup(channel);
    r->ps_cb = cb;
    r->ps_arg = arg;
    r->ps_retry_at = 0;
    if (r->ps_conn != NULL)
        conn_close(r->ps_conn, "subscription changed");
}

int tp_redis_subscribed(const tp_redis_t *r)
{
    return r->ps_ok;
}

int tp_redis_up(const tp_redis_t *r, uint64_t *since_ms, const char **err)
{
    if (since_ms != NULL)
        *since_ms = r->up_since;
    if (err != NULL)
        *err = r->err;
    return r->up;
}

const char *tp_redis_describe(const tp_redis_t *r, char *buf, size_t n)
{
    if (r->mode == MODE_SINGLE) {
        snprintf(buf, n, "standalone server %s%s", r->master->name, r->tls ? " over TLS" : "");
        return buf;
    }
    if (r->mode == MODE_SENTINEL) {
        snprintf(buf, n, "sentinel master \"%s\" at %s%s", r->master_name,
                 r->master ? r->master->name : "(not known yet)", r->tls ? " over TLS" : "");
        return buf;
    }
    int nodes = 0, owners = 0;
    tp_list_t *it;
    for (it = r->nodes.next; it != &r->nodes; it = it->next) {
        const tp_rnode_t *node = tp_container_of(it, tp_rnode_t, link);
        int owns = 0;
        for (size_t i = 0; i < 16384 && !owns; i++)
            owns = r->slots[i] == node;
        nodes++;
        owners += owns;
    }
    snprintf(buf, n, "cluster: %d known nodes, %d own slots%s%s", nodes, owners,
             r->slots_ok ? "" : " (slot map incomplete)", r->tls ? ", over TLS" : "");
    return buf;
}

void tp_redis_free(tp_redis_t *r)
{
    r->closing = 1;
    /* the subscriptions point at nodes: close them first */
    if (r->ps_conn != NULL)
        conn_close(r->ps_conn, "client closed");
    if (r->sw_conn != NULL)
        conn_close(r->sw_conn, "client closed");
    tp_list_t *it;
    while (!tp_list_empty(&r->nodes)) {
        tp_rnode_t *n = tp_container_of(r->nodes.next, tp_rnode_t, link);
        while (!tp_list_empty(&n->conns))
            conn_close(tp_container_of(n->conns.next, tp_rconn_t, link), "client closed");
        fail_list(&n->waiting, "client closed");
        tp_list_remove(&n->link);
        free(n->host);
        free(n);
    }
    (void)it;
    fail_list(&r->unrouted, "client closed");
    /* the callbacks of failed commands still run, right now (and any
     * command they send fails at once, being closed) */
    while (!tp_list_empty(&r->completed))
        on_idle(&r->idle);
    tp_tls_ctx_unref(r->tls);
    free(r->slots);
    free(r->username);
    free(r->password);
    free(r->sentinel_password);
    free(r->master_name);
    free(r->ps_channel);
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&r->idle, on_handle_closed);
}
