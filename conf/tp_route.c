/* worker/tp_route.c: the route table and its matcher. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_route.h"
#include "tp_strmap.h"

/* Tyk sorts by listen path length with template segments counting only
 * their slashes, so "/{org}/api/" ranks like "//api/". */
static size_t sort_len(const char *p)
{
    size_t n = 0;
    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close != NULL) {
                p = close + 1;
                continue;
            }
        }
        n++;
        p++;
    }
    return n;
}

typedef struct order_s {
    tp_api_t *api;
    int own_domain; /* custom domains on and the API names one */
    size_t len;
    size_t idx;
} order_t;

static int order_cmp(const void *a, const void *b)
{
    const order_t *x = a, *y = b;
    if (x->own_domain != y->own_domain)
        return x->own_domain ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static const char *api_domain(const tp_api_t *api, const tp_conf_t *conf)
{
    if (conf->enable_custom_domains && api->domain != NULL && api->domain[0] != '\0')
        return api->domain;
    if (conf->hostname != NULL && conf->hostname[0] != '\0')
        return conf->hostname;
    return NULL;
}

void tp_router_build(tp_router_t *r, tp_apis_t *apis, const tp_conf_t *conf)
{
    memset(r, 0, sizeof(*r));
    r->strict = conf->http_server_options.enable_strict_routes;

    /* Resolve listen-path collisions in load order, as Tyk does: a path
     * already taken on the same domain gets "-<api_id>" appended (and is
     * checked again). Keyed by "<domain>\n<listen path>". */
    tp_strmap_t taken = {0};
    tp_buf_t key = {0};
    for (size_t i = 0; i < apis->n; i++) {
        tp_api_t *api = apis->v[i];
        const char *dom = api_domain(api, conf);
        for (;;) {
            key.len = 0;
            for (const char *d = dom ? dom : ""; *d; d++)
                tp_buf_putc(&key, (char)tolower((unsigned char)*d));
            tp_buf_printf(&key, "\n%s", api->listen_path);
            int added;
            uint32_t prev = *tp_strmap_put(&taken, tp_buf_cstr(&key), (uint32_t)i, &added);
            if (added)
                break;
            size_t n = strlen(api->listen_path) + strlen(api->api_id) + 2;
            char *lp = tp_malloc(n);
            snprintf(lp, n, "%s-%s", api->listen_path, api->api_id);
            tp_log_warn("API \"%s\" (%s): listen path %s is already used by API \"%s\"; "
                        "serving it at %s",
                        api->api_id, api->file, api->listen_path, apis->v[prev]->api_id, lp);
            free(api->listen_path);
            api->listen_path = lp;
        }
    }
    tp_buf_free(&key);
    tp_strmap_free(&taken);

    order_t *ord = tp_calloc(apis->n, sizeof(*ord));
    for (size_t i = 0; i < apis->n; i++) {
        ord[i].api = apis->v[i];
        ord[i].own_domain = conf->enable_custom_domains && apis->v[i]->domain != NULL &&
                            apis->v[i]->domain[0] != '\0';
        ord[i].len = sort_len(apis->v[i]->listen_path);
        ord[i].idx = i;
    }
    if (apis->n > 1)
        qsort(ord, apis->n, sizeof(*ord), order_cmp);

    /* The listen path first: when it is also "/<api_id>/", the request
     * follows the listen path's rules (strip_listen_path). */
    r->v = tp_calloc(apis->n * 2, sizeof(*r->v));
    for (size_t i = 0; i < apis->n; i++) {
        tp_api_t *api = ord[i].api;
        tp_route_t *lp = &r->v[r->n++];
        lp->prefix = tp_strdup(api->listen_path);
        lp->len = strlen(lp->prefix);
        lp->domain = api_domain(api, conf);
        lp->api = api;
        lp->templated = strchr(lp->prefix, '{') != NULL;

        size_t idlen = strlen(api->api_id);
        tp_route_t *id = &r->v[r->n++];
        id->prefix = tp_malloc(idlen + 3);
        snprintf(id->prefix, idlen + 3, "/%s/", api->api_id);
        id->len = idlen + 2;
        id->domain = lp->domain;
        id->api = api;
        id->by_api_id = 1;
        id->templated = strchr(id->prefix, '{') != NULL;
    }
    free(ord);
}

void tp_router_free(tp_router_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].prefix);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

long tp_route_prefix_match(const char *prefix, size_t plen, tp_str_t path, int templated,
                           int strict)
{
    size_t i = 0, j = 0;
    if (!templated) {
        if (path.n < plen || memcmp(path.p, prefix, plen) != 0)
            return -1;
        j = plen;
    } else {
        while (i < plen) {
            if (prefix[i] == '{') {
                const char *close = memchr(prefix + i, '}', plen - i);
                if (close == NULL)
                    return -1;
                i = (size_t)(close - prefix) + 1;
                size_t start = j;
                while (j < path.n && path.p[j] != '/')
                    j++;
                if (j == start)
                    return -1;
                continue;
            }
            if (j >= path.n || path.p[j] != prefix[i])
                return -1;
            i++;
            j++;
        }
    }
    /* Strict routes: "/foo" matches "/foo" and "/foo/..." but not "/foobar". */
    if (strict && plen > 0 && prefix[plen - 1] != '/' && j < path.n && path.p[j] != '/')
        return -1;
    return (long)j;
}

/* gorilla/mux host templates: "{sub}.example.com" matches one label;
 * without a port in the template the request's port is ignored. */
static int host_match(const char *want, tp_str_t host)
{
    if (strchr(want, ':') == NULL) {
        const char *colon = NULL;
        if (host.n > 0 && host.p[0] == '[') {
            const char *close = memchr(host.p, ']', host.n);
            if (close != NULL && (size_t)(close - host.p) + 1 < host.n)
                colon = close + 1;
        } else {
            colon = memchr(host.p, ':', host.n);
        }
        if (colon != NULL)
            host.n = (size_t)(colon - host.p);
    }
    size_t i = 0, j = 0, n = strlen(want);
    while (i < n) {
        if (want[i] == '{') {
            const char *close = strchr(want + i, '}');
            if (close == NULL)
                return 0;
            i = (size_t)(close - want) + 1;
            size_t start = j;
            while (j < host.n && host.p[j] != '.')
                j++;
            if (j == start)
                return 0;
            continue;
        }
        if (j >= host.n || (host.p[j] | 0x20) != (want[i] | 0x20) ||
            ((want[i] < 'A' || (want[i] > 'Z' && want[i] < 'a') || want[i] > 'z') &&
             host.p[j] != want[i]))
            return 0;
        i++;
        j++;
    }
    return j == host.n;
}

const tp_route_t *tp_router_match(const tp_router_t *r, tp_str_t host, tp_str_t path,
                                  size_t *matched)
{
    for (size_t i = 0; i < r->n; i++) {
        const tp_route_t *rt = &r->v[i];
        if (rt->api->internal)
            continue; /* only tyk:// loops reach it (tp_loop.c) */
        if (rt->domain != NULL && !host_match(rt->domain, host))
            continue;
        long m = tp_route_prefix_match(rt->prefix, rt->len, path, rt->templated, r->strict);
        if (m >= 0) {
            *matched = (size_t)m;
            return rt;
        }
    }
    return NULL;
}
