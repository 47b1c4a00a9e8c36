/*
 * conf/tp_api_rules.c: see tp_api_rules.h. Sources in Tyk:
 * apidef/api_definitions.go (the JSON shape), gateway/api_definition.go
 * (compilePaths, URLAllowedAndIgnored), internal/httputil/mux.go
 * (PreparePathRegexp).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tp_api_mw.h"
#include "tp_api_rules.h"
#include "tp_buf.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_keyhash.h"
#include "tp_log.h"

typedef struct build_s {
    const tp_conf_t *conf;
    char *err;
    size_t errlen;
    int ignore_case; /* the version's ignore_endpoint_case, or the global one */
    const char *org_id, *api_id;
    int endpoint_limits; /* some version has extended_paths.rate_limit entries */
} build_t;

/* ---- patterns ---------------------------------------------------------------------- */

static void replace_all(tp_buf_t *b, const char *from, const char *to)
{
    tp_buf_t out = {0};
    size_t n = strlen(from);
    const char *s = tp_buf_cstr(b);
    for (const char *hit; (hit = strstr(s, from)) != NULL; s = hit + n) {
        tp_buf_append(&out, s, (size_t)(hit - s));
        tp_buf_puts(&out, to);
    }
    tp_buf_puts(&out, s);
    tp_buf_free(b);
    *b = out;
}

/* Go's RE2 syntax to POSIX extended syntax, for what paths use: \d and \D,
 * non-capturing groups, lazy quantifiers (the same matches when only
 * "does it match" is asked). Other RE2-only constructs are refused. */
int tp_re2_to_posix(const char *in, tp_buf_t *out, char *err, size_t errlen)
{
    int in_class = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '\\' && p[1] != '\0') {
            char c = p[1];
            if (!in_class && c == 'd')
                tp_buf_puts(out, "[0-9]");
            else if (!in_class && c == 'D')
                tp_buf_puts(out, "[^0-9]");
            else if (in_class && c == 'd')
                tp_buf_puts(out, "0-9");
            else if (c == 'Q' || c == 'E' || c == 'p' || c == 'P' || c == 'z' || c == 'A' ||
                     (in_class && (c == 'w' || c == 's' || c == 'W' || c == 'S' || c == 'D'))) {
                snprintf(err, errlen, "\"\\%c\" is not supported in path patterns", c);
                return -1;
            } else {
                tp_buf_putc(out, '\\');
                tp_buf_putc(out, c);
            }
            p++;
            continue;
        }
        if (in_class) {
            if (*p == ']')
                in_class = 0;
            tp_buf_putc(out, *p);
            continue;
        }
        if (*p == '[') {
            in_class = 1;
            tp_buf_putc(out, *p);
            if (p[1] == '^')
                tp_buf_putc(out, *++p);
            if (p[1] == ']')
                tp_buf_putc(out, *++p);
            continue;
        }
        if (*p == '(' && p[1] == '?') {
            if (p[2] == ':') {
                tp_buf_putc(out, '(');
                p += 2;
                continue;
            }
            snprintf(err, errlen,
                     "\"(?\" groups other than (?:...) and a leading (?i) are not "
                     "supported in path patterns");
            return -1;
        }
        if ((*p == '*' || *p == '+' || *p == '?' || *p == '}') && p[1] == '?') {
            tp_buf_putc(out, *p++); /* lazy: the same set of matching paths */
            continue;
        }
        tp_buf_putc(out, *p);
    }
    return 0;
}

int tp_path_pattern_compile(regex_t *re, const char *pattern, int prefix, int suffix,
                            int ignore_case, char *err, size_t errlen)
{
    tp_buf_t b = {0}, posix = {0};
    tp_buf_puts(&b, pattern);
    /* PreparePathRegexp: mux "{name}" segments, when the braces pair up */
    size_t open = 0, close = 0;
    for (const char *p = pattern; *p; p++) {
        open += *p == '{';
        close += *p == '}';
    }
    if (open > 0 && open == close) {
        tp_buf_t out = {0};
        for (const char *p = tp_buf_cstr(&b); *p; p++) {
            const char *end = *p == '{' ? strchr(p + 1, '}') : NULL;
            if (end != NULL && end > p + 1) {
                tp_buf_puts(&out, "([^/]+)");
                p = end;
            } else {
                tp_buf_putc(&out, *p);
            }
        }
        tp_buf_free(&b);
        b = out;
    }
    if (strstr(tp_buf_cstr(&b), "/*") != NULL) {
        replace_all(&b, "/*/", "/[^/]+/");
        replace_all(&b, "/*", "/.*");
    }
    const char *s = tp_buf_cstr(&b);
    if (strncmp(s, "(?i)", 4) == 0) {
        ignore_case = 1;
        s += 4;
    }
    if (prefix && s[0] == '/')
        tp_buf_putc(&posix, '^');
    int rc = tp_re2_to_posix(s, &posix, err, errlen);
    size_t n = strlen(s);
    if (rc == 0 && suffix && (n == 0 || s[n - 1] != '$'))
        tp_buf_putc(&posix, '$');
    if (rc == 0) {
        int e = regcomp(re, tp_buf_cstr(&posix),
                        REG_EXTENDED | REG_NOSUB | (ignore_case ? REG_ICASE : 0));
        if (e != 0) {
            char why[128];
            regerror(e, re, why, sizeof(why));
            snprintf(err, errlen, "path pattern \"%s\" does not compile: %s", pattern, why);
            rc = -1;
        }
    }
    tp_buf_free(&b);
    tp_buf_free(&posix);
    return rc;
}

static int match_any(const regex_t *re, const char *const *paths, size_t npaths)
{
    for (size_t i = 0; i < npaths; i++)
        if (regexec(re, paths[i], 0, NULL, 0) == 0)
            return 1;
    return 0;
}

int tp_pathrule_match(const tp_pathrule_t *rule, const char *method, const char *const *paths,
                      size_t npaths)
{
    if (rule->method[0] != '\0' && strcmp(rule->method, method) != 0)
        return 0;
    return match_any(&rule->re, paths, npaths);
}

int tp_hdrrule_match(const tp_hdrrule_t *rule, const char *method, const char *const *paths,
                     size_t npaths)
{
    if (rule->method[0] != '\0' && strcmp(rule->method, method) != 0)
        return 0;
    return match_any(&rule->re, paths, npaths);
}

int tp_rlrule_match(const tp_rlrule_t *rule, const char *method, const char *const *paths,
                    size_t npaths)
{
    if (rule->method[0] != '\0' && strcmp(rule->method, method) != 0)
        return 0;
    return match_any(&rule->re, paths, npaths);
}

/* ---- small readers ------------------------------------------------------------------- */

static int bool_of(const cJSON *obj, const char *key)
{
    const cJSON *v = obj != NULL ? tp_json_get(obj, key) : NULL;
    return v != NULL && cJSON_IsTrue(v);
}

static int64_t int_of(const cJSON *obj, const char *key)
{
    const cJSON *v = obj != NULL ? tp_json_get(obj, key) : NULL;
    return v != NULL && cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static double dbl_of(const cJSON *obj, const char *key)
{
    const cJSON *v = obj != NULL ? tp_json_get(obj, key) : NULL;
    return v != NULL && cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int fail(build_t *B, const char *path, const char *fmt, const char *arg)
{
    char why[512];
    snprintf(why, sizeof(why), fmt, arg);
    snprintf(B->err, B->errlen, "%s: %s", path, why);
    return -1;
}

/* An HTTP method name as Tyk compares it: exact, at most 15 bytes. */
static int set_method(build_t *B, char dst[16], const char *m, const char *path)
{
    if (m == NULL)
        m = "";
    if (strlen(m) >= 16)
        return fail(B, path, "method \"%s\" is too long", m);
    snprintf(dst, 16, "%s", m);
    return 0;
}

int tp_api_time_parse(const char *s, int64_t *out)
{
    *out = 0;
    if (s == NULL || s[0] == '\0' || strcmp(s, "-1") == 0)
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%d %H:%M", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static void hdrset_add(tp_hdrset_t *h, tp_buf_t *lines, const char *name, const char *value)
{
    tp_buf_printf(lines, "%s: %s\r\n", name, value);
    h->names = tp_realloc(h->names, (h->nnames + 1) * sizeof(char *));
    h->names[h->nnames++] = tp_strdup(name);
}

/* A header name or value that would break the request head is refused. */
static int header_ok(const char *s, int value)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '\r' || *p == '\n' || (!value && (*p <= ' ' || *p == ':')))
            return 0;
    return s[0] != '\0' || value;
}

static int read_hdrmap(build_t *B, const cJSON *map, tp_hdrset_t *h, const char *path)
{
    tp_buf_t lines = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
    {
        char sub[512];
        snprintf(sub, sizeof(sub), "%s", path);
        tp_json_path_push(sub, sizeof(sub), it->string, 0);
        if (!cJSON_IsString(it) || !header_ok(it->string, 0) || !header_ok(it->valuestring, 1)) {
            tp_buf_free(&lines);
            return fail(B, sub, "%s",
                        "expected a header name and a string value without line breaks");
        }
        hdrset_add(h, &lines, it->string, it->valuestring);
        h->dynamic |=
            strstr(it->valuestring, "$tyk_") != NULL || strstr(it->valuestring, "$secret_") != NULL;
    }
    h->lines = lines.data; /* NULL when empty */
    return 0;
}

static int read_names(build_t *B, const cJSON *list, char ***out, size_t *n, const char *path)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        if (!cJSON_IsString(it) || !header_ok(it->valuestring, 0))
            return fail(B, path, "%s", "expected a list of header names");
        *out = tp_realloc(*out, (*n + 1) * sizeof(char *));
        (*out)[(*n)++] = tp_strdup(it->valuestring);
    }
    return 0;
}

/* ---- path rules --------------------------------------------------------------------- */

static tp_pathrule_t *new_rule(tp_version_t *v)
{
    v->rules = tp_realloc(v->rules, (v->nrules + 1) * sizeof(*v->rules));
    tp_pathrule_t *r = &v->rules[v->nrules];
    memset(r, 0, sizeof(*r));
    return r;
}

static int compile_rule(build_t *B, tp_version_t *v, int kind, const char *pattern,
                        const char *method, int ignore_case, const char *path)
{
    tp_pathrule_t *r = new_rule(v);
    r->kind = kind;
    if (set_method(B, r->method, method, path) < 0)
        return -1;
    char why[256];
    const tp_conf_t *c = B->conf;
    if (tp_path_pattern_compile(&r->re, pattern, c->http_server_options.enable_path_prefix_matching,
                                c->http_server_options.enable_path_suffix_matching,
                                ignore_case || B->ignore_case, why, sizeof(why)) < 0)
        return fail(B, path, "%s", why);
    v->nrules++; /* compiled: it is freed with the version */
    return 0;
}

static int reply_fields(build_t *B, tp_pathrule_t *r, int code, const char *body,
                        const cJSON *headers, const char *path)
{
    r->status = code > 0 ? code : 200;
    if (r->status < 100 || r->status > 999)
        return fail(B, path, "%s", "expected an HTTP status code");
    r->body = tp_strdup(body != NULL ? body : "");
    r->body_len = strlen(r->body);
    tp_hdrset_t h = {0};
    if (headers != NULL && cJSON_IsObject(headers) && read_hdrmap(B, headers, &h, path) < 0)
        return -1;
    r->headers = h.lines;
    for (size_t i = 0; i < h.nnames; i++)
        free(h.names[i]);
    free(h.names);
    return 0;
}

/* One entry of ignored, white_list or black_list (EndPointMeta). */
static int endpoint(build_t *B, tp_version_t *v, int kind, const cJSON *e, const char *path)
{
    if (bool_of(e, "disabled"))
        return 0;
    const char *pattern = tp_json_str(e, "path");
    if (pattern == NULL)
        return fail(B, path, "%s", "expected a \"path\"");
    int icase = bool_of(e, "ignore_case");
    const cJSON *actions = tp_json_get(e, "method_actions");
    if (kind == TP_RULE_WHITE)
        v->has_white = 1;
    if (actions == NULL || !cJSON_IsObject(actions) || actions->child == NULL)
        return compile_rule(B, v, kind, pattern, tp_json_str(e, "method"), icase, path);
    /* the legacy form: only the listed methods match, each with its action */
    const cJSON *a;
    cJSON_ArrayForEach(a, actions)
    {
        char sub[640];
        snprintf(sub, sizeof(sub), "%.500s.method_actions", path);
        tp_json_path_push(sub, sizeof(sub), a->string, 0);
        const char *action = tp_json_str(a, "action");
        int k = kind;
        if (action != NULL && strcmp(action, "reply") == 0)
            k = TP_RULE_REPLY;
        else if (action != NULL && strcmp(action, "no_action") != 0)
            k = TP_RULE_BLACK; /* Tyk: any other action blocks */
        if (compile_rule(B, v, k, pattern, a->string, icase, sub) < 0)
            return -1;
        if (k == TP_RULE_REPLY &&
            reply_fields(B, &v->rules[v->nrules - 1], (int)int_of(a, "code"),
                         tp_json_str(a, "data"), tp_json_get(a, "headers"), sub) < 0)
            return -1;
    }
    return 0;
}

static int endpoint_list(build_t *B, tp_version_t *v, int kind, const cJSON *list, const char *path)
{
    if (list == NULL || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list))
        return fail(B, path, "%s", "expected a list");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        char sub[512];
        snprintf(sub, sizeof(sub), "%s", path);
        tp_json_path_push(sub, sizeof(sub), NULL, i++);
        int rc = cJSON_IsString(e)   ? compile_rule(B, v, kind, e->valuestring, "", 0, sub)
                 : cJSON_IsObject(e) ? endpoint(B, v, kind, e, sub)
                                     : fail(B, sub, "%s", "expected an object");
        if (rc < 0)
            return -1;
        if (cJSON_IsString(e) && kind == TP_RULE_WHITE)
            v->has_white = 1;
    }
    return 0;
}

/* Calls <fn> for each enabled entry of an extended_paths list of objects
 * with a "path" (<sub>: the entry's JSON path). */
typedef int (*entry_fn)(build_t *B, tp_version_t *v, const cJSON *e, const char *pattern,
                        const char *sub);

static int path_entries(build_t *B, tp_version_t *v, const cJSON *list, const char *path,
                        entry_fn fn)
{
    if (list == NULL || !cJSON_IsArray(list))
        return 0;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        char sub[512];
        snprintf(sub, sizeof(sub), "%s", path);
        tp_json_path_push(sub, sizeof(sub), NULL, i++);
        if (!cJSON_IsObject(e) || bool_of(e, "disabled"))
            continue;
        const char *pattern = tp_json_str(e, "path");
        if (pattern == NULL)
            return fail(B, sub, "%s", "expected a \"path\"");
        if (fn(B, v, e, pattern, sub) < 0)
            return -1;
    }
    return 0;
}

/* mock_response */
static int mock_entry(build_t *B, tp_version_t *v, const cJSON *e, const char *pattern,
                      const char *sub)
{
    if (compile_rule(B, v, TP_RULE_REPLY, pattern, tp_json_str(e, "method"),
                     bool_of(e, "ignore_case"), sub) < 0)
        return -1;
    return reply_fields(B, &v->rules[v->nrules - 1], (int)int_of(e, "code"), tp_json_str(e, "body"),
                        tp_json_get(e, "headers"), sub);
}

/* transform_headers and transform_response_headers */
static int hdr_rule(build_t *B, tp_hdrrule_t **rules, size_t *n, const cJSON *e,
                    const char *pattern, const char *sub)
{
    *rules = tp_realloc(*rules, (*n + 1) * sizeof(**rules));
    tp_hdrrule_t *r = &(*rules)[*n];
    memset(r, 0, sizeof(*r));
    char why[256];
    const tp_conf_t *c = B->conf;
    if (set_method(B, r->method, tp_json_str(e, "method"), sub) < 0)
        return -1;
    if (tp_path_pattern_compile(&r->re, pattern, c->http_server_options.enable_path_prefix_matching,
                                c->http_server_options.enable_path_suffix_matching, B->ignore_case,
                                why, sizeof(why)) < 0)
        return fail(B, sub, "%s", why);
    (*n)++;
    char sub2[560];
    snprintf(sub2, sizeof(sub2), "%s.add_headers", sub);
    const cJSON *add = tp_json_get(e, "add_headers");
    if (add != NULL && cJSON_IsObject(add) && read_hdrmap(B, add, &r->add, sub2) < 0)
        return -1;
    snprintf(sub2, sizeof(sub2), "%s.delete_headers", sub);
    const cJSON *del = tp_json_get(e, "delete_headers");
    if (del != NULL && cJSON_IsArray(del) && read_names(B, del, &r->del, &r->ndel, sub2) < 0)
        return -1;
    return 0;
}

static int header_entry(build_t *B, tp_version_t *v, const cJSON *e, const char *pattern,
                        const char *sub)
{
    return hdr_rule(B, &v->hdr_rules, &v->nhdr_rules, e, pattern, sub);
}

static int resp_header_entry(build_t *B, tp_version_t *v, const cJSON *e, const char *pattern,
                             const char *sub)
{
    return hdr_rule(B, &v->resp_rules, &v->nresp_rules, e, pattern, sub);
}

/* Tyk's rate-limit-<HashKey(name)> for an API-wide limit named <name>. */
static char *api_limit_key(const build_t *B, const char *name)
{
    char hex[TP_KEYHASH_HEX_MAX];
    if (B->conf->hash_keys)
        tp_keyhash_hex(NULL, name, strlen(name), hex);
    tp_buf_t b = {0};
    tp_buf_printf(&b, "rate-limit-%s", B->conf->hash_keys ? hex : name);
    char *k = tp_strdup(tp_buf_cstr(&b));
    tp_buf_free(&b);
    return k;
}

/* extended_paths.rate_limit: an API-wide limit on one endpoint. */
static int rate_entry(build_t *B, tp_version_t *v, const cJSON *e, const char *pattern,
                      const char *sub)
{
    double rate = dbl_of(e, "rate"), per = dbl_of(e, "per");
    if (rate <= 0 || per <= 0) /* RateLimitMeta.Valid */
        return 0;
    v->rl_rules = tp_realloc(v->rl_rules, (v->nrl_rules + 1) * sizeof(*v->rl_rules));
    tp_rlrule_t *r = &v->rl_rules[v->nrl_rules];
    memset(r, 0, sizeof(*r));
    char why[256];
    const tp_conf_t *c = B->conf;
    const char *method = tp_json_str(e, "method");
    if (set_method(B, r->method, method, sub) < 0)
        return -1;
    if (tp_path_pattern_compile(&r->re, pattern, c->http_server_options.enable_path_prefix_matching,
                                c->http_server_options.enable_path_suffix_matching, B->ignore_case,
                                why, sizeof(why)) < 0)
        return fail(B, sub, "%s", why);
    v->nrl_rules++;
    r->rate = rate;
    r->per = per;
    /* apilimiter-<org><api>-<HashStr("<METHOD>:<path>")> */
    char hex[TP_KEYHASH_HEX_MAX];
    tp_buf_t b = {0};
    tp_buf_printf(&b, "%s:%s", method != NULL ? method : "", pattern);
    tp_keyhash_hex(NULL, b.data, b.len, hex);
    b.len = 0;
    tp_buf_printf(&b, "apilimiter-%s%s-%s", B->org_id, B->api_id, hex);
    r->key = api_limit_key(B, tp_buf_cstr(&b));
    tp_buf_free(&b);
    return 0;
}

/* ---- versions ----------------------------------------------------------------------- */

static int version(build_t *B, tp_version_t *v, const char *key, const cJSON *info,
                   const char *path)
{
    const char *name = tp_json_str(info, "name");
    v->name = tp_strdup(name != NULL && name[0] != '\0' ? name : key);
    const char *exp = tp_json_str(info, "expires");
    if (tp_api_time_parse(exp, &v->expires) < 0) {
        /* Tyk cannot parse it either, and then treats the version as expired */
        tp_log_warn("%s.expires: \"%s\" is not a \"2006-01-02 15:04\" time: the version is "
                    "treated as expired, as Tyk does",
                    path, exp);
        v->expires = 1;
    }
    B->ignore_case = B->conf->ignore_endpoint_case || bool_of(info, "ignore_endpoint_case");
    char sub[512];
    const cJSON *ext = tp_json_get(info, "extended_paths");
    int use_ext = bool_of(info, "use_extended_paths");
    if (use_ext && ext != NULL && cJSON_IsObject(ext)) {
        static const struct {
            const char *key;
            int kind;
        } lists[] = {{"ignored", TP_RULE_IGNORED},
                     {"black_list", TP_RULE_BLACK},
                     {"white_list", TP_RULE_WHITE}};
        snprintf(sub, sizeof(sub), "%s.extended_paths.mock_response", path);
        if (path_entries(B, v, tp_json_get(ext, "mock_response"), sub, mock_entry) < 0)
            return -1;
        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
            snprintf(sub, sizeof(sub), "%s.extended_paths.%s", path, lists[i].key);
            if (endpoint_list(B, v, lists[i].kind, tp_json_get(ext, lists[i].key), sub) < 0)
                return -1;
        }
        snprintf(sub, sizeof(sub), "%s.extended_paths.transform_headers", path);
        if (path_entries(B, v, tp_json_get(ext, "transform_headers"), sub, header_entry) < 0)
            return -1;
        snprintf(sub, sizeof(sub), "%s.extended_paths.transform_response_headers", path);
        if (path_entries(B, v, tp_json_get(ext, "transform_response_headers"), sub,
                         resp_header_entry) < 0)
            return -1;
        snprintf(sub, sizeof(sub), "%s.extended_paths.rate_limit", path);
        if (path_entries(B, v, tp_json_get(ext, "rate_limit"), sub, rate_entry) < 0)
            return -1;
        if (v->nrl_rules > 0)
            B->endpoint_limits = 1;
    } else {
        const cJSON *paths = tp_json_get(info, "paths");
        static const struct {
            const char *key;
            int kind;
        } lists[] = {{"ignored", TP_RULE_IGNORED},
                     {"black_list", TP_RULE_BLACK},
                     {"white_list", TP_RULE_WHITE}};
        for (size_t i = 0; paths != NULL && i < sizeof(lists) / sizeof(lists[0]); i++) {
            snprintf(sub, sizeof(sub), "%s.paths.%s", path, lists[i].key);
            if (endpoint_list(B, v, lists[i].kind, tp_json_get(paths, lists[i].key), sub) < 0)
                return -1;
        }
    }
    if (!bool_of(info, "global_headers_disabled")) {
        const cJSON *gh = tp_json_get(info, "global_headers");
        snprintf(sub, sizeof(sub), "%s.global_headers", path);
        if (gh != NULL && cJSON_IsObject(gh) && read_hdrmap(B, gh, &v->global_add, sub) < 0)
            return -1;
        const cJSON *gr = tp_json_get(info, "global_headers_remove");
        snprintf(sub, sizeof(sub), "%s.global_headers_remove", path);
        if (gr != NULL && cJSON_IsArray(gr) &&
            read_names(B, gr, &v->global_del, &v->nglobal_del, sub) < 0)
            return -1;
    }
    if (!bool_of(info, "global_response_headers_disabled")) {
        const cJSON *grh = tp_json_get(info, "global_response_headers");
        snprintf(sub, sizeof(sub), "%s.global_response_headers", path);
        if (grh != NULL && cJSON_IsObject(grh) && read_hdrmap(B, grh, &v->gresp_add, sub) < 0)
            return -1;
        const cJSON *grr = tp_json_get(info, "global_response_headers_remove");
        snprintf(sub, sizeof(sub), "%s.global_response_headers_remove", path);
        if (grr != NULL && cJSON_IsArray(grr) &&
            read_names(B, grr, &v->gresp_del, &v->ngresp_del, sub) < 0)
            return -1;
    }
    return tp_api_mw_build(info, B->conf, B->ignore_case, path, &v->mw, B->err, B->errlen);
}

static void pick_only(tp_api_rules_t *r)
{
    /* APISpec.Version for a non-versioned API; with no version at all, an
     * empty one (no rules), as Tyk 5.8 finds it */
    static tp_version_t empty = {.name = ""};
    if (r->nversions == 0) {
        r->only = &empty;
        return;
    }
    if (r->nversions == 1) {
        r->only = &r->versions[0];
        return;
    }
    static const char *const names[] = {"Default", "default", ""};
    const tp_version_t *found = NULL;
    int count = 0;
    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        const tp_version_t *v = tp_api_rules_version(r, names[n], strlen(names[n]));
        if (v != NULL) {
            count++;
            if (found == NULL)
                found = v;
        }
    }
    if (count == 1)
        r->only = found;
    else
        r->only_error = count == 0 ? "No default API version for this non-versioned API found"
                                   : "Ambiguous default API version for this non-versioned API";
}

const tp_version_t *tp_api_rules_version(const tp_api_rules_t *r, const char *name, size_t n)
{
    for (size_t i = 0; i < r->nversions; i++)
        if (strlen(r->versions[i].name) == n && memcmp(r->versions[i].name, name, n) == 0)
            return &r->versions[i];
    return NULL;
}

void tp_authloc_read(const cJSON *def, const char *method, tp_authloc_t *loc)
{
    const cJSON *configs = tp_json_get(def, "auth_configs");
    const cJSON *auth = configs != NULL ? tp_json_get(configs, method) : NULL;
    if (auth == NULL || !cJSON_IsObject(auth))
        auth = tp_json_get(def, "auth");
    const char *h = tp_json_str(auth, "auth_header_name");
    loc->header = tp_strdup(h != NULL && h[0] != '\0' ? h : "Authorization");
    loc->disable_header = bool_of(auth, "disable_header");
    loc->use_param = bool_of(auth, "use_param");
    const char *pn = tp_json_str(auth, "param_name");
    loc->param_name = tp_strdup(pn != NULL && pn[0] != '\0' ? pn : loc->header);
    loc->use_cookie = bool_of(auth, "use_cookie");
    const char *cn = tp_json_str(auth, "cookie_name");
    loc->cookie_name = tp_strdup(cn != NULL && cn[0] != '\0' ? cn : loc->header);
}

void tp_authloc_free(tp_authloc_t *loc)
{
    free(loc->header);
    free(loc->param_name);
    free(loc->cookie_name);
    memset(loc, 0, sizeof(*loc));
}

int tp_api_rules_build(const cJSON *def, const tp_conf_t *conf, tp_api_rules_t **out, char *err,
                       size_t errlen)
{
    build_t B = {conf, err, errlen, 0, "", "", 0};
    const char *org_id = tp_json_str(def, "org_id"), *api_id = tp_json_str(def, "api_id");
    B.org_id = org_id != NULL ? org_id : "";
    B.api_id = api_id != NULL ? api_id : "";
    *out = NULL;
    tp_api_rules_t *r = tp_calloc(1, sizeof(*r));

    tp_authloc_read(def, "authToken", &r->auth);
    r->context_vars = bool_of(def, "enable_context_vars");
    static const char *const idnames[] = {"", "auth_token", "basic_auth_user", "hmac_key",
                                          "jwt_claim"};
    const char *bi = tp_json_str(def, "base_identity_provided_by");
    r->base_identity = bi == NULL || bi[0] == '\0' ? TP_ID_ANY : TP_ID_OTHER;
    for (int i = 1; bi != NULL && i < (int)(sizeof(idnames) / sizeof(idnames[0])); i++)
        if (strcmp(bi, idnames[i]) == 0)
            r->base_identity = i;

    const cJSON *vdef = tp_json_get(def, "definition");
    const char *loc = tp_json_str(vdef, "location");
    r->location = loc != NULL && strcmp(loc, "url-param") == 0 ? TP_VLOC_PARAM
                  : loc != NULL && strcmp(loc, "url") == 0     ? TP_VLOC_URL
                                                               : TP_VLOC_HEADER;
    const char *vkey = tp_json_str(vdef, "key");
    r->version_key = tp_strdup(vkey != NULL ? vkey : "");
    r->strip_versioning_data =
        bool_of(vdef, "strip_versioning_data") || bool_of(vdef, "strip_path");

    r->fallback_to_default = bool_of(vdef, "fallback_to_default");
    const char *up = tp_json_str(vdef, "url_versioning_pattern");
    if (up != NULL && up[0] != '\0' && r->location == TP_VLOC_URL) {
        tp_buf_t posix = {0};
        int rc = tp_re2_to_posix(up, &posix, err, errlen);
        if (rc == 0 &&
            regcomp(&r->url_pattern, tp_buf_cstr(&posix), REG_EXTENDED | REG_NOSUB) != 0) {
            snprintf(err, errlen, "$.definition.url_versioning_pattern: \"%s\" does not compile",
                     up);
            rc = -1;
        }
        tp_buf_free(&posix);
        if (rc < 0)
            goto err;
        r->has_url_pattern = 1;
    }

    const cJSON *vdata = tp_json_get(def, "version_data");
    r->not_versioned = vdata == NULL || bool_of(vdata, "not_versioned");
    const char *dv = tp_json_str(vdata, "default_version");
    r->default_version = tp_strdup(dv != NULL ? dv : "");
    const char *exp = tp_json_str(def, "expiration");
    if (tp_api_time_parse(exp, &r->expiration) < 0)
        r->expiration = 1; /* as an unparsable version expiry: expired */

    const cJSON *versions = vdata != NULL ? tp_json_get(vdata, "versions") : NULL;
    if (versions != NULL && cJSON_IsObject(versions)) {
        size_t n = (size_t)cJSON_GetArraySize(versions);
        r->versions = tp_calloc(n ? n : 1, sizeof(*r->versions));
        const cJSON *info;
        cJSON_ArrayForEach(info, versions)
        {
            char path[512] = "$.version_data.versions";
            tp_json_path_push(path, sizeof(path), info->string, 0);
            if (!cJSON_IsObject(info)) {
                fail(&B, path, "%s", "expected an object");
                goto err;
            }
            tp_version_t *v = &r->versions[r->nversions++];
            if (version(&B, v, info->string, info, path) < 0)
                goto err;
        }
    }
    if (r->not_versioned)
        pick_only(r);

    r->session_lifetime = int_of(def, "session_lifetime");
    r->session_lifetime_respects_key_expiration =
        bool_of(def, "session_lifetime_respects_key_expiration");
    r->dont_set_quota_on_create = bool_of(def, "dont_set_quota_on_create");
    r->disable_quota = bool_of(def, "disable_quota");
    r->disable_rate_limit = bool_of(def, "disable_rate_limit");
    const cJSON *grl = tp_json_get(def, "global_rate_limit");
    if (grl != NULL && cJSON_IsObject(grl) && !bool_of(grl, "disabled")) {
        r->global.rate = dbl_of(grl, "rate");
        r->global.per = dbl_of(grl, "per");
    }
    if (r->global.rate > 0 && r->global.per > 0) {
        tp_buf_t b = {0};
        tp_buf_printf(&b, "apilimiter-%s%s", B.org_id, B.api_id);
        r->global.key = api_limit_key(&B, tp_buf_cstr(&b));
        tp_buf_free(&b);
    } else {
        r->global.rate = 0;
    }
    r->has_api_limits = !r->disable_rate_limit && (r->global.rate > 0 || B.endpoint_limits);
    r->strip_auth_data = bool_of(def, "strip_auth_data");
    if (tp_api_mw_cache_build(def, &r->cache, err, errlen) < 0)
        goto err;
    for (size_t i = 0; r->cache != NULL && i < r->nversions; i++) {
        const tp_api_mw_t *mw = r->versions[i].mw;
        for (size_t j = 0; mw != NULL && j < mw->ncache; j++) {
            const char *m = mw->cache[j].m.method;
            r->cache->body_hash |=
                !mw->cache[j].safe &&
                (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0);
        }
    }
    *out = r;
    return 0;
err:
    tp_api_rules_free(r);
    return -1;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_hdrset(tp_hdrset_t *h)
{
    free(h->lines);
    free_names(h->names, h->nnames);
}

void tp_api_rules_free(tp_api_rules_t *r)
{
    if (r == NULL)
        return;
    tp_api_mw_cache_free(r->cache);
    for (size_t i = 0; i < r->nversions; i++) {
        tp_version_t *v = &r->versions[i];
        for (size_t j = 0; j < v->nrules; j++) {
            regfree(&v->rules[j].re);
            free(v->rules[j].body);
            free(v->rules[j].headers);
        }
        free(v->rules);
        for (size_t j = 0; j < v->nhdr_rules; j++) {
            regfree(&v->hdr_rules[j].re);
            free_hdrset(&v->hdr_rules[j].add);
            free_names(v->hdr_rules[j].del, v->hdr_rules[j].ndel);
        }
        free(v->hdr_rules);
        for (size_t j = 0; j < v->nresp_rules; j++) {
            regfree(&v->resp_rules[j].re);
            free_hdrset(&v->resp_rules[j].add);
            free_names(v->resp_rules[j].del, v->resp_rules[j].ndel);
        }
        free(v->resp_rules);
        free_hdrset(&v->gresp_add);
        free_names(v->gresp_del, v->ngresp_del);
        tp_api_mw_free(v->mw);
        for (size_t j = 0; j < v->nrl_rules; j++) {
            regfree(&v->rl_rules[j].re);
            free(v->rl_rules[j].key);
        }
        free(v->rl_rules);
        free_hdrset(&v->global_add);
        free_names(v->global_del, v->nglobal_del);
        free(v->name);
    }
    free(r->versions);
    free(r->global.key);
    tp_authloc_free(&r->auth);
    free(r->version_key);
    free(r->default_version);
    if (r->has_url_pattern)
        regfree(&r->url_pattern);
    free(r);
}
