/* common/tp_tmpl_lex.c: the lexer of tp_tmpl (see tp_tmpl.h): Go's text/template/parse
 * lex.go turned into one pass that fills a token array, with its trim markers, comments,
 * number syntax and strconv.Unquote of string and character literals. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_tmpl_int.h"

int tp_tmpl__fail(tp_tmpl__ps_t *ps, int line, const char *fmt, ...)
{
    if (ps->failed)
        return -1;
    ps->failed = 1;
    int n = snprintf(ps->why, ps->whylen, "line %d: ", line);
    if (n >= 0 && (size_t)n < ps->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->why + n, ps->whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void emit(tp_tmpl__ps_t *ps, int type, int line, const char *p, size_t n)
{
    if (ps->ntk == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        tp_tmpl__tk_t *nt = tp_malloc(sizeof(*nt) * (size_t)ps->cap);
        if (ps->ntk)
            memcpy(nt, ps->tk, sizeof(*nt) * (size_t)ps->ntk);
        free(ps->tk);
        ps->tk = nt;
    }
    ps->tk[ps->ntk++] = (tp_tmpl__tk_t){type, line, p, n};
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_alnum(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int count_lines(const char *p, size_t n)
{
    int l = 0;
    for (size_t i = 0; i < n; i++)
        l += p[i] == '\n';
    return l;
}

/* At <i>: "}}" or " -}}" (a space, the trim marker, the delimiter)? Returns the
 * length of the closing sequence, 0 if none; <*trim> says whether it trims. */
static size_t at_rdelim(const tp_tmpl__ps_t *ps, size_t i, int *trim)
{
    const char *s = ps->src + i;
    size_t left = ps->len - i;
    *trim = 0;
    if (left >= 4 && is_space(s[0]) && s[1] == '-' && s[2] == '}' && s[3] == '}') {
        *trim = 1;
        return 4;
    }
    if (left >= 2 && s[0] == '}' && s[1] == '}')
        return 2;
    return 0;
}

static const struct {
    const char *w;
    int type;
} keywords[] = {
    {"if", TK_IF},         {"else", TK_ELSE},         {"end", TK_END},
    {"range", TK_RANGE},   {"with", TK_WITH},         {"break", TK_BREAK},
    {"nil", TK_NIL},       {"continue", TK_CONTINUE}, {"template", TK_TEMPLATE},
    {"define", TK_DEFINE}, {"block", TK_BLOCK},       {"true", TK_BOOL},
    {"false", TK_BOOL},
};

/* Scans Go's number syntax from <i> (scanNumber); returns its end, 0 on bad syntax. */
static size_t scan_number(const tp_tmpl__ps_t *ps, size_t i)
{
    const char *s = ps->src;
    size_t n = ps->len;
    const char *digits = "0123456789_";
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i < n && s[i] == '0') {
        i++;
        if (i < n && (s[i] == 'x' || s[i] == 'X'))
            digits = "0123456789abcdefABCDEF_", i++;
        else if (i < n && (s[i] == 'o' || s[i] == 'O'))
            digits = "01234567_", i++;
        else if (i < n && (s[i] == 'b' || s[i] == 'B'))
            digits = "01_", i++;
    }
    while (i < n && s[i] && strchr(digits, s[i]))
        i++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] && strchr(digits, s[i]))
            i++;
    }
    size_t nd = strlen(digits);
    if (nd == 11 && i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            i++;
    }
    if (nd == 23 && i < n && (s[i] == 'p' || s[i] == 'P')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            i++;
    }
    if (i < n && s[i] == 'i')
        i++;
    if (i < n && is_alnum(s[i]))
        return 0;
    return i;
}

/* Lexes the inside of one action from <i> (after the delimiter and any trim
 * marker); returns the index after its closing delimiter or 0 on error. */
static size_t lex_action(tp_tmpl__ps_t *ps, size_t i, int *line, int *rtrim)
{
    const char *s = ps->src;
    int parens = 0;
    for (;;) {
        int trim;
        size_t d = parens == 0 ? at_rdelim(ps, i, &trim) : 0;
        if (d) {
            if (trim) {
                emit(ps, TK_SPACE, *line, s + i, 1);
                *line += s[i] == '\n';
            }
            emit(ps, TK_RDELIM, *line, s + i, d);
            *rtrim = trim;
            return i + d;
        }
        if (i >= ps->len)
            return (size_t)tp_tmpl__fail(ps, *line, "unclosed action") + 1;
        char c = s[i];
        size_t st = i;
        int l0 = *line;
        if (is_space(c)) {
            while (i < ps->len && is_space(s[i]) && !(parens == 0 && at_rdelim(ps, i, &trim) == 4))
                *line += s[i++] == '\n';
            emit(ps, TK_SPACE, l0, s + st, i - st);
        } else if (c == '=') {
            emit(ps, TK_ASSIGN, l0, s + i++, 1);
        } else if (c == ':') {
            if (i + 1 >= ps->len || s[i + 1] != '=')
                return (size_t)tp_tmpl__fail(ps, l0, "expected :=") + 1;
            emit(ps, TK_DECLARE, l0, s + i, 2);
            i += 2;
        } else if (c == '|') {
            emit(ps, TK_PIPE, l0, s + i++, 1);
        } else if (c == '"' || c == '\'') {
            for (i++;; i++) {
                if (i >= ps->len || s[i] == '\n')
                    return (size_t)tp_tmpl__fail(ps, l0,
                                                 c == '"' ? "unterminated quoted string"
                                                          : "unterminated character constant") +
                           1;
                if (s[i] == '\\' && i + 1 < ps->len && s[i + 1] != '\n')
                    i++;
                else if (s[i] == c)
                    break;
            }
            i++;
            emit(ps, c == '"' ? TK_STRING : TK_CHAR, l0, s + st, i - st);
        } else if (c == '`') {
            const char *e = memchr(s + i + 1, '`', ps->len - i - 1);
            if (e == NULL)
                return (size_t)tp_tmpl__fail(ps, l0, "unterminated raw quoted string") + 1;
            i = (size_t)(e - s) + 1;
            *line += count_lines(s + st, i - st);
            emit(ps, TK_RAW, l0, s + st, i - st);
        } else if (c == '$') {
            i++;
            while (i < ps->len && is_alnum(s[i]))
                i++;
            emit(ps, TK_VAR, l0, s + st, i - st);
        } else if (c == '.' && !(i + 1 < ps->len && s[i + 1] >= '0' && s[i + 1] <= '9')) {
            i++;
            while (i < ps->len && is_alnum(s[i]))
                i++;
            emit(ps, i - st == 1 ? TK_DOT : TK_FIELD, l0, s + st, i - st);
        } else if (c == '.' || c == '+' || c == '-' || (c >= '0' && c <= '9')) {
            size_t e = scan_number(ps, i);
            if (e == 0) {
                e = i + 1;
                while (e < ps->len && is_alnum(s[e]))
                    e++;
                return (size_t)tp_tmpl__fail(ps, l0, "bad number syntax: \"%.*s\"", (int)(e - i),
                                             s + i) +
                       1;
            }
            emit(ps, TK_NUMBER, l0, s + st, e - st);
            i = e;
        } else if (is_alnum(c)) {
            while (i < ps->len && is_alnum(s[i]))
                i++;
            int type = TK_IDENT;
            for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
                if (strlen(keywords[k].w) == i - st && memcmp(keywords[k].w, s + st, i - st) == 0)
                    type = keywords[k].type;
            /* atTerminator: an identifier must end at a space, a delimiter or punctuation */
            if (i < ps->len && !is_space(s[i]) && !strchr(".,|:()}", s[i]))
                return (size_t)tp_tmpl__fail(ps, l0, "bad character U+%04X '%c'",
                                             (unsigned char)s[i], s[i]) +
                       1;
            emit(ps, type, l0, s + st, i - st);
        } else if (c == '(') {
            parens++;
            emit(ps, TK_LPAREN, l0, s + i++, 1);
        } else if (c == ')') {
            if (--parens < 0)
                return (size_t)tp_tmpl__fail(ps, l0, "unexpected right paren") + 1;
            emit(ps, TK_RPAREN, l0, s + i++, 1);
        } else if (c == ',') {
            emit(ps, TK_COMMA, l0, s + i++, 1);
        } else if ((unsigned char)c > ' ' && (unsigned char)c < 0x7f) {
            emit(ps, TK_OTHER, l0, s + i++, 1);
        } else {
            return (size_t)tp_tmpl__fail(ps, l0, "unrecognized character in action: U+%04X",
                                         (unsigned char)c) +
                   1;
        }
    }
}

/* Splits the source into text and action tokens, trimming around "{{- " and " -}}". */
int tp_tmpl__lex(tp_tmpl__ps_t *ps)
{
    const char *s = ps->src;
    size_t i = 0;
    int line = 1, rtrim = 0;
    while (i <= ps->len) {
        const char *ld = NULL;
        for (size_t k = i; k + 1 < ps->len; k++)
            if (s[k] == '{' && s[k + 1] == '{') {
                ld = s + k;
                break;
            }
        size_t tend = ld ? (size_t)(ld - s) : ps->len;
        size_t tst = i;
        if (rtrim)
            while (tst < tend && is_space(s[tst]))
                tst++;
        line += count_lines(s + i, tst - i);
        int ltrim = ld && tend + 3 < ps->len && s[tend + 2] == '-' && is_space(s[tend + 3]);
        size_t te = tend;
        if (ltrim)
            while (te > tst && is_space(s[te - 1]))
                te--;
        if (te > tst)
            emit(ps, TK_TEXT, line, s + tst, te - tst);
        line += count_lines(s + tst, tend - tst);
        if (ld == NULL)
            break;
        i = tend + 2 + (ltrim ? 2 : 0);
        if (ltrim)
            line += s[tend + 3] == '\n';
        if (i + 1 < ps->len && s[i] == '/' && s[i + 1] == '*') {
            const char *e = NULL;
            for (size_t k = i + 2; k + 1 < ps->len; k++)
                if (s[k] == '*' && s[k + 1] == '/') {
                    e = s + k;
                    break;
                }
            if (e == NULL)
                return tp_tmpl__fail(ps, line, "unclosed comment");
            line += count_lines(s + i, (size_t)(e - s) - i);
            i = (size_t)(e - s) + 2;
            size_t d = at_rdelim(ps, i, &rtrim);
            if (d == 0)
                return tp_tmpl__fail(ps, line, "comment ends before closing delimiter");
            line += rtrim && s[i] == '\n';
            i += d;
            continue;
        }
        emit(ps, TK_LDELIM, line, ld, 2);
        i = lex_action(ps, i, &line, &rtrim);
        if (ps->failed)
            return -1;
    }
    emit(ps, TK_EOF, line, s + ps->len, 0);
    return 0;
}

static void utf8_put(tp_buf_t *b, unsigned long r)
{
    char e[4];
    if (r < 0x80) {
        tp_buf_putc(b, (char)r);
    } else if (r < 0x800) {
        e[0] = (char)(0xc0 | (r >> 6)), e[1] = (char)(0x80 | (r & 0x3f));
        tp_buf_append(b, e, 2);
    } else if (r < 0x10000) {
        e[0] = (char)(0xe0 | (r >> 12)), e[1] = (char)(0x80 | ((r >> 6) & 0x3f));
        e[2] = (char)(0x80 | (r & 0x3f));
        tp_buf_append(b, e, 3);
    } else {
        e[0] = (char)(0xf0 | (r >> 18)), e[1] = (char)(0x80 | ((r >> 12) & 0x3f));
        e[2] = (char)(0x80 | ((r >> 6) & 0x3f)), e[3] = (char)(0x80 | (r & 0x3f));
        tp_buf_append(b, e, 4);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* strconv.Unquote of a "..." or '...' token (the quotes included); 0 or -1. */
int tp_tmpl__unquote(const char *p, size_t n, tp_buf_t *b)
{
    char q = p[0];
    const unsigned char *s = (const unsigned char *)p + 1, *e = (const unsigned char *)p + n - 1;
    int runes = 0;
    while (s < e) {
        unsigned long r;
        runes++;
        if (*s != '\\') {
            if (*s == (unsigned char)q)
                return -1;
            size_t l = tp_tmpl__rune(s, (size_t)(e - s), &r);
            if (l == 0) /* Go's UnquoteChar decodes a bad byte as U+FFFD */
                utf8_put(b, 0xfffd), s++;
            else
                tp_buf_append(b, s, l), s += l;
            continue;
        }
        if (++s >= e)
            return -1;
        char c = (char)*s++;
        int nd = 0;
        switch (c) {
        case 'a':
            tp_buf_putc(b, '\a');
            break;
        case 'b':
            tp_buf_putc(b, '\b');
            break;
        case 'f':
            tp_buf_putc(b, '\f');
            break;
        case 'n':
            tp_buf_putc(b, '\n');
            break;
        case 'r':
            tp_buf_putc(b, '\r');
            break;
        case 't':
            tp_buf_putc(b, '\t');
            break;
        case 'v':
            tp_buf_putc(b, '\v');
            break;
        case '\\':
            tp_buf_putc(b, '\\');
            break;
        case '"':
        case '\'':
            if (c != q)
                return -1;
            tp_buf_putc(b, c);
            break;
        case 'x':
            nd = 2;
            break;
        case 'u':
            nd = 4;
            break;
        case 'U':
            nd = 8;
            break;
        default:
            if (c < '0' || c > '7' || e - s < 2 || s[0] < '0' || s[0] > '7' || s[1] < '0' ||
                s[1] > '7')
                return -1;
            r = (unsigned long)((c - '0') * 64 + (s[0] - '0') * 8 + (s[1] - '0'));
            if (r > 255)
                return -1;
            tp_buf_putc(b, (char)r);
            s += 2;
        }
        if (nd) {
            if (e - s < nd)
                return -1;
            r = 0;
            for (int k = 0; k < nd; k++) {
                int h = hexval((char)s[k]);
                if (h < 0)
                    return -1;
                r = r * 16 + (unsigned long)h;
            }
            s += nd;
            if (c == 'x')
                tp_buf_putc(b, (char)r);
            else if (r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
                return -1;
            else
                utf8_put(b, r);
        }
    }
    return q == '\'' && runes != 1 ? -1 : 0;
}
