/*
 * conf/tp_policy_apply.c: Tyk's policy application (internal/policy/apply.go
 * Service.Apply and util.go, master), on cJSON trees.
 *
 * Sessions and policies are read as Go's encoding/json reads them (members
 * matched case-insensitively, the last of duplicates winning, unknown members
 * ignored). Access definitions are turned into a canonical object with Go's
 * member names (the limit kept apart as numbers), merged, and written back
 * in the session's form, so what comes out is what Tyk would marshal.
 *
 * Where 5.3 and 5.8 differ from master, a comment says so.
 */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_policy_apply.h"

/* ---- reading values with Go's types --------------------------------------- */

static const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_IsObject(obj) ? tp_json_get(obj, key) : NULL;
    return v != NULL && !cJSON_IsNull(v) ? v : NULL;
}

static double num(const cJSON *obj, const char *key)
{
    const cJSON *v = get(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static long long inum(const cJSON *obj, const char *key)
{
    double d = num(obj, key);
    /* Go refuses such numbers for int64 fields; clamp rather than overflow */
    if (d >= 9.2233720368547758e18)
        return LLONG_MAX;
    if (d <= -9.2233720368547758e18)
        return LLONG_MIN;
    return (long long)d;
}

static int flag(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(get(obj, key));
}

static const char *str(const cJSON *obj, const char *key)
{
    const cJSON *v = get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* <o> when it is an object, else NULL: what a Go map field decodes from. */
static const cJSON *members(const cJSON *o)
{
    return cJSON_IsObject(o) ? o : NULL;
}

/* Is <m> the last member of its object with its exact name? A Go map keeps
 * the last of duplicate keys. */
static int last_of_name(const cJSON *m)
{
    for (const cJSON *n = m->next; n != NULL; n = n->next)
        if (strcmp(n->string, m->string) == 0)
            return 0;
    return 1;
}

/* ---- rate limits ----------------------------------------------------------- */

/* user.RateLimit.Duration: nanoseconds between two allowed requests, 0 when
 * unlimited. Go truncates the float; an out-of-range conversion gives
 * INT64_MIN on amd64, so a huge per/rate sorts as the shortest. */
static long long duration(double rate, double per)
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
    return duration(num(limit, "rate"), num(limit, "per"));
}

/* util.go greaterThanInt64: -1 means unlimited and beats everything. */
static int gt_unlimited(long long a, long long b)
{
    if (a == -1)
        return 1;
    if (b == -1)
        return 0;
    return a > b;
}

/* user.APILimit; set_by is Go's `json:"-"` SetBy, never written out. */
typedef struct {
    double rate, per, throttle_interval;
    const cJSON *smoothing; /* borrowed; NULL is Go's nil */
    long long throttle_retry_limit, max_query_depth, quota_max, quota_renews, quota_remaining,
        quota_renewal_rate;
    const char *set_by; /* borrowed; NULL or "" when unset */
} pa_limit_t;

static void limit_read(const cJSON *l, pa_limit_t *out)
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
static int limit_empty(const pa_limit_t *l)
{
    return l->rate == 0 && l->per == 0 && l->throttle_interval == 0 &&
           l->throttle_retry_limit == 0 && l->max_query_depth == 0 && l->quota_max == 0 &&
           l->quota_renews == 0 && l->quota_remaining == 0 && l->quota_renewal_rate == 0 &&
           (l->set_by == NULL || l->set_by[0] == '\0');
}

/* ---- canonical access definitions ----------------------------------------- */

enum { K_STR, K_NUM, K_BOOL, K_STRS, K_OBJ, K_LIST, K_RAW, K_LIMIT };
/* When a field is left out: never, Go's omitempty, Go's omitzero. */
enum { O_NO, O_EMPTY, O_ZERO };

/* One member of a Go struct: its JSON name, its kind, how it is omitted in
 * the full form (5.8's tags, master's for fields 5.8 lacks) and in master's. */
typedef struct pa_field_s {
    const char *name;
    unsigned char kind, full, omit;
    const struct pa_field_s *sub;
} pa_field_t;

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
static const pa_field_t f_mcp[] = {{"tools", K_OBJ, O_ZERO, O_ZERO, f_rules},
    {"resources", K_OBJ, O_ZERO, O_ZERO, f_rules}, {"prompts", K_OBJ, O_ZERO, O_ZERO, f_rules},
    END};
/* user.AccessDefinition, in Go's field order */
static const pa_field_t f_access[] = {
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
    {"mcp_access_rights", K_OBJ, O_ZERO, O_ZERO, f_mcp},
    END};
#undef END
/* clang-format on */

/* The known members of <in>, found as Go finds them, under Go's names; a
 * missing or null member stays absent (Go's nil). Caller frees. */
static cJSON *canon(const cJSON *in, const pa_field_t *f)
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
                    cJSON_AddItemToArray(c, canon(e, f->sub));
                else if (cJSON_IsString(e))
                    cJSON_AddItemToArray(c, cJSON_CreateString(e->valuestring));
            }
            break;
        case K_OBJ:
            c = cJSON_IsObject(v) ? canon(v, f->sub) : NULL;
            break;
        default:
            c = cJSON_Duplicate(v, 1);
        }
        if (c != NULL)
            cJSON_AddItemToObject(out, f->name, c);
    }
    return out;
}

static cJSON *mem(const cJSON *c, const char *key)
{
    return c != NULL ? cJSON_GetObjectItemCaseSensitive(c, key) : NULL;
}

/* Detaches member <key> of canonical <c> (caller owns it) / gives it back. */
static cJSON *take(cJSON *c, const char *key)
{
    return cJSON_DetachItemFromObjectCaseSensitive(c, key);
}

static void give(cJSON *c, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(c, key);
    if (v != NULL)
        cJSON_AddItemToObject(c, key, v);
}

static cJSON *dup(const cJSON *v)
{
    return v != NULL ? cJSON_Duplicate(v, 1) : NULL;
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

static int omitted(const cJSON *v, const pa_field_t *f, int rule)
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

static cJSON *emit(const cJSON *c, const pa_field_t *f, int full, const pa_limit_t *lim);

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
        return emit(v, f->sub, full, NULL);
    case K_LIST:
        if (v == NULL)
            return cJSON_CreateNull();
        a = cJSON_CreateArray();
        cJSON_ArrayForEach(e, v) cJSON_AddItemToArray(a, emit(e, f->sub, full, NULL));
        return a;
    default:
        return v != NULL ? dup(v) : cJSON_CreateNull();
    }
}

/* Canonical <c> as Go marshals the struct <f> in the chosen form; <lim> is
 * the access definition's limit. Caller frees. */
static cJSON *emit(const cJSON *c, const pa_field_t *f, int full, const pa_limit_t *lim)
{
    cJSON *out = cJSON_CreateObject();
    for (; f->name != NULL; f++) {
        if (f->kind == K_LIMIT) {
            if (full || !limit_empty(lim))
                cJSON_AddItemToObject(out, f->name, emit_limit(lim, full));
            continue;
        }
        const cJSON *v = mem(c, f->name);
        if (!omitted(v, f, full ? f->full : f->omit))
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
static cJSON *strs_union(cJSON *dest, const cJSON *src)
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

static void member_union(cJSON *c, const char *key, const cJSON *src)
{
    give(c, key, strs_union(take(c, key), src));
}

static cJSON *find_by(cJSON *list, const char *key, const char *val)
{
    cJSON *e;
    cJSON_ArrayForEach(e, list) if (strcmp(str(e, key), val) == 0) return e;
    return NULL;
}

/* MergeAllowedURLs: specs keyed by url in first-seen order, methods unioned;
 * nil when empty. Takes <a>, borrows <b>. */
static cJSON *urls_merge(cJSON *a, const cJSON *b)
{
    const cJSON *lists[2] = {a, b}, *spec;
    cJSON *out = NULL;
    for (int i = 0; i < 2; i++)
        cJSON_ArrayForEach(spec, lists[i])
        {
            cJSON *have = find_by(out, "url", str(spec, "url"));
            if (have != NULL) {
                member_union(have, "methods", mem(spec, "methods"));
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
static cJSON *types_merge(cJSON *dest, const cJSON *src)
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
            member_union(d, "fields", mem(t, "fields"));
        else
            cJSON_AddItemToArray(dest, dup(t));
    }
    return dest;
}

/* Field-level depth limits: the larger (-1 = unlimited) per type and field.
 * Takes <dest>, borrows <src>. */
static cJSON *fields_merge(cJSON *dest, const cJSON *src)
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
            if (gt_unlimited(depth, inum(mem(r, "limits"), "max_query_depth"))) {
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
static cJSON *rules_merge(cJSON *dst, const cJSON *src)
{
    if (rules_empty(src))
        return dst;
    if (rules_empty(dst)) {
        cJSON_Delete(dst);
        return dup(src);
    }
    member_union(dst, "allowed", mem(src, "allowed"));
    member_union(dst, "blocked", mem(src, "blocked"));
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
static void rate_lists_merge(cJSON *into, const cJSON *pol, const cJSON *cur)
{
    give(into, "endpoints", endpoints_merge(mem(pol, "endpoints"), mem(cur, "endpoints")));
    give(into, "json_rpc_methods",
         named_merge(mem(pol, "json_rpc_methods"), mem(cur, "json_rpc_methods"), 0));
    give(into, "mcp_primitives",
         named_merge(mem(pol, "mcp_primitives"), mem(cur, "mcp_primitives"), 1));
}

/* ---- the computed access rights ------------------------------------------- */

typedef struct {
    const char *api; /* map key; borrowed from the tree it came from */
    cJSON *ad;       /* canonical AccessDefinition without its limit; owned */
    pa_limit_t lim;
    unsigned acl : 1, quota : 1, rate : 1, complexity : 1; /* applyStatus did* */
} pa_right_t;

typedef struct {
    pa_right_t *v;
    size_t n;
} pa_rights_t;

static pa_right_t *right_find(const pa_rights_t *rs, const char *api)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i].api, api) == 0)
            return &rs->v[i];
    return NULL;
}

/* The entry for <api>, added empty when missing. */
static pa_right_t *right_get(pa_rights_t *rs, const char *api)
{
    pa_right_t *r = right_find(rs, api);
    if (r != NULL)
        return r;
    rs->v = tp_realloc(rs->v, (rs->n + 1) * sizeof(*rs->v));
    r = &rs->v[rs->n++];
    memset(r, 0, sizeof(*r));
    r->api = api;
    r->ad = cJSON_CreateObject();
    return r;
}

static void rights_free(pa_rights_t *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        cJSON_Delete(rs->v[i].ad);
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
}

static int right_cmp(const void *a, const void *b)
{
    return strcmp(((const pa_right_t *)a)->api, ((const pa_right_t *)b)->api);
}

/* ---- session and policy ---------------------------------------------------- */

/* The SessionState fields Apply reads or writes; <l> holds the root limits
 * (rate, per, quota_*, ...), which have the names of APILimit's. */
typedef struct {
    pa_limit_t l;
    long long post_expiry_grace_period;
    int hmac, http_sig, inactive, full, own_map;
    const char *last_updated, *post_expiry_action; /* borrowed */
    cJSON *meta, *ptags;                           /* owned */
    pa_rights_t own;                               /* session.AccessRights */
} pa_session_t;

typedef struct {
    const cJSON *json;
    const char *id;
    int quota, rate, complexity, acl, per_api;
} pa_policy_t;

typedef struct {
    pa_rights_t rights;
    int did_per_api, did_partition;
} pa_state_t;

static void policy_read(const cJSON *json, pa_policy_t *p)
{
    const cJSON *pt = get(json, "partitions");
    p->json = json;
    p->id = str(json, "id");
    p->quota = flag(pt, "quota");
    p->rate = flag(pt, "rate_limit");
    p->complexity = flag(pt, "complexity");
    p->acl = flag(pt, "acl");
    p->per_api = flag(pt, "per_api");
}

/* Policy.APILimit: the policy's fields of those names (it has no quota_renews
 * or quota_remaining). */
static void policy_limit(const pa_policy_t *p, pa_limit_t *l)
{
    limit_read(p->json, l);
    l->quota_renews = l->quota_remaining = 0;
}

/* ClearSession: zero what the policy's partitions will set, so a policy's
 * value is not lost to a larger one already on the session. */
static void clear_for(pa_session_t *s, const pa_policy_t *p)
{
    int all = !(p->quota || p->rate || p->acl || p->complexity);
    if (p->quota || all)
        s->l.quota_max = s->l.quota_remaining = 0;
    if (p->rate || all) {
        s->l.rate = s->l.per = s->l.throttle_interval = 0;
        s->l.smoothing = NULL;
        s->l.throttle_retry_limit = 0;
    }
    if (p->complexity || all)
        s->l.max_query_depth = 0;
}

/* ApplyRateLimits: the policy's rate replaces one that is unset or allows
 * fewer requests, judged by per/rate; on the API's limit and the session's.
 * 5.3 took the larger rate and the larger per separately. */
static void apply_rate(pa_limit_t *to, const pa_limit_t *pl)
{
    if (pl->rate == 0 || pl->per == 0)
        return;
    if (to->rate == 0 || to->per == 0 ||
        duration(to->rate, to->per) > duration(pl->rate, pl->per)) {
        to->rate = pl->rate;
        to->per = pl->per;
        to->smoothing = pl->smoothing;
    }
}

/* Raises an API's limit to the policy's <v> when <v> is larger (-1 being
 * the largest when <unlimited>), and then the session's likewise. */
static void raise_limit(long long v, long long *api, long long *root, int unlimited)
{
    if (unlimited ? !gt_unlimited(v, *api) : v <= *api)
        return;
    *api = v;
    if (unlimited ? gt_unlimited(v, *root) : v > *root)
        *root = v;
}

static const char err_mixed[] =
    "cannot apply multiple policies when some have per_api set and some are partitioned";

/* applyPartitions: a policy without partitions, or with some. 5.3 copied the
 * policy's access definition (api_name, api_id and all) as the start; since
 * 5.8 an API's entry starts empty and only merged fields carry over. */
static int apply_partitions(const pa_policy_t *p, pa_session_t *s, pa_state_t *st)
{
    int parts = p->quota || p->rate || p->acl || p->complexity;
    const cJSON *ars = get(p->json, "access_rights"), *v;
    pa_limit_t pl;
    if (parts && st->did_per_api)
        return -1;
    policy_limit(p, &pl);
    cJSON_ArrayForEach(v, members(ars))
    {
        if (!last_of_name(v))
            continue;
        pa_right_t *r = right_get(&st->rights, v->string);
        cJSON *pad = canon(v, f_access);
        if (!parts || p->acl) {
            r->acl = 1;
            if (cJSON_IsTrue(mem(pad, "disable_introspection")))
                give(r->ad, "disable_introspection", cJSON_CreateTrue());
            member_union(r->ad, "versions", mem(pad, "versions"));
            give(r->ad, "allowed_urls",
                 urls_merge(take(r->ad, "allowed_urls"), mem(pad, "allowed_urls")));
            give(r->ad, "restricted_types",
                 types_merge(take(r->ad, "restricted_types"), mem(pad, "restricted_types")));
            give(r->ad, "allowed_types",
                 types_merge(take(r->ad, "allowed_types"), mem(pad, "allowed_types")));
            give(r->ad, "field_access_rights",
                 fields_merge(take(r->ad, "field_access_rights"), mem(pad, "field_access_rights")));
            give(r->ad, "json_rpc_methods_access_rights",
                 rules_merge(take(r->ad, "json_rpc_methods_access_rights"),
                             mem(pad, "json_rpc_methods_access_rights")));
            cJSON *mcp = take(r->ad, "mcp_access_rights"), *pmcp = mem(pad, "mcp_access_rights");
            if (mcp == NULL)
                mcp = cJSON_CreateObject();
            for (const pa_field_t *f = f_mcp; f->name != NULL; f++)
                give(mcp, f->name, rules_merge(take(mcp, f->name), mem(pmcp, f->name)));
            give(r->ad, "mcp_access_rights", mcp);
            r->lim.set_by = p->id;
        }
        if (!parts || p->quota) {
            r->quota = 1;
            raise_limit(pl.quota_max, &r->lim.quota_max, &s->l.quota_max, 1);
            raise_limit(pl.quota_renewal_rate, &r->lim.quota_renewal_rate, &s->l.quota_renewal_rate,
                        0);
        }
        if (!parts || p->rate) {
            r->rate = 1;
            apply_rate(&r->lim, &pl);
            apply_rate(&s->l, &pl);
            /* endpoints since 5.8; JSON-RPC methods and MCP primitives master only */
            rate_lists_merge(r->ad, pad, r->ad);
            raise_limit(pl.throttle_retry_limit, &r->lim.throttle_retry_limit,
                        &s->l.throttle_retry_limit, 0);
            if (pl.throttle_interval > r->lim.throttle_interval) {
                r->lim.throttle_interval = pl.throttle_interval;
                if (pl.throttle_interval > s->l.throttle_interval)
                    s->l.throttle_interval = pl.throttle_interval;
            }
        }
        if (!parts || p->complexity) {
            r->complexity = 1;
            raise_limit(pl.max_query_depth, &r->lim.max_query_depth, &s->l.max_query_depth, 1);
        }
        /* the quota window already running for this API is kept */
        const pa_right_t *own = right_find(&s->own, v->string);
        if (own != NULL && !limit_empty(&own->lim))
            r->lim.quota_renews = own->lim.quota_renews;
        cJSON_Delete(pad);
    }
    if (cJSON_GetArraySize(ars) == 0) {
        /* a "master" policy: its values go straight onto the session */
        if (!parts || p->rate) {
            s->l.rate = pl.rate;
            s->l.per = pl.per;
            s->l.smoothing = pl.smoothing;
            s->l.throttle_interval = pl.throttle_interval;
            s->l.throttle_retry_limit = pl.throttle_retry_limit;
        }
        if (!parts || p->complexity)
            s->l.max_query_depth = pl.max_query_depth;
        if (!parts || p->quota) {
            s->l.quota_max = pl.quota_max;
            s->l.quota_renewal_rate = pl.quota_renewal_rate;
        }
    }
    s->hmac = s->hmac || flag(p->json, "hmac_enabled");
    s->http_sig = s->http_sig || flag(p->json, "enable_http_signature_validation");
    /* Go overwrites this on every policy: only the last one counts */
    st->did_partition = parts;
    return 0;
}

/* applyAPILevelLimits: a per_api policy's entry against what an earlier
 * policy set for the same API (5.8 and master; 5.3 overwrote). */
static void api_level_limits(pa_right_t *pol, const pa_right_t *cur)
{
    int updated = 0;
    if (duration(pol->lim.rate, pol->lim.per) > duration(cur->lim.rate, cur->lim.per)) {
        pol->lim.rate = cur->lim.rate;
        pol->lim.per = cur->lim.per;
        pol->lim.smoothing = cur->lim.smoothing;
        updated = 1;
    }
    if (gt_unlimited(cur->lim.quota_max, pol->lim.quota_max) &&
        cur->lim.quota_max != pol->lim.quota_max) {
        pol->lim.quota_max = cur->lim.quota_max;
        updated = 1;
    }
    if (gt_unlimited(cur->lim.quota_renewal_rate, pol->lim.quota_renewal_rate))
        pol->lim.quota_renewal_rate = cur->lim.quota_renewal_rate;
    if (pol->lim.quota_max == -1)
        pol->lim.quota_renewal_rate = 0;
    if (updated) {
        pol->lim.set_by = cur->lim.set_by;
        give(pol->ad, "allowance_scope", dup(mem(cur->ad, "allowance_scope")));
    }
    rate_lists_merge(pol->ad, pol->ad, cur->ad);
}

/* applyPerAPI: each API takes the policy's own per-API limit, counted under
 * the API's ID; an API without one takes the policy-level values, counted
 * under the policy's ID. */
static int apply_per_api(const pa_policy_t *p, pa_session_t *s, pa_state_t *st)
{
    const cJSON *ars = get(p->json, "access_rights"), *v;
    if (st->did_partition)
        return -1;
    cJSON_ArrayForEach(v, members(ars))
    {
        if (!last_of_name(v))
            continue;
        pa_right_t n = {.api = v->string,
                        .ad = canon(v, f_access),
                        .acl = 1,
                        .quota = 1,
                        .rate = 1,
                        .complexity = 1};
        const char *scope = v->string;
        limit_read(get(v, "limit"), &n.lim);
        if (limit_empty(&n.lim)) {
            scope = p->id;
            policy_limit(p, &n.lim);
        }
        give(n.ad, "allowance_scope", cJSON_CreateString(scope));
        n.lim.set_by = scope;
        const pa_right_t *own = right_find(&s->own, v->string);
        if (own != NULL && !limit_empty(&own->lim))
            n.lim.quota_renews = own->lim.quota_renews;
        if (own != NULL && cJSON_IsTrue(mem(own->ad, "disable_introspection")))
            give(n.ad, "disable_introspection", cJSON_CreateTrue());
        pa_right_t *cur = right_find(&st->rights, v->string);
        if (cur == NULL) {
            cur = right_get(&st->rights, v->string);
        } else {
            api_level_limits(&n, cur);
        }
        cJSON_Delete(cur->ad);
        *cur = n;
    }
    if (cJSON_GetArraySize(ars) > 0)
        st->did_per_api = 1;
    return 0;
}

/* ---- reading and writing the session -------------------------------------- */

static void session_read(const cJSON *js, pa_session_t *s)
{
    const cJSON *ar = get(js, "access_rights"), *md = get(js, "meta_data"), *m;
    memset(s, 0, sizeof(*s));
    s->full = get(js, "last_check") != NULL || get(js, "allowance") != NULL;
    limit_read(js, &s->l);
    s->post_expiry_grace_period = inum(js, "post_expiry_grace_period");
    s->hmac = flag(js, "hmac_enabled");
    s->http_sig = flag(js, "enable_http_signature_validation");
    s->inactive = flag(js, "is_inactive");
    s->last_updated = str(js, "last_updated");
    s->post_expiry_action = str(js, "post_expiry_action");
    s->own_map = cJSON_IsObject(ar);
    cJSON_ArrayForEach(m, members(ar))
    {
        if (!last_of_name(m))
            continue;
        pa_right_t *r = right_get(&s->own, m->string);
        cJSON_Delete(r->ad);
        r->ad = canon(m, f_access);
        limit_read(get(m, "limit"), &r->lim);
    }
    /* Apply gives a nil meta_data map an empty one */
    s->meta = cJSON_CreateObject();
    cJSON_ArrayForEach(m, members(md)) if (last_of_name(m))
        cJSON_AddItemToObject(s->meta, m->string, dup(m));
}

/* Sets <key> of <obj> to <val> (taken), dropping case variants Go would have
 * read into the same field; a NULL <val> removes the member. */
static void put(cJSON *obj, const char *key, cJSON *val)
{
    cJSON *keep = NULL, *it = obj->child, *next;
    for (; it != NULL; it = next) {
        next = it->next;
        if (it->string == NULL || strcasecmp(it->string, key) != 0)
            continue;
        if (keep == NULL && strcmp(it->string, key) == 0)
            keep = it;
        else
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, it));
    }
    if (val == NULL)
        cJSON_Delete(keep != NULL ? cJSON_DetachItemViaPointer(obj, keep) : NULL);
    else if (keep != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, val);
    else
        cJSON_AddItemToObject(obj, key, val);
}

/* A number, bool or string in the session's form: the full form writes
 * zeros, the omit-zero form drops them. */
static cJSON *zval(int full, cJSON *v, int zero)
{
    if (zero && !full) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* Writes Apply's results back; <rights> NULL when an error ended the walk
 * before Go set tags, is_inactive and access_rights. Every new value is
 * built before any member is replaced: they may borrow from those members. */
static void session_write(cJSON *js, pa_session_t *s, pa_rights_t *rights)
{
    const int f = s->full;
    struct {
        const char *key;
        cJSON *val;
    } out[20];
    size_t n = 0;
#define OUT(k, v) (out[n].key = (k), out[n++].val = (v))
#define NUMBER(k, x) OUT(k, zval(f, cJSON_CreateNumber((double)(x)), (x) == 0))
    NUMBER("rate", s->l.rate);
    NUMBER("per", s->l.per);
    NUMBER("throttle_interval", s->l.throttle_interval);
    NUMBER("throttle_retry_limit", s->l.throttle_retry_limit);
    NUMBER("max_query_depth", s->l.max_query_depth);
    NUMBER("quota_max", s->l.quota_max);
    NUMBER("quota_renews", s->l.quota_renews);
    NUMBER("quota_remaining", s->l.quota_remaining);
    NUMBER("quota_renewal_rate", s->l.quota_renewal_rate);
    OUT("smoothing", s->l.smoothing != NULL ? dup(s->l.smoothing) : f ? cJSON_CreateNull() : NULL);
    OUT("hmac_enabled", zval(f, cJSON_CreateBool(s->hmac), !s->hmac));
    OUT("enable_http_signature_validation", zval(f, cJSON_CreateBool(s->http_sig), !s->http_sig));
    OUT("last_updated", zval(f, cJSON_CreateString(s->last_updated), s->last_updated[0] == '\0'));
    /* master only: omitted when zero in either form */
    OUT("post_expiry_action",
        zval(0, cJSON_CreateString(s->post_expiry_action), s->post_expiry_action[0] == '\0'));
    OUT("post_expiry_grace_period", zval(0, cJSON_CreateNumber((double)s->post_expiry_grace_period),
                                         s->post_expiry_grace_period == 0));
    OUT("meta_data", zval(f, s->meta, cJSON_GetArraySize(s->meta) == 0));
    s->meta = NULL;
    if (rights != NULL) {
        OUT("is_inactive", zval(f, cJSON_CreateBool(s->inactive), !s->inactive));
        OUT("tags", zval(f, s->ptags, cJSON_GetArraySize(s->ptags) == 0));
        s->ptags = NULL;
        /* Go writes a map's keys sorted */
        if (rights->n > 1)
            qsort(rights->v, rights->n, sizeof(*rights->v), right_cmp);
        cJSON *ar = rights == &s->own && !s->own_map ? cJSON_CreateNull() : cJSON_CreateObject();
        for (size_t i = 0; i < rights->n; i++)
            cJSON_AddItemToObject(ar, rights->v[i].api,
                                  emit(rights->v[i].ad, f_access, f, &rights->v[i].lim));
        OUT("access_rights", zval(f, ar, rights->n == 0));
    }
#undef NUMBER
#undef OUT
    for (size_t i = 0; i < n; i++)
        put(js, out[i].key, out[i].val);
}

/* ---- Service.Apply --------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* session.GetCustomPolicies: a plugin may leave the policies themselves in
 * meta_data.policies; when that decodes as a list of policies, it replaces
 * the stored ones (in order, none missing). */
static const cJSON *custom_policies(const cJSON *meta)
{
    const cJSON *list = NULL, *m, *e;
    cJSON_ArrayForEach(m, members(meta)) if (strcmp(m->string, "policies") == 0) list = m;
    if (!cJSON_IsArray(list))
        return NULL;
    cJSON_ArrayForEach(e, list) if (!cJSON_IsObject(e) && !cJSON_IsNull(e)) return NULL;
    return list;
}

/* The inherit/scope pass after all policies, then the legacy copy of a
 * single API's limits onto the session root (updateSessionRootVars). */
static void finish_rights(pa_session_t *s, pa_rights_t *rs)
{
    size_t nq = 0, nr = 0, nc = 0, n = 0, scopes = 0;
    const char *first = NULL;
    for (size_t i = 0; i < rs->n; i++) {
        const char *by = rs->v[i].lim.set_by;
        nq += rs->v[i].quota;
        nr += rs->v[i].rate;
        nc += rs->v[i].complexity;
        if (by == NULL || by[0] == '\0')
            continue;
        if (first == NULL) {
            first = by;
            scopes = 1;
        } else if (strcmp(first, by) != 0) {
            scopes = 2;
        }
    }
    for (size_t i = 0; i < rs->n; i++) {
        pa_right_t *r = &rs->v[i];
        if (!r->acl) {
            cJSON_Delete(r->ad);
            continue;
        }
        if (!r->rate) {
            r->lim.rate = s->l.rate;
            r->lim.per = s->l.per;
            r->lim.smoothing = s->l.smoothing;
            r->lim.throttle_interval = s->l.throttle_interval;
            r->lim.throttle_retry_limit = s->l.throttle_retry_limit;
            give(r->ad, "endpoints", NULL);
        }
        if (!r->complexity)
            r->lim.max_query_depth = s->l.max_query_depth;
        if (!r->quota) {
            r->lim.quota_max = s->l.quota_max;
            r->lim.quota_renewal_rate = s->l.quota_renewal_rate;
            r->lim.quota_renews = s->l.quota_renews;
        }
        /* more than one policy granted APIs: each counts under its own */
        if (scopes > 1 && str(r->ad, "allowance_scope")[0] == '\0' && r->lim.set_by != NULL &&
            r->lim.set_by[0] != '\0')
            give(r->ad, "allowance_scope", cJSON_CreateString(r->lim.set_by));
        r->lim.set_by = NULL;
        rs->v[n++] = *r;
    }
    rs->n = n;
    /* Go walks a map here, so with several APIs left the winner is random;
     * in API ID order the last one wins */
    if (rs->n > 1)
        qsort(rs->v, rs->n, sizeof(*rs->v), right_cmp);
    if (nq != 1 || nr != 1 || nc != 1)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        s->l.rate = rs->v[i].lim.rate;
        s->l.per = rs->v[i].lim.per;
        s->l.smoothing = rs->v[i].lim.smoothing;
        s->l.quota_max = rs->v[i].lim.quota_max;
        s->l.quota_renews = rs->v[i].lim.quota_renews;
        s->l.quota_renewal_rate = rs->v[i].lim.quota_renewal_rate;
        s->l.max_query_depth = rs->v[i].lim.max_query_depth;
    }
}

/* SessionState.PolicyIDs()[i]: apply_policies when not empty, else the
 * legacy apply_policy_id. */
static const char *policy_id_at(const cJSON *ids, const char *legacy, size_t i)
{
    const cJSON *e = ids != NULL ? cJSON_GetArrayItem(ids, (int)i) : NULL;
    if (ids == NULL)
        return legacy;
    return cJSON_IsString(e) ? e->valuestring : "";
}

/* One policy of the walk in Apply; -1 with <err> set ends it. */
static int apply_one(const cJSON *pol, const char *api_org, pa_session_t *s, pa_state_t *st,
                     char *err, size_t errlen)
{
    const cJSON *pm = get(pol, "meta_data"), *m;
    pa_policy_t p;
    policy_read(pol, &p);
    /* a policy may only change keys of its own org (5.3 and later, whenever
     * there is an API) */
    if (api_org != NULL && strcmp(str(pol, "org_id"), api_org) != 0)
        return fail(err, errlen,
                    "attempting to apply policy from different organisation to key, skipping");
    if (p.per_api && (p.quota || p.rate || p.acl || p.complexity))
        return fail(err, errlen,
                    "cannot apply policy %s which has per_api and any of partitions set", p.id);
    if ((p.per_api ? apply_per_api(&p, s, st) : apply_partitions(&p, s, st)) < 0)
        return fail(err, errlen, "%s", err_mixed);
    s->inactive = s->inactive || flag(pol, "is_inactive");
    s->ptags = strs_union(s->ptags, get(pol, "tags"));
    cJSON_ArrayForEach(m, members(pm))
    {
        if (cJSON_GetObjectItemCaseSensitive(s->meta, m->string) != NULL)
            cJSON_ReplaceItemInObjectCaseSensitive(s->meta, m->string, dup(m));
        else
            cJSON_AddItemToObject(s->meta, m->string, dup(m));
    }
    /* Go compares the strings, not the numbers they hold */
    if (strcmp(str(pol, "last_updated"), s->last_updated) > 0)
        s->last_updated = str(pol, "last_updated");
    /* post_expiry_*: master only */
    if (str(pol, "post_expiry_action")[0] != '\0')
        s->post_expiry_action = str(pol, "post_expiry_action");
    if (inum(pol, "post_expiry_grace_period") != 0)
        s->post_expiry_grace_period = inum(pol, "post_expiry_grace_period");
    return 0;
}

int tp_policy_apply(cJSON *session, const char *api_org, tp_policy_find_cb find, void *arg,
                    char *err, size_t errlen)
{
    pa_session_t s;
    pa_state_t st;
    pa_policy_t p;
    const cJSON *ids = get(session, "apply_policies");
    const cJSON *custom = custom_policies(get(session, "meta_data"));
    const char *legacy = str(session, "apply_policy_id"), *org = str(session, "org_id");
    int rc = 0;

    if (!cJSON_IsObject(session))
        return fail(err, errlen, "session: expected an object, got %s", tp_json_type_name(session));
    if (cJSON_GetArraySize(ids) == 0)
        ids = NULL;
    size_t n_ids = ids != NULL ? (size_t)cJSON_GetArraySize(ids) : legacy[0] != '\0';
    size_t n = custom != NULL ? (size_t)cJSON_GetArraySize(custom) : n_ids;
    /* master looks policies up by (org, id), the org being the session's or
     * else the API's; 5.8 and earlier by id alone */
    if (org[0] == '\0' && api_org != NULL)
        org = api_org;

    session_read(session, &s);
    memset(&st, 0, sizeof(st));
    /* ClearSession uses the stored policies even when custom ones apply, and
     * stops at the first missing one (5.3 skipped it and went on) */
    for (size_t i = 0; i < n_ids; i++) {
        const cJSON *pol = find(arg, org, policy_id_at(ids, legacy, i));
        if (pol == NULL)
            break;
        policy_read(pol, &p);
        clear_for(&s, &p);
    }
    /* 5.8 and earlier OR'ed in the session's own is_inactive; master lets
     * only the policies decide when there are any */
    if (n > 0)
        s.inactive = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *id = policy_id_at(ids, legacy, i);
        const cJSON *pol = custom != NULL ? cJSON_GetArrayItem(custom, (int)i) : find(arg, org, id);
        if (pol != NULL)
            rc = apply_one(pol, api_org, &s, &st, err, errlen);
        else if (n == 1)
            rc = fail(err, errlen, "policy not found: \"%s\"", id);
    }
    if (rc < 0) {
        /* Go stopped mid-walk: what it had set on the session stays */
        session_write(session, &s, NULL);
        goto out;
    }

    /* tags: the session's and the policies' (Go's order is a map's, random) */
    cJSON *tags = strs_union(strs_union(NULL, get(session, "tags")), s.ptags);
    cJSON_Delete(s.ptags);
    s.ptags = tags != NULL ? tags : cJSON_CreateArray();
    if (n == 0) {
        /* no policies: an API with its own limits counts under its own ID */
        for (size_t i = 0; i < s.own.n; i++)
            if (!limit_empty(&s.own.v[i].lim))
                give(s.own.v[i].ad, "allowance_scope", cJSON_CreateString(s.own.v[i].api));
    }
    finish_rights(&s, &st.rights);
    /* some policy granted an API exactly when rights is not empty */
    session_write(session, &s, st.rights.n > 0 ? &st.rights : &s.own);
    if (st.rights.n == 0 && (n_ids > 0 || custom != NULL))
        rc = fail(err, errlen, "key has no valid policies to be applied");
out:
    cJSON_Delete(s.meta);
    cJSON_Delete(s.ptags);
    rights_free(&st.rights);
    rights_free(&s.own);
    return rc;
}
