/*
 * conf/tp_api_rules.h: what an API definition asks of each request, ready
 * to evaluate: where the key is (token auth), how the version is found,
 * each version's expiry, path rules (ignored, black and white lists, mock
 * replies) and header changes (global_headers, transform_headers).
 *
 * Used by: the master builds the rules once per definition to validate it
 * (a pattern that does not compile rejects the definition with its JSON
 * path); workers build them lazily, per generation, from the definition's
 * JSON the first time an API is requested (compiled regexes are process
 * memory, so they cannot live in shared memory). Read-only once built.
 *
 * Path patterns follow Tyk (TYK-COMPAT 3.6): "{name}" is one segment, "/ *"
 * (without the space) anything, the rest is a regular expression (Go's RE2 syntax, translated
 * to POSIX extended syntax; what cannot be translated is rejected rather
 * than matched differently). Without enable_path_prefix_matching and
 * enable_path_suffix_matching a pattern matches anywhere in the path.
 */
#ifndef TP_API_RULES_H
#define TP_API_RULES_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_conf.h"

enum {
    TP_RULE_IGNORED = 1, /* no auth, rate limit or quota */
    TP_RULE_BLACK,       /* 403 Requested endpoint is forbidden */
    TP_RULE_WHITE,       /* allowed; anything unmatched is forbidden */
    TP_RULE_REPLY,       /* answered by the gateway (mock, method_actions "reply") */
};

enum { TP_VLOC_HEADER = 1, TP_VLOC_PARAM, TP_VLOC_URL };

/* "Name: value\r\n" lines, and the names they set (to drop the client's). */
typedef struct tp_hdrset_s {
    char *lines;
    char **names;
    size_t nnames;
    int dynamic; /* a value names $tyk_context, $tyk_meta or $secret_ variables */
} tp_hdrset_t;

typedef struct tp_pathrule_s {
    int kind;
    char method[16]; /* "" matches every method */
    regex_t re;
    int status; /* TP_RULE_REPLY */
    char *body; /* TP_RULE_REPLY */
    size_t body_len;
    char *headers; /* TP_RULE_REPLY: "Name: value\r\n" lines */
} tp_pathrule_t;

/* transform_headers: for matching requests, drop and add headers. */
typedef struct tp_hdrrule_s {
    char method[16];
    regex_t re;
    tp_hdrset_t add;
    char **del;
    size_t ndel;
} tp_hdrrule_t;

/* An API-wide rate limit (global_rate_limit, extended_paths.rate_limit):
 * <rate> requests per <per> seconds for all callers together, counted
 * under <key> (Tyk's rate-limit-<HashKey("apilimiter-"+org+api...)>). */
typedef struct tp_rlrule_s {
    char method[16]; /* "" matches every method */
    regex_t re;      /* endpoint rules only */
    double rate, per;
    char *key;
} tp_rlrule_t;

typedef struct tp_version_s {
    char *name;
    int64_t expires;      /* unix seconds; 0 never */
    tp_pathrule_t *rules; /* in Tyk's order: replies, ignored, black, white */
    size_t nrules;
    int has_white;
    tp_hdrset_t global_add; /* global_headers */
    char **global_del;      /* global_headers_remove */
    size_t nglobal_del;
    tp_hdrrule_t *hdr_rules;
    size_t nhdr_rules;
    tp_rlrule_t *rl_rules; /* extended_paths.rate_limit, in order */
    size_t nrl_rules;
    /* the response's: transform_response_headers, then the global ones */
    tp_hdrrule_t *resp_rules;
    size_t nresp_rules;
    tp_hdrset_t gresp_add; /* global_response_headers */
    char **gresp_del;      /* global_response_headers_remove */
    size_t ngresp_del;
    struct tp_api_mw_s *mw; /* rewrites, method transforms, size limits...; NULL: none */
} tp_version_t;

/* Where a credential is in a request (Tyk's AuthConfig, TYK-COMPAT 3.2):
 * auth_configs.<method>, else the deprecated "auth" object. */
typedef struct tp_authloc_s {
    char *header; /* auth_header_name, default "Authorization" */
    int disable_header;
    int use_param;
    char *param_name; /* default: the header's name */
    int use_cookie;
    char *cookie_name; /* default: the header's name */
} tp_authloc_t;

/* Reads auth_configs.<method> of <def> (else "auth") into <loc>. */
void tp_authloc_read(const cJSON *def, const char *method, tp_authloc_t *loc);
void tp_authloc_free(tp_authloc_t *loc);

/* base_identity_provided_by: which auth method's session the request
 * keeps when several run (the others only check). */
enum { TP_ID_ANY, TP_ID_TOKEN, TP_ID_BASIC, TP_ID_HMAC, TP_ID_JWT, TP_ID_OTHER };

typedef struct tp_api_rules_s {
    tp_authloc_t auth;   /* token auth: auth_configs.authToken, else auth */
    int base_identity;   /* TP_ID_*; TP_ID_ANY when unset: each method's replaces the last */
    int strip_auth_data; /* StripAuth: header and parameter (not the cookie) */
    int context_vars;    /* enable_context_vars: $tyk_context.* has the request's data */

    /* versioning */
    int not_versioned;
    int location; /* TP_VLOC_* */
    char *version_key;
    int strip_versioning_data;
    char *default_version;
    int fallback_to_default; /* an unknown version name means default_version */
    int has_url_pattern;     /* url_versioning_pattern: which segments are versions */
    regex_t url_pattern;
    int64_t expiration; /* non-versioned APIs: unix seconds, 0 never */
    tp_version_t *versions;
    size_t nversions;
    const tp_version_t *only; /* not versioned: the version used, NULL if none or ambiguous */
    const char *only_error;   /* ...and why not */

    /* sessions */
    int64_t session_lifetime;
    int session_lifetime_respects_key_expiration;
    int dont_set_quota_on_create;
    int disable_quota;

    /* rate limits */
    int disable_rate_limit;
    int has_api_limits; /* a global limit or endpoint limits (RateLimitForAPI enabled) */
    tp_rlrule_t global; /* rate 0: none */

    struct tp_cacheopts_s *cache; /* cache_options with enable_cache, else NULL */
} tp_api_rules_t;

/* Builds the rules of definition <def> (a classic API definition) under
 * the global settings in <conf>. Returns 0, or -1 with the JSON path and
 * reason in <err>. The caller frees *out with tp_api_rules_free. */
int tp_api_rules_build(const cJSON *def, const tp_conf_t *conf, tp_api_rules_t **out, char *err,
                       size_t errlen);
void tp_api_rules_free(tp_api_rules_t *r);

/* The version named <name> (exact), or NULL. */
const tp_version_t *tp_api_rules_version(const tp_api_rules_t *r, const char *name, size_t n);

/* Does <rule> (or a header rule) apply to <method> and any of the <npaths>
 * candidate paths (NUL-terminated)? */
int tp_pathrule_match(const tp_pathrule_t *rule, const char *method, const char *const *paths,
                      size_t npaths);
int tp_hdrrule_match(const tp_hdrrule_t *rule, const char *method, const char *const *paths,
                     size_t npaths);
int tp_rlrule_match(const tp_rlrule_t *rule, const char *method, const char *const *paths,
                    size_t npaths);

/* Go's RE2 syntax as POSIX extended syntax, for what paths use (\d, (?:),
 * lazy quantifiers); other RE2-only constructs: -1 with the reason. */
int tp_re2_to_posix(const char *in, tp_buf_t *out, char *err, size_t errlen);
/* Compiles Tyk path pattern <pattern> as Tyk does (TYK-COMPAT 3.6). Used
 * for allowed_urls too. Returns 0, or -1 with the reason in <err>. */
int tp_path_pattern_compile(regex_t *re, const char *pattern, int prefix, int suffix,
                            int ignore_case, char *err, size_t errlen);

/* Parses Tyk's "2006-01-02 15:04" (UTC) into unix seconds; "" and "-1"
 * mean never (0). Returns -1 when malformed. */
int tp_api_time_parse(const char *s, int64_t *out);

#endif
