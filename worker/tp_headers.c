/*
 * worker/tp_headers.c: header transforms (TYK-COMPAT 21.4).
 *  - "headers" (TransformHeaders, after the API rate limit): the version's
 *    global_headers_remove, global_headers, then each matching
 *    transform_headers entry's delete_headers and add_headers, planned into
 *    req->hdr_plan for the proxy to apply. Adding Set()s: a later value
 *    replaces an earlier one.
 *  - "resp_headers" (a response stage, proxied responses only): each
 *    matching transform_response_headers entry, then the version's
 *    global_response_headers_remove and global_response_headers.
 * Values may name Tyk's variables (tp_ctxvars.c); a header set without any
 * is copied as compiled.
 */
#include <string.h>
#include <strings.h>

#include "tp_worker.h"

/* Drops the lines of <b> from <from> on whose header is <name>. */
static void lines_drop(tp_buf_t *b, size_t from, const char *name)
{
    size_t n = strlen(name), r = from, w = from;
    char *d = b->data;
    while (r < b->len) {
        char *eol = memchr(d + r, '\n', b->len - r);
        size_t len = eol != NULL ? (size_t)(eol - (d + r)) + 1 : b->len - r;
        int same = len > n && d[r + n] == ':' && strncasecmp(d + r, name, n) == 0;
        if (!same) {
            memmove(d + w, d + r, len);
            w += len;
        }
        r += len;
    }
    b->len = w;
}

/* Appends the lines of <h> to <b>, its variables replaced. */
static void put_set(tp_req_t *req, const tp_hdrset_t *h, tp_buf_t *b)
{
    if (h->lines == NULL)
        return;
    if (h->dynamic)
        tp_ctx_expand(req, h->lines, strlen(h->lines), TP_CTX_HEADER, b);
    else
        tp_buf_puts(b, h->lines);
}

static tp_stage_rc_t headers_run(tp_req_t *req)
{
    const tp_version_t *v = req->version;
    tp_hdrplan_t *hp = &req->hdr_plan;
    for (size_t i = 0; i < v->nglobal_del; i++)
        tp_hdrplan_drop(hp, v->global_del[i]);
    for (size_t i = 0; i < v->global_add.nnames; i++)
        tp_hdrplan_drop(hp, v->global_add.names[i]);
    put_set(req, &v->global_add, &hp->add);
    if (v->nhdr_rules == 0)
        return TP_STAGE_NEXT;
    const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
    const char *method = llhttp_method_name(req->method);
    for (size_t i = 0; i < v->nhdr_rules; i++) {
        const tp_hdrrule_t *hr = &v->hdr_rules[i];
        if (!tp_hdrrule_match(hr, method, paths, 3))
            continue;
        for (size_t j = 0; j < hr->ndel; j++) {
            tp_hdrplan_drop(hp, hr->del[j]);
            lines_drop(&hp->add, 0, hr->del[j]);
        }
        for (size_t j = 0; j < hr->add.nnames; j++) {
            tp_hdrplan_drop(hp, hr->add.names[j]);
            lines_drop(&hp->add, 0, hr->add.names[j]);
        }
        put_set(req, &hr->add, &hp->add);
    }
    return TP_STAGE_NEXT;
}

static int headers_wanted(const tp_chain_api_t *a)
{
    return a->headers;
}

const tp_stage_t tp_stage_headers = {
    .name = "headers", .wanted = headers_wanted, .run = headers_run};

/* The upstream's header lines are in <head> after its status line: the
 * ones named are taken out, the new ones added at the end. */
static void resp_headers(const tp_req_t *creq, tp_buf_t *head, int gateway)
{
    const tp_version_t *v = creq->version;
    if (gateway || v == NULL)
        return;
    tp_req_t *req = (tp_req_t *)creq; /* variables set while expanding are the request's */
    const char *eol = memchr(head->data, '\n', head->len);
    size_t from = eol != NULL ? (size_t)(eol - head->data) + 1 : head->len;
    if (v->nresp_rules > 0) {
        const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
        const char *method = llhttp_method_name(req->method);
        for (size_t i = 0; i < v->nresp_rules; i++) {
            const tp_hdrrule_t *hr = &v->resp_rules[i];
            if (!tp_hdrrule_match(hr, method, paths, 3))
                continue;
            for (size_t j = 0; j < hr->ndel; j++)
                lines_drop(head, from, hr->del[j]);
            for (size_t j = 0; j < hr->add.nnames; j++)
                lines_drop(head, from, hr->add.names[j]);
            put_set(req, &hr->add, head);
        }
    }
    for (size_t i = 0; i < v->ngresp_del; i++)
        lines_drop(head, from, v->gresp_del[i]);
    for (size_t i = 0; i < v->gresp_add.nnames; i++)
        lines_drop(head, from, v->gresp_add.names[i]);
    put_set(req, &v->gresp_add, head);
}

static int resp_headers_wanted(const tp_chain_api_t *a)
{
    return a->resp_headers;
}

const tp_stage_t tp_stage_resp_headers = {.name = "resp_headers",
                                          .wanted = resp_headers_wanted,
                                          .headers = resp_headers,
                                          .reads_request_late = 1};
