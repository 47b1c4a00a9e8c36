/*
 * master/tp_master.h: the master process: listening sockets, worker
 * processes, signals, reloads and graceful shutdown.
 *
 * Used by: the master only. It parses and validates the configuration,
 * opens one SO_REUSEPORT listening socket per worker (so connections
 * queued for a worker that died wait for its replacement instead of being
 * refused), forks the workers, respawns any that die, and reaps every child
 * (it may be PID 1 in a container). It does no request work.
 *
 * Signals (handlers only write to a self-pipe; the loop acts on them):
 *   SIGTERM, SIGQUIT  graceful: readiness fails for graceful_shutdown_delay_seconds,
 *                     then workers stop accepting, finish in-flight requests
 *                     within graceful_shutdown_timeout_duration, and exit 0
 *   second TERM/QUIT, SIGINT   fast stop
 *   SIGHUP            reload: validate the new configuration, start a new
 *                     generation of workers on the same sockets, drain the old
 *   SIGCHLD           reap and respawn
 */
#ifndef TP_MASTER_H
#define TP_MASTER_H

#include <sys/types.h>

#include "tp_conf.h"
#include "tp_route.h"

/* One configuration generation: the parsed files and the route table. */
typedef struct tp_gen_s {
    tp_conf_t conf;
    tp_apis_t apis;
    tp_router_t router;
} tp_gen_t;

/* Loads tyk.conf and the API definitions; logs what it finds. Returns 0,
 * or -1 with the reasons (one per line) in <err>. API files that fail are
 * skipped and counted in gen->apis.nerrors. */
int tp_gen_load(tp_gen_t *gen, const char *conf_path, char *err, size_t errlen);
void tp_gen_free(tp_gen_t *gen);

/* Runs the master until shutdown; takes ownership of <gen>. Returns the
 * process exit code. */
int tp_master_run(const char *conf_path, tp_gen_t *gen);

/* Opens a listening TCP socket on <addr> ("" for all interfaces, dual
 * stack) and <port> with SO_REUSEPORT, so several can share the port.
 * Returns the fd, or -1 with a reason in <err>. */
int tp_listen_open(const char *addr, int port, char *err, size_t errlen);

/* Fails with a clear reason when another process already listens on
 * <addr>:<port> (SO_REUSEPORT would otherwise silently share it). */
int tp_listen_probe(const char *addr, int port, char *err, size_t errlen);

/* `turnpike --check-redis`: returns the exit code. */
int tp_check_redis(const tp_conf_t *conf);

#endif
