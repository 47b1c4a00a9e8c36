/*
 * worker/tp_endpoints.c: extended_paths entries by version, method and
 * path (see tp_endpoints.h).
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_api_mw.h"
#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_log.h"
#include "tp_worker.h"

struct tp_endpoint_s {
    char *version;
    char method[16];
    regex_t re;
};

const char *tp_version_name(const cJSON *v)
{
    const cJSON *name = tp_json_get(v, "name");
    return cJSON_IsString(name) && name->valuestring[0] != '\0' ? name->valuestring : v->string;
}

int tp_endpoints_add(tp_endpoints_t *l, const char *version, const cJSON *e, const tp_api_t *api,
                     const tp_conf_t *conf)
{
    const cJSON *path = tp_json_get(e, "path");
    if (!cJSON_IsString(path) || cJSON_IsTrue(tp_json_get(e, "disabled")) || version == NULL)
        return -1;
    char err[256];
    regex_t re;
    if (tp_path_pattern_compile(&re, path->valuestring,
                                conf->http_server_options.enable_path_prefix_matching,
                                conf->http_server_options.enable_path_suffix_matching,
                                conf->ignore_endpoint_case, err, sizeof(err)) < 0) {
        tp_log_warn("API %s (%s): %s \"%s\" skipped: %s", api->api_id, api->file, l->section,
                    path->valuestring, err);
        return -1;
    }
    l->e = tp_realloc(l->e, (l->n + 1) * sizeof(*l->e));
    tp_endpoint_t *x = &l->e[l->n];
    x->version = tp_strdup(version);
    x->re = re;
    const cJSON *m = tp_json_get(e, "method");
    snprintf(x->method, sizeof(x->method), "%s", cJSON_IsString(m) ? m->valuestring : "");
    return (int)l->n++;
}

int tp_endpoints_match(const tp_endpoints_t *l, tp_req_t *req)
{
    if (l->n == 0 || req->version == NULL)
        return -1;
    const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
    const char *method = llhttp_method_name(req->method);
    for (size_t i = 0; i < l->n; i++) {
        const tp_endpoint_t *e = &l->e[i];
        if (strcmp(e->version, req->version->name) != 0)
            continue;
        if (!(l->empty_any && e->method[0] == '\0') && strcasecmp(e->method, method) != 0)
            continue;
        for (int k = 0; k < 3; k++)
            if (regexec(&e->re, paths[k], 0, NULL, 0) == 0)
                return (int)i;
    }
    return -1;
}

const void *tp_epmatch_first(tp_req_t *req, const void *arr, size_t n, size_t size)
{
    if (n == 0 || req->version == NULL)
        return NULL;
    const char *const *paths = tp_req_rulepaths(req, req->rp, 1);
    const char *method = llhttp_method_name(req->method);
    for (size_t i = 0; i < n; i++) {
        const tp_epmatch_t *m = (const tp_epmatch_t *)((const char *)arr + i * size);
        if (tp_epmatch(m, method, paths, 3))
            return m;
    }
    return NULL;
}

void tp_endpoints_free(tp_endpoints_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].version);
        regfree(&l->e[i].re);
    }
    free(l->e);
    l->e = NULL;
    l->n = 0;
}
