/* conf/tp_conf_api.c: classic API definitions from app_path. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/md5.h>

#include "tp_api_rules.h"
#include "tp_conf.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_strmap.h"

void tp_api_free(tp_api_t *api)
{
    if (api == NULL)
        return;
    free(api->file);
    free(api->api_id);
    free(api->name);
    free(api->org_id);
    free(api->slug);
    free(api->domain);
    free(api->listen_path);
    for (size_t i = 0; i < api->ntargets; i++) {
        tp_url_free(&api->targets[i].url);
        free(api->targets[i].raw);
        tp_uptls_t *u = api->targets[i].tls;
        if (u != NULL) {
            free(u->ciphers);
            free(u->client_file);
            free(u->client_pem);
            free(u);
        }
    }
    free(api->targets);
    free(api->def_json);
    free(api->js_json);
    free(api->mtls_pem);
    free(api);
}

static int add_target(tp_api_t *api, const char *path, const char *raw, char *err, size_t errlen)
{
    char why[256];
    tp_target_t t = {0};
    if (tp_url_parse(raw, &t.url, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: invalid URL \"%s\": %s", path, raw, why);
        return -1;
    }
    t.raw = tp_strdup(raw);
    api->targets = tp_realloc(api->targets, (api->ntargets + 1) * sizeof(*api->targets));
    api->targets[api->ntargets++] = t;
    return 0;
}

/* upstream_certificates: Tyk's lookup for <host>:<port>: "*", then
 * "*.<rest>" without and with the port, then the host without and with the
 * port; the last hit wins. */
static const char *upcert_for(const cJSON *map, const char *host, unsigned port)
{
    const char *hit = NULL, *dot = strchr(host, '.');
    char k[600];
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, "*"));
    if (v != NULL)
        hit = v;
    if (dot != NULL) {
        snprintf(k, sizeof(k), "*%s", dot);
        if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, k))) != NULL)
            hit = v;
        snprintf(k, sizeof(k), "*%s:%u", dot, port);
        if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, k))) != NULL)
            hit = v;
    }
    if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, host))) != NULL)
        hit = v;
    snprintf(k, sizeof(k), "%s:%u", host, port);
    if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, k))) != NULL)
        hit = v;
    return hit;
}

static int bad_version(const char *name, int64_t v, char *err, size_t errlen)
{
    if (v == 0 || (v >= TP_TLS_V10 && v <= TP_TLS_V13))
        return 0;
    snprintf(err, errlen,
             "$.proxy.transport.%s: expected 769 (TLS 1.0) to 772 (TLS 1.3) or 0, got %lld", name,
             (long long)v);
    return 1;
}

/* The TLS settings of the API's https targets (TYK-COMPAT 19.3). Client
 * certificate files are read here, by the master, once per load. */
static int parse_uptls(tp_api_t *api, const cJSON *def, const cJSON *proxy, char *err,
                       size_t errlen)
{
    int rc = 0, skip = 0, force_cn = 0, disabled = 0;
    int64_t min = 0, max = 0;
    tp_strlist_t ciphers = {0};
    const cJSON *tr = tp_conf__get_obj(proxy, "transport", "$.proxy", err, errlen, &rc);
    if (rc < 0)
        return -1;
    if (tr != NULL &&
        (tp_conf__get_bool(tr, "ssl_insecure_skip_verify", "$.proxy.transport", &skip, err,
                           errlen) < 0 ||
         tp_conf__get_bool(tr, "ssl_force_common_name_check", "$.proxy.transport", &force_cn, err,
                           errlen) < 0 ||
         tp_conf__get_int(tr, "ssl_min_version", "$.proxy.transport", &min, err, errlen) < 0 ||
         tp_conf__get_int(tr, "ssl_max_version", "$.proxy.transport", &max, err, errlen) < 0 ||
         tp_conf__get_strlist(tr, "ssl_ciphers", "$.proxy.transport", &ciphers, err, errlen) < 0))
        return -1;
    const cJSON *map = tp_conf__get_obj(def, "upstream_certificates", "$", err, errlen, &rc);
    if (rc < 0 ||
        tp_conf__get_bool(def, "upstream_certificates_disabled", "$", &disabled, err, errlen) < 0) {
        tp_strlist_free(&ciphers);
        return -1;
    }
    tp_buf_t cj = {0};
    for (size_t i = 0; i < ciphers.n; i++) {
        if (!tp_tls_cipher_known(ciphers.v[i])) {
            snprintf(err, errlen, "$.proxy.transport.ssl_ciphers[%zu]: unknown cipher suite \"%s\"",
                     i, ciphers.v[i]);
            tp_strlist_free(&ciphers);
            tp_buf_free(&cj);
            return -1;
        }
        if (i > 0)
            tp_buf_putc(&cj, ',');
        tp_buf_puts(&cj, ciphers.v[i]);
    }
    tp_strlist_free(&ciphers);
    if (bad_version("ssl_min_version", min, err, errlen) ||
        bad_version("ssl_max_version", max, err, errlen)) {
        tp_buf_free(&cj);
        return -1;
    }
    if (min == TP_TLS_V13) {
        snprintf(err, errlen,
                 "$.proxy.transport.ssl_min_version: 772 (TLS 1.3) is not available in this build "
                 "(mbedTLS 2.28); use 771");
        tp_buf_free(&cj);
        return -1;
    }
    for (size_t i = 0; i < api->ntargets; i++) {
        tp_target_t *t = &api->targets[i];
        if (!t->url.tls)
            continue;
        tp_uptls_t *u = tp_calloc(1, sizeof(*u));
        t->tls = u;
        u->skip_verify = skip;
        u->force_cn = force_cn;
        u->min_version = min;
        u->max_version = max;
        u->ciphers = cj.len > 0 ? tp_strdup(tp_buf_cstr(&cj)) : NULL;
        const char *file =
            map != NULL && !disabled ? upcert_for(map, t->url.host, t->url.port) : NULL;
        if (file == NULL)
            continue;
        tp_buf_t pem = {0};
        if (tp_buf_read_file(&pem, file) < 0) {
            snprintf(err, errlen, "$.upstream_certificates: \"%s\": %s", file, strerror(errno));
            tp_buf_free(&cj);
            return -1;
        }
        u->client_file = tp_strdup(file);
        u->client_pem = tp_strdup(tp_buf_cstr(&pem));
        tp_buf_free(&pem);
    }
    tp_buf_free(&cj);
    return 0;
}

/* use_mutual_tls_auth: the client_certificates files (leaf or CA
 * certificates) are read here, by the master. Tyk's certificate-store IDs
 * have no file to read: they are refused. */
static int parse_mtls(tp_api_t *api, const cJSON *def, char *err, size_t errlen)
{
    tp_strlist_t files = {0};
    if (tp_conf__get_bool(def, "use_mutual_tls_auth", "$", &api->use_mtls, err, errlen) < 0 ||
        tp_conf__get_strlist(def, "client_certificates", "$", &files, err, errlen) < 0)
        return -1;
    tp_buf_t pem = {0};
    int rc = 0;
    for (size_t i = 0; api->use_mtls && i < files.n && rc == 0; i++) {
        if (tp_buf_read_file(&pem, files.v[i]) < 0) {
            snprintf(err, errlen,
                     "$.client_certificates[%zu]: \"%s\": %s (certificate store IDs are not "
                     "supported: give the path of a PEM file)",
                     i, files.v[i], strerror(errno));
            rc = -1;
        }
        tp_buf_putc(&pem, '\n');
    }
    if (rc == 0 && pem.len > 0)
        api->mtls_pem = tp_strdup(tp_buf_cstr(&pem));
    tp_buf_free(&pem);
    tp_strlist_free(&files);
    return rc;
}

/* Tyk's KV reference in a target URL: "env://<name>" is the environment's
 * TYK_SECRET_<NAME> (gw.kvStore). Returns the URL to use (<raw>, or one in
 * <buf>), or NULL with the reason in <err>. */
static const char *target_value(const char *path, const char *raw, char *buf, size_t cap, char *err,
                                size_t errlen)
{
    if (strncmp(raw, "env://", 6) == 0) {
        char var[200] = "TYK_SECRET_";
        size_t at = strlen(var);
        for (const char *p = raw + 6; *p && at < sizeof(var) - 1; p++)
            var[at++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        var[at] = '\0';
        const char *v = getenv(var);
        if (v == NULL || v[0] == '\0') {
            snprintf(err, errlen, "%s: \"%s\": %s is not set", path, raw, var);
            return NULL;
        }
        snprintf(buf, cap, "%s", v);
        return buf;
    }
    static const char *const kv[] = {"secrets://", "consul://", "vault://"};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (strncmp(raw, kv[i], strlen(kv[i])) == 0) {
            snprintf(err, errlen,
                     "%s: \"%s\": %s references are not supported for target URLs (env:// is)",
                     path, raw, kv[i]);
            return NULL;
        }
    return raw;
}

/* A definition without an api_id is served under one made from its file
 * name: the same on every reload and every node with the same files. */
static char *generated_id(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base != NULL ? base + 1 : file;
    unsigned char d[16];
    mbedtls_md5_ret((const unsigned char *)base, strlen(base), d);
    char *id = tp_malloc(33);
    tp_hex(id, d, 16);
    return id;
}

int tp_api_parse(const char *file, const cJSON *def, tp_api_t **out, char *err, size_t errlen)
{
    tp_api_t *api = tp_calloc(1, sizeof(*api));
    tp_strlist_t list = {0};
    int rc, active = 0;
    char *protocol = NULL;
    int64_t port = 0;

    api->file = tp_strdup(file);
    if (!cJSON_IsObject(def)) {
        snprintf(err, errlen, "$: expected an API definition object, got %s",
                 tp_json_type_name(def));
        goto err;
    }
    if (tp_conf__get_str(def, "api_id", "$", &api->api_id, err, errlen) < 0 ||
        tp_conf__get_str(def, "name", "$", &api->name, err, errlen) < 0 ||
        tp_conf__get_str(def, "org_id", "$", &api->org_id, err, errlen) < 0 ||
        tp_conf__get_str(def, "slug", "$", &api->slug, err, errlen) < 0 ||
        tp_conf__get_str(def, "domain", "$", &api->domain, err, errlen) < 0 ||
        tp_conf__get_str(def, "protocol", "$", &protocol, err, errlen) < 0 ||
        tp_conf__get_bool(def, "use_keyless", "$", &api->use_keyless, err, errlen) < 0 ||
        tp_conf__get_bool(def, "internal", "$", &api->internal, err, errlen) < 0 ||
        tp_conf__get_bool(def, "active", "$", &active, err, errlen) < 0 ||
        tp_conf__get_int(def, "listen_port", "$", &port, err, errlen) < 0)
        goto err;
    int made_id = api->api_id == NULL || api->api_id[0] == '\0';
    if (made_id) {
        free(api->api_id);
        api->api_id = generated_id(file);
        tp_log_warn("%s: no api_id: the API is served as api_id \"%s\" (made from its file name)",
                    file, api->api_id);
    }
    if (protocol != NULL && protocol[0] != '\0' && strcmp(protocol, "http") != 0) {
        snprintf(err, errlen, "$.protocol: \"%s\" APIs are not supported by this Turnpike version",
                 protocol);
        goto err;
    }

    const cJSON *proxy = tp_conf__get_obj(def, "proxy", "$", err, errlen, &rc);
    if (rc < 0)
        goto err;
    if (proxy == NULL) {
        snprintf(err, errlen, "$.proxy: required, got nothing");
        goto err;
    }
    char *target_url = NULL;
    if (tp_conf__get_str(proxy, "listen_path", "$.proxy", &api->listen_path, err, errlen) < 0 ||
        tp_conf__get_str(proxy, "target_url", "$.proxy", &target_url, err, errlen) < 0 ||
        tp_conf__get_bool(proxy, "strip_listen_path", "$.proxy", &api->strip_listen_path, err,
                          errlen) < 0 ||
        tp_conf__get_bool(proxy, "preserve_host_header", "$.proxy", &api->preserve_host_header, err,
                          errlen) < 0 ||
        tp_conf__get_bool(proxy, "disable_strip_slash", "$.proxy", &api->disable_strip_slash, err,
                          errlen) < 0 ||
        tp_conf__get_bool(proxy, "enable_load_balancing", "$.proxy", &api->enable_load_balancing,
                          err, errlen) < 0 ||
        tp_conf__get_strlist(proxy, "target_list", "$.proxy", &list, err, errlen) < 0) {
        free(target_url);
        goto err;
    }

    /* Tyk skips an API whose listen path is empty or has a space in it. */
    if (api->listen_path == NULL || api->listen_path[0] == '\0') {
        snprintf(err, errlen, "$.proxy.listen_path: must not be empty");
        free(target_url);
        goto err;
    }
    if (strchr(api->listen_path, ' ') != NULL) {
        snprintf(err, errlen, "$.proxy.listen_path: must not contain a space (\"%s\")",
                 api->listen_path);
        free(target_url);
        goto err;
    }
    {
        /* Tyk cleans the listen path ("//a/../b/" is "/b/") and adds the
         * leading slash; a trailing slash stays. */
        size_t n = strlen(api->listen_path);
        char *lp = tp_malloc(n + 3);
        tp_url_clean_path(api->listen_path, n, lp);
        free(api->listen_path);
        api->listen_path = lp;
    }

    if (api->enable_load_balancing && list.n > 0) {
        for (size_t i = 0; i < list.n; i++) {
            char path[64];
            snprintf(path, sizeof(path), "$.proxy.target_list[%zu]", i);
            char tbuf[2048];
            const char *t = target_value(path, list.v[i], tbuf, sizeof(tbuf), err, errlen);
            if (t == NULL || add_target(api, path, t, err, errlen) < 0) {
                free(target_url);
                goto err;
            }
        }
    } else {
        if (target_url == NULL || target_url[0] == '\0') {
            snprintf(err, errlen, "$.proxy.target_url: required, got nothing");
            free(target_url);
            goto err;
        }
        char tbuf[2048];
        const char *t =
            target_value("$.proxy.target_url", target_url, tbuf, sizeof(tbuf), err, errlen);
        if (t == NULL || add_target(api, "$.proxy.target_url", t, err, errlen) < 0) {
            free(target_url);
            goto err;
        }
    }
    free(target_url);
    free(protocol);
    protocol = NULL;
    tp_strlist_free(&list);
    if (parse_uptls(api, def, proxy, err, errlen) < 0 || parse_mtls(api, def, err, errlen) < 0)
        goto err;
    if (port != 0)
        tp_log_warn("%s: API \"%s\" sets its own listen_port %lld; Turnpike serves every API on "
                    "the gateway's port",
                    file, api->api_id, (long long)port);
    /* the request rules: workers build them again with the real settings;
     * here every pattern and header is checked once */
    static const tp_conf_t defaults;
    tp_api_rules_t *rules;
    if (tp_api_rules_build(def, &defaults, &rules, err, errlen) < 0)
        goto err;
    tp_api_rules_free(rules);
    if (made_id) {
        /* the rules and the REST API see the id it is served under */
        cJSON *copy = cJSON_Duplicate(def, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "api_id");
        cJSON_AddStringToObject(copy, "api_id", api->api_id);
        api->def_json = cJSON_PrintUnformatted(copy);
        cJSON_Delete(copy);
    } else {
        api->def_json = cJSON_PrintUnformatted(def);
    }
    *out = api;
    return 0;
err:
    free(protocol);
    tp_strlist_free(&list);
    tp_api_free(api);
    return -1;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Tyk keeps the OpenAPI document of an API beside its classic definition:
 * "x-oas.json" (or "x-mcp.json") next to "x.json". Only such a companion
 * is skipped; a lone "x-oas.json" holding a classic definition loads. */
static int is_companion(const char *dir, const char *name)
{
    const char *suffix = has_suffix(name, "-oas.json")   ? "-oas.json"
                         : has_suffix(name, "-mcp.json") ? "-mcp.json"
                                                         : NULL;
    if (suffix == NULL)
        return 0;
    char sibling[4096], path[4096], why[256];
    snprintf(sibling, sizeof(sibling), "%s/%.*s.json", dir, (int)(strlen(name) - strlen(suffix)),
             name);
    if (access(sibling, F_OK) != 0)
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cJSON *doc = tp_json_parse_file(path, why, sizeof(why));
    int oas = doc != NULL && (tp_json_get(doc, "openapi") != NULL ||
                              tp_json_get(doc, "x-tyk-api-gateway") != NULL);
    cJSON_Delete(doc);
    return oas;
}

static void note(tp_buf_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(tp_buf_t *errs, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    tp_log_error("%s", line);
    if (errs != NULL) {
        if (errs->len > 0)
            tp_buf_putc(errs, '\n');
        tp_buf_puts(errs, line);
    }
}

int tp_apis_load_dir(const char *dir, const tp_conf_t *conf, tp_apis_t *apis, tp_buf_t *errs,
                     char *err, size_t errlen)
{
    memset(apis, 0, sizeof(*apis));
    size_t n;
    char **names = tp_conf__json_files(dir, is_companion, &n);
    if (names == NULL) {
        snprintf(err, errlen, "app_path \"%s\": cannot open directory: %s", dir, strerror(errno));
        return -1;
    }

    tp_strmap_t ids = {0}; /* api_id -> index in apis->v */
    for (size_t i = 0; i < n; i++) {
        char path[4096], why[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        free(names[i]);
        cJSON *def = tp_json_parse_file(path, why, sizeof(why));
        if (def == NULL) {
            note(errs, "skipping API definition %s", why);
            apis->nerrors++;
            continue;
        }
        tp_api_t *api = NULL;
        int rc = tp_api_parse(path, def, &api, why, sizeof(why));
        if (rc == 0 && conf != NULL && tp_api_js_load(api, def, conf, why, sizeof(why)) < 0) {
            tp_api_free(api);
            rc = -1;
        }
        cJSON_Delete(def);
        if (rc < 0) {
            note(errs, "skipping API definition %s: %s", path, why);
            apis->nerrors++;
            continue;
        }
        int added;
        uint32_t first = *tp_strmap_put(&ids, api->api_id, (uint32_t)apis->n, &added);
        if (!added) {
            note(errs, "skipping API definition %s: api_id \"%s\" is already used by %s", path,
                 api->api_id, apis->v[first]->file);
            tp_api_free(api);
            apis->nerrors++;
            continue;
        }
        apis->v = tp_realloc(apis->v, (apis->n + 1) * sizeof(*apis->v));
        apis->v[apis->n++] = api;
    }
    free(names);
    tp_strmap_free(&ids);
    return 0;
}

void tp_apis_free(tp_apis_t *apis)
{
    for (size_t i = 0; i < apis->n; i++)
        tp_api_free(apis->v[i]);
    free(apis->v);
    memset(apis, 0, sizeof(*apis));
}
