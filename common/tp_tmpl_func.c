/* common/tp_tmpl_func.c: the functions a tp_tmpl template may call: Go's builtins and
 * Tyk's jsonMarshal and xmlMarshal here, Sprig's in tp_tmpl_sprig.c; each has Go's parameter types
 * so that arguments are checked as text/template checks them. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_tmpl_int.h"

/* Copies <b> into the run's memory as the string result; frees <b>. */
int tp_tmpl__ret_buf(tp_tmpl__st_t *st, tp_buf_t *b, tp_tv_t *res)
{
    char *p = tp_tmpl__alloc(st, b->len);
    if (p == NULL) {
        tp_buf_free(b);
        return -1;
    }
    if (b->len)
        memcpy(p, b->data, b->len);
    *res = tp_tv_str(p, b->len);
    tp_buf_free(b);
    return 0;
}

static int is_str(const tp_tv_t *v)
{
    return v->kind == TV_STRING;
}

/* fmt.Sprint: a space between operands when neither is a string. */
static int sprint(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *a, int n, int ln)
{
    for (int i = 0; i < n; i++) {
        if (i > 0 && (ln || (!is_str(&a[i]) && !is_str(&a[i - 1]))))
            tp_buf_putc(b, ' ');
        if (tp_tmpl__print_v(st, b, &a[i]) < 0)
            return -1;
    }
    if (ln)
        tp_buf_putc(b, '\n');
    return 0;
}

static int f_print(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t b = {0};
    if (sprint(st, &b, a, n, 0) < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_println(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t b = {0};
    if (sprint(st, &b, a, n, 1) < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_printf(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t b = {0};
    if (tp_tmpl__sprintf(st, &b, a[0].s, a[0].n, a + 1, n - 1) < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

/* evalArgs of html, js and urlquery: one string as it is, else fmt.Sprint with a nil
 * argument printed as "<no value>". */
static int eval_args(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_buf_t *b)
{
    if (n == 1 && is_str(&a[0])) {
        tp_buf_append(b, a[0].s, a[0].n);
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (a[i].kind == TV_NIL || a[i].kind == TV_INVALID)
            a[i] = tp_tv_str("<no value>", 10);
    return sprint(st, b, a, n, 0);
}

static int f_html(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t in = {0}, b = {0};
    if (eval_args(st, a, n, &in) < 0) {
        tp_buf_free(&in);
        return -1;
    }
    for (size_t i = 0; i < in.len; i++) {
        switch (in.data[i]) {
        case '"':
            tp_buf_puts(&b, "&#34;");
            break;
        case '\'':
            tp_buf_puts(&b, "&#39;");
            break;
        case '&':
            tp_buf_puts(&b, "&amp;");
            break;
        case '<':
            tp_buf_puts(&b, "&lt;");
            break;
        case '>':
            tp_buf_puts(&b, "&gt;");
            break;
        default:
            tp_buf_putc(&b, in.data[i]);
        }
    }
    tp_buf_free(&in);
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_js(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    static const char hex[] = "0123456789ABCDEF";
    tp_buf_t in = {0}, b = {0};
    if (eval_args(st, a, n, &in) < 0) {
        tp_buf_free(&in);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)in.data;
    for (size_t i = 0; i < in.len;) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            switch (c) {
            case '\\':
                tp_buf_puts(&b, "\\\\");
                break;
            case '\'':
                tp_buf_puts(&b, "\\'");
                break;
            case '"':
                tp_buf_puts(&b, "\\\"");
                break;
            case '<':
                tp_buf_puts(&b, "\\u003C");
                break;
            case '>':
                tp_buf_puts(&b, "\\u003E");
                break;
            case '&':
                tp_buf_puts(&b, "\\u0026");
                break;
            case '=':
                tp_buf_puts(&b, "\\u003D");
                break;
            default:
                if (c < ' ') {
                    tp_buf_puts(&b, "\\u00");
                    tp_buf_putc(&b, hex[c >> 4]);
                    tp_buf_putc(&b, hex[c & 15]);
                } else {
                    tp_buf_putc(&b, (char)c);
                }
            }
            continue;
        }
        unsigned long r;
        size_t l = tp_tmpl__rune(p + i, in.len - i, &r);
        if (l == 0)
            r = 0xfffd, l = 1;
        if (tp_tmpl__is_print(r) && r != 0xfffd)
            tp_buf_append(&b, p + i, l);
        else
            tp_buf_printf(&b, "\\u%04lX", r);
        i += l;
    }
    tp_buf_free(&in);
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_urlquery(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_buf_t in = {0}, b = {0};
    if (eval_args(st, a, n, &in) < 0) {
        tp_buf_free(&in);
        return -1;
    }
    for (size_t i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.data[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            tp_buf_putc(&b, (char)c);
        else if (c == ' ')
            tp_buf_putc(&b, '+');
        else
            tp_buf_printf(&b, "%%%02X", c);
    }
    tp_buf_free(&in);
    return tp_tmpl__ret_buf(st, &b, res);
}

static int f_not(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)st, (void)n;
    *res = tp_tv_bool(!tp_tv_truth(&a[0]));
    return 0;
}

static int f_len(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    const cJSON **m;
    int c = 0;
    switch (a[0].kind) {
    case TV_STRING:
        c = (int)a[0].n;
        break;
    case TV_ARRAY:
        c = cJSON_GetArraySize(a[0].j);
        break;
    case TV_OBJECT:
        if ((c = tp_tmpl__sorted(st, a[0].j, &m)) < 0)
            return -1;
        break;
    case TV_NIL:
    case TV_INVALID:
        return tp_tmpl__err(st, "error calling len: len of untyped nil");
    default:
        return tp_tmpl__err(st, "error calling len: len of type %s", a[0].tname);
    }
    *res = tp_tv_int(c, "int");
    return 0;
}

static int f_index(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    tp_tv_t v = a[0];
    if (v.kind == TV_INVALID || v.kind == TV_NIL)
        return tp_tmpl__err(st, "error calling index: index of untyped nil");
    for (int k = 1; k < n; k++) {
        const tp_tv_t *ix = &a[k];
        if (v.kind == TV_NIL)
            return tp_tmpl__err(st, "error calling index: index of nil pointer");
        if (v.kind == TV_ARRAY || v.kind == TV_STRING) {
            int64_t len = v.kind == TV_STRING ? (int64_t)v.n : cJSON_GetArraySize(v.j);
            if (ix->kind == TV_INVALID || ix->kind == TV_NIL)
                return tp_tmpl__err(st, "error calling index: cannot index slice/array with nil");
            if (ix->kind != TV_INT)
                return tp_tmpl__err(
                    st, "error calling index: cannot index slice/array with type %s", ix->tname);
            if (ix->i < 0 || ix->i > len)
                return tp_tmpl__err(st, "error calling index: index out of range: %lld",
                                    (long long)ix->i);
            if (ix->i == len) /* indexArg lets len through; reflect then panics */
                return tp_tmpl__err(st, "error calling index: reflect: %s index out of range",
                                    v.kind == TV_STRING ? "string" : "slice");
            if (v.kind == TV_STRING)
                v = tp_tv_int((unsigned char)v.s[ix->i], "uint8");
            else {
                tp_tv_t c = v;
                v = tp_tv_json(cJSON_GetArrayItem(c.j, (int)ix->i));
                if (strcmp(c.tname, "[]string") == 0)
                    v.iface = 0;
            }
        } else if (v.kind == TV_OBJECT) {
            if (ix->kind == TV_INVALID || ix->kind == TV_NIL)
                return tp_tmpl__err(st,
                                    "error calling index: value is nil; should be of type string");
            if (ix->kind != TV_STRING)
                return tp_tmpl__err(st, "error calling index: value has type %s; should be string",
                                    ix->tname);
            int sm = strcmp(v.tname, "map[string]string") == 0;
            const cJSON *m = tp_tmpl__lookup(v.j, ix->s, ix->n);
            if (m)
                v = tp_tv_json(m), v.iface = !sm;
            else if (sm)
                v = tp_tv_str("", 0);
            else
                v = tp_tv_json(NULL); /* the zero of interface{}: a nil interface */
        } else {
            return tp_tmpl__err(st, "error calling index: can't index item of type %s",
                                v.iface ? "interface {}" : v.tname);
        }
    }
    *res = v;
    return 0;
}

/* ---- comparisons ---- */

enum { K_INVALID, K_BOOL, K_INT, K_UINT, K_FLOAT, K_STRING, K_OTHER };

static int basic_kind(const tp_tv_t *v)
{
    switch (v->kind) {
    case TV_BOOL:
        return K_BOOL;
    case TV_INT:
        return strcmp(v->tname, "uint8") == 0 ? K_UINT : K_INT;
    case TV_FLOAT:
        return K_FLOAT;
    case TV_STRING:
        return K_STRING;
    case TV_ARRAY:
    case TV_OBJECT:
        return K_OTHER;
    default:
        return K_INVALID;
    }
}

static int str_cmp(const tp_tv_t *a, const tp_tv_t *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = n ? memcmp(a->s, b->s, n) : 0;
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* eq of two values: 1, 0, or -1 with the error set. */
static int eq2(tp_tmpl__st_t *st, const char *fn, const tp_tv_t *a, const tp_tv_t *b)
{
    int k1 = basic_kind(a), k2 = basic_kind(b);
    if (k1 != k2) {
        if ((k1 == K_INT && k2 == K_UINT) || (k1 == K_UINT && k2 == K_INT))
            return a->i == b->i;
        if (k1 != K_INVALID && k2 != K_INVALID)
            return tp_tmpl__err(st,
                                "error calling %s: incompatible types for comparison: %s and %s",
                                fn, a->tname, b->tname);
        return 0;
    }
    switch (k1) {
    case K_BOOL:
    case K_INT:
    case K_UINT:
        return a->i == b->i;
    case K_FLOAT:
        return a->f == b->f;
    case K_STRING:
        return str_cmp(a, b) == 0;
    case K_INVALID:
        return 1; /* nil == nil */
    default:
        return tp_tmpl__err(st, "error calling %s: non-comparable type %s", fn, a->tname);
    }
}

static int f_eq(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    if (n < 2)
        return tp_tmpl__err(st, "error calling eq: missing argument for comparison");
    for (int i = 1; i < n; i++) {
        int rc = eq2(st, "eq", &a[0], &a[i]);
        if (rc < 0)
            return -1;
        if (rc) {
            *res = tp_tv_bool(1);
            return 0;
        }
    }
    *res = tp_tv_bool(0);
    return 0;
}

static int f_ne(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    int rc = eq2(st, "ne", &a[0], &a[1]);
    if (rc < 0)
        return -1;
    *res = tp_tv_bool(!rc);
    return 0;
}

/* lt: 1, 0, or -1 with the error set, named after <fn>. */
static int lt2(tp_tmpl__st_t *st, const char *fn, const tp_tv_t *a, const tp_tv_t *b)
{
    int k1 = basic_kind(a), k2 = basic_kind(b);
    if (k1 == K_INVALID || k1 == K_OTHER || k2 == K_INVALID || k2 == K_OTHER)
        return tp_tmpl__err(st, "error calling %s: invalid type for comparison", fn);
    if (k1 != k2) {
        if (k1 == K_INT && k2 == K_UINT)
            return a->i < b->i;
        if (k1 == K_UINT && k2 == K_INT)
            return a->i < b->i;
        return tp_tmpl__err(st, "error calling %s: incompatible types for comparison", fn);
    }
    switch (k1) {
    case K_BOOL:
        return tp_tmpl__err(st, "error calling %s: invalid type for comparison", fn);
    case K_FLOAT:
        return a->f < b->f;
    case K_STRING:
        return str_cmp(a, b) < 0;
    default:
        return a->i < b->i;
    }
}

/* lt; le is lt or eq; gt is not le; ge is not lt (Go's definitions) */
static int cmp_fn(tp_tmpl__st_t *st, const char *fn, tp_tv_t *a, tp_tv_t *res)
{
    int lt = lt2(st, fn, &a[0], &a[1]);
    if (lt < 0)
        return -1;
    int le = lt;
    if (!lt && (fn[0] == 'l' ? fn[1] == 'e' : fn[1] == 't')) {
        le = eq2(st, fn, &a[0], &a[1]);
        if (le < 0)
            return -1;
    }
    int r = strcmp(fn, "lt") == 0   ? lt
            : strcmp(fn, "ge") == 0 ? !lt
            : strcmp(fn, "le") == 0 ? le
                                    : !le;
    *res = tp_tv_bool(r);
    return 0;
}

static int f_lt(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return cmp_fn(st, "lt", a, res);
}

static int f_le(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return cmp_fn(st, "le", a, res);
}

static int f_gt(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return cmp_fn(st, "gt", a, res);
}

static int f_ge(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return cmp_fn(st, "ge", a, res);
}

/* ---- JSON ---- */

static int json_fn(tp_tmpl__st_t *st, const tp_tv_t *v, int html, int indent, tp_tv_t *res)
{
    tp_buf_t b = {0};
    if (tp_tmpl__json(st, &b, v, html, indent, 0) < 0) {
        tp_buf_free(&b);
        return -1;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

int tp_tmpl__f_json(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return json_fn(st, &a[0], 1, 0, res);
}

int tp_tmpl__f_rawjson(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return json_fn(st, &a[0], 0, 0, res);
}

int tp_tmpl__f_prettyjson(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    return json_fn(st, &a[0], 1, 1, res);
}

/* ---- XML ---- */

/* XMLEscapeChars(true): & < > " ' as entities. */
static void xml_escape(tp_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&':
            tp_buf_puts(b, "&amp;");
            break;
        case '<':
            tp_buf_puts(b, "&lt;");
            break;
        case '>':
            tp_buf_puts(b, "&gt;");
            break;
        case '"':
            tp_buf_puts(b, "&quot;");
            break;
        case '\'':
            tp_buf_puts(b, "&apos;");
            break;
        default:
            tp_buf_putc(b, s[i]);
        }
    }
}

/* A scalar as fmt's %v prints it (escaped): 0, or -1 when not a scalar. */
static int xml_scalar(tp_tmpl__st_t *st, tp_buf_t *b, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        xml_escape(b, v->valuestring, strlen(v->valuestring));
    } else if (cJSON_IsNumber(v)) {
        tp_tv_t t = {.kind = TV_FLOAT, .tname = "float64", .f = v->valuedouble};
        tp_buf_t n = {0};
        int rc = tp_tmpl__print_v(st, &n, &t);
        xml_escape(b, n.data != NULL ? n.data : "", n.len);
        tp_buf_free(&n);
        return rc < 0 ? -1 : 0;
    } else if (cJSON_IsBool(v)) {
        tp_buf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
    } else {
        return -1;
    }
    return 0;
}

/* mxj's mapToXml (Map.Xml with XMLEscapeChars, as Tyk's xmlMarshal): an
 * object is an element whose "-name" members are its attributes and whose
 * "#text" is its text, the others its children; attributes and children
 * in key order; a list repeats the element; null or an empty object is
 * <key/>. -1 for what mxj refuses (a non-scalar attribute, "#text" beside
 * children). */
static int xml_elem(tp_tmpl__st_t *st, tp_buf_t *b, const char *key, const cJSON *v, int depth)
{
    if (depth > 100)
        return -1;
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (xml_elem(st, b, key, e, depth + 1) < 0)
                return -1;
        }
        return 0;
    }
    tp_buf_printf(b, "<%s", key);
    if (cJSON_IsNull(v)) {
        tp_buf_puts(b, "/>");
        return 0;
    }
    if (!cJSON_IsObject(v)) {
        tp_buf_putc(b, '>');
        if (xml_scalar(st, b, v) < 0)
            return -1;
        tp_buf_printf(b, "</%s>", key);
        return 0;
    }
    const cJSON **m;
    int n = tp_tmpl__sorted(st, v, &m);
    if (n < 0)
        return -1;
    int nattr = 0;
    const cJSON *text = NULL;
    for (int i = 0; i < n; i++) {
        if (m[i]->string[0] == '-' && m[i]->string[1] != '\0') {
            tp_buf_printf(b, " %s=\"", m[i]->string + 1);
            if (xml_scalar(st, b, m[i]) < 0)
                return -1;
            tp_buf_putc(b, '"');
            nattr++;
        } else if (strcmp(m[i]->string, "#text") == 0) {
            text = m[i];
        }
    }
    if (nattr == n) {
        tp_buf_puts(b, "/>");
        return 0;
    }
    if (text != NULL) {
        if (nattr + 1 < n)
            return -1; /* "#text key occurs with other non-attribute keys" */
        tp_buf_putc(b, '>');
        if (xml_scalar(st, b, text) < 0)
            return -1;
        tp_buf_printf(b, "</%s>", key);
        return 0;
    }
    tp_buf_putc(b, '>');
    for (int i = 0; i < n; i++)
        if (!(m[i]->string[0] == '-' && m[i]->string[1] != '\0') &&
            xml_elem(st, b, m[i]->string, m[i], depth + 1) < 0)
            return -1;
    tp_buf_printf(b, "</%s>", key);
    return 0;
}

/* Tyk's xmlMarshal: mxj.Map(v).Xml() of a map, "" for anything else or
 * when mxj fails. The root is the map's one key, unless that holds a
 * list (or there are several): then "doc" holds them. */
static int f_xml(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res)
{
    (void)n;
    tp_buf_t b = {0};
    if (a[0].kind == TV_OBJECT) {
        const cJSON *o = a[0].j;
        const cJSON **m;
        int k = tp_tmpl__sorted(st, o, &m);
        int rc = k < 0                            ? -1
                 : k == 1 && !cJSON_IsArray(m[0]) ? xml_elem(st, &b, m[0]->string, m[0], 0)
                                                  : xml_elem(st, &b, "doc", o, 0);
        if (rc < 0)
            b.len = 0;
    }
    return tp_tmpl__ret_buf(st, &b, res);
}

#define FN(name, cb, np, var, ...)                                                                 \
    {                                                                                              \
        name, cb, np, var, {__VA_ARGS__}, 0                                                        \
    }

static const tp_tmpl__fn_t fns[] = {
    /* Go's builtins (text/template funcs.go); call and slice are not here */
    {"and", f_not, 2, 1, {TP_VAL, TP_VAL}, 1},
    {"or", f_not, 2, 1, {TP_VAL, TP_VAL}, 1},
    FN("not", f_not, 1, 0, TP_VAL),
    FN("len", f_len, 1, 0, TP_ANY),
    FN("index", f_index, 2, 1, TP_VAL, TP_VAL),
    FN("print", f_print, 1, 1, TP_ANY),
    FN("printf", f_printf, 2, 1, TP_STR, TP_ANY),
    FN("println", f_println, 1, 1, TP_ANY),
    FN("html", f_html, 1, 1, TP_ANY),
    FN("js", f_js, 1, 1, TP_ANY),
    FN("urlquery", f_urlquery, 1, 1, TP_ANY),
    FN("eq", f_eq, 2, 1, TP_VAL, TP_VAL),
    FN("ne", f_ne, 2, 0, TP_VAL, TP_VAL),
    FN("lt", f_lt, 2, 0, TP_VAL, TP_VAL),
    FN("le", f_le, 2, 0, TP_VAL, TP_VAL),
    FN("gt", f_gt, 2, 0, TP_VAL, TP_VAL),
    FN("ge", f_ge, 2, 0, TP_VAL, TP_VAL),
    /* Tyk (apidef.Template) */
    FN("jsonMarshal", tp_tmpl__f_json, 1, 0, TP_ANY),
    FN("xmlMarshal", f_xml, 1, 0, TP_ANY),
};

const tp_tmpl__fn_t *tp_tmpl__find_fn(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (strlen(fns[i].name) == n && memcmp(fns[i].name, name, n) == 0)
            return &fns[i];
    for (size_t i = 0; i < tp_tmpl__sprig_nfns; i++)
        if (strlen(tp_tmpl__sprig_fns[i].name) == n &&
            memcmp(tp_tmpl__sprig_fns[i].name, name, n) == 0)
            return &tp_tmpl__sprig_fns[i];
    return NULL;
}
