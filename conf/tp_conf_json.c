/* conf/tp_conf_json.c: typed access to JSON members, with Go-like errors. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_conf.h"
#include "tp_err.h"
#include "tp_json.h"

static int type_error(const char *path, const char *key, const char *want, const cJSON *got,
                      char *err, size_t errlen)
{
    char full[512];
    snprintf(full, sizeof(full), "%s", path);
    tp_json_path_push(full, sizeof(full), key, 0);
    snprintf(err, errlen, "%s: expected %s, got %s", full, want, tp_json_type_name(got));
    return -1;
}

int tp_conf__get_str(const cJSON *obj, const char *key, const char *path, char **out, char *err,
                     size_t errlen)
{
    const cJSON *it = tp_json_get(obj, key);
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it))
        return type_error(path, key, "string", it, err, errlen);
    free(*out);
    *out = tp_strdup(it->valuestring);
    return 1;
}

int tp_conf__get_bool(const cJSON *obj, const char *key, const char *path, int *out, char *err,
                      size_t errlen)
{
    const cJSON *it = tp_json_get(obj, key);
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsBool(it))
        return type_error(path, key, "bool (true or false)", it, err, errlen);
    *out = cJSON_IsTrue(it);
    return 1;
}

int tp_conf__get_int(const cJSON *obj, const char *key, const char *path, int64_t *out, char *err,
                     size_t errlen)
{
    const cJSON *it = tp_json_get(obj, key);
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsNumber(it) || (it->type & TP_JSON_FRACTION) ||
        fabs(it->valuedouble) > 9.007199254740992e15)
        return type_error(path, key, "integer", it, err, errlen);
    *out = (int64_t)it->valuedouble;
    return 1;
}

void tp_strlist_free(tp_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int tp_conf__get_strlist(const cJSON *obj, const char *key, const char *path, tp_strlist_t *out,
                         char *err, size_t errlen)
{
    const cJSON *it = tp_json_get(obj, key);
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsArray(it))
        return type_error(path, key, "array of strings", it, err, errlen);
    int n = cJSON_GetArraySize(it), i = 0;
    const cJSON *el;
    cJSON_ArrayForEach(el, it)
    {
        if (!cJSON_IsString(el)) {
            char full[512];
            snprintf(full, sizeof(full), "%s", path);
            tp_json_path_push(full, sizeof(full), key, 0);
            tp_json_path_push(full, sizeof(full), NULL, i);
            snprintf(err, errlen, "%s: expected string, got %s", full, tp_json_type_name(el));
            return -1;
        }
        i++;
    }
    tp_strlist_free(out);
    out->v = tp_calloc((size_t)n + 1, sizeof(char *));
    cJSON_ArrayForEach(el, it) out->v[out->n++] = tp_strdup(el->valuestring);
    return 1;
}

const cJSON *tp_conf__get_obj(const cJSON *obj, const char *key, const char *path, char *err,
                              size_t errlen, int *rc)
{
    const cJSON *it = tp_json_get(obj, key);
    *rc = 0;
    if (it == NULL || cJSON_IsNull(it))
        return NULL;
    if (!cJSON_IsObject(it)) {
        *rc = type_error(path, key, "object", it, err, errlen);
        return NULL;
    }
    *rc = 1;
    return it;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **tp_conf__json_files(const char *dir, int (*skip)(const char *dir, const char *name),
                           size_t *count)
{
    DIR *d = opendir(dir);
    *count = 0;
    if (d == NULL)
        return NULL;
    char **names = tp_malloc(sizeof(*names));
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json") != 0 ||
            (skip != NULL && skip(dir, de->d_name)))
            continue;
        names = tp_realloc(names, (n + 1) * sizeof(*names));
        names[n++] = tp_strdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    *count = n;
    return names;
}
