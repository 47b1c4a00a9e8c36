/*
 * worker/tp_limit.c: see tp_limit.h.
 *
 * A request's limits are decided in stages: the key's rate, the key's
 * quota, the API's rate. Each of the two chain stages (key_limit,
 * api_limit) keeps its decision under way, the op, as its state in the
 * request's arena; a step that asks Redis (or throttles) leaves the op
 * waiting, and the reply continues it.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_limit.h"
#include "tp_log.h"
#include "tp_redis_script.h"
#include "tp_shm_limit.h"
#include "tp_time.h"
#include "tp_worker.h"

/* Tyk's text for a limiter storage error (500) */
static const char LIMITER_DOWN[] = "there was a problem proxying the request";

/* ---- scripts ------------------------------------------------------------------------- */

/* Turnpike's exact limiter: GCRA on Redis's clock (so nodes need no
 * synchronised clocks), and the key's quota in the same step.
 * KEYS: [rate key] [quota key]. ARGV: emission interval us (0: no rate),
 * window us, quota renewal ms (-1: no quota), quota max.
 * A refused request changes nothing; a request refused by its quota does
 * not use up the rate. The quota counter is made atomic as in QUOTA_LUA.
 * The state is one string, <limiter key>.gcra: not Tyk's name, whose
 * sorted set a Tyk node may be using as its sliding log for the same key
 * (its DRL falls back to that for low rates on several nodes).
 * Returns {admitted, remaining, reset us, quota count, quota pttl}. */
static const char GCRA_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local T = tonumber(ARGV[1]) local per = tonumber(ARGV[2]) "
    "local k, left, reset, tat = 1, -1, 0, 0 "
    "if T > 0 then "
    " tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 "
    " if tat < now then tat = now end "
    " tat = tat + T "
    " if tat - now > per then return {0, 0, tat - per - now, -1, -1} end "
    " left = math.floor((per - (tat - now)) / T) reset = tat - now k = 2 "
    "end "
    "local qc, qt = -1, -1 "
    "local r = tonumber(ARGV[3]) "
    "if r >= 0 then "
    " qc = redis.call('INCR', KEYS[k]) qt = redis.call('PTTL', KEYS[k]) "
    " if r > 0 and qt < 0 then "
    "  if qc > 1 then qc = 1 redis.call('SET', KEYS[k], 1) end "
    "  redis.call('PEXPIRE', KEYS[k], r) qt = r "
    " end "
    " if qc - 1 >= tonumber(ARGV[4]) then return {1, left, reset, qc, qt} end "
    "end "
    "if T > 0 then "
    " redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', "
    "  string.format('%d', math.ceil(reset / 1000) + 1)) "
    "end "
    "return {1, left, reset, qc, qt}";

/* A quota alone (RedisQuotaExceeded, made atomic): count the request (or
 * a lease of ARGV[2] requests) and make sure the window has its expiry. A
 * counter without one (left by an older writer) starts a new window, as
 * Tyk's reset would, and no two first requests can reset each other.
 * Returns {count, pttl}. */
static const char QUOTA_LUA[] = "local n = tonumber(ARGV[2]) "
                                "local c = redis.call('INCRBY', KEYS[1], n) "
                                "local t = redis.call('PTTL', KEYS[1]) "
                                "local r = tonumber(ARGV[1]) "
                                "if r > 0 and t < 0 then "
                                "if c > n then c = n redis.call('SET', KEYS[1], n) end "
                                "redis.call('PEXPIRE', KEYS[1], r) t = r end "
                                "return {c, t}";

/* The local tier leases large quotas a slice at a time (see tp_shm_limit.h):
 * a thousandth of the quota, so a node holds back at most 0.1% of it. A
 * quota under LEASE_MIN is counted request by request. */
#define LEASE_PART 1000
#define LEASE_MIN (2 * LEASE_PART)

/* Tyk's sliding log (TYK-COMPAT 6.2 item 3), the same commands on the same
 * sorted set, so Tyk and Turnpike nodes share one limit. ARGV: now ns,
 * window start ns, rate, per s. Returns {count before this request,
 * remaining, the member that leaves the window next}. */
static const char ROLLING_LUA[] =
    "local key = KEYS[1] "
    "redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2]) "
    "local count = redis.call('ZCARD', key) "
    "redis.call('ZADD', key, ARGV[1], ARGV[1]) "
    "redis.call('EXPIRE', key, ARGV[4]) "
    "local max = tonumber(ARGV[3]) "
    "local left = max - count - 1 if left < 0 then left = 0 end "
    "local next = ARGV[1] "
    "if count >= max and max > 0 then "
    " local o = redis.call('ZRANGE', key, -max, -max) if #o > 0 then next = o[1] end "
    "end "
    "return {count, left, next}";

/* Tyk's fixed window: one counter per window, expiring with it. */
static const char FIXED_LUA[] = "local c = redis.call('INCR', KEYS[1]) "
                                "if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                                "return c";

/* Node announcements: each node keeps its id in a sorted set scored by
 * when it stops counting, on Redis's clock. Returns the live count. */
static const char NODES_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "return redis.call('ZCARD', KEYS[1])";

static const char NODES_KEY[] = "turnpike-nodes";

static tp_script_t gcra_script, quota_script, rolling_script, fixed_script, nodes_script;

/* ---- tiers ------------------------------------------------------------------------- */

enum { TIER_LOCAL, TIER_EXACT, TIER_ROLLING, TIER_SENTINEL, TIER_FIXED };

enum { ST_KEY_RATE, ST_QUOTA, ST_API_RATE, ST_DONE };

#define KEY_MAX 320

/* seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch */
#define GO_ZERO_TO_UNIX_S 62135596800LL

/* A request whose limits wait for Redis (or for a throttle delay). */
typedef struct limop_s {
    tp_req_t *req;
    tp_keylimit_t lim; /* copied: the session may go */
    double rate, per;  /* the key's rate limit (endpoint limit applied) */
    int stage;
    int last;      /* the last stage of this op (ST_QUOTA for a key's, ST_API_RATE) */
    int tier;      /* of the decision under way */
    int pending;   /* replies still to come */
    int errors;    /* replies that failed */
    int blocked;   /* a reply said no */
    int quota_in;  /* the quota was decided with the rate */
    int64_t lease; /* requests asked of the quota at once (1: no lease) */
    int64_t throttles_left;
    tp_eval_t *ev;
    tp_rcmd_t *cmd;    /* the sentinel's TTL */
    uv_timer_t *timer; /* throttling */
    char err[200];
    /* the decision under way */
    const char *what; /* the key, for notes */
    double drate, dper;
    tp_limit_res_t res;
    int64_t qcount, qpttl;
    char akey[KEY_MAX];     /* the key's session: apikey-<hash> */
    char scope[KEY_MAX];    /* its allowance scope */
    char rkey[KEY_MAX];     /* the key's limiter key */
    char qkey[KEY_MAX];     /* its quota key */
    char skey[KEY_MAX + 8]; /* the sentinel's .BLOCKED key */
} limop_t;

/* The tier tyk.conf selects, Tyk's switches first (TYK-COMPAT 6.2). */
static int conf_tier(const tp_conf_t *c)
{
    if (c->enable_fixed_window_rate_limiter)
        return TIER_FIXED;
    if (c->enable_sentinel_rate_limiter)
        return TIER_SENTINEL;
    if (c->enable_redis_rolling_limiter)
        return TIER_ROLLING;
    return c->tp.rate_limiter[0] == 'e' ? TIER_EXACT : TIER_LOCAL;
}

/* The tier that decides a limit of <rate> per <per> seconds. */
static int tier_of(const tp_worker_t *w, double rate, double per)
{
    int tier = conf_tier(w->conf);
    if (tier != TIER_LOCAL)
        return tier;
    uint32_t n = w->limits != NULL ? tp_limits_nodes(w->limits) : 1;
    if (n > 1 && rate / per <= (double)n * w->conf->drl_threshold)
        return TIER_EXACT; /* a share this small would not be accurate */
    return TIER_LOCAL;
}

/* <s> (<n> bytes) after the <*at> bytes already in <out> (<cap> bytes),
 * cut to fit, NUL-terminated: the Redis names of every keyed request are
 * built with it (no printf on the request path). */
static void put(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n >= cap)
        n = cap - 1 - *at;
    memcpy(out + *at, s, n);
    *at += n;
    out[*at] = '\0';
}

static void puts_(char *out, size_t cap, size_t *at, const char *s)
{
    put(out, cap, at, s, strlen(s));
}

/* Tyk's rate.Prefix: the parts joined by '-', each trimmed of '-', empty
 * ones skipped, after the <*at> bytes in <out>. */
static void key_join(char *out, size_t cap, size_t *at, const char *const *parts, size_t n)
{
    size_t start = *at;
    for (size_t i = 0; i < n; i++) {
        const char *p = parts[i];
        if (p == NULL)
            continue;
        size_t pl = strlen(p);
        while (pl > 0 && *p == '-')
            p++, pl--;
        while (pl > 0 && p[pl - 1] == '-')
            pl--;
        if (pl == 0)
            continue;
        if (*at > start)
            put(out, cap, at, "-", 1);
        put(out, cap, at, p, pl);
    }
}

static void count_stat(tp_req_t *req, int quota)
{
    uint32_t idx = req->route->api->stat_idx;
    if (idx == UINT32_MAX)
        return;
    tp_shm_stat_t *st = &req->conn->w->stats[idx];
    if (quota)
        st->quota_exceeded++;
    else
        st->rate_limited++;
}

/* X-RateLimit-* from a rate decision (rate_limit_response_headers
 * "rate_limits"): set before the decision is acted on, so 429s carry them;
 * the key's limit wins over the API's. */
static void rate_headers(tp_req_t *req, double rate, const tp_limit_res_t *res, int api)
{
    const tp_conf_t *c = req->conn->w->conf;
    if (c->rate_limit_response_headers[0] != 'r' || (api && req->rl_set))
        return;
    req->rl_set = 1;
    req->rl_early = 1;
    req->rl_limit = (int64_t)rate;
    req->rl_remaining = res->remaining > 0 ? res->remaining : 0;
    req->rl_reset = (tp_time_wall_us() + res->reset_us) / 1000000; /* Tyk's Unix(): down */
}

/* The response stage: the request's X-RateLimit-Limit/Remaining/Reset
 * (TYK-COMPAT 6.7); on an error the gateway made only when they came from
 * a rate limit (rate_limit_response_headers "rate_limits"). */
static void rl_headers(const tp_req_t *req, tp_buf_t *b, int gateway)
{
    if (gateway == TP_RESP_GATEWAY && !req->rl_early)
        return; /* (a cached response carries the session's, as Tyk's) */
    if (!req->rl_set)
        return;
    tp_buf_put_header_i64(b, "X-RateLimit-Limit", req->rl_limit);
    tp_buf_put_header_i64(b, "X-RateLimit-Remaining", req->rl_remaining);
    tp_buf_put_header_i64(b, "X-RateLimit-Reset", req->rl_reset);
}

const tp_stage_t tp_stage_rl_headers = {.name = "rl_headers", .headers = rl_headers};

/* ---- the op ------------------------------------------------------------------------ */

static tp_stage_rc_t run(tp_req_t *req, tp_reqpath_t *rp, limop_t *op);

/* An op that waited continues the chain when it has decided. */
static void resume(tp_req_t *req, tp_stage_rc_t rc)
{
    if (rc == TP_STAGE_NEXT || rc == TP_STAGE_ERROR)
        tp_chain_resume(req, rc);
}

/* The op is about to wait: the request's head and paths leave the read
 * buffer (the op itself is the stage's state, in the request's arena). */
static void op_wait(tp_req_t *req, tp_reqpath_t *rp)
{
    tp_req_save(req, rp);
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Drops what the op waits for; the memory is the arena's. */
static void op_release(limop_t *op)
{
    if (op->ev != NULL)
        tp_redis_eval_cancel(op->ev);
    op->ev = NULL;
    if (op->cmd != NULL)
        tp_redis_cancel(op->cmd);
    op->cmd = NULL;
    if (op->timer != NULL)
        uv_close((uv_handle_t *)op->timer, timer_closed);
    op->timer = NULL;
}

/* The stages' cancel(): the request goes away while they wait. */
static void limit_cancel(tp_req_t *req)
{
    limop_t *op = tp_chain_state_peek(req);
    if (op != NULL)
        op_release(op);
}

/* The request is refused: 429 or 403, or a throttled retry. */
static void refuse(tp_req_t *req, limop_t *op, int quota)
{
    if (!req->rl_early)
        req->rl_set = 0; /* quota headers are not on blocked responses */
    count_stat(req, quota);
    if (quota) {
        op_release(op);
        tp_respond_error(req, 403, "Quota exceeded");
        return;
    }
    int api = op->stage == ST_API_RATE;
    op_release(op);
    tp_respond_error(req, 429, api ? "API Rate Limit Exceeded" : "Rate Limit Exceeded");
}

static void storage_failed(tp_req_t *req, limop_t *op)
{
    tp_log_warn("rate limit or quota check failed: %s", op->err);
    if (!req->rl_early)
        req->rl_set = 0;
    op_release(op);
    tp_respond_error(req, 500, LIMITER_DOWN);
}

static void on_throttle(uv_timer_t *t)
{
    limop_t *op = t->data;
    uv_close((uv_handle_t *)t, timer_closed);
    op->timer = NULL;
    tp_req_t *req = op->req;
    resume(req, run(req, &req->saved_rp, op));
}

/* Throttling (6.6): a refused key waits throttle_interval and tries
 * again, up to throttle_retry_limit times. Returns 1 when it waits. */
static int throttle(tp_req_t *req, tp_reqpath_t *rp, limop_t *op)
{
    if (op->stage != ST_KEY_RATE || op->lim.throttle_retry_limit <= 0 ||
        op->lim.throttle_interval <= 0)
        return 0;
    if (op->throttles_left == 0)
        op->throttles_left = op->lim.throttle_retry_limit + 1;
    if (--op->throttles_left <= 0)
        return 0;
    op_wait(req, rp);
    op->timer = tp_malloc(sizeof(*op->timer));
    uv_timer_init(&req->conn->w->loop, op->timer);
    op->timer->data = op;
    uv_timer_start(op->timer, on_throttle, (uint64_t)(op->lim.throttle_interval * 1000), 0);
    return 1;
}

/* ---- deciding one rate limit --------------------------------------------------------- */

static void decided(limop_t *op);
static tp_stage_rc_t decide(limop_t *op);

static void note(tp_worker_t *w, const char *key, int kind, int64_t limit, int64_t count,
                 const tp_limit_res_t *res)
{
    if (w->limits != NULL)
        tp_limits_note(w->limits, key, strlen(key), kind, limit, count, res->remaining,
                       res->reset_us, tp_time_mono_ns());
}

/* A reply that cannot be used: the decision failed. */
static void reply_failed(limop_t *op, const redisReply *rep, const char *err)
{
    op->errors++;
    snprintf(op->err, sizeof(op->err), "%s",
             err != NULL                      ? err
             : rep->type == REDIS_REPLY_ERROR ? rep->str
                                              : "unexpected reply");
}

/* Is the reply an array of at least <n> integers? Records the failure if not. */
static int reply_ints(const redisReply *rep, size_t n, const char *err, limop_t *op)
{
    if (err == NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= n) {
        size_t i = 0;
        while (i < n && rep->element[i]->type == REDIS_REPLY_INTEGER)
            i++;
        if (i == n)
            return 1;
    }
    reply_failed(op, rep, err);
    return 0;
}

static void on_gcra(void *arg, const redisReply *rep, const char *err)
{
    limop_t *op = arg;
    op->ev = NULL;
    op->pending--;
    if (reply_ints(rep, 5, err, op)) {
        op->blocked = rep->element[0]->integer == 0;
        op->res.remaining = rep->element[1]->integer;
        op->res.reset_us = rep->element[2]->integer;
        op->qcount = rep->element[3]->integer;
        op->qpttl = rep->element[4]->integer;
        note(op->req->conn->w, op->what, TP_LIM_EXACT, (int64_t)op->drate, 0, &op->res);
    }
    decided(op);
}

static void on_rolling(void *arg, const redisReply *rep, const char *err)
{
    limop_t *op = arg;
    op->ev = NULL;
    op->pending--;
    if (err == NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        int64_t count = rep->element[0]->integer;
        int sentinel = op->tier == TIER_SENTINEL;
        int64_t sub = sentinel ? 2 : 1;
        int over = (double)count > op->drate - (double)sub;
        tp_limit_res_t lr = {.limit = (int64_t)op->drate};
        lr.remaining = rep->element[1]->type == REDIS_REPLY_INTEGER ? rep->element[1]->integer : 0;
        const redisReply *nx = rep->element[2];
        int64_t next_ns = nx->type == REDIS_REPLY_STRING ? strtoll(nx->str, NULL, 10) : 0;
        int64_t reset_ns = next_ns + (int64_t)(op->dper * 1e9) - tp_time_wall_us() * 1000;
        lr.reset_us = reset_ns > 0 ? reset_ns / 1000 : 0;
        if (!sentinel) {
            op->blocked = over;
            op->res = lr;
            if (lr.remaining > 0) /* Tyk's sliding log: no wait while requests remain */
                op->res.reset_us = 0;
        } else if (over) { /* the next requests are refused by the sentinel key */
            tp_redis_cmd(op->req->conn->w->redis, NULL, NULL, "SET %s 1 NX EX %lld", op->skey,
                         (long long)ceil(op->dper));
        } /* the sentinel reports what its key says (on_sentinel), not the log */
        note(op->req->conn->w, op->what, TP_LIM_ROLLING, (int64_t)op->drate, count + 1, &lr);
    } else {
        reply_failed(op, rep, err);
    }
    decided(op);
}

static void on_sentinel(void *arg, const redisReply *rep, const char *err)
{
    limop_t *op = arg;
    op->cmd = NULL;
    op->pending--;
    if (err == NULL && rep->type == REDIS_REPLY_INTEGER) {
        if (rep->integer > 0) {
            op->blocked = 1;
            op->res.remaining = 0;
            op->res.reset_us = rep->integer * 1000000;
        }
    } else {
        reply_failed(op, rep, err);
    }
    decided(op);
}

static void on_fixed(void *arg, const redisReply *rep, const char *err)
{
    limop_t *op = arg;
    op->ev = NULL;
    op->pending--;
    if (err == NULL && rep->type == REDIS_REPLY_INTEGER) {
        int64_t c = rep->integer;
        op->blocked = (double)c > op->drate;
        op->res.remaining = 0; /* Tyk reports none for the fixed window */
        note(op->req->conn->w, op->what, TP_LIM_FIXED, (int64_t)op->drate, c, &op->res);
        if (!op->blocked) /* and no wait until the window is full */
            op->res.reset_us = 0;
    } else {
        reply_failed(op, rep, err);
    }
    decided(op);
}

static void on_quota(void *arg, const redisReply *rep, const char *err)
{
    limop_t *op = arg;
    op->ev = NULL;
    op->pending--;
    if (reply_ints(rep, 2, err, op)) {
        op->qcount = rep->element[0]->integer;
        op->qpttl = rep->element[1]->integer;
    }
    decided(op);
}

/* Asks Redis for one rate decision of tier <tier> on <key>; with <quota>,
 * the key's quota is decided in the same script. */
static void ask_rate(tp_req_t *req, tp_reqpath_t *rp, limop_t *op, int tier, const char *key,
                     double rate, double per, int quota)
{
    tp_worker_t *w = req->conn->w;
    op_wait(req, rp);
    op->tier = tier;
    op->what = key;
    op->drate = rate;
    op->dper = per;
    op->blocked = 0;
    op->errors = 0;
    op->qcount = op->qpttl = -1;
    memset(&op->res, 0, sizeof(op->res));
    op->res.limit = (int64_t)rate;
    char a[6][32];
    const char *args[8];
    int nkeys = 0, n = 0;
    switch (tier) {
    case TIER_EXACT: {
        char gkey[KEY_MAX + 8];
        size_t at = 0;
        puts_(gkey, sizeof(gkey), &at, key);
        puts_(gkey, sizeof(gkey), &at, ".gcra");
        args[n++] = gkey;
        nkeys = 1;
        if (quota) {
            args[n++] = op->qkey;
            nkeys++;
        }
        /* what "%.0f" printed (nearbyint rounds as printf does), without printf */
        tp_fmt_i64(a[0], (int64_t)nearbyint(per * 1e6 / rate));
        tp_fmt_i64(a[1], (int64_t)nearbyint(per * 1e6));
        tp_fmt_i64(a[2],
                   quota ? (op->lim.quota_renewal > 0 ? op->lim.quota_renewal * 1000 : 0) : -1);
        tp_fmt_i64(a[3], op->lim.quota_max);
        for (int i = 0; i < 4; i++)
            args[n++] = a[i];
        op->quota_in = quota;
        op->lease = 1;
        op->pending = 1;
        op->ev = tp_redis_eval(w->redis, &gcra_script, on_gcra, op, nkeys, n, args, NULL);
        return;
    }
    case TIER_ROLLING:
    case TIER_SENTINEL: {
        int64_t now = tp_time_wall_us() * 1000;
        snprintf(a[0], sizeof(a[0]), "%lld", (long long)now);
        snprintf(a[1], sizeof(a[1]), "%lld", (long long)(now - (int64_t)(per * 1e9)));
        snprintf(a[2], sizeof(a[2]), "%lld", (long long)rate);
        snprintf(a[3], sizeof(a[3]), "%lld", (long long)per);
        args[n++] = key;
        for (int i = 0; i < 4; i++)
            args[n++] = a[i];
        op->pending = 1;
        if (tier == TIER_SENTINEL) {
            snprintf(op->skey, sizeof(op->skey), "%s.BLOCKED", key);
            op->pending = 2;
            op->cmd = tp_redis_cmd(w->redis, on_sentinel, op, "TTL %s", op->skey);
        }
        op->ev = tp_redis_eval(w->redis, &rolling_script, on_rolling, op, 1, n, args, NULL);
        return;
    }
    case TIER_FIXED: {
        int64_t now = tp_time_wall_us() * 1000, per_ns = (int64_t)(per * 1e9);
        if (per_ns <= 0)
            per_ns = 1;
        /* Go's time.Truncate, as Tyk's window: multiples of per since Go's
         * zero time (0001-01-01 UTC), not since the Unix epoch (the same
         * only when per divides GO_ZERO_TO_UNIX_S, e.g. not for a week) */
        int64_t start =
            now - (int64_t)(((unsigned __int128)GO_ZERO_TO_UNIX_S * 1000000000u + (uint64_t)now) %
                            (uint64_t)per_ns);
        char fkey[KEY_MAX + 32];
        snprintf(fkey, sizeof(fkey), "%s/%lld", key, (long long)start);
        snprintf(a[0], sizeof(a[0]), "%lld", (long long)((start + per_ns - now) / 1000000 + 1));
        args[n++] = fkey;
        args[n++] = a[0];
        op->res.reset_us = (start + per_ns - now) / 1000;
        op->pending = 1;
        op->ev = tp_redis_eval(w->redis, &fixed_script, on_fixed, op, 1, n, args, NULL);
        return;
    }
    }
}

/* Does this key's quota go by leases (the local tier, a large quota)? */
static int leased(const tp_worker_t *w, const limop_t *op)
{
    return w->limits != NULL && conf_tier(w->conf) == TIER_LOCAL && op->lim.quota_max >= LEASE_MIN;
}

static void ask_quota(tp_req_t *req, tp_reqpath_t *rp, limop_t *op)
{
    tp_worker_t *w = req->conn->w;
    op_wait(req, rp);
    op->errors = 0;
    op->qcount = op->qpttl = -1;
    op->lease = leased(w, op) ? op->lim.quota_max / LEASE_PART : 1;
    char renewal[32], n[32];
    snprintf(renewal, sizeof(renewal), "%lld",
             (long long)(op->lim.quota_renewal > 0 ? op->lim.quota_renewal * 1000 : 0));
    snprintf(n, sizeof(n), "%lld", (long long)op->lease);
    const char *args[3] = {op->qkey, renewal, n};
    op->pending = 1;
    op->ev = tp_redis_eval(w->redis, &quota_script, on_quota, op, 1, 3, args, NULL);
}

/* ---- the stages ---------------------------------------------------------------------- */

/* The quota's verdict, from a reply: 1 go on, 0 refused. */
static int quota_verdict(tp_req_t *req, limop_t *op)
{
    tp_worker_t *w = req->conn->w;
    int64_t max = op->lim.quota_max, count = op->qcount, pttl = op->qpttl;
    int64_t lease = op->lease > 1 ? op->lease : 1;
    /* of the requests just counted, those within the quota */
    int64_t granted = max - (count - lease);
    if (granted > lease)
        granted = lease;
    int64_t left = max - count > 0 ? max - count : 0;
    tp_limit_res_t r = {max, left + (granted > 1 ? granted - 1 : 0), pttl > 0 ? pttl * 1000 : 0};
    if (lease > 1)
        tp_limits_lease_add(w->limits, op->qkey, strlen(op->qkey), max, granted - 1, count,
                            tp_time_mono_ns() + (pttl > 0 ? pttl : 0) * 1000000, tp_time_mono_ns());
    else
        note(w, op->qkey, TP_LIM_QUOTA, max, count, &r);
    int64_t renews = pttl > 0 ? tp_time_wall_us() / 1000000 + (pttl + 999) / 1000 : 0;
    tp_limit_wb_note(w, op->akey, op->scope, op->qkey, max);
    if (granted <= 0)
        return 0;
    if (!req->rl_early) {
        req->rl_remaining = r.remaining;
        req->rl_reset = renews;
    }
    return 1;
}

/* A Redis decision came back. */
static void decided(limop_t *op)
{
    if (op->pending > 0)
        return;
    tp_req_t *req = op->req;
    resume(req, decide(op));
}

static tp_stage_rc_t decide(limop_t *op)
{
    tp_req_t *req = op->req;
    tp_reqpath_t *rp = &req->saved_rp;
    if (op->errors) {
        /* an API-wide limit lets requests through, as Tyk's RateLimitForAPI
         * does: keyless APIs keep serving while Redis is away */
        if (!req->conn->w->conf->tp.limits_fail_open && op->stage != ST_API_RATE) {
            storage_failed(req, op);
            return TP_STAGE_DONE;
        }
        tp_log_warn("rate limit or quota check failed (letting the request through): %s", op->err);
        op->stage++;
        return run(req, rp, op);
    }
    if (op->stage == ST_QUOTA) {
        if (!quota_verdict(req, op)) {
            refuse(req, op, 1);
            return TP_STAGE_DONE;
        }
        op->stage = ST_API_RATE;
        return run(req, rp, op);
    }
    rate_headers(req, op->drate, &op->res, op->stage == ST_API_RATE);
    if (op->blocked) {
        if (!throttle(req, rp, op)) {
            refuse(req, op, 0);
            return TP_STAGE_DONE;
        }
        return TP_STAGE_LATER;
    }
    if (op->stage == ST_KEY_RATE && op->quota_in) {
        if (!quota_verdict(req, op)) {
            refuse(req, op, 1);
            return TP_STAGE_DONE;
        }
        op->stage = ST_API_RATE;
    } else {
        op->stage++;
    }
    return run(req, rp, op);
}

/* One rate decision for the current stage. Returns -1 when admitted here,
 * else the stage's answer: TP_STAGE_LATER on its way (Redis, a throttle
 * delay), TP_STAGE_DONE refused. */
static int rate_stage(tp_req_t *req, tp_reqpath_t *rp, limop_t *op, const char *key, double rate,
                      double per, int with_quota)
{
    tp_worker_t *w = req->conn->w;
    int tier = tier_of(w, rate, per);
    if (tier == TIER_LOCAL && w->limits != NULL) {
        tp_limit_res_t res;
        uint32_t n = tp_limits_nodes(w->limits);
        double share = rate / (double)n;
        int ok = tp_limits_take(w->limits, key, strlen(key), share, (int64_t)(per * 1e9),
                                tp_time_mono_ns(), &res);
        rate_headers(req, rate, &res, op->stage == ST_API_RATE);
        if (ok)
            return -1;
        if (!throttle(req, rp, op)) {
            refuse(req, op, 0);
            return TP_STAGE_DONE;
        }
        return TP_STAGE_LATER;
    }
    if (w->redis == NULL) {
        if (w->conf->tp.limits_fail_open || op->stage == ST_API_RATE)
            return -1;
        snprintf(op->err, sizeof(op->err), "no storage configured");
        storage_failed(req, op);
        return TP_STAGE_DONE;
    }
    /* the quota joins the rate script when both keys can be in one script */
    int quota = with_quota && tier == TIER_EXACT && !w->conf->storage.enable_cluster;
    ask_rate(req, rp, op, tier, key, rate, per, quota);
    return TP_STAGE_LATER;
}

static const tp_rlrule_t *api_rule(tp_req_t *req, tp_reqpath_t *rp)
{
    const tp_api_rules_t *r = req->rules;
    if (!r->has_api_limits)
        return NULL;
    const tp_version_t *v = req->version;
    if (v != NULL && v->nrl_rules > 0) {
        const char *const *paths = tp_req_rulepaths(req, rp, 0);
        const char *method = llhttp_method_name(req->method);
        for (size_t i = 0; i < v->nrl_rules; i++)
            if (tp_rlrule_match(&v->rl_rules[i], method, paths, 3))
                return &v->rl_rules[i];
    }
    return r->global.rate > 0 ? &r->global : NULL;
}

static tp_stage_rc_t finish(limop_t *op)
{
    op_release(op);
    return TP_STAGE_NEXT;
}

/* Runs the steps from op->stage to op->last. */
static tp_stage_rc_t run(tp_req_t *req, tp_reqpath_t *rp, limop_t *op)
{
    for (;;) {
        if (op->stage > op->last)
            return finish(op);
        switch (op->stage) {
        case ST_KEY_RATE: {
            int with_quota = op->lim.quota_max > 0 && !req->rules->disable_quota;
            if (op->rate > 0 && op->per > 0 && !req->rules->disable_rate_limit) {
                int rc = rate_stage(req, rp, op, op->rkey, op->rate, op->per, with_quota);
                if (rc >= 0)
                    return (tp_stage_rc_t)rc;
            }
            op->stage = ST_QUOTA;
            break;
        }
        case ST_QUOTA:
            if (op->lim.quota_max > 0 && !req->rules->disable_quota) {
                tp_worker_t *w = req->conn->w;
                tp_limit_res_t res;
                if (leased(w, op) &&
                    tp_limits_lease_take(w->limits, op->qkey, strlen(op->qkey), op->lim.quota_max,
                                         tp_time_mono_ns(), &res)) {
                    /* no write-back to note: the counter moves only with leases */
                    if (!req->rl_early) {
                        req->rl_remaining = res.remaining;
                        req->rl_reset = (tp_time_wall_us() + res.reset_us) / 1000000;
                    }
                    op->stage = ST_API_RATE;
                    break;
                }
                if (w->redis == NULL) {
                    if (!w->conf->tp.limits_fail_open) {
                        snprintf(op->err, sizeof(op->err), "no storage configured");
                        storage_failed(req, op);
                        return TP_STAGE_DONE;
                    }
                } else {
                    ask_quota(req, rp, op);
                    return TP_STAGE_LATER;
                }
            }
            op->stage = ST_API_RATE;
            break;
        case ST_API_RATE: {
            const tp_rlrule_t *r = api_rule(req, rp);
            if (r != NULL) {
                int rc = rate_stage(req, rp, op, r->key, r->rate, r->per, 0);
                if (rc >= 0)
                    return (tp_stage_rc_t)rc;
            }
            op->stage = ST_DONE;
            break;
        }
        default:
            return finish(op);
        }
    }
}

/* ---- the stages ------------------------------------------------------------------------ */

/* A request's limits from <stage> to <last>, all else empty: the key
 * buffers are only cleared, not zeroed, as this is on the request path. */
static void op_init(limop_t *op, tp_req_t *req, int stage, int last)
{
    memset(op, 0, offsetof(limop_t, akey));
    op->req = req;
    op->stage = stage;
    op->last = last;
    op->lease = 1;
    op->akey[0] = op->scope[0] = op->rkey[0] = op->qkey[0] = op->skey[0] = '\0';
}

/* RateLimitAndQuotaCheck, on the limits the access stage picked. */
/* An internal loop counts once, unless it asked for check_limits (Tyk's
 * ctxCheckLimits). */
static int loop_exempt(const tp_req_t *req)
{
    return req->loop_level > 0 && !req->loop_check;
}

static tp_stage_rc_t key_limit_run(tp_req_t *req)
{
    if (req->sess == NULL || loop_exempt(req)) /* an ignored path; a loop */
        return TP_STAGE_NEXT;
    const tp_keyctx_t *k = &req->keyctx;
    const tp_keylimit_t *q = k->lim;
    req->rl_set = 1; /* quotas mode: the session's quota, counted or not */
    req->rl_early = 0;
    req->rl_limit = q->quota_max;
    req->rl_remaining = q->quota_remaining;
    req->rl_reset = q->quota_renews;
    if (req->conn->w->conf->rate_limit_response_headers[0] == 'r')
        req->rl_set = 0;
    int rate_on = k->rate > 0 && k->per > 0 && !req->rules->disable_rate_limit;
    int quota_on = q->quota_max > 0 && !req->rules->disable_quota;
    if (!rate_on && !quota_on)
        return TP_STAGE_NEXT;
    limop_t *op = tp_chain_state(req);
    op_init(op, req, ST_KEY_RATE, ST_QUOTA);
    op->lim = *q;
    op->rate = k->rate;
    op->per = k->per;
    if (rate_on) {
        const char *parts[3] = {k->scope, k->khash, k->suffix};
        size_t at = 0;
        puts_(op->rkey, sizeof(op->rkey), &at, "rate-limit-");
        key_join(op->rkey, sizeof(op->rkey), &at, parts, 3);
    }
    if (quota_on) {
        size_t at = 0;
        puts_(op->qkey, sizeof(op->qkey), &at, "quota-");
        if (k->scope[0] != '\0') {
            puts_(op->qkey, sizeof(op->qkey), &at, k->scope);
            put(op->qkey, sizeof(op->qkey), &at, "-", 1);
        }
        puts_(op->qkey, sizeof(op->qkey), &at, k->khash);
        at = 0;
        puts_(op->akey, sizeof(op->akey), &at, "apikey-");
        puts_(op->akey, sizeof(op->akey), &at, k->khash);
        at = 0;
        puts_(op->scope, sizeof(op->scope), &at, k->scope);
    }
    return run(req, req->rp, op);
}

static int key_limit_wanted(const tp_chain_api_t *a)
{
    return !a->keyless;
}

const tp_stage_t tp_stage_key_limit = {.name = "key_limit",
                                       .wanted = key_limit_wanted,
                                       .run = key_limit_run,
                                       .cancel = limit_cancel,
                                       .state = sizeof(limop_t)};

/* RateLimitForAPI: on every request of the API, keyed or not. */
static tp_stage_rc_t api_limit_run(tp_req_t *req)
{
    if (!req->rules->has_api_limits || loop_exempt(req))
        return TP_STAGE_NEXT;
    limop_t *op = tp_chain_state(req);
    op_init(op, req, ST_API_RATE, ST_API_RATE);
    return run(req, req->rp, op);
}

static int api_limit_wanted(const tp_chain_api_t *a)
{
    return a->api_limits;
}

const tp_stage_t tp_stage_api_limit = {.name = "api_limit",
                                       .wanted = api_limit_wanted,
                                       .run = api_limit_run,
                                       .cancel = limit_cancel,
                                       .state = sizeof(limop_t)};

/* ---- node announcements ---------------------------------------------------------------- */

static void on_nodes(void *arg, const redisReply *rep, const char *err)
{
    tp_worker_t *w = arg;
    if (err != NULL || rep->type != REDIS_REPLY_INTEGER) {
        tp_log_debug("node announcement failed: %s", err != NULL                      ? err
                                                     : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                                                      : "reply");
        return;
    }
    uint32_t n = rep->integer > 0 ? (uint32_t)rep->integer : 1;
    if (n != tp_limits_nodes(w->limits))
        tp_log_info("rate limits: %u live gateway node%s", n, n == 1 ? "" : "s");
    tp_limits_set_nodes(w->limits, n);
}

static void announce(uv_timer_t *t)
{
    tp_worker_t *w = t->data;
    if (w->redis == NULL || w->draining)
        return;
    int64_t f = w->conf->drl_notification_frequency;
    char ttl[32];
    /* Tyk's nodes expire 4 s after their last notice at the default 2 s */
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(2 * f * 1000));
    const char *args[3] = {NODES_KEY, tp_limits_node_id(w->limits), ttl};
    tp_redis_eval(w->redis, &nodes_script, on_nodes, w, 1, 3, args, NULL);
}

void tp_limit_init(tp_worker_t *w)
{
    tp_script_init(&gcra_script, GCRA_LUA);
    tp_script_init(&quota_script, QUOTA_LUA);
    tp_script_init(&rolling_script, ROLLING_LUA);
    tp_script_init(&fixed_script, FIXED_LUA);
    tp_script_init(&nodes_script, NODES_LUA);
    w->limits = w->shm->limits;
    const tp_conf_t *c = w->conf;
    if (w->limits == NULL || conf_tier(c) != TIER_LOCAL || c->management_node)
        return;
    uv_timer_init(&w->loop, &w->announce_timer);
    w->announce_timer.data = w;
    uint64_t every = (uint64_t)c->drl_notification_frequency * 1000;
    uv_timer_start(&w->announce_timer, announce, 0, every);
    uv_unref((uv_handle_t *)&w->announce_timer);
}
