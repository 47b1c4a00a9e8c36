/*
 * common/tp_jwt.h: JSON Web Tokens as Tyk's JWT middleware reads them
 * (golang-jwt v4, TYK-COMPAT 17): splitting and decoding, the signing
 * method families, keys, signatures (mbedTLS), the time claims.
 *
 * Used by: the JWT stage (worker/tp_jwt.c) and the unit tests. Pure
 * functions on the caller's data; a key is read-only once made, so one
 * key may serve any number of verifications.
 */
#ifndef TP_JWT_H
#define TP_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

/* jwt_signing_method: which algorithms an API accepts. */
typedef enum {
    TP_JWT_HMAC,  /* HS256, HS384, HS512 */
    TP_JWT_RSA,   /* RS256..512 and PS256..512 */
    TP_JWT_ECDSA, /* ES256, ES384, ES512 */
} tp_jwt_family_t;

/* A token split and decoded (tp_jwt_parse). */
typedef struct tp_jwt_s {
    cJSON *header;      /* the JOSE header, an object */
    cJSON *claims;      /* the claims, an object */
    const char *alg;    /* header "alg", "" when absent or not a string */
    size_t signed_len;  /* bytes of "<header>.<claims>", what is signed */
    unsigned char *sig; /* the decoded signature */
    size_t sig_len;
} tp_jwt_t;

/* Splits <tok> (<n> bytes) into its three base64url segments and decodes
 * them: the header and claims must be JSON objects. Returns 0, or -1
 * (with <j> empty) for anything golang-jwt's Parse would refuse first. */
int tp_jwt_parse(tp_jwt_t *j, const char *tok, size_t n);
void tp_jwt_free(tp_jwt_t *j);

/* Tyk's assertSigningMethod: is <alg> one of <fam>'s algorithms? */
int tp_jwt_alg_in(const char *alg, tp_jwt_family_t fam);
/* Does golang-jwt know <alg> at all ("none" and EdDSA count as known:
 * they fail the family check, as in Tyk, not the lookup)? */
int tp_jwt_alg_known(const char *alg);
/* Tyk's message for an <alg> outside <fam>: "Unexpected signing method:
 * <alg> and not HMAC signature" and the like, into <out>. */
void tp_jwt_alg_error(const char *alg, tp_jwt_family_t fam, char *out, size_t cap);

/* A verification key: the HMAC secret's bytes, or a public key (PKIX or
 * PKCS#1, PEM or DER) or the key of an X.509 certificate, as Tyk's
 * parseJWTKey reads them. */
typedef struct tp_jwt_key_s {
    tp_jwt_family_t fam;
    unsigned char *secret; /* HMAC */
    size_t secret_len;
    int kind; /* 0 none, 1 pk, 2 certificate */
    mbedtls_pk_context pk;
    mbedtls_x509_crt crt;
} tp_jwt_key_t;

/* Makes <k> from <n> bytes of <data> for <fam>. Returns 0, or -1 with the
 * reason in <err> (<k> is then empty and safe to free). */
int tp_jwt_key_init(tp_jwt_key_t *k, tp_jwt_family_t fam, const void *data, size_t n, char *err,
                    size_t errlen);
void tp_jwt_key_free(tp_jwt_key_t *k);
/* <k> from one key of a JWKS (go-jose's JSONWebKey): RSA "n"/"e", EC
 * "crv"/"x"/"y", "oct" "k", else the certificate "x5c"[0]; its "kty" must
 * be <fam>'s. Returns 0, or -1 with the reason in <err>. */
int tp_jwt_key_from_jwk(tp_jwt_key_t *k, tp_jwt_family_t fam, const cJSON *jwk, char *err,
                        size_t errlen);

/* Does <j>'s signature over the first j->signed_len bytes of <tok> verify
 * with <k>? The algorithm is the token's (already checked against the
 * family); an HMAC is compared in constant time. */
int tp_jwt_verify(const tp_jwt_t *j, const char *tok, const tp_jwt_key_t *k);

/* The registered time claims, as golang-jwt's MapClaims reads them: whole
 * seconds; 0 counts as absent; present but not a number fails. */
typedef struct tp_jwt_times_s {
    int64_t exp, iat, nbf;
    uint8_t has_exp, has_iat, has_nbf; /* 1 present, 2 present and not a number */
} tp_jwt_times_t;

void tp_jwt_times(const cJSON *claims, tp_jwt_times_t *t);
/* Tyk's timeValidateJWTClaims at <now> with the skews in seconds: NULL
 * when valid, else the reason ("token has expired", "token used before
 * issued", "token is not valid yet"; the last failing one). */
const char *tp_jwt_times_check(const tp_jwt_times_t *t, int64_t now, int64_t exp_skew,
                               int64_t iat_skew, int64_t nbf_skew);

/* Go's base64.RawURLEncoding.DecodeString of <n> bytes of <s> into <dst>
 * (room for n * 3 / 4 + 1 bytes). Returns the length, or -1. */
long tp_b64url_decode(const char *s, size_t n, unsigned char *dst);

#endif
