/*
 * conf/tp_conf_tls.c: the TLS settings of tyk.conf: the listener's
 * certificates (read here, by the master, on every load; workers inherit
 * the parsed context), versions and suites, and the checks of the upstream
 * TLS defaults that workers apply per API (worker/tp_upstream.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/sha256.h>

#include "tp_conf.h"
#include "tp_json.h"

static int read_pem(const char *path, const char *where, tp_buf_t *out,
                    mbedtls_sha256_context *digest, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "%s: expected a file name", where);
        return -1;
    }
    if (tp_buf_read_file(out, path) < 0) {
        snprintf(err, errlen, "%s: \"%s\": %s", where, path, strerror(errno));
        return -1;
    }
    mbedtls_sha256_update_ret(digest, (const unsigned char *)path, strlen(path) + 1);
    mbedtls_sha256_update_ret(digest, (const unsigned char *)out->data, out->len);
    return 0;
}

static int add_cert_files(tp_tls_ctx_t *ctx, const char *where, const char *crt_path,
                          const char *key_path, const char *domain, mbedtls_sha256_context *digest,
                          char *err, size_t errlen)
{
    tp_buf_t crt = {0}, key = {0};
    char w[600], why[600];
    int rc = -1;
    /* a file holding both is named by <where> alone */
    snprintf(w, sizeof(w), key_path != crt_path ? "%s.cert_file" : "%s", where);
    if (read_pem(crt_path, w, &crt, digest, err, errlen) < 0)
        goto out;
    snprintf(w, sizeof(w), "%s.key_file", where);
    if (key_path != crt_path && read_pem(key_path, w, &key, digest, err, errlen) < 0)
        goto out;
    const tp_buf_t *k = key_path != crt_path ? &key : &crt;
    snprintf(w, sizeof(w), "\"%s\"", crt_path);
    if (tp_tls_ctx_add_cert(ctx, crt.data, crt.len, k->data, k->len, domain, w, why, sizeof(why)) <
        0) {
        snprintf(err, errlen, "%s: %s", where, why);
        goto out;
    }
    rc = 0;
out:
    tp_buf_free(&crt);
    tp_buf_free(&key);
    return rc;
}

/* Suite names and versions of the upstream defaults are checked here so
 * that a typo fails at load, with its path, not at the first request. */
static int check_upstream(const tp_conf_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->proxy_ssl.ciphers.n; i++)
        if (!tp_tls_cipher_known(c->proxy_ssl.ciphers.v[i])) {
            snprintf(err, errlen, "$.proxy_ssl_ciphers[%zu]: unknown cipher suite \"%s\"", i,
                     c->proxy_ssl.ciphers.v[i]);
            return -1;
        }
    char why[300];
    tp_tls_ctx_t *probe = tp_tls_ctx_new(TP_TLS_CLIENT, why, sizeof(why));
    if (probe == NULL) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    int rc = tp_tls_ctx_versions(probe, c->proxy_ssl.min_version, c->proxy_ssl.max_version, why,
                                 sizeof(why));
    tp_tls_ctx_unref(probe);
    if (rc < 0) {
        snprintf(err, errlen, "$.proxy_ssl_min_version/proxy_ssl_max_version: %s", why);
        return -1;
    }
    return 0;
}

int tp_conf_tls_build(tp_conf_t *c, char *err, size_t errlen)
{
    if (check_upstream(c, err, errlen) < 0)
        return -1;
    if (!c->http_server_options.use_ssl)
        return 0;
    char why[800];
    tp_tls_ctx_t *ctx = tp_tls_ctx_new(TP_TLS_SERVER, err, errlen);
    if (ctx == NULL)
        return -1;
    mbedtls_sha256_context digest;
    mbedtls_sha256_init(&digest);
    mbedtls_sha256_starts_ret(&digest, 0);
    cJSON *certs = NULL;

    if (tp_tls_ctx_versions(ctx, c->http_server_options.min_version,
                            c->http_server_options.max_version, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "$.http_server_options.min_version/max_version: %s", why);
        goto fail;
    }
    size_t bad = 0;
    const tp_strlist_t *ciphers = &c->http_server_options.ssl_ciphers;
    if (tp_tls_ctx_ciphers(ctx, ciphers->v, ciphers->n, &bad, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "$.http_server_options.ssl_ciphers[%zu]: %s", bad, why);
        goto fail;
    }
    if (c->http_server_options.certificates != NULL)
        certs = cJSON_Parse(c->http_server_options.certificates);
    int i = 0;
    const cJSON *el;
    cJSON_ArrayForEach(el, certs)
    {
        char where[100];
        snprintf(where, sizeof(where), "$.http_server_options.certificates[%d]", i++);
        if (!cJSON_IsObject(el))
            continue;
        const char *dom = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(el, "domain_name"));
        const char *crt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(el, "cert_file"));
        const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(el, "key_file"));
        if (key == NULL || key[0] == '\0') {
            snprintf(err, errlen, "%s.key_file: expected a file name", where);
            goto fail;
        }
        if (add_cert_files(ctx, where, crt, key, dom != NULL && dom[0] ? dom : NULL, &digest, err,
                           errlen) < 0)
            goto fail;
    }
    const tp_strlist_t *files = &c->http_server_options.ssl_certificates;
    for (size_t j = 0; j < files->n; j++) {
        char where[100];
        snprintf(where, sizeof(where), "$.http_server_options.ssl_certificates[%zu]", j);
        struct stat st;
        const char *f = files->v[j];
        if (stat(f, &st) < 0 && strchr(f, '/') == NULL && strchr(f, '.') == NULL) {
            snprintf(err, errlen,
                     "%s: \"%s\" is not a file; certificate store IDs are not supported, "
                     "give the path of a PEM file holding the certificate and its key",
                     where, f);
            goto fail;
        }
        if (add_cert_files(ctx, where, f, f, NULL, &digest, err, errlen) < 0)
            goto fail;
    }
    if (tp_tls_ctx_ncerts(ctx) == 0) {
        snprintf(err, errlen,
                 "$.http_server_options.use_ssl: TLS needs a certificate: set "
                 "http_server_options.certificates or ssl_certificates");
        goto fail;
    }
    tp_tls_ctx_alpn(ctx, "http/1.1");
    if (tp_tls_ctx_tickets(ctx, err, errlen) < 0)
        goto fail;
    mbedtls_sha256_finish_ret(&digest, c->tls_digest);
    mbedtls_sha256_free(&digest);
    cJSON_Delete(certs);
    c->listen_tls = ctx;
    return 0;
fail:
    mbedtls_sha256_free(&digest);
    cJSON_Delete(certs);
    tp_tls_ctx_unref(ctx);
    return -1;
}
