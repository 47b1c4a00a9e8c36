/*
 * common/tp_strmap.c: see tp_strmap.h. Linear probing in a power-of-two
 * table kept at most half full.
 */
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_strmap.h"

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t slot_of(const tp_strmap_t *m, const char *key)
{
    size_t j = fnv1a(key) & (m->cap - 1);
    while (m->keys[j] != NULL && strcmp(m->keys[j], key) != 0)
        j = (j + 1) & (m->cap - 1);
    return j;
}

uint32_t *tp_strmap_get(const tp_strmap_t *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t j = slot_of(m, key);
    return m->keys[j] != NULL ? &m->vals[j] : NULL;
}

static void grow(tp_strmap_t *m)
{
    tp_strmap_t bigger = {0};
    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.keys = tp_calloc(bigger.cap, sizeof(char *));
    bigger.vals = tp_calloc(bigger.cap, sizeof(uint32_t));
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == NULL)
            continue;
        size_t j = slot_of(&bigger, m->keys[i]);
        bigger.keys[j] = m->keys[i];
        bigger.vals[j] = m->vals[i];
    }
    bigger.n = m->n;
    free(m->keys);
    free(m->vals);
    *m = bigger;
}

uint32_t *tp_strmap_put(tp_strmap_t *m, const char *key, uint32_t val, int *added)
{
    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    size_t j = slot_of(m, key);
    if (added != NULL)
        *added = m->keys[j] == NULL;
    if (m->keys[j] == NULL) {
        m->keys[j] = tp_strdup(key);
        m->vals[j] = val;
        m->n++;
    }
    return &m->vals[j];
}

void tp_strmap_free(tp_strmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}
