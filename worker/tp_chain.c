/*
 * worker/tp_chain.c: the runner and the table of request stages.
 *
 * This file alone knows the order of the stages. A new feature on the
 * request path is a stage (a tp_stage_t in its own file) and a line in
 * request_stages[] below; its wanted() keeps it out of the chains of APIs
 * that do not use it, so they pay nothing for it.
 */
#include <string.h>

#include "tp_arena.h"
#include "tp_chain.h"
#include "tp_err.h"
#include "tp_log.h"
#include "tp_worker.h"

/* The stages, each defined in the file that does its work. */
extern const tp_stage_t tp_stage_protocol;      /* tp_front.c: what HTTP/1.1 forbids */
extern const tp_stage_t tp_stage_target;        /* tp_front.c: the request target, URL cleaning */
extern const tp_stage_t tp_stage_builtin;       /* tp_front.c: /hello, /ready, /tyk/ */
extern const tp_stage_t tp_stage_route;         /* tp_front.c: the API, which chain to enter */
extern const tp_stage_t tp_stage_track;         /* tp_analytics.c: what the record needs */
extern const tp_stage_t tp_stage_notrack;       /* tp_analytics.c: do_not_track_endpoints */
extern const tp_stage_t tp_stage_analytics;     /* tp_analytics.c: the record (log) */
extern const tp_stage_t tp_stage_version;       /* tp_auth.c: VersionCheck, expiry */
extern const tp_stage_t tp_stage_paths;         /* tp_auth.c: ignored/white/black lists, mocks */
extern const tp_stage_t tp_stage_cors;          /* tp_cors.c: CORS pre-flights */
extern const tp_stage_t tp_stage_mtls;          /* tp_mtls.c: CertificateCheckMW */
extern const tp_stage_t tp_stage_size_limit;    /* tp_rewrite.c: RequestSizeLimit */
extern const tp_stage_t tp_stage_body;          /* tp_body.c: the whole request body */
extern const tp_stage_t tp_stage_validate_json; /* tp_body.c: validate_json */
extern const tp_stage_t tp_stage_transform;     /* tp_body.c: transform */
extern const tp_stage_t tp_stage_transform_response; /* tp_body.c: transform_response */
extern const tp_stage_t tp_stage_headers;     /* tp_headers.c: global_headers, transform_headers */
extern const tp_stage_t tp_stage_url_rewrite; /* tp_rewrite.c: url_rewrites */
extern const tp_stage_t tp_stage_method_transform; /* tp_rewrite.c: method_transforms */
extern const tp_stage_t tp_stage_body_auth;        /* tp_body.c: the body, for basic auth */
extern const tp_stage_t tp_stage_basic;            /* tp_basic.c: basic auth, the user's session */
extern const tp_stage_t tp_stage_basic_check;      /* tp_basic.c: the user's password */
extern const tp_stage_t tp_stage_hmac;       /* tp_hmac.c: HMAC signatures, the key's session */
extern const tp_stage_t tp_stage_hmac_check; /* tp_hmac.c: the signature and its date */
extern const tp_stage_t tp_stage_jwt;        /* tp_jwt.c: JWT, its (virtual) session */
extern const tp_stage_t tp_stage_jwt_check;  /* tp_jwt.c: one-to-one JWT signatures */
extern const tp_stage_t tp_stage_key;        /* tp_auth.c: the key and its session */
extern const tp_stage_t tp_stage_access;     /* tp_session.c: expiry, access rights, allowed_urls */
extern const tp_stage_t tp_stage_key_limit;  /* tp_limit.c: the key's rate limit and quota */
extern const tp_stage_t tp_stage_api_limit;  /* tp_limit.c: the API's rate limits */
extern const tp_stage_t tp_stage_timeouts;   /* tp_timeouts.c: hard timeouts */
extern const tp_stage_t tp_stage_breaker;    /* tp_breaker.c: circuit breakers (and log) */
extern const tp_stage_t tp_stage_proxy;      /* tp_proxy.c: the upstream */
extern const tp_stage_t tp_stage_resp_headers;     /* tp_headers.c: transform_response_headers */
extern const tp_stage_t tp_stage_cache;            /* tp_cache.c: answers from the response cache */
extern const tp_stage_t tp_stage_cache_capture;    /* tp_cache.c: the response head to store */
extern const tp_stage_t tp_stage_cache_store;      /* tp_cache.c: stores the response */
extern const tp_stage_t tp_stage_loop;             /* tp_loop.c: tyk:// internal loops */
extern const tp_stage_t tp_stage_batch;            /* tp_batch.c: <listen path>/tyk/batch/ ... */
extern const tp_stage_t tp_stage_batch_run;        /* ... its requests */
extern const tp_stage_t tp_stage_js_body;          /* tp_body.c: the body, for JavaScript */
extern const tp_stage_t tp_stage_js_pre;           /* tp_jsmw.c: custom_middleware.pre */
extern const tp_stage_t tp_stage_js_post_key_auth; /* tp_jsmw.c: ... post_key_auth */
extern const tp_stage_t tp_stage_js_auth;          /* tp_jsmw.c: ... auth_check */
extern const tp_stage_t tp_stage_virtual;          /* tp_jsmw.c: extended_paths.virtual */
extern const tp_stage_t tp_stage_js_post;          /* tp_jsmw.c: custom_middleware.post */
extern const tp_stage_t tp_stage_js_response;      /* tp_jsmw.c: custom_middleware.response */
extern const tp_stage_t tp_stage_expires;          /* tp_auth.c: X-Tyk-Api-Expires */
extern const tp_stage_t tp_stage_rl_headers;       /* tp_limit.c: X-RateLimit-* */
extern const tp_stage_t tp_stage_cors_headers;     /* tp_cors.c: Access-Control-* */
extern const tp_stage_t tp_stage_stats;            /* tp_stats.c: "show stat" counters */
extern const tp_stage_t tp_stage_metrics;          /* tp_metrics.c: Prometheus counters (log) */

/* Every request, before it has an API. */
static const tp_stage_t *const front_stages[] = {
    &tp_stage_protocol,
    &tp_stage_target,
    &tp_stage_builtin,
    &tp_stage_route,
};

/* An API's, in Tyk's order (TYK-COMPAT 12.1, 21.0). Header changes, the
 * rewritten path and the new method are decided here and applied by the
 * proxy, so every stage sees the request as the client sent it. */
static const tp_stage_t *const request_stages[] = {
    &tp_stage_batch,
    &tp_stage_batch_run,
    &tp_stage_track,
    &tp_stage_version,
    &tp_stage_notrack,
    &tp_stage_paths,
    &tp_stage_cors,
    &tp_stage_js_body,
    &tp_stage_js_pre,
    &tp_stage_mtls,
    &tp_stage_size_limit,
    &tp_stage_body_auth,
    &tp_stage_basic,
    &tp_stage_basic_check,
    &tp_stage_hmac,
    &tp_stage_hmac_check,
    &tp_stage_jwt,
    &tp_stage_jwt_check,
    &tp_stage_js_auth,
    &tp_stage_key,
    &tp_stage_js_post_key_auth,
    &tp_stage_access,
    &tp_stage_key_limit,
    &tp_stage_api_limit,
    &tp_stage_body,
    &tp_stage_validate_json,
    &tp_stage_transform,
    &tp_stage_transform_response,
    &tp_stage_headers,
    &tp_stage_url_rewrite,
    &tp_stage_method_transform,
    &tp_stage_cache,
    &tp_stage_virtual,
    &tp_stage_js_post,
    &tp_stage_loop,
    &tp_stage_timeouts,
    &tp_stage_breaker,
    &tp_stage_proxy,
};

/* Added to every response that carries them, in this order: the
 * upstream's changed first, then the gateway's own. */
static const tp_stage_t *const response_stages[] = {&tp_stage_resp_headers, &tp_stage_cache_capture,
                                                    &tp_stage_expires, &tp_stage_rl_headers,
                                                    &tp_stage_cors_headers};

/* Given the upstream's whole response (the proxy gathers it for them). */
static const tp_stage_t *const body_stages[] = {&tp_stage_js_response};

/* Run once a request is answered: for every request ... */
static const tp_stage_t *const log_stages[] = {&tp_stage_stats};
/* ... and for those of an API that wants them. */
static const tp_stage_t *const api_log_stages[] = {&tp_stage_cache_store, &tp_stage_breaker,
                                                   &tp_stage_analytics, &tp_stage_metrics};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int tp_chain_build(tp_chain_t *c, const tp_stage_t *const *table, size_t n, const tp_chain_api_t *a,
                   void (*fail)(tp_req_t *req))
{
    c->n = c->nresp = c->nlog = c->keep_request = 0;
    c->fail = fail;
    for (size_t i = 0; i < n; i++) {
        if (table[i]->wanted != NULL && !table[i]->wanted(a))
            continue;
        if (c->n == TP_CHAIN_MAX)
            return -1;
        c->stage[c->n++] = table[i];
        c->keep_request |= table[i]->reads_request_late;
    }
    return 0;
}

int tp_chain_build_api(tp_chain_t *c, const tp_chain_api_t *a, void (*fail)(tp_req_t *req))
{
    if (tp_chain_build(c, request_stages, COUNT(request_stages), a, fail) < 0)
        return -1;
    c->nresp = c->nlog = c->nbody = 0;
    for (size_t i = 0; i < COUNT(body_stages); i++)
        if (body_stages[i]->wanted == NULL || body_stages[i]->wanted(a))
            c->body[c->nbody++] = body_stages[i];
    for (size_t i = 0; i < COUNT(response_stages); i++)
        if (response_stages[i]->wanted == NULL || response_stages[i]->wanted(a)) {
            c->resp[c->nresp++] = response_stages[i];
            c->keep_request |= response_stages[i]->reads_request_late;
        }
    for (size_t i = 0; i < COUNT(api_log_stages); i++)
        if (api_log_stages[i]->wanted == NULL || api_log_stages[i]->wanted(a))
            c->log[c->nlog++] = api_log_stages[i];
    return 0;
}

void tp_chain_build_front(tp_chain_t *c, void (*fail)(tp_req_t *req))
{
    static const tp_chain_api_t every = {0};
    int rc = tp_chain_build(c, front_stages, COUNT(front_stages), &every, fail);
    TP_BUG_ON(rc < 0);
}

void tp_chain_log(tp_req_t *req)
{
    for (size_t i = 0; i < COUNT(log_stages); i++)
        log_stages[i]->log(req);
    const tp_chain_t *c = req->run.chain;
    for (unsigned i = 0; c != NULL && i < c->nlog; i++)
        c->log[i]->log(req);
}

/* Runs the stages from req->run.at on until one answers or waits. After a
 * stage said DONE or LATER the request may be gone (answered, even reused
 * by the connection's next request): nothing is touched then, which is
 * why "waiting" is set before a stage runs, not after it said LATER. */
static void walk(tp_req_t *req)
{
    tp_chain_run_t *r = &req->run;
    const tp_chain_t *c = r->chain;
    while (r->at < c->n) {
        const tp_stage_t *st = c->stage[r->at];
        r->waiting = 1;
        switch (st->run(req)) {
        case TP_STAGE_NEXT:
            r->waiting = 0;
            if (r->enter != NULL) {
                c = r->chain = r->enter;
                r->enter = NULL;
                r->at = 0;
                memset(r->state, 0, sizeof(r->state[0]) * c->n);
            } else {
                r->at++;
            }
            break;
        case TP_STAGE_ERROR:
            r->waiting = 0;
            r->at = c->n;
            c->fail(req);
            return;
        case TP_STAGE_LATER:
        case TP_STAGE_DONE:
        default:
            return;
        }
    }
    /* every stage said next and none answered: a chain without an end */
    tp_log_error("a chain of %u stages ended without an answer", c->n);
    c->fail(req);
}

void tp_chain_start(tp_req_t *req, const tp_chain_t *c)
{
    tp_chain_run_t *r = &req->run;
    r->chain = c;
    r->enter = NULL;
    r->at = 0;
    r->waiting = 0;
    memset(r->state, 0, sizeof(r->state[0]) * c->n);
    walk(req);
}

void tp_chain_enter(tp_req_t *req, const tp_chain_t *c)
{
    TP_BUG_ON(c->n == 0);
    req->run.enter = c;
}

void *tp_chain_state(tp_req_t *req)
{
    tp_chain_run_t *r = &req->run;
    TP_BUG_ON(r->chain == NULL || r->at >= r->chain->n);
    void **s = &r->state[r->at];
    if (*s == NULL) {
        size_t n = r->chain->stage[r->at]->state;
        TP_BUG_ON(n == 0);
        *s = tp_arena_alloc(&req->arena, n);
    }
    return *s;
}

void *tp_chain_state_peek(const tp_req_t *req)
{
    const tp_chain_run_t *r = &req->run;
    if (r->chain == NULL || r->at >= r->chain->n)
        return NULL;
    return r->state[r->at];
}

void tp_chain_resume(tp_req_t *req, tp_stage_rc_t rc)
{
    tp_chain_run_t *r = &req->run;
    TP_BUG_ON(r->chain == NULL || r->at >= r->chain->n);
    r->waiting = 0;
    if (rc == TP_STAGE_ERROR) {
        r->at = r->chain->n;
        r->chain->fail(req);
        return;
    }
    TP_BUG_ON(rc != TP_STAGE_NEXT);
    r->at++;
    walk(req);
}

void tp_chain_cancel(tp_req_t *req)
{
    tp_chain_run_t *r = &req->run;
    if (r->chain != NULL && r->waiting && r->at < r->chain->n) {
        const tp_stage_t *st = r->chain->stage[r->at];
        if (st->cancel != NULL)
            st->cancel(req);
    }
    r->chain = NULL;
    r->waiting = 0;
}
