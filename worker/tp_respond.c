/*
 * worker/tp_respond.c: responses the gateway makes itself: Tyk's error
 * template, plain bodies, and bare protocol errors.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_json.h"
#include "tp_time.h"
#include "tp_worker.h"

/* Will the connection close after the response to <req>? Decided before
 * the head is written, so "Connection: close" and the behaviour agree. */
int tp_req_will_close(const tp_req_t *req)
{
    const tp_conn_t *c = req->conn;
    const tp_worker_t *w = c->w;
    return c->want_close || w->draining || !req->client_keepalive || w->conf->close_connections ||
           c->nreq >= (uint32_t)w->conf->tp.keepalive_requests || !req->body_done;
}

void tp_respond(tp_req_t *req, int status, const char *content_type, const char *body,
                size_t body_len, const char *extra_headers)
{
    tp_buf_t *out = &req->out;
    int close = tp_req_will_close(req);
    out->len = 0;
    tp_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, tp_http_reason(status),
                  tp_time_http_date());
    if (content_type != NULL)
        tp_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (extra_headers != NULL)
        tp_buf_puts(out, extra_headers);
    if (status != 204 && status != 304) /* which have no body, nor a length */
        tp_buf_put_header_i64(out, "Content-Length", (int64_t)body_len);
    if (close)
        tp_buf_puts(out, "Connection: close\r\n");
    else if (req->http_minor == 0)
        tp_buf_puts(out, "Connection: keep-alive\r\n");
    tp_buf_puts(out, "\r\n");
    if (req->method != HTTP_HEAD)
        tp_buf_append(out, body, body_len);
    tp_respond_send(req, status, close);
}

void tp_respond_send(tp_req_t *req, int status, int close)
{
    tp_conn_t *c = req->conn;
    req->status = status;
    req->resp_started = 1;
    req->resp_done = 1;
    if (close)
        c->want_close = 1;
    uv_buf_t buf = uv_buf_init(req->out.data, (unsigned)req->out.len);
    if (tp_conn_write(c, &buf, 1) == 1)
        tp_conn_response_done(c);
}

/* ---- error templates (TYK-COMPAT 11.1) ----------------------------------------------- */

typedef struct tpl_s {
    int status; /* 0: the generic one */
    int xml;
    char *text;
} tpl_t;

typedef struct tp_errtpl_s {
    tpl_t *v;
    size_t n;
    struct {
        int status;
        char *message;
    } msg[TP_AUTH_NMSG];
} tp_errtpl_t;

static const char *const default_json = "{\n    \"error\": \"{{.Message}}\"\n}";
static const char *const default_xml = "<?xml version = \"1.0\" encoding = \"UTF-8\"?>\n"
                                       "<error>{{.Message}}</error>";

static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    tp_buf_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (1 << 20))
        tp_buf_append(&b, chunk, n);
    fclose(f);
    tp_buf_cstr(&b);
    /* a template file's last newline is not part of the body Tyk sends */
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    return b.data;
}

static void tpl_add(tp_errtpl_t *t, int status, int xml, char *text)
{
    t->v = tp_realloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->v[t->n++] = (tpl_t){status, xml, text};
}

void tp_errtpl_load(tp_worker_t *w)
{
    tp_errtpl_t *t = tp_calloc(1, sizeof(*t));
    const tp_conf_t *conf = w->conf;
    const char *dir = conf->template_path;
    if (dir != NULL && dir[0] != '\0') {
        char path[4200];
        for (int xml = 0; xml < 2; xml++) {
            snprintf(path, sizeof(path), "%s/error.%s", dir, xml ? "xml" : "json");
            char *text = read_small_file(path);
            if (text != NULL)
                tpl_add(t, 0, xml, text);
            for (int status = 400; status < 600; status++) {
                snprintf(path, sizeof(path), "%s/error_%d.%s", dir, status, xml ? "xml" : "json");
                if ((text = read_small_file(path)) != NULL)
                    tpl_add(t, status, xml, text);
            }
        }
    }
    static const struct {
        const char *id;
        int status;
        const char *message;
    } msgs[TP_AUTH_NMSG] = {
        [TP_AUTH_FIELD_MISSING] = {"auth.auth_field_missing", 401, "Authorization field missing"},
        [TP_AUTH_KEY_NOT_FOUND] = {"auth.key_not_found", 403,
                                   "Access to this API has been disallowed"},
        [TP_AUTH_NOT_AUTHORIZED] = {NULL, 403, "Key not authorized"}, /* JWT */
        [TP_AUTH_BASIC_MISSING] = {NULL, 401, "Authorization field missing"},
        [TP_AUTH_BASIC_UNAUTHORISED] = {NULL, 401, "User not authorised"},
        [TP_AUTH_HMAC_INVALID] = {NULL, 400, "Authorization field missing, malformed or invalid"},
    };
    cJSON *over = conf->override_messages ? cJSON_Parse(conf->override_messages) : NULL;
    for (int i = 0; i < TP_AUTH_NMSG; i++) {
        t->msg[i].status = msgs[i].status;
        t->msg[i].message = tp_strdup(msgs[i].message);
        const cJSON *o = over != NULL && msgs[i].id != NULL
                             ? cJSON_GetObjectItemCaseSensitive(over, msgs[i].id)
                             : NULL;
        const cJSON *code = o != NULL ? tp_json_get(o, "code") : NULL;
        const cJSON *msg = o != NULL ? tp_json_get(o, "message") : NULL;
        if (code != NULL && cJSON_IsNumber(code) && code->valuedouble >= 100 &&
            code->valuedouble <= 999)
            t->msg[i].status = (int)code->valuedouble;
        if (msg != NULL && cJSON_IsString(msg) && msg->valuestring[0] != '\0') {
            free(t->msg[i].message);
            t->msg[i].message = tp_strdup(msg->valuestring);
        }
    }
    cJSON_Delete(over);
    w->errtpl = t;
}

/* Go's template.JSEscapeString, which Tyk applies to the message. */
static void js_escape(tp_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '\\':
            tp_buf_puts(b, "\\\\");
            break;
        case '\'':
            tp_buf_puts(b, "\\'");
            break;
        case '"':
            tp_buf_puts(b, "\\\"");
            break;
        case '<':
            tp_buf_puts(b, "\\u003C");
            break;
        case '>':
            tp_buf_puts(b, "\\u003E");
            break;
        case '&':
            tp_buf_puts(b, "\\u0026");
            break;
        case '=':
            tp_buf_puts(b, "\\u003D");
            break;
        default:
            if (*p < ' ')
                tp_buf_printf(b, "\\u%04X", *p);
            else
                tp_buf_putc(b, (char)*p);
        }
    }
}

/* The XML type the request was sent as, or NULL (then JSON is answered). */
static const char *xml_type(const tp_req_t *req)
{
    tp_str_t ct = tp_req_header(req, "Content-Type");
    static const char *const xml[] = {"application/xml", "text/xml", "application/soap+xml"};
    for (size_t i = 0; i < sizeof(xml) / sizeof(xml[0]); i++) {
        size_t n = strlen(xml[i]);
        if (ct.n >= n && strncasecmp(ct.p, xml[i], n) == 0 && (ct.n == n || ct.p[n] == ';'))
            return xml[i];
    }
    return NULL;
}

void tp_respond_failed(tp_req_t *req)
{
    tp_respond_error(req, 500, "There was a problem proxying the request");
}

void tp_respond_error(tp_req_t *req, int status, const char *message)
{
    tp_respond_error_with(req, status, message, NULL);
}

void tp_respond_error_with(tp_req_t *req, int status, const char *message, const char *headers)
{
    tp_worker_t *w = req->conn->w;
    const tp_errtpl_t *t = w->errtpl;
    const char *xtype = xml_type(req);
    int xml = xtype != NULL;
    const char *tpl = xml ? default_xml : default_json;
    int best = -1;
    for (size_t i = 0; t != NULL && i < t->n; i++)
        if (t->v[i].xml == xml && (t->v[i].status == status || t->v[i].status == 0) &&
            (best < 0 || t->v[i].status == status))
            best = (int)i;
    if (best >= 0)
        tpl = t->v[best].text;
    tp_buf_t body = {0};
    for (const char *p = tpl; *p;) {
        if (strncmp(p, "{{.Message}}", 12) == 0) {
            js_escape(&body, message);
            p += 12;
        } else if (strncmp(p, "{{.StatusCode}}", 15) == 0) {
            tp_buf_printf(&body, "%d", status);
            p += 15;
        } else {
            tp_buf_putc(&body, *p++);
        }
    }
    const tp_conf_t *conf = w->conf;
    tp_buf_t extra = {0};
    if (!conf->hide_generator_header)
        tp_buf_puts(&extra, "X-Generator: tyk.io\r\n");
    if (headers != NULL)
        tp_buf_puts(&extra, headers);
    tp_chain_headers(req->run.chain, req, &extra, TP_RESP_GATEWAY);
    tp_respond(req, status, xml ? xtype : "application/json", body.data, body.len,
               extra.len > 0 ? tp_buf_cstr(&extra) : NULL);
    tp_buf_free(&extra);
    tp_buf_free(&body);
}

void tp_respond_auth_failure(tp_req_t *req, int status, const char *message)
{
    tp_worker_t *w = req->conn->w;
    if (req->route != NULL && req->route->api->stat_idx != UINT32_MAX)
        w->stats[req->route->api->stat_idx].key_failures++;
    tp_respond_error(req, status, message);
}

void tp_respond_auth_error(tp_req_t *req, int which)
{
    const tp_errtpl_t *t = req->conn->w->errtpl;
    if (which != TP_AUTH_BASIC_MISSING && which != TP_AUTH_BASIC_UNAUTHORISED) {
        tp_respond_auth_failure(req, t->msg[which].status, t->msg[which].message);
        return;
    }
    /* basic auth asks the browser for credentials: the realm is the API's name */
    tp_worker_t *w = req->conn->w;
    if (req->route != NULL && req->route->api->stat_idx != UINT32_MAX)
        w->stats[req->route->api->stat_idx].key_failures++;
    const char *name = req->route != NULL && req->route->api->name ? req->route->api->name : "";
    tp_buf_t h = {0};
    tp_buf_printf(&h, "WWW-Authenticate: Basic realm=\"%s\"\r\n", name);
    tp_respond_error_with(req, t->msg[which].status, t->msg[which].message, tp_buf_cstr(&h));
    tp_buf_free(&h);
}

void tp_respond_bad_request(tp_conn_t *c, int status)
{
    /* No request survives a parse error: the answer is static, the
     * connection closes, and input is discarded meanwhile (lingering). */
    static char bufs[8][256];
    static const int codes[8] = {400, 408, 413, 414, 431, 501, 505, 500};
    int i = 0;
    while (i < 7 && codes[i] != status)
        i++;
    if (codes[i] != status)
        status = 500;
    const char *reason = tp_http_reason(status);
    int n = snprintf(bufs[i], sizeof(bufs[i]),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%d %s",
                     status, reason, strlen(reason) + 4, status, reason);
    if (c->req != NULL) {
        c->w->ev.drop(c->req);
        c->req = NULL;
    }
    c->want_close = 1;
    c->linger = 1;
    c->state = TP_C_DONE;
    if (c->writing) {
        tp_conn_close(c);
        return;
    }
    uv_buf_t buf = uv_buf_init(bufs[i], (unsigned)n);
    if (tp_conn_write(c, &buf, 1) == 1)
        tp_conn_response_done(c);
}
