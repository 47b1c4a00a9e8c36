/* common/tp_redis_tls.c: the Redis client's TLS context from tyk.conf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_buf.h"
#include "tp_redis_tls.h"

/* "1.2" -> Go's 771; "" -> 0 (the default). */
static int version_code(const char *v)
{
    if (v == NULL || v[0] == '\0')
        return 0;
    if (strcmp(v, "1.0") == 0)
        return TP_TLS_V10;
    if (strcmp(v, "1.1") == 0)
        return TP_TLS_V11;
    if (strcmp(v, "1.2") == 0)
        return TP_TLS_V12;
    if (strcmp(v, "1.3") == 0)
        return TP_TLS_V13;
    return -1;
}

tp_tls_ctx_t *tp_redis_tls_ctx(const tp_redis_conf_t *st, char *err, size_t errlen)
{
    int min = version_code(st->tls_min_version), max = version_code(st->tls_max_version);
    if (min < 0 || max < 0) {
        snprintf(err, errlen,
                 "storage.tls_min_version/tls_max_version: expected 1.0, 1.1, 1.2 "
                 "or 1.3, got \"%s\"/\"%s\"",
                 st->tls_min_version ? st->tls_min_version : "",
                 st->tls_max_version ? st->tls_max_version : "");
        return NULL;
    }
    if (min == TP_TLS_V13) {
        snprintf(err, errlen,
                 "storage.tls_min_version: TLS 1.3 is not available with this "
                 "mbedTLS (2.28); use 1.2");
        return NULL;
    }
    tp_tls_ctx_t *ctx = tp_tls_ctx_new(TP_TLS_CLIENT, err, errlen);
    if (ctx == NULL)
        return NULL;
    char why[300];
    if (tp_tls_ctx_versions(ctx, min, max, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "storage.tls_min_version/tls_max_version: %s", why);
        goto err;
    }
    if (st->ssl_insecure_skip_verify) {
        tp_tls_ctx_verify(ctx, TP_TLS_VERIFY_NONE);
    } else {
        /* the system's roots when no CA is named, as Go does */
        const char *ca = st->ca_file && st->ca_file[0] ? st->ca_file : tp_tls_default_roots();
        if (tp_tls_ctx_roots_file(ctx, ca, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "storage.ca_file %s", why);
            goto err;
        }
    }
    int has_cert = st->cert_file && st->cert_file[0], has_key = st->key_file && st->key_file[0];
    if (has_cert != has_key) {
        snprintf(err, errlen, "storage.cert_file and storage.key_file go together");
        goto err;
    }
    if (has_cert) {
        tp_buf_t crt = {0}, key = {0};
        int rc = -1;
        if (tp_buf_read_file(&crt, st->cert_file) < 0)
            snprintf(err, errlen, "storage.cert_file \"%s\": cannot read it", st->cert_file);
        else if (tp_buf_read_file(&key, st->key_file) < 0)
            snprintf(err, errlen, "storage.key_file \"%s\": cannot read it", st->key_file);
        else if (tp_tls_ctx_add_cert(ctx, crt.data, crt.len, key.data, key.len, NULL,
                                     "storage.cert_file/key_file", err, errlen) == 0)
            rc = 0;
        tp_buf_free(&crt);
        tp_buf_free(&key);
        if (rc < 0)
            goto err;
    }
    return ctx;
err:
    tp_tls_ctx_unref(ctx);
    return NULL;
}
