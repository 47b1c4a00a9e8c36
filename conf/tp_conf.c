/* conf/tp_conf.c: tyk.conf loading, TYK_GW_* overrides, defaults, validation. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tp_buf.h"
#include "tp_conf.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"

/* Settings Turnpike implements: where each lands in tp_conf_t. Keys under
 * "turnpike." are ours; their environment names are derived by the same
 * rule as Tyk's (TYK_GW_TURNPIKE_ + the key without underscores). */
typedef struct store_s {
    const char *path;
    int kind;
    size_t off;
} store_t;

#define S(path, kind, field)                                                                       \
    {                                                                                              \
        path, kind, offsetof(tp_conf_t, field)                                                     \
    }
static const store_t stores[] = {
    S("listen_address", TP_CK_STRING, listen_address),
    S("listen_port", TP_CK_INT, listen_port),
    S("control_api_port", TP_CK_INT, control_api_port),
    S("secret", TP_CK_STRING, secret),
    S("node_secret", TP_CK_STRING, node_secret),
    S("secrets", TP_CK_STRMAP, secrets),
    S("allow_insecure_configs", TP_CK_BOOL, allow_insecure_configs),
    S("use_db_app_configs", TP_CK_BOOL, use_db_app_configs),
    S("policies.policy_source", TP_CK_STRING, policy_source),
    S("policies.policy_record_name", TP_CK_STRING, policy_record_name),
    S("policies.policy_path", TP_CK_STRING, policy_path),
    S("hostname", TP_CK_STRING, hostname),
    S("app_path", TP_CK_STRING, app_path),
    S("enable_custom_domains", TP_CK_BOOL, enable_custom_domains),
    S("health_check_endpoint_name", TP_CK_STRING, health_check_endpoint_name),
    S("health_check.enable_health_checks", TP_CK_BOOL, health_check.enable_health_checks),
    S("health_check.health_check_value_timeouts", TP_CK_INT,
      health_check.health_check_value_timeouts),
    S("readiness_check_endpoint_name", TP_CK_STRING, readiness_check_endpoint_name),
    S("log_level", TP_CK_STRING, log_level),
    S("log_format", TP_CK_STRING, log_format),
    S("suppress_redis_signal_reload", TP_CK_BOOL, suppress_redis_signal_reload),
    S("liveness_check.check_duration", TP_CK_DURATION, liveness_check_ns),
    S("close_connections", TP_CK_BOOL, close_connections),
    S("proxy_close_connections", TP_CK_BOOL, proxy_close_connections),
    S("proxy_default_timeout", TP_CK_FLOAT, proxy_default_timeout),
    S("max_idle_connections_per_host", TP_CK_INT, max_idle_connections_per_host),
    S("hide_generator_header", TP_CK_BOOL, hide_generator_header),
    S("override_messages", TP_CK_MAP, override_messages),
    S("template_path", TP_CK_STRING, template_path),
    S("hash_keys", TP_CK_BOOL, hash_keys),
    S("hash_key_function", TP_CK_STRING, hash_key_function),
    S("basic_auth_hash_key_function", TP_CK_STRING, basic_auth_hash_key_function),
    S("jwks.cache.timeout", TP_CK_INT, jwks_cache_timeout),
    S("jwt_ssl_insecure_skip_verify", TP_CK_BOOL, jwt_ssl_insecure_skip_verify),
    S("hash_key_function_fallback", TP_CK_STRLIST, hash_key_function_fallback),
    S("enable_hashed_keys_listing", TP_CK_BOOL, enable_hashed_keys_listing),
    S("min_token_length", TP_CK_INT, min_token_length),
    S("allow_master_keys", TP_CK_BOOL, allow_master_keys),
    S("force_global_session_lifetime", TP_CK_BOOL, force_global_session_lifetime),
    S("global_session_lifetime", TP_CK_INT, global_session_lifetime),
    S("session_lifetime_respects_key_expiration", TP_CK_BOOL,
      session_lifetime_respects_key_expiration),
    S("ignore_endpoint_case", TP_CK_BOOL, ignore_endpoint_case),
    S("local_session_cache.disable_cached_session_state", TP_CK_BOOL,
      local_session_cache.disable_cached_session_state),
    S("local_session_cache.cached_session_timeout", TP_CK_INT,
      local_session_cache.cached_session_timeout),
    S("graceful_shutdown_timeout_duration", TP_CK_INT, graceful_shutdown_timeout_duration),
    S("graceful_shutdown_delay_seconds", TP_CK_INT, graceful_shutdown_delay_seconds),
    S("http_server_options.use_ssl", TP_CK_BOOL, http_server_options.use_ssl),
    S("http_server_options.certificates", TP_CK_OBJLIST, http_server_options.certificates),
    S("http_server_options.ssl_certificates", TP_CK_STRLIST, http_server_options.ssl_certificates),
    S("http_server_options.min_version", TP_CK_INT, http_server_options.min_version),
    S("http_server_options.max_version", TP_CK_INT, http_server_options.max_version),
    S("http_server_options.ssl_ciphers", TP_CK_STRLIST, http_server_options.ssl_ciphers),
    S("http_server_options.enable_websockets", TP_CK_BOOL, http_server_options.enable_websockets),
    S("proxy_ssl_insecure_skip_verify", TP_CK_BOOL, proxy_ssl.insecure_skip_verify),
    S("proxy_ssl_min_version", TP_CK_INT, proxy_ssl.min_version),
    S("proxy_ssl_max_version", TP_CK_INT, proxy_ssl.max_version),
    S("proxy_ssl_ciphers", TP_CK_STRLIST, proxy_ssl.ciphers),
    S("proxy_ssl_disable_renegotiation", TP_CK_BOOL, proxy_ssl.disable_renegotiation),
    S("ssl_force_common_name_check", TP_CK_BOOL, proxy_ssl.force_common_name_check),
    S("http_server_options.max_request_body_size", TP_CK_INT,
      http_server_options.max_request_body_size),
    S("http_server_options.enable_strict_routes", TP_CK_BOOL,
      http_server_options.enable_strict_routes),
    S("http_server_options.skip_url_cleaning", TP_CK_BOOL, http_server_options.skip_url_cleaning),
    S("http_server_options.enable_path_prefix_matching", TP_CK_BOOL,
      http_server_options.enable_path_prefix_matching),
    S("http_server_options.enable_path_suffix_matching", TP_CK_BOOL,
      http_server_options.enable_path_suffix_matching),
    S("enable_fixed_window_rate_limiter", TP_CK_BOOL, enable_fixed_window_rate_limiter),
    S("enable_sentinel_rate_limiter", TP_CK_BOOL, enable_sentinel_rate_limiter),
    S("enable_redis_rolling_limiter", TP_CK_BOOL, enable_redis_rolling_limiter),
    S("management_node", TP_CK_BOOL, management_node),
    S("drl_threshold", TP_CK_FLOAT, drl_threshold),
    S("drl_notification_frequency", TP_CK_INT, drl_notification_frequency),
    S("rate_limit_response_headers", TP_CK_STRING, rate_limit_response_headers),
    S("enable_jsvm", TP_CK_BOOL, enable_jsvm),
    S("jsvm_timeout", TP_CK_INT, jsvm_timeout),
    S("middleware_path", TP_CK_STRING, middleware_path),
    S("tyk_js_path", TP_CK_STRING, tyk_js_path),
    S("disable_virtual_path_blobs", TP_CK_BOOL, disable_virtual_path_blobs),
    S("enable_bundle_downloader", TP_CK_BOOL, enable_bundle_downloader),
    S("bundle_base_url", TP_CK_STRING, bundle_base_url),
    S("bundle_insecure_skip_verify", TP_CK_BOOL, bundle_insecure_skip_verify),
    S("public_key_path", TP_CK_STRING, public_key_path),
    S("enable_analytics", TP_CK_BOOL, enable_analytics),
    S("analytics_config.enable_detailed_recording", TP_CK_BOOL,
      analytics_config.enable_detailed_recording),
    S("analytics_config.enable_multiple_analytics_keys", TP_CK_BOOL,
      analytics_config.enable_multiple_analytics_keys),
    S("analytics_config.enable_geo_ip", TP_CK_BOOL, analytics_config.enable_geo_ip),
    S("analytics_config.ignored_ips", TP_CK_STRLIST, analytics_config.ignored_ips),
    S("analytics_config.normalise_urls.enabled", TP_CK_BOOL,
      analytics_config.normalise_urls.enabled),
    S("analytics_config.normalise_urls.normalise_uuids", TP_CK_BOOL,
      analytics_config.normalise_urls.normalise_uuids),
    S("analytics_config.normalise_urls.normalise_numbers", TP_CK_BOOL,
      analytics_config.normalise_urls.normalise_numbers),
    S("analytics_config.normalise_urls.normalise_ulids", TP_CK_BOOL,
      analytics_config.normalise_urls.normalise_ulids),
    S("analytics_config.normalise_urls.custom_patterns", TP_CK_STRLIST,
      analytics_config.normalise_urls.custom_patterns),
    S("analytics_config.pool_size", TP_CK_INT, analytics_config.pool_size),
    S("analytics_config.records_buffer_size", TP_CK_INT, analytics_config.records_buffer_size),
    S("analytics_config.storage_expiration_time", TP_CK_INT,
      analytics_config.storage_expiration_time),
    S("analytics_config.purge_interval", TP_CK_FLOAT, analytics_config.purge_interval),
    S("analytics_config.serializer_type", TP_CK_STRING, analytics_config.serializer_type),
    S("analytics_config.type", TP_CK_STRING, analytics_config.type),
    S("storage.type", TP_CK_STRING, storage.type),
    S("storage.host", TP_CK_STRING, storage.host),
    S("storage.port", TP_CK_INT, storage.port),
    S("storage.username", TP_CK_STRING, storage.username),
    S("storage.password", TP_CK_STRING, storage.password),
    S("storage.database", TP_CK_INT, storage.database),
    S("storage.optimisation_max_idle", TP_CK_INT, storage.max_idle),
    S("storage.optimisation_max_active", TP_CK_INT, storage.max_active),
    S("storage.timeout", TP_CK_INT, storage.timeout),
    S("storage.enable_cluster", TP_CK_BOOL, storage.enable_cluster),
    S("storage.addrs", TP_CK_STRLIST, storage.addrs),
    S("storage.hosts", TP_CK_STRMAP, storage.hosts),
    S("storage.master_name", TP_CK_STRING, storage.master_name),
    S("storage.sentinel_password", TP_CK_STRING, storage.sentinel_password),
    S("storage.use_ssl", TP_CK_BOOL, storage.use_ssl),
    S("storage.ssl_insecure_skip_verify", TP_CK_BOOL, storage.ssl_insecure_skip_verify),
    S("storage.ca_file", TP_CK_STRING, storage.ca_file),
    S("storage.cert_file", TP_CK_STRING, storage.cert_file),
    S("storage.key_file", TP_CK_STRING, storage.key_file),
    S("storage.tls_min_version", TP_CK_STRING, storage.tls_min_version),
    S("storage.tls_max_version", TP_CK_STRING, storage.tls_max_version),
    S("uptime_tests.disable", TP_CK_BOOL, uptime_tests.disable),
    S("uptime_tests.poller_group", TP_CK_STRING, uptime_tests.poller_group),
    S("uptime_tests.config.enable_uptime_analytics", TP_CK_BOOL,
      uptime_tests.enable_uptime_analytics),
    S("uptime_tests.config.failure_trigger_sample_size", TP_CK_INT,
      uptime_tests.failure_trigger_sample_size),
    S("uptime_tests.config.time_wait", TP_CK_INT, uptime_tests.time_wait),
    S("uptime_tests.config.checker_pool_size", TP_CK_INT, uptime_tests.checker_pool_size),
    S("turnpike.workers", TP_CK_INT, tp.workers),
    S("turnpike.admin_socket", TP_CK_STRING, tp.admin_socket),
    S("turnpike.shm_size", TP_CK_INT, tp.shm_size),
    S("turnpike.max_apis", TP_CK_INT, tp.max_apis),
    S("turnpike.max_connections", TP_CK_INT, tp.max_connections),
    S("turnpike.max_request_line", TP_CK_INT, tp.max_request_line),
    S("turnpike.max_header_bytes", TP_CK_INT, tp.max_header_bytes),
    S("turnpike.max_header_count", TP_CK_INT, tp.max_header_count),
    S("turnpike.header_timeout", TP_CK_FLOAT, tp.header_timeout),
    S("turnpike.body_timeout", TP_CK_FLOAT, tp.body_timeout),
    S("turnpike.keepalive_timeout", TP_CK_FLOAT, tp.keepalive_timeout),
    S("turnpike.keepalive_requests", TP_CK_INT, tp.keepalive_requests),
    S("turnpike.send_timeout", TP_CK_FLOAT, tp.send_timeout),
    S("turnpike.upstream_idle_timeout", TP_CK_FLOAT, tp.upstream_idle_timeout),
    S("turnpike.redis_ready_grace", TP_CK_FLOAT, tp.redis_ready_grace),
    S("turnpike.session_cache_size", TP_CK_INT, tp.session_cache_size),
    S("turnpike.session_cache_entry", TP_CK_INT, tp.session_cache_entry),
    S("turnpike.response_cache_size", TP_CK_INT, tp.response_cache_size),
    S("turnpike.response_cache_entry", TP_CK_INT, tp.response_cache_entry),
    S("turnpike.limits_fail_open", TP_CK_BOOL, tp.limits_fail_open),
    S("turnpike.rate_limiter", TP_CK_STRING, tp.rate_limiter),
    S("turnpike.limit_counters", TP_CK_INT, tp.limit_counters),
    S("turnpike.quota_writeback", TP_CK_INT, tp.quota_writeback),
    S("turnpike.metrics_port", TP_CK_INT, tp.metrics_port),
    S("turnpike.metrics_max_series", TP_CK_INT, tp.metrics_max_series),
    S("turnpike.analytics_detail_max", TP_CK_INT, tp.analytics_detail_max),
    S("turnpike.websocket_idle_timeout", TP_CK_FLOAT, tp.websocket_idle_timeout),
};
#undef S
#define NSTORES (sizeof(stores) / sizeof(stores[0]))

/* Keys of the "turnpike" block, for type checks and env names. */
static const tp_conf_key_t *tp_key(const char *path)
{
    static tp_conf_key_t keys[NSTORES];
    static char envs[NSTORES][96];
    static size_t nkeys;
    if (nkeys == 0) {
        for (size_t i = 0; i < NSTORES; i++) {
            if (strncmp(stores[i].path, "turnpike.", 9) != 0)
                continue;
            char *e = envs[nkeys];
            size_t n = (size_t)snprintf(e, sizeof(envs[0]), "TYK_GW_TURNPIKE_");
            for (const char *c = stores[i].path + 9; *c && n + 1 < sizeof(envs[0]); c++)
                if (*c != '_')
                    e[n++] = (char)toupper((unsigned char)*c);
            e[n] = '\0';
            keys[nkeys].path = stores[i].path;
            keys[nkeys].kind = stores[i].kind;
            keys[nkeys].env = e;
            nkeys++;
        }
    }
    if (path == NULL)
        return NULL;
    for (size_t i = 0; i < nkeys; i++)
        if (strcasecmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

static int key_cmp(const void *k, const void *el)
{
    return strcasecmp(k, ((const tp_conf_key_t *)el)->path);
}

static const tp_conf_key_t *find_key(const char *path)
{
    if (strncasecmp(path, "turnpike.", 9) == 0)
        return tp_key(path);
    if (strcasecmp(path, "turnpike") == 0) {
        static const tp_conf_key_t block = {"turnpike", TP_CK_OBJECT, NULL};
        return &block;
    }
    return bsearch(path, tp_conf_tyk_keys, tp_conf_tyk_nkeys, sizeof(tp_conf_key_t), key_cmp);
}

static const store_t *find_store(const char *path)
{
    for (size_t i = 0; i < NSTORES; i++)
        if (strcasecmp(stores[i].path, path) == 0)
            return &stores[i];
    return NULL;
}

typedef struct load_s {
    tp_conf_t *conf;
    const char *file;
    tp_buf_t errors;
    int nerrors;
    tp_buf_t notimpl;
    tp_buf_t unknown;
} load_t;

static void add_error(load_t *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(load_t *L, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (L->nerrors++ > 0)
        tp_buf_putc(&L->errors, '\n');
    tp_buf_puts(&L->errors, msg);
}

static void add_name(tp_buf_t *list, const char *name)
{
    /* a short list: a linear scan for duplicates is enough */
    if (list->len > 0) {
        tp_buf_putc(list, '\0');
        list->len--;
        size_t n = strlen(name);
        for (const char *p = list->data; (p = strstr(p, name)) != NULL; p += n)
            if ((p == list->data || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
                return;
        tp_buf_puts(list, ", ");
    }
    tp_buf_puts(list, name);
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case TP_CK_BOOL:
        return "bool (true or false)";
    case TP_CK_INT:
        return "integer";
    case TP_CK_FLOAT:
        return "number";
    case TP_CK_STRING:
        return "string";
    case TP_CK_STRLIST:
        return "array of strings";
    case TP_CK_STRMAP:
        return "object of strings";
    case TP_CK_INTLIST:
        return "array of integers";
    case TP_CK_FLOATLIST:
        return "array of numbers";
    case TP_CK_OBJECT:
    case TP_CK_MAP:
        return "object";
    case TP_CK_OBJLIST:
        return "array of objects";
    default:
        return "any value";
    }
}

static int is_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && !(v->type & TP_JSON_FRACTION) &&
           fabs(v->valuedouble) <= 9.007199254740992e15;
}

/* Does <v> have the JSON shape Go would decode into <kind>? null always
 * does. For a list whose element is wrong, *bad is that element's index. */
static int kind_ok(const cJSON *v, int kind, int *bad)
{
    const cJSON *el;
    *bad = -1;
    if (cJSON_IsNull(v))
        return 1;
    switch (kind) {
    case TP_CK_BOOL:
        return cJSON_IsBool(v);
    case TP_CK_INT:
    case TP_CK_DURATION:
        return is_int(v);
    case TP_CK_FLOAT:
        return cJSON_IsNumber(v);
    case TP_CK_STRING:
        return cJSON_IsString(v);
    case TP_CK_STRLIST:
    case TP_CK_INTLIST:
    case TP_CK_FLOATLIST:
        if (!cJSON_IsArray(v))
            return 0;
        cJSON_ArrayForEach(el, v)
        {
            ++*bad;
            if (kind == TP_CK_STRLIST && !cJSON_IsString(el))
                return 0;
            if (kind == TP_CK_INTLIST && !is_int(el))
                return 0;
            if (kind == TP_CK_FLOATLIST && !cJSON_IsNumber(el))
                return 0;
        }
        *bad = -1;
        return 1;
    case TP_CK_STRMAP:
        if (!cJSON_IsObject(v))
            return 0;
        cJSON_ArrayForEach(el, v) if (!cJSON_IsString(el)) return 0;
        return 1;
    case TP_CK_OBJECT:
    case TP_CK_MAP:
        return cJSON_IsObject(v);
    case TP_CK_OBJLIST:
        if (!cJSON_IsArray(v))
            return 0;
        cJSON_ArrayForEach(el, v) if (!cJSON_IsObject(el) && !cJSON_IsNull(el)) return 0;
        return 1;
    default:
        return 1;
    }
}

static int is_zero(const cJSON *v)
{
    if (cJSON_IsNull(v) || cJSON_IsFalse(v))
        return 1;
    if (cJSON_IsNumber(v))
        return v->valuedouble == 0;
    if (cJSON_IsString(v))
        return v->valuestring[0] == '\0';
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child == NULL;
    return 0;
}

static void store_json(tp_conf_t *conf, const store_t *st, const cJSON *v)
{
    void *dst = (char *)conf + st->off;
    if (cJSON_IsNull(v))
        return;
    switch (st->kind) {
    case TP_CK_BOOL:
        *(int *)dst = cJSON_IsTrue(v);
        break;
    case TP_CK_INT:
    case TP_CK_DURATION:
        *(int64_t *)dst = (int64_t)v->valuedouble;
        break;
    case TP_CK_FLOAT:
        *(double *)dst = v->valuedouble;
        break;
    case TP_CK_STRING:
        free(*(char **)dst);
        *(char **)dst = tp_strdup(v->valuestring);
        break;
    case TP_CK_STRLIST: {
        tp_strlist_t *l = dst;
        const cJSON *el;
        tp_strlist_free(l);
        l->v = tp_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(char *));
        cJSON_ArrayForEach(el, v) l->v[l->n++] = tp_strdup(el->valuestring);
        break;
    }
    case TP_CK_MAP:
    case TP_CK_OBJLIST:
        /* a map or list of structs, kept as JSON for the module that reads it */
        free(*(char **)dst);
        *(char **)dst = cJSON_PrintUnformatted(v);
        break;
    case TP_CK_STRMAP: {
        /* kept as "key:value" items, the form envconfig reads maps in */
        tp_strlist_t *l = dst;
        const cJSON *el;
        tp_strlist_free(l);
        l->v = tp_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(char *));
        cJSON_ArrayForEach(el, v)
        {
            size_t n = strlen(el->string) + strlen(el->valuestring) + 2;
            l->v[l->n] = tp_malloc(n);
            snprintf(l->v[l->n++], n, "%s:%s", el->string, el->valuestring);
        }
        break;
    }
    default:
        TP_BUG_ON(1);
    }
}

/* Walks the members of <obj>, whose key pattern is <pattern> ("" at the top)
 * and whose JSON path is <jpath>. <quiet> suppresses not-implemented
 * reports below a key already reported. */
static void walk(load_t *L, const cJSON *obj, const char *pattern, const char *jpath, int quiet)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        char pat[512], path[512];
        snprintf(path, sizeof(path), "%s", jpath);
        tp_json_path_push(path, sizeof(path), m->string, 0);
        if (pattern[0] != '\0')
            snprintf(pat, sizeof(pat), "%s.%s", pattern, m->string);
        else
            snprintf(pat, sizeof(pat), "%s", m->string);

        const tp_conf_key_t *key = find_key(pat);
        if (key == NULL) {
            /* members of a map are all "map.*" */
            const tp_conf_key_t *parent = pattern[0] ? find_key(pattern) : NULL;
            if (parent != NULL && parent->kind == TP_CK_MAP) {
                snprintf(pat, sizeof(pat), "%s.*", pattern);
                key = find_key(pat);
                if (key == NULL)
                    continue; /* a map of free-form values */
            }
        }
        if (key == NULL) {
            add_name(&L->unknown, path + 2);
            continue;
        }
        int bad;
        if (!kind_ok(m, key->kind, &bad)) {
            if (bad >= 0) {
                const cJSON *el = cJSON_GetArrayItem(m, bad);
                tp_json_path_push(path, sizeof(path), NULL, bad);
                add_error(L, "%s: %s: expected %s, got %s", L->file, path,
                          key->kind == TP_CK_STRLIST   ? "string"
                          : key->kind == TP_CK_INTLIST ? "integer"
                                                       : "number",
                          tp_json_type_name(el));
            } else {
                add_error(L, "%s: %s: expected %s, got %s", L->file, path, kind_name(key->kind),
                          tp_json_type_name(m));
            }
            continue;
        }
        const store_t *st = find_store(pat);
        if (st != NULL)
            store_json(L->conf, st, m);
        else if (!quiet && key->kind != TP_CK_OBJECT && !is_zero(m))
            add_name(&L->notimpl, path + 2);
        int hush = quiet || (st == NULL && key->kind != TP_CK_OBJECT && !is_zero(m));

        if (key->kind == TP_CK_OBJECT || key->kind == TP_CK_MAP) {
            if (cJSON_IsObject(m))
                walk(L, m, pat, path, hush);
        } else if (key->kind == TP_CK_OBJLIST && cJSON_IsArray(m)) {
            char elpat[520];
            snprintf(elpat, sizeof(elpat), "%s[]", pat);
            int i = 0;
            const cJSON *el;
            cJSON_ArrayForEach(el, m)
            {
                char elpath[540];
                snprintf(elpath, sizeof(elpath), "%s", path);
                tp_json_path_push(elpath, sizeof(elpath), NULL, i++);
                if (cJSON_IsObject(el))
                    walk(L, el, elpat, elpath, 1);
            }
        }
    }
}

/* ---- environment ------------------------------------------------------- */

static int env_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* Go's strconv.ParseInt(s, 0, 64): sign, then 0x / 0o / 0b / 0 prefixes. */
static int env_int(const char *s, int64_t *out)
{
    const char *p = s;
    int neg = 0, base = 10;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        base = 16, p += 2;
    else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
        base = 8, p += 2;
    else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
        base = 2, p += 2;
    else if (p[0] == '0' && p[1] != '\0')
        base = 8, p++;
    if (*p == '\0')
        return -1;
    uint64_t v = 0;
    for (; *p; p++) {
        int d;
        /* Go allows '_' only between digits, or right after a prefix */
        if (*p == '_') {
            int after_digit_or_prefix = p > s && (isalnum((unsigned char)p[-1]));
            if (!after_digit_or_prefix || !isalnum((unsigned char)p[1]) || p[-1] == '_')
                return -1;
            continue;
        }
        if (isdigit((unsigned char)*p))
            d = *p - '0';
        else if (isalpha((unsigned char)*p))
            d = tolower((unsigned char)*p) - 'a' + 10;
        else
            return -1;
        if (d >= base || v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return -1;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* Go's time.ParseDuration: "300ms", "1.5h", "2h45m", "0"; into nanoseconds. */
static int env_duration(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    const char *p = s;
    int neg = 0;
    double total = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (strcmp(p, "0") == 0) {
        *out = 0;
        return 0;
    }
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
        double v = strtod(p, &end);
        if (end == p)
            return -1;
        p = end;
        size_t best = 0, bi = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, n) == 0 && n > best)
                best = n, bi = i;
        }
        if (best == 0)
            return -1;
        total += v * units[bi].ns;
        p += best;
    }
    *out = (int64_t)(neg ? -total : total);
    return 0;
}

static int env_float(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static void env_store(load_t *L, const store_t *st, const char *name, const char *val)
{
    void *dst = (char *)L->conf + st->off;
    switch (st->kind) {
    case TP_CK_BOOL:
        if (env_bool(val, dst) < 0)
            add_error(L, "environment %s=\"%s\": expected a bool (true, false, 1, 0, t, f)", name,
                      val);
        break;
    case TP_CK_INT:
        if (env_int(val, dst) < 0)
            add_error(L, "environment %s=\"%s\": expected an integer", name, val);
        break;
    case TP_CK_FLOAT:
        if (env_float(val, dst) < 0)
            add_error(L, "environment %s=\"%s\": expected a number", name, val);
        break;
    case TP_CK_DURATION:
        if (env_duration(val, dst) < 0)
            add_error(L, "environment %s=\"%s\": expected a Go duration such as 10s or 500ms", name,
                      val);
        break;
    case TP_CK_STRING:
        free(*(char **)dst);
        *(char **)dst = tp_strdup(val);
        break;
    case TP_CK_STRMAP:
        for (const char *p = val; *p != '\0';) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *c1 = memchr(p, ':', len);
            if (c1 == NULL || memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - p)) != NULL) {
                add_error(L, "environment %s=\"%s\": expected key:value pairs separated by commas",
                          name, val);
                return;
            }
            p = comma ? comma + 1 : p + len;
        }
        /* stored like a list */
        __attribute__((fallthrough));
    case TP_CK_STRLIST: {
        /* envconfig splits on ',' without trimming; empty means empty */
        tp_strlist_t *l = dst;
        tp_strlist_free(l);
        size_t n = 1;
        for (const char *c = val; *c; c++)
            n += *c == ',';
        l->v = tp_calloc(n + 1, sizeof(char *));
        if (*val == '\0')
            break;
        const char *p = val;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            l->v[l->n++] = tp_strndup(p, len);
            if (comma == NULL)
                break;
            p = comma + 1;
        }
        break;
    }
    case TP_CK_MAP:
        add_error(L,
                  "environment %s: a map of objects cannot be set from the environment; set it "
                  "in the file",
                  name);
        break;
    default:
        TP_BUG_ON(1);
    }
}

static void apply_env_key(load_t *L, const tp_conf_key_t *key)
{
    if (key->env == NULL)
        return;
    const char *val = getenv(key->env);
    if (val == NULL)
        return;
    const store_t *st = find_store(key->path);
    if (st != NULL)
        env_store(L, st, key->env, val);
    else if (val[0] != '\0' && strcmp(val, "0") != 0 && strcasecmp(val, "false") != 0)
        add_name(&L->notimpl, key->env);
}

static void apply_env(load_t *L)
{
    for (size_t i = 0; i < tp_conf_tyk_nkeys; i++)
        apply_env_key(L, &tp_conf_tyk_keys[i]);
    tp_key(NULL);
    for (size_t i = 0; i < NSTORES; i++)
        if (strncmp(stores[i].path, "turnpike.", 9) == 0)
            apply_env_key(L, tp_key(stores[i].path));
}

/* ---- defaults and validation --------------------------------------------- */

static void default_str(char **s, const char *dflt)
{
    if (*s == NULL || (*s)[0] == '\0') {
        free(*s);
        *s = tp_strdup(dflt);
    }
}

static void apply_defaults(tp_conf_t *c)
{
    if (c->listen_port == 0)
        c->listen_port = 8080;
    default_str(&c->app_path, "apps");
    default_str(&c->health_check_endpoint_name, "hello");
    default_str(&c->readiness_check_endpoint_name, "ready");
    default_str(&c->log_level, "info");
    default_str(&c->log_format, "text");
    if (c->proxy_default_timeout <= 0)
        c->proxy_default_timeout = 30;
    if (c->max_idle_connections_per_host <= 0)
        c->max_idle_connections_per_host = 100;
    if (c->graceful_shutdown_timeout_duration <= 0)
        c->graceful_shutdown_timeout_duration = 30;
    default_str(&c->storage.type, "redis");
    default_str(&c->storage.host, "localhost");
    if (c->storage.port == 0)
        c->storage.port = 6379;
    if (c->storage.max_active <= 0)
        c->storage.max_active = 500;
    if (c->storage.timeout <= 0)
        c->storage.timeout = 5;

    tp_conf_tp_t *t = &c->tp;
    if (t->max_request_line <= 0)
        t->max_request_line = 8192;
    if (t->max_header_bytes <= 0)
        t->max_header_bytes = 32768;
    if (t->max_header_count <= 0)
        t->max_header_count = 100;
    if (t->header_timeout <= 0)
        t->header_timeout = 10;
    if (t->body_timeout <= 0)
        t->body_timeout = 30;
    if (t->keepalive_timeout <= 0)
        t->keepalive_timeout = 75;
    if (t->keepalive_requests <= 0)
        t->keepalive_requests = 10000;
    if (t->send_timeout <= 0)
        t->send_timeout = 60;
    if (t->websocket_idle_timeout <= 0)
        t->websocket_idle_timeout = 3600;
    if (t->upstream_idle_timeout <= 0)
        t->upstream_idle_timeout = 90;
    if (t->redis_ready_grace <= 0)
        t->redis_ready_grace = 5;
    if (t->shm_size <= 0)
        t->shm_size = 256LL << 20;
    if (t->max_apis <= 0)
        t->max_apis = 16384;
    if (t->session_cache_size <= 0)
        t->session_cache_size = 64LL << 20;
    if (t->session_cache_entry <= 0)
        t->session_cache_entry = 4096;
    if (t->response_cache_size == -1) /* unset (0 turns the front off) */
        t->response_cache_size = 32LL << 20;
    if (t->response_cache_entry <= 0)
        t->response_cache_entry = 16384;
    if (c->min_token_length <= 0)
        c->min_token_length = 3;
    if (c->local_session_cache.cached_session_timeout <= 0)
        c->local_session_cache.cached_session_timeout = 10;
    default_str(&c->policy_source, "file");
    default_str(&t->rate_limiter, "local");
    if (t->limit_counters <= 0)
        t->limit_counters = 65536;
    if (t->quota_writeback == 0)
        t->quota_writeback = 10;
    if (t->metrics_port == 0 && c->analytics_config.type != NULL &&
        strcasecmp(c->analytics_config.type, "prometheus") == 0)
        t->metrics_port = 9090; /* Pump's usual :9090; turnpike.metrics_port chooses another */
    if (t->analytics_detail_max <= 0)
        t->analytics_detail_max = 65536;
    if (t->metrics_max_series <= 0)
        t->metrics_max_series = 1000;
    if (c->uptime_tests.failure_trigger_sample_size <= 0)
        c->uptime_tests.failure_trigger_sample_size = 3;
    if (c->uptime_tests.time_wait <= 0)
        c->uptime_tests.time_wait = 10;
    if (c->uptime_tests.checker_pool_size <= 0)
        c->uptime_tests.checker_pool_size = 50;
    default_str(&c->uptime_tests.poller_group, "");
    if (c->health_check.health_check_value_timeouts <= 0)
        c->health_check.health_check_value_timeouts = 60;
    if (c->drl_threshold <= 0)
        c->drl_threshold = 5;
    if (c->drl_notification_frequency <= 0)
        c->drl_notification_frequency = 2;
    default_str(&c->rate_limit_response_headers, "quotas");
    if (c->liveness_check_ns <= 0)
        c->liveness_check_ns = 10000000000LL;
    /* Tyk raises records_buffer_size to 1000; 0 storage_expiration_time is 60 s */
    if (c->analytics_config.records_buffer_size < 1000)
        c->analytics_config.records_buffer_size = 1000;
    if (c->analytics_config.storage_expiration_time == 0)
        c->analytics_config.storage_expiration_time = 60;
}

static void validate(load_t *L)
{
    tp_conf_t *c = L->conf;
    if (c->listen_port < 1 || c->listen_port > 65535)
        add_error(L, "%s: $.listen_port: expected a port between 1 and 65535, got %lld", L->file,
                  (long long)c->listen_port);
    if (c->storage.port < 1 || c->storage.port > 65535)
        add_error(L, "%s: $.storage.port: expected a port between 1 and 65535, got %lld", L->file,
                  (long long)c->storage.port);
    if (tp_log_level_parse(c->log_level) < 0)
        add_error(L, "%s: $.log_level: expected one of debug, info, warn, error, got \"%s\"",
                  L->file, c->log_level);
    if (c->http_server_options.max_request_body_size < 0)
        add_error(L,
                  "%s: $.http_server_options.max_request_body_size: expected 0 (no limit) or "
                  "a positive number of bytes",
                  L->file);
    if (c->tp.workers < 0 || c->tp.workers > 512)
        add_error(L, "%s: $.turnpike.workers: expected 0 (one per core) to 512, got %lld", L->file,
                  (long long)c->tp.workers);
    if (c->control_api_port < 0 || c->control_api_port > 65535)
        add_error(L, "%s: $.control_api_port: expected 0 (the gateway port) or a port number",
                  L->file);
    if (c->control_api_port != 0 && c->control_api_port == c->listen_port)
        add_error(L, "%s: $.control_api_port: must differ from listen_port (or be 0)", L->file);
    if (c->tp.shm_size < (1 << 20) || c->tp.shm_size > (64LL << 30))
        add_error(L, "%s: $.turnpike.shm_size: expected 1 MiB to 64 GiB of bytes", L->file);
    if (c->tp.max_apis > 1000000)
        add_error(L, "%s: $.turnpike.max_apis: expected at most 1000000", L->file);
    if (strcmp(c->tp.rate_limiter, "local") != 0 && strcmp(c->tp.rate_limiter, "exact") != 0)
        add_error(L, "%s: $.turnpike.rate_limiter: expected \"local\" or \"exact\", got \"%s\"",
                  L->file, c->tp.rate_limiter);
    if (c->tp.metrics_port < 0 || c->tp.metrics_port > 65535)
        add_error(L, "%s: $.turnpike.metrics_port: expected 0 (none) to 65535, got %lld", L->file,
                  (long long)c->tp.metrics_port);
    else if (c->tp.metrics_port != 0 &&
             (c->tp.metrics_port == c->listen_port || c->tp.metrics_port == c->control_api_port))
        add_error(L,
                  "%s: $.turnpike.metrics_port: must differ from listen_port and "
                  "control_api_port",
                  L->file);
    if (c->tp.analytics_detail_max > (16LL << 20))
        add_error(L, "%s: $.turnpike.analytics_detail_max: expected at most 16777216 bytes",
                  L->file);
    if (c->tp.metrics_max_series > 1000000)
        add_error(L, "%s: $.turnpike.metrics_max_series: expected at most 1000000", L->file);
    if (c->tp.limit_counters > (1LL << 26))
        add_error(L, "%s: $.turnpike.limit_counters: expected at most 67108864", L->file);
    if (strcmp(c->rate_limit_response_headers, "quotas") != 0 &&
        strcmp(c->rate_limit_response_headers, "rate_limits") != 0)
        add_error(L,
                  "%s: $.rate_limit_response_headers: expected \"quotas\" or \"rate_limits\", "
                  "got \"%s\"",
                  L->file, c->rate_limit_response_headers);
    const char *ser = c->analytics_config.serializer_type;
    if (ser != NULL && strcmp(ser, "protobuf") == 0)
        add_error(L,
                  "%s: $.analytics_config.serializer_type: \"protobuf\" is not supported; "
                  "leave it empty or \"msgpack\" (what Tyk Pump reads by default)",
                  L->file);
    if (c->analytics_config.records_buffer_size > 10000000)
        add_error(L, "%s: $.analytics_config.records_buffer_size: expected at most 10000000",
                  L->file);
    if (c->tp.response_cache_size < 0)
        add_error(L, "%s: $.turnpike.response_cache_size: expected 0 (no front) or a size in bytes",
                  L->file);
    if (c->tp.max_header_count > 10000)
        add_error(L, "%s: $.turnpike.max_header_count: expected at most 10000", L->file);
    if (c->tp.max_request_line > (1 << 20) || c->tp.max_header_bytes > (1 << 20))
        add_error(L,
                  "%s: $.turnpike: max_request_line and max_header_bytes must be at most "
                  "1048576",
                  L->file);
}

const char *tp_conf_find(const char *explicit_path)
{
    static const char *const candidates[] = {"tyk.conf", "/etc/tyk/tyk.conf"};
    if (explicit_path != NULL)
        return explicit_path;
    for (size_t i = 0; i < 2; i++)
        if (access(candidates[i], F_OK) == 0)
            return candidates[i];
    return NULL;
}

int tp_conf_load(const char *path, tp_conf_t *conf, char *err, size_t errlen)
{
    load_t L = {.conf = conf, .file = path ? path : "(environment)"};
    memset(conf, 0, sizeof(*conf));
    conf->file = tp_strdup(L.file);
    conf->tp.response_cache_size = -1;

    /* Tyk's FillEnv: only the word "true" (any case) omits the file */
    const char *omit = getenv("TYK_GW_OMITCONFIGFILE");
    int omit_file = omit != NULL && strcasecmp(omit, "true") == 0;
    if (!omit_file) {
        if (path == NULL) {
            snprintf(err, errlen,
                     "no configuration file: tried ./tyk.conf and /etc/tyk/tyk.conf "
                     "(use --conf FILE, or TYK_GW_OMITCONFIGFILE=true to configure from the "
                     "environment only)");
            return -1;
        }
        char why[1024];
        cJSON *root = tp_json_parse_file(path, why, sizeof(why));
        if (root == NULL) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        if (!cJSON_IsObject(root)) {
            snprintf(err, errlen, "%s: $: expected an object, got %s", path,
                     tp_json_type_name(root));
            cJSON_Delete(root);
            return -1;
        }
        walk(&L, root, "", "$", 0);
        cJSON_Delete(root);
    }
    apply_env(&L);
    apply_defaults(conf);
    validate(&L);

    if (L.unknown.len > 0)
        tp_log_warn("%s: unknown settings ignored (Tyk ignores them too): %.*s", L.file,
                    (int)L.unknown.len, L.unknown.data);
    if (L.notimpl.len > 0)
        tp_log_warn("%s: settings accepted but not implemented by this Turnpike version, so "
                    "they have no effect: %.*s",
                    L.file, (int)L.notimpl.len, L.notimpl.data);
    int rc = 0;
    if (L.nerrors == 0) {
        char why[1024];
        if (tp_conf_tls_build(conf, why, sizeof(why)) < 0)
            add_error(&L, "%s: %s", L.file, why);
    }
    if (L.nerrors > 0) {
        snprintf(err, errlen, "%.*s", (int)L.errors.len, L.errors.data);
        rc = -1;
    }
    tp_buf_free(&L.errors);
    tp_buf_free(&L.notimpl);
    tp_buf_free(&L.unknown);
    return rc;
}

void tp_conf_free(tp_conf_t *conf)
{
    for (size_t i = 0; i < NSTORES; i++) {
        void *p = (char *)conf + stores[i].off;
        if (stores[i].kind == TP_CK_STRING || stores[i].kind == TP_CK_MAP ||
            stores[i].kind == TP_CK_OBJLIST)
            free(*(char **)p);
        else if (stores[i].kind == TP_CK_STRLIST || stores[i].kind == TP_CK_STRMAP)
            tp_strlist_free(p);
    }
    free(conf->file);
    tp_tls_ctx_unref(conf->listen_tls);
    memset(conf, 0, sizeof(*conf));
}

int tp_conf_storage_same(const tp_conf_storage_t *a, const tp_conf_storage_t *b)
{
    for (size_t i = 0; i < NSTORES; i++) {
        const store_t *st = &stores[i];
        if (strncmp(st->path, "storage.", 8) != 0)
            continue;
        size_t off = st->off - offsetof(tp_conf_t, storage);
        const void *x = (const char *)a + off, *y = (const char *)b + off;
        switch (st->kind) {
        case TP_CK_BOOL:
            if (*(const int *)x != *(const int *)y)
                return 0;
            break;
        case TP_CK_INT:
            if (*(const int64_t *)x != *(const int64_t *)y)
                return 0;
            break;
        case TP_CK_STRING: {
            const char *s = *(char *const *)x, *t = *(char *const *)y;
            if (strcmp(s ? s : "", t ? t : "") != 0)
                return 0;
            break;
        }
        default: {
            const tp_strlist_t *l = x, *m = y;
            if (l->n != m->n)
                return 0;
            for (size_t j = 0; j < l->n; j++)
                if (strcmp(l->v[j], m->v[j]) != 0)
                    return 0;
        }
        }
    }
    return 1;
}

int tp_conf_workers(const tp_conf_t *conf)
{
    if (conf->tp.workers > 0)
        return (int)conf->tp.workers;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static char *dump(const tp_conf_t *conf, int reveal)
{
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; i < NSTORES; i++) {
        const store_t *st = &stores[i];
        const void *p = (const char *)conf + st->off;
        /* find or create the parent objects of "a.b.c" */
        cJSON *parent = root;
        char path[128];
        snprintf(path, sizeof(path), "%s", st->path);
        char *name = path, *dot;
        while ((dot = strchr(name, '.')) != NULL) {
            *dot = '\0';
            cJSON *child = cJSON_GetObjectItemCaseSensitive(parent, name);
            if (child == NULL)
                child = cJSON_AddObjectToObject(parent, name);
            parent = child;
            name = dot + 1;
        }
        int secret =
            !reveal && (strstr(st->path, "password") != NULL || strstr(st->path, "secret") != NULL);
        switch (st->kind) {
        case TP_CK_BOOL:
            cJSON_AddBoolToObject(parent, name, *(const int *)p);
            break;
        case TP_CK_INT:
        case TP_CK_DURATION:
            cJSON_AddNumberToObject(parent, name, (double)*(const int64_t *)p);
            break;
        case TP_CK_FLOAT:
            cJSON_AddNumberToObject(parent, name, *(const double *)p);
            break;
        case TP_CK_STRING: {
            const char *s = *(char *const *)p;
            cJSON_AddStringToObject(parent, name,
                                    s == NULL          ? ""
                                    : (secret && s[0]) ? "********"
                                                       : s);
            break;
        }
        case TP_CK_STRMAP: {
            const tp_strlist_t *l = p;
            cJSON *obj = cJSON_AddObjectToObject(parent, name);
            for (size_t j = 0; j < l->n; j++) {
                char *colon = strchr(l->v[j], ':');
                *colon = '\0';
                cJSON_AddStringToObject(obj, l->v[j], colon + 1);
                *colon = ':';
            }
            break;
        }
        case TP_CK_STRLIST: {
            const tp_strlist_t *l = p;
            cJSON *arr = cJSON_AddArrayToObject(parent, name);
            for (size_t j = 0; j < l->n; j++)
                cJSON_AddItemToArray(arr, cJSON_CreateString(l->v[j]));
            break;
        }
        case TP_CK_MAP:
        case TP_CK_OBJLIST: {
            const char *s = *(char *const *)p;
            cJSON *obj = s != NULL ? cJSON_Parse(s) : NULL;
            if (obj == NULL)
                obj = stores[i].kind == TP_CK_MAP ? cJSON_CreateObject() : cJSON_CreateArray();
            cJSON_AddItemToObject(parent, name, obj);
            break;
        }
        }
    }
    cJSON_AddNumberToObject(root, "effective_workers", tp_conf_workers(conf));
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

char *tp_conf_dump(const tp_conf_t *conf)
{
    return dump(conf, 0);
}

int tp_conf_same(const tp_conf_t *a, const tp_conf_t *b)
{
    char *da = dump(a, 1), *db = dump(b, 1);
    int same = strcmp(da, db) == 0 && memcmp(a->tls_digest, b->tls_digest, 32) == 0;
    free(da);
    free(db);
    return same;
}
