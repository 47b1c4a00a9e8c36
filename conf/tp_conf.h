/*
 * conf/tp_conf.h: tyk.conf, TYK_GW_* overrides and classic API definitions.
 *
 * Used by: the master, which loads and validates everything before it
 * forks; workers read the result (inherited copy-on-write) and never parse
 * files themselves. Nothing here touches an event loop.
 *
 * Loading rules, as Tyk's:
 *  - tyk.conf is plain JSON; keys Turnpike does not use are accepted (Tyk's
 *    own keys are type-checked, then named once in a warning if set);
 *  - TYK_GW_<GOFIELD>[_<GOFIELD>...] environment variables override the file;
 *  - settings Tyk lacks live in one "turnpike": {...} object (Tyk ignores
 *    it), overridable as TYK_GW_TURNPIKE_<KEY-WITHOUT-UNDERSCORES>.
 * A wrong type or malformed JSON is an error naming the file, the JSON path
 * and what was expected.
 */
#ifndef TP_CONF_H
#define TP_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tp_buf.h"
#include "tp_redis_conf.h"
#include "tp_tls.h"
#include "tp_url.h"

/* The "storage" block is the Redis client's own settings struct. */
typedef tp_redis_conf_t tp_conf_storage_t;

/* The "turnpike" block: settings Tyk has no name for. */
typedef struct tp_conf_tp_s {
    int64_t workers;               /* 0: one per available core */
    char *admin_socket;            /* admin unix socket path ("" for none) */
    int64_t shm_size;              /* bytes of shared memory for API generations */
    int64_t max_apis;              /* APIs counted in shared-memory statistics */
    int64_t max_connections;       /* per worker; 0: no limit besides RLIMIT_NOFILE */
    int64_t max_request_line;      /* bytes, 414 beyond */
    int64_t max_header_bytes;      /* whole header block, 431 beyond */
    int64_t max_header_count;      /* 431 beyond */
    double header_timeout;         /* s, total time to receive a request head (408) */
    double body_timeout;           /* s, idle time between request body reads (408) */
    double keepalive_timeout;      /* s, idle keep-alive connection lifetime */
    int64_t keepalive_requests;    /* requests per client connection */
    double send_timeout;           /* s, a client that reads nothing this long is dropped */
    double upstream_idle_timeout;  /* s, idle pooled upstream connections */
    double redis_ready_grace;      /* s Redis may be unreachable before /ready fails */
    int64_t session_cache_size;    /* bytes of the shared session cache */
    int64_t session_cache_entry;   /* bytes per cached session (larger ones are not cached) */
    int64_t response_cache_size;   /* bytes of the shared response cache front; 0: none */
    int64_t response_cache_entry;  /* bytes per cached response (larger ones: Redis only) */
    int limits_fail_open;          /* rate limits and quotas let requests through while Redis is
                                    * unreachable */
    char *rate_limiter;            /* "local" (node counters, Tyk's DRL role) or "exact" (Redis) */
    int64_t limit_counters;        /* entries in the node's rate-limit table */
    int64_t quota_writeback;       /* s between quota write-backs into sessions; < 0: none */
    int64_t metrics_port;          /* Prometheus GET /metrics on listen_address; 0: none */
    int64_t metrics_max_series;    /* series per open-ended family (per path, per key) */
    int64_t analytics_detail_max;  /* bytes of RawRequest / RawResponse kept (before base64) */
    double websocket_idle_timeout; /* s without a byte either way before a websocket is closed */
} tp_conf_tp_t;

typedef struct tp_conf_s {
    char *file; /* where it was read from */

    char *listen_address;
    int64_t listen_port;
    int64_t control_api_port;
    char *hostname;
    char *secret;
    char *node_secret;
    char *app_path;
    char *template_path;
    int enable_custom_domains;
    char *health_check_endpoint_name;
    struct {
        int enable_health_checks;            /* GET /tyk/health answers */
        int64_t health_check_value_timeouts; /* its window, s */
    } health_check;
    char *readiness_check_endpoint_name;
    char *log_level;
    char *log_format;
    int use_db_app_configs;
    int allow_insecure_configs;
    char *policy_source;
    char *policy_record_name;
    char *policy_path;
    int suppress_redis_signal_reload;
    int64_t liveness_check_ns; /* liveness_check.check_duration: the Redis probe interval */

    int close_connections;
    int proxy_close_connections;
    double proxy_default_timeout;
    int64_t max_idle_connections;
    int64_t max_idle_connections_per_host;
    int hide_generator_header;
    char *override_messages; /* the override_messages object as JSON text, or NULL */

    /* keys and sessions */
    int hash_keys;
    char *hash_key_function;
    char *basic_auth_hash_key_function; /* bcrypt (the default), sha256, murmur32/64/128 */
    int64_t jwks_cache_timeout;         /* seconds a JWKS is kept (0: Tyk's 240) */
    int jwt_ssl_insecure_skip_verify;   /* JWKS over https: do not verify the server */
    tp_strlist_t hash_key_function_fallback;
    tp_strlist_t secrets; /* "name:value": $secret_conf.<name> */
    int enable_hashed_keys_listing;
    int64_t min_token_length;
    int allow_master_keys;
    int force_global_session_lifetime;
    int64_t global_session_lifetime;
    int session_lifetime_respects_key_expiration;
    int ignore_endpoint_case;
    struct {
        int disable_cached_session_state;
        int64_t cached_session_timeout; /* s */
    } local_session_cache;
    int64_t graceful_shutdown_timeout_duration;
    int64_t graceful_shutdown_delay_seconds;

    struct {
        int64_t max_request_body_size;
        int enable_strict_routes;
        int skip_url_cleaning;
        int enable_path_prefix_matching;
        int enable_path_suffix_matching;
        int64_t read_timeout;
        int64_t write_timeout;
        int use_ssl;
        char *certificates; /* [{domain_name, cert_file, key_file}] as JSON */
        tp_strlist_t ssl_certificates;
        int64_t min_version; /* Go's codes: 769..772, 0 default */
        int64_t max_version;
        tp_strlist_t ssl_ciphers;
        int enable_websockets;
    } http_server_options;

    /* upstream TLS defaults (an API's proxy.transport overrides them) */
    struct {
        int insecure_skip_verify;
        int64_t min_version;
        int64_t max_version;
        tp_strlist_t ciphers;
        int disable_renegotiation;
        int force_common_name_check;
    } proxy_ssl;

    /* Built by the loader (conf/tp_conf_tls.c) from the files above: the
     * listener's TLS context (NULL unless use_ssl), and a digest of every
     * certificate and key file read, so a reload notices new contents. */
    tp_tls_ctx_t *listen_tls;
    unsigned char tls_digest[32];

    /* rate limiting (TYK-COMPAT 6.2, 6.7) */
    int enable_fixed_window_rate_limiter;
    int enable_sentinel_rate_limiter;
    int enable_redis_rolling_limiter;
    int management_node;
    double drl_threshold;
    int64_t drl_notification_frequency;
    char *rate_limit_response_headers; /* "quotas" or "rate_limits" */

    /* JavaScript middleware (TYK-COMPAT 23) */
    int enable_jsvm;
    int64_t jsvm_timeout; /* seconds; <= 0: Tyk's 5 */
    char *middleware_path;
    char *tyk_js_path;
    int disable_virtual_path_blobs;
    int enable_bundle_downloader;
    char *bundle_base_url;
    int bundle_insecure_skip_verify;
    char *public_key_path; /* bundles' signatures (and Tyk's signed notifications) */

    /* analytics (TYK-COMPAT 8, 15) */
    int enable_analytics;
    struct {
        int enable_detailed_recording;
        int enable_multiple_analytics_keys;
        int enable_geo_ip;
        tp_strlist_t ignored_ips; /* exact strings, as Tyk */
        struct {
            int enabled;
            int normalise_uuids;
            int normalise_numbers;
            int normalise_ulids;
            tp_strlist_t custom_patterns;
        } normalise_urls;
        int64_t pool_size;
        int64_t records_buffer_size;     /* records a worker holds at most */
        int64_t storage_expiration_time; /* s, the list's TTL; -1: none */
        double purge_interval;
        char *serializer_type;
        char *type; /* "prometheus" (the seed's monitoring advice): metrics on port 9090 */
    } analytics_config;

    /* the host checker (TYK-COMPAT 10, 20) */
    struct {
        int disable;
        char *poller_group;
        int enable_uptime_analytics;
        int64_t failure_trigger_sample_size; /* default 3 */
        int64_t time_wait;                   /* s between checks, default 10 */
        int64_t checker_pool_size;           /* checks in flight at once */
    } uptime_tests;

    tp_conf_storage_t storage;
    tp_conf_tp_t tp;
} tp_conf_t;

/* JSON kinds of tyk.conf keys, as Go's decoder checks them. */
enum {
    TP_CK_BOOL,
    TP_CK_INT,
    TP_CK_FLOAT,
    TP_CK_STRING,
    TP_CK_STRLIST,
    TP_CK_STRMAP,
    TP_CK_INTLIST,
    TP_CK_FLOATLIST,
    TP_CK_OBJECT,  /* a struct: members are keys of their own */
    TP_CK_OBJLIST, /* a list of structs: elements are checked as "path[]" */
    TP_CK_MAP,     /* a map of structs: members are checked as "path.*" */
    TP_CK_ANY,
    TP_CK_DURATION, /* Go time.Duration: integer nanoseconds in JSON, "10s" in env */
};

typedef struct tp_conf_key_s {
    const char *path; /* lower case, "a.b", "a.*", "a[]" */
    int kind;
    const char *env; /* TYK_GW_... or NULL when the environment cannot set it */
} tp_conf_key_t;

/* Every key Tyk's tyk.conf knows (conf/tp_conf_tyk_keys.c), sorted by path. */
extern const tp_conf_key_t tp_conf_tyk_keys[];
extern const size_t tp_conf_tyk_nkeys;

/* Finds the config file as Tyk does: <explicit> if given, else ./tyk.conf,
 * else /etc/tyk/tyk.conf. Returns a static string or NULL. */
const char *tp_conf_find(const char *explicit_path);

/* Loads <path> and the environment into <conf>. Returns 0, or -1 with
 * every error written to <err> (one per line). Warnings (settings not
 * implemented yet, unknown keys) are logged. */
int tp_conf_load(const char *path, tp_conf_t *conf, char *err, size_t errlen);
void tp_conf_free(tp_conf_t *conf);

/* Do two configurations talk to Redis the same way? */
int tp_conf_storage_same(const tp_conf_storage_t *a, const tp_conf_storage_t *b);

/* The effective configuration as JSON, secrets masked (for --dump-config). */
char *tp_conf_dump(const tp_conf_t *conf);

/* Are two configurations the same in every setting, secrets included? */
int tp_conf_same(const tp_conf_t *a, const tp_conf_t *b);

/* Reads the listener's certificate files and builds conf->listen_tls
 * (conf/tp_conf_tls.c). Returns 0, or -1 with the file, JSON path and
 * reason in <err>. */
int tp_conf_tls_build(tp_conf_t *conf, char *err, size_t errlen);

/* Number of workers to run: the configured count or the usable cores. */
int tp_conf_workers(const tp_conf_t *conf);

/* ------------------------------------------------------------------------
 * Classic API definitions (every .json file in app_path)
 */

/* An https target's TLS settings from its API (proxy.transport and
 * upstream_certificates); workers merge tyk.conf's proxy_ssl_* into them. */
typedef struct tp_uptls_s {
    int skip_verify;
    int force_cn;
    int64_t min_version; /* Go's codes, 0: tyk.conf's */
    int64_t max_version;
    char *ciphers;     /* comma-separated Go names, NULL: tyk.conf's */
    char *client_file; /* upstream_certificates entry for this host, or NULL */
    char *client_pem;  /* its contents (certificate and key), read at load */
} tp_uptls_t;

typedef struct tp_target_s {
    tp_url_t url;
    tp_uptls_t *tls; /* https targets only */
    char *raw;       /* as written in the definition */
    uint32_t idx;    /* position among all targets of a generation */
} tp_target_t;

typedef struct tp_api_s {
    char *file;
    char *api_id;
    char *name;
    char *org_id;
    char *slug;
    char *domain;
    char *listen_path;
    int use_keyless;
    int internal; /* reachable only through tyk:// loops: no public route */
    int strip_listen_path;
    int preserve_host_header;
    int disable_strip_slash;
    int enable_load_balancing;
    int use_mtls;      /* use_mutual_tls_auth */
    char *mtls_pem;    /* its client_certificates, read at load (PEM), or NULL */
    uint32_t idx;      /* position in its generation */
    uint32_t stat_idx; /* its counters in shared memory (UINT32_MAX: none) */
    tp_target_t *targets;
    size_t ntargets;
    char *def_json; /* the definition as loaded, compact, for the REST API */
    char *js_json;  /* its JavaScript middleware (tp_conf_js.c), or NULL */
} tp_api_t;

typedef struct tp_apis_s {
    tp_api_t **v;
    size_t n;
    size_t nerrors; /* files that failed to load */
} tp_apis_t;

/* Parses one API definition. On error returns -1 with the JSON path and
 * reason in <err>. <def> is borrowed; the API keeps a duplicate. */
int tp_api_parse(const char *file, const cJSON *def, tp_api_t **out, char *err, size_t errlen);
void tp_api_free(tp_api_t *api);

/* Loads every *.json in <dir> (skipping OpenAPI companion files), in name
 * order. Invalid files are skipped and logged, counted in nerrors and
 * described in <errs> (one line each, when not NULL); duplicate api_ids
 * keep the first. Returns 0, or -1 when the directory cannot be read
 * (reason in <err>). */
int tp_apis_load_dir(const char *dir, const struct tp_conf_s *conf, tp_apis_t *apis, tp_buf_t *errs,
                     char *err, size_t errlen);
/* The scripts and hooks of the API's JavaScript middleware (custom_middleware
 * with driver "otto", extended_paths.virtual), read and compiled now (needs
 * <conf>'s enable_jsvm, middleware_path, tyk_js_path): api->js_json, or
 * NULL when it has none. -1 with the JSON path, file, line and reason. */
int tp_api_js_load(tp_api_t *api, const cJSON *def, const struct tp_conf_s *conf, char *err,
                   size_t errlen);
/* The same; a custom_middleware_bundle not yet under middleware_path is
 * downloaded only when <may_fetch> (the master), else left for then. */
int tp_api_js_load_ex(tp_api_t *api, const cJSON *def, const struct tp_conf_s *conf, int may_fetch,
                      char *err, size_t errlen);
void tp_apis_free(tp_apis_t *apis);

/* ------------------------------------------------------------------------
 * Policies (policies.policy_path or policies.policy_record_name)
 */

typedef struct tp_policy_s {
    char *id;
    char *json; /* the policy, compact, with its "id" */
    char *file;
} tp_policy_t;

typedef struct tp_policies_s {
    tp_policy_t *v;
    size_t n;
} tp_policies_t;

/* Loads the policies <conf> names. Any invalid policy fails the whole load
 * (-1, file and JSON path in <err>): a gateway never runs with only some of
 * its policies. No file configured is not an error. */
int tp_policies_load(const tp_conf_t *conf, tp_policies_t *p, char *err, size_t errlen);
void tp_policies_free(tp_policies_t *p);
/* Is <id> a safe policy id (Tyk's [A-Za-z0-9._~-])? */
int tp_policy_id_ok(const char *id);
/* Checks the shape of one policy; errors name <path>. */
int tp_policy_check(const cJSON *pol, const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * Internal to conf/: typed member access with Go-like type errors. Each
 * returns 0 when the member is absent or null (output untouched), 1 when it
 * was read, -1 on a type error (message in <err> with the JSON path).
 */
/* The names of the "*.json" files in <dir> (no hidden ones, none <skip>
 * says to skip), sorted. NULL with errno when <dir> cannot be read; the
 * caller frees each name and the array. */
char **tp_conf__json_files(const char *dir, int (*skip)(const char *dir, const char *name),
                           size_t *count);
int tp_conf__get_str(const cJSON *obj, const char *key, const char *path, char **out, char *err,
                     size_t errlen);
int tp_conf__get_bool(const cJSON *obj, const char *key, const char *path, int *out, char *err,
                      size_t errlen);
int tp_conf__get_int(const cJSON *obj, const char *key, const char *path, int64_t *out, char *err,
                     size_t errlen);
int tp_conf__get_strlist(const cJSON *obj, const char *key, const char *path, tp_strlist_t *out,
                         char *err, size_t errlen);
const cJSON *tp_conf__get_obj(const cJSON *obj, const char *key, const char *path, char *err,
                              size_t errlen, int *rc);
void tp_strlist_free(tp_strlist_t *l);

#endif
