/*
 * master/tp_master.h: the master process: listening sockets, worker
 * processes, signals, reloads, the admin socket, graceful shutdown.
 *
 * Used by: the master only. It parses and validates the configuration,
 * opens one SO_REUSEPORT listening socket per worker (so connections
 * queued for a worker that died wait for its replacement instead of being
 * refused), maps the shared memory, forks the workers, respawns any that
 * die, and reaps every child (it may be PID 1 in a container). It does no
 * request work.
 *
 * Reloads. Every trigger -- SIGHUP, GET /tyk/reload on any worker, the admin
 * socket's `reload`, a signed notification on tyk.cluster.notifications --
 * lands in tp_master_request_reload(). Requests that arrive while one
 * reload is under way are served by the next one (coalesced). A reload
 * re-reads tyk.conf: if the effective configuration is unchanged, the new
 * API definitions and policies are published as a shared-memory generation
 * and the workers switch between requests; if it changed, a new generation
 * of workers starts on the same sockets and the old one drains. Either way
 * invalid files keep the old generation serving, and the reload reports
 * every error. A reload is done when every worker serves it.
 *
 * Signals (handlers only write to a self-pipe; the loop acts on them):
 *   SIGTERM, SIGQUIT  graceful: readiness fails for graceful_shutdown_delay_seconds,
 *                     then workers stop accepting, finish in-flight requests
 *                     within graceful_shutdown_timeout_duration, and exit 0
 *   second TERM/QUIT, SIGINT   fast stop
 *   SIGHUP            reload
 *   SIGCHLD           reap and respawn
 */
#ifndef TP_MASTER_H
#define TP_MASTER_H

#include <sys/types.h>

#include <uv.h>

#include "tp_conf.h"
#include "tp_list.h"
#include "tp_redis.h"
#include "tp_route.h"
#include "tp_shm.h"

#define TP_MAX_OLD 1024

/* One configuration: the parsed files and the route table. */
typedef struct tp_gen_s {
    tp_conf_t conf;
    tp_apis_t apis;
    tp_policies_t policies;
    tp_router_t router;
} tp_gen_t;

typedef struct tp_slot_s {
    pid_t pid;
    int shm_id;          /* its row in shared memory */
    int chan;            /* our end of the channel to the worker */
    uv_poll_t *poll;     /* watching chan */
    uint64_t started;    /* ms */
    uint64_t respawn_at; /* ms, 0 when not waiting */
    int quick_deaths;    /* recent deaths soon after start */
    int restarts;
} tp_slot_t;

/* Someone waiting for a reload to finish. */
typedef struct tp_waiter_s {
    tp_list_t link;
    pid_t worker;   /* a worker's blocking /tyk/reload ... */
    uint32_t token; /* ... and its token */
    void *admin;    /* or an admin socket client */
} tp_waiter_t;

typedef struct tp_master_s {
    uv_loop_t loop;
    pid_t pid;
    const char *conf_path;
    tp_gen_t *gen;
    tp_shm_t *shm;
    uint64_t generation;   /* API generation published last */
    int worker_generation; /* how many times workers were replaced */
    int nworkers;
    int *listen_fds;
    int *control_fds; /* -1 when control_api_port is 0 */
    tp_slot_t *slots;
    /* workers of earlier generations, draining */
    pid_t old_pids[TP_MAX_OLD];
    int old_chans[TP_MAX_OLD];
    int old_shm[TP_MAX_OLD];
    int nold;
    int sigpipe[2];
    uv_poll_t sig_poll;
    uv_timer_t timer;
    int state;
    uint64_t stop_deadline;
    int64_t started_us;
    tp_redis_t *redis; /* pub/sub: tyk.cluster.notifications */

    /* reloads */
    uv_timer_t reload_timer;
    tp_list_t reload_queue;   /* waiters for the next reload */
    tp_list_t reload_running; /* waiters for the one under way */
    int reload_scheduled;
    int reload_pending;            /* a trigger came after the running reload read its files */
    uint64_t reload_wait_since_ms; /* waiting for a free shared-memory slot since */
    int reloading;                 /* published, workers switching */
    uint64_t reload_target;
    uint64_t reload_started_ms;
    int draining_readiness; /* admin `drain`: /ready fails */
    unsigned reloads_ok;
    unsigned reloads_failed;
    int64_t last_reload_us;
    char last_reload_err[4096];
    int ready_notified;

    /* the admin socket */
    uv_pipe_t admin;
    int admin_open;
    char *admin_path; /* where the admin socket is bound */

    /* the Prometheus endpoint (tp_metrics.c) */
    uv_tcp_t metrics;
    int metrics_open;        /* on turnpike.metrics_port as it was at start: reloads keep it */
    tp_buf_t metrics_cache;  /* a scrape's buffer, kept for the next one */
    uv_timer_t health_timer; /* /tyk/health's samples (tp_apihealth.c) */
    struct tp_hostcheck_s *hostcheck; /* uptime tests (tp_hostcheck.c), NULL when none */
} tp_master_t;

/* Loads tyk.conf, the API definitions and policies; logs what it finds.
 * With <strict>, any invalid API definition fails the load (reloads);
 * otherwise invalid files are skipped and counted (start-up). Returns 0, or
 * -1 with the reasons (one per line) in <err>. */
int tp_gen_load(tp_gen_t *gen, const char *conf_path, int strict, char *err, size_t errlen);
void tp_gen_free(tp_gen_t *gen);

/* Runs the master until shutdown; takes ownership of <gen>. Returns the
 * process exit code. */
/* The master of this process, once tp_master_run has started (for
 * debuggers, and so that leak checkers see its memory as reachable). */
extern tp_master_t *tp_master_g;

int tp_master_run(const char *conf_path, tp_gen_t *gen);

/* Asks for a reload; <w> (may be NULL) is told when it is done, with
 * tp_master_reload_done. <why> is logged. */
void tp_master_request_reload(tp_master_t *m, tp_waiter_t *w, const char *why);
/* Tells every current and old worker <msg>. */
void tp_master_broadcast(tp_master_t *m, const char *msg);

/* Opens a listening TCP socket on <addr> ("" for all interfaces, dual
 * stack) and <port> with SO_REUSEPORT, so several can share the port.
 * Returns the fd, or -1 with a reason in <err>. */
int tp_listen_open(const char *addr, int port, char *err, size_t errlen);

/* Fails with a clear reason when another process already listens on
 * <addr>:<port> (SO_REUSEPORT would otherwise silently share it). */
int tp_listen_probe(const char *addr, int port, char *err, size_t errlen);

/* `turnpike --check-redis`: returns the exit code. */
int tp_check_redis(const tp_conf_t *conf);

/* master/tp_admin.c: the admin unix socket (turnpike.admin_socket). */
int tp_admin_start(tp_master_t *m, char *err, size_t errlen);
void tp_admin_stop(tp_master_t *m);
/* A reload an admin client waits for ended. */
void tp_admin_reload_done(tp_master_t *m, void *client, int ok, const char *errors);
/* master/tp_apihealth.c: /tyk/health's per-second samples. */
tp_health_t *tp_health_create(uint32_t max_apis);
void tp_apihealth_start(tp_master_t *m);
/* master/tp_metrics.c: GET /metrics on turnpike.metrics_port. */
int tp_metrics_start(tp_master_t *m, char *err, size_t errlen);
void tp_metrics_stop(tp_master_t *m);
/* The exposition text of every metric, appended to <o>. */
void tp_metrics_render(tp_master_t *m, tp_buf_t *o);
/* `turnpike ctl [--socket PATH | --conf FILE] <command...>`: the client. */
int tp_ctl_main(int argc, char **argv);

/* master/tp_notify.c: systemd's notify protocol, without libsystemd. */
void tp_sd_notify(const char *state);
/* A message on tyk.cluster.notifications: checks Tyk's signature and acts. */
void tp_master_notification(tp_master_t *m, const char *payload, size_t len);

#endif
