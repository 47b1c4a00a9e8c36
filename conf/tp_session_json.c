/*
 * conf/tp_session_json.c: see tp_session_json.h. Field order and zero
 * values from Tyk v5.8.0 user/session.go (SessionState, AccessDefinition,
 * APILimit and the RateLimit it embeds).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tp_json.h"
#include "tp_session_json.h"

enum { F_NUM, F_STR, F_BOOL, F_NULL, F_OBJ, F_TIME };

typedef struct field_s {
    const char *name;
    int zero;
    const struct field_s *sub; /* F_OBJ: its fields (NULL: an empty object) */
} field_t;

static const field_t basic_auth[] = {{"password", F_STR, NULL}, {"hash_type", F_STR, NULL}, {0}};
static const field_t jwt[] = {{"secret", F_STR, NULL}, {0}};
static const field_t monitor[] = {{"trigger_limits", F_NULL, NULL}, {0}};

static const field_t session_fields[] = {
    {"last_check", F_NUM, NULL},
    {"allowance", F_NUM, NULL},
    {"rate", F_NUM, NULL},
    {"per", F_NUM, NULL},
    {"throttle_interval", F_NUM, NULL},
    {"throttle_retry_limit", F_NUM, NULL},
    {"max_query_depth", F_NUM, NULL},
    {"date_created", F_TIME, NULL},
    {"expires", F_NUM, NULL},
    {"quota_max", F_NUM, NULL},
    {"quota_renews", F_NUM, NULL},
    {"quota_remaining", F_NUM, NULL},
    {"quota_renewal_rate", F_NUM, NULL},
    {"access_rights", F_NULL, NULL},
    {"org_id", F_STR, NULL},
    {"oauth_client_id", F_STR, NULL},
    {"oauth_keys", F_NULL, NULL},
    {"certificate", F_STR, NULL},
    {"basic_auth_data", F_OBJ, basic_auth},
    {"jwt_data", F_OBJ, jwt},
    {"hmac_enabled", F_BOOL, NULL},
    {"enable_http_signature_validation", F_BOOL, NULL},
    {"hmac_string", F_STR, NULL},
    {"rsa_certificate_id", F_STR, NULL},
    {"is_inactive", F_BOOL, NULL},
    {"apply_policy_id", F_STR, NULL},
    {"apply_policies", F_NULL, NULL},
    {"data_expires", F_NUM, NULL},
    {"monitor", F_OBJ, monitor},
    {"enable_detail_recording", F_BOOL, NULL},
    {"enable_detailed_recording", F_BOOL, NULL},
    {"meta_data", F_NULL, NULL},
    {"tags", F_NULL, NULL},
    {"alias", F_STR, NULL},
    {"last_updated", F_STR, NULL},
    {"id_extractor_deadline", F_NUM, NULL},
    {"session_lifetime", F_NUM, NULL},
    {"smoothing", F_NULL, NULL},
    {0},
};

static const field_t limit_fields[] = {
    {"rate", F_NUM, NULL},
    {"per", F_NUM, NULL},
    {"throttle_interval", F_NUM, NULL},
    {"throttle_retry_limit", F_NUM, NULL},
    {"max_query_depth", F_NUM, NULL},
    {"quota_max", F_NUM, NULL},
    {"quota_renews", F_NUM, NULL},
    {"quota_remaining", F_NUM, NULL},
    {"quota_renewal_rate", F_NUM, NULL},
    {0},
};

static const field_t access_fields[] = {
    {"api_name", F_STR, NULL},
    {"api_id", F_STR, NULL},
    {"versions", F_NULL, NULL},
    {"allowed_urls", F_NULL, NULL},
    {"restricted_types", F_NULL, NULL},
    {"allowed_types", F_NULL, NULL},
    {"limit", F_OBJ, limit_fields},
    {"field_access_rights", F_NULL, NULL},
    {"disable_introspection", F_BOOL, NULL},
    {"allowance_scope", F_STR, NULL},
    {0},
};

static cJSON *zero_of(const field_t *f)
{
    switch (f->zero) {
    case F_NUM:
        return cJSON_CreateNumber(0);
    case F_STR:
        return cJSON_CreateString("");
    case F_BOOL:
        return cJSON_CreateFalse();
    case F_TIME:
        return cJSON_CreateString("0001-01-01T00:00:00Z");
    case F_OBJ:
        return cJSON_CreateObject();
    default:
        return cJSON_CreateNull();
    }
}

/* Takes member <name> out of <obj>: the exact name, else Go's
 * case-insensitive match. */
static cJSON *take(cJSON *obj, const char *name)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it == NULL)
        for (cJSON *c = obj->child; c != NULL && it == NULL; c = c->next)
            if (c->string != NULL && strcasecmp(c->string, name) == 0)
                it = c;
    return it != NULL ? cJSON_DetachItemViaPointer(obj, it) : NULL;
}

static void full_form(cJSON *obj, const field_t *fields);

static void normalize_access(cJSON *ar)
{
    if (!cJSON_IsObject(ar))
        return;
    cJSON *a;
    cJSON_ArrayForEach(a, ar)
    {
        if (cJSON_IsObject(a))
            full_form(a, access_fields);
    }
}

/* Rebuilds <obj> with <fields> first, in order, then whatever else it had. */
static void full_form(cJSON *obj, const field_t *fields)
{
    cJSON *rest = cJSON_CreateObject();
    /* move everything out, then back in the right order */
    while (obj->child != NULL) {
        cJSON *c = cJSON_DetachItemViaPointer(obj, obj->child);
        cJSON_AddItemToObject(rest, c->string, c);
    }
    for (const field_t *f = fields; f->name != NULL; f++) {
        cJSON *v = take(rest, f->name);
        if (v == NULL || (f->zero == F_OBJ && !cJSON_IsObject(v))) {
            cJSON_Delete(v);
            v = zero_of(f);
        }
        if (f->zero == F_OBJ && f->sub != NULL)
            full_form(v, f->sub);
        if (strcmp(f->name, "access_rights") == 0)
            normalize_access(v);
        cJSON_AddItemToObject(obj, f->name, v);
    }
    while (rest->child != NULL) {
        cJSON *c = cJSON_DetachItemViaPointer(rest, rest->child);
        cJSON_AddItemToObject(obj, c->string, c);
    }
    cJSON_Delete(rest);
}

void tp_session_full(cJSON *session)
{
    if (cJSON_IsObject(session))
        full_form(session, session_fields);
}

int64_t tp_session_int(const cJSON *obj, const char *key)
{
    const cJSON *v = obj != NULL ? tp_json_get(obj, key) : NULL;
    return v != NULL && cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* calculateLifetime in Tyk's user/session.go */
static int64_t respecting(int respect, int64_t expires, int64_t lifetime, int64_t now)
{
    if (!respect || lifetime <= 0)
        return lifetime;
    if (expires <= 0)
        return expires;
    if (expires > now + lifetime)
        return expires - now;
    return lifetime;
}

int64_t tp_session_lifetime(const cJSON *session, const tp_conf_t *conf, int64_t api_lifetime,
                            int api_respects_expiry, int64_t now)
{
    if (conf->force_global_session_lifetime)
        return conf->global_session_lifetime;
    int respect = conf->session_lifetime_respects_key_expiration || api_respects_expiry;
    int64_t own = tp_session_int(session, "session_lifetime");
    int64_t expires = tp_session_int(session, "expires");
    if (own > 0)
        return respecting(respect, expires, own, now);
    if (api_lifetime > 0)
        return respecting(respect, expires, api_lifetime, now);
    return 0;
}

void tp_session_time_now(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    /* Go trims trailing zeros of the fraction */
    char frac[16];
    snprintf(frac, sizeof(frac), ".%09ld", ts.tv_nsec);
    size_t n = strlen(frac);
    while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    snprintf(out, 40, "%s%sZ", base, n > 1 ? frac : "");
}
