/*
 * worker/tp_limit.h: rate limits and quotas (TYK-COMPAT 6): a key's own
 * (RateLimitAndQuotaCheck) and the API's (RateLimitForAPI), decided after
 * authentication and before the proxy.
 *
 * Tiers, first match as Tyk orders its switches:
 *  - enable_fixed_window_rate_limiter: Tyk's fixed window in Redis;
 *  - enable_sentinel_rate_limiter: Tyk's sliding log plus a .BLOCKED key;
 *  - enable_redis_rolling_limiter: Tyk's sliding log (rate-limit-<hash>
 *    sorted sets, shared with Tyk nodes; refused requests are logged too);
 *  - turnpike.rate_limiter "exact": GCRA in Redis, one script per
 *    decision, the key's quota counted in the same script;
 *  - otherwise ("local", the default, Tyk's DRL role): GCRA in the node's
 *    shared memory with this node's share (rate / live nodes); a limit too
 *    small to share accurately (rate/per <= nodes * drl_threshold) is sent
 *    to the exact Redis limiter instead.
 * In Turnpike's own tiers a refused request costs nothing.
 *
 * Two stages of the request chain (tp_chain.c): the key limit stage
 * (tp_stage_key_limit, on the limits the access stage put in req->keyctx)
 * and the API limit stage (tp_stage_api_limit). One worker loop, no locking; shared counters live
 * in shm/tp_shm_limit.c.
 */
#ifndef TP_LIMIT_H
#define TP_LIMIT_H

#include <stdint.h>

typedef struct tp_req_s tp_req_t;
typedef struct tp_reqpath_s tp_reqpath_t;
typedef struct tp_worker_s tp_worker_t;

/* A key's limits on one API, as its session states them after policies:
 * the per-API limit when non-empty, else the session root (6.1). */
typedef struct tp_keylimit_s {
    double rate, per;
    double throttle_interval;
    int64_t throttle_retry_limit;
    int64_t quota_max, quota_renewal, quota_remaining, quota_renews;
} tp_keylimit_t;

/* What the key's checks need beyond its limits. */
typedef struct tp_keyctx_s {
    const tp_keylimit_t *lim;
    double rate, per;   /* lim's, or a matching per-endpoint limit's */
    const char *scope;  /* allowance_scope, "" for none */
    const char *khash;  /* the key's identity: its storage hash (or the key) */
    const char *suffix; /* a per-endpoint limit's HashStr("<METHOD>:<path>"), or NULL */
} tp_keyctx_t;

/* Starts the node announcements (local tier) and loads the scripts. */
void tp_limit_init(tp_worker_t *w);

/* tp_limit_wb.c: the quota of session <rkey> ("apikey-<hash>") for
 * allowance <scope>, counted under <qkey> up to <max>, was used: its
 * remaining count and renewal time are written back into the session
 * shortly. */
void tp_limit_wb_note(tp_worker_t *w, const char *rkey, const char *scope, const char *qkey,
                      int64_t max);

#endif
