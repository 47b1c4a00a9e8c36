/*
 * worker/tp_worker.c: a worker process: its loop, the inherited listening
 * socket, the master's messages (ours go out in tp_channel.c), signals,
 * graceful drain, the freelist of requests, generation switches, and the
 * events the connection layer sends up (tp_conn_events_t).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_redis_purge.h"
#include "tp_worker.h"

#define TP_FREE_REQS_MAX 256

/* ---- freelists ------------------------------------------------------------- */

tp_req_t *tp_req_get(tp_worker_t *w)
{
    tp_req_t *req = w->free_reqs;
    tp_buf_t up_head = {0}, out = {0}, rbody = {0}, add = {0}, saved = {0};
    tp_arena_t arena = {0};
    if (req != NULL) {
        w->free_reqs = req->next_free;
        w->nfree_reqs--;
        up_head = req->up_head;
        out = req->out;
        rbody = req->rbody;
        add = req->hdr_plan.add;
        saved = req->saved;
        arena = req->arena;
    } else {
        req = tp_malloc(sizeof(*req) + w->max_hdrs * sizeof(tp_hdr_t));
    }
    memset(req, 0, sizeof(*req));
    req->up_head = up_head;
    req->up_head.len = 0;
    req->out = out;
    req->out.len = 0;
    req->rbody = rbody;
    req->rbody.len = 0;
    req->hdr_plan.add = add;
    req->hdr_plan.add.len = 0;
    req->saved = saved;
    req->saved.len = 0;
    req->arena = arena;
    tp_list_init(&req->wait_link);
    /* a request lives on the generation it starts on */
    tp_worker_check_generation(w);
    req->snap = w->snap;
    req->serial = ++w->req_serial;
    w->inflight[req->snap->slot]++;
    return req;
}

/* The slots this worker reads (its current one and those of in-flight
 * requests), for the master to know which it may reuse; and the oldest
 * generation among them, for operators. */
static void publish_slots(tp_worker_t *w)
{
    uint64_t oldest = w->gen;
    uint32_t used = 1u << w->snap->slot;
    for (unsigned s = 0; s < TP_SHM_SLOTS; s++) {
        uint64_t g = atomic_load(&w->shm->slot_gen[s]);
        if (w->inflight[s] == 0)
            continue;
        used |= 1u << s;
        if (g != 0 && g < oldest)
            oldest = g;
    }
    atomic_store(&w->shm->workers[w->id].slots, used);
    atomic_store(&w->shm->workers[w->id].oldest, oldest);
}

void tp_req_put(tp_worker_t *w, tp_req_t *req)
{
    TP_BUG_ON(req->up != NULL);
    tp_upstream_cancel_wait(req);
    tp_chain_cancel(req);
    tp_session_release(req);
    tp_rest_keys_release(req);
    if (req->rest_purge != NULL)
        tp_redis_purge_detach(req->rest_purge); /* it goes on; nobody to answer */
    tp_arena_reset(&req->arena);
    tp_buf_free(&req->resp_body);
    if (req->body != NULL && !req->body_buffered) {
        tp_block_put(w, req->body);
        req->body = NULL;
    }
    if (--w->inflight[req->snap->slot] == 0 && req->snap != w->snap)
        publish_slots(w);
    /* keep modest buffers for the next request, drop big ones */
    if (req->up_head.cap > 16384)
        tp_buf_free(&req->up_head);
    if (req->out.cap > 16384)
        tp_buf_free(&req->out);
    if (req->rbody.cap > 16384)
        tp_buf_free(&req->rbody);
    if (req->saved.cap > 16384)
        tp_buf_free(&req->saved);
    if (w->nfree_reqs >= TP_FREE_REQS_MAX) {
        tp_buf_free(&req->up_head);
        tp_buf_free(&req->out);
        tp_buf_free(&req->rbody);
        tp_buf_free(&req->hdr_plan.add);
        tp_buf_free(&req->saved);
        tp_arena_free(&req->arena);
        free(req);
        return;
    }
    req->next_free = w->free_reqs;
    w->free_reqs = req;
    w->nfree_reqs++;
}

/* ---- generations -------------------------------------------------------------- */

void tp_worker_check_generation(tp_worker_t *w)
{
    uint64_t g = atomic_load_explicit(&w->shm->generation, memory_order_acquire);
    if (g == w->gen)
        return;
    const tp_snapshot_t *snap = tp_shm_current(w->shm);
    w->snap = snap;
    w->gen = snap->generation;
    tp_upstream_generation(w, snap);
    tp_compile_generation(w, snap);
    tp_session_generation(w, snap);
    /* the slot's tables: no request of this worker reads that slot now */
    w->rr[snap->slot] = tp_realloc(w->rr[snap->slot], (snap->napis + 1) * sizeof(uint32_t));
    memset(w->rr[snap->slot], 0, (snap->napis + 1) * sizeof(uint32_t));
    atomic_store(&w->shm->workers[w->id].serving, w->gen);
    publish_slots(w);
    tp_log_debug("serving generation %llu (%zu APIs)", (unsigned long long)w->gen, snap->napis);
}

/* ---- the channel to the master: one message per datagram -------------------- */

/* ---- lifecycle ------------------------------------------------------------- */

static _Noreturn void worker_exit(tp_worker_t *w, int code)
{
    tp_log_info("exiting (%llu requests served)", (unsigned long long)w->requests);
    atomic_store(&w->shm->workers[w->id].conns, 0);
    exit(code);
}

static void exit_now(tp_worker_t *w)
{
    worker_exit(w, 0);
}

/* A drained worker exits once its buffered analytics records are pushed. */
static void worker_done(tp_worker_t *w)
{
    if (w->exiting)
        return;
    w->exiting = 1;
    tp_analytics_drain(w, exit_now);
}

void tp_worker_conn_gone(tp_worker_t *w)
{
    if (w->draining && w->nconns == 0)
        worker_done(w);
}

static void on_drain_timeout(uv_timer_t *t)
{
    tp_worker_t *w = t->data;
    tp_log_warn("drain deadline reached with %u connections open; closing them", w->nconns);
    worker_done(w);
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void worker_drain(tp_worker_t *w, const char *why)
{
    if (w->draining)
        return;
    w->draining = 1;
    tp_log_info("draining (%s): %u connections open", why, w->nconns);
    if (w->listening) {
        /* take what the kernel already queued for us, then stop accepting */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&w->listener, &fd) == 0) {
            for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0)
                    break;
                tp_conn_adopt(w, cfd, w->conf->listen_tls);
            }
        }
        uv_close((uv_handle_t *)&w->listener, on_listener_closed);
        w->listening = 0;
    }
    if (w->control_listening) {
        uv_close((uv_handle_t *)&w->control_listener, on_listener_closed);
        w->control_listening = 0;
    }
    tp_upstream_shutdown(w);
    tp_list_t *it, *tmp;
    tp_list_foreach_safe (it, tmp, &w->conns)
        tp_conn_drain(tp_container_of(it, tp_conn_t, link));
    uint64_t deadline_ms = (uint64_t)w->conf->graceful_shutdown_timeout_duration * 1000;
    uv_timer_start(&w->drain_timer, on_drain_timeout, deadline_ms, 0);
    uv_unref((uv_handle_t *)&w->drain_timer);
    if (w->nconns == 0)
        worker_done(w);
}

static void on_connection(uv_stream_t *server, int status)
{
    tp_worker_t *w = server->data;
    if (status < 0) {
        tp_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    tp_conn_accept(w, server, server == (uv_stream_t *)&w->control_listener, w->conf->listen_tls);
}

static void master_says(tp_worker_t *w, char *msg)
{
    char *arg = strchr(msg, ' ');
    if (arg != NULL)
        *arg++ = '\0';
    if (strcmp(msg, "gen") == 0) {
        tp_worker_check_generation(w);
        tp_worker_tell(w, "serving %llu", (unsigned long long)w->gen);
    } else if (strcmp(msg, "notready") == 0) {
        w->not_ready = 1;
    } else if (strcmp(msg, "ready") == 0) {
        w->not_ready = 0;
    } else if (strcmp(msg, "drain") == 0) {
        worker_drain(w, "asked by the master");
    } else if (strcmp(msg, "quit") == 0) {
        worker_exit(w, 0);
    } else if (strcmp(msg, "loglevel") == 0 && arg != NULL) {
        int lvl = tp_log_level_parse(arg);
        if (lvl >= 0)
            tp_log_g.level = lvl;
    } else if (strcmp(msg, "reloaded") == 0 && arg != NULL) {
        /* "reloaded <token> <0|1> <message>" */
        char *end;
        unsigned long token = strtoul(arg, &end, 10);
        int ok = end[0] == ' ' && end[1] == '1';
        const char *text = end[0] == ' ' && end[1] != '\0' && end[2] == ' ' ? end + 3 : "";
        tp_worker_check_generation(w);
        tp_rest_reloaded(w, (uint32_t)token, ok, text);
    } else {
        tp_log_warn("unknown message from the master: %s", msg);
    }
}

static void on_master(uv_poll_t *p, int status, int events)
{
    tp_worker_t *w = p->data;
    (void)events;
    for (;;) {
        char msg[4096];
        ssize_t n = status < 0 ? 0 : recv(w->master_fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            uv_poll_stop(p);
            tp_log_warn("the master went away");
            worker_drain(w, "master gone");
            return;
        }
        msg[n] = '\0';
        master_says(w, msg);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    tp_worker_t *w = s->data;
    if (signum == SIGINT)
        worker_exit(w, 0);
    worker_drain(w, signum == SIGTERM ? "SIGTERM" : "SIGQUIT");
}

/* ---- the connection layer's events -------------------------------------------- */

static void req_drop(tp_req_t *req)
{
    tp_proxy_abort(req);
    tp_req_put(req->conn->w, req);
}

static void req_answered(tp_req_t *req)
{
    tp_chain_log(req);
    tp_req_put(req->conn->w, req);
}

static const tp_conn_events_t conn_events = {
    .req_new = tp_req_get,
    .head = tp_req_dispatch,
    .body = tp_proxy_body_ready,
    .rest_body = tp_body_in,
    .written = tp_proxy_client_written,
    .stop = tp_proxy_abort,
    .drop = req_drop,
    .answered = req_answered,
    .conn_gone = tp_worker_conn_gone,
};

static void adopt_listener(tp_worker_t *w, uv_tcp_t *h, int fd, const char *what)
{
    int r = uv_tcp_init(&w->loop, h);
    if (r == 0)
        r = uv_tcp_open(h, fd);
    h->data = w;
    if (r == 0)
        r = uv_listen((uv_stream_t *)h, 4096, on_connection);
    if (r != 0) {
        tp_log_error("cannot listen on the inherited %s socket: %s", what, uv_strerror(r));
        exit(1);
    }
}

_Noreturn void tp_worker_run(int id, int listen_fd, int control_fd, int master_fd,
                             const tp_conf_t *conf, tp_shm_t *shm)
{
    char role[24];
    snprintf(role, sizeof(role), "worker.%d", id);
    tp_log_set_role(role);

    tp_worker_t *w = tp_calloc(1, sizeof(*w));
    w->id = id;
    w->ev = conn_events;
    w->conf = conf;
    w->shm = shm;
    w->stats = tp_shm_stats(shm, id);
    w->me = &shm->workers[id];
    w->scache = shm->scache;
    w->rcache = shm->rcache;
    w->master_fd = master_fd;
    w->header_timeout_ms = (uint64_t)(conf->tp.header_timeout * 1000);
    w->body_timeout_ms = (uint64_t)(conf->tp.body_timeout * 1000);
    w->keepalive_timeout_ms = (uint64_t)(conf->tp.keepalive_timeout * 1000);
    w->send_timeout_ms = (uint64_t)(conf->tp.send_timeout * 1000);
    w->upstream_timeout_ms = (uint64_t)(conf->proxy_default_timeout * 1000);
    w->upstream_idle_ms = (uint64_t)(conf->tp.upstream_idle_timeout * 1000);
    w->max_hdrs = (uint32_t)conf->tp.max_header_count;
    w->max_line = (uint32_t)conf->tp.max_request_line;
    w->max_head = (uint32_t)conf->tp.max_header_bytes;
    w->max_body = (uint64_t)conf->http_server_options.max_request_body_size;
    w->rbuf = tp_malloc(TP_BLOCK_SIZE);
    tp_list_init(&w->conns);
    tp_list_init(&w->reload_waiters);
    tp_conn_init_settings(&w->req_settings);
    tp_proxy_init_settings(&w->resp_settings);
    tp_errtpl_load(w);

    if (uv_loop_init(&w->loop) != 0) {
        tp_log_error("cannot create the event loop");
        exit(1);
    }
    w->loop.data = w;
    tp_tls_after_fork();
    tp_io_init(&w->loop);
    tp_front_init(w);
    tp_session_init(w);
    w->started_ms = uv_now(&w->loop);
    tp_worker_check_generation(w);
    tp_health_start(w);
    tp_limit_init(w);
    tp_analytics_init(w);

    adopt_listener(w, &w->listener, listen_fd, "gateway");
    w->listening = 1;
    if (control_fd >= 0) {
        adopt_listener(w, &w->control_listener, control_fd, "control API");
        w->control_listening = 1;
    }

    uv_poll_init(&w->loop, &w->master_poll, master_fd);
    w->master_poll.data = w;
    uv_poll_start(&w->master_poll, UV_READABLE | UV_DISCONNECT, on_master);

    uv_signal_t *sigs[] = {&w->sig_term, &w->sig_quit, &w->sig_int};
    int signums[] = {SIGTERM, SIGQUIT, SIGINT};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&w->loop, sigs[i]);
        sigs[i]->data = w;
        uv_signal_start(sigs[i], on_signal, signums[i]);
        uv_unref((uv_handle_t *)sigs[i]);
    }
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;

    tp_worker_tell(w, "serving %llu", (unsigned long long)w->gen);
    tp_log_debug("serving");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    worker_exit(w, 0);
}
