/*
 * worker/tp_req.c: a request's head as the stages read it (headers, query
 * parameters), its copy out of the read buffer when it waits, and the
 * freelist of body blocks.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_url.h"
#include "tp_worker.h"

#define TP_FREE_BLOCKS_MAX 64

tp_str_t tp_req_header(const tp_req_t *req, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        if (h->name_len == n && strncasecmp(req->head_base + h->name_off, name, n) == 0)
            return tp_str_trim(tp_req_str(req, h->val_off, h->val_len));
    }
    return (tp_str_t){NULL, 0};
}

int tp_query_get(tp_str_t q, const char *name, tp_buf_t *out)
{
    size_t n = strlen(name);
    for (const char *p = q.p, *end = q.p + q.n; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        size_t klen = (size_t)((eq ? eq : stop) - p);
        if (klen == n && memcmp(p, name, n) == 0) {
            out->len = 0;
            const char *v = eq ? eq + 1 : stop;
            char *dst = tp_buf_reserve(out, (size_t)(stop - v) + 1);
            size_t k = 0;
            for (const char *c = v; c < stop; c++)
                dst[k++] = *c == '+' ? ' ' : *c;
            long dn = tp_url_decode(dst, k, dst);
            out->len = dn < 0 ? k : (size_t)dn;
            tp_buf_cstr(out);
            return 0;
        }
        p = stop + 1;
    }
    return -1;
}

/* A query parameter's bytes decoded as Go's url.ParseQuery does (an
 * undecodable one is kept as it is). */
void tp_query_unescape(tp_buf_t *out, const char *s, size_t n)
{
    char *dst = tp_buf_reserve(out, n + 1);
    for (size_t i = 0; i < n; i++)
        dst[i] = s[i] == '+' ? ' ' : s[i];
    long dn = tp_url_decode(dst, n, dst);
    out->len += dn < 0 ? n : (size_t)dn;
}

int tp_query_next(tp_str_t *q, tp_str_t *name, tp_str_t *val)
{
    while (q->n > 0) {
        const char *amp = memchr(q->p, '&', q->n);
        tp_str_t pair = {q->p, amp ? (size_t)(amp - q->p) : q->n};
        *q = amp ? (tp_str_t){amp + 1, q->n - pair.n - 1} : (tp_str_t){"", 0};
        if (pair.n == 0)
            continue;
        const char *eq = memchr(pair.p, '=', pair.n);
        *name = (tp_str_t){pair.p, eq ? (size_t)(eq - pair.p) : pair.n};
        *val = eq ? (tp_str_t){eq + 1, pair.n - name->n - 1} : (tp_str_t){"", 0};
        return 1;
    }
    return 0;
}

void tp_query_without(tp_str_t q, const char *name, tp_buf_t *out)
{
    size_t n = strlen(name);
    out->len = 0;
    for (const char *p = q.p, *end = q.p + q.n; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        size_t klen = (size_t)((eq ? eq : stop) - p);
        if (!(klen == n && memcmp(p, name, n) == 0)) {
            if (out->len > 0)
                tp_buf_putc(out, '&');
            tp_buf_append(out, p, (size_t)(stop - p));
        }
        p = stop + 1;
    }
}

/* The head and paths of a request that waits: out of the read buffer. */
void tp_req_save(tp_req_t *req, tp_reqpath_t *rp)
{
    if (rp == &req->saved_rp)
        return; /* saved when it first waited */
    size_t end = (size_t)req->url_off + req->url_len;
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        size_t e = (size_t)req->hdrs[i].val_off + req->hdrs[i].val_len;
        if (e > end)
            end = e;
    }
    tp_buf_t *b = &req->saved;
    b->len = 0;
    tp_buf_reserve(b, end + rp->raw.n + rp->path.n + rp->query.n + 4);
    tp_buf_append(b, req->head_base, end);
    size_t o_raw = b->len;
    tp_buf_put_str(b, rp->raw);
    size_t o_path = b->len;
    tp_buf_put_str(b, rp->path);
    size_t o_query = b->len;
    tp_buf_put_str(b, rp->query);
    req->head_base = b->data; /* the buffer does not move from here on */
    req->saved_rp = *rp;
    req->saved_rp.raw = (tp_str_t){b->data + o_raw, rp->raw.n};
    req->saved_rp.path = (tp_str_t){b->data + o_path, rp->path.n};
    req->saved_rp.query = (tp_str_t){b->data + o_query, rp->query.n};
    req->rp = &req->saved_rp;
}

char *tp_block_get(tp_worker_t *w)
{
    if (w->free_blocks != NULL) {
        char *b = w->free_blocks;
        w->free_blocks = *(void **)b;
        w->nfree_blocks--;
        return b;
    }
    return tp_malloc(TP_BLOCK_SIZE);
}

void tp_block_put(tp_worker_t *w, char *block)
{
    if (w->nfree_blocks >= TP_FREE_BLOCKS_MAX) {
        free(block);
        return;
    }
    *(void **)block = w->free_blocks;
    w->free_blocks = block;
    w->nfree_blocks++;
}

/* The three paths Tyk matches path rules against (TYK-COMPAT 3.6). */
static void rulepaths_build(tp_rulepaths_t *ps, const tp_reqpath_t *rp, tp_str_t seg, int clean)
{
    tp_str_t full = rp->path;
    tp_buf_t cleaned = {0};
    if (clean) {
        char *dst = tp_buf_reserve(&cleaned, full.n + 2);
        cleaned.len = tp_url_clean_path(full.p, full.n, dst);
        full = (tp_str_t){cleaned.data, cleaned.len};
    }
    size_t m = rp->matched <= full.n ? rp->matched : full.n;
    tp_str_t stripped = {full.p + m, full.n - m};
    size_t o0, o1, o2;
    ps->buf.len = 0;
    /* 1: without the listen path and the version segment */
    o0 = ps->buf.len;
    tp_str_t v = stripped;
    while (v.n > 0 && v.p[0] == '/')
        v = (tp_str_t){v.p + 1, v.n - 1};
    if (seg.n > 0 && v.n >= seg.n && memcmp(v.p, seg.p, seg.n) == 0)
        v = (tp_str_t){v.p + seg.n, v.n - seg.n};
    else
        v = stripped;
    if (v.n == 0 || v.p[0] != '/')
        tp_buf_putc(&ps->buf, '/');
    tp_buf_put_str(&ps->buf, v);
    tp_buf_putc(&ps->buf, '\0');
    /* 2: without the listen path */
    o1 = ps->buf.len;
    if (stripped.n == 0 || stripped.p[0] != '/')
        tp_buf_putc(&ps->buf, '/');
    tp_buf_put_str(&ps->buf, stripped);
    tp_buf_putc(&ps->buf, '\0');
    /* 3: whole */
    o2 = ps->buf.len;
    tp_buf_put_str(&ps->buf, full);
    tp_buf_putc(&ps->buf, '\0');
    ps->p[0] = ps->buf.data + o0;
    ps->p[1] = ps->buf.data + o1;
    ps->p[2] = ps->buf.data + o2;
    tp_buf_free(&cleaned);
}

const char *const *tp_req_rulepaths(tp_req_t *req, const tp_reqpath_t *rp, int version)
{
    tp_worker_t *w = req->conn->w;
    tp_rulepaths_t *ps = &w->rulepaths[version != 0];
    tp_str_t seg = version ? req->vseg : (tp_str_t){"", 0};
    if (ps->serial != req->serial || ps->path.p != rp->path.p || ps->path.n != rp->path.n ||
        ps->matched != rp->matched || ps->seg.p != seg.p || ps->seg.n != seg.n) {
        rulepaths_build(ps, rp, seg, w->conf->http_server_options.skip_url_cleaning);
        ps->serial = req->serial;
        ps->path = rp->path;
        ps->seg = seg;
        ps->matched = rp->matched;
    }
    return ps->p;
}

void tp_req_latency(const tp_req_t *req, int64_t *total, int64_t *upstream)
{
    *total = (int64_t)(uv_now(&req->conn->w->loop) - req->start_ms);
    *upstream = req->up_start_ms != 0 ? (int64_t)req->up_ms : -1;
    if (*upstream > *total)
        *upstream = *total;
}

void tp_req_tap(tp_req_t *req, tp_tap_t *t, const void *p, size_t n)
{
    if (req->tap_max == 0 || t->len >= req->tap_max || n == 0)
        return;
    if (n > req->tap_max - t->len)
        n = req->tap_max - t->len; /* the rest is cut */
    if (t->len + n > t->cap) {
        uint32_t cap = t->cap > 0 ? t->cap * 2 : 2048;
        while (cap < t->len + n)
            cap *= 2;
        if (cap > req->tap_max)
            cap = req->tap_max;
        char *np = tp_req_alloc(req, cap); /* the old block stays in the arena */
        if (t->len > 0)
            memcpy(np, t->p, t->len);
        t->p = np;
        t->cap = cap;
    }
    memcpy(t->p + t->len, p, n);
    t->len += (uint32_t)n;
}

/* request.RealIP (TYK-COMPAT 12.3): X-Real-IP, else the first
 * X-Forwarded-For entry, else the peer. */
tp_str_t tp_req_real_ip(const tp_req_t *req)
{
    tp_str_t v = tp_req_header(req, "X-Real-IP");
    if (v.n > 0)
        return v;
    v = tp_req_header(req, "X-Forwarded-For");
    if (v.n > 0) {
        const char *comma = memchr(v.p, ',', v.n);
        if (comma != NULL)
            v.n = (size_t)(comma - v.p);
        return tp_str_trim(v);
    }
    return (tp_str_t){req->conn->ip, strlen(req->conn->ip)};
}

char *tp_req_strndup(tp_req_t *req, const char *p, size_t n)
{
    char *s = tp_req_alloc(req, n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}
