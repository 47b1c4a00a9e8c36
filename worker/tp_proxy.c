/*
 * worker/tp_proxy.c: the upstream half of a request: the rewritten request
 * head, streaming the body both ways with back-pressure, the response head
 * for the client, and upstream failures mapped to Tyk's errors.
 *
 * Bodies are forwarded as raw bytes (chunked framing included) after llhttp
 * has validated them; only an HTTP/1.0 client gets a de-chunked body. One
 * write per direction is in flight at a time: while it is, the reading side
 * of that direction is stopped, so a slow peer never makes us buffer more
 * than one block.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_log.h"
#include "tp_url.h"
#include "tp_counter.h"
#include "tp_tunnel.h"
#include "tp_shm_hosts.h"
#include "tp_worker.h"

static void up_send(tp_req_t *req);
static void resp_forward(tp_req_t *req, tp_upconn_t *up, const char *body, size_t body_len);

/* ---- request head --------------------------------------------------------- */

/* Is header <name> listed in one of the request's Connection headers? */
static int named_in_connection(const tp_req_t *req, const char *name, size_t n)
{
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (tp_hdr_kind(req->head_base, h) != TP_H_CONNECTION)
            continue;
        char tok[128];
        if (n >= sizeof(tok))
            return 0;
        memcpy(tok, name, n);
        tok[n] = '\0';
        if (tp_str_list_has(tp_req_str(req, h->val_off, h->val_len), tok))
            return 1;
    }
    return 0;
}

/* Is header <name> one the API's rules remove or replace? */
static int dropped(const tp_hdrplan_t *hp, const char *name, size_t n)
{
    for (size_t i = 0; i < hp->ndrop; i++)
        if (strlen(hp->drop[i]) == n && strncasecmp(hp->drop[i], name, n) == 0)
            return 1;
    return 0;
}

static void put_upstream_path(tp_req_t *req, const tp_reqpath_t *rp, tp_buf_t *b)
{
    const tp_route_t *route = req->route;
    const tp_api_t *api = route->api;
    const tp_target_t *t = req->target;
    tp_buf_t esc = {0};
    tp_reqpath_t rw;
    int rewritten = req->up_target.n > 0;
    if (rewritten) {
        /* url_rewrites: the new path and query, as written (escaped) */
        tp_str_t ut = req->up_target;
        const char *q = memchr(ut.p, '?', ut.n);
        rw.raw = (tp_str_t){ut.p, q != NULL ? (size_t)(q - ut.p) : ut.n};
        rw.path = rw.raw;
        rw.query = q != NULL ? (tp_str_t){q + 1, ut.n - rw.raw.n - 1} : (tp_str_t){"", 0};
        rw.matched = req->up_target_strip;
        rp = &rw;
    }
    tp_str_t rest = rp->raw;

    size_t strip = 0;
    if (rewritten)
        strip = rp->matched;
    else if (route->by_api_id)
        strip = rp->matched - 1; /* "/<api_id>", keeping the slash */
    else if (api->strip_listen_path)
        strip = rp->matched;
    if (req->strip_seg > 0 && !rewritten) {
        /* strip_versioning_data with the version in the URL: that segment
         * goes too (and the listen path, if it is kept, stays) */
        size_t at = rp->matched;
        while (at < rp->path.n && rp->path.p[at] == '/')
            at++;
        if (strip == 0) {
            tp_buf_t keep = {0};
            tp_url_escape_path(&keep, rp->path.p, at);
            tp_url_escape_path(&keep, rp->path.p + at + req->strip_seg,
                               rp->path.n - at - req->strip_seg);
            rest = (tp_str_t){keep.data, keep.len};
            tp_buf_free(&esc);
            esc = keep;
        } else {
            strip = at + req->strip_seg;
        }
    }
    if (strip > 0) {
        if (rp->path.p == rp->raw.p ||
            (rp->raw.n >= strip && memcmp(rp->raw.p, rp->path.p, strip) == 0)) {
            rest = (tp_str_t){rp->raw.p + strip, rp->raw.n - strip};
        } else {
            /* the prefix matched only once decoded: re-escape the rest */
            tp_url_escape_path(&esc, rp->path.p + strip, rp->path.n - strip);
            rest = (tp_str_t){esc.data, esc.len};
        }
        if (rest.n == 0)
            rest = TP_STR("/");
    }
    size_t before = b->len;
    tp_url_join_path(b, (tp_str_t){t->url.path, strlen(t->url.path)}, rest,
                     api->disable_strip_slash);
    if (b->len == before)
        tp_buf_putc(b, '/');
    tp_buf_free(&esc);

    tp_str_t query = rp->query;
    tp_buf_t qbuf[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        if (req->strip_params[i] != NULL) {
            tp_query_without(query, req->strip_params[i], &qbuf[i]);
            query = (tp_str_t){qbuf[i].data ? qbuf[i].data : "", qbuf[i].len};
        }
    }
    int tq = t->url.query != NULL && t->url.query[0] != '\0';
    if (tq || query.n > 0)
        tp_buf_putc(b, '?');
    if (tq)
        tp_buf_puts(b, t->url.query);
    if (tq && query.n > 0)
        tp_buf_putc(b, '&');
    tp_buf_put_str(b, query);
    tp_buf_free(&qbuf[0]);
    tp_buf_free(&qbuf[1]);
}

/* Tyk's IsUpgrade: the first Connection header is exactly "upgrade"
 * (trimmed, any case; a list such as "keep-alive, Upgrade" is not) and
 * Upgrade is not empty. Returns the Upgrade value, or an empty string. */
static tp_str_t upgrade_asked(const tp_req_t *req)
{
    tp_str_t conn = {0}, up = {0};
    int seen_conn = 0;
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        int kind = tp_hdr_kind(req->head_base, h);
        if (kind == TP_H_CONNECTION && !seen_conn) {
            conn = tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
            seen_conn = 1;
        } else if (kind == TP_H_UPGRADE && up.n == 0) {
            up = tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
        }
    }
    if (conn.n != 7 || strncasecmp(conn.p, "upgrade", 7) != 0)
        return (tp_str_t){"", 0};
    return up;
}

static void build_upstream_head(tp_req_t *req, const tp_reqpath_t *rp)
{
    tp_worker_t *w = req->conn->w;
    const tp_api_t *api = req->route->api;
    tp_buf_t *b = &req->up_head;
    b->len = 0;

    tp_buf_puts(b, req->up_method != NULL ? req->up_method : llhttp_method_name(req->method));
    tp_buf_putc(b, ' ');
    put_upstream_path(req, rp, b);
    tp_buf_puts(b, " HTTP/1.1\r\nHost: ");
    if (api->preserve_host_header)
        tp_buf_put_str(b, tp_req_header(req, "Host"));
    else
        tp_buf_puts(b, req->target->url.authority);
    tp_buf_puts(b, "\r\n");

    int has_ua = 0, has_conn = 0;
    tp_buf_t xff = {0};
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (tp_hdr_kind(req->head_base, h) == TP_H_CONNECTION)
            has_conn = 1;
    }
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        const char *name = req->head_base + h->name_off;
        tp_str_t val = tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
        int kind = tp_hdr_kind(req->head_base, h);
        switch (kind) {
        case TP_H_HOST:
        case TP_H_EXPECT:
            continue;
        case TP_H_CONTENT_LENGTH:
            if (req->body_buffered)
                continue; /* the buffered body's own length goes below */
            break;
        case TP_H_TE:
            /* Go keeps "Te: trailers" and drops every other TE */
            if (tp_str_list_has(val, "trailers"))
                tp_buf_puts(b, "Te: trailers\r\n");
            continue;
        case TP_H_X_FORWARDED_FOR:
            if (xff.len > 0)
                tp_buf_puts(&xff, ", ");
            tp_buf_put_str(&xff, val);
            continue;
        case TP_H_USER_AGENT:
            has_ua = 1;
            break;
        default:
            if (tp_http_is_hop_by_hop(kind))
                continue;
            break;
        }
        if (has_conn && named_in_connection(req, name, h->name_len))
            continue;
        if (dropped(&req->hdr_plan, name, h->name_len))
            continue;
        tp_buf_append(b, name, h->name_len);
        tp_buf_puts(b, ": ");
        tp_buf_put_str(b, val);
        tp_buf_puts(b, "\r\n");
    }
    /* X-Forwarded-For: earlier hops, then the client socket address. */
    tp_buf_puts(b, "X-Forwarded-For: ");
    if (xff.len > 0) {
        tp_buf_append(b, xff.data, xff.len);
        tp_buf_puts(b, ", ");
    }
    tp_buf_puts(b, req->conn->ip);
    tp_buf_puts(b, "\r\n");
    tp_buf_free(&xff);
    if (!has_ua && !dropped(&req->hdr_plan, "User-Agent", 10))
        tp_buf_puts(b, "User-Agent: Turnpike/" TP_VERSION "\r\n");
    if (req->hdr_plan.add.len > 0)
        tp_buf_append(b, req->hdr_plan.add.data, req->hdr_plan.add.len);
    if (req->body_buffered)
        tp_buf_put_header_i64(b, "Content-Length", (int64_t)req->rbody.len);
    else if (req->chunked)
        tp_buf_puts(b, "Transfer-Encoding: chunked\r\n");
    tp_str_t up =
        w->conf->http_server_options.enable_websockets ? upgrade_asked(req) : (tp_str_t){"", 0};
    if (up.n > 0) {
        /* hop-by-hop headers went above; the switch is asked for again,
         * the protocol in lower case as Tyk sends it */
        req->upgrade = 1;
        tp_buf_puts(b, "Connection: Upgrade\r\nUpgrade: ");
        for (size_t i = 0; i < up.n; i++)
            tp_buf_putc(b, (char)tolower((unsigned char)up.p[i]));
        tp_buf_puts(b, "\r\n");
    } else if (w->conf->proxy_close_connections) {
        tp_buf_puts(b, "Connection: close\r\n");
    }
    tp_buf_puts(b, "\r\n");
}

/* ---- start ----------------------------------------------------------------- */

/* May a request that could not reach one host of a target_list go to the
 * next? Only an idempotent one without a body (Go's rule for replaying),
 * and only before anything was sent: a connect failure. */
static int replayable(const tp_req_t *req)
{
    return !req->has_body && (req->method == HTTP_GET || req->method == HTTP_HEAD ||
                              req->method == HTTP_OPTIONS || req->method == HTTP_TRACE);
}

/* From target <at> on, the first one the node's uptime tests do not find
 * down (Tyk's nextTarget, with proxy.check_host_against_uptime_tests and
 * load balancing; <at> itself without them), or -1 when every host is. */
static long up_target(const tp_req_t *req, size_t at)
{
    const tp_api_t *api = req->route->api;
    tp_worker_t *w = req->conn->w;
    const tp_compiled_t *c = tp_compiled(w, req);
    if (c == NULL || !c->uptime_lb)
        return (long)at;
    for (size_t k = 0; k < api->ntargets; k++) {
        const tp_url_t *u = &api->targets[(at + k) % api->ntargets].url;
        if (!tp_hosts_down(w->shm->hosts, u->authority, strlen(u->authority)))
            return (long)((at + k) % api->ntargets);
    }
    return -1;
}

/* The next host of the API's target_list, after a connect failure. */
static int next_host(tp_req_t *req)
{
    const tp_api_t *api = req->route->api;
    if (api->ntargets < 2 || req->rw_host != NULL || !replayable(req) ||
        req->rp != &req->saved_rp || req->resp_started || req->hosts_tried + 1 >= api->ntargets)
        return 0;
    tp_worker_t *w = req->conn->w;
    size_t at = (size_t)(req->target - api->targets);
    long next = up_target(req, (at + 1) % api->ntargets);
    if (next < 0 || (size_t)next == at)
        return 0;
    req->hosts_tried++;
    req->target = &api->targets[next];
    req->pool = w->target_pool[req->snap->slot][req->target->idx];
    build_upstream_head(req, req->rp);
    req->up_head_sent = req->up_head_inflight = 0;
    tp_upstream_acquire(req);
    return 1;
}

int tp_proxy_start(tp_req_t *req, const tp_reqpath_t *rp)
{
    tp_conn_t *c = req->conn;
    tp_worker_t *w = c->w;
    const tp_api_t *api = req->route->api;
    /* the tables of the generation this request started on */
    unsigned slot = req->snap->slot;
    size_t idx = 0;
    if (api->ntargets > 1) {
        long up = up_target(req, w->rr[slot][api->idx]++ % api->ntargets);
        if (up < 0) {
            static const char down[] = "all hosts are down\n";
            tp_respond(req, 503, "text/plain; charset=utf-8", down, sizeof(down) - 1, NULL);
            return -1;
        }
        idx = (size_t)up;
    }
    req->target = &api->targets[idx];
    req->pool = w->target_pool[slot][req->target->idx];
    if (req->rw_host != NULL) {
        req->target = req->rw_host; /* url_rewrites named another host */
        req->pool = req->rw_pool;
    }
    if (api->ntargets > 1 && replayable(req) && req->rw_host == NULL) {
        /* a connect failure may send it to the next host: keep its head */
        tp_req_save(req, req->rp);
        rp = req->rp;
    }
    build_upstream_head(req, rp);
    req->up_start_ms = uv_now(&w->loop);
    if (req->hard_timeout_ms > 0)
        req->hard_deadline = req->up_start_ms + req->hard_timeout_ms;

    if (req->body_buffered) {
        /* read by the body stage: sent whole from rbody */
        req->body = req->rbody.data;
        req->body_len = req->rbody.len;
    } else if (req->has_body) {
        req->body = tp_block_get(w);
        req->body_len = 0;
        if (req->expect_continue && req->body_seen == 0 && c->in.len == 0) {
            static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            uv_buf_t buf = uv_buf_init(cont, sizeof(cont) - 1);
            req->sending_continue = 1;
            int r = tp_conn_write(c, &buf, 1);
            if (r < 0)
                return 0; /* the connection is closing */
            if (r == 1)
                req->sending_continue = 0;
        }
    }
    tp_upstream_acquire(req);
    return 0;
}

/* The last request stage: the checks passed, on to the upstream, which
 * answers the client from here on. */
static tp_stage_rc_t proxy_run(tp_req_t *req)
{
    tp_conn_t *c = req->conn;
    int waited = req->rp == &req->saved_rp;
    /* the head is in the worker's shared read buffer and the paths on the
     * dispatcher's stack: a stage that reads them with the response needs
     * its own copy */
    if (req->run.chain->keep_request)
        tp_req_save(req, req->rp);
    if (tp_proxy_start(req, req->rp) < 0)
        return TP_STAGE_DONE; /* answered: every host is down */
    /* a request that waited (for its session, a limit) left its body unread */
    if (waited && !c->closing)
        tp_conn_body_drained(c);
    return TP_STAGE_DONE;
}

const tp_stage_t tp_stage_proxy = {.name = "proxy", .run = proxy_run};

uint64_t tp_proxy_timeout_ms(const tp_req_t *req, uint64_t ms)
{
    if (req->hard_deadline == 0)
        return ms;
    uint64_t now = uv_now(&req->conn->w->loop);
    uint64_t left = req->hard_deadline > now ? req->hard_deadline - now : 0;
    return left < ms ? left : ms;
}

/* The upstream must answer within proxy_default_timeout, and within the
 * hard timeout. */
static void up_deadline(tp_req_t *req, tp_upconn_t *up)
{
    tp_upstream_set_deadline(up, tp_proxy_timeout_ms(req, req->conn->w->upstream_timeout_ms));
}

void tp_proxy_connected(tp_req_t *req, tp_upconn_t *up)
{
    tp_worker_t *w = req->conn->w;
    req->up = up;
    up->req = req;
    if (up->rbuf == NULL)
        up->rbuf = tp_block_get(w);
    up->rlen = up->rparsed = 0;
    up_deadline(req, up);
    up_send(req);
}

/* ---- failures ------------------------------------------------------------- */

void tp_proxy_abort(tp_req_t *req)
{
    tp_upstream_cancel_wait(req);
    tp_tunnel_abort(req);
    if (req->up != NULL) {
        tp_upconn_t *up = req->up;
        req->up = NULL;
        up->req = NULL;
        tp_upstream_close(up);
    }
}

void tp_proxy_failed(tp_req_t *req, int err)
{
    tp_conn_t *c = req->conn;
    const char *api_id = req->route != NULL ? req->route->api->api_id : "-";
    const char *target = req->target != NULL ? req->target->raw : "-";
    tp_proxy_abort(req);
    tp_worker_t *w = c->w;
    int timeout = err == TP_ETIMEOUT || err == UV_ETIMEDOUT;
    int connect = err == TP_EDNS || err == UV_ECONNREFUSED || err == UV_ENETUNREACH ||
                  err == UV_EHOSTUNREACH || err == UV_EADDRNOTAVAIL;
    tp_counter_add(timeout   ? &w->me->up_timeouts
                   : connect ? &w->me->up_connect_errors
                             : &w->me->up_other_errors,
                   1);
    if (req->route != NULL && req->route->api->stat_idx != UINT32_MAX)
        w->stats[req->route->api->stat_idx].upstream_errors++;
    const char *why =
        err < TP_E__BASE + 100 && err > TP_E__BASE ? tp_strerror(err) : uv_strerror(err);
    if (connect && next_host(req)) {
        tp_log_warn("api %s: upstream %s: %s; trying %s", api_id, target, why, req->target->raw);
        return;
    }
    tp_log_warn("api %s: upstream %s: %s", api_id, target, why);
    if (req->resp_started || c->writing) {
        tp_conn_close(c);
        return;
    }
    if (err == TP_EDNS)
        tp_respond_error(req, 500, "Upstream host lookup failed");
    else if (timeout)
        tp_respond_error(req, 504, "Upstream service reached hard timeout.");
    else
        tp_respond_failed(req);
}

/* A reused keep-alive connection may have been closed by the upstream just
 * as we sent on it. Like Go's transport, try once more on a fresh
 * connection when nothing came back and the request can be replayed. */
static int try_again(tp_req_t *req, tp_upconn_t *up)
{
    if (up->uses <= 1 || up->got_bytes || req->retried || req->has_body)
        return 0;
    req->retried = 1;
    req->up = NULL;
    up->req = NULL;
    tp_upstream_close(up);
    req->up_head_sent = 0;
    req->up_head_inflight = 0;
    tp_upstream_acquire(req);
    return 1;
}

/* ---- request body to the upstream ------------------------------------------ */

static void up_sent(tp_req_t *req)
{
    if (req->up_head_inflight) {
        req->up_head_inflight = 0;
        req->up_head_sent = 1;
    }
    if (req->body_inflight > 0) {
        memmove(req->body, req->body + req->body_inflight, req->body_len - req->body_inflight);
        req->body_len -= req->body_inflight;
        req->body_inflight = 0;
    }
}

static void on_up_write(tp_io_t *io, int status)
{
    tp_proxy_up_written(io->data, status);
}

static void up_send(tp_req_t *req)
{
    if (req->in_send)
        return;
    req->in_send = 1;
    for (;;) {
        tp_upconn_t *up = req->up;
        if (up == NULL || up->writing || up->state != TP_UP_ACTIVE)
            break;
        uv_buf_t bufs[2];
        unsigned n = 0;
        if (!req->up_head_sent) {
            bufs[n++] = uv_buf_init(req->up_head.data, (unsigned)req->up_head.len);
            req->up_head_inflight = 1;
            /* the request as the upstream gets it replaces the client's */
            req->tap_in.len = 0;
            tp_req_tap(req, &req->tap_in, req->up_head.data, req->up_head.len);
        }
        if (req->body_len > 0) {
            bufs[n++] = uv_buf_init(req->body, (unsigned)req->body_len);
            req->body_inflight = req->body_len;
            tp_req_tap(req, &req->tap_in, req->body, req->body_len);
        }
        if (n == 0)
            break;
        int r = tp_io_write(&up->io, bufs, n, on_up_write);
        if (r < 0) {
            req->in_send = 0;
            tp_proxy_up_written(up, r);
            return;
        }
        if (r == 1) {
            up_sent(req);
            continue;
        }
        up->writing = 1;
        up_deadline(req, up);
        break;
    }
    req->in_send = 0;
    /* room in the body block again: let the client send more */
    if (req->body != NULL && req->body_len < TP_BLOCK_SIZE && !req->body_done)
        tp_conn_body_drained(req->conn);
}

void tp_proxy_up_written(tp_upconn_t *up, int status)
{
    tp_req_t *req = up->req;
    up->writing = 0;
    if (req == NULL || up->closing)
        return;
    if (status < 0) {
        if (!try_again(req, up))
            tp_proxy_failed(req, status);
        return;
    }
    up_sent(req);
    up_deadline(req, up);
    up_send(req);
}

void tp_proxy_body_ready(tp_req_t *req)
{
    if (req->up != NULL)
        up_send(req);
}

/* ---- response from the upstream ---------------------------------------------- */

static void finish(tp_req_t *req)
{
    tp_conn_t *c = req->conn;
    tp_upconn_t *up = req->up;
    req->resp_done = 1;
    if (up != NULL) {
        int reusable = up->msg_done && !up->extra && !up->eof && !up->writing &&
                       llhttp_should_keep_alive(&up->parser) &&
                       !c->w->conf->proxy_close_connections && req->up_head_sent &&
                       req->body_done && req->body_len == 0;
        req->up = NULL;
        up->req = NULL;
        tp_upstream_release(up, reusable);
    }
    tp_conn_response_done(c);
}

/* Did the upstream compress the body (a Content-Encoding other than identity)? */
static int upstream_encoded(const tp_upconn_t *up)
{
    for (uint32_t i = 0; i < up->nhdrs; i++) {
        const tp_hdr_t *h = &up->hdrs[i];
        if (h->name_len == 16 && tp_http_ieq(up->rbuf + h->name_off, "content-encoding", 16)) {
            tp_str_t v = tp_str_trim((tp_str_t){up->rbuf + h->val_off, h->val_len});
            return v.n > 0 && !tp_str_ieq(v, "identity");
        }
    }
    return 0;
}

/* Decides how the response body travels and writes the client's head. */
static void resp_head(tp_req_t *req, tp_upconn_t *up)
{
    tp_conn_t *c = req->conn;
    llhttp_t *p = &up->parser;
    int status = p->status_code;
    int has_cl = (p->flags & F_CONTENT_LENGTH) != 0;

    req->status = status;
    req->up_ms = uv_now(&c->w->loop) - req->up_start_ms;
    req->resp_nobody = req->method == HTTP_HEAD || status == 204 || status == 304 ||
                       (has_cl && p->content_length == 0);
    /* transform_response or a response body stage (JavaScript response
     * hooks): the body is gathered and sent with its new
     * length; not a compressed one (this gateway does not decompress) nor
     * one that ends when the upstream closes */
    int body_stages = req->run.chain != NULL && req->run.chain->nbody > 0;
    req->resp_collect = (req->resp_tf != NULL || body_stages) && !req->resp_nobody &&
                        (has_cl || (p->flags & F_CHUNKED)) && !upstream_encoded(up);
    if (!req->resp_nobody && !req->resp_collect) {
        if (p->flags & F_CHUNKED) {
            if (req->http_minor >= 1)
                req->resp_chunked = 1;
            else
                req->resp_dechunk = 1;
        } else if (!has_cl) {
            req->resp_eof = 1;
        }
    }
    int close = tp_req_will_close(req) || req->resp_eof || req->resp_dechunk;
    if (close)
        c->want_close = 1;

    int has_conn = 0;
    for (uint32_t i = 0; i < up->nhdrs; i++)
        if (tp_hdr_kind(up->rbuf, &up->hdrs[i]) == TP_H_CONNECTION)
            has_conn = 1;

    /* the gateway's own replace the upstream's X-RateLimit-*; in
     * "rate_limits" mode Tyk removes them from every proxied response */
    int strip_rl = req->rl_set || c->w->conf->rate_limit_response_headers[0] == 'r';

    tp_buf_t *b = &req->out;
    b->len = 0;
    tp_buf_puts(b, "HTTP/1.1 ");
    tp_buf_put_i64(b, status);
    tp_buf_putc(b, ' ');
    if (up->reason_len > 0)
        tp_buf_append(b, up->rbuf + up->reason_off, up->reason_len);
    else
        tp_buf_puts(b, tp_http_reason(status));
    tp_buf_puts(b, "\r\n");
    for (uint32_t i = 0; i < up->nhdrs; i++) {
        const tp_hdr_t *h = &up->hdrs[i];
        const char *name = up->rbuf + h->name_off;
        if (tp_http_is_hop_by_hop(tp_hdr_kind(up->rbuf, h)))
            continue;
        if (strip_rl && tp_http_is_ratelimit_header(name, h->name_len))
            continue;
        if (req->resp_collect && tp_hdr_kind(up->rbuf, h) == TP_H_CONTENT_LENGTH)
            continue; /* the transformed body's goes last */
        if (has_conn) {
            int named = 0;
            for (uint32_t j = 0; j < up->nhdrs && !named; j++) {
                const tp_hdr_t *ch = &up->hdrs[j];
                if (tp_hdr_kind(up->rbuf, ch) != TP_H_CONNECTION)
                    continue;
                char tok[128];
                if (h->name_len < sizeof(tok)) {
                    memcpy(tok, name, h->name_len);
                    tok[h->name_len] = '\0';
                    named = tp_str_list_has((tp_str_t){up->rbuf + ch->val_off, ch->val_len}, tok);
                }
            }
            if (named)
                continue;
        }
        tp_buf_append(b, name, h->name_len);
        tp_buf_puts(b, ": ");
        tp_buf_put_str(b, tp_str_trim((tp_str_t){up->rbuf + h->val_off, h->val_len}));
        tp_buf_puts(b, "\r\n");
    }
    tp_chain_headers(req->run.chain, req, b, TP_RESP_UPSTREAM);
    if (req->resp_chunked)
        tp_buf_puts(b, "Transfer-Encoding: chunked\r\n");
    if (close)
        tp_buf_puts(b, "Connection: close\r\n");
    else if (req->http_minor == 0)
        tp_buf_puts(b, "Connection: keep-alive\r\n");
    if (!req->resp_collect)
        tp_buf_puts(b, "\r\n");
}

/* The whole body of a transform_response is in: the new one (or the
 * same, when the transform fails) goes out with its length, after the
 * response body stages had it. */
static void resp_collected(tp_req_t *req, tp_upconn_t *up)
{
    tp_buf_t out = {0};
    if (req->resp_tf != NULL && tp_body_transform_response(req, &req->resp_body, &out) == 0) {
        tp_buf_free(&req->resp_body);
        req->resp_body = out;
    } else {
        tp_buf_free(&out);
    }
    tp_chain_body(req->run.chain, req, &req->out, &req->resp_body);
    tp_buf_put_header_i64(&req->out, "Content-Length", (int64_t)req->resp_body.len);
    tp_buf_puts(&req->out, "\r\n");
    resp_forward(req, up, req->resp_body.data, req->resp_body.len);
}

static void resp_error(tp_req_t *req, tp_upconn_t *up, const char *why)
{
    tp_log_warn("api %s: upstream %s sent an invalid response: %s", req->route->api->api_id,
                req->target->raw, why);
    up->eof = 1;
    tp_proxy_failed(req, TP_EPROTO);
}

/* Parses what arrived in up->rbuf since up->rparsed and forwards it. */
static void resp_parse(tp_req_t *req, tp_upconn_t *up)
{
    if (req->conn->writing) {
        /* "100 Continue" is still going out: wait for it */
        tp_upstream_pause(up);
        return;
    }
    const char *data = up->rbuf + up->rparsed;
    const char *end = up->rbuf + up->rlen;
    up->rparsed = up->rlen;

    if (!up->head_done) {
        for (;;) {
            llhttp_errno_t err = llhttp_execute(&up->parser, data, (size_t)(end - data));
            if (err == HPE_OK) {
                if (up->rlen >= TP_BLOCK_SIZE)
                    resp_error(req, up, "response head larger than 64 KiB");
                return; /* more head to come */
            }
            if (err != HPE_PAUSED) {
                resp_error(req, up, llhttp_get_error_reason(&up->parser));
                return;
            }
            const char *pos = llhttp_get_error_pos(&up->parser);
            llhttp_resume(&up->parser);
            if (up->interim) {
                /* a 1xx response: drop it and parse what follows */
                size_t rest = (size_t)(end - pos);
                memmove(up->rbuf, pos, rest);
                up->rlen = up->rparsed = rest;
                data = up->rbuf;
                end = up->rbuf + rest;
                up->interim = 0;
                up->msg_cb = 0;
                up->nhdrs = 0;
                up->last_cb = 0;
                up->reason_len = 0;
                continue;
            }
            up->head_done = 1;
            if (up->parser.status_code == 101) {
                /* asked for (on_headers_complete refuses it otherwise) */
                tp_tunnel_start(req, up, pos, (size_t)(end - pos));
                return;
            }
            resp_head(req, up);
            data = pos;
            break;
        }
        if (req->resp_nobody) {
            up->msg_done = 1;
            if (data < end)
                up->extra = 1;
            resp_forward(req, up, NULL, 0);
            return;
        }
    }

    const char *body = data;
    up->dechunk_w = (char *)data;
    while (data < end) {
        llhttp_errno_t err = llhttp_execute(&up->parser, data, (size_t)(end - data));
        const char *pos = err == HPE_OK ? end : llhttp_get_error_pos(&up->parser);
        if (err != HPE_OK && err != HPE_PAUSED) {
            if (req->resp_started) {
                tp_log_warn("api %s: upstream %s: invalid response body: %s",
                            req->route->api->api_id, req->target->raw,
                            llhttp_get_error_reason(&up->parser));
                tp_conn_close(req->conn);
                return;
            }
            resp_error(req, up, llhttp_get_error_reason(&up->parser));
            return;
        }
        data = pos;
        if (err == HPE_PAUSED) {
            llhttp_resume(&up->parser);
            up->msg_done = 1;
            if (data < end)
                up->extra = 1;
            break;
        }
    }
    if (req->resp_collect) {
        if (req->resp_body.len > TP_REST_BODY_MAX) {
            resp_error(req, up, "a body over 16 MiB for transform_response");
            return;
        }
        if (up->msg_done)
            resp_collected(req, up);
        else
            up->rlen = up->rparsed = 0; /* gathered: the block is free for more */
        return;
    }
    if (req->resp_dechunk)
        resp_forward(req, up, body, (size_t)(up->dechunk_w - body));
    else
        resp_forward(req, up, body, (size_t)(data - body));
}

static void resp_forward(tp_req_t *req, tp_upconn_t *up, const char *body, size_t body_len)
{
    tp_conn_t *c = req->conn;
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (!req->resp_started) {
        bufs[n++] = uv_buf_init(req->out.data, (unsigned)req->out.len);
        req->resp_started = 1;
    }
    if (body_len > 0)
        bufs[n++] = uv_buf_init((char *)body, (unsigned)body_len);
    if (n == 0) {
        if (up->msg_done)
            finish(req);
        else
            up->rlen = up->rparsed = 0;
        return;
    }
    up->deadline = 0;
    int r = tp_conn_write(c, bufs, n);
    if (r < 0)
        return; /* the connection closed, the request with it */
    if (r == 1) {
        /* written at once: reading goes on without a stop and a restart,
         * each an epoll_ctl */
        tp_proxy_client_written(req);
        return;
    }
    /* the write holds up->rbuf, and while the client takes it its
     * send_timeout applies, not ours */
    tp_upstream_pause(up);
}

void tp_proxy_client_written(tp_req_t *req)
{
    tp_upconn_t *up = req->up;
    if (req->sending_continue) {
        req->sending_continue = 0;
        if (up != NULL && up->rparsed < up->rlen)
            resp_parse(req, up);
        else if (up != NULL)
            tp_upstream_resume(up);
        return;
    }
    if (up == NULL) {
        finish(req);
        return;
    }
    if (up->msg_done) {
        finish(req);
        return;
    }
    up->rlen = up->rparsed = 0;
    if (up->eof) {
        /* the body ran until the upstream closed, and it has */
        up->msg_done = 1;
        finish(req);
        return;
    }
    up_deadline(req, up);
    tp_upstream_resume(up);
}

void tp_proxy_up_read(tp_upconn_t *up, size_t nread)
{
    tp_req_t *req = up->req;
    up->got_bytes = 1;
    (void)nread;
    up_deadline(req, up);
    resp_parse(req, up);
}

void tp_proxy_up_eof(tp_upconn_t *up, int err)
{
    tp_req_t *req = up->req;
    up->eof = 1;
    if (up->msg_done)
        return; /* closed after a complete response: finish() sees eof */
    if (up->head_done && req->resp_eof && err == UV_EOF) {
        /* a body delimited by the connection's end: complete */
        llhttp_finish(&up->parser);
        up->msg_done = 1;
        if (!req->conn->writing)
            finish(req);
        return;
    }
    if (try_again(req, up))
        return;
    if (up->head_done && req->resp_started) {
        tp_log_warn("api %s: upstream %s closed the connection mid-response",
                    req->route->api->api_id, req->target->raw);
        tp_conn_close(req->conn);
        return;
    }
    tp_proxy_failed(req, err == UV_EOF ? TP_EUPSTREAM : err);
}

void tp_proxy_up_timeout(tp_upconn_t *up)
{
    tp_req_t *req = up->req;
    if (req->tunnel != NULL) {
        tp_tunnel_idle(req);
        return;
    }
    if (req->resp_started) {
        tp_log_warn("api %s: upstream %s stalled mid-response", req->route->api->api_id,
                    req->target->raw);
        tp_conn_close(req->conn);
        return;
    }
    tp_proxy_failed(req, TP_ETIMEOUT);
}

/* ---- llhttp callbacks (response) -------------------------------------------- */

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    tp_upconn_t *up = p->data;
    if (up->reason_len == 0)
        up->reason_off = (uint32_t)(at - up->rbuf);
    up->reason_len += (uint32_t)len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tp_upconn_t *up = p->data;
    if (up->last_cb != 1) {
        if (up->nhdrs >= TP_UP_MAX_HEADERS)
            return -1;
        tp_hdr_t *h = &up->hdrs[up->nhdrs++];
        h->name_off = (uint32_t)(at - up->rbuf);
        h->name_len = 0;
        h->val_off = h->name_off;
        h->val_len = 0;
        h->kind = -1;
        up->last_cb = 1;
    }
    up->hdrs[up->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tp_upconn_t *up = p->data;
    tp_hdr_t *h = &up->hdrs[up->nhdrs - 1];
    uint32_t off = (uint32_t)(at - up->rbuf);
    if (up->last_cb != 2) {
        h->val_off = off;
        h->val_len = (uint32_t)len;
    } else {
        if (off != h->val_off + h->val_len)
            return -1; /* obs-fold */
        h->val_len += (uint32_t)len;
    }
    up->last_cb = 2;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    tp_upconn_t *up = p->data;
    int status = p->status_code;
    if (status == 101)
        /* a protocol switch: only when we asked for one; llhttp is done
         * with this connection then */
        return up->req != NULL && up->req->upgrade ? HPE_PAUSED : -1;
    if (status >= 100 && status < 200) {
        up->interim = 1;
        return 0;
    }
    if (up->req != NULL && up->req->method == HTTP_HEAD)
        return 1; /* no body; the message completes (and pauses) at once */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    tp_upconn_t *up = p->data;
    tp_req_t *req = up->req;
    if (req == NULL)
        return 0;
    if (req->resp_dechunk) {
        memmove(up->dechunk_w, at, len);
        at = up->dechunk_w;
        up->dechunk_w += len;
    }
    if (req->resp_collect) {
        if (req->resp_body.len <= TP_REST_BODY_MAX)
            tp_buf_append(&req->resp_body, at, len);
    } else if (req->resp_keep) {
        /* a copy for the response cache, while it goes to the client */
        if (req->resp_body.len + len <= TP_KEEP_BODY_MAX) {
            tp_buf_append(&req->resp_body, at, len);
        } else {
            req->resp_keep = 0;
            tp_buf_free(&req->resp_body);
        }
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    tp_upconn_t *up = p->data;
    up->msg_cb = 1;
    return HPE_PAUSED;
}

void tp_proxy_init_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_status = on_status;
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}
