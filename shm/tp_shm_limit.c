/*
 * shm/tp_shm_limit.c: see tp_shm_limit.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tp_keyhash.h"
#include "tp_shm_limit.h"
#include "tp_shm_map.h"

#define PROBE 8 /* neighbouring slots a key may live in */

typedef struct lent_s {
    _Atomic uint64_t h;       /* of the key name; 0: free */
    _Atomic int64_t tat;      /* local tier: theoretical arrival time (monotonic ns) */
    _Atomic int64_t used;     /* last decision or note (monotonic ns) */
    _Atomic int64_t per;      /* ns */
    _Atomic int64_t limit;    /* requests per window */
    _Atomic int64_t count;    /* noted: the counter's value (quotas, Tyk's logs) */
    _Atomic int64_t left;     /* noted: requests left */
    _Atomic int64_t reset_at; /* noted: monotonic ns */
    _Atomic int32_t kind;
    char name[60]; /* the key name, cut to fit; written by the claimer */
} lent_t;

_Static_assert(sizeof(lent_t) == 128, "two cache lines per entry");

struct tp_limits_s {
    uint32_t magic;
    uint32_t mask;
    _Atomic uint32_t nodes;
    char node_id[96];
    size_t size;
    lent_t e[] __attribute__((aligned(64)));
};

tp_limits_t *tp_limits_create(size_t entries, char *err, size_t errlen)
{
    size_t n = 64;
    while (n < entries && n < ((size_t)1 << 30))
        n <<= 1;
    size_t size = sizeof(tp_limits_t) + n * sizeof(lent_t);
    void *p = tp_shm_map(size, "the rate-limit counters", err, errlen);
    if (p == NULL)
        return NULL;
    tp_limits_t *t = p;
    t->magic = 0x5450524c; /* "TPRL" */
    t->mask = (uint32_t)(n - 1);
    t->size = size;
    atomic_store(&t->nodes, 1);
    char host[64] = "";
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "node");
    uint64_t rnd[2];
    uint64_t seed[2] = {(uint64_t)getpid(), (uint64_t)(uintptr_t)p};
    tp_murmur3_128(seed, sizeof(seed), (uint32_t)time(NULL), rnd);
    snprintf(t->node_id, sizeof(t->node_id), "%.60s-%d-%08x", host, (int)getpid(),
             (unsigned)rnd[0]);
    return t;
}

static uint64_t key_hash(const char *key, size_t klen)
{
    uint64_t h[2];
    tp_murmur3_128(key, klen, 0x7470726c, h);
    return h[0] != 0 ? h[0] : 1;
}

static lent_t *entry_init(lent_t *e, const char *key, size_t klen, int kind, int64_t now)
{
    atomic_store(&e->tat, 0);
    atomic_store(&e->count, 0);
    atomic_store(&e->left, 0);
    atomic_store(&e->reset_at, 0);
    atomic_store(&e->kind, kind);
    atomic_store(&e->used, now);
    size_t n = klen < sizeof(e->name) - 1 ? klen : sizeof(e->name) - 1;
    memcpy(e->name, key, n);
    e->name[n] = '\0';
    return e;
}

/* An entry that holds no state (a note of a Redis answer, or a local
 * counter whose window has passed) goes before one that does; then the
 * one idle longest. */
static int stateless(lent_t *e, int64_t now)
{
    int kind = atomic_load(&e->kind);
    if (kind == TP_LIM_LEASE)
        return atomic_load(&e->left) <= 0 || atomic_load(&e->reset_at) <= now;
    return kind != TP_LIM_LOCAL || atomic_load(&e->tat) <= now;
}

static int victim_before(lent_t *a, lent_t *b, int64_t now)
{
    int sa = stateless(a, now), sb = stateless(b, now);
    if (sa != sb)
        return sa;
    return atomic_load(&a->used) < atomic_load(&b->used);
}

/* The entry of <key>, claimed if it has none (the idlest neighbour is
 * reused when all are taken). */
static lent_t *entry_for(tp_limits_t *t, const char *key, size_t klen, int kind, int64_t now)
{
    uint64_t h = key_hash(key, klen);
    uint32_t at = (uint32_t)h & t->mask;
    for (uint32_t i = 0; i < PROBE; i++) {
        lent_t *e = &t->e[(at + i) & t->mask];
        if (atomic_load_explicit(&e->h, memory_order_acquire) == h)
            return e;
    }
    lent_t *idlest = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        lent_t *e = &t->e[(at + i) & t->mask];
        uint64_t cur = atomic_load(&e->h);
        if (cur == 0 && atomic_compare_exchange_strong(&e->h, &cur, h))
            return entry_init(e, key, klen, kind, now);
        if (cur == h) /* another worker claimed it meanwhile */
            return e;
        if (idlest == NULL || victim_before(e, idlest, now))
            idlest = e;
    }
    uint64_t cur = atomic_load(&idlest->h);
    if (cur == h || !atomic_compare_exchange_strong(&idlest->h, &cur, h))
        return idlest; /* claimed meanwhile (or lost a race: shared this once) */
    return entry_init(idlest, key, klen, kind, now);
}

int tp_limits_take(tp_limits_t *t, const char *key, size_t klen, double rate, int64_t per,
                   int64_t now, tp_limit_res_t *res)
{
    lent_t *e = entry_for(t, key, klen, TP_LIM_LOCAL, now);
    double tf = (double)per / rate;
    int64_t T = tf < 1 ? 1 : (int64_t)tf;
    res->limit = (int64_t)rate;
    if (atomic_load_explicit(&e->per, memory_order_relaxed) != per)
        atomic_store_explicit(&e->per, per, memory_order_relaxed);
    if (atomic_load_explicit(&e->limit, memory_order_relaxed) != res->limit)
        atomic_store_explicit(&e->limit, res->limit, memory_order_relaxed);
    atomic_store_explicit(&e->used, now, memory_order_relaxed);
    if (atomic_load_explicit(&e->kind, memory_order_relaxed) != TP_LIM_LOCAL)
        atomic_store_explicit(&e->kind, TP_LIM_LOCAL, memory_order_relaxed);
    int64_t tat = atomic_load_explicit(&e->tat, memory_order_acquire);
    for (;;) {
        int64_t base = tat > now ? tat : now;
        int64_t next = base + T;
        if (next - now > per) {
            res->remaining = 0;
            res->reset_us = (next - per - now + 999) / 1000;
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(&e->tat, &tat, next, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            res->remaining = (per - (next - now)) / T;
            res->reset_us = (next - now + 999) / 1000;
            return 1;
        }
    }
}

void tp_limits_note(tp_limits_t *t, const char *key, size_t klen, int kind, int64_t limit,
                    int64_t count, int64_t remaining, int64_t reset_us, int64_t now)
{
    lent_t *e = entry_for(t, key, klen, kind, now);
    atomic_store_explicit(&e->kind, kind, memory_order_relaxed);
    atomic_store_explicit(&e->limit, limit, memory_order_relaxed);
    atomic_store_explicit(&e->count, count, memory_order_relaxed);
    atomic_store_explicit(&e->left, remaining, memory_order_relaxed);
    atomic_store_explicit(&e->reset_at, now + reset_us * 1000, memory_order_relaxed);
    atomic_store_explicit(&e->used, now, memory_order_relaxed);
}

int tp_limits_lease_take(tp_limits_t *t, const char *key, size_t klen, int64_t max, int64_t now,
                         tp_limit_res_t *res)
{
    lent_t *e = entry_for(t, key, klen, TP_LIM_LEASE, now);
    if (atomic_load_explicit(&e->kind, memory_order_relaxed) != TP_LIM_LEASE)
        return 0;
    int64_t end = atomic_load_explicit(&e->reset_at, memory_order_acquire);
    if (end <= now)
        return 0;
    int64_t left = atomic_load_explicit(&e->left, memory_order_acquire);
    do {
        if (left <= 0)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&e->left, &left, left - 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    atomic_store_explicit(&e->used, now, memory_order_relaxed);
    int64_t rem = max - atomic_load_explicit(&e->count, memory_order_relaxed);
    res->limit = max;
    res->remaining = (rem > 0 ? rem : 0) + left - 1;
    res->reset_us = (end - now) / 1000;
    return 1;
}

void tp_limits_lease_add(tp_limits_t *t, const char *key, size_t klen, int64_t max, int64_t granted,
                         int64_t count, int64_t end, int64_t now)
{
    lent_t *e = entry_for(t, key, klen, TP_LIM_LEASE, now);
    if (atomic_load_explicit(&e->kind, memory_order_relaxed) != TP_LIM_LEASE ||
        atomic_load_explicit(&e->reset_at, memory_order_relaxed) < end - 2000000000LL) {
        /* a new window (or a first lease): what was left belongs to the old one */
        atomic_store(&e->left, 0);
        atomic_store(&e->kind, TP_LIM_LEASE);
    }
    atomic_store_explicit(&e->limit, max, memory_order_relaxed);
    atomic_store_explicit(&e->count, count, memory_order_relaxed);
    atomic_store_explicit(&e->reset_at, end, memory_order_release);
    atomic_store_explicit(&e->used, now, memory_order_relaxed);
    if (granted > 0)
        atomic_fetch_add(&e->left, granted);
}

uint32_t tp_limits_nodes(const tp_limits_t *t)
{
    uint32_t n = atomic_load_explicit(&t->nodes, memory_order_relaxed);
    return n > 0 ? n : 1;
}

void tp_limits_set_nodes(tp_limits_t *t, uint32_t n)
{
    if (atomic_load_explicit(&t->nodes, memory_order_relaxed) != n)
        atomic_store_explicit(&t->nodes, n, memory_order_relaxed);
}

const char *tp_limits_node_id(const tp_limits_t *t)
{
    return t->node_id;
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case TP_LIM_LOCAL:
        return "local";
    case TP_LIM_EXACT:
        return "exact";
    case TP_LIM_ROLLING:
        return "rolling";
    case TP_LIM_FIXED:
        return "fixed";
    case TP_LIM_QUOTA:
        return "quota";
    case TP_LIM_LEASE:
        return "quota-lease";
    default:
        return "?";
    }
}

/* <needle> in an entry's <name>; a name cut to fit (murmur128 or sha256
 * hashes with an allowance scope) may hold only its first part, at the
 * end: that matches from 8 characters on (a whole murmur32 hash). */
static int name_has(const char *name, size_t cap, const char *needle)
{
    if (strstr(name, needle) != NULL)
        return 1;
    size_t n = strlen(name), nl = strlen(needle);
    if (n < cap - 1)
        return 0;
    for (size_t tail = 8; tail < nl && tail <= n; tail++)
        if (strncmp(name + n - tail, needle, tail) == 0)
            return 1;
    return 0;
}

size_t tp_limits_show(tp_limits_t *t, const char *needle, int64_t now, tp_buf_t *out)
{
    size_t found = 0;
    for (uint32_t i = 0; i <= t->mask; i++) {
        lent_t *e = &t->e[i];
        if (atomic_load(&e->h) == 0)
            continue;
        char name[sizeof(e->name)];
        memcpy(name, e->name, sizeof(name));
        name[sizeof(name) - 1] = '\0';
        if (needle[0] != '\0' && !name_has(name, sizeof(name), needle))
            continue;
        int kind = atomic_load(&e->kind);
        int64_t limit = atomic_load(&e->limit), left, reset;
        if (kind == TP_LIM_LOCAL) {
            int64_t per = atomic_load(&e->per), tat = atomic_load(&e->tat);
            int64_t T = limit > 0 && per / limit > 0 ? per / limit : 1;
            int64_t busy = tat > now ? tat - now : 0;
            left = busy >= per ? 0 : (per - busy) / T;
            if (left > limit)
                left = limit;
            reset = busy;
        } else if (kind == TP_LIM_LEASE) {
            int64_t rem = limit - atomic_load(&e->count);
            left = (rem > 0 ? rem : 0) + atomic_load(&e->left);
            reset = atomic_load(&e->reset_at) - now;
        } else {
            left = atomic_load(&e->left);
            reset = atomic_load(&e->reset_at) - now;
        }
        if (reset < 0)
            reset = 0;
        tp_buf_printf(out, "%s %s limit=%lld remaining=%lld reset=%.3f", name, kind_name(kind),
                      (long long)limit, (long long)left, (double)reset / 1e9);
        if (kind == TP_LIM_QUOTA || kind == TP_LIM_ROLLING || kind == TP_LIM_FIXED ||
            kind == TP_LIM_LEASE)
            tp_buf_printf(out, " count=%lld", (long long)atomic_load(&e->count));
        if (kind == TP_LIM_LEASE)
            tp_buf_printf(out, " leased=%lld", (long long)atomic_load(&e->left));
        tp_buf_printf(out, " idle=%.1f\n", (double)(now - atomic_load(&e->used)) / 1e9);
        found++;
    }
    return found;
}
