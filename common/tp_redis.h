/*
 * common/tp_redis.h: the Redis client: asynchronous, pooled, pipelined, with
 * per-command timeouts, reconnection, TLS (mbedTLS), Redis Cluster and
 * Sentinel, and pub/sub on a dedicated connection.
 *
 * Used by: workers (sessions, counters, health) and the master (pub/sub,
 * reload signals), each on its own libuv loop; a client belongs to one loop
 * and one thread, so there is no locking. Debian's hiredis 0.14 has
 * neither TLS nor cluster support, so hiredis only encodes commands
 * (redisFormatCommand*) and decodes replies (redisReader); the connections,
 * TLS, routing and timeouts are ours.
 *
 * Topology, as Tyk picks it from `storage`: master_name set -> Sentinel
 * (addrs are the sentinels); enable_cluster -> Redis Cluster (addrs seed the
 * slot map); otherwise one server, the first of addrs, else hosts, else
 * host:port.
 *
 * Commands: tp_redis_cmd() formats, routes (by the key's slot in a
 * cluster), queues and pipelines; the callback runs exactly once, from the
 * loop, never from inside tp_redis_cmd(): with a reply (which may be a Redis
 * error reply), or with an error text (timeout, connection lost, no
 * server). While the servers are unreachable, commands fail at once rather
 * than queue. The reply is borrowed for the duration of the callback.
 */
#ifndef TP_REDIS_H
#define TP_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "tp_redis_conf.h"

typedef struct tp_redis_s tp_redis_t;
typedef struct tp_rcmd_s tp_rcmd_t;

/* What the client counts of its callers' commands, where its owner wants
 * it (shared memory, for the metrics): one writer, read by anyone. */
typedef struct tp_redis_stats_s {
    _Atomic uint64_t commands; /* answered or failed */
    _Atomic uint64_t errors;   /* failed, or answered with an error reply */
    _Atomic uint64_t usec;     /* their round trips, summed */
} tp_redis_stats_t;

/* <reply> is NULL exactly when <err> is not. */
typedef void (*tp_redis_cb)(void *arg, const redisReply *reply, const char *err);
/* A message on a subscribed channel. */
typedef void (*tp_redis_msg_cb)(void *arg, const char *channel, const char *payload, size_t len);

/* Creates a client on <loop> for the `storage` settings; connections open
 * lazily on the first command (or tp_redis_connect). <name> labels log
 * lines. Returns NULL with a reason in <err> when the settings cannot work
 * (a TLS file that does not load, no address). */
tp_redis_t *tp_redis_new(uv_loop_t *loop, const tp_redis_conf_t *conf, const char *name, char *err,
                         size_t errlen);

/* Checks the settings without connecting: addresses, TLS files. Returns
 * 0, or -1 with the reason (JSON path included) in <err>. */
int tp_redis_check_conf(const tp_redis_conf_t *conf, char *err, size_t errlen);

/* Counts the commands from now on into <stats> (NULL: stop). */
void tp_redis_set_stats(tp_redis_t *r, tp_redis_stats_t *stats);

/* Closes every connection; callbacks of commands still queued run with the
 * error "client closed". The client is freed once its handles are closed,
 * which takes one more loop turn. */
void tp_redis_free(tp_redis_t *r);

/* Opens the connections now instead of on first use. */
void tp_redis_connect(tp_redis_t *r);

/* Sends a command: hiredis format string ("SET %s %b") or argv. Returns a
 * handle for tp_redis_cancel, valid until the callback runs. Never NULL. */
tp_rcmd_t *tp_redis_cmd(tp_redis_t *r, tp_redis_cb cb, void *arg, const char *fmt, ...);
tp_rcmd_t *tp_redis_cmdv(tp_redis_t *r, tp_redis_cb cb, void *arg, int argc, const char **argv,
                         const size_t *argvlen);

/* The caller is going away: its callback will not run. */
void tp_redis_cancel(tp_rcmd_t *cmd);

/* Subscribes to <channel> on a dedicated connection, re-subscribing after
 * every reconnect. One channel per client is enough for Turnpike. */
void tp_redis_subscribe(tp_redis_t *r, const char *channel, tp_redis_msg_cb cb, void *arg);

/* Is the tp_redis_subscribe subscription confirmed by the server now? */
int tp_redis_subscribed(const tp_redis_t *r);

/* Is a server reachable right now? <since_ms> is the loop time of the last
 * change; <err> the last error text (address included) or "". */
int tp_redis_up(const tp_redis_t *r, uint64_t *since_ms, const char **err);

/* One line about the topology, for operators: "standalone 10.0.0.5:6379",
 * "cluster of 6 nodes (3 own slots)", "sentinel master mymaster at ...". */
const char *tp_redis_describe(const tp_redis_t *r, char *buf, size_t n);

/* Redis Cluster key slot of <key> (CRC16, honouring {hash tags}). */
unsigned tp_redis_slot(const char *key, size_t len);

/* Parses a cluster redirection error ("MOVED 3999 10.0.0.3:6381" or
 * "ASK 3999 10.0.0.3:6381"). Returns 1 for MOVED, 2 for ASK, 0 when <err>
 * is neither (or malformed). */
int tp_redis_parse_redirect(const char *err, unsigned *slot, char *addr, size_t addrlen);

/* Which argument of <argv> is the key that routes the command in a
 * cluster: 1 for most commands, 3 for EVAL/EVALSHA, -1 for none. */
int tp_redis_key_index(const char *cmd, size_t len, int argc);

#endif
