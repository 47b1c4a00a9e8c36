/* common/tp_buf.c: growable byte buffers and string slices. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "tp_buf.h"
#include "tp_err.h"

char *tp_buf_reserve(tp_buf_t *b, size_t extra)
{
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < extra)
            cap *= 2;
        b->data = tp_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void tp_buf_append(tp_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(tp_buf_reserve(b, n), p, n);
    b->len += n;
}

void tp_buf_printf(tp_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need <= 0)
        return;
    char *dst = tp_buf_reserve(b, (size_t)need + 1);
    va_start(ap, fmt);
    vsnprintf(dst, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

void tp_buf_consume(tp_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void tp_buf_free(tp_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void tp_buf_json_escape(tp_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            tp_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            tp_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            tp_buf_append(b, "\\n", 2);
            break;
        case '\r':
            tp_buf_append(b, "\\r", 2);
            break;
        case '\t':
            tp_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                tp_buf_append(b, esc, 6);
            } else {
                tp_buf_putc(b, (char)c);
            }
        }
    }
}

int tp_str_ieq(tp_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

tp_str_t tp_str_trim(tp_str_t s)
{
    while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

int tp_str_list_has(tp_str_t s, const char *tok)
{
    const char *p = s.p, *end = s.p + s.n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (tp_str_ieq(tp_str_trim((tp_str_t){p, (size_t)(stop - p)}), tok))
            return 1;
        p = stop + 1;
    }
    return 0;
}

int tp_buf_read_file(tp_buf_t *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t n;
    do {
        char *dst = tp_buf_reserve(b, 16384);
        n = fread(dst, 1, 16384, f);
        b->len += n;
    } while (n > 0);
    int bad = ferror(f);
    fclose(f);
    return bad ? -1 : 0;
}

size_t tp_fmt_i64(char *out, int64_t v)
{
    char tmp[24], *e = tmp + sizeof(tmp), *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(e - p);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

void tp_buf_put_i64(tp_buf_t *b, int64_t v)
{
    char tmp[24];
    tp_buf_append(b, tmp, tp_fmt_i64(tmp, v));
}

void tp_buf_put_header_i64(tp_buf_t *b, const char *name, int64_t v)
{
    tp_buf_puts(b, name);
    tp_buf_puts(b, ": ");
    tp_buf_put_i64(b, v);
    tp_buf_puts(b, "\r\n");
}

void tp_hex(char *out, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}
