/* common/tp_tmpl_fmt.c: Go's printing of template values: fmt's %v and the printf
 * verbs, strconv's float formatting and quoting, encoding/json's Marshal. The values
 * are what encoding/json decodes into an interface{}, plus the few types functions
 * return (int, int64, uint8, []string, map[string]string). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_tmpl_int.h"

#define MAX_WIDTH 100000 /* a printf width or precision above this is refused */

/* The shortest decimal digits that read back as <f> (> 0, finite), as strconv's
 * shortest formatting finds them; returns their count, *dp the decimal point. */
static int shortest(double f, char *digs, int *dp)
{
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    int nd = 0;
    const char *c = buf;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            digs[nd++] = *c;
    *dp = atoi(c + 1) + 1;
    while (nd > 1 && digs[nd - 1] == '0')
        nd--;
    digs[nd] = '\0';
    return nd;
}

static void put_exp(tp_buf_t *b, char e, int exp)
{
    tp_buf_printf(b, "%c%c%02d", e, exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
}

void tp_tmpl__float(tp_buf_t *b, double f, char fmt, int prec)
{
    if (isnan(f)) {
        tp_buf_puts(b, "NaN");
        return;
    }
    if (isinf(f)) {
        tp_buf_puts(b, f > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (prec >= 0) {
        char spec[8];
        snprintf(spec, sizeof(spec), "%%.*%c", fmt);
        tp_buf_printf(b, spec, prec, f);
        return;
    }
    if (signbit(f))
        tp_buf_putc(b, '-'), f = -f;
    if (f == 0) {
        tp_buf_puts(b, fmt == 'e' || fmt == 'E' ? "0e+00" : "0");
        return;
    }
    char d[24];
    int dp, nd = shortest(f, d, &dp);
    int exp = dp - 1;
    if (fmt == 'g' || fmt == 'G') /* shortest %g: %e below 1e-4 or from 1e+06 on */
        fmt = exp < -4 || exp >= 6 ? (fmt == 'g' ? 'e' : 'E') : 'f';
    if (fmt == 'e' || fmt == 'E') {
        tp_buf_putc(b, d[0]);
        if (nd > 1) {
            tp_buf_putc(b, '.');
            tp_buf_append(b, d + 1, (size_t)nd - 1);
        }
        put_exp(b, fmt, exp);
        return;
    }
    if (dp <= 0) {
        tp_buf_puts(b, "0.");
        for (int i = 0; i < -dp; i++)
            tp_buf_putc(b, '0');
        tp_buf_append(b, d, (size_t)nd);
    } else if (dp >= nd) {
        tp_buf_append(b, d, (size_t)nd);
        for (int i = nd; i < dp; i++)
            tp_buf_putc(b, '0');
    } else {
        tp_buf_append(b, d, (size_t)dp);
        tp_buf_putc(b, '.');
        tp_buf_append(b, d + dp, (size_t)(nd - dp));
    }
}

/* ---- UTF-8 and strconv.Quote ---- */

size_t tp_tmpl__rune(const unsigned char *s, size_t n, unsigned long *r)
{
    if (s[0] < 0x80)
        return *r = s[0], 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    unsigned long v = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
        (len == 4 && (v < 0x10000 || v > 0x10ffff)))
        return 0;
    *r = v;
    return len;
}

/* unicode.IsPrint for the ranges that matter in request bodies: ASCII exactly; above
 * it the controls, separators, format characters and non-characters that Go does
 * not print. Unassigned code points are taken as printable (Go escapes them). */
int tp_tmpl__is_print(unsigned long r)
{
    if (r < 0x80)
        return r >= 0x20 && r < 0x7f;
    if (r < 0xa1 || r == 0xad || r == 0x1680 || (r >= 0x2000 && r <= 0x200f) ||
        (r >= 0x2028 && r <= 0x202f) || (r >= 0x205f && r <= 0x206f) || r == 0x3000 ||
        r == 0xfeff || (r >= 0xfff9 && r <= 0xfffb) || (r & 0xfffe) == 0xfffe ||
        (r >= 0xe000 && r <= 0xf8ff) || r >= 0xf0000 || (r >= 0xfdd0 && r <= 0xfdef))
        return 0;
    return 1;
}

static void quote_rune(tp_buf_t *b, unsigned long r, char q, size_t width)
{
    static const char hex[] = "0123456789abcdef";
    if (r == (unsigned long)q || r == '\\') {
        tp_buf_putc(b, '\\');
        tp_buf_putc(b, (char)r);
        return;
    }
    if (tp_tmpl__is_print(r)) {
        char e[4];
        size_t n = 0;
        if (r < 0x80)
            e[n++] = (char)r;
        else if (r < 0x800)
            e[n++] = (char)(0xc0 | (r >> 6)), e[n++] = (char)(0x80 | (r & 0x3f));
        else if (r < 0x10000)
            e[n++] = (char)(0xe0 | (r >> 12)), e[n++] = (char)(0x80 | ((r >> 6) & 0x3f)),
            e[n++] = (char)(0x80 | (r & 0x3f));
        else
            e[n++] = (char)(0xf0 | (r >> 18)), e[n++] = (char)(0x80 | ((r >> 12) & 0x3f)),
            e[n++] = (char)(0x80 | ((r >> 6) & 0x3f)), e[n++] = (char)(0x80 | (r & 0x3f));
        tp_buf_append(b, e, n);
        return;
    }
    switch (r) {
    case '\a':
        tp_buf_puts(b, "\\a");
        return;
    case '\b':
        tp_buf_puts(b, "\\b");
        return;
    case '\f':
        tp_buf_puts(b, "\\f");
        return;
    case '\n':
        tp_buf_puts(b, "\\n");
        return;
    case '\r':
        tp_buf_puts(b, "\\r");
        return;
    case '\t':
        tp_buf_puts(b, "\\t");
        return;
    case '\v':
        tp_buf_puts(b, "\\v");
        return;
    }
    if (r < 0x80 || width == 0) { /* a control, or a byte that is not UTF-8 */
        tp_buf_puts(b, "\\x");
        tp_buf_putc(b, hex[(r >> 4) & 15]);
        tp_buf_putc(b, hex[r & 15]);
    } else if (r < 0x10000) {
        tp_buf_printf(b, "\\u%04lx", r);
    } else {
        tp_buf_printf(b, "\\U%08lx", r);
    }
}

void tp_tmpl__quote(tp_buf_t *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    tp_buf_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned long r;
        size_t l = tp_tmpl__rune(p + i, n - i, &r);
        if (l == 0)
            quote_rune(b, p[i], '"', 0), i++;
        else
            quote_rune(b, r, '"', l), i += l;
    }
    tp_buf_putc(b, '"');
}

/* ---- encoding/json ---- */

static void json_str(tp_buf_t *b, const char *s, size_t n, int html)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    tp_buf_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            if (c == '"' || c == '\\') {
                tp_buf_putc(b, '\\');
                tp_buf_putc(b, (char)c);
            } else if (c == '\n') {
                tp_buf_puts(b, "\\n");
            } else if (c == '\r') {
                tp_buf_puts(b, "\\r");
            } else if (c == '\t') {
                tp_buf_puts(b, "\\t");
            } else if (c == '\b') {
                tp_buf_puts(b, "\\b");
            } else if (c == '\f') {
                tp_buf_puts(b, "\\f");
            } else if (c < 0x20 || (html && (c == '<' || c == '>' || c == '&'))) {
                tp_buf_puts(b, "\\u00");
                tp_buf_putc(b, hex[c >> 4]);
                tp_buf_putc(b, hex[c & 15]);
            } else {
                tp_buf_putc(b, (char)c);
            }
            continue;
        }
        unsigned long r;
        size_t l = tp_tmpl__rune(p + i, n - i, &r);
        if (l == 0) {
            tp_buf_puts(b, "\\ufffd"); /* Go replaces bytes that are not UTF-8 */
            i++;
        } else if (r == 0x2028 || r == 0x2029) {
            tp_buf_printf(b, "\\u%04lx", r);
            i += l;
        } else {
            tp_buf_append(b, p + i, l);
            i += l;
        }
    }
    tp_buf_putc(b, '"');
}

static void json_float(tp_buf_t *b, double f)
{
    double a = fabs(f);
    size_t at = b->len;
    tp_tmpl__float(b, f, a != 0 && (a < 1e-6 || a >= 1e21) ? 'e' : 'f', -1);
    size_t n = b->len - at;
    char *s = b->data + at;
    /* Go writes 1e-07 as 1e-7 */
    if (n >= 4 && s[n - 4] == 'e' && s[n - 3] == '-' && s[n - 2] == '0') {
        s[n - 2] = s[n - 1];
        b->len--;
    }
}

static void newline(tp_buf_t *b, int indent, int depth)
{
    if (!indent)
        return;
    tp_buf_putc(b, '\n');
    for (int i = 0; i < depth; i++)
        tp_buf_puts(b, "  ");
}

int tp_tmpl__json(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, int html, int indent, int depth)
{
    switch (v->kind) {
    case TV_BOOL:
        tp_buf_puts(b, v->i ? "true" : "false");
        return 0;
    case TV_INT:
        tp_buf_printf(b, "%lld", (long long)v->i);
        return 0;
    case TV_FLOAT:
        json_float(b, v->f);
        return 0;
    case TV_STRING:
        json_str(b, v->s, v->n, html);
        return 0;
    case TV_ARRAY: {
        tp_buf_putc(b, '[');
        int first = 1;
        for (const cJSON *e = v->j->child; e; e = e->next) {
            tp_tv_t ev = tp_tv_json(e);
            if (!first)
                tp_buf_putc(b, ',');
            first = 0;
            newline(b, indent, depth + 1);
            if (tp_tmpl__json(st, b, &ev, html, indent, depth + 1) < 0)
                return -1;
        }
        if (!first)
            newline(b, indent, depth);
        tp_buf_putc(b, ']');
        return 0;
    }
    case TV_OBJECT: {
        const cJSON **m;
        int n = tp_tmpl__sorted(st, v->j, &m);
        if (n < 0)
            return -1;
        tp_buf_putc(b, '{');
        for (int i = 0; i < n; i++) {
            tp_tv_t ev = tp_tv_json(m[i]);
            if (i)
                tp_buf_putc(b, ',');
            newline(b, indent, depth + 1);
            json_str(b, m[i]->string, strlen(m[i]->string), html);
            tp_buf_puts(b, indent ? ": " : ":");
            if (tp_tmpl__json(st, b, &ev, html, indent, depth + 1) < 0)
                return -1;
        }
        if (n)
            newline(b, indent, depth);
        tp_buf_putc(b, '}');
        return 0;
    }
    default:
        tp_buf_puts(b, "null");
        return 0;
    }
}

/* ---- fmt ---- */

typedef struct {
    char verb;
    int minus, plus, zero, space;
    int wid, prec; /* -1 when absent */
} spec_t;

static size_t runes(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* Appends <s> padded to the width; numbers put zeros after their sign. */
static void pad(tp_buf_t *b, const char *s, size_t n, const spec_t *sp, int num)
{
    size_t w = runes(s, n);
    if (sp->wid < 0 || (size_t)sp->wid <= w) {
        tp_buf_append(b, s, n);
        return;
    }
    size_t fill = (size_t)sp->wid - w;
    if (sp->minus) {
        tp_buf_append(b, s, n);
        while (fill--)
            tp_buf_putc(b, ' ');
        return;
    }
    if (sp->zero && num && n > 0 && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) {
        tp_buf_putc(b, s[0]);
        s++, n--;
    }
    while (fill--)
        tp_buf_putc(b, sp->zero ? '0' : ' ');
    tp_buf_append(b, s, n);
}

static const char *type_name(const tp_tv_t *v)
{
    return v->tname ? v->tname : "interface {}";
}

static int fmt_arg(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, const spec_t *sp, int depth);

static int bad_verb(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, char verb)
{
    spec_t plain = {.verb = 'v', .wid = -1, .prec = -1};
    if (v->kind == TV_NIL || v->kind == TV_INVALID) {
        tp_buf_printf(b, "%%!%c(<nil>)", verb);
        return 0;
    }
    tp_buf_printf(b, "%%!%c(%s=", verb, type_name(v));
    if (fmt_arg(st, b, v, &plain, 0) < 0)
        return -1;
    tp_buf_putc(b, ')');
    return 0;
}

static int fmt_int(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, const spec_t *sp)
{
    char tmp[80];
    int n = 0;
    unsigned long long u = v->i < 0 ? 0ull - (unsigned long long)v->i : (unsigned long long)v->i;
    const char *sign = v->i < 0 ? "-" : sp->plus ? "+" : sp->space ? " " : "";
    switch (sp->verb) {
    case 'v':
    case 'd':
        n = snprintf(tmp, sizeof(tmp), "%s%.*llu", sign, sp->prec < 0 ? 1 : sp->prec, u);
        break;
    case 'x':
    case 'X':
        n = snprintf(tmp, sizeof(tmp), sp->verb == 'x' ? "%s%.*llx" : "%s%.*llX", sign,
                     sp->prec < 0 ? 1 : sp->prec, u);
        break;
    case 'o':
        n = snprintf(tmp, sizeof(tmp), "%s%.*llo", sign, sp->prec < 0 ? 1 : sp->prec, u);
        break;
    case 'b': {
        char bits[65];
        int k = 64;
        bits[k] = '\0';
        do
            bits[--k] = (char)('0' + (u & 1));
        while (u >>= 1);
        n = snprintf(tmp, sizeof(tmp), "%s%s", sign, bits + k);
        break;
    }
    case 'c':
    case 'q': {
        unsigned long r = v->i < 0 || v->i > 0x10ffff || (v->i >= 0xd800 && v->i <= 0xdfff)
                              ? 0xfffd
                              : (unsigned long)v->i;
        tp_buf_t q = {0};
        if (sp->verb == 'q') {
            tp_buf_putc(&q, '\'');
            quote_rune(&q, r, '\'', 2);
            tp_buf_putc(&q, '\'');
        } else { /* %c writes the rune itself, printable or not */
            char e[4];
            size_t k = 0;
            if (r < 0x80)
                e[k++] = (char)r;
            else if (r < 0x800)
                e[k++] = (char)(0xc0 | (r >> 6)), e[k++] = (char)(0x80 | (r & 0x3f));
            else if (r < 0x10000)
                e[k++] = (char)(0xe0 | (r >> 12)), e[k++] = (char)(0x80 | ((r >> 6) & 0x3f)),
                e[k++] = (char)(0x80 | (r & 0x3f));
            else
                e[k++] = (char)(0xf0 | (r >> 18)), e[k++] = (char)(0x80 | ((r >> 12) & 0x3f)),
                e[k++] = (char)(0x80 | ((r >> 6) & 0x3f)), e[k++] = (char)(0x80 | (r & 0x3f));
            tp_buf_append(&q, e, k);
        }
        pad(b, q.data ? q.data : "", q.len, sp, 0);
        tp_buf_free(&q);
        return 0;
    }
    default:
        return bad_verb(st, b, v, sp->verb);
    }
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return tp_tmpl__err(st, "printf: a number too wide");
    spec_t s2 = *sp;
    if (sp->prec >= 0)
        s2.zero = 0; /* Go ignores the 0 flag when a precision is given */
    pad(b, tmp, (size_t)n, &s2, 1);
    return 0;
}

static int fmt_float(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, const spec_t *sp)
{
    char verb = sp->verb;
    int prec = sp->prec;
    switch (verb) {
    case 'v':
        verb = 'g';
        break;
    case 'e':
    case 'E':
    case 'f':
    case 'F':
        if (prec < 0)
            prec = 6;
        if (verb == 'F')
            verb = 'f';
        break;
    case 'g':
    case 'G':
        break;
    case 'x':
    case 'X':
        return tp_tmpl__err(st, "printf: %%%c of a float64 is not supported", verb);
    default:
        return bad_verb(st, b, v, verb);
    }
    tp_buf_t t = {0};
    if (!signbit(v->f) && !isnan(v->f)) {
        if (sp->plus)
            tp_buf_putc(&t, '+');
        else if (sp->space)
            tp_buf_putc(&t, ' ');
    }
    size_t at = t.len;
    tp_tmpl__float(&t, v->f, verb, prec);
    if (isinf(v->f) && t.data[at] == '+') { /* fmt drops strconv's + unless asked */
        if (!sp->plus)
            memmove(t.data + at, t.data + at + 1, --t.len - at);
    }
    spec_t s2 = *sp;
    if (isinf(v->f) || isnan(v->f))
        s2.zero = 0;
    pad(b, t.data, t.len, &s2, 1);
    tp_buf_free(&t);
    return 0;
}

static int fmt_arg(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, const spec_t *sp, int depth)
{
    if (b->len > TP_TMPL_MAX_OUTPUT)
        return tp_tmpl__err(st, "the output is larger than %u bytes", TP_TMPL_MAX_OUTPUT);
    switch (v->kind) {
    case TV_INVALID:
    case TV_NIL:
        if (depth > 0 || sp->verb == 'v') {
            pad(b, "<nil>", 5, sp, 0);
            return 0;
        }
        return bad_verb(st, b, v, sp->verb);
    case TV_BOOL:
        if (sp->verb != 'v' && sp->verb != 't')
            return bad_verb(st, b, v, sp->verb);
        pad(b, v->i ? "true" : "false", v->i ? 4 : 5, sp, 0);
        return 0;
    case TV_INT:
        return fmt_int(st, b, v, sp);
    case TV_FLOAT:
        return fmt_float(st, b, v, sp);
    case TV_STRING: {
        size_t n = v->n;
        if (sp->prec >= 0) { /* the precision counts runes */
            size_t r = 0, i = 0;
            for (; i < v->n; i++) {
                if (((unsigned char)v->s[i] & 0xc0) != 0x80 && r++ == (size_t)sp->prec)
                    break;
            }
            n = i;
        }
        if (sp->verb == 'v' || sp->verb == 's') {
            pad(b, v->s, n, sp, 0);
        } else if (sp->verb == 'q') {
            tp_buf_t q = {0};
            tp_tmpl__quote(&q, v->s, n);
            pad(b, q.data, q.len, sp, 0);
            tp_buf_free(&q);
        } else if (sp->verb == 'x' || sp->verb == 'X') {
            tp_buf_t q = {0};
            for (size_t i = 0; i < v->n; i++)
                tp_buf_printf(&q, sp->verb == 'x' ? "%02x" : "%02X", (unsigned char)v->s[i]);
            pad(b, q.data ? q.data : "", q.len, sp, 0);
            tp_buf_free(&q);
        } else {
            return bad_verb(st, b, v, sp->verb);
        }
        return 0;
    }
    case TV_ARRAY: {
        tp_buf_putc(b, '[');
        int first = 1;
        for (const cJSON *e = v->j->child; e; e = e->next) {
            tp_tv_t ev = tp_tv_json(e);
            if (!first)
                tp_buf_putc(b, ' ');
            first = 0;
            if (fmt_arg(st, b, &ev, sp, depth + 1) < 0)
                return -1;
        }
        tp_buf_putc(b, ']');
        return 0;
    }
    case TV_OBJECT: {
        const cJSON **m;
        int n = tp_tmpl__sorted(st, v->j, &m);
        if (n < 0)
            return -1;
        tp_buf_puts(b, "map[");
        for (int i = 0; i < n; i++) {
            tp_tv_t k = tp_tv_str(m[i]->string, strlen(m[i]->string)), ev = tp_tv_json(m[i]);
            if (i)
                tp_buf_putc(b, ' ');
            if (fmt_arg(st, b, &k, sp, depth + 1) < 0)
                return -1;
            tp_buf_putc(b, ':');
            if (fmt_arg(st, b, &ev, sp, depth + 1) < 0)
                return -1;
        }
        tp_buf_putc(b, ']');
        return 0;
    }
    }
    return 0;
}

int tp_tmpl__print_v(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v)
{
    spec_t sp = {.verb = 'v', .wid = -1, .prec = -1};
    return fmt_arg(st, b, v, &sp, 0);
}

/* Parses one directive after its '%' at f[*i]; 0, or -1 with a reason. */
static int parse_spec(const char *f, size_t n, size_t *i, spec_t *sp, const char **bad)
{
    *sp = (spec_t){.wid = -1, .prec = -1};
    for (; *i < n; (*i)++) {
        char c = f[*i];
        if (c == '-')
            sp->minus = 1, sp->zero = 0;
        else if (c == '+')
            sp->plus = 1;
        else if (c == '0')
            sp->zero = !sp->minus;
        else if (c == ' ')
            sp->space = 1;
        else if (c == '#')
            return *bad = "the # flag", -1;
        else
            break;
    }
    for (int *num = &sp->wid;; num = &sp->prec) {
        if (*i < n && (f[*i] == '*' || f[*i] == '['))
            return *bad = f[*i] == '*' ? "a * width or precision" : "an explicit argument index",
                   -1;
        if (num == &sp->prec)
            *num = 0;
        while (*i < n && f[*i] >= '0' && f[*i] <= '9') {
            if (*num < 0)
                *num = 0;
            *num = *num * 10 + (f[*i] - '0');
            if (*num > MAX_WIDTH)
                return *bad = "a width or precision above 100000", -1;
            (*i)++;
        }
        if (num == &sp->prec || *i >= n || f[*i] != '.')
            break;
        (*i)++;
    }
    if (*i < n && (f[*i] == '*' || f[*i] == '['))
        return *bad = f[*i] == '*' ? "a * width or precision" : "an explicit argument index", -1;
    if (*i >= n)
        return 1; /* %!(NOVERB) */
    sp->verb = f[(*i)++];
    if (!strchr("vdsqfFeEgGxXtcob%", sp->verb))
        return *bad = "this verb", -1;
    return 0;
}

int tp_tmpl__check_format(const char *f, size_t n, char *why, size_t whylen)
{
    for (size_t i = 0; i < n;) {
        if (f[i++] != '%')
            continue;
        size_t at = i - 1;
        spec_t sp;
        const char *bad = NULL;
        if (parse_spec(f, n, &i, &sp, &bad) < 0) {
            size_t e = at + 1;
            while (e < n && e - at < 12 && !((f[e] | 0x20) >= 'a' && (f[e] | 0x20) <= 'z'))
                e++;
            snprintf(why, whylen, "printf: %s is not supported (in \"%.*s\")", bad,
                     (int)(e < n ? e - at + 1 : e - at), f + at);
            return -1;
        }
    }
    return 0;
}

int tp_tmpl__sprintf(tp_tmpl__st_t *st, tp_buf_t *b, const char *f, size_t fn, const tp_tv_t *args,
                     int nargs)
{
    int argi = 0;
    for (size_t i = 0; i < fn;) {
        if (f[i] != '%') {
            size_t e = i;
            while (e < fn && f[e] != '%')
                e++;
            tp_buf_append(b, f + i, e - i);
            i = e;
            continue;
        }
        i++;
        spec_t sp;
        const char *bad = NULL;
        int rc = parse_spec(f, fn, &i, &sp, &bad);
        if (rc < 0)
            return tp_tmpl__err(st, "printf: %s is not supported", bad);
        if (rc > 0) {
            tp_buf_puts(b, "%!(NOVERB)");
            break;
        }
        if (sp.verb == '%') {
            tp_buf_putc(b, '%');
            continue;
        }
        if (argi >= nargs) {
            tp_buf_printf(b, "%%!%c(MISSING)", sp.verb);
            continue;
        }
        if (fmt_arg(st, b, &args[argi++], &sp, 0) < 0)
            return -1;
    }
    if (argi < nargs) {
        spec_t plain = {.verb = 'v', .wid = -1, .prec = -1};
        tp_buf_puts(b, "%!(EXTRA ");
        for (int k = argi; k < nargs; k++) {
            if (k > argi)
                tp_buf_puts(b, ", ");
            if (args[k].kind == TV_NIL || args[k].kind == TV_INVALID) {
                tp_buf_puts(b, "<nil>");
                continue;
            }
            tp_buf_printf(b, "%s=", type_name(&args[k]));
            if (fmt_arg(st, b, &args[k], &plain, 0) < 0)
                return -1;
        }
        tp_buf_putc(b, ')');
    }
    return 0;
}
