/*
 * master/tp_master.c: worker processes, signals, reloads and shutdown.
 */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_master.h"
#include "tp_shm_session.h"
#include "tp_redis.h"
#include "tp_hostcheck.h"
#include "tp_shm_breaker.h"
#include "tp_shm_hosts.h"
#include "tp_shm_limit.h"
#include "tp_shm_metrics.h"
#include "tp_time.h"
#include "tp_worker.h"

/* A reload not acknowledged by every worker by then is reported anyway. */
#define TP_RELOAD_ACK_MS 10000
/* When every shared-memory slot is still in use, try again after this. */
#define TP_RELOAD_RETRY_MS 100

enum { M_RUNNING, M_DELAYING, M_DRAINING, M_STOPPING };

/* The only globals besides the log state: the self-pipe for signals. */
static volatile sig_atomic_t sig_fd = -1;
/* The one master of this process: it lives until exit, and what it holds
 * stays reachable (a start-up error returns without unwinding it). */
tp_master_t *tp_master_g;

static void on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    if (sig_fd >= 0 && write(sig_fd, &b, 1) < 0) {
        /* the pipe is full: the loop is already busy with signals */
    }
    errno = saved;
}

static const int handled_signals[] = {SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGCHLD, SIGUSR1};
#define NSIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

/* ---- configuration generations ---------------------------------------------- */

int tp_gen_load(tp_gen_t *gen, const char *conf_path, int strict, char *err, size_t errlen)
{
    memset(gen, 0, sizeof(*gen));
    if (tp_conf_load(conf_path, &gen->conf, err, errlen) < 0) {
        tp_conf_free(&gen->conf);
        return -1;
    }
    tp_buf_t errs = {0};
    if (tp_apis_load_dir(gen->conf.app_path, &gen->conf, &gen->apis, &errs, err, errlen) < 0)
        goto err;
    if (strict && gen->apis.nerrors > 0) {
        snprintf(err, errlen, "%.*s", (int)errs.len, errs.data);
        goto err;
    }
    char why[2048];
    if (tp_policies_load(&gen->conf, &gen->policies, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        goto err;
    }
    if (tp_redis_check_conf(&gen->conf.storage, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", gen->conf.file, why);
        goto err;
    }
    tp_buf_free(&errs);
    tp_router_build(&gen->router, &gen->apis, &gen->conf);
    return 0;
err:
    tp_buf_free(&errs);
    tp_policies_free(&gen->policies);
    tp_apis_free(&gen->apis);
    tp_conf_free(&gen->conf);
    return -1;
}

void tp_gen_free(tp_gen_t *gen)
{
    tp_router_free(&gen->router);
    tp_policies_free(&gen->policies);
    tp_apis_free(&gen->apis);
    tp_conf_free(&gen->conf);
}

/* ---- talking to workers ------------------------------------------------------ */

static void send_msg(int chan, const char *msg)
{
    if (chan >= 0 && send(chan, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
        errno != EPIPE && errno != ECONNREFUSED)
        tp_log_debug("cannot tell a worker \"%s\": %s", msg, strerror(errno));
}

void tp_master_broadcast(tp_master_t *m, const char *msg)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid > 0)
            send_msg(m->slots[i].chan, msg);
    for (int i = 0; i < m->nold; i++)
        send_msg(m->old_chans[i], msg);
}

static int live_workers(const tp_master_t *m)
{
    int n = m->nold;
    for (int i = 0; i < m->nworkers; i++)
        n += m->slots[i].pid > 0;
    return n;
}

static void check_reload_done(tp_master_t *m);
static void worker_says(tp_master_t *m, pid_t pid, int chan, char *msg);

static void on_chan(uv_poll_t *p, int status, int events)
{
    tp_master_t *m = p->loop->data;
    int chan = (int)(intptr_t)p->data;
    (void)events;
    for (int guard = 0; guard < 64 && status >= 0; guard++) {
        char msg[1024];
        ssize_t n = recv(chan, msg, sizeof(msg) - 1, MSG_DONTWAIT);
        if (n <= 0)
            break; /* EOF: the worker is gone, SIGCHLD tells the rest */
        msg[n] = '\0';
        pid_t pid = 0;
        for (int i = 0; i < m->nworkers; i++)
            if (m->slots[i].chan == chan)
                pid = m->slots[i].pid;
        worker_says(m, pid, chan, msg);
    }
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void watch_chan(tp_master_t *m, tp_slot_t *s)
{
    s->poll = tp_calloc(1, sizeof(uv_poll_t));
    uv_poll_init(&m->loop, s->poll, s->chan);
    s->poll->data = (void *)(intptr_t)s->chan;
    uv_poll_start(s->poll, UV_READABLE, on_chan);
}

static void unwatch_chan(tp_slot_t *s)
{
    if (s->poll != NULL) {
        uv_poll_stop(s->poll);
        uv_close((uv_handle_t *)s->poll, on_poll_closed);
        s->poll = NULL;
    }
}

/* ---- spawning ------------------------------------------------------------------ */

/* uv_walk callback: the descriptor of one of the master's handles. */
static void close_handle_fd(uv_handle_t *h, void *arg)
{
    uv_os_fd_t fd;
    (void)arg;
    if (uv_fileno(h, &fd) == 0 && fd > 2)
        close(fd);
}

/* In the child: forget everything that belongs to the master. */
static void child_cleanup(tp_master_t *m, int slot, int chan)
{
    for (size_t i = 0; i < NSIGNALS; i++)
        signal(handled_signals[i], SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->pid)
        _exit(0);
    sig_fd = -1;
    /* Close descriptors by name: libuv keeps process-wide ones (its signal
     * lock pipe, recreated after fork) that a blanket close would break. */
    uv_walk(&m->loop, close_handle_fd, NULL); /* signals, channels, Redis, admin */
    close(m->sigpipe[1]);
    close(uv_backend_fd(&m->loop));
    for (int i = 0; i < m->nworkers; i++) {
        if (i != slot && m->listen_fds[i] >= 0)
            close(m->listen_fds[i]);
        if (i != slot && m->control_fds[i] >= 0)
            close(m->control_fds[i]);
        if (m->slots[i].chan >= 0 && m->slots[i].chan != chan)
            close(m->slots[i].chan);
    }
    for (int i = 0; i < m->nold; i++)
        close(m->old_chans[i]);
}

/* A row of shared memory no process uses. */
static int free_shm_row(tp_master_t *m)
{
    for (int k = 0; k < TP_SHM_MAX_WORKERS; k++) {
        if (atomic_load(&m->shm->workers[k].pid) != 0)
            continue;
        int taken = 0;
        for (int i = 0; i < m->nworkers; i++)
            taken |= m->slots[i].pid > 0 && m->slots[i].shm_id == k;
        for (int i = 0; i < m->nold; i++)
            taken |= m->old_shm[i] == k;
        if (!taken)
            return k;
    }
    return -1;
}

static int spawn(tp_master_t *m, int slot)
{
    int row = free_shm_row(m);
    if (row < 0) {
        tp_log_error("no shared-memory row free for worker %d (at most %d workers)", slot,
                     TP_SHM_MAX_WORKERS);
        return -1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        tp_log_error("cannot create a worker channel: %s", strerror(errno));
        return -1;
    }
    /* the worker starts on the published generation */
    tp_shm_worker_t *sw = &m->shm->workers[row];
    atomic_store(&sw->serving, m->generation);
    atomic_store(&sw->oldest, m->generation);
    atomic_store(&sw->slots, 0); /* its serving generation protects what it will read */
    atomic_store(&sw->pid, -1);  /* reserved until the pid is known */
    atomic_store(&sw->started_us, tp_time_wall_us());
    atomic_store(&sw->redis, -1);
    atomic_store(&sw->an_buffered, 0); /* the counters go on from the row's last worker */

    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        child_cleanup(m, slot, sv[1]);
        atomic_store(&sw->pid, getpid());
        char role[24];
        snprintf(role, sizeof(role), "worker.%d", slot);
        tp_log_set_role(role);
        tp_worker_run(row, m->listen_fds[slot], m->control_fds[slot], sv[1], &m->gen->conf, m->shm);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    if (pid < 0) {
        tp_log_error("cannot fork worker %d: %s", slot, strerror(errno));
        atomic_store(&sw->pid, 0);
        close(sv[0]);
        return -1;
    }
    atomic_store(&sw->pid, pid);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    tp_slot_t *s = &m->slots[slot];
    s->pid = pid;
    s->shm_id = row;
    s->chan = sv[0];
    s->started = tp_time_mono_ms();
    s->respawn_at = 0;
    watch_chan(m, s);
    if (m->draining_readiness)
        send_msg(s->chan, "notready"); /* a replacement keeps the operator's drain */
    tp_log_info("started worker.%d (pid %d, generation %d)", slot, (int)pid, m->worker_generation);
    return 0;
}

static void arm_timer(tp_master_t *m);

static void describe_exit(char *buf, size_t n, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "stopped (status 0x%x)", status);
}

static _Noreturn void master_exit(tp_master_t *m, int code)
{
    tp_log_info("master exiting");
    tp_admin_stop(m);
    tp_metrics_stop(m);
    exit(code);
}

static void reap(tp_master_t *m)
{
    int status;
    pid_t pid;
    uint64_t now = tp_time_mono_ms();
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        char how[96];
        describe_exit(how, sizeof(how), status);
        int found = 0;
        for (int i = 0; i < m->nworkers && !found; i++) {
            tp_slot_t *s = &m->slots[i];
            if (s->pid != pid)
                continue;
            found = 1;
            unwatch_chan(s);
            close(s->chan);
            s->chan = -1;
            s->pid = 0;
            atomic_store(&m->shm->workers[s->shm_id].pid, 0);
            if (m->state != M_RUNNING) {
                tp_log_info("worker.%d (pid %d) %s", i, (int)pid, how);
                continue;
            }
            tp_log_warn("worker.%d (pid %d) %s; starting a new one", i, (int)pid, how);
            s->restarts++;
            if (now - s->started < 1000)
                s->quick_deaths++;
            else
                s->quick_deaths = 0;
            uint64_t delay = 0;
            if (s->quick_deaths > 0) {
                delay = 100u << (s->quick_deaths < 6 ? s->quick_deaths : 6);
                if (delay > 5000)
                    delay = 5000;
                tp_log_warn("worker.%d keeps dying right after start; next attempt in %llu ms", i,
                            (unsigned long long)delay);
            }
            s->respawn_at = now + delay;
        }
        for (int i = 0; i < m->nold && !found; i++) {
            if (m->old_pids[i] != pid)
                continue;
            found = 1;
            tp_log_info("old worker (pid %d) %s", (int)pid, how);
            close(m->old_chans[i]);
            atomic_store(&m->shm->workers[m->old_shm[i]].pid, 0);
            m->old_pids[i] = m->old_pids[m->nold - 1];
            m->old_chans[i] = m->old_chans[m->nold - 1];
            m->old_shm[i] = m->old_shm[m->nold - 1];
            m->nold--;
        }
        if (!found)
            tp_log_debug("reaped process %d, which %s", (int)pid, how);
    }
    if (m->state != M_RUNNING && live_workers(m) == 0)
        master_exit(m, 0);
    tp_shm_release_slots(m->shm);
    check_reload_done(m);
    arm_timer(m);
}

/* ---- shutdown ------------------------------------------------------------------ */

static void close_listeners(tp_master_t *m)
{
    for (int i = 0; i < m->nworkers; i++) {
        if (m->listen_fds[i] >= 0)
            close(m->listen_fds[i]);
        if (m->control_fds[i] >= 0)
            close(m->control_fds[i]);
        m->listen_fds[i] = m->control_fds[i] = -1;
    }
}

static void kill_all(tp_master_t *m, int sig)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid > 0)
            kill(m->slots[i].pid, sig);
    for (int i = 0; i < m->nold; i++)
        kill(m->old_pids[i], sig);
}

static void begin_drain(tp_master_t *m)
{
    m->state = M_DRAINING;
    tp_hostcheck_stop(m);
    int64_t secs = m->gen->conf.graceful_shutdown_timeout_duration;
    tp_log_info("draining: workers finish in-flight requests within %lld s", (long long)secs);
    tp_sd_notify("STOPPING=1");
    close_listeners(m);
    tp_admin_stop(m);
    tp_metrics_stop(m);
    tp_master_broadcast(m, "drain");
    m->stop_deadline = tp_time_mono_ms() + (uint64_t)secs * 1000 + 2000;
    if (live_workers(m) == 0)
        master_exit(m, 0);
    arm_timer(m);
}

static void stop_fast(tp_master_t *m, const char *why)
{
    tp_log_info("stopping now (%s)", why);
    tp_sd_notify("STOPPING=1");
    m->state = M_STOPPING;
    tp_hostcheck_stop(m);
    close_listeners(m);
    tp_admin_stop(m);
    tp_metrics_stop(m);
    tp_master_broadcast(m, "quit");
    m->stop_deadline = tp_time_mono_ms() + 3000;
    if (live_workers(m) == 0)
        master_exit(m, 0);
    arm_timer(m);
}

static void shutdown_graceful(tp_master_t *m, const char *why)
{
    if (m->state != M_RUNNING) {
        stop_fast(m, "second stop signal");
        return;
    }
    int64_t delay = m->gen->conf.graceful_shutdown_delay_seconds;
    tp_log_info("%s: shutting down gracefully", why);
    if (delay > 0) {
        m->state = M_DELAYING;
        tp_master_broadcast(m, "notready");
        tp_log_info("readiness now fails; draining starts in %lld s", (long long)delay);
        m->stop_deadline = tp_time_mono_ms() + (uint64_t)delay * 1000;
        arm_timer(m);
        return;
    }
    begin_drain(m);
}

/* ---- reloads ------------------------------------------------------------------- */

static void master_subscribe(tp_master_t *m);

static void finish_waiters(tp_master_t *m, tp_list_t *list, int ok, const char *errors)
{
    while (!tp_list_empty(list)) {
        tp_waiter_t *w = tp_container_of(list->next, tp_waiter_t, link);
        tp_list_remove(&w->link);
        if (w->admin != NULL) {
            tp_admin_reload_done(m, w->admin, ok, errors);
        } else if (w->worker > 0) {
            char msg[1024];
            snprintf(msg, sizeof(msg), "reloaded %u %d %.900s", w->token, ok, ok ? "" : errors);
            for (int i = 0; i < m->nworkers; i++)
                if (m->slots[i].pid == w->worker)
                    send_msg(m->slots[i].chan, msg);
            for (int i = 0; i < m->nold; i++)
                if (m->old_pids[i] == w->worker)
                    send_msg(m->old_chans[i], msg);
        }
        free(w);
    }
}

static void on_reload_timer(uv_timer_t *t);

static void schedule_reload(tp_master_t *m, uint64_t delay)
{
    m->reload_scheduled = 1;
    uv_timer_start(&m->reload_timer, on_reload_timer, delay, 0);
}

void tp_master_request_reload(tp_master_t *m, tp_waiter_t *w, const char *why)
{
    if (m->state != M_RUNNING) {
        if (w != NULL) {
            tp_list_t one;
            tp_list_init(&one);
            tp_list_insert_tail(&one, &w->link);
            finish_waiters(m, &one, 0, "the gateway is shutting down");
        }
        return;
    }
    tp_log_info("reload requested (%s)", why);
    if (w != NULL)
        tp_list_insert_tail(&m->reload_queue, &w->link);
    /* files may have changed after a running reload read them: one more */
    m->reload_pending = 1;
    if (!m->reload_scheduled && !m->reloading)
        schedule_reload(m, 0);
}

/* After a reload ends: the next one, if something asked meanwhile. */
static void reload_next(tp_master_t *m)
{
    if (m->reload_pending && !m->reload_scheduled)
        schedule_reload(m, 0);
}

/* Every current worker serves the generation being rolled out? */
static void check_reload_done(tp_master_t *m)
{
    if (!m->reloading)
        return;
    int done = 1;
    for (int i = 0; i < m->nworkers; i++) {
        tp_slot_t *s = &m->slots[i];
        if (s->pid > 0 && atomic_load(&m->shm->workers[s->shm_id].serving) < m->reload_target)
            done = 0;
        if (s->pid == 0 && s->respawn_at == 0 && m->state == M_RUNNING)
            done = 0; /* a fork failed: it will be retried */
    }
    uint64_t took = tp_time_mono_ms() - m->reload_started_ms;
    if (!done && took < TP_RELOAD_ACK_MS)
        return;
    m->reloading = 0;
    m->last_reload_us = tp_time_wall_us();
    if (done) {
        m->reloads_ok++;
        m->last_reload_err[0] = '\0';
        tp_log_info("reload done: generation %llu serves %zu APIs and %zu policies on every "
                    "worker (%llu ms)",
                    (unsigned long long)m->reload_target, m->gen->apis.n, m->gen->policies.n,
                    (unsigned long long)took);
        finish_waiters(m, &m->reload_running, 1, "");
    } else {
        snprintf(m->last_reload_err, sizeof(m->last_reload_err),
                 "workers did not all switch to generation %llu within %d s",
                 (unsigned long long)m->reload_target, TP_RELOAD_ACK_MS / 1000);
        tp_log_warn("%s", m->last_reload_err);
        finish_waiters(m, &m->reload_running, 0, m->last_reload_err);
    }
    tp_sd_notify("READY=1");
    malloc_trim(0); /* parsing freed a lot: give it back, RSS stays flat */
    reload_next(m);
}

/* The listening sockets for <gen>: reused when the address is the same. */
static int open_listeners(tp_master_t *m, tp_gen_t *gen, int n, int **fds_out, int **cfds_out,
                          char *err, size_t errlen)
{
    const tp_conf_t *old = &m->gen->conf, *c = &gen->conf;
    int same = c->listen_port == old->listen_port &&
               strcmp(c->listen_address ? c->listen_address : "",
                      old->listen_address ? old->listen_address : "") == 0;
    int same_ctl = same && c->control_api_port == old->control_api_port;
    int *fds = tp_malloc((size_t)n * sizeof(int)), *cfds = tp_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        fds[i] = cfds[i] = -1;
    for (int i = 0; i < n; i++) {
        if (same && i < m->nworkers && m->listen_fds[i] >= 0)
            fds[i] = m->listen_fds[i];
        else if ((!same && i == 0 &&
                  tp_listen_probe(c->listen_address, (int)c->listen_port, err, errlen) < 0) ||
                 (fds[i] = tp_listen_open(c->listen_address, (int)c->listen_port, err, errlen)) < 0)
            goto err;
        if (c->control_api_port == 0)
            continue;
        if (same_ctl && i < m->nworkers && m->control_fds[i] >= 0)
            cfds[i] = m->control_fds[i];
        else if ((cfds[i] =
                      tp_listen_open(c->listen_address, (int)c->control_api_port, err, errlen)) < 0)
            goto err;
    }
    *fds_out = fds;
    *cfds_out = cfds;
    return 0;
err:
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && !(i < m->nworkers && fds[i] == m->listen_fds[i]))
            close(fds[i]);
        if (cfds[i] >= 0 && !(i < m->nworkers && cfds[i] == m->control_fds[i]))
            close(cfds[i]);
    }
    free(fds);
    free(cfds);
    return -1;
}

/* tyk.conf changed: a new generation of workers on the (same) sockets. */
/* <n> worker slots, not yet started, on these listeners. */
static void set_workers(tp_master_t *m, int *fds, int *cfds, int n)
{
    m->listen_fds = fds;
    m->control_fds = cfds;
    m->nworkers = n;
    m->slots = tp_calloc((size_t)n, sizeof(*m->slots));
    for (int i = 0; i < n; i++)
        m->slots[i].chan = -1;
}

static int replace_workers(tp_master_t *m, tp_gen_t *gen, char *err, size_t errlen)
{
    int n = tp_conf_workers(&gen->conf);
    int *fds, *cfds;
    if (open_listeners(m, gen, n, &fds, &cfds, err, errlen) < 0)
        return -1;
    /* the current workers become old ones, and drain once the new serve */
    int first_old = m->nold;
    for (int i = 0; i < m->nworkers; i++) {
        tp_slot_t *s = &m->slots[i];
        unwatch_chan(s);
        if (s->pid > 0 && m->nold < TP_MAX_OLD) {
            m->old_pids[m->nold] = s->pid;
            m->old_chans[m->nold] = s->chan;
            m->old_shm[m->nold] = s->shm_id;
            m->nold++;
        } else if (s->chan >= 0) {
            close(s->chan);
        }
        if (m->listen_fds[i] >= 0 && (i >= n || fds[i] != m->listen_fds[i]))
            close(m->listen_fds[i]);
        if (m->control_fds[i] >= 0 && (i >= n || cfds[i] != m->control_fds[i]))
            close(m->control_fds[i]);
    }
    free(m->listen_fds);
    free(m->control_fds);
    free(m->slots);
    int resubscribe =
        !tp_conf_storage_same(&m->gen->conf.storage, &gen->conf.storage) ||
        m->gen->conf.suppress_redis_signal_reload != gen->conf.suppress_redis_signal_reload;
    tp_gen_free(m->gen);
    free(m->gen);
    m->gen = gen;
    set_workers(m, fds, cfds, n);
    m->worker_generation++;
    if (resubscribe) {
        if (m->redis != NULL)
            tp_redis_free(m->redis);
        m->redis = NULL;
        master_subscribe(m);
    }
    for (int i = 0; i < n; i++)
        spawn(m, i);
    for (int i = first_old; i < m->nold; i++)
        send_msg(m->old_chans[i], "drain");
    tp_log_info("tyk.conf changed: worker generation %d started (%d workers)", m->worker_generation,
                n);
    return 0;
}

static void reload_failed(tp_master_t *m, const char *errors)
{
    m->reloads_failed++;
    m->last_reload_us = tp_time_wall_us();
    snprintf(m->last_reload_err, sizeof(m->last_reload_err), "%s", errors);
    /* one line per error, each saying what happened, for log searches */
    char copy[8192];
    snprintf(copy, sizeof(copy), "%s", errors);
    for (char *line = strtok(copy, "\n"); line != NULL; line = strtok(NULL, "\n"))
        tp_log_error("reload failed, generation %llu keeps serving: %s",
                     (unsigned long long)m->generation, line);
    finish_waiters(m, &m->reload_running, 0, errors);
    tp_sd_notify("READY=1");
    malloc_trim(0);
    reload_next(m);
}

/* Every spare shared-memory slot is still read by requests running on old
 * generations: try again shortly; waiters get an answer after a while. */
static void reload_wait(tp_master_t *m)
{
    uint64_t now = tp_time_mono_ms();
    m->reload_pending = 1;
    if (m->reload_wait_since_ms == 0) {
        m->reload_wait_since_ms = now;
        tp_log_warn("reload waits: requests still running on old generations hold every spare "
                    "shared-memory slot");
    } else if (now - m->reload_wait_since_ms >= TP_RELOAD_ACK_MS) {
        finish_waiters(m, &m->reload_queue, 0,
                       "no shared-memory slot is free: requests still running on old "
                       "generations hold them; the reload is retried until one is");
    }
    schedule_reload(m, TP_RELOAD_RETRY_MS);
}

static void do_reload(tp_master_t *m)
{
    char err[8192];
    m->reload_scheduled = 0;
    if (m->reloading || m->state != M_RUNNING)
        return;
    if (!tp_shm_slot_free(m->shm)) {
        reload_wait(m); /* before reading any file: nothing is parsed in vain */
        return;
    }
    if (m->reload_wait_since_ms != 0)
        tp_log_info("reload proceeds: a shared-memory slot is free again");
    m->reload_wait_since_ms = 0;
    m->reload_pending = 0;
    /* the queued waiters ride on this reload */
    while (!tp_list_empty(&m->reload_queue)) {
        tp_list_t *l = m->reload_queue.next;
        tp_list_remove(l);
        tp_list_insert_tail(&m->reload_running, l);
    }
    char mono[64];
    snprintf(mono, sizeof(mono), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)tp_time_mono_ms() * 1000);
    tp_sd_notify(mono);
    m->reload_started_ms = tp_time_mono_ms();

    tp_gen_t *gen = tp_calloc(1, sizeof(*gen));
    if (tp_gen_load(gen, m->conf_path, 1, err, sizeof(err)) < 0) {
        free(gen);
        reload_failed(m, err);
        return;
    }
    int rc = tp_shm_publish(m->shm, &gen->apis, &gen->router, &gen->policies, m->generation + 1,
                            err, sizeof(err));
    if (rc == -EBUSY) {
        /* old requests still read every spare slot: a little later */
        while (!tp_list_empty(&m->reload_running)) {
            tp_list_t *l = m->reload_running.prev;
            tp_list_remove(l);
            tp_list_insert_head(&m->reload_queue, l);
        }
        tp_gen_free(gen);
        free(gen);
        reload_wait(m);
        return;
    }
    if (rc < 0) {
        tp_gen_free(gen);
        free(gen);
        reload_failed(m, err);
        return;
    }
    m->generation++;
    m->reloading = 1;
    m->reload_target = m->generation;
    const char *asock = gen->conf.tp.admin_socket ? gen->conf.tp.admin_socket : "";
    if (strcmp(asock, m->admin_path ? m->admin_path : "") != 0)
        tp_log_warn("turnpike.admin_socket changes take effect on restart (still on \"%s\")",
                    m->admin_path ? m->admin_path : "");

    if (tp_conf_same(&m->gen->conf, &gen->conf)) {
        /* the new APIs are published: workers switch between requests */
        tp_gen_free(m->gen);
        free(m->gen);
        m->gen = gen;
        tp_master_broadcast(m, "gen");
    } else if (replace_workers(m, gen, err, sizeof(err)) < 0) {
        /* the generation is published but the sockets failed: the old
         * workers serve the new APIs with the old tyk.conf */
        tp_gen_free(gen);
        free(gen);
        tp_master_broadcast(m, "gen");
        tp_log_error("tyk.conf changes not applied: %s", err);
    }
    tp_hostcheck_sync(m);
    check_reload_done(m);
    arm_timer(m); /* a worker that never answers is given up on */
}

static void on_reload_timer(uv_timer_t *t)
{
    do_reload(t->data);
}

/* ---- messages from workers ----------------------------------------------------- */

static void worker_says(tp_master_t *m, pid_t pid, int chan, char *msg)
{
    (void)chan;
    if (strncmp(msg, "serving ", 8) == 0) {
        tp_shm_release_slots(m->shm);
        check_reload_done(m);
        if (!m->ready_notified) {
            int all = 1;
            for (int i = 0; i < m->nworkers; i++)
                all &= m->slots[i].pid > 0 &&
                       atomic_load(&m->shm->workers[m->slots[i].shm_id].serving) >= 1;
            if (all) {
                m->ready_notified = 1;
                tp_sd_notify("READY=1");
            }
        }
    } else if (strncmp(msg, "reload ", 7) == 0) {
        unsigned long token = strtoul(msg + 7, NULL, 10);
        tp_waiter_t *w = NULL;
        if (token != 0) {
            w = tp_calloc(1, sizeof(*w));
            w->worker = pid;
            w->token = (uint32_t)token;
        }
        tp_master_request_reload(m, w, "GET /tyk/reload");
    } else {
        tp_log_warn("unknown message from a worker: %s", msg);
    }
}

/* ---- the loop --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    tp_master_t *m = t->data;
    uint64_t now = tp_time_mono_ms();
    if (m->state == M_DELAYING && now >= m->stop_deadline) {
        begin_drain(m);
        return;
    }
    if ((m->state == M_DRAINING || m->state == M_STOPPING) && now >= m->stop_deadline) {
        tp_log_warn("%d workers still running at the deadline; killing them", live_workers(m));
        kill_all(m, SIGKILL);
        m->stop_deadline = now + 60000;
    }
    if (m->state == M_RUNNING)
        for (int i = 0; i < m->nworkers; i++)
            if (m->slots[i].pid == 0 && m->slots[i].respawn_at != 0 &&
                m->slots[i].respawn_at <= now)
                spawn(m, i);
    tp_shm_release_slots(m->shm);
    check_reload_done(m);
    arm_timer(m);
}

static void arm_timer(tp_master_t *m)
{
    uint64_t now = tp_time_mono_ms(), next = 0;
    if (m->state != M_RUNNING)
        next = m->stop_deadline;
    else
        for (int i = 0; i < m->nworkers; i++)
            if (m->slots[i].pid == 0 && m->slots[i].respawn_at != 0 &&
                (next == 0 || m->slots[i].respawn_at < next))
                next = m->slots[i].respawn_at;
    /* a reload in progress is checked at least every second */
    if (m->reloading && (next == 0 || next > now + 1000))
        next = now + 1000;
    if (next == 0) {
        uv_timer_stop(&m->timer);
        return;
    }
    uv_timer_start(&m->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_sigpipe(uv_poll_t *p, int status, int events)
{
    tp_master_t *m = p->data;
    unsigned char sigs[64];
    (void)status;
    (void)events;
    ssize_t n = read(m->sigpipe[0], sigs, sizeof(sigs));
    int term = 0, quit = 0, intr = 0, hup = 0, chld = 0;
    for (ssize_t i = 0; i < n; i++) {
        term += sigs[i] == SIGTERM;
        quit += sigs[i] == SIGQUIT;
        intr += sigs[i] == SIGINT;
        hup += sigs[i] == SIGHUP;
        chld += sigs[i] == SIGCHLD;
    }
    /* A fixed order: stop requests first, so that workers which exited
     * because the same signal reached the whole process group are not
     * mistaken for crashes and restarted. SIGUSR1 needs nothing: logs go
     * to stderr. */
    if (intr)
        stop_fast(m, "SIGINT");
    for (int i = 0; i < term + quit; i++)
        shutdown_graceful(m, i < term ? "SIGTERM" : "SIGQUIT");
    if (hup)
        tp_master_request_reload(m, NULL, "SIGHUP");
    if (chld)
        reap(m);
}

static void on_notification(void *arg, const char *channel, const char *payload, size_t len)
{
    (void)channel;
    tp_master_notification(arg, payload, len);
}

static void master_subscribe(tp_master_t *m)
{
    char err[512];
    if (m->gen->conf.suppress_redis_signal_reload)
        return;
    m->redis = tp_redis_new(&m->loop, &m->gen->conf.storage, "notifications", err, sizeof(err));
    if (m->redis == NULL) {
        tp_log_error("redis: %s", err);
        return;
    }
    tp_redis_subscribe(m->redis, "tyk.cluster.notifications", on_notification, m);
}

int tp_master_run(const char *conf_path, tp_gen_t *gen)
{
    tp_master_t *m = tp_master_g = tp_calloc(1, sizeof(*m));
    m->pid = getpid();
    m->conf_path = conf_path;
    m->gen = gen;
    m->worker_generation = 1;
    m->started_us = tp_time_wall_us();
    tp_list_init(&m->reload_queue);
    tp_list_init(&m->reload_running);
    char err[2048];

    m->shm = tp_shm_create((size_t)gen->conf.tp.shm_size, (uint32_t)gen->conf.tp.max_apis, err,
                           sizeof(err));
    if (m->shm == NULL) {
        tp_log_error("%s", err);
        return 1;
    }
    m->shm->scache =
        tp_scache_create((size_t)gen->conf.tp.session_cache_size,
                         (size_t)gen->conf.tp.session_cache_entry, "session", err, sizeof(err));
    if (m->shm->scache == NULL) {
        tp_log_error("%s", err);
        return 1;
    }
    if (gen->conf.tp.response_cache_size > 0) {
        m->shm->rcache = tp_scache_create((size_t)gen->conf.tp.response_cache_size,
                                          (size_t)gen->conf.tp.response_cache_entry, "response",
                                          err, sizeof(err));
        if (m->shm->rcache == NULL) {
            tp_log_error("%s", err);
            return 1;
        }
    }
    m->shm->limits = tp_limits_create((size_t)gen->conf.tp.limit_counters, err, sizeof(err));
    if (m->shm->limits == NULL) {
        tp_log_error("%s", err);
        return 1;
    }
    /* a breaker per endpoint entry; 1024 is far more than definitions carry */
    m->shm->breakers = tp_breakers_create(1024, err, sizeof(err));
    if (m->shm->breakers == NULL) {
        tp_log_error("%s", err);
        return 1;
    }
    m->shm->hosts = tp_hosts_create(4096, err, sizeof(err));
    if (m->shm->hosts == NULL) {
        tp_log_error("%s", err);
        return 1;
    }
    m->shm->health = tp_health_create((uint32_t)gen->conf.tp.max_apis);
    if (m->shm->health == NULL) {
        tp_log_error("cannot map the /tyk/health samples");
        return 1;
    }
    if (gen->conf.tp.metrics_port != 0) {
        /* rows for this many workers, a replacing generation and respawns */
        int n = tp_conf_workers(&gen->conf) * 4 + 4;
        m->shm->metrics =
            tp_metrics_create(n < TP_SHM_MAX_WORKERS ? (uint32_t)n : TP_SHM_MAX_WORKERS,
                              (uint32_t)gen->conf.tp.max_apis,
                              (uint32_t)gen->conf.tp.metrics_max_series, err, sizeof(err));
        if (m->shm->metrics == NULL) {
            tp_log_error("%s", err);
            return 1;
        }
    }
    if (tp_shm_publish(m->shm, &gen->apis, &gen->router, &gen->policies, 1, err, sizeof(err)) < 0) {
        tp_log_error("%s", err);
        return 1;
    }
    m->generation = 1;

    if (tp_listen_probe(gen->conf.listen_address, (int)gen->conf.listen_port, err, sizeof(err)) <
        0) {
        tp_log_error("%s", err);
        return 2;
    }
    if (gen->conf.control_api_port != 0 &&
        tp_listen_probe(gen->conf.listen_address, (int)gen->conf.control_api_port, err,
                        sizeof(err)) < 0) {
        tp_log_error("control_api_port: %s", err);
        return 2;
    }
    m->nworkers = 0;
    m->listen_fds = tp_calloc(1, sizeof(int));
    m->control_fds = tp_calloc(1, sizeof(int));
    m->listen_fds[0] = m->control_fds[0] = -1;
    int n = tp_conf_workers(&gen->conf);
    int *fds, *cfds;
    if (open_listeners(m, gen, n, &fds, &cfds, err, sizeof(err)) < 0) {
        tp_log_error("%s", err);
        return 2;
    }
    free(m->listen_fds);
    free(m->control_fds);
    set_workers(m, fds, cfds, n);

    if (pipe2(m->sigpipe, O_NONBLOCK | O_CLOEXEC) != 0 || uv_loop_init(&m->loop) != 0) {
        tp_log_error("cannot set up the master loop: %s", strerror(errno));
        return 1;
    }
    m->loop.data = m;
    sig_fd = m->sigpipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    uv_poll_init(&m->loop, &m->sig_poll, m->sigpipe[0]);
    m->sig_poll.data = m;
    uv_poll_start(&m->sig_poll, UV_READABLE, on_sigpipe);
    uv_timer_init(&m->loop, &m->timer);
    m->timer.data = m;
    uv_timer_init(&m->loop, &m->reload_timer);
    m->reload_timer.data = m;
    master_subscribe(m);
    if (tp_admin_start(m, err, sizeof(err)) < 0) {
        tp_log_error("%s", err);
        return 2;
    }
    if (tp_metrics_start(m, err, sizeof(err)) < 0) {
        tp_log_error("turnpike.metrics_port: %s", err);
        return 2;
    }
    tp_apihealth_start(m);
    tp_hostcheck_sync(m);

    const char *addr = gen->conf.listen_address;
    tp_log_info("turnpike %s: %d workers on %s:%lld%s, %zu APIs from %s, %zu policies%s",
                TP_VERSION, m->nworkers, addr && addr[0] ? addr : "*",
                (long long)gen->conf.listen_port,
                gen->conf.control_api_port ? " (control API on its own port)" : "", gen->apis.n,
                gen->conf.app_path, gen->policies.n, getpid() == 1 ? " (running as PID 1)" : "");
    if (gen->conf.secret == NULL || gen->conf.secret[0] == '\0')
        tp_log_warn("no \"secret\" is set: the Gateway REST API (/tyk/) refuses every request");
    for (int i = 0; i < m->nworkers; i++)
        spawn(m, i);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    return 0;
}
