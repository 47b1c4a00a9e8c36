/*
 * worker/tp_cache.c: the response cache (Tyk's RedisCacheMiddleware and
 * ResponseCacheMiddleware, TYK-COMPAT 21.8), in three parts of the chain:
 *  - "cache" (a request stage, after the method transform): a request
 *    the API caches (cache_all_safe_requests and a GET, HEAD or OPTIONS;
 *    else the first matching extended_paths.cache or advance_cache_config
 *    entry) gets Tyk's key, cache-<api_id><api_id><token><md5>, and is
 *    answered from the node's shared-memory front, else from Redis (a GET),
 *    with x-tyk-cached-response: 1 and 304 for a matching If-None-Match;
 *    a miss goes on to the upstream with a plan to store what it answers;
 *  - "cache_capture" (a response stage, after the upstream-side header
 *    changes): takes the response head as it will be stored, and the body
 *    is copied as it goes out (req->resp_keep);
 *  - "cache_store" (a log stage): once the whole response went out, the
 *    entry Tyk writes, base64(wire response) "|" expiry, SET with the TTL,
 *    and the front gets it when Redis has it.
 * Tyk's nodes read what this one stores and the other way round. The
 * front keeps a response at most TP_FRONT_MS (the local session cache's
 * 10 s) and no longer than Redis does; a purge (DELETE /tyk/cache/{api_id},
 * the DeleteAPICache signal) empties it for the API on every node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>
#include <mbedtls/md5.h>

#include "tp_api_mw.h"
#include "tp_err.h"
#include "tp_http.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_respond.h"
#include "tp_shm_session.h"
#include "tp_time.h"
#include "tp_worker.h"

#define TP_FRONT_MS 10000

struct tp_cache_req_s {
    char *key;        /* the Redis key */
    const int *codes; /* cacheable status codes; none: all */
    size_t ncodes;
    int64_t ttl;    /* seconds */
    uint64_t epoch; /* the front's eviction count when the key was looked up */
    tp_rcmd_t *cmd; /* the GET in flight */
    char *head;     /* the response head to store (cache_capture), in the arena */
    size_t head_len;
    unsigned store : 1; /* a miss: store the upstream's answer */
};

/* ---- a stored response ---------------------------------------------------------------- */

typedef struct stored_s {
    int status;
    tp_str_t reason;
    tp_str_t hdrs; /* the header lines, each ending "\r\n" or "\n" */
    tp_str_t body;
    tp_buf_t dechunked; /* a chunked body (Tyk writes one for responses without a length) */
} stored_t;

static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl != NULL ? nl : end;
}

/* One header line at *p (moved past it): 1 with <name> and <value>, 0 at
 * the blank line that ends the head, -1 when malformed or cut. */
static int next_header(const char **p, const char *end, tp_str_t *name, tp_str_t *value)
{
    const char *nl = line_end(*p, end);
    if (nl == end)
        return -1;
    const char *s = *p, *e = nl > s && nl[-1] == '\r' ? nl - 1 : nl;
    *p = nl + 1;
    if (e == s)
        return 0;
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (colon == NULL || colon == s)
        return -1;
    *name = (tp_str_t){s, (size_t)(colon - s)};
    *value = tp_str_trim((tp_str_t){colon + 1, (size_t)(e - colon - 1)});
    return 1;
}

static int dechunk(const char *p, const char *end, tp_buf_t *out)
{
    for (;;) {
        const char *nl = line_end(p, end);
        if (nl == end)
            return -1;
        char *stop;
        unsigned long n = strtoul(p, &stop, 16);
        if (stop == p)
            return -1;
        p = nl + 1;
        if (n == 0)
            return 0; /* trailers are not kept */
        if ((size_t)(end - p) < n + 1)
            return -1;
        tp_buf_append(out, p, n);
        p += n;
        if (*p == '\r')
            p++;
        if (p >= end || *p != '\n')
            return -1;
        p++;
    }
}

/* Parses Go's http.Response wire form (what Tyk and this cache store);
 * the answer to a HEAD request (<head>) has no body, whatever its length. */
static int stored_parse(const char *wire, size_t len, int head, stored_t *s)
{
    const char *p = wire, *end = wire + len;
    memset(s, 0, sizeof(*s));
    const char *nl = line_end(p, end);
    if (nl == end || len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    char *stop;
    long status = strtol(p + 9, &stop, 10);
    if (status < 100 || status > 999 || stop != p + 12)
        return -1;
    s->status = (int)status;
    const char *r = p + 12, *re = nl > r && nl[-1] == '\r' ? nl - 1 : nl;
    s->reason = tp_str_trim((tp_str_t){r, re > r ? (size_t)(re - r) : 0});
    p = nl + 1;
    const char *hstart = p;
    int chunked = 0;
    long long cl = -1;
    tp_str_t name, value;
    int rc;
    while ((rc = next_header(&p, end, &name, &value)) == 1) {
        int kind = tp_http_header_kind(name.p, name.n);
        if (kind == TP_H_TRANSFER_ENCODING)
            chunked = tp_str_list_has(value, "chunked");
        else if (kind == TP_H_CONTENT_LENGTH)
            cl = strtoll(value.p, NULL, 10);
    }
    if (rc < 0)
        return -1;
    s->hdrs = (tp_str_t){hstart, (size_t)(p - hstart)};
    if (head || s->status == 204 || s->status == 304) {
        s->body = (tp_str_t){p, 0};
    } else if (chunked) {
        if (dechunk(p, end, &s->dechunked) < 0) {
            tp_buf_free(&s->dechunked);
            return -1;
        }
        s->body = (tp_str_t){s->dechunked.data, s->dechunked.len};
    } else if (cl >= 0) {
        if ((long long)(end - p) < cl)
            return -1;
        s->body = (tp_str_t){p, (size_t)cl};
    } else {
        s->body = (tp_str_t){p, (size_t)(end - p)};
    }
    return 0;
}

/* ---- answering from the cache ----------------------------------------------------------- */

/* Answers <req> with the stored response <s> (parsed by stored_parse;
 * its buffer is freed here). */
static void serve(tp_req_t *req, stored_t *sp)
{
    stored_t s = *sp;
    tp_buf_t *out = &req->out;
    out->len = 0;
    int status = s.status;
    /* If-None-Match naming the stored Etag (a substring, as Tyk tests) */
    tp_str_t inm = tp_req_header(req, "If-None-Match"), etag = {NULL, 0};
    const char *p = s.hdrs.p, *end = s.hdrs.p + s.hdrs.n;
    tp_str_t name, value;
    while (next_header(&p, end, &name, &value) == 1)
        if (tp_str_ieq(name, "Etag"))
            etag = value;
    if (inm.n > 0 && etag.n > 0 && memmem(inm.p, inm.n, etag.p, etag.n) != NULL)
        status = 304;
    int head = req->method == HTTP_HEAD, nobody = head || status == 304 || status == 204;
    if (status == s.status && s.reason.n > 0)
        tp_buf_printf(out, "HTTP/1.1 %d %.*s\r\n", status, (int)s.reason.n, s.reason.p);
    else
        tp_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, tp_http_reason(status));
    p = s.hdrs.p;
    while (next_header(&p, end, &name, &value) == 1) {
        int kind = tp_http_header_kind(name.p, name.n);
        if (tp_http_is_hop_by_hop(kind) || (kind == TP_H_CONTENT_LENGTH && !head) ||
            tp_str_ieq(name, "X-Tyk-Cached-Response") ||
            (req->rl_set && tp_http_is_ratelimit_header(name.p, name.n)))
            continue;
        tp_buf_append(out, name.p, name.n);
        tp_buf_puts(out, ": ");
        tp_buf_put_str(out, value);
        tp_buf_puts(out, "\r\n");
    }
    tp_buf_puts(out, "X-Tyk-Cached-Response: 1\r\n");
    tp_chain_headers(req->run.chain, req, out, TP_RESP_CACHED);
    if (!nobody)
        tp_buf_put_header_i64(out, "Content-Length", (int64_t)s.body.n);
    int close = tp_req_will_close(req);
    if (close)
        tp_buf_puts(out, "Connection: close\r\n");
    else if (req->http_minor == 0)
        tp_buf_puts(out, "Connection: keep-alive\r\n");
    tp_buf_puts(out, "\r\n");
    if (!nobody)
        tp_buf_append(out, s.body.p, s.body.n);
    tp_buf_free(&s.dechunked);
    req->cached = 1;
    tp_respond_send(req, status, close);
}

/* ---- the key (CreateCheckSum) ------------------------------------------------------------ */

static const char *method_of(const tp_req_t *req)
{
    return req->up_method != NULL ? req->up_method : llhttp_method_name(req->method);
}

static char *make_key(tp_req_t *req, const tp_cacheopts_t *o, const tp_cachepath_t *meta)
{
    const char *method = method_of(req);
    tp_buf_t b = {0};
    tp_buf_printf(&b, "%s-", method);
    tp_buf_put_str(&b, tp_req_str(req, req->url_off, req->url_len));
    if (o->nby_headers > 0) /* "-" and <name>-<value> for each */
        tp_buf_puts(&b, "-");
    for (size_t i = 0; i < o->nby_headers; i++) {
        tp_buf_puts(&b, o->by_headers[i]);
        tp_buf_puts(&b, "-");
        tp_buf_put_str(&b, tp_req_header(req, o->by_headers[i]));
    }
    if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
        /* Go's server gives every request a body, an empty one too */
        const char *body = req->body_buffered ? req->rbody.data : "";
        size_t blen = req->body_buffered ? req->rbody.len : 0;
        regmatch_t g[TP_RW_GROUPS];
        int hash = 1;
        if (meta != NULL && meta->has_key_rx) {
            hash = tp_rx_exec(&meta->key_rx, tp_buf_cstr(&req->rbody), g) && g[0].rm_so >= 0;
            if (hash) {
                body = req->rbody.data + g[0].rm_so;
                blen = (size_t)(g[0].rm_eo - g[0].rm_so);
            }
        }
        if (hash) {
            char hx[TP_KEYHASH_HEX_MAX];
            tp_keyhash_hex("murmur128", body != NULL ? body : "", blen, hx);
            tp_buf_printf(&b, "-%s", hx);
        }
    }
    unsigned char md[16];
    mbedtls_md5_ret((const unsigned char *)b.data, b.len, md);
    char mdx[33];
    tp_hex(mdx, md, 16);
    /* the token: the key the client presented, else its address */
    const char *token = req->sess != NULL ? tp_session_key(req->sess) : NULL;
    tp_str_t ip = {NULL, 0};
    if (token == NULL || token[0] == '\0') {
        token = "";
        ip = tp_req_real_ip(req);
    }
    const char *id = req->route->api->api_id;
    size_t n = 6 + 2 * strlen(id) + strlen(token) + ip.n + 32 + 1;
    char *key = tp_req_alloc(req, n);
    snprintf(key, n, "cache-%s%s%s%.*s%s", id, id, token, (int)ip.n, ip.p ? ip.p : "", mdx);
    tp_buf_free(&b);
    return key;
}

/* ---- the request stage -------------------------------------------------------------------- */

static const tp_cachepath_t *matching_entry(tp_req_t *req, int *found)
{
    const tp_api_mw_t *mw = req->version != NULL ? req->version->mw : NULL;
    *found = 0;
    if (mw == NULL || mw->ncache == 0)
        return NULL;
    const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
    const char *method = method_of(req);
    for (size_t i = 0; i < mw->ncache; i++)
        if (tp_cachepath_match(&mw->cache[i], method, paths, 3)) {
            *found = 1;
            return &mw->cache[i];
        }
    return NULL;
}

static void digest_key(const char *key, uint8_t id[32])
{
    tp_scache_digest(key, strlen(key), NULL, 0, id);
}

/* A GET answered: a hit is served (and put in the front), a miss goes on
 * to the upstream to be stored; an entry Tyk would not use is deleted. */
static void on_get(void *arg, const redisReply *reply, const char *err)
{
    tp_req_t *req = arg;
    struct tp_cache_req_s *c = req->cache;
    tp_worker_t *w = req->conn->w;
    c->cmd = NULL;
    c->store = 1;
    if (err != NULL || reply->type != REDIS_REPLY_STRING) {
        if (err != NULL)
            tp_log_debug("api %s: response cache: %s", req->route->api->api_id, err);
        tp_chain_resume(req, TP_STAGE_NEXT);
        return;
    }
    const char *bar = memchr(reply->str, '|', reply->len);
    const char *ts = bar != NULL ? bar + 1 : NULL;
    char *stop = NULL;
    long long expiry = ts != NULL ? strtoll(ts, &stop, 10) : 0;
    size_t b64len = bar != NULL ? (size_t)(bar - reply->str) : 0;
    unsigned char *wire = NULL;
    size_t wlen = 0;
    int usable = ts != NULL && stop != ts && *stop == '\0' && memchr(ts, '|', strlen(ts)) == NULL &&
                 expiry >= tp_time_wall_us() / 1000000;
    if (usable) {
        wire = tp_malloc(b64len / 4 * 3 + 4);
        usable = mbedtls_base64_decode(wire, b64len / 4 * 3 + 4, &wlen,
                                       (const unsigned char *)reply->str, b64len) == 0 &&
                 wlen > 0;
    }
    stored_t s;
    if (usable)
        usable = stored_parse((const char *)wire, wlen, req->method == HTTP_HEAD, &s) == 0;
    if (usable) {
        /* into the front first: once served, the request may be gone */
        if (w->rcache != NULL) {
            uint8_t id[32], store[32];
            digest_key(c->key, id);
            const char *api = req->route->api->api_id;
            tp_scache_digest(api, strlen(api), NULL, 0, store);
            int64_t left = (expiry - tp_time_wall_us() / 1000000) * 1000;
            int64_t life = left < TP_FRONT_MS ? left : TP_FRONT_MS;
            if (life > 0)
                tp_scache_put(w->rcache, c->epoch, id, store, c->key, (const char *)wire, wlen,
                              (int64_t)tp_time_mono_ms() + life);
        }
        serve(req, &s); /* before the wire goes: <s> points into it */
        free(wire);
        return; /* answered */
    }
    free(wire);
    /* expired, or not an entry Tyk can read: gone, and this request refills it */
    tp_redis_cmd(w->redis, NULL, NULL, "DEL %s", c->key);
    tp_chain_resume(req, TP_STAGE_NEXT);
}

static tp_stage_rc_t cache_run(tp_req_t *req)
{
    const tp_cacheopts_t *o = req->rules->cache;
    const char *method = method_of(req);
    int found = o->all_safe && tp_http_is_safe_method(method);
    const tp_cachepath_t *meta = found ? NULL : matching_entry(req, &found);
    if (!found || tp_req_header(req, "Upgrade").n > 0)
        return TP_STAGE_NEXT; /* not a cached path; upgrades never are */
    struct tp_cache_req_s *c = tp_req_alloc(req, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->key = make_key(req, o, meta);
    c->codes = o->codes;
    c->ncodes = o->ncodes;
    c->ttl = o->timeout;
    if (meta != NULL && meta->ncodes > 0) {
        c->codes = meta->codes;
        c->ncodes = meta->ncodes;
    }
    if (meta != NULL && meta->timeout > 0)
        c->ttl = meta->timeout;
    req->cache = c;
    tp_worker_t *w = req->conn->w;
    if (w->rcache != NULL) {
        uint8_t id[32];
        digest_key(c->key, id);
        uint32_t slot;
        uint64_t version;
        tp_buf_t *rkey = &w->cache_rkey, *val = &w->cache_val;
        c->epoch = tp_scache_epoch(w->rcache);
        if (tp_scache_get(w->rcache, id, (int64_t)tp_time_mono_ms(), rkey, val, &slot, &version) &&
            strcmp(rkey->data, c->key) == 0) {
            stored_t s;
            if (stored_parse(val->data, val->len, req->method == HTTP_HEAD, &s) == 0) {
                serve(req, &s);
                return TP_STAGE_DONE;
            }
        }
    }
    tp_req_save(req, req->rp); /* the head leaves the read buffer while Redis answers */
    c->cmd = tp_redis_cmd(w->redis, on_get, req, "GET %s", c->key);
    return TP_STAGE_LATER;
}

static void cache_cancel(tp_req_t *req)
{
    if (req->cache != NULL && req->cache->cmd != NULL) {
        tp_redis_cancel(req->cache->cmd);
        req->cache->cmd = NULL;
    }
}

static int cache_wanted(const tp_chain_api_t *a)
{
    return a->cache;
}

const tp_stage_t tp_stage_cache = {
    .name = "cache", .wanted = cache_wanted, .run = cache_run, .cancel = cache_cancel};

/* ---- storing (ResponseCacheMiddleware) ------------------------------------------------- */

/* The value of header <name> in head lines <h> (after the status line). */
static tp_str_t head_value(const char *h, size_t n, const char *name)
{
    const char *end = h + n, *p = line_end(h, end);
    p = p < end ? p + 1 : end;
    tp_str_t k, v;
    while (p < end && next_header(&p, end, &k, &v) == 1)
        if (tp_str_ieq(k, name))
            return v;
    return (tp_str_t){NULL, 0};
}

/* Decides whether the upstream's answer is stored (status codes, the
 * upstream's cache control) and takes its head as it will be stored. */
static void capture(const tp_req_t *creq, tp_buf_t *head, int gateway)
{
    tp_req_t *req = (tp_req_t *)creq; /* what it keeps is the request's */
    struct tp_cache_req_s *c = req->cache;
    if (gateway != TP_RESP_UPSTREAM || c == NULL || !c->store)
        return;
    int ok = c->ncodes == 0;
    for (size_t i = 0; i < c->ncodes && !ok; i++)
        ok = c->codes[i] == req->status;
    const tp_cacheopts_t *o = req->rules->cache;
    if (o->upstream_control) {
        if (head_value(head->data, head->len, "x-tyk-cache-action-set").n > 0)
            ok = 1;
        tp_str_t ttl = head_value(head->data, head->len, o->ttl_header);
        char num[24];
        if (ttl.n > 0 && ttl.n < sizeof(num)) {
            memcpy(num, ttl.p, ttl.n);
            num[ttl.n] = '\0';
            char *stop;
            long long t = strtoll(num, &stop, 10);
            if (*stop == '\0')
                c->ttl = t; /* strconv.Atoi: a whole number */
        }
    }
    if (!ok) {
        c->store = 0;
        return;
    }
    c->head = tp_req_alloc(req, head->len);
    memcpy(c->head, head->data, head->len);
    c->head_len = head->len;
    req->resp_keep = !req->resp_nobody;
}

const tp_stage_t tp_stage_cache_capture = {
    .name = "cache_capture", .wanted = cache_wanted, .headers = capture};

typedef struct put_s {
    tp_worker_t *w;
    char *key, *wire;
    size_t wlen;
    uint8_t store[32];
    uint64_t epoch;
    int64_t ttl;
} put_t;

static void on_set(void *arg, const redisReply *reply, const char *err)
{
    put_t *p = arg;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR) {
        tp_log_warn("response cache: could not save %s: %s", p->key,
                    err != NULL ? err : reply->str);
    } else if (p->w->rcache != NULL && p->ttl > 0) {
        uint8_t id[32];
        digest_key(p->key, id);
        int64_t life = p->ttl * 1000 < TP_FRONT_MS ? p->ttl * 1000 : TP_FRONT_MS;
        tp_scache_put(p->w->rcache, p->epoch, id, p->store, p->key, p->wire, p->wlen,
                      (int64_t)tp_time_mono_ms() + life);
    }
    free(p->key);
    free(p->wire);
    free(p);
}

static void cache_store(tp_req_t *req)
{
    struct tp_cache_req_s *c = req->cache;
    if (c == NULL || !c->store || c->head == NULL || !req->resp_done)
        return;
    if (!req->resp_nobody && !req->resp_keep)
        return; /* its body was over TP_KEEP_BODY_MAX */
    tp_buf_t wire = {0};
    tp_buf_append(&wire, c->head, c->head_len);
    int status = req->status;
    if (head_value(c->head, c->head_len, "Content-Length").p == NULL && req->method != HTTP_HEAD &&
        status != 204 && status != 304)
        tp_buf_put_header_i64(&wire, "Content-Length", (int64_t)req->resp_body.len);
    tp_buf_puts(&wire, "\r\n");
    if (!req->resp_nobody)
        tp_buf_append(&wire, req->resp_body.data, req->resp_body.len);

    size_t b64cap = (wire.len + 2) / 3 * 4 + 1, b64len = 0;
    tp_buf_t val = {0};
    mbedtls_base64_encode((unsigned char *)tp_buf_reserve(&val, b64cap + 32), b64cap, &b64len,
                          (const unsigned char *)wire.data, wire.len);
    val.len = b64len;
    tp_buf_printf(&val, "|%lld", (long long)(tp_time_wall_us() / 1000000 + c->ttl));

    tp_worker_t *w = req->conn->w;
    put_t *p = tp_calloc(1, sizeof(*p));
    p->w = w;
    p->key = tp_strdup(c->key);
    p->wire = wire.data;
    p->wlen = wire.len;
    p->epoch = c->epoch;
    p->ttl = c->ttl;
    const char *api = req->route->api->api_id;
    tp_scache_digest(api, strlen(api), NULL, 0, p->store);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->ttl);
    const char *argv[5] = {"SET", p->key, val.data, "EX", ttl};
    const size_t lens[5] = {3, strlen(p->key), val.len, 2, strlen(ttl)};
    tp_redis_cmdv(w->redis, on_set, p, c->ttl > 0 ? 5 : 3, argv, lens);
    tp_buf_free(&val);
}

const tp_stage_t tp_stage_cache_store = {
    .name = "cache_store", .wanted = cache_wanted, .log = cache_store};
