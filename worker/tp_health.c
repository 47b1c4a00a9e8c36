/*
 * worker/tp_health.c: Tyk's health endpoints and the Redis liveness probe
 * behind them.
 *
 * As Tyk does, the probe writes `livenesscheck-tyk-liveness-probe` with a
 * 10 s expiry every liveness_check.check_duration (default 10 s), and /hello
 * reports what the last probe saw, with its time; unlike Tyk, the first
 * probe runs at once rather than one interval after start. /hello always
 * answers 200. /ready answers 503 while shutting down, and while Redis has
 * been failing (probe or connection) for longer than turnpike.redis_ready_grace.
 */
#include <stdio.h>
#include <string.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_worker.h"

static void on_probe_timer(uv_timer_t *t);

static void on_probe(void *arg, const redisReply *rep, const char *err)
{
    tp_worker_t *w = arg;
    w->probe_inflight = 0;
    w->probed = 1;
    w->probe_wall_us = tp_time_wall_us();
    int ok = err == NULL && rep->type == REDIS_REPLY_STATUS;
    if (!ok)
        snprintf(w->redis_err, sizeof(w->redis_err), "%s",
                 err != NULL ? err
                             : (rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply"));
    if (ok != w->probe_ok && !ok)
        tp_log_warn("redis liveness probe failed: %s", w->redis_err);
    else if (ok != w->probe_ok)
        tp_log_info("redis liveness probe passes again");
    w->probe_ok = ok;
    atomic_store(&w->shm->workers[w->id].redis, ok ? 1 : 0);
    if (ok)
        w->fail_since = 0;
    else if (w->fail_since == 0)
        w->fail_since = uv_now(&w->loop);
    /* while failing, look again every second: recovery shows quickly */
    uint64_t every = (uint64_t)(w->conf->liveness_check_ns / 1000000);
    if (!ok && every > 1000)
        uv_timer_start(&w->probe_timer, on_probe_timer, 1000, every);
}

static void on_probe_timer(uv_timer_t *t)
{
    tp_worker_t *w = t->data;
    if (w->redis == NULL || w->probe_inflight)
        return;
    w->probe_inflight = 1;
    tp_redis_cmd(w->redis, on_probe, w,
                 "SET livenesscheck-tyk-liveness-probe tyk-liveness-probe EX 10");
}

void tp_health_start(tp_worker_t *w)
{
    char err[512];
    w->redis = tp_redis_new(&w->loop, &w->conf->storage, "storage", err, sizeof(err));
    if (w->redis != NULL)
        tp_redis_set_stats(w->redis, &w->me->redis_stats);
    if (w->redis == NULL) {
        /* the master validated these settings: this is unexpected */
        snprintf(w->redis_err, sizeof(w->redis_err), "%.250s", err);
        tp_log_error("redis: %s", err);
        w->probed = 1;
        w->probe_wall_us = tp_time_wall_us();
        w->fail_since = uv_now(&w->loop);
        return;
    }
    tp_redis_connect(w->redis);
    uv_timer_init(&w->loop, &w->probe_timer);
    w->probe_timer.data = w;
    uint64_t every = (uint64_t)(w->conf->liveness_check_ns / 1000000);
    uv_timer_start(&w->probe_timer, on_probe_timer, 0, every > 0 ? every : 1);
    uv_unref((uv_handle_t *)&w->probe_timer);
}

/* Is Redis fine? If not, *since is the loop time it has been failing
 * from and *why the reason: the connection state wins over the probe,
 * which only runs every check_duration. */
static int redis_state(tp_worker_t *w, uint64_t *since, const char **why)
{
    uint64_t change = 0;
    if (w->redis == NULL) {
        *since = w->fail_since;
        *why = w->redis_err;
        return 0;
    }
    if (!tp_redis_up(w->redis, &change, why)) {
        /* never connected yet: failing since the worker started */
        *since = change != 0 ? change : w->started_ms;
        if (**why == '\0')
            *why = "not connected yet";
        return 0;
    }
    if (w->probed && !w->probe_ok) {
        *since = w->fail_since;
        *why = w->redis_err;
        return 0;
    }
    *since = 0;
    *why = "";
    return 1;
}

static void health_body(tp_req_t *req, tp_buf_t *b, const char *description)
{
    tp_worker_t *w = req->conn->w;
    uint64_t since;
    const char *why;
    int pass = redis_state(w, &since, &why);
    /* Tyk: before the first probe there is nothing to report, and "pass" */
    int report = w->probed || !pass;
    tp_buf_printf(b, "{\"status\":\"%s\",\"version\":\"%s\",\"description\":\"%s\"",
                  pass ? "pass" : "fail", TP_VERSION, description);
    if (report) {
        char ts[40];
        tp_time_rfc3339(ts, sizeof(ts), w->probed ? w->probe_wall_us : tp_time_wall_us(), 0);
        tp_buf_printf(b, ",\"details\":{\"redis\":{\"status\":\"%s\"", pass ? "pass" : "fail");
        if (!pass) {
            tp_buf_puts(b, ",\"output\":\"");
            tp_buf_json_escape(b, why, strlen(why));
            tp_buf_putc(b, '"');
        }
        tp_buf_printf(b, ",\"componentType\":\"datastore\",\"time\":\"%s\"}}", ts);
    }
    tp_buf_puts(b, "}\n");
}

static int only_get(tp_req_t *req)
{
    static const char not_allowed[] = "{\"status\":\"error\",\"message\":\"Method Not Allowed\"}\n";
    if (req->method == HTTP_GET)
        return 1;
    tp_respond(req, 405, "application/json", not_allowed, sizeof(not_allowed) - 1, NULL);
    return 0;
}

void tp_health_hello(tp_req_t *req)
{
    if (!only_get(req))
        return;
    tp_buf_t body = {0};
    health_body(req, &body, "Tyk GW");
    tp_respond(req, 200, "application/json", body.data, body.len, NULL);
    tp_buf_free(&body);
}

void tp_health_ready(tp_req_t *req)
{
    static const char draining[] =
        "{\"status\":\"error\",\"message\":\"Gateway is shutting down\"}\n";
    static const char no_redis[] =
        "{\"status\":\"error\",\"message\":\"Redis connection not available\"}\n";
    tp_worker_t *w = req->conn->w;
    if (!only_get(req))
        return;
    if (w->draining || w->not_ready) {
        tp_respond(req, 503, "application/json", draining, sizeof(draining) - 1, NULL);
        return;
    }
    uint64_t since;
    const char *why;
    if (!redis_state(w, &since, &why) &&
        uv_now(&w->loop) - since > (uint64_t)(w->conf->tp.redis_ready_grace * 1000)) {
        tp_respond(req, 503, "application/json", no_redis, sizeof(no_redis) - 1, NULL);
        return;
    }
    tp_buf_t body = {0};
    health_body(req, &body, "Tyk GW Ready");
    tp_respond(req, 200, "application/json", body.data, body.len, NULL);
    tp_buf_free(&body);
}
