/*
 * worker/tp_front.c: the front chain, which every request whose head is
 * complete runs before it has an API: the protocol checks llhttp 8 leaves
 * to us, the request target and URL cleaning, the gateway's own endpoints
 * (/hello, /ready, /tyk/), and routing, which enters the API's chain.
 *
 * The request's paths live on tp_req_dispatch's stack while the chain
 * runs without waiting (the usual case: no copy); a stage that waits
 * saves them with the head (tp_req_save).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_url.h"
#include "tp_worker.h"

static int host_ok(tp_str_t h)
{
    for (size_t i = 0; i < h.n; i++) {
        unsigned char ch = (unsigned char)h.p[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"#/<>?\\^`{|}", ch) != NULL)
            return 0;
    }
    return 1;
}

static int path_is(tp_str_t path, const char *name)
{
    size_t n = strlen(name);
    return path.n == n + 1 && path.p[0] == '/' && memcmp(path.p + 1, name, n) == 0;
}

/* What llhttp 8.1 accepts but HTTP/1.1 does not (RFC 9112 3.2, 6.1). */
static tp_stage_rc_t protocol_run(tp_req_t *req)
{
    tp_conn_t *c = req->conn;
    if (req->http_major != 1 || req->http_minor > 1) {
        tp_respond_bad_request(c, 505);
        return TP_STAGE_DONE;
    }
    int nhost = 0, has_te = 0;
    tp_str_t host = {"", 0};
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        const char *name = req->head_base + h->name_off;
        if (!tp_http_token_ok(name, h->name_len)) {
            tp_respond_bad_request(c, 400);
            return TP_STAGE_DONE;
        }
        switch (tp_hdr_kind(req->head_base, h)) {
        case TP_H_HOST:
            nhost++;
            host = tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
            break;
        case TP_H_TRANSFER_ENCODING:
            has_te = 1;
            break;
        case TP_H_EXPECT:
            if (tp_str_ieq(tp_str_trim(tp_req_str(req, h->val_off, h->val_len)), "100-continue"))
                req->expect_continue = 1;
            break;
        default:
            break;
        }
    }
    if (nhost > 1 || (req->http_minor == 1 && nhost == 0) || !host_ok(host) ||
        (req->http_minor == 0 && has_te)) {
        tp_respond_bad_request(c, 400);
        return TP_STAGE_DONE;
    }
    req->host = host;
    return TP_STAGE_NEXT;
}

const tp_stage_t tp_stage_protocol = {.name = "protocol", .run = protocol_run};

/* Request target: origin form, absolute form, or "OPTIONS *"; the path
 * decoded (routing is on the decoded path, as gorilla/mux's) and clean. */
static tp_stage_rc_t target_run(tp_req_t *req)
{
    tp_conn_t *c = req->conn;
    tp_worker_t *w = c->w;
    tp_str_t url = tp_req_str(req, req->url_off, req->url_len);
    if (url.n == 1 && url.p[0] == '*' && req->method == HTTP_OPTIONS) {
        tp_respond(req, 200, NULL, "", 0, NULL);
        return TP_STAGE_DONE;
    }
    if (url.n > 0 && url.p[0] != '/') {
        size_t skip = 0;
        if (url.n > 7 && strncasecmp(url.p, "http://", 7) == 0)
            skip = 7;
        else if (url.n > 8 && strncasecmp(url.p, "https://", 8) == 0)
            skip = 8;
        const char *slash = skip ? memchr(url.p + skip, '/', url.n - skip) : NULL;
        if (slash == NULL) {
            tp_respond_bad_request(c, 400);
            return TP_STAGE_DONE;
        }
        url.n -= (size_t)(slash - url.p);
        url.p = slash;
    }
    if (url.n == 0) {
        tp_respond_bad_request(c, 400);
        return TP_STAGE_DONE;
    }
    tp_reqpath_t *rp = req->rp;
    const char *q = memchr(url.p, '?', url.n);
    rp->raw = (tp_str_t){url.p, q ? (size_t)(q - url.p) : url.n};
    if (q != NULL)
        rp->query = (tp_str_t){q + 1, url.n - rp->raw.n - 1};
    rp->path = rp->raw;

    w->scratch.len = 0;
    if (memchr(rp->raw.p, '%', rp->raw.n) != NULL) {
        char *dst = tp_buf_reserve(&w->scratch, rp->raw.n * 2 + 4);
        long n = tp_url_decode(rp->raw.p, rp->raw.n, dst);
        if (n < 0) {
            tp_respond_bad_request(c, 400);
            return TP_STAGE_DONE;
        }
        rp->path = (tp_str_t){dst, (size_t)n};
        w->scratch.len = (size_t)n;
    }

    /* gorilla/mux redirects unclean paths ("//", ".", "..") with a 301. */
    if (w->conf->http_server_options.skip_url_cleaning || req->method == HTTP_CONNECT)
        return TP_STAGE_NEXT;
    char *dst = tp_req_alloc(req, rp->path.n + 2); /* the arena: no malloc per request */
    size_t n = tp_url_clean_path(rp->path.p, rp->path.n, dst);
    if (n == rp->path.n && memcmp(dst, rp->path.p, n) == 0)
        return TP_STAGE_NEXT;
    tp_buf_t loc = {0};
    tp_buf_puts(&loc, "Location: ");
    tp_url_escape_path(&loc, dst, n);
    if (rp->query.n > 0) {
        tp_buf_putc(&loc, '?');
        tp_buf_put_str(&loc, rp->query);
    }
    tp_buf_puts(&loc, "\r\n");
    tp_respond(req, 301, NULL, "", 0, tp_buf_cstr(&loc));
    tp_buf_free(&loc);
    return TP_STAGE_DONE;
}

const tp_stage_t tp_stage_target = {.name = "target", .run = target_run};

/* The control router comes first, so no API can shadow it; with
 * control_api_port set it lives on that port only, as in Tyk. */
static tp_stage_rc_t builtin_run(tp_req_t *req)
{
    tp_conn_t *c = req->conn;
    const tp_conf_t *conf = c->w->conf;
    const tp_reqpath_t *rp = req->rp;
    if (conf->control_api_port == 0 || c->control) {
        if (path_is(rp->path, conf->health_check_endpoint_name)) {
            tp_health_hello(req);
            return TP_STAGE_DONE;
        }
        if (path_is(rp->path, conf->readiness_check_endpoint_name)) {
            tp_health_ready(req);
            return TP_STAGE_DONE;
        }
        if (rp->path.n >= 5 && memcmp(rp->path.p, "/tyk/", 5) == 0) {
            tp_rest_handle(req, (tp_str_t){rp->path.p + 5, rp->path.n - 5}, rp->query);
            return TP_STAGE_DONE;
        }
    }
    if (c->control) {
        static const char not_found[] = "404 page not found\n";
        tp_respond(req, 404, "text/plain; charset=utf-8", not_found, sizeof(not_found) - 1,
                   "X-Content-Type-Options: nosniff\r\n");
        return TP_STAGE_DONE;
    }
    return TP_STAGE_NEXT;
}

const tp_stage_t tp_stage_builtin = {.name = "builtin", .run = builtin_run};

/* The API of the request, whose chain the request goes on with. */
static tp_stage_rc_t route_run(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    tp_reqpath_t *rp = req->rp;
    const tp_route_t *route =
        tp_router_match(&req->snap->router, req->host, rp->path, &rp->matched);
    if (route == NULL) {
        static const char not_found[] = "Not Found";
        tp_respond(req, 404, "text/plain; charset=utf-8", not_found, sizeof(not_found) - 1, NULL);
        return TP_STAGE_DONE;
    }
    req->route = route;
    if (w->max_body > 0 && req->content_length > w->max_body) {
        static const char too_large[] = "Request Entity Too Large\n";
        tp_respond(req, 413, "text/plain; charset=utf-8", too_large, sizeof(too_large) - 1,
                   "X-Content-Type-Options: nosniff\r\n");
        return TP_STAGE_DONE;
    }
    const tp_compiled_t *api = tp_compiled(w, req);
    if (api == NULL)
        return TP_STAGE_ERROR; /* logged when the generation was compiled */
    req->rules = api->rules;
    req->hdr_plan.add.len = 0;
    req->hdr_plan.ndrop = 0;
    tp_chain_enter(req, &api->chain);
    return TP_STAGE_NEXT;
}

const tp_stage_t tp_stage_route = {.name = "route", .run = route_run};

void tp_front_init(tp_worker_t *w)
{
    tp_chain_build_front(&w->front, tp_respond_failed);
}

void tp_req_dispatch(tp_req_t *req)
{
    tp_reqpath_t rp = {0};
    req->rp = &rp;
    tp_chain_start(req, &req->conn->w->front);
}
