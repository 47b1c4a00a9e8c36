/*
 * worker/tp_upstream.c: per-host pools of keep-alive upstream connections,
 * host lookups, connecting, and the upstream side's timers.
 *
 * Idle pooled connections keep reading (into the shared buffer) so that an
 * upstream that closes them is noticed at once; any byte or EOF on an idle
 * connection drops it from the pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_strmap.h"
#include "tp_worker.h"

/* How long a resolved address is used before it is looked up again. */
#define TP_DNS_TTL_MS 30000

/* Pools live as long as the worker (a new generation may still name the
 * same host), each allocated once so that requests and connections can
 * point at them. */
/* The session settings of an https target: its API's, then tyk.conf's
 * proxy_ssl_* (TYK-COMPAT 19.3). NULL (logged) when they cannot be used. */
static tp_tls_ctx_t *uptls_ctx(tp_worker_t *w, const tp_target_t *t)
{
    const tp_conf_t *c = w->conf;
    const tp_uptls_t *u = t->tls;
    char err[512];
    tp_tls_ctx_t *ctx = tp_tls_ctx_new(TP_TLS_CLIENT, err, sizeof(err));
    if (ctx == NULL)
        goto fail;
    int64_t min = u->min_version ? u->min_version : c->proxy_ssl.min_version;
    int64_t max = u->max_version ? u->max_version : c->proxy_ssl.max_version;
    if (u->max_version > 0) /* Tyk's processSpec quirk: an API maximum means TLS 1.2 */
        max = min > TP_TLS_V12 ? min : TP_TLS_V12;
    if (tp_tls_ctx_versions(ctx, min, max, err, sizeof(err)) < 0)
        goto fail;
    tp_strlist_t names = c->proxy_ssl.ciphers;
    char *own = NULL, *list[64];
    if (u->ciphers != NULL) {
        own = tp_strdup(u->ciphers);
        names.n = 0;
        names.v = list;
        for (char *save, *tok = strtok_r(own, ",", &save); tok != NULL && names.n < 64;
             tok = strtok_r(NULL, ",", &save))
            list[names.n++] = tok;
    }
    size_t bad;
    int rc = tp_tls_ctx_ciphers(ctx, names.v, names.n, &bad, err, sizeof(err));
    free(own);
    if (rc < 0)
        goto fail;
    if (c->proxy_ssl.insecure_skip_verify || u->skip_verify)
        tp_tls_ctx_verify(ctx, TP_TLS_VERIFY_NONE);
    tp_tls_ctx_force_cn(ctx, c->proxy_ssl.force_common_name_check || u->force_cn);
    tp_tls_ctx_renegotiation(ctx, !c->proxy_ssl.disable_renegotiation);
    if (u->client_pem != NULL) {
        size_t n = strlen(u->client_pem);
        if (tp_tls_ctx_add_cert(ctx, u->client_pem, n, u->client_pem, n, NULL, u->client_file, err,
                                sizeof(err)) < 0)
            goto fail;
    }
    return ctx;
fail:
    tp_log_error("upstream %s: TLS settings cannot be used: %s", t->raw, err);
    tp_tls_ctx_unref(ctx);
    return NULL;
}

/* Pools live as long as the worker (a new generation may still name the
 * same host with the same settings), each allocated once so that requests
 * and connections can point at them. An https pool is keyed by its TLS
 * settings too: connections made with one set never serve another. */
static tp_pool_t *pool_for(tp_worker_t *w, const tp_target_t *t)
{
    const char *host = t->url.host;
    uint16_t port = t->url.port;
    tp_buf_t key = {0};
    tp_buf_printf(&key, "%s:%u", host, port);
    const tp_uptls_t *u = t->tls;
    if (u != NULL) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a of the client certificate */
        for (const char *p = u->client_pem; p != NULL && *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        tp_buf_printf(&key, " tls %d %d %lld %lld %s %llx", u->skip_verify, u->force_cn,
                      (long long)u->min_version, (long long)u->max_version,
                      u->ciphers ? u->ciphers : "", (unsigned long long)h);
    }
    int added;
    uint32_t idx = *tp_strmap_put(&w->pool_map, tp_buf_cstr(&key), (uint32_t)w->npools, &added);
    tp_buf_free(&key);
    if (!added)
        return w->pools[idx];
    w->pools = tp_realloc(w->pools, (w->npools + 1) * sizeof(*w->pools));
    tp_pool_t *p = tp_calloc(1, sizeof(*p));
    w->pools[w->npools++] = p;
    tp_list_init(&p->waiters);
    tp_list_init(&p->idle);
    p->host = tp_strdup(host);
    p->port = port;
    size_t n = strlen(host) + 16;
    p->name = tp_malloc(n);
    snprintf(p->name, n, "%s:%u", host, port);
    if (u != NULL) {
        p->https = 1;
        p->tls = uptls_ctx(w, t);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&p->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p->addr;
    if (uv_ip4_addr(host, port, s4) == 0 || uv_ip6_addr(host, port, s6) == 0) {
        p->literal = 1;
        p->have_addr = 1;
    }
    return p;
}

tp_pool_t *tp_upstream_pool(tp_worker_t *w, const tp_target_t *t)
{
    return pool_for(w, t);
}

void tp_upstream_generation(tp_worker_t *w, const tp_snapshot_t *snap)
{
    /* which pool each target of this generation uses */
    tp_pool_t ***tp = &w->target_pool[snap->slot];
    *tp = tp_realloc(*tp, (snap->ntargets + 1) * sizeof(**tp));
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_api_t *api = snap->apis[i];
        for (size_t j = 0; j < api->ntargets; j++) {
            const tp_target_t *t = &api->targets[j];
            (*tp)[t->idx] = pool_for(w, t);
        }
    }
}

/* ---- timers --------------------------------------------------------------- */

static void on_up_timer(uv_timer_t *t)
{
    tp_upconn_t *up = t->data;
    uint64_t now = uv_now(&up->w->loop);
    up->timer_due = 0;
    if (up->closing || up->deadline == 0)
        return;
    if (now < up->deadline) {
        uv_timer_start(&up->timer, on_up_timer, up->deadline - now, 0);
        up->timer_due = up->deadline;
        return;
    }
    if (up->req != NULL)
        tp_proxy_up_timeout(up);
    else
        tp_upstream_close(up);
}

void tp_upstream_set_deadline(tp_upconn_t *up, uint64_t ms)
{
    uint64_t deadline = uv_now(&up->w->loop) + ms;
    up->deadline = deadline;
    if (up->timer_due != 0 && up->timer_due <= deadline)
        return;
    uv_timer_start(&up->timer, on_up_timer, ms, 0);
    up->timer_due = deadline;
}

/* ---- closing -------------------------------------------------------------- */

static void up_handle_closed(tp_upconn_t *up)
{
    if (--up->handles_open == 0)
        free(up);
}

static void on_timer_closed(uv_handle_t *h)
{
    up_handle_closed(h->data);
}

static void on_tcp_closed(uv_handle_t *h)
{
    up_handle_closed(((tp_io_t *)h->data)->data);
}

void tp_upstream_close(tp_upconn_t *up)
{
    if (up->closing)
        return;
    up->closing = 1;
    if (up->state == TP_UP_IDLE) {
        tp_list_remove(&up->link);
        up->pool->nidle--;
    }
    if (up->rbuf != NULL) {
        tp_block_put(up->w, up->rbuf);
        up->rbuf = NULL;
    }
    tp_io_close(&up->io, on_tcp_closed);
    uv_close((uv_handle_t *)&up->timer, on_timer_closed);
}

/* ---- reading -------------------------------------------------------------- */

static void up_alloc(tp_io_t *io, uv_buf_t *buf)
{
    tp_upconn_t *up = io->data;
    if (up->state == TP_UP_ACTIVE && up->rbuf != NULL && up->rlen < TP_BLOCK_SIZE) {
        buf->base = up->rbuf + up->rlen;
        buf->len = TP_BLOCK_SIZE - up->rlen;
        return;
    }
    buf->base = up->w->rbuf;
    buf->len = TP_BLOCK_SIZE;
}

static void up_on_read(tp_io_t *io, ssize_t nread, const uv_buf_t *buf)
{
    tp_upconn_t *up = io->data;
    if (nread == 0 || up->closing)
        return;
    if (up->state != TP_UP_ACTIVE || up->req == NULL) {
        /* an idle connection closed or spoke out of turn: drop it */
        tp_upstream_close(up);
        return;
    }
    if (nread < 0 || buf->base != up->rbuf + up->rlen) {
        tp_upstream_pause(up);
        tp_proxy_up_eof(up, nread < 0 ? (int)nread : TP_EPROTO);
        return;
    }
    up->rlen += (size_t)nread;
    tp_proxy_up_read(up, (size_t)nread);
}

void tp_upstream_pause(tp_upconn_t *up)
{
    if (up->reading) {
        tp_io_read_stop(&up->io);
        up->reading = 0;
    }
}

void tp_upstream_resume(tp_upconn_t *up)
{
    if (!up->reading && !up->closing) {
        if (tp_io_read_start(&up->io, up_alloc, up_on_read) == 0)
            up->reading = 1;
    }
}

/* ---- connecting -------------------------------------------------------------- */

/* The TLS handshake with the upstream is over. */
static void on_tls_ready(tp_io_t *io, int status, const char *why)
{
    tp_upconn_t *up = io->data;
    if (up->closing)
        return;
    tp_req_t *req = up->req;
    if (status < 0) {
        const char *subject = tp_io_peer_subject(io);
        tp_log_warn("upstream %s: TLS handshake failed: %s (certificate subject: %s)",
                    up->pool->name, why, subject[0] ? subject : "none received");
        req->up = NULL;
        up->req = NULL;
        tp_upstream_close(up);
        tp_proxy_failed(req, TP_ETLS);
        return;
    }
    up->state = TP_UP_ACTIVE;
    tp_upstream_resume(up);
    tp_proxy_connected(req, up);
}

static void on_connect(uv_connect_t *cr, int status)
{
    tp_upconn_t *up = cr->data;
    if (up->closing)
        return;
    tp_req_t *req = up->req;
    if (status < 0) {
        if (!up->pool->literal)
            up->pool->have_addr = 0; /* look the name up again next time */
        req->up = NULL;
        up->req = NULL;
        tp_upstream_close(up);
        tp_proxy_failed(req, status);
        return;
    }
    uv_tcp_nodelay(&up->io.tcp, 1);
    if (up->pool->https) {
        tp_io_connect_tls(&up->io, up->pool->tls, up->pool->host, on_tls_ready);
        return;
    }
    up->state = TP_UP_ACTIVE;
    tp_upstream_resume(up);
    tp_proxy_connected(req, up);
}

static void connect_new(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    tp_pool_t *pool = req->pool;
    tp_upconn_t *up = tp_calloc(1, sizeof(*up));
    up->w = w;
    up->pool = pool;
    tp_io_setup(&up->io, &w->loop, up);
    uv_timer_init(&w->loop, &up->timer);
    up->timer.data = up;
    up->handles_open = 2;
    tp_list_init(&up->link);
    llhttp_init(&up->parser, HTTP_RESPONSE, &w->resp_settings);
    up->parser.data = up;
    up->state = TP_UP_CONNECTING;
    up->uses = 1;
    up->req = req;
    req->up = up;
    up->creq.data = up;
    if (pool->https && pool->tls == NULL) {
        /* its settings were refused (logged when the pool was made) */
        req->up = NULL;
        up->req = NULL;
        tp_upstream_close(up);
        tp_proxy_failed(req, TP_ETLS);
        return;
    }
    int r =
        uv_tcp_connect(&up->creq, &up->io.tcp, (const struct sockaddr *)&pool->addr, on_connect);
    if (r < 0) {
        req->up = NULL;
        up->req = NULL;
        tp_upstream_close(up);
        tp_proxy_failed(req, r);
        return;
    }
    tp_upstream_set_deadline(up, tp_proxy_timeout_ms(req, w->upstream_timeout_ms));
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    tp_pool_t *pool = gai->data;
    tp_worker_t *w = gai->loop->data;
    pool->resolving = 0;
    if (status == 0 && res != NULL) {
        memcpy(&pool->addr, res->ai_addr, res->ai_addrlen);
        if (pool->addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&pool->addr)->sin_port = htons(pool->port);
        else
            ((struct sockaddr_in6 *)&pool->addr)->sin6_port = htons(pool->port);
        pool->have_addr = 1;
        pool->addr_expires = uv_now(&w->loop) + TP_DNS_TTL_MS;
    } else {
        tp_log_warn("upstream %s: host lookup failed: %s", pool->name,
                    status < 0 ? uv_strerror(status) : "no address");
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    while (!tp_list_empty(&pool->waiters)) {
        tp_list_t *l = pool->waiters.next;
        tp_list_remove(l);
        tp_req_t *req = tp_container_of(l, tp_req_t, wait_link);
        if (pool->have_addr)
            connect_new(req);
        else
            tp_proxy_failed(req, TP_EDNS);
    }
}

void tp_upstream_acquire(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    tp_pool_t *pool = req->pool;
    if (!tp_list_empty(&pool->idle)) {
        /* the most recently used connection is the least likely to be stale */
        tp_list_t *l = pool->idle.prev;
        tp_list_remove(l);
        pool->nidle--;
        tp_upconn_t *up = tp_container_of(l, tp_upconn_t, link);
        up->state = TP_UP_ACTIVE;
        up->uses++;
        tp_proxy_connected(req, up);
        return;
    }
    if (pool->literal || (pool->have_addr && uv_now(&w->loop) < pool->addr_expires)) {
        connect_new(req);
        return;
    }
    tp_list_insert_tail(&pool->waiters, &req->wait_link);
    if (pool->resolving)
        return;
    char port[8];
    snprintf(port, sizeof(port), "%u", pool->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    pool->gai.data = pool;
    pool->resolving = 1;
    int r = uv_getaddrinfo(&w->loop, &pool->gai, on_resolved, pool->host, port, &hints);
    if (r < 0) {
        pool->resolving = 0;
        tp_log_warn("upstream %s: host lookup failed: %s", pool->name, uv_strerror(r));
        tp_list_remove(&req->wait_link);
        tp_proxy_failed(req, TP_EDNS);
    }
}

void tp_upstream_cancel_wait(tp_req_t *req)
{
    if (tp_list_linked(&req->wait_link))
        tp_list_remove(&req->wait_link);
}

void tp_upstream_release(tp_upconn_t *up, int reusable)
{
    tp_worker_t *w = up->w;
    tp_pool_t *pool = up->pool;
    up->req = NULL;
    if (!reusable || w->draining ||
        pool->nidle >= (uint32_t)w->conf->max_idle_connections_per_host) {
        tp_upstream_close(up);
        return;
    }
    if (up->rbuf != NULL) {
        tp_block_put(w, up->rbuf);
        up->rbuf = NULL;
    }
    up->rlen = up->rparsed = 0;
    up->head_done = up->msg_done = up->msg_cb = up->extra = up->interim = 0;
    up->got_bytes = 0;
    up->nhdrs = 0;
    up->last_cb = 0;
    up->reason_len = 0;
    llhttp_init(&up->parser, HTTP_RESPONSE, &w->resp_settings);
    up->parser.data = up;
    up->state = TP_UP_IDLE;
    tp_list_insert_tail(&pool->idle, &up->link);
    pool->nidle++;
    tp_upstream_resume(up);
    tp_upstream_set_deadline(up, w->upstream_idle_ms);
}

void tp_upstream_shutdown(tp_worker_t *w)
{
    for (size_t i = 0; i < w->npools; i++)
        while (!tp_list_empty(&w->pools[i]->idle))
            tp_upstream_close(tp_container_of(w->pools[i]->idle.next, tp_upconn_t, link));
}
