/*
 * shm/tp_shm.h: the shared memory the master maps before it forks: API
 * generations, the workers' status, and per-API counters.
 *
 * Used by: the master writes generations and reads status and counters;
 * workers read generations and write their own status and counters. The
 * region is MAP_SHARED|MAP_ANONYMOUS and inherited at the same address by
 * every worker, so plain pointers inside it are valid in all of them.
 *
 * Generations. The master parses and validates the API definitions and
 * policies, then freezes them (APIs, route table, policies, the definitions'
 * JSON) into one of TP_SHM_SLOTS slots with a bump allocator, and publishes
 * the slot with a release store of `current` then `generation`. A worker
 * notices a new generation between requests (one acquire load per request)
 * or when the master pokes it, and switches; a request keeps the snapshot
 * it started with. Each worker publishes the generation it serves and the
 * set of slots it reads (its current one and those of in-flight requests).
 * The master reuses a slot only when it is older than every live worker's
 * serving generation (so no worker is switching to it) and in no worker's
 * set, and gives a released slot's pages back to the kernel (MADV_REMOVE),
 * so memory does not grow with reloads; one long request pins only its own
 * slot.
 *
 * Locking: none. Each word has one writer (the master for generation data,
 * a worker for its own status and counter rows); readers use atomics where
 * a torn or stale read would matter (generation switches, slot release).
 */
#ifndef TP_SHM_H
#define TP_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tp_conf.h"
#include "tp_redis.h"
#include "tp_route.h"

#define TP_SHM_MAGIC 0x54504731u /* "TPG1" */
#define TP_SHM_VERSION 1u
#define TP_SHM_SLOTS 8
#define TP_SHM_MAX_WORKERS 256

/* One frozen generation, at the start of its slot. Everything it points
 * to lives in the same slot. Read-only once published. */
typedef struct tp_snapshot_s {
    uint32_t magic;
    uint32_t slot;
    uint64_t generation;
    int64_t loaded_us;  /* wall clock, when published */
    size_t used;        /* bytes of the slot in use */
    tp_router_t router; /* routes point at apis[] */
    tp_api_t **apis;
    size_t napis;
    uint32_t ntargets; /* targets across all APIs (tp_target_t.idx) */
    tp_policy_t *policies;
    size_t npolicies;
} tp_snapshot_t;

/* A worker's status, written by that worker (and reset by the master when
 * it starts one). A cache line each. */
typedef struct tp_shm_worker_s {
    _Atomic uint64_t serving; /* generation new requests use */
    _Atomic uint64_t oldest;  /* oldest generation an in-flight request uses */
    _Atomic int32_t pid;      /* 0 when the slot is unused */
    _Atomic uint32_t conns;   /* open client connections */
    _Atomic uint64_t requests;
    _Atomic int64_t started_us;
    _Atomic int32_t redis;    /* the last storage probe: 1 passed, 0 failed, -1 none yet */
    _Atomic uint32_t slots;   /* bit s: slot s is read (current, or in-flight requests) */
    _Atomic uint32_t ws_open; /* websocket (upgraded) sessions relaying now */
    char pad[12];
    /* analytics records (worker/tp_analytics.c) */
    _Atomic uint64_t an_recorded; /* made */
    _Atomic uint64_t an_flushed;  /* pushed to Redis */
    _Atomic uint64_t an_dropped;  /* lost: the buffer was full (Redis away) */
    _Atomic uint64_t an_buffered; /* waiting in the worker now */
    /* the upstream side (worker/tp_proxy.c) */
    _Atomic uint64_t up_connect_errors; /* no connection: refused, unreachable, lookup */
    _Atomic uint64_t up_timeouts;       /* no answer in proxy_default_timeout */
    _Atomic uint64_t up_other_errors;   /* reset, bad response */
    /* the session cache (worker/tp_session.c) */
    _Atomic uint64_t sc_hits;
    _Atomic uint64_t sc_misses;
    /* the storage client (common/tp_redis.c) */
    tp_redis_stats_t redis_stats;
    char pad2[64 - (72 + sizeof(tp_redis_stats_t)) % 64];
} tp_shm_worker_t;

_Static_assert(sizeof(tp_shm_worker_t) % 64 == 0, "cache lines of its own per worker");

/* Per-API counters, one row per worker and API (no sharing between
 * writers, so no atomics on the request path). */
typedef struct tp_shm_stat_s {
    uint64_t requests;
    uint64_t status[6]; /* by class: [1] 1xx ... [5] 5xx, [0] other */
    uint64_t upstream_errors;
    uint64_t rate_limited;   /* 429s of the key's and the API's rate limits */
    uint64_t quota_exceeded; /* 403 Quota exceeded */
    uint64_t websockets;     /* upgraded sessions started (the upstream answered 101) */
    uint64_t key_failures;   /* refused by key auth (no key, unknown key) */
    uint64_t upstream_ms;    /* waiting for upstream heads, summed ... */
    uint64_t upstream_n;     /* ... over this many requests */
} tp_shm_stat_t;

/* GET /tyk/health (TYK-COMPAT 9.3): with health_check.enable_health_checks,
 * once a second the master writes each API's counters, summed over the
 * workers (tp_shm_stat_sum), into a ring, which the workers read to answer
 * per-second rates over health_check_value_timeouts. */
#define TP_HEALTH_RING 64
typedef struct tp_health_s {
    uint32_t max_apis;
    _Atomic uint64_t tick;                /* samples taken; the newest is ring[tick % RING] */
    tp_shm_stat_t ring[][TP_HEALTH_RING]; /* [stat_idx][second] */
} tp_health_t;

typedef struct tp_shm_s {
    uint32_t magic;
    uint32_t version;
    size_t size; /* the whole mapping */
    size_t slot_size;
    size_t slots_off; /* offset of slot 0 */
    size_t stats_off; /* offset of the counters: [worker][api] */
    uint32_t max_apis;
    uint32_t nslots;
    _Atomic uint64_t generation;             /* the published one */
    _Atomic(tp_snapshot_t *) current;        /* its snapshot */
    _Atomic uint64_t slot_gen[TP_SHM_SLOTS]; /* generation in each slot, 0 if free */
    struct tp_scache_s *scache;              /* the session cache, its own mapping */
    struct tp_scache_s *rcache;              /* the response cache's front, or NULL */
    struct tp_limits_s *limits;              /* rate-limit counters, their own mapping */
    struct tp_metrics_s *metrics;            /* Prometheus counters, their own mapping, or NULL */
    struct tp_breakers_s *breakers;          /* circuit breakers, their own mapping */
    struct tp_hosts_s *hosts;                /* the host checker's down hosts, their own mapping */
    tp_health_t *health;                     /* /tyk/health's samples, or NULL */
    tp_shm_worker_t workers[TP_SHM_MAX_WORKERS];
} tp_shm_t;

/* Maps the region: <slots_bytes> for generations (split in TP_SHM_SLOTS),
 * counters for <max_apis> APIs. Untouched pages cost nothing (it is
 * MAP_NORESERVE). Returns NULL with a reason. Master, before fork. */
tp_shm_t *tp_shm_create(size_t slots_bytes, uint32_t max_apis, char *err, size_t errlen);

/* Freezes <apis>, the route table <router> built on them, and <pols> as
 * generation <gen> into a free slot and publishes it. The apis' idx,
 * stat_idx and targets' idx are assigned here. Returns 0; -EBUSY when no
 * slot is free yet (old requests still run: try again shortly); -ENOSPC
 * when a slot is too small (reason in <err>). Master only. */
int tp_shm_publish(tp_shm_t *shm, tp_apis_t *apis, const tp_router_t *router,
                   const tp_policies_t *pols, uint64_t gen, char *err, size_t errlen);

/* Gives back the pages of slots no live worker can still read. Master. */
void tp_shm_release_slots(tp_shm_t *shm);

/* Is a slot free for the next generation (after releasing what can be)? */
int tp_shm_slot_free(tp_shm_t *shm);

/* The published snapshot (acquire). */
static inline const tp_snapshot_t *tp_shm_current(tp_shm_t *shm)
{
    return atomic_load_explicit(&shm->current, memory_order_acquire);
}

static inline tp_shm_stat_t *tp_shm_stats(tp_shm_t *shm, int worker)
{
    return (tp_shm_stat_t *)((char *)shm + shm->stats_off) + (size_t)worker * shm->max_apis;
}

/* The counters of the API with row <stat_idx>, summed over every worker
 * row ever used (an exited worker's counts still count). Master. */
void tp_shm_stat_sum(tp_shm_t *shm, uint32_t stat_idx, tp_shm_stat_t *out);

/* The workers' own counters, summed the same way; the gauges (buffered
 * records, connections) over the running workers only. */
typedef struct tp_shm_totals_s {
    uint64_t an_recorded, an_flushed, an_dropped, an_buffered;
    uint64_t up_connect_errors, up_timeouts, up_other_errors;
    uint64_t sc_hits, sc_misses;
    uint64_t redis_commands, redis_errors, redis_usec;
    uint64_t conns;
    uint64_t ws_open;
    uint32_t live;     /* workers running */
    uint32_t redis_ok; /* of them, those whose last storage probe passed */
} tp_shm_totals_t;

void tp_shm_totals(tp_shm_t *shm, tp_shm_totals_t *out);

/* Is row <k> one a worker has used? */
static inline int tp_shm_row_used(tp_shm_t *shm, int k)
{
    return atomic_load(&shm->workers[k].started_us) != 0;
}

/* The stable counter row of <api_id> (the same across generations), or
 * UINT32_MAX when max_apis rows are taken. Master. */
uint32_t tp_shm_stat_index(const char *api_id);

#endif
