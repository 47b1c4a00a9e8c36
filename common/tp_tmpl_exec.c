/* common/tp_tmpl_exec.c: runs a compiled tp_tmpl tree as Go's text/template exec.go walks
 * its parse tree: the same variable stack, the same unwrapping of interface values
 * between pipeline stages, the same argument checks, the same run-time errors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_tmpl_int.h"

enum { W_OK = 0, W_BREAK = 1, W_CONTINUE = 2 };

int tp_tmpl__err(tp_tmpl__st_t *st, const char *fmt, ...)
{
    if (st->why[0] != '\0')
        return -1; /* keep the first error: later ones are its consequences */
    int n = snprintf(st->why, st->whylen, "line %d: ", st->line);
    if (n >= 0 && (size_t)n < st->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->why + n, st->whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *tp_tmpl__alloc(tp_tmpl__st_t *st, size_t n)
{
    if (n > TP_TMPL_MAX_MEM || st->mem + n > TP_TMPL_MAX_MEM) {
        tp_tmpl__err(st, "the template used more than %u bytes of memory", TP_TMPL_MAX_MEM);
        return NULL;
    }
    st->mem += n;
    return tp_arena_alloc(&st->a, n ? n : 1);
}

int tp_tmpl__own(tp_tmpl__st_t *st, cJSON *j, size_t size)
{
    if (st->owned == NULL)
        st->owned = cJSON_CreateArray();
    cJSON_AddItemToArray(st->owned, j);
    if (st->mem + size > TP_TMPL_MAX_MEM)
        return tp_tmpl__err(st, "the template used more than %u bytes of memory", TP_TMPL_MAX_MEM);
    st->mem += size;
    return 0;
}

tp_tv_t tp_tv_str(const char *s, size_t n)
{
    return (tp_tv_t){.kind = TV_STRING, .tname = "string", .s = s, .n = n};
}

tp_tv_t tp_tv_int(int64_t i, const char *tname)
{
    return (tp_tv_t){.kind = TV_INT, .tname = tname, .i = i};
}

tp_tv_t tp_tv_bool(int b)
{
    return (tp_tv_t){.kind = TV_BOOL, .tname = "bool", .i = b != 0};
}

tp_tv_t tp_tv_json(const cJSON *j)
{
    tp_tv_t v = {.kind = TV_NIL, .iface = 1, .tname = "interface {}"};
    if (j == NULL || cJSON_IsNull(j))
        return v;
    if (cJSON_IsBool(j))
        v = tp_tv_bool(cJSON_IsTrue(j));
    else if (cJSON_IsNumber(j))
        v = (tp_tv_t){.kind = TV_FLOAT, .tname = "float64", .f = j->valuedouble};
    else if (cJSON_IsString(j))
        v = tp_tv_str(j->valuestring, strlen(j->valuestring));
    else if (cJSON_IsArray(j))
        v = (tp_tv_t){.kind = TV_ARRAY, .tname = "[]interface {}", .j = j};
    else if (cJSON_IsObject(j))
        v = (tp_tv_t){.kind = TV_OBJECT, .tname = "map[string]interface {}", .j = j};
    v.iface = 1;
    return v;
}

/* An element of the container <c>: []string and map[string]string hold strings,
 * the JSON containers interface values. */
static tp_tv_t elem(const tp_tv_t *c, const cJSON *j)
{
    tp_tv_t v = tp_tv_json(j);
    if (strcmp(c->tname, "[]string") == 0 || strcmp(c->tname, "map[string]string") == 0)
        v.iface = 0;
    return v;
}

int tp_tv_truth(const tp_tv_t *v)
{
    switch (v->kind) {
    case TV_BOOL:
    case TV_INT:
        return v->i != 0;
    case TV_FLOAT:
        return v->f != 0;
    case TV_STRING:
        return v->n > 0;
    case TV_ARRAY:
    case TV_OBJECT:
        return v->j->child != NULL;
    default:
        return 0;
    }
}

const cJSON *tp_tmpl__lookup(const cJSON *obj, const char *key, size_t n)
{
    const cJSON *found = NULL;
    for (const cJSON *m = obj->child; m; m = m->next)
        if (m->string && strlen(m->string) == n && memcmp(m->string, key, n) == 0)
            found = m;
    return found;
}

typedef struct {
    const cJSON *m;
    size_t pos;
} member_t;

static int member_cmp(const void *a, const void *b)
{
    const member_t *x = a, *y = b;
    int c = strcmp(x->m->string, y->m->string);
    if (c)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos; /* duplicates keep document order */
}

int tp_tmpl__sorted(tp_tmpl__st_t *st, const cJSON *obj, const cJSON ***out)
{
    size_t n = 0;
    for (const cJSON *m = obj->child; m; m = m->next)
        n++;
    member_t *t = (member_t *)tp_tmpl__alloc(st, sizeof(*t) * (n ? n : 1));
    const cJSON **v = (const cJSON **)tp_tmpl__alloc(st, sizeof(*v) * (n ? n : 1));
    if (t == NULL || v == NULL)
        return -1;
    n = 0;
    for (const cJSON *m = obj->child; m; m = m->next)
        if (m->string) {
            t[n].m = m;
            t[n].pos = n;
            n++;
        }
    qsort(t, n, sizeof(*t), member_cmp);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && strcmp(v[w - 1]->string, t[i].m->string) == 0)
            v[w - 1] = t[i].m; /* the last of a duplicated key wins, as in a Go map */
        else
            v[w++] = t[i].m;
    }
    *out = v;
    return (int)w;
}

/* ---- the variable stack ---- */

static void push(tp_tmpl__st_t *st, const char *name, const tp_tv_t *v)
{
    if (st->nvars == st->capvars) {
        st->capvars = st->capvars ? st->capvars * 2 : 16;
        tp_tmpl__var_t *nv = tp_malloc(sizeof(*nv) * (size_t)st->capvars);
        if (st->nvars)
            memcpy(nv, st->vars, sizeof(*nv) * (size_t)st->nvars);
        free(st->vars);
        st->vars = nv;
    }
    st->vars[st->nvars++] = (tp_tmpl__var_t){name, *v};
}

static tp_tmpl__var_t *find_var(tp_tmpl__st_t *st, const char *name)
{
    for (int i = st->nvars - 1; i >= 0; i--)
        if (strcmp(st->vars[i].name, name) == 0)
            return &st->vars[i];
    tp_tmpl__err(st, "undefined variable: %s", name);
    return NULL;
}

/* ---- evaluation ---- */

static int step(tp_tmpl__st_t *st)
{
    if (++st->steps > TP_TMPL_MAX_STEPS)
        return tp_tmpl__err(st, "the template ran more than %u steps", TP_TMPL_MAX_STEPS);
    return 0;
}

static int eval_pipe(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__pipe_t *p, int push_decl,
                     tp_tv_t *res);
static int eval_fn(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__fn_t *fn,
                   const tp_tmpl__arg_t *args, int nargs, const tp_tv_t *final, tp_tv_t *res);

/* evalField on a map: a missing key is no value; anything else has no fields. */
static int field(tp_tmpl__st_t *st, const tp_tv_t *recv, const char *name, tp_tv_t *res)
{
    if (recv->kind == TV_INVALID) {
        *res = (tp_tv_t){.kind = TV_INVALID};
        return 0;
    }
    if (recv->kind == TV_NIL)
        return tp_tmpl__err(st, "nil pointer evaluating %s.%s", recv->tname, name);
    if (recv->kind != TV_OBJECT)
        return tp_tmpl__err(st, "can't evaluate field %s in type %s", name,
                            recv->iface ? "interface {}" : recv->tname);
    const cJSON *m = tp_tmpl__lookup(recv->j, name, strlen(name));
    *res = m ? elem(recv, m) : (tp_tv_t){.kind = TV_INVALID};
    return 0;
}

static int chain(tp_tmpl__st_t *st, tp_tv_t v, char *const *ident, int n, tp_tv_t *res)
{
    for (int i = 0; i < n; i++)
        if (field(st, &v, ident[i], &v) < 0)
            return -1;
    *res = v;
    return 0;
}

/* The Go type a literal would print as in "expected string; found X". */
static void node_text(const tp_tmpl__arg_t *a, char *buf, size_t n)
{
    switch (a->type) {
    case TA_BOOL:
        snprintf(buf, n, "%s", a->b ? "true" : "false");
        break;
    case TA_NUM:
        snprintf(buf, n, "%s", a->s);
        break;
    case TA_STRING:
        snprintf(buf, n, "\"%.*s\"", (int)(a->n > 40 ? 40 : a->n), a->s);
        break;
    case TA_NIL:
        snprintf(buf, n, "nil");
        break;
    default:
        snprintf(buf, n, ".");
    }
}

static tp_tv_t ideal(const tp_tmpl__arg_t *a)
{
    if (a->is_float && (strpbrk(a->s, ".eE") && !(a->s[0] == '0' && (a->s[1] | 0x20) == 'x')))
        return (tp_tv_t){.kind = TV_FLOAT, .tname = "float64", .f = a->f};
    return tp_tv_int(a->i, "int");
}

/* validateType: <v> as an argument of a parameter of type <pt>. */
static int validate(tp_tmpl__st_t *st, tp_tv_t *v, int pt)
{
    static const char *names[] = {"interface {}", "reflect.Value", "string", "int", "bool"};
    static const int kinds[] = {0, 0, TV_STRING, TV_INT, TV_BOOL};
    if (pt == TP_VAL)
        return 0;
    if (pt == TP_ANY) {
        if (v->kind == TV_INVALID)
            *v = (tp_tv_t){.kind = TV_NIL, .tname = "interface {}"};
        v->iface = 0;
        return 0;
    }
    if (v->kind == TV_INVALID)
        return tp_tmpl__err(st, "invalid value; expected %s", names[pt]);
    if (v->kind == TV_NIL)
        return tp_tmpl__err(st, "wrong type for value; expected %s; got interface {}", names[pt]);
    if (v->kind != kinds[pt] || strcmp(v->tname, names[pt]) != 0)
        return tp_tmpl__err(st, "wrong type for value; expected %s; got %s", names[pt], v->tname);
    v->iface = 0;
    return 0;
}

static int eval_arg(tp_tmpl__st_t *st, const tp_tv_t *dot, int pt, const tp_tmpl__arg_t *a,
                    tp_tv_t *res)
{
    char txt[64];
    st->line = a->line;
    switch (a->type) {
    case TA_DOT:
        *res = *dot;
        return validate(st, res, pt);
    case TA_NIL:
        if (pt == TP_ANY) {
            *res = (tp_tv_t){.kind = TV_NIL, .tname = "interface {}"};
            return 0;
        }
        if (pt == TP_VAL) {
            *res = (tp_tv_t){.kind = TV_INVALID};
            return 0;
        }
        return tp_tmpl__err(st, "cannot assign nil to %s",
                            pt == TP_STR   ? "string"
                            : pt == TP_INT ? "int"
                                           : "bool");
    case TA_FIELD:
        if (chain(st, *dot, a->ident, a->nident, res) < 0)
            return -1;
        return validate(st, res, pt);
    case TA_VAR: {
        tp_tmpl__var_t *var = find_var(st, a->ident[0]);
        if (var == NULL || chain(st, var->v, a->ident + 1, a->nident - 1, res) < 0)
            return -1;
        return validate(st, res, pt);
    }
    case TA_PIPE:
        if (eval_pipe(st, dot, a->pipe, 0, res) < 0 ||
            chain(st, *res, a->ident, a->nident, res) < 0)
            return -1;
        return validate(st, res, pt);
    case TA_FUNC:
        if (eval_fn(st, dot, a->fn, NULL, 0, NULL, res) < 0)
            return -1;
        return validate(st, res, pt);
    }
    node_text(a, txt, sizeof(txt));
    switch (pt) {
    case TP_BOOL:
        if (a->type != TA_BOOL)
            return tp_tmpl__err(st, "expected bool; found %s", txt);
        *res = tp_tv_bool(a->b);
        return 0;
    case TP_INT:
        if (a->type != TA_NUM || !a->is_int)
            return tp_tmpl__err(st, "expected integer; found %s", txt);
        *res = tp_tv_int(a->i, "int");
        return 0;
    case TP_STR:
        if (a->type != TA_STRING)
            return tp_tmpl__err(st, "expected string; found %s", txt);
        *res = tp_tv_str(a->s, a->n);
        return 0;
    default:
        if (a->type == TA_BOOL)
            *res = tp_tv_bool(a->b);
        else if (a->type == TA_NUM)
            *res = ideal(a);
        else
            *res = tp_tv_str(a->s, a->n);
        return 0;
    }
}

/* evalCall: checks the count, evaluates the arguments against the parameters'
 * types, runs the function; and/or evaluate only as far as they need. */
static int eval_fn(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__fn_t *fn,
                   const tp_tmpl__arg_t *args, int nargs, const tp_tv_t *final, tp_tv_t *res)
{
    int line = st->line;
    int numin = nargs + (final != NULL);
    int nfixed = fn->variadic ? fn->nparams - 1 : fn->nparams;
    if (fn->variadic && numin < nfixed)
        return tp_tmpl__err(st, "wrong number of args for %s: want at least %d got %d", fn->name,
                            nfixed, nargs);
    if (!fn->variadic && numin != fn->nparams)
        return tp_tmpl__err(st, "wrong number of args for %s: want %d got %d", fn->name,
                            fn->nparams, numin);
    if (step(st) < 0)
        return -1;
    if (fn->special) {
        int want = strcmp(fn->name, "or") == 0;
        tp_tv_t v = {.kind = TV_INVALID};
        for (int i = 0; i < nargs; i++) {
            if (eval_arg(st, dot, TP_VAL, &args[i], &v) < 0)
                return -1;
            if (tp_tv_truth(&v) == want) {
                *res = v;
                return 0;
            }
        }
        if (final)
            v = *final;
        *res = v;
        return 0;
    }
    tp_tv_t argv[64];
    if (numin > (int)(sizeof(argv) / sizeof(argv[0])))
        return tp_tmpl__err(st, "too many arguments for %s", fn->name);
    for (int i = 0; i < nargs; i++) {
        int pt = fn->ptype[i < nfixed ? i : fn->nparams - 1];
        if (eval_arg(st, dot, pt, &args[i], &argv[i]) < 0)
            return -1;
    }
    st->line = line;
    if (final) {
        int pt = fn->ptype[numin - 1 < nfixed ? numin - 1 : fn->nparams - 1];
        argv[nargs] = *final;
        if (validate(st, &argv[nargs], pt) < 0)
            return -1;
    }
    *res = (tp_tv_t){.kind = TV_INVALID};
    if (fn->fn(st, argv, numin, res) < 0) {
        if (st->why[0] == '\0')
            tp_tmpl__err(st, "error calling %s", fn->name);
        return -1;
    }
    return 0;
}

static int eval_cmd(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__cmd_t *c,
                    const tp_tv_t *final, tp_tv_t *res)
{
    const tp_tmpl__arg_t *a = &c->args[0];
    st->line = a->line;
    if (step(st) < 0)
        return -1;
    switch (a->type) {
    case TA_FIELD:
        return chain(st, *dot, a->ident, a->nident, res);
    case TA_VAR: {
        tp_tmpl__var_t *var = find_var(st, a->ident[0]);
        return var == NULL ? -1 : chain(st, var->v, a->ident + 1, a->nident - 1, res);
    }
    case TA_PIPE:
        if (eval_pipe(st, dot, a->pipe, 0, res) < 0)
            return -1;
        return chain(st, *res, a->ident, a->nident, res);
    case TA_FUNC:
        return eval_fn(st, dot, a->fn, c->args + 1, c->nargs - 1, final, res);
    case TA_BOOL:
        *res = tp_tv_bool(a->b);
        return 0;
    case TA_DOT:
        *res = *dot;
        return 0;
    case TA_NIL:
        return tp_tmpl__err(st, "nil is not a command");
    case TA_NUM:
        *res = ideal(a);
        return 0;
    default:
        *res = tp_tv_str(a->s, a->n);
        return 0;
    }
}

/* evalPipeline: each stage's value is the next one's last argument; an interface
 * value is unwrapped between stages (a nil one becomes no value). With <push_decl>
 * the declared variables are pushed (or, for "=", assigned). */
static int eval_pipe(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__pipe_t *p, int push_decl,
                     tp_tv_t *res)
{
    tp_tv_t v = {.kind = TV_INVALID};
    for (int i = 0; i < p->ncmds; i++) {
        tp_tv_t prev = v;
        if (eval_cmd(st, dot, &p->cmds[i], i ? &prev : NULL, &v) < 0)
            return -1;
        if (v.iface) {
            if (v.kind == TV_NIL)
                v = (tp_tv_t){.kind = TV_INVALID};
            v.iface = 0;
        }
    }
    for (int i = 0; i < p->ndecl && push_decl; i++) {
        if (p->is_assign) {
            tp_tmpl__var_t *var = find_var(st, p->decl[i]);
            if (var == NULL)
                return -1;
            var->v = v;
        } else {
            push(st, p->decl[i], &v);
        }
    }
    *res = v;
    return 0;
}

static int out_check(tp_tmpl__st_t *st)
{
    if (st->out->len - st->out_start > TP_TMPL_MAX_OUTPUT)
        return tp_tmpl__err(st, "the output is larger than %u bytes", TP_TMPL_MAX_OUTPUT);
    return 0;
}

static int walk_list(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__node_t *n);

static int range_one(tp_tmpl__st_t *st, const tp_tmpl__node_t *n, int mark, const tp_tv_t *key,
                     const tp_tv_t *val)
{
    if (n->pipe->ndecl > 0)
        st->vars[st->nvars - 1].v = *val;
    if (n->pipe->ndecl > 1)
        st->vars[st->nvars - 2].v = *key;
    int rc = walk_list(st, val, n->list);
    st->nvars = mark;
    return rc;
}

static int walk_range(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__node_t *n)
{
    tp_tv_t v;
    if (eval_pipe(st, dot, n->pipe, 1, &v) < 0)
        return -1;
    int mark = st->nvars, rc = 0, any = 0;
    if (v.kind == TV_ARRAY) {
        int i = 0;
        for (const cJSON *e = v.j->child; e && rc >= 0 && rc != W_BREAK; e = e->next, i++) {
            tp_tv_t k = tp_tv_int(i, "int"), ev = elem(&v, e);
            any = 1;
            rc = range_one(st, n, mark, &k, &ev);
        }
    } else if (v.kind == TV_OBJECT) {
        const cJSON **m;
        int cnt = tp_tmpl__sorted(st, v.j, &m);
        if (cnt < 0)
            return -1;
        for (int i = 0; i < cnt && rc >= 0 && rc != W_BREAK; i++) {
            tp_tv_t k = tp_tv_str(m[i]->string, strlen(m[i]->string)), ev = elem(&v, m[i]);
            any = 1;
            rc = range_one(st, n, mark, &k, &ev);
        }
    } else if (v.kind == TV_INT) {
        if (n->pipe->ndecl > 1)
            return tp_tmpl__err(st, "can't use %lld to iterate over more than one variable",
                                (long long)v.i);
        for (int64_t i = 0; i < v.i && rc >= 0 && rc != W_BREAK; i++) {
            tp_tv_t k = tp_tv_int(i, v.tname);
            any = 1;
            rc = range_one(st, n, mark, &k, &k);
        }
    } else if (v.kind != TV_INVALID) {
        tp_buf_t b = {0};
        tp_tmpl__print_v(st, &b, &v);
        st->line = n->line;
        tp_tmpl__err(st, "range can't iterate over %.*s", (int)(b.len > 60 ? 60 : b.len),
                     b.data ? b.data : "");
        tp_buf_free(&b);
        return -1;
    }
    if (rc < 0)
        return -1;
    if (!any && n->elselist)
        return walk_list(st, dot, n->elselist);
    return 0;
}

static int walk(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__node_t *n)
{
    st->line = n->line;
    if (step(st) < 0)
        return -1;
    switch (n->type) {
    case TN_TEXT:
        tp_buf_append(st->out, n->text, n->len);
        return out_check(st);
    case TN_ACTION: {
        tp_tv_t v;
        if (eval_pipe(st, dot, n->pipe, 1, &v) < 0)
            return -1;
        if (n->pipe->ndecl > 0)
            return 0;
        if (v.kind == TV_INVALID)
            tp_buf_puts(st->out, "<no value>");
        else if (tp_tmpl__print_v(st, st->out, &v) < 0)
            return -1;
        return out_check(st);
    }
    case TN_IF:
    case TN_WITH: {
        int mark = st->nvars, rc = 0;
        tp_tv_t v;
        if (eval_pipe(st, dot, n->pipe, 1, &v) < 0)
            return -1;
        if (tp_tv_truth(&v))
            rc = walk_list(st, n->type == TN_WITH ? &v : dot, n->list);
        else if (n->elselist)
            rc = walk_list(st, dot, n->elselist);
        st->nvars = mark;
        return rc;
    }
    case TN_RANGE: {
        int mark = st->nvars;
        int rc = walk_range(st, dot, n);
        st->nvars = mark;
        return rc;
    }
    case TN_BREAK:
        return W_BREAK;
    default:
        return W_CONTINUE;
    }
}

static int walk_list(tp_tmpl__st_t *st, const tp_tv_t *dot, const tp_tmpl__node_t *n)
{
    for (; n; n = n->next) {
        int rc = walk(st, dot, n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int tp_tmpl_exec(const tp_tmpl_t *t, const cJSON *data, tp_buf_t *out, char *why, size_t whylen)
{
    char dummy[1];
    tp_tmpl__st_t st = {.out = out,
                        .out_start = out->len,
                        .why = whylen ? why : dummy,
                        .whylen = whylen ? whylen : sizeof(dummy)};
    st.why[0] = '\0';
    tp_tv_t root = tp_tv_json(data);
    root.iface = 0;
    if (data == NULL)
        root = (tp_tv_t){.kind = TV_INVALID};
    push(&st, "$", &root);
    int rc = walk_list(&st, &root, t->root) < 0 ? -1 : 0;
    if (rc < 0 && st.why[0] == '\0')
        tp_tmpl__err(&st, "the template failed");
    free(st.vars);
    tp_arena_free(&st.a);
    cJSON_Delete(st.owned);
    return rc;
}
