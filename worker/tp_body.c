/*
 * worker/tp_body.c: stages that need the whole request body.
 *  - "body": reads it into req->rbody (decoded: chunked framing removed),
 *    at most TP_REST_BODY_MAX bytes (413 beyond, as for the REST API), and
 *    waits until it is in. Only APIs with a stage that reads the body have
 *    it, and it runs after auth and the limits, so an unauthenticated
 *    client cannot make the gateway hold a body. The proxy then sends the
 *    body with a Content-Length instead of streaming it.
 *  - "validate_json" (Tyk's ValidateJSON, TYK-COMPAT 21.6): the body of a
 *    matching request against the entry's schema: 400 "JSON parsing
 *    error: ..." when it is not JSON, the entry's error_response_code (422)
 *    with gojsonschema's errors joined by "; " when it does not validate,
 *    500 "no schemas to validate against" without a schema.
 *  - "transform" (Tyk's TransformMiddleware, TYK-COMPAT 21.3): the body of
 *    a matching request, read as JSON (an array under "array", an empty
 *    body as {}) or XML (as mxj reads it), with ._tyk_meta (enable_session)
 *    and ._tyk_context (enable_context_vars), through the entry's template;
 *    Tyk's variables in the output are replaced (query-escaped) and that is
 *    the body the upstream gets. A body that does not parse or a template
 *    that fails is logged and the request goes on with its body unchanged.
 */
#include <stdio.h>
#include <string.h>

#include "tp_api_mw.h"
#include "tp_endpoints.h"
#include "tp_io.h"
#include "tp_json.h"
#include "tp_jsonschema.h"
#include "tp_log.h"
#include "tp_tmpl.h"
#include "tp_worker.h"
#include "tp_xml.h"

tp_stage_rc_t tp_body_read(tp_req_t *req)
{
    if (!req->has_body || req->body_buffered)
        return TP_STAGE_NEXT;
    tp_conn_t *c = req->conn;
    tp_req_save(req, req->rp); /* the head leaves the read buffer while the body comes */
    req->buffering = 1;
    req->body_wait = 1;
    req->body_in_run = 1;
    if (req->expect_continue && req->body_seen == 0 && c->in.len == 0) {
        /* as Go's server: the client may send the body now */
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
        if (tp_io_write(&c->io, &b, 1, NULL) != 1) {
            tp_conn_close(c);
            req->body_in_run = 0;
            return TP_STAGE_LATER; /* the request goes with its connection */
        }
    }
    tp_conn_body_drained(c); /* what the client already sent */
    req->body_in_run = 0;
    if (req->body_buffered)
        return TP_STAGE_NEXT; /* all of it was there */
    return TP_STAGE_LATER;
}

static void body_cancel(tp_req_t *req)
{
    req->body_wait = 0;
}

static int body_wanted(const tp_chain_api_t *a)
{
    return a->validate || a->transform || a->cache_body || a->rewrite_body;
}

const tp_stage_t tp_stage_body = {
    .name = "body", .wanted = body_wanted, .run = tp_body_read, .cancel = body_cancel};

/* The same, before auth, for basic auth that reads credentials from it. */
static int body_auth_wanted(const tp_chain_api_t *a)
{
    return a->basic_body && !a->keyless;
}

const tp_stage_t tp_stage_body_auth = {
    .name = "body_auth", .wanted = body_auth_wanted, .run = tp_body_read, .cancel = body_cancel};

/* The same, before the first JavaScript middleware (tp_jsmw.c) reads it. */
static int body_js_wanted(const tp_chain_api_t *a)
{
    return a->js_pre || a->js_post_key_auth || a->js_post || a->virtual;
}

const tp_stage_t tp_stage_js_body = {
    .name = "js_body", .wanted = body_js_wanted, .run = tp_body_read, .cancel = body_cancel};

void tp_body_in(tp_req_t *req)
{
    if (!req->body_wait) {
        tp_rest_body_done(req);
        return;
    }
    req->body_wait = 0;
    req->body_buffered = 1;
    if (!req->body_in_run)
        tp_chain_resume(req, TP_STAGE_NEXT);
}

/* Go's encoding/json wording for the usual ways a body is not JSON. */
static void json_error(const tp_buf_t *b, tp_buf_t *out)
{
    size_t i = 0;
    while (i < b->len &&
           (b->data[i] == ' ' || b->data[i] == '\t' || b->data[i] == '\r' || b->data[i] == '\n'))
        i++;
    if (i == b->len) {
        tp_buf_puts(out, "EOF");
        return;
    }
    char c = b->data[i];
    if (!(c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
          c == 'f' || c == 'n')) {
        tp_buf_printf(out, "invalid character '%c' looking for beginning of value", c);
        return;
    }
    tp_buf_puts(out, "unexpected EOF");
}

static const tp_jsonvalid_t *validator_of(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    return mw != NULL ? tp_epmatch_first(req, mw->vj, mw->nvj, sizeof(*mw->vj)) : NULL;
}

static tp_stage_rc_t validate_run(tp_req_t *req)
{
    const tp_jsonvalid_t *v = validator_of(req);
    if (v == NULL)
        return TP_STAGE_NEXT;
    if (v->schema == NULL) {
        tp_respond_error(req, 500, "no schemas to validate against");
        return TP_STAGE_DONE;
    }
    char err[256];
    const tp_buf_t *b = &req->rbody;
    cJSON *doc = tp_json_parse(b->data != NULL ? b->data : "", b->len, err, sizeof(err));
    tp_buf_t msg = {0};
    if (doc == NULL) {
        tp_buf_puts(&msg, "JSON parsing error: ");
        json_error(b, &msg);
        tp_respond_error(req, 400, tp_buf_cstr(&msg));
        tp_buf_free(&msg);
        return TP_STAGE_DONE;
    }
    int bad = tp_jschema_validate(v->schema, doc, &msg);
    cJSON_Delete(doc);
    if (bad > 0)
        tp_respond_error(req, v->error_code, tp_buf_cstr(&msg));
    tp_buf_free(&msg);
    return bad > 0 ? TP_STAGE_DONE : TP_STAGE_NEXT;
}

static int validate_wanted(const tp_chain_api_t *a)
{
    return a->validate;
}

const tp_stage_t tp_stage_validate_json = {
    .name = "validate_json", .wanted = validate_wanted, .run = validate_run};

static const tp_transform_t *transform_of(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    return mw != NULL ? tp_epmatch_first(req, mw->tf, mw->ntf, sizeof(*mw->tf)) : NULL;
}

/* The template's data: the body as Tyk decodes it, or NULL with <why>. */
static cJSON *transform_data(tp_req_t *req, const tp_transform_t *t, const tp_buf_t *b, char *why,
                             size_t cap)
{
    const char *text = b->len > 0 ? b->data : (t->xml ? "<_/>" : "{}");
    size_t n = b->len > 0 ? b->len : strlen(text);
    cJSON *data;
    if (t->xml) {
        data = tp_xml_to_json(text, n, why, cap);
    } else {
        cJSON *v = tp_json_parse(text, n, why, cap);
        if (v == NULL)
            return NULL;
        if (cJSON_IsObject(v)) {
            data = v;
        } else {
            data = cJSON_CreateObject();
            if (cJSON_IsArray(v))
                cJSON_AddItemToObject(data, "array", v);
            else
                cJSON_Delete(v); /* a scalar: Tyk's map stays empty */
        }
    }
    if (data == NULL)
        return NULL;
    if (t->session && req->sess != NULL) {
        const cJSON *meta = tp_json_get(tp_session_json(req->sess), "meta_data");
        cJSON_AddItemToObject(data, "_tyk_meta",
                              meta != NULL ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
    }
    if (req->rules->context_vars)
        cJSON_AddItemToObject(data, "_tyk_context", tp_ctx_object(req));
    return data;
}

static tp_stage_rc_t transform_run(tp_req_t *req)
{
    const tp_transform_t *t = transform_of(req);
    if (t == NULL)
        return TP_STAGE_NEXT;
    char why[512];
    cJSON *data = transform_data(req, t, &req->rbody, why, sizeof(why));
    if (data == NULL) {
        tp_log_warn("api %s: body transform of %s: the body is not %s: %s", req->route->api->api_id,
                    req->route->api->listen_path, t->xml ? "XML" : "JSON", why);
        return TP_STAGE_NEXT;
    }
    tp_buf_t out = {0}, body = {0};
    int rc = tp_tmpl_exec(t->tmpl, data, &out, why, sizeof(why));
    cJSON_Delete(data);
    if (rc < 0) {
        tp_log_warn("api %s: body transform: failed to apply template to request: %s",
                    req->route->api->api_id, why);
    } else {
        tp_ctx_expand(req, out.data != NULL ? out.data : "", out.len, TP_CTX_ESCAPE, &body);
        tp_buf_free(&req->rbody);
        req->rbody = body; /* the proxy sends it, with its length */
        req->body_buffered = 1;
        body = (tp_buf_t){0};
    }
    tp_buf_free(&out);
    tp_buf_free(&body);
    return TP_STAGE_NEXT;
}

static int transform_wanted(const tp_chain_api_t *a)
{
    return a->transform;
}

const tp_stage_t tp_stage_transform = {
    .name = "transform", .wanted = transform_wanted, .run = transform_run};

/* transform_response: which entry applies is known before the proxy asks
 * (Tyk matches the request); the proxy gathers the body for it. */
static tp_stage_rc_t resp_transform_run(tp_req_t *req)
{
    const tp_api_mw_t *mw = req->version->mw;
    req->resp_tf = mw != NULL ? tp_epmatch_first(req, mw->rtf, mw->nrtf, sizeof(*mw->rtf)) : NULL;
    return TP_STAGE_NEXT;
}

static int resp_transform_wanted(const tp_chain_api_t *a)
{
    return a->resp_transform;
}

const tp_stage_t tp_stage_transform_response = {.name = "transform_response",
                                                .wanted = resp_transform_wanted,
                                                .run = resp_transform_run,
                                                .reads_request_late = 1}; /* ._tyk_context */

int tp_body_transform_response(tp_req_t *req, const tp_buf_t *in, tp_buf_t *out)
{
    const tp_transform_t *t = req->resp_tf;
    char why[512];
    cJSON *data = transform_data(req, t, in, why, sizeof(why));
    if (data == NULL) {
        tp_log_warn("api %s: response body transform: the body is not %s: %s",
                    req->route->api->api_id, t->xml ? "XML" : "JSON", why);
        return -1;
    }
    int rc = tp_tmpl_exec(t->tmpl, data, out, why, sizeof(why));
    cJSON_Delete(data);
    if (rc < 0)
        tp_log_warn("api %s: response body transform: failed to apply template: %s",
                    req->route->api->api_id, why);
    return rc;
}
