/* common/tp_http.c: header classes, token checks, reason phrases. */
#include <string.h>
#include <strings.h>

#include "tp_http.h"

#define IS(lit) (n == sizeof(lit) - 1 && tp_http_ieq(name, lit, n))

int tp_http_header_kind(const char *name, size_t n)
{
    switch (n) {
    case 2:
        return IS("te") ? TP_H_TE : TP_H_OTHER;
    case 4:
        return IS("host") ? TP_H_HOST : TP_H_OTHER;
    case 6:
        return IS("expect") ? TP_H_EXPECT : TP_H_OTHER;
    case 7:
        if (IS("upgrade"))
            return TP_H_UPGRADE;
        return IS("trailer") ? TP_H_TRAILER : TP_H_OTHER;
    case 10:
        if (IS("connection"))
            return TP_H_CONNECTION;
        if (IS("keep-alive"))
            return TP_H_KEEP_ALIVE;
        return IS("user-agent") ? TP_H_USER_AGENT : TP_H_OTHER;
    case 14:
        return IS("content-length") ? TP_H_CONTENT_LENGTH : TP_H_OTHER;
    case 15:
        return IS("x-forwarded-for") ? TP_H_X_FORWARDED_FOR : TP_H_OTHER;
    case 16:
        return IS("proxy-connection") ? TP_H_PROXY_CONNECTION : TP_H_OTHER;
    case 17:
        return IS("transfer-encoding") ? TP_H_TRANSFER_ENCODING : TP_H_OTHER;
    case 18:
        return IS("proxy-authenticate") ? TP_H_PROXY_AUTHENTICATE : TP_H_OTHER;
    case 19:
        return IS("proxy-authorization") ? TP_H_PROXY_AUTHORIZATION : TP_H_OTHER;
    default:
        return TP_H_OTHER;
    }
}

#undef IS

int tp_http_is_hop_by_hop(int kind)
{
    switch (kind) {
    case TP_H_CONNECTION:
    case TP_H_KEEP_ALIVE:
    case TP_H_PROXY_CONNECTION:
    case TP_H_PROXY_AUTHENTICATE:
    case TP_H_PROXY_AUTHORIZATION:
    case TP_H_TE:
    case TP_H_TRAILER:
    case TP_H_TRANSFER_ENCODING:
    case TP_H_UPGRADE:
        return 1;
    default:
        return 0;
    }
}

int tp_http_token_ok(const char *name, size_t n)
{
    /* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
     *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        int ok = 0;
        for (const char *e = extra; *e; e++)
            if (c == (unsigned char)*e)
                ok = 1;
        if (!ok)
            return 0;
    }
    return 1;
}

const char *tp_http_reason(int status)
{
    /* Go's http.StatusText, plus nginx's 499 */
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 208:
        return "Already Reported";
    case 226:
        return "IM Used";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "Request URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Requested Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Entity";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 506:
        return "Variant Also Negotiates";
    case 507:
        return "Insufficient Storage";
    case 508:
        return "Loop Detected";
    case 510:
        return "Not Extended";
    case 511:
        return "Network Authentication Required";
    default:
        return "";
    }
}

void tp_http_put_canonical(tp_buf_t *b, const char *s, size_t n)
{
    int up = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!up && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        tp_buf_putc(b, c);
        up = c == '-';
    }
}

int tp_http_is_ratelimit_header(const char *name, size_t len)
{
    static const char *const names[] = {"x-ratelimit-limit", "x-ratelimit-remaining",
                                        "x-ratelimit-reset"};
    if (len < 17 || (name[0] | 0x20) != 'x')
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == strlen(names[i]) && tp_http_ieq(name, names[i], len))
            return 1;
    return 0;
}

int tp_http_is_safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}
