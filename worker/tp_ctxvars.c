/*
 * worker/tp_ctxvars.c: Tyk's variables in header values and rewrite
 * targets (gateway/mw_url_rewrite.go replaceTykVariables, mw_context_vars.go):
 *  - $tyk_context.<name>: with the API's enable_context_vars, the request's
 *    path, path_parts, remote_addr, request_id, headers_<Name>,
 *    cookies_<name>, request_data_<name>, request_data, token; and, set by
 *    stages as they run (url_rewrites triggers, JWT claims), named values;
 *  - $tyk_meta.<key>: the session's meta_data;
 *  - $secret_env.<name> (TYK_SECRET_<NAME>), $secret_conf.<name> (tyk.conf
 *    "secrets"); $secret_vault. and $secret_consul. become empty: no KV
 *    store is configured here, as in a Tyk without one.
 * An unknown name becomes the empty string, as in Tyk. Nothing is computed
 * before a value names it: a request whose rules name none pays nothing.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "tp_json.h"
#include "tp_url.h"
#include "tp_worker.h"

struct tp_ctxkv_s {
    tp_ctxkv_t *next;
    tp_str_t name, value;
};

void tp_ctx_set(tp_req_t *req, const char *name, size_t nlen, const char *val, size_t vlen)
{
    tp_ctxkv_t *kv = tp_arena_alloc(&req->arena, sizeof(*kv) + nlen + vlen + 2);
    char *p = (char *)(kv + 1);
    memcpy(p, name, nlen);
    p[nlen] = '\0';
    memcpy(p + nlen + 1, val, vlen);
    p[nlen + 1 + vlen] = '\0';
    kv->name = (tp_str_t){p, nlen};
    kv->value = (tp_str_t){p + nlen + 1, vlen};
    kv->next = req->ctx_kv; /* the newest first: a later value replaces an earlier */
    req->ctx_kv = kv;
}

/* A random (version 4) UUID, as Tyk's request_id. */
static void uuid4(char out[37])
{
    unsigned char r[16] = {0};
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        for (size_t i = 0; i < sizeof(r); i++) /* no entropy: still unique enough */
            r[i] = (unsigned char)rand();
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

/* Go's url.QueryEscape of <s> onto <out>. */
static void query_escape(tp_buf_t *out, tp_str_t s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            tp_buf_putc(out, (char)c);
        } else if (c == ' ') {
            tp_buf_putc(out, '+');
        } else {
            tp_buf_putc(out, '%');
            tp_buf_putc(out, hex[c >> 4]);
            tp_buf_putc(out, hex[c & 15]);
        }
    }
}

/* Does <name> (a header, cookie or parameter name) equal <want> once its
 * '-' are '_' (and, for headers, once canonicalised as Go does)? */
static int same_name(tp_str_t name, tp_str_t want, int canonical)
{
    if (name.n != want.n)
        return 0;
    int up = 1;
    for (size_t i = 0; i < name.n; i++) {
        char c = name.p[i];
        if (canonical)
            c = (char)(up ? toupper((unsigned char)c) : tolower((unsigned char)c));
        up = c == '-';
        if (c == '-')
            c = '_';
        if (c != want.p[i])
            return 0;
    }
    return 1;
}

static int header_var(const tp_req_t *req, tp_str_t want, tp_buf_t *out)
{
    if (want.n == 4 && memcmp(want.p, "Host", 4) == 0) {
        tp_buf_put_str(out, req->host);
        return 1;
    }
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (same_name((tp_str_t){req->head_base + h->name_off, h->name_len}, want, 1)) {
            tp_buf_put_str(out, tp_str_trim(tp_req_str(req, h->val_off, h->val_len)));
            return 1;
        }
    }
    return 0;
}

static int cookie_var(const tp_req_t *req, tp_str_t want, tp_buf_t *out)
{
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (h->name_len != 6 || strncasecmp(req->head_base + h->name_off, "cookie", 6) != 0)
            continue;
        tp_str_t v = tp_req_str(req, h->val_off, h->val_len);
        while (v.n > 0) {
            const char *semi = memchr(v.p, ';', v.n);
            tp_str_t pair = tp_str_trim((tp_str_t){v.p, semi ? (size_t)(semi - v.p) : v.n});
            v = semi ? (tp_str_t){semi + 1, v.n - (size_t)(semi + 1 - v.p)} : (tp_str_t){"", 0};
            const char *eq = memchr(pair.p, '=', pair.n);
            if (eq == NULL)
                continue;
            tp_str_t name = {pair.p, (size_t)(eq - pair.p)};
            if (same_name(name, want, 0)) {
                tp_str_t val = {eq + 1, pair.n - name.n - 1};
                if (val.n >= 2 && val.p[0] == '"' && val.p[val.n - 1] == '"')
                    val = (tp_str_t){val.p + 1, val.n - 2};
                tp_buf_put_str(out, val);
                return 1;
            }
        }
    }
    return 0;
}

/* request_data_<name>: the first value of query parameter <name>;
 * request_data (want.n == 0): "name:v1,v2;name2:v" in query order. */
static int query_var(const tp_req_t *req, tp_str_t want, int all, tp_buf_t *out)
{
    tp_str_t q = req->rp != NULL ? req->rp->query : (tp_str_t){"", 0};
    tp_buf_t tmp = {0};
    int found = 0;
    tp_str_t name, val;
    while (tp_query_next(&q, &name, &val)) {
        tmp.len = 0;
        tp_query_unescape(&tmp, val.p, val.n);
        if (all) {
            if (found)
                tp_buf_putc(out, ';');
            tp_buf_put_str(out, name);
            tp_buf_putc(out, ':');
            tp_buf_append(out, tmp.data, tmp.len);
            found = 1;
        } else {
            tp_buf_t dn = {0};
            tp_query_unescape(&dn, name.p, name.n);
            int same = same_name((tp_str_t){dn.data ? dn.data : "", dn.len}, want, 0);
            tp_buf_free(&dn);
            if (same) {
                tp_buf_append(out, tmp.data, tmp.len);
                found = 1;
                break;
            }
        }
    }
    tp_buf_free(&tmp);
    return found;
}

static int has_prefix(tp_str_t s, const char *p, tp_str_t *rest)
{
    size_t n = strlen(p);
    if (s.n < n || memcmp(s.p, p, n) != 0)
        return 0;
    *rest = (tp_str_t){s.p + n, s.n - n};
    return 1;
}

/* The value of $tyk_context.<name> onto <out>; 0 when it has none. */
static int context_var(tp_req_t *req, tp_str_t name, tp_buf_t *out)
{
    for (const tp_ctxkv_t *kv = req->ctx_kv; kv != NULL; kv = kv->next)
        if (kv->name.n == name.n && memcmp(kv->name.p, name.p, name.n) == 0) {
            tp_buf_put_str(out, kv->value);
            return 1;
        }
    if (req->rules == NULL || !req->rules->context_vars)
        return 0; /* Tyk: no context data without enable_context_vars */
    tp_str_t rest;
    const tp_reqpath_t *rp = req->rp;
    if (name.n == 4 && memcmp(name.p, "path", 4) == 0) {
        tp_buf_put_str(out, rp->path);
        return 1;
    }
    if (name.n == 10 && memcmp(name.p, "path_parts", 10) == 0) {
        /* strings.Split on "/", joined by ",", the leading "," trimmed */
        tp_str_t p = rp->path;
        size_t i = p.n > 0 && p.p[0] == '/' ? 1 : 0;
        for (; i < p.n; i++)
            tp_buf_putc(out, p.p[i] == '/' ? ',' : p.p[i]);
        return 1;
    }
    if (name.n == 11 && memcmp(name.p, "remote_addr", 11) == 0) {
        tp_buf_put_str(out, tp_req_real_ip(req));
        return 1;
    }
    if (name.n == 10 && memcmp(name.p, "request_id", 10) == 0) {
        char id[37];
        uuid4(id);
        tp_ctx_set(req, "request_id", 10, id, 36); /* the same for the whole request */
        tp_buf_puts(out, id);
        return 1;
    }
    if (name.n == 5 && memcmp(name.p, "token", 5) == 0) {
        const char *key = req->sess != NULL ? tp_session_key(req->sess) : NULL;
        if (key == NULL)
            return 0;
        tp_buf_puts(out, key);
        return 1;
    }
    if (name.n == 12 && memcmp(name.p, "request_data", 12) == 0)
        return query_var(req, name, 1, out);
    if (has_prefix(name, "headers_", &rest))
        return header_var(req, rest, out);
    if (has_prefix(name, "cookies_", &rest))
        return cookie_var(req, rest, out);
    if (has_prefix(name, "request_data_", &rest))
        return query_var(req, rest, 0, out);
    return 0;
}

int tp_ctx_get(tp_req_t *req, const char *name, size_t n, tp_buf_t *out)
{
    return context_var(req, (tp_str_t){name, n}, out);
}

/* The header, cookie or parameter name <n> as a context key: <prefix>,
 * then the name with '-' as '_' (canonical for headers). */
static void ctx_key(tp_buf_t *k, const char *prefix, tp_str_t n, int canonical)
{
    k->len = 0;
    tp_buf_puts(k, prefix);
    int up = 1;
    for (size_t i = 0; i < n.n; i++) {
        char c = n.p[i];
        if (canonical)
            c = (char)(up ? toupper((unsigned char)c) : tolower((unsigned char)c));
        up = c == '-';
        tp_buf_putc(k, c == '-' ? '_' : c);
    }
}

cJSON *tp_ctx_object(tp_req_t *req)
{
    cJSON *o = cJSON_CreateObject();
    tp_buf_t k = {0}, v = {0};
    const tp_reqpath_t *rp = req->rp;
    v.len = 0;
    tp_buf_put_str(&v, rp->path);
    cJSON_AddStringToObject(o, "path", tp_buf_cstr(&v));
    cJSON *parts = cJSON_AddArrayToObject(o, "path_parts");
    for (size_t at = 0, i = 0; i <= rp->path.n; i++) {
        if (i == rp->path.n || rp->path.p[i] == '/') {
            v.len = 0;
            tp_buf_append(&v, rp->path.p + at, i - at);
            cJSON_AddItemToArray(parts, cJSON_CreateString(tp_buf_cstr(&v)));
            at = i + 1;
        }
    }
    v.len = 0;
    tp_buf_put_str(&v, tp_req_real_ip(req));
    cJSON_AddStringToObject(o, "remote_addr", tp_buf_cstr(&v));
    v.len = 0;
    context_var(req, (tp_str_t){"request_id", 10}, &v);
    cJSON_AddStringToObject(o, "request_id", tp_buf_cstr(&v));
    v.len = 0;
    tp_buf_put_str(&v, req->host);
    cJSON_AddStringToObject(o, "headers_Host", tp_buf_cstr(&v));
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        ctx_key(&k, "headers_", (tp_str_t){req->head_base + h->name_off, h->name_len}, 1);
        if (tp_json_get(o, tp_buf_cstr(&k)) != NULL)
            continue; /* the first value, as Tyk's vals[0] */
        v.len = 0;
        tp_buf_put_str(&v, tp_str_trim(tp_req_str(req, h->val_off, h->val_len)));
        cJSON_AddStringToObject(o, tp_buf_cstr(&k), tp_buf_cstr(&v));
    }
    tp_str_t q = rp->query;
    tp_str_t name, val;
    while (tp_query_next(&q, &name, &val)) {
        if (name.n == 0)
            continue;
        tp_buf_t dn = {0};
        tp_query_unescape(&dn, name.p, name.n);
        ctx_key(&k, "request_data_", (tp_str_t){dn.data, dn.len}, 0);
        tp_buf_free(&dn);
        if (tp_json_get(o, tp_buf_cstr(&k)) != NULL)
            continue;
        v.len = 0;
        tp_query_unescape(&v, val.p, val.n);
        cJSON_AddStringToObject(o, tp_buf_cstr(&k), tp_buf_cstr(&v));
    }
    /* what stages set (triggers, claims), the newest winning */
    for (const tp_ctxkv_t *kv = req->ctx_kv; kv != NULL; kv = kv->next)
        if (tp_json_get(o, kv->name.p) == NULL)
            cJSON_AddStringToObject(o, kv->name.p, kv->value.p);
    tp_buf_free(&k);
    tp_buf_free(&v);
    return o;
}

/* Tyk's valToStr of a session meta_data value. */
static void meta_value(const cJSON *v, tp_buf_t *out)
{
    if (cJSON_IsString(v)) {
        tp_buf_puts(out, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        /* strconv.FormatFloat(x, 'f', -1, 32): the shortest float32 form */
        char num[64];
        float f = (float)v->valuedouble;
        for (int prec = 0; prec < 40; prec++) {
            snprintf(num, sizeof(num), "%.*f", prec, (double)f);
            if ((float)strtod(num, NULL) == f)
                break;
        }
        tp_buf_puts(out, num);
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        int first = 1;
        tp_buf_t one = {0};
        cJSON_ArrayForEach(e, v)
        {
            one.len = 0;
            meta_value(e, &one);
            if (one.len == 0)
                continue;
            if (!first)
                tp_buf_putc(out, ',');
            query_escape(out, (tp_str_t){one.data, one.len});
            first = 0;
        }
        tp_buf_free(&one);
    }
}

void tp_ctx_set_json(tp_req_t *req, const char *name, size_t nlen, const cJSON *v)
{
    tp_buf_t b = {0};
    meta_value(v, &b);
    tp_ctx_set(req, name, nlen, b.data != NULL ? b.data : "", b.len);
    tp_buf_free(&b);
}

static int meta_var(tp_req_t *req, tp_str_t name, tp_buf_t *out)
{
    if (req->sess == NULL)
        return 0;
    const cJSON *meta = tp_json_get(tp_session_json(req->sess), "meta_data"), *v;
    cJSON_ArrayForEach(v, (cJSON_IsObject(meta) ? meta : NULL))
    {
        if (strlen(v->string) == name.n && memcmp(v->string, name.p, name.n) == 0) {
            meta_value(v, out);
            return 1;
        }
    }
    return 0;
}

static int secret_conf(const tp_req_t *req, tp_str_t name, tp_buf_t *out)
{
    const tp_strlist_t *l = &req->conn->w->conf->secrets;
    for (size_t i = 0; i < l->n; i++) {
        const char *kv = l->v[i], *colon = strchr(kv, ':');
        if (colon != NULL && (size_t)(colon - kv) == name.n && memcmp(kv, name.p, name.n) == 0) {
            tp_buf_puts(out, colon + 1);
            return 1;
        }
    }
    return 0;
}

static int secret_env(tp_str_t name, tp_buf_t *out)
{
    char var[160] = "TYK_SECRET_";
    size_t at = strlen(var);
    if (name.n >= sizeof(var) - at)
        return 0;
    for (size_t i = 0; i < name.n; i++)
        var[at++] = (char)toupper((unsigned char)name.p[i]);
    var[at] = '\0';
    const char *v = getenv(var);
    if (v == NULL || v[0] == '\0')
        return 0;
    tp_buf_puts(out, v);
    return 1;
}

enum { V_CONTEXT, V_META, V_ENV, V_CONF, V_KV };

static const struct {
    const char *label;
    int kind;
    const char *extra; /* name bytes besides [A-Za-z0-9_] */
} labels[] = {
    {"$tyk_context.", V_CONTEXT, "-."}, {"$tyk_meta.", V_META, "-."},
    {"$secret_env.", V_ENV, "-."},      {"$secret_conf.", V_CONF, "[.-"},
    {"$secret_vault.", V_KV, "/-."},    {"$secret_consul.", V_KV, "/-."},
};

void tp_ctx_expand(tp_req_t *req, const char *in, size_t n, int flags, tp_buf_t *out)
{
    tp_buf_t val = {0};
    size_t i = 0;
    while (i < n) {
        const char *dollar = memchr(in + i, '$', n - i);
        if (dollar == NULL) {
            tp_buf_append(out, in + i, n - i);
            break;
        }
        size_t at = (size_t)(dollar - in);
        tp_buf_append(out, in + i, at - i);
        size_t k = 0, ln = 0;
        for (; k < sizeof(labels) / sizeof(labels[0]); k++) {
            ln = strlen(labels[k].label);
            if (n - at > ln && memcmp(in + at, labels[k].label, ln) == 0)
                break;
        }
        size_t end = at + ln;
        if (k < sizeof(labels) / sizeof(labels[0]))
            while (end < n && (isalnum((unsigned char)in[end]) || in[end] == '_' ||
                               strchr(labels[k].extra, in[end]) != NULL))
                end++;
        if (k == sizeof(labels) / sizeof(labels[0]) || end == at + ln) {
            tp_buf_putc(out, '$'); /* not a variable */
            i = at + 1;
            continue;
        }
        tp_str_t name = {in + at + ln, end - at - ln};
        val.len = 0;
        int kind = labels[k].kind, found = 0;
        if (kind == V_CONTEXT)
            found = context_var(req, name, &val);
        else if (kind == V_META)
            found = meta_var(req, name, &val);
        else if (kind == V_ENV)
            found = secret_env(name, &val);
        else if (kind == V_CONF)
            found = secret_conf(req, name, &val);
        tp_str_t v = {val.data ? val.data : "", found ? val.len : 0};
        if ((flags & TP_CTX_ESCAPE) && (kind == V_CONTEXT || kind == V_META) &&
            !(v.n >= 4 && memcmp(v.p, "http", 4) == 0)) {
            query_escape(out, v);
        } else {
            for (size_t j = 0; j < v.n; j++) {
                char c = v.p[j];
                /* a header value never ends a line: Go writes such bytes as spaces */
                if ((flags & TP_CTX_HEADER) && (c == '\r' || c == '\n' || c == '\0'))
                    c = ' ';
                tp_buf_putc(out, c);
            }
        }
        i = end;
    }
    tp_buf_free(&val);
}
