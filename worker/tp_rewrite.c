/*
 * worker/tp_rewrite.c: the stages that change what the upstream is asked
 * for, as Tyk's URLRewrite and TransformMethod (TYK-COMPAT 21.2, 21.6).
 * Both only decide: the proxy applies the new path (req->up_target) and
 * method (req->up_method), so every stage before the proxy sees the
 * request as the client sent it, as in Tyk.
 *
 * url_rewrites: the first entry matching the request's method and path;
 * its triggers, in order, may choose another rewrite_to (an "any" trigger
 * that fires ends the search, an "all" trigger that fires is replaced by a
 * later one that does); then match_pattern runs on the path and query as
 * received, listen path included, and without a match nothing changes.
 * $N are its groups, then Tyk's variables are replaced (query-escaped).
 * Trigger matches are context variables: trigger-<n>-<name>[-<i>] and, per
 * group, -<g>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_api_mw.h"
#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_url.h"
#include "tp_worker.h"

/* ---- triggers ---------------------------------------------------------------------------- */

/* Tyk's addMatchToContextData: trigger-<tn>-<name>[-<idx>] = the match,
 * and -<g> per group (from 0). */
static void add_match(tp_req_t *req, const char *s, const regmatch_t *g, int ngroups, int tn,
                      const char *name, int idx)
{
    char key[320];
    int kn = idx >= 0 ? snprintf(key, sizeof(key), "trigger-%d-%.200s-%d", tn, name, idx)
                      : snprintf(key, sizeof(key), "trigger-%d-%.200s", tn, name);
    if (kn < 0 || (size_t)kn >= sizeof(key) - 8)
        return;
    tp_ctx_set(req, key, (size_t)kn, s + g[0].rm_so, (size_t)(g[0].rm_eo - g[0].rm_so));
    for (int i = 1; i < ngroups; i++) {
        int n2 = snprintf(key + kn, sizeof(key) - (size_t)kn, "-%d", i - 1);
        const char *v = g[i].rm_so >= 0 ? s + g[i].rm_so : "";
        size_t vn = g[i].rm_so >= 0 ? (size_t)(g[i].rm_eo - g[i].rm_so) : 0;
        tp_ctx_set(req, key, (size_t)kn + (size_t)n2, v, vn);
    }
}

/* StringRegexMap.FindStringSubmatch: does <s> match (or, reversed, not)?
 * A match is remembered as context data. */
static int opt_check(tp_req_t *req, const tp_trigopt_t *o, const char *s, int tn, int idx)
{
    regmatch_t g[TP_RW_GROUPS];
    int m = tp_rx_exec(&o->rx, s, g);
    if (m && !o->reverse)
        add_match(req, s, g, o->rx.ngroups, tn, o->name, idx);
    return o->reverse ? !m : m;
}

/* checkPayload: every match in the body (read by the "body" stage), as
 * Go's FindAllStringSubmatch; trigger-<tn>-payload is the first, and
 * trigger-<tn>-payload-<i>[-<g>] each. Reversed: no match fires. */
static int payload_check(tp_req_t *req, const tp_trigopt_t *o, int tn)
{
    const char *body = req->body_buffered ? tp_buf_cstr(&req->rbody) : "";
    const char *end = body + strlen(body);
    regmatch_t g[TP_RW_GROUPS];
    int i = 0;
    for (const char *p = body; p < end || p == body;) {
        if (!tp_rx_exec_at(&o->rx, p, p != body, g))
            break;
        if (o->reverse)
            return 0;
        if (i == 0) {
            static const char base[] = "trigger-%d-payload";
            char key[64];
            int kn = snprintf(key, sizeof(key), base, tn);
            tp_ctx_set(req, key, (size_t)kn, p + g[0].rm_so, (size_t)(g[0].rm_eo - g[0].rm_so));
        }
        add_match(req, p, g, o->rx.ngroups, tn, "payload", i++);
        /* on past the match; an empty one moves a byte */
        p += g[0].rm_eo > g[0].rm_so ? g[0].rm_eo : g[0].rm_eo + 1;
    }
    return o->reverse ? 1 : i > 0;
}

/* The values a trigger option looks at, one by one: NUL-terminated copies. */
static int kind_check(tp_req_t *req, const tp_trigger_t *t, int kind, int tn)
{
    int count = 0;
    tp_buf_t val = {0};
    for (size_t k = 0; k < t->nopts; k++) {
        const tp_trigopt_t *o = &t->opts[k];
        if (o->kind != kind)
            continue;
        if (kind == TP_TRIG_HEADER) {
            int i = 0;
            for (uint32_t h = 0; h < req->nhdrs; h++) {
                const tp_hdr_t *hd = &req->hdrs[h];
                if (hd->name_len != strlen(o->name) ||
                    strncasecmp(req->head_base + hd->name_off, o->name, hd->name_len) != 0)
                    continue;
                val.len = 0;
                tp_buf_put_str(&val, tp_str_trim(tp_req_str(req, hd->val_off, hd->val_len)));
                count += opt_check(req, o, tp_buf_cstr(&val), tn, i++);
            }
        } else if (kind == TP_TRIG_QUERY) {
            tp_str_t q = req->rp->query, name, raw;
            int i = 0;
            while (tp_query_next(&q, &name, &raw)) {
                if (name.n != strlen(o->name) || memcmp(name.p, o->name, name.n) != 0)
                    continue;
                val.len = 0;
                tp_query_unescape(&val, raw.p, raw.n);
                count += opt_check(req, o, tp_buf_cstr(&val), tn, i++);
            }
        } else if (kind == TP_TRIG_PATH_PART) {
            /* strings.Split(r.URL.Path, "/"): the empty part before the first
             * slash included; the index counts matches of the whole kind */
            tp_str_t p = req->rp->path;
            size_t at = 0;
            for (;;) {
                const char *slash = memchr(p.p + at, '/', p.n - at);
                size_t end = slash ? (size_t)(slash - p.p) : p.n;
                val.len = 0;
                tp_buf_append(&val, p.p + at, end - at);
                count += opt_check(req, o, tp_buf_cstr(&val), tn, count);
                if (slash == NULL)
                    break;
                at = end + 1;
            }
        } else if (kind == TP_TRIG_SESSION_META) {
            const cJSON *meta =
                req->sess != NULL ? tp_json_get(tp_session_json(req->sess), "meta_data") : NULL;
            const cJSON *v = tp_json_get(meta, o->name);
            if (cJSON_IsString(v))
                count += opt_check(req, o, v->valuestring, tn, -1);
        } else if (kind == TP_TRIG_PAYLOAD) {
            count += payload_check(req, o, tn);
        } else {
            val.len = 0;
            if (tp_ctx_get(req, o->name, strlen(o->name), &val))
                count += opt_check(req, o, tp_buf_cstr(&val), tn, -1);
        }
    }
    tp_buf_free(&val);
    return count;
}

/* The rewrite_to the triggers of <r> choose, else its own. */
static const char *choose(tp_req_t *req, const tp_rewrite_t *r)
{
    const char *to = r->rewrite_to;
    for (size_t tn = 0; tn < r->ntrig; tn++) {
        const tp_trigger_t *t = &r->trig[tn];
        int set = 0, total = 0;
        for (int kind = 0; kind < TP_TRIG_KINDS; kind++) {
            if (t->kinds[kind] == 0)
                continue;
            if (kind == TP_TRIG_SESSION_META && req->sess == NULL)
                continue; /* Tyk looks at session options only with a session */
            total++;
            int count = kind_check(req, t, kind, (int)tn);
            int fired = count > 0 && (!t->all || t->kinds[kind] <= count);
            if (fired && !t->all)
                return t->rewrite_to;
            set += fired;
        }
        if (t->all) {
            if (req->sess == NULL && t->kinds[TP_TRIG_SESSION_META] > 0)
                total++; /* counted by Tyk, never matched without a session */
            if (total == set)
                to = t->rewrite_to;
        }
    }
    return to;
}

/* ---- another host --------------------------------------------------------------------------- */

#define RW_HOSTS_MAX 256 /* hosts rewrites may name, per worker (each keeps a pool) */

/* The TLS settings of a rewrite to an https:// host: those the API's own
 * https target has (tyk.conf's proxy_ssl_* with its proxy.transport),
 * else tyk.conf's. */
static tp_uptls_t *rewrite_tls(const tp_req_t *req)
{
    const tp_api_t *api = req->route->api;
    const tp_conf_t *conf = req->conn->w->conf;
    tp_uptls_t *u = tp_calloc(1, sizeof(*u));
    for (size_t i = 0; i < api->ntargets; i++) {
        const tp_uptls_t *t = api->targets[i].tls;
        if (t != NULL) {
            u->skip_verify = t->skip_verify;
            u->force_cn = t->force_cn;
            u->min_version = t->min_version;
            u->max_version = t->max_version;
            u->ciphers = t->ciphers != NULL ? tp_strdup(t->ciphers) : NULL;
            return u;
        }
    }
    u->skip_verify = conf->proxy_ssl.insecure_skip_verify;
    u->force_cn = conf->proxy_ssl.force_common_name_check;
    return u;
}

/* <url> ("http[s]://host[:port][/path][?query]", <n> bytes) names another
 * host: req->rw_host and rw_pool are set, *rest is the path and query.
 * -1 when it cannot be followed (logged). */
static int other_host(tp_req_t *req, const char *url, size_t n, tp_str_t *rest)
{
    tp_worker_t *w = req->conn->w;
    int https = n > 8 && strncasecmp(url, "https://", 8) == 0;
    const char *a = url + (https ? 8 : 7), *end = url + n, *p = a;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p == a || (size_t)(p - a) >= 280)
        return -1;
    tp_uptls_t *tls = https ? rewrite_tls(req) : NULL;
    /* one pool per host, scheme and TLS settings */
    char key[400];
    snprintf(key, sizeof(key), "%s://%.*s %d %d %lld %lld %s", https ? "https" : "http",
             (int)(p - a), a, tls != NULL && tls->skip_verify, tls != NULL && tls->force_cn,
             tls != NULL ? (long long)tls->min_version : 0LL,
             tls != NULL ? (long long)tls->max_version : 0LL,
             tls != NULL && tls->ciphers != NULL ? tls->ciphers : "");
    uint32_t *at = tp_strmap_get(&w->rw_map, key);
    if (at == NULL) {
        if (w->nrw_hosts >= RW_HOSTS_MAX) {
            tp_log_warn("api %s: url_rewrites: more than %d hosts named, %.*s not followed",
                        req->route->api->api_id, RW_HOSTS_MAX, (int)(p - a), a);
            goto fail;
        }
        char u[320], why[256];
        snprintf(u, sizeof(u), "%s://%.*s/", https ? "https" : "http", (int)(p - a), a);
        tp_target_t *t = tp_calloc(1, sizeof(*t));
        if (tp_url_parse(u, &t->url, why, sizeof(why)) < 0) {
            tp_log_warn("api %s: url_rewrites: \"%s\": %s", req->route->api->api_id, u, why);
            free(t);
            goto fail;
        }
        t->raw = tp_strdup(u);
        t->tls = tls; /* the target keeps it */
        tls = NULL;
        t->idx = UINT32_MAX; /* in no generation's tables */
        w->rw_hosts = tp_realloc(w->rw_hosts, (w->nrw_hosts + 1) * sizeof(*w->rw_hosts));
        w->rw_hosts[w->nrw_hosts] = t;
        int added;
        at = tp_strmap_put(&w->rw_map, key, (uint32_t)w->nrw_hosts++, &added);
    }
    if (tls != NULL) {
        free(tls->ciphers);
        free(tls);
    }
    req->rw_host = w->rw_hosts[*at];
    req->rw_pool = tp_upstream_pool(w, req->rw_host);
    *rest = p < end ? (tp_str_t){p, (size_t)(end - p)} : (tp_str_t){"/", 1};
    return 0;
fail:
    if (tls != NULL) {
        free(tls->ciphers);
        free(tls);
    }
    return -1;
}

/* ---- the stages ---------------------------------------------------------------------------- */

static tp_stage_rc_t rewrite_run(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    if (mw == NULL)
        return TP_STAGE_NEXT;
    const tp_rewrite_t *r = tp_epmatch_first(req, mw->rw, mw->nrw, sizeof(*mw->rw));
    if (r == NULL)
        return TP_STAGE_NEXT;
    const char *to = choose(req, r);
    /* r.URL.String(): the path as received and the query */
    const tp_reqpath_t *rp = req->rp;
    tp_buf_t url = {0}, out = {0}, exp = {0};
    regmatch_t g[TP_RW_GROUPS];
    int matched = 0;
    for (int pass = 0; pass < 2 && !matched; pass++) {
        url.len = 0;
        tp_buf_put_str(&url, pass == 0 ? rp->raw : rp->path);
        if (rp->query.n > 0) {
            tp_buf_putc(&url, '?');
            tp_buf_put_str(&url, rp->query);
        }
        matched = tp_rx_exec(&r->rx, tp_buf_cstr(&url), g);
        if (pass == 0 && rp->raw.p == rp->path.p)
            break; /* nothing was escaped: the same string */
    }
    if (!matched) {
        tp_buf_free(&url);
        return TP_STAGE_NEXT;
    }
    /* $N: the first match's groups ("" past the last one, as Tyk's map) */
    for (const char *p = to; *p;) {
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            int n = 0;
            const char *q = p + 1;
            while (*q >= '0' && *q <= '9' && n < 1000)
                n = n * 10 + (*q++ - '0');
            if (n < r->rx.ngroups && g[n].rm_so >= 0)
                tp_buf_append(&out, url.data + g[n].rm_so, (size_t)(g[n].rm_eo - g[n].rm_so));
            p = q;
            continue;
        }
        tp_buf_putc(&out, *p++);
    }
    tp_ctx_expand(req, out.data != NULL ? out.data : "", out.len, TP_CTX_ESCAPE, &exp);
    /* an absolute URL: another host (Tyk's RetainHost), the path as written */
    tp_str_t whole = {exp.data != NULL ? exp.data : "", exp.len}, rest = whole;
    int other = 0;
    if (whole.n > 6 && strncasecmp(whole.p, "tyk://", 6) == 0) {
        /* an internal loop: the "loop" stage takes the request there */
        req->loop_url = tp_req_strndup(req, whole.p, whole.n);
        tp_buf_free(&url);
        tp_buf_free(&out);
        tp_buf_free(&exp);
        return TP_STAGE_NEXT;
    }
    if ((whole.n > 7 && strncasecmp(whole.p, "http://", 7) == 0) ||
        (whole.n > 8 && strncasecmp(whole.p, "https://", 8) == 0)) {
        if (other_host(req, whole.p, whole.n, &rest) < 0) {
            tp_buf_free(&url);
            tp_buf_free(&out);
            tp_buf_free(&exp);
            tp_respond_error(req, 500, "There was a problem proxying the request");
            return TP_STAGE_DONE;
        }
        other = 1;
    } else if (memmem(whole.p, whole.n, "://", 3) != NULL) {
        tp_log_warn("api %s: url_rewrites: \"%.*s\" is not followed (http:// and https:// only)",
                    req->route->api->api_id, (int)(whole.n < 200 ? whole.n : 200), whole.p);
        tp_buf_free(&url);
        tp_buf_free(&out);
        tp_buf_free(&exp);
        tp_respond_error(req, 500, "There was a problem proxying the request");
        return TP_STAGE_DONE;
    }
    /* the request line cannot carry control bytes or spaces: escape them */
    char *dst = tp_arena_alloc(&req->arena, rest.n * 3 + 2);
    size_t n = 0;
    if (rest.n == 0 || rest.p[0] != '/')
        dst[n++] = '/';
    for (size_t i = 0; i < rest.n; i++) {
        unsigned char c = (unsigned char)rest.p[i];
        if (c <= ' ' || c == 0x7f) {
            n += (size_t)snprintf(dst + n, 4, "%%%02X", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    dst[n] = '\0';
    req->up_target = (tp_str_t){dst, n};
    /* the listen path is stripped when the new path starts with it */
    const tp_api_t *api = req->route->api;
    size_t lp = strlen(api->listen_path);
    req->up_target_strip = !other && api->strip_listen_path && !req->route->by_api_id && lp > 0 &&
                                   n >= lp && memcmp(dst, api->listen_path, lp) == 0
                               ? lp
                               : 0;
    tp_buf_free(&url);
    tp_buf_free(&out);
    tp_buf_free(&exp);
    return TP_STAGE_NEXT;
}

static int rewrite_wanted(const tp_chain_api_t *a)
{
    return a->rewrites;
}

const tp_stage_t tp_stage_url_rewrite = {
    .name = "url_rewrite", .wanted = rewrite_wanted, .run = rewrite_run};

static tp_stage_rc_t method_run(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    if (mw == NULL)
        return TP_STAGE_NEXT;
    const tp_mtrans_t *m = tp_epmatch_first(req, mw->mt, mw->nmt, sizeof(*mw->mt));
    if (m == NULL)
        return TP_STAGE_NEXT;
    static const char *const allowed[] = {"GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (strcmp(m->to, allowed[i]) == 0) {
            req->up_method = allowed[i];
            return TP_STAGE_NEXT;
        }
    tp_respond_error(req, 405, "Method not allowed");
    return TP_STAGE_DONE;
}

static int method_wanted(const tp_chain_api_t *a)
{
    return a->mtransforms;
}

const tp_stage_t tp_stage_method_transform = {
    .name = "method_transform", .wanted = method_wanted, .run = method_run};

/* ---- size limits, internal and tracked endpoints ------------------------------------------- */

/* Tyk's checkRequestLimit: the stated Content-Length against <limit>. */
static int size_check(tp_req_t *req, int64_t limit)
{
    tp_str_t cl = tp_req_header(req, "Content-Length");
    if (cl.n == 0) {
        tp_respond_error(req, 411, "Content length is required for this request");
        return -1;
    }
    if ((int64_t)req->content_length > limit) {
        tp_respond_error(req, 400, "Request is too large");
        return -1;
    }
    return 0;
}

static tp_stage_rc_t size_run(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    if (mw == NULL)
        return TP_STAGE_NEXT;
    /* Tyk 5.8: requests of these methods carry no body to limit */
    int m = req->method;
    if (m == HTTP_GET || m == HTTP_DELETE || m == HTTP_TRACE || m == HTTP_OPTIONS || m == HTTP_HEAD)
        return TP_STAGE_NEXT;
    if (mw->global_size > 0 && size_check(req, mw->global_size) < 0)
        return TP_STAGE_DONE;
    const tp_sizelim_t *s = tp_epmatch_first(req, mw->sl, mw->nsl, sizeof(*mw->sl));
    if (s != NULL && size_check(req, s->limit) < 0)
        return TP_STAGE_DONE;
    return TP_STAGE_NEXT;
}

static int size_wanted(const tp_chain_api_t *a)
{
    return a->size_limits;
}

const tp_stage_t tp_stage_size_limit = {
    .name = "size_limit", .wanted = size_wanted, .run = size_run};
