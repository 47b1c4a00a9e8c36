/*
 * shm/tp_shm_session.c: see tp_shm_session.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "tp_shm_session.h"
#include "tp_time.h"
#include "tp_shm_map.h"

#define PROBE 8             /* neighbours an id may live in */
#define STEAL_AFTER_MS 1000 /* an entry odd this long has a dead or stuck writer */

typedef struct entry_s {
    _Atomic uint32_t seq; /* odd while written */
    _Atomic int32_t writer;
    _Atomic int64_t locked_ms;
    _Atomic uint64_t version;   /* bumped by every write */
    _Atomic int64_t expires_ms; /* monotonic; 0: empty */
    uint8_t id[32];
    uint8_t store[32];
    uint32_t rkey_len; /* data: rkey, NUL, json, NUL */
    uint32_t json_len;
    char data[];
} entry_t;

struct tp_scache_s {
    uint32_t magic;
    uint32_t n;
    _Atomic uint64_t epoch;   /* bumped by every eviction */
    _Atomic uint64_t changes; /* bumped by every write that changes an entry's version */
    size_t entry_bytes;
    size_t size;
    char entries[] __attribute__((aligned(64)));
};

static entry_t *entry_at(tp_scache_t *c, uint32_t i)
{
    return (entry_t *)(c->entries + (size_t)i * c->entry_bytes);
}

tp_scache_t *tp_scache_create(size_t bytes, size_t entry_bytes, const char *name, char *err,
                              size_t errlen)
{
    entry_bytes = (entry_bytes + 63) & ~(size_t)63;
    if (entry_bytes < sizeof(entry_t) + 256) {
        snprintf(err, errlen, "turnpike.%s_cache_entry: at least %zu bytes", name,
                 sizeof(entry_t) + 256);
        return NULL;
    }
    size_t n = bytes / entry_bytes;
    if (n < PROBE) {
        snprintf(err, errlen, "turnpike.%s_cache_size: room for %d entries at least", name, PROBE);
        return NULL;
    }
    size_t size = sizeof(tp_scache_t) + n * entry_bytes;
    char what[64];
    snprintf(what, sizeof(what), "the %s cache", name);
    void *p = tp_shm_map(size, what, err, errlen);
    if (p == NULL)
        return NULL;
    tp_scache_t *c = p;
    c->magic = 0x54505343; /* "TPSC" */
    c->n = (uint32_t)n;
    c->entry_bytes = entry_bytes;
    c->size = size;
    return c;
}

void tp_scache_digest(const char *a, size_t alen, const char *b, size_t blen, uint8_t out[32])
{
    mbedtls_sha256_context ctx;
    mbedtls_sha256_init(&ctx);
    mbedtls_sha256_starts_ret(&ctx, 0);
    mbedtls_sha256_update_ret(&ctx, (const unsigned char *)a, alen);
    if (b != NULL) {
        static const unsigned char sep = 0;
        mbedtls_sha256_update_ret(&ctx, &sep, 1);
        mbedtls_sha256_update_ret(&ctx, (const unsigned char *)b, blen);
    }
    mbedtls_sha256_finish_ret(&ctx, out);
    mbedtls_sha256_free(&ctx);
}

static uint32_t home(const tp_scache_t *c, const uint8_t id[32])
{
    uint64_t h;
    memcpy(&h, id, sizeof(h));
    return (uint32_t)(h % c->n);
}

/* ---- the per-entry sequence lock ----------------------------------------------------- */

static int writer_gone(entry_t *e, int64_t now)
{
    pid_t pid = atomic_load(&e->writer);
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    return now - atomic_load(&e->locked_ms) > STEAL_AFTER_MS;
}

/* Takes <e> for writing; returns the odd sequence value held, or 0. */
static uint32_t lock_entry(entry_t *e, int64_t now)
{
    uint32_t s = atomic_load_explicit(&e->seq, memory_order_acquire);
    uint32_t want;
    if ((s & 1) == 0)
        want = s + 1;
    else if (writer_gone(e, now))
        want = s + 2; /* still odd: ours now */
    else
        return 0;
    if (!atomic_compare_exchange_strong(&e->seq, &s, want))
        return 0;
    atomic_store(&e->writer, (int32_t)getpid());
    atomic_store(&e->locked_ms, now);
    return want;
}

/* <changed>: readers' copies of the entry are out of date (the version
 * moves); else only its expiry moved. */
static void unlock_entry(tp_scache_t *c, entry_t *e, uint32_t held, int changed)
{
    if (changed)
        atomic_fetch_add(&e->version, 1);
    atomic_store(&e->writer, 0);
    atomic_store_explicit(&e->seq, held + 1, memory_order_release);
    if (changed)
        atomic_fetch_add(&c->changes, 1);
}

/* ---- operations ------------------------------------------------------------------------ */

int tp_scache_get(tp_scache_t *c, const uint8_t id[32], int64_t now_ms, tp_buf_t *rkey,
                  tp_buf_t *json, uint32_t *slot, uint64_t *version)
{
    uint32_t h = home(c, id);
    for (uint32_t k = 0; k < PROBE; k++) {
        uint32_t i = (h + k) % c->n;
        entry_t *e = entry_at(c, i);
        for (int attempt = 0; attempt < 2; attempt++) {
            uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
            if (s1 & 1)
                break;
            if (e->expires_ms <= now_ms || memcmp(e->id, id, 32) != 0)
                break;
            uint64_t v = atomic_load_explicit(&e->version, memory_order_relaxed);
            uint32_t rl = e->rkey_len, jl = e->json_len;
            if ((size_t)rl + jl + 2 > c->entry_bytes - sizeof(entry_t))
                break; /* torn: the sequence check below would fail anyway */
            rkey->len = 0;
            json->len = 0;
            tp_buf_append(rkey, e->data, rl);
            tp_buf_append(json, e->data + rl + 1, jl);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&e->seq, memory_order_relaxed) != s1)
                continue; /* written meanwhile: once more */
            tp_buf_cstr(rkey);
            tp_buf_cstr(json);
            *slot = i;
            *version = v;
            return 1;
        }
    }
    return 0;
}

int64_t tp_scache_left(tp_scache_t *c, uint32_t slot, uint64_t version, int64_t now_ms)
{
    if (slot >= c->n)
        return 0;
    entry_t *e = entry_at(c, slot);
    uint32_t s = atomic_load_explicit(&e->seq, memory_order_acquire);
    if ((s & 1) != 0 || atomic_load_explicit(&e->version, memory_order_relaxed) != version)
        return 0;
    int64_t left = e->expires_ms - now_ms;
    return left > 0 ? left : 0;
}

uint64_t tp_scache_changes(tp_scache_t *c)
{
    return atomic_load_explicit(&c->changes, memory_order_acquire);
}

uint64_t tp_scache_epoch(tp_scache_t *c)
{
    return atomic_load(&c->epoch);
}

int tp_scache_put(tp_scache_t *c, uint64_t epoch, const uint8_t id[32], const uint8_t store[32],
                  const char *rkey, const char *json, size_t json_len, int64_t expires_ms)
{
    size_t rl = strlen(rkey);
    if (rl + json_len + 2 > c->entry_bytes - sizeof(entry_t))
        return -1;
    if (atomic_load(&c->epoch) != epoch)
        return -1; /* an eviction happened while the session was read: it may be stale */
    int64_t now = tp_time_mono_ms();
    /* the same id, else a free or expired neighbour, else the soonest to expire */
    uint32_t h = home(c, id), pick = UINT32_MAX;
    int64_t soonest = INT64_MAX;
    for (uint32_t k = 0; k < PROBE; k++) {
        uint32_t i = (h + k) % c->n;
        entry_t *e = entry_at(c, i);
        if (memcmp(e->id, id, 32) == 0 && e->expires_ms > 0) {
            pick = i;
            break;
        }
        int64_t x = e->expires_ms <= now ? 0 : e->expires_ms;
        if (x < soonest) {
            soonest = x;
            pick = i;
        }
    }
    entry_t *e = entry_at(c, pick);
    uint32_t held = lock_entry(e, now);
    if (held == 0)
        return -1;
    if (e->expires_ms > 0 && memcmp(e->id, id, 32) == 0 && e->rkey_len == rl &&
        e->json_len == json_len && memcmp(e->data, rkey, rl) == 0 &&
        memcmp(e->data + rl + 1, json, json_len) == 0) {
        /* the same session again (a refresh): only the expiry moves, and
         * the workers keep their parsed copies */
        e->expires_ms = atomic_load(&c->epoch) == epoch ? expires_ms : 0;
        unlock_entry(c, e, held, e->expires_ms == 0);
        return 0;
    }
    memcpy(e->id, id, 32);
    memcpy(e->store, store, 32);
    e->rkey_len = (uint32_t)rl;
    e->json_len = (uint32_t)json_len;
    memcpy(e->data, rkey, rl + 1);
    memcpy(e->data + rl + 1, json, json_len);
    e->data[rl + 1 + json_len] = '\0';
    e->expires_ms = expires_ms;
    /* an eviction that began after the check above may have scanned past
     * this entry before it held the id: then the entry must not live */
    if (atomic_load(&c->epoch) != epoch)
        e->expires_ms = 0;
    unlock_entry(c, e, held, 1);
    return 0;
}

int tp_scache_evict_store(tp_scache_t *c, const uint8_t store[32])
{
    int64_t now = tp_time_mono_ms();
    int n = 0;
    atomic_fetch_add(&c->epoch, 1); /* reads in flight will not be cached */
    for (uint32_t i = 0; i < c->n; i++) {
        entry_t *e = entry_at(c, i);
        uint32_t s = atomic_load_explicit(&e->seq, memory_order_acquire);
        if ((s & 1) == 0 && (e->expires_ms == 0 || memcmp(e->store, store, 32) != 0))
            continue; /* stable and not it (a write in progress is waited for) */
        uint32_t held = 0;
        /* an invalidation must not be skipped: wait out a live writer */
        for (int spin = 0; spin < 100000 && (held = lock_entry(e, now)) == 0; spin++)
            now = tp_time_mono_ms();
        if (held == 0)
            continue; /* stuck for a second: the steal rule takes it next time */
        if (memcmp(e->store, store, 32) == 0) {
            e->expires_ms = 0;
            n++;
        }
        unlock_entry(c, e, held, 1);
    }
    return n;
}

void tp_scache_stats(tp_scache_t *c, int64_t now_ms, size_t *used, size_t *capacity)
{
    size_t u = 0;
    for (uint32_t i = 0; i < c->n; i++)
        u += entry_at(c, i)->expires_ms > now_ms;
    *used = u;
    *capacity = c->n;
}
