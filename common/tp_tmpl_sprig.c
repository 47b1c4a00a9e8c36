/* common/tp_tmpl_sprig.c: the Sprig (v3.3, github.com/Masterminds/sprig) functions that
 * tp_tmpl runs, with Sprig's argument order and Go signatures: strings, lists, defaults,
 * JSON and integer arithmetic. Others (dates, crypto, regexps, dicts ...) are refused
 * when a template is compiled. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_tmpl_int.h"

/* ---- Sprig: strings ---- */

static int f_upper(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    char *p = tp_tmpl__alloc(st, a[0].n);
    if (p == NULL)
        return -1;
    for (size_t i = 0; i < a[0].n; i++) {
        char c = a[0].s[i];
        p[i] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
    }
    *res = tp_tv_str(p, a[0].n);
    return 0;
}

static int f_lower(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    char *p = tp_tmpl__alloc(st, a[0].n);
    if (p == NULL)
        return -1;
    for (size_t i = 0; i < a[0].n; i++) {
        char c = a[0].s[i];
        p[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    *res = tp_tv_str(p, a[0].n);
    return 0;
}

static int uspace(unsigned long r)
{
    return r == ' ' || (r >= '\t' && r <= '\r') || r == 0x85 || r == 0xa0 || r == 0x1680 ||
           (r >= 0x2000 && r <= 0x200a) || r == 0x2028 || r == 0x2029 || r == 0x202f ||
           r == 0x205f || r == 0x3000;
}

/* strings.TrimSpace */
static int f_trim(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    const unsigned char *s = (const unsigned char *)a[0].s;
    size_t b = 0, e = a[0].n;
    unsigned long r;
    size_t l;
    while (b < e && (l = tp_tmpl__rune(s + b, e - b, &r)) && uspace(r))
        b += l;
    while (e > b) {
        size_t k = e - 1;
        while (k > b && (s[k] & 0xc0) == 0x80 && e - k < 4)
            k--;
        if (!(l = tp_tmpl__rune(s + k, e - k, &r)) || k + l != e || !uspace(r))
            break;
        e = k;
    }
    *res = tp_tv_str(a[0].s + b, e - b);
    return 0;
}

/* strings.Trim(b, cutset a) for an ASCII or UTF-8 cutset */
static int in_set(const tp_tv_t *set, const unsigned char *s, size_t l)
{
    for (size_t i = 0; i + l <= set->n; i++)
        if (memcmp(set->s + i, s, l) == 0)
            return 1;
    return 0;
}

static int f_trimall(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    const unsigned char *s = (const unsigned char *)a[1].s;
    size_t b = 0, e = a[1].n, l;
    unsigned long r;
    while (b < e && (l = tp_tmpl__rune(s + b, e - b, &r)) && in_set(&a[0], s + b, l))
        b += l;
    while (e > b) {
        size_t k = e - 1;
        while (k > b && (s[k] & 0xc0) == 0x80 && e - k < 4)
            k--;
        if (!(l = tp_tmpl__rune(s + k, e - k, &r)) || k + l != e || !in_set(&a[0], s + k, l))
            break;
        e = k;
    }
    *res = tp_tv_str(a[1].s + b, e - b);
    return 0;
}

static int f_trimprefix(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = a[1];
    if (a[0].n <= a[1].n && memcmp(a[1].s, a[0].s, a[0].n) == 0)
        *res = tp_tv_str(a[1].s + a[0].n, a[1].n - a[0].n);
    return 0;
}

static int f_trimsuffix(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = a[1];
    if (a[0].n <= a[1].n && memcmp(a[1].s + a[1].n - a[0].n, a[0].s, a[0].n) == 0)
        *res = tp_tv_str(a[1].s, a[1].n - a[0].n);
    return 0;
}

static const char *find(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0)
        return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, nd, nn) == 0)
            return h + i;
    return NULL;
}

static int f_contains(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_bool(find(a[1].s, a[1].n, a[0].s, a[0].n) != NULL);
    return 0;
}

static int f_hasprefix(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_bool(a[0].n <= a[1].n && memcmp(a[1].s, a[0].s, a[0].n) == 0);
    return 0;
}

static int f_hassuffix(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_bool(a[0].n <= a[1].n && memcmp(a[1].s + a[1].n - a[0].n, a[0].s, a[0].n) == 0);
    return 0;
}

/* strings.Replace(src, old, new, -1); an empty old inserts new around every rune */
static int f_replace(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    const tp_tv_t *old = &a[0], *nw = &a[1], *src = &a[2];
    tp_buf_t b = {0};
    if (old->n == 0) {
        const unsigned char *s = (const unsigned char *)src->s;
        tp_buf_append(&b, nw->s, nw->n);
        for (size_t i = 0; i < src->n;) {
            unsigned long r;
            size_t l = tp_tmpl__rune(s + i, src->n - i, &r);
            l = l ? l : 1;
            tp_buf_append(&b, s + i, l);
            tp_buf_append(&b, nw->s, nw->n);
            i += l;
            if (b.len > TP_TMPL_MAX_MEM)
                break;
        }
    } else {
        size_t i = 0;
        const char *hit;
        while ((hit = find(src->s + i, src->n - i, old->s, old->n)) != NULL) {
            tp_buf_append(&b, src->s + i, (size_t)(hit - src->s) - i);
            tp_buf_append(&b, nw->s, nw->n);
            i = (size_t)(hit - src->s) + old->n;
            if (b.len > TP_TMPL_MAX_MEM)
                break;
        }
        tp_buf_append(&b, src->s + i, src->n - i);
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_repeat(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    if (a[0].i < 0)
        return tp_tmpl__err(st, "error calling repeat: strings: negative Repeat count");
    if (a[1].n && (uint64_t)a[0].i > TP_TMPL_MAX_MEM / a[1].n)
        return tp_tmpl__err(st, "the template used more than %u bytes of memory", TP_TMPL_MAX_MEM);
    size_t len = (size_t)a[0].i * a[1].n;
    char *p = tp_tmpl__alloc(st, len);
    if (p == NULL)
        return -1;
    for (int64_t i = 0; i < a[0].i && a[1].n; i++)
        memcpy(p + (size_t)i * a[1].n, a[1].s, a[1].n);
    *res = tp_tv_str(p, len);
    return 0;
}

static int f_trunc(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    int64_t c = a[0].i, len = (int64_t)a[1].n;
    *res = a[1];
    if (c < 0 && len + c > 0)
        *res = tp_tv_str(a[1].s + len + c, (size_t)-c);
    else if (c >= 0 && len > c)
        *res = tp_tv_str(a[1].s, (size_t)c);
    return 0;
}

static int f_substr(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    int64_t s = a[0].i, e = a[1].i, len = (int64_t)a[2].n;
    if (s < 0) {
        if (e < 0 || e > len)
            return tp_tmpl__err(st,
                                "error calling substr: runtime error: slice bounds out of "
                                "range [:%lld] with length %lld",
                                (long long)e, (long long)len);
        *res = tp_tv_str(a[2].s, (size_t)e);
        return 0;
    }
    if (e < 0 || e > len) {
        if (s > len)
            return tp_tmpl__err(st,
                                "error calling substr: runtime error: slice bounds out of "
                                "range [%lld:%lld]",
                                (long long)s, (long long)len);
        *res = tp_tv_str(a[2].s + s, (size_t)(len - s));
        return 0;
    }
    if (s > e)
        return tp_tmpl__err(st,
                            "error calling substr: runtime error: slice bounds out of range "
                            "[%lld:%lld]",
                            (long long)s, (long long)e);
    *res = tp_tv_str(a[2].s + s, (size_t)(e - s));
    return 0;
}

/* Sprig's strval: a string as it is, anything else as %v. */
static int strval(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v)
{
    if (v->kind == TV_STRING) {
        tp_buf_append(b, v->s, v->n);
        return 0;
    }
    return tp_tmpl__print_v(st, b, v);
}

static int f_tostring(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    if (a[0].kind == TV_STRING) {
        *res = a[0];
        return 0;
    }
    tp_buf_t b = {0};
    if (strval(st, &b, &a[0]) < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int quote_fn(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res, int single)
{
    tp_buf_t b = {0};
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (a[i].kind == TV_NIL)
            continue;
        if (!first)
            tp_buf_putc(&b, ' ');
        first = 0;
        tp_buf_t s = {0};
        int rc = single ? tp_tmpl__print_v(st, &s, &a[i]) : strval(st, &s, &a[i]);
        if (rc < 0) {
            tp_buf_free(&s);
            tp_buf_free(&b);
            return -1;
        }
        if (single) {
            tp_buf_putc(&b, '\'');
            tp_buf_append(&b, s.data, s.len);
            tp_buf_putc(&b, '\'');
        } else {
            tp_tmpl__quote(&b, s.data ? s.data : "", s.len);
        }
        tp_buf_free(&s);
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_quote(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    return quote_fn(st, a, n, res, 0);
}

static int f_squote(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    return quote_fn(st, a, n, res, 1);
}

/* cat: the non-nil arguments' %v joined by spaces */
static int f_cat(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t b = {0};
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (a[i].kind == TV_NIL)
            continue;
        if (!first)
            tp_buf_putc(&b, ' ');
        first = 0;
        if (tp_tmpl__print_v(st, &b, &a[i]) < 0) {
            tp_buf_free(&b);
            return -1;
        }
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int indent_fn(tp_tmpl__st_t *st, tp_tv_t *a, tp_tv_t *res, int nl)
{
    if (a[0].i > 100000)
        return tp_tmpl__err(st, "error calling indent: an indent above 100000");
    tp_buf_t b = {0};
    int64_t sp = a[0].i < 0 ? 0 : a[0].i;
    if (nl)
        tp_buf_putc(&b, '\n');
    for (int64_t k = 0; k < sp; k++)
        tp_buf_putc(&b, ' ');
    for (size_t i = 0; i < a[1].n; i++) {
        tp_buf_putc(&b, a[1].s[i]);
        if (a[1].s[i] == '\n')
            for (int64_t k = 0; k < sp; k++)
                tp_buf_putc(&b, ' ');
        if (b.len > TP_TMPL_MAX_MEM)
            break;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_indent(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return indent_fn(st, a, res, 0);
}

static int f_nindent(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return indent_fn(st, a, res, 1);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int f_b64enc(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    const unsigned char *s = (const unsigned char *)a[0].s;
    tp_buf_t b = {0};
    for (size_t i = 0; i < a[0].n; i += 3) {
        unsigned long v = (unsigned long)s[i] << 16;
        size_t left = a[0].n - i;
        if (left > 1)
            v |= (unsigned long)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        tp_buf_putc(&b, b64[(v >> 18) & 63]);
        tp_buf_putc(&b, b64[(v >> 12) & 63]);
        tp_buf_putc(&b, left > 1 ? b64[(v >> 6) & 63] : '=');
        tp_buf_putc(&b, left > 2 ? b64[v & 63] : '=');
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

/* base64.StdEncoding.DecodeString; on error Sprig returns the error's text */
static int f_b64dec(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    const char *s = a[0].s;
    size_t len = a[0].n, si = 0;
    tp_buf_t b = {0};
    long bad = -1;
    while (si < len && bad < 0) {
        int q[4], j;
        size_t dlen = 4;
        for (j = 0; j < 4; j++) {
            if (si == len) {
                if (j == 0)
                    goto done;
                bad = (long)(si - (size_t)j);
                break;
            }
            char c = s[si++];
            const char *p = c ? strchr(b64, c) : NULL;
            if (p) {
                q[j] = (int)(p - b64);
                continue;
            }
            if (c == '\n' || c == '\r') {
                j--;
                continue;
            }
            if (c != '=' || j < 2) {
                bad = (long)si - 1;
                break;
            }
            if (j == 2) {
                while (si < len && (s[si] == '\n' || s[si] == '\r'))
                    si++;
                if (si == len) {
                    bad = (long)len;
                    break;
                }
                if (s[si] != '=') {
                    bad = (long)si - 1;
                    break;
                }
                si++;
            }
            while (si < len && (s[si] == '\n' || s[si] == '\r'))
                si++;
            if (si < len)
                bad = (long)si;
            dlen = (size_t)j;
            break;
        }
        if (bad >= 0)
            break;
        unsigned long v = 0;
        for (size_t k = 0; k < 4; k++)
            v = (v << 6) | (unsigned long)(k < dlen ? q[k] : 0);
        char out[3] = {(char)(v >> 16), (char)(v >> 8), (char)v};
        tp_buf_append(&b, out, dlen == 4 ? 3 : dlen - 1);
        if (dlen < 4)
            break;
    }
done:
    if (bad >= 0) {
        b.len = 0;
        tp_buf_printf(&b, "illegal base64 data at input byte %ld", bad);
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

/* ---- Sprig: lists ---- */

/* Sprig's strslice, then strings.Join */
static int f_join(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    tp_buf_t b = {0};
    const tp_tv_t *v = &a[1];
    int rc = 0;
    if (v->kind == TV_ARRAY) {
        int first = 1;
        for (const cJSON *e = v->j->child; e && rc == 0; e = e->next) {
            tp_tv_t ev = tp_tv_json(e);
            if (ev.kind == TV_NIL)
                continue;
            if (!first)
                tp_buf_append(&b, a[0].s, a[0].n);
            first = 0;
            rc = strval(st, &b, &ev);
        }
    } else if (v->kind != TV_NIL) {
        rc = strval(st, &b, v);
    }
    if (rc < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

/* strings.Split(orig, sep) as a cJSON array of strings */
static cJSON *split(tp_tmpl__st_t *st, const tp_tv_t *sep, const tp_tv_t *orig, int as_map)
{
    cJSON *out = as_map ? cJSON_CreateObject() : cJSON_CreateArray();
    size_t i = 0, size = 0;
    int k = 0;
    for (;;) {
        size_t e;
        const char *hit;
        if (sep->n == 0) {
            if (i >= orig->n)
                break;
            unsigned long r;
            size_t l = tp_tmpl__rune((const unsigned char *)orig->s + i, orig->n - i, &r);
            e = i + (l ? l : 1);
        } else {
            hit = find(orig->s + i, orig->n - i, sep->s, sep->n);
            e = hit ? (size_t)(hit - orig->s) : orig->n;
        }
        char *part = tp_malloc(e - i + 1);
        memcpy(part, orig->s + i, e - i);
        part[e - i] = '\0';
        if (as_map) {
            char key[24];
            snprintf(key, sizeof(key), "_%d", k);
            cJSON_AddItemToObject(out, key, cJSON_CreateString(part));
        } else {
            cJSON_AddItemToArray(out, cJSON_CreateString(part));
        }
        free(part);
        size += e - i + 64;
        k++;
        if (sep->n == 0) {
            i = e;
            continue;
        }
        if (e >= orig->n)
            break;
        i = e + sep->n;
    }
    if (tp_tmpl__own(st, out, size) < 0)
        return NULL;
    return out;
}

static int f_splitlist(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    cJSON *j = split(st, &a[0], &a[1], 0);
    if (j == NULL)
        return -1;
    *res = (tp_tv_t){.kind = TV_ARRAY, .tname = "[]string", .j = j};
    return 0;
}

static int f_split(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    cJSON *j = split(st, &a[0], &a[1], 1);
    if (j == NULL)
        return -1;
    *res = (tp_tv_t){.kind = TV_OBJECT, .tname = "map[string]string", .j = j};
    return 0;
}

/* ---- Sprig: defaults ---- */

static int f_empty(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_bool(!tp_tv_truth(&a[0]));
    return 0;
}

static int f_default(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st;
    *res = n < 2 || !tp_tv_truth(&a[1]) ? a[0] : a[1];
    res->iface = 1; /* it returns interface{} */
    return 0;
}

static int f_coalesce(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st;
    *res = (tp_tv_t){.kind = TV_NIL, .tname = "interface {}"};
    for (int i = 0; i < n; i++)
        if (tp_tv_truth(&a[i])) {
            *res = a[i];
            break;
        }
    res->iface = 1;
    return 0;
}

static int f_ternary(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = a[2].i ? a[0] : a[1];
    res->iface = 1;
    return 0;
}

/* ---- Sprig: numbers (spf13/cast's ToInt64, errors as 0) ---- */

static int64_t f2i(double f)
{
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0))
        return INT64_MIN; /* what Go's conversion gives on amd64 */
    return (int64_t)f;
}

static int64_t to_int64(const tp_tv_t *v)
{
    switch (v->kind) {
    case TV_INT:
    case TV_BOOL:
        return v->i;
    case TV_FLOAT:
        return f2i(v->f);
    case TV_STRING: {
        char buf[64];
        if (v->n == 0 || v->n >= sizeof(buf))
            return 0;
        memcpy(buf, v->s, v->n);
        buf[v->n] = '\0';
        char *dot = strchr(buf, '.'); /* cast trims a zero fraction: "3.00" is 3 */
        if (dot) {
            for (char *z = dot + 1; *z; z++)
                if (*z != '0')
                    return 0;
            *dot = '\0';
        }
        const char *d = buf + (buf[0] == '-' || buf[0] == '+');
        int base = 10;
        if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X'))
            base = 16, d += 2;
        else if (d[0] == '0' && (d[1] == 'o' || d[1] == 'O'))
            base = 8, d += 2;
        else if (d[0] == '0' && (d[1] == 'b' || d[1] == 'B'))
            base = 2, d += 2;
        else if (d[0] == '0' && d[1])
            base = 8, d += 1;
        if (*d == '\0' || *d == '+' || *d == '-')
            return 0;
        char *end;
        unsigned long long u = strtoull(d, &end, base);
        if (*end || u > (buf[0] == '-' ? 9223372036854775808ull : 9223372036854775807ull))
            return 0;
        return buf[0] == '-' ? (int64_t)(0 - u) : (int64_t)u;
    }
    default:
        return 0;
    }
}

static int f_add(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st;
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += (uint64_t)to_int64(&a[i]); /* wraps as Go's int64 does */
    *res = tp_tv_int((int64_t)s, "int64");
    return 0;
}

static int f_add1(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_int((int64_t)((uint64_t)to_int64(&a[0]) + 1), "int64");
    return 0;
}

static int f_sub(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_int((int64_t)((uint64_t)to_int64(&a[0]) - (uint64_t)to_int64(&a[1])), "int64");
    return 0;
}

static int f_mul(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st;
    uint64_t p = (uint64_t)to_int64(&a[0]);
    for (int i = 1; i < n; i++)
        p *= (uint64_t)to_int64(&a[i]);
    *res = tp_tv_int((int64_t)p, "int64");
    return 0;
}

static int divmod(tp_tmpl__st_t *st, tp_tv_t *a, tp_tv_t *res, int mod)
{
    int64_t x = to_int64(&a[0]), y = to_int64(&a[1]);
    if (y == 0)
        return tp_tmpl__err(st, "error calling %s: runtime error: integer divide by zero",
                            mod ? "mod" : "div");
    if (y == -1) /* INT64_MIN / -1 wraps in Go */
        *res = tp_tv_int(mod ? 0 : (int64_t)(0 - (uint64_t)x), "int64");
    else
        *res = tp_tv_int(mod ? x % y : x / y, "int64");
    return 0;
}

static int f_div(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return divmod(st, a, res, 0);
}

static int f_mod(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return divmod(st, a, res, 1);
}

static int f_atoi(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    /* strconv.Atoi: optional sign, decimal digits only; errors are 0 */
    char buf[32];
    int64_t v = 0;
    if (a[0].n > 0 && a[0].n < sizeof(buf)) {
        memcpy(buf, a[0].s, a[0].n);
        buf[a[0].n] = '\0';
        const char *d = buf + (buf[0] == '-' || buf[0] == '+');
        char *end;
        if (*d >= '0' && *d <= '9') {
            unsigned long long u = strtoull(d, &end, 10);
            if (*end == '\0' &&
                u <= (buf[0] == '-' ? 9223372036854775808ull : 9223372036854775807ull))
                v = buf[0] == '-' ? (int64_t)(0 - u) : (int64_t)u;
        }
    }
    *res = tp_tv_int(v, "int");
    return 0;
}

static int f_int(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_int(to_int64(&a[0]), "int");
    return 0;
}

static int f_int64(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_int(to_int64(&a[0]), "int64");
    return 0;
}

static int f_float64(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    double f = 0;
    const tp_tv_t *v = &a[0];
    if (v->kind == TV_FLOAT)
        f = v->f;
    else if (v->kind == TV_INT || v->kind == TV_BOOL)
        f = (double)v->i;
    else if (v->kind == TV_STRING && v->n > 0 && v->n < 64) {
        char buf[64], *end;
        memcpy(buf, v->s, v->n);
        buf[v->n] = '\0';
        /* strconv.ParseFloat's decimal syntax; hex floats, inf and nan are refused */
        if (strpbrk(buf, "xXnNiI") == NULL) {
            double x = strtod(buf, &end);
            if (*end == '\0' && buf[0] != ' ' && !isinf(x))
                f = x;
        }
    }
    *res = (tp_tv_t){.kind = TV_FLOAT, .tname = "float64", .f = f};
    return 0;
}

#define FN(name, cb, np, var, ...)                                                                 \
    {                                                                                              \
        name, cb, np, var, {__VA_ARGS__}, 0                                                        \
    }

const tp_tmpl__fn_t tp_tmpl__sprig_fns[] = {
    FN("upper", f_upper, 1, 0, TP_STR),
    FN("lower", f_lower, 1, 0, TP_STR),
    FN("trim", f_trim, 1, 0, TP_STR),
    FN("trimAll", f_trimall, 2, 0, TP_STR, TP_STR),
    FN("trimPrefix", f_trimprefix, 2, 0, TP_STR, TP_STR),
    FN("trimSuffix", f_trimsuffix, 2, 0, TP_STR, TP_STR),
    FN("contains", f_contains, 2, 0, TP_STR, TP_STR),
    FN("hasPrefix", f_hasprefix, 2, 0, TP_STR, TP_STR),
    FN("hasSuffix", f_hassuffix, 2, 0, TP_STR, TP_STR),
    FN("replace", f_replace, 3, 0, TP_STR, TP_STR, TP_STR),
    FN("repeat", f_repeat, 2, 0, TP_INT, TP_STR),
    FN("trunc", f_trunc, 2, 0, TP_INT, TP_STR),
    FN("substr", f_substr, 3, 0, TP_INT, TP_INT, TP_STR),
    FN("quote", f_quote, 1, 1, TP_ANY),
    FN("squote", f_squote, 1, 1, TP_ANY),
    FN("cat", f_cat, 1, 1, TP_ANY),
    FN("indent", f_indent, 2, 0, TP_INT, TP_STR),
    FN("nindent", f_nindent, 2, 0, TP_INT, TP_STR),
    FN("b64enc", f_b64enc, 1, 0, TP_STR),
    FN("b64dec", f_b64dec, 1, 0, TP_STR),
    FN("toString", f_tostring, 1, 0, TP_ANY),
    FN("join", f_join, 2, 0, TP_STR, TP_ANY),
    FN("splitList", f_splitlist, 2, 0, TP_STR, TP_STR),
    FN("split", f_split, 2, 0, TP_STR, TP_STR),
    FN("default", f_default, 2, 1, TP_ANY, TP_ANY),
    FN("empty", f_empty, 1, 0, TP_ANY),
    FN("coalesce", f_coalesce, 1, 1, TP_ANY),
    FN("ternary", f_ternary, 3, 0, TP_ANY, TP_ANY, TP_BOOL),
    FN("toJson", tp_tmpl__f_json, 1, 0, TP_ANY),
    FN("toRawJson", tp_tmpl__f_rawjson, 1, 0, TP_ANY),
    FN("toPrettyJson", tp_tmpl__f_prettyjson, 1, 0, TP_ANY),
    FN("add", f_add, 1, 1, TP_ANY),
    FN("add1", f_add1, 1, 0, TP_ANY),
    FN("sub", f_sub, 2, 0, TP_ANY, TP_ANY),
    FN("mul", f_mul, 2, 1, TP_ANY, TP_ANY),
    FN("div", f_div, 2, 0, TP_ANY, TP_ANY),
    FN("mod", f_mod, 2, 0, TP_ANY, TP_ANY),
    FN("atoi", f_atoi, 1, 0, TP_STR),
    FN("int", f_int, 1, 0, TP_ANY),
    FN("int64", f_int64, 1, 0, TP_ANY),
    FN("float64", f_float64, 1, 0, TP_ANY),
};
const size_t tp_tmpl__sprig_nfns = sizeof(tp_tmpl__sprig_fns) / sizeof(tp_tmpl__sprig_fns[0]);
