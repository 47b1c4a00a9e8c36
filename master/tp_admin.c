/*
 * master/tp_admin.c: the admin unix socket, for operators, and the
 * `turnpike ctl` client that talks to it.
 *
 * The socket (turnpike.admin_socket, mode 0600) speaks lines, as HAProxy's
 * stats socket does: a client sends one command line and gets the answer,
 * then the master closes the connection, so `socat - UNIX:<path>` and
 * `echo "show info" | socat stdio UNIX:<path>` both work. `reload` answers
 * once every worker serves the new generation: "Success=1", or "Success=0"
 * and the errors. Commands are rows of one table; later features add rows.
 */
#include <errno.h>
#include <malloc.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_master.h"
#include "tp_hostcheck.h"
#include "tp_shm_breaker.h"
#include "tp_shm_limit.h"
#include "tp_time.h"

#define TP_ADMIN_LINE_MAX 4096

typedef struct admin_client_s {
    uv_pipe_t pipe;
    uv_write_t wreq;
    tp_master_t *m;
    tp_buf_t in;
    tp_buf_t out;
    int waiting; /* for a reload */
    int done;    /* a command ran: no more input is read */
} admin_client_t;

typedef struct admin_cmd_s {
    const char *words;
    const char *usage;
    void (*run)(admin_client_t *c, const char *args);
} admin_cmd_t;

static void client_closed(uv_handle_t *h)
{
    admin_client_t *c = h->data;
    tp_buf_free(&c->in);
    tp_buf_free(&c->out);
    free(c);
}

static void client_close(admin_client_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->pipe))
        uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void on_written(uv_write_t *wr, int status)
{
    (void)status;
    client_close(wr->data);
}

/* Sends what the command wrote and closes. */
static void client_finish(admin_client_t *c)
{
    if (c->out.len == 0) { /* quit */
        client_close(c);
        return;
    }
    if (c->out.data[c->out.len - 1] != '\n')
        tp_buf_putc(&c->out, '\n');
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0)
        client_close(c);
}

/* ---- commands -------------------------------------------------------------------- */

static void cmd_help(admin_client_t *c, const char *args);

static void cmd_show_info(admin_client_t *c, const char *args)
{
    tp_master_t *m = c->m;
    tp_buf_t *o = &c->out;
    (void)args;
    uint64_t conns = 0, reqs = 0;
    int live = 0;
    for (int i = 0; i < m->nworkers; i++) {
        if (m->slots[i].pid <= 0)
            continue;
        live++;
        tp_shm_worker_t *w = &m->shm->workers[m->slots[i].shm_id];
        conns += atomic_load(&w->conns);
        reqs += atomic_load(&w->requests);
    }
    for (int i = 0; i < m->nold; i++)
        conns += atomic_load(&m->shm->workers[m->old_shm[i]].conns);
    const tp_snapshot_t *snap = tp_shm_current(m->shm);
    char ts[40] = "never";
    if (m->last_reload_us != 0)
        tp_time_rfc3339(ts, sizeof(ts), m->last_reload_us, 0);
    tp_buf_printf(o, "version: %s\n", TP_VERSION);
    tp_buf_printf(o, "pid: %d\n", (int)m->pid);
    tp_buf_printf(o, "uptime_seconds: %lld\n",
                  (long long)((tp_time_wall_us() - m->started_us) / 1000000));
    tp_buf_printf(o, "conf: %s\n", m->gen->conf.file);
    tp_buf_printf(o, "workers: %d (%d running, %d old draining)\n", m->nworkers, live, m->nold);
    tp_buf_printf(o, "connections: %llu\n", (unsigned long long)conns);
    tp_buf_printf(o, "requests: %llu\n", (unsigned long long)reqs);
    tp_buf_printf(o, "generation: %llu\n", (unsigned long long)m->generation);
    tp_buf_printf(o, "worker_generation: %d\n", m->worker_generation);
    tp_buf_printf(o, "apis: %zu\n", snap->napis);
    tp_buf_printf(o, "policies: %zu\n", snap->npolicies);
    tp_buf_printf(o, "shm_generation_bytes: %zu of %zu per slot\n", snap->used, m->shm->slot_size);
    struct mallinfo2 mi = mallinfo2();
    tp_buf_printf(o, "master_heap_bytes: %zu in use, %zu held\n", mi.uordblks,
                  mi.arena + mi.hblkhd);
    tp_buf_printf(o, "reloads_ok: %u\nreloads_failed: %u\nlast_reload: %s\n", m->reloads_ok,
                  m->reloads_failed, ts);
    if (m->last_reload_err[0] != '\0') {
        tp_buf_puts(o, "last_reload_error: ");
        for (const char *p = m->last_reload_err; *p; p++)
            tp_buf_putc(o, *p == '\n' ? ' ' : *p);
        tp_buf_putc(o, '\n');
    }
    /* Redis as the workers see it (their storage probes), and the
     * master's subscription for cluster notifications */
    int up = 0, down = 0;
    for (int i = 0; i < m->nworkers; i++)
        if (m->slots[i].pid > 0) {
            int r = atomic_load(&m->shm->workers[m->slots[i].shm_id].redis);
            up += r == 1;
            down += r == 0;
        }
    tp_buf_printf(o, "redis: %s (%d workers pass the storage probe, %d fail)\n",
                  down == 0 && up > 0   ? "up"
                  : up == 0 && down > 0 ? "down"
                  : up                  ? "partial"
                                        : "unknown",
                  up, down);
    if (m->redis != NULL) {
        const char *err;
        int sub = tp_redis_subscribed(m->redis);
        tp_redis_up(m->redis, NULL, &err);
        tp_buf_printf(o, "redis_notifications: %s", sub ? "subscribed\n" : "not subscribed");
        if (!sub)
            tp_buf_printf(o, "%s%s%s\n", err[0] ? " (" : "", err, err[0] ? ")" : "");
    } else {
        tp_buf_puts(o, "redis_notifications: off (suppress_redis_signal_reload)\n");
    }
    tp_buf_printf(o, "ready: %s\n", m->draining_readiness ? "no (drain)" : "yes");
}

static void cmd_show_workers(admin_client_t *c, const char *args)
{
    tp_master_t *m = c->m;
    tp_buf_t *o = &c->out;
    (void)args;
    tp_buf_puts(o, "# worker pid generation oldest connections requests restarts uptime_s\n");
    int64_t now = tp_time_wall_us();
    for (int i = 0; i < m->nworkers; i++) {
        tp_slot_t *s = &m->slots[i];
        if (s->pid <= 0) {
            tp_buf_printf(o, "worker.%d - - - - - %d -\n", i, s->restarts);
            continue;
        }
        tp_shm_worker_t *w = &m->shm->workers[s->shm_id];
        tp_buf_printf(o, "worker.%d %d %llu %llu %u %llu %d %lld\n", i, (int)s->pid,
                      (unsigned long long)atomic_load(&w->serving),
                      (unsigned long long)atomic_load(&w->oldest), atomic_load(&w->conns),
                      (unsigned long long)atomic_load(&w->requests), s->restarts,
                      (long long)((now - atomic_load(&w->started_us)) / 1000000));
    }
    for (int i = 0; i < m->nold; i++) {
        tp_shm_worker_t *w = &m->shm->workers[m->old_shm[i]];
        tp_buf_printf(o, "old %d %llu %llu %u %llu - %lld\n", (int)m->old_pids[i],
                      (unsigned long long)atomic_load(&w->serving),
                      (unsigned long long)atomic_load(&w->oldest), atomic_load(&w->conns),
                      (unsigned long long)atomic_load(&w->requests),
                      (long long)((now - atomic_load(&w->started_us)) / 1000000));
    }
}

static void cmd_show_apis(admin_client_t *c, const char *args)
{
    const tp_snapshot_t *snap = tp_shm_current(c->m->shm);
    tp_buf_t *o = &c->out;
    (void)args;
    tp_buf_puts(o, "# api_id listen_path keyless targets file\n");
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_api_t *a = snap->apis[i];
        tp_buf_printf(o, "%s %s %s ", a->api_id, a->listen_path, a->use_keyless ? "yes" : "no");
        for (size_t j = 0; j < a->ntargets; j++)
            tp_buf_printf(o, "%s%s", j ? "," : "", a->targets[j].raw);
        tp_buf_printf(o, " %s\n", a->file);
    }
}

static void cmd_show_stat(admin_client_t *c, const char *args)
{
    tp_master_t *m = c->m;
    const tp_snapshot_t *snap = tp_shm_current(m->shm);
    tp_buf_t *o = &c->out;
    (void)args;
    tp_buf_puts(o, "# api_id,requests,1xx,2xx,3xx,4xx,5xx,upstream_errors,rate_limited,"
                   "quota_exceeded,websockets\n");
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_api_t *a = snap->apis[i];
        tp_shm_stat_t sum;
        tp_shm_stat_sum(m->shm, a->stat_idx, &sum);
        tp_buf_printf(o, "%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu\n", a->api_id,
                      (unsigned long long)sum.requests, (unsigned long long)sum.status[1],
                      (unsigned long long)sum.status[2], (unsigned long long)sum.status[3],
                      (unsigned long long)sum.status[4], (unsigned long long)sum.status[5],
                      (unsigned long long)sum.upstream_errors, (unsigned long long)sum.rate_limited,
                      (unsigned long long)sum.quota_exceeded, (unsigned long long)sum.websockets);
    }
    tp_shm_totals_t t;
    tp_shm_totals(m->shm, &t);
    tp_buf_printf(o, "# analytics: recorded %llu, pushed %llu, dropped %llu, buffered %llu\n",
                  (unsigned long long)t.an_recorded, (unsigned long long)t.an_flushed,
                  (unsigned long long)t.an_dropped, (unsigned long long)t.an_buffered);
    tp_buf_printf(o, "# websockets: open %llu\n", (unsigned long long)t.ws_open);
}

/* show limits <key hash>: the node's counters whose key names it (the
 * local tier's live state; what Redis last answered for the others). */
static void cmd_show_limits(admin_client_t *c, const char *args)
{
    tp_master_t *m = c->m;
    tp_buf_t *o = &c->out;
    while (*args == ' ')
        args++;
    if (*args == '\0') {
        tp_buf_puts(o, "usage: show limits <key hash>  (or \"show limits all\")\n");
        return;
    }
    const char *needle = strcmp(args, "all") == 0 ? "" : args;
    tp_limits_t *t = m->shm->limits;
    tp_buf_printf(o, "# nodes %u, this node %s\n", tp_limits_nodes(t), tp_limits_node_id(t));
    tp_buf_puts(o, "# key tier limit remaining reset(s) [count] idle(s)\n");
    if (tp_limits_show(t, needle, tp_time_mono_ns(), o) == 0)
        tp_buf_printf(o, "# no counters for %s on this node\n", args);
}

/* show breakers: the node's circuit breakers and their 10 s windows. */
static void cmd_show_breakers(admin_client_t *c, const char *args)
{
    (void)args;
    tp_buf_puts(&c->out, "# breaker (api method path) state requests failures trips\n");
    tp_breakers_show(c->m->shm->breakers, (int64_t)tp_time_mono_ms(), &c->out);
}

/* show hosts: the uptime tests and what they found. */
static void cmd_show_hosts(admin_client_t *c, const char *args)
{
    (void)args;
    tp_hostcheck_show(c->m, &c->out);
}

static void cmd_reload(admin_client_t *c, const char *args)
{
    (void)args;
    tp_waiter_t *w = tp_calloc(1, sizeof(*w));
    w->admin = c;
    c->waiting = 1;
    tp_master_request_reload(c->m, w, "admin socket");
}

void tp_admin_reload_done(tp_master_t *m, void *client, int ok, const char *errors)
{
    admin_client_t *c = client;
    (void)m;
    c->waiting = 0;
    if (ok)
        tp_buf_printf(&c->out, "Success=1\n--\ngeneration %llu serves %zu APIs and %zu policies\n",
                      (unsigned long long)c->m->generation, tp_shm_current(c->m->shm)->napis,
                      tp_shm_current(c->m->shm)->npolicies);
    else
        tp_buf_printf(&c->out, "Success=0\n--\n%s\n", errors);
    client_finish(c);
}

static void cmd_drain(admin_client_t *c, const char *args)
{
    (void)args;
    c->m->draining_readiness = 1;
    tp_master_broadcast(c->m, "notready");
    tp_log_info("admin: drain: /ready answers 503, traffic is still served");
    tp_buf_puts(&c->out, "OK: /ready answers 503 from now on; traffic is still served "
                         "(`undrain` to undo)\n");
}

static void cmd_undrain(admin_client_t *c, const char *args)
{
    (void)args;
    c->m->draining_readiness = 0;
    tp_master_broadcast(c->m, "ready");
    tp_log_info("admin: undrain: /ready answers normally");
    tp_buf_puts(&c->out, "OK: /ready answers normally\n");
}

static void cmd_set_loglevel(admin_client_t *c, const char *args)
{
    while (*args == ' ')
        args++;
    int lvl = tp_log_level_parse(args);
    if (args[0] == '\0' || lvl < 0) {
        tp_buf_puts(&c->out, "Error: expected one of debug, info, warn, error\n");
        return;
    }
    tp_log_g.level = lvl;
    char msg[64];
    snprintf(msg, sizeof(msg), "loglevel %s", tp_log_level_name(lvl));
    tp_master_broadcast(c->m, msg);
    tp_buf_printf(&c->out, "OK: log level %s\n", tp_log_level_name(lvl));
}

static void cmd_quit(admin_client_t *c, const char *args)
{
    (void)c;
    (void)args;
}

static const admin_cmd_t commands[] = {
    {"help", "help                  this list", cmd_help},
    {"show info",
     "show info             version, uptime, workers, connections, generation, "
     "Redis",
     cmd_show_info},
    {"show workers", "show workers          one line per worker process", cmd_show_workers},
    {"show apis", "show apis             the API definitions being served", cmd_show_apis},
    {"show stat",
     "show stat             per-API request and response counters, 429s and quota "
     "rejections (CSV)",
     cmd_show_stat},
    {"show limits",
     "show limits <hash>    rate-limit and quota counters of a key (its storage hash)",
     cmd_show_limits},
    {"show breakers",
     "show breakers         circuit breakers: state, requests and failures in the last 10 s",
     cmd_show_breakers},
    {"show hosts", "show hosts            uptime tests: each check's host, up or down, last result",
     cmd_show_hosts},
    {"reload",
     "reload                reload tyk.conf, API definitions and policies; "
     "answers when every worker serves them (Success=1|0)",
     cmd_reload},
    {"drain", "drain                 /ready answers 503, traffic is still served", cmd_drain},
    {"undrain", "undrain               /ready answers normally again", cmd_undrain},
    {"set loglevel", "set loglevel <level>  debug, info, warn or error, in every process",
     cmd_set_loglevel},
    {"quit", "quit                  close this connection", cmd_quit},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void cmd_help(admin_client_t *c, const char *args)
{
    (void)args;
    tp_buf_puts(&c->out, "The following commands are valid at this level:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        tp_buf_printf(&c->out, "  %s\n", commands[i].usage);
}

static void run_line(admin_client_t *c, char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    while (*line == ' ')
        line++;
    const admin_cmd_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t w = strlen(commands[i].words);
        if (strncmp(line, commands[i].words, w) == 0 && (line[w] == '\0' || line[w] == ' ') &&
            w > best_len) {
            best = &commands[i];
            best_len = w;
        }
    }
    c->done = 1;
    if (best == NULL) {
        tp_buf_printf(&c->out, "Unknown command: '%s'. Type 'help' for the list.\n", line);
        client_finish(c);
        return;
    }
    best->run(c, line + best_len);
    if (!c->waiting)
        client_finish(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    admin_client_t *c = h->data;
    (void)hint;
    buf->base = tp_buf_reserve(&c->in, 1024);
    buf->len = 1024;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_client_t *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (!c->waiting && !c->done)
            client_close(c);
        else
            uv_read_stop(s);
        return;
    }
    if (c->done)
        return;
    c->in.len += (size_t)nread;
    char *nl = memchr(c->in.data, '\n', c->in.len);
    if (nl == NULL) {
        if (c->in.len > TP_ADMIN_LINE_MAX) {
            c->done = 1;
            tp_buf_puts(&c->out, "Error: command line too long\n");
            client_finish(c);
        }
        return;
    }
    *nl = '\0';
    uv_read_stop(s);
    run_line(c, c->in.data);
}

static void on_connection(uv_stream_t *server, int status)
{
    tp_master_t *m = server->data;
    if (status < 0)
        return;
    admin_client_t *c = tp_calloc(1, sizeof(*c));
    c->m = m;
    uv_pipe_init(&m->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
        client_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

int tp_admin_start(tp_master_t *m, char *err, size_t errlen)
{
    const char *path = m->gen->conf.tp.admin_socket;
    if (path == NULL || path[0] == '\0')
        return 0;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "turnpike.admin_socket \"%s\" exists and is not a socket", path);
            return -1;
        }
        /* a socket nobody answers on is left from an earlier run */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            snprintf(err, errlen, "turnpike.admin_socket \"%s\": another gateway answers on it",
                     path);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);
    }
    uv_pipe_init(&m->loop, &m->admin, 0);
    m->admin.data = m;
    mode_t old = umask(0177); /* born 0600: no window with looser rights */
    int rc = uv_pipe_bind(&m->admin, path);
    umask(old);
    if (rc == 0) {
        chmod(path, 0600);
        rc = uv_listen((uv_stream_t *)&m->admin, 64, on_connection);
    }
    if (rc < 0) {
        snprintf(err, errlen, "turnpike.admin_socket \"%s\": %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&m->admin, NULL);
        return -1;
    }
    m->admin_open = 1;
    m->admin_path = tp_strdup(path); /* a reload may change the setting, not the socket */
    tp_log_info("admin socket on %s", path);
    return 0;
}

void tp_admin_stop(tp_master_t *m)
{
    if (!m->admin_open)
        return;
    m->admin_open = 0;
    uv_close((uv_handle_t *)&m->admin, NULL);
    unlink(m->admin_path);
}

/* ---- turnpike ctl -------------------------------------------------------------------- */

int tp_ctl_main(int argc, char **argv)
{
    const char *sock = NULL, *conf_path = NULL;
    tp_buf_t cmd = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            sock = argv[++i];
        else if (strncmp(argv[i], "--socket=", 9) == 0)
            sock = argv[i] + 9;
        else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc)
            conf_path = argv[++i];
        else if (strncmp(argv[i], "--conf=", 7) == 0)
            conf_path = argv[i] + 7;
        else {
            if (cmd.len > 0)
                tp_buf_putc(&cmd, ' ');
            tp_buf_puts(&cmd, argv[i]);
        }
    }
    if (cmd.len == 0)
        tp_buf_puts(&cmd, "help");
    tp_conf_t conf;
    int have_conf = 0;
    if (sock == NULL) {
        char err[2048];
        int saved = tp_log_g.level;
        tp_log_g.level = -1;
        if (tp_conf_load(tp_conf_find(conf_path), &conf, err, sizeof(err)) < 0) {
            tp_log_g.level = saved;
            fprintf(stderr,
                    "turnpike ctl: cannot read the configuration to find the admin "
                    "socket (use --socket PATH): %s\n",
                    err);
            tp_buf_free(&cmd);
            return 2;
        }
        tp_log_g.level = saved;
        have_conf = 1;
        sock = conf.tp.admin_socket;
        if (sock == NULL || sock[0] == '\0') {
            fprintf(stderr, "turnpike ctl: %s sets no turnpike.admin_socket\n", conf.file);
            tp_conf_free(&conf);
            tp_buf_free(&cmd);
            return 2;
        }
    }
    int rc = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "turnpike ctl: cannot connect to %s: %s\n", sock, strerror(errno));
        rc = 2;
        goto out;
    }
    tp_buf_putc(&cmd, '\n');
    if (write(fd, cmd.data, cmd.len) != (ssize_t)cmd.len) {
        fprintf(stderr, "turnpike ctl: cannot send to %s: %s\n", sock, strerror(errno));
        rc = 2;
        goto out;
    }
    tp_buf_t reply = {0};
    for (;;) {
        char *dst = tp_buf_reserve(&reply, 4096);
        ssize_t n = read(fd, dst, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        reply.len += (size_t)n;
    }
    fwrite(reply.data ? reply.data : "", 1, reply.len, stdout);
    if (reply.len == 0 || strncmp(reply.data, "Success=0", 9) == 0 ||
        strncmp(reply.data, "Unknown command", 15) == 0 || strncmp(reply.data, "Error", 5) == 0)
        rc = 1;
    tp_buf_free(&reply);
out:
    if (fd >= 0)
        close(fd);
    if (have_conf)
        tp_conf_free(&conf);
    tp_buf_free(&cmd);
    return rc;
}
