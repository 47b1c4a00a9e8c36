/* test/unit/test_policy_apply.c: applying policies to sessions as Tyk's Service.Apply does.
 *
 * Most scenarios are those of Tyk's internal/policy/apply_test.go, util_test.go and
 * gateway/policy_test.go, with their expected results; JSON here is written with ' for ". */
#include <stdlib.h>

#include "tp_err.h"
#include "tp_policy_apply.h"
#include "tp_test.h"

/* Policies by id, as a scoped store holds them: a lookup finds a policy only
 * under its own org_id ("" when it has none). */
static const char *const POLICIES =
    "{"
    "'p1':{'id':'p1','access_rights':{'a':{}},'partitions':{}},"
    "'p2':{'id':'p2','access_rights':{'b':{}},'partitions':{}},"
    "'p3':{'id':'p3','access_rights':{'a':{},'b':{}},'partitions':{}},"
    "'quota1':{'quota_max':2,'access_rights':{'a':{}},'partitions':{'acl':true,'quota':true}},"
    "'quota2':{'quota_max':3,'access_rights':{'a':{}},'partitions':{'acl':true,'quota':true}},"
    "'quota4':{'quota_max':3,'access_rights':{'b':{}},'partitions':{'quota':true}},"
    "'unlimited-quota':{'quota_max':-1,'access_rights':{'a':{}},"
    "  'partitions':{'acl':true,'quota':true}},"
    "'rate1':{'rate':3,'per':1,'access_rights':{'a':{}},'partitions':{'acl':true,'rate_limit':true}"
    "},"
    "'r60':{'rate':10,'per':60,'access_rights':{'a':{}},'partitions':{'acl':true,'rate_limit':true}"
    "},"
    "'r1':{'rate':2.0,'per':1,'access_rights':{'a':{}},'partitions':{'acl':true,'rate_limit':true}}"
    ","
    "'rate-unl':{'rate':-1,'per':1,'access_rights':{'a':{}},"
    "  'partitions':{'acl':true,'rate_limit':true}},"
    "'rate-for-a':{'rate':4,'per':1,'access_rights':{'a':{}},'partitions':{'rate_limit':true}},"
    "'rate-for-b':{'rate':2,'per':1,'access_rights':{'b':{}},'partitions':{'rate_limit':true}},"
    "'rate-for-a-b':{'rate':4,'per':1,'access_rights':{'a':{},'b':{}},"
    "  'partitions':{'rate_limit':true}},"
    "'complexity1':{'max_query_depth':2,'access_rights':{'a':{}},"
    "  'partitions':{'acl':true,'complexity':true}},"
    "'complexity2':{'max_query_depth':3,'access_rights':{'a':{}},"
    "  'partitions':{'acl':true,'complexity':true}},"
    "'complexity-unl':{'max_query_depth':-1,'access_rights':{'a':{}},"
    "  'partitions':{'acl':true,'complexity':true}},"
    "'acl1':{'access_rights':{'a':{}},'partitions':{'acl':true}},"
    "'acl-for-a-b':{'access_rights':{'a':{},'b':{}},'partitions':{'acl':true}},"
    "'tags1':{'access_rights':{'a':{}},'tags':['tagA'],'meta_data':{'a':2,'b':'x'},"
    "  'last_updated':'99','partitions':{'acl':true,'quota':true}},"
    "'tags2':{'access_rights':{'a':{}},'tags':['tagX','tagY'],'hmac_enabled':true,"
    "  'partitions':{'acl':true,'rate_limit':true}},"
    "'inactive1':{'access_rights':{'a':{}},'is_inactive':true,"
    "  'partitions':{'acl':true,'rate_limit':true}},"
    "'per_api':{'id':'per_api','access_rights':{"
    "  'c':{'limit':{'rate':2000,'per':60,'quota_max':-1}},"
    "  'd':{'limit':{'rate':20,'per':1,'quota_max':1000,'quota_renewal_rate':3600}}},"
    "  'partitions':{'per_api':true}},"
    "'per_api_from_policy':{'id':'per_api_from_policy','rate':300,'per':1,'quota_max':-1,"
    "  'access_rights':{'d':{'limit':{'rate':200,'per':10,'quota_max':5000,"
    "  'quota_renewal_rate':3600}},'e':{}},'partitions':{'per_api':true}},"
    "'per_api_d':{'id':'per_api_d','access_rights':{'d':{'limit':{'rate':200,'per':10,"
    "  'quota_max':5000,'quota_renewal_rate':3600}}},'partitions':{'per_api':true}},"
    "'per_api_d_slower':{'id':'per_api_d_slower','access_rights':{'d':{'limit':{'rate':400,"
    "  'per':25,'quota_max':5000,'quota_renewal_rate':3600}}},'partitions':{'per_api':true}},"
    "'per_api_c':{'id':'per_api_c','access_rights':{'c':{'limit':{'rate':3000,'per':10,"
    "  'quota_max':6000,'quota_renewal_rate':3600}}},'partitions':{'per_api':true}},"
    "'per_api_rate':{'id':'per_api_rate','access_rights':{'d':{}},"
    "  'partitions':{'per_api':true,'rate_limit':true}},"
    "'master':{'id':'master','rate':100,'per':1,'quota_max':50,'quota_renewal_rate':60,"
    "  'throttle_interval':2,'throttle_retry_limit':3,'access_rights':{},'partitions':{}},"
    "'get1':{'id':'get1','access_rights':{'d':{'endpoints':[{'path':'/get','methods':"
    "  [{'name':'GET','limit':{'rate':10,'per':60}}]}]}},"
    "  'partitions':{'acl':true,'rate_limit':true,'quota':true}},"
    "'get2':{'id':'get2','access_rights':{'d':{'endpoints':[{'path':'/get','methods':"
    "  [{'name':'GET','limit':{'rate':20,'per':60}}]},{'path':'/u/:id','methods':"
    "  [{'name':'GET','limit':{'rate':1,'per':1}}]}]}},"
    "  'partitions':{'acl':true,'rate_limit':true,'quota':true}},"
    "'get3':{'id':'get3','access_rights':{'d':{'endpoints':[{'path':'/get','methods':"
    "  [{'name':'GET','limit':{'rate':-1}}]}]}},"
    "  'partitions':{'acl':true,'rate_limit':true,'quota':true}},"
    "'post1':{'id':'post1','access_rights':{'d':{'endpoints':[{'path':'/post','methods':"
    "  [{'name':'POST','limit':{'rate':20,'per':60}}]}]}},"
    "  'partitions':{'acl':true,'rate_limit':true,'quota':true}},"
    "'ep-acl-only':{'id':'ep-acl-only','rate':500,'per':1,'access_rights':{'d':{'endpoints':"
    "  [{'path':'/get','methods':[{'name':'GET','limit':{'rate':-1}}]}]}},"
    "  'partitions':{'acl':true}},"
    "'urls1':{'id':'urls1','access_rights':{'a':{'versions':['v1'],'allowed_urls':["
    "  {'url':'/user','methods':['GET']},{'url':'/companies','methods':['GET']}]}}},"
    "'urls2':{'id':'urls2','access_rights':{'a':{'versions':['v1','v2'],'allowed_urls':["
    "  {'url':'/user','methods':['POST','PATCH','PUT']},{'url':'/companies','methods':['POST']},"
    "  {'url':'/admin','methods':['GET','POST']}]}}},"
    "'urls3':{'id':'urls3','access_rights':{'a':{'allowed_urls':["
    "  {'url':'/admin/cache','methods':['DELETE']}]}}},"
    "'limited':{'id':'limited','rate':10,'per':1,'quota_max':100,'quota_renewal_rate':3600,"
    "  'max_query_depth':4,'access_rights':{'a':{'api_id':'a','api_name':'A'}}},"
    "'shared-org1':{'id':'shared','org_id':'org1','access_rights':{'api1':{}}},"
    "'shared-org2':{'id':'shared','org_id':'org2','access_rights':{'api2':{}}},"
    "'x-pol':{'id':'x-pol','org_id':'x','access_rights':{'a':{}}}"
    "}";

/* Parses <text> with ' standing for ". */
static cJSON *js(const char *text)
{
    char *t = strdup(text);
    for (char *c = t; *c; c++)
        if (*c == '\'')
            *c = '"';
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

static const cJSON *find_policy(void *arg, const char *org, const char *id)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, (const cJSON *)arg)
    {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(p, "id");
        const cJSON *porg = cJSON_GetObjectItemCaseSensitive(p, "org_id");
        const char *want = cJSON_IsString(pid) ? pid->valuestring : p->string;
        if (strcmp(want, id) == 0 &&
            strcmp(cJSON_IsString(porg) ? porg->valuestring : "", org) == 0)
            return p;
    }
    return NULL;
}

static char err[512];
static int rc;

/* <session> after Apply for an API of <api_org>; rc and err tell the outcome. */
static cJSON *apply(const char *session, const char *api_org)
{
    cJSON *pols = js(POLICIES), *s = js(session);
    TP_BUG_ON(pols == NULL || s == NULL);
    err[0] = '\0';
    rc = tp_policy_apply(s, api_org, find_policy, pols, err, sizeof(err));
    cJSON_Delete(pols);
    return s;
}

/* Member path "a.b.c" of <o>. */
static const cJSON *at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok(buf, "."); k != NULL && o != NULL; k = strtok(NULL, "."))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

/* Does <got> equal the JSON <want> (member order aside)? Prints both if not. */
static int same(const cJSON *got, const char *want)
{
    cJSON *w = js(want);
    int ok = w != NULL && got != NULL && cJSON_Compare(got, w, 1);
    if (!ok) {
        char *g = got != NULL ? cJSON_PrintUnformatted(got) : NULL;
        char *e = w != NULL ? cJSON_PrintUnformatted(w) : NULL;
        fprintf(stderr, "  got  %s\n  want %s\n", g ? g : "(none)", e ? e : "(bad JSON)");
        free(g);
        free(e);
    }
    cJSON_Delete(w);
    return ok;
}

static double num_at(const cJSON *o, const char *path)
{
    const cJSON *v = at(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

/* Each test body gets the applied session; the wrapper frees it. */
#define APPLY_TEST(name, session, org)                                                             \
    static void name##_body(cJSON *s __attribute__((unused)));                                     \
    TP_TEST(name)                                                                                  \
    {                                                                                              \
        cJSON *s = apply(session, org);                                                            \
        name##_body(s);                                                                            \
        cJSON_Delete(s);                                                                           \
    }                                                                                              \
    static void name##_body(cJSON *s __attribute__((unused)))

/* ---- clearing and partitions ----------------------------------------------- */

APPLY_TEST(clear_only_what_partitions_set,
           "{'rate':20,'per':1,'quota_max':100,'quota_remaining':50,'max_query_depth':5,"
           "'apply_policies':['rate1']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"),
               "{'a':{'limit':{'rate':3,'per':1,'max_query_depth':5,'quota_max':100}}}"));
    CHECK_INT(num_at(s, "rate"), 3);
    CHECK_INT(num_at(s, "quota_max"), 100);
    CHECK_INT(num_at(s, "quota_remaining"), 50);
    CHECK_INT(num_at(s, "max_query_depth"), 5);
}

APPLY_TEST(clear_everything_for_unpartitioned,
           "{'rate':50,'per':1,'quota_max':1000,'quota_remaining':7,'apply_policies':['p1']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'a':{}}"));
    CHECK(at(s, "rate") == NULL && at(s, "quota_max") == NULL && at(s, "quota_remaining") == NULL);
}

/* ClearSession stops at the first missing policy, so nothing is cleared */
APPLY_TEST(clearing_stops_at_missing_policy,
           "{'quota_remaining':7,'apply_policies':['nonexistent','p1']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "quota_remaining"), 7);
}

APPLY_TEST(quota_larger_wins, "{'apply_policies':['quota1','quota2']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "quota_max"), 3);
    CHECK(same(at(s, "access_rights"), "{'a':{'limit':{'quota_max':3}}}"));
}

APPLY_TEST(quota_unlimited_wins, "{'apply_policies':['unlimited-quota','quota2']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "quota_max"), -1);
    CHECK_INT(num_at(s, "access_rights.a.limit.quota_max"), -1);
}

/* quota4 sets a quota for b without granting it: b is dropped */
APPLY_TEST(quota_partition_without_acl_drops_api, "{'apply_policies':['quota4','p1']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "quota_max"), 3);
    CHECK(same(at(s, "access_rights"), "{'a':{}}"));
}

APPLY_TEST(rate_compared_by_duration, "{'apply_policies':['r1','r60']}", NULL)
{
    /* 2 per 1 s beats 10 per 60 s: a request every 0.5 s against every 6 s */
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'a':{'limit':{'rate':2,'per':1}}}"));
    CHECK_INT(num_at(s, "rate"), 2);
    CHECK_INT(num_at(s, "per"), 1);
}

APPLY_TEST(rate_unlimited_wins, "{'apply_policies':['r1','rate-unl']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "access_rights.a.limit.rate"), -1);
    CHECK_INT(num_at(s, "rate"), -1);
}

APPLY_TEST(complexity_larger_and_unlimited_win,
           "{'apply_policies':['complexity1','complexity2','complexity-unl']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "max_query_depth"), -1);
    CHECK_INT(num_at(s, "access_rights.a.limit.max_query_depth"), -1);
}

APPLY_TEST(acl_partition_limits_granted_apis, "{'apply_policies':['acl1','rate-for-a-b']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'a':{'limit':{'rate':4,'per':1}}}"));
}

APPLY_TEST(acl_with_separate_rate_policies,
           "{'apply_policies':['acl-for-a-b','rate-for-a','rate-for-b'],"
           "'access_rights':{'c':{'api_id':'c'}}}",
           NULL)
{
    /* the session's own c is replaced by what the policies grant */
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"),
               "{'a':{'limit':{'rate':4,'per':1}},'b':{'limit':{'rate':2,'per':1}}}"));
}

/* ---- per_api ------------------------------------------------------------------ */

APPLY_TEST(per_api_limits_and_scopes, "{'apply_policies':['per_api']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"),
               "{'c':{'limit':{'rate':2000,'per':60,'quota_max':-1},'allowance_scope':'c'},"
               "'d':{'limit':{'rate':20,'per':1,'quota_max':1000,'quota_renewal_rate':3600},"
               "'allowance_scope':'d'}}"));
}

APPLY_TEST(per_api_empty_limit_takes_policy_values, "{'apply_policies':['per_api_from_policy']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.e"), "{'limit':{'rate':300,'per':1,'quota_max':-1},"
                                         "'allowance_scope':'per_api_from_policy'}"));
    CHECK(same(at(s, "access_rights.d.allowance_scope"), "'d'"));
}

APPLY_TEST(per_api_same_api_keeps_higher_limits,
           "{'apply_policies':['per_api_from_policy','per_api_d','per_api_d_slower']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.d"),
               "{'limit':{'rate':200,'per':10,'quota_max':5000,'quota_renewal_rate':3600},"
               "'allowance_scope':'d'}"));
}

APPLY_TEST(per_api_unlimited_quota_kept, "{'apply_policies':['per_api','per_api_d','per_api_c']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.c"),
               "{'limit':{'rate':3000,'per':10,'quota_max':-1},'allowance_scope':'c'}"));
    CHECK(same(at(s, "access_rights.d"),
               "{'limit':{'rate':200,'per':10,'quota_max':5000,'quota_renewal_rate':3600},"
               "'allowance_scope':'d'}"));
}

TP_TEST(per_api_mixed_with_partitions_fails)
{
    static const char *const mixed[] = {"{'apply_policies':['per_api_d','quota1']}",
                                        "{'apply_policies':['rate1','per_api_d']}"};
    for (int i = 0; i < 2; i++) {
        cJSON_Delete(apply(mixed[i], NULL));
        CHECK_INT(rc, -1);
        CHECK_STR(err, "cannot apply multiple policies when some have per_api set and some are "
                       "partitioned");
    }
    cJSON_Delete(apply("{'apply_policies':['per_api_rate']}", NULL));
    CHECK_INT(rc, -1);
    CHECK_STR(err, "cannot apply policy per_api_rate which has per_api and any of partitions set");
    /* Tyk remembers only whether the last policy was partitioned */
    cJSON_Delete(apply("{'apply_policies':['quota1','p1','per_api_d']}", NULL));
    CHECK_INT(rc, 0);
}

/* ---- master policies, scopes, missing policies ------------------------------ */

APPLY_TEST(master_policy_sets_session_root, "{'apply_policies':['p3','master']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "rate"), 100);
    CHECK_INT(num_at(s, "per"), 1);
    CHECK_INT(num_at(s, "quota_max"), 50);
    CHECK_INT(num_at(s, "quota_renewal_rate"), 60);
    CHECK_INT(num_at(s, "throttle_retry_limit"), 3);
    CHECK(same(at(s, "access_rights"), "{'a':{},'b':{}}"));
}

/* alone it grants no API, which Tyk refuses; what it set stays */
APPLY_TEST(master_policy_alone_fails, "{'apply_policies':['master']}", NULL)
{
    CHECK_INT(rc, -1);
    CHECK_STR(err, "key has no valid policies to be applied");
    CHECK_INT(num_at(s, "rate"), 100);
}

/* with a single API, the legacy copy of its limits overwrites the root */
APPLY_TEST(single_api_limits_copied_to_root,
           "{'quota_renews':5,'access_rights':{'a':{'limit':{'quota_renews':12345,'quota_max':9}}},"
           "'apply_policies':['limited']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.a"),
               "{'limit':{'rate':10,'per':1,'max_query_depth':4,'quota_max':100,"
               "'quota_renews':12345,'quota_renewal_rate':3600}}"));
    CHECK_INT(num_at(s, "quota_renews"), 12345);
    CHECK_INT(num_at(s, "max_query_depth"), 4);
}

APPLY_TEST(policies_with_separate_apis_get_own_scopes,
           "{'apply_policies':['p1','p2','nonexistent']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"),
               "{'a':{'allowance_scope':'p1'},'b':{'allowance_scope':'p2'}}"));
}

APPLY_TEST(one_policy_many_apis_shares_scope, "{'apply_policies':['p3']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'a':{},'b':{}}"));
}

APPLY_TEST(sole_missing_policy_fails, "{'apply_policies':['nonexistent']}", NULL)
{
    CHECK_INT(rc, -1);
    CHECK_STR(err, "policy not found: \"nonexistent\"");
}

APPLY_TEST(legacy_apply_policy_id, "{'apply_policy_id':'p2','apply_policies':[]}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'b':{}}"));
}

/* ---- merges ------------------------------------------------------------------- */

APPLY_TEST(versions_and_allowed_urls_merge, "{'apply_policies':['urls1','urls2','urls3']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.a"), "{'versions':['v1','v2'],'allowed_urls':["
                                         "{'url':'/user','methods':['GET','POST','PATCH','PUT']},"
                                         "{'url':'/companies','methods':['GET','POST']},"
                                         "{'url':'/admin','methods':['GET','POST']},"
                                         "{'url':'/admin/cache','methods':['DELETE']}]}"));
}

APPLY_TEST(endpoint_higher_rate_wins, "{'apply_policies':['post1','get2','get1']}", NULL)
{
    /* sorted by path; "/u/:id" has a ':' and Go's key split drops it */
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.d.endpoints"),
               "[{'path':'/get','methods':[{'name':'GET','limit':{'rate':20,'per':60}}]},"
               "{'path':'/post','methods':[{'name':'POST','limit':{'rate':20,'per':60}}]}]"));
}

APPLY_TEST(endpoint_unlimited_wins, "{'apply_policies':['get3','get1']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.d.endpoints"),
               "[{'path':'/get','methods':[{'name':'GET','limit':{'rate':-1}}]}]"));
}

APPLY_TEST(endpoints_need_rate_partition, "{'apply_policies':['ep-acl-only']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'d':{}}"));
}

APPLY_TEST(tags_meta_last_updated_hmac,
           "{'tags':['key-tag','tagA'],'meta_data':{'a':1,'keep':true},'last_updated':'100',"
           "'apply_policies':['tags1','tags2']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "tags"), "['key-tag','tagA','tagX','tagY']"));
    CHECK(same(at(s, "meta_data"), "{'a':2,'keep':true,'b':'x'}"));
    /* Go compares the strings: "99" > "100" */
    CHECK(same(at(s, "last_updated"), "'99'"));
    CHECK(cJSON_IsTrue(at(s, "hmac_enabled")));
}

APPLY_TEST(inactive_policy_makes_key_inactive, "{'apply_policies':['tags1','inactive1']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(cJSON_IsTrue(at(s, "is_inactive")));
}

APPLY_TEST(session_inactive_ignored_with_policies,
           "{'is_inactive':true,'apply_policies':['tags1','tags2']}", NULL)
{
    CHECK_INT(rc, 0);
    CHECK(at(s, "is_inactive") == NULL);
}

/* ---- org scoping --------------------------------------------------------------- */

TP_TEST(policies_scoped_by_org)
{
    cJSON *s = apply("{'apply_policies':['shared']}", "org1");
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'api1':{}}"));
    cJSON_Delete(s);
    /* a key of org2 finds org2's policy, which may not touch an org1 API */
    cJSON_Delete(apply("{'org_id':'org2','apply_policies':['shared']}", "org1"));
    CHECK_INT(rc, -1);
    CHECK_STR(err, "attempting to apply policy from different organisation to key, skipping");
    /* without an API nothing is checked */
    s = apply("{'org_id':'org2','apply_policies':['shared']}", NULL);
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'api2':{}}"));
    cJSON_Delete(s);
    /* an API with an empty org accepts only policies without one */
    cJSON_Delete(apply("{'org_id':'x','apply_policies':['x-pol']}", ""));
    CHECK_INT(rc, -1);
    cJSON_Delete(apply("{'org_id':'x','apply_policies':['x-pol']}", NULL));
    CHECK_INT(rc, 0);
}

/* ---- keys without policies, forms -------------------------------------------- */

APPLY_TEST(no_policies_scope_apis_with_limits,
           "{'is_inactive':true,'tags':['t','t'],'access_rights':{"
           "'b':{'api_id':'b','versions':['Default']},'a':{'limit':{'rate':5,'per':1}}}}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights"), "{'a':{'limit':{'rate':5,'per':1},'allowance_scope':'a'},"
                                       "'b':{'api_id':'b','versions':['Default']}}"));
    CHECK(cJSON_IsTrue(at(s, "is_inactive")));
    CHECK(same(at(s, "tags"), "['t']"));
}

/* a session in 5.11's full form comes back in it */
APPLY_TEST(full_form_written_with_zeros,
           "{'last_check':0,'allowance':0,'rate':9,'per':1,'tags':null,'meta_data':null,"
           "'apply_policies':['p1']}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(same(at(s, "access_rights.a"),
               "{'api_name':'','api_id':'','versions':null,'allowed_urls':null,"
               "'restricted_types':null,'allowed_types':null,'limit':{'rate':0,'per':0,"
               "'throttle_interval':0,'throttle_retry_limit':0,'max_query_depth':0,'quota_max':0,"
               "'quota_renews':0,'quota_remaining':0,'quota_renewal_rate':0},"
               "'field_access_rights':null,'disable_introspection':false,'allowance_scope':''}"));
    CHECK(same(at(s, "rate"), "0"));
    CHECK(same(at(s, "tags"), "[]"));
    CHECK(same(at(s, "meta_data"), "{}"));
    CHECK(cJSON_IsNull(at(s, "smoothing")));
}

/* Go matches members case-insensitively and writes its own names */
APPLY_TEST(case_insensitive_members_and_float_numbers,
           "{'Rate':5.0,'APPLY_POLICIES':['quota2'],'Access_Rights':{'a':{'Limit':"
           "{'Quota_Renews':7.0,'quota_max':1}}}}",
           NULL)
{
    CHECK_INT(rc, 0);
    CHECK(at(s, "Rate") == NULL && at(s, "Access_Rights") == NULL);
    CHECK_INT(num_at(s, "rate"), 5);
    /* quota2 has no rate partition: a inherits the session's rate */
    CHECK(
        same(at(s, "access_rights"), "{'a':{'limit':{'rate':5,'quota_max':3,'quota_renews':7}}}"));
}

/* a plugin may leave the policies themselves in meta_data.policies */
TP_TEST(custom_policies_from_meta_data)
{
    cJSON *s = apply("{'meta_data':{'policies':["
                     "{'id':'pol1','partitions':{'rate_limit':true,'acl':true},'rate':8,'per':1,"
                     "'access_rights':{'a':{}}},"
                     "{'id':'pol2','partitions':{'rate_limit':true},'rate':10,'per':1,"
                     "'access_rights':{'a':{}}}]}}",
                     NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "rate"), 10);
    cJSON_Delete(s);
    s = apply("{'meta_data':{'policies':["
              "{'id':'pol1','partitions':{'rate_limit':true},'rate':8,'per':1,"
              "'access_rights':{'a':{}}},"
              "{'id':'pol2','partitions':{'acl':true},'rate':10,'per':1,'access_rights':{'a':{"
              "'allowed_urls':[{'url':'/user','methods':['GET','POST']}]}}}]}}",
              NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(num_at(s, "rate"), 8);
    CHECK(
        same(at(s, "access_rights.a.allowed_urls"), "[{'url':'/user','methods':['GET','POST']}]"));
    cJSON_Delete(s);
}

void test_policy_apply_suite(void)
{
    TP_RUN(clear_only_what_partitions_set);
    TP_RUN(clear_everything_for_unpartitioned);
    TP_RUN(clearing_stops_at_missing_policy);
    TP_RUN(quota_larger_wins);
    TP_RUN(quota_unlimited_wins);
    TP_RUN(quota_partition_without_acl_drops_api);
    TP_RUN(rate_compared_by_duration);
    TP_RUN(rate_unlimited_wins);
    TP_RUN(complexity_larger_and_unlimited_win);
    TP_RUN(acl_partition_limits_granted_apis);
    TP_RUN(acl_with_separate_rate_policies);
    TP_RUN(per_api_limits_and_scopes);
    TP_RUN(per_api_empty_limit_takes_policy_values);
    TP_RUN(per_api_same_api_keeps_higher_limits);
    TP_RUN(per_api_unlimited_quota_kept);
    TP_RUN(per_api_mixed_with_partitions_fails);
    TP_RUN(master_policy_sets_session_root);
    TP_RUN(master_policy_alone_fails);
    TP_RUN(single_api_limits_copied_to_root);
    TP_RUN(policies_with_separate_apis_get_own_scopes);
    TP_RUN(one_policy_many_apis_shares_scope);
    TP_RUN(sole_missing_policy_fails);
    TP_RUN(legacy_apply_policy_id);
    TP_RUN(versions_and_allowed_urls_merge);
    TP_RUN(endpoint_higher_rate_wins);
    TP_RUN(endpoint_unlimited_wins);
    TP_RUN(endpoints_need_rate_partition);
    TP_RUN(tags_meta_last_updated_hmac);
    TP_RUN(inactive_policy_makes_key_inactive);
    TP_RUN(session_inactive_ignored_with_policies);
    TP_RUN(policies_scoped_by_org);
    TP_RUN(no_policies_scope_apis_with_limits);
    TP_RUN(full_form_written_with_zeros);
    TP_RUN(case_insensitive_members_and_float_numbers);
    TP_RUN(custom_policies_from_meta_data);
}
