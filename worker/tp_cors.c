/*
 * worker/tp_cors.c: the API's CORS object, as Tyk's CORSMiddleware (rs/cors,
 * TYK-COMPAT 21.1) answers it: one stage that runs right after the version
 * check, and a response half that adds the headers of actual requests.
 *
 *  - A pre-flight (OPTIONS with Access-Control-Request-Method) is answered
 *    here, 204 with no body, before auth and without the upstream: the
 *    Access-Control-Allow-* headers only when the origin, the method and
 *    every requested header are allowed (a refused pre-flight gets none,
 *    which is how a browser learns "no").
 *  - Any other OPTIONS is answered 200 with the actual-request headers.
 *  - options_passthrough: OPTIONS requests are not answered here but sent
 *    to the upstream with no auth, limit or quota check (Tyk's middleware
 *    wrappers pass OPTIONS through; here they are treated as an ignored
 *    path, so header transforms still apply).
 *  - Every other response of the API (the upstream's and the gateway's own
 *    errors) gets Vary: Origin, and for an allowed origin and method
 *    Access-Control-Allow-Origin, -Expose-Headers and -Allow-Credentials.
 *
 * (Answers made with tp_respond, as these two, carry no response-stage
 * headers.) Origins compare lower-cased; an entry may hold one wildcard star, as
 * https://STAR.x.com; no entry, or a "*" entry, allows every origin (answered "*").
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_http.h"
#include "tp_json.h"
#include "tp_worker.h"

struct tp_cors_s {
    int any_origin, any_header, credentials, passthrough;
    int64_t max_age;
    char **origins; /* lower-cased, at most one wildcard each */
    size_t norigins;
    char **methods; /* upper-cased */
    size_t nmethods;
    char **headers; /* lower-cased */
    size_t nheaders;
    char *expose; /* "A, B" canonicalised, or NULL */
};

/* ---- compiling ------------------------------------------------------------------------- */

static char **strs(const cJSON *list, int (*conv)(int), const char *const *dflt, size_t *n)
{
    size_t cap = (size_t)(cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0) + 8;
    char **v = tp_calloc(cap, sizeof(*v));
    *n = 0;
    const cJSON *e;
    if (cJSON_IsArray(list))
        cJSON_ArrayForEach(e, list) if (cJSON_IsString(e)) v[(*n)++] = tp_strdup(e->valuestring);
    for (size_t i = 0; *n == 0 && dflt != NULL && dflt[i] != NULL; i++)
        v[(*n)++] = tp_strdup(dflt[i]);
    for (size_t i = 0; i < *n; i++)
        for (char *p = v[i]; *p != '\0'; p++)
            *p = (char)conv((unsigned char)*p);
    return v;
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

tp_cors_t *tp_cors_compile(const cJSON *def)
{
    const cJSON *o = tp_json_get(def, "CORS");
    if (!cJSON_IsTrue(tp_json_get(o, "enable")))
        return NULL;
    static const char *const dmethods[] = {"GET", "POST", "HEAD", NULL};
    static const char *const dheaders[] = {"accept", "content-type", "x-requested-with", NULL};
    tp_cors_t *c = tp_calloc(1, sizeof(*c));
    c->origins = strs(tp_json_get(o, "allowed_origins"), tolower, NULL, &c->norigins);
    c->any_origin = c->norigins == 0;
    for (size_t i = 0; i < c->norigins; i++)
        c->any_origin |= strcmp(c->origins[i], "*") == 0;
    c->methods = strs(tp_json_get(o, "allowed_methods"), toupper, dmethods, &c->nmethods);
    c->headers = strs(tp_json_get(o, "allowed_headers"), tolower, dheaders, &c->nheaders);
    c->headers[c->nheaders++] = tp_strdup("origin"); /* rs/cors always allows it */
    for (size_t i = 0; i < c->nheaders; i++)
        c->any_header |= strcmp(c->headers[i], "*") == 0;
    size_t nexp;
    char **exp = strs(tp_json_get(o, "exposed_headers"), tolower, NULL, &nexp);
    if (nexp > 0) {
        tp_buf_t b = {0};
        for (size_t i = 0; i < nexp; i++) {
            if (i > 0)
                tp_buf_puts(&b, ", ");
            tp_http_put_canonical(&b, exp[i], strlen(exp[i]));
        }
        c->expose = tp_strdup(tp_buf_cstr(&b));
        tp_buf_free(&b);
    }
    strs_free(exp, nexp);
    c->credentials = cJSON_IsTrue(tp_json_get(o, "allow_credentials"));
    c->passthrough = cJSON_IsTrue(tp_json_get(o, "options_passthrough"));
    const cJSON *ma = tp_json_get(o, "max_age");
    c->max_age = cJSON_IsNumber(ma) ? (int64_t)ma->valuedouble : 0;
    return c;
}

void tp_cors_free(tp_cors_t *c)
{
    if (c == NULL)
        return;
    strs_free(c->origins, c->norigins);
    strs_free(c->methods, c->nmethods);
    strs_free(c->headers, c->nheaders);
    free(c->expose);
    free(c);
}

/* ---- the checks ------------------------------------------------------------------------ */

static int origin_ok(const tp_cors_t *c, tp_str_t origin)
{
    if (c->any_origin)
        return 1;
    char low[1024];
    if (origin.n >= sizeof(low))
        return 0;
    for (size_t i = 0; i < origin.n; i++)
        low[i] = (char)tolower((unsigned char)origin.p[i]);
    low[origin.n] = '\0';
    for (size_t i = 0; i < c->norigins; i++) {
        const char *o = c->origins[i], *star = strchr(o, '*');
        if (star == NULL) {
            if (strcmp(o, low) == 0)
                return 1;
            continue;
        }
        size_t pre = (size_t)(star - o), suf = strlen(star + 1);
        if (origin.n >= pre + suf && memcmp(low, o, pre) == 0 &&
            memcmp(low + origin.n - suf, star + 1, suf) == 0)
            return 1;
    }
    return 0;
}

static int method_ok(const tp_cors_t *c, tp_str_t m)
{
    if (m.n == 7 && strncasecmp(m.p, "OPTIONS", 7) == 0)
        return 1;
    for (size_t i = 0; i < c->nmethods; i++)
        if (strlen(c->methods[i]) == m.n && strncasecmp(c->methods[i], m.p, m.n) == 0)
            return 1;
    return 0;
}

/* Every name of the comma-separated Access-Control-Request-Headers? */
static int headers_ok(const tp_cors_t *c, tp_str_t list)
{
    if (c->any_header)
        return 1;
    for (const char *p = list.p, *end = list.p + list.n; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        while (p < stop && (*p == ' ' || *p == '\t'))
            p++;
        const char *e = stop;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > p) {
            size_t n = (size_t)(e - p);
            int found = 0;
            for (size_t i = 0; i < c->nheaders && !found; i++)
                found = strlen(c->headers[i]) == n && strncasecmp(c->headers[i], p, n) == 0;
            if (!found)
                return 0;
        }
        p = stop + 1;
    }
    return 1;
}

static const tp_cors_t *cors_of(const tp_req_t *req)
{
    const tp_compiled_t *c = tp_compiled(req->conn->w, req);
    return c != NULL ? c->cors : NULL;
}

/* The headers of an actual request (rs/cors handleActualRequest). */
static void actual_headers(const tp_cors_t *c, const tp_req_t *req, tp_buf_t *b)
{
    tp_buf_puts(b, "Vary: Origin\r\n");
    tp_str_t origin = tp_req_header(req, "Origin");
    const char *m = llhttp_method_name(req->method);
    if (origin.n == 0 || !origin_ok(c, origin) || !method_ok(c, (tp_str_t){m, strlen(m)}))
        return;
    if (c->any_origin)
        tp_buf_puts(b, "Access-Control-Allow-Origin: *\r\n");
    else
        tp_buf_printf(b, "Access-Control-Allow-Origin: %.*s\r\n", (int)origin.n, origin.p);
    if (c->expose != NULL)
        tp_buf_printf(b, "Access-Control-Expose-Headers: %s\r\n", c->expose);
    if (c->credentials)
        tp_buf_puts(b, "Access-Control-Allow-Credentials: true\r\n");
}

/* ---- the stage ------------------------------------------------------------------------- */

static tp_stage_rc_t cors_run(tp_req_t *req)
{
    const tp_cors_t *c = cors_of(req);
    if (c == NULL || req->method != HTTP_OPTIONS)
        return TP_STAGE_NEXT;
    if (c->passthrough) {
        req->ignored = 1; /* to the upstream, unchecked */
        return TP_STAGE_NEXT;
    }
    tp_buf_t h = {0};
    tp_str_t acrm = tp_req_header(req, "Access-Control-Request-Method");
    req->not_recorded = 1; /* answered before the API's middleware: no record */
    if (acrm.n == 0) {     /* not a pre-flight: the actual request's headers, 200 */
        actual_headers(c, req, &h);
        tp_respond(req, 200, NULL, "", 0, tp_buf_cstr(&h));
        tp_buf_free(&h);
        return TP_STAGE_DONE;
    }
    tp_buf_puts(&h,
                "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n");
    tp_str_t origin = tp_req_header(req, "Origin");
    tp_str_t acrh = tp_req_header(req, "Access-Control-Request-Headers");
    if (origin.n > 0 && origin_ok(c, origin) && method_ok(c, acrm) && headers_ok(c, acrh)) {
        if (c->any_origin)
            tp_buf_puts(&h, "Access-Control-Allow-Origin: *\r\n");
        else
            tp_buf_printf(&h, "Access-Control-Allow-Origin: %.*s\r\n", (int)origin.n, origin.p);
        tp_buf_puts(&h, "Access-Control-Allow-Methods: ");
        for (size_t i = 0; i < acrm.n; i++)
            tp_buf_putc(&h, (char)toupper((unsigned char)acrm.p[i]));
        tp_buf_puts(&h, "\r\n");
        if (acrh.n > 0)
            tp_buf_printf(&h, "Access-Control-Allow-Headers: %.*s\r\n", (int)acrh.n, acrh.p);
        if (c->credentials)
            tp_buf_puts(&h, "Access-Control-Allow-Credentials: true\r\n");
        if (c->max_age != 0)
            tp_buf_printf(&h, "Access-Control-Max-Age: %lld\r\n",
                          (long long)(c->max_age > 0 ? c->max_age : 0));
    }
    tp_respond(req, 204, NULL, "", 0, tp_buf_cstr(&h));
    tp_buf_free(&h);
    return TP_STAGE_DONE;
}

static void cors_headers(const tp_req_t *req, tp_buf_t *head, int gateway)
{
    (void)gateway;
    const tp_cors_t *c = cors_of(req);
    if (c != NULL && !(c->passthrough && req->method == HTTP_OPTIONS))
        actual_headers(c, req, head);
}

static int cors_wanted(const tp_chain_api_t *a)
{
    return a->cors;
}

const tp_stage_t tp_stage_cors = {.name = "cors", .wanted = cors_wanted, .run = cors_run};
const tp_stage_t tp_stage_cors_headers = {.name = "cors_headers",
                                          .wanted = cors_wanted,
                                          .headers = cors_headers,
                                          .reads_request_late = 1}; /* Origin */
