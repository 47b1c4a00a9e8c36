/*
 * worker/tp_metrics.c: the log stage behind the Prometheus endpoint
 * (turnpike.metrics_port, served by the master: master/tp_metrics.c).
 *
 * Per answered API request it counts what Tyk Pump's prometheus pump
 * would count from the request's analytics record (TYK-COMPAT 16.4): the
 * status code per API, the latencies (total, upstream, gateway) per API,
 * the status per normalised path and method, and per key (hashed as Tyk
 * stores it). The same requests as records: not for do_not_track APIs and
 * endpoints, ignored_ips, mock replies. The counters are this worker's
 * row of shared memory (shm/tp_shm_metrics.c): no locks, no Redis.
 */
#include <string.h>

#include "tp_shm_metrics.h"
#include "tp_worker.h"

static void metrics_log(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    tp_metrics_t *m = w->shm->metrics;
    if (m == NULL || req->track == NULL || req->not_recorded || req->route == NULL)
        return;
    const tp_api_t *api = req->route->api;
    int64_t total, upstream;
    tp_req_latency(req, &total, &upstream);
    tp_met_api_t *a = tp_metrics_api(m, w->id, api->stat_idx);
    if (a != NULL)
        tp_metrics_count(a, req->status, total, upstream);

    tp_str_t path = tp_track_path(req);
    tp_analytics_normalise(w->analytics, w->conf, path.p, path.n, &w->met_path);
    const char *method = llhttp_method_name(req->method);
    const char *v[3] = {api->api_id, w->met_path.data, method};
    size_t len[3] = {strlen(api->api_id), w->met_path.len, strlen(method)};
    tp_metrics_count_series(m, w->id, TP_MET_PATH, req->status, v, len, 3);

    const char *key = req->sess != NULL ? tp_session_key_hash(req->sess) : "";
    if (key[0] != '\0') {
        size_t klen = strlen(key);
        tp_metrics_count_series(m, w->id, TP_MET_KEY, req->status, &key, &klen, 1);
    }
}

static int metrics_wanted(const tp_chain_api_t *a)
{
    return a->analytics && a->metrics;
}

const tp_stage_t tp_stage_metrics = {
    .name = "metrics", .wanted = metrics_wanted, .log = metrics_log};
