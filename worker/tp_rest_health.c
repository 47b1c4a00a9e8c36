/*
 * worker/tp_rest_health.c: GET /tyk/health?api_id= (TYK-COMPAT 9.3), the
 * per-API rates Tyk reports over health_check_value_timeouts: requests,
 * 429s, quota refusals and key failures per second, and the average time
 * the upstream took to answer, in ms. From the samples the master takes
 * once a second (master/tp_apihealth.c).
 */
#include <stdio.h>
#include <string.h>

#include "tp_worker.h"

static double per(uint64_t a, uint64_t b, uint64_t secs)
{
    return secs > 0 && a >= b ? (double)(a - b) / (double)secs : 0;
}

void tp_rest_health(tp_req_t *req, tp_str_t query)
{
    tp_worker_t *w = req->conn->w;
    const tp_conf_t *conf = w->conf;
    if (req->method != HTTP_GET) {
        tp_rest__bad_method(req);
        return;
    }
    if (!conf->health_check.enable_health_checks) {
        tp_rest__error(req, 400, "Health checks are not enabled for this node");
        return;
    }
    tp_buf_t id = {0};
    if (tp_query_get(query, "api_id", &id) < 0 || id.len == 0) {
        tp_buf_free(&id);
        tp_rest__error(req, 400, "missing api_id parameter");
        return;
    }
    const tp_api_t *api = NULL;
    for (size_t i = 0; i < req->snap->napis && api == NULL; i++)
        if (strcmp(req->snap->apis[i]->api_id, id.data) == 0)
            api = req->snap->apis[i];
    tp_buf_free(&id);
    if (api == NULL) {
        tp_rest__error(req, 404, "API ID not found");
        return;
    }
    tp_health_t *h = w->shm->health;
    tp_shm_stat_t now = {0}, then = {0};
    uint64_t secs = 0;
    if (h != NULL && api->stat_idx < h->max_apis) {
        uint64_t tick = atomic_load_explicit(&h->tick, memory_order_acquire);
        uint64_t window = (uint64_t)conf->health_check.health_check_value_timeouts;
        if (window > TP_HEALTH_RING - 4)
            window = TP_HEALTH_RING - 4; /* the ring holds a minute */
        secs = tick < window ? tick : window;
        if (tick > 0) {
            now = h->ring[api->stat_idx][tick % TP_HEALTH_RING];
            then = h->ring[api->stat_idx][(tick - secs) % TP_HEALTH_RING];
        }
    }
    uint64_t up_n = now.upstream_n >= then.upstream_n ? now.upstream_n - then.upstream_n : 0;
    double latency = up_n > 0 ? (double)(now.upstream_ms - then.upstream_ms) / (double)up_n : 0;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"throttle_reqests_per_second\":%.15g,\"quota_violations_per_second\":%.15g,"
             "\"key_failures_per_second\":%.15g,\"average_upstream_latency\":%.15g,"
             "\"average_requests_per_second\":%.15g}",
             per(now.rate_limited, then.rate_limited, secs),
             per(now.quota_exceeded, then.quota_exceeded, secs),
             per(now.key_failures, then.key_failures, secs), latency,
             per(now.requests, then.requests, secs));
    tp_rest__reply(req, 200, body);
}
