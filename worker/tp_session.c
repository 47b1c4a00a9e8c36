/*
 * worker/tp_session.c: the session behind an API key, found as Tyk finds
 * it (TYK-COMPAT 4.5), with policies applied (5.3) and the checks that
 * follow authentication (4.6).
 *
 * Three levels, fastest first:
 *  - this worker's parsed sessions (direct-mapped by org and key), valid
 *    while the shared entry they came from is unchanged and the policies
 *    are the same generation: a hit costs a hash and two atomic loads;
 *  - the node's shared cache (shm/tp_shm_session.c), filled by any worker
 *    and emptied by key writes and KeySpaceUpdateNotification;
 *  - Redis: apikey-<hash> for each candidate key name.
 * Entries live local_session_cache.cached_session_timeout seconds (Tyk's
 * 10 by default), so a key changed behind the gateway's back is seen
 * within that time, and at once when the change is announced. A key in
 * use is read again in the background during the last quarter of its
 * entry's life (gathered for 20 ms, then many keys to one MGET), so steady
 * traffic never waits for Redis: an unchanged session only has its expiry
 * moved, a changed one replaces the entry, a deleted one is evicted.
 *
 * A key that is in no cache while Redis cannot be reached gets 503, not
 * 401 or 403: the gateway does not know whether the key is good.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_policy_apply.h"
#include "tp_session_json.h"
#include "tp_shm_session.h"
#include "tp_time.h"
#include "tp_counter.h"
#include "tp_worker.h"

#define L1_SETS 4096 /* parsed sessions per worker: sets (a power of two) */
#define L1_WAYS 4    /* ... of this many, least recently used replaced */
#define MAX_CANDIDATES 8

/* a key in no cache while Redis is away: the gateway cannot tell */
static const char STORAGE_DOWN[] = "Key storage unavailable, please try again later";

typedef struct url_rule_s {
    regex_t re;
    const cJSON *methods; /* in sess->session */
} url_rule_t;

/* A per-endpoint rate limit of a key (access_rights[api].endpoints). */
typedef struct ep_rule_s {
    regex_t re;
    const char *path;     /* in sess->session */
    const cJSON *methods; /* [{name, limit: {rate, per}}], in sess->session */
} ep_rule_t;

typedef struct acl_s {
    const char *api_id;    /* in sess->session */
    const cJSON *versions; /* in sess->session */
    url_rule_t *urls;
    size_t nurls;
    int has_limit;     /* a non-empty per-API limit: it applies, not the root's */
    tp_keylimit_t lim; /* ... that limit */
    const char *scope; /* allowance_scope ("" for none), in sess->session */
    ep_rule_t *eps;
    size_t neps;
} acl_t;

struct tp_sess_s {
    uint32_t refs;
    uint64_t used;  /* w->l1_tick when it last served a request */
    uint32_t ihash; /* of ident, for the L1 */
    size_t ident_len;
    uint64_t gen; /* the generation whose policies were applied */
    uint32_t cslot;
    uint64_t cver;         /* the shared entry it came from (cslot UINT32_MAX: none) */
    uint64_t seen_changes; /* tp_scache_changes when the entry was last checked ... */
    int64_t valid_until;   /* ... and how long it was good for then (monotonic ms) */
    char *rkey;            /* "apikey-<hash>" */
    cJSON *session;
    int bad;        /* policies failed to apply: treated as an unknown key */
    int refreshing; /* a background read of rkey is queued or under way */
    unsigned rslot; /* rkey's cluster slot, while refreshing */
    int inactive;
    int64_t expires;
    int master;        /* no access_rights: every API */
    tp_keylimit_t lim; /* the session's own (when no per-API limit applies) */
    acl_t *acl;
    size_t nacl;
    const tp_api_t *last_api; /* the API of the last request it served ... */
    const acl_t *last_acl;    /* ... and its access rights there */
    int has_rec;              /* rec is filled in (tp_session_rec) */
    tp_sess_rec_t rec;
    char ident[]; /* org, NUL, key: what the client presented for which org */
};

typedef struct lookup_s lookup_t;

typedef struct cand_s {
    lookup_t *l;
    int i;
} cand_t;

/* A session being read from Redis: in the request's arena, named by the
 * key stage's state (a pointer to it). */
struct lookup_s {
    tp_req_t *req;
    const tp_sess_want_t *want; /* a virtual session's (in the arena), or NULL */
    uint64_t epoch;             /* the shared cache's, when the reads began */
    uint8_t id[32];
    char *ident; /* these strings are in the arena too */
    size_t ident_len;
    int n, pending, issuing, cache, errors;
    int miss; /* TP_AUTH_*: the answer when no candidate is stored, or TP_AUTH_NONE */
    /* tp_session_peek: runs when the reads are answered; the session is
     * then req->peek_sess (NULL: a lookup for the request itself) */
    void (*again)(tp_req_t *);
    cand_t cands[MAX_CANDIDATES];
    tp_rcmd_t *cmds[MAX_CANDIDATES]; /* NULL once answered */
    char *rkeys[MAX_CANDIDATES];
    char *hits[MAX_CANDIDATES]; /* the session JSON found under each, or NULL */
    char err[256];
};

/* ---- parsed sessions ------------------------------------------------------------------ */

static void sess_free(tp_sess_t *s)
{
    for (size_t i = 0; i < s->nacl; i++) {
        for (size_t j = 0; j < s->acl[i].nurls; j++)
            regfree(&s->acl[i].urls[j].re);
        free(s->acl[i].urls);
        for (size_t j = 0; j < s->acl[i].neps; j++)
            regfree(&s->acl[i].eps[j].re);
        free(s->acl[i].eps);
    }
    free(s->acl);
    cJSON_Delete(s->session);
    free(s->rkey);
    free(s);
}

static void sess_put(tp_sess_t *s)
{
    if (s != NULL && --s->refs == 0)
        sess_free(s);
}

void tp_session_method(tp_req_t *req, int method)
{
    int base = req->rules->base_identity;
    req->auth_side = base != TP_ID_ANY && base != method;
}

tp_sess_t *tp_session_current(const tp_req_t *req)
{
    return req->auth_side ? req->side_sess : req->sess;
}

void tp_session_release(tp_req_t *req)
{
    sess_put(req->sess);
    req->sess = NULL;
    sess_put(req->side_sess);
    req->side_sess = NULL;
    sess_put(req->peek_sess);
    req->peek_sess = NULL;
    req->auth_side = 0;
}

/* The lookup is over, or dropped: reads still out are cancelled. */
static void lookup_end(lookup_t **lp)
{
    lookup_t *l = *lp;
    for (int i = 0; i < l->n; i++)
        if (l->cmds[i] != NULL)
            tp_redis_cancel(l->cmds[i]);
    *lp = NULL;
}

void tp_session_cancel(tp_req_t *req)
{
    lookup_t **lp = tp_chain_state_peek(req);
    if (lp != NULL && *lp != NULL)
        lookup_end(lp);
}

/* FNV-1a over 8-byte words, the high bits folded in (the L1's index is
 * the low ones): a key is ~70 bytes, hashed on every keyed request. */
static uint32_t ident_hash(const char *ident, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull, v;
    for (; n >= 8; ident += 8, n -= 8) {
        memcpy(&v, ident, 8);
        h = (h ^ v) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; n > 0; ident++, n--)
        h = (h ^ (unsigned char)*ident) * 0x100000001b3ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

/* The first of the L1_WAYS places a session with ident hash <h> may be
 * in; w->l1_hash holds their hashes, so only a likely match is touched. */
static size_t l1_set(uint32_t h)
{
    return (h & (L1_SETS - 1)) * L1_WAYS;
}

static int same_ident(const tp_sess_t *s, const char *ident, size_t n)
{
    return s->ident_len == n && memcmp(s->ident, ident, n) == 0;
}

static tp_sess_t *l1_find(tp_worker_t *w, const char *ident, size_t n)
{
    uint32_t h = ident_hash(ident, n);
    size_t set = l1_set(h);
    for (size_t k = set; k < set + L1_WAYS; k++) {
        tp_sess_t *s = w->l1[k];
        if (w->l1_hash[k] == h && s != NULL && same_ident(s, ident, n)) {
            s->used = ++w->l1_tick;
            return s;
        }
    }
    return NULL;
}

/* Keeps <s>, in place of an older copy of the same key, else of an empty
 * or the least recently used place of its set. */
static void l1_store(tp_worker_t *w, tp_sess_t *s)
{
    size_t set = l1_set(s->ihash), at = set;
    for (size_t k = set; k < set + L1_WAYS; k++) {
        tp_sess_t *o = w->l1[k];
        if (o == NULL || (w->l1_hash[k] == s->ihash && same_ident(o, s->ident, s->ident_len))) {
            at = k;
            break;
        }
        if (o->used < w->l1[at]->used)
            at = k;
    }
    if (w->l1[at] != NULL)
        sess_put(w->l1[at]);
    s->used = ++w->l1_tick;
    s->refs++;
    w->l1[at] = s;
    w->l1_hash[at] = s->ihash;
}

/* Milliseconds the shared entry behind <s> has left (0: changed or gone),
 * without reading the entry while nothing in the cache changed. */
static int64_t l1_left(tp_worker_t *w, tp_sess_t *s, int64_t now)
{
    uint64_t ch = tp_scache_changes(w->scache);
    if (ch == s->seen_changes && now < s->valid_until)
        return s->valid_until - now;
    int64_t left = tp_scache_left(w->scache, s->cslot, s->cver, now);
    s->seen_changes = ch;
    s->valid_until = now + left;
    return left;
}

void tp_session_init(tp_worker_t *w)
{
    w->l1 = tp_calloc(L1_SETS * L1_WAYS, sizeof(*w->l1));
    w->l1_hash = tp_calloc(L1_SETS * L1_WAYS, sizeof(*w->l1_hash));
    uv_timer_init(&w->loop, &w->refresh_timer);
    w->refresh_timer.data = w;
    uv_unref((uv_handle_t *)&w->refresh_timer);
}

void tp_session_generation(tp_worker_t *w, const tp_snapshot_t *snap)
{
    unsigned s = snap->slot;
    for (size_t i = 0; i < w->npolicies[s]; i++)
        cJSON_Delete(w->policies[s][i]);
    free(w->policies[s]);
    w->policies[s] = NULL;
    w->npolicies[s] = 0;
}

typedef struct find_s {
    tp_worker_t *w;
    const tp_snapshot_t *snap;
} find_t;

/* Policies of a generation, parsed once per worker. */
static cJSON **policies_of(tp_worker_t *w, const tp_snapshot_t *snap)
{
    unsigned s = snap->slot;
    if (w->policies[s] == NULL) {
        w->policies[s] = tp_calloc(snap->npolicies + 1, sizeof(cJSON *));
        for (size_t i = 0; i < snap->npolicies; i++)
            w->policies[s][i] = cJSON_Parse(snap->policies[i].json);
        w->npolicies[s] = snap->npolicies;
    }
    return w->policies[s];
}

static const cJSON *find_policy(void *arg, const char *org, const char *id)
{
    find_t *f = arg;
    cJSON **pols = policies_of(f->w, f->snap);
    const cJSON *by_id = NULL;
    for (size_t i = 0; i < f->snap->npolicies; i++) {
        if (pols[i] == NULL || strcmp(f->snap->policies[i].id, id) != 0)
            continue;
        const cJSON *o = tp_json_get(pols[i], "org_id");
        const char *porg = o != NULL && cJSON_IsString(o) ? o->valuestring : "";
        if (org == NULL || strcmp(porg, org) == 0)
            return pols[i];
        if (by_id == NULL)
            by_id = pols[i]; /* 5.8 and earlier looked up by id alone */
    }
    return by_id;
}

int tp_session_apply_policies(tp_worker_t *w, const tp_snapshot_t *snap, cJSON *session,
                              const char *api_org, char *err, size_t errlen)
{
    find_t f = {w, snap};
    return tp_policy_apply(session, api_org, find_policy, &f, err, errlen);
}

static int64_t num_of(const cJSON *obj, const char *key)
{
    const cJSON *v = tp_json_get(obj, key);
    return v != NULL && cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static double dbl_of(const cJSON *obj, const char *key)
{
    const cJSON *v = tp_json_get(obj, key);
    return v != NULL && cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void limit_read(const cJSON *o, tp_keylimit_t *l)
{
    l->rate = dbl_of(o, "rate");
    l->per = dbl_of(o, "per");
    l->throttle_interval = dbl_of(o, "throttle_interval");
    l->throttle_retry_limit = num_of(o, "throttle_retry_limit");
    l->quota_max = num_of(o, "quota_max");
    l->quota_renewal = num_of(o, "quota_renewal_rate");
    l->quota_remaining = num_of(o, "quota_remaining");
    l->quota_renews = num_of(o, "quota_renews");
}

/* access_rights[api].endpoints: [{path, methods: [{name, limit}]}]. */
static int endpoints_read(acl_t *acl, const cJSON *eps, const tp_conf_t *conf, char *err,
                          size_t errlen)
{
    if (eps == NULL || !cJSON_IsArray(eps) || cJSON_GetArraySize(eps) == 0)
        return 0;
    acl->eps = tp_calloc((size_t)cJSON_GetArraySize(eps), sizeof(*acl->eps));
    const cJSON *e;
    cJSON_ArrayForEach(e, eps)
    {
        const cJSON *path = tp_json_get(e, "path"), *methods = tp_json_get(e, "methods");
        if (path == NULL || !cJSON_IsString(path) || methods == NULL || !cJSON_IsArray(methods))
            continue;
        ep_rule_t *r = &acl->eps[acl->neps];
        if (tp_path_pattern_compile(
                &r->re, path->valuestring, conf->http_server_options.enable_path_prefix_matching,
                conf->http_server_options.enable_path_suffix_matching, 0, err, errlen) < 0) {
            /* Tyk logs the pattern and skips the entry: the key still works */
            tp_log_warn("access_rights[%s].endpoints: \"%s\": %s (entry skipped)", acl->api_id,
                        path->valuestring, err);
            continue;
        }
        r->path = path->valuestring;
        r->methods = methods;
        acl->neps++;
    }
    return 0;
}

/* Builds what the checks read from a session after policies. */
static int sess_view(tp_sess_t *s, const tp_conf_t *conf, char *err, size_t errlen)
{
    const cJSON *ia = tp_json_get(s->session, "is_inactive");
    s->inactive = ia != NULL && cJSON_IsTrue(ia);
    s->expires = num_of(s->session, "expires");
    limit_read(s->session, &s->lim);
    const cJSON *ar = tp_json_get(s->session, "access_rights");
    s->master = ar == NULL || !cJSON_IsObject(ar) || ar->child == NULL;
    if (s->master)
        return 0;
    s->acl = tp_calloc((size_t)cJSON_GetArraySize(ar), sizeof(*s->acl));
    const cJSON *a;
    cJSON_ArrayForEach(a, ar)
    {
        acl_t *acl = &s->acl[s->nacl++];
        acl->api_id = a->string;
        acl->versions = tp_json_get(a, "versions");
        const cJSON *limit = tp_json_get(a, "limit");
        if (!tp_api_limit_empty(limit)) {
            acl->has_limit = 1;
            limit_read(limit, &acl->lim);
        }
        const cJSON *scope = tp_json_get(a, "allowance_scope");
        acl->scope = scope != NULL && cJSON_IsString(scope) ? scope->valuestring : "";
        if (endpoints_read(acl, tp_json_get(a, "endpoints"), conf, err, errlen) < 0)
            return -1;
        const cJSON *urls = tp_json_get(a, "allowed_urls");
        if (urls == NULL || !cJSON_IsArray(urls))
            continue;
        acl->urls = tp_calloc((size_t)cJSON_GetArraySize(urls) + 1, sizeof(*acl->urls));
        const cJSON *u;
        cJSON_ArrayForEach(u, urls)
        {
            const cJSON *url = tp_json_get(u, "url");
            if (url == NULL || !cJSON_IsString(url))
                continue;
            url_rule_t *r = &acl->urls[acl->nurls];
            if (tp_path_pattern_compile(
                    &r->re, url->valuestring, conf->http_server_options.enable_path_prefix_matching,
                    conf->http_server_options.enable_path_suffix_matching, 0, err, errlen) < 0)
                return -1;
            r->methods = tp_json_get(u, "methods");
            acl->nurls++;
        }
    }
    return 0;
}

/* A session for <ident> from the JSON stored under <rkey>. */
static tp_sess_t *sess_build(tp_req_t *req, const char *ident, size_t ident_len, const char *rkey,
                             const char *json, size_t json_len)
{
    tp_worker_t *w = req->conn->w;
    tp_sess_t *s = tp_calloc(1, sizeof(*s) + ident_len + 1);
    s->refs = 1;
    s->cslot = UINT32_MAX;
    memcpy(s->ident, ident, ident_len);
    s->ident[ident_len] = '\0';
    s->ident_len = ident_len;
    s->ihash = ident_hash(ident, ident_len);
    s->gen = req->snap->generation;
    s->rkey = tp_strdup(rkey);
    char err[512];
    s->session = tp_json_parse(json, json_len, err, sizeof(err));
    if (s->session == NULL || !cJSON_IsObject(s->session)) {
        tp_log_warn("session %s: not a session object: %s", rkey,
                    s->session == NULL ? err : "wrong type");
        s->bad = 1;
        return s;
    }
    const char *org = req->route->api->org_id ? req->route->api->org_id : "";
    if (tp_session_apply_policies(w, req->snap, s->session, org, err, sizeof(err)) < 0) {
        tp_log_info("session %s: %s", rkey, err);
        s->bad = 1;
        return s;
    }
    if (sess_view(s, w->conf, err, sizeof(err)) < 0) {
        tp_log_warn("session %s: allowed_urls: %s", rkey, err);
        s->bad = 1;
    }
    return s;
}

/* ---- refreshing a cached session ahead of its expiry ---------------------------------- */

#define REFRESH_DELAY_MS 20 /* refreshes are gathered this long ... */
#define REFRESH_BATCH 64    /* ... and read this many to an MGET */

typedef struct refresh_s {
    tp_worker_t *w;
    uint64_t epoch;
    int n;
    tp_sess_t *s[REFRESH_BATCH];
} refresh_t;

static int64_t cache_ttl_ms(const tp_worker_t *w)
{
    return w->conf->local_session_cache.cached_session_timeout * 1000;
}

/* What Redis holds for <s> now (<rep> NULL: it could not say). */
static void refreshed(tp_worker_t *w, uint64_t epoch, tp_sess_t *s, const redisReply *rep)
{
    s->refreshing = 0;
    s->valid_until = 0; /* the entry's expiry moved: look again */
    if (rep == NULL || w->scache == NULL)
        return;
    uint8_t id[32], store[32];
    const char *h = s->rkey + 7; /* after "apikey-" */
    tp_scache_digest(h, strlen(h), NULL, 0, store);
    if (rep->type == REDIS_REPLY_NIL) {
        tp_scache_evict_store(w->scache, store); /* deleted behind our back */
    } else if (rep->type == REDIS_REPLY_STRING) {
        tp_scache_digest(s->ident, s->ident_len, NULL, 0, id);
        tp_scache_put(w->scache, epoch, id, store, s->rkey, rep->str, rep->len,
                      tp_time_mono_ms() + cache_ttl_ms(w));
    }
}

static void on_refresh(void *arg, const redisReply *rep, const char *err)
{
    refresh_t *r = arg;
    int ok = err == NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == (size_t)r->n;
    for (int i = 0; i < r->n; i++) {
        refreshed(r->w, r->epoch, r->s[i], ok ? rep->element[i] : NULL);
        sess_put(r->s[i]);
    }
    free(r);
}

static int by_slot(const void *a, const void *b)
{
    const tp_sess_t *x = *(tp_sess_t *const *)a, *y = *(tp_sess_t *const *)b;
    return (x->rslot > y->rslot) - (x->rslot < y->rslot);
}

/* Reads the queued sessions again, REFRESH_BATCH to an MGET (in a cluster,
 * only keys of one slot share one). */
static void on_refresh_timer(uv_timer_t *t)
{
    tp_worker_t *w = t->data;
    tp_sess_t **q = w->refresh_q;
    size_t n = w->refresh_n;
    w->refresh_n = 0;
    int cluster = w->conf->storage.enable_cluster;
    if (cluster)
        qsort(q, n, sizeof(*q), by_slot);
    for (size_t i = 0; i < n;) {
        refresh_t *r = tp_malloc(sizeof(*r));
        r->w = w;
        r->epoch = tp_scache_epoch(w->scache);
        r->n = 0;
        const char *argv[REFRESH_BATCH + 1] = {"MGET"};
        size_t lens[REFRESH_BATCH + 1] = {4};
        do {
            tp_sess_t *s = q[i++];
            r->s[r->n++] = s;
            argv[r->n] = s->rkey;
            lens[r->n] = strlen(s->rkey);
        } while (i < n && r->n < REFRESH_BATCH && (!cluster || q[i]->rslot == r->s[0]->rslot));
        if (w->redis != NULL)
            tp_redis_cmdv(w->redis, on_refresh, r, r->n + 1, argv, lens);
        else
            on_refresh(r, NULL, "no Redis");
    }
}

/* <s> came from the shared cache and has <left> ms to live there: near the
 * end, it is read again without making anyone wait. */
static void maybe_refresh(tp_worker_t *w, tp_sess_t *s, int64_t left, int64_t now)
{
    int64_t ttl = cache_ttl_ms(w);
    if (left > ttl / 4 || s->refreshing || w->redis == NULL)
        return;
    /* another worker may have refreshed it already: read the entry again */
    s->valid_until = 0;
    left = l1_left(w, s, now);
    if (left > ttl / 4)
        return;
    if (w->refresh_n == w->refresh_cap) {
        w->refresh_cap = w->refresh_cap ? 2 * w->refresh_cap : 256;
        w->refresh_q = tp_realloc(w->refresh_q, w->refresh_cap * sizeof(*w->refresh_q));
    }
    s->refreshing = 1;
    s->refs++;
    s->rslot = tp_redis_slot(s->rkey, strlen(s->rkey));
    w->refresh_q[w->refresh_n++] = s;
    if (w->refresh_n == 1)
        uv_timer_start(&w->refresh_timer, on_refresh_timer, REFRESH_DELAY_MS, 0);
}

/* ---- the checks after authentication --------------------------------------------------- */

static const acl_t *acl_for(const tp_sess_t *s, const char *api_id)
{
    for (size_t i = 0; i < s->nacl; i++)
        if (strcmp(s->acl[i].api_id, api_id) == 0)
            return &s->acl[i];
    return NULL;
}

static int list_has(const cJSON *list, const char *s)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, list) if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0) return 1;
    return 0;
}

/* RateLimitInfo: the first per-endpoint limit matching the method and
 * the path without the listen path. */
static const ep_rule_t *endpoint_limit(tp_req_t *req, const tp_reqpath_t *rp, const acl_t *acl,
                                       const cJSON **method_out)
{
    if (acl->neps == 0)
        return NULL;
    const char *const *paths = tp_req_rulepaths(req, rp, 0);
    const char *method = llhttp_method_name(req->method);
    for (size_t i = 0; i < acl->neps; i++) {
        const ep_rule_t *r = &acl->eps[i];
        const cJSON *m;
        cJSON_ArrayForEach(m, r->methods)
        {
            const cJSON *name = tp_json_get(m, "name");
            if (name == NULL || !cJSON_IsString(name) || strcasecmp(name->valuestring, method))
                continue;
            if (regexec(&r->re, paths[1], 0, NULL, 0) != 0)
                break;
            *method_out = m;
            return r;
        }
    }
    return NULL;
}

/* RateLimitAndQuotaCheck: which limit applies (6.1), for the key limit
 * stage (tp_limit.c) in req->keyctx. */
static void limits_pick(tp_req_t *req, tp_sess_t *s, const acl_t *acl)
{
    tp_keyctx_t *k = &req->keyctx;
    *k = (tp_keyctx_t){.lim = acl != NULL && acl->has_limit ? &acl->lim : &s->lim,
                       .scope = acl != NULL ? acl->scope : "",
                       .khash = s->rkey + 7}; /* after "apikey-" */
    k->rate = k->lim->rate;
    k->per = k->lim->per;
    const cJSON *m = NULL;
    const ep_rule_t *ep =
        acl != NULL && acl->neps > 0 ? endpoint_limit(req, req->rp, acl, &m) : NULL;
    if (ep != NULL) {
        const cJSON *limit = tp_json_get(m, "limit");
        k->rate = limit != NULL ? dbl_of(limit, "rate") : 0;
        k->per = limit != NULL ? dbl_of(limit, "per") : 0;
        tp_buf_t b = {0};
        tp_buf_printf(&b, "%s:%s", tp_json_get(m, "name")->valuestring, ep->path);
        _Static_assert(sizeof(req->keysuffix) >= TP_KEYHASH_HEX_MAX, "keysuffix");
        tp_keyhash_hex(NULL, b.data, b.len, req->keysuffix);
        tp_buf_free(&b);
        k->suffix = req->keysuffix;
    }
}

/* KeyExpired, AccessRightsCheck, GranularAccessMiddleware: the access
 * stage, on the session the key stage found. */
static tp_stage_rc_t access_run(tp_req_t *req)
{
    tp_sess_t *s = req->sess;
    if (s == NULL && req->ignored)
        return TP_STAGE_NEXT;
    if (s == NULL) { /* no auth stage found one: never let that through */
        tp_respond_auth_error(req, TP_AUTH_KEY_NOT_FOUND);
        return TP_STAGE_DONE;
    }
    if (s->bad) {
        tp_respond_auth_error(req, TP_AUTH_KEY_NOT_FOUND);
        return TP_STAGE_DONE;
    }
    if (s->inactive) {
        tp_respond_error(req, 403, "Key is inactive, please renew");
        return TP_STAGE_DONE;
    }
    if (s->expires >= 1 && s->expires < tp_time_wall_us() / 1000000) {
        tp_respond_error(req, 401, "Key has expired, please renew");
        return TP_STAGE_DONE;
    }
    const acl_t *acl = NULL;
    if (!s->master) {
        const tp_api_t *api = req->route->api;
        if (s->last_api != api) {
            s->last_acl = acl_for(s, api->api_id); /* api lives as long as s->gen */
            s->last_api = api;
        }
        acl = s->last_acl;
        if (acl == NULL ||
            (!req->rules->not_versioned && !list_has(acl->versions, req->version->name))) {
            tp_respond_error(req, 403, "Access to this API has been disallowed");
            return TP_STAGE_DONE;
        }
        if (acl->nurls > 0) {
            /* stripped and whole with prefix matching, else whole only */
            tp_worker_t *w = req->conn->w;
            int prefix = w->conf->http_server_options.enable_path_prefix_matching;
            const char *const *paths = tp_req_rulepaths(req, req->rp, 0);
            const char *method = llhttp_method_name(req->method);
            int ok = 0;
            for (size_t i = 0; i < acl->nurls && !ok; i++) {
                const url_rule_t *u = &acl->urls[i];
                if (!list_has(u->methods, method))
                    continue;
                ok = regexec(&u->re, paths[2], 0, NULL, 0) == 0 ||
                     (prefix && regexec(&u->re, paths[1], 0, NULL, 0) == 0);
            }
            if (!ok) {
                tp_respond_error(req, 403, "Access to this resource has been disallowed");
                return TP_STAGE_DONE;
            }
        }
    }
    limits_pick(req, s, acl);
    return TP_STAGE_NEXT;
}

static int access_wanted(const tp_chain_api_t *a)
{
    return !a->keyless;
}

const tp_stage_t tp_stage_access = {.name = "access", .wanted = access_wanted, .run = access_run};

/* The key stage found <s>: the request holds a reference. */
static void sess_found(tp_req_t *req, tp_sess_t *s, int peek)
{
    /* a key only looked at, the identity's (base_identity_provided_by), or
     * the running method's own */
    tp_sess_t **slot = peek ? &req->peek_sess : req->auth_side ? &req->side_sess : &req->sess;
    s->refs++;
    sess_put(*slot);
    *slot = s;
}

/* ---- reading from Redis -------------------------------------------------------------- */

/* ---- virtual sessions ----------------------------------------------------------------- */

const cJSON *tp_session_policy(tp_worker_t *w, const tp_snapshot_t *snap, const char *org,
                               const char *id)
{
    find_t f = {w, snap};
    const cJSON *p = find_policy(&f, org, id);
    const cJSON *o = tp_json_get(p, "org_id");
    const char *porg = cJSON_IsString(o) ? o->valuestring : "";
    return p != NULL && strcmp(porg, org) == 0 ? p : NULL;
}

/* Has <s> the policies and the expiry <want> asks for? */
static int sess_satisfies(const tp_sess_t *s, const tp_sess_want_t *want)
{
    if (s->bad)
        return 0;
    const cJSON *have = tp_json_get(s->session, "apply_policies");
    const char *p = want->policies;
    const cJSON *a = cJSON_IsArray(have) ? have->child : NULL;
    for (; a != NULL && *p != '\0'; a = a->next, p += strlen(p) + 1)
        if (!cJSON_IsString(a) || strcmp(a->valuestring, p) != 0)
            return 0;
    if (a != NULL || *p != '\0')
        return 0;
    return want->expires == 0 || (s->expires != 0 && s->expires >= want->expires);
}

static void on_stored(void *arg, const redisReply *rep, const char *err)
{
    (void)arg;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR)
        tp_log_warn("storing a session failed: %s", err != NULL ? err : rep->str);
}

/* Makes the session <json> (policies applied) the one stored under <rkey>:
 * written to Redis with the key's lifetime, and to this node's caches.
 * Returns it with one reference, the caller's. */
static tp_sess_t *sess_store(tp_req_t *req, const char *ident, size_t ident_len, const char *rkey,
                             const char *json, size_t json_len, int cache)
{
    tp_worker_t *w = req->conn->w;
    tp_sess_t *s = sess_build(req, ident, ident_len, rkey, json, json_len);
    if (s->bad)
        return s;
    char *out = cJSON_PrintUnformatted(s->session);
    const tp_api_rules_t *r = req->rules;
    int64_t now = tp_time_wall_us() / 1000000;
    int64_t ttl = tp_session_lifetime(s->session, w->conf, r->session_lifetime,
                                      r->session_lifetime_respects_key_expiration, now);
    char ttlbuf[24];
    snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);
    const char *argv[5] = {"SET", rkey, out, "EX", ttlbuf};
    if (w->redis != NULL)
        tp_redis_cmdv(w->redis, on_stored, NULL, ttl > 0 ? 5 : 3, argv, NULL);
    if (cache) {
        int64_t mono = tp_time_mono_ms();
        uint8_t id[32], store[32];
        const char *h = rkey + 7; /* after "apikey-" */
        tp_scache_digest(ident, ident_len, NULL, 0, id);
        tp_scache_digest(h, strlen(h), NULL, 0, store);
        tp_buf_t k = {0}, j = {0};
        if (tp_scache_put(w->scache, tp_scache_epoch(w->scache), id, store, rkey, out, strlen(out),
                          mono + cache_ttl_ms(w)) == 0 &&
            tp_scache_get(w->scache, id, mono, &k, &j, &s->cslot, &s->cver))
            l1_store(w, s);
        tp_buf_free(&k);
        tp_buf_free(&j);
    }
    free(out);
    return s;
}

void tp_session_set_meta(tp_req_t *req, const char *meta_json)
{
    tp_sess_t *s = req->sess;
    if (s == NULL || s->bad || s->rkey == NULL)
        return;
    cJSON *meta = cJSON_Parse(meta_json);
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(s->session, "meta_data");
    if (meta == NULL || !cJSON_IsObject(meta) || (old != NULL && cJSON_Compare(old, meta, 1))) {
        cJSON_Delete(meta); /* Tyk saves it only when it changed */
        return;
    }
    cJSON *j = cJSON_Duplicate(s->session, 1);
    if (!cJSON_ReplaceItemInObject(j, "meta_data", meta))
        cJSON_AddItemToObject(j, "meta_data", meta);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    tp_sess_t *n = sess_store(req, s->ident, s->ident_len, s->rkey, out, strlen(out), 1);
    free(out);
    sess_put(req->sess);
    req->sess = n;
}

/* <s> was found for a virtual session: when its policies or expiry are
 * not what <want> asks, they are replaced and the session stored again
 * (Tyk re-applies a changed base policy and extends expires). Returns the
 * session to use, with one reference, the caller's (<s>'s is dropped). */
static tp_sess_t *sess_want(tp_req_t *req, tp_sess_t *s, const tp_sess_want_t *want, int cache)
{
    if (want == NULL || sess_satisfies(s, want))
        return s;
    /* a session whose policies would not apply is replaced whole */
    cJSON *j = s->bad ? cJSON_Parse(want->json) : cJSON_Duplicate(s->session, 1);
    if (j == NULL)
        return s;
    cJSON *pols = cJSON_CreateArray();
    for (const char *p = want->policies; *p != '\0'; p += strlen(p) + 1)
        cJSON_AddItemToArray(pols, cJSON_CreateString(p));
    if (!cJSON_ReplaceItemInObject(j, "apply_policies", pols))
        cJSON_AddItemToObject(j, "apply_policies", pols);
    if (want->expires != 0 && (s->expires == 0 || s->expires < want->expires)) {
        cJSON *e = cJSON_CreateNumber((double)want->expires);
        if (!cJSON_ReplaceItemInObject(j, "expires", e))
            cJSON_AddItemToObject(j, "expires", e);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    tp_sess_t *n = sess_store(req, s->ident, s->ident_len, s->rkey, out, strlen(out), cache);
    free(out);
    sess_put(s);
    return n;
}

/* The reads are answered: the key stage's verdict. */
static tp_stage_rc_t lookup_done(lookup_t **lp)
{
    lookup_t *l = *lp;
    tp_req_t *req = l->req;
    tp_worker_t *w = req->conn->w;
    int hit = -1;
    for (int i = 0; i < l->n && hit < 0; i++)
        if (l->hits[i] != NULL)
            hit = i;
    int peek = l->again != NULL;
    if (hit < 0 && l->errors == 0 && l->want != NULL) {
        tp_sess_t *s = sess_store(req, l->ident, l->ident_len, l->rkeys[0], l->want->json,
                                  strlen(l->want->json), l->cache);
        lookup_end(lp);
        sess_found(req, s, peek);
        sess_put(s);
        return TP_STAGE_NEXT;
    }
    if (hit < 0 && l->errors == 0 && l->miss == TP_AUTH_NONE) {
        lookup_end(lp); /* a key only looked at: none */
        return TP_STAGE_NEXT;
    }
    if (hit < 0) {
        int down = l->errors > 0;
        if (down)
            tp_log_warn("session lookup failed: %s", l->err);
        lookup_end(lp);
        if (down)
            tp_respond_error(req, 503, STORAGE_DOWN);
        else
            tp_respond_auth_error(req, l->miss);
        return TP_STAGE_DONE;
    }
    const char *rkey = l->rkeys[hit], *json = l->hits[hit];
    size_t json_len = strlen(json);
    tp_sess_t *s = sess_build(req, l->ident, l->ident_len, rkey, json, json_len);
    if (l->cache) {
        int64_t now = tp_time_mono_ms();
        uint8_t store[32];
        const char *h = rkey + 7; /* after "apikey-" */
        tp_scache_digest(h, strlen(h), NULL, 0, store);
        int64_t ttl = cache_ttl_ms(w);
        tp_buf_t k = {0}, j = {0};
        if (tp_scache_put(w->scache, l->epoch, l->id, store, rkey, json, json_len, now + ttl) ==
                0 &&
            tp_scache_get(w->scache, l->id, now, &k, &j, &s->cslot, &s->cver))
            l1_store(w, s);
        tp_buf_free(&k);
        tp_buf_free(&j);
    }
    s = sess_want(req, s, l->want, l->cache);
    /* the lookup is over; the session is the request's now */
    lookup_end(lp);
    sess_found(req, s, peek);
    sess_put(s);
    return TP_STAGE_NEXT;
}

static void on_get(void *arg, const redisReply *rep, const char *err)
{
    cand_t *c = arg;
    lookup_t *l = c->l;
    tp_req_t *req = l->req;
    l->cmds[c->i] = NULL;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR) {
        l->errors++;
        snprintf(l->err, sizeof(l->err), "%s", err != NULL ? err : rep->str);
    } else if (rep->type == REDIS_REPLY_STRING) {
        l->hits[c->i] = tp_req_strndup(req, rep->str, rep->len);
    }
    if (--l->pending == 0 && !l->issuing) {
        void (*again)(tp_req_t *) = l->again;
        if (lookup_done(tp_chain_state(req)) == TP_STAGE_NEXT) {
            if (again != NULL)
                again(req);
            else
                tp_chain_resume(req, TP_STAGE_NEXT);
        }
    }
}

/* Adds candidate key name <token> (stored as apikey-HashKey(token)). */
static void add_candidate(lookup_t *l, const tp_conf_t *conf, tp_str_t token)
{
    char hex[TP_KEYHASH_HEX_MAX];
    tp_str_t h = tp_key_storage_hash(token, conf->hash_keys, hex);
    if (l->n == MAX_CANDIDATES)
        return;
    size_t n = h.n + 8;
    char *rkey = tp_req_alloc(l->req, n); /* a duplicate leaves it unused */
    snprintf(rkey, n, "apikey-%.*s", (int)h.n, h.p);
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->rkeys[i], rkey) == 0)
            return;
    l->cands[l->n] = (cand_t){l, l->n};
    l->rkeys[l->n++] = rkey;
}

tp_stage_rc_t tp_session_lookup(tp_req_t *req, tp_str_t key)
{
    return tp_session_lookup_as(req, key, TP_AUTH_KEY_NOT_FOUND, NULL);
}

static tp_stage_rc_t lookup_into(tp_req_t *req, tp_str_t key, int miss, const tp_sess_want_t *want,
                                 void (*again)(tp_req_t *))
{
    int peek = again != NULL;
    tp_worker_t *w = req->conn->w;
    const tp_conf_t *conf = w->conf;
    const tp_api_t *api = req->route->api;
    if (miss == TP_AUTH_KEY_NOT_FOUND && (int64_t)key.n < conf->min_token_length) {
        tp_respond_auth_error(req, miss);
        return TP_STAGE_DONE;
    }
    const char *org = api->org_id != NULL ? api->org_id : "";
    size_t olen = strlen(org);
    char small[512];
    tp_str_t ident = {small, olen + 1 + key.n}; /* org, NUL, key */
    if (ident.n > sizeof(small))
        ident.p = tp_malloc(ident.n);
    memcpy((char *)ident.p, org, olen + 1);
    memcpy((char *)ident.p + olen + 1, key.p, key.n);
    int cache = w->scache != NULL && !conf->local_session_cache.disable_cached_session_state;
    uint8_t id[32];
    if (cache) {
        int64_t now = tp_time_mono_ms(), left;
        tp_sess_t *s = l1_find(w, ident.p, ident.n);
        if (s != NULL && s->gen == req->snap->generation && s->cslot != UINT32_MAX &&
            (left = l1_left(w, s, now)) > 0) {
            if (ident.p != small)
                free((char *)ident.p);
            maybe_refresh(w, s, left, now);
            if (want != NULL) {
                s->refs++;
                s = sess_want(req, s, want, cache);
                sess_found(req, s, peek);
                sess_put(s);
            } else {
                sess_found(req, s, peek);
            }
            tp_counter_add(&w->me->sc_hits, 1);
            return TP_STAGE_NEXT;
        }
        tp_scache_digest(ident.p, ident.n, NULL, 0, id);
        tp_buf_t rkey = {0}, json = {0};
        uint32_t slot;
        uint64_t ver;
        if (tp_scache_get(w->scache, id, now, &rkey, &json, &slot, &ver)) {
            s = sess_build(req, ident.p, ident.n, rkey.data, json.data, json.len);
            s->cslot = slot;
            s->cver = ver;
            l1_store(w, s);
            maybe_refresh(w, s, l1_left(w, s, now), now);
            if (ident.p != small)
                free((char *)ident.p);
            tp_buf_free(&rkey);
            tp_buf_free(&json);
            s = sess_want(req, s, want, cache);
            sess_found(req, s, peek);
            sess_put(s);
            tp_counter_add(&w->me->sc_hits, 1);
            return TP_STAGE_NEXT;
        }
        tp_buf_free(&rkey);
        tp_buf_free(&json);
        tp_counter_add(&w->me->sc_misses, 1);
    }
    if (w->redis == NULL) {
        if (ident.p != small)
            free((char *)ident.p);
        tp_respond_error(req, 503, STORAGE_DOWN);
        return TP_STAGE_DONE;
    }

    /* CheckSessionAndIdentityForValidKey: the names this key may be stored under */
    lookup_t **lp = tp_chain_state(req);
    lookup_t *l = *lp = tp_req_alloc(req, sizeof(*l));
    memset(l, 0, offsetof(lookup_t, err));
    l->err[0] = '\0';
    l->req = req;
    if (want != NULL) { /* the caller's may be gone when Redis answers */
        tp_sess_want_t *copy = tp_req_alloc(req, sizeof(*copy));
        copy->json = tp_req_strndup(req, want->json, strlen(want->json));
        char *pols = tp_req_alloc(req, want->policies_len);
        memcpy(pols, want->policies, want->policies_len);
        copy->policies = pols;
        copy->policies_len = want->policies_len;
        copy->expires = want->expires;
        want = copy;
    }
    l->want = want;
    l->miss = miss;
    l->again = again;
    l->cache = cache;
    l->epoch = cache ? tp_scache_epoch(w->scache) : 0;
    memcpy(l->id, id, sizeof(id));
    l->ident = tp_req_strndup(req, ident.p, ident.n);
    l->ident_len = ident.n;
    if (ident.p != small)
        free((char *)ident.p);
    char torg[512];
    int tl = tp_key_token_org(key, torg, sizeof(torg));
    tp_buf_t tok = {0};
    if (tl >= 0 && (size_t)tl == olen && memcmp(torg, org, olen) == 0) {
        add_candidate(l, conf, key);
    } else {
        tp_str_t o = {org, olen};
        if (tp_key_generate(&tok, o, key, conf->hash_key_function) == 0)
            add_candidate(l, conf, (tp_str_t){tok.data, tok.len});
        add_candidate(l, conf, key);
        for (size_t i = 0; i < conf->hash_key_function_fallback.n; i++) {
            tok.len = 0;
            if (tp_key_generate(&tok, o, key, conf->hash_key_function_fallback.v[i]) == 0)
                add_candidate(l, conf, (tp_str_t){tok.data, tok.len});
        }
    }
    tp_buf_free(&tok);
    tp_req_save(req, req->rp);
    l->pending = l->n;
    l->issuing = 1;
    for (int i = 0; i < l->n; i++) {
        l->cmds[i] = (tp_rcmd_t *)1; /* pending; on_get clears it */
        tp_rcmd_t *cmd = tp_redis_cmd(w->redis, on_get, &l->cands[i], "GET %b", l->rkeys[i],
                                      strlen(l->rkeys[i]));
        if (l->cmds[i] != NULL)
            l->cmds[i] = cmd; /* still waiting for its answer */
    }
    l->issuing = 0;
    if (l->pending == 0) /* answered while being asked */
        return lookup_done(lp);
    return TP_STAGE_LATER;
}

tp_stage_rc_t tp_session_lookup_as(tp_req_t *req, tp_str_t key, int miss,
                                   const tp_sess_want_t *want)
{
    return lookup_into(req, key, miss, want, NULL);
}

tp_stage_rc_t tp_session_peek(tp_req_t *req, tp_str_t key, void (*again)(tp_req_t *))
{
    sess_put(req->peek_sess);
    req->peek_sess = NULL;
    return lookup_into(req, key, TP_AUTH_NONE, NULL, again);
}

const cJSON *tp_session_json(const tp_sess_t *s)
{
    return s->session;
}

const char *tp_session_key(const tp_sess_t *s)
{
    return s->ident + strlen(s->ident) + 1; /* after the org and its NUL */
}

const tp_sess_rec_t *tp_session_rec(tp_sess_t *s)
{
    if (!s->has_rec) {
        const cJSON *j = s->session;
        s->rec.policies = tp_json_get(j, "apply_policies");
        s->rec.tags = tp_json_get(j, "tags");
        s->rec.developer = tp_json_str(tp_json_get(j, "meta_data"), "tyk_developer_id");
        s->rec.oauth_client = tp_json_str(j, "oauth_client_id");
        s->rec.alias = tp_json_str(j, "alias");
        s->rec.detailed = cJSON_IsTrue(tp_json_get(j, "enable_detailed_recording")) ||
                          cJSON_IsTrue(tp_json_get(j, "enable_detail_recording"));
        s->has_rec = 1;
    }
    return &s->rec;
}

const char *tp_session_key_hash(const tp_sess_t *s)
{
    return s->rkey + 7; /* after "apikey-" */
}
