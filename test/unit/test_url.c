/* test/unit/test_url.c: target URLs, path decoding, cleaning and joining. */
#include <stdlib.h>

#include "tp_test.h"
#include "tp_url.h"

TP_TEST(parse_http_with_path_and_query)
{
    tp_url_t u;
    char err[128];
    CHECK_INT(
        tp_url_parse("http://backend.default.svc.cluster.local:8080/v1/?a=b", &u, err, sizeof(err)),
        0);
    CHECK_STR(u.scheme, "http");
    CHECK_STR(u.host, "backend.default.svc.cluster.local");
    CHECK_STR(u.authority, "backend.default.svc.cluster.local:8080");
    CHECK_INT(u.port, 8080);
    CHECK_STR(u.path, "/v1/");
    CHECK_STR(u.query, "a=b");
    tp_url_free(&u);
}

TP_TEST(parse_defaults_and_ipv6)
{
    tp_url_t u;
    char err[128];
    CHECK_INT(tp_url_parse("http://[::1]", &u, err, sizeof(err)), 0);
    CHECK_STR(u.host, "::1");
    CHECK_STR(u.authority, "[::1]");
    CHECK_INT(u.port, 80);
    CHECK_STR(u.path, "");
    CHECK(u.query == NULL);
    tp_url_free(&u);
    CHECK_INT(tp_url_parse("HTTPS://example.com", &u, err, sizeof(err)), 0);
    CHECK_INT(u.port, 443);
    CHECK_INT(u.tls, 1);
    tp_url_free(&u);
}

TP_TEST(parse_rejects_bad_urls)
{
    tp_url_t u;
    char err[128];
    CHECK_INT(tp_url_parse("backend:8080/x", &u, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "not an absolute URL");
    CHECK_INT(tp_url_parse("ftp://x/", &u, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "unsupported scheme");
    CHECK_INT(tp_url_parse("http://x:99999/", &u, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "invalid port");
    CHECK_INT(tp_url_parse("http://", &u, err, sizeof(err)), -1);
    CHECK_CONTAINS(err, "missing host");
    CHECK_INT(tp_url_parse("http://a b/", &u, err, sizeof(err)), -1);
}

TP_TEST(decode)
{
    char out[32];
    CHECK_INT(tp_url_decode("/a%2Fb%41", 9, out), 5);
    CHECK(memcmp(out, "/a/bA", 5) == 0);
    CHECK_INT(tp_url_decode("/a%2", 4, out), -1);
    CHECK_INT(tp_url_decode("/a%zz", 5, out), -1);
}

static const char *clean(const char *in)
{
    static char out[256];
    tp_url_clean_path(in, strlen(in), out);
    return out;
}

TP_TEST(clean_like_gorilla)
{
    CHECK_STR(clean("/"), "/");
    CHECK_STR(clean(""), "/");
    CHECK_STR(clean("/a/b"), "/a/b");
    CHECK_STR(clean("/a/b/"), "/a/b/");
    CHECK_STR(clean("//a//b"), "/a/b");
    CHECK_STR(clean("/a/./b"), "/a/b");
    CHECK_STR(clean("/a/../b"), "/b");
    CHECK_STR(clean("/../../etc/passwd"), "/etc/passwd");
    CHECK_STR(clean("/a/b/.."), "/a");
    CHECK_STR(clean("/a/b/../"), "/a/");
    CHECK_STR(clean("/a/.hidden/x"), "/a/.hidden/x");
}

static const char *join(const char *target, const char *req, int disable_strip_slash)
{
    static tp_buf_t b;
    static char out[256];
    b.len = 0;
    tp_url_join_path(&b, (tp_str_t){target, strlen(target)}, (tp_str_t){req, strlen(req)},
                     disable_strip_slash);
    memcpy(out, b.data ? b.data : "", b.len);
    out[b.len] = '\0';
    tp_buf_free(&b);
    return out;
}

/* The worked examples of Tyk's singleJoiningSlash. */
TP_TEST(join_like_tyk)
{
    CHECK_STR(join("/api/", "/users", 0), "/api/users");
    CHECK_STR(join("/api//", "//users", 0), "/api/users");
    CHECK_STR(join("/api/", "/", 0), "/api");
    CHECK_STR(join("/api/", "/", 1), "/api/");
    CHECK_STR(join("/api", "", 0), "/api");
    CHECK_STR(join("", "/x", 0), "/x");
    CHECK_STR(join("/", "/", 0), "");
    CHECK_STR(join("", "/", 1), "");
    CHECK_STR(join("/api", "/a/b/", 1), "/api/a/b/");
}

void test_url_suite(void)
{
    TP_RUN(parse_http_with_path_and_query);
    TP_RUN(parse_defaults_and_ipv6);
    TP_RUN(parse_rejects_bad_urls);
    TP_RUN(decode);
    TP_RUN(clean_like_gorilla);
    TP_RUN(join_like_tyk);
}
