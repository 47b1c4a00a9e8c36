/* common/tp_url.c: absolute URL parsing, path decoding, cleaning and joining. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_url.h"

void tp_url_free(tp_url_t *u)
{
    free(u->scheme);
    free(u->host);
    free(u->authority);
    free(u->path);
    free(u->query);
    memset(u, 0, sizeof(*u));
}

static int host_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%';
}

int tp_url_parse(const char *s, tp_url_t *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *colon = strstr(s, "://");
    if (colon == NULL) {
        snprintf(err, errlen, "not an absolute URL (expected http://host[:port][/path])");
        return -1;
    }
    size_t slen = (size_t)(colon - s);
    if (slen == 4 && strncasecmp(s, "http", 4) == 0) {
        u->tls = 0;
        u->port = 80;
    } else if (slen == 5 && strncasecmp(s, "https", 5) == 0) {
        u->tls = 1;
        u->port = 443;
    } else {
        snprintf(err, errlen, "unsupported scheme \"%.*s\" (expected http or https)", (int)slen, s);
        return -1;
    }
    u->scheme = tp_strdup(u->tls ? "https" : "http");

    const char *auth = colon + 3;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', (size_t)(auth_end - auth));
    if (at != NULL)
        auth = at + 1; /* userinfo is not forwarded */
    if (auth == auth_end) {
        snprintf(err, errlen, "missing host");
        goto err;
    }
    const char *host = auth, *host_end, *port = NULL;
    if (*auth == '[') {
        const char *close = memchr(auth, ']', (size_t)(auth_end - auth));
        if (close == NULL) {
            snprintf(err, errlen, "unterminated IPv6 literal");
            goto err;
        }
        host = auth + 1;
        host_end = close;
        for (const char *c = host; c < host_end; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.') {
                snprintf(err, errlen, "invalid IPv6 literal");
                goto err;
            }
        if (close + 1 < auth_end) {
            if (close[1] != ':') {
                snprintf(err, errlen, "invalid characters after IPv6 literal");
                goto err;
            }
            port = close + 2;
        }
    } else {
        const char *pc = memchr(auth, ':', (size_t)(auth_end - auth));
        host_end = pc ? pc : auth_end;
        port = pc ? pc + 1 : NULL;
        for (const char *c = host; c < host_end; c++)
            if (!host_char_ok(*c)) {
                snprintf(err, errlen, "invalid character '%c' in host", *c);
                goto err;
            }
    }
    if (host_end == host) {
        snprintf(err, errlen, "missing host");
        goto err;
    }
    if (port != NULL && port < auth_end) {
        long v = 0;
        for (const char *c = port; c < auth_end; c++) {
            if (!isdigit((unsigned char)*c) || (v = v * 10 + (*c - '0')) > 65535) {
                snprintf(err, errlen, "invalid port \"%.*s\"", (int)(auth_end - port), port);
                goto err;
            }
        }
        if (v == 0) {
            snprintf(err, errlen, "invalid port 0");
            goto err;
        }
        u->port = (uint16_t)v;
    }
    u->host = tp_strndup(host, (size_t)(host_end - host));
    u->authority = tp_strndup(auth, (size_t)(auth_end - auth));

    const char *p = auth_end;
    size_t plen = strcspn(p, "?#");
    u->path = tp_strndup(p, plen);
    p += plen;
    if (*p == '?') {
        p++;
        u->query = tp_strndup(p, strcspn(p, "#"));
    }
    for (const char *c = u->path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            snprintf(err, errlen, "invalid character in path");
            goto err;
        }
    return 0;
err:
    tp_url_free(u);
    return -1;
}

int tp_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long tp_url_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int h = tp_hex_digit(s[i + 1]), l = tp_hex_digit(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

void tp_url_escape_path(tp_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || strchr("-._~/!$&'()*+,;=:@", c) != NULL) {
            tp_buf_putc(b, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            tp_buf_append(b, esc, 3);
        }
    }
}

size_t tp_url_clean_path(const char *p, size_t n, char *out)
{
    /* Lexical processing as Go's path.Clean: collapse "//", drop ".",
     * resolve ".." against the previous element (never above the root). */
    size_t w = 0;
    out[w++] = '/';
    size_t i = 0;
    while (i < n) {
        if (p[i] == '/') {
            i++;
        } else if (p[i] == '.' && (i + 1 == n || p[i + 1] == '/')) {
            i++;
        } else if (p[i] == '.' && p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/')) {
            i += 2;
            if (w > 1) {
                w--;
                while (w > 1 && out[w - 1] != '/')
                    w--;
                if (w > 1)
                    w--;
            }
        } else {
            if (w > 1)
                out[w++] = '/';
            while (i < n && p[i] != '/')
                out[w++] = p[i++];
        }
    }
    /* gorilla/mux keeps a trailing slash the request had */
    if (n > 0 && p[n - 1] == '/' && w > 1)
        out[w++] = '/';
    out[w] = '\0';
    return w;
}

void tp_url_join_path(tp_buf_t *b, tp_str_t target, tp_str_t req, int disable_strip_slash)
{
    if (disable_strip_slash && (req.n == 0 || (req.n == 1 && req.p[0] == '/'))) {
        tp_buf_put_str(b, target);
        return;
    }
    while (target.n > 0 && target.p[target.n - 1] == '/')
        target.n--;
    while (req.n > 0 && req.p[0] == '/') {
        req.p++;
        req.n--;
    }
    tp_buf_put_str(b, target);
    if (req.n == 0)
        return;
    tp_buf_putc(b, '/');
    tp_buf_put_str(b, req);
}
