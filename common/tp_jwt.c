/*
 * common/tp_jwt.c: JWT decoding and verification (see tp_jwt.h).
 *
 * golang-jwt v4's rules, which Tyk's answers follow: three segments of
 * unpadded base64url; header and claims JSON objects; the algorithm from
 * the header, checked against the API's family before any key is used
 * (so "alg": "none", or HS256 signed with an RSA public key as the secret,
 * never verifies); RSA PKCS#1 v1.5 and PSS (any salt length), ECDSA with
 * the r || s signature of fixed size; HMAC compared in constant time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>

#include "tp_ct.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_jwt.h"
#include "tp_keyhash.h"

/* ---- base64url ------------------------------------------------------------------------ */

long tp_b64url_decode(const char *s, size_t n, unsigned char *dst)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1) /* no whole byte in the last symbol */
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = tp_b64_symbol((unsigned char)s[i], '-', '_');
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* ---- parsing --------------------------------------------------------------------------- */

static cJSON *segment_json(const char *s, size_t n)
{
    unsigned char small[1024];
    unsigned char *d = n * 3 / 4 + 1 <= sizeof(small) ? small : tp_malloc(n * 3 / 4 + 1);
    long len = tp_b64url_decode(s, n, d);
    cJSON *j = NULL;
    if (len >= 0) {
        char err[8];
        j = tp_json_parse((const char *)d, (size_t)len, err, sizeof(err));
        if (j != NULL && !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (d != small)
        free(d);
    return j;
}

int tp_jwt_parse(tp_jwt_t *j, const char *tok, size_t n)
{
    memset(j, 0, sizeof(*j));
    const char *d1 = memchr(tok, '.', n);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', (size_t)(tok + n - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(tok + n - d2 - 1)) != NULL)
        return -1; /* "token contains an invalid number of segments" */
    j->header = segment_json(tok, (size_t)(d1 - tok));
    j->claims = j->header != NULL ? segment_json(d1 + 1, (size_t)(d2 - d1 - 1)) : NULL;
    if (j->claims == NULL)
        goto bad;
    size_t slen = (size_t)(tok + n - d2 - 1);
    j->sig = tp_malloc(slen * 3 / 4 + 1);
    long sl = tp_b64url_decode(d2 + 1, slen, j->sig);
    if (sl < 0)
        goto bad;
    j->sig_len = (size_t)sl;
    j->signed_len = (size_t)(d2 - tok);
    const cJSON *alg = tp_json_get(j->header, "alg");
    j->alg = cJSON_IsString(alg) ? alg->valuestring : "";
    return 0;
bad:
    tp_jwt_free(j);
    return -1;
}

void tp_jwt_free(tp_jwt_t *j)
{
    cJSON_Delete(j->header);
    cJSON_Delete(j->claims);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}

/* ---- algorithms ------------------------------------------------------------------------ */

typedef struct alg_s {
    const char *name;
    tp_jwt_family_t fam;
    mbedtls_md_type_t md;
    int pss;      /* RSA: PSS, else PKCS#1 v1.5 */
    int key_size; /* ECDSA: bytes of r and of s */
} alg_t;

static const alg_t ALGS[] = {
    {"HS256", TP_JWT_HMAC, MBEDTLS_MD_SHA256, 0, 0},
    {"HS384", TP_JWT_HMAC, MBEDTLS_MD_SHA384, 0, 0},
    {"HS512", TP_JWT_HMAC, MBEDTLS_MD_SHA512, 0, 0},
    {"RS256", TP_JWT_RSA, MBEDTLS_MD_SHA256, 0, 0},
    {"RS384", TP_JWT_RSA, MBEDTLS_MD_SHA384, 0, 0},
    {"RS512", TP_JWT_RSA, MBEDTLS_MD_SHA512, 0, 0},
    {"PS256", TP_JWT_RSA, MBEDTLS_MD_SHA256, 1, 0},
    {"PS384", TP_JWT_RSA, MBEDTLS_MD_SHA384, 1, 0},
    {"PS512", TP_JWT_RSA, MBEDTLS_MD_SHA512, 1, 0},
    {"ES256", TP_JWT_ECDSA, MBEDTLS_MD_SHA256, 0, 32},
    {"ES384", TP_JWT_ECDSA, MBEDTLS_MD_SHA384, 0, 48},
    {"ES512", TP_JWT_ECDSA, MBEDTLS_MD_SHA512, 0, 66},
};

static const alg_t *alg_find(const char *name)
{
    for (size_t i = 0; i < sizeof(ALGS) / sizeof(ALGS[0]); i++)
        if (strcmp(ALGS[i].name, name) == 0)
            return &ALGS[i];
    return NULL;
}

int tp_jwt_alg_in(const char *alg, tp_jwt_family_t fam)
{
    const alg_t *a = alg_find(alg);
    return a != NULL && a->fam == fam;
}

int tp_jwt_alg_known(const char *alg)
{
    return alg_find(alg) != NULL || strcmp(alg, "none") == 0 || strcmp(alg, "EdDSA") == 0 ||
           strcmp(alg, "ED25519") == 0;
}

void tp_jwt_alg_error(const char *alg, tp_jwt_family_t fam, char *out, size_t cap)
{
    static const char *const what[] = {"HMAC signature", "RSA or RSAPSS", "ECDSA"};
    snprintf(out, cap, "Unexpected signing method: %s and not %s", alg, what[fam]);
}

/* ---- keys ------------------------------------------------------------------------------ */

int tp_jwt_key_init(tp_jwt_key_t *k, tp_jwt_family_t fam, const void *data, size_t n, char *err,
                    size_t errlen)
{
    memset(k, 0, sizeof(*k));
    k->fam = fam;
    if (fam == TP_JWT_HMAC) {
        k->secret = tp_malloc(n + 1);
        memcpy(k->secret, data, n);
        k->secret_len = n;
        return 0;
    }
    /* PEM wants its terminating NUL counted; DER is taken as it is */
    unsigned char *buf = tp_malloc(n + 1);
    memcpy(buf, data, n);
    buf[n] = '\0';
    size_t blen = memmem(buf, n, "-----BEGIN", 10) != NULL ? n + 1 : n;
    mbedtls_pk_init(&k->pk);
    if (mbedtls_pk_parse_public_key(&k->pk, buf, blen) == 0) {
        k->kind = 1;
    } else {
        mbedtls_pk_free(&k->pk);
        mbedtls_x509_crt_init(&k->crt);
        if (mbedtls_x509_crt_parse(&k->crt, buf, blen) == 0) {
            k->kind = 2;
        } else {
            mbedtls_x509_crt_free(&k->crt);
            snprintf(err, errlen, "not a PEM or DER public key or certificate");
        }
    }
    free(buf);
    if (k->kind == 0)
        return -1;
    mbedtls_pk_type_t want = fam == TP_JWT_RSA ? MBEDTLS_PK_RSA : MBEDTLS_PK_ECKEY;
    const mbedtls_pk_context *pk = k->kind == 1 ? &k->pk : &k->crt.pk;
    if (!mbedtls_pk_can_do(pk, want)) {
        snprintf(err, errlen, "the key is not an %s key", fam == TP_JWT_RSA ? "RSA" : "EC");
        tp_jwt_key_free(k);
        return -1;
    }
    return 0;
}

void tp_jwt_key_free(tp_jwt_key_t *k)
{
    if (k->secret != NULL)
        mbedtls_platform_zeroize(k->secret, k->secret_len);
    free(k->secret);
    if (k->kind == 1)
        mbedtls_pk_free(&k->pk);
    else if (k->kind == 2)
        mbedtls_x509_crt_free(&k->crt);
    memset(k, 0, sizeof(*k));
}

/* A base64url member of <jwk> into <out> (room for <cap>): its length, or -1. */
static long jwk_bytes(const cJSON *jwk, const char *name, unsigned char *out, size_t cap)
{
    const cJSON *v = tp_json_get(jwk, name);
    if (!cJSON_IsString(v))
        return -1;
    size_t n = strlen(v->valuestring);
    while (n > 0 && v->valuestring[n - 1] == '=') /* some servers pad */
        n--;
    if (n * 3 / 4 + 1 > cap)
        return -1;
    return tp_b64url_decode(v->valuestring, n, out);
}

int tp_jwt_key_from_jwk(tp_jwt_key_t *k, tp_jwt_family_t fam, const cJSON *jwk, char *err,
                        size_t errlen)
{
    memset(k, 0, sizeof(*k));
    k->fam = fam;
    const cJSON *kty = tp_json_get(jwk, "kty");
    const char *t = cJSON_IsString(kty) ? kty->valuestring : "";
    static const char *const want[] = {"oct", "RSA", "EC"};
    if (strcmp(t, want[fam]) != 0) {
        snprintf(err, errlen, "a \"%s\" key, not %s", t, want[fam]);
        return -1;
    }
    unsigned char a[1024], b[1024], pt[2 * 66 + 1];
    long an, bn;
    if (fam == TP_JWT_HMAC) {
        if ((an = jwk_bytes(jwk, "k", a, sizeof(a))) < 0) {
            snprintf(err, errlen, "no \"k\"");
            return -1;
        }
        return tp_jwt_key_init(k, fam, a, (size_t)an, err, errlen);
    }
    int have = fam == TP_JWT_RSA ? (an = jwk_bytes(jwk, "n", a, sizeof(a))) > 0 &&
                                       (bn = jwk_bytes(jwk, "e", b, sizeof(b))) > 0
                                 : (an = jwk_bytes(jwk, "x", a, sizeof(a))) > 0 &&
                                       (bn = jwk_bytes(jwk, "y", b, sizeof(b))) > 0;
    if (!have) {
        /* no key numbers: the first certificate of x5c (standard base64 DER) */
        const cJSON *x5c = tp_json_get(jwk, "x5c");
        const cJSON *c0 = cJSON_IsArray(x5c) ? x5c->child : NULL;
        if (!cJSON_IsString(c0)) {
            snprintf(err, errlen, "neither key numbers nor x5c");
            return -1;
        }
        size_t n = strlen(c0->valuestring);
        unsigned char *der = tp_malloc(n / 4 * 3 + 3);
        ptrdiff_t dl = tp_b64_std_decode(c0->valuestring, n, der);
        int rc = dl < 0 ? (snprintf(err, errlen, "x5c[0] is not base64"), -1)
                        : tp_jwt_key_init(k, fam, der, (size_t)dl, err, errlen);
        free(der);
        return rc;
    }
    mbedtls_pk_init(&k->pk);
    k->kind = 1;
    int rc;
    if (fam == TP_JWT_RSA) {
        rc = mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
        if (rc == 0)
            rc = mbedtls_rsa_import_raw(mbedtls_pk_rsa(k->pk), a, (size_t)an, NULL, 0, NULL, 0,
                                        NULL, 0, b, (size_t)bn);
        if (rc == 0)
            rc = mbedtls_rsa_complete(mbedtls_pk_rsa(k->pk));
        if (rc == 0)
            rc = mbedtls_rsa_check_pubkey(mbedtls_pk_rsa(k->pk));
    } else {
        const cJSON *crv = tp_json_get(jwk, "crv");
        const char *c = cJSON_IsString(crv) ? crv->valuestring : "";
        mbedtls_ecp_group_id id = strcmp(c, "P-256") == 0   ? MBEDTLS_ECP_DP_SECP256R1
                                  : strcmp(c, "P-384") == 0 ? MBEDTLS_ECP_DP_SECP384R1
                                  : strcmp(c, "P-521") == 0 ? MBEDTLS_ECP_DP_SECP521R1
                                                            : MBEDTLS_ECP_DP_NONE;
        size_t size = id == MBEDTLS_ECP_DP_SECP256R1   ? 32
                      : id == MBEDTLS_ECP_DP_SECP384R1 ? 48
                                                       : 66;
        rc = id == MBEDTLS_ECP_DP_NONE || (size_t)an > size || (size_t)bn > size ? -1 : 0;
        if (rc == 0)
            rc = mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
        if (rc == 0) {
            mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->pk);
            memset(pt, 0, sizeof(pt));
            pt[0] = 0x04; /* uncompressed: X then Y, each left-padded */
            memcpy(pt + 1 + size - (size_t)an, a, (size_t)an);
            memcpy(pt + 1 + 2 * size - (size_t)bn, b, (size_t)bn);
            rc = mbedtls_ecp_group_load(&ec->grp, id);
            if (rc == 0)
                rc = mbedtls_ecp_point_read_binary(&ec->grp, &ec->Q, pt, 1 + 2 * size);
            if (rc == 0)
                rc = mbedtls_ecp_check_pubkey(&ec->grp, &ec->Q);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "not a valid %s public key", want[fam]);
        tp_jwt_key_free(k);
        return -1;
    }
    return 0;
}

/* ---- verification ---------------------------------------------------------------------- */

static int verify_ecdsa(const alg_t *a, mbedtls_pk_context *pk, const unsigned char *hash,
                        size_t hlen, const unsigned char *sig, size_t slen)
{
    if (slen != (size_t)a->key_size * 2)
        return 0;
    mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int ok = mbedtls_mpi_read_binary(&r, sig, (size_t)a->key_size) == 0 &&
             mbedtls_mpi_read_binary(&s, sig + a->key_size, (size_t)a->key_size) == 0 &&
             mbedtls_ecdsa_verify(&ec->grp, hash, hlen, &ec->Q, &r, &s) == 0;
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}

int tp_jwt_verify(const tp_jwt_t *j, const char *tok, const tp_jwt_key_t *k)
{
    const alg_t *a = alg_find(j->alg);
    if (a == NULL || a->fam != k->fam)
        return 0;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(a->md);
    unsigned char out[MBEDTLS_MD_MAX_SIZE];
    size_t olen = mbedtls_md_get_size(md);
    if (a->fam == TP_JWT_HMAC)
        return mbedtls_md_hmac(md, k->secret, k->secret_len, (const unsigned char *)tok,
                               j->signed_len, out) == 0 &&
               tp_ct_equal(j->sig, j->sig_len, out, olen);
    if (mbedtls_md(md, (const unsigned char *)tok, j->signed_len, out) != 0)
        return 0;
    /* the key is only read, though mbedTLS's prototypes do not say so */
    mbedtls_pk_context *pk = (mbedtls_pk_context *)(k->kind == 1 ? &k->pk : &k->crt.pk);
    if (a->fam == TP_JWT_ECDSA)
        return verify_ecdsa(a, pk, out, olen, j->sig, j->sig_len);
    if (mbedtls_rsa_get_len(mbedtls_pk_rsa(*pk)) != j->sig_len)
        return 0;
    if (!a->pss)
        return mbedtls_pk_verify(pk, a->md, out, olen, j->sig, j->sig_len) == 0;
    mbedtls_pk_rsassa_pss_options o = {a->md, MBEDTLS_RSA_SALT_LEN_ANY};
    return mbedtls_pk_verify_ext(MBEDTLS_PK_RSASSA_PSS, &o, pk, a->md, out, olen, j->sig,
                                 j->sig_len) == 0;
}

/* ---- time claims ----------------------------------------------------------------------- */

static void time_claim(const cJSON *claims, const char *name, int64_t *v, uint8_t *has)
{
    const cJSON *c = tp_json_get(claims, name);
    *v = 0;
    *has = 0;
    if (c == NULL || cJSON_IsNull(c))
        return;
    if (!cJSON_IsNumber(c)) {
        *has = 2;
        return;
    }
    double d = c->valuedouble;
    if (d == 0)
        return;
    *v = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    *has = 1;
}

void tp_jwt_times(const cJSON *claims, tp_jwt_times_t *t)
{
    time_claim(claims, "exp", &t->exp, &t->has_exp);
    time_claim(claims, "iat", &t->iat, &t->has_iat);
    time_claim(claims, "nbf", &t->nbf, &t->has_nbf);
}

const char *tp_jwt_times_check(const tp_jwt_times_t *t, int64_t now, int64_t exp_skew,
                               int64_t iat_skew, int64_t nbf_skew)
{
    const char *why = NULL;
    if (t->has_exp == 2 || (t->has_exp && !(now - exp_skew < t->exp)))
        why = "token has expired";
    if (t->has_iat == 2 || (t->has_iat && !(now + iat_skew >= t->iat)))
        why = "token used before issued";
    if (t->has_nbf == 2 || (t->has_nbf && !(now + nbf_skew >= t->nbf)))
        why = "token is not valid yet";
    return why;
}
