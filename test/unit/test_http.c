/* test/unit/test_http.c: HTTP vocabulary (header classes, tokens, reasons) and tp_buf helpers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tp_buf.h"
#include "tp_http.h"
#include "tp_test.h"

static int kind(const char *name)
{
    return tp_http_header_kind(name, strlen(name));
}

TP_TEST(header_kind_every_class)
{
    CHECK_INT(kind("Host"), TP_H_HOST);
    CHECK_INT(kind("Connection"), TP_H_CONNECTION);
    CHECK_INT(kind("Keep-Alive"), TP_H_KEEP_ALIVE);
    CHECK_INT(kind("Proxy-Connection"), TP_H_PROXY_CONNECTION);
    CHECK_INT(kind("Proxy-Authenticate"), TP_H_PROXY_AUTHENTICATE);
    CHECK_INT(kind("Proxy-Authorization"), TP_H_PROXY_AUTHORIZATION);
    CHECK_INT(kind("TE"), TP_H_TE);
    CHECK_INT(kind("Trailer"), TP_H_TRAILER);
    CHECK_INT(kind("Transfer-Encoding"), TP_H_TRANSFER_ENCODING);
    CHECK_INT(kind("Upgrade"), TP_H_UPGRADE);
    CHECK_INT(kind("X-Forwarded-For"), TP_H_X_FORWARDED_FOR);
    CHECK_INT(kind("Expect"), TP_H_EXPECT);
    CHECK_INT(kind("User-Agent"), TP_H_USER_AGENT);
    CHECK_INT(kind("Content-Length"), TP_H_CONTENT_LENGTH);
}

TP_TEST(header_kind_case_variants)
{
    CHECK_INT(kind("host"), TP_H_HOST);
    CHECK_INT(kind("HOST"), TP_H_HOST);
    CHECK_INT(kind("hOsT"), TP_H_HOST);
    CHECK_INT(kind("connection"), TP_H_CONNECTION);
    CHECK_INT(kind("CONNECTION"), TP_H_CONNECTION);
    CHECK_INT(kind("keep-alive"), TP_H_KEEP_ALIVE);
    CHECK_INT(kind("KEEP-ALIVE"), TP_H_KEEP_ALIVE);
    CHECK_INT(kind("proxy-connection"), TP_H_PROXY_CONNECTION);
    CHECK_INT(kind("PROXY-AUTHENTICATE"), TP_H_PROXY_AUTHENTICATE);
    CHECK_INT(kind("proxy-authorization"), TP_H_PROXY_AUTHORIZATION);
    CHECK_INT(kind("te"), TP_H_TE);
    CHECK_INT(kind("Te"), TP_H_TE);
    CHECK_INT(kind("tRAILER"), TP_H_TRAILER);
    CHECK_INT(kind("transfer-encoding"), TP_H_TRANSFER_ENCODING);
    CHECK_INT(kind("TRANSFER-ENCODING"), TP_H_TRANSFER_ENCODING);
    CHECK_INT(kind("upgrade"), TP_H_UPGRADE);
    CHECK_INT(kind("x-forwarded-for"), TP_H_X_FORWARDED_FOR);
    CHECK_INT(kind("X-FORWARDED-FOR"), TP_H_X_FORWARDED_FOR);
    CHECK_INT(kind("EXPECT"), TP_H_EXPECT);
    CHECK_INT(kind("user-agent"), TP_H_USER_AGENT);
    CHECK_INT(kind("content-length"), TP_H_CONTENT_LENGTH);
    CHECK_INT(kind("CONTENT-LENGTH"), TP_H_CONTENT_LENGTH);
}

TP_TEST(header_kind_others)
{
    CHECK_INT(kind(""), TP_H_OTHER);
    CHECK_INT(kind("X-Forwarded-Host"), TP_H_OTHER);
    CHECK_INT(kind("Content-Type"), TP_H_OTHER);
    CHECK_INT(kind("Authorization"), TP_H_OTHER);
    CHECK_INT(kind("Hosts"), TP_H_OTHER);
    CHECK_INT(kind("Hos"), TP_H_OTHER);
    CHECK_INT(kind("Keep_Alive"), TP_H_OTHER);
    CHECK_INT(kind("Keep Alive"), TP_H_OTHER);
    CHECK_INT(kind("T"), TP_H_OTHER);
    CHECK_INT(kind("Trailers"), TP_H_OTHER);
    CHECK_INT(kind("Content-Length2"), TP_H_OTHER);
    CHECK_INT(kind("Upgrade-Insecure-Requests"), TP_H_OTHER);
    /* only <n> bytes are examined */
    CHECK_INT(tp_http_header_kind("Hostname", 4), TP_H_HOST);
    CHECK_INT(tp_http_header_kind("Host", 3), TP_H_OTHER);
    CHECK_INT(tp_http_header_kind("Connection: close", 10), TP_H_CONNECTION);
}

TP_TEST(hop_by_hop)
{
    static const int hop[] = {TP_H_CONNECTION,          TP_H_KEEP_ALIVE, TP_H_PROXY_CONNECTION,
                              TP_H_PROXY_AUTHENTICATE,  TP_H_TE,         TP_H_TRAILER,
                              TP_H_PROXY_AUTHORIZATION, TP_H_UPGRADE,    TP_H_TRANSFER_ENCODING};
    static const int end_to_end[] = {TP_H_OTHER,  TP_H_HOST,       TP_H_X_FORWARDED_FOR,
                                     TP_H_EXPECT, TP_H_USER_AGENT, TP_H_CONTENT_LENGTH};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        CHECK_INT(tp_http_is_hop_by_hop(hop[i]), 1);
    for (size_t i = 0; i < sizeof(end_to_end) / sizeof(end_to_end[0]); i++)
        CHECK_INT(tp_http_is_hop_by_hop(end_to_end[i]), 0);
    CHECK_INT(tp_http_is_hop_by_hop(kind("keep-alive")), 1);
    CHECK_INT(tp_http_is_hop_by_hop(kind("X-Custom")), 0);
}

static int token(const char *s)
{
    return tp_http_token_ok(s, strlen(s));
}

TP_TEST(token_ok)
{
    CHECK_INT(token("Content-Type"), 1);
    CHECK_INT(token("X-Request-ID"), 1);
    CHECK_INT(token("x_under_score"), 1);
    CHECK_INT(token("a"), 1);
    CHECK_INT(token("0123456789"), 1);
    CHECK_INT(token("!#$%&'*+-.^_`|~"), 1);
    CHECK_INT(token("X-!#$%&'*+-.^_`|~-Y"), 1);
    CHECK_INT(token(""), 0);
    CHECK_INT(token("Bad Header"), 0);
    CHECK_INT(token(" Host"), 0);
    CHECK_INT(token("Host "), 0);
    CHECK_INT(token("Host:"), 0);
    CHECK_INT(token("a:b"), 0);
    CHECK_INT(token("tab\there"), 0);
    CHECK_INT(token("x\r\ny"), 0);
    /* separators that are not tchars */
    static const char *const bad[] = {"(", ")", ",",  "/", ";", "<", "=",  ">",    "?",
                                      "@", "[", "\\", "]", "{", "}", "\"", "\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[16];
        snprintf(name, sizeof(name), "X%sY", bad[i]);
        if (token(name) != 0) {
            tp_test_fail(__FILE__, __LINE__, "token \"%s\" accepted", name);
            return;
        }
    }
    /* a NUL inside the length counts as a byte, and is no tchar */
    CHECK_INT(tp_http_token_ok("a\0b", 3), 0);
    CHECK_INT(tp_http_token_ok("Host:", 4), 1);
}

TP_TEST(reason_phrases)
{
    CHECK_STR(tp_http_reason(200), "OK");
    CHECK_STR(tp_http_reason(100), "Continue");
    CHECK_STR(tp_http_reason(101), "Switching Protocols");
    CHECK_STR(tp_http_reason(201), "Created");
    CHECK_STR(tp_http_reason(204), "No Content");
    CHECK_STR(tp_http_reason(301), "Moved Permanently");
    CHECK_STR(tp_http_reason(302), "Found");
    CHECK_STR(tp_http_reason(304), "Not Modified");
    CHECK_STR(tp_http_reason(400), "Bad Request");
    CHECK_STR(tp_http_reason(401), "Unauthorized");
    CHECK_STR(tp_http_reason(403), "Forbidden");
    CHECK_STR(tp_http_reason(404), "Not Found");
    CHECK_STR(tp_http_reason(405), "Method Not Allowed");
    CHECK_STR(tp_http_reason(408), "Request Timeout");
    CHECK_STR(tp_http_reason(411), "Length Required");
    CHECK_STR(tp_http_reason(413), "Request Entity Too Large");
    CHECK_STR(tp_http_reason(414), "Request URI Too Long");
    CHECK_STR(tp_http_reason(429), "Too Many Requests");
    CHECK_STR(tp_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(tp_http_reason(500), "Internal Server Error");
    CHECK_STR(tp_http_reason(501), "Not Implemented");
    CHECK_STR(tp_http_reason(502), "Bad Gateway");
    CHECK_STR(tp_http_reason(503), "Service Unavailable");
    CHECK_STR(tp_http_reason(504), "Gateway Timeout");
    CHECK_STR(tp_http_reason(505), "HTTP Version Not Supported");
    CHECK_STR(tp_http_reason(0), "");
    CHECK_STR(tp_http_reason(-1), "");
    CHECK_STR(tp_http_reason(299), "");
    CHECK_STR(tp_http_reason(600), "");
    CHECK_STR(tp_http_reason(1000), "");
}

/* Upstream status lines may carry no reason ("HTTP/1.1 409\r\n"); the proxy
 * then writes tp_http_reason(), where Go (and so Tyk) writes StatusText. */
TP_TEST(reason_phrases_for_other_common_codes)
{
    CHECK_STR(tp_http_reason(303), "See Other");
    CHECK_STR(tp_http_reason(409), "Conflict");
    CHECK_STR(tp_http_reason(410), "Gone");
    CHECK_STR(tp_http_reason(412), "Precondition Failed");
    CHECK_STR(tp_http_reason(415), "Unsupported Media Type");
}

/* ---- tp_buf ---------------------------------------------------------------- */

/* Copies the bytes of <b> into <dst> as a C string (truncated to <cap>). */
static void copy_text(const tp_buf_t *b, char *dst, size_t cap)
{
    size_t n = b->len < cap - 1 ? b->len : cap - 1;
    if (n > 0)
        memcpy(dst, b->data, n);
    dst[n] = '\0';
}

TP_TEST(buf_put_i64_writes_decimal)
{
    static const int64_t vals[] = {0, 7, -1, 200, 1234567890123LL, INT64_MAX, INT64_MIN};
    tp_buf_t b = {0};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        tp_buf_put_i64(&b, vals[i]);
        tp_buf_putc(&b, ',');
    }
    char got[256], want[256];
    copy_text(&b, got, sizeof(got));
    size_t n = 0;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        n += (size_t)snprintf(want + n, sizeof(want) - n, "%lld,", (long long)vals[i]);
    tp_buf_free(&b);
    CHECK_STR(got, want);
}

TP_TEST(buf_printf_grows)
{
    tp_buf_t b = {0};
    tp_buf_printf(&b, "%s=%d", "a", 1);
    size_t len1 = b.len;
    char first[16];
    copy_text(&b, first, sizeof(first));
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tp_buf_printf(&b, "[%s]", big);
    size_t len2 = b.len, cap2 = b.cap;
    int tail_ok = b.len == 1004 && b.data[3] == '[' && b.data[4] == 'x' && b.data[1002] == 'x' &&
                  b.data[1003] == ']' && memcmp(b.data, "a=1", 3) == 0;
    for (int i = 0; i < 1000; i++)
        tp_buf_printf(&b, "%04d,", i);
    size_t len3 = b.len;
    int seq_ok =
        memcmp(b.data + 1004, "0000,0001,", 10) == 0 && memcmp(b.data + b.len - 5, "0999,", 5) == 0;
    tp_buf_printf(&b, "%s", "");
    size_t len4 = b.len;
    tp_buf_free(&b);
    CHECK_STR(first, "a=1");
    CHECK_INT(len1, 3);
    CHECK_INT(len2, 1004);
    CHECK(cap2 >= len2);
    CHECK(tail_ok);
    CHECK_INT(len3, 1004 + 5000);
    CHECK(seq_ok);
    CHECK_INT(len4, len3);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

TP_TEST(buf_append_and_puts)
{
    tp_buf_t b = {0};
    tp_buf_puts(&b, "GET ");
    tp_buf_put_str(&b, TP_STR("/x"));
    tp_buf_putc(&b, ' ');
    tp_buf_append(&b, "HTTP/1.1", 8);
    tp_buf_append(&b, "ignored", 0);
    char got[64];
    copy_text(&b, got, sizeof(got));
    tp_buf_free(&b);
    CHECK_STR(got, "GET /x HTTP/1.1");
}

TP_TEST(buf_consume)
{
    tp_buf_t b = {0};
    tp_buf_puts(&b, "hello world");
    tp_buf_consume(&b, 6);
    char a[32], c[32];
    copy_text(&b, a, sizeof(a));
    tp_buf_consume(&b, 0);
    size_t len0 = b.len;
    tp_buf_puts(&b, "!");
    copy_text(&b, c, sizeof(c));
    tp_buf_consume(&b, b.len);
    size_t len_all = b.len;
    tp_buf_puts(&b, "xyz");
    tp_buf_consume(&b, 100);
    size_t len_over = b.len;
    tp_buf_puts(&b, "again");
    char d[32];
    copy_text(&b, d, sizeof(d));
    tp_buf_free(&b);
    CHECK_STR(a, "world");
    CHECK_INT(len0, 5);
    CHECK_STR(c, "world!");
    CHECK_INT(len_all, 0);
    CHECK_INT(len_over, 0);
    CHECK_STR(d, "again");
}

static const char *escape(const char *s, size_t n)
{
    static char out[256];
    tp_buf_t b = {0};
    tp_buf_json_escape(&b, s, n);
    copy_text(&b, out, sizeof(out));
    tp_buf_free(&b);
    return out;
}

TP_TEST(buf_json_escape)
{
    CHECK_STR(escape("plain text", 10), "plain text");
    CHECK_STR(escape("say \"hi\"", 8), "say \\\"hi\\\"");
    CHECK_STR(escape("C:\\dir\\", 7), "C:\\\\dir\\\\");
    CHECK_STR(escape("a\nb\rc\td", 7), "a\\nb\\rc\\td");
    CHECK_STR(escape("\x01\x1f", 2), "\\u0001\\u001f");
    CHECK_STR(escape("\0", 1), "\\u0000");
    CHECK_STR(escape("/ \x7f \xc3\xa9", 6), "/ \x7f \xc3\xa9");
    CHECK_STR(escape("", 0), "");
    /* the escaped text is a valid JSON string body */
    const char *raw = "q\"b\\n\n\x02\x1b[0m\t";
    tp_buf_t b = {0};
    tp_buf_putc(&b, '"');
    tp_buf_json_escape(&b, raw, strlen(raw));
    tp_buf_putc(&b, '"');
    char doc[128];
    copy_text(&b, doc, sizeof(doc));
    tp_buf_free(&b);
    CHECK_STR(doc, "\"q\\\"b\\\\n\\n\\u0002\\u001b[0m\\t\"");
}

TP_TEST(buf_json_escape_control_chars_valid)
{
    /* \b and \f: \b \f (Go >= 1.22) or \u0008 \u000c are both valid JSON */
    const char *e = escape("\b\f", 2);
    CHECK(strcmp(e, "\\u0008\\u000c") == 0 || strcmp(e, "\\b\\f") == 0);
}

static const char *trim(const char *s)
{
    static char out[64];
    tp_str_t t = tp_str_trim((tp_str_t){s, strlen(s)});
    snprintf(out, sizeof(out), "%.*s", (int)t.n, t.p);
    return out;
}

TP_TEST(str_trim)
{
    CHECK_STR(trim("  a b \t"), "a b");
    CHECK_STR(trim("\t\tx"), "x");
    CHECK_STR(trim("x  "), "x");
    CHECK_STR(trim("x"), "x");
    CHECK_STR(trim("   "), "");
    CHECK_STR(trim(""), "");
    const char *s = "  keep-alive  ";
    tp_str_t t = tp_str_trim((tp_str_t){s, strlen(s)});
    CHECK(t.p == s + 2);
    CHECK_INT(t.n, 10);
}

static int list_has(const char *list, const char *tok)
{
    return tp_str_list_has((tp_str_t){list, strlen(list)}, tok);
}

TP_TEST(str_list_has)
{
    CHECK_INT(list_has("close", "close"), 1);
    CHECK_INT(list_has("Close", "close"), 1);
    CHECK_INT(list_has("keep-alive, Upgrade", "upgrade"), 1);
    CHECK_INT(list_has("keep-alive, Upgrade", "KEEP-ALIVE"), 1);
    CHECK_INT(list_has("  a ,\tb\t, c  ", "b"), 1);
    CHECK_INT(list_has("  a ,\tb\t, c  ", "c"), 1);
    CHECK_INT(list_has("a,,b", "b"), 1);
    CHECK_INT(list_has("closed", "close"), 0);
    CHECK_INT(list_has("close-ish, x", "close"), 0);
    CHECK_INT(list_has("not close", "close"), 0);
    CHECK_INT(list_has("", "close"), 0);
    CHECK_INT(list_has(",", "close"), 0);
    CHECK_INT(list_has("te, trailers", "trailers"), 1);
    CHECK_INT(list_has("te, trailers", "trailer"), 0);
    /* only the slice counts */
    CHECK_INT(tp_str_list_has((tp_str_t){"a, close", 2}, "close"), 0);
    CHECK_INT(tp_str_list_has((tp_str_t){"close, a", 5}, "close"), 1);
}

TP_TEST(str_ieq)
{
    CHECK_INT(tp_str_ieq(TP_STR("Chunked"), "chunked"), 1);
    CHECK_INT(tp_str_ieq(TP_STR("chunked "), "chunked"), 0);
    CHECK_INT(tp_str_ieq(TP_STR("chunk"), "chunked"), 0);
    CHECK_INT(tp_str_ieq(TP_STR(""), ""), 1);
}

void test_http_suite(void)
{
    TP_RUN(header_kind_every_class);
    TP_RUN(header_kind_case_variants);
    TP_RUN(header_kind_others);
    TP_RUN(hop_by_hop);
    TP_RUN(token_ok);
    TP_RUN(reason_phrases);
    TP_RUN(reason_phrases_for_other_common_codes);
    TP_RUN(buf_put_i64_writes_decimal);
    TP_RUN(buf_printf_grows);
    TP_RUN(buf_append_and_puts);
    TP_RUN(buf_consume);
    TP_RUN(buf_json_escape);
    TP_RUN(buf_json_escape_control_chars_valid);
    TP_RUN(str_trim);
    TP_RUN(str_list_has);
    TP_RUN(str_ieq);
}
