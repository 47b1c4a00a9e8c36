/*
 * common/tp_list.h: intrusive doubly linked lists (header-only).
 *
 * Used by: master and workers. The list head is a sentinel node; an
 * element embeds a tp_list_t and is found again with tp_container_of.
 */
#ifndef TP_LIST_H
#define TP_LIST_H

#include <stddef.h>

typedef struct tp_list_s {
    struct tp_list_s *prev;
    struct tp_list_s *next;
} tp_list_t;

#define tp_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void tp_list_init(tp_list_t *l)
{
    l->prev = l->next = l;
}

static inline int tp_list_empty(const tp_list_t *l)
{
    return l->next == l;
}

/* Is <n> linked into some list? (Unlinked nodes point at themselves.) */
static inline int tp_list_linked(const tp_list_t *n)
{
    return n->next != n && n->next != NULL;
}

static inline void tp_list_insert_tail(tp_list_t *l, tp_list_t *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void tp_list_insert_head(tp_list_t *l, tp_list_t *n)
{
    n->next = l->next;
    n->prev = l;
    l->next->prev = n;
    l->next = n;
}

static inline void tp_list_remove(tp_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define tp_list_foreach_safe(it, tmp, head)                                                        \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif
