/* shm/tp_shm.c: the shared region, generation slots and freezing a generation into one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_shm.h"
#include "tp_strmap.h"
#include "tp_time.h"
#include "tp_shm_map.h"

void *tp_shm_map(size_t size, const char *what, char *err, size_t errlen)
{
    void *p =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %zu bytes for %s: %s", size, what, strerror(errno));
        return NULL;
    }
    return p;
}

tp_shm_t *tp_shm_create(size_t slots_bytes, uint32_t max_apis, char *err, size_t errlen)
{
    size_t page = 4096;
    size_t slot = (slots_bytes / TP_SHM_SLOTS + page - 1) & ~(page - 1);
    size_t hdr = (sizeof(tp_shm_t) + page - 1) & ~(page - 1);
    size_t stats =
        ((size_t)TP_SHM_MAX_WORKERS * max_apis * sizeof(tp_shm_stat_t) + page - 1) & ~(page - 1);
    size_t size = hdr + stats + slot * TP_SHM_SLOTS;
    void *p = tp_shm_map(size, "shared memory", err, errlen);
    if (p == NULL)
        return NULL;
    tp_shm_t *shm = p;
    shm->magic = TP_SHM_MAGIC;
    shm->version = TP_SHM_VERSION;
    shm->size = size;
    shm->slot_size = slot;
    shm->stats_off = hdr;
    shm->slots_off = hdr + stats;
    shm->max_apis = max_apis;
    shm->nslots = TP_SHM_SLOTS;
    return shm;
}

static char *slot_base(tp_shm_t *shm, unsigned s)
{
    return (char *)shm + shm->slots_off + (size_t)s * shm->slot_size;
}

/* The lowest generation a live worker serves (UINT64_MAX if none): a
 * worker switching generations may be about to read any newer slot. Sets
 * *used to the slots live workers read. */
static uint64_t serving_min(tp_shm_t *shm, uint32_t *used)
{
    uint64_t min = UINT64_MAX;
    *used = 0;
    for (int i = 0; i < TP_SHM_MAX_WORKERS; i++) {
        tp_shm_worker_t *w = &shm->workers[i];
        if (atomic_load(&w->pid) == 0)
            continue;
        uint64_t s = atomic_load(&w->serving);
        *used |= atomic_load(&w->slots);
        if (s < min)
            min = s;
    }
    return min;
}

static int current_slot(tp_shm_t *shm)
{
    const tp_snapshot_t *cur = tp_shm_current(shm);
    return cur != NULL ? (int)cur->slot : -1;
}

void tp_shm_release_slots(tp_shm_t *shm)
{
    uint32_t used;
    uint64_t min = serving_min(shm, &used);
    int cur = current_slot(shm);
    for (unsigned s = 0; s < shm->nslots; s++) {
        uint64_t g = atomic_load(&shm->slot_gen[s]);
        if ((int)s == cur || g == 0 || g >= min || (used & (1u << s)))
            continue;
        /* nobody reads it any more: drop its pages from every process */
        madvise(slot_base(shm, s), shm->slot_size, MADV_REMOVE);
        atomic_store(&shm->slot_gen[s], 0);
    }
}

/* ---- freezing: a bump allocator over one slot --------------------------------- */

typedef struct arena_s {
    char *base;
    size_t size;
    size_t used;
    int full;
} arena_t;

static void *a_alloc(arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->full || n > a->size - a->used) {
        a->full = 1;
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += n;
    return p;
}

static char *a_strdup(arena_t *a, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = a_alloc(a, n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

static tp_api_t *freeze_api(arena_t *a, const tp_api_t *src, uint32_t *tidx)
{
    tp_api_t *api = a_alloc(a, sizeof(*api));
    if (api == NULL)
        return NULL;
    *api = *src;
    api->file = a_strdup(a, src->file);
    api->api_id = a_strdup(a, src->api_id);
    api->name = a_strdup(a, src->name);
    api->org_id = a_strdup(a, src->org_id);
    api->slug = a_strdup(a, src->slug);
    api->domain = a_strdup(a, src->domain);
    api->listen_path = a_strdup(a, src->listen_path);
    api->def_json = a_strdup(a, src->def_json);
    api->js_json = a_strdup(a, src->js_json);
    api->mtls_pem = a_strdup(a, src->mtls_pem);
    api->targets = a_alloc(a, (src->ntargets ? src->ntargets : 1) * sizeof(tp_target_t));
    if (api->targets == NULL)
        return NULL;
    for (size_t i = 0; i < src->ntargets; i++) {
        const tp_target_t *s = &src->targets[i];
        tp_target_t *t = &api->targets[i];
        *t = *s;
        t->raw = a_strdup(a, s->raw);
        t->url.scheme = a_strdup(a, s->url.scheme);
        t->url.host = a_strdup(a, s->url.host);
        t->url.authority = a_strdup(a, s->url.authority);
        t->url.path = a_strdup(a, s->url.path);
        t->url.query = a_strdup(a, s->url.query);
        if (s->tls != NULL && (t->tls = a_alloc(a, sizeof(*t->tls))) != NULL) {
            *t->tls = *s->tls;
            t->tls->ciphers = a_strdup(a, s->tls->ciphers);
            t->tls->client_file = a_strdup(a, s->tls->client_file);
            t->tls->client_pem = a_strdup(a, s->tls->client_pem);
        }
        t->idx = (*tidx)++;
    }
    return a->full ? NULL : api;
}

static int freeze(tp_shm_t *shm, unsigned s, tp_apis_t *apis, const tp_router_t *router,
                  const tp_policies_t *pols, uint64_t gen)
{
    arena_t a = {.base = slot_base(shm, s), .size = shm->slot_size};
    tp_snapshot_t *snap = a_alloc(&a, sizeof(*snap));
    if (snap == NULL)
        return -ENOSPC;
    memset(snap, 0, sizeof(*snap));
    snap->magic = TP_SHM_MAGIC;
    snap->slot = s;
    snap->generation = gen;
    snap->napis = apis->n;
    snap->apis = a_alloc(&a, (apis->n ? apis->n : 1) * sizeof(tp_api_t *));
    if (snap->apis == NULL)
        return -ENOSPC;
    uint32_t tidx = 0;
    for (size_t i = 0; i < apis->n; i++) {
        apis->v[i]->idx = (uint32_t)i;
        apis->v[i]->stat_idx = tp_shm_stat_index(apis->v[i]->api_id);
        if (apis->v[i]->stat_idx >= shm->max_apis)
            apis->v[i]->stat_idx = UINT32_MAX;
        snap->apis[i] = freeze_api(&a, apis->v[i], &tidx);
        if (snap->apis[i] == NULL)
            return -ENOSPC;
    }
    snap->ntargets = tidx;

    /* the route table, pointing at the frozen APIs */
    snap->router.strict = router->strict;
    snap->router.n = router->n;
    snap->router.v = a_alloc(&a, (router->n ? router->n : 1) * sizeof(tp_route_t));
    if (snap->router.v == NULL)
        return -ENOSPC;
    for (size_t i = 0; i < router->n; i++) {
        tp_route_t *r = &snap->router.v[i];
        *r = router->v[i];
        r->prefix = a_strdup(&a, router->v[i].prefix);
        r->domain = a_strdup(&a, router->v[i].domain);
        r->api = snap->apis[router->v[i].api->idx];
    }

    snap->npolicies = pols->n;
    snap->policies = a_alloc(&a, (pols->n ? pols->n : 1) * sizeof(tp_policy_t));
    if (snap->policies == NULL)
        return -ENOSPC;
    for (size_t i = 0; i < pols->n; i++) {
        snap->policies[i].id = a_strdup(&a, pols->v[i].id);
        snap->policies[i].json = a_strdup(&a, pols->v[i].json);
        snap->policies[i].file = a_strdup(&a, pols->v[i].file);
    }
    if (a.full)
        return -ENOSPC;
    snap->used = a.used;
    snap->loaded_us = tp_time_wall_us();
    atomic_store(&shm->slot_gen[s], gen);
    atomic_store_explicit(&shm->current, snap, memory_order_release);
    atomic_store_explicit(&shm->generation, gen, memory_order_release);
    return 0;
}

int tp_shm_slot_free(tp_shm_t *shm)
{
    tp_shm_release_slots(shm);
    int cur = current_slot(shm);
    for (unsigned s = 0; s < shm->nslots; s++)
        if ((int)s != cur && atomic_load(&shm->slot_gen[s]) == 0)
            return 1;
    return 0;
}

int tp_shm_publish(tp_shm_t *shm, tp_apis_t *apis, const tp_router_t *router,
                   const tp_policies_t *pols, uint64_t gen, char *err, size_t errlen)
{
    tp_shm_release_slots(shm);
    int cur = current_slot(shm);
    int pick = -1;
    for (unsigned s = 0; s < shm->nslots && pick < 0; s++)
        if ((int)s != cur && atomic_load(&shm->slot_gen[s]) == 0)
            pick = (int)s;
    if (pick < 0) {
        snprintf(err, errlen,
                 "every shared-memory slot holds a generation that in-flight "
                 "requests still use");
        return -EBUSY;
    }
    int rc = freeze(shm, (unsigned)pick, apis, router, pols, gen);
    if (rc < 0) {
        madvise(slot_base(shm, (unsigned)pick), shm->slot_size, MADV_REMOVE);
        snprintf(err, errlen,
                 "%zu API definitions do not fit in a %zu-byte shared-memory slot; "
                 "raise turnpike.shm_size (%zu bytes now, %d slots)",
                 apis->n, shm->slot_size, shm->slot_size * shm->nslots, TP_SHM_SLOTS);
    }
    return rc;
}

/* ---- stable counter rows, by api_id (master-private map) --------------------------- */

static tp_strmap_t stat_map;

uint32_t tp_shm_stat_index(const char *api_id)
{
    return *tp_strmap_put(&stat_map, api_id, (uint32_t)stat_map.n, NULL);
}

void tp_shm_stat_sum(tp_shm_t *shm, uint32_t stat_idx, tp_shm_stat_t *out)
{
    memset(out, 0, sizeof(*out));
    if (stat_idx >= shm->max_apis)
        return;
    for (int k = 0; k < TP_SHM_MAX_WORKERS; k++) {
        if (!tp_shm_row_used(shm, k))
            continue;
        const tp_shm_stat_t *st = &tp_shm_stats(shm, k)[stat_idx];
        out->requests += st->requests;
        for (int s = 0; s < 6; s++)
            out->status[s] += st->status[s];
        out->upstream_errors += st->upstream_errors;
        out->rate_limited += st->rate_limited;
        out->quota_exceeded += st->quota_exceeded;
        out->websockets += st->websockets;
        out->key_failures += st->key_failures;
        out->upstream_ms += st->upstream_ms;
        out->upstream_n += st->upstream_n;
    }
}

void tp_shm_totals(tp_shm_t *shm, tp_shm_totals_t *t)
{
    memset(t, 0, sizeof(*t));
    for (int k = 0; k < TP_SHM_MAX_WORKERS; k++) {
        const tp_shm_worker_t *w = &shm->workers[k];
        if (!tp_shm_row_used(shm, k))
            continue;
        t->an_recorded += atomic_load(&w->an_recorded);
        t->an_flushed += atomic_load(&w->an_flushed);
        t->an_dropped += atomic_load(&w->an_dropped);
        t->up_connect_errors += atomic_load(&w->up_connect_errors);
        t->up_timeouts += atomic_load(&w->up_timeouts);
        t->up_other_errors += atomic_load(&w->up_other_errors);
        t->sc_hits += atomic_load(&w->sc_hits);
        t->sc_misses += atomic_load(&w->sc_misses);
        t->redis_commands += atomic_load(&w->redis_stats.commands);
        t->redis_errors += atomic_load(&w->redis_stats.errors);
        t->redis_usec += atomic_load(&w->redis_stats.usec);
        if (atomic_load(&w->pid) <= 0)
            continue;
        t->live++;
        t->conns += atomic_load(&w->conns);
        t->ws_open += atomic_load(&w->ws_open);
        t->an_buffered += atomic_load(&w->an_buffered);
        t->redis_ok += atomic_load(&w->redis) == 1;
    }
}
