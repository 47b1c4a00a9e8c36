/*
 * common/tp_jsonschema_json.c: the JSON values as gojsonschema sees them.
 *
 * Objects as Go maps (the last duplicate wins), numbers as Go prints them
 * (big.Float in messages, encoding/json's float64 in enum and const) and
 * compared as the decimals they were written as (multipleOf), and Go's
 * json.Marshal, whose text enum, const and uniqueItems compare.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_jsonschema_int.h"

typedef struct objv_ent_s {
    const cJSON *m;
    int idx;
} objv_ent_t;

static int objv_cmp(const void *a, const void *b)
{
    const objv_ent_t *x = a, *y = b;
    int c = strcmp(x->m->string, y->m->string);
    return c != 0 ? c : x->idx - y->idx;
}

/* Borrows <obj>; the caller frees with tp_jschema__objv_free. */
void tp_jschema__objv_init(tp_jschema__objv_t *o, const cJSON *obj)
{
    int n = 0;
    for (const cJSON *m = obj->child; m != NULL; m = m->next)
        n++;
    o->n = 0;
    o->live = tp_malloc(sizeof(*o->live) * (unsigned long)(n + 1));
    o->sorted = tp_malloc(sizeof(*o->sorted) * (unsigned long)(n + 1));
    if (n == 0)
        return;
    objv_ent_t *e = tp_malloc(sizeof(*e) * (unsigned long)n);
    unsigned char *keep = tp_calloc((unsigned long)n, 1);
    int i = 0;
    for (const cJSON *m = obj->child; m != NULL; m = m->next, i++)
        e[i] = (objv_ent_t){m, i};
    qsort(e, (size_t)n, sizeof(*e), objv_cmp);
    int ns = 0;
    for (i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(e[i].m->string, e[i + 1].m->string) == 0)
            continue;
        keep[e[i].idx] = 1;
        o->sorted[ns++] = e[i].m;
    }
    i = 0;
    for (const cJSON *m = obj->child; m != NULL; m = m->next, i++)
        if (keep[i])
            o->live[o->n++] = m;
    free(e);
    free(keep);
}

const cJSON *tp_jschema__objv_get(const tp_jschema__objv_t *o, const char *key)
{
    int lo = 0, hi = o->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(o->sorted[mid]->string, key);
        if (c == 0)
            return o->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

void tp_jschema__objv_free(tp_jschema__objv_t *o)
{
    free(o->live);
    free(o->sorted);
}

/* ---- numbers ---- */

int tp_jschema__digits(double v, char digits[20], int *dp)
{
    char buf[40];
    v = fabs(v);
    if (v == 0 || !isfinite(v)) {
        digits[0] = '\0';
        *dp = 0;
        return 0;
    }
    for (int prec = 0; prec < 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    int n = 0;
    const char *s = buf;
    for (; *s != '\0' && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9')
            digits[n++] = *s;
    int e = *s == 'e' ? atoi(s + 1) : 0;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *dp = e + 1;
    return n;
}

/* %f of the digits: <frac> digits after the point, as Go's fmtF. */
static void put_fixed(tp_buf_t *b, const char *d, int n, int dp, int frac)
{
    if (dp > 0) {
        for (int i = 0; i < dp; i++)
            tp_buf_putc(b, i < n ? d[i] : '0');
    } else {
        tp_buf_putc(b, '0');
    }
    if (frac > 0) {
        tp_buf_putc(b, '.');
        for (int i = 1; i <= frac; i++) {
            int idx = dp + i - 1;
            tp_buf_putc(b, idx < 0 || idx >= n ? '0' : d[idx]);
        }
    }
}

/* %e of the digits with at least two exponent digits, as Go's fmtE. */
static void put_exp(tp_buf_t *b, const char *d, int n, int dp)
{
    tp_buf_putc(b, d[0]);
    if (n > 1) {
        tp_buf_putc(b, '.');
        tp_buf_append(b, d + 1, (size_t)(n - 1));
    }
    int e = dp - 1;
    tp_buf_printf(b, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
}

void tp_jschema__put_num(tp_buf_t *b, double v)
{
    char d[20];
    int dp;
    int n = tp_jschema__digits(v, d, &dp);
    if (n == 0) {
        tp_buf_putc(b, '0');
        return;
    }
    if (v < 0)
        tp_buf_putc(b, '-');
    /* big.Float's shortest %v switches to %e outside [1e-4, 1e6) */
    if (dp - 1 < -4 || dp - 1 >= 6)
        put_exp(b, d, n, dp);
    else
        put_fixed(b, d, n, dp, n - dp > 0 ? n - dp : 0);
}

/* encoding/json's float64: %f, or %e (e-07 written e-7) outside [1e-6, 1e21). */
static void put_go_float(tp_buf_t *b, double v)
{
    char d[20];
    int dp;
    int n = tp_jschema__digits(v, d, &dp);
    if (signbit(v))
        tp_buf_putc(b, '-');
    if (n == 0) {
        tp_buf_putc(b, '0');
        return;
    }
    double a = fabs(v);
    if (a < 1e-6 || a >= 1e21) {
        size_t at = b->len;
        put_exp(b, d, n, dp);
        if (b->len - at >= 4 && b->data[b->len - 4] == 'e' && b->data[b->len - 3] == '-' &&
            b->data[b->len - 2] == '0') {
            b->data[b->len - 2] = b->data[b->len - 1];
            b->len--;
        }
        return;
    }
    put_fixed(b, d, n, dp, n - dp > 0 ? n - dp : 0);
}

/* Is <x> a multiple of <m> (> 0) when both are read as the decimals they
 * print as? That is how big.Rat sees the schema's and the body's literals. */
int tp_jschema__is_multiple(double x, double m)
{
    char dx[20], dm[20];
    int px, pm;
    int nx = tp_jschema__digits(x, dx, &px);
    int nm = tp_jschema__digits(m, dm, &pm);
    if (nx == 0)
        return 1;
    unsigned __int128 X = 0, M = 0;
    for (int i = 0; i < nx; i++)
        X = X * 10 + (unsigned)(dx[i] - '0');
    for (int i = 0; i < nm; i++)
        M = M * 10 + (unsigned)(dm[i] - '0');
    int ex = px - nx, em = pm - nm;
    if (ex >= em) {
        unsigned __int128 rem = X % M;
        for (int i = 0; i < ex - em && rem != 0; i++)
            rem = rem * 10 % M;
        return rem == 0;
    }
    /* X has at most 17 digits: a divisor of more than 20 cannot divide it */
    if (em - ex > 20)
        return 0;
    unsigned __int128 D = M;
    for (int i = 0; i < em - ex; i++)
        D *= 10;
    return X % D == 0;
}

/* ---- Go's json.Marshal ---- */

static void put_go_string(tp_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    tp_buf_putc(b, '"');
    while (*p) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                tp_buf_putc(b, '\\');
                tp_buf_putc(b, (char)c);
            } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
                tp_buf_putc(b, '\\');
                tp_buf_putc(b, c == '\n'   ? 'n'
                               : c == '\r' ? 'r'
                               : c == '\t' ? 't'
                               : c == '\b' ? 'b'
                                           : 'f');
            } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                tp_buf_puts(b, "\\u00");
                tp_buf_putc(b, hex[c >> 4]);
                tp_buf_putc(b, hex[c & 0xf]);
            } else {
                tp_buf_putc(b, (char)c);
            }
            p++;
            continue;
        }
        int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        int ok = n > 0 && c < 0xf5;
        for (int i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (!ok) {
            tp_buf_puts(b, "\\ufffd");
            p++;
            continue;
        }
        if (n == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            tp_buf_puts(b, p[2] == 0xa8 ? "\\u2028" : "\\u2029");
        } else {
            tp_buf_append(b, p, (size_t)n);
        }
        p += n;
    }
    tp_buf_putc(b, '"');
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

void tp_jschema__marshal(tp_buf_t *b, const cJSON *item)
{
    if (cJSON_IsNull(item)) {
        tp_buf_puts(b, "null");
    } else if (cJSON_IsTrue(item)) {
        tp_buf_puts(b, "true");
    } else if (cJSON_IsFalse(item)) {
        tp_buf_puts(b, "false");
    } else if (cJSON_IsNumber(item)) {
        put_go_float(b, item->valuedouble);
    } else if (cJSON_IsString(item)) {
        put_go_string(b, item->valuestring);
    } else if (cJSON_IsArray(item)) {
        tp_buf_putc(b, '[');
        for (const cJSON *e = item->child; e != NULL; e = e->next) {
            if (e != item->child)
                tp_buf_putc(b, ',');
            tp_jschema__marshal(b, e);
        }
        tp_buf_putc(b, ']');
    } else if (cJSON_IsObject(item)) {
        tp_jschema__objv_t o;
        tp_jschema__objv_init(&o, item);
        qsort(o.live, (size_t)o.n, sizeof(*o.live), str_ptr_cmp);
        tp_buf_putc(b, '{');
        for (int i = 0; i < o.n; i++) {
            if (i > 0)
                tp_buf_putc(b, ',');
            put_go_string(b, o.live[i]->string);
            tp_buf_putc(b, ':');
            tp_jschema__marshal(b, o.live[i]);
        }
        tp_buf_putc(b, '}');
        tp_jschema__objv_free(&o);
    } else {
        tp_buf_puts(b, "null");
    }
}
