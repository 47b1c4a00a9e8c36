/*
 * common/tp_tmpl_int.h: the inside of the tp_tmpl module, shared by its
 * files only: tp_tmpl.c (lexer, parser), tp_tmpl_exec.c (the walk),
 * tp_tmpl_fmt.c (Go's fmt and encoding/json printing) and tp_tmpl_func.c
 * (the builtin, Tyk and Sprig functions). Nothing outside includes it.
 *
 * A compiled template is a tree of nodes owned by the tp_tmpl_t and never
 * changed after compile. A run owns a tp_tmpl__st_t: the variable stack,
 * the limits' counters and every temporary value, freed together when the
 * run ends, so values are plain structs that borrow freely.
 */
#ifndef TP_TMPL_INT_H
#define TP_TMPL_INT_H

#include <stdint.h>

#include "tp_arena.h"
#include "tp_tmpl.h"

/* ---- values: what a Go reflect.Value can be in these templates ---- */

enum {
    TV_INVALID, /* no value: a missing key, an unwrapped nil */
    TV_NIL,     /* a nil interface{} (a JSON null in its map or slice) */
    TV_BOOL,
    TV_INT, /* Go int, int64 or uint8 (tname) */
    TV_FLOAT,
    TV_STRING,
    TV_ARRAY,  /* a JSON array ([]interface {}) or []string */
    TV_OBJECT, /* a JSON object (map[string]interface {}) or map[string]string */
};

typedef struct tp_tv_s {
    int kind;
    int iface;         /* read out of an interface{} slot: Go reports its type as such */
    const char *tname; /* the Go type for messages and type checks */
    int64_t i;         /* TV_INT, TV_BOOL */
    double f;          /* TV_FLOAT */
    const char *s;     /* TV_STRING: not NUL-terminated */
    size_t n;
    const cJSON *j; /* TV_ARRAY, TV_OBJECT */
} tp_tv_t;

/* ---- the tree ---- */

enum {
    TA_DOT,
    TA_NIL,
    TA_BOOL,
    TA_NUM,
    TA_STRING,
    TA_FIELD, /* .a.b */
    TA_VAR,   /* $x.a.b */
    TA_FUNC,  /* an identifier: a function */
    TA_PIPE,  /* (pipeline).a.b */
};

typedef struct tp_tmpl__pipe_s tp_tmpl__pipe_t;
typedef struct tp_tmpl__fn_s tp_tmpl__fn_t;

typedef struct tp_tmpl__arg_s {
    int type;
    int line;
    char **ident; /* TA_FIELD, TA_VAR ([0] is the variable), TA_PIPE: the fields */
    int nident;
    int is_int, is_float; /* TA_NUM: which Go would take it as */
    int64_t i;
    double f;
    int b;
    char *s; /* TA_STRING, TA_NUM (its text) */
    size_t n;
    const tp_tmpl__fn_t *fn; /* TA_FUNC */
    tp_tmpl__pipe_t *pipe;   /* TA_PIPE */
} tp_tmpl__arg_t;

typedef struct tp_tmpl__cmd_s {
    tp_tmpl__arg_t *args;
    int nargs;
} tp_tmpl__cmd_t;

struct tp_tmpl__pipe_s {
    int line;
    int is_assign; /* $x = ... rather than $x := ... */
    char *decl[2];
    int ndecl;
    tp_tmpl__cmd_t *cmds;
    int ncmds;
};

enum { TN_TEXT, TN_ACTION, TN_IF, TN_RANGE, TN_WITH, TN_BREAK, TN_CONTINUE };

typedef struct tp_tmpl__node_s tp_tmpl__node_t;
struct tp_tmpl__node_s {
    int type;
    int line;
    tp_tmpl__node_t *next;
    char *text; /* TN_TEXT */
    size_t len;
    tp_tmpl__pipe_t *pipe;
    tp_tmpl__node_t *list, *elselist;
};

struct tp_tmpl_s {
    tp_tmpl__node_t *root;
};

/* ---- compiling (tp_tmpl_lex.c, tp_tmpl.c) ---- */

enum {
    TK_EOF,
    TK_TEXT,
    TK_LDELIM,
    TK_RDELIM,
    TK_SPACE,
    TK_IDENT,
    TK_BOOL,
    TK_NIL,
    TK_FIELD,
    TK_DOT,
    TK_VAR,
    TK_STRING,
    TK_RAW,
    TK_CHAR,
    TK_NUMBER,
    TK_LPAREN,
    TK_RPAREN,
    TK_PIPE,
    TK_DECLARE,
    TK_ASSIGN,
    TK_COMMA,
    TK_OTHER, /* another printable ASCII character: the parser rejects it */
    /* keywords */
    TK_IF,
    TK_ELSE,
    TK_END,
    TK_RANGE,
    TK_WITH,
    TK_BREAK,
    TK_CONTINUE,
    TK_TEMPLATE,
    TK_DEFINE,
    TK_BLOCK,
};

typedef struct {
    int type;
    int line;
    const char *p; /* the token's text in the source */
    size_t n;
} tp_tmpl__tk_t;

typedef struct {
    const char *src;
    size_t len;
    tp_tmpl__tk_t *tk;
    int ntk, cap;
    int pos; /* the parser's next token */
    char **vars;
    int nvars, capvars;
    int depth;
    int range_depth;
    char *why;
    size_t whylen;
    int failed;
} tp_tmpl__ps_t;

/* Records the compile error "line N: ..." (the first one only) and returns -1. */
int tp_tmpl__fail(tp_tmpl__ps_t *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Splits the source into tokens (ps->tk), trimming text at "{{- " and " -}}". */
int tp_tmpl__lex(tp_tmpl__ps_t *ps);
/* strconv.Unquote of a "..." or '...' token, appended to <b>; 0 or -1. */
int tp_tmpl__unquote(const char *p, size_t n, tp_buf_t *b);

/* ---- a run ---- */

typedef struct tp_tmpl__var_s {
    const char *name;
    tp_tv_t v;
} tp_tmpl__var_t;

typedef struct tp_tmpl__st_s {
    tp_buf_t *out;
    size_t out_start;
    tp_tmpl__var_t *vars;
    int nvars, capvars;
    unsigned long steps;
    size_t mem;   /* bytes of temporaries */
    tp_arena_t a; /* temporary strings */
    cJSON *owned; /* temporary arrays and objects, deleted at the end */
    int line;     /* of the node being run, for errors */
    char *why;
    size_t whylen;
} tp_tmpl__st_t;

/* Records a run-time error "line N: ..." and returns -1. */
int tp_tmpl__err(tp_tmpl__st_t *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* <n> bytes of temporary memory for this run, or NULL (and the error set)
 * past TP_TMPL_MAX_MEM. */
char *tp_tmpl__alloc(tp_tmpl__st_t *st, size_t n);
/* Adopts a temporary cJSON tree; it is deleted when the run ends. */
int tp_tmpl__own(tp_tmpl__st_t *st, cJSON *j, size_t size);

tp_tv_t tp_tv_str(const char *s, size_t n);
tp_tv_t tp_tv_int(int64_t i, const char *tname);
tp_tv_t tp_tv_bool(int b);
/* A cJSON value as Go holds it after encoding/json: null is a nil interface. */
tp_tv_t tp_tv_json(const cJSON *j);
/* Go's truth: false, 0, "", nil and empty containers are false. */
int tp_tv_truth(const tp_tv_t *v);
/* Members of a JSON object as a Go map holds them: sorted by key, a
 * duplicated key once with its last value. Returns the count; <*out> is
 * temporary memory of the run. -1 on the memory limit. */
int tp_tmpl__sorted(tp_tmpl__st_t *st, const cJSON *obj, const cJSON ***out);
/* The member of <obj> a Go map lookup finds (the last of that exact key). */
const cJSON *tp_tmpl__lookup(const cJSON *obj, const char *key, size_t n);

/* ---- printing (tp_tmpl_fmt.c) ---- */

/* Appends <v> as fmt.Sprint prints it (%v). */
int tp_tmpl__print_v(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v);
/* fmt.Sprintf(format, args...). */
int tp_tmpl__sprintf(tp_tmpl__st_t *st, tp_buf_t *b, const char *f, size_t fn, const tp_tv_t *args,
                     int nargs);
/* Checks a constant printf format for verbs and flags the engine prints
 * as Go does; 0, or -1 with <why>. */
int tp_tmpl__check_format(const char *f, size_t n, char *why, size_t whylen);
/* encoding/json's Marshal (html: escape <, >, & as Go does by default;
 * indent: MarshalIndent(v, "", "  ")). */
int tp_tmpl__json(tp_tmpl__st_t *st, tp_buf_t *b, const tp_tv_t *v, int html, int indent,
                  int depth);
/* strconv.Quote. */
int tp_tmpl__is_print(unsigned long r);
/* The valid UTF-8 rune at <s> (<n> bytes): its length, 0 if not UTF-8. */
size_t tp_tmpl__rune(const unsigned char *s, size_t n, unsigned long *r);
void tp_tmpl__quote(tp_buf_t *b, const char *s, size_t n);
/* Go's float64 printing: strconv.FormatFloat(f, fmt, prec, 64). */
void tp_tmpl__float(tp_buf_t *b, double f, char fmt, int prec);

/* ---- functions (tp_tmpl_func.c) ---- */

enum { TP_ANY, TP_VAL, TP_STR, TP_INT, TP_BOOL };

typedef int (*tp_tmpl__fn_cb)(tp_tmpl__st_t *st, tp_tv_t *args, int nargs, tp_tv_t *res);

struct tp_tmpl__fn_s {
    const char *name;
    tp_tmpl__fn_cb fn;
    int nparams;  /* the fixed ones, plus the variadic one if any */
    int variadic; /* the last parameter is ...T */
    int ptype[3];
    int special; /* and/or (short-circuit) */
};

/* The function <name> (<n> bytes), NULL if this engine has none of that name. */
const tp_tmpl__fn_t *tp_tmpl__find_fn(const char *name, size_t n);
extern const tp_tmpl__fn_t tp_tmpl__sprig_fns[];
extern const size_t tp_tmpl__sprig_nfns;
/* A string result copied from <b> into the run's memory; frees <b>. */
int tp_tmpl__ret_buf(tp_tmpl__st_t *st, tp_buf_t *b, tp_tv_t *res);
/* The JSON functions: jsonMarshal and toJson (html), toRawJson, toPrettyJson. */
int tp_tmpl__f_json(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res);
int tp_tmpl__f_rawjson(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res);
int tp_tmpl__f_prettyjson(tp_tmpl__st_t *st, tp_tv_t *a, int n, tp_tv_t *res);

#endif
