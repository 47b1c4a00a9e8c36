/*
 * worker/tp_worker.h: a worker process (tp_worker_t), and the parts of
 * the request path declared with it: the front chain's entry
 * (tp_front.c), each API compiled per generation (tp_compile.c), the key
 * stages' helpers (tp_auth.c, tp_session.c), the built-in endpoints and
 * the REST API. The types of the layers below have
 * their own headers: tp_req.h, tp_conn.h, tp_upstream.h, tp_respond.h;
 * the stage contract is tp_chain.h.
 *
 * Used by: worker processes only (forked by the master). One libuv loop,
 * single-threaded: nothing here is shared with another process except the
 * inherited listening socket, so there is no locking.
 *
 * Ownership:
 *  - the worker owns its connections (list w->conns), the per-host upstream
 *    pools, a freelist of 64 KiB blocks and a freelist of requests;
 *  - a client connection owns at most one request at a time (HTTP/1.1
 *    responses go out in order, so pipelined requests wait in conn->in);
 *  - a request borrows one upstream connection while it is proxied;
 *  - libuv handles are embedded in their owner, which is freed only after
 *    every embedded handle's close callback has run.
 *
 * Memory: an idle keep-alive connection holds no buffer (reads land in the
 * worker's shared buffer), so 10,000 idle clients cost about 1 KiB each.
 */
#ifndef TP_WORKER_H
#define TP_WORKER_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <uv.h>

#include "tp_api_rules.h"
#include "tp_buf.h"
#include "tp_chain.h"
#include "tp_conf.h"
#include "tp_conn.h"
#include "tp_limit.h"
#include "tp_list.h"
#include "tp_redis.h"
#include "tp_req.h"
#include "tp_respond.h"
#include "tp_route.h"
#include "tp_shm.h"
#include "tp_strmap.h"
#include "tp_upstream.h"

/* An API as a worker runs it (tp_compile.c). */
typedef struct tp_compiled_s {
    tp_api_rules_t *rules;                /* NULL: it could not be built (500) */
    struct tp_analytics_api_s *analytics; /* NULL: no records */
    tp_tls_certset_t *mtls;               /* use_mutual_tls_auth: the allowed certificates */
    struct tp_timeouts_s *timeouts;       /* hard timeouts (tp_timeouts.c); NULL: none */
    struct tp_breakers_api_s *breakers;   /* circuit breakers (tp_breaker.c); NULL: none */
    struct tp_jwt_api_s *jwt;             /* enable_jwt (tp_jwt.c); NULL: off */
    struct tp_cors_s *cors;               /* CORS.enable (tp_cors.c); NULL: off */
    struct tp_basic_api_s *basic;         /* use_basic_auth (tp_basic.c); NULL: off */
    struct tp_hmac_api_s *hmac;           /* enable_signature_checking (tp_hmac.c); NULL: off */
    struct tp_jsmw_api_s *jsmw;           /* JavaScript middleware (tp_jsmw.c); NULL: none */
    unsigned uptime_lb : 1; /* load balancing skips hosts the uptime tests found down */
    tp_chain_t chain;
} tp_compiled_t;

struct tp_worker_s {
    uv_loop_t loop;
    tp_conn_events_t ev;
    int id; /* its slot in shared memory */
    const tp_conf_t *conf;
    tp_shm_t *shm;
    const tp_snapshot_t *snap; /* the generation new requests use */
    uint64_t gen;
    uint32_t inflight[TP_SHM_SLOTS];       /* requests still on each slot's generation */
    tp_shm_stat_t *stats;                  /* this worker's counter rows */
    tp_shm_worker_t *me;                   /* this worker's status and counters */
    tp_pool_t **target_pool[TP_SHM_SLOTS]; /* per slot: the pool of each target */
    uint32_t *rr[TP_SHM_SLOTS];            /* per slot: round-robin position per API */
    tp_compiled_t *compiled[TP_SHM_SLOTS]; /* per slot: each API's rules and chain */
    size_t ncompiled[TP_SHM_SLOTS];
    tp_chain_t front;               /* the chain every request starts with */
    cJSON **policies[TP_SHM_SLOTS]; /* per slot: parsed policies, built on first use */
    size_t npolicies[TP_SHM_SLOTS];
    tp_rulepaths_t rulepaths[2];    /* scratch for rule matching (tp_req_rulepaths) */
    uint64_t req_serial;            /* requests begun */
    struct tp_scache_s *scache;     /* the node's session cache (shared memory) */
    struct tp_scache_s *rcache;     /* the node's response cache front, or NULL (tp_cache.c) */
    struct tp_js_s *js;             /* the JavaScript engine's heap, once an API needs it */
    tp_buf_t cache_rkey, cache_val; /* ... what a lookup copies out of it */
    struct tp_limits_s *limits;     /* the node's rate-limit counters (shared memory) */
    uv_timer_t announce_timer;      /* this node's announcements (tp_limit.c) */
    struct tp_wb_s *wb;             /* quota values to write back into sessions (tp_limit_wb.c) */
    size_t wb_n;
    tp_strmap_t wb_map;
    struct tp_wb_s *wbf; /* ... and those being written back */
    size_t wbf_n, wbf_i;
    uv_timer_t wb_timer;
    struct tp_jwt_cache_s *jwt_cache;     /* verified tokens (tp_jwt.c), made on first use */
    struct tp_jwks_s *jwks;               /* key sets behind jwt_source URLs (tp_jwks.c) */
    struct tp_basic_cache_s *basic_cache; /* bcrypt results (tp_basic.c), made on first use */
    tp_list_t basic_jobs;                 /* ... and the bcrypts under way (tp_basic.c) */
    tp_sess_t **l1;                       /* this worker's parsed sessions (tp_session.c) */
    uint32_t *l1_hash;                    /* beside them, their keys' hashes */
    uint64_t l1_tick;
    uv_timer_t refresh_timer; /* sessions to read again, gathered (tp_session.c) */
    tp_sess_t **refresh_q;
    size_t refresh_n, refresh_cap;
    struct tp_errtpl_s *errtpl; /* error templates and message overrides */
    tp_list_t reload_waiters;   /* blocking /tyk/reload requests */
    uint32_t next_token;
    uv_tcp_t listener;
    uv_tcp_t control_listener;
    int control_listening;
    uv_poll_t master_poll;
    int master_fd;
    uv_signal_t sig_term;
    uv_signal_t sig_quit;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    uv_timer_t drain_timer;
    int draining;
    int exiting;   /* drained: pushing its last analytics records */
    int not_ready; /* readiness answers 503 (shutdown delay) */
    int listening;
    tp_list_t conns;
    uint32_t nconns;
    int any_mtls; /* an API of the latest generation uses mutual TLS */
    char *rbuf;   /* shared read buffer for connections without a buffer of their own */
    void *free_blocks;
    uint32_t nfree_blocks;
    tp_req_t *free_reqs;
    uint32_t nfree_reqs;
    tp_pool_t **pools;
    size_t npools;
    tp_strmap_t pool_map; /* "host:port" -> index in pools */
    tp_strmap_t rw_map;   /* url_rewrites to other hosts: "host:port" -> index in rw_hosts */
    tp_target_t **rw_hosts;
    size_t nrw_hosts;
    llhttp_settings_t req_settings;
    llhttp_settings_t resp_settings;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t keepalive_timeout_ms;
    uint64_t send_timeout_ms;
    uint64_t upstream_timeout_ms;
    uint64_t upstream_idle_ms;
    uint32_t max_hdrs;
    uint32_t max_line;
    uint32_t max_head;
    uint64_t max_body;
    uint64_t requests;
    tp_buf_t scratch;                 /* decoded paths, valid during dispatch only */
    struct tp_analytics_s *analytics; /* buffered records (tp_analytics.c) */
    tp_buf_t met_path;                /* a normalised path (tp_metrics.c) */

    /* Redis, and what the liveness probe last saw (tp_health.c) */
    tp_redis_t *redis;
    uv_timer_t probe_timer;
    int probe_inflight;
    int probed; /* a probe has finished */
    int probe_ok;
    int64_t probe_wall_us; /* when it finished */
    uint64_t fail_since;   /* loop ms since the probe has been failing, 0 if fine */
    uint64_t started_ms;
    char redis_err[300];
};

/* tp_worker.c */
_Noreturn void tp_worker_run(int id, int listen_fd, int control_fd, int master_fd,
                             const tp_conf_t *conf, tp_shm_t *shm);
/* Moves to the published generation if there is a newer one. */
void tp_worker_check_generation(tp_worker_t *w);
/* A message to the master over the channel ("reload 12", ...). */
void tp_worker_tell(tp_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tp_req_t *tp_req_get(tp_worker_t *w);
void tp_req_put(tp_worker_t *w, tp_req_t *req);
void tp_worker_conn_gone(tp_worker_t *w);
/* tp_compile.c: each API of a generation, compiled when the worker takes
 * it (every API of the snapshot, at once). */
void tp_compile_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* The request's API as compiled, or NULL when its rules could not be built. */
const tp_compiled_t *tp_compiled(const tp_worker_t *w, const tp_req_t *req);

/* tp_auth.c: the stages between routing and the limits */
void tp_hdrplan_drop(tp_hdrplan_t *hp, const char *name);
/* Tyk's getAuthToken (TYK-COMPAT 3.2): the credential at <loc> (header,
 * then query parameter, then cookie, each overriding when non-empty), a
 * "Bearer " prefix stripped. <tmp> holds a parameter's decoded value. */
tp_str_t tp_auth_token(const tp_req_t *req, const tp_authloc_t *loc, tp_str_t query, tp_buf_t *tmp);

/* tp_jwt.c: JWT authentication; an API's settings, NULL unless enable_jwt
 * (<quiet>: its problems were logged already, by another worker). */
typedef struct tp_jwt_api_s tp_jwt_api_t;
tp_jwt_api_t *tp_jwt_compile(const cJSON *def, const tp_api_t *api, int quiet);
void tp_jwt_api_free(tp_jwt_api_t *j);

/* tp_jwks.c: JWKS key sets, per worker and URL */
typedef struct tp_jwks_wait_s {
    tp_list_t link;
    tp_req_t *req;
    void (*again)(tp_req_t *req); /* the set came (or did not): try again */
} tp_jwks_wait_t;
/* The set at <url> now (*set NULL: none) and its version; starts a fetch
 * when there is none or it is stale. -1: none yet, but one is being
 * fetched (wait for it with tp_jwks_wait). */
int tp_jwks_get(tp_worker_t *w, const char *url, const cJSON **set, uint64_t *version);
/* A kid the set lacks: fetch again (at most every 10 s). 1: wait for it. */
int tp_jwks_refetch(tp_worker_t *w, const char *url);
void tp_jwks_wait(tp_worker_t *w, const char *url, tp_jwks_wait_t *wt);
void tp_jwks_unwait(tp_jwks_wait_t *wt);
/* The key of <set> with that kid, or NULL. */
const cJSON *tp_jwks_key(const cJSON *set, const char *kid);

/* tp_basic.c: basic auth; an API's settings, NULL unless use_basic_auth */
typedef struct tp_basic_api_s tp_basic_api_t;
tp_basic_api_t *tp_basic_compile(const cJSON *def, const tp_api_t *api, int quiet);
void tp_basic_api_free(tp_basic_api_t *b);
/* extract_from_body: the credentials may be in the request body. */
int tp_basic_extracts(const tp_basic_api_t *b);

/* tp_hmac.c: HMAC request signing; NULL unless enable_signature_checking */
typedef struct tp_hmac_api_s tp_hmac_api_t;
tp_hmac_api_t *tp_hmac_compile(const cJSON *def);
void tp_hmac_api_free(tp_hmac_api_t *h);

/* tp_cors.c: the API's CORS object; NULL unless CORS.enable */
typedef struct tp_cors_s tp_cors_t;
tp_cors_t *tp_cors_compile(const cJSON *def);
void tp_cors_free(tp_cors_t *c);

/* tp_ctxvars.c: Tyk's $tyk_context, $tyk_meta and $secret_ variables */
enum {
    TP_CTX_ESCAPE = 1, /* query-escape context and meta values (rewrite targets) */
    TP_CTX_HEADER = 2, /* a header value: line breaks in values become spaces */
};
/* <in> (<n> bytes) with its variables replaced, appended to <out>. */
void tp_ctx_expand(tp_req_t *req, const char *in, size_t n, int flags, tp_buf_t *out);
/* The value of $tyk_context.<name> onto <out>: 1, or 0 when unset. */
int tp_ctx_get(tp_req_t *req, const char *name, size_t n, tp_buf_t *out);
/* The context data as an object (._tyk_context of body templates); the
 * caller frees it with cJSON_Delete. */
cJSON *tp_ctx_object(tp_req_t *req);
/* $tyk_context.<name> is <val> for the rest of the request (copied). */
void tp_ctx_set(tp_req_t *req, const char *name, size_t nlen, const char *val, size_t vlen);
/* ... <v> written as Tyk's valToStr writes it (string, number, list). */
void tp_ctx_set_json(tp_req_t *req, const char *name, size_t nlen, const cJSON *v);

/* tp_session.c: sessions of API keys */
void tp_session_init(tp_worker_t *w);
void tp_session_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* The key stage's work: finds the session of <key> for the request's API
 * (cache, then Redis) into req->sess. TP_STAGE_NEXT when found now,
 * TP_STAGE_LATER while Redis is asked (the chain resumes then), or
 * TP_STAGE_DONE with an error answered. */
tp_stage_rc_t tp_session_lookup(tp_req_t *req, tp_str_t key);
/* A session made by the gateway (JWT's virtual sessions, TYK-COMPAT 17.4):
 * stored as <json> (policies still to apply) when absent, and stored again
 * with <policies> and at least <expires> when it has others. */
typedef struct tp_sess_want_s {
    const char *json;
    const char *policies; /* the policy IDs, each NUL-terminated, then "" */
    size_t policies_len;  /* ... bytes of it, the last NUL included */
    int64_t expires;      /* unix seconds, 0: keep */
} tp_sess_want_t;
/* tp_session_lookup with TP_AUTH_<miss> for a key stored under no
 * candidate, or <want> to make the session then (only read during the
 * call: a lookup that waits keeps a copy). */
tp_stage_rc_t tp_session_lookup_as(tp_req_t *req, tp_str_t key, int miss,
                                   const tp_sess_want_t *want);
/* The session of <key>, a key the request only looks at (JWT's
 * jwt_client_base_field), into req->peek_sess (NULL when it is stored
 * nowhere). TP_STAGE_NEXT when known now; TP_STAGE_LATER while Redis is
 * asked, and <again> runs when it has answered (the stage runs again);
 * TP_STAGE_DONE with Tyk's 503 when Redis cannot tell. */
tp_stage_rc_t tp_session_peek(tp_req_t *req, tp_str_t key, void (*again)(tp_req_t *));
enum { TP_AUTH_NONE = -1 }; /* a lookup's <miss>: finding nothing is no error */
/* Policy <id> of org <org> in generation <snap>, or NULL (none of that
 * org: Tyk's "no matching policy"). */
const cJSON *tp_session_policy(tp_worker_t *w, const tp_snapshot_t *snap, const char *org,
                               const char *id);
/* The auth stage of TP_ID_<method> runs: the session it finds is the
 * request's (req->sess) when base_identity_provided_by names it or is
 * unset, else kept aside for its own checks. */
void tp_session_method(tp_req_t *req, int method);
/* The session the running auth method found (for its check stage). */
tp_sess_t *tp_session_current(const tp_req_t *req);
/* The request goes away while its session is read: the reads are dropped. */
void tp_session_cancel(tp_req_t *req);
/* Tyk's ApplyPolicies on <session> for API org <api_org> (NULL: no API),
 * with generation <snap>'s policies, parsed once per worker. 0, or -1 with
 * the reason in <err>. */
int tp_session_apply_policies(tp_worker_t *w, const tp_snapshot_t *snap, cJSON *session,
                              const char *api_org, char *err, size_t errlen);
/* The request is going away: pending Redis reads are dropped. */
void tp_session_release(tp_req_t *req);
/* A found session's JSON (policies applied) and its key as stored: the
 * hash after "apikey-" (the key itself without hash_keys). */
const cJSON *tp_session_json(const tp_sess_t *s);
const char *tp_session_key_hash(const tp_sess_t *s);
/* A JavaScript hook changed the session's meta_data to <meta_json> (an
 * object): when it differs, the session is stored again with it (Redis
 * and this node's caches) and is the request's from here on. */
void tp_session_set_meta(tp_req_t *req, const char *meta_json);
/* The key the client presented for it (Tyk's "token" context variable). */
const char *tp_session_key(const tp_sess_t *s);
/* What an analytics record reads of a session, found once per parsed
 * session (a lookup scans all of a session's members). The pointers are
 * into its JSON; absent members are NULL (detailed: 0). */
typedef struct tp_sess_rec_s {
    const cJSON *policies, *tags; /* apply_policies, tags */
    const char *developer;        /* meta_data.tyk_developer_id */
    const char *oauth_client, *alias;
    int detailed; /* enable_detailed_recording or enable_detail_recording */
} tp_sess_rec_t;
const tp_sess_rec_t *tp_session_rec(tp_sess_t *s);

/* tp_jsmw.c: JavaScript middleware and virtual endpoints */
typedef struct tp_jsmw_api_s tp_jsmw_api_t;
/* The API's scripts in the worker's engine (api->js_json), or NULL. */
tp_jsmw_api_t *tp_jsmw_compile(tp_worker_t *w, const cJSON *def, const tp_api_t *api);
void tp_jsmw_api_free(tp_jsmw_api_t *m);
/* Which of the JavaScript stages the API's chain needs. */
void tp_jsmw_wanted(const tp_jsmw_api_t *m, tp_chain_api_t *a);

/* tp_analytics.c: Tyk's analytics records, buffered and pushed to Redis */
typedef struct tp_analytics_api_s tp_analytics_api_t;
typedef struct tp_analytics_s tp_analytics_t;
void tp_analytics_init(tp_worker_t *w);
/* What an API's records need of its definition; NULL when it has none
 * (analytics off, do_not_track). */
tp_analytics_api_t *tp_analytics_compile(const cJSON *def, const tp_api_t *api,
                                         const tp_conf_t *conf);
void tp_analytics_api_free(tp_analytics_api_t *a);

/* tp_timeouts.c: hard timeouts, compiled per API (NULL when it has none) */
typedef struct tp_timeouts_s tp_timeouts_t;
tp_timeouts_t *tp_timeouts_compile(const cJSON *def, const tp_api_t *api, const tp_conf_t *conf);
void tp_timeouts_free(tp_timeouts_t *t);
/* tp_breaker.c: circuit breakers, compiled per API (NULL when it has none) */
typedef struct tp_breakers_api_s tp_breakers_api_t;
tp_breakers_api_t *tp_breakers_compile(const cJSON *def, const tp_api_t *api, const tp_conf_t *conf,
                                       struct tp_breakers_s *table);
void tp_breakers_api_free(tp_breakers_api_t *a);
/* A Go duration string in milliseconds (rounded up), or -1. */
int64_t tp_go_duration_ms(const char *s);
int tp_analytics_has_notrack(const tp_analytics_api_t *a);
/* The worker drains: pushes what is buffered, then calls <then> (at once
 * when nothing is, or after at most 2 s). */
void tp_analytics_drain(tp_worker_t *w, void (*then)(tp_worker_t *w));
/* Path normalisation as Tyk's NormalisePath (TYK-COMPAT 15.5) of <path>
 * into <out>, with the worker's custom patterns <an> (NULL: none). */
void tp_analytics_normalise(const tp_analytics_t *an, const tp_conf_t *conf, const char *path,
                            size_t n, tp_buf_t *out);

/* tp_front.c: a request whose head is complete runs the front chain */
void tp_front_init(tp_worker_t *w);
void tp_req_dispatch(tp_req_t *req);

/* tp_health.c: /hello and /ready, and the Redis liveness probe behind them */
void tp_health_start(tp_worker_t *w);
void tp_health_hello(tp_req_t *req);
void tp_health_ready(tp_req_t *req);

/* tp_rest.c: Tyk's Gateway REST API (/tyk/...) */
void tp_rest_handle(tp_req_t *req, tp_str_t path, tp_str_t query);
/* tp_body.c: a body the gateway asked for is in req->rbody: the body
 * stage goes on, or the REST API answers. */
void tp_body_in(tp_req_t *req);
/* Reads the whole body into req->rbody, as the "body" stage does, for a
 * stage of its own: TP_STAGE_NEXT when it is in, else TP_STAGE_LATER (the
 * chain goes on with the next stage once it is). */
tp_stage_rc_t tp_body_read(tp_req_t *req);
/* transform_response: the response body <in> (all of it) through
 * req->resp_tf into <out>; -1 (logged) when it does not parse or the
 * template fails: the body goes out unchanged. */
int tp_body_transform_response(tp_req_t *req, const tp_buf_t *in, tp_buf_t *out);
/* The body of a REST request arrived (req->rbody). */
void tp_rest_body_done(tp_req_t *req);
/* Shared by the REST files (tp_rest.c, tp_rest_keys.c). */
enum { TP_REST_OP_KEYS = 16 }; /* rest_op values from here on are key operations */
void tp_rest__reply(tp_req_t *req, int status, const char *json);
void tp_rest__error(tp_req_t *req, int status, const char *message);
void tp_rest__not_found(tp_req_t *req);
void tp_rest__bad_method(tp_req_t *req);
/* tp_rest_health.c: GET /tyk/health?api_id= */
void tp_rest_health(tp_req_t *req, tp_str_t query);
/* Asks for the body; tp_rest_body_done runs once it is in. */
void tp_rest__want_body(tp_req_t *req, int op, tp_str_t id);
/* tp_rest_keys.c: /tyk/keys */
void tp_rest_keys(tp_req_t *req, tp_str_t rest, tp_str_t query);
void tp_rest_keys_body(tp_req_t *req);
void tp_rest_keys_release(tp_req_t *req);
/* The master answered "reloaded <token> <ok> <message>". */
void tp_rest_reloaded(tp_worker_t *w, uint32_t token, int ok, const char *message);

/* tp_analytics.c: the path the request's record (and metrics) name, as
 * Tyk's r.URL.Path (without the listen path when it is stripped); empty
 * when the request is not tracked. */
tp_str_t tp_track_path(const tp_req_t *req);

#endif
