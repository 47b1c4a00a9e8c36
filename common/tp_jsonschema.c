/*
 * common/tp_jsonschema.c: compiling a JSON Schema into validation nodes.
 *
 * Keywords are read as gojsonschema's parseSchema reads them (the last of
 * duplicate members wins, as in the Go map it decodes into), so a schema
 * Tyk refuses is refused here too, with a reason naming the keyword's path.
 * A "$ref" is resolved against this schema's own tree and compiled once per
 * target: nodes are memoized by their place in the tree, which is also what
 * lets a recursive schema ("items": {"$ref": "#"}) compile.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_jsonschema_int.h"

typedef tp_jschema__node_t node_t;

enum { DRAFT4 = 4, DRAFT6 = 6, DRAFT7 = 7, HYBRID = 1000 };

typedef struct comp_s {
    tp_jschema_t *s;
    int draft;
    int depth;
    int nrefs; /* until a $ref compiles a target early, every node is new */
    char *why;
    size_t whylen;
} comp_t;

static const char *type_names[] = {"array", "boolean", "integer", "number",
                                   "null",  "object",  "string"};

/* Writes "<path>.<keyword>: <reason>" (either part may be absent). */
static node_t *fail(comp_t *c, const char *path, const char *kw, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static node_t *fail(comp_t *c, const char *path, const char *kw, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *sep = *path != '\0' && kw != NULL ? "." : "";
    if (*path == '\0' && kw == NULL)
        path = "(root)";
    snprintf(c->why, c->whylen, "%s%s%s: %s", path, sep, kw ? kw : "", msg);
    return NULL;
}

/* The member Go's map would hold: the last one named <key>. */
static const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *found = NULL;
    for (const cJSON *m = obj->child; m != NULL; m = m->next)
        if (strcmp(m->string, key) == 0)
            found = m;
    return found;
}

/* A child path; the caller frees it. */
static char *path_join(const char *path, const char *kw, const char *key)
{
    tp_buf_t b = {0};
    tp_buf_puts(&b, path);
    if (kw != NULL) {
        if (b.len)
            tp_buf_putc(&b, '.');
        tp_buf_puts(&b, kw);
    }
    if (key != NULL) {
        if (b.len)
            tp_buf_putc(&b, '.');
        tp_buf_puts(&b, key);
    }
    tp_buf_cstr(&b);
    return b.data;
}

static node_t *compile_node(comp_t *c, const cJSON *src, const char *path);

/* Compiles the schema at <kw>[.<key>] under <path>. */
static node_t *compile_child(comp_t *c, const cJSON *src, const char *path, const char *kw,
                             const char *key)
{
    char *p = path_join(path, kw, key);
    node_t *n = compile_node(c, src, p);
    free(p);
    return n;
}

static int compile_list(comp_t *c, tp_jschema__list_t *l, const cJSON *v, const char *path,
                        const char *kw)
{
    if (!cJSON_IsArray(v)) {
        fail(c, path, kw, "expected an array of schemas");
        return -1;
    }
    int n = cJSON_GetArraySize(v), i = 0;
    l->v = tp_calloc((unsigned long)n + 1, sizeof(*l->v));
    for (const cJSON *e = v->child; e != NULL; e = e->next, i++) {
        char key[24];
        snprintf(key, sizeof(key), "%d", i);
        if ((l->v[i] = compile_child(c, e, path, kw, key)) == NULL)
            return -1;
        l->n++;
    }
    return 0;
}

/* A keyword Go reads with mustBeInteger. Tyk hands gojsonschema the schema
 * as a decoded map, so literals have been through float64 ("5.0" is 5). */
static int get_count(comp_t *c, const cJSON *m, const char *path, long *out)
{
    if (!cJSON_IsNumber(m) || floor(m->valuedouble) != m->valuedouble ||
        fabs(m->valuedouble) > 2147483647.0) {
        fail(c, path, m->string, "expected an integer");
        return -1;
    }
    if (m->valuedouble < 0) {
        fail(c, path, m->string, "must be greater than or equal to 0");
        return -1;
    }
    *out = (long)m->valuedouble;
    return 0;
}

static int get_number(comp_t *c, const cJSON *m, const char *path, double *out)
{
    if (!cJSON_IsNumber(m)) {
        fail(c, path, m->string, "expected a number");
        return -1;
    }
    *out = m->valuedouble;
    return 0;
}

static int pct_val(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Resolves a local "$ref" in this schema's tree; sets <tpath> (caller frees)
 * to the target's path. */
static const cJSON *resolve(comp_t *c, const char *ref, const char *path, char **tpath)
{
    if (ref[0] != '#') {
        fail(c, path, "$ref",
             "\"%s\": only local references (\"#\" or \"#/json/pointer\") are supported, "
             "not remote or relative ones",
             ref);
        return NULL;
    }
    const char *p = ref + 1;
    if (*p != '\0' && *p != '/') {
        fail(c, path, "$ref", "\"%s\": the fragment must be a JSON pointer", ref);
        return NULL;
    }
    const cJSON *at = c->s->copy;
    tp_buf_t tp = {0}, tok = {0};
    while (*p == '/') {
        p++;
        tok.len = 0;
        for (; *p != '\0' && *p != '/'; p++) {
            int ch = (unsigned char)*p;
            if (ch == '%' && pct_val(p[1]) >= 0 && pct_val(p[2]) >= 0) {
                ch = pct_val(p[1]) * 16 + pct_val(p[2]);
                p += 2;
            }
            tp_buf_putc(&tok, (char)ch);
        }
        /* ~1 then ~0, as RFC 6901 orders the unescaping */
        size_t w = 0;
        for (size_t i = 0; i < tok.len; i++) {
            if (tok.data[i] == '~' && i + 1 < tok.len &&
                (tok.data[i + 1] == '0' || tok.data[i + 1] == '1')) {
                tok.data[w++] = tok.data[i + 1] == '1' ? '/' : '~';
                i++;
            } else {
                tok.data[w++] = tok.data[i];
            }
        }
        tok.len = w;
        const char *t = tp_buf_cstr(&tok);
        const cJSON *next = NULL;
        if (cJSON_IsObject(at)) {
            next = member(at, t);
        } else if (cJSON_IsArray(at) && *t != '\0' && strspn(t, "0123456789") == strlen(t)) {
            next = cJSON_GetArrayItem(at, atoi(t));
        }
        if (next == NULL) {
            tp_buf_free(&tp);
            tp_buf_free(&tok);
            fail(c, path, "$ref", "\"%s\" does not resolve inside this schema", ref);
            return NULL;
        }
        at = next;
        if (tp.len)
            tp_buf_putc(&tp, '.');
        tp_buf_puts(&tp, t);
    }
    tp_buf_free(&tok);
    tp_buf_cstr(&tp);
    *tpath = tp.data;
    return at;
}

static int compile_types(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    int count = 0;
    const cJSON *one = v;
    if (cJSON_IsArray(v))
        one = v->child;
    else if (!cJSON_IsString(v))
        return fail(c, path, "type", "expected a string or an array of strings"), -1;
    for (; one != NULL; one = cJSON_IsArray(v) ? one->next : NULL) {
        if (!cJSON_IsString(one))
            return fail(c, path, "type", "expected a string or an array of strings"), -1;
        int i = 0;
        while (i < 7 && strcmp(type_names[i], one->valuestring) != 0)
            i++;
        if (i == 7)
            return fail(c, path, "type", "unknown type \"%s\"", one->valuestring), -1;
        if (n->types & (1u << i))
            return fail(c, path, "type", "%s type is duplicated", one->valuestring), -1;
        n->types |= 1u << i;
        n->type_order[count++] = type_names[i];
    }
    tp_buf_t b = {0};
    if (count > 1)
        tp_buf_putc(&b, '[');
    for (int i = 0; i < count; i++) {
        if (i > 0)
            tp_buf_putc(&b, ',');
        tp_buf_puts(&b, n->type_order[i]);
    }
    if (count > 1)
        tp_buf_putc(&b, ']');
    tp_buf_cstr(&b);
    n->types_str = b.data;
    return 0;
}

static int compile_props(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    if (!cJSON_IsObject(v))
        return fail(c, path, "properties", "expected an object"), -1;
    n->props = tp_calloc((unsigned long)cJSON_GetArraySize(v) + 1, sizeof(*n->props));
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
        if (member(v, m->string) != m)
            continue;
        tp_jschema__prop_t *p = &n->props[n->nprops];
        p->name = m->string;
        if ((p->schema = compile_child(c, m, path, "properties", m->string)) == NULL)
            return -1;
        n->nprops++;
    }
    return 0;
}

static int compile_patprops(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    if (!cJSON_IsObject(v))
        return fail(c, path, "patternProperties", "expected an object"), -1;
    n->patprops = tp_calloc((unsigned long)cJSON_GetArraySize(v) + 1, sizeof(*n->patprops));
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
        if (member(v, m->string) != m)
            continue;
        tp_jschema__patprop_t *p = &n->patprops[n->npatprops];
        char why[160];
        if (tp_jschema__re_compile(&p->pat, m->string, why, sizeof(why)) < 0) {
            char *pp = path_join(path, "patternProperties", NULL);
            fail(c, pp, m->string, "invalid or unsupported regex: %s", why);
            free(pp);
            return -1;
        }
        n->npatprops++;
        if ((p->schema = compile_child(c, m, path, "patternProperties", m->string)) == NULL)
            return -1;
    }
    return 0;
}

static int compile_deps(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    if (!cJSON_IsObject(v))
        return fail(c, path, "dependencies", "expected an object"), -1;
    n->deps = tp_calloc((unsigned long)cJSON_GetArraySize(v) + 1, sizeof(*n->deps));
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
        if (member(v, m->string) != m)
            continue;
        tp_jschema__dep_t *d = &n->deps[n->ndeps];
        d->name = m->string;
        if (cJSON_IsArray(m)) {
            d->props = tp_calloc((unsigned long)cJSON_GetArraySize(m) + 1, sizeof(*d->props));
            for (const cJSON *e = m->child; e != NULL; e = e->next) {
                if (!cJSON_IsString(e)) {
                    char *pp = path_join(path, "dependencies", NULL);
                    fail(c, pp, m->string, "expected a schema or an array of strings");
                    free(pp);
                    free(d->props);
                    return -1;
                }
                d->props[d->nprops++] = e->valuestring;
            }
            /* gojsonschema registers an empty list as no dependency */
            if (d->nprops == 0) {
                free(d->props);
                d->props = NULL;
                continue;
            }
        } else if ((d->schema = compile_child(c, m, path, "dependencies", m->string)) == NULL) {
            return -1;
        }
        n->ndeps++;
    }
    return 0;
}

/* const and enum compare Go's re-marshalled text of the values. */
static char *marshal(const cJSON *v)
{
    tp_buf_t b = {0};
    tp_jschema__marshal(&b, v);
    tp_buf_cstr(&b);
    return b.data;
}

static int compile_enum(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    if (!cJSON_IsArray(v))
        return fail(c, path, "enum", "expected an array"), -1;
    n->enum_json = tp_calloc((unsigned long)cJSON_GetArraySize(v) + 1, sizeof(char *));
    tp_buf_t all = {0};
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        char *s = marshal(e);
        for (int i = 0; i < n->nenum; i++) {
            if (strcmp(n->enum_json[i], s) == 0) {
                free(s);
                tp_buf_free(&all);
                return fail(c, path, "enum", "enum items must be unique"), -1;
            }
        }
        if (n->nenum > 0)
            tp_buf_puts(&all, ", ");
        tp_buf_puts(&all, s);
        n->enum_json[n->nenum++] = s;
    }
    tp_buf_cstr(&all);
    n->enum_allowed = all.data;
    return 0;
}

static int compile_required(comp_t *c, node_t *n, const cJSON *v, const char *path)
{
    if (!cJSON_IsArray(v))
        return fail(c, path, "required", "expected an array of strings"), -1;
    n->required = tp_calloc((unsigned long)cJSON_GetArraySize(v) + 1, sizeof(char *));
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e))
            return fail(c, path, "required", "expected an array of strings"), -1;
        for (int i = 0; i < n->nrequired; i++)
            if (strcmp(n->required[i], e->valuestring) == 0)
                return fail(c, path, "required", "required items must be unique"), -1;
        n->required[n->nrequired++] = e->valuestring;
    }
    return 0;
}

/* additionalItems / additionalProperties: a boolean or an object schema. */
static int compile_add(comp_t *c, const cJSON *v, const char *path, int *kind, node_t **schema)
{
    if (cJSON_IsBool(v)) {
        *kind = cJSON_IsTrue(v) ? TP_JS_ADD_ANY : TP_JS_ADD_NONE;
        return 0;
    }
    if (!cJSON_IsObject(v))
        return fail(c, path, v->string, "expected a boolean or a schema"), -1;
    *kind = TP_JS_ADD_SCHEMA;
    return (*schema = compile_child(c, v, path, v->string, NULL)) == NULL ? -1 : 0;
}

/* exclusiveMinimum/Maximum: draft 4's boolean modifier or draft 6's bound. */
static int compile_exclusive(comp_t *c, const cJSON *v, const char *path, const char *bound,
                             int *has, double *val, int *xhas, double *xval)
{
    if (cJSON_IsBool(v) && c->draft != DRAFT6 && c->draft != DRAFT7) {
        if (!*has)
            return fail(c, path, v->string, "cannot be used without %s", bound), -1;
        if (cJSON_IsTrue(v)) {
            *xhas = 1;
            *xval = *val;
            *has = 0;
        }
        return 0;
    }
    if (cJSON_IsNumber(v) && c->draft != DRAFT4) {
        *xhas = 1;
        *xval = v->valuedouble;
        return 0;
    }
    return fail(c, path, v->string, "expected %s",
                c->draft == DRAFT4   ? "a boolean"
                : c->draft == HYBRID ? "a boolean or a number"
                                     : "a number"),
           -1;
}

static int compile_string_kw(comp_t *c, const cJSON *obj, const char *path, const char *kw)
{
    const cJSON *v = member(obj, kw);
    if (v != NULL && !cJSON_IsString(v))
        return fail(c, path, kw, "expected a string"), -1;
    return 0;
}

/* Compiles the keywords of the object schema <o> into <n>. */
static int compile_keywords(comp_t *c, node_t *n, const cJSON *o, const char *path)
{
    const cJSON *v;
    if (compile_string_kw(c, o, path, "id") < 0 || compile_string_kw(c, o, path, "$id") < 0 ||
        compile_string_kw(c, o, path, "title") < 0 ||
        compile_string_kw(c, o, path, "description") < 0 ||
        compile_string_kw(c, o, path, "format") < 0)
        return -1;
    if ((v = member(o, "definitions")) != NULL) {
        if (!cJSON_IsObject(v))
            return fail(c, path, "definitions", "expected an object of schemas"), -1;
        for (const cJSON *m = v->child; m != NULL; m = m->next)
            if (compile_child(c, m, path, "definitions", m->string) == NULL)
                return -1;
    }
    if ((v = member(o, "$ref")) != NULL) {
        if (!cJSON_IsString(v))
            return fail(c, path, "$ref", "expected a string"), -1;
        char *tpath = NULL;
        const cJSON *target = resolve(c, v->valuestring, path, &tpath);
        if (target == NULL)
            return -1;
        n->ref_text = v->valuestring;
        c->nrefs++;
        n->ref = compile_node(c, target, tpath);
        free(tpath);
        /* gojsonschema validates only the target when "$ref" is present */
        return n->ref == NULL ? -1 : 0;
    }
    if ((v = member(o, "type")) != NULL && compile_types(c, n, v, path) < 0)
        return -1;
    if ((v = member(o, "properties")) != NULL && compile_props(c, n, v, path) < 0)
        return -1;
    if ((v = member(o, "additionalProperties")) != NULL &&
        compile_add(c, v, path, &n->add_props, &n->add_props_schema) < 0)
        return -1;
    if ((v = member(o, "patternProperties")) != NULL && compile_patprops(c, n, v, path) < 0)
        return -1;
    if (c->draft >= DRAFT6 && (v = member(o, "propertyNames")) != NULL &&
        (n->prop_names = compile_child(c, v, path, "propertyNames", NULL)) == NULL)
        return -1;
    if ((v = member(o, "dependencies")) != NULL && compile_deps(c, n, v, path) < 0)
        return -1;
    if ((v = member(o, "items")) != NULL) {
        if (cJSON_IsArray(v)) {
            if (compile_list(c, &n->items, v, path, "items") < 0)
                return -1;
        } else {
            n->items.v = tp_calloc(2, sizeof(*n->items.v));
            if ((n->items.v[0] = compile_child(c, v, path, "items", NULL)) == NULL)
                return -1;
            n->items.n = 1;
            n->items_single = 1;
        }
    }
    if ((v = member(o, "additionalItems")) != NULL &&
        compile_add(c, v, path, &n->add_items, &n->add_items_schema) < 0)
        return -1;
    if ((v = member(o, "multipleOf")) != NULL) {
        if (get_number(c, v, path, &n->multiple) < 0)
            return -1;
        if (n->multiple <= 0)
            return fail(c, path, "multipleOf", "must be strictly greater than 0"), -1;
        n->has_multiple = 1;
    }
    if ((v = member(o, "minimum")) != NULL) {
        if (get_number(c, v, path, &n->min) < 0)
            return -1;
        n->has_min = 1;
    }
    if ((v = member(o, "exclusiveMinimum")) != NULL &&
        compile_exclusive(c, v, path, "minimum", &n->has_min, &n->min, &n->has_xmin, &n->xmin) < 0)
        return -1;
    if ((v = member(o, "maximum")) != NULL) {
        if (get_number(c, v, path, &n->max) < 0)
            return -1;
        n->has_max = 1;
    }
    if ((v = member(o, "exclusiveMaximum")) != NULL &&
        compile_exclusive(c, v, path, "maximum", &n->has_max, &n->max, &n->has_xmax, &n->xmax) < 0)
        return -1;
    if ((v = member(o, "minLength")) != NULL && get_count(c, v, path, &n->min_len) < 0)
        return -1;
    if ((v = member(o, "maxLength")) != NULL && get_count(c, v, path, &n->max_len) < 0)
        return -1;
    if (n->min_len >= 0 && n->max_len >= 0 && n->min_len > n->max_len)
        return fail(c, path, "minLength", "cannot be greater than maxLength"), -1;
    if ((v = member(o, "pattern")) != NULL) {
        char why[160];
        if (!cJSON_IsString(v))
            return fail(c, path, "pattern", "expected a string"), -1;
        n->pattern = tp_calloc(1, sizeof(*n->pattern));
        if (tp_jschema__re_compile(n->pattern, v->valuestring, why, sizeof(why)) < 0)
            return fail(c, path, "pattern", "invalid or unsupported regex: %s", why), -1;
    }
    if ((v = member(o, "minProperties")) != NULL && get_count(c, v, path, &n->min_props) < 0)
        return -1;
    if ((v = member(o, "maxProperties")) != NULL && get_count(c, v, path, &n->max_props) < 0)
        return -1;
    if (n->min_props >= 0 && n->max_props >= 0 && n->min_props > n->max_props)
        return fail(c, path, "minProperties", "cannot be greater than maxProperties"), -1;
    if ((v = member(o, "required")) != NULL && compile_required(c, n, v, path) < 0)
        return -1;
    if ((v = member(o, "minItems")) != NULL && get_count(c, v, path, &n->min_items) < 0)
        return -1;
    if ((v = member(o, "maxItems")) != NULL && get_count(c, v, path, &n->max_items) < 0)
        return -1;
    if ((v = member(o, "uniqueItems")) != NULL) {
        if (!cJSON_IsBool(v))
            return fail(c, path, "uniqueItems", "expected a boolean"), -1;
        n->unique = cJSON_IsTrue(v);
    }
    if (c->draft >= DRAFT6 && (v = member(o, "contains")) != NULL &&
        (n->contains = compile_child(c, v, path, "contains", NULL)) == NULL)
        return -1;
    if (c->draft >= DRAFT6 && (v = member(o, "const")) != NULL)
        n->const_json = marshal(v);
    if ((v = member(o, "enum")) != NULL && compile_enum(c, n, v, path) < 0)
        return -1;
    if ((v = member(o, "oneOf")) != NULL && compile_list(c, &n->one_of, v, path, "oneOf") < 0)
        return -1;
    if ((v = member(o, "anyOf")) != NULL && compile_list(c, &n->any_of, v, path, "anyOf") < 0)
        return -1;
    if ((v = member(o, "allOf")) != NULL && compile_list(c, &n->all_of, v, path, "allOf") < 0)
        return -1;
    if ((v = member(o, "not")) != NULL &&
        (n->not_ = compile_child(c, v, path, "not", NULL)) == NULL)
        return -1;
    if (c->draft >= DRAFT7) {
        if ((v = member(o, "if")) != NULL &&
            (n->if_ = compile_child(c, v, path, "if", NULL)) == NULL)
            return -1;
        if ((v = member(o, "then")) != NULL &&
            (n->then_ = compile_child(c, v, path, "then", NULL)) == NULL)
            return -1;
        if ((v = member(o, "else")) != NULL &&
            (n->else_ = compile_child(c, v, path, "else", NULL)) == NULL)
            return -1;
    }
    return 0;
}

static node_t *compile_node(comp_t *c, const cJSON *src, const char *path)
{
    for (node_t *n = c->nrefs ? c->s->nodes : NULL; n != NULL; n = n->next)
        if (n->src == src)
            return n;
    if (c->depth >= TP_JSCHEMA_MAX_DEPTH)
        return fail(c, path, NULL, "schema nested too deeply (more than %d levels)",
                    TP_JSCHEMA_MAX_DEPTH);
    node_t *n = tp_calloc(1, sizeof(*n));
    n->src = src;
    n->path = tp_strdup(path);
    n->pass = -1;
    n->min_len = n->max_len = n->min_items = n->max_items = n->min_props = n->max_props = -1;
    n->next = c->s->nodes;
    c->s->nodes = n;
    if (cJSON_IsBool(src) && c->draft >= DRAFT6) {
        n->pass = cJSON_IsTrue(src);
        return n;
    }
    if (!cJSON_IsObject(src))
        return fail(c, path, NULL, "expected a schema (an object%s)",
                    c->draft >= DRAFT6 ? ", true or false" : "");
    c->depth++;
    int rc = compile_keywords(c, n, src, path);
    c->depth--;
    return rc < 0 ? NULL : n;
}

static void list_edges(const node_t *n, const node_t **out, int *k)
{
    const tp_jschema__list_t *lists[] = {&n->all_of, &n->any_of, &n->one_of};
    if (n->ref)
        out[(*k)++] = n->ref;
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < lists[l]->n; i++)
            out[(*k)++] = lists[l]->v[i];
    const node_t *one[] = {n->not_, n->if_, n->then_, n->else_};
    for (int i = 0; i < 4; i++)
        if (one[i])
            out[(*k)++] = one[i];
    for (int i = 0; i < n->ndeps; i++)
        if (n->deps[i].schema)
            out[(*k)++] = n->deps[i].schema;
}

/* Finds a loop of schemas applied to the same value (the edges that do not
 * step into the document): validating it would never end. */
static int find_cycle(comp_t *c, node_t *n, int depth)
{
    if (n->mark == 2)
        return 0;
    if (n->mark == 1) {
        fail(c, n->path, NULL,
             "a $ref cycle (through $ref, allOf, anyOf, oneOf, not, dependencies or "
             "if/then/else) that never descends into the document");
        return -1;
    }
    if (depth >= TP_JSCHEMA_MAX_DEPTH) {
        fail(c, n->path, NULL, "more than %d schemas chained by $ref or combinators",
             TP_JSCHEMA_MAX_DEPTH);
        return -1;
    }
    n->mark = 1;
    int cnt = 5 + n->all_of.n + n->any_of.n + n->one_of.n + n->ndeps;
    const node_t **e = tp_malloc(sizeof(*e) * (unsigned long)cnt);
    int k = 0, rc = 0;
    list_edges(n, e, &k);
    for (int i = 0; i < k && rc == 0; i++)
        rc = find_cycle(c, (node_t *)e[i], depth + 1);
    free(e);
    n->mark = 2;
    return rc;
}

static int draft_of(const cJSON *root)
{
    const cJSON *v = cJSON_IsObject(root) ? member(root, "$schema") : NULL;
    if (!cJSON_IsString(v))
        return HYBRID;
    if (strstr(v->valuestring, "json-schema.org/draft-04/schema"))
        return DRAFT4;
    if (strstr(v->valuestring, "json-schema.org/draft-06/schema"))
        return DRAFT6;
    if (strstr(v->valuestring, "json-schema.org/draft-07/schema"))
        return DRAFT7;
    return HYBRID;
}

tp_jschema_t *tp_jschema_compile(const cJSON *schema, char *why, size_t whylen)
{
    tp_jschema_t *s = tp_calloc(1, sizeof(*s));
    comp_t c = {.s = s, .why = why, .whylen = whylen};
    if (whylen > 0)
        why[0] = '\0';
    s->copy = cJSON_Duplicate(schema, 1);
    if (s->copy == NULL) {
        snprintf(why, whylen, "(root): expected a schema");
        goto err;
    }
    c.draft = draft_of(s->copy);
    if ((s->root = compile_node(&c, s->copy, "")) == NULL)
        goto err;
    for (node_t *n = s->nodes; n != NULL; n = n->next)
        if (find_cycle(&c, n, 0) < 0)
            goto err;
    return s;
err:
    tp_jschema_free(s);
    return NULL;
}

static void node_free(node_t *n)
{
    free(n->path);
    free(n->types_str);
    if (n->pattern) {
        tp_jschema__re_free(n->pattern);
        free(n->pattern);
    }
    free(n->items.v);
    free(n->required);
    free(n->props);
    for (int i = 0; i < n->npatprops; i++)
        tp_jschema__re_free(&n->patprops[i].pat);
    free(n->patprops);
    for (int i = 0; i < n->ndeps; i++)
        free(n->deps[i].props);
    free(n->deps);
    free(n->const_json);
    for (int i = 0; i < n->nenum; i++)
        free(n->enum_json[i]);
    free(n->enum_json);
    free(n->enum_allowed);
    free(n->all_of.v);
    free(n->any_of.v);
    free(n->one_of.v);
    free(n);
}

void tp_jschema_free(tp_jschema_t *s)
{
    if (s == NULL)
        return;
    node_t *n = s->nodes;
    while (n != NULL) {
        node_t *next = n->next;
        node_free(n);
        n = next;
    }
    cJSON_Delete(s->copy);
    free(s);
}
