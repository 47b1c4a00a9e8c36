/*
 * common/tp_arena.c: bump memory in chunks, let go all at once.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "tp_arena.h"
#include "tp_err.h"

struct tp_arena_chunk_s {
    tp_arena_chunk_t *next; /* the chunk allocated before this one */
    size_t cap;             /* bytes of data */
    alignas(16) char data[];
};

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

static tp_arena_chunk_t *chunk_new(size_t cap, tp_arena_chunk_t *next)
{
    tp_arena_chunk_t *c = tp_malloc(sizeof(*c) + cap);
    c->next = next;
    c->cap = cap;
    return c;
}

void *tp_arena_alloc(tp_arena_t *a, size_t n)
{
    n = ALIGN16(n > 0 ? n : 1);
    if (a->cur == NULL || a->cur->cap - a->used < n) {
        size_t std = TP_ARENA_CHUNK - sizeof(tp_arena_chunk_t);
        if (a->cur == NULL && a->keep != NULL && n <= a->keep->cap) {
            a->cur = a->keep; /* after a reset */
        } else {
            a->cur = chunk_new(n > std ? n : std, a->cur);
            if (a->keep == NULL)
                a->keep = a->cur;
        }
        a->used = 0;
    }
    void *p = a->cur->data + a->used;
    a->used += n;
    return p;
}

void *tp_arena_calloc(tp_arena_t *a, size_t n)
{
    void *p = tp_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

void tp_arena_reset(tp_arena_t *a)
{
    for (tp_arena_chunk_t *c = a->cur, *next; c != NULL && c != a->keep; c = next) {
        next = c->next;
        free(c);
    }
    a->cur = NULL;
    a->used = 0;
}

void tp_arena_free(tp_arena_t *a)
{
    tp_arena_reset(a);
    free(a->keep);
    a->keep = NULL;
}
