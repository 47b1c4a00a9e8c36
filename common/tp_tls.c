/* common/tp_tls.c: mbedTLS sessions over memory buffers. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mbedtls/aesni.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "tp_err.h"
#include "tp_tls.h"

/* ---- the process's random generator ------------------------------------- */

static mbedtls_entropy_context g_entropy;
static mbedtls_ctr_drbg_context g_drbg;
static int g_rng_ready;

static int rng_init(char *err, size_t errlen)
{
    if (g_rng_ready)
        return 0;
    mbedtls_entropy_init(&g_entropy);
    mbedtls_ctr_drbg_init(&g_drbg);
    pid_t pid = getpid();
    int rc = mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_entropy,
                                   (const unsigned char *)&pid, sizeof(pid));
    if (rc != 0) {
        char buf[128];
        mbedtls_strerror(rc, buf, sizeof(buf));
        snprintf(err, errlen, "TLS random generator: %s", buf);
        mbedtls_ctr_drbg_free(&g_drbg);
        mbedtls_entropy_free(&g_entropy);
        return -1;
    }
    g_rng_ready = 1;
    return 0;
}

static int rng(void *p, unsigned char *out, size_t n)
{
    (void)p;
    return mbedtls_ctr_drbg_random(&g_drbg, out, n);
}

void tp_tls_after_fork(void)
{
    if (!g_rng_ready)
        return;
    pid_t pid = getpid();
    (void)mbedtls_ctr_drbg_reseed(&g_drbg, (const unsigned char *)&pid, sizeof(pid));
}

const char *tp_tls_default_roots(void)
{
    const char *f = getenv("SSL_CERT_FILE");
    return f != NULL && f[0] != '\0' ? f : "/etc/ssl/certs/ca-certificates.crt";
}

static void mbed_error(int rc, const char *what, char *err, size_t errlen)
{
    char buf[160];
    mbedtls_strerror(rc, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s", what, buf);
}

/* ---- contexts --------------------------------------------------------------- */

typedef struct cert_s {
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    char **names; /* lower case: the configured domain, the CN, the DNS names */
    size_t nnames;
} cert_t;

struct tp_tls_ctx_s {
    mbedtls_ssl_config conf;
    int refs;
    int endpoint;
    int verify;
    int force_cn;
    int roots_tried; /* the default roots were loaded (or failed to) */
    int have_ca;
    mbedtls_x509_crt ca;
    cert_t **certs;
    size_t ncerts;
    int *suites; /* 0-terminated, or NULL for the defaults */
    const char *alpn[2];
    int tickets;
    mbedtls_ssl_ticket_context ticket;
};

/* Go's secure and insecure TLS 1.2 suite names and the mbedTLS ids. */
static const struct {
    const char *name;
    int id;
} suites[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", MBEDTLS_TLS_RSA_WITH_RC4_128_SHA},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", MBEDTLS_TLS_RSA_WITH_3DES_EDE_CBC_SHA},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", MBEDTLS_TLS_RSA_WITH_AES_256_CBC_SHA},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA256},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", MBEDTLS_TLS_RSA_WITH_AES_256_GCM_SHA384},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", MBEDTLS_TLS_ECDHE_ECDSA_WITH_RC4_128_SHA},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", MBEDTLS_TLS_ECDHE_RSA_WITH_RC4_128_SHA},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", MBEDTLS_TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
     MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
     MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
    /* Go's aliases */
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
     MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
    /* TLS 1.3: not configurable in Go either */
    {"TLS_AES_128_GCM_SHA256", 0},
    {"TLS_AES_256_GCM_SHA384", 0},
    {"TLS_CHACHA20_POLY1305_SHA256", 0},
};

/* Go's default TLS 1.2 preference order (crypto/tls cipherSuitesPreferenceOrder),
 * used when ssl_ciphers is not set: AES-GCM first where the CPU has AES
 * instructions, ChaCha20 first where it has not, as Go decides. */
static const int go_order_aes[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
    MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA,
    MBEDTLS_TLS_RSA_WITH_AES_256_CBC_SHA,
    0,
};

/* Go's default key exchange curves (crypto/tls defaultCurvePreferences);
 * mbedTLS would pick secp521r1 first, several times slower per handshake. */
static const mbedtls_ecp_group_id go_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1,  MBEDTLS_ECP_DP_NONE,
};

static int have_aes_hw(void)
{
#if defined(MBEDTLS_AESNI_C) && defined(MBEDTLS_HAVE_X86_64)
    return mbedtls_aesni_has_support(MBEDTLS_AESNI_AES) &&
           mbedtls_aesni_has_support(MBEDTLS_AESNI_CLMUL);
#else
    return 0;
#endif
}

/* go_order_aes, or without AES instructions the same with the two
 * ChaCha20 suites first (entries 4 and 5). */
static const int *go_default_suites(void)
{
    static int chacha_first[sizeof(go_order_aes) / sizeof(go_order_aes[0])];
    if (have_aes_hw())
        return go_order_aes;
    if (chacha_first[0] == 0) {
        chacha_first[0] = go_order_aes[4];
        chacha_first[1] = go_order_aes[5];
        memcpy(chacha_first + 2, go_order_aes, 4 * sizeof(int));
        memcpy(chacha_first + 6, go_order_aes + 6, sizeof(go_order_aes) - 6 * sizeof(int));
    }
    return chacha_first;
}

static int suite_lookup(const char *name, int *id)
{
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        if (strcasecmp(name, suites[i].name) == 0) {
            *id = suites[i].id;
            return 1;
        }
    return 0;
}

int tp_tls_cipher_known(const char *name)
{
    int id;
    return suite_lookup(name, &id);
}

tp_tls_ctx_t *tp_tls_ctx_new(int endpoint, char *err, size_t errlen)
{
    if (rng_init(err, errlen) < 0)
        return NULL;
    tp_tls_ctx_t *ctx = tp_calloc(1, sizeof(*ctx));
    ctx->refs = 1;
    ctx->endpoint = endpoint;
    mbedtls_ssl_config_init(&ctx->conf);
    mbedtls_x509_crt_init(&ctx->ca);
    int rc = mbedtls_ssl_config_defaults(
        &ctx->conf, endpoint == TP_TLS_SERVER ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
        MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        mbed_error(rc, "TLS configuration", err, errlen);
        tp_tls_ctx_unref(ctx);
        return NULL;
    }
    mbedtls_ssl_conf_rng(&ctx->conf, rng, NULL);
    mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_renegotiation(&ctx->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_ciphersuites(&ctx->conf, go_default_suites());
    mbedtls_ssl_conf_curves(&ctx->conf, go_curves);
    ctx->verify = endpoint == TP_TLS_SERVER ? TP_TLS_VERIFY_NONE : TP_TLS_VERIFY_REQUIRED;
    mbedtls_ssl_conf_authmode(&ctx->conf, ctx->verify == TP_TLS_VERIFY_REQUIRED
                                              ? MBEDTLS_SSL_VERIFY_REQUIRED
                                              : MBEDTLS_SSL_VERIFY_NONE);
    return ctx;
}

static void cert_free(cert_t *c)
{
    mbedtls_x509_crt_free(&c->crt);
    mbedtls_pk_free(&c->key);
    for (size_t j = 0; j < c->nnames; j++)
        free(c->names[j]);
    free(c->names);
    free(c);
}

void tp_tls_ctx_ref(tp_tls_ctx_t *ctx)
{
    ctx->refs++;
}

void tp_tls_ctx_unref(tp_tls_ctx_t *ctx)
{
    if (ctx == NULL || --ctx->refs > 0)
        return;
    mbedtls_ssl_config_free(&ctx->conf);
    mbedtls_x509_crt_free(&ctx->ca);
    for (size_t i = 0; i < ctx->ncerts; i++)
        cert_free(ctx->certs[i]);
    free(ctx->certs);
    free(ctx->suites);
    if (ctx->tickets)
        mbedtls_ssl_ticket_free(&ctx->ticket);
    free(ctx);
}

static int minor_of(int64_t code)
{
    switch (code) {
    case TP_TLS_V10:
        return MBEDTLS_SSL_MINOR_VERSION_1;
    case TP_TLS_V11:
        return MBEDTLS_SSL_MINOR_VERSION_2;
    case TP_TLS_V12:
    case TP_TLS_V13:
        return MBEDTLS_SSL_MINOR_VERSION_3;
    }
    return -1;
}

int tp_tls_ctx_versions(tp_tls_ctx_t *ctx, int64_t min, int64_t max, char *err, size_t errlen)
{
    if (min == TP_TLS_V13) {
        snprintf(err, errlen,
                 "772 (TLS 1.3) is not available in this build (mbedTLS 2.28 has TLS 1.0 to "
                 "1.2); use 771 (TLS 1.2)");
        return -1;
    }
    int lo = min == 0 ? MBEDTLS_SSL_MINOR_VERSION_3 : minor_of(min);
    int hi = max == 0 ? MBEDTLS_SSL_MINOR_VERSION_3 : minor_of(max);
    if (lo < 0 || hi < 0) {
        snprintf(err, errlen,
                 "expected 769 (TLS 1.0), 770 (TLS 1.1), 771 (TLS 1.2), 772 (TLS 1.3) or 0, "
                 "got %lld",
                 (long long)(lo < 0 ? min : max));
        return -1;
    }
    if (min != 0 && max == 0 && lo > hi)
        hi = lo;
    if (lo > hi) {
        snprintf(err, errlen, "the minimum version %lld is above the maximum %lld", (long long)min,
                 (long long)max);
        return -1;
    }
    mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3, lo);
    mbedtls_ssl_conf_max_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3, hi);
    return 0;
}

int tp_tls_ctx_ciphers(tp_tls_ctx_t *ctx, char *const *names, size_t n, size_t *bad, char *err,
                       size_t errlen)
{
    if (n == 0)
        return 0;
    int *v = tp_calloc(n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int id;
        if (!suite_lookup(names[i], &id)) {
            snprintf(err, errlen,
                     "unknown cipher suite \"%s\" (expected a Go name such as "
                     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
                     names[i]);
            *bad = i;
            free(v);
            return -1;
        }
        /* TLS 1.3 names, and suites this mbedTLS was built without, add nothing */
        if (id != 0 && mbedtls_ssl_ciphersuite_from_id(id) != NULL)
            v[k++] = id;
    }
    if (k == 0) {
        snprintf(err, errlen, "none of the cipher suites is available in this build");
        *bad = 0;
        free(v);
        return -1;
    }
    free(ctx->suites);
    ctx->suites = v;
    mbedtls_ssl_conf_ciphersuites(&ctx->conf, ctx->suites);
    return 0;
}

static void add_name(cert_t *c, const char *p, size_t n)
{
    if (n == 0)
        return;
    char *s = tp_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
    s[n] = '\0';
    c->names = tp_realloc(c->names, (c->nnames + 1) * sizeof(*c->names));
    c->names[c->nnames++] = s;
}

/* The leaf's subject CN. */
static const mbedtls_x509_buf *crt_cn(const mbedtls_x509_crt *crt)
{
    for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next)
        if (n->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
            return &n->val;
    return NULL;
}

/* mbedTLS wants PEM text NUL-terminated, its length counting the NUL. */
static int parse_crt(mbedtls_x509_crt *crt, const char *pem, size_t len)
{
    char *z = tp_malloc(len + 1);
    memcpy(z, pem, len);
    z[len] = '\0';
    int rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)z, len + 1);
    free(z);
    return rc;
}

static int sni_pick(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len);

int tp_tls_ctx_add_cert(tp_tls_ctx_t *ctx, const char *crt_pem, size_t crt_len, const char *key_pem,
                        size_t key_len, const char *domain, const char *what, char *err,
                        size_t errlen)
{
    cert_t *c = tp_calloc(1, sizeof(*c));
    mbedtls_x509_crt_init(&c->crt);
    mbedtls_pk_init(&c->key);
    int rc = parse_crt(&c->crt, crt_pem, crt_len);
    if (rc != 0) {
        char w[300];
        snprintf(w, sizeof(w), "%s: %s", what,
                 rc > 0 ? "some certificates could not be read" : "no certificate");
        if (rc < 0)
            mbed_error(rc, w, err, errlen);
        else
            snprintf(err, errlen, "%s", w);
        goto fail;
    }
    char *z = tp_malloc(key_len + 1);
    memcpy(z, key_pem, key_len);
    z[key_len] = '\0';
    rc = mbedtls_pk_parse_key(&c->key, (const unsigned char *)z, key_len + 1, NULL, 0);
    free(z);
    if (rc != 0) {
        char w[300];
        snprintf(w, sizeof(w), "%s: private key", what);
        mbed_error(rc, w, err, errlen);
        goto fail;
    }
    if ((rc = mbedtls_pk_check_pair(&c->crt.pk, &c->key)) != 0) {
        snprintf(err, errlen, "%s: the private key does not belong to the certificate", what);
        goto fail;
    }
    if (domain != NULL)
        add_name(c, domain, strlen(domain));
    const mbedtls_x509_buf *cn = crt_cn(&c->crt);
    if (cn != NULL)
        add_name(c, (const char *)cn->p, cn->len);
    for (const mbedtls_x509_sequence *s = &c->crt.subject_alt_names; s != NULL; s = s->next)
        if (s->buf.p != NULL && s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2))
            add_name(c, (const char *)s->buf.p, s->buf.len);
    if (ctx->endpoint == TP_TLS_CLIENT && ctx->ncerts > 0) {
        snprintf(err, errlen, "%s: a client presents one certificate", what);
        goto fail;
    }
    ctx->certs = tp_realloc(ctx->certs, (ctx->ncerts + 1) * sizeof(*ctx->certs));
    ctx->certs[ctx->ncerts++] = c;
    if (ctx->endpoint == TP_TLS_SERVER && ctx->ncerts == 2)
        mbedtls_ssl_conf_sni(&ctx->conf, sni_pick, ctx);
    if (ctx->ncerts == 1 && (rc = mbedtls_ssl_conf_own_cert(&ctx->conf, &c->crt, &c->key)) != 0) {
        mbed_error(rc, what, err, errlen);
        ctx->ncerts--;
        goto fail;
    }
    return 0;
fail:
    cert_free(c);
    return -1;
}

size_t tp_tls_ctx_ncerts(const tp_tls_ctx_t *ctx)
{
    return ctx->ncerts;
}

static void use_ca(tp_tls_ctx_t *ctx)
{
    ctx->have_ca = 1;
    ctx->roots_tried = 1;
    mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, NULL);
}

int tp_tls_ctx_add_ca(tp_tls_ctx_t *ctx, const char *pem, size_t len, const char *what, char *err,
                      size_t errlen)
{
    int rc = parse_crt(&ctx->ca, pem, len);
    if (rc < 0) {
        mbed_error(rc, what, err, errlen);
        return -1;
    }
    use_ca(ctx);
    return 0;
}

int tp_tls_ctx_roots_file(tp_tls_ctx_t *ctx, const char *path, char *err, size_t errlen)
{
    int rc = mbedtls_x509_crt_parse_file(&ctx->ca, path);
    if (rc < 0) {
        char what[300];
        snprintf(what, sizeof(what), "\"%s\"", path);
        mbed_error(rc, what, err, errlen);
        return -1;
    }
    use_ca(ctx);
    return 0;
}

void tp_tls_ctx_verify(tp_tls_ctx_t *ctx, int mode)
{
    ctx->verify = mode;
    mbedtls_ssl_conf_authmode(&ctx->conf,
                              mode == TP_TLS_VERIFY_REQUIRED   ? MBEDTLS_SSL_VERIFY_REQUIRED
                              : mode == TP_TLS_VERIFY_OPTIONAL ? MBEDTLS_SSL_VERIFY_OPTIONAL
                                                               : MBEDTLS_SSL_VERIFY_NONE);
}

void tp_tls_ctx_force_cn(tp_tls_ctx_t *ctx, int on)
{
    ctx->force_cn = on;
}

void tp_tls_ctx_renegotiation(tp_tls_ctx_t *ctx, int allow)
{
    mbedtls_ssl_conf_renegotiation(&ctx->conf, allow ? MBEDTLS_SSL_RENEGOTIATION_ENABLED
                                                     : MBEDTLS_SSL_RENEGOTIATION_DISABLED);
}

void tp_tls_ctx_alpn(tp_tls_ctx_t *ctx, const char *proto)
{
    ctx->alpn[0] = proto;
    ctx->alpn[1] = NULL;
    (void)mbedtls_ssl_conf_alpn_protocols(&ctx->conf, ctx->alpn);
}

int tp_tls_ctx_tickets(tp_tls_ctx_t *ctx, char *err, size_t errlen)
{
    if (ctx->tickets)
        return 0;
    mbedtls_ssl_ticket_init(&ctx->ticket);
    int rc = mbedtls_ssl_ticket_setup(&ctx->ticket, rng, NULL, MBEDTLS_CIPHER_AES_256_GCM, 86400);
    if (rc != 0) {
        mbed_error(rc, "TLS session tickets", err, errlen);
        mbedtls_ssl_ticket_free(&ctx->ticket);
        return -1;
    }
    ctx->tickets = 1;
    mbedtls_ssl_conf_session_tickets_cb(&ctx->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &ctx->ticket);
    return 0;
}

/* ---- connections ------------------------------------------------------------ */

struct tp_tls_s {
    mbedtls_ssl_context ssl;
    tp_tls_ctx_t *ctx;
    const char *ext; /* borrowed input (tp_tls_feed), then copied into <in> */
    size_t ext_len;
    tp_buf_t in; /* received ciphertext not yet consumed */
    size_t in_pos;
    tp_buf_t out; /* ciphertext to send */
    char *host;   /* client: the name checked against the CN (force_cn) */
    unsigned char ip[16];
    uint8_t iplen;
    uint8_t done;
    char subject[128];
};

/* SNI: the certificate for the name the client asked for. */
static int sni_pick(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len)
{
    tp_tls_ctx_t *ctx = arg;
    char host[256];
    if (len == 0 || len >= sizeof(host))
        return 0;
    for (size_t i = 0; i < len; i++)
        host[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    host[len] = '\0';
    const char *dot = strchr(host, '.');
    cert_t *wild = NULL;
    for (size_t i = 0; i < ctx->ncerts; i++) {
        cert_t *c = ctx->certs[i];
        for (size_t j = 0; j < c->nnames; j++) {
            const char *n = c->names[j];
            if (strcmp(n, host) == 0)
                return mbedtls_ssl_set_hs_own_cert(ssl, &c->crt, &c->key) == 0 ? 0 : -1;
            if (wild == NULL && dot != NULL && n[0] == '*' && n[1] == '.' &&
                strcmp(n + 1, dot) == 0)
                wild = c;
        }
    }
    if (wild != NULL)
        return mbedtls_ssl_set_hs_own_cert(ssl, &wild->crt, &wild->key) == 0 ? 0 : -1;
    return 0; /* the first certificate */
}

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    tp_tls_t *t = arg;
    tp_buf_append(&t->out, buf, len);
    return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    tp_tls_t *t = arg;
    size_t have = t->in.len - t->in_pos;
    if (have > 0) {
        if (len > have)
            len = have;
        memcpy(buf, t->in.data + t->in_pos, len);
        t->in_pos += len;
        if (t->in_pos == t->in.len) {
            tp_buf_free(&t->in);
            t->in_pos = 0;
        }
        return (int)len;
    }
    if (t->ext_len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > t->ext_len)
        len = t->ext_len;
    memcpy(buf, t->ext, len);
    t->ext += len;
    t->ext_len -= len;
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

/* Called for each certificate of the peer's chain: keeps the leaf's
 * subject for error messages and checks what mbedTLS does not (IP
 * addresses, Tyk's forced CN check). */
static int verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tp_tls_t *t = arg;
    if (depth != 0)
        return 0;
    if (mbedtls_x509_dn_gets(t->subject, sizeof(t->subject), &crt->subject) < 0)
        t->subject[0] = '\0';
    if (t->iplen > 0 && !crt_has_ip(crt, t->ip, t->iplen))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    if (t->ctx->force_cn && t->host != NULL) {
        const mbedtls_x509_buf *cn = crt_cn(crt);
        if (cn == NULL || cn->len != strlen(t->host) ||
            strncasecmp((const char *)cn->p, t->host, cn->len) != 0)
            *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
}

/* Loads the default roots into a client context the first time one is
 * needed. Failure leaves the context without roots: every verification
 * fails with "not trusted", and the reason is logged by the caller once. */
static void load_default_roots(tp_tls_ctx_t *ctx)
{
    ctx->roots_tried = 1;
    if (mbedtls_x509_crt_parse_file(&ctx->ca, tp_tls_default_roots()) >= 0)
        use_ca(ctx);
}

tp_tls_t *tp_tls_new(tp_tls_ctx_t *ctx, const char *host)
{
    if (ctx->endpoint == TP_TLS_CLIENT && ctx->verify != TP_TLS_VERIFY_NONE && !ctx->roots_tried)
        load_default_roots(ctx);
    tp_tls_t *t = tp_calloc(1, sizeof(*t));
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &ctx->conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    t->ctx = ctx;
    tp_tls_ctx_ref(ctx);
    if (host != NULL && ctx->endpoint == TP_TLS_CLIENT) {
        if (inet_pton(AF_INET, host, t->ip) == 1)
            t->iplen = 4;
        else if (inet_pton(AF_INET6, host, t->ip) == 1)
            t->iplen = 16;
        else
            mbedtls_ssl_set_hostname(&t->ssl, host);
        if (ctx->force_cn)
            t->host = tp_strdup(host);
    }
    mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

void tp_tls_free(tp_tls_t *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    tp_tls_ctx_unref(t->ctx);
    tp_buf_free(&t->in);
    tp_buf_free(&t->out);
    free(t->host);
    free(t);
}

void tp_tls_request_client_cert(tp_tls_t *t)
{
    mbedtls_ssl_set_hs_authmode(&t->ssl, MBEDTLS_SSL_VERIFY_OPTIONAL);
}

void tp_tls_feed(tp_tls_t *t, const char *in, size_t n)
{
    /* what an earlier feed left goes first */
    if (t->ext_len > 0) {
        tp_buf_append(&t->in, t->ext, t->ext_len);
        t->ext_len = 0;
    }
    if (t->in.len > t->in_pos) {
        tp_buf_append(&t->in, in, n);
        return;
    }
    t->ext = in;
    t->ext_len = n;
}

/* The borrowed input must not outlive the call that fed it. */
static void keep_rest(tp_tls_t *t)
{
    if (t->ext_len > 0) {
        if (t->in_pos > 0 && t->in_pos == t->in.len)
            t->in.len = t->in_pos = 0;
        tp_buf_append(&t->in, t->ext, t->ext_len);
        t->ext_len = 0;
    }
}

tp_buf_t *tp_tls_pending(tp_tls_t *t)
{
    return &t->out;
}

static void describe(tp_tls_t *t, int rc, char *err, size_t errlen)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
        char info[512];
        mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
        for (char *c = info; *c; c++)
            if (*c == '\n')
                *c = *(c + 1) ? ';' : '\0';
        snprintf(err, errlen, "certificate verification failed: %s", info);
    } else if (rc == MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE) {
        snprintf(err, errlen, "no cipher suite in common");
    } else if (rc == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION) {
        snprintf(err, errlen, "no TLS version in common");
    } else {
        mbed_error(rc, "TLS handshake", err, errlen);
    }
}

int tp_tls_handshake(tp_tls_t *t, char *err, size_t errlen)
{
    int rc = mbedtls_ssl_handshake(&t->ssl);
    keep_rest(t);
    if (rc == 0) {
        t->done = 1;
        return 1;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    describe(t, rc, err, errlen);
    return -1;
}

int tp_tls_handshake_done(const tp_tls_t *t)
{
    return t->done;
}

long tp_tls_read(tp_tls_t *t, char *dst, size_t cap, char *err, size_t errlen)
{
    int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)dst, cap);
    keep_rest(t);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return TP_TLS_WANT;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return TP_TLS_CLOSED;
    if (rc == MBEDTLS_ERR_SSL_CLIENT_RECONNECT)
        snprintf(err, errlen, "TLS: the client started a new handshake on the connection");
    else
        mbed_error(rc, "TLS read", err, errlen);
    return TP_TLS_ERROR;
}

int tp_tls_read_all(tp_tls_t *t, tp_buf_t *out, char *err, size_t errlen)
{
    for (;;) {
        char *dst = tp_buf_reserve(out, 16384);
        long n = tp_tls_read(t, dst, 16384, err, errlen);
        if (n > 0) {
            out->len += (size_t)n;
            continue;
        }
        return n == TP_TLS_WANT ? 0 : (int)n;
    }
}

int tp_tls_has_input(const tp_tls_t *t)
{
    return t->ext_len > 0 || t->in.len > t->in_pos || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 ||
           mbedtls_ssl_check_pending(&t->ssl);
}

int tp_tls_write(tp_tls_t *t, const char *p, size_t n, char *err, size_t errlen)
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

void tp_tls_close_notify(tp_tls_t *t)
{
    if (t->done)
        (void)mbedtls_ssl_close_notify(&t->ssl);
}

const char *tp_tls_alpn(const tp_tls_t *t)
{
    return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}

const char *tp_tls_version(const tp_tls_t *t)
{
    return mbedtls_ssl_get_version(&t->ssl);
}

const char *tp_tls_suite(const tp_tls_t *t)
{
    return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

const char *tp_tls_peer_subject(const tp_tls_t *t)
{
    return t->subject;
}

/* ---- allowed client certificates ---------------------------------------------- */

struct tp_tls_certset_s {
    mbedtls_x509_crt chain;
    int n;
};

tp_tls_certset_t *tp_tls_certset_new(void)
{
    tp_tls_certset_t *s = tp_calloc(1, sizeof(*s));
    mbedtls_x509_crt_init(&s->chain);
    return s;
}

int tp_tls_certset_add(tp_tls_certset_t *s, const char *pem, size_t len, const char *what,
                       char *err, size_t errlen)
{
    int rc = parse_crt(&s->chain, pem, len);
    if (rc < 0) {
        mbed_error(rc, what, err, errlen);
        return -1;
    }
    s->n++;
    return 0;
}

void tp_tls_certset_free(tp_tls_certset_t *s)
{
    if (s == NULL)
        return;
    mbedtls_x509_crt_free(&s->chain);
    free(s);
}

int tp_tls_certset_check(const tp_tls_certset_t *s, const tp_tls_t *t, char hex[65])
{
    hex[0] = '\0';
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
    if (peer == NULL || peer->raw.p == NULL)
        return TP_TLS_CERT_NONE;
    unsigned char sum[32];
    mbedtls_sha256_ret(peer->raw.p, peer->raw.len, sum, 0);
    tp_hex(hex, sum, 32);
    for (const mbedtls_x509_crt *c = &s->chain; c != NULL && c->raw.p != NULL; c = c->next) {
        unsigned char cs[32];
        mbedtls_sha256_ret(c->raw.p, c->raw.len, cs, 0);
        if (memcmp(cs, sum, 32) == 0)
            return mbedtls_x509_time_is_past(&c->valid_to) ? TP_TLS_CERT_EXPIRED : TP_TLS_CERT_OK;
    }
    uint32_t flags = 0;
    if (s->n > 0 && mbedtls_x509_crt_verify((mbedtls_x509_crt *)peer, (mbedtls_x509_crt *)&s->chain,
                                            NULL, NULL, &flags, NULL, NULL) == 0)
        return TP_TLS_CERT_OK;
    return TP_TLS_CERT_NOT_ALLOWED;
}
