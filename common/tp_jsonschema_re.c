/*
 * common/tp_jsonschema_re.c: JSON Schema "pattern" (Go RE2 syntax) as POSIX ERE.
 *
 * gojsonschema matches with Go's regexp: unanchored, UTF-8 aware, Perl
 * classes. glibc's regcomp in the C locale (Turnpike never calls setlocale)
 * works on bytes, so the translation spells out what RE2 means:
 *   .            any UTF-8 character but \n
 *   \d \w \s     their ASCII sets (RE2's are ASCII too), \D \W \S and [^...]
 *                also match any non-ASCII character
 *   é+           (é)+ so the repetition covers the whole character
 *   [\].-]       POSIX brackets have no escapes: the set is rebuilt
 *   (?:x) (?P<n>x)  plain groups; a leading (?i) becomes REG_ICASE
 *   x*? x+? x??  greedy: only whether a match exists matters
 * Refused rather than matched differently: other flags, \p{..} classes,
 * \Q..\E, backreferences, non-ASCII ranges, and anything RE2 itself rejects
 * that regcomp would take literally (a repetition with nothing to repeat).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_jsonschema_int.h"

/* Any UTF-8 encoded character outside ASCII. */
#define RE_MB                                                                                      \
    "[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf][\x80-\xbf]|"                                    \
    "[\xf0-\xf4][\x80-\xbf][\x80-\xbf][\x80-\xbf]"

typedef struct re_s {
    const char *p;
    tp_buf_t out;
    char *why;
    size_t whylen;
} re_t;

/* An ASCII set, plus the non-ASCII characters of a positive class. */
typedef struct re_set_s {
    unsigned char bit[128];
    int neg;
    tp_buf_t extra; /* alternatives: "|é|ñ" */
} re_set_t;

static int re_fail(re_t *r, const char *what)
{
    snprintf(r->why, r->whylen, "%s", what);
    return -1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes one UTF-8 character at <p>; returns its length (1 for a stray byte). */
static int utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    int n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 1;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 1;
    return n;
}

static void put_utf8(tp_buf_t *b, unsigned long cp)
{
    char s[4];
    int n;
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xc0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xe0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        s[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        s[0] = (char)(0xf0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        s[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    tp_buf_append(b, s, (size_t)n);
}

static void set_perl(re_set_t *s, int cls)
{
    for (int c = 1; c < 128; c++) {
        int in = cls == 'd'   ? isdigit(c)
                 : cls == 'w' ? (isalnum(c) || c == '_')
                              : (c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r');
        if (in)
            s->bit[c] = 1;
    }
}

/* An escape that stands for one character: \n, \x41, \x{263a}, \.; returns
 * the code point, or -1 (with <r>'s reason set) when it is not one. */
static long re_escape_char(re_t *r)
{
    int c = (unsigned char)*r->p;
    if (c == '\0')
        return re_fail(r, "trailing backslash");
    r->p++;
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case 'a':
        return '\a';
    case 'x': {
        long v = 0;
        if (*r->p == '{') {
            r->p++;
            int n = 0;
            while (hexval((unsigned char)*r->p) >= 0 && n < 8) {
                v = v * 16 + hexval((unsigned char)*r->p++);
                n++;
            }
            if (*r->p != '}' || n == 0 || v > 0x10ffff)
                return re_fail(r, "invalid \\x{...} escape");
            r->p++;
            return v;
        }
        int h1 = hexval((unsigned char)r->p[0]);
        int h2 = h1 < 0 ? -1 : hexval((unsigned char)r->p[1]);
        if (h2 < 0)
            return re_fail(r, "invalid \\x escape");
        r->p += 2;
        return h1 * 16 + h2;
    }
    default:
        if (c < 0x80 && ispunct(c))
            return c;
        r->p--;
        return -2;
    }
}

/* Appends the POSIX bracket content of the ASCII members of <s>: ']' first,
 * '[' '^' '-' last so none of them reads as syntax. */
static void put_bracket_body(tp_buf_t *b, const re_set_t *s)
{
    if (s->bit[']'])
        tp_buf_putc(b, ']');
    for (int c = 1; c < 128; c++) {
        if (!s->bit[c] || c == ']' || c == '[' || c == '^' || c == '-')
            continue;
        int e = c;
        while (e + 1 < 128 && s->bit[e + 1] && e + 1 != ']' && e + 1 != '[' && e + 1 != '^' &&
               e + 1 != '-')
            e++;
        tp_buf_putc(b, (char)c);
        if (e > c + 1)
            tp_buf_putc(b, '-');
        if (e > c)
            tp_buf_putc(b, (char)e);
        c = e;
    }
    if (s->bit['['])
        tp_buf_putc(b, '[');
    if (s->bit['^'])
        tp_buf_putc(b, '^');
    if (s->bit['-'])
        tp_buf_putc(b, '-');
}

static int set_empty(const re_set_t *s)
{
    for (int c = 1; c < 128; c++)
        if (s->bit[c])
            return 0;
    return 1;
}

static void put_set(re_t *r, re_set_t *s)
{
    tp_buf_t *b = &r->out;
    if (s->neg) {
        tp_buf_puts(b, "([^");
        put_bracket_body(b, s);
        tp_buf_puts(b, "\x80-\xff]|" RE_MB ")");
        return;
    }
    int only_caret = s->bit['^'];
    for (int c = 1; c < 128 && only_caret; c++)
        if (s->bit[c] && c != '^')
            only_caret = 0;
    tp_buf_putc(b, '(');
    if (only_caret) {
        tp_buf_puts(b, "\\^");
    } else if (!set_empty(s)) {
        tp_buf_putc(b, '[');
        put_bracket_body(b, s);
        tp_buf_putc(b, ']');
    }
    if (s->extra.len)
        tp_buf_append(b, s->extra.data + (set_empty(s) ? 1 : 0),
                      s->extra.len - (set_empty(s) ? 1 : 0));
    tp_buf_putc(b, ')');
}

static const struct {
    const char *name;
    int (*fn)(int);
} posix_classes[] = {
    {"alnum", isalnum}, {"alpha", isalpha}, {"blank", isblank}, {"cntrl", iscntrl},
    {"digit", isdigit}, {"graph", isgraph}, {"lower", islower}, {"print", isprint},
    {"punct", ispunct}, {"space", isspace}, {"upper", isupper}, {"xdigit", isxdigit},
};

/* One class member that may start a range: returns its code point, or -1
 * (failed) or -3 (it was a set, already added to <s>). */
static long class_atom(re_t *r, re_set_t *s)
{
    const unsigned char *p = (const unsigned char *)r->p;
    if (p[0] == '[' && p[1] == ':') {
        const char *end = strstr(r->p + 2, ":]");
        if (end == NULL)
            return re_fail(r, "unterminated [: :] class");
        size_t n = (size_t)(end - (r->p + 2));
        const char *name = r->p + 2;
        r->p = end + 2;
        if (n > 0 && name[0] == '^')
            return re_fail(r, "negated [:^class:] is not supported");
        if (n == 5 && strncmp(name, "ascii", 5) == 0) {
            memset(s->bit + 1, 1, 127);
            return -3;
        }
        if (n == 4 && strncmp(name, "word", 4) == 0) {
            set_perl(s, 'w');
            return -3;
        }
        for (size_t i = 0; i < sizeof(posix_classes) / sizeof(posix_classes[0]); i++) {
            if (strlen(posix_classes[i].name) == n &&
                strncmp(posix_classes[i].name, name, n) == 0) {
                for (int c = 1; c < 128; c++)
                    if (posix_classes[i].fn(c))
                        s->bit[c] = 1;
                return -3;
            }
        }
        return re_fail(r, "unknown [: :] class");
    }
    if (p[0] == '\\') {
        r->p++;
        int c = (unsigned char)*r->p;
        if (c == 'd' || c == 'w' || c == 's') {
            r->p++;
            set_perl(s, c);
            return -3;
        }
        long v = re_escape_char(r);
        if (v == -2)
            return re_fail(r, "escape not supported inside [...]");
        return v;
    }
    int n = utf8_len(p);
    long cp = p[0];
    if (n > 1) {
        cp = p[0] & (0x7f >> n);
        for (int i = 1; i < n; i++)
            cp = (cp << 6) | (p[i] & 0x3f);
    } else if (cp >= 0x80) {
        return re_fail(r, "invalid UTF-8");
    }
    r->p += n;
    return cp;
}

static int re_class(re_t *r)
{
    re_set_t s;
    memset(&s, 0, sizeof(s));
    int rc = -1;
    r->p++; /* '[' */
    if (*r->p == '^') {
        s.neg = 1;
        r->p++;
    }
    int first = 1;
    while (first || *r->p != ']') {
        if (*r->p == '\0') {
            re_fail(r, "missing closing ]");
            goto out;
        }
        first = 0;
        long lo = class_atom(r, &s);
        if (lo == -1)
            goto out;
        if (lo == -3)
            continue;
        long hi = lo;
        if (r->p[0] == '-' && r->p[1] != ']' && r->p[1] != '\0') {
            r->p++;
            hi = class_atom(r, &s);
            if (hi == -1)
                goto out;
            if (hi == -3) {
                re_fail(r, "invalid character class range");
                goto out;
            }
            if (hi < lo) {
                re_fail(r, "invalid character class range");
                goto out;
            }
        }
        if (lo == 0) {
            re_fail(r, "NUL in a pattern is not supported");
            goto out;
        }
        if (hi < 0x80) {
            memset(s.bit + lo, 1, (size_t)(hi - lo + 1));
        } else if (lo == hi && !s.neg) {
            tp_buf_putc(&s.extra, '|');
            put_utf8(&s.extra, (unsigned long)lo);
        } else {
            re_fail(r, "non-ASCII ranges and negated non-ASCII classes are not supported");
            goto out;
        }
    }
    r->p++; /* ']' */
    put_set(r, &s);
    rc = 0;
out:
    tp_buf_free(&s.extra);
    return rc;
}

static void put_literal(re_t *r, unsigned long cp)
{
    if (cp >= 0x80) {
        tp_buf_putc(&r->out, '(');
        put_utf8(&r->out, cp);
        tp_buf_putc(&r->out, ')');
        return;
    }
    if (strchr(".[]()*+?{}|^$\\", (int)cp))
        tp_buf_putc(&r->out, '\\');
    tp_buf_putc(&r->out, (char)cp);
}

/* Is <p> (after '{') "n}", "n,}" or "n,m}"? Sets the bounds. */
static int parse_repeat(const char *p, int *lo, int *hi, const char **end)
{
    if (!isdigit((unsigned char)*p))
        return 0;
    long a = strtol(p, (char **)&p, 10), b = a;
    if (*p == ',') {
        p++;
        b = -1;
        if (isdigit((unsigned char)*p))
            b = strtol(p, (char **)&p, 10);
    }
    if (*p != '}')
        return 0;
    *lo = (int)(a > 100000 ? 100000 : a);
    *hi = (int)(b > 100000 ? 100000 : b);
    *end = p + 1;
    return 1;
}

static int re_translate(re_t *r, int *icase)
{
    int depth = 0;
    int can_repeat = 0; /* an atom precedes: a repetition may follow */
    if (strncmp(r->p, "(?i)", 4) == 0) {
        *icase = 1;
        r->p += 4;
    }
    while (*r->p) {
        int c = (unsigned char)*r->p;
        int lo, hi;
        const char *end;
        if (c == '*' || c == '+' || c == '?' ||
            (c == '{' && parse_repeat(r->p + 1, &lo, &hi, &end))) {
            if (!can_repeat)
                return re_fail(r, "missing argument to repetition operator");
            if (c == '{') {
                /* RE2 caps repetition counts at 1000 */
                if (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo))
                    return re_fail(r, "invalid repeat count");
                tp_buf_append(&r->out, r->p, (size_t)(end - r->p));
                r->p = end;
            } else {
                tp_buf_putc(&r->out, (char)c);
                r->p++;
            }
            if (*r->p == '?')
                r->p++; /* non-greedy: the same matches exist */
            can_repeat = 0;
            if (*r->p == '*' || *r->p == '+' || *r->p == '?' ||
                (*r->p == '{' && parse_repeat(r->p + 1, &lo, &hi, &end)))
                return re_fail(r, "invalid nested repetition operator");
            continue;
        }
        can_repeat = 1;
        switch (c) {
        case '(':
            r->p++;
            if (*r->p == '?') {
                if (r->p[1] == ':') {
                    r->p += 2;
                } else if (r->p[1] == 'P' && r->p[2] == '<') {
                    const char *gt = strchr(r->p, '>');
                    if (gt == NULL)
                        return re_fail(r, "invalid named capture");
                    r->p = gt + 1;
                } else {
                    return re_fail(r, "flags and (?...) groups other than (?:...), (?P<name>...) "
                                      "and a leading (?i) are not supported");
                }
            }
            tp_buf_putc(&r->out, '(');
            depth++;
            can_repeat = 0;
            break;
        case ')':
            if (depth == 0)
                return re_fail(r, "unexpected )");
            depth--;
            r->p++;
            tp_buf_putc(&r->out, ')');
            break;
        case '|':
            r->p++;
            tp_buf_putc(&r->out, '|');
            can_repeat = 0;
            break;
        case '^':
        case '$':
            r->p++;
            tp_buf_putc(&r->out, (char)c);
            can_repeat = 0;
            break;
        case '.':
            r->p++;
            tp_buf_puts(&r->out, "([^\n\x80-\xff]|" RE_MB ")");
            break;
        case '[':
            if (re_class(r) < 0)
                return -1;
            break;
        case '\\': {
            int e = (unsigned char)r->p[1];
            if (e == 'd' || e == 'w' || e == 's' || e == 'D' || e == 'W' || e == 'S') {
                re_set_t s;
                memset(&s, 0, sizeof(s));
                set_perl(&s, tolower(e));
                s.neg = isupper(e) != 0;
                r->p += 2;
                put_set(r, &s);
                break;
            }
            if (e == 'A' || e == 'z' || e == 'b' || e == 'B') {
                r->p += 2;
                tp_buf_puts(&r->out, e == 'A' ? "^" : e == 'z' ? "$" : e == 'b' ? "\\b" : "\\B");
                can_repeat = 0;
                break;
            }
            r->p++;
            long v = re_escape_char(r);
            if (v == -1)
                return -1;
            if (v == -2)
                return re_fail(r, "escape not supported (\\p, \\Q, backreferences, ...)");
            if (v == 0)
                return re_fail(r, "NUL in a pattern is not supported");
            put_literal(r, (unsigned long)v);
            break;
        }
        default: {
            const unsigned char *p = (const unsigned char *)r->p;
            int n = utf8_len(p);
            if (n == 1 && c >= 0x80)
                return re_fail(r, "invalid UTF-8");
            if (n == 1) {
                put_literal(r, (unsigned long)c);
            } else {
                tp_buf_putc(&r->out, '(');
                tp_buf_append(&r->out, p, (size_t)n);
                tp_buf_putc(&r->out, ')');
            }
            r->p += n;
        }
        }
    }
    if (depth != 0)
        return re_fail(r, "missing closing )");
    return 0;
}

int tp_jschema__re_compile(tp_jschema__pattern_t *p, const char *pattern, char *why, size_t whylen)
{
    re_t r = {.p = pattern, .why = why, .whylen = whylen};
    int icase = 0;
    int rc = -1;
    if (re_translate(&r, &icase) < 0)
        goto out;
    int err =
        regcomp(&p->re, tp_buf_cstr(&r.out), REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
    if (err != 0) {
        char msg[128];
        regerror(err, &p->re, msg, sizeof(msg));
        snprintf(why, whylen, "%s", msg);
        goto out;
    }
    p->src = tp_strdup(pattern);
    rc = 0;
out:
    tp_buf_free(&r.out);
    return rc;
}

void tp_jschema__re_free(tp_jschema__pattern_t *p)
{
    if (p->src == NULL)
        return;
    regfree(&p->re);
    free(p->src);
    p->src = NULL;
}

int tp_jschema__re_match(const tp_jschema__pattern_t *p, const char *s)
{
    return regexec(&p->re, s, 0, NULL, 0) == 0;
}
