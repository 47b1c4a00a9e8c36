/*
 * conf/tp_conf_js.c: what an API's JavaScript middleware needs, read by
 * the master at load (TYK-COMPAT 23): the scripts, in Tyk's order (the
 * user's tyk_js_path, the custom_middleware files, the files under
 * <middleware_path>/<api_id>/{pre,auth,post_auth,post}/, the virtual
 * endpoints' files and blobs), each compiled once here so a syntax error
 * refuses the API with its file and line; and the hooks: which global
 * object each of pre, post_key_auth and post calls, and whether it gets
 * the session. The result is one JSON text in api->js_json that the
 * workers run (worker/tp_jsmw.c) without reading a file.
 */
#include <dirent.h>
#include <errno.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_buf.h"
#include "tp_conf.h"
#include "tp_err.h"
#include "tp_js.h"
#include "tp_json.h"
#include "tp_log.h"

static const char *const hook_names[] = {"pre", "post_key_auth", "post"};
/* the directories under <middleware_path>/<api_id>/, as hook_names */
static const char *const hook_dirs[] = {"pre", "post_auth", "post"};

typedef struct load_s {
    cJSON *files; /* [{"file", "src"}] */
    cJSON *hooks[3];
    char *err;
    size_t errlen;
    int no_files; /* only the hooks: without enable_jsvm they answer 500 */
} load_t;

/* Adds a script after compiling it: -1 with <where> and the reason. */
static int add_src(load_t *L, const char *where, const char *file, const char *src, size_t len)
{
    char why[1024];
    if (tp_js_check(file, src, len, why, sizeof(why)) < 0) {
        snprintf(L->err, L->errlen, "%s: %s", where, why);
        return -1;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "file", file);
    char *s = tp_malloc(len + 1);
    memcpy(s, src, len);
    s[len] = '\0';
    cJSON_AddStringToObject(f, "src", s);
    free(s);
    cJSON_AddItemToArray(L->files, f);
    return 0;
}

static int add_file(load_t *L, const char *where, const char *file)
{
    if (L->no_files)
        return 0;
    const char *dot = strrchr(file, '.');
    if (dot == NULL || strstr(dot, ".js") == NULL) {
        snprintf(L->err, L->errlen, "%s: \"%s\": Unsupported extension (a .js file is needed)",
                 where, file);
        return -1;
    }
    tp_buf_t b = {0};
    if (tp_buf_read_file(&b, file) < 0) {
        snprintf(L->err, L->errlen, "%s: \"%s\": %s", where, file, strerror(errno));
        tp_buf_free(&b);
        return -1;
    }
    int rc = add_src(L, where, file, b.data != NULL ? b.data : "", b.len);
    tp_buf_free(&b);
    return rc;
}

static void add_hook(load_t *L, int which, const char *name, int session)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "name", name);
    cJSON_AddBoolToObject(h, "session", session);
    cJSON_AddItemToArray(L->hooks[which], h);
}

/* custom_middleware.<pre|post_key_auth|post>: {name, path, disabled,
 * require_session}; only with driver "otto" (exact, as Tyk). */
static int load_custom(load_t *L, const cJSON *cm)
{
    for (int k = 0; k < 3; k++) {
        const cJSON *list = tp_json_get(cm, hook_names[k]), *e;
        int i = 0;
        cJSON_ArrayForEach(e, list)
        {
            char where[160];
            snprintf(where, sizeof(where), "$.custom_middleware.%s[%d]", hook_names[k], i++);
            if (cJSON_IsTrue(tp_json_get(e, "disabled")))
                continue;
            const char *name = cJSON_GetStringValue((cJSON *)tp_json_get(e, "name"));
            const char *path = cJSON_GetStringValue((cJSON *)tp_json_get(e, "path"));
            if (name == NULL || name[0] == '\0') {
                snprintf(L->err, L->errlen, "%s.name: the middleware's object name is needed",
                         where);
                return -1;
            }
            if (path != NULL && path[0] != '\0') {
                char w2[200];
                snprintf(w2, sizeof(w2), "%s.path", where);
                if (add_file(L, w2, path) < 0)
                    return -1;
            }
            add_hook(L, k, name, cJSON_IsTrue(tp_json_get(e, "require_session")));
        }
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .js files in <middleware_path>/<api_id>/<dir>: the name is the file's up to its
 * first '.'; "_with_session" at its end asks for the session. */
static int load_dir(load_t *L, const char *mwpath, const char *api_id, int which)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s/%s", mwpath, api_id, hook_dirs[which]);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 4 || strcmp(de->d_name + len - 3, ".js") != 0)
            continue;
        names = tp_realloc(names, (n + 1) * sizeof(*names));
        names[n++] = tp_strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char file[4200];
        snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
        if (rc == 0 && (rc = add_file(L, "middleware_path", file)) == 0) {
            char *name = names[i];
            name[strcspn(name, ".")] = '\0';
            size_t nl = strlen(name);
            add_hook(L, which, name, nl > 13 && strcmp(name + nl - 13, "_with_session") == 0);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* extended_paths.virtual of every version: their sources. */
static int load_virtual(load_t *L, const cJSON *def, const tp_conf_t *conf)
{
    const cJSON *versions = tp_json_get(tp_json_get(def, "version_data"), "versions"), *v;
    cJSON_ArrayForEach(v, versions)
    {
        const cJSON *list = tp_json_get(tp_json_get(v, "extended_paths"), "virtual"), *e;
        int i = 0;
        cJSON_ArrayForEach(e, list)
        {
            char where[300];
            snprintf(where, sizeof(where), "$.version_data.versions.%s.extended_paths.virtual[%d]",
                     v->string != NULL ? v->string : "", i++);
            if (cJSON_IsTrue(tp_json_get(e, "disabled")))
                continue;
            const char *type =
                cJSON_GetStringValue((cJSON *)tp_json_get(e, "function_source_type"));
            const char *uri = cJSON_GetStringValue((cJSON *)tp_json_get(e, "function_source_uri"));
            if (uri == NULL)
                uri = "";
            if (type != NULL && strcmp(type, "file") == 0) {
                char w2[340];
                snprintf(w2, sizeof(w2), "%s.function_source_uri", where);
                if (add_file(L, w2, uri) < 0)
                    return -1;
            } else if (type != NULL && strcmp(type, "blob") == 0) {
                if (conf->disable_virtual_path_blobs) {
                    tp_log_error("%s: [JSVM] Blobs not allowed on this node "
                                 "(disable_virtual_path_blobs)",
                                 where);
                    continue;
                }
                size_t n = strlen(uri), len = 0;
                unsigned char *js = tp_malloc(n / 4 * 3 + 4);
                if (mbedtls_base64_decode(js, n / 4 * 3 + 4, &len, (const unsigned char *)uri, n) !=
                    0) {
                    snprintf(L->err, L->errlen, "%s.function_source_uri: not base64", where);
                    free(js);
                    return -1;
                }
                char label[340];
                snprintf(label, sizeof(label), "virtual endpoint %s", where + 2);
                int rc = add_src(L, where, label, (const char *)js, len);
                free(js);
                if (rc < 0)
                    return -1;
            } else {
                snprintf(L->err, L->errlen,
                         "%s.function_source_type: Type must be either file or blob (base64)!",
                         where);
                return -1;
            }
        }
    }
    return 0;
}

static int has_virtual(const cJSON *def)
{
    const cJSON *versions = tp_json_get(tp_json_get(def, "version_data"), "versions"), *v;
    cJSON_ArrayForEach(v, versions)
    {
        if (cJSON_GetArraySize(tp_json_get(tp_json_get(v, "extended_paths"), "virtual")) > 0)
            return 1;
    }
    return 0;
}

int tp_api_js_load(tp_api_t *api, const cJSON *def, const tp_conf_t *conf, char *err, size_t errlen)
{
    const cJSON *cm = tp_json_get(def, "custom_middleware");
    const char *driver = cJSON_GetStringValue((cJSON *)tp_json_get(cm, "driver"));
    int otto = driver != NULL && strcmp(driver, "otto") == 0;
    int any_hook = 0;
    for (int k = 0; otto && k < 3; k++)
        any_hook |= cJSON_GetArraySize(tp_json_get(cm, hook_names[k])) > 0;
    if (!conf->enable_jsvm && !any_hook)
        return 0;
    if (!conf->enable_jsvm)
        tp_log_warn("API %s (%s): custom_middleware needs enable_jsvm in tyk.conf; its requests "
                    "answer 500 \"Middleware error\"",
                    api->api_id, api->file);
    load_t L = {
        .files = cJSON_CreateArray(), .err = err, .errlen = errlen, .no_files = !conf->enable_jsvm};
    for (int k = 0; k < 3; k++)
        L.hooks[k] = cJSON_CreateArray();
    int rc = 0;
    if (!conf->enable_jsvm) {
        rc = load_custom(&L, cm);
    } else if (otto || has_virtual(def) || conf->middleware_path != NULL) {
        if (conf->tyk_js_path != NULL && conf->tyk_js_path[0] != '\0') {
            tp_buf_t b = {0};
            char why[1024];
            if (tp_buf_read_file(&b, conf->tyk_js_path) < 0)
                ; /* Tyk loads it only when it can open it */
            else if (tp_js_check(conf->tyk_js_path, b.data != NULL ? b.data : "", b.len, why,
                                 sizeof(why)) < 0)
                tp_log_error("tyk_js_path: Could not load user's TykJS: %s", why);
            else
                rc = add_src(&L, "tyk_js_path", conf->tyk_js_path, b.data != NULL ? b.data : "",
                             b.len);
            tp_buf_free(&b);
        }
        if (rc == 0 && otto)
            rc = load_custom(&L, cm);
        for (int k = 0; rc == 0 && k < 3 && conf->middleware_path != NULL; k++)
            rc = load_dir(&L, conf->middleware_path, api->api_id, k);
        if (rc == 0)
            rc = load_virtual(&L, def, conf);
    }
    int used = conf->enable_jsvm && has_virtual(def);
    for (int k = 0; k < 3; k++)
        used |= cJSON_GetArraySize(L.hooks[k]) > 0;
    if (rc == 0 && used) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "vm", conf->enable_jsvm);
        cJSON_AddItemToObject(o, "files", L.files);
        for (int k = 0; k < 3; k++)
            cJSON_AddItemToObject(o, hook_names[k], L.hooks[k]);
        char *s = cJSON_PrintUnformatted(o);
        api->js_json = tp_strdup(s);
        cJSON_free(s);
        cJSON_Delete(o);
        return 0;
    }
    cJSON_Delete(L.files);
    for (int k = 0; k < 3; k++)
        cJSON_Delete(L.hooks[k]);
    return rc;
}
