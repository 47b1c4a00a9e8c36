/*
 * worker/tp_stats.c: the log stage behind the admin socket's "show stat":
 * per API, requests answered and their status classes, counted in this
 * worker's rows of shared memory (shm/tp_shm.c), which the master sums.
 * Rate-limit and quota refusals are counted by tp_limit.c as it decides.
 */
#include "tp_worker.h"

static void stats_log(tp_req_t *req)
{
    if (req->route == NULL || req->route->api->stat_idx == UINT32_MAX)
        return;
    tp_shm_stat_t *st = &req->conn->w->stats[req->route->api->stat_idx];
    st->requests++;
    st->status[req->status >= 100 && req->status < 600 ? req->status / 100 : 0]++;
    if (req->up_start_ms != 0) {
        st->upstream_ms += req->up_ms;
        st->upstream_n++;
    }
}

const tp_stage_t tp_stage_stats = {.name = "stats", .log = stats_log};
