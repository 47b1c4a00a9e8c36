/*
 * worker/tp_limit_wb.c: quota_remaining and quota_renews written back into
 * the session, as Tyk's updateSessionQuota does (TYK-COMPAT 6.4 step 6), so
 * that clients and Tyk nodes reading apikey-<hash> see the quota left.
 *
 * Tyk rewrites the whole session after every counted request. Here the
 * keys whose quota was counted are gathered and written back once every
 * turnpike.quota_writeback seconds at most (10 by default, the session
 * cache's timeout), in batches:
 * the session and its counter are read, the values computed from the
 * counter (so every worker and node writes the same truth, whatever it saw
 * last) are patched into the root (no scope) or the non-empty per-API
 * limits with that allowance scope, and the session is stored by a
 * compare-and-set script, so a key changed in between (a REST update) is
 * never overwritten. The copy lags the counter by up to that interval;
 * GET /tyk/keys/{id} computes the live value anyway.
 *
 * Used by: tp_limit.c, on the worker's loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_policy_apply.h"
#include "tp_redis_script.h"
#include "tp_time.h"
#include "tp_worker.h"

#define WB_MAX 4096        /* keys gathered per flush; more wait for the next */
#define WB_BATCH 128       /* keys read back at a time ... */
#define WB_BATCH_GAP_MS 10 /* ... this far apart */

typedef struct tp_wb_s {
    char *rkey;  /* apikey-<hash> */
    char *scope; /* "" for the session root */
    char *qkey;  /* its counter */
    int64_t max;
} wb_t;

typedef struct wbread_s {
    tp_worker_t *w;
    wb_t e;
    int pending;
    char *json; /* the session as read */
    size_t json_len;
    int64_t count, pttl;
} wbread_t;

/* Stores <new> only if the session is still <old>, keeping its TTL. */
static const char CAS_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "redis.call('SET', KEYS[1], ARGV[2], 'XX', 'KEEPTTL') return 1 end "
                              "return 0";
static tp_script_t cas_script;

static void wb_free(wb_t *e)
{
    free(e->rkey);
    free(e->scope);
    free(e->qkey);
}

/* Sets quota_remaining and, when the window is known, quota_renews in
 * <obj> (the root or a limit). Returns whether it changed. */
static int update(cJSON *obj, const int64_t vals[2])
{
    static const char *const names[2] = {"quota_remaining", "quota_renews"};
    int changed = 0;
    for (int i = 0; i < 2; i++) {
        const cJSON *o = tp_json_get(obj, names[i]);
        if ((i == 1 && vals[i] <= 0) ||
            (o != NULL && cJSON_IsNumber(o) && (int64_t)o->valuedouble == vals[i]))
            continue;
        tp_json_set_number(obj, names[i], (double)vals[i]);
        changed = 1;
    }
    return changed;
}

/* updateSessionQuota: the per-API limits with this scope, and the root
 * for the session's own quota. Returns whether anything changed. */
static int patch(cJSON *s, const wb_t *e, const int64_t vals[2])
{
    int changed = 0;
    cJSON *ar = cJSON_GetObjectItemCaseSensitive(s, "access_rights"), *a;
    cJSON_ArrayForEach(a, ar)
    {
        cJSON *limit = cJSON_GetObjectItemCaseSensitive(a, "limit");
        const cJSON *scope = cJSON_GetObjectItemCaseSensitive(a, "allowance_scope");
        const char *sc = cJSON_IsString(scope) ? scope->valuestring : "";
        if (!tp_api_limit_empty(limit) && strcmp(sc, e->scope) == 0)
            changed |= update(limit, vals); /* an empty limit is no limit: left so */
    }
    if (e->scope[0] == '\0')
        changed |= update(s, vals);
    return changed;
}

static void on_cas(void *arg, const redisReply *rep, const char *err)
{
    (void)arg;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR)
        tp_log_debug("quota write-back: %s", err != NULL ? err : rep->str);
}

/* The session and its counter are read: write the live values back. */
static void wb_write(wbread_t *r)
{
    tp_worker_t *w = r->w;
    if (r->json != NULL && w->redis != NULL) {
        char why[256];
        cJSON *s = tp_json_parse(r->json, r->json_len, why, sizeof(why));
        int64_t left = r->e.max - (r->count > 0 ? r->count : 0);
        int64_t vals[2] = {left > 0 ? left : 0,
                           r->pttl > 0 ? tp_time_wall_us() / 1000000 + (r->pttl + 999) / 1000 : 0};
        if (s != NULL && cJSON_IsObject(s) && patch(s, &r->e, vals)) {
            char *json = cJSON_PrintUnformatted(s);
            const char *args[3] = {r->e.rkey, r->json, json};
            size_t lens[3] = {strlen(r->e.rkey), r->json_len, strlen(json)};
            tp_redis_eval(w->redis, &cas_script, on_cas, NULL, 1, 3, args, lens);
            free(json);
        }
        cJSON_Delete(s);
    }
    free(r->json);
    wb_free(&r->e);
    free(r);
}

static void on_session(void *arg, const redisReply *rep, const char *err)
{
    wbread_t *r = arg;
    if (err == NULL && rep->type == REDIS_REPLY_STRING) {
        r->json = tp_strndup(rep->str, rep->len);
        r->json_len = rep->len;
    }
    if (--r->pending == 0)
        wb_write(r);
}

static void on_count(void *arg, const redisReply *rep, const char *err)
{
    wbread_t *r = arg;
    if (err == NULL && rep->type == REDIS_REPLY_STRING)
        r->count = strtoll(rep->str, NULL, 10);
    if (--r->pending == 0)
        wb_write(r);
}

static void on_pttl(void *arg, const redisReply *rep, const char *err)
{
    wbread_t *r = arg;
    if (err == NULL && rep->type == REDIS_REPLY_INTEGER)
        r->pttl = rep->integer;
    if (--r->pending == 0)
        wb_write(r);
}

/* A key's session is written back this often at most. */
static uint64_t delay_ms(const tp_worker_t *w)
{
    return (uint64_t)w->conf->tp.quota_writeback * 1000;
}

/* Takes the keys gathered so far and reads them back in batches, so a
 * flush of thousands of keys never holds the loop or the Redis connection
 * for long. */
static void flush(uv_timer_t *t)
{
    tp_worker_t *w = t->data;
    if (w->wbf_n == 0) {
        struct tp_wb_s *tmp = w->wbf;
        w->wbf = w->wb;
        w->wbf_n = w->wb_n;
        w->wbf_i = 0;
        w->wb = tmp;
        w->wb_n = 0;
        tp_strmap_free(&w->wb_map);
        memset(&w->wb_map, 0, sizeof(w->wb_map));
    }
    size_t end = w->wbf_i + WB_BATCH < w->wbf_n ? w->wbf_i + WB_BATCH : w->wbf_n;
    for (; w->wbf_i < end; w->wbf_i++) {
        wb_t *e = &w->wbf[w->wbf_i];
        if (w->redis == NULL) {
            wb_free(e);
            continue;
        }
        wbread_t *r = tp_calloc(1, sizeof(*r));
        r->w = w;
        r->e = *e;
        r->pending = 3;
        r->pttl = -2;
        tp_redis_cmd(w->redis, on_session, r, "GET %s", e->rkey);
        tp_redis_cmd(w->redis, on_count, r, "GET %s", e->qkey);
        tp_redis_cmd(w->redis, on_pttl, r, "PTTL %s", e->qkey);
    }
    if (w->wbf_i < w->wbf_n) {
        uv_timer_start(&w->wb_timer, flush, WB_BATCH_GAP_MS, 0);
        return;
    }
    w->wbf_n = w->wbf_i = 0;
    if (w->wb_n > 0)
        uv_timer_start(&w->wb_timer, flush, delay_ms(w), 0);
}

void tp_limit_wb_note(tp_worker_t *w, const char *rkey, const char *scope, const char *qkey,
                      int64_t max)
{
    if (w->conf->tp.quota_writeback < 0)
        return;
    if (w->wb == NULL) {
        tp_script_init(&cas_script, CAS_LUA);
        w->wb = tp_calloc(WB_MAX, sizeof(*w->wb));
        w->wbf = tp_calloc(WB_MAX, sizeof(*w->wbf));
        uv_timer_init(&w->loop, &w->wb_timer);
        w->wb_timer.data = w;
    }
    char id[512];
    snprintf(id, sizeof(id), "%s\n%s", rkey, scope);
    int added = 0;
    if (w->wb_n >= WB_MAX && tp_strmap_get(&w->wb_map, id) == NULL)
        return; /* a later request of that key brings it back */
    uint32_t *at = tp_strmap_put(&w->wb_map, id, (uint32_t)w->wb_n, &added);
    wb_t *e = &w->wb[*at];
    if (added) {
        e->rkey = tp_strdup(rkey);
        e->scope = tp_strdup(scope);
        e->qkey = tp_strdup(qkey);
        w->wb_n++;
    }
    e->max = max;
    if (!uv_is_active((uv_handle_t *)&w->wb_timer))
        uv_timer_start(&w->wb_timer, flush, delay_ms(w), 0);
}
