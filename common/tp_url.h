/*
 * common/tp_url.h: absolute URLs (API target_url) and request paths.
 *
 * Used by: master (validating API definitions) and workers (routing and
 * building the upstream request). Pure functions, no state.
 */
#ifndef TP_URL_H
#define TP_URL_H

#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_url_s {
    char *scheme;    /* lower case: "http" or "https" */
    char *host;      /* without brackets for IPv6 literals */
    char *authority; /* host[:port] exactly as written, for the Host header */
    char *path;      /* "" or starting with '/', raw (still escaped) */
    char *query;     /* NULL when absent; raw, without '?' */
    uint16_t port;   /* explicit or the scheme's default */
    int tls;
} tp_url_t;

/* Parses an absolute http(s) URL. On failure returns -1 with a reason in
 * <err>. The caller frees the result with tp_url_free. */
int tp_url_parse(const char *s, tp_url_t *u, char *err, size_t errlen);
void tp_url_free(tp_url_t *u);

/* The value of hex digit <c>, or -1. */
int tp_hex_digit(int c);

/* Percent-decodes <n> bytes of <s> into <out> (at least <n> bytes).
 * Returns the decoded length or -1 on a malformed escape. */
long tp_url_decode(const char *s, size_t n, char *out);

/* Appends <s> percent-encoded as a path (keeps '/', unreserved and
 * sub-delims, as Go's url.PathEscape-for-paths does). */
void tp_url_escape_path(tp_buf_t *b, const char *s, size_t n);

/* Go's path.Clean plus gorilla/mux's rule that a trailing slash survives.
 * Writes into <out> (at least n + 2 bytes) and returns the length. */
size_t tp_url_clean_path(const char *p, size_t n, char *out);

/* Tyk's singleJoiningSlash for the upstream path: <target> (the target
 * URL's path) joined with the request path <req>, appended to <b>.
 * With <disable_strip_slash> an empty or "/" remainder keeps the target
 * path as written. */
void tp_url_join_path(tp_buf_t *b, tp_str_t target, tp_str_t req, int disable_strip_slash);

#endif
