/*
 * worker/tp_jsmw.c: JavaScript middleware and virtual endpoints, Tyk's
 * DynamicMiddleware and VirtualEndpoint (TYK-COMPAT 23), on the worker's
 * one engine heap (common/tp_js.c), each API in its own global
 * environment made when the worker takes a generation.
 *
 * Stages:
 *  - "js_body" (tp_body.c): the whole request body, for the scripts;
 *  - "js_pre": custom_middleware.pre, after CORS, before authentication;
 *  - "js_auth": custom_middleware.auth_check with custom_plugin_auth_enabled,
 *    among the auth methods: its session is the request's;
 *  - "js_post_key_auth": custom_middleware.post_key_auth, after the key;
 *  - "virtual": extended_paths.virtual answers, after the response cache;
 *  - "js_post": custom_middleware.post, last before the upstream;
 *  - "js_response": custom_middleware.response, a response body stage
 *    (the proxy gathers the upstream's response for it).
 * A hook calls <name>.DoProcessRequest(request, session, config) with
 * Tyk's request object (Headers with Go's canonical names and Host, Body,
 * URL, Params, Method, RequestURI, Scheme, and the empty SetHeaders,
 * DeleteHeaders, AddParams, ExtendedParams, DeleteParams and
 * ReturnOverrides), the session (post hooks with require_session; else
 * an empty one) and {OrgID, APIID, config_data}. What it returns changes
 * the request for every later stage and the upstream: the body (unless
 * IgnoreBody), the URL, DeleteHeaders then SetHeaders, DeleteParams,
 * AddParams (set), ExtendedParams (added); ReturnOverrides with a code of
 * 400 or more answers Tyk's error body with that message, another code a
 * response of its own. A script error or timeout answers 500 "Internal
 * Server Error"; an API whose scripts could not be set up, 500
 * "Middleware error".
 *
 * A virtual endpoint calls <response_function_name>(request, session,
 * config) and answers what its TykJsResponse says (Body, Code, Headers,
 * Server: tyk); an error answers 500 "Error during virtual endpoint
 * execution. Contact Administrator for more details.", or goes on to the
 * upstream with proxy_on_error.
 *
 * A script's TykMakeHttpRequest suspends the stage: the request is made on
 * the loop (tp_fetch) and the hook runs again with the answer (tp_js.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_api_mw.h"
#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_fetch.h"
#include "tp_http.h"
#include "tp_js.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_respond.h"
#include "tp_url.h"
#include "tp_worker.h"

#define JS_HEAP_MAX (64u * 1024 * 1024) /* live heap bytes a call may add */
#define JS_FETCHES_MAX 32               /* TykMakeHttpRequest calls in one hook */

enum { HOOK_PRE, HOOK_POST_KEY_AUTH, HOOK_POST, HOOK_RESPONSE, HOOK_AUTH, NHOOKS };
static const char *const hook_names[NHOOKS] = {"pre", "post_key_auth", "post", "response",
                                               "auth_check"};

typedef struct hook_s {
    char *name;
    unsigned session : 1;
} hook_t;

struct tp_jsmw_api_s {
    tp_js_ctx_t *ctx; /* NULL: the scripts could not be set up ("Middleware error") */
    hook_t *hooks[NHOOKS];
    size_t nhooks[NHOOKS];
    char *config; /* {"OrgID","APIID","config_data"} */
    int64_t timeout_ms;
};

/* The empty session Tyk marshals for hooks without one. */
static const char empty_session[] =
    "{\"last_check\":0,\"allowance\":0,\"rate\":0,\"per\":0,\"throttle_interval\":0,"
    "\"throttle_retry_limit\":0,\"max_query_depth\":0,\"date_created\":\"0001-01-01T00:00:00Z\","
    "\"expires\":0,\"quota_max\":0,\"quota_renews\":0,\"quota_remaining\":0,"
    "\"quota_renewal_rate\":0,\"access_rights\":null,\"org_id\":\"\",\"oauth_client_id\":\"\","
    "\"oauth_keys\":null,\"certificate\":\"\",\"basic_auth_data\":{\"password\":\"\","
    "\"hash_type\":\"\"},\"jwt_data\":{\"secret\":\"\"},\"hmac_enabled\":false,"
    "\"enable_http_signature_validation\":false,\"hmac_string\":\"\",\"rsa_certificate_id\":\"\","
    "\"is_inactive\":false,\"apply_policy_id\":\"\",\"apply_policies\":null,\"data_expires\":0,"
    "\"monitor\":{\"trigger_limits\":null},\"enable_detailed_recording\":false,"
    "\"meta_data\":null,\"tags\":null,\"alias\":\"\",\"last_updated\":\"\","
    "\"id_extractor_deadline\":0,\"session_lifetime\":0}";

/* ---- per API, per generation ---------------------------------------------------------- */

static duk_ret_t json_decode_safe(duk_context *d, void *udata);
static int push_json(duk_context *d, const char *s);

/* Freezes the object at <idx> and every object in it. */
static void deep_freeze(duk_context *d, duk_idx_t idx, int depth)
{
    idx = duk_normalize_index(d, idx);
    if (!duk_is_object(d, idx) || depth > 32)
        return;
    duk_enum(d, idx, DUK_ENUM_OWN_PROPERTIES_ONLY);
    while (duk_next(d, -1, 1)) {
        deep_freeze(d, -1, depth + 1);
        duk_pop_2(d);
    }
    duk_pop(d);
    duk_freeze(d, idx);
}

/* The empty session and the config object, decoded once per API and
 * frozen (a script's changes to them never outlived its call in Tyk
 * either), kept in the API's stash: JSON decoding them for every call was
 * most of a hook's cost. */
static void keep_frozen(tp_jsmw_api_t *m)
{
    duk_context *d = tp_js_ctx_duk(m->ctx);
    duk_push_global_stash(d);
    if (push_json(d, empty_session) == 0) {
        deep_freeze(d, -1, 0);
        duk_put_prop_literal(d, -2, "tp_empty_session");
    }
    if (push_json(d, m->config) == 0) {
        deep_freeze(d, -1, 0);
        duk_put_prop_literal(d, -2, "tp_config");
    }
    duk_pop(d);
}

/* Pushes the API's frozen <what> ("tp_empty_session", "tp_config"). */
static void push_kept(duk_context *d, const char *what)
{
    duk_push_global_stash(d);
    duk_get_prop_string(d, -1, what);
    duk_remove(d, -2);
}

tp_jsmw_api_t *tp_jsmw_compile(tp_worker_t *w, const cJSON *def, const tp_api_t *api)
{
    if (api->js_json == NULL)
        return NULL;
    cJSON *j = cJSON_Parse(api->js_json);
    if (j == NULL)
        return NULL;
    tp_jsmw_api_t *m = tp_calloc(1, sizeof(*m));
    for (int k = 0; k < NHOOKS; k++) {
        const cJSON *list = tp_json_get(j, hook_names[k]), *h;
        cJSON_ArrayForEach(h, list)
        {
            m->hooks[k] = tp_realloc(m->hooks[k], (m->nhooks[k] + 1) * sizeof(hook_t));
            hook_t *x = &m->hooks[k][m->nhooks[k]++];
            x->name = tp_strdup(cJSON_GetStringValue(cJSON_GetObjectItem(h, "name")));
            x->session = cJSON_IsTrue(cJSON_GetObjectItem(h, "session"));
        }
    }
    const tp_conf_t *conf = w->conf;
    m->timeout_ms = (conf->jsvm_timeout > 0 ? conf->jsvm_timeout : 5) * 1000;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "OrgID", api->org_id != NULL ? api->org_id : "");
    cJSON_AddStringToObject(cfg, "APIID", api->api_id);
    if (!cJSON_IsTrue(tp_json_get(def, "config_data_disabled"))) {
        const cJSON *cd = tp_json_get(def, "config_data");
        cJSON_AddItemToObject(cfg, "config_data",
                              cd != NULL ? cJSON_Duplicate(cd, 1) : cJSON_CreateNull());
    }
    char *s = cJSON_PrintUnformatted(cfg);
    m->config = tp_strdup(s);
    cJSON_free(s);
    cJSON_Delete(cfg);

    if (cJSON_IsTrue(tp_json_get(j, "vm"))) {
        if (w->js == NULL)
            w->js = tp_js_new(JS_HEAP_MAX);
        if (w->js != NULL) {
            char label[300];
            snprintf(label, sizeof(label), "API %s (%s)", api->api_id, api->file);
            char *files = cJSON_PrintUnformatted(tp_json_get(j, "files"));
            m->ctx = tp_js_ctx_new(w->js, label, files, m->timeout_ms);
            cJSON_free(files);
            if (m->ctx != NULL)
                keep_frozen(m);
        }
    }
    cJSON_Delete(j);
    return m;
}

void tp_jsmw_api_free(tp_jsmw_api_t *m)
{
    if (m == NULL)
        return;
    tp_js_ctx_free(m->ctx);
    for (int k = 0; k < NHOOKS; k++) {
        for (size_t i = 0; i < m->nhooks[k]; i++)
            free(m->hooks[k][i].name);
        free(m->hooks[k]);
    }
    free(m->config);
    free(m);
}

void tp_jsmw_wanted(const tp_jsmw_api_t *m, tp_chain_api_t *a)
{
    if (m == NULL)
        return;
    a->js_pre = m->nhooks[HOOK_PRE] > 0;
    a->js_post_key_auth = m->nhooks[HOOK_POST_KEY_AUTH] > 0;
    a->js_post = m->nhooks[HOOK_POST] > 0;
    a->js_response = m->nhooks[HOOK_RESPONSE] > 0;
    a->js_auth = m->nhooks[HOOK_AUTH] > 0;
}

static tp_jsmw_api_t *jsmw_of(tp_req_t *req)
{
    const tp_compiled_t *c = tp_compiled(req->conn->w, req);
    return c != NULL ? c->jsmw : NULL;
}

/* ---- the request object --------------------------------------------------------------- */

/* {name: [values]} of the query <q>, decoded as Go's url.ParseQuery. */
static void push_params(duk_context *d, tp_str_t q)
{
    duk_push_object(d);
    tp_str_t k, v;
    tp_buf_t kb = {0}, vb = {0};
    while (tp_query_next(&q, &k, &v)) {
        kb.len = vb.len = 0;
        tp_query_unescape(&kb, k.p, k.n);
        tp_query_unescape(&vb, v.p, v.n);
        duk_get_prop_lstring(d, -1, kb.data != NULL ? kb.data : "", kb.len);
        if (!duk_is_array(d, -1)) {
            duk_pop(d);
            duk_push_array(d);
            duk_dup(d, -1);
            duk_put_prop_lstring(d, -3, kb.data != NULL ? kb.data : "", kb.len);
        }
        duk_push_lstring(d, vb.data != NULL ? vb.data : "", vb.len);
        duk_put_prop_index(d, -2, (duk_uarridx_t)duk_get_length(d, -2));
        duk_pop(d);
    }
    tp_buf_free(&kb);
    tp_buf_free(&vb);
}

/* {Canonical-Name: [values]} with Host (the middleware's; the virtual
 * endpoint's has no Host, as Go keeps it out of r.Header). */
static void push_headers(duk_context *d, const tp_req_t *req, int with_host)
{
    duk_push_object(d);
    tp_buf_t nb = {0};
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        nb.len = 0;
        tp_http_put_canonical(&nb, req->head_base + h->name_off, h->name_len);
        if (nb.len == 4 && memcmp(nb.data, "Host", 4) == 0)
            continue;
        duk_get_prop_lstring(d, -1, nb.data, nb.len);
        if (!duk_is_array(d, -1)) {
            duk_pop(d);
            duk_push_array(d);
            duk_dup(d, -1);
            duk_put_prop_lstring(d, -3, nb.data, nb.len);
        }
        tp_str_t v = tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
        duk_push_lstring(d, v.p, v.n);
        duk_put_prop_index(d, -2, (duk_uarridx_t)duk_get_length(d, -2));
        duk_pop(d);
    }
    tp_buf_free(&nb);
    if (with_host && req->host.n > 0) {
        duk_push_array(d);
        duk_push_lstring(d, req->host.p, req->host.n);
        duk_put_prop_index(d, -2, 0);
        duk_put_prop_literal(d, -2, "Host");
    }
}

/* r.URL.String(): the path as received and the query. */
static void push_url(duk_context *d, const tp_req_t *req)
{
    tp_str_t u = tp_req_str(req, req->url_off, req->url_len);
    duk_push_lstring(d, u.p, u.n);
}

static const char *body_of(const tp_req_t *req, size_t *len)
{
    if (req->body_buffered && req->rbody.data != NULL) {
        *len = req->rbody.len;
        return req->rbody.data;
    }
    *len = 0;
    return "";
}

static void push_request(duk_context *d, const tp_req_t *req, int b64)
{
    duk_push_object(d);
    push_headers(d, req, 1);
    duk_put_prop_literal(d, -2, "Headers");
    duk_push_object(d);
    duk_put_prop_literal(d, -2, "SetHeaders");
    duk_push_array(d);
    duk_put_prop_literal(d, -2, "DeleteHeaders");
    size_t blen;
    const char *body = body_of(req, &blen);
    if (b64) { /* a user's TykJS decodes it, as Tyk's */
        duk_push_lstring(d, body, blen);
        duk_base64_encode(d, -1);
    } else {
        duk_push_lstring(d, body, blen);
    }
    duk_put_prop_literal(d, -2, "Body");
    push_url(d, req);
    duk_put_prop_literal(d, -2, "URL");
    push_params(d, req->rp->query);
    duk_put_prop_literal(d, -2, "Params");
    duk_push_object(d);
    duk_put_prop_literal(d, -2, "AddParams");
    duk_push_object(d);
    duk_put_prop_literal(d, -2, "ExtendedParams");
    duk_push_array(d);
    duk_put_prop_literal(d, -2, "DeleteParams");
    duk_push_object(d);
    duk_push_int(d, 0);
    duk_put_prop_literal(d, -2, "ResponseCode");
    duk_push_string(d, "");
    duk_put_prop_literal(d, -2, "ResponseError");
    duk_push_string(d, "");
    duk_put_prop_literal(d, -2, "ResponseBody");
    duk_push_object(d);
    duk_put_prop_literal(d, -2, "ResponseHeaders");
    duk_push_false(d);
    duk_put_prop_literal(d, -2, "OverrideError");
    duk_put_prop_literal(d, -2, "ReturnOverrides");
    duk_push_false(d);
    duk_put_prop_literal(d, -2, "IgnoreBody");
    duk_push_string(d, llhttp_method_name((llhttp_method_t)req->method));
    duk_put_prop_literal(d, -2, "Method");
    push_url(d, req);
    duk_put_prop_literal(d, -2, "RequestURI");
    duk_push_string(d, req->conn->io.tls != NULL ? "https" : "http");
    duk_put_prop_literal(d, -2, "Scheme");
}

static duk_ret_t json_decode_safe(duk_context *d, void *udata)
{
    (void)udata;
    duk_json_decode(d, -1);
    return 1;
}

/* Decodes the JSON text <s> onto the stack: 0, or -1 (nothing pushed). */
static int push_json(duk_context *d, const char *s)
{
    duk_push_string(d, s);
    if (duk_safe_call(d, json_decode_safe, NULL, 1, 1) != 0) {
        duk_pop(d);
        return -1;
    }
    return 0;
}

static void push_session(duk_context *d, const tp_req_t *req, int with_session)
{
    if (with_session && req->sess != NULL) {
        char *s = cJSON_PrintUnformatted(tp_session_json(req->sess));
        int rc = s != NULL ? push_json(d, s) : -1;
        cJSON_free(s);
        if (rc == 0)
            return;
    }
    push_kept(d, "tp_empty_session");
}

/* ---- what a hook returns: the new request --------------------------------------------- */

/* A header of the request being rebuilt. */
typedef struct nhdr_s {
    const char *name, *val;
    size_t nlen, vlen;
} nhdr_t;

typedef struct edit_s {
    nhdr_t *h;
    size_t n, cap;
    int changed;
} edit_t;

static void edit_add(edit_t *e, const char *name, size_t nlen, const char *val, size_t vlen)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->h = tp_realloc(e->h, e->cap * sizeof(*e->h));
    }
    e->h[e->n++] = (nhdr_t){name, val, nlen, vlen};
}

static void edit_del(edit_t *e, const char *name, size_t nlen)
{
    size_t j = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (e->h[i].nlen == nlen && strncasecmp(e->h[i].name, name, nlen) == 0) {
            e->changed = 1;
            continue;
        }
        e->h[j++] = e->h[i];
    }
    e->n = j;
}

/* Go's url.QueryEscape. */
static void query_escape(tp_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            tp_buf_putc(b, (char)c);
        } else if (c == ' ') {
            tp_buf_putc(b, '+');
        } else {
            tp_buf_putc(b, '%');
            tp_buf_putc(b, hex[c >> 4]);
            tp_buf_putc(b, hex[c & 15]);
        }
    }
}

/* Is property <key> of the object at <idx> missing, or an empty array or
 * object? */
static int prop_empty(duk_context *d, duk_idx_t idx, const char *key)
{
    duk_get_prop_string(d, idx, key);
    int empty = 1;
    if (duk_is_array(d, -1)) {
        empty = duk_get_length(d, -1) == 0;
    } else if (duk_is_object(d, -1)) {
        duk_enum(d, -1, DUK_ENUM_OWN_PROPERTIES_ONLY);
        empty = !duk_next(d, -1, 0);
        duk_pop_n(d, empty ? 1 : 2);
    }
    duk_pop(d);
    return empty;
}

/* Each element of the array property <key> of the object at <idx>, as a
 * string, to <fn>. */
static void each_string(duk_context *d, duk_idx_t idx, const char *key,
                        void (*fn)(void *arg, const char *s, size_t n), void *arg)
{
    duk_get_prop_string(d, idx, key);
    for (duk_size_t i = 0, n = duk_is_array(d, -1) ? duk_get_length(d, -1) : 0; i < n; i++) {
        duk_get_prop_index(d, -1, (duk_uarridx_t)i);
        duk_size_t l;
        const char *s = duk_safe_to_lstring(d, -1, &l);
        fn(arg, s, l);
        duk_pop(d);
    }
    duk_pop(d);
}

/* Each member of the object property <key> of the object at <idx>, as
 * strings, to <fn> (valid during the call). */
static void each_pair(duk_context *d, duk_idx_t idx, const char *key,
                      void (*fn)(void *arg, const char *k, size_t kn, const char *v, size_t vn),
                      void *arg)
{
    duk_get_prop_string(d, idx, key);
    if (duk_is_object(d, -1)) {
        duk_enum(d, -1, DUK_ENUM_OWN_PROPERTIES_ONLY);
        while (duk_next(d, -1, 1)) {
            duk_size_t kl, vl;
            const char *ks = duk_safe_to_lstring(d, -2, &kl);
            const char *vs = duk_safe_to_lstring(d, -1, &vl);
            fn(arg, ks, kl, vs, vl);
            duk_pop_2(d);
        }
        duk_pop(d);
    }
    duk_pop(d);
}

/* Query parameters being edited: names and values copied into <b>. */
typedef struct kv_s {
    size_t k, kn, v, vn;
} kv_t;
typedef struct kvs_s {
    kv_t *v;
    size_t n;
    tp_buf_t b;
    int changed;
} kvs_t;

static void kvs_add(kvs_t *L, const char *k, size_t kn, const char *v, size_t vn, int decode)
{
    L->v = tp_realloc(L->v, (L->n + 1) * sizeof(*L->v));
    kv_t *x = &L->v[L->n++];
    x->k = L->b.len;
    if (decode)
        tp_query_unescape(&L->b, k, kn);
    else
        tp_buf_append(&L->b, k, kn);
    x->kn = L->b.len - x->k;
    x->v = L->b.len;
    if (decode)
        tp_query_unescape(&L->b, v, vn);
    else
        tp_buf_append(&L->b, v, vn);
    x->vn = L->b.len - x->v;
}

static int kv_is(const kvs_t *L, size_t i, const char *k, size_t kn)
{
    return L->v[i].kn == kn && memcmp(L->b.data + L->v[i].k, k, kn) == 0;
}

/* Drops every value of <k>: how many there were. */
static size_t kvs_del(kvs_t *L, const char *k, size_t kn)
{
    size_t w = 0, gone = 0;
    for (size_t i = 0; i < L->n; i++) {
        if (kv_is(L, i, k, kn)) {
            gone++;
            continue;
        }
        L->v[w++] = L->v[i];
    }
    L->n = w;
    return gone;
}

static int kv_cmp(const kvs_t *L, const kv_t *x, const kv_t *y)
{
    size_t n = x->kn < y->kn ? x->kn : y->kn;
    int c = memcmp(L->b.data + x->k, L->b.data + y->k, n);
    return c != 0 ? c : (x->kn > y->kn) - (x->kn < y->kn);
}

static void param_del(void *arg, const char *k, size_t kn)
{
    kvs_t *L = arg;
    L->changed |= kvs_del(L, k, kn) > 0;
}

/* url.Values.Set: unchanged when it was this one value already. */
static void param_set(void *arg, const char *k, size_t kn, const char *v, size_t vn)
{
    kvs_t *L = arg;
    size_t n = 0, at = 0;
    for (size_t i = 0; i < L->n; i++)
        if (kv_is(L, i, k, kn)) {
            n++;
            at = i;
        }
    int same = n == 1 && L->v[at].vn == vn && memcmp(L->b.data + L->v[at].v, v, vn) == 0;
    kvs_del(L, k, kn);
    L->changed |= !same;
    kvs_add(L, k, kn, v, vn, 0);
}

/* ReconstructParams: query <q> with DeleteParams, AddParams (set) and
 * ExtendedParams (added) of the request object at <ri>, re-encoded as Go's
 * url.Values.Encode (names sorted, values in order) when that changed it:
 * 1 with the new query in <out>, or 0. */
static int new_query(duk_context *d, duk_idx_t ri, tp_str_t q, tp_buf_t *out, kvs_t *Lp)
{
    if (prop_empty(d, ri, "DeleteParams") && prop_empty(d, ri, "AddParams") &&
        prop_empty(d, ri, "ExtendedParams"))
        return 0;
#define L (*Lp) /* the caller's: it frees what a throw would leave */
    tp_str_t k, v;
    while (tp_query_next(&q, &k, &v))
        kvs_add(&L, k.p, k.n, v.p, v.n, 1);
    each_string(d, ri, "DeleteParams", param_del, Lp);
    each_pair(d, ri, "AddParams", param_set, Lp);
    duk_get_prop_literal(d, ri, "ExtendedParams");
    if (duk_is_object(d, -1)) {
        duk_enum(d, -1, DUK_ENUM_OWN_PROPERTIES_ONLY);
        while (duk_next(d, -1, 1)) {
            duk_size_t kl;
            const char *ks = duk_safe_to_lstring(d, -2, &kl);
            for (duk_size_t i = 0, n = duk_is_array(d, -1) ? duk_get_length(d, -1) : 0; i < n;
                 i++) {
                duk_get_prop_index(d, -1, (duk_uarridx_t)i);
                duk_size_t vl;
                const char *vs = duk_safe_to_lstring(d, -1, &vl);
                kvs_add(&L, ks, kl, vs, vl, 0);
                L.changed = 1;
                duk_pop(d);
            }
            duk_pop_2(d);
        }
        duk_pop(d);
    }
    duk_pop(d);
    int changed = L.changed;
    if (changed) {
        for (size_t i = 1; i < L.n; i++) /* stable: values keep their order */
            for (size_t j = i; j > 0 && kv_cmp(&L, &L.v[j - 1], &L.v[j]) > 0; j--) {
                kv_t t = L.v[j];
                L.v[j] = L.v[j - 1];
                L.v[j - 1] = t;
            }
        for (size_t i = 0; i < L.n; i++) {
            if (i > 0)
                tp_buf_putc(out, '&');
            query_escape(out, L.b.data + L.v[i].k, L.v[i].kn);
            tp_buf_putc(out, '=');
            query_escape(out, L.b.data + L.v[i].v, L.v[i].vn);
        }
    }
    return changed;
#undef L
}

/* The request again, in the request's arena, with <url> (target and
 * query) and the headers of <e>: every later stage and the upstream see
 * it. -1 when it has more headers than the worker parses. */
static int rebuild_head(tp_req_t *req, tp_str_t url, const edit_t *e)
{
    tp_worker_t *w = req->conn->w;
    if (e->n > w->max_hdrs) {
        tp_log_error("api %s: JS middleware: the request has %zu headers, over %u",
                     req->route->api->api_id, e->n, w->max_hdrs);
        return -1;
    }
    size_t need = url.n + 1;
    for (size_t i = 0; i < e->n; i++)
        need += e->h[i].nlen + e->h[i].vlen + 4;
    char *b = tp_req_alloc(req, need + 1), *p = b;
    memcpy(p, url.p, url.n);
    p += url.n;
    *p++ = ' ';
    req->url_off = 0;
    req->url_len = (uint32_t)url.n;
    req->host = (tp_str_t){"", 0};
    for (size_t i = 0; i < e->n; i++) {
        tp_hdr_t *h = &req->hdrs[i];
        h->name_off = (uint32_t)(p - b);
        h->name_len = (uint32_t)e->h[i].nlen;
        h->kind = -1;
        memcpy(p, e->h[i].name, e->h[i].nlen);
        p += e->h[i].nlen;
        *p++ = ':';
        *p++ = ' ';
        h->val_off = (uint32_t)(p - b);
        h->val_len = (uint32_t)e->h[i].vlen;
        memcpy(p, e->h[i].val, e->h[i].vlen);
        p += e->h[i].vlen;
        *p++ = '\n';
        if (e->h[i].nlen == 4 && strncasecmp(e->h[i].name, "host", 4) == 0)
            req->host = tp_str_trim((tp_str_t){b + h->val_off, h->val_len});
    }
    *p = '\0';
    req->nhdrs = (uint32_t)e->n;
    req->head_base = b;

    /* the paths of the new target */
    tp_str_t t = {b, url.n};
    const char *qm = memchr(t.p, '?', t.n);
    tp_reqpath_t *rp = &req->saved_rp;
    *rp = (tp_reqpath_t){0};
    rp->raw = (tp_str_t){t.p, qm != NULL ? (size_t)(qm - t.p) : t.n};
    rp->query = qm != NULL ? (tp_str_t){qm + 1, t.n - (size_t)(qm + 1 - t.p)} : (tp_str_t){"", 0};
    char *dec = tp_req_alloc(req, rp->raw.n + 1);
    long dn = tp_url_decode(rp->raw.p, rp->raw.n, dec);
    rp->path = dn >= 0 ? (tp_str_t){dec, (size_t)dn} : rp->raw;
    const tp_route_t *route = req->route;
    long m = tp_route_prefix_match(route->prefix, route->len, rp->path, route->templated,
                                   req->snap->router.strict);
    rp->matched = m > 0 ? (size_t)m : 0;
    req->rp = rp;
    return 0;
}

static duk_ret_t b64_decode_safe(duk_context *d, void *udata)
{
    (void)udata;
    duk_base64_decode(d, -1);
    duk_buffer_to_string(d, -1);
    return 1;
}

/* What the reading of a script's answer allocates: the caller owns it and
 * frees it after the protected call, whether that returned or threw. */
typedef struct scratch_s {
    kvs_t L;
    edit_t e;
    tp_buf_t nq, cn, hdrs, pols;
} scratch_t;

static void scratch_free(scratch_t *s)
{
    free(s->L.v);
    tp_buf_free(&s->L.b);
    free(s->e.h);
    tp_buf_free(&s->nq);
    tp_buf_free(&s->cn);
    tp_buf_free(&s->hdrs);
    tp_buf_free(&s->pols);
}

typedef struct hdr_edit_s {
    tp_req_t *req;
    scratch_t *sc;
} hdr_edit_t;

static void header_del(void *arg, const char *k, size_t kn)
{
    hdr_edit_t *he = arg;
    edit_del(&he->sc->e, k, kn);
}

/* Go's Header.Set: the name canonical, the others of that name gone (the
 * strings are copied: the coerced ones go with the stack). */
static void header_set(void *arg, const char *k, size_t kn, const char *v, size_t vn)
{
    hdr_edit_t *he = arg;
    edit_t *e = &he->sc->e;
    tp_buf_t *cn = &he->sc->cn;
    edit_del(e, k, kn);
    cn->len = 0;
    tp_http_put_canonical(cn, k, kn);
    edit_add(e, tp_req_strndup(he->req, cn->data, cn->len), cn->len, tp_req_strndup(he->req, v, vn),
             vn);
    e->changed = 1;
}

/* The request object a hook returned (at <ri>; its Body base64 when <b64>)
 * applied to the request. -1: it cannot be (logged). */
static int apply_request(duk_context *d, tp_req_t *req, duk_idx_t ri, int b64, scratch_t *sc)
{
    ri = duk_normalize_index(d, ri);
    /* the body, unless IgnoreBody */
    duk_get_prop_literal(d, ri, "IgnoreBody");
    int ignore = duk_to_boolean(d, -1);
    duk_pop(d);
    if (!ignore) {
        duk_get_prop_literal(d, ri, "Body");
        if (b64 && duk_is_string(d, -1) && duk_safe_call(d, b64_decode_safe, NULL, 1, 1) != 0) {
            duk_pop(d);
            duk_push_string(d, "");
        }
        duk_size_t bl = 0;
        const char *body = "";
        if (!duk_is_undefined(d, -1) && !duk_is_null(d, -1))
            body = duk_safe_to_lstring(d, -1, &bl);
        size_t ol;
        const char *old = body_of(req, &ol);
        if (bl != ol || memcmp(body, old, bl) != 0) {
            tp_buf_t nb = {0};
            tp_buf_append(&nb, body, bl);
            tp_buf_free(&req->rbody);
            req->rbody = nb;
            req->body_buffered = 1;
            req->has_body = req->has_body || bl > 0;
        }
        duk_pop(d);
    }

    /* the URL, then its query parameters */
    tp_str_t url = tp_req_str(req, req->url_off, req->url_len);
    int url_changed = 0;
    duk_get_prop_literal(d, ri, "URL");
    if (duk_is_string(d, -1)) {
        duk_size_t ul;
        const char *u = duk_get_lstring(d, -1, &ul);
        if (ul > 0 && (ul != url.n || memcmp(u, url.p, ul) != 0)) {
            /* an absolute URL keeps its path: the upstream stays the API's */
            if (ul > 7 && (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0)) {
                const char *p = strchr(u + 8, '/');
                ul = p != NULL ? ul - (size_t)(p - u) : 1;
                u = p != NULL ? p : "/";
            }
            url = (tp_str_t){tp_req_strndup(req, u, ul), ul};
            url_changed = 1;
        }
    }
    duk_pop(d);
    const char *qm = memchr(url.p, '?', url.n);
    tp_str_t q =
        qm != NULL ? (tp_str_t){qm + 1, url.n - (size_t)(qm + 1 - url.p)} : (tp_str_t){"", 0};
    tp_buf_t *nqp = &sc->nq;
#define nq (*nqp)
    if (new_query(d, ri, q, &nq, &sc->L)) {
        size_t pl = qm != NULL ? (size_t)(qm - url.p) : url.n;
        char *nu = tp_req_alloc(req, pl + 1 + nq.len + 1);
        memcpy(nu, url.p, pl);
        size_t at = pl;
        if (nq.len > 0) {
            nu[at++] = '?';
            memcpy(nu + at, nq.data, nq.len);
            at += nq.len;
        }
        nu[at] = '\0';
        url = (tp_str_t){nu, at};
        url_changed = 1;
    }
#undef nq

    /* DeleteHeaders, then SetHeaders */
    if (!url_changed && prop_empty(d, ri, "DeleteHeaders") && prop_empty(d, ri, "SetHeaders"))
        return 0;
    edit_t *ep = &sc->e;
#define e (*ep)
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        edit_add(&e, req->head_base + h->name_off, h->name_len, req->head_base + h->val_off,
                 h->val_len);
    }
    hdr_edit_t he = {req, sc};
    each_string(d, ri, "DeleteHeaders", header_del, &he);
    each_pair(d, ri, "SetHeaders", header_set, &he);
    int rc = 0;
    if (url_changed || e.changed)
        rc = rebuild_head(req, url, &e);
    return rc;
#undef e
}

/* ---- running hooks ---------------------------------------------------------------------- */

typedef struct jsrun_s {
    tp_req_t *req;
    int kind;                 /* HOOK_*, or -1: a virtual endpoint */
    size_t hook;              /* the hook running */
    const tp_virtual_t *virt; /* the virtual endpoint */
    int64_t deadline;         /* the running hook's, over all its runs */
    tp_js_calls_t calls;      /* its TykMakeHttpRequest answers */
    tp_fetch_t *f;            /* the one being made */
} jsrun_t;

static tp_stage_rc_t hooks_go(jsrun_t *r);
static tp_stage_rc_t virtual_go(jsrun_t *r);

/* "Name: value\r\n" lines of the object at <idx> ({name: value}),
 * names in Go's canonical form. */
static void header_lines(duk_context *d, duk_idx_t idx, tp_buf_t *out, int *has_ct)
{
    if (!duk_is_object(d, idx))
        return;
    duk_enum(d, idx, DUK_ENUM_OWN_PROPERTIES_ONLY);
    while (duk_next(d, -1, 1)) {
        duk_size_t kl, vl;
        const char *k = duk_safe_to_lstring(d, -2, &kl);
        const char *v = duk_safe_to_lstring(d, -1, &vl);
        size_t at = out->len;
        tp_http_put_canonical(out, k, kl);
        if (has_ct != NULL && out->len - at == 12 &&
            memcmp(out->data + at, "Content-Type", 12) == 0)
            *has_ct = 1;
        tp_buf_puts(out, ": ");
        for (size_t i = 0; i < vl; i++) /* no header splitting */
            tp_buf_putc(out, v[i] == '\r' || v[i] == '\n' ? ' ' : v[i]);
        tp_buf_puts(out, "\r\n");
        duk_pop_2(d);
    }
    duk_pop(d);
}

/* A response a script made (forceResponse): its headers, Server: tyk, the
 * response stages' headers, Go's sniffed type when it named none. */
static void force_response(tp_req_t *req, int code, const char *body, size_t len, tp_buf_t *hdrs,
                           int has_ct)
{
    tp_buf_puts(hdrs, "Server: tyk\r\n");
    tp_chain_headers(req->run.chain, req, hdrs, TP_RESP_GATEWAY);
    if (code < 100 || code > 999)
        code = 200;
    tp_respond(req, code, has_ct || len == 0 ? NULL : "text/plain; charset=utf-8", body, len,
               tp_buf_cstr(hdrs));
}

static tp_stage_rc_t fail_hook(jsrun_t *r, const char *what, const char *err)
{
    tp_req_t *req = r->req;
    tp_log_error("api %s: JS middleware %s: %s", req->route->api->api_id, what, err);
    tp_respond_error(req, 500, "Internal Server Error");
    return TP_STAGE_DONE;
}

static void on_fetched(void *arg, int status, const char *body, size_t len, const char *err);

/* The run stopped at a TykMakeHttpRequest: made on the loop. */
static tp_stage_rc_t start_fetch(jsrun_t *r)
{
    tp_req_t *req = r->req;
    tp_worker_t *w = req->conn->w;
    if (r->calls.nanswer >= JS_FETCHES_MAX)
        return TP_STAGE_ERROR;
    cJSON *j = cJSON_Parse(r->calls.pending);
    const char *method = cJSON_GetStringValue(cJSON_GetObjectItem(j, "Method"));
    const char *domain = cJSON_GetStringValue(cJSON_GetObjectItem(j, "Domain"));
    const char *res = cJSON_GetStringValue(cJSON_GetObjectItem(j, "Resource"));
    const char *body = cJSON_GetStringValue(cJSON_GetObjectItem(j, "Body"));
    tp_buf_t url = {0}, hdrs = {0}, form = {0};
    int self = cJSON_IsTrue(cJSON_GetObjectItem(j, "Self"));
    const tp_conf_t *conf = w->conf;
    if (self) {
        /* TykGetKeyData / TykSetKeyData: this gateway's own /tyk/keys */
        int64_t port = conf->control_api_port != 0 ? conf->control_api_port : conf->listen_port;
        const char *host = conf->listen_address;
        if (host == NULL || host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
            host = "127.0.0.1";
        else if (strcmp(host, "::") == 0)
            host = "::1";
        int v6 = strchr(host, ':') != NULL;
        tp_buf_printf(&url, "%s://%s%s%s:%lld",
                      conf->http_server_options.use_ssl ? "https" : "http", v6 ? "[" : "", host,
                      v6 ? "]" : "", (long long)port);
        tp_buf_printf(&hdrs, "X-Tyk-Authorization: %s\r\n",
                      conf->secret != NULL ? conf->secret : "");
    } else {
        tp_buf_puts(&url, domain != NULL ? domain : "");
    }
    tp_buf_puts(&url, res != NULL ? res : "");
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(j, "Headers"))
    {
        if (h->string == NULL || !cJSON_IsString(h))
            continue;
        tp_http_put_canonical(&hdrs, h->string, strlen(h->string));
        tp_buf_printf(&hdrs, ": %s\r\n", h->valuestring);
    }
    if ((body == NULL || body[0] == '\0') &&
        cJSON_GetArraySize(cJSON_GetObjectItem(j, "FormData"))) {
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(j, "FormData"))
        {
            if (h->string == NULL || !cJSON_IsString(h))
                continue;
            if (form.len > 0)
                tp_buf_putc(&form, '&');
            query_escape(&form, h->string, strlen(h->string));
            tp_buf_putc(&form, '=');
            query_escape(&form, h->valuestring, strlen(h->valuestring));
        }
        body = tp_buf_cstr(&form);
    }
    int64_t left = r->deadline - tp_js_now_ms();
    tp_fetch_t *f = NULL;
    if (left > 0)
        f = tp_fetch_request(w, method != NULL && method[0] != '\0' ? method : "GET",
                             tp_buf_cstr(&url), hdrs.len > 0 ? tp_buf_cstr(&hdrs) : NULL,
                             body != NULL && body[0] != '\0' ? body : NULL,
                             body != NULL ? strlen(body) : 0,
                             self || conf->proxy_ssl.insecure_skip_verify, left, on_fetched, r);
    if (f == NULL && left > 0)
        tp_log_error("jsvm: TykMakeHttpRequest: cannot request \"%s\"", tp_buf_cstr(&url));
    tp_buf_free(&url);
    tp_buf_free(&hdrs);
    tp_buf_free(&form);
    cJSON_Delete(j);
    if (f == NULL) {
        /* Tyk answers undefined; the run goes on with that */
        r->calls.answer =
            tp_realloc(r->calls.answer, (size_t)(r->calls.nanswer + 1) * sizeof(char *));
        r->calls.answer[r->calls.nanswer++] = NULL;
        return r->kind >= 0 ? hooks_go(r) : virtual_go(r);
    }
    r->f = f;
    tp_req_save(req, req->rp); /* the head leaves the read buffer while it waits */
    return TP_STAGE_LATER;
}

static void on_fetched(void *arg, int status, const char *body, size_t len, const char *err)
{
    jsrun_t *r = arg;
    char *answer = NULL;
    if (status == 0) {
        tp_log_error("jsvm: TykMakeHttpRequest: Request failed: %s", err != NULL ? err : "?");
    } else {
        /* TykJSHttpResponse: Code, Body, Headers and their lower-case twins */
        cJSON *o = cJSON_CreateObject(), *hs = cJSON_CreateObject();
        const char *lines = tp_fetch_response_headers(r->f);
        tp_buf_t name = {0};
        for (const char *p = lines != NULL ? lines : ""; *p != '\0';) {
            const char *eol = strstr(p, "\r\n"), *colon = strchr(p, ':');
            if (eol == NULL)
                break;
            if (colon != NULL && colon < eol) {
                name.len = 0;
                tp_http_put_canonical(&name, p, (size_t)(colon - p));
                tp_str_t v = tp_str_trim((tp_str_t){colon + 1, (size_t)(eol - colon - 1)});
                cJSON *arr = cJSON_GetObjectItemCaseSensitive(hs, tp_buf_cstr(&name));
                if (arr == NULL)
                    arr = cJSON_AddArrayToObject(hs, tp_buf_cstr(&name));
                char *vs = tp_malloc(v.n + 1);
                memcpy(vs, v.p, v.n);
                vs[v.n] = '\0';
                cJSON_AddItemToArray(arr, cJSON_CreateString(vs));
                free(vs);
            }
            p = eol + 2;
        }
        tp_buf_free(&name);
        char *b = tp_malloc(len + 1);
        memcpy(b, body, len);
        b[len] = '\0';
        cJSON_AddNumberToObject(o, "Code", status);
        cJSON_AddStringToObject(o, "Body", b);
        cJSON_AddItemToObject(o, "Headers", cJSON_Duplicate(hs, 1));
        cJSON_AddNumberToObject(o, "code", status);
        cJSON_AddStringToObject(o, "body", b);
        cJSON_AddItemToObject(o, "headers", hs);
        free(b);
        char *s = cJSON_PrintUnformatted(o);
        answer = tp_strdup(s);
        cJSON_free(s);
        cJSON_Delete(o);
    }
    r->f = NULL;
    r->calls.answer = tp_realloc(r->calls.answer, (size_t)(r->calls.nanswer + 1) * sizeof(char *));
    r->calls.answer[r->calls.nanswer++] = answer;
    tp_req_t *req = r->req;
    tp_stage_rc_t rc = r->kind >= 0 ? hooks_go(r) : virtual_go(r);
    if (rc == TP_STAGE_NEXT || rc == TP_STAGE_ERROR)
        tp_chain_resume(req, rc);
}

/* The SessionMeta of the object at <idx> (a virtual endpoint's decoded
 * answer: plain data) becomes the session's meta_data when it changed. */
static void save_meta(duk_context *d, tp_req_t *req, duk_idx_t idx)
{
    if (req->sess == NULL)
        return;
    duk_get_prop_literal(d, idx, "SessionMeta");
    if (duk_is_object(d, -1) && !duk_is_array(d, -1)) {
        const char *s = duk_json_encode(d, -1);
        if (s != NULL)
            tp_session_set_meta(req, s);
    }
    duk_pop(d);
}

/* What a hook's answer asks, read by result_safe. */
enum { ACT_NEXT, ACT_BAD, ACT_ERROR, ACT_RESPOND, ACT_FAILED };
typedef struct hookres_s {
    tp_req_t *req;
    int native, auth, meta; /* plain bodies; an auth hook; SessionMeta is saved */
    int action;
    int code, has_ct;
    const char *msg; /* ACT_ERROR's message, ACT_RESPOND's body (the arena) */
    size_t msglen;
    scratch_t sc;          /* sc.hdrs: the response's header lines */
    const char *meta_json; /* SessionMeta, when it is to be saved (the arena) */
    const char *key;       /* an auth hook's identity, session and its policies */
    const char *session_json;
    const char *pols;
    size_t pols_len;
    int64_t expires;
} hookres_t;

/* The answer (argument 0) of a hook, protected: overrides, the request's
 * changes (applied here: nothing in them calls out of the engine), the
 * SessionMeta and the auth hook's session, copied into the arena. */
static duk_ret_t result_safe(duk_context *d, void *udata)
{
    hookres_t *hr = udata;
    tp_req_t *req = hr->req;
    duk_get_prop_literal(d, 0, "Request");
    if (!duk_is_object(d, -1)) {
        hr->action = ACT_BAD;
        return 0;
    }
    duk_idx_t ri = duk_get_top_index(d);
    duk_get_prop_literal(d, ri, "ReturnOverrides");
    if (duk_is_object(d, -1)) {
        duk_get_prop_literal(d, -1, "ResponseCode");
        int code = duk_is_number(d, -1) ? (int)duk_get_int(d, -1) : 0;
        duk_get_prop_literal(d, -2, "ResponseError");
        duk_get_prop_literal(d, -3, "ResponseBody");
        duk_get_prop_literal(d, -4, "OverrideError");
        int override_error = duk_to_boolean(d, -1);
        duk_size_t el = 0, bl = 0;
        const char *rerr = duk_is_string(d, -3) ? duk_get_lstring(d, -3, &el) : "";
        const char *rbody = duk_is_string(d, -2) ? duk_get_lstring(d, -2, &bl) : "";
        if (el > 0) {
            rbody = rerr;
            bl = el;
        }
        if (code != 0) {
            duk_get_prop_literal(d, -5, "ResponseHeaders");
            header_lines(d, -1, &hr->sc.hdrs, &hr->has_ct);
            hr->code = code;
            hr->msg = tp_req_strndup(req, rbody, bl);
            hr->msglen = bl;
            hr->action = code >= 400 && !override_error ? ACT_ERROR : ACT_RESPOND;
            return 0;
        }
    }
    duk_pop(d);
    if (apply_request(d, req, ri, !hr->native, &hr->sc) < 0) {
        hr->action = ACT_FAILED;
        return 0;
    }
    if (hr->meta && req->sess != NULL) {
        duk_get_prop_literal(d, 0, "SessionMeta");
        if (duk_is_object(d, -1) && !duk_is_array(d, -1)) {
            const char *js = duk_json_encode(d, -1);
            if (js != NULL)
                hr->meta_json = tp_req_strndup(req, js, strlen(js));
        }
    }
    if (hr->auth) {
        duk_get_prop_literal(d, 0, "AuthValue");
        const char *av = duk_is_string(d, -1) ? duk_get_string(d, -1) : "";
        if (av[0] != '\0') {
            hr->key = tp_req_strndup(req, av, strlen(av));
        } else {
            const char *api = req->route->api->api_id;
            char *k = tp_req_alloc(req, strlen(api) + 9);
            snprintf(k, strlen(api) + 9, "js-auth-%s", api);
            hr->key = k;
        }
        duk_get_prop_literal(d, 0, "Session");
        if (!duk_is_object(d, -1)) {
            duk_pop(d);
            duk_push_object(d);
        }
        duk_idx_t si = duk_get_top_index(d);
        tp_buf_t *pols = &hr->sc.pols;
        duk_get_prop_literal(d, si, "apply_policies");
        for (duk_size_t i = 0, n = duk_is_array(d, -1) ? duk_get_length(d, -1) : 0; i < n; i++) {
            duk_get_prop_index(d, -1, (duk_uarridx_t)i);
            if (duk_is_string(d, -1)) {
                tp_buf_puts(pols, duk_get_string(d, -1));
                tp_buf_putc(pols, '\0');
            }
            duk_pop(d);
        }
        duk_pop(d);
        tp_buf_putc(pols, '\0');
        char *pc = tp_req_alloc(req, pols->len);
        memcpy(pc, pols->data, pols->len);
        hr->pols = pc;
        hr->pols_len = pols->len;
        duk_get_prop_literal(d, si, "expires");
        hr->expires = duk_is_number(d, -1) ? (int64_t)duk_get_number(d, -1) : 0;
        duk_pop(d);
        duk_dup(d, si);
        const char *json = duk_json_encode(d, -1);
        hr->session_json =
            tp_req_strndup(req, json != NULL ? json : "{}", json != NULL ? strlen(json) : 2);
    }
    return 0;
}

/* auth_check's answer (Tyk's DynamicMiddleware with Auth): the Session
 * the hook returned (ReturnAuthData) is the request's session, under its
 * AuthValue (one identity for the API when the hook gives none, as Tyk's
 * empty KeyID): stored when that key has none yet or its policies or
 * expiry differ, then the key checks go on with it as with any key. */
static tp_stage_rc_t auth_session(jsrun_t *r, const hookres_t *hr)
{
    tp_js_calls_free(&r->calls); /* the lookup may wait: nothing is left to hold */
    tp_sess_want_t want = {hr->session_json, hr->pols, hr->pols_len,
                           hr->expires > 0 ? hr->expires : 0};
    tp_session_method(r->req, TP_ID_OTHER);
    return tp_session_lookup_as(r->req, (tp_str_t){hr->key, strlen(hr->key)}, TP_AUTH_KEY_NOT_FOUND,
                                &want);
}

/* With the function (and its "this" when <with_this>) and the request
 * object on the stack: pushes the session (the request's when
 * <with_session>) and the config, and calls. TP_JS_OK with the value on
 * the stack; otherwise the stack is back at <top>: TP_JS_ERROR with the
 * reason in <err>, or TP_JS_SUSPENDED when the script asked for a request,
 * which is started (*later: the stage's answer meanwhile). */
static int call(jsrun_t *r, const tp_jsmw_api_t *m, duk_idx_t top, int with_this, int with_session,
                char *err, size_t errlen, tp_stage_rc_t *later)
{
    duk_context *d = tp_js_ctx_duk(m->ctx);
    push_session(d, r->req, with_session);
    push_kept(d, "tp_config");
    int rc = tp_js_call(m->ctx, 3, with_this, r->deadline, &r->calls, err, errlen);
    if (rc != TP_JS_OK)
        duk_set_top(d, top);
    if (rc == TP_JS_SUSPENDED)
        *later = start_fetch(r);
    return rc;
}

/* One run of hook <h>: TP_STAGE_NEXT when the request goes on. */
static tp_stage_rc_t run_hook(jsrun_t *r, const tp_jsmw_api_t *m, const hook_t *h)
{
    tp_req_t *req = r->req;
    duk_context *d = tp_js_ctx_duk(m->ctx);
    duk_idx_t top = duk_get_top(d);
    int native = tp_js_ctx_native_core(m->ctx);
    char err[1024];
    duk_get_global_string(d, h->name);
    if (!duk_is_object(d, -1)) {
        snprintf(err, sizeof(err), "ReferenceError: %s is not defined", h->name);
        duk_set_top(d, top);
        return fail_hook(r, h->name, err);
    }
    duk_get_prop_literal(d, -1, "DoProcessRequest");
    duk_swap(d, -1, -2);
    push_request(d, req, !native);
    tp_stage_rc_t later;
    int rc = call(r, m, top, 1, h->session && r->kind != HOOK_PRE, err, sizeof(err), &later);
    if (rc == TP_JS_SUSPENDED)
        return later;
    if (rc != TP_JS_OK)
        return fail_hook(r, h->name, err);
    if (duk_is_string(d, -1) && push_json(d, duk_get_string(d, -1)) == 0)
        duk_remove(d, -2);
    /* read in a protected call with the deadline: a getter, a proxy or a
     * valueOf in the answer runs script code, which may throw or loop */
    hookres_t hr = {.req = req,
                    .native = native,
                    .auth = r->kind == HOOK_AUTH,
                    .meta = h->session && r->kind != HOOK_PRE};
    rc = tp_js_safe(m->ctx, result_safe, &hr, 1, r->deadline, err, sizeof(err));
    tp_stage_rc_t out = TP_STAGE_NEXT;
    if (rc != TP_JS_OK) {
        out = fail_hook(r, h->name, err);
    } else if (hr.action == ACT_BAD) {
        out = fail_hook(r, h->name, "Failed to decode middleware request data on return from VM");
    } else if (hr.action == ACT_ERROR) {
        tp_respond_error_with(req, hr.code, hr.msg,
                              hr.sc.hdrs.len > 0 ? tp_buf_cstr(&hr.sc.hdrs) : NULL);
        out = TP_STAGE_DONE;
    } else if (hr.action == ACT_RESPOND) {
        force_response(req, hr.code, hr.msg, hr.msglen, &hr.sc.hdrs, hr.has_ct);
        out = TP_STAGE_DONE;
    } else if (hr.action == ACT_FAILED) {
        tp_respond_error(req, 500, "Internal Server Error");
        out = TP_STAGE_DONE;
    }
    scratch_free(&hr.sc);
    duk_set_top(d, top);
    if (out != TP_STAGE_NEXT)
        return out;
    if (hr.auth)
        return auth_session(r, &hr);
    if (hr.meta_json != NULL)
        tp_session_set_meta(req, hr.meta_json);
    return TP_STAGE_NEXT;
}

static tp_stage_rc_t hooks_go(jsrun_t *r)
{
    tp_req_t *req = r->req;
    tp_jsmw_api_t *m = jsmw_of(req);
    if (m == NULL || m->ctx == NULL)
        return TP_STAGE_ERROR;
    for (; r->hook < m->nhooks[r->kind]; r->hook++) {
        if (r->calls.nanswer == 0)
            r->deadline = tp_js_now_ms() + m->timeout_ms;
        tp_stage_rc_t rc = run_hook(r, m, &m->hooks[r->kind][r->hook]);
        if (rc != TP_STAGE_NEXT)
            return rc;
        tp_js_calls_free(&r->calls);
    }
    tp_js_calls_free(&r->calls);
    return TP_STAGE_NEXT;
}

static tp_stage_rc_t hooks_run(tp_req_t *req, int kind)
{
    tp_jsmw_api_t *m = jsmw_of(req);
    if (m == NULL || m->nhooks[kind] == 0)
        return TP_STAGE_NEXT;
    if (m->ctx == NULL) {
        tp_respond_error(req, 500, "Middleware error");
        return TP_STAGE_DONE;
    }
    jsrun_t *r = tp_chain_state(req);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->kind = kind;
    return hooks_go(r);
}

static void js_cancel(tp_req_t *req)
{
    jsrun_t *r = tp_chain_state_peek(req);
    if (r == NULL)
        return;
    if (r->f != NULL)
        tp_fetch_drop(r->f);
    r->f = NULL;
    tp_js_calls_free(&r->calls);
}

static tp_stage_rc_t pre_run(tp_req_t *req)
{
    return hooks_run(req, HOOK_PRE);
}
static tp_stage_rc_t post_key_auth_run(tp_req_t *req)
{
    return hooks_run(req, HOOK_POST_KEY_AUTH);
}
static tp_stage_rc_t post_run(tp_req_t *req)
{
    return hooks_run(req, HOOK_POST);
}
static tp_stage_rc_t auth_run(tp_req_t *req)
{
    return hooks_run(req, HOOK_AUTH);
}

/* ---- virtual endpoints ------------------------------------------------------------------ */

static tp_stage_rc_t virtual_fail(jsrun_t *r, const char *err)
{
    tp_req_t *req = r->req;
    tp_js_calls_free(&r->calls);
    tp_log_error("api %s: virtual endpoint %s: %s", req->route->api->api_id, r->virt->fn, err);
    if (r->virt->proxy_on_error)
        return TP_STAGE_NEXT;
    tp_respond_error(req, 500,
                     "Error during virtual endpoint execution. Contact Administrator for more "
                     "details.");
    return TP_STAGE_DONE;
}

static int is_form(const tp_req_t *req)
{
    tp_str_t ct = tp_req_header(req, "Content-Type");
    return ct.n >= 33 && strncasecmp(ct.p, "application/x-www-form-urlencoded", 33) == 0 &&
           (req->method == HTTP_POST || req->method == HTTP_PUT || req->method == HTTP_PATCH);
}

static tp_stage_rc_t virtual_go(jsrun_t *r)
{
    tp_req_t *req = r->req;
    tp_jsmw_api_t *m = jsmw_of(req);
    if (m == NULL || m->ctx == NULL)
        return virtual_fail(r, "the JavaScript engine is not set up for this API");
    if (r->calls.nanswer == 0)
        r->deadline = tp_js_now_ms() + m->timeout_ms;
    duk_context *d = tp_js_ctx_duk(m->ctx);
    duk_idx_t top = duk_get_top(d);
    char err[1024];
    duk_get_global_string(d, r->virt->fn);
    if (!duk_is_function(d, -1)) {
        duk_set_top(d, top);
        snprintf(err, sizeof(err), "ReferenceError: %s is not defined", r->virt->fn);
        return virtual_fail(r, err);
    }
    /* RequestObject: Headers, Body, URL, Params (query and form), Scheme */
    duk_push_object(d);
    push_headers(d, req, 0);
    duk_put_prop_literal(d, -2, "Headers");
    size_t blen;
    const char *body = body_of(req, &blen);
    duk_push_lstring(d, body, blen);
    duk_put_prop_literal(d, -2, "Body");
    push_url(d, req);
    duk_put_prop_literal(d, -2, "URL");
    if (is_form(req)) {
        tp_buf_t q = {0};
        tp_buf_append(&q, body, blen);
        if (req->rp->query.n > 0) {
            tp_buf_putc(&q, '&');
            tp_buf_put_str(&q, req->rp->query);
        }
        push_params(d, (tp_str_t){q.data != NULL ? q.data : "", q.len});
        tp_buf_free(&q);
    } else {
        push_params(d, req->rp->query);
    }
    duk_put_prop_literal(d, -2, "Params");
    duk_push_string(d, req->conn->io.tls != NULL ? "https" : "http");
    duk_put_prop_literal(d, -2, "Scheme");
    tp_stage_rc_t later;
    int rc = call(r, m, top, 0, r->virt->use_session, err, sizeof(err), &later);
    if (rc == TP_JS_SUSPENDED)
        return later;
    if (rc != TP_JS_OK)
        return virtual_fail(r, err);
    if (!duk_is_string(d, -1) || push_json(d, duk_get_string(d, -1)) < 0 || !duk_is_object(d, -1)) {
        duk_set_top(d, top);
        return virtual_fail(r, "Failed to decode virtual endpoint response data on return from "
                               "VM (TykJsResponse returns it)");
    }
    duk_get_prop_literal(d, -1, "Response");
    duk_get_prop_literal(d, -1, "Code");
    int code = duk_is_number(d, -1) ? (int)duk_get_int(d, -1) : 0;
    duk_get_prop_literal(d, -2, "Body");
    duk_size_t bl = 0;
    const char *rbody = duk_is_string(d, -1) ? duk_get_lstring(d, -1, &bl) : "";
    tp_buf_t hdrs = {0};
    int has_ct = 0;
    duk_get_prop_literal(d, -3, "Headers");
    header_lines(d, -1, &hdrs, &has_ct);
    char *b = tp_req_strndup(req, rbody, bl);
    if (r->virt->use_session)
        save_meta(d, req, top + 1); /* the decoded {Response, SessionMeta} */
    duk_set_top(d, top);
    tp_js_calls_free(&r->calls);
    force_response(req, code, b, bl, &hdrs, has_ct);
    tp_buf_free(&hdrs);
    return TP_STAGE_DONE;
}

static tp_stage_rc_t virtual_run(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version != NULL ? req->version->mw : NULL;
    if (mw == NULL || mw->nvirt == 0)
        return TP_STAGE_NEXT;
    const tp_virtual_t *v = tp_epmatch_first(req, mw->virt, mw->nvirt, sizeof(*mw->virt));
    if (v == NULL)
        return TP_STAGE_NEXT;
    jsrun_t *r = tp_chain_state(req);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->kind = -1;
    r->virt = v;
    return virtual_go(r);
}

/* ---- response hooks ---------------------------------------------------------------------- */

/* The status line's code, and each header line of <head> (no blank line). */
static int head_status(const tp_buf_t *head)
{
    return head->len > 12 ? atoi(head->data + 9) : 0;
}

static int hop_by_hop(const char *name, size_t n)
{
    return tp_http_is_hop_by_hop(tp_http_header_kind(name, n));
}

/* {Canonical-Name: [values]} of the header lines of <head>. */
static void push_head_headers(duk_context *d, const tp_buf_t *head)
{
    duk_push_object(d);
    tp_buf_t nb = {0};
    const char *p = memchr(head->data, '\n', head->len), *end = head->data + head->len;
    for (p = p != NULL ? p + 1 : end; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon;
        size_t ln = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
        size_t vn = ln > 0 && p[ln - 1] == '\r' ? ln - 1 : ln; /* without the CR */
        colon = memchr(p, ':', vn);
        if (colon != NULL && !hop_by_hop(p, (size_t)(colon - p))) {
            nb.len = 0;
            tp_http_put_canonical(&nb, p, (size_t)(colon - p));
            tp_str_t v = tp_str_trim((tp_str_t){colon + 1, vn - (size_t)(colon + 1 - p)});
            duk_get_prop_lstring(d, -1, nb.data, nb.len);
            if (!duk_is_array(d, -1)) {
                duk_pop(d);
                duk_push_array(d);
                duk_dup(d, -1);
                duk_put_prop_lstring(d, -3, nb.data, nb.len);
            }
            duk_push_lstring(d, v.p, v.n);
            duk_put_prop_index(d, -2, (duk_uarridx_t)duk_get_length(d, -2));
            duk_pop(d);
        }
        p += ln + 1;
    }
    tp_buf_free(&nb);
}

/* The head again with status <code> (when not 0), without the headers
 * DeleteHeaders names and with SetHeaders, from the Response at <ri>. */
static void rebuild_resp_head(duk_context *d, duk_idx_t ri, tp_buf_t *head)
{
    tp_buf_t out = {0};
    duk_get_prop_literal(d, ri, "StatusCode");
    int code = duk_is_number(d, -1) ? (int)duk_get_int(d, -1) : 0;
    duk_pop(d);
    const char *p = memchr(head->data, '\n', head->len), *end = head->data + head->len;
    p = p != NULL ? p + 1 : end;
    if (code >= 100 && code <= 999 && code != head_status(head))
        tp_buf_printf(&out, "HTTP/1.1 %d %s\r\n", code, tp_http_reason(code));
    else
        tp_buf_append(&out, head->data, (size_t)(p - head->data));
    duk_get_prop_literal(d, ri, "DeleteHeaders");
    duk_get_prop_literal(d, ri, "SetHeaders");
    duk_idx_t del = duk_get_top_index(d) - 1, set = duk_get_top_index(d);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t ln = eol != NULL ? (size_t)(eol - p) + 1 : (size_t)(end - p);
        const char *colon = memchr(p, ':', ln);
        int drop = 0;
        if (colon != NULL) {
            size_t nl = (size_t)(colon - p);
            for (duk_size_t i = 0, n = duk_is_array(d, del) ? duk_get_length(d, del) : 0;
                 i < n && !drop; i++) {
                duk_get_prop_index(d, del, (duk_uarridx_t)i);
                duk_size_t l;
                const char *s = duk_safe_to_lstring(d, -1, &l);
                drop = l == nl && strncasecmp(s, p, nl) == 0;
                duk_pop(d);
            }
            if (!drop && duk_is_object(d, set)) {
                duk_enum(d, set, DUK_ENUM_OWN_PROPERTIES_ONLY);
                while (!drop && duk_next(d, -1, 0)) {
                    duk_size_t l;
                    const char *s = duk_safe_to_lstring(d, -1, &l);
                    drop = l == nl && strncasecmp(s, p, nl) == 0;
                    duk_pop(d);
                }
                duk_pop(d);
            }
        }
        if (!drop)
            tp_buf_append(&out, p, ln);
        p += ln;
    }
    header_lines(d, set, &out, NULL);
    duk_pop_2(d);
    tp_buf_free(head);
    *head = out;
}

/* custom_middleware.response: <name>.DoProcessResponse(response, session,
 * config) with {StatusCode, Body, Headers, SetHeaders, DeleteHeaders}, as
 * Tyk's JSVMResponseHook; its Response's status (when not 0), headers and
 * body go to the client. A hook that fails leaves the response as it was
 * (logged). No requests from response hooks (they would have to wait
 * with the whole response held). */
static void response_body(tp_req_t *req, tp_buf_t *head, tp_buf_t *body)
{
    tp_jsmw_api_t *m = jsmw_of(req);
    if (m == NULL || m->ctx == NULL)
        return;
    duk_context *d = tp_js_ctx_duk(m->ctx);
    int native = tp_js_ctx_native_core(m->ctx);
    for (size_t i = 0; i < m->nhooks[HOOK_RESPONSE]; i++) {
        const hook_t *h = &m->hooks[HOOK_RESPONSE][i];
        duk_idx_t top = duk_get_top(d);
        char err[1024];
        duk_get_global_string(d, h->name);
        if (!duk_is_object(d, -1)) {
            tp_log_error("api %s: JS response middleware %s: ReferenceError: %s is not defined",
                         req->route->api->api_id, h->name, h->name);
            duk_set_top(d, top);
            continue;
        }
        duk_get_prop_literal(d, -1, "DoProcessResponse");
        duk_swap(d, -1, -2);
        duk_push_object(d);
        duk_push_int(d, head_status(head));
        duk_put_prop_literal(d, -2, "StatusCode");
        duk_push_lstring(d, body->data != NULL ? body->data : "", body->len);
        if (!native)
            duk_base64_encode(d, -1);
        duk_put_prop_literal(d, -2, "Body");
        push_head_headers(d, head);
        duk_put_prop_literal(d, -2, "Headers");
        duk_push_object(d);
        duk_put_prop_literal(d, -2, "SetHeaders");
        duk_push_array(d);
        duk_put_prop_literal(d, -2, "DeleteHeaders");
        push_session(d, req, 1);
        push_kept(d, "tp_config");
        int64_t deadline = tp_js_now_ms() + m->timeout_ms;
        int rc = tp_js_call(m->ctx, 3, 1, deadline, NULL, err, sizeof(err));
        if (rc == TP_JS_OK && duk_is_string(d, -1) && push_json(d, duk_get_string(d, -1)) == 0)
            duk_remove(d, -2);
        if (rc == TP_JS_OK)
            rc = tp_js_plain(m->ctx, deadline, err, sizeof(err));
        if (rc == TP_JS_OK) {
            duk_get_prop_literal(d, -1, "Response");
            if (!duk_is_object(d, -1)) {
                rc = TP_JS_ERROR;
                snprintf(err, sizeof(err), "Failed to decode response data from JSVM");
            }
        }
        if (rc != TP_JS_OK) {
            tp_log_error("api %s: JS response middleware %s: %s", req->route->api->api_id, h->name,
                         err);
            duk_set_top(d, top);
            continue;
        }
        duk_idx_t ri = duk_get_top_index(d);
        rebuild_resp_head(d, ri, head);
        duk_get_prop_literal(d, ri, "Body");
        if (!native && duk_is_string(d, -1) && duk_safe_call(d, b64_decode_safe, NULL, 1, 1) != 0) {
            duk_pop(d);
            duk_push_string(d, "");
        }
        duk_size_t bl = 0;
        const char *b = duk_is_string(d, -1) ? duk_get_lstring(d, -1, &bl) : "";
        tp_buf_t nb = {0};
        tp_buf_append(&nb, b, bl);
        tp_buf_free(body);
        *body = nb;
        duk_set_top(d, top);
    }
}

/* ---- the stages ------------------------------------------------------------------------- */

static int pre_wanted(const tp_chain_api_t *a)
{
    return a->js_pre;
}
static int post_key_auth_wanted(const tp_chain_api_t *a)
{
    return a->js_post_key_auth && !a->keyless;
}
static int post_wanted(const tp_chain_api_t *a)
{
    return a->js_post;
}
static int auth_wanted(const tp_chain_api_t *a)
{
    return a->js_auth && !a->keyless;
}
static int virtual_wanted(const tp_chain_api_t *a)
{
    return a->virtual;
}

const tp_stage_t tp_stage_js_pre = {.name = "js_pre",
                                    .wanted = pre_wanted,
                                    .run = pre_run,
                                    .cancel = js_cancel,
                                    .state = sizeof(jsrun_t)};
const tp_stage_t tp_stage_js_post_key_auth = {.name = "js_post_key_auth",
                                              .wanted = post_key_auth_wanted,
                                              .run = post_key_auth_run,
                                              .cancel = js_cancel,
                                              .state = sizeof(jsrun_t)};
const tp_stage_t tp_stage_js_auth = {.name = "js_auth",
                                     .wanted = auth_wanted,
                                     .run = auth_run,
                                     .cancel = js_cancel,
                                     .state = sizeof(jsrun_t)};
const tp_stage_t tp_stage_js_post = {.name = "js_post",
                                     .wanted = post_wanted,
                                     .run = post_run,
                                     .cancel = js_cancel,
                                     .state = sizeof(jsrun_t)};
static int response_wanted(const tp_chain_api_t *a)
{
    return a->js_response;
}

const tp_stage_t tp_stage_js_response = {
    .name = "js_response", .wanted = response_wanted, .body = response_body};
const tp_stage_t tp_stage_virtual = {.name = "virtual",
                                     .wanted = virtual_wanted,
                                     .run = virtual_run,
                                     .cancel = js_cancel,
                                     .state = sizeof(jsrun_t)};
