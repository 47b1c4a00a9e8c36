/*
 * common/tp_msgpack.h: a msgpack writer into a tp_buf_t, emitting what Go's
 * vmihailenco/msgpack v2 emits (the smallest encoding for every integer,
 * float64 as 0xcb, time.Time as [seconds, nanoseconds]), so that Tyk Pump
 * decodes the records Turnpike writes (TYK-COMPAT 15.2).
 *
 * Used by: workers (analytics records). No state beyond the buffer.
 */
#ifndef TP_MSGPACK_H
#define TP_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

void tp_mp_map(tp_buf_t *b, uint32_t n);   /* a map of <n> pairs follows */
void tp_mp_array(tp_buf_t *b, uint32_t n); /* an array of <n> items follows */
void tp_mp_str(tp_buf_t *b, const char *s, size_t n);
static inline void tp_mp_cstr(tp_buf_t *b, const char *s)
{
    tp_mp_str(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}
/* One string: <a> then <s> (a tag's prefix and its value). */
void tp_mp_str2(tp_buf_t *b, const char *a, const char *s);
void tp_mp_int(tp_buf_t *b, int64_t v);
void tp_mp_uint(tp_buf_t *b, uint64_t v);
void tp_mp_float(tp_buf_t *b, double v);
void tp_mp_bool(tp_buf_t *b, int v);
void tp_mp_nil(tp_buf_t *b);
/* Go's time.Time as vmihailenco/msgpack v2 writes it: [Unix(), Nanosecond()]. */
void tp_mp_time(tp_buf_t *b, int64_t sec, int64_t nsec);

#endif
