/*
 * common/tp_redis_script.h: Lua scripts run by their SHA-1 (EVALSHA), and
 * sent whole (EVAL) only when a server answers NOSCRIPT: after a restart,
 * a failover, or on a cluster node that has not seen the script yet. So a
 * script costs its text once per server, not once per call.
 *
 * Used by: workers (rate limits, quotas, node announcements). Same
 * threading as tp_redis: one loop, no locking.
 */
#ifndef TP_REDIS_SCRIPT_H
#define TP_REDIS_SCRIPT_H

#include "tp_redis.h"

typedef struct tp_script_s {
    const char *src;
    char sha[41]; /* lowercase hex SHA-1 of src */
} tp_script_t;

typedef struct tp_eval_s tp_eval_t;

/* Computes <s>'s digest. <src> must outlive <s>. */
void tp_script_init(tp_script_t *s, const char *src);

/* Runs <s> with <nkeys> keys then the other arguments, all in <args>
 * (<nargs> in all, lengths in <lens>, or NULL for strings). The callback
 * runs exactly once, as for tp_redis_cmd, unless cancelled. */
tp_eval_t *tp_redis_eval(tp_redis_t *r, const tp_script_t *s, tp_redis_cb cb, void *arg, int nkeys,
                         int nargs, const char *const *args, const size_t *lens);

/* The caller is going away: its callback will not run. */
void tp_redis_eval_cancel(tp_eval_t *e);

#endif
