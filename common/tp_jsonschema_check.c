/*
 * common/tp_jsonschema_check.c: validating a document against a compiled schema.
 *
 * The walk follows gojsonschema's validateRecursive: the type check first
 * (a wrong type is the only error for that value), then the combinators,
 * then the keywords of the value's kind, then "properties". Each value also
 * earns gojsonschema's score (+1 per keyword group passed, -2 per error):
 * anyOf and oneOf report the errors of the best scoring branch, so the score
 * decides which errors a user sees.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_jsonschema_int.h"

typedef tp_jschema__node_t node_t;

/* The errors of one (sub)validation, already joined with "; ". */
typedef struct vres_s {
    tp_buf_t text;
    int nerr;
    int score;
} vres_t;

/* gojsonschema's JsonContext: "(root)" then one head per level. */
typedef struct vpath_s {
    const char *head;
    const struct vpath_s *tail;
} vpath_t;

typedef struct vctx_s {
    long steps, budget;
    int depth;
    int aborted;
} vctx_t;

static int is_integer(double v)
{
    return isfinite(v) && floor(v) == v;
}

/* ---- results ---- */

static void put_field(tp_buf_t *b, const vpath_t *c)
{
    if (c->tail == NULL) {
        tp_buf_puts(b, c->head);
        return;
    }
    /* Field() drops the "(root)." in front */
    if (c->tail->tail != NULL) {
        put_field(b, c->tail);
        tp_buf_putc(b, '.');
    }
    tp_buf_puts(b, c->head);
}

/* Starts an error at <c>: writes "<field>: " and returns the buffer the
 * description goes to. */
static tp_buf_t *verr(vres_t *r, const vpath_t *c)
{
    if (r->nerr > 0)
        tp_buf_puts(&r->text, "; ");
    put_field(&r->text, c);
    tp_buf_puts(&r->text, ": ");
    r->nerr++;
    r->score -= 2;
    return &r->text;
}

static void vmerge(vres_t *dst, vres_t *src)
{
    if (src->nerr > 0) {
        if (dst->nerr > 0)
            tp_buf_puts(&dst->text, "; ");
        tp_buf_append(&dst->text, src->text.data, src->text.len);
    }
    dst->nerr += src->nerr;
    dst->score += src->score;
}

static void vfree(vres_t *r)
{
    tp_buf_free(&r->text);
}

/* ---- the walk ---- */

static void v_rec(vctx_t *vc, const node_t *n, const cJSON *d, vres_t *r, const vpath_t *c);

static int v_sub(vctx_t *vc, const node_t *n, const cJSON *d, vres_t *sub, const vpath_t *c)
{
    memset(sub, 0, sizeof(*sub));
    v_rec(vc, n, d, sub, c);
    return sub->nerr == 0;
}

static void v_schema(vctx_t *vc, const node_t *n, const cJSON *d, vres_t *r, const vpath_t *c,
                     const tp_jschema__objv_t *o)
{
    if (n->any_of.n > 0) {
        vres_t best = {0}, sub;
        int have_best = 0, ok = 0;
        for (int i = 0; i < n->any_of.n && !ok; i++) {
            ok = v_sub(vc, n->any_of.v[i], d, &sub, c);
            if (!ok && (!have_best || sub.score > best.score)) {
                vfree(&best);
                best = sub;
                have_best = 1;
            } else {
                vfree(&sub);
            }
        }
        if (!ok) {
            tp_buf_puts(verr(r, c), "Must validate at least one schema (anyOf)");
            vmerge(r, &best);
        }
        vfree(&best);
    }
    if (n->one_of.n > 0) {
        vres_t best = {0}, sub;
        int have_best = 0, nok = 0;
        for (int i = 0; i < n->one_of.n; i++) {
            if (v_sub(vc, n->one_of.v[i], d, &sub, c)) {
                nok++;
            } else if (nok == 0 && (!have_best || sub.score > best.score)) {
                vfree(&best);
                best = sub;
                have_best = 1;
                continue;
            }
            vfree(&sub);
        }
        if (nok != 1) {
            tp_buf_puts(verr(r, c), "Must validate one and only one schema (oneOf)");
            if (nok == 0)
                vmerge(r, &best);
        }
        vfree(&best);
    }
    if (n->all_of.n > 0) {
        int nok = 0;
        for (int i = 0; i < n->all_of.n; i++) {
            vres_t sub;
            nok += v_sub(vc, n->all_of.v[i], d, &sub, c);
            vmerge(r, &sub);
            vfree(&sub);
        }
        if (nok != n->all_of.n)
            tp_buf_puts(verr(r, c), "Must validate all the schemas (allOf)");
    }
    if (n->not_ != NULL) {
        vres_t sub;
        if (v_sub(vc, n->not_, d, &sub, c))
            tp_buf_puts(verr(r, c), "Must not validate the schema (not)");
        vfree(&sub);
    }
    if (n->ndeps > 0 && o != NULL) {
        for (int i = 0; i < o->n; i++) {
            const tp_jschema__dep_t *dep = NULL;
            for (int j = 0; j < n->ndeps && dep == NULL; j++)
                if (strcmp(n->deps[j].name, o->live[i]->string) == 0)
                    dep = &n->deps[j];
            if (dep == NULL)
                continue;
            if (dep->schema != NULL) {
                v_rec(vc, dep->schema, d, r, c);
                continue;
            }
            for (int j = 0; j < dep->nprops; j++)
                if (tp_jschema__objv_get(o, dep->props[j]) == NULL)
                    tp_buf_printf(verr(r, c), "Has a dependency on %s", dep->props[j]);
        }
    }
    if (n->if_ != NULL) {
        vres_t ifr, sub;
        int ok = v_sub(vc, n->if_, d, &ifr, c);
        vfree(&ifr);
        const node_t *branch = ok ? n->then_ : n->else_;
        if (branch != NULL && !v_sub(vc, branch, d, &sub, c)) {
            tp_buf_puts(verr(r, c), ok ? "Must validate \"then\" as \"if\" was valid"
                                       : "Must validate \"else\" as \"if\" was not valid");
            vmerge(r, &sub);
        }
        if (branch != NULL)
            vfree(&sub);
    }
    r->score++;
}

static void v_common(const node_t *n, const cJSON *d, vres_t *r, const vpath_t *c)
{
    if (n->const_json != NULL || n->nenum > 0) {
        tp_buf_t m = {0};
        tp_jschema__marshal(&m, d);
        const char *ms = tp_buf_cstr(&m);
        if (n->const_json != NULL && strcmp(ms, n->const_json) != 0) {
            tp_buf_t *b = verr(r, c);
            put_field(b, c);
            tp_buf_printf(b, " does not match: %s", n->const_json);
        }
        if (n->nenum > 0) {
            int found = 0;
            for (int i = 0; i < n->nenum && !found; i++)
                found = strcmp(ms, n->enum_json[i]) == 0;
            if (!found) {
                tp_buf_t *b = verr(r, c);
                put_field(b, c);
                tp_buf_printf(b, " must be one of the following: %s", n->enum_allowed);
            }
        }
        tp_buf_free(&m);
    }
    r->score++;
}

static void v_number(const node_t *n, double x, vres_t *r, const vpath_t *c)
{
    if (n->has_multiple && !tp_jschema__is_multiple(x, n->multiple)) {
        tp_buf_t *b = verr(r, c);
        tp_buf_puts(b, "Must be a multiple of ");
        tp_jschema__put_num(b, n->multiple);
    }
    if (n->has_max && x > n->max) {
        tp_buf_t *b = verr(r, c);
        tp_buf_puts(b, "Must be less than or equal to ");
        tp_jschema__put_num(b, n->max);
    }
    if (n->has_xmax && x >= n->xmax) {
        tp_buf_t *b = verr(r, c);
        tp_buf_puts(b, "Must be less than ");
        tp_jschema__put_num(b, n->xmax);
    }
    if (n->has_min && x < n->min) {
        tp_buf_t *b = verr(r, c);
        tp_buf_puts(b, "Must be greater than or equal to ");
        tp_jschema__put_num(b, n->min);
    }
    if (n->has_xmin && x <= n->xmin) {
        tp_buf_t *b = verr(r, c);
        tp_buf_puts(b, "Must be greater than ");
        tp_jschema__put_num(b, n->xmin);
    }
    r->score++;
}

/* utf8.RuneCount: every byte that does not continue a character. */
static long rune_count(const char *s)
{
    long n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xc0) != 0x80;
    return n;
}

static void v_string(const node_t *n, const char *s, vres_t *r, const vpath_t *c)
{
    if (n->min_len >= 0 || n->max_len >= 0) {
        long len = rune_count(s);
        if (n->min_len >= 0 && len < n->min_len)
            tp_buf_printf(verr(r, c), "String length must be greater than or equal to %ld",
                          n->min_len);
        if (n->max_len >= 0 && len > n->max_len)
            tp_buf_printf(verr(r, c), "String length must be less than or equal to %ld",
                          n->max_len);
    }
    if (n->pattern != NULL && !tp_jschema__re_match(n->pattern, s))
        tp_buf_printf(verr(r, c), "Does not match pattern '%s'", n->pattern->src);
    r->score++;
}

typedef struct uniq_s {
    char *s;
    int idx;
} uniq_t;

static int uniq_cmp(const void *a, const void *b)
{
    const uniq_t *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c != 0 ? c : x->idx - y->idx;
}

static int pair_cmp(const void *a, const void *b)
{
    const int *x = a, *y = b;
    return x[1] - y[1];
}

/* gojsonschema remembers the last index of each value: [1,1,1] gives
 * items[0,1] then items[1,2], in the order of the second index. */
static void v_unique(const cJSON *d, int count, vres_t *r, const vpath_t *c)
{
    if (count < 2)
        return;
    uniq_t *u = tp_malloc(sizeof(*u) * (unsigned long)count);
    int *pairs = tp_malloc(sizeof(int) * 2 * (unsigned long)count);
    int np = 0, i = 0;
    for (const cJSON *e = d->child; e != NULL; e = e->next, i++) {
        tp_buf_t m = {0};
        tp_jschema__marshal(&m, e);
        tp_buf_cstr(&m);
        u[i] = (uniq_t){m.data, i};
    }
    qsort(u, (size_t)count, sizeof(*u), uniq_cmp);
    for (i = 1; i < count; i++) {
        if (strcmp(u[i - 1].s, u[i].s) == 0) {
            pairs[2 * np] = u[i - 1].idx;
            pairs[2 * np + 1] = u[i].idx;
            np++;
        }
    }
    qsort(pairs, (size_t)np, sizeof(int) * 2, pair_cmp);
    for (i = 0; i < np; i++)
        tp_buf_printf(verr(r, c), "array items[%d,%d] must be unique", pairs[2 * i],
                      pairs[2 * i + 1]);
    for (i = 0; i < count; i++)
        free(u[i].s);
    free(u);
    free(pairs);
}

static void v_array(vctx_t *vc, const node_t *n, const cJSON *d, vres_t *r, const vpath_t *c)
{
    int count = cJSON_GetArraySize(d);
    char idx[24];
    vpath_t sc = {idx, c};
    int i = 0;
    if (n->items_single) {
        for (const cJSON *e = d->child; e != NULL; e = e->next, i++) {
            snprintf(idx, sizeof(idx), "%d", i);
            v_rec(vc, n->items.v[0], e, r, &sc);
        }
    } else if (n->items.n > 0) {
        const cJSON *e = d->child;
        for (; e != NULL && i < n->items.n; e = e->next, i++) {
            snprintf(idx, sizeof(idx), "%d", i);
            v_rec(vc, n->items.v[i], e, r, &sc);
        }
        if (e != NULL && n->add_items == TP_JS_ADD_NONE)
            tp_buf_puts(verr(r, c), "No additional items allowed on array");
        for (; e != NULL && n->add_items == TP_JS_ADD_SCHEMA; e = e->next, i++) {
            snprintf(idx, sizeof(idx), "%d", i);
            v_rec(vc, n->add_items_schema, e, r, &sc);
        }
    }
    if (n->min_items >= 0 && count < n->min_items)
        tp_buf_printf(verr(r, c), "Array must have at least %ld items", n->min_items);
    if (n->max_items >= 0 && count > n->max_items)
        tp_buf_printf(verr(r, c), "Array must have at most %ld items", n->max_items);
    if (n->unique)
        v_unique(d, count, r, c);
    if (n->contains != NULL) {
        vres_t best = {0}, sub;
        int have_best = 0, ok = 0;
        i = 0;
        for (const cJSON *e = d->child; e != NULL && !ok; e = e->next, i++) {
            snprintf(idx, sizeof(idx), "%d", i);
            ok = v_sub(vc, n->contains, e, &sub, &sc);
            if (!ok && (!have_best || sub.score > best.score)) {
                vfree(&best);
                best = sub;
                have_best = 1;
            } else {
                vfree(&sub);
            }
        }
        if (!ok) {
            tp_buf_puts(verr(r, c), "At least one of the items must match");
            vmerge(r, &best);
        }
        vfree(&best);
    }
    r->score++;
}

static void v_object(vctx_t *vc, const node_t *n, const tp_jschema__objv_t *o, vres_t *r,
                     const vpath_t *c)
{
    if (n->min_props >= 0 && o->n < n->min_props)
        tp_buf_printf(verr(r, c), "Must have at least %ld properties", n->min_props);
    if (n->max_props >= 0 && o->n > n->max_props)
        tp_buf_printf(verr(r, c), "Must have at most %ld properties", n->max_props);
    for (int i = 0; i < n->nrequired; i++) {
        if (tp_jschema__objv_get(o, n->required[i]) != NULL)
            r->score++;
        else
            tp_buf_printf(verr(r, c), "%s is required", n->required[i]);
    }
    for (int i = 0; i < o->n; i++) {
        const cJSON *m = o->live[i];
        vpath_t sc = {m->string, c};
        int found = 0, matched = 0;
        for (int j = 0; j < n->nprops && !found; j++)
            found = strcmp(n->props[j].name, m->string) == 0;
        for (int j = 0; j < n->npatprops; j++) {
            if (tp_jschema__re_match(&n->patprops[j].pat, m->string)) {
                matched = 1;
                v_rec(vc, n->patprops[j].schema, m, r, &sc);
            }
        }
        if (matched)
            r->score++;
        if (found || matched)
            continue;
        if (n->add_props == TP_JS_ADD_NONE)
            tp_buf_printf(verr(r, c), "Additional property %s is not allowed", m->string);
        else if (n->add_props == TP_JS_ADD_SCHEMA)
            v_rec(vc, n->add_props_schema, m, r, &sc);
    }
    if (n->prop_names != NULL) {
        for (int i = 0; i < o->n; i++) {
            cJSON key;
            memset(&key, 0, sizeof(key));
            key.type = cJSON_String;
            key.valuestring = o->live[i]->string;
            vres_t sub;
            if (!v_sub(vc, n->prop_names, &key, &sub, c)) {
                tp_buf_printf(verr(r, c), "Property name of \"%s\" does not match",
                              o->live[i]->string);
                vmerge(r, &sub);
            }
            vfree(&sub);
        }
    }
    r->score++;
}

static const char *given_type(const cJSON *d, unsigned *bit)
{
    if (cJSON_IsNumber(d)) {
        int i = is_integer(d->valuedouble);
        *bit = i ? TP_JS_INTEGER : TP_JS_NUMBER;
        return i ? "integer" : "number";
    }
    if (cJSON_IsString(d)) {
        *bit = TP_JS_STRING;
        return "string";
    }
    if (cJSON_IsBool(d)) {
        *bit = TP_JS_BOOLEAN;
        return "boolean";
    }
    if (cJSON_IsArray(d)) {
        *bit = TP_JS_ARRAY;
        return "array";
    }
    if (cJSON_IsObject(d)) {
        *bit = TP_JS_OBJECT;
        return "object";
    }
    *bit = TP_JS_NULL;
    return "null";
}

static void v_rec(vctx_t *vc, const node_t *n, const cJSON *d, vres_t *r, const vpath_t *c)
{
    if (vc->aborted)
        return;
    if (++vc->steps > vc->budget || vc->depth >= TP_JSCHEMA_MAX_DEPTH) {
        vc->aborted = 1;
        tp_buf_puts(verr(r, c), vc->depth >= TP_JSCHEMA_MAX_DEPTH
                                    ? "Internal Error document or $ref nesting too deep"
                                    : "Internal Error validation takes too many steps");
        return;
    }
    if (n->pass >= 0) {
        if (n->pass == 0)
            tp_buf_puts(verr(r, c), "False always fails validation");
        return;
    }
    vc->depth++;
    if (n->ref != NULL) {
        v_rec(vc, n->ref, d, r, c);
        vc->depth--;
        return;
    }
    unsigned bit;
    const char *given = given_type(d, &bit);
    int ok = (n->types & bit) != 0 || (bit == TP_JS_INTEGER && (n->types & TP_JS_NUMBER));
    if (n->types != 0 && !ok) {
        tp_buf_printf(verr(r, c), "Invalid type. Expected: %s, given: %s", n->types_str, given);
        vc->depth--;
        return;
    }
    if (bit == TP_JS_OBJECT) {
        tp_jschema__objv_t o;
        tp_jschema__objv_init(&o, d);
        v_schema(vc, n, d, r, c, &o);
        v_object(vc, n, &o, r, c);
        v_common(n, d, r, c);
        for (int i = 0; i < n->nprops; i++) {
            const cJSON *m = tp_jschema__objv_get(&o, n->props[i].name);
            if (m != NULL) {
                vpath_t sc = {m->string, c};
                v_rec(vc, n->props[i].schema, m, r, &sc);
            }
        }
        tp_jschema__objv_free(&o);
    } else {
        v_schema(vc, n, d, r, c, NULL);
        if (bit == TP_JS_INTEGER || bit == TP_JS_NUMBER)
            v_number(n, d->valuedouble, r, c);
        else if (bit == TP_JS_ARRAY)
            v_array(vc, n, d, r, c);
        v_common(n, d, r, c);
        if (bit == TP_JS_STRING)
            v_string(n, d->valuestring, r, c);
    }
    r->score++;
    vc->depth--;
}

static long count_values(const cJSON *d, int depth)
{
    long n = 1;
    if (depth < TP_JSCHEMA_MAX_DEPTH)
        for (const cJSON *e = d->child; e != NULL; e = e->next)
            n += count_values(e, depth + 1);
    return n;
}

int tp_jschema_validate(const tp_jschema_t *s, const cJSON *doc, tp_buf_t *out)
{
    /* a schema whose combinators fan out over shared definitions can cost
     * exponential time: bound the work by the size of the document */
    vctx_t vc = {.budget = 1000000 + 64 * count_values(doc, 0)};
    vres_t r = {0};
    vpath_t root = {"(root)", NULL};
    v_rec(&vc, s->root, doc, &r, &root);
    if (r.nerr > 0)
        tp_buf_append(out, r.text.data, r.text.len);
    vfree(&r);
    return r.nerr;
}
