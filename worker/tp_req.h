/*
 * worker/tp_req.h: a request on a client connection: its parsed head, its
 * paths, the state the stages of its chain leave for each other, and its
 * response; with the accessors of its head (tp_req.c).
 *
 * Used by: worker processes. A connection owns at most one request at a
 * time; the request borrows one upstream connection while it is proxied.
 * Requests and 64 KiB blocks are recycled through the worker's freelists.
 */
#ifndef TP_REQ_H
#define TP_REQ_H

#include <stdint.h>

#include "tp_api_rules.h"
#include "tp_arena.h"
#include "tp_buf.h"
#include "tp_chain.h"
#include "tp_http.h"
#include "tp_limit.h"
#include "tp_list.h"
#include "tp_route.h"
#include "tp_shm.h"

#define TP_BLOCK_SIZE (64 * 1024)
#define TP_REST_BODY_MAX (16 * 1024 * 1024) /* an API definition or policy, at most */
#define TP_KEEP_BODY_MAX (8 * 1024 * 1024)  /* a response the cache keeps, at most */

typedef struct tp_worker_s tp_worker_t;
typedef struct tp_conn_s tp_conn_t;
typedef struct tp_req_s tp_req_t;
typedef struct tp_upconn_s tp_upconn_t;
typedef struct tp_tunnel_s tp_tunnel_t;
typedef struct tp_pool_s tp_pool_t;

/* A header inside a parsed head, as offsets from the head's first byte. */
/* Bytes of the request or the response as they go by, for the analytics
 * record's RawRequest/RawResponse (detailed recording): at most
 * req->tap_max bytes, in the request's arena; nothing is kept while
 * tap_max is 0. */
typedef struct tp_tap_s {
    char *p;
    uint32_t len, cap;
} tp_tap_t;

typedef struct tp_hdr_s {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t val_off;
    uint32_t val_len;
    int32_t kind; /* the name's TP_H_* class, -1 until tp_hdr_kind asks */
} tp_hdr_t;

/* The class of header <h> (its name at <base> + name_off), found once per
 * header: the stages and the proxy ask it of every header, several times. */
static inline int tp_hdr_kind(const char *base, const tp_hdr_t *h)
{
    tp_hdr_t *m = (tp_hdr_t *)h; /* the arrays are the request's and the upstream's own */
    if (m->kind < 0)
        m->kind = tp_http_header_kind(base + h->name_off, h->name_len);
    return m->kind;
}

typedef struct tp_reqpath_s {
    tp_str_t raw;   /* the path as received (escaped), without the query */
    tp_str_t path;  /* decoded; the same bytes as raw when nothing was escaped */
    tp_str_t query; /* without '?'; n == 0 when absent */
    size_t matched; /* bytes of path covered by the route prefix */
} tp_reqpath_t;

/* Header changes for the upstream request: names to drop (the client's
 * copies, case-insensitive; they point into the API's rules) and lines to
 * add. */
#define TP_HDRPLAN_MAX 32
typedef struct tp_hdrplan_s {
    tp_buf_t add;
    const char *drop[TP_HDRPLAN_MAX];
    size_t ndrop;
} tp_hdrplan_t;

/* The paths rules are matched against (tp_auth.c), and what they were
 * built from: a request's serial, its path, listen path and version
 * segment (tp_req_rulepaths builds them once per request). */
typedef struct tp_rulepaths_s {
    tp_buf_t buf;
    const char *p[3];
    uint64_t serial;
    tp_str_t path, seg;
    size_t matched;
} tp_rulepaths_t;

typedef struct tp_sess_s tp_sess_t;
typedef struct tp_ctxkv_s tp_ctxkv_t;

struct tp_req_s {
    tp_conn_t *conn;
    uint64_t serial; /* the worker's count of requests when it began */
    tp_upconn_t *up;
    tp_tunnel_t *tunnel; /* the upstream switched protocols: the relay */
    tp_req_t *next_free;
    tp_list_t wait_link;       /* in pool->waiters during a host lookup, or in
          w->reload_waiters during a blocking /tyk/reload */
    const tp_snapshot_t *snap; /* the generation this request started on */
    const tp_route_t *route;
    const tp_target_t *target;
    tp_pool_t *pool;
    uint32_t token;                      /* blocking /tyk/reload: the answer it waits for */
    uint8_t rest_op;                     /* a REST write waiting for its body */
    char rest_id[256];                   /* the id in its path */
    void *rest_job;                      /* a /tyk/keys operation in progress (tp_rest_keys.c) */
    struct tp_redis_purge_s *rest_purge; /* DELETE /tyk/cache/{api_id} in progress */

    /* the parsed head: offsets from head_base, which moves if the head is
     * copied out of the shared read buffer */
    const char *head_base;
    uint32_t url_off;
    uint32_t url_len;
    uint32_t nhdrs;
    uint32_t last_val_end; /* obs-fold shows up as a gap between value pieces */
    int8_t last_cb;        /* 1 after a field piece, 2 after a value piece */
    int16_t reject;        /* status our callbacks asked for when they stopped the parser */
    uint8_t method;
    uint8_t http_major;
    uint8_t http_minor;
    unsigned chunked : 1;
    unsigned has_body : 1;
    unsigned body_done : 1;
    unsigned client_keepalive : 1;
    unsigned expect_continue : 1;
    unsigned resp_started : 1; /* bytes of a response went to the client */
    unsigned resp_done : 1;    /* the whole response is written */
    unsigned resp_chunked : 1; /* pass upstream chunked framing through */
    unsigned resp_dechunk : 1; /* strip chunked framing (HTTP/1.0 client) */
    unsigned resp_eof : 1;     /* response body runs until upstream closes */
    unsigned resp_nobody : 1;
    unsigned up_head_sent : 1;
    unsigned up_head_inflight : 1;
    unsigned sending_continue : 1; /* "100 Continue" is being written */
    unsigned in_send : 1;
    unsigned retried : 1;
    unsigned buffering : 1;     /* the body is for the gateway (REST API), kept in rbody */
    unsigned upgrade : 1;       /* asked the upstream to switch protocols (enable_websockets) */
    unsigned body_wait : 1;     /* the "body" stage waits for the whole body (tp_body.c) */
    unsigned body_in_run : 1;   /* ... and is still in its run() */
    unsigned body_buffered : 1; /* the whole body is in rbody: the proxy sends it from there */
    unsigned quiet_refusal : 1; /* basic auth tries the header before the body: no answer yet */
    unsigned resp_collect : 1;  /* the response body is gathered in resp_body for resp_tf */
    unsigned resp_keep : 1;     /* ... or copied there as it goes out (the response cache);
                                   cleared when it is over TP_KEEP_BODY_MAX */
    unsigned cached : 1;        /* answered from the response cache */
    unsigned batch : 1;         /* a batch call (tp_batch.c) */
    const struct tp_transform_s *resp_tf; /* transform_response that applies, or NULL */
    tp_buf_t resp_body;                   /* ... the upstream's body, then the new one */
    uint64_t content_length;
    uint64_t body_seen; /* decoded request body bytes */
    int status;

    tp_buf_t up_head; /* request head for the upstream */
    char *body;       /* block of raw request body bytes for the upstream */
    size_t body_len;
    size_t body_inflight; /* bytes of body being written */
    tp_buf_t out;         /* response head, or a whole gateway-made response */
    tp_buf_t rbody;       /* a REST request's body */

    /* The chain's stages. A stage's own state is in the arena (its
     * tp_stage_t.state); these are what stages leave for later ones. */
    tp_chain_run_t run; /* the runner's place (tp_chain.c) */
    tp_arena_t arena;   /* memory that lives as long as the request */
    tp_str_t host;      /* the Host header, trimmed (protocol stage) */
    tp_reqpath_t *rp;   /* the request's paths: on the stack, or saved_rp */
    const tp_api_rules_t *rules;
    const tp_version_t *version;
    tp_hdrplan_t hdr_plan;
    const char *strip_params[2]; /* query parameters to drop: a version, the key */
    size_t strip_seg;            /* bytes of a URL version segment to drop */
    tp_str_t vseg;               /* the URL version segment (VersionCheck) */
    unsigned ignored : 1;        /* on an ignored path: no key checks */
    tp_keyctx_t keyctx;          /* the key's limits (access rights -> key limits) */
    char keysuffix[72];          /* ... a per-endpoint limit's hash, keyctx.suffix */
    tp_sess_t *sess;             /* the key's session (a reference) */
    tp_sess_t *side_sess;        /* ... one an auth method found that is not the identity */
    tp_sess_t *peek_sess;        /* ... another key it looked at (tp_session_peek) */
    unsigned auth_side : 1;      /* the running auth method's session is side_sess */
    unsigned jwks_refetched : 1; /* a kid its JWKS lacked made it fetch the set again */
    unsigned jwt_peeked : 1;     /* the jwt_client_base_field key was looked up (peek_sess) */
    tp_buf_t saved;              /* the head and paths, copied while waiting */
    tp_reqpath_t saved_rp;
    struct tp_cache_req_s *cache; /* the response cache's key and plan (tp_cache.c), or NULL */
    struct tp_track_s *track;     /* what the analytics record needs of the request (the
                                    track stage, for the analytics log stage); NULL: none */
    unsigned not_recorded : 1;    /* answered by a mock reply: no record (TYK-COMPAT 15.6) */
    tp_ctxkv_t *ctx_kv;           /* context variables stages set (tp_ctxvars.c), in the arena */
    tp_str_t up_target;           /* url_rewrites: the new path and query for the upstream ... */
    size_t up_target_strip;       /* ... and the bytes of it the listen path covers */
    const char *up_method;        /* method_transforms: the upstream's method; NULL: the client's */
    const char *loop_url;         /* url_rewrites to tyk://: where the "loop" stage goes next */
    uint8_t loop_level;           /* internal loops taken so far (Tyk's loop level) ... */
    uint8_t loop_limit;           /* ... the last one's loop_limit (0: Tyk's 5) ... */
    unsigned loop_check : 1;      /* ... and its check_limits: limits apply again */
    const tp_target_t *rw_host;   /* url_rewrites to another host: it, and its pool */
    tp_pool_t *rw_pool;
    uint32_t hosts_tried;     /* other target_list hosts tried after connect failures */
    uint64_t hard_timeout_ms; /* the "timeouts" stage: a hard timeout applies (0: none) */
    uint64_t hard_deadline;   /* ... and when it ends (loop ms), set by the proxy */
    const struct tp_breaker_entry_s *breaker; /* the "breaker" stage let it through ... */
    unsigned breaker_trial : 1;               /* ... as the half-open trial */
    uint64_t up_start_ms;                     /* the proxy asked the upstream (loop ms) ... */
    uint64_t up_ms;                           /* ... and the answer's head took this long */
    int rl_set;                               /* X-RateLimit-* for the response (TYK-COMPAT 6.7) */
    int rl_early;                             /* ... from a rate limit: on error responses too */
    int64_t rl_limit, rl_remaining, rl_reset;
    uint64_t start_ms;
    tp_tap_t tap_in;  /* the request: as received, then as sent upstream */
    tp_tap_t tap_out; /* the response as written to the client */
    uint32_t tap_max; /* bytes kept of each; 0: no taps */
    tp_hdr_t hdrs[];  /* w->max_hdrs entries */
};

/* The value of header <name> (case-insensitive), trimmed; {NULL, 0} when absent. */
tp_str_t tp_req_header(const tp_req_t *req, const char *name);

/* request.RealIP (TYK-COMPAT 12.3): X-Real-IP, else the first
 * X-Forwarded-For entry, else the peer. */
tp_str_t tp_req_real_ip(const tp_req_t *req);

/* Keeps up to req->tap_max bytes of <n> at <p> in <t> (nothing when off). */
void tp_req_tap(tp_req_t *req, tp_tap_t *t, const void *p, size_t n);

/* Since the request's head arrived, in ms: <total>, and of it <upstream>
 * waiting for the upstream's head (-1 when it never asked one). */
void tp_req_latency(const tp_req_t *req, int64_t *total, int64_t *upstream);
static inline tp_str_t tp_req_str(const tp_req_t *req, uint32_t off, uint32_t len)
{
    return (tp_str_t){req->head_base + off, len};
}

/* Query parameter <name> of <q>, decoded ('+' as space) into <out>
 * (NUL-terminated); -1 when absent. */
int tp_query_get(tp_str_t q, const char *name, tp_buf_t *out);
/* Appends <n> bytes of a query name or value, decoded as Go's
 * url.ParseQuery does ('+' is a space; an undecodable one is kept). */
void tp_query_unescape(tp_buf_t *out, const char *s, size_t n);
/* The next "name=value" of query <q> (undecoded; <q> moves past it):
 * 1, or 0 when there is none left. Empty pieces ("a&&b") are skipped. */
int tp_query_next(tp_str_t *q, tp_str_t *name, tp_str_t *val);
/* <q> without parameter <name> (strip_versioning_data). */
void tp_query_without(tp_str_t q, const char *name, tp_buf_t *out);
/* Copies the request's head and paths out of the read buffer, into
 * req->saved and req->saved_rp, before it waits. */
void tp_req_save(tp_req_t *req, tp_reqpath_t *rp);
/* The three paths Tyk matches path rules on (TYK-COMPAT 3.6) for <req>
 * with paths <rp>: without the listen path (and, with <version>, the URL
 * version segment; without it for key limits and allowed_urls), without
 * the listen path, and whole; cleaned first with skip_url_cleaning. Built
 * once per request and kind in the worker's scratch, again only when the
 * paths changed (a rewrite, a copy while waiting). */
const char *const *tp_req_rulepaths(tp_req_t *req, const tp_reqpath_t *rp, int version);
/* <n> bytes that live as long as the request (its arena), uninitialised. */
static inline void *tp_req_alloc(tp_req_t *req, size_t n)
{
    return tp_arena_alloc(&req->arena, n);
}
/* <n> bytes of <p>, NUL-terminated, in the request's arena. */
char *tp_req_strndup(tp_req_t *req, const char *p, size_t n);
/* Blocks of TP_BLOCK_SIZE bytes, from the worker's freelist. */
char *tp_block_get(tp_worker_t *w);
void tp_block_put(tp_worker_t *w, char *block);

#endif
