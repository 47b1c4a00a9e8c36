/*
 * test/unit/test_jwt.c: common/tp_jwt.c: base64url, splitting, the
 * algorithm families, HMAC verification, the time claims.
 * (RSA, PSS and ECDSA are verified against openssl-made tokens in
 * test/integration/test_jwt.py.)
 */
#include <string.h>

#include <mbedtls/md.h>

#include "tp_jwt.h"
#include "tp_test.h"

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

/* An HS256 token of <header> and <claims> signed with <secret>. */
static void hs256(const char *header, const char *claims, const char *secret, char *out)
{
    char h[512], c[512];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    size_t n = (size_t)sprintf(out, "%s.%s", h, c);
    unsigned char mac[32];
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)secret,
                    strlen(secret), (const unsigned char *)out, n, mac);
    out[n++] = '.';
    b64url(mac, sizeof(mac), out + n);
}

TP_TEST(jwt_base64url_is_strict)
{
    unsigned char d[16];
    CHECK_INT(tp_b64url_decode("aGk", 3, d), 2);
    CHECK(memcmp(d, "hi", 2) == 0);
    CHECK_INT(tp_b64url_decode("-_8", 3, d), 2);
    CHECK_INT(d[0], 0xfb);
    CHECK_INT(tp_b64url_decode("aGk=", 4, d), -1); /* no padding in JWTs */
    CHECK_INT(tp_b64url_decode("a+k", 3, d), -1);  /* not the URL alphabet */
    CHECK_INT(tp_b64url_decode("a", 1, d), -1);    /* no whole byte */
    CHECK_INT(tp_b64url_decode("", 0, d), 0);
}

TP_TEST(jwt_parse_splits_and_verifies_hmac)
{
    char tok[2048];
    hs256("{\"alg\":\"HS256\"}", "{\"sub\":\"me\",\"exp\":100}", "k3y", tok);
    tp_jwt_t j;
    CHECK_INT(tp_jwt_parse(&j, tok, strlen(tok)), 0);
    CHECK_STR(j.alg, "HS256");
    CHECK(tp_jwt_alg_in(j.alg, TP_JWT_HMAC));
    CHECK(!tp_jwt_alg_in(j.alg, TP_JWT_RSA));
    tp_jwt_key_t k;
    char err[128];
    CHECK_INT(tp_jwt_key_init(&k, TP_JWT_HMAC, "k3y", 3, err, sizeof(err)), 0);
    CHECK(tp_jwt_verify(&j, tok, &k));
    tp_jwt_key_free(&k);
    CHECK_INT(tp_jwt_key_init(&k, TP_JWT_HMAC, "k3Y", 3, err, sizeof(err)), 0);
    CHECK(!tp_jwt_verify(&j, tok, &k));
    tp_jwt_key_free(&k);
    tp_jwt_times_t t;
    tp_jwt_times(j.claims, &t);
    CHECK_INT(t.has_exp, 1);
    CHECK_INT(t.exp, 100);
    CHECK(tp_jwt_times_check(&t, 99, 0, 0, 0) == NULL);
    CHECK_STR(tp_jwt_times_check(&t, 100, 0, 0, 0), "token has expired");
    CHECK(tp_jwt_times_check(&t, 100, 1, 0, 0) == NULL);
    tp_jwt_free(&j);
    /* not three segments, not JSON objects, a bad signature segment */
    CHECK_INT(tp_jwt_parse(&j, "a.b", 3), -1);
    CHECK_INT(tp_jwt_parse(&j, "a.b.c.d", 7), -1);
    hs256("[1]", "{}", "k", tok);
    CHECK_INT(tp_jwt_parse(&j, tok, strlen(tok)), -1);
    hs256("{\"alg\":\"HS256\"}", "{}", "k", tok);
    strcat(tok, "=");
    CHECK_INT(tp_jwt_parse(&j, tok, strlen(tok)), -1);
}

TP_TEST(jwt_algorithms_and_families)
{
    CHECK(tp_jwt_alg_in("PS256", TP_JWT_RSA));
    CHECK(tp_jwt_alg_in("ES512", TP_JWT_ECDSA));
    CHECK(!tp_jwt_alg_in("none", TP_JWT_HMAC));
    CHECK(tp_jwt_alg_known("none"));
    CHECK(!tp_jwt_alg_known("XS256"));
    char msg[128];
    tp_jwt_alg_error("none", TP_JWT_HMAC, msg, sizeof(msg));
    CHECK_STR(msg, "Unexpected signing method: none and not HMAC signature");
    tp_jwt_key_t k;
    char err[128];
    CHECK_INT(tp_jwt_key_init(&k, TP_JWT_RSA, "no key", 6, err, sizeof(err)), -1);
    CHECK_STR(err, "not a PEM or DER public key or certificate");
    tp_jwt_key_free(&k);
}

TP_TEST(jwt_time_claims_as_golang_jwt)
{
    tp_jwt_times_t t = {.iat = 50, .has_iat = 1, .nbf = 60, .has_nbf = 1};
    CHECK(tp_jwt_times_check(&t, 60, 0, 0, 0) == NULL);
    CHECK_STR(tp_jwt_times_check(&t, 59, 0, 0, 0), "token is not valid yet");
    CHECK(tp_jwt_times_check(&t, 59, 0, 0, 1) == NULL);
    CHECK_STR(tp_jwt_times_check(&t, 49, 0, 0, 0), "token is not valid yet"); /* the last */
    tp_jwt_times_t bad = {.has_iat = 2};
    CHECK_STR(tp_jwt_times_check(&bad, 0, 0, 0, 0), "token used before issued");
}

void test_jwt_suite(void)
{
    TP_RUN(jwt_base64url_is_strict);
    TP_RUN(jwt_parse_splits_and_verifies_hmac);
    TP_RUN(jwt_algorithms_and_families);
    TP_RUN(jwt_time_claims_as_golang_jwt);
}
