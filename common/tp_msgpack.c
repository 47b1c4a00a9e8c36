/*
 * common/tp_msgpack.c: see tp_msgpack.h. Big-endian lengths and values,
 * as the msgpack spec has them.
 */
#include <string.h>

#include "tp_msgpack.h"

static void put_be(tp_buf_t *b, uint8_t tag, uint64_t v, int bytes)
{
    char *p = tp_buf_reserve(b, (size_t)bytes + 1);
    p[0] = (char)tag;
    for (int i = 0; i < bytes; i++)
        p[1 + i] = (char)(v >> (8 * (bytes - 1 - i)));
    b->len += (size_t)bytes + 1;
}

static void put_byte(tp_buf_t *b, uint8_t v)
{
    tp_buf_putc(b, (char)v);
}

void tp_mp_map(tp_buf_t *b, uint32_t n)
{
    if (n < 16)
        put_byte(b, (uint8_t)(0x80 | n));
    else if (n <= 0xffff)
        put_be(b, 0xde, n, 2);
    else
        put_be(b, 0xdf, n, 4);
}

void tp_mp_array(tp_buf_t *b, uint32_t n)
{
    if (n < 16)
        put_byte(b, (uint8_t)(0x90 | n));
    else if (n <= 0xffff)
        put_be(b, 0xdc, n, 2);
    else
        put_be(b, 0xdd, n, 4);
}

static void str_head(tp_buf_t *b, size_t n)
{
    if (n < 32)
        put_byte(b, (uint8_t)(0xa0 | n));
    else if (n <= 0xff)
        put_be(b, 0xd9, n, 1);
    else if (n <= 0xffff)
        put_be(b, 0xda, n, 2);
    else
        put_be(b, 0xdb, n, 4);
}

void tp_mp_str(tp_buf_t *b, const char *s, size_t n)
{
    str_head(b, n);
    tp_buf_append(b, s, n);
}

void tp_mp_str2(tp_buf_t *b, const char *a, const char *s)
{
    size_t na = strlen(a), ns = strlen(s);
    str_head(b, na + ns);
    tp_buf_append(b, a, na);
    tp_buf_append(b, s, ns);
}

void tp_mp_uint(tp_buf_t *b, uint64_t v)
{
    if (v < 128)
        put_byte(b, (uint8_t)v);
    else if (v <= 0xff)
        put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff)
        put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffffu)
        put_be(b, 0xce, v, 4);
    else
        put_be(b, 0xcf, v, 8);
}

void tp_mp_int(tp_buf_t *b, int64_t v)
{
    if (v >= 0) {
        tp_mp_uint(b, (uint64_t)v);
        return;
    }
    if (v >= -32)
        put_byte(b, (uint8_t)(int8_t)v);
    else if (v >= INT8_MIN)
        put_be(b, 0xd0, (uint8_t)(int8_t)v, 1);
    else if (v >= INT16_MIN)
        put_be(b, 0xd1, (uint16_t)(int16_t)v, 2);
    else if (v >= INT32_MIN)
        put_be(b, 0xd2, (uint32_t)(int32_t)v, 4);
    else
        put_be(b, 0xd3, (uint64_t)v, 8);
}

void tp_mp_float(tp_buf_t *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    put_be(b, 0xcb, bits, 8);
}

void tp_mp_bool(tp_buf_t *b, int v)
{
    put_byte(b, v ? 0xc3 : 0xc2);
}

void tp_mp_nil(tp_buf_t *b)
{
    put_byte(b, 0xc0);
}

void tp_mp_time(tp_buf_t *b, int64_t sec, int64_t nsec)
{
    tp_mp_array(b, 2);
    tp_mp_int(b, sec);
    tp_mp_int(b, nsec);
}
