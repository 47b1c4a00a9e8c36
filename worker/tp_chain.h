/*
 * worker/tp_chain.h: the request path as a chain of stages, compiled per
 * API and generation (as Tyk's processSpec builds a middleware list per
 * API, and nginx runs phase handlers).
 *
 * Used by: worker processes. One loop, no locking.
 *
 * The contract: a stage's run() gets the request and answers
 *  - TP_STAGE_NEXT:  go on with the next stage;
 *  - TP_STAGE_DONE:  it has answered (or handed the request to the part
 *                    that answers: the proxy, the REST API); the runner
 *                    touches the request no more;
 *  - TP_STAGE_LATER: it waits (Redis, a timer) and continues the chain
 *                    itself with tp_chain_resume(); until then the runner
 *                    touches nothing. A stage that answers from its own
 *                    callback does not resume;
 *  - TP_STAGE_ERROR: something broke; the runner answers 500.
 * No stage calls another: tp_chain.c holds the order (the stage tables)
 * and is the only code that knows it. A stage that waits gives a cancel()
 * to drop what is pending when the request goes away meanwhile.
 *
 * Every request runs the front chain first (protocol checks, the request
 * target, the gateway's own endpoints, routing); the routing stage enters
 * the chain of the API it found (tp_chain_enter), compiled per API when
 * the worker takes a generation (tp_compile.c).
 *
 * A stage's own per-request state is <state> bytes of the request's arena
 * (tp_chain_state), not a field of tp_req_t: what one stage leaves for the
 * later ones (the session, the key's limits, the header plan) is.
 */
#ifndef TP_CHAIN_H
#define TP_CHAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_req_s tp_req_t;
typedef struct tp_buf_s tp_buf_t;

typedef enum {
    TP_STAGE_NEXT,
    TP_STAGE_DONE,
    TP_STAGE_LATER,
    TP_STAGE_ERROR,
} tp_stage_rc_t;

/* What the chain builder knows of an API. */
typedef struct tp_chain_api_s {
    unsigned keyless : 1;        /* use_keyless: no key stages */
    unsigned api_limits : 1;     /* global_rate_limit or per-endpoint API limits */
    unsigned analytics : 1;      /* tracked: records or metrics on, and the API not do_not_track */
    unsigned notrack : 1;        /* ... with extended_paths.do_not_track_endpoints */
    unsigned records : 1;        /* enable_analytics: analytics records */
    unsigned metrics : 1;        /* turnpike.metrics_port: Prometheus counters */
    unsigned mtls : 1;           /* use_mutual_tls_auth */
    unsigned timeouts : 1;       /* hard_timeouts or global_enforce_timeout */
    unsigned breakers : 1;       /* extended_paths.circuit_breakers */
    unsigned jwt : 1;            /* enable_jwt */
    unsigned cors : 1;           /* CORS.enable */
    unsigned basic : 1;          /* use_basic_auth */
    unsigned hmac : 1;           /* enable_signature_checking */
    unsigned no_token : 1;       /* no AuthKey: another auth method, no use_standard_auth */
    unsigned headers : 1;        /* global_headers(_remove) or transform_headers */
    unsigned resp_headers : 1;   /* transform_response_headers or global_response_headers */
    unsigned rewrites : 1;       /* url_rewrites */
    unsigned mtransforms : 1;    /* method_transforms */
    unsigned size_limits : 1;    /* global_size_limit or size_limits */
    unsigned validate : 1;       /* validate_json */
    unsigned transform : 1;      /* transform (request bodies) */
    unsigned tracked : 1;        /* track_endpoints */
    unsigned basic_body : 1;     /* basic_auth.extract_from_body */
    unsigned resp_transform : 1; /* transform_response */
    unsigned cache : 1;          /* cache_options.enable_cache */
    unsigned cache_body : 1;     /* ... with an endpoint for POST, PUT or PATCH (body hashed) */
    unsigned rewrite_body : 1;   /* a url_rewrites trigger with payload_matches */
    unsigned loops : 1;          /* a url_rewrites target is tyk:// */
    unsigned batch : 1;          /* enable_batch_request_support */
    unsigned js_pre : 1;         /* custom_middleware.pre (JavaScript) */
    unsigned js_post_key_auth : 1; /* ... post_key_auth */
    unsigned js_post : 1;          /* ... post */
    unsigned virtual : 1;          /* extended_paths.virtual */
    unsigned js_response : 1;      /* custom_middleware.response */
    unsigned js_auth : 1;          /* custom_middleware.auth_check (custom_plugin_auth_enabled) */
} tp_chain_api_t;

typedef struct tp_stage_s {
    const char *name;
    /* Does an API with <a> use this stage? NULL: every API does. */
    int (*wanted)(const tp_chain_api_t *a);
    tp_stage_rc_t (*run)(tp_req_t *req);
    /* The request is going away while this stage waits or runs (may be
     * NULL); it may be called after the stage answered: idempotent. */
    void (*cancel)(tp_req_t *req);
    /* A response stage: appends its header lines to a response head, one
     * from the upstream (<gateway> TP_RESP_UPSTREAM), one the gateway made
     * (TP_RESP_GATEWAY) or an upstream's the response cache kept, whose
     * upstream-side changes were made when it was stored (TP_RESP_CACHED). */
    void (*headers)(const tp_req_t *req, tp_buf_t *head, int gateway);
    /* A response body stage: the upstream's whole response is in <head>
     * (its status line and header lines as they will go out, without
     * the blank line) and <body>, gathered by the proxy; it may change
     * both. */
    void (*body)(tp_req_t *req, tp_buf_t *head, tp_buf_t *body);
    /* A log stage: the request was answered (counters; analytics). */
    void (*log)(tp_req_t *req);
    /* Bytes of per-request state it wants (tp_chain_state), 0 for none. */
    size_t state;
    /* It reads the request's head or paths once the upstream answers:
     * they are copied out of the shared read buffer (tp_req_save) before
     * the proxy asks, for the APIs whose chain has such a stage. */
    unsigned reads_request_late : 1;
} tp_stage_t;

enum { TP_RESP_UPSTREAM = 0, TP_RESP_GATEWAY = 1, TP_RESP_CACHED = 2 };

#define TP_CHAIN_MAX 40

typedef struct tp_chain_s {
    uint8_t n, nresp, nlog;
    uint8_t keep_request; /* a stage has reads_request_late: the proxy saves the head first */
    const tp_stage_t *stage[TP_CHAIN_MAX];
    const tp_stage_t *resp[TP_CHAIN_MAX]; /* response stages */
    const tp_stage_t *log[TP_CHAIN_MAX];  /* the API's own log stages */
    uint8_t nbody;
    const tp_stage_t *body[4]; /* response body stages: the proxy gathers the body for them */
    /* answers a request whose stage said TP_STAGE_ERROR */
    void (*fail)(tp_req_t *req);
} tp_chain_t;

/* The runner's part of a request (embedded in tp_req_t). */
typedef struct tp_chain_run_s {
    const tp_chain_t *chain;
    const tp_chain_t *enter;   /* the chain to go on with (tp_chain_enter) */
    uint8_t at;                /* the stage running or waiting */
    uint8_t waiting;           /* that stage is running or said TP_STAGE_LATER */
    void *state[TP_CHAIN_MAX]; /* each stage's state, once it asked for it */
} tp_chain_run_t;

/* Builds the chain of an API from <table> (<n> stages, in order): the
 * stages <a> wants. Returns 0, or -1 when more than TP_CHAIN_MAX. */
int tp_chain_build(tp_chain_t *c, const tp_stage_t *const *table, size_t n, const tp_chain_api_t *a,
                   void (*fail)(tp_req_t *req));

/* The gateway's own tables of request and response stages, and the
 * chain they make for an API; <fail> answers TP_STAGE_ERROR. */
int tp_chain_build_api(tp_chain_t *c, const tp_chain_api_t *a, void (*fail)(tp_req_t *req));
/* The front chain every request runs first. */
void tp_chain_build_front(tp_chain_t *c, void (*fail)(tp_req_t *req));

/* Runs <c> for <req> from its first stage. */
void tp_chain_start(tp_req_t *req, const tp_chain_t *c);

/* A stage that said TP_STAGE_LATER is through waiting: <rc> is its answer
 * now (TP_STAGE_NEXT or TP_STAGE_ERROR; one that answered does not call). */
void tp_chain_resume(tp_req_t *req, tp_stage_rc_t rc);

/* Called by a stage that says TP_STAGE_NEXT: the request goes on with
 * the first stage of <c> instead of the next one of its chain (routing
 * enters the API's chain). */
void tp_chain_enter(tp_req_t *req, const tp_chain_t *c);

/* The running (or waiting) stage's state: its <state> bytes from the
 * request's arena, allocated on the first call of a request and kept
 * until the request is put; uninitialised: the stage sets what it reads. */
void *tp_chain_state(tp_req_t *req);
/* The same, or NULL when the stage has not asked for it in this request
 * (or no stage is running): for cancel(). */
void *tp_chain_state_peek(const tp_req_t *req);

/* The request is going away: a waiting stage drops what is pending. */
void tp_chain_cancel(tp_req_t *req);

/* The response stages of <c> (the request's chain, or NULL for a request
 * that reached no API) add their headers to <head>. */
static inline void tp_chain_headers(const tp_chain_t *c, const tp_req_t *req, tp_buf_t *head,
                                    int gateway)
{
    for (unsigned i = 0; c != NULL && i < c->nresp; i++)
        c->resp[i]->headers(req, head, gateway);
}

/* The response body stages of <c> (tp_stage_t.body), in order. */
static inline void tp_chain_body(const tp_chain_t *c, tp_req_t *req, tp_buf_t *head, tp_buf_t *body)
{
    for (unsigned i = 0; c != NULL && i < c->nbody; i++)
        c->body[i]->body(req, head, body);
}

/* The log stages, once the request is answered: those every request has
 * (the control API's and unrouted ones too), then those of the API's
 * chain the request entered. */
void tp_chain_log(tp_req_t *req);

#endif
