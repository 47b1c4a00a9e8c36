/*
 * worker/tp_rest_keys.c: /tyk/keys, Tyk's key management API (TYK-COMPAT
 * 1.4; gateway/api.go keyHandler, handleAddOrUpdate, handleGetDetail,
 * handleDeleteKey, createKeyHandler, previewKeyHandler, policyUpdateHandler).
 *
 * Each operation is a job: a few rounds of Redis commands sent together,
 * each round ending in the next step. Sessions are written as Tyk writes
 * them (apikey-<hash>, full SessionState JSON, TTL from ApplyLifetime);
 * every write or delete evicts the node's cached session at once and
 * publishes KeySpaceUpdateNotification so other nodes (Tyk's too) drop
 * theirs. Raw keys are never logged: only their storage hash.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_notice.h"
#include "tp_session_json.h"
#include "tp_shm_session.h"
#include "tp_time.h"
#include "tp_crypt.h"
#include "tp_rest_keys.h"
#include "tp_worker.h"

/* ---- helpers ------------------------------------------------------------------------ */

static const char *str_member(const cJSON *o, const char *key)
{
    const cJSON *v = o != NULL ? tp_json_get(o, key) : NULL;
    return v != NULL && cJSON_IsString(v) ? v->valuestring : "";
}

static void set_str(cJSON *o, const char *key, const char *v)
{
    cJSON_DeleteItemFromObject(o, key);
    cJSON_AddStringToObject(o, key, v);
}

static char *storage_hash(const tp_conf_t *conf, const char *token)
{
    char hex[TP_KEYHASH_HEX_MAX];
    tp_str_t h = tp_key_storage_hash((tp_str_t){token, strlen(token)}, conf->hash_keys, hex);
    return tp_strndup(h.p, h.n);
}

static char *generate(const char *org, const char *id, const char *alg)
{
    tp_buf_t b = {0};
    if (tp_key_generate(&b, (tp_str_t){org, strlen(org)}, (tp_str_t){id, strlen(id)}, alg) < 0) {
        tp_buf_free(&b);
        return NULL;
    }
    return (char *)tp_buf_cstr(&b);
}

static const tp_api_t *api_by_id(const tp_snapshot_t *snap, const char *id)
{
    for (size_t i = 0; i < snap->napis; i++)
        if (strcmp(snap->apis[i]->api_id, id) == 0)
            return snap->apis[i];
    return NULL;
}

/* Applies the session's policies as Tyk's ApplyPolicies would for API org
 * <api_org> (NULL: none). Returns 0 or -1 with the reason. */
static int apply_policies(kjob_t *j, cJSON *sess, const char *api_org, char *err, size_t errlen)
{
    return tp_session_apply_policies(j->req->conn->w, j->req->snap, sess, api_org, err, errlen);
}

/* Policies of the session with key_expires_in: checkAndApplyTrialPeriod. */
static void trial_period(kjob_t *j, cJSON *sess, int64_t now)
{
    const tp_snapshot_t *snap = j->req->snap;
    const cJSON *pols = tp_json_get(sess, "apply_policies");
    const char *legacy = str_member(sess, "apply_policy_id");
    for (size_t i = 0; i < snap->npolicies; i++) {
        const char *id = snap->policies[i].id;
        int listed = strcmp(legacy, id) == 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, pols) if (cJSON_IsString(p) && strcmp(p->valuestring, id) == 0)
            listed = 1;
        if (!listed)
            continue;
        cJSON *pol = cJSON_Parse(snap->policies[i].json);
        int64_t in = tp_session_int(pol, "key_expires_in");
        if (in > 0)
            tp_json_set_number(sess, "expires", (double)(now + in));
        cJSON_Delete(pol);
    }
}

/* The Redis TTL for a session: the largest Lifetime over its loaded APIs
 * (all loaded APIs for a master key), -1 winning (ApplyLifetime). */
static int64_t lifetime_of(kjob_t *j, const cJSON *sess, int64_t now)
{
    const tp_snapshot_t *snap = j->req->snap;
    const tp_conf_t *conf = kjob_conf(j);
    const cJSON *ar = tp_json_get(sess, "access_rights");
    int master = ar == NULL || !cJSON_IsObject(ar) || ar->child == NULL;
    int64_t best = 0;
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_api_t *api = snap->apis[i];
        if (!master && cJSON_GetObjectItemCaseSensitive(ar, api->api_id) == NULL)
            continue;
        cJSON *def = cJSON_Parse(api->def_json);
        const cJSON *sl = tp_json_get(def, "session_lifetime");
        const cJSON *re = tp_json_get(def, "session_lifetime_respects_key_expiration");
        int64_t lt =
            tp_session_lifetime(sess, conf, sl && cJSON_IsNumber(sl) ? (int64_t)sl->valuedouble : 0,
                                re != NULL && cJSON_IsTrue(re), now);
        cJSON_Delete(def);
        if (lt == -1)
            return -1;
        if (lt > best)
            best = lt;
    }
    if (master && snap->napis == 0)
        best = tp_session_lifetime(sess, conf, 0, 0, now);
    return best;
}

/* The quota counters ResetQuota deletes, for storage hash <h>. */
static void reset_quota(kjob_t *j, const cJSON *sess, const char *h)
{
    tp_buf_t k = {0};
    tp_buf_printf(&k, "quota-%s", h);
    const char *del[2] = {"DEL", tp_buf_cstr(&k)};
    kjob_cmd(j, 2, del);
    k.len = 0;
    tp_buf_printf(&k, "rate-limit-%s.BLOCKED", h);
    del[1] = tp_buf_cstr(&k);
    kjob_cmd(j, 2, del);
    const cJSON *ar = tp_json_get(sess, "access_rights"), *a;
    cJSON_ArrayForEach(a, ar)
    {
        const char *scope = str_member(a, "allowance_scope");
        if (scope[0] == '\0' || j->n >= MAX_CMDS - 4)
            continue;
        k.len = 0;
        tp_buf_printf(&k, "quota-%s-%s", scope, h);
        del[1] = tp_buf_cstr(&k);
        kjob_cmd(j, 2, del);
    }
    tp_buf_free(&k);
}

/* Drops the session everywhere it may be cached: this node's cache now,
 * other nodes through the notification Tyk publishes (clearCacheForKey). */
static void announce(kjob_t *j, const char *h)
{
    tp_worker_t *w = j->req->conn->w;
    uint8_t d[32];
    tp_scache_digest(h, strlen(h), NULL, 0, d);
    if (w->scache != NULL)
        tp_scache_evict_store(w->scache, d);
    char *msg = tp_notice_format("KeySpaceUpdateNotification", h, w->conf->node_secret);
    const char *pub[3] = {"PUBLISH", "tyk.cluster.notifications", msg};
    kjob_cmd(j, 3, pub);
    free(msg);
}

/* ---- finding a stored session (SessionDetail) ------------------------------------------ */

static void add_cand(kjob_t *j, const char *token, const char *rkey_hash)
{
    if (j->ncand == MAX_CAND)
        return;
    tp_buf_t r = {0};
    tp_buf_printf(&r, "apikey-%s", rkey_hash);
    for (int i = 0; i < j->ncand; i++)
        if (strcmp(j->cand_rkey[i], tp_buf_cstr(&r)) == 0) {
            tp_buf_free(&r);
            return;
        }
    j->cand_tok[j->ncand] = token != NULL ? tp_strdup(token) : NULL;
    j->cand_rkey[j->ncand++] = (char *)tp_buf_cstr(&r);
}

/* Looks <key> up for <org> as Tyk's SessionDetail does; then <next>, with
 * j->found set (or NULL). */
static void find(kjob_t *j, const char *org, const char *key, int hashed, kstep_cb next)
{
    const tp_conf_t *conf = kjob_conf(j);
    if (hashed) {
        add_cand(j, NULL, key);
    } else {
        char torg[512];
        int tl = tp_key_token_org((tp_str_t){key, strlen(key)}, torg, sizeof(torg));
        if (tl >= 0 && strcmp(torg, org) == 0) {
            char *h = storage_hash(conf, key);
            add_cand(j, key, h);
            free(h);
        } else {
            const char *algs[MAX_CAND];
            size_t na = 0;
            algs[na++] = conf->hash_key_function;
            for (size_t i = 0; i < conf->hash_key_function_fallback.n && na < MAX_CAND - 1; i++)
                algs[na++] = conf->hash_key_function_fallback.v[i];
            for (size_t a = 0; a < na; a++) {
                char *tok = generate(org, key, algs[a]);
                if (tok != NULL) {
                    char *h = storage_hash(conf, tok);
                    add_cand(j, tok, h);
                    free(h);
                    free(tok);
                }
                if (a == 0) {
                    char *h = storage_hash(conf, key);
                    add_cand(j, key, h);
                    free(h);
                }
            }
        }
    }
    kjob_round_begin(j, next);
    for (int i = 0; i < j->ncand; i++) {
        const char *get[2] = {"GET", j->cand_rkey[i]};
        kjob_cmd(j, 2, get);
    }
    kjob_round_end(j);
}

/* After find(): picks the first candidate that held a session. */
static int found(kjob_t *j)
{
    for (int i = 0; i < j->n && i < j->ncand; i++) {
        redisReply *r = j->replies[i];
        if (r == NULL || r->type != REDIS_REPLY_STRING)
            continue;
        char err[256];
        cJSON *s = tp_json_parse(r->str, r->len, err, sizeof(err));
        if (s == NULL || !cJSON_IsObject(s)) {
            cJSON_Delete(s);
            continue;
        }
        j->found = s;
        j->token = j->cand_tok[i] != NULL ? tp_strdup(j->cand_tok[i]) : NULL;
        j->rkey = tp_strdup(j->cand_rkey[i]);
        return 1;
    }
    return 0;
}

/* ---- writing (doAddOrUpdate) ------------------------------------------------------------ */

static void written(kjob_t *j);

/* Writes j->sess under key name <token> (or, for a hashed update, the
 * Redis key j->rkey), as Tyk's doAddOrUpdate and applyPoliciesAndSave do. */
static int write_session(kjob_t *j, const char *token, int dont_reset, int is_new)
{
    const tp_conf_t *conf = kjob_conf(j);
    const tp_snapshot_t *snap = j->req->snap;
    cJSON *sess = j->sess;
    int64_t now = tp_time_wall_us() / 1000000;
    char buf[32];
    if (!dont_reset) {
        snprintf(buf, sizeof(buf), "%lld", (long long)now);
        set_str(sess, "last_updated", buf);
    }
    const cJSON *ar = tp_json_get(sess, "access_rights");
    int master = ar == NULL || !cJSON_IsObject(ar) || ar->child == NULL;
    if (master && !conf->allow_master_keys) {
        tp_log_warn("REST keys: master keys are not allowed (allow_master_keys): key not added");
        return -1;
    }
    /* per API: trial period, quota reset (unless dont_set_quota_on_create) */
    int reset = 0;
    const char *api_org = NULL;
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_api_t *api = snap->apis[i];
        if (!master && cJSON_GetObjectItemCaseSensitive(ar, api->api_id) == NULL)
            continue;
        if (is_new)
            trial_period(j, sess, now);
        cJSON *def = cJSON_Parse(api->def_json);
        const cJSON *d = tp_json_get(def, "dont_set_quota_on_create");
        reset |= !(d != NULL && cJSON_IsTrue(d));
        cJSON_Delete(def);
        api_org = api->org_id ? api->org_id : "";
    }
    if (!master) {
        /* APIs this node does not serve are stored anyway, as Tyk does */
        const cJSON *a;
        cJSON_ArrayForEach(a, ar) if (api_by_id(snap, a->string) == NULL) reset = 1;
    }
    if (reset && !dont_reset)
        tp_json_set_number(sess, "quota_renews",
                           (double)(now + tp_session_int(sess, "quota_renewal_rate")));
    char err[256];
    if (apply_policies(j, sess, api_org, err, sizeof(err)) < 0)
        tp_log_info("REST keys: policies: %s", err); /* Tyk stores the key anyway */
    int64_t ttl = lifetime_of(j, sess, now);
    tp_session_full(sess);
    char *json = cJSON_PrintUnformatted(sess);

    char *h;
    if (token != NULL) {
        h = storage_hash(conf, token);
        free(j->rkey);
        tp_buf_t r = {0};
        tp_buf_printf(&r, "apikey-%s", h);
        j->rkey = (char *)tp_buf_cstr(&r);
    } else {
        h = tp_strdup(j->rkey + 7);
    }
    kjob_round_begin(j, written);
    if (ttl > 0) {
        snprintf(buf, sizeof(buf), "%lld", (long long)ttl);
        const char *set[5] = {"SET", j->rkey, json, "EX", buf};
        kjob_cmd(j, 5, set);
    } else {
        const char *set[3] = {"SET", j->rkey, json};
        kjob_cmd(j, 3, set);
    }
    if (reset && !dont_reset)
        reset_quota(j, sess, h);
    announce(j, h);
    free(h);
    free(json);
    kjob_round_end(j);
    return 0;
}

static void written(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    const tp_conf_t *conf = kjob_conf(j);
    char *h = tp_strdup(j->rkey + 7);
    tp_log_info("REST keys: key %s %s", h,
                j->op == K_UPDATE || j->op == K_POLICY ? "updated" : "added");
    switch (j->op) {
    case K_UPDATE:
        kjob_action(j, j->key, "modified", NULL);
        break;
    case K_POLICY:
        kjob_action(j, j->key, "updated", NULL);
        break;
    default:
        /* a POST also tells the hash when keys are hashed */
        kjob_action(j, j->key, "added", conf->hash_keys ? h : NULL);
    }
    free(h);
}

/* ---- basic-auth passwords (setBasicAuthSessionPassword, TYK-COMPAT 18.1) ------------ */

static void password_hashed(void *arg, int ok, const char *out)
{
    kjob_t *j = arg;
    j->crypt = NULL;
    cJSON *ba = cJSON_GetObjectItemCaseSensitive(j->sess, "basic_auth_data");
    if (ok) {
        set_str(ba, "password", out);
        set_str(ba, "hash_type", "bcrypt");
    } else { /* as Tyk: a bcrypt failure stores the password as given */
        tp_log_warn("/tyk/keys: bcrypt of a basic-auth password failed; stored unhashed");
        set_str(ba, "hash_type", "");
    }
    j->after_crypt(j);
}

/* The session's new basic_auth_data.password hashed with
 * basic_auth_hash_key_function (bcrypt unless sha256 or murmur*), then
 * <then>: at once, or after the bcrypt ran on the thread pool. */
static void hash_password(kjob_t *j, kstep_cb then)
{
    cJSON *ba = cJSON_GetObjectItemCaseSensitive(j->sess, "basic_auth_data");
    const char *pw = str_member(ba, "password");
    if (pw[0] == '\0') {
        then(j);
        return;
    }
    const char *alg = kjob_conf(j)->basic_auth_hash_key_function;
    if (alg != NULL && (strcmp(alg, "sha256") == 0 || strcmp(alg, "murmur32") == 0 ||
                        strcmp(alg, "murmur64") == 0 || strcmp(alg, "murmur128") == 0)) {
        char hex[TP_KEYHASH_HEX_MAX];
        tp_keyhash_hex(alg, pw, strlen(pw), hex);
        set_str(ba, "password", hex);
        set_str(ba, "hash_type", alg);
        then(j);
        return;
    }
    j->after_crypt = then;
    j->crypt = tp_crypt_hash(&j->req->conn->w->loop, pw, password_hashed, j);
    if (j->crypt == NULL)
        kjob_error(j, 500, "Failed to create key, ensure security settings are correct.");
}

static void create_key(kjob_t *j);

/* ---- operations ----------------------------------------------------------------------- */

static void create_key(kjob_t *j)
{
    const tp_conf_t *conf = kjob_conf(j);
    cJSON *sess = j->sess;
    int generated = j->op == K_GENERATE;
    char err[256];
    int prc = apply_policies(j, sess, NULL, err, sizeof(err));
    if (generated && prc < 0) {
        char msg[320];
        snprintf(msg, sizeof(msg), "Failed to create key - %s", err);
        kjob_error(j, 500, msg);
        return;
    }
    if (!generated && j->key != NULL && (int64_t)strlen(j->key) < conf->min_token_length) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "custom key ID length %zu is less than min_token_length (%lld); the key would be "
                 "unreachable at auth time. Use an ID of at least min_token_length characters, or "
                 "lower min_token_length in the gateway configuration.",
                 strlen(j->key), (long long)conf->min_token_length);
        kjob_error(j, 400, msg);
        return;
    }
    const cJSON *ar = tp_json_get(sess, "access_rights");
    if (generated && (ar == NULL || !cJSON_IsObject(ar) || ar->child == NULL) &&
        !conf->allow_master_keys) {
        kjob_error(j, 400,
                   "Failed to create key, keys must have at least one Access Rights record set.");
        return;
    }
    char now_s[40];
    tp_session_time_now(now_s);
    set_str(sess, "date_created", now_s);
    int64_t now = tp_time_wall_us() / 1000000;
    int64_t exp = tp_session_int(sess, "expires");
    if (exp > 1 && exp < now)
        tp_json_set_number(sess, "expires", 0); /* a past expiry on create means never */
    if (generated) {
        const cJSON *hm = tp_json_get(sess, "hmac_enabled");
        if (hm != NULL && cJSON_IsTrue(hm)) {
            char *id = generate("", "", NULL); /* a dash-less UUID */
            unsigned char b64[64];
            size_t olen = 0;
            mbedtls_base64_encode(b64, sizeof(b64), &olen, (const unsigned char *)id, strlen(id));
            b64[olen] = '\0';
            set_str(sess, "hmac_string", (const char *)b64);
            free(id);
        }
    }
    char *token =
        generate(str_member(sess, "org_id"), j->key ? j->key : "", conf->hash_key_function);
    if (token == NULL) {
        kjob_error(j, 500, "Failed to create key, ensure security settings are correct.");
        return;
    }
    free(j->key);
    j->key = token;
    if (write_session(j, token, 0, 1) < 0)
        kjob_error(j, generated ? 400 : 500,
                   generated ? "Failed to create key, keys must have at least one Access Rights "
                               "record set."
                             : "Failed to create key, ensure security settings are correct.");
}

static void update_write(kjob_t *j);

static void update_found(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    if (!found(j)) {
        kjob_error(j, 404, "Key is not found");
        return;
    }
    /* basic auth: a PUT without a password keeps the stored one, a changed
     * one is hashed */
    const cJSON *oba = tp_json_get(j->found, "basic_auth_data");
    cJSON *nba = cJSON_GetObjectItemCaseSensitive(j->sess, "basic_auth_data");
    const char *npw = str_member(nba, "password");
    if (oba != NULL && npw[0] == '\0') {
        cJSON_DeleteItemFromObject(j->sess, "basic_auth_data");
        cJSON_AddItemToObject(j->sess, "basic_auth_data", cJSON_Duplicate(oba, 1));
    } else if (npw[0] != '\0' && strcmp(npw, str_member(oba, "password")) != 0) {
        hash_password(j, update_write);
        return;
    }
    update_write(j);
}

static void update_write(kjob_t *j)
{
    cJSON *sess = j->sess, *orig = j->found;
    /* preserve the creation date; with suppress_reset, the quota window
     * and last_updated too */
    const cJSON *dc = tp_json_get(orig, "date_created");
    set_str(sess, "date_created",
            dc != NULL && cJSON_IsString(dc) ? dc->valuestring : "0001-01-01T00:00:00Z");
    if (j->suppress_reset) {
        tp_json_set_number(sess, "quota_renews", (double)tp_session_int(orig, "quota_renews"));
        set_str(sess, "last_updated", str_member(orig, "last_updated"));
    }
    int64_t now = tp_time_wall_us() / 1000000;
    int64_t exp = tp_session_int(sess, "expires");
    if (exp > 1 && exp < now)
        tp_json_set_number(sess, "expires", (double)tp_session_int(orig, "expires"));
    free(j->key);
    j->key = tp_strdup(j->token != NULL ? j->token : j->rkey + 7);
    if (write_session(j, j->token, j->suppress_reset, 0) < 0)
        kjob_error(j, 500, "Failed to create key, ensure security settings are correct.");
}

static void get_quota(kjob_t *j);

static void get_found(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    if (!found(j)) {
        kjob_error(j, 404, "Key not found");
        return;
    }
    const tp_api_t *api = j->api_id != NULL ? api_by_id(j->req->snap, j->api_id) : NULL;
    char err[256];
    apply_policies(j, j->found, api != NULL ? (api->org_id ? api->org_id : "") : NULL, err,
                   sizeof(err));
    /* quota_remaining from the counters */
    kjob_round_begin(j, get_quota);
    const char *h = j->rkey + 7;
    tp_buf_t k = {0};
    tp_buf_printf(&k, "quota-%s", h);
    const char *get[2] = {"GET", tp_buf_cstr(&k)};
    kjob_cmd(j, 2, get);
    const cJSON *ar = tp_json_get(j->found, "access_rights"), *a;
    cJSON_ArrayForEach(a, ar)
    {
        const char *scope = str_member(a, "allowance_scope");
        k.len = 0;
        tp_buf_printf(&k, "quota-%s%s%s", scope, scope[0] ? "-" : "", h);
        get[1] = tp_buf_cstr(&k);
        if (j->n < MAX_CMDS)
            kjob_cmd(j, 2, get);
    }
    tp_buf_free(&k);
    kjob_round_end(j);
}

static int64_t reply_int(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
}

static void get_quota(kjob_t *j)
{
    cJSON *s = j->found;
    int64_t qmax = tp_session_int(s, "quota_max");
    if (qmax != -1 && j->n > 0) {
        int64_t rem = qmax - reply_int(j->replies[0]);
        tp_json_set_number(s, "quota_remaining", (double)(rem < 0 ? 0 : rem));
    }
    cJSON *ar = cJSON_GetObjectItemCaseSensitive(s, "access_rights"), *a;
    int i = 1;
    cJSON_ArrayForEach(a, ar)
    {
        cJSON *lim = cJSON_GetObjectItemCaseSensitive(a, "limit");
        int64_t lmax = tp_session_int(lim, "quota_max");
        int idx = i++;
        if (lim == NULL || lmax == -1 || lmax == 0 || idx >= j->n)
            continue;
        int64_t rem = lmax - reply_int(j->replies[idx]);
        tp_json_set_number(lim, "quota_remaining", (double)(rem < 0 ? 0 : rem));
    }
    /* a basic-auth password is never shown */
    cJSON *ba = cJSON_GetObjectItemCaseSensitive(s, "basic_auth_data");
    if (ba != NULL && str_member(ba, "password")[0] != '\0')
        set_str(ba, "password", "");
    tp_session_full(s);
    char *json = cJSON_PrintUnformatted(s);
    kjob_json(j, 200, json);
    free(json);
}

static void deleted(kjob_t *j);

static void delete_found(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    if (!found(j)) {
        kjob_error(j, 404, "There is no such key found");
        return;
    }
    const tp_conf_t *conf = kjob_conf(j);
    const char *h = j->rkey + 7;
    kjob_round_begin(j, deleted);
    reset_quota(j, j->found, h);
    j->del_from = j->n;
    const char *del[2] = {"DEL", j->rkey};
    kjob_cmd(j, 2, del);
    if (!j->hashed && j->token != NULL) {
        /* RemoveSession tries the literal and the generated name */
        char *gen = generate(j->org, j->token, conf->hash_key_function);
        if (gen != NULL) {
            char *gh = storage_hash(conf, gen);
            tp_buf_t r = {0};
            tp_buf_printf(&r, "apikey-%s", gh);
            if (strcmp(tp_buf_cstr(&r), j->rkey) != 0) {
                del[1] = tp_buf_cstr(&r);
                kjob_cmd(j, 2, del);
            }
            tp_buf_free(&r);
            free(gh);
            free(gen);
        }
    }
    j->del_to = j->n;
    announce(j, h);
    kjob_round_end(j);
}

static void deleted(kjob_t *j)
{
    /* a DEL that fails is a key not removed (400), as in Tyk's
     * RemoveSession; failed quota resets are ignored there too */
    if (j->errors > 0)
        tp_log_error("REST keys: Redis: %s", j->err);
    int removed = 0;
    for (int i = j->del_from; i < j->del_to; i++)
        if (j->replies[i] != NULL && j->replies[i]->type == REDIS_REPLY_INTEGER &&
            j->replies[i]->integer > 0)
            removed = 1;
    tp_log_info("REST keys: key %s %s", j->rkey + 7, removed ? "deleted" : "not removed");
    if (!removed) {
        kjob_error(j, 400, "Failed to remove the key");
        return;
    }
    if (j->api_id != NULL && strcmp(j->api_id, "-1") == 0) {
        kjob_json(j, 200, "null");
        return;
    }
    char *key = tp_strdup(j->token != NULL ? j->token : j->rkey + 7);
    kjob_action(j, key, "deleted", NULL);
    free(key);
}

static void policy_found(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    if (!found(j)) {
        kjob_error(j, 404, "Key not found");
        return;
    }
    /* the new policy list replaces the old one; the rest is kept */
    cJSON *pols = cJSON_DetachItemFromObject(j->sess, "apply_policies");
    cJSON_Delete(j->sess);
    j->sess = j->found;
    j->found = NULL;
    cJSON_DeleteItemFromObject(j->sess, "apply_policies");
    cJSON_AddItemToObject(j->sess, "apply_policies", pols != NULL ? pols : cJSON_CreateArray());
    set_str(j->sess, "apply_policy_id", "");
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)(tp_time_wall_us() / 1000000));
    set_str(j->sess, "last_updated", now); /* handleUpdateHashedKey */
    if (write_session(j, NULL, 1, 0) < 0)
        kjob_error(j, 500, "Could not write key data");
}

/* ---- dispatch --------------------------------------------------------------------------- */

static char *query_dup(tp_str_t q, const char *name)
{
    tp_buf_t v = {0};
    if (tp_query_get(q, name, &v) < 0)
        return NULL;
    return (char *)tp_buf_cstr(&v);
}

static int seg_eq(tp_str_t s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

void tp_rest_keys(tp_req_t *req, tp_str_t rest, tp_str_t query)
{
    tp_worker_t *w = req->conn->w;
    const tp_conf_t *conf = w->conf;
    int m = req->method;
    if (w->redis == NULL) {
        tp_rest__error(req, 500, "Storage error, please try again");
        return;
    }
    kjob_t *j = tp_calloc(1, sizeof(*j));
    j->req = req;
    char *hashed = query_dup(query, "hashed");
    j->hashed = hashed != NULL && hashed[0] != '\0';
    free(hashed);
    char *sr = query_dup(query, "suppress_reset");
    j->suppress_reset = sr != NULL && strcmp(sr, "1") == 0;
    free(sr);
    j->org = query_dup(query, "org_id");
    if (j->org == NULL)
        j->org = tp_strdup("");
    j->api_id = query_dup(query, "api_id");
    j->filter = query_dup(query, "filter");
    req->rest_job = j;

    const char *slash = memchr(rest.p, '/', rest.n);
    tp_str_t first = {rest.p, slash ? (size_t)(slash - rest.p) : rest.n};
    tp_str_t tail = slash ? (tp_str_t){slash + 1, rest.n - first.n - 1} : (tp_str_t){"", 0};

    if (rest.n == 0) {
        if (m == HTTP_GET) {
            j->op = K_LIST;
            if (conf->hash_keys && !conf->enable_hashed_keys_listing) {
                kjob_error(j, 404,
                           "Hashed key listing is disabled in config (enable_hashed_keys_listing)");
                return;
            }
            const char *filter = conf->hash_keys || j->filter == NULL ? "" : j->filter;
            if (!conf->hash_keys && j->api_id != NULL && j->api_id[0] != '\0' &&
                filter[0] == '\0') {
                kjob_error(j, 400,
                           "The 'filter' parameter (Org ID) is required when filtering by "
                           "'api_id' in legacy mode");
                return;
            }
            tp_buf_printf(&j->scan_pattern[0], "apikey-%s*", filter);
            if (filter[0] != '\0') {
                /* base64-JSON keys of that org: {"org":"<filter>" encoded, minus
                 * the two characters that depend on what follows */
                tp_buf_t raw = {0};
                tp_buf_printf(&raw, "{\"org\":\"%s\"", filter);
                unsigned char b64[1024];
                size_t olen = 0;
                if (raw.len < 700 &&
                    mbedtls_base64_encode(b64, sizeof(b64), &olen, (const unsigned char *)raw.data,
                                          raw.len) == 0) {
                    while (olen > 0 && b64[olen - 1] == '=')
                        olen--;
                    if (olen > 2)
                        tp_buf_printf(&j->scan_pattern[1], "apikey-%.*s*", (int)(olen - 2), b64);
                }
                tp_buf_free(&raw);
            }
            j->cursor = tp_strdup("0");
            kjob_list(j);
        } else if (m == HTTP_POST) {
            tp_rest__want_body(req, K_CREATE, rest);
        } else {
            kjob_error(j, 405, "Method not supported");
        }
        return;
    }
    if (seg_eq(first, "create") && tail.n == 0) {
        if (m != HTTP_POST) {
            kjob_error(j, 405, "Method not supported");
            return;
        }
        tp_rest__want_body(req, K_GENERATE, (tp_str_t){"", 0});
        return;
    }
    if (seg_eq(first, "preview") && tail.n == 0) {
        if (m != HTTP_POST) {
            kjob_error(j, 405, "Method not supported");
            return;
        }
        tp_rest__want_body(req, K_PREVIEW, (tp_str_t){"", 0});
        return;
    }
    if (seg_eq(first, "policy") && tail.n > 0 && memchr(tail.p, '/', tail.n) == NULL) {
        if (m != HTTP_POST) {
            kjob_error(j, 405, "Method not supported");
            return;
        }
        tp_rest__want_body(req, K_POLICY, tail);
        return;
    }
    if (slash != NULL) {
        tp_rest_keys_release(req);
        tp_rest__not_found(req);
        return;
    }
    j->key = tp_strndup(rest.p, rest.n);
    if (m == HTTP_GET) {
        j->op = K_GET;
        if (j->hashed && !conf->hash_keys) {
            kjob_error(j, 400, "Key requested by hash but key hashing is not enabled");
            return;
        }
        const tp_api_t *api = j->api_id != NULL ? api_by_id(req->snap, j->api_id) : NULL;
        if (api != NULL) {
            free(j->org);
            j->org = tp_strdup(api->org_id ? api->org_id : "");
        }
        find(j, j->org, j->key, j->hashed, get_found);
    } else if (m == HTTP_DELETE) {
        j->op = K_DELETE;
        find(j, j->org, j->key, j->hashed, delete_found);
    } else if (m == HTTP_POST) {
        tp_rest__want_body(req, K_CREATE, rest);
    } else if (m == HTTP_PUT) {
        tp_rest__want_body(req, K_UPDATE, rest);
    } else {
        kjob_error(j, 405, "Method not supported");
    }
}

void tp_rest_keys_body(tp_req_t *req)
{
    kjob_t *j = req->rest_job;
    if (j == NULL) {
        tp_rest__not_found(req);
        return;
    }
    j->op = req->rest_op;
    char err[256];
    cJSON *body =
        tp_json_parse(req->rbody.data ? req->rbody.data : "", req->rbody.len, err, sizeof(err));
    if (body == NULL || !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        if (j->op == K_GENERATE)
            kjob_error(j, 500, "Unmarshalling failed");
        else if (j->op == K_POLICY)
            kjob_error(j, 400, "Couldn't decode instruction");
        else
            kjob_error(j, 400, "Request malformed");
        return;
    }
    switch (j->op) {
    case K_CREATE:
    case K_GENERATE:
        j->sess = body;
        if (j->op == K_CREATE && req->rest_id[0] != '\0')
            j->key = tp_strdup(req->rest_id);
        hash_password(j, create_key);
        break;
    case K_UPDATE: {
        j->sess = body;
        char err2[256];
        apply_policies(j, body, NULL, err2, sizeof(err2));
        find(j, str_member(body, "org_id"), j->key, j->hashed, update_found);
        break;
    }
    case K_PREVIEW: {
        char err2[256];
        apply_policies(j, body, NULL, err2, sizeof(err2));
        tp_session_full(body);
        char *json = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        kjob_json(j, 200, json);
        free(json);
        break;
    }
    case K_POLICY: {
        /* {"policy": "id", "apply_policies": [...]}: the key is a hash */
        cJSON *list = cJSON_CreateArray();
        const cJSON *ap = tp_json_get(body, "apply_policies"), *p;
        cJSON_ArrayForEach(p, ap) if (cJSON_IsString(p))
            cJSON_AddItemToArray(list, cJSON_CreateString(p->valuestring));
        const char *one = str_member(body, "policy");
        if (one[0] != '\0')
            cJSON_AddItemToArray(list, cJSON_CreateString(one));
        cJSON_Delete(body);
        j->sess = cJSON_CreateObject();
        cJSON_AddItemToObject(j->sess, "apply_policies", list);
        j->key = tp_strdup(req->rest_id);
        j->hashed = 1;
        find(j, "", j->key, 1, policy_found);
        break;
    }
    default:
        cJSON_Delete(body);
        kjob_error(j, 404, "Not found");
    }
}
