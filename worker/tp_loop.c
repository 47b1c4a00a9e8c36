/*
 * worker/tp_loop.c: internal loops, Tyk's DummyProxyHandler for a tyk://
 * target (TYK-COMPAT 21.2). A url_rewrites target tyk://<api>/<path>
 * (url_rewrite stage, req->loop_url) takes the request, after the rest of
 * this API's middleware, into the whole chain of <api> instead of to an
 * upstream: "self" is this API, else the API whose api_id is <api> or
 * whose name, with each run of other characters than letters and digits
 * made "-", is <api> ignoring case (internal APIs, which have no public
 * route, included). The path is <path>; the query stays the client's, as
 * Tyk restores it. The loop URL's own query says:
 *  - method: the method from here on;
 *  - loop_limit: loops allowed after this one (Tyk's 5 when unset);
 *  - check_limits=true: the target's rate limits and quotas count the
 *    request again (otherwise they do not, key_limit/api_limit).
 * Too many loops: 500 "Loop level too deep. Found more than <n> loops in
 * single request"; no such API: 500 "Can't detect loop target".
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_respond.h"
#include "tp_route.h"
#include "tp_worker.h"

#define DEFAULT_LOOP_LIMIT 5

/* Tyk's APILoopingName: the name up to a "#category" part, each run of
 * non-alphanumerics "-"; compared ignoring case. */
static int loop_name_is(const char *name, const char *want, size_t wn)
{
    const char *hash = strchr(name, '#');
    size_t n = hash != NULL && hash > name ? (size_t)(hash - name) - 1 : strlen(name);
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        if ((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
            (name[i] >= '0' && name[i] <= '9')) {
            if (j >= wn || (name[i] | 0x20) != (want[j] | 0x20))
                return 0;
            i++;
            j++;
            continue;
        }
        while (i < n && !((name[i] >= 'a' && name[i] <= 'z') ||
                          (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9')))
            i++;
        if (j >= wn || want[j] != '-')
            return 0;
        j++;
    }
    return j == wn;
}

/* The listen-path route of the API <host> names, or NULL. */
static const tp_route_t *find_target(const tp_req_t *req, const char *host, size_t hn)
{
    const tp_router_t *r = &req->snap->router;
    const tp_api_t *self = req->route->api;
    const tp_api_t *want = NULL;
    if (hn == 4 && strncmp(host, "self", 4) == 0)
        want = self;
    for (size_t i = 0; want == NULL && i < req->snap->napis; i++) {
        const tp_api_t *a = req->snap->apis[i];
        if (strlen(a->api_id) == hn && memcmp(a->api_id, host, hn) == 0)
            want = a;
    }
    for (size_t i = 0; want == NULL && i < req->snap->napis; i++) {
        const tp_api_t *a = req->snap->apis[i];
        if (a->name != NULL && loop_name_is(a->name, host, hn))
            want = a;
    }
    for (size_t i = 0; want != NULL && i < r->n; i++)
        if (r->v[i].api == want && !r->v[i].by_api_id)
            return &r->v[i];
    return NULL;
}

/* The value of <name> in query <q> (undecoded), or {NULL, 0}. */
static tp_str_t param(tp_str_t q, const char *name)
{
    tp_str_t k, v;
    while (tp_query_next(&q, &k, &v))
        if (k.n == strlen(name) && memcmp(k.p, name, k.n) == 0)
            return v;
    return (tp_str_t){NULL, 0};
}

static int method_of(tp_str_t m)
{
    for (int i = 0; i < 64; i++) {
        const char *name = llhttp_method_name((llhttp_method_t)i);
        if (strlen(name) == m.n && strncmp(name, m.p, m.n) == 0)
            return i;
    }
    return -1;
}

static tp_stage_rc_t loop_run(tp_req_t *req)
{
    const char *url = req->loop_url;
    if (url == NULL)
        return TP_STAGE_NEXT;
    req->loop_url = NULL;
    /* isLoop: the limit the previous loop set, Tyk's 5 without one */
    int limit = req->loop_limit > 0 ? req->loop_limit : DEFAULT_LOOP_LIMIT;
    if (req->loop_level > limit) {
        char msg[96];
        snprintf(msg, sizeof(msg),
                 "Loop level too deep. Found more than %d loops in single request", limit);
        tp_respond_error(req, 500, msg);
        return TP_STAGE_DONE;
    }
    const char *host = url + 6, *p = host;
    while (*p != '\0' && *p != '/' && *p != '?')
        p++;
    size_t hn = (size_t)(p - host);
    const char *q = strchr(p, '?');
    tp_str_t path = {p, q != NULL ? (size_t)(q - p) : strlen(p)};
    tp_str_t query = q != NULL ? (tp_str_t){q + 1, strlen(q + 1)} : (tp_str_t){"", 0};
    if (path.n == 0)
        path = (tp_str_t){"/", 1};
    const tp_route_t *route = find_target(req, host, hn);
    if (route == NULL) {
        tp_respond_error(req, 500, "Can't detect loop target");
        return TP_STAGE_DONE;
    }
    /* the method: a method transform's, then the loop's own */
    if (req->up_method != NULL) {
        int m = method_of((tp_str_t){req->up_method, strlen(req->up_method)});
        if (m >= 0)
            req->method = (uint8_t)m;
        req->up_method = NULL;
    }
    tp_str_t mo = param(query, "method");
    if (mo.n > 0) {
        int m = method_of(mo);
        if (m < 0) {
            tp_respond_error(req, 405, "Method not allowed");
            return TP_STAGE_DONE;
        }
        req->method = (uint8_t)m;
    }
    tp_str_t ll = param(query, "loop_limit");
    long lim = ll.n > 0 && ll.n < 4 ? strtol(ll.p, NULL, 10) : 0;
    req->loop_limit = lim > 0 && lim < 250 ? (uint8_t)lim : 0;
    tp_str_t cl = param(query, "check_limits");
    req->loop_check = cl.n == 4 && memcmp(cl.p, "true", 4) == 0;
    req->loop_level++;

    /* the target sees the new path and the client's query */
    tp_reqpath_t *rp = tp_req_alloc(req, sizeof(*rp));
    rp->raw = rp->path = (tp_str_t){tp_req_strndup(req, path.p, path.n), path.n};
    rp->query = req->rp->query;
    long m = tp_route_prefix_match(route->prefix, route->len, rp->path, route->templated,
                                   req->snap->router.strict);
    rp->matched = m > 0 ? (size_t)m : 0;
    req->rp = rp;
    req->route = route;
    tp_worker_t *w = req->conn->w;
    const tp_compiled_t *api = tp_compiled(w, req);
    if (api == NULL)
        return TP_STAGE_ERROR; /* logged when the generation was compiled */
    /* what this API decided for its upstream does not go with the request */
    req->rules = api->rules;
    req->version = NULL;
    req->vseg = (tp_str_t){NULL, 0};
    req->strip_seg = 0;
    req->strip_params[0] = req->strip_params[1] = NULL;
    req->ignored = 0;
    req->up_target = (tp_str_t){NULL, 0};
    req->up_target_strip = 0;
    req->rw_host = NULL;
    req->rw_pool = NULL;
    req->resp_tf = NULL;
    req->cache = NULL;
    tp_chain_enter(req, &api->chain);
    return TP_STAGE_NEXT;
}

static int loop_wanted(const tp_chain_api_t *a)
{
    return a->loops;
}

const tp_stage_t tp_stage_loop = {.name = "loop", .wanted = loop_wanted, .run = loop_run};
