/*
 * conf/tp_conf_policy.c: security policies from files, as Tyk loads them
 * with policy_source "file": policies.policy_path (a directory, one policy
 * per *.json, "id" required) wins over policies.policy_record_name (one
 * JSON object mapping id -> policy; the map key is the id when not empty).
 *
 * Here a policy is validated for shape and kept as its JSON text; what a
 * policy does to a session belongs to the key layer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp_conf.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"

void tp_policies_free(tp_policies_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].id);
        free(p->v[i].json);
        free(p->v[i].file);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

int tp_policy_id_ok(const char *id)
{
    /* Tyk: [A-Za-z0-9._~-], the characters safe in a file name and a URL */
    if (id == NULL || id[0] == '\0')
        return 0;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '~' || *c == '-'))
            return 0;
    return strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

/* Checks the fields the gateway will read, with Go's types. */
int tp_policy_check(const cJSON *pol, const char *path, char *err, size_t errlen)
{
    static const char *const numbers[] = {"rate",
                                          "per",
                                          "quota_max",
                                          "quota_renewal_rate",
                                          "throttle_interval",
                                          "throttle_retry_limit",
                                          "max_query_depth",
                                          "key_expires_in",
                                          NULL};
    static const char *const bools[] = {"active", "is_inactive", "hmac_enabled", NULL};
    char sub[512];
    if (!cJSON_IsObject(pol)) {
        snprintf(err, errlen, "%s: expected a policy object, got %s", path, tp_json_type_name(pol));
        return -1;
    }
    for (int i = 0; numbers[i] != NULL; i++) {
        const cJSON *v = tp_json_get(pol, numbers[i]);
        if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsNumber(v)) {
            snprintf(err, errlen, "%s.%s: expected number, got %s", path, numbers[i],
                     tp_json_type_name(v));
            return -1;
        }
    }
    for (int i = 0; bools[i] != NULL; i++) {
        const cJSON *v = tp_json_get(pol, bools[i]);
        if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsBool(v)) {
            snprintf(err, errlen, "%s.%s: expected bool (true or false), got %s", path, bools[i],
                     tp_json_type_name(v));
            return -1;
        }
    }
    const cJSON *ar = tp_json_get(pol, "access_rights");
    if (ar != NULL && !cJSON_IsNull(ar)) {
        if (!cJSON_IsObject(ar)) {
            snprintf(err, errlen, "%s.access_rights: expected object, got %s", path,
                     tp_json_type_name(ar));
            return -1;
        }
        const cJSON *api;
        cJSON_ArrayForEach(api, ar)
        {
            snprintf(sub, sizeof(sub), "%s.access_rights", path);
            tp_json_path_push(sub, sizeof(sub), api->string, 0);
            if (!cJSON_IsObject(api)) {
                snprintf(err, errlen, "%s: expected object, got %s", sub, tp_json_type_name(api));
                return -1;
            }
            const cJSON *vers = tp_json_get(api, "versions");
            if (vers != NULL && !cJSON_IsNull(vers) && !cJSON_IsArray(vers)) {
                snprintf(err, errlen, "%s.versions: expected array of strings, got %s", sub,
                         tp_json_type_name(vers));
                return -1;
            }
        }
    }
    const cJSON *tags = tp_json_get(pol, "tags");
    if (tags != NULL && !cJSON_IsNull(tags) && !cJSON_IsArray(tags)) {
        snprintf(err, errlen, "%s.tags: expected array of strings, got %s", path,
                 tp_json_type_name(tags));
        return -1;
    }
    return 0;
}

static int add(tp_policies_t *p, const char *id, const cJSON *pol, const char *file,
               const char *path, char *err, size_t errlen)
{
    if (tp_policy_check(pol, path, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].id, id) == 0) {
            snprintf(err, errlen, "%s: policy id \"%s\" is also defined in %s", path, id,
                     p->v[i].file);
            return -1;
        }
    /* the stored text carries its id, as Tyk's GET /tyk/policies shows it */
    cJSON *copy = cJSON_Duplicate(pol, 1);
    cJSON_DeleteItemFromObject(copy, "id");
    cJSON_AddStringToObject(copy, "id", id);
    p->v = tp_realloc(p->v, (p->n + 1) * sizeof(*p->v));
    p->v[p->n].id = tp_strdup(id);
    p->v[p->n].json = cJSON_PrintUnformatted(copy);
    p->v[p->n].file = tp_strdup(file);
    p->n++;
    cJSON_Delete(copy);
    return 0;
}

static int load_record(tp_policies_t *p, const char *file, char *err, size_t errlen)
{
    char why[1024];
    if (access(file, F_OK) != 0 && errno == ENOENT) {
        /* Tyk images ship this file; a deployment that mounts none has no
         * policies, which is not a reason to refuse to serve */
        tp_log_warn("policies.policy_record_name: %s does not exist: no policies are loaded", file);
        return 0;
    }
    cJSON *root = tp_json_parse_file(file, why, sizeof(why));
    if (root == NULL) {
        snprintf(err, errlen, "policies.policy_record_name: %s", why);
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: $: expected an object mapping policy ids to policies, got %s",
                 file, tp_json_type_name(root));
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *pol;
    int rc = 0;
    cJSON_ArrayForEach(pol, root)
    {
        char path[512] = "$";
        tp_json_path_push(path, sizeof(path), pol->string, 0);
        const cJSON *inner = cJSON_IsObject(pol) ? tp_json_get(pol, "id") : NULL;
        const char *id = pol->string[0] != '\0'                   ? pol->string
                         : inner != NULL && cJSON_IsString(inner) ? inner->valuestring
                                                                  : "";
        char pathf[600];
        snprintf(pathf, sizeof(pathf), "%s: %s", file, path);
        if (!tp_policy_id_ok(id)) {
            snprintf(err, errlen,
                     "%s: invalid policy id \"%s\" (allowed: a-z, A-Z, 0-9, ., _, -, ~)", pathf,
                     id);
            rc = -1;
            break;
        }
        if (add(p, id, pol, file, pathf, err, errlen) < 0) {
            rc = -1;
            break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

static int load_dir(tp_policies_t *p, const char *dir, char *err, size_t errlen)
{
    size_t n;
    char **names = tp_conf__json_files(dir, NULL, &n);
    if (names == NULL) {
        snprintf(err, errlen, "policies.policy_path \"%s\": cannot open directory: %s", dir,
                 strerror(errno));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char file[4096], why[1024], pathf[4200];
        snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
        if (rc == 0) {
            cJSON *pol = tp_json_parse_file(file, why, sizeof(why));
            const cJSON *id = pol != NULL && cJSON_IsObject(pol) ? tp_json_get(pol, "id") : NULL;
            snprintf(pathf, sizeof(pathf), "%s: $", file);
            if (pol == NULL) {
                snprintf(err, errlen, "%s", why);
                rc = -1;
            } else if (id == NULL || !cJSON_IsString(id) || !tp_policy_id_ok(id->valuestring)) {
                snprintf(err, errlen,
                         "%s.id: required, allowed characters: a-z, A-Z, 0-9, ., _, -, ~", pathf);
                rc = -1;
            } else {
                rc = add(p, id->valuestring, pol, file, pathf, err, errlen);
            }
            cJSON_Delete(pol);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int tp_policies_load(const tp_conf_t *conf, tp_policies_t *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    const char *src = conf->policy_source;
    if (src != NULL && src[0] != '\0' && strcmp(src, "file") != 0) {
        tp_log_warn("policies.policy_source \"%s\" is not supported (Dashboard and MDCB): no "
                    "policies are loaded",
                    src);
        return 0;
    }
    int rc = 0;
    if (conf->policy_path != NULL && conf->policy_path[0] != '\0')
        rc = load_dir(p, conf->policy_path, err, errlen);
    else if (conf->policy_record_name != NULL && conf->policy_record_name[0] != '\0')
        rc = load_record(p, conf->policy_record_name, err, errlen);
    if (rc < 0)
        tp_policies_free(p);
    return rc;
}
