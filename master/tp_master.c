/*
 * master/tp_master.c: worker processes, signals, reloads and shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_json.h"
#include "tp_master.h"
#include "tp_redis.h"
#include "tp_time.h"
#include "tp_worker.h"

#define TP_MAX_OLD 1024

enum { M_RUNNING, M_DELAYING, M_DRAINING, M_STOPPING };

typedef struct tp_slot_s {
    pid_t pid;
    int chan;            /* our end of the socketpair to the worker */
    uint64_t started;    /* ms */
    uint64_t respawn_at; /* ms, 0 when not waiting */
    int quick_deaths;    /* recent deaths soon after start */
} tp_slot_t;

typedef struct tp_master_s {
    uv_loop_t loop;
    pid_t pid;
    const char *conf_path;
    tp_gen_t *gen;
    int generation;
    int nworkers;
    int *listen_fds;
    tp_slot_t *slots;
    /* workers of earlier generations, draining */
    pid_t old_pids[TP_MAX_OLD];
    int old_chans[TP_MAX_OLD];
    int nold;
    int sigpipe[2];
    uv_poll_t sig_poll;
    uv_timer_t timer;
    int state;
    uint64_t stop_deadline;
    tp_redis_t *redis; /* pub/sub: tyk.cluster.notifications */
} tp_master_t;

/* The only globals besides the log state: the self-pipe for signals. */
static volatile sig_atomic_t sig_fd = -1;

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

int tp_gen_load(tp_gen_t *gen, const char *conf_path, char *err, size_t errlen)
{
    memset(gen, 0, sizeof(*gen));
    if (tp_conf_load(conf_path, &gen->conf, err, errlen) < 0) {
        tp_conf_free(&gen->conf);
        return -1;
    }
    if (tp_apis_load_dir(gen->conf.app_path, &gen->apis, err, errlen) < 0) {
        tp_conf_free(&gen->conf);
        return -1;
    }
    char why[512];
    if (tp_redis_check_conf(&gen->conf.storage, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", gen->conf.file, why);
        tp_apis_free(&gen->apis);
        tp_conf_free(&gen->conf);
        return -1;
    }
    tp_router_build(&gen->router, &gen->apis, &gen->conf);
    return 0;
}

void tp_gen_free(tp_gen_t *gen)
{
    tp_router_free(&gen->router);
    tp_apis_free(&gen->apis);
    tp_conf_free(&gen->conf);
}

/* ---- workers ---------------------------------------------------------------- */

static void send_cmd(int chan, char cmd)
{
    if (chan >= 0 && write(chan, &cmd, 1) < 0 && errno != EPIPE)
        tp_log_debug("cannot signal a worker: %s", strerror(errno));
}

static int live_workers(const tp_master_t *m)
{
    int n = m->nold;
    for (int i = 0; i < m->nworkers; i++)
        n += m->slots[i].pid > 0;
    return n;
}

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
    uv_walk(&m->loop, close_handle_fd, NULL); /* signal pipe, Redis sockets */
    close(m->sigpipe[1]);
    close(uv_backend_fd(&m->loop));
    for (int i = 0; i < m->nworkers; i++) {
        if (i != slot && m->listen_fds[i] >= 0)
            close(m->listen_fds[i]);
        if (m->slots[i].chan >= 0 && m->slots[i].chan != chan)
            close(m->slots[i].chan);
    }
    for (int i = 0; i < m->nold; i++)
        close(m->old_chans[i]);
}

static int spawn(tp_master_t *m, int slot)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        tp_log_error("cannot create a worker channel: %s", strerror(errno));
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        child_cleanup(m, slot, sv[1]);
        tp_worker_run(slot, m->listen_fds[slot], sv[1], &m->gen->conf, &m->gen->router);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    if (pid < 0) {
        tp_log_error("cannot fork worker %d: %s", slot, strerror(errno));
        close(sv[0]);
        return -1;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    tp_slot_t *s = &m->slots[slot];
    s->pid = pid;
    s->chan = sv[0];
    s->started = tp_time_mono_ms();
    s->respawn_at = 0;
    tp_log_info("started worker.%d (pid %d, generation %d)", slot, (int)pid, m->generation);
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

static void master_exit(tp_master_t *m, int code)
{
    tp_log_info("master exiting");
    (void)m;
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
            close(s->chan);
            s->chan = -1;
            s->pid = 0;
            if (m->state != M_RUNNING) {
                tp_log_info("worker.%d (pid %d) %s", i, (int)pid, how);
                continue;
            }
            tp_log_warn("worker.%d (pid %d) %s; starting a new one", i, (int)pid, how);
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
            m->old_pids[i] = m->old_pids[m->nold - 1];
            m->old_chans[i] = m->old_chans[m->nold - 1];
            m->nold--;
        }
        if (!found)
            tp_log_debug("reaped process %d, which %s", (int)pid, how);
    }
    if (m->state != M_RUNNING && live_workers(m) == 0)
        master_exit(m, 0);
    arm_timer(m);
}

static void close_listeners(tp_master_t *m)
{
    for (int i = 0; i < m->nworkers; i++) {
        if (m->listen_fds[i] >= 0)
            close(m->listen_fds[i]);
        m->listen_fds[i] = -1;
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

static void broadcast(tp_master_t *m, char cmd)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid > 0)
            send_cmd(m->slots[i].chan, cmd);
    for (int i = 0; i < m->nold; i++)
        send_cmd(m->old_chans[i], cmd);
}

static void begin_drain(tp_master_t *m)
{
    m->state = M_DRAINING;
    int64_t secs = m->gen->conf.graceful_shutdown_timeout_duration;
    tp_log_info("draining: workers finish in-flight requests within %lld s", (long long)secs);
    close_listeners(m);
    broadcast(m, 'D');
    m->stop_deadline = tp_time_mono_ms() + (uint64_t)secs * 1000 + 2000;
    if (live_workers(m) == 0)
        master_exit(m, 0);
    arm_timer(m);
}

static void stop_fast(tp_master_t *m, const char *why)
{
    tp_log_info("stopping now (%s)", why);
    m->state = M_STOPPING;
    close_listeners(m);
    broadcast(m, 'Q');
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
        broadcast(m, 'R');
        tp_log_info("readiness now fails; draining starts in %lld s", (long long)delay);
        m->stop_deadline = tp_time_mono_ms() + (uint64_t)delay * 1000;
        arm_timer(m);
        return;
    }
    begin_drain(m);
}

static void master_subscribe(tp_master_t *m);

/* ---- reload ----------------------------------------------------------------- */

static void reload(tp_master_t *m)
{
    if (m->state != M_RUNNING)
        return;
    tp_log_info("reloading %s", m->conf_path ? m->conf_path : "configuration");
    tp_gen_t *gen = tp_calloc(1, sizeof(*gen));
    char err[8192];
    if (tp_gen_load(gen, m->conf_path, err, sizeof(err)) < 0) {
        tp_log_error("reload failed; generation %d keeps serving: %s", m->generation, err);
        free(gen);
        return;
    }
    int n = tp_conf_workers(&gen->conf);
    int same_addr = gen->conf.listen_port == m->gen->conf.listen_port &&
                    strcmp(gen->conf.listen_address ? gen->conf.listen_address : "",
                           m->gen->conf.listen_address ? m->gen->conf.listen_address : "") == 0;
    int *fds = tp_malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        if (same_addr && i < m->nworkers && m->listen_fds[i] >= 0) {
            fds[i] = m->listen_fds[i];
            continue;
        }
        if (!same_addr && i == 0 &&
            tp_listen_probe(gen->conf.listen_address, (int)gen->conf.listen_port, err,
                            sizeof(err)) < 0)
            fds[i] = -1;
        else
            fds[i] = tp_listen_open(gen->conf.listen_address, (int)gen->conf.listen_port, err,
                                    sizeof(err));
        if (fds[i] < 0) {
            tp_log_error("reload failed; generation %d keeps serving: %s", m->generation, err);
            for (int j = 0; j < i; j++)
                if (!(same_addr && j < m->nworkers && fds[j] == m->listen_fds[j]))
                    close(fds[j]);
            free(fds);
            tp_gen_free(gen);
            free(gen);
            return;
        }
    }
    /* the current workers become old ones, and drain once the new serve */
    int first_old = m->nold;
    for (int i = 0; i < m->nworkers; i++) {
        tp_slot_t *s = &m->slots[i];
        if (s->pid > 0 && m->nold < TP_MAX_OLD) {
            m->old_pids[m->nold] = s->pid;
            m->old_chans[m->nold] = s->chan;
            m->nold++;
        } else if (s->chan >= 0) {
            close(s->chan);
        }
        if (i >= n || !same_addr)
            close(m->listen_fds[i]);
    }
    free(m->listen_fds);
    free(m->slots);
    int resubscribe =
        !tp_conf_storage_same(&m->gen->conf.storage, &gen->conf.storage) ||
        m->gen->conf.suppress_redis_signal_reload != gen->conf.suppress_redis_signal_reload;
    tp_gen_free(m->gen);
    free(m->gen);
    m->gen = gen;
    if (resubscribe) {
        if (m->redis != NULL)
            tp_redis_free(m->redis);
        m->redis = NULL;
        master_subscribe(m);
    }
    m->listen_fds = fds;
    m->nworkers = n;
    m->slots = tp_calloc((size_t)n, sizeof(*m->slots));
    for (int i = 0; i < n; i++)
        m->slots[i].chan = -1;
    m->generation++;
    tp_log_set_role("master");
    for (int i = 0; i < n; i++)
        spawn(m, i);
    for (int i = first_old; i < m->nold; i++)
        send_cmd(m->old_chans[i], 'D');
    tp_log_info("reload done: generation %d serves %zu APIs with %d workers", m->generation,
                gen->apis.n, n);
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
        reload(m);
    if (chld)
        reap(m);
}

/* A message on tyk.cluster.notifications: {"command","payload","signature",
 * "algorithm"}. Reload commands arrive with the control plane; for now
 * the master reports what it hears. */
static void on_notification(void *arg, const char *channel, const char *payload, size_t len)
{
    char err[256];
    (void)arg;
    cJSON *msg = tp_json_parse(payload, len, err, sizeof(err));
    const cJSON *cmd = msg != NULL ? tp_json_get(msg, "command") : NULL;
    if (cmd == NULL || !cJSON_IsString(cmd))
        tp_log_warn("%s: ignoring a message that is not a Tyk notification", channel);
    else
        tp_log_info("%s: %s received", channel, cmd->valuestring);
    cJSON_Delete(msg);
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
    tp_master_t *m = tp_calloc(1, sizeof(*m));
    m->pid = getpid();
    m->conf_path = conf_path;
    m->gen = gen;
    m->generation = 1;
    m->nworkers = tp_conf_workers(&gen->conf);
    char err[1024];

    if (tp_listen_probe(gen->conf.listen_address, (int)gen->conf.listen_port, err, sizeof(err)) <
        0) {
        tp_log_error("%s", err);
        return 2;
    }
    m->listen_fds = tp_malloc((size_t)m->nworkers * sizeof(int));
    m->slots = tp_calloc((size_t)m->nworkers, sizeof(*m->slots));
    for (int i = 0; i < m->nworkers; i++) {
        m->slots[i].chan = -1;
        m->listen_fds[i] =
            tp_listen_open(gen->conf.listen_address, (int)gen->conf.listen_port, err, sizeof(err));
        if (m->listen_fds[i] < 0) {
            tp_log_error("%s", err);
            return 2;
        }
    }

    if (pipe2(m->sigpipe, O_NONBLOCK | O_CLOEXEC) != 0 || uv_loop_init(&m->loop) != 0) {
        tp_log_error("cannot set up the master loop: %s", strerror(errno));
        return 1;
    }
    sig_fd = m->sigpipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    master_subscribe(m);
    uv_poll_init(&m->loop, &m->sig_poll, m->sigpipe[0]);
    m->sig_poll.data = m;
    uv_poll_start(&m->sig_poll, UV_READABLE, on_sigpipe);
    uv_timer_init(&m->loop, &m->timer);
    m->timer.data = m;

    const char *addr = gen->conf.listen_address;
    tp_log_info("turnpike %s: %d workers on %s:%lld, %zu APIs from %s%s", TP_VERSION, m->nworkers,
                addr && addr[0] ? addr : "*", (long long)gen->conf.listen_port, gen->apis.n,
                gen->conf.app_path, getpid() == 1 ? " (running as PID 1)" : "");
    for (int i = 0; i < m->nworkers; i++)
        spawn(m, i);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    return 0;
}
