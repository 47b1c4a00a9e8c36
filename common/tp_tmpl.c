/* common/tp_tmpl.c: the parser of tp_tmpl (see tp_tmpl.h). It follows Go's
 * text/template/parse parse.go production for production over the tokens of
 * tp_tmpl_lex.c, so that what Go accepts parses to the same tree and what Go rejects
 * fails here too, with its message; what this engine does not run is refused here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_tmpl_int.h"

static tp_tmpl__tk_t *next(tp_tmpl__ps_t *ps)
{
    tp_tmpl__tk_t *t = &ps->tk[ps->pos];
    if (t->type != TK_EOF)
        ps->pos++;
    return t;
}

static tp_tmpl__tk_t *peek(tp_tmpl__ps_t *ps)
{
    return &ps->tk[ps->pos];
}

static tp_tmpl__tk_t *next_nonspace(tp_tmpl__ps_t *ps)
{
    tp_tmpl__tk_t *t;
    while ((t = next(ps))->type == TK_SPACE)
        ;
    return t;
}

static tp_tmpl__tk_t *peek_nonspace(tp_tmpl__ps_t *ps)
{
    int save = ps->pos;
    tp_tmpl__tk_t *t = next_nonspace(ps);
    ps->pos = save;
    return t;
}

static char *dupn(const char *p, size_t n)
{
    char *s = tp_malloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int unexpected(tp_tmpl__ps_t *ps, const tp_tmpl__tk_t *t, const char *ctx)
{
    switch (t->type) {
    case TK_EOF:
        return tp_tmpl__fail(ps, t->line, "unexpected EOF");
    case TK_RDELIM:
        return tp_tmpl__fail(ps, t->line, "unexpected \"}}\" in %s", ctx);
    case TK_RPAREN:
        return tp_tmpl__fail(ps, t->line, "unexpected right paren in %s", ctx);
    case TK_TEMPLATE:
    case TK_DEFINE:
    case TK_BLOCK:
        return tp_tmpl__fail(ps, t->line, "the \"%.*s\" action is not supported", (int)t->n, t->p);
    default:
        return tp_tmpl__fail(ps, t->line, "unexpected \"%.*s\" in %s", (int)t->n, t->p, ctx);
    }
}

static void push_var(tp_tmpl__ps_t *ps, const char *name, size_t n)
{
    if (ps->nvars == ps->capvars) {
        ps->capvars = ps->capvars ? ps->capvars * 2 : 16;
        char **nv = tp_malloc(sizeof(*nv) * (size_t)ps->capvars);
        if (ps->nvars)
            memcpy(nv, ps->vars, sizeof(*nv) * (size_t)ps->nvars);
        free(ps->vars);
        ps->vars = nv;
    }
    ps->vars[ps->nvars++] = dupn(name, n);
}

static void pop_vars(tp_tmpl__ps_t *ps, int to)
{
    while (ps->nvars > to)
        free(ps->vars[--ps->nvars]);
}

static int have_var(const tp_tmpl__ps_t *ps, const char *name, size_t n)
{
    for (int i = ps->nvars - 1; i >= 0; i--)
        if (strlen(ps->vars[i]) == n && memcmp(ps->vars[i], name, n) == 0)
            return 1;
    return 0;
}

static tp_tmpl__pipe_t *pipeline(tp_tmpl__ps_t *ps, const char *ctx, int end);
static void pipe_free(tp_tmpl__pipe_t *p);

static void arg_free(tp_tmpl__arg_t *a)
{
    for (int i = 0; i < a->nident; i++)
        free(a->ident[i]);
    free(a->ident);
    free(a->s);
    pipe_free(a->pipe);
}

static void pipe_free(tp_tmpl__pipe_t *p)
{
    if (p == NULL)
        return;
    for (int c = 0; c < p->ncmds; c++) {
        for (int a = 0; a < p->cmds[c].nargs; a++)
            arg_free(&p->cmds[c].args[a]);
        free(p->cmds[c].args);
    }
    free(p->cmds);
    free(p->decl[0]);
    free(p->decl[1]);
    free(p);
}

static void add_ident(tp_tmpl__arg_t *a, const char *p, size_t n)
{
    char **ni = tp_malloc(sizeof(*ni) * (size_t)(a->nident + 1));
    if (a->nident)
        memcpy(ni, a->ident, sizeof(*ni) * (size_t)a->nident);
    free(a->ident);
    a->ident = ni;
    a->ident[a->nident++] = dupn(p, n);
}

/* A number token as parse.NumberNode reads it. */
static int number(tp_tmpl__ps_t *ps, const tp_tmpl__tk_t *t, tp_tmpl__arg_t *a)
{
    char txt[128];
    if (t->n >= sizeof(txt) || memchr(t->p, '_', t->n) || t->p[t->n - 1] == 'i' ||
        ((t->n > 2 && (t->p[1] == 'x' || t->p[1] == 'X')) && memchr(t->p, '.', t->n)) ||
        memchr(t->p, 'p', t->n) || memchr(t->p, 'P', t->n))
        return tp_tmpl__fail(ps, t->line, "the number syntax of %.*s is not supported", (int)t->n,
                             t->p);
    memcpy(txt, t->p, t->n);
    txt[t->n] = '\0';
    a->type = TA_NUM;
    a->s = dupn(t->p, t->n);
    const char *d = txt + (txt[0] == '+' || txt[0] == '-');
    int intlike = !strpbrk(txt, ".eE") || (d[0] == '0' && (d[1] == 'x' || d[1] == 'X'));
    if (intlike) {
        int base = 10;
        const char *digits = d;
        if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X'))
            base = 16, digits = d + 2;
        else if (d[0] == '0' && (d[1] == 'o' || d[1] == 'O'))
            base = 8, digits = d + 2;
        else if (d[0] == '0' && (d[1] == 'b' || d[1] == 'B'))
            base = 2, digits = d + 2;
        else if (d[0] == '0' && d[1])
            base = 8, digits = d + 1;
        char *end;
        errno = 0;
        unsigned long long u = strtoull(digits, &end, base);
        if (*digits == '\0' || *end != '\0' || *digits == '-' || *digits == '+')
            return tp_tmpl__fail(ps, t->line, "illegal number syntax: \"%s\"", txt);
        if (errno == ERANGE ||
            (txt[0] == '-' ? u > 9223372036854775808ull : u > 9223372036854775807ull))
            return tp_tmpl__fail(ps, t->line, "integer overflow: \"%s\"", txt);
        a->i = txt[0] == '-' ? (int64_t)(0 - u) : (int64_t)u;
        a->is_int = 1;
        a->f = (double)a->i;
        return 0;
    }
    char *end;
    a->f = strtod(txt, &end);
    if (*end != '\0')
        return tp_tmpl__fail(ps, t->line, "illegal number syntax: \"%s\"", txt);
    a->is_float = 1;
    if (a->f >= -9223372036854775808.0 && a->f < 9223372036854775808.0 &&
        (double)(int64_t)a->f == a->f)
        a->is_int = 1, a->i = (int64_t)a->f;
    return 0;
}

/* term: one operand without its field chain; 1 if found, 0 if none, -1 on error. */
static int term(tp_tmpl__ps_t *ps, tp_tmpl__arg_t *a)
{
    tp_tmpl__tk_t *t = next_nonspace(ps);
    memset(a, 0, sizeof(*a));
    a->line = t->line;
    switch (t->type) {
    case TK_IDENT:
        a->fn = tp_tmpl__find_fn(t->p, t->n);
        if (a->fn == NULL)
            return tp_tmpl__fail(ps, t->line, "the function \"%.*s\" is not supported", (int)t->n,
                                 t->p);
        a->type = TA_FUNC;
        return 1;
    case TK_DOT:
        a->type = TA_DOT;
        return 1;
    case TK_NIL:
        a->type = TA_NIL;
        return 1;
    case TK_VAR:
        if (!have_var(ps, t->p, t->n))
            return tp_tmpl__fail(ps, t->line, "undefined variable \"%.*s\"", (int)t->n, t->p);
        a->type = TA_VAR;
        add_ident(a, t->p, t->n);
        return 1;
    case TK_FIELD:
        a->type = TA_FIELD;
        add_ident(a, t->p + 1, t->n - 1);
        return 1;
    case TK_BOOL:
        a->type = TA_BOOL;
        a->b = t->p[0] == 't';
        return 1;
    case TK_NUMBER:
        return number(ps, t, a) < 0 ? -1 : 1;
    case TK_CHAR: {
        tp_buf_t b = {0};
        unsigned long r = 0;
        int rc = tp_tmpl__unquote(t->p, t->n, &b);
        if (rc == 0)
            tp_tmpl__rune((const unsigned char *)b.data, b.len, &r);
        if (rc == 0 && b.len == 1)
            r = (unsigned char)b.data[0];
        tp_buf_free(&b);
        if (rc < 0)
            return tp_tmpl__fail(ps, t->line, "malformed character constant: %.*s", (int)t->n,
                                 t->p);
        a->type = TA_NUM;
        a->is_int = 1; /* a rune constant is an int, never a float */
        a->i = (int64_t)r;
        a->f = (double)r;
        a->s = dupn(t->p, t->n);
        return 1;
    }
    case TK_LPAREN:
        if (++ps->depth > TP_TMPL_MAX_NEST)
            return tp_tmpl__fail(ps, t->line, "nesting deeper than %d", TP_TMPL_MAX_NEST);
        a->type = TA_PIPE;
        a->pipe = pipeline(ps, "parenthesized pipeline", TK_RPAREN);
        ps->depth--;
        return a->pipe ? 1 : -1;
    case TK_STRING:
    case TK_RAW: {
        tp_buf_t b = {0};
        if (t->type == TK_RAW) {
            for (size_t k = 1; k + 1 < t->n; k++)
                if (t->p[k] != '\r') /* Unquote drops carriage returns from raw strings */
                    tp_buf_putc(&b, t->p[k]);
        } else if (tp_tmpl__unquote(t->p, t->n, &b) < 0) {
            tp_buf_free(&b);
            return tp_tmpl__fail(ps, t->line, "invalid syntax in string %.*s", (int)t->n, t->p);
        }
        a->type = TA_STRING;
        a->n = b.len;
        a->s = tp_malloc(b.len + 1);
        if (b.len)
            memcpy(a->s, b.data, b.len);
        a->s[b.len] = '\0';
        tp_buf_free(&b);
        return 1;
    }
    default:
        ps->pos = (int)(t - ps->tk);
        return 0;
    }
}

static int operand(tp_tmpl__ps_t *ps, tp_tmpl__arg_t *a)
{
    int rc = term(ps, a);
    if (rc <= 0)
        return rc;
    if (peek(ps)->type != TK_FIELD)
        return 1;
    switch (a->type) {
    case TA_FIELD:
    case TA_VAR:
    case TA_PIPE:
        break;
    case TA_FUNC:
        return tp_tmpl__fail(ps, a->line,
                             "a field of a function's result needs parentheses here: (%s)%.*s",
                             a->fn->name, (int)peek(ps)->n, peek(ps)->p);
    default:
        return tp_tmpl__fail(ps, a->line, "unexpected . after term");
    }
    while (peek(ps)->type == TK_FIELD) {
        tp_tmpl__tk_t *f = next(ps);
        add_ident(a, f->p + 1, f->n - 1);
    }
    return 1;
}

static int command(tp_tmpl__ps_t *ps, tp_tmpl__cmd_t *cmd)
{
    int cap = 0;
    memset(cmd, 0, sizeof(*cmd));
    for (;;) {
        peek_nonspace(ps);
        tp_tmpl__arg_t a;
        int rc = operand(ps, &a);
        if (rc < 0) {
            arg_free(&a);
            return -1;
        }
        if (rc > 0) {
            if (cmd->nargs == cap) {
                cap = cap ? cap * 2 : 4;
                tp_tmpl__arg_t *na = tp_malloc(sizeof(*na) * (size_t)cap);
                if (cmd->nargs)
                    memcpy(na, cmd->args, sizeof(*na) * (size_t)cmd->nargs);
                free(cmd->args);
                cmd->args = na;
            }
            cmd->args[cmd->nargs++] = a;
        }
        tp_tmpl__tk_t *t = next(ps);
        if (t->type == TK_SPACE)
            continue;
        if (t->type == TK_RDELIM || t->type == TK_RPAREN)
            ps->pos--;
        else if (t->type != TK_PIPE)
            return unexpected(ps, t, "operand");
        break;
    }
    if (cmd->nargs == 0)
        return tp_tmpl__fail(ps, peek(ps)->line, "empty command");
    return 0;
}

/* Go's checkPipeline, plus what this engine refuses in a pipeline. */
static int check_pipe(tp_tmpl__ps_t *ps, tp_tmpl__pipe_t *p, const char *ctx)
{
    if (p->ncmds == 0)
        return tp_tmpl__fail(ps, p->line, "missing value for %s", ctx);
    for (int c = 0; c < p->ncmds; c++) {
        tp_tmpl__arg_t *a0 = &p->cmds[c].args[0];
        int t = a0->type;
        if (c > 0 && (t == TA_BOOL || t == TA_DOT || t == TA_NIL || t == TA_NUM || t == TA_STRING))
            return tp_tmpl__fail(ps, a0->line, "non executable command in pipeline stage %d",
                                 c + 1);
        int has_args = p->cmds[c].nargs > 1 || c > 0;
        if (has_args &&
            (t == TA_FIELD || (t == TA_VAR && a0->nident > 1) || (t == TA_PIPE && a0->nident > 0)))
            return tp_tmpl__fail(ps, a0->line, "method calls are not supported (.%s has arguments)",
                                 a0->ident[a0->nident - 1]);
        if (has_args && t != TA_FUNC)
            return tp_tmpl__fail(ps, a0->line, "can't give argument to non-function");
        /* a constant printf format is checked now, so an unsupported verb fails at load */
        if (t == TA_FUNC && strcmp(a0->fn->name, "printf") == 0 && p->cmds[c].nargs > 1 &&
            p->cmds[c].args[1].type == TA_STRING) {
            char why[200];
            if (tp_tmpl__check_format(p->cmds[c].args[1].s, p->cmds[c].args[1].n, why,
                                      sizeof(why)) < 0)
                return tp_tmpl__fail(ps, a0->line, "%s", why);
        }
    }
    return 0;
}

static tp_tmpl__pipe_t *pipeline(tp_tmpl__ps_t *ps, const char *ctx, int end)
{
    tp_tmpl__pipe_t *p = tp_calloc(1, sizeof(*p));
    int is_range = strcmp(ctx, "range") == 0;
    p->line = peek_nonspace(ps)->line;
decls:
    if (peek_nonspace(ps)->type == TK_VAR) {
        int save = ps->pos;
        tp_tmpl__tk_t *v = next_nonspace(ps);
        tp_tmpl__tk_t *nx = peek_nonspace(ps);
        if (nx->type == TK_ASSIGN || nx->type == TK_DECLARE) {
            p->is_assign = nx->type == TK_ASSIGN;
            next_nonspace(ps);
            p->decl[p->ndecl++] = dupn(v->p, v->n);
            push_var(ps, v->p, v->n);
            if (p->is_assign && is_range) {
                tp_tmpl__fail(ps, v->line, "range with = assignment is not supported");
                goto err;
            }
        } else if (nx->type == TK_COMMA) {
            next_nonspace(ps);
            p->decl[p->ndecl++] = dupn(v->p, v->n);
            push_var(ps, v->p, v->n);
            if (is_range && p->ndecl < 2) {
                int t = peek_nonspace(ps)->type;
                if (t == TK_VAR || t == TK_RDELIM || t == TK_RPAREN)
                    goto decls;
                tp_tmpl__fail(ps, v->line, "range can only initialize variables");
                goto err;
            }
            tp_tmpl__fail(ps, v->line, "too many declarations in %s", ctx);
            goto err;
        } else {
            ps->pos = save;
        }
    }
    for (;;) {
        tp_tmpl__tk_t *t = next_nonspace(ps);
        if (t->type == end) {
            if (check_pipe(ps, p, ctx) < 0)
                goto err;
            return p;
        }
        switch (t->type) {
        case TK_BOOL:
        case TK_CHAR:
        case TK_DOT:
        case TK_FIELD:
        case TK_IDENT:
        case TK_NUMBER:
        case TK_NIL:
        case TK_RAW:
        case TK_STRING:
        case TK_VAR:
        case TK_LPAREN: {
            ps->pos--;
            tp_tmpl__cmd_t *nc = tp_malloc(sizeof(*nc) * (size_t)(p->ncmds + 1));
            if (p->ncmds)
                memcpy(nc, p->cmds, sizeof(*nc) * (size_t)p->ncmds);
            free(p->cmds);
            p->cmds = nc;
            int rc = command(ps, &p->cmds[p->ncmds]);
            p->ncmds++;
            if (rc < 0)
                goto err;
            break;
        }
        default:
            unexpected(ps, t, ctx);
            goto err;
        }
    }
err:
    pipe_free(p);
    return NULL;
}

static void nodes_free(tp_tmpl__node_t *n)
{
    while (n) {
        tp_tmpl__node_t *nx = n->next;
        free(n->text);
        pipe_free(n->pipe);
        nodes_free(n->list);
        nodes_free(n->elselist);
        free(n);
        n = nx;
    }
}

enum { END_EOF, END_END, END_ELSE };

static int item_list(tp_tmpl__ps_t *ps, tp_tmpl__node_t **head, int *ended);

static int expect_rdelim(tp_tmpl__ps_t *ps, const char *ctx)
{
    tp_tmpl__tk_t *t = next_nonspace(ps);
    return t->type == TK_RDELIM ? 0 : unexpected(ps, t, ctx);
}

/* if / range / with: the pipeline, the list, the else list, the one {{end}}. */
static tp_tmpl__node_t *control(tp_tmpl__ps_t *ps, int type, const char *ctx, int line)
{
    int mark = ps->nvars;
    tp_tmpl__node_t *n = tp_calloc(1, sizeof(*n));
    n->type = type;
    n->line = line;
    if (++ps->depth > TP_TMPL_MAX_NEST) {
        tp_tmpl__fail(ps, line, "nesting deeper than %d", TP_TMPL_MAX_NEST);
        goto err;
    }
    n->pipe = pipeline(ps, ctx, TK_RDELIM);
    if (n->pipe == NULL)
        goto err;
    int ended;
    ps->range_depth += type == TN_RANGE;
    int rc = item_list(ps, &n->list, &ended);
    ps->range_depth -= type == TN_RANGE;
    if (rc < 0)
        goto err;
    if (ended == END_ELSE) {
        tp_tmpl__tk_t *t = peek_nonspace(ps);
        if ((type == TN_IF && t->type == TK_IF) || (type == TN_WITH && t->type == TK_WITH)) {
            /* "else if" / "else with": a nested block that shares this one's {{end}} */
            next_nonspace(ps);
            n->elselist = control(ps, type, ctx, t->line);
            if (n->elselist == NULL)
                goto err;
        } else {
            if (expect_rdelim(ps, "else") < 0 || item_list(ps, &n->elselist, &ended) < 0)
                goto err;
            if (ended != END_END) {
                tp_tmpl__fail(ps, line,
                              ended == END_ELSE ? "expected end; found {{else}}"
                                                : "unexpected EOF");
                goto err;
            }
        }
    } else if (ended != END_END) {
        tp_tmpl__fail(ps, peek(ps)->line, "unexpected EOF");
        goto err;
    }
    ps->depth--;
    pop_vars(ps, mark);
    return n;
err:
    pop_vars(ps, mark);
    nodes_free(n);
    return NULL;
}

/* Parses nodes up to {{end}}, {{else}} or the end of the text. */
static int item_list(tp_tmpl__ps_t *ps, tp_tmpl__node_t **head, int *ended)
{
    tp_tmpl__node_t **tail = head;
    for (;;) {
        tp_tmpl__tk_t *t = next(ps);
        tp_tmpl__node_t *n = NULL;
        if (t->type == TK_EOF) {
            *ended = END_EOF;
            return 0;
        }
        if (t->type == TK_TEXT) {
            n = tp_calloc(1, sizeof(*n));
            n->type = TN_TEXT;
            n->line = t->line;
            n->text = dupn(t->p, t->n);
            n->len = t->n;
        } else {
            /* t is TK_LDELIM */
            tp_tmpl__tk_t *k = next_nonspace(ps);
            switch (k->type) {
            case TK_END:
                *ended = END_END;
                return expect_rdelim(ps, "end");
            case TK_ELSE:
                *ended = END_ELSE;
                return 0;
            case TK_IF:
                n = control(ps, TN_IF, "if", k->line);
                break;
            case TK_RANGE:
                n = control(ps, TN_RANGE, "range", k->line);
                break;
            case TK_WITH:
                n = control(ps, TN_WITH, "with", k->line);
                break;
            case TK_BREAK:
            case TK_CONTINUE:
                if (ps->range_depth == 0)
                    return tp_tmpl__fail(ps, k->line, "{{%.*s}} outside {{range}}", (int)k->n,
                                         k->p);
                if (expect_rdelim(ps, k->type == TK_BREAK ? "{{break}}" : "{{continue}}") < 0)
                    return -1;
                n = tp_calloc(1, sizeof(*n));
                n->type = k->type == TK_BREAK ? TN_BREAK : TN_CONTINUE;
                n->line = k->line;
                break;
            case TK_TEMPLATE:
            case TK_DEFINE:
            case TK_BLOCK:
                return unexpected(ps, k, "action");
            default:
                ps->pos = (int)(k - ps->tk);
                n = tp_calloc(1, sizeof(*n));
                n->type = TN_ACTION;
                n->line = k->line;
                n->pipe = pipeline(ps, "command", TK_RDELIM);
                if (n->pipe == NULL) {
                    free(n);
                    n = NULL;
                }
            }
            if (n == NULL)
                return -1;
        }
        *tail = n;
        tail = &n->next;
    }
}

tp_tmpl_t *tp_tmpl_compile(const char *src, size_t len, char *why, size_t whylen)
{
    tp_tmpl__ps_t ps = {.src = src, .len = len, .why = why, .whylen = whylen};
    tp_tmpl_t *t = NULL;
    if (whylen)
        why[0] = '\0';
    push_var(&ps, "$", 1);
    if (tp_tmpl__lex(&ps) < 0)
        goto out;
    t = tp_calloc(1, sizeof(*t));
    int ended;
    if (item_list(&ps, &t->root, &ended) < 0 || ended != END_EOF) {
        if (!ps.failed)
            tp_tmpl__fail(&ps, ps.tk[ps.pos ? ps.pos - 1 : 0].line, "unexpected {{%s}}",
                          ended == END_END ? "end" : "else");
        tp_tmpl_free(t);
        t = NULL;
    }
out:
    pop_vars(&ps, 0);
    free(ps.vars);
    free(ps.tk);
    return t;
}

void tp_tmpl_free(tp_tmpl_t *t)
{
    if (t == NULL)
        return;
    nodes_free(t->root);
    free(t);
}
