/*
 * conf/tp_policy_apply.h: applying security policies to a session, as Tyk's
 * policy.Service.Apply (internal/policy/apply.go) does.
 *
 * Used by: workers (on every authenticated request, to a copy of the stored
 * session) and the REST key handlers (on create, update and read). A pure
 * function on cJSON trees: no state, no locking. Policies come from the
 * caller's lookup callback and are only read.
 *
 * The session is Tyk's SessionState JSON in either form Tyk writes: the full
 * form of 5.11 and earlier (every field, zeros included) or the omit-zero
 * form of 5.12 and later. The fields Apply sets are written back in the form
 * the session came in, detected by "last_check" or "allowance", which only
 * the full form always carries; other fields are left as they are.
 */
#ifndef TP_POLICY_APPLY_H
#define TP_POLICY_APPLY_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Finds policy <id> of org <org> (NULL when absent). The tree is borrowed:
 * it must stay valid until tp_policy_apply returns. */
typedef const cJSON *(*tp_policy_find_cb)(void *arg, const char *org, const char *id);

/* Applies the session's apply_policies (or legacy apply_policy_id, or the
 * policy objects a plugin left in meta_data.policies) to <session> in place.
 *
 * <api_org> is the org_id of the API the request is for, or NULL when there
 * is no API, as for Tyk's REST key handlers. NULL and "" differ as they do in
 * Tyk: with an API, every policy's org_id must equal the API's (an API with
 * org "" accepts only policies with org ""), and the API's org is the lookup
 * org when the session has none; without an API nothing is checked and the
 * lookup org is the session's.
 *
 * Returns 0, or -1 with Tyk's error text in <err> (e.g. "key has no valid
 * policies to be applied"). On error the session holds what Tyk's would at
 * that point: Tyk's key-create handler ignores the error and stores it. */
int tp_policy_apply(cJSON *session, const char *api_org, tp_policy_find_cb find, void *arg,
                    char *err, size_t errlen);

/* Tyk's APILimit.IsEmpty for a "limit" object of access rights (a JSON
 * null or a non-object is empty). Used to pick the per-API limit over the
 * session's (TYK-COMPAT 6.1) and by the quota write-back. */
int tp_api_limit_empty(const cJSON *limit);

#endif
