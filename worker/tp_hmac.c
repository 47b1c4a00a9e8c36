/*
 * worker/tp_hmac.c: HMAC request signing (Tyk's
 * HTTPSignatureValidationMiddleware, TYK-COMPAT 18.3, 18.4): two stages in
 * the auth position. "hmac" reads
 *   Authorization: Signature keyId="k",algorithm="hmac-sha256",
 *                  headers="(request-target) date",signature="..."
 * checks the algorithm against hmac_allowed_algorithms and finds the
 * session of keyId; "hmac_check" rebuilds the signing string, signs it
 * with the session's hmac_string (hmac_enabled), compares in constant
 * time (again with upper-cased %xx escapes, as Tyk does for .NET clients)
 * and checks the Date (or X-Aux-Date) header against
 * hmac_allowed_clock_skew (milliseconds). Every failure is Tyk's 400
 * "Authorization field missing, malformed or invalid". rsa-* signatures
 * need Tyk's certificate store, which Turnpike has not: they get Tyk's
 * 500 "Certificate not found".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "tp_ct.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_worker.h"

#define FIELD_MAX 1024

struct tp_hmac_api_s {
    tp_authloc_t loc;
    char **algs; /* hmac_allowed_algorithms; none: all */
    size_t nalgs;
    double skew_ms; /* <= 0: not checked */
};

typedef struct fields_s {
    char key_id[FIELD_MAX], alg[128], headers[FIELD_MAX], sig[FIELD_MAX];
} fields_t;

/* ---- compiling ------------------------------------------------------------------------- */

tp_hmac_api_t *tp_hmac_compile(const cJSON *def)
{
    if (!cJSON_IsTrue(tp_json_get(def, "enable_signature_checking")))
        return NULL;
    tp_hmac_api_t *h = tp_calloc(1, sizeof(*h));
    tp_authloc_read(def, "hmac", &h->loc);
    const cJSON *list = tp_json_get(def, "hmac_allowed_algorithms"), *a;
    if (!cJSON_IsArray(list))
        list = NULL;
    h->algs = tp_calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof(*h->algs));
    cJSON_ArrayForEach(a, list) if (cJSON_IsString(a)) h->algs[h->nalgs++] =
        tp_strdup(a->valuestring);
    const cJSON *skew = tp_json_get(def, "hmac_allowed_clock_skew");
    h->skew_ms = cJSON_IsNumber(skew) ? skew->valuedouble : 0;
    return h;
}

void tp_hmac_api_free(tp_hmac_api_t *h)
{
    if (h == NULL)
        return;
    tp_authloc_free(&h->loc);
    for (size_t i = 0; i < h->nalgs; i++)
        free(h->algs[i]);
    free(h->algs);
    free(h);
}

/* ---- the header ------------------------------------------------------------------------ */

/* A value: a Go-quoted string (unquoted into <out>) or bare up to ','. */
static const char *value_of(const char *p, const char *end, char *out, size_t cap, int *bad)
{
    size_t o = 0;
    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            char c = *p;
            if (c == '\\') {
                if (++p == end) {
                    *bad = 1;
                    return end;
                }
                c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                if (strchr("\"\\/ntabfrv'", *p) == NULL)
                    *bad = 1;
            }
            if (o + 1 < cap)
                out[o++] = c;
            else
                *bad = 1;
        }
        if (p == end)
            *bad = 1; /* unterminated */
        else
            p++;
    } else {
        while (p < end && *p != ',' && *p != ' ') {
            if (o + 1 < cap)
                out[o++] = *p;
            else
                *bad = 1;
            p++;
        }
    }
    out[o] = '\0';
    return p;
}

/* getFieldValues: 0, or -1 for anything Tyk refuses. */
static int parse_fields(tp_str_t v, fields_t *f)
{
    memset(f, 0, sizeof(*f));
    const char *p = v.p, *end = v.p + v.n;
    if (end - p >= 9 && (strncmp(p, "Signature", 9) == 0 || strncmp(p, "signature", 9) == 0))
        p += 9;
    int bad = 0, headers = 0;
    while (p < end && !bad) {
        while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
            p++;
        if (p == end)
            break;
        const char *name = p;
        while (p < end && *p != '=' && *p != ',' && *p != ' ')
            p++;
        size_t n = (size_t)(p - name);
        while (p < end && *p == ' ')
            p++;
        if (p == end || *p != '=')
            return -1;
        p++;
        while (p < end && *p == ' ')
            p++;
        char *dst;
        size_t cap;
        if (n == 5 && strncasecmp(name, "keyid", 5) == 0) {
            dst = f->key_id, cap = sizeof(f->key_id);
        } else if (n == 9 && strncasecmp(name, "algorithm", 9) == 0) {
            dst = f->alg, cap = sizeof(f->alg);
        } else if (n == 7 && strncasecmp(name, "headers", 7) == 0) {
            dst = f->headers, cap = sizeof(f->headers);
            headers = 1;
        } else if (n == 9 && strncasecmp(name, "signature", 9) == 0) {
            dst = f->sig, cap = sizeof(f->sig);
        } else {
            return -1; /* "Header key is not valid, not in allowed parameter list" */
        }
        p = value_of(p, end, dst, cap, &bad);
    }
    if (bad)
        return -1;
    if (!headers || f->headers[0] == '\0')
        strcpy(f->headers, "date");
    return 0;
}

/* getDateHeader: X-Aux-Date wins over Date; its name as it is signed. */
static tp_str_t date_header(const tp_req_t *req, const char **name)
{
    tp_str_t v = tp_req_header(req, "X-Aux-Date");
    if (v.n > 0) {
        *name = "x-aux-date";
        return v;
    }
    v = tp_req_header(req, "Date");
    *name = v.n > 0 ? "date" : "";
    return v;
}

static tp_str_t trim(tp_str_t s)
{
    while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t'))
        s = (tp_str_t){s.p + 1, s.n - 1};
    while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* generateHMACSignatureStringFromRequest into <b>. */
static void signing_string(const tp_req_t *req, const char *headers, tp_buf_t *b)
{
    const char *p = headers;
    for (int first = 1;; first = 0) {
        size_t n = strcspn(p, " ");
        char name[256];
        tp_str_t h = trim((tp_str_t){p, n});
        size_t hn = h.n < sizeof(name) ? h.n : sizeof(name) - 1;
        for (size_t i = 0; i < hn; i++)
            name[i] = (char)(h.p[i] >= 'A' && h.p[i] <= 'Z' ? h.p[i] + 32 : h.p[i]);
        name[hn] = '\0';
        if (!first)
            tp_buf_putc(b, '\n');
        if (strcmp(name, "(request-target)") == 0) {
            tp_buf_puts(b, "(request-target): ");
            for (const char *m = llhttp_method_name(req->method); *m; m++)
                tp_buf_putc(b, (char)(*m >= 'A' && *m <= 'Z' ? *m + 32 : *m));
            tp_buf_putc(b, ' ');
            tp_str_t path = req->rp->path; /* as received, no query */
            tp_buf_append(b, path.p, path.n);
        } else {
            const char *signed_name = name;
            tp_str_t v = strcmp(name, "date") == 0 ? date_header(req, &signed_name)
                                                   : tp_req_header(req, name);
            v = trim(v);
            tp_buf_printf(b, "%s: ", signed_name);
            tp_buf_append(b, v.p, v.n);
        }
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
}

/* url.QueryEscape of standard base64: '+', '/', '=' escaped. */
static void query_escape_b64(const unsigned char *b64, size_t n, tp_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b64[i];
        if (c == '+' || c == '/' || c == '=')
            tp_buf_printf(out, "%%%02X", c);
        else
            tp_buf_putc(out, (char)c);
    }
}

/* Go's time.Parse of "Mon, 02 Jan 2006 15:04:05 MST" (any zone name reads
 * as UTC) or "... -07": unix milliseconds, or -1. */
static int64_t parse_date(tp_str_t v)
{
    char s[128];
    if (v.n == 0 || v.n >= sizeof(s))
        return -1;
    memcpy(s, v.p, v.n);
    s[v.n] = '\0';
    struct tm tm = {0};
    const char *rest = strptime(s, "%a, %d %b %Y %H:%M:%S ", &tm);
    if (rest == NULL || rest[0] == '\0')
        return -1;
    int64_t off = 0;
    if (rest[0] == '+' || rest[0] == '-') {
        if (strlen(rest) != 3 || rest[1] < '0' || rest[1] > '9' || rest[2] < '0' || rest[2] > '9')
            return -1;
        off = ((rest[1] - '0') * 10 + (rest[2] - '0')) * 3600;
        if (rest[0] == '-')
            off = -off;
    } else {
        for (const char *z = rest; *z; z++)
            if (!((*z >= 'A' && *z <= 'Z') || (*z >= 'a' && *z <= 'z')))
                return -1;
        if (strlen(rest) < 3)
            return -1;
    }
    return ((int64_t)timegm(&tm) - off) * 1000;
}

/* ---- the stages ------------------------------------------------------------------------ */

static const tp_hmac_api_t *hmac_of(const tp_req_t *req)
{
    const tp_compiled_t *c = tp_compiled(req->conn->w, req);
    return c != NULL ? c->hmac : NULL;
}

static tp_stage_rc_t invalid(tp_req_t *req)
{
    tp_respond_auth_error(req, TP_AUTH_HMAC_INVALID);
    return TP_STAGE_DONE;
}

/* The header's fields, or -1 (the request then answered). */
static int fields(tp_req_t *req, const tp_hmac_api_t *h, fields_t *f)
{
    tp_buf_t tmp = {0};
    tp_str_t v = tp_auth_token(req, &h->loc, req->rp->query, &tmp);
    int rc = v.n > 0 ? parse_fields(trim(v), f) : -1;
    tp_buf_free(&tmp);
    if (rc < 0)
        invalid(req);
    return rc;
}

static tp_stage_rc_t hmac_run(tp_req_t *req)
{
    const tp_hmac_api_t *h = hmac_of(req);
    if (req->ignored)
        return TP_STAGE_NEXT;
    if (h == NULL)
        return TP_STAGE_ERROR;
    fields_t *f = tp_req_alloc(req, sizeof(*f));
    tp_session_method(req, TP_ID_HMAC);
    if (fields(req, h, f) < 0)
        return TP_STAGE_DONE;
    int allowed = h->nalgs == 0;
    for (size_t i = 0; i < h->nalgs && !allowed; i++)
        allowed = strcmp(h->algs[i], f->alg) == 0;
    if (!allowed || f->key_id[0] == '\0')
        return invalid(req);
    return tp_session_lookup_as(req, (tp_str_t){f->key_id, strlen(f->key_id)}, TP_AUTH_HMAC_INVALID,
                                NULL);
}

static int lowhex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static tp_stage_rc_t check_run(tp_req_t *req)
{
    const tp_hmac_api_t *h = hmac_of(req);
    tp_sess_t *sess = tp_session_current(req);
    if (req->ignored || h == NULL || sess == NULL)
        return TP_STAGE_NEXT;
    fields_t *f = tp_req_alloc(req, sizeof(*f));
    if (fields(req, h, f) < 0)
        return TP_STAGE_DONE;
    const cJSON *s = tp_session_json(sess);
    if (strncmp(f->alg, "rsa", 3) == 0) {
        tp_log_warn("HMAC: keyId %.8s... signs with %s: rsa_certificate_id needs Tyk's "
                    "certificate store, which this Turnpike version does not have",
                    f->key_id, f->alg);
        tp_respond_auth_failure(req, 500, "Certificate not found");
        return TP_STAGE_DONE;
    }
    const cJSON *sec = tp_json_get(s, "hmac_string");
    const char *secret = cJSON_IsString(sec) ? sec->valuestring : "";
    if (secret[0] == '\0' || (!cJSON_IsTrue(tp_json_get(s, "hmac_enabled")) &&
                              !cJSON_IsTrue(tp_json_get(s, "enable_http_signature_validation"))))
        return invalid(req);
    mbedtls_md_type_t md = strcmp(f->alg, "hmac-sha256") == 0   ? MBEDTLS_MD_SHA256
                           : strcmp(f->alg, "hmac-sha384") == 0 ? MBEDTLS_MD_SHA384
                           : strcmp(f->alg, "hmac-sha512") == 0 ? MBEDTLS_MD_SHA512
                                                                : MBEDTLS_MD_SHA1;
    tp_buf_t str = {0}, want = {0};
    signing_string(req, f->headers, &str);
    const mbedtls_md_info_t *mi = mbedtls_md_info_from_type(md);
    unsigned char mac[MBEDTLS_MD_MAX_SIZE], b64[MBEDTLS_MD_MAX_SIZE * 2];
    size_t blen = 0;
    mbedtls_md_hmac(mi, (const unsigned char *)secret, strlen(secret),
                    (const unsigned char *)(str.data ? str.data : ""), str.len, mac);
    mbedtls_base64_encode(b64, sizeof(b64), &blen, mac, mbedtls_md_get_size(mi));
    query_escape_b64(b64, blen, &want);
    int ok = tp_ct_equal(f->sig, strlen(f->sig), want.data, want.len);
    if (!ok) { /* .NET writes %2b: Tyk upper-cases lower-case escapes and tries again */
        int lower = 0;
        for (char *p = f->sig; *p; p++)
            if (p[0] == '%' && lowhex(p[1]) && lowhex(p[2])) { /* %[a-f0-9][a-f0-9] */
                for (int k = 1; k <= 2; k++)
                    if (p[k] >= 'a') {
                        p[k] = (char)(p[k] - 32);
                        lower = 1;
                    }
            }
        ok = lower && tp_ct_equal(f->sig, strlen(f->sig), want.data, want.len);
    }
    tp_buf_free(&str);
    tp_buf_free(&want);
    if (!ok)
        return invalid(req);
    const char *dname;
    int64_t t = parse_date(date_header(req, &dname));
    if (t < 0)
        return invalid(req);
    int64_t diff = tp_time_wall_us() / 1000 - t;
    if (h->skew_ms > 0 && (double)(diff < 0 ? -diff : diff) > h->skew_ms)
        return invalid(req);
    return TP_STAGE_NEXT;
}

static int hmac_wanted(const tp_chain_api_t *a)
{
    return !a->keyless && a->hmac;
}

const tp_stage_t tp_stage_hmac = {.name = "hmac",
                                  .wanted = hmac_wanted,
                                  .run = hmac_run,
                                  .cancel = tp_session_cancel,
                                  .state = sizeof(void *)}; /* the session lookup (tp_session.c) */

const tp_stage_t tp_stage_hmac_check = {
    .name = "hmac_check", .wanted = hmac_wanted, .run = check_run};
