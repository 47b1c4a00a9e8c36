/*
 * common/tp_strmap.h: a string -> uint32_t hash map (open addressing,
 * FNV-1a), for the lookups that must stay linear in the number of APIs:
 * duplicate api_ids, listen-path collisions, statistics rows, pools.
 * Keys are copied; nothing is ever removed.
 */
#ifndef TP_STRMAP_H
#define TP_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_strmap_s {
    char **keys;
    uint32_t *vals;
    size_t n, cap;
} tp_strmap_t;

/* The value of <key>, or NULL. */
uint32_t *tp_strmap_get(const tp_strmap_t *m, const char *key);

/* The value of <key>; when absent, <key> is added with <val> first and
 * *added (if not NULL) is set to 1. */
uint32_t *tp_strmap_put(tp_strmap_t *m, const char *key, uint32_t val, int *added);

void tp_strmap_free(tp_strmap_t *m);

#endif
