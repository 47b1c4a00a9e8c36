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
 * Where 5.3 and 5.8 differ from master, a comment says so. The canonical
 * definitions and the merges of util.go are in tp_policy_merge.c.
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
#include "tp_policy_go.h"

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
    pa_limit_read(p->json, l);
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
        pa_duration(to->rate, to->per) > pa_duration(pl->rate, pl->per)) {
        to->rate = pl->rate;
        to->per = pl->per;
        to->smoothing = pl->smoothing;
    }
}

/* Raises an API's limit to the policy's <v> when <v> is larger (-1 being
 * the largest when <unlimited>), and then the session's likewise. */
static void raise_limit(long long v, long long *api, long long *root, int unlimited)
{
    if (unlimited ? !pa_gt_unlimited(v, *api) : v <= *api)
        return;
    *api = v;
    if (unlimited ? pa_gt_unlimited(v, *root) : v > *root)
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
        cJSON *pad = pa_canon(v, pa_f_access);
        if (!parts || p->acl) {
            r->acl = 1;
            if (cJSON_IsTrue(mem(pad, "disable_introspection")))
                give(r->ad, "disable_introspection", cJSON_CreateTrue());
            pa_member_union(r->ad, "versions", mem(pad, "versions"));
            give(r->ad, "allowed_urls",
                 pa_urls_merge(take(r->ad, "allowed_urls"), mem(pad, "allowed_urls")));
            give(r->ad, "restricted_types",
                 pa_types_merge(take(r->ad, "restricted_types"), mem(pad, "restricted_types")));
            give(r->ad, "allowed_types",
                 pa_types_merge(take(r->ad, "allowed_types"), mem(pad, "allowed_types")));
            give(r->ad, "field_access_rights",
                 pa_fields_merge(take(r->ad, "field_access_rights"),
                                 mem(pad, "field_access_rights")));
            give(r->ad, "json_rpc_methods_access_rights",
                 pa_rules_merge(take(r->ad, "json_rpc_methods_access_rights"),
                                mem(pad, "json_rpc_methods_access_rights")));
            cJSON *mcp = take(r->ad, "mcp_access_rights"), *pmcp = mem(pad, "mcp_access_rights");
            if (mcp == NULL)
                mcp = cJSON_CreateObject();
            for (const pa_field_t *f = pa_f_mcp; f->name != NULL; f++)
                give(mcp, f->name, pa_rules_merge(take(mcp, f->name), mem(pmcp, f->name)));
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
            pa_rate_lists_merge(r->ad, pad, r->ad);
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
        if (own != NULL && !pa_limit_empty(&own->lim))
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
    if (pa_duration(pol->lim.rate, pol->lim.per) > pa_duration(cur->lim.rate, cur->lim.per)) {
        pol->lim.rate = cur->lim.rate;
        pol->lim.per = cur->lim.per;
        pol->lim.smoothing = cur->lim.smoothing;
        updated = 1;
    }
    if (pa_gt_unlimited(cur->lim.quota_max, pol->lim.quota_max) &&
        cur->lim.quota_max != pol->lim.quota_max) {
        pol->lim.quota_max = cur->lim.quota_max;
        updated = 1;
    }
    if (pa_gt_unlimited(cur->lim.quota_renewal_rate, pol->lim.quota_renewal_rate))
        pol->lim.quota_renewal_rate = cur->lim.quota_renewal_rate;
    if (pol->lim.quota_max == -1)
        pol->lim.quota_renewal_rate = 0;
    if (updated) {
        pol->lim.set_by = cur->lim.set_by;
        give(pol->ad, "allowance_scope", dup(mem(cur->ad, "allowance_scope")));
    }
    pa_rate_lists_merge(pol->ad, pol->ad, cur->ad);
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
                        .ad = pa_canon(v, pa_f_access),
                        .acl = 1,
                        .quota = 1,
                        .rate = 1,
                        .complexity = 1};
        const char *scope = v->string;
        pa_limit_read(get(v, "limit"), &n.lim);
        if (pa_limit_empty(&n.lim)) {
            scope = p->id;
            policy_limit(p, &n.lim);
        }
        give(n.ad, "allowance_scope", cJSON_CreateString(scope));
        n.lim.set_by = scope;
        const pa_right_t *own = right_find(&s->own, v->string);
        if (own != NULL && !pa_limit_empty(&own->lim))
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
    pa_limit_read(js, &s->l);
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
        r->ad = pa_canon(m, pa_f_access);
        pa_limit_read(get(m, "limit"), &r->lim);
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
                                  pa_emit(rights->v[i].ad, pa_f_access, f, &rights->v[i].lim));
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
    s->ptags = pa_strs_union(s->ptags, get(pol, "tags"));
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
    cJSON *tags = pa_strs_union(pa_strs_union(NULL, get(session, "tags")), s.ptags);
    cJSON_Delete(s.ptags);
    s.ptags = tags != NULL ? tags : cJSON_CreateArray();
    if (n == 0) {
        /* no policies: an API with its own limits counts under its own ID */
        for (size_t i = 0; i < s.own.n; i++)
            if (!pa_limit_empty(&s.own.v[i].lim))
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
