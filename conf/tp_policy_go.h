/*
 * conf/tp_policy_go.h: what tp_policy_apply.c (Service.Apply) and
 * tp_policy_merge.c (the merges of util.go) share: cJSON read as Go's
 * encoding/json reads it, Tyk's APILimit, and the canonical access
 * definitions (objects with Go's member names, built from a field table).
 * Internal to those two files.
 */
#ifndef TP_POLICY_GO_H
#define TP_POLICY_GO_H

#include <limits.h>
#include <string.h>

#include "tp_json.h"

/* ---- reading values with Go's types --------------------------------------- */

static inline const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_IsObject(obj) ? tp_json_get(obj, key) : NULL;
    return v != NULL && !cJSON_IsNull(v) ? v : NULL;
}

static inline double num(const cJSON *obj, const char *key)
{
    const cJSON *v = get(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static inline long long inum(const cJSON *obj, const char *key)
{
    double d = num(obj, key);
    /* Go refuses such numbers for int64 fields; clamp rather than overflow */
    if (d >= 9.2233720368547758e18)
        return LLONG_MAX;
    if (d <= -9.2233720368547758e18)
        return LLONG_MIN;
    return (long long)d;
}

static inline int flag(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(get(obj, key));
}

static inline const char *str(const cJSON *obj, const char *key)
{
    const cJSON *v = get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* <o> when it is an object, else NULL: what a Go map field decodes from. */
static inline const cJSON *members(const cJSON *o)
{
    return cJSON_IsObject(o) ? o : NULL;
}

/* Is <m> the last member of its object with its exact name? A Go map keeps
 * the last of duplicate keys. */
static inline int last_of_name(const cJSON *m)
{
    for (const cJSON *n = m->next; n != NULL; n = n->next)
        if (strcmp(n->string, m->string) == 0)
            return 0;
    return 1;
}

static inline cJSON *mem(const cJSON *c, const char *key)
{
    return c != NULL ? cJSON_GetObjectItemCaseSensitive(c, key) : NULL;
}

/* Detaches member <key> of canonical <c> (caller owns it) / gives it back. */
static inline cJSON *take(cJSON *c, const char *key)
{
    return cJSON_DetachItemFromObjectCaseSensitive(c, key);
}

static inline void give(cJSON *c, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(c, key);
    if (v != NULL)
        cJSON_AddItemToObject(c, key, v);
}

static inline cJSON *dup(const cJSON *v)
{
    return v != NULL ? cJSON_Duplicate(v, 1) : NULL;
}

/* ---- rate limits ----------------------------------------------------------- */

/* user.APILimit; set_by is Go's `json:"-"` SetBy, never written out. */
typedef struct {
    double rate, per, throttle_interval;
    const cJSON *smoothing; /* borrowed; NULL is Go's nil */
    long long throttle_retry_limit, max_query_depth, quota_max, quota_renews, quota_remaining,
        quota_renewal_rate;
    const char *set_by; /* borrowed; NULL or "" when unset */
} pa_limit_t;

/* user.RateLimit.Duration of <rate> requests per <per> seconds. */
long long pa_duration(double rate, double per);
/* util.go greaterThanInt64: -1 means unlimited and beats everything. */
int pa_gt_unlimited(long long a, long long b);
void pa_limit_read(const cJSON *l, pa_limit_t *out);
/* APILimit.IsEmpty */
int pa_limit_empty(const pa_limit_t *l);

/* ---- canonical access definitions ----------------------------------------- */

enum { K_STR, K_NUM, K_BOOL, K_STRS, K_OBJ, K_LIST, K_RAW, K_LIMIT };
/* When a field is left out: never, Go's omitempty, Go's omitzero. */
enum { O_NO, O_EMPTY, O_ZERO };

/* One member of a Go struct: its JSON name, its kind, how it is omitted in
 * the full form (5.8's tags, master's for fields 5.8 lacks) and in master's. */
typedef struct pa_field_s {
    const char *name;
    unsigned char kind, full, omit;
    const struct pa_field_s *sub;
} pa_field_t;

/* user.AccessDefinition and its MCP access rules */
extern const pa_field_t pa_f_access[];
extern const pa_field_t pa_f_mcp[];

/* The known members of <in> under Go's names (caller frees). */
cJSON *pa_canon(const cJSON *in, const pa_field_t *f);
/* Canonical <c> back in the session's form: <full> 5.8's, else master's. */
cJSON *pa_emit(const cJSON *c, const pa_field_t *f, int full, const pa_limit_t *lim);
/* Is <v> left out when written (rule O_NO, O_EMPTY, O_ZERO)? */
int pa_omitted(const cJSON *v, const pa_field_t *f, int rule);

/* ---- merges (util.go); each returns the merged value, taking ownership
 * of <dest> where it has one ------------------------------------------------ */

cJSON *pa_strs_union(cJSON *dest, const cJSON *src);
void pa_member_union(cJSON *c, const char *key, const cJSON *src);
cJSON *pa_urls_merge(cJSON *a, const cJSON *b);
cJSON *pa_types_merge(cJSON *dest, const cJSON *src);
cJSON *pa_fields_merge(cJSON *dest, const cJSON *src);
cJSON *pa_rules_merge(cJSON *dst, const cJSON *src);
/* endpoints, json_rpc_methods and mcp_primitives of <pol> and <cur> into <into> */
void pa_rate_lists_merge(cJSON *into, const cJSON *pol, const cJSON *cur);

#endif
