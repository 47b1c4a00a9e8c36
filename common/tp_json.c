/* common/tp_json.c: strict JSON scanner for error reporting, then cJSON. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int scan_string(scan_t *s)
{
    const char *open = s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return fail(s, s->p, "no raw control character inside a string (escape it)");
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end)
                break;
            switch (*s->p) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                s->p++;
                break;
            case 'u':
                if (s->end - s->p < 5 || !is_hex(s->p[1]) || !is_hex(s->p[2]) || !is_hex(s->p[3]) ||
                    !is_hex(s->p[4]))
                    return fail(s, s->p, "four hex digits after \\u");
                s->p += 5;
                break;
            default:
                return fail(s, s->p, "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
            continue;
        }
        s->p++;
    }
    return fail(s, open, "a closing '\"' (unterminated string)");
}

static int scan_number(scan_t *s)
{
    const char *p = s->p;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end || *p < '0' || *p > '9')
        return fail(s, s->p, "a value (string, number, object, array, true, false or null)");
    if (*p == '0')
        p++;
    else
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, p, "a digit after the decimal point");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, p, "a digit in the exponent");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    s->p = p;
    return 0;
}

static int scan_literal(scan_t *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return fail(s, s->p, "a value (string, number, object, array, true, false or null)");
    s->p += n;
    return 0;
}

static int scan_value(scan_t *s);

static int scan_object(scan_t *s)
{
    s->p++; /* '{' */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return fail(s, s->p,
                        s->frames[s->depth].key
                            ? "a '\"' starting the next member name (no trailing commas)"
                            : "a '\"' starting a member name or '}'");
        const char *key = s->p + 1;
        if (scan_string(s) < 0)
            return -1;
        s->frames[s->depth].key = key;
        s->frames[s->depth].key_len = (size_t)(s->p - 1 - key);
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return fail(s, s->p, "':' after the member name");
        s->p++;
        if (scan_value(s) < 0)
            return -1;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return 0;
        }
        return fail(s, s->p, "',' or '}' after an object member");
    }
}

static int scan_array(scan_t *s)
{
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (int i = 0;; i++) {
        s->frames[s->depth].index = i;
        if (scan_value(s) < 0)
            return -1;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return 0;
        }
        return fail(s, s->p, "',' or ']' after an array element");
    }
}

static int scan_value(scan_t *s)
{
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, s->p, "a value (the document ends too early)");
    switch (*s->p) {
    case '{':
    case '[': {
        if (s->depth + 1 >= TP_JSON_MAX_DEPTH)
            return fail(s, s->p, "less deeply nested data");
        int obj = *s->p == '{';
        s->depth++;
        s->frames[s->depth].key = NULL;
        s->frames[s->depth].key_len = 0;
        s->frames[s->depth].index = obj ? -1 : 0;
        int rc = obj ? scan_object(s) : scan_array(s);
        if (rc == 0)
            s->depth--;
        return rc;
    }
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
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
    int rc = scan_value(s);
    if (rc == 0) {
        skip_ws(s);
        if (s->p != s->end)
            rc = fail(s, s->p, "the end of the document after the top-level value");
    }
    if (rc < 0) {
        format_error(s, err, errlen);
        free(s);
        return NULL;
    }
    free(s);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (root == NULL)
        snprintf(err, errlen, "the JSON parser rejected the document");
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
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return it != NULL ? it : cJSON_GetObjectItem(obj, key);
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
