/*
 * common/tp_redis_purge.h: deletes the keys that match a pattern (SCAN
 * ... MATCH, COUNT 1000, and a DEL per key found), as Tyk's
 * DeleteScanMatch: the response cache's purge (DELETE /tyk/cache/{api_id}
 * and the DeleteAPICache signal).
 *
 * Used by: workers (the REST API) and the master (cluster notifications),
 * on the loop of their Redis client. In a Redis Cluster the SCAN covers the
 * node it reaches, as Tyk's does.
 */
#ifndef TP_REDIS_PURGE_H
#define TP_REDIS_PURGE_H

#include "tp_redis.h"

typedef struct tp_redis_purge_s tp_redis_purge_t;

/* <err> is NULL when every matching key was deleted; <deleted> counts them. */
typedef void (*tp_redis_purge_cb)(void *arg, long deleted, const char *err);

/* Starts the purge of the keys matching <pattern>; <cb> (may be NULL) runs
 * once, from the loop. The handle is valid until then. */
tp_redis_purge_t *tp_redis_purge(tp_redis_t *r, const char *pattern, tp_redis_purge_cb cb,
                                 void *arg);

/* The caller is going away: the purge goes on, <cb> will not run. */
void tp_redis_purge_detach(tp_redis_purge_t *p);

#endif
