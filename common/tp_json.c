/* common/tp_json.c: a strict JSON parser that builds cJSON trees and says where it failed. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tp_buf.h"
#include "tp_err.h"
#include "tp_json.h"

typedef struct scan_s {
    const char *p;
    const char *end;
    const char *start;
    const char *fail_at;
    const char *expected;
    int depth;
    /* the path of the value being scanned */
    struct {
        const char *key;
        size_t key_len;
        int index; /* -1 for object frames */
    } frames[TP_JSON_MAX_DEPTH];
} scan_t;

static int fail(scan_t *s, const char *at, const char *expected)
{
    s->fail_at = at;
    s->expected = expected;
    return -1;
}

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void put_utf8(tp_buf_t *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    tp_buf_append(b, u, n);
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Scans a string at s->p; when <out> is given, appends its unescaped bytes
 * (NUL-terminated). A lone UTF-16 surrogate becomes U+FFFD, as in Go. */
static int scan_string(scan_t *s, tp_buf_t *out)
{
    const char *open = s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            if (out != NULL)
                tp_buf_append(out, "", 1);
            return 0;
        }
        if (c < 0x20)
            return fail(s, s->p, "no raw control character inside a string (escape it)");
        if (c != '\\') {
            const char *run = s->p;
            while (s->p < s->end && *s->p != '"' && *s->p != '\\' && (unsigned char)*s->p >= 0x20)
                s->p++;
            if (out != NULL)
                tp_buf_append(out, run, (size_t)(s->p - run));
            continue;
        }
        s->p++;
        if (s->p >= s->end)
            break;
        static const char simple[] = "\"\\/bfnrt", value[] = "\"\\/\b\f\n\r\t";
        const char *e = strchr(simple, *s->p);
        if (*s->p != '\0' && e != NULL) {
            if (out != NULL)
                tp_buf_putc(out, value[e - simple]);
            s->p++;
            continue;
        }
        if (*s->p != 'u')
            return fail(s, s->p, "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
        if (s->end - s->p < 5 || !is_hex(s->p[1]) || !is_hex(s->p[2]) || !is_hex(s->p[3]) ||
            !is_hex(s->p[4]))
            return fail(s, s->p, "four hex digits after \\u");
        unsigned cp = hex4(s->p + 1);
        s->p += 5;
        if (cp >= 0xd800 && cp < 0xdc00 && s->end - s->p >= 6 && s->p[0] == '\\' &&
            s->p[1] == 'u' && is_hex(s->p[2]) && is_hex(s->p[3]) && is_hex(s->p[4]) &&
            is_hex(s->p[5])) {
            unsigned lo = hex4(s->p + 2);
            if (lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s->p += 6;
            }
        }
        if (cp >= 0xd800 && cp < 0xe000)
            cp = 0xfffd;
        if (out != NULL)
            put_utf8(out, cp);
    }
    return fail(s, open, "a closing '\"' (unterminated string)");
}

static cJSON *scan_number(scan_t *s)
{
    const char *p = s->p, *start = s->p;
    int fraction = 0;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end || *p < '0' || *p > '9') {
        fail(s, s->p, "a value (string, number, object, array, true, false or null)");
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < s->end && *p >= '0' && *p <= '9') {
            fail(s, p, "no leading zeros in a number");
            return NULL;
        }
    } else {
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && *p == '.') {
        p++;
        fraction = 1;
        if (p >= s->end || *p < '0' || *p > '9') {
            fail(s, p, "a digit after the decimal point");
            return NULL;
        }
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        fraction = 1;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9') {
            fail(s, p, "a digit in the exponent");
            return NULL;
        }
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    char small[128], *lit = small;
    size_t n = (size_t)(p - start);
    if (n >= sizeof(small))
        lit = tp_malloc(n + 1);
    memcpy(lit, start, n);
    lit[n] = '\0';
    double v = strtod(lit, NULL);
    if (lit != small)
        free(lit);
    if (isinf(v)) {
        /* Go: "cannot unmarshal number ... into Go value of type float64" */
        fail(s, start, "a number within the range of a float64");
        return NULL;
    }
    s->p = p;
    cJSON *num = cJSON_CreateNumber(v);
    if (fraction)
        num->type |= TP_JSON_FRACTION;
    return num;
}

static int scan_literal(scan_t *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return fail(s, s->p, "a value (string, number, object, array, true, false or null)");
    s->p += n;
    return 0;
}

static cJSON *scan_value(scan_t *s);

static cJSON *scan_object(scan_t *s)
{
    cJSON *obj = cJSON_CreateObject();
    tp_buf_t key = {0};
    s->p++; /* '{' */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return obj;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') {
            fail(s, s->p,
                 s->frames[s->depth].key
                     ? "a '\"' starting the next member name (no trailing commas)"
                     : "a '\"' starting a member name or '}'");
            goto err;
        }
        const char *kstart = s->p + 1;
        key.len = 0;
        if (scan_string(s, &key) < 0)
            goto err;
        s->frames[s->depth].key = kstart;
        s->frames[s->depth].key_len = (size_t)(s->p - 1 - kstart);
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') {
            fail(s, s->p, "':' after the member name");
            goto err;
        }
        s->p++;
        cJSON *v = scan_value(s);
        if (v == NULL)
            goto err;
        cJSON_AddItemToObject(obj, key.data, v);
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            tp_buf_free(&key);
            return obj;
        }
        fail(s, s->p, "',' or '}' after an object member");
        goto err;
    }
err:
    tp_buf_free(&key);
    cJSON_Delete(obj);
    return NULL;
}

static cJSON *scan_array(scan_t *s)
{
    cJSON *arr = cJSON_CreateArray();
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return arr;
    }
    for (int i = 0;; i++) {
        s->frames[s->depth].index = i;
        cJSON *v = scan_value(s);
        if (v == NULL)
            break;
        cJSON_AddItemToArray(arr, v);
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return arr;
        }
        fail(s, s->p, "',' or ']' after an array element");
        break;
    }
    cJSON_Delete(arr);
    return NULL;
}

static cJSON *scan_value(scan_t *s)
{
    skip_ws(s);
    if (s->p >= s->end) {
        fail(s, s->p, "a value (the document ends too early)");
        return NULL;
    }
    switch (*s->p) {
    case '{':
    case '[': {
        if (s->depth + 1 >= TP_JSON_MAX_DEPTH) {
            fail(s, s->p, "less deeply nested data");
            return NULL;
        }
        int obj = *s->p == '{';
        s->depth++;
        s->frames[s->depth].key = NULL;
        s->frames[s->depth].key_len = 0;
        s->frames[s->depth].index = obj ? -1 : 0;
        cJSON *v = obj ? scan_object(s) : scan_array(s);
        if (v != NULL)
            s->depth--;
        return v;
    }
    case '"': {
        tp_buf_t str = {0};
        cJSON *v = NULL;
        if (scan_string(s, &str) == 0)
            v = cJSON_CreateString(str.data);
        tp_buf_free(&str);
        return v;
    }
    case 't':
        return scan_literal(s, "true") == 0 ? cJSON_CreateTrue() : NULL;
    case 'f':
        return scan_literal(s, "false") == 0 ? cJSON_CreateFalse() : NULL;
    case 'n':
        return scan_literal(s, "null") == 0 ? cJSON_CreateNull() : NULL;
    default:
        return scan_number(s);
    }
}

void tp_json_path_push(char *path, size_t cap, const char *key, int index)
{
    size_t len = strlen(path);
    if (len >= cap)
        return;
    if (key == NULL) {
        snprintf(path + len, cap - len, "[%d]", index);
        return;
    }
    int plain = key[0] != '\0';
    for (const char *k = key; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '-'))
            plain = 0;
    if (plain)
        snprintf(path + len, cap - len, ".%s", key);
    else
        snprintf(path + len, cap - len, "[\"%s\"]", key);
}

static void format_error(scan_t *s, char *err, size_t errlen)
{
    int line = 1, col = 1;
    for (const char *p = s->start; p < s->fail_at && p < s->end; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char path[512] = "$";
    for (int d = 1; d <= s->depth; d++) {
        if (s->frames[d].index >= 0) {
            tp_json_path_push(path, sizeof(path), NULL, s->frames[d].index);
        } else if (s->frames[d].key) {
            char key[128];
            size_t n =
                s->frames[d].key_len < sizeof(key) - 1 ? s->frames[d].key_len : sizeof(key) - 1;
            memcpy(key, s->frames[d].key, n);
            key[n] = '\0';
            tp_json_path_push(path, sizeof(path), key, 0);
        }
    }
    snprintf(err, errlen, "line %d, column %d, at %s: expected %s", line, col, path, s->expected);
}

cJSON *tp_json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    scan_t *s = tp_calloc(1, sizeof(*s));
    s->p = s->start = text;
    s->end = text + len;
    s->frames[0].index = -1;
    cJSON *root = scan_value(s);
    if (root != NULL) {
        skip_ws(s);
        if (s->p != s->end) {
            fail(s, s->p, "the end of the document after the top-level value");
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (root == NULL)
        format_error(s, err, errlen);
    free(s);
    return root;
}

cJSON *tp_json_parse_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size > 64 * 1024 * 1024) {
        snprintf(err, errlen, "%s: file too large (%lld bytes)", path, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = tp_malloc(size + 1);
    while (got < size) {
        ssize_t r = read(fd, text + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    text[got] = '\0';
    char inner[512];
    cJSON *root = tp_json_parse(text, got, inner, sizeof(inner));
    free(text);
    if (root == NULL)
        snprintf(err, errlen, "%s: %s", path, inner);
    return root;
}

const cJSON *tp_json_get(const cJSON *obj, const char *key)
{
    /* Go assigns members in document order, so a later "API_ID" beats an
     * earlier "api_id": the last case-insensitive match wins. */
    const cJSON *found = NULL, *it;
    if (obj == NULL)
        return NULL;
    /* the first bytes first: letters equal in any case stay equal with
     * bit 5 set, other bytes only when identical (sessions have ~40
     * members, and the analytics record asks several per request) */
    unsigned char k0 = (unsigned char)key[0] | 0x20;
    for (it = obj->child; it != NULL; it = it->next)
        if (it->string != NULL && ((unsigned char)it->string[0] | 0x20) == k0 &&
            strcasecmp(it->string, key) == 0)
            found = it;
    return found;
}

const char *tp_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = tp_json_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void tp_json_set_number(cJSON *obj, const char *key, double v)
{
    cJSON *old = (cJSON *)tp_json_get(obj, key);
    if (old == NULL) {
        cJSON_AddNumberToObject(obj, key, v);
    } else if (cJSON_IsNumber(old)) {
        old->type &= ~TP_JSON_FRACTION;
        cJSON_SetNumberValue(old, v);
    } else {
        cJSON *n = cJSON_CreateNumber(v);
        n->string = tp_strdup(old->string);
        cJSON_ReplaceItemViaPointer(obj, old, n);
    }
}

const char *tp_json_type_name(const cJSON *item)
{
    if (item == NULL || cJSON_IsNull(item))
        return "null";
    if (cJSON_IsBool(item))
        return "bool";
    if (cJSON_IsNumber(item))
        return "number";
    if (cJSON_IsString(item))
        return "string";
    if (cJSON_IsArray(item))
        return "array";
    if (cJSON_IsObject(item))
        return "object";
    return "invalid";
}

static void print_number(tp_buf_t *b, double v)
{
    char num[32];
    if (v > -1e18 && v < 1e18 && v == (double)(long long)v) {
        snprintf(num, sizeof(num), "%lld", (long long)v);
    } else {
        /* the shortest form that reads back the same, as Go writes it */
        snprintf(num, sizeof(num), "%.15g", v);
        if (strtod(num, NULL) != v)
            snprintf(num, sizeof(num), "%.17g", v);
    }
    tp_buf_puts(b, num);
}

static void print_indent(tp_buf_t *b, const cJSON *item, int depth)
{
    switch (item->type & 0xff) {
    case cJSON_False:
        tp_buf_puts(b, "false");
        return;
    case cJSON_True:
        tp_buf_puts(b, "true");
        return;
    case cJSON_NULL:
        tp_buf_puts(b, "null");
        return;
    case cJSON_Number:
        print_number(b, item->valuedouble);
        return;
    case cJSON_String:
        tp_buf_putc(b, '"');
        tp_buf_json_escape(b, item->valuestring, strlen(item->valuestring));
        tp_buf_putc(b, '"');
        return;
    case cJSON_Raw:
        tp_buf_puts(b, item->valuestring);
        return;
    default:
        break;
    }
    int obj = cJSON_IsObject(item);
    const cJSON *c = item->child;
    tp_buf_putc(b, obj ? '{' : '[');
    if (c == NULL) {
        tp_buf_putc(b, obj ? '}' : ']');
        return;
    }
    for (; c != NULL; c = c->next) {
        tp_buf_putc(b, '\n');
        for (int i = 0; i <= depth; i++)
            tp_buf_puts(b, "  ");
        if (obj) {
            tp_buf_putc(b, '"');
            tp_buf_json_escape(b, c->string, strlen(c->string));
            tp_buf_puts(b, "\": ");
        }
        print_indent(b, c, depth + 1);
        if (c->next != NULL)
            tp_buf_putc(b, ',');
    }
    tp_buf_putc(b, '\n');
    for (int i = 0; i < depth; i++)
        tp_buf_puts(b, "  ");
    tp_buf_putc(b, obj ? '}' : ']');
}

void tp_json_print_indent(tp_buf_t *b, const cJSON *item)
{
    print_indent(b, item, 0);
}
