/*
 * worker/tp_jwt.c: JWT authentication (Tyk's JWTMiddleware, TYK-COMPAT 17),
 * two stages in the auth position: "jwt" checks the token and finds (or
 * makes) its session, "jwt_check" verifies a one-to-one token with the
 * secret of the session found.
 *
 * Centralised mode (jwt_source set): the token is verified with the API's
 * key; the identity (jwt_identity_base_field, else sub) names a virtual
 * session, generateToken(org, md5(identity)), made from the policies the
 * claims select and stored in Redis as Tyk stores it, so quotas and rate
 * limits count per identity on every node. One-to-one mode: the identity
 * (kid, else the base field, else sub) is a key whose jwt_data.secret
 * verifies the token.
 *
 * A verified token is remembered per worker (8192 entries, 4-way set
 * associative by a hash of the whole token, compared in constant time): its identity,
 * policies and time claims, and the key it verified with. A repeated
 * token costs a hash, a compare and the time checks; its signature is
 * checked again only when the API's generation or the one-to-one secret
 * changed. Failures are never remembered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/md5.h>

#include "tp_ct.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_jwt.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_worker.h"

#define CACHE_SETS 2048 /* verified tokens per worker: sets (a power of two) ... */
#define CACHE_WAYS 4    /* ... of this many, the least recently used replaced */
#define TOKEN_MAX 8192  /* longer tokens are verified every time */

enum { MODE_ONE_TO_ONE, MODE_KEY, MODE_JWKS, MODE_BROKEN };

struct tp_jwt_api_s {
    uint64_t id; /* unique per compilation: what cache entries belong to */
    tp_jwt_family_t fam;
    int mode;
    tp_jwt_key_t key; /* MODE_KEY */
    char *jwks_url;   /* MODE_JWKS */
    tp_authloc_t loc;
    char *identity_field, *policy_field, *scope_claim;
    char *client_field; /* jwt_client_base_field, when no jwt_policy_field_name: "" */
    cJSON *defaults;    /* jwt_default_policies, an array of strings */
    cJSON *scope_map;   /* scope -> policy ID */
    int skip_kid;
    int client_mapping; /* !idp_client_id_mapping_disabled: oauth_client_id from the claims */
    int64_t exp_skew, iat_skew, nbf_skew;
};

/* What a verified token comes to (a cache entry). */
typedef struct verdict_s {
    uint64_t h, api, keyh; /* token hash, tp_jwt_api_t id, hash of the key it verified with */
    uint64_t used;         /* the cache's tick when it last served */
    char *tok;
    size_t tok_len;
    tp_jwt_times_t t;
    char *identity;
    char *sid;  /* centralised: the virtual session's key */
    char *json; /* ... the session to make */
    char *pols; /* ... its policies (NUL-separated, then "") */
    size_t pols_len;
    int by_client;    /* the base policy is the first of a key's (jwt_client_base_field) ... */
    char *client_key; /* ... this one's */
    char *client_pol; /* ... which it was then (NULL: the key had none) */
} verdict_t;

typedef struct tp_jwt_cache_s {
    uint64_t tick;
    verdict_t v[CACHE_SETS * CACHE_WAYS];
} tp_jwt_cache_t;

static uint64_t next_id = 1;

/* ---- compiling an API ------------------------------------------------------------------ */

static char *str_dup_of(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = tp_json_get(o, key);
    return tp_strdup(cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : dflt);
}

static int64_t uint_of(const cJSON *o, const char *key)
{
    const cJSON *v = tp_json_get(o, key);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (int64_t)v->valuedouble : 0;
}

static int is_url(const char *s, size_t n)
{
    return (n >= 7 && strncasecmp(s, "http://", 7) == 0) ||
           (n >= 8 && strncasecmp(s, "https://", 8) == 0);
}

/* jwt_source: a base64 secret or PEM key (or a JWKS URL, plain or in
 * base64). A source that cannot be used answers 403 as in Tyk. */
static void compile_source(tp_jwt_api_t *j, const char *src, const tp_api_t *api, int quiet)
{
    char err[256] = "";
    size_t n = strlen(src);
    if (is_url(src, n)) {
        j->jwks_url = tp_strdup(src);
    } else {
        unsigned char *raw = tp_malloc(n / 4 * 3 + 3);
        ptrdiff_t rl = tp_b64_std_decode(src, n, raw);
        if (rl < 0)
            snprintf(err, sizeof(err), "not base64 (of a secret, a PEM key or a JWKS URL)");
        else if (is_url((const char *)raw, (size_t)rl))
            j->jwks_url = tp_strndup((const char *)raw, (size_t)rl);
        else if (tp_jwt_key_init(&j->key, j->fam, raw, (size_t)rl, err, sizeof(err)) == 0)
            j->mode = MODE_KEY;
        mbedtls_platform_zeroize(raw, n / 4 * 3 + 3);
        free(raw);
    }
    if (j->jwks_url != NULL)
        j->mode = MODE_JWKS;
    if (j->mode != MODE_KEY && j->mode != MODE_JWKS) {
        j->mode = MODE_BROKEN;
        if (!quiet)
            tp_log_warn("API %s (%s): $.jwt_source: %s; its requests get 403 Key not authorized",
                        api->api_id, api->file, err);
    }
}

tp_jwt_api_t *tp_jwt_compile(const cJSON *def, const tp_api_t *api, int quiet)
{
    if (!cJSON_IsTrue(tp_json_get(def, "enable_jwt")))
        return NULL;
    tp_jwt_api_t *j = tp_calloc(1, sizeof(*j));
    j->id = next_id++;
    const cJSON *m = tp_json_get(def, "jwt_signing_method");
    const char *method = cJSON_IsString(m) ? m->valuestring : "";
    if (strcmp(method, "rsa") == 0)
        j->fam = TP_JWT_RSA;
    else if (strcmp(method, "ecdsa") == 0)
        j->fam = TP_JWT_ECDSA;
    else if (strcmp(method, "hmac") != 0 && !quiet)
        tp_log_warn("API %s (%s): $.jwt_signing_method: \"%s\" is not hmac, rsa or ecdsa: "
                    "treated as hmac, as Tyk does",
                    api->api_id, api->file, method);
    tp_authloc_read(def, "jwt", &j->loc);
    j->identity_field = str_dup_of(def, "jwt_identity_base_field", "");
    j->policy_field = str_dup_of(def, "jwt_policy_field_name", "");
    /* Tyk's getBasePolicyID reads the client's key only without a policy field */
    j->client_field = str_dup_of(def, "jwt_client_base_field", "");
    if (j->policy_field[0] != '\0')
        j->client_field[0] = '\0';
    j->skip_kid = cJSON_IsTrue(tp_json_get(def, "jwt_skip_kid"));
    j->client_mapping = !cJSON_IsTrue(tp_json_get(def, "idp_client_id_mapping_disabled"));
    j->exp_skew = uint_of(def, "jwt_expires_at_validation_skew");
    j->iat_skew = uint_of(def, "jwt_issued_at_validation_skew");
    j->nbf_skew = uint_of(def, "jwt_not_before_validation_skew");
    j->defaults = cJSON_CreateArray();
    const cJSON *d, *dl = tp_json_get(def, "jwt_default_policies");
    if (!cJSON_IsArray(dl))
        dl = NULL;
    cJSON_ArrayForEach(d, dl) if (cJSON_IsString(d) && d->valuestring[0] != '\0')
        cJSON_AddItemToArray(j->defaults, cJSON_CreateString(d->valuestring));
    /* the newer scopes.jwt wins when present */
    const cJSON *sj = tp_json_get(tp_json_get(def, "scopes"), "jwt");
    const cJSON *map = tp_json_get(sj, "scope_to_policy");
    if (cJSON_IsObject(map) && map->child != NULL) {
        j->scope_claim = str_dup_of(sj, "scope_claim_name", "scope");
    } else {
        map = tp_json_get(def, "jwt_scope_to_policy_mapping");
        j->scope_claim = str_dup_of(def, "jwt_scope_claim_name", "scope");
    }
    j->scope_map = cJSON_IsObject(map) ? cJSON_Duplicate(map, 1) : cJSON_CreateObject();
    const cJSON *src = tp_json_get(def, "jwt_source");
    if (cJSON_IsString(src) && src->valuestring[0] != '\0')
        compile_source(j, src->valuestring, api, quiet);
    else
        j->mode = MODE_ONE_TO_ONE;
    return j;
}

void tp_jwt_api_free(tp_jwt_api_t *j)
{
    if (j == NULL)
        return;
    tp_jwt_key_free(&j->key);
    free(j->jwks_url);
    tp_authloc_free(&j->loc);
    free(j->identity_field);
    free(j->policy_field);
    free(j->client_field);
    free(j->scope_claim);
    cJSON_Delete(j->defaults);
    cJSON_Delete(j->scope_map);
    free(j);
}

/* ---- the verdict cache ----------------------------------------------------------------- */

static void verdict_clear(verdict_t *v)
{
    free(v->tok);
    free(v->identity);
    free(v->sid);
    free(v->json);
    free(v->pols);
    free(v->client_key);
    free(v->client_pol);
    memset(v, 0, sizeof(*v));
}

static uint64_t token_hash(const char *p, size_t n)
{
    uint64_t h[2];
    tp_murmur3_128(p, n, 0x4a5754u, h);
    return h[0] | 1; /* 0 marks an empty slot */
}

static verdict_t *cache_set(tp_jwt_cache_t *c, uint64_t h)
{
    return &c->v[(h >> 1 & (CACHE_SETS - 1)) * CACHE_WAYS];
}

static verdict_t *cache_find(tp_worker_t *w, const tp_jwt_api_t *j, tp_str_t tok, uint64_t h)
{
    tp_jwt_cache_t *c = w->jwt_cache;
    if (c == NULL)
        return NULL;
    verdict_t *set = cache_set(c, h);
    for (int i = 0; i < CACHE_WAYS; i++) {
        verdict_t *v = &set[i];
        if (v->h == h && v->api == j->id && tp_ct_equal(tok.p, tok.n, v->tok, v->tok_len)) {
            v->used = ++c->tick;
            return v;
        }
    }
    return NULL;
}

/* A fresh entry for <tok> (in place of its set's least recently used),
 * or NULL when the token is too long to keep. */
static verdict_t *cache_take(tp_worker_t *w, const tp_jwt_api_t *j, tp_str_t tok, uint64_t h)
{
    if (tok.n > TOKEN_MAX)
        return NULL;
    if (w->jwt_cache == NULL)
        w->jwt_cache = tp_calloc(1, sizeof(*w->jwt_cache));
    tp_jwt_cache_t *c = w->jwt_cache;
    verdict_t *set = cache_set(c, h), *v = set;
    for (int i = 1; i < CACHE_WAYS && v->h != 0; i++)
        if (set[i].h == 0 || set[i].used < v->used)
            v = &set[i];
    verdict_clear(v);
    v->h = h;
    v->api = j->id;
    v->used = ++c->tick;
    v->tok = tp_malloc(tok.n);
    memcpy(v->tok, tok.p, tok.n);
    v->tok_len = tok.n;
    return v;
}

/* ---- claims ---------------------------------------------------------------------------- */

/* A non-empty string claim, or NULL. */
static const char *claim_str(const cJSON *claims, const char *name)
{
    const cJSON *c = tp_json_get(claims, name);
    return cJSON_IsString(c) && c->valuestring[0] != '\0' ? c->valuestring : NULL;
}

/* getUserIDFromClaim: the identity of a centralised token, or NULL with
 * Tyk's reason in *why. A claim that is not a string counts as absent. */
static const char *central_identity(const tp_jwt_api_t *j, const cJSON *claims, char *why,
                                    size_t cap)
{
    if (j->identity_field[0] != '\0') {
        const cJSON *c = tp_json_get(claims, j->identity_field);
        if (cJSON_IsString(c)) {
            if (c->valuestring[0] != '\0')
                return c->valuestring;
            snprintf(why, cap, "found an empty user ID in predefined base field claim %s",
                     j->identity_field);
            return NULL;
        }
    }
    const cJSON *sub = tp_json_get(claims, "sub");
    if (cJSON_IsString(sub)) {
        if (sub->valuestring[0] != '\0')
            return sub->valuestring;
        snprintf(why, cap, "found an empty user ID in sub claim");
        return NULL;
    }
    snprintf(why, cap, "no suitable claims for user ID were found");
    return NULL;
}

/* The claim at dotted path <name> ("realm_access.roles"). */
static const cJSON *claim_path(const cJSON *claims, const char *name)
{
    const cJSON *c = tp_json_get(claims, name);
    if (c != NULL || strchr(name, '.') == NULL)
        return c;
    char part[256];
    c = claims;
    for (const char *p = name; c != NULL && *p != '\0';) {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        c = tp_json_get(c, part);
        p += n + (dot != NULL);
    }
    return c;
}

static void pols_add(tp_buf_t *b, const char *id)
{
    for (size_t at = 0; at < b->len; at += strlen(b->data + at) + 1)
        if (strcmp(b->data + at, id) == 0)
            return; /* duplicates removed */
    tp_buf_append(b, id, strlen(id) + 1);
}

/* toScopeStringsSlice and mapScopeToPolicies: a string claim is split on
 * spaces, a list's strings are taken whole (lists flattened); each scope
 * with a mapping adds its policy. Counts the scopes seen in *seen. */
static void scopes_add(const tp_jwt_api_t *j, const cJSON *scope, int nested, tp_buf_t *b,
                       int *seen)
{
    if (cJSON_IsString(scope)) {
        const char *p = scope->valuestring;
        do {
            size_t n = nested ? strlen(p) : strcspn(p, " ");
            char name[256];
            (*seen)++;
            if (n < sizeof(name)) {
                memcpy(name, p, n);
                name[n] = '\0';
                const cJSON *pol = tp_json_get(j->scope_map, name);
                if (cJSON_IsString(pol) && pol->valuestring[0] != '\0')
                    pols_add(b, pol->valuestring);
            }
            p += n;
        } while (*p++ == ' ');
    } else if (cJSON_IsArray(scope)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, scope) scopes_add(j, e, 1, b, seen);
    }
}

/* The policies a centralised token selects (17.4) into <b>, or -1 with
 * Tyk's reason in <why>. */
static int central_policies(tp_worker_t *w, const tp_snapshot_t *snap, const char *org,
                            const tp_jwt_api_t *j, const cJSON *claims, const char *client_pol,
                            tp_buf_t *b, char *why, size_t cap)
{
    const char *base = j->policy_field[0] != '\0' ? claim_str(claims, j->policy_field) : client_pol;
    if (base != NULL) {
        pols_add(b, base);
    } else {
        const cJSON *d;
        cJSON_ArrayForEach(d, j->defaults) pols_add(b, d->valuestring);
    }
    if (j->scope_map->child != NULL) {
        /* scopes given: the base policy (not the defaults), then the mapped ones */
        tp_buf_t mapped = {0};
        int seen = 0;
        if (base != NULL)
            pols_add(&mapped, base);
        scopes_add(j, claim_path(claims, j->scope_claim), 0, &mapped, &seen);
        if (seen > 0) {
            if (mapped.len == 0) {
                tp_buf_free(&mapped);
                snprintf(why, cap, "key not authorized: no matching policy found in scope claim");
                return -1;
            }
            b->len = 0;
            tp_buf_append(b, mapped.data, mapped.len);
        }
        tp_buf_free(&mapped);
    }
    if (b->len == 0) {
        snprintf(why, cap, "key not authorized: no matching policy found");
        return -1;
    }
    for (size_t at = 0; at < b->len; at += strlen(b->data + at) + 1)
        if (tp_session_policy(w, snap, org, b->data + at) == NULL) {
            snprintf(why, cap, "key not authorized: no matching policy");
            return -1;
        }
    tp_buf_putc(b, '\0');
    return 0;
}

/* The virtual session a new identity gets: its policies, alias, the
 * session ID in meta_data, the token's expiry (the policies add the rest
 * when applied). */
static char *central_session(const char *org, const char *identity, const char *sid,
                             const tp_buf_t *pols, int64_t exp, int64_t key_expires,
                             const char *client)
{
    cJSON *s = cJSON_CreateObject();
    if (client != NULL)
        cJSON_AddStringToObject(s, "oauth_client_id", client);
    cJSON_AddStringToObject(s, "org_id", org);
    cJSON *a = cJSON_AddArrayToObject(s, "apply_policies");
    for (size_t at = 0; at + 1 < pols->len; at += strlen(pols->data + at) + 1)
        cJSON_AddItemToArray(a, cJSON_CreateString(pols->data + at));
    cJSON_AddObjectToObject(s, "access_rights");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "meta_data"), "TykJWTSessionID", sid);
    cJSON_AddStringToObject(s, "alias", identity);
    cJSON_AddNumberToObject(s, "expires", (double)(exp > key_expires ? exp : key_expires));
    char *out = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    return out;
}

/* key_expires_in of the first policy (Tyk sets expires from it when it
 * makes the session): unix seconds, or 0. */
static int64_t policy_expiry(tp_worker_t *w, const tp_snapshot_t *snap, const char *org,
                             const tp_buf_t *pols)
{
    const cJSON *p = pols->len > 0 ? tp_session_policy(w, snap, org, pols->data) : NULL;
    const cJSON *k = tp_json_get(p, "key_expires_in");
    if (!cJSON_IsNumber(k) || k->valuedouble <= 0)
        return 0;
    return tp_time_wall_us() / 1000000 + (int64_t)k->valuedouble;
}

/* ---- the stages ------------------------------------------------------------------------ */

static const tp_jwt_api_t *jwt_of(const tp_req_t *req)
{
    const tp_compiled_t *c = tp_compiled(req->conn->w, req);
    return c != NULL ? c->jwt : NULL;
}

static tp_stage_rc_t refuse(tp_req_t *req, int status, const char *msg)
{
    tp_respond_auth_failure(req, status, msg);
    return TP_STAGE_DONE;
}

/* Parses <tok> and checks its algorithm: 0, or the request answered. */
static int parse_checked(tp_req_t *req, const tp_jwt_api_t *j, tp_str_t tok, tp_jwt_t *jt)
{
    if (tp_jwt_parse(jt, tok.p, tok.n) < 0) {
        refuse(req, 403, "Key not authorized");
        return -1;
    }
    if (!tp_jwt_alg_known(jt->alg)) { /* "signing method (alg) is unavailable" */
        tp_jwt_free(jt);
        refuse(req, 403, "Key not authorized");
        return -1;
    }
    if (!tp_jwt_alg_in(jt->alg, j->fam)) {
        char why[128];
        tp_jwt_alg_error(jt->alg, j->fam, why, sizeof(why));
        tp_log_debug("JWT refused: %s", why);
        tp_jwt_free(jt);
        refuse(req, 403, "Key not authorized: Unexpected signing method");
        return -1;
    }
    return 0;
}

static tp_stage_rc_t check_times(tp_req_t *req, const tp_jwt_api_t *j, const tp_jwt_times_t *t)
{
    const char *why =
        tp_jwt_times_check(t, tp_time_wall_us() / 1000000, j->exp_skew, j->iat_skew, j->nbf_skew);
    if (why == NULL)
        return TP_STAGE_NEXT;
    char msg[128];
    snprintf(msg, sizeof(msg), "Key not authorized: %s", why);
    return refuse(req, 401, msg);
}

/* Centralised: a verified token's session lookup. */
static tp_stage_rc_t central_lookup(tp_req_t *req, const verdict_t *v)
{
    tp_stage_rc_t rc = check_times(req, jwt_of(req), &v->t);
    if (rc != TP_STAGE_NEXT)
        return rc;
    tp_sess_want_t want = {v->json, v->pols, v->pols_len, v->t.has_exp == 1 ? v->t.exp : 0};
    return tp_session_lookup_as(req, (tp_str_t){v->sid, strlen(v->sid)}, TP_AUTH_NOT_AUTHORIZED,
                                &want);
}

static tp_stage_rc_t jwt_run(tp_req_t *req);

/* The set or the client's key came (or failed): the stage runs again and
 * goes on itself. */
static void run_again(tp_req_t *req)
{
    tp_stage_rc_t rc = jwt_run(req);
    if (rc == TP_STAGE_NEXT || rc == TP_STAGE_ERROR)
        tp_chain_resume(req, rc);
}

/* Waits for the API's key set: the request is queued, its head kept. */
static void jwks_wait(tp_req_t *req, const tp_jwt_api_t *j)
{
    void **st = tp_chain_state(req);
    tp_jwks_wait_t *wt = tp_req_alloc(req, sizeof(*wt));
    tp_list_init(&wt->link);
    wt->req = req;
    wt->again = run_again;
    st[1] = wt;
    tp_jwks_wait(req->conn->w, j->jwks_url, wt);
    tp_req_save(req, req->rp);
}

/* The JWKS key for <jt>'s kid into <k>: 1, or 0 (none: 403), or -1 (the
 * request waits for a fetch). *version: the set's. */
static int jwks_key(tp_req_t *req, const tp_jwt_api_t *j, const tp_jwt_t *jt, tp_jwt_key_t *k,
                    uint64_t *version)
{
    tp_worker_t *w = req->conn->w;
    const cJSON *kid = tp_json_get(jt->header, "kid");
    if (!cJSON_IsString(kid)) /* "kid is not a string" */
        return 0;
    const cJSON *set;
    if (tp_jwks_get(w, j->jwks_url, &set, version) < 0) {
        jwks_wait(req, j);
        return -1;
    }
    const cJSON *jwk = set != NULL ? tp_jwks_key(set, kid->valuestring) : NULL;
    if (jwk == NULL) {
        if (set != NULL && !req->jwks_refetched && tp_jwks_refetch(w, j->jwks_url)) {
            req->jwks_refetched = 1; /* once per request */
            jwks_wait(req, j);
            return -1;
        }
        tp_log_debug("JWKS %s: no key %s", j->jwks_url, kid->valuestring);
        return 0;
    }
    char err[128];
    if (tp_jwt_key_from_jwk(k, j->fam, jwk, err, sizeof(err)) < 0) {
        tp_log_warn("JWKS %s: key %s: %s", j->jwks_url, kid->valuestring, err);
        return 0;
    }
    return 1;
}

/* jwt_client_base_field (Tyk's getBasePolicyID): the first policy of the
 * session of key <key> into *pol (NULL: no such key, or it has none; the
 * defaults apply then). TP_STAGE_NEXT, or TP_STAGE_LATER while it is read
 * (the stage runs again), or TP_STAGE_DONE (Redis cannot tell: 503). */
static tp_stage_rc_t client_policy(tp_req_t *req, const char *key, const char **pol)
{
    *pol = NULL;
    if (!req->jwt_peeked) {
        req->jwt_peeked = 1;
        tp_stage_rc_t rc = tp_session_peek(req, (tp_str_t){key, strlen(key)}, run_again);
        if (rc != TP_STAGE_NEXT)
            return rc;
    }
    const cJSON *sess = req->peek_sess != NULL ? tp_session_json(req->peek_sess) : NULL;
    const cJSON *a = tp_json_get(sess, "apply_policies");
    const cJSON *first =
        cJSON_IsArray(a) && a->child != NULL ? a->child : tp_json_get(sess, "apply_policy_id");
    if (cJSON_IsString(first) && first->valuestring[0] != '\0')
        *pol = first->valuestring;
    return TP_STAGE_NEXT;
}

static int same_str(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* Centralised, not remembered: verify, derive the identity and its
 * policies, remember them. */
static tp_stage_rc_t central_verify(tp_req_t *req, const tp_jwt_api_t *j, tp_str_t tok, uint64_t h)
{
    tp_worker_t *w = req->conn->w;
    tp_jwt_t jt;
    if (parse_checked(req, j, tok, &jt) < 0)
        return TP_STAGE_DONE;
    tp_jwt_key_t jk;
    const tp_jwt_key_t *key = &j->key;
    uint64_t keyh = 0;
    if (j->mode == MODE_JWKS) {
        int r = jwks_key(req, j, &jt, &jk, &keyh);
        if (r <= 0) {
            tp_jwt_free(&jt);
            return r < 0 ? TP_STAGE_LATER : refuse(req, 403, "Key not authorized");
        }
        key = &jk;
    }
    int ok = (j->mode == MODE_KEY || j->mode == MODE_JWKS) && tp_jwt_verify(&jt, tok.p, key);
    if (key == &jk)
        tp_jwt_key_free(&jk);
    if (!ok) {
        tp_jwt_free(&jt);
        return refuse(req, 403, "Key not authorized");
    }
    tp_jwt_times_t t;
    tp_jwt_times(jt.claims, &t);
    tp_stage_rc_t rc = check_times(req, j, &t);
    if (rc != TP_STAGE_NEXT) {
        tp_jwt_free(&jt);
        return rc;
    }
    char why[256];
    const char *identity = central_identity(j, jt.claims, why, sizeof(why));
    if (identity == NULL) {
        tp_jwt_free(&jt);
        return refuse(req, 403, why);
    }
    /* the base policy may be the first of another key's */
    const char *ckey = j->client_field[0] != '\0' ? claim_str(jt.claims, j->client_field) : NULL;
    const char *cpol = NULL;
    if (ckey != NULL && (rc = client_policy(req, ckey, &cpol)) != TP_STAGE_NEXT) {
        tp_jwt_free(&jt);
        return rc;
    }
    const tp_api_t *api = req->route->api;
    const char *org = api->org_id != NULL ? api->org_id : "";
    tp_buf_t pols = {0};
    if (central_policies(w, req->snap, org, j, jt.claims, cpol, &pols, why, sizeof(why)) < 0) {
        tp_buf_free(&pols);
        tp_jwt_free(&jt);
        return refuse(req, 403, why);
    }
    /* the session ID: generateToken(org, md5hex(identity)) */
    unsigned char md[16];
    char hex[33];
    mbedtls_md5_ret((const unsigned char *)identity, strlen(identity), md);
    tp_hex(hex, md, 16);
    tp_buf_t sid = {0};
    if (tp_key_generate(&sid, (tp_str_t){org, strlen(org)}, (tp_str_t){hex, 32},
                        w->conf->hash_key_function) < 0) {
        tp_buf_free(&pols);
        tp_jwt_free(&jt);
        return TP_STAGE_ERROR;
    }
    verdict_t tmp = {0}, *v = cache_take(w, j, tok, h);
    if (v == NULL)
        v = &tmp;
    v->t = t;
    v->keyh = keyh;
    v->identity = tp_strdup(identity);
    v->sid = tp_strdup(tp_buf_cstr(&sid));
    /* the IdP's client: the first of clientId (Keycloak), cid (Okta), client_id */
    const char *client = NULL;
    static const char *const cids[] = {"clientId", "cid", "client_id"};
    for (int i = 0; j->client_mapping && client == NULL && i < 3; i++)
        client = claim_str(jt.claims, cids[i]);
    v->json = central_session(org, identity, v->sid, &pols, t.has_exp == 1 ? t.exp : 0,
                              policy_expiry(w, req->snap, org, &pols), client);
    v->pols = tp_malloc(pols.len);
    memcpy(v->pols, pols.data, pols.len);
    v->pols_len = pols.len;
    if (ckey != NULL) {
        v->by_client = 1;
        v->client_key = tp_strdup(ckey);
        v->client_pol = cpol != NULL ? tp_strdup(cpol) : NULL;
    }
    tp_buf_free(&sid);
    tp_buf_free(&pols);
    tp_jwt_free(&jt);
    rc = central_lookup(req, v);
    if (v == &tmp)
        verdict_clear(&tmp);
    return rc;
}

/* One-to-one: kid, else the base field, else sub. */
static const char *own_identity(const tp_jwt_api_t *j, const tp_jwt_t *jt)
{
    const cJSON *kid = tp_json_get(jt->header, "kid");
    if (!j->skip_kid && cJSON_IsString(kid))
        return kid->valuestring;
    const char *id = j->identity_field[0] != '\0' ? claim_str(jt->claims, j->identity_field) : NULL;
    if (id == NULL)
        id = claim_str(jt->claims, "sub");
    return id;
}

/* enable_context_vars: each header field and claim of the token as
 * jwt_claims_<name> (Tyk sets them before it verifies; a token that fails
 * ends the request, so nothing reads them then). */
static void claims_context(tp_req_t *req, tp_str_t tok)
{
    tp_jwt_t jt;
    if (tp_jwt_parse(&jt, tok.p, tok.n) < 0)
        return;
    const cJSON *objs[2] = {jt.header, jt.claims}, *c;
    for (int i = 0; i < 2; i++) {
        cJSON_ArrayForEach(c, objs[i])
        {
            char name[256];
            int n = snprintf(name, sizeof(name), "jwt_claims_%s", c->string);
            if (n > 0 && (size_t)n < sizeof(name))
                tp_ctx_set_json(req, name, (size_t)n, c);
        }
    }
    tp_jwt_free(&jt);
}

static tp_stage_rc_t jwt_run(tp_req_t *req)
{
    if (req->ignored)
        return TP_STAGE_NEXT;
    const tp_jwt_api_t *j = jwt_of(req);
    if (j == NULL)
        return TP_STAGE_ERROR;
    tp_session_method(req, TP_ID_JWT);
    void **st = tp_chain_state(req); /* [0] the session lookup, [1] a JWKS wait */
    st[0] = st[1] = NULL;
    tp_buf_t tmp = {0};
    tp_str_t tok = tp_auth_token(req, &j->loc, req->rp->query, &tmp);
    tp_stage_rc_t rc;
    if (tok.n == 0) {
        rc = refuse(req, 400, "Authorization field missing");
    } else {
        if (req->rules->context_vars)
            claims_context(req, tok);
        uint64_t h = token_hash(tok.p, tok.n);
        verdict_t *v = cache_find(req->conn->w, j, tok, h);
        if (v != NULL && j->mode == MODE_JWKS) {
            /* remembered with an older key set: verified again */
            const cJSON *set;
            uint64_t version;
            if (tp_jwks_get(req->conn->w, j->jwks_url, &set, &version) < 0 || version != v->keyh)
                v = NULL;
        }
        rc = TP_STAGE_NEXT;
        if (v != NULL && v->by_client) {
            /* it stands while the client's key has the same first policy */
            const char *cpol;
            rc = client_policy(req, v->client_key, &cpol);
            if (rc == TP_STAGE_NEXT && !same_str(cpol, v->client_pol))
                v = NULL;
        }
        if (rc != TP_STAGE_NEXT) {
            /* the client's key is read, or Redis is away */
        } else if (j->mode != MODE_ONE_TO_ONE) {
            rc = v != NULL ? central_lookup(req, v) : central_verify(req, j, tok, h);
        } else if (v != NULL) {
            rc = tp_session_lookup_as(req, (tp_str_t){v->identity, strlen(v->identity)},
                                      TP_AUTH_NOT_AUTHORIZED, NULL);
        } else {
            tp_jwt_t jt;
            if (parse_checked(req, j, tok, &jt) < 0) {
                rc = TP_STAGE_DONE;
            } else {
                const char *id = own_identity(j, &jt);
                rc = id == NULL ? refuse(req, 403, "Key not authorized")
                                : tp_session_lookup_as(req, (tp_str_t){id, strlen(id)},
                                                       TP_AUTH_NOT_AUTHORIZED, NULL);
                tp_jwt_free(&jt);
            }
        }
    }
    tp_buf_free(&tmp);
    return rc;
}

/* One-to-one: the session's jwt_data.secret verifies the token. */
static tp_stage_rc_t check_run(tp_req_t *req)
{
    const tp_jwt_api_t *j = jwt_of(req);
    tp_sess_t *sess = tp_session_current(req);
    if (req->ignored || j == NULL || j->mode != MODE_ONE_TO_ONE || sess == NULL)
        return TP_STAGE_NEXT;
    tp_worker_t *w = req->conn->w;
    const cJSON *sec = tp_json_get(tp_json_get(tp_session_json(sess), "jwt_data"), "secret");
    const char *secret = cJSON_IsString(sec) ? sec->valuestring : "";
    size_t slen = strlen(secret);
    tp_buf_t tmp = {0};
    tp_str_t tok = tp_auth_token(req, &j->loc, req->rp->query, &tmp);
    uint64_t h = token_hash(tok.p, tok.n), keyh = token_hash(secret, slen);
    verdict_t *v = cache_find(w, j, tok, h);
    tp_stage_rc_t rc;
    if (v != NULL && v->keyh == keyh) {
        rc = check_times(req, j, &v->t);
        tp_buf_free(&tmp);
        return rc;
    }
    tp_jwt_t jt;
    if (parse_checked(req, j, tok, &jt) < 0) {
        tp_buf_free(&tmp);
        return TP_STAGE_DONE;
    }
    tp_jwt_key_t key;
    char err[128];
    int ok = slen > 0 && tp_jwt_key_init(&key, j->fam, secret, slen, err, sizeof(err)) == 0;
    if (ok) {
        ok = tp_jwt_verify(&jt, tok.p, &key);
        tp_jwt_key_free(&key);
    }
    if (!ok) {
        rc = refuse(req, 403, "Key not authorized");
    } else {
        tp_jwt_times_t t;
        tp_jwt_times(jt.claims, &t);
        rc = check_times(req, j, &t);
        const char *id = own_identity(j, &jt);
        /* the token's entry, if it verified with an older secret, or a new one */
        if (rc == TP_STAGE_NEXT && id != NULL && (v != NULL || (v = cache_take(w, j, tok, h)))) {
            free(v->identity);
            v->t = t;
            v->keyh = keyh;
            v->identity = tp_strdup(id);
        }
    }
    tp_jwt_free(&jt);
    tp_buf_free(&tmp);
    return rc;
}

static int jwt_wanted(const tp_chain_api_t *a)
{
    return !a->keyless && a->jwt;
}

static void jwt_cancel(tp_req_t *req)
{
    void **st = tp_chain_state_peek(req);
    if (st != NULL && st[1] != NULL) {
        tp_jwks_unwait(st[1]);
        st[1] = NULL;
    }
    tp_session_cancel(req);
}

const tp_stage_t tp_stage_jwt = {.name = "jwt",
                                 .wanted = jwt_wanted,
                                 .run = jwt_run,
                                 .cancel = jwt_cancel,
                                 .state = 2 * sizeof(void *)};

const tp_stage_t tp_stage_jwt_check = {.name = "jwt_check", .wanted = jwt_wanted, .run = check_run};
