/* common/tp_redis_tls.c: mbedTLS sessions over memory buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "tp_err.h"
#include "tp_redis_tls.h"

struct tp_rtls_conf_s {
    mbedtls_ssl_config ssl;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
};

struct tp_rtls_s {
    mbedtls_ssl_context ssl;
    unsigned char ip[16]; /* the server's address when it was given as one */
    size_t iplen;
    tp_buf_t in; /* ciphertext received, not yet consumed */
    size_t in_pos;
    tp_buf_t out; /* ciphertext to send */
};

static void mbed_error(int rc, const char *what, char *err, size_t errlen)
{
    char buf[160];
    mbedtls_strerror(rc, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s", what, buf);
}

/* "1.2" -> minor version 3; "1.0" -> 1; "1.1" -> 2. */
static int tls_minor(const char *v, int dflt)
{
    if (v == NULL || v[0] == '\0')
        return dflt;
    if (strcmp(v, "1.0") == 0)
        return MBEDTLS_SSL_MINOR_VERSION_1;
    if (strcmp(v, "1.1") == 0)
        return MBEDTLS_SSL_MINOR_VERSION_2;
    if (strcmp(v, "1.2") == 0 || strcmp(v, "1.3") == 0)
        return MBEDTLS_SSL_MINOR_VERSION_3;
    return -1;
}

tp_rtls_conf_t *tp_rtls_conf_new(const tp_redis_conf_t *st, char *err, size_t errlen)
{
    tp_rtls_conf_t *tc = tp_calloc(1, sizeof(*tc));
    mbedtls_ssl_config_init(&tc->ssl);
    mbedtls_entropy_init(&tc->entropy);
    mbedtls_ctr_drbg_init(&tc->drbg);
    mbedtls_x509_crt_init(&tc->ca);
    mbedtls_x509_crt_init(&tc->cert);
    mbedtls_pk_init(&tc->key);
    int rc;

    if ((rc = mbedtls_ctr_drbg_seed(&tc->drbg, mbedtls_entropy_func, &tc->entropy,
                                    (const unsigned char *)"turnpike-redis", 14)) != 0) {
        mbed_error(rc, "TLS random generator", err, errlen);
        goto err;
    }
    if ((rc = mbedtls_ssl_config_defaults(&tc->ssl, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        mbed_error(rc, "TLS configuration", err, errlen);
        goto err;
    }
    mbedtls_ssl_conf_rng(&tc->ssl, mbedtls_ctr_drbg_random, &tc->drbg);

    int min = tls_minor(st->tls_min_version, MBEDTLS_SSL_MINOR_VERSION_3);
    int max = tls_minor(st->tls_max_version, MBEDTLS_SSL_MINOR_VERSION_3);
    if (min < 0 || max < 0) {
        snprintf(err, errlen,
                 "storage.tls_min_version/tls_max_version: expected 1.0, 1.1, 1.2 "
                 "or 1.3, got \"%s\"/\"%s\"",
                 st->tls_min_version ? st->tls_min_version : "",
                 st->tls_max_version ? st->tls_max_version : "");
        goto err;
    }
    if (st->tls_min_version != NULL && strcmp(st->tls_min_version, "1.3") == 0) {
        snprintf(err, errlen,
                 "storage.tls_min_version: TLS 1.3 is not available with this "
                 "mbedTLS (2.28); use 1.2");
        goto err;
    }
    if (min > max) {
        snprintf(err, errlen, "storage.tls_min_version is above tls_max_version");
        goto err;
    }
    mbedtls_ssl_conf_min_version(&tc->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, min);
    mbedtls_ssl_conf_max_version(&tc->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, max);

    if (st->ssl_insecure_skip_verify) {
        mbedtls_ssl_conf_authmode(&tc->ssl, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        /* the system's roots when no CA is named, as Go does */
        const char *ca =
            st->ca_file && st->ca_file[0] ? st->ca_file : "/etc/ssl/certs/ca-certificates.crt";
        if ((rc = mbedtls_x509_crt_parse_file(&tc->ca, ca)) < 0) {
            char what[300];
            snprintf(what, sizeof(what), "storage.ca_file \"%s\"", ca);
            mbed_error(rc, what, err, errlen);
            goto err;
        }
        mbedtls_ssl_conf_ca_chain(&tc->ssl, &tc->ca, NULL);
        mbedtls_ssl_conf_authmode(&tc->ssl, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    int has_cert = st->cert_file && st->cert_file[0], has_key = st->key_file && st->key_file[0];
    if (has_cert != has_key) {
        snprintf(err, errlen, "storage.cert_file and storage.key_file go together");
        goto err;
    }
    if (has_cert) {
        char what[300];
        if ((rc = mbedtls_x509_crt_parse_file(&tc->cert, st->cert_file)) != 0) {
            snprintf(what, sizeof(what), "storage.cert_file \"%s\"", st->cert_file);
            mbed_error(rc, what, err, errlen);
            goto err;
        }
        if ((rc = mbedtls_pk_parse_keyfile(&tc->key, st->key_file, NULL)) != 0) {
            snprintf(what, sizeof(what), "storage.key_file \"%s\"", st->key_file);
            mbed_error(rc, what, err, errlen);
            goto err;
        }
        if ((rc = mbedtls_ssl_conf_own_cert(&tc->ssl, &tc->cert, &tc->key)) != 0) {
            mbed_error(rc, "storage.cert_file/key_file", err, errlen);
            goto err;
        }
    }
    return tc;
err:
    tp_rtls_conf_free(tc);
    return NULL;
}

void tp_rtls_conf_free(tp_rtls_conf_t *tc)
{
    if (tc == NULL)
        return;
    mbedtls_ssl_config_free(&tc->ssl);
    mbedtls_ctr_drbg_free(&tc->drbg);
    mbedtls_entropy_free(&tc->entropy);
    mbedtls_x509_crt_free(&tc->ca);
    mbedtls_x509_crt_free(&tc->cert);
    mbedtls_pk_free(&tc->key);
    free(tc);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    tp_rtls_t *t = ctx;
    tp_buf_append(&t->out, buf, len);
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    tp_rtls_t *t = ctx;
    size_t have = t->in.len - t->in_pos;
    if (have == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > have)
        len = have;
    memcpy(buf, t->in.data + t->in_pos, len);
    t->in_pos += len;
    if (t->in_pos == t->in.len)
        t->in.len = t->in_pos = 0;
    return (int)len;
}

/* Reads a DER length at *p (not past <end>); returns -1 when malformed. */
static long der_len(const unsigned char **p, const unsigned char *end)
{
    if (*p >= end)
        return -1;
    unsigned char b = *(*p)++;
    if (b < 0x80)
        return b;
    int n = b & 0x7f;
    long v = 0;
    if (n == 0 || n > 3 || end - *p < n)
        return -1;
    while (n-- > 0)
        v = (v << 8) | *(*p)++;
    return v;
}

/* Does the leaf certificate name <ip> in its subjectAltName? mbedTLS 2.28
 * checks only DNS names, so the iPAddress entries ([7] OCTET STRING) are
 * read from the raw extensions here. */
static int crt_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t iplen)
{
    static const unsigned char san_oid[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
    const unsigned char *p = crt->v3_ext.p, *end = p + crt->v3_ext.len;
    for (; p + sizeof(san_oid) < end; p++) {
        if (memcmp(p, san_oid, sizeof(san_oid)) != 0)
            continue;
        p += sizeof(san_oid);
        if (p + 3 <= end && p[0] == 0x01 && p[1] == 0x01)
            p += 3; /* critical flag */
        if (p >= end || *p++ != 0x04 || der_len(&p, end) < 0)
            return 0;
        if (p >= end || *p++ != 0x30)
            return 0;
        long seq = der_len(&p, end);
        if (seq < 0 || seq > end - p)
            return 0;
        const unsigned char *q = p, *qend = p + seq;
        while (q < qend) {
            unsigned char tag = *q++;
            long len = der_len(&q, qend);
            if (len < 0 || len > qend - q)
                return 0;
            if (tag == 0x87 && (size_t)len == iplen && memcmp(q, ip, iplen) == 0)
                return 1;
            q += len;
        }
        return 0;
    }
    return 0;
}

static int verify_ip(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tp_rtls_t *t = ctx;
    if (depth == 0 && !crt_has_ip(crt, t->ip, t->iplen))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

tp_rtls_t *tp_rtls_new(tp_rtls_conf_t *tc, const char *host)
{
    tp_rtls_t *t = tp_calloc(1, sizeof(*t));
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &tc->ssl) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    if (inet_pton(AF_INET, host, t->ip) == 1)
        t->iplen = 4;
    else if (inet_pton(AF_INET6, host, t->ip) == 1)
        t->iplen = 16;
    if (t->iplen > 0)
        mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
    else
        mbedtls_ssl_set_hostname(&t->ssl, host);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

void tp_rtls_free(tp_rtls_t *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    tp_buf_free(&t->in);
    tp_buf_free(&t->out);
    free(t);
}

tp_buf_t *tp_rtls_pending(tp_rtls_t *t)
{
    return &t->out;
}

static void feed(tp_rtls_t *t, const char *in, size_t n)
{
    if (n > 0)
        tp_buf_append(&t->in, in, n);
}

int tp_rtls_handshake(tp_rtls_t *t, const char *in, size_t n, char *err, size_t errlen)
{
    feed(t, in, n);
    int rc = mbedtls_ssl_handshake(&t->ssl);
    if (rc == 0)
        return 1;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0) {
        char info[512];
        mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
        for (char *c = info; *c; c++)
            if (*c == '\n')
                *c = *(c + 1) ? ';' : '\0';
        snprintf(err, errlen, "TLS certificate verification failed: %s", info);
    } else {
        mbed_error(rc, "TLS handshake failed", err, errlen);
    }
    return -1;
}

int tp_rtls_write(tp_rtls_t *t, const char *p, size_t n, char *err, size_t errlen)
{
    while (n > 0) {
        int rc = mbedtls_ssl_write(&t->ssl, (const unsigned char *)p, n);
        if (rc < 0) {
            mbed_error(rc, "TLS write", err, errlen);
            return -1;
        }
        p += rc;
        n -= (size_t)rc;
    }
    return 0;
}

int tp_rtls_read(tp_rtls_t *t, const char *in, size_t n, tp_buf_t *out, char *err, size_t errlen)
{
    feed(t, in, n);
    for (;;) {
        char *dst = tp_buf_reserve(out, 16384);
        int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)dst, 16384);
        if (rc > 0) {
            out->len += (size_t)rc;
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return 0;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return 1;
        mbed_error(rc, "TLS read", err, errlen);
        return -1;
    }
}
