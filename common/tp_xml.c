/* common/tp_xml.c: a strict, bounded XML reader that builds what mxj.NewMapXml builds
 * (see tp_xml.h). It tokenizes as Go's encoding/xml Decoder does in strict mode (one
 * character-data token per run of text, CDATA and comments splitting runs, \r\n read
 * as \n) and folds the tokens into maps as mxj's xmlToMapParser does. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_buf.h"
#include "tp_xml.h"

typedef struct {
    const char *s;
    size_t n, i;
    int line;
    char *why;
    size_t whylen;
    int failed;
} xr_t;

static int xfail(xr_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int xfail(xr_t *x, const char *fmt, ...)
{
    if (x->failed)
        return -1;
    x->failed = 1;
    int k = snprintf(x->why, x->whylen, "XML syntax error on line %d: ", x->line);
    if (k >= 0 && (size_t)k < x->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->why + k, x->whylen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int starts(const xr_t *x, const char *lit)
{
    size_t l = strlen(lit);
    return x->n - x->i >= l && memcmp(x->s + x->i, lit, l) == 0;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void skip_ws(xr_t *x)
{
    while (x->i < x->n && is_ws(x->s[x->i]))
        x->line += x->s[x->i++] == '\n';
}

static void put_utf8(tp_buf_t *b, unsigned long r)
{
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
    tp_buf_append(b, e, k);
}

/* Go's isInCharacterRange */
static int char_ok(unsigned long r)
{
    return r == 0x09 || r == 0x0a || r == 0x0d || (r >= 0x20 && r <= 0xd7ff) ||
           (r >= 0xe000 && r <= 0xfffd) || (r >= 0x10000 && r <= 0x10ffff);
}

/* Reads one UTF-8 character at x->i into <b> (\r\n and \r become \n). */
static int read_char(xr_t *x, tp_buf_t *b)
{
    const unsigned char *s = (const unsigned char *)x->s + x->i;
    size_t left = x->n - x->i, len;
    unsigned long r;
    if (s[0] < 0x80) {
        r = s[0], len = 1;
    } else {
        len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
        if (len == 0 || len > left || s[0] > 0xf4)
            return xfail(x, "invalid UTF-8");
        r = s[0] & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[k] & 0xc0) != 0x80)
                return xfail(x, "invalid UTF-8");
            r = (r << 6) | (s[k] & 0x3f);
        }
        if ((len == 3 && r < 0x800) || (len == 4 && r < 0x10000))
            return xfail(x, "invalid UTF-8");
    }
    if (!char_ok(r))
        return xfail(x, "illegal character code U+%04lX", r);
    x->i += len;
    if (r == '\r') {
        if (x->i < x->n && x->s[x->i] == '\n')
            x->i++;
        r = '\n';
    }
    if (r == '\n')
        x->line++;
    if (b)
        tp_buf_append(b, s, r == '\n' ? 0 : len);
    if (b && r == '\n')
        tp_buf_putc(b, '\n');
    return 0;
}

/* An entity or character reference after its '&'. */
static int entity(xr_t *x, tp_buf_t *b)
{
    size_t st = x->i;
    while (x->i < x->n && x->s[x->i] != ';' && x->i - st < 16)
        x->i++;
    if (x->i >= x->n || x->s[x->i] != ';')
        return xfail(x, "invalid character entity &%.*s (no semicolon)", (int)(x->i - st),
                     x->s + st);
    const char *e = x->s + st;
    size_t n = x->i - st;
    x->i++;
    static const struct {
        const char *name;
        char c;
    } pre[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"apos", '\''}, {"quot", '"'}};
    for (size_t k = 0; k < 5; k++)
        if (strlen(pre[k].name) == n && memcmp(pre[k].name, e, n) == 0) {
            tp_buf_putc(b, pre[k].c);
            return 0;
        }
    if (n >= 2 && e[0] == '#') {
        int hex = e[1] == 'x';
        unsigned long r = 0;
        size_t k = hex ? 2 : 1;
        if (k == n)
            goto bad;
        for (; k < n; k++) {
            char c = e[k];
            int d = c >= '0' && c <= '9'                            ? c - '0'
                    : hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                                    : -1;
            if (d < 0 || r > 0x10ffff)
                goto bad;
            r = r * (hex ? 16 : 10) + (unsigned long)d;
        }
        if (!char_ok(r))
            goto bad;
        put_utf8(b, r);
        return 0;
    }
bad:
    return xfail(x, "invalid character entity &%.*s;", (int)n, e);
}

/* A name; returns its local part (after a single prefix) in <local>. */
static int name(xr_t *x, const char **p, size_t *n, const char **local, size_t *ln)
{
    size_t st = x->i;
    while (x->i < x->n) {
        unsigned char c = (unsigned char)x->s[x->i];
        if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              c == ':' || (x->i > st && ((c >= '0' && c <= '9') || c == '.' || c == '-'))))
            break;
        x->i++;
    }
    if (x->i == st)
        return xfail(x, "expected element name after <");
    *p = x->s + st;
    *n = x->i - st;
    *local = *p, *ln = *n;
    const char *c1 = memchr(*p, ':', *n);
    if (c1 && !memchr(c1 + 1, ':', *n - (size_t)(c1 - *p) - 1) && c1 > *p && c1 < *p + *n - 1) {
        *local = c1 + 1;
        *ln = *n - (size_t)(c1 - *p) - 1;
    }
    return 0;
}

static char *dup(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Sets <key> of <obj>, replacing an earlier one (a Go map assignment). */
static void set(cJSON *obj, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddItemToObject(obj, key, v);
}

/* Skips a comment, a processing instruction or refuses a DTD, after '<'. */
static int skip_misc(xr_t *x)
{
    if (starts(x, "!--")) {
        x->i += 3;
        for (;;) {
            if (x->i + 1 >= x->n)
                return xfail(x, "unexpected EOF");
            if (x->s[x->i] == '-' && x->s[x->i + 1] == '-') {
                if (x->i + 2 >= x->n || x->s[x->i + 2] != '>')
                    return xfail(x, "invalid sequence \"--\" not allowed in comments");
                x->i += 3;
                return 0;
            }
            if (read_char(x, NULL) < 0)
                return -1;
        }
    }
    if (starts(x, "?")) {
        size_t st = ++x->i;
        const char *e = NULL;
        for (size_t k = x->i; k + 1 < x->n; k++)
            if (x->s[k] == '?' && x->s[k + 1] == '>') {
                e = x->s + k;
                break;
            }
        if (e == NULL)
            return xfail(x, "unexpected EOF");
        size_t n = (size_t)(e - x->s) - st;
        const char *pi = x->s + st;
        if (n >= 3 && memcmp(pi, "xml", 3) == 0 && (n == 3 || is_ws(pi[3]))) {
            /* the declaration: only UTF-8 (or its ASCII subset) is read */
            const char *enc = NULL;
            for (size_t k = 3; k + 8 < n; k++)
                if (memcmp(pi + k, "encoding", 8) == 0) {
                    enc = pi + k + 8;
                    break;
                }
            if (enc) {
                while (enc < e && (is_ws(*enc) || *enc == '='))
                    enc++;
                char q = enc < e ? *enc++ : 0;
                const char *ee = enc;
                while (ee < e && *ee != q)
                    ee++;
                size_t el = (size_t)(ee - enc);
                if (!((el == 5 && strncasecmp(enc, "utf-8", 5) == 0) ||
                      (el == 8 && strncasecmp(enc, "us-ascii", 8) == 0))) {
                    snprintf(x->why, x->whylen, "the XML encoding \"%.*s\" is not supported",
                             (int)(el > 40 ? 40 : el), enc);
                    x->failed = 1;
                    return -1;
                }
            }
        }
        while (x->i < (size_t)(e - x->s))
            if (read_char(x, NULL) < 0)
                return -1;
        x->i += 2;
        return 0;
    }
    snprintf(x->why, x->whylen, "line %d: XML DTDs and <! declarations are not supported", x->line);
    x->failed = 1;
    return -1;
}

/* mxj's xmlToMapParser for one element whose '<' and name were read: returns the
 * value mxj maps the element to (a string or an object). */
static cJSON *element(xr_t *x, const char *tag, size_t tagn, int depth)
{
    if (depth > TP_XML_MAX_DEPTH) {
        snprintf(x->why, x->whylen, "XML nested deeper than %d elements", TP_XML_MAX_DEPTH);
        x->failed = 1;
        return NULL;
    }
    cJSON *na = cJSON_CreateObject();
    char *text = NULL; /* n[skey]: text met while na was empty */
    tp_buf_t b = {0};
    /* attributes */
    for (;;) {
        skip_ws(x);
        if (x->i >= x->n) {
            xfail(x, "unexpected EOF");
            goto err;
        }
        if (x->s[x->i] == '>') {
            x->i++;
            break;
        }
        if (starts(x, "/>")) {
            x->i += 2;
            goto end;
        }
        const char *an, *al;
        size_t ann, aln;
        if (name(x, &an, &ann, &al, &aln) < 0)
            goto err;
        skip_ws(x);
        if (x->i >= x->n || x->s[x->i] != '=') {
            xfail(x, "attribute name without = in element");
            goto err;
        }
        x->i++;
        skip_ws(x);
        char q = x->i < x->n ? x->s[x->i] : 0;
        if (q != '"' && q != '\'') {
            xfail(x, "unquoted or missing attribute value in element");
            goto err;
        }
        x->i++;
        b.len = 0;
        tp_buf_putc(&b, '-');
        tp_buf_append(&b, al, aln);
        char *key = dup(b.data, b.len);
        b.len = 0;
        while (x->i < x->n && x->s[x->i] != q) {
            int rc = 0;
            if (x->s[x->i] == '<')
                rc = xfail(x, "unescaped < inside quoted string");
            else if (x->s[x->i] == '&')
                x->i++, rc = entity(x, &b);
            else
                rc = read_char(x, &b);
            if (rc < 0) {
                free(key);
                goto err;
            }
        }
        if (x->i >= x->n) {
            free(key);
            xfail(x, "unexpected EOF");
            goto err;
        }
        x->i++;
        tp_buf_putc(&b, '\0');
        set(na, key, cJSON_CreateString(b.data));
        free(key);
    }
    /* content */
    for (;;) {
        if (x->i >= x->n) {
            xfail(x, "unexpected EOF");
            goto err;
        }
        int cdata = starts(x, "<![CDATA[");
        if (x->s[x->i] != '<' || cdata) {
            /* one character-data token */
            b.len = 0;
            if (cdata) {
                x->i += 9;
                for (;;) {
                    if (x->i >= x->n) {
                        xfail(x, "unexpected EOF in CDATA section");
                        goto err;
                    }
                    if (starts(x, "]]>")) {
                        x->i += 3;
                        break;
                    }
                    if (read_char(x, &b) < 0)
                        goto err;
                }
            } else {
                while (x->i < x->n && x->s[x->i] != '<') {
                    int rc = x->s[x->i] == '&' ? (x->i++, entity(x, &b)) : read_char(x, &b);
                    if (rc < 0)
                        goto err;
                }
            }
            size_t s0 = 0, e0 = b.len;
            while (s0 < e0 && strchr("\t\r\b\n ", b.data[s0]))
                s0++;
            while (e0 > s0 && strchr("\t\r\b\n ", b.data[e0 - 1]))
                e0--;
            if (e0 > s0) {
                char *t = dup(b.data + s0, e0 - s0);
                if (na->child) {
                    set(na, "#text", cJSON_CreateString(t));
                    free(t);
                } else {
                    free(text);
                    text = t;
                }
            }
            continue;
        }
        x->i++;
        if (x->i < x->n && x->s[x->i] == '/') {
            x->i++;
            const char *en, *el;
            size_t enn, eln;
            if (name(x, &en, &enn, &el, &eln) < 0)
                goto err;
            skip_ws(x);
            if (x->i >= x->n || x->s[x->i] != '>') {
                xfail(x, "invalid characters between </%.*s and >", (int)enn, en);
                goto err;
            }
            x->i++;
            if (enn != tagn || memcmp(en, tag, tagn) != 0) {
                xfail(x, "element <%.*s> closed by </%.*s>", (int)tagn, tag, (int)enn, en);
                goto err;
            }
            break;
        }
        if (x->i < x->n && (x->s[x->i] == '!' || x->s[x->i] == '?')) {
            if (skip_misc(x) < 0)
                goto err;
            continue;
        }
        const char *cn, *cl;
        size_t cnn, cln;
        if (name(x, &cn, &cnn, &cl, &cln) < 0)
            goto err;
        cJSON *val = element(x, cn, cnn, depth + 1);
        if (val == NULL)
            goto err;
        char *key = dup(cl, cln);
        cJSON *have = cJSON_GetObjectItemCaseSensitive(na, key);
        if (have && cJSON_IsArray(have)) {
            cJSON_AddItemToArray(have, val);
        } else if (have) {
            cJSON *arr = cJSON_CreateArray();
            cJSON_AddItemToArray(arr, cJSON_DetachItemViaPointer(na, have));
            cJSON_AddItemToArray(arr, val);
            cJSON_AddItemToObject(na, key, arr);
        } else {
            cJSON_AddItemToObject(na, key, val);
        }
        free(key);
    }
end:
    tp_buf_free(&b);
    if (text) { /* mxj returns n as soon as text has set it: children are dropped */
        cJSON_Delete(na);
        cJSON *s = cJSON_CreateString(text);
        free(text);
        return s;
    }
    if (na->child)
        return na;
    cJSON_Delete(na);
    return cJSON_CreateString("");
err:
    tp_buf_free(&b);
    free(text);
    cJSON_Delete(na);
    return NULL;
}

cJSON *tp_xml_to_json(const char *xml, size_t len, char *why, size_t whylen)
{
    char dummy[1];
    xr_t x = {.s = xml,
              .n = len,
              .line = 1,
              .why = whylen ? why : dummy,
              .whylen = whylen ? whylen : sizeof(dummy)};
    x.why[0] = '\0';
    if (starts(&x, "\xef\xbb\xbf"))
        x.i = 3;
    for (;;) {
        if (x.i >= x.n) {
            snprintf(x.why, x.whylen, "EOF");
            return NULL;
        }
        if (x.s[x.i] != '<') {
            /* text before the root: mxj skips it, Go's decoder still checks it */
            tp_buf_t b = {0};
            int rc = x.s[x.i] == '&' ? (x.i++, entity(&x, &b)) : read_char(&x, &b);
            tp_buf_free(&b);
            if (rc < 0)
                return NULL;
            continue;
        }
        x.i++;
        if (x.i < x.n && (x.s[x.i] == '!' || x.s[x.i] == '?')) {
            if (starts(&x, "![CDATA[")) {
                const char *e = NULL;
                for (size_t k = x.i; k + 2 < x.n; k++)
                    if (memcmp(x.s + k, "]]>", 3) == 0) {
                        e = x.s + k;
                        break;
                    }
                if (e == NULL) {
                    xfail(&x, "unexpected EOF in CDATA section");
                    return NULL;
                }
                x.i = (size_t)(e - x.s) + 3;
                continue;
            }
            if (skip_misc(&x) < 0)
                return NULL;
            continue;
        }
        if (x.i < x.n && x.s[x.i] == '/') {
            xfail(&x, "unexpected end element");
            return NULL;
        }
        const char *n, *l;
        size_t nn, ln;
        if (name(&x, &n, &nn, &l, &ln) < 0)
            return NULL;
        cJSON *v = element(&x, n, nn, 1);
        if (v == NULL)
            return NULL;
        cJSON *root = cJSON_CreateObject();
        char *key = dup(l, ln);
        cJSON_AddItemToObject(root, key, v);
        free(key);
        return root;
    }
}
