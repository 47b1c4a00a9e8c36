/*
 * worker/tp_auth.c: what happens between routing and the proxy, in Tyk's
 * middleware order (TYK-COMPAT 12.1): the version check (version, expiry,
 * path lists, mock replies), token authentication and the session checks
 * (expiry, inactive, access rights, allowed_urls), then the header changes
 * for the upstream.
 *
 * Every rule sees the same path: decoded and cleaned (so "..", "%2e" and
 * "//" cannot step around a black list or an allowed_urls entry), tried as
 * Tyk tries it: without the listen path and version segment, without the
 * listen path, and whole.
 *
 * A request whose session is not in the cache waits for Redis; its head is
 * then copied out of the connection's read buffer so that it survives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_url.h"
#include "tp_api_mw.h"
#include "tp_worker.h"

/* ---- request parts ------------------------------------------------------------------ */

/* Cookie <name> from the Cookie headers, or an empty string. */
static tp_str_t cookie_get(const tp_req_t *req, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (h->name_len != 6 || strncasecmp(req->head_base + h->name_off, "Cookie", 6) != 0)
            continue;
        tp_str_t v = tp_req_str(req, h->val_off, h->val_len);
        for (const char *p = v.p, *end = v.p + v.n; p < end;) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq != NULL && (size_t)(eq - p) == n && memcmp(p, name, n) == 0) {
                tp_str_t val = {eq + 1, (size_t)(stop - eq - 1)};
                if (val.n >= 2 && val.p[0] == '"' && val.p[val.n - 1] == '"')
                    val = (tp_str_t){val.p + 1, val.n - 2};
                return val;
            }
            p = stop;
        }
    }
    return (tp_str_t){"", 0};
}

tp_str_t tp_auth_token(const tp_req_t *req, const tp_authloc_t *loc, tp_str_t query, tp_buf_t *tmp)
{
    tp_str_t key = {"", 0};
    if (!loc->disable_header)
        key = tp_req_header(req, loc->header);
    if (loc->use_param && tp_query_get(query, loc->param_name, tmp) == 0 && tmp->len > 0)
        key = (tp_str_t){tmp->data, tmp->len};
    if (loc->use_cookie) {
        tp_str_t c = cookie_get(req, loc->cookie_name);
        if (c.n > 0)
            key = c;
    }
    if (key.n >= 7 && strncasecmp(key.p, "Bearer ", 7) == 0)
        key = (tp_str_t){key.p + 7, key.n - 7};
    return key;
}

/* ---- the version check (VersionCheck) ------------------------------------------------ */

/* Finds the request's version (APISpec.Version). Returns it, or NULL with
 * Tyk's message in *why. *seg is set to the bytes of a URL version
 * segment after the listen path ("v1/"), to strip it when asked. */
static const tp_version_t *find_version(tp_req_t *req, const tp_api_rules_t *r,
                                        const tp_reqpath_t *rp, tp_str_t *seg, const char **why)
{
    *seg = (tp_str_t){"", 0};
    if (r->not_versioned) {
        if (r->only == NULL)
            *why = r->only_error;
        return r->only;
    }
    tp_str_t name = {"", 0};
    tp_buf_t tmp = {0};
    if (r->location == TP_VLOC_HEADER) {
        name = tp_req_header(req, r->version_key);
    } else if (r->location == TP_VLOC_PARAM) {
        if (tp_query_get(rp->query, r->version_key, &tmp) == 0)
            name = (tp_str_t){tmp.data, tmp.len};
    } else {
        tp_str_t rest = {rp->path.p + rp->matched, rp->path.n - rp->matched};
        while (rest.n > 0 && rest.p[0] == '/')
            rest = (tp_str_t){rest.p + 1, rest.n - 1};
        const char *slash = memchr(rest.p, '/', rest.n);
        name = (tp_str_t){rest.p, slash ? (size_t)(slash - rest.p) : rest.n};
        *seg = (tp_str_t){rest.p, slash ? name.n + 1 : name.n};
        if (r->has_url_pattern && name.n > 0) {
            tmp.len = 0;
            tp_buf_append(&tmp, name.p, name.n);
            if (regexec(&r->url_pattern, tp_buf_cstr(&tmp), 0, NULL, 0) != 0) {
                /* not a version segment: part of the resource path */
                name = (tp_str_t){"", 0};
                *seg = name;
            }
        }
    }
    if (name.n == 0)
        name = (tp_str_t){r->default_version, strlen(r->default_version)};
    const tp_version_t *v = NULL;
    if (name.n == 0)
        *why = "Version information not found";
    else if ((v = tp_api_rules_version(r, name.p, name.n)) == NULL &&
             (!r->fallback_to_default ||
              (v = tp_api_rules_version(r, r->default_version, strlen(r->default_version))) ==
                  NULL))
        *why = "This API version does not seem to exist";
    tp_buf_free(&tmp);
    return v;
}

static void reply_mock(tp_req_t *req, const tp_pathrule_t *rule)
{
    tp_buf_t h = {0};
    int has_ct = 0;
    if (rule->headers != NULL) {
        tp_buf_puts(&h, rule->headers);
        has_ct = strcasestr(rule->headers, "content-type:") != NULL;
    }
    /* Go's ResponseWriter sniffs a type when none is set */
    tp_respond(req, rule->status, has_ct ? NULL : "text/plain; charset=utf-8", rule->body,
               rule->body_len, h.len ? tp_buf_cstr(&h) : NULL);
    tp_buf_free(&h);
}

/* "X-Tyk-Api-Expires: <RFC1123>" when the request's version (or
 * non-versioned API) has an expiry: Tyk sets it in VersionCheck, so every
 * response after that check carries it. */
static void expires_headers(const tp_req_t *req, tp_buf_t *b, int gateway)
{
    (void)gateway;
    if (req->version == NULL || req->rules == NULL)
        return;
    int64_t t = req->rules->not_versioned ? req->rules->expiration : req->version->expires;
    if (t <= 1) /* never, or unparsable (treated as expired, no date) */
        return;
    time_t tt = (time_t)t;
    struct tm tm;
    char date[64];
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S UTC", &tm) == 0)
        return;
    tp_buf_printf(b, "X-Tyk-Api-Expires: %s\r\n", date);
}

const tp_stage_t tp_stage_expires = {.name = "expires", .headers = expires_headers};

void tp_hdrplan_drop(tp_hdrplan_t *hp, const char *name)
{
    if (hp->ndrop < TP_HDRPLAN_MAX)
        hp->drop[hp->ndrop++] = name;
}

/* ---- the stages ------------------------------------------------------------------------ */

/* VersionCheck: the version, its expiry, strip_versioning_data. */
static tp_stage_rc_t version_run(tp_req_t *req)
{
    const tp_api_rules_t *r = req->rules;
    const char *why = NULL;
    tp_str_t seg;
    const tp_version_t *v = find_version(req, r, req->rp, &seg, &why);
    if (v == NULL) {
        tp_respond_error(req, 403, why);
        return TP_STAGE_DONE;
    }
    int64_t now = tp_time_wall_us() / 1000000;
    if (r->not_versioned && r->expiration > 0 && r->expiration <= now) {
        tp_respond_error(req, 403,
                         "API has expired, please check documentation or contact administrator");
        return TP_STAGE_DONE;
    }
    if (!r->not_versioned && v->expires > 0 && v->expires <= now) {
        tp_respond_error(
            req, 403,
            "Api Version has expired, please check documentation or contact administrator");
        return TP_STAGE_DONE;
    }
    req->version = v;
    req->vseg = seg;
    if (r->strip_versioning_data && !r->not_versioned) {
        if (r->location == TP_VLOC_HEADER)
            tp_hdrplan_drop(&req->hdr_plan, r->version_key);
        else if (r->location == TP_VLOC_PARAM)
            req->strip_params[0] = r->version_key;
        else
            req->strip_seg = seg.n; /* bytes after the listen path's slash */
    }
    return TP_STAGE_NEXT;
}

const tp_stage_t tp_stage_version = {.name = "version", .run = version_run};

/* The path lists of the version (first match decides), mock replies. The
 * rule paths it builds serve the stages after it (tp_req_rulepaths). */
static tp_stage_rc_t paths_run(tp_req_t *req)
{
    const tp_version_t *v = req->version;
    const tp_api_mw_t *mw = v->mw;
    if (v->nrules == 0 && !v->has_white && (mw == NULL || mw->ninternal == 0))
        return TP_STAGE_NEXT; /* nothing to match */
    const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
    const char *method = llhttp_method_name(req->method);
    const tp_pathrule_t *hit = NULL;
    for (size_t i = 0; i < v->nrules && hit == NULL; i++)
        if (tp_pathrule_match(&v->rules[i], method, paths, 3))
            hit = &v->rules[i];
    if (hit != NULL && hit->kind == TP_RULE_REPLY) {
        req->not_recorded = 1; /* VersionCheck answers: Tyk writes no record */
        reply_mock(req, hit);
        return TP_STAGE_DONE;
    }
    /* extended_paths.internal: reachable only from an internal loop */
    int internal = 0;
    for (size_t i = 0;
         hit == NULL && mw != NULL && req->loop_level == 0 && i < mw->ninternal && !internal; i++)
        internal = tp_epmatch(&mw->internal[i], method, paths, 3);
    if ((hit != NULL && hit->kind == TP_RULE_BLACK) || (hit == NULL && v->has_white) || internal) {
        tp_respond_error(req, 403, "Requested endpoint is forbidden");
        return TP_STAGE_DONE;
    }
    req->ignored = hit != NULL && hit->kind == TP_RULE_IGNORED;
    return TP_STAGE_NEXT;
}

const tp_stage_t tp_stage_paths = {.name = "paths", .run = paths_run};

/* AuthKey: the key from the request, then its session (tp_session.c). */
static tp_stage_rc_t key_run(tp_req_t *req)
{
    if (req->ignored)
        return TP_STAGE_NEXT;
    const tp_api_rules_t *r = req->rules;
    tp_session_method(req, TP_ID_TOKEN);
    tp_buf_t tmp = {0};
    tp_str_t key = tp_auth_token(req, &r->auth, req->rp->query, &tmp);
    if (key.n == 0) {
        tp_buf_free(&tmp);
        tp_respond_auth_error(req, TP_AUTH_FIELD_MISSING);
        return TP_STAGE_DONE;
    }
    if (r->strip_auth_data) {
        /* StripAuth: the upstream never sees the key (the plan is used
         * only once the key checks pass) */
        tp_hdrplan_drop(&req->hdr_plan, r->auth.header);
        if (r->auth.use_param)
            req->strip_params[1] = r->auth.param_name;
    }
    tp_stage_rc_t rc = tp_session_lookup(req, key);
    tp_buf_free(&tmp);
    return rc;
}

static int key_wanted(const tp_chain_api_t *a)
{
    return !a->keyless && !a->no_token;
}

const tp_stage_t tp_stage_key = {.name = "key",
                                 .wanted = key_wanted,
                                 .run = key_run,
                                 .cancel = tp_session_cancel,
                                 .state = sizeof(void *)}; /* the lookup under way (tp_session.c) */
