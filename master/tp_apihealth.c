/*
 * master/tp_apihealth.c: the samples behind GET /tyk/health (TYK-COMPAT
 * 9.3). With health_check.enable_health_checks, once a second the master
 * sums every API's counters over the workers' rows (tp_shm_stat_sum: requests,
 * 429s, quota refusals, key failures, upstream time) into the API's ring;
 * the worker answering /tyk/health turns two samples a window apart into
 * per-second rates (worker/tp_rest_health.c). Tyk keeps these as sorted
 * sets in Redis; here they cost the request path nothing.
 */
#include <sys/mman.h>

#include "tp_log.h"
#include "tp_master.h"
#include "tp_shm.h"

tp_health_t *tp_health_create(uint32_t max_apis)
{
    size_t size = sizeof(tp_health_t) + (size_t)max_apis * sizeof(((tp_health_t *)0)->ring[0]);
    void *p =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    tp_health_t *h = p;
    h->max_apis = max_apis;
    return h;
}

static void sample(tp_master_t *m)
{
    tp_health_t *h = m->shm->health;
    const tp_snapshot_t *snap = tp_shm_current(m->shm);
    uint64_t next = atomic_load_explicit(&h->tick, memory_order_relaxed) + 1;
    for (size_t i = 0; i < snap->napis; i++) {
        uint32_t idx = snap->apis[i]->stat_idx;
        if (idx >= h->max_apis)
            continue;
        tp_shm_stat_sum(m->shm, idx, &h->ring[idx][next % TP_HEALTH_RING]);
    }
    atomic_store_explicit(&h->tick, next, memory_order_release);
}

static void on_sample(uv_timer_t *t)
{
    tp_master_t *m = t->data;
    if (m->gen->conf.health_check.enable_health_checks)
        sample(m);
}

void tp_apihealth_start(tp_master_t *m)
{
    if (m->shm->health == NULL)
        return;
    uv_timer_init(&m->loop, &m->health_timer);
    m->health_timer.data = m;
    uv_timer_start(&m->health_timer, on_sample, 1000, 1000);
    uv_unref((uv_handle_t *)&m->health_timer);
}
