/*
 * conf/tp_policy_merge.c: the pieces of Tyk's policy application that are
 * not Service.Apply itself: rate-limit values, canonical access definitions
 * (built from Go's field tables and written back in the session's form),
 * and the merges of internal/policy/util.go. See tp_policy_go.h.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_policy_go.h"

/* ---- rate limits ----------------------------------------------------------- */

/* user.RateLimit.Duration: nanoseconds between two allowed requests, 0 when
 * unlimited. Go truncates the float; an out-of-range conversion gives
 * INT64_MIN on amd64, so a huge per/rate sorts as the shortest. */
long long pa_duration(double rate, double per)
{
    if (per <= 0 || rate <= 0)
        return 0;
    double ns = 1e9 * per / rate;
    if (!(ns < 9.2233720368547758e18))
        return LLONG_MIN;
    return (long long)ns;
}

/* A canonical {rate, per, smoothing} object's duration. */
static long long rl_duration(const cJSON *limit)
{
    return pa_duration(num(limit, "rate"), num(limit, "per"));
}

/* util.go greaterThanInt64: -1 means unlimited and beats everything. */
int pa_gt_unlimited(long long a, long long b)
{
    if (a == -1)
        return 1;
    if (b == -1)
        return 0;
    return a > b;
}

void pa_limit_read(const cJSON *l, pa_limit_t *out)
{
    memset(out, 0, sizeof(*out));
    out->rate = num(l, "rate");
    out->per = num(l, "per");
    out->smoothing = get(l, "smoothing");
    out->throttle_interval = num(l, "throttle_interval");
    out->throttle_retry_limit = inum(l, "throttle_retry_limit");
    out->max_query_depth = inum(l, "max_query_depth");
    out->quota_max = inum(l, "quota_max");
    out->quota_renews = inum(l, "quota_renews");
    out->quota_remaining = inum(l, "quota_remaining");
    out->quota_renewal_rate = inum(l, "quota_renewal_rate");
}

/* APILimit.IsEmpty: smoothing does not count, SetBy does. */
int pa_limit_empty(const pa_limit_t *l)
{
    return l->rate == 0 && l->per == 0 && l->throttle_interval == 0 &&
           l->throttle_retry_limit == 0 && l->max_query_depth == 0 && l->quota_max == 0 &&
           l->quota_renews == 0 && l->quota_remaining == 0 && l->quota_renewal_rate == 0 &&
           (l->set_by == NULL || l->set_by[0] == '\0');
}

int tp_api_limit_empty(const cJSON *limit)
{
    if (!cJSON_IsObject(limit))
        return 1;
    pa_limit_t l;
    pa_limit_read(limit, &l);
    return pa_limit_empty(&l);
}

/* ---- canonical access definitions ----------------------------------------- */

/* The Go structs, one a line. */
/* clang-format off */
#define END {NULL, 0, 0, 0, NULL}
static const pa_field_t f_rate[] = {{"rate", K_NUM, O_NO, O_ZERO, NULL},
    {"per", K_NUM, O_NO, O_ZERO, NULL}, {"smoothing", K_RAW, O_EMPTY, O_ZERO, NULL}, END};
static const pa_field_t f_method[] = {{"name", K_STR, O_EMPTY, O_EMPTY, NULL},
    {"limit", K_OBJ, O_NO, O_NO, f_rate}, END};
static const pa_field_t f_endpoint[] = {{"path", K_STR, O_EMPTY, O_EMPTY, NULL},
    {"methods", K_LIST, O_EMPTY, O_EMPTY, f_method}, END};
static const pa_field_t f_spec[] = {{"url", K_STR, O_NO, O_NO, NULL},
    {"methods", K_STRS, O_NO, O_NO, NULL}, END};
/* graphql-go-tools' graphql.Type */
static const pa_field_t f_gqltype[] = {{"name", K_STR, O_NO, O_NO, NULL},
    {"fields", K_STRS, O_NO, O_NO, NULL}, END};
static const pa_field_t f_depth[] = {{"max_query_depth", K_NUM, O_NO, O_ZERO, NULL}, END};
static const pa_field_t f_fieldar[] = {{"type_name", K_STR, O_NO, O_ZERO, NULL},
    {"field_name", K_STR, O_NO, O_ZERO, NULL}, {"limits", K_OBJ, O_NO, O_ZERO, f_depth}, END};
static const pa_field_t f_rules[] = {{"allowed", K_STRS, O_EMPTY, O_EMPTY, NULL},
    {"blocked", K_STRS, O_EMPTY, O_EMPTY, NULL}, END};
static const pa_field_t f_rpc[] = {{"name", K_STR, O_NO, O_NO, NULL},
    {"limit", K_OBJ, O_ZERO, O_ZERO, f_rate}, END};
static const pa_field_t f_prim[] = {{"type", K_STR, O_NO, O_NO, NULL},
    {"name", K_STR, O_NO, O_NO, NULL}, {"limit", K_OBJ, O_ZERO, O_ZERO, f_rate}, END};
const pa_field_t pa_f_mcp[] = {{"tools", K_OBJ, O_ZERO, O_ZERO, f_rules},
    {"resources", K_OBJ, O_ZERO, O_ZERO, f_rules}, {"prompts", K_OBJ, O_ZERO, O_ZERO, f_rules},
    END};
/* user.AccessDefinition, in Go's field order */
const pa_field_t pa_f_access[] = {
    {"api_name", K_STR, O_NO, O_ZERO, NULL},
    {"api_id", K_STR, O_NO, O_ZERO, NULL},
    {"versions", K_STRS, O_NO, O_EMPTY, NULL},
    {"allowed_urls", K_LIST, O_NO, O_EMPTY, f_spec},
    {"restricted_types", K_LIST, O_NO, O_EMPTY, f_gqltype},
    {"allowed_types", K_LIST, O_NO, O_EMPTY, f_gqltype},
    {"limit", K_LIMIT, O_NO, O_ZERO, NULL},
    {"field_access_rights", K_LIST, O_NO, O_EMPTY, f_fieldar},
    {"disable_introspection", K_BOOL, O_NO, O_ZERO, NULL},
    {"allowance_scope", K_STR, O_NO, O_ZERO, NULL},
    {"endpoints", K_LIST, O_EMPTY, O_ZERO, f_endpoint},
    {"json_rpc_methods", K_LIST, O_EMPTY, O_EMPTY, f_rpc},
    {"json_rpc_methods_access_rights", K_OBJ, O_ZERO, O_ZERO, f_rules},
    {"mcp_primitives", K_LIST, O_EMPTY, O_EMPTY, f_prim},
    {"mcp_access_rights", K_OBJ, O_ZERO, O_ZERO, pa_f_mcp},
    END};
#undef END
/* clang-format on */

/* The known members of <in>, found as Go finds them, under Go's names; a
 * missing or null member stays absent (Go's nil). Caller frees. */
cJSON *pa_canon(const cJSON *in, const pa_field_t *f)
{
    cJSON *out = cJSON_CreateObject();
    for (; f->name != NULL; f++) {
        const cJSON *v = get(in, f->name), *e;
        cJSON *c = NULL;
        if (v == NULL || f->kind == K_LIMIT)
            continue;
        switch (f->kind) {
        case K_STR:
            c = cJSON_IsString(v) ? cJSON_CreateString(v->valuestring) : NULL;
            break;
        case K_NUM:
            c = cJSON_IsNumber(v) ? cJSON_CreateNumber(v->valuedouble) : NULL;
            break;
        case K_BOOL:
            c = cJSON_IsBool(v) ? cJSON_CreateBool(cJSON_IsTrue(v)) : NULL;
            break;
        case K_STRS:
        case K_LIST:
            if (!cJSON_IsArray(v))
                break;
            c = cJSON_CreateArray();
            cJSON_ArrayForEach(e, v)
            {
                if (f->kind == K_LIST)
                    cJSON_AddItemToArray(c, pa_canon(e, f->sub));
                else if (cJSON_IsString(e))
                    cJSON_AddItemToArray(c, cJSON_CreateString(e->valuestring));
            }
            break;
        case K_OBJ:
            c = cJSON_IsObject(v) ? pa_canon(v, f->sub) : NULL;
            break;
        default:
            c = cJSON_Duplicate(v, 1);
        }
        if (c != NULL)
            cJSON_AddItemToObject(out, f->name, c);
    }
    return out;
}

/* Go's zero value test; inside a struct with an IsZero method, an empty
 * list counts as zero too (AccessControlRules.IsEmpty uses len). */
static int is_zero(const cJSON *v, const pa_field_t *f, int in_struct)
{
    if (v == NULL)
        return 1;
    switch (f->kind) {
    case K_STR:
        return v->valuestring[0] == '\0';
    case K_NUM:
        return v->valuedouble == 0;
    case K_BOOL:
        return !cJSON_IsTrue(v);
    case K_STRS:
    case K_LIST:
        return in_struct && cJSON_GetArraySize(v) == 0;
    case K_OBJ:
        for (const pa_field_t *s = f->sub; s->name != NULL; s++)
            if (!is_zero(mem(v, s->name), s, 1))
                return 0;
        return 1;
    default:
        return 0;
    }
}

int pa_omitted(const cJSON *v, const pa_field_t *f, int rule)
{
    if (rule == O_ZERO)
        return is_zero(v, f, 0);
    if (rule == O_NO || f->kind == K_OBJ) /* omitempty never drops a struct */
        return 0;
    if (f->kind == K_STRS || f->kind == K_LIST)
        return v == NULL || cJSON_GetArraySize(v) == 0;
    return is_zero(v, f, 0);
}

static cJSON *emit_limit(const pa_limit_t *l, int full)
{
    static const char *const ints[] = {
        "throttle_retry_limit", "max_query_depth", "quota_max",
        "quota_renews",         "quota_remaining", "quota_renewal_rate"};
    const long long iv[] = {l->throttle_retry_limit, l->max_query_depth, l->quota_max,
                            l->quota_renews,         l->quota_remaining, l->quota_renewal_rate};
    cJSON *o = cJSON_CreateObject();
    if (full || l->rate != 0)
        cJSON_AddNumberToObject(o, "rate", l->rate);
    if (full || l->per != 0)
        cJSON_AddNumberToObject(o, "per", l->per);
    if (l->smoothing != NULL)
        cJSON_AddItemToObject(o, "smoothing", dup(l->smoothing));
    if (full || l->throttle_interval != 0)
        cJSON_AddNumberToObject(o, "throttle_interval", l->throttle_interval);
    for (size_t i = 0; i < sizeof(iv) / sizeof(iv[0]); i++)
        if (full || iv[i] != 0)
            cJSON_AddNumberToObject(o, ints[i], (double)iv[i]);
    return o;
}

cJSON *pa_emit(const cJSON *c, const pa_field_t *f, int full, const pa_limit_t *lim);

static cJSON *emit_value(const cJSON *v, const pa_field_t *f, int full)
{
    const cJSON *e;
    cJSON *a;
    switch (f->kind) {
    case K_STR:
        return cJSON_CreateString(v != NULL ? v->valuestring : "");
    case K_NUM:
        return cJSON_CreateNumber(v != NULL ? v->valuedouble : 0);
    case K_BOOL:
        return cJSON_CreateBool(cJSON_IsTrue(v));
    case K_OBJ:
        return pa_emit(v, f->sub, full, NULL);
    case K_LIST:
        if (v == NULL)
            return cJSON_CreateNull();
        a = cJSON_CreateArray();
        cJSON_ArrayForEach(e, v) cJSON_AddItemToArray(a, pa_emit(e, f->sub, full, NULL));
        return a;
    default:
        return v != NULL ? dup(v) : cJSON_CreateNull();
    }
}

/* Canonical <c> as Go marshals the struct <f> in the chosen form; <lim> is
 * the access definition's limit. Caller frees. */
cJSON *pa_emit(const cJSON *c, const pa_field_t *f, int full, const pa_limit_t *lim)
{
    cJSON *out = cJSON_CreateObject();
    for (; f->name != NULL; f++) {
        if (f->kind == K_LIMIT) {
            if (full || !pa_limit_empty(lim))
                cJSON_AddItemToObject(out, f->name, emit_limit(lim, full));
            continue;
        }
        const cJSON *v = mem(c, f->name);
        if (!pa_omitted(v, f, full ? f->full : f->omit))
            cJSON_AddItemToObject(out, f->name, emit_value(v, f, full));
    }
    return out;
}

/* ---- merges (util.go and the helpers of apply.go) ------------------------- */

static int strs_has(const cJSON *a, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (strcmp(e->valuestring, s) == 0) return 1;
    return 0;
}

/* appendIfMissing: takes <dest>, returns it with the strings of <src> it
 * lacks; stays NULL (nil) when there is nothing to add. */
cJSON *pa_strs_union(cJSON *dest, const cJSON *src)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, src)
    {
        if (!cJSON_IsString(s) || strs_has(dest, s->valuestring))
            continue;
        if (dest == NULL)
            dest = cJSON_CreateArray();
        cJSON_AddItemToArray(dest, cJSON_CreateString(s->valuestring));
    }
    return dest;
}

void pa_member_union(cJSON *c, const char *key, const cJSON *src)
{
    give(c, key, pa_strs_union(take(c, key), src));
}

static cJSON *find_by(cJSON *list, const char *key, const char *val)
{
    cJSON *e;
    cJSON_ArrayForEach(e, list) if (strcmp(str(e, key), val) == 0) return e;
    return NULL;
}

/* MergeAllowedURLs: specs keyed by url in first-seen order, methods unioned;
 * nil when empty. Takes <a>, borrows <b>. */
cJSON *pa_urls_merge(cJSON *a, const cJSON *b)
{
    const cJSON *lists[2] = {a, b}, *spec;
    cJSON *out = NULL;
    for (int i = 0; i < 2; i++)
        cJSON_ArrayForEach(spec, lists[i])
        {
            cJSON *have = find_by(out, "url", str(spec, "url"));
            if (have != NULL) {
                pa_member_union(have, "methods", mem(spec, "methods"));
                continue;
            }
            if (out == NULL)
                out = cJSON_CreateArray();
            cJSON_AddItemToArray(out, dup(spec));
        }
    cJSON_Delete(a);
    return out;
}

/* GraphQL restricted/allowed types: fields unioned per type name. 5.8 and
 * earlier intersected the fields of types both policies name instead.
 * Takes <dest>, borrows <src>. */
cJSON *pa_types_merge(cJSON *dest, const cJSON *src)
{
    const cJSON *t;
    if (cJSON_GetArraySize(dest) == 0) {
        cJSON_Delete(dest);
        return dup(src);
    }
    cJSON_ArrayForEach(t, src)
    {
        cJSON *d = find_by(dest, "name", str(t, "name"));
        if (d != NULL)
            pa_member_union(d, "fields", mem(t, "fields"));
        else
            cJSON_AddItemToArray(dest, dup(t));
    }
    return dest;
}

/* Field-level depth limits: the larger (-1 = unlimited) per type and field.
 * Takes <dest>, borrows <src>. */
cJSON *pa_fields_merge(cJSON *dest, const cJSON *src)
{
    const cJSON *far;
    if (cJSON_GetArraySize(dest) == 0) {
        cJSON_Delete(dest);
        return dup(src);
    }
    cJSON_ArrayForEach(far, src)
    {
        int exists = 0;
        cJSON *r;
        long long depth = inum(mem(far, "limits"), "max_query_depth");
        cJSON_ArrayForEach(r, dest)
        {
            if (strcmp(str(r, "type_name"), str(far, "type_name")) != 0 ||
                strcmp(str(r, "field_name"), str(far, "field_name")) != 0)
                continue;
            exists = 1;
            if (pa_gt_unlimited(depth, inum(mem(r, "limits"), "max_query_depth"))) {
                cJSON *l = cJSON_CreateObject();
                cJSON_AddNumberToObject(l, "max_query_depth", (double)depth);
                give(r, "limits", l);
            }
        }
        if (!exists)
            cJSON_AddItemToArray(dest, dup(far));
    }
    return dest;
}

static int rules_empty(const cJSON *r)
{
    return cJSON_GetArraySize(mem(r, "allowed")) == 0 && cJSON_GetArraySize(mem(r, "blocked")) == 0;
}

/* mergeACLRules (master only): allowed and blocked lists unioned. Takes
 * <dst>, borrows <src>. */
cJSON *pa_rules_merge(cJSON *dst, const cJSON *src)
{
    if (rules_empty(src))
        return dst;
    if (rules_empty(dst)) {
        cJSON_Delete(dst);
        return dup(src);
    }
    pa_member_union(dst, "allowed", mem(src, "allowed"));
    pa_member_union(dst, "blocked", mem(src, "blocked"));
    return dst;
}

/* Is list entry <e> the one named like <m>? MCP primitives key on type too. */
static int same_name(const cJSON *e, const cJSON *m, int typed)
{
    return strcmp(str(e, "name"), str(m, "name")) == 0 &&
           (!typed || strcmp(str(e, "type"), str(m, "type")) == 0);
}

static cJSON *find_named(cJSON *list, const cJSON *m, int typed)
{
    cJSON *e;
    cJSON_ArrayForEach(e, list) if (same_name(e, m, typed)) return e;
    return NULL;
}

/* ApplyJSONRPCMethodLimits / ApplyMCPPrimitiveLimits (master only): the
 * policy's entry replaces the current one when it allows more requests or
 * the current one is unlimited. Go returns map order; this keeps first-seen
 * order. Borrows both lists. */
static cJSON *named_merge(const cJSON *policy, const cJSON *curr, int typed)
{
    const cJSON *m;
    if (cJSON_GetArraySize(curr) == 0)
        return dup(policy);
    if (cJSON_GetArraySize(policy) == 0)
        return dup(curr);
    cJSON *out = cJSON_CreateArray();
    const cJSON *lists[2] = {curr, policy};
    for (int i = 0; i < 2; i++)
        cJSON_ArrayForEach(m, lists[i])
        {
            cJSON *have = find_named(out, m, typed);
            if (have == NULL) {
                cJSON_AddItemToArray(out, dup(m));
                continue;
            }
            long long cd = rl_duration(mem(have, "limit"));
            if (i == 0 || rl_duration(mem(m, "limit")) < cd || cd == 0)
                cJSON_ReplaceItemViaPointer(out, have, dup(m));
        }
    return out;
}

/* Endpoints.Map: "method:path" -> limit, a later duplicate winning. */
typedef struct {
    char *key;
    const cJSON *limit; /* borrowed */
} pa_ep_t;

typedef struct {
    pa_ep_t *v;
    size_t n;
} pa_epmap_t;

static pa_ep_t *ep_find(pa_epmap_t *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].key, key) == 0)
            return &m->v[i];
    return NULL;
}

static void ep_map(const cJSON *eps, pa_epmap_t *m)
{
    const cJSON *e, *meth;
    memset(m, 0, sizeof(*m));
    cJSON_ArrayForEach(e, eps) cJSON_ArrayForEach(meth, mem(e, "methods"))
    {
        const char *name = str(meth, "name"), *path = str(e, "path");
        size_t len = strlen(name) + strlen(path) + 2;
        char *key = tp_malloc(len);
        snprintf(key, len, "%s:%s", name, path);
        pa_ep_t *have = ep_find(m, key);
        if (have != NULL) {
            have->limit = mem(meth, "limit");
            free(key);
            continue;
        }
        m->v = tp_realloc(m->v, (m->n + 1) * sizeof(*m->v));
        m->v[m->n].key = key;
        m->v[m->n++].limit = mem(meth, "limit");
    }
}

static void ep_free(pa_epmap_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].key);
    free(m->v);
}

/* Sort by path, then by upper-cased method, as EndpointsMap.Endpoints does. */
static int ep_cmp(const void *a, const void *b)
{
    const char *ka = ((const pa_ep_t *)a)->key, *kb = ((const pa_ep_t *)b)->key;
    const char *pa = strchr(ka, ':'), *pb = strchr(kb, ':');
    int c = strcmp(pa, pb);
    for (size_t i = 0; c == 0 && ka + i < pa && kb + i < pb; i++)
        c = toupper((unsigned char)ka[i]) - toupper((unsigned char)kb[i]);
    if (c == 0 && pa - ka != pb - kb)
        c = pa - ka < pb - kb ? -1 : 1;
    return c != 0 ? c : strcmp(ka, kb);
}

/* EndpointsMap.Endpoints: grouped by path, sorted. A key whose "method:path"
 * does not split into exactly two parts (a ':' in the path) is dropped, as
 * Go's strings.Split check drops it. Nil when empty. */
static cJSON *ep_list(pa_epmap_t *m)
{
    cJSON *out = NULL, *methods = NULL;
    const char *last = NULL;
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *c = strchr(m->v[i].key, ':');
        if (strchr(c + 1, ':') == NULL)
            m->v[n++] = m->v[i];
        else
            free(m->v[i].key);
    }
    m->n = n;
    if (m->n > 1)
        qsort(m->v, m->n, sizeof(*m->v), ep_cmp);
    for (size_t i = 0; i < m->n; i++) {
        const char *path = strchr(m->v[i].key, ':') + 1;
        if (last == NULL || strcmp(last, path) != 0) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "path", path);
            methods = cJSON_AddArrayToObject(e, "methods");
            if (out == NULL)
                out = cJSON_CreateArray();
            cJSON_AddItemToArray(out, e);
            last = path;
        }
        cJSON *meth = cJSON_CreateObject();
        char *name = tp_strndup(m->v[i].key, (unsigned long)(path - 1 - m->v[i].key));
        cJSON_AddStringToObject(meth, "name", name);
        free(name);
        if (m->v[i].limit != NULL)
            cJSON_AddItemToObject(meth, "limit", dup(m->v[i].limit));
        cJSON_AddItemToArray(methods, meth);
    }
    return out;
}

/* ApplyEndpointLevelLimits: per method and path the limit allowing more
 * requests wins; at equal duration the higher rate. Borrows both lists. */
static cJSON *endpoints_merge(const cJSON *policy, const cJSON *curr)
{
    pa_epmap_t cm, pm;
    cJSON *out;
    ep_map(curr, &cm);
    if (cm.n == 0) {
        ep_free(&cm);
        return dup(policy);
    }
    ep_map(policy, &pm);
    if (pm.n == 0) {
        out = ep_list(&cm);
    } else {
        for (size_t i = 0; i < cm.n; i++) {
            pa_ep_t *p = ep_find(&pm, cm.v[i].key);
            if (p == NULL) {
                pm.v = tp_realloc(pm.v, (pm.n + 1) * sizeof(*pm.v));
                pm.v[pm.n].key = tp_strdup(cm.v[i].key);
                pm.v[pm.n++].limit = cm.v[i].limit;
                continue;
            }
            long long pd = rl_duration(p->limit), cd = rl_duration(cm.v[i].limit);
            if (pd > cd || (pd == cd && num(cm.v[i].limit, "rate") > num(p->limit, "rate")))
                p->limit = cm.v[i].limit;
        }
        out = ep_list(&pm);
    }
    ep_free(&cm);
    ep_free(&pm);
    return out;
}

/* The per-request limit lists of access definition <into>, merged from the
 * policy side <pol> and the current side <cur> (either may be <into>). */
void pa_rate_lists_merge(cJSON *into, const cJSON *pol, const cJSON *cur)
{
    give(into, "endpoints", endpoints_merge(mem(pol, "endpoints"), mem(cur, "endpoints")));
    give(into, "json_rpc_methods",
         named_merge(mem(pol, "json_rpc_methods"), mem(cur, "json_rpc_methods"), 0));
    give(into, "mcp_primitives",
         named_merge(mem(pol, "mcp_primitives"), mem(cur, "mcp_primitives"), 1));
}
