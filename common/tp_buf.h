/*
 * common/tp_buf.h: growable byte buffers and borrowed string slices.
 *
 * Used by: master and workers. A tp_buf_t owns its bytes (free with
 * tp_buf_free); a tp_str_t borrows bytes owned by someone else.
 * Allocation failure aborts (see tp_malloc).
 */
#ifndef TP_BUF_H
#define TP_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct tp_buf_s {
    char *data;
    size_t len;
    size_t cap;
} tp_buf_t;

typedef struct tp_str_s {
    const char *p;
    size_t n;
} tp_str_t;

#define TP_STR(lit) ((tp_str_t){(lit), sizeof(lit) - 1})

/* Makes room for <extra> more bytes; returns a pointer to the free tail. */
char *tp_buf_reserve(tp_buf_t *b, size_t extra);
void tp_buf_append(tp_buf_t *b, const void *p, size_t n);
void tp_buf_printf(tp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first <n> bytes. */
void tp_buf_consume(tp_buf_t *b, size_t n);
void tp_buf_free(tp_buf_t *b);
/* Appends the contents of the file <path>; returns 0, or -1 with errno set. */
int tp_buf_read_file(tp_buf_t *b, const char *path);
/* Appends <s> as the body of a JSON string (no quotes). */
void tp_buf_json_escape(tp_buf_t *b, const char *s, size_t n);

static inline void tp_buf_puts(tp_buf_t *b, const char *s)
{
    tp_buf_append(b, s, strlen(s));
}

static inline void tp_buf_putc(tp_buf_t *b, char c)
{
    tp_buf_append(b, &c, 1);
}

/* The contents as a C string (a NUL after len, not counted in it). */
static inline const char *tp_buf_cstr(tp_buf_t *b)
{
    *tp_buf_reserve(b, 1) = '\0';
    return b->data;
}

/* <v> in decimal into <out> (at least 21 bytes), NUL-terminated; its
 * length. No printf: for what every request formats. */
size_t tp_fmt_i64(char *out, int64_t v);
/* ... appended to <b>. */
void tp_buf_put_i64(tp_buf_t *b, int64_t v);
/* The header line "<name>: <v>\r\n" appended to <b>. */
void tp_buf_put_header_i64(tp_buf_t *b, const char *name, int64_t v);
/* <n> bytes of <p> as lower-case hex into <out> (2n + 1 bytes), NUL-terminated. */
void tp_hex(char *out, const void *p, size_t n);

static inline void tp_buf_put_str(tp_buf_t *b, tp_str_t s)
{
    tp_buf_append(b, s.p, s.n);
}

/* ASCII case-insensitive equality of a slice and a C string. */
int tp_str_ieq(tp_str_t s, const char *lit);
/* Does the comma-separated list <s> contain the token <tok> (case-insensitive)? */
int tp_str_list_has(tp_str_t s, const char *tok);
/* Trims spaces and tabs at both ends. */
tp_str_t tp_str_trim(tp_str_t s);

#endif
