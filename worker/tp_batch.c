/*
 * worker/tp_batch.c: batch requests, Tyk's BatchRequestHandler
 * (gateway/batch_requests.go), for APIs with enable_batch_request_support:
 * POST <listen path>/tyk/batch/ with
 *   {"requests": [{"method", "headers": {name: value}, "body",
 *                  "relative_url"}...], "suppress_parallel_execution": bool}
 * sends each request to this gateway's own listener at
 * http://<listen address>:<listen_port>/<listen path>/<relative_url>, so
 * each goes through the API's whole chain (auth, limits, analytics) as a
 * client's would, all at once (or one after another with
 * suppress_parallel_execution), and answers 200 with their replies
 * [{"relative_url", "code", "headers": {name: [values]}, "body"}], in the
 * order they finished (Tyk's). A request that got no answer is Tyk's empty
 * reply {"relative_url": "", "code": 0, "headers": null, "body": ""}.
 * The batch call itself is not authenticated (each request is), and like
 * Tyk's sub-route it is not a record of its own. Another method than POST
 * gets an empty 200; a body that is not the structure, 400 "Batch request
 * malformed"; a bad method, 400 "Batch request creation failed , request
 * structure malformed" (Tyk's words).
 *
 * Two stages: "batch" (first: is this the batch path? then the body is
 * read) and "batch_run" (the requests).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_fetch.h"
#include "tp_http.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_respond.h"
#include "tp_worker.h"

#define BATCH_MAX 1000         /* requests in one batch */
#define BATCH_TIMEOUT_MS 60000 /* for each of them */

typedef struct unit_s {
    char *method, *url, *rel, *headers, *body;
    size_t body_len;
    tp_fetch_t *f;
    struct batch_s *b;
} unit_t;

typedef struct batch_s {
    tp_req_t *req;
    unit_t *u;
    int n, next, pending;
    int sequential;
    tp_buf_t out; /* the replies so far, a JSON array being written */
    int nout;
} batch_t;

/* ---- "batch": the path, and the body ---------------------------------------------------- */

static int is_batch_path(const tp_req_t *req)
{
    if (req->route->by_api_id)
        return 0;
    const char *lp = req->route->api->listen_path;
    size_t n = strlen(lp);
    while (n > 0 && lp[n - 1] == '/')
        n--;
    tp_str_t p = req->rp->path;
    return p.n == n + 11 && memcmp(p.p, lp, n) == 0 && memcmp(p.p + n, "/tyk/batch/", 11) == 0;
}

static tp_stage_rc_t batch_run(tp_req_t *req)
{
    if (!is_batch_path(req))
        return TP_STAGE_NEXT;
    req->batch = 1;
    req->not_recorded = 1;
    if (req->method != HTTP_POST) {
        tp_respond(req, 200, NULL, "", 0, NULL); /* Tyk's handler writes nothing */
        return TP_STAGE_DONE;
    }
    return tp_body_read(req);
}

static int batch_wanted(const tp_chain_api_t *a)
{
    return a->batch;
}

const tp_stage_t tp_stage_batch = {.name = "batch", .wanted = batch_wanted, .run = batch_run};

/* ---- "batch_run": the requests ------------------------------------------------------------ */

/* The response's headers as Go's http.Header in JSON: names in order,
 * each with its values (Transfer-Encoding is not a header to Go). */
static void put_headers(tp_buf_t *out, const char *lines)
{
    typedef struct {
        tp_buf_t name;
        tp_str_t v;
    } h_t;
    h_t hs[128];
    int n = 0;
    for (const char *p = lines; *p && n < 128;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (colon != NULL && colon > p &&
            tp_http_header_kind(p, (size_t)(colon - p)) != TP_H_TRANSFER_ENCODING) {
            hs[n].name = (tp_buf_t){0};
            tp_http_put_canonical(&hs[n].name, p, (size_t)(colon - p));
            tp_buf_cstr(&hs[n].name);
            hs[n].v = tp_str_trim((tp_str_t){colon + 1, len - (size_t)(colon + 1 - p)});
            n++;
        }
        p += len + (eol != NULL ? 2 : 0);
    }
    /* encoding/json writes a map's keys sorted */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(hs[j - 1].name.data, hs[j].name.data) > 0; j--) {
            h_t t = hs[j];
            hs[j] = hs[j - 1];
            hs[j - 1] = t;
        }
    tp_buf_putc(out, '{');
    for (int i = 0; i < n; i++) {
        int first = i == 0 || strcmp(hs[i - 1].name.data, hs[i].name.data) != 0;
        if (first) {
            if (i > 0)
                tp_buf_puts(out, "],");
            tp_buf_putc(out, '"');
            tp_buf_json_escape(out, hs[i].name.data, hs[i].name.len);
            tp_buf_puts(out, "\":[");
        } else {
            tp_buf_putc(out, ',');
        }
        tp_buf_putc(out, '"');
        tp_buf_json_escape(out, hs[i].v.p, hs[i].v.n);
        tp_buf_putc(out, '"');
    }
    if (n > 0)
        tp_buf_putc(out, ']');
    tp_buf_putc(out, '}');
    for (int i = 0; i < n; i++)
        tp_buf_free(&hs[i].name);
}

static void start(batch_t *b, unit_t *u);

static void done_all(batch_t *b)
{
    tp_buf_puts(&b->out, "]\n");
    tp_req_t *req = b->req;
    tp_respond(req, 200, "application/json", b->out.data, b->out.len, NULL);
    tp_buf_free(&b->out);
}

static void on_reply(void *arg, int status, const char *body, size_t len, const char *err)
{
    unit_t *u = arg;
    batch_t *b = u->b;
    tp_buf_t *o = &b->out;
    if (b->nout++ > 0)
        tp_buf_putc(o, ',');
    if (status == 0) {
        tp_log_warn("api %s: batch request %s %s failed: %s", b->req->route->api->api_id, u->method,
                    u->url, err != NULL ? err : "no answer");
        tp_buf_puts(o, "{\"relative_url\":\"\",\"code\":0,\"headers\":null,\"body\":\"\"}");
    } else {
        tp_buf_puts(o, "{\"relative_url\":\"");
        tp_buf_json_escape(o, u->rel, strlen(u->rel));
        tp_buf_printf(o, "\",\"code\":%d,\"headers\":", status);
        put_headers(o, tp_fetch_response_headers(u->f));
        tp_buf_puts(o, ",\"body\":\"");
        tp_buf_json_escape(o, body, len);
        tp_buf_puts(o, "\"}");
    }
    u->f = NULL;
    b->pending--;
    if (b->sequential && b->next < b->n) {
        b->pending++;
        start(b, &b->u[b->next++]);
        return;
    }
    if (b->pending == 0 && b->next == b->n)
        done_all(b);
}

/* Sends <u>; b->pending already counts it. */
static void start(batch_t *b, unit_t *u)
{
    u->f = tp_fetch_request(b->req->conn->w, u->method, u->url, u->headers, u->body, u->body_len, 1,
                            BATCH_TIMEOUT_MS, on_reply, u);
    if (u->f == NULL) /* the URL does not parse: Tyk's empty reply */
        on_reply(u, 0, "", 0, "not a URL");
}

static int method_ok(const char *m)
{
    if (*m == '\0')
        return 0;
    /* Go's validMethod: a token (RFC 7230 tchar) */
    for (const char *p = m; *p; p++)
        if (strchr("!#$%&'*+-.^_`|~", *p) == NULL && !(*p >= '0' && *p <= '9') &&
            !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z'))
            return 0;
    return 1;
}

static tp_stage_rc_t batch_requests(tp_req_t *req)
{
    if (!req->batch)
        return TP_STAGE_NEXT;
    char err[256];
    cJSON *doc = tp_json_parse(req->rbody.data != NULL ? req->rbody.data : "", req->rbody.len, err,
                               sizeof(err));
    const cJSON *list = tp_json_get(doc, "requests"), *e;
    int ok = doc != NULL && cJSON_IsObject(doc) &&
             (list == NULL || cJSON_IsNull(list) || cJSON_IsArray(list)) &&
             cJSON_GetArraySize(list) <= BATCH_MAX;
    cJSON_ArrayForEach(e, (ok && cJSON_IsArray(list) ? list : NULL))
    {
        static const char *const strs[] = {"method", "body", "relative_url"};
        ok &= cJSON_IsObject(e);
        for (size_t i = 0; ok && i < 3; i++) {
            const cJSON *v = tp_json_get(e, strs[i]);
            ok &= v == NULL || cJSON_IsNull(v) || cJSON_IsString(v);
        }
        const cJSON *h = tp_json_get(e, "headers"), *hv;
        ok &= h == NULL || cJSON_IsNull(h) || cJSON_IsObject(h);
        cJSON_ArrayForEach(hv, (ok && cJSON_IsObject(h) ? h : NULL)) ok &= cJSON_IsString(hv);
    }
    const cJSON *sup = tp_json_get(doc, "suppress_parallel_execution");
    ok &= sup == NULL || cJSON_IsNull(sup) || cJSON_IsBool(sup);
    if (!ok) {
        cJSON_Delete(doc);
        tp_rest__reply(req, 400, "{\"status\":\"error\",\"message\":\"Batch request malformed\"}");
        return TP_STAGE_DONE;
    }
    batch_t *b = tp_chain_state(req);
    memset(b, 0, sizeof(*b));
    b->req = req;
    b->sequential = cJSON_IsTrue(sup);
    b->n = cJSON_GetArraySize(list);
    b->u = tp_req_alloc(req, sizeof(unit_t) * (size_t)(b->n > 0 ? b->n : 1));
    /* ConstructRequests: http://localhost:<listen_port>/<listen path>/<relative_url> */
    const tp_conf_t *conf = req->conn->w->conf;
    const char *host = conf->listen_address != NULL && conf->listen_address[0] != '\0' &&
                               strcmp(conf->listen_address, "0.0.0.0") != 0 &&
                               strcmp(conf->listen_address, "::") != 0
                           ? conf->listen_address
                           : "127.0.0.1";
    const char *lp = req->route->api->listen_path;
    while (*lp == '/')
        lp++;
    size_t lpn = strlen(lp);
    while (lpn > 0 && lp[lpn - 1] == '/')
        lpn--;
    int i = 0;
    cJSON_ArrayForEach(e, list)
    {
        unit_t *u = &b->u[i++];
        memset(u, 0, sizeof(*u));
        u->b = b;
        const cJSON *m = tp_json_get(e, "method"), *rel = tp_json_get(e, "relative_url"),
                    *body = tp_json_get(e, "body"), *h = tp_json_get(e, "headers"), *hv;
        const char *ms = cJSON_IsString(m) && m->valuestring[0] ? m->valuestring : "GET";
        if (!method_ok(ms)) {
            cJSON_Delete(doc);
            tp_rest__reply(req, 400,
                           "{\"status\":\"error\",\"message\":\"Batch request creation failed , "
                           "request structure malformed\"}");
            return TP_STAGE_DONE;
        }
        u->method = tp_req_strndup(req, ms, strlen(ms));
        const char *rs = cJSON_IsString(rel) ? rel->valuestring : "";
        u->rel = tp_req_strndup(req, rs, strlen(rs));
        tp_buf_t url = {0};
        tp_buf_printf(&url, "http://%s%s%s:%lld/%.*s/%s", strchr(host, ':') ? "[" : "", host,
                      strchr(host, ':') ? "]" : "", (long long)conf->listen_port, (int)lpn, lp, rs);
        u->url = tp_req_strndup(req, url.data, url.len);
        tp_buf_free(&url);
        tp_buf_t hl = {0};
        cJSON_ArrayForEach(hv, (cJSON_IsObject(h) ? h : NULL))
        {
            int kind = tp_http_header_kind(hv->string, strlen(hv->string));
            if (kind == TP_H_HOST || kind == TP_H_CONTENT_LENGTH || kind == TP_H_CONNECTION ||
                kind == TP_H_TRANSFER_ENCODING || strpbrk(hv->valuestring, "\r\n") != NULL ||
                strpbrk(hv->string, "\r\n: ") != NULL)
                continue;
            tp_http_put_canonical(&hl, hv->string, strlen(hv->string));
            tp_buf_printf(&hl, ": %s\r\n", hv->valuestring);
        }
        u->headers = tp_req_strndup(req, hl.data != NULL ? hl.data : "", hl.len);
        tp_buf_free(&hl);
        const char *bs = cJSON_IsString(body) ? body->valuestring : "";
        u->body_len = strlen(bs);
        int with_body = u->body_len > 0 || strcmp(ms, "POST") == 0 || strcmp(ms, "PUT") == 0 ||
                        strcmp(ms, "PATCH") == 0;
        u->body = with_body ? tp_req_strndup(req, bs, u->body_len) : NULL;
    }
    cJSON_Delete(doc);
    tp_buf_putc(&b->out, '[');
    if (b->n == 0) {
        done_all(b);
        return TP_STAGE_DONE;
    }
    tp_req_save(req, req->rp);
    if (b->sequential) {
        b->next = 1;
        b->pending = 1;
        start(b, &b->u[0]);
    } else {
        b->next = b->pending = b->n; /* all counted first: a reply now cannot end it early */
        for (int k = 0; k < b->n; k++)
            start(b, &b->u[k]);
    }
    return TP_STAGE_LATER; /* answered by the last reply */
}

static void batch_cancel(tp_req_t *req)
{
    batch_t *b = tp_chain_state_peek(req);
    if (b == NULL || b->req != req)
        return;
    for (int i = 0; i < b->n; i++)
        if (b->u[i].f != NULL) {
            tp_fetch_drop(b->u[i].f);
            b->u[i].f = NULL;
        }
    tp_buf_free(&b->out);
    b->req = NULL;
}

const tp_stage_t tp_stage_batch_run = {.name = "batch_run",
                                       .wanted = batch_wanted,
                                       .run = batch_requests,
                                       .cancel = batch_cancel,
                                       .state = sizeof(batch_t)};
