/* test/unit/test_conf.c: tyk.conf loading, TYK_GW_* overrides, API definitions. */
#include <stdlib.h>

#include "tp_conf.h"
#include "tp_json.h"
#include "tp_test.h"

/* A test body gets a conf and an error buffer; the wrapper frees the conf
 * whether the body passed or returned early on a failed check. */
#define CONF_TEST(name)                                                                            \
    static void name##_body(tp_conf_t *c, char *err, size_t errlen);                               \
    TP_TEST(name)                                                                                  \
    {                                                                                              \
        tp_conf_t conf;                                                                            \
        char err[4096] = "";                                                                       \
        memset(&conf, 0, sizeof(conf));                                                            \
        name##_body(&conf, err, sizeof(err));                                                      \
        tp_conf_free(&conf);                                                                       \
    }                                                                                              \
    static void name##_body(tp_conf_t *c, char *err, size_t errlen)

/* Loads <file> with the environment variables of <env> ("NAME", "value",
 * ..., NULL; a NULL value unsets) in place, then restores the environment
 * as it was, so a failing check cannot leak settings into other tests. */
static int load_env(const char *file, const char *const *env, tp_conf_t *c, char *err,
                    size_t errlen)
{
    char *saved[32];
    size_t n = 0;
    for (; env != NULL && env[2 * n] != NULL; n++) {
        const char *old = getenv(env[2 * n]);
        saved[n] = old ? strdup(old) : NULL;
        if (env[2 * n + 1] != NULL)
            setenv(env[2 * n], env[2 * n + 1], 1);
        else
            unsetenv(env[2 * n]);
    }
    int rc = tp_conf_load(file, c, err, errlen);
    for (size_t i = 0; i < n; i++) {
        if (saved[i] != NULL)
            setenv(env[2 * i], saved[i], 1);
        else
            unsetenv(env[2 * i]);
        free(saved[i]);
    }
    return rc;
}

static int load(const char *file, tp_conf_t *c, char *err, size_t errlen)
{
    return load_env(file, NULL, c, err, errlen);
}

/* Line <i> (0-based) of a multi-line message, or "" past the end. */
static const char *line_of(const char *msg, int i)
{
    static char line[1024];
    const char *p = msg;
    for (; i > 0 && p != NULL; i--) {
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        return "";
    size_t n = strcspn(p, "\n");
    snprintf(line, sizeof(line), "%.*s", (int)n, p);
    return line;
}

static int count_lines(const char *msg)
{
    int n = msg[0] != '\0';
    for (const char *p = msg; *p; p++)
        n += *p == '\n';
    return n;
}

/* ---- tyk.conf ------------------------------------------------------------ */

/* The tyk.conf of the Kubernetes ConfigMap in the seed article. */
CONF_TEST(seed_tyk_conf_loads)
{
    CHECK_INT(load("data/seed-tyk.conf", c, err, errlen), 0);
    CHECK_STR(c->file, "data/seed-tyk.conf");
    CHECK_INT(c->listen_port, 8080);
    CHECK_STR(c->app_path, "/opt/tyk-gateway/apps");
    CHECK_STR(c->storage.type, "redis");
    CHECK_STR(c->storage.host, "redis.tyk.svc.cluster.local");
    CHECK_INT(c->storage.port, 6379);
    CHECK_INT(c->storage.database, 0);
    CHECK_INT(c->storage.max_idle, 2000);
    CHECK_INT(c->storage.max_active, 4000);
    CHECK_INT(c->storage.enable_cluster, 0);
    CHECK_INT(c->max_idle_connections_per_host, 500);
    CHECK_INT(c->close_connections, 0);
    CHECK_INT(c->enable_custom_domains, 1);
    /* "hostname": "" binds nothing */
    CHECK(c->hostname == NULL || c->hostname[0] == '\0');
    /* unset keys keep their defaults */
    CHECK_STR(c->health_check_endpoint_name, "hello");
    CHECK(c->proxy_default_timeout == 30);
}

CONF_TEST(defaults_for_empty_config)
{
    CHECK_INT(load("data/conf-empty.conf", c, err, errlen), 0);
    CHECK_INT(c->listen_port, 8080);
    CHECK_STR(c->app_path, "apps");
    CHECK(c->proxy_default_timeout == 30);
    CHECK_INT(c->graceful_shutdown_timeout_duration, 30);
    CHECK_STR(c->health_check_endpoint_name, "hello");
    CHECK_STR(c->readiness_check_endpoint_name, "ready");
    CHECK_INT(c->tp.max_request_line, 8192);
    CHECK_INT(c->tp.max_header_bytes, 32768);
    CHECK_INT(c->tp.max_header_count, 100);
    CHECK_INT(c->tp.workers, 0);
    CHECK_INT(c->close_connections, 0);
    CHECK_INT(c->enable_custom_domains, 0);
    CHECK_INT(c->http_server_options.enable_strict_routes, 0);
    CHECK(tp_conf_workers(c) >= 1);
}

/* Unknown keys are ignored as Tyk ignores them; null leaves the default. */
CONF_TEST(unknown_keys_and_nulls_accepted)
{
    CHECK_INT(load("data/conf-unknown.conf", c, err, errlen), 0);
    CHECK_INT(c->listen_port, 8081);
    CHECK(c->hostname == NULL || c->hostname[0] == '\0');
}

CONF_TEST(missing_file_and_no_file)
{
    CHECK_INT(load("data/no-such-tyk.conf", c, err, errlen), -1);
    CHECK_CONTAINS(err, "data/no-such-tyk.conf");
    CHECK_CONTAINS(err, "cannot open");
    tp_conf_free(c);
    CHECK_INT(load(NULL, c, err, errlen), -1);
    CHECK_CONTAINS(err, "no configuration file");
}

CONF_TEST(string_for_integer)
{
    CHECK_INT(load("data/conf-type-listen-port.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-type-listen-port.conf: $.listen_port: expected integer, got string");
}

CONF_TEST(nested_bool_for_integer)
{
    CHECK_INT(load("data/conf-type-storage-port.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-type-storage-port.conf: $.storage.port: expected integer, got bool");
}

CONF_TEST(string_for_bool)
{
    CHECK_INT(load("data/conf-type-bool.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-type-bool.conf: $.close_connections: expected bool (true or false), "
                   "got string");
}

CONF_TEST(object_for_list)
{
    CHECK_INT(load("data/conf-type-list.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-type-list.conf: $.storage.addrs: expected array of strings, got "
                   "object");
}

/* A bad element should be named by its own path, as the API loader does
 * ("$.proxy.target_list[1]: expected string, got number"), not reported as
 * "expected array of strings, got array". */
CONF_TEST(bad_list_element_named_by_index)
{
    CHECK_INT(load("data/conf-type-list-element.conf", c, err, errlen), -1);
    CHECK_CONTAINS(err, "data/conf-type-list-element.conf: $.storage.addrs[1]: expected string, "
                        "got number");
}

/* Go decodes JSON numbers into int fields with strconv.ParseInt on the
 * literal, so 8080.0 is "cannot unmarshal number 8080.0 ... of type int". */
CONF_TEST(float_literal_for_integer_rejected_like_go)
{
    CHECK_INT(load("data/conf-type-int-float.conf", c, err, errlen), -1);
    CHECK_CONTAINS(err, "$.listen_port: expected integer, got number");
}

/* Tyk's own keys are type-checked even where Turnpike does not use them. */
CONF_TEST(tyk_only_keys_type_checked)
{
    CHECK_INT(load("data/conf-type-tyk-only.conf", c, err, errlen), -1);
    CHECK_INT(count_lines(err), 2);
    CHECK_STR(line_of(err, 0),
              "data/conf-type-tyk-only.conf: $.enable_jsvm: expected bool (true or false), got "
              "string");
    CHECK_STR(line_of(err, 1), "data/conf-type-tyk-only.conf: $.analytics_config.enable_geo_ip: "
                               "expected bool (true or false), got number");
}

CONF_TEST(several_errors_one_per_line)
{
    CHECK_INT(load("data/conf-type-many.conf", c, err, errlen), -1);
    CHECK_INT(count_lines(err), 4);
    CHECK_STR(line_of(err, 0),
              "data/conf-type-many.conf: $.listen_port: expected integer, got string");
    CHECK_STR(line_of(err, 1), "data/conf-type-many.conf: $.close_connections: expected bool (true "
                               "or false), got number");
    CHECK_STR(line_of(err, 2),
              "data/conf-type-many.conf: $.storage.host: expected string, got number");
    CHECK_STR(line_of(err, 3),
              "data/conf-type-many.conf: $.turnpike.workers: expected integer, got string");
}

CONF_TEST(malformed_json)
{
    CHECK_INT(load("data/conf-malformed.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-malformed.conf: line 5, column 5, at $.storage.host: expected ',' or "
                   "'}' after an object member");
}

CONF_TEST(top_level_not_an_object)
{
    CHECK_INT(load("data/conf-not-object.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-not-object.conf: $: expected an object, got array");
}

CONF_TEST(validation_listen_port_range)
{
    CHECK_INT(load("data/conf-listen-port-range.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-listen-port-range.conf: $.listen_port: expected a port between 1 and "
                   "65535, got 70000");
}

CONF_TEST(validation_log_level)
{
    CHECK_INT(load("data/conf-log-level.conf", c, err, errlen), -1);
    CHECK_CONTAINS(err, "data/conf-log-level.conf: $.log_level: expected one of debug, info, warn, "
                        "error, got \"loud\"");
}

CONF_TEST(validation_workers)
{
    CHECK_INT(load("data/conf-workers.conf", c, err, errlen), -1);
    CHECK_STR(err, "data/conf-workers.conf: $.turnpike.workers: expected 0 (one per core) to 512, "
                   "got -1");
}

/* encoding/json matches keys case-insensitively: "Listen_Port" sets listen_port. */
CONF_TEST(keys_match_case_insensitively_like_go)
{
    CHECK_INT(load("data/conf-case.conf", c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9000);
    CHECK_STR(c->app_path, "/srv/apps");
    CHECK_STR(c->storage.host, "redis-ci");
    CHECK_INT(c->storage.port, 6390);
    CHECK_INT(c->storage.max_idle, 7);
    CHECK_INT(c->tp.workers, 2);
    CHECK_INT(c->http_server_options.enable_strict_routes, 1);
}

/* Repeated keys (in any case) are decoded in order: the last one wins. */
CONF_TEST(repeated_keys_last_wins_like_go)
{
    CHECK_INT(load("data/conf-case-dup.conf", c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9002);
    CHECK_STR(c->storage.host, "second");
}

CONF_TEST(dump_masks_secrets)
{
    CHECK_INT(load("data/conf-password.conf", c, err, errlen), 0);
    CHECK_STR(c->storage.password, "hunter2");
    char *dump = tp_conf_dump(c);
    CHECK(dump != NULL);
    char perr[256];
    cJSON *root = tp_json_parse(dump, strlen(dump), perr, sizeof(perr));
    int leaked = strstr(dump, "hunter2") != NULL || strstr(dump, "s3cret") != NULL;
    free(dump);
    CHECK(root != NULL);
    const cJSON *storage = cJSON_GetObjectItemCaseSensitive(root, "storage");
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(storage, "password");
    const cJSON *spw = cJSON_GetObjectItemCaseSensitive(storage, "sentinel_password");
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(root, "listen_port");
    char pwv[32], spwv[32];
    snprintf(pwv, sizeof(pwv), "%s", cJSON_IsString(pw) ? pw->valuestring : "(missing)");
    snprintf(spwv, sizeof(spwv), "%s", cJSON_IsString(spw) ? spw->valuestring : "(missing)");
    double portv = cJSON_IsNumber(port) ? port->valuedouble : -1;
    cJSON_Delete(root);
    CHECK(!leaked);
    CHECK_STR(pwv, "********");
    CHECK_STR(spwv, "********");
    CHECK(portv == 8080);
}

CONF_TEST(dump_leaves_empty_password_empty)
{
    CHECK_INT(load("data/seed-tyk.conf", c, err, errlen), 0);
    char *dump = tp_conf_dump(c);
    CHECK(dump != NULL);
    cJSON *root = cJSON_Parse(dump);
    free(dump);
    CHECK(root != NULL);
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "storage"), "password");
    int empty = cJSON_IsString(pw) && pw->valuestring[0] == '\0';
    const cJSON *host =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "storage"), "host");
    int host_ok =
        cJSON_IsString(host) && strcmp(host->valuestring, "redis.tyk.svc.cluster.local") == 0;
    cJSON_Delete(root);
    CHECK(empty);
    CHECK(host_ok);
}

/* ---- environment --------------------------------------------------------- */

CONF_TEST(env_overrides_file)
{
    static const char *const env[] = {"TYK_GW_LISTENPORT",
                                      "9100",
                                      "TYK_GW_APPPATH",
                                      "/env/apps",
                                      "TYK_GW_STORAGE_HOST",
                                      "redis.env",
                                      "TYK_GW_STORAGE_PORT",
                                      "6380",
                                      "TYK_GW_STORAGE_DATABASE",
                                      "3",
                                      "TYK_GW_STORAGE_MAXIDLE",
                                      "77",
                                      "TYK_GW_STORAGE_ADDRS",
                                      "a:1,b:2",
                                      "TYK_GW_TURNPIKE_WORKERS",
                                      "3",
                                      "TYK_GW_CLOSECONNECTIONS",
                                      "false",
                                      NULL};
    CHECK_INT(load_env("data/conf-env.conf", env, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9100);
    CHECK_STR(c->app_path, "/env/apps");
    CHECK_STR(c->storage.host, "redis.env");
    CHECK_INT(c->storage.port, 6380);
    CHECK_INT(c->storage.database, 3);
    CHECK_INT(c->storage.max_idle, 77);
    CHECK_INT(c->storage.addrs.n, 2);
    CHECK_STR(c->storage.addrs.v[0], "a:1");
    CHECK_STR(c->storage.addrs.v[1], "b:2");
    CHECK_INT(c->tp.workers, 3);
    CHECK_INT(tp_conf_workers(c), 3);
    CHECK_INT(c->close_connections, 0);
}

CONF_TEST(file_values_without_env)
{
    CHECK_INT(load("data/conf-env.conf", c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9000);
    CHECK_STR(c->app_path, "/file/apps");
    CHECK_STR(c->storage.host, "file-redis");
    CHECK_INT(c->storage.port, 1234);
    CHECK_INT(c->storage.database, 1);
    CHECK_INT(c->storage.max_idle, 10);
    CHECK_INT(c->storage.addrs.n, 1);
    CHECK_STR(c->storage.addrs.v[0], "file:1");
    CHECK_INT(c->tp.workers, 4);
    CHECK_INT(c->close_connections, 1);
}

static int env_bool_value(const char *val, int *out, char *err, size_t errlen)
{
    const char *const env[] = {"TYK_GW_CLOSECONNECTIONS", val, NULL};
    tp_conf_t c;
    int rc = load_env("data/conf-empty.conf", env, &c, err, errlen);
    *out = c.close_connections;
    tp_conf_free(&c);
    return rc;
}

TP_TEST(env_bools_like_strconv_parsebool)
{
    static const char *const yes[] = {"true", "1", "T", "t", "TRUE", "True"};
    static const char *const no[] = {"false", "0", "F", "f", "FALSE", "False"};
    char err[1024];
    int v;
    for (size_t i = 0; i < 6; i++) {
        v = -1;
        CHECK_INT(env_bool_value(yes[i], &v, err, sizeof(err)), 0);
        CHECK_INT(v, 1);
        v = -1;
        CHECK_INT(env_bool_value(no[i], &v, err, sizeof(err)), 0);
        CHECK_INT(v, 0);
    }
    CHECK_INT(env_bool_value("yes", &v, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "TYK_GW_CLOSECONNECTIONS");
    CHECK_INT(env_bool_value("tRuE", &v, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "TYK_GW_CLOSECONNECTIONS");
}

/* TYK_GW_STORAGE_DATABASE through strconv.ParseInt(s, 0, 64). */
static int env_int_value(const char *val, long long *out, char *err, size_t errlen)
{
    const char *const env[] = {"TYK_GW_STORAGE_DATABASE", val, NULL};
    tp_conf_t c;
    int rc = load_env("data/conf-empty.conf", env, &c, err, errlen);
    *out = (long long)c.storage.database;
    tp_conf_free(&c);
    return rc;
}

TP_TEST(env_ints_like_go_parseint_base0)
{
    static const struct {
        const char *in;
        long long want;
    } ok[] = {{"0x10", 16},  {"0X1f", 31}, {"0o17", 15},
              {"017", 15},   {"0b101", 5}, {"-0x10", -16},
              {"+7", 7},     {"0", 0},     {"1_000", 1000},
              {"0x_1F", 31}, {"-3", -3},   {"9223372036854775807", 9223372036854775807LL}};
    char err[1024];
    long long v;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        v = -12345;
        if (env_int_value(ok[i].in, &v, err, sizeof(err)) != 0) {
            tp_test_fail(__FILE__, __LINE__, "TYK_GW_STORAGE_DATABASE=%s rejected: %s", ok[i].in,
                         err);
            return;
        }
        CHECK_INT(v, ok[i].want);
    }
    static const char *const bad[] = {"abc",  "", "08", "0x", "1.5", " 1", "9223372036854775808",
                                      "0b102"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (env_int_value(bad[i], &v, err, sizeof(err)) != -1) {
            tp_test_fail(__FILE__, __LINE__, "TYK_GW_STORAGE_DATABASE=\"%s\" accepted as %lld",
                         bad[i], v);
            return;
        }
        CHECK_CONTAINS(err, "TYK_GW_STORAGE_DATABASE");
    }
}

/* Go allows '_' only between digits (or after a base prefix): "_1", "1_",
 * "1__0" are syntax errors for strconv.ParseInt(s, 0, 64). */
TP_TEST(env_int_underscores_like_go)
{
    static const char *const bad[] = {"_1", "1_", "1__0", "0x1__0"};
    char err[1024];
    long long v;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (env_int_value(bad[i], &v, err, sizeof(err)) != -1) {
            tp_test_fail(__FILE__, __LINE__, "TYK_GW_STORAGE_DATABASE=\"%s\" accepted as %lld",
                         bad[i], v);
            return;
        }
    }
}

CONF_TEST(env_invalid_value_names_variable)
{
    static const char *const env[] = {"TYK_GW_LISTENPORT", "abc", NULL};
    CHECK_INT(load_env("data/conf-empty.conf", env, c, err, errlen), -1);
    CHECK_CONTAINS(err, "TYK_GW_LISTENPORT");
    CHECK_CONTAINS(err, "abc");
}

CONF_TEST(env_value_is_validated)
{
    static const char *const env[] = {"TYK_GW_LISTENPORT", "0x10000", NULL};
    CHECK_INT(load_env("data/conf-empty.conf", env, c, err, errlen), -1);
    CHECK_CONTAINS(err, "$.listen_port: expected a port between 1 and 65535, got 65536");
}

CONF_TEST(env_several_errors)
{
    static const char *const env[] = {"TYK_GW_LISTENPORT", "http", "TYK_GW_TURNPIKE_WORKERS",
                                      "many", NULL};
    CHECK_INT(load_env("data/conf-empty.conf", env, c, err, errlen), -1);
    CHECK_INT(count_lines(err), 2);
    CHECK_CONTAINS(err, "TYK_GW_LISTENPORT=\"http\"");
    CHECK_CONTAINS(err, "TYK_GW_TURNPIKE_WORKERS=\"many\"");
}

CONF_TEST(env_list_single_and_empty)
{
    static const char *const one[] = {"TYK_GW_STORAGE_ADDRS", "redis-0:6379", NULL};
    CHECK_INT(load_env("data/conf-env.conf", one, c, err, errlen), 0);
    CHECK_INT(c->storage.addrs.n, 1);
    CHECK_STR(c->storage.addrs.v[0], "redis-0:6379");
    tp_conf_free(c);
    static const char *const empty[] = {"TYK_GW_STORAGE_ADDRS", "", NULL};
    CHECK_INT(load_env("data/conf-env.conf", empty, c, err, errlen), 0);
    CHECK_INT(c->storage.addrs.n, 0);
}

CONF_TEST(env_omit_config_file)
{
    static const char *const env[] = {"TYK_GW_OMITCONFIGFILE", "true", NULL};
    CHECK_INT(load_env("data/conf-env.conf", env, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 8080);
    CHECK_STR(c->app_path, "apps");
    CHECK_INT(c->storage.port, 6379);
    tp_conf_free(c);
    /* the file is not even opened */
    CHECK_INT(load_env("data/no-such-tyk.conf", env, c, err, errlen), 0);
    tp_conf_free(c);
    CHECK_INT(load_env(NULL, env, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 8080);
    tp_conf_free(c);
    static const char *const env_port[] = {"TYK_GW_OMITCONFIGFILE", "TRUE", "TYK_GW_LISTENPORT",
                                           "9200", NULL};
    CHECK_INT(load_env("data/conf-env.conf", env_port, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9200);
    CHECK_STR(c->app_path, "apps");
}

/* Tyk omits the file only when strings.ToLower(TYK_GW_OMITCONFIGFILE) is
 * "true" (config.FillEnv); "1" or "t" still loads it. */
CONF_TEST(env_omit_config_file_only_for_true_like_tyk)
{
    static const char *const env[] = {"TYK_GW_OMITCONFIGFILE", "1", NULL};
    CHECK_INT(load_env("data/conf-env.conf", env, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9000);
    CHECK_STR(c->app_path, "/file/apps");
    tp_conf_free(c);
    static const char *const env_false[] = {"TYK_GW_OMITCONFIGFILE", "false", NULL};
    CHECK_INT(load_env("data/conf-env.conf", env_false, c, err, errlen), 0);
    CHECK_INT(c->listen_port, 9000);
}

/* ---- API definitions ------------------------------------------------------ */

/* Parses <json> as an API definition; the API, or NULL with err set. */
static tp_api_t *api_from(const char *json, char *err, size_t errlen)
{
    char perr[512];
    cJSON *def = tp_json_parse(json, strlen(json), perr, sizeof(perr));
    if (def == NULL) {
        snprintf(err, errlen, "test JSON does not parse: %s", perr);
        return NULL;
    }
    tp_api_t *api = NULL;
    int rc = tp_api_parse("test.json", def, &api, err, errlen);
    cJSON_Delete(def);
    return rc == 0 ? api : NULL;
}

/* The error for <json>, or "(ok)" when it parsed. */
static const char *api_err(const char *json)
{
    static char err[1024];
    err[0] = '\0';
    tp_api_t *api = api_from(json, err, sizeof(err));
    if (api != NULL) {
        tp_api_free(api);
        return "(ok)";
    }
    return err;
}

#define API_TEST(name)                                                                             \
    static void name##_body(tp_api_t **api, char *err, size_t errlen);                             \
    TP_TEST(name)                                                                                  \
    {                                                                                              \
        tp_api_t *api = NULL;                                                                      \
        char err[1024] = "";                                                                       \
        name##_body(&api, err, sizeof(err));                                                       \
        tp_api_free(api);                                                                          \
    }                                                                                              \
    static void name##_body(tp_api_t **api, char *err, size_t errlen)

static tp_api_t *api_from_file(const char *path, char *err, size_t errlen)
{
    cJSON *def = tp_json_parse_file(path, err, errlen);
    if (def == NULL)
        return NULL;
    tp_api_t *api = NULL;
    int rc = tp_api_parse(path, def, &api, err, errlen);
    cJSON_Delete(def);
    return rc == 0 ? api : NULL;
}

/* The seed's "Example API" with auth, definition and version_data. */
API_TEST(seed_api_definition_parses)
{
    *api = api_from_file("data/apps-seed/api-definition.json", err, errlen);
    CHECK(*api != NULL);
    tp_api_t *a = *api;
    CHECK_STR(a->file, "data/apps-seed/api-definition.json");
    CHECK_STR(a->api_id, "example-api-id");
    CHECK_STR(a->name, "Example API");
    CHECK_STR(a->slug, "example-api");
    CHECK_STR(a->org_id, "default");
    CHECK_INT(a->use_keyless, 0);
    CHECK_STR(a->listen_path, "/example/");
    CHECK_INT(a->strip_listen_path, 1);
    CHECK_INT(a->enable_load_balancing, 0);
    CHECK_INT(a->ntargets, 1);
    CHECK_STR(a->targets[0].raw, "http://backend-service.default.svc.cluster.local:8080/");
    CHECK_STR(a->targets[0].url.host, "backend-service.default.svc.cluster.local");
    CHECK_INT(a->targets[0].url.port, 8080);
    CHECK(a->def_json != NULL);
    cJSON *def = cJSON_Parse(a->def_json);
    const cJSON *vd = cJSON_GetObjectItemCaseSensitive(def, "version_data");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vd, "not_versioned")));
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(def, "auth"),
                                               "auth_header_name")
                  ->valuestring,
              "Authorization");
    cJSON_Delete(def);
}

/* The seed ConfigMap's example-api.json. */
API_TEST(seed_configmap_api_parses)
{
    *api = api_from_file("data/apps-seed/example-api.json", err, errlen);
    CHECK(*api != NULL);
    CHECK_STR((*api)->api_id, "example-api-id");
    CHECK_INT((*api)->use_keyless, 1);
    CHECK_STR((*api)->listen_path, "/api/");
    CHECK_INT((*api)->strip_listen_path, 1);
    CHECK_INT((*api)->ntargets, 1);
    CHECK_STR((*api)->targets[0].url.host, "backend.default.svc.cluster.local");
    CHECK_INT((*api)->targets[0].url.port, 8080);
    CHECK_STR((*api)->targets[0].url.path, "/");
}

API_TEST(listen_path_gets_leading_slash)
{
    *api = api_from("{\"api_id\": \"a\", \"proxy\": {\"listen_path\": \"api/v1/\", \"target_url\": "
                    "\"http://b:80\"}}",
                    err, errlen);
    CHECK(*api != NULL);
    CHECK_STR((*api)->listen_path, "/api/v1/");
    CHECK_INT((*api)->use_keyless, 0);
    CHECK_INT((*api)->strip_listen_path, 0);
}

/* Tyk's APIDefinition.ValidListenPath (applied in MakeSpec) cleans "." and
 * ".." segments and duplicate slashes, keeping a trailing slash. */
TP_TEST(listen_path_cleaned_like_tyk)
{
    static const struct {
        const char *in, *want;
    } cases[] = {{"/foo/../bar/", "/bar/"}, {"//foo//bar", "/foo/bar"}, {"/foo/./bar", "/foo/bar"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[256], err[512];
        snprintf(json, sizeof(json),
                 "{\"api_id\": \"a\", \"proxy\": {\"listen_path\": \"%s\", \"target_url\": "
                 "\"http://b:80\"}}",
                 cases[i].in);
        tp_api_t *api = api_from(json, err, sizeof(err));
        CHECK(api != NULL);
        char got[256];
        snprintf(got, sizeof(got), "%s", api->listen_path);
        tp_api_free(api);
        CHECK_STR(got, cases[i].want);
    }
}

#define PROXY(inner) "{\"api_id\": \"a\", \"proxy\": {" inner "}}"

TP_TEST(api_listen_path_errors)
{
    CHECK_STR(api_err(PROXY("\"listen_path\": \"\", \"target_url\": \"http://b/\"")),
              "$.proxy.listen_path: must not be empty");
    CHECK_STR(api_err(PROXY("\"target_url\": \"http://b/\"")),
              "$.proxy.listen_path: must not be empty");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/my api/\", \"target_url\": \"http://b/\"")),
              "$.proxy.listen_path: must not contain a space (\"/my api/\")");
    CHECK_STR(api_err(PROXY("\"listen_path\": 5, \"target_url\": \"http://b/\"")),
              "$.proxy.listen_path: expected string, got number");
}

TP_TEST(api_target_errors)
{
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"backend:8080\"")),
                   "$.proxy.target_url: invalid URL \"backend:8080\": ");
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"ftp://b/\"")),
                   "$.proxy.target_url: invalid URL \"ftp://b/\"");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"https://b/\"")), "(ok)");
    CHECK_STR(api_err(PROXY(
                  "\"listen_path\": \"/a/\", \"target_url\": \"https://b/\", "
                  "\"transport\": {\"ssl_ciphers\": [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", "
                  "\"TLS_NOPE\"]}")),
              "$.proxy.transport.ssl_ciphers[1]: unknown cipher suite \"TLS_NOPE\"");
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"https://b/\", "
                                 "\"transport\": {\"ssl_min_version\": 772}")),
                   "$.proxy.transport.ssl_min_version: 772 (TLS 1.3) is not available");
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"https://b/\", "
                                 "\"transport\": {\"ssl_max_version\": 12}")),
                   "$.proxy.transport.ssl_max_version: expected 769");
    CHECK_CONTAINS(api_err("{\"api_id\": \"a\", \"proxy\": {\"listen_path\": \"/a/\", "
                           "\"target_url\": \"https://b/\"}, \"upstream_certificates\": "
                           "{\"*\": \"/nonexistent.pem\"}}"),
                   "$.upstream_certificates: \"/nonexistent.pem\": No such file");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\"")),
              "$.proxy.target_url: required, got nothing");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"\"")),
              "$.proxy.target_url: required, got nothing");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": [\"http://b/\"]")),
              "$.proxy.target_url: expected string, got array");
}

/* Tyk loads a definition without an api_id: it is served under one made
 * from its file name (md5 of "test.json"), the same on every load. */
TP_TEST(api_without_id_gets_one_from_its_file)
{
    char err[512] = "";
    const char *defs[] = {"{\"proxy\": {\"listen_path\": \"/a/\", \"target_url\": \"http://b/\"}}",
                          "{\"api_id\": \"\", \"proxy\": {\"listen_path\": \"/a/\", "
                          "\"target_url\": \"http://b/\"}}"};
    for (int i = 0; i < 2; i++) {
        tp_api_t *api = api_from(defs[i], err, sizeof(err));
        CHECK(api != NULL);
        CHECK_STR(api->api_id, "29f2371dad30835b344a6ca05b473eae");
        CHECK(strstr(api->def_json, "\"api_id\":\"29f2371dad30835b344a6ca05b473eae\"") != NULL);
        tp_api_free(api);
    }
}

/* target_url "env://<name>": TYK_SECRET_<NAME>, as Tyk's KV lookup. */
TP_TEST(api_target_from_the_environment)
{
    char err[512] = "";
    setenv("TYK_SECRET_ORDERS_URL", "http://orders.internal:8080/v2", 1);
    tp_api_t *api = api_from(
        PROXY("\"listen_path\": \"/a/\", \"target_url\": \"env://orders_url\""), err, sizeof(err));
    CHECK(api != NULL);
    CHECK_STR(api->targets[0].url.host, "orders.internal");
    tp_api_free(api);
    unsetenv("TYK_SECRET_ORDERS_URL");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"env://orders_url\"")),
              "$.proxy.target_url: \"env://orders_url\": TYK_SECRET_ORDERS_URL is not set");
    CHECK(strstr(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"vault://x\"")),
                 "not supported") != NULL);
}

TP_TEST(api_required_fields_and_types)
{
    CHECK_STR(api_err("{\"api_id\": \"a\"}"), "$.proxy: required, got nothing");
    CHECK_STR(api_err("{\"api_id\": \"a\", \"proxy\": null}"), "$.proxy: required, got nothing");
    CHECK_STR(api_err("{\"api_id\": \"a\", \"proxy\": \"http://b/\"}"),
              "$.proxy: expected object, got string");
    CHECK_STR(api_err("{\"api_id\": 7, \"proxy\": {}}"), "$.api_id: expected string, got number");
    CHECK_STR(api_err("{\"api_id\": \"a\", \"use_keyless\": \"yes\", \"proxy\": {\"listen_path\": "
                      "\"/a/\", \"target_url\": \"http://b/\"}}"),
              "$.use_keyless: expected bool (true or false), got string");
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/a/\", \"target_url\": \"http://b/\", "
                            "\"strip_listen_path\": 1")),
              "$.proxy.strip_listen_path: expected bool (true or false), got number");
    CHECK_STR(api_err("[]"), "$: expected an API definition object, got array");
    CHECK_STR(api_err("{\"api_id\": \"a\", \"protocol\": \"tcp\", \"proxy\": {\"listen_path\": "
                      "\"/a/\", \"target_url\": \"http://b/\"}}"),
              "$.protocol: \"tcp\" APIs are not supported by this Turnpike version");
}

API_TEST(load_balancing_target_list)
{
    *api = api_from(PROXY("\"listen_path\": \"/lb/\", \"target_url\": \"http://ignored:1/\", "
                          "\"enable_load_balancing\": true, \"target_list\": [\"http://a:8001/x\", "
                          "\"http://b:8002\", \"http://c:8003/\"]"),
                    err, errlen);
    CHECK(*api != NULL);
    tp_api_t *a = *api;
    CHECK_INT(a->enable_load_balancing, 1);
    CHECK_INT(a->ntargets, 3);
    CHECK_STR(a->targets[0].raw, "http://a:8001/x");
    CHECK_STR(a->targets[0].url.path, "/x");
    CHECK_STR(a->targets[1].url.host, "b");
    CHECK_INT(a->targets[1].url.port, 8002);
    CHECK_STR(a->targets[2].url.authority, "c:8003");
}

API_TEST(target_list_ignored_without_load_balancing)
{
    *api = api_from(PROXY("\"listen_path\": \"/lb/\", \"target_url\": \"http://main:1/\", "
                          "\"target_list\": [\"http://a:8001/\", \"http://b:8002/\"]"),
                    err, errlen);
    CHECK(*api != NULL);
    CHECK_INT((*api)->ntargets, 1);
    CHECK_STR((*api)->targets[0].raw, "http://main:1/");
}

TP_TEST(load_balancing_target_list_errors)
{
    CHECK_STR(api_err(PROXY("\"listen_path\": \"/lb/\", \"enable_load_balancing\": true, "
                            "\"target_list\": [\"http://a/\", 5]")),
              "$.proxy.target_list[1]: expected string, got number");
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/lb/\", \"enable_load_balancing\": true, "
                                 "\"target_list\": [\"http://a/\", \"b:80\"]")),
                   "$.proxy.target_list[1]: invalid URL \"b:80\"");
    CHECK_CONTAINS(api_err(PROXY("\"listen_path\": \"/lb/\", \"enable_load_balancing\": true, "
                                 "\"target_list\": \"http://a/\"")),
                   "$.proxy.target_list: expected array of strings, got string");
}

/* encoding/json (Tyk's ParseDefinition) matches API definition keys
 * case-insensitively too. */
API_TEST(api_keys_match_case_insensitively_like_go)
{
    *api = api_from("{\"API_ID\": \"ci\", \"Use_Keyless\": true, \"Proxy\": {\"Listen_Path\": "
                    "\"/ci/\", \"Target_URL\": \"http://b:80/\"}}",
                    err, errlen);
    if (*api == NULL) {
        tp_test_fail(__FILE__, __LINE__, "rejected: %s", err);
        return;
    }
    CHECK_STR((*api)->api_id, "ci");
    CHECK_INT((*api)->use_keyless, 1);
    CHECK_STR((*api)->listen_path, "/ci/");
}

/* encoding/json: when a key repeats, the last value wins. */
API_TEST(api_duplicate_keys_last_wins_like_go)
{
    *api = api_from("{\"api_id\": \"first\", \"api_id\": \"second\", \"proxy\": {\"listen_path\": "
                    "\"/a/\", \"target_url\": \"http://b:80/\", \"listen_path\": \"/b/\"}}",
                    err, errlen);
    CHECK(*api != NULL);
    CHECK_STR((*api)->api_id, "second");
    CHECK_STR((*api)->listen_path, "/b/");
}

/* A key that differs only in case is the same field to Go: the later one wins. */
API_TEST(api_case_variant_duplicate_last_wins_like_go)
{
    *api = api_from("{\"api_id\": \"first\", \"API_ID\": \"second\", \"proxy\": {\"listen_path\": "
                    "\"/a/\", \"target_url\": \"http://b:80/\"}}",
                    err, errlen);
    CHECK(*api != NULL);
    CHECK_STR((*api)->api_id, "second");
}

/* ---- app_path directories ------------------------------------------------- */

#define APPS_TEST(name)                                                                            \
    static void name##_body(tp_apis_t *apis, char *err, size_t errlen);                            \
    TP_TEST(name)                                                                                  \
    {                                                                                              \
        tp_apis_t apis;                                                                            \
        char err[1024] = "";                                                                       \
        memset(&apis, 0, sizeof(apis));                                                            \
        name##_body(&apis, err, sizeof(err));                                                      \
        tp_apis_free(&apis);                                                                       \
    }                                                                                              \
    static void name##_body(tp_apis_t *apis, char *err, size_t errlen)

APPS_TEST(load_dir_skips_bad_files)
{
    CHECK_INT(tp_apis_load_dir("data/apps-mixed", NULL, apis, NULL, err, errlen), 0);
    CHECK_INT(apis->n, 1);
    CHECK_INT(apis->nerrors, 2);
    CHECK_STR(apis->v[0]->api_id, "good");
    CHECK_STR(apis->v[0]->file, "data/apps-mixed/good.json");
    CHECK_STR(apis->v[0]->listen_path, "/good/");
}

/* Both seed definitions share api_id "example-api-id": the first file in
 * name order (api-definition.json) keeps it. */
APPS_TEST(load_dir_duplicate_api_id_keeps_first)
{
    CHECK_INT(tp_apis_load_dir("data/apps-seed", NULL, apis, NULL, err, errlen), 0);
    CHECK_INT(apis->n, 1);
    CHECK_STR(apis->v[0]->api_id, "example-api-id");
    CHECK_STR(apis->v[0]->listen_path, "/example/");
    tp_apis_free(apis);
    CHECK_INT(tp_apis_load_dir("data/apps-dup", NULL, apis, NULL, err, errlen), 0);
    CHECK_INT(apis->n, 1);
    CHECK_STR(apis->v[0]->listen_path, "/first/");
    CHECK_STR(apis->v[0]->name, "First");
}

/* A Kubernetes ConfigMap volume: the keys are symlinks into "..data". */
APPS_TEST(load_dir_configmap_layout)
{
    CHECK_INT(tp_apis_load_dir("data/apps-configmap", NULL, apis, NULL, err, errlen), 0);
    CHECK_INT(apis->n, 1);
    CHECK_INT(apis->nerrors, 0);
    CHECK_STR(apis->v[0]->listen_path, "/api/");
}

APPS_TEST(load_dir_missing)
{
    CHECK_INT(tp_apis_load_dir("data/no-such-apps", NULL, apis, NULL, err, errlen), -1);
    CHECK_CONTAINS(err, "data/no-such-apps");
    CHECK_CONTAINS(err, "cannot open directory");
    CHECK_INT(apis->n, 0);
}

/* Tyk skips "x-oas.json" only as the companion of an "x.json" (and when it
 * is an OpenAPI document); an orphan "legacy-oas.json" classic definition
 * is loaded (APIDefinitionLoader.isOASCompanionFile). */
APPS_TEST(load_dir_orphan_oas_file_loaded_like_tyk)
{
    CHECK_INT(tp_apis_load_dir("data/apps-orphan-oas", NULL, apis, NULL, err, errlen), 0);
    CHECK_INT(apis->n, 1);
    CHECK_STR(apis->v[0]->api_id, "legacy");
}

void test_conf_suite(void)
{
    TP_RUN(seed_tyk_conf_loads);
    TP_RUN(defaults_for_empty_config);
    TP_RUN(unknown_keys_and_nulls_accepted);
    TP_RUN(missing_file_and_no_file);
    TP_RUN(string_for_integer);
    TP_RUN(nested_bool_for_integer);
    TP_RUN(string_for_bool);
    TP_RUN(object_for_list);
    TP_RUN(bad_list_element_named_by_index);
    TP_RUN(float_literal_for_integer_rejected_like_go);
    TP_RUN(tyk_only_keys_type_checked);
    TP_RUN(several_errors_one_per_line);
    TP_RUN(malformed_json);
    TP_RUN(top_level_not_an_object);
    TP_RUN(validation_listen_port_range);
    TP_RUN(validation_log_level);
    TP_RUN(validation_workers);
    TP_RUN(keys_match_case_insensitively_like_go);
    TP_RUN(repeated_keys_last_wins_like_go);
    TP_RUN(dump_masks_secrets);
    TP_RUN(dump_leaves_empty_password_empty);
    TP_RUN(env_overrides_file);
    TP_RUN(file_values_without_env);
    TP_RUN(env_bools_like_strconv_parsebool);
    TP_RUN(env_ints_like_go_parseint_base0);
    TP_RUN(env_int_underscores_like_go);
    TP_RUN(env_invalid_value_names_variable);
    TP_RUN(env_value_is_validated);
    TP_RUN(env_several_errors);
    TP_RUN(env_list_single_and_empty);
    TP_RUN(env_omit_config_file);
    TP_RUN(env_omit_config_file_only_for_true_like_tyk);
    TP_RUN(seed_api_definition_parses);
    TP_RUN(seed_configmap_api_parses);
    TP_RUN(listen_path_gets_leading_slash);
    TP_RUN(listen_path_cleaned_like_tyk);
    TP_RUN(api_listen_path_errors);
    TP_RUN(api_target_errors);
    TP_RUN(api_required_fields_and_types);
    TP_RUN(api_without_id_gets_one_from_its_file);
    TP_RUN(api_target_from_the_environment);
    TP_RUN(load_balancing_target_list);
    TP_RUN(target_list_ignored_without_load_balancing);
    TP_RUN(load_balancing_target_list_errors);
    TP_RUN(api_keys_match_case_insensitively_like_go);
    TP_RUN(api_duplicate_keys_last_wins_like_go);
    TP_RUN(api_case_variant_duplicate_last_wins_like_go);
    TP_RUN(load_dir_skips_bad_files);
    TP_RUN(load_dir_duplicate_api_id_keeps_first);
    TP_RUN(load_dir_configmap_layout);
    TP_RUN(load_dir_missing);
    TP_RUN(load_dir_orphan_oas_file_loaded_like_tyk);
}
