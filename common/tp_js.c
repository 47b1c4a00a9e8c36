/*
 * common/tp_js.c: the JavaScript engine (see tp_js.h).
 */
#include "tp_js.h"

#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tp_buf.h"
#include "tp_err.h"
#include "tp_keyhash.h"
#include "tp_log.h"

#define UNDERSCORE_JS "/usr/share/javascript/underscore/underscore.js"

struct tp_js_s {
    duk_context *duk;
    size_t live; /* bytes allocated now */
    size_t cap;  /* ... at most, while a call or a load runs (0: no cap) */
    size_t max;  /* the cap above what was live when the call began */
    int64_t deadline_ms;
    unsigned timed_out : 1;
    unsigned has_underscore : 1;
    tp_js_calls_t *calls; /* the running call's TykMakeHttpRequest answers */
    uint64_t next_id;
};

struct tp_js_ctx_s {
    tp_js_t *js;
    duk_context *duk; /* the API's thread, with its own global environment */
    char key[32];     /* where the heap's stash keeps it alive */
    unsigned native_core : 1;
};

/* ---- the allocator: live bytes counted, capped during calls ---------------------------- */

typedef union hdr_u {
    size_t size;
    max_align_t align;
} hdr_t;

static void *js_alloc(void *udata, duk_size_t size)
{
    tp_js_t *js = udata;
    if (js->cap != 0 && js->live + size > js->cap)
        return NULL; /* Duktape collects and retries, then throws */
    hdr_t *h = malloc(sizeof(*h) + size);
    if (h == NULL)
        return NULL;
    h->size = size;
    js->live += size;
    return h + 1;
}

static void js_free(void *udata, void *p)
{
    tp_js_t *js = udata;
    if (p == NULL)
        return;
    hdr_t *h = (hdr_t *)p - 1;
    js->live -= h->size;
    free(h);
}

static void *js_realloc(void *udata, void *p, duk_size_t size)
{
    tp_js_t *js = udata;
    if (p == NULL)
        return js_alloc(udata, size);
    if (size == 0) {
        js_free(udata, p);
        return NULL;
    }
    hdr_t *h = (hdr_t *)p - 1;
    size_t old = h->size;
    if (size > old && js->cap != 0 && js->live + (size - old) > js->cap)
        return NULL;
    hdr_t *n = realloc(h, sizeof(*n) + size);
    if (n == NULL)
        return NULL;
    js->live = js->live - old + size;
    n->size = size;
    return n + 1;
}

static void js_fatal(void *udata, const char *msg)
{
    (void)udata;
    tp_log_error("jsvm: fatal engine error: %s", msg != NULL ? msg : "(none)");
    abort();
}

int64_t tp_js_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Duktape's executor asks this every so many instructions (the build's
 * DUK_USE_EXEC_TIMEOUT_CHECK): true ends the running call with an error
 * (and again at every later check, so a script that catches it cannot
 * go on). */
int tp_js_interrupted(void *udata)
{
    tp_js_t *js = udata;
    if (js == NULL || js->deadline_ms == 0 || tp_js_now_ms() < js->deadline_ms)
        return 0;
    js->timed_out = 1;
    return 1;
}

/* ---- the core library (Tyk's coreJS contract, our own text) -------------------------- */

/* TykJS.TykMiddleware.NewMiddleware(conf) objects with NewProcessRequest
 * (the callback), ReturnData (Request + SessionMeta) and ReturnAuthData
 * (Request + Session), and for response hooks NewProcessResponse and
 * ReturnResponseData (Response + SessionMeta); DoProcessRequest and
 * DoProcessResponse call the callback and return its object as it is
 * (this gateway reads it without JSON). Event handlers
 * keep Tyk's shape; TykJsResponse is Tyk's. */
static const char core_js[] =
    "var TykJS = {TykMiddleware: {}, TykEventHandlers: {}};\n"
    "TykJS.TykMiddleware.MiddlewareComponentMeta = function (configuration) {\n"
    "  this.configuration = configuration;\n"
    "};\n"
    "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.ProcessRequest =\n"
    "  function (request, session, config) {\n"
    "    log('Process Request Not Implemented');\n"
    "    return request;\n"
    "  };\n"
    "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.DoProcessRequest =\n"
    "  function (request, session, config) {\n"
    "    var out = this.ProcessRequest(request, session, config);\n"
    "    if (!out) { log(\"Middleware didn't return request object!\"); return; }\n"
    "    return out;\n"
    "  };\n"
    "TykJS.TykMiddleware.NewMiddleware = function (configuration) {\n"
    "  TykJS.TykMiddleware.MiddlewareComponentMeta.call(this, configuration);\n"
    "};\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype =\n"
    "  Object.create(TykJS.TykMiddleware.MiddlewareComponentMeta.prototype);\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.constructor = TykJS.TykMiddleware.NewMiddleware;\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.NewProcessRequest = function (cb) {\n"
    "  this.ProcessRequest = cb;\n"
    "};\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.ReturnData = function (request, meta) {\n"
    "  return {Request: request, SessionMeta: meta};\n"
    "};\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.ReturnAuthData = function (request, session) {\n"
    "  return {Request: request, Session: session};\n"
    "};\n"
    "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.ProcessResponse =\n"
    "  function (response, session, config) {\n"
    "    log('Process Response Not Implemented');\n"
    "    return response;\n"
    "  };\n"
    "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.DoProcessResponse =\n"
    "  function (response, session, config) {\n"
    "    var out = this.ProcessResponse(response, session, config);\n"
    "    if (!out) { log(\"Middleware didn't return response object!\"); return; }\n"
    "    return out;\n"
    "  };\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.NewProcessResponse = function (cb) {\n"
    "  this.ProcessResponse = cb;\n"
    "};\n"
    "TykJS.TykMiddleware.NewMiddleware.prototype.ReturnResponseData = function (response, meta) {\n"
    "  return {Response: response, SessionMeta: meta};\n"
    "};\n"
    "TykJS.TykEventHandlers.EventHandlerComponentMeta = function () {};\n"
    "TykJS.TykEventHandlers.EventHandlerComponentMeta.prototype.DoProcessEvent =\n"
    "  function (event, context) { this.Handle(event, context); };\n"
    "TykJS.TykEventHandlers.EventHandlerComponentMeta.prototype.Handle =\n"
    "  function (request, context) { log('Handler not implemented!'); return request; };\n"
    "TykJS.TykEventHandlers.NewEventHandler = function () {\n"
    "  TykJS.TykEventHandlers.EventHandlerComponentMeta.call(this);\n"
    "};\n"
    "TykJS.TykEventHandlers.NewEventHandler.prototype =\n"
    "  Object.create(TykJS.TykEventHandlers.EventHandlerComponentMeta.prototype);\n"
    "TykJS.TykEventHandlers.NewEventHandler.prototype.constructor =\n"
    "  TykJS.TykEventHandlers.NewEventHandler;\n"
    "TykJS.TykEventHandlers.NewEventHandler.prototype.NewHandler = function (cb) {\n"
    "  this.Handle = cb;\n"
    "};\n"
    "function TykBatchRequest(batch) {\n"
    "  var set = JSON.parse(batch), out = [];\n"
    "  for (var i = 0; i < set.requests.length; i++) {\n"
    "    var q = set.requests[i], h = {};\n"
    "    for (var k in q.headers) h[k] = q.headers[k];\n"
    "    var r = TykMakeHttpRequest(JSON.stringify({Method: q.method || 'GET', Domain: '',\n"
    "      Resource: q.relative_url, Headers: h, Body: q.body || ''}));\n"
    "    r = r ? JSON.parse(r) : {Code: 0, Headers: null, Body: ''};\n"
    "    out.push({relative_url: q.relative_url, code: r.Code, headers: r.Headers, body: "
    "r.Body});\n"
    "  }\n"
    "  return JSON.stringify(out);\n"
    "}\n"
    "function TykJsResponse(response, session_meta) {\n"
    "  return JSON.stringify({Response: response, SessionMeta: session_meta});\n"
    "}\n";

/* ---- natives -------------------------------------------------------------------------- */

static tp_js_t *js_of(duk_context *duk)
{
    duk_memory_functions f;
    duk_get_memory_functions(duk, &f);
    return f.udata;
}

static int log_once(tp_js_t *js)
{
    tp_js_calls_t *c = js->calls;
    if (c == NULL)
        return 1;
    if (++c->log_seen <= c->logged)
        return 0; /* written by an earlier run of this call */
    c->logged = c->log_seen;
    return 1;
}

static duk_ret_t n_log(duk_context *duk)
{
    const char *s = duk_safe_to_string(duk, 0);
    if (log_once(js_of(duk)))
        tp_log_info("jsvm: %s", s);
    return 0;
}

static duk_ret_t n_rawlog(duk_context *duk)
{
    const char *s = duk_safe_to_string(duk, 0);
    if (log_once(js_of(duk)))
        fprintf(stderr, "%s\n", s);
    return 0;
}

static duk_ret_t b64enc(duk_context *duk, int raw)
{
    duk_size_t n;
    const char *s = duk_safe_to_lstring(duk, 0, &n);
    size_t cap = (n + 2) / 3 * 4 + 1, len = 0;
    unsigned char *out = duk_push_fixed_buffer(duk, cap);
    mbedtls_base64_encode(out, cap, &len, (const unsigned char *)s, n);
    while (raw && len > 0 && out[len - 1] == '=')
        len--;
    duk_push_lstring(duk, (const char *)out, len);
    return 1;
}

static duk_ret_t b64dec(duk_context *duk, int std_first)
{
    duk_size_t n;
    const char *s = duk_safe_to_lstring(duk, 0, &n);
    /* Go's StdEncoding, then (b64dec) RawStdEncoding: padded here */
    tp_buf_t in = {0};
    tp_buf_append(&in, s, n);
    unsigned char *out = duk_push_fixed_buffer(duk, n / 4 * 3 + 3);
    ptrdiff_t got = std_first ? tp_b64_std_decode(in.data != NULL ? in.data : "", n, out) : -1;
    if (got < 0 && n % 4 != 1 && (n == 0 || s[n - 1] != '=')) {
        while (in.len % 4 != 0)
            tp_buf_putc(&in, '=');
        got = tp_b64_std_decode(in.data != NULL ? in.data : "", in.len, out);
    }
    tp_buf_free(&in);
    if (got < 0) {
        tp_log_error("jsvm: Failed to base64 decode");
        return 0;
    }
    duk_push_lstring(duk, (const char *)out, (size_t)got);
    return 1;
}

static duk_ret_t n_b64enc(duk_context *duk)
{
    return b64enc(duk, 0);
}
static duk_ret_t n_rawb64enc(duk_context *duk)
{
    return b64enc(duk, 1);
}
static duk_ret_t n_b64dec(duk_context *duk)
{
    return b64dec(duk, 1);
}
static duk_ret_t n_rawb64dec(duk_context *duk)
{
    return b64dec(duk, 0);
}

/* The n-th request of a run gets the n-th answer (pushed: 1, or 0 for
 * undefined); past the answers, the run stops here with <req_json> as the
 * pending request (it throws). */
static duk_ret_t answer_or_suspend(duk_context *duk, const char *req_json)
{
    tp_js_t *js = js_of(duk);
    tp_js_calls_t *c = js->calls;
    if (c == NULL) {
        tp_log_error("jsvm: requests cannot be made here (a script's top level)");
        return 0;
    }
    if (c->used < c->nanswer) {
        const char *a = c->answer[c->used++];
        if (a == NULL)
            return 0; /* the request failed: undefined, as Tyk */
        duk_push_string(duk, a);
        return 1;
    }
    free(c->pending);
    c->pending = tp_strdup(req_json);
    return duk_error(duk, DUK_ERR_ERROR, "waiting for the answer of a request");
}

/* TykMakeHttpRequest(json): Tyk's TykJSHttpResponse JSON, or undefined. */
static duk_ret_t n_http(duk_context *duk)
{
    if (duk_is_undefined(duk, 0))
        return 0;
    return answer_or_suspend(duk, duk_safe_to_string(duk, 0));
}

/* A request to this gateway's own /tyk/keys API ("Self": the worker adds
 * its address and the secret). */
static duk_ret_t keys_call(duk_context *duk, const char *method, const char *key, const char *query,
                           const char *body)
{
    tp_buf_t res = {0};
    tp_buf_puts(&res, "/tyk/keys/");
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            tp_buf_putc(&res, (char)*p);
        else
            tp_buf_printf(&res, "%%%02X", *p);
    }
    tp_buf_puts(&res, query);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "Method", method);
    cJSON_AddStringToObject(o, "Resource", tp_buf_cstr(&res));
    if (body != NULL)
        cJSON_AddStringToObject(o, "Body", body);
    cJSON_AddBoolToObject(o, "Self", 1);
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    tp_buf_free(&res);
    /* the strings go before a throw can skip freeing them */
    duk_push_string(duk, j);
    cJSON_free(j);
    return answer_or_suspend(duk, duk_get_string(duk, -1));
}

static duk_ret_t body_of_answer(duk_context *duk)
{
    duk_json_decode(duk, -1);
    duk_get_prop_string(duk, -1, "Body");
    return 1;
}

/* TykGetKeyData(key, apiId): the session as GET /tyk/keys/{key}?api_id
 * answers it (Tyk's handleGetDetail), or its error object. */
static duk_ret_t n_getkey(duk_context *duk)
{
    const char *key = duk_safe_to_string(duk, 0);
    const char *api = duk_is_undefined(duk, 1) ? "" : duk_safe_to_string(duk, 1);
    tp_buf_t q = {0};
    tp_buf_puts(&q, "?api_id=");
    for (const char *p = api; *p != '\0'; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.')
            tp_buf_putc(&q, *p);
    duk_push_string(duk, tp_buf_cstr(&q));
    tp_buf_free(&q);
    if (keys_call(duk, "GET", key, duk_get_string(duk, -1), NULL) == 0)
        return 0;
    return body_of_answer(duk);
}

/* TykSetKeyData(key, sessionJSON, suppressReset): PUT /tyk/keys/{key}
 * (Tyk's doAddOrUpdate); "1" keeps the quota. Returns nothing. */
static duk_ret_t n_setkey(duk_context *duk)
{
    const char *key = duk_safe_to_string(duk, 0);
    const char *sess = duk_safe_to_string(duk, 1);
    const char *sup = duk_is_undefined(duk, 2) ? "" : duk_safe_to_string(duk, 2);
    keys_call(duk, "PUT", key, strcmp(sup, "1") == 0 ? "?suppress_reset=1" : "", sess);
    return 0;
}

static duk_ret_t n_unsupported(duk_context *duk)
{
    duk_push_current_function(duk);
    duk_get_prop_string(duk, -1, "name");
    tp_log_error("jsvm: %s is not supported by this gateway", duk_safe_to_string(duk, -1));
    return 0;
}

static const duk_function_list_entry natives[] = {{"log", n_log, 1},
                                                  {"rawlog", n_rawlog, 1},
                                                  {"b64enc", n_b64enc, 1},
                                                  {"b64dec", n_b64dec, 1},
                                                  {"rawb64enc", n_rawb64enc, 1},
                                                  {"rawb64dec", n_rawb64dec, 1},
                                                  {"TykMakeHttpRequest", n_http, 1},
                                                  {"TykGetKeyData", n_getkey, 2},
                                                  {"TykSetKeyData", n_setkey, 3},
                                                  {NULL, NULL, 0}};

static const char *const unsupported[] = {"TykTriggerEvent"};

/* ---- running scripts ------------------------------------------------------------------ */

/* The error on top of the stack as "<file>:<line>: <message>". */
static void error_text(tp_js_t *js, duk_context *duk, char *err, size_t errlen)
{
    if (js != NULL && js->timed_out) {
        snprintf(err, errlen, "timed out (jsvm_timeout)");
        return;
    }
    if (duk_is_error(duk, -1)) {
        duk_get_prop_string(duk, -1, "fileName");
        duk_get_prop_string(duk, -2, "lineNumber");
        const char *file = duk_is_string(duk, -2) ? duk_get_string(duk, -2) : "?";
        long line = duk_is_number(duk, -1) ? (long)duk_get_number(duk, -1) : 0;
        char f[256];
        snprintf(f, sizeof(f), "%s", file);
        duk_pop_2(duk);
        snprintf(err, errlen, "%s:%ld: %s", f, line, duk_safe_to_string(duk, -1));
        return;
    }
    snprintf(err, errlen, "%s", duk_safe_to_string(duk, -1));
}

/* The error on top as error_text gives it, <timed_out> saying whether the
 * deadline had passed during the call. */
static void failed(tp_js_t *js, duk_context *duk, int timed_out, char *err, size_t errlen)
{
    js->timed_out = (unsigned)timed_out;
    error_text(js, duk, err, errlen);
    js->timed_out = 0;
}

static void arm(tp_js_t *js, int64_t deadline_ms)
{
    js->deadline_ms = deadline_ms;
    js->timed_out = 0;
    js->cap = js->live + js->max;
}

static void disarm(tp_js_t *js)
{
    js->deadline_ms = 0;
    js->cap = 0;
    js->calls = NULL;
}

/* Compiles and runs <src> as <file> on <duk>: 0, or -1 with the reason. */
static int run_script(tp_js_t *js, duk_context *duk, const char *file, const char *src, size_t len,
                      int64_t timeout_ms, char *err, size_t errlen)
{
    arm(js, tp_js_now_ms() + timeout_ms);
    duk_push_string(duk, file);
    int rc = duk_pcompile_lstring_filename(duk, 0, src, len);
    if (rc == 0)
        rc = duk_pcall(duk, 0);
    if (rc != 0)
        error_text(js, duk, err, errlen);
    duk_pop(duk);
    disarm(js);
    return rc == 0 ? 0 : -1;
}

tp_js_t *tp_js_new(size_t heap_max)
{
    tp_js_t *js = tp_calloc(1, sizeof(*js));
    js->max = heap_max;
    js->duk = duk_create_heap(js_alloc, js_realloc, js_free, js, js_fatal);
    if (js->duk == NULL) {
        free(js);
        return NULL;
    }
    /* underscore.js once per heap, shared by every API's environment */
    tp_buf_t u = {0};
    char err[512];
    if (tp_buf_read_file(&u, UNDERSCORE_JS) < 0)
        tp_log_warn("jsvm: %s cannot be read: scripts have no \"_\" (install libjs-underscore)",
                    UNDERSCORE_JS);
    else if (run_script(js, js->duk, UNDERSCORE_JS, u.data, u.len, 10000, err, sizeof(err)) < 0)
        tp_log_warn("jsvm: %s", err);
    else
        js->has_underscore = 1;
    tp_buf_free(&u);
    return js;
}

void tp_js_free(tp_js_t *js)
{
    if (js == NULL)
        return;
    duk_destroy_heap(js->duk);
    free(js);
}

size_t tp_js_heap_bytes(const tp_js_t *js)
{
    return js != NULL ? js->live : 0;
}

tp_js_ctx_t *tp_js_ctx_new(tp_js_t *js, const char *label, const char *files_json,
                           int64_t timeout_ms)
{
    duk_context *main = js->duk;
    tp_js_ctx_t *c = tp_calloc(1, sizeof(*c));
    c->js = js;
    snprintf(c->key, sizeof(c->key), "api%llu", (unsigned long long)++js->next_id);
    duk_push_global_stash(main);
    duk_push_thread_new_globalenv(main);
    c->duk = duk_get_context(main, -1);
    duk_put_prop_string(main, -2, c->key); /* the stash keeps the thread */
    duk_pop(main);

    duk_context *d = c->duk;
    duk_push_global_object(d);
    duk_put_function_list(d, -1, natives);
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        duk_push_c_function(d, n_unsupported, DUK_VARARGS);
        duk_push_string(d, "name");
        duk_push_string(d, unsupported[i]);
        duk_def_prop(d, -3, DUK_DEFPROP_HAVE_VALUE | DUK_DEFPROP_FORCE);
        duk_put_prop_string(d, -2, unsupported[i]);
    }
    if (js->has_underscore) {
        duk_get_global_string(main, "_");
        duk_xmove_top(d, main, 1);
        duk_put_prop_string(d, -2, "_");
    }
    duk_pop(d);

    char err[1024];
    if (run_script(js, d, "tyk core library", core_js, sizeof(core_js) - 1, timeout_ms, err,
                   sizeof(err)) < 0) {
        tp_log_error("jsvm: %s: %s", label, err);
        tp_js_ctx_free(c);
        return NULL;
    }
    /* the core's own DoProcessRequest, to tell it from a user's */
    duk_eval_string(d, "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.DoProcessRequest");
    duk_push_global_stash(d);
    duk_dup(d, -2);
    duk_put_prop_string(d, -2, "core_dpr");
    duk_pop_2(d);

    cJSON *files = files_json != NULL ? cJSON_Parse(files_json) : NULL;
    const cJSON *f;
    cJSON_ArrayForEach(f, files)
    {
        const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(f, "file"));
        const cJSON *src = cJSON_GetObjectItem(f, "src");
        if (file == NULL || !cJSON_IsString(src))
            continue;
        if (run_script(js, d, file, src->valuestring, strlen(src->valuestring), timeout_ms, err,
                       sizeof(err)) < 0)
            tp_log_error("jsvm: %s: Failed to load JS middleware: %s", label, err);
    }
    cJSON_Delete(files);
    duk_eval_string(d, "TykJS.TykMiddleware.MiddlewareComponentMeta.prototype.DoProcessRequest");
    duk_push_global_stash(d);
    duk_get_prop_string(d, -1, "core_dpr");
    c->native_core = duk_strict_equals(d, -1, -3) != 0;
    duk_pop_3(d);
    return c;
}

void tp_js_ctx_free(tp_js_ctx_t *c)
{
    if (c == NULL)
        return;
    duk_context *main = c->js->duk;
    duk_push_global_stash(main);
    duk_del_prop_string(main, -1, c->key);
    duk_pop(main);
    free(c);
}

duk_context *tp_js_ctx_duk(tp_js_ctx_t *c)
{
    return c->duk;
}

int tp_js_ctx_native_core(const tp_js_ctx_t *c)
{
    return c->native_core;
}

int tp_js_call(tp_js_ctx_t *c, int nargs, int with_this, int64_t deadline_ms, tp_js_calls_t *calls,
               char *err, size_t errlen)
{
    tp_js_t *js = c->js;
    arm(js, deadline_ms);
    js->calls = calls;
    if (calls != NULL) {
        calls->used = 0;
        calls->log_seen = 0;
        free(calls->pending);
        calls->pending = NULL;
    }
    int rc = with_this ? duk_pcall_method(c->duk, nargs) : duk_pcall(c->duk, nargs);
    int timed_out = js->timed_out;
    disarm(js);
    if (calls != NULL && calls->pending != NULL && !timed_out)
        return TP_JS_SUSPENDED; /* whatever the script did after it */
    if (rc != 0) {
        failed(js, c->duk, timed_out, err, errlen);
        return TP_JS_ERROR;
    }
    return TP_JS_OK;
}

/* The value at <idx> again, made of plain data: objects without a
 * prototype, dense arrays, strings, numbers, booleans, null; no functions. */
static void plain_copy(duk_context *d, duk_idx_t idx, int depth)
{
    idx = duk_normalize_index(d, idx);
    if (depth > 32 || duk_is_function(d, idx) || duk_is_buffer_data(d, idx)) {
        duk_push_undefined(d);
    } else if (duk_is_array(d, idx)) {
        duk_size_t n = duk_get_length(d, idx);
        duk_push_array(d);
        for (duk_size_t i = 0; i < n && i < 100000; i++) {
            duk_get_prop_index(d, idx, (duk_uarridx_t)i);
            plain_copy(d, -1, depth + 1);
            duk_put_prop_index(d, -3, (duk_uarridx_t)i);
            duk_pop(d);
        }
    } else if (duk_is_object(d, idx)) {
        duk_push_bare_object(d);
        duk_enum(d, idx, DUK_ENUM_OWN_PROPERTIES_ONLY);
        while (duk_next(d, -1, 1)) {
            duk_safe_to_string(d, -2);
            plain_copy(d, -1, depth + 1);
            duk_put_prop_string(d, -5, duk_get_string(d, -3));
            duk_pop_2(d);
        }
        duk_pop(d);
    } else {
        duk_dup(d, idx);
    }
}

/* Property <key> of the object at <from> copied (plain_copy) into the
 * object on top, unless undefined. */
static void pick(duk_context *d, duk_idx_t from, const char *key, int depth)
{
    duk_get_prop_string(d, from, key);
    if (!duk_is_undefined(d, -1)) {
        plain_copy(d, -1, depth);
        duk_put_prop_string(d, -3, key);
    }
    duk_pop(d);
}

/* The members of what a hook returns that this gateway reads, each a
 * plain copy: far cheaper than copying all of it (the request's Params,
 * Headers and the rest are never read back). */
static void pick_result(duk_context *d, duk_idx_t idx)
{
    static const char *const request[] = {"IgnoreBody",    "Body",       "URL",
                                          "DeleteParams",  "AddParams",  "ExtendedParams",
                                          "DeleteHeaders", "SetHeaders", "ReturnOverrides"};
    static const char *const response[] = {"StatusCode", "Code",       "Body",
                                           "Headers",    "SetHeaders", "DeleteHeaders"};
    idx = duk_normalize_index(d, idx);
    if (!duk_is_object(d, idx) || duk_is_function(d, idx)) {
        duk_dup(d, idx);
        return;
    }
    duk_push_bare_object(d);
    duk_idx_t out = duk_get_top_index(d);
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "Request" : "Response";
        duk_get_prop_string(d, idx, name);
        if (duk_is_object(d, -1) && !duk_is_function(d, -1)) {
            duk_idx_t from = duk_get_top_index(d);
            duk_push_bare_object(d);
            const char *const *keys = k == 0 ? request : response;
            size_t n = k == 0 ? sizeof(request) / sizeof(request[0])
                              : sizeof(response) / sizeof(response[0]);
            for (size_t i = 0; i < n; i++)
                pick(d, from, keys[i], 2);
            duk_put_prop_string(d, out, name);
        }
        duk_pop(d);
    }
    pick(d, idx, "SessionMeta", 1);
    pick(d, idx, "Session", 1);
    pick(d, idx, "AuthValue", 1);
}

static duk_ret_t plain_safe(duk_context *d, void *udata)
{
    (void)udata;
    pick_result(d, 0);
    return 1;
}

/* <fn> in a protected call with the deadline; its one value (or the
 * error) left on top. */
static int protected_call(tp_js_ctx_t *c, duk_safe_call_function fn, void *udata, int nargs,
                          int64_t deadline_ms, char *err, size_t errlen)
{
    tp_js_t *js = c->js;
    arm(js, deadline_ms);
    int rc = duk_safe_call(c->duk, fn, udata, nargs, 1);
    int timed_out = js->timed_out;
    disarm(js);
    if (rc != 0)
        failed(js, c->duk, timed_out, err, errlen);
    return rc != 0 ? TP_JS_ERROR : TP_JS_OK;
}

int tp_js_safe(tp_js_ctx_t *c, duk_safe_call_function fn, void *udata, int nargs,
               int64_t deadline_ms, char *err, size_t errlen)
{
    int rc = protected_call(c, fn, udata, nargs, deadline_ms, err, errlen);
    duk_pop(c->duk);
    return rc;
}

int tp_js_plain(tp_js_ctx_t *c, int64_t deadline_ms, char *err, size_t errlen)
{
    return protected_call(c, plain_safe, NULL, 1, deadline_ms, err, errlen);
}

void tp_js_calls_free(tp_js_calls_t *c)
{
    for (int i = 0; i < c->nanswer; i++)
        free(c->answer[i]);
    free(c->answer);
    free(c->pending);
    memset(c, 0, sizeof(*c));
}

int tp_js_check(const char *file, const char *src, size_t len, char *err, size_t errlen)
{
    static tp_js_t checker; /* a heap that only compiles */
    duk_context *duk = duk_create_heap(js_alloc, js_realloc, js_free, &checker, js_fatal);
    if (duk == NULL) {
        snprintf(err, errlen, "%s: the JavaScript engine cannot start", file);
        return -1;
    }
    duk_push_string(duk, file);
    int rc = duk_pcompile_lstring_filename(duk, 0, src, len);
    if (rc != 0)
        error_text(NULL, duk, err, errlen);
    duk_destroy_heap(duk);
    return rc == 0 ? 0 : -1;
}
