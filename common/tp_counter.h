/*
 * common/tp_counter.h: a counter with one writer that other processes read
 * (shared memory): a relaxed load and store, no locked read-modify-write,
 * since nobody else writes the word; readers see each value whole.
 */
#ifndef TP_COUNTER_H
#define TP_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

static inline void tp_counter_add(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

static inline uint64_t tp_counter_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

#endif
