/*
 * conf/tp_conf_js.c: what an API's JavaScript middleware needs, read by
 * the master at load (TYK-COMPAT 23): the scripts, in Tyk's order (the
 * user's tyk_js_path, the custom_middleware files, the files under
 * <middleware_path>/<api_id>/{pre,post_auth,post}/, the virtual endpoints'
 * files and blobs, or a plugin bundle's), each compiled once here so a
 * syntax error refuses the API with its file and line; and the hooks:
 * which global object each of pre, post_key_auth, post and response
 * calls, and whether it gets the session. The result is one JSON text in
 * api->js_json that the workers run (worker/tp_jsmw.c) without reading a
 * file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mbedtls/base64.h>
#include <mbedtls/md5.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tp_buf.h"
#include "tp_conf.h"
#include "tp_err.h"
#include "tp_httpget.h"
#include "tp_js.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_zip.h"

#define BUNDLE_MAX (16u * 1024 * 1024) /* a bundle's archive, and its files in all */
#define BUNDLE_TIMEOUT_MS 30000

#define NHOOKS 5
#define HOOK_AUTH 4
static const char *const hook_names[NHOOKS] = {"pre", "post_key_auth", "post", "response",
                                               "auth_check"};
/* the directories under <middleware_path>/<api_id>/, as hook_names (Tyk
 * loads no response hooks from one) */
static const char *const hook_dirs[NHOOKS] = {"pre", "post_auth", "post", NULL, "auth"};

typedef struct load_s {
    cJSON *files; /* [{"file", "src"}] */
    cJSON *hooks[NHOOKS];
    char *err;
    size_t errlen;
    int no_files;       /* only the hooks: without enable_jsvm they answer 500 */
    const char *prefix; /* the bundle's directory: its paths are relative to it */
    int auth;           /* custom_plugin_auth_enabled: auth_check is the API's auth */
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

/* One hook entry {name, path, disabled, require_session} at <where>. */
static int load_entry(load_t *L, int k, const cJSON *e, const char *where)
{
    if (cJSON_IsTrue(tp_json_get(e, "disabled")))
        return 0;
    const char *name = cJSON_GetStringValue((cJSON *)tp_json_get(e, "name"));
    const char *path = cJSON_GetStringValue((cJSON *)tp_json_get(e, "path"));
    if (name == NULL || name[0] == '\0') {
        snprintf(L->err, L->errlen, "%s.name: the middleware's object name is needed", where);
        return -1;
    }
    if (path != NULL && path[0] != '\0') {
        char w2[200], full[4200];
        snprintf(w2, sizeof(w2), "%s.path", where);
        if (L->prefix != NULL) {
            snprintf(full, sizeof(full), "%s/%s", L->prefix, path);
            path = full;
        }
        if (add_file(L, w2, path) < 0)
            return -1;
    }
    add_hook(L, k, name, cJSON_IsTrue(tp_json_get(e, "require_session")));
    return 0;
}

/* custom_middleware.<pre|post_key_auth|post|response>: lists of entries,
 * and auth_check: one, with custom_plugin_auth_enabled; only with driver
 * "otto" (exact, as Tyk). */
static int load_custom(load_t *L, const cJSON *cm)
{
    for (int k = 0; k < NHOOKS; k++) {
        const cJSON *list = tp_json_get(cm, hook_names[k]), *e;
        if (k == HOOK_AUTH) {
            if (L->auth && cJSON_IsObject(list) &&
                cJSON_GetStringValue(cJSON_GetObjectItem(list, "name")) != NULL &&
                load_entry(L, k, list, "$.custom_middleware.auth_check") < 0)
                return -1;
            continue;
        }
        int i = 0;
        cJSON_ArrayForEach(e, list)
        {
            char where[160];
            snprintf(where, sizeof(where), "$.custom_middleware.%s[%d]", hook_names[k], i++);
            if (load_entry(L, k, e, where) < 0)
                return -1;
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
    if (hook_dirs[which] == NULL || (which == HOOK_AUTH && !L->auth))
        return 0;
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

static int js_load(tp_api_t *api, const cJSON *def, const cJSON *bundle_cm, const char *prefix,
                   const tp_conf_t *conf, char *err, size_t errlen);

/* ---- plugin bundles (Tyk's coprocess_bundle.go) ------------------------------------- */

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[4200];
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rm_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int mkdirs(const char *path, char *err, size_t errlen)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "\"%.400s\": %s", p, strerror(errno));
            return -1;
        }
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "\"%.400s\": %s", p, strerror(errno));
        return -1;
    }
    return 0;
}

/* Bundle.Verify: the md5 of the file_list files, one after another, is the
 * manifest's checksum; with public_key_path, the signature (base64) is an
 * RSA PKCS#1 v1.5 SHA-256 signature of those bytes. */
static int bundle_verify(const cJSON *man, const char *dir, const tp_conf_t *conf, char *err,
                         size_t errlen)
{
    const char *sum = cJSON_GetStringValue(cJSON_GetObjectItem(man, "checksum"));
    const char *sig = cJSON_GetStringValue(cJSON_GetObjectItem(man, "signature"));
    int use_sig = conf->public_key_path != NULL && conf->public_key_path[0] != '\0';
    if (use_sig && (sig == NULL || sig[0] == '\0')) {
        snprintf(err, errlen, "Bundle isn't signed");
        return -1;
    }
    tp_buf_t data = {0};
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(man, "file_list"))
    {
        const char *name = cJSON_GetStringValue(f);
        if (name == NULL || strstr(name, "..") != NULL || name[0] == '/') {
            snprintf(err, errlen, "file_list: \"%s\": not a file of the bundle",
                     name != NULL ? name : "?");
            tp_buf_free(&data);
            return -1;
        }
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        tp_buf_t one = {0};
        if (tp_buf_read_file(&one, p) < 0) {
            snprintf(err, errlen, "file_list: \"%s\": %s", name, strerror(errno));
            tp_buf_free(&one);
            tp_buf_free(&data);
            return -1;
        }
        tp_buf_append(&data, one.data != NULL ? one.data : "", one.len);
        tp_buf_free(&one);
    }
    const unsigned char *bytes = (const unsigned char *)(data.data != NULL ? data.data : "");
    unsigned char md[16];
    char hex[33];
    mbedtls_md5_ret(bytes, data.len, md);
    tp_hex(hex, md, 16);
    int rc = 0;
    if (sum == NULL || strcmp(sum, hex) != 0) {
        snprintf(err, errlen, "Invalid checksum");
        rc = -1;
    } else if (use_sig) {
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        size_t n = strlen(sig), len = 0;
        unsigned char *raw = tp_malloc(n / 4 * 3 + 4), hash[32];
        int e = mbedtls_pk_parse_public_keyfile(&pk, conf->public_key_path);
        if (e != 0) {
            snprintf(err, errlen, "public_key_path \"%s\": not a public key (mbedTLS -0x%04x)",
                     conf->public_key_path, (unsigned)-e);
            rc = -1;
        } else if (mbedtls_base64_decode(raw, n / 4 * 3 + 4, &len, (const unsigned char *)sig, n) !=
                   0) {
            snprintf(err, errlen, "the signature is not base64");
            rc = -1;
        } else {
            mbedtls_sha256_ret(bytes, data.len, hash, 0);
            if (mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, sizeof(hash), raw, len) != 0) {
                snprintf(err, errlen, "crypto/rsa: verification error");
                rc = -1;
            }
        }
        free(raw);
        mbedtls_pk_free(&pk);
    }
    tp_buf_free(&data);
    return rc;
}

/* Writes the entries of the archive under <dir>. */
static int bundle_save(const tp_zip_entry_t *e, size_t n, const char *dir, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, e[i].name);
        if (e[i].dir) {
            if (mkdirs(p, err, errlen) < 0)
                return -1;
            continue;
        }
        char *slash = strrchr(p, '/');
        *slash = '\0';
        if (mkdirs(p, err, errlen) < 0)
            return -1;
        *slash = '/';
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || (e[i].data.len > 0 &&
                       write(fd, e[i].data.data, e[i].data.len) != (ssize_t)e[i].data.len)) {
            snprintf(err, errlen, "\"%.400s\": %s", p, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

/* Downloads bundle <name> and unpacks it into <dir>. */
static int bundle_fetch(const char *name, const tp_conf_t *conf, const char *dir, char *err,
                        size_t errlen)
{
    if (!conf->enable_bundle_downloader) {
        snprintf(err, errlen, "Couldn't fetch bundle: Bundle downloader is disabled");
        return -1;
    }
    tp_buf_t url = {0}, zip = {0};
    tp_buf_puts(&url, conf->bundle_base_url);
    while (url.len > 0 && url.data[url.len - 1] == '/')
        url.len--;
    tp_buf_putc(&url, '/');
    while (*name == '/')
        name++;
    tp_buf_puts(&url, name);
    const char *u = tp_buf_cstr(&url);
    char why[512];
    int rc = -1;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
        snprintf(err, errlen, "Couldn't fetch bundle: Unknown URL scheme (%s)", u);
        goto out;
    }
    tp_log_info("----> Fetching Bundle: %s", u);
    int insecure = strncmp(u, "https:", 6) == 0 && conf->bundle_insecure_skip_verify;
    if (tp_http_get(u, insecure, BUNDLE_MAX, BUNDLE_TIMEOUT_MS, &zip, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "Couldn't fetch bundle %s: %s", u, why);
        goto out;
    }
    tp_zip_entry_t *e;
    size_t n;
    if (tp_zip_read(zip.data != NULL ? zip.data : "", zip.len, BUNDLE_MAX, &e, &n, why,
                    sizeof(why)) < 0) {
        snprintf(err, errlen, "Couldn't save bundle: %s", why);
        goto out;
    }
    rc = mkdirs(dir, why, sizeof(why));
    if (rc == 0)
        rc = bundle_save(e, n, dir, why, sizeof(why));
    tp_zip_free(e, n);
    if (rc < 0) {
        snprintf(err, errlen, "Couldn't save bundle: %s", why);
        rm_tree(dir);
    }
out:
    tp_buf_free(&url);
    tp_buf_free(&zip);
    return rc;
}

/* Tyk's loadBundle: middleware_path/bundles/<md5 of the name> when it is
 * there (not verified again, as Tyk), else downloaded from bundle_base_url
 * (only when <may_fetch>), unpacked there and verified (a bundle that
 * fails is removed). JavaScript bundles only. 0 with the manifest in *man
 * and the directory in <dir>; 1 when it is not there and may not be
 * fetched; -1 (the API stays out). */
static int bundle_load(const char *name, const tp_conf_t *conf, int may_fetch, cJSON **man,
                       char *dir, size_t dirlen, char *err, size_t errlen)
{
    *man = NULL;
    if (conf->bundle_base_url == NULL || conf->bundle_base_url[0] == '\0') {
        snprintf(err, errlen, "No bundle base URL set, skipping bundle");
        return -1;
    }
    unsigned char md[16];
    char hex[33];
    mbedtls_md5_ret((const unsigned char *)name, strlen(name), md);
    tp_hex(hex, md, 16);
    const char *mp = conf->middleware_path != NULL && conf->middleware_path[0] != '\0'
                         ? conf->middleware_path
                         : "middleware";
    snprintf(dir, dirlen, "%s/bundles/%s", mp, hex);
    struct stat st;
    int fresh = 0;
    if (stat(dir, &st) != 0) {
        if (!may_fetch)
            return 1;
        if (bundle_fetch(name, conf, dir, err, errlen) < 0)
            return -1;
        fresh = 1;
    }
    char mpath[4200], why[1024];
    snprintf(mpath, sizeof(mpath), "%s/manifest.json", dir);
    *man = tp_json_parse_file(mpath, why, sizeof(why));
    if (*man == NULL) {
        snprintf(err, errlen, "Couldn't load bundle: %.900s", why);
    } else if (fresh && bundle_verify(*man, dir, conf, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "Couldn't load bundle: %.900s", why);
    } else {
        const cJSON *cm = cJSON_GetObjectItem(*man, "custom_middleware");
        const char *driver = cJSON_GetStringValue(cJSON_GetObjectItem(cm, "driver"));
        if (driver != NULL && strcmp(driver, "otto") == 0)
            return 0;
        snprintf(err, errlen,
                 "bundle \"%s\": driver \"%s\": only JavaScript bundles (driver \"otto\") are "
                 "supported by this gateway",
                 name, driver != NULL ? driver : "");
    }
    cJSON_Delete(*man);
    *man = NULL;
    if (fresh)
        rm_tree(dir);
    return -1;
}

int tp_api_js_load(tp_api_t *api, const cJSON *def, const tp_conf_t *conf, char *err, size_t errlen)
{
    return tp_api_js_load_ex(api, def, conf, 1, err, errlen);
}

int tp_api_js_load_ex(tp_api_t *api, const cJSON *def, const tp_conf_t *conf, int may_fetch,
                      char *err, size_t errlen)
{
    cJSON *man = NULL;
    char bdir[4096];
    const char *bname = cJSON_GetStringValue((cJSON *)tp_json_get(def, "custom_middleware_bundle"));
    if (bname != NULL && bname[0] != '\0' &&
        !cJSON_IsTrue(tp_json_get(def, "custom_middleware_bundle_disabled"))) {
        char why[1024];
        int rc = bundle_load(bname, conf, may_fetch, &man, bdir, sizeof(bdir), why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "$.custom_middleware_bundle: %s", why);
            return -1;
        }
        if (rc > 0)
            return 0; /* not on disk yet: the master fetches it when it loads the API */
    }
    int rc = js_load(api, def, man != NULL ? cJSON_GetObjectItem(man, "custom_middleware") : NULL,
                     man != NULL ? bdir : NULL, conf, err, errlen);
    cJSON_Delete(man);
    return rc;
}

static int js_load(tp_api_t *api, const cJSON *def, const cJSON *bundle_cm, const char *prefix,
                   const tp_conf_t *conf, char *err, size_t errlen)
{
    const cJSON *cm = bundle_cm != NULL ? bundle_cm : tp_json_get(def, "custom_middleware");
    const char *driver = cJSON_GetStringValue((cJSON *)tp_json_get(cm, "driver"));
    int otto = driver != NULL && strcmp(driver, "otto") == 0;
    int any_hook = 0;
    for (int k = 0; otto && k < NHOOKS; k++)
        any_hook |= cJSON_GetArraySize(tp_json_get(cm, hook_names[k])) > 0;
    if (!conf->enable_jsvm && !any_hook)
        return 0;
    if (!conf->enable_jsvm)
        tp_log_warn("API %s (%s): custom_middleware needs enable_jsvm in tyk.conf; its requests "
                    "answer 500 \"Middleware error\"",
                    api->api_id, api->file);
    load_t L = {.files = cJSON_CreateArray(),
                .err = err,
                .errlen = errlen,
                .no_files = !conf->enable_jsvm,
                .prefix = prefix,
                .auth = cJSON_IsTrue(tp_json_get(def, "custom_plugin_auth_enabled")) ||
                        cJSON_IsTrue(tp_json_get(def, "enable_coprocess_auth"))};
    for (int k = 0; k < NHOOKS; k++)
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
        for (int k = 0; rc == 0 && k < NHOOKS && conf->middleware_path != NULL; k++)
            rc = load_dir(&L, conf->middleware_path, api->api_id, k);
        if (rc == 0)
            rc = load_virtual(&L, def, conf);
    }
    int used = conf->enable_jsvm && has_virtual(def);
    for (int k = 0; k < NHOOKS; k++)
        used |= cJSON_GetArraySize(L.hooks[k]) > 0;
    if (rc == 0 && used) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "vm", conf->enable_jsvm);
        cJSON_AddItemToObject(o, "files", L.files);
        for (int k = 0; k < NHOOKS; k++)
            cJSON_AddItemToObject(o, hook_names[k], L.hooks[k]);
        char *s = cJSON_PrintUnformatted(o);
        api->js_json = tp_strdup(s);
        cJSON_free(s);
        cJSON_Delete(o);
        return 0;
    }
    cJSON_Delete(L.files);
    for (int k = 0; k < NHOOKS; k++)
        cJSON_Delete(L.hooks[k]);
    return rc;
}
