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
 */
#include <stdio.h>
#include <string.h>

#include "tp_api_mw.h"
#include "tp_io.h"
#include "tp_json.h"
#include "tp_jsonschema.h"
#include "tp_worker.h"

static tp_stage_rc_t body_run(tp_req_t *req)
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
    return a->validate;
}

const tp_stage_t tp_stage_body = {
    .name = "body", .wanted = body_wanted, .run = body_run, .cancel = body_cancel};

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
    if (mw == NULL || mw->nvj == 0)
        return NULL;
    tp_worker_t *w = req->conn->w;
    tp_rulepaths_t *ps = &w->rulepaths;
    tp_req_rulepaths(ps, req->rp, req->vseg, w->conf->http_server_options.skip_url_cleaning);
    const char *method = llhttp_method_name(req->method);
    for (size_t i = 0; i < mw->nvj; i++)
        if (tp_epmatch(&mw->vj[i].m, method, ps->p, 3))
            return &mw->vj[i];
    return NULL;
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
