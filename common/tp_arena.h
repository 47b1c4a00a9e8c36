/*
 * common/tp_arena.h: bump memory that is let go all at once, for what
 * lives exactly as long as one request (the state of its stages).
 *
 * Used by: workers, one arena per request, one loop, no locking. The first
 * chunk stays with the arena across resets, so a recycled request allocates
 * nothing in the steady state; what overflowed it is freed by the reset.
 * Allocation failure aborts (see tp_malloc).
 */
#ifndef TP_ARENA_H
#define TP_ARENA_H

#include <stddef.h>

#define TP_ARENA_CHUNK 8192 /* bytes of a chunk, its header included */

typedef struct tp_arena_chunk_s tp_arena_chunk_t;

typedef struct tp_arena_s {
    tp_arena_chunk_t *cur;  /* allocations come from here ... */
    tp_arena_chunk_t *keep; /* ... the first chunk, kept by resets */
    size_t used;            /* bytes of cur handed out */
} tp_arena_t;

/* <n> bytes, 16-byte aligned, uninitialised; valid until the next reset. */
void *tp_arena_alloc(tp_arena_t *a, size_t n);
/* The same, zeroed. */
void *tp_arena_calloc(tp_arena_t *a, size_t n);
/* Lets everything go; keeps the first chunk for the next use. */
void tp_arena_reset(tp_arena_t *a);
/* Lets everything go, the first chunk too. */
void tp_arena_free(tp_arena_t *a);

#endif
