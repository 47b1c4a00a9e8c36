/*
 * conf/tp_api_mw.h: the extended_paths middleware of a version, ready to
 * evaluate: url_rewrites (with triggers), method_transforms, size_limits
 * (and the version's global_size_limit), internal and track_endpoints; and
 * the load-time refusal of the entries this gateway does not run yet, so
 * an API that relies on one is not served as if it did not.
 *
 * Used by: tp_api_rules.c builds one per version (master to validate,
 * workers per generation to run: compiled regexes are process memory);
 * the worker stages read it through req->version->mw. Read-only once built.
 *
 * Matching: each entry has a path (Tyk's path patterns, tp_path_pattern_
 * compile) and a method compared exactly, as Tyk's URLSpec matching does;
 * an entry without a method matches no request, as in Tyk.
 */
#ifndef TP_API_MW_H
#define TP_API_MW_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tp_conf.h"

typedef struct tp_epmatch_s {
    char method[16];
    regex_t re;
} tp_epmatch_t;

/* Does <m> match <method> and one of the <n> candidate paths? */
int tp_epmatch(const tp_epmatch_t *m, const char *method, const char *const *paths, size_t n);

#define TP_RW_GROUPS 10 /* $0..$9 */

enum {
    TP_TRIG_HEADER,       /* header_matches */
    TP_TRIG_QUERY,        /* query_val_matches */
    TP_TRIG_PATH_PART,    /* path_part_matches */
    TP_TRIG_SESSION_META, /* session_meta_matches */
    TP_TRIG_CONTEXT,      /* request_context_matches */
    TP_TRIG_PAYLOAD,      /* payload_matches: the request body */
    TP_TRIG_KINDS
};

/* A regular expression with Go's group numbers: gmap[i] is the POSIX
 * group of RE2 group i (non-capturing groups become POSIX groups too). */
typedef struct tp_rx_s {
    regex_t re;
    int ngroups; /* RE2 groups, $0 included, at most TP_RW_GROUPS */
    uint8_t gmap[TP_RW_GROUPS];
    size_t nposix; /* POSIX groups + 1 (regmatch_t entries to ask for) */
} tp_rx_t;

typedef struct tp_trigopt_s {
    int kind;
    char *name; /* header (canonical), parameter, meta or context key; path parts: the option's name
                 */
    tp_rx_t rx;
    int reverse;
} tp_trigopt_t;

typedef struct tp_trigger_s {
    int all; /* on: "all" (every configured kind must match), else "any" */
    tp_trigopt_t *opts;
    size_t nopts;
    int kinds[TP_TRIG_KINDS]; /* options of each kind */
    char *rewrite_to;
} tp_trigger_t;

typedef struct tp_rewrite_s {
    tp_epmatch_t m;
    tp_rx_t rx; /* match_pattern, on the path and query as received */
    char *rewrite_to;
    tp_trigger_t *trig;
    size_t ntrig;
} tp_rewrite_t;

typedef struct tp_mtrans_s {
    tp_epmatch_t m;
    char to[16]; /* upper-cased; Tyk answers 405 for one it does not allow */
} tp_mtrans_t;

typedef struct tp_sizelim_s {
    tp_epmatch_t m;
    int64_t limit;
} tp_sizelim_t;

/* validate_json: the body against a JSON schema (draft 4, as gojsonschema). */
typedef struct tp_jsonvalid_s {
    tp_epmatch_t m;
    struct tp_jschema_s *schema;
    int error_code; /* error_response_code, Tyk's 422 when unset */
} tp_jsonvalid_t;

/* transform: the request body through a Go template (tp_tmpl.h). */
typedef struct tp_transform_s {
    tp_epmatch_t m;
    struct tp_tmpl_s *tmpl;
    int xml;     /* input_type "xml": the body is read as mxj reads XML */
    int session; /* enable_session: ._tyk_meta is the session's meta_data */
} tp_transform_t;

/* A response cache endpoint: a legacy extended_paths.cache path (safe
 * methods, the API's settings) or an advance_cache_config entry. */
typedef struct tp_cachepath_s {
    tp_epmatch_t m;
    int safe;       /* a legacy path: GET, HEAD and OPTIONS (Tyk's SAFE_METHODS) */
    int has_key_rx; /* cache_key_regex: the body's first match is hashed, not the body */
    tp_rx_t key_rx;
    int *codes; /* cache_response_codes; none: the API's */
    size_t ncodes;
    int64_t timeout; /* seconds; 0: the API's cache_timeout */
} tp_cachepath_t;

/* cache_options of an API that has enable_cache (TYK-COMPAT 21.8). */
typedef struct tp_cacheopts_s {
    int64_t timeout; /* cache_timeout, seconds */
    int all_safe;    /* cache_all_safe_requests */
    int *codes;      /* cache_response_codes; none: every code */
    size_t ncodes;
    int upstream_control; /* enable_upstream_cache_control */
    char *ttl_header;     /* cache_control_ttl_header, Tyk's default when unset */
    char **by_headers;    /* cache_by_headers, as written */
    size_t nby_headers;
    int body_hash; /* some endpoint caches POST, PUT or PATCH: the body is read first */
} tp_cacheopts_t;

/* Does cache endpoint <c> take <method> (and one of the <n> paths)? */
int tp_cachepath_match(const tp_cachepath_t *c, const char *method, const char *const *paths,
                       size_t n);

/* The cache_options of <def>: NULL when enable_cache is off, or on -1 a
 * JSON path and the reason in <err>. */
int tp_api_mw_cache_build(const cJSON *def, tp_cacheopts_t **out, char *err, size_t errlen);
void tp_api_mw_cache_free(tp_cacheopts_t *c);

/* extended_paths.virtual: a JavaScript function answers (tp_jsmw.c). */
typedef struct tp_virtual_s {
    tp_epmatch_t m;
    char *fn; /* response_function_name */
    unsigned use_session : 1;
    unsigned proxy_on_error : 1;
} tp_virtual_t;

typedef struct tp_api_mw_s {
    tp_rewrite_t *rw;
    size_t nrw;
    tp_mtrans_t *mt;
    size_t nmt;
    tp_sizelim_t *sl;
    size_t nsl;
    int64_t global_size; /* global_size_limit, 0: none */
    tp_epmatch_t *internal;
    size_t ninternal;
    tp_epmatch_t *track; /* track_endpoints ... */
    char **track_paths;  /* ... and their "path", what the analytics record names */
    size_t ntrack;
    tp_jsonvalid_t *vj; /* validate_json */
    size_t nvj;
    tp_transform_t *tf; /* transform */
    size_t ntf;
    tp_transform_t *rtf; /* transform_response */
    size_t nrtf;
    tp_cachepath_t *cache; /* extended_paths.cache, then advance_cache_config */
    size_t ncache;
    tp_virtual_t *virt; /* virtual endpoints */
    size_t nvirt;
    int payload_triggers; /* a url_rewrites trigger has payload_matches: the body is read */
    int loops;            /* a url_rewrites target is tyk:// (an internal loop) */
} tp_api_mw_t;

/* Builds the middleware of version <info> (its JSON path <path>) under
 * <conf>; <ignore_case> is the version's endpoint case rule. Returns 0
 * with *out NULL when the version has none, or -1 with the JSON path and
 * the reason in <err> (a pattern that does not compile, an entry this
 * gateway does not support). */
int tp_api_mw_build(const cJSON *info, const tp_conf_t *conf, int ignore_case, const char *path,
                    tp_api_mw_t **out, char *err, size_t errlen);
void tp_api_mw_free(tp_api_mw_t *mw);

/* Compiles Go regular expression <pattern> with its group numbers kept. */
int tp_rx_compile(tp_rx_t *rx, const char *pattern, int icase, char *err, size_t errlen);
/* Matches <s>: 1 with the RE2 groups in <g> (rm_so -1 for a group that
 * took no part), 0 for no match. */
int tp_rx_exec(const tp_rx_t *rx, const char *s, regmatch_t g[TP_RW_GROUPS]);
/* The same where <s> is not the start of the text (<notbol>: ^ does not
 * match there), for the matches after the first. */
int tp_rx_exec_at(const tp_rx_t *rx, const char *s, int notbol, regmatch_t g[TP_RW_GROUPS]);

#endif
