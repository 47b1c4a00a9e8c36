/* test/unit/test_route.c: which API serves a request (host and path). */
#include <stdlib.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_route.h"
#include "tp_test.h"

typedef struct fixture_s {
    tp_apis_t apis;
    tp_router_t r;
    tp_conf_t conf; /* fields set by hand; strings are literals, never freed */
    int built;
} fixture_t;

/* A test body gets a zeroed fixture; the wrapper frees it either way. */
#define ROUTE_TEST(name)                                                                           \
    static void name##_body(fixture_t *fx);                                                        \
    TP_TEST(name)                                                                                  \
    {                                                                                              \
        fixture_t fx;                                                                              \
        memset(&fx, 0, sizeof(fx));                                                                \
        name##_body(&fx);                                                                          \
        if (fx.built)                                                                              \
            tp_router_free(&fx.r);                                                                 \
        tp_apis_free(&fx.apis);                                                                    \
    }                                                                                              \
    static void name##_body(fixture_t *fx)

/* Adds an API with <api_id>, <listen_path> and optional <domain>, in load order. */
static int add_api(fixture_t *fx, const char *api_id, const char *listen_path, const char *domain)
{
    char json[512], err[512];
    snprintf(json, sizeof(json),
             "{\"api_id\": \"%s\", \"use_keyless\": true, %s%s%s \"proxy\": {\"listen_path\": "
             "\"%s\", \"target_url\": \"http://127.0.0.1:9000/\"}}",
             api_id, domain ? "\"domain\": \"" : "", domain ? domain : "", domain ? "\"," : "",
             listen_path);
    cJSON *def = tp_json_parse(json, strlen(json), err, sizeof(err));
    if (def == NULL) {
        tp_test_fail(__FILE__, __LINE__, "bad test JSON: %s", err);
        return -1;
    }
    tp_api_t *api = NULL;
    int rc = tp_api_parse("test.json", def, &api, err, sizeof(err));
    cJSON_Delete(def);
    if (rc < 0) {
        tp_test_fail(__FILE__, __LINE__, "API %s rejected: %s", api_id, err);
        return -1;
    }
    fx->apis.v = tp_realloc(fx->apis.v, (fx->apis.n + 1) * sizeof(*fx->apis.v));
    fx->apis.v[fx->apis.n++] = api;
    return 0;
}

#define ADD(fx, id, lp, dom)                                                                       \
    do {                                                                                           \
        if (add_api((fx), (id), (lp), (dom)) < 0)                                                  \
            return;                                                                                \
    } while (0)

static void build(fixture_t *fx)
{
    tp_router_build(&fx->r, &fx->apis, &fx->conf);
    fx->built = 1;
}

/* The api_id serving <host> <path>, "(none)" on no match; with the matched length. */
static const char *who(const fixture_t *fx, const char *host, const char *path, size_t *matched)
{
    size_t m = (size_t)-1;
    const tp_route_t *rt =
        tp_router_match(&fx->r, (tp_str_t){host, strlen(host)}, (tp_str_t){path, strlen(path)}, &m);
    if (matched != NULL)
        *matched = m;
    return rt ? rt->api->api_id : "(none)";
}

#define WHO(host, path) who(fx, (host), (path), NULL)

ROUTE_TEST(longest_listen_path_wins_in_any_order)
{
    ADD(fx, "short", "/a/", NULL);
    ADD(fx, "long", "/a/b/", NULL);
    ADD(fx, "root", "/", NULL);
    ADD(fx, "longer", "/a/b/c/", NULL);
    build(fx);
    size_t m;
    CHECK_STR(who(fx, "gw", "/a/b/c/d", &m), "longer");
    CHECK_INT(m, 7);
    CHECK_STR(who(fx, "gw", "/a/b/x", &m), "long");
    CHECK_INT(m, 5);
    CHECK_STR(WHO("gw", "/a/x"), "short");
    CHECK_STR(WHO("gw", "/a/"), "short");
    CHECK_STR(WHO("gw", "/elsewhere"), "root");
    CHECK_STR(WHO("gw", "/a"), "root");
}

ROUTE_TEST(longest_listen_path_wins_reverse_order)
{
    ADD(fx, "longer", "/a/b/c/", NULL);
    ADD(fx, "long", "/a/b/", NULL);
    ADD(fx, "short", "/a/", NULL);
    build(fx);
    CHECK_STR(WHO("gw", "/a/b/c/d"), "longer");
    CHECK_STR(WHO("gw", "/a/b/x"), "long");
    CHECK_STR(WHO("gw", "/a/x"), "short");
}

ROUTE_TEST(api_id_route)
{
    ADD(fx, "example-api-id", "/example/", NULL);
    ADD(fx, "other", "/other/", NULL);
    build(fx);
    size_t m;
    const tp_route_t *rt =
        tp_router_match(&fx->r, TP_STR("gw"), TP_STR("/example-api-id/users/1"), &m);
    CHECK(rt != NULL);
    CHECK_STR(rt->api->api_id, "example-api-id");
    CHECK_INT(rt->by_api_id, 1);
    CHECK_INT(m, strlen("/example-api-id/"));
    rt = tp_router_match(&fx->r, TP_STR("gw"), TP_STR("/example/users/1"), &m);
    CHECK(rt != NULL);
    CHECK_INT(rt->by_api_id, 0);
    CHECK_INT(m, strlen("/example/"));
    CHECK_STR(WHO("gw", "/other/"), "other");
    /* the api_id route is "/<api_id>/": the bare id does not match */
    CHECK_STR(WHO("gw", "/example-api-id"), "(none)");
}

ROUTE_TEST(no_match_returns_null)
{
    ADD(fx, "a", "/a/", NULL);
    build(fx);
    size_t m = 12345;
    CHECK(tp_router_match(&fx->r, TP_STR("gw"), TP_STR("/b/"), &m) == NULL);
    CHECK(tp_router_match(&fx->r, TP_STR("gw"), TP_STR(""), &m) == NULL);
    CHECK(tp_router_match(&fx->r, TP_STR("gw"), TP_STR("/A/"), &m) == NULL);
}

ROUTE_TEST(empty_table)
{
    build(fx);
    size_t m;
    CHECK_INT(fx->r.n, 0);
    CHECK(tp_router_match(&fx->r, TP_STR("gw"), TP_STR("/"), &m) == NULL);
}

ROUTE_TEST(prefix_semantics)
{
    ADD(fx, "foo", "/foo", NULL);
    ADD(fx, "bar", "/bar/", NULL);
    build(fx);
    size_t m;
    CHECK_STR(who(fx, "gw", "/foobar", &m), "foo");
    CHECK_INT(m, 4);
    CHECK_STR(WHO("gw", "/foo"), "foo");
    CHECK_STR(WHO("gw", "/foo/x"), "foo");
    CHECK_STR(WHO("gw", "/bar/"), "bar");
    CHECK_STR(WHO("gw", "/bar/x"), "bar");
    CHECK_STR(WHO("gw", "/bar"), "(none)");
    CHECK_STR(WHO("gw", "/barn"), "(none)");
}

ROUTE_TEST(strict_routes)
{
    ADD(fx, "foo", "/foo", NULL);
    ADD(fx, "bar", "/bar/", NULL);
    fx->conf.http_server_options.enable_strict_routes = 1;
    build(fx);
    size_t m;
    CHECK_STR(WHO("gw", "/foobar"), "(none)");
    CHECK_STR(who(fx, "gw", "/foo", &m), "foo");
    CHECK_INT(m, 4);
    CHECK_STR(WHO("gw", "/foo/"), "foo");
    CHECK_STR(WHO("gw", "/foo/x"), "foo");
    CHECK_STR(WHO("gw", "/bar/x"), "bar");
    CHECK_STR(WHO("gw", "/bar"), "(none)");
}

/* enable_strict_routes read from a tyk.conf through the loader. */
TP_TEST(strict_routes_from_loaded_conf)
{
    tp_conf_t conf;
    tp_apis_t apis = {0};
    tp_router_t r;
    char err[1024];
    memset(&r, 0, sizeof(r));
    int rc = tp_conf_load("data/conf-case.conf", &conf, err, sizeof(err));
    int strict = conf.http_server_options.enable_strict_routes;
    if (rc == 0)
        tp_router_build(&r, &apis, &conf);
    tp_conf_free(&conf);
    int r_strict = r.strict;
    tp_router_free(&r);
    CHECK_INT(rc, 0);
    CHECK_INT(strict, 1);
    CHECK_INT(r_strict, 1);
}

TP_TEST(prefix_match_function)
{
    CHECK_INT(tp_route_prefix_match("/foo", 4, TP_STR("/foobar"), 0, 0), 4);
    CHECK_INT(tp_route_prefix_match("/foo", 4, TP_STR("/foobar"), 0, 1), -1);
    CHECK_INT(tp_route_prefix_match("/foo", 4, TP_STR("/foo"), 0, 1), 4);
    CHECK_INT(tp_route_prefix_match("/foo", 4, TP_STR("/foo/bar"), 0, 1), 4);
    CHECK_INT(tp_route_prefix_match("/foo/", 5, TP_STR("/foo"), 0, 0), -1);
    CHECK_INT(tp_route_prefix_match("/foo/", 5, TP_STR("/foo/x"), 0, 1), 5);
    CHECK_INT(tp_route_prefix_match("/", 1, TP_STR("/anything"), 0, 1), 1);
    CHECK_INT(tp_route_prefix_match("/fo", 3, TP_STR("/f"), 0, 0), -1);
    /* templates: a {name} segment matches one non-empty path segment */
    CHECK_INT(tp_route_prefix_match("/{org}/api/", 11, TP_STR("/acme/api/x"), 1, 0), 10);
    CHECK_INT(tp_route_prefix_match("/{org}/api/", 11, TP_STR("//api/x"), 1, 0), -1);
    CHECK_INT(tp_route_prefix_match("/{org}/api/", 11, TP_STR("/acme/x/api/"), 1, 0), -1);
    CHECK_INT(tp_route_prefix_match("/{org}/api/", 11, TP_STR("/acme/api"), 1, 0), -1);
    CHECK_INT(tp_route_prefix_match("/v/{id}", 7, TP_STR("/v/42/x"), 1, 0), 5);
    CHECK_INT(tp_route_prefix_match("/v/{id}", 7, TP_STR("/v/42"), 1, 1), 5);
    CHECK_INT(tp_route_prefix_match("/{a}/{b}/", 9, TP_STR("/x/y/z"), 1, 0), 5);
    CHECK_INT(tp_route_prefix_match("/{a}/{b}/", 9, TP_STR("/x/y"), 1, 0), -1);
}

ROUTE_TEST(templated_listen_path)
{
    ADD(fx, "tmpl", "/{org}/api/", NULL);
    ADD(fx, "plain", "/static/", NULL);
    build(fx);
    size_t m;
    CHECK_STR(who(fx, "gw", "/acme/api/x", &m), "tmpl");
    CHECK_INT(m, 10);
    CHECK_STR(WHO("gw", "/other-org/api/"), "tmpl");
    CHECK_STR(WHO("gw", "/acme/web/x"), "(none)");
    /* "/static/" (8) outranks "/{org}/api/" (6) */
    CHECK_STR(WHO("gw", "/static/api/x"), "plain");
    CHECK_STR(WHO("gw", "/static/x"), "plain");
}

/* "/{org}/api/" ranks like "//api/" (6): shorter than "/acme/api" (9) and
 * "/acme/a" (7), longer than "/acme" (5). */
ROUTE_TEST(templated_sorts_by_its_slashes)
{
    ADD(fx, "tmpl", "/{org}/api/", NULL);
    ADD(fx, "acme5", "/acme", NULL);
    ADD(fx, "acme9", "/acme/api", NULL);
    build(fx);
    CHECK_STR(WHO("gw", "/acme/api/x"), "acme9");
    CHECK_STR(WHO("gw", "/beta/api/x"), "tmpl");
    tp_router_free(&fx->r);
    fx->built = 0;
    tp_apis_free(&fx->apis);
    ADD(fx, "acme5", "/acme", NULL);
    ADD(fx, "tmpl", "/{org}/api/", NULL);
    ADD(fx, "acme7", "/acme/a", NULL);
    build(fx);
    CHECK_STR(WHO("gw", "/acme/api/x"), "acme7");
    CHECK_STR(WHO("gw", "/acmeX/api/x"), "tmpl");
    CHECK_STR(WHO("gw", "/acme/b"), "acme5");
}

ROUTE_TEST(custom_domains)
{
    ADD(fx, "plain", "/", NULL);
    ADD(fx, "dom", "/", "api.example.com");
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(WHO("api.example.com", "/x"), "dom");
    CHECK_STR(WHO("api.example.com:8080", "/x"), "dom");
    CHECK_STR(WHO("API.Example.COM", "/x"), "dom");
    CHECK_STR(WHO("API.EXAMPLE.COM:443", "/x"), "dom");
    CHECK_STR(WHO("other.example.com", "/x"), "plain");
    CHECK_STR(WHO("api.example.com.evil", "/x"), "plain");
    CHECK_STR(WHO("xapi.example.com", "/x"), "plain");
    CHECK_STR(WHO("api.example.co", "/x"), "plain");
    CHECK_STR(WHO("", "/x"), "plain");
}

/* Same listen path on two domains is no collision. */
ROUTE_TEST(same_listen_path_on_two_domains)
{
    ADD(fx, "one", "/api/", "one.example.com");
    ADD(fx, "two", "/api/", "two.example.com");
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(fx->apis.v[1]->listen_path, "/api/");
    CHECK_STR(WHO("one.example.com", "/api/x"), "one");
    CHECK_STR(WHO("two.example.com", "/api/x"), "two");
    CHECK_STR(WHO("three.example.com", "/api/x"), "(none)");
}

ROUTE_TEST(custom_domains_disabled_ignores_domain)
{
    ADD(fx, "dom", "/d/", "api.example.com");
    build(fx);
    CHECK_STR(WHO("anything.test", "/d/x"), "dom");
}

ROUTE_TEST(domain_template)
{
    ADD(fx, "wild", "/", "{sub}.example.com");
    ADD(fx, "plain", "/", NULL);
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(WHO("acme.example.com", "/"), "wild");
    CHECK_STR(WHO("acme.example.com:8080", "/"), "wild");
    CHECK_STR(WHO("ACME.Example.Com", "/"), "wild");
    CHECK_STR(WHO("example.com", "/"), "plain");
    CHECK_STR(WHO(".example.com", "/"), "plain");
    CHECK_STR(WHO("a.b.example.com", "/"), "plain");
    CHECK_STR(WHO("acme.example.org", "/"), "plain");
}

ROUTE_TEST(domain_apis_win_over_longer_paths)
{
    ADD(fx, "long", "/long/path/", NULL);
    ADD(fx, "dom", "/", "api.example.com");
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(WHO("api.example.com", "/long/path/x"), "dom");
    CHECK_STR(WHO("other.com", "/long/path/x"), "long");
    CHECK_STR(WHO("other.com", "/"), "(none)");
}

ROUTE_TEST(global_hostname_binds_all_apis)
{
    ADD(fx, "a", "/a/", NULL);
    ADD(fx, "b", "/b/", NULL);
    fx->conf.hostname = "gw.example.com";
    build(fx);
    CHECK_STR(WHO("gw.example.com", "/a/x"), "a");
    CHECK_STR(WHO("GW.example.com:8080", "/b/x"), "b");
    CHECK_STR(WHO("other.example.com", "/a/x"), "(none)");
    CHECK_STR(WHO("127.0.0.1:8080", "/b/x"), "(none)");
    CHECK_STR(WHO("other.example.com", "/a/"), "(none)");
}

ROUTE_TEST(api_domain_replaces_global_hostname)
{
    ADD(fx, "plain", "/p/", NULL);
    ADD(fx, "dom", "/d/", "api.example.com");
    fx->conf.hostname = "gw.example.com";
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(WHO("api.example.com", "/d/x"), "dom");
    CHECK_STR(WHO("gw.example.com", "/d/x"), "(none)");
    CHECK_STR(WHO("gw.example.com", "/p/x"), "plain");
    CHECK_STR(WHO("api.example.com", "/p/x"), "(none)");
}

/* Tyk (sortSpecsByListenPath, custom domains on) puts APIs with their own
 * domain first even when "hostname" binds the others: a domain API with
 * listen path "/" on the same host shadows the others. */
ROUTE_TEST(domain_apis_first_with_global_hostname_like_tyk)
{
    ADD(fx, "long", "/long/", NULL);
    ADD(fx, "dom", "/", "gw.example.com");
    fx->conf.hostname = "gw.example.com";
    fx->conf.enable_custom_domains = 1;
    build(fx);
    CHECK_STR(WHO("gw.example.com", "/long/x"), "dom");
}

ROUTE_TEST(listen_path_collision_renamed)
{
    ADD(fx, "first", "/same/", NULL);
    ADD(fx, "second", "/same/", NULL);
    ADD(fx, "third", "/same/", NULL);
    build(fx);
    CHECK_STR(fx->apis.v[0]->listen_path, "/same/");
    CHECK_STR(fx->apis.v[1]->listen_path, "/same/-second");
    CHECK_STR(fx->apis.v[2]->listen_path, "/same/-third");
    CHECK_STR(WHO("gw", "/same/x"), "first");
    CHECK_STR(WHO("gw", "/same/-second/x"), "second");
    CHECK_STR(WHO("gw", "/same/-third"), "third");
    CHECK_STR(WHO("gw", "/second/x"), "second");
}

/* A renamed path that collides again is renamed again: paths stay distinct. */
ROUTE_TEST(listen_path_collision_cascade)
{
    ADD(fx, "a", "/p/", NULL);
    ADD(fx, "b", "/p/-c", NULL);
    ADD(fx, "c", "/p/", NULL);
    build(fx);
    CHECK_STR(fx->apis.v[0]->listen_path, "/p/");
    CHECK_STR(fx->apis.v[1]->listen_path, "/p/-c");
    CHECK(strncmp(fx->apis.v[2]->listen_path, "/p/-c", 5) == 0);
    CHECK(strcmp(fx->apis.v[2]->listen_path, "/p/-c") != 0);
    CHECK_STR(WHO("gw", "/p/x"), "a");
    CHECK_STR(WHO("gw", "/p/-c/x"), "b");
    CHECK_STR(WHO("gw", "/c/x"), "c");
}

ROUTE_TEST(routes_table_shape)
{
    ADD(fx, "a", "/a/", NULL);
    ADD(fx, "bb", "/bb/", NULL);
    build(fx);
    CHECK_INT(fx->r.n, 4);
    /* longest listen path first: bb's routes, then a's; each API's listen
     * path before its "/<api_id>/" route, so that when the two are the same
     * the listen path's rules (strip_listen_path) apply */
    CHECK_STR(fx->r.v[0].prefix, "/bb/");
    CHECK_INT(fx->r.v[0].by_api_id, 0);
    CHECK_STR(fx->r.v[1].prefix, "/bb/");
    CHECK_INT(fx->r.v[1].by_api_id, 1);
    CHECK_STR(fx->r.v[2].prefix, "/a/");
    CHECK_INT(fx->r.v[2].len, 3);
    CHECK(fx->r.v[2].domain == NULL);
}

void test_route_suite(void)
{
    TP_RUN(longest_listen_path_wins_in_any_order);
    TP_RUN(longest_listen_path_wins_reverse_order);
    TP_RUN(api_id_route);
    TP_RUN(no_match_returns_null);
    TP_RUN(empty_table);
    TP_RUN(prefix_semantics);
    TP_RUN(strict_routes);
    TP_RUN(strict_routes_from_loaded_conf);
    TP_RUN(prefix_match_function);
    TP_RUN(templated_listen_path);
    TP_RUN(templated_sorts_by_its_slashes);
    TP_RUN(custom_domains);
    TP_RUN(same_listen_path_on_two_domains);
    TP_RUN(custom_domains_disabled_ignores_domain);
    TP_RUN(domain_template);
    TP_RUN(domain_apis_win_over_longer_paths);
    TP_RUN(global_hostname_binds_all_apis);
    TP_RUN(api_domain_replaces_global_hostname);
    TP_RUN(domain_apis_first_with_global_hostname_like_tyk);
    TP_RUN(listen_path_collision_renamed);
    TP_RUN(listen_path_collision_cascade);
    TP_RUN(routes_table_shape);
}
