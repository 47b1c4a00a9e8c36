/*
 * worker/tp_worker.h: a worker process, its client connections, requests,
 * and upstream connection pools.
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

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include <llhttp.h>
#include <uv.h>

#include "tp_api_rules.h"
#include "tp_buf.h"
#include "tp_conf.h"
#include "tp_limit.h"
#include "tp_list.h"
#include "tp_redis.h"
#include "tp_route.h"
#include "tp_shm.h"
#include "tp_strmap.h"

#define TP_BLOCK_SIZE (64 * 1024)
#define TP_REST_BODY_MAX (16 * 1024 * 1024) /* an API definition or policy, at most */
#define TP_UP_MAX_HEADERS 128

typedef struct tp_worker_s tp_worker_t;
typedef struct tp_conn_s tp_conn_t;
typedef struct tp_req_s tp_req_t;
typedef struct tp_upconn_s tp_upconn_t;
typedef struct tp_pool_s tp_pool_t;

/* A header inside a parsed head, as offsets from the head's first byte. */
typedef struct tp_hdr_s {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t val_off;
    uint32_t val_len;
} tp_hdr_t;

enum {
    TP_C_IDLE,   /* between requests, nothing buffered */
    TP_C_HEAD,   /* reading a request head */
    TP_C_BODY,   /* head dispatched, reading the request body */
    TP_C_DONE,   /* request fully read, response under way */
    TP_C_LINGER, /* final response sent, discarding input before close */
};

struct tp_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    llhttp_t parser;
    tp_worker_t *w;
    tp_req_t *req;
    tp_list_t link;
    tp_buf_t in;        /* input not yet parsed (partial head, pipelined requests) */
    uint64_t deadline;  /* loop time in ms; 0 for none */
    uint64_t timer_due; /* when the timer is armed to fire */
    uint32_t nreq;      /* requests started on this connection */
    uint8_t state;
    uint8_t handles_open; /* embedded handles not yet closed */
    unsigned reading : 1;
    unsigned writing : 1;
    unsigned closing : 1;
    unsigned control : 1;    /* accepted on control_api_port */
    unsigned want_close : 1; /* close once the current response is out */
    unsigned linger : 1;     /* and discard input for a while before closing */
    char ip[46];
};

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

/* The paths rules are matched against (tp_auth.c). */
typedef struct tp_rulepaths_s {
    tp_buf_t buf;
    const char *p[3];
} tp_rulepaths_t;

typedef struct tp_sess_s tp_sess_t;
typedef struct tp_lookup_s tp_lookup_t;

struct tp_req_s {
    tp_conn_t *conn;
    tp_upconn_t *up;
    tp_req_t *next_free;
    tp_list_t wait_link;       /* in pool->waiters during a host lookup, or in
          w->reload_waiters during a blocking /tyk/reload */
    const tp_snapshot_t *snap; /* the generation this request started on */
    const tp_route_t *route;
    const tp_target_t *target;
    tp_pool_t *pool;
    uint32_t token;    /* blocking /tyk/reload: the answer it waits for */
    uint8_t rest_op;   /* a REST write waiting for its body */
    char rest_id[256]; /* the id in its path */
    void *rest_job;    /* a /tyk/keys operation in progress (tp_rest_keys.c) */

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
    unsigned buffering : 1; /* the body is for the gateway (REST API), kept in rbody */
    uint64_t content_length;
    uint64_t body_seen; /* decoded request body bytes */
    int status;

    tp_buf_t up_head; /* request head for the upstream */
    char *body;       /* block of raw request body bytes for the upstream */
    size_t body_len;
    size_t body_inflight; /* bytes of body being written */
    tp_buf_t out;         /* response head, or a whole gateway-made response */
    tp_buf_t rbody;       /* a REST request's body */

    /* between routing and the proxy (tp_auth.c, tp_session.c) */
    const tp_api_rules_t *rules;
    const tp_version_t *version;
    tp_hdrplan_t hdr_plan;
    const char *strip_params[2]; /* query parameters to drop: a version, the key */
    size_t strip_seg;            /* bytes of a URL version segment to drop */
    tp_sess_t *sess;             /* the key's session (a reference) */
    tp_lookup_t *lookup;         /* a session being read from Redis */
    tp_buf_t saved;              /* the head and paths, copied while waiting */
    tp_reqpath_t saved_rp;
    struct limop_s *limop; /* limits waiting for Redis (tp_limit.c) */
    int rl_set;            /* X-RateLimit-* for the response (TYK-COMPAT 6.7) */
    int rl_early;          /* ... from a rate limit: on error responses too */
    int64_t rl_limit, rl_remaining, rl_reset;
    uint64_t start_ms;
    tp_hdr_t hdrs[]; /* w->max_hdrs entries */
};

enum {
    TP_UP_CONNECTING,
    TP_UP_ACTIVE,
    TP_UP_IDLE,
};

struct tp_upconn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t parser;
    tp_worker_t *w;
    tp_pool_t *pool;
    tp_req_t *req;
    tp_list_t link; /* pool->idle */
    char *rbuf;     /* a block while active */
    size_t rlen;    /* bytes in rbuf */
    size_t rparsed; /* of which llhttp has seen */
    uint32_t reason_off;
    uint32_t reason_len;
    uint32_t nhdrs;
    uint32_t uses;
    uint64_t deadline;
    uint64_t timer_due;
    uint8_t state;
    uint8_t handles_open;
    uint8_t last_cb;
    unsigned writing : 1;
    unsigned reading : 1;
    unsigned closing : 1;
    unsigned head_done : 1;
    unsigned msg_done : 1;
    unsigned got_bytes : 1;
    unsigned interim : 1; /* parsing a 1xx response, which is dropped */
    unsigned msg_cb : 1;  /* llhttp completed the message */
    unsigned extra : 1;   /* bytes followed the response: not reusable */
    unsigned eof : 1;     /* the upstream closed */
    char *dechunk_w;      /* HTTP/1.0 client: where de-chunked body bytes go */
    tp_hdr_t hdrs[TP_UP_MAX_HEADERS];
};

struct tp_pool_s {
    char *host;
    char *name; /* host:port, for logs */
    uint16_t port;
    struct sockaddr_storage addr;
    int have_addr;
    int literal; /* host is an IP address: never resolved */
    uint64_t addr_expires;
    int resolving;
    uv_getaddrinfo_t gai;
    tp_list_t waiters;
    tp_list_t idle;
    uint32_t nidle;
};

struct tp_worker_s {
    uv_loop_t loop;
    int id; /* its slot in shared memory */
    const tp_conf_t *conf;
    tp_shm_t *shm;
    const tp_snapshot_t *snap; /* the generation new requests use */
    uint64_t gen;
    uint32_t inflight[TP_SHM_SLOTS];       /* requests still on each slot's generation */
    tp_shm_stat_t *stats;                  /* this worker's counter rows */
    tp_pool_t **target_pool[TP_SHM_SLOTS]; /* per slot: the pool of each target */
    uint32_t *rr[TP_SHM_SLOTS];            /* per slot: round-robin position per API */
    tp_api_rules_t **rules[TP_SHM_SLOTS];  /* per slot: each API's rules, built on first use */
    size_t nrules[TP_SHM_SLOTS];
    cJSON **policies[TP_SHM_SLOTS]; /* per slot: parsed policies, built on first use */
    size_t npolicies[TP_SHM_SLOTS];
    tp_rulepaths_t rulepaths;   /* scratch for rule matching */
    struct tp_scache_s *scache; /* the node's session cache (shared memory) */
    struct tp_limits_s *limits; /* the node's rate-limit counters (shared memory) */
    uv_timer_t announce_timer;  /* this node's announcements (tp_limit.c) */
    struct tp_wb_s *wb;         /* quota values to write back into sessions (tp_limit_wb.c) */
    size_t wb_n;
    tp_strmap_t wb_map;
    struct tp_wb_s *wbf; /* ... and those being written back */
    size_t wbf_n, wbf_i;
    uv_timer_t wb_timer;
    tp_sess_t **l1;    /* this worker's parsed sessions (tp_session.c) */
    uint32_t *l1_hash; /* beside them, their keys' hashes */
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
    int not_ready; /* readiness answers 503 (shutdown delay) */
    int listening;
    tp_list_t conns;
    uint32_t nconns;
    char *rbuf; /* shared read buffer for connections without a buffer of their own */
    void *free_blocks;
    uint32_t nfree_blocks;
    tp_req_t *free_reqs;
    uint32_t nfree_reqs;
    tp_pool_t **pools;
    size_t npools;
    tp_strmap_t pool_map; /* "host:port" -> index in pools */
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
    tp_buf_t scratch; /* decoded paths, valid during dispatch only */

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
char *tp_block_get(tp_worker_t *w);
void tp_block_put(tp_worker_t *w, char *block);
tp_req_t *tp_req_get(tp_worker_t *w);
void tp_req_put(tp_worker_t *w, tp_req_t *req);
void tp_worker_conn_gone(tp_worker_t *w);

/* tp_conn.c: client connections */
void tp_conn_accept(tp_worker_t *w, uv_stream_t *server, int control);
/* Serves a socket accepted outside libuv (the final accept sweep of a drain). */
void tp_conn_adopt(tp_worker_t *w, int fd);
void tp_conn_init_settings(llhttp_settings_t *s);
/* Writes <n> buffers to the client; tp_conn_written() follows when they are
 * out (possibly before this returns). The buffers must stay valid until
 * then. Returns 0 or a negative libuv error (the connection is closed). */
int tp_conn_write(tp_conn_t *c, uv_buf_t *bufs, unsigned n);
/* The response for the current request is complete (or failed): keep the
 * connection alive for the next request or close it. */
void tp_conn_response_done(tp_conn_t *c);
void tp_conn_close(tp_conn_t *c);
/* Resumes reading the request body after the upstream drained it. */
void tp_conn_body_drained(tp_conn_t *c);
void tp_conn_drain(tp_conn_t *c);
void tp_conn_update_deadline(tp_conn_t *c);

/* tp_auth.c: between routing and the proxy */
void tp_auth_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* Runs the version check, the path rules and authentication; ends in
 * tp_auth_done (possibly later) or an error response. */
void tp_auth_start(tp_req_t *req, tp_reqpath_t *rp);
void tp_hdrplan_drop(tp_hdrplan_t *hp, const char *name);
/* The paths (without the listen path, and whole) rules are matched on. */
void tp_auth_paths(tp_rulepaths_t *ps, const tp_reqpath_t *rp, int clean);
/* Appends "X-Tyk-Api-Expires: <RFC1123>\r\n" when the request's version (or
 * non-versioned API) has an expiry: Tyk sets it in VersionCheck, so every
 * response after that check carries it. */
void tp_auth_expires_header(const tp_req_t *req, tp_buf_t *b);
/* Query parameter <name> of <q>, decoded ('+' as space) into <out>
 * (NUL-terminated); -1 when absent. */
int tp_query_get(tp_str_t q, const char *name, tp_buf_t *out);
/* <q> without parameter <name> (strip_versioning_data). */
void tp_query_without(tp_str_t q, const char *name, tp_buf_t *out);

/* tp_session.c: sessions of API keys */
void tp_session_init(tp_worker_t *w);
void tp_session_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* Finds the session of <key> for the request's API (cache, then Redis),
 * checks it, and continues with tp_auth_done or answers an error. */
void tp_session_lookup(tp_req_t *req, tp_reqpath_t *rp, tp_str_t key);
/* Tyk's ApplyPolicies on <session> for API org <api_org> (NULL: no API),
 * with generation <snap>'s policies, parsed once per worker. 0, or -1 with
 * the reason in <err>. */
int tp_session_apply_policies(tp_worker_t *w, const tp_snapshot_t *snap, cJSON *session,
                              const char *api_org, char *err, size_t errlen);
/* The request is going away: pending Redis reads are dropped. */
void tp_session_release(tp_req_t *req);
/* Copies the request's head and paths out of the read buffer, into
 * req->saved and req->saved_rp, before it waits. */
void tp_auth_save(tp_req_t *req, tp_reqpath_t *rp);
/* Checks passed: on to the upstream. */
void tp_auth_done(tp_req_t *req, tp_reqpath_t *rp);

/* tp_handle.c: what to do with a request whose head is complete */
void tp_req_dispatch(tp_req_t *req);
tp_str_t tp_req_header(const tp_req_t *req, const char *name);
static inline tp_str_t tp_req_str(const tp_req_t *req, uint32_t off, uint32_t len)
{
    return (tp_str_t){req->head_base + off, len};
}

/* tp_health.c: /hello and /ready, and the Redis liveness probe behind them */
void tp_health_start(tp_worker_t *w);
void tp_health_hello(tp_req_t *req);
void tp_health_ready(tp_req_t *req);

/* tp_rest.c: Tyk's Gateway REST API (/tyk/...) */
void tp_rest_handle(tp_req_t *req, tp_str_t path, tp_str_t query);
/* The body of a REST request arrived (req->rbody). */
void tp_rest_body_done(tp_req_t *req);
/* Shared by the REST files (tp_rest.c, tp_rest_keys.c). */
enum { TP_REST_OP_KEYS = 16 }; /* rest_op values from here on are key operations */
void tp_rest__reply(tp_req_t *req, int status, const char *json);
void tp_rest__error(tp_req_t *req, int status, const char *message);
void tp_rest__not_found(tp_req_t *req);
void tp_rest__bad_method(tp_req_t *req);
/* Asks for the body; tp_rest_body_done runs once it is in. */
void tp_rest__want_body(tp_req_t *req, int op, tp_str_t id);
/* tp_rest_keys.c: /tyk/keys */
void tp_rest_keys(tp_req_t *req, tp_str_t rest, tp_str_t query);
void tp_rest_keys_body(tp_req_t *req);
void tp_rest_keys_release(tp_req_t *req);
/* The master answered "reloaded <token> <ok> <message>". */
void tp_rest_reloaded(tp_worker_t *w, uint32_t token, int ok, const char *message);

/* tp_respond.c: responses made by the gateway itself */
void tp_respond(tp_req_t *req, int status, const char *content_type, const char *body,
                size_t body_len, const char *extra_headers);
/* Tyk's error body (templates/error.json, or error.xml when the request is
 * XML; error_<status>.* in template_path override them). */
void tp_respond_error(tp_req_t *req, int status, const char *message);
/* Token-auth errors whose status and text override_messages may change. */
enum { TP_AUTH_FIELD_MISSING, TP_AUTH_KEY_NOT_FOUND, TP_AUTH_NMSG };
void tp_respond_auth_error(tp_req_t *req, int which);
/* Loads the templates from template_path and the overrides (worker start). */
void tp_errtpl_load(tp_worker_t *w);
int tp_req_will_close(const tp_req_t *req);
/* A plain-text error for a request that could not be parsed; always closes. */
void tp_respond_bad_request(tp_conn_t *c, int status);

/* tp_proxy.c: the upstream half of a request */
/* Builds the upstream request head and starts proxying. The request's head
 * spans are only valid during this call. */
void tp_proxy_start(tp_req_t *req, const tp_reqpath_t *rp);
void tp_proxy_connected(tp_req_t *req, tp_upconn_t *up);
void tp_proxy_failed(tp_req_t *req, int err);
void tp_proxy_body_ready(tp_req_t *req);
void tp_proxy_client_written(tp_req_t *req);
void tp_proxy_abort(tp_req_t *req);
void tp_proxy_init_settings(llhttp_settings_t *s);
/* Upstream events for the request <up> serves. */
void tp_proxy_up_read(tp_upconn_t *up, size_t nread);
void tp_proxy_up_eof(tp_upconn_t *up, int err);
void tp_proxy_up_written(tp_upconn_t *up, int status);
void tp_proxy_up_timeout(tp_upconn_t *up);

/* tp_upstream.c: per-host pools of upstream connections */
/* Maps the targets of a new generation to pools (made as needed). */
void tp_upstream_generation(tp_worker_t *w, const tp_snapshot_t *snap);
/* Finds or opens a connection for <req>; calls tp_proxy_connected or
 * tp_proxy_failed (possibly before returning). */
void tp_upstream_acquire(tp_req_t *req);
/* Returns <up> to its pool if <reusable>, else closes it. */
void tp_upstream_release(tp_upconn_t *up, int reusable);
void tp_upstream_set_deadline(tp_upconn_t *up, uint64_t ms);
/* Stops / restarts reading the upstream (back-pressure from the client). */
void tp_upstream_pause(tp_upconn_t *up);
void tp_upstream_resume(tp_upconn_t *up);
void tp_upstream_close(tp_upconn_t *up);
void tp_upstream_cancel_wait(tp_req_t *req);
void tp_upstream_shutdown(tp_worker_t *w);

#endif
