/*
 * conf/tp_api_mw.c: see tp_api_mw.h. Sources in Tyk: apidef/api_definitions.go
 * (URLRewriteMeta, RoutingTrigger, MethodTransformMeta, RequestSizeMeta),
 * gateway/api_definition.go (getExtendedPathSpecs), gateway/mw_url_rewrite.go.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_api_mw.h"
#include "tp_api_rules.h"
#include "tp_buf.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_http.h"
#include "tp_jsonschema.h"
#include "tp_keyhash.h"
#include "tp_tmpl.h"

typedef struct mwb_s {
    const tp_conf_t *conf;
    int icase;
    char *err;
    size_t errlen;
    int payload; /* a rewrite trigger reads the request body */
    int loops;   /* a rewrite goes to tyk:// */
} mwb_t;

static int mfail(mwb_t *B, const char *path, const char *why)
{
    snprintf(B->err, B->errlen, "%s: %s", path, why);
    return -1;
}

/* ---- regular expressions with Go's group numbers ------------------------------------- */

int tp_rx_compile(tp_rx_t *rx, const char *pattern, int icase, char *err, size_t errlen)
{
    memset(rx, 0, sizeof(*rx));
    if (strncmp(pattern, "(?i)", 4) == 0) {
        icase = 1;
        pattern += 4;
    }
    /* which POSIX group each RE2 capturing group becomes: (?:...) is a
     * group to POSIX as well, after the translation */
    int posix = 0, re2 = 0, in_class = 0;
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
            continue;
        }
        if (in_class) {
            in_class = *p != ']';
            continue;
        }
        if (*p == '[') {
            in_class = 1;
            if (p[1] == '^')
                p++;
            if (p[1] == ']')
                p++;
            continue;
        }
        if (*p != '(')
            continue;
        posix++;
        if (p[1] == '?')
            continue;
        if (++re2 >= TP_RW_GROUPS) {
            snprintf(err, errlen, "more than %d groups in \"%s\"", TP_RW_GROUPS - 1, pattern);
            return -1;
        }
        rx->gmap[re2] = (uint8_t)posix;
    }
    tp_buf_t out = {0};
    if (tp_re2_to_posix(pattern, &out, err, errlen) < 0) {
        tp_buf_free(&out);
        return -1;
    }
    int rc = regcomp(&rx->re, tp_buf_cstr(&out), REG_EXTENDED | (icase ? REG_ICASE : 0));
    tp_buf_free(&out);
    if (rc != 0) {
        snprintf(err, errlen, "\"%s\" is not a regular expression this gateway can run", pattern);
        return -1;
    }
    rx->ngroups = re2 + 1;
    rx->nposix = (size_t)posix + 1; /* set once compiled: rx_free looks at it */
    return 0;
}

int tp_rx_exec(const tp_rx_t *rx, const char *s, regmatch_t g[TP_RW_GROUPS])
{
    return tp_rx_exec_at(rx, s, 0, g);
}

int tp_rx_exec_at(const tp_rx_t *rx, const char *s, int notbol, regmatch_t g[TP_RW_GROUPS])
{
    regmatch_t all[64];
    size_t n = rx->nposix < 64 ? rx->nposix : 64;
    if (regexec(&rx->re, s, n, all, notbol ? REG_NOTBOL : 0) != 0)
        return 0;
    for (int i = 0; i < TP_RW_GROUPS; i++)
        g[i].rm_so = g[i].rm_eo = -1;
    g[0] = all[0];
    for (int i = 1; i < rx->ngroups; i++)
        if (rx->gmap[i] < n)
            g[i] = all[rx->gmap[i]];
    return 1;
}

static void rx_free(tp_rx_t *rx)
{
    if (rx->nposix > 0)
        regfree(&rx->re);
}

/* ---- entries --------------------------------------------------------------------------- */

/* Does <re> match one of the <n> candidate paths? */
static int any_path(const regex_t *re, const char *const *paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (regexec(re, paths[i], 0, NULL, 0) == 0)
            return 1;
    return 0;
}

int tp_epmatch(const tp_epmatch_t *m, const char *method, const char *const *paths, size_t n)
{
    return strcmp(m->method, method) == 0 && any_path(&m->re, paths, n);
}

/* Tyk's path pattern <pattern> of the entry at <path> into <re>, under the
 * gateway's prefix/suffix matching and the version's case rule. */
static int path_pattern(mwb_t *B, regex_t *re, const char *pattern, const char *path)
{
    char why[256];
    const tp_conf_t *c = B->conf;
    if (tp_path_pattern_compile(re, pattern, c->http_server_options.enable_path_prefix_matching,
                                c->http_server_options.enable_path_suffix_matching, B->icase, why,
                                sizeof(why)) < 0)
        return mfail(B, path, why);
    return 0;
}

/* The path and method of entry <e> into <m>; 1 when the entry is used,
 * 0 when it is disabled. */
static int epmatch_of(mwb_t *B, tp_epmatch_t *m, const cJSON *e, const char *path)
{
    const char *pattern = tp_json_str(e, "path"), *method = tp_json_str(e, "method");
    if (pattern == NULL)
        return mfail(B, path, "expected a \"path\"");
    if (method == NULL)
        method = "";
    if (strlen(method) >= sizeof(m->method))
        return mfail(B, path, "the \"method\" is too long");
    snprintf(m->method, sizeof(m->method), "%s", method);
    return path_pattern(B, &m->re, pattern, path) < 0 ? -1 : 1;
}

static void grow(void **arr, size_t *n, size_t size)
{
    *arr = tp_realloc(*arr, (*n + 1) * size);
    memset((char *)*arr + *n * size, 0, size);
}

/* Go's textproto.CanonicalMIMEHeaderKey, for names made of token bytes. */
static char *canonical_header(const char *s)
{
    tp_buf_t b = {0};
    tp_http_put_canonical(&b, s, strlen(s));
    return (char *)tp_buf_cstr(&b);
}

static int trigger_opts(mwb_t *B, tp_trigger_t *t, int kind, const cJSON *map, const char *path)
{
    if (map == NULL || cJSON_IsNull(map))
        return 0;
    if (!cJSON_IsObject(map))
        return mfail(B, path, "expected an object of {\"match_rx\", \"reverse\"}");
    const cJSON *o;
    cJSON_ArrayForEach(o, map)
    {
        char sub[640];
        snprintf(sub, sizeof(sub), "%.560s", path);
        tp_json_path_push(sub, sizeof(sub), o->string, 0);
        const char *rx = tp_json_str(o, "match_rx");
        if (rx == NULL)
            return mfail(B, sub, "expected a \"match_rx\"");
        grow((void **)&t->opts, &t->nopts, sizeof(*t->opts));
        tp_trigopt_t *opt = &t->opts[t->nopts];
        opt->kind = kind;
        opt->name = kind == TP_TRIG_HEADER ? canonical_header(o->string) : tp_strdup(o->string);
        opt->reverse = cJSON_IsTrue(tp_json_get(o, "reverse"));
        char why[256];
        if (tp_rx_compile(&opt->rx, rx, 0, why, sizeof(why)) < 0) {
            free(opt->name);
            return mfail(B, sub, why);
        }
        t->nopts++;
    }
    if (cJSON_GetArraySize(map) > 0)
        t->kinds[kind] = cJSON_GetArraySize(map);
    return 0;
}

/* A rewrite target this gateway can follow: a path (and query) under the
 * API's own target, another host over http:// or https://, or an internal
 * tyk:// loop (its target is looked up when a request takes it, as Tyk
 * does). */
static int target_ok(mwb_t *B, const char *to, const char *path)
{
    if (strncasecmp(to, "tyk://", 6) == 0) {
        B->loops = 1;
        return 0;
    }
    if (strstr(to, "://") != NULL && strncasecmp(to, "http://", 7) != 0 &&
        strncasecmp(to, "https://", 8) != 0)
        return mfail(B, path,
                     "a rewrite to another host is supported over http:// and https:// only; the "
                     "API is not loaded rather than served without its rewrite");
    return 0;
}

static int rewrite_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    grow((void **)&mw->rw, &mw->nrw, sizeof(*mw->rw));
    tp_rewrite_t *r = &mw->rw[mw->nrw];
    int rc = epmatch_of(B, &r->m, e, path);
    if (rc <= 0)
        return rc;
    mw->nrw++; /* from here on it is freed with the others */
    char sub[640], why[256];
    const char *mp = tp_json_str(e, "match_pattern"), *to = tp_json_str(e, "rewrite_to");
    snprintf(sub, sizeof(sub), "%.560s.match_pattern", path);
    if (mp == NULL)
        return mfail(B, sub, "expected a regular expression");
    if (tp_rx_compile(&r->rx, mp, 0, why, sizeof(why)) < 0)
        return mfail(B, sub, why);
    snprintf(sub, sizeof(sub), "%.560s.rewrite_to", path);
    if (to == NULL)
        return mfail(B, sub, "expected a string");
    if (target_ok(B, to, sub) < 0)
        return -1;
    r->rewrite_to = tp_strdup(to);
    const cJSON *trigs = tp_json_get(e, "triggers"), *t;
    int i = 0;
    cJSON_ArrayForEach(t, (cJSON_IsArray(trigs) ? trigs : NULL))
    {
        char tp[600];
        snprintf(tp, sizeof(tp), "%.500s.triggers", path);
        tp_json_path_push(tp, sizeof(tp), NULL, i++);
        grow((void **)&r->trig, &r->ntrig, sizeof(*r->trig));
        tp_trigger_t *tr = &r->trig[r->ntrig++];
        const char *on = tp_json_str(t, "on");
        tr->all = on != NULL && strcmp(on, "all") == 0;
        const char *tto = tp_json_str(t, "rewrite_to");
        snprintf(sub, sizeof(sub), "%.560s.rewrite_to", tp);
        if (tto == NULL)
            return mfail(B, sub, "expected a string");
        if (target_ok(B, tto, sub) < 0)
            return -1;
        tr->rewrite_to = tp_strdup(tto);
        const cJSON *opts = tp_json_get(t, "options");
        static const struct {
            const char *key;
            int kind;
        } kinds[] = {{"header_matches", TP_TRIG_HEADER},
                     {"query_val_matches", TP_TRIG_QUERY},
                     {"path_part_matches", TP_TRIG_PATH_PART},
                     {"session_meta_matches", TP_TRIG_SESSION_META},
                     {"request_context_matches", TP_TRIG_CONTEXT}};
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            snprintf(sub, sizeof(sub), "%.560s.options.%s", tp, kinds[k].key);
            if (trigger_opts(B, tr, kinds[k].kind, tp_json_get(opts, kinds[k].key), sub) < 0)
                return -1;
        }
        /* payload_matches: one {match_rx, reverse} on the request body */
        const cJSON *pm = tp_json_get(opts, "payload_matches");
        const char *prx = tp_json_str(pm, "match_rx");
        if (prx != NULL && prx[0] != '\0') {
            snprintf(sub, sizeof(sub), "%.560s.options.payload_matches.match_rx", tp);
            grow((void **)&tr->opts, &tr->nopts, sizeof(*tr->opts));
            tp_trigopt_t *opt = &tr->opts[tr->nopts];
            char rwhy[256];
            if (tp_rx_compile(&opt->rx, prx, 0, rwhy, sizeof(rwhy)) < 0)
                return mfail(B, sub, rwhy);
            opt->kind = TP_TRIG_PAYLOAD;
            opt->name = tp_strdup("payload");
            opt->reverse = cJSON_IsTrue(tp_json_get(pm, "reverse"));
            tr->nopts++;
            tr->kinds[TP_TRIG_PAYLOAD] = 1;
            B->payload = 1;
        }
    }
    return 0;
}

static int mtrans_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    grow((void **)&mw->mt, &mw->nmt, sizeof(*mw->mt));
    tp_mtrans_t *m = &mw->mt[mw->nmt];
    int rc = epmatch_of(B, &m->m, e, path);
    if (rc <= 0)
        return rc;
    mw->nmt++;
    const char *to = tp_json_str(e, "to_method");
    char sub[640];
    snprintf(sub, sizeof(sub), "%.560s.to_method", path);
    if (to == NULL || strlen(to) >= sizeof(m->to))
        return mfail(B, sub, "expected an HTTP method");
    for (size_t i = 0; to[i]; i++)
        m->to[i] = (char)toupper((unsigned char)to[i]);
    return 0;
}

static int size_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    grow((void **)&mw->sl, &mw->nsl, sizeof(*mw->sl));
    tp_sizelim_t *s = &mw->sl[mw->nsl];
    int rc = epmatch_of(B, &s->m, e, path);
    if (rc <= 0)
        return rc;
    mw->nsl++;
    const cJSON *lim = tp_json_get(e, "size_limit");
    if (lim != NULL && (!cJSON_IsNumber(lim) || lim->valuedouble < 0)) {
        char sub[640];
        snprintf(sub, sizeof(sub), "%.560s.size_limit", path);
        return mfail(B, sub, "expected a number of bytes");
    }
    s->limit = lim != NULL ? (int64_t)lim->valuedouble : 0;
    return 0;
}

/* validate_json: "schema" (an object), else "schema_b64" (its JSON, base64). */
static int validate_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    grow((void **)&mw->vj, &mw->nvj, sizeof(*mw->vj));
    tp_jsonvalid_t *v = &mw->vj[mw->nvj];
    int rc = epmatch_of(B, &v->m, e, path);
    if (rc <= 0)
        return rc;
    mw->nvj++;
    const cJSON *code = tp_json_get(e, "error_response_code");
    v->error_code = cJSON_IsNumber(code) && code->valuedouble >= 100 && code->valuedouble <= 999
                        ? (int)code->valuedouble
                        : 422;
    char sub[640], why[512];
    const cJSON *schema = tp_json_get(e, "schema");
    cJSON *decoded = NULL;
    const char *b64 = tp_json_str(e, "schema_b64");
    if ((schema == NULL || cJSON_IsNull(schema)) && b64 != NULL && b64[0] != '\0') {
        snprintf(sub, sizeof(sub), "%.560s.schema_b64", path);
        size_t n = strlen(b64);
        unsigned char *raw = tp_malloc(n + 1);
        ptrdiff_t dn = tp_b64_std_decode(b64, n, raw);
        if (dn >= 0)
            decoded = tp_json_parse((const char *)raw, (size_t)dn, why, sizeof(why));
        free(raw);
        if (decoded == NULL)
            return mfail(B, sub, dn < 0 ? "not base64" : why);
        schema = decoded;
    }
    snprintf(sub, sizeof(sub), "%.560s.schema", path);
    if (schema == NULL || cJSON_IsNull(schema)) {
        v->schema = NULL; /* Tyk: 500 "no schemas to validate against" */
        return 0;
    }
    char jwhy[400];
    v->schema = tp_jschema_compile(schema, jwhy, sizeof(jwhy));
    cJSON_Delete(decoded);
    if (v->schema == NULL) {
        snprintf(why, sizeof(why), "not a schema this gateway can run: %s", jwhy);
        return mfail(B, sub, why);
    }
    return 0;
}

/* transform: template_data {input_type, template_mode "blob" (base64 of
 * the template) or "file" (its path), template_source, enable_session}. A
 * template this gateway cannot run exactly refuses the API (Tyk would drop
 * an entry whose template does not load; one that loads runs as Go runs it). */
static int template_entry(mwb_t *B, tp_transform_t **arr, size_t *count, const cJSON *e,
                          const char *path)
{
    grow((void **)arr, count, sizeof(**arr));
    tp_transform_t *t = &(*arr)[*count];
    int rc = epmatch_of(B, &t->m, e, path);
    if (rc <= 0)
        return rc;
    (*count)++;
    const cJSON *td = tp_json_get(e, "template_data");
    char sub[640], why[512];
    snprintf(sub, sizeof(sub), "%.560s.template_data", path);
    if (!cJSON_IsObject(td))
        return mfail(B, sub, "expected an object");
    const char *in = tp_json_str(td, "input_type"), *mode = tp_json_str(td, "template_mode"),
               *src = tp_json_str(td, "template_source");
    t->xml = in != NULL && strcmp(in, "xml") == 0;
    t->session = cJSON_IsTrue(tp_json_get(td, "enable_session"));
    if (in != NULL && in[0] != '\0' && strcmp(in, "json") != 0 && !t->xml) {
        snprintf(sub, sizeof(sub), "%.540s.template_data.input_type", path);
        return mfail(B, sub, "expected \"json\" or \"xml\"");
    }
    snprintf(sub, sizeof(sub), "%.540s.template_data.template_source", path);
    if (src == NULL)
        return mfail(B, sub, "expected a string");
    tp_buf_t text = {0};
    if (mode != NULL && strcmp(mode, "file") == 0) {
        if (tp_buf_read_file(&text, src) < 0) {
            snprintf(why, sizeof(why), "\"%s\": %s", src, strerror(errno));
            tp_buf_free(&text);
            return mfail(B, sub, why);
        }
    } else {
        size_t n = strlen(src);
        unsigned char *raw = tp_malloc(n + 1);
        ptrdiff_t dn = tp_b64_std_decode(src, n, raw);
        if (dn < 0) {
            free(raw);
            return mfail(B, sub, "a \"blob\" template is base64: this is not");
        }
        tp_buf_append(&text, raw, (size_t)dn);
        free(raw);
    }
    char twhy[400];
    t->tmpl = tp_tmpl_compile(text.data != NULL ? text.data : "", text.len, twhy, sizeof(twhy));
    tp_buf_free(&text);
    if (t->tmpl == NULL) {
        snprintf(why, sizeof(why), "the template cannot run here: %s", twhy);
        return mfail(B, sub, why);
    }
    return 0;
}

static int transform_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    return template_entry(B, &mw->tf, &mw->ntf, e, path);
}

static int transform_response_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    return template_entry(B, &mw->rtf, &mw->nrtf, e, path);
}

static int plain_entry(mwb_t *B, tp_epmatch_t **arr, size_t *n, const cJSON *e, const char *path)
{
    grow((void **)arr, n, sizeof(**arr));
    int rc = epmatch_of(B, &(*arr)[*n], e, path);
    if (rc > 0)
        (*n)++;
    return rc;
}

static int internal_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    return plain_entry(B, &mw->internal, &mw->ninternal, e, path);
}

/* extended_paths.virtual (with enable_jsvm: Tyk's VirtualEndpoint runs
 * only then); the scripts were loaded by tp_conf_js.c. */
static int virtual_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    if (B->conf == NULL || !B->conf->enable_jsvm)
        return 0;
    const char *fn = tp_json_str(e, "response_function_name");
    if (fn == NULL || fn[0] == '\0')
        return mfail(B, path, "expected a \"response_function_name\"");
    grow((void **)&mw->virt, &mw->nvirt, sizeof(*mw->virt));
    tp_virtual_t *v = &mw->virt[mw->nvirt];
    int rc = epmatch_of(B, &v->m, e, path);
    if (rc <= 0)
        return rc;
    v->fn = tp_strdup(fn);
    v->use_session = cJSON_IsTrue(tp_json_get(e, "use_session"));
    v->proxy_on_error = cJSON_IsTrue(tp_json_get(e, "proxy_on_error"));
    mw->nvirt++;
    return 0;
}

static int track_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    size_t n = mw->ntrack;
    int rc = plain_entry(B, &mw->track, &mw->ntrack, e, path);
    if (mw->ntrack > n) {
        mw->track_paths = tp_realloc(mw->track_paths, mw->ntrack * sizeof(char *));
        mw->track_paths[n] = tp_strdup(tp_json_str(e, "path"));
    }
    return rc;
}

/* ---- the response cache (TYK-COMPAT 21.8) -------------------------------------------- */

int tp_cachepath_match(const tp_cachepath_t *c, const char *method, const char *const *paths,
                       size_t n)
{
    if (!c->safe)
        return tp_epmatch(&c->m, method, paths, n);
    return tp_http_is_safe_method(method) && any_path(&c->m.re, paths, n);
}

/* A list of HTTP status codes at <path> into <codes>. */
static int status_codes(mwb_t *B, const cJSON *list, const char *path, int **codes, size_t *n)
{
    *codes = NULL;
    *n = 0;
    if (list == NULL || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list))
        return mfail(B, path, "expected a list of HTTP status codes");
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        if (!cJSON_IsNumber(c) || c->valuedouble < 100 || c->valuedouble > 999 ||
            c->valuedouble != (double)(int)c->valuedouble) {
            free(*codes);
            *codes = NULL;
            *n = 0;
            return mfail(B, path, "expected a list of HTTP status codes");
        }
        *codes = tp_realloc(*codes, (*n + 1) * sizeof(int));
        (*codes)[(*n)++] = (int)c->valuedouble;
    }
    return 0;
}

/* A legacy extended_paths.cache entry: a path string, safe methods. */
static int cache_legacy(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    if (!cJSON_IsString(e))
        return mfail(B, path, "expected a path string");
    grow((void **)&mw->cache, &mw->ncache, sizeof(*mw->cache));
    tp_cachepath_t *c = &mw->cache[mw->ncache];
    if (path_pattern(B, &c->m.re, e->valuestring, path) < 0)
        return -1;
    c->safe = 1;
    mw->ncache++;
    return 0;
}

/* advance_cache_config {path, method, cache_key_regex, cache_response_codes, timeout}. */
static int cache_entry(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path)
{
    grow((void **)&mw->cache, &mw->ncache, sizeof(*mw->cache));
    tp_cachepath_t *c = &mw->cache[mw->ncache];
    int rc = epmatch_of(B, &c->m, e, path);
    if (rc <= 0)
        return rc;
    mw->ncache++;
    char sub[640], why[256];
    const char *rx = tp_json_str(e, "cache_key_regex");
    if (rx != NULL && rx[0] != '\0') {
        snprintf(sub, sizeof(sub), "%.560s.cache_key_regex", path);
        if (tp_rx_compile(&c->key_rx, rx, 0, why, sizeof(why)) < 0)
            return mfail(B, sub, why);
        c->has_key_rx = 1;
    }
    snprintf(sub, sizeof(sub), "%.560s.cache_response_codes", path);
    if (status_codes(B, tp_json_get(e, "cache_response_codes"), sub, &c->codes, &c->ncodes) < 0)
        return -1;
    const cJSON *t = tp_json_get(e, "timeout");
    if (t != NULL && !cJSON_IsNull(t)) {
        snprintf(sub, sizeof(sub), "%.560s.timeout", path);
        if (!cJSON_IsNumber(t) || t->valuedouble < 0)
            return mfail(B, sub, "expected a number of seconds");
        c->timeout = (int64_t)t->valuedouble;
    }
    return 0;
}

int tp_api_mw_cache_build(const cJSON *def, tp_cacheopts_t **out, char *err, size_t errlen)
{
    mwb_t B = {NULL, 0, err, errlen, 0, 0};
    *out = NULL;
    const cJSON *o = tp_json_get(def, "cache_options");
    if (!cJSON_IsTrue(tp_json_get(o, "enable_cache")))
        return 0;
    tp_cacheopts_t *c = tp_calloc(1, sizeof(*c));
    const cJSON *t = tp_json_get(o, "cache_timeout");
    if (t != NULL && !cJSON_IsNull(t)) {
        if (!cJSON_IsNumber(t) || t->valuedouble < 0) {
            tp_api_mw_cache_free(c);
            return mfail(&B, "$.cache_options.cache_timeout", "expected a number of seconds");
        }
        c->timeout = (int64_t)t->valuedouble;
    }
    c->all_safe = cJSON_IsTrue(tp_json_get(o, "cache_all_safe_requests"));
    c->upstream_control = cJSON_IsTrue(tp_json_get(o, "enable_upstream_cache_control"));
    if (status_codes(&B, tp_json_get(o, "cache_response_codes"),
                     "$.cache_options.cache_response_codes", &c->codes, &c->ncodes) < 0) {
        tp_api_mw_cache_free(c);
        return -1;
    }
    const char *th = tp_json_str(o, "cache_control_ttl_header");
    c->ttl_header = tp_strdup(th != NULL && th[0] != '\0' ? th : "x-tyk-cache-action-set-ttl");
    const cJSON *bh = tp_json_get(o, "cache_by_headers"), *h;
    if (bh != NULL && !cJSON_IsNull(bh) && !cJSON_IsArray(bh)) {
        tp_api_mw_cache_free(c);
        return mfail(&B, "$.cache_options.cache_by_headers", "expected a list of header names");
    }
    cJSON_ArrayForEach(h, (cJSON_IsArray(bh) ? bh : NULL))
    {
        if (!cJSON_IsString(h)) {
            tp_api_mw_cache_free(c);
            return mfail(&B, "$.cache_options.cache_by_headers", "expected a list of header names");
        }
        c->by_headers = tp_realloc(c->by_headers, (c->nby_headers + 1) * sizeof(char *));
        c->by_headers[c->nby_headers++] = tp_strdup(h->valuestring);
    }
    *out = c;
    return 0;
}

void tp_api_mw_cache_free(tp_cacheopts_t *c)
{
    if (c == NULL)
        return;
    free(c->codes);
    free(c->ttl_header);
    for (size_t i = 0; i < c->nby_headers; i++)
        free(c->by_headers[i]);
    free(c->by_headers);
    free(c);
}

/* extended_paths sections Tyk runs and this gateway does not yet: an API
 * with an enabled entry in one is refused, not served without it. */
static const struct {
    const char *key, *what;
} refused[] = {
    {"transform_jq", "jq transforms (Tyk runs them only when built with jq)"},
    {"transform_jq_response", "jq response transforms (Tyk runs them only when built with jq)"},
    {"go_plugin", "Go plugins"},
    {"persist_graphql", "persisted GraphQL queries"},
};

static int entry_enabled(const cJSON *e)
{
    if (cJSON_IsString(e))
        return 1;
    return cJSON_IsObject(e) && !cJSON_IsTrue(tp_json_get(e, "disabled"));
}

int tp_api_mw_build(const cJSON *info, const tp_conf_t *conf, int ignore_case, const char *path,
                    tp_api_mw_t **out, char *err, size_t errlen)
{
    mwb_t B = {conf, ignore_case, err, errlen, 0, 0};
    *out = NULL;
    const cJSON *ext = tp_json_get(info, "extended_paths");
    if (!cJSON_IsTrue(tp_json_get(info, "use_extended_paths")) || !cJSON_IsObject(ext))
        ext = NULL;
    char sub[600];
    for (size_t i = 0; ext != NULL && i < sizeof(refused) / sizeof(refused[0]); i++) {
        const cJSON *list = tp_json_get(ext, refused[i].key), *e;
        int at = 0;
        cJSON_ArrayForEach(e, (cJSON_IsArray(list) ? list : NULL))
        {
            if (entry_enabled(e)) {
                snprintf(sub, sizeof(sub), "%.500s.extended_paths.%s[%d]", path, refused[i].key,
                         at);
                char why[256];
                snprintf(why, sizeof(why),
                         "%s are not supported by this gateway yet; the API is not loaded rather "
                         "than served without them",
                         refused[i].what);
                return mfail(&B, sub, why);
            }
            at++;
        }
    }
    tp_api_mw_t *mw = tp_calloc(1, sizeof(*mw));
    const cJSON *gl = tp_json_get(info, "global_size_limit");
    if (cJSON_IsNumber(gl) && gl->valuedouble > 0 &&
        !cJSON_IsTrue(tp_json_get(info, "global_size_limit_disabled")))
        mw->global_size = (int64_t)gl->valuedouble;
    static const struct {
        const char *key;
        int (*fn)(mwb_t *B, tp_api_mw_t *mw, const cJSON *e, const char *path);
    } sections[] = {
        {"url_rewrites", rewrite_entry},       {"method_transforms", mtrans_entry},
        {"size_limits", size_entry},           {"internal", internal_entry},
        {"track_endpoints", track_entry},      {"validate_json", validate_entry},
        {"transform", transform_entry},        {"transform_response", transform_response_entry},
        {"advance_cache_config", cache_entry}, {"virtual", virtual_entry}};
    {
        const cJSON *list = tp_json_get(ext, "cache"), *e;
        int at = 0;
        cJSON_ArrayForEach(e, (cJSON_IsArray(list) ? list : NULL))
        {
            snprintf(sub, sizeof(sub), "%.500s.extended_paths.cache[%d]", path, at++);
            if (cache_legacy(&B, mw, e, sub) < 0) {
                tp_api_mw_free(mw);
                return -1;
            }
        }
    }
    for (size_t s = 0; ext != NULL && s < sizeof(sections) / sizeof(sections[0]); s++) {
        const cJSON *list = tp_json_get(ext, sections[s].key), *e;
        int at = 0;
        cJSON_ArrayForEach(e, (cJSON_IsArray(list) ? list : NULL))
        {
            snprintf(sub, sizeof(sub), "%.500s.extended_paths.%s[%d]", path, sections[s].key, at++);
            if (!entry_enabled(e))
                continue;
            if (!cJSON_IsObject(e) || sections[s].fn(&B, mw, e, sub) < 0) {
                if (!cJSON_IsObject(e))
                    mfail(&B, sub, "expected an object");
                tp_api_mw_free(mw);
                return -1;
            }
        }
    }
    if (mw->nrw + mw->nmt + mw->nsl + mw->ninternal + mw->ntrack + mw->nvj + mw->ntf + mw->nrtf +
                mw->ncache + mw->nvirt ==
            0 &&
        mw->global_size == 0) {
        free(mw);
        return 0;
    }
    mw->payload_triggers = B.payload;
    mw->loops = B.loops;
    *out = mw;
    return 0;
}

void tp_api_mw_free(tp_api_mw_t *mw)
{
    if (mw == NULL)
        return;
    for (size_t i = 0; i < mw->nrw; i++) {
        tp_rewrite_t *r = &mw->rw[i];
        regfree(&r->m.re);
        rx_free(&r->rx);
        free(r->rewrite_to);
        for (size_t j = 0; j < r->ntrig; j++) {
            tp_trigger_t *t = &r->trig[j];
            for (size_t k = 0; k < t->nopts; k++) {
                rx_free(&t->opts[k].rx);
                free(t->opts[k].name);
            }
            free(t->opts);
            free(t->rewrite_to);
        }
        free(r->trig);
    }
    free(mw->rw);
    for (size_t i = 0; i < mw->nmt; i++)
        regfree(&mw->mt[i].m.re);
    free(mw->mt);
    for (size_t i = 0; i < mw->nsl; i++)
        regfree(&mw->sl[i].m.re);
    free(mw->sl);
    for (size_t i = 0; i < mw->ninternal; i++)
        regfree(&mw->internal[i].re);
    for (size_t i = 0; i < mw->nvirt; i++) {
        regfree(&mw->virt[i].m.re);
        free(mw->virt[i].fn);
    }
    free(mw->virt);
    free(mw->internal);
    for (size_t i = 0; i < mw->ntrack; i++) {
        regfree(&mw->track[i].re);
        free(mw->track_paths[i]);
    }
    free(mw->track);
    free(mw->track_paths);
    for (size_t i = 0; i < mw->nvj; i++) {
        regfree(&mw->vj[i].m.re);
        tp_jschema_free(mw->vj[i].schema);
    }
    free(mw->vj);
    for (size_t i = 0; i < mw->ntf; i++) {
        regfree(&mw->tf[i].m.re);
        tp_tmpl_free(mw->tf[i].tmpl);
    }
    free(mw->tf);
    for (size_t i = 0; i < mw->nrtf; i++) {
        regfree(&mw->rtf[i].m.re);
        tp_tmpl_free(mw->rtf[i].tmpl);
    }
    free(mw->rtf);
    for (size_t i = 0; i < mw->ncache; i++) {
        regfree(&mw->cache[i].m.re);
        if (mw->cache[i].has_key_rx)
            rx_free(&mw->cache[i].key_rx);
        free(mw->cache[i].codes);
    }
    free(mw->cache);
    free(mw);
}
