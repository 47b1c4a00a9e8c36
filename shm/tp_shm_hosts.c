/*
 * shm/tp_shm_hosts.c: the host checker's down hosts in shared memory (see
 * tp_shm_hosts.h). Open addressing on a 64-bit hash of the name, names
 * kept to compare, linear probing; entries are never removed (a host that
 * comes back is marked up), so a probe chain never breaks.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tp_keyhash.h"
#include "tp_shm_hosts.h"
#include "tp_shm_map.h"

#define NAME_MAX_LEN 255

typedef struct host_s {
    _Atomic uint64_t key; /* 0: free */
    _Atomic uint32_t down;
    uint16_t len;
    char name[NAME_MAX_LEN + 1];
} host_t;

struct tp_hosts_s {
    uint32_t magic;
    uint32_t mask;
    size_t size;
    _Atomic uint32_t ndown;
    host_t h[];
};

tp_hosts_t *tp_hosts_create(size_t entries, char *err, size_t errlen)
{
    size_t n = 64;
    while (n < entries * 2 && n < ((size_t)1 << 20))
        n <<= 1;
    size_t size = sizeof(tp_hosts_t) + n * sizeof(host_t);
    void *p = tp_shm_map(size, "the host checker's states", err, errlen);
    if (p == NULL)
        return NULL;
    tp_hosts_t *t = p;
    t->magic = 0x54504854; /* "TPHT" */
    t->mask = (uint32_t)(n - 1);
    t->size = size;
    return t;
}

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h[2];
    tp_murmur3_128(s, n, 0x74706874, h);
    return h[0] != 0 ? h[0] : 1;
}

/* The entry of <host>, or where it would go (key 0), or NULL when full. */
static host_t *find(const tp_hosts_t *t, const char *host, size_t n, uint64_t k)
{
    for (uint32_t i = 0; i <= t->mask; i++) {
        host_t *e = (host_t *)&t->h[(k + i) & t->mask];
        uint64_t cur = atomic_load_explicit(&e->key, memory_order_acquire);
        if (cur == 0)
            return e;
        if (cur == k && e->len == n && memcmp(e->name, host, n) == 0)
            return e;
    }
    return NULL;
}

int tp_hosts_set(tp_hosts_t *t, const char *host, size_t n, int down)
{
    if (n > NAME_MAX_LEN)
        return -1;
    uint64_t k = hash(host, n);
    host_t *e = find(t, host, n, k);
    if (e == NULL)
        return -1;
    if (atomic_load(&e->key) == 0) {
        if (!down)
            return 0; /* unknown is up */
        memcpy(e->name, host, n);
        e->name[n] = '\0';
        e->len = (uint16_t)n;
        atomic_store_explicit(&e->key, k, memory_order_release);
    }
    uint32_t was = atomic_exchange(&e->down, down ? 1 : 0);
    if (was != (uint32_t)(down != 0)) {
        if (down)
            atomic_fetch_add(&t->ndown, 1);
        else
            atomic_fetch_sub(&t->ndown, 1);
    }
    return 0;
}

int tp_hosts_down(const tp_hosts_t *t, const char *host, size_t n)
{
    if (atomic_load_explicit(&t->ndown, memory_order_relaxed) == 0 || n > NAME_MAX_LEN)
        return 0;
    const host_t *e = find(t, host, n, hash(host, n));
    return e != NULL && atomic_load_explicit(&e->key, memory_order_relaxed) != 0 &&
           atomic_load_explicit(&e->down, memory_order_relaxed) != 0;
}

unsigned tp_hosts_ndown(const tp_hosts_t *t)
{
    return atomic_load(&t->ndown);
}
